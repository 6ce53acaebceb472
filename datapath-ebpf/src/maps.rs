// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Every map of the datapath, in one place. The static's identifier is the
//! kernel map name and the pin file name; `datapath_common::map_names` holds
//! the same strings for the agent (an ELF test keeps them in sync).

use aya_ebpf::{
    btf_maps::{Array, HashMap, LruHashMap, PerCpuArray},
    macros::btf_map,
};
use datapath_common::{
    CtKey, CtKey6, CtValue, CtValue6, DatapathConfig, EVENT_SLOTS, EndpointAddr, EndpointIface,
    EndpointIface6, FragKey, FragValue, Ipv6Be, LinkHole, LocalAddr, MAX_DNS_NETNS,
    MAX_EMBRYONIC_FLOWS, MAX_EMBRYONIC_FLOWS6, MAX_ENDPOINTS, MAX_FLOWS, MAX_FLOWS6, MAX_FRAGMENTS,
    MAX_HAIRPIN_FLOWS, MAX_LINK_HOLES, MAX_LOCAL_ADDRS, MAX_MASQ_IFACES, MAX_OPEN_PORTS,
    MAX_PUBLICATIONS, MAX_SHARES, MAX_SHARES6, MAX_SNAT_ENTRIES, MAX_SNAT_ENTRIES6, MAX_SOCK_FLOWS,
    MAX_UDP_FLOWS, MAX_UDP_FLOWS6, MasqAddr, MasqAddr6, OpenPort, PubKey, PubKey6, PubStats,
    PubValue, PubValue6, ShareKey, ShareKey6, ShareValue, SnatKey, SnatKey6, SnatValue, SnatValue6,
    SockConfig, SockRev6Key, SockRev6Value, SockRevKey, SockRevValue,
};

use datapath_common::{FragKey6, FragValue6, MAX_FRAGMENTS6, MAX_HAIRPIN_FLOWS6};

/// Published ports: (host addr, host port, proto) -> container endpoint.
/// Written only by the agent.
#[btf_map]
pub static NA_PUB4_V1: HashMap<PubKey, PubValue, { MAX_PUBLICATIONS as usize }> = HashMap::new();

/// Published TCP flows whose handshake completed, keyed by the reply
/// tuple. Only a client that saw the container's SYN-ACK gets an entry
/// here, so spoofed traffic cannot evict these.
#[btf_map]
pub static NA_CTTCP4_V1: LruHashMap<CtKey, CtValue, { MAX_FLOWS as usize }> = LruHashMap::new();

/// Published TCP flows that only sent a SYN so far (and the container's
/// SYN-ACK sequence once seen). A SYN flood churns this map alone.
#[btf_map]
pub static NA_CTSYN4_V1: LruHashMap<CtKey, CtValue, { MAX_EMBRYONIC_FLOWS as usize }> =
    LruHashMap::new();

/// Published UDP flows, apart from TCP's.
#[btf_map]
pub static NA_CTUDP4_V1: LruHashMap<CtKey, CtValue, { MAX_UDP_FLOWS as usize }> = LruHashMap::new();

/// The host's local IPv4 addresses (network order), kept by the agent from
/// netlink. A wildcard publication matches only destinations found here.
#[btf_map]
pub static NA_LOCAL4_V1: HashMap<u32, LocalAddr, { MAX_LOCAL_ADDRS as usize }> = HashMap::new();

/// Per-publication counters, indexed by `PubValue::stats_slot`. Its size
/// here is the most; the agent loads it with
/// `datapath_common::stats_slots(nr_cpus)` entries.
#[btf_map]
pub static NA_PUBSTAT_V2: PerCpuArray<PubStats, { MAX_PUBLICATIONS as usize }> = PerCpuArray::new();

/// Datapath event counters, indexed by `Event`.
#[btf_map]
pub static NA_EVENTS_V2: PerCpuArray<u64, { EVENT_SLOTS as usize }> = PerCpuArray::new();

/// Container interfaces by host-side ifindex: the network a packet coming
/// out of a container belongs to. Written only by the agent.
#[btf_map]
pub static NA_EPIF4_V1: HashMap<u32, EndpointIface, { MAX_ENDPOINTS as usize }> = HashMap::new();

/// Container addresses (network order): the network a destination (or a
/// masquerade candidate source) belongs to, and the interface and MAC that
/// own the address. Written only by the agent.
#[btf_map]
pub static NA_EPADDR4_V1: HashMap<u32, EndpointAddr, { MAX_ENDPOINTS as usize }> = HashMap::new();

/// The IPv6 side of publications (written only by the agent): a
/// wildcard publication's `[::]` twin for a dual-stack container.
#[btf_map]
pub static NA_PUB6_V1: HashMap<PubKey6, PubValue6, { MAX_PUBLICATIONS as usize }> = HashMap::new();

/// IPv6 published flows, as the IPv4 conntrack maps (ct.rs).
#[btf_map]
pub static NA_CTTCP6_V1: LruHashMap<CtKey6, CtValue6, { MAX_FLOWS6 as usize }> = LruHashMap::new();
#[btf_map]
pub static NA_CTSYN6_V1: LruHashMap<CtKey6, CtValue6, { MAX_EMBRYONIC_FLOWS6 as usize }> =
    LruHashMap::new();
#[btf_map]
pub static NA_CTUDP6_V1: LruHashMap<CtKey6, CtValue6, { MAX_UDP_FLOWS6 as usize }> =
    LruHashMap::new();

/// Dual-stack container interfaces by host-side ifindex: their network's
/// IPv6 side. An interface without an entry drops its container's IPv6.
/// Written only by the agent.
#[btf_map]
pub static NA_EPIF6_V1: HashMap<u32, EndpointIface6, { MAX_ENDPOINTS as usize }> = HashMap::new();

/// Container IPv6 addresses (global and link-local): the network a
/// destination belongs to, and the interface and MAC that own the address.
/// Written only by the agent.
#[btf_map]
pub static NA_EPADDR6_V1: HashMap<Ipv6Be, EndpointAddr, { MAX_ENDPOINTS as usize * 2 }> =
    HashMap::new();

/// Masquerade flows, both directions (see `SnatKey`). Written by TC egress.
#[btf_map]
pub static NA_SNAT4_V1: LruHashMap<SnatKey, SnatValue, { MAX_SNAT_ENTRIES as usize }> =
    LruHashMap::new();

/// Masquerade source address per served interface. Written only by the agent.
#[btf_map]
pub static NA_MASQ4_V1: HashMap<u32, MasqAddr, { MAX_MASQ_IFACES as usize }> = HashMap::new();

/// Datagrams whose first fragment was translated: what their later
/// fragments get.
#[btf_map]
pub static NA_FRAG4_V1: LruHashMap<FragKey, FragValue, { MAX_FRAGMENTS as usize }> =
    LruHashMap::new();

/// Unanswered masquerade flows per (container, destination) and window.
#[btf_map]
pub static NA_SHARE4_V1: LruHashMap<ShareKey, ShareValue, { MAX_SHARES as usize }> =
    LruHashMap::new();

/// IPv6 masquerade flows, both directions, as `NA_SNAT4_V1`.
#[btf_map]
pub static NA_SNAT6_V1: LruHashMap<SnatKey6, SnatValue6, { MAX_SNAT_ENTRIES6 as usize }> =
    LruHashMap::new();

/// Containers' IPv6 flows to a published port of the host (hairpin), as
/// `NA_HAIRPIN4_V1`.
#[btf_map]
pub static NA_HAIRPIN6_V1: LruHashMap<CtKey6, CtValue6, { MAX_HAIRPIN_FLOWS6 as usize }> =
    LruHashMap::new();

/// IPv6 datagrams whose first fragment was translated, as `NA_FRAG4_V1`.
#[btf_map]
pub static NA_FRAG6_V1: LruHashMap<FragKey6, FragValue6, { MAX_FRAGMENTS6 as usize }> =
    LruHashMap::new();

/// IPv6 masquerade source address per served interface. Written only by
/// the agent.
#[btf_map]
pub static NA_MASQ6_V1: HashMap<u32, MasqAddr6, { MAX_MASQ_IFACES as usize }> = HashMap::new();

/// Unanswered IPv6 masquerade flows per (container, destination).
#[btf_map]
pub static NA_SHARE6_V1: LruHashMap<ShareKey6, ShareValue, { MAX_SHARES6 as usize }> =
    LruHashMap::new();

/// Container ports reachable by direct routing (`routed` networks).
/// Written only by the agent.
#[btf_map]
pub static NA_OPEN4_V1: HashMap<OpenPort, u32, { MAX_OPEN_PORTS as usize }> = HashMap::new();

/// What legacy links open across icc=false networks. Written only by the
/// agent.
#[btf_map]
pub static NA_LINK4_V1: HashMap<LinkHole, u32, { MAX_LINK_HOLES as usize }> = HashMap::new();

/// The embedded resolver's real port (wire order, in a u32) in each
/// container namespace, by the namespace's cookie. Written only by the
/// agent.
#[btf_map]
pub static NA_DNSPORT_V1: HashMap<u64, u32, { MAX_DNS_NETNS as usize }> = HashMap::new();

/// The agent's settings, at index 0.
#[btf_map]
pub static NA_CFG4_V1: Array<DatapathConfig, 1> = Array::new();

/// What host sockets translated by the socket hooks asked for, by socket
/// and container address (sock.rs). Written by connect4/sendmsg4.
#[btf_map]
pub static NA_SOCKREV4_V1: LruHashMap<SockRevKey, SockRevValue, { MAX_SOCK_FLOWS as usize }> =
    LruHashMap::new();

/// The socket hooks' settings, at index 0. Written only by the agent.
#[btf_map]
pub static NA_SOCKCFG_V1: Array<SockConfig, 1> = Array::new();

/// Containers' flows to a published port of the host (hairpin.rs), keyed
/// by the reply tuple (published container -> client as the published
/// container sees it). Written by the container-interface program.
#[btf_map]
pub static NA_HAIRPIN4_V1: LruHashMap<CtKey, CtValue, { MAX_HAIRPIN_FLOWS as usize }> =
    LruHashMap::new();

/// What IPv6 host sockets translated by the socket hooks asked for, by
/// socket and container address (IPv4-mapped for an IPv4 container).
/// Written by connect6.
#[btf_map]
pub static NA_SOCKREV6_V1: LruHashMap<SockRev6Key, SockRev6Value, { MAX_SOCK_FLOWS as usize }> =
    LruHashMap::new();

/// The host's local IPv6 addresses, kept by the agent from netlink: a
/// wildcard publication is reached from the host at any of them.
#[btf_map]
pub static NA_LOCAL6_V1: HashMap<Ipv6Be, LocalAddr, { MAX_LOCAL_ADDRS as usize }> = HashMap::new();
