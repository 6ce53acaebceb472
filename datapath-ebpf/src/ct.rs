// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Conntrack of published flows: what reverse NAT needs, and who may
//! create it.
//!
//! The forward direction (client -> container) is translated from the
//! publication map on every packet, so unpublishing or moving a port takes
//! effect for established flows too. Only the reply direction is tracked,
//! keyed by the reply tuple (container -> client), in three LRU maps so
//! that no flood evicts what it should not:
//! - UDP flows (`NA_CTUDP4_V1`): any client datagram opens or refreshes one.
//! - TCP flows that only sent a SYN (`NA_CTSYN4_V1`): a SYN opens one. The
//!   container's SYN-ACK records its sequence number there.
//! - Established TCP flows (`NA_CTTCP4_V1`): a client ACK that acknowledges
//!   the recorded SYN-ACK moves the flow here. A spoofed source never sees
//!   the SYN-ACK, so it cannot; a SYN flood churns only the SYN map.
//!
//! A TCP packet that is neither a SYN nor part of a tracked flow is still
//! translated (the stateless forward path), but opens nothing: the
//! container's answer then matches no flow and is never masqueraded.

use aya_ebpf::bindings::BPF_ANY;
use datapath_common::{CT_F_ISN, CtKey, CtValue, Event, IPPROTO_TCP, IPPROTO_UDP, PubValue};

use crate::{
    hdr::{TCP_ACK, TCP_SYN},
    maps::{NA_CTSYN4_V1, NA_CTTCP4_V1, NA_CTUDP4_V1},
    parse::Packet,
    stats,
};

/// How far past the container's ISN a client's first ACK may acknowledge
/// (data the container sent before it) and still complete the handshake.
/// A blind guess succeeds with probability 2^16 / 2^32.
const ACK_WINDOW: u32 = 1 << 16;

/// The conntrack functions of one address family, over its key, value,
/// publication value and packet types and its three maps (the IPv4 ones
/// at the top of this module, the IPv6 ones in [`v6`]): one source for
/// both, so the handshake rule cannot drift apart.
macro_rules! conntrack {
    ($addr:ty, $key:ident, $value:ident, $pubv:ident, $packet:ty, $tcp:ident, $syn:ident, $udp:ident) => {
        /// The reply-tuple key of a flow: container `src:sport` to client.
        #[inline(always)]
        pub fn key(src: $addr, sport: u16, dst: $addr, dport: u16, proto: u8) -> $key {
            $key {
                src_addr_be: src,
                dst_addr_be: dst,
                src_port_be: sport,
                dst_port_be: dport,
                proto,
                _pad: [0; 3],
            }
        }

        /// Records a client's packet to a publication, once DNAT chose `to`:
        /// replies from `to` to the packet's source must look like they come from
        /// the packet's original destination.
        #[inline(always)]
        pub fn track_forward(pkt: &$packet, to: &$pubv) {
            let key = key(to.addr_be, to.port_be, pkt.saddr, pkt.sport, pkt.proto);
            let value = $value {
                orig_addr_be: pkt.daddr,
                orig_port_be: pkt.dport,
                flags: 0,
                _pad: 0,
                stats_slot: to.stats_slot,
                isn: 0,
            };
            match pkt.proto {
                IPPROTO_UDP => {
                    // SAFETY: compared by value at once (the lookup refreshes the LRU).
                    let current = unsafe { $udp.get(&key) };
                    if current.is_some_and(|c| same_target(c, &value)) {
                        return;
                    }
                    // A failed insert (memory pressure) loses reverse NAT for this
                    // flow's replies; the next datagram retries.
                    let _ = $udp.insert(&key, &value, u64::from(BPF_ANY));
                }
                IPPROTO_TCP => track_tcp(pkt, &key, &value),
                _ => {}
            }
        }

        #[inline(always)]
        fn same_target(a: &$value, b: &$value) -> bool {
            a.orig_addr_be == b.orig_addr_be
                && a.orig_port_be == b.orig_port_be
                && a.stats_slot == b.stats_slot
        }

        #[inline(always)]
        fn track_tcp(pkt: &$packet, key: &$key, value: &$value) {
            if let Some(e) = $tcp.get_ptr_mut(key) {
                // SAFETY: a valid map value; plain integer fields written in place
                // (a racing CPU at worst sees the older value).
                let e = unsafe { &mut *e };
                if !same_target(e, value) {
                    e.orig_addr_be = value.orig_addr_be;
                    e.orig_port_be = value.orig_port_be;
                    e.stats_slot = value.stats_slot;
                }
                return;
            }
            if pkt.tcp_has(TCP_SYN) && !pkt.tcp_has(TCP_ACK) {
                // SAFETY: compared by value at once.
                let current = unsafe { $syn.get(key) };
                // A retransmitted SYN keeps the ISN already recorded.
                if current.is_some_and(|c| same_target(c, value)) {
                    return;
                }
                let _ = $syn.insert(key, value, u64::from(BPF_ANY));
                return;
            }
            if !pkt.tcp_has(TCP_ACK) || pkt.tcp_has(TCP_SYN) {
                return;
            }
            // SAFETY: copied out at once.
            let Some(embryo) = (unsafe { $syn.get(key) }).copied() else {
                return;
            };
            if embryo.flags & CT_F_ISN == 0
                || pkt.tcp_ack.wrapping_sub(embryo.isn.wrapping_add(1)) >= ACK_WINDOW
            {
                return;
            }
            let established = $value {
                orig_addr_be: value.orig_addr_be,
                orig_port_be: value.orig_port_be,
                stats_slot: value.stats_slot,
                ..embryo
            };
            if $tcp.insert(key, &established, u64::from(BPF_ANY)).is_ok() {
                let _ = $syn.remove(key);
                stats::count(Event::CtEstablished);
            }
        }

        /// The reverse-NAT entry for a reply packet (container -> client), if its
        /// flow is tracked. A SYN-ACK records the container's sequence number for
        /// the handshake check.
        #[inline(always)]
        pub fn lookup_reply(pkt: &$packet) -> Option<$value> {
            let key = key(pkt.saddr, pkt.sport, pkt.daddr, pkt.dport, pkt.proto);
            match pkt.proto {
                // SAFETY: copied out at once.
                IPPROTO_UDP => unsafe { $udp.get(&key) }.copied(),
                IPPROTO_TCP => {
                    // SAFETY: copied out at once.
                    if let Some(v) = unsafe { $tcp.get(&key) } {
                        return Some(*v);
                    }
                    let e = $syn.get_ptr_mut(&key)?;
                    // SAFETY: as in `track_tcp`.
                    let e = unsafe { &mut *e };
                    if pkt.tcp_has(TCP_SYN | TCP_ACK) {
                        e.isn = pkt.tcp_seq;
                        e.flags |= CT_F_ISN;
                    }
                    Some(*e)
                }
                _ => None,
            }
        }

        /// The entry of a flow by its reply tuple, in whichever map holds it
        /// (for ICMP errors, which must belong to a tracked flow).
        #[inline(always)]
        pub fn find(key: &$key) -> Option<$value> {
            // SAFETY: copied out at once.
            unsafe {
                match key.proto {
                    IPPROTO_UDP => $udp.get(key).copied(),
                    IPPROTO_TCP => match $tcp.get(key) {
                        Some(v) => Some(*v),
                        None => $syn.get(key).copied(),
                    },
                    _ => None,
                }
            }
        }
    };
}

conntrack!(
    u32,
    CtKey,
    CtValue,
    PubValue,
    Packet,
    NA_CTTCP4_V1,
    NA_CTSYN4_V1,
    NA_CTUDP4_V1
);

/// IPv6: the same functions over [`CtKey6`], [`CtValue6`] and the IPv6
/// conntrack maps.
pub mod v6 {
    use aya_ebpf::bindings::BPF_ANY;
    use datapath_common::{
        CT_F_ISN, CtKey6, CtValue6, Event, IPPROTO_TCP, IPPROTO_UDP, Ipv6Be, PubValue6,
    };

    use super::ACK_WINDOW;
    use crate::{
        hdr::{TCP_ACK, TCP_SYN},
        maps::{NA_CTSYN6_V1, NA_CTTCP6_V1, NA_CTUDP6_V1},
        parse6::Packet6,
        stats,
    };

    conntrack!(
        Ipv6Be,
        CtKey6,
        CtValue6,
        PubValue6,
        Packet6,
        NA_CTTCP6_V1,
        NA_CTSYN6_V1,
        NA_CTUDP6_V1
    );
}
