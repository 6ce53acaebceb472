//! The world of the network tests: a host namespace where the daemon runs,
//! an upstream namespace standing for the outside world (reachable only
//! through the host's served interface, with no route back to any
//! container subnet, so only masqueraded traffic can return), and
//! container namespaces the tests attach.
//!
//! ```text
//!  containers ── na-br*/na-v* ── host 10.66.0.1/24 [up] ── [dn] 10.66.0.2/24 upstream
//! ```
//!
//! `up` and `dn` have tx checksum offload off, so every checksum crossing
//! them is complete and verified by the receiver.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::PathBuf,
    time::Duration,
};

use serde_json::Value;

use crate::netns::{Bpffs, Daemon, Netns, require_root, unique_prefix, veth_pair};

pub const HOST_UP_IP: &str = "10.66.0.1";
pub const UPSTREAM_IP: &str = "10.66.0.2";

/// One test's world. Fields drop in order: daemon, pins, files, then the
/// namespaces (deleting a container namespace deletes its veth peer).
pub struct World {
    pub daemon: Daemon,
    _bpffs: Bpffs,
    pub work: tempfile::TempDir,
    pub prefix: String,
    pub upstream: Netns,
    pub host: Netns,
    containers: Vec<Netns>,
}

impl World {
    /// A world whose uplink (`up`/`dn`) has tx checksum offload off, so
    /// every checksum crossing it is complete and verified by its receiver.
    pub fn new() -> Self {
        Self::build(false)
    }

    /// A world whose uplink keeps the kernel's default offloads (TSO, GSO,
    /// checksum offload): senders there and in containers send GSO
    /// super-packets and CHECKSUM_PARTIAL skbs, as real local senders do.
    pub fn with_default_offloads() -> Self {
        Self::build(true)
    }

    fn build(offloads: bool) -> Self {
        require_root();
        let prefix = unique_prefix();
        let host = Netns::new(format!("{prefix}h"));
        let upstream = Netns::new(format!("{prefix}u"));
        let (up, dn) = (format!("{prefix}up"), format!("{prefix}dn"));
        veth_pair(&host, &up, &upstream, &dn, None);
        host.ip(&["addr", "add", &format!("{HOST_UP_IP}/24"), "dev", &up]);
        host.ip(&["link", "set", &up, "up"]);
        upstream.ip(&["addr", "add", &format!("{UPSTREAM_IP}/24"), "dev", &dn]);
        upstream.ip(&["link", "set", &dn, "up"]);
        // Checksums leave both ends complete (no offload): the upstream
        // verifies what masquerade wrote, and containers verify what DNAT
        // wrote, instead of trusting a CHECKSUM_PARTIAL skb over veth.
        if !offloads {
            crate::netns::Topology::set_tx_csum(&host, &up, false);
            crate::netns::Topology::set_tx_csum(&upstream, &dn, false);
        }
        let bpffs = Bpffs::new();
        let work = tempfile::Builder::new()
            .prefix("netagent-world")
            .tempdir()
            .expect("tempdir");
        let daemon = Daemon::start(&host, work.path(), bpffs.path(), &[up]);
        Self {
            daemon,
            _bpffs: bpffs,
            work,
            prefix,
            upstream,
            host,
            containers: Vec::new(),
        }
    }

    /// A fresh namespace for a container called `name`, owned by the world.
    pub fn netns(&mut self, name: &str) -> &Netns {
        let ns = Netns::new(format!("{}{name}", self.prefix));
        self.containers.push(ns);
        self.containers.last().expect("just pushed")
    }

    /// The daemon's bpffs directory (its pins).
    pub fn bpffs(&self) -> &std::path::Path {
        self._bpffs.path()
    }

    /// The namespace made for `name`.
    pub fn ns(&self, name: &str) -> &Netns {
        let full = format!("{}{name}", self.prefix);
        self.containers
            .iter()
            .find(|n| n.name == full)
            .unwrap_or_else(|| panic!("no namespace for {name}"))
    }

    pub fn netns_path(&self, name: &str) -> PathBuf {
        format!("/run/netns/{}{name}", self.prefix).into()
    }

    /// Makes a namespace for `name` and attaches it with `args` (network,
    /// ports...); returns the container's inspect JSON.
    pub fn attach(&mut self, name: &str, args: &[&str]) -> Value {
        self.netns(name);
        self.attach_again(name, args)
    }

    /// Attaches `name` in the namespace made for it before (again, after
    /// a detach: the container "comes back"); returns its inspect JSON.
    pub fn attach_again(&self, name: &str, args: &[&str]) -> Value {
        let path = self.netns_path(name);
        let mut full = vec![
            "container",
            "attach",
            name,
            "--netns",
            path.to_str().expect("utf-8"),
        ];
        full.extend_from_slice(args);
        self.daemon.ok(&full);
        self.inspect(name)
    }

    pub fn inspect(&self, name: &str) -> Value {
        let out = self.daemon.ok(&["--json", "container", "inspect", name]);
        serde_json::from_str::<Value>(&out).expect("inspect JSON")
    }

    /// The container's endpoint on `network`, from its inspect JSON.
    pub fn endpoint(&self, name: &str, network: &str) -> Value {
        let info = self.inspect(name);
        info["endpoints"]
            .as_array()
            .expect("endpoints")
            .iter()
            .find(|e| e["network"] == network)
            .unwrap_or_else(|| panic!("{name} is not on {network}: {info}"))
            .clone()
    }

    /// The container's address on `network`.
    pub fn ip(&self, name: &str, network: &str) -> Ipv4Addr {
        let ep = self.endpoint(name, network);
        ep["ip"].as_str().expect("ip").parse().expect("IPv4")
    }

    /// The host-side name of the served uplink (`up`).
    pub fn up(&self) -> String {
        format!("{}up", self.prefix)
    }

    /// A container's MAC on `network` and its gateway's (the bridge's):
    /// what a raw frame from the container carries.
    pub fn macs(&self, name: &str, network: &str) -> ([u8; 6], [u8; 6]) {
        let ep = self.endpoint(name, network);
        let net: Value =
            serde_json::from_str(&self.daemon.ok(&["--json", "network", "inspect", network]))
                .expect("network JSON");
        let bridge = net["config"]["bridge"].as_str().expect("bridge").to_owned();
        let bridge_mac = self
            .host
            .ip(&["link", "show", &bridge])
            .split_whitespace()
            .skip_while(|t| *t != "link/ether")
            .nth(1)
            .expect("bridge MAC")
            .to_owned();
        (
            parse_mac(ep["mac"].as_str().expect("mac")),
            parse_mac(&bridge_mac),
        )
    }

    /// Counts, in the upstream namespace, every IPv4 packet arriving with a
    /// source other than the host's masquerade address (the only source
    /// the outside may see of netagent's containers); see [`Leaks::count`].
    pub fn watch_leaks(&self) -> Leaks<'_> {
        let table = self.upstream_rule(
            "leak",
            "pre",
            "{ type filter hook prerouting priority -300; }",
            &["ip", "saddr", "!=", HOST_UP_IP, "counter"],
        );
        Leaks { w: self, table }
    }

    /// Makes an nft table `<prefix><name>` in the upstream namespace with
    /// one chain (`chain`, of `spec`) holding one rule; returns the
    /// table's name (deleted with the namespace).
    pub fn upstream_rule(&self, name: &str, chain: &str, spec: &str, rule: &[&str]) -> String {
        let table = format!("{}{name}", self.prefix);
        self.upstream.exec(&["nft", "add", "table", "ip", &table]);
        self.upstream
            .exec(&["nft", "add", "chain", "ip", &table, chain, spec]);
        let mut args = vec!["nft", "add", "rule", "ip", &table, chain];
        args.extend_from_slice(rule);
        self.upstream.exec(&args);
        table
    }

    /// A datapath event counter, from `netagent stats --json`.
    pub fn event(&self, name: &str) -> u64 {
        self.daemon.event(name)
    }

    /// Sets Docker's FORWARD policy DROP in the host namespace, for
    /// `iptables` and `ip6tables`.
    pub fn forward_drop(&self) {
        for tool in ["iptables", "ip6tables"] {
            self.host.exec(&[tool, "-P", "FORWARD", "DROP"]);
        }
    }

    /// The host namespace's FORWARD policy DROP counter of `tool`
    /// (`iptables` or `ip6tables`): packets that took the stack's
    /// forwarding path and hit Docker's policy.
    pub fn forward_drops(&self, tool: &str) -> u64 {
        let out = self.host.exec(&[tool, "-L", "FORWARD", "-v", "-x", "-n"]);
        let first = out.lines().next().unwrap_or_default();
        // "Chain FORWARD (policy DROP 12 packets, 3456 bytes)"
        first
            .split_whitespace()
            .nth(4)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected {tool} output: {first}"))
    }

    /// Interfaces of the host namespace whose names start with `prefix`.
    pub fn host_links(&self, prefix: &str) -> Vec<String> {
        self.host
            .ip(&["-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_owned())
            .filter(|n| n.starts_with(prefix))
            .collect()
    }
}

/// The upstream's counter of packets from unexpected sources.
pub struct Leaks<'a> {
    w: &'a World,
    table: String,
}

impl Leaks<'_> {
    /// Packets seen so far.
    pub fn count(&self) -> u64 {
        let out = self
            .w
            .upstream
            .exec(&["nft", "list", "chain", "ip", &self.table, "pre"]);
        out.split_whitespace()
            .skip_while(|t| *t != "packets")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no counter in {out}"))
    }
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).expect("hex"))
        .collect();
    v.try_into().expect("6 bytes")
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether a TCP connection from `ns` to `to` is established within
/// `timeout` (a drop shows as a timeout; a refusal counts as reachable).
pub fn tcp_reaches(ns: &Netns, to: SocketAddr, timeout: Duration) -> bool {
    ns.enter(move || match TcpStream::connect_timeout(&to, timeout) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
    })
}

/// Whether one ping from `ns` to `to` is answered within a second.
pub fn pings(ns: &Netns, to: Ipv4Addr) -> bool {
    std::process::Command::new("ip")
        .args(["netns", "exec", &ns.name, "ping", "-c1", "-W1", "-q"])
        .arg(to.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
