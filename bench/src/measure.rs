//! One measurement each: a client in a namespace against a target.
//! Every function fails (naming the target) when no traffic got through,
//! so a variant that carries nothing fails the run instead of scoring 0.

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpStream},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use netagent_tests::netns::Netns;
use serde_json::Value;

/// What is measured, and its unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// iperf3, one TCP stream, receiver Gbit/s.
    TcpGbps,
    /// iperf3 UDP, 64-byte payloads, unlimited rate, one stream:
    /// datagrams received per second, in thousands.
    Udp64Kpps,
    /// sockperf ping-pong over TCP, 64-byte messages: median round trip, µs.
    RrP50Us,
    /// ... 99th percentile round trip, µs.
    RrP99Us,
    /// New TCP connections per second (connect, then close).
    ConnPerS,
}

impl Metric {
    pub const fn label(self) -> &'static str {
        match self {
            Metric::TcpGbps => "TCP throughput (Gbit/s)",
            Metric::Udp64Kpps => "UDP 64 B rate (kpps)",
            Metric::RrP50Us => "TCP RR p50 (µs)",
            Metric::RrP99Us => "TCP RR p99 (µs)",
            Metric::ConnPerS => "TCP connections/s",
        }
    }

    /// Whether a larger value is better (for ratios and targets).
    pub const fn higher_is_better(self) -> bool {
        !matches!(self, Metric::RrP50Us | Metric::RrP99Us)
    }
}

fn run_in(ns: &Netns, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .args(args)
        .output()
        .with_context(|| format!("spawning {args:?}"))?;
    if !out.status.success() {
        bail!(
            "{args:?} in {} failed: {}{}",
            ns.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn secs(d: Duration) -> String {
    d.as_secs().max(1).to_string()
}

/// Runs an iperf3 client for `d` with `extra` options; its JSON report.
fn iperf3(ns: &Netns, addr: &str, port: u16, d: Duration, extra: &[&str]) -> anyhow::Result<Value> {
    let port = port.to_string();
    let secs = secs(d);
    let mut args = vec!["iperf3", "-c", addr, "-p", &port, "-t", &secs, "-J"];
    args.extend_from_slice(extra);
    serde_json::from_str(&run_in(ns, &args)?).context("iperf3 JSON")
}

/// iperf3 TCP, one stream: Gbit/s at the receiver.
pub fn tcp_gbps(ns: &Netns, addr: &str, port: u16, d: Duration) -> anyhow::Result<f64> {
    let v = iperf3(ns, addr, port, d, &[])?;
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("iperf3: no sum_received")?;
    if bps <= 0.0 {
        bail!("iperf3 TCP to {addr}:{port} carried nothing");
    }
    Ok(bps / 1e9)
}

/// iperf3 UDP with 64-byte payloads at unlimited rate, one stream:
/// thousands of datagrams received per second.
pub fn udp64_kpps(ns: &Netns, addr: &str, port: u16, d: Duration) -> anyhow::Result<f64> {
    let v = iperf3(ns, addr, port, d, &["-u", "-l", "64", "-b", "0"])?;
    let r = &v["end"]["sum_received"];
    let (packets, lost, seconds) = (
        r["packets"].as_f64().context("packets")?,
        r["lost_packets"].as_f64().context("lost_packets")?,
        r["seconds"].as_f64().context("seconds")?,
    );
    let received = packets - lost;
    if received <= 0.0 || seconds <= 0.0 {
        bail!("iperf3 UDP to {addr}:{port} carried nothing");
    }
    Ok(received / seconds / 1e3)
}

/// sockperf TCP ping-pong with 64-byte messages: (p50, p99) round trip in µs.
pub fn rr_us(ns: &Netns, addr: &str, port: u16, d: Duration) -> anyhow::Result<(f64, f64)> {
    let out = run_in(
        ns,
        &[
            "sockperf",
            "ping-pong",
            "--tcp",
            "-i",
            addr,
            "-p",
            &port.to_string(),
            "-t",
            &secs(d),
            "-m",
            "64",
            "--full-rtt",
        ],
    )?;
    let percentile = |p: &str| {
        out.lines()
            .find(|l| l.contains(&format!("percentile {p} =")))
            .and_then(|l| l.rsplit('=').next()?.trim().parse::<f64>().ok())
            .with_context(|| format!("sockperf to {addr}:{port}: no {p} percentile in:\n{out}"))
    };
    Ok((percentile("50.000")?, percentile("99.000")?))
}

/// The size of one ping-pong message, as sockperf's `-m 64`.
const PING: usize = netagent_tests::traffic::PING_PONG_BYTES;

/// TCP ping-pong with 64-byte messages, by the benchmark itself, for
/// IPv6 (sockperf 3.7, Debian 12's, speaks IPv4 only): one connection
/// with `TCP_NODELAY`, one message out and its echo back, for `d`;
/// (p50, p99) round trip in µs. Not comparable with sockperf's figures,
/// only among the variants it measured.
pub fn rr_us_pingpong(
    ns: &Netns,
    addr: &str,
    port: u16,
    d: Duration,
) -> anyhow::Result<(f64, f64)> {
    let to = SocketAddr::new(addr.parse::<IpAddr>()?, port);
    let mut rtts = ns.enter(move || -> anyhow::Result<Vec<f64>> {
        let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(2))
            .with_context(|| format!("connecting to {to}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        let (msg, mut back) = ([0x5a_u8; PING], [0u8; PING]);
        let mut rtts = Vec::new();
        let start = Instant::now();
        while start.elapsed() < d {
            let sent = Instant::now();
            stream.write_all(&msg)?;
            stream.read_exact(&mut back)?;
            rtts.push(sent.elapsed().as_secs_f64() * 1e6);
        }
        Ok(rtts)
    })?;
    if rtts.is_empty() {
        bail!("ping-pong with {to}: no round trip");
    }
    rtts.sort_unstable_by(f64::total_cmp);
    let at = |q: f64| rtts[((rtts.len() - 1) as f64 * q).round() as usize];
    Ok((at(0.5), at(0.99)))
}

/// A connection-rate sample.
pub struct ConnRate {
    /// Successful connections per second.
    pub per_s: f64,
    /// Attempts that failed, and the first failure's error.
    pub failures: u64,
    pub first_error: Option<String>,
}

/// Connections per second: connect, then close, for `d`. Returns the rate
/// of successful connections and how many attempts failed. The client
/// namespaces reuse TIME_WAIT ports (`tcp_tw_reuse`) over a wide ephemeral
/// range, so the client's own ports are not what runs out.
pub fn conn_per_s(ns: &Netns, addr: &str, port: u16, d: Duration) -> anyhow::Result<ConnRate> {
    let to = SocketAddr::new(addr.parse::<IpAddr>()?, port);
    let (done, elapsed, failures, first_error) = ns.enter(move || {
        let start = Instant::now();
        let (mut done, mut failures, mut first_error) = (0u64, 0u64, None);
        while start.elapsed() < d {
            match TcpStream::connect_timeout(&to, Duration::from_secs(2)) {
                Ok(_) => done += 1,
                Err(e) => {
                    failures += 1;
                    first_error.get_or_insert(e.to_string());
                }
            }
        }
        (done, start.elapsed(), failures, first_error)
    });
    if done == 0 {
        bail!(
            "no TCP connection to {to} succeeded ({failures} failed: {})",
            first_error.unwrap_or_default()
        );
    }
    Ok(ConnRate {
        per_s: done as f64 / elapsed.as_secs_f64(),
        failures,
        first_error,
    })
}
