// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Publication lookup (forward DNAT decision).

use datapath_common::{Event, IPPROTO_ICMP, PubKey, PubValue};

use crate::{
    maps::{NA_LOCAL4_V1, NA_PUB4_V1},
    parse::Packet,
    stats,
};

/// Finds the publication a packet is addressed to: the exact (daddr, dport,
/// proto) entry first, then the wildcard (0.0.0.0) entry if `daddr` is one
/// of the host's own addresses. A refused match is counted by reason; a
/// plain miss is not.
///
/// Packets to 127.0.0.0/8 never match: they can only reach a served
/// interface forged (a martian), and a loopback publication must never be
/// reachable from another host (Docker #45610).
#[inline(always)]
pub fn lookup(pkt: &Packet) -> Option<PubValue> {
    if pkt.proto == IPPROTO_ICMP {
        // Nothing is published for ICMP (echo is parsed for masquerade).
        return None;
    }
    if pkt.daddr.to_ne_bytes()[0] == 127 {
        stats::count(Event::PassLoopbackDst);
        return None;
    }
    let mut key = PubKey {
        addr_be: pkt.daddr,
        port_be: pkt.dport,
        proto: pkt.proto,
        _pad: 0,
    };
    // SAFETY: values are plain data copied out at once; the agent replaces
    // entries whole, so a torn read can only mix two valid publications'
    // fields for a packet racing an update, which the next packet corrects.
    if let Some(v) = unsafe { NA_PUB4_V1.get(&key) } {
        return Some(*v);
    }
    key.addr_be = 0;
    // SAFETY: as above.
    let v = unsafe { NA_PUB4_V1.get(&key) }.copied()?;
    // SAFETY: presence is all we read.
    if unsafe { NA_LOCAL4_V1.get(&pkt.daddr) }.is_none() {
        stats::count(Event::PassNotLocal);
        return None;
    }
    Some(v)
}
