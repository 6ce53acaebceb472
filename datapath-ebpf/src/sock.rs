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

use core::ptr::{read_volatile, write_volatile};

use aya_ebpf::{
    EbpfContext as _,
    bindings::bpf_sock_addr,
    helpers::generated::{bpf_get_netns_cookie, bpf_get_socket_cookie},
    programs::SockAddrContext,
};
use datapath_common::{
    Event, IPPROTO_TCP, IPPROTO_UDP, Ipv6Be, SockRev6Key, SockRev6Value, SockRevKey, SockRevValue,
};

use crate::{
    maps::{NA_SOCKCFG_V1, NA_SOCKREV4_V1, NA_SOCKREV6_V1},
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

/// The IPv4-mapped form's first three words (`::ffff:0:0/96`).
const V4_MAPPED_PREFIX: [u32; 3] = [0, 0, u32::from_be(0x0000_ffff)];

/// Whether `addr` is `::1`.
#[inline(always)]
fn is_loopback6(addr: &Ipv6Be) -> bool {
    addr[0] == 0 && addr[1] == 0 && addr[2] == 0 && addr[3] == u32::from_be(1)
}

/// The IPv4 address `addr` maps, if it is IPv4-mapped.
#[inline(always)]
fn v4_mapped(addr: &Ipv6Be) -> Option<u32> {
    (addr[0] == V4_MAPPED_PREFIX[0]
        && addr[1] == V4_MAPPED_PREFIX[1]
        && addr[2] == V4_MAPPED_PREFIX[2])
        .then_some(addr[3])
}

/// Reads `user_ip6` word by word: the verifier allows only loads at a
/// constant offset from the unmodified context pointer, which a copy of
/// the whole array (a memcpy) is not.
#[inline(always)]
fn load_ip6(sa: &bpf_sock_addr) -> Ipv6Be {
    // SAFETY: reads of a field of a valid context.
    unsafe {
        [
            read_volatile(&sa.user_ip6[0]),
            read_volatile(&sa.user_ip6[1]),
            read_volatile(&sa.user_ip6[2]),
            read_volatile(&sa.user_ip6[3]),
        ]
    }
}

/// Writes `user_ip6` word by word (see [`load_ip6`]).
#[inline(always)]
fn store_ip6(sa: &mut bpf_sock_addr, addr: &Ipv6Be) {
    // SAFETY: writes of a writable field of a valid context.
    unsafe {
        write_volatile(&mut sa.user_ip6[0], addr[0]);
        write_volatile(&mut sa.user_ip6[1], addr[1]);
        write_volatile(&mut sa.user_ip6[2], addr[2]);
        write_volatile(&mut sa.user_ip6[3], addr[3]);
    }
}

#[inline(always)]
fn mapped(addr_be: u32) -> Ipv6Be {
    [
        V4_MAPPED_PREFIX[0],
        V4_MAPPED_PREFIX[1],
        V4_MAPPED_PREFIX[2],
        addr_be,
    ]
}

/// Whether the sock_addr hook running is sendmsg6 (not connect6).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Call6 {
    Connect,
    Sendmsg,
}

/// connect6 and sendmsg6: an IPv6 socket reaching a published port goes
/// to the container.
/// - At `::1` or one of the host's IPv6 addresses: the IPv6 publication
///   of that address or of `[::]` first, to the container's IPv6 address
///   (or, for a `[::1]` publication to a container without IPv6, its
///   IPv4-mapped one); else a wildcard IPv4 publication, at the
///   container's IPv4-mapped address, as Docker's proxy on `[::]` makes
///   those reachable. At an IPv4-mapped address: the IPv4 publication of
///   the address it maps.
/// - The kernel carries a socket connected to an IPv4-mapped address over
///   IPv4, but refuses that rewrite in sendmsg6 (ENOTSUPP): there an
///   IPv4-mapped target is left untranslated (its sends to the address the
///   application gave reach nothing, as before the hook).
#[inline(always)]
pub fn forward6(ctx: &SockAddrContext, call: Call6) -> i32 {
    let Some(proto) = host_socket(ctx) else {
        return ALLOW;
    };
    // SAFETY: as in `forward`.
    let sa = unsafe { &mut *ctx.sock_addr };
    let addr = load_ip6(sa);
    let port = sa.user_port as u16;
    let (to, to_port) = match v4_mapped(&addr) {
        Some(v4) => match nat::find_from_host(v4, port, proto) {
            Some(t) => (mapped(t.addr_be), t.port_be),
            None => return ALLOW,
        },
        None if is_loopback6(&addr) || nat::is_local6(&addr) => {
            match nat::find6_from_host(&addr, port, proto) {
                Some(t) => (t.addr_be, t.port_be),
                None => match nat::wildcard(port, proto) {
                    Some(t) => (mapped(t.addr_be), t.port_be),
                    None => return ALLOW,
                },
            }
        }
        None => return ALLOW,
    };
    if call == Call6::Sendmsg && v4_mapped(&to).is_some() {
        return ALLOW;
    }
    let key = SockRev6Key {
        // SAFETY: as in `forward`.
        cookie: unsafe { bpf_get_socket_cookie(ctx.as_ptr()) },
        addr: to,
        port_be: to_port,
        proto,
        _pad: [0; 5],
    };
    let asked = SockRev6Value {
        addr,
        port_be: port,
        _pad: 0,
    };
    // As in `forward`: an unconnected socket's entry is written once.
    // SAFETY: plain data copied out at once.
    let known = unsafe { NA_SOCKREV6_V1.get(&key) }.is_some_and(|v| *v == asked);
    // Without its reverse entry the peer would show as the container's
    // address: then leave the socket alone rather than half-translated.
    if !known && NA_SOCKREV6_V1.insert(&key, &asked, 0).is_err() {
        return ALLOW;
    }
    store_ip6(sa, &to);
    sa.user_port = u32::from(to_port);
    stats::count(Event::SockForward);
    ALLOW
}

/// recvmsg6 and getpeername6: the container's address (IPv6, or
/// IPv4-mapped) shows as the published one the socket asked for, whether
/// it asked through connect6 or sendmsg6 or, for an unconnected dual-stack UDP socket sending to an
/// IPv4-mapped address, through sendmsg4 (the kernel sends those over
/// IPv4, and runs the IPv4 hook).
#[inline(always)]
pub fn reverse6(ctx: &SockAddrContext) -> i32 {
    let Some(proto) = host_socket(ctx) else {
        return ALLOW;
    };
    // SAFETY: as in `forward`.
    let sa = unsafe { &mut *ctx.sock_addr };
    // SAFETY: as in `forward`.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let addr = load_ip6(sa);
    let port_be = sa.user_port as u16;
    let key = SockRev6Key {
        cookie,
        addr,
        port_be,
        proto,
        _pad: [0; 5],
    };
    // SAFETY: plain data copied out at once.
    if let Some(asked) = unsafe { NA_SOCKREV6_V1.get(&key) }.copied() {
        store_ip6(sa, &asked.addr);
        sa.user_port = u32::from(asked.port_be);
        stats::count(Event::SockReverse);
        return ALLOW;
    }
    let Some(v4) = v4_mapped(&addr) else {
        return ALLOW;
    };
    let key = SockRevKey {
        cookie,
        addr_be: v4,
        port_be,
        proto,
        _pad: 0,
    };
    // SAFETY: plain data copied out at once.
    if let Some(asked) = unsafe { NA_SOCKREV4_V1.get(&key) }.copied() {
        store_ip6(sa, &mapped(asked.addr_be));
        sa.user_port = u32::from(asked.port_be);
        stats::count(Event::SockReverse);
    }
    ALLOW
}
