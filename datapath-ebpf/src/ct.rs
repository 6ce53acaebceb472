// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Reverse-NAT state: what the DNAT paths record and TC egress reads.
//!
//! Only the reply direction is tracked. The forward direction is translated
//! from the publication map on every packet, so unpublishing (or moving) a
//! port takes effect for established flows too: their next packet is no
//! longer translated (TCP peers then get a RST from the host stack). Stale
//! entries can only rewrite replies from the old container endpoint to the
//! same client tuple, and age out of the LRU.

use aya_ebpf::bindings::BPF_ANY;
use datapath_common::{CtKey, CtValue, PubValue};

use crate::{maps::NA_CT4_V1, parse::Packet};

/// Records that replies from `to` (the container endpoint) to the packet's
/// source must look like they come from the packet's original destination.
/// Skips the map write when the entry is already current, so a steady flow
/// costs one lookup per packet (which also refreshes the LRU).
#[inline(always)]
pub fn record(pkt: &Packet, to: &PubValue) {
    let key = CtKey {
        src_addr_be: to.addr_be,
        dst_addr_be: pkt.saddr,
        src_port_be: to.port_be,
        dst_port_be: pkt.sport,
        proto: pkt.proto,
        _pad: [0; 3],
    };
    let value = CtValue {
        orig_addr_be: pkt.daddr,
        orig_port_be: pkt.dport,
        _pad: 0,
        stats_slot: to.stats_slot,
    };
    // SAFETY: compared by value at once.
    if unsafe { NA_CT4_V1.get(&key) } == Some(&value) {
        return;
    }
    // A failed insert (only possible under memory pressure) loses reverse
    // NAT for this flow's replies; the next forward packet retries.
    let _ = NA_CT4_V1.insert(&key, &value, u64::from(BPF_ANY));
}

/// The reverse-NAT entry for a reply packet, if any.
#[inline(always)]
pub fn lookup_reply(pkt: &Packet) -> Option<CtValue> {
    let key = CtKey {
        src_addr_be: pkt.saddr,
        dst_addr_be: pkt.daddr,
        src_port_be: pkt.sport,
        dst_port_be: pkt.dport,
        proto: pkt.proto,
        _pad: [0; 3],
    };
    // SAFETY: copied out at once.
    unsafe { NA_CT4_V1.get(&key) }.copied()
}
