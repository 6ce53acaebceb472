//! Invoking CNI plugins as a runtime does: the command and attachment in
//! `CNI_*` variables, the network configuration on stdin, the result (or
//! the spec's error object) on stdout. Plugins run in the world's host
//! namespace, where the daemon is, so what a reference plugin makes on
//! "the host" (a bridge, iptables rules) stays in the test's namespace.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use serde_json::Value;

/// Where Debian's containernetworking-plugins installs the reference
/// plugins (host-local, bridge, portmap).
pub const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

/// The `netagent-cni` binary under test: `NETAGENT_CNI_BIN`, or the one
/// cargo built next to this test binary (`./x test` builds it).
pub fn cni_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("NETAGENT_CNI_BIN") {
        return path.into();
    }
    let bin = crate::netns::netagent_bin().with_file_name("netagent-cni");
    assert!(
        bin.exists(),
        "{} not found: build it first (`cargo build --bin netagent-cni`, done by `./x test`) or set NETAGENT_CNI_BIN",
        bin.display()
    );
    bin
}

/// A directory for `CNI_PATH` holding `netagent-cni` and the reference
/// plugins, as a runtime's plugin directory does.
pub struct PluginDir {
    dir: tempfile::TempDir,
}

impl PluginDir {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("netagent-cni-path")
            .tempdir()
            .expect("tempdir");
        let bin = std::fs::canonicalize(cni_bin()).expect("netagent-cni's path");
        std::os::unix::fs::symlink(bin, dir.path().join("netagent-cni"))
            .expect("linking netagent-cni");
        for entry in std::fs::read_dir(REFERENCE_PLUGINS).unwrap_or_else(|e| {
            panic!("{REFERENCE_PLUGINS}: {e} (apt-get install containernetworking-plugins; scripts/setup.sh does)")
        }) {
            let path = entry.expect("an entry").path();
            let link = dir.path().join(path.file_name().expect("a name"));
            std::os::unix::fs::symlink(&path, link).expect("linking a reference plugin");
        }
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for PluginDir {
    fn default() -> Self {
        Self::new()
    }
}

/// One plugin invocation.
#[derive(Clone, Debug)]
pub struct Invocation<'a> {
    /// The namespace the plugin runs in (the world's host namespace).
    pub host_ns: &'a str,
    pub plugins: &'a Path,
    pub command: &'a str,
    pub container_id: Option<&'a str>,
    pub netns: Option<&'a Path>,
    pub ifname: Option<&'a str>,
    /// `CNI_ARGS`.
    pub args: &'a str,
}

/// What a plugin answered.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub success: bool,
    /// Its stdout as JSON (`Null` when empty).
    pub output: Value,
    pub stderr: String,
}

impl Outcome {
    /// The error object's code; panics on success.
    pub fn code(&self) -> u64 {
        assert!(!self.success, "expected an error, got {}", self.output);
        self.output["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("no code in {} ({})", self.output, self.stderr))
    }

    /// The error object's details (or message).
    pub fn details(&self) -> String {
        self.output["details"]
            .as_str()
            .or_else(|| self.output["msg"].as_str())
            .unwrap_or_default()
            .to_owned()
    }
}

impl Invocation<'_> {
    /// Runs plugin `plugin` (a file in the plugin directory) with
    /// `config` on stdin.
    pub fn run(&self, plugin: &str, config: &[u8]) -> Outcome {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.host_ns])
            .arg(self.plugins.join(plugin))
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", self.command)
            .env("CNI_PATH", self.plugins)
            .env("CNI_ARGS", self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(id) = self.container_id {
            cmd.env("CNI_CONTAINERID", id);
        }
        if let Some(netns) = self.netns {
            cmd.env("CNI_NETNS", netns);
        }
        if let Some(ifname) = self.ifname {
            cmd.env("CNI_IFNAME", ifname);
        }
        let mut child = cmd.spawn().expect("spawning the plugin");
        // A plugin need not read its stdin (none does for VERSION, nor
        // after an environment error) and may be gone before the write:
        // its output and status are what the test checks.
        if let Err(e) = child.stdin.take().expect("stdin").write_all(config) {
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe,
                "writing the configuration: {e}"
            );
        }
        let out = child.wait_with_output().expect("waiting for the plugin");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let output = if stdout.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&stdout)
                .unwrap_or_else(|e| panic!("{plugin} printed {stdout:?}, not JSON: {e}"))
        };
        Outcome {
            success: out.status.success(),
            output,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}
