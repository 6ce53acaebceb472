// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Per-CPU counters. Plain `+=` is safe: each CPU owns its slot, and the
//! programs run with preemption off in softirq context.

use datapath_common::{Event, NO_STATS_SLOT};

use crate::{
    maps::{NA_EVENTS_V2, NA_PUBSTAT_V2},
    verdict::{TC_DROP, XDP_DROPPED},
};

/// Counts one occurrence of `event`.
#[inline(always)]
pub fn count(event: Event) {
    if let Some(p) = NA_EVENTS_V2.get_ptr_mut(event as u32) {
        // SAFETY: the pointer is this CPU's slot; no other writer exists.
        unsafe { *p += 1 };
    }
}

/// Counts a drop by its reason and returns TC's drop verdict.
#[inline(always)]
pub fn tc_drop(reason: Event) -> i32 {
    count(reason);
    TC_DROP
}

/// Counts a drop by its reason and returns XDP's drop verdict.
#[inline(always)]
pub fn xdp_drop(reason: Event) -> u32 {
    count(reason);
    XDP_DROPPED
}

/// Which way a packet of a publication's flow travels.
#[derive(Clone, Copy)]
pub enum Direction {
    /// Client -> container (DNAT).
    Forward,
    /// Container -> client (reverse NAT).
    Reverse,
}

/// Adds one packet of `bytes` to the publication's counters
/// ([`NO_STATS_SLOT`]: none).
#[inline(always)]
pub fn count_publication(slot: u32, dir: Direction, bytes: u16) {
    if slot == NO_STATS_SLOT {
        return;
    }
    // A slot past the array (sized at load for the host's CPUs) is not
    // found: the publication is translated without counters.
    if let Some(p) = NA_PUBSTAT_V2.get_ptr_mut(slot) {
        // SAFETY: as in `count`.
        let s = unsafe { &mut *p };
        let bytes = u64::from(bytes);
        match dir {
            Direction::Forward => {
                s.fwd_packets += 1;
                s.fwd_bytes += bytes;
            }
            Direction::Reverse => {
                s.rev_packets += 1;
                s.rev_bytes += bytes;
            }
        }
    }
}
