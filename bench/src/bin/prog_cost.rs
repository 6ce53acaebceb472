//! What one run of `na_tc_ingress` costs, by kind of packet: the kernel's
//! own time for each run (BPF_PROG_TEST_RUN, one run per call, so every
//! run sees the packet as sent and the maps as the runs before left them).
//!
//! This machine's VM has no hardware performance counters, so `bpftool
//! prog profile` (cycles, instructions per program) cannot run here; the
//! differences between packet kinds take its place: each kind adds one
//! stage of the program to the kind before it, so the step from one row
//! to the next is what that stage costs. docs/benchmark.md reads them.
//!
//! Each kind is first run once and checked: translated to the container
//! where it should be, left alone where not (a mismatch fails the run).
//! Root (loads the datapath), in a private network namespace of its own.
//! Usage: `prog-cost [SAMPLES]` (default 200,000 runs per kind).

use anyhow::Context as _;
use netagent_tests::{
    dp::{CLIENT, CTR, Dp, HOST, in_private_netns},
    packet::{ETH_P_ARP, FrameSpec, IPPROTO_TCP, IPPROTO_UDP, TCP_ACK, non_ip_frame, verify},
};

/// One kind of packet and what the program does with it.
struct Kind {
    name: &'static str,
    stage: &'static str,
    frame: Vec<u8>,
    /// Whether the program must translate it (checked before timing, so
    /// the figures are of the path they name).
    translated: bool,
}

/// Summary of one kind's run times.
struct Times {
    verdict: u32,
    p10: u64,
    median: u64,
    p90: u64,
    mean: f64,
}

/// TC's verdicts by name (TC_ACT_UNSPEC, as TCX's "next", is -1).
fn verdict_name(v: u32) -> String {
    match v {
        u32::MAX => "next".into(),
        2 => "drop".into(),
        7 => "redirect".into(),
        v => v.to_string(),
    }
}

fn summarize(verdict: u32, mut ns: Vec<u64>) -> Times {
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() - 1) as f64 * q) as usize];
    Times {
        verdict,
        p10: at(0.1),
        median: at(0.5),
        p90: at(0.9),
        mean: ns.iter().sum::<u64>() as f64 / ns.len() as f64,
    }
}

fn kinds() -> Vec<Kind> {
    let udp = |dport| FrameSpec::udp(CLIENT, 40000, HOST, dport, &[0x5a; 64]).build();
    let mut ack = FrameSpec::tcp(CLIENT, 40001, HOST, 8080, &[0x5a; 1448]);
    ack.tcp_flags = TCP_ACK;
    ack.seq = 1000;
    ack.ack = 2000;
    vec![
        Kind {
            name: "ARP",
            stage: "entry, Ethernet type, out (the floor)",
            frame: non_ip_frame(ETH_P_ARP, 60),
            translated: false,
        },
        Kind {
            name: "UDP 64 B to a host address, port not published",
            stage: "+ IPv4/UDP parse, publication lookup (miss), local-address lookup",
            frame: udp(9999),
            translated: false,
        },
        Kind {
            name: "UDP 64 B to a publication by address, established flow",
            stage: "+ UDP flow lookup and refresh, rewrite with checksum helpers, counters",
            frame: udp(5353),
            translated: true,
        },
        Kind {
            name: "UDP 64 B to a wildcard publication, established flow",
            stage: "+ the wildcard's second publication lookup",
            frame: udp(5354),
            translated: true,
        },
        Kind {
            name: "TCP ACK 1448 B to a publication by address",
            stage: "TCP: conntrack lookup, rewrite, counters",
            frame: ack.build(),
            translated: true,
        },
    ]
}

fn main() -> anyhow::Result<()> {
    let samples: usize = match std::env::args().nth(1) {
        Some(n) => n.parse().context("SAMPLES must be a number")?,
        None => 200_000,
    };
    let results = in_private_netns(&[], move || {
        let mut dp = Dp::new();
        dp.add_local(HOST);
        dp.publish(HOST, 5353, IPPROTO_UDP, CTR, 53);
        dp.publish("0.0.0.0", 5354, IPPROTO_UDP, CTR, 53);
        dp.publish(HOST, 8080, IPPROTO_TCP, CTR, 80);
        let name = datapath_common::prog_names::TC_INGRESS;
        kinds()
            .into_iter()
            .map(|kind| {
                let (_, out) = dp.run_tc(name, &kind.frame);
                let to_container = verify(&out).is_ok_and(|c| c.dst.to_string() == CTR);
                if to_container != kind.translated {
                    return Err(anyhow::anyhow!(
                        "{}: translated {to_container}, expected {}",
                        kind.name,
                        kind.translated
                    ));
                }
                // Warm up: caches, the JIT's pages.
                dp.time_tc(name, &kind.frame, samples / 10);
                let (verdict, ns) = dp.time_tc(name, &kind.frame, samples);
                Ok((kind, summarize(verdict, ns)))
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    println!("na_tc_ingress, {samples} runs per kind (ns per run, kernel's clock)\n");
    println!(
        "| packet | stage it adds | verdict | p10 | median | p90 | mean | step from the row above (median) |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    let mut previous: Option<u64> = None;
    for (kind, t) in &results {
        let step = previous.map_or("-".to_owned(), |p| {
            format!("{:+}", t.median as i64 - p as i64)
        });
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.0} | {step} |",
            kind.name,
            kind.stage,
            verdict_name(t.verdict),
            t.p10,
            t.median,
            t.p90,
            t.mean
        );
        previous = Some(t.median);
    }
    Ok(())
}
