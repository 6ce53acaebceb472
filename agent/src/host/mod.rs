//! Everything on the host that is not a BPF map: bridges and veths (made
//! with rtnetlink), container-side interface setup, host routes, and host
//! port reservations. Behind a trait, like the datapath, so the agent's
//! network and container logic is tested without root against
//! [`fake::FakeHost`].

pub mod ethtool;
pub mod fake;
pub mod netlink;
pub mod nssock;
pub mod ports;
pub mod resolver;
pub mod tcx;
pub mod workers;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use ipnet::{Ipv4Net, Ipv6Net};

use crate::spec::{Proto, host_port_str};

/// Prefix of every interface netagent creates on the host, so a restarted
/// agent can find (and collect) its own and never touches anyone else's.
pub const IFACE_PREFIX: &str = "na-";

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{op}: {source}")]
    Netlink {
        op: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
    /// A host port some other process holds (Docker's wording).
    #[error("failed to bind host port {}/{proto}: address already in use", host_port_str(*ip, *port))]
    PortInUse { ip: IpAddr, port: u16, proto: Proto },
    /// A host address the host does not have (Docker's wording).
    #[error(
        "failed to bind host port {}/{proto}: cannot assign requested address",
        host_port_str(*ip, *port)
    )]
    NotLocal { ip: IpAddr, port: u16, proto: Proto },
    #[error("network namespace {path}: {reason}")]
    Netns { path: PathBuf, reason: String },
    #[error("{0}")]
    Other(String),
}

/// A network's bridge on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeConfig {
    pub name: String,
    /// The gateway address and the subnet's prefix length.
    pub gateway: Ipv4Addr,
    pub prefix_len: u8,
    /// The IPv6 gateway address and prefix length of a dual-stack network.
    pub gateway6: Option<(Ipv6Addr, u8)>,
}

/// A container's default route: through one network's gateway, for IPv6
/// too when that network is dual stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultRoute {
    pub v4: Ipv4Addr,
    pub v6: Option<Ipv6Addr>,
}

/// The EUI-64 link-local address of an interface with MAC `mac` (RFC 4291
/// appendix A): what a dual-stack endpoint's container side is given, so
/// the datapath knows every source address it may use.
pub fn link_local6(mac: [u8; 6]) -> Ipv6Addr {
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ])
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let bytes: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).ok())
        .collect::<Option<_>>()?;
    bytes.try_into().ok()
}

/// A bridge as the datapath needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BridgeLink {
    pub ifindex: u32,
    pub mac: [u8; 6],
}

/// One container interface: a veth pair whose host side is a port of the
/// network's bridge and whose other side is `ifname` in the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointConfig {
    pub host_ifname: String,
    pub bridge: String,
    pub netns: PathBuf,
    /// The name inside the container (`eth0`, `eth1`, ...).
    pub ifname: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    /// The IPv6 address and prefix length on a dual-stack network: the
    /// interface then also gets its EUI-64 link-local address
    /// ([`link_local6`]) and nothing else (no SLAAC, no DAD, no router
    /// advertisements); otherwise IPv6 is off on it.
    pub ip6: Option<(Ipv6Addr, u8)>,
    /// The container side's MAC address; `None`: the kernel's random one.
    pub mac: Option<[u8; 6]>,
    /// Default route through this gateway (the container's first
    /// non-internal network only).
    pub default_gateway: Option<DefaultRoute>,
}

/// A created endpoint interface, as the datapath needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointLink {
    pub host_ifindex: u32,
    /// The container-side MAC address, for `container inspect`.
    pub mac: String,
}

/// A host (IP, port, protocol) netagent holds a socket on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    /// An IPv6 one (`::` included) is bound IPv6-only: it never holds
    /// the IPv4 port.
    pub ip: IpAddr,
    pub port: u16,
    pub proto: Proto,
}

/// The address of the embedded DNS resolver inside every container with
/// one (Docker's).
pub const RESOLVER_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 11);

/// A container's embedded resolver sockets: UDP and a TCP listener on
/// 127.0.0.11, made inside its namespace (where they stay).
#[derive(Debug)]
pub struct ResolverSockets {
    pub udp: std::net::UdpSocket,
    pub tcp: std::net::TcpListener,
    /// Their port: one the kernel picked when the loopback program
    /// translates 53 to it (`link`), else 53 itself.
    pub port: u16,
    /// The namespace's cookie (the translation's key).
    pub cookie: u64,
    /// The loopback program's TCX link (it detaches when dropped).
    pub link: Option<std::os::fd::OwnedFd>,
    /// The namespace itself: where the resolver makes the sockets that
    /// ask the container's own upstream servers (`nssock`).
    pub netns: std::os::fd::OwnedFd,
}

pub trait Host: Send {
    /// The host's routes (default routes excluded), named for messages, so
    /// new subnets avoid them.
    fn routes(&mut self) -> Result<Vec<(Ipv4Net, String)>, HostError>;
    /// The host's IPv6 routes (default, link-local and multicast routes
    /// excluded), named for messages, so new IPv6 subnets avoid them.
    fn routes6(&mut self) -> Result<Vec<(Ipv6Net, String)>, HostError>;
    /// Creates the bridge with its gateway address, or fixes it; up.
    fn ensure_bridge(&mut self, bridge: &BridgeConfig) -> Result<BridgeLink, HostError>;
    /// Deletes a bridge; an absent one is not an error.
    fn remove_bridge(&mut self, name: &str) -> Result<(), HostError>;
    /// Creates and configures an endpoint interface. On error nothing of it
    /// is left behind.
    fn add_endpoint(&mut self, ep: &EndpointConfig) -> Result<EndpointLink, HostError>;
    /// Deletes an endpoint's veth pair; an absent one (the container's
    /// namespace is gone, taking the pair with it) is not an error.
    fn remove_endpoint(&mut self, host_ifname: &str) -> Result<(), HostError>;
    /// Makes the default routes (IPv4, and IPv6 if `gateway` has one) in
    /// the namespace at `netns` go through `gateway` on `ifname`,
    /// replacing any other; `None` removes them.
    fn set_default_route(
        &mut self,
        netns: &Path,
        ifname: &str,
        gateway: Option<DefaultRoute>,
    ) -> Result<(), HostError>;
    /// Lets go of whatever keeps the namespace at `netns` alive on the
    /// host's side (its netlink worker), once its container is detached.
    fn forget_netns(&mut self, netns: &Path);
    /// The driver of a host interface (`veth`, `mlx5_core`, ...), `None`
    /// if it reports none.
    fn driver(&mut self, iface: &str) -> Result<Option<String>, HostError>;
    /// The index of a host interface, if it exists.
    fn ifindex(&mut self, name: &str) -> Result<Option<u32>, HostError>;
    /// Names of the host interfaces that start with [`IFACE_PREFIX`].
    fn own_links(&mut self) -> Result<Vec<String>, HostError>;
    /// Holds `port` so no other process can bind it; refused with
    /// [`HostError::PortInUse`] if one already has.
    fn reserve_port(&mut self, port: HostPort) -> Result<(), HostError>;
    /// Holds every port in `ports`, or none: refused with the error of the
    /// first port that cannot be held, and then the ports this call took
    /// are let go again (ports held before stay held). The bulk form of
    /// [`Host::reserve_port`], free to check the ports in parallel.
    fn reserve_ports(&mut self, ports: &[HostPort]) -> Result<(), HostError>;
    /// Lets go of a reservation; releasing an unheld port is a no-op.
    fn release_port(&mut self, port: HostPort);
    /// The kernel's ephemeral port range and reserved ports (for random
    /// host ports, Docker's source of them).
    fn ephemeral_ports(&mut self) -> (u16, u16, Vec<(u16, u16)>);
    /// The identity of the network namespace at `path` (two paths name the
    /// same namespace iff their ids are equal); an error if `path` is not
    /// a network namespace (another kind of namespace included).
    fn netns_id(&mut self, path: &Path) -> Result<NetnsId, HostError>;
    /// The identity of the daemon's own network namespace (the host's).
    fn own_netns(&mut self) -> Result<NetnsId, HostError>;
    /// What the kernel says of an existing endpoint: its host side's
    /// index and its container side's MAC (`ifname` in `netns`). `None`
    /// when the host side is gone.
    fn endpoint_link(
        &mut self,
        host_ifname: &str,
        netns: &Path,
        ifname: &str,
    ) -> Result<Option<EndpointLink>, HostError>;
    /// The addresses of interface `ifname` in `netns` (CNI's CHECK);
    /// `None` when there is no such interface.
    fn interface_addrs(
        &mut self,
        netns: &Path,
        ifname: &str,
    ) -> Result<Option<Vec<std::net::IpAddr>>, HostError>;
    /// The embedded resolver's sockets in the namespace at `netns`, made
    /// by its worker: with `program` (the loopback translation), on
    /// 127.0.0.11 at a port the kernel picks, the program attached at TCX
    /// egress of the namespace's `lo`; without, on 127.0.0.11:53.
    fn resolver_sockets(
        &mut self,
        netns: &Path,
        program: Option<std::os::fd::OwnedFd>,
    ) -> Result<ResolverSockets, HostError>;
}

/// A network namespace's identity: its nsfs device and inode. Persisted
/// with a container, so a path that now names another namespace (a reused
/// `/proc/PID/ns/net`) is recognised as such.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct NetnsId {
    pub dev: u64,
    pub ino: u64,
}
