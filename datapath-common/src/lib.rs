//! The ABI between netagent's eBPF datapath and its agent.
//!
//! Every type here is a map key or value. The invariants both sides rely on:
//! - `#[repr(C)]` with explicit `_pad` fields, zeroed by whoever builds the
//!   value. Uninitialised padding in a key makes hash lookups miss silently
//!   (the verifier lets root programs read uninitialised stack).
//! - No `bool`, `Option` or enum fields: any bit pattern must be valid.
//! - Addresses and ports are kept in network byte order, exactly as they sit
//!   in the packet, so the per-packet path never swaps bytes. The `*_be`
//!   suffix on a field says so; userspace converts with [`u32::from_be`] etc.
//!   (see the `user` helpers at the bottom).
//! - Sizes are asserted at compile time; a layout change must rename the map
//!   (the `_V1` suffix) so a new agent never reinterprets an old pinned map.
#![no_std]

use core::mem::size_of;

use bytemuck::{Pod, Zeroable};

/// IANA protocol numbers we translate.
pub const IPPROTO_TCP: u8 = 6;
/// See [`IPPROTO_TCP`].
pub const IPPROTO_UDP: u8 = 17;

/// What XDP leaves in the packet metadata (`data_meta`) of a packet it
/// translated, so TC ingress skips it without parsing or lookups. Native
/// order u32; any other value (or no metadata) means "not translated".
pub const XDP_TRANSLATED_MARK: u32 = 0x4e41_5844;

/// Capacity of the publication map and of the per-publication counter array.
pub const MAX_PUBLICATIONS: u32 = 65_536;
/// Capacity of the connection-tracking LRU map.
pub const MAX_FLOWS: u32 = 262_144;
/// Capacity of the local-address map (wildcard host IP matching).
pub const MAX_LOCAL_ADDRS: u32 = 4_096;

/// Map names, as the kernel and bpftool show them and as they are pinned.
/// At most 15 bytes: the kernel truncates longer names.
pub mod map_names {
    /// [`super::PubKey`] -> [`super::PubValue`].
    pub const PUBLICATIONS: &str = "NA_PUB4_V1";
    /// [`super::CtKey`] -> [`super::CtValue`] (LRU).
    pub const CONNTRACK: &str = "NA_CT4_V1";
    /// Local IPv4 address (network order u32) -> [`super::LocalAddr`].
    pub const LOCAL_ADDRS: &str = "NA_LOCAL4_V1";
    /// Per-CPU [`super::PubStats`] indexed by [`super::PubValue::stats_slot`].
    pub const PUB_STATS: &str = "NA_PUBSTAT_V1";
    /// Per-CPU `u64` indexed by [`super::Event`].
    pub const EVENTS: &str = "NA_EVENTS_V1";
}

/// Program names, as the kernel and bpftool show them (at most 15 bytes).
pub mod prog_names {
    /// DNAT of published ports at XDP, on the interfaces the agent serves.
    pub const XDP_INGRESS: &str = "na_xdp_ingress";
    /// DNAT at TC ingress for what XDP deferred (CHECKSUM_PARTIAL packets).
    pub const TC_INGRESS: &str = "na_tc_ingress";
    /// Reverse NAT of replies at TC egress, on the same interfaces.
    pub const TC_EGRESS: &str = "na_tc_egress";
}

/// Publication lookup key: the address and port a client connects to.
///
/// `addr_be == 0` is the wildcard: it matches any destination that is a local
/// address of the host (present in the local-address map), like Docker's
/// `--dst-type LOCAL`. An exact key always wins over the wildcard.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct PubKey {
    /// Host IPv4 address, network order; 0 = every local address.
    pub addr_be: u32,
    /// Host port, network order.
    pub port_be: u16,
    /// [`IPPROTO_TCP`] or [`IPPROTO_UDP`].
    pub proto: u8,
    pub _pad: u8,
}
const _: () = assert!(size_of::<PubKey>() == 8);

/// Where a publication forwards to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct PubValue {
    /// Container IPv4 address, network order.
    pub addr_be: u32,
    /// Container port, network order.
    pub port_be: u16,
    pub _pad: u16,
    /// Index into the per-publication counter array. Owned by the agent,
    /// unique among live publications, `< MAX_PUBLICATIONS`.
    pub stats_slot: u32,
}
const _: () = assert!(size_of::<PubValue>() == 12);

/// Connection-tracking key: a reply packet's tuple as the container sends it
/// (source = container, destination = client).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct CtKey {
    /// Container address (reply source), network order.
    pub src_addr_be: u32,
    /// Client address (reply destination), network order.
    pub dst_addr_be: u32,
    /// Container port, network order.
    pub src_port_be: u16,
    /// Client port, network order.
    pub dst_port_be: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<CtKey>() == 16);

/// What a reply's source is rewritten to: the address and port the client
/// originally connected to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct CtValue {
    /// Original destination address (a host address), network order.
    pub orig_addr_be: u32,
    /// Original destination port (the published host port), network order.
    pub orig_port_be: u16,
    pub _pad: u16,
    /// The publication's counter slot, for reply counters.
    pub stats_slot: u32,
}
const _: () = assert!(size_of::<CtValue>() == 12);

/// Value of the local-address map. Presence is what matters; the interface
/// index is kept for humans reading the map with bpftool.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct LocalAddr {
    pub ifindex: u32,
}
const _: () = assert!(size_of::<LocalAddr>() == 4);

/// Per-publication counters (per CPU; the agent sums them).
/// "fwd" is client -> container, "rev" is container -> client.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct PubStats {
    pub fwd_packets: u64,
    pub fwd_bytes: u64,
    pub rev_packets: u64,
    pub rev_bytes: u64,
}
const _: () = assert!(size_of::<PubStats>() == 32);

/// Datapath events, counted per CPU in the events array at index `Event as u32`.
///
/// Never renumber: the numbers are the map's ABI. Retire a value by renaming
/// it `UnusedN`, and add new ones before `Count`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// XDP translated a packet to a published port.
    XdpDnat = 0,
    /// XDP left a published-port packet to TC because its L4 checksum field
    /// held a CHECKSUM_PARTIAL pseudo-header seed (see the datapath's csum.rs).
    XdpDeferred = 1,
    /// TC ingress translated a packet to a published port.
    TcDnat = 2,
    /// TC egress translated a reply back to the published address.
    RevNat = 3,
    /// An IPv4 fragment was passed untouched (never translated).
    PassFragment = 4,
    /// A malformed or truncated IPv4/TCP/UDP header was passed untouched.
    PassMalformed = 5,
    /// A packet to a wildcard publication whose destination is not local.
    PassNotLocal = 6,
    /// A TC helper (store bytes / checksum replace) failed; packet dropped.
    DropRewriteFailed = 7,
    /// A packet to 127.0.0.0/8 arrived on a served interface; never translated.
    PassLoopbackDst = 8,
    /// Number of events: the size of the events array.
    Count = 9,
}

impl Event {
    /// Every event, in index order.
    pub const ALL: [Event; Event::Count as usize] = [
        Event::XdpDnat,
        Event::XdpDeferred,
        Event::TcDnat,
        Event::RevNat,
        Event::PassFragment,
        Event::PassMalformed,
        Event::PassNotLocal,
        Event::DropRewriteFailed,
        Event::PassLoopbackDst,
    ];

    /// Stable snake_case name, used by `netagent stats` and its JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Event::XdpDnat => "xdp_dnat",
            Event::XdpDeferred => "xdp_deferred_to_tc",
            Event::TcDnat => "tc_dnat",
            Event::RevNat => "reverse_nat",
            Event::PassFragment => "pass_fragment",
            Event::PassMalformed => "pass_malformed",
            Event::PassNotLocal => "pass_not_local",
            Event::DropRewriteFailed => "drop_rewrite_failed",
            Event::PassLoopbackDst => "pass_loopback_dst",
            Event::Count => "count",
        }
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: every type is #[repr(C)], has no implicit padding (bytemuck's
    // Pod derive rejects it at compile time) and accepts any bit pattern.
    unsafe impl aya::Pod for super::PubKey {}
    unsafe impl aya::Pod for super::PubValue {}
    unsafe impl aya::Pod for super::CtKey {}
    unsafe impl aya::Pod for super::CtValue {}
    unsafe impl aya::Pod for super::LocalAddr {}
    unsafe impl aya::Pod for super::PubStats {}
}
