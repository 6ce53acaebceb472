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
    traffic::{tcp_connect, tcp_echo, tcp_roundtrip, udp_echo, udp_socket},
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
    let _tcp = tcp_echo(ns, 80);
    let _udp = udp_echo(ns, 53);
    let mut stream = tcp_connect(&t.w.upstream, &format!("{HOST_UP_IP}:8080")).unwrap();
    let answer = tcp_roundtrip(&mut stream, "hello").unwrap();
    assert!(answer.ends_with(" hello"), "{answer}");
    drop(stream);
    let udp = udp_socket(&t.w.upstream);
    udp.send_to(b"q", format!("{HOST_UP_IP}:5353")).unwrap();
    let mut buf = [0u8; 128];
    let (_, from) = udp.recv_from(&mut buf).expect("the UDP answer");
    assert_eq!(from.to_string(), format!("{HOST_UP_IP}:5353"));
    // netagent knows it as a container, named after the ID.
    let ls = t.w.daemon.ok(&["container", "ls"]);
    assert!(ls.contains("cni-c1"), "{ls}");

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
