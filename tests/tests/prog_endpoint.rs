//! BPF_PROG_TEST_RUN tables for the program on a container's veth: it
//! fails closed (unknown interface, protocols other than ARP and IPv4),
//! lets a container send only from its own address and MAC, applies the
//! isolation rules (broadcast and multicast included), translates hairpin
//! flows (a container to a published port of the host, and back), and
//! forwards past the host's forwarding path. Needs root.
#![allow(
    clippy::unwrap_used,
    reason = "tests panic on failure, with context from the asserts"
)]

use std::net::Ipv4Addr;

use datapath_common::{
    CtKey, CtValue, Event, HAIRPIN_F_SELF, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
    NET_F_INTERNAL, NET_F_NO_ICC, NetPolicy, map_names::HAIRPIN, prog_names::TC_FROM_CONTAINER,
};
use netagent_tests::{
    dp::{
        Dp, GW_MAC, REMOTE, TC_DROP, TC_NEXT, TC_REDIRECT, TEST_RUN_IFINDEX, be32,
        in_private_netns, policy,
    },
    packet::{
        ETH_P_IPV6, FrameSpec, L4Csum, arp_request, fold, icmpv6, ip_header_csum, ipv4_raw,
        ipv6_frame, nd_body, non_ip_frame, sum16, verify,
    },
};

/// The sending container: 10.1.0.2 on the test-run device.
const SELF_IP: &str = "10.1.0.2";
const SELF_MAC: [u8; 6] = [0x02, 0x5e, 0, 0, 0, 2];
/// A neighbour on the same network, and one on another.
const PEER_IP: &str = "10.1.0.3";
const PEER_MAC: [u8; 6] = [0x02, 0x5e, 0, 0, 0, 3];
const OTHER_IP: &str = "10.2.0.3";

fn from_self(mut f: FrameSpec) -> Vec<u8> {
    f.eth_src = SELF_MAC;
    f.build()
}

fn with_src_mac(mut frame: Vec<u8>, mac: [u8; 6]) -> Vec<u8> {
    frame[6..12].copy_from_slice(&mac);
    frame
}

fn tcp_to(dst: &str) -> Vec<u8> {
    from_self(FrameSpec::tcp(SELF_IP, 40000, dst, 80, b""))
}

fn udp_to(dst: &str) -> Vec<u8> {
    from_self(FrameSpec::udp(SELF_IP, 40000, dst, 9, b"hello"))
}

fn icmp_to(dst: &str) -> Vec<u8> {
    from_self(FrameSpec::icmp_echo(SELF_IP, dst, 9, true, b"ping"))
}

#[test]
fn container_veth_fails_closed_validates_sources_and_isolates() {
    in_private_netns(&[], endpoint_table);
}

fn endpoint_table() {
    let net1 = policy(1, 0, "10.1.0.0", "255.255.255.0");
    let net2 = policy(2, 0, "10.2.0.0", "255.255.255.0");
    let no_icc = policy(1, NET_F_NO_ICC, "10.1.0.0", "255.255.255.0");
    let internal = policy(1, NET_F_INTERNAL, "10.1.0.0", "255.255.255.0");
    let mut frag = FrameSpec::udp(SELF_IP, 5353, OTHER_IP, 53, b"frag");
    frag.frag_off = 0x0010;
    frag.eth_src = SELF_MAC;
    let mut vlan = tcp_to(PEER_IP);
    vlan[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
    let mut bad_ihl = tcp_to(REMOTE);
    bad_ihl[14] = 0x44;
    let arp = |sha: [u8; 6], spa: &str| with_src_mac(arp_request(sha, spa, PEER_IP), sha);
    // (name, source interface's network (None: no entry), frame,
    // expected drop reason)
    type Case = (&'static str, Option<NetPolicy>, Vec<u8>, Option<Event>);
    let cases: Vec<Case> = vec![
        ("same network", Some(net1), tcp_to(PEER_IP), None),
        ("same network, icmp", Some(net1), icmp_to(PEER_IP), None),
        (
            "other network",
            Some(net1),
            tcp_to(OTHER_IP),
            Some(Event::DropIsolation),
        ),
        (
            "other network, icmp",
            Some(net1),
            icmp_to(OTHER_IP),
            Some(Event::DropIsolation),
        ),
        (
            "other network, fragment",
            Some(net1),
            frag.build(),
            Some(Event::DropIsolation),
        ),
        ("outside world", Some(net1), tcp_to(REMOTE), None),
        (
            "loopback destination (forged: a container's own never leaves it)",
            Some(net1),
            udp_to("127.0.0.1"),
            Some(Event::DropLoopbackDst),
        ),
        (
            "loopback destination, 127/8",
            Some(net1),
            tcp_to("127.1.2.3"),
            Some(Event::DropLoopbackDst),
        ),
        (
            "icc off, same network",
            Some(no_icc),
            tcp_to(PEER_IP),
            Some(Event::DropIcc),
        ),
        ("icc off, gateway", Some(no_icc), tcp_to("10.1.0.1"), None),
        ("icc off, outside world", Some(no_icc), tcp_to(REMOTE), None),
        (
            "icc off, subnet broadcast",
            Some(no_icc),
            udp_to("10.1.0.255"),
            Some(Event::DropIcc),
        ),
        (
            "icc off, limited broadcast",
            Some(no_icc),
            udp_to("255.255.255.255"),
            Some(Event::DropIcc),
        ),
        (
            "icc off, multicast",
            Some(no_icc),
            udp_to("224.0.0.1"),
            Some(Event::DropIcc),
        ),
        (
            "icc on, subnet broadcast",
            Some(net1),
            udp_to("10.1.0.255"),
            None,
        ),
        ("icc on, multicast", Some(net1), udp_to("224.0.0.1"), None),
        (
            "internal, outside world",
            Some(internal),
            icmp_to(REMOTE),
            Some(Event::DropInternal),
        ),
        (
            "internal, multicast",
            Some(internal),
            udp_to("224.0.0.1"),
            Some(Event::DropInternal),
        ),
        (
            "internal, gateway",
            Some(internal),
            tcp_to("10.1.0.1"),
            None,
        ),
        (
            "internal, same network",
            Some(internal),
            tcp_to(PEER_IP),
            None,
        ),
        (
            "internal, other network",
            Some(internal),
            tcp_to(OTHER_IP),
            Some(Event::DropIsolation),
        ),
        // Fail closed.
        (
            "unknown interface",
            None,
            tcp_to(REMOTE),
            Some(Event::DropUnknownEndpoint),
        ),
        (
            "ipv6",
            Some(net1),
            with_src_mac(non_ip_frame(ETH_P_IPV6, 80), SELF_MAC),
            Some(Event::DropCtrProtocol),
        ),
        ("vlan tag", Some(net1), vlan, Some(Event::DropCtrProtocol)),
        (
            "malformed ipv4 (ihl 4)",
            Some(net1),
            bad_ihl,
            Some(Event::DropCtrProtocol),
        ),
        // Its own address and MAC only.
        (
            "spoofed: a neighbour's address",
            Some(net1),
            from_self(FrameSpec::tcp(PEER_IP, 40000, REMOTE, 80, b"")),
            Some(Event::DropSpoofed),
        ),
        (
            "spoofed: another network's container",
            Some(net1),
            from_self(FrameSpec::udp(OTHER_IP, 53, REMOTE, 40000, b"fake answer")),
            Some(Event::DropSpoofed),
        ),
        (
            "spoofed: an outside address",
            Some(net1),
            from_self(FrameSpec::udp("8.8.8.8", 53, REMOTE, 40000, b"")),
            Some(Event::DropSpoofed),
        ),
        (
            "spoofed: unspecified source",
            Some(net1),
            from_self(FrameSpec::udp("0.0.0.0", 68, "255.255.255.255", 67, b"")),
            Some(Event::DropSpoofed),
        ),
        (
            "spoofed: a neighbour's MAC",
            Some(net1),
            with_src_mac(tcp_to(REMOTE), PEER_MAC),
            Some(Event::DropSpoofed),
        ),
        (
            "spoofed: gre from another address",
            Some(net1),
            with_src_mac(ipv4_raw(PEER_IP, REMOTE, 47, &[0; 8]), SELF_MAC),
            Some(Event::DropSpoofed),
        ),
        ("arp, own address", Some(net1), arp(SELF_MAC, SELF_IP), None),
        (
            "arp, a neighbour's address",
            Some(net1),
            arp(SELF_MAC, PEER_IP),
            Some(Event::DropSpoofed),
        ),
        (
            "arp, a neighbour's MAC",
            Some(net1),
            arp(PEER_MAC, SELF_IP),
            Some(Event::DropSpoofed),
        ),
        (
            "arp probe (sender 0.0.0.0)",
            Some(net1),
            arp(SELF_MAC, "0.0.0.0"),
            Some(Event::DropSpoofed),
        ),
    ];
    for (name, src, frame, drop) in cases {
        let mut dp = Dp::new();
        if let Some(src) = src {
            dp.endpoint_iface(TEST_RUN_IFINDEX, &src);
            dp.endpoint_at(SELF_IP, &src, TEST_RUN_IFINDEX, SELF_MAC);
        }
        dp.endpoint_at(PEER_IP, &net1, 0, PEER_MAC);
        dp.endpoint_at(OTHER_IP, &net2, 0, PEER_MAC);
        let (ret, after) = dp.run_tc(TC_FROM_CONTAINER, &frame);
        let to_peer = drop.is_none() && frame[12..14] == [8, 0] && frame[30..34] == [10, 1, 0, 3];
        match drop {
            Some(reason) => {
                assert_eq!(ret, TC_DROP, "{name}");
                assert_eq!(after, frame, "{name}: a drop never rewrites");
                assert_eq!(
                    dp.events(),
                    vec![(reason, 1)],
                    "{name}: one reason per drop"
                );
            }
            // An allowed packet to an endpoint of the same network goes
            // straight to its veth, addressed to its MAC, otherwise as is.
            None if to_peer => {
                assert_eq!(ret, TC_REDIRECT, "{name}");
                assert_eq!(after[..6], PEER_MAC, "{name}");
                assert_eq!(after[6..], frame[6..], "{name}: bridged, not routed");
                assert_eq!(dp.events(), vec![(Event::RedirectToEndpoint, 1)], "{name}");
            }
            // Elsewhere: this namespace has no route, so the stack (or the
            // bridge, for ARP and broadcasts) decides.
            None => {
                assert_eq!((ret, &after), (TC_NEXT, &frame), "{name}");
                assert_eq!(dp.events(), vec![], "{name}");
            }
        }
    }
}

/// Legacy links on an icc=false network open exactly the linked
/// container's exposed ports, both ways as Docker's two rules do: the
/// linking container (SELF) to the linked one's (PEER) TCP 5432 and UDP 53,
/// and PEER's answers from them; nothing else between them, nor the
/// reverse direction's connections, nor a later fragment on its own (see
/// the fragment test below).
#[test]
fn link_holes_open_exactly_the_exposed_ports_across_icc_false() {
    in_private_netns(&[], || {
        use datapath_common::{IPPROTO_TCP, IPPROTO_UDP, LINK_DPORT, LINK_SPORT};
        let no_icc = policy(1, NET_F_NO_ICC, "10.1.0.0", "255.255.255.0");
        let peer = |f: FrameSpec| {
            let mut f = f;
            f.eth_src = PEER_MAC;
            f.build()
        };
        let mut later = from_self(FrameSpec::udp(SELF_IP, 40000, PEER_IP, 53, b"tail"));
        // Fragment offset 8 (a later fragment): no ports to match.
        later[20] = 0;
        later[21] = 1;
        let cases: Vec<(&str, bool, Vec<u8>, bool)> = vec![
            // (name, sent by SELF (else PEER), frame, passes)
            (
                "to the linked tcp port",
                true,
                from_self(FrameSpec::tcp(SELF_IP, 40000, PEER_IP, 5432, b"")),
                true,
            ),
            (
                "to the linked udp port",
                true,
                from_self(FrameSpec::udp(SELF_IP, 40000, PEER_IP, 53, b"q")),
                true,
            ),
            (
                "to another port",
                true,
                from_self(FrameSpec::tcp(SELF_IP, 40000, PEER_IP, 22, b"")),
                false,
            ),
            (
                "udp to the tcp port",
                true,
                from_self(FrameSpec::udp(SELF_IP, 40000, PEER_IP, 5432, b"")),
                false,
            ),
            ("ping", true, icmp_to(PEER_IP), false),
            ("a later fragment", true, later, false),
            (
                "answer from the linked port",
                false,
                peer(FrameSpec::tcp(PEER_IP, 5432, SELF_IP, 40000, b"")),
                true,
            ),
            (
                "udp answer",
                false,
                peer(FrameSpec::udp(PEER_IP, 53, SELF_IP, 40000, b"a")),
                true,
            ),
            (
                "the linked one connecting back",
                false,
                peer(FrameSpec::tcp(PEER_IP, 40000, SELF_IP, 5432, b"")),
                false,
            ),
            (
                "from another port",
                false,
                peer(FrameSpec::tcp(PEER_IP, 22, SELF_IP, 40000, b"")),
                false,
            ),
        ];
        for (name, from_self_side, frame, passes) in cases {
            let mut dp = Dp::new();
            let (me, my_mac) = if from_self_side {
                (SELF_IP, SELF_MAC)
            } else {
                (PEER_IP, PEER_MAC)
            };
            let (them, their_mac) = if from_self_side {
                (PEER_IP, PEER_MAC)
            } else {
                (SELF_IP, SELF_MAC)
            };
            dp.endpoint_iface(TEST_RUN_IFINDEX, &no_icc);
            dp.endpoint_at(me, &no_icc, TEST_RUN_IFINDEX, my_mac);
            dp.endpoint_at(them, &no_icc, 0, their_mac);
            for (port, proto) in [(5432, IPPROTO_TCP), (53, IPPROTO_UDP)] {
                dp.link_hole(SELF_IP, PEER_IP, port, proto, LINK_DPORT);
                dp.link_hole(PEER_IP, SELF_IP, port, proto, LINK_SPORT);
            }
            let (ret, _) = dp.run_tc(TC_FROM_CONTAINER, &frame);
            if passes {
                assert_eq!(ret, TC_REDIRECT, "{name}");
                assert_eq!(dp.events(), vec![(Event::RedirectToEndpoint, 1)], "{name}");
            } else {
                assert_eq!(ret, TC_DROP, "{name}");
                assert_eq!(dp.events(), vec![(Event::DropIcc, 1)], "{name}");
            }
        }
    });
}

/// Fragmented datagrams through a link's hole: every fragment of one whose
/// first fragment passed goes through unchanged (both ways), as Docker's
/// rules see the datagram after conntrack's reassembly; the fragments of a
/// datagram to a port the link does not open, and a later fragment whose
/// first one never came, are dropped.
#[test]
fn link_holes_pass_the_later_fragments_of_what_they_let_through() {
    in_private_netns(&[], || {
        use datapath_common::{IPPROTO_UDP, LINK_DPORT, LINK_SPORT};
        use netagent_tests::packet::fragment;
        let no_icc = policy(1, NET_F_NO_ICC, "10.1.0.0", "255.255.255.0");
        let mut dp = Dp::new();
        dp.endpoint_iface(TEST_RUN_IFINDEX, &no_icc);
        dp.endpoint_at(SELF_IP, &no_icc, TEST_RUN_IFINDEX, SELF_MAC);
        dp.endpoint_at(PEER_IP, &no_icc, TEST_RUN_IFINDEX, PEER_MAC);
        dp.link_hole(SELF_IP, PEER_IP, 53, IPPROTO_UDP, LINK_DPORT);
        dp.link_hole(PEER_IP, SELF_IP, 53, IPPROTO_UDP, LINK_SPORT);
        let datagram = |src, sport, dst, dport, mac, id| {
            let mut f = FrameSpec::udp(src, sport, dst, dport, &[7u8; 600]);
            f.eth_src = mac;
            f.frag_off = 0;
            f.ip_id = id;
            fragment(&f.build(), 256)
        };
        let query = datagram(SELF_IP, 40000, PEER_IP, 53, SELF_MAC, 0x1111);
        let answer = datagram(PEER_IP, 53, SELF_IP, 40000, PEER_MAC, 0x2222);
        assert_eq!(query.len(), 3, "a first and two later fragments");
        for (what, fragments, to_mac) in
            [("query", &query, PEER_MAC), ("answer", &answer, SELF_MAC)]
        {
            for (i, frame) in fragments.iter().enumerate() {
                let (ret, after) = dp.run_tc(TC_FROM_CONTAINER, frame);
                assert_eq!(ret, TC_REDIRECT, "{what} fragment {i}");
                // Addressed to the other container, the packet unchanged.
                assert_eq!(after[..6], to_mac, "{what} fragment {i}");
                assert_eq!(after[6..], frame[6..], "{what} fragment {i} unchanged");
            }
        }
        assert_eq!(dp.events(), vec![(Event::RedirectToEndpoint, 6)]);
        // Not a hole: the first fragment is dropped, and so are the rest.
        let closed = datagram(SELF_IP, 40000, PEER_IP, 54, SELF_MAC, 0x3333);
        for (i, frame) in closed.iter().enumerate() {
            let (ret, _) = dp.run_tc(TC_FROM_CONTAINER, frame);
            assert_eq!(ret, TC_DROP, "closed fragment {i}");
        }
        // A later fragment whose first fragment never came.
        let orphan = datagram(SELF_IP, 40000, PEER_IP, 53, SELF_MAC, 0x4444);
        let (ret, _) = dp.run_tc(TC_FROM_CONTAINER, &orphan[1]);
        assert_eq!(ret, TC_DROP, "an orphan later fragment");
        assert_eq!(
            dp.events(),
            vec![(Event::DropIcc, 4), (Event::RedirectToEndpoint, 6)]
        );
    });
}

/// A container's packet to elsewhere is routed by FIB lookup: with a known
/// neighbour, MACs from the lookup, TTL one less, redirected; without one,
/// redirected through the kernel's neighbour resolution; an expiring TTL,
/// destinations without a route and unserved egresses are left to the
/// stack. The namespace has a veth `fwd0` with 192.0.2.1/24, one permanent
/// neighbour, and forwarding on (a lookup needs it on the input device).
#[test]
fn container_traffic_is_routed_by_fib_lookup() {
    in_private_netns(
        &[
            &[
                "link",
                "add",
                "fwd0",
                "address",
                "02:aa:00:00:00:01",
                "type",
                "veth",
                "peer",
                "name",
                "fwd1",
            ],
            &["addr", "add", "192.0.2.1/24", "dev", "fwd0"],
            &["link", "set", "fwd0", "up"],
            &["link", "set", "fwd1", "up"],
            &[
                "neigh",
                "replace",
                "192.0.2.9",
                "lladdr",
                "02:aa:00:00:00:09",
                "nud",
                "permanent",
                "dev",
                "fwd0",
            ],
        ],
        routed_table,
    );
}

fn routed_table() {
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").unwrap();
    let name = std::ffi::CString::new("fwd0").unwrap();
    // SAFETY: if_nametoindex with a valid C string, in this thread's namespace.
    let fwd0 = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert_ne!(fwd0, 0, "fwd0 missing");
    let net1 = policy(1, 0, "10.1.0.0", "255.255.255.0");
    let mut dp = Dp::new();
    dp.endpoint_iface(TEST_RUN_IFINDEX, &net1);
    dp.endpoint_at(SELF_IP, &net1, TEST_RUN_IFINDEX, SELF_MAC);

    // fwd0 not served: the stack (and the host's firewall) decide.
    let out = from_self(FrameSpec::tcp(SELF_IP, 40000, "192.0.2.9", 443, b"routed"));
    let (ret, after) = dp.run_tc(TC_FROM_CONTAINER, &out);
    assert_eq!((ret, after), (TC_NEXT, out.clone()), "unserved egress");
    dp.masq_addr(fwd0, "192.0.2.1");

    // Known neighbour: a full rewrite.
    let (ret, routed) = dp.run_tc(TC_FROM_CONTAINER, &out);
    assert_eq!(ret, TC_REDIRECT);
    assert_eq!(routed[..6], [0x02, 0xaa, 0, 0, 0, 9], "neighbour's MAC");
    assert_eq!(routed[6..12], [0x02, 0xaa, 0, 0, 0, 1], "egress MAC");
    assert_eq!(routed[22], out[22] - 1, "TTL");
    let checked = verify(&routed).expect("checksums after the TTL change");
    assert_eq!(checked.dst, "192.0.2.9".parse::<Ipv4Addr>().unwrap());
    assert_eq!(routed[12..22], out[12..22]);
    assert_eq!(
        routed[26..],
        out[26..],
        "nothing else changed but the IP checksum"
    );
    assert_eq!(dp.event(Event::RedirectRouted), 1);

    // A packet larger than the egress MTU (1500) without GSO goes to the
    // stack, which answers "fragmentation needed"; the lookup is made
    // without tot_len, so the kernel's own (GSO-aware) check decides.
    let big = from_self(FrameSpec::udp(SELF_IP, 40000, "192.0.2.9", 53, &[0; 1600]));
    let (ret, after) = dp.run_tc(TC_FROM_CONTAINER, &big);
    assert_eq!((ret, after), (TC_NEXT, big), "too big");
    assert_eq!(dp.event(Event::PassFragNeeded), 1);

    // No neighbour entry: the kernel resolves it (MACs untouched here).
    let out = from_self(FrameSpec::udp(SELF_IP, 40000, "192.0.2.10", 53, b"q"));
    let (ret, routed) = dp.run_tc(TC_FROM_CONTAINER, &out);
    assert_eq!(ret, TC_REDIRECT);
    assert_eq!(routed[..12], out[..12]);
    assert_eq!(routed[22], out[22] - 1);
    verify(&routed).unwrap();
    assert_eq!(dp.event(Event::RedirectRouted), 2);

    // TTL 1 and no route: the stack's business, untouched.
    let mut dying = from_self(FrameSpec::tcp(SELF_IP, 40000, "192.0.2.9", 443, b""));
    dying[22] = 1;
    let csum = ip_header_csum(&dying[14..34]);
    dying[24..26].copy_from_slice(&csum.to_be_bytes());
    assert_eq!(fold(sum16(&dying[14..34], 0)), 0xffff);
    for (name, frame) in [
        ("ttl 1", dying),
        (
            "no route",
            from_self(FrameSpec::tcp(SELF_IP, 1, "203.0.113.1", 2, b"")),
        ),
    ] {
        let (ret, after) = dp.run_tc(TC_FROM_CONTAINER, &frame);
        assert_eq!((ret, after), (TC_NEXT, frame), "{name}");
    }
    assert_eq!(dp.event(Event::RedirectRouted), 2);
}

/// Hairpin (a container to a published port of the host): DNAT to the
/// published container, the client's source kept (or, for its own
/// publication, replaced by the address it connected to), delivered
/// straight in; the reply through the hairpin map, across networks too;
/// fragments, foreign targets, internal networks and foreign addresses
/// refused or left alone. Every translated checksum verified, and a bad one
/// stays bad.
#[test]
fn hairpin_translates_both_ways_and_refuses_what_it_cannot() {
    in_private_netns(&[], hairpin_table);
}

/// The host address the containers connect to.
const HOST_ADDR: &str = "192.0.2.1";

fn hairpin_key(src: &str, sport: u16, dst: &str, dport: u16, proto: u8) -> CtKey {
    CtKey {
        src_addr_be: be32(src),
        dst_addr_be: be32(dst),
        src_port_be: sport.to_be(),
        dst_port_be: dport.to_be(),
        proto,
        _pad: [0; 3],
    }
}

/// A fresh datapath where `sender` (with `mac`, on `net`) sends on the
/// test-run interface; SELF and PEER on net1, OTHER on net2; the host
/// address local; 8080/tcp and 5353/udp published to PEER, 9090/tcp to
/// SELF, 6060/tcp to OTHER, 7070/tcp to an address outside.
fn hairpin_dp(sender: &str, mac: [u8; 6], net: &NetPolicy) -> Dp {
    let net1 = policy(1, 0, "10.1.0.0", "255.255.255.0");
    let net2 = policy(2, 0, "10.2.0.0", "255.255.255.0");
    let mut dp = Dp::new();
    dp.endpoint_at(SELF_IP, &net1, 0, SELF_MAC);
    dp.endpoint_at(PEER_IP, &net1, 0, PEER_MAC);
    dp.endpoint_at(OTHER_IP, &net2, 0, PEER_MAC);
    dp.endpoint_iface(TEST_RUN_IFINDEX, net);
    dp.endpoint_at(sender, net, TEST_RUN_IFINDEX, mac);
    dp.add_local(HOST_ADDR);
    dp.publish("0.0.0.0", 8080, IPPROTO_TCP, PEER_IP, 80);
    dp.publish("0.0.0.0", 5353, IPPROTO_UDP, PEER_IP, 53);
    dp.publish("0.0.0.0", 9090, IPPROTO_TCP, SELF_IP, 90);
    dp.publish("0.0.0.0", 7070, IPPROTO_TCP, REMOTE, 70);
    dp.publish("0.0.0.0", 6060, IPPROTO_TCP, OTHER_IP, 60);
    dp
}

fn hairpin_table() {
    let net1 = policy(1, 0, "10.1.0.0", "255.255.255.0");
    let net2 = policy(2, 0, "10.2.0.0", "255.255.255.0");
    let internal = policy(1, NET_F_INTERNAL, "10.1.0.0", "255.255.255.0");
    let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();

    // Forward to a neighbour's publication, TCP and UDP: the destination
    // is the neighbour's, the source stays, TTL one less, the MACs the
    // neighbour's and its gateway's, checksums right.
    for (proto, frame, port) in [
        (
            IPPROTO_TCP,
            from_self(FrameSpec::tcp(SELF_IP, 40000, HOST_ADDR, 8080, b"hi")),
            80,
        ),
        (
            IPPROTO_UDP,
            from_self(FrameSpec::udp(SELF_IP, 40000, HOST_ADDR, 5353, b"q")),
            53,
        ),
    ] {
        let mut dp = hairpin_dp(SELF_IP, SELF_MAC, &net1);
        let (ret, after) = dp.run_tc(TC_FROM_CONTAINER, &frame);
        assert_eq!(ret, TC_REDIRECT, "{proto}: {:?}", dp.events());
        let c = verify(&after).expect("checksums after hairpin DNAT");
        assert_eq!((c.src, c.sport), (ip(SELF_IP), 40000), "{proto}");
        assert_eq!((c.dst, c.dport), (ip(PEER_IP), port), "{proto}");
        assert_eq!(after[..6], PEER_MAC);
        assert_eq!(after[6..12], GW_MAC);
        assert_eq!(after[22], frame[22] - 1, "TTL");
        let flow = dp
            .ct_in(HAIRPIN, &hairpin_key(PEER_IP, port, SELF_IP, 40000, proto))
            .expect("flow recorded under its reply tuple");
        assert_eq!(
            (
                flow.orig_addr_be,
                u16::from_be(flow.orig_port_be),
                flow.flags
            ),
            (be32(HOST_ADDR), if port == 80 { 8080 } else { 5353 }, 0)
        );
        assert_eq!(
            dp.events(),
            vec![(Event::RedirectToEndpoint, 1), (Event::HairpinForward, 1)]
        );
    }

    // The reply, from the neighbour, and from another network's container
    // (a hairpin flow crosses networks; without one it is isolated).
    for (sender, net) in [(PEER_IP, net1), (OTHER_IP, net2)] {
        let mut dp = hairpin_dp(sender, PEER_MAC, &net);
        let reply = with_src_mac(
            FrameSpec::tcp(sender, 80, SELF_IP, 40000, b"answer")
                .tcp_with(0x12, 7, 2)
                .build(),
            PEER_MAC,
        );
        let (ret, after) = dp.run_tc(TC_FROM_CONTAINER, &reply);
        if sender == OTHER_IP {
            assert_eq!((ret, &after), (TC_DROP, &reply), "no flow: isolated");
            assert_eq!(dp.events(), vec![(Event::DropIsolation, 1)]);
        }
        dp.add_ct(
            HAIRPIN,
            &hairpin_key(sender, 80, SELF_IP, 40000, IPPROTO_TCP),
            &CtValue {
                orig_addr_be: be32(HOST_ADDR),
                orig_port_be: 8080u16.to_be(),
                stats_slot: 3,
                ..CtValue::default()
            },
        );
        let (ret, after) = dp.run_tc(TC_FROM_CONTAINER, &reply);
        assert_eq!(ret, TC_REDIRECT, "{sender}: {:?}", dp.events());
        let c = verify(&after).expect("checksums after hairpin reverse NAT");
        assert_eq!((c.src, c.sport), (ip(HOST_ADDR), 8080), "{sender}");
        assert_eq!((c.dst, c.dport), (ip(SELF_IP), 40000), "{sender}");
        assert_eq!(after[..6], SELF_MAC);
        assert_eq!(dp.event(Event::HairpinReply), 1);
    }

    // Its own publication: the source becomes the address it connected
    // to, and the reply comes back to the container itself.
    let mut dp = hairpin_dp(SELF_IP, SELF_MAC, &net1);
    let syn = from_self(FrameSpec::tcp(SELF_IP, 40000, HOST_ADDR, 9090, b""));
    let (ret, after) = dp.run_tc(TC_FROM_CONTAINER, &syn);
    assert_eq!(ret, TC_REDIRECT, "{:?}", dp.events());
    let c = verify(&after).unwrap();
    assert_eq!((c.src, c.sport), (ip(HOST_ADDR), 40000));
    assert_eq!((c.dst, c.dport), (ip(SELF_IP), 90));
    let flow = dp
        .ct_in(
            HAIRPIN,
            &hairpin_key(SELF_IP, 90, HOST_ADDR, 40000, IPPROTO_TCP),
        )
        .unwrap();
    assert_eq!(flow.flags, HAIRPIN_F_SELF);
    let synack = from_self(FrameSpec::tcp(SELF_IP, 90, HOST_ADDR, 40000, b"").tcp_with(0x12, 9, 2));
    let (ret, after) = dp.run_tc(TC_FROM_CONTAINER, &synack);
    assert_eq!(ret, TC_REDIRECT);
    let c = verify(&after).unwrap();
    assert_eq!((c.src, c.sport), (ip(HOST_ADDR), 9090));
    assert_eq!((c.dst, c.dport), (ip(SELF_IP), 40000));

    // A bad checksum stays bad (the negative control: the rewrite is
    // incremental, it never launders a corrupt packet).
    let mut bad = FrameSpec::udp(SELF_IP, 40000, HOST_ADDR, 5353, b"q");
    bad.csum = L4Csum::Corrupt;
    let mut dp = hairpin_dp(SELF_IP, SELF_MAC, &net1);
    let (ret, after) = dp.run_tc(TC_FROM_CONTAINER, &from_self(bad));
    assert_eq!(ret, TC_REDIRECT);
    assert!(verify(&after).is_err(), "a corrupt checksum stays corrupt");

    // Refusals with their reasons (the frame untouched), what is left
    // alone, and an internal network's limits.
    let mut first_frag = FrameSpec::udp(SELF_IP, 40000, HOST_ADDR, 5353, b"frag");
    first_frag.frag_off = 0x2000;
    let cases: Vec<(&str, NetPolicy, Vec<u8>, Outcome)> = vec![
        (
            "first fragment",
            net1,
            from_self(first_frag),
            Outcome::Drop(Event::DropHairpinFragment),
        ),
        (
            "target outside netagent",
            net1,
            tcp_to_port(HOST_ADDR, 7070),
            Outcome::Drop(Event::DropHairpinForeign),
        ),
        (
            "another network's publication",
            net1,
            tcp_to_port(HOST_ADDR, 6060),
            Outcome::Translated,
        ),
        (
            "internal network, a neighbour's publication",
            internal,
            tcp_to_port(HOST_ADDR, 8080),
            Outcome::Translated,
        ),
        (
            "internal network, another network's publication",
            internal,
            tcp_to_port(HOST_ADDR, 6060),
            Outcome::Drop(Event::DropInternal),
        ),
        (
            "not published",
            net1,
            tcp_to_port(HOST_ADDR, 8081),
            Outcome::Untouched,
        ),
        (
            "a wildcard publication on an address not the host's",
            net1,
            tcp_to_port(REMOTE, 8080),
            Outcome::Untouched,
        ),
    ];
    for (name, net, frame, outcome) in cases {
        let mut dp = hairpin_dp(SELF_IP, SELF_MAC, &net);
        let (ret, after) = dp.run_tc(TC_FROM_CONTAINER, &frame);
        match outcome {
            Outcome::Drop(reason) => {
                assert_eq!((ret, &after), (TC_DROP, &frame), "{name}");
                assert_eq!(dp.events(), vec![(reason, 1)], "{name}");
            }
            Outcome::Translated => {
                assert_eq!(ret, TC_REDIRECT, "{name}: {:?}", dp.events());
                assert_eq!(dp.event(Event::HairpinForward), 1, "{name}");
            }
            Outcome::Untouched => {
                assert_eq!((ret, &after), (TC_NEXT, &frame), "{name}");
                assert_eq!(dp.events(), vec![], "{name}");
            }
        }
    }
}

/// What a hairpin case expects.
enum Outcome {
    Drop(Event),
    Translated,
    Untouched,
}

fn tcp_to_port(dst: &str, port: u16) -> Vec<u8> {
    from_self(FrameSpec::tcp(SELF_IP, 40000, dst, port, b""))
}

/// IPv6 out of a container on a dual-stack network: fails closed without
/// an IPv6 entry, checks the source (global or link-local, with the MAC),
/// keeps neighbour discovery honest (advertisements only for its own
/// address, link-layer options only with its own MAC, no router
/// advertisements or redirects, nothing fragmented), walks extension
/// headers, and applies isolation, icc and internal as for IPv4.
#[test]
fn container_ipv6_is_checked_and_isolated() {
    in_private_netns(&[], ipv6_table);
}

const SELF6: &str = "fd00:1::2";
const PEER6: &str = "fd00:1::3";
const OTHER6: &str = "fd00:2::3";
const SOLICITED: &str = "ff02::1:ff00:3";

/// The link-local address of `mac` (EUI-64), as the agent gives it.
fn ll(mac: [u8; 6]) -> String {
    netagent::host::link_local6(mac).to_string()
}

fn from6(src: &str, dst: &str, proto: u8, payload: &[u8]) -> Vec<u8> {
    ipv6_frame(SELF_MAC, src, dst, &[], proto, payload)
}

fn tcp6(dst: &str) -> Vec<u8> {
    from6(SELF6, dst, IPPROTO_TCP, &[0; 20])
}

fn ipv6_table() {
    let net1 = policy(1, 0, "10.1.0.0", "255.255.255.0");
    let net2 = policy(2, 0, "10.2.0.0", "255.255.255.0");
    let no_icc = policy(1, NET_F_NO_ICC, "10.1.0.0", "255.255.255.0");
    let internal = policy(1, NET_F_INTERNAL, "10.1.0.0", "255.255.255.0");
    let icmp6 = |src: &str, dst: &str, kind: u8, body: &[u8]| {
        from6(src, dst, IPPROTO_ICMPV6, &icmpv6(kind, body))
    };
    let self_ll = ll(SELF_MAC);
    let hop_by_hop = (0u8, vec![0, 0, 1, 4, 0, 0, 0, 0]);
    let dest_opts = |n| {
        (60u8, {
            let mut v = vec![0, 0, 1, 4, 0, 0, 0, 0];
            v[7] = n;
            v
        })
    };
    let five_ext = {
        let ext: Vec<(u8, Vec<u8>)> = (0..5).map(dest_opts).collect();
        ipv6_frame(SELF_MAC, SELF6, PEER6, &ext, IPPROTO_TCP, &[0; 20])
    };
    // A payload length claiming more than arrived.
    let mut truncated = tcp6(PEER6);
    truncated[18..20].copy_from_slice(&200u16.to_be_bytes());
    let fragment_header = (44u8, vec![0, 0, 0, 1, 0, 0, 0, 7]);
    type Case = (&'static str, NetPolicy, Vec<u8>, Option<Event>, bool);
    // (name, source network, frame, drop reason, delivered to the peer)
    let cases: Vec<Case> = vec![
        ("to a neighbour", net1, tcp6(PEER6), None, true),
        (
            "link-local to a neighbour's link-local",
            net1,
            from6(&self_ll, &ll(PEER_MAC), IPPROTO_UDP, &[0; 8]),
            None,
            true,
        ),
        ("to the outside", net1, tcp6("2001:db8::9"), None, false),
        (
            "to another network",
            net1,
            tcp6(OTHER6),
            Some(Event::DropIsolation),
            false,
        ),
        (
            "a neighbour's source",
            net1,
            from6(PEER6, "2001:db8::9", IPPROTO_TCP, &[0; 20]),
            Some(Event::DropSpoofed),
            false,
        ),
        (
            "its address with another MAC",
            net1,
            ipv6_frame(PEER_MAC, SELF6, "2001:db8::9", &[], IPPROTO_TCP, &[0; 20]),
            Some(Event::DropSpoofed),
            false,
        ),
        (
            "::1",
            net1,
            tcp6("::1"),
            Some(Event::DropLoopbackDst),
            false,
        ),
        (
            "IPv4-mapped",
            net1,
            tcp6("::ffff:10.0.0.1"),
            Some(Event::DropLoopbackDst),
            false,
        ),
        (
            "DAD probe from ::",
            net1,
            icmp6("::", SOLICITED, 135, &nd_body(SELF6, None)),
            None,
            false,
        ),
        (
            "UDP from ::",
            net1,
            from6("::", "ff02::1", IPPROTO_UDP, &[0; 8]),
            Some(Event::DropSpoofed),
            false,
        ),
        // A solicitation for a neighbour goes straight to it (left to the
        // bridge, it would cross br_netfilter's FORWARD hook).
        (
            "solicitation with its own MAC",
            net1,
            icmp6(SELF6, SOLICITED, 135, &nd_body(PEER6, Some((1, SELF_MAC)))),
            None,
            true,
        ),
        (
            "solicitation for the gateway",
            net1,
            icmp6(
                SELF6,
                "ff02::1:ff00:1",
                135,
                &nd_body("fd00:1::1", Some((1, SELF_MAC))),
            ),
            None,
            false,
        ),
        (
            "solicitation for another network's address",
            net1,
            icmp6(SELF6, SOLICITED, 135, &nd_body(OTHER6, Some((1, SELF_MAC)))),
            None,
            false,
        ),
        (
            "solicitation with a neighbour's MAC",
            net1,
            icmp6(SELF6, SOLICITED, 135, &nd_body(PEER6, Some((1, PEER_MAC)))),
            Some(Event::DropSpoofed),
            false,
        ),
        (
            "advertisement of its own address",
            net1,
            icmp6(SELF6, PEER6, 136, &nd_body(SELF6, Some((2, SELF_MAC)))),
            None,
            true,
        ),
        (
            "advertisement of a neighbour's address",
            net1,
            icmp6(SELF6, "ff02::1", 136, &nd_body(PEER6, Some((2, SELF_MAC)))),
            Some(Event::DropSpoofed),
            false,
        ),
        (
            "router advertisement",
            net1,
            icmp6(&self_ll, "ff02::1", 134, &[0; 12]),
            Some(Event::DropSpoofed),
            false,
        ),
        (
            "redirect",
            net1,
            icmp6(&self_ll, PEER6, 137, &[0; 36]),
            Some(Event::DropSpoofed),
            false,
        ),
        (
            "router advertisement behind a hop-by-hop header",
            net1,
            ipv6_frame(
                SELF_MAC,
                &self_ll,
                "ff02::1",
                std::slice::from_ref(&hop_by_hop),
                IPPROTO_ICMPV6,
                &icmpv6(134, &[0; 12]),
            ),
            Some(Event::DropSpoofed),
            false,
        ),
        (
            "TCP behind a hop-by-hop header",
            net1,
            ipv6_frame(SELF_MAC, SELF6, PEER6, &[hop_by_hop], IPPROTO_TCP, &[0; 20]),
            None,
            true,
        ),
        (
            "a fragmented solicitation",
            net1,
            ipv6_frame(
                SELF_MAC,
                SELF6,
                SOLICITED,
                &[fragment_header],
                IPPROTO_ICMPV6,
                &icmpv6(135, &nd_body(PEER6, Some((1, PEER_MAC)))),
            ),
            Some(Event::DropSpoofed),
            false,
        ),
        (
            "five extension headers",
            net1,
            five_ext,
            Some(Event::DropCtrProtocol),
            false,
        ),
        (
            "payload length past the frame",
            net1,
            truncated,
            Some(Event::DropCtrProtocol),
            false,
        ),
        (
            "icc off, to a neighbour",
            no_icc,
            tcp6(PEER6),
            Some(Event::DropIcc),
            false,
        ),
        (
            "icc off, solicitation",
            no_icc,
            icmp6(SELF6, SOLICITED, 135, &nd_body(PEER6, Some((1, SELF_MAC)))),
            None,
            true,
        ),
        (
            "icc off, UDP to all nodes",
            no_icc,
            from6(SELF6, "ff02::1", IPPROTO_UDP, &[0; 8]),
            Some(Event::DropIcc),
            false,
        ),
        (
            "internal, outside the subnet",
            internal,
            tcp6("2001:db8::9"),
            Some(Event::DropInternal),
            false,
        ),
        (
            "internal, the gateway",
            internal,
            tcp6("fd00:1::1"),
            None,
            false,
        ),
    ];
    for (name, net, frame, drop, to_peer) in cases {
        let mut dp = Dp::new();
        dp.endpoint_iface(TEST_RUN_IFINDEX, &net);
        dp.endpoint_iface6(TEST_RUN_IFINDEX, "fd00:1::", 64);
        for ip in [SELF6, self_ll.as_str()] {
            dp.endpoint_at6(ip, &net, TEST_RUN_IFINDEX, SELF_MAC);
        }
        for ip in [PEER6, ll(PEER_MAC).as_str()] {
            dp.endpoint_at6(ip, &net1, 0, PEER_MAC);
        }
        dp.endpoint_at6(OTHER6, &net2, 0, PEER_MAC);
        let (ret, after) = dp.run_tc(TC_FROM_CONTAINER, &frame);
        match drop {
            Some(reason) => {
                assert_eq!((ret, &after), (TC_DROP, &frame), "{name}");
                assert_eq!(dp.events(), vec![(reason, 1)], "{name}");
            }
            None if to_peer => {
                assert_eq!(ret, TC_REDIRECT, "{name}: {:?}", dp.events());
                assert_eq!(after[..6], PEER_MAC, "{name}");
                assert_eq!(after[6..], frame[6..], "{name}: bridged, untouched");
            }
            None => {
                assert_eq!(
                    (ret, &after),
                    (TC_NEXT, &frame),
                    "{name}: {:?}",
                    dp.events()
                );
                assert_eq!(dp.events(), vec![], "{name}");
            }
        }
    }

    // No IPv6 entry (an IPv4-only network): everything dropped.
    let mut dp = Dp::new();
    dp.endpoint_iface(TEST_RUN_IFINDEX, &net1);
    dp.endpoint_at6(SELF6, &net1, TEST_RUN_IFINDEX, SELF_MAC);
    let (ret, _) = dp.run_tc(TC_FROM_CONTAINER, &tcp6(PEER6));
    assert_eq!(ret, TC_DROP);
    assert_eq!(dp.events(), vec![(Event::DropCtrProtocol, 1)]);
}

/// IPv6 hairpin: a dual-stack container's TCP and UDP to the `[::]` side
/// of a neighbour's publication at a host IPv6 address is translated and
/// delivered straight in (checksums right, the flow recorded), the reply
/// gets the published source back, and reaching its own publication gets
/// the address it connected to as source; refused: a first fragment, a
/// target outside an internal network's subnet. A bad checksum stays bad.
#[test]
fn ipv6_hairpin_translates_both_ways_and_refuses_what_it_cannot() {
    in_private_netns(&[], ipv6_hairpin_table);
}

fn ipv6_hairpin_table() {
    use netagent_tests::packet::{checksum6_ok, l4_frame6};
    const HOST6: &str = "2001:db8::1";
    let net1 = policy(1, 0, "10.1.0.0", "255.255.255.0");
    let internal = policy(1, NET_F_INTERNAL, "10.1.0.0", "255.255.255.0");
    let v6 = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
    let port_at = |f: &[u8], off: usize| u16::from_be_bytes([f[off], f[off + 1]]);
    let setup = |sender: &str, mac: [u8; 6], net: &NetPolicy, subnet: &str| {
        let mut dp = Dp::new();
        dp.endpoint_iface(TEST_RUN_IFINDEX, net);
        dp.endpoint_iface6(TEST_RUN_IFINDEX, subnet, 64);
        dp.endpoint_at6(SELF6, &net1, 0, SELF_MAC);
        dp.endpoint_at6(PEER6, &net1, 0, PEER_MAC);
        dp.endpoint_at6(sender, net, TEST_RUN_IFINDEX, mac);
        dp.add_local6(HOST6);
        dp.publish6("::", 8080, IPPROTO_TCP, PEER6, 80);
        dp.publish6("::", 5353, IPPROTO_UDP, PEER6, 53);
        dp.publish6("::", 9090, IPPROTO_TCP, SELF6, 90);
        dp.publish6("::", 6060, IPPROTO_TCP, OTHER6, 60);
        dp
    };
    for (proto, port, to) in [(IPPROTO_TCP, 8080, 80), (IPPROTO_UDP, 5353, 53)] {
        let mut dp = setup(SELF6, SELF_MAC, &net1, "fd00:1::");
        let frame = l4_frame6(SELF_MAC, SELF6, 40000, HOST6, port, proto, b"hi");
        let (ret, after) = dp.run_tc(TC_FROM_CONTAINER, &frame);
        assert_eq!(ret, TC_REDIRECT, "{proto}: {:?}", dp.events());
        assert!(checksum6_ok(&after), "{proto}: checksum after hairpin DNAT");
        assert_eq!(
            (after[22..38].to_vec(), port_at(&after, 54)),
            (v6(SELF6).to_vec(), 40000)
        );
        assert_eq!(
            (after[38..54].to_vec(), port_at(&after, 56)),
            (v6(PEER6).to_vec(), to)
        );
        assert_eq!(after[..6], PEER_MAC);
        assert_eq!(after[21], frame[21] - 1, "hop limit");
        assert_eq!(dp.event(Event::HairpinForward), 1);
        // The reply, from the neighbour.
        let mut dp2 = setup(PEER6, PEER_MAC, &net1, "fd00:1::");
        // The flow the forward recorded, carried over.
        let key = datapath_common::CtKey6 {
            src_addr_be: datapath_common::ipv6_be(PEER6.parse().unwrap()),
            dst_addr_be: datapath_common::ipv6_be(SELF6.parse().unwrap()),
            src_port_be: to.to_be(),
            dst_port_be: 40000u16.to_be(),
            proto,
            _pad: [0; 3],
        };
        type Flows<'a> = aya::maps::HashMap<
            &'a mut aya::maps::MapData,
            datapath_common::CtKey6,
            datapath_common::CtValue6,
        >;
        let name = datapath_common::map_names::HAIRPIN6;
        let flow = Flows::try_from(dp.ebpf.map_mut(name).unwrap())
            .unwrap()
            .get(&key, 0)
            .expect("the flow, under its reply tuple");
        Flows::try_from(dp2.ebpf.map_mut(name).unwrap())
            .unwrap()
            .insert(&key, &flow, 0)
            .unwrap();
        let reply = l4_frame6(PEER_MAC, PEER6, to, SELF6, 40000, proto, b"answer");
        let (ret, back) = dp2.run_tc(TC_FROM_CONTAINER, &reply);
        assert_eq!(ret, TC_REDIRECT, "{proto} reply: {:?}", dp2.events());
        assert!(
            checksum6_ok(&back),
            "{proto}: checksum after the reply's NAT"
        );
        assert_eq!(
            (back[22..38].to_vec(), port_at(&back, 54)),
            (v6(HOST6).to_vec(), port)
        );
        assert_eq!(back[..6], SELF_MAC);
        assert_eq!(dp2.event(Event::HairpinReply), 1);
        // A bad checksum stays bad.
        let mut bad = frame.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let (_, after) = setup(SELF6, SELF_MAC, &net1, "fd00:1::").run_tc(TC_FROM_CONTAINER, &bad);
        assert!(
            !checksum6_ok(&after),
            "{proto}: a bad checksum was laundered"
        );
    }
    // Its own publication: the source becomes the address it connected to.
    let mut dp = setup(SELF6, SELF_MAC, &net1, "fd00:1::");
    let own = l4_frame6(SELF_MAC, SELF6, 40001, HOST6, 9090, IPPROTO_TCP, b"me");
    let (ret, after) = dp.run_tc(TC_FROM_CONTAINER, &own);
    assert_eq!(ret, TC_REDIRECT, "{:?}", dp.events());
    assert!(checksum6_ok(&after));
    assert_eq!(
        after[22..38],
        v6(HOST6),
        "seen from the address it connected to"
    );
    assert_eq!(after[38..54], v6(SELF6));
    // Refused.
    let first = ipv6_frame(
        SELF_MAC,
        SELF6,
        HOST6,
        &[(44, vec![0, 0, 0, 1, 0, 0, 0, 7])],
        IPPROTO_UDP,
        &[0x9c, 0x40, 0x14, 0xe9, 0, 16, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8],
    );
    for (name, net, subnet, frame, event) in [
        (
            "a first fragment",
            net1,
            "fd00:1::",
            first,
            Event::DropHairpinFragment,
        ),
        (
            "internal, another subnet's target",
            internal,
            "fd00:9::",
            l4_frame6(SELF_MAC, SELF6, 40000, HOST6, 8080, IPPROTO_TCP, b""),
            Event::DropInternal,
        ),
    ] {
        let mut dp = setup(SELF6, SELF_MAC, &net, subnet);
        assert_eq!(dp.run_tc(TC_FROM_CONTAINER, &frame).0, TC_DROP, "{name}");
        assert_eq!(dp.events(), vec![(event, 1)], "{name}");
    }
}
