// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The IPv6 header walk: the fixed header, then the extension headers
//! (hop-by-hop, routing, fragment, destination options) to the upper-layer
//! protocol, and an ICMPv6 message's type. Addresses are wire-order words
//! ([`Ipv6Be`], as the maps key them).
//!
//! A chain longer than [`MAX_EXT_HEADERS`], or one that runs past the
//! linear area, is malformed: callers drop it (a protocol they cannot see
//! is never guessed).

use datapath_common::{IPPROTO_ICMPV6, Ipv6Be};

use crate::{
    hdr::{ETH_HLEN, ETH_P_IPV6, EthHdr, IPV6_HLEN, Ipv6Hdr, read},
    parse::Skip,
};

/// Extension headers walked at most.
pub const MAX_EXT_HEADERS: usize = 4;

const NEXTHDR_HOP: u8 = 0;
const NEXTHDR_ROUTING: u8 = 43;
const NEXTHDR_FRAGMENT: u8 = 44;
const NEXTHDR_AUTH: u8 = 51;
const NEXTHDR_DEST: u8 = 60;

/// ICMPv6 types the datapath looks at.
pub const ICMPV6_MLD_QUERY: u8 = 130;
pub const ICMPV6_MLD_REPORT: u8 = 131;
pub const ICMPV6_MLD_DONE: u8 = 132;
pub const ICMPV6_ROUTER_SOLICIT: u8 = 133;
pub const ICMPV6_ROUTER_ADVERT: u8 = 134;
pub const ICMPV6_NEIGH_SOLICIT: u8 = 135;
pub const ICMPV6_NEIGH_ADVERT: u8 = 136;
pub const ICMPV6_REDIRECT: u8 = 137;
pub const ICMPV6_MLD2_REPORT: u8 = 143;

/// An IPv6 packet's addresses and where its upper layer starts.
#[derive(Clone, Copy)]
pub struct Ipv6 {
    pub saddr: Ipv6Be,
    pub daddr: Ipv6Be,
    /// The upper-layer protocol after the extension headers.
    pub proto: u8,
    /// Offset of the upper-layer header from the frame start.
    pub l4_off: usize,
    /// Whether a fragment header was seen.
    pub fragmented: bool,
    /// A fragment other than the first: what follows the fragment header
    /// is payload, not an upper-layer header.
    pub later_fragment: bool,
    /// Offset of the packet's end from the frame start (the frame's
    /// length for a GSO packet, whose payload length is 0).
    pub end: usize,
}

#[inline(always)]
fn words(b: [[u8; 4]; 4]) -> Ipv6Be {
    [
        u32::from_ne_bytes(b[0]),
        u32::from_ne_bytes(b[1]),
        u32::from_ne_bytes(b[2]),
        u32::from_ne_bytes(b[3]),
    ]
}

/// Parses the IPv6 header and its extension headers. `frame_len` is the
/// whole frame's length: a payload length claiming more is malformed (0
/// is a GSO packet's, larger than 64 KiB).
#[inline(always)]
pub fn ipv6(data: usize, data_end: usize, frame_len: usize) -> Result<Ipv6, Skip> {
    let eth = read::<EthHdr>(data, data_end, 0).ok_or(Skip::NotIpv6)?;
    if eth.proto != ETH_P_IPV6 {
        return Err(Skip::NotIpv6);
    }
    let ip = read::<Ipv6Hdr>(data, data_end, ETH_HLEN).ok_or(Skip::Malformed)?;
    let payload = u16::from_be_bytes(ip.payload_len) as usize;
    if ip.vtc_flow[0] >> 4 != 6 || (payload != 0 && ETH_HLEN + IPV6_HLEN + payload > frame_len) {
        return Err(Skip::Malformed);
    }
    let end = if payload == 0 {
        frame_len
    } else {
        ETH_HLEN + IPV6_HLEN + payload
    };
    let mut next = ip.next;
    let mut off = ETH_HLEN + IPV6_HLEN;
    let mut fragmented = false;
    let mut later_fragment = false;
    for _ in 0..MAX_EXT_HEADERS {
        let len = match next {
            NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST | NEXTHDR_FRAGMENT | NEXTHDR_AUTH => {
                let h = read::<[u8; 4]>(data, data_end, off).ok_or(Skip::Malformed)?;
                let len = match next {
                    NEXTHDR_FRAGMENT => {
                        later_fragment |= u16::from_be_bytes([h[2], h[3]]) & !0x7 != 0;
                        8
                    }
                    NEXTHDR_AUTH => (h[1] as usize + 2) * 4,
                    _ => (h[1] as usize + 1) * 8,
                };
                fragmented |= next == NEXTHDR_FRAGMENT;
                next = h[0];
                len
            }
            _ => {
                return Ok(Ipv6 {
                    saddr: words(ip.saddr),
                    daddr: words(ip.daddr),
                    proto: next,
                    l4_off: off,
                    fragmented,
                    later_fragment,
                    end,
                });
            }
        };
        off += len;
        if off > 512 {
            return Err(Skip::Malformed);
        }
    }
    Err(Skip::Malformed)
}

/// The source and destination of an IPv6 frame (the fixed header only),
/// `None` if it is not IPv6 or too short.
#[inline(always)]
pub fn addresses(data: usize, data_end: usize) -> Option<(Ipv6Be, Ipv6Be)> {
    let eth = read::<EthHdr>(data, data_end, 0)?;
    if eth.proto != ETH_P_IPV6 {
        return None;
    }
    let ip = read::<Ipv6Hdr>(data, data_end, ETH_HLEN)?;
    Some((words(ip.saddr), words(ip.daddr)))
}

/// The ICMPv6 type of `ip`, if it is ICMPv6 and its header is there (a
/// later fragment has none: `None`).
#[inline(always)]
pub fn icmp6_type(data: usize, data_end: usize, ip: &Ipv6) -> Option<u8> {
    if ip.proto != IPPROTO_ICMPV6 || ip.later_fragment {
        return None;
    }
    read::<[u8; 2]>(data, data_end, ip.l4_off).map(|h| h[0])
}

/// Whether `addr` is multicast (ff00::/8).
#[inline(always)]
pub fn is_multicast(addr: &Ipv6Be) -> bool {
    addr[0].to_ne_bytes()[0] == 0xff
}

/// Whether `addr` is link-local unicast (fe80::/10).
#[inline(always)]
pub fn is_link_local(addr: &Ipv6Be) -> bool {
    let b = addr[0].to_ne_bytes();
    b[0] == 0xfe && b[1] & 0xc0 == 0x80
}

/// Whether `addr` is `::`.
#[inline(always)]
pub fn is_unspecified(addr: &Ipv6Be) -> bool {
    addr[0] == 0 && addr[1] == 0 && addr[2] == 0 && addr[3] == 0
}

/// Whether `addr` is `::1` or in `::/8` beyond it (unspecified, IPv4-mapped
/// and -compatible): nothing a container may send to.
#[inline(always)]
pub fn is_reserved_dst(addr: &Ipv6Be) -> bool {
    addr[0].to_ne_bytes()[0] == 0
}

/// Whether `addr` is in the `prefix_len` prefix of `subnet`.
#[inline(always)]
pub fn in_prefix(addr: &Ipv6Be, subnet: &Ipv6Be, prefix_len: u8) -> bool {
    let mut left = prefix_len as u32;
    for i in 0..4 {
        if left == 0 {
            return true;
        }
        let bits = if left >= 32 { 32 } else { left };
        let mask = (u32::MAX << (32 - bits)).to_be();
        if addr[i] & mask != subnet[i] & mask {
            return false;
        }
        left -= bits;
    }
    true
}
