//! BPF_PROG_TEST_RUN tables for what NAT must translate besides the first
//! packet of a flow: ICMP errors about published and masqueraded flows,
//! both ways, through the packet they quote (every checksum verified from
//! scratch, the quoted ones included), and IPv4 fragments, whose later
//! parts carry no ports. Needs root.
#![allow(
    clippy::unwrap_used,
    reason = "tests panic on failure, with context from the asserts"
)]

use std::net::Ipv4Addr;

use datapath_common::{
    Event,
    prog_names::{TC_EGRESS, TC_INGRESS},
};
use netagent_tests::{
    dp::{
        CLIENT, CTR, CTR_MAC, Dp, HOST, REMOTE, TC_DROP, TC_NEXT, TC_REDIRECT, TEST_RUN_IFINDEX,
        in_private_netns, policy,
    },
    packet::{
        FrameSpec, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, ICMP_PORT_UNREACH, ICMP_TIME_EXCEEDED,
        IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, TCP_ACK, TCP_SYN, fragment, icmp_error, reassemble,
        verify, verify_icmp_error,
    },
};

const SRC: &str = "10.1.0.2";
const ROUTER: &str = "203.0.113.254";

/// Container CTR (published as HOST:8080/tcp and HOST:5353/udp) and
/// container SRC (masqueraded), both delivered on the test-run device.
fn fresh() -> Dp {
    let mut dp = Dp::new();
    let net = policy(1, 0, "10.0.0.0", "255.0.0.0");
    let docker = policy(2, 0, "172.17.0.0", "255.255.0.0");
    dp.endpoint_at(SRC, &net, TEST_RUN_IFINDEX, CTR_MAC);
    dp.endpoint_at(CTR, &docker, TEST_RUN_IFINDEX, CTR_MAC);
    dp.masq_addr(TEST_RUN_IFINDEX, HOST);
    dp.publish(HOST, 8080, IPPROTO_TCP, CTR, 80);
    dp.publish(HOST, 5353, IPPROTO_UDP, CTR, 53);
    dp
}

/// Opens a published flow (the client's first packet in, the container's
/// answer out); returns the answer as it left (the packet a router's
/// error would quote).
fn published_flow(dp: &mut Dp, proto: u8) -> Vec<u8> {
    let (first, answer) = if proto == IPPROTO_TCP {
        (
            FrameSpec::tcp(CLIENT, 40000, HOST, 8080, b""),
            FrameSpec::tcp(CTR, 80, CLIENT, 40000, &[0x55; 1400]).tcp_with(TCP_SYN | TCP_ACK, 9, 1),
        )
    } else {
        (
            FrameSpec::udp(CLIENT, 40000, HOST, 5353, b"q"),
            FrameSpec::udp(CTR, 53, CLIENT, 40000, &[0x55; 1400]),
        )
    };
    assert_eq!(dp.run_tc(TC_INGRESS, &first.build()).0, TC_REDIRECT);
    let (ret, out) = dp.run_tc(TC_EGRESS, &answer.build());
    assert_eq!(ret, TC_NEXT);
    assert_eq!(verify(&out).unwrap().src, HOST.parse::<Ipv4Addr>().unwrap());
    out
}

/// Opens a masqueraded flow from SRC; returns its first packet as it left.
fn masqueraded_flow(dp: &mut Dp, proto: u8) -> Vec<u8> {
    let first = match proto {
        IPPROTO_TCP => FrameSpec::tcp(SRC, 40000, REMOTE, 443, &[0x55; 1400]),
        IPPROTO_UDP => FrameSpec::udp(SRC, 40000, REMOTE, 53, &[0x55; 1400]),
        _ => FrameSpec::icmp_echo(SRC, REMOTE, 4242, true, &[0x55; 1400]),
    };
    let (ret, out) = dp.run_tc(TC_EGRESS, &first.build());
    assert_eq!(ret, TC_NEXT);
    out
}

#[test]
fn icmp_errors_about_outbound_packets_reach_their_container() {
    in_private_netns(&[], || {
        // (name, published (or masqueraded), protocol, quote length)
        let cases = [
            ("published tcp, whole quote", true, IPPROTO_TCP, 2000),
            ("published tcp, 8 bytes of L4", true, IPPROTO_TCP, 28),
            ("published udp", true, IPPROTO_UDP, 2000),
            ("masqueraded tcp", false, IPPROTO_TCP, 2000),
            ("masqueraded tcp, 8 bytes of L4", false, IPPROTO_TCP, 28),
            ("masqueraded udp", false, IPPROTO_UDP, 576),
            ("masqueraded ping", false, IPPROTO_ICMP, 2000),
        ];
        for (name, published, proto, quote) in cases {
            for (ty, code) in [
                (ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED),
                (ICMP_TIME_EXCEEDED, 0),
                (ICMP_DEST_UNREACH, ICMP_PORT_UNREACH),
            ] {
                let mut dp = fresh();
                let left = if published {
                    published_flow(&mut dp, proto)
                } else {
                    masqueraded_flow(&mut dp, proto)
                };
                let sent = verify(&left).unwrap();
                let err = icmp_error(ROUTER, HOST, ty, code, 1400, &left, quote);
                let (ret, delivered) = dp.run_tc(TC_INGRESS, &err);
                assert_eq!(
                    ret, TC_REDIRECT,
                    "{name} {ty}/{code}: delivered to the container"
                );
                let got = verify_icmp_error(&delivered)
                    .unwrap_or_else(|e| panic!("{name} {ty}/{code}: {e}"));
                let (ctr, port) = match (published, proto) {
                    (true, IPPROTO_TCP) => (CTR, 80),
                    (true, _) => (CTR, 53),
                    (false, IPPROTO_ICMP) => (SRC, 4242),
                    (false, _) => (SRC, 40000),
                };
                assert_eq!(got.dst.to_string(), ctr, "{name}");
                assert_eq!(got.src.to_string(), ROUTER, "{name}");
                assert_eq!((got.ty, got.code), (ty, code), "{name}");
                assert_eq!(got.inner_src.to_string(), ctr, "{name}");
                assert_eq!(got.inner_sport, port, "{name}: the quoted source port");
                assert_eq!(got.inner_dst, sent.dst, "{name}: the peer unchanged");
                // The quoted L4 checksum is checkable when the whole
                // datagram is quoted; it must be right then.
                assert_eq!(got.inner_l4_verified, quote >= left.len() - 14, "{name}");
                assert_eq!(
                    delivered[14 + 20 + 4..14 + 20 + 8],
                    err[14 + 20 + 4..14 + 20 + 8],
                    "{name}: the MTU word is kept"
                );
                assert_eq!(dp.event(Event::IcmpErrorIn), 1, "{name}");
            }
        }
    });
}

#[test]
fn icmp_errors_of_no_flow_are_the_hosts_or_dropped() {
    in_private_netns(&[], || {
        let mut dp = fresh();
        // About a packet the host itself sent: the host's business.
        let own = FrameSpec::udp(HOST, 33000, REMOTE, 53, b"q").build();
        let err = port_unreachable(ROUTER, HOST, &own);
        assert_eq!(dp.run_tc(TC_INGRESS, &err), (TC_NEXT, err));
        // Sent straight to a container address: never let in.
        let forged = FrameSpec::tcp(SRC, 40000, REMOTE, 443, b"").build();
        let err = icmp_error(
            ROUTER,
            SRC,
            ICMP_DEST_UNREACH,
            ICMP_FRAG_NEEDED,
            68,
            &forged,
            2000,
        );
        assert_eq!(dp.run_tc(TC_INGRESS, &err), (TC_DROP, err));
        assert_eq!(dp.event(Event::DropUnpublished), 1);
        // A published port's error about a flow that is not tracked (a
        // forged one) is not translated either.
        let untracked = FrameSpec::udp(HOST, 5353, "192.0.2.99", 1, b"q").build();
        let err = port_unreachable(ROUTER, HOST, &untracked);
        assert_eq!(dp.run_tc(TC_INGRESS, &err), (TC_NEXT, err));
        assert_eq!(dp.event(Event::IcmpErrorIn), 0);
    });
}

#[test]
fn icmp_errors_from_containers_leave_translated_or_not_at_all() {
    in_private_netns(&[], || {
        // About a client's datagram to a published port.
        let mut dp = fresh();
        let to_ctr = FrameSpec::udp(CLIENT, 40000, HOST, 5353, b"q").build();
        let (_, arrived) = dp.run_tc(TC_INGRESS, &to_ctr);
        let err = port_unreachable(CTR, CLIENT, &arrived);
        let (ret, out) = dp.run_tc(TC_EGRESS, &err);
        assert_eq!(ret, TC_NEXT);
        let got = verify_icmp_error(&out).unwrap();
        assert_eq!(
            (got.src.to_string(), got.dst.to_string()),
            (HOST.into(), CLIENT.into())
        );
        assert_eq!(
            (got.inner_dst.to_string(), got.inner_dport),
            (HOST.into(), 5353)
        );
        assert_eq!(
            (got.inner_src.to_string(), got.inner_sport),
            (CLIENT.into(), 40000)
        );
        assert!(got.inner_l4_verified);
        // Another container may not speak of that flow.
        let forged = port_unreachable(SRC, CLIENT, &arrived);
        assert_eq!(dp.run_tc(TC_EGRESS, &forged), (TC_DROP, forged));
        assert_eq!(dp.event(Event::DropUntranslatable), 1);

        // About a reply to a masqueraded flow.
        let left = masqueraded_flow(&mut dp, IPPROTO_UDP);
        let port = verify(&left).unwrap().sport;
        let reply = FrameSpec::udp(REMOTE, 53, HOST, port, b"answer").build();
        let (ret, arrived) = dp.run_tc(TC_INGRESS, &reply);
        assert_eq!(ret, TC_REDIRECT);
        let err = port_unreachable(SRC, REMOTE, &arrived);
        let (ret, out) = dp.run_tc(TC_EGRESS, &err);
        assert_eq!(ret, TC_NEXT);
        let got = verify_icmp_error(&out).unwrap();
        assert_eq!(got.src.to_string(), HOST);
        assert_eq!(
            (got.inner_dst.to_string(), got.inner_dport),
            (HOST.into(), port)
        );
        assert_eq!(dp.event(Event::IcmpErrorOut), 2);

        // About anything else: it would leak the container's address.
        let stray = FrameSpec::udp(REMOTE, 53, SRC, 9999, b"?").build();
        let err = port_unreachable(SRC, REMOTE, &stray);
        assert_eq!(dp.run_tc(TC_EGRESS, &err), (TC_DROP, err));
        assert_eq!(dp.event(Event::DropUntranslatable), 2);
        // The host's own errors go on.
        let err = port_unreachable(HOST, REMOTE, &stray);
        assert_eq!(dp.run_tc(TC_EGRESS, &err), (TC_NEXT, err));
    });
}

/// A whole-quote "port unreachable" from `src` to `dst` about `quoted`.
fn port_unreachable(src: &str, dst: &str, quoted: &[u8]) -> Vec<u8> {
    icmp_error(
        src,
        dst,
        ICMP_DEST_UNREACH,
        ICMP_PORT_UNREACH,
        0,
        quoted,
        2000,
    )
}

/// Runs fragments through a program in order; returns the verdicts and
/// the frames that came out.
fn run_all(dp: &mut Dp, prog: &str, frames: &[Vec<u8>]) -> (Vec<u32>, Vec<Vec<u8>>) {
    frames.iter().map(|f| dp.run_tc(prog, f)).unzip()
}

#[test]
fn fragments_of_published_and_masqueraded_datagrams_are_translated() {
    in_private_netns(&[], || {
        let mut dp = fresh();
        let payload: Vec<u8> = (0..4000u32).map(|i| (i * 7) as u8).collect();
        // In, to a published port.
        let big = FrameSpec::udp(CLIENT, 40000, HOST, 5353, &payload).build();
        let (verdicts, out) = run_all(&mut dp, TC_INGRESS, &fragment(&big, 1480));
        assert_eq!(verdicts, vec![TC_REDIRECT; 3], "every fragment delivered");
        let whole = reassemble(&out).unwrap();
        let seen = verify(&whole).expect("the reassembled datagram's checksum");
        assert_eq!((seen.dst.to_string(), seen.dport), (CTR.into(), 53));
        assert_eq!(dp.event(Event::FragTranslated), 2);
        assert_eq!(dp.pub_stats().fwd_packets, 3);

        // Its answer out, from the published port.
        let answer = FrameSpec::udp(CTR, 53, CLIENT, 40000, &payload).build();
        let (verdicts, out) = run_all(&mut dp, TC_EGRESS, &fragment(&answer, 1480));
        assert_eq!(verdicts, vec![TC_NEXT; 3]);
        let seen = verify(&reassemble(&out).unwrap()).unwrap();
        assert_eq!((seen.src.to_string(), seen.sport), (HOST.into(), 5353));
        assert_eq!(dp.pub_stats().rev_packets, 3);

        // Masqueraded out, and the answer back in.
        for proto in [IPPROTO_UDP, IPPROTO_ICMP] {
            let out_frame = if proto == IPPROTO_UDP {
                FrameSpec::udp(SRC, 40001, REMOTE, 53, &payload)
            } else {
                FrameSpec::icmp_echo(SRC, REMOTE, 777, true, &payload)
            }
            .build();
            let (verdicts, out) = run_all(&mut dp, TC_EGRESS, &fragment(&out_frame, 1480));
            assert_eq!(verdicts, vec![TC_NEXT; 3], "proto {proto}");
            let seen = verify(&reassemble(&out).unwrap()).unwrap();
            assert_eq!(seen.src.to_string(), HOST, "proto {proto}");
            let port = seen.sport;
            let back = if proto == IPPROTO_UDP {
                FrameSpec::udp(REMOTE, 53, HOST, port, &payload)
            } else {
                FrameSpec::icmp_echo(REMOTE, HOST, port, false, &payload)
            }
            .build();
            let (verdicts, out) = run_all(&mut dp, TC_INGRESS, &fragment(&back, 1480));
            assert_eq!(verdicts, vec![TC_REDIRECT; 3], "proto {proto}");
            let seen = verify(&reassemble(&out).unwrap()).unwrap();
            assert_eq!(seen.dst.to_string(), SRC, "proto {proto}");
            let want = if proto == IPPROTO_UDP {
                (53, 40001)
            } else {
                (0, 777)
            };
            assert_eq!((seen.sport, seen.dport), want, "proto {proto}");
        }
        assert_eq!(dp.event(Event::FragTranslated), 2 + 2 + 4 * 2);
    });
}

#[test]
fn fragments_whose_first_fragment_was_not_seen_are_not_translated() {
    in_private_netns(&[], || {
        let mut dp = fresh();
        let payload = [9u8; 3000];
        // A later fragment from a container, alone: it would leave with
        // the private address, so it is dropped.
        let out = FrameSpec::udp(SRC, 40001, REMOTE, 53, &payload).build();
        let later = fragment(&out, 1480).pop().unwrap();
        assert_eq!(dp.run_tc(TC_EGRESS, &later), (TC_DROP, later.clone()));
        // To a container: dropped too; to the host: the host's.
        let to_ctr = FrameSpec::udp(CLIENT, 1, SRC, 53, &payload).build();
        let later = fragment(&to_ctr, 1480).pop().unwrap();
        assert_eq!(dp.run_tc(TC_INGRESS, &later), (TC_DROP, later.clone()));
        let to_host = FrameSpec::udp(CLIENT, 1, HOST, 53, &payload).build();
        let later = fragment(&to_host, 1480).pop().unwrap();
        assert_eq!(dp.run_tc(TC_INGRESS, &later), (TC_NEXT, later.clone()));
        assert_eq!(dp.event(Event::DropFragUntracked), 2);
        // A TCP segment's fragments follow their first fragment too.
        let seg = FrameSpec::tcp(SRC, 40002, REMOTE, 443, &payload)
            .tcp_with(TCP_SYN, 1, 0)
            .build();
        let (verdicts, out) = run_all(&mut dp, TC_EGRESS, &fragment(&seg, 1480));
        assert_eq!(verdicts, vec![TC_NEXT; 3]);
        verify(&reassemble(&out).unwrap()).unwrap();
    });
}

/// ICMPv6 errors about published and masqueraded IPv6 flows, both ways:
/// a packet too big arriving for the host about a packet a flow sent
/// reaches the container with the quote it would have had without NAT
/// (byte for byte: every address, port and quoted checksum restored) and
/// a valid ICMPv6 checksum; a container's port unreachable about a packet
/// it received leaves quoting what the client sent. Errors of no flow:
/// the host's (inbound) or dropped (outbound); a corrupt checksum stays
/// corrupt.
#[test]
fn icmpv6_errors_are_translated_both_ways() {
    use datapath_common::IPPROTO_ICMPV6;
    use netagent_tests::packet::{checksum6_ok, echo6_frame, icmp6_error, l4_frame6};
    const CTR6: &str = "fd00:1::2";
    const HOST6: &str = "2001:db8::1";
    const CLIENT6: &str = "2001:db8::99";
    const ROUTER6: &str = "2001:db8::fe";
    let mac = [2, 0, 0, 0, 0, 1];
    let fresh6 = || {
        let mut dp = Dp::new();
        let net = policy(1, 0, "10.1.0.0", "255.255.255.0");
        dp.endpoint_at6(CTR6, &net, TEST_RUN_IFINDEX, CTR_MAC);
        dp.masq_addr6(TEST_RUN_IFINDEX, HOST6);
        dp.publish6(HOST6, 8080, IPPROTO_TCP, CTR6, 80);
        dp.publish6(HOST6, 5353, IPPROTO_UDP, CTR6, 53);
        dp
    };
    // Inbound: a packet too big about each kind of flow's outgoing packet.
    for (name, proto) in [
        ("masqueraded TCP", IPPROTO_TCP),
        ("masqueraded UDP", IPPROTO_UDP),
        ("masqueraded echo", IPPROTO_ICMPV6),
        ("published TCP", IPPROTO_TCP),
        ("published UDP", IPPROTO_UDP),
    ] {
        let mut dp = fresh6();
        // What the container sends, and what left the host for it.
        let sent = if name.starts_with("published") {
            let port = if proto == IPPROTO_TCP { 8080 } else { 5353 };
            let req = l4_frame6(mac, CLIENT6, 40000, HOST6, port, proto, b"req");
            assert_eq!(dp.run_tc(TC_INGRESS, &req).0, TC_REDIRECT, "{name}");
            l4_frame6(mac, CTR6, port % 100, CLIENT6, 40000, proto, b"reply")
        } else if proto == IPPROTO_ICMPV6 {
            echo6_frame(mac, CTR6, CLIENT6, true, 4242)
        } else {
            l4_frame6(mac, CTR6, 4242, CLIENT6, 443, proto, b"out")
        };
        let (ret, left) = dp.run_tc(TC_EGRESS, &sent);
        assert_eq!(ret, TC_NEXT, "{name}: {:?}", dp.events());
        let error = icmp6_error(mac, ROUTER6, HOST6, 2, 0, 1280, &left[14..]);
        assert!(checksum6_ok(&error));
        let (ret, after) = dp.run_tc(TC_INGRESS, &error);
        assert_eq!(ret, TC_REDIRECT, "{name}: {:?}", dp.events());
        assert_eq!(dp.event(Event::IcmpErrorIn), 1, "{name}");
        assert!(checksum6_ok(&after), "{name}: the ICMPv6 checksum");
        assert_eq!(
            after[38..54],
            CTR6.parse::<std::net::Ipv6Addr>().unwrap().octets(),
            "{name}: to the container"
        );
        assert_eq!(
            after[62..],
            sent[14..],
            "{name}: the quote as the container sent it"
        );
        // A corrupt checksum stays corrupt.
        let mut bad = error.clone();
        bad[57] ^= 0x10;
        let (_, after) = dp.run_tc(TC_INGRESS, &bad);
        assert!(
            !checksum6_ok(&after),
            "{name}: a corrupt checksum was laundered"
        );
    }

    // Outbound: the container's port unreachable about a published
    // datagram, and about a masqueraded flow's reply.
    for name in ["published", "masqueraded"] {
        let mut dp = fresh6();
        let (original, received) = if name == "published" {
            let req = l4_frame6(mac, CLIENT6, 40000, HOST6, 5353, IPPROTO_UDP, b"req");
            let (ret, received) = dp.run_tc(TC_INGRESS, &req);
            assert_eq!(ret, TC_REDIRECT);
            (req, received)
        } else {
            let out = l4_frame6(mac, CTR6, 4242, CLIENT6, 53, IPPROTO_UDP, b"out");
            let (_, left) = dp.run_tc(TC_EGRESS, &out);
            let port = u16::from_be_bytes([left[54], left[55]]);
            let reply = l4_frame6(mac, CLIENT6, 53, HOST6, port, IPPROTO_UDP, b"reply");
            let (ret, received) = dp.run_tc(TC_INGRESS, &reply);
            assert_eq!(ret, TC_REDIRECT);
            (reply, received)
        };
        let error = icmp6_error(mac, CTR6, CLIENT6, 1, 4, 0, &received[14..]);
        let (ret, after) = dp.run_tc(TC_EGRESS, &error);
        assert_eq!(ret, TC_NEXT, "{name}: {:?}", dp.events());
        assert_eq!(dp.event(Event::IcmpErrorOut), 1, "{name}");
        assert!(checksum6_ok(&after), "{name}: the ICMPv6 checksum");
        assert_eq!(
            after[22..38],
            HOST6.parse::<std::net::Ipv6Addr>().unwrap().octets(),
            "{name}: from the host"
        );
        // The quote is what the client sent, but for the hop limit the
        // delivery took one off.
        let mut quote = after[62..].to_vec();
        quote[7] = original[21];
        assert_eq!(
            quote,
            original[14..],
            "{name}: the quote as the client sent it"
        );
    }

    // Another container may not speak of a published flow to CTR6.
    let mut dp = fresh6();
    const OTHER6: &str = "fd00:1::9";
    let net = policy(1, 0, "10.1.0.0", "255.255.255.0");
    dp.endpoint_at6(OTHER6, &net, TEST_RUN_IFINDEX, CTR_MAC);
    let req = l4_frame6(mac, CLIENT6, 40000, HOST6, 5353, IPPROTO_UDP, b"req");
    let (_, received) = dp.run_tc(TC_INGRESS, &req);
    let forged = icmp6_error(mac, OTHER6, CLIENT6, 1, 4, 0, &received[14..]);
    assert_eq!(dp.run_tc(TC_EGRESS, &forged), (TC_DROP, forged));
    assert_eq!(dp.event(Event::DropUntranslatable), 1);

    // Errors of no flow: the host's when inbound, dropped when outbound.
    let stray = l4_frame6(mac, HOST6, 999, CLIENT6, 443, IPPROTO_TCP, b"");
    let error = icmp6_error(mac, ROUTER6, HOST6, 2, 0, 1280, &stray[14..]);
    let mut dp = fresh6();
    assert_eq!(dp.run_tc(TC_INGRESS, &error), (TC_NEXT, error.clone()));
    let stray = l4_frame6(mac, CLIENT6, 443, CTR6, 999, IPPROTO_TCP, b"");
    let error = icmp6_error(mac, CTR6, CLIENT6, 1, 4, 0, &stray[14..]);
    assert_eq!(dp.run_tc(TC_EGRESS, &error).0, TC_DROP);
    assert_eq!(dp.events(), vec![(Event::DropUntranslatable, 1)]);
}

/// IPv6 fragments of published and masqueraded datagrams, both ways: the
/// first fragment is translated with its ports (and its translation
/// recorded), the later ones by their fragment identification; put back
/// together, every datagram's UDP checksum verifies. A later fragment
/// whose first was not seen: dropped if it is a container's or for one,
/// the host's otherwise.
#[test]
fn ipv6_fragments_of_translated_datagrams_are_translated() {
    use netagent_tests::packet::{checksum6_ok, ipv6_frame, l4_frame6};
    const CTR6: &str = "fd00:1::2";
    const HOST6: &str = "2001:db8::1";
    const CLIENT6: &str = "2001:db8::99";
    let mac = [2, 0, 0, 0, 0, 1];
    let ip6 = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
    let port_at = |f: &[u8], off: usize| u16::from_be_bytes([f[off], f[off + 1]]);
    let payload: Vec<u8> = (0..100u8).collect();
    // The UDP datagram of `whole` in two fragments: 64 bytes, then the rest.
    let split = |whole: &[u8], id: u32| -> [Vec<u8>; 2] {
        let (src, dst) = (
            std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&whole[22..38]).unwrap()).to_string(),
            std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&whole[38..54]).unwrap()).to_string(),
        );
        let l4 = &whole[54..];
        let header = |units: u16, more: bool| {
            let mut h = vec![0, 0];
            h.extend_from_slice(&((units << 3) | u16::from(more)).to_be_bytes());
            h.extend_from_slice(&id.to_be_bytes());
            h
        };
        [
            ipv6_frame(
                mac,
                &src,
                &dst,
                &[(44, header(0, true))],
                IPPROTO_UDP,
                &l4[..64],
            ),
            ipv6_frame(
                mac,
                &src,
                &dst,
                &[(44, header(8, false))],
                IPPROTO_UDP,
                &l4[64..],
            ),
        ]
    };
    // The two translated fragments put back together (addresses from the
    // first; the later one must carry the same).
    let joined = |f: &[Vec<u8>]| -> Vec<u8> {
        assert_eq!(
            f[0][22..54],
            f[1][22..54],
            "the fragments' addresses differ"
        );
        let mut l4 = f[0][62..].to_vec();
        l4.extend_from_slice(&f[1][62..]);
        let s = |r: std::ops::Range<usize>| {
            std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&f[0][r]).unwrap()).to_string()
        };
        ipv6_frame(mac, &s(22..38), &s(38..54), &[], IPPROTO_UDP, &l4)
    };
    let mut dp = Dp::new();
    let net = policy(1, 0, "10.1.0.0", "255.255.255.0");
    dp.endpoint_at6(CTR6, &net, TEST_RUN_IFINDEX, CTR_MAC);
    dp.masq_addr6(TEST_RUN_IFINDEX, HOST6);
    dp.publish6(HOST6, 5353, IPPROTO_UDP, CTR6, 53);
    let run = |dp: &mut Dp, prog: &str, frags: [Vec<u8>; 2], want: u32| -> Vec<Vec<u8>> {
        frags
            .into_iter()
            .map(|f| {
                let (ret, after) = dp.run_tc(prog, &f);
                assert_eq!(ret, want, "{:?}", dp.events());
                after
            })
            .collect()
    };

    // A published datagram in, and its answer out.
    let request = l4_frame6(mac, CLIENT6, 40000, HOST6, 5353, IPPROTO_UDP, &payload);
    let got = joined(&run(&mut dp, TC_INGRESS, split(&request, 7), TC_REDIRECT));
    assert!(checksum6_ok(&got), "published, in: checksum");
    assert_eq!(
        (got[38..54].to_vec(), port_at(&got, 56)),
        (ip6(CTR6).to_vec(), 53)
    );
    let answer = l4_frame6(mac, CTR6, 53, CLIENT6, 40000, IPPROTO_UDP, &payload);
    let got = joined(&run(&mut dp, TC_EGRESS, split(&answer, 8), TC_NEXT));
    assert!(checksum6_ok(&got), "published, out: checksum");
    assert_eq!(
        (got[22..38].to_vec(), port_at(&got, 54)),
        (ip6(HOST6).to_vec(), 5353)
    );

    // A masqueraded datagram out, and its answer in.
    let out = l4_frame6(mac, CTR6, 4242, CLIENT6, 53, IPPROTO_UDP, &payload);
    let got = joined(&run(&mut dp, TC_EGRESS, split(&out, 9), TC_NEXT));
    assert!(checksum6_ok(&got), "masqueraded, out: checksum");
    assert_eq!(got[22..38], ip6(HOST6), "the masquerade address");
    let port = port_at(&got, 54);
    let back = l4_frame6(mac, CLIENT6, 53, HOST6, port, IPPROTO_UDP, &payload);
    let got = joined(&run(&mut dp, TC_INGRESS, split(&back, 10), TC_REDIRECT));
    assert!(checksum6_ok(&got), "masqueraded, in: checksum");
    assert_eq!(
        (got[38..54].to_vec(), port_at(&got, 56)),
        (ip6(CTR6).to_vec(), 4242)
    );
    assert_eq!(dp.event(Event::FragTranslated), 4);

    // Later fragments whose first was never seen.
    let [_, lost_in] = split(&request, 99);
    let [_, lost_out] = split(&answer, 98);
    let to_host = {
        let stray = l4_frame6(mac, CLIENT6, 1, HOST6, 9, IPPROTO_UDP, &payload);
        let [_, later] = split(&stray, 97);
        later
    };
    let mut dp = Dp::new();
    dp.endpoint_at6(CTR6, &net, TEST_RUN_IFINDEX, CTR_MAC);
    let mut lost_for_ctr = lost_in;
    lost_for_ctr[38..54].copy_from_slice(&ip6(CTR6));
    assert_eq!(dp.run_tc(TC_INGRESS, &lost_for_ctr).0, TC_DROP);
    assert_eq!(dp.run_tc(TC_EGRESS, &lost_out).0, TC_DROP);
    assert_eq!(dp.events(), vec![(Event::DropFragUntracked, 2)]);
    assert_eq!(dp.run_tc(TC_INGRESS, &to_host), (TC_NEXT, to_host.clone()));
}
