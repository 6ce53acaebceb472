//! IP address management: which subnet a new network gets, and which
//! address a new endpoint gets. Pure logic over the state; the agent
//! persists the results.
//!
//! Invariants kept for every network:
//! - subnets never overlap each other or a route of the host (default
//!   routes aside), checked for given and picked subnets alike;
//! - the gateway, the network address and the broadcast address are never
//!   handed to an endpoint, and no address is handed out twice;
//! - picked addresses come from the ip-range (the subnet when none), in
//!   order from a rotating cursor, so a released address is not reused at
//!   once (a late packet for the old endpoint would reach the new one).

use std::{collections::BTreeSet, net::Ipv4Addr};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Address pools new networks are carved from when no subnet is given:
/// Docker's defaults (172.17-31.0.0/16, then 192.168.0.0/16 in /20s).
pub const DEFAULT_POOLS: [(&str, u8); 2] = [("172.17.0.0/16", 16), ("192.168.0.0/16", 20)];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IpamError {
    #[error(
        "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network"
    )]
    NoPool,
    #[error(
        "invalid pool request: Pool overlaps with other one on this address space ({subnet} overlaps {other})"
    )]
    Overlap { subnet: Ipv4Net, other: String },
    #[error("invalid subnet {subnet}: prefix length must be between 8 and 30")]
    SubnetSize { subnet: Ipv4Net },
    #[error("invalid subnet {given}: it is not a network address (did you mean {canonical}?)")]
    NotNetworkAddress { given: Ipv4Net, canonical: Ipv4Net },
    #[error("gateway {gateway} is not usable in subnet {subnet}")]
    Gateway { gateway: Ipv4Addr, subnet: Ipv4Net },
    #[error("ip-range {range} is not inside subnet {subnet}")]
    Range { range: Ipv4Net, subnet: Ipv4Net },
    #[error("no configured subnet contains IP address {ip}")]
    NotInSubnet { ip: Ipv4Addr },
    #[error("IP address {ip} is the gateway, network or broadcast address of {subnet}")]
    Reserved { ip: Ipv4Addr, subnet: Ipv4Net },
    #[error("Address already in use: {ip}")]
    InUse { ip: Ipv4Addr },
    #[error("no available addresses on this pool ({pool})")]
    Exhausted { pool: Ipv4Net },
    #[error(
        "invalid subnet {subnet}: it overlaps {range} ({what}), which is never a container network"
    )]
    ReservedRange {
        subnet: Ipv4Net,
        range: &'static str,
        what: &'static str,
    },
    #[error("invalid subnet {subnet}: an IPv6 prefix length must be between 48 and 120")]
    Subnet6Size { subnet: ipnet::Ipv6Net },
    #[error("invalid subnet {given}: it is not a network address (did you mean {canonical}?)")]
    NotNetworkAddress6 {
        given: ipnet::Ipv6Net,
        canonical: ipnet::Ipv6Net,
    },
    #[error("gateway {gateway} is not usable in subnet {subnet}")]
    Gateway6 {
        gateway: std::net::Ipv6Addr,
        subnet: ipnet::Ipv6Net,
    },
    #[error("no configured subnet contains IP address {ip}")]
    NotInSubnet6 { ip: std::net::Ipv6Addr },
    #[error("IP address {ip} is the gateway or the subnet-router anycast address of {subnet}")]
    Reserved6 {
        ip: std::net::Ipv6Addr,
        subnet: ipnet::Ipv6Net,
    },
    #[error("Address already in use: {ip}")]
    InUse6 { ip: std::net::Ipv6Addr },
    #[error("no available addresses on this pool ({pool})")]
    Exhausted6 { pool: ipnet::Ipv6Net },
    #[error(
        "invalid pool request: Pool overlaps with other one on this address space ({subnet} overlaps {other})"
    )]
    Overlap6 {
        subnet: ipnet::Ipv6Net,
        other: String,
    },
    #[error(
        "invalid subnet {subnet}: it overlaps {range} ({what}), which is never a container network"
    )]
    ReservedRange6 {
        subnet: ipnet::Ipv6Net,
        range: &'static str,
        what: &'static str,
    },
    #[error(
        "could not find an available, non-overlapping IPv6 unique local /64 to assign to the network"
    )]
    NoPool6,
    #[error(
        "IPv6 address {ip} requested, but network {network} has IPv6 disabled (network create --ipv6)"
    )]
    Ipv6Disabled {
        ip: std::net::Ipv6Addr,
        network: String,
    },
}

/// Ranges no network may use: they are not routable unicast (this host,
/// loopback, link-local, multicast, reserved), and a bridge address there
/// either fails in netlink or breaks the host.
pub const RESERVED_RANGES: [(&str, &str); 5] = [
    ("0.0.0.0/8", "\"this network\""),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved, and the limited broadcast"),
];

/// Refuses a subnet that overlaps a [`RESERVED_RANGES`] range.
pub fn check_not_reserved(subnet: Ipv4Net) -> Result<(), IpamError> {
    for (range, what) in RESERVED_RANGES {
        let r: Ipv4Net = range.parse().expect("a valid built-in range");
        if r.contains(&subnet.network()) || subnet.contains(&r.network()) {
            return Err(IpamError::ReservedRange {
                subnet,
                range,
                what,
            });
        }
    }
    Ok(())
}

/// One network's address space and what is handed out of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkIpam {
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// Where picked addresses come from; static addresses may be anywhere
    /// in the subnet (Docker's rule).
    pub ip_range: Option<Ipv4Net>,
    /// Addresses held by endpoints (never the gateway).
    pub allocated: BTreeSet<Ipv4Addr>,
    /// The last address picked; the next pick starts after it.
    pub cursor: Option<Ipv4Addr>,
}

impl NetworkIpam {
    /// Checks a network's configuration and fills in the gateway (the
    /// subnet's first address) when none is given.
    pub fn new(
        subnet: Ipv4Net,
        gateway: Option<Ipv4Addr>,
        ip_range: Option<Ipv4Net>,
    ) -> Result<Self, IpamError> {
        if !(8..=30).contains(&subnet.prefix_len()) {
            return Err(IpamError::SubnetSize { subnet });
        }
        if subnet.trunc() != subnet {
            return Err(IpamError::NotNetworkAddress {
                given: subnet,
                canonical: subnet.trunc(),
            });
        }
        check_not_reserved(subnet)?;
        let gateway = gateway.unwrap_or_else(|| first_host(subnet));
        if !usable(subnet, gateway) {
            return Err(IpamError::Gateway { gateway, subnet });
        }
        if let Some(range) = ip_range
            && (!subnet.contains(&range) || range.trunc() != range)
        {
            return Err(IpamError::Range { range, subnet });
        }
        Ok(Self {
            subnet,
            gateway,
            ip_range,
            allocated: BTreeSet::new(),
            cursor: None,
        })
    }

    /// Hands out `requested` (a static address) or the next free address.
    pub fn allocate(&mut self, requested: Option<Ipv4Addr>) -> Result<Ipv4Addr, IpamError> {
        let ip = match requested {
            Some(ip) => {
                if !self.subnet.contains(&ip) {
                    return Err(IpamError::NotInSubnet { ip });
                }
                if !usable(self.subnet, ip) || ip == self.gateway {
                    return Err(IpamError::Reserved {
                        ip,
                        subnet: self.subnet,
                    });
                }
                if self.allocated.contains(&ip) {
                    return Err(IpamError::InUse { ip });
                }
                ip
            }
            None => {
                let ip = self.next_free()?;
                self.cursor = Some(ip);
                ip
            }
        };
        self.allocated.insert(ip);
        Ok(ip)
    }

    /// Gives an address back; releasing a free address is a no-op.
    pub fn release(&mut self, ip: Ipv4Addr) {
        self.allocated.remove(&ip);
    }

    /// The first free usable address after the cursor, wrapping around.
    fn next_free(&self) -> Result<Ipv4Addr, IpamError> {
        let pool = self.ip_range.unwrap_or(self.subnet);
        let (first, last) = (u32::from(pool.network()), u32::from(pool.broadcast()));
        let start = self
            .cursor
            .map(u32::from)
            .filter(|c| (first..=last).contains(c))
            .map_or(first, |c| c.wrapping_add(1));
        let candidates = (start..=last).chain(first..start);
        candidates
            .map(Ipv4Addr::from)
            .find(|ip| {
                usable(self.subnet, *ip) && *ip != self.gateway && !self.allocated.contains(ip)
            })
            .ok_or(IpamError::Exhausted { pool })
    }
}

/// The first host address of a subnet (the default gateway).
fn first_host(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + 1)
}

/// Whether `ip` is a host address of `subnet` (not its network or
/// broadcast address).
fn usable(subnet: Ipv4Net, ip: Ipv4Addr) -> bool {
    subnet.contains(&ip) && ip != subnet.network() && ip != subnet.broadcast()
}

/// Fails if `subnet` overlaps one of `taken` (named for the message).
pub fn check_free(subnet: Ipv4Net, taken: &[(Ipv4Net, String)]) -> Result<(), IpamError> {
    match taken
        .iter()
        .find(|(t, _)| t.contains(&subnet) || subnet.contains(t))
    {
        Some((_, other)) => Err(IpamError::Overlap {
            subnet,
            other: other.clone(),
        }),
        None => Ok(()),
    }
}

/// The first subnet of the default pools that overlaps none of `taken`.
pub fn pick_subnet(taken: &[(Ipv4Net, String)]) -> Result<Ipv4Net, IpamError> {
    for (base, size) in DEFAULT_POOLS {
        let base: Ipv4Net = base.parse().expect("a valid built-in pool");
        // 172.17.0.0/16 stands for 172.17.0.0-172.31.255.255 in /16s.
        let span: Ipv4Net = if base.prefix_len() == 16 && size == 16 {
            Ipv4Net::new(Ipv4Addr::new(172, 16, 0, 0), 12).expect("valid")
        } else {
            base
        };
        let subnets = span.subnets(size).expect("pool size fits");
        for subnet in subnets.filter(|s| *s >= base) {
            if check_free(subnet, taken).is_ok() {
                return Ok(subnet);
            }
        }
    }
    Err(IpamError::NoPool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_ranges_are_refused() {
        for bad in [
            "127.0.0.0/16",
            "0.0.0.0/8",
            "169.254.0.0/24",
            "224.0.0.0/8",
            "239.1.0.0/16",
            "240.0.0.0/8",
            "192.0.0.0/8",
        ] {
            let subnet: Ipv4Net = bad.parse().unwrap();
            let err = NetworkIpam::new(subnet, None, None);
            if bad == "192.0.0.0/8" {
                assert!(err.is_ok(), "{bad}");
            } else {
                assert!(
                    matches!(err, Err(IpamError::ReservedRange { .. })),
                    "{bad}: {err:?}"
                );
            }
        }
    }

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn subnets_come_from_the_default_pools_without_overlap() {
        assert_eq!(pick_subnet(&[]).unwrap(), net("172.17.0.0/16"));
        let taken = vec![
            (net("172.17.0.0/16"), "docker0".into()),
            (net("172.18.5.0/24"), "route".into()),
        ];
        assert_eq!(pick_subnet(&taken).unwrap(), net("172.19.0.0/16"));
        // A host route covering the whole first pool moves on to 192.168/20s.
        let taken = vec![
            (net("172.16.0.0/12"), "vpn".into()),
            (net("192.168.0.0/20"), "lan".into()),
        ];
        assert_eq!(pick_subnet(&taken).unwrap(), net("192.168.16.0/20"));
        let all = vec![
            (net("172.16.0.0/12"), "a".into()),
            (net("192.168.0.0/16"), "b".into()),
        ];
        assert_eq!(pick_subnet(&all), Err(IpamError::NoPool));
    }

    #[test]
    fn given_subnets_are_checked() {
        let taken = vec![(net("10.1.0.0/16"), "net a".into())];
        assert!(matches!(
            check_free(net("10.1.2.0/24"), &taken),
            Err(IpamError::Overlap { .. })
        ));
        assert!(matches!(
            check_free(net("10.0.0.0/8"), &taken),
            Err(IpamError::Overlap { .. })
        ));
        check_free(net("10.2.0.0/16"), &taken).unwrap();
        assert!(matches!(
            NetworkIpam::new(net("10.1.2.3/24"), None, None),
            Err(IpamError::NotNetworkAddress { .. })
        ));
        assert!(matches!(
            NetworkIpam::new(net("10.1.0.0/31"), None, None),
            Err(IpamError::SubnetSize { .. })
        ));
        assert!(matches!(
            NetworkIpam::new(net("10.1.0.0/24"), Some(ip("10.1.0.255")), None),
            Err(IpamError::Gateway { .. })
        ));
        assert!(matches!(
            NetworkIpam::new(net("10.1.0.0/24"), None, Some(net("10.2.0.0/28"))),
            Err(IpamError::Range { .. })
        ));
    }

    #[test]
    fn addresses_skip_gateway_and_are_never_handed_out_twice() {
        let mut n = NetworkIpam::new(net("10.9.0.0/29"), None, None).unwrap();
        assert_eq!(n.gateway, ip("10.9.0.1"));
        let got: Vec<_> = (0..5).map(|_| n.allocate(None).unwrap()).collect();
        assert_eq!(
            got,
            ["10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6"].map(ip)
        );
        assert_eq!(
            n.allocate(None),
            Err(IpamError::Exhausted {
                pool: net("10.9.0.0/29")
            })
        );
        // Released addresses come back only after the cursor wraps.
        n.release(ip("10.9.0.3"));
        assert_eq!(n.allocate(None).unwrap(), ip("10.9.0.3"));
    }

    #[test]
    fn the_cursor_rotates_past_released_addresses() {
        let mut n = NetworkIpam::new(net("10.9.0.0/24"), None, None).unwrap();
        let a = n.allocate(None).unwrap();
        n.release(a);
        assert_ne!(n.allocate(None).unwrap(), a);
    }

    #[test]
    fn static_addresses_are_honoured_and_checked() {
        let mut n = NetworkIpam::new(net("10.9.0.0/24"), None, Some(net("10.9.0.128/25"))).unwrap();
        // Static may be outside the range but inside the subnet.
        assert_eq!(n.allocate(Some(ip("10.9.0.7"))).unwrap(), ip("10.9.0.7"));
        assert_eq!(
            n.allocate(Some(ip("10.9.0.7"))),
            Err(IpamError::InUse { ip: ip("10.9.0.7") })
        );
        assert!(matches!(
            n.allocate(Some(ip("10.9.1.7"))),
            Err(IpamError::NotInSubnet { .. })
        ));
        for reserved in ["10.9.0.1", "10.9.0.0", "10.9.0.255"] {
            assert!(matches!(
                n.allocate(Some(ip(reserved))),
                Err(IpamError::Reserved { .. })
            ));
        }
        // Picked addresses come from the range.
        assert_eq!(n.allocate(None).unwrap(), ip("10.9.0.128"));
    }
}
