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

    // Under Docker's FORWARD DROP for both families: neighbours resolve
    // and reach each other all the same (with br_netfilter, what the
    // bridge forwards crosses ip6tables' FORWARD hook).
    w.forward_drop();
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

    // The outside: nothing unasked reaches a container; what leaves is
    // masqueraded to the host's address.
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
    let mut conn = tcp_connect(w.ns("ca"), "[fd66::2]:7070").expect("masqueraded IPv6 out");
    let answer = tcp_roundtrip(&mut conn, "out").unwrap();
    assert!(
        answer.starts_with("[fd66::1]:"),
        "seen as the host: {answer}"
    );
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
    // Both sides are held, as Docker binds them: no other process takes
    // [::]:8080, not even IPv6-only, nor 0.0.0.0:8080.
    let (bound, _, err) = w.host.try_exec(&[
        "python3",
        "-c",
        "import socket; s = socket.socket(socket.AF_INET6); \
         s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1); s.bind(('::', 8080))",
    ]);
    assert!(
        !bound && err.contains("Address already in use"),
        "[::]:8080 was free IPv6-only: {err}"
    );
    let v4 = w.host.enter(|| std::net::TcpListener::bind("0.0.0.0:8080"));
    assert!(v4.is_err(), "0.0.0.0:8080 was free");
    w.host
        .ip(&["-6", "addr", "add", "fd67::1/64", "dev", &w.up(), "nodad"]);
    let dn = format!("{}dn", w.prefix);
    w.upstream
        .ip(&["-6", "addr", "add", "fd67::2/64", "dev", &dn, "nodad"]);
    w.forward_drop();
    let _tcp = tcp_echo_on(w.ns("web"), any6(80));
    let _udp = udp_echo_on(w.ns("web"), any6(53));
    let _bulk = tcp_bulk_on(w.ns("web"), any6(81), 8 << 20);
    let csum = |w: &World| {
        (
            w.ns("web").snmp("Tcp", "InCsumErrors"),
            w.ns("web").snmp6("Udp6InCsumErrors"),
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
    // A datagram fragmented on the way in, and its fragmented answer.
    let payload: Vec<u8> = (0..4000u32).map(|i| (i % 253) as u8).collect();
    udp.send_to(&payload, "[fd67::1]:5353").unwrap();
    let mut big = [0u8; 5000];
    let (n, from) = udp.recv_from(&mut big).expect("the fragmented answer");
    assert_eq!(from.to_string(), "[fd67::1]:5353");
    let text_end = big[..n].iter().position(|b| *b == b' ').unwrap();
    assert_eq!(&big[text_end + 1..n], &payload[..], "the datagram, whole");

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
    assert_eq!(before.1, after.1, "UDP6 checksum errors");

    // Nothing but the publication reaches the container's own address,
    // and the container's own IPv6 leaves masqueraded only.
    w.upstream
        .ip(&["-6", "route", "add", "fd00:31::/64", "via", "fd67::1"]);
    assert!(!tcp_reaches(
        &w.upstream,
        SocketAddr::from((web6, 80)),
        PROBE_TIMEOUT
    ));
    let _up = tcp_echo_on(&w.upstream, any6(7070));
    let mut conn = tcp_connect(w.ns("web"), "[fd67::2]:7070").expect("masqueraded IPv6 out");
    let answer = tcp_roundtrip(&mut conn, "out").unwrap();
    assert!(
        answer.starts_with("[fd67::1]:"),
        "seen as the host: {answer}"
    );
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

/// Runs `python3 -c script argv...` in the host namespace, in the daemon's
/// cgroup (its socket hooks apply) or outside it.
fn host_client(w: &World, in_cgroup: bool, script: &str, argv: &[&str]) -> (bool, String, String) {
    let mut args = vec!["python3", "-c", script];
    args.extend_from_slice(argv);
    if in_cgroup {
        w.daemon.cgroup.run_in(&w.host.name, &args)
    } else {
        w.host.try_exec(&args)
    }
}

/// IPv6 TCP: connects to [argv[1]]:argv[2], sends a line, prints the
/// answer and getpeername.
const TCP6_CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.settimeout(3)
s.connect((sys.argv[1], int(sys.argv[2])))
s.sendall(b"hello\n")
print(s.makefile().readline().strip())
print("[%s]:%d" % s.getpeername()[:2])
"#;

/// IPv6 UDP to [argv[1]]:argv[2]: an unconnected send (answer and its
/// source), then a connected one (answer and getpeername).
const UDP6_CLIENT: &str = r#"
import socket, sys
to = (sys.argv[1], int(sys.argv[2]))
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u.settimeout(3)
u.sendto(b"ping", to)
data, src = u.recvfrom(200)
print(data.decode())
print("[%s]:%d" % src[:2])
c = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
c.settimeout(3)
c.connect(to)
c.send(b"pong")
print(c.recv(200).decode())
print("[%s]:%d" % c.getpeername()[:2])
"#;

/// Publications on IPv6 host addresses to a dual-stack container, as
/// `-p [ADDR]:H:C` and `publish '[::]:H->[C6]:C'` make them: reached over
/// IPv6 at that address only (not at the host's other addresses, not over
/// IPv4); `[::1]` ones from the host's own sockets only (TCP, connected
/// and unconnected UDP, the application seeing `[::1]`), not from a
/// process outside the hooks' cgroup, not from the wire (a forged frame
/// to `::1` is dropped and counted). Under FORWARD DROP for both families.
#[test]
fn ipv6_host_address_publications_are_scoped() {
    let mut w = World::new();
    w.daemon.ok(&[
        "network",
        "create",
        "dual",
        "--ipv6",
        "--subnet",
        "10.32.0.0/24",
        "--subnet",
        "fd00:32::/64",
    ]);
    let up = w.up();
    for addr in ["fd68::1/64", "fd68::3/64"] {
        w.host.ip(&["-6", "addr", "add", addr, "dev", &up, "nodad"]);
    }
    let dn = format!("{}dn", w.prefix);
    w.upstream
        .ip(&["-6", "addr", "add", "fd68::2/64", "dev", &dn, "nodad"]);
    w.forward_drop();
    // A host address the host does not have is refused, as Docker refuses it.
    w.netns("nope");
    let nope = w.netns_path("nope");
    let (ok, _, err) = w.daemon.cli(&[
        "container",
        "attach",
        "nope",
        "--netns",
        nope.to_str().unwrap(),
        "--network",
        "dual",
        "-p",
        "[fd68::99]:8080:80",
    ]);
    assert!(
        !ok && err.contains("[fd68::99]:8080/tcp: cannot assign requested address"),
        "{err}"
    );
    w.attach(
        "web",
        &[
            "--network",
            "dual",
            "-p",
            "[fd68::1]:8080:80",
            "-p",
            "[::1]:8082:80",
            "-p",
            "[::1]:5355:53/udp",
        ],
    );
    let web6 = ip6(&w, "web", "dual");
    w.daemon
        .ok(&["publish", &format!("[::]:8090->[{web6}]:80")]);
    assert_eq!(
        w.daemon.ok(&["port", "web"]),
        "53/udp -> [::1]:5355\n80/tcp -> [::]:8090\n80/tcp -> [::1]:8082\n\
         80/tcp -> [fd68::1]:8080\n"
    );
    let _tcp = tcp_echo_on(w.ns("web"), any6(80));
    let _udp = udp_echo_on(w.ns("web"), any6(53));

    // From outside: at the publication's address, and at any for [::].
    for to in ["[fd68::1]:8080", "[fd68::1]:8090", "[fd68::3]:8090"] {
        let mut conn = tcp_connect(&w.upstream, to).unwrap_or_else(|e| panic!("{to}: {e}"));
        let answer = tcp_roundtrip(&mut conn, "hi").unwrap();
        assert!(answer.starts_with("[fd68::2]:"), "{to}: {answer}");
    }
    // Not at the host's other address, not over IPv4, not [::1]'s port:
    // nothing is translated, and nothing listens (a refusal).
    for to in [
        "[fd68::3]:8080".to_owned(),
        format!("{}:8080", netagent_tests::world::HOST_UP_IP),
        "[fd68::1]:8082".to_owned(),
    ] {
        let err = tcp_connect(&w.upstream, &to).expect_err(&to);
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "{to}: {err}"
        );
    }
    // A forged frame from the wire to [::1]:8082 is dropped and counted.
    let (host_mac, dn_mac) = (w.host.mac(&up), w.upstream.mac(&dn));
    let loopback = w.event("drop_loopback_dst");
    let mut frame = netagent_tests::packet::with_checksum6(netagent_tests::packet::l4_frame6(
        dn_mac, "fd68::2", 40000, "::1", 8082, 6, b"",
    ));
    frame[..6].copy_from_slice(&host_mac);
    RawSender::new(&w.upstream, &dn).send(&frame);
    assert!(
        netagent_tests::netns::wait_until(Duration::from_secs(2), || w.event("drop_loopback_dst")
            > loopback),
        "the forged frame to ::1 was not dropped"
    );

    // The host's own sockets reach [::1] publications, over IPv6 to the
    // container's IPv6 address (it sees the host's address on its bridge).
    let (ok, out, err) = host_client(&w, true, TCP6_CLIENT, &["::1", "8082"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("[fd00:32::1]:") && lines[0].ends_with(" hello"),
        "{out}"
    );
    assert_eq!(lines[1], "[::1]:8082", "getpeername");
    let (ok, out, err) = host_client(&w, true, UDP6_CLIENT, &["::1", "5355"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].ends_with(" ping"), "{out}");
    assert_eq!(
        lines[1], "[::1]:5355",
        "an unconnected socket's answer source"
    );
    assert!(lines[2].ends_with(" pong"), "{out}");
    assert_eq!(lines[3], "[::1]:5355", "getpeername");
    // [::1] only: not 127.0.0.1, and [fd68::1]:8080 is not on ::1; outside
    // the cgroup nothing is translated.
    for (addr, port, in_cgroup) in [("::1", "8080", true), ("::1", "8082", false)] {
        let (ok, _, err) = host_client(&w, in_cgroup, TCP6_CLIENT, &[addr, port]);
        assert!(
            !ok && err.contains("Connection refused"),
            "{addr} {port}: {err}"
        );
    }
    let (ok, _, err) = host_client(
        &w,
        true,
        "import socket,sys; socket.create_connection(('127.0.0.1', 8082), timeout=3)",
        &[],
    );
    assert!(!ok && err.contains("Connection refused"), "{err}");

    // Unpublishing takes the address off at once.
    w.daemon
        .ok(&["unpublish", &format!("[::]:8090->[{web6}]:80")]);
    let err = tcp_connect(&w.upstream, "[fd68::1]:8090").expect_err("unpublished");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
}

/// A dual-stack container's own IPv6 leaves masqueraded (NAT66, as
/// Docker's ip6tables MASQUERADE does for a `nat` network): TCP bulk both
/// ways with the kernel's default offloads, UDP and ping; the outside sees
/// the served interface's IPv6 address and a port of the masquerade pool
/// (outside the host's ephemeral range); the receivers count no checksum
/// error; an internal network's container stays in; a fragmented datagram
/// (no ports to translate) never leaves. All under FORWARD DROP.
#[test]
fn containers_ipv6_leaves_masqueraded() {
    let mut w = World::with_default_offloads();
    w.daemon.ok(&[
        "network",
        "create",
        "dual",
        "--ipv6",
        "--subnet",
        "10.33.0.0/24",
        "--subnet",
        "fd00:33::/64",
    ]);
    w.daemon
        .ok(&["network", "create", "inner", "--ipv6", "--internal"]);
    let up = w.up();
    w.host
        .ip(&["-6", "addr", "add", "fd69::1/64", "dev", &up, "nodad"]);
    let dn = format!("{}dn", w.prefix);
    w.upstream
        .ip(&["-6", "addr", "add", "fd69::2/64", "dev", &dn, "nodad"]);
    w.forward_drop();
    w.attach("ca", &["--network", "dual"]);
    w.attach("ci", &["--network", "inner"]);
    let _echo = tcp_echo_on(&w.upstream, any6(7070));
    let _bulk = tcp_bulk_on(&w.upstream, any6(7071), 8 << 20);
    let _udp = udp_echo_on(&w.upstream, any6(5300));
    let csum = |w: &World| {
        (
            w.upstream.snmp("Tcp", "InCsumErrors"),
            w.upstream.snmp6("Udp6InCsumErrors"),
            w.ns("ca").snmp("Tcp", "InCsumErrors"),
        )
    };
    let before = csum(&w);
    let snat_out = w.event("masquerade");

    let mut conn = tcp_connect(w.ns("ca"), "[fd69::2]:7070").expect("IPv6 out");
    let answer = tcp_roundtrip(&mut conn, "hi").unwrap();
    let seen: SocketAddr = answer.split_whitespace().next().unwrap().parse().unwrap();
    assert_eq!(
        seen.ip().to_string(),
        "fd69::1",
        "the host's address: {answer}"
    );
    let range = w
        .host
        .exec(&["cat", "/proc/sys/net/ipv4/ip_local_port_range"]);
    let eph: Vec<u16> = range
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(
        !(eph[0]..=eph[1]).contains(&seen.port()),
        "port {} is in the host's ephemeral range {range}",
        seen.port()
    );

    assert_eq!(
        bulk_download(w.ns("ca"), "[fd69::2]:7071").unwrap(),
        8 << 20
    );
    assert_eq!(
        bulk_upload(w.ns("ca"), "[fd69::2]:7071", 8 << 20).unwrap(),
        8 << 20
    );

    let udp = w
        .ns("ca")
        .enter(|| std::net::UdpSocket::bind("[::]:0").unwrap());
    udp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    udp.send_to(b"ping", "[fd69::2]:5300").unwrap();
    let mut buf = [0u8; 200];
    let (n, from) = udp.recv_from(&mut buf).expect("a UDP answer");
    assert_eq!(from.to_string(), "[fd69::2]:5300");
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        text.starts_with("[fd69::1]:") && text.ends_with(" ping"),
        "{text}"
    );

    let ping = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &w.ns("ca").name,
            "ping",
            "-6",
            "-c1",
            "-W2",
            "-q",
            "fd69::2",
        ])
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "ping: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
    assert!(w.event("masquerade") > snat_out);

    let after = csum(&w);
    assert_eq!(before.0, after.0, "upstream TCP checksum errors");
    assert_eq!(before.2, after.2, "container TCP checksum errors");
    assert_eq!(before.1, after.1, "UDP6 checksum errors");

    // An internal network's container reaches nothing outside.
    assert!(!tcp_reaches(
        w.ns("ci"),
        SocketAddr::from(("fd69::2".parse::<Ipv6Addr>().unwrap(), 7070)),
        PROBE_TIMEOUT
    ));
    // A datagram the container's kernel fragments (its later fragments
    // carry no ports) leaves whole and masqueraded, and its fragmented
    // answer comes back whole.
    let big = w
        .ns("ca")
        .enter(|| std::net::UdpSocket::bind("[::]:0").unwrap());
    big.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let fragments = w.event("fragment_translated");
    let payload: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    big.send_to(&payload, "[fd69::2]:5300").unwrap();
    let mut answer = [0u8; 4000];
    let (n, _) = big
        .recv_from(&mut answer)
        .expect("the fragmented datagram's answer");
    let text_end = answer[..n].iter().position(|b| *b == b' ').unwrap();
    assert!(
        answer[..text_end].starts_with(b"[fd69::1]:"),
        "masqueraded: {}",
        String::from_utf8_lossy(&answer[..text_end])
    );
    assert_eq!(
        &answer[text_end + 1..n],
        &payload[..],
        "the datagram, whole"
    );
    assert!(
        w.event("fragment_translated") - fragments >= 4,
        "later fragments translated both ways"
    );
}

/// ICMPv6 errors about translated IPv6 flows reach both ends, as real
/// kernels take them: a packet too big from the outside about a
/// published flow's reply, and about a masqueraded flow's datagram, sets
/// the path MTU in the container (its kernel checked the translated
/// checksums and found its socket by the translated quote); a container's
/// port unreachable about a published datagram, and about a masqueraded
/// flow's reply, reaches the client's connected socket as a refusal.
#[test]
fn icmpv6_errors_of_translated_flows_reach_both_ends() {
    use netagent_tests::packet::{icmp6_error, l4_frame6};
    use std::net::UdpSocket;
    let mut w = World::new();
    w.daemon.ok(&[
        "network",
        "create",
        "dual",
        "--ipv6",
        "--subnet",
        "10.34.0.0/24",
        "--subnet",
        "fd00:34::/64",
    ]);
    let up = w.up();
    w.host
        .ip(&["-6", "addr", "add", "fd6a::1/64", "dev", &up, "nodad"]);
    let dn = format!("{}dn", w.prefix);
    w.upstream
        .ip(&["-6", "addr", "add", "fd6a::2/64", "dev", &dn, "nodad"]);
    w.forward_drop();
    w.attach(
        "pub",
        &[
            "--network",
            "dual",
            "-p",
            "5353:53/udp",
            "-p",
            "5354:54/udp",
        ],
    );
    w.attach("out", &["--network", "dual"]);
    let _echo = udp_echo_on(w.ns("pub"), any6(53));
    let _far = udp_echo_on(&w.upstream, any6(5300));
    let (host_mac, dn_mac) = (w.host.mac(&up), w.upstream.mac(&dn));
    let router = RawSender::new(&w.upstream, &dn);
    let too_big = |quoted: Vec<u8>| {
        let mut f = icmp6_error(dn_mac, "fd6a::2", "fd6a::1", 2, 0, 1280, &quoted[14..]);
        f[..6].copy_from_slice(&host_mac);
        f
    };
    let path_mtu = |name: &str| {
        w.ns(name)
            .exec(&["ip", "-6", "route", "get", "fd6a::2"])
            .contains("mtu 1280")
    };
    let icmp_in = w.event("icmp_error_in");

    // A packet too big about a published flow's reply.
    let client = w.upstream.enter(|| UdpSocket::bind("[::]:0").unwrap());
    client
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    client.send_to(b"ping", "[fd6a::1]:5353").unwrap();
    let mut buf = [0u8; 200];
    client.recv_from(&mut buf).expect("the published answer");
    let lport = client.local_addr().unwrap().port();
    assert!(!path_mtu("pub"), "a path MTU before any error");
    router.send(&too_big(l4_frame6(
        dn_mac, "fd6a::1", 5353, "fd6a::2", lport, 17, b"answer",
    )));
    assert!(
        netagent_tests::netns::wait_until(Duration::from_secs(2), || path_mtu("pub")),
        "the published container did not take the packet too big"
    );

    // A packet too big about a masqueraded flow's datagram.
    let socket = w.ns("out").enter(|| UdpSocket::bind("[::]:4000").unwrap());
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    socket.send_to(b"ping", "[fd6a::2]:5300").unwrap();
    let (n, _) = socket.recv_from(&mut buf).expect("the masqueraded answer");
    let seen: SocketAddr = String::from_utf8_lossy(&buf[..n])
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    router.send(&too_big(l4_frame6(
        dn_mac,
        "fd6a::1",
        seen.port(),
        "fd6a::2",
        5300,
        17,
        b"ping",
    )));
    assert!(
        netagent_tests::netns::wait_until(Duration::from_secs(2), || path_mtu("out")),
        "the masqueraded container did not take the packet too big"
    );
    assert!(w.event("icmp_error_in") - icmp_in >= 2);
    for name in ["pub", "out"] {
        let bad = w.ns(name).snmp6("Icmp6InCsumErrors");
        assert_eq!(bad, 0, "{name}: ICMPv6 checksum errors");
    }

    // A container's port unreachable about a published datagram. Sent a
    // few times: kernels rate-limit ICMP errors (with a global budget,
    // shared with every test running at once).
    let refused_by = |socket: &UdpSocket, what: &str| {
        socket
            .set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        let mut buf = [0u8; 64];
        let refused = (0..6).any(|_| {
            socket.send(b"anybody?").unwrap();
            matches!(socket.recv(&mut buf),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
        });
        assert!(refused, "{what}: no refusal arrived");
    };
    let icmp_out = w.event("icmp_error_out");
    let refused = w.upstream.enter(|| UdpSocket::bind("[::]:0").unwrap());
    refused.connect("[fd6a::1]:5354").unwrap();
    refused_by(&refused, "published");

    // And about a masqueraded flow's reply to a socket that is gone.
    let gone = w.ns("out").enter(|| UdpSocket::bind("[::]:4001").unwrap());
    let far = w.upstream.enter(|| UdpSocket::bind("[::]:5301").unwrap());
    far.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    gone.send_to(b"hello", "[fd6a::2]:5301").unwrap();
    let (_, from) = far.recv_from(&mut buf).expect("the masqueraded datagram");
    drop(gone);
    far.connect(from).unwrap();
    refused_by(&far, "masqueraded");
    assert!(w.event("icmp_error_out") - icmp_out >= 2);
}
