// SPDX-License-Identifier: GPL-2.0 OR MIT
//! netagent's eBPF datapath: entry points only. One ELF, so every program
//! shares the maps in maps.rs by construction.
#![no_std]
#![no_main]
// The #[classifier] expansion trips this deny-by-default lint on the
// generated fn, where a fn-level allow does not reach (TOOLCHAIN.md §3).
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod csum;
mod ct;
mod fwd;
mod maps;
mod nat;
mod parse;
mod policy;
mod snat;
mod stats;
mod tc;
mod xdp;

use aya_ebpf::{
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};

/// DNAT of published ports, on the interfaces the agent serves.
#[xdp]
pub fn na_xdp_ingress(ctx: XdpContext) -> u32 {
    xdp::ingress(&ctx)
}

/// DNAT of the packets XDP deferred (CHECKSUM_PARTIAL seeds).
#[classifier]
pub fn na_tc_ingress(ctx: TcContext) -> i32 {
    tc::ingress(&ctx)
}

/// Reverse NAT of container replies, masquerade of container traffic.
#[classifier]
pub fn na_tc_egress(ctx: TcContext) -> i32 {
    tc::egress(&ctx)
}

/// Isolation between networks, on a container's host-side interface.
#[classifier]
pub fn na_tc_from_ctr(ctx: TcContext) -> i32 {
    tc::from_container(&ctx)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
