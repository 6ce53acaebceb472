// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Isolation between networks, checked where a container's packets enter
//! the host: TC ingress of the container's host-side veth.
//!
//! The source network comes from the interface the packet arrived on (a
//! container cannot forge that), the destination network from the
//! destination address. Traffic between endpoints of different networks is
//! dropped whichever way it is routed (bridged or through the host), in
//! both directions, since each side's packets are checked at its own
//! interface. A container on two networks has one interface per network,
//! and its kernel sends through the interface of the destination's subnet.

use aya_ebpf::{EbpfContext as _, bindings::__sk_buff, programs::TcContext};
use datapath_common::{
    EndpointAddr, EndpointIface, Event, NET_F_INTERNAL, NET_F_NO_ICC, NetPolicy,
};

use crate::{
    maps::{NA_EPADDR4_V1, NA_EPIF4_V1},
    parse::{ETH_HLEN, Ipv4Fields, ipv4_fields},
    stats,
};

/// Bytes the policy reads: Ethernet and the fixed IPv4 header.
const POLICY_HDR_LEN: u32 = (ETH_HLEN + 20) as u32;

/// What the policy decides for one packet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Drop(Event),
}

/// The decision for a packet from an endpoint of `src` to `daddr`, whose
/// own network (if `daddr` is an endpoint) is `dst`. Pure, so the rules
/// read in one place.
#[inline(always)]
pub fn decide(src: &NetPolicy, daddr: u32, dst: Option<&NetPolicy>) -> Verdict {
    if let Some(dst) = dst {
        if dst.net_id != src.net_id {
            return Verdict::Drop(Event::DropIsolation);
        }
        if src.flags & NET_F_NO_ICC != 0 {
            return Verdict::Drop(Event::DropIcc);
        }
        return Verdict::Pass;
    }
    if src.flags & NET_F_INTERNAL != 0 && daddr & src.mask_be != src.subnet_be {
        return Verdict::Drop(Event::DropInternal);
    }
    Verdict::Pass
}

/// The outcome of the policy for a packet leaving a container.
pub enum Outcome {
    /// Not an endpoint interface, or not IPv4: not ours to police.
    NotOurs,
    /// Dropped (and counted).
    Drop,
    /// Allowed: the source interface's entry, the IPv4 header, and the
    /// destination endpoint's map entry if the destination is one. (A
    /// reference, not a copied `Option<EndpointAddr>`: the copy's `None`
    /// carries uninitialised payload registers, which the verifier rejects.)
    Allow {
        src: EndpointIface,
        ip: Ipv4Fields,
        dst: Option<&'static EndpointAddr>,
    },
}

/// TC ingress on a container's host-side interface: the policy check.
#[inline(always)]
pub fn from_container(ctx: &TcContext) -> Outcome {
    let skb = ctx.as_ptr() as *const __sk_buff;
    // SAFETY: reading a context field.
    let ifindex = unsafe { (*skb).ifindex };
    // SAFETY: copied out at once; the agent replaces entries whole.
    let Some(src) = (unsafe { NA_EPIF4_V1.get(&ifindex) }).copied() else {
        return Outcome::NotOurs;
    };
    if ((ctx.data_end() - ctx.data()) as u32) < POLICY_HDR_LEN {
        // Failure leaves the area short; the parse below then passes.
        let _ = ctx.pull_data(POLICY_HDR_LEN);
    }
    let Some(ip) = ipv4_fields(ctx.data(), ctx.data_end()) else {
        // ARP, IPv6 (disabled in containers), or a header the stack drops.
        return Outcome::NotOurs;
    };
    // SAFETY: as above.
    let dst = unsafe { NA_EPADDR4_V1.get(&ip.daddr) };
    match decide(&src.net, ip.daddr, dst.map(|d| &d.net)) {
        Verdict::Pass => Outcome::Allow { src, ip, dst },
        Verdict::Drop(reason) => {
            stats::count(reason);
            Outcome::Drop
        }
    }
}
