//! Network-namespace tests of Docker parity with the real daemon and
//! kernel: the gateway (default route and published ports) moving on
//! disconnect and back on reconnect with real traffic, addressing by ID
//! prefix, `host` and `none`, host addresses the host lacks, the PORTS
//! column, `--json` shapes and `--format`, and namespaces the daemon must
//! not keep alive. Needs root; fails loudly without it.
#![allow(
    clippy::unwrap_used,
    reason = "tests panic on failure, with context from the asserts"
)]

use std::time::Duration;

use netagent_tests::{
    netns::{run, wait_until},
    traffic::{tcp_connect, tcp_echo, tcp_roundtrip},
    world::{HOST_UP_IP, World},
};
use serde_json::Value;

/// The container's default route, as `ip route` prints it.
fn default_route(w: &World, name: &str) -> String {
    w.ns(name)
        .ip(&["-4", "route", "show", "default"])
        .trim()
        .to_owned()
}

/// One request/answer through the published port 8080 from upstream.
fn answers(w: &World, word: &str) -> bool {
    tcp_connect(&w.upstream, &format!("{HOST_UP_IP}:8080"))
        .and_then(|mut c| tcp_roundtrip(&mut c, word))
        .is_ok_and(|reply| reply.ends_with(&format!(" {word}")))
}

/// Docker moves a container's gateway, and its published ports, to a
/// remaining network with outside access when the gateway network is
/// disconnected, and back when it is reconnected; `port` keeps listing
/// the ports, and they keep answering.
#[test]
fn disconnecting_the_gateway_network_moves_the_route_and_the_ports() {
    let mut w = World::new();
    w.daemon
        .ok(&["network", "create", "ga", "--subnet", "10.124.1.0/24"]);
    w.daemon
        .ok(&["network", "create", "gb", "--subnet", "10.124.2.0/24"]);
    w.attach("web", &["--network", "ga", "-p", "8080:80"]);
    w.daemon.ok(&["network", "connect", "gb", "web"]);
    let _srv = tcp_echo(w.ns("web"), 80);
    assert!(
        default_route(&w, "web").starts_with("default via 10.124.1.1 dev eth0"),
        "{}",
        default_route(&w, "web")
    );
    assert!(answers(&w, "before"));
    let listed = w.daemon.ok(&["port", "web"]);
    assert_eq!(listed, "80/tcp -> 0.0.0.0:8080\n");

    w.daemon.ok(&["network", "disconnect", "ga", "web"]);
    assert!(
        default_route(&w, "web").starts_with("default via 10.124.2.1 dev eth1"),
        "the route moved: {}",
        default_route(&w, "web")
    );
    assert_eq!(w.daemon.ok(&["port", "web"]), listed, "still listed");
    assert!(
        answers(&w, "moved"),
        "the published port answers through gb"
    );
    assert_eq!(w.inspect("web")["gateway_network"], "gb");

    w.daemon.ok(&["network", "connect", "ga", "web"]);
    assert!(
        default_route(&w, "web").starts_with("default via 10.124.1.1 dev eth0"),
        "restored on reconnect: {}",
        default_route(&w, "web")
    );
    assert!(answers(&w, "back"));
    assert_eq!(w.inspect("web")["gateway_network"], "ga");
    // Only one default route at any time.
    assert_eq!(default_route(&w, "web").lines().count(), 1);
}

/// `port`, `container inspect`, `container detach`, `network rm` and
/// `--network` take a name, a full ID or a unique ID prefix.
#[test]
fn containers_and_networks_answer_to_id_prefixes() {
    let mut w = World::new();
    let net_id = w
        .daemon
        .ok(&["network", "create", "pfx", "--subnet", "10.124.3.0/24"]);
    let net_id = net_id.trim().to_owned();
    let info = w.attach("web", &["--network", &net_id[..6], "-p", "8080:80"]);
    assert_eq!(info["endpoints"][0]["network"], "pfx");
    let id = info["container"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        w.daemon.ok(&["port", &id[..5], "80"]),
        "0.0.0.0:8080\n",
        "docker port 7c742 80"
    );
    let by_prefix: Value =
        serde_json::from_str(&w.daemon.ok(&["--json", "container", "inspect", &id[..8]])).unwrap();
    assert_eq!(by_prefix["container"]["name"], "web");
    let (ok, _, err) = w.daemon.cli(&["port", "nosuch", "80"]);
    assert!(!ok);
    assert_eq!(err.trim(), "netagent: No such container: nosuch");
    let (ok, _, err) = w.daemon.cli(&["port", "web", "81"]);
    assert!(!ok);
    assert_eq!(
        err.trim(),
        "netagent: No public port '81/tcp' published for web"
    );
    assert_eq!(
        w.daemon.ok(&["container", "detach", &id[..6]]),
        format!("{}\n", &id[..6])
    );
    assert_eq!(
        w.daemon.ok(&["network", "rm", &net_id[..5]]),
        format!("{}\n", &net_id[..5])
    );
    assert!(!w.daemon.ok(&["network", "ls"]).contains("pfx"));
}

/// `--network host` and `--network none` (and `--net`), with Docker's
/// warning and refusals, and the pre-defined rows of `network ls`.
#[test]
fn host_and_none_networks() {
    let mut w = World::new();
    let ls = w.daemon.ok(&["network", "ls"]);
    let rows: Vec<Vec<&str>> = ls
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let names: Vec<(&str, &str, &str)> = rows.iter().map(|r| (r[1], r[2], r[3])).collect();
    assert_eq!(
        names,
        [
            ("bridge", "bridge", "local"),
            ("host", "host", "local"),
            ("none", "null", "local")
        ],
        "{ls}"
    );
    let links_before = w.host_links("na-v");
    let (ok, out, err) = w.daemon.cli(&[
        "container",
        "attach",
        "hc",
        "--net",
        "host",
        "-p",
        "9090:80",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.trim().len(), 64, "the container's ID: {out}");
    assert_eq!(
        err.trim(),
        "WARNING: Published ports are discarded when using host network mode"
    );
    assert_eq!(w.daemon.ok(&["port", "hc"]), "");
    assert_eq!(w.host_links("na-v"), links_before, "nothing made for host");
    let (ok, _, err) = w.daemon.cli(&["network", "connect", "bridge", "hc"]);
    assert!(!ok);
    assert_eq!(
        err.trim(),
        "netagent: container cannot be disconnected from host network or connected to host network"
    );

    w.netns("nc");
    let path = w.netns_path("nc");
    w.daemon.ok(&[
        "container",
        "attach",
        "nc",
        "--network",
        "none",
        "--netns",
        path.to_str().unwrap(),
    ]);
    let links = w.ns("nc").ip(&["-o", "link", "show"]);
    assert_eq!(links.lines().count(), 1, "loopback only: {links}");
    let (ok, _, err) = w.daemon.cli(&["network", "connect", "bridge", "nc"]);
    assert!(!ok);
    assert!(err.contains("in private (none) mode"), "{err}");
    let ls = w.daemon.ok(&["container", "ls"]);
    assert!(
        ls.lines().any(|l| l.contains(" hc ") && l.contains("host")),
        "{ls}"
    );
    assert!(
        ls.lines().any(|l| l.contains(" nc ") && l.contains("none")),
        "{ls}"
    );
    let host: Value =
        serde_json::from_str(&w.daemon.ok(&["--json", "network", "inspect", "host"])).unwrap();
    assert_eq!(host["driver"], "host");
    assert_eq!(host["members"][0]["container"], "hc");
    for name in ["hc", "nc"] {
        w.daemon.ok(&["container", "detach", name]);
    }
}

/// A publication on an address the host does not have is refused with
/// Docker's error, by `-p` and by `publish` alike, and changes nothing.
#[test]
fn host_addresses_the_host_lacks_are_refused() {
    let mut w = World::new();
    w.netns("web");
    let path = w.netns_path("web");
    let (ok, _, err) = w.daemon.cli(&[
        "container",
        "attach",
        "web",
        "--netns",
        path.to_str().unwrap(),
        "-p",
        "192.0.2.77:8080:80",
    ]);
    assert!(!ok);
    assert!(
        err.contains("driver failed programming external connectivity on endpoint web")
            && err.trim_end().ends_with(
                "failed to bind host port 192.0.2.77:8080/tcp: cannot assign requested address"
            ),
        "{err}"
    );
    assert_eq!(w.daemon.ok(&["container", "ls"]).lines().count(), 1);
    assert!(w.host_links("na-v").is_empty(), "nothing half-made");
    let (ok, _, err) = w.daemon.cli(&["publish", "192.0.2.77:5000->10.9.9.9:80"]);
    assert!(!ok);
    assert_eq!(
        err.trim(),
        "netagent: failed to bind host port 192.0.2.77:5000/tcp: cannot assign requested address"
    );
    // The host's own address works.
    w.daemon
        .ok(&["publish", &format!("{HOST_UP_IP}:5000->10.9.9.9:80")]);
}

/// `container ls` shows exposed but unpublished ports as Docker's PORTS
/// column does; `--json` prints one shape per command (an object for one
/// item, a list for several, never a wrapper); `--format` picks fields.
#[test]
fn listing_json_and_format_output() {
    let mut w = World::new();
    w.attach(
        "db",
        &[
            "--expose",
            "5432",
            "-p",
            "8080:80",
            "-p",
            "127.0.0.1:53:53/udp",
        ],
    );
    let ls = w.daemon.ok(&["container", "ls"]);
    let row = ls.lines().find(|l| l.contains(" db ")).expect("a db row");
    assert!(
        row.ends_with("5432/tcp, 0.0.0.0:8080->80/tcp, 127.0.0.1:53->53/udp"),
        "{ls}"
    );
    let shapes: [(&[&str], bool); 7] = [
        (&["container", "ls"], true),
        (&["container", "inspect", "db"], false),
        (&["network", "ls"], true),
        (&["network", "inspect", "bridge"], false),
        (&["port"], true),
        (&["port", "db"], true),
        (&["stats"], false),
    ];
    for (args, list) in shapes {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let value: Value = serde_json::from_str(&w.daemon.ok(&full)).unwrap();
        assert_eq!(value.is_array(), list, "{args:?}: {value}");
        assert!(
            value.get("result").is_none() && value.get("info").is_none(),
            "{args:?} is wrapped: {value}"
        );
    }
    assert_eq!(
        w.daemon
            .ok(&["network", "ls", "--format", "{{.name}} {{.driver}}"]),
        "bridge bridge\nhost host\nnone null\n"
    );
    let ip = w.daemon.ok(&[
        "container",
        "inspect",
        "db",
        "--format",
        "{{.container.name}} {{json .ports}}",
    ]);
    assert!(ip.starts_with("db [{"), "{ip}");
    let (ok, _, err) = w.daemon.cli(&["container", "ls", "--format", "{{.nope}}"]);
    assert!(!ok && err.contains("no field \"nope\""), "{err}");
}

/// The daemon keeps no container namespace alive: a namespace its runtime
/// deletes (without a detach) goes, and its veth pair with it, soon after
/// the daemon last touched it.
#[test]
fn a_deleted_namespace_is_not_kept_alive() {
    let mut w = World::new();
    w.attach("gone", &[]);
    let veth = w.host_links("na-v");
    assert_eq!(veth.len(), 1);
    // The daemon just worked inside the namespace (attach, inspect).
    run(&["ip", "netns", "del", &format!("{}gone", w.prefix)]);
    assert!(
        wait_until(Duration::from_secs(5), || w.host_links("na-v").is_empty()),
        "the veth outlived its namespace: something holds the namespace"
    );
    w.daemon.ok(&["container", "detach", "gone"]);
}

/// The same on a user-defined network, where the container has an
/// embedded resolver whose sockets live in its namespace: the daemon
/// closes them once the namespace's path is gone, and the namespace (and
/// its veth) goes.
#[test]
fn a_deleted_namespace_with_a_resolver_is_not_kept_alive() {
    let mut w = World::new();
    w.daemon.ok(&["network", "create", "named"]);
    w.attach("gone", &["--network", "named"]);
    let ns = w.ns("gone");
    let answered = netagent_tests::dns::ask(ns, "gone", hickory_proto::rr::RecordType::A);
    assert!(answered.is_some(), "the resolver is there");
    assert_eq!(w.host_links("na-v").len(), 1);
    run(&["ip", "netns", "del", &format!("{}gone", w.prefix)]);
    assert!(
        wait_until(Duration::from_secs(5), || w.host_links("na-v").is_empty()),
        "the veth outlived its namespace: the resolver's sockets hold it"
    );
    w.daemon.ok(&["container", "detach", "gone"]);
}
