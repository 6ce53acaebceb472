// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Every map of the datapath, in one place. The static's identifier is the
//! kernel map name and the pin file name; `datapath_common::map_names` holds
//! the same strings for the agent (an ELF test keeps them in sync).

use aya_ebpf::{
    btf_maps::{HashMap, LruHashMap, PerCpuArray},
    macros::btf_map,
};
use datapath_common::{
    CtKey, CtValue, EVENT_SLOTS, EndpointAddr, EndpointIface, LocalAddr, MAX_ENDPOINTS, MAX_FLOWS,
    MAX_LOCAL_ADDRS, MAX_MASQ_IFACES, MAX_PUBLICATIONS, MAX_SNAT_ENTRIES, MasqAddr, PubKey,
    PubStats, PubValue, SnatKey, SnatValue,
};

/// Published ports: (host addr, host port, proto) -> container endpoint.
/// Written only by the agent.
#[btf_map]
pub static NA_PUB4_V1: HashMap<PubKey, PubValue, { MAX_PUBLICATIONS as usize }> = HashMap::new();

/// Reverse-NAT state, keyed by the reply tuple. Written by the DNAT paths,
/// read by TC egress; LRU so that abandoned flows age out under pressure.
#[btf_map]
pub static NA_CT4_V1: LruHashMap<CtKey, CtValue, { MAX_FLOWS as usize }> = LruHashMap::new();

/// The host's local IPv4 addresses (network order), kept by the agent from
/// netlink. A wildcard publication matches only destinations found here.
#[btf_map]
pub static NA_LOCAL4_V1: HashMap<u32, LocalAddr, { MAX_LOCAL_ADDRS as usize }> = HashMap::new();

/// Per-publication counters, indexed by `PubValue::stats_slot`.
#[btf_map]
pub static NA_PUBSTAT_V1: PerCpuArray<PubStats, { MAX_PUBLICATIONS as usize }> = PerCpuArray::new();

/// Datapath event counters, indexed by `Event`.
#[btf_map]
pub static NA_EVENTS_V2: PerCpuArray<u64, { EVENT_SLOTS as usize }> = PerCpuArray::new();

/// Container interfaces by host-side ifindex: the network a packet coming
/// out of a container belongs to. Written only by the agent.
#[btf_map]
pub static NA_EPIF4_V1: HashMap<u32, EndpointIface, { MAX_ENDPOINTS as usize }> = HashMap::new();

/// Container addresses (network order): the network a destination (or a
/// masquerade candidate source) belongs to. Written only by the agent.
#[btf_map]
pub static NA_EPADDR4_V1: HashMap<u32, EndpointAddr, { MAX_ENDPOINTS as usize }> = HashMap::new();

/// Masquerade flows, both directions (see `SnatKey`). Written by TC egress.
#[btf_map]
pub static NA_SNAT4_V1: LruHashMap<SnatKey, SnatValue, { MAX_SNAT_ENTRIES as usize }> =
    LruHashMap::new();

/// Masquerade source address per served interface. Written only by the agent.
#[btf_map]
pub static NA_MASQ4_V1: HashMap<u32, MasqAddr, { MAX_MASQ_IFACES as usize }> = HashMap::new();
