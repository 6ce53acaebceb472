// SPDX-License-Identifier: GPL-2.0 OR MIT
//! IPv4 fragments of translated datagrams, without reassembly.
//!
//! Only the first fragment carries the ports, so only it can be looked up
//! in the publication, conntrack or masquerade maps. When a first fragment
//! is translated, its original identity (source, destination, IP ID,
//! protocol) is recorded with the address it was given; later fragments
//! with that identity get the same address (their L4 checksum is in the
//! first fragment, which already absorbed the change). A later fragment
//! whose first fragment was not seen (reordered, or older than
//! `FRAG_TIMEOUT_NS`) is not translated: the caller drops it if it is a
//! container's or for one, and leaves it to the host otherwise.

use aya_ebpf::bindings::BPF_ANY;
use datapath_common::{FRAG_TIMEOUT_NS, FragKey, FragValue};

use crate::{maps::NA_FRAG4_V1, parse::Ipv4, snat::now_ns};

#[inline(always)]
fn key(ip: &Ipv4) -> FragKey {
    FragKey {
        src_addr_be: ip.saddr,
        dst_addr_be: ip.daddr,
        id_be: ip.id,
        proto: ip.proto,
        _pad: 0,
    }
}

/// Records what the later fragments of `ip`'s datagram get (`ip` as the
/// first fragment arrived, before translation).
#[inline(always)]
pub fn record(ip: &Ipv4, rewrite: u8, addr_be: u32, stats_slot: u32) {
    let value = FragValue {
        addr_be,
        stats_slot,
        rewrite,
        _pad: [0; 3],
        _pad2: 0,
        first_seen_ns: now_ns(),
    };
    let _ = NA_FRAG4_V1.insert(&key(ip), &value, u64::from(BPF_ANY));
}

/// What a later fragment gets, if its first fragment was translated
/// recently.
#[inline(always)]
pub fn lookup(ip: &Ipv4) -> Option<FragValue> {
    // SAFETY: copied out at once.
    let v = unsafe { NA_FRAG4_V1.get(&key(ip)) }.copied()?;
    // Signed: the first fragment may have been recorded on another CPU
    // with a clock read after this one (see `snat::age`).
    if crate::snat::age(now_ns(), v.first_seen_ns) > FRAG_TIMEOUT_NS as i64 {
        return None;
    }
    Some(v)
}
