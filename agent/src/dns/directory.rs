//! Who resolves what: the names the embedded resolver answers, built from
//! the state after every change.
//!
//! Scope, as Docker's: a container asks through its own resolver, and a
//! name resolves only to addresses on the user-defined networks the asker
//! is on (never the default `bridge`, which has no name resolution). A
//! container is known on a network by its name, its aliases there, its
//! 12-digit short ID, its hostname (`--hostname`), and `NAME.NETWORK`; a link made on a user-defined
//! network adds the link's alias for the linking container only. Names
//! compare case-insensitively (RFC 4343).

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
};

use crate::{
    host::NetnsId,
    model::{Container, NetworkMode},
    state::DesiredState,
};

/// The port of every DNS server netagent forwards to.
pub const DNS_PORT: u16 = 53;
/// At most this many upstream servers are asked, in order (Docker's and
/// glibc's `MAXNS`).
pub const MAX_UPSTREAMS: usize = 3;

/// A server names go to when no container has them, and where it is
/// asked from (Docker's rule): the servers of the host's resolv.conf, and
/// loopback servers of the daemon's `--dns` (which mean the host's own),
/// from the daemon's namespace; every other server (a container's
/// `--dns`, the daemon's non-loopback `--dns`) from the container's, so
/// the container's isolation, internal networks and masquerade apply to
/// what the resolver sends for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Upstream {
    pub addr: SocketAddr,
    /// Asked from the daemon's (the host's) namespace.
    pub from_host: bool,
}

impl Upstream {
    /// A server of the host's configuration (its resolv.conf, or the
    /// daemon's `--dns`, `from_resolv_conf` saying which).
    pub fn of_host(addr: SocketAddr, from_resolv_conf: bool) -> Self {
        Self {
            addr,
            from_host: from_resolv_conf || addr.ip().is_loopback(),
        }
    }

    /// A server of a container's own `--dns`: asked from its namespace
    /// (a loopback one is the container's own loopback).
    pub fn of_container(addr: SocketAddr) -> Self {
        Self {
            addr,
            from_host: false,
        }
    }
}

/// One container's entry on one network.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    /// The container's name as given (for PTR answers).
    container: String,
    /// Lower-case names it answers to here: name, aliases, short ID.
    names: Vec<String>,
    v4: Ipv4Addr,
    v6: Option<Ipv6Addr>,
}

/// A container that has a resolver: one on at least one user-defined
/// network, in a namespace of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asker {
    pub id: String,
    pub name: String,
    pub netns: PathBuf,
    pub netns_id: Option<NetnsId>,
    /// The user-defined networks it is on, in endpoint order.
    networks: Vec<String>,
    /// Link aliases (lower case) -> (network, linked container's name).
    links: Vec<(String, String, String)>,
    /// Where the names it asks that are not containers' go: its own
    /// `--dns` servers, else the daemon's upstreams unless every network
    /// it is on is internal (as Docker's: internal networks do not
    /// forward through the host).
    pub upstreams: Vec<Upstream>,
    /// Its resolv.conf sets `ndots` to 1 or more (`--dns-option`): an
    /// unknown single-label name is answered empty instead of forwarded,
    /// so the stub goes on with its search domains (Docker's rule).
    pub user_ndots: bool,
}

/// The addresses a name resolved to, in the state's order (containers in
/// attach order), without duplicates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Addresses {
    pub v4: Vec<Ipv4Addr>,
    pub v6: Vec<Ipv6Addr>,
}

impl Addresses {
    fn add(&mut self, entry: &Entry) {
        if !self.v4.contains(&entry.v4) {
            self.v4.push(entry.v4);
        }
        if let Some(v6) = entry.v6.filter(|v6| !self.v6.contains(v6)) {
            self.v6.push(v6);
        }
    }
}

/// Every asker and every user-defined network's entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directory {
    askers: HashMap<String, Asker>,
    /// Lower-case network name -> (its name as given, its entries).
    networks: HashMap<String, (String, Vec<Entry>)>,
}

pub use crate::model::resolves_names;

impl Directory {
    /// The directory of `state`; `upstreams` are the daemon's (its
    /// `--dns`, or the host's resolv.conf).
    pub fn build(state: &DesiredState, upstreams: &[Upstream]) -> Self {
        let mut networks: HashMap<String, (String, Vec<Entry>)> = HashMap::new();
        for c in &state.containers {
            for ep in c.endpoints().iter().filter(|e| resolves_names(&e.network)) {
                let mut names = vec![c.name.to_ascii_lowercase()];
                names.extend(ep.aliases.iter().map(|a| a.to_ascii_lowercase()));
                names.push(c.short_id().to_owned());
                if let Some(hostname) = &c.hostname {
                    names.push(hostname.to_ascii_lowercase());
                }
                networks
                    .entry(ep.network.to_ascii_lowercase())
                    .or_insert_with(|| (ep.network.clone(), Vec::new()))
                    .1
                    .push(Entry {
                        container: c.name.clone(),
                        names,
                        v4: ep.ip,
                        v6: ep.ip6,
                    });
            }
        }
        let askers = state
            .containers
            .iter()
            .filter_map(|c| asker(state, c, upstreams))
            .map(|a| (a.id.clone(), a))
            .collect();
        Self { askers, networks }
    }

    /// The containers that have a resolver, by ID.
    pub fn askers(&self) -> impl Iterator<Item = &Asker> {
        self.askers.values()
    }

    pub fn asker(&self, id: &str) -> Option<&Asker> {
        self.askers.get(id)
    }

    /// What `name` (any case, with or without the final dot) resolves to
    /// for `asker`; `None` when it is no container's name there.
    pub fn resolve(&self, asker: &Asker, name: &str) -> Option<Addresses> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let mut found = Addresses::default();
        let mut any = false;
        for (alias, network, target) in &asker.links {
            if *alias == name {
                for e in self.entries(network).filter(|e| e.container == *target) {
                    found.add(e);
                    any = true;
                }
            }
        }
        for network in &asker.networks {
            for e in self.entries(network).filter(|e| e.names.contains(&name)) {
                found.add(e);
                any = true;
            }
        }
        if !any {
            // NAME.NETWORK: that network only.
            for network in &asker.networks {
                let suffix = format!(".{}", network.to_ascii_lowercase());
                let Some(short) = name.strip_suffix(&suffix) else {
                    continue;
                };
                for e in self
                    .entries(network)
                    .filter(|e| e.names.iter().any(|n| n == short))
                {
                    found.add(e);
                    any = true;
                }
            }
        }
        any.then_some(found)
    }

    /// The name of the container at `ip` on one of `asker`'s networks,
    /// as `NAME.NETWORK` (Docker's PTR answer).
    pub fn reverse(&self, asker: &Asker, ip: IpAddr) -> Option<String> {
        asker.networks.iter().find_map(|network| {
            let (given, entries) = self.networks.get(&network.to_ascii_lowercase())?;
            entries
                .iter()
                .find(|e| IpAddr::V4(e.v4) == ip || e.v6.map(IpAddr::V6) == Some(ip))
                .map(|e| format!("{}.{given}", e.container))
        })
    }

    fn entries(&self, network: &str) -> impl Iterator<Item = &Entry> {
        self.networks
            .get(&network.to_ascii_lowercase())
            .into_iter()
            .flat_map(|(_, entries)| entries.iter())
    }
}

/// `c` as an asker, if it has a resolver.
fn asker(state: &DesiredState, c: &Container, upstreams: &[Upstream]) -> Option<Asker> {
    let NetworkMode::Bridge { endpoints } = &c.mode else {
        return None;
    };
    let networks: Vec<String> = endpoints
        .iter()
        .filter(|e| resolves_names(&e.network))
        .map(|e| e.network.clone())
        .collect();
    if networks.is_empty() {
        return None;
    }
    let links = c
        .links
        .iter()
        .filter(|l| resolves_names(&l.network) && networks.contains(&l.network))
        .map(|l| {
            (
                l.alias.to_ascii_lowercase(),
                l.network.clone(),
                l.name.clone(),
            )
        })
        .collect();
    let upstreams = if !c.dns.servers.is_empty() {
        c.dns
            .servers
            .iter()
            .take(MAX_UPSTREAMS)
            .map(|ip| Upstream::of_container(SocketAddr::new(*ip, DNS_PORT)))
            .collect()
    } else if networks.iter().any(|n| {
        state
            .networks
            .iter()
            .any(|net| net.name == *n && !net.internal)
    }) {
        upstreams.iter().take(MAX_UPSTREAMS).copied().collect()
    } else {
        Vec::new()
    };
    Some(Asker {
        id: c.id.clone(),
        name: c.name.clone(),
        netns: c.netns.clone(),
        netns_id: c.netns_id,
        networks,
        links,
        upstreams,
        user_ndots: c.dns.options.iter().any(|o| {
            o.strip_prefix("ndots:")
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n >= 1)
        }),
    })
}

#[cfg(test)]
pub(crate) mod tests;
