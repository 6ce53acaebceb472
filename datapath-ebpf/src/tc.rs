// SPDX-License-Identifier: GPL-2.0 OR MIT
//! TC programs: DNAT of what XDP deferred, and reverse NAT of replies.
//!
//! Rewrites use the kernel's `l3_csum_replace`/`l4_csum_replace` helpers:
//! they know `skb->ip_summed`, so a CHECKSUM_PARTIAL seed absorbs only the
//! address change, a complete checksum absorbs address and port, and a
//! CHECKSUM_COMPLETE `skb->csum` is kept in step. `BPF_F_MARK_MANGLED_0`
//! keeps a zero (absent) UDP checksum zero.

use core::mem::size_of;

use aya_ebpf::{
    EbpfContext as _,
    bindings::{__sk_buff, BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, TC_ACT_PIPE, TC_ACT_SHOT},
    cty::c_long,
    programs::TcContext,
};
use datapath_common::{Event, IPPROTO_ICMP, IPPROTO_UDP, XDP_TRANSLATED_MARK};

use crate::{
    ct, fwd,
    maps::{NA_EPADDR4_V1, NA_MASQ4_V1},
    nat,
    parse::{IP_CSUM_OFF, IP_DST_OFF, IP_SRC_OFF, MAX_HDR_LEN, Packet, parse},
    policy, snat,
    stats::{self, Direction},
};

/// Continue with the next program / normal processing (TCX_NEXT under TCX).
#[allow(
    clippy::unnecessary_cast,
    reason = "the generated binding is u32 on the BPF target and i32 on the host clippy runs on"
)]
pub const PASS: i32 = TC_ACT_PIPE as i32;
#[allow(clippy::unnecessary_cast, reason = "as PASS")]
pub const DROP: i32 = TC_ACT_SHOT as i32;

/// Parses the skb, pulling the headers into the linear area first if needed.
#[inline(always)]
fn parse_skb(ctx: &TcContext) -> Option<Packet> {
    let len = ctx.len();
    let want = if len < MAX_HDR_LEN { len } else { MAX_HDR_LEN };
    if ((ctx.data_end() - ctx.data()) as u32) < want {
        // Failure leaves the area short; parse then reports it malformed.
        let _ = ctx.pull_data(want);
    }
    match parse(ctx.data(), ctx.data_end(), len as usize) {
        Ok(pkt) => Some(pkt),
        Err(skip) => {
            stats::count_skip(skip);
            None
        }
    }
}

/// Whether XDP translated this packet already (its metadata mark).
#[inline(always)]
fn translated_by_xdp(ctx: &TcContext) -> bool {
    let skb = ctx.as_ptr() as *const __sk_buff;
    // SAFETY: reading context fields the verifier rewrites into packet
    // pointers; the mark is read only after a bounds check against data.
    let (meta, data) = unsafe { ((*skb).data_meta as usize, (*skb).data as usize) };
    if meta + size_of::<u32>() > data {
        return false;
    }
    // SAFETY: bounds checked just above.
    unsafe { *(meta as *const u32) == XDP_TRANSLATED_MARK }
}

/// DNAT at TC ingress for packets XDP left alone (see `csum::partial_seed`),
/// or all of them where no XDP runs (the mark is missing then); and replies
/// to masqueraded flows back to their container.
#[inline(always)]
pub fn ingress(ctx: &TcContext) -> i32 {
    if translated_by_xdp(ctx) {
        return fwd::to_endpoint(ctx);
    }
    let Some(pkt) = parse_skb(ctx) else {
        return PASS;
    };
    let Some(target) = nat::lookup(&pkt) else {
        return masquerade_reply(ctx, &pkt);
    };
    let rewrite = Rewrite::destination(&pkt, target.addr_be, target.port_be);
    if !rewrite.apply_or_count(ctx, &pkt) {
        return DROP;
    }
    ct::record(&pkt, &target);
    stats::count(Event::TcDnat);
    stats::count_publication(target.stats_slot, Direction::Forward, u64::from(pkt.ip_len));
    fwd::to_endpoint(ctx)
}

/// A reply to a masqueraded flow gets the container's address and port as
/// its destination; anything else passes untouched.
#[inline(always)]
fn masquerade_reply(ctx: &TcContext, pkt: &Packet) -> i32 {
    let Some(to) = snat::reply(pkt) else {
        return PASS;
    };
    let rewrite = Rewrite::destination(pkt, to.addr_be, to.port_be);
    if !rewrite.apply_or_count(ctx, pkt) {
        return DROP;
    }
    stats::count(Event::SnatReply);
    fwd::to_endpoint(ctx)
}

/// TC egress: a reply from a container endpoint to a tracked client gets
/// the published address and port as its source (so published-port flows
/// keep the client's real address on the container side); any other
/// packet from a container is masqueraded.
#[inline(always)]
pub fn egress(ctx: &TcContext) -> i32 {
    let Some(pkt) = parse_skb(ctx) else {
        return PASS;
    };
    let Some(orig) = ct::lookup_reply(&pkt) else {
        return masquerade(ctx, &pkt);
    };
    let rewrite = Rewrite::source(&pkt, orig.orig_addr_be, orig.orig_port_be);
    if !rewrite.apply_or_count(ctx, &pkt) {
        return DROP;
    }
    stats::count(Event::RevNat);
    stats::count_publication(orig.stats_slot, Direction::Reverse, u64::from(pkt.ip_len));
    PASS
}

/// SNAT of a container's packet leaving through this interface: source
/// becomes the interface's masquerade address and a flow port. Packets not
/// from a container endpoint pass untouched.
#[inline(always)]
fn masquerade(ctx: &TcContext, pkt: &Packet) -> i32 {
    // SAFETY: presence is all we read.
    if unsafe { NA_EPADDR4_V1.get(&pkt.saddr) }.is_none() {
        return PASS;
    }
    let skb = ctx.as_ptr() as *const __sk_buff;
    // SAFETY: reading a context field (the egress device).
    let ifindex = unsafe { (*skb).ifindex };
    // SAFETY: copied out at once.
    let Some(masq) = (unsafe { NA_MASQ4_V1.get(&ifindex) }).copied() else {
        stats::count(Event::PassNoMasqAddr);
        return PASS;
    };
    let Some(source) = snat::outbound(pkt, masq.addr_be) else {
        stats::count(Event::DropSnatNoPort);
        return DROP;
    };
    let rewrite = Rewrite::source(pkt, source.addr_be, source.port_be);
    if !rewrite.apply_or_count(ctx, pkt) {
        return DROP;
    }
    stats::count(Event::SnatOut);
    PASS
}

/// TC ingress on a container's host-side interface: the isolation policy,
/// then forwarding past the host's forwarding path.
#[inline(always)]
pub fn from_container(ctx: &TcContext) -> i32 {
    match policy::from_container(ctx) {
        policy::Outcome::NotOurs => PASS,
        policy::Outcome::Drop => DROP,
        policy::Outcome::Allow { src, ip, dst } => fwd::from_container(ctx, &src, &ip, dst),
    }
}

/// One address and one port replaced, with every checksum that covers them.
struct Rewrite {
    addr_off: usize,
    port_off: usize,
    old_addr: u32,
    new_addr: u32,
    old_port: u16,
    new_port: u16,
}

impl Rewrite {
    /// Destination address and port (DNAT).
    #[inline(always)]
    fn destination(pkt: &Packet, addr: u32, port: u16) -> Self {
        Self {
            addr_off: IP_DST_OFF,
            port_off: pkt.dport_off,
            old_addr: pkt.daddr,
            new_addr: addr,
            old_port: pkt.dport,
            new_port: port,
        }
    }

    /// Source address and port (reverse NAT).
    #[inline(always)]
    fn source(pkt: &Packet, addr: u32, port: u16) -> Self {
        Self {
            addr_off: IP_SRC_OFF,
            port_off: pkt.sport_off,
            old_addr: pkt.saddr,
            new_addr: addr,
            old_port: pkt.sport,
            new_port: port,
        }
    }

    /// [`Rewrite::apply`]; on failure counts it and returns false: the
    /// packet may be half-rewritten and must be dropped.
    #[inline(always)]
    fn apply_or_count(&self, ctx: &TcContext, pkt: &Packet) -> bool {
        let ok = self.apply(ctx, pkt).is_ok();
        if !ok {
            stats::count(Event::DropRewriteFailed);
        }
        ok
    }

    /// Checksums first, then the fields. A failure part-way leaves the
    /// packet inconsistent, so the caller must drop it.
    #[inline(always)]
    fn apply(&self, ctx: &TcContext, pkt: &Packet) -> Result<(), c_long> {
        let mangled0 = if pkt.proto == IPPROTO_UDP {
            u64::from(BPF_F_MARK_MANGLED_0)
        } else {
            0
        };
        // The ICMP checksum has no pseudo-header: addresses are not in it.
        if pkt.proto != IPPROTO_ICMP {
            ctx.l4_csum_replace(
                pkt.l4_csum_off,
                u64::from(self.old_addr),
                u64::from(self.new_addr),
                u64::from(BPF_F_PSEUDO_HDR) | mangled0 | 4,
            )?;
        }
        ctx.l4_csum_replace(
            pkt.l4_csum_off,
            u64::from(self.old_port),
            u64::from(self.new_port),
            mangled0 | 2,
        )?;
        ctx.l3_csum_replace(
            IP_CSUM_OFF,
            u64::from(self.old_addr),
            u64::from(self.new_addr),
            4,
        )?;
        ctx.store(self.addr_off, &self.new_addr, 0)?;
        ctx.store(self.port_off, &self.new_port, 0)?;
        Ok(())
    }
}
