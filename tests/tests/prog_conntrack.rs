//! BPF_PROG_TEST_RUN tables for conntrack admission of published flows:
//! which packets may create an entry, in which map, and that no flood
//! (spoofed SYNs, UDP) evicts an established TCP flow. Needs root.
#![allow(
    clippy::unwrap_used,
    reason = "tests panic on failure, with context from the asserts"
)]

use datapath_common::{
    CT_F_ISN, CtKey, Event, MAX_EMBRYONIC_FLOWS,
    map_names::{CT_SYN, CT_TCP, CT_UDP},
    prog_names::{TC_EGRESS, TC_INGRESS},
};
use netagent_tests::{
    dp::{
        CLIENT, CTR, Dp, HOST, TC_DROP, TC_NEXT, TEST_RUN_IFINDEX, be32, in_private_netns, policy,
    },
    packet::{FrameSpec, IPPROTO_TCP, IPPROTO_UDP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, verify},
};

fn reply_key(client: &str, cport: u16, proto: u8) -> CtKey {
    CtKey {
        src_addr_be: be32(CTR),
        dst_addr_be: be32(client),
        src_port_be: 80u16.to_be(),
        dst_port_be: cport.to_be(),
        proto,
        _pad: [0; 3],
    }
}

fn client_tcp(flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    FrameSpec::tcp(CLIENT, 40000, HOST, 8080, b"")
        .tcp_with(flags, seq, ack)
        .build()
}

fn container_tcp(flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    FrameSpec::tcp(CTR, 80, CLIENT, 40000, b"")
        .tcp_with(flags, seq, ack)
        .build()
}

fn dp() -> Dp {
    let mut dp = Dp::new();
    dp.publish(HOST, 8080, IPPROTO_TCP, CTR, 80);
    dp.publish(HOST, 8080, IPPROTO_UDP, CTR, 80);
    dp
}

/// The handshake: a SYN opens an embryonic entry, the container's SYN-ACK
/// records its ISN (and is reverse-translated), and only an ACK of that
/// ISN moves the flow to the established map. Wrong ACKs, stray ACKs and
/// RSTs create nothing; XDP follows the same rules.
#[test]
fn tcp_flows_are_admitted_by_a_completed_handshake() {
    let key = reply_key(CLIENT, 40000, IPPROTO_TCP);
    for via_xdp in [false, true] {
        let mut dp = dp();
        let forward = |dp: &mut Dp, frame: &[u8]| {
            if via_xdp {
                dp.run_xdp(frame);
            } else {
                dp.run_tc(TC_INGRESS, frame);
            }
        };
        // Stray packets of no flow are translated (the forward path is
        // stateless) but open nothing.
        for (name, flags) in [
            ("ack", TCP_ACK),
            ("rst", TCP_RST),
            ("fin", TCP_FIN | TCP_ACK),
        ] {
            forward(&mut dp, &client_tcp(flags, 5, 5));
            assert_eq!(dp.ct(&key), None, "{name} opened a flow (xdp: {via_xdp})");
        }
        forward(&mut dp, &client_tcp(TCP_SYN, 1000, 0));
        let embryo = dp
            .ct_in(CT_SYN, &key)
            .expect("a SYN opens an embryonic entry");
        assert_eq!(
            (embryo.flags & CT_F_ISN, embryo.orig_addr_be),
            (0, be32(HOST))
        );
        assert_eq!(dp.ct_in(CT_TCP, &key), None);

        // The SYN-ACK: reverse NAT from the embryonic entry, ISN recorded.
        let (ret, synack) = dp.run_tc(
            TC_EGRESS,
            &container_tcp(TCP_SYN | TCP_ACK, 7_000_000, 1001),
        );
        assert_eq!(ret, TC_NEXT);
        let seen = verify(&synack).unwrap();
        assert_eq!((seen.src.to_string(), seen.sport), (HOST.into(), 8080));
        let embryo = dp.ct_in(CT_SYN, &key).unwrap();
        assert_eq!((embryo.flags & CT_F_ISN, embryo.isn), (CT_F_ISN, 7_000_000));

        // An ACK of something else does not complete it.
        forward(&mut dp, &client_tcp(TCP_ACK, 1001, 12345));
        assert_eq!(
            dp.ct_in(CT_TCP, &key),
            None,
            "a wrong ACK completed the handshake"
        );
        // A retransmitted SYN keeps the recorded ISN.
        forward(&mut dp, &client_tcp(TCP_SYN, 1000, 0));
        assert_eq!(dp.ct_in(CT_SYN, &key).unwrap().isn, 7_000_000);
        // The right one does.
        forward(&mut dp, &client_tcp(TCP_ACK, 1001, 7_000_001));
        let est = dp.ct_in(CT_TCP, &key).expect("established");
        assert_eq!(
            (est.orig_addr_be, est.orig_port_be),
            (be32(HOST), 8080u16.to_be())
        );
        assert_eq!(dp.ct_in(CT_SYN, &key), None, "moved, not copied");
        assert_eq!(dp.event(Event::CtEstablished), 1);
        // Data keeps flowing back, translated.
        let (_, data) = dp.run_tc(TC_EGRESS, &container_tcp(TCP_ACK, 7_000_001, 1001));
        assert_eq!(verify(&data).unwrap().sport, 8080);
    }
}

/// A flood of SYNs (as from spoofed sources) fills only the embryonic
/// map: an established flow keeps its entry and its replies keep their
/// published source. A UDP flood has its own map too.
#[test]
fn floods_never_evict_established_flows() {
    let mut dp = dp();
    let key = reply_key(CLIENT, 40000, IPPROTO_TCP);
    dp.run_tc(TC_INGRESS, &client_tcp(TCP_SYN, 1000, 0));
    dp.run_tc(TC_EGRESS, &container_tcp(TCP_SYN | TCP_ACK, 500, 1001));
    dp.run_tc(TC_INGRESS, &client_tcp(TCP_ACK, 1001, 501));
    assert!(dp.ct_in(CT_TCP, &key).is_some());
    let flood = MAX_EMBRYONIC_FLOWS as usize + 4096;
    for i in 0..flood {
        let spoofed = format!("203.0.{}.{}", (i >> 8) & 0xff, i & 0xff);
        let port = 1024 + (i >> 16) as u16;
        for proto in [IPPROTO_TCP, IPPROTO_UDP] {
            let frame = if proto == IPPROTO_TCP {
                FrameSpec::tcp(&spoofed, port, HOST, 8080, b"").build()
            } else {
                FrameSpec::udp(&spoofed, port, HOST, 8080, b"x").build()
            };
            dp.run_tc(TC_INGRESS, &frame);
        }
    }
    assert!(
        dp.ct_in(CT_TCP, &key).is_some(),
        "the flood evicted an established flow"
    );
    let (_, data) = dp.run_tc(TC_EGRESS, &container_tcp(TCP_ACK, 501, 1001));
    assert_eq!(
        verify(&data).unwrap().sport,
        8080,
        "its replies still translated"
    );
    // UDP flows live in their own map.
    let udp_key = reply_key("203.0.0.1", 1024, IPPROTO_UDP);
    assert!(dp.ct_in(CT_UDP, &udp_key).is_some());
    assert_eq!(dp.ct_in(CT_TCP, &udp_key), None);
}

/// A container's TCP packet that belongs to no published flow and cannot
/// open a masqueraded one (not a SYN) is dropped, not masqueraded: the
/// answer to a stray packet never leaves with a made-up source port.
#[test]
fn a_stray_reply_from_a_published_container_is_never_masqueraded() {
    in_private_netns(&[], || {
        let mut dp = dp();
        dp.endpoint_addr(CTR, &policy(1, 0, "172.17.0.0", "255.255.0.0"));
        dp.masq_addr(TEST_RUN_IFINDEX, HOST);
        for (name, flags) in [
            ("rst", TCP_RST | TCP_ACK),
            ("ack", TCP_ACK),
            ("syn-ack", TCP_SYN | TCP_ACK),
        ] {
            let frame = container_tcp(flags, 1, 1);
            let (ret, after) = dp.run_tc(TC_EGRESS, &frame);
            assert_eq!((ret, after), (TC_DROP, frame), "{name}");
        }
        assert_eq!(dp.event(Event::DropSnatNoFlow), 3);
        assert_eq!(dp.event(Event::SnatOut), 0);
        assert!(dp.snat_entries().is_empty());
    });
}
