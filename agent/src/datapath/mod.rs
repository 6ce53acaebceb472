//! The kernel datapath behind a trait, so the agent's logic is tested
//! without root against [`fake::FakeDatapath`].

pub mod bpf;
pub mod cookie;
pub mod fake;
pub mod xdp_mode;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use datapath_common::{
    DatapathConfig, EndpointAddr, EndpointIface, EndpointIface6, Event, LinkHole, OpenPort, PubKey,
    PubKey6, PubStats, PubValue, PubValue6,
};

/// Errors from the datapath. `op` names what was being done. Sources are
/// boxed: aya's errors are large and these travel up every call.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("{op}: {source}")]
    Map {
        op: String,
        #[source]
        source: Box<aya::maps::MapError>,
    },
    #[error("{op}: {source}")]
    Program {
        op: String,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("{op}: {source}")]
    Load {
        op: String,
        #[source]
        source: Box<aya::EbpfError>,
    },
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// How the XDP program is attached (`netagent daemon --xdp-mode`).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum XdpAttachMode {
    /// Per interface: native XDP where the driver gains from it, TC only
    /// elsewhere (veth, virtio_net, ...); see `xdp_mode`.
    #[default]
    Auto,
    /// In the driver (falls back to generic where the driver has no XDP).
    Native,
    /// In the stack, after the skb is built (XDP_FLAGS_SKB_MODE).
    Generic,
    /// No XDP: TC ingress translates every packet. On veth, native XDP
    /// switches the peer to NAPI mode and copies each packet into an XDP
    /// buffer, which can cost more than the translation saves.
    Off,
}

/// The publication map and its counters. Keys and values are the ABI
/// types of `datapath_common`; implementations never interpret them.
pub trait PublicationMaps {
    /// Every publication in the map.
    fn publications(&self) -> Result<Vec<(PubKey, PubValue)>, DatapathError>;
    /// Inserts or replaces one publication (a single map write).
    fn upsert_publication(&mut self, key: &PubKey, value: &PubValue) -> Result<(), DatapathError>;
    /// Removes one publication; removing an absent key is not an error.
    fn remove_publication(&mut self, key: &PubKey) -> Result<(), DatapathError>;
    /// Adds publications whose keys the map does not hold (it mirrors the
    /// state, and these are new to the state), all or none, in one batch
    /// where the kernel has them: on a failure (a full map, say) the
    /// entries the call wrote are removed again.
    fn insert_publications(&mut self, entries: &[(PubKey, PubValue)]) -> Result<(), DatapathError>;
    /// Zeroes counter slots (before they are handed to new publications),
    /// in one batch where the kernel has them.
    fn reset_stats(&mut self, slots: &[u32]) -> Result<(), DatapathError>;
    /// A counter slot summed over CPUs.
    fn stats(&self, slot: u32) -> Result<PubStats, DatapathError>;
    /// How many counter slots there are (`datapath_common::stats_slots`
    /// of the host's CPUs); publications beyond get none.
    fn stats_slots(&self) -> u32;
    /// Datapath event counters summed over CPUs, in `Event::ALL` order
    /// (retired numbers left out).
    fn events(&self) -> Result<Vec<(Event, u64)>, DatapathError>;
}

/// The maps derived from the host and the settings, each replaced whole.
pub trait HostMaps {
    /// Writes the datapath's settings (masquerade ports and share).
    fn set_config(&mut self, config: &DatapathConfig) -> Result<(), DatapathError>;
    /// Makes the open-port map (container ports reachable by direct
    /// routing on `routed` networks) hold exactly `ports`.
    fn set_open_ports(&mut self, ports: &[OpenPort]) -> Result<(), DatapathError>;
    /// Makes the link-hole map (what legacy links open across icc=false
    /// networks) hold exactly `holes`.
    fn set_link_holes(&mut self, holes: &[LinkHole]) -> Result<(), DatapathError>;
    /// Makes the local-address maps (IPv4 and IPv6) hold exactly `addrs`
    /// (address, ifindex).
    fn set_local_addrs(&mut self, addrs: &[(IpAddr, u32)]) -> Result<(), DatapathError>;
    /// Makes the IPv6 publication map hold exactly `entries` (derived from
    /// the publications, `DesiredState::publications6`).
    fn set_publications6(&mut self, entries: &[(PubKey6, PubValue6)]) -> Result<(), DatapathError>;
    /// Makes the masquerade-address maps hold exactly `addrs` (served
    /// ifindex, the address masquerade uses there: at most one per family,
    /// each in its family's map).
    fn set_masq_addrs(&mut self, addrs: &[(u32, IpAddr)]) -> Result<(), DatapathError>;
}

/// The endpoint maps: container interfaces and container addresses.
pub trait EndpointMaps {
    /// Container interfaces (host-side ifindex) and their network.
    fn endpoint_ifaces(&self) -> Result<Vec<(u32, EndpointIface)>, DatapathError>;
    fn set_endpoint_iface(
        &mut self,
        ifindex: u32,
        iface: &EndpointIface,
    ) -> Result<(), DatapathError>;
    /// Removing an absent entry is not an error.
    fn remove_endpoint_iface(&mut self, ifindex: u32) -> Result<(), DatapathError>;
    /// Container addresses and their network.
    fn endpoint_addrs(&self) -> Result<Vec<(Ipv4Addr, EndpointAddr)>, DatapathError>;
    fn set_endpoint_addr(
        &mut self,
        addr: Ipv4Addr,
        endpoint: &EndpointAddr,
    ) -> Result<(), DatapathError>;
    /// Removing an absent entry is not an error.
    fn remove_endpoint_addr(&mut self, addr: Ipv4Addr) -> Result<(), DatapathError>;
    /// Dual-stack container interfaces (host-side ifindex) and their
    /// network's IPv6 side.
    fn endpoint_ifaces6(&self) -> Result<Vec<u32>, DatapathError>;
    fn set_endpoint_iface6(
        &mut self,
        ifindex: u32,
        iface: &EndpointIface6,
    ) -> Result<(), DatapathError>;
    fn remove_endpoint_iface6(&mut self, ifindex: u32) -> Result<(), DatapathError>;
    /// Container IPv6 addresses (link-local ones included).
    fn endpoint_addrs6(&self) -> Result<Vec<Ipv6Addr>, DatapathError>;
    fn set_endpoint_addr6(
        &mut self,
        addr: Ipv6Addr,
        endpoint: &EndpointAddr,
    ) -> Result<(), DatapathError>;
    fn remove_endpoint_addr6(&mut self, addr: Ipv6Addr) -> Result<(), DatapathError>;
}

/// The isolation program on container veths (host side).
pub trait EndpointPrograms {
    /// Attaches it (pinned, so it outlives the agent); attaching twice is
    /// a no-op.
    fn attach_endpoint(&mut self, host_ifname: &str) -> Result<(), DatapathError>;
    /// A descriptor of the embedded resolver's loopback program
    /// (`na_tc_dns`), for a container namespace's worker to attach;
    /// `None` when this kernel refused the program (the resolver then
    /// binds 127.0.0.11:53 itself).
    fn resolver_program(&self) -> Option<std::os::fd::OwnedFd>;
    /// Makes the resolver-port map hold exactly `ports` (namespace
    /// cookie, the resolver's port there).
    fn set_resolver_ports(&mut self, ports: &[(u64, u16)]) -> Result<(), DatapathError>;
    /// Detaches it; an interface already gone is not an error.
    fn detach_endpoint(&mut self, host_ifname: &str) -> Result<(), DatapathError>;
    /// Host-side interfaces it is attached to.
    fn attached_endpoints(&self) -> Result<Vec<String>, DatapathError>;
}

/// The programs on served interfaces (the host's uplinks).
pub trait ServedInterfaces {
    /// Attaches XDP (in `mode`) and both TC programs to `iface`; existing
    /// links are updated in place.
    fn serve(&mut self, iface: &str, mode: XdpAttachMode) -> Result<(), DatapathError>;
    /// Interfaces the datapath is attached to (pinned links).
    fn served(&self) -> Result<Vec<String>, DatapathError>;
    /// Detaches it; an interface not served is not an error.
    fn unserve(&mut self, iface: &str) -> Result<(), DatapathError>;
}

/// The socket hooks (cgroup sock_addr programs): published ports reached
/// from the host itself, translated at the socket.
pub trait SocketHooks {
    /// Attaches them to the cgroup at `cgroup` (hooks attached to another
    /// cgroup before are detached) for the sockets of the calling thread's
    /// network namespace; pinned hooks are replaced by this load's.
    fn attach_socket_hooks(&mut self, cgroup: &Path) -> Result<(), DatapathError>;
    /// Detaches them wherever they are; none attached is not an error.
    fn detach_socket_hooks(&mut self) -> Result<(), DatapathError>;
    /// The cgroup they are attached to, if any.
    fn socket_hooks_cgroup(&self) -> Option<PathBuf>;
}

/// Everything the agent needs from the kernel datapath. The agent's
/// building blocks ask for the narrow trait they use.
pub trait Datapath:
    PublicationMaps + HostMaps + EndpointMaps + EndpointPrograms + ServedInterfaces + SocketHooks + Send
{
}

impl<T> Datapath for T where
    T: PublicationMaps
        + HostMaps
        + EndpointMaps
        + EndpointPrograms
        + ServedInterfaces
        + SocketHooks
        + Send
{
}
