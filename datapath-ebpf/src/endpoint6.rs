// SPDX-License-Identifier: GPL-2.0 OR MIT
//! IPv6 out of a container (the container-veth program's IPv6 branch,
//! called from endpoint.rs with the interface's IPv4 entry found and the
//! Ethernet header read). Fails closed like the IPv4 branch:
//! - an interface without an IPv6 entry (`NA_EPIF6_V1`: its network is
//!   IPv4 only) drops all IPv6, and so do malformed headers and extension
//!   header chains longer than the parse walks (`drop_ctr_protocol`);
//! - the source must be one of the interface's IPv6 addresses (its global
//!   address or its EUI-64 link-local one) with its MAC; `::` only for
//!   neighbour discovery and MLD to a multicast group (`drop_spoofed`);
//! - neighbour discovery must not lie: a neighbour advertisement's target
//!   is the sender's own address, every link-layer address option is its
//!   own MAC, and router advertisements and redirects (the gateway's
//!   alone) are dropped (`drop_spoofed`);
//! - destinations `::/8` (`::1`, IPv4-mapped) are dropped
//!   (`drop_loopback_dst`);
//! - then the isolation policy (`policy::decide6`) and forwarding: to a
//!   neighbour straight into its namespace; elsewhere routed by FIB lookup
//!   from the bridge (`fwd::routed6`) to a served interface, whose TC
//!   egress gives replies of published flows their published source and
//!   drops any other container source (served.rs); the rest (the gateway,
//!   link-local, multicast) to the stack.

use core::ptr::NonNull;

use aya_ebpf::{bindings::__sk_buff, programs::TcContext};
use datapath_common::{EndpointAddr, EndpointIface, Event};

use crate::{
    fwd, hairpin,
    hdr::{ETH_HLEN, EthHdr, IPV6_HDR_LEN, read},
    maps::{NA_EPADDR6_V1, NA_EPIF6_V1},
    parse6::{
        self, ICMPV6_MLD_DONE, ICMPV6_MLD_QUERY, ICMPV6_MLD_REPORT, ICMPV6_MLD2_REPORT,
        ICMPV6_NEIGH_ADVERT, ICMPV6_NEIGH_SOLICIT, ICMPV6_REDIRECT, ICMPV6_ROUTER_ADVERT,
        ICMPV6_ROUTER_SOLICIT, Ipv6,
    },
    policy,
    stats::tc_drop,
    verdict::TC_NEXT,
};

/// Neighbour discovery options walked at most.
const MAX_ND_OPTIONS: usize = 4;
/// Source / target link-layer address options.
const ND_OPT_SLLA: u8 = 1;
const ND_OPT_TLLA: u8 = 2;

/// Returns a TC verdict, or [`hairpin::v6::TO_FORWARD`] /
/// [`hairpin::v6::TO_REPLY`] for a hairpin packet the caller hands on.
///
/// A BPF-to-BPF call, not inlined: the IPv4 branch and this one would
/// otherwise share one stack frame past the 512-byte limit. `skb` is the
/// context pointer (passed by value: the verifier follows a context
/// pointer into a subprogram, not one spilled to the caller's stack).
#[inline(never)]
pub fn from_container(skb: NonNull<__sk_buff>, ifindex: u32, src: &EndpointIface) -> i32 {
    let net = &src.net;
    let ctx = &TcContext::new(skb);
    // SAFETY: copied out at once; the agent replaces entries whole.
    let Some(iface) = (unsafe { NA_EPIF6_V1.get(&ifindex) }).copied() else {
        return tc_drop(Event::DropCtrProtocol);
    };
    let mut ip = Ipv6::default();
    if !parse6::ipv6_of(skb, &mut ip) {
        return tc_drop(Event::DropCtrProtocol);
    }
    let (data, data_end) = (ctx.data(), ctx.data_end());
    let Some(eth) = read::<EthHdr>(data, data_end, 0) else {
        return tc_drop(Event::DropCtrProtocol);
    };
    if parse6::is_reserved_dst(&ip.daddr) {
        return tc_drop(Event::DropLoopbackDst);
    }
    let icmp = parse6::icmp6_type(data, data_end, &ip);
    let control = icmp.is_some_and(is_nd_or_mld);
    if ip.fragmented
        && (control || icmp.is_some_and(|t| t == ICMPV6_ROUTER_ADVERT || t == ICMPV6_REDIRECT))
    {
        // Neighbour discovery is never fragmented (RFC 6980): a fragmented
        // one hides its options from this check.
        return tc_drop(Event::DropSpoofed);
    }
    if parse6::is_unspecified(&ip.saddr) {
        // DAD probes and MLD reports before an address is configured.
        if !(control && parse6::is_multicast(&ip.daddr)) {
            return tc_drop(Event::DropSpoofed);
        }
    } else {
        // SAFETY: a reference into a map value the agent replaces whole.
        let owner = unsafe { NA_EPADDR6_V1.get(&ip.saddr) };
        if !policy::owns(owner, ifindex, &eth.src) {
            return tc_drop(Event::DropSpoofed);
        }
    }
    if let Some(t) = icmp
        && !neighbour_discovery_honest(skb, &ip, t, ifindex, &eth.src)
    {
        return tc_drop(Event::DropSpoofed);
    }
    if icmp == Some(ICMPV6_NEIGH_SOLICIT) && parse6::is_multicast(&ip.daddr) {
        let verdict = solicitation_to_neighbour(skb, &ip, ifindex, net.net_id);
        if verdict != NOT_HANDLED {
            return verdict;
        }
    }
    // SAFETY: copied out at once.
    let dst: Option<EndpointAddr> = unsafe { NA_EPADDR6_V1.get(&ip.daddr) }.copied();
    // A hairpin packet is translated by the caller's next call (see
    // `hairpin::v6`): not from this frame, under which it would not fit.
    match hairpin::v6::classify(skb, &ip, dst.is_some()) {
        hairpin::v6::FORWARD => return hairpin::v6::TO_FORWARD,
        hairpin::v6::REPLY => return hairpin::v6::TO_REPLY,
        _ => {}
    }
    if let Err(reason) = policy::decide6(net, &iface, &ip.daddr, dst.as_ref(), control) {
        return tc_drop(reason);
    }
    match dst {
        Some(dst) => fwd::to_neighbour(ctx, &dst),
        // The gateway's link-local address and multicast stay on the
        // bridge; the rest is routed (to a served interface, or the stack).
        None if parse6::is_multicast(&ip.daddr) || parse6::is_link_local(&ip.daddr) => TC_NEXT,
        None => fwd::routed6(skb, src.bridge_ifindex, &ip),
    }
}

/// What [`solicitation_to_neighbour`] returns for a solicitation it leaves
/// to the bridge (no TC verdict has this value).
const NOT_HANDLED: i32 = i32::MIN;

/// A multicast neighbour solicitation for the address of a neighbour on
/// the same network goes straight to that neighbour, unicast to its MAC
/// (RFC 4861 allows it), like the rest of their traffic: left to the
/// bridge, the multicast frame crosses the host's bridge netfilter
/// (br_netfilter: ip6tables FORWARD, DROP under Docker's policy) and
/// containers of one network could not resolve each other. Anything else
/// (the gateway's address, its own, another network's) is
/// [`NOT_HANDLED`]. Its own frame.
#[inline(never)]
fn solicitation_to_neighbour(skb: NonNull<__sk_buff>, ip: &Ipv6, ifindex: u32, net_id: u32) -> i32 {
    let ctx = &TcContext::new(skb);
    let Some(target) = read::<[[u8; 4]; 4]>(ctx.data(), ctx.data_end(), ip.l4_off + 8) else {
        return NOT_HANDLED;
    };
    let target = target.map(u32::from_ne_bytes);
    // SAFETY: copied out at once; the agent replaces entries whole.
    let Some(neighbour) = (unsafe { NA_EPADDR6_V1.get(&target) }).copied() else {
        return NOT_HANDLED;
    };
    if neighbour.net.net_id != net_id || neighbour.host_ifindex == ifindex {
        return NOT_HANDLED;
    }
    fwd::to_neighbour(ctx, &neighbour)
}

/// Neighbour discovery and MLD: what a host needs to reach its neighbours
/// and gateway, even with `--icc=false`.
#[inline(always)]
fn is_nd_or_mld(t: u8) -> bool {
    matches!(
        t,
        ICMPV6_MLD_QUERY
            | ICMPV6_MLD_REPORT
            | ICMPV6_MLD_DONE
            | ICMPV6_MLD2_REPORT
            | ICMPV6_ROUTER_SOLICIT
            | ICMPV6_NEIGH_SOLICIT
            | ICMPV6_NEIGH_ADVERT
    )
}

/// Whether an ICMPv6 message of type `t` tells no lie about who the
/// sender is: no router advertisement or redirect, a neighbour
/// advertisement only for the sender's own address, link-layer address
/// options only with its own MAC. Its own frame (a BPF-to-BPF call): its
/// temporaries would otherwise sit in the caller's for the whole program,
/// whose 512 bytes of stack are counted along the deepest call chain.
#[inline(never)]
fn neighbour_discovery_honest(
    skb: NonNull<__sk_buff>,
    ip: &Ipv6,
    t: u8,
    ifindex: u32,
    mac: &[u8; 6],
) -> bool {
    let ctx = &TcContext::new(skb);
    let (data, data_end) = (ctx.data(), ctx.data_end());
    let options = match t {
        ICMPV6_ROUTER_ADVERT | ICMPV6_REDIRECT => return false,
        ICMPV6_ROUTER_SOLICIT => ip.l4_off + 8,
        ICMPV6_NEIGH_SOLICIT => ip.l4_off + 24,
        ICMPV6_NEIGH_ADVERT => {
            let Some(target) = read::<[[u8; 4]; 4]>(data, data_end, ip.l4_off + 8) else {
                return false;
            };
            let target = [
                u32::from_ne_bytes(target[0]),
                u32::from_ne_bytes(target[1]),
                u32::from_ne_bytes(target[2]),
                u32::from_ne_bytes(target[3]),
            ];
            // SAFETY: a reference into a map value, only compared.
            let owner = unsafe { NA_EPADDR6_V1.get(&target) };
            if !policy::owns(owner, ifindex, mac) {
                return false;
            }
            ip.l4_off + 24
        }
        _ => return true,
    };
    link_layer_options_own(data, data_end, options, ip.end, mac)
}

/// Walks the options from `off` to the message's `end` (at most
/// [`MAX_ND_OPTIONS`], all in the linear area): every link-layer address
/// option must carry `mac`. A zero-length option, one past the end, or
/// more options than walked is refused.
#[inline(always)]
fn link_layer_options_own(
    data: usize,
    data_end: usize,
    mut off: usize,
    end: usize,
    mac: &[u8; 6],
) -> bool {
    for _ in 0..MAX_ND_OPTIONS {
        if off >= end {
            return true;
        }
        let Some(opt) = read::<[u8; 8]>(data, data_end, off) else {
            return false;
        };
        if opt[1] == 0 {
            return false;
        }
        if (opt[0] == ND_OPT_SLLA || opt[0] == ND_OPT_TLLA)
            && !policy::mac_eq(&[opt[2], opt[3], opt[4], opt[5], opt[6], opt[7]], mac)
        {
            return false;
        }
        off += opt[1] as usize * 8;
        if off > IPV6_HDR_LEN as usize {
            return false;
        }
    }
    off >= end
}

const _: () = assert!(ETH_HLEN < IPV6_HDR_LEN as usize);
