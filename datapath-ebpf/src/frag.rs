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

/// IPv6: the same, keyed by the fragment header's 32-bit identification.
pub mod v6 {
    use aya_ebpf::bindings::BPF_ANY;
    use datapath_common::{FRAG_TIMEOUT_NS, FragKey6, FragValue6, Ipv6Be};

    use crate::{maps::NA_FRAG6_V1, snat::now_ns};

    /// The key of a datagram by its original identity.
    #[inline(always)]
    fn key(saddr: &Ipv6Be, daddr: &Ipv6Be, id_be: u32, proto: u8) -> FragKey6 {
        FragKey6 {
            src_addr_be: *saddr,
            dst_addr_be: *daddr,
            id_be,
            proto,
            _pad: [0; 3],
        }
    }

    /// Records what the later fragments of the datagram of (`saddr`,
    /// `daddr`, `id_be`, `proto`), as its first fragment arrived, get.
    #[inline(always)]
    pub fn record(saddr: &Ipv6Be, daddr: &Ipv6Be, id_be: u32, proto: u8, value: &FragValue6) {
        let mut value = *value;
        value.first_seen_ns = now_ns();
        let _ = NA_FRAG6_V1.insert(&key(saddr, daddr, id_be, proto), &value, u64::from(BPF_ANY));
    }

    /// What a later fragment gets, into `out`, if its first fragment was
    /// translated recently.
    #[inline(always)]
    pub fn lookup(
        saddr: &Ipv6Be,
        daddr: &Ipv6Be,
        id_be: u32,
        proto: u8,
        out: &mut FragValue6,
    ) -> bool {
        // SAFETY: copied out at once.
        let Some(v) = (unsafe { NA_FRAG6_V1.get(&key(saddr, daddr, id_be, proto)) }).copied()
        else {
            return false;
        };
        // Signed, as for IPv4.
        if crate::snat::age(now_ns(), v.first_seen_ns) > FRAG_TIMEOUT_NS as i64 {
            return false;
        }
        *out = v;
        true
    }
}
