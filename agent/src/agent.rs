//! The agent's logic: desired state in, kernel maps out.
//!
//! Invariants:
//! - the state file is written before the maps, and a failed map write
//!   restores the previous state file, so an error changes nothing;
//! - no two publications overlap: same protocol and port on the same host
//!   address, or on any address when either is the wildcard (Docker's rule);
//! - counter slots are unique among live publications and zeroed on reuse.

use std::{
    collections::{BTreeSet, HashMap},
    net::Ipv4Addr,
};

use datapath_common::{Event, MAX_PUBLICATIONS, OpenPort, PubKey, PubStats, PubValue};
use serde::{Deserialize, Serialize};
use tracing::{error, info};

use crate::{
    containers::NetError,
    datapath::{Datapath, DatapathError},
    host::{BridgeLink, Host, HostError, HostPort},
    ipam::IpamError,
    portmap::PortMapError,
    spec::{PortSpec, Proto, SpecError},
    state::{DesiredState, Publication, StateError, StateStore},
};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// Docker's wording, which users and scripts know.
    #[error("Bind for {ip}:{port} failed: port is already allocated ({existing} is published)")]
    AlreadyAllocated {
        ip: Ipv4Addr,
        port: u16,
        existing: PortSpec,
    },
    #[error("no publication {0}")]
    NotPublished(PortSpec),
    #[error("{published} is published, not {requested}")]
    Mismatch {
        published: PortSpec,
        requested: PortSpec,
    },
    #[error("publication table is full ({MAX_PUBLICATIONS} entries)")]
    Full,
    #[error("saving state: {0}")]
    State(#[from] StateError),
    #[error("datapath: {0}")]
    Datapath(#[from] DatapathError),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    PortMap(#[from] PortMapError),
    #[error(transparent)]
    Net(#[from] NetError),
    /// Docker's wrapping of a port error of a container's endpoint.
    #[error(
        "driver failed programming external connectivity on endpoint {endpoint} ({id}): {source}"
    )]
    Connectivity {
        endpoint: String,
        id: String,
        #[source]
        source: Box<AgentError>,
    },
}

/// The datapath's key for a publication.
pub fn pub_key(spec: &PortSpec) -> PubKey {
    PubKey {
        addr_be: u32::from_ne_bytes(spec.host_ip.octets()),
        port_be: spec.host_port.to_be(),
        proto: spec.proto.number(),
        _pad: 0,
    }
}

/// The datapath's value for a publication.
pub fn pub_value(p: &Publication) -> PubValue {
    PubValue {
        addr_be: u32::from_ne_bytes(p.spec.container_ip.octets()),
        port_be: p.spec.container_port.to_be(),
        _pad: 0,
        stats_slot: p.stats_slot,
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

/// One publication's counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicationStats {
    pub publication: PortSpec,
    pub fwd_packets: u64,
    pub fwd_bytes: u64,
    pub rev_packets: u64,
    pub rev_bytes: u64,
}

/// Everything `netagent stats` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub publications: Vec<PublicationStats>,
    /// Datapath events by name, in `Event::ALL` order.
    pub events: Vec<(String, u64)>,
}

pub struct Agent<D, H> {
    pub(crate) store: StateStore,
    pub(crate) state: DesiredState,
    pub(crate) datapath: D,
    pub(crate) host: H,
    /// Where the next random host port search starts, per (host IP,
    /// protocol): Docker's rotating allocator, so a just-freed port is not
    /// handed out again at once. Not persisted, as in Docker.
    pub(crate) port_cursors: HashMap<(Ipv4Addr, Proto), u16>,
    /// Bridge interfaces by name, as [`Host::ensure_bridge`] last reported
    /// them (filled at network creation and at start).
    pub(crate) bridges: HashMap<String, BridgeLink>,
}

/// The reservation a publication needs.
pub(crate) fn host_port(spec: &PortSpec) -> HostPort {
    HostPort {
        ip: spec.host_ip,
        port: spec.host_port,
        proto: spec.proto,
    }
}

impl<D: Datapath, H: Host> Agent<D, H> {
    /// Loads the desired state; call [`Agent::reconcile`] before serving.
    pub fn new(store: StateStore, datapath: D, host: H) -> Result<Self, AgentError> {
        let state = store.load()?;
        Ok(Self {
            store,
            state,
            datapath,
            host,
            port_cursors: HashMap::new(),
            bridges: HashMap::new(),
        })
    }

    pub fn datapath_mut(&mut self) -> &mut D {
        &mut self.datapath
    }

    pub fn host_mut(&mut self) -> &mut H {
        &mut self.host
    }

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
        let actual: std::collections::HashMap<PubKey, PubValue> = match self.datapath.publications()
        {
            Ok(entries) => entries.into_iter().collect(),
            Err(e) => {
                report
                    .errors
                    .push(format!("reading the publication map: {e}"));
                return report;
            }
        };
        let mut wanted = std::collections::HashSet::new();
        for p in &self.state.publications {
            let key = pub_key(&p.spec);
            let value = pub_value(p);
            wanted.insert(key);
            let done = match actual.get(&key) {
                Some(v) if *v == value => continue,
                Some(_) => self
                    .datapath
                    .upsert_publication(&key, &value)
                    .map(|()| report.updated += 1),
                None => self
                    .datapath
                    .reset_stats(p.stats_slot)
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
        let mut reserved = Vec::new();
        for p in &published {
            if let Err(e) = self.host.reserve_port(host_port(&p.spec)) {
                self.release_ports(&reserved);
                return Err(e.into());
            }
            reserved.push(host_port(&p.spec));
        }
        let mut next = self.state.clone();
        next.publications.extend_from_slice(&published);
        if let Err(e) = self.store.save(&next) {
            self.release_ports(&reserved);
            return Err(e.into());
        }
        if let Err(e) = self.install_publications(&published) {
            self.release_ports(&reserved);
            self.restore_state_file();
            return Err(e);
        }
        self.state = next;
        self.sync_open_ports();
        match published.as_slice() {
            [p] => info!(spec = %p.spec, stats_slot = p.stats_slot, "published"),
            many => info!(count = many.len(), "published in bulk"),
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
        let mut next = self.state.clone();
        next.publications.remove(index);
        self.store.save(&next)?;
        if let Err(e) = self.datapath.remove_publication(&pub_key(&spec)) {
            self.restore_state_file();
            return Err(e.into());
        }
        self.host.release_port(host_port(&spec));
        self.state = next;
        self.sync_open_ports();
        info!(%spec, "unpublished");
        Ok(publication)
    }

    /// Publications, optionally only those to `container_ip`, in natural
    /// order (container address, port, protocol, then host side).
    pub fn list(&self, container_ip: Option<Ipv4Addr>) -> Vec<Publication> {
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
                let PubStats {
                    fwd_packets,
                    fwd_bytes,
                    rev_packets,
                    rev_bytes,
                } = self.datapath.stats(p.stats_slot)?;
                Ok(PublicationStats {
                    publication: p.spec,
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
            publications,
            events,
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
    /// refused if that endpoint's network is internal.
    fn owner_of(&self, spec: &PortSpec) -> Result<Option<u64>, AgentError> {
        for c in &self.state.containers {
            if let Some(ep) = c.endpoints().iter().find(|e| e.ip == spec.container_ip) {
                if self
                    .state
                    .networks
                    .iter()
                    .any(|n| n.name == ep.network && n.internal)
                {
                    return Err(crate::containers::NetError::InternalPublish {
                        container: c.name.clone(),
                        network: ep.network.clone(),
                    }
                    .into());
                }
                return Ok(Some(c.uid));
            }
        }
        Ok(None)
    }

    /// Publications for `specs` with fresh counter slots, owned by `owner`.
    pub(crate) fn new_publications(
        &self,
        specs: &[PortSpec],
        owner: Option<u64>,
    ) -> Result<Vec<Publication>, AgentError> {
        let slots = self.free_slots(specs.len()).ok_or(AgentError::Full)?;
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

    /// Writes publications into the kernel map, zeroing their counters
    /// first; on failure the ones already written are taken out again.
    pub(crate) fn install_publications(
        &mut self,
        published: &[Publication],
    ) -> Result<(), AgentError> {
        for (done, p) in published.iter().enumerate() {
            let applied = self.datapath.reset_stats(p.stats_slot).and_then(|()| {
                self.datapath
                    .upsert_publication(&pub_key(&p.spec), &pub_value(p))
            });
            if let Err(e) = applied {
                self.uninstall_publications(&published[..done]);
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Takes publications out of the kernel map, logging what fails (used
    /// on undo and teardown paths, where the first error must not stop the
    /// rest).
    pub(crate) fn uninstall_publications(&mut self, published: &[Publication]) -> usize {
        let mut failed = 0;
        for p in published {
            if let Err(e) = self.datapath.remove_publication(&pub_key(&p.spec)) {
                error!(spec = %p.spec, error = %e, "removing a publication from the map");
                failed += 1;
            }
        }
        failed
    }

    pub(crate) fn release_ports(&mut self, ports: &[HostPort]) {
        for port in ports {
            self.host.release_port(*port);
        }
    }

    /// The container ports reachable by direct routing: every published
    /// container port of an endpoint on a `routed` network.
    pub(crate) fn open_ports(&self) -> Vec<OpenPort> {
        let routed: BTreeSet<Ipv4Addr> = self
            .state
            .containers
            .iter()
            .flat_map(|c| c.endpoints())
            .filter(|e| {
                self.state.networks.iter().any(|n| {
                    n.name == e.network && n.gateway_mode == crate::model::GatewayMode::Routed
                })
            })
            .map(|e| e.ip)
            .collect();
        self.state
            .publications
            .iter()
            .filter(|p| routed.contains(&p.spec.container_ip))
            .map(|p| OpenPort {
                addr_be: u32::from_ne_bytes(p.spec.container_ip.octets()),
                port_be: p.spec.container_port.to_be(),
                proto: p.spec.proto.number(),
                _pad: 0,
            })
            .collect()
    }

    /// Brings the open-port map in line with the state, after a change of
    /// publications or endpoints. Best effort: a failure is logged, and
    /// the next start's reconcile writes it again.
    pub(crate) fn sync_open_ports(&mut self) {
        let ports = self.open_ports();
        if let Err(e) = self.datapath.set_open_ports(&ports) {
            error!(error = %e, "updating the open-port map (routed networks)");
        }
    }

    /// The `n` lowest counter slots no publication holds, if there are `n`.
    fn free_slots(&self, n: usize) -> Option<Vec<u32>> {
        let used: BTreeSet<u32> = self
            .state
            .publications
            .iter()
            .map(|p| p.stats_slot)
            .collect();
        let free: Vec<u32> = (0..MAX_PUBLICATIONS)
            .filter(|s| !used.contains(s))
            .take(n)
            .collect();
        (free.len() == n).then_some(free)
    }

    /// Puts the in-memory (previous) state back on disk after a failed
    /// kernel write. If even that fails, the next start's reconcile still
    /// converges on whatever the file says; say so loudly.
    pub(crate) fn restore_state_file(&self) {
        if let Err(e) = self.store.save(&self.state) {
            error!(error = %e, "could not restore the state file after a failed datapath write");
        }
    }
}

/// Host ports in use, by (protocol, port), for Docker's overlap rule: two
/// publications clash on the same protocol and port when their host
/// addresses are equal or either is the wildcard.
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
            .find(|p| {
                p.host_ip == spec.host_ip
                    || p.host_ip.is_unspecified()
                    || spec.host_ip.is_unspecified()
            })
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{datapath::fake::FakeDatapath, host::fake::FakeHost};

    fn spec(s: &str) -> PortSpec {
        s.parse().unwrap()
    }

    fn agent(dir: &tempfile::TempDir) -> Agent<FakeDatapath, FakeHost> {
        let store = StateStore::open(dir.path()).unwrap();
        Agent::new(store, FakeDatapath::default(), FakeHost::default()).unwrap()
    }

    fn reopen(dir: &tempfile::TempDir, dp: FakeDatapath) -> Agent<FakeDatapath, FakeHost> {
        let store = StateStore::open(dir.path()).unwrap();
        Agent::new(store, dp, FakeHost::default()).unwrap()
    }

    #[test]
    fn publish_writes_key_and_value_in_network_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = agent(&dir);
        let p = a.publish(spec("10.0.0.1:5000->172.17.0.2:80/udp")).unwrap();
        let entries = a.datapath.publications().unwrap();
        assert_eq!(entries.len(), 1);
        let (key, value) = entries[0];
        assert_eq!(key.addr_be.to_ne_bytes(), [10, 0, 0, 1]);
        assert_eq!(key.port_be.to_ne_bytes(), 5000u16.to_be_bytes());
        assert_eq!(key.proto, 17);
        assert_eq!(value.addr_be.to_ne_bytes(), [172, 17, 0, 2]);
        assert_eq!(value.port_be.to_ne_bytes(), 80u16.to_be_bytes());
        assert_eq!(value.stats_slot, p.stats_slot);
    }

    #[test]
    fn overlapping_publications_are_refused_with_dockers_wording() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = agent(&dir);
        a.publish(spec("5000->172.17.0.2:80")).unwrap();
        for clash in [
            "5000->172.17.0.3:81",
            "10.0.0.1:5000->172.17.0.3:81",
            "0.0.0.0:5000->172.17.0.2:80/tcp",
        ] {
            let err = a.publish(spec(clash)).unwrap_err().to_string();
            assert!(
                err.starts_with("Bind for ")
                    && err.contains(":5000 failed: port is already allocated"),
                "{clash}: {err}"
            );
        }
        // Other protocol, other port: fine.
        a.publish(spec("5000->172.17.0.2:80/udp")).unwrap();
        a.publish(spec("5001->172.17.0.2:80")).unwrap();
        // A specific address clashes with a later wildcard too.
        a.publish(spec("10.0.0.1:6000->172.17.0.2:80")).unwrap();
        assert!(a.publish(spec("6000->172.17.0.9:80")).is_err());
        a.publish(spec("10.0.0.2:6000->172.17.0.2:80")).unwrap();
        assert_eq!(a.datapath.publications.len(), 5);
    }

    #[test]
    fn a_failed_datapath_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = agent(&dir);
        a.publish(spec("5000->172.17.0.2:80")).unwrap();
        let before = std::fs::read(dir.path().join("state.json")).unwrap();
        a.datapath.fail_writes = true;
        assert!(a.publish(spec("5001->172.17.0.2:81")).is_err());
        assert!(a.unpublish(spec("5000->172.17.0.2:80")).is_err());
        assert_eq!(
            std::fs::read(dir.path().join("state.json")).unwrap(),
            before
        );
        assert_eq!(a.list(None).len(), 1);
        a.datapath.fail_writes = false;
        assert_eq!(a.datapath.publications.len(), 1);
    }

    #[test]
    fn a_full_map_is_a_clear_error_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = agent(&dir);
        a.datapath.capacity = Some(1);
        a.publish(spec("5000->172.17.0.2:80")).unwrap();
        let err = a.publish(spec("5001->172.17.0.2:80")).unwrap_err();
        assert!(err.to_string().contains("map full"), "{err}");
        assert_eq!(a.list(None).len(), 1);
    }

    #[test]
    fn publish_many_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = agent(&dir);
        a.publish(spec("5000->172.17.0.2:80")).unwrap();
        // A clash inside the batch, and one with an existing publication.
        for batch in [
            vec![
                spec("6000->172.17.0.2:80"),
                spec("10.0.0.1:6000->172.17.0.3:80"),
            ],
            vec![spec("6001->172.17.0.2:80"), spec("5000->172.17.0.3:80")],
        ] {
            let err = a.publish_many(&batch).unwrap_err().to_string();
            assert!(err.contains("port is already allocated"), "{err}");
            assert_eq!(a.list(None).len(), 1);
            assert_eq!(a.datapath.publications.len(), 1);
        }
        // A map that fills up half-way: the first writes are undone.
        a.datapath.capacity = Some(3);
        let batch: Vec<PortSpec> = (7000..7004)
            .map(|p| spec(&format!("{p}->172.17.0.2:80")))
            .collect();
        assert!(a.publish_many(&batch).is_err());
        assert_eq!(a.datapath.publications.len(), 1, "partial writes undone");
        assert_eq!(a.list(None).len(), 1);
        a.datapath.capacity = None;
        let published = a.publish_many(&batch).unwrap();
        assert_eq!(published.len(), 4);
        let slots: BTreeSet<u32> = a.list(None).iter().map(|p| p.stats_slot).collect();
        assert_eq!(slots.len(), 5, "distinct slots");
        assert_eq!(a.datapath.publications.len(), 5);
    }

    #[test]
    fn unpublish_needs_the_exact_publication() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = agent(&dir);
        a.publish(spec("5000->172.17.0.2:80")).unwrap();
        let err = a
            .unpublish(spec("5000->172.17.0.9:80"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("is published, not"), "{err}");
        let err = a
            .unpublish(spec("5001->172.17.0.2:80"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("no publication"), "{err}");
        a.unpublish(spec("5000->172.17.0.2:80")).unwrap();
        assert!(a.datapath.publications.is_empty());
        assert!(a.list(None).is_empty());
    }

    #[test]
    fn slots_are_unique_reused_and_zeroed() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = agent(&dir);
        let p0 = a.publish(spec("5000->172.17.0.2:80")).unwrap();
        let p1 = a.publish(spec("5001->172.17.0.2:80")).unwrap();
        assert_ne!(p0.stats_slot, p1.stats_slot);
        a.datapath.stats.insert(
            p0.stats_slot,
            PubStats {
                fwd_packets: 9,
                ..Default::default()
            },
        );
        a.unpublish(p0.spec).unwrap();
        let p2 = a.publish(spec("5002->172.17.0.2:80")).unwrap();
        assert_eq!(p2.stats_slot, p0.stats_slot, "lowest free slot is reused");
        assert_eq!(a.datapath.stats(p2.stats_slot).unwrap().fwd_packets, 0);
    }

    #[test]
    fn reconcile_converges_the_map_on_the_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = agent(&dir);
        let kept = a.publish(spec("5000->172.17.0.2:80")).unwrap();
        let changed = a.publish(spec("5001->172.17.0.2:81")).unwrap();
        let missing = a.publish(spec("5002->172.17.0.2:82/udp")).unwrap();
        let mut dp = std::mem::take(&mut a.datapath);
        drop(a);
        // The kernel drifted while the agent was away.
        dp.publications.remove(&{
            let k = pub_key(&missing.spec);
            (k.addr_be, k.port_be, k.proto)
        });
        let k = pub_key(&changed.spec);
        dp.publications
            .get_mut(&(k.addr_be, k.port_be, k.proto))
            .unwrap()
            .port_be = 1;
        let stray = pub_key(&spec("9999->172.17.0.2:99"));
        dp.upsert_publication(&stray, &PubValue::default()).unwrap();
        dp.stats.insert(
            kept.stats_slot,
            PubStats {
                fwd_packets: 5,
                ..Default::default()
            },
        );

        let mut a = reopen(&dir, dp);
        let report = a.reconcile();
        assert_eq!(
            report,
            ReconcileReport {
                added: 1,
                updated: 1,
                removed: 1,
                errors: Vec::new(),
            }
        );
        let mut want: Vec<(PubKey, PubValue)> = [kept, changed, missing]
            .iter()
            .map(|p| (pub_key(&p.spec), pub_value(p)))
            .collect();
        want.sort_by_key(|(k, _)| (k.addr_be, k.port_be, k.proto));
        assert_eq!(a.datapath.publications().unwrap(), want);
        assert_eq!(
            a.datapath.stats(kept.stats_slot).unwrap().fwd_packets,
            5,
            "an entry already right is left alone, counters included"
        );
        assert_eq!(a.reconcile(), ReconcileReport::default());
        // A full map: the entries that fit go in, the rest is reported.
        let mut dp = std::mem::take(&mut a.datapath);
        drop(a);
        dp.publications.clear();
        dp.capacity = Some(2);
        let mut a = reopen(&dir, dp);
        let report = a.reconcile();
        assert_eq!((report.added, report.errors.len()), (2, 1), "{report:?}");
        assert!(report.errors[0].contains("map full"), "{report:?}");
    }

    #[test]
    fn list_filters_and_sorts_naturally() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = agent(&dir);
        for s in [
            "8080->172.17.0.3:80",
            "10000->172.17.0.2:1000/udp",
            "9000->172.17.0.2:90",
            "10001->172.17.0.2:1000",
        ] {
            a.publish(spec(s)).unwrap();
        }
        let got: Vec<String> = a
            .list(Some("172.17.0.2".parse().unwrap()))
            .iter()
            .map(|p| p.spec.to_string())
            .collect();
        assert_eq!(
            got,
            [
                "0.0.0.0:9000->172.17.0.2:90/tcp",
                "0.0.0.0:10001->172.17.0.2:1000/tcp",
                "0.0.0.0:10000->172.17.0.2:1000/udp",
            ]
        );
        assert_eq!(a.list(None).len(), 4);
    }
}
