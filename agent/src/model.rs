//! Networks and containers as the agent keeps them in its state file.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
};

use datapath_common::{NET_F_INTERNAL, NET_F_NO_ICC, NET_F_ROUTED, NetPolicy};
use serde::{Deserialize, Serialize};

use crate::{
    ipam::NetworkIpam,
    ipam6::Ipam6,
    portmap::{ExposedPorts, PortMapping},
};

/// The network containers join when none is named (Docker's `bridge`).
pub const DEFAULT_NETWORK: &str = "bridge";
/// Its bridge interface (Docker's `docker0`).
pub const DEFAULT_BRIDGE: &str = "na-br0";
/// Prefix of endpoint veths (host side) and of bridges; both start with
/// [`crate::host::IFACE_PREFIX`] (a test checks), so `Host::own_links`
/// finds them.
pub const VETH_PREFIX: &str = "na-v";
pub const BRIDGE_PREFIX: &str = "na-br";

/// Whether `name` is one netagent gives a container's host-side veth.
pub fn is_endpoint_name(name: &str) -> bool {
    name.len() > VETH_PREFIX.len() && name.len() <= 15 && name.starts_with(VETH_PREFIX)
}

/// Whether `name` is one netagent gives a network's bridge.
pub fn is_bridge_name(name: &str) -> bool {
    name.len() > BRIDGE_PREFIX.len() && name.len() <= 15 && name.starts_with(BRIDGE_PREFIX)
}

/// Whether a network has name resolution (the embedded DNS): every one
/// but the default `bridge`, as in Docker, where legacy links serve.
pub fn resolves_names(network: &str) -> bool {
    network != DEFAULT_NETWORK
}

/// The pre-defined network of containers on the host's own stack.
pub const HOST_NETWORK: &str = "host";
/// The pre-defined network of containers with loopback only.
pub const NONE_NETWORK: &str = "none";

/// Whether `name` is one of the networks every host has (Docker's
/// `bridge`, `host` and `none`), which cannot be created or removed.
pub fn is_predefined(name: &str) -> bool {
    matches!(name, DEFAULT_NETWORK | HOST_NETWORK | NONE_NETWORK)
}

/// A bridge network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    /// 64 hex digits; `network ls` shows the first 12.
    pub id: String,
    /// The datapath's number for it: unique among networks, never 0.
    pub net_id: u32,
    pub driver: String,
    /// The bridge interface on the host.
    pub bridge: String,
    pub internal: bool,
    /// Inter-container communication (`--icc`, on by default).
    pub icc: bool,
    /// How the network meets the outside (Docker's
    /// `com.docker.network.bridge.gateway_mode_ipv4`).
    #[serde(default)]
    pub gateway_mode: GatewayMode,
    pub ipam: NetworkIpam,
    /// The IPv6 side of a dual-stack network (`--ipv6`); `None`: IPv4
    /// only, and the datapath drops a container's IPv6 there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam6: Option<Ipam6>,
}

/// A network's gateway mode, as Docker 28 defines it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatewayMode {
    /// Containers reach out masqueraded; nothing from outside reaches a
    /// container address unless it is a published port or a reply.
    #[default]
    Nat,
    /// No masquerade: containers use their own addresses outside, and
    /// their published container ports (and replies to their flows) are
    /// reachable by direct routing.
    Routed,
}

impl std::str::FromStr for GatewayMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "nat" => Ok(GatewayMode::Nat),
            "routed" => Ok(GatewayMode::Routed),
            other => Err(format!(
                "unsupported gateway mode {other:?}: netagent has nat (the default) and routed"
            )),
        }
    }
}

impl Network {
    /// The datapath's view of this network.
    pub fn policy(&self) -> NetPolicy {
        let mut flags = 0;
        if self.internal {
            flags |= NET_F_INTERNAL;
        }
        if !self.icc {
            flags |= NET_F_NO_ICC;
        }
        if self.gateway_mode == GatewayMode::Routed {
            flags |= NET_F_ROUTED;
        }
        NetPolicy {
            net_id: self.net_id,
            flags,
            subnet_be: u32::from_ne_bytes(self.ipam.subnet.network().octets()),
            mask_be: u32::from_ne_bytes(self.ipam.subnet.netmask().octets()),
        }
    }
}

/// An endpoint's addresses: IPv4 always, IPv6 on a dual-stack network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointIps {
    pub v4: Ipv4Addr,
    pub v6: Option<Ipv6Addr>,
}

impl Network {
    /// Hands out an endpoint's addresses (`v4`, `v6`: static ones, or
    /// picked): both or neither.
    pub fn allocate(
        &mut self,
        v4: Option<Ipv4Addr>,
        v6: Option<Ipv6Addr>,
    ) -> Result<EndpointIps, crate::ipam::IpamError> {
        if let (Some(ip), None) = (v6, &self.ipam6) {
            return Err(crate::ipam::IpamError::Ipv6Disabled {
                ip,
                network: self.name.clone(),
            });
        }
        let ip4 = self.ipam.allocate(v4)?;
        let ip6 = match self.ipam6.as_mut().map(|i| i.allocate(v6)).transpose() {
            Ok(ip6) => ip6,
            Err(e) => {
                self.ipam.release(ip4);
                return Err(e);
            }
        };
        Ok(EndpointIps { v4: ip4, v6: ip6 })
    }

    /// The default route through this network's gateway (both families
    /// on a dual-stack network).
    pub fn default_route(&self) -> crate::host::DefaultRoute {
        crate::host::DefaultRoute {
            v4: self.ipam.gateway,
            v6: self.ipam6.as_ref().map(|i| i.gateway),
        }
    }

    /// Gives an endpoint's addresses back.
    pub fn release(&mut self, endpoint: &Endpoint) {
        self.ipam.release(endpoint.ip);
        if let (Some(ipam6), Some(ip6)) = (self.ipam6.as_mut(), endpoint.ip6) {
            ipam6.release(ip6);
        }
    }
}

/// A container's interface on one network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub network: String,
    /// Name inside the container (`eth0`, ...).
    pub ifname: String,
    /// The veth's host side, a port of the network's bridge.
    pub host_ifname: String,
    /// Its interface index (the endpoint-interface map's key), kept so the
    /// entry can be removed after the interface is gone.
    #[serde(default)]
    pub host_ifindex: u32,
    pub ip: Ipv4Addr,
    /// Its IPv6 address on a dual-stack network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<Ipv6Addr>,
    pub mac: String,
    pub aliases: Vec<String>,
    /// The CNI network (a configuration's `name`) a runtime attached it
    /// through (`netagent-cni`); with the container's [`Container::cni_id`]
    /// and [`Self::ifname`] it keys the attachment for DEL, CHECK and GC.
    /// `None` for endpoints made by the CLI, which CNI never touches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni_network: Option<String>,
}

impl Endpoint {
    /// Whether `ip` is one of this endpoint's addresses.
    pub fn has_address(&self, ip: std::net::IpAddr) -> bool {
        match ip {
            std::net::IpAddr::V4(v4) => v4 == self.ip,
            std::net::IpAddr::V6(v6) => Some(v6) == self.ip6,
        }
    }
}

/// How a container is networked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum NetworkMode {
    /// Its own interfaces, one per network.
    Bridge { endpoints: Vec<Endpoint> },
    /// `--network container:OTHER`: OTHER's network stack, no interface.
    Container { target: String },
    /// `--network host`: the host's own network stack, nothing made.
    Host,
    /// `--network none`: its own namespace with loopback only.
    None,
    /// Another CNI plugin made its interface (netagent-cni chained after
    /// it, as the reference `portmap` is): netagent publishes its ports to
    /// `ips` and owns nothing else of it.
    Chained(ChainedAttachment),
}

/// A chained CNI attachment: the interface another plugin made, and the
/// addresses that plugin's result gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainedAttachment {
    /// The CNI network (configuration list's `name`).
    pub cni_network: String,
    /// The interface inside the container (`CNI_IFNAME`).
    pub ifname: String,
    /// Its addresses from the previous plugin's result.
    pub ips: Vec<std::net::IpAddr>,
}

/// A container: a network namespace netagent has attached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    pub name: String,
    /// 64 hex digits.
    pub id: String,
    /// Owner tag of its publications (unique among containers, never 0).
    pub uid: u64,
    pub netns: PathBuf,
    /// The identity of the namespace `netns` named at attach time: a path
    /// that later names another namespace (a reused `/proc/PID/ns/net`)
    /// is not this container's. `None` in state files written before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns_id: Option<crate::host::NetnsId>,
    pub mode: NetworkMode,
    /// The runtime's container ID (`CNI_CONTAINERID`) of a container a CNI
    /// runtime attached through `netagent-cni`; `None` for the CLI's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni_id: Option<String>,
    /// The network its default route prefers: the first network with
    /// outside access it was attached to. The route (and its published
    /// ports) moves to another network when this one is disconnected, and
    /// comes back when it is reconnected, as in Docker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_network: Option<String>,
    /// `--expose` (and every `-p` container port), for `-P`.
    pub exposed: Vec<ExposedPorts>,
    /// The `-p` values as given.
    pub port_mappings: Vec<PortMapping>,
    pub publish_all: bool,
    /// `--env VAR=VALUE`: what a container linking to this one sees as
    /// `ALIAS_ENV_VAR` (netagent runs no process, so it is kept for links).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Its resolver settings (`--dns`, `--dns-search`, `--dns-option`).
    #[serde(default, skip_serializing_if = "DnsSettings::is_empty")]
    pub dns: DnsSettings,
    /// Legacy links (`--link NAME:ALIAS`), in the order given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    /// The hostname its runtime gives it (`--hostname`); netagent sets no
    /// UTS name, it only knows it: a name it resolves to, and its hosts
    /// files' lines. `None`: Docker's default, the short ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

/// A container's resolver settings, as Docker's `--dns`, `--dns-search`
/// and `--dns-option` take them: written into its resolv.conf; `servers`
/// replace the daemon's upstreams for the names its embedded resolver
/// forwards.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsSettings {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<std::net::IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl DnsSettings {
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty() && self.search.is_empty() && self.options.is_empty()
    }
}

/// A legacy link, `--link NAME:ALIAS`: the linked container (`name`) is
/// known to this one as `alias`.
///
/// On the default `bridge` network (a link's home in Docker) it gives
/// the environment variables in `env` (made once, at attach, and never
/// refreshed, as Docker's), a hosts-file entry (which follows the linked
/// container's address), and with `--icc=false` a hole for the linked
/// container's exposed ports. On a user-defined network it is an alias
/// only this container resolves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The linked container's name.
    pub name: String,
    pub alias: String,
    /// The network the link was made on.
    pub network: String,
    /// The linked container's addresses there when the link was made;
    /// its hosts entry keeps them while it is detached.
    pub ips: Vec<std::net::IpAddr>,
    /// The variables made at attach (`ALIAS_PORT_...`), empty on a
    /// user-defined network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
}

impl Container {
    /// Its own endpoints (none when joined to another container).
    pub fn endpoints(&self) -> &[Endpoint] {
        match &self.mode {
            NetworkMode::Bridge { endpoints } => endpoints,
            NetworkMode::Container { .. }
            | NetworkMode::Host
            | NetworkMode::None
            | NetworkMode::Chained(_) => &[],
        }
    }

    pub fn endpoints_mut(&mut self) -> Option<&mut Vec<Endpoint>> {
        match &mut self.mode {
            NetworkMode::Bridge { endpoints } => Some(endpoints),
            NetworkMode::Container { .. }
            | NetworkMode::Host
            | NetworkMode::None
            | NetworkMode::Chained(_) => None,
        }
    }

    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }

    /// Its hostname: the one given, else the short ID (Docker's default).
    pub fn hostname(&self) -> &str {
        self.hostname.as_deref().unwrap_or_else(|| self.short_id())
    }
}

#[cfg(test)]
impl Network {
    /// A bridge network on `subnet` with every other setting at its default.
    pub fn for_tests(name: &str, subnet: &str, internal: bool) -> Self {
        let subnet = subnet.parse().expect("a CIDR");
        Network {
            name: name.into(),
            id: random_id(),
            net_id: 1,
            driver: "bridge".into(),
            bridge: format!("na-br-{name}"),
            internal,
            icc: true,
            gateway_mode: GatewayMode::Nat,
            ipam: NetworkIpam::new(subnet, None, None).expect("valid ipam"),
            ipam6: None,
        }
    }
}

/// The kernel's interface-name rule (`dev_valid_name`): 1 to 15 bytes,
/// not `.` or `..`, no `/`, `:` or whitespace. (CNI's `CNI_IFNAME` and
/// the agent's `--ifname` both follow it.)
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
}

/// A MAC address a container interface may be given: `aa:bb:cc:dd:ee:ff`
/// (two hex digits each), unicast (the group bit clear) and not all zero.
pub fn parse_unicast_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    (parts.next().is_none() && mac[0] & 1 == 0 && mac != [0; 6]).then_some(mac)
}

/// The longest container or network name: a DNS label (RFC 1035), so the
/// name resolves in the embedded DNS (Docker's longer names silently break
/// it, moby#37971; its swarm refuses them: "name must be 63 characters or
/// fewer").
pub const MAX_NAME_LEN: usize = 63;
/// The longest alias: a DNS name (RFC 1035), in labels of at most 63.
pub const MAX_ALIAS_LEN: usize = 253;

/// Docker's container name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, at most
/// [`MAX_NAME_LEN`] characters.
pub fn valid_container_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && (2..=MAX_NAME_LEN).contains(&name.len())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Network names follow the same rule, one character allowed.
pub fn valid_network_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && name.len() <= MAX_NAME_LEN
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// An alias is a DNS name: labels of `[a-zA-Z0-9_-]`, 1 to 63 characters,
/// joined by dots, at most [`MAX_ALIAS_LEN`] in all.
pub fn valid_alias(alias: &str) -> bool {
    !alias.is_empty()
        && alias.len() <= MAX_ALIAS_LEN
        && alias.split('.').all(|label| {
            (1..=MAX_NAME_LEN).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        })
}

/// 64 random hex digits (a Docker-style ID).
pub fn random_id() -> String {
    let mut bytes = [0u8; 32];
    let mut filled = 0;
    while filled < bytes.len() {
        // SAFETY: getrandom into the unfilled tail of a buffer we own.
        let n = unsafe {
            libc::getrandom(bytes[filled..].as_mut_ptr().cast(), bytes.len() - filled, 0)
        };
        if n > 0 {
            filled += n as usize;
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interface_name_rule_is_the_kernels() {
        for ok in ["eth0", "a", "net1.100", "fifteen-bytes-x"] {
            assert!(valid_ifname(ok), "{ok}");
        }
        for bad in ["", ".", "..", "sixteen-bytes-xx", "e th0", "a:b", "a/b"] {
            assert!(!valid_ifname(bad), "{bad}");
        }
    }

    #[test]
    fn a_container_mac_is_unicast_and_written_in_full() {
        assert_eq!(
            parse_unicast_mac("02:42:0a:09:00:05"),
            Some([2, 0x42, 10, 9, 0, 5])
        );
        for bad in [
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
            "2:42:0a:09:00:05",
            "02:42:0a:09:00",
            "02:42:0a:09:00:05:06",
            "zz:42:0a:09:00:05",
            "",
        ] {
            assert_eq!(parse_unicast_mac(bad), None, "{bad}");
        }
    }

    #[test]
    fn names_follow_dockers_rule() {
        for ok in ["web", "a1", "my_app.v2-x", "9lives"] {
            assert!(valid_container_name(ok), "{ok}");
        }
        for bad in ["", "a", "-web", "_x", "web/1", "wéb", "we b"] {
            assert!(!valid_container_name(bad), "{bad}");
        }
        assert!(valid_network_name("n"));
        assert!(!valid_network_name("bad name"));
        let long = "a".repeat(MAX_NAME_LEN);
        assert!(valid_container_name(&long) && valid_network_name(&long));
        let longer = "a".repeat(MAX_NAME_LEN + 1);
        assert!(!valid_container_name(&longer) && !valid_network_name(&longer));
        for ok in ["api", "db.internal", "web_1", "a-b.c-d"] {
            assert!(valid_alias(ok), "{ok}");
        }
        let long_label = format!("{longer}.x");
        for bad in [
            "",
            ".",
            "a..b",
            "sp ace",
            long_label.as_str(),
            &"a.".repeat(127),
        ] {
            assert!(!valid_alias(bad), "{bad}");
        }
    }

    #[test]
    fn ids_are_64_hex_digits_and_differ() {
        let (a, b) = (random_id(), random_id());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
