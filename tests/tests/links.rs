//! Network-namespace tests of legacy links: the variables and hosts
//! entries byte for byte in Docker's formats, their update when the
//! linked container comes back with another address, and `--icc=false`
//! on the default bridge opening exactly the linked container's exposed
//! ports, both ways, with real TCP (bulk, both directions) and UDP
//! traffic (fragmented datagrams included), under Docker's FORWARD DROP.
//! Needs root; fails loudly without it.
#![allow(
    clippy::unwrap_used,
    reason = "tests panic on failure, with context from the asserts"
)]

use std::{net::SocketAddr, time::Duration};

use netagent_tests::{
    netns::Netns,
    traffic::{bulk_download, bulk_upload, tcp_bulk, tcp_echo, udp_echo, udp_socket},
    world::{World, tcp_reaches},
};

const PROBE: Duration = Duration::from_millis(500);

fn udp_answers(ns: &Netns, to: SocketAddr) -> bool {
    let socket = udp_socket(ns);
    socket.set_read_timeout(Some(PROBE)).unwrap();
    let mut buf = [0u8; 1500];
    (0..3).any(|_| socket.send_to(b"hello", to).is_ok() && socket.recv_from(&mut buf).is_ok())
}

fn short_id(w: &World, name: &str) -> String {
    w.inspect(name)["container"]["id"].as_str().unwrap()[..12].to_owned()
}

#[test]
fn links_give_dockers_variables_and_hosts_entries_and_icc_false_holes() {
    let mut w = World::new();
    // Docker's FORWARD DROP: what the holes let through is redirected
    // between the veths and never takes the bridge's (filtered) path.
    w.forward_drop();
    w.daemon.restart_with(&["--icc=false"]);
    w.attach(
        "db",
        &[
            "--expose",
            "5432",
            "--expose",
            "53/udp",
            "-e",
            "POSTGRES_DB=app",
            "-e",
            "HOME=/root",
        ],
    );
    w.attach("web", &["--link", "db:webdb"]);
    w.attach("other", &[]);
    let db_ip = w.ip("db", "bridge");
    let web_ip = w.ip("web", "bridge");
    // The variables, byte for byte (Docker's docs example's form).
    let env = w.daemon.ok(&["container", "env", "web"]);
    assert_eq!(
        env,
        format!(
            "WEBDB_PORT=tcp://{db_ip}:5432\n\
             WEBDB_PORT_5432_TCP=tcp://{db_ip}:5432\n\
             WEBDB_PORT_5432_TCP_ADDR={db_ip}\n\
             WEBDB_PORT_5432_TCP_PORT=5432\n\
             WEBDB_PORT_5432_TCP_PROTO=tcp\n\
             WEBDB_PORT_53_UDP=udp://{db_ip}:53\n\
             WEBDB_PORT_53_UDP_ADDR={db_ip}\n\
             WEBDB_PORT_53_UDP_PORT=53\n\
             WEBDB_PORT_53_UDP_PROTO=udp\n\
             WEBDB_NAME=/web/webdb\n\
             WEBDB_ENV_POSTGRES_DB=app\n"
        )
    );
    // The hosts entry, in the file `ip netns exec` mounts, and glibc
    // resolving the alias and the name through it.
    let ns = format!("{}web", w.prefix);
    let hosts = std::fs::read_to_string(format!("/etc/netns/{ns}/hosts")).unwrap();
    let entry = format!("{db_ip}\twebdb {} db\n", short_id(&w, "db"));
    assert!(hosts.ends_with(&entry), "{hosts}");
    for name in ["webdb", "db"] {
        let out = w.ns("web").exec(&["getent", "ahostsv4", name]);
        assert!(out.starts_with(&db_ip.to_string()), "{name}: {out}");
    }

    // icc=false: web reaches db's exposed ports (TCP bulk both ways, UDP),
    // nothing else of db; db answers but never opens; other reaches
    // nothing.
    let _bulk = tcp_bulk(w.ns("db"), 5432, 4 << 20);
    let _ssh = tcp_echo(w.ns("db"), 22);
    let _dns = udp_echo(w.ns("db"), 53);
    let _web_srv = tcp_echo(w.ns("web"), 5432);
    let to = |port| SocketAddr::from((db_ip, port));
    let db5432 = format!("{db_ip}:5432");
    assert_eq!(bulk_download(w.ns("web"), &db5432).unwrap(), 4 << 20);
    assert_eq!(bulk_upload(w.ns("web"), &db5432, 4 << 20).unwrap(), 4 << 20);
    assert!(udp_answers(w.ns("web"), to(53)));
    // A datagram bigger than the MTU: the sender's kernel fragments it,
    // and so does db's answer; every fragment passes, both ways.
    let socket = udp_socket(w.ns("web"));
    socket.set_read_timeout(Some(PROBE)).unwrap();
    let big = vec![0x5a_u8; 4000];
    let mut buf = vec![0u8; 65536];
    let echoed = (0..3).any(|_| {
        socket.send_to(&big, to(53)).is_ok()
            && socket
                .recv_from(&mut buf)
                .is_ok_and(|(n, _)| n > big.len() && buf[n - big.len()..n] == big[..])
    });
    assert!(echoed, "a fragmented datagram and its fragmented answer");
    assert!(
        !tcp_reaches(w.ns("web"), to(22), PROBE),
        "not an exposed port"
    );
    assert!(
        !tcp_reaches(w.ns("db"), SocketAddr::from((web_ip, 5432)), PROBE),
        "the link opens web to db, not db to web"
    );
    assert!(
        !tcp_reaches(w.ns("other"), to(5432), PROBE),
        "other has no link"
    );
    assert!(!udp_answers(w.ns("other"), to(53)));
    assert!(w.daemon.event("drop_icc") > 0, "the refusals are counted");
    assert_eq!(
        w.forward_drops("iptables"),
        0,
        "linked traffic crossed the FORWARD hook"
    );

    // db comes back with another address: the hosts entry follows, the
    // variables do not (Docker's), and the holes move with it.
    drop(_bulk);
    drop(_dns);
    w.daemon.ok(&["container", "detach", "db"]);
    let hosts = std::fs::read_to_string(format!("/etc/netns/{ns}/hosts")).unwrap();
    assert!(
        hosts.ends_with(&format!("{db_ip}\twebdb db\n")),
        "kept while away: {hosts}"
    );
    w.attach("filler", &[]);
    w.attach_again("db", &["--expose", "5432"]);
    let new_ip = w.ip("db", "bridge");
    assert_ne!(new_ip, db_ip);
    let hosts = std::fs::read_to_string(format!("/etc/netns/{ns}/hosts")).unwrap();
    let entry = format!("{new_ip}\twebdb {} db\n", short_id(&w, "db"));
    assert!(hosts.ends_with(&entry), "{hosts}");
    assert_eq!(
        w.daemon.ok(&["container", "env", "web"]),
        env,
        "variables are not refreshed"
    );
    let out = w.ns("web").exec(&["getent", "ahostsv4", "webdb"]);
    assert!(out.starts_with(&new_ip.to_string()), "{out}");
    let _echo = tcp_echo(w.ns("db"), 5432);
    assert!(tcp_reaches(
        w.ns("web"),
        SocketAddr::from((new_ip, 5432)),
        PROBE
    ));
    assert!(!tcp_reaches(
        w.ns("other"),
        SocketAddr::from((new_ip, 5432)),
        PROBE
    ));
}

#[test]
fn a_link_on_a_user_defined_network_is_a_name_for_the_linking_container_only() {
    let mut w = World::new();
    w.daemon
        .ok(&["network", "create", "app", "--subnet", "10.78.0.0/24"]);
    w.attach("db", &["--network", "app"]);
    w.attach("web", &["--network", "app", "--link", "db:store"]);
    w.attach("other", &["--network", "app"]);
    let db_ip = w.ip("db", "app");
    let msg = netagent_tests::dns::ask(w.ns("web"), "store", hickory_proto::rr::RecordType::A)
        .expect("answered");
    assert_eq!(netagent_tests::dns::v4s(&msg), [db_ip]);
    let msg = netagent_tests::dns::ask(w.ns("other"), "store", hickory_proto::rr::RecordType::A)
        .expect("answered");
    assert!(msg.answers.is_empty(), "only web knows the alias");
    assert_eq!(
        w.daemon.ok(&["container", "env", "web"]),
        "",
        "no variables there"
    );
    // A link to a container that is not attached is refused, naming it.
    w.netns("late");
    let path = w.netns_path("late");
    let (ok, _, err) = w.daemon.cli(&[
        "container",
        "attach",
        "late",
        "--netns",
        path.to_str().unwrap(),
        "--network",
        "app",
        "--link",
        "ghost",
    ]);
    assert!(!ok && err.contains("No such container: ghost"), "{err}");
}
