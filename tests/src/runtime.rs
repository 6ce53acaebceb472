//! Real container runtimes for the CNI tests: a containerd of the test's
//! own (its root, state and socket in a temporary directory, the CRI
//! plugin off) driven with `ctr run --cni`, and Podman with its CNI
//! backend, both running containers from a busybox rootfs built from
//! Debian's busybox-static.
//!
//! Neither runtime may see the host's CNI configuration or leave state in
//! the host's directories. `ctr` takes no CNI options: it runs in a
//! private mount namespace where `/etc/cni/net.d` is the test's
//! configuration directory, `/opt/cni/bin` holds `netagent-cni` and the
//! reference plugins, and `/var/lib/cni` (libcni's result cache) is a
//! tmpfs. Podman takes its directories from a containers.conf of the
//! test's own; it cannot run in a private mount namespace (the
//! namespace it bind-mounts under /run/netns must be visible to the
//! daemon), so what libcni caches under /var/lib/cni is removed after it
//! (the directory too, if the test made it).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::netns::{outcome, wait_until};

/// A rootfs with busybox and the applets the tests use.
pub fn busybox_rootfs(dir: &Path) {
    let bin = dir.join("bin");
    for sub in ["bin", "etc", "proc", "sys", "dev", "tmp", "run"] {
        std::fs::create_dir_all(dir.join(sub)).expect("rootfs dirs");
    }
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "/bin/busybox is missing: apt-get install busybox-static (scripts/setup.sh does)"
    );
    std::fs::copy(busybox, bin.join("busybox")).expect("copying busybox");
    for applet in [
        "sh", "ip", "nc", "sleep", "cat", "echo", "ping", "hostname", "nslookup",
    ] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("applet link");
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").expect("passwd");
    std::fs::write(dir.join("etc/group"), "root:x:0:\n").expect("group");
}

/// The shell lines that give the commands after them the private view of
/// CNI directories (see the module doc): `conf` as `/etc/cni/net.d`,
/// `plugins` as `/opt/cni/bin`.
pub fn private_cni_mounts(conf: &Path, plugins: &Path) -> String {
    format!(
        "set -e
mount --make-rprivate /
test -d /etc/cni/net.d || {{ echo '/etc/cni/net.d is missing (apt-get install podman makes it)' >&2; exit 1; }}
mount --bind {conf} /etc/cni/net.d
mount -t tmpfs netagent-test-opt /opt
mkdir -p /opt/cni
ln -s {plugins} /opt/cni/bin
if [ -d /var/lib/cni ]; then
    mount -t tmpfs netagent-test-cni /var/lib/cni
else
    mount -t tmpfs netagent-test-varlib /var/lib
    mkdir /var/lib/cni
fi
",
        conf = conf.display(),
        plugins = plugins.display(),
    )
}

/// Runs `script` (sh) in a private mount namespace prepared by
/// [`private_cni_mounts`]; (success, stdout, stderr).
pub fn run_private(conf: &Path, plugins: &Path, script: &str) -> (bool, String, String) {
    let full = format!("{}{script}", private_cni_mounts(conf, plugins));
    outcome(
        Command::new("unshare")
            .args(["--mount", "--", "sh", "-c", &full])
            .output()
            .expect("spawning unshare"),
    )
}

/// As [`run_private`], in the background.
pub fn spawn_private(conf: &Path, plugins: &Path, script: &str) -> Child {
    let full = format!("{}{script}", private_cni_mounts(conf, plugins));
    Command::new("unshare")
        .args(["--mount", "--", "sh", "-c", &full])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning unshare")
}

/// A containerd of the test's own; stopped (and its directories removed)
/// on drop.
pub struct Containerd {
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Containerd {
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("netagent-test-containerd")
            .tempdir()
            .expect("tempdir");
        let root = dir.path();
        let config = root.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2
root = \"{0}/root\"
state = \"{0}/state\"
disabled_plugins = [\"io.containerd.grpc.v1.cri\"]
[grpc]
  address = \"{0}/containerd.sock\"
[ttrpc]
  address = \"{0}/containerd.sock.ttrpc\"
",
                root.display()
            ),
        )
        .expect("containerd config");
        let log = std::fs::File::create(root.join("containerd.log")).expect("log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting containerd (apt-get install containerd; scripts/setup.sh does)");
        let this = Self { dir, child };
        let socket = this.socket();
        assert!(
            wait_until(Duration::from_secs(20), || {
                std::os::unix::net::UnixStream::connect(&socket).is_ok()
            }),
            "containerd did not come up: {}",
            this.log()
        );
        this
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// `ctr --address SOCKET ARGS` as a shell word list.
    pub fn ctr(&self, args: &str) -> String {
        format!("ctr --address {} {args}", self.socket().display())
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Tasks first: their shims would outlive the daemon otherwise.
        let list = Command::new("ctr")
            .arg("--address")
            .arg(self.socket())
            .args(["task", "ls", "-q"])
            .output();
        if let Ok(out) = list {
            // Killed and deleted (`--force`), then their containers: a
            // test that panicked before its `ctr run --rm` ended would
            // leave a stopped task in runc's shared root
            // (/run/containerd/runc/default), and the next run's task of
            // the same ID would not start.
            let ctr = |args: &[&str]| {
                let _ = Command::new("ctr")
                    .arg("--address")
                    .arg(self.socket())
                    .args(args)
                    .output();
            };
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                ctr(&["task", "kill", "-s", "SIGKILL", id]);
                ctr(&["task", "delete", "--force", id]);
                ctr(&["container", "delete", id]);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Podman with its CNI backend and every directory the test's own:
/// storage (vfs), run root, network configurations, plugins, through a
/// containers.conf of its own. Commands run in a private mount namespace
/// (see the module doc).
pub struct Podman {
    pub dir: tempfile::TempDir,
    /// The host directories Podman writes whatever its configuration
    /// says, which did not exist before (removed on drop): libcni's
    /// cache, and containers/image's blob-info cache.
    made: Vec<&'static str>,
}

impl Podman {
    /// `conf_dir`: the CNI configuration directory; `plugins`: the plugin
    /// directory.
    pub fn new(conf_dir: &Path, plugins: &Path) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("netagent-test-podman")
            .tempdir()
            .expect("tempdir");
        std::fs::write(
            dir.path().join("containers.conf"),
            format!(
                "[engine]
cgroup_manager = \"cgroupfs\"
events_logger = \"file\"
events_logfile_path = \"{0}/events.log\"
tmp_dir = \"{0}/tmp\"
[network]
network_backend = \"cni\"
network_config_dir = \"{1}\"
cni_plugin_dirs = [\"{2}\"]
",
                dir.path().display(),
                conf_dir.display(),
                plugins.display()
            ),
        )
        .expect("containers.conf");
        let made = HOST_CACHES
            .into_iter()
            .filter(|d| !Path::new(d).exists())
            .collect();
        Self { dir, made }
    }

    /// `podman` with the test's directories, as a shell command prefix.
    pub fn cmd(&self, args: &str) -> String {
        let d = self.dir.path().display();
        format!(
            "CONTAINERS_CONF={d}/containers.conf podman --root {d}/root --runroot {d}/run --storage-driver vfs {args}"
        )
    }

    /// Runs podman commands (a script); (success, stdout, stderr).
    pub fn run(&self, script: &str) -> (bool, String, String) {
        outcome(
            Command::new("sh")
                .args(["-c", script])
                .output()
                .expect("spawning sh"),
        )
    }
}

/// Where Podman caches whatever its configuration says: libcni's results
/// (for DEL and CHECK), and containers/image's blob-info cache (the
/// parent first, so a parent made for the cache goes whole).
const HOST_CACHES: [&str; 3] = [
    "/var/lib/cni",
    "/var/lib/containers",
    "/var/lib/containers/cache",
];

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&format!(
            "{} >/dev/null 2>&1 || true\n",
            self.cmd("rm -af -t 0")
        ));
        // vfs layers are plain directories; storage mounts none, but its
        // run root may hold a mount of the container's shm.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "grep -o ' {0}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l",
                self.dir.path().display()
            ))
            .output();
        for dir in &self.made {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
