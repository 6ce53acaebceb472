//! The BPF_PROG_TEST_RUN harness: the datapath object loaded afresh (fresh
//! maps) for each case, map state installed by hand, one frame through
//! one program, and the verdict, output bytes and counters read back.

use std::net::Ipv4Addr;

use aya::{
    Ebpf, TestRun, TestRunOptions, TestRunResult,
    maps::{Array, HashMap, PerCpuArray},
    programs::{SchedClassifier, Xdp},
};
use datapath_common::{
    CtKey, CtValue, DatapathConfig, EndpointAddr, EndpointIface, Event, LocalAddr, MasqAddr,
    NetPolicy, OpenPort, PortRange, PubKey, PubStats, PubValue, SnatKey, SnatValue,
    XDP_TRANSLATED_MARK,
    map_names::{
        CONFIG, CT_SYN, CT_TCP, CT_UDP, ENDPOINT_ADDRS, ENDPOINT_IFACES, EVENTS, LOCAL_ADDRS,
        MASQ_ADDRS, OPEN_PORTS, PUB_STATS, PUBLICATIONS, SNAT,
    },
    prog_names::{TC_DNS, TC_EGRESS, TC_FROM_CONTAINER, TC_INGRESS, XDP_INGRESS},
};

use crate::netns::require_root;

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
/// TC verdicts as test_run returns them (u32).
pub const TC_NEXT: u32 = u32::MAX;
pub const TC_DROP: u32 = 2;
pub const TC_REDIRECT: u32 = 7;

pub const HOST: &str = "10.0.0.1";
pub const CLIENT: &str = "192.0.2.7";
pub const CTR: &str = "172.17.0.2";
pub const REMOTE: &str = "198.51.100.20";
pub const SLOT: u32 = 3;
pub const CTR_MAC: [u8; 6] = [0x02, 0xcc, 0, 0, 0, 2];
pub const GW_MAC: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 1];
/// `skb->ifindex` under BPF_PROG_TEST_RUN without a context: the loopback
/// device of the caller's network namespace.
pub const TEST_RUN_IFINDEX: u32 = 1;

pub fn be32(ip: &str) -> u32 {
    u32::from_ne_bytes(ip.parse::<Ipv4Addr>().expect("ip").octets())
}

pub fn policy(net_id: u32, flags: u32, subnet: &str, mask: &str) -> NetPolicy {
    NetPolicy {
        net_id,
        flags,
        subnet_be: be32(subnet),
        mask_be: be32(mask),
    }
}

/// `bpf_ktime_get_ns`'s clock, for aging map entries by hand.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec out-parameter.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A freshly loaded datapath with empty maps; each program is loaded (and
/// verified) the first time a case runs it.
pub struct Dp {
    pub ebpf: Ebpf,
    /// Packets that came out of XDP with the translated mark.
    marks: usize,
    loaded: Vec<&'static str>,
}

impl Default for Dp {
    fn default() -> Self {
        Self::new()
    }
}

impl Dp {
    pub fn new() -> Self {
        require_root();
        assert!(
            !netagent::datapath::bpf::OBJECT.is_empty(),
            "built with AYA_BUILD_SKIP=1: no eBPF object to test"
        );
        let ebpf = Ebpf::load(netagent::datapath::bpf::OBJECT).expect("loading the object");
        Self {
            ebpf,
            marks: 0,
            loaded: Vec::new(),
        }
    }

    /// The XDP program, loaded on first use.
    fn xdp(&mut self) -> &mut Xdp {
        let xdp: &mut Xdp = self
            .ebpf
            .program_mut(XDP_INGRESS)
            .expect("xdp")
            .try_into()
            .expect("xdp type");
        if !self.loaded.contains(&XDP_INGRESS) {
            xdp.load().expect("verifier accepts the XDP program");
            self.loaded.push(XDP_INGRESS);
        }
        xdp
    }

    /// A TC program, loaded on first use.
    fn tc(&mut self, name: &str) -> &mut SchedClassifier {
        let name = [TC_INGRESS, TC_EGRESS, TC_FROM_CONTAINER, TC_DNS]
            .into_iter()
            .find(|n| *n == name)
            .unwrap_or_else(|| panic!("no TC program {name}"));
        let tc: &mut SchedClassifier = self
            .ebpf
            .program_mut(name)
            .expect("tc")
            .try_into()
            .expect("tc type");
        if !self.loaded.contains(&name) {
            tc.load()
                .unwrap_or_else(|e| panic!("verifier rejects {name}: {e:?}"));
            self.loaded.push(name);
        }
        tc
    }

    fn hash<K: aya::Pod, V: aya::Pod>(
        &mut self,
        name: &str,
    ) -> HashMap<&mut aya::maps::MapData, K, V> {
        HashMap::try_from(self.ebpf.map_mut(name).expect("map")).expect("hash map")
    }

    pub fn publish(&mut self, host: &str, hport: u16, proto: u8, ctr: &str, cport: u16) {
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
        self.hash::<PubKey, PubValue>(PUBLICATIONS)
            .insert(&key, &value, 0)
            .expect("publish");
    }

    pub fn add_local(&mut self, ip: &str) {
        self.hash::<u32, LocalAddr>(LOCAL_ADDRS)
            .insert(&be32(ip), &LocalAddr { ifindex: 1 }, 0)
            .expect("local addr");
    }

    /// A conntrack entry in one of the three maps (`CT_TCP`, `CT_SYN`,
    /// `CT_UDP`).
    pub fn ct_in(&self, map: &str, key: &CtKey) -> Option<CtValue> {
        let m: HashMap<_, CtKey, CtValue> =
            HashMap::try_from(self.ebpf.map(map).expect("map")).expect("hash");
        m.get(key, 0).ok()
    }

    /// The conntrack entry of `key` in whichever map holds it.
    pub fn ct(&self, key: &CtKey) -> Option<CtValue> {
        [CT_TCP, CT_SYN, CT_UDP]
            .iter()
            .find_map(|m| self.ct_in(m, key))
    }

    pub fn add_ct(&mut self, map: &str, key: &CtKey, value: &CtValue) {
        self.hash::<CtKey, CtValue>(map)
            .insert(key, value, 0)
            .expect("ct");
    }

    pub fn event(&self, event: Event) -> u64 {
        let map: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map(EVENTS).expect("events")).expect("array");
        map.get(&(event as u32), 0).expect("event").iter().sum()
    }

    /// Every nonzero event, for assertion messages.
    pub fn events(&self) -> Vec<(Event, u64)> {
        Event::ALL
            .iter()
            .map(|&e| (e, self.event(e)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    pub fn pub_stats(&self) -> PubStats {
        let map: PerCpuArray<_, PubStats> =
            PerCpuArray::try_from(self.ebpf.map(PUB_STATS).expect("stats")).expect("array");
        map.get(&SLOT, 0)
            .expect("slot")
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
    pub fn run_xdp(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        let (verdict, mut out) = test_run(self.xdp(), frame, None);
        let meta_len = out.len() - frame.len();
        let frame_out = out.split_off(meta_len);
        match meta_len {
            0 => {}
            4 => assert_eq!(
                u32::from_ne_bytes(out[..4].try_into().expect("4 bytes")),
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

    /// Runs XDP on a frame that arrives with `meta` bytes of metadata
    /// already in front of it (the kernel allows 32 at most, so XDP then
    /// has no room for its mark). Returns (verdict, metadata, frame).
    pub fn run_xdp_with_metadata(&mut self, meta: &[u8], frame: &[u8]) -> (u32, Vec<u8>, Vec<u8>) {
        let mut data = meta.to_vec();
        data.extend_from_slice(frame);
        // struct xdp_md { data, data_end, data_meta, ingress_ifindex,
        // rx_queue_index, egress_ifindex }: data = metadata length.
        let mut ctx = [0u8; 24];
        ctx[..4].copy_from_slice(&(meta.len() as u32).to_ne_bytes());
        ctx[4..8].copy_from_slice(&(data.len() as u32).to_ne_bytes());
        let (verdict, mut out) = test_run(self.xdp(), &data, Some(&ctx));
        let frame_out = out.split_off(out.len() - frame.len());
        (verdict, out, frame_out)
    }

    pub fn run_tc(&mut self, name: &str, frame: &[u8]) -> (u32, Vec<u8>) {
        test_run(self.tc(name), frame, None)
    }

    /// The kernel's time for one run of TC program `name` on `frame`,
    /// `samples` times: each a test run of its own (`repeat` 1), so every
    /// run sees the frame as given, not as the run before rewrote it, and
    /// the maps as the runs before left them (a flow's first packet, then
    /// its established ones). Returns the verdict and the times in ns.
    pub fn time_tc(&mut self, name: &str, frame: &[u8], samples: usize) -> (u32, Vec<u64>) {
        let prog = self.tc(name);
        let mut out = vec![0u8; frame.len() + 256];
        let mut verdict = 0;
        let times = (0..samples)
            .map(|_| {
                let r = prog
                    .test_run(TestRunOptions {
                        data_in: Some(frame),
                        data_out: Some(&mut out),
                        ..Default::default()
                    })
                    .expect("test_run");
                verdict = r.return_value;
                r.duration.as_nanos() as u64
            })
            .collect();
        (verdict, times)
    }

    /// A container interface (its host-side ifindex) on `net`, whose
    /// bridge is the same device (so routed lookups stay with the stack).
    pub fn endpoint_iface(&mut self, ifindex: u32, net: &NetPolicy) {
        let iface = EndpointIface {
            net: *net,
            bridge_ifindex: ifindex,
            _pad: 0,
        };
        self.hash::<u32, EndpointIface>(ENDPOINT_IFACES)
            .insert(&ifindex, &iface, 0)
            .expect("endpoint iface");
    }

    /// A container address whose host-side veth is `host_ifindex` and
    /// whose MAC is `mac`.
    pub fn endpoint_at(&mut self, ip: &str, net: &NetPolicy, host_ifindex: u32, mac: [u8; 6]) {
        let addr = EndpointAddr {
            net: *net,
            host_ifindex,
            mac,
            gw_mac: GW_MAC,
        };
        self.hash::<u32, EndpointAddr>(ENDPOINT_ADDRS)
            .insert(&be32(ip), &addr, 0)
            .expect("endpoint addr");
    }

    /// One of the host's IPv6 addresses (wildcard IPv6 publications).
    pub fn add_local6(&mut self, ip: &str) {
        let ip: std::net::Ipv6Addr = ip.parse().expect("ip");
        self.hash::<datapath_common::Ipv6Be, LocalAddr>(datapath_common::map_names::LOCAL_ADDRS6)
            .insert(&datapath_common::ipv6_be(ip), &LocalAddr { ifindex: 1 }, 0)
            .expect("local addr6");
    }

    /// The IPv6 side of a container interface (its network's subnet).
    pub fn endpoint_iface6(&mut self, ifindex: u32, subnet: &str, prefix_len: u8) {
        let subnet: std::net::Ipv6Addr = subnet.parse().expect("subnet");
        let iface = datapath_common::EndpointIface6 {
            subnet: datapath_common::ipv6_be(subnet),
            gateway: datapath_common::ipv6_be(subnet),
            prefix_len,
            _pad: [0; 3],
        };
        self.hash::<u32, datapath_common::EndpointIface6>(
            datapath_common::map_names::ENDPOINT_IFACES6,
        )
        .insert(&ifindex, &iface, 0)
        .expect("endpoint iface6");
    }

    /// A container IPv6 address whose host-side veth is `host_ifindex`
    /// and whose MAC is `mac`.
    pub fn endpoint_at6(&mut self, ip: &str, net: &NetPolicy, host_ifindex: u32, mac: [u8; 6]) {
        let ip: std::net::Ipv6Addr = ip.parse().expect("ip");
        let addr = EndpointAddr {
            net: *net,
            host_ifindex,
            mac,
            gw_mac: GW_MAC,
        };
        self.hash::<datapath_common::Ipv6Be, EndpointAddr>(
            datapath_common::map_names::ENDPOINT_ADDRS6,
        )
        .insert(&datapath_common::ipv6_be(ip), &addr, 0)
        .expect("endpoint addr6");
    }

    /// A container address elsewhere (ifindex 0), with [`CTR_MAC`].
    pub fn endpoint_addr(&mut self, ip: &str, net: &NetPolicy) {
        self.endpoint_at(ip, net, 0, CTR_MAC);
    }

    pub fn masq_addr(&mut self, ifindex: u32, ip: &str) {
        self.hash::<u32, MasqAddr>(MASQ_ADDRS)
            .insert(&ifindex, &MasqAddr { addr_be: be32(ip) }, 0)
            .expect("masq addr");
    }

    /// The IPv6 masquerade address of served interface `ifindex`.
    pub fn masq_addr6(&mut self, ifindex: u32, ip: &str) {
        let ip: std::net::Ipv6Addr = ip.parse().expect("ip");
        let addr = datapath_common::MasqAddr6 {
            addr_be: datapath_common::ipv6_be(ip),
        };
        self.hash::<u32, datapath_common::MasqAddr6>(datapath_common::map_names::MASQ_ADDRS6)
            .insert(&ifindex, &addr, 0)
            .expect("masq addr6");
    }

    /// Publishes `[ip]:port/proto` on IPv6 to `[to]:to_port`.
    pub fn publish6(&mut self, ip: &str, port: u16, proto: u8, to: &str, to_port: u16) {
        let v6 = |s: &str| datapath_common::ipv6_be(s.parse().expect("ip"));
        let key = datapath_common::PubKey6 {
            addr_be: v6(ip),
            port_be: port.to_be(),
            proto,
            _pad: 0,
        };
        let value = datapath_common::PubValue6 {
            addr_be: v6(to),
            port_be: to_port.to_be(),
            _pad: 0,
            stats_slot: datapath_common::NO_STATS_SLOT,
        };
        self.hash::<datapath_common::PubKey6, datapath_common::PubValue6>(
            datapath_common::map_names::PUBLICATIONS6,
        )
        .insert(&key, &value, 0)
        .expect("publication6");
    }

    pub fn open_port(&mut self, ip: &str, port: u16, proto: u8) {
        let key = OpenPort {
            addr_be: be32(ip),
            port_be: port.to_be(),
            proto,
            _pad: 0,
        };
        self.hash::<OpenPort, u32>(OPEN_PORTS)
            .insert(&key, &1, 0)
            .expect("open port");
    }

    /// A legacy link's hole: `from` may reach `to`'s `port` (`dir`
    /// [`datapath_common::LINK_DPORT`]) or be answered from it
    /// ([`datapath_common::LINK_SPORT`]).
    pub fn link_hole(&mut self, from: &str, to: &str, port: u16, proto: u8, dir: u8) {
        let key = datapath_common::LinkHole {
            from_be: be32(from),
            to_be: be32(to),
            port_be: port.to_be(),
            proto,
            dir,
        };
        self.hash::<datapath_common::LinkHole, u32>(datapath_common::map_names::LINK_HOLES)
            .insert(&key, &1, 0)
            .expect("link hole");
    }

    /// The embedded resolver's real port in the namespace with `cookie`.
    pub fn resolver_port(&mut self, cookie: u64, port: u16) {
        self.hash::<u64, u32>(datapath_common::map_names::DNS_PORTS)
            .insert(&cookie, &u32::from(port.to_be()), 0)
            .expect("resolver port");
    }

    /// Masquerade ports `lo..=hi` only, and a share of `share` (0: default).
    pub fn masq_pool(&mut self, lo: u16, hi: u16, share: u32) {
        let mut cfg: Array<_, DatapathConfig> =
            Array::try_from(self.ebpf.map_mut(CONFIG).expect("config")).expect("array");
        let value = DatapathConfig {
            masq_ports: [PortRange { lo, hi }, PortRange::default()],
            masq_share: share,
            _pad: 0,
        };
        cfg.set(0, &value, 0).expect("config");
    }

    pub fn snat_entries(&self) -> Vec<(SnatKey, SnatValue)> {
        let map: HashMap<_, SnatKey, SnatValue> =
            HashMap::try_from(self.ebpf.map(SNAT).expect("snat")).expect("hash");
        map.iter().map(|r| r.expect("entry")).collect()
    }

    pub fn set_snat(&mut self, key: &SnatKey, value: &SnatValue) {
        self.hash::<SnatKey, SnatValue>(SNAT)
            .insert(key, value, 0)
            .expect("snat");
    }
}

/// One BPF_PROG_TEST_RUN of `prog` on `frame`: (verdict, output bytes).
pub fn test_run<P>(prog: &P, frame: &[u8], ctx: Option<&[u8]>) -> (u32, Vec<u8>)
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = TestRunResult>,
{
    let mut out = vec![0u8; frame.len() + 256];
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: ctx,
            ..Default::default()
        })
        .expect("test_run");
    out.truncate(r.data_size_out as usize);
    (r.return_value, out)
}

/// Runs `f` on a thread inside a fresh network namespace (only `lo`, up):
/// BPF_PROG_TEST_RUN then uses that namespace's loopback device, FIB and
/// sockets, so lookups see only what a test sets up, never the machine's.
pub fn in_private_netns<T: Send + 'static>(
    setup: &[&[&str]],
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let ns = crate::netns::Netns::new(format!("{}p", crate::netns::unique_prefix()));
    for cmd in setup {
        ns.ip(cmd);
    }
    ns.enter(f)
}
