//! `netagent-cni` under real container runtimes, as users run them:
//! containerd (`ctr run --cni`) and Podman 4 with its CNI backend, each
//! running containers from a busybox rootfs. Checked: the container's
//! address and default route, published ports over TCP and UDP from
//! outside (Podman's `-p`), isolation between two CNI networks, the way
//! out, and that stopping the containers (the runtime's DEL) leaves
//! nothing behind. Needs root, containerd, podman and busybox-static
//! (scripts/setup.sh installs them); fails loudly without them.
#![allow(
    clippy::unwrap_used,
    reason = "tests panic on failure, with context from the asserts"
)]

use std::{net::SocketAddr, path::Path, time::Duration};

use netagent_tests::{
    cni::PluginDir,
    netns::{Netns, wait_until},
    runtime::{Containerd, Podman, busybox_rootfs, run_private, spawn_private},
    traffic::{published_roundtrips, tcp_connect, tcp_echo, tcp_roundtrip},
    world::{HOST_UP_IP, UPSTREAM_IP, World, tcp_reaches},
};
use serde_json::{Value, json};

const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A CNI configuration directory with one conflist: `netagent-cni` as the
/// main plugin of network `name` on `subnet`.
fn conf_dir(w: &World, name: &str, subnet: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("netagent-test-net.d")
        .tempdir()
        .unwrap();
    let list = json!({
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [{
            "type": "netagent-cni",
            "socket": w.daemon.socket,
            "subnet": subnet,
            "capabilities": {"portMappings": true},
        }],
    });
    std::fs::write(
        dir.path().join(format!("10-{name}.conflist")),
        list.to_string(),
    )
    .unwrap();
    dir
}

/// The addresses and default route a namespace's `eth0` has.
fn addr_and_route(ns: &Netns) -> (String, String) {
    (
        ns.ip(&["-o", "-4", "addr", "show", "dev", "eth0"]),
        ns.ip(&["route", "show", "default"]),
    )
}

fn containers(w: &World) -> Vec<Value> {
    let out = w.daemon.ok(&["--json", "container", "ls"]);
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The PID of containerd task `id`, once it runs.
fn task_pid(ctrd: &Containerd, id: &str) -> Option<u32> {
    let out = std::process::Command::new("ctr")
        .arg("--address")
        .arg(ctrd.socket())
        .args(["task", "ls"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.first() == Some(&id) && f.get(2) == Some(&"RUNNING"))
            .then(|| f.get(1)?.parse().ok())
            .flatten()
    })
}

#[test]
fn containerd_ctr_run_cni_attaches_isolates_and_cleans_up() {
    let w = World::new();
    let plugins = PluginDir::new();
    let rootfs = tempfile::Builder::new()
        .prefix("netagent-test-rootfs")
        .tempdir()
        .unwrap();
    busybox_rootfs(rootfs.path());
    let net_a = format!("{}ctra", w.prefix);
    let net_b = format!("{}ctrb", w.prefix);
    let conf_a = conf_dir(&w, &net_a, "10.90.0.0/24");
    let conf_b = conf_dir(&w, &net_b, "10.91.0.0/24");
    let ctrd = Containerd::start();
    let run = |conf: &Path, id: &str| {
        spawn_private(
            conf,
            plugins.path(),
            &format!(
                "exec {} run --rm --cni --rootfs {} {id} /bin/sleep 600\n",
                ctrd.ctr(""),
                rootfs.path().display()
            ),
        )
    };
    let mut runs = vec![
        run(conf_a.path(), "a1"),
        run(conf_a.path(), "a2"),
        run(conf_b.path(), "b1"),
    ];
    let mut pids = Vec::new();
    for id in ["a1", "a2", "b1"] {
        let mut pid = None;
        let up = wait_until(START_TIMEOUT, || {
            pid = task_pid(&ctrd, id);
            pid.is_some()
        });
        assert!(up, "task {id} did not start: {}", ctrd.log());
        pids.push(pid.unwrap());
    }
    assert!(
        wait_until(START_TIMEOUT, || containers(&w).len() == 3),
        "the daemon has {:?}",
        containers(&w)
    );
    // Names for the runtime's namespaces, to look inside and carry
    // traffic (removed on drop; the namespaces are the tasks').
    let names: Vec<Netns> = ["a1", "a2", "b1"]
        .iter()
        .zip(&pids)
        .map(|(id, pid)| Netns::attach(format!("{}t{id}", w.prefix), *pid))
        .collect();
    let (a1, a2, b1) = (&names[0], &names[1], &names[2]);
    let (addr, route) = addr_and_route(a1);
    assert!(addr.contains("inet 10.90.0."), "{addr}");
    assert!(route.contains("via 10.90.0.1 dev eth0"), "{route}");
    let (addr_b, route_b) = addr_and_route(b1);
    assert!(addr_b.contains("inet 10.91.0.2/24"), "{addr_b}");
    assert!(route_b.contains("via 10.91.0.1 dev eth0"), "{route_b}");
    // ctr names the attachment `default-ID` (namespace and ID).
    let ids: Vec<String> = containers(&w)
        .iter()
        .map(|c| {
            c["container"]["cni_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert!(ids.iter().any(|id| id == "default-a1"), "{ids:?}");

    let a2_ip = a2.ip(&["-o", "-4", "addr", "show", "dev", "eth0"]);
    let a2_ip = a2_ip
        .split_whitespace()
        .nth(3)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse::<std::net::Ipv4Addr>()
        .unwrap();
    let _srv = tcp_echo(a2, 7);
    let to_a2 = SocketAddr::from((a2_ip, 7));
    assert!(tcp_reaches(a1, to_a2, PROBE_TIMEOUT), "same network");
    assert!(!tcp_reaches(b1, to_a2, PROBE_TIMEOUT), "another network");
    // Inside the task (its own rootfs and mount namespace, busybox's
    // nslookup): the embedded resolver answers a2's name with a2's
    // address, and b1's (another network) not at all.
    let name_of = |id: &str| {
        containers(&w)
            .iter()
            .find(|c| c["container"]["cni_id"] == format!("default-{id}"))
            .and_then(|c| c["container"]["name"].as_str().map(str::to_owned))
            .unwrap()
    };
    let lookup = |name: &str, n: usize| {
        run_private(
            conf_a.path(),
            plugins.path(),
            &format!(
                "{}\n",
                ctrd.ctr(&format!(
                    "task exec --exec-id dns{n} a1 /bin/nslookup {name} 127.0.0.11"
                ))
            ),
        )
    };
    let (ok, out, err) = lookup(&name_of("a2"), 1);
    assert!(ok && out.contains(&a2_ip.to_string()), "{out}{err}");
    let (ok, out, _) = lookup(&name_of("b1"), 2);
    assert!(
        !ok || !out.contains("10.91.0."),
        "another network's name: {out}"
    );
    // The way out, masqueraded.
    let _up = tcp_echo(&w.upstream, 7);
    let mut s = tcp_connect(a1, &format!("{UPSTREAM_IP}:7")).unwrap();
    let answer = tcp_roundtrip(&mut s, "out").unwrap();
    assert!(answer.starts_with(&format!("{HOST_UP_IP}:")), "{answer}");
    drop(s);

    // Stopping the tasks makes ctr run the DEL.
    drop(names);
    for id in ["a1", "a2", "b1"] {
        let (ok, _, err) = run_private(
            conf_a.path(),
            plugins.path(),
            &format!("{}\n", ctrd.ctr(&format!("task kill -s SIGKILL {id}"))),
        );
        assert!(ok, "killing {id}: {err}");
    }
    for child in &mut runs {
        let _ = child.wait();
    }
    assert!(
        wait_until(Duration::from_secs(10), || containers(&w).is_empty()),
        "left behind: {:?}",
        containers(&w)
    );
    assert!(
        w.host_links("na-v").is_empty(),
        "{:?}",
        w.host_links("na-v")
    );
}

#[test]
fn podman_with_the_cni_backend_publishes_and_cleans_up() {
    let w = World::new();
    let plugins = PluginDir::new();
    let net = format!("{}pod", w.prefix);
    let conf = conf_dir(&w, &net, "10.92.0.0/24");
    let podman = Podman::new(conf.path(), plugins.path());
    let rootfs = tempfile::Builder::new()
        .prefix("netagent-test-rootfs")
        .tempdir()
        .unwrap();
    busybox_rootfs(rootfs.path());
    let image = "localhost/netagent-test-busybox";
    let (ok, _, err) = podman.run(&format!(
        "tar -C {} -c . | {}\n",
        rootfs.path().display(),
        podman.cmd(&format!("import - {image}"))
    ));
    assert!(ok, "podman import: {err}");
    let name = format!("{}p1", w.prefix);
    let (ok, out, err) = podman.run(&podman.cmd(&format!(
        "run -d --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --name {name} --network {net} -p 8085:80 -p 5355:53/udp {image} /bin/sleep 600"
    )));
    assert!(ok, "podman run: {err}\ndaemon log:\n{}", w.daemon.log());
    assert!(!out.trim().is_empty());
    let (ok, pid, err) =
        podman.run(&podman.cmd(&format!("inspect -f '{{{{.State.Pid}}}}' {name}")));
    assert!(ok, "podman inspect: {err}");
    let ns = Netns::attach(format!("{}tp1", w.prefix), pid.trim().parse().unwrap());
    let (addr, route) = addr_and_route(&ns);
    assert!(addr.contains("inet 10.92.0.2/24"), "{addr}");
    assert!(route.contains("via 10.92.0.1 dev eth0"), "{route}");
    // Podman's -p went to netagent through the portMappings capability.
    let port = w.daemon.ok(&["port", "10.92.0.2"]);
    assert!(port.contains("8085"), "{port}");
    published_roundtrips(&w.upstream, &ns, HOST_UP_IP, 8085, 5355);
    drop(ns);

    let (ok, _, err) = podman.run(&podman.cmd(&format!("rm -f -t 0 {name}")));
    assert!(ok, "podman rm: {err}");
    assert!(containers(&w).is_empty(), "{:?}", containers(&w));
    assert!(w.host_links("na-v").is_empty());
    assert!(tcp_connect(&w.upstream, &format!("{HOST_UP_IP}:8085")).is_err());
}
