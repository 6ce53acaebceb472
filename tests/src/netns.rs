//! Network namespaces, veths, a private bpffs and the daemon, each behind an
//! RAII guard so every test cleans up in every outcome (panics included)
//! and can run twice in a row.
//!
//! Names carry the prefix `nat` plus a per-process counter, so parallel
//! tests and leftovers of a killed run never collide with anything else.

use std::{
    fs::File,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

/// Panics unless running as root: these tests must fail loudly, never skip.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root (netns, bpffs, eBPF); run it through `./x test` as root"
    );
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes; returns
/// whether it held. For asynchronous effects (a packet through a veth, a
/// counter going up) instead of a fixed sleep.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Runs a command and panics with its output if it fails.
pub fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("spawning {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A unique short prefix for this test's objects (interface names must fit
/// in 15 bytes: prefix + a 3-byte suffix).
pub fn unique_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("nat{}{n}", std::process::id() % 100_000)
}

/// A named network namespace, deleted on drop (with every interface in it).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: String) -> Self {
        run(&["ip", "netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// A name for the network namespace of process `pid` (a runtime's
    /// container): `ip netns attach`. Dropping it removes the name only;
    /// the namespace lives as long as the process.
    pub fn attach(name: String, pid: u32) -> Self {
        run(&["ip", "netns", "attach", &name, &pid.to_string()]);
        Self { name }
    }

    /// `ip -n <ns> ...`
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend_from_slice(args);
        run(&full)
    }

    /// `ip netns exec <ns> ...`
    pub fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        run(&full)
    }

    /// Runs `args` in this namespace, failing or not: (success, stdout,
    /// stderr).
    pub fn try_exec(&self, args: &[&str]) -> (bool, String, String) {
        try_exec_in(&self.name, args)
    }

    /// Starts `args` in this namespace in the background; killed on drop.
    pub fn spawn(&self, args: &[&str]) -> Background {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {args:?} in {}: {e}", self.name));
        Background { child }
    }

    /// Runs `f` on a thread that has entered this namespace. Sockets made
    /// there stay in this namespace when handed back to other threads.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        thread::spawn(move || {
            let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: setns on this thread only, with a namespace fd we own.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// A counter from `/proc/net/snmp6` in this namespace, e.g.
    /// "Udp6InCsumErrors" (0 if the kernel lists no such counter).
    pub fn snmp6(&self, field: &'static str) -> u64 {
        self.enter(move || {
            let text = std::fs::read_to_string("/proc/thread-self/net/snmp6").expect("snmp6");
            text.lines()
                .filter_map(|l| l.split_once(char::is_whitespace))
                .find(|(name, _)| *name == field)
                .map_or(0, |(_, v)| v.trim().parse().expect("snmp6 number"))
        })
    }

    /// The MAC address of interface `dev` in this namespace.
    pub fn mac(&self, dev: &str) -> [u8; 6] {
        let text = self.exec(&["cat", &format!("/sys/class/net/{dev}/address")]);
        crate::world::parse_mac(text.trim())
    }

    /// A counter from `/proc/net/snmp` in this namespace, e.g. ("Udp", "InCsumErrors").
    pub fn snmp(&self, group: &'static str, field: &'static str) -> u64 {
        self.enter(move || {
            let text = std::fs::read_to_string("/proc/thread-self/net/snmp").expect("snmp");
            let mut lines = text.lines().filter(|l| l.starts_with(&format!("{group}:")));
            let names: Vec<&str> = lines
                .next()
                .expect("snmp header")
                .split_whitespace()
                .collect();
            let values: Vec<&str> = lines
                .next()
                .expect("snmp values")
                .split_whitespace()
                .collect();
            let i = names.iter().position(|n| *n == field).expect("snmp field");
            values[i].parse().expect("snmp number")
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Never panic in drop: report and go on.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        // What the daemon wrote for `ip netns exec` (resolv.conf, hosts),
        // should a test have ended before detaching.
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.name));
    }
}

/// A background process, killed and reaped on drop.
pub struct Background {
    child: Child,
}

impl Background {
    /// Wraps a child started elsewhere.
    pub fn from_child(child: Child) -> Self {
        Self { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates a veth pair: `name` in `a`, `peer` in `b`, with fixed MAC
/// addresses (`name`'s, `peer`'s) when given.
pub fn veth_pair(a: &Netns, name: &str, b: &Netns, peer: &str, macs: Option<([u8; 6], [u8; 6])>) {
    let macs = macs.map(|(x, y)| (mac(x), mac(y)));
    let mut args = vec!["ip", "link", "add", name, "netns", &a.name];
    if let Some((x, _)) = &macs {
        args.extend(["address", x]);
    }
    args.extend(["type", "veth", "peer", "name", peer, "netns", &b.name]);
    if let Some((_, y)) = &macs {
        args.extend(["address", y]);
    }
    run(&args);
}

/// A bpffs mounted on a temporary directory in the root mount namespace, so
/// pins outlive the daemon processes (each `ip netns exec` gets a private
/// mount namespace; TOOLCHAIN.md 6.9). Unmounting drops every pin.
pub struct Bpffs {
    pub dir: tempfile::TempDir,
}

impl Bpffs {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("netagent-test-bpffs")
            .tempdir()
            .expect("tempdir");
        run(&[
            "mount",
            "-t",
            "bpf",
            "bpf",
            dir.path().to_str().expect("utf-8 path"),
        ]);
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for Bpffs {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// The three-namespace topology of the tests:
///
/// ```text
///  client 10.77.1.2/24 [c0] ── [h0] 10.77.1.1/24  host  10.77.2.1/24 [h1] ── [t0] 10.77.2.2/24 container
/// ```
///
/// The agent runs in `host` and serves `h0`. MACs are fixed so raw frames
/// can be addressed without ARP.
pub struct Topology {
    pub prefix: String,
    pub client: Netns,
    pub host: Netns,
    pub container: Netns,
}

pub const CLIENT_IP: &str = "10.77.1.2";
pub const HOST_IP: &str = "10.77.1.1";
pub const HOST_CT_IP: &str = "10.77.2.1";
pub const CONTAINER_IP: &str = "10.77.2.2";
/// The host's IPv6 address on `h0` (host sockets reach wildcard
/// publications there too).
pub const HOST_IP6: &str = "fd77:1::1";
pub const CLIENT_MAC: [u8; 6] = [0x02, 0x77, 0, 0, 1, 2];
pub const HOST_MAC: [u8; 6] = [0x02, 0x77, 0, 0, 1, 1];

fn mac(m: [u8; 6]) -> String {
    m.map(|b| format!("{b:02x}")).join(":")
}

impl Topology {
    pub fn new() -> Self {
        require_root();
        let prefix = unique_prefix();
        let client = Netns::new(format!("{prefix}cl"));
        let host = Netns::new(format!("{prefix}h"));
        let container = Netns::new(format!("{prefix}ct"));
        let t = Self {
            prefix,
            client,
            host,
            container,
        };
        let (c0, h0, h1, t0) = (t.iface("c0"), t.iface("h0"), t.iface("h1"), t.iface("t0"));
        veth_pair(&t.client, &c0, &t.host, &h0, Some((CLIENT_MAC, HOST_MAC)));
        veth_pair(&t.host, &h1, &t.container, &t0, None);
        for (ns, dev, addr) in [
            (&t.client, &c0, "10.77.1.2/24"),
            (&t.host, &h0, "10.77.1.1/24"),
            (&t.host, &h1, "10.77.2.1/24"),
            (&t.container, &t0, "10.77.2.2/24"),
        ] {
            ns.ip(&["addr", "add", addr, "dev", dev]);
            ns.ip(&["link", "set", dev, "up"]);
        }
        t.host.ip(&[
            "addr",
            "add",
            &format!("{HOST_IP6}/64"),
            "dev",
            &h0,
            "nodad",
        ]);
        t.client.ip(&["route", "add", "default", "via", HOST_IP]);
        t.container
            .ip(&["route", "add", "default", "via", HOST_CT_IP]);
        // Raw frames from the client must not wait for ARP replies.
        t.host.ip(&[
            "neigh",
            "replace",
            CLIENT_IP,
            "lladdr",
            &mac(CLIENT_MAC),
            "dev",
            &h0,
        ]);
        t
    }

    /// The full name of one of the topology's interfaces ("c0", "h0", ...).
    pub fn iface(&self, short: &str) -> String {
        format!("{}{short}", self.prefix)
    }

    /// `ethtool -K <dev> tx <on|off>` inside `ns` (checksum offload).
    pub fn set_tx_csum(ns: &Netns, dev: &str, on: bool) {
        ns.exec(&["ethtool", "-K", dev, "tx", if on { "on" } else { "off" }]);
    }
}

impl Default for Topology {
    fn default() -> Self {
        Self::new()
    }
}

/// The `netagent` binary under test: `NETAGENT_BIN`, or the one cargo built
/// next to this test binary (`./x test` builds it first).
pub fn netagent_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("NETAGENT_BIN") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let bin = profile_dir.join("netagent");
    assert!(
        bin.exists(),
        "{} not found: build it first (`cargo build --bin netagent`, done by `./x test`) or set NETAGENT_BIN",
        bin.display()
    );
    bin
}

/// A child cgroup of this test's own for the daemon's socket hooks: never
/// the cgroup2 root, which holds every process on the machine. cgroup2 is
/// mounted once more under a temporary directory because `ip netns exec`
/// gives the daemon a /sys of its own, without the host's cgroup mount.
/// Removed (the child, then the mount) on drop.
pub struct Cgroup {
    mount: tempfile::TempDir,
    child: PathBuf,
}

impl Cgroup {
    pub fn new() -> Self {
        let mount = tempfile::Builder::new()
            .prefix("netagent-test-cgroup")
            .tempdir()
            .expect("tempdir");
        run(&[
            "mount",
            "-t",
            "cgroup2",
            "none",
            mount.path().to_str().expect("utf-8 path"),
        ]);
        let child = mount.path().join(format!("{}cg", unique_prefix()));
        std::fs::create_dir(&child)
            .unwrap_or_else(|e| panic!("creating cgroup {}: {e}", child.display()));
        Self { mount, child }
    }

    /// The child cgroup's directory.
    pub fn path(&self) -> &Path {
        &self.child
    }

    /// Moves this whole process (every thread, and what it spawns from now
    /// on) into the cgroup, until the returned guard drops and moves it
    /// back where it was. For a benchmark whose clients must be the
    /// hooked host processes; a test uses [`Cgroup::run_in`] instead.
    pub fn join(&self) -> Joined {
        let own = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
        let rel = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .expect("a cgroup v2 line in /proc/self/cgroup")
            .trim_start_matches('/');
        let back = self.mount.path().join(rel);
        move_self(&self.child);
        Joined { back }
    }

    /// Runs `args` as a process of this cgroup in namespace `ns`, and
    /// returns (success, stdout, stderr).
    pub fn run_in(&self, ns: &str, args: &[&str]) -> (bool, String, String) {
        let procs = self.child.join("cgroup.procs");
        let out = Command::new("sh")
            .arg("-c")
            .arg(r#"echo $$ > "$0" && exec ip netns exec "$@""#)
            .arg(&procs)
            .arg(ns)
            .args(args)
            .output()
            .expect("spawning sh");
        outcome(out)
    }
}

/// This process in a [`Cgroup`]; moved back on drop.
pub struct Joined {
    back: PathBuf,
}

impl Drop for Joined {
    fn drop(&mut self) {
        move_self(&self.back);
    }
}

/// Moves this process into the cgroup at `dir`.
fn move_self(dir: &Path) {
    let procs = dir.join("cgroup.procs");
    std::fs::write(&procs, std::process::id().to_string())
        .unwrap_or_else(|e| panic!("moving into {}: {e}", procs.display()));
}

impl Default for Cgroup {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Processes run in it have exited by now; its hooks go with it.
        let _ = std::fs::remove_dir(&self.child);
        let _ = Command::new("umount").arg(self.mount.path()).status();
    }
}

/// A `netagent daemon` running in a namespace, killed on drop.
pub struct Daemon {
    child: Option<Child>,
    /// The cgroup its socket hooks are attached to.
    pub cgroup: Cgroup,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub bpffs: PathBuf,
    pub ns: String,
    pub ifaces: Vec<String>,
    /// More `netagent daemon` flags, e.g. `--xdp-mode off`.
    pub extra: Vec<String>,
    log: PathBuf,
}

impl Daemon {
    /// Starts the daemon and waits until its API answers.
    pub fn start(ns: &Netns, work: &Path, bpffs: &Path, ifaces: &[String]) -> Self {
        Self::start_with(ns, work, bpffs, ifaces, &[])
    }

    /// [`Daemon::start`] with more `netagent daemon` flags.
    pub fn start_with(
        ns: &Netns,
        work: &Path,
        bpffs: &Path,
        ifaces: &[String],
        extra: &[&str],
    ) -> Self {
        let mut d = Self {
            child: None,
            socket: work.join("netagent.sock"),
            state_dir: work.join("state"),
            bpffs: bpffs.to_owned(),
            ns: ns.name.clone(),
            ifaces: ifaces.to_vec(),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            log: work.join("daemon.log"),
            cgroup: Cgroup::new(),
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("daemon log");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns])
            .arg(netagent_bin())
            .arg("--socket")
            .arg(&self.socket)
            .arg("daemon")
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--bpffs")
            .arg(&self.bpffs);
        // The test's own cgroup unless the test names one (or `none`).
        if !self.extra.iter().any(|a| a == "--cgroup") {
            cmd.arg("--cgroup").arg(self.cgroup.path());
        }
        for iface in &self.ifaces {
            cmd.args(["--iface", iface]);
        }
        // The host's resolv.conf never: no test's query may leave for the
        // machine's real servers. No upstream unless a test names one.
        if !self.extra.iter().any(|a| a == "--resolv-conf") {
            let path = self.log.with_file_name("resolv.conf");
            std::fs::write(
                &path,
                "# netagent tests: no upstream servers\nsearch test.invalid\n",
            )
            .expect("writing the test resolv.conf");
            cmd.arg("--resolv-conf").arg(path);
        }
        cmd.args(&self.extra);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawning netagent daemon");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "netagent daemon exited ({status}) before it was ready:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "daemon not ready in 30 s:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The daemon's process id (`ip netns exec` execs it in place).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the daemon the hard way (a crash) and waits for it to go.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs `netagent daemon` once more with this daemon's flags and
    /// `args` replacing some of them (e.g. another `--state-dir`), without
    /// waiting for it to be ready: a start that must fail. Returns its
    /// exit success and its log.
    pub fn run_another(&self, socket: &Path, state_dir: &Path, bpffs: &Path) -> (bool, String) {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns])
            .arg(netagent_bin())
            .arg("--socket")
            .arg(socket)
            .arg("daemon")
            .arg("--state-dir")
            .arg(state_dir)
            .arg("--bpffs")
            .arg(bpffs)
            .arg("--cgroup")
            .arg(self.cgroup.path());
        for iface in &self.ifaces {
            cmd.args(["--iface", iface]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning netagent daemon");
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().expect("daemon output");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// Starts the daemon again with the same state, pins and socket.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Starts the daemon again with `extra` flags instead.
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.kill();
        self.extra = extra.iter().map(|s| (*s).to_owned()).collect();
        self.spawn();
    }

    /// Starts the daemon again serving `ifaces` instead.
    pub fn restart_serving(&mut self, ifaces: &[String]) {
        self.kill();
        self.ifaces = ifaces.to_vec();
        self.spawn();
    }

    /// Runs a CLI command against this daemon and returns (success, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(netagent_bin())
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("running netagent");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `netagent stats --json`, the `stats` object.
    pub fn stats(&self) -> serde_json::Value {
        let out = self.ok(&["--json", "stats"]);
        serde_json::from_str::<serde_json::Value>(&out).expect("stats JSON")
    }

    /// One datapath event counter, by name.
    pub fn event(&self, name: &str) -> u64 {
        self.stats()["events"]
            .as_array()
            .expect("events")
            .iter()
            .find(|e| e[0] == name)
            .unwrap_or_else(|| panic!("no event {name}"))[1]
            .as_u64()
            .expect("count")
    }

    /// Runs a CLI command that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.cli(args);
        assert!(
            ok,
            "netagent {args:?} failed: {err}\ndaemon log:\n{}",
            self.log()
        );
        out
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `args` in namespace `ns`, failing or not: (success, stdout,
/// stderr).
pub fn try_exec_in(ns: &str, args: &[&str]) -> (bool, String, String) {
    outcome(
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .output()
            .expect("spawning ip netns exec"),
    )
}

/// A finished command as (success, stdout, stderr).
pub fn outcome(out: std::process::Output) -> (bool, String, String) {
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
