// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Masquerade: containers' packets leaving a served interface get that
//! interface's address and a port from the masquerade pool as their
//! source; replies get the container's address and port back.
//!
//! A flow is two LRU entries (see `SnatKey`): OUT, keyed by the container's
//! tuple, and REPLY, keyed by the reply's tuple, which holds the flow's
//! state (last packet, FIN/RST seen, answered). Every outgoing packet
//! checks that its REPLY entry still points back at it and refreshes it.
//!
//! Who may take a port, and for how long:
//! - Only a packet that can open a flow does (a TCP SYN, a UDP datagram,
//!   an echo request); anything else without a flow is refused.
//! - A port is free for a destination when no live flow to that
//!   destination holds it. Live depends on state, as in netfilter: a TCP
//!   flow never answered 30 s, answered 24 h, after a FIN 2 min, after a
//!   RST 10 s; UDP 30 s unanswered, 2 min answered; ICMP 30 s. Expired
//!   REPLY entries translate nothing.
//! - Ports are probed linearly from a random start through the pool (up
//!   to two configured ranges, kept out of the host's ephemeral range),
//!   skipping ports published on the masquerade address and ports a host
//!   socket holds for that peer (bound or connected).
//! - Each container may have at most its share of unanswered flows to one
//!   destination per window (`DatapathConfig::masq_share`), so one that
//!   floods a silent peer cannot take the whole pool from the others.
//!
//! Containers of `routed` networks are not translated: they get an
//! identity REPLY entry (their own address and port) so that replies, and
//! nothing else, come back in by direct routing.
//!
//! IPv6 (NAT66, [`v6`]) is the same code over the IPv6 key, value, share
//! key, packet and maps (the `masquerade!` macro, as `ct.rs` does for
//! conntrack), so the rules above cannot drift apart between the families.
//! Its pool and share are IPv4's; ICMPv6 echo is translated like ICMP echo.

use core::ptr::NonNull;

use aya_ebpf::{
    EbpfContext as _,
    bindings::{__sk_buff, BPF_ANY, BPF_F_CURRENT_NETNS, BPF_NOEXIST, bpf_sock_tuple},
    helpers::{
        bpf_get_prandom_u32, bpf_ktime_get_ns,
        generated::{bpf_sk_lookup_udp, bpf_sk_release, bpf_skc_lookup_tcp},
    },
    programs::TcContext,
};
use datapath_common::{
    DEFAULT_MASQ_PORTS, IPPROTO_TCP, IPPROTO_UDP, PortRange, SNAT_DIR_OUT, SNAT_DIR_REPLY,
    SNAT_F_CLOSING, SNAT_F_IDENTITY, SNAT_F_REPLIED, SNAT_F_RST, SNAT_ICMP_TIMEOUT_NS,
    SNAT_SHARE_WINDOW_NS, SNAT_TCP_CLOSING_TIMEOUT_NS, SNAT_TCP_ESTABLISHED_TIMEOUT_NS,
    SNAT_TCP_RST_TIMEOUT_NS, SNAT_TCP_SYN_SENT_TIMEOUT_NS, SNAT_UDP_REPLIED_TIMEOUT_NS,
    SNAT_UDP_UNREPLIED_TIMEOUT_NS, ShareKey, ShareValue, SnatKey, SnatValue,
};

use crate::{
    hdr::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
    maps::{NA_CFG4_V1, NA_SHARE4_V1, NA_SNAT4_V1},
    nat,
    parse::Packet,
};

/// Ports probed for a new flow before giving up.
const PROBES: u32 = 64;

/// Why a container's packet gets no masquerade source.
pub enum Refused {
    /// It cannot open a flow and belongs to none.
    NoFlow,
    /// Its container holds its share of unanswered flows to the destination.
    Share,
    /// No port of the pool is free for the destination.
    NoPort,
}

/// What `open` did (a BPF function returns a scalar).
const OPENED: u8 = 0;
const OVER_SHARE: u8 = 1;
const NO_PORT: u8 = 2;

/// The masquerade port pool and share, from the agent's config (one pool
/// for both families: a port is per destination, and destinations of the
/// two families never meet).
struct Pool {
    first: PortRange,
    first_len: u32,
    second: PortRange,
    total: u32,
    share: u32,
}

impl Pool {
    #[inline(always)]
    fn load() -> Self {
        let cfg = NA_CFG4_V1.get(0).copied().unwrap_or_default();
        let [mut first, mut second] = cfg.masq_ports;
        if first.is_empty() && second.is_empty() {
            [first, second] = DEFAULT_MASQ_PORTS;
        }
        let first_len = first.len();
        let total = first_len + second.len();
        let share = if cfg.masq_share != 0 {
            cfg.masq_share
        } else if total >= 8 {
            total / 8
        } else {
            1
        };
        Self {
            first,
            first_len,
            second,
            total,
            share,
        }
    }

    /// The port at `index` of the pool (`index < total`).
    #[inline(always)]
    fn port(&self, index: u32) -> u16 {
        if index < self.first_len {
            self.first.lo + index as u16
        } else {
            self.second.lo + (index - self.first_len) as u16
        }
    }
}

/// The masquerade functions of one address family, over its address,
/// flow key, flow value, share key and packet types, its flow and share
/// maps, its "published on this address" check and its host-socket
/// lookup (the IPv4 ones at the top of this module, the IPv6 ones in
/// [`v6`]). `$steps` is the inlining of `outbound`'s two steps: IPv6's
/// keys are large enough that each needs a frame of its own, while
/// IPv4's caller is large enough that one more frame would not fit (the
/// verifier's 512 bytes are per call chain).
macro_rules! masquerade {
    (
        #[$steps:meta]
        $addr:ty, $key:ident, $value:ident, $share_key:ident, $packet:ty,
        $snat:ident, $share:ident, $published:path, $host_socket:path
    ) => {
        /// The source a container's outgoing packet must get, into `out`:
        /// its flow's, or a new flow's if the packet may open one. Two
        /// steps, each inlined or a call of its own (`$steps`).
        #[inline(always)]
        pub fn outbound(
            ctx: &TcContext,
            pkt: &$packet,
            masq_addr: &$addr,
            out: &mut $value,
        ) -> Result<(), Refused> {
            if existing(pkt, masq_addr, out) {
                return Ok(());
            }
            if !opens_flow(pkt) {
                return Err(Refused::NoFlow);
            }
            match open(ctx_ptr(ctx), pkt, masq_addr, out) {
                OPENED => Ok(()),
                OVER_SHARE => Err(Refused::Share),
                _ => Err(Refused::NoPort),
            }
        }

        /// The packet's live flow, into `out` (refreshed); false if none.
        #[$steps]
        fn existing(pkt: &$packet, masq_addr: &$addr, out: &mut $value) -> bool {
            let now = now_ns();
            let state = state_bits(pkt.proto, pkt.tcp_flags);
            let Some(entry) = $snat.get_ptr_mut(&out_key(pkt)) else {
                return false;
            };
            // SAFETY: a valid map value pointer; fields written in place are
            // plain integers (a racing CPU at worst sees the older value).
            let entry = unsafe { &mut *entry };
            if entry.addr_be != *masq_addr
                || !refresh_reply(pkt, entry.addr_be, entry.port_be, now, state)
            {
                return false;
            }
            entry.last_seen_ns = now;
            *out = *entry;
            true
        }

        /// A new flow for a packet that may open one, into `out`, if its
        /// container's share allows and a port is free: [`OPENED`],
        /// [`OVER_SHARE`] or [`NO_PORT`].
        #[$steps]
        fn open(skb: NonNull<__sk_buff>, pkt: &$packet, masq_addr: &$addr, out: &mut $value) -> u8 {
            let now = now_ns();
            let share = $share_key {
                ctr_addr_be: pkt.saddr,
                peer_addr_be: pkt.daddr,
                peer_port_be: pkt.dport,
                proto: pkt.proto,
                _pad: 0,
            };
            if !share_allows(&share, Pool::load().share, now) {
                return OVER_SHARE;
            }
            let state = state_bits(pkt.proto, pkt.tcp_flags);
            if !allocate(skb, pkt, masq_addr, state, out) {
                return NO_PORT;
            }
            share_take(&share, now);
            // A failed insert (memory pressure) is retried by the next packet.
            let _ = $snat.insert(&out_key(pkt), out, u64::from(BPF_ANY));
            OPENED
        }

        /// The container endpoint a reply is for, if it belongs to a live
        /// masqueraded (or identity) flow; refreshes the flow and marks it
        /// answered, which takes it off its container's share.
        #[inline(always)]
        pub fn reply(pkt: &$packet) -> Option<$value> {
            let key = reply_key(pkt.saddr, pkt.sport, pkt.daddr, pkt.dport, pkt.proto);
            reply_entry(&key, state_bits(pkt.proto, pkt.tcp_flags))
        }

        /// [`reply`] by key. `state`: flag bits the packet sets.
        #[inline(always)]
        fn reply_entry(key: &$key, state: u8) -> Option<$value> {
            let entry = $snat.get_ptr_mut(key)?;
            // SAFETY: as in `outbound`.
            let entry = unsafe { &mut *entry };
            let now = now_ns();
            if expired_at(entry.flags, entry.last_seen_ns, key.proto, now) {
                return None;
            }
            entry.last_seen_ns = now;
            entry.flags |= state;
            if entry.flags & SNAT_F_REPLIED == 0 {
                entry.flags |= SNAT_F_REPLIED;
                if entry.flags & SNAT_F_IDENTITY == 0 {
                    share_release(&$share_key {
                        ctr_addr_be: entry.addr_be,
                        peer_addr_be: key.src_addr_be,
                        peer_port_be: key.src_port_be,
                        proto: key.proto,
                        _pad: 0,
                    });
                }
            }
            Some(*entry)
        }

        /// A live flow's REPLY entry, unchanged: for ICMP errors, which belong
        /// to a flow (their quoted packet names it) without answering it.
        #[inline(always)]
        pub fn peek_reply(key: &$key) -> Option<$value> {
            // SAFETY: copied out at once.
            let entry = unsafe { $snat.get(key) }.copied()?;
            (!expired_at(entry.flags, entry.last_seen_ns, key.proto, now_ns())).then_some(entry)
        }

        /// The OUT entry of a flow by the container's tuple: for ICMP errors a
        /// container sends about a reply it got.
        #[inline(always)]
        pub fn out_entry(key: &$key) -> Option<$value> {
            // SAFETY: copied out at once.
            unsafe { $snat.get(key) }.copied()
        }

        /// The OUT key of a container's packet.
        #[inline(always)]
        fn out_key(pkt: &$packet) -> $key {
            flow_key(
                pkt.saddr,
                pkt.sport,
                pkt.daddr,
                pkt.dport,
                pkt.proto,
                SNAT_DIR_OUT,
            )
        }

        /// A key of either direction.
        #[inline(always)]
        pub fn flow_key(
            src: $addr,
            sport: u16,
            dst: $addr,
            dport: u16,
            proto: u8,
            dir: u8,
        ) -> $key {
            $key {
                src_addr_be: src,
                dst_addr_be: dst,
                src_port_be: sport,
                dst_port_be: dport,
                proto,
                dir,
                _pad: [0; 2],
            }
        }

        /// The REPLY key of a flow from the remote `peer:peer_port` to the
        /// masquerade (or, for identity entries, the container's) `addr:port`.
        #[inline(always)]
        pub fn reply_key(peer: $addr, peer_port: u16, addr: $addr, port: u16, proto: u8) -> $key {
            flow_key(peer, peer_port, addr, port, proto, SNAT_DIR_REPLY)
        }

        /// Whether the flow's reply entry (masquerade `addr:port`) still leads
        /// back to this packet's source; refreshes it if so.
        #[inline(always)]
        fn refresh_reply(pkt: &$packet, addr: $addr, port: u16, now: u64, state: u8) -> bool {
            let key = reply_key(pkt.daddr, pkt.dport, addr, port, pkt.proto);
            let Some(entry) = $snat.get_ptr_mut(&key) else {
                return false;
            };
            // SAFETY: as in `outbound`.
            let entry = unsafe { &mut *entry };
            if entry.addr_be != pkt.saddr || entry.port_be != pkt.sport {
                return false;
            }
            entry.last_seen_ns = now;
            entry.flags |= state;
            true
        }

        /// Whether a packet may open a masquerade flow: a TCP SYN, a UDP
        /// datagram, an echo request.
        #[inline(always)]
        fn opens_flow(pkt: &$packet) -> bool {
            match pkt.proto {
                IPPROTO_TCP => pkt.tcp_has(TCP_SYN) && !pkt.tcp_has(TCP_ACK),
                IPPROTO_UDP => true,
                _ => pkt.is_echo_request(),
            }
        }

        /// Claims a port for a new flow, into `out`: linear probing from a
        /// random start through the pool. A BPF-to-BPF call, its keys and
        /// socket tuple in a frame of their own (at most five arguments; the
        /// context by value, see endpoint.rs).
        #[inline(never)]
        fn allocate(
            skb: NonNull<__sk_buff>,
            pkt: &$packet,
            masq_addr: &$addr,
            state: u8,
            out: &mut $value,
        ) -> bool {
            let ctx = &TcContext::new(skb);
            let masq_addr = *masq_addr;
            let now = now_ns();
            let pool = Pool::load();
            if pool.total == 0 {
                return false;
            }
            let back = $value {
                addr_be: pkt.saddr,
                port_be: pkt.sport,
                flags: state,
                last_seen_ns: now,
                ..Default::default()
            };
            // SAFETY: no preconditions.
            let start = unsafe { bpf_get_prandom_u32() } % pool.total;
            for i in 0..PROBES {
                if i >= pool.total {
                    break;
                }
                let mut index = start + i;
                if index >= pool.total {
                    index -= pool.total;
                }
                let port_be = pool.port(index).to_be();
                if $published(&masq_addr, port_be, pkt.proto)
                    || $host_socket(ctx, pkt, &masq_addr, port_be)
                {
                    continue;
                }
                let key = reply_key(pkt.daddr, pkt.dport, masq_addr, port_be, pkt.proto);
                let claimed = if $snat.insert(&key, &back, u64::from(BPF_NOEXIST)).is_ok() {
                    true
                } else if let Some(held) = $snat.get_ptr_mut(&key) {
                    // SAFETY: as in `outbound`.
                    let held = unsafe { &mut *held };
                    if expired_at(held.flags, held.last_seen_ns, pkt.proto, now) {
                        *held = back;
                        true
                    } else {
                        false
                    }
                } else {
                    false
                };
                if claimed {
                    *out = $value {
                        addr_be: masq_addr,
                        port_be,
                        last_seen_ns: now,
                        ..Default::default()
                    };
                    return true;
                }
            }
            false
        }

        /// Whether the container may open one more unanswered flow to the
        /// destination in the current window.
        #[inline(always)]
        fn share_allows(key: &$share_key, share: u32, now: u64) -> bool {
            // SAFETY: copied out at once.
            match unsafe { $share.get(key) } {
                Some(v) => {
                    age(now, v.window_start_ns) > SNAT_SHARE_WINDOW_NS as i64
                        || v.unanswered < share
                }
                None => true,
            }
        }

        /// Counts a new unanswered flow against the container's share (a new
        /// window starts when the last one is over).
        #[inline(always)]
        fn share_take(key: &$share_key, now: u64) {
            if let Some(v) = $share.get_ptr_mut(key) {
                // SAFETY: as in `outbound`.
                let v = unsafe { &mut *v };
                // Signed, as in `expired_at`: a window another CPU just opened.
                if age(now, v.window_start_ns) > SNAT_SHARE_WINDOW_NS as i64 {
                    v.window_start_ns = now;
                    v.unanswered = 1;
                } else {
                    v.unanswered += 1;
                }
                return;
            }
            let v = ShareValue {
                window_start_ns: now,
                unanswered: 1,
                _pad: 0,
            };
            let _ = $share.insert(key, &v, u64::from(BPF_ANY));
        }

        /// An answered flow no longer counts against its container's share.
        #[inline(always)]
        fn share_release(key: &$share_key) {
            if let Some(v) = $share.get_ptr_mut(key) {
                // SAFETY: as in `outbound`.
                let v = unsafe { &mut *v };
                if v.unanswered > 0 {
                    v.unanswered -= 1;
                }
            }
        }
    };
}

masquerade!(
    #[inline(always)]
    u32,
    SnatKey,
    SnatValue,
    ShareKey,
    Packet,
    NA_SNAT4_V1,
    NA_SHARE4_V1,
    published4,
    host_socket
);

/// IPv6 masquerade (NAT66): the same functions over [`SnatKey6`],
/// [`SnatValue6`], [`ShareKey6`] and the IPv6 maps.
///
/// [`SnatKey6`]: datapath_common::SnatKey6
/// [`SnatValue6`]: datapath_common::SnatValue6
/// [`ShareKey6`]: datapath_common::ShareKey6
pub mod v6 {
    use core::ptr::NonNull;

    use aya_ebpf::{
        bindings::{__sk_buff, BPF_ANY, BPF_NOEXIST, bpf_sock_tuple},
        helpers::bpf_get_prandom_u32,
        programs::TcContext,
    };
    use datapath_common::{
        IPPROTO_TCP, IPPROTO_UDP, Ipv6Be, SNAT_DIR_OUT, SNAT_DIR_REPLY, SNAT_F_IDENTITY,
        SNAT_F_REPLIED, SNAT_SHARE_WINDOW_NS, ShareKey6, ShareValue, SnatKey6, SnatValue6,
    };

    use super::{
        NO_PORT, OPENED, OVER_SHARE, PROBES, Pool, Refused, age, ctx_ptr, expired_at, now_ns,
        state_bits,
    };
    use crate::{
        hdr::{TCP_ACK, TCP_SYN},
        maps::{NA_SHARE6_V1, NA_SNAT6_V1},
        nat,
        parse6::Packet6,
    };

    masquerade!(
        #[inline(never)]
        Ipv6Be,
        SnatKey6,
        SnatValue6,
        ShareKey6,
        Packet6,
        NA_SNAT6_V1,
        NA_SHARE6_V1,
        nat::published6,
        host_socket6
    );

    /// Whether a socket of the host holds `[masq_addr]:port_be` for the
    /// packet's destination (as [`super::host_socket`]).
    #[inline(always)]
    fn host_socket6(ctx: &TcContext, pkt: &Packet6, masq_addr: &Ipv6Be, port_be: u16) -> bool {
        if pkt.proto != IPPROTO_TCP && pkt.proto != IPPROTO_UDP {
            return false;
        }
        // SAFETY: an all-zero tuple is valid; the IPv6 variant is filled.
        let mut tuple: bpf_sock_tuple = unsafe { core::mem::zeroed() };
        // SAFETY: writing the IPv6 variant of a zeroed union.
        unsafe {
            let t = &mut tuple.__bindgen_anon_1.ipv6;
            t.saddr = pkt.daddr;
            t.daddr = *masq_addr;
            t.sport = pkt.dport;
            t.dport = port_be;
        }
        super::socket_held(
            ctx,
            pkt.proto,
            &mut tuple,
            core::mem::size_of::<u32>() as u32 * 9,
        )
    }
}

/// The context pointer, for the BPF-to-BPF calls of the macro.
#[inline(always)]
fn ctx_ptr(ctx: &TcContext) -> NonNull<__sk_buff> {
    // SAFETY: the context pointer the kernel gave this program.
    unsafe { NonNull::new_unchecked(ctx.as_ptr().cast()) }
}

/// `nat::published` by reference, as the macro calls it for both families.
#[inline(always)]
fn published4(addr: &u32, port_be: u16, proto: u8) -> bool {
    nat::published(*addr, port_be, proto)
}

/// A `routed` network's container: records (or refreshes) the identity
/// entry that lets replies to its flow in. Packets that cannot open a
/// flow refresh one if it exists and record nothing otherwise.
#[inline(always)]
pub fn identity(pkt: &Packet) {
    let now = now_ns();
    let state = state_flags(pkt);
    let key = reply_key(pkt.daddr, pkt.dport, pkt.saddr, pkt.sport, pkt.proto);
    if let Some(e) = NA_SNAT4_V1.get_ptr_mut(&key) {
        // SAFETY: as in `outbound`.
        let e = unsafe { &mut *e };
        e.last_seen_ns = now;
        e.flags |= state;
        return;
    }
    if !opens_flow(pkt) {
        return;
    }
    let value = SnatValue {
        addr_be: pkt.saddr,
        port_be: pkt.sport,
        flags: SNAT_F_IDENTITY | state,
        _pad: 0,
        last_seen_ns: now,
    };
    let _ = NA_SNAT4_V1.insert(&key, &value, u64::from(BPF_ANY));
}

/// Whether a socket of the host holds `masq_addr:port_be` for the
/// packet's destination: connected to it, or bound (listening) there.
/// Such a port would steal the host's own replies.
#[inline(always)]
fn host_socket(ctx: &TcContext, pkt: &Packet, masq_addr: &u32, port_be: u16) -> bool {
    if pkt.proto != IPPROTO_TCP && pkt.proto != IPPROTO_UDP {
        return false;
    }
    // SAFETY: an all-zero tuple is valid; the IPv4 variant is filled.
    let mut tuple: bpf_sock_tuple = unsafe { core::mem::zeroed() };
    // SAFETY: writing the IPv4 variant of a zeroed union.
    unsafe {
        let t = &mut tuple.__bindgen_anon_1.ipv4;
        t.saddr = pkt.daddr;
        t.daddr = *masq_addr;
        t.sport = pkt.dport;
        t.dport = port_be;
    }
    socket_held(
        ctx,
        pkt.proto,
        &mut tuple,
        core::mem::size_of::<u32>() as u32 * 3,
    )
}

/// Whether a socket of the host's namespace matches `tuple` (its first
/// `size` bytes, one family's variant): a TCP one connected or listening,
/// a UDP one bound or connected. A found socket is released at once.
#[inline(always)]
fn socket_held(ctx: &TcContext, proto: u8, tuple: &mut bpf_sock_tuple, size: u32) -> bool {
    let netns = BPF_F_CURRENT_NETNS as u64;
    // SAFETY: `tuple` is valid for `size` bytes; a returned socket is
    // released at once.
    unsafe {
        let sk = if proto == IPPROTO_TCP {
            bpf_skc_lookup_tcp(ctx.as_ptr(), tuple, size, netns, 0)
        } else {
            bpf_sk_lookup_udp(ctx.as_ptr(), tuple, size, netns, 0)
        };
        if sk.is_null() {
            return false;
        }
        bpf_sk_release(sk.cast());
    }
    true
}

/// Whether a flow entry (its flags and last-seen time, either family)
/// has been idle past the timeout of its state.
#[inline(always)]
fn expired_at(flags: u8, last_seen_ns: u64, proto: u8, now: u64) -> bool {
    let replied = flags & SNAT_F_REPLIED != 0;
    let timeout = match proto {
        IPPROTO_TCP => {
            if flags & SNAT_F_RST != 0 {
                SNAT_TCP_RST_TIMEOUT_NS
            } else if flags & SNAT_F_CLOSING != 0 {
                SNAT_TCP_CLOSING_TIMEOUT_NS
            } else if replied {
                SNAT_TCP_ESTABLISHED_TIMEOUT_NS
            } else {
                SNAT_TCP_SYN_SENT_TIMEOUT_NS
            }
        }
        IPPROTO_UDP if replied => SNAT_UDP_REPLIED_TIMEOUT_NS,
        IPPROTO_UDP => SNAT_UDP_UNREPLIED_TIMEOUT_NS,
        _ => SNAT_ICMP_TIMEOUT_NS,
    };
    age(now, last_seen_ns) > timeout as i64
}

/// How long ago `then` was, signed: another CPU may have stamped an entry
/// with a clock read after ours (a reply and the container's next packet
/// processed at once), so `then` can be a little ahead of `now`: a
/// negative age, a live entry. (Unsigned, that became a huge age, and a
/// live flow's reply went to the host's stack untranslated, which
/// answered it with a reset.)
#[inline(always)]
pub fn age(now: u64, then: u64) -> i64 {
    now.wrapping_sub(then) as i64
}

/// The state bits a packet sets on its flow: FIN, RST.
#[inline(always)]
pub fn state_flags(pkt: &Packet) -> u8 {
    state_bits(pkt.proto, pkt.tcp_flags)
}

/// [`state_flags`] by protocol and TCP flags (either family).
#[inline(always)]
fn state_bits(proto: u8, tcp_flags: u8) -> u8 {
    if proto != IPPROTO_TCP {
        return 0;
    }
    let mut flags = 0;
    if tcp_flags & TCP_FIN != 0 {
        flags |= SNAT_F_CLOSING;
    }
    if tcp_flags & TCP_RST != 0 {
        flags |= SNAT_F_RST;
    }
    flags
}

/// Monotonic nanoseconds.
#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: no preconditions.
    unsafe { bpf_ktime_get_ns() }
}
