//! BPF_PROG_TEST_RUN tables for the served-interface programs: DNAT at
//! XDP and TC ingress, reverse NAT at TC egress, what is left alone
//! byte-identical, what never reaches a container untranslated, and what
//! never leaves with a container's private address. Each case loads the
//! object afresh (fresh maps); checksums are verified from scratch by
//! `netagent_tests::packet`. Needs root; fails loudly without it.
#![allow(
    clippy::unwrap_used,
    reason = "tests panic on failure, with context from the asserts"
)]

use std::net::Ipv4Addr;

use datapath_common::{
    CtKey, CtValue, Event, NET_F_ROUTED,
    map_names::CT_TCP,
    prog_names::{TC_EGRESS, TC_INGRESS},
};
use netagent_tests::{
    dp::{
        CLIENT, CTR, CTR_MAC, Dp, GW_MAC, HOST, REMOTE, SLOT, TC_DROP, TC_NEXT, TC_REDIRECT,
        TEST_RUN_IFINDEX, XDP_PASS, be32, in_private_netns, policy,
    },
    packet::{
        Checked, ETH_P_ARP, ETH_P_IPV6, FrameSpec, IPPROTO_TCP, IPPROTO_UDP, L4Csum,
        assert_only_nat_fields_changed, ipv4_raw, non_ip_frame, verify,
    },
};

/// Asserts a DNAT to CTR:cport happened, with valid checksums and nothing
/// else changed.
fn assert_dnat(before: &[u8], after: &[u8], cport: u16) -> Checked {
    let checked = verify(after).unwrap_or_else(|e| panic!("output frame: {e}"));
    assert_eq!(checked.dst, CTR.parse::<Ipv4Addr>().unwrap());
    assert_eq!(checked.dport, cport);
    assert_only_nat_fields_changed(before, after, false);
    checked
}

#[test]
fn xdp_dnat_table() {
    let mut with_options = FrameSpec::tcp(CLIENT, 40000, HOST, 8080, b"GET / HTTP/1.0\r\n");
    with_options.ip_options = vec![0x94, 0x04, 0, 0]; // Router Alert, ihl = 6
    let mut udp_zero = FrameSpec::udp(CLIENT, 5353, HOST, 5353, b"no checksum");
    udp_zero.csum = L4Csum::Zero;
    let cases = [
        ("tcp syn", FrameSpec::tcp(CLIENT, 40000, HOST, 8080, b"")),
        ("tcp with payload and IPv4 options", with_options),
        (
            "udp with checksum",
            FrameSpec::udp(CLIENT, 5353, HOST, 5353, b"query"),
        ),
        (
            "udp odd length, source port 65535",
            FrameSpec::udp(CLIENT, 65535, HOST, 5353, b"odd"),
        ),
        ("udp checksum 0 stays 0", udp_zero),
        // A 9,000-byte jumbo frame: larger than a page, so the test run
        // hands it over as a multi-buffer packet (the program is loaded
        // `xdp.frags`); its length is the whole frame's.
        (
            "tcp jumbo frame, multi-buffer",
            FrameSpec::tcp(CLIENT, 40001, HOST, 8080, &[0x5a; 8946]),
        ),
    ];
    for (name, frame) in cases {
        let mut dp = Dp::new();
        dp.publish(HOST, 8080, IPPROTO_TCP, CTR, 80);
        dp.publish(HOST, 5353, IPPROTO_UDP, CTR, 53);
        let before = frame.build();
        let (ret, after) = dp.run_xdp(&before);
        assert_eq!(ret, XDP_PASS, "{name}");
        let cport = if frame.proto == IPPROTO_TCP { 80 } else { 53 };
        let checked = assert_dnat(&before, &after, cport);
        if frame.csum == L4Csum::Zero {
            assert_eq!(
                checked.l4_csum, 0,
                "{name}: zero UDP checksum must stay zero"
            );
        }
        assert_eq!(dp.event(Event::XdpDnat), 1, "{name}");
        // The reply tuple is tracked, pointing back at the published address.
        let key = CtKey {
            src_addr_be: be32(CTR),
            dst_addr_be: be32(CLIENT),
            src_port_be: cport.to_be(),
            dst_port_be: frame.sport.to_be(),
            proto: frame.proto,
            _pad: [0; 3],
        };
        let ct = dp
            .ct(&key)
            .unwrap_or_else(|| panic!("{name}: no conntrack entry"));
        assert_eq!(ct.orig_addr_be, be32(HOST), "{name}");
        assert_eq!(ct.orig_port_be, frame.dport.to_be(), "{name}");
        assert_eq!(ct.stats_slot, SLOT);
        let stats = dp.pub_stats();
        assert_eq!(stats.fwd_packets, 1, "{name}");
        assert_eq!(stats.fwd_bytes, (before.len() - 14) as u64, "{name}");
    }
}

#[test]
fn xdp_udp_checksum_that_becomes_zero_is_sent_as_all_ones() {
    // Pick a payload word so the translated packet's checksum is exactly 0
    // (its one's complement sum is 0xffff): RFC 768 then sends 0xffff.
    let mut translated = FrameSpec::udp(CLIENT, 5353, CTR, 53, &[0, 0, 0, 0]);
    translated.csum = L4Csum::Zero;
    let frame = translated.build();
    let l4 = &frame[34..];
    let sum = netagent_tests::packet::sum16(
        l4,
        netagent_tests::packet::pseudo_sum(
            CLIENT.parse().unwrap(),
            CTR.parse().unwrap(),
            IPPROTO_UDP,
            l4.len() as u16,
        ),
    );
    let filler = 0xffff - netagent_tests::packet::fold(sum);
    let payload = [filler.to_be_bytes()[0], filler.to_be_bytes()[1], 0, 0];

    let mut dp = Dp::new();
    dp.publish(HOST, 5353, IPPROTO_UDP, CTR, 53);
    let before = FrameSpec::udp(CLIENT, 5353, HOST, 5353, &payload).build();
    let (ret, after) = dp.run_xdp(&before);
    assert_eq!(ret, XDP_PASS);
    let checked = assert_dnat(&before, &after, 53);
    assert_eq!(checked.l4_csum, 0xffff);
}

/// What XDP does not translate it leaves byte-identical, untagged, for TC
/// ingress: fragments and ICMP (TC translates those), malformed headers,
/// checksum-partial seeds, and everything not published.
#[test]
fn xdp_leaves_everything_else_byte_identical() {
    let mut frag_first = FrameSpec::udp(CLIENT, 5353, HOST, 5353, b"first fragment");
    frag_first.frag_off = 0x2000; // MF
    let mut frag_later = FrameSpec::udp(CLIENT, 5353, HOST, 5353, b"later fragment");
    frag_later.frag_off = 0x0010; // offset 128 bytes
    let tcp = FrameSpec::tcp(CLIENT, 40000, HOST, 8080, b"payload").build();
    let mut bad_ihl = tcp.clone();
    bad_ihl[14] = 0x44;
    let mut not_v4 = tcp.clone();
    not_v4[14] = 0x65;
    let mut long_tot_len = tcp.clone();
    long_tot_len[16..18].copy_from_slice(&2000u16.to_be_bytes());
    let mut bad_udp_len = FrameSpec::udp(CLIENT, 5353, HOST, 5353, b"x").build();
    bad_udp_len[38..40].copy_from_slice(&500u16.to_be_bytes());
    let mut icmp = tcp.clone();
    icmp[23] = 1;
    let mut partial = FrameSpec::tcp(CLIENT, 40000, HOST, 8080, b"partial");
    partial.csum = L4Csum::PartialSeed;

    let cases: Vec<(&str, Vec<u8>, Option<Event>)> = vec![
        (
            "unpublished port",
            FrameSpec::tcp(CLIENT, 40000, HOST, 8081, b"").build(),
            None,
        ),
        (
            "unpublished address",
            FrameSpec::tcp(CLIENT, 40000, "10.0.0.9", 8080, b"").build(),
            None,
        ),
        (
            "other protocol",
            FrameSpec::udp(CLIENT, 40000, HOST, 8080, b"").build(),
            None,
        ),
        ("icmp", icmp, None),
        ("arp", non_ip_frame(ETH_P_ARP, 42), None),
        ("ipv6", non_ip_frame(ETH_P_IPV6, 80), None),
        ("runt ethernet", non_ip_frame(0x0800, 10), None),
        ("first fragment, left to TC", frag_first.build(), None),
        ("later fragment, left to TC", frag_later.build(), None),
        ("ip header cut", tcp[..30].to_vec(), None),
        ("tcp header cut", tcp[..40].to_vec(), None),
        ("ihl 4", bad_ihl, None),
        ("version 6 in an IPv4 frame", not_v4, None),
        ("total length past the frame", long_tot_len, None),
        ("udp length past the datagram", bad_udp_len, None),
        (
            "checksum-partial seed, left to TC",
            partial.build(),
            Some(Event::XdpDeferred),
        ),
    ];
    for (name, before, event) in cases {
        let mut dp = Dp::new();
        dp.publish(HOST, 8080, IPPROTO_TCP, CTR, 80);
        dp.publish(HOST, 5353, IPPROTO_UDP, CTR, 53);
        let (ret, after) = dp.run_xdp(&before);
        assert_eq!(ret, XDP_PASS, "{name}");
        assert_eq!(after, before, "{name}: frame must be byte-identical");
        assert_eq!(dp.event(Event::XdpDnat), 0, "{name}");
        let counted: Vec<(Event, u64)> = dp.events();
        match event {
            Some(event) => assert_eq!(counted, vec![(event, 1)], "{name}"),
            // TC ingress counts refusals: XDP must not count them twice.
            None => assert_eq!(counted, vec![], "{name}"),
        }
        assert_eq!(dp.pub_stats().fwd_packets, 0, "{name}");
    }
}

/// XDP tags before it rewrites: without room for its metadata mark, it
/// leaves the packet untouched to TC ingress instead of translating it
/// unmarked, which TC would take for an untranslated packet and send down
/// the stack's path. No room here: 216 bytes of metadata already fill the
/// 256-byte test-run headroom down to the 40 bytes the kernel keeps for
/// its `xdp_frame` (this kernel allows up to 255 bytes of metadata).
#[test]
fn xdp_without_metadata_room_leaves_the_packet_to_tc() {
    let mut dp = Dp::new();
    dp.publish(HOST, 8080, IPPROTO_TCP, CTR, 80);
    let before = FrameSpec::tcp(CLIENT, 40000, HOST, 8080, b"no room").build();
    let meta = [0xa5u8; 216];
    let (ret, meta_out, after) = dp.run_xdp_with_metadata(&meta, &before);
    assert_eq!(ret, XDP_PASS);
    assert_eq!(after, before, "translated without a mark");
    assert_eq!(meta_out, meta, "metadata untouched");
    assert_eq!(dp.event(Event::XdpNoMeta), 1);
    assert_eq!(dp.event(Event::XdpDnat), 0);
    // With room (4 bytes taken), the mark goes after them.
    let (ret, meta_out, after) = dp.run_xdp_with_metadata(&[0xa5; 4], &before);
    assert_eq!(ret, XDP_PASS);
    assert_eq!(meta_out.len(), 8);
    assert_dnat(&before, &after, 80);
    // And TC ingress translates what XDP left.
    let (ret, after) = dp.run_tc(TC_INGRESS, &before);
    assert_eq!(ret, TC_NEXT, "no endpoint registered: the stack delivers");
    assert_dnat(&before, &after, 80);
}

#[test]
fn xdp_wildcard_matches_only_local_addresses_and_exact_wins() {
    let mut dp = Dp::new();
    dp.publish("0.0.0.0", 8080, IPPROTO_TCP, CTR, 80);
    dp.add_local(HOST);
    let to_host = FrameSpec::tcp(CLIENT, 40000, HOST, 8080, b"").build();
    let (_, after) = dp.run_xdp(&to_host);
    assert_dnat(&to_host, &after, 80);

    let elsewhere = FrameSpec::tcp(CLIENT, 40000, "10.0.0.99", 8080, b"").build();
    let (_, after) = dp.run_xdp(&elsewhere);
    assert_eq!(after, elsewhere, "a non-local destination is not ours");
    let (ret, after) = dp.run_tc(TC_INGRESS, &elsewhere);
    assert_eq!((ret, after), (TC_NEXT, elsewhere));
    assert_eq!(dp.event(Event::PassNotLocal), 1, "counted once, by TC");

    // An exact publication on the same port wins over the wildcard.
    dp.publish(HOST, 8080, IPPROTO_TCP, "172.17.0.3", 8000);
    let (_, after) = dp.run_xdp(&to_host);
    let checked = verify(&after).unwrap();
    assert_eq!(checked.dst, "172.17.0.3".parse::<Ipv4Addr>().unwrap());
    assert_eq!(checked.dport, 8000);
}

/// A frame to 127.0.0.0/8 on a served interface is forged (a neighbour
/// sending to the host's MAC with a loopback destination, Docker #45610):
/// XDP leaves it (to be counted once), TC ingress drops it, publication
/// or not.
#[test]
fn loopback_destinations_are_dropped_never_translated() {
    let mut dp = Dp::new();
    dp.publish("127.0.0.1", 5000, IPPROTO_UDP, CTR, 5000);
    dp.publish("0.0.0.0", 5001, IPPROTO_UDP, CTR, 5001);
    dp.add_local("127.0.0.1");
    for port in [5000, 5001] {
        let forged = FrameSpec::udp(CLIENT, 1234, "127.0.0.1", port, b"forged").build();
        let (_, after) = dp.run_xdp(&forged);
        assert_eq!(after, forged, "port {port}: a loopback publication leaked");
        let (ret, _) = dp.run_tc(TC_INGRESS, &forged);
        assert_eq!(ret, TC_DROP, "port {port}");
    }
    let unpublished = FrameSpec::tcp(CLIENT, 1234, "127.0.0.53", 53, b"").build();
    assert_eq!(dp.run_tc(TC_INGRESS, &unpublished).0, TC_DROP);
    assert_eq!(dp.event(Event::DropLoopbackDst), 3);
    assert_eq!(dp.event(Event::TcDnat), 0);
}

#[test]
fn tc_ingress_dnat_with_helpers() {
    for (name, frame) in [
        ("tcp", FrameSpec::tcp(CLIENT, 40000, HOST, 8080, b"hello")),
        ("udp", FrameSpec::udp(CLIENT, 5353, HOST, 5353, b"odd")),
        ("udp zero checksum", {
            let mut f = FrameSpec::udp(CLIENT, 5353, HOST, 5353, b"zero");
            f.csum = L4Csum::Zero;
            f
        }),
    ] {
        let mut dp = Dp::new();
        dp.publish(HOST, 8080, IPPROTO_TCP, CTR, 80);
        dp.publish(HOST, 5353, IPPROTO_UDP, CTR, 53);
        let before = frame.build();
        let (ret, after) = dp.run_tc(TC_INGRESS, &before);
        assert_eq!(ret, TC_NEXT, "{name}");
        let cport = if frame.proto == IPPROTO_TCP { 80 } else { 53 };
        let checked = assert_dnat(&before, &after, cport);
        if frame.csum == L4Csum::Zero {
            assert_eq!(checked.l4_csum, 0, "{name}");
        }
        assert_eq!(dp.event(Event::TcDnat), 1, "{name}");
        // Already translated (by XDP): a second pass must not touch it.
        let (_, again) = dp.run_tc(TC_INGRESS, &after);
        assert_eq!(again, after, "{name}: translated twice");
    }
}

#[test]
fn tc_egress_reverse_nat() {
    let mut dp = Dp::new();
    let key = CtKey {
        src_addr_be: be32(CTR),
        dst_addr_be: be32(CLIENT),
        src_port_be: 80u16.to_be(),
        dst_port_be: 40000u16.to_be(),
        proto: IPPROTO_TCP,
        _pad: [0; 3],
    };
    dp.add_ct(
        CT_TCP,
        &key,
        &CtValue {
            orig_addr_be: be32(HOST),
            orig_port_be: 8080u16.to_be(),
            stats_slot: SLOT,
            ..Default::default()
        },
    );
    let reply = FrameSpec::tcp(CTR, 80, CLIENT, 40000, b"HTTP/1.0 200 OK\r\n").build();
    let (ret, after) = dp.run_tc(TC_EGRESS, &reply);
    assert_eq!(ret, TC_NEXT);
    let checked = verify(&after).unwrap();
    assert_eq!(checked.src, HOST.parse::<Ipv4Addr>().unwrap());
    assert_eq!(checked.sport, 8080);
    assert_only_nat_fields_changed(&reply, &after, true);
    assert_eq!(dp.event(Event::RevNat), 1);
    assert_eq!(dp.pub_stats().rev_packets, 1);

    for (name, other) in [
        (
            "other client port",
            FrameSpec::tcp(CTR, 80, CLIENT, 40001, b"x").build(),
        ),
        (
            "other protocol",
            FrameSpec::udp(CTR, 80, CLIENT, 40000, b"x").build(),
        ),
        (
            "other (unregistered) source",
            FrameSpec::tcp("172.17.0.9", 80, CLIENT, 40000, b"x").build(),
        ),
    ] {
        let (ret, after) = dp.run_tc(TC_EGRESS, &other);
        assert_eq!(ret, TC_NEXT, "{name}");
        assert_eq!(after, other, "{name}: untracked reply must be untouched");
    }
    assert_eq!(dp.event(Event::RevNat), 1);
}

/// Nothing from outside reaches a container address untranslated: not
/// TCP or UDP to unpublished ports, not ICMP, not other protocols, not
/// stray fragments; only a `routed` network's open ports (and pings) are
/// delivered by direct routing. The host's own addresses are the host's.
/// What TC ingress must do with a packet for a container address.
enum Want {
    Drop(Event),
    /// Delivered by direct routing (a `routed` network).
    Routed,
    /// Not a container's: passed on untouched, nothing counted.
    HostsBusiness,
}

#[test]
fn tc_ingress_drops_what_would_reach_a_container_untranslated() {
    in_private_netns(&[], || {
        let nat_net = policy(1, 0, "172.17.0.0", "255.255.0.0");
        let routed = policy(2, NET_F_ROUTED, "172.18.0.0", "255.255.0.0");
        let routed_ctr = "172.18.0.2";
        let mut later = FrameSpec::udp(CLIENT, 5353, CTR, 53, b"later");
        later.frag_off = 0x0010;
        let to_ctr: Vec<(&str, Vec<u8>, Want)> = vec![
            (
                "tcp to an unpublished port",
                FrameSpec::tcp(CLIENT, 40000, CTR, 22, b"").build(),
                Want::Drop(Event::DropUnpublished),
            ),
            (
                "udp request",
                FrameSpec::udp(CLIENT, 40000, CTR, 53, b"q").build(),
                Want::Drop(Event::DropUnpublished),
            ),
            (
                "udp to a published container port, but by address",
                FrameSpec::udp(CLIENT, 40000, CTR, 5353, b"q").build(),
                Want::Drop(Event::DropUnpublished),
            ),
            (
                "ping",
                FrameSpec::icmp_echo(CLIENT, CTR, 7, true, b"ping").build(),
                Want::Drop(Event::DropUnpublished),
            ),
            (
                "gre",
                ipv4_raw(CLIENT, CTR, 47, &[0; 24]),
                Want::Drop(Event::DropUnpublished),
            ),
            (
                "stray later fragment",
                later.build(),
                Want::Drop(Event::DropFragUntracked),
            ),
            (
                "tcp to a routed network's closed port",
                FrameSpec::tcp(CLIENT, 40000, routed_ctr, 22, b"").build(),
                Want::Drop(Event::DropUnpublished),
            ),
            (
                "tcp to a routed network's open port",
                FrameSpec::tcp(CLIENT, 40000, routed_ctr, 80, b"").build(),
                Want::Routed,
            ),
            (
                "ping to a routed network's container",
                FrameSpec::icmp_echo(CLIENT, routed_ctr, 7, true, b"ping").build(),
                Want::Routed,
            ),
            (
                "to the host: the host's business",
                FrameSpec::tcp(CLIENT, 40000, HOST, 22, b"").build(),
                Want::HostsBusiness,
            ),
        ];
        for (name, frame, drop) in to_ctr {
            let mut dp = Dp::new();
            dp.publish(HOST, 5353, IPPROTO_UDP, CTR, 5353);
            dp.endpoint_at(CTR, &nat_net, TEST_RUN_IFINDEX, CTR_MAC);
            dp.endpoint_at(routed_ctr, &routed, TEST_RUN_IFINDEX, CTR_MAC);
            dp.open_port(routed_ctr, 80, IPPROTO_TCP);
            let (ret, after) = dp.run_tc(TC_INGRESS, &frame);
            match drop {
                Want::HostsBusiness => {
                    assert_eq!((ret, &after), (TC_NEXT, &frame), "{name}");
                    assert_eq!(dp.events(), vec![], "{name}");
                }
                Want::Drop(reason) => {
                    assert_eq!(ret, TC_DROP, "{name}");
                    assert_eq!(after, frame, "{name}: a drop never rewrites");
                    assert_eq!(dp.events(), vec![(reason, 1)], "{name}");
                }
                Want::Routed => {
                    assert_eq!(ret, TC_REDIRECT, "{name}: delivered by direct routing");
                    assert_eq!(after[..6], CTR_MAC, "{name}");
                    assert_eq!(after[6..12], GW_MAC, "{name}");
                    assert_eq!(dp.event(Event::RoutedIn), 1, "{name}");
                }
            }
        }
    });
}

/// Nothing leaves a served interface with a `nat` network container's
/// source address: what masquerade cannot translate (other protocols,
/// ICMP other than echo, malformed headers, a served interface without an
/// address) is dropped and counted. The host's own packets, and a
/// `routed` network's containers (their addresses are meant to be
/// routed), go on.
#[test]
fn tc_egress_drops_what_would_leave_with_a_private_address() {
    in_private_netns(&[], || {
        let nat_net = policy(1, 0, "10.1.0.0", "255.255.255.0");
        let routed = policy(2, NET_F_ROUTED, "10.2.0.0", "255.255.255.0");
        let mut timestamp = FrameSpec::icmp_echo("10.1.0.2", REMOTE, 7, true, b"tstamp").build();
        timestamp[34] = 13; // ICMP timestamp request
        let mut truncated = FrameSpec::tcp("10.1.0.2", 40000, REMOTE, 443, b"").build();
        truncated.truncate(40);
        truncated[16..18].copy_from_slice(&26u16.to_be_bytes());
        let mut bad_ihl = FrameSpec::tcp("10.1.0.2", 40000, REMOTE, 443, b"").build();
        bad_ihl[14] = 0x44;
        let cases: Vec<(&str, Vec<u8>, bool, Option<Event>)> = vec![
            (
                "gre",
                ipv4_raw("10.1.0.2", REMOTE, 47, &[0; 24]),
                true,
                Some(Event::DropUntranslatable),
            ),
            (
                "sctp",
                ipv4_raw("10.1.0.2", REMOTE, 132, &[0; 32]),
                true,
                Some(Event::DropUntranslatable),
            ),
            (
                "icmp timestamp",
                timestamp,
                true,
                Some(Event::DropUntranslatable),
            ),
            (
                "tcp header cut",
                truncated,
                true,
                Some(Event::DropUntranslatable),
            ),
            ("ihl 4", bad_ihl, true, Some(Event::DropUntranslatable)),
            (
                "no masquerade address on the interface",
                FrameSpec::udp("10.1.0.2", 40000, REMOTE, 53, b"q").build(),
                false,
                Some(Event::DropNoMasqAddr),
            ),
            (
                "the host's own gre",
                ipv4_raw(HOST, REMOTE, 47, &[0; 24]),
                true,
                None,
            ),
            (
                "a routed network's container, gre",
                ipv4_raw("10.2.0.2", REMOTE, 47, &[0; 24]),
                true,
                None,
            ),
            (
                "a routed network's container, tcp: its own address",
                FrameSpec::tcp("10.2.0.2", 40000, REMOTE, 443, b"").build(),
                true,
                None,
            ),
        ];
        for (name, frame, masq, drop) in cases {
            let mut dp = Dp::new();
            dp.endpoint_addr("10.1.0.2", &nat_net);
            dp.endpoint_addr("10.2.0.2", &routed);
            if masq {
                dp.masq_addr(TEST_RUN_IFINDEX, HOST);
            }
            let (ret, after) = dp.run_tc(TC_EGRESS, &frame);
            assert_eq!(after, frame, "{name}: untouched");
            match drop {
                Some(reason) => {
                    assert_eq!(ret, TC_DROP, "{name}");
                    assert_eq!(dp.events(), vec![(reason, 1)], "{name}");
                }
                None => {
                    assert_eq!(ret, TC_NEXT, "{name}");
                    assert_eq!(dp.events(), vec![], "{name}");
                }
            }
        }
    });
}

/// IPv6 on a served interface: nothing untranslated reaches a container's
/// IPv6 address (or `::1`, `::/8`), and nothing leaves with one (a flow
/// without a masquerade address on the interface, or what masquerade
/// cannot translate); the host's own IPv6 passes both ways, through XDP
/// untouched.
#[test]
fn ipv6_is_kept_from_containers_both_ways() {
    use netagent_tests::packet::ipv6_frame;
    let mut dp = Dp::new();
    let net = policy(1, 0, "10.1.0.0", "255.255.255.0");
    dp.endpoint_at6("fd00:1::2", &net, 0, [2, 0, 0, 0, 0, 9]);
    let mac = [2, 0, 0, 0, 0, 1];
    let frame = |src: &str, dst: &str| ipv6_frame(mac, src, dst, &[], IPPROTO_TCP, &[0; 20]);
    for (name, prog, f, drop) in [
        (
            "to a container",
            TC_INGRESS,
            frame("2001:db8::9", "fd00:1::2"),
            Some(Event::DropUnpublished),
        ),
        (
            "to ::1",
            TC_INGRESS,
            frame("2001:db8::9", "::1"),
            Some(Event::DropLoopbackDst),
        ),
        (
            "to an IPv4-mapped address",
            TC_INGRESS,
            frame("2001:db8::9", "::ffff:127.0.0.1"),
            Some(Event::DropLoopbackDst),
        ),
        (
            "to the host",
            TC_INGRESS,
            frame("2001:db8::9", "2001:db8::1"),
            None,
        ),
        (
            "from a container, no masquerade address",
            TC_EGRESS,
            frame("fd00:1::2", "2001:db8::9"),
            Some(Event::DropNoMasqAddr),
        ),
        (
            "from a container, not TCP, UDP or echo",
            TC_EGRESS,
            ipv6_frame(mac, "fd00:1::2", "2001:db8::9", &[], 132, &[0; 20]),
            Some(Event::DropUntranslatable),
        ),
        (
            "from the host",
            TC_EGRESS,
            frame("2001:db8::1", "2001:db8::9"),
            None,
        ),
    ] {
        let mut dp2 = Dp::new();
        dp2.endpoint_at6("fd00:1::2", &net, 0, [2, 0, 0, 0, 0, 9]);
        let (ret, after) = dp2.run_tc(prog, &f);
        match drop {
            Some(reason) => {
                assert_eq!((ret, &after), (TC_DROP, &f), "{name}");
                assert_eq!(dp2.events(), vec![(reason, 1)], "{name}");
            }
            None => {
                assert_eq!((ret, &after), (TC_NEXT, &f), "{name}");
                assert_eq!(dp2.events(), vec![], "{name}");
            }
        }
        let (_, after) = dp.run_xdp(&f);
        assert_eq!(after, f, "{name}: XDP leaves IPv6 alone");
    }
}

/// IPv6 DNAT to the IPv6 side of a publication (a dual-stack container),
/// exact and wildcard on the host's IPv6 addresses only; the reply gets
/// the published source back at egress; checksums verified both ways,
/// with a corrupt one staying corrupt; fragmented packets and `::1` never
/// translated.
#[test]
fn ipv6_publications_translate_both_ways() {
    use datapath_common::{IPPROTO_UDP, PubKey6, PubValue6, ipv6_be, map_names::PUBLICATIONS6};
    use netagent_tests::packet::{checksum6_ok, ipv6_frame, l4_frame6};
    const HOST6: &str = "2001:db8::1";
    const CLIENT6: &str = "2001:db8::99";
    const CTR6: &str = "fd00:1::2";
    let v6 = |s: &str| ipv6_be(s.parse().unwrap());
    let mac = [2, 0, 0, 0, 0, 1];
    let net = policy(1, 0, "10.1.0.0", "255.255.255.0");
    let setup = || {
        let mut dp = Dp::new();
        dp.endpoint_at6(CTR6, &net, 0, [2, 0, 0, 0, 0, 9]);
        let mut pubs: aya::maps::HashMap<_, PubKey6, PubValue6> =
            aya::maps::HashMap::try_from(dp.ebpf.map_mut(PUBLICATIONS6).unwrap()).unwrap();
        for (port, proto) in [(8080u16, IPPROTO_TCP), (5353, IPPROTO_UDP)] {
            let key = PubKey6 {
                addr_be: [0; 4],
                port_be: port.to_be(),
                proto,
                _pad: 0,
            };
            let value = PubValue6 {
                addr_be: v6(CTR6),
                port_be: (port % 100).to_be(),
                _pad: 0,
                stats_slot: SLOT,
            };
            pubs.insert(&key, &value, 0).unwrap();
        }
        dp.add_local6(HOST6);
        dp
    };
    for (proto, port) in [(IPPROTO_TCP, 8080u16), (IPPROTO_UDP, 5353)] {
        let mut dp = setup();
        let frame = l4_frame6(mac, CLIENT6, 40000, HOST6, port, proto, b"hello");
        assert!(checksum6_ok(&frame));
        let (ret, after) = dp.run_tc(TC_INGRESS, &frame);
        assert_eq!(ret, TC_REDIRECT, "{proto}: {:?}", dp.events());
        assert!(checksum6_ok(&after), "{proto}: checksum after DNAT");
        assert_eq!(
            after[38..54],
            CTR6.parse::<std::net::Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(u16::from_be_bytes([after[56], after[57]]), port % 100);
        assert_eq!(after[21], frame[21] - 1, "hop limit");
        assert_eq!(dp.event(Event::TcDnat), 1);
        // The reply at egress: the published source back.
        let reply = l4_frame6(mac, CTR6, port % 100, CLIENT6, 40000, proto, b"answer");
        let (ret, out) = dp.run_tc(TC_EGRESS, &reply);
        assert_eq!(ret, TC_NEXT, "{proto}: {:?}", dp.events());
        assert!(checksum6_ok(&out), "{proto}: checksum after reverse NAT");
        assert_eq!(
            out[22..38],
            HOST6.parse::<std::net::Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(u16::from_be_bytes([out[54], out[55]]), port);
        assert_eq!(dp.event(Event::RevNat), 1);
        // A corrupt checksum stays corrupt.
        let mut bad = l4_frame6(mac, CLIENT6, 40001, HOST6, port, proto, b"bad");
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let (_, after) = dp.run_tc(TC_INGRESS, &bad);
        assert!(
            !checksum6_ok(&after),
            "{proto}: a corrupt checksum was laundered"
        );
    }
    // Not the host's address, fragmented, ::1: never translated.
    let frag = ipv6_frame(
        mac,
        CLIENT6,
        HOST6,
        &[(44, vec![0, 0, 0, 1, 0, 0, 0, 7])],
        IPPROTO_TCP,
        &[0; 20],
    );
    for (name, frame, ret_want) in [
        (
            "not the host's address",
            l4_frame6(mac, CLIENT6, 40000, "2001:db8::77", 8080, IPPROTO_TCP, b""),
            TC_NEXT,
        ),
        ("fragmented", frag, TC_NEXT),
        (
            "::1",
            l4_frame6(mac, CLIENT6, 40000, "::1", 8080, IPPROTO_TCP, b""),
            TC_DROP,
        ),
    ] {
        let mut dp = setup();
        let (ret, after) = dp.run_tc(TC_INGRESS, &frame);
        assert_eq!((ret, &after), (ret_want, &frame), "{name}");
        assert_eq!(dp.event(Event::TcDnat), 0, "{name}");
    }
    // A container's IPv6 with no tracked flow is masqueraded, and without
    // a masquerade address on the interface it never leaves.
    let mut dp = setup();
    let stray = l4_frame6(mac, CTR6, 80, CLIENT6, 40000, IPPROTO_TCP, b"");
    assert_eq!(dp.run_tc(TC_EGRESS, &stray).0, TC_DROP);
    assert_eq!(dp.events(), vec![(Event::DropNoMasqAddr, 1)]);
}
