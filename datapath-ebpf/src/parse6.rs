// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The IPv6 header walk: the fixed header, then the extension headers
//! (hop-by-hop, routing, fragment, destination options) to the upper-layer
//! protocol, and an ICMPv6 message's type. Addresses are wire-order words
//! ([`Ipv6Be`], as the maps key them).
//!
//! A chain longer than [`MAX_EXT_HEADERS`], or one that runs past the
//! linear area, is malformed: callers drop it (a protocol they cannot see
//! is never guessed).

use core::ptr::NonNull;

use aya_ebpf::{bindings::__sk_buff, programs::TcContext};
use datapath_common::{IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, Ipv6Be};

use crate::{
    hdr::{
        ETH_HLEN, ETH_P_IPV6, EthHdr, IPV6_HDR_LEN, IPV6_HLEN, Ipv6Hdr, Ports, TCP_CSUM_OFF,
        TcpHdr, UDP_CSUM_OFF, UDP_HLEN, read,
    },
    parse::Skip,
    skb,
};

/// Extension headers walked at most.
pub const MAX_EXT_HEADERS: usize = 4;

const NEXTHDR_HOP: u8 = 0;
const NEXTHDR_ROUTING: u8 = 43;
const NEXTHDR_FRAGMENT: u8 = 44;
const NEXTHDR_AUTH: u8 = 51;
const NEXTHDR_DEST: u8 = 60;

/// ICMPv6 types the datapath looks at.
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
pub const ICMPV6_ECHO_REPLY: u8 = 129;
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
#[derive(Clone, Copy, Default)]
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
    /// The fragment header's identification (network order), if
    /// `fragmented`.
    pub frag_id: u32,
    /// Offset of the packet's end from the frame start (the frame's
    /// length for a GSO packet, whose payload length is 0).
    pub end: usize,
    pub hop_limit: u8,
}

/// A TCP or UDP packet over IPv6 (unfragmented), as NAT needs it: the
/// field names of the IPv4 [`crate::parse::Packet`], so conntrack
/// (`ct::v6`) is the same source for both.
#[derive(Clone, Copy, Default)]
pub struct Packet6 {
    pub proto: u8,
    pub saddr: Ipv6Be,
    pub daddr: Ipv6Be,
    pub sport: u16,
    pub dport: u16,
    pub sport_off: usize,
    pub dport_off: usize,
    pub l4_csum_off: usize,
    pub tcp_flags: u8,
    pub tcp_seq: u32,
    pub tcp_ack: u32,
    /// The first fragment of a fragmented datagram: its later fragments
    /// must follow its translation (frag.rs), by `frag_id`.
    pub first_fragment: bool,
    pub frag_id: u32,
}

impl Packet6 {
    /// Whether the TCP flags have all of `bits`.
    #[inline(always)]
    pub fn tcp_has(&self, bits: u8) -> bool {
        self.tcp_flags & bits == bits
    }

    /// Whether this is an ICMPv6 echo request (vs. reply): requests carry
    /// the identifier as the source "port", as IPv4's (parse.rs).
    #[inline(always)]
    pub fn is_echo_request(&self) -> bool {
        self.proto == IPPROTO_ICMPV6 && self.dport == 0
    }
}

/// Parses the TCP, UDP or ICMPv6 echo header of `ip` into `p` (in place,
/// as [`ipv6`]); an echo's identifier is its request's source "port" and
/// its reply's destination one, both at the identifier's offset. A first
/// fragment is a flow (its translation is recorded for the later ones,
/// which carry no ports and are not flows: `NotFlow`).
#[inline(always)]
pub fn flow6(data: usize, data_end: usize, ip: &Ipv6, p: &mut Packet6) -> Result<(), Skip> {
    if ip.later_fragment {
        return Err(Skip::NotFlow);
    }
    p.first_fragment = ip.fragmented;
    p.frag_id = ip.frag_id;
    let l4 = ip.l4_off;
    p.proto = ip.proto;
    p.saddr = ip.saddr;
    p.daddr = ip.daddr;
    p.sport_off = l4;
    p.dport_off = l4 + 2;
    p.tcp_flags = 0;
    p.tcp_seq = 0;
    p.tcp_ack = 0;
    match ip.proto {
        IPPROTO_TCP => {
            let tcp = read::<TcpHdr>(data, data_end, l4).ok_or(Skip::Malformed)?;
            p.sport = u16::from_ne_bytes(tcp.ports.src);
            p.dport = u16::from_ne_bytes(tcp.ports.dst);
            p.l4_csum_off = l4 + TCP_CSUM_OFF;
            p.tcp_flags = tcp.flags;
            p.tcp_seq = u32::from_be_bytes(tcp.seq);
            p.tcp_ack = u32::from_be_bytes(tcp.ack);
        }
        IPPROTO_UDP => {
            let ports = read::<Ports>(data, data_end, l4).ok_or(Skip::Malformed)?;
            read::<[u8; UDP_HLEN]>(data, data_end, l4).ok_or(Skip::Malformed)?;
            p.sport = u16::from_ne_bytes(ports.src);
            p.dport = u16::from_ne_bytes(ports.dst);
            p.l4_csum_off = l4 + UDP_CSUM_OFF;
        }
        IPPROTO_ICMPV6 => {
            let icmp = read::<[u8; 8]>(data, data_end, l4).ok_or(Skip::Malformed)?;
            let id = u16::from_ne_bytes([icmp[4], icmp[5]]);
            (p.sport, p.dport) = match icmp[0] {
                ICMPV6_ECHO_REQUEST => (id, 0),
                ICMPV6_ECHO_REPLY => (0, id),
                _ => return Err(Skip::NotFlow),
            };
            p.sport_off = l4 + 4;
            p.dport_off = l4 + 4;
            p.l4_csum_off = l4 + 2;
        }
        _ => return Err(Skip::NotFlow),
    }
    Ok(())
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

/// Parses the IPv6 header and its extension headers into `out`.
/// `frame_len` is the whole frame's length: a payload length claiming more
/// is malformed (0 is a GSO packet's, larger than 64 KiB). Fields are
/// written in place, not returned: IPv6 headers are large, and every copy
/// costs eBPF stack.
#[inline(always)]
pub fn ipv6(data: usize, data_end: usize, frame_len: usize, out: &mut Ipv6) -> Result<(), Skip> {
    let eth = read::<EthHdr>(data, data_end, 0).ok_or(Skip::NotIpv6)?;
    if eth.proto != ETH_P_IPV6 {
        return Err(Skip::NotIpv6);
    }
    // The first 8 bytes now, the addresses last: bytes read early stay
    // live across the walk, each spilled to its own stack slot.
    let fixed = read::<[u8; 8]>(data, data_end, ETH_HLEN).ok_or(Skip::Malformed)?;
    read::<Ipv6Hdr>(data, data_end, ETH_HLEN).ok_or(Skip::Malformed)?;
    let payload = u16::from_be_bytes([fixed[4], fixed[5]]) as usize;
    if fixed[0] >> 4 != 6 || (payload != 0 && ETH_HLEN + IPV6_HLEN + payload > frame_len) {
        return Err(Skip::Malformed);
    }
    let hop_limit = fixed[7];
    let end = if payload == 0 {
        frame_len
    } else {
        ETH_HLEN + IPV6_HLEN + payload
    };
    let mut next = fixed[6];
    let mut off = ETH_HLEN + IPV6_HLEN;
    let mut fragmented = false;
    let mut later_fragment = false;
    let mut frag_id = 0;
    let mut upper = false;
    // One exit with one `Ipv6` built: a return per unrolled step would
    // give each its own copy on the stack.
    for _ in 0..MAX_EXT_HEADERS {
        if !matches!(
            next,
            NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST | NEXTHDR_FRAGMENT | NEXTHDR_AUTH
        ) {
            upper = true;
            break;
        }
        let h = read::<[u8; 4]>(data, data_end, off).ok_or(Skip::Malformed)?;
        let len = match next {
            NEXTHDR_FRAGMENT => {
                later_fragment |= u16::from_be_bytes([h[2], h[3]]) & !0x7 != 0;
                fragmented = true;
                let id = read::<[u8; 4]>(data, data_end, off + 4).ok_or(Skip::Malformed)?;
                frag_id = u32::from_ne_bytes(id);
                8
            }
            NEXTHDR_AUTH => (h[1] as usize + 2) * 4,
            _ => (h[1] as usize + 1) * 8,
        };
        next = h[0];
        off += len;
        if off > 512 {
            return Err(Skip::Malformed);
        }
    }
    if !upper
        && matches!(
            next,
            NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST | NEXTHDR_FRAGMENT | NEXTHDR_AUTH
        )
    {
        return Err(Skip::Malformed);
    }
    let (saddr, daddr) = addresses(data, data_end).ok_or(Skip::Malformed)?;
    out.saddr = saddr;
    out.daddr = daddr;
    out.proto = next;
    out.l4_off = off;
    out.fragmented = fragmented;
    out.later_fragment = later_fragment;
    out.frag_id = frag_id;
    out.end = end;
    out.hop_limit = hop_limit;
    Ok(())
}

/// An IPv6 packet's length for the counters (header included; a GSO
/// packet's is capped at 65535).
#[inline(always)]
pub fn counted_len(ip: &Ipv6) -> u16 {
    let len = ip.end - ETH_HLEN;
    if len > 0xffff { 0xffff } else { len as u16 }
}

/// [`ipv6`] of a TC program's packet, in a frame of its own (a BPF-to-BPF
/// call: the walk's temporaries would otherwise sit in the caller's frame
/// under everything it calls), after pulling [`IPV6_HDR_LEN`] bytes
/// linear. The context goes by value and to a helper first (see
/// endpoint.rs).
#[inline(never)]
pub fn ipv6_of(skb: NonNull<__sk_buff>, out: &mut Ipv6) -> bool {
    let ctx = &TcContext::new(skb);
    skb::pull(ctx, IPV6_HDR_LEN);
    ipv6(ctx.data(), ctx.data_end(), ctx.len() as usize, out).is_ok()
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
