// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Per-CPU counters. Plain `+=` is safe: each CPU owns its slot, and the
//! programs run with preemption off in softirq context.

use datapath_common::Event;

use crate::maps::{NA_EVENTS_V2, NA_PUBSTAT_V1};

/// Counts one occurrence of `event`.
#[inline(always)]
pub fn count(event: Event) {
    if let Some(p) = NA_EVENTS_V2.get_ptr_mut(event as u32) {
        // SAFETY: the pointer is this CPU's slot; no other writer exists.
        unsafe { *p += 1 };
    }
}

/// Which way a packet of a publication's flow travels.
#[derive(Clone, Copy)]
pub enum Direction {
    /// Client -> container (DNAT).
    Forward,
    /// Container -> client (reverse NAT).
    Reverse,
}

/// Adds one packet of `bytes` to the publication's counters.
#[inline(always)]
pub fn count_publication(slot: u32, dir: Direction, bytes: u64) {
    if let Some(p) = NA_PUBSTAT_V1.get_ptr_mut(slot) {
        // SAFETY: as in `count`.
        let s = unsafe { &mut *p };
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

/// Counts why a packet was skipped (plain non-IPv4/TCP/UDP is not counted).
#[inline(always)]
pub fn count_skip(skip: crate::parse::Skip) {
    match skip {
        crate::parse::Skip::NotOurs => {}
        crate::parse::Skip::Fragment => count(Event::PassFragment),
        crate::parse::Skip::Malformed => count(Event::PassMalformed),
    }
}
