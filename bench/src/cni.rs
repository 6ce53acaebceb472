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
        let list = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "nabcni",
            "plugins": [{
                "type": "netagent-cni",
                "socket": socket,
                "subnet": "10.200.0.0/24",
                "capabilities": {"portMappings": true},
            }],
        });
        Ok(Variant {
            name: NETAGENT,
            host_ns: host_ns.to_owned(),
            conf: self.write("netagent.conflist", &list)?,
            port_base: 18000,
        })
    }

    /// The reference chain, in its own host namespace.
    pub fn reference(&self) -> anyhow::Result<Variant> {
        let list = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "nabref",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": format!("{PREFIX}rbr"),
                    "isGateway": true,
                    "isDefaultGateway": true,
                    "ipMasq": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": "10.201.0.0/24"}]],
                        "dataDir": self.work.path().join("host-local"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
            ],
        });
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
        let cache = self.work.path().join(format!("cache-{tag}"));
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
            .args(["-n", &self.n.to_string()])
            .args(["-port-base", &variant.port_base.to_string()])
            .arg("-check")
            .output()
            .context("running na-libcni")?;
        drop(namespaces);
        if !out.status.success() {
            bail!(
                "{}: {}",
                variant.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let report: ClientReport =
            serde_json::from_slice(&out.stdout).context("na-libcni's report")?;
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
}
