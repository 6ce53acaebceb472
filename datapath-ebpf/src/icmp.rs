// SPDX-License-Identifier: GPL-2.0 OR MIT
//! ICMP errors about translated flows, translated through the packet they
//! quote, as netfilter's `nf_nat_icmp_reply_translation` does: path MTU
//! discovery (fragmentation needed), `traceroute` (time exceeded) and port
//! unreachable work through publications and masquerade.
//!
//! An error must belong to a tracked flow: its quoted packet is one the
//! flow sent, so it is looked up like that packet's reply. Then the outer
//! address, the quoted packet's address and port, and every checksum that
//! covers them change: the quoted IPv4 header checksum, the quoted L4
//! checksum when the quote includes it (routers may quote only 8 bytes of
//! L4; then it stays, as in netfilter), and the ICMP checksum, which
//! covers all the quoted bytes. The ICMP checksum has no pseudo-header,
//! so every change to it is a plain field change.
//!
//! - Inbound (to the host, served ingress): the quoted packet left through
//!   netagent, so its *source* is a published address or a masquerade
//!   address; both become the container's, as does the outer destination.
//! - Outbound (from a container, served egress): the quoted packet came in
//!   through netagent, so its *destination* is the container; it becomes
//!   the published or masquerade address, as does the outer source. The
//!   quote's destination must be the error's sender: a container may not
//!   speak of another's flow.

use datapath_common::{IPPROTO_ICMP, IPPROTO_UDP, SNAT_DIR_OUT, SNAT_F_IDENTITY};

use crate::{
    csum, ct,
    hdr::{IP_CSUM_OFF, IP_DST_OFF, IP_SRC_OFF},
    nat,
    parse::{Ipv4, Quoted},
    rewrite::{Backend, Covers, Failed},
    snat,
};

/// Where an inbound error goes once translated.
pub struct Inbound {
    /// The container address it now has as destination.
    pub addr_be: u32,
}

/// Why an error is not translated.
pub enum Untranslated {
    /// It belongs to no tracked flow.
    NoFlow,
    /// A rewrite step failed (the packet may be half-written).
    Failed,
}

impl From<Failed> for Untranslated {
    fn from(_: Failed) -> Self {
        Untranslated::Failed
    }
}

/// Translates an error arriving for the host about a packet a published
/// or masqueraded flow sent.
#[inline(always)]
pub fn translate_in<B: Backend>(b: &mut B, ip: &Ipv4, q: &Quoted) -> Result<Inbound, Untranslated> {
    let (addr, port) = inbound_flow(q).ok_or(Untranslated::NoFlow)?;
    if addr == q.saddr && port == q.sport && addr == ip.daddr {
        // An identity flow (`routed` network): nothing to change.
        return Ok(Inbound { addr_be: addr });
    }
    let change = Change {
        outer_addr_off: IP_DST_OFF,
        outer_old: ip.daddr,
        inner_addr_off: q.ip_off + 12,
        inner_old_addr: q.saddr,
        inner_port_off: q.sport_off,
        inner_old_port: q.sport,
        new_addr: addr,
        new_port: port,
    };
    change.apply(b, q)?;
    Ok(Inbound { addr_be: addr })
}

/// The container `addr:port` that sent the quoted packet, if it belongs to
/// a tracked flow: a published one (its source is a publication and its
/// reply tuple is tracked) or a masqueraded one.
#[inline(always)]
fn inbound_flow(q: &Quoted) -> Option<(u32, u16)> {
    if q.proto != IPPROTO_ICMP
        && let Ok(target) = nat::find(q.saddr, q.sport, q.proto)
    {
        let key = ct::key(target.addr_be, target.port_be, q.daddr, q.dport, q.proto);
        if let Some(v) = ct::find(&key)
            && v.orig_addr_be == q.saddr
            && v.orig_port_be == q.sport
        {
            return Some((target.addr_be, target.port_be));
        }
    }
    let key = snat::reply_key(q.daddr, q.dport, q.saddr, q.sport, q.proto);
    let v = snat::peek_reply(&key)?;
    if v.flags & SNAT_F_IDENTITY != 0 {
        return Some((q.saddr, q.sport));
    }
    Some((v.addr_be, v.port_be))
}

/// Translates an error a container sends about a packet that reached it
/// through a publication or a masqueraded flow.
#[inline(always)]
pub fn translate_out<B: Backend>(b: &mut B, ip: &Ipv4, q: &Quoted) -> Result<(), Untranslated> {
    // A container speaks only of packets it received: an error quoting
    // another's would report on a flow that is not its own.
    if q.daddr != ip.saddr {
        return Err(Untranslated::NoFlow);
    }
    let (addr, port) = outbound_flow(q).ok_or(Untranslated::NoFlow)?;
    let change = Change {
        outer_addr_off: IP_SRC_OFF,
        outer_old: ip.saddr,
        inner_addr_off: q.ip_off + 16,
        inner_old_addr: q.daddr,
        inner_port_off: q.dport_off,
        inner_old_port: q.dport,
        new_addr: addr,
        new_port: port,
    };
    change.apply(b, q)?;
    Ok(())
}

/// The published or masquerade `addr:port` the quoted packet was sent to.
#[inline(always)]
fn outbound_flow(q: &Quoted) -> Option<(u32, u16)> {
    if q.proto != IPPROTO_ICMP {
        let key = ct::key(q.daddr, q.dport, q.saddr, q.sport, q.proto);
        if let Some(v) = ct::find(&key) {
            return Some((v.orig_addr_be, v.orig_port_be));
        }
    }
    let key = snat::flow_key(q.daddr, q.dport, q.saddr, q.sport, q.proto, SNAT_DIR_OUT);
    let v = snat::out_entry(&key)?;
    Some((v.addr_be, v.port_be))
}

/// The outer address and the quoted packet's address and port, changed.
struct Change {
    outer_addr_off: usize,
    outer_old: u32,
    inner_addr_off: usize,
    inner_old_addr: u32,
    inner_port_off: usize,
    inner_old_port: u16,
    new_addr: u32,
    new_port: u16,
}

impl Change {
    #[inline(always)]
    fn apply<B: Backend>(&self, b: &mut B, q: &Quoted) -> Result<(), Failed> {
        let plain = Covers {
            pseudo: false,
            udp: false,
        };
        let (old_addr, new_addr) = (self.inner_old_addr, self.new_addr);
        let (old_port, new_port) = (self.inner_old_port, self.new_port);
        if q.l4_csum_off != 0 {
            let mut l4 = q.l4_csum;
            if q.proto != IPPROTO_ICMP {
                l4 = csum::replace4(l4, old_addr, new_addr);
            }
            l4 = csum::replace2(l4, old_port, new_port);
            if q.proto == IPPROTO_UDP && l4 == 0 {
                l4 = 0xffff;
            }
            b.l4_csum2(q.icmp_csum_off, q.l4_csum, l4, plain)?;
            b.store2(q.l4_csum_off, l4)?;
        }
        let ip_csum = csum::replace4(q.ip_csum, old_addr, new_addr);
        b.l4_csum2(q.icmp_csum_off, q.ip_csum, ip_csum, plain)?;
        b.l4_csum4(q.icmp_csum_off, old_addr, new_addr, plain)?;
        b.l4_csum2(q.icmp_csum_off, old_port, new_port, plain)?;
        b.store2(q.ip_off + 10, ip_csum)?;
        b.store4(self.inner_addr_off, new_addr)?;
        b.store2(self.inner_port_off, new_port)?;
        b.ip_csum4(IP_CSUM_OFF, self.outer_old, new_addr)?;
        b.store4(self.outer_addr_off, new_addr)
    }
}
