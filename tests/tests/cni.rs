//! `netagent-cni` invoked as a runtime invokes it (variables, stdin,
//! stdout), against a real daemon, with real traffic: main mode with
//! netagent's IPAM and with host-local delegated, chained after the
//! reference bridge plugin, isolation between CNI networks, CHECK, GC,
//! bad input and its codes, and 50 concurrent ADDs and DELs. Needs root;
//! fails loudly without it.
#![allow(
    clippy::unwrap_used,
    reason = "tests panic on failure, with context from the asserts"
)]

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use netagent_tests::{
    cni::{Invocation, Outcome, PluginDir},
    traffic::{published_roundtrips, tcp_connect, tcp_echo},
    world::{HOST_UP_IP, World, tcp_reaches},
};
use serde_json::{Value, json};

const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// A world and a plugin directory; invocations run in the world's host
/// namespace.
struct Cni {
    w: World,
    plugins: PluginDir,
}

impl Cni {
    fn new() -> Self {
        Self {
            w: World::new(),
            plugins: PluginDir::new(),
        }
    }

    /// The daemon's socket, for configurations.
    fn socket(&self) -> String {
        self.w.daemon.socket.display().to_string()
    }

    /// A main-mode configuration of network `name` on `subnet`.
    fn conf(&self, name: &str, subnet: &str) -> Value {
        json!({
            "cniVersion": "1.1.0",
            "name": name,
            "type": "netagent-cni",
            "socket": self.socket(),
            "subnet": subnet,
            "capabilities": {"portMappings": true, "ips": true, "mac": true},
        })
    }

    /// Runs `plugin` for `command` on container `id` (namespace made by
    /// the world for `id`, if any).
    fn call(&self, plugin: &str, command: &str, id: &str, ifname: &str, conf: &Value) -> Outcome {
        self.call_with(plugin, command, id, ifname, conf, "")
    }

    fn call_with(
        &self,
        plugin: &str,
        command: &str,
        id: &str,
        ifname: &str,
        conf: &Value,
        args: &str,
    ) -> Outcome {
        let netns = self.netns_of(id);
        Invocation {
            host_ns: &self.w.host.name,
            plugins: self.plugins.path(),
            command,
            container_id: Some(id),
            netns: Some(&netns),
            ifname: Some(ifname),
            args,
        }
        .run(plugin, conf.to_string().as_bytes())
    }

    /// Runs netagent-cni with exactly these variables (any may be left
    /// out) and `config` on stdin.
    fn invoke(
        &self,
        command: &str,
        container_id: Option<&str>,
        netns: Option<&std::path::Path>,
        ifname: Option<&str>,
        config: &[u8],
    ) -> Outcome {
        Invocation {
            host_ns: &self.w.host.name,
            plugins: self.plugins.path(),
            command,
            container_id,
            netns,
            ifname,
            args: "",
        }
        .run("netagent-cni", config)
    }

    fn netns_of(&self, id: &str) -> PathBuf {
        self.w.netns_path(id)
    }

    /// ADD that must succeed; its result.
    fn add(&self, id: &str, ifname: &str, conf: &Value) -> Value {
        let out = self.call("netagent-cni", "ADD", id, ifname, conf);
        assert!(
            out.success,
            "ADD {id} {ifname}: {} {}\ndaemon log:\n{}",
            out.output,
            out.stderr,
            self.w.daemon.log()
        );
        out.output
    }

    fn ok(&self, command: &str, id: &str, ifname: &str, conf: &Value) {
        let out = self.call("netagent-cni", command, id, ifname, conf);
        assert!(
            out.success,
            "{command} {id} {ifname}: {} {}",
            out.output, out.stderr
        );
        assert_eq!(out.output, Value::Null, "{command} prints nothing");
    }
}

/// `conf` with `prevResult` (what the runtime passes to DEL and CHECK).
fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}

fn with_ports(conf: &Value, ports: Value) -> Value {
    let mut c = conf.clone();
    c["runtimeConfig"] = json!({ "portMappings": ports });
    c
}

#[test]
fn main_mode_add_check_del_with_real_traffic() {
    let mut t = Cni::new();
    t.w.netns("c1");
    let conf = t.conf("cniweb", "10.77.0.0/24");
    let add_conf = with_ports(
        &conf,
        json!([
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 5353, "containerPort": 53, "protocol": "udp"},
        ]),
    );
    let result = t.add("c1", "eth0", &add_conf);
    // The spec's result: both interfaces, the address on the container's
    // (index 1) with its gateway, the default route.
    assert_eq!(result["cniVersion"], "1.1.0");
    let ifaces = result["interfaces"].as_array().unwrap();
    assert_eq!(ifaces.len(), 2, "{result}");
    assert!(ifaces[0]["name"].as_str().unwrap().starts_with("na-v"));
    assert_eq!(ifaces[1]["name"], "eth0");
    assert_eq!(ifaces[1]["sandbox"], t.netns_of("c1").display().to_string());
    let mac = ifaces[1]["mac"].as_str().unwrap().to_owned();
    assert_eq!(
        result["ips"],
        json!([{"address": "10.77.0.2/24", "gateway": "10.77.0.1", "interface": 1}])
    );
    assert_eq!(
        result["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "10.77.0.1"}])
    );
    // What the container has is what the result says.
    let ns = t.w.ns("c1");
    let addr = ns.ip(&["-o", "addr", "show", "dev", "eth0"]);
    assert!(addr.contains("inet 10.77.0.2/24"), "{addr}");
    let link = ns.ip(&["-o", "link", "show", "dev", "eth0"]);
    assert!(link.contains(&mac), "{link}");
    let route = ns.ip(&["route", "show", "default"]);
    assert!(route.contains("via 10.77.0.1 dev eth0"), "{route}");
    // The published ports carry real traffic from outside, both ways.
    published_roundtrips(&t.w.upstream, ns, HOST_UP_IP, 8080, 5353);
    // netagent knows it as a container, named after the ID.
    let ls = t.w.daemon.ok(&["container", "ls"]);
    assert!(ls.contains("cni-c1"), "{ls}");
    // The result's DNS is the embedded resolver, and it answers there.
    assert_eq!(
        result["dns"],
        json!({"nameservers": ["127.0.0.11"], "options": ["ndots:0"]}),
        "{result}"
    );
    let msg = netagent_tests::dns::ask(ns, "cni-c1", hickory_proto::rr::RecordType::A)
        .expect("the embedded resolver answers in the runtime's namespace");
    assert_eq!(
        netagent_tests::dns::v4s(&msg),
        ["10.77.0.2".parse::<std::net::Ipv4Addr>().unwrap()]
    );

    let prev_conf = with_prev(&add_conf, &result);
    t.ok("CHECK", "c1", "eth0", &prev_conf);
    // A prevResult that is not what the attachment has fails CHECK.
    let mut wrong = result.clone();
    wrong["ips"][0]["address"] = json!("10.77.0.9/24");
    let out = t.call(
        "netagent-cni",
        "CHECK",
        "c1",
        "eth0",
        &with_prev(&add_conf, &wrong),
    );
    assert_eq!(out.code(), 102, "{}", out.output);
    // A container interface gone is what CHECK reports.
    ns.ip(&["addr", "del", "10.77.0.2/24", "dev", "eth0"]);
    let out = t.call("netagent-cni", "CHECK", "c1", "eth0", &prev_conf);
    assert_eq!(out.code(), 102, "{}", out.output);
    assert!(out.details().contains("10.77.0.2"), "{}", out.details());
    ns.ip(&["addr", "add", "10.77.0.2/24", "dev", "eth0"]);

    t.ok("DEL", "c1", "eth0", &prev_conf);
    let links = ns.ip(&["-o", "link", "show"]);
    assert!(!links.contains("eth0"), "{links}");
    assert!(
        tcp_connect(&t.w.upstream, &format!("{HOST_UP_IP}:8080")).is_err(),
        "the publication went with DEL"
    );
    assert!(t.w.host_links("na-v").is_empty());
    // DEL again: a success; CHECK: the container is unknown (3).
    t.ok("DEL", "c1", "eth0", &prev_conf);
    let out = t.call("netagent-cni", "CHECK", "c1", "eth0", &prev_conf);
    assert_eq!(out.code(), 3, "{}", out.output);
}

#[test]
fn cni_networks_are_isolated_from_each_other() {
    let mut t = Cni::new();
    for id in ["a1", "a2", "b1"] {
        t.w.netns(id);
    }
    let a = t.conf("cnia", "10.81.0.0/24");
    let b = t.conf("cnib", "10.82.0.0/24");
    t.add("a1", "eth0", &a);
    t.add("a2", "eth0", &a);
    t.add("b1", "eth0", &b);
    let _srv = tcp_echo(t.w.ns("a2"), 7);
    let _srv_b = tcp_echo(t.w.ns("b1"), 7);
    let a2 = SocketAddr::from(([10, 81, 0, 3], 7));
    let b1 = SocketAddr::from(([10, 82, 0, 2], 7));
    assert!(tcp_reaches(t.w.ns("a1"), a2, PROBE_TIMEOUT), "same network");
    assert!(
        !tcp_reaches(t.w.ns("a1"), b1, PROBE_TIMEOUT),
        "other network"
    );
    assert!(
        !tcp_reaches(t.w.ns("b1"), a2, PROBE_TIMEOUT),
        "other network"
    );
    for (id, conf) in [("a1", &a), ("a2", &a), ("b1", &b)] {
        t.ok("DEL", id, "eth0", conf);
    }
}

#[test]
fn delegated_host_local_ipam_hands_out_and_takes_back_the_address() {
    let mut t = Cni::new();
    t.w.netns("h1");
    let data = tempfile::tempdir().unwrap();
    let mut conf = t.conf("cnihl", "unused");
    conf.as_object_mut().unwrap().remove("subnet");
    conf["ipam"] = json!({
        "type": "host-local",
        "ranges": [[{"subnet": "10.78.0.0/24", "rangeStart": "10.78.0.50"}]],
        "dataDir": data.path(),
    });
    let result = t.add("h1", "eth0", &conf);
    assert_eq!(result["ips"][0]["address"], "10.78.0.50/24", "{result}");
    assert_eq!(result["ips"][0]["gateway"], "10.78.0.1");
    let addr = t.w.ns("h1").ip(&["-o", "addr", "show", "dev", "eth0"]);
    assert!(addr.contains("inet 10.78.0.50/24"), "{addr}");
    let lease = data.path().join("cnihl").join("10.78.0.50");
    assert!(lease.exists(), "host-local recorded the lease");
    t.ok("CHECK", "h1", "eth0", &with_prev(&conf, &result));
    t.ok("DEL", "h1", "eth0", &with_prev(&conf, &result));
    assert!(!lease.exists(), "DEL gave the address back to host-local");
}

#[test]
fn chained_after_the_reference_bridge_plugin_publishes_its_ports() {
    let mut t = Cni::new();
    t.w.netns("k1");
    let data = tempfile::tempdir().unwrap();
    let bridge = json!({
        "cniVersion": "1.0.0",
        "name": "chain",
        "type": "bridge",
        "bridge": format!("{}cb", t.w.prefix),
        "isGateway": true,
        "isDefaultGateway": true,
        "ipMasq": false,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": "10.79.0.0/24"}]],
            "dataDir": data.path(),
        },
    });
    let made = t.call("bridge", "ADD", "k1", "eth0", &bridge);
    assert!(made.success, "bridge ADD: {} {}", made.output, made.stderr);
    let prev = made.output;
    let ours = json!({
        "cniVersion": "1.0.0",
        "name": "chain",
        "type": "netagent-cni",
        "socket": t.socket(),
        "capabilities": {"portMappings": true},
        "runtimeConfig": {"portMappings": [
            {"hostPort": 8081, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 5354, "containerPort": 53, "protocol": "udp"},
        ]},
        "prevResult": prev,
    });
    let result = t.add("k1", "eth0", &ours);
    assert_eq!(result, prev, "a chained plugin passes the result on");
    published_roundtrips(&t.w.upstream, t.w.ns("k1"), HOST_UP_IP, 8081, 5354);
    let port = t.w.daemon.ok(&["port", "cni-k1"]);
    assert!(port.contains("80/tcp -> 0.0.0.0:8081"), "{port}");
    t.ok("CHECK", "k1", "eth0", &ours);
    // DEL as the runtime runs the list: in reverse.
    t.ok("DEL", "k1", "eth0", &ours);
    assert!(tcp_connect(&t.w.upstream, &format!("{HOST_UP_IP}:8081")).is_err());
    let del = t.call("bridge", "DEL", "k1", "eth0", &with_prev(&bridge, &prev));
    assert!(del.success, "bridge DEL: {} {}", del.output, del.stderr);
    assert!(!t.w.daemon.ok(&["container", "ls"]).contains("cni-k1"));
}

#[test]
fn bad_input_gets_the_specs_code_and_changes_nothing() {
    let mut t = Cni::new();
    for id in ["x1", "x2", "x3", "x4"] {
        t.w.netns(id);
    }
    let conf = t.conf("cnibad", "10.83.0.0/24");
    let code = |out: Outcome| out.code();
    // Not JSON: 6. A version not spoken: 1. A field of the wrong type: 6.
    let x1 = t.netns_of("x1");
    let raw = |config: &[u8]| t.invoke("ADD", Some("x1"), Some(&x1), Some("eth0"), config);
    let out = raw(b"{\"cniVersion\": ");
    assert_eq!(out.code(), 6, "{}", out.output);
    let mut future = conf.clone();
    future["cniVersion"] = json!("9.9.9");
    let out = raw(future.to_string().as_bytes());
    assert_eq!(out.code(), 1);
    assert!(out.details().contains("9.9.9"), "{}", out.details());
    // The error object is in the configuration's version.
    let mut old = conf.clone();
    old["cniVersion"] = json!("0.4.0");
    old["runtimeConfig"] = json!({"portMappings": [{"hostPort": 0, "containerPort": 80}]});
    let out = raw(old.to_string().as_bytes());
    assert_eq!(
        (out.code(), out.output["cniVersion"].as_str()),
        (7, Some("0.4.0"))
    );
    // CNI_NETNS missing, or naming nothing: 4.
    let missing = t.invoke(
        "ADD",
        Some("x1"),
        None,
        Some("eth0"),
        conf.to_string().as_bytes(),
    );
    assert_eq!(missing.code(), 4);
    assert!(
        missing.details().contains("CNI_NETNS"),
        "{}",
        missing.details()
    );
    let nowhere = PathBuf::from("/run/netns/netagent-test-no-such-ns");
    let out = t.invoke(
        "ADD",
        Some("x1"),
        Some(&nowhere),
        Some("eth0"),
        conf.to_string().as_bytes(),
    );
    assert_eq!(out.code(), 4);
    assert!(
        out.details().contains("netagent-test-no-such-ns"),
        "{}",
        out.details()
    );
    // A port already published: 100, and the second container gets
    // nothing (no interface, not a netagent container).
    let ports = with_ports(&conf, json!([{"hostPort": 8090, "containerPort": 80}]));
    t.add("x1", "eth0", &ports);
    let out = t.call("netagent-cni", "ADD", "x2", "eth0", &ports);
    assert_eq!(code(out.clone()), 100, "{}", out.output);
    assert!(out.details().contains("8090"), "{}", out.details());
    assert!(!t.w.ns("x2").ip(&["-o", "link"]).contains("eth0"));
    // A port another process holds: 100 too.
    let holder =
        t.w.host
            .enter(|| std::net::TcpListener::bind("0.0.0.0:8091").unwrap());
    let out = t.call(
        "netagent-cni",
        "ADD",
        "x2",
        "eth0",
        &with_ports(&conf, json!([{"hostPort": 8091, "containerPort": 80}])),
    );
    assert_eq!(out.code(), 100, "{}", out.output);
    drop(holder);
    // A name in use: 100.
    t.add("x3", "eth0", &conf);
    let out = t.call_with(
        "netagent-cni",
        "ADD",
        "x4",
        "eth0",
        &conf,
        "IgnoreUnknown=1;NETAGENT_NAME=cni-x3",
    );
    assert_eq!(out.code(), 100, "{}", out.output);
    assert!(out.details().contains("cni-x3"), "{}", out.details());
    // An IPAM plugin that is not there: 7, naming it.
    let mut no_ipam = conf.clone();
    no_ipam["ipam"] = json!({"type": "no-such-ipam"});
    let out = t.call("netagent-cni", "ADD", "x4", "eth0", &no_ipam);
    assert_eq!(out.code(), 7);
    assert!(out.details().contains("no-such-ipam"), "{}", out.details());
    let ls = t.w.daemon.ok(&["container", "ls"]);
    assert!(!ls.contains("cni-x2") && !ls.contains("cni-x4"), "{ls}");
    assert_eq!(t.w.host_links("na-v").len(), 2, "x1 and x3 only");
    // ADD of what exists: 100.
    assert_eq!(
        t.call("netagent-cni", "ADD", "x1", "eth0", &conf).code(),
        100
    );
}

#[test]
fn an_unreachable_daemon_is_try_again_later_and_status_says_so() {
    let mut t = Cni::new();
    t.w.netns("u1");
    let mut gone = t.conf("cniu", "10.84.0.0/24");
    gone["socket"] = json!("/run/netagent-test-no-daemon.sock");
    for command in ["ADD", "DEL", "CHECK"] {
        let out = t.call("netagent-cni", command, "u1", "eth0", &gone);
        assert_eq!(out.code(), 11, "{command}: {}", out.output);
        assert!(out.details().contains("cannot reach"), "{}", out.details());
    }
    assert!(!t.w.ns("u1").ip(&["-o", "link"]).contains("eth0"));
    let status = |conf: &Value| t.invoke("STATUS", None, None, None, conf.to_string().as_bytes());
    // The daemon's pinned datapath goes on forwarding: 50; without one,
    // the existing containers may have no connectivity: 51.
    gone["bpffs"] = json!(t.w.bpffs());
    assert_eq!(status(&gone).code(), 50);
    let empty = tempfile::tempdir().unwrap();
    gone["bpffs"] = json!(empty.path());
    let out = status(&gone);
    assert_eq!(out.code(), 51, "{}", out.output);
    assert!(
        out.details().contains("no datapath is pinned"),
        "{}",
        out.details()
    );
    let up = status(&t.conf("cniu", "10.84.0.0/24"));
    assert!(up.success, "{} {}", up.output, up.stderr);
    // VERSION lists what is spoken.
    let version = t.invoke("VERSION", None, None, None, b"{\"cniVersion\":\"1.1.0\"}");
    assert_eq!(
        version.output["supportedVersions"],
        json!(["0.4.0", "1.0.0", "1.1.0"])
    );
}

#[test]
fn gc_removes_the_attachments_the_runtime_no_longer_has() {
    let mut t = Cni::new();
    for id in ["g1", "g2", "g3", "o1"] {
        t.w.netns(id);
    }
    let conf = t.conf("cnigc", "10.85.0.0/24");
    let other = t.conf("cniother", "10.86.0.0/24");
    for id in ["g1", "g2", "g3"] {
        t.add(id, "eth0", &with_ports(&conf, json!([])));
    }
    t.add("o1", "eth0", &other);
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "g1", "ifname": "eth0"}]);
    let out = t.invoke("GC", None, None, None, gc.to_string().as_bytes());
    assert!(out.success, "{} {}", out.output, out.stderr);
    let ls = t.w.daemon.ok(&["container", "ls"]);
    assert!(ls.contains("cni-g1") && ls.contains("cni-o1"), "{ls}");
    assert!(!ls.contains("cni-g2") && !ls.contains("cni-g3"), "{ls}");
    for id in ["g2", "g3"] {
        assert!(!t.w.ns(id).ip(&["-o", "link"]).contains("eth0"), "{id}");
    }
    assert!(t.w.ns("g1").ip(&["-o", "link"]).contains("eth0"));
}

#[test]
fn older_versions_are_answered_in_their_own_format() {
    let mut t = Cni::new();
    t.w.netns("v1");
    let mut conf = t.conf("cniold", "10.87.0.0/24");
    conf["cniVersion"] = json!("0.4.0");
    let result = t.add("v1", "eth0", &conf);
    assert_eq!(result["cniVersion"], "0.4.0");
    assert_eq!(
        result["ips"],
        json!([{"version": "4", "address": "10.87.0.2/24", "gateway": "10.87.0.1", "interface": 1}])
    );
    t.ok("CHECK", "v1", "eth0", &with_prev(&conf, &result));
    t.ok("DEL", "v1", "eth0", &with_prev(&conf, &result));
}

#[test]
fn fifty_concurrent_adds_then_dels_hand_out_each_address_once() {
    const N: usize = 50;
    let mut t = Cni::new();
    let ids: Vec<String> = (0..N).map(|i| format!("p{i}")).collect();
    for id in &ids {
        t.w.netns(id);
    }
    let conf = t.conf("cnimany", "10.88.0.0/24");
    let t = &t;
    let results: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = ids
            .iter()
            .map(|id| {
                let conf = &conf;
                s.spawn(move || t.add(id, "eth0", conf))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut addrs: Vec<String> = results
        .iter()
        .map(|r| r["ips"][0]["address"].as_str().unwrap().to_owned())
        .collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), N, "no address handed out twice");
    assert_eq!(t.w.host_links("na-v").len(), N);
    std::thread::scope(|s| {
        for (id, result) in ids.iter().zip(&results) {
            let conf = with_prev(&conf, result);
            s.spawn(move || t.ok("DEL", id, "eth0", &conf));
        }
    });
    assert!(t.w.host_links("na-v").is_empty(), "nothing left behind");
    let ls = t.w.daemon.ok(&["container", "ls"]);
    assert_eq!(ls.lines().count(), 1, "only the header: {ls}");
}

#[test]
fn del_succeeds_when_the_runtime_already_deleted_the_namespace() {
    let mut t = Cni::new();
    t.w.netns("d1");
    let conf = t.conf("cnigone", "10.89.0.0/24");
    let result = t.add(
        "d1",
        "eth0",
        &with_ports(&conf, json!([{"hostPort": 8095, "containerPort": 80}])),
    );
    // The runtime removes the namespace first, then calls DEL (with the
    // path it had, or none at all).
    netagent_tests::netns::run(&["ip", "netns", "del", &t.w.ns("d1").name]);
    let out = t.invoke(
        "DEL",
        Some("d1"),
        None,
        Some("eth0"),
        with_prev(&conf, &result).to_string().as_bytes(),
    );
    assert!(out.success, "{} {}", out.output, out.stderr);
    assert!(!t.w.daemon.ok(&["container", "ls"]).contains("cni-d1"));
    assert!(t.w.host_links("na-v").is_empty());
    assert!(tcp_connect(&t.w.upstream, &format!("{HOST_UP_IP}:8095")).is_err());
    // And again, with the path that names nothing now.
    t.ok("DEL", "d1", "eth0", &conf);
}

#[test]
fn capabilities_and_dual_stack_reach_the_container() {
    let mut t = Cni::new();
    t.w.netns("s1");
    let mut conf = t.conf("cnicaps", "10.76.0.0/24");
    conf["subnet6"] = json!("fd00:76::/64");
    conf["capabilities"]["aliases"] = json!(true);
    conf["runtimeConfig"] = json!({
        "ips": ["10.76.0.50/24", "fd00:76::50/64"],
        "mac": "02:42:0a:4c:00:32",
        "aliases": ["api", "api.internal"],
        "portMappings": [{"hostPort": 8096, "containerPort": 80}],
    });
    let result = t.add("s1", "eth0", &conf);
    assert_eq!(
        result["ips"],
        json!([
            {"address": "10.76.0.50/24", "gateway": "10.76.0.1", "interface": 1},
            {"address": "fd00:76::50/64", "gateway": "fd00:76::1", "interface": 1},
        ])
    );
    assert_eq!(
        result["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "10.76.0.1"}, {"dst": "::/0", "gw": "fd00:76::1"}])
    );
    assert_eq!(result["interfaces"][1]["mac"], "02:42:0a:4c:00:32");
    let ns = t.w.ns("s1");
    let link = ns.ip(&["-o", "link", "show", "dev", "eth0"]);
    assert!(link.contains("02:42:0a:4c:00:32"), "{link}");
    let addrs = ns.ip(&["-o", "addr", "show", "dev", "eth0"]);
    assert!(
        addrs.contains("inet 10.76.0.50/24") && addrs.contains("inet6 fd00:76::50/64"),
        "{addrs}"
    );
    let route6 = ns.ip(&["-6", "route", "show", "default"]);
    assert!(route6.contains("via fd00:76::1"), "{route6}");
    let inspect: Value =
        serde_json::from_str(&t.w.daemon.ok(&["--json", "container", "inspect", "cni-s1"]))
            .unwrap();
    assert_eq!(
        inspect["endpoints"][0]["aliases"],
        json!(["api", "api.internal"])
    );
    // The address asked for is held: another ADD asking for it is 100.
    t.w.netns("s2");
    let out = t.call("netagent-cni", "ADD", "s2", "eth0", &conf);
    assert_eq!(out.code(), 100, "{}", out.output);
    t.ok("CHECK", "s1", "eth0", &with_prev(&conf, &result));
    t.ok("DEL", "s1", "eth0", &with_prev(&conf, &result));

    // The conventions' other places for static addresses: `CNI_ARGS IP`
    // (as Kubernetes-era runtimes pass it) and `args.cni.ips`.
    let plain = t.conf("cnicaps", "10.76.0.0/24");
    let out = t.call_with(
        "netagent-cni",
        "ADD",
        "s2",
        "eth0",
        &plain,
        "IgnoreUnknown=1;IP=10.76.0.61",
    );
    assert!(out.success, "{} {}", out.output, out.stderr);
    assert_eq!(
        out.output["ips"][0]["address"], "10.76.0.61/24",
        "{}",
        out.output
    );
    let addrs = t.w.ns("s2").ip(&["-o", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains("inet 10.76.0.61/24"), "{addrs}");
    t.w.netns("s3");
    let mut by_args = plain.clone();
    by_args["args"] = json!({"cni": {"ips": ["10.76.0.62"]}});
    let result = t.add("s3", "eth0", &by_args);
    assert_eq!(result["ips"][0]["address"], "10.76.0.62/24", "{result}");
    // Two different addresses of a family: refused, nothing made.
    t.w.netns("s4");
    let out = t.call_with(
        "netagent-cni",
        "ADD",
        "s4",
        "eth0",
        &by_args,
        "IP=10.76.0.63",
    );
    assert_eq!(out.code(), 7, "{}", out.output);
    assert!(
        out.output["details"]
            .as_str()
            .unwrap_or("")
            .contains("10.76.0.62"),
        "{}",
        out.output
    );
    let links = t.w.ns("s4").ip(&["-o", "link", "show"]);
    assert!(!links.contains("eth0"), "{links}");
}
