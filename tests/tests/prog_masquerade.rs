//! BPF_PROG_TEST_RUN tables for masquerade: translation both ways with
//! checksums verified from scratch, the port pool (configured ranges,
//! linear probing, published ports and host sockets skipped), state-aware
//! timeouts, the per-container share of a destination's ports, and
//! identity flows of `routed` networks. Each runs in a private network
//! namespace (the test-run device is its loopback). Needs root.
#![allow(
    clippy::unwrap_used,
    reason = "tests panic on failure, with context from the asserts"
)]

use std::net::Ipv4Addr;

use datapath_common::{
    DEFAULT_MASQ_PORTS, Event, NET_F_ROUTED, SNAT_DIR_OUT, SNAT_DIR_REPLY, SNAT_F_CLOSING,
    SNAT_F_IDENTITY, SNAT_F_REPLIED, SnatKey, SnatValue,
    prog_names::{TC_EGRESS, TC_INGRESS},
};
use netagent_tests::{
    dp::{
        CTR, CTR_MAC, Dp, GW_MAC, HOST, REMOTE, TC_DROP, TC_NEXT, TC_REDIRECT, TEST_RUN_IFINDEX,
        be32, in_private_netns, monotonic_ns, policy,
    },
    packet::{
        FrameSpec, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, L4Csum, TCP_ACK, TCP_SYN,
        assert_only_nat_fields_changed, verify,
    },
};

const SRC: &str = "10.1.0.2";

/// A datapath with container 10.1.0.2 (delivered on the test-run device)
/// and the masquerade address HOST on the test-run device.
fn fresh() -> Dp {
    let mut dp = Dp::new();
    dp.endpoint_at(
        SRC,
        &policy(1, 0, "10.1.0.0", "255.255.255.0"),
        TEST_RUN_IFINDEX,
        CTR_MAC,
    );
    dp.masq_addr(TEST_RUN_IFINDEX, HOST);
    dp
}

/// Checks that `after` is `before` delivered to the container endpoint:
/// MACs set (container's, gateway's), TTL one less; returns `after` with
/// those fields put back, for the NAT-field comparison.
fn undo_delivery(before: &[u8], after: &[u8]) -> Vec<u8> {
    assert_eq!(after[..6], CTR_MAC, "destination MAC");
    assert_eq!(after[6..12], GW_MAC, "source MAC");
    assert_eq!(after[22], before[22] - 1, "TTL");
    let mut undone = after.to_vec();
    undone[..12].copy_from_slice(&before[..12]);
    undone[22] = before[22];
    undone
}

fn in_default_pool(port: u16) -> bool {
    DEFAULT_MASQ_PORTS
        .iter()
        .any(|r| (r.lo..=r.hi).contains(&port))
}

/// Masquerades one UDP datagram from `SRC:sport` to `dst:53`; returns the
/// verdict and the source port it got.
fn udp_out(dp: &mut Dp, sport: u16, dst: &str) -> (u32, u16) {
    let out = FrameSpec::udp(SRC, sport, dst, 53, b"q").build();
    let (ret, after) = dp.run_tc(TC_EGRESS, &out);
    (ret, verify(&after).unwrap().sport)
}

/// A datapath whose pool is the single port 61000, held by a flow of
/// 10.1.0.9:40000 to REMOTE:443 whose REPLY entry has `flags` and was last
/// seen at `last_seen_ns`; with the entry's key and a reply to the flow.
fn one_flow(proto: u8, flags: u8, last_seen_ns: u64) -> (Dp, SnatKey, SnatValue, Vec<u8>) {
    let mut dp = fresh();
    dp.masq_pool(61000, 61000, 1000);
    let net = policy(1, 0, "10.1.0.0", "255.255.255.0");
    dp.endpoint_at("10.1.0.9", &net, TEST_RUN_IFINDEX, CTR_MAC);
    let entry = SnatValue {
        addr_be: be32("10.1.0.9"),
        port_be: 40000u16.to_be(),
        flags,
        _pad: 0,
        last_seen_ns,
    };
    let reply_key = SnatKey {
        src_addr_be: be32(REMOTE),
        dst_addr_be: be32(HOST),
        src_port_be: 443u16.to_be(),
        dst_port_be: 61000u16.to_be(),
        proto,
        dir: SNAT_DIR_REPLY,
        _pad: [0; 2],
    };
    dp.set_snat(&reply_key, &entry);
    let reply = if proto == IPPROTO_TCP {
        FrameSpec::tcp(REMOTE, 443, HOST, 61000, b"").tcp_with(TCP_ACK, 1, 1)
    } else {
        FrameSpec::udp(REMOTE, 443, HOST, 61000, b"r")
    }
    .build();
    (dp, reply_key, entry, reply)
}

#[test]
fn container_flows_are_masqueraded_and_replies_translated_back() {
    in_private_netns(&[], || {
        let flows = [
            ("tcp", FrameSpec::tcp(SRC, 40000, REMOTE, 443, b"hello")),
            ("udp", FrameSpec::udp(SRC, 40001, REMOTE, 53, b"query")),
            ("udp zero checksum", {
                let mut f = FrameSpec::udp(SRC, 40002, REMOTE, 53, b"zero");
                f.csum = L4Csum::Zero;
                f
            }),
            (
                "icmp echo",
                FrameSpec::icmp_echo(SRC, REMOTE, 4242, true, b"ping"),
            ),
        ];
        for (name, flow) in flows {
            let mut dp = fresh();
            let out = flow.build();
            let (ret, masqueraded) = dp.run_tc(TC_EGRESS, &out);
            assert_eq!(ret, TC_NEXT, "{name}");
            assert_only_nat_fields_changed(&out, &masqueraded, true);
            // (A CHECKSUM_PARTIAL seed cannot be had here: test_run skbs
            // are CHECKSUM_NONE. The netns tests cover it, from containers
            // whose veths offload checksums.)
            let seen = verify(&masqueraded).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(seen.src, HOST.parse::<Ipv4Addr>().unwrap(), "{name}");
            let port = seen.sport;
            assert!(
                in_default_pool(port),
                "{name}: port {port} outside the pool"
            );
            if flow.csum == L4Csum::Zero {
                assert_eq!(seen.l4_csum, 0, "{name}: zero UDP checksum must stay zero");
            }
            assert_eq!(dp.event(Event::SnatOut), 1, "{name}");
            let entries = dp.snat_entries();
            assert_eq!(entries.len(), 2, "{name}: one OUT and one REPLY entry");
            assert!(entries.iter().any(|(k, _)| k.dir == SNAT_DIR_OUT));
            assert!(entries.iter().any(|(k, _)| k.dir == SNAT_DIR_REPLY));

            // The same flow keeps its port (a TCP flow's later packets are
            // not SYNs).
            let again = if flow.proto == IPPROTO_TCP {
                flow.clone().tcp_with(TCP_ACK, 2, 1).build()
            } else {
                out.clone()
            };
            let (_, again) = dp.run_tc(TC_EGRESS, &again);
            assert_eq!(
                verify(&again).unwrap().sport,
                port,
                "{name}: a flow keeps its port"
            );

            // The reply comes back to the container.
            let reply = if flow.proto == IPPROTO_ICMP {
                FrameSpec::icmp_echo(REMOTE, HOST, port, false, b"ping")
            } else {
                FrameSpec {
                    src: flow.dst,
                    dst: HOST.parse().unwrap(),
                    sport: flow.dport,
                    dport: port,
                    ..flow.clone()
                }
            };
            let reply = reply.build();
            let (ret, delivered) = dp.run_tc(TC_INGRESS, &reply);
            assert_eq!(ret, TC_REDIRECT, "{name}: delivered to the container");
            assert_only_nat_fields_changed(&reply, &undo_delivery(&reply, &delivered), false);
            let back = verify(&delivered).unwrap_or_else(|e| panic!("{name}: reply {e}"));
            assert_eq!(back.dst, SRC.parse::<Ipv4Addr>().unwrap(), "{name}");
            let want = if flow.proto == IPPROTO_ICMP {
                (0, flow.sport)
            } else {
                (flow.dport, flow.sport)
            };
            assert_eq!((back.sport, back.dport), want, "{name}");
            assert_eq!(dp.event(Event::SnatReply), 1, "{name}");

            // A reply to a port nobody holds is the host's.
            let stray = FrameSpec::udp(REMOTE, 53, HOST, port.wrapping_add(1), b"x").build();
            let (ret, untouched) = dp.run_tc(TC_INGRESS, &stray);
            assert_eq!((ret, untouched), (TC_NEXT, stray), "{name}");
        }
    });
}

#[test]
fn the_host_is_never_masqueraded_and_an_exhausted_pool_refuses() {
    in_private_netns(&[], || {
        let mut dp = fresh();
        let host_flow = FrameSpec::tcp(HOST, 40000, REMOTE, 443, b"").build();
        let (ret, after) = dp.run_tc(TC_EGRESS, &host_flow);
        assert_eq!((ret, after), (TC_NEXT, host_flow));
        assert_eq!(dp.event(Event::SnatOut), 0);

        // Every pool port published on the host (TCP): a new TCP flow has
        // no port and is dropped (replies to it would be taken for the
        // published flows); UDP still has its ports.
        let mut dp = fresh();
        dp.masq_pool(61000, 61015, 100);
        for port in 61000..=61015 {
            dp.publish("0.0.0.0", port, IPPROTO_TCP, CTR, 80);
        }
        let flow = FrameSpec::tcp(SRC, 40000, REMOTE, 443, b"").build();
        let (ret, after) = dp.run_tc(TC_EGRESS, &flow);
        assert_eq!((ret, after), (TC_DROP, flow));
        assert_eq!(dp.event(Event::DropSnatNoPort), 1);
        let (ret, port) = udp_out(&mut dp, 40001, REMOTE);
        assert_eq!(ret, TC_NEXT);
        assert!((61000..=61015).contains(&port));
    });
}

/// Ports are probed linearly from a random start, so a new flow finds the
/// one free port of a nearly full pool (random tries would miss it most of
/// the time), and only ports of the configured ranges are handed out.
#[test]
fn the_pool_is_probed_linearly_within_its_ranges() {
    in_private_netns(&[], || {
        for round in 0..8 {
            let mut dp = fresh();
            dp.masq_pool(62000, 62063, 1000);
            let free = 62000 + (round * 9) as u16;
            let live = SnatValue {
                addr_be: be32("10.1.0.9"),
                port_be: 1u16.to_be(),
                flags: SNAT_F_REPLIED,
                _pad: 0,
                last_seen_ns: monotonic_ns(),
            };
            for port in (62000..=62063u16).filter(|p| *p != free) {
                let key = SnatKey {
                    src_addr_be: be32(REMOTE),
                    dst_addr_be: be32(HOST),
                    src_port_be: 53u16.to_be(),
                    dst_port_be: port.to_be(),
                    proto: IPPROTO_UDP,
                    dir: SNAT_DIR_REPLY,
                    _pad: [0; 2],
                };
                dp.set_snat(&key, &live);
            }
            let (ret, port) = udp_out(&mut dp, 40000, REMOTE);
            assert_eq!((ret, port), (TC_NEXT, free), "round {round}");
            // Full now: the next flow to that destination has no port,
            // while another destination has the whole pool.
            let out = FrameSpec::udp(SRC, 40001, REMOTE, 53, b"q").build();
            assert_eq!(dp.run_tc(TC_EGRESS, &out).0, TC_DROP);
            assert_eq!(dp.event(Event::DropSnatNoPort), 1);
            let (ret, port) = udp_out(&mut dp, 40001, "198.51.100.21");
            assert_eq!(ret, TC_NEXT);
            assert!((62000..=62063).contains(&port));
        }
    });
}

/// A port held by a host socket (bound, or connected to that peer) is
/// never handed to a masqueraded flow: it would steal the host's replies.
#[test]
fn ports_held_by_host_sockets_are_skipped() {
    in_private_netns(&[&["addr", "add", "10.0.0.1/32", "dev", "lo"]], || {
        let tcp = std::net::TcpListener::bind(("0.0.0.0", 63000)).unwrap();
        let udp = std::net::UdpSocket::bind(("10.0.0.1", 63000)).unwrap();
        let mut dp = fresh();
        dp.masq_pool(63000, 63001, 1000);
        for i in 0..16u16 {
            let out = FrameSpec::tcp(SRC, 40000 + i, REMOTE, 1000 + i, b"").build();
            let (ret, after) = dp.run_tc(TC_EGRESS, &out);
            assert_eq!(ret, TC_NEXT);
            assert_eq!(verify(&after).unwrap().sport, 63001, "tcp flow {i}");
            let out = FrameSpec::udp(SRC, 40000 + i, REMOTE, 1000 + i, b"").build();
            let (ret, after) = dp.run_tc(TC_EGRESS, &out);
            assert_eq!(ret, TC_NEXT);
            assert_eq!(verify(&after).unwrap().sport, 63001, "udp flow {i}");
        }
        drop((tcp, udp));
    });
}

/// How long a flow holds its port depends on its state: unanswered TCP
/// 30 s, answered 24 h, closing 2 min; UDP 30 s unanswered, 2 min
/// answered. Expired REPLY entries translate nothing.
#[test]
fn ports_are_held_for_the_timeout_of_their_flows_state() {
    in_private_netns(&[], || {
        const S: u64 = 1_000_000_000;
        // (name, proto, flags, idle seconds, may the port be reclaimed)
        let cases = [
            ("tcp unanswered, 31 s", IPPROTO_TCP, 0, 31, true),
            ("tcp unanswered, 20 s", IPPROTO_TCP, 0, 20, false),
            (
                "tcp answered, 1 h",
                IPPROTO_TCP,
                SNAT_F_REPLIED,
                3600,
                false,
            ),
            (
                "tcp answered, 25 h",
                IPPROTO_TCP,
                SNAT_F_REPLIED,
                25 * 3600,
                true,
            ),
            (
                "tcp closing, 60 s",
                IPPROTO_TCP,
                SNAT_F_REPLIED | SNAT_F_CLOSING,
                60,
                false,
            ),
            (
                "tcp closing, 121 s",
                IPPROTO_TCP,
                SNAT_F_REPLIED | SNAT_F_CLOSING,
                121,
                true,
            ),
            ("udp unanswered, 31 s", IPPROTO_UDP, 0, 31, true),
            ("udp answered, 60 s", IPPROTO_UDP, SNAT_F_REPLIED, 60, false),
            (
                "udp answered, 121 s",
                IPPROTO_UDP,
                SNAT_F_REPLIED,
                121,
                true,
            ),
        ];
        for (name, proto, flags, idle, reclaimable) in cases {
            let (mut dp, reply_key, other, reply) =
                one_flow(proto, flags, monotonic_ns().wrapping_sub(idle * S));
            // A reply to the old flow: translated only while it lives.
            let (ret, _) = dp.run_tc(TC_INGRESS, &reply);
            let want = if reclaimable { TC_NEXT } else { TC_REDIRECT };
            assert_eq!(ret, want, "{name}: a reply to the old flow");
            if !reclaimable {
                // The reply refreshed it; age it again for the next step.
                let mut aged = other;
                aged.last_seen_ns = monotonic_ns().wrapping_sub(idle * S);
                aged.flags |= SNAT_F_REPLIED;
                dp.set_snat(&reply_key, &aged);
            }
            let new = if proto == IPPROTO_TCP {
                FrameSpec::tcp(SRC, 50000, REMOTE, 443, b"")
            } else {
                FrameSpec::udp(SRC, 50000, REMOTE, 443, b"q")
            }
            .build();
            let (ret, _) = dp.run_tc(TC_EGRESS, &new);
            let want = if reclaimable { TC_NEXT } else { TC_DROP };
            assert_eq!(ret, want, "{name}: a new flow for the port");
        }
    });
}

/// A flow another CPU refreshed a moment ago, with a clock read after this
/// CPU's (a reply and the container's next packet processed at once),
/// is alive: its reply is translated, never handed untranslated to the
/// host's stack (which would answer it with a reset and kill the flow).
#[test]
fn a_flow_refreshed_by_another_cpu_a_moment_ahead_is_alive() {
    const S: u64 = 1_000_000_000;
    in_private_netns(&[], || {
        for (proto, flags) in [
            (IPPROTO_TCP, 0),
            (IPPROTO_TCP, SNAT_F_REPLIED),
            (IPPROTO_UDP, SNAT_F_REPLIED),
        ] {
            // Stamped in this CPU's future (by far more than a real skew,
            // so the program's first load, which takes a while, cannot
            // bring the stamp into the past before the run).
            let (mut dp, _, _, reply) = one_flow(proto, flags, monotonic_ns() + 10 * S);
            let (ret, _) = dp.run_tc(TC_INGRESS, &reply);
            assert_eq!(ret, TC_REDIRECT, "proto {proto} flags {flags}");
            assert_eq!(dp.event(Event::SnatReply), 1, "proto {proto}");
        }
    });
}

/// One container may hold only its share of unanswered flows to one
/// destination; others (and it, to other destinations) are not starved.
/// An answered flow no longer counts.
#[test]
fn a_container_gets_only_its_share_of_a_destinations_ports() {
    in_private_netns(&[], || {
        let mut dp = fresh();
        dp.endpoint_at(
            "10.1.0.3",
            &policy(1, 0, "10.1.0.0", "255.255.255.0"),
            TEST_RUN_IFINDEX,
            CTR_MAC,
        );
        dp.masq_pool(61000, 61999, 3);
        let mut ports = Vec::new();
        for sport in 40000..40003 {
            let (ret, port) = udp_out(&mut dp, sport, REMOTE);
            assert_eq!(ret, TC_NEXT);
            ports.push(port);
        }
        let over = FrameSpec::udp(SRC, 40003, REMOTE, 53, b"q").build();
        assert_eq!(dp.run_tc(TC_EGRESS, &over).0, TC_DROP, "over its share");
        assert_eq!(dp.event(Event::DropSnatShare), 1);
        // Another destination, and another container, are not starved.
        assert_eq!(udp_out(&mut dp, 40003, "198.51.100.21").0, TC_NEXT);
        let neighbour = FrameSpec::udp("10.1.0.3", 40000, REMOTE, 53, b"q").build();
        assert_eq!(dp.run_tc(TC_EGRESS, &neighbour).0, TC_NEXT);
        // An answer takes a flow off the share.
        let answer = FrameSpec::udp(REMOTE, 53, HOST, ports[0], b"a").build();
        assert_eq!(dp.run_tc(TC_INGRESS, &answer).0, TC_REDIRECT);
        assert_eq!(udp_out(&mut dp, 40003, REMOTE).0, TC_NEXT);
        // TCP: SYNs only open flows; the share applies the same way.
        for i in 0..3u16 {
            let syn = FrameSpec::tcp(SRC, 41000 + i, REMOTE, 443, b"").build();
            assert_eq!(dp.run_tc(TC_EGRESS, &syn).0, TC_NEXT);
        }
        let syn = FrameSpec::tcp(SRC, 41003, REMOTE, 443, b"").build();
        assert_eq!(dp.run_tc(TC_EGRESS, &syn).0, TC_DROP);
        assert_eq!(dp.event(Event::DropSnatShare), 2);
    });
}

/// A `routed` network's container keeps its address; its flows get an
/// identity entry that lets their replies (and nothing else) in.
#[test]
fn routed_containers_keep_their_address_and_get_replies() {
    in_private_netns(&[], || {
        let mut dp = Dp::new();
        let routed = policy(2, NET_F_ROUTED, "10.2.0.0", "255.255.255.0");
        dp.endpoint_at("10.2.0.2", &routed, TEST_RUN_IFINDEX, CTR_MAC);
        dp.masq_addr(TEST_RUN_IFINDEX, HOST);
        let syn = FrameSpec::tcp("10.2.0.2", 40000, REMOTE, 443, b"").build();
        let (ret, after) = dp.run_tc(TC_EGRESS, &syn);
        assert_eq!((ret, after), (TC_NEXT, syn), "not translated");
        let entries = dp.snat_entries();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(entries[0].1.flags & SNAT_F_IDENTITY, SNAT_F_IDENTITY);
        let synack = FrameSpec::tcp(REMOTE, 443, "10.2.0.2", 40000, b"")
            .tcp_with(TCP_SYN | TCP_ACK, 9, 2)
            .build();
        let (ret, delivered) = dp.run_tc(TC_INGRESS, &synack);
        assert_eq!(ret, TC_REDIRECT, "the reply is let in");
        assert_eq!(verify(&delivered).unwrap().dport, 40000);
        assert_eq!(dp.event(Event::RoutedIn), 1);
        // Anything else to it is not.
        let other = FrameSpec::tcp(REMOTE, 443, "10.2.0.2", 40001, b"").build();
        assert_eq!(dp.run_tc(TC_INGRESS, &other).0, TC_DROP);
        assert_eq!(dp.event(Event::DropUnpublished), 1);
    });
}

/// IPv6 masquerade (NAT66): a container's TCP, UDP and ICMPv6 echo get
/// the served interface's IPv6 address and a pool port (the echo
/// identifier), the same port for the flow's next packet; replies get the
/// container's address and port back and are delivered to it; checksums
/// verified both ways, a corrupt one stays corrupt. Refused and counted:
/// a TCP packet that cannot open a flow, a port published on the
/// masquerade address, a later fragment whose first was not seen, another
/// protocol, an interface without an IPv6 address.
#[test]
fn ipv6_container_flows_are_masqueraded_and_replies_translated_back() {
    use datapath_common::IPPROTO_ICMPV6;
    use netagent_tests::packet::{
        checksum6_ok, echo6_frame, ipv6_frame, l4_frame6, with_checksum6,
    };
    const CTR6: &str = "fd00:1::2";
    const HOST6: &str = "2001:db8::1";
    const REMOTE6: &str = "2001:db8:ffff::9";
    let ip6 = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
    let mac = [2, 0, 0, 0, 0, 1];
    let net = policy(1, 0, "10.1.0.0", "255.255.255.0");
    let fresh6 = || {
        let mut dp = Dp::new();
        dp.endpoint_at6(CTR6, &net, TEST_RUN_IFINDEX, CTR_MAC);
        dp.masq_addr6(TEST_RUN_IFINDEX, HOST6);
        dp
    };
    let port_at = |f: &[u8], off: usize| u16::from_be_bytes([f[off], f[off + 1]]);
    for proto in [IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6] {
        let mut dp = fresh6();
        let out = match proto {
            IPPROTO_ICMPV6 => echo6_frame(mac, CTR6, REMOTE6, true, 4242),
            p => l4_frame6(mac, CTR6, 4242, REMOTE6, 443, p, b"out"),
        };
        // The echo identifier sits where a source port does not.
        let id_off = if proto == IPPROTO_ICMPV6 { 58 } else { 54 };
        let (ret, after) = dp.run_tc(TC_EGRESS, &out);
        assert_eq!(ret, TC_NEXT, "{proto}: {:?}", dp.events());
        assert!(checksum6_ok(&after), "{proto}: checksum after SNAT");
        assert_eq!(after[22..38], ip6(HOST6), "{proto}: source");
        assert_eq!(after[38..54], ip6(REMOTE6), "{proto}: destination kept");
        let port = port_at(&after, id_off);
        assert!(in_default_pool(port), "{proto}: port {port}");
        assert_eq!(dp.event(Event::SnatOut), 1);
        // The flow's next packet: the same port.
        let (_, again) = dp.run_tc(TC_EGRESS, &out);
        assert_eq!(
            port_at(&again, id_off),
            port,
            "{proto}: same flow, same port"
        );
        // A corrupt checksum stays corrupt.
        let mut bad = out.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let (_, after_bad) = dp.run_tc(TC_EGRESS, &bad);
        assert!(
            !checksum6_ok(&after_bad),
            "{proto}: a corrupt checksum was laundered"
        );
        // The reply: back to the container, delivered.
        let reply = match proto {
            IPPROTO_ICMPV6 => echo6_frame(mac, REMOTE6, HOST6, false, port),
            p => l4_frame6(mac, REMOTE6, 443, HOST6, port, p, b"back"),
        };
        let dport_off = if proto == IPPROTO_ICMPV6 { 58 } else { 56 };
        let (ret, back) = dp.run_tc(TC_INGRESS, &reply);
        assert_eq!(ret, TC_REDIRECT, "{proto}: {:?}", dp.events());
        assert!(
            checksum6_ok(&back),
            "{proto}: checksum after the reply's NAT"
        );
        assert_eq!(back[38..54], ip6(CTR6), "{proto}: destination");
        assert_eq!(port_at(&back, dport_off), 4242, "{proto}: port");
        assert_eq!(back[..6], CTR_MAC, "{proto}: delivered");
        assert_eq!(back[21], reply[21] - 1, "{proto}: hop limit");
        assert_eq!(dp.event(Event::SnatReply), 1);
        // A packet to another masquerade port is the host's.
        let stray = match proto {
            IPPROTO_ICMPV6 => echo6_frame(mac, REMOTE6, HOST6, false, port ^ 1),
            p => l4_frame6(mac, REMOTE6, 443, HOST6, port ^ 1, p, b"x"),
        };
        assert_eq!(dp.run_tc(TC_INGRESS, &stray), (TC_NEXT, stray), "{proto}");
    }

    // Refusals, each dropped and counted.
    let mut ack = l4_frame6(mac, CTR6, 4243, REMOTE6, 443, IPPROTO_TCP, b"");
    ack[54 + 13] = TCP_ACK;
    let ack = with_checksum6(ack);
    let later = ipv6_frame(
        mac,
        CTR6,
        REMOTE6,
        &[(44, vec![0, 0, 0, 0x40, 0, 0, 0, 7])],
        IPPROTO_UDP,
        &[0; 16],
    );
    let sctp = ipv6_frame(mac, CTR6, REMOTE6, &[], 132, &[0; 16]);
    for (name, frame, event) in [
        ("a TCP ACK of no flow", ack, Event::DropSnatNoFlow),
        (
            "a later fragment of no first",
            later,
            Event::DropFragUntracked,
        ),
        ("not TCP, UDP or echo", sctp, Event::DropUntranslatable),
    ] {
        let mut dp = fresh6();
        assert_eq!(dp.run_tc(TC_EGRESS, &frame).0, TC_DROP, "{name}");
        assert_eq!(dp.events(), vec![(event, 1)], "{name}");
    }
    // The only pool port published on the masquerade address: none free.
    let mut dp = fresh6();
    dp.masq_pool(61000, 61000, 1000);
    dp.publish6(HOST6, 61000, IPPROTO_UDP, CTR6, 53);
    let out = l4_frame6(mac, CTR6, 4244, REMOTE6, 53, IPPROTO_UDP, b"q");
    assert_eq!(dp.run_tc(TC_EGRESS, &out).0, TC_DROP);
    assert_eq!(dp.events(), vec![(Event::DropSnatNoPort, 1)]);
    // No IPv6 masquerade address on the interface.
    let mut dp = Dp::new();
    dp.endpoint_at6(CTR6, &net, TEST_RUN_IFINDEX, CTR_MAC);
    assert_eq!(dp.run_tc(TC_EGRESS, &out).0, TC_DROP);
    assert_eq!(dp.events(), vec![(Event::DropNoMasqAddr, 1)]);
}
