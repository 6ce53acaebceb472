//! The embedded eBPF object, inspected without loading it (no root): every
//! map the agent opens exists with the key and value sizes of the
//! `datapath_common` types and the capacities they declare, and every
//! program the agent attaches is there. Guards the one ABI both sides share.

use std::mem::size_of;

use datapath_common::{
    CtKey, CtKey6, CtValue, CtValue6, DatapathConfig, EVENT_SLOTS, EndpointAddr, EndpointIface,
    EndpointIface6, Event, FragKey, FragValue, Ipv6Be, LinkHole, LocalAddr, MAX_DNS_NETNS,
    MAX_EMBRYONIC_FLOWS, MAX_ENDPOINTS, MAX_FLOWS, MAX_FRAGMENTS, MAX_HAIRPIN_FLOWS,
    MAX_LINK_HOLES, MAX_LOCAL_ADDRS, MAX_MASQ_IFACES, MAX_OPEN_PORTS, MAX_PUBLICATIONS, MAX_SHARES,
    MAX_SNAT_ENTRIES, MAX_SOCK_FLOWS, MAX_UDP_FLOWS, MasqAddr, OpenPort, PubKey, PubKey6, PubStats,
    PubValue, PubValue6, ShareKey, ShareValue, SnatKey, SnatValue, SockConfig, SockRev6Key,
    SockRev6Value, SockRevKey, SockRevValue, map_names, prog_names,
};

const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
const BPF_MAP_TYPE_LRU_HASH: u32 = 9;

#[test]
fn maps_and_programs_match_the_common_abi() {
    let object = netagent::datapath::bpf::OBJECT;
    assert!(!object.is_empty(), "built with AYA_BUILD_SKIP=1: no object");
    let obj = aya_obj::Object::parse(object).expect("parsing the eBPF ELF");

    let expected = [
        (
            map_names::PUBLICATIONS,
            BPF_MAP_TYPE_HASH,
            size_of::<PubKey>(),
            size_of::<PubValue>(),
            MAX_PUBLICATIONS,
        ),
        (
            map_names::CT_TCP,
            BPF_MAP_TYPE_LRU_HASH,
            size_of::<CtKey>(),
            size_of::<CtValue>(),
            MAX_FLOWS,
        ),
        (
            map_names::CT_SYN,
            BPF_MAP_TYPE_LRU_HASH,
            size_of::<CtKey>(),
            size_of::<CtValue>(),
            MAX_EMBRYONIC_FLOWS,
        ),
        (
            map_names::CT_UDP,
            BPF_MAP_TYPE_LRU_HASH,
            size_of::<CtKey>(),
            size_of::<CtValue>(),
            MAX_UDP_FLOWS,
        ),
        (
            map_names::FRAGMENTS,
            BPF_MAP_TYPE_LRU_HASH,
            size_of::<FragKey>(),
            size_of::<FragValue>(),
            MAX_FRAGMENTS,
        ),
        (
            map_names::SHARES,
            BPF_MAP_TYPE_LRU_HASH,
            size_of::<ShareKey>(),
            size_of::<ShareValue>(),
            MAX_SHARES,
        ),
        (
            map_names::OPEN_PORTS,
            BPF_MAP_TYPE_HASH,
            size_of::<OpenPort>(),
            size_of::<u32>(),
            MAX_OPEN_PORTS,
        ),
        (
            map_names::DNS_PORTS,
            BPF_MAP_TYPE_HASH,
            size_of::<u64>(),
            size_of::<u32>(),
            MAX_DNS_NETNS,
        ),
        (
            map_names::LINK_HOLES,
            BPF_MAP_TYPE_HASH,
            size_of::<LinkHole>(),
            size_of::<u32>(),
            MAX_LINK_HOLES,
        ),
        (
            map_names::CONFIG,
            BPF_MAP_TYPE_ARRAY,
            size_of::<u32>(),
            size_of::<DatapathConfig>(),
            1,
        ),
        (
            map_names::LOCAL_ADDRS,
            BPF_MAP_TYPE_HASH,
            size_of::<u32>(),
            size_of::<LocalAddr>(),
            MAX_LOCAL_ADDRS,
        ),
        (
            map_names::PUB_STATS,
            BPF_MAP_TYPE_PERCPU_ARRAY,
            size_of::<u32>(),
            size_of::<PubStats>(),
            MAX_PUBLICATIONS,
        ),
        (
            map_names::EVENTS,
            BPF_MAP_TYPE_PERCPU_ARRAY,
            size_of::<u32>(),
            size_of::<u64>(),
            EVENT_SLOTS,
        ),
        (
            map_names::ENDPOINT_IFACES,
            BPF_MAP_TYPE_HASH,
            size_of::<u32>(),
            size_of::<EndpointIface>(),
            MAX_ENDPOINTS,
        ),
        (
            map_names::ENDPOINT_ADDRS,
            BPF_MAP_TYPE_HASH,
            size_of::<u32>(),
            size_of::<EndpointAddr>(),
            MAX_ENDPOINTS,
        ),
        (
            map_names::SNAT,
            BPF_MAP_TYPE_LRU_HASH,
            size_of::<SnatKey>(),
            size_of::<SnatValue>(),
            MAX_SNAT_ENTRIES,
        ),
        (
            map_names::MASQ_ADDRS,
            BPF_MAP_TYPE_HASH,
            size_of::<u32>(),
            size_of::<MasqAddr>(),
            MAX_MASQ_IFACES,
        ),
        (
            map_names::SOCK_REV,
            BPF_MAP_TYPE_LRU_HASH,
            size_of::<SockRevKey>(),
            size_of::<SockRevValue>(),
            MAX_SOCK_FLOWS,
        ),
        (
            map_names::SOCK_CONFIG,
            BPF_MAP_TYPE_ARRAY,
            size_of::<u32>(),
            size_of::<SockConfig>(),
            1,
        ),
        (
            map_names::HAIRPIN,
            BPF_MAP_TYPE_LRU_HASH,
            size_of::<CtKey>(),
            size_of::<CtValue>(),
            MAX_HAIRPIN_FLOWS,
        ),
        (
            map_names::ENDPOINT_IFACES6,
            BPF_MAP_TYPE_HASH,
            size_of::<u32>(),
            size_of::<EndpointIface6>(),
            MAX_ENDPOINTS,
        ),
        (
            map_names::ENDPOINT_ADDRS6,
            BPF_MAP_TYPE_HASH,
            size_of::<Ipv6Be>(),
            size_of::<EndpointAddr>(),
            MAX_ENDPOINTS * 2,
        ),
        (
            map_names::PUBLICATIONS6,
            BPF_MAP_TYPE_HASH,
            size_of::<PubKey6>(),
            size_of::<PubValue6>(),
            MAX_PUBLICATIONS,
        ),
        (
            map_names::CT_TCP6,
            BPF_MAP_TYPE_LRU_HASH,
            size_of::<CtKey6>(),
            size_of::<CtValue6>(),
            datapath_common::MAX_FLOWS6,
        ),
        (
            map_names::CT_SYN6,
            BPF_MAP_TYPE_LRU_HASH,
            size_of::<CtKey6>(),
            size_of::<CtValue6>(),
            datapath_common::MAX_EMBRYONIC_FLOWS6,
        ),
        (
            map_names::CT_UDP6,
            BPF_MAP_TYPE_LRU_HASH,
            size_of::<CtKey6>(),
            size_of::<CtValue6>(),
            datapath_common::MAX_UDP_FLOWS6,
        ),
        (
            map_names::SOCK_REV6,
            BPF_MAP_TYPE_LRU_HASH,
            size_of::<SockRev6Key>(),
            size_of::<SockRev6Value>(),
            MAX_SOCK_FLOWS,
        ),
        (
            map_names::LOCAL_ADDRS6,
            BPF_MAP_TYPE_HASH,
            size_of::<Ipv6Be>(),
            size_of::<LocalAddr>(),
            MAX_LOCAL_ADDRS,
        ),
        (
            map_names::SNAT6,
            BPF_MAP_TYPE_LRU_HASH,
            size_of::<datapath_common::SnatKey6>(),
            size_of::<datapath_common::SnatValue6>(),
            datapath_common::MAX_SNAT_ENTRIES6,
        ),
        (
            map_names::SHARES6,
            BPF_MAP_TYPE_LRU_HASH,
            size_of::<datapath_common::ShareKey6>(),
            size_of::<ShareValue>(),
            datapath_common::MAX_SHARES6,
        ),
        (
            map_names::HAIRPIN6,
            BPF_MAP_TYPE_LRU_HASH,
            size_of::<CtKey6>(),
            size_of::<CtValue6>(),
            datapath_common::MAX_HAIRPIN_FLOWS6,
        ),
        (
            map_names::FRAGMENTS6,
            BPF_MAP_TYPE_LRU_HASH,
            size_of::<datapath_common::FragKey6>(),
            size_of::<datapath_common::FragValue6>(),
            datapath_common::MAX_FRAGMENTS6,
        ),
        (
            map_names::MASQ_ADDRS6,
            BPF_MAP_TYPE_HASH,
            size_of::<u32>(),
            size_of::<datapath_common::MasqAddr6>(),
            datapath_common::MAX_MASQ_IFACES,
        ),
    ];
    for (name, map_type, key, value, max) in expected {
        assert!(
            name.len() <= 15,
            "{name}: the kernel truncates map names past 15 bytes"
        );
        let map = obj
            .maps
            .get(name)
            .unwrap_or_else(|| panic!("map {name} missing; object has {:?}", obj.maps.keys()));
        assert_eq!(map.map_type(), map_type, "{name} type");
        assert_eq!(map.key_size() as usize, key, "{name} key size");
        assert_eq!(map.value_size() as usize, value, "{name} value size");
        assert_eq!(map.max_entries(), max, "{name} capacity");
    }
    assert_eq!(
        obj.maps.len(),
        expected.len(),
        "a map the agent does not know: {:?}",
        obj.maps.keys()
    );
    assert_eq!(
        netagent::datapath::bpf::MAP_NAMES.len(),
        expected.len(),
        "the agent pins every map"
    );
    for retired in map_names::RETIRED {
        assert!(
            !obj.maps.contains_key(*retired),
            "{retired} is retired but still in the object"
        );
    }

    for name in [
        prog_names::XDP_INGRESS,
        prog_names::TC_INGRESS,
        prog_names::TC_EGRESS,
        prog_names::TC_FROM_CONTAINER,
        prog_names::TC_DNS,
    ]
    .into_iter()
    .chain(prog_names::SOCKET_HOOKS)
    {
        assert!(
            name.len() <= 15,
            "{name}: program names are truncated past 15 bytes"
        );
        assert!(
            obj.programs.contains_key(name),
            "program {name} missing; object has {:?}",
            obj.programs.keys()
        );
    }
}

#[test]
fn event_table_is_dense_and_named() {
    for (i, event) in Event::ALL.iter().enumerate() {
        assert_eq!(*event as usize, i, "{event:?} out of order in Event::ALL");
        assert!(!event.name().is_empty() && event.name() != "count");
        assert_eq!(event.is_retired(), event.name().starts_with("unused_"));
    }
    assert_eq!(Event::ALL.len(), Event::Count as usize);
    assert!(
        Event::Count as u32 <= EVENT_SLOTS,
        "the events array has room"
    );
}
