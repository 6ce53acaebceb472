// SPDX-License-Identifier: GPL-2.0 OR MIT
//! netagent's eBPF datapath: entry points only, by attach point. One ELF,
//! so every program shares the maps in maps.rs by construction.
//!
//! - Served interfaces (the host's uplinks): `na_xdp_ingress`,
//!   `na_tc_ingress`, `na_tc_egress` (served.rs).
//! - A container's host-side veth: `na_tc_from_ctr` (endpoint.rs).
//! - A container's loopback: `na_tc_dns` (dns.rs), the embedded
//!   resolver's address.
//! - Host sockets, on the agent's cgroup: `na_connect4`, `na_sendmsg4`,
//!   `na_recvmsg4`, `na_getpeername4` (sock.rs).
//!
//! Module layers, each using only those below it (no cycles):
//! verdict, hdr, csum -> parse, skb, stats, maps -> rewrite, nat, ct, snat,
//! frag, policy -> icmp, fwd -> served, endpoint, sock.
#![no_std]
#![no_main]
// The #[classifier] expansion trips this deny-by-default lint on the
// generated fn, where a fn-level allow does not reach (TOOLCHAIN.md §3).
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod csum;
mod ct;
mod dns;
mod endpoint;
mod endpoint6;
mod frag;
mod fwd;
mod hairpin;
mod hdr;
mod icmp;
mod icmp6;
mod maps;
mod nat;
mod parse;
mod parse6;
mod policy;
mod rewrite;
mod served;
mod skb;
mod snat;
mod sock;
mod stats;
mod verdict;

use aya_ebpf::{
    macros::{cgroup_sock_addr, classifier, xdp},
    programs::{SockAddrContext, TcContext, XdpContext},
};

/// Served interface, XDP: DNAT of published ports from the wire.
#[xdp(frags)]
pub fn na_xdp_ingress(ctx: XdpContext) -> u32 {
    served::xdp_ingress(&ctx)
}

/// Served interface, TC ingress: the rest of what arrives (DNAT of what
/// XDP left, masquerade replies, ICMP errors, fragments) and delivery to
/// containers; nothing untranslated reaches a container.
#[classifier]
pub fn na_tc_ingress(ctx: TcContext) -> i32 {
    served::tc_ingress(&ctx)
}

/// Served interface, TC egress: reverse NAT of published flows,
/// masquerade; nothing leaves with a container's private address.
#[classifier]
pub fn na_tc_egress(ctx: TcContext) -> i32 {
    served::tc_egress(&ctx)
}

/// Container veth, TC ingress: source validation, isolation, forwarding.
#[classifier]
pub fn na_tc_from_ctr(ctx: TcContext) -> i32 {
    endpoint::from_container(&ctx)
}

/// A container's loopback, TC egress: the embedded resolver's
/// 127.0.0.11:53 to its real port and back (dns.rs).
#[classifier]
pub fn na_tc_dns(ctx: TcContext) -> i32 {
    dns::loopback_egress(&ctx)
}

/// Host socket, connect(2): a published address goes to the container.
#[cgroup_sock_addr(connect4)]
pub fn na_connect4(ctx: SockAddrContext) -> i32 {
    sock::forward(&ctx)
}

/// Host socket, unconnected UDP send: as connect.
#[cgroup_sock_addr(sendmsg4)]
pub fn na_sendmsg4(ctx: SockAddrContext) -> i32 {
    sock::forward(&ctx)
}

/// Host socket, UDP receive: a container's answer shows the published
/// address it was sent to.
#[cgroup_sock_addr(recvmsg4)]
pub fn na_recvmsg4(ctx: SockAddrContext) -> i32 {
    sock::reverse(&ctx)
}

/// Host socket, getpeername(2): the published address it connected to.
#[cgroup_sock_addr(getpeername4)]
pub fn na_getpeername4(ctx: SockAddrContext) -> i32 {
    sock::reverse(&ctx)
}

/// Host IPv6 socket, connect(2): a publication reached at `::1`, a host
/// IPv6 address or a published IPv4-mapped address goes to the
/// container's IPv6 or IPv4-mapped address.
#[cgroup_sock_addr(connect6)]
pub fn na_connect6(ctx: SockAddrContext) -> i32 {
    sock::forward6(&ctx, sock::Call6::Connect)
}

/// Host IPv6 socket, unconnected UDP send: as connect6, to a container's
/// IPv6 address only (sock.rs).
#[cgroup_sock_addr(sendmsg6)]
pub fn na_sendmsg6(ctx: SockAddrContext) -> i32 {
    sock::forward6(&ctx, sock::Call6::Sendmsg)
}

/// Host IPv6 socket, UDP receive: as recvmsg4.
#[cgroup_sock_addr(recvmsg6)]
pub fn na_recvmsg6(ctx: SockAddrContext) -> i32 {
    sock::reverse6(&ctx)
}

/// Host IPv6 socket, getpeername(2): as getpeername4.
#[cgroup_sock_addr(getpeername6)]
pub fn na_getpeername6(ctx: SockAddrContext) -> i32 {
    sock::reverse6(&ctx)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
