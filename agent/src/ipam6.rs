//! IPv6 address management of dual-stack networks (`network create
//! --ipv6`): the subnet, the gateway, and the addresses endpoints hold. As
//! `ipam` does for IPv4, with IPv6's rules:
//! - a subnet is a network address with a prefix of /48 to /120, outside
//!   the ranges that are never a container network (`::/8` with loopback
//!   and IPv4-mapped addresses, link-local `fe80::/10`, multicast);
//! - the subnet's first address (the subnet-router anycast address, RFC
//!   4291 2.6.1) and the gateway are never handed out; there is no
//!   broadcast address;
//! - no subnet overlaps another network's or a route of the host;
//! - picked addresses come in order from a rotating cursor, so a released
//!   address is not reused at once.
//!
//! Without a given subnet a network gets a unique local /64 (RFC 4193):
//! `fd` and a 40-bit global ID from the network's ID, subnet 0, moved on
//! while it overlaps something.

use std::{collections::BTreeSet, net::Ipv6Addr};

use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};

use crate::ipam::IpamError;

/// Prefix lengths a network's IPv6 subnet may have.
pub const PREFIX_LENS: std::ops::RangeInclusive<u8> = 48..=120;

/// Ranges no network may use.
pub const RESERVED_RANGES: [(&str, &str); 3] = [
    ("::/8", "unspecified, loopback and IPv4-mapped addresses"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
];

/// One dual-stack network's IPv6 address space and what is handed out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipam6 {
    pub subnet: Ipv6Net,
    pub gateway: Ipv6Addr,
    /// Addresses held by endpoints (never the gateway).
    pub allocated: BTreeSet<Ipv6Addr>,
    /// The last address picked; the next pick starts after it.
    pub cursor: Option<Ipv6Addr>,
}

impl Ipam6 {
    /// Checks the subnet and gateway (default: the subnet's first host,
    /// `::1` in it).
    pub fn new(subnet: Ipv6Net, gateway: Option<Ipv6Addr>) -> Result<Self, IpamError> {
        if !PREFIX_LENS.contains(&subnet.prefix_len()) {
            return Err(IpamError::Subnet6Size { subnet });
        }
        if subnet.trunc() != subnet {
            return Err(IpamError::NotNetworkAddress6 {
                given: subnet,
                canonical: subnet.trunc(),
            });
        }
        check_not_reserved(subnet)?;
        let gateway = gateway.unwrap_or_else(|| offset(subnet, 1));
        if !usable(subnet, gateway) {
            return Err(IpamError::Gateway6 { gateway, subnet });
        }
        Ok(Self {
            subnet,
            gateway,
            allocated: BTreeSet::new(),
            cursor: None,
        })
    }

    /// Hands out `requested` (a static address) or the next free address.
    pub fn allocate(&mut self, requested: Option<Ipv6Addr>) -> Result<Ipv6Addr, IpamError> {
        let ip = match requested {
            Some(ip) => {
                if !self.subnet.contains(&ip) {
                    return Err(IpamError::NotInSubnet6 { ip });
                }
                if !usable(self.subnet, ip) || ip == self.gateway {
                    return Err(IpamError::Reserved6 {
                        ip,
                        subnet: self.subnet,
                    });
                }
                if self.allocated.contains(&ip) {
                    return Err(IpamError::InUse6 { ip });
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
    pub fn release(&mut self, ip: Ipv6Addr) {
        self.allocated.remove(&ip);
    }

    /// The first free usable address after the cursor, wrapping around
    /// (a subnet has at most 2^80 addresses; the walk stops at the first
    /// free one, and at most `allocated.len() + 2` are taken).
    fn next_free(&self) -> Result<Ipv6Addr, IpamError> {
        let first = u128::from(self.subnet.network());
        let last = u128::from(self.subnet.broadcast());
        let start = self
            .cursor
            .map(u128::from)
            .filter(|c| (first..=last).contains(c))
            .map_or(first, |c| c.wrapping_add(1));
        let tries = self.allocated.len() as u128 + 3;
        let span = last - first + 1;
        (0..tries.min(span))
            .map(|i| Ipv6Addr::from(first + (start - first + i) % span))
            .find(|ip| {
                usable(self.subnet, *ip) && *ip != self.gateway && !self.allocated.contains(ip)
            })
            .ok_or(IpamError::Exhausted6 { pool: self.subnet })
    }
}

/// The address `n` past the subnet's first.
fn offset(subnet: Ipv6Net, n: u128) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(subnet.network()) + n)
}

/// Whether `ip` may be a host's in `subnet` (not the subnet-router
/// anycast address).
fn usable(subnet: Ipv6Net, ip: Ipv6Addr) -> bool {
    subnet.contains(&ip) && ip != subnet.network()
}

/// Refuses a subnet that overlaps a [`RESERVED_RANGES`] range.
pub fn check_not_reserved(subnet: Ipv6Net) -> Result<(), IpamError> {
    for (range, what) in RESERVED_RANGES {
        let r: Ipv6Net = range.parse().expect("a valid built-in range");
        if r.contains(&subnet.network()) || subnet.contains(&r.network()) {
            return Err(IpamError::ReservedRange6 {
                subnet,
                range,
                what,
            });
        }
    }
    Ok(())
}

/// Fails if `subnet` overlaps one of `taken` (named for the message).
pub fn check_free(subnet: Ipv6Net, taken: &[(Ipv6Net, String)]) -> Result<(), IpamError> {
    match taken
        .iter()
        .find(|(t, _)| t.contains(&subnet) || subnet.contains(t))
    {
        Some((_, other)) => Err(IpamError::Overlap6 {
            subnet,
            other: other.clone(),
        }),
        None => Ok(()),
    }
}

/// A unique local /64 for the network with ID `id` (hex digits) that
/// overlaps none of `taken`: `fd` + 40 bits of the ID, then the next
/// global IDs in turn.
pub fn pick_subnet(id: &str, taken: &[(Ipv6Net, String)]) -> Result<Ipv6Net, IpamError> {
    let seed = u64::from_str_radix(id.get(..10).unwrap_or("0"), 16).unwrap_or(0);
    (0..1024u64)
        .map(|i| {
            let global = (seed + i) & 0xff_ffff_ffff;
            let prefix = (0xfdu128 << 120) | (u128::from(global) << 80);
            Ipv6Net::new(Ipv6Addr::from(prefix), 64).expect("a /64")
        })
        .find(|s| check_free(*s, taken).is_ok())
        .ok_or(IpamError::NoPool6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn subnets_are_checked() {
        for (bad, what) in [
            ("fd00::/40", "size"),
            ("fd00::/124", "size"),
            ("fd00::/121", "size"),
            ("fd00::1/64", "not a network address"),
            ("::ffff:0:0/96", "reserved"),
            ("fe80::/64", "reserved"),
            ("ff02::/64", "reserved"),
        ] {
            assert!(Ipam6::new(net(bad), None).is_err(), "{bad}: {what}");
        }
        let ok = Ipam6::new(net("2001:db8:1::/64"), None).unwrap();
        assert_eq!(ok.gateway, ip("2001:db8:1::1"));
        assert!(matches!(
            Ipam6::new(net("2001:db8:1::/64"), Some(ip("2001:db8:1::"))),
            Err(IpamError::Gateway6 { .. })
        ));
        assert!(matches!(
            Ipam6::new(net("2001:db8:1::/64"), Some(ip("2001:db8:2::1"))),
            Err(IpamError::Gateway6 { .. })
        ));
    }

    #[test]
    fn addresses_rotate_and_are_never_handed_out_twice() {
        let mut n = Ipam6::new(net("fd00:1::/120"), None).unwrap();
        let got: Vec<_> = (0..254).map(|_| n.allocate(None).unwrap()).collect();
        assert_eq!(got[0], ip("fd00:1::2"), "after the anycast and gateway");
        assert_eq!(got[253], ip("fd00:1::ff"));
        assert!(matches!(
            n.allocate(None),
            Err(IpamError::Exhausted6 { .. })
        ));
        n.release(ip("fd00:1::3"));
        assert_eq!(n.allocate(None).unwrap(), ip("fd00:1::3"));
        let mut n = Ipam6::new(net("fd00:1::/64"), None).unwrap();
        let a = n.allocate(None).unwrap();
        n.release(a);
        assert_ne!(n.allocate(None).unwrap(), a, "not reused at once");
        assert_eq!(
            n.allocate(Some(ip("fd00:1::99"))).unwrap(),
            ip("fd00:1::99")
        );
        assert_eq!(
            n.allocate(Some(ip("fd00:1::99"))),
            Err(IpamError::InUse6 {
                ip: ip("fd00:1::99")
            })
        );
        for bad in ["fd00:1::", "fd00:1::1"] {
            assert!(matches!(
                n.allocate(Some(ip(bad))),
                Err(IpamError::Reserved6 { .. })
            ));
        }
        assert!(matches!(
            n.allocate(Some(ip("fd00:2::5"))),
            Err(IpamError::NotInSubnet6 { .. })
        ));
    }

    #[test]
    fn picked_subnets_are_unique_local_and_free() {
        let id = "0123456789abcdef";
        let first = pick_subnet(id, &[]).unwrap();
        assert_eq!(first, net("fd01:2345:6789::/64"));
        let taken = vec![(net("fd01:2345:6789::/48"), "network a".to_owned())];
        let second = pick_subnet(id, &taken).unwrap();
        assert_eq!(second, net("fd01:2345:678a::/64"));
        assert!(check_free(first, &taken).is_err());
    }
}
