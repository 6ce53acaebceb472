//! Endpoints: one container interface on one network. Making one (the veth
//! pair, configured inside the container's namespace), programming it (the
//! isolation program on its host side, the endpoint map entries), and
//! destroying it; interface names; the default-route rule.
//!
//! Invariant: while a container veth exists, its program finds its map
//! entries (without them it drops everything, failing closed), so the
//! veth is made before its entries are written and deleted before they
//! are removed.

use std::{collections::BTreeSet, path::Path};

use datapath_common::{EndpointAddr, EndpointIface, EndpointIface6, ipv6_be};
use tracing::warn;

use crate::{
    datapath::{EndpointMaps, EndpointPrograms},
    host::{BridgeConfig, BridgeLink, EndpointConfig, Host, HostError, link_local6, parse_mac},
    model::{Container, Endpoint, EndpointIps, Network, random_id},
};

pub use crate::model::{BRIDGE_PREFIX, VETH_PREFIX, is_bridge_name, is_endpoint_name};

/// A fresh host-side veth name.
pub fn new_veth_name() -> String {
    format!("{VETH_PREFIX}{}", &random_id()[..11])
}

/// The bridge name of a new network with ID `id`.
pub fn new_bridge_name(id: &str) -> String {
    format!("{BRIDGE_PREFIX}-{}", &id[..9])
}

/// The first free `ethN` of a container.
pub fn next_ifname(container: &Container) -> String {
    let used: BTreeSet<&str> = container
        .endpoints()
        .iter()
        .map(|e| e.ifname.as_str())
        .collect();
    (0..)
        .map(|n| format!("eth{n}"))
        .find(|n| !used.contains(n.as_str()))
        .expect("a free interface name")
}

/// Whether a network gives a container outside access (a default route).
pub fn has_outside_access(network: &str, networks: &[Network]) -> bool {
    networks.iter().any(|n| n.name == network && !n.internal)
}

/// The one rule for a container's default route: it goes through its
/// endpoint on `preferred` (the container's gateway network) if that has
/// outside access, else through its first endpoint (in attach order) on a
/// network with outside access. Returns that endpoint's index.
pub fn gateway_endpoint(
    endpoints: &[Endpoint],
    preferred: Option<&str>,
    networks: &[Network],
) -> Option<usize> {
    let outside = |e: &Endpoint| has_outside_access(&e.network, networks);
    endpoints
        .iter()
        .position(|e| Some(e.network.as_str()) == preferred && outside(e))
        .or_else(|| endpoints.iter().position(outside))
}

/// The index of `container`'s gateway endpoint: [`gateway_endpoint`] with
/// its own endpoints and gateway network.
pub fn gateway_of(container: &Container, networks: &[Network]) -> Option<usize> {
    gateway_endpoint(
        container.endpoints(),
        container.gateway_network.as_deref(),
        networks,
    )
}

/// What the host needs to make one endpoint's veth pair.
pub fn endpoint_config(
    netns: &Path,
    network: &Network,
    host_ifname: &str,
    ifname: &str,
    ips: EndpointIps,
    mac: Option<[u8; 6]>,
    default_route: bool,
) -> EndpointConfig {
    EndpointConfig {
        host_ifname: host_ifname.to_owned(),
        bridge: network.bridge.clone(),
        netns: netns.to_owned(),
        ifname: ifname.to_owned(),
        ip: ips.v4,
        prefix_len: network.ipam.subnet.prefix_len(),
        ip6: ips
            .v6
            .zip(network.ipam6.as_ref())
            .map(|(ip6, ipam6)| (ip6, ipam6.subnet.prefix_len())),
        mac,
        default_gateway: default_route.then(|| network.default_route()),
    }
}

pub fn bridge_config(network: &Network) -> BridgeConfig {
    BridgeConfig {
        name: network.bridge.clone(),
        gateway: network.ipam.gateway,
        prefix_len: network.ipam.subnet.prefix_len(),
        gateway6: network
            .ipam6
            .as_ref()
            .map(|i| (i.gateway, i.subnet.prefix_len())),
    }
}

/// What [`create`] makes an endpoint from.
pub struct NewEndpoint<'a> {
    /// The container's network namespace.
    pub netns: &'a Path,
    pub network: &'a Network,
    /// The network's bridge, as the host reports it.
    pub bridge: BridgeLink,
    pub ips: EndpointIps,
    /// The name inside the container (`eth0`, ...).
    pub ifname: &'a str,
    /// Its MAC address; `None`: a random one.
    pub mac: Option<[u8; 6]>,
    /// Whether the container's default route goes through it.
    pub default_route: bool,
    pub aliases: Vec<String>,
    /// The CNI network of an endpoint netagent-cni makes.
    pub cni_network: Option<String>,
}

/// Makes one endpoint: the veth pair (configured inside the container's
/// namespace), then the isolation program and both map entries. On error
/// nothing of it is left behind.
pub fn create<D: EndpointMaps + EndpointPrograms, H: Host>(
    datapath: &mut D,
    host: &mut H,
    new: NewEndpoint<'_>,
) -> Result<Endpoint, crate::error::AgentError> {
    let host_ifname = new_veth_name();
    let link = host.add_endpoint(&endpoint_config(
        new.netns,
        new.network,
        &host_ifname,
        new.ifname,
        new.ips,
        new.mac,
        new.default_route,
    ))?;
    let endpoint = Endpoint {
        network: new.network.name.clone(),
        ifname: new.ifname.to_owned(),
        host_ifname,
        host_ifindex: link.host_ifindex,
        ip: new.ips.v4,
        ip6: new.ips.v6,
        mac: link.mac,
        aliases: new.aliases,
        cni_network: new.cni_network,
    };
    if let Err(e) = program(datapath, &endpoint, new.network, new.bridge) {
        destroy(datapath, host, &endpoint);
        return Err(e);
    }
    Ok(endpoint)
}

/// The datapath side of an endpoint (idempotent): the isolation program
/// on its host-side veth, and both endpoint map entries.
pub fn program<D: EndpointMaps + EndpointPrograms>(
    datapath: &mut D,
    endpoint: &Endpoint,
    network: &Network,
    bridge: BridgeLink,
) -> Result<(), crate::error::AgentError> {
    let mac = parse_mac(&endpoint.mac).ok_or_else(|| {
        HostError::Other(format!(
            "endpoint {} has no usable MAC address ({:?})",
            endpoint.host_ifname, endpoint.mac
        ))
    })?;
    let net = network.policy();
    datapath.attach_endpoint(&endpoint.host_ifname)?;
    datapath.set_endpoint_iface(
        endpoint.host_ifindex,
        &EndpointIface {
            net,
            bridge_ifindex: bridge.ifindex,
            _pad: 0,
        },
    )?;
    let addr = EndpointAddr {
        net,
        host_ifindex: endpoint.host_ifindex,
        mac,
        gw_mac: bridge.mac,
    };
    datapath.set_endpoint_addr(endpoint.ip, &addr)?;
    if let (Some(ip6), Some(ipam6)) = (endpoint.ip6, &network.ipam6) {
        datapath.set_endpoint_iface6(
            endpoint.host_ifindex,
            &EndpointIface6 {
                subnet: ipv6_be(ipam6.subnet.network()),
                gateway: ipv6_be(ipam6.gateway),
                prefix_len: ipam6.subnet.prefix_len(),
                _pad: [0; 3],
            },
        )?;
        for ip in [link_local6(mac), ip6] {
            datapath.set_endpoint_addr6(ip, &addr)?;
        }
    }
    Ok(())
}

/// Removes an endpoint's kernel objects, best effort: what fails is
/// logged, and the next start's reconcile collects it. The veth goes
/// first (module invariant).
pub fn destroy<D: EndpointMaps + EndpointPrograms, H: Host>(
    datapath: &mut D,
    host: &mut H,
    endpoint: &Endpoint,
) {
    let mut failures = Vec::new();
    if let Err(e) = host.remove_endpoint(&endpoint.host_ifname) {
        failures.push(e.to_string());
    }
    if let Err(e) = datapath.detach_endpoint(&endpoint.host_ifname) {
        failures.push(e.to_string());
    }
    if let Err(e) = datapath.remove_endpoint_iface(endpoint.host_ifindex) {
        failures.push(e.to_string());
    }
    if let Err(e) = datapath.remove_endpoint_addr(endpoint.ip) {
        failures.push(e.to_string());
    }
    if let Some(ip6) = endpoint.ip6 {
        if let Err(e) = datapath.remove_endpoint_iface6(endpoint.host_ifindex) {
            failures.push(e.to_string());
        }
        let mut addrs = vec![ip6];
        addrs.extend(parse_mac(&endpoint.mac).map(link_local6));
        for ip in addrs {
            if let Err(e) = datapath.remove_endpoint_addr6(ip) {
                failures.push(e.to_string());
            }
        }
    }
    if !failures.is_empty() {
        warn!(iface = %endpoint.host_ifname, ?failures, "removing an endpoint");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{datapath::fake::FakeEndpointSide, host::fake::FakeHost};

    #[test]
    fn interface_names_are_ours_and_fit() {
        for p in [VETH_PREFIX, BRIDGE_PREFIX, crate::model::DEFAULT_BRIDGE] {
            assert!(p.starts_with(crate::host::IFACE_PREFIX), "{p}");
        }
        assert!(is_endpoint_name(&new_veth_name()));
        assert!(is_bridge_name(&new_bridge_name(&random_id())));
        assert!(!is_endpoint_name("eth0") && !is_bridge_name("docker0"));
    }

    fn endpoint(network: &str, ip: &str) -> Endpoint {
        Endpoint {
            network: network.into(),
            ifname: "eth0".into(),
            host_ifname: "na-vtest".into(),
            host_ifindex: 42,
            ip: ip.parse().unwrap(),
            ip6: None,
            mac: "02:00:00:00:00:07".into(),
            aliases: Vec::new(),
            cni_network: None,
        }
    }

    #[test]
    fn program_writes_both_entries_and_destroy_removes_veth_first() {
        let network = Network::for_tests("n", "10.9.0.0/24", false);
        let ep = endpoint("n", "10.9.0.2");
        let mut dp = FakeEndpointSide::default();
        let bridge = BridgeLink {
            ifindex: 7,
            mac: [2, 0xbb, 0, 0, 0, 1],
        };
        program(&mut dp, &ep, &network, bridge).unwrap();
        assert!(dp.attached.contains("na-vtest"));
        assert_eq!(dp.ifaces[&42].bridge_ifindex, 7);
        let addr = dp.addrs[&ep.ip];
        assert_eq!(
            (addr.host_ifindex, addr.mac, addr.gw_mac),
            (42, [2, 0, 0, 0, 0, 7], bridge.mac)
        );
        // A bad MAC writes nothing.
        let mut bad = ep.clone();
        bad.mac = "zz".into();
        let mut empty = FakeEndpointSide::default();
        assert!(program(&mut empty, &bad, &network, bridge).is_err());
        assert!(empty.ifaces.is_empty() && empty.addrs.is_empty());

        let mut host = FakeHost::default();
        destroy(&mut dp, &mut host, &ep);
        assert!(dp.ifaces.is_empty() && dp.addrs.is_empty() && dp.attached.is_empty());
        let veth = host.removals[0].0;
        assert!(dp.removals.iter().all(|(seq, _)| *seq > veth));
    }

    #[test]
    fn create_makes_the_veth_then_its_entries_and_leaves_nothing_on_error() {
        let network = Network::for_tests("n", "10.9.0.0/24", false);
        let mut host = FakeHost::default();
        host.ensure_bridge(&bridge_config(&network)).unwrap();
        let bridge = BridgeLink {
            ifindex: 7,
            mac: [2, 0xbb, 0, 0, 0, 1],
        };
        let new = |ip: &str| NewEndpoint {
            netns: Path::new("/run/netns/c"),
            network: &network,
            bridge,
            ips: EndpointIps {
                v4: ip.parse().unwrap(),
                v6: None,
            },
            ifname: "eth0",
            mac: None,
            default_route: true,
            aliases: vec!["a".into()],
            cni_network: None,
        };
        let mut dp = FakeEndpointSide::default();
        let ep = create(&mut dp, &mut host, new("10.9.0.2")).unwrap();
        assert!(host.endpoints.contains_key(&ep.host_ifname));
        assert_eq!(
            host.endpoints[&ep.host_ifname].default_gateway,
            Some(network.default_route())
        );
        assert!(dp.attached.contains(&ep.host_ifname) && dp.addrs.contains_key(&ep.ip));
        // A datapath that refuses the entries: the veth goes again.
        let mut broken = FakeEndpointSide {
            fail_writes: true,
            ..FakeEndpointSide::default()
        };
        assert!(create(&mut broken, &mut host, new("10.9.0.3")).is_err());
        assert_eq!(
            host.endpoints.len(),
            1,
            "the failed endpoint's veth is gone"
        );
        assert!(broken.addrs.is_empty() && broken.attached.is_empty());
    }

    #[test]
    fn the_default_route_goes_through_the_first_network_with_outside_access() {
        let nets = vec![
            Network::for_tests("internal", "10.8.0.0/24", true),
            Network::for_tests("a", "10.9.0.0/24", false),
            Network::for_tests("b", "10.10.0.0/24", false),
        ];
        let eps = [
            endpoint("internal", "10.8.0.2"),
            endpoint("a", "10.9.0.2"),
            endpoint("b", "10.10.0.2"),
        ];
        assert_eq!(gateway_endpoint(&eps, None, &nets), Some(1));
        assert_eq!(gateway_endpoint(&eps, Some("b"), &nets), Some(2));
        assert_eq!(gateway_endpoint(&eps, Some("internal"), &nets), Some(1));
        assert_eq!(gateway_endpoint(&eps[2..], Some("a"), &nets), Some(0));
        assert_eq!(gateway_endpoint(&eps[..1], None, &nets), None);
    }
}
