//! Network-namespace tests of the datapath's containment with real
//! traffic: bulk transfers with the kernel's default offloads under
//! Docker's FORWARD DROP, the TCX chain handed on, spoofing tried as a
//! hostile tenant would, container addresses unreachable by routing,
//! nothing leaving with a private source, containers failing closed, path
//! MTU discovery, fragments, and one container unable to starve the others
//! of masquerade ports. Needs root; fails loudly without it.
#![allow(
    clippy::unwrap_used,
    reason = "tests panic on failure, with context from the asserts"
)]

use std::{
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    time::Duration,
};

use netagent_tests::{
    netns::wait_until,
    packet::{FrameSpec, TCP_ACK},
    probe::{BPF_TCX_EGRESS, BPF_TCX_INGRESS, Probe},
    traffic::{
        RawSender, Server, bulk_download, bulk_upload, tcp_bulk, tcp_echo, udp_echo, udp_socket,
    },
    world::{HOST_UP_IP, UPSTREAM_IP, World, pings, tcp_reaches},
};

const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a raw frame may take through a veth and the datapath.
const SETTLE: Duration = Duration::from_secs(5);
const BULK: usize = 256 << 20;

fn sock(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

/// Bulk TCP both ways through a published port and through masquerade,
/// from senders with the kernel's default offloads (TSO/GSO super-packets,
/// CHECKSUM_PARTIAL), on a host with Docker's FORWARD DROP policy: every
/// byte arrives, and nothing crosses the FORWARD hook (a GSO packet must
/// take the redirect path, not fall back to the stack).
#[test]
fn bulk_transfers_with_default_offloads_under_forward_drop() {
    let mut w = World::with_default_offloads();
    w.host.exec(&["iptables", "-P", "FORWARD", "DROP"]);
    w.attach("web", &["-p", "8080:80"]);
    let _ctr = tcp_bulk(w.ns("web"), 80, BULK);
    let _out = tcp_bulk(&w.upstream, 9000, BULK);
    let published = format!("{HOST_UP_IP}:8080");
    let outside = format!("{UPSTREAM_IP}:9000");
    assert_eq!(
        bulk_download(&w.upstream, &published).unwrap(),
        BULK as u64,
        "container -> client"
    );
    assert_eq!(
        bulk_upload(&w.upstream, &published, BULK).unwrap(),
        BULK as u64,
        "client -> container"
    );
    assert_eq!(
        bulk_download(w.ns("web"), &outside).unwrap(),
        BULK as u64,
        "outside -> container"
    );
    assert_eq!(
        bulk_upload(w.ns("web"), &outside, BULK).unwrap(),
        BULK as u64,
        "container -> outside"
    );
    assert_eq!(
        w.forward_drops("iptables"),
        0,
        "packets fell back to the stack's FORWARD hook"
    );
    assert!(w.event("redirect_routed") > 0 && w.event("redirect_to_endpoint") > 0);
    assert_eq!(
        w.event("pass_frag_needed"),
        0,
        "GSO packets were taken for too big"
    );
}

/// netagent's TC programs hand on (TCX_NEXT) whatever is not theirs, so
/// a program another tool attaches after them on the same interface sees
/// it: the host's own traffic on the uplink both ways, and a container's
/// traffic to the host on its veth.
#[test]
fn the_tcx_chain_goes_on_after_netagents_programs() {
    let mut w = World::new();
    w.attach("web", &[]);
    let links = w.daemon.bpffs.join("links").join(w.up());
    let veth = w.inspect("web")["endpoints"][0]["host_ifname"]
        .as_str()
        .unwrap()
        .to_owned();
    let ifindex = |name: &str| -> u32 {
        let out = w.host.ip(&["-o", "link", "show", name]);
        out.split(':').next().unwrap().trim().parse().unwrap()
    };
    let (up, ve) = (ifindex(&w.up()), ifindex(&veth));
    let eplink = w.daemon.bpffs.join("eplinks").join(&veth);
    let (ingress, egress, container) = w.host.enter(move || {
        (
            Probe::attach_after(up, BPF_TCX_INGRESS, &links.join("tc_ingress")).unwrap(),
            Probe::attach_after(up, BPF_TCX_EGRESS, &links.join("tc_egress")).unwrap(),
            Probe::attach_after(ve, BPF_TCX_INGRESS, &eplink).unwrap(),
        )
    });
    for _ in 0..3 {
        assert!(
            pings(&w.upstream, HOST_UP_IP.parse().unwrap()),
            "the host answers"
        );
    }
    let gw = w.daemon.ok(&["--json", "network", "inspect", "bridge"]);
    let gw: serde_json::Value = serde_json::from_str(&gw).unwrap();
    let gw: Ipv4Addr = gw["config"]["ipam"]["gateway"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(pings(w.ns("web"), gw), "the container reaches the host");
    assert!(
        ingress.count() >= 3,
        "ingress probe saw {}",
        ingress.count()
    );
    assert!(egress.count() >= 3, "egress probe saw {}", egress.count());
    assert!(
        container.count() >= 1,
        "container probe saw {}",
        container.count()
    );
}

/// A hostile container tries what a tenant could: send with another
/// container's address (on its network, another one, an internal one) so
/// that the outside's replies land there, answer a published service's
/// client in its place, or send with an outside address. Nothing of it
/// leaves the host or reaches anyone; every attempt is counted.
#[test]
fn spoofing_from_a_container_goes_nowhere() {
    let mut w = World::new();
    w.daemon.ok(&["network", "create", "na"]);
    w.daemon.ok(&["network", "create", "nb"]);
    w.daemon.ok(&["network", "create", "ni", "--internal"]);
    w.attach("evil", &["--network", "na"]);
    w.attach("peer", &["--network", "na"]);
    w.attach("svc", &["--network", "nb", "-p", "5353:53/udp"]);
    w.attach("vault", &["--network", "ni"]);
    let _svc = udp_echo(w.ns("svc"), 53);
    let leaks = w.watch_leaks();
    let (evil_mac, gw_mac) = w.macs("evil", "na");
    let raw = RawSender::new(w.ns("evil"), "eth0");
    let send = |mut f: FrameSpec| {
        f.eth_src = evil_mac;
        f.eth_dst = gw_mac;
        raw.send(&f.build());
    };
    // A client of the published service, mid-conversation.
    let client = udp_socket(&w.upstream);
    client
        .send_to(b"hello", format!("{HOST_UP_IP}:5353"))
        .unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = client.recv_from(&mut buf).unwrap();
    assert!(std::str::from_utf8(&buf[..n]).unwrap().ends_with("hello"));
    let client_port = client.local_addr().unwrap().port();
    let outside = udp_socket(&w.upstream);
    let outside_port = outside.local_addr().unwrap().port();
    let before = w.event("drop_spoofed");

    let victims = [
        ("a neighbour", w.ip("peer", "na").to_string()),
        ("another network's container", w.ip("svc", "nb").to_string()),
        (
            "an internal network's container",
            w.ip("vault", "ni").to_string(),
        ),
        ("an outside address", "8.8.8.8".to_owned()),
        ("the client's own address", UPSTREAM_IP.to_owned()),
    ];
    for (_, src) in &victims {
        send(FrameSpec::udp(
            src,
            53,
            UPSTREAM_IP,
            outside_port,
            b"spoofed",
        ));
        send(FrameSpec::tcp(src, 40000, UPSTREAM_IP, 9, b""));
        send(FrameSpec::icmp_echo(
            src,
            UPSTREAM_IP,
            77,
            true,
            b"spoofed ping",
        ));
    }
    // The service's answer, forged: from svc's address and port to the
    // client, which would take it for the published service's.
    let svc_ip = w.ip("svc", "nb").to_string();
    send(FrameSpec::udp(
        &svc_ip,
        53,
        UPSTREAM_IP,
        client_port,
        b"forged answer",
    ));
    let sent = (victims.len() * 3 + 1) as u64;
    assert!(
        wait_until(SETTLE, || w.event("drop_spoofed") - before >= sent),
        "not every spoofed packet was dropped and counted"
    );
    assert_eq!(w.event("drop_spoofed") - before, sent);
    assert_eq!(leaks.count(), 0, "a spoofed packet reached the outside");
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        client.recv_from(&mut buf).is_err(),
        "the client got a forged answer"
    );
    outside
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    assert!(outside.recv_from(&mut buf).is_err());
    assert_eq!(w.event("masquerade"), 0, "no flow was opened for a victim");
    // The real service still answers its client.
    client
        .send_to(b"again", format!("{HOST_UP_IP}:5353"))
        .unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (n, from) = client.recv_from(&mut buf).unwrap();
    assert_eq!(from.to_string(), format!("{HOST_UP_IP}:5353"));
    assert!(std::str::from_utf8(&buf[..n]).unwrap().ends_with("again"));
}

/// Frames to 127.0.0.0/8 are forged wherever they come from: a neighbour
/// on the uplink sending to the host's MAC with destination 127.0.0.1 (the
/// class of bug where Docker's loopback publications were reachable from
/// the LAN, #45610), or a container sending one out of its eth0. The
/// datapath drops and counts every one, a `127.0.0.1` publication stays
/// unreached, and the host's own processes still reach it.
#[test]
fn loopback_destinations_from_the_wire_or_a_container_are_dropped() {
    let mut w = World::new();
    w.attach("svc", &["-p", "127.0.0.1:5354:53/udp"]);
    w.attach("evil", &[]);
    let _svc = udp_echo(w.ns("svc"), 53);
    let before = w.event("drop_loopback_dst");
    let (up, dn) = (format!("{}up", w.prefix), format!("{}dn", w.prefix));
    let (host_mac, dn_mac) = (w.host.mac(&up), w.upstream.mac(&dn));
    let neighbour = RawSender::new(&w.upstream, &dn);
    for dst in ["127.0.0.1", "127.0.0.53"] {
        let mut f = FrameSpec::udp(UPSTREAM_IP, 40000, dst, 5354, b"from the LAN");
        f.eth_src = dn_mac;
        f.eth_dst = host_mac;
        neighbour.send(&f.build());
    }
    let (evil_mac, gw_mac) = w.macs("evil", "bridge");
    let evil_ip = w.ip("evil", "bridge").to_string();
    let inside = RawSender::new(w.ns("evil"), "eth0");
    for dst in ["127.0.0.1", "127.9.9.9"] {
        let mut f = FrameSpec::udp(&evil_ip, 40000, dst, 5354, b"from a container");
        f.eth_src = evil_mac;
        f.eth_dst = gw_mac;
        inside.send(&f.build());
    }
    assert!(
        wait_until(SETTLE, || w.event("drop_loopback_dst") - before >= 4),
        "not every loopback frame was dropped and counted"
    );
    assert_eq!(w.event("drop_loopback_dst") - before, 4);
    let stats = w.daemon.stats();
    let translated = stats["publications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["publication"]["host_port"] == 5354)
        .map(|p| p["fwd_packets"].as_u64().unwrap());
    assert_eq!(
        translated,
        Some(0),
        "a forged frame reached the loopback publication: {stats}"
    );
    // The host itself still reaches it (socket hooks, its own cgroup).
    let (ok, out, err) = w.daemon.cgroup.run_in(
        &w.host.name,
        &[
            "python3",
            "-c",
            "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3); s.sendto(b'local', ('127.0.0.1', 5354)); print(s.recvfrom(100)[0].decode())",
        ],
    );
    assert!(ok && out.trim().ends_with("local"), "{out} {err}");
}

/// A neighbour with a route to the container subnets reaches nothing
/// there in the default `nat` mode: no TCP or UDP port (published ones
/// only through the host's address), no ping, on the default network, an
/// icc=false one or an internal one. A `routed` network opens its
/// containers' published ports (and nothing else) to direct routing, and
/// its containers go out with their own address.
#[test]
fn container_addresses_are_unreachable_by_routing_unless_routed() {
    let mut w = World::new();
    w.daemon.ok(&["network", "create", "quiet", "--icc=false"]);
    w.daemon.ok(&["network", "create", "priv", "--internal"]);
    w.daemon.ok(&[
        "network",
        "create",
        "open",
        "-o",
        "com.docker.network.bridge.gateway_mode_ipv4=routed",
    ]);
    w.attach("dflt", &["-p", "8080:80"]);
    w.attach("cq", &["--network", "quiet"]);
    w.attach("cp", &["--network", "priv"]);
    w.attach("cr", &["--network", "open", "-p", "8081:81"]);
    let mut servers: Vec<Server> = Vec::new();
    for name in ["dflt", "cq", "cp", "cr"] {
        for port in [80, 81, 82] {
            servers.push(tcp_echo(w.ns(name), port));
        }
        servers.push(udp_echo(w.ns(name), 53));
    }
    for net in ["bridge", "quiet", "priv", "open"] {
        let info: serde_json::Value =
            serde_json::from_str(&w.daemon.ok(&["--json", "network", "inspect", net])).unwrap();
        let subnet = info["config"]["ipam"]["subnet"]
            .as_str()
            .unwrap()
            .to_owned();
        w.upstream.ip(&["route", "add", &subnet, "via", HOST_UP_IP]);
    }
    let udp_answers = |ip: Ipv4Addr| {
        let s = udp_socket(&w.upstream);
        s.set_read_timeout(Some(PROBE_TIMEOUT)).unwrap();
        s.send_to(b"probe", (ip, 53)).unwrap();
        let mut buf = [0u8; 128];
        s.recv_from(&mut buf).is_ok()
    };
    for (name, net) in [("dflt", "bridge"), ("cq", "quiet"), ("cp", "priv")] {
        let ip = w.ip(name, net);
        for port in [80, 81, 82] {
            assert!(
                !tcp_reaches(&w.upstream, sock(ip, port), PROBE_TIMEOUT),
                "{name}:{port}"
            );
        }
        assert!(!udp_answers(ip), "{name}: UDP request/response by routing");
        assert!(!pings(&w.upstream, ip), "{name}: ping by routing");
    }
    assert!(w.event("drop_unpublished") >= 15);
    // The published port, through the host's address, as always.
    assert!(tcp_reaches(
        &w.upstream,
        sock(HOST_UP_IP.parse().unwrap(), 8080),
        PROBE_TIMEOUT
    ));
    // Routed: the published container port by its own address, nothing else.
    let r = w.ip("cr", "open");
    assert!(
        tcp_reaches(&w.upstream, sock(r, 81), PROBE_TIMEOUT),
        "routed, published"
    );
    assert!(
        !tcp_reaches(&w.upstream, sock(r, 82), PROBE_TIMEOUT),
        "routed, unpublished"
    );
    assert!(!udp_answers(r), "routed, unpublished UDP");
    // Its own flows leave unmasqueraded and get their answers.
    let _up = tcp_echo(&w.upstream, 7);
    let mut conn =
        netagent_tests::traffic::tcp_connect(w.ns("cr"), &format!("{UPSTREAM_IP}:7")).unwrap();
    let seen = netagent_tests::traffic::tcp_roundtrip(&mut conn, "hi").unwrap();
    assert!(
        seen.starts_with(&format!("{r}:")),
        "routed keeps its address: {seen}"
    );
}

/// What masquerade cannot translate never leaves with a container's
/// address: other IP protocols, ICMP other than echo, a later fragment
/// whose first fragment never went, malformed headers. Sent from a
/// container with raw sockets and raw frames; the outside counts what
/// arrives from anywhere but the host's address.
#[test]
fn nothing_leaves_with_a_container_address() {
    let mut w = World::new();
    w.attach("evil", &[]);
    let leaks = w.watch_leaks();
    let ip = w.ip("evil", "bridge").to_string();
    let (mac, gw) = w.macs("evil", "bridge");
    let raw = RawSender::new(w.ns("evil"), "eth0");
    let send = |frame: Vec<u8>| {
        let mut frame = frame;
        frame[..6].copy_from_slice(&gw);
        frame[6..12].copy_from_slice(&mac);
        raw.send(&frame);
    };
    let before = w.event("drop_untranslatable") + w.event("drop_fragment_untracked");
    send(netagent_tests::packet::ipv4_raw(
        &ip,
        UPSTREAM_IP,
        47,
        &[0; 24],
    )); // GRE
    send(netagent_tests::packet::ipv4_raw(
        &ip,
        UPSTREAM_IP,
        132,
        &[0; 32],
    )); // SCTP
    let mut timestamp = FrameSpec::icmp_echo(&ip, UPSTREAM_IP, 7, true, b"t").build();
    timestamp[34] = 13;
    send(timestamp);
    // An echo reply of no flow (nothing from outside can ping a container).
    send(FrameSpec::icmp_echo(&ip, UPSTREAM_IP, 9, false, b"pong").build());
    let big = FrameSpec::udp(&ip, 40000, UPSTREAM_IP, 53, &[1; 3000]).build();
    send(netagent_tests::packet::fragment(&big, 1480).pop().unwrap());
    let mut cut = FrameSpec::tcp(&ip, 40000, UPSTREAM_IP, 80, b"").build();
    cut.truncate(40);
    cut[16..18].copy_from_slice(&26u16.to_be_bytes());
    let c = netagent_tests::packet::ip_header_csum(&cut[14..34]);
    cut[24..26].copy_from_slice(&c.to_be_bytes());
    send(cut);
    // And a TCP segment of no flow (not a SYN): not masqueraded either.
    send(
        FrameSpec::tcp(&ip, 40001, UPSTREAM_IP, 80, b"")
            .tcp_with(TCP_ACK, 1, 1)
            .build(),
    );
    // GRE, SCTP, timestamp, stray fragment, cut TCP; the echo reply and
    // the ACK are counted as no-flow.
    let dropped = || w.event("drop_untranslatable") + w.event("drop_fragment_untracked");
    assert!(
        wait_until(SETTLE, || dropped() - before >= 5
            && w.event("drop_masquerade_no_flow") >= 2),
        "drops not counted: {before} -> {}",
        dropped()
    );
    assert_eq!(
        leaks.count(),
        0,
        "a container's address reached the outside"
    );
    assert_eq!(
        w.event("drop_masquerade_no_flow"),
        2,
        "the echo reply and the ACK"
    );
    // Sanity: the watch works (a ping from the container arrives
    // masqueraded, with the host's address, which is not a leak).
    assert!(pings(w.ns("evil"), UPSTREAM_IP.parse().unwrap()));
    assert_eq!(leaks.count(), 0);
}

/// A container's veth fails closed: IPv6 (the networks are IPv4) and any
/// other EtherType are dropped; broadcast and multicast between
/// containers follow `--icc=false`; and an interface whose map entry is
/// gone drops everything rather than bypassing the policy.
#[test]
fn container_veths_fail_closed() {
    let mut w = World::new();
    w.daemon.ok(&["network", "create", "quiet", "--icc=false"]);
    w.daemon.ok(&["network", "create", "loud"]);
    for (name, net) in [
        ("q1", "quiet"),
        ("q2", "quiet"),
        ("l1", "loud"),
        ("l2", "loud"),
    ] {
        w.attach(name, &["--network", net]);
    }
    let listen = |w: &World, name: &str| {
        w.ns(name).enter(|| {
            let s = socket2_udp(9999);
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            s
        })
    };
    let bcast_of = |w: &World, name: &str, net: &str| {
        let ip = w.ip(name, net).octets();
        Ipv4Addr::new(ip[0], ip[1], 255, 255)
    };
    for (sender, receiver, net, icc) in [("q1", "q2", "quiet", false), ("l1", "l2", "loud", true)] {
        let rx = listen(&w, receiver);
        let subnet_bcast = bcast_of(&w, sender, net);
        let tx = w.ns(sender).enter(|| {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            s.set_broadcast(true).unwrap();
            s
        });
        let mut got = Vec::new();
        for dst in [
            subnet_bcast,
            Ipv4Addr::BROADCAST,
            Ipv4Addr::new(224, 0, 0, 1),
        ] {
            tx.send_to(b"flood", (dst, 9999)).unwrap();
            let mut buf = [0u8; 64];
            got.push(rx.recv_from(&mut buf).is_ok());
        }
        assert_eq!(
            got,
            vec![icc; 3],
            "{net}: broadcast, limited broadcast, multicast"
        );
    }
    assert!(w.event("drop_icc") >= 3);

    // IPv6 from a container: dropped on its veth.
    let (mac, gw) = w.macs("l1", "loud");
    let mut v6 = netagent_tests::packet::non_ip_frame(netagent_tests::packet::ETH_P_IPV6, 80);
    v6[..6].copy_from_slice(&gw);
    v6[6..12].copy_from_slice(&mac);
    let before = w.event("drop_ctr_protocol");
    RawSender::new(w.ns("l1"), "eth0").send(&v6);
    assert!(wait_until(SETTLE, || w.event("drop_ctr_protocol") > before));
    assert_eq!(w.event("drop_ctr_protocol"), before + 1);

    // An interface without its map entry (a stray) drops everything.
    let l2 = w.ip("l2", "loud");
    let _srv = tcp_echo(w.ns("l2"), 80);
    assert!(tcp_reaches(w.ns("l1"), sock(l2, 80), PROBE_TIMEOUT));
    let veth = w.inspect("l1")["endpoints"][0]["host_ifindex"]
        .as_u64()
        .unwrap() as u32;
    let map = w.daemon.bpffs.join("maps").join("NA_EPIF4_V1");
    let key: Vec<String> = veth.to_ne_bytes().iter().map(|b| b.to_string()).collect();
    let mut args = vec![
        "bpftool",
        "map",
        "delete",
        "pinned",
        map.to_str().unwrap(),
        "key",
    ];
    args.extend(key.iter().map(String::as_str));
    netagent_tests::netns::run(&args);
    assert!(
        !tcp_reaches(w.ns("l1"), sock(l2, 80), PROBE_TIMEOUT),
        "a stray veth passed traffic"
    );
    assert!(w.event("drop_unknown_endpoint") > 0);
    // A restart puts the entry back (reconcile).
    w.daemon.restart();
    assert!(tcp_reaches(w.ns("l1"), sock(l2, 80), PROBE_TIMEOUT));
}

/// A UDP socket bound to `0.0.0.0:port` that also receives broadcasts.
fn socket2_udp(port: u16) -> UdpSocket {
    let s = UdpSocket::bind(("0.0.0.0", port)).unwrap();
    s.set_broadcast(true).unwrap();
    s
}

/// A client behind a hop with a 1,400-byte MTU: downloads through a
/// published port and uploads from a masqueraded container work, because
/// the hop's "fragmentation needed" errors are translated back to the
/// container (which then sends smaller segments).
#[test]
fn path_mtu_discovery_works_through_publications_and_masquerade() {
    let mut w = World::new();
    w.attach("web", &["-p", "8080:80"]);
    let far = netagent_tests::netns::Netns::new(format!("{}far", w.prefix));
    let (fu, ff) = (format!("{}fu", w.prefix), format!("{}ff", w.prefix));
    netagent_tests::netns::veth_pair(&w.upstream, &fu, &far, &ff, None);
    w.upstream.ip(&["addr", "add", "10.67.0.1/24", "dev", &fu]);
    w.upstream.ip(&["link", "set", &fu, "mtu", "1400", "up"]);
    far.ip(&["addr", "add", "10.67.0.2/24", "dev", &ff]);
    far.ip(&["link", "set", &ff, "up"]);
    far.ip(&["route", "add", "default", "via", "10.67.0.1"]);
    w.upstream.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    w.host
        .ip(&["route", "add", "10.67.0.0/24", "via", UPSTREAM_IP]);
    const MB2: usize = 2 << 20;
    let _ctr = tcp_bulk(w.ns("web"), 80, MB2);
    let _far = tcp_bulk(&far, 9000, MB2);
    assert_eq!(
        bulk_download(&far, &format!("{HOST_UP_IP}:8080")).unwrap(),
        MB2 as u64,
        "download through the published port"
    );
    assert_eq!(
        bulk_upload(w.ns("web"), "10.67.0.2:9000", MB2).unwrap(),
        MB2 as u64,
        "upload from the masqueraded container"
    );
    assert!(
        w.event("icmp_error_in") >= 2,
        "{}",
        w.event("icmp_error_in")
    );
}

/// 4,000-byte UDP datagrams (three fragments at MTU 1500) both ways
/// through a published port, and from a masqueraded container.
#[test]
fn fragmented_datagrams_cross_publications_and_masquerade() {
    let mut w = World::new();
    w.attach("dns", &["-p", "5353:53/udp"]);
    let _ctr = udp_echo(w.ns("dns"), 53);
    let _out = udp_echo(&w.upstream, 53);
    let payload: Vec<u8> = (0..4000u32).map(|i| (i % 251) as u8).collect();
    let mut buf = vec![0u8; 65536];
    let roundtrip = |s: &UdpSocket, to: &str, buf: &mut [u8]| {
        s.send_to(&payload, to).unwrap();
        let (n, from) = s.recv_from(buf).expect("the fragmented answer");
        assert!(buf[..n].ends_with(&payload), "answer mangled ({n} bytes)");
        from
    };
    let client = udp_socket(&w.upstream);
    let from = roundtrip(&client, &format!("{HOST_UP_IP}:5353"), &mut buf);
    assert_eq!(from.to_string(), format!("{HOST_UP_IP}:5353"));
    let ctr = udp_socket(w.ns("dns"));
    let from = roundtrip(&ctr, &format!("{UPSTREAM_IP}:53"), &mut buf);
    assert_eq!(from.to_string(), format!("{UPSTREAM_IP}:53"));
    assert!(
        w.event("fragment_translated") >= 8,
        "{}",
        w.event("fragment_translated")
    );
    let errors = (
        w.upstream.snmp("Udp", "InCsumErrors"),
        w.ns("dns").snmp("Udp", "InCsumErrors"),
    );
    assert_eq!(errors, (0, 0), "reassembled datagrams verified");
}

/// One container flooding a silent destination with 12,000 SYNs (or 6,000
/// UDP flows) gets its share of that destination's masquerade ports, not
/// all of them: another container reaches the same destination at once.
#[test]
fn one_container_cannot_starve_the_others_of_masquerade_ports() {
    let mut w = World::new();
    w.attach("hog", &[]);
    w.attach("other", &[]);
    let hog_ip = w.ip("hog", "bridge").to_string();
    let (mac, gw) = w.macs("hog", "bridge");
    let raw = RawSender::new(w.ns("hog"), "eth0");
    let _tcp = tcp_echo(&w.upstream, 9);
    let _udp = udp_echo(&w.upstream, 9);
    // Silent while the hog floods: the upstream drops what it gets on 9.
    let table = w.upstream_rule(
        "silent",
        "in",
        "{ type filter hook input priority 0; }",
        &[
            "meta",
            "l4proto",
            "{ tcp, udp }",
            "th",
            "dport",
            "9",
            "drop",
        ],
    );
    for i in 0..12_000u32 {
        let mut f = FrameSpec::tcp(&hog_ip, 1024 + (i % 60_000) as u16, UPSTREAM_IP, 9, b"");
        f.seq = i;
        f.eth_src = mac;
        f.eth_dst = gw;
        raw.send(&f.build());
    }
    for i in 0..6_000u32 {
        let mut f = FrameSpec::udp(&hog_ip, 1024 + i as u16, UPSTREAM_IP, 9, b"u");
        f.eth_src = mac;
        f.eth_dst = gw;
        raw.send(&f.build());
    }
    // Every one of the 18,000 packets masqueraded or refused.
    let handled = || {
        w.event("masquerade")
            + w.event("drop_masquerade_share")
            + w.event("drop_masquerade_no_port")
    };
    assert!(
        wait_until(Duration::from_secs(10), || handled() >= 18_000),
        "only {} of the hog's packets reached masquerade",
        handled()
    );
    let refused = w.event("drop_masquerade_share");
    assert!(
        refused >= 7_000,
        "the hog was not held to its share ({refused} refused)"
    );
    assert_eq!(w.event("drop_masquerade_no_port"), 0);
    w.upstream.exec(&["nft", "delete", "table", "ip", &table]);
    let mut conn = netagent_tests::traffic::tcp_connect(w.ns("other"), &format!("{UPSTREAM_IP}:9"))
        .expect("another container reaches the flooded destination");
    assert!(
        netagent_tests::traffic::tcp_roundtrip(&mut conn, "x")
            .unwrap()
            .ends_with(" x")
    );
    let s = udp_socket(w.ns("other"));
    s.send_to(b"y", format!("{UPSTREAM_IP}:9")).unwrap();
    let mut buf = [0u8; 64];
    s.recv_from(&mut buf)
        .expect("UDP to the flooded destination");
}
