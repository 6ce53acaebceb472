//! Dual-stack networks with real IPv6 traffic: containers get their IPv6
//! address, link-local address and default route from the agent only;
//! neighbours talk over IPv6 (TCP both ways, the gateway too); other
//! networks stay isolated; a forged IPv6 source never leaves a container;
//! and, while netagent translates no IPv6 from or to outside, nothing from
//! outside reaches a container's IPv6 address and nothing leaves with one.
//! Needs root; fails loudly without it.
#![allow(
    clippy::unwrap_used,
    reason = "tests panic on failure, with context from the asserts"
)]

use std::{
    net::{Ipv6Addr, SocketAddr},
    time::Duration,
};

use netagent_tests::{
    packet::ipv6_frame,
    traffic::{
        RawSender, bulk_download, bulk_upload, tcp_bulk_on, tcp_connect, tcp_echo_on,
        tcp_roundtrip, udp_echo_on,
    },
    world::{World, tcp_reaches},
};
use serde_json::Value;

const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

fn ip6(w: &World, name: &str, network: &str) -> Ipv6Addr {
    w.endpoint(name, network)["ip6"]
        .as_str()
        .unwrap_or_else(|| panic!("{name} has no IPv6 address on {network}"))
        .parse()
        .unwrap()
}

fn any6(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))
}

#[test]
fn dual_stack_networks_carry_ipv6_and_keep_it_contained() {
    let mut w = World::new();
    w.daemon.ok(&[
        "network",
        "create",
        "dual",
        "--ipv6",
        "--subnet",
        "10.30.0.0/24",
        "--subnet",
        "fd00:30::/64",
    ]);
    w.daemon.ok(&["network", "create", "far", "--ipv6"]);
    // An IPv6 subnet without --ipv6 is refused, nothing made.
    let (ok, _, err) = w
        .daemon
        .cli(&["network", "create", "half", "--subnet", "fd00:31::/64"]);
    assert!(!ok && err.contains("needs --ipv6"), "{err}");
    let (ok, _, _) = w.daemon.cli(&["network", "inspect", "half"]);
    assert!(!ok);

    w.attach("ca", &["--network", "dual"]);
    w.attach("cb", &["--network", "dual", "--ip6", "fd00:30::b"]);
    w.attach("cc", &["--network", "far"]);
    let (a6, b6) = (ip6(&w, "ca", "dual"), ip6(&w, "cb", "dual"));
    assert_eq!(a6, "fd00:30::2".parse::<Ipv6Addr>().unwrap());
    assert_eq!(b6, "fd00:30::b".parse::<Ipv6Addr>().unwrap());
    let net: Value =
        serde_json::from_str(&w.daemon.ok(&["--json", "network", "inspect", "far"])).unwrap();
    let far_subnet = net["config"]["ipam6"]["subnet"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        far_subnet.starts_with("fd") && far_subnet.ends_with("::/64"),
        "{far_subnet}"
    );

    // Only the agent's addresses (no SLAAC, no generated ones) and both
    // default routes.
    let (mac, _) = w.macs("ca", "dual");
    let ll = netagent::host::link_local6(mac);
    let addrs = w
        .ns("ca")
        .exec(&["ip", "-6", "-o", "addr", "show", "dev", "eth0"]);
    let mut found: Vec<&str> = addrs
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .collect();
    found.sort_unstable();
    let mut want = vec![format!("{a6}/64"), format!("{ll}/64")];
    want.sort();
    assert_eq!(found, want, "{addrs}");
    let routes = w.ns("ca").exec(&["ip", "-6", "route", "show", "default"]);
    assert!(routes.contains("via fd00:30::1 dev eth0"), "{routes}");

    // Neighbours over IPv6, both ways; the server sees the real client.
    let _b_srv = tcp_echo_on(w.ns("cb"), any6(80));
    let _a_srv = tcp_echo_on(w.ns("ca"), any6(80));
    for (from, from6, to6) in [("ca", a6, b6), ("cb", b6, a6)] {
        let to = SocketAddr::from((to6, 80)).to_string();
        let mut conn =
            tcp_connect(w.ns(from), &to).unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
        let answer = tcp_roundtrip(&mut conn, "hi").unwrap();
        assert!(answer.starts_with(&format!("[{from6}]:")), "{answer}");
    }
    // The gateway (the host) over IPv6.
    let _host_srv = tcp_echo_on(&w.host, any6(9090));
    let gw = SocketAddr::from(("fd00:30::1".parse::<Ipv6Addr>().unwrap(), 9090));
    let mut conn = tcp_connect(w.ns("ca"), &gw.to_string()).unwrap();
    assert!(
        tcp_roundtrip(&mut conn, "hi")
            .unwrap()
            .starts_with(&format!("[{a6}]:"))
    );

    // Another network's container: isolated.
    let isolation = w.event("drop_isolation");
    assert!(!tcp_reaches(
        w.ns("cc"),
        SocketAddr::from((a6, 80)),
        PROBE_TIMEOUT
    ));
    assert!(w.event("drop_isolation") > isolation);

    // A forged IPv6 source (b's address, from a's interface) is dropped.
    let spoofed = w.event("drop_spoofed");
    let (a_mac, gw_mac) = w.macs("ca", "dual");
    let mut frame = ipv6_frame(a_mac, &b6.to_string(), "fd00:30::1", &[], 6, &[0; 20]);
    frame[..6].copy_from_slice(&gw_mac);
    RawSender::new(w.ns("ca"), "eth0").send(&frame);
    assert!(
        netagent_tests::netns::wait_until(Duration::from_secs(2), || w.event("drop_spoofed")
            > spoofed),
        "the forged frame was not dropped"
    );

    // The outside: no IPv6 reaches a container, none leaves one.
    w.host
        .ip(&["-6", "addr", "add", "fd66::1/64", "dev", &w.up(), "nodad"]);
    let dn = format!("{}dn", w.prefix);
    w.upstream
        .ip(&["-6", "addr", "add", "fd66::2/64", "dev", &dn, "nodad"]);
    w.upstream
        .ip(&["-6", "route", "add", "fd00:30::/64", "via", "fd66::1"]);
    w.host
        .exec(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    let unpublished = w.event("drop_unpublished");
    assert!(!tcp_reaches(
        &w.upstream,
        SocketAddr::from((a6, 80)),
        PROBE_TIMEOUT
    ));
    assert!(w.event("drop_unpublished") > unpublished);
    let _up_srv = tcp_echo_on(&w.upstream, any6(7070));
    let untranslatable = w.event("drop_untranslatable");
    let outside = SocketAddr::from(("fd66::2".parse::<Ipv6Addr>().unwrap(), 7070));
    assert!(!tcp_reaches(w.ns("ca"), outside, PROBE_TIMEOUT));
    assert!(w.event("drop_untranslatable") > untranslatable);
}

/// `-p 8080:80 -p 5353:53/udp` on a dual-stack container is served on
/// `0.0.0.0` and `[::]` as Docker serves it: an IPv6 client reaches the
/// container's IPv6 address (and is seen with its own), the answers come
/// from the published address, bulk transfers go both ways with the
/// kernel's default offloads, and the receivers count no checksum error.
/// The container's own IPv6 still never leaves untranslated. All under
/// FORWARD DROP for both families (the datapath's redirects skip it).
#[test]
fn wildcard_publications_are_served_over_ipv6_too() {
    let mut w = World::with_default_offloads();
    w.daemon.ok(&[
        "network",
        "create",
        "dual",
        "--ipv6",
        "--subnet",
        "10.31.0.0/24",
        "--subnet",
        "fd00:31::/64",
    ]);
    w.attach(
        "web",
        &[
            "--network",
            "dual",
            "-p",
            "8080:80",
            "-p",
            "5353:53/udp",
            "-p",
            "8081:81",
        ],
    );
    let web6 = ip6(&w, "web", "dual");
    // `port` as `docker port` prints a mapping served on both families.
    assert_eq!(
        w.daemon.ok(&["port", "web"]),
        "53/udp -> 0.0.0.0:5353\n53/udp -> [::]:5353\n80/tcp -> 0.0.0.0:8080\n\
         80/tcp -> [::]:8080\n81/tcp -> 0.0.0.0:8081\n81/tcp -> [::]:8081\n"
    );
    assert_eq!(
        w.daemon.ok(&["port", "web", "80"]),
        "0.0.0.0:8080\n[::]:8080\n"
    );
    w.host
        .ip(&["-6", "addr", "add", "fd67::1/64", "dev", &w.up(), "nodad"]);
    let dn = format!("{}dn", w.prefix);
    w.upstream
        .ip(&["-6", "addr", "add", "fd67::2/64", "dev", &dn, "nodad"]);
    for tool in ["iptables", "ip6tables"] {
        w.host.exec(&[tool, "-P", "FORWARD", "DROP"]);
    }
    let _tcp = tcp_echo_on(w.ns("web"), any6(80));
    let _udp = udp_echo_on(w.ns("web"), any6(53));
    let _bulk = tcp_bulk_on(w.ns("web"), any6(81), 8 << 20);
    let csum = |w: &World| {
        (
            w.ns("web").snmp("Tcp", "InCsumErrors"),
            w.ns("web").exec(&["cat", "/proc/net/snmp6"]),
        )
    };
    let before = csum(&w);

    let mut conn = tcp_connect(&w.upstream, "[fd67::1]:8080").expect("IPv6 to the publication");
    let answer = tcp_roundtrip(&mut conn, "hi").unwrap();
    assert!(
        answer.starts_with("[fd67::2]:"),
        "the real client: {answer}"
    );
    assert_eq!(conn.peer_addr().unwrap().to_string(), "[fd67::1]:8080");

    let udp = w
        .upstream
        .enter(|| std::net::UdpSocket::bind("[::]:0").unwrap());
    udp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    udp.send_to(b"ping", "[fd67::1]:5353").unwrap();
    let mut buf = [0u8; 200];
    let (n, from) = udp.recv_from(&mut buf).expect("a UDP answer");
    assert_eq!(from.to_string(), "[fd67::1]:5353");
    assert!(String::from_utf8_lossy(&buf[..n]).ends_with(" ping"));

    assert_eq!(
        bulk_download(&w.upstream, "[fd67::1]:8081").unwrap(),
        8 << 20
    );
    assert_eq!(
        bulk_upload(&w.upstream, "[fd67::1]:8081", 8 << 20).unwrap(),
        8 << 20
    );
    let after = csum(&w);
    assert_eq!(before.0, after.0, "TCP checksum errors");
    let udp6_errors = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("Udp6InCsumErrors"))
            .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
    };
    assert_eq!(
        udp6_errors(&before.1),
        udp6_errors(&after.1),
        "UDP6 checksum errors"
    );

    // Nothing but the publication reaches the container's own address,
    // and the container's own IPv6 never leaves untranslated.
    w.upstream
        .ip(&["-6", "route", "add", "fd00:31::/64", "via", "fd67::1"]);
    assert!(!tcp_reaches(
        &w.upstream,
        SocketAddr::from((web6, 80)),
        PROBE_TIMEOUT
    ));
    let _up = tcp_echo_on(&w.upstream, any6(7070));
    let out = SocketAddr::from(("fd67::2".parse::<Ipv6Addr>().unwrap(), 7070));
    let untranslatable = w.event("drop_untranslatable");
    assert!(!tcp_reaches(w.ns("web"), out, PROBE_TIMEOUT));
    assert!(w.event("drop_untranslatable") > untranslatable);
    // IPv4 still served.
    let mut conn4 = tcp_connect(
        &w.upstream,
        &format!("{}:8080", netagent_tests::world::HOST_UP_IP),
    )
    .unwrap();
    let answer = tcp_roundtrip(&mut conn4, "v4").unwrap();
    assert!(
        answer.contains(netagent_tests::world::UPSTREAM_IP),
        "{answer}"
    );
}
