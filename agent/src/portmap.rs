//! Docker's `-p` grammar, `[IP:][HOSTPORT[-END]:]CPORT[-END][/PROTO]`, and
//! `--expose PORT[-END][/PROTO]`, with Docker's error texts.
//!
//! A mapping expands to one [`HostChoice`] per container port: a fixed host
//! port, "any free port in this range" (a host range with one container
//! port), or "any free ephemeral port" (no host port). The agent resolves
//! choices against publications and host sockets (see `hostports.rs`).

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr},
    str::FromStr,
};

use serde::{Deserialize, Serialize};

use crate::spec::Proto;

/// How one container port gets its host port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostChoice {
    Fixed(u16),
    /// Any free port of `lo..=hi`.
    AnyIn(u16, u16),
    /// Any free port of the kernel's ephemeral range.
    Ephemeral,
}

/// An inclusive port range; a single port is `lo == hi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    /// How many ports (never 0: a range holds at least its `lo`).
    pub fn count(self) -> u32 {
        u32::from(self.hi) - u32::from(self.lo) + 1
    }

    pub fn ports(self) -> impl Iterator<Item = u16> {
        self.lo..=self.hi
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// A parsed `-p` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// 0.0.0.0 when not given: every local address (IPv6 too for a
    /// dual-stack container). An IPv6 one is given in brackets.
    pub host_ip: IpAddr,
    /// `None`: a random ephemeral port per container port.
    pub host: Option<PortRange>,
    pub container: PortRange,
    pub proto: Proto,
}

/// A parsed `--expose` value (or the container side of a `-p`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ExposedPorts {
    pub ports: PortRange,
    pub proto: Proto,
}

/// Docker's wording for each mistake (`nat.ParsePortSpec`), plus the
/// value it was found in.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortMapError {
    #[error("invalid containerPort: {0}")]
    ContainerPort(String),
    #[error("invalid hostPort: {0}")]
    HostPort(String),
    #[error("invalid proto: {0}")]
    Proto(String),
    #[error("invalid IP address: {0}")]
    Ip(String),
    #[error("invalid IP address {0}: an IPv6 address must be in brackets, as in [::1]:8080:80")]
    Ipv6(String),
    #[error("invalid ranges specified for container and host Ports: {container} and {host}")]
    Ranges { container: String, host: String },
    #[error("no port specified: {0}<empty>")]
    Empty(String),
}

fn parse_proto(value: &str) -> Result<Proto, PortMapError> {
    match value.to_ascii_lowercase().as_str() {
        "tcp" => Ok(Proto::Tcp),
        "udp" => Ok(Proto::Udp),
        _ => Err(PortMapError::Proto(value.to_owned())),
    }
}

/// `N` or `N-M` with `1 <= N <= M <= 65535`.
fn parse_range(value: &str, err: fn(String) -> PortMapError) -> Result<PortRange, PortMapError> {
    let port = |s: &str| match s.parse::<u16>() {
        Ok(p) if p != 0 && !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => Err(err(value.to_owned())),
    };
    let (lo, hi) = match value.split_once('-') {
        Some((lo, hi)) => (port(lo)?, port(hi)?),
        None => {
            let p = port(value)?;
            (p, p)
        }
    };
    if lo > hi {
        return Err(err(value.to_owned()));
    }
    Ok(PortRange { lo, hi })
}

/// Splits a trailing `/proto` off (tcp when absent).
fn split_proto(value: &str) -> Result<(&str, Proto), PortMapError> {
    match value.rsplit_once('/') {
        Some((rest, p)) => Ok((rest, parse_proto(p)?)),
        None => Ok((value, Proto::Tcp)),
    }
}

impl FromStr for ExposedPorts {
    type Err = PortMapError;

    fn from_str(value: &str) -> Result<Self, PortMapError> {
        let (ports, proto) = split_proto(value)?;
        if ports.is_empty() {
            return Err(PortMapError::Empty(value.to_owned()));
        }
        Ok(Self {
            ports: parse_range(ports, PortMapError::ContainerPort)?,
            proto,
        })
    }
}

impl fmt::Display for ExposedPorts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ports, self.proto)
    }
}

impl FromStr for PortMapping {
    type Err = PortMapError;

    fn from_str(value: &str) -> Result<Self, PortMapError> {
        let (rest, proto) = split_proto(value)?;
        // `[IPV6]:HOST:CONTAINER`: the brackets hold the address's colons.
        let (ip, rest) = match rest.strip_prefix('[') {
            Some(bracketed) => {
                let (ip, after) = bracketed
                    .split_once(']')
                    .ok_or_else(|| PortMapError::Ip(rest.to_owned()))?;
                let after = after
                    .strip_prefix(':')
                    .ok_or_else(|| PortMapError::Ip(rest.to_owned()))?;
                (Some(ip), after)
            }
            None => (None, rest),
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let (ip, host, container) = match (ip, parts.as_slice()) {
            (None, [c]) => ("", "", *c),
            (None, [h, c]) => ("", *h, *c),
            (None, [ip, h, c]) => (*ip, *h, *c),
            (Some(ip), [h, c]) => (ip, *h, *c),
            _ => return Err(PortMapError::Ipv6(value.to_owned())),
        };
        if container.is_empty() {
            return Err(PortMapError::Empty(value.to_owned()));
        }
        let host_ip = if ip.is_empty() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            let parsed: IpAddr = ip.parse().map_err(|_| PortMapError::Ip(ip.to_owned()))?;
            let unicast = match parsed {
                IpAddr::V4(v4) => !v4.is_multicast() && !v4.is_broadcast(),
                IpAddr::V6(v6) => {
                    !v6.is_multicast()
                        && v6.to_ipv4_mapped().is_none()
                        && !v6.is_unicast_link_local()
                }
            };
            if !unicast {
                return Err(PortMapError::Ip(ip.to_owned()));
            }
            parsed
        };
        let container = parse_range(container, PortMapError::ContainerPort)?;
        let host = if host.is_empty() {
            None
        } else {
            let h = parse_range(host, PortMapError::HostPort)?;
            // One container port takes any single port of a host range;
            // otherwise the lengths must match one to one.
            if container.count() != 1 && h.count() != container.count() {
                return Err(PortMapError::Ranges {
                    container: container.to_string(),
                    host: h.to_string(),
                });
            }
            Some(h)
        };
        Ok(Self {
            host_ip,
            host,
            container,
            proto,
        })
    }
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self.host.map(|h| h.to_string()).unwrap_or_default();
        match self.host_ip {
            IpAddr::V6(ip) => write!(f, "[{ip}]:{host}:{}/{}", self.container, self.proto),
            IpAddr::V4(ip) => write!(f, "{ip}:{host}:{}/{}", self.container, self.proto),
        }
    }
}

impl PortMapping {
    /// Each container port with how its host port is chosen.
    pub fn expand(&self) -> Vec<(HostChoice, u16)> {
        self.container
            .ports()
            .enumerate()
            .map(|(i, cport)| {
                let choice = match self.host {
                    None => HostChoice::Ephemeral,
                    Some(h) if self.container.count() == 1 && h.lo != h.hi => {
                        HostChoice::AnyIn(h.lo, h.hi)
                    }
                    Some(h) if self.container.count() == 1 => HostChoice::Fixed(h.lo),
                    Some(h) => HostChoice::Fixed(h.lo + i as u16),
                };
                (choice, cport)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> PortMapping {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn every_docker_form_expands_as_docker_does() {
        use HostChoice::*;
        type Case<'a> = (&'a str, &'a str, &'a [(HostChoice, u16)]);
        let cases: &[Case] = &[
            ("80", "0.0.0.0", &[(Ephemeral, 80)]),
            ("8080:80", "0.0.0.0", &[(Fixed(8080), 80)]),
            ("127.0.0.1:8080:80", "127.0.0.1", &[(Fixed(8080), 80)]),
            ("127.0.0.1::80", "127.0.0.1", &[(Ephemeral, 80)]),
            ("8000-9000:5000", "0.0.0.0", &[(AnyIn(8000, 9000), 5000)]),
            (
                "8000-8002:5000-5002/udp",
                "0.0.0.0",
                &[
                    (Fixed(8000), 5000),
                    (Fixed(8001), 5001),
                    (Fixed(8002), 5002),
                ],
            ),
            (
                "5000-5001",
                "0.0.0.0",
                &[(Ephemeral, 5000), (Ephemeral, 5001)],
            ),
            ("53:53/UDP", "0.0.0.0", &[(Fixed(53), 53)]),
            ("[::1]:8080:80", "::1", &[(Fixed(8080), 80)]),
            ("[::]::80/udp", "::", &[(Ephemeral, 80)]),
            (
                "[2001:db8::1]:8000-8001:80-81",
                "2001:db8::1",
                &[(Fixed(8000), 80), (Fixed(8001), 81)],
            ),
        ];
        for (spec, ip, expected) in cases {
            let m = ok(spec);
            assert_eq!(m.host_ip.to_string(), *ip, "{spec}");
            assert_eq!(m.expand(), *expected, "{spec}");
        }
        assert_eq!(ok("53:53/UDP").proto, Proto::Udp);
        assert_eq!(ok("80").proto, Proto::Tcp);
        for spec in ["[::1]:8080:80/tcp", "[::]::80/udp", "127.0.0.1:8080:80/tcp"] {
            assert_eq!(ok(spec).to_string(), spec, "round trip");
        }
    }

    #[test]
    fn malformed_values_get_dockers_errors() {
        let cases = [
            (
                "8000:80-81",
                "invalid ranges specified for container and host Ports: 80-81 and 8000",
            ),
            (
                "8000-8002:80-81",
                "invalid ranges specified for container and host Ports: 80-81 and 8000-8002",
            ),
            ("http", "invalid containerPort: http"),
            ("0", "invalid containerPort: 0"),
            ("70000:80", "invalid hostPort: 70000"),
            ("9-1:80", "invalid hostPort: 9-1"),
            ("80/sctpx", "invalid proto: sctpx"),
            ("1.2.3:80:80", "invalid IP address: 1.2.3"),
            ("::1:80:80", "an IPv6 address must be in brackets"),
            ("[::1]80:80", "invalid IP address: [::1]80:80"),
            ("[::1:80:80", "invalid IP address: [::1:80:80"),
            ("[::g]:80:80", "invalid IP address: ::g"),
            ("[ff02::1]:80:80", "invalid IP address: ff02::1"),
            ("[::1]:1:80:80", "an IPv6 address must be in brackets"),
            ("8080:", "no port specified: 8080:<empty>"),
        ];
        for (spec, expected) in cases {
            let err = spec.parse::<PortMapping>().expect_err(spec).to_string();
            assert!(err.contains(expected), "{spec}: {err}");
        }
    }

    #[test]
    fn exposed_ports_parse() {
        let e: ExposedPorts = "8000-8002/udp".parse().unwrap();
        assert_eq!(e.ports.ports().collect::<Vec<_>>(), [8000, 8001, 8002]);
        assert_eq!(e.to_string(), "8000-8002/udp");
        assert!("x/tcp".parse::<ExposedPorts>().is_err());
    }
}
