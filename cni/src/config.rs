//! The network configuration a runtime sends on stdin: the spec's fields
//! (`cniVersion`, `name`, `type`, `args`, `ipMasq`, `ipam`, `dns`,
//! `runtimeConfig`, `prevResult`), the capabilities netagent takes
//! (`portMappings`, `ips`, `mac`, `aliases`), GC's
//! `cni.dev/valid-attachments`, and netagent's own (`network`, `socket`).
//!
//! Not JSON, or JSON of the wrong shape, is code 6; a configuration that
//! fails validation is code 7, or 1 for a version the plugin does not
//! speak, or 2 for a value it does not support (a port mapping's protocol
//! other than TCP and UDP). Every message names the field and the value.
//! Fields the plugin does not know are ignored, as runtimes add their own.

use std::net::IpAddr;

use netagent::api::NetworkCreate;
use serde::Deserialize;

use crate::{
    error::{CniError, Code},
    result::cidr,
    version::Version,
};

/// The daemon's API socket when the configuration names none: the
/// agent's own default.
pub use netagent::api::DEFAULT_SOCKET;

/// A checked network configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConf {
    pub version: Version,
    /// The configuration's (or list's) name.
    pub name: String,
    /// The plugin type (`netagent-cni`, or the delegating chain's).
    pub plugin: String,
    /// The netagent network to attach to (default: `name`).
    pub network: String,
    /// The daemon's API socket.
    pub socket: String,
    /// The daemon's bpffs directory (`--bpffs`): STATUS looks there for
    /// the pinned datapath when the daemon does not answer.
    pub bpffs: String,
    /// A delegated IPAM plugin (`ipam.type`), if any; netagent's own IPAM
    /// otherwise.
    pub ipam: Option<serde_json::Value>,
    pub ip_masq: Option<bool>,
    pub dns: Option<serde_json::Value>,
    /// `args` as given (ignored if not understood, as the spec allows).
    pub args: Option<serde_json::Value>,
    pub port_mappings: Vec<PortMapping>,
    /// Static addresses asked for (`ips` capability), with prefix length.
    pub ips: Vec<(IpAddr, u8)>,
    /// Static addresses asked for in `args.cni.ips` (the CNI conventions'
    /// way, as host-local reads it): addresses, a prefix length allowed.
    pub arg_ips: Vec<IpAddr>,
    pub mac: Option<[u8; 6]>,
    pub aliases: Vec<String>,
    /// The previous plugin's result (chained mode, CHECK and DEL).
    pub prev_result: Option<serde_json::Value>,
    /// GC: the attachments that must stay, `(container ID, ifname)`.
    pub valid_attachments: Option<Vec<(String, String)>>,
    /// How to create `network` on the first ADD if it does not exist
    /// (`subnet`, `gateway`, `ipRange`, `ipv6`, `subnet6`, `gateway6`,
    /// `internal`, `icc`: `netagent network create`'s options).
    pub create: NetworkCreate,
}

/// One `portMappings` entry (the capability's convention).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    /// `tcp` or `udp` (the convention's default is tcp).
    pub protocol: String,
    /// Empty for every host address.
    pub host_ip: Option<IpAddr>,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "cniVersion")]
    cni_version: Option<String>,
    name: Option<String>,
    #[serde(rename = "type")]
    plugin: Option<String>,
    network: Option<String>,
    socket: Option<String>,
    bpffs: Option<String>,
    ipam: Option<serde_json::Value>,
    #[serde(rename = "ipMasq")]
    ip_masq: Option<bool>,
    dns: Option<serde_json::Value>,
    args: Option<serde_json::Value>,
    #[serde(rename = "runtimeConfig", default)]
    runtime_config: RawRuntimeConfig,
    #[serde(rename = "prevResult")]
    prev_result: Option<serde_json::Value>,
    #[serde(rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<RawAttachment>>,
    subnet: Option<String>,
    gateway: Option<String>,
    #[serde(rename = "ipRange")]
    ip_range: Option<String>,
    #[serde(default)]
    ipv6: bool,
    subnet6: Option<String>,
    gateway6: Option<String>,
    #[serde(default)]
    internal: bool,
    icc: Option<bool>,
}

#[derive(Deserialize, Default)]
struct RawRuntimeConfig {
    #[serde(rename = "portMappings", default)]
    port_mappings: Vec<RawPortMapping>,
    #[serde(default)]
    ips: Vec<String>,
    mac: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
}

#[derive(Deserialize)]
struct RawPortMapping {
    #[serde(rename = "hostPort")]
    host_port: i64,
    #[serde(rename = "containerPort")]
    container_port: i64,
    protocol: Option<String>,
    #[serde(rename = "hostIP")]
    host_ip: Option<String>,
}

#[derive(Deserialize)]
struct RawAttachment {
    #[serde(rename = "containerID")]
    container_id: String,
    ifname: String,
}

impl NetConf {
    /// Parses and checks a configuration read from stdin.
    pub fn parse(input: &[u8]) -> Result<Self, CniError> {
        let raw: Raw = serde_json::from_slice(input)
            .map_err(|e| CniError::new(Code::Decode, format!("the network configuration: {e}")))?;
        let config = |details: String| CniError::new(Code::InvalidConfig, details);
        let version = Version::parse(
            raw.cni_version
                .as_deref()
                .ok_or_else(|| config("cniVersion is missing".to_owned()))?,
        )?;
        let create = network_create(
            raw.network.as_deref().or(raw.name.as_deref()).unwrap_or(""),
            &raw,
        )?;
        let name = raw
            .name
            .ok_or_else(|| config("name is missing".to_owned()))?;
        if !crate::env::valid_identifier(&name) {
            return Err(config(format!(
                "name {name:?} must start with a letter or digit, followed by letters, digits, '_', '.' or '-'"
            )));
        }
        let plugin = raw
            .plugin
            .ok_or_else(|| config("type is missing".to_owned()))?;
        let network = raw.network.clone().unwrap_or_else(|| name.clone());
        if network.is_empty() {
            return Err(config("network is empty".to_owned()));
        }
        if let Some(ipam) = &raw.ipam
            && !ipam.is_object()
        {
            return Err(config(format!("ipam {ipam} is not an object")));
        }
        let rc = raw.runtime_config;
        let port_mappings = rc
            .port_mappings
            .into_iter()
            .map(port_mapping)
            .collect::<Result<_, _>>()?;
        let ips = rc
            .ips
            .iter()
            .map(|s| {
                cidr(s).ok_or_else(|| {
                    config(format!(
                        "runtimeConfig.ips entry {s:?} is not an address with a prefix length"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        let arg_ips = arg_ips(raw.args.as_ref())?;
        let mac = rc
            .mac
            .map(|m| {
                netagent::model::parse_unicast_mac(&m).ok_or_else(|| {
                    config(format!(
                        "runtimeConfig.mac {m:?} is not a unicast MAC address"
                    ))
                })
            })
            .transpose()?;
        Ok(NetConf {
            version,
            name,
            plugin,
            network,
            socket: raw.socket.unwrap_or_else(|| DEFAULT_SOCKET.to_owned()),
            bpffs: raw
                .bpffs
                .unwrap_or_else(|| netagent::server::DEFAULT_BPFFS.to_owned()),
            ipam: raw.ipam,
            ip_masq: raw.ip_masq,
            dns: raw.dns,
            args: raw.args,
            port_mappings,
            ips,
            arg_ips,
            mac,
            aliases: rc.aliases,
            prev_result: raw.prev_result,
            valid_attachments: raw.valid_attachments.map(|list| {
                list.into_iter()
                    .map(|a| (a.container_id, a.ifname))
                    .collect()
            }),
            create,
        })
    }

    /// The delegated IPAM plugin's name (`ipam.type`), if any: none
    /// without `ipam` or with `"type": "netagent"` (the daemon's own).
    pub fn ipam_type(&self) -> Option<&str> {
        self.ipam
            .as_ref()?
            .get("type")?
            .as_str()
            .filter(|t| *t != OWN_IPAM)
    }
}

/// The `ipam.type` that names netagent's own address management.
pub const OWN_IPAM: &str = "netagent";

/// The network-creation keys, checked as `netagent network create`
/// checks its flags (each family's subnet and gateway at most once, a
/// gateway only with its subnet).
fn network_create(network: &str, raw: &Raw) -> Result<NetworkCreate, CniError> {
    fn parsed<T: std::str::FromStr>(key: &str, value: Option<&str>) -> Result<Option<T>, CniError> {
        value
            .map(|v| {
                v.parse().map_err(|_| {
                    CniError::new(Code::InvalidConfig, format!("{key} {v:?} is not valid"))
                })
            })
            .transpose()
    }
    let mut create = NetworkCreate::named(network);
    create.subnet = parsed("subnet", raw.subnet.as_deref())?;
    create.gateway = parsed("gateway", raw.gateway.as_deref())?;
    create.ip_range = parsed("ipRange", raw.ip_range.as_deref())?;
    create.subnet6 = parsed("subnet6", raw.subnet6.as_deref())?;
    create.gateway6 = parsed("gateway6", raw.gateway6.as_deref())?;
    create.ipv6 = raw.ipv6 || create.subnet6.is_some();
    create.internal = raw.internal;
    create.icc = raw.icc.unwrap_or(true);
    let needs = |key: &str, subnet: &str| {
        CniError::new(Code::InvalidConfig, format!("{key} needs {subnet}"))
    };
    if create.gateway.is_some() && create.subnet.is_none() {
        return Err(needs("gateway", "subnet"));
    }
    if create.ip_range.is_some() && create.subnet.is_none() {
        return Err(needs("ipRange", "subnet"));
    }
    if create.gateway6.is_some() && create.subnet6.is_none() {
        return Err(needs("gateway6", "subnet6"));
    }
    Ok(create)
}

/// `args.cni.ips`: absent, or a list of addresses (a prefix length is
/// allowed and ignored, as host-local allows it). The rest of `args` is
/// metadata a plugin may ignore, and netagent does.
fn arg_ips(args: Option<&serde_json::Value>) -> Result<Vec<IpAddr>, CniError> {
    let Some(ips) = args.and_then(|a| a.get("cni")).and_then(|c| c.get("ips")) else {
        return Ok(Vec::new());
    };
    let bad = |what: String| CniError::new(Code::InvalidConfig, format!("args.cni.ips {what}"));
    let list = ips
        .as_array()
        .ok_or_else(|| bad(format!("{ips} is not a list")))?;
    list.iter()
        .map(|entry| {
            let text = entry
                .as_str()
                .ok_or_else(|| bad(format!("entry {entry} is not a string")))?;
            text.parse::<IpAddr>()
                .ok()
                .or_else(|| cidr(text).map(|(ip, _)| ip))
                .ok_or_else(|| bad(format!("entry {text:?} is not an IP address")))
        })
        .collect()
}

fn port_mapping(raw: RawPortMapping) -> Result<PortMapping, CniError> {
    let port = |what: &str, value: i64| {
        u16::try_from(value)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| {
                CniError::new(
                    Code::InvalidConfig,
                    format!("portMappings {what} {value} is not a port from 1 to 65535"),
                )
            })
    };
    let host_port = port("hostPort", raw.host_port)?;
    let container_port = port("containerPort", raw.container_port)?;
    let protocol = raw
        .protocol
        .map_or_else(|| "tcp".to_owned(), |p| p.to_ascii_lowercase());
    if protocol != "tcp" && protocol != "udp" {
        return Err(CniError::new(
            Code::UnsupportedField,
            format!("portMappings protocol {protocol:?}: netagent publishes tcp and udp"),
        ));
    }
    let host_ip = match raw.host_ip.as_deref() {
        None | Some("") => None,
        Some(s) => Some(s.parse::<IpAddr>().map_err(|_| {
            CniError::new(
                Code::InvalidConfig,
                format!("portMappings hostIP {s:?} is not an IP address"),
            )
        })?),
    };
    Ok(PortMapping {
        host_port,
        container_port,
        protocol,
        host_ip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example lists in docs/cni read as a runtime hands them over:
    /// each netagent-cni entry with the list's `cniVersion` and `name`.
    #[test]
    fn the_shipped_example_lists_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/cni");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("docs/cni") {
            let path = entry.expect("an entry").path();
            let text = std::fs::read_to_string(&path).expect("readable");
            let list: serde_json::Value = serde_json::from_str(&text).expect("JSON");
            for plugin in list["plugins"].as_array().expect("plugins") {
                if plugin["type"] != "netagent-cni" {
                    continue;
                }
                let mut conf = plugin.clone();
                conf["cniVersion"] = list["cniVersion"].clone();
                conf["name"] = list["name"].clone();
                let parsed = NetConf::parse(conf.to_string().as_bytes())
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert_eq!(parsed.name, list["name"].as_str().expect("a name"));
                seen += 1;
            }
        }
        assert_eq!(seen, 3, "one netagent-cni entry per example list");
    }

    fn parse(json: serde_json::Value) -> Result<NetConf, CniError> {
        NetConf::parse(json.to_string().as_bytes())
    }

    #[test]
    fn a_full_configuration_reads_back() {
        let c = parse(serde_json::json!({
            "cniVersion": "1.1.0",
            "name": "web-net",
            "type": "netagent-cni",
            "network": "frontend",
            "socket": "/run/na.sock",
            "ipam": {"type": "host-local", "subnet": "10.9.0.0/24"},
            "ipMasq": true,
            "dns": {"nameservers": ["10.9.0.1"]},
            "args": {"labels": {"app": "web"}},
            "someRuntimeField": 7,
            "runtimeConfig": {
                "portMappings": [
                    {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                    {"hostPort": 5353, "containerPort": 53, "protocol": "UDP", "hostIP": "127.0.0.1"},
                    {"hostPort": 8443, "containerPort": 443}
                ],
                "ips": ["10.9.0.5/24", "fd00:9::5/64"],
                "mac": "02:42:0a:09:00:05",
                "aliases": ["web", "www"]
            },
            "prevResult": {"cniVersion": "1.1.0", "ips": []}
        }))
        .expect("valid");
        assert_eq!(c.version, Version::V1_1_0);
        assert_eq!(
            (c.name.as_str(), c.network.as_str()),
            ("web-net", "frontend")
        );
        assert_eq!(c.socket, "/run/na.sock");
        assert_eq!(c.ipam_type(), Some("host-local"));
        assert_eq!(c.port_mappings.len(), 3);
        assert_eq!(c.port_mappings[1].protocol, "udp");
        assert_eq!(
            c.port_mappings[1].host_ip,
            Some(IpAddr::from([127, 0, 0, 1]))
        );
        assert_eq!(c.port_mappings[2].protocol, "tcp", "tcp by default");
        assert_eq!(c.ips.len(), 2);
        assert_eq!(c.ips[1].1, 64);
        assert_eq!(c.mac, Some([0x02, 0x42, 0x0a, 0x09, 0, 5]));
        assert_eq!(c.aliases, ["web", "www"]);
        assert!(c.prev_result.is_some());
        // The defaults: network = name, the agent's socket, netagent's IPAM.
        let c =
            parse(serde_json::json!({"cniVersion": "0.4.0", "name": "n1", "type": "netagent-cni"}))
                .expect("minimal");
        assert_eq!(
            (c.network.as_str(), c.socket.as_str()),
            ("n1", DEFAULT_SOCKET)
        );
        assert_eq!(c.ipam_type(), None);
        assert!(c.valid_attachments.is_none());
    }

    /// The conventions' `args.cni.ips`: bare or with a prefix length;
    /// other `args` (labels, a runtime's own) are ignored.
    #[test]
    fn args_cni_ips_are_static_addresses() {
        let c = parse(serde_json::json!({
            "cniVersion": "1.0.0", "name": "n1", "type": "netagent-cni",
            "args": {
                "cni": {"ips": ["10.9.0.7", "fd00:9::7/64"], "labels": [{"key": "app", "value": "web"}]},
                "io.podman": {"anything": true}
            }
        }))
        .expect("valid");
        assert_eq!(
            c.arg_ips,
            [
                IpAddr::from([10, 9, 0, 7]),
                "fd00:9::7".parse::<IpAddr>().expect("v6")
            ]
        );
        let c = parse(serde_json::json!({
            "cniVersion": "1.0.0", "name": "n1", "type": "netagent-cni",
            "args": {"labels": ["not", "ours"]}
        }))
        .expect("args without cni.ips");
        assert!(c.arg_ips.is_empty());
    }

    #[test]
    fn gc_reads_the_valid_attachments() {
        let c = parse(serde_json::json!({
            "cniVersion": "1.1.0", "name": "n1", "type": "netagent-cni",
            "cni.dev/valid-attachments": [
                {"containerID": "a1", "ifname": "eth0"},
                {"containerID": "b2", "ifname": "net1"}
            ]
        }))
        .expect("valid");
        assert_eq!(
            c.valid_attachments,
            Some(vec![
                ("a1".to_owned(), "eth0".to_owned()),
                ("b2".to_owned(), "net1".to_owned())
            ])
        );
    }

    #[test]
    fn bad_configurations_get_the_right_code_naming_the_field() {
        let base = serde_json::json!({"cniVersion": "1.1.0", "name": "n1", "type": "netagent-cni"});
        let with = |key: &str, value: serde_json::Value| {
            let mut v = base.clone();
            v[key] = value;
            v
        };
        let mapping =
            |m: serde_json::Value| with("runtimeConfig", serde_json::json!({"portMappings": [m]}));
        let cases: Vec<(serde_json::Value, Code, &str)> = vec![
            (
                with("cniVersion", "0.3.1".into()),
                Code::IncompatibleVersion,
                "\"0.3.1\"",
            ),
            (
                with("name", "-bad".into()),
                Code::InvalidConfig,
                "name \"-bad\"",
            ),
            (
                with("ipam", "host-local".into()),
                Code::InvalidConfig,
                "ipam \"host-local\" is not an object",
            ),
            (
                with("name", 7.into()),
                Code::Decode,
                "the network configuration",
            ),
            (
                mapping(serde_json::json!({"hostPort": 0, "containerPort": 80})),
                Code::InvalidConfig,
                "hostPort 0",
            ),
            (
                mapping(serde_json::json!({"hostPort": 80, "containerPort": 70000})),
                Code::InvalidConfig,
                "containerPort 70000",
            ),
            (
                mapping(
                    serde_json::json!({"hostPort": 80, "containerPort": 80, "protocol": "sctp"}),
                ),
                Code::UnsupportedField,
                "protocol \"sctp\"",
            ),
            (
                mapping(
                    serde_json::json!({"hostPort": 80, "containerPort": 80, "hostIP": "1.2.3"}),
                ),
                Code::InvalidConfig,
                "hostIP \"1.2.3\"",
            ),
            (
                with("runtimeConfig", serde_json::json!({"ips": ["10.1.0.5"]})),
                Code::InvalidConfig,
                "ips entry \"10.1.0.5\"",
            ),
            (
                with("runtimeConfig", serde_json::json!({"ips": ["10.1.0.5/33"]})),
                Code::InvalidConfig,
                "\"10.1.0.5/33\"",
            ),
            (
                with(
                    "runtimeConfig",
                    serde_json::json!({"mac": "03:00:00:00:00:01"}),
                ),
                Code::InvalidConfig,
                "mac \"03:00:00:00:00:01\"",
            ),
            (
                with(
                    "runtimeConfig",
                    serde_json::json!({"mac": "02:00:00:00:00"}),
                ),
                Code::InvalidConfig,
                "mac \"02:00:00:00:00\"",
            ),
            (
                with("args", serde_json::json!({"cni": {"ips": "10.1.0.5"}})),
                Code::InvalidConfig,
                "args.cni.ips \"10.1.0.5\" is not a list",
            ),
            (
                with("args", serde_json::json!({"cni": {"ips": ["10.1.0"]}})),
                Code::InvalidConfig,
                "args.cni.ips entry \"10.1.0\"",
            ),
            (
                with("args", serde_json::json!({"cni": {"ips": [5]}})),
                Code::InvalidConfig,
                "args.cni.ips entry 5 is not a string",
            ),
        ];
        for (json, code, expected) in cases {
            let e = parse(json.clone()).expect_err(&json.to_string());
            assert_eq!(e.code, code, "{json}: {e}");
            assert!(e.details.contains(expected), "{json}: {e}");
        }
        for missing in ["cniVersion", "name", "type"] {
            let mut v = base.clone();
            if let Some(o) = v.as_object_mut() {
                o.remove(missing);
            }
            let e = parse(v).expect_err(missing);
            assert_eq!(e.code, Code::InvalidConfig, "{missing}");
            assert!(e.details.contains(&format!("{missing} is missing")), "{e}");
        }
        let e = NetConf::parse(b"{not json").expect_err("not JSON");
        assert_eq!(e.code, Code::Decode);
    }
}
