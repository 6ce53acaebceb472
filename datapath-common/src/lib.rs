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
/// ICMP: echo requests and replies are masqueraded (identifier as port).
pub const IPPROTO_ICMP: u8 = 1;
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
/// Capacity of the endpoint maps (container interfaces and addresses).
pub const MAX_ENDPOINTS: u32 = 16_384;
/// Capacity of the masquerade (SNAT) LRU map: two entries per flow.
pub const MAX_SNAT_ENTRIES: u32 = 262_144;
/// Capacity of the masquerade-address map (one entry per served interface).
pub const MAX_MASQ_IFACES: u32 = 256;
/// Size of the events array. Larger than [`Event::Count`] so that adding an
/// event never changes the map's layout (and never forces a rename).
pub const EVENT_SLOTS: u32 = 64;

/// Source ports masquerade hands out, inclusive. Above Linux's default
/// ephemeral range (32768-60999), so a masqueraded flow never takes the
/// tuple of a connection the host itself opens.
pub const SNAT_PORT_MIN: u16 = 61_000;
/// See [`SNAT_PORT_MIN`].
pub const SNAT_PORT_MAX: u16 = 65_535;
/// Idle time after which a masqueraded UDP flow's port may be reused.
pub const SNAT_UDP_TIMEOUT_NS: u64 = 30_000_000_000;
/// Idle time after which a masqueraded TCP flow with no FIN/RST seen may be
/// reused (netfilter keeps established flows far longer; the LRU evicts
/// under pressure anyway).
pub const SNAT_TCP_TIMEOUT_NS: u64 = 7_200_000_000_000;
/// Idle time after a FIN or RST, covering the peers' TIME_WAIT.
pub const SNAT_TCP_CLOSING_TIMEOUT_NS: u64 = 120_000_000_000;

/// [`NetPolicy::flags`] bit: the network is `--internal` (no traffic leaves
/// its subnet).
pub const NET_F_INTERNAL: u32 = 1;
/// [`NetPolicy::flags`] bit: inter-container communication is off
/// (`--icc=false`): endpoints of the network cannot reach each other.
pub const NET_F_NO_ICC: u32 = 2;

/// [`SnatKey::dir`]: the container's packet, before translation.
pub const SNAT_DIR_OUT: u8 = 0;
/// [`SnatKey::dir`]: the reply's tuple as it arrives (to the host address).
pub const SNAT_DIR_REPLY: u8 = 1;
/// [`SnatValue::flags`] bit: a FIN or RST was seen; shorter idle timeout.
pub const SNAT_F_CLOSING: u8 = 1;

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
    /// Per-CPU `u64` indexed by [`super::Event`], [`super::EVENT_SLOTS`] long.
    pub const EVENTS: &str = "NA_EVENTS_V2";
    /// Host-side ifindex of a container interface -> [`super::EndpointIface`].
    pub const ENDPOINT_IFACES: &str = "NA_EPIF4_V1";
    /// Container IPv4 address (network order u32) -> [`super::EndpointAddr`].
    pub const ENDPOINT_ADDRS: &str = "NA_EPADDR4_V1";
    /// [`super::SnatKey`] -> [`super::SnatValue`] (LRU): masquerade state.
    pub const SNAT: &str = "NA_SNAT4_V1";
    /// Served ifindex -> [`super::MasqAddr`]: the source masquerade uses there.
    pub const MASQ_ADDRS: &str = "NA_MASQ4_V1";
}

/// Program names, as the kernel and bpftool show them (at most 15 bytes).
pub mod prog_names {
    /// DNAT of published ports at XDP, on the interfaces the agent serves.
    pub const XDP_INGRESS: &str = "na_xdp_ingress";
    /// DNAT at TC ingress for what XDP deferred (CHECKSUM_PARTIAL packets).
    pub const TC_INGRESS: &str = "na_tc_ingress";
    /// Reverse NAT of replies and masquerade at TC egress, on the same
    /// interfaces.
    pub const TC_EGRESS: &str = "na_tc_egress";
    /// Isolation policy at TC ingress of a container's host-side veth.
    pub const TC_FROM_CONTAINER: &str = "na_tc_from_ctr";
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

/// A network's identity and policy, as the datapath checks it. The value of
/// both endpoint maps: keyed by the host-side interface of a container
/// (where the container's packets come from) and by the container's address
/// (where they go to).
///
/// Two endpoints may talk when their `net_id`s are equal, unless the network
/// has [`NET_F_NO_ICC`]. A packet from an endpoint of a [`NET_F_INTERNAL`]
/// network may only go to `subnet_be/mask_be`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct NetPolicy {
    /// The network's number, unique on this host, never 0.
    pub net_id: u32,
    /// [`NET_F_INTERNAL`] | [`NET_F_NO_ICC`].
    pub flags: u32,
    /// The network's subnet address, network order.
    pub subnet_be: u32,
    /// The network's netmask, network order.
    pub mask_be: u32,
}
const _: () = assert!(size_of::<NetPolicy>() == 16);

/// Value of the endpoint-interface map (keyed by a container's host-side
/// ifindex): where the container's packets come from.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct EndpointIface {
    pub net: NetPolicy,
    /// The network's bridge: the L3 device the container's routed packets
    /// enter the host through (the FIB lookup's input interface).
    pub bridge_ifindex: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<EndpointIface>() == 24);

/// Value of the endpoint-address map (keyed by a container address): where
/// packets to the container go, so the datapath can hand them straight to
/// the container's interface instead of the host's forwarding path.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct EndpointAddr {
    pub net: NetPolicy,
    /// The container's host-side veth (a port of the network's bridge).
    pub host_ifindex: u32,
    /// The container interface's MAC address.
    pub mac: [u8; 6],
    /// The bridge's MAC address (the container's gateway), used as the
    /// source of frames the datapath delivers.
    pub gw_mac: [u8; 6],
}
const _: () = assert!(size_of::<EndpointAddr>() == 32);

/// Masquerade state key: a packet's tuple as seen, plus which side it is.
/// A flow has two entries: [`SNAT_DIR_OUT`] keyed by the container's
/// original tuple, and [`SNAT_DIR_REPLY`] keyed by the reply's tuple (source
/// = the remote peer, destination = the masquerade address and port).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct SnatKey {
    pub src_addr_be: u32,
    pub dst_addr_be: u32,
    pub src_port_be: u16,
    pub dst_port_be: u16,
    pub proto: u8,
    /// [`SNAT_DIR_OUT`] or [`SNAT_DIR_REPLY`].
    pub dir: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(size_of::<SnatKey>() == 16);

/// Masquerade state value: for an OUT entry the new source (masquerade
/// address and port), for a REPLY entry the new destination (the
/// container's address and port).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct SnatValue {
    pub addr_be: u32,
    pub port_be: u16,
    /// [`SNAT_F_CLOSING`].
    pub flags: u8,
    pub _pad: u8,
    /// `bpf_ktime_get_ns` of the flow's last packet in this entry's
    /// direction (OUT packets refresh both entries).
    pub last_seen_ns: u64,
}
const _: () = assert!(size_of::<SnatValue>() == 16);

/// The address masquerade gives a container's packets leaving through a
/// served interface: that interface's primary IPv4 address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct MasqAddr {
    pub addr_be: u32,
}
const _: () = assert!(size_of::<MasqAddr>() == 4);

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
    /// Dropped: a container's packet to an endpoint of a network it is not on.
    DropIsolation = 9,
    /// Dropped: container to container inside a network with icc off.
    DropIcc = 10,
    /// Dropped: a packet leaving the subnet of an internal network.
    DropInternal = 11,
    /// A container's packet was masqueraded (SNAT) on its way out.
    SnatOut = 12,
    /// A reply to a masqueraded flow was translated back to the container.
    SnatReply = 13,
    /// Dropped: no masquerade port was free for a new flow.
    DropSnatNoPort = 14,
    /// A container's packet left a served interface with no IPv4 address to
    /// masquerade to; passed untranslated.
    PassNoMasqAddr = 15,
    /// A packet was handed straight to a container's interface (bypassing
    /// the host's forwarding path and its firewall).
    RedirectToEndpoint = 16,
    /// A container's packet was routed by FIB lookup and redirected to its
    /// egress interface.
    RedirectRouted = 17,
    /// Number of events (at most [`EVENT_SLOTS`]).
    Count = 18,
}
const _: () = assert!((Event::Count as u32) <= EVENT_SLOTS);

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
        Event::DropIsolation,
        Event::DropIcc,
        Event::DropInternal,
        Event::SnatOut,
        Event::SnatReply,
        Event::DropSnatNoPort,
        Event::PassNoMasqAddr,
        Event::RedirectToEndpoint,
        Event::RedirectRouted,
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
            Event::DropIsolation => "drop_isolation",
            Event::DropIcc => "drop_icc",
            Event::DropInternal => "drop_internal",
            Event::SnatOut => "masquerade",
            Event::SnatReply => "masquerade_reply",
            Event::DropSnatNoPort => "drop_masquerade_no_port",
            Event::PassNoMasqAddr => "pass_no_masquerade_addr",
            Event::RedirectToEndpoint => "redirect_to_endpoint",
            Event::RedirectRouted => "redirect_routed",
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
    unsafe impl aya::Pod for super::NetPolicy {}
    unsafe impl aya::Pod for super::EndpointIface {}
    unsafe impl aya::Pod for super::EndpointAddr {}
    unsafe impl aya::Pod for super::SnatKey {}
    unsafe impl aya::Pod for super::SnatValue {}
    unsafe impl aya::Pod for super::MasqAddr {}
}
