// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Header walk over the linear area `[data, data_end)` of an XDP buffer or
//! an skb (after the pull in skb.rs): the IPv4 header of any packet, then
//! what NAT translates (a TCP/UDP/ICMP echo "flow", whole or first
//! fragment), or the packet an ICMP error quotes.
//!
//! Addresses, ports, IDs and checksums are raw wire-order values
//! (`from_ne_bytes` of the wire bytes): they go straight into map keys and
//! checksum arithmetic. Lengths are host order.

use datapath_common::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};

use crate::hdr::{
    ETH_HLEN, ETH_P_IP, EthHdr, ICMP_CSUM_OFF, ICMP_DEST_UNREACH, ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST, ICMP_HLEN, ICMP_PARAMETER_PROBLEM, ICMP_TIME_EXCEEDED, IPV4_HLEN, Ipv4Hdr,
    Ports, TCP_CSUM_OFF, TCP_HLEN, TcpHdr, UDP_CSUM_OFF, UDP_HLEN, read,
};

/// IPv4 "more fragments" flag and fragment offset bits of `frag_off`.
const IP_MF: u16 = 0x2000;
const IP_OFFSET_MASK: u16 = 0x1fff;

/// Where a packet sits in its datagram.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Frag {
    /// Not fragmented.
    Whole,
    /// The first fragment: it carries the L4 header.
    First,
    /// A later fragment: IP header and payload only.
    Later,
}

/// Why a packet is left alone by a parse.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Not an IPv4 frame (ARP, IPv6, ...).
    NotIpv4,
    /// Not an IPv6 frame (for the IPv6 parse).
    NotIpv6,
    /// Not something this parse handles (another protocol, ICMP that is
    /// not echo, a later fragment).
    NotFlow,
    /// Truncated or inconsistent headers.
    Malformed,
}

/// The fixed IPv4 header fields, of any IPv4 packet.
#[derive(Clone, Copy)]
pub struct Ipv4 {
    pub saddr: u32,
    pub daddr: u32,
    pub proto: u8,
    pub ttl: u8,
    pub tos: u8,
    /// Total length, host order.
    pub tot_len: u16,
    /// Identification, wire order.
    pub id: u16,
    pub frag: Frag,
    /// Offset of the L4 header from the frame start.
    pub l4_off: usize,
}

/// Parses the IPv4 header. `frame_len` is the whole frame's length (for an
/// skb it may exceed the linear area): a total length claiming more bytes
/// than arrived is malformed.
#[inline(always)]
pub fn ipv4(data: usize, data_end: usize, frame_len: usize) -> Result<Ipv4, Skip> {
    let eth = read::<EthHdr>(data, data_end, 0).ok_or(Skip::NotIpv4)?;
    if eth.proto != ETH_P_IP {
        return Err(Skip::NotIpv4);
    }
    let ip = read::<Ipv4Hdr>(data, data_end, ETH_HLEN).ok_or(Skip::Malformed)?;
    let ihl = (ip.version_ihl & 0x0f) as usize * 4;
    let tot_len = u16::from_be_bytes(ip.tot_len);
    if ip.version_ihl >> 4 != 4
        || ihl < IPV4_HLEN
        || (tot_len as usize) < ihl
        || ETH_HLEN + tot_len as usize > frame_len
    {
        return Err(Skip::Malformed);
    }
    let frag_off = u16::from_be_bytes(ip.frag_off);
    let frag = if frag_off & IP_OFFSET_MASK != 0 {
        Frag::Later
    } else if frag_off & IP_MF != 0 {
        Frag::First
    } else {
        Frag::Whole
    };
    Ok(Ipv4 {
        saddr: u32::from_ne_bytes(ip.saddr),
        daddr: u32::from_ne_bytes(ip.daddr),
        proto: ip.proto,
        ttl: ip.ttl,
        tos: ip.tos,
        tot_len,
        id: u16::from_ne_bytes(ip.id),
        frag,
        l4_off: ETH_HLEN + ihl,
    })
}

/// A TCP, UDP or ICMP echo packet (whole, or the first fragment of one),
/// as NAT needs it.
///
/// An ICMP echo request has its identifier as `sport` and 0 as `dport`, a
/// reply the other way round, so a request and its reply form a flow
/// exactly like a UDP datagram and its answer.
#[derive(Clone, Copy)]
pub struct Packet {
    pub ip: Ipv4,
    pub proto: u8,
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    /// Offsets of the source and destination "port" fields from the frame
    /// start (both the echo identifier for ICMP).
    pub sport_off: usize,
    pub dport_off: usize,
    /// Offset of the L4 checksum from the frame start.
    pub l4_csum_off: usize,
    /// The L4 checksum field as found.
    pub l4_csum: u16,
    /// L4 length the pseudo-header covers (host order): the UDP length
    /// field, or the IP payload length for TCP.
    pub l4_len: u16,
    /// TCP flags byte; 0 for UDP and ICMP.
    pub tcp_flags: u8,
    /// TCP sequence and acknowledgement numbers, host order; 0 otherwise.
    pub tcp_seq: u32,
    pub tcp_ack: u32,
}

impl Packet {
    /// Whether the TCP flags have all of `bits`.
    #[inline(always)]
    pub fn tcp_has(&self, bits: u8) -> bool {
        self.tcp_flags & bits == bits
    }

    /// Whether this is an ICMP echo request (vs. reply): requests carry
    /// the identifier as the source "port".
    #[inline(always)]
    pub fn is_echo_request(&self) -> bool {
        self.proto == IPPROTO_ICMP && self.dport == 0
    }
}

/// Parses the flow of `ip` (not a later fragment: those carry no L4).
#[inline(always)]
pub fn flow(data: usize, data_end: usize, ip: &Ipv4) -> Result<Packet, Skip> {
    if ip.frag == Frag::Later {
        return Err(Skip::NotFlow);
    }
    let l4_off = ip.l4_off;
    let ihl = l4_off - ETH_HLEN;
    let payload = ip.tot_len as usize - ihl;
    let mut p = Packet {
        ip: *ip,
        proto: ip.proto,
        saddr: ip.saddr,
        daddr: ip.daddr,
        sport: 0,
        dport: 0,
        sport_off: l4_off,
        dport_off: l4_off + 2,
        l4_csum_off: 0,
        l4_csum: 0,
        l4_len: payload as u16,
        tcp_flags: 0,
        tcp_seq: 0,
        tcp_ack: 0,
    };
    match ip.proto {
        IPPROTO_TCP => {
            // Read before the length check: LLVM may otherwise drop the
            // data_end check it can prove from `tot_len <= frame_len` in
            // XDP, which the verifier cannot follow.
            let tcp = read::<TcpHdr>(data, data_end, l4_off).ok_or(Skip::Malformed)?;
            if payload < TCP_HLEN {
                return Err(Skip::Malformed);
            }
            p.sport = u16::from_ne_bytes(tcp.ports.src);
            p.dport = u16::from_ne_bytes(tcp.ports.dst);
            p.l4_csum_off = l4_off + TCP_CSUM_OFF;
            p.l4_csum = u16::from_ne_bytes(tcp.check);
            p.tcp_flags = tcp.flags;
            p.tcp_seq = u32::from_be_bytes(tcp.seq);
            p.tcp_ack = u32::from_be_bytes(tcp.ack);
        }
        IPPROTO_UDP => {
            let ports = read::<Ports>(data, data_end, l4_off).ok_or(Skip::Malformed)?;
            let ulen = read::<[u8; 2]>(data, data_end, l4_off + 4).ok_or(Skip::Malformed)?;
            let csum =
                read::<[u8; 2]>(data, data_end, l4_off + UDP_CSUM_OFF).ok_or(Skip::Malformed)?;
            let ulen = u16::from_be_bytes(ulen);
            // The pseudo-header uses the UDP length (what the sender
            // summed); in a first fragment it exceeds this packet.
            if payload < UDP_HLEN
                || (ulen as usize) < UDP_HLEN
                || (ip.frag == Frag::Whole && ulen as usize > payload)
            {
                return Err(Skip::Malformed);
            }
            p.sport = u16::from_ne_bytes(ports.src);
            p.dport = u16::from_ne_bytes(ports.dst);
            p.l4_csum_off = l4_off + UDP_CSUM_OFF;
            p.l4_csum = u16::from_ne_bytes(csum);
            p.l4_len = ulen;
        }
        IPPROTO_ICMP => {
            let icmp = read::<[u8; ICMP_HLEN]>(data, data_end, l4_off).ok_or(Skip::Malformed)?;
            if payload < ICMP_HLEN {
                return Err(Skip::Malformed);
            }
            (p.sport, p.dport) = echo_ports(&icmp).ok_or(Skip::NotFlow)?;
            p.sport_off = l4_off + 4;
            p.dport_off = l4_off + 4;
            p.l4_csum_off = l4_off + ICMP_CSUM_OFF;
            p.l4_csum = u16::from_ne_bytes([icmp[2], icmp[3]]);
        }
        _ => return Err(Skip::NotFlow),
    }
    Ok(p)
}

/// The "ports" of an ICMP echo: a request has its identifier as source,
/// a reply as destination. `None` for other ICMP types.
#[inline(always)]
fn echo_ports(icmp: &[u8; ICMP_HLEN]) -> Option<(u16, u16)> {
    let id = u16::from_ne_bytes([icmp[4], icmp[5]]);
    match icmp[0] {
        ICMP_ECHO_REQUEST => Some((id, 0)),
        ICMP_ECHO_REPLY => Some((0, id)),
        _ => None,
    }
}

/// Whether `ip` is an ICMP error (destination unreachable, time exceeded,
/// parameter problem): the kinds that quote a packet of some flow.
#[inline(always)]
pub fn is_icmp_error(data: usize, data_end: usize, ip: &Ipv4) -> bool {
    if ip.proto != IPPROTO_ICMP || ip.frag == Frag::Later {
        return false;
    }
    // Type and code: a one-byte read at a variable offset gets its bounds
    // check turned into `ptr >= data_end` by LLVM, which gives the
    // verifier no range at offset 0.
    matches!(
        read::<[u8; 2]>(data, data_end, ip.l4_off),
        Some([
            ICMP_DEST_UNREACH | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM,
            _
        ])
    )
}

/// The packet an ICMP error quotes, as the translation needs it: the
/// quoted IPv4 header's addresses and checksum, its ports (or echo
/// identifier), and its L4 checksum if the quote includes it.
#[derive(Clone, Copy)]
pub struct Quoted {
    /// Offset of the outer ICMP checksum.
    pub icmp_csum_off: usize,
    /// Offset of the quoted IPv4 header.
    pub ip_off: usize,
    pub saddr: u32,
    pub daddr: u32,
    pub ip_csum: u16,
    pub proto: u8,
    /// Ports as in [`Packet`] (for echo: identifier as `sport` of a
    /// request, `dport` of a reply).
    pub sport: u16,
    pub dport: u16,
    pub sport_off: usize,
    pub dport_off: usize,
    /// Offset of the quoted L4 checksum, 0 if the quote stops before it
    /// (routers may quote only 8 bytes of L4) or it is a zero UDP one.
    pub l4_csum_off: usize,
    pub l4_csum: u16,
}

/// Parses what an ICMP error quotes (after [`is_icmp_error`]). `None` if
/// the quote is not an IPv4 TCP/UDP/echo packet with its ports, or is a
/// later fragment.
#[inline(always)]
pub fn quoted(data: usize, data_end: usize, ip: &Ipv4) -> Option<Quoted> {
    let ip_off = ip.l4_off + ICMP_HLEN;
    let inner = read::<Ipv4Hdr>(data, data_end, ip_off)?;
    let ihl = (inner.version_ihl & 0x0f) as usize * 4;
    if inner.version_ihl >> 4 != 4 || ihl < IPV4_HLEN {
        return None;
    }
    if u16::from_be_bytes(inner.frag_off) & IP_OFFSET_MASK != 0 {
        return None;
    }
    let l4_off = ip_off + ihl;
    let mut q = Quoted {
        icmp_csum_off: ip.l4_off + ICMP_CSUM_OFF,
        ip_off,
        saddr: u32::from_ne_bytes(inner.saddr),
        daddr: u32::from_ne_bytes(inner.daddr),
        ip_csum: u16::from_ne_bytes(inner.check),
        proto: inner.proto,
        sport: 0,
        dport: 0,
        sport_off: l4_off,
        dport_off: l4_off + 2,
        l4_csum_off: 0,
        l4_csum: 0,
    };
    match inner.proto {
        IPPROTO_TCP | IPPROTO_UDP => {
            let ports = read::<Ports>(data, data_end, l4_off)?;
            q.sport = u16::from_ne_bytes(ports.src);
            q.dport = u16::from_ne_bytes(ports.dst);
            let csum_off = if inner.proto == IPPROTO_TCP {
                l4_off + TCP_CSUM_OFF
            } else {
                l4_off + UDP_CSUM_OFF
            };
            if let Some(csum) = read::<[u8; 2]>(data, data_end, csum_off) {
                let csum = u16::from_ne_bytes(csum);
                if !(inner.proto == IPPROTO_UDP && csum == 0) {
                    q.l4_csum_off = csum_off;
                    q.l4_csum = csum;
                }
            }
        }
        IPPROTO_ICMP => {
            let icmp = read::<[u8; ICMP_HLEN]>(data, data_end, l4_off)?;
            (q.sport, q.dport) = echo_ports(&icmp)?;
            q.sport_off = l4_off + 4;
            q.dport_off = l4_off + 4;
            q.l4_csum_off = l4_off + ICMP_CSUM_OFF;
            q.l4_csum = u16::from_ne_bytes([icmp[2], icmp[3]]);
        }
        _ => return None,
    }
    Some(q)
}
