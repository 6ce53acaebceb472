// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Every verdict a program returns, in one place. Modules return these,
//! never raw numbers, and never import each other for them.

#![allow(
    clippy::unnecessary_cast,
    reason = "the generated bindings are u32 on the BPF target and i32 on the host clippy runs on"
)]

use aya_ebpf::bindings::{
    TC_ACT_SHOT, TC_ACT_UNSPEC,
    xdp_action::{XDP_DROP, XDP_PASS},
};

/// TC: not ours, or ours and done with; the next program on the interface
/// runs (TCX_NEXT), then the stack. Never `TC_ACT_PIPE`/`TC_ACT_OK`: both
/// end a TCX chain, hiding the packet from any program attached after ours.
pub const TC_NEXT: i32 = TC_ACT_UNSPEC as i32;
/// TC: dropped (TCX_DROP). Every drop is counted by reason first.
pub const TC_DROP: i32 = TC_ACT_SHOT as i32;

/// XDP: on to the stack (and TC ingress).
pub const XDP_NEXT: u32 = XDP_PASS;
/// XDP: dropped.
pub const XDP_DROPPED: u32 = XDP_DROP;
