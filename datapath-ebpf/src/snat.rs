// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Masquerade: containers' packets leaving a served interface get that
//! interface's address and a port from `SNAT_PORT_MIN..=SNAT_PORT_MAX` as
//! their source; replies get the container's address and port back.
//!
//! A flow is two LRU entries (see `SnatKey`). Every outgoing packet checks
//! that its reply entry still points back at it and refreshes both, so an
//! active flow never loses its way back, and an entry lost to LRU pressure
//! or taken over by a newer flow is replaced by a fresh port. A port is
//! handed to a new flow only if no live flow to the same remote endpoint
//! holds it, where "live" is the idle timeout for its protocol and state.

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST},
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns},
};
use datapath_common::{
    IPPROTO_TCP, PubKey, SNAT_DIR_OUT, SNAT_DIR_REPLY, SNAT_F_CLOSING, SNAT_PORT_MAX,
    SNAT_PORT_MIN, SNAT_TCP_CLOSING_TIMEOUT_NS, SNAT_TCP_TIMEOUT_NS, SNAT_UDP_TIMEOUT_NS, SnatKey,
    SnatValue,
};

use crate::{
    maps::{NA_PUB4_V1, NA_SNAT4_V1},
    parse::{Packet, TCP_FIN_RST},
};

/// Random ports tried for a new flow before giving up.
const ALLOC_TRIES: u32 = 32;
const PORT_COUNT: u32 = (SNAT_PORT_MAX - SNAT_PORT_MIN) as u32 + 1;

/// The source a container's outgoing packet must get, allocating a port for
/// a new flow. `None`: no port is free (the caller drops and counts).
#[inline(always)]
pub fn outbound(pkt: &Packet, masq_addr: u32) -> Option<SnatValue> {
    let now = now_ns();
    let closing = closing_flag(pkt);
    let out_key = SnatKey {
        src_addr_be: pkt.saddr,
        dst_addr_be: pkt.daddr,
        src_port_be: pkt.sport,
        dst_port_be: pkt.dport,
        proto: pkt.proto,
        dir: SNAT_DIR_OUT,
        _pad: [0; 2],
    };
    if let Some(out) = NA_SNAT4_V1.get_ptr_mut(&out_key) {
        // SAFETY: a valid map value pointer; fields written in place are
        // plain integers (a racing CPU at worst sees the older value).
        let out = unsafe { &mut *out };
        if out.addr_be == masq_addr && refresh_reply(pkt, out.addr_be, out.port_be, now, closing) {
            out.last_seen_ns = now;
            out.flags |= closing;
            return Some(*out);
        }
    }
    let value = allocate(pkt, masq_addr, now, closing)?;
    // A failed insert (memory pressure) is retried by the next packet.
    let _ = NA_SNAT4_V1.insert(&out_key, &value, u64::from(BPF_ANY));
    Some(value)
}

/// The container endpoint a reply is for, if it belongs to a masqueraded
/// flow; refreshes the reply entry.
#[inline(always)]
pub fn reply(pkt: &Packet) -> Option<SnatValue> {
    let key = reply_key(pkt.saddr, pkt.sport, pkt.daddr, pkt.dport, pkt.proto);
    let entry = NA_SNAT4_V1.get_ptr_mut(&key)?;
    // SAFETY: as in `outbound`.
    let entry = unsafe { &mut *entry };
    entry.last_seen_ns = now_ns();
    entry.flags |= closing_flag(pkt);
    Some(*entry)
}

/// The REPLY key of a flow from the remote `peer:peer_port` to the
/// masquerade `addr:port`.
#[inline(always)]
fn reply_key(peer: u32, peer_port: u16, addr: u32, port: u16, proto: u8) -> SnatKey {
    SnatKey {
        src_addr_be: peer,
        dst_addr_be: addr,
        src_port_be: peer_port,
        dst_port_be: port,
        proto,
        dir: SNAT_DIR_REPLY,
        _pad: [0; 2],
    }
}

/// Whether the flow's reply entry (masquerade `addr:port`) still leads
/// back to this packet's source; refreshes it if so.
#[inline(always)]
fn refresh_reply(pkt: &Packet, addr: u32, port: u16, now: u64, closing: u8) -> bool {
    let key = reply_key(pkt.daddr, pkt.dport, addr, port, pkt.proto);
    let Some(entry) = NA_SNAT4_V1.get_ptr_mut(&key) else {
        return false;
    };
    // SAFETY: as in `outbound`.
    let entry = unsafe { &mut *entry };
    if entry.addr_be != pkt.saddr || entry.port_be != pkt.sport {
        return false;
    }
    entry.last_seen_ns = now;
    entry.flags |= closing;
    true
}

/// Claims a port for a new flow: random tries, skipping ports published on
/// the masquerade address and ports a live flow to the same peer holds.
#[inline(always)]
fn allocate(pkt: &Packet, masq_addr: u32, now: u64, closing: u8) -> Option<SnatValue> {
    let back = SnatValue {
        addr_be: pkt.saddr,
        port_be: pkt.sport,
        flags: closing,
        _pad: 0,
        last_seen_ns: now,
    };
    for _ in 0..ALLOC_TRIES {
        // SAFETY: no preconditions.
        let port = SNAT_PORT_MIN as u32 + unsafe { bpf_get_prandom_u32() } % PORT_COUNT;
        let port_be = (port as u16).to_be();
        if published(masq_addr, port_be, pkt.proto) {
            continue;
        }
        let key = reply_key(pkt.daddr, pkt.dport, masq_addr, port_be, pkt.proto);
        let claimed = if NA_SNAT4_V1
            .insert(&key, &back, u64::from(BPF_NOEXIST))
            .is_ok()
        {
            true
        } else if let Some(held) = NA_SNAT4_V1.get_ptr_mut(&key) {
            // SAFETY: as in `outbound`.
            let held = unsafe { &mut *held };
            if expired(held, pkt.proto, now) {
                *held = back;
                true
            } else {
                false
            }
        } else {
            false
        };
        if claimed {
            return Some(SnatValue {
                addr_be: masq_addr,
                port_be,
                flags: closing,
                _pad: 0,
                last_seen_ns: now,
            });
        }
    }
    None
}

/// Whether `port` is published on `addr` or on every address, so replies
/// to it would be taken for a published flow.
#[inline(always)]
fn published(addr: u32, port_be: u16, proto: u8) -> bool {
    let mut key = PubKey {
        addr_be: addr,
        port_be,
        proto,
        _pad: 0,
    };
    // SAFETY: presence is all we read.
    if unsafe { NA_PUB4_V1.get(&key) }.is_some() {
        return true;
    }
    key.addr_be = 0;
    // SAFETY: as above.
    unsafe { NA_PUB4_V1.get(&key) }.is_some()
}

/// Whether a flow entry has been idle past its timeout.
#[inline(always)]
fn expired(entry: &SnatValue, proto: u8, now: u64) -> bool {
    let timeout = if proto != IPPROTO_TCP {
        SNAT_UDP_TIMEOUT_NS
    } else if entry.flags & SNAT_F_CLOSING != 0 {
        SNAT_TCP_CLOSING_TIMEOUT_NS
    } else {
        SNAT_TCP_TIMEOUT_NS
    };
    now.wrapping_sub(entry.last_seen_ns) > timeout
}

/// [`SNAT_F_CLOSING`] if the packet is a TCP FIN or RST.
#[inline(always)]
fn closing_flag(pkt: &Packet) -> u8 {
    if pkt.proto == IPPROTO_TCP && pkt.tcp_flags & TCP_FIN_RST != 0 {
        SNAT_F_CLOSING
    } else {
        0
    }
}

/// Monotonic nanoseconds.
#[inline(always)]
fn now_ns() -> u64 {
    // SAFETY: no preconditions.
    unsafe { bpf_ktime_get_ns() }
}
