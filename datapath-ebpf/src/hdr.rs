// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Header layouts, their offsets, and the one bounds check every packet
//! access goes through. Layouts use byte arrays only (alignment 1), so no
//! read depends on packet alignment, and fields are read in wire order.

use core::mem::size_of;

/// Ethernet header length; programs attach to Ethernet devices only.
pub const ETH_HLEN: usize = 14;
/// Offset of the EtherType.
pub const ETH_PROTO_OFF: usize = 12;
/// EtherTypes, as the two wire bytes.
pub const ETH_P_IP: [u8; 2] = [0x08, 0x00];
pub const ETH_P_ARP: [u8; 2] = [0x08, 0x06];
pub const ETH_P_IPV6: [u8; 2] = [0x86, 0xdd];
/// The fixed IPv6 header length.
pub const IPV6_HLEN: usize = 40;
/// Offsets from the frame start of the IPv6 hop limit and addresses.
pub const IP6_HOP_LIMIT_OFF: usize = ETH_HLEN + 7;
pub const IP6_SRC_OFF: usize = ETH_HLEN + 8;
pub const IP6_DST_OFF: usize = ETH_HLEN + 24;
/// Linear bytes an IPv6 parse of a container's packet may read: Ethernet,
/// the fixed header, extension headers and an ICMPv6 neighbour discovery
/// message with its options.
pub const IPV6_HDR_LEN: u32 = 192;
/// Offsets from the frame start of the fixed IPv4 header fields.
pub const IP_OFF: usize = ETH_HLEN;
pub const IP_TTL_OFF: usize = IP_OFF + 8;
pub const IP_CSUM_OFF: usize = IP_OFF + 10;
pub const IP_SRC_OFF: usize = IP_OFF + 12;
pub const IP_DST_OFF: usize = IP_OFF + 16;
/// The fixed IPv4 header length.
pub const IPV4_HLEN: usize = 20;

/// Whether `addr` (wire order) is in 127.0.0.0/8.
#[inline(always)]
pub fn is_loopback(addr: u32) -> bool {
    addr.to_ne_bytes()[0] == 127
}
/// Offsets inside a TCP header.
pub const TCP_HLEN: usize = 20;
pub const TCP_CSUM_OFF: usize = 16;
/// Offsets inside a UDP header.
pub const UDP_HLEN: usize = 8;
pub const UDP_CSUM_OFF: usize = 6;
/// ICMP: an echo or error header is 8 bytes; the checksum sits at 2.
pub const ICMP_HLEN: usize = 8;
pub const ICMP_CSUM_OFF: usize = 2;
/// The largest IPv4 header (IHL 15).
pub const IPV4_MAX_HLEN: usize = 60;

/// Linear bytes a TCP/UDP/echo parse reads: Ethernet + the largest IPv4
/// header + a TCP header.
pub const FLOW_HDR_LEN: u32 = (ETH_HLEN + IPV4_MAX_HLEN + TCP_HLEN) as u32;
/// Linear bytes an ICMP error parse may read: the outer headers, the ICMP
/// header, the quoted IPv4 header and a quoted TCP header's checksum.
pub const ICMP_ERROR_HDR_LEN: u32 =
    (ETH_HLEN + IPV4_MAX_HLEN + ICMP_HLEN + IPV4_MAX_HLEN + TCP_HLEN) as u32;
/// Linear bytes the container-interface program reads: a flow's headers
/// (hairpin translation parses TCP/UDP), which also cover Ethernet and an
/// ARP body (28 bytes).
pub const ENDPOINT_HDR_LEN: u32 = FLOW_HDR_LEN;
const _: () = assert!(ENDPOINT_HDR_LEN as usize >= ETH_HLEN + 28);

#[repr(C)]
#[derive(Clone, Copy)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub proto: [u8; 2],
}

#[repr(C)]
#[derive(Clone, Copy)]
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

/// The fixed IPv6 header.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Ipv6Hdr {
    pub vtc_flow: [u8; 4],
    pub payload_len: [u8; 2],
    pub next: u8,
    pub hop_limit: u8,
    pub saddr: [[u8; 4]; 4],
    pub daddr: [[u8; 4]; 4],
}

/// An ARP packet for IPv4 over Ethernet.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ArpEthIpv4 {
    pub htype: [u8; 2],
    pub ptype: [u8; 2],
    pub hlen: u8,
    pub plen: u8,
    pub op: [u8; 2],
    pub sha: [u8; 6],
    pub spa: [u8; 4],
    pub tha: [u8; 6],
    pub tpa: [u8; 4],
}

/// The first four bytes of TCP and UDP headers.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Ports {
    pub src: [u8; 2],
    pub dst: [u8; 2],
}

/// A TCP header without options.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TcpHdr {
    pub ports: Ports,
    pub seq: [u8; 4],
    pub ack: [u8; 4],
    pub off: u8,
    pub flags: u8,
    pub window: [u8; 2],
    pub check: [u8; 2],
    pub urgent: [u8; 2],
}

/// TCP flag bits.
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// ICMP types netagent handles.
pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
pub const ICMP_PARAMETER_PROBLEM: u8 = 12;

/// Returns a pointer to a `T` at `off` bytes into `[data, data_end)`, or
/// `None` if it would cross `data_end`. The only bounds check: dereference
/// the pointer it returned, never one derived from it by arithmetic.
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

/// Reads a `T` (a byte array or a header struct) by value. Never a single
/// byte at a variable offset: LLVM turns that bounds check into
/// `ptr >= data_end`, from which the verifier learns no range.
#[inline(always)]
pub fn read<T: Copy>(data: usize, data_end: usize, off: usize) -> Option<T> {
    let p = ptr_at::<T>(data, data_end, off)?;
    // SAFETY: ptr_at checked the bounds; T is made of byte arrays, so any
    // alignment is fine (read_unaligned besides).
    Some(unsafe { p.read_unaligned() })
}
