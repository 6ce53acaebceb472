// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The program on a container's host-side veth (TC ingress: what the
//! container sends). It fails closed:
//! - an interface the agent has no entry for drops everything (a veth is
//!   deleted before its entries, so this only catches strays);
//! - only ARP and IPv4 pass; anything else (IPv6, VLAN tags, other
//!   EtherTypes) is dropped;
//! - a container may send only from its own addresses, with its own MAC:
//!   the IPv4 source, the ARP sender and the Ethernet source must be an
//!   address the agent gave this interface and this interface's MAC. This
//!   is what stops a container from spoofing another container (and
//!   hijacking its masqueraded flows or its published service's clients)
//!   or an outside address, and redirects skip the kernel's rp_filter, so
//!   nothing else would;
//! - then hairpin translation (hairpin.rs: to a published port of the
//!   host, and the replies), the isolation policy (policy.rs), broadcast
//!   and multicast included, and forwarding (fwd.rs).

use aya_ebpf::programs::TcContext;
use datapath_common::Event;

use crate::{
    fwd, hairpin,
    hdr::{ArpEthIpv4, ENDPOINT_HDR_LEN, ETH_HLEN, ETH_P_ARP, ETH_P_IP, EthHdr, read},
    maps::{NA_EPADDR4_V1, NA_EPIF4_V1},
    parse, policy, skb,
    stats::tc_drop,
    verdict::TC_NEXT,
};

/// The ARP header fields of IPv4 over Ethernet.
const ARP_HTYPE_ETHER: [u8; 2] = [0, 1];

#[inline(always)]
pub fn from_container(ctx: &TcContext) -> i32 {
    let ifindex = skb::ifindex(ctx);
    // SAFETY: copied out at once; the agent replaces entries whole.
    let Some(src) = (unsafe { NA_EPIF4_V1.get(&ifindex) }).copied() else {
        return tc_drop(Event::DropUnknownEndpoint);
    };
    skb::pull(ctx, ENDPOINT_HDR_LEN);
    let (data, data_end) = (ctx.data(), ctx.data_end());
    let Some(eth) = read::<EthHdr>(data, data_end, 0) else {
        return tc_drop(Event::DropCtrProtocol);
    };
    if eth.proto == ETH_P_ARP {
        return arp(data, data_end, ifindex, &eth);
    }
    if eth.proto != ETH_P_IP {
        return tc_drop(Event::DropCtrProtocol);
    }
    let Ok(ip) = parse::ipv4(data, data_end, ctx.len() as usize) else {
        return tc_drop(Event::DropCtrProtocol);
    };
    // SAFETY: references into map values the agent replaces whole; only
    // compared and read field by field.
    let (owner, dst) = unsafe { (NA_EPADDR4_V1.get(&ip.saddr), NA_EPADDR4_V1.get(&ip.daddr)) };
    if !policy::owns(owner, ifindex, &eth.src) {
        return tc_drop(Event::DropSpoofed);
    }
    // Before the policy: a hairpin reply crosses networks by design.
    if let Some(verdict) = hairpin::handle(ctx, &src, &ip, dst) {
        return verdict;
    }
    if let Err(reason) = policy::decide(&src.net, ip.daddr, dst) {
        return tc_drop(reason);
    }
    if dst.is_none() && policy::is_flooded(&src.net, ip.daddr) {
        // The bridge floods it to the network (and the host).
        return TC_NEXT;
    }
    fwd::from_container(ctx, &src, &ip, dst)
}

/// ARP from a container: well-formed, from its own MAC and address. A
/// probe (sender 0.0.0.0, RFC 5227) is refused too: addresses come from
/// the agent's IPAM, and a probe's sender MAC could not be checked.
#[inline(always)]
fn arp(data: usize, data_end: usize, ifindex: u32, eth: &EthHdr) -> i32 {
    let Some(arp) = read::<ArpEthIpv4>(data, data_end, ETH_HLEN) else {
        return tc_drop(Event::DropCtrProtocol);
    };
    if arp.htype != ARP_HTYPE_ETHER || arp.ptype != ETH_P_IP || arp.hlen != 6 || arp.plen != 4 {
        return tc_drop(Event::DropCtrProtocol);
    }
    let spa = u32::from_ne_bytes(arp.spa);
    // SAFETY: as in `from_container`.
    let owner = unsafe { NA_EPADDR4_V1.get(&spa) };
    if !policy::owns(owner, ifindex, &eth.src) || !policy::owns(owner, ifindex, &arp.sha) {
        return tc_drop(Event::DropSpoofed);
    }
    TC_NEXT
}
