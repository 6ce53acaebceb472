// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The programs on the interfaces the agent serves (the host's uplinks):
//! what arrives from outside and what leaves.
//!
//! In (XDP, then TC ingress): DNAT to published ports, replies to
//! masqueraded flows, ICMP errors and later fragments of those, each
//! delivered straight to its container (fwd.rs). Anything else for a
//! container address is dropped (`drop_unpublished`): nothing from outside
//! reaches a container unless it was translated, or its network is
//! `routed` and the port is published there. The rest is the host's.
//!
//! Out (TC egress): replies of published flows get their published source
//! back, containers' packets are masqueraded, ICMP errors and later
//! fragments of those follow. A container's packet that cannot be
//! translated is dropped and counted, never sent with its private source
//! (unless its network is `routed`, where container addresses are meant
//! to be seen).

use core::{mem::size_of, ptr::NonNull};

use aya_ebpf::{
    EbpfContext as _,
    bindings::__sk_buff,
    helpers::generated::{bpf_xdp_adjust_meta, bpf_xdp_get_buff_len},
    programs::{TcContext, XdpContext},
};
use datapath_common::{
    CtValue6, EndpointAddr, Event, FRAG_REWRITE_DST, FRAG_REWRITE_SRC, FragValue6, IPPROTO_ICMPV6,
    IPPROTO_UDP, Ipv6Be, NET_F_ROUTED, NO_STATS_SLOT, OpenPort, PubValue, PubValue6,
    SNAT_F_IDENTITY, SnatValue, SnatValue6, XDP_TRANSLATED_MARK,
};

use crate::{
    csum, ct, frag, fwd,
    hdr::{
        ETH_HLEN, ETH_P_IPV6, ETH_PROTO_OFF, FLOW_HDR_LEN, ICMP_ERROR_HDR_LEN, IP_DST_OFF,
        IP_SRC_OFF, IP6_DST_OFF, IP6_SRC_OFF, IPV6_HDR_LEN, is_loopback, read,
    },
    icmp::{self, Untranslated},
    icmp6::{self, Quoted6},
    maps::{NA_EPADDR4_V1, NA_EPADDR6_V1, NA_MASQ4_V1, NA_MASQ6_V1, NA_OPEN4_V1},
    nat,
    parse::{self, Frag, Ipv4, Packet, Skip},
    parse6::{self, Ipv6, Packet6},
    rewrite::{self, Backend as _, Nat, TcBackend, XdpBackend},
    skb,
    snat::{self, Refused},
    stats::{self, Direction, tc_drop, xdp_drop},
    verdict::{TC_NEXT, XDP_NEXT},
};

/// XDP: DNAT of published TCP/UDP packets whose L4 checksum is complete
/// (everything from a real wire), before the kernel builds an skb. The
/// rest (fragments, ICMP, CHECKSUM_PARTIAL seeds, packets it cannot tag)
/// is left untouched to TC ingress. Always passes to the stack: TC
/// ingress then delivers what XDP translated.
#[inline(always)]
pub fn xdp_ingress(ctx: &XdpContext) -> u32 {
    let (data, data_end) = (ctx.data(), ctx.data_end());
    // The whole frame, fragments of a multi-buffer packet included (the
    // program is loaded `xdp.frags`); headers are read from the first
    // buffer only, bounds-checked against `data_end`.
    // SAFETY: the context pointer is the program's own.
    let frame_len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) } as usize;
    let Ok(ip) = parse::ipv4(data, data_end, frame_len) else {
        return XDP_NEXT;
    };
    if ip.frag != Frag::Whole {
        return XDP_NEXT;
    }
    let Ok(pkt) = parse::flow(data, data_end, &ip) else {
        return XDP_NEXT;
    };
    // Refusals are counted once, by TC ingress, which sees this packet next.
    let Ok(target) = nat::find(pkt.daddr, pkt.dport, pkt.proto) else {
        return XDP_NEXT;
    };
    let has_l4_csum = !(pkt.proto == IPPROTO_UDP && pkt.l4_csum == 0);
    if has_l4_csum && pkt.l4_csum == csum::partial_seed(pkt.saddr, pkt.daddr, pkt.proto, pkt.l4_len)
    {
        stats::count(Event::XdpDeferred);
        return XDP_NEXT;
    }
    // Tag first: a packet translated but untagged would be taken for an
    // untranslated one by TC ingress.
    if !mark_translated(ctx) {
        stats::count(Event::XdpNoMeta);
        return XDP_NEXT;
    }
    let mut b = XdpBackend {
        data: ctx.data(),
        data_end: ctx.data_end(),
    };
    if Nat::destination(&pkt, target.addr_be, target.port_be)
        .apply(&mut b)
        .is_err()
    {
        return xdp_drop(Event::DropRewriteFailed);
    }
    ct::track_forward(&pkt, &target);
    stats::count(Event::XdpDnat);
    stats::count_publication(target.stats_slot, Direction::Forward, pkt.ip.tot_len);
    XDP_NEXT
}

/// Tags the packet's metadata so TC ingress knows it is translated.
/// False if the driver gives no metadata room (the packet must then be
/// left to TC). Invalidates packet pointers.
#[inline(always)]
fn mark_translated(ctx: &XdpContext) -> bool {
    // SAFETY: the helper only moves data_meta within the headroom.
    if unsafe { bpf_xdp_adjust_meta(ctx.ctx, -(size_of::<u32>() as i32)) } != 0 {
        return false;
    }
    let (meta, data) = (ctx.metadata(), ctx.data());
    if meta + size_of::<u32>() > data {
        return false;
    }
    // SAFETY: bounds checked against data just above; metadata is 4-aligned.
    unsafe { *(meta as *mut u32) = XDP_TRANSLATED_MARK };
    true
}

/// TC ingress of a served interface.
#[inline(always)]
pub fn tc_ingress(ctx: &TcContext) -> i32 {
    // Each family is a BPF-to-BPF call with its own frame: the verifier
    // allows 512 bytes of stack along a call chain, and a frame holds
    // every local of every path through it.
    // XDP's mark first, before any pull touches the head.
    let marked = skb::translated_by_xdp(ctx);
    if is_ipv6(ctx) {
        ipv6_in(skb_ptr(ctx))
    } else {
        ipv4_in(skb_ptr(ctx), marked)
    }
}

/// Whether the frame is IPv6 (pulls the Ethernet header first).
#[inline(always)]
fn is_ipv6(ctx: &TcContext) -> bool {
    skb::pull(ctx, ETH_HLEN as u32);
    read::<[u8; 2]>(ctx.data(), ctx.data_end(), ETH_PROTO_OFF) == Some(ETH_P_IPV6)
}

/// TC ingress, everything but IPv6 (`marked`: XDP translated it).
#[inline(never)]
fn ipv4_in(skb: NonNull<__sk_buff>, marked: bool) -> i32 {
    let ctx = &TcContext::new(skb);
    skb::pull(ctx, FLOW_HDR_LEN);
    let (data, data_end) = (ctx.data(), ctx.data_end());
    let ip = match parse::ipv4(data, data_end, ctx.len() as usize) {
        Ok(ip) => ip,
        Err(Skip::Malformed) => {
            stats::count(Event::PassMalformed);
            return TC_NEXT;
        }
        Err(_) => return TC_NEXT,
    };
    if marked {
        return fwd::to_endpoint(ctx, &ip, ip.daddr);
    }
    if is_loopback(ip.daddr) {
        return tc_drop(Event::DropLoopbackDst);
    }
    if ip.frag == Frag::Later {
        return later_fragment_in(ctx, &ip);
    }
    if parse::is_icmp_error(data, data_end, &ip) {
        return icmp_error_in(ctx, &ip);
    }
    let pkt = match parse::flow(data, data_end, &ip) {
        Ok(pkt) => pkt,
        Err(_) => return guard_in(ctx, &ip, None),
    };
    if let Some(target) = nat::lookup(pkt.daddr, pkt.dport, pkt.proto) {
        return dnat(ctx, &pkt, &target);
    }
    if let Some(to) = snat::reply(&pkt) {
        return masquerade_reply(ctx, &pkt, &to);
    }
    guard_in(ctx, &ip, Some(&pkt))
}

#[inline(always)]
fn dnat(ctx: &TcContext, pkt: &Packet, target: &PubValue) -> i32 {
    let nat = Nat::destination(pkt, target.addr_be, target.port_be);
    if nat.apply(&mut TcBackend(ctx)).is_err() {
        return tc_drop(Event::DropRewriteFailed);
    }
    ct::track_forward(pkt, target);
    if pkt.ip.frag == Frag::First {
        frag::record(&pkt.ip, FRAG_REWRITE_DST, target.addr_be, target.stats_slot);
    }
    stats::count(Event::TcDnat);
    stats::count_publication(target.stats_slot, Direction::Forward, pkt.ip.tot_len);
    fwd::to_endpoint(ctx, &pkt.ip, target.addr_be)
}

/// A reply to a masqueraded flow gets the container's address and port as
/// its destination (an identity flow of a `routed` network keeps its own).
#[inline(always)]
fn masquerade_reply(ctx: &TcContext, pkt: &Packet, to: &SnatValue) -> i32 {
    if to.flags & SNAT_F_IDENTITY != 0 {
        stats::count(Event::RoutedIn);
    } else {
        let nat = Nat::destination(pkt, to.addr_be, to.port_be);
        if nat.apply(&mut TcBackend(ctx)).is_err() {
            return tc_drop(Event::DropRewriteFailed);
        }
        stats::count(Event::SnatReply);
    }
    if pkt.ip.frag == Frag::First {
        frag::record(&pkt.ip, FRAG_REWRITE_DST, to.addr_be, NO_STATS_SLOT);
    }
    fwd::to_endpoint(ctx, &pkt.ip, to.addr_be)
}

#[inline(always)]
fn later_fragment_in(ctx: &TcContext, ip: &Ipv4) -> i32 {
    let Some(f) = frag::lookup(ip) else {
        return guard_in(ctx, ip, None);
    };
    if f.rewrite != FRAG_REWRITE_DST {
        return guard_in(ctx, ip, None);
    }
    if rewrite::address(&mut TcBackend(ctx), IP_DST_OFF, ip.daddr, f.addr_be).is_err() {
        return tc_drop(Event::DropRewriteFailed);
    }
    stats::count(Event::FragTranslated);
    stats::count_publication(f.stats_slot, Direction::Forward, ip.tot_len);
    fwd::to_endpoint(ctx, ip, f.addr_be)
}

#[inline(always)]
fn icmp_error_in(ctx: &TcContext, ip: &Ipv4) -> i32 {
    skb::pull(ctx, ICMP_ERROR_HDR_LEN);
    let Some(q) = parse::quoted(ctx.data(), ctx.data_end(), ip) else {
        return guard_in(ctx, ip, None);
    };
    match icmp::translate_in(&mut TcBackend(ctx), ip, &q) {
        Ok(to) => {
            stats::count(Event::IcmpErrorIn);
            fwd::to_endpoint(ctx, ip, to.addr_be)
        }
        Err(Untranslated::NoFlow) => guard_in(ctx, ip, None),
        Err(Untranslated::Failed) => tc_drop(Event::DropRewriteFailed),
    }
}

/// The last word on a packet from outside that nothing translated: to a
/// container address, only a `routed` network's open ports (and pings)
/// get in; everything else for a container is dropped. The rest is the
/// host's.
#[inline(always)]
fn guard_in(ctx: &TcContext, ip: &Ipv4, pkt: Option<&Packet>) -> i32 {
    // SAFETY: copied out at once.
    let Some(ep) = (unsafe { NA_EPADDR4_V1.get(&ip.daddr) }).copied() else {
        return TC_NEXT;
    };
    if ep.net.flags & NET_F_ROUTED != 0
        && let Some(pkt) = pkt
        && (pkt.is_echo_request() || open(pkt))
    {
        stats::count(Event::RoutedIn);
        return fwd::to_endpoint(ctx, ip, ip.daddr);
    }
    if ip.frag == Frag::Later {
        return tc_drop(Event::DropFragUntracked);
    }
    tc_drop(Event::DropUnpublished)
}

/// Whether the packet's destination port is open on its container.
#[inline(always)]
fn open(pkt: &Packet) -> bool {
    let key = OpenPort {
        addr_be: pkt.daddr,
        port_be: pkt.dport,
        proto: pkt.proto,
        _pad: 0,
    };
    // SAFETY: presence is all we read.
    unsafe { NA_OPEN4_V1.get(&key) }.is_some()
}

/// IPv6 arriving on a served interface (a BPF-to-BPF call: its own
/// stack frame, the context by value, see endpoint.rs): DNAT to the IPv6
/// side of a publication, and replies of masqueraded flows back to their
/// container, each delivered straight to it. Nothing else reaches a
/// container's IPv6 address (`drop_unpublished`), and nothing reaches
/// `::1` or the rest of `::/8` (`drop_loopback_dst`: martians, as
/// 127.0.0.0/8 is for IPv4). The rest (the host's own IPv6, anything
/// else) is the host's. Fragmented IPv6 is not translated.
#[inline(never)]
fn ipv6_in(skb: NonNull<__sk_buff>) -> i32 {
    let ctx = &TcContext::new(skb);
    skb::pull(ctx, IPV6_HDR_LEN);
    let (data, data_end) = (ctx.data(), ctx.data_end());
    let Some((_, daddr)) = parse6::addresses(data, data_end) else {
        return TC_NEXT;
    };
    if parse6::is_reserved_dst(&daddr) {
        return tc_drop(Event::DropLoopbackDst);
    }
    // The first parse tells which of the other handlers can apply, so a
    // packet pays for one more parse at most.
    let handled = match dnat6(skb) {
        UNHANDLED_FLOW => masquerade_reply6(skb),
        UNHANDLED_ICMP => icmp6_error_in(skb),
        UNHANDLED_LATER_FRAGMENT => later_fragment_in6(skb),
        UNHANDLED_OTHER => None,
        verdict => return verdict,
    };
    if let Some(verdict) = handled {
        return verdict;
    }
    // SAFETY: presence is all we read.
    if unsafe { NA_EPADDR6_V1.get(&daddr) }.is_some() {
        return tc_drop(Event::DropUnpublished);
    }
    TC_NEXT
}

/// Records what the later fragments of `pkt`'s datagram (a first
/// fragment, as it arrived) get: `addr` as their source or destination
/// (frag.rs). Its own frame.
#[inline(never)]
fn record_fragment6(pkt: &Packet6, rewrite: u8, addr: &Ipv6Be, stats_slot: u32) {
    let value = FragValue6 {
        addr_be: *addr,
        stats_slot,
        rewrite,
        ..FragValue6::default()
    };
    frag::v6::record(&pkt.saddr, &pkt.daddr, pkt.frag_id, pkt.proto, &value);
}

/// A later fragment of an IPv6 datagram whose first fragment was
/// translated: its destination too, and delivered; one whose first was
/// not seen is dropped if it is for a container (`drop_fragment_untracked`)
/// and the host's otherwise. `None` if it is no later fragment.
#[inline(never)]
fn later_fragment_in6(skb: NonNull<__sk_buff>) -> Option<i32> {
    let mut ip = Ipv6::default();
    if !parse6::ipv6_of(skb, &mut ip) || !ip.later_fragment {
        return None;
    }
    let mut f = FragValue6::default();
    if !frag::v6::lookup(&ip.saddr, &ip.daddr, ip.frag_id, ip.proto, &mut f)
        || f.rewrite != FRAG_REWRITE_DST
    {
        // SAFETY: presence is all we read.
        if unsafe { NA_EPADDR6_V1.get(&ip.daddr) }.is_some() {
            return Some(tc_drop(Event::DropFragUntracked));
        }
        return Some(TC_NEXT);
    }
    if !store_addr6(skb, IP6_DST_OFF, &f.addr_be) {
        return Some(tc_drop(Event::DropRewriteFailed));
    }
    stats::count(Event::FragTranslated);
    stats::count_publication(f.stats_slot, Direction::Forward, parse6::counted_len(&ip));
    Some(fwd::to_endpoint6(skb, &ip, &f.addr_be))
}

/// A container's later fragment of an IPv6 datagram whose first fragment
/// was translated: its source too; one whose first was not seen never
/// leaves (`drop_fragment_untracked`). `None` if it is no later fragment.
#[inline(never)]
fn later_fragment_out6(skb: NonNull<__sk_buff>) -> Option<i32> {
    let mut ip = Ipv6::default();
    if !parse6::ipv6_of(skb, &mut ip) || !ip.later_fragment {
        return None;
    }
    let mut f = FragValue6::default();
    if !frag::v6::lookup(&ip.saddr, &ip.daddr, ip.frag_id, ip.proto, &mut f)
        || f.rewrite != FRAG_REWRITE_SRC
    {
        return Some(tc_drop(Event::DropFragUntracked));
    }
    if !store_addr6(skb, IP6_SRC_OFF, &f.addr_be) {
        return Some(tc_drop(Event::DropRewriteFailed));
    }
    stats::count(Event::FragTranslated);
    stats::count_publication(f.stats_slot, Direction::Reverse, parse6::counted_len(&ip));
    Some(TC_NEXT)
}

/// Writes an IPv6 address at `off` (no checksum covers it: IPv6 has no
/// header checksum, and a later fragment no L4 header); false if a store
/// failed.
#[inline(always)]
fn store_addr6(skb: NonNull<__sk_buff>, off: usize, addr: &Ipv6Be) -> bool {
    let ctx = &TcContext::new(skb);
    let mut b = TcBackend(ctx);
    for (i, &word) in addr.iter().enumerate() {
        if b.store4(off + 4 * i, word).is_err() {
            return false;
        }
    }
    true
}

/// The packet's IPv6 header into `ip` and, if it is an ICMPv6 error with a
/// quote it could translate, the quote into `q`; false otherwise.
#[inline(always)]
fn icmp6_error_of(skb: NonNull<__sk_buff>, ip: &mut Ipv6, q: &mut Quoted6) -> bool {
    if !parse6::ipv6_of(skb, ip) {
        return false;
    }
    let ctx = &TcContext::new(skb);
    icmp6::quoted6(ctx.data(), ctx.data_end(), ip, q)
}

/// An ICMPv6 error about a published or masqueraded flow, translated and
/// delivered to its container (icmp6.rs); `None` if it is none. Its own
/// frame, as [`dnat6`].
#[inline(never)]
fn icmp6_error_in(skb: NonNull<__sk_buff>) -> Option<i32> {
    let (mut ip, mut q) = (Ipv6::default(), Quoted6::default());
    if !icmp6_error_of(skb, &mut ip, &mut q) {
        return None;
    }
    let ctx = &TcContext::new(skb);
    let (mut addr, mut port) = ([0; 4], 0);
    if !icmp6::inbound_flow(&q, &mut addr, &mut port) {
        return None;
    }
    if icmp6::rewrite_in(&mut TcBackend(ctx), &q, &ip.daddr, &addr, port).is_err() {
        return Some(tc_drop(Event::DropRewriteFailed));
    }
    stats::count(Event::IcmpErrorIn);
    Some(fwd::to_endpoint6(skb, &ip, &addr))
}

/// A container's ICMPv6 error about a packet that reached it through a
/// publication or a masqueraded flow, translated (icmp6.rs); one about
/// anything else never leaves (`drop_untranslatable`). `None` if it is no
/// ICMPv6 error with a quote it could translate. Its own frame.
#[inline(never)]
fn icmp6_error_out(skb: NonNull<__sk_buff>) -> Option<i32> {
    let (mut ip, mut q) = (Ipv6::default(), Quoted6::default());
    if !icmp6_error_of(skb, &mut ip, &mut q) {
        return None;
    }
    let ctx = &TcContext::new(skb);
    let (mut addr, mut port) = ([0; 4], 0);
    if !icmp6::outbound_flow(&q, &ip.saddr, &mut addr, &mut port) {
        return Some(tc_drop(Event::DropUntranslatable));
    }
    if icmp6::rewrite_out(&mut TcBackend(ctx), &q, &ip.saddr, &addr, port).is_err() {
        return Some(tc_drop(Event::DropRewriteFailed));
    }
    stats::count(Event::IcmpErrorOut);
    Some(TC_NEXT)
}

/// A reply to a masqueraded IPv6 flow (TCP, UDP, ICMPv6 echo) gets the
/// container's address and port as its destination and goes straight to
/// it; `None` if it is none. Its own frame, as [`dnat6`].
#[inline(never)]
fn masquerade_reply6(skb: NonNull<__sk_buff>) -> Option<i32> {
    let mut ip = Ipv6::default();
    let mut pkt = Packet6::default();
    if !flow6(skb, &mut ip, &mut pkt) {
        return None;
    }
    let to = snat::v6::reply(&pkt)?;
    if !rewrite::nat6_tc(skb, &pkt, &to.addr_be, to.port_be, true) {
        return Some(tc_drop(Event::DropRewriteFailed));
    }
    if pkt.first_fragment {
        record_fragment6(&pkt, FRAG_REWRITE_DST, &to.addr_be, NO_STATS_SLOT);
    }
    stats::count(Event::SnatReply);
    Some(fwd::to_endpoint6(skb, &ip, &to.addr_be))
}

// What the first IPv6 handler (`dnat6`, `reverse_nat6`) returns instead
// of a verdict for a packet it did not handle: the packet's kind, so only
// the later handler that can apply parses it again (in its own frame). A
// scalar, not an out-parameter: the callers' frames are at the limit. No
// TC verdict has these values.

/// TCP, UDP or ICMPv6 echo (a first fragment included).
const UNHANDLED_FLOW: i32 = i32::MIN;
/// Other ICMPv6 (an error, perhaps).
const UNHANDLED_ICMP: i32 = i32::MIN + 1;
/// A fragment after the first.
const UNHANDLED_LATER_FRAGMENT: i32 = i32::MIN + 2;
/// Anything else, or unparseable.
const UNHANDLED_OTHER: i32 = i32::MIN + 3;

/// The `UNHANDLED_*` kind of a packet whose header `flow6` parsed into
/// `ip` (or left default), `is_flow` what it answered.
#[inline(always)]
fn unhandled6(ip: &Ipv6, is_flow: bool) -> i32 {
    if is_flow {
        UNHANDLED_FLOW
    } else if ip.later_fragment {
        UNHANDLED_LATER_FRAGMENT
    } else if ip.proto == IPPROTO_ICMPV6 {
        UNHANDLED_ICMP
    } else {
        UNHANDLED_OTHER
    }
}

/// DNAT of an IPv6 packet to a publication's IPv6 side; the packet's
/// `UNHANDLED_*` kind if it is none (not TCP/UDP, fragmented, not
/// published). Its own BPF-to-BPF call: the IPv6 structures are large,
/// and frames add up only along a call chain.
#[inline(never)]
fn dnat6(skb: NonNull<__sk_buff>) -> i32 {
    let mut ip = Ipv6::default();
    let mut pkt = Packet6::default();
    let is_flow = flow6(skb, &mut ip, &mut pkt);
    let mut target = PubValue6::default();
    if !is_flow || !find6(&pkt, &mut target) {
        return unhandled6(&ip, is_flow);
    }
    // An IPv4-mapped target (a `[::1]` publication to a container without
    // IPv6) is the host sockets' alone; the agent keys those on `::1`,
    // which never matches here, and this keeps it so whatever the map
    // holds.
    if parse6::is_reserved_dst(&target.addr_be) {
        return tc_drop(Event::DropUntranslatable);
    }
    if !rewrite::nat6_tc(skb, &pkt, &target.addr_be, target.port_be, true) {
        return tc_drop(Event::DropRewriteFailed);
    }
    track6(&pkt, &target);
    if pkt.first_fragment {
        record_fragment6(&pkt, FRAG_REWRITE_DST, &target.addr_be, target.stats_slot);
    }
    stats::count(Event::TcDnat);
    stats::count_publication(
        target.stats_slot,
        Direction::Forward,
        parse6::counted_len(&ip),
    );
    fwd::to_endpoint6(skb, &ip, &target.addr_be)
}

/// The IPv6 header and TCP/UDP flow of the packet, in a frame of its own,
/// into `ip` and `pkt`; false if it is none.
#[inline(never)]
fn flow6(skb: NonNull<__sk_buff>, ip: &mut Ipv6, pkt: &mut Packet6) -> bool {
    if !parse6::ipv6_of(skb, ip) {
        return false;
    }
    let ctx = &TcContext::new(skb);
    parse6::flow6(ctx.data(), ctx.data_end(), ip, pkt).is_ok()
}

/// `nat::find6` in a frame of its own, into `out`.
#[inline(never)]
fn find6(pkt: &Packet6, out: &mut PubValue6) -> bool {
    match nat::find6(&pkt.daddr, pkt.dport, pkt.proto) {
        Some(v) => {
            *out = v;
            true
        }
        None => false,
    }
}

/// `ct::v6::track_forward` in a frame of its own (IPv6 keys and values
/// are large).
#[inline(never)]
fn track6(pkt: &Packet6, target: &PubValue6) {
    ct::v6::track_forward(pkt, target);
}

/// `ct::v6::lookup_reply` in a frame of its own, into `out` (a BPF
/// function returns a scalar only).
#[inline(never)]
fn reply6(pkt: &Packet6, out: &mut CtValue6) -> bool {
    match ct::v6::lookup_reply(pkt) {
        Some(v) => {
            *out = v;
            true
        }
        None => false,
    }
}

/// IPv6 leaving a served interface (a BPF-to-BPF call, as [`ipv6_in`]):
/// replies of published flows get the published source back; a
/// container's TCP, UDP and ICMPv6 echo are masqueraded (NAT66, as
/// Docker's ip6tables MASQUERADE); anything else with a container source
/// cannot be translated (fragments, other protocols, ICMPv6 errors), so it
/// never leaves (`drop_untranslatable`); the host's own go on.
#[inline(never)]
fn ipv6_out(skb: NonNull<__sk_buff>) -> i32 {
    let ctx = &TcContext::new(skb);
    skb::pull(ctx, IPV6_HDR_LEN);
    let (data, data_end) = (ctx.data(), ctx.data_end());
    let Some((saddr, _)) = parse6::addresses(data, data_end) else {
        return TC_NEXT;
    };
    let kind = reverse_nat6(skb);
    if !matches!(
        kind,
        UNHANDLED_FLOW | UNHANDLED_ICMP | UNHANDLED_LATER_FRAGMENT | UNHANDLED_OTHER
    ) {
        return kind;
    }
    // SAFETY: presence is all we read.
    if unsafe { NA_EPADDR6_V1.get(&saddr) }.is_none() {
        return TC_NEXT;
    }
    // A container's: translated by the one handler that can, or dropped.
    let handled = match kind {
        UNHANDLED_FLOW => return masquerade6(skb),
        UNHANDLED_ICMP => icmp6_error_out(skb),
        UNHANDLED_LATER_FRAGMENT => later_fragment_out6(skb),
        _ => None,
    };
    handled.unwrap_or_else(|| tc_drop(Event::DropUntranslatable))
}

/// A reply of a published IPv6 flow gets the published source back; the
/// packet's `UNHANDLED_*` kind if it is none. Its own frame: the masquerade path below must
/// not carry this one's locals (the verifier's 512 bytes are per call
/// chain).
#[inline(never)]
fn reverse_nat6(skb: NonNull<__sk_buff>) -> i32 {
    let mut orig = CtValue6::default();
    let (mut ip, mut pkt) = (Ipv6::default(), Packet6::default());
    let is_flow = flow6(skb, &mut ip, &mut pkt);
    if !is_flow || !reply6(&pkt, &mut orig) {
        return unhandled6(&ip, is_flow);
    }
    if !rewrite::nat6_tc(skb, &pkt, &orig.orig_addr_be, orig.orig_port_be, false) {
        return tc_drop(Event::DropRewriteFailed);
    }
    if pkt.first_fragment {
        record_fragment6(&pkt, FRAG_REWRITE_SRC, &orig.orig_addr_be, orig.stats_slot);
    }
    stats::count(Event::RevNat);
    stats::count_publication(
        orig.stats_slot,
        Direction::Reverse,
        parse6::counted_len(&ip),
    );
    TC_NEXT
}

/// The TCP/UDP/echo flow of the packet into `pkt`, its IPv6 header in
/// this call's frame (not the caller's).
#[inline(never)]
fn flow_only6(skb: NonNull<__sk_buff>, pkt: &mut Packet6) -> bool {
    let mut ip = Ipv6::default();
    flow6(skb, &mut ip, pkt)
}

/// SNAT of a container's IPv6 packet: its source becomes the interface's
/// IPv6 masquerade address and a flow port (echo identifier); what is no
/// flow (fragments, other protocols, ICMPv6 errors) cannot be, and is
/// dropped. Its own frame, kept small: the port allocation below it
/// (`snat::v6::allocate`) is the deepest call of the egress program.
#[inline(never)]
fn masquerade6(skb: NonNull<__sk_buff>) -> i32 {
    let mut pkt = Packet6::default();
    if !flow_only6(skb, &mut pkt) {
        return tc_drop(Event::DropUntranslatable);
    }
    let pkt = &pkt;
    let ctx = &TcContext::new(skb);
    let ifindex = skb::ifindex(ctx);
    // SAFETY: copied out at once.
    let Some(masq) = (unsafe { NA_MASQ6_V1.get(&ifindex) }).copied() else {
        return tc_drop(Event::DropNoMasqAddr);
    };
    let mut source = SnatValue6::default();
    match snat::v6::outbound(ctx, pkt, &masq.addr_be, &mut source) {
        Ok(()) => {}
        Err(Refused::NoFlow) => return tc_drop(Event::DropSnatNoFlow),
        Err(Refused::Share) => return tc_drop(Event::DropSnatShare),
        Err(Refused::NoPort) => return tc_drop(Event::DropSnatNoPort),
    }
    if !rewrite::nat6_tc(skb, pkt, &source.addr_be, source.port_be, false) {
        return tc_drop(Event::DropRewriteFailed);
    }
    if pkt.first_fragment {
        record_fragment6(pkt, FRAG_REWRITE_SRC, &source.addr_be, NO_STATS_SLOT);
    }
    stats::count(Event::SnatOut);
    TC_NEXT
}

/// The context pointer, for the BPF-to-BPF calls above.
#[inline(always)]
fn skb_ptr(ctx: &TcContext) -> NonNull<__sk_buff> {
    // SAFETY: the context pointer the kernel gave this program.
    unsafe { NonNull::new_unchecked(ctx.as_ptr().cast()) }
}

/// TC egress of a served interface.
#[inline(always)]
pub fn tc_egress(ctx: &TcContext) -> i32 {
    // As in `tc_ingress`: one call, one frame, per family.
    if is_ipv6(ctx) {
        ipv6_out(skb_ptr(ctx))
    } else {
        ipv4_out(skb_ptr(ctx))
    }
}

/// TC egress, everything but IPv6.
#[inline(never)]
fn ipv4_out(skb: NonNull<__sk_buff>) -> i32 {
    let ctx = &TcContext::new(skb);
    skb::pull(ctx, FLOW_HDR_LEN);
    let (data, data_end) = (ctx.data(), ctx.data_end());
    let ip = match parse::ipv4(data, data_end, ctx.len() as usize) {
        Ok(ip) => ip,
        Err(Skip::Malformed) => return malformed_out(data, data_end),
        Err(_) => return TC_NEXT,
    };
    // SAFETY: a reference into a map value the agent replaces whole.
    let ctr: Option<&EndpointAddr> = unsafe { NA_EPADDR4_V1.get(&ip.saddr) };
    // A container whose source must not leave as is.
    let private = ctr.is_some_and(|e| e.net.flags & NET_F_ROUTED == 0);
    if ip.frag == Frag::Later {
        return later_fragment_out(ctx, &ip, private);
    }
    if parse::is_icmp_error(data, data_end, &ip) {
        return icmp_error_out(ctx, &ip, private);
    }
    let Ok(pkt) = parse::flow(data, data_end, &ip) else {
        return guard_out(private);
    };
    if let Some(orig) = ct::lookup_reply(&pkt) {
        return reverse_nat(
            ctx,
            &pkt,
            orig.orig_addr_be,
            orig.orig_port_be,
            orig.stats_slot,
        );
    }
    if ctr.is_none() {
        return TC_NEXT;
    }
    if !private {
        snat::identity(&pkt);
        return TC_NEXT;
    }
    masquerade(ctx, &pkt)
}

/// A container's packet that cannot be translated is dropped; the host's
/// own go on.
#[inline(always)]
fn guard_out(private: bool) -> i32 {
    if private {
        tc_drop(Event::DropUntranslatable)
    } else {
        TC_NEXT
    }
}

/// Malformed IPv4 leaving: dropped if its source is a container's (as far
/// as it can be read), left to the stack otherwise.
#[inline(always)]
fn malformed_out(data: usize, data_end: usize) -> i32 {
    let Some(src) = read::<[u8; 4]>(data, data_end, IP_SRC_OFF) else {
        return TC_NEXT;
    };
    // SAFETY: copied out at once.
    match unsafe { NA_EPADDR4_V1.get(&u32::from_ne_bytes(src)) } {
        Some(ep) => guard_out(ep.net.flags & NET_F_ROUTED == 0),
        None => TC_NEXT,
    }
}

/// A reply of a published flow gets the published address and port as its
/// source, so the client sees what it connected to.
#[inline(always)]
fn reverse_nat(ctx: &TcContext, pkt: &Packet, addr: u32, port: u16, slot: u32) -> i32 {
    if Nat::source(pkt, addr, port)
        .apply(&mut TcBackend(ctx))
        .is_err()
    {
        return tc_drop(Event::DropRewriteFailed);
    }
    if pkt.ip.frag == Frag::First {
        frag::record(&pkt.ip, FRAG_REWRITE_SRC, addr, slot);
    }
    stats::count(Event::RevNat);
    stats::count_publication(slot, Direction::Reverse, pkt.ip.tot_len);
    TC_NEXT
}

/// SNAT of a container's packet: source becomes the interface's
/// masquerade address and a flow port.
#[inline(always)]
fn masquerade(ctx: &TcContext, pkt: &Packet) -> i32 {
    let ifindex = skb::ifindex(ctx);
    // SAFETY: copied out at once.
    let Some(masq) = (unsafe { NA_MASQ4_V1.get(&ifindex) }).copied() else {
        return tc_drop(Event::DropNoMasqAddr);
    };
    let mut source = SnatValue::default();
    match snat::outbound(ctx, pkt, &masq.addr_be, &mut source) {
        Ok(()) => {}
        Err(Refused::NoFlow) => return tc_drop(Event::DropSnatNoFlow),
        Err(Refused::Share) => return tc_drop(Event::DropSnatShare),
        Err(Refused::NoPort) => return tc_drop(Event::DropSnatNoPort),
    }
    if Nat::source(pkt, source.addr_be, source.port_be)
        .apply(&mut TcBackend(ctx))
        .is_err()
    {
        return tc_drop(Event::DropRewriteFailed);
    }
    if pkt.ip.frag == Frag::First {
        frag::record(&pkt.ip, FRAG_REWRITE_SRC, source.addr_be, NO_STATS_SLOT);
    }
    stats::count(Event::SnatOut);
    TC_NEXT
}

#[inline(always)]
fn later_fragment_out(ctx: &TcContext, ip: &Ipv4, private: bool) -> i32 {
    let Some(f) = frag::lookup(ip) else {
        return if private {
            tc_drop(Event::DropFragUntracked)
        } else {
            TC_NEXT
        };
    };
    if f.rewrite != FRAG_REWRITE_SRC {
        return guard_out(private);
    }
    if rewrite::address(&mut TcBackend(ctx), IP_SRC_OFF, ip.saddr, f.addr_be).is_err() {
        return tc_drop(Event::DropRewriteFailed);
    }
    stats::count(Event::FragTranslated);
    stats::count_publication(f.stats_slot, Direction::Reverse, ip.tot_len);
    TC_NEXT
}

#[inline(always)]
fn icmp_error_out(ctx: &TcContext, ip: &Ipv4, private: bool) -> i32 {
    skb::pull(ctx, ICMP_ERROR_HDR_LEN);
    let Some(q) = parse::quoted(ctx.data(), ctx.data_end(), ip) else {
        return guard_out(private);
    };
    match icmp::translate_out(&mut TcBackend(ctx), ip, &q) {
        Ok(()) => {
            stats::count(Event::IcmpErrorOut);
            TC_NEXT
        }
        Err(Untranslated::NoFlow) => guard_out(private),
        Err(Untranslated::Failed) => tc_drop(Event::DropRewriteFailed),
    }
}
