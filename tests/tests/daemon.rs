//! Network-namespace tests of the daemon's robustness: it refuses to share
//! its socket, state or bpffs with another daemon before touching
//! anything; it keeps serving when it runs out of descriptors, gets bytes
//! that are not UTF-8, or cannot restore an endpoint; it trusts the
//! kernel over a state file a crash left behind; it never mistakes a
//! reused namespace path for a container; and it refuses a state file
//! that contradicts itself. Needs root; fails loudly without it.
#![allow(
    clippy::unwrap_used,
    reason = "tests panic on failure, with context from the asserts"
)]

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    time::Duration,
};

use aya::maps::{HashMap, Map, MapData};
use datapath_common::{EndpointAddr, MAX_ENDPOINTS};
use netagent_tests::{
    netns::{run, wait_until},
    traffic::{tcp_connect, tcp_echo, tcp_roundtrip},
    world::{HOST_UP_IP, World, pings},
};
use serde_json::Value;

/// Reads the state file, lets `edit` change it, writes it back.
fn edit_state(w: &World, edit: impl FnOnce(&mut Value)) {
    let path = w.daemon.state_dir.join("state.json");
    let mut state: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut state);
    std::fs::write(&path, serde_json::to_vec_pretty(&state).unwrap()).unwrap();
}

fn web_through_published_port(w: &World) -> bool {
    let Ok(mut conn) = tcp_connect(&w.upstream, &format!("{HOST_UP_IP}:8080")) else {
        return false;
    };
    tcp_roundtrip(&mut conn, "hi").is_ok_and(|a| a.ends_with(" hi"))
}

/// A second daemon on the same bpffs (or socket, or state directory) is
/// refused before it touches anything: the first keeps its publications,
/// interfaces and state, and serves on.
#[test]
fn a_second_daemon_is_refused_before_it_touches_anything() {
    let mut w = World::new();
    w.attach("web", &["-p", "8080:80"]);
    let _srv = tcp_echo(w.ns("web"), 80);
    assert!(web_through_published_port(&w));
    let links_before = w.host_links("na-");
    let other = tempfile::tempdir().unwrap();
    let d = &w.daemon;
    for (what, socket, state, bpffs) in [
        (
            "same bpffs",
            other.path().join("a.sock"),
            other.path().join("a"),
            d.bpffs.clone(),
        ),
        (
            "same socket",
            d.socket.clone(),
            other.path().join("b"),
            other.path().join("bpf-b"),
        ),
        (
            "same state",
            other.path().join("c.sock"),
            d.state_dir.clone(),
            other.path().join("bpf-c"),
        ),
    ] {
        let (ok, log) = d.run_another(&socket, &state, &bpffs);
        assert!(!ok, "{what}: a second daemon started:\n{log}");
        assert!(
            log.contains("another netagent daemon") && log.contains("nothing was changed")
                || log.contains("another netagent daemon holds"),
            "{what}: {log}"
        );
    }
    assert_eq!(w.host_links("na-"), links_before, "interfaces untouched");
    assert!(
        web_through_published_port(&w),
        "the first daemon's datapath intact"
    );
    assert_eq!(w.daemon.ok(&["port", "web"]), "80/tcp -> 0.0.0.0:8080\n");
}

/// Out of descriptors while accepting API connections, the daemon backs
/// off and keeps serving; bytes that are not UTF-8 get an error reply;
/// idle connections are closed.
#[test]
fn the_api_survives_descriptor_exhaustion_and_garbage() {
    let w = World::new();
    let pid = w.daemon.pid().unwrap();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let limit = open + 8;
    run(&[
        "prlimit",
        "--pid",
        &pid.to_string(),
        &format!("--nofile={limit}:{limit}"),
    ]);
    // Hold more connections than the daemon has descriptors for.
    let held: Vec<UnixStream> = (0..40)
        .map(|_| UnixStream::connect(&w.daemon.socket).unwrap())
        .collect();
    // Accepting hit the limit, and the daemon backs off instead of exiting.
    assert!(
        wait_until(Duration::from_secs(5), || w
            .daemon
            .log()
            .contains("backing off")),
        "accept never ran out of descriptors:\n{}",
        w.daemon.log()
    );
    assert!(
        std::fs::metadata(format!("/proc/{pid}")).is_ok(),
        "the daemon exited:\n{}",
        w.daemon.log()
    );
    drop(held);
    // Served again once descriptors are free.
    let mut listed = String::new();
    assert!(
        wait_until(Duration::from_secs(15), || {
            let (ok, out, _) = w.daemon.cli(&["network", "ls"]);
            listed = out;
            ok
        }),
        "the API never recovered"
    );
    assert!(listed.contains("bridge"), "{listed}");

    let mut conn = UnixStream::connect(&w.daemon.socket).unwrap();
    conn.write_all(b"\xff\xfe{\"not\": \"utf-8\"}\n").unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("not UTF-8"), "{line}");
    // The same connection goes on serving well-formed requests.
    conn.write_all(b"{\"op\": \"network_ls\"}\n").unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("bridge"), "{line}");
    // An idle connection is closed (after API_IDLE_TIMEOUT, 10 s).
    conn.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    line.clear();
    assert_eq!(
        reader.read_line(&mut line).unwrap(),
        0,
        "idle connection kept"
    );
}

/// A crash during start-up can leave the state file behind the kernel (a
/// rebuilt veth's new MAC never written). The restarted daemon takes MAC
/// and ifindex from the kernel, so delivery to the container works.
#[test]
fn restart_takes_endpoints_from_the_kernel_not_the_state_file() {
    let mut w = World::new();
    w.attach("web", &["-p", "8080:80"]);
    let _srv = tcp_echo(w.ns("web"), 80);
    let real_mac = w.inspect("web")["endpoints"][0]["mac"]
        .as_str()
        .unwrap()
        .to_owned();
    w.daemon.kill();
    edit_state(&w, |s| {
        s["containers"][0]["mode"]["endpoints"][0]["mac"] = "02:de:ad:be:ef:00".into();
        s["containers"][0]["mode"]["endpoints"][0]["host_ifindex"] = 4242.into();
    });
    w.daemon.restart();
    assert!(web_through_published_port(&w), "delivered to a stale MAC");
    assert_eq!(w.inspect("web")["endpoints"][0]["mac"], real_mac.as_str());
    assert!(w.daemon.log().contains("endpoint taken from the kernel"));
}

/// A container whose namespace died, and whose path now names another
/// namespace, is never rebuilt in that stranger: it is reported missing,
/// and can be detached.
#[test]
fn a_reused_namespace_path_is_not_the_container() {
    let mut w = World::new();
    w.attach("gone", &[]);
    let name = w.ns("gone").name.clone();
    w.daemon.kill();
    run(&["ip", "netns", "del", &name]);
    run(&["ip", "netns", "add", &name]);
    w.daemon.restart();
    let links = w.ns("gone").ip(&["-o", "link"]);
    assert!(
        !links.contains("eth0"),
        "an interface was made in a stranger: {links}"
    );
    assert!(
        w.daemon.log().contains("missing_endpoints: 1"),
        "{}",
        w.daemon.log()
    );
    w.daemon.ok(&["container", "detach", "gone"]);
}

/// An endpoint that cannot be restored (its map is full of strays, the
/// way a kernel map can fill) does not stop the daemon: it reports it,
/// serves the API, the broken container can be detached, and the next
/// start puts things right.
#[test]
fn an_endpoint_that_cannot_be_restored_never_stops_the_daemon() {
    let mut w = World::new();
    w.attach("web", &["-p", "8080:80"]);
    w.attach("other", &[]);
    let _srv = tcp_echo(w.ns("web"), 80);
    let web_ip = w.ip("web", "bridge");
    w.daemon.kill();
    let pin = w.daemon.bpffs.join("maps").join("NA_EPADDR4_V1");
    let data = MapData::from_pin(&pin).unwrap();
    let mut map: HashMap<MapData, u32, EndpointAddr> =
        HashMap::try_from(Map::HashMap(data)).unwrap();
    map.remove(&u32::from_ne_bytes(web_ip.octets())).unwrap();
    let mut filled = 0;
    for i in 0..MAX_ENDPOINTS {
        if map
            .insert(&(0x0a00_0000 | i), &EndpointAddr::default(), 0)
            .is_ok()
        {
            filled += 1;
        }
    }
    assert!(filled > 0);
    drop(map);
    w.daemon.restart();
    assert!(
        w.daemon.log().contains("reconciling networks"),
        "{}",
        w.daemon.log()
    );
    w.daemon.ok(&["container", "ls"]);
    w.daemon.ok(&["container", "detach", "other"]);
    w.daemon.restart();
    assert!(
        web_through_published_port(&w),
        "the next start puts it right"
    );
}

/// A state file that loads but contradicts itself is refused with a
/// message naming the entry, before anything is done: here an endpoint
/// renamed to the served uplink's name, which acted on would put the
/// container program on the uplink and delete it.
#[test]
fn an_inconsistent_state_file_is_refused_and_never_acted_on() {
    let mut w = World::new();
    w.attach("web", &[]);
    w.daemon.kill();
    let up = w.up();
    edit_state(&w, |s| {
        s["containers"][0]["mode"]["endpoints"][0]["host_ifname"] = up.clone().into();
    });
    let d = &w.daemon;
    let (ok, log) = d.run_another(&d.socket, &d.state_dir, &d.bpffs);
    assert!(!ok, "started on an inconsistent state:\n{log}");
    assert!(
        log.contains("is inconsistent") && log.contains(&format!("names host interface \"{up}\"")),
        "{log}"
    );
    assert!(
        w.host.ip(&["-o", "addr", "show", &up]).contains(HOST_UP_IP),
        "uplink touched"
    );
    assert!(pings(&w.upstream, HOST_UP_IP.parse().unwrap()));
}

/// The daemon's own namespace, or a namespace of another kind, is refused
/// as a container's.
#[test]
fn only_a_network_namespace_of_its_own_is_a_container() {
    let w = World::new();
    let host_ns = format!("/run/netns/{}", w.host.name);
    for (netns, want) in [
        (host_ns.as_str(), "is the host's own"),
        ("/proc/self/ns/mnt", "not a network namespace"),
        ("/etc/hostname", "not a network namespace"),
    ] {
        let (ok, _, err) = w
            .daemon
            .cli(&["container", "attach", "x1", "--netns", netns]);
        assert!(!ok && err.contains(want), "{netns}: {err}");
    }
    assert!(w.host_links("na-v").is_empty());
}

/// The per-CPU counter array is sized for this host's CPUs (so a host with
/// many CPUs does not pay 2 MiB of kernel memory per CPU for it), and
/// published traffic is counted in it.
#[test]
fn the_counter_array_is_sized_for_the_hosts_cpus() {
    let mut w = World::new();
    w.attach("web", &["-p", "8080:80"]);
    let possible = aya::util::nr_cpus().expect("possible CPUs").get();
    let map = pinned_map(&w, datapath_common::map_names::PUB_STATS);
    assert_eq!(map["type"], "percpu_array");
    assert_eq!(
        map["max_entries"],
        datapath_common::stats_slots(possible),
        "{map}"
    );
    let _srv = tcp_echo(w.ns("web"), 80);
    assert!(web_through_published_port(&w));
    let stats = w.daemon.stats();
    let counted = &stats["publications"][0];
    assert_eq!(counted["counted"], true, "{stats}");
    assert!(counted["fwd_packets"].as_u64().unwrap() > 0, "{stats}");
}

/// `bpftool map show` of the map pinned as `name`.
fn pinned_map(w: &World, name: &str) -> Value {
    let pin = w.daemon.bpffs.join("maps").join(name);
    serde_json::from_str(&run(&[
        "bpftool",
        "-j",
        "map",
        "show",
        "pinned",
        pin.to_str().unwrap(),
    ]))
    .unwrap()
}

/// The host's memory, as sysinfo(2) tells the daemon (MemTotal).
fn ram_bytes() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("MemTotal in /proc/meminfo");
    kib * 1024
}

/// The preallocated flow tables are sized for the host's memory (as
/// nf_conntrack sizes its table), and a table already pinned keeps its
/// size: a restarted daemon adopts a conntrack table of another size (left
/// by another version, or made on a host with other memory) and keeps
/// translating, instead of refusing the pin or dropping its flows.
#[test]
fn flow_tables_are_sized_for_the_hosts_memory_and_pinned_sizes_are_kept() {
    use datapath_common::{
        CtKey, CtValue, MAX_EMBRYONIC_FLOWS, MAX_FLOWS, MAX_FRAGMENTS, MAX_HAIRPIN_FLOWS,
        MAX_SHARES, MAX_SNAT_ENTRIES, MAX_SOCK_FLOWS, MAX_UDP_FLOWS, flow_table_entries, map_names,
    };
    let mut w = World::new();
    w.attach("web", &["-p", "8080:80"]);
    let ram = ram_bytes();
    for (name, full) in [
        (map_names::CT_TCP, MAX_FLOWS),
        (map_names::CT_SYN, MAX_EMBRYONIC_FLOWS),
        (map_names::CT_UDP, MAX_UDP_FLOWS),
        (map_names::SNAT, MAX_SNAT_ENTRIES),
        (map_names::SHARES, MAX_SHARES),
        (map_names::FRAGMENTS, MAX_FRAGMENTS),
        (map_names::SOCK_REV, MAX_SOCK_FLOWS),
        (map_names::HAIRPIN, MAX_HAIRPIN_FLOWS),
        (map_names::SOCK_REV6, MAX_SOCK_FLOWS),
        (map_names::CT_TCP6, datapath_common::MAX_FLOWS6),
        (map_names::CT_SYN6, datapath_common::MAX_EMBRYONIC_FLOWS6),
        (map_names::CT_UDP6, datapath_common::MAX_UDP_FLOWS6),
        (map_names::SNAT6, datapath_common::MAX_SNAT_ENTRIES6),
        (map_names::SHARES6, datapath_common::MAX_SHARES6),
        (map_names::FRAGMENTS6, datapath_common::MAX_FRAGMENTS6),
        (map_names::HAIRPIN6, datapath_common::MAX_HAIRPIN_FLOWS6),
    ] {
        let map = pinned_map(&w, name);
        assert_eq!(map["type"], "lru_hash", "{name}: {map}");
        assert_eq!(
            map["max_entries"],
            flow_table_entries(full, ram),
            "{name} on a host with {} MiB: {map}",
            ram >> 20
        );
    }

    // Another size pinned while the daemon is down is adopted as it is.
    w.daemon.kill();
    let pin = w.daemon.bpffs.join("maps").join(map_names::CT_TCP);
    std::fs::remove_file(&pin).unwrap();
    let (key, value) = (
        size_of::<CtKey>().to_string(),
        size_of::<CtValue>().to_string(),
    );
    run(&[
        "bpftool",
        "map",
        "create",
        pin.to_str().unwrap(),
        "type",
        "lru_hash",
        "key",
        &key,
        "value",
        &value,
        "entries",
        "2048",
        "name",
        map_names::CT_TCP,
    ]);
    w.daemon.restart();
    assert_eq!(pinned_map(&w, map_names::CT_TCP)["max_entries"], 2048);
    assert!(
        w.daemon.log().contains("NA_CTTCP4_V1=2048"),
        "the sizes are logged: {}",
        w.daemon.log()
    );
    let _srv = tcp_echo(w.ns("web"), 80);
    assert!(
        web_through_published_port(&w),
        "translating with the adopted table"
    );
}
