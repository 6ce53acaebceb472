//! The `CNI_*` environment a runtime invokes the plugin with, checked per
//! command as the spec requires: a missing or malformed variable is code 4,
//! and the message names every such variable (not just the first).

use std::path::PathBuf;

use crate::error::{CniError, Code};

/// `CNI_COMMAND`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    /// The `CNI_COMMAND` value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }

    /// Whether the command is about one attachment, `(CNI_CONTAINERID,
    /// CNI_IFNAME)`, and so needs both; ADD and CHECK need `CNI_NETNS`
    /// too (DEL may come after the namespace is gone).
    fn needs(self) -> (bool, bool) {
        match self {
            Command::Add | Command::Check => (true, true),
            Command::Del => (true, false),
            Command::Status | Command::Gc | Command::Version => (false, false),
        }
    }
}

/// The environment of one invocation, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Env {
    pub command: Command,
    /// Set for ADD, DEL and CHECK.
    pub container_id: Option<String>,
    /// Set for ADD and CHECK; for DEL if the runtime still has it.
    pub netns: Option<PathBuf>,
    /// Set for ADD, DEL and CHECK.
    pub ifname: Option<String>,
    /// `CNI_ARGS`, in order (`K8S_POD_NAME=web;IgnoreUnknown=1`).
    pub args: Vec<(String, String)>,
    /// `CNI_PATH`, for delegated (IPAM) plugins.
    pub path: Vec<PathBuf>,
}

impl Env {
    /// Reads the process environment.
    pub fn from_process() -> Result<Self, CniError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads and checks the variables `var` gives.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, CniError> {
        let Some(command_value) = var("CNI_COMMAND") else {
            return Err(invalid(vec!["CNI_COMMAND is not set".to_owned()]));
        };
        let command = Command::parse(&command_value).ok_or_else(|| {
            invalid(vec![format!(
                "CNI_COMMAND {command_value:?} is none of ADD, DEL, CHECK, STATUS, GC, VERSION"
            )])
        })?;
        if command == Command::Version {
            // VERSION reads nothing else; libcni's validation sends
            // placeholders ("dummy") for the rest, which are no one's.
            return Ok(Env {
                command,
                container_id: None,
                netns: None,
                ifname: None,
                args: Vec::new(),
                path: Vec::new(),
            });
        }
        let (attachment, netns_required) = command.needs();
        let present = |name: &str| var(name).filter(|v| !v.is_empty());
        let mut problems = Vec::new();
        let mut required = |name: &'static str, needed: bool| {
            let value = present(name);
            if needed && value.is_none() {
                problems.push(format!("{name} is not set"));
            }
            value
        };
        let container_id = required("CNI_CONTAINERID", attachment);
        let netns = required("CNI_NETNS", netns_required).map(PathBuf::from);
        let ifname = required("CNI_IFNAME", attachment);
        if let Some(id) = &container_id
            && !valid_identifier(id)
        {
            problems.push(format!(
                "CNI_CONTAINERID {id:?} must start with a letter or digit, followed by letters, digits, '_', '.' or '-'"
            ));
        }
        if let Some(name) = &ifname
            && !netagent::model::valid_ifname(name)
        {
            problems.push(format!(
                "CNI_IFNAME {name:?} is not an interface name (1-15 bytes, no '/', ':' or whitespace, not '.' or '..')"
            ));
        }
        if let Some(path) = &netns
            && !path.is_absolute()
        {
            problems.push(format!("CNI_NETNS {path:?} is not an absolute path"));
        }
        let args = match var("CNI_ARGS") {
            Some(raw) => parse_args(&raw).unwrap_or_else(|bad| {
                problems.push(format!(
                    "CNI_ARGS has {bad:?}, not KEY=VALUE (pairs are separated by ';')"
                ));
                Vec::new()
            }),
            None => Vec::new(),
        };
        if !problems.is_empty() {
            return Err(invalid(problems));
        }
        let path = var("CNI_PATH")
            .map(|p| {
                std::env::split_paths(&p)
                    .filter(|d| !d.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Env {
            command,
            container_id,
            netns,
            ifname,
            args,
            path,
        })
    }

    /// The value of `CNI_ARGS` key `name` (the last one given).
    pub fn arg(&self, name: &str) -> Option<&str> {
        self.args
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn invalid(problems: Vec<String>) -> CniError {
    CniError::new(Code::InvalidEnvironment, problems.join("; "))
}

/// The spec's grammar for container IDs and network names: not empty, a
/// letter or digit first, then letters, digits, `_`, `.` or `-`.
pub(crate) fn valid_identifier(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// `K=V;K2=V2` into pairs (empty items skipped); the first item that is
/// not `KEY=VALUE` with a non-empty key is the error.
fn parse_args(raw: &str) -> Result<Vec<(String, String)>, String> {
    raw.split(';')
        .filter(|item| !item.is_empty())
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(item.to_owned()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<Env, CniError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Env::from_vars(|name| map.get(name).cloned())
    }

    const ADD: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/run/netns/ctr"),
        ("CNI_IFNAME", "eth0"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAME=web;K8S_POD_NAMESPACE=default",
        ),
        ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
    ];

    #[test]
    fn a_full_add_environment_reads_back() {
        let e = env(ADD).expect("valid");
        assert_eq!(e.command, Command::Add);
        assert_eq!(e.container_id.as_deref(), Some("abc123"));
        assert_eq!(e.netns, Some(PathBuf::from("/run/netns/ctr")));
        assert_eq!(e.ifname.as_deref(), Some("eth0"));
        assert_eq!(e.arg("K8S_POD_NAME"), Some("web"));
        assert_eq!(e.arg("IgnoreUnknown"), Some("1"));
        assert_eq!(e.arg("missing"), None);
        assert_eq!(
            e.path,
            [PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
    }

    #[test]
    fn each_command_requires_what_the_spec_says() {
        // DEL without a namespace (it may be gone), STATUS, GC and
        // VERSION with nothing but the command.
        for vars in [
            &[
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", "a"),
                ("CNI_IFNAME", "eth0"),
            ][..],
            &[("CNI_COMMAND", "STATUS")][..],
            &[("CNI_COMMAND", "GC")][..],
            &[("CNI_COMMAND", "VERSION")][..],
            // libcni validates a list with VERSION and placeholders.
            &[
                ("CNI_COMMAND", "VERSION"),
                ("CNI_CONTAINERID", "dummy"),
                ("CNI_NETNS", "dummy"),
                ("CNI_IFNAME", "dummy"),
            ][..],
        ] {
            env(vars).unwrap_or_else(|e| panic!("{vars:?}: {e}"));
        }
        // ADD and CHECK name every missing variable at once.
        for command in ["ADD", "CHECK"] {
            let e = env(&[("CNI_COMMAND", command)]).expect_err(command);
            assert_eq!(e.code, Code::InvalidEnvironment);
            for name in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
                assert!(e.details.contains(&format!("{name} is not set")), "{e}");
            }
        }
        // An empty value is a missing one.
        let mut vars = ADD.to_vec();
        vars[2] = ("CNI_NETNS", "");
        let e = env(&vars).expect_err("empty netns");
        assert!(e.details.contains("CNI_NETNS is not set"), "{e}");
    }

    #[test]
    fn malformed_variables_are_code_4_naming_them() {
        let cases: &[(&str, &str, &str)] = &[
            ("CNI_COMMAND", "add", "CNI_COMMAND \"add\" is none of"),
            ("CNI_COMMAND", "DELETE", "CNI_COMMAND \"DELETE\""),
            ("CNI_CONTAINERID", "-abc", "CNI_CONTAINERID \"-abc\""),
            ("CNI_CONTAINERID", "a b", "CNI_CONTAINERID \"a b\""),
            (
                "CNI_IFNAME",
                "a-name-too-long-x",
                "CNI_IFNAME \"a-name-too-long-x\"",
            ),
            ("CNI_IFNAME", "eth/0", "CNI_IFNAME \"eth/0\""),
            ("CNI_IFNAME", "..", "CNI_IFNAME \"..\""),
            (
                "CNI_NETNS",
                "run/netns/x",
                "CNI_NETNS \"run/netns/x\" is not an absolute path",
            ),
            ("CNI_ARGS", "K8S_POD_NAME=web;junk", "CNI_ARGS has \"junk\""),
            ("CNI_ARGS", "=v", "CNI_ARGS has \"=v\""),
        ];
        for (name, value, expected) in cases {
            let mut vars = ADD.to_vec();
            if let Some(slot) = vars.iter_mut().find(|(k, _)| k == name) {
                slot.1 = value;
            }
            let e = env(&vars).expect_err(value);
            assert_eq!(e.code, Code::InvalidEnvironment, "{name}={value}");
            assert!(e.details.contains(expected), "{name}={value}: {e}");
        }
        let e = env(&[]).expect_err("nothing");
        assert!(e.details.contains("CNI_COMMAND is not set"), "{e}");
    }
}
