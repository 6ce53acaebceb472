//! Published ports reached from the host itself: the socket hooks on the
//! daemon's cgroup (a child cgroup of the test's own, never the root)
//! send a host process's connect or UDP send to the container, and show it
//! the published address as its peer. Real TCP and UDP from processes
//! moved into that cgroup, in the daemon's namespace; the negative cases
//! from a process outside it and from a container's namespace. Needs
//! root; fails loudly without it.
#![allow(
    clippy::unwrap_used,
    reason = "tests panic on failure, with context from the asserts"
)]

use netagent_tests::{
    netns::{Bpffs, CONTAINER_IP, Daemon, HOST_CT_IP, HOST_IP, HOST_IP6, Topology, run},
    traffic::{tcp_echo, udp_echo},
};

/// One test's world. Fields drop in order: daemon (and its cgroup), pins,
/// files, namespaces.
struct Env {
    daemon: Daemon,
    _bpffs: Bpffs,
    _work: tempfile::TempDir,
    topo: Topology,
}

impl Env {
    fn new() -> Self {
        let topo = Topology::new();
        let bpffs = Bpffs::new();
        let work = tempfile::Builder::new()
            .prefix("netagent-test")
            .tempdir()
            .expect("tempdir");
        let daemon = Daemon::start(&topo.host, work.path(), bpffs.path(), &[topo.iface("h0")]);
        Self {
            daemon,
            _bpffs: bpffs,
            _work: work,
            topo,
        }
    }

    /// Runs the Python client `script` (with `argv`) in namespace `ns`, in
    /// the daemon's cgroup or outside it. Returns (success, stdout, stderr).
    fn client(
        &self,
        ns: &str,
        in_cgroup: bool,
        script: &str,
        argv: &[&str],
    ) -> (bool, String, String) {
        let mut args = vec!["python3", "-c", script];
        args.extend_from_slice(argv);
        if in_cgroup {
            self.daemon.cgroup.run_in(ns, &args)
        } else {
            netagent_tests::netns::try_exec_in(ns, &args)
        }
    }
}

/// Connects to argv[1]:argv[2], sends a line, prints the answer, then
/// what getpeername says.
const TCP_CLIENT: &str = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
s.sendall(b"hello\n")
print(s.makefile().readline().strip())
print("%s:%d" % s.getpeername())
"#;

/// Sends a datagram to argv[1]:argv[2] unconnected, prints the answer and
/// its source; then the same on a connected socket.
const UDP_CLIENT: &str = r#"
import socket, sys
to = (sys.argv[1], int(sys.argv[2]))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(b"ping", to)
data, src = s.recvfrom(200)
print(data.decode())
print("%s:%d" % src)
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.settimeout(3)
c.connect(to)
c.send(b"pong")
print(c.recv(200).decode())
print("%s:%d" % c.getpeername())
"#;

/// Runs the TCP client `script` to `addr`:`port` from the daemon's cgroup
/// in the host namespace; checks the container answered (seeing the host's
/// address on its bridge) and returns what `getpeername` said.
fn tcp_through_hooks(env: &Env, script: &str, addr: &str, port: &str) -> String {
    let (ok, out, err) = env.client(&env.topo.host.name, true, script, &[addr, port]);
    assert!(ok, "{addr} port {port}: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with(&format!("{HOST_CT_IP}:")) && lines[0].ends_with(" hello"),
        "{addr} port {port}: the container answers: {out}"
    );
    lines[1].to_owned()
}

#[test]
fn host_processes_reach_published_ports_at_the_socket() {
    let env = Env::new();
    env.daemon
        .ok(&["publish", &format!("8080->{CONTAINER_IP}:80")]);
    env.daemon
        .ok(&["publish", &format!("127.0.0.1:8081->{CONTAINER_IP}:80")]);
    env.daemon
        .ok(&["publish", &format!("{HOST_IP}:5353->{CONTAINER_IP}:53/udp")]);
    let _tcp = tcp_echo(&env.topo.container, 80);
    let _udp = udp_echo(&env.topo.container, 53);
    let host = env.topo.host.name.as_str();

    // TCP: the wildcard on loopback and on the host's address, and the
    // loopback-only publication; the container sees the host's address on
    // its bridge, the application the address it connected to.
    for (addr, port) in [
        ("127.0.0.1", "8080"),
        (HOST_IP, "8080"),
        ("127.0.0.1", "8081"),
    ] {
        let peer = tcp_through_hooks(&env, TCP_CLIENT, addr, port);
        assert_eq!(peer, format!("{addr}:{port}"), "getpeername");
    }

    // UDP, unconnected and connected: the answers come from the
    // published address.
    let (ok, out, err) = env.client(host, true, UDP_CLIENT, &[HOST_IP, "5353"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].ends_with(" ping"), "{out}");
    assert_eq!(lines[1], format!("{HOST_IP}:5353"), "recvfrom's source");
    assert!(lines[2].ends_with(" pong"), "{out}");
    assert_eq!(lines[3], format!("{HOST_IP}:5353"), "connected getpeername");

    // Nothing listens in user space on the published ports.
    let listening = run(&["ip", "netns", "exec", host, "ss", "-ltnuH"]);
    for port in [":8080 ", ":8081 ", ":5353 "] {
        assert!(
            !listening
                .lines()
                .any(|l| l.contains(port) && l.starts_with("tcp") && l.contains("LISTEN")),
            "a listener on {port}: {listening}"
        );
    }

    // A process outside the cgroup is left alone: nothing answers there.
    let (ok, _, err) = env.client(host, false, TCP_CLIENT, &["127.0.0.1", "8080"]);
    assert!(!ok && err.contains("Connection refused"), "{err}");
    // A container's 127.0.0.1 is the container, whatever its cgroup.
    let ctr = env.topo.container.name.as_str();
    let (ok, _, err) = env.client(ctr, true, TCP_CLIENT, &["127.0.0.1", "8080"]);
    assert!(!ok && err.contains("Connection refused"), "{err}");

    // Three TCP connects and two UDP sends translated; three getpeernames
    // and two answers shown with the published address.
    assert!(env.daemon.event("socket_forward") >= 5);
    assert!(env.daemon.event("socket_reverse") >= 5);
}

/// An IPv6 TCP client: connects to [argv[1]]:argv[2], sends a line,
/// prints the answer, then what getpeername says.
const TCP6_CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.settimeout(3)
s.connect((sys.argv[1], int(sys.argv[2])))
s.sendall(b"hello\n")
print(s.makefile().readline().strip())
print("[%s]:%d" % s.getpeername()[:2])
"#;

/// An IPv6 UDP client: a connected socket to [argv[1]]:argv[2] (answer,
/// its source, getpeername), then an unconnected one sending to the
/// IPv4-mapped argv[3] (answer and its source).
const UDP6_CLIENT: &str = r#"
import socket, sys
c = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
c.settimeout(3)
c.connect((sys.argv[1], int(sys.argv[2])))
c.send(b"pong")
data, src = c.recvfrom(200)
print(data.decode())
print("[%s]:%d" % src[:2])
print("[%s]:%d" % c.getpeername()[:2])
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u.settimeout(3)
u.sendto(b"ping", (sys.argv[3], int(sys.argv[2])))
data, src = u.recvfrom(200)
print(data.decode())
print("[%s]:%d" % src[:2])
"#;

/// IPv6 host sockets reach IPv4 containers as Docker's proxy on `[::]`
/// lets them: a wildcard publication at `::1` and at the host's IPv6
/// address, any publication at its IPv4-mapped address; the application
/// sees the address it used. A `127.0.0.1` publication is not on `::1`.
#[test]
fn ipv6_host_sockets_reach_published_ports() {
    let env = Env::new();
    env.daemon
        .ok(&["publish", &format!("8080->{CONTAINER_IP}:80")]);
    env.daemon
        .ok(&["publish", &format!("127.0.0.1:8081->{CONTAINER_IP}:80")]);
    env.daemon
        .ok(&["publish", &format!("5354->{CONTAINER_IP}:53/udp")]);
    // On ::1 to a container without IPv6: its IPv4-mapped address.
    env.daemon
        .ok(&["publish", &format!("[::1]:8083->{CONTAINER_IP}:80")]);
    // Anywhere else on IPv6, nothing could reach it: refused.
    let (ok, _, err) = env
        .daemon
        .cli(&["publish", &format!("[{HOST_IP6}]:8084->{CONTAINER_IP}:80")]);
    assert!(!ok && err.contains("has no IPv6 address"), "{err}");
    let _tcp = tcp_echo(&env.topo.container, 80);
    let _udp = udp_echo(&env.topo.container, 53);
    let host = env.topo.host.name.as_str();
    // The container sees the host's IPv4 address on its bridge.
    for (addr, port) in [
        ("::1", "8080"),
        (HOST_IP6, "8080"),
        ("::ffff:127.0.0.1", "8080"),
        ("::ffff:127.0.0.1", "8081"),
        ("::1", "8083"),
    ] {
        let peer = tcp_through_hooks(&env, TCP6_CLIENT, addr, port);
        assert_eq!(peer, format!("[{addr}]:{port}"), "getpeername");
    }
    // Scoping: the loopback publication is IPv4's 127.0.0.1 only, as
    // Docker binds it; outside the cgroup nothing is translated.
    let (ok, _, err) = env.client(host, true, TCP6_CLIENT, &["::1", "8081"]);
    assert!(!ok && err.contains("Connection refused"), "{err}");
    // And the ::1 one is on ::1 only.
    for (addr, port) in [(HOST_IP6, "8083"), ("::ffff:127.0.0.1", "8083")] {
        let (ok, _, err) = env.client(host, true, TCP6_CLIENT, &[addr, port]);
        assert!(!ok && err.contains("Connection refused"), "{addr}: {err}");
    }
    let (ok, _, err) = env.client(host, false, TCP6_CLIENT, &["::1", "8080"]);
    assert!(!ok && err.contains("Connection refused"), "{err}");

    // UDP: a connected IPv6 socket, and an unconnected dual-stack one
    // sending to an IPv4-mapped address (the kernel sends that over IPv4).
    let (ok, out, err) = env.client(
        host,
        true,
        UDP6_CLIENT,
        &["::1", "5354", "::ffff:127.0.0.1"],
    );
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].ends_with(" pong"), "{out}");
    assert_eq!(lines[1], "[::1]:5354", "the answer's source");
    assert_eq!(lines[2], "[::1]:5354", "getpeername");
    assert!(lines[3].ends_with(" ping"), "{out}");
    assert_eq!(lines[4], "[::ffff:127.0.0.1]:5354", "the answer's source");
}

/// Programs attached to the daemon's cgroup, by name.
fn hooks(env: &Env) -> Vec<String> {
    let out = run(&[
        "bpftool",
        "-j",
        "cgroup",
        "show",
        env.daemon.cgroup.path().to_str().unwrap(),
    ]);
    // bpftool prints nothing at all for a cgroup without programs.
    if out.trim().is_empty() {
        return Vec::new();
    }
    let progs: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut names: Vec<String> = progs
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// The hooks are pinned: they keep translating while the daemon is down;
/// a restart puts its own in their place (never two sets, never none in
/// between for long); `--cgroup none` takes them off.
#[test]
fn socket_hooks_outlive_the_daemon_and_leave_with_cgroup_none() {
    let mut env = Env::new();
    env.daemon
        .ok(&["publish", &format!("8080->{CONTAINER_IP}:80")]);
    let _tcp = tcp_echo(&env.topo.container, 80);
    let host = env.topo.host.name.clone();
    let reaches = |env: &Env| {
        env.client(&host, true, TCP_CLIENT, &["127.0.0.1", "8080"])
            .0
    };
    let all = [
        "na_connect4",
        "na_connect6",
        "na_getpeername4",
        "na_getpeername6",
        "na_recvmsg4",
        "na_recvmsg6",
        "na_sendmsg4",
        "na_sendmsg6",
    ];
    assert_eq!(hooks(&env), all);
    assert!(reaches(&env));
    assert_eq!(
        env.daemon.stats()["socket_hooks_cgroup"],
        env.daemon.cgroup.path().to_str().unwrap(),
        "stats names the hooked cgroup"
    );

    env.daemon.kill();
    assert!(reaches(&env), "translated while the daemon is down");
    env.daemon.restart();
    assert_eq!(hooks(&env), all, "one set of hooks after a restart");
    assert!(reaches(&env));

    env.daemon.restart_with(&["--cgroup", "none"]);
    assert!(hooks(&env).is_empty(), "hooks left: {:?}", hooks(&env));
    assert!(env.daemon.stats().get("socket_hooks_cgroup").is_none());
    assert!(!reaches(&env), "translated without hooks");
}
