use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::*;
use crate::model::{DnsSettings, Endpoint, Link, Network};

pub(crate) fn endpoint(
    network: &str,
    ip: [u8; 4],
    ip6: Option<&str>,
    aliases: &[&str],
) -> Endpoint {
    Endpoint {
        network: network.into(),
        ifname: "eth0".into(),
        host_ifname: "na-vx".into(),
        host_ifindex: 0,
        ip: Ipv4Addr::from(ip),
        ip6: ip6.map(|s| s.parse().expect("an IPv6 address")),
        mac: "02:42:00:00:00:01".into(),
        aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
        cni_network: None,
    }
}

pub(crate) fn container(name: &str, id_digit: char, endpoints: Vec<Endpoint>) -> Container {
    Container {
        name: name.into(),
        id: std::iter::repeat_n(id_digit, 64).collect(),
        uid: 1,
        netns: format!("/run/netns/{name}").into(),
        netns_id: None,
        mode: NetworkMode::Bridge { endpoints },
        cni_id: None,
        gateway_network: None,
        exposed: Vec::new(),
        port_mappings: Vec::new(),
        publish_all: false,
        env: Vec::new(),
        dns: DnsSettings::default(),
        links: Vec::new(),
        hostname: None,
    }
}

/// Networks `front` and `back` (user-defined, `back` internal), the
/// default bridge, and:
/// - web on front (alias `www`, dual stack) and bridge;
/// - api1, api2 on front, both alias `api`;
/// - db on back only;
/// - legacy on the default bridge only.
pub(crate) fn state() -> DesiredState {
    let mut front = Network::for_tests("front", "10.1.0.0/24", false);
    front.name = "front".into();
    let back = Network::for_tests("back", "10.2.0.0/24", true);
    let bridge = Network::for_tests("bridge", "172.17.0.0/16", false);
    DesiredState {
        networks: vec![bridge, front, back],
        containers: vec![
            container(
                "web",
                'a',
                vec![
                    endpoint("front", [10, 1, 0, 2], Some("fd00::2"), &["www"]),
                    endpoint("bridge", [172, 17, 0, 2], None, &[]),
                ],
            ),
            container(
                "api1",
                'b',
                vec![endpoint("front", [10, 1, 0, 3], None, &["api"])],
            ),
            container(
                "api2",
                'c',
                vec![endpoint("front", [10, 1, 0, 4], None, &["API"])],
            ),
            container(
                "db",
                'd',
                vec![endpoint("back", [10, 2, 0, 2], None, &["database"])],
            ),
            container(
                "legacy",
                'e',
                vec![endpoint("bridge", [172, 17, 0, 3], None, &[])],
            ),
        ],
        ..DesiredState::default()
    }
}

fn upstream() -> Vec<Upstream> {
    vec![Upstream::of_host(
        "192.0.2.53:53".parse().expect("an address"),
        true,
    )]
}

#[test]
fn names_aliases_and_short_ids_resolve_on_the_askers_networks_only() {
    let dir = Directory::build(&state(), &upstream());
    let web = dir.asker(&"a".repeat(64)).expect("web asks");
    let addrs = |name: &str| dir.resolve(web, name);
    let v4 = |ips: &[[u8; 4]]| Addresses {
        v4: ips.iter().map(|ip| Ipv4Addr::from(*ip)).collect(),
        v6: Vec::new(),
    };
    assert_eq!(addrs("api1"), Some(v4(&[[10, 1, 0, 3]])));
    assert_eq!(addrs("API1."), Some(v4(&[[10, 1, 0, 3]])), "any case, FQDN");
    assert_eq!(
        addrs(&"b".repeat(12)),
        Some(v4(&[[10, 1, 0, 3]])),
        "short ID"
    );
    assert_eq!(addrs(&"b".repeat(13)), None, "only the 12-digit short ID");
    assert_eq!(
        addrs("api1.front"),
        Some(v4(&[[10, 1, 0, 3]])),
        "NAME.NETWORK"
    );
    assert_eq!(addrs("api1.back"), None, "not a network web is on");
    // One alias, two containers: both, in attach order.
    assert_eq!(addrs("api"), Some(v4(&[[10, 1, 0, 3], [10, 1, 0, 4]])));
    // Its own names, with its IPv6 address.
    assert_eq!(
        addrs("www"),
        Some(Addresses {
            v4: vec![Ipv4Addr::new(10, 1, 0, 2)],
            v6: vec!["fd00::2".parse::<Ipv6Addr>().expect("v6")],
        })
    );
    // Another network's container, and the default bridge's, never.
    assert_eq!(addrs("db"), None);
    assert_eq!(addrs("database"), None);
    assert_eq!(addrs("legacy"), None);
    assert_eq!(addrs("example.com"), None);
}

#[test]
fn only_containers_on_user_defined_networks_have_a_resolver() {
    let dir = Directory::build(&state(), &upstream());
    let mut askers: Vec<&str> = dir.askers().map(|a| a.name.as_str()).collect();
    askers.sort_unstable();
    assert_eq!(askers, ["api1", "api2", "db", "web"]);
}

#[test]
fn upstreams_are_the_containers_own_then_the_daemons_but_never_for_internal_only() {
    let mut state = state();
    state.containers[1].dns.servers = vec![
        IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9)),
        "2001:db8::53".parse().expect("v6"),
    ];
    let dir = Directory::build(&state, &upstream());
    let by_name = |name: &str| {
        dir.askers()
            .find(|a| a.name == name)
            .expect("an asker")
            .upstreams
            .clone()
    };
    assert_eq!(by_name("web"), upstream());
    assert!(
        by_name("web")[0].from_host,
        "the host's servers, from its namespace"
    );
    // A container's own servers are asked from its namespace.
    assert_eq!(
        by_name("api1"),
        vec![
            Upstream {
                addr: "10.9.9.9:53".parse::<SocketAddr>().expect("addr"),
                from_host: false
            },
            Upstream {
                addr: "[2001:db8::53]:53".parse().expect("addr"),
                from_host: false
            },
        ]
    );
    assert!(by_name("db").is_empty(), "internal networks do not forward");
}

/// Where each kind of server is asked from (Docker's rule): the host's
/// resolv.conf from the host; the daemon's `--dns` from the container,
/// unless it is a loopback address (the host's own); a container's own
/// `--dns` from the container, its loopback included.
#[test]
fn upstreams_say_where_they_are_asked_from() {
    let addr = |s: &str| s.parse::<SocketAddr>().expect("addr");
    assert!(Upstream::of_host(addr("10.0.0.2:53"), true).from_host);
    assert!(Upstream::of_host(addr("127.0.0.53:53"), true).from_host);
    assert!(!Upstream::of_host(addr("10.0.0.2:53"), false).from_host);
    assert!(Upstream::of_host(addr("127.0.0.1:5353"), false).from_host);
    assert!(Upstream::of_host(addr("[::1]:53"), false).from_host);
    assert!(!Upstream::of_container(addr("127.0.0.1:53")).from_host);
}

#[test]
fn ptr_names_the_container_and_network_on_the_askers_networks() {
    let dir = Directory::build(&state(), &upstream());
    let web = dir.asker(&"a".repeat(64)).expect("web");
    let db = dir.asker(&"d".repeat(64)).expect("db");
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    assert_eq!(dir.reverse(web, ip("10.1.0.4")), Some("api2.front".into()));
    assert_eq!(dir.reverse(web, ip("fd00::2")), Some("web.front".into()));
    assert_eq!(dir.reverse(web, ip("10.2.0.2")), None, "db is not on front");
    assert_eq!(
        dir.reverse(web, ip("172.17.0.3")),
        None,
        "bridge has no names"
    );
    assert_eq!(dir.reverse(db, ip("10.1.0.4")), None);
}

#[test]
fn a_link_on_a_user_defined_network_is_an_alias_for_its_container_only() {
    let mut state = state();
    state.containers[0].links.push(Link {
        name: "api2".into(),
        alias: "backend".into(),
        network: "front".into(),
        ips: vec![IpAddr::V4(Ipv4Addr::new(10, 1, 0, 4))],
        env: Vec::new(),
    });
    let dir = Directory::build(&state, &upstream());
    let web = dir.asker(&"a".repeat(64)).expect("web");
    let api1 = dir.asker(&"b".repeat(64)).expect("api1");
    assert_eq!(
        dir.resolve(web, "backend").map(|a| a.v4),
        Some(vec![Ipv4Addr::new(10, 1, 0, 4)])
    );
    assert_eq!(dir.resolve(api1, "backend"), None);
    // It follows the container: detached, the alias is no name here.
    state.containers.retain(|c| c.name != "api2");
    let dir = Directory::build(&state, &upstream());
    let web = dir.asker(&"a".repeat(64)).expect("web");
    assert_eq!(dir.resolve(web, "backend"), None);
}
