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
