// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Published ports reached from the host itself, translated at the socket
//! (cgroup sock_addr hooks) instead of per packet: a `connect` or a UDP
//! `sendto` to a published address goes to the container's address, and
//! what the application sees of its peer (a UDP answer's source,
//! `getpeername`) is the published address again. No packet is rewritten
//! and nothing listens in user space.
//!
//! Invariants:
//! - only sockets of the host's network namespace are translated
//!   ([`SockConfig::host_netns_cookie`]); a container's 127.0.0.1 is the
//!   container, whatever cgroup it sits in;
//! - only TCP and UDP; every hook always allows the call (returns 1): it
//!   translates or leaves the address as it is, never refuses;
//! - the reverse entry is written before the address is changed, and
//!   keyed by the socket, so one socket never sees another's address.

use aya_ebpf::{
    EbpfContext as _,
    helpers::generated::{bpf_get_netns_cookie, bpf_get_socket_cookie},
    programs::SockAddrContext,
};
use datapath_common::{Event, IPPROTO_TCP, IPPROTO_UDP, SockRevKey, SockRevValue};

use crate::{
    maps::{NA_SOCKCFG_V1, NA_SOCKREV4_V1},
    nat, stats,
};

/// What a sock_addr hook returns to let the call go on.
const ALLOW: i32 = 1;

/// The socket's protocol if it is one the hooks translate, and its
/// namespace is the host's.
#[inline(always)]
fn host_socket(ctx: &SockAddrContext) -> Option<u8> {
    // SAFETY: the kernel hands every sock_addr program a valid context.
    let proto = unsafe { (*ctx.sock_addr).protocol };
    let proto = match proto {
        p if p == u32::from(IPPROTO_TCP) => IPPROTO_TCP,
        p if p == u32::from(IPPROTO_UDP) => IPPROTO_UDP,
        _ => return None,
    };
    let host = NA_SOCKCFG_V1.get(0)?.host_netns_cookie;
    // SAFETY: a helper the kernel offers sock_addr programs, given their
    // own context.
    let netns = unsafe { bpf_get_netns_cookie(ctx.as_ptr()) };
    (host != 0 && netns == host).then_some(proto)
}

/// connect4 and sendmsg4: a published destination becomes the container's.
#[inline(always)]
pub fn forward(ctx: &SockAddrContext) -> i32 {
    let Some(proto) = host_socket(ctx) else {
        return ALLOW;
    };
    // SAFETY: as in `host_socket`; the fields are plain integers.
    let sa = unsafe { &mut *ctx.sock_addr };
    let addr = sa.user_ip4;
    // The port is in the low 16 bits, network order.
    let port = sa.user_port as u16;
    let Some(target) = nat::find_from_host(addr, port, proto) else {
        return ALLOW;
    };
    let key = SockRevKey {
        // SAFETY: as for `bpf_get_netns_cookie`.
        cookie: unsafe { bpf_get_socket_cookie(ctx.as_ptr()) },
        addr_be: target.addr_be,
        port_be: target.port_be,
        proto,
        _pad: 0,
    };
    let asked = SockRevValue {
        addr_be: addr,
        port_be: port,
        _pad: 0,
    };
    // An unconnected UDP socket comes here for every datagram: its entry
    // is written once, not per send (an LRU update takes a bucket lock).
    // SAFETY: plain data copied out at once.
    let known = unsafe { NA_SOCKREV4_V1.get(&key) }.is_some_and(|v| *v == asked);
    // Without its reverse entry the answers would show the container's
    // address: then leave the socket alone rather than half-translated.
    if !known && NA_SOCKREV4_V1.insert(&key, &asked, 0).is_err() {
        return ALLOW;
    }
    sa.user_ip4 = target.addr_be;
    sa.user_port = u32::from(target.port_be);
    stats::count(Event::SockForward);
    ALLOW
}

/// recvmsg4 and getpeername4: the container's address, for a socket that
/// was sent there, shows as the published one it asked for.
#[inline(always)]
pub fn reverse(ctx: &SockAddrContext) -> i32 {
    let Some(proto) = host_socket(ctx) else {
        return ALLOW;
    };
    // SAFETY: as in `forward`.
    let sa = unsafe { &mut *ctx.sock_addr };
    let key = SockRevKey {
        // SAFETY: as in `forward`.
        cookie: unsafe { bpf_get_socket_cookie(ctx.as_ptr()) },
        addr_be: sa.user_ip4,
        port_be: sa.user_port as u16,
        proto,
        _pad: 0,
    };
    // SAFETY: plain data copied out at once.
    let Some(asked) = (unsafe { NA_SOCKREV4_V1.get(&key) }).copied() else {
        return ALLOW;
    };
    sa.user_ip4 = asked.addr_be;
    sa.user_port = u32::from(asked.port_be);
    stats::count(Event::SockReverse);
    ALLOW
}
