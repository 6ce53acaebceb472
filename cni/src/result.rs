//! The success result of ADD (and the `prevResult` a chained plugin gets):
//! interfaces, IPs with their interface index and gateway, routes and DNS,
//! written in the configuration's version. 0.4.0 tags each IP with its
//! family (`"version": "4"`); 1.0.0 and 1.1.0 do not. A `prevResult` of
//! any of the three is read back.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::{
    error::{CniError, Code},
    version::Version,
};

/// An interface the plugin created or configured.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The network namespace path, for an interface inside the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

/// An address given to an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpConfig {
    pub address: IpAddr,
    pub prefix_len: u8,
    pub gateway: Option<IpAddr>,
    /// Index into the result's interfaces.
    pub interface: Option<usize>,
}

/// A route the plugin installed in the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub dst: IpAddr,
    pub prefix_len: u8,
    pub gw: Option<IpAddr>,
}

/// DNS settings the network knows (the runtime decides what to do with
/// them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// A success result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

#[derive(Serialize, Deserialize)]
struct WireIp {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interface: Option<usize>,
}

#[derive(Serialize, Deserialize)]
struct WireRoute {
    dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gw: Option<IpAddr>,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    #[serde(rename = "cniVersion")]
    cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ips: Vec<WireIp>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<WireRoute>,
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    dns: Dns,
}

impl CniResult {
    /// The result in `version`'s format.
    pub fn to_json(&self, version: Version) -> serde_json::Value {
        let tagged = version == Version::V0_4_0;
        let wire = Wire {
            cni_version: version.as_str().to_owned(),
            interfaces: self.interfaces.clone(),
            ips: self
                .ips
                .iter()
                .map(|ip| WireIp {
                    version: tagged
                        .then(|| if ip.address.is_ipv4() { "4" } else { "6" }.to_owned()),
                    address: format!("{}/{}", ip.address, ip.prefix_len),
                    gateway: ip.gateway,
                    interface: ip.interface,
                })
                .collect(),
            routes: self
                .routes
                .iter()
                .map(|r| WireRoute {
                    dst: format!("{}/{}", r.dst, r.prefix_len),
                    gw: r.gw,
                })
                .collect(),
            dns: self.dns.clone(),
        };
        // Plain strings, numbers and addresses always serialize.
        serde_json::to_value(wire).unwrap_or_default()
    }

    /// Reads a result (a `prevResult`) of any version the plugin speaks;
    /// one it cannot read is code 6 (a version it does not speak, 1).
    pub fn from_json(value: &serde_json::Value) -> Result<Self, CniError> {
        let decode = |what: String| CniError::new(Code::Decode, format!("prevResult: {what}"));
        let wire: Wire =
            serde_json::from_value(value.clone()).map_err(|e| decode(e.to_string()))?;
        Version::parse(&wire.cni_version)?;
        let ips = wire
            .ips
            .into_iter()
            .map(|ip| {
                let (address, prefix_len) = cidr(&ip.address)
                    .ok_or_else(|| decode(format!("address {:?} is not a CIDR", ip.address)))?;
                if ip.interface.is_some_and(|i| i >= wire.interfaces.len()) {
                    return Err(decode(format!(
                        "address {} names interface {:?}, and there are {}",
                        ip.address,
                        ip.interface,
                        wire.interfaces.len()
                    )));
                }
                Ok(IpConfig {
                    address,
                    prefix_len,
                    gateway: ip.gateway,
                    interface: ip.interface,
                })
            })
            .collect::<Result<_, _>>()?;
        let routes = wire
            .routes
            .into_iter()
            .map(|r| {
                let (dst, prefix_len) = cidr(&r.dst)
                    .ok_or_else(|| decode(format!("route {:?} is not a CIDR", r.dst)))?;
                Ok(Route {
                    dst,
                    prefix_len,
                    gw: r.gw,
                })
            })
            .collect::<Result<_, CniError>>()?;
        Ok(CniResult {
            interfaces: wire.interfaces,
            ips,
            routes,
            dns: wire.dns,
        })
    }
}

/// `10.1.0.5/24` or `fd00::5/64` (the spec's CIDR strings).
pub(crate) fn cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, len) = s.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((ip, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "na-v1a2b".to_owned(),
                    mac: Some("02:aa:bb:cc:dd:01".to_owned()),
                    sandbox: None,
                },
                Interface {
                    name: "eth0".to_owned(),
                    mac: Some("02:aa:bb:cc:dd:02".to_owned()),
                    sandbox: Some("/run/netns/ctr".to_owned()),
                },
            ],
            ips: vec![
                IpConfig {
                    address: IpAddr::from([10, 9, 0, 5]),
                    prefix_len: 24,
                    gateway: Some(IpAddr::from([10, 9, 0, 1])),
                    interface: Some(1),
                },
                IpConfig {
                    address: "fd00:9::5".parse().expect("an IPv6 address"),
                    prefix_len: 64,
                    gateway: None,
                    interface: Some(1),
                },
            ],
            routes: vec![Route {
                dst: IpAddr::from([0, 0, 0, 0]),
                prefix_len: 0,
                gw: Some(IpAddr::from([10, 9, 0, 1])),
            }],
            dns: Dns {
                nameservers: vec!["10.9.0.1".to_owned()],
                ..Dns::default()
            },
        }
    }

    #[test]
    fn each_version_writes_its_own_format_and_reads_back() {
        let r = sample();
        let v1 = r.to_json(Version::V1_1_0);
        assert_eq!(
            v1,
            serde_json::json!({
                "cniVersion": "1.1.0",
                "interfaces": [
                    {"name": "na-v1a2b", "mac": "02:aa:bb:cc:dd:01"},
                    {"name": "eth0", "mac": "02:aa:bb:cc:dd:02", "sandbox": "/run/netns/ctr"}
                ],
                "ips": [
                    {"address": "10.9.0.5/24", "gateway": "10.9.0.1", "interface": 1},
                    {"address": "fd00:9::5/64", "interface": 1}
                ],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.9.0.1"}],
                "dns": {"nameservers": ["10.9.0.1"]}
            })
        );
        let v0 = r.to_json(Version::V0_4_0);
        assert_eq!(v0["cniVersion"], "0.4.0");
        assert_eq!(v0["ips"][0]["version"], "4");
        assert_eq!(v0["ips"][1]["version"], "6");
        assert_eq!(r.to_json(Version::V1_0_0)["ips"][0].get("version"), None);
        for v in [v0, v1] {
            assert_eq!(CniResult::from_json(&v), Ok(r.clone()), "{v}");
        }
        // An empty result is just its version.
        assert_eq!(
            CniResult::default().to_json(Version::V1_0_0),
            serde_json::json!({"cniVersion": "1.0.0"})
        );
    }

    #[test]
    fn a_prev_result_it_cannot_read_is_refused() {
        let cases: Vec<(serde_json::Value, Code, &str)> = vec![
            (
                serde_json::json!({"cniVersion": "0.2.0"}),
                Code::IncompatibleVersion,
                "\"0.2.0\"",
            ),
            (serde_json::json!({"ips": []}), Code::Decode, "cniVersion"),
            (
                serde_json::json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.5"}]}),
                Code::Decode,
                "address \"10.0.0.5\" is not a CIDR",
            ),
            (
                serde_json::json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.5/24", "interface": 2}]}),
                Code::Decode,
                "names interface Some(2), and there are 0",
            ),
            (
                serde_json::json!({"cniVersion": "1.0.0", "routes": [{"dst": "default"}]}),
                Code::Decode,
                "route \"default\"",
            ),
        ];
        for (json, code, expected) in cases {
            let e = CniResult::from_json(&json).expect_err(&json.to_string());
            assert_eq!(e.code, code, "{json}: {e}");
            assert!(e.details.contains(expected), "{json}: {e}");
        }
    }
}
