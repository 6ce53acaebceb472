// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Hairpin: a container reaching a published port of the host (its own
//! publication included), at one of the host's addresses (its gateway's
//! included), as a client outside would.
//!
//! Seen where a container's packets enter the host (TC ingress of its
//! host-side veth, endpoint.rs), after the source check and before the
//! isolation policy:
//! - Forward: a TCP or UDP packet to a local address that a publication
//!   matches gets the published container's address and port as its
//!   destination, and goes straight into that container. The client's
//!   address is kept, as Docker's hairpin NAT keeps it: the server sees its
//!   real client. Only a container reaching its own publication gets, as
//!   its source, the address it connected to; otherwise the reply (to the
//!   container's own address) would be looped back inside its namespace
//!   and never come out to be translated.
//! - Reply: a packet of the published container that matches a flow of
//!   `NA_HAIRPIN4_V1` (keyed by the reply tuple) gets the published
//!   address and port back as its source (and, for a container's own
//!   publication, its own address as destination), and goes straight into
//!   the client container.
//!
//! A publication is public: a container of another network reaches it as
//! an outside client does, and the reply crosses the networks because it
//! belongs to that flow. Only flows a client container opened are in the
//! map, from a source the caller verified, so no container can forge
//! itself a way across. An `internal` network's container is refused
//! targets outside its subnet (`drop_internal`), as it is refused the
//! outside.
//!
//! Not translated, dropped and counted: targets that are not netagent's
//! containers (`drop_hairpin_foreign`: their replies would never pass
//! here) and fragmented datagrams (`drop_hairpin_fragment`). Later
//! fragments are the host's (nothing listens on a published port there).
//!
//! The map is an LRU without timeouts. A container's direct flow with the
//! tuple of an earlier hairpin flow (the same client port to the same
//! server) removes the old entry when it starts (a SYN, a UDP datagram),
//! so its replies are not taken for hairpin replies.

use aya_ebpf::{bindings::BPF_ANY, programs::TcContext};
use datapath_common::{
    CtValue, EndpointAddr, EndpointIface, Event, HAIRPIN_F_SELF, IPPROTO_TCP, IPPROTO_UDP,
    NET_F_INTERNAL, PubValue,
};

use crate::{
    ct, fwd,
    hdr::{TCP_ACK, TCP_SYN, is_loopback},
    maps::{NA_EPADDR4_V1, NA_HAIRPIN4_V1},
    nat,
    parse::{self, Frag, Ipv4, Packet},
    rewrite::{Nat, TcBackend},
    stats::{self, Direction, tc_drop},
};

/// The verdict for a container's packet if it is a hairpin packet; `None`
/// if it is not (the caller goes on with the policy and forwarding).
/// `dst` is the destination's endpoint entry, if it is a container.
#[inline(always)]
pub fn handle(
    ctx: &TcContext,
    src: &EndpointIface,
    ip: &Ipv4,
    dst: Option<&EndpointAddr>,
) -> Option<i32> {
    if ip.frag == Frag::Later || is_loopback(ip.daddr) {
        return None;
    }
    // A hairpin packet goes to a local address (a client's packet, or a
    // reply to a container's own publication) or to a container (any other
    // reply); everything else, the bulk of it, pays nothing here.
    let local = dst.is_none() && nat::is_local(ip.daddr);
    if dst.is_none() && !local {
        return None;
    }
    let pkt = parse::flow(ctx.data(), ctx.data_end(), ip).ok()?;
    if pkt.proto != IPPROTO_TCP && pkt.proto != IPPROTO_UDP {
        return None;
    }
    let key = ct::key(pkt.saddr, pkt.sport, pkt.daddr, pkt.dport, pkt.proto);
    // SAFETY: copied out at once.
    if let Some(flow) = unsafe { NA_HAIRPIN4_V1.get(&key) }.copied() {
        return Some(reply(ctx, &pkt, &flow));
    }
    if !local {
        forget_reversed(&pkt);
        return None;
    }
    let target = nat::find(pkt.daddr, pkt.dport, pkt.proto).ok()?;
    Some(forward(ctx, src, &pkt, &target))
}

#[inline(always)]
fn forward(ctx: &TcContext, src: &EndpointIface, pkt: &Packet, target: &PubValue) -> i32 {
    if pkt.ip.frag != Frag::Whole {
        return tc_drop(Event::DropHairpinFragment);
    }
    // SAFETY: copied out at once; the agent replaces entries whole.
    let Some(ep) = (unsafe { NA_EPADDR4_V1.get(&target.addr_be) }).copied() else {
        return tc_drop(Event::DropHairpinForeign);
    };
    let net = &src.net;
    if net.flags & NET_F_INTERNAL != 0 && target.addr_be & net.mask_be != net.subnet_be {
        return tc_drop(Event::DropInternal);
    }
    let own = target.addr_be == pkt.saddr;
    let mut b = TcBackend(ctx);
    if Nat::destination(pkt, target.addr_be, target.port_be)
        .apply(&mut b)
        .is_err()
    {
        return tc_drop(Event::DropRewriteFailed);
    }
    // The port stays: the container's own port is unique among its flows.
    if own
        && Nat::source(pkt, pkt.daddr, pkt.sport)
            .apply(&mut b)
            .is_err()
    {
        return tc_drop(Event::DropRewriteFailed);
    }
    let (client, flags) = if own {
        (pkt.daddr, HAIRPIN_F_SELF)
    } else {
        (pkt.saddr, 0)
    };
    track(pkt, target, client, flags);
    stats::count(Event::HairpinForward);
    stats::count_publication(target.stats_slot, Direction::Forward, pkt.ip.tot_len);
    fwd::to_known_endpoint(ctx, &pkt.ip, &ep)
}

/// Records the flow under its reply tuple (target -> `client`, the source
/// the target sees), unless the same entry is there.
#[inline(always)]
fn track(pkt: &Packet, target: &PubValue, client: u32, flags: u8) {
    let key = ct::key(target.addr_be, target.port_be, client, pkt.sport, pkt.proto);
    let value = CtValue {
        orig_addr_be: pkt.daddr,
        orig_port_be: pkt.dport,
        flags,
        _pad: 0,
        stats_slot: target.stats_slot,
        isn: 0,
    };
    // SAFETY: compared field by field at once.
    let current = unsafe { NA_HAIRPIN4_V1.get(&key) };
    if current.is_some_and(|c| {
        c.orig_addr_be == value.orig_addr_be
            && c.orig_port_be == value.orig_port_be
            && c.flags == value.flags
            && c.stats_slot == value.stats_slot
    }) {
        return;
    }
    // A failed insert (memory pressure) loses this packet's reply; the
    // next packet retries.
    let _ = NA_HAIRPIN4_V1.insert(&key, &value, u64::from(BPF_ANY));
}

#[inline(always)]
fn reply(ctx: &TcContext, pkt: &Packet, flow: &CtValue) -> i32 {
    let own = flow.flags & HAIRPIN_F_SELF != 0;
    let client = if own { pkt.saddr } else { pkt.daddr };
    // SAFETY: copied out at once.
    let Some(ep) = (unsafe { NA_EPADDR4_V1.get(&client) }).copied() else {
        // The client was detached meanwhile.
        return tc_drop(Event::DropUnknownEndpoint);
    };
    let mut b = TcBackend(ctx);
    if Nat::source(pkt, flow.orig_addr_be, flow.orig_port_be)
        .apply(&mut b)
        .is_err()
    {
        return tc_drop(Event::DropRewriteFailed);
    }
    if own
        && Nat::destination(pkt, pkt.saddr, pkt.dport)
            .apply(&mut b)
            .is_err()
    {
        return tc_drop(Event::DropRewriteFailed);
    }
    stats::count(Event::HairpinReply);
    stats::count_publication(flow.stats_slot, Direction::Reverse, pkt.ip.tot_len);
    fwd::to_known_endpoint(ctx, &pkt.ip, &ep)
}

/// A container's direct packet that may open a flow removes a hairpin
/// entry its replies would match (a stale one, of an earlier flow with
/// the same tuple).
#[inline(always)]
fn forget_reversed(pkt: &Packet) {
    if pkt.proto == IPPROTO_TCP && !(pkt.tcp_has(TCP_SYN) && !pkt.tcp_has(TCP_ACK)) {
        return;
    }
    let key = ct::key(pkt.daddr, pkt.dport, pkt.saddr, pkt.sport, pkt.proto);
    // SAFETY: presence is all we read.
    if unsafe { NA_HAIRPIN4_V1.get(&key) }.is_some() {
        let _ = NA_HAIRPIN4_V1.remove(&key);
    }
}

/// IPv6 hairpin: the same rules, for dual-stack containers reaching the
/// IPv6 side of publications (`[::]`, an IPv6 host address) at a host
/// IPv6 address or their IPv6 gateway's. `endpoint6` asks [`v6::classify`]
/// after its source and neighbour-discovery checks and returns
/// [`v6::TO_FORWARD`] or [`v6::TO_REPLY`] to the program's entry, which
/// calls [`v6::forward`] or [`v6::reply`]: each a frame of its own,
/// parsing the packet again, so that none sits under the IPv6 branch's
/// (the verifier counts 512 bytes of stack along a call chain, and that
/// branch's is the datapath's deepest).
pub mod v6 {
    use core::ptr::NonNull;

    use aya_ebpf::{
        bindings::{__sk_buff, BPF_ANY},
        programs::TcContext,
    };
    use datapath_common::{
        CtValue6, EndpointIface, Event, HAIRPIN_F_SELF, IPPROTO_TCP, IPPROTO_UDP, Ipv6Be,
        NET_F_INTERNAL, PubValue6,
    };

    use crate::{
        ct, fwd,
        hdr::{TCP_ACK, TCP_SYN},
        maps::{NA_EPADDR6_V1, NA_EPIF6_V1, NA_HAIRPIN6_V1},
        nat,
        parse6::{self, Ipv6, Packet6},
        rewrite::nat6_tc,
        skb,
        stats::{self, Direction, tc_drop},
        verdict::TC_NEXT,
    };

    /// What `endpoint6::from_container` returns instead of a verdict for a
    /// packet [`forward`] or [`reply`] must translate (no TC verdict has
    /// these values).
    pub const TO_FORWARD: i32 = i32::MIN;
    pub const TO_REPLY: i32 = i32::MIN + 1;

    /// What [`classify`] found.
    pub const NOT_HAIRPIN: u8 = 0;
    /// A client's packet to a publication: [`forward`].
    pub const FORWARD: u8 = 1;
    /// A published container's reply to a hairpin flow: [`reply`].
    pub const REPLY: u8 = 2;

    /// The TCP/UDP flow of the packet into `pkt`; false if it is none.
    #[inline(always)]
    fn flow(skb: NonNull<__sk_buff>, ip: &Ipv6, pkt: &mut Packet6) -> bool {
        let ctx = &TcContext::new(skb);
        parse6::flow6(ctx.data(), ctx.data_end(), ip, pkt).is_ok()
            && (pkt.proto == IPPROTO_TCP || pkt.proto == IPPROTO_UDP)
    }

    /// The packet's header and TCP/UDP flow parsed again, in the caller's
    /// frame (see the module doc of `v6`).
    #[inline(always)]
    fn reparse(skb: NonNull<__sk_buff>, ip: &mut Ipv6, pkt: &mut Packet6) -> bool {
        parse6::ipv6_of(skb, ip) && flow(skb, ip, pkt)
    }

    /// Whether a container's IPv6 packet (`to_container`: its destination
    /// is a container's address) is a hairpin packet, and which kind. A
    /// direct packet that may open a flow removes a stale hairpin entry its
    /// replies would match, as IPv4's does.
    #[inline(never)]
    pub fn classify(skb: NonNull<__sk_buff>, ip: &Ipv6, to_container: bool) -> u8 {
        if ip.later_fragment || parse6::is_multicast(&ip.daddr) {
            return NOT_HAIRPIN;
        }
        let local = !to_container && nat::is_local6(&ip.daddr);
        if !to_container && !local {
            return NOT_HAIRPIN;
        }
        let mut pkt = Packet6::default();
        if !flow(skb, ip, &mut pkt) {
            return NOT_HAIRPIN;
        }
        let key = ct::v6::key(pkt.saddr, pkt.sport, pkt.daddr, pkt.dport, pkt.proto);
        // SAFETY: presence is all we read.
        if unsafe { NA_HAIRPIN6_V1.get(&key) }.is_some() {
            return REPLY;
        }
        if !local {
            forget_reversed(&pkt);
            return NOT_HAIRPIN;
        }
        if nat::find6(&pkt.daddr, pkt.dport, pkt.proto).is_some() {
            FORWARD
        } else {
            NOT_HAIRPIN
        }
    }

    /// A client's packet to a publication: DNAT (and, for its own
    /// publication, SNAT to the address it connected to), tracked,
    /// delivered straight into the published container. `src`: the
    /// client's interface; of an internal network, only its own subnet is
    /// reached.
    #[inline(never)]
    pub fn forward(skb: NonNull<__sk_buff>, src: &EndpointIface) -> i32 {
        let (mut ip, mut pkt) = (Ipv6::default(), Packet6::default());
        if !reparse(skb, &mut ip, &mut pkt) {
            return TC_NEXT;
        }
        let ip = &ip;
        // Unpublished since `classify`: the host's, where nothing listens.
        let Some(target) = nat::find6(&pkt.daddr, pkt.dport, pkt.proto) else {
            return TC_NEXT;
        };
        if src.net.flags & NET_F_INTERNAL != 0 && !own_subnet(skb, &target.addr_be) {
            return tc_drop(Event::DropInternal);
        }
        if pkt.first_fragment {
            return tc_drop(Event::DropHairpinFragment);
        }
        // SAFETY: presence is all we read.
        if unsafe { NA_EPADDR6_V1.get(&target.addr_be) }.is_none() {
            return tc_drop(Event::DropHairpinForeign);
        }
        if !nat6_tc(skb, &pkt, &target.addr_be, target.port_be, true) {
            return tc_drop(Event::DropRewriteFailed);
        }
        let own = target.addr_be == pkt.saddr;
        // The port stays: the container's own port is unique among its flows.
        if own && !nat6_tc(skb, &pkt, &pkt.daddr, pkt.sport, false) {
            return tc_drop(Event::DropRewriteFailed);
        }
        let (client, flags) = if own {
            (pkt.daddr, HAIRPIN_F_SELF)
        } else {
            (pkt.saddr, 0)
        };
        track(&pkt, &target, &client, flags);
        stats::count(Event::HairpinForward);
        let len = parse6::counted_len(ip);
        stats::count_publication(target.stats_slot, Direction::Forward, len);
        fwd::to_endpoint6(skb, ip, &target.addr_be)
    }

    /// Whether `addr` is in the IPv6 subnet of the interface the packet
    /// came from.
    #[inline(always)]
    fn own_subnet(skb: NonNull<__sk_buff>, addr: &Ipv6Be) -> bool {
        let ifindex = skb::ifindex(&TcContext::new(skb));
        // SAFETY: a reference into a map value the agent replaces whole.
        unsafe { NA_EPIF6_V1.get(&ifindex) }
            .is_some_and(|i| parse6::in_prefix(addr, &i.subnet, i.prefix_len))
    }

    /// Records the flow under its reply tuple (target -> `client`), unless
    /// the same entry is there. Its own frame.
    #[inline(never)]
    fn track(pkt: &Packet6, target: &PubValue6, client: &Ipv6Be, flags: u8) {
        let key = ct::v6::key(
            target.addr_be,
            target.port_be,
            *client,
            pkt.sport,
            pkt.proto,
        );
        let value = CtValue6 {
            orig_addr_be: pkt.daddr,
            orig_port_be: pkt.dport,
            flags,
            _pad: 0,
            stats_slot: target.stats_slot,
            isn: 0,
        };
        // SAFETY: compared at once.
        if unsafe { NA_HAIRPIN6_V1.get(&key) }.is_some_and(|c| *c == value) {
            return;
        }
        // A failed insert (memory pressure) loses this packet's reply; the
        // next packet retries.
        let _ = NA_HAIRPIN6_V1.insert(&key, &value, u64::from(BPF_ANY));
    }

    /// A published container's reply to a hairpin flow: the published
    /// address and port back as its source (and, for a container's own
    /// publication, its own address as destination), delivered straight
    /// into the client.
    #[inline(never)]
    pub fn reply(skb: NonNull<__sk_buff>) -> i32 {
        let (mut ip, mut pkt) = (Ipv6::default(), Packet6::default());
        if !reparse(skb, &mut ip, &mut pkt) {
            return TC_NEXT;
        }
        let ip = &ip;
        let key = ct::v6::key(pkt.saddr, pkt.sport, pkt.daddr, pkt.dport, pkt.proto);
        // SAFETY: copied out at once.
        let Some(flow) = (unsafe { NA_HAIRPIN6_V1.get(&key) }).copied() else {
            return TC_NEXT;
        };
        let own = flow.flags & HAIRPIN_F_SELF != 0;
        let client = if own { pkt.saddr } else { pkt.daddr };
        // SAFETY: presence is all we read.
        if unsafe { NA_EPADDR6_V1.get(&client) }.is_none() {
            // The client was detached meanwhile.
            return tc_drop(Event::DropUnknownEndpoint);
        }
        if !nat6_tc(skb, &pkt, &flow.orig_addr_be, flow.orig_port_be, false) {
            return tc_drop(Event::DropRewriteFailed);
        }
        if own && !nat6_tc(skb, &pkt, &pkt.saddr, pkt.dport, true) {
            return tc_drop(Event::DropRewriteFailed);
        }
        stats::count(Event::HairpinReply);
        let len = parse6::counted_len(ip);
        stats::count_publication(flow.stats_slot, Direction::Reverse, len);
        fwd::to_endpoint6(skb, ip, &client)
    }

    /// As IPv4's `forget_reversed`.
    #[inline(always)]
    fn forget_reversed(pkt: &Packet6) {
        if pkt.proto == IPPROTO_TCP && !(pkt.tcp_has(TCP_SYN) && !pkt.tcp_has(TCP_ACK)) {
            return;
        }
        let key = ct::v6::key(pkt.daddr, pkt.dport, pkt.saddr, pkt.sport, pkt.proto);
        // SAFETY: presence is all we read.
        if unsafe { NA_HAIRPIN6_V1.get(&key) }.is_some() {
            let _ = NA_HAIRPIN6_V1.remove(&key);
        }
    }
}
