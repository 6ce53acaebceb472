// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Header walk: Ethernet -> IPv4 (any IHL) -> TCP/UDP ports and checksum,
//! or an ICMP echo's identifier (which masquerade translates like a port).
//!
//! Works on the linear packet area `[data, data_end)` of either an XDP buffer
//! or an skb (after `bpf_skb_pull_data`). Every read goes through [`ptr_at`],
//! the single bounds check the verifier needs. Header structs use byte
//! arrays only (alignment 1), so no read depends on packet alignment.

use core::mem::size_of;

use datapath_common::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};

/// Ethernet header length; programs attach to Ethernet devices only.
pub const ETH_HLEN: usize = 14;
/// Offset of the IPv4 header checksum from the frame start.
pub const IP_CSUM_OFF: usize = ETH_HLEN + 10;
/// Offset of the IPv4 source address from the frame start.
pub const IP_SRC_OFF: usize = ETH_HLEN + 12;
/// Offset of the IPv4 destination address from the frame start.
pub const IP_DST_OFF: usize = ETH_HLEN + 16;
/// Offset of the checksum inside a TCP header.
const TCP_CSUM_OFF: usize = 16;
/// ICMP echo request and reply types.
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_ECHO_REPLY: u8 = 0;
/// ICMP echo header: type, code, checksum, identifier, sequence.
const ICMP_ECHO_HLEN: usize = 8;
/// Offset of the flags byte inside a TCP header.
const TCP_FLAGS_OFF: usize = 13;
/// Offset of the checksum inside a UDP header.
const UDP_CSUM_OFF: usize = 6;
/// Minimum header lengths.
const TCP_HLEN: usize = 20;
const UDP_HLEN: usize = 8;
/// IPv4 "more fragments" flag and fragment offset bits of `frag_off`.
const IP_MF_OFFSET_MASK: u16 = 0x3fff;

#[repr(C)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub proto: [u8; 2],
}

#[repr(C)]
pub struct Ipv4Hdr {
    pub version_ihl: u8,
    pub tos: u8,
    pub tot_len: [u8; 2],
    pub id: [u8; 2],
    pub frag_off: [u8; 2],
    pub ttl: u8,
    pub proto: u8,
    pub check: [u8; 2],
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
}

/// The first four bytes of TCP and UDP headers.
#[repr(C)]
pub struct Ports {
    pub src: [u8; 2],
    pub dst: [u8; 2],
}

/// A TCP header without options.
#[repr(C)]
pub struct TcpHdr {
    pub ports: Ports,
    pub seq: [u8; 4],
    pub ack: [u8; 4],
    pub off_flags: [u8; 2],
    pub window: [u8; 2],
    pub check: [u8; 2],
    pub urgent: [u8; 2],
}

#[repr(C)]
pub struct UdpHdr {
    pub ports: Ports,
    pub len: [u8; 2],
    pub check: [u8; 2],
}

/// A TCP, UDP or ICMP echo packet over IPv4, as the NAT code needs it.
/// Addresses, ports and the checksum are raw wire-order values
/// (`from_ne_bytes` of the wire bytes): they go straight into map keys and
/// checksum arithmetic.
///
/// An ICMP echo request has its identifier as `sport` and 0 as `dport`, a
/// reply the other way round, so a request and its reply form a flow
/// exactly like a UDP datagram and its answer.
pub struct Packet {
    pub proto: u8,
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    /// Offsets of the source and destination "port" fields from the frame
    /// start (both the echo identifier for ICMP).
    pub sport_off: usize,
    pub dport_off: usize,
    /// Offset of the L4 header from the frame start.
    pub l4_off: usize,
    /// Offset of the L4 checksum from the frame start.
    pub l4_csum_off: usize,
    /// The L4 checksum field as found.
    pub l4_csum: u16,
    /// L4 length used in the pseudo-header (host order).
    pub l4_len: u16,
    /// IPv4 total length (host order), for byte counters.
    pub ip_len: u16,
    /// TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, ...); 0 for UDP.
    pub tcp_flags: u8,
}

/// TCP FIN and RST bits of [`Packet::tcp_flags`].
pub const TCP_FIN_RST: u8 = 0x01 | 0x04;

/// Why a packet is left alone.
pub enum Skip {
    /// Not IPv4 TCP/UDP: none of our business, not counted.
    NotOurs,
    /// An IPv4 fragment: never translated (later fragments carry no ports).
    Fragment,
    /// Truncated or inconsistent headers.
    Malformed,
}

/// Returns a pointer to a `T` at `off` bytes into the packet, or `None` if
/// it would cross `data_end`.
#[inline(always)]
pub fn ptr_at<T>(data: usize, data_end: usize, off: usize) -> Option<*const T> {
    let start = data + off;
    if start + size_of::<T>() > data_end {
        return None;
    }
    Some(start as *const T)
}

/// Mutable twin of [`ptr_at`].
#[inline(always)]
pub fn ptr_at_mut<T>(data: usize, data_end: usize, off: usize) -> Option<*mut T> {
    ptr_at::<T>(data, data_end, off).map(|p| p.cast_mut())
}

/// Parses the linear area `[data, data_end)`. `frame_len` is the whole
/// frame's length (for an skb it may exceed the linear area), used to reject
/// an IPv4 total length that claims more bytes than arrived.
#[inline(always)]
pub fn parse(data: usize, data_end: usize, frame_len: usize) -> Result<Packet, Skip> {
    let eth = ptr_at::<EthHdr>(data, data_end, 0).ok_or(Skip::NotOurs)?;
    // SAFETY: ptr_at checked the bounds; byte arrays need no alignment.
    if unsafe { (*eth).proto } != [0x08, 0x00] {
        return Err(Skip::NotOurs);
    }
    let ip = ptr_at::<Ipv4Hdr>(data, data_end, ETH_HLEN).ok_or(Skip::Malformed)?;
    // SAFETY: as above.
    let ip = unsafe { &*ip };
    let proto = ip.proto;
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_ICMP {
        return Err(Skip::NotOurs);
    }
    let ihl = (ip.version_ihl & 0x0f) as usize * 4;
    if ip.version_ihl >> 4 != 4 || ihl < size_of::<Ipv4Hdr>() {
        return Err(Skip::Malformed);
    }
    let ip_len = u16::from_be_bytes(ip.tot_len);
    if u16::from_be_bytes(ip.frag_off) & IP_MF_OFFSET_MASK != 0 {
        return Err(Skip::Fragment);
    }
    let l4_off = ETH_HLEN + ihl;
    if proto == IPPROTO_ICMP {
        return parse_icmp_echo(data, data_end, frame_len, ip, l4_off, ip_len);
    }
    let (l4_hlen, csum_off) = if proto == IPPROTO_TCP {
        (TCP_HLEN, TCP_CSUM_OFF)
    } else {
        (UDP_HLEN, UDP_CSUM_OFF)
    };
    if (ip_len as usize) < ihl + l4_hlen || ETH_HLEN + ip_len as usize > frame_len {
        return Err(Skip::Malformed);
    }
    let ports = ptr_at::<Ports>(data, data_end, l4_off).ok_or(Skip::Malformed)?;
    let csum = ptr_at::<[u8; 2]>(data, data_end, l4_off + csum_off).ok_or(Skip::Malformed)?;
    let mut l4_len = ip_len - ihl as u16;
    if proto == IPPROTO_UDP {
        // The UDP length field must fit in the IP payload; the pseudo-header
        // uses it (that is what the sender summed).
        let ulen = ptr_at::<[u8; 2]>(data, data_end, l4_off + 4).ok_or(Skip::Malformed)?;
        // SAFETY: bounds checked above.
        let ulen = u16::from_be_bytes(unsafe { *ulen });
        if (ulen as usize) < UDP_HLEN || ulen > l4_len {
            return Err(Skip::Malformed);
        }
        l4_len = ulen;
    }
    let tcp_flags = if proto == IPPROTO_TCP {
        let flags = ptr_at::<u8>(data, data_end, l4_off + TCP_FLAGS_OFF).ok_or(Skip::Malformed)?;
        // SAFETY: bounds checked by ptr_at.
        unsafe { *flags }
    } else {
        0
    };
    // SAFETY: bounds checked above.
    let (ports, l4_csum) = unsafe { (&*ports, *csum) };
    Ok(Packet {
        proto,
        saddr: u32::from_ne_bytes(ip.saddr),
        daddr: u32::from_ne_bytes(ip.daddr),
        sport: u16::from_ne_bytes(ports.src),
        dport: u16::from_ne_bytes(ports.dst),
        sport_off: l4_off,
        dport_off: l4_off + 2,
        l4_off,
        l4_csum_off: l4_off + csum_off,
        l4_csum: u16::from_ne_bytes(l4_csum),
        l4_len,
        ip_len,
        tcp_flags,
    })
}

/// The ICMP part of [`parse`]: echo requests and replies only (errors and
/// everything else are not ours).
///
/// The header is bounds-checked before the length checks on purpose: once
/// `ip_len` is known to cover it, LLVM proves the `data_end` check
/// redundant for XDP (where `frame_len == data_end - data`) and drops it,
/// and the verifier, which cannot follow that proof, rejects the load.
#[inline(always)]
fn parse_icmp_echo(
    data: usize,
    data_end: usize,
    frame_len: usize,
    ip: &Ipv4Hdr,
    l4_off: usize,
    ip_len: u16,
) -> Result<Packet, Skip> {
    let icmp = ptr_at::<[u8; ICMP_ECHO_HLEN]>(data, data_end, l4_off).ok_or(Skip::Malformed)?;
    // SAFETY: bounds checked by ptr_at.
    let icmp = unsafe { *icmp };
    if (ip_len as usize) < l4_off - ETH_HLEN + ICMP_ECHO_HLEN
        || ETH_HLEN + ip_len as usize > frame_len
    {
        return Err(Skip::Malformed);
    }
    let id = u16::from_ne_bytes([icmp[4], icmp[5]]);
    let (sport, dport) = match icmp[0] {
        ICMP_ECHO_REQUEST => (id, 0),
        ICMP_ECHO_REPLY => (0, id),
        _ => return Err(Skip::NotOurs),
    };
    Ok(Packet {
        proto: IPPROTO_ICMP,
        saddr: u32::from_ne_bytes(ip.saddr),
        daddr: u32::from_ne_bytes(ip.daddr),
        sport,
        dport,
        sport_off: l4_off + 4,
        dport_off: l4_off + 4,
        l4_off,
        l4_csum_off: l4_off + 2,
        l4_csum: u16::from_ne_bytes([icmp[2], icmp[3]]),
        l4_len: ip_len - (l4_off - ETH_HLEN) as u16,
        ip_len,
        tcp_flags: 0,
    })
}

/// The fixed IPv4 header fields forwarding and policy need, of any IPv4
/// packet (every protocol, fragments included). Addresses are raw wire
/// order; `tot_len` is host order.
pub struct Ipv4Fields {
    pub tos: u8,
    pub ttl: u8,
    pub proto: u8,
    pub tot_len: u16,
    pub saddr: u32,
    pub daddr: u32,
}

/// Offset of the IPv4 TTL (followed by the protocol) from the frame start.
pub const IP_TTL_OFF: usize = ETH_HLEN + 8;

/// [`Ipv4Fields`] of an IPv4 frame; `None` for non-IPv4 frames and for
/// truncated or non-version-4 headers.
#[inline(always)]
pub fn ipv4_fields(data: usize, data_end: usize) -> Option<Ipv4Fields> {
    let eth = ptr_at::<EthHdr>(data, data_end, 0)?;
    // SAFETY: ptr_at checked the bounds; byte arrays need no alignment.
    if unsafe { (*eth).proto } != [0x08, 0x00] {
        return None;
    }
    let ip = ptr_at::<Ipv4Hdr>(data, data_end, ETH_HLEN)?;
    // SAFETY: as above.
    let ip = unsafe { &*ip };
    if ip.version_ihl >> 4 != 4 {
        return None;
    }
    Some(Ipv4Fields {
        tos: ip.tos,
        ttl: ip.ttl,
        proto: ip.proto,
        tot_len: u16::from_be_bytes(ip.tot_len),
        saddr: u32::from_ne_bytes(ip.saddr),
        daddr: u32::from_ne_bytes(ip.daddr),
    })
}

/// Linear bytes TC must pull so that [`parse`] sees every header it reads:
/// Ethernet + the largest IPv4 header + a TCP header.
pub const MAX_HDR_LEN: u32 = (ETH_HLEN + 60 + TCP_HLEN) as u32;
