// SPDX-License-Identifier: GPL-2.0 OR MIT
//! ICMPv6 errors about translated IPv6 flows, translated through the
//! packet they quote, as `icmp.rs` does for IPv4: packet too big (path MTU
//! discovery: IPv6 routers never fragment, so without it a translated
//! flow stalls on any smaller link), time exceeded (`traceroute`),
//! destination unreachable and parameter problem.
//!
//! An error must belong to a tracked flow (a published one in `ct::v6`,
//! a masqueraded one in `snat::v6`): its quoted packet is one the flow
//! sent. Then the outer address, the quoted packet's address and port,
//! and the checksums covering them change:
//! - the quoted L4 checksum (TCP, UDP, ICMPv6 echo: each covers the
//!   quoted addresses through its pseudo-header) when the quote holds it;
//! - the ICMPv6 checksum, which covers the outer addresses through its
//!   pseudo-header and every quoted byte as plain data.
//!
//! IPv6 has no header checksum. A quote with extension headers, or of a
//! fragment, is not translated (nothing netagent sends quotes one).
//!
//! - Inbound (served ingress, to the host): the quoted packet left through
//!   netagent, so its source is a published or masquerade address; it and
//!   the outer destination become the container's.
//! - Outbound (served egress, from a container): the quoted packet came in
//!   through netagent, so its destination is the container; it and the
//!   outer source become the published or masquerade address.

use datapath_common::{IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, Ipv6Be, SNAT_DIR_OUT};

use crate::{
    csum, ct,
    hdr::{IP6_DST_OFF, IP6_SRC_OFF, read},
    nat,
    parse6::{ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST, Ipv6},
    rewrite::{Backend, Covers, Failed},
    snat,
};

/// ICMPv6 error types: destination unreachable, packet too big, time
/// exceeded, parameter problem (RFC 4443).
const ICMPV6_ERROR_MAX: u8 = 4;
/// The ICMPv6 error header: type, code, checksum, 4 bytes (MTU, pointer).
const ICMPV6_ERROR_HLEN: usize = 8;
/// The fixed IPv6 header.
const IPV6_FIXED_HLEN: usize = 40;
/// Offsets of the addresses in an IPv6 header.
const SRC_OFF: usize = 8;
const DST_OFF: usize = 24;

/// The packet an ICMPv6 error quotes, as the translation needs it.
#[derive(Clone, Copy, Default)]
pub struct Quoted6 {
    /// Offset of the outer ICMPv6 checksum.
    pub icmp_csum_off: usize,
    /// Offset of the quoted IPv6 header.
    pub ip_off: usize,
    pub saddr: Ipv6Be,
    pub daddr: Ipv6Be,
    pub proto: u8,
    /// Ports as in `Packet6` (for echo: the identifier as a request's
    /// `sport`, a reply's `dport`).
    pub sport: u16,
    pub dport: u16,
    pub sport_off: usize,
    pub dport_off: usize,
    /// Offset of the quoted L4 checksum, 0 if the quote stops before it.
    pub l4_csum_off: usize,
    pub l4_csum: u16,
}

/// Parses the error `ip` carries into `q`: false if it is no ICMPv6
/// error, or its quote is not a TCP, UDP or echo packet with its ports
/// right after a fixed IPv6 header.
#[inline(always)]
pub fn quoted6(data: usize, data_end: usize, ip: &Ipv6, q: &mut Quoted6) -> bool {
    if ip.proto != IPPROTO_ICMPV6 || ip.fragmented {
        return false;
    }
    let Some(head) = read::<[u8; 4]>(data, data_end, ip.l4_off) else {
        return false;
    };
    if head[0] == 0 || head[0] > ICMPV6_ERROR_MAX {
        return false;
    }
    let ip_off = ip.l4_off + ICMPV6_ERROR_HLEN;
    let Some(fixed) = read::<[u8; 8]>(data, data_end, ip_off) else {
        return false;
    };
    if fixed[0] >> 4 != 6 {
        return false;
    }
    let Some(addrs) = read::<[[u8; 4]; 8]>(data, data_end, ip_off + SRC_OFF) else {
        return false;
    };
    let word = |i: usize| u32::from_ne_bytes(addrs[i]);
    q.icmp_csum_off = ip.l4_off + 2;
    q.ip_off = ip_off;
    q.saddr = [word(0), word(1), word(2), word(3)];
    q.daddr = [word(4), word(5), word(6), word(7)];
    q.proto = fixed[6];
    let l4 = ip_off + IPV6_FIXED_HLEN;
    q.sport_off = l4;
    q.dport_off = l4 + 2;
    q.l4_csum_off = 0;
    q.l4_csum = 0;
    match q.proto {
        IPPROTO_TCP | IPPROTO_UDP => {
            let Some(ports) = read::<[u8; 4]>(data, data_end, l4) else {
                return false;
            };
            q.sport = u16::from_ne_bytes([ports[0], ports[1]]);
            q.dport = u16::from_ne_bytes([ports[2], ports[3]]);
            let csum_off = if q.proto == IPPROTO_TCP {
                l4 + 16
            } else {
                l4 + 6
            };
            if let Some(c) = read::<[u8; 2]>(data, data_end, csum_off) {
                q.l4_csum_off = csum_off;
                q.l4_csum = u16::from_ne_bytes(c);
            }
        }
        IPPROTO_ICMPV6 => {
            let Some(echo) = read::<[u8; 8]>(data, data_end, l4) else {
                return false;
            };
            let id = u16::from_ne_bytes([echo[4], echo[5]]);
            (q.sport, q.dport) = match echo[0] {
                ICMPV6_ECHO_REQUEST => (id, 0),
                ICMPV6_ECHO_REPLY => (0, id),
                _ => return false,
            };
            q.sport_off = l4 + 4;
            q.dport_off = l4 + 4;
            q.l4_csum_off = l4 + 2;
            q.l4_csum = u16::from_ne_bytes([echo[2], echo[3]]);
        }
        _ => return false,
    }
    true
}

/// The container `addr:port` that sent the quoted packet of an inbound
/// error, into `to`, if it belongs to a tracked flow: a published one (its
/// source is a publication and its reply tuple is tracked) or a
/// masqueraded one. A BPF-to-BPF call: the lookups' keys in a frame of
/// their own, not the caller's, which holds the parsed headers.
#[inline(never)]
pub fn inbound_flow(q: &Quoted6, addr: &mut Ipv6Be, port: &mut u16) -> bool {
    if q.proto != IPPROTO_ICMPV6
        && let Some(target) = nat::find6(&q.saddr, q.sport, q.proto)
    {
        let key = ct::v6::key(target.addr_be, target.port_be, q.daddr, q.dport, q.proto);
        if let Some(v) = ct::v6::find(&key)
            && v.orig_addr_be == q.saddr
            && v.orig_port_be == q.sport
        {
            *addr = target.addr_be;
            *port = target.port_be;
            return true;
        }
    }
    let key = snat::v6::reply_key(q.daddr, q.dport, q.saddr, q.sport, q.proto);
    let Some(v) = snat::v6::peek_reply(&key) else {
        return false;
    };
    *addr = v.addr_be;
    *port = v.port_be;
    true
}

/// The published or masquerade `addr:port` the quoted packet of a
/// container's error was sent to, into `addr`, `port`; false if it is
/// none, or if the quote's destination is not the error's `sender` (a
/// container speaks only of packets it received, not of another's flow). A BPF-to-BPF call,
/// as [`inbound_flow`].
#[inline(never)]
pub fn outbound_flow(q: &Quoted6, sender: &Ipv6Be, addr: &mut Ipv6Be, port: &mut u16) -> bool {
    if q.daddr != *sender {
        return false;
    }
    if q.proto != IPPROTO_ICMPV6 {
        let key = ct::v6::key(q.daddr, q.dport, q.saddr, q.sport, q.proto);
        if let Some(v) = ct::v6::find(&key) {
            *addr = v.orig_addr_be;
            *port = v.orig_port_be;
            return true;
        }
    }
    let key = snat::v6::flow_key(q.daddr, q.dport, q.saddr, q.sport, q.proto, SNAT_DIR_OUT);
    let Some(v) = snat::v6::out_entry(&key) else {
        return false;
    };
    *addr = v.addr_be;
    *port = v.port_be;
    true
}

/// Rewrites an inbound error to the container `addr:port`: the outer
/// destination (`outer_old`), the quoted source and source port.
#[inline(always)]
pub fn rewrite_in<B: Backend>(
    b: &mut B,
    q: &Quoted6,
    outer_old: &Ipv6Be,
    addr: &Ipv6Be,
    port: u16,
) -> Result<(), Failed> {
    let change = Change {
        outer_addr_off: IP6_DST_OFF,
        inner_addr_off: q.ip_off + SRC_OFF,
        inner_old_addr: q.saddr,
        inner_port_off: q.sport_off,
        inner_old_port: q.sport,
    };
    change.apply(b, q, outer_old, addr, port)
}

/// Rewrites a container's error to the published or masquerade
/// `addr:port`: the outer source (`outer_old`), the quoted destination and
/// destination port.
#[inline(always)]
pub fn rewrite_out<B: Backend>(
    b: &mut B,
    q: &Quoted6,
    outer_old: &Ipv6Be,
    addr: &Ipv6Be,
    port: u16,
) -> Result<(), Failed> {
    let change = Change {
        outer_addr_off: IP6_SRC_OFF,
        inner_addr_off: q.ip_off + DST_OFF,
        inner_old_addr: q.daddr,
        inner_port_off: q.dport_off,
        inner_old_port: q.dport,
    };
    change.apply(b, q, outer_old, addr, port)
}

/// Where the outer address and the quoted address and port are.
struct Change {
    outer_addr_off: usize,
    inner_addr_off: usize,
    inner_old_addr: Ipv6Be,
    inner_port_off: usize,
    inner_old_port: u16,
}

impl Change {
    /// Checksums first, then the fields.
    #[inline(always)]
    fn apply<B: Backend>(
        &self,
        b: &mut B,
        q: &Quoted6,
        outer_old: &Ipv6Be,
        new_addr: &Ipv6Be,
        new_port: u16,
    ) -> Result<(), Failed> {
        let plain = Covers {
            pseudo: false,
            udp: false,
        };
        let pseudo = Covers {
            pseudo: true,
            udp: false,
        };
        if q.l4_csum_off != 0 {
            let mut l4 = q.l4_csum;
            for (&old, &new) in self.inner_old_addr.iter().zip(new_addr) {
                l4 = csum::replace4(l4, old, new);
            }
            l4 = csum::replace2(l4, self.inner_old_port, new_port);
            if q.proto == IPPROTO_UDP && l4 == 0 {
                l4 = 0xffff;
            }
            b.l4_csum2(q.icmp_csum_off, q.l4_csum, l4, plain)?;
            b.store2(q.l4_csum_off, l4)?;
        }
        for (i, &new) in new_addr.iter().enumerate() {
            b.l4_csum4(q.icmp_csum_off, self.inner_old_addr[i], new, plain)?;
            b.l4_csum4(q.icmp_csum_off, outer_old[i], new, pseudo)?;
        }
        b.l4_csum2(q.icmp_csum_off, self.inner_old_port, new_port, plain)?;
        for (i, &new) in new_addr.iter().enumerate() {
            b.store4(self.inner_addr_off + 4 * i, new)?;
            b.store4(self.outer_addr_off + 4 * i, new)?;
        }
        b.store2(self.inner_port_off, new_port)
    }
}
