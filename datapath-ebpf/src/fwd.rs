// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Forwarding without the host's forwarding path: packets to and from
//! containers are handed to their next interface with `bpf_redirect`, so
//! they never traverse netfilter's FORWARD hook. netagent then works
//! whatever another tool's firewall does there (Docker sets the FORWARD
//! policy to DROP), and skips the cost of the stack's routing.
//!
//! - To a container endpoint (after DNAT, a masquerade reply, a translated
//!   ICMP error or fragment, or from a container on the same network):
//!   straight into the container's namespace with `bpf_redirect_peer` on
//!   its host-side veth (both callers run at TC ingress, the only place the
//!   helper works), with its MAC as destination. The packet skips the
//!   veth's transmit path and the per-CPU backlog: it enters the
//!   container's stack in the same softirq ([`into_container`] is the one
//!   seam for the endpoint device: a netkit peer takes the same helper).
//! - From a container to anywhere else: `bpf_fib_lookup` with the network's
//!   bridge as input interface, like the stack would route it; redirected
//!   to the egress interface if it is one the agent serves (whose TC egress
//!   still runs, so reverse NAT and masquerade apply). Destinations on the
//!   host itself, on the same bridge or behind any other interface (another
//!   tool's bridge, say: the host's firewall keeps its say there), and
//!   anything the lookup cannot forward go to the stack.
//!
//! MTU: the lookup is made without `tot_len`, so the kernel checks the skb
//! against the egress MTU itself, GSO-aware (`is_skb_forwardable`): a TSO
//! super-packet whose segments fit is forwarded. A packet that really does
//! not fit goes to the stack, which answers ICMP fragmentation needed (its
//! MTU check runs before the FORWARD hook). The same holds for deliveries
//! to a container (`bpf_check_mtu`).
//!
//! Routed hops decrement the TTL (with the header checksum), and a TTL that
//! would expire goes to the stack, which answers with ICMP time exceeded.

use core::{mem::size_of, ptr::NonNull};

use aya_ebpf::{
    EbpfContext as _,
    bindings::{
        __sk_buff, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup,
        bpf_redir_neigh,
    },
    helpers::generated::{
        bpf_check_mtu, bpf_fib_lookup as fib_lookup, bpf_redirect, bpf_redirect_neigh,
        bpf_redirect_peer,
    },
    programs::TcContext,
};
use datapath_common::{EndpointAddr, EndpointIface, Event, Ipv6Be};

use crate::{
    hdr::{IP_CSUM_OFF, IP_TTL_OFF, IP6_HOP_LIMIT_OFF},
    maps::{NA_EPADDR4_V1, NA_EPADDR6_V1, NA_MASQ4_V1},
    parse::Ipv4,
    parse6::Ipv6,
    stats,
    verdict::TC_NEXT,
};

const AF_INET: u8 = 2;

/// Redirects to `ifindex`'s egress; the helper's return value is the TC
/// verdict (TC_ACT_REDIRECT, or TC_ACT_SHOT for a bad ifindex).
#[inline(always)]
fn redirect(ifindex: u32) -> i32 {
    // SAFETY: no pointer arguments.
    unsafe { bpf_redirect(ifindex, 0) as i32 }
}

/// Delivers into a container: to the ingress of the peer of its host-side
/// device `host_ifindex`, in the container's namespace. Only from TC
/// ingress; the device must be a veth (or netkit) whose peer is in another
/// namespace, which every endpoint is (the agent refuses the host's own).
#[inline(always)]
fn into_container(host_ifindex: u32) -> i32 {
    // SAFETY: no pointer arguments; flags must be 0.
    unsafe { bpf_redirect_peer(host_ifindex, 0) as i32 }
}

/// Whether the skb fits `ifindex`'s MTU (GSO-aware).
#[inline(always)]
fn fits(ctx: &TcContext, ifindex: u32) -> bool {
    let mut mtu = 0u32;
    // SAFETY: `mtu` is a valid out-parameter; flags 0, no length change.
    let rc = unsafe { bpf_check_mtu(ctx.as_ptr(), ifindex, &mut mtu, 0, 0) };
    rc == i64::from(aya_ebpf::bindings::bpf_check_mtu_ret::BPF_MTU_CHK_RET_SUCCESS)
}

/// Decrements the TTL of a routed packet, keeping the header checksum.
/// `Err(TC_NEXT)` if it would expire (the stack answers that), `Err(TC_DROP)`
/// if a helper failed half-way.
#[inline(always)]
fn decrement_ttl(ctx: &TcContext, ip: &Ipv4) -> Result<(), i32> {
    if ip.ttl <= 1 {
        return Err(TC_NEXT);
    }
    let old = u16::from_ne_bytes([ip.ttl, ip.proto]);
    let new = u16::from_ne_bytes([ip.ttl - 1, ip.proto]);
    let done = ctx
        .l3_csum_replace(IP_CSUM_OFF, u64::from(old), u64::from(new), 2)
        .and_then(|()| ctx.store(IP_TTL_OFF, &(ip.ttl - 1), 0));
    done.map_err(|_| stats::tc_drop(Event::DropRewriteFailed))
}

/// Sets the Ethernet addresses; on failure the frame may be half-written.
#[inline(always)]
fn set_macs(ctx: &TcContext, dst: &[u8; 6], src: Option<&[u8; 6]>) -> Result<(), i32> {
    let done = ctx
        .store(0, dst, 0)
        .and_then(|()| src.map_or(Ok(()), |src| ctx.store(6, src, 0)));
    done.map_err(|_| stats::tc_drop(Event::DropRewriteFailed))
}

/// Ingress of a served interface, after translation: the packet (whose
/// destination is now `daddr`) goes straight to its container, a routed
/// hop. `ip` is the header as it arrived (TTL). Not an endpoint any more
/// (it was detached meanwhile): the stack decides.
#[inline(always)]
pub fn to_endpoint(ctx: &TcContext, ip: &Ipv4, daddr: u32) -> i32 {
    // SAFETY: copied out at once; the agent replaces entries whole.
    let Some(ep) = (unsafe { NA_EPADDR4_V1.get(&daddr) }).copied() else {
        return TC_NEXT;
    };
    deliver(ctx, ip, &ep).unwrap_or_else(|verdict| verdict)
}

/// TC ingress of a container's host-side veth, a hairpin packet already
/// translated: into the container `ep` (found by the caller), a routed hop.
#[inline(always)]
pub fn to_known_endpoint(ctx: &TcContext, ip: &Ipv4, ep: &EndpointAddr) -> i32 {
    deliver(ctx, ip, ep).unwrap_or_else(|verdict| verdict)
}

#[inline(always)]
fn deliver(ctx: &TcContext, ip: &Ipv4, ep: &EndpointAddr) -> Result<i32, i32> {
    if !fits(ctx, ep.host_ifindex) {
        stats::count(Event::PassFragNeeded);
        return Err(TC_NEXT);
    }
    decrement_ttl(ctx, ip)?;
    set_macs(ctx, &ep.mac, Some(&ep.gw_mac))?;
    stats::count(Event::RedirectToEndpoint);
    Ok(into_container(ep.host_ifindex))
}

/// TC ingress of a container's host-side veth, after the policy allowed
/// the packet: to an endpoint of the same network, bridged (no TTL
/// change); elsewhere, routed by FIB lookup.
#[inline(always)]
pub fn from_container(
    ctx: &TcContext,
    src: &EndpointIface,
    ip: &Ipv4,
    dst: Option<&EndpointAddr>,
) -> i32 {
    if let Some(dst) = dst {
        return to_neighbour(ctx, dst);
    }
    routed(ctx, src.bridge_ifindex, ip).unwrap_or_else(|verdict| verdict)
}

/// TC ingress of a container's host-side veth, the policy allowed it: to
/// `dst`, an endpoint of the same network, bridged (no TTL or hop limit
/// change, IPv4 or IPv6 alike).
#[inline(always)]
pub fn to_neighbour(ctx: &TcContext, dst: &EndpointAddr) -> i32 {
    // The destination MAC is set in case the sender routed through its
    // gateway to a neighbour (the frame then carries the bridge's).
    if let Err(verdict) = set_macs(ctx, &dst.mac, None) {
        return verdict;
    }
    stats::count(Event::RedirectToEndpoint);
    into_container(dst.host_ifindex)
}

#[inline(always)]
fn routed(ctx: &TcContext, bridge_ifindex: u32, ip: &Ipv4) -> Result<i32, i32> {
    // SAFETY: an all-zero bpf_fib_lookup is a valid (empty) request.
    let mut params: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    params.family = AF_INET;
    params.l4_protocol = ip.proto;
    params.ifindex = bridge_ifindex;
    // tot_len stays 0: the kernel then checks the skb against the egress
    // MTU itself, GSO-aware (see the module doc).
    params.__bindgen_anon_2.tos = ip.tos;
    params.__bindgen_anon_3.ipv4_src = ip.saddr;
    params.__bindgen_anon_4.ipv4_dst = ip.daddr;
    by_fib(ctx, &mut params, bridge_ifindex, || decrement_ttl(ctx, ip))
}

/// The FIB lookup `params` asks for (input interface `bridge_ifindex`,
/// either family) and the redirect it allows, after `hop` (the TTL or hop
/// limit decrement). Local destinations, the container's own bridge, an
/// interface netagent does not serve, and anything the lookup cannot
/// forward (unreachable, needs fragmenting, ...) are the stack's business
/// (`Err(TC_NEXT)`).
#[inline(always)]
fn by_fib(
    ctx: &TcContext,
    params: &mut bpf_fib_lookup,
    bridge_ifindex: u32,
    hop: impl FnOnce() -> Result<(), i32>,
) -> Result<i32, i32> {
    // SAFETY: params is a valid, writable bpf_fib_lookup of the size given.
    let rc = unsafe { fib_lookup(ctx.as_ptr(), params, size_of::<bpf_fib_lookup>() as i32, 0) };
    let egress = params.ifindex;
    // SAFETY: presence is all we read. The masquerade-address map holds
    // exactly the served interfaces (with an address).
    if egress == bridge_ifindex || unsafe { NA_MASQ4_V1.get(&egress) }.is_none() {
        return Err(TC_NEXT);
    }
    if rc == i64::from(BPF_FIB_LKUP_RET_SUCCESS) {
        hop()?;
        // SAFETY: the union's MAC variant is what a successful lookup fills.
        let macs = unsafe { params.__bindgen_anon_6.__bindgen_anon_2 };
        set_macs(ctx, &macs.dmac, Some(&macs.smac))?;
        stats::count(Event::RedirectRouted);
        return Ok(redirect(egress));
    }
    if rc == i64::from(BPF_FIB_LKUP_RET_NO_NEIGH) {
        hop()?;
        // SAFETY: an all-zero bpf_redir_neigh is valid; fields set below.
        let mut nh: bpf_redir_neigh = unsafe { core::mem::zeroed() };
        nh.nh_family = u32::from(params.family);
        // SAFETY: the lookup left the next hop in the destination field
        // of the request's family.
        unsafe {
            if params.family == AF_INET6 {
                nh.__bindgen_anon_1.ipv6_nh = params.__bindgen_anon_4.ipv6_dst;
            } else {
                nh.__bindgen_anon_1.ipv4_nh = params.__bindgen_anon_4.ipv4_dst;
            }
        }
        stats::count(Event::RedirectRouted);
        // SAFETY: nh is valid for the size given.
        let verdict =
            unsafe { bpf_redirect_neigh(egress, &mut nh, size_of::<bpf_redir_neigh>() as i32, 0) };
        return Ok(verdict as i32);
    }
    if rc == i64::from(aya_ebpf::bindings::BPF_FIB_LKUP_RET_FRAG_NEEDED) {
        stats::count(Event::PassFragNeeded);
    }
    Err(TC_NEXT)
}

const AF_INET6: u8 = 10;

/// Decrements the hop limit of a routed IPv6 packet (no header checksum).
/// `Err(TC_NEXT)` if it would expire (the stack answers that).
#[inline(always)]
fn decrement_hop_limit(ctx: &TcContext, ip: &Ipv6) -> Result<(), i32> {
    if ip.hop_limit <= 1 {
        return Err(TC_NEXT);
    }
    ctx.store(IP6_HOP_LIMIT_OFF, &(ip.hop_limit - 1), 0)
        .map_err(|_| stats::tc_drop(Event::DropRewriteFailed))
}

/// [`to_endpoint`] for IPv6: the packet (its destination now `daddr`)
/// goes straight into its container, a routed hop. A BPF-to-BPF call (its
/// own frame; the context by value, handed to a helper first, see
/// endpoint.rs).
#[inline(never)]
pub fn to_endpoint6(skb: NonNull<__sk_buff>, ip: &Ipv6, daddr: &Ipv6Be) -> i32 {
    let ctx = &TcContext::new(skb);
    // SAFETY: copied out at once; the agent replaces entries whole.
    let Some(ep) = (unsafe { NA_EPADDR6_V1.get(daddr) }).copied() else {
        return TC_NEXT;
    };
    let delivered = (|| {
        if !fits(ctx, ep.host_ifindex) {
            stats::count(Event::PassFragNeeded);
            return Err(TC_NEXT);
        }
        decrement_hop_limit(ctx, ip)?;
        set_macs(ctx, &ep.mac, Some(&ep.gw_mac))?;
        stats::count(Event::RedirectToEndpoint);
        Ok(into_container(ep.host_ifindex))
    })();
    delivered.unwrap_or_else(|verdict| verdict)
}

/// IPv6 from a container to elsewhere: routed by FIB lookup from its
/// bridge (whose IPv6 forwarding the agent turns on: the lookup refuses
/// otherwise), redirected to a served interface; everything else to the
/// stack (as [`from_container`]). A BPF-to-BPF call, as [`to_endpoint6`].
#[inline(never)]
pub fn routed6(skb: NonNull<__sk_buff>, bridge_ifindex: u32, ip: &Ipv6) -> i32 {
    let ctx = &TcContext::new(skb);
    // SAFETY: an all-zero bpf_fib_lookup is a valid (empty) request.
    let mut params: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    params.family = AF_INET6;
    params.l4_protocol = ip.proto;
    params.ifindex = bridge_ifindex;
    params.__bindgen_anon_3.ipv6_src = ip.saddr;
    params.__bindgen_anon_4.ipv6_dst = ip.daddr;
    by_fib(ctx, &mut params, bridge_ifindex, || {
        decrement_hop_limit(ctx, ip)
    })
    .unwrap_or_else(|verdict| verdict)
}
