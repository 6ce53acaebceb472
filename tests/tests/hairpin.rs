//! Hairpin: containers reaching published ports of the host (their own
//! included) at the host's address and at their gateway's, over TCP and
//! UDP, from the same network, from another one and from an internal one;
//! the scoping of address-bound publications; checksums verified by the
//! receivers; bulk transfers both ways with the kernel's default offloads.
//! Needs root; fails loudly without it.
#![allow(
    clippy::unwrap_used,
    reason = "tests panic on failure, with context from the asserts"
)]

use std::{net::SocketAddr, time::Duration};

use netagent_tests::{
    netns::Topology,
    traffic::{
        bulk_download, bulk_upload, tcp_bulk, tcp_connect, tcp_echo, tcp_roundtrip, udp_echo,
        udp_socket,
    },
    world::{HOST_UP_IP, UPSTREAM_IP, World, tcp_reaches},
};
use serde_json::Value;

/// A dropped SYN shows as this timeout.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
const BULK: usize = 16 << 20;

fn gateway(w: &World, network: &str) -> String {
    let net: Value =
        serde_json::from_str(&w.daemon.ok(&["--json", "network", "inspect", network])).unwrap();
    net["config"]["ipam"]["gateway"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The TCP and UDP checksum errors a container's stack counted.
fn csum_errors(w: &World, name: &str) -> (u64, u64) {
    (
        w.ns(name).snmp("Tcp", "InCsumErrors"),
        w.ns(name).snmp("Udp", "InCsumErrors"),
    )
}

/// Connects from `from` to `to`, sends a line; returns what the echo
/// server saw as its peer. The answer must come back on the connection
/// made to `to`, so the reply was translated.
fn tcp_peer_seen(w: &World, from: &str, to: &str) -> String {
    let mut conn =
        tcp_connect(w.ns(from), to).unwrap_or_else(|e| panic!("{from} -> {to}: connect: {e}"));
    let answer =
        tcp_roundtrip(&mut conn, "hi").unwrap_or_else(|e| panic!("{from} -> {to}: answer: {e}"));
    assert_eq!(conn.peer_addr().unwrap().to_string(), to);
    answer
        .strip_suffix(" hi")
        .unwrap_or_else(|| panic!("{from} -> {to}: {answer:?}"))
        .to_owned()
}

#[test]
fn containers_reach_published_ports_of_the_host() {
    let mut w = World::new();
    w.daemon.ok(&["network", "create", "pub"]);
    w.daemon.ok(&["network", "create", "far"]);
    w.daemon.ok(&["network", "create", "sealed", "--internal"]);
    w.attach(
        "web",
        &[
            "--network",
            "pub",
            "-p",
            "8080:80",
            "-p",
            "5353:53/udp",
            "-p",
            &format!("{HOST_UP_IP}:8082:80"),
            "-p",
            "127.0.0.1:8083:80",
            "-p",
            "8084:84",
        ],
    );
    w.attach("client", &["--network", "pub"]);
    w.attach("stranger", &["--network", "far"]);
    w.attach("hermit", &["--network", "sealed"]);
    // Wire-like senders: every checksum the datapath rewrites is complete
    // and verified by the receiving stack.
    for name in ["web", "client", "stranger"] {
        Topology::set_tx_csum(w.ns(name), "eth0", false);
    }
    let _tcp = tcp_echo(w.ns("web"), 80);
    let _udp = udp_echo(w.ns("web"), 53);
    let errors_before = ["web", "client", "stranger"].map(|n| csum_errors(&w, n));
    let gw_pub = gateway(&w, "pub");
    let gw_far = gateway(&w, "far");
    let gw_sealed = gateway(&w, "sealed");
    let (web, client, stranger) = (
        w.ip("web", "pub"),
        w.ip("client", "pub"),
        w.ip("stranger", "far"),
    );

    // A neighbour, at the host's address and at its gateway's: the server
    // sees the real client, the client the address it connected to.
    for to in [format!("{HOST_UP_IP}:8080"), format!("{gw_pub}:8080")] {
        let peer = tcp_peer_seen(&w, "client", &to);
        assert!(peer.starts_with(&format!("{client}:")), "{to}: {peer}");
    }
    // Another network's container, through the publication (a public
    // door), while its direct way stays shut.
    for to in [format!("{HOST_UP_IP}:8080"), format!("{gw_far}:8080")] {
        let peer = tcp_peer_seen(&w, "stranger", &to);
        assert!(peer.starts_with(&format!("{stranger}:")), "{to}: {peer}");
    }
    assert!(
        !tcp_reaches(w.ns("stranger"), SocketAddr::from((web, 80)), PROBE_TIMEOUT),
        "isolation still holds for the direct address"
    );
    // Its own publication: the server sees the address it was reached at.
    for to in [format!("{HOST_UP_IP}:8080"), format!("{gw_pub}:8080")] {
        let host = to.split(':').next().unwrap().to_owned();
        let peer = tcp_peer_seen(&w, "web", &to);
        assert!(peer.starts_with(&format!("{host}:")), "{to}: {peer}");
    }

    // UDP: the answer comes from the published address, for a neighbour,
    // a stranger and the container itself.
    for (from, to) in [
        ("client", HOST_UP_IP.to_owned()),
        ("client", gw_pub.clone()),
        ("stranger", gw_far.clone()),
        ("web", HOST_UP_IP.to_owned()),
    ] {
        let s = udp_socket(w.ns(from));
        s.send_to(b"ping", format!("{to}:5353")).unwrap();
        let mut buf = [0u8; 200];
        let (n, src) = s
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("{from} -> {to}:5353: {e}"));
        assert_eq!(src.to_string(), format!("{to}:5353"), "{from}");
        assert!(
            String::from_utf8_lossy(&buf[..n]).ends_with(" ping"),
            "{from}"
        );
    }

    // Scoping: a publication on one host address is not on the gateway's,
    // and one on 127.0.0.1 is the container's own loopback (nothing).
    let peer = tcp_peer_seen(&w, "client", &format!("{HOST_UP_IP}:8082"));
    assert!(peer.starts_with(&format!("{client}:")), "{peer}");
    // (The host refuses the first: nothing listens there.)
    for to in [format!("{gw_pub}:8082"), "127.0.0.1:8083".to_owned()] {
        assert!(
            tcp_connect(w.ns("client"), &to).is_err(),
            "{to} is out of the publication's scope"
        );
    }
    // An internal network reaches nothing outside its subnet, published
    // ports included.
    let internal_before = w.event("drop_internal");
    assert!(!tcp_reaches(
        w.ns("hermit"),
        format!("{gw_sealed}:8080").parse().unwrap(),
        PROBE_TIMEOUT
    ));
    assert!(w.event("drop_internal") > internal_before);

    // A direct flow that reuses a hairpin flow's tuple: its replies are not
    // taken for the hairpin flow's (they keep the container's source).
    let s = udp_socket(w.ns("client"));
    s.send_to(b"one", format!("{HOST_UP_IP}:5353")).unwrap();
    let mut buf = [0u8; 200];
    let (_, src) = s.recv_from(&mut buf).unwrap();
    assert_eq!(src.to_string(), format!("{HOST_UP_IP}:5353"));
    s.send_to(b"two", SocketAddr::from((web, 53))).unwrap();
    let (_, src) = s.recv_from(&mut buf).unwrap();
    assert_eq!(src, SocketAddr::from((web, 53)), "the direct flow's reply");

    assert_eq!(
        ["web", "client", "stranger"].map(|n| csum_errors(&w, n)),
        errors_before,
        "every rewritten checksum verified"
    );
    assert!(w.event("hairpin_forward") > 0);
    assert!(w.event("hairpin_reply") > 0);
}

/// Bulk both ways through a hairpin with the kernel's default offloads
/// (TSO super-packets, CHECKSUM_PARTIAL): a neighbour, a container of
/// another network and the publishing container itself, under Docker's
/// FORWARD DROP policy (deliveries skip the forwarding path).
#[test]
fn hairpin_bulk_transfers_with_default_offloads() {
    let mut w = World::with_default_offloads();
    w.daemon.ok(&["network", "create", "pub"]);
    w.daemon.ok(&["network", "create", "far"]);
    w.attach("web", &["--network", "pub", "-p", "8081:81"]);
    w.attach("client", &["--network", "pub"]);
    w.attach("stranger", &["--network", "far"]);
    w.host.exec(&["iptables", "-P", "FORWARD", "DROP"]);
    let _bulk = tcp_bulk(w.ns("web"), 81, BULK);
    let gw_pub = gateway(&w, "pub");
    for (from, to) in [
        ("client", format!("{HOST_UP_IP}:8081")),
        ("stranger", format!("{HOST_UP_IP}:8081")),
        ("web", format!("{gw_pub}:8081")),
    ] {
        assert_eq!(
            bulk_download(w.ns(from), &to).unwrap_or_else(|e| panic!("{from} <- {to}: {e}")),
            BULK as u64,
            "{from} downloads from {to}"
        );
        assert_eq!(
            bulk_upload(w.ns(from), &to, BULK).unwrap_or_else(|e| panic!("{from} -> {to}: {e}")),
            BULK as u64,
            "{from} uploads to {to}"
        );
    }
}

/// A publication whose target is not one of netagent's containers cannot
/// be hairpinned (its replies would never pass the datapath): dropped and
/// counted, never handed to the stack half-translated.
#[test]
fn hairpin_to_a_foreign_target_is_dropped_and_counted() {
    let mut w = World::new();
    w.daemon.ok(&["network", "create", "pub"]);
    w.attach("client", &["--network", "pub"]);
    w.daemon
        .ok(&["publish", &format!("8090->{UPSTREAM_IP}:80")]);
    let before = w.event("drop_hairpin_foreign");
    assert!(!tcp_reaches(
        w.ns("client"),
        format!("{HOST_UP_IP}:8090").parse().unwrap(),
        PROBE_TIMEOUT
    ));
    assert!(w.event("drop_hairpin_foreign") > before);
}

/// The IPv6 gateway of a dual-stack network.
fn gateway6(w: &World, network: &str) -> String {
    let net: Value =
        serde_json::from_str(&w.daemon.ok(&["--json", "network", "inspect", network])).unwrap();
    net["config"]["ipam6"]["gateway"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Hairpin over IPv6: dual-stack containers reach the `[::]` side of a
/// publication at the host's IPv6 address and at their IPv6 gateway's, a
/// neighbour, another network's container and the published container
/// itself, TCP and UDP, each seen by the server as Docker's hairpin shows
/// it; an address-bound IPv6 publication only at its address; an internal
/// network's container nothing outside its subnet; checksums verified by
/// the receivers (tx offload off); a bulk transfer both ways.
#[test]
fn containers_reach_published_ports_of_the_host_over_ipv6() {
    let mut w = World::new();
    for (name, v4, v6) in [
        ("pub", "10.35.0.0/24", "fd00:35::/64"),
        ("far", "10.36.0.0/24", "fd00:36::/64"),
    ] {
        w.daemon.ok(&[
            "network", "create", name, "--ipv6", "--subnet", v4, "--subnet", v6,
        ]);
    }
    w.daemon.ok(&[
        "network",
        "create",
        "sealed",
        "--internal",
        "--ipv6",
        "--subnet",
        "10.37.0.0/24",
        "--subnet",
        "fd00:37::/64",
    ]);
    let up = w.up();
    w.host
        .ip(&["-6", "addr", "add", "fd6c::1/64", "dev", &up, "nodad"]);
    w.attach(
        "web",
        &[
            "--network",
            "pub",
            "-p",
            "8080:80",
            "-p",
            "5353:53/udp",
            "-p",
            "[fd6c::1]:8082:80",
            "-p",
            "8084:84",
        ],
    );
    w.attach("client", &["--network", "pub"]);
    w.attach("stranger", &["--network", "far"]);
    w.attach("hermit", &["--network", "sealed"]);
    for name in ["web", "client", "stranger"] {
        Topology::set_tx_csum(w.ns(name), "eth0", false);
    }
    let any6 = |port: u16| SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port));
    let _tcp = netagent_tests::traffic::tcp_echo_on(w.ns("web"), any6(80));
    let _udp = netagent_tests::traffic::udp_echo_on(w.ns("web"), any6(53));
    let _bulk = netagent_tests::traffic::tcp_bulk_on(w.ns("web"), any6(84), 8 << 20);
    let csum6 = |w: &World, name: &str| {
        (
            w.ns(name).snmp("Tcp", "InCsumErrors"),
            w.ns(name).snmp6("Udp6InCsumErrors"),
        )
    };
    let before = ["web", "client", "stranger"].map(|n| csum6(&w, n));
    let ip6 = |name: &str, net: &str| w.endpoint(name, net)["ip6"].as_str().unwrap().to_owned();
    let (gw_pub, gw_far) = (gateway6(&w, "pub"), gateway6(&w, "far"));
    let hairpins = w.event("hairpin_forward");

    // A neighbour and a stranger, at the host's address and their
    // gateway's: the server sees the real client.
    for (from, net, gw) in [("client", "pub", &gw_pub), ("stranger", "far", &gw_far)] {
        for to in ["[fd6c::1]:8080".to_owned(), format!("[{gw}]:8080")] {
            let peer = tcp_peer_seen(&w, from, &to);
            let me = ip6(from, net);
            assert!(
                peer.starts_with(&format!("[{me}]:")),
                "{from} -> {to}: {peer}"
            );
        }
    }
    // Its own publication: it sees the address it was reached at.
    for host in ["fd6c::1", gw_pub.as_str()] {
        let to = format!("[{host}]:8080");
        let peer = tcp_peer_seen(&w, "web", &to);
        assert!(peer.starts_with(&format!("[{host}]:")), "{to}: {peer}");
    }
    // The address-bound publication: at its address, not at the gateway.
    tcp_peer_seen(&w, "client", "[fd6c::1]:8082");
    let err =
        tcp_connect(w.ns("client"), &format!("[{gw_pub}]:8082")).expect_err("not bound there");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    // UDP: the answer comes from the published address.
    for (from, to) in [("client", "[fd6c::1]:5353"), ("stranger", "[fd6c::1]:5353")] {
        let socket = w
            .ns(from)
            .enter(|| std::net::UdpSocket::bind("[::]:0").unwrap());
        socket
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        socket.send_to(b"ping", to).unwrap();
        let mut buf = [0u8; 200];
        let (n, src) = socket.recv_from(&mut buf).expect("a UDP answer");
        assert_eq!(src.to_string(), to, "{from}");
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with(" ping"));
    }
    // An internal network's container (which has no route out, only its
    // gateway): nothing outside its subnet.
    let internal = w.event("drop_internal");
    let sealed_gw: SocketAddr = format!("[{}]:8080", gateway6(&w, "sealed"))
        .parse()
        .unwrap();
    assert!(!tcp_reaches(w.ns("hermit"), sealed_gw, PROBE_TIMEOUT));
    assert!(w.event("drop_internal") > internal);
    // Bulk both ways.
    assert_eq!(
        bulk_download(w.ns("client"), "[fd6c::1]:8084").unwrap(),
        8 << 20
    );
    assert_eq!(
        bulk_upload(w.ns("client"), "[fd6c::1]:8084", 8 << 20).unwrap(),
        8 << 20
    );
    assert!(w.event("hairpin_forward") > hairpins);
    let after = ["web", "client", "stranger"].map(|n| csum6(&w, n));
    assert_eq!(
        before, after,
        "checksum errors (TCP, UDP6) of web, client, stranger"
    );
}

/// IPv6 hairpin the way real senders send: the kernel's default offloads
/// (GSO super-packets, CHECKSUM_PARTIAL) in every container, 16 MiB both
/// ways, under FORWARD DROP for both families (the hairpin path redirects
/// around it), from a neighbour, another network and the container itself.
/// (This found neighbour solicitations between containers dropped by
/// br_netfilter under ip6tables' DROP: they now go straight to the
/// neighbour, endpoint6.rs.)
#[test]
fn ipv6_hairpin_bulk_transfers_with_default_offloads() {
    let mut w = World::with_default_offloads();
    for (name, v4, v6) in [
        ("pub", "10.38.0.0/24", "fd00:38::/64"),
        ("far", "10.39.0.0/24", "fd00:39::/64"),
    ] {
        w.daemon.ok(&[
            "network", "create", name, "--ipv6", "--subnet", v4, "--subnet", v6,
        ]);
    }
    let up = w.up();
    w.host
        .ip(&["-6", "addr", "add", "fd6d::1/64", "dev", &up, "nodad"]);
    w.attach("web", &["--network", "pub", "-p", "8081:81"]);
    w.attach("client", &["--network", "pub"]);
    w.attach("stranger", &["--network", "far"]);
    w.forward_drop();
    let any6 = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 81));
    let _bulk = netagent_tests::traffic::tcp_bulk_on(w.ns("web"), any6, BULK);
    let gw_pub = gateway6(&w, "pub");
    for (from, to) in [
        ("client", "[fd6d::1]:8081".to_owned()),
        ("stranger", "[fd6d::1]:8081".to_owned()),
        ("web", format!("[{gw_pub}]:8081")),
    ] {
        assert_eq!(
            bulk_download(w.ns(from), &to).unwrap_or_else(|e| panic!(
                "{from} <- {to}: {e} {}",
                serde_json::to_string(&w.daemon.stats()["events"]).unwrap()
            )),
            BULK as u64,
            "{from} downloads from {to}"
        );
        assert_eq!(
            bulk_upload(w.ns(from), &to, BULK).unwrap_or_else(|e| panic!("{from} -> {to}: {e}")),
            BULK as u64,
            "{from} uploads to {to}"
        );
    }
}
