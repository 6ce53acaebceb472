// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The program on a container's host-side veth (TC ingress: what the
//! container sends). It fails closed:
//! - an interface the agent has no entry for drops everything (a veth is
//!   deleted before its entries, so this only catches strays);
//! - only ARP, IPv4 and (on dual-stack networks, endpoint6.rs) IPv6 pass;
//!   anything else (VLAN tags, other EtherTypes) is dropped;
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

use core::ptr::NonNull;

use aya_ebpf::{EbpfContext as _, bindings::__sk_buff, programs::TcContext};
use datapath_common::{
    EndpointIface, Event, FRAG_PASS, IPPROTO_TCP, IPPROTO_UDP, LINK_DPORT, LINK_SPORT, LinkHole,
    NO_STATS_SLOT,
};

use crate::{
    endpoint6, frag, fwd, hairpin,
    hdr::{
        ArpEthIpv4, ENDPOINT_HDR_LEN, ETH_HLEN, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, ETH_PROTO_OFF,
        EthHdr, read,
    },
    maps::{NA_EPADDR4_V1, NA_EPIF4_V1, NA_LINK4_V1},
    parse::{self, Frag},
    policy, skb,
    stats::tc_drop,
    verdict::TC_NEXT,
};

/// The ARP header fields of IPv4 over Ethernet.
const ARP_HTYPE_ETHER: [u8; 2] = [0, 1];

#[inline(always)]
pub fn from_container(ctx: &TcContext) -> i32 {
    let ifindex = skb::ifindex(ctx);
    // A reference into the map value, handed to the branches below (a copy
    // here would sit in this frame under theirs). The agent replaces
    // entries whole.
    // SAFETY: only read field by field.
    let Some(src) = (unsafe { NA_EPIF4_V1.get(&ifindex) }) else {
        return tc_drop(Event::DropUnknownEndpoint);
    };
    skb::pull(ctx, ENDPOINT_HDR_LEN);
    let (data, data_end) = (ctx.data(), ctx.data_end());
    let Some(proto) = read::<[u8; 2]>(data, data_end, ETH_PROTO_OFF) else {
        return tc_drop(Event::DropCtrProtocol);
    };
    // SAFETY: the context pointer the kernel gave this program.
    let skb = unsafe { NonNull::new_unchecked(ctx.as_ptr().cast()) };
    match proto {
        ETH_P_IP => ipv4(skb, ifindex, src),
        // A hairpin packet checked by the IPv6 branch is translated from
        // here, in a call chain of its own (hairpin.rs).
        ETH_P_IPV6 => match endpoint6::from_container(skb, ifindex, src) {
            hairpin::v6::TO_FORWARD => hairpin::v6::forward(skb, src),
            hairpin::v6::TO_REPLY => hairpin::v6::reply(skb),
            verdict => verdict,
        },
        ETH_P_ARP => arp(skb, ifindex),
        _ => tc_drop(Event::DropCtrProtocol),
    }
}

/// IPv4 from a container: source check, hairpin, policy, forwarding. A
/// BPF-to-BPF call like the IPv6 branch (endpoint6.rs), so the two never
/// share one stack frame (the verifier's limit is 512 bytes for the whole
/// call chain; `skb` is passed by value, see there).
#[inline(never)]
fn ipv4(skb: NonNull<__sk_buff>, ifindex: u32, src: &EndpointIface) -> i32 {
    let ctx = &TcContext::new(skb);
    // A no-op after the caller's pull; it also hands the context to a
    // helper, which keeps LLVM from passing the skb's fields instead of
    // the context pointer (argument promotion), which the verifier
    // refuses.
    skb::pull(ctx, ENDPOINT_HDR_LEN);
    let (data, data_end) = (ctx.data(), ctx.data_end());
    let Some(eth) = read::<EthHdr>(data, data_end, 0) else {
        return tc_drop(Event::DropCtrProtocol);
    };
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
    if let Some(verdict) = hairpin::handle(ctx, src, &ip, dst) {
        return verdict;
    }
    if let Err(reason) = policy::decide(&src.net, ip.daddr, dst) {
        // icc=false between two containers of one network: a legacy
        // link's hole may let it through.
        let linked = matches!(reason, Event::DropIcc)
            && dst.is_some()
            && link_hole(ctx.data(), ctx.data_end(), &ip);
        if !linked {
            return tc_drop(reason);
        }
    }
    if dst.is_none() && policy::is_flooded(&src.net, ip.daddr) {
        // The bridge floods it to the network (and the host).
        return TC_NEXT;
    }
    fwd::from_container(ctx, src, &ip, dst)
}

/// Whether a legacy link opens this packet (TCP or UDP): to the linked
/// container's exposed port, or its answer from that port (Docker's two
/// rules per port). A first fragment that passes records its datagram so
/// its later fragments (no ports to match) pass too, as Docker's rules
/// see the datagram whole after conntrack's reassembly; a later fragment
/// whose first fragment did not pass here stays shut. A call of its own,
/// so its flow parse never sits in `ipv4`'s frame.
#[inline(never)]
fn link_hole(data: usize, data_end: usize, ip: &parse::Ipv4) -> bool {
    if ip.frag == Frag::Later {
        return frag::lookup(ip).is_some_and(|f| f.rewrite == FRAG_PASS);
    }
    let Ok(pkt) = parse::flow(data, data_end, ip) else {
        return false;
    };
    if pkt.proto != IPPROTO_TCP && pkt.proto != IPPROTO_UDP {
        return false;
    }
    let to = LinkHole {
        from_be: pkt.saddr,
        to_be: pkt.daddr,
        port_be: pkt.dport,
        proto: pkt.proto,
        dir: LINK_DPORT,
    };
    let back = LinkHole {
        port_be: pkt.sport,
        dir: LINK_SPORT,
        ..to
    };
    // SAFETY: presence is all we read.
    let open = unsafe { NA_LINK4_V1.get(&to).is_some() || NA_LINK4_V1.get(&back).is_some() };
    if open && ip.frag == Frag::First {
        frag::record(ip, FRAG_PASS, ip.daddr, NO_STATS_SLOT);
    }
    open
}

/// ARP from a container: well-formed, from its own MAC and address. A
/// probe (sender 0.0.0.0, RFC 5227) is refused too: addresses come from
/// the agent's IPAM, and a probe's sender MAC could not be checked.
#[inline(never)]
fn arp(skb: NonNull<__sk_buff>, ifindex: u32) -> i32 {
    let ctx = &TcContext::new(skb);
    skb::pull(ctx, ENDPOINT_HDR_LEN);
    let (data, data_end) = (ctx.data(), ctx.data_end());
    let Some(eth) = read::<EthHdr>(data, data_end, 0) else {
        return tc_drop(Event::DropCtrProtocol);
    };
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
