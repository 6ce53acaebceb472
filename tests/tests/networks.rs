//! Network-namespace tests of networks and containers with real traffic:
//! reachability between networks, icc=false, internal networks, outbound
//! masquerade, every `-p` form, host port reservations, joined containers,
//! republished UDP ports, restarts and cleanup. Needs root; fails loudly
//! without it.
#![allow(
    clippy::unwrap_used,
    reason = "tests panic on failure, with context from the asserts"
)]

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket},
    time::Duration,
};

use netagent_tests::{
    traffic::{Server, tcp_connect, tcp_echo, tcp_roundtrip, udp_echo, udp_socket},
    world::{HOST_UP_IP, UPSTREAM_IP, World, pings, tcp_reaches},
};
use serde_json::Value;

/// Long enough for a SYN and its answer between namespaces, many times
/// over; a dropped SYN shows as this timeout.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
const ECHO_PORT: u16 = 7;

fn sock(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

/// The N x N matrix: networks A (given subnet), B (picked subnet), C
/// (icc=false), D (internal), the default network, and a container on A
/// and B. Every container probes every address of every other container,
/// and the outside world; the expectation is computed from the rule
/// "reachable iff the prober has an endpoint on the target address's
/// network and that network allows inter-container traffic".
#[test]
fn reachability_matrix_over_networks() {
    let mut w = World::new();
    w.daemon
        .ok(&["network", "create", "na", "--subnet", "10.123.1.0/24"]);
    w.daemon.ok(&["network", "create", "nb"]);
    w.daemon.ok(&["network", "create", "nc", "--icc=false"]);
    w.daemon.ok(&["network", "create", "nd", "--internal"]);
    let members = [
        ("a1", "na"),
        ("a2", "na"),
        ("b1", "nb"),
        ("c1", "nc"),
        ("c2", "nc"),
        ("d1", "nd"),
        ("d2", "nd"),
        ("mm", "na"),
        ("e1", "bridge"),
        ("e2", "bridge"),
    ];
    for (name, net) in members {
        // c1 publishes a port: icc=false must not close it to the outside.
        let publish: &[&str] = if name == "c1" { &["-p", "8090:7"] } else { &[] };
        w.attach(name, &[&["--network", net], publish].concat());
    }
    w.daemon.ok(&["network", "connect", "nb", "mm"]);
    // Internal networks give no default route; d1 adds one itself (as a
    // hostile container could), so its packets reach the datapath, which
    // must drop them anyway.
    let nd: Value =
        serde_json::from_str(&w.daemon.ok(&["--json", "network", "inspect", "nd"])).unwrap();
    let gw = nd["config"]["ipam"]["gateway"].as_str().unwrap().to_owned();
    w.ns("d1").ip(&["route", "add", "default", "via", &gw]);
    let icc: BTreeMap<&str, bool> = [
        ("na", true),
        ("nb", true),
        ("nc", false),
        ("nd", true),
        ("bridge", true),
    ]
    .into();
    let internal = ["nd"];
    let mut servers: Vec<Server> = Vec::new();
    let mut nets_of: BTreeMap<&str, Vec<(String, Ipv4Addr)>> = BTreeMap::new();
    for (name, _) in members {
        servers.push(tcp_echo(w.ns(name), ECHO_PORT));
        let info = w.inspect(name);
        for ep in info["endpoints"].as_array().unwrap() {
            nets_of.entry(name).or_default().push((
                ep["network"].as_str().unwrap().to_owned(),
                ep["ip"].as_str().unwrap().parse().unwrap(),
            ));
        }
    }
    assert_eq!(nets_of["mm"].len(), 2, "mm is on two networks");
    assert_eq!(
        nets_of["a1"][0].1.to_string().rsplit_once('.').unwrap().0,
        "10.123.1",
        "the given subnet is used"
    );
    servers.push(tcp_echo(&w.upstream, ECHO_PORT));

    let mut probes = Vec::new();
    for (from, _) in members {
        let mine: Vec<&str> = nets_of[from].iter().map(|(n, _)| n.as_str()).collect();
        for (to, _) in members.iter().filter(|(to, _)| *to != from) {
            for (net, ip) in &nets_of[to] {
                let expected = mine.contains(&net.as_str()) && icc[net.as_str()];
                probes.push((from, format!("{to}@{net}"), *ip, expected));
            }
        }
        let outside = mine.iter().any(|n| !internal.contains(n));
        probes.push((
            from,
            "upstream".into(),
            UPSTREAM_IP.parse().unwrap(),
            outside,
        ));
    }
    let results: Vec<(String, bool, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = probes
            .iter()
            .map(|(from, to, ip, expected)| {
                let ns = w.ns(from);
                s.spawn(move || {
                    let got = tcp_reaches(ns, sock(*ip, ECHO_PORT), PROBE_TIMEOUT);
                    (format!("{from} -> {to} ({ip})"), *expected, got)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wrong: Vec<String> = results
        .iter()
        .filter(|(_, expected, got)| expected != got)
        .map(|(what, expected, _)| {
            format!(
                "{what}: expected {}",
                if *expected { "reachable" } else { "blocked" }
            )
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} probes wrong:\n{}",
        wrong.len(),
        results.len(),
        wrong.join("\n")
    );
    let blocked = results.iter().filter(|r| !r.1).count();
    assert!(
        blocked >= 15 && results.len() - blocked >= 15,
        "a real matrix: {blocked} blocked of {}",
        results.len()
    );
    let mut conn = tcp_connect(&w.upstream, &format!("{HOST_UP_IP}:8090"))
        .expect("a published port of an icc=false network stays reachable");
    assert!(tcp_roundtrip(&mut conn, "icc").unwrap().ends_with(" icc"));
    // Each kind of drop was counted by its reason (SYN retransmits may add more).
    for reason in ["drop_isolation", "drop_icc", "drop_internal"] {
        assert!(w.event(reason) > 0, "{reason} not counted");
    }
    // ICMP obeys the same rules.
    assert!(pings(w.ns("a1"), nets_of["a2"][0].1));
    assert!(!pings(w.ns("a1"), nets_of["b1"][0].1));
    assert!(!pings(w.ns("c1"), nets_of["c2"][0].1));
    assert!(!pings(w.ns("d1"), UPSTREAM_IP.parse().unwrap()));
    assert!(pings(w.ns("mm"), nets_of["b1"][0].1));
}

/// Outbound TCP, UDP and ICMP leave with the host's address and come back;
/// checksums are right (the upstream verifies them, and a corrupt one sent
/// on purpose is caught there: the negative control).
#[test]
fn outbound_masquerade_tcp_udp_icmp() {
    let mut w = World::new();
    w.attach("web", &[]);
    let _tcp = tcp_echo(&w.upstream, ECHO_PORT);
    let _udp = udp_echo(&w.upstream, 53);
    let csum_errors = |w: &World| {
        (
            w.upstream.snmp("Tcp", "InCsumErrors"),
            w.upstream.snmp("Udp", "InCsumErrors"),
        )
    };
    let before = csum_errors(&w);

    let mut conn = tcp_connect(w.ns("web"), &format!("{UPSTREAM_IP}:{ECHO_PORT}")).unwrap();
    let seen = tcp_roundtrip(&mut conn, "out").unwrap();
    let (peer, _) = seen.split_once(' ').unwrap();
    let peer: SocketAddr = peer.parse().unwrap();
    assert_eq!(peer.ip().to_string(), HOST_UP_IP, "masqueraded to the host");
    // The default pool: 1024-65535 minus the host's ephemeral range.
    let ephemeral = w
        .host
        .exec(&["cat", "/proc/sys/net/ipv4/ip_local_port_range"]);
    let mut it = ephemeral
        .split_whitespace()
        .map(|p| p.parse::<u16>().unwrap());
    let (lo, hi) = (it.next().unwrap(), it.next().unwrap());
    assert!(
        peer.port() >= 1024 && !(lo..=hi).contains(&peer.port()),
        "masquerade port {peer} inside the ephemeral range {lo}-{hi}"
    );

    let udp = udp_socket(w.ns("web"));
    udp.send_to(b"q", format!("{UPSTREAM_IP}:53")).unwrap();
    let mut buf = [0u8; 256];
    let (n, from) = udp
        .recv_from(&mut buf)
        .expect("UDP reply through masquerade");
    assert_eq!(from.to_string(), format!("{UPSTREAM_IP}:53"));
    let text = std::str::from_utf8(&buf[..n]).unwrap();
    assert!(text.starts_with(&format!("{HOST_UP_IP}:")), "{text}");

    assert!(
        pings(w.ns("web"), UPSTREAM_IP.parse().unwrap()),
        "ICMP echo"
    );
    assert_eq!(
        csum_errors(&w),
        before,
        "every masqueraded checksum verified"
    );
    assert!(w.event("masquerade") >= 3 && w.event("masquerade_reply") >= 3);

    // Negative control: a UDP datagram with a corrupt checksum, sent raw
    // from the container, is masqueraded and caught by the upstream.
    let info = w.inspect("web");
    let ep = &info["endpoints"][0];
    let bridge_mac = w
        .host
        .ip(&["link", "show", "na-br0"])
        .split_whitespace()
        .skip_while(|t| *t != "link/ether")
        .nth(1)
        .unwrap()
        .to_owned();
    let mac = |s: &str| -> [u8; 6] {
        let v: Vec<u8> = s
            .split(':')
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect();
        v.try_into().unwrap()
    };
    let mut bad = netagent_tests::packet::FrameSpec::udp(
        ep["ip"].as_str().unwrap(),
        40123,
        UPSTREAM_IP,
        53,
        b"corrupt",
    );
    bad.csum = netagent_tests::packet::L4Csum::Corrupt;
    bad.eth_src = mac(ep["mac"].as_str().unwrap());
    bad.eth_dst = mac(&bridge_mac);
    let raw = netagent_tests::traffic::RawSender::new(w.ns("web"), "eth0");
    raw.send(&bad.build());
    netagent_tests::netns::wait_until(Duration::from_secs(5), || csum_errors(&w).1 != before.1);
    assert_eq!(
        csum_errors(&w).1,
        before.1 + 1,
        "the corrupt checksum arrived corrupt"
    );

    // An internal network has no way out.
    w.daemon.ok(&["network", "create", "priv", "--internal"]);
    w.attach("db", &["--network", "priv"]);
    assert!(!tcp_reaches(
        w.ns("db"),
        sock(UPSTREAM_IP.parse().unwrap(), ECHO_PORT),
        PROBE_TIMEOUT
    ));
}

/// Every `-p` form, with real traffic from outside through each, and
/// `netagent port` output in Docker's format.
#[test]
fn every_publish_form_serves_real_traffic() {
    let mut w = World::new();
    w.daemon.ok(&["network", "create", "pub"]);
    let info = w.attach(
        "web",
        &[
            "--network",
            "pub",
            "-p",
            "8080:80",
            "-p",
            &format!("{HOST_UP_IP}:8081:81"),
            "-p",
            &format!("{HOST_UP_IP}::82"),
            "-p",
            "83",
            "-p",
            "9000-9010:84",
            "-p",
            "7000-7002:7000-7002/udp",
            "--expose",
            "85",
            "-P",
        ],
    );
    let _tcp: Vec<Server> = (80..=85).map(|p| tcp_echo(w.ns("web"), p)).collect();
    let csum_errors = |w: &World| {
        (
            w.ns("web").snmp("Tcp", "InCsumErrors"),
            w.ns("web").snmp("Udp", "InCsumErrors"),
        )
    };
    let errors_before = csum_errors(&w);
    let _udp: Vec<Server> = (7000..=7002).map(|p| udp_echo(w.ns("web"), p)).collect();
    let ports = info["ports"].as_array().unwrap().clone();
    assert_eq!(ports.len(), 9, "{ports:?}");
    let (lo, hi) = {
        let r = w
            .host
            .exec(&["cat", "/proc/sys/net/ipv4/ip_local_port_range"]);
        let mut it = r.split_whitespace().map(|p| p.parse::<u16>().unwrap());
        (it.next().unwrap(), it.next().unwrap())
    };
    let host_port = |cport: u16| -> (String, u16) {
        let p = ports
            .iter()
            .find(|p| p["container_port"] == cport)
            .unwrap_or_else(|| panic!("{cport} not published"));
        (
            p["host_ip"].as_str().unwrap().to_owned(),
            p["host_port"].as_u64().unwrap() as u16,
        )
    };
    assert_eq!(host_port(80), ("0.0.0.0".into(), 8080));
    assert_eq!(host_port(81), (HOST_UP_IP.into(), 8081));
    assert_eq!(host_port(82).0, HOST_UP_IP);
    for random in [82, 83, 85] {
        let (_, p) = host_port(random);
        assert!((lo..=hi).contains(&p), "{random} -> {p} not ephemeral");
    }
    assert!((9000..=9010).contains(&host_port(84).1));
    for c in 7000..=7002 {
        assert_eq!(host_port(c).1, c);
    }
    for cport in 80..=85 {
        let (_, hport) = host_port(cport);
        let mut conn = tcp_connect(&w.upstream, &format!("{HOST_UP_IP}:{hport}"))
            .unwrap_or_else(|e| panic!("connect to {hport} (-> {cport}): {e}"));
        let local = conn.local_addr().unwrap();
        assert_eq!(
            tcp_roundtrip(&mut conn, "hi").unwrap(),
            format!("{local} hi"),
            "port {hport}: the container sees the real client"
        );
    }
    let udp = udp_socket(&w.upstream);
    for port in 7000..=7002 {
        udp.send_to(b"u", format!("{HOST_UP_IP}:{port}")).unwrap();
        let mut buf = [0u8; 64];
        let (_, from) = udp.recv_from(&mut buf).expect("UDP through a 1:1 range");
        assert_eq!(from.to_string(), format!("{HOST_UP_IP}:{port}"));
    }
    assert_eq!(
        csum_errors(&w),
        errors_before,
        "the container verified every translated checksum"
    );
    assert!(
        w.event("redirect_to_endpoint") > 0,
        "delivered past the stack"
    );
    // `netagent port` as `docker port` prints it.
    let out = w.daemon.ok(&["port", "web"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 9, "{out}");
    assert_eq!(lines[0], "80/tcp -> 0.0.0.0:8080");
    assert_eq!(lines[1], format!("81/tcp -> {HOST_UP_IP}:8081"));
    assert_eq!(w.daemon.ok(&["port", "web", "80"]), "0.0.0.0:8080\n");
    assert_eq!(w.daemon.ok(&["port", "web", "7001/udp"]), "0.0.0.0:7001\n");
    let (ok, _, err) = w.daemon.cli(&["port", "web", "99"]);
    assert!(!ok);
    assert_eq!(
        err.trim(),
        "netagent: No public port '99/tcp' published for web"
    );
    // Malformed specs: Docker's message, nothing attached.
    w.netns("bad");
    let path = w.netns_path("bad");
    let (ok, _, err) = w.daemon.cli(&[
        "container",
        "attach",
        "bad",
        "--netns",
        path.to_str().unwrap(),
        "-p",
        "8000:80-81",
    ]);
    assert!(!ok);
    assert!(
        err.contains("invalid ranges specified for container and host Ports: 80-81 and 8000"),
        "{err}"
    );
    let (ok, _, _) = w.daemon.cli(&["container", "inspect", "bad"]);
    assert!(!ok, "nothing attached");
}

/// A published host port is held against host processes; a port a host
/// process holds is refused (or skipped inside a range); detach frees it.
#[test]
fn host_ports_are_reserved_and_taken_ports_refused() {
    let mut w = World::new();
    w.attach("web", &["-p", "8080:80", "-p", "5353:53/udp"]);
    let bind_tcp = |w: &World, port: u16| {
        w.host
            .enter(move || TcpListener::bind(("0.0.0.0", port)).map(drop))
    };
    let bind_udp = |w: &World, port: u16| {
        w.host
            .enter(move || UdpSocket::bind(("127.0.0.1", port)).map(drop))
    };
    assert!(bind_tcp(&w, 8080).is_err(), "8080 is held by netagent");
    assert!(bind_udp(&w, 5353).is_err(), "5353/udp is held by netagent");

    // A host process holds 8090: refused with Docker's words, nothing changed.
    let holder = w
        .host
        .enter(|| TcpListener::bind(("0.0.0.0", 8090)).unwrap());
    w.netns("db");
    let path = w.netns_path("db");
    let path = path.to_str().unwrap();
    let links_before = w.host_links("na-");
    let attach_db = |spec: &str| {
        w.daemon
            .cli(&["container", "attach", "db", "--netns", path, "-p", spec])
    };
    let (ok, _, err) = attach_db("8090:5432");
    assert!(!ok);
    assert!(
        err.contains("driver failed programming external connectivity on endpoint db (")
            && err.contains("failed to bind host port 0.0.0.0:8090/tcp: address already in use"),
        "{err}"
    );
    let (ok, _, err) = attach_db("8080:5432");
    assert!(!ok);
    assert!(
        err.contains("Bind for 0.0.0.0:8080 failed: port is already allocated"),
        "{err}"
    );
    assert_eq!(
        w.host_links("na-"),
        links_before,
        "no interface left behind"
    );
    // In a range, the held port is skipped.
    let (ok, _, err) = attach_db("8090-8091:5432");
    assert!(ok, "{err}");
    assert_eq!(w.daemon.ok(&["port", "db", "5432"]), "0.0.0.0:8091\n");
    drop(holder);

    w.daemon.ok(&["container", "detach", "web"]);
    assert!(bind_tcp(&w, 8080).is_ok(), "detach frees the port");
    assert!(bind_udp(&w, 5353).is_ok());
}

/// `--network container:OTHER` shares OTHER's stack: no interface, the
/// same endpoint, published ports of OTHER serve both; Docker's refusals.
#[test]
fn joined_containers_share_the_network_stack() {
    let mut w = World::new();
    w.attach("web", &["-p", "8080:80"]);
    let links = w.host_links("na-v");
    assert_eq!(links.len(), 1);
    let side = w.daemon.ok(&[
        "--json",
        "container",
        "attach",
        "side",
        "--network",
        "container:web",
    ]);
    let side: Value = serde_json::from_str(&side).unwrap();
    assert_eq!(side["joined_to"], "web");
    assert_eq!(side["endpoints"], w.inspect("web")["endpoints"]);
    assert_eq!(w.host_links("na-v"), links, "no new interface");
    // The joined container serves on the shared stack (same namespace).
    let _srv = tcp_echo(w.ns("web"), 80);
    let mut conn = tcp_connect(&w.upstream, &format!("{HOST_UP_IP}:8080")).unwrap();
    assert!(tcp_roundtrip(&mut conn, "x").unwrap().ends_with(" x"));
    assert_eq!(w.daemon.ok(&["port", "side"]), "");
    for (args, want) in [
        (
            vec![
                "container",
                "attach",
                "x2",
                "--network",
                "container:web",
                "-p",
                "81",
            ],
            "conflicting options: port publishing and the container type network mode",
        ),
        (
            vec!["network", "connect", "bridge", "side"],
            "container sharing network namespace with another container or host cannot be connected to any other network",
        ),
        (
            vec!["container", "detach", "web"],
            "container web has containers joined to its network stack (side); detach them first",
        ),
        (
            vec!["container", "attach", "x3", "--network", "container:nope"],
            "No such container: nope",
        ),
    ] {
        let (ok, _, err) = w.daemon.cli(&args);
        assert!(!ok, "{args:?}");
        assert_eq!(err.trim(), format!("netagent: {want}"), "{args:?}");
    }
    w.daemon.ok(&["container", "detach", "side"]);
    assert_eq!(
        w.host_links("na-v"),
        links,
        "detaching the joined one removes nothing"
    );
    let mut conn = tcp_connect(&w.upstream, &format!("{HOST_UP_IP}:8080")).unwrap();
    assert!(tcp_roundtrip(&mut conn, "y").unwrap().ends_with(" y"));
    w.daemon.ok(&["container", "detach", "web"]);
}

/// A UDP mapping moved to another container: the very next datagram of
/// the same client flow reaches the new container, never the old address
/// (Docker and CNI flush conntrack for this; netagent has nothing stale).
#[test]
fn republished_udp_mapping_never_reaches_the_old_container() {
    let mut w = World::new();
    w.attach("old", &["-p", "5353:53/udp"]);
    let old_ip = w.ip("old", "bridge");
    let _old = udp_echo(w.ns("old"), 53);
    let client = udp_socket(&w.upstream);
    let mut buf = [0u8; 128];
    client.send_to(b"1", format!("{HOST_UP_IP}:5353")).unwrap();
    client.recv_from(&mut buf).expect("reply from old");

    w.daemon.ok(&["container", "detach", "old"]);
    w.attach("new", &["-p", "5353:53/udp"]);
    let new_ip = w.ip("new", "bridge");
    // The released address is not reused at once (rotating allocation).
    assert_ne!(new_ip, old_ip);
    let _new = udp_echo(w.ns("new"), 53);
    let seen_before = w.ns("old").snmp("Udp", "InDatagrams");
    for i in 0..5 {
        client
            .send_to(format!("{i}").as_bytes(), format!("{HOST_UP_IP}:5353"))
            .unwrap();
        let (_, from) = client.recv_from(&mut buf).expect("reply from new");
        assert_eq!(from.to_string(), format!("{HOST_UP_IP}:5353"));
    }
    assert_eq!(
        w.ns("old").snmp("Udp", "InDatagrams"),
        seen_before,
        "nothing reached the old container"
    );
}

/// After detach and network rm nothing is left: no interface, no map
/// entry, no link pin, no address, no reservation.
#[test]
fn detach_and_rm_leave_nothing_behind() {
    let mut w = World::new();
    w.daemon.ok(&["network", "create", "n1"]);
    w.daemon.ok(&["network", "create", "n2", "--icc=false"]);
    w.attach(
        "ca",
        &["--network", "n1", "-p", "8080:80", "-P", "--expose", "90"],
    );
    w.attach("cb", &["--network", "n2"]);
    w.daemon
        .ok(&["network", "connect", "n2", "ca", "--alias", "api"]);
    assert_eq!(w.host_links("na-v").len(), 3);
    let (ok, _, err) = w.daemon.cli(&["network", "rm", "n2"]);
    assert!(
        !ok && err.contains("has active endpoints (ca, cb)"),
        "{err}"
    );
    w.daemon.ok(&["network", "disconnect", "n2", "ca"]);
    assert!(
        w.ns("ca")
            .ip(&["-o", "link"])
            .lines()
            .all(|l| !l.contains("eth1"))
    );
    w.daemon.ok(&["container", "detach", "ca"]);
    w.daemon.ok(&["container", "detach", "cb"]);
    w.daemon.ok(&["network", "rm", "n1"]);
    w.daemon.ok(&["network", "rm", "n2"]);

    assert_eq!(w.host_links("na-v"), Vec::<String>::new());
    assert_eq!(w.host_links("na-br-"), Vec::<String>::new());
    for name in ["ca", "cb"] {
        let links = w.ns(name).ip(&["-o", "link"]);
        assert!(
            !links.contains("eth0"),
            "{name} still has an interface: {links}"
        );
    }
    assert_eq!(w.daemon.ok(&["port"]), "");
    assert_eq!(
        w.daemon.ok(&["network", "ls"]).lines().count(),
        4,
        "only the pre-defined networks remain (bridge, host, none)"
    );
    let pins = std::fs::read_dir(w.daemon.bpffs.join("eplinks"))
        .unwrap()
        .count();
    assert_eq!(pins, 0, "endpoint link pins");
    for map in ["NA_EPIF4_V1", "NA_EPADDR4_V1", "NA_PUB4_V1"] {
        let path = w.daemon.bpffs.join("maps").join(map);
        let dump = netagent_tests::netns::run(&[
            "bpftool",
            "-j",
            "map",
            "dump",
            "pinned",
            path.to_str().unwrap(),
        ]);
        assert_eq!(dump.trim(), "[]", "{map} not empty");
    }
    assert!(
        w.host
            .enter(|| TcpListener::bind(("0.0.0.0", 8080)).map(drop))
            .is_ok(),
        "port released"
    );
}

/// A daemon killed and restarted keeps every network working; an endpoint
/// whose host interface vanished meanwhile is rebuilt from the state.
#[test]
fn restart_rebuilds_missing_endpoints_and_keeps_isolation() {
    let mut w = World::new();
    w.daemon.ok(&["network", "create", "n1"]);
    w.daemon.ok(&["network", "create", "n2"]);
    w.attach("ra", &["--network", "n1", "-p", "8080:80"]);
    w.attach("rb", &["--network", "n1"]);
    w.attach("rc", &["--network", "n2"]);
    let (b_ip, c_ip) = (w.ip("rb", "n1"), w.ip("rc", "n2"));
    let _srv: Vec<Server> = ["ra", "rb", "rc"]
        .iter()
        .map(|n| tcp_echo(w.ns(n), 80))
        .collect();
    let veth = w.inspect("ra")["endpoints"][0]["host_ifname"]
        .as_str()
        .unwrap()
        .to_owned();
    w.daemon.kill();
    w.host.ip(&["link", "del", &veth]);
    w.daemon.restart();
    assert!(
        tcp_reaches(w.ns("ra"), sock(b_ip, 80), PROBE_TIMEOUT),
        "same network"
    );
    assert!(
        !tcp_reaches(w.ns("ra"), sock(c_ip, 80), PROBE_TIMEOUT),
        "isolated"
    );
    let mut conn = tcp_connect(&w.upstream, &format!("{HOST_UP_IP}:8080")).unwrap();
    assert!(tcp_roundtrip(&mut conn, "z").unwrap().ends_with(" z"));
    assert!(
        w.daemon.log().contains("recreated_endpoints: 1"),
        "{}",
        w.daemon.log()
    );
}

/// Docker's, netavark's and CNI's firewall footprint in the host
/// namespace, as they leave it: Docker's FORWARD policy DROP and chains,
/// netavark's nft table, CNI's chains and mark bits. Everything netagent
/// does must still work, and none of it may be touched.
#[test]
fn coexists_with_docker_netavark_and_cni_firewalls() {
    let mut w = World::new();
    let ipt = |args: &[&str]| {
        let mut full = vec!["iptables"];
        full.extend_from_slice(args);
        w.host.exec(&full);
    };
    ipt(&["-P", "FORWARD", "DROP"]);
    for chain in ["DOCKER-USER", "DOCKER-FORWARD", "DOCKER", "CNI-FORWARD"] {
        ipt(&["-N", chain]);
    }
    ipt(&["-A", "FORWARD", "-j", "DOCKER-USER"]);
    ipt(&["-A", "FORWARD", "-j", "DOCKER-FORWARD"]);
    ipt(&["-A", "FORWARD", "-j", "CNI-FORWARD"]);
    ipt(&["-A", "DOCKER-USER", "-j", "RETURN"]);
    ipt(&["-A", "DOCKER-FORWARD", "-o", "docker0", "-j", "DOCKER"]);
    ipt(&["-t", "nat", "-N", "DOCKER"]);
    ipt(&[
        "-t",
        "nat",
        "-A",
        "PREROUTING",
        "-m",
        "addrtype",
        "--dst-type",
        "LOCAL",
        "-j",
        "DOCKER",
    ]);
    ipt(&["-t", "nat", "-N", "CNI-HOSTPORT-SETMARK"]);
    ipt(&[
        "-t",
        "nat",
        "-A",
        "CNI-HOSTPORT-SETMARK",
        "-j",
        "MARK",
        "--set-xmark",
        "0x2000/0x2000",
    ]);
    w.host.exec(&["nft", "add", "table", "inet", "netavark"]);
    w.host.exec(&[
        "nft",
        "add",
        "chain",
        "inet",
        "netavark",
        "forward",
        "{ type filter hook forward priority 0; policy accept; }",
    ]);
    let snapshot = |w: &World| {
        let rules = w.host.exec(&["iptables-save"]);
        let rules: Vec<String> = rules
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(" [").next().unwrap_or(l).to_owned())
            .collect();
        (rules, w.host.exec(&["nft", "list", "ruleset"]))
    };
    // Rules only (`nft -s`: no counters), for after traffic that must cross
    // the FORWARD hook.
    let rules_only = |w: &World| {
        (
            snapshot(w).0,
            w.host.exec(&["nft", "-s", "list", "ruleset"]),
        )
    };
    let before = snapshot(&w);
    let rules_before = rules_only(&w);

    w.daemon.ok(&["network", "create", "n1"]);
    w.attach("web", &["--network", "n1", "-p", "8080:80"]);
    w.attach("db", &["--network", "n1"]);
    w.attach("other", &[]);
    let _srv: Vec<Server> = ["web", "db", "other"]
        .iter()
        .map(|n| tcp_echo(w.ns(n), 80))
        .collect();
    let _up = tcp_echo(&w.upstream, ECHO_PORT);
    // Published, same network, outbound, and isolation, all under Docker's DROP policy.
    let mut conn = tcp_connect(&w.upstream, &format!("{HOST_UP_IP}:8080")).expect("published port");
    let local = conn.local_addr().unwrap();
    assert_eq!(tcp_roundtrip(&mut conn, "p").unwrap(), format!("{local} p"));
    assert!(
        tcp_reaches(w.ns("web"), sock(w.ip("db", "n1"), 80), PROBE_TIMEOUT),
        "same network"
    );
    let mut out = tcp_connect(w.ns("db"), &format!("{UPSTREAM_IP}:{ECHO_PORT}")).expect("outbound");
    assert!(
        tcp_roundtrip(&mut out, "o")
            .unwrap()
            .starts_with(HOST_UP_IP)
    );
    assert!(
        pings(w.ns("db"), UPSTREAM_IP.parse().unwrap()),
        "ICMP outbound"
    );
    assert!(!tcp_reaches(
        w.ns("web"),
        sock(w.ip("other", "bridge"), 80),
        PROBE_TIMEOUT
    ));
    assert_eq!(
        snapshot(&w),
        before,
        "counters included: none of that traffic crossed the FORWARD hook"
    );
    // A Docker container behind Docker's bridge: netagent's redirects stop
    // at served interfaces, so reaching it goes through the host's FORWARD
    // chain, where Docker's DROP policy keeps applying.
    let dk = w.netns("dk").name.clone();
    w.host.ip(&["link", "add", "docker0", "type", "bridge"]);
    w.host
        .ip(&["addr", "add", "172.30.0.1/16", "dev", "docker0"]);
    w.host.ip(&["link", "set", "docker0", "up"]);
    netagent_tests::netns::run(&[
        "ip",
        "link",
        "add",
        "dkh",
        "netns",
        &w.host.name,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &dk,
    ]);
    w.host
        .ip(&["link", "set", "dkh", "master", "docker0", "up"]);
    w.ns("dk")
        .ip(&["addr", "add", "172.30.0.2/16", "dev", "eth0"]);
    w.ns("dk").ip(&["link", "set", "eth0", "up"]);
    w.ns("dk")
        .ip(&["route", "add", "default", "via", "172.30.0.1"]);
    let _dk = tcp_echo(w.ns("dk"), 80);
    let docker_ctr = sock("172.30.0.2".parse().unwrap(), 80);
    assert!(
        !tcp_reaches(w.ns("web"), docker_ctr, PROBE_TIMEOUT),
        "a netagent container went around Docker's FORWARD policy"
    );
    w.daemon.ok(&["container", "detach", "db"]);
    assert_eq!(
        rules_only(&w),
        rules_before,
        "netagent changed another tool's firewall"
    );
}
