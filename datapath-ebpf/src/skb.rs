// SPDX-License-Identifier: GPL-2.0 OR MIT
//! What the TC programs need from the skb beyond the packet bytes: the one
//! header-pull helper, the interface index, and XDP's metadata mark.

use core::mem::size_of;

use aya_ebpf::{EbpfContext as _, bindings::__sk_buff, programs::TcContext};
use datapath_common::XDP_TRANSLATED_MARK;

/// Makes the first `want` bytes (or the whole packet, if shorter) linear,
/// so parses see them between `data` and `data_end`. Invalidates every
/// packet pointer: parse after it, never before. A failed pull leaves the
/// area short, and the parse then reports the headers malformed.
#[inline(always)]
pub fn pull(ctx: &TcContext, want: u32) {
    let len = ctx.len();
    let want = if len < want { len } else { want };
    if ((ctx.data_end() - ctx.data()) as u32) < want {
        let _ = ctx.pull_data(want);
    }
}

/// The interface the program runs on (ingress: arrived on; egress:
/// leaving through).
#[inline(always)]
pub fn ifindex(ctx: &TcContext) -> u32 {
    let skb = ctx.as_ptr() as *const __sk_buff;
    // SAFETY: reading a context field.
    unsafe { (*skb).ifindex }
}

/// Whether XDP translated this packet already (its metadata mark).
#[inline(always)]
pub fn translated_by_xdp(ctx: &TcContext) -> bool {
    let skb = ctx.as_ptr() as *const __sk_buff;
    // SAFETY: reading context fields the verifier rewrites into packet
    // pointers; the mark is read only after a bounds check against data.
    let (meta, data) = unsafe { ((*skb).data_meta as usize, (*skb).data as usize) };
    if meta + size_of::<u32>() > data {
        return false;
    }
    // SAFETY: bounds checked just above.
    unsafe { *(meta as *const u32) == XDP_TRANSLATED_MARK }
}
