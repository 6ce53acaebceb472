//! Publication specs: `[HOSTIP:]HOSTPORT->CONTAINERIP:CONTAINERPORT[/tcp|/udp]`,
//! IPv6 addresses in brackets (`[::1]:5000->[fd00::2]:80`).

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    str::FromStr,
};

use serde::{Deserialize, Serialize};

/// Transport protocol of a publication.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// IANA protocol number, as the datapath keys on it.
    pub const fn number(self) -> u8 {
        match self {
            Proto::Tcp => datapath_common::IPPROTO_TCP,
            Proto::Udp => datapath_common::IPPROTO_UDP,
        }
    }

    /// The inverse of [`Proto::number`].
    pub const fn from_number(n: u8) -> Option<Self> {
        match n {
            datapath_common::IPPROTO_TCP => Some(Proto::Tcp),
            datapath_common::IPPROTO_UDP => Some(Proto::Udp),
            _ => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed publication spec. `host_ip` 0.0.0.0 means every local IPv4
/// address (and, to a dual-stack container, every IPv6 one too, as
/// Docker's `-p 8080:80`); `::` every local IPv6 address.
///
/// Invariant (checked by parsing): an IPv4 host address goes with an IPv4
/// container address. An IPv6 host address may go with either: a
/// container's IPv4 address stands for the container, whose IPv6 address
/// (or, on `::1`, its IPv4-mapped one) the agent resolves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortSpec {
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub container_ip: IpAddr,
    pub container_port: u16,
    pub proto: Proto,
}

impl PortSpec {
    /// Whether the host side is an IPv6 address (`::` included).
    pub fn on_ipv6(&self) -> bool {
        self.host_ip.is_ipv6()
    }

    /// Whether the host side is `::1`: reachable from the host's own
    /// sockets only.
    pub fn on_loopback6(&self) -> bool {
        self.host_ip == IpAddr::V6(Ipv6Addr::LOCALHOST)
    }
}

/// `ip:port`, IPv6 in brackets (`[::1]:5000`), as Docker prints host
/// ports.
pub fn host_port_str(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

/// An address as it leads `:port`: IPv6 in brackets (`[::]`).
pub fn bracketed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    }
}

/// Why a spec was rejected. Every message names the offending part and the
/// spec it came from.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error(
        "invalid publication {spec:?}: expected [HOSTIP:]HOSTPORT->CONTAINERIP:CONTAINERPORT[/tcp|/udp]"
    )]
    Shape { spec: String },
    #[error("invalid {what} {value:?} in {spec:?}: must be a number from 1 to 65535")]
    Port {
        what: &'static str,
        value: String,
        spec: String,
    },
    #[error("invalid {what} {value:?} in {spec:?}: {reason}")]
    Address {
        what: &'static str,
        value: String,
        spec: String,
        reason: &'static str,
    },
    #[error("unknown protocol {value:?} in {spec:?}: expected tcp or udp")]
    Proto { value: String, spec: String },
    #[error(
        "invalid publication {spec:?}: an IPv4 host address cannot reach an IPv6 container address (netagent does not translate between the families)"
    )]
    Family { spec: String },
}

impl FromStr for PortSpec {
    type Err = SpecError;

    fn from_str(spec: &str) -> Result<Self, SpecError> {
        let shape = || SpecError::Shape {
            spec: spec.to_owned(),
        };
        let (host, container) = spec.split_once("->").ok_or_else(shape)?;
        let (container, proto) = match container.rsplit_once('/') {
            Some((c, p)) => (c, parse_proto(p, spec)?),
            None => (container, Proto::Tcp),
        };
        let (container_ip, container_port) = container.rsplit_once(':').ok_or_else(shape)?;
        let container_ip = parse_ip(container_ip, "container IP", spec, false)?;
        let container_port = parse_port(container_port, "container port", spec)?;
        let (host_ip, host_port) = match host.rsplit_once(':') {
            Some((ip, port)) => (parse_ip(ip, "host IP", spec, true)?, port),
            // Every address of the container's family.
            None if container_ip.is_ipv6() => (IpAddr::V6(Ipv6Addr::UNSPECIFIED), host),
            None => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), host),
        };
        let host_port = parse_port(host_port, "host port", spec)?;
        if host_ip.is_ipv4() && container_ip.is_ipv6() {
            return Err(SpecError::Family {
                spec: spec.to_owned(),
            });
        }
        Ok(PortSpec {
            host_ip,
            host_port,
            container_ip,
            container_port,
            proto,
        })
    }
}

impl fmt::Display for PortSpec {
    /// The canonical form, which parses back to the same spec.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}->{}/{}",
            host_port_str(self.host_ip, self.host_port),
            host_port_str(self.container_ip, self.container_port),
            self.proto
        )
    }
}

fn parse_proto(value: &str, spec: &str) -> Result<Proto, SpecError> {
    match value.to_ascii_lowercase().as_str() {
        "tcp" => Ok(Proto::Tcp),
        "udp" => Ok(Proto::Udp),
        _ => Err(SpecError::Proto {
            value: value.to_owned(),
            spec: spec.to_owned(),
        }),
    }
}

fn parse_port(value: &str, what: &'static str, spec: &str) -> Result<u16, SpecError> {
    // Digits only: u16::from_str would accept "+80".
    match value.parse::<u16>() {
        Ok(port) if port != 0 && value.bytes().all(|b| b.is_ascii_digit()) => Ok(port),
        _ => Err(SpecError::Port {
            what,
            value: value.to_owned(),
            spec: spec.to_owned(),
        }),
    }
}

/// Parses an IPv4 address, or an IPv6 one in brackets. A host IP may be
/// the unspecified address (every local address of its family) or a
/// loopback one; a container IP must be a unicast address the host can
/// forward to.
fn parse_ip(value: &str, what: &'static str, spec: &str, host: bool) -> Result<IpAddr, SpecError> {
    let err = |reason| SpecError::Address {
        what,
        value: value.to_owned(),
        spec: spec.to_owned(),
        reason,
    };
    let ip: IpAddr = match value.strip_prefix('[') {
        Some(inner) => {
            let inner = inner
                .strip_suffix(']')
                .ok_or_else(|| err("an IPv6 address must be in brackets: [ADDRESS]"))?;
            IpAddr::V6(inner.parse().map_err(|_| err("not an IPv6 address"))?)
        }
        None if value.contains(':') => {
            return Err(err("an IPv6 address must be in brackets: [ADDRESS]"));
        }
        None => IpAddr::V4(value.parse().map_err(|_| err("not an IPv4 address"))?),
    };
    let unicast = match ip {
        IpAddr::V4(v4) => !v4.is_multicast() && !v4.is_broadcast(),
        IpAddr::V6(v6) => {
            !v6.is_multicast() && v6.to_ipv4_mapped().is_none() && !v6.is_unicast_link_local()
        }
    };
    if !unicast {
        return Err(err(
            "must be a unicast address (not multicast, IPv4-mapped or link-local)",
        ));
    }
    if ip.is_unspecified() && !host {
        return Err(err("must be a unicast address"));
    }
    if ip.is_loopback() && !host {
        return Err(err("a loopback address cannot be forwarded to"));
    }
    Ok(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> PortSpec {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_every_accepted_form() {
        let cases = [
            ("5000->172.17.0.2:80", "0.0.0.0:5000->172.17.0.2:80/tcp"),
            (
                "127.0.0.1:5000->172.17.0.2:5000/udp",
                "127.0.0.1:5000->172.17.0.2:5000/udp",
            ),
            (
                "10.0.0.1:1->10.0.0.2:65535/TCP",
                "10.0.0.1:1->10.0.0.2:65535/tcp",
            ),
            (
                "0.0.0.0:8080->10.1.2.3:8080/Udp",
                "0.0.0.0:8080->10.1.2.3:8080/udp",
            ),
            (
                "[::1]:5000->172.17.0.2:5000",
                "[::1]:5000->172.17.0.2:5000/tcp",
            ),
            (
                "[2001:db8::1]:5000->172.17.0.2:5000/udp",
                "[2001:db8::1]:5000->172.17.0.2:5000/udp",
            ),
            ("8080->[fd00::2]:80", "[::]:8080->[fd00::2]:80/tcp"),
            ("[::]:8080->[FD00::2]:80/udp", "[::]:8080->[fd00::2]:80/udp"),
        ];
        for (input, canonical) in cases {
            let spec = ok(input);
            assert_eq!(spec.to_string(), canonical, "{input}");
            assert_eq!(ok(canonical), spec, "round trip of {input}");
        }
    }

    #[test]
    fn rejects_malformed_specs_with_a_message_naming_the_part() {
        let cases = [
            ("5000", "expected [HOSTIP:]HOSTPORT->"),
            ("5000:80", "expected [HOSTIP:]HOSTPORT->"),
            ("5000->172.17.0.2", "expected [HOSTIP:]HOSTPORT->"),
            ("0->172.17.0.2:80", "invalid host port \"0\""),
            ("70000->172.17.0.2:80", "invalid host port \"70000\""),
            ("+80->172.17.0.2:80", "invalid host port \"+80\""),
            ("80->172.17.0.2:0", "invalid container port \"0\""),
            ("80->172.17.0.2:http", "invalid container port \"http\""),
            ("80->172.17.0.2:80/sctp", "unknown protocol \"sctp\""),
            ("80->172.17.0.2:80/", "unknown protocol \"\""),
            ("1.2.3:80->172.17.0.2:80", "invalid host IP \"1.2.3\""),
            ("::1:80->172.17.0.2:80", "must be in brackets"),
            ("[::1:80->172.17.0.2:80", "must be in brackets"),
            ("[::g]:80->172.17.0.2:80", "not an IPv6 address"),
            ("[ff02::1]:80->172.17.0.2:80", "must be a unicast address"),
            ("[fe80::1]:80->172.17.0.2:80", "must be a unicast address"),
            (
                "[::ffff:1.2.3.4]:80->172.17.0.2:80",
                "must be a unicast address",
            ),
            ("80->[::]:80", "invalid container IP \"[::]\""),
            ("80->[::1]:80", "a loopback address cannot be forwarded to"),
            (
                "127.0.0.1:80->[fd00::2]:80",
                "cannot reach an IPv6 container address",
            ),
            (
                "0.0.0.0:80->[fd00::2]:80",
                "cannot reach an IPv6 container address",
            ),
            ("80->0.0.0.0:80", "invalid container IP \"0.0.0.0\""),
            (
                "80->127.0.0.1:80",
                "a loopback address cannot be forwarded to",
            ),
            ("80->224.0.0.1:80", "must be a unicast address"),
            (
                "255.255.255.255:80->10.0.0.2:80",
                "must be a unicast address",
            ),
        ];
        for (input, expected) in cases {
            let err = input.parse::<PortSpec>().expect_err(input).to_string();
            assert!(err.contains(expected), "{input}: {err}");
            assert!(
                err.contains(input),
                "{input}: message must quote the spec: {err}"
            );
        }
    }
}
