//! Host ports of a container's `-p`/`-P`: choosing a host port for every
//! container port (fixed, any in a range, or a random ephemeral one, with
//! Docker's rotating cursor), and reserving each against other processes.

use std::net::{IpAddr, Ipv4Addr};

use tracing::warn;

use crate::{
    agent::Agent,
    datapath::Datapath,
    error::{AgentError, NetError},
    host::{Host, HostError},
    journal::{Journal, Step},
    model::{Container, EndpointIps},
    portmap::HostChoice,
    publications::{PortIndex, check_ipv6_target, host_port},
    spec::{PortSpec, Proto},
    state::Publication,
};

/// One container port to publish, before its host port is chosen.
struct Wanted {
    host_ip: IpAddr,
    choice: HostChoice,
    container_port: u16,
    proto: Proto,
}

/// What `container`'s `-p` and `-P` ask for: every `-p` container port,
/// and with `-P` every exposed port no `-p` maps.
fn wanted(container: &Container) -> Vec<Wanted> {
    let mut wanted = Vec::new();
    for m in &container.port_mappings {
        for (choice, container_port) in m.expand() {
            wanted.push(Wanted {
                host_ip: m.host_ip,
                choice,
                container_port,
                proto: m.proto,
            });
        }
    }
    if container.publish_all {
        for e in &container.exposed {
            for cport in e.ports.ports() {
                let mapped = container
                    .port_mappings
                    .iter()
                    .any(|m| m.proto == e.proto && m.container.ports().any(|p| p == cport));
                if !mapped {
                    wanted.push(Wanted {
                        host_ip: Ipv4Addr::UNSPECIFIED.into(),
                        choice: HostChoice::Ephemeral,
                        container_port: cport,
                        proto: e.proto,
                    });
                }
            }
        }
    }
    wanted
}

impl<D: Datapath, H: Host> Agent<D, H> {
    /// Chooses, reserves and installs the host ports of `container`'s
    /// `-p`/`-P` to the endpoint with addresses `ips`, owned by it; each
    /// step's undo journaled.
    pub(crate) fn publish_ports(
        &mut self,
        container: &Container,
        ips: EndpointIps,
        journal: &mut Journal,
    ) -> Result<Vec<Publication>, AgentError> {
        let specs = self.allocate_ports(container, ips, journal)?;
        let published = self.new_publications(&specs, Some(container.uid))?;
        self.install_publications(&published, journal)?;
        Ok(published)
    }

    /// Chooses and reserves a host port for every port `container`
    /// publishes, to its endpoint with addresses `ips` (the publications
    /// name its IPv4 address, which stands for the container on either
    /// family); each reservation's release is journaled. A host IPv6
    /// address the endpoint cannot be reached at is refused
    /// ([`check_ipv6_target`]).
    pub(crate) fn allocate_ports(
        &mut self,
        container: &Container,
        ips: EndpointIps,
        journal: &mut Journal,
    ) -> Result<Vec<PortSpec>, AgentError> {
        let mut taken = self.port_index();
        let mut specs = Vec::new();
        for w in wanted(container) {
            let spec = |host_port| PortSpec {
                host_ip: w.host_ip,
                host_port,
                container_ip: ips.v4.into(),
                container_port: w.container_port,
                proto: w.proto,
            };
            check_ipv6_target(&spec(1), ips.v6.is_some())?;
            let exhausted = |lo, hi| NetError::AllPortsAllocated {
                ip: w.host_ip,
                lo,
                hi,
                proto: w.proto,
            };
            let chosen = match w.choice {
                HostChoice::Fixed(port) => {
                    let s = spec(port);
                    taken.claim(&s)?;
                    self.host.reserve_port(host_port(&s))?;
                    s
                }
                HostChoice::AnyIn(lo, hi) => {
                    let candidates: Vec<u16> = (lo..=hi).collect();
                    self.first_free(&mut taken, &candidates, spec)?
                        .ok_or(exhausted(lo, hi))?
                }
                HostChoice::Ephemeral => {
                    let (lo, hi, skip) = self.host.ephemeral_ports();
                    let start = self
                        .port_cursors
                        .get(&(w.host_ip, w.proto))
                        .map(|c| c.wrapping_add(1))
                        .filter(|c| (lo..=hi).contains(c))
                        .unwrap_or(lo);
                    let candidates: Vec<u16> = (start..=hi)
                        .chain(lo..start)
                        .filter(|p| !skip.iter().any(|(a, b)| (*a..=*b).contains(p)))
                        .collect();
                    let s = self
                        .first_free(&mut taken, &candidates, spec)?
                        .ok_or(exhausted(lo, hi))?;
                    self.port_cursors.insert((w.host_ip, w.proto), s.host_port);
                    s
                }
            };
            journal.undo(Step::ReleasePort(host_port(&chosen)));
            specs.push(chosen);
        }
        Ok(specs)
    }

    /// The first candidate host port neither published nor held by another
    /// process; claimed and reserved. A host address the host does not
    /// have fails at once (no candidate can do better).
    fn first_free(
        &mut self,
        taken: &mut PortIndex,
        candidates: &[u16],
        spec: impl Fn(u16) -> PortSpec,
    ) -> Result<Option<PortSpec>, AgentError> {
        for &port in candidates {
            let s = spec(port);
            if taken.conflict(&s).is_some() {
                continue;
            }
            match self.host.reserve_port(host_port(&s)) {
                Ok(()) => {
                    taken.insert(s);
                    return Ok(Some(s));
                }
                Err(HostError::PortInUse { .. }) => continue,
                Err(e @ HostError::NotLocal { .. }) => return Err(e.into()),
                Err(e) => {
                    warn!(error = %e, port, "reserving a candidate host port");
                    continue;
                }
            }
        }
        Ok(None)
    }
}
