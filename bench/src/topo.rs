//! The benchmark topology, one copy per variant so that no variant pays
//! for another's hooks (conntrack, XDP):
//!
//! ```text
//! client 10.90.1.2 [c0] ── [h0] 10.90.1.1  host  10.90.2.1 [br0]─[hb0] ── [t0] 10.90.2.2 container
//!        fd90:1::2                fd90:1::1        fd90:2::1                    fd90:2::2
//! ```
//!
//! Every copy is dual-stack; the IPv6 figures are measured for the
//! variants that translate IPv6 ([`Kind::speaks_ipv6`]). Over IPv6 the
//! container also runs a ping-pong server for round trips (sockperf 3.7
//! speaks IPv4 only) and an accept-and-close server, IPv6-only sockets
//! beside the IPv4 ones on the same ports.
//!
//! The container runs `iperf3 -s`, `sockperf sr --tcp` and an accept-and-
//! close server. The client's veth sends with one of two [`Profile`]s, the
//! same for every variant at a time: the kernel's defaults (TSO, GSO,
//! checksum offload: as every local, container or VM sender sends) or
//! wire-like (complete checksums, MTU-sized packets).
//!
//! In the `netagent-endpoint` variant the container is attached by
//! `netagent container attach` (its veth, bridge, address and route are
//! netagent's, and published traffic takes the endpoint path into it);
//! in every other variant the bridge above is made by hand.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use netagent_tests::{
    netns::{Background, Bpffs, Daemon, Netns, veth_pair},
    traffic::{Server, tcp_accept_close, tcp_accept_close_v6only, tcp_ping_pong_v6only},
};

pub const HOST_IP: &str = "10.90.1.1";
pub const BRIDGE_IP: &str = "10.90.2.1";
pub const CTR_IP: &str = "10.90.2.2";
pub const HOST_IP6: &str = "fd90:1::1";
pub const BRIDGE_IP6: &str = "fd90:2::1";
pub const CTR_IP6: &str = "fd90:2::2";

/// Container-side server ports.
pub const IPERF_PORT: u16 = 5201;
pub const SOCKPERF_PORT: u16 = 11111;
pub const ACCEPT_PORT: u16 = 12000;
/// The published host ports of the three servers, in that order.
pub const PUBLISHED: [(u16, u16); 3] = [
    (8201, IPERF_PORT),
    (8111, SOCKPERF_PORT),
    (8120, ACCEPT_PORT),
];
/// docker-proxy's host-local ports on 127.0.0.1, in the same order.
pub const PROXY_PORTS: [u16; 3] = [8301, 8311, 8320];
/// Filler publications for the scale runs use host ports from here up.
pub const FILLER_BASE: u16 = 10000;

/// How a variant reaches the servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Direct,
    /// netagent as it starts by default (`--xdp-mode auto`: TC only on
    /// this veth), publications by address to a hand-made bridge.
    Netagent,
    /// The same with native XDP forced on the served veth.
    NetagentXdp,
    /// netagent's own container: attached with `netagent container
    /// attach`, its ports published with `-p` (the endpoint path).
    NetagentEndpoint,
    Iptables,
    Nftables,
}

/// How the client's veth sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// The kernel's defaults: TSO, GSO and checksum offload on.
    Defaults,
    /// Like a wire: complete checksums, MTU-sized packets.
    Wire,
}

impl Profile {
    pub const ALL: [Profile; 2] = [Profile::Defaults, Profile::Wire];

    pub const fn name(self) -> &'static str {
        match self {
            Profile::Defaults => "kernel defaults",
            Profile::Wire => "wire-like",
        }
    }

    /// Sets the client's offloads, and says what the device took: native
    /// XDP on a veth makes the kernel take GSO away from its peer, which
    /// is part of what is measured.
    pub fn apply(self, topo: &Topo) -> String {
        let on = match self {
            Profile::Defaults => "on",
            Profile::Wire => "off",
        };
        let c0 = format!("{}c0", topo.prefix);
        let _ = Command::new("ip")
            .args(["netns", "exec", &topo.client.name, "ethtool", "-K", &c0])
            .args(["tx", on, "tso", on, "gso", on])
            .output();
        let shown = Command::new("ip")
            .args(["netns", "exec", &topo.client.name, "ethtool", "-k", &c0])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        shown
            .lines()
            .filter(|l| {
                l.starts_with("tx-checksumming:")
                    || l.starts_with("tcp-segmentation-offload:")
                    || l.starts_with("generic-segmentation-offload:")
            })
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Kind {
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Netagent => "netagent",
            Kind::NetagentXdp => "netagent-xdp",
            Kind::NetagentEndpoint => "netagent-endpoint",
            Kind::Iptables => "iptables",
            Kind::Nftables => "nftables",
        }
    }

    /// One letter in the names of the variant's namespaces and interfaces.
    pub const fn tag(self) -> char {
        match self {
            Kind::Direct => 'd',
            Kind::Netagent => 'a',
            Kind::NetagentXdp => 'x',
            Kind::NetagentEndpoint => 'e',
            Kind::Iptables => 'i',
            Kind::Nftables => 'f',
        }
    }

    /// Whether netagent's daemon serves this variant.
    pub const fn is_netagent(self) -> bool {
        matches!(
            self,
            Kind::Netagent | Kind::NetagentXdp | Kind::NetagentEndpoint
        )
    }

    /// (address, [iperf3, sockperf, accept] ports) a remote client uses.
    pub fn target(self) -> (&'static str, [u16; 3]) {
        match self {
            Kind::Direct => (CTR_IP, [IPERF_PORT, SOCKPERF_PORT, ACCEPT_PORT]),
            _ => (HOST_IP, PUBLISHED.map(|(h, _)| h)),
        }
    }

    /// Whether the variant translates IPv6 to the container: netagent
    /// does for its own (dual-stack) containers, so not by address to
    /// the hand-made bridge's.
    pub const fn speaks_ipv6(self) -> bool {
        matches!(
            self,
            Kind::Direct | Kind::NetagentEndpoint | Kind::Iptables | Kind::Nftables
        )
    }

    /// [`Kind::target`] over IPv6 (the ping-pong server on the sockperf
    /// port).
    pub fn target6(self) -> (&'static str, [u16; 3]) {
        match self {
            Kind::Direct => (CTR_IP6, [IPERF_PORT, SOCKPERF_PORT, ACCEPT_PORT]),
            _ => (HOST_IP6, PUBLISHED.map(|(h, _)| h)),
        }
    }
}

/// One copy of the topology, with its variant's translation installed.
pub struct Topo {
    pub kind: Kind,
    /// Prefix of its namespaces and interfaces.
    pub prefix: String,
    /// The host's client-facing interface (the one netagent serves).
    pub h0: String,
    /// The host's bridge to the container.
    pub br0: String,
    _servers: Vec<Background>,
    _accept: Vec<Server>,
    /// Declared before the namespaces: dropped (killed) first.
    pub daemon: Option<Daemon>,
    _bpffs: Option<Bpffs>,
    pub work: tempfile::TempDir,
    pub client: Netns,
    pub host: Netns,
    pub container: Netns,
}

fn run(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("spawning {args:?}"))?;
    if !out.status.success() {
        bail!(
            "{args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Topo {
    pub fn new(kind: Kind, prefix: &str) -> anyhow::Result<Self> {
        let p = format!("{prefix}{}", kind.tag());
        let client = Netns::new(format!("{p}c"));
        let host = Netns::new(format!("{p}h"));
        let container = Netns::new(format!("{p}t"));
        let (c0, h0, hb0, t0, br0) = (
            format!("{p}c0"),
            format!("{p}h0"),
            format!("{p}hb0"),
            format!("{p}t0"),
            format!("{p}br0"),
        );
        veth_pair(&client, &c0, &host, &h0, None);
        let mut links = vec![
            (&client, &c0, vec!["10.90.1.2/24", "fd90:1::2/64"]),
            (&host, &h0, vec!["10.90.1.1/24", "fd90:1::1/64"]),
        ];
        // netagent's own container gets its veth, bridge, address and
        // route from `netagent container attach` (in `install`).
        if kind != Kind::NetagentEndpoint {
            veth_pair(&host, &hb0, &container, &t0, None);
            host.ip(&["link", "add", &br0, "type", "bridge"]);
            host.ip(&["link", "set", &hb0, "master", &br0]);
            links.extend([
                (&host, &br0, vec!["10.90.2.1/24", "fd90:2::1/64"]),
                (&host, &hb0, vec![]),
                (&container, &t0, vec!["10.90.2.2/24", "fd90:2::2/64"]),
            ]);
        }
        for (ns, dev, addrs) in links {
            for addr in addrs {
                // No duplicate address detection: usable at once.
                ns.ip(&["addr", "add", addr, "dev", dev, "nodad"]);
            }
            ns.ip(&["link", "set", dev, "up"]);
        }
        client.ip(&["route", "add", "default", "via", HOST_IP]);
        client.ip(&["-6", "route", "add", "default", "via", HOST_IP6]);
        if kind != Kind::NetagentEndpoint {
            container.ip(&["route", "add", "default", "via", BRIDGE_IP]);
            container.ip(&["-6", "route", "add", "default", "via", BRIDGE_IP6]);
        }
        host.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        host.exec(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
        // Clients here (remote, and host-local in the host) open connections
        // by the tens of thousands: reuse TIME_WAIT ports, use a wide range.
        for ns in [&client, &host] {
            ns.exec(&["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"]);
            ns.exec(&["sysctl", "-qw", "net.ipv4.ip_local_port_range=20000 65000"]);
        }

        let servers = vec![
            container.spawn(&["iperf3", "-s", "-p", &IPERF_PORT.to_string()]),
            container.spawn(&["sockperf", "sr", "--tcp", "-p", &SOCKPERF_PORT.to_string()]),
        ];
        let accept = vec![
            tcp_accept_close(&container, ACCEPT_PORT),
            tcp_accept_close_v6only(&container, ACCEPT_PORT),
            tcp_ping_pong_v6only(&container, SOCKPERF_PORT),
        ];
        let work = tempfile::Builder::new()
            .prefix("netagent-bench")
            .tempdir()?;
        let mut topo = Self {
            kind,
            prefix: p,
            h0: h0.clone(),
            br0: br0.clone(),
            _servers: servers,
            _accept: accept,
            daemon: None,
            _bpffs: None,
            work,
            client,
            host,
            container,
        };
        topo.wait_for_servers()?;
        topo.install(0)?;
        Ok(topo)
    }

    fn wait_for_servers(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let listening = self.container.exec(&["ss", "-ltnH"]);
            // sockperf's IPv4 server beside the IPv6 ping-pong one.
            if [IPERF_PORT, SOCKPERF_PORT, ACCEPT_PORT]
                .iter()
                .all(|p| listening.contains(&format!(":{p} ")))
                && listening.contains(&format!("0.0.0.0:{SOCKPERF_PORT} "))
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("container servers not listening: {listening}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Installs this variant's translation of the three servers' ports,
    /// behind `fillers` other publications (host ports FILLER_BASE.., all
    /// to the iperf3 server) that a lookup has to get past. Returns how long
    /// the installation itself took (the tool's run, not the setup).
    pub fn install(&mut self, fillers: usize) -> anyhow::Result<Duration> {
        match self.kind {
            Kind::Direct => Ok(Duration::ZERO),
            Kind::Netagent | Kind::NetagentXdp | Kind::NetagentEndpoint => {
                self.install_netagent(fillers)
            }
            Kind::Iptables => {
                // IPv6 (the measured ports only; not timed): Docker's
                // ip6tables rules, which it writes since 27.0.
                self.install_file(
                    "ip6tables.rules",
                    &ip6tables_rules(&self.br0),
                    &["ip6tables-restore"],
                )?;
                self.install_file(
                    "iptables.rules",
                    &iptables_rules(fillers, &self.br0),
                    &["iptables-restore"],
                )
            }
            Kind::Nftables => self.install_file("nft.rules", &nft_rules(fillers), &["nft", "-f"]),
        }
    }

    fn install_file(&self, name: &str, rules: &str, cmd: &[&str]) -> anyhow::Result<Duration> {
        let path = self.work.path().join(name);
        std::fs::write(&path, rules)?;
        let mut args = vec!["ip", "netns", "exec", &self.host.name];
        args.extend_from_slice(cmd);
        let path_str = path.to_str().context("utf-8 path")?;
        let start = Instant::now();
        if cmd[0] == "nft" {
            args.push(path_str);
            run(&args)?;
        } else {
            let out = Command::new(args[0])
                .args(&args[1..])
                .stdin(std::fs::File::open(&path)?)
                .stderr(Stdio::piped())
                .output()?;
            if !out.status.success() {
                bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        Ok(start.elapsed())
    }

    /// A fresh daemon (state and pins from scratch), then one bulk publish
    /// of the measured ports and the fillers (for `netagent-endpoint`: the
    /// container attached with its measured ports as `-p`, then the
    /// fillers in one bulk publish). Returns the bulk publish's time.
    fn install_netagent(&mut self, fillers: usize) -> anyhow::Result<Duration> {
        self.daemon = None;
        self._bpffs = None;
        let _ = std::fs::remove_dir_all(self.work.path().join("state"));
        let bpffs = Bpffs::new();
        // Ports are checked against other processes but not held: the
        // rule sets compared hold nothing either, and 50,000 held sockets
        // need more open files than a hard limit may allow (20,000 on the
        // reference machine; see README "Host port reservations").
        let mut extra = vec!["--hold-ports=false"];
        if self.kind == Kind::NetagentXdp {
            extra.extend(["--xdp-mode", "native"]);
        }
        let daemon = Daemon::start_with(
            &self.host,
            self.work.path(),
            bpffs.path(),
            std::slice::from_ref(&self.h0),
            &extra,
        );
        let specs = if self.kind == Kind::NetagentEndpoint {
            daemon.ok(&[
                "network",
                "create",
                "bench",
                "--subnet",
                "10.90.2.0/24",
                "--ipv6",
                "--subnet",
                "fd90:2::/64",
            ]);
            let netns = format!("/run/netns/{}", self.container.name);
            let mut attach = vec![
                "container",
                "attach",
                "bench",
                "--netns",
                &netns,
                "--network",
                "bench",
                "--ip",
                CTR_IP,
                "--ip6",
                CTR_IP6,
            ];
            let published: Vec<String> = PUBLISHED
                .iter()
                .map(|(host, ctr)| format!("{host}:{ctr}"))
                .chain([format!("{}:{IPERF_PORT}/udp", PUBLISHED[0].0)])
                .collect();
            for p in &published {
                attach.extend(["-p", p.as_str()]);
            }
            daemon.ok(&attach);
            filler_specs(fillers)
        } else {
            netagent_specs(fillers)
        };
        let took = if specs.is_empty() {
            Duration::ZERO
        } else {
            let list = self.work.path().join("specs.txt");
            std::fs::write(&list, specs)?;
            let start = Instant::now();
            daemon.ok(&["publish", "--file", list.to_str().context("utf-8 path")?]);
            start.elapsed()
        };
        self.daemon = Some(daemon);
        self._bpffs = Some(bpffs);
        Ok(took)
    }

    /// Kernel memory of the daemon's maps (`bytes_memlock` of every pinned
    /// map, from bpftool): (total, the per-CPU maps' share per CPU), KiB.
    pub fn map_memory_kib(&self) -> anyhow::Result<(u64, u64)> {
        let dir = self
            ._bpffs
            .as_ref()
            .context("no daemon")?
            .path()
            .join("maps");
        let cpus = std::thread::available_parallelism().map_or(1, usize::from) as u64;
        let (mut total, mut per_cpu) = (0u64, 0u64);
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let path = entry?.path();
            let out = run(&[
                "bpftool",
                "-j",
                "map",
                "show",
                "pinned",
                path.to_str().context("utf-8")?,
            ])?;
            let map: serde_json::Value = serde_json::from_str(&out)?;
            let bytes = map["bytes_memlock"].as_u64().unwrap_or(0);
            total += bytes;
            if map["type"].as_str().is_some_and(|t| t.contains("percpu")) {
                per_cpu += bytes / cpus;
            }
        }
        Ok((total / 1024, per_cpu / 1024))
    }

    /// The daemon's resident memory in KiB.
    pub fn daemon_rss_kib(&self) -> anyhow::Result<u64> {
        let pid = self
            .daemon
            .as_ref()
            .and_then(Daemon::pid)
            .context("no daemon")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .context("VmRSS missing")
    }
}

/// Every (protocol, host port, container port) a variant installs, in rule
/// order: the fillers (host ports FILLER_BASE.., to the iperf3 server)
/// first, then the measured ones, so a rule list is walked to its end.
fn dnat_entries(fillers: usize) -> impl Iterator<Item = (&'static str, u16, u16)> {
    (0..fillers)
        .map(|i| ("tcp", FILLER_BASE + i as u16, IPERF_PORT))
        .chain(PUBLISHED.map(|(host, ctr)| ("tcp", host, ctr)))
        .chain([("udp", PUBLISHED[0].0, IPERF_PORT)])
}

/// The filler publications alone (the endpoint variant publishes its
/// measured ports with `-p`).
fn filler_specs(fillers: usize) -> String {
    (0..fillers)
        .map(|i| format!("{}->{CTR_IP}:{IPERF_PORT}/tcp\n", FILLER_BASE + i as u16))
        .collect()
}

fn netagent_specs(fillers: usize) -> String {
    dnat_entries(fillers)
        .map(|(proto, host, ctr)| format!("{host}->{CTR_IP}:{ctr}/{proto}\n"))
        .collect()
}

/// The nat table as Docker writes it (Docker 20-28 iptables driver): a
/// DOCKER chain reached for local destinations, one DNAT rule per port,
/// masquerade for the bridge subnet. Fillers come first, so the measured
/// rules are the last ones a new flow is matched against.
pub fn iptables_rules(fillers: usize, bridge: &str) -> String {
    let mut s = format!(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         :POSTROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n\
         -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n\
         -A POSTROUTING -s 10.90.2.0/24 ! -o {bridge} -j MASQUERADE\n",
    );
    for (proto, host, ctr) in dnat_entries(fillers) {
        let _ = writeln!(
            s,
            "-A DOCKER -d {HOST_IP}/32 ! -i {bridge} -p {proto} -m {proto} --dport {host} -j DNAT --to-destination {CTR_IP}:{ctr}"
        );
    }
    s.push_str("COMMIT\n");
    s
}

/// netavark's shape: an `inet netavark` table, a prerouting nat chain that
/// jumps to a host-port DNAT chain for local destinations, one rule per
/// port, masquerade for the subnet. Fillers first, as for iptables.
pub fn nft_rules(fillers: usize) -> String {
    let mut s = String::from(
        "flush ruleset\n\
         table inet netavark {\n\
         chain PREROUTING {\n\
         type nat hook prerouting priority dstnat; policy accept;\n\
         fib daddr type local jump NETAVARK-HOSTPORT-DNAT\n\
         }\n\
         chain POSTROUTING {\n\
         type nat hook postrouting priority srcnat; policy accept;\n\
         ip saddr 10.90.2.0/24 ip daddr != 10.90.2.0/24 masquerade\n\
         ip6 saddr fd90:2::/64 ip6 daddr != fd90:2::/64 masquerade\n\
         }\n\
         chain NETAVARK-HOSTPORT-DNAT {\n",
    );
    for (proto, host, ctr) in dnat_entries(fillers) {
        let _ = writeln!(
            s,
            "  ip daddr {HOST_IP} {proto} dport {host} dnat ip to {CTR_IP}:{ctr}"
        );
    }
    // IPv6: the measured ports (the IPv6 figures are taken at one
    // publication).
    for (proto, host, ctr) in dnat_entries(0) {
        let _ = writeln!(
            s,
            "  ip6 daddr {HOST_IP6} {proto} dport {host} dnat ip6 to [{CTR_IP6}]:{ctr}"
        );
    }
    s.push_str("}\n}\n");
    s
}

/// Docker's ip6tables nat table (the measured ports only: the IPv6
/// figures are taken at one publication).
pub fn ip6tables_rules(bridge: &str) -> String {
    let mut s = format!(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         :POSTROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n\
         -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n\
         -A POSTROUTING -s fd90:2::/64 ! -o {bridge} -j MASQUERADE\n",
    );
    for (proto, host, ctr) in dnat_entries(0) {
        let _ = writeln!(
            s,
            "-A DOCKER -d {HOST_IP6}/128 ! -i {bridge} -p {proto} -m {proto} --dport {host} -j DNAT --to-destination [{CTR_IP6}]:{ctr}"
        );
    }
    s.push_str("COMMIT\n");
    s
}

/// docker-proxy, extracted from Debian's docker.io package (no dockerd),
/// proxying 127.0.0.1:PROXY_PORTS in `host` to the container's servers.
pub struct DockerProxies {
    procs: Vec<Background>,
    /// Their stderr: docker-proxy says there why it stops proxying.
    log: tempfile::NamedTempFile,
}

impl DockerProxies {
    pub fn start(bin: &Path, host: &Netns) -> anyhow::Result<Self> {
        let mut procs = Vec::new();
        let log = tempfile::NamedTempFile::new()?;
        for (proxy_port, ctr_port) in
            PROXY_PORTS
                .iter()
                .zip([IPERF_PORT, SOCKPERF_PORT, ACCEPT_PORT])
        {
            // docker-proxy reports readiness ("0\n") on fd 3 and exits
            // without it. It runs with a high open-file limit, as under
            // dockerd (LimitNOFILE=infinity, here the hard limit): at 1024 it hits EMFILE under
            // a connection-rate test and stops proxying altogether.
            let ready = tempfile::NamedTempFile::new()?;
            let child = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "ulimit -n \"$(ulimit -Hn)\" && exec ip netns exec {} {} -proto tcp -host-ip 127.0.0.1 -host-port {proxy_port} \
                     -container-ip {CTR_IP} -container-port {ctr_port} 3>{}",
                    host.name,
                    bin.display(),
                    ready.path().display()
                ))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log.reopen()?)
                .spawn()?;
            procs.push(Background::from_child(child));
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::fs::read_to_string(ready.path())?.trim() != "0" {
                if Instant::now() > deadline {
                    bail!("docker-proxy on 127.0.0.1:{proxy_port} did not report ready");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(Self { procs, log })
    }

    /// The last line docker-proxy wrote, if any.
    pub fn last_words(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.log.path()).ok()?;
        text.lines().last().map(str::to_owned)
    }

    /// Descriptors the proxies hold open right now (all of them together).
    pub fn open_fds(&self) -> usize {
        self.procs
            .iter()
            .filter_map(|p| std::fs::read_dir(format!("/proc/{}/fd", p.pid())).ok())
            .map(Iterator::count)
            .sum()
    }
}

/// Where the docker-proxy binary is unpacked by scripts/setup.sh --bench.
pub fn docker_proxy_bin() -> PathBuf {
    std::env::var_os("DOCKER_PROXY").map_or_else(
        || PathBuf::from("/var/cache/netagent-bench/docker-proxy"),
        PathBuf::from,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_sets_put_the_measured_rules_last_after_every_filler() {
        for (rules, marker) in [
            (iptables_rules(3, "br0"), "-j DNAT"),
            (nft_rules(3), "dnat ip to"),
        ] {
            let dnat: Vec<&str> = rules.lines().filter(|l| l.contains(marker)).collect();
            assert_eq!(dnat.len(), 3 + PUBLISHED.len() + 1, "{rules}");
            for (line, port) in dnat.iter().zip(FILLER_BASE..FILLER_BASE + 3) {
                assert!(line.contains(&format!("dport {port}")), "{line}");
            }
            assert!(
                dnat[3].contains("dport 8201"),
                "measured rules come last: {rules}"
            );
            assert!(dnat.last().unwrap().contains("udp"), "{rules}");
        }
        assert!(iptables_rules(0, "br0").contains("! -i br0"));
    }

    #[test]
    fn netagent_specs_parse_and_match_the_rule_sets() {
        let specs = netagent_specs(5);
        let parsed: Vec<netagent::spec::PortSpec> = specs
            .lines()
            .map(|l| l.parse().unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect();
        assert_eq!(parsed.len(), 5 + PUBLISHED.len() + 1);
        assert!(parsed.iter().all(|p| p.container_ip.to_string() == CTR_IP));
    }
}
