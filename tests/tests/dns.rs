//! Network-namespace tests of the embedded DNS resolver and the files
//! containers get: real queries from container namespaces (hickory-proto
//! messages over real sockets, and glibc's `getent` through the files
//! `ip netns exec` mounts), names scoped to shared networks, rotation,
//! PTR, updates on attach/detach/re-attach, forwarding to a fake upstream
//! in a test namespace (UDP, TCP, truncation, failover), hostile input, a
//! daemon restart, and 1,000 queries per second. Needs root; fails
//! loudly without it.
#![allow(
    clippy::unwrap_used,
    reason = "tests panic on failure, with context from the asserts"
)]

use std::{
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::{RData, RecordType},
};
use netagent_tests::{
    dns::{self, FakeUpstream, RESOLVER, ask, ask_tcp, v4s, v6s},
    world::{UPSTREAM_IP, World},
};

/// Long enough for the resolver to give up on an upstream (4 s) and say
/// SERVFAIL.
const GAVE_UP: std::time::Duration = std::time::Duration::from_secs(7);

/// Networks `front` (dual stack) and `back`; web and two `api`s on front,
/// db on back.
fn two_networks() -> World {
    let mut w = World::new();
    w.daemon.ok(&[
        "network",
        "create",
        "front",
        "--subnet",
        "10.77.1.0/24",
        "--ipv6",
        "--subnet",
        "fd77:1::/64",
    ]);
    w.daemon
        .ok(&["network", "create", "back", "--subnet", "10.77.2.0/24"]);
    w.attach("web", &["--network", "front", "--alias", "www"]);
    w.attach("api1", &["--network", "front", "--alias", "api"]);
    w.attach("api2", &["--network", "front", "--alias", "api"]);
    w.attach("db", &["--network", "back", "--alias", "database"]);
    w
}

fn rcode(msg: &Message) -> ResponseCode {
    msg.metadata.response_code
}

#[test]
fn names_resolve_on_shared_networks_only_with_rotation_and_ptr() {
    let w = two_networks();
    let web = w.ns("web");
    let (api1, api2) = (w.ip("api1", "front"), w.ip("api2", "front"));
    // Name, alias, short ID, NAME.NETWORK, any case.
    let id = w.inspect("api1")["container"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for name in ["api1", "API1", "api1.front", &id[..12]] {
        let msg = ask(web, name, RecordType::A).expect("answered");
        assert_eq!(rcode(&msg), ResponseCode::NoError, "{name}");
        assert_eq!(v4s(&msg), [api1], "{name}");
        assert_eq!(msg.answers[0].ttl, 600, "Docker's TTL");
    }
    // A shared alias: both, the first rotating from query to query.
    let firsts: Vec<Ipv4Addr> = (0..4)
        .map(|_| {
            let msg = ask(web, "api", RecordType::A).expect("answered");
            let mut got = v4s(&msg);
            let first = got[0];
            got.sort();
            let mut want = vec![api1, api2];
            want.sort();
            assert_eq!(got, want);
            first
        })
        .collect();
    assert!(
        firsts.contains(&api1) && firsts.contains(&api2),
        "the order rotates: {firsts:?}"
    );
    // AAAA on the dual-stack network.
    let ip6: std::net::Ipv6Addr = w.endpoint("api1", "front")["ip6"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let msg = ask(web, "api1", RecordType::AAAA).expect("answered");
    assert_eq!(v6s(&msg), [ip6]);
    // PTR: NAME.NETWORK.
    let arpa = format!(
        "{}.{}.{}.{}.in-addr.arpa",
        api1.octets()[3],
        api1.octets()[2],
        api1.octets()[1],
        api1.octets()[0]
    );
    let msg = ask(web, &arpa, RecordType::PTR).expect("answered");
    match &msg.answers[0].data {
        RData::PTR(ptr) => assert_eq!(ptr.0.to_ascii(), "api1.front."),
        other => panic!("{other:?}"),
    }
    // db is on another network: no answer of its own (no upstream here:
    // SERVFAIL), from web; and web's names mean nothing to db.
    for (ns, name) in [(web, "db"), (web, "database"), (w.ns("db"), "web")] {
        let msg = ask(ns, name, RecordType::A).expect("answered");
        assert_eq!(rcode(&msg), ResponseCode::ServFail, "{name}");
        assert!(msg.answers.is_empty(), "{name}");
    }
    // TCP too.
    let msg = ask_tcp(web, "www", RecordType::A).expect("answered over TCP");
    assert_eq!(v4s(&msg), [w.ip("web", "front")]);
}

#[test]
fn glibc_finds_names_through_the_files_ip_netns_exec_mounts() {
    let w = two_networks();
    let ns = format!("{}web", w.prefix);
    let resolv = std::fs::read_to_string(format!("/etc/netns/{ns}/resolv.conf")).unwrap();
    assert!(resolv.contains("\nnameserver 127.0.0.11\n"), "{resolv}");
    assert!(
        resolv.contains("\nsearch test.invalid\n"),
        "the host's search: {resolv}"
    );
    assert!(resolv.contains("\noptions ndots:0\n"), "{resolv}");
    let (_, printed, _) = w.daemon.cli(&["container", "resolv-conf", "web"]);
    assert_eq!(printed, resolv, "the CLI prints what was written");
    let hosts = std::fs::read_to_string(format!("/etc/netns/{ns}/hosts")).unwrap();
    let id = w.inspect("web")["container"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let own = format!("{}\t{} web\n", w.ip("web", "front"), &id[..12]);
    assert!(hosts.contains("127.0.0.1\tlocalhost\n"), "{hosts}");
    assert!(hosts.contains(&own), "{hosts}");
    // glibc in the container: hosts file first, then 127.0.0.11.
    let api1 = w.ip("api1", "front").to_string();
    let out = w.ns("web").exec(&["getent", "ahostsv4", "api1"]);
    assert!(out.starts_with(&api1), "{out}");
    let out = w.ns("web").exec(&["getent", "ahostsv4", "web"]);
    assert!(out.starts_with(&w.ip("web", "front").to_string()), "{out}");
    let (found, _, _) = w.ns("web").try_exec(&["getent", "ahostsv4", "db"]);
    assert!(!found, "db is not on front");
    // Detached: the files go.
    w.daemon.ok(&["container", "detach", "web"]);
    assert!(!std::path::Path::new(&format!("/etc/netns/{ns}")).exists());
}

#[test]
fn attach_detach_connect_and_reattach_are_seen_at_once() {
    let mut w = two_networks();
    let web = w.ns("web");
    let msg = ask(web, "late", RecordType::A).expect("answered");
    assert!(msg.answers.is_empty());
    w.attach("late", &["--network", "front", "--ip", "10.77.1.50"]);
    let web = w.ns("web");
    let msg = ask(web, "late", RecordType::A).expect("answered");
    assert_eq!(v4s(&msg), [Ipv4Addr::new(10, 77, 1, 50)]);
    // Re-attached with another address: the new one, at once.
    w.daemon.ok(&["container", "detach", "late"]);
    assert!(ask(web, "late", RecordType::A).unwrap().answers.is_empty());
    w.attach_again("late", &["--network", "front", "--ip", "10.77.1.51"]);
    let msg = ask(web, "late", RecordType::A).expect("answered");
    assert_eq!(v4s(&msg), [Ipv4Addr::new(10, 77, 1, 51)]);
    // Connected to back: db sees it, and it sees db.
    w.daemon
        .ok(&["network", "connect", "back", "late", "--alias", "both"]);
    let msg = ask(w.ns("db"), "both", RecordType::A).expect("answered");
    assert_eq!(v4s(&msg), [w.ip("late", "back")]);
    let msg = ask(w.ns("late"), "db", RecordType::A).expect("answered");
    assert_eq!(v4s(&msg), [w.ip("db", "back")]);
    // Disconnected: gone again for db.
    w.daemon.ok(&["network", "disconnect", "back", "late"]);
    assert!(
        ask(w.ns("db"), "both", RecordType::A)
            .unwrap()
            .answers
            .is_empty()
    );
    // A container on the default bridge only has no resolver.
    w.attach("plain", &[]);
    assert!(
        ask(w.ns("plain"), "web", RecordType::A).is_none(),
        "the default bridge has no embedded DNS"
    );
    let resolv = w.daemon.ok(&["container", "resolv-conf", "plain"]);
    assert!(!resolv.contains("127.0.0.11"), "{resolv}");
    assert!(
        resolv.contains("nameserver 8.8.8.8"),
        "Docker's fallback: {resolv}"
    );
}

#[test]
fn forwards_to_upstreams_over_udp_and_tcp_with_truncation_and_failover() {
    let mut w = two_networks();
    let refusing = FakeUpstream::start(
        &w.upstream,
        SocketAddr::from((UPSTREAM_IP.parse::<Ipv4Addr>().unwrap(), 5353)),
        true,
    );
    let upstream = FakeUpstream::start(
        &w.upstream,
        SocketAddr::from((UPSTREAM_IP.parse::<Ipv4Addr>().unwrap(), 53)),
        false,
    );
    let first = format!("{UPSTREAM_IP}:5353");
    w.daemon
        .restart_with(&["--dns", &first, "--dns", UPSTREAM_IP]);
    let web = w.ns("web");
    // Over UDP, after the first server refused.
    let msg = ask(web, "service.test", RecordType::A).expect("answered");
    assert_eq!(v4s(&msg), [Ipv4Addr::new(192, 0, 2, 1)]);
    assert!(
        refusing
            .udp_queries
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    // NXDOMAIN is an answer: passed on, no failover past it.
    let msg = ask(web, "nothing.example", RecordType::A).expect("answered");
    assert_eq!(rcode(&msg), ResponseCode::NXDomain);
    // Too big for UDP: the truncated answer, then the asker's TCP retry
    // is forwarded over TCP.
    let msg = ask(web, "big.test", RecordType::A).expect("answered");
    assert!(msg.metadata.truncation && msg.answers.is_empty());
    let msg = ask_tcp(web, "big.test", RecordType::A).expect("answered over TCP");
    assert_eq!(v4s(&msg).len(), 100);
    assert!(
        upstream
            .tcp_queries
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    // Container names never go up.
    let before = upstream
        .udp_queries
        .load(std::sync::atomic::Ordering::Relaxed);
    ask(web, "api1", RecordType::A).unwrap();
    ask(web, "api1", RecordType::MX).unwrap();
    assert_eq!(
        upstream
            .udp_queries
            .load(std::sync::atomic::Ordering::Relaxed),
        before
    );
    // glibc through it all.
    let out = web.exec(&["getent", "ahostsv4", "www.service.test"]);
    assert!(out.starts_with("192.0.2.1"), "{out}");
    // A container's own --dns replaces the daemon's servers; an internal
    // network's container has no upstream but its own.
    w.daemon.ok(&["network", "create", "sealed", "--internal"]);
    w.attach("inside", &["--network", "sealed"]);
    let msg = ask(w.ns("inside"), "service.test", RecordType::A).expect("answered");
    assert_eq!(
        rcode(&msg),
        ResponseCode::ServFail,
        "internal: not forwarded"
    );
    // A container's own server is asked from its namespace: from an
    // internal network the outside is out of reach (Docker's), where the
    // daemon's namespace would have reached it.
    w.attach("own", &["--network", "sealed", "--dns", UPSTREAM_IP]);
    let before = upstream
        .udp_queries
        .load(std::sync::atomic::Ordering::Relaxed);
    let msg = dns::ask_within(w.ns("own"), "service.test", RecordType::A, GAVE_UP)
        .expect("answered once the upstream timed out");
    assert_eq!(rcode(&msg), ResponseCode::ServFail);
    assert_eq!(
        upstream
            .udp_queries
            .load(std::sync::atomic::Ordering::Relaxed),
        before,
        "nothing left the internal network"
    );
    // The counters say what happened (`netagent stats`).
    let stats = w.daemon.stats()["dns"].clone();
    assert!(stats["failovers"].as_u64().unwrap() >= 1, "{stats}");
    assert!(stats["forwarded"].as_u64().unwrap() >= 5, "{stats}");
    assert!(stats["answered"].as_u64().unwrap() >= 2, "{stats}");
    assert!(
        stats["servfail"].as_u64().unwrap() >= 1,
        "the internal one: {stats}"
    );
    assert_eq!(stats["resolvers"], 6, "{stats}");
    drop(refusing);
}

#[test]
fn hostile_queries_are_answered_or_dropped_and_the_resolver_goes_on() {
    let w = two_networks();
    let web = w.ns("web");
    // Garbage with a header: FORMERR, same ID.
    let mut junk = vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    junk.extend_from_slice(&[0xc0; 100]);
    let answer = dns::udp_raw(web, RESOLVER, junk).expect("an answer");
    let msg = Message::from_vec(&answer).unwrap();
    assert_eq!(
        (msg.metadata.id, rcode(&msg)),
        (0x1234, ResponseCode::FormErr)
    );
    // Huge datagrams and TCP messages of junk, a lone byte, a response:
    // FORMERR (a bare header) to a query, no answer to the others, and
    // nothing breaks.
    let mut huge = vec![0xff; 65_000];
    huge[2] = 0x01;
    assert!(dns::udp_raw(web, RESOLVER, huge).is_some_and(|a| a.len() == 12));
    assert!(
        dns::udp_raw(web, RESOLVER, vec![0xff; 65_000]).is_none(),
        "a response's header"
    );
    assert!(dns::udp_raw(web, RESOLVER, vec![7]).is_none());
    let mut response = dns::query("web", RecordType::A);
    response.metadata.message_type = hickory_proto::op::MessageType::Response;
    assert!(dns::udp_raw(web, RESOLVER, response.to_vec().unwrap()).is_none());
    let mut huge = vec![0xee; 65_535];
    huge[2] = 0x01;
    assert!(dns::tcp_raw(web, RESOLVER, huge).is_some_and(|a| a.len() == 12));
    // A compression loop (a name pointing at itself).
    let mut looped = vec![0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    let answer = dns::udp_raw(web, RESOLVER, looped).expect("an answer");
    assert_eq!(
        Message::from_vec(&answer).unwrap().metadata.response_code,
        ResponseCode::FormErr
    );
    // Still answering.
    let msg = ask(web, "api1", RecordType::A).expect("answered");
    assert_eq!(v4s(&msg), [w.ip("api1", "front")]);
    let stats = w.daemon.stats()["dns"].clone();
    assert!(stats["dropped"].as_u64().unwrap() >= 3, "{stats}");
}

#[test]
fn the_resolver_comes_back_within_a_second_of_a_restart() {
    let mut w = two_networks();
    let api1 = w.ip("api1", "front");
    // A crash: the sockets die with the process.
    w.daemon.kill();
    assert!(ask(w.ns("web"), "api1", RecordType::A).is_none());
    let started = Instant::now();
    w.daemon.restart();
    let ready = started.elapsed();
    let msg = ask(w.ns("web"), "api1", RecordType::A).expect("answered once the daemon is ready");
    assert_eq!(v4s(&msg), [api1]);
    // About 0.7 s on the test machine (a debug build loading and
    // verifying the datapath); the bound only catches a regression.
    eprintln!("restart to ready: {ready:?}");
    assert!(ready < Duration::from_secs(5), "{ready:?}");
    // Files are rewritten the same (a bind-mounted file keeps its inode).
    let ns = format!("{}web", w.prefix);
    let resolv = std::fs::read_to_string(format!("/etc/netns/{ns}/resolv.conf")).unwrap();
    assert!(resolv.contains("nameserver 127.0.0.11"));
}

#[test]
fn a_thousand_queries_per_second_are_all_answered() {
    let w = two_networks();
    let web = w.ns("web");
    let (sent, answered, elapsed) = web.enter(|| {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        socket.connect(RESOLVER).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let receiver = socket.try_clone().unwrap();
        let reader = std::thread::spawn(move || {
            let mut seen = std::collections::BTreeSet::new();
            let mut buf = [0u8; 1500];
            while let Ok(n) = receiver.recv(&mut buf) {
                let msg = Message::from_vec(&buf[..n]).unwrap();
                if msg.answers.len() == 2 {
                    seen.insert(msg.metadata.id);
                }
            }
            seen.len()
        });
        // 3,000 queries paced at 1,000 per second.
        let start = Instant::now();
        for i in 0..3000u16 {
            let mut q = dns::query("api", RecordType::A);
            q.metadata.id = i;
            socket.send(&q.to_vec().unwrap()).unwrap();
            let due = start + Duration::from_micros(u64::from(i + 1) * 1000);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        (3000usize, reader.join().unwrap(), start.elapsed())
    });
    assert_eq!(answered, sent, "every query answered ({elapsed:?})");
}

#[test]
fn port_53_stays_free_for_the_containers_own_servers() {
    let w = two_networks();
    let web = w.ns("web");
    // The resolver listens on another port; the loopback program makes it
    // 127.0.0.11:53 (`ss` in the container shows where it really is).
    let listening = web.exec(&["ss", "-Hlun", "src", "127.0.0.11"]);
    assert!(
        !listening.contains("127.0.0.11:53 ") && listening.contains("127.0.0.11:"),
        "{listening}"
    );
    // The container's own DNS server binds the wildcard port 53, UDP and
    // TCP, after the resolver is there, as dnsmasq or CoreDNS would.
    let own = FakeUpstream::start(web, SocketAddr::from(([0, 0, 0, 0], 53)), false);
    // 127.0.0.11:53 is still the embedded resolver (container names)...
    let msg = ask(web, "api1", RecordType::A).expect("answered");
    assert_eq!(v4s(&msg), [w.ip("api1", "front")]);
    let msg = ask_tcp(web, "api1", RecordType::A).expect("answered over TCP");
    assert_eq!(v4s(&msg), [w.ip("api1", "front")]);
    // ...while its own address and 127.0.0.1 reach its own server.
    for server in [
        SocketAddr::from((w.ip("web", "front"), 53)),
        SocketAddr::from(([127, 0, 0, 1], 53)),
    ] {
        let msg = dns::ask_via(web, server, "mine.test", RecordType::A, false).expect("answered");
        assert_eq!(v4s(&msg), [Ipv4Addr::new(192, 0, 2, 1)], "{server}");
        let msg = dns::ask_via(web, server, "mine.test", RecordType::A, true).expect("answered");
        assert_eq!(
            v4s(&msg),
            [Ipv4Addr::new(192, 0, 2, 1)],
            "{server} over TCP"
        );
    }
    assert!(own.udp_queries.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    assert!(own.tcp_queries.load(std::sync::atomic::Ordering::Relaxed) >= 2);
}

/// Where forwarded queries leave from (Docker's rule): a container's own
/// servers from its namespace, so the server sees the container and the
/// isolation between networks holds for what the resolver sends on its
/// behalf; the host's servers (its resolv.conf) from the host's, a
/// loopback one included.
#[test]
fn a_containers_own_servers_are_asked_from_its_namespace() {
    let mut w = two_networks();
    // The host's resolv.conf names a server on the host's loopback.
    let on_host = FakeUpstream::start(&w.host, SocketAddr::from(([127, 0, 0, 1], 53)), false);
    let resolv = std::env::temp_dir().join(format!("{}resolv.conf", w.prefix));
    std::fs::write(&resolv, "nameserver 127.0.0.1\n").unwrap();
    w.daemon
        .restart_with(&["--resolv-conf", resolv.to_str().unwrap()]);
    let msg = ask(w.ns("web"), "service.test", RecordType::A).expect("answered");
    assert_eq!(v4s(&msg), [Ipv4Addr::new(192, 0, 2, 1)]);
    assert_eq!(
        *on_host.peers.lock().unwrap(),
        [Ipv4Addr::LOCALHOST],
        "asked from the host's namespace"
    );
    std::fs::remove_file(&resolv).ok();

    // db (on back) serves DNS; client, on back too, uses it.
    let db_ip = w.ip("db", "back");
    let server = FakeUpstream::start(w.ns("db"), SocketAddr::from(([0, 0, 0, 0], 53)), false);
    w.attach(
        "client",
        &["--network", "back", "--dns", &db_ip.to_string()],
    );
    let client_ip = std::net::IpAddr::V4(w.ip("client", "back"));
    let msg = ask(w.ns("client"), "service.test", RecordType::A).expect("answered");
    assert_eq!(v4s(&msg), [Ipv4Addr::new(192, 0, 2, 1)]);
    let msg = ask_tcp(w.ns("client"), "big.test", RecordType::A).expect("answered over TCP");
    assert_eq!(v4s(&msg).len(), 100);
    assert_eq!(
        *server.peers.lock().unwrap(),
        [client_ip, client_ip],
        "the server sees the container (UDP, then TCP), not the gateway"
    );
    // A container of another network names db as its server: isolation
    // holds, the resolver is no way around it.
    w.attach(
        "stranger",
        &["--network", "front", "--dns", &db_ip.to_string()],
    );
    let msg = dns::ask_within(w.ns("stranger"), "service.test", RecordType::A, GAVE_UP)
        .expect("answered once the upstream timed out");
    assert_eq!(rcode(&msg), ResponseCode::ServFail);
    assert_eq!(server.peers.lock().unwrap().len(), 2, "db got nothing more");
    assert!(w.daemon.event("drop_isolation") > 0, "{}", w.daemon.log());
    // The resolver's own namespace never moved: names still resolve.
    let msg = ask(w.ns("client"), "db", RecordType::A).expect("answered");
    assert_eq!(v4s(&msg), [db_ip]);
}
