//! BPF_PROG_TEST_RUN table of `na_tc_dns`, the embedded resolver's port
//! translation at a container loopback's egress: queries to
//! 127.0.0.11:53 go to the resolver's port, its answers leave from 53,
//! with checksums verified from scratch after the rewrite (and a bad one
//! left bad); everything else, and other namespaces, untouched. Needs
//! root; fails loudly without it.
#![allow(
    clippy::unwrap_used,
    reason = "tests panic on failure, with context from the asserts"
)]

use datapath_common::prog_names::TC_DNS;
use netagent_tests::{
    dp::{Dp, TC_NEXT, in_private_netns},
    packet::{FrameSpec, verify},
};

const PORT: u16 = 40_053;

/// A case: its name, the frame, and the ports it leaves with (source,
/// destination), or `None` if it must leave untouched.
type Case = (&'static str, Vec<u8>, Option<(u16, u16)>);
/// Offset of the UDP checksum in a frame with a 20-byte IPv4 header.
const UDP_CSUM: usize = 14 + 20 + 6;

#[test]
fn the_resolver_port_translation_on_loopback() {
    in_private_netns(&[], || {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let cookie =
            netagent::datapath::cookie::netns_cookie_of(std::os::fd::AsFd::as_fd(&probe)).unwrap();
        let query_udp = FrameSpec::udp("127.0.0.1", 40_000, "127.0.0.11", 53, b"query").build();
        let query_tcp = FrameSpec::tcp("127.0.0.1", 40_000, "127.0.0.11", 53, b"").build();
        let answer_udp = FrameSpec::udp("127.0.0.11", PORT, "127.0.0.1", 40_000, b"answer").build();
        let answer_tcp = FrameSpec::tcp("127.0.0.11", PORT, "127.0.0.1", 40_000, b"").build();
        let mut no_csum = query_udp.clone();
        no_csum[UDP_CSUM..UDP_CSUM + 2].copy_from_slice(&[0, 0]);
        let mut bad_csum = query_udp.clone();
        bad_csum[UDP_CSUM] ^= 0x5a;
        // (name, frame, translated ports (sport, dport) or None: untouched)
        let cases: Vec<Case> = vec![
            ("udp query", query_udp, Some((40_000, PORT))),
            ("tcp query", query_tcp, Some((40_000, PORT))),
            ("udp answer", answer_udp, Some((53, 40_000))),
            ("tcp answer", answer_tcp, Some((53, 40_000))),
            (
                "another port of 127.0.0.11",
                FrameSpec::udp("127.0.0.1", 40_000, "127.0.0.11", 54, b"x").build(),
                None,
            ),
            (
                "port 53 of 127.0.0.1 (the container's own server)",
                FrameSpec::udp("127.0.0.1", 40_000, "127.0.0.1", 53, b"x").build(),
                None,
            ),
            (
                "from 127.0.0.11, another port",
                FrameSpec::udp("127.0.0.11", PORT + 1, "127.0.0.1", 40_000, b"x").build(),
                None,
            ),
            (
                "icmp",
                FrameSpec::icmp_echo("127.0.0.1", "127.0.0.11", 7, true, b"ping").build(),
                None,
            ),
        ];
        let mut dp = Dp::new();
        dp.resolver_port(cookie, PORT);
        for (name, frame, want) in cases {
            let (verdict, out) = dp.run_tc(TC_DNS, &frame);
            assert_eq!(verdict, TC_NEXT, "{name}: never dropped");
            match want {
                None => assert_eq!(out, frame, "{name}: untouched"),
                Some((sport, dport)) => {
                    let checked = verify(&out).unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert_eq!((checked.sport, checked.dport), (sport, dport), "{name}");
                    assert_eq!(out[..34], frame[..34], "{name}: addresses untouched");
                }
            }
        }
        // A UDP datagram without a checksum keeps none.
        let (_, out) = dp.run_tc(TC_DNS, &no_csum);
        assert_eq!(out[UDP_CSUM..UDP_CSUM + 2], [0, 0]);
        assert_eq!(u16::from_be_bytes([out[36], out[37]]), PORT);
        // A bad checksum stays bad (an incremental update, not a new sum):
        // the receiver still drops it.
        let (_, out) = dp.run_tc(TC_DNS, &bad_csum);
        assert_eq!(u16::from_be_bytes([out[36], out[37]]), PORT);
        assert!(verify(&out).is_err(), "the corruption survives the rewrite");
        // Another namespace (no entry for its cookie): untouched.
        let mut other = Dp::new();
        other.resolver_port(cookie + 1, PORT);
        let query = FrameSpec::udp("127.0.0.1", 40_000, "127.0.0.11", 53, b"query").build();
        let (_, out) = other.run_tc(TC_DNS, &query);
        assert_eq!(out, query);
    });
}
