//! BPF_PROG_TEST_RUN tables: each case loads the datapath object afresh
//! (fresh maps), installs its map state, runs one frame through one
//! program and checks the verdict, the output bytes (checksums verified
//! from scratch by `netagent_tests::packet`) and the event counters.
//! Needs root; fails loudly without it.
#![allow(
    clippy::unwrap_used,
    reason = "tests panic on failure, with context from the asserts"
)]

use std::net::Ipv4Addr;

use aya::{
    Ebpf, TestRun, TestRunOptions, TestRunResult,
    maps::{HashMap, PerCpuArray},
    programs::{SchedClassifier, Xdp},
};
use datapath_common::{
    CtKey, CtValue, EndpointAddr, EndpointIface, Event, LocalAddr, MasqAddr, NET_F_INTERNAL,
    NET_F_NO_ICC, NetPolicy, PubKey, PubStats, PubValue, SNAT_DIR_OUT, SNAT_DIR_REPLY,
    SNAT_PORT_MAX, SNAT_PORT_MIN, SnatKey, SnatValue, XDP_TRANSLATED_MARK,
    map_names::{
        CONNTRACK, ENDPOINT_ADDRS, ENDPOINT_IFACES, EVENTS, LOCAL_ADDRS, MASQ_ADDRS, PUB_STATS,
        PUBLICATIONS, SNAT,
    },
    prog_names::{TC_EGRESS, TC_FROM_CONTAINER, TC_INGRESS, XDP_INGRESS},
};
use netagent_tests::{
    netns::require_root,
    packet::{
        Checked, ETH_P_ARP, ETH_P_IPV6, FrameSpec, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, L4Csum,
        assert_only_nat_fields_changed, non_ip_frame, verify,
    },
};

const XDP_PASS: u32 = 2;
const TC_ACT_PIPE: u32 = 3;

const HOST: &str = "10.0.0.1";
const CLIENT: &str = "192.0.2.7";
const CTR: &str = "172.17.0.2";
const SLOT: u32 = 3;

fn be32(ip: &str) -> u32 {
    u32::from_ne_bytes(ip.parse::<Ipv4Addr>().expect("ip").octets())
}

/// A freshly loaded datapath with empty maps.
struct Dp {
    ebpf: Ebpf,
    /// Packets that came out of XDP with the translated mark.
    marks: usize,
}

impl Dp {
    fn new() -> Self {
        require_root();
        assert!(
            !netagent::datapath::bpf::OBJECT.is_empty(),
            "built with AYA_BUILD_SKIP=1: no eBPF object to test"
        );
        let mut ebpf = Ebpf::load(netagent::datapath::bpf::OBJECT).expect("loading the object");
        let xdp: &mut Xdp = ebpf.program_mut(XDP_INGRESS).unwrap().try_into().unwrap();
        xdp.load().expect("verifier accepts XDP program");
        for name in [TC_INGRESS, TC_EGRESS] {
            let tc: &mut SchedClassifier = ebpf.program_mut(name).unwrap().try_into().unwrap();
            tc.load()
                .unwrap_or_else(|e| panic!("verifier rejects {name}: {e:?}"));
        }
        Self { ebpf, marks: 0 }
    }

    fn publish(&mut self, host: &str, hport: u16, proto: u8, ctr: &str, cport: u16) {
        let mut map: HashMap<_, PubKey, PubValue> =
            HashMap::try_from(self.ebpf.map_mut(PUBLICATIONS).unwrap()).unwrap();
        let key = PubKey {
            addr_be: be32(host),
            port_be: hport.to_be(),
            proto,
            _pad: 0,
        };
        let value = PubValue {
            addr_be: be32(ctr),
            port_be: cport.to_be(),
            _pad: 0,
            stats_slot: SLOT,
        };
        map.insert(&key, &value, 0).unwrap();
    }

    fn add_local(&mut self, ip: &str) {
        let mut map: HashMap<_, u32, LocalAddr> =
            HashMap::try_from(self.ebpf.map_mut(LOCAL_ADDRS).unwrap()).unwrap();
        map.insert(&be32(ip), &LocalAddr { ifindex: 1 }, 0).unwrap();
    }

    fn ct(&self, key: &CtKey) -> Option<CtValue> {
        let map: HashMap<_, CtKey, CtValue> =
            HashMap::try_from(self.ebpf.map(CONNTRACK).unwrap()).unwrap();
        map.get(key, 0).ok()
    }

    fn add_ct(&mut self, key: &CtKey, value: &CtValue) {
        let mut map: HashMap<_, CtKey, CtValue> =
            HashMap::try_from(self.ebpf.map_mut(CONNTRACK).unwrap()).unwrap();
        map.insert(key, value, 0).unwrap();
    }

    fn event(&self, event: Event) -> u64 {
        let map: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map(EVENTS).unwrap()).unwrap();
        map.get(&(event as u32), 0).unwrap().iter().sum()
    }

    fn pub_stats(&self) -> PubStats {
        let map: PerCpuArray<_, PubStats> =
            PerCpuArray::try_from(self.ebpf.map(PUB_STATS).unwrap()).unwrap();
        map.get(&SLOT, 0)
            .unwrap()
            .iter()
            .fold(PubStats::default(), |a, s| PubStats {
                fwd_packets: a.fwd_packets + s.fwd_packets,
                fwd_bytes: a.fwd_bytes + s.fwd_bytes,
                rev_packets: a.rev_packets + s.rev_packets,
                rev_bytes: a.rev_bytes + s.rev_bytes,
            })
    }

    /// Runs XDP and returns (verdict, frame). The kernel hands back the
    /// metadata area in front of the frame; it is split off and checked:
    /// XDP tags exactly the packets it translated, for TC ingress.
    fn run_xdp(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        let xdp: &mut Xdp = self
            .ebpf
            .program_mut(XDP_INGRESS)
            .unwrap()
            .try_into()
            .unwrap();
        let (verdict, mut out) = test_run(xdp, frame);
        let meta_len = out.len() - frame.len();
        let frame_out = out.split_off(meta_len);
        match meta_len {
            0 => {}
            4 => assert_eq!(
                u32::from_ne_bytes(out[..4].try_into().unwrap()),
                XDP_TRANSLATED_MARK,
                "unexpected metadata"
            ),
            n => panic!("{n} bytes of metadata"),
        }
        self.marks += usize::from(meta_len == 4);
        assert_eq!(
            self.marks as u64,
            self.event(Event::XdpDnat),
            "every translated packet, and only those, carries the mark"
        );
        (verdict, frame_out)
    }

    fn run_tc(&mut self, name: &str, frame: &[u8]) -> (u32, Vec<u8>) {
        let tc: &mut SchedClassifier = self.ebpf.program_mut(name).unwrap().try_into().unwrap();
        test_run(tc, frame)
    }
}

/// One BPF_PROG_TEST_RUN of `prog` on `frame`: (verdict, output bytes).
fn test_run<P>(prog: &P, frame: &[u8]) -> (u32, Vec<u8>)
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = TestRunResult>,
{
    let mut out = vec![0u8; frame.len() + 256];
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..Default::default()
        })
        .expect("test_run");
    out.truncate(r.data_size_out as usize);
    (r.return_value, out)
}

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
    struct Case {
        name: &'static str,
        frame: FrameSpec,
    }
    let mut with_options = FrameSpec::tcp(CLIENT, 40000, HOST, 8080, b"GET / HTTP/1.0\r\n");
    with_options.ip_options = vec![0x94, 0x04, 0, 0]; // Router Alert, ihl = 6
    let mut udp_zero = FrameSpec::udp(CLIENT, 5353, HOST, 5353, b"no checksum");
    udp_zero.csum = L4Csum::Zero;
    let cases = [
        Case {
            name: "tcp syn",
            frame: FrameSpec::tcp(CLIENT, 40000, HOST, 8080, b""),
        },
        Case {
            name: "tcp with payload and IPv4 options",
            frame: with_options,
        },
        Case {
            name: "udp with checksum",
            frame: FrameSpec::udp(CLIENT, 5353, HOST, 5353, b"query"),
        },
        Case {
            name: "udp odd length, source port 65535",
            frame: FrameSpec::udp(CLIENT, 65535, HOST, 5353, b"odd"),
        },
        Case {
            name: "udp checksum 0 stays 0",
            frame: udp_zero,
        },
    ];
    for case in cases {
        let mut dp = Dp::new();
        dp.publish(HOST, 8080, IPPROTO_TCP, CTR, 80);
        dp.publish(HOST, 5353, IPPROTO_UDP, CTR, 53);
        let before = case.frame.build();
        let (ret, after) = dp.run_xdp(&before);
        assert_eq!(ret, XDP_PASS, "{}", case.name);
        let cport = if case.frame.proto == IPPROTO_TCP {
            80
        } else {
            53
        };
        let checked = assert_dnat(&before, &after, cport);
        if case.frame.csum == L4Csum::Zero {
            assert_eq!(
                checked.l4_csum, 0,
                "{}: zero UDP checksum must stay zero",
                case.name
            );
        }
        assert_eq!(dp.event(Event::XdpDnat), 1, "{}", case.name);
        // The reply tuple is tracked, pointing back at the published address.
        let key = CtKey {
            src_addr_be: be32(CTR),
            dst_addr_be: be32(CLIENT),
            src_port_be: cport.to_be(),
            dst_port_be: case.frame.sport.to_be(),
            proto: case.frame.proto,
            _pad: [0; 3],
        };
        let ct = dp
            .ct(&key)
            .unwrap_or_else(|| panic!("{}: no conntrack entry", case.name));
        assert_eq!(ct.orig_addr_be, be32(HOST), "{}", case.name);
        assert_eq!(ct.orig_port_be, case.frame.dport.to_be(), "{}", case.name);
        assert_eq!(ct.stats_slot, SLOT);
        let stats = dp.pub_stats();
        assert_eq!(stats.fwd_packets, 1, "{}", case.name);
        assert_eq!(stats.fwd_bytes, (before.len() - 14) as u64, "{}", case.name);
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
        (
            "first fragment",
            frag_first.build(),
            Some(Event::PassFragment),
        ),
        (
            "later fragment",
            frag_later.build(),
            Some(Event::PassFragment),
        ),
        (
            "ip header cut",
            tcp[..30].to_vec(),
            Some(Event::PassMalformed),
        ),
        (
            "tcp header cut",
            tcp[..40].to_vec(),
            Some(Event::PassMalformed),
        ),
        ("ihl 4", bad_ihl, Some(Event::PassMalformed)),
        (
            "version 6 in an IPv4 frame",
            not_v4,
            Some(Event::PassMalformed),
        ),
        (
            "total length past the frame",
            long_tot_len,
            Some(Event::PassMalformed),
        ),
        (
            "udp length past the datagram",
            bad_udp_len,
            Some(Event::PassMalformed),
        ),
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
        if let Some(event) = event {
            assert_eq!(dp.event(event), 1, "{name}: {event:?} not counted");
        }
        assert_eq!(dp.pub_stats().fwd_packets, 0, "{name}");
    }
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
    assert_eq!(dp.event(Event::PassNotLocal), 1);

    // An exact publication on the same port wins over the wildcard.
    dp.publish(HOST, 8080, IPPROTO_TCP, "172.17.0.3", 8000);
    let (_, after) = dp.run_xdp(&to_host);
    let checked = verify(&after).unwrap();
    assert_eq!(checked.dst, "172.17.0.3".parse::<Ipv4Addr>().unwrap());
    assert_eq!(checked.dport, 8000);
}

#[test]
fn xdp_never_translates_loopback_destinations() {
    let mut dp = Dp::new();
    dp.publish("127.0.0.1", 5000, IPPROTO_UDP, CTR, 5000);
    dp.publish("0.0.0.0", 5001, IPPROTO_UDP, CTR, 5001);
    dp.add_local("127.0.0.1");
    for port in [5000, 5001] {
        let forged = FrameSpec::udp(CLIENT, 1234, "127.0.0.1", port, b"forged").build();
        let (_, after) = dp.run_xdp(&forged);
        assert_eq!(after, forged, "port {port}: a loopback publication leaked");
    }
    assert_eq!(dp.event(Event::PassLoopbackDst), 2);
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
        assert_eq!(ret, TC_ACT_PIPE, "{name}");
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
        &key,
        &CtValue {
            orig_addr_be: be32(HOST),
            orig_port_be: 8080u16.to_be(),
            _pad: 0,
            stats_slot: SLOT,
        },
    );
    let reply = FrameSpec::tcp(CTR, 80, CLIENT, 40000, b"HTTP/1.0 200 OK\r\n").build();
    let (ret, after) = dp.run_tc(TC_EGRESS, &reply);
    assert_eq!(ret, TC_ACT_PIPE);
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
            "other container",
            FrameSpec::tcp("172.17.0.9", 80, CLIENT, 40000, b"x").build(),
        ),
    ] {
        let (ret, after) = dp.run_tc(TC_EGRESS, &other);
        assert_eq!(ret, TC_ACT_PIPE, "{name}");
        assert_eq!(after, other, "{name}: untracked reply must be untouched");
    }
    assert_eq!(dp.event(Event::RevNat), 1);
}

/// `skb->ifindex` under BPF_PROG_TEST_RUN without a context: the loopback
/// device of the test's network namespace.
const TEST_RUN_IFINDEX: u32 = 1;
const TC_ACT_SHOT: u32 = 2;
const REMOTE: &str = "198.51.100.20";
const CTR_MAC: [u8; 6] = [0x02, 0xcc, 0, 0, 0, 2];
const GW_MAC: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 1];

fn policy(net_id: u32, flags: u32, subnet: &str, mask: &str) -> NetPolicy {
    NetPolicy {
        net_id,
        flags,
        subnet_be: be32(subnet),
        mask_be: be32(mask),
    }
}

impl Dp {
    /// Loads the TC program the two tests below need besides the others.
    fn with_endpoint_program() -> Self {
        let mut dp = Self::new();
        let tc: &mut SchedClassifier = dp
            .ebpf
            .program_mut(TC_FROM_CONTAINER)
            .unwrap()
            .try_into()
            .unwrap();
        tc.load().expect("verifier accepts the isolation program");
        dp
    }

    /// The test-run device as a container's interface on `net`, whose
    /// bridge is the same device (so routed lookups stay with the stack).
    fn endpoint_iface(&mut self, ifindex: u32, net: &NetPolicy) {
        let mut map: HashMap<_, u32, EndpointIface> =
            HashMap::try_from(self.ebpf.map_mut(ENDPOINT_IFACES).unwrap()).unwrap();
        let iface = EndpointIface {
            net: *net,
            bridge_ifindex: ifindex,
            _pad: 0,
        };
        map.insert(&ifindex, &iface, 0).unwrap();
    }

    fn endpoint_addr(&mut self, ip: &str, net: &NetPolicy) {
        self.endpoint_at(ip, net, 0);
    }

    /// An endpoint whose host-side veth is `host_ifindex`.
    fn endpoint_at(&mut self, ip: &str, net: &NetPolicy, host_ifindex: u32) {
        let mut map: HashMap<_, u32, EndpointAddr> =
            HashMap::try_from(self.ebpf.map_mut(ENDPOINT_ADDRS).unwrap()).unwrap();
        let addr = EndpointAddr {
            net: *net,
            host_ifindex,
            mac: CTR_MAC,
            gw_mac: GW_MAC,
        };
        map.insert(&be32(ip), &addr, 0).unwrap();
    }

    fn masq_addr(&mut self, ifindex: u32, ip: &str) {
        let mut map: HashMap<_, u32, MasqAddr> =
            HashMap::try_from(self.ebpf.map_mut(MASQ_ADDRS).unwrap()).unwrap();
        map.insert(&ifindex, &MasqAddr { addr_be: be32(ip) }, 0)
            .unwrap();
    }

    fn snat_entries(&self) -> Vec<(SnatKey, SnatValue)> {
        let map: HashMap<_, SnatKey, SnatValue> =
            HashMap::try_from(self.ebpf.map(SNAT).unwrap()).unwrap();
        map.iter().map(Result::unwrap).collect()
    }
}

/// Runs `f` on a thread inside a fresh network namespace (only `lo`, up):
/// BPF_PROG_TEST_RUN then uses that namespace's loopback device and FIB,
/// so FIB lookups see only the routes a test sets up, never the machine's.
fn in_private_netns<T: Send + 'static>(
    setup: &[&[&str]],
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let ns =
        netagent_tests::netns::Netns::new(format!("{}p", netagent_tests::netns::unique_prefix()));
    for cmd in setup {
        ns.ip(cmd);
    }
    ns.enter(f)
}

const TC_ACT_REDIRECT: u32 = 7;

#[test]
fn tc_from_container_enforces_isolation_icc_and_internal() {
    in_private_netns(&[], isolation_table);
}

fn isolation_table() {
    let net1 = policy(1, 0, "10.1.0.0", "255.255.255.0");
    let net2 = policy(2, 0, "10.2.0.0", "255.255.255.0");
    let no_icc = policy(1, NET_F_NO_ICC, "10.1.0.0", "255.255.255.0");
    let internal = policy(1, NET_F_INTERNAL, "10.1.0.0", "255.255.255.0");
    let icmp_to = |dst: &str| FrameSpec::icmp_echo("10.1.0.2", dst, 9, true, b"ping").build();
    let tcp_to = |dst: &str| FrameSpec::tcp("10.1.0.2", 40000, dst, 80, b"").build();
    let mut frag = FrameSpec::udp("10.1.0.2", 5353, "10.2.0.3", 53, b"frag");
    frag.frag_off = 0x0010;
    // (name, source interface's network, frame, expected drop reason)
    type Case = (&'static str, Option<NetPolicy>, Vec<u8>, Option<Event>);
    let cases: Vec<Case> = vec![
        ("same network", Some(net1), tcp_to("10.1.0.3"), None),
        ("same network, icmp", Some(net1), icmp_to("10.1.0.3"), None),
        (
            "other network",
            Some(net1),
            tcp_to("10.2.0.3"),
            Some(Event::DropIsolation),
        ),
        (
            "other network, icmp",
            Some(net1),
            icmp_to("10.2.0.3"),
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
            "icc off, same network",
            Some(no_icc),
            tcp_to("10.1.0.3"),
            Some(Event::DropIcc),
        ),
        ("icc off, gateway", Some(no_icc), tcp_to("10.1.0.1"), None),
        ("icc off, outside world", Some(no_icc), tcp_to(REMOTE), None),
        (
            "internal, outside world",
            Some(internal),
            icmp_to(REMOTE),
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
            tcp_to("10.1.0.3"),
            None,
        ),
        (
            "internal, other network",
            Some(internal),
            tcp_to("10.2.0.3"),
            Some(Event::DropIsolation),
        ),
        ("not an endpoint interface", None, tcp_to("10.2.0.3"), None),
        ("arp", Some(net1), non_ip_frame(ETH_P_ARP, 42), None),
        ("ipv6", Some(net1), non_ip_frame(ETH_P_IPV6, 80), None),
    ];
    for (name, src, frame, drop) in cases {
        let mut dp = Dp::with_endpoint_program();
        if let Some(src) = src {
            dp.endpoint_iface(TEST_RUN_IFINDEX, &src);
        }
        dp.endpoint_addr("10.1.0.3", &net1);
        dp.endpoint_addr("10.2.0.3", &net2);
        let (ret, after) = dp.run_tc(TC_FROM_CONTAINER, &frame);
        let to_endpoint =
            src.is_some() && drop.is_none() && frame.len() > 34 && frame[30..34] == [10, 1, 0, 3];
        match drop {
            Some(reason) => {
                assert_eq!(ret, TC_ACT_SHOT, "{name}");
                assert_eq!(after, frame, "{name}: a drop never rewrites");
                assert_eq!(dp.event(reason), 1, "{name}: {reason:?} not counted");
            }
            // An allowed packet to an endpoint of the same network goes
            // straight to its veth, addressed to its MAC, otherwise as is.
            None if to_endpoint => {
                assert_eq!(ret, TC_ACT_REDIRECT, "{name}");
                assert_eq!(after[..6], CTR_MAC, "{name}");
                assert_eq!(after[6..], frame[6..], "{name}: bridged, not routed");
                assert_eq!(dp.event(Event::RedirectToEndpoint), 1, "{name}");
            }
            // Elsewhere: this namespace has no route, so the stack decides.
            None => {
                assert_eq!(ret, TC_ACT_PIPE, "{name}");
                assert_eq!(after, frame, "{name}");
            }
        }
        let drops: u64 = [Event::DropIsolation, Event::DropIcc, Event::DropInternal]
            .iter()
            .map(|e| dp.event(*e))
            .sum();
        assert_eq!(
            drops,
            u64::from(drop.is_some()),
            "{name}: one reason per drop"
        );
    }
}

#[test]
fn tc_masquerades_container_flows_and_translates_replies_back() {
    in_private_netns(&[], masquerade_table);
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

fn masquerade_table() {
    let net1 = policy(1, 0, "10.1.0.0", "255.255.255.0");
    let flows = [
        (
            "tcp",
            FrameSpec::tcp("10.1.0.2", 40000, REMOTE, 443, b"hello"),
        ),
        (
            "udp",
            FrameSpec::udp("10.1.0.2", 40001, REMOTE, 53, b"query"),
        ),
        ("udp zero checksum", {
            let mut f = FrameSpec::udp("10.1.0.2", 40002, REMOTE, 53, b"zero");
            f.csum = L4Csum::Zero;
            f
        }),
        (
            "icmp echo",
            FrameSpec::icmp_echo("10.1.0.2", REMOTE, 4242, true, b"ping"),
        ),
    ];
    for (name, flow) in flows {
        let mut dp = Dp::with_endpoint_program();
        dp.endpoint_addr("10.1.0.2", &net1);
        dp.masq_addr(TEST_RUN_IFINDEX, HOST);
        let out = flow.build();
        let (ret, masqueraded) = dp.run_tc(TC_EGRESS, &out);
        assert_eq!(ret, TC_ACT_PIPE, "{name}");
        assert_only_nat_fields_changed(&out, &masqueraded, true);
        // (A CHECKSUM_PARTIAL seed cannot be had here: test_run skbs are
        // CHECKSUM_NONE. The netns masquerade test covers it, from
        // containers whose veths offload checksums.)
        let seen = verify(&masqueraded).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(seen.src, HOST.parse::<Ipv4Addr>().unwrap(), "{name}");
        let port = seen.sport;
        assert!(
            (SNAT_PORT_MIN..=SNAT_PORT_MAX).contains(&port),
            "{name}: port {port} outside the masquerade range"
        );
        if flow.csum == L4Csum::Zero {
            assert_eq!(seen.l4_csum, 0, "{name}: zero UDP checksum must stay zero");
        }
        assert_eq!(dp.event(Event::SnatOut), 1, "{name}");
        let entries = dp.snat_entries();
        assert_eq!(entries.len(), 2, "{name}: one OUT and one REPLY entry");
        assert!(entries.iter().any(|(k, _)| k.dir == SNAT_DIR_OUT));
        assert!(entries.iter().any(|(k, _)| k.dir == SNAT_DIR_REPLY));

        // The same flow keeps its port.
        let (_, again) = dp.run_tc(TC_EGRESS, &out);
        assert_eq!(again, masqueraded, "{name}: a flow must keep its port");

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
        assert_eq!(ret, TC_ACT_REDIRECT, "{name}: delivered to the container");
        assert_only_nat_fields_changed(&reply, &undo_delivery(&reply, &delivered), false);
        let back = verify(&delivered).unwrap_or_else(|e| panic!("{name}: reply {e}"));
        assert_eq!(back.dst, "10.1.0.2".parse::<Ipv4Addr>().unwrap(), "{name}");
        let want = if flow.proto == IPPROTO_ICMP {
            (0, flow.sport)
        } else {
            (flow.dport, flow.sport)
        };
        assert_eq!((back.sport, back.dport), want, "{name}");
        assert_eq!(dp.event(Event::SnatReply), 1, "{name}");

        // A reply to a port nobody holds is left alone.
        let stray = FrameSpec::udp(REMOTE, 53, HOST, port.wrapping_add(1), b"x").build();
        let (_, untouched) = dp.run_tc(TC_INGRESS, &stray);
        assert_eq!(untouched, stray, "{name}");
    }
}

#[test]
fn tc_masquerade_leaves_non_containers_alone_and_counts_what_it_cannot_do() {
    in_private_netns(&[], masquerade_limits);
}

fn masquerade_limits() {
    let net1 = policy(1, 0, "10.1.0.0", "255.255.255.0");
    let mut dp = Dp::with_endpoint_program();
    dp.endpoint_addr("10.1.0.2", &net1);
    // The host's own traffic is not masqueraded.
    let host_flow = FrameSpec::tcp(HOST, 40000, REMOTE, 443, b"").build();
    dp.masq_addr(TEST_RUN_IFINDEX, HOST);
    let (_, after) = dp.run_tc(TC_EGRESS, &host_flow);
    assert_eq!(after, host_flow);
    assert_eq!(dp.event(Event::SnatOut), 0);

    // No address to masquerade to on this interface: passed and counted.
    let mut dp = Dp::with_endpoint_program();
    dp.endpoint_addr("10.1.0.2", &net1);
    let flow = FrameSpec::tcp("10.1.0.2", 40000, REMOTE, 443, b"").build();
    let (ret, after) = dp.run_tc(TC_EGRESS, &flow);
    assert_eq!((ret, after), (TC_ACT_PIPE, flow.clone()));
    assert_eq!(dp.event(Event::PassNoMasqAddr), 1);

    // Every masquerade port published on the host: a new TCP flow has no
    // port and is dropped (counted); replies to it would be taken for the
    // published flows otherwise. UDP still has its ports.
    let mut dp = Dp::with_endpoint_program();
    dp.endpoint_addr("10.1.0.2", &net1);
    dp.masq_addr(TEST_RUN_IFINDEX, HOST);
    for port in SNAT_PORT_MIN..=SNAT_PORT_MAX {
        dp.publish("0.0.0.0", port, IPPROTO_TCP, CTR, 80);
    }
    let (ret, after) = dp.run_tc(TC_EGRESS, &flow);
    assert_eq!((ret, after), (TC_ACT_SHOT, flow));
    assert_eq!(dp.event(Event::DropSnatNoPort), 1);
    let udp = FrameSpec::udp("10.1.0.2", 40001, REMOTE, 53, b"q").build();
    let (ret, after) = dp.run_tc(TC_EGRESS, &udp);
    assert_eq!(ret, TC_ACT_PIPE);
    assert_eq!(
        verify(&after).unwrap().src,
        HOST.parse::<Ipv4Addr>().unwrap()
    );
}

/// A container's packet to elsewhere is routed by FIB lookup: with a known
/// neighbour, MACs from the lookup, TTL one less, redirected; without one,
/// redirected through the kernel's neighbour resolution; an expiring TTL
/// and destinations without a route are left to the stack. The namespace
/// has a veth `fwd0` with 192.0.2.1/24, one permanent neighbour, and
/// forwarding on (a lookup needs it on the input device).
#[test]
fn tc_from_container_routes_by_fib_lookup() {
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
    let mut dp = Dp::with_endpoint_program();
    dp.endpoint_iface(TEST_RUN_IFINDEX, &net1);

    // fwd0 not served: the stack (and the host's firewall) decide.
    let out = FrameSpec::tcp("10.1.0.2", 40000, "192.0.2.9", 443, b"routed").build();
    let (ret, after) = dp.run_tc(TC_FROM_CONTAINER, &out);
    assert_eq!((ret, after), (TC_ACT_PIPE, out.clone()), "unserved egress");
    dp.masq_addr(fwd0, "192.0.2.1");

    // Known neighbour: a full rewrite.
    let out = FrameSpec::tcp("10.1.0.2", 40000, "192.0.2.9", 443, b"routed").build();
    let (ret, routed) = dp.run_tc(TC_FROM_CONTAINER, &out);
    assert_eq!(ret, TC_ACT_REDIRECT);
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

    // No neighbour entry: the kernel resolves it (MACs untouched here).
    let out = FrameSpec::udp("10.1.0.2", 40000, "192.0.2.10", 53, b"q").build();
    let (ret, routed) = dp.run_tc(TC_FROM_CONTAINER, &out);
    assert_eq!(ret, TC_ACT_REDIRECT);
    assert_eq!(routed[..12], out[..12]);
    assert_eq!(routed[22], out[22] - 1);
    verify(&routed).unwrap();
    assert_eq!(dp.event(Event::RedirectRouted), 2);

    // TTL 1 and no route: the stack's business, untouched.
    let mut dying = FrameSpec::tcp("10.1.0.2", 40000, "192.0.2.9", 443, b"").build();
    dying[22] = 1;
    let csum = !netagent_tests::packet::fold(netagent_tests::packet::sum16(
        &{
            let mut h = dying[14..34].to_vec();
            h[10] = 0;
            h[11] = 0;
            h
        },
        0,
    ));
    dying[24..26].copy_from_slice(&csum.to_be_bytes());
    for (name, frame) in [
        ("ttl 1", dying),
        (
            "no route",
            FrameSpec::tcp("10.1.0.2", 1, "203.0.113.1", 2, b"").build(),
        ),
    ] {
        let (ret, after) = dp.run_tc(TC_FROM_CONTAINER, &frame);
        assert_eq!((ret, after), (TC_ACT_PIPE, frame), "{name}");
    }
    assert_eq!(dp.event(Event::RedirectRouted), 2);
}
