//! CNI ADD and DEL latency through libcni, the library containerd, CRI-O
//! and Podman's CNI backend use (`bench/libcni`, built by `./x bench`):
//! netagent-cni against the reference chain Debian ships (bridge +
//! host-local + portmap), each ADDing N containers one after another
//! (with a published port each), CHECKing them, then DELing them; rounds
//! interleaved. CHECK's failures are reported, not fatal: the reference
//! chain's is known to fail on some kernels (the issue's motivation).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use netagent_tests::{cni::PluginDir, netns::Netns};
use serde::{Deserialize, Serialize};

/// Namespaces and interfaces of this section start with this (within the
/// benchmark's own prefix, so leftovers are found).
pub const PREFIX: &str = "nabk";

/// The variants' names in the report.
pub const NETAGENT: &str = "netagent-cni";
pub const REFERENCE: &str = "bridge+host-local+portmap";

/// One operation's latency.
#[derive(Clone, Debug, Serialize)]
pub struct CniSample {
    pub variant: String,
    /// `ADD` or `DEL`.
    pub op: String,
    pub ms: f64,
}

/// What `na-libcni` prints.
#[derive(Deserialize)]
struct ClientReport {
    add_ms: Vec<f64>,
    del_ms: Vec<f64>,
    check_errors: Option<Vec<String>>,
}

/// A variant: the namespace its plugins run in (the "host") and its
/// configuration list.
pub struct Variant {
    pub name: &'static str,
    pub host_ns: String,
    pub conf: PathBuf,
    /// Host ports from here on, one per container: below the benchmark
    /// hosts' ephemeral range (20000-65000), where the traffic figures'
    /// connections leave TIME_WAIT sockets that a bind would clash with.
    pub port_base: u16,
}

/// The section's shared pieces: the plugin directory, libcni's cache, the
/// reference chain's host namespace and files.
pub struct CniBench {
    plugins: PluginDir,
    work: tempfile::TempDir,
    /// The reference chain's "host": its bridge and iptables rules live
    /// here.
    pub reference_host: Netns,
    pub n: usize,
}

/// The `na-libcni` binary next to `netagent` (`./x bench` builds it).
fn client_bin() -> PathBuf {
    netagent_tests::netns::netagent_bin().with_file_name("na-libcni")
}

impl CniBench {
    pub fn new(n: usize) -> anyhow::Result<Self> {
        if !client_bin().exists() {
            bail!(
                "{} not found: `./x bench` builds it from bench/libcni",
                client_bin().display()
            );
        }
        let work = tempfile::Builder::new()
            .prefix("netagent-bench-cni")
            .tempdir()?;
        let reference_host = Netns::new(format!("{PREFIX}r"));
        reference_host.ip(&["link", "set", "lo", "up"]);
        Ok(Self {
            plugins: PluginDir::new(),
            work,
            reference_host,
            n,
        })
    }

    /// netagent-cni as the main plugin, through the daemon at `socket`,
    /// whose namespace is `host_ns`.
    pub fn netagent(&self, host_ns: &str, socket: &Path) -> anyhow::Result<Variant> {
        self.netagent_variant(host_ns, socket, "nabcni", "10.200.0.0/24", 18000)
    }

    /// A second network of each kind, for the isolation check.
    pub fn netagent_second(&self, host_ns: &str, socket: &Path) -> anyhow::Result<Variant> {
        self.netagent_variant(host_ns, socket, "nabcni2", "10.202.0.0/24", 18500)
    }

    /// netagent-cni's list for network `name` on `subnet`.
    fn netagent_variant(
        &self,
        host_ns: &str,
        socket: &Path,
        name: &str,
        subnet: &str,
        port_base: u16,
    ) -> anyhow::Result<Variant> {
        let list = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": name,
            "plugins": [{
                "type": "netagent-cni",
                "socket": socket,
                "subnet": subnet,
                "capabilities": {"portMappings": true},
            }],
        });
        Ok(Variant {
            name: NETAGENT,
            host_ns: host_ns.to_owned(),
            conf: self.write(&format!("{name}.conflist"), &list)?,
            port_base,
        })
    }

    pub fn reference_second(&self) -> anyhow::Result<Variant> {
        Ok(Variant {
            conf: self.write(
                "reference2.conflist",
                &self.reference_list("nabref2", "rb2", "10.203.0.0/24"),
            )?,
            port_base: 19500,
            ..self.reference()?
        })
    }

    fn reference_list(&self, name: &str, bridge: &str, subnet: &str) -> serde_json::Value {
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": format!("{PREFIX}{bridge}"),
                    "isGateway": true,
                    "isDefaultGateway": true,
                    "ipMasq": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": subnet}]],
                        "dataDir": self.work.path().join("host-local"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
            ],
        })
    }

    /// The reference chain, in its own host namespace.
    pub fn reference(&self) -> anyhow::Result<Variant> {
        let list = self.reference_list("nabref", "rbr", "10.201.0.0/24");
        Ok(Variant {
            name: REFERENCE,
            host_ns: self.reference_host.name.clone(),
            conf: self.write("reference.conflist", &list)?,
            port_base: 19000,
        })
    }

    fn write(&self, file: &str, list: &serde_json::Value) -> anyhow::Result<PathBuf> {
        let path = self.work.path().join(file);
        std::fs::write(&path, list.to_string())?;
        Ok(path)
    }

    /// One round of `variant`: N fresh container namespaces, ADD each,
    /// CHECK each, DEL each. Returns the samples and CHECK's errors.
    pub fn round(&self, variant: &Variant) -> anyhow::Result<(Vec<CniSample>, Vec<String>)> {
        let tag = &variant.name[..1];
        let namespaces: Vec<Netns> = (0..self.n)
            .map(|i| Netns::new(format!("{PREFIX}{tag}{i}")))
            .collect();
        let report = self.client(variant, "add,check,del", self.n, tag, "na-bench-");
        drop(namespaces);
        let report = report?;
        let sample = |op: &str, ms: f64| CniSample {
            variant: variant.name.into(),
            op: op.into(),
            ms,
        };
        let mut samples: Vec<CniSample> =
            report.add_ms.iter().map(|&ms| sample("ADD", ms)).collect();
        samples.extend(report.del_ms.iter().map(|&ms| sample("DEL", ms)));
        Ok((samples, report.check_errors.unwrap_or_default()))
    }

    /// Runs `na-libcni` in the variant's host namespace: `ops` on `n`
    /// containers `ID0..` in namespaces `PREFIX{tag}0..`.
    fn client(
        &self,
        variant: &Variant,
        ops: &str,
        n: usize,
        tag: &str,
        id: &str,
    ) -> anyhow::Result<ClientReport> {
        let cache = self
            .work
            .path()
            .join(format!("cache-{}", &variant.name[..1]));
        let out = Command::new("ip")
            .args(["netns", "exec", &variant.host_ns])
            .arg(client_bin())
            .arg("-conf")
            .arg(&variant.conf)
            .arg("-path")
            .arg(self.plugins.path())
            .arg("-cache")
            .arg(&cache)
            .arg("-netns")
            .arg(format!("/run/netns/{PREFIX}{tag}"))
            .args(["-n", &n.to_string()])
            .args(["-id", id])
            .args(["-port-base", &variant.port_base.to_string()])
            .args(["-ops", ops])
            .output()
            .context("running na-libcni")?;
        if !out.status.success() {
            bail!(
                "{} {ops}: {}",
                variant.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        serde_json::from_slice(&out.stdout).context("na-libcni's report")
    }

    /// The issue's checks on one variant, with the comparison in mind:
    /// one container on its network (published port 80/tcp and 53/udp)
    /// and one on `second` (another network of the same kind). `join`
    /// puts this process where the variant's host-local clients must be
    /// (netagent: the daemon's cgroup) while it probes 127.0.0.1.
    pub fn checks<J>(
        &self,
        variant: &Variant,
        second: &Variant,
        host: &Netns,
        join: impl Fn() -> J,
    ) -> anyhow::Result<CniChecks> {
        let tag = format!("{}c", &variant.name[..1]);
        let tag2 = format!("{}d", &variant.name[..1]);
        let c1 = Netns::new(format!("{PREFIX}{tag}0"));
        let c2 = Netns::new(format!("{PREFIX}{tag2}0"));
        // What a network keeps once it exists (a bridge, a plugin's
        // chains) is not a container's: one ADD and DEL on the second
        // network first (the first had the timed rounds), then the
        // snapshot DEL must come back to.
        self.client(second, "add,del", 1, &tag2, "na-check-warm")?;
        let before = host_snapshot(host);
        let added = self.client(variant, "add", 1, &tag, "na-check-a");
        let added2 = self.client(second, "add", 1, &tag2, "na-check-b");
        let mut checks = CniChecks {
            variant: variant.name.into(),
            ..CniChecks::default()
        };
        if added.is_ok() && added2.is_ok() {
            let addr = c1.ip(&["-o", "-4", "addr", "show", "dev", "eth0"]);
            let route = c1.ip(&["route", "show", "default"]);
            checks.address_and_route = addr.contains("inet ") && route.contains("default via");
            let ip: Option<std::net::Ipv4Addr> = addr
                .split_whitespace()
                .nth(3)
                .and_then(|a| a.split('/').next())
                .and_then(|a| a.parse().ok());
            let port = variant.port_base;
            let _tcp = netagent_tests::traffic::tcp_echo(&c1, 80);
            let _udp = netagent_tests::traffic::udp_echo(&c1, 53);
            let _seven = netagent_tests::traffic::tcp_echo(&c1, 7);
            {
                let _joined = join();
                checks.published_tcp =
                    netagent_tests::traffic::tcp_connect(host, &format!("127.0.0.1:{port}"))
                        .and_then(|mut s| netagent_tests::traffic::tcp_roundtrip(&mut s, "x"))
                        .is_ok();
                let udp = netagent_tests::traffic::udp_socket(host);
                udp.set_read_timeout(Some(std::time::Duration::from_secs(1)))?;
                let mut buf = [0u8; 64];
                checks.published_udp = udp.send_to(b"q", ("127.0.0.1", port)).is_ok()
                    && udp.recv_from(&mut buf).is_ok();
            }
            checks.isolated = ip.is_some_and(|ip| {
                !netagent_tests::world::tcp_reaches(
                    &c2,
                    std::net::SocketAddr::from((ip, 7)),
                    std::time::Duration::from_millis(500),
                )
            });
            checks.check = self
                .client(variant, "check", 1, &tag, "na-check-a")
                .is_ok_and(|r| r.check_errors.unwrap_or_default().is_empty());
        }
        let deleted = self.client(variant, "del", 1, &tag, "na-check-a");
        let deleted2 = self.client(second, "del", 1, &tag2, "na-check-b");
        drop((c1, c2));
        checks.del_clean = deleted.is_ok() && deleted2.is_ok() && host_snapshot(host) == before;
        checks.status_and_gc = self.speaks_1_1(&variant.conf)?;
        added?;
        added2?;
        Ok(checks)
    }

    /// Whether every plugin of the list at `conf` speaks CNI 1.1.0 (STATUS
    /// and GC): VERSION of each.
    fn speaks_1_1(&self, conf: &Path) -> anyhow::Result<bool> {
        let list: serde_json::Value = serde_json::from_slice(&std::fs::read(conf)?)?;
        let plugins = list["plugins"].as_array().context("plugins")?;
        for plugin in plugins {
            let name = plugin["type"].as_str().context("type")?;
            let mut child = Command::new(self.plugins.path().join(name))
                .env("CNI_COMMAND", "VERSION")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()?;
            if let Some(mut stdin) = child.stdin.take() {
                use std::io::Write as _;
                // The Go skel never reads stdin for VERSION: EPIPE when
                // it has already answered.
                match stdin.write_all(br#"{"cniVersion":"1.0.0"}"#) {
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                    other => other?,
                }
            }
            let out = child.wait_with_output()?;
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let spoken = v["supportedVersions"]
                .as_array()
                .is_some_and(|l| l.iter().any(|x| x == "1.1.0"));
            if !spoken {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// What a host namespace holds that a container's attachment may leave
/// behind: interfaces, and firewall rules (counters left out).
fn host_snapshot(host: &Netns) -> (Vec<String>, Vec<String>) {
    let links: Vec<String> = host
        .ip(&["-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or_default().to_owned())
        .collect();
    let (_, rules, _) = host.try_exec(&["iptables-save"]);
    let rules = rules
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with(':'))
        .map(str::to_owned)
        .collect();
    (links, rules)
}

/// The issue's checks on one CNI variant (`CniBench::checks`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct CniChecks {
    pub variant: String,
    /// The container has an address and a default route.
    pub address_and_route: bool,
    /// Its published port answers over TCP from the host (127.0.0.1).
    pub published_tcp: bool,
    /// And over UDP.
    pub published_udp: bool,
    /// A container of another network of the same kind cannot reach it.
    pub isolated: bool,
    /// CHECK passes.
    pub check: bool,
    /// Every plugin of the list speaks 1.1.0 (STATUS and GC).
    pub status_and_gc: bool,
    /// DEL leaves no interface or firewall rule of the containers behind.
    pub del_clean: bool,
}
