//! Running a delegated plugin (an IPAM plugin such as `host-local`) as the
//! spec has a main plugin do it: found by its `type` in `CNI_PATH`, run
//! with the invocation's `CNI_*` variables (the command may differ: a DEL
//! delegates DEL), the configuration on stdin, its result or error object
//! read from stdout.
//!
//! A delegated error comes back with the delegate's own code and message,
//! its name in front; a delegate that prints no error object, or no JSON,
//! is code 6 (or 5 if it could not be run at all).

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command as Process, Stdio},
};

use serde::Deserialize;

use crate::{
    env::{Command, Env},
    error::{CniError, Code},
};

/// The executable of plugin `name` in `dirs` (`CNI_PATH`, in order). A
/// name with a path separator is refused: the configuration picks a
/// plugin, never a file.
pub fn find(name: &str, dirs: &[PathBuf]) -> Result<PathBuf, CniError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(CniError::new(
            Code::InvalidConfig,
            format!("plugin type {name:?} is not a plugin name"),
        ));
    }
    dirs.iter()
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| {
            CniError::new(
                Code::InvalidConfig,
                format!(
                    "plugin {name:?} is not in CNI_PATH ({})",
                    dirs.iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(":")
                ),
            )
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The error object a delegate prints.
#[derive(Deserialize)]
struct DelegateError {
    code: u32,
    msg: String,
    #[serde(default)]
    details: String,
}

/// Runs plugin `name` (found in `env.path`) for `command` with the
/// invocation's variables and `config` on stdin; its result, parsed.
///
/// A delegate that does not speak the configuration's version (Debian
/// 12's reference plugins stop at 1.0.0) is run at the newest version
/// both speak, which the configuration's `cniVersion` (and its
/// `prevResult`'s) is rewritten to: from 1.0.0 on the formats are the
/// same. STATUS and GC, which exist from 1.1.0 on, are then not
/// delegated: the delegate has nothing of either.
pub fn run(
    name: &str,
    command: Command,
    env: &Env,
    config: &[u8],
) -> Result<serde_json::Value, CniError> {
    let exe = find(name, &env.path)?;
    let Ok(mut conf) = serde_json::from_slice::<serde_json::Value>(config) else {
        return exec(name, &exe, command, env, config);
    };
    let Some(asked) = conf
        .get("cniVersion")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
    else {
        return exec(name, &exe, command, env, config);
    };
    let probe = serde_json::json!({ "cniVersion": asked }).to_string();
    let spoken = exec(name, &exe, Command::Version, env, probe.as_bytes())?;
    let spoken: Vec<&str> = spoken["supportedVersions"]
        .as_array()
        .map(|list| list.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    if spoken.contains(&asked.as_str()) {
        return exec(name, &exe, command, env, config);
    }
    let common = crate::version::SUPPORTED
        .into_iter()
        .rev()
        .find(|v| spoken.contains(&v.as_str()))
        .ok_or_else(|| {
            CniError::new(
                Code::IncompatibleVersion,
                format!(
                    "plugin {name:?} speaks {} and netagent-cni none of them",
                    spoken.join(", ")
                ),
            )
        })?;
    if matches!(command, Command::Status | Command::Gc) && !common.has_status_and_gc() {
        return Ok(serde_json::Value::Null);
    }
    conf["cniVersion"] = common.as_str().into();
    if let Some(prev) = conf.get_mut("prevResult").and_then(|p| p.as_object_mut()) {
        prev.insert("cniVersion".into(), common.as_str().into());
    }
    exec(name, &exe, command, env, conf.to_string().as_bytes())
}

/// Runs the delegate at `exe` once.
fn exec(
    name: &str,
    exe: &Path,
    command: Command,
    env: &Env,
    config: &[u8],
) -> Result<serde_json::Value, CniError> {
    let mut process = Process::new(exe);
    process
        .env("CNI_COMMAND", command.as_str())
        .env(
            "CNI_PATH",
            std::env::join_paths(&env.path).unwrap_or_default(),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (var, value) in [
        ("CNI_CONTAINERID", env.container_id.as_deref()),
        ("CNI_IFNAME", env.ifname.as_deref()),
    ] {
        match value {
            Some(v) => process.env(var, v),
            None => process.env_remove(var),
        };
    }
    match &env.netns {
        Some(netns) => process.env("CNI_NETNS", netns),
        None => process.env_remove("CNI_NETNS"),
    };
    let args: Vec<String> = env.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
    process.env("CNI_ARGS", args.join(";"));
    let io = |what: &str, e: std::io::Error| {
        CniError::new(
            Code::Io,
            format!("plugin {name:?} ({}): {what}: {e}", exe.display()),
        )
    };
    let mut child = process.spawn().map_err(|e| io("starting it", e))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A plugin may exit without reading its stdin (the Go skel never
        // reads it for VERSION, nor after an environment error): the
        // write then fails with EPIPE, a race on small configurations,
        // and what the plugin printed and its exit status decide.
        match stdin.write_all(config) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other.map_err(|e| io("writing its configuration", e))?,
        }
    }
    let output = child
        .wait_with_output()
        .map_err(|e| io("waiting for it", e))?;
    if output.status.success() {
        if output.stdout.iter().all(u8::is_ascii_whitespace) {
            // DEL, CHECK and GC print nothing on success.
            return Ok(serde_json::Value::Null);
        }
        return serde_json::from_slice(&output.stdout).map_err(|e| {
            CniError::new(
                Code::Decode,
                format!("plugin {name:?} printed a result that is not JSON: {e}"),
            )
        });
    }
    match serde_json::from_slice::<DelegateError>(&output.stdout) {
        Ok(err) => {
            let code = match err.code {
                1 => Code::IncompatibleVersion,
                2 => Code::UnsupportedField,
                3 => Code::UnknownContainer,
                4 => Code::InvalidEnvironment,
                5 => Code::Io,
                6 => Code::Decode,
                7 => Code::InvalidConfig,
                11 => Code::TryAgainLater,
                n => Code::Plugin(n),
            };
            let details = if err.details.is_empty() {
                format!("plugin {name:?}: {}", err.msg)
            } else {
                format!("plugin {name:?}: {}: {}", err.msg, err.details)
            };
            Err(CniError::new(code, details))
        }
        Err(_) => Err(CniError::new(
            Code::Decode,
            format!(
                "plugin {name:?} failed ({}) without an error object",
                output.status
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    /// The tests here run one at a time: a script written while another
    /// test forks keeps an open descriptor in that child until it execs,
    /// and running the script then fails with ETXTBSY.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
        ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A directory with a shell plugin `name` whose body is `script`.
    fn plugin_dir(name: &str, script: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        dir
    }

    fn env_for(dir: &Path) -> Env {
        Env {
            command: Command::Add,
            container_id: Some("c1".to_owned()),
            netns: Some("/run/netns/c1".into()),
            ifname: Some("eth0".to_owned()),
            args: vec![("K8S_POD_NAME".to_owned(), "web".to_owned())],
            path: vec!["/nonexistent".into(), dir.to_path_buf()],
        }
    }

    #[test]
    fn a_delegate_gets_the_invocation_and_its_result_is_read() {
        let _one = one_at_a_time();
        // It answers with what it was given: the variables and its stdin.
        let dir = plugin_dir(
            "fake-ipam",
            r#"read -r conf
printf '{"cniVersion":"1.1.0","got":"%s %s %s %s %s","conf":%s}' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_NETNS" "$CNI_IFNAME" "$CNI_ARGS" "$conf""#,
        );
        let env = env_for(dir.path());
        let out = run(
            "fake-ipam",
            Command::Add,
            &env,
            b"{\"type\":\"fake-ipam\"}\n",
        )
        .expect("its result");
        assert_eq!(out["got"], "ADD c1 /run/netns/c1 eth0 K8S_POD_NAME=web");
        assert_eq!(out["conf"]["type"], "fake-ipam");
        // DEL prints nothing on success.
        let dir = plugin_dir("quiet", "cat >/dev/null");
        assert_eq!(
            run("quiet", Command::Del, &env_for(dir.path()), b"{}"),
            Ok(serde_json::Value::Null)
        );
    }

    #[test]
    fn a_delegates_error_comes_back_with_its_code_and_name() {
        let _one = one_at_a_time();
        let dir = plugin_dir(
            "host-local",
            r#"cat >/dev/null
echo '{"cniVersion":"1.0.0","code":11,"msg":"resource busy","details":"lock held"}'
exit 1"#,
        );
        let e = run("host-local", Command::Add, &env_for(dir.path()), b"{}").expect_err("fails");
        assert_eq!(e.code, Code::TryAgainLater);
        assert_eq!(e.details, "plugin \"host-local\": resource busy: lock held");
        let dir = plugin_dir("broken", "cat >/dev/null; echo oops; exit 3");
        let e = run("broken", Command::Add, &env_for(dir.path()), b"{}").expect_err("fails");
        assert_eq!(e.code, Code::Decode);
        assert!(e.details.contains("without an error object"), "{e}");
        let dir = plugin_dir("garbled", "cat >/dev/null; echo '{not json'");
        let e = run("garbled", Command::Add, &env_for(dir.path()), b"{}").expect_err("garbled");
        assert_eq!(e.code, Code::Decode);
    }

    #[test]
    fn an_older_delegate_runs_at_the_newest_version_it_speaks() {
        let _one = one_at_a_time();
        // Debian 12's host-local: up to 1.0.0, and no GC.
        let dir = plugin_dir(
            "old-ipam",
            r#"read -r conf
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}' ;;
ADD) printf '{"cniVersion":"1.0.0","conf":%s}' "$conf" ;;
*) echo '{"cniVersion":"1.0.0","code":4,"msg":"unknown CNI_COMMAND"}'; exit 1 ;;
esac"#,
        );
        let env = env_for(dir.path());
        let conf =
            br#"{"cniVersion":"1.1.0","type":"old-ipam","prevResult":{"cniVersion":"1.1.0"}}"#;
        let out = run("old-ipam", Command::Add, &env, conf).expect("its result");
        assert_eq!(out["conf"]["cniVersion"], "1.0.0");
        assert_eq!(out["conf"]["prevResult"]["cniVersion"], "1.0.0");
        assert_eq!(
            run("old-ipam", Command::Gc, &env, conf),
            Ok(serde_json::Value::Null),
            "GC is not delegated to a plugin without it"
        );
        // One the delegate speaks goes as it is.
        let out = run("old-ipam", Command::Add, &env, br#"{"cniVersion":"0.4.0"}"#).expect("ok");
        assert_eq!(out["conf"]["cniVersion"], "0.4.0");
        // No version in common: code 1, naming what it speaks.
        let dir = plugin_dir(
            "ancient",
            r#"cat >/dev/null; echo '{"cniVersion":"0.2.0","supportedVersions":["0.1.0","0.2.0"]}'"#,
        );
        let e = run("ancient", Command::Add, &env_for(dir.path()), conf).expect_err("none");
        assert_eq!(e.code, Code::IncompatibleVersion);
        assert!(e.details.contains("0.1.0, 0.2.0"), "{e}");
    }

    #[test]
    fn a_delegate_that_exits_without_reading_its_stdin_is_answered_by_its_output() {
        let _one = one_at_a_time();
        // As the Go skel answers VERSION: stdin never read. A configuration
        // larger than a pipe's buffer makes the write fail every time.
        let dir = plugin_dir(
            "deaf",
            r#"case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["1.0.0","1.1.0"]}' ;;
DEL) exit 0 ;;
*) echo '{"cniVersion":"1.0.0","code":4,"msg":"no CNI_NETNS"}'; exit 1 ;;
esac"#,
        );
        let env = env_for(dir.path());
        let padding = "x".repeat(256 * 1024);
        let conf = format!(r#"{{"cniVersion":"1.1.0","pad":"{padding}"}}"#);
        assert_eq!(
            run("deaf", Command::Del, &env, conf.as_bytes()),
            Ok(serde_json::Value::Null)
        );
        let e = run("deaf", Command::Add, &env, conf.as_bytes()).expect_err("its error");
        assert_eq!(e.code, Code::InvalidEnvironment);
        assert_eq!(e.details, "plugin \"deaf\": no CNI_NETNS");
    }

    #[test]
    fn only_plugin_names_in_cni_path_are_run() {
        let _one = one_at_a_time();
        let dir = plugin_dir("there", "true");
        let dirs = vec![PathBuf::from("/nonexistent"), dir.path().to_path_buf()];
        assert_eq!(find("there", &dirs), Ok(dir.path().join("there")));
        for bad in ["", "..", "../bin/sh", "/bin/sh"] {
            let e = find(bad, &dirs).expect_err(bad);
            assert_eq!(e.code, Code::InvalidConfig, "{bad}");
        }
        let e = find("missing", &dirs).expect_err("missing");
        assert!(
            e.details
                .contains("\"missing\" is not in CNI_PATH (/nonexistent:"),
            "{e}"
        );
        // Not executable: not a plugin.
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "x").expect("write");
        assert!(find("plain", &dirs).is_err());
    }
}
