//! Desired state and its crash-safe store.
//!
//! The state file is the truth: the daemon reconciles the kernel maps with
//! it at start and after every change. Writes are atomic (temp file, fsync,
//! rename, fsync of the directory), so a `kill -9` at any instant leaves
//! either the old or the new state, never a torn one.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    model::{Container, Network},
    spec::{PortSpec, Proto},
};

/// Bumped when the file's meaning changes; older files are migrated or refused.
/// Version 1 (publications only) loads as version 2 with no networks or
/// containers.
pub const STATE_VERSION: u32 = 2;
const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "lock";

/// One published port and the counter slot the datapath uses for it.
///
/// In JSON (the state file, the API) the spec's fields sit beside the
/// others, written out in [`PublicationJson`] rather than with
/// `#[serde(flatten)]`: serde decodes a flattened struct by buffering
/// each object first, and the state and a bulk answer hold 50,000.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "PublicationJson", into = "PublicationJson")]
pub struct Publication {
    pub spec: PortSpec,
    /// Index into the per-publication counter map; unique among
    /// publications, or `NO_STATS_SLOT` (no counters: the host's slots
    /// ran out).
    pub stats_slot: u32,
    /// The container (its `uid`) that published it with `-p`/`-P`; `None`
    /// for `netagent publish`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<u64>,
}

/// [`Publication`]'s JSON form: the spec's fields, then the others.
#[derive(Clone, Copy, Serialize, Deserialize)]
struct PublicationJson {
    host_ip: IpAddr,
    host_port: u16,
    container_ip: IpAddr,
    container_port: u16,
    proto: Proto,
    stats_slot: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<u64>,
}

impl From<PublicationJson> for Publication {
    fn from(j: PublicationJson) -> Self {
        Publication {
            spec: PortSpec {
                host_ip: j.host_ip,
                host_port: j.host_port,
                container_ip: j.container_ip,
                container_port: j.container_port,
                proto: j.proto,
            },
            stats_slot: j.stats_slot,
            owner: j.owner,
        }
    }
}

impl From<Publication> for PublicationJson {
    fn from(p: Publication) -> Self {
        let PortSpec {
            host_ip,
            host_port,
            container_ip,
            container_port,
            proto,
        } = p.spec;
        PublicationJson {
            host_ip,
            host_port,
            container_ip,
            container_port,
            proto,
            stats_slot: p.stats_slot,
            owner: p.owner,
        }
    }
}

/// Everything the agent has been asked to do.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredState {
    pub version: u32,
    pub publications: Vec<Publication>,
    #[serde(default)]
    pub networks: Vec<Network>,
    #[serde(default)]
    pub containers: Vec<Container>,
    /// The IDs of the pre-defined `host` and `none` networks, by name
    /// (made once, so they stay the same across restarts).
    #[serde(default)]
    pub predefined: std::collections::BTreeMap<String, String>,
}

impl DesiredState {
    /// Whether `spec` is also served on `[::]` (see [`Self::publications6`]):
    /// a wildcard IPv4 publication to a dual-stack endpoint.
    pub fn served_on_ipv6(&self, spec: &crate::spec::PortSpec) -> bool {
        spec.host_ip == IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            && self
                .containers
                .iter()
                .flat_map(|c| c.endpoints())
                .any(|e| e.has_address(spec.container_ip) && e.ip6.is_some())
    }

    /// The IPv6 publication map, derived whole from the publications:
    /// - one on an IPv6 host address goes to its container's IPv6 address
    ///   (given, or the IPv6 address of the endpoint its IPv4 address
    ///   names); on `::1`, to a container without IPv6, to its IPv4-mapped
    ///   address, which only the host's sockets reach (sock.rs: the
    ///   datapath never translates to `::/8`);
    /// - a wildcard IPv4 publication (`0.0.0.0`) to a dual-stack endpoint
    ///   is also served on `[::]`, to the endpoint's IPv6 address, as
    ///   Docker binds `-p 8080:80` on both families. Same port, same
    ///   counters.
    ///
    /// A publication whose target has no such address (its endpoint left
    /// a dual-stack network) has no entry: nothing could deliver it.
    pub fn publications6(&self) -> Vec<(datapath_common::PubKey6, datapath_common::PubValue6)> {
        use std::collections::{BTreeMap, BTreeSet};
        let endpoints = || self.containers.iter().flat_map(|c| c.endpoints());
        let ip6_of: BTreeMap<Ipv4Addr, Ipv6Addr> = endpoints()
            .filter_map(|e| e.ip6.map(|ip6| (e.ip, ip6)))
            .collect();
        let own6: BTreeSet<Ipv6Addr> = ip6_of.values().copied().collect();
        self.publications
            .iter()
            .filter_map(|p| {
                let s = p.spec;
                let target = match s.container_ip {
                    IpAddr::V6(ip6) => own6.contains(&ip6).then_some(ip6)?,
                    IpAddr::V4(ip4) => match ip6_of.get(&ip4) {
                        Some(ip6) => *ip6,
                        None if s.on_loopback6() => ip4.to_ipv6_mapped(),
                        None => return None,
                    },
                };
                let host = match s.host_ip {
                    IpAddr::V6(host) => host,
                    IpAddr::V4(v4) if v4.is_unspecified() && target.to_ipv4_mapped().is_none() => {
                        Ipv6Addr::UNSPECIFIED
                    }
                    IpAddr::V4(_) => return None,
                };
                Some((
                    datapath_common::PubKey6 {
                        addr_be: datapath_common::ipv6_be(host),
                        port_be: s.host_port.to_be(),
                        proto: s.proto.number(),
                        _pad: 0,
                    },
                    datapath_common::PubValue6 {
                        addr_be: datapath_common::ipv6_be(target),
                        port_be: s.container_port.to_be(),
                        _pad: 0,
                        stats_slot: p.stats_slot,
                    },
                ))
            })
            .collect()
    }

    /// The container ports reachable by direct routing: every published
    /// container port of an endpoint on a `routed` network (the datapath's
    /// open-port map).
    pub fn open_ports(&self) -> Vec<datapath_common::OpenPort> {
        use crate::model::GatewayMode;
        let routed: std::collections::BTreeSet<std::net::Ipv4Addr> = self
            .containers
            .iter()
            .flat_map(|c| c.endpoints())
            .filter(|e| {
                self.networks
                    .iter()
                    .any(|n| n.name == e.network && n.gateway_mode == GatewayMode::Routed)
            })
            .map(|e| e.ip)
            .collect();
        self.publications
            .iter()
            .filter_map(|p| match p.spec.container_ip {
                IpAddr::V4(ip) if routed.contains(&ip) => Some(datapath_common::OpenPort {
                    addr_be: u32::from_ne_bytes(ip.octets()),
                    port_be: p.spec.container_port.to_be(),
                    proto: p.spec.proto.number(),
                    _pad: 0,
                }),
                _ => None,
            })
            .collect()
    }

    /// Checks what the loader's types cannot: every name, key, slot and
    /// address unique, interfaces named as netagent names them, ports
    /// nonzero, references resolved. `Err` names the first offending entry.
    pub fn check(&self) -> Result<(), String> {
        use std::collections::HashSet;
        fn unique<T: std::hash::Hash + Eq>(
            seen: &mut HashSet<T>,
            key: T,
            what: impl FnOnce() -> String,
        ) -> Result<(), String> {
            if seen.insert(key) {
                Ok(())
            } else {
                Err(format!("duplicate {}", what()))
            }
        }
        let mut pubs = HashSet::new();
        let mut slots = HashSet::new();
        for p in &self.publications {
            let s = p.spec;
            if s.host_port == 0 || s.container_port == 0 {
                return Err(format!("publication {s} has port 0"));
            }
            if s.host_ip.is_ipv4() && s.container_ip.is_ipv6() {
                return Err(format!(
                    "publication {s} has an IPv4 host address and an IPv6 container address"
                ));
            }
            let uncounted = p.stats_slot == datapath_common::NO_STATS_SLOT;
            if p.stats_slot >= datapath_common::MAX_PUBLICATIONS && !uncounted {
                return Err(format!("publication {s} has counter slot {}", p.stats_slot));
            }
            unique(&mut pubs, (s.host_ip, s.host_port, s.proto), || {
                format!("publication {s}")
            })?;
            if !uncounted {
                unique(&mut slots, p.stats_slot, || {
                    format!("counter slot {} (publication {s})", p.stats_slot)
                })?;
            }
            if let Some(owner) = p.owner
                && !self.containers.iter().any(|c| c.uid == owner)
            {
                return Err(format!(
                    "publication {s} is owned by no container (uid {owner})"
                ));
            }
        }
        let mut net_names = HashSet::new();
        let mut net_ids = HashSet::new();
        let mut bridges = HashSet::new();
        for n in &self.networks {
            unique(&mut net_names, n.name.as_str(), || {
                format!("network {}", n.name)
            })?;
            if n.net_id == 0 {
                return Err(format!("network {} has number 0", n.name));
            }
            unique(&mut net_ids, n.net_id, || {
                format!("network number {} ({})", n.net_id, n.name)
            })?;
            if !crate::model::is_bridge_name(&n.bridge) {
                return Err(format!(
                    "network {} names bridge {:?}, not one of netagent's",
                    n.name, n.bridge
                ));
            }
            unique(&mut bridges, n.bridge.as_str(), || {
                format!("bridge {}", n.bridge)
            })?;
            if n.ipam.allocated.contains(&n.ipam.gateway)
                || n.ipam6
                    .as_ref()
                    .is_some_and(|i| i.allocated.contains(&i.gateway))
            {
                return Err(format!("network {} hands out its gateway", n.name));
            }
        }
        for (i, a) in self.networks.iter().enumerate() {
            for b in &self.networks[i + 1..] {
                if a.ipam.subnet.contains(&b.ipam.subnet.network())
                    || b.ipam.subnet.contains(&a.ipam.subnet.network())
                {
                    return Err(format!(
                        "networks {} and {} overlap ({} and {})",
                        a.name, b.name, a.ipam.subnet, b.ipam.subnet
                    ));
                }
                if let (Some(x), Some(y)) = (&a.ipam6, &b.ipam6)
                    && (x.subnet.contains(&y.subnet.network())
                        || y.subnet.contains(&x.subnet.network()))
                {
                    return Err(format!(
                        "networks {} and {} overlap ({} and {})",
                        a.name, b.name, x.subnet, y.subnet
                    ));
                }
            }
        }
        let mut names = HashSet::new();
        let mut uids = HashSet::new();
        let mut ifnames = HashSet::new();
        let mut addrs = HashSet::new();
        let mut addrs6 = HashSet::new();
        for c in &self.containers {
            unique(&mut names, c.name.as_str(), || {
                format!("container {}", c.name)
            })?;
            unique(&mut uids, c.uid, || {
                format!("container uid {} ({})", c.uid, c.name)
            })?;
            if let crate::model::NetworkMode::Container { target } = &c.mode
                && !self.containers.iter().any(|t| &t.name == target)
            {
                return Err(format!(
                    "container {} joins missing container {target}",
                    c.name
                ));
            }
            for ep in c.endpoints() {
                let network = self
                    .networks
                    .iter()
                    .find(|n| n.name == ep.network)
                    .ok_or_else(|| {
                        format!("container {} is on missing network {}", c.name, ep.network)
                    })?;
                if !crate::model::is_endpoint_name(&ep.host_ifname) {
                    return Err(format!(
                        "container {} names host interface {:?}, not one of netagent's",
                        c.name, ep.host_ifname
                    ));
                }
                unique(&mut ifnames, ep.host_ifname.as_str(), || {
                    format!("host interface {} (container {})", ep.host_ifname, c.name)
                })?;
                unique(&mut addrs, ep.ip, || {
                    format!("address {} (container {})", ep.ip, c.name)
                })?;
                if !network.ipam.subnet.contains(&ep.ip) || ep.ip == network.ipam.gateway {
                    return Err(format!(
                        "container {} has address {} outside network {} ({})",
                        c.name, ep.ip, network.name, network.ipam.subnet
                    ));
                }
                if let Some(ip6) = ep.ip6 {
                    unique(&mut addrs6, ip6, || {
                        format!("address {ip6} (container {})", c.name)
                    })?;
                    let inside = network
                        .ipam6
                        .as_ref()
                        .is_some_and(|i| i.subnet.contains(&ip6) && ip6 != i.gateway);
                    if !inside {
                        return Err(format!(
                            "container {} has IPv6 address {ip6} outside network {}",
                            c.name, network.name
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("state file {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("state file {path} has version {found}, this netagent understands {STATE_VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("another netagent daemon holds {path}")]
    Locked { path: PathBuf },
    /// A file that parses but contradicts itself: acted on, it could point
    /// the datapath at the wrong interface or address.
    #[error("state file {path} is inconsistent: {entry}; fix or remove it (nothing was changed)")]
    Inconsistent { path: PathBuf, entry: String },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StateError + use<> {
    let path = path.to_owned();
    move |source| StateError::Io { op, path, source }
}

/// The state directory, locked for the lifetime of this value so that two
/// daemons never share one.
#[derive(Debug)]
pub struct StateStore {
    dir: PathBuf,
    /// Held open: the flock lives as long as the descriptor.
    _lock: File,
    /// Tests: the next save fails (a full disk, say).
    #[cfg(test)]
    pub(crate) fail_next_save: std::sync::atomic::AtomicBool,
}

impl StateStore {
    /// Creates the directory if needed (mode 0700) and takes its lock.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        use std::os::unix::fs::DirBuilderExt as _;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err("creating state directory", dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("opening", &lock_path))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(StateError::Locked { path: lock_path });
        }
        Ok(Self {
            dir: dir.to_owned(),
            _lock: lock,
            #[cfg(test)]
            fail_next_save: Default::default(),
        })
    }

    fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Loads the state; a missing file is an empty state (first start).
    pub fn load(&self) -> Result<DesiredState, StateError> {
        let path = self.path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(DesiredState {
                    version: STATE_VERSION,
                    ..DesiredState::default()
                });
            }
            Err(e) => return Err(io_err("reading", &path)(e)),
        };
        let mut state: DesiredState =
            serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt {
                path: path.clone(),
                source,
            })?;
        match state.version {
            1 => state.version = STATE_VERSION,
            STATE_VERSION => {}
            found => return Err(StateError::Version { path, found }),
        }
        if let Err(entry) = state.check() {
            return Err(StateError::Inconsistent { path, entry });
        }
        Ok(state)
    }

    /// Replaces the state file atomically and durably.
    pub fn save(&self, state: &DesiredState) -> Result<(), StateError> {
        let path = self.path();
        #[cfg(test)]
        if self
            .fail_next_save
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            return Err(StateError::Io {
                op: "writing",
                path,
                source: io::Error::from_raw_os_error(libc::ENOSPC),
            });
        }
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        // Compact: with 50,000 publications the pretty form is half as big
        // again and takes as long to write as the map writes (jq reads it).
        let json = serde_json::to_vec(state).expect("state serializes");
        let mut file = File::create(&tmp).map_err(io_err("creating", &tmp))?;
        file.write_all(&json).map_err(io_err("writing", &tmp))?;
        file.sync_all().map_err(io_err("syncing", &tmp))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(io_err("renaming into place", &path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("syncing directory", &self.dir))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::PortSpec;

    fn publication(spec: &str, slot: u32) -> Publication {
        Publication {
            spec: spec.parse::<PortSpec>().unwrap(),
            stats_slot: slot,
            owner: None,
        }
    }

    #[test]
    fn round_trips_and_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        assert!(store.load().unwrap().publications.is_empty());
        let state = DesiredState {
            version: STATE_VERSION,
            publications: vec![
                publication("8080->10.0.0.2:80", 0),
                publication("127.0.0.1:53->10.0.0.3:53/udp", 7),
            ],
            ..DesiredState::default()
        };
        store.save(&state).unwrap();
        assert_eq!(store.load().unwrap(), state);
        assert!(!dir.path().join("state.json.tmp").exists());
    }

    #[test]
    fn version_1_files_load_as_version_2() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        fs::write(
            dir.path().join("state.json"),
            br#"{"version": 1, "publications": [{"host_ip": "0.0.0.0", "host_port": 80,
                "container_ip": "10.0.0.2", "container_port": 80, "proto": "tcp",
                "stats_slot": 3}]}"#,
        )
        .unwrap();
        let state = store.load().unwrap();
        assert_eq!(state.version, STATE_VERSION);
        assert_eq!(state.publications.len(), 1);
        assert_eq!(state.publications[0].owner, None);
        assert!(state.networks.is_empty() && state.containers.is_empty());
    }

    #[test]
    fn inconsistent_files_are_refused_naming_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let base = r#""networks": [{"name": "bridge", "id": "x", "net_id": 1, "driver": "bridge",
              "bridge": "na-br0", "internal": false, "icc": true,
              "ipam": {"subnet": "172.17.0.0/16", "gateway": "172.17.0.1", "ip_range": null,
                       "allocated": ["172.17.0.2"], "cursor": null}}]"#;
        let container = |ifname: &str, ip: &str| {
            format!(
                r#"{{"name": "web", "id": "y", "uid": 1, "netns": "/run/netns/web",
                  "mode": {{"mode": "bridge", "endpoints": [{{"network": "bridge", "ifname": "eth0",
                  "host_ifname": "{ifname}", "host_ifindex": 5, "ip": "{ip}", "mac": "02:00:00:00:00:01",
                  "aliases": []}}]}}, "exposed": [], "port_mappings": [], "publish_all": false}}"#
            )
        };
        let cases = [
            (
                format!(r#"{{"version": 2, "publications": [], {base}, "containers": [{}]}}"#, container("eth0", "172.17.0.2")),
                "names host interface \"eth0\"",
            ),
            (
                format!(
                    r#"{{"version": 2, "publications": [], {base}, "containers": [{}, {}]}}"#,
                    container("na-v1", "172.17.0.2"),
                    container("na-v2", "172.17.0.2").replace("\"web\"", "\"db\"").replace("\"uid\": 1", "\"uid\": 2")
                ),
                "duplicate address 172.17.0.2",
            ),
            (
                r#"{"version": 2, "publications": [{"host_ip": "0.0.0.0", "host_port": 0,
                    "container_ip": "10.0.0.2", "container_port": 80, "proto": "tcp", "stats_slot": 1}]}"#
                    .to_owned(),
                "has port 0",
            ),
            (
                r#"{"version": 2, "publications": [
                    {"host_ip": "0.0.0.0", "host_port": 80, "container_ip": "10.0.0.2", "container_port": 80, "proto": "tcp", "stats_slot": 1},
                    {"host_ip": "0.0.0.0", "host_port": 80, "container_ip": "10.0.0.3", "container_port": 80, "proto": "tcp", "stats_slot": 2}]}"#
                    .to_owned(),
                "duplicate publication 0.0.0.0:80",
            ),
        ];
        for (json, want) in cases {
            fs::write(dir.path().join("state.json"), &json).unwrap();
            let err = store.load().unwrap_err().to_string();
            assert!(
                err.contains("is inconsistent") && err.contains(want),
                "{want}: {err}"
            );
        }
        // A consistent file of the same shape loads.
        let good = format!(
            r#"{{"version": 2, "publications": [], {base}, "containers": [{}]}}"#,
            container("na-v1", "172.17.0.2")
        );
        fs::write(dir.path().join("state.json"), good).unwrap();
        assert_eq!(store.load().unwrap().containers.len(), 1);
    }

    #[test]
    fn a_second_store_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = StateStore::open(dir.path()).unwrap();
        let err = StateStore::open(dir.path()).unwrap_err();
        assert!(matches!(err, StateError::Locked { .. }), "{err}");
    }

    #[test]
    fn corrupt_and_future_files_are_refused_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        fs::write(dir.path().join("state.json"), b"{not json").unwrap();
        assert!(matches!(store.load(), Err(StateError::Corrupt { .. })));
        fs::write(
            dir.path().join("state.json"),
            br#"{"version": 99, "publications": []}"#,
        )
        .unwrap();
        assert!(matches!(
            store.load(),
            Err(StateError::Version { found: 99, .. })
        ));
    }
}
