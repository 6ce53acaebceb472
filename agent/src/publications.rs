//! Publications: `netagent publish`/`unpublish`/`port`/`stats`, the map
//! entries of every publication (a container's `-p` ones included), and
//! the publication map's reconcile.
//!
//! Invariants:
//! - no two publications overlap: same protocol and port on the same host
//!   address, or on any address when either is the wildcard (Docker's rule,
//!   [`PortIndex`]);
//! - counter slots are unique among live publications and zeroed on reuse;
//!   there are as many as the host's counter array holds
//!   (`datapath_common::stats_slots`), and publications beyond get
//!   [`NO_STATS_SLOT`]: translated all the same, without counters;
//! - a publication to a container's address belongs to that container;
//! - an IPv4 publication has an entry in the IPv4 publication map, an IPv6
//!   one (an IPv6 host address) none: the IPv6 map is derived whole from
//!   the state (`DesiredState::publications6`) after every change, so
//!   the two families cannot disagree about a container's addresses.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    net::IpAddr,
    time::{Duration, Instant},
};

use datapath_common::{Event, MAX_PUBLICATIONS, NO_STATS_SLOT, PubKey, PubStats, PubValue};
use tracing::{error, info};

use crate::{
    agent::{Agent, Change},
    api::{PublicationStats, Stats},
    datapath::Datapath,
    error::{AgentError, NetError},
    host::{Host, HostPort},
    journal::{Journal, Step},
    spec::{PortSpec, Proto},
    state::Publication,
};

#[cfg(test)]
mod tests;

/// The IPv4 publication map's key for a publication; `None` for one on an
/// IPv6 host address (see the module doc).
pub fn pub_key(spec: &PortSpec) -> Option<PubKey> {
    let IpAddr::V4(host_ip) = spec.host_ip else {
        return None;
    };
    Some(PubKey {
        addr_be: u32::from_ne_bytes(host_ip.octets()),
        port_be: spec.host_port.to_be(),
        proto: spec.proto.number(),
        _pad: 0,
    })
}

/// The IPv4 publication map's entry for a publication, if it has one
/// ([`pub_key`]; an IPv4 host address always goes with an IPv4 container
/// address, `spec.rs`).
pub fn pub_entry(p: &Publication) -> Option<(PubKey, PubValue)> {
    let key = pub_key(&p.spec)?;
    let IpAddr::V4(container_ip) = p.spec.container_ip else {
        return None;
    };
    Some((
        key,
        PubValue {
            addr_be: u32::from_ne_bytes(container_ip.octets()),
            port_be: p.spec.container_port.to_be(),
            _pad: 0,
            stats_slot: p.stats_slot,
        },
    ))
}

/// The reservation a publication needs.
pub fn host_port(spec: &PortSpec) -> HostPort {
    HostPort {
        ip: spec.host_ip,
        port: spec.host_port,
        proto: spec.proto,
    }
}

/// What [`Agent::reconcile`] changed in the kernel, and what it could not.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    pub added: usize,
    pub updated: usize,
    pub removed: usize,
    /// One line per publication that failed; the others were done.
    pub errors: Vec<String>,
}

impl<D: Datapath, H: Host> Agent<D, H> {
    /// Takes a socket on every published port. A port some other process
    /// took while the agent was down cannot be refused any more: it is
    /// reported, and the publication keeps forwarding.
    pub fn reserve_published_ports(&mut self) -> usize {
        let mut failed = 0;
        for p in &self.state.publications {
            if let Err(e) = self.host.reserve_port(host_port(&p.spec)) {
                error!(spec = %p.spec, error = %e, "cannot reserve a published host port");
                failed += 1;
            }
        }
        failed
    }

    /// Makes the publication map equal the desired state: adds what is
    /// missing, fixes what differs, removes what nobody asked for. Entries
    /// already right are not touched (no counter reset, no map write).
    /// A failure (a full map, say) is reported per entry; the rest is done.
    pub fn reconcile(&mut self) -> ReconcileReport {
        let mut report = ReconcileReport::default();
        let actual: HashMap<PubKey, PubValue> = match self.datapath.publications() {
            Ok(entries) => entries.into_iter().collect(),
            Err(e) => {
                report
                    .errors
                    .push(format!("reading the publication map: {e}"));
                return report;
            }
        };
        let mut wanted = HashSet::new();
        for p in &self.state.publications {
            let Some((key, value)) = pub_entry(p) else {
                continue;
            };
            wanted.insert(key);
            let done = match actual.get(&key) {
                Some(v) if *v == value => continue,
                Some(_) => self
                    .datapath
                    .upsert_publication(&key, &value)
                    .map(|()| report.updated += 1),
                None => reset_counters(&mut self.datapath, &[p.stats_slot])
                    .and_then(|()| self.datapath.upsert_publication(&key, &value))
                    .map(|()| report.added += 1),
            };
            if let Err(e) = done {
                report.errors.push(format!("publication {}: {e}", p.spec));
            }
        }
        for key in actual.keys().filter(|k| !wanted.contains(k)) {
            match self.datapath.remove_publication(key) {
                Ok(()) => report.removed += 1,
                Err(e) => report.errors.push(e.to_string()),
            }
        }
        for e in &report.errors {
            error!(error = %e, "reconciling publications");
        }
        report
    }

    /// Publishes `spec`. On any error nothing has changed.
    pub fn publish(&mut self, spec: PortSpec) -> Result<Publication, AgentError> {
        let mut published = self.publish_many(&[spec])?;
        Ok(published.remove(0))
    }

    /// Publishes every spec, or none: the specs are checked against the
    /// existing publications and against each other, the state file is
    /// written once, and a failed map write undoes the ones before it. This
    /// is the bulk path (`netagent publish --file`), O(n) in the specs.
    ///
    /// A spec to the address of one of netagent's containers belongs to
    /// that container, as its `-p` publications do: refused if the
    /// container's network is internal, listed by `port NAME`, and removed
    /// when the container is detached (so the next container given the
    /// address does not inherit it).
    pub fn publish_many(&mut self, specs: &[PortSpec]) -> Result<Vec<Publication>, AgentError> {
        let started = Instant::now();
        let mut taken = self.port_index();
        let mut owners = Vec::with_capacity(specs.len());
        for spec in specs {
            taken.claim(spec)?;
            owners.push(self.owner_of(spec)?);
        }
        let mut published = self.new_publications(specs, None)?;
        for (p, owner) in published.iter_mut().zip(owners) {
            p.owner = owner;
        }
        let checked = started.elapsed();
        let mut reserved = Duration::ZERO;
        let mut installed = Duration::ZERO;
        let published = self.transaction(|agent, journal| {
            let ports: Vec<HostPort> = published.iter().map(|p| host_port(&p.spec)).collect();
            agent.host.reserve_ports(&ports)?;
            for port in ports {
                journal.undo(Step::ReleasePort(port));
            }
            reserved = started.elapsed();
            agent.install_publications(&published, journal)?;
            installed = started.elapsed();
            let mut next = agent.state.clone();
            next.publications.extend_from_slice(&published);
            Ok(Change {
                next,
                output: published,
            })
        })?;
        match published.as_slice() {
            [p] => info!(spec = %p.spec, stats_slot = p.stats_slot, "published"),
            many => info!(
                count = many.len(),
                checked = ?checked,
                ports_reserved = ?reserved,
                maps_written = ?installed,
                committed = ?started.elapsed(),
                "published in bulk (times since the request)"
            ),
        }
        Ok(published)
    }

    /// Unpublishes `spec`, which must match a publication exactly. New and
    /// established flows stop at once (see the datapath's ct.rs).
    pub fn unpublish(&mut self, spec: PortSpec) -> Result<Publication, AgentError> {
        let index = self
            .state
            .publications
            .iter()
            .position(|p| {
                p.spec.host_ip == spec.host_ip
                    && p.spec.host_port == spec.host_port
                    && p.spec.proto == spec.proto
            })
            .ok_or(AgentError::NotPublished(spec))?;
        let publication = self.state.publications[index];
        if publication.spec != spec {
            return Err(AgentError::Mismatch {
                published: publication.spec,
                requested: spec,
            });
        }
        self.transaction(|agent, journal| {
            agent.uninstall_publications(&[publication], journal)?;
            let mut next = agent.state.clone();
            next.publications.remove(index);
            Ok(Change { next, output: () })
        })?;
        info!(%spec, "unpublished");
        Ok(publication)
    }

    /// Publications, optionally only those to `container_ip`, in natural
    /// order (container address, port, protocol, then host side).
    pub fn list(&self, container_ip: Option<IpAddr>) -> Vec<Publication> {
        let mut list: Vec<Publication> = self
            .state
            .publications
            .iter()
            .filter(|p| container_ip.is_none_or(|ip| p.spec.container_ip == ip))
            .copied()
            .collect();
        list.sort_by_key(|p| {
            let s = p.spec;
            (
                s.container_ip,
                s.container_port,
                s.proto,
                s.host_ip,
                s.host_port,
            )
        });
        list
    }

    pub fn stats(&self) -> Result<Stats, AgentError> {
        let publications = self
            .list(None)
            .into_iter()
            .map(|p| {
                let counted = p.stats_slot < self.datapath.stats_slots();
                let PubStats {
                    fwd_packets,
                    fwd_bytes,
                    rev_packets,
                    rev_bytes,
                } = if counted {
                    self.datapath.stats(p.stats_slot)?
                } else {
                    PubStats::default()
                };
                Ok(PublicationStats {
                    publication: p.spec,
                    counted,
                    fwd_packets,
                    fwd_bytes,
                    rev_packets,
                    rev_bytes,
                })
            })
            .collect::<Result<Vec<_>, AgentError>>()?;
        let events = self
            .datapath
            .events()?
            .into_iter()
            .map(|(e, n): (Event, u64)| (e.name().to_owned(), n))
            .collect();
        Ok(Stats {
            interfaces: self.served.clone(),
            socket_hooks_cgroup: self.datapath.socket_hooks_cgroup(),
            publications,
            events,
            dns: self.resolver.as_ref().map(crate::dns::Resolver::stats),
        })
    }

    /// Every live publication in a [`PortIndex`], for clash checks.
    pub(crate) fn port_index(&self) -> PortIndex {
        let mut taken = PortIndex::default();
        for p in &self.state.publications {
            taken.insert(p.spec);
        }
        taken
    }

    /// The container whose endpoint `spec` targets (its `uid`), if any;
    /// refused if that endpoint's network is internal, or if the spec
    /// needs an IPv6 target (see [`check_ipv6_target`]) the endpoint lacks.
    fn owner_of(&self, spec: &PortSpec) -> Result<Option<u64>, AgentError> {
        for c in &self.state.containers {
            if let Some(ep) = c
                .endpoints()
                .iter()
                .find(|e| e.has_address(spec.container_ip))
            {
                if self
                    .state
                    .networks
                    .iter()
                    .any(|n| n.name == ep.network && n.internal)
                {
                    return Err(NetError::InternalPublish {
                        container: c.name.clone(),
                        network: ep.network.clone(),
                    }
                    .into());
                }
                check_ipv6_target(spec, ep.ip6.is_some())?;
                return Ok(Some(c.uid));
            }
        }
        if spec.container_ip.is_ipv6() {
            return Err(NetError::ForeignIpv6Target { spec: *spec }.into());
        }
        check_ipv6_target(spec, false)?;
        Ok(None)
    }

    /// Publications for `specs` with fresh counter slots (or none, past
    /// the host's slots), owned by `owner`; refused past
    /// [`MAX_PUBLICATIONS`].
    pub(crate) fn new_publications(
        &self,
        specs: &[PortSpec],
        owner: Option<u64>,
    ) -> Result<Vec<Publication>, AgentError> {
        if self.state.publications.len() + specs.len() > MAX_PUBLICATIONS as usize {
            return Err(AgentError::Full);
        }
        let slots = self.free_slots(specs.len());
        Ok(specs
            .iter()
            .zip(slots)
            .map(|(&spec, stats_slot)| Publication {
                spec,
                stats_slot,
                owner,
            })
            .collect())
    }

    /// Writes new publications into the kernel map, zeroing their counters
    /// first (two batched writes whatever their number); each entry's
    /// removal is journaled.
    pub(crate) fn install_publications(
        &mut self,
        published: &[Publication],
        journal: &mut Journal,
    ) -> Result<(), AgentError> {
        let slots: Vec<u32> = published.iter().map(|p| p.stats_slot).collect();
        reset_counters(&mut self.datapath, &slots)?;
        let entries: Vec<(PubKey, PubValue)> = published.iter().filter_map(pub_entry).collect();
        self.datapath.insert_publications(&entries)?;
        for (key, _) in entries {
            journal.undo(Step::RemovePublication(key));
        }
        Ok(())
    }

    /// Takes publications out of the kernel map (each removal's re-insert
    /// journaled) and lets go of their host ports after the commit.
    pub(crate) fn uninstall_publications(
        &mut self,
        published: &[Publication],
        journal: &mut Journal,
    ) -> Result<(), AgentError> {
        for p in published {
            if let Some((key, value)) = pub_entry(p) {
                self.datapath.remove_publication(&key)?;
                journal.undo(Step::PutPublication(key, value));
            }
            journal.after_commit(Step::ReleasePort(host_port(&p.spec)));
        }
        Ok(())
    }

    /// Points publications at new container addresses in the map (each
    /// old entry journaled for undo); counters and slots stay.
    pub(crate) fn retarget_publications(
        &mut self,
        moves: &[(Publication, Publication)],
        journal: &mut Journal,
    ) -> Result<(), AgentError> {
        for (old, new) in moves {
            let (Some((key, value)), Some((old_key, old_value))) = (pub_entry(new), pub_entry(old))
            else {
                continue;
            };
            self.datapath.upsert_publication(&key, &value)?;
            journal.undo(Step::PutPublication(old_key, old_value));
        }
        Ok(())
    }

    /// `n` counter slots: the lowest no publication holds, then
    /// [`NO_STATS_SLOT`] once the host's slots run out.
    fn free_slots(&self, n: usize) -> Vec<u32> {
        let used: BTreeSet<u32> = self
            .state
            .publications
            .iter()
            .map(|p| p.stats_slot)
            .collect();
        (0..self.datapath.stats_slots())
            .filter(|s| !used.contains(s))
            .chain(std::iter::repeat(NO_STATS_SLOT))
            .take(n)
            .collect()
    }
}

/// Refuses a publication on an IPv6 host address other than `::1` to a
/// container address of a container without IPv6 (`has_ipv6`): the
/// datapath translates IPv6 to IPv6 only, so nothing arriving there could
/// reach it. On `::1` the host's own sockets reach any container, over
/// IPv4 at its IPv4-mapped address (the socket hooks, sock.rs).
pub(crate) fn check_ipv6_target(spec: &PortSpec, has_ipv6: bool) -> Result<(), NetError> {
    if spec.on_ipv6() && !spec.on_loopback6() && spec.container_ip.is_ipv4() && !has_ipv6 {
        return Err(NetError::NoIpv6Target {
            host_ip: spec.host_ip,
            container_ip: spec.container_ip,
        });
    }
    Ok(())
}

/// Zeroes counter slots before publications take them (skipping
/// [`NO_STATS_SLOT`], and a slot past the host's counter array, which a
/// state written on a host with more slots may hold: the datapath counts
/// nothing there).
fn reset_counters<D: Datapath>(
    datapath: &mut D,
    slots: &[u32],
) -> Result<(), crate::datapath::DatapathError> {
    let limit = datapath.stats_slots();
    let slots: Vec<u32> = slots.iter().copied().filter(|&s| s < limit).collect();
    datapath.reset_stats(&slots)
}

/// Host ports in use, by (protocol, port), for Docker's overlap rule: two
/// publications clash on the same protocol and port when their host
/// addresses are equal or either is its family's wildcard; and across the
/// families when the IPv4 one is `0.0.0.0`, which is served on IPv6 too
/// (to a dual-stack container on `[::]`, and from the host's own IPv6
/// sockets).
#[derive(Default)]
pub(crate) struct PortIndex {
    by_port: HashMap<(Proto, u16), Vec<PortSpec>>,
}

impl PortIndex {
    pub(crate) fn insert(&mut self, spec: PortSpec) {
        self.by_port
            .entry((spec.proto, spec.host_port))
            .or_default()
            .push(spec);
    }

    /// Adds `spec`, or fails with Docker's "port is already allocated".
    pub(crate) fn claim(&mut self, spec: &PortSpec) -> Result<(), AgentError> {
        if let Some(existing) = self.conflict(spec) {
            return Err(AgentError::AlreadyAllocated {
                ip: spec.host_ip,
                port: spec.host_port,
                existing,
            });
        }
        self.insert(*spec);
        Ok(())
    }

    /// The publication `spec` would clash with, if any.
    pub(crate) fn conflict(&self, spec: &PortSpec) -> Option<PortSpec> {
        self.by_port
            .get(&(spec.proto, spec.host_port))?
            .iter()
            .find(|p| hosts_overlap(p.host_ip, spec.host_ip))
            .copied()
    }
}

/// Whether publications on host addresses `a` and `b` (same protocol and
/// port) clash: see [`PortIndex`].
fn hosts_overlap(a: IpAddr, b: IpAddr) -> bool {
    if a.is_ipv4() == b.is_ipv4() {
        return a == b || a.is_unspecified() || b.is_unspecified();
    }
    let v4 = if a.is_ipv4() { a } else { b };
    v4.is_unspecified()
}
