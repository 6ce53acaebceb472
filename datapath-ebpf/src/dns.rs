// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The embedded resolver's address inside a container, without netfilter:
//! at TC egress of the container's loopback (every packet between two of
//! its sockets leaves through it once), a query to 127.0.0.11:53 (UDP or
//! TCP) goes to the port the resolver's sockets really have there, and
//! their answers leave from port 53 again. So the resolver never holds
//! port 53 in the container, and the container's own servers may bind it
//! (`0.0.0.0:53` included), as with Docker's DNAT rules.
//!
//! The port is the namespace's (`NA_DNSPORT_V1`, keyed by its cookie);
//! a namespace without an entry, and every other packet, pass untouched.
//! Stateless: a port change needs no checksum over the pseudo-header, and
//! the helper leaves a CHECKSUM_PARTIAL packet's seed alone.

use aya_ebpf::{
    EbpfContext as _, bindings::BPF_F_MARK_MANGLED_0, helpers::generated::bpf_get_netns_cookie,
    programs::TcContext,
};
use datapath_common::{IPPROTO_TCP, IPPROTO_UDP};

use crate::{hdr::FLOW_HDR_LEN, maps::NA_DNSPORT_V1, parse, skb, verdict::TC_NEXT};

/// 127.0.0.11 in wire order.
const RESOLVER_BE: u32 = u32::from_ne_bytes([127, 0, 0, 11]);
/// Port 53 in wire order.
const DNS_PORT_BE: u16 = 53u16.to_be();

/// TC egress of a container's loopback: the resolver's port translation.
/// Never drops: what it cannot translate is not the resolver's.
#[inline(always)]
pub fn loopback_egress(ctx: &TcContext) -> i32 {
    skb::pull(ctx, FLOW_HDR_LEN);
    let (data, data_end) = (ctx.data(), ctx.data_end());
    let Ok(ip) = parse::ipv4(data, data_end, ctx.len() as usize) else {
        return TC_NEXT;
    };
    if ip.daddr != RESOLVER_BE && ip.saddr != RESOLVER_BE {
        return TC_NEXT;
    }
    let Ok(pkt) = parse::flow(data, data_end, &ip) else {
        return TC_NEXT;
    };
    if pkt.proto != IPPROTO_TCP && pkt.proto != IPPROTO_UDP {
        return TC_NEXT;
    }
    // SAFETY: the helper reads the skb's namespace.
    let cookie = unsafe { bpf_get_netns_cookie(ctx.as_ptr()) };
    // SAFETY: a value the agent writes whole; read once.
    let Some(port) = (unsafe { NA_DNSPORT_V1.get(&cookie) }).map(|p| *p as u16) else {
        return TC_NEXT;
    };
    let (off, old, new) = if pkt.daddr == RESOLVER_BE && pkt.dport == DNS_PORT_BE {
        (pkt.dport_off, pkt.dport, port)
    } else if pkt.saddr == RESOLVER_BE && pkt.sport == port {
        (pkt.sport_off, pkt.sport, DNS_PORT_BE)
    } else {
        return TC_NEXT;
    };
    let mut flags = 2u64;
    if pkt.proto == IPPROTO_UDP {
        flags |= u64::from(BPF_F_MARK_MANGLED_0);
    }
    if ctx.store(off, &new, 0).is_err()
        || ctx
            .l4_csum_replace(pkt.l4_csum_off, u64::from(old), u64::from(new), flags)
            .is_err()
    {
        // Half rewritten: the packet is broken either way; dropping it
        // makes the asker retry instead of waiting on a bad checksum.
        return crate::stats::tc_drop(datapath_common::Event::DropRewriteFailed);
    }
    TC_NEXT
}
