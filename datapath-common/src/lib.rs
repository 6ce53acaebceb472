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
#![cfg_attr(not(test), no_std)]

use core::mem::size_of;

use bytemuck::{Pod, Zeroable};

/// IANA protocol numbers we translate.
pub const IPPROTO_TCP: u8 = 6;
/// ICMP: echo requests and replies are masqueraded (identifier as port).
pub const IPPROTO_ICMP: u8 = 1;
/// See [`IPPROTO_TCP`].
pub const IPPROTO_UDP: u8 = 17;
/// ICMPv6 (neighbour discovery, MLD, errors, echo).
pub const IPPROTO_ICMPV6: u8 = 58;

/// What XDP leaves in the packet metadata (`data_meta`) of a packet it
/// translated, so TC ingress skips it without parsing or lookups. Native
/// order u32; any other value (or no metadata) means "not translated".
pub const XDP_TRANSLATED_MARK: u32 = 0x4e41_5844;

/// Capacity of the publication map, and the most counter slots there are.
pub const MAX_PUBLICATIONS: u32 = 65_536;
/// Kernel memory the per-publication counters may take, all CPUs
/// together: the counter array is per CPU, so at [`MAX_PUBLICATIONS`]
/// slots it would take 2 MiB per CPU (256 MiB on a 128-CPU host).
pub const STATS_BUDGET_BYTES: u64 = 32 << 20;
/// The fewest counter slots a host gets, however many CPUs it has.
pub const MIN_STATS_SLOTS: u32 = 1_024;

/// How many counter slots (entries of the per-CPU counter array) a host
/// with `cpus` possible CPUs gets: as many as [`STATS_BUDGET_BYTES`]
/// holds, between [`MIN_STATS_SLOTS`] and [`MAX_PUBLICATIONS`]. 65,536 up
/// to 16 CPUs, 16,384 at 64, 8,192 at 128. Publications beyond the slots
/// are translated all the same, without counters of their own.
pub const fn stats_slots(cpus: u32) -> u32 {
    let per_slot =
        core::mem::size_of::<PubStats>() as u64 * if cpus == 0 { 1 } else { cpus as u64 };
    let fit = STATS_BUDGET_BYTES / per_slot;
    if fit >= MAX_PUBLICATIONS as u64 {
        MAX_PUBLICATIONS
    } else if fit <= MIN_STATS_SLOTS as u64 {
        MIN_STATS_SLOTS
    } else {
        // Whole powers of two keep the figure readable in bpftool.
        1 << (63 - fit.leading_zeros())
    }
}
/// The memory classes by which the flow tables (the conntrack, masquerade,
/// fragment and share maps: preallocated LRU maps, whose memory is taken
/// at load whether used or not) are sized, as nf_conntrack sizes its own
/// table: their full sizes on hosts with more than 4 GiB, a quarter above
/// 1 GiB, a sixteenth below. Returned as the right shift applied to each
/// table's full entry count; full sizes take about 80 MiB.
pub const fn flow_table_shift(ram_bytes: u64) -> u32 {
    const GIB: u64 = 1 << 30;
    if ram_bytes > 4 * GIB {
        0
    } else if ram_bytes > GIB {
        2
    } else {
        4
    }
}

/// The entries a flow table of `full` entries (one of the `MAX_*` below)
/// gets on a host with `ram_bytes` of memory; see [`flow_table_shift`].
pub const fn flow_table_entries(full: u32, ram_bytes: u64) -> u32 {
    full >> flow_table_shift(ram_bytes)
}

/// Capacity of the conntrack map of published TCP flows whose handshake
/// completed (the client acknowledged the container's SYN-ACK).
pub const MAX_FLOWS: u32 = 262_144;
/// Capacity of the conntrack map of published TCP flows that have only
/// sent a SYN so far. Kept apart so a SYN flood (spoofed or not) churns
/// this map only and never evicts an established flow.
pub const MAX_EMBRYONIC_FLOWS: u32 = 65_536;
/// Capacity of the conntrack map of published UDP flows (apart from TCP,
/// so a UDP flood never evicts a TCP flow).
pub const MAX_UDP_FLOWS: u32 = 131_072;
/// Capacity of the fragment map: datagrams whose first fragment was
/// translated, awaiting their later fragments.
pub const MAX_FRAGMENTS: u32 = 16_384;
/// Capacity of the masquerade share map: (container, destination) pairs
/// with unanswered flows in the current window.
pub const MAX_SHARES: u32 = 65_536;
/// Capacity of the open-port map (container ports reachable by direct
/// routing on `routed` networks).
pub const MAX_OPEN_PORTS: u32 = 65_536;
/// Capacity of the resolver-port map: container namespaces with an
/// embedded resolver.
pub const MAX_DNS_NETNS: u32 = 65_536;
/// Capacity of the link-hole map (legacy links' exposed ports across an
/// icc=false network, two entries per port).
pub const MAX_LINK_HOLES: u32 = 16_384;
/// Capacity of the local-address map (wildcard host IP matching).
pub const MAX_LOCAL_ADDRS: u32 = 4_096;
/// Capacity of the endpoint maps (container interfaces and addresses).
pub const MAX_ENDPOINTS: u32 = 16_384;
/// Capacity of the masquerade (SNAT) LRU map: two entries per flow.
pub const MAX_SNAT_ENTRIES: u32 = 262_144;
/// Capacity of the masquerade-address map (one entry per served interface).
pub const MAX_MASQ_IFACES: u32 = 256;
/// Capacity of the socket reverse-translation map (an LRU flow table,
/// sized by memory like the others): (socket, container address) pairs of
/// host sockets that connected or sent to a published port, for the
/// answers' and `getpeername`'s source.
pub const MAX_SOCK_FLOWS: u32 = 65_536;
/// Capacities of the IPv6 conntrack maps: a quarter of IPv4's. Their
/// entries are 1.7 times larger, and IPv6 carries only the published
/// flows of dual-stack containers; at IPv4's sizes the three would add
/// about 55 MiB of preallocated kernel memory to every host.
pub const MAX_FLOWS6: u32 = MAX_FLOWS / 4;
pub const MAX_EMBRYONIC_FLOWS6: u32 = MAX_EMBRYONIC_FLOWS / 4;
pub const MAX_UDP_FLOWS6: u32 = MAX_UDP_FLOWS / 4;
/// Capacities of the IPv6 masquerade maps: a quarter of IPv4's, for the
/// reason of [`MAX_FLOWS6`] (entries twice as large, dual-stack
/// containers only).
pub const MAX_SNAT_ENTRIES6: u32 = MAX_SNAT_ENTRIES / 4;
pub const MAX_SHARES6: u32 = MAX_SHARES / 4;
pub const MAX_FRAGMENTS6: u32 = MAX_FRAGMENTS / 4;
pub const MAX_HAIRPIN_FLOWS6: u32 = MAX_HAIRPIN_FLOWS / 4;
/// Capacity of the hairpin flow map (an LRU flow table, sized by memory
/// like the others): flows of containers to a published port of the host.
pub const MAX_HAIRPIN_FLOWS: u32 = 65_536;
/// Size of the events array. Larger than [`Event::Count`] so that adding an
/// event never changes the map's layout (and never forces a rename).
pub const EVENT_SLOTS: u32 = 64;

/// The masquerade port ranges the datapath uses when the agent has not
/// configured any ([`DatapathConfig`] all zero): 1024-65535 minus Linux's
/// default ephemeral range (32768-60999), so a masqueraded flow never
/// takes a tuple the host's own connections may pick.
pub const DEFAULT_MASQ_PORTS: [PortRange; 2] = [
    PortRange {
        lo: 1024,
        hi: 32_767,
    },
    PortRange {
        lo: 61_000,
        hi: 65_535,
    },
];

const SECOND_NS: u64 = 1_000_000_000;
/// Masquerade idle timeouts by flow state, netfilter's model with shorter
/// lives for what was never answered: a TCP flow that only sent SYNs.
pub const SNAT_TCP_SYN_SENT_TIMEOUT_NS: u64 = 30 * SECOND_NS;
/// A TCP flow the peer answered (established).
pub const SNAT_TCP_ESTABLISHED_TIMEOUT_NS: u64 = 24 * 3600 * SECOND_NS;
/// A TCP flow after a FIN (either side): covers TIME_WAIT.
pub const SNAT_TCP_CLOSING_TIMEOUT_NS: u64 = 120 * SECOND_NS;
/// A TCP flow after a RST.
pub const SNAT_TCP_RST_TIMEOUT_NS: u64 = 10 * SECOND_NS;
/// A UDP flow the peer never answered.
pub const SNAT_UDP_UNREPLIED_TIMEOUT_NS: u64 = 30 * SECOND_NS;
/// A UDP flow the peer answered (netfilter's "stream" timeout).
pub const SNAT_UDP_REPLIED_TIMEOUT_NS: u64 = 120 * SECOND_NS;
/// An ICMP echo flow.
pub const SNAT_ICMP_TIMEOUT_NS: u64 = 30 * SECOND_NS;
/// The window over which a container's unanswered flows to one
/// destination are counted against its share (the unanswered timeout: a
/// flow counted in a window has expired by the end of the next one).
pub const SNAT_SHARE_WINDOW_NS: u64 = SNAT_UDP_UNREPLIED_TIMEOUT_NS;
/// A later fragment whose first fragment was translated longer ago than
/// this is not translated (Linux's `ipfrag_time`).
pub const FRAG_TIMEOUT_NS: u64 = 30 * SECOND_NS;

/// [`NetPolicy::flags`] bit: the network is `--internal` (no traffic leaves
/// its subnet).
pub const NET_F_INTERNAL: u32 = 1;
/// [`NetPolicy::flags`] bit: inter-container communication is off
/// (`--icc=false`): endpoints of the network cannot reach each other.
pub const NET_F_NO_ICC: u32 = 2;
/// [`NetPolicy::flags`] bit: the network's gateway mode is `routed`: no
/// masquerade, and its containers' published ports (the open-port map)
/// and replies to their own flows are reachable by direct routing. In the
/// default `nat` mode nothing from outside reaches a container address
/// unless it was translated (published port, masquerade reply).
pub const NET_F_ROUTED: u32 = 4;

/// [`SnatKey::dir`]: the container's packet, before translation.
pub const SNAT_DIR_OUT: u8 = 0;
/// [`SnatKey::dir`]: the reply's tuple as it arrives (to the host address).
pub const SNAT_DIR_REPLY: u8 = 1;
/// [`SnatValue::flags`] bit: a FIN was seen; closing timeout.
pub const SNAT_F_CLOSING: u8 = 1;
/// [`SnatValue::flags`] bit: the peer answered (a REPLY entry translated a
/// packet); the flow is no longer counted against its container's share.
pub const SNAT_F_REPLIED: u8 = 2;
/// [`SnatValue::flags`] bit: a RST was seen; shortest timeout.
pub const SNAT_F_RST: u8 = 4;
/// [`SnatValue::flags`] bit: an identity entry of a `routed` network's
/// container: nothing is translated, the entry only lets replies in.
pub const SNAT_F_IDENTITY: u8 = 8;

/// [`CtValue::flags`] bit: the container's SYN-ACK was seen and its
/// sequence number is in [`CtValue::isn`].
pub const CT_F_ISN: u8 = 1;
/// [`CtValue::flags`] bit, in the hairpin map only: the container reached
/// a port published to itself, so its source was replaced by the address
/// it connected to; a reply's destination is the reply's own source.
pub const HAIRPIN_F_SELF: u8 = 2;

/// [`FragValue::rewrite`]: later fragments get `addr_be` as source.
pub const FRAG_REWRITE_SRC: u8 = 0;
/// [`FragValue::rewrite`]: later fragments get `addr_be` as destination.
pub const FRAG_REWRITE_DST: u8 = 1;
/// [`FragValue::rewrite`]: later fragments pass unchanged (the first went
/// through a legacy link's hole between two containers).
pub const FRAG_PASS: u8 = 2;
/// [`FragValue::stats_slot`] of a fragment that belongs to no publication.
pub const NO_STATS_SLOT: u32 = u32::MAX;

/// Map names, as the kernel and bpftool show them and as they are pinned.
/// At most 15 bytes: the kernel truncates longer names.
pub mod map_names {
    /// [`super::PubKey`] -> [`super::PubValue`].
    pub const PUBLICATIONS: &str = "NA_PUB4_V1";
    /// [`super::CtKey`] -> [`super::CtValue`] (LRU): published TCP flows
    /// whose handshake completed.
    pub const CT_TCP: &str = "NA_CTTCP4_V1";
    /// [`super::CtKey`] -> [`super::CtValue`] (LRU): published TCP flows
    /// that only sent a SYN so far.
    pub const CT_SYN: &str = "NA_CTSYN4_V1";
    /// [`super::CtKey`] -> [`super::CtValue`] (LRU): published UDP flows.
    pub const CT_UDP: &str = "NA_CTUDP4_V1";
    /// Local IPv4 address (network order u32) -> [`super::LocalAddr`].
    pub const LOCAL_ADDRS: &str = "NA_LOCAL4_V1";
    /// Per-CPU [`super::PubStats`] indexed by [`super::PubValue::stats_slot`].
    pub const PUB_STATS: &str = "NA_PUBSTAT_V2";
    /// Per-CPU `u64` indexed by [`super::Event`], [`super::EVENT_SLOTS`] long.
    pub const EVENTS: &str = "NA_EVENTS_V2";
    /// Host-side ifindex of a container interface -> [`super::EndpointIface`].
    pub const ENDPOINT_IFACES: &str = "NA_EPIF4_V1";
    /// Container IPv4 address (network order u32) -> [`super::EndpointAddr`].
    pub const ENDPOINT_ADDRS: &str = "NA_EPADDR4_V1";
    /// Host-side ifindex of a dual-stack container interface ->
    /// [`super::EndpointIface6`].
    pub const ENDPOINT_IFACES6: &str = "NA_EPIF6_V1";
    /// Container IPv6 address ([`super::Ipv6Be`], its link-local address
    /// included) -> [`super::EndpointAddr`].
    pub const ENDPOINT_ADDRS6: &str = "NA_EPADDR6_V1";
    /// [`super::SnatKey`] -> [`super::SnatValue`] (LRU): masquerade state.
    pub const SNAT: &str = "NA_SNAT4_V1";
    /// Served ifindex -> [`super::MasqAddr`]: the source masquerade uses there.
    pub const MASQ_ADDRS: &str = "NA_MASQ4_V1";
    /// [`super::FragKey`] -> [`super::FragValue`] (LRU): translated
    /// datagrams whose later fragments are still to come.
    pub const FRAGMENTS: &str = "NA_FRAG4_V1";
    /// [`super::ShareKey`] -> [`super::ShareValue`] (LRU): unanswered
    /// masquerade flows per (container, destination).
    pub const SHARES: &str = "NA_SHARE4_V1";
    /// [`super::OpenPort`] -> `u32` (unused): container ports reachable by
    /// direct routing (published ports of `routed` networks' containers).
    pub const OPEN_PORTS: &str = "NA_OPEN4_V1";
    /// [`super::LinkHole`] -> `u32` (unused): what legacy links open
    /// between two containers of an icc=false network.
    pub const LINK_HOLES: &str = "NA_LINK4_V1";
    /// Network namespace cookie (`u64`) -> the embedded resolver's port
    /// there (`u32` holding the port in network order).
    pub const DNS_PORTS: &str = "NA_DNSPORT_V1";
    /// One [`super::DatapathConfig`] at index 0.
    pub const CONFIG: &str = "NA_CFG4_V1";
    /// [`super::SockRevKey`] -> [`super::SockRevValue`] (LRU): what a host
    /// socket that the socket hooks translated asked for.
    pub const SOCK_REV: &str = "NA_SOCKREV4_V1";
    /// One [`super::SockConfig`] at index 0.
    pub const SOCK_CONFIG: &str = "NA_SOCKCFG_V1";
    /// [`super::PubKey6`] -> [`super::PubValue6`]: the IPv6 side of
    /// publications.
    pub const PUBLICATIONS6: &str = "NA_PUB6_V1";
    /// [`super::CtKey6`] -> [`super::CtValue6`] (LRU), as the IPv4
    /// conntrack maps: established TCP, TCP that sent a SYN, UDP.
    pub const CT_TCP6: &str = "NA_CTTCP6_V1";
    pub const CT_SYN6: &str = "NA_CTSYN6_V1";
    pub const CT_UDP6: &str = "NA_CTUDP6_V1";
    /// [`super::SockRev6Key`] -> [`super::SockRev6Value`] (LRU): what an
    /// IPv6 host socket that the socket hooks translated asked for.
    pub const SOCK_REV6: &str = "NA_SOCKREV6_V1";
    /// Local IPv6 address ([`super::Ipv6Be`]) -> [`super::LocalAddr`].
    pub const LOCAL_ADDRS6: &str = "NA_LOCAL6_V1";
    /// [`super::CtKey`] -> [`super::CtValue`] (LRU): containers' flows to
    /// a published port of the host (hairpin), keyed by the reply tuple.
    pub const HAIRPIN: &str = "NA_HAIRPIN4_V1";
    /// [`super::CtKey6`] -> [`super::CtValue6`] (LRU): containers' IPv6
    /// flows to a published port of the host, as `NA_HAIRPIN4_V1`.
    pub const HAIRPIN6: &str = "NA_HAIRPIN6_V1";
    /// IPv6 masquerade (NAT66), as the IPv4 maps: [`super::SnatKey6`] ->
    /// [`super::SnatValue6`] (LRU), [`super::ShareKey6`] ->
    /// [`super::ShareValue`] (LRU), served ifindex -> [`super::MasqAddr6`].
    pub const SNAT6: &str = "NA_SNAT6_V1";
    /// [`super::FragKey6`] -> [`super::FragValue6`] (LRU), as
    /// `NA_FRAG4_V1`.
    pub const FRAGMENTS6: &str = "NA_FRAG6_V1";
    pub const SHARES6: &str = "NA_SHARE6_V1";
    pub const MASQ_ADDRS6: &str = "NA_MASQ6_V1";
    /// Names of maps earlier versions pinned and this one no longer uses;
    /// the agent removes their pins at start.
    /// `NA_PUBSTAT_V1` had a fixed size; V2 is sized for the host's CPUs
    /// ([`super::stats_slots`]), so a pin of V1 could not be reused.
    pub const RETIRED: &[&str] = &["NA_CT4_V1", "NA_EVENTS_V1", "NA_PUBSTAT_V1"];
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
    /// The embedded resolver's port translation at TC egress of a
    /// container's loopback.
    pub const TC_DNS: &str = "na_tc_dns";
    /// Host sockets (cgroup hooks): connect(2) to a published port goes to
    /// the container.
    pub const CONNECT4: &str = "na_connect4";
    /// sendto(2)/sendmsg(2) of an unconnected UDP socket to a published port.
    pub const SENDMSG4: &str = "na_sendmsg4";
    /// recvfrom(2)/recvmsg(2): a container's answer shows the published
    /// address as its source.
    pub const RECVMSG4: &str = "na_recvmsg4";
    /// getpeername(2) shows the published address a socket connected to.
    pub const GETPEERNAME4: &str = "na_getpeername4";
    /// The same four for IPv6 sockets (a container without IPv6 is
    /// reached at its IPv4-mapped address). sendmsg6 translates to a
    /// container's IPv6 address only: the kernel refuses a sendmsg6 hook's
    /// IPv4-mapped rewrite (ENOTSUPP).
    pub const CONNECT6: &str = "na_connect6";
    pub const SENDMSG6: &str = "na_sendmsg6";
    pub const RECVMSG6: &str = "na_recvmsg6";
    pub const GETPEERNAME6: &str = "na_getpeername6";
    /// The socket hooks, in attach order.
    pub const SOCKET_HOOKS: [&str; 8] = [
        CONNECT4,
        SENDMSG4,
        RECVMSG4,
        GETPEERNAME4,
        CONNECT6,
        SENDMSG6,
        RECVMSG6,
        GETPEERNAME6,
    ];
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

/// IPv6 publication key: [`PubKey`] with an IPv6 host address (`::` is
/// the wildcard: every local IPv6 address). The agent writes the IPv6 side
/// of a wildcard publication whose container is on a dual-stack network,
/// as Docker publishes `-p 8080:80` on `0.0.0.0` and `[::]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct PubKey6 {
    pub addr_be: Ipv6Be,
    pub port_be: u16,
    pub proto: u8,
    pub _pad: u8,
}
const _: () = assert!(size_of::<PubKey6>() == 20);

/// Where an IPv6 publication forwards to: [`PubValue`] with the
/// container's IPv6 address (its counter slot is the publication's).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct PubValue6 {
    pub addr_be: Ipv6Be,
    pub port_be: u16,
    pub _pad: u16,
    pub stats_slot: u32,
}
const _: () = assert!(size_of::<PubValue6>() == 24);

/// IPv6 connection-tracking key: [`CtKey`] with IPv6 addresses.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct CtKey6 {
    pub src_addr_be: Ipv6Be,
    pub dst_addr_be: Ipv6Be,
    pub src_port_be: u16,
    pub dst_port_be: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<CtKey6>() == 40);

/// [`CtValue`] with an IPv6 original destination.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct CtValue6 {
    pub orig_addr_be: Ipv6Be,
    pub orig_port_be: u16,
    pub flags: u8,
    pub _pad: u8,
    pub stats_slot: u32,
    pub isn: u32,
}
const _: () = assert!(size_of::<CtValue6>() == 28);

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
    /// [`CT_F_ISN`].
    pub flags: u8,
    pub _pad: u8,
    /// The publication's counter slot, for reply counters.
    pub stats_slot: u32,
    /// The container's initial sequence number (host order), from its
    /// SYN-ACK: the client's ACK of it (`ack == isn + 1`) proves the client
    /// saw the SYN-ACK, so a spoofed source cannot complete the handshake.
    pub isn: u32,
}
const _: () = assert!(size_of::<CtValue>() == 16);

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

/// Value of the IPv6 endpoint-interface map (keyed by a container's
/// host-side ifindex): the IPv6 side of a dual-stack network. An interface
/// without an entry drops every IPv6 packet its container sends.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct EndpointIface6 {
    /// The network's IPv6 subnet address ([`ipv6_be`]).
    pub subnet: Ipv6Be,
    /// The network's IPv6 gateway (the bridge).
    pub gateway: Ipv6Be,
    pub prefix_len: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<EndpointIface6>() == 36);

/// An IPv6 address as the datapath keys it ([`Ipv6Be`]).
pub fn ipv6_be(ip: core::net::Ipv6Addr) -> Ipv6Be {
    let o = ip.octets();
    let word = |i: usize| u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]]);
    [word(0), word(1), word(2), word(3)]
}

/// The address an [`Ipv6Be`] holds.
pub fn ipv6_from_be(words: Ipv6Be) -> core::net::Ipv6Addr {
    let mut o = [0u8; 16];
    for (i, w) in words.iter().enumerate() {
        o[4 * i..4 * i + 4].copy_from_slice(&w.to_ne_bytes());
    }
    core::net::Ipv6Addr::from(o)
}

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

/// [`SnatKey`] with IPv6 addresses.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct SnatKey6 {
    pub src_addr_be: Ipv6Be,
    pub dst_addr_be: Ipv6Be,
    pub src_port_be: u16,
    pub dst_port_be: u16,
    pub proto: u8,
    /// [`SNAT_DIR_OUT`] or [`SNAT_DIR_REPLY`].
    pub dir: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(size_of::<SnatKey6>() == 40);

/// [`SnatValue`] with an IPv6 address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct SnatValue6 {
    pub addr_be: Ipv6Be,
    pub port_be: u16,
    /// [`SNAT_F_CLOSING`].
    pub flags: u8,
    pub _pad: u8,
    pub _pad2: u32,
    /// As [`SnatValue::last_seen_ns`].
    pub last_seen_ns: u64,
}
const _: () = assert!(size_of::<SnatValue6>() == 32);

/// [`ShareKey`] with IPv6 addresses.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct ShareKey6 {
    pub ctr_addr_be: Ipv6Be,
    pub peer_addr_be: Ipv6Be,
    pub peer_port_be: u16,
    pub proto: u8,
    pub _pad: u8,
}
const _: () = assert!(size_of::<ShareKey6>() == 36);

/// The IPv6 address masquerade gives a container's IPv6 packets leaving
/// through a served interface: a global address of that interface.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct MasqAddr6 {
    pub addr_be: Ipv6Be,
}
const _: () = assert!(size_of::<MasqAddr6>() == 16);

/// A container port reachable by direct routing (key of the open-port
/// map): a published port of a container on a `routed` network.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct OpenPort {
    /// Container address, network order.
    pub addr_be: u32,
    /// Container port, network order.
    pub port_be: u16,
    pub proto: u8,
    pub _pad: u8,
}
const _: () = assert!(size_of::<OpenPort>() == 8);

/// A hole a legacy link opens in an icc=false network (key of the
/// link-hole map), Docker's pair of rules per exposed port: the linking
/// container to the linked one's port ([`LINK_DPORT`]), and the linked
/// one's answers from that port ([`LINK_SPORT`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Pod, Zeroable)]
pub struct LinkHole {
    /// Sender's address, network order.
    pub from_be: u32,
    /// Receiver's address, network order.
    pub to_be: u32,
    /// The port, network order: the destination port with
    /// [`LINK_DPORT`], the source port with [`LINK_SPORT`].
    pub port_be: u16,
    pub proto: u8,
    pub dir: u8,
}
const _: () = assert!(size_of::<LinkHole>() == 12);
/// [`LinkHole::dir`]: the port is the packet's destination port.
pub const LINK_DPORT: u8 = 0;
/// [`LinkHole::dir`]: the port is the packet's source port.
pub const LINK_SPORT: u8 = 1;

/// Fragment tracking key: the original (untranslated) IPv4 identity of a
/// datagram, as its first fragment carried it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct FragKey {
    pub src_addr_be: u32,
    pub dst_addr_be: u32,
    /// The IPv4 identification field, network order.
    pub id_be: u16,
    pub proto: u8,
    pub _pad: u8,
}
const _: () = assert!(size_of::<FragKey>() == 12);

/// What the later fragments of a translated datagram get: the address the
/// first fragment was given (their ports are in the first fragment only).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct FragValue {
    pub addr_be: u32,
    /// The publication's counter slot, or [`NO_STATS_SLOT`].
    pub stats_slot: u32,
    /// [`FRAG_REWRITE_SRC`] or [`FRAG_REWRITE_DST`].
    pub rewrite: u8,
    pub _pad: [u8; 3],
    pub _pad2: u32,
    /// `bpf_ktime_get_ns` of the first fragment.
    pub first_seen_ns: u64,
}
const _: () = assert!(size_of::<FragValue>() == 24);

/// [`FragKey`] for IPv6: the identification is the fragment header's 32
/// bits.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct FragKey6 {
    pub src_addr_be: Ipv6Be,
    pub dst_addr_be: Ipv6Be,
    /// The fragment header's identification, network order.
    pub id_be: u32,
    pub proto: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<FragKey6>() == 40);

/// [`FragValue`] with an IPv6 address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct FragValue6 {
    pub addr_be: Ipv6Be,
    /// The publication's counter slot, or [`NO_STATS_SLOT`].
    pub stats_slot: u32,
    /// [`FRAG_REWRITE_SRC`] or [`FRAG_REWRITE_DST`].
    pub rewrite: u8,
    pub _pad: [u8; 3],
    /// `bpf_ktime_get_ns` of the first fragment.
    pub first_seen_ns: u64,
}
const _: () = assert!(size_of::<FragValue6>() == 32);

/// Masquerade share key: one container's flows to one destination (the
/// port pool masquerade allocates from is per destination).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct ShareKey {
    /// The container's address, network order.
    pub ctr_addr_be: u32,
    /// The destination address and port, network order.
    pub peer_addr_be: u32,
    pub peer_port_be: u16,
    pub proto: u8,
    pub _pad: u8,
}
const _: () = assert!(size_of::<ShareKey>() == 12);

/// Unanswered flows a container opened to one destination in the current
/// window (see [`SNAT_SHARE_WINDOW_NS`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct ShareValue {
    pub window_start_ns: u64,
    pub unanswered: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<ShareValue>() == 16);

/// An inclusive port range, host order; `lo > hi` (or both 0) is empty.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}
const _: () = assert!(size_of::<PortRange>() == 4);

impl PortRange {
    /// How many ports the range holds.
    pub const fn len(&self) -> u32 {
        if self.lo == 0 || self.lo > self.hi {
            0
        } else {
            (self.hi - self.lo) as u32 + 1
        }
    }

    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Settings the agent writes (index 0 of the config map). All zero means
/// the built-in defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct DatapathConfig {
    /// Masquerade source ports: up to two ranges, kept out of the host's
    /// ephemeral range. Both empty: [`DEFAULT_MASQ_PORTS`].
    pub masq_ports: [PortRange; 2],
    /// Unanswered flows one container may open to one destination per
    /// [`SNAT_SHARE_WINDOW_NS`] (0: an eighth of the ports), so one
    /// container cannot take the whole pool of a destination.
    pub masq_share: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<DatapathConfig>() == 16);

/// A host socket the socket hooks translated, and the container address
/// and port it was sent to: the key under which its answers (recvmsg) and
/// `getpeername` find what the application asked for.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct SockRevKey {
    /// `bpf_get_socket_cookie`: unique per socket for the host's uptime.
    pub cookie: u64,
    /// Container address, network order.
    pub addr_be: u32,
    /// Container port, network order.
    pub port_be: u16,
    pub proto: u8,
    pub _pad: u8,
}
const _: () = assert!(size_of::<SockRevKey>() == 16);

/// The published address and port a translated host socket asked for.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct SockRevValue {
    /// Published (host) address, network order, as the application gave it.
    pub addr_be: u32,
    /// Published (host) port, network order.
    pub port_be: u16,
    pub _pad: u16,
}
const _: () = assert!(size_of::<SockRevValue>() == 8);

/// An IPv6 address as `bpf_sock_addr::user_ip6` holds it: four 32-bit
/// words in network order (an IPv4 address `a` is `[0, 0, 0xffff_be, a]`
/// when mapped).
pub type Ipv6Be = [u32; 4];

/// Key of the IPv6 socket reverse map: a host socket and the container
/// address and port it was sent to, as the socket sees them (an IPv4
/// container's address IPv4-mapped).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct SockRev6Key {
    /// `bpf_get_socket_cookie`.
    pub cookie: u64,
    pub addr: Ipv6Be,
    /// Container port, network order.
    pub port_be: u16,
    pub proto: u8,
    pub _pad: [u8; 5],
}
const _: () = assert!(size_of::<SockRev6Key>() == 32);

/// The published address and port an IPv6 host socket asked for.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct SockRev6Value {
    pub addr: Ipv6Be,
    /// Published (host) port, network order.
    pub port_be: u16,
    pub _pad: u16,
}
const _: () = assert!(size_of::<SockRev6Value>() == 20);

/// Settings of the socket hooks (index 0 of their config map).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct SockConfig {
    /// The network namespace whose sockets are the host's (its
    /// `SO_NETNS_COOKIE`); 0 until the agent writes it, and then the hooks
    /// translate nothing. Sockets of other namespaces (containers, which
    /// sit in child cgroups of the same hierarchy) are never translated:
    /// 127.0.0.1 there is the container itself.
    pub host_netns_cookie: u64,
}
const _: () = assert!(size_of::<SockConfig>() == 8);

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
    /// Retired (was `pass_fragment`: fragments are translated now).
    Unused4 = 4,
    /// A malformed or truncated header that is not a container's was left to
    /// the stack (which drops it).
    PassMalformed = 5,
    /// A packet to a wildcard publication whose destination is not local.
    PassNotLocal = 6,
    /// A rewrite helper (store bytes / checksum replace) failed; packet dropped.
    DropRewriteFailed = 7,
    /// Retired (was `pass_loopback_dst`: such packets are dropped now,
    /// `drop_loopback_dst`).
    Unused8 = 8,
    /// Dropped: a container's packet to an endpoint of a network it is not on.
    DropIsolation = 9,
    /// Dropped: container to container (or to the network's broadcast and
    /// multicast addresses) inside a network with icc off.
    DropIcc = 10,
    /// Dropped: a packet leaving the subnet of an internal network.
    DropInternal = 11,
    /// A container's packet was masqueraded (SNAT) on its way out.
    SnatOut = 12,
    /// A reply to a masqueraded flow was translated back to the container.
    SnatReply = 13,
    /// Dropped: no masquerade port was free for a new flow.
    DropSnatNoPort = 14,
    /// Retired (was `pass_no_masquerade_addr`: such packets are dropped now,
    /// see [`Event::DropNoMasqAddr`]).
    Unused15 = 15,
    /// A packet was handed straight to a container's interface (bypassing
    /// the host's forwarding path and its firewall).
    RedirectToEndpoint = 16,
    /// A container's packet was routed by FIB lookup and redirected to its
    /// egress interface.
    RedirectRouted = 17,
    /// Dropped: a container sent with a source (IPv4, ARP sender or Ethernet
    /// address) that is not its own.
    DropSpoofed = 18,
    /// Dropped: a packet from a container interface the agent has no entry for.
    DropUnknownEndpoint = 19,
    /// Dropped: a container sent a frame that is neither ARP nor IPv4.
    DropCtrProtocol = 20,
    /// Dropped: a packet from outside to a container address that is not a
    /// published port, a reply, or allowed by a `routed` network.
    DropUnpublished = 21,
    /// Dropped: a container's packet leaving a served interface that cannot
    /// be masqueraded (another protocol, an ICMP error of no known flow,
    /// malformed headers), so it would have left with a private address.
    DropUntranslatable = 22,
    /// Dropped: a container's packet leaving a served interface that has no
    /// IPv4 address to masquerade to.
    DropNoMasqAddr = 23,
    /// Dropped: a container's packet that cannot open a masquerade flow (TCP
    /// without SYN, an echo reply) and belongs to none.
    DropSnatNoFlow = 24,
    /// Dropped: a container already holds its share of unanswered flows to
    /// that destination.
    DropSnatShare = 25,
    /// XDP could not tag a packet (no metadata room) and left it to TC.
    XdpNoMeta = 26,
    /// An ICMP error about a published or masqueraded flow was translated
    /// on its way to the container.
    IcmpErrorIn = 27,
    /// An ICMP error from a container about a published or masqueraded flow
    /// was translated on its way out.
    IcmpErrorOut = 28,
    /// A later fragment of a translated datagram was translated.
    FragTranslated = 29,
    /// Dropped: a later fragment from or to a container whose first fragment
    /// was not seen (or expired).
    DropFragUntracked = 30,
    /// A published TCP flow completed its handshake (the client acknowledged
    /// the container's SYN-ACK) and moved to the established map.
    CtEstablished = 31,
    /// A packet too big for its next interface was left to the stack, which
    /// answers with ICMP fragmentation needed.
    PassFragNeeded = 32,
    /// A packet reached a container of a `routed` network by direct routing.
    RoutedIn = 33,
    /// A host socket's connect or send to a published port was sent to the
    /// container (the socket hooks).
    SockForward = 34,
    /// A container's answer to a translated host socket (recvmsg) or a
    /// `getpeername` was shown with the published address.
    SockReverse = 35,
    /// Dropped: a packet to 127.0.0.0/8 that arrived on a served interface
    /// or came out of a container. No host accepts one from outside (a
    /// martian), and one that got through would reach services bound to
    /// loopback, a `127.0.0.1` publication included (Docker #45610).
    DropLoopbackDst = 36,
    /// A container's packet to a published port of the host (its own
    /// included) was translated and delivered to the published container.
    HairpinForward = 37,
    /// A reply of a hairpin flow was given the published address as its
    /// source and delivered to the container that asked.
    HairpinReply = 38,
    /// Dropped: a container's packet to a published port whose target is
    /// not a netagent container (its reply would bypass the datapath).
    DropHairpinForeign = 39,
    /// Dropped: a fragmented datagram from a container to a published
    /// port (hairpin flows are translated whole only).
    DropHairpinFragment = 40,
    /// Number of events (at most [`EVENT_SLOTS`]).
    Count = 41,
}
const _: () = assert!((Event::Count as u32) <= EVENT_SLOTS);

impl Event {
    /// Every event, in index order.
    pub const ALL: [Event; Event::Count as usize] = [
        Event::XdpDnat,
        Event::XdpDeferred,
        Event::TcDnat,
        Event::RevNat,
        Event::Unused4,
        Event::PassMalformed,
        Event::PassNotLocal,
        Event::DropRewriteFailed,
        Event::Unused8,
        Event::DropIsolation,
        Event::DropIcc,
        Event::DropInternal,
        Event::SnatOut,
        Event::SnatReply,
        Event::DropSnatNoPort,
        Event::Unused15,
        Event::RedirectToEndpoint,
        Event::RedirectRouted,
        Event::DropSpoofed,
        Event::DropUnknownEndpoint,
        Event::DropCtrProtocol,
        Event::DropUnpublished,
        Event::DropUntranslatable,
        Event::DropNoMasqAddr,
        Event::DropSnatNoFlow,
        Event::DropSnatShare,
        Event::XdpNoMeta,
        Event::IcmpErrorIn,
        Event::IcmpErrorOut,
        Event::FragTranslated,
        Event::DropFragUntracked,
        Event::CtEstablished,
        Event::PassFragNeeded,
        Event::RoutedIn,
        Event::SockForward,
        Event::SockReverse,
        Event::DropLoopbackDst,
        Event::HairpinForward,
        Event::HairpinReply,
        Event::DropHairpinForeign,
        Event::DropHairpinFragment,
    ];

    /// Stable snake_case name, used by `netagent stats` and its JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Event::XdpDnat => "xdp_dnat",
            Event::XdpDeferred => "xdp_deferred_to_tc",
            Event::TcDnat => "tc_dnat",
            Event::RevNat => "reverse_nat",
            Event::Unused4 => "unused_4",
            Event::PassMalformed => "pass_malformed",
            Event::PassNotLocal => "pass_not_local",
            Event::DropRewriteFailed => "drop_rewrite_failed",
            Event::Unused8 => "unused_8",
            Event::DropIsolation => "drop_isolation",
            Event::DropIcc => "drop_icc",
            Event::DropInternal => "drop_internal",
            Event::SnatOut => "masquerade",
            Event::SnatReply => "masquerade_reply",
            Event::DropSnatNoPort => "drop_masquerade_no_port",
            Event::Unused15 => "unused_15",
            Event::RedirectToEndpoint => "redirect_to_endpoint",
            Event::RedirectRouted => "redirect_routed",
            Event::DropSpoofed => "drop_spoofed",
            Event::DropUnknownEndpoint => "drop_unknown_endpoint",
            Event::DropCtrProtocol => "drop_ctr_protocol",
            Event::DropUnpublished => "drop_unpublished",
            Event::DropUntranslatable => "drop_untranslatable",
            Event::DropNoMasqAddr => "drop_no_masquerade_addr",
            Event::DropSnatNoFlow => "drop_masquerade_no_flow",
            Event::DropSnatShare => "drop_masquerade_share",
            Event::XdpNoMeta => "xdp_no_metadata",
            Event::IcmpErrorIn => "icmp_error_in",
            Event::IcmpErrorOut => "icmp_error_out",
            Event::FragTranslated => "fragment_translated",
            Event::DropFragUntracked => "drop_fragment_untracked",
            Event::CtEstablished => "conntrack_established",
            Event::PassFragNeeded => "pass_frag_needed",
            Event::RoutedIn => "routed_in",
            Event::SockForward => "socket_forward",
            Event::SockReverse => "socket_reverse",
            Event::DropLoopbackDst => "drop_loopback_dst",
            Event::HairpinForward => "hairpin_forward",
            Event::HairpinReply => "hairpin_reply",
            Event::DropHairpinForeign => "drop_hairpin_foreign",
            Event::DropHairpinFragment => "drop_hairpin_fragment",
            Event::Count => "count",
        }
    }

    /// Whether the number is retired (kept only so the others keep theirs).
    pub const fn is_retired(self) -> bool {
        matches!(self, Event::Unused4 | Event::Unused8 | Event::Unused15)
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
    unsafe impl aya::Pod for super::SockRev6Key {}
    unsafe impl aya::Pod for super::SockRev6Value {}
    unsafe impl aya::Pod for super::PubStats {}
    unsafe impl aya::Pod for super::NetPolicy {}
    unsafe impl aya::Pod for super::EndpointIface {}
    unsafe impl aya::Pod for super::EndpointIface6 {}
    unsafe impl aya::Pod for super::PubKey6 {}
    unsafe impl aya::Pod for super::PubValue6 {}
    unsafe impl aya::Pod for super::CtKey6 {}
    unsafe impl aya::Pod for super::CtValue6 {}
    unsafe impl aya::Pod for super::EndpointAddr {}
    unsafe impl aya::Pod for super::SnatKey {}
    unsafe impl aya::Pod for super::SnatValue {}
    unsafe impl aya::Pod for super::MasqAddr {}
    unsafe impl aya::Pod for super::SnatKey6 {}
    unsafe impl aya::Pod for super::SnatValue6 {}
    unsafe impl aya::Pod for super::ShareKey6 {}
    unsafe impl aya::Pod for super::MasqAddr6 {}
    unsafe impl aya::Pod for super::FragKey6 {}
    unsafe impl aya::Pod for super::FragValue6 {}
    unsafe impl aya::Pod for super::OpenPort {}
    unsafe impl aya::Pod for super::LinkHole {}
    unsafe impl aya::Pod for super::FragKey {}
    unsafe impl aya::Pod for super::FragValue {}
    unsafe impl aya::Pod for super::ShareKey {}
    unsafe impl aya::Pod for super::ShareValue {}
    unsafe impl aya::Pod for super::PortRange {}
    unsafe impl aya::Pod for super::DatapathConfig {}
    unsafe impl aya::Pod for super::SockRevKey {}
    unsafe impl aya::Pod for super::SockRevValue {}
    unsafe impl aya::Pod for super::SockConfig {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_tables_follow_nf_conntracks_memory_classes() {
        const GIB: u64 = 1 << 30;
        assert_eq!(flow_table_entries(MAX_FLOWS, 24 * GIB), MAX_FLOWS);
        assert_eq!(flow_table_entries(MAX_FLOWS, 4 * GIB + 1), MAX_FLOWS);
        assert_eq!(flow_table_entries(MAX_FLOWS, 4 * GIB), MAX_FLOWS / 4);
        assert_eq!(flow_table_entries(MAX_FLOWS, 2 * GIB), MAX_FLOWS / 4);
        assert_eq!(flow_table_entries(MAX_FLOWS, GIB), MAX_FLOWS / 16);
        assert_eq!(flow_table_entries(MAX_FRAGMENTS, 512 << 20), 1024);
    }

    #[test]
    fn counter_slots_fit_the_budget_for_any_cpu_count() {
        assert_eq!(stats_slots(1), MAX_PUBLICATIONS);
        assert_eq!(stats_slots(2), MAX_PUBLICATIONS);
        assert_eq!(stats_slots(16), MAX_PUBLICATIONS);
        assert_eq!(stats_slots(64), 16_384);
        assert_eq!(stats_slots(128), 8_192);
        assert_eq!(stats_slots(100_000), MIN_STATS_SLOTS);
        for cpus in [1, 3, 17, 48, 96, 192, 256, 1024] {
            let slots = stats_slots(cpus);
            let bytes = u64::from(slots) * size_of::<PubStats>() as u64 * u64::from(cpus);
            assert!(
                bytes <= STATS_BUDGET_BYTES || slots == MIN_STATS_SLOTS,
                "{cpus} CPUs: {bytes} bytes"
            );
            assert!(slots.is_power_of_two(), "{cpus} CPUs: {slots}");
        }
    }
}
