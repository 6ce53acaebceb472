// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Every map of the datapath, in one place. The static's identifier is the
//! kernel map name and the pin file name; `datapath_common::map_names` holds
//! the same strings for the agent (an ELF test keeps them in sync).

use aya_ebpf::{
    btf_maps::{HashMap, LruHashMap, PerCpuArray},
    macros::btf_map,
};
use datapath_common::{
    CtKey, CtValue, Event, LocalAddr, MAX_FLOWS, MAX_LOCAL_ADDRS, MAX_PUBLICATIONS, PubKey,
    PubStats, PubValue,
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
pub static NA_EVENTS_V1: PerCpuArray<u64, { Event::Count as usize }> = PerCpuArray::new();
