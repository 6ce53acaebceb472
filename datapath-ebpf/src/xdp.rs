// SPDX-License-Identifier: GPL-2.0 OR MIT
//! DNAT at XDP: the fast path for packets that arrive with a complete L4
//! checksum (everything from a real wire). Always returns `XDP_PASS`: the
//! translated packet continues into the stack, which routes it to the
//! container.

use core::mem::size_of;

use aya_ebpf::{
    bindings::xdp_action::XDP_PASS, helpers::generated::bpf_xdp_adjust_meta, programs::XdpContext,
};
use datapath_common::{Event, IPPROTO_UDP, PubValue, XDP_TRANSLATED_MARK};

use crate::{
    csum, ct, nat,
    parse::{IP_CSUM_OFF, IP_DST_OFF, Packet, TcpHdr, UdpHdr, parse, ptr_at_mut},
    stats::{self, Direction},
};

#[inline(always)]
pub fn ingress(ctx: &XdpContext) -> u32 {
    let (data, data_end) = (ctx.data(), ctx.data_end());
    let pkt = match parse(data, data_end, data_end - data) {
        Ok(pkt) => pkt,
        Err(skip) => {
            stats::count_skip(skip);
            return XDP_PASS;
        }
    };
    let Some(target) = nat::lookup(&pkt) else {
        return XDP_PASS;
    };
    let has_l4_csum = !(pkt.proto == IPPROTO_UDP && pkt.l4_csum == 0);
    if has_l4_csum && pkt.l4_csum == csum::partial_seed(pkt.saddr, pkt.daddr, pkt.proto, pkt.l4_len)
    {
        stats::count(Event::XdpDeferred);
        return XDP_PASS;
    }
    if rewrite_dst(data, data_end, &pkt, &target, has_l4_csum).is_none() {
        // Unreachable after a successful parse; leave the packet untouched.
        stats::count(Event::PassMalformed);
        return XDP_PASS;
    }
    ct::record(&pkt, &target);
    mark_translated(ctx);
    stats::count(Event::XdpDnat);
    stats::count_publication(target.stats_slot, Direction::Forward, u64::from(pkt.ip_len));
    XDP_PASS
}

/// Tags the packet's metadata so TC ingress knows it is done. Best effort:
/// without metadata support TC parses the packet, finds the container
/// address unpublished and passes it, which is correct, only slower.
#[inline(always)]
fn mark_translated(ctx: &XdpContext) {
    // SAFETY: the helper only moves data_meta within the headroom.
    if unsafe { bpf_xdp_adjust_meta(ctx.ctx, -(size_of::<u32>() as i32)) } != 0 {
        return;
    }
    let (meta, data) = (ctx.metadata(), ctx.data());
    if meta + size_of::<u32>() > data {
        return;
    }
    // SAFETY: bounds checked against data just above; metadata is 4-aligned.
    unsafe { *(meta as *mut u32) = XDP_TRANSLATED_MARK };
}

/// Rewrites the destination address and port to `target`, updating both
/// checksums incrementally. Takes every pointer before writing anything, so
/// a packet is either fully translated or untouched.
///
/// The L4 fields are written through one bounds-checked header pointer at
/// constant offsets: a pointer re-derived from the variable L4 offset after
/// the check would carry no verified range and be rejected.
#[inline(always)]
fn rewrite_dst(
    data: usize,
    data_end: usize,
    pkt: &Packet,
    target: &PubValue,
    has_l4_csum: bool,
) -> Option<()> {
    let ip_dst = ptr_at_mut::<[u8; 4]>(data, data_end, IP_DST_OFF)?;
    let ip_csum = ptr_at_mut::<[u8; 2]>(data, data_end, IP_CSUM_OFF)?;
    let mut l4_check = pkt.l4_csum;
    if has_l4_csum {
        l4_check = csum::replace4(l4_check, pkt.daddr, target.addr_be);
        l4_check = csum::replace2(l4_check, pkt.dport, target.port_be);
        if pkt.proto == IPPROTO_UDP && l4_check == 0 {
            // 0 means "no checksum" in UDP; RFC 768 sends all ones instead.
            l4_check = 0xffff;
        }
    }
    let l4_check = l4_check.to_ne_bytes();
    let dport = target.port_be.to_ne_bytes();
    if pkt.proto == IPPROTO_UDP {
        let udp = ptr_at_mut::<UdpHdr>(data, data_end, pkt.l4_off)?;
        // SAFETY: bounds-checked by ptr_at_mut.
        unsafe {
            (*udp).ports.dst = dport;
            (*udp).check = l4_check;
        }
    } else {
        let tcp = ptr_at_mut::<TcpHdr>(data, data_end, pkt.l4_off)?;
        // SAFETY: bounds-checked by ptr_at_mut.
        unsafe {
            (*tcp).ports.dst = dport;
            (*tcp).check = l4_check;
        }
    }
    // SAFETY: bounds-checked by ptr_at_mut above.
    unsafe {
        let ip_check = u16::from_ne_bytes(*ip_csum);
        *ip_csum = csum::replace4(ip_check, pkt.daddr, target.addr_be).to_ne_bytes();
        *ip_dst = target.addr_be.to_ne_bytes();
    }
    Some(())
}
