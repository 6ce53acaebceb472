//! `netagent-bench`: netagent against the direct path, iptables (Docker's
//! rules), nftables (netavark's shape) and docker-proxy, in one run on one
//! machine, interleaved (A B C D A B C D ...), reported as medians and
//! ratios to the direct path. A benchmark, not a test: it asserts no
//! absolute numbers, but exits non-zero if any variant carries no traffic.
//! Run through `./x bench` (root; installs the tools it needs).

mod cni;
mod measure;
mod report;
mod topo;

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use clap::Parser;
use measure::Metric;
use report::{Report, Sample, ScalePoint};
use topo::{CTR_IP, DockerProxies, Kind, PROXY_PORTS, PUBLISHED, Profile, Topo, docker_proxy_bin};

#[derive(Parser)]
#[command(name = "netagent-bench")]
struct Args {
    /// Samples per variant and figure (interleaved across variants).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds per sample.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Numbers of installed publications for the scale figures.
    #[arg(long, value_delimiter = ',', default_value = "1,1000,10000,50000")]
    scale: Vec<usize>,
    /// Numbers of installed publications at which every figure is
    /// measured, for every variant and sender profile.
    #[arg(long, value_delimiter = ',', default_value = "1,50000")]
    full_at: Vec<usize>,
    /// Containers each CNI variant ADDs (then DELs) per round.
    #[arg(long, default_value_t = 20)]
    cni_containers: usize,
    /// Only the CNI section (with the netagent topology it needs).
    #[arg(long)]
    cni_only: bool,
    /// A quick run that only proves every variant carries traffic
    /// (1 round, 1 s, scale 1 and 100, 3 CNI containers); for CI.
    #[arg(long)]
    smoke: bool,
    /// Where results.{json,md} and scale.svg go.
    #[arg(long, default_value = "docs/bench")]
    out: PathBuf,
}

/// The remote-client variants, in interleaving order.
const REMOTE: [Kind; 6] = [
    Kind::Direct,
    Kind::Netagent,
    Kind::NetagentXdp,
    Kind::NetagentEndpoint,
    Kind::Iptables,
    Kind::Nftables,
];
/// Variants in the scale figures.
const SCALED: [Kind; 4] = [
    Kind::Netagent,
    Kind::NetagentEndpoint,
    Kind::Iptables,
    Kind::Nftables,
];
/// The figures, grouped by the tool run that yields them.
const GROUPS: [&[Metric]; 4] = [
    &[Metric::TcpGbps],
    &[Metric::Udp64Kpps],
    &[Metric::RrP50Us, Metric::RrP99Us],
    &[Metric::ConnPerS],
];
/// Prefix of every namespace and interface the benchmark makes.
const PREFIX: &str = "nab";

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.rounds = 1;
        args.seconds = 1;
        args.scale = vec![1, 100];
        args.full_at = vec![1, 100];
        args.cni_containers = 3;
    }
    netagent_tests::netns::require_root();
    check_tools()?;
    remove_leftovers();
    let d = Duration::from_secs(args.seconds);
    let mut report = Report::new(&args.out, args.rounds, args.seconds)?;
    if args.cni_only {
        let na = Topo::new(Kind::Netagent, PREFIX).context("building the netagent topology")?;
        cni_section(&args, &na, &mut report)?;
        drop(na);
        report.finish()?;
        eprintln!("== results in {}", args.out.display());
        return Ok(());
    }

    let mut topos: Vec<Topo> = REMOTE
        .iter()
        .map(|&k| {
            Topo::new(k, PREFIX).with_context(|| format!("building the {} topology", k.name()))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut proxies = DockerProxies::start(&docker_proxy_bin(), &topos[0].host)?;

    for &n in &args.full_at {
        for topo in &mut topos {
            let install = topo.install(n.saturating_sub(1))?;
            if topo.kind.is_netagent() {
                eprintln!(
                    "  {} installed {n} publications in {install:?}",
                    topo.kind.name()
                );
            }
        }
        for profile in Profile::ALL {
            for topo in &topos {
                let took = profile.apply(topo);
                report.notes.push(format!(
                    "{n} publications, {} sender, {}: client veth {took}",
                    profile.name(),
                    topo.kind.name()
                ));
            }
            eprintln!(
                "== remote client, {n} publications, {} sender, {} rounds of {} s",
                profile.name(),
                args.rounds,
                args.seconds
            );
            let all: Vec<&Topo> = topos.iter().collect();
            report
                .remote
                .extend(remote_rounds(args.rounds, d, &all, profile, n, false)?);
        }
    }
    // The rest measures at one publication.
    for topo in &mut topos {
        topo.install(0)?;
    }
    remote_ipv6(&args, &topos, &mut report)?;
    // The rest measures with the wire-like sender.
    for topo in &topos {
        Profile::Wire.apply(topo);
    }

    eprintln!("== host-local client (a process in the host namespace)");
    // netagent's host-local path: a process of the daemon's cgroup (the
    // socket hooks translate 127.0.0.1:PORT at connect), in the host
    // namespace of the netagent topology, which is built like the others.
    let na_topo = topos
        .iter()
        .position(|t| t.kind == Kind::Netagent)
        .context("the netagent topology")?;
    let published = PUBLISHED.map(|(host, _)| host);
    let local_variants: [(&str, usize, &str, [u16; 3]); 3] = [
        (
            "direct",
            0,
            CTR_IP,
            [topo::IPERF_PORT, topo::SOCKPERF_PORT, topo::ACCEPT_PORT],
        ),
        ("docker-proxy", 0, "127.0.0.1", PROXY_PORTS),
        ("netagent", na_topo, "127.0.0.1", published),
    ];
    for group in GROUPS {
        for round in 0..args.rounds {
            for (name, at, addr, ports) in local_variants {
                if name == "docker-proxy" && group[0] == Metric::Udp64Kpps {
                    // Its proxies here are TCP ones (iperf3's UDP test
                    // needs a TCP and a UDP proxy on one port).
                    continue;
                }
                let host = &topos[at].host;
                if name == "docker-proxy" && group[0] == Metric::ConnPerS {
                    // docker-proxy leaks descriptors under connection churn
                    // and stops proxying at its fd limit; a fresh one per
                    // sample measures its rate rather than its leak.
                    let leaked = proxies.open_fds();
                    drop(proxies);
                    proxies = DockerProxies::start(&docker_proxy_bin(), &topos[0].host)?;
                    report.notes.push(format!("docker-proxy restarted before connection sample {round}; it held {leaked} descriptors"));
                }
                let joined = (name == "netagent")
                    .then(|| topos[at].daemon.as_ref().map(|d| d.cgroup.join()))
                    .flatten();
                let values = measure_group(group, host, addr, ports, d, false)
                    .with_context(|| format!("{} via host-local {name}", group[0].label()))?;
                drop(joined);
                if name == "docker-proxy"
                    && let Some(words) = proxies.last_words()
                {
                    report.notes.push(format!(
                        "docker-proxy, {} round {round}: {words}",
                        group[0].label()
                    ));
                }
                for (metric, value) in group.iter().zip(values) {
                    eprintln!(
                        "  round {round} {name:<12} {:<24} {value:.3}",
                        metric.label()
                    );
                    report.host_local.push(Sample {
                        variant: name.into(),
                        profile: Profile::Wire.name().into(),
                        publications: 1,
                        metric: *metric,
                        value,
                    });
                }
            }
        }
    }
    drop(proxies);

    cni_section(&args, &topos[na_topo], &mut report)?;

    eprintln!("== scale: {:?} publications", args.scale);
    let mut by_kind: BTreeMap<&str, &mut Topo> = BTreeMap::new();
    for topo in topos.iter_mut().filter(|t| SCALED.contains(&t.kind)) {
        by_kind.insert(topo.kind.name(), topo);
    }
    for &n in &args.scale {
        for kind in SCALED {
            let topo = by_kind.get_mut(kind.name()).context("scaled topology")?;
            let install = topo.install(n.saturating_sub(1))?;
            let (addr, ports) = kind.target();
            let mut conn = Vec::new();
            let mut udp = Vec::new();
            for _ in 0..args.rounds.min(3) {
                conn.push(measure::conn_per_s(&topo.client, addr, ports[2], d)?.per_s);
                udp.push(measure::udp64_kpps(&topo.client, addr, ports[0], d)?);
            }
            let (rss_kib, maps) = if kind.is_netagent() {
                (Some(topo.daemon_rss_kib()?), Some(topo.map_memory_kib()?))
            } else {
                (None, None)
            };
            let point = ScalePoint {
                variant: kind.name().into(),
                publications: n,
                install_s: install.as_secs_f64(),
                conn_per_s: report::median(&conn),
                udp64_kpps: report::median(&udp),
                agent_rss_kib: rss_kib,
                map_kib: maps.map(|m| m.0),
                map_per_cpu_kib: maps.map(|m| m.1),
            };
            eprintln!("  {point:?}");
            report.scale.push(point);
        }
    }
    drop(by_kind);
    drop(topos);

    report.finish()?;
    eprintln!("== results in {}", args.out.display());
    Ok(())
}

/// The remote client over IPv6, at one publication, both sender
/// profiles: the variants that translate IPv6 (`Kind::speaks_ipv6`),
/// interleaved as over IPv4; round trips by the benchmark's own
/// ping-pong (sockperf 3.7 speaks IPv4 only).
fn remote_ipv6(args: &Args, topos: &[Topo], report: &mut Report) -> anyhow::Result<()> {
    let d = Duration::from_secs(args.seconds);
    let v6: Vec<&Topo> = topos.iter().filter(|t| t.kind.speaks_ipv6()).collect();
    for profile in Profile::ALL {
        for topo in &v6 {
            profile.apply(topo);
        }
        eprintln!(
            "== remote client over IPv6, 1 publication, {} sender",
            profile.name()
        );
        report
            .remote6
            .extend(remote_rounds(args.rounds, d, &v6, profile, 1, true)?);
    }
    Ok(())
}

/// Every figure from each of `topos`' clients to its target (over IPv6:
/// [`Kind::target6`]), interleaved across the variants, `rounds` times:
/// one sample per round, variant and figure, at `n` publications.
fn remote_rounds(
    rounds: usize,
    d: Duration,
    topos: &[&Topo],
    profile: Profile,
    n: usize,
    ipv6: bool,
) -> anyhow::Result<Vec<Sample>> {
    let mut samples = Vec::new();
    for group in GROUPS {
        for round in 0..rounds {
            for topo in topos {
                let (addr, ports) = if ipv6 {
                    topo.kind.target6()
                } else {
                    topo.kind.target()
                };
                let values = measure_group(group, &topo.client, addr, ports, d, ipv6)
                    .with_context(|| {
                        format!("{} to {addr} via {}", group[0].label(), topo.kind.name())
                    })?;
                for (metric, value) in group.iter().zip(values) {
                    eprintln!(
                        "  round {round} {:<17} {:<24} {value:.3}",
                        topo.kind.name(),
                        metric.label()
                    );
                    samples.push(Sample {
                        variant: topo.kind.name().into(),
                        profile: profile.name().into(),
                        publications: n,
                        metric: *metric,
                        value,
                    });
                }
            }
        }
    }
    Ok(samples)
}

/// The CNI section (`cni.rs`): netagent-cni through the daemon of `na`
/// (the netagent topology) against the reference chain, interleaved.
fn cni_section(args: &Args, na: &Topo, report: &mut Report) -> anyhow::Result<()> {
    eprintln!(
        "== CNI: {} containers ADDed, CHECKed and DELed per round through libcni",
        args.cni_containers
    );
    let bench = cni::CniBench::new(args.cni_containers)?;
    let socket = &na.daemon.as_ref().context("netagent's daemon")?.socket;
    let variants = [bench.netagent(&na.host.name, socket)?, bench.reference()?];
    for round in 0..args.rounds {
        for variant in &variants {
            let (samples, check_errors) = bench
                .round(variant)
                .with_context(|| format!("CNI round {round} of {}", variant.name))?;
            let med = |op: &str| {
                report::median(
                    &samples
                        .iter()
                        .filter(|s| s.op == op)
                        .map(|s| s.ms)
                        .collect::<Vec<_>>(),
                )
            };
            eprintln!(
                "  round {round} {:<26} ADD {:.2} ms  DEL {:.2} ms (medians)",
                variant.name,
                med("ADD"),
                med("DEL")
            );
            if let Some(first) = check_errors.first() {
                report.notes.push(format!(
                    "CNI round {round}, {}: CHECK failed for {} of {} containers; first: {first}",
                    variant.name,
                    check_errors.len(),
                    args.cni_containers
                ));
            }
            report.cni.extend(samples);
        }
    }
    // The checks, the reference chain as the comparison.
    let seconds = [
        bench.netagent_second(&na.host.name, socket)?,
        bench.reference_second()?,
    ];
    let cgroup = &na.daemon.as_ref().context("netagent's daemon")?.cgroup;
    let ours = bench.checks(&variants[0], &seconds[0], &na.host, || Some(cgroup.join()))?;
    let theirs = bench.checks(
        &variants[1],
        &seconds[1],
        &bench.reference_host,
        || None::<()>,
    )?;
    for c in [ours, theirs] {
        eprintln!("  checks {c:?}");
        report.cni_checks.push(c);
    }
    Ok(())
}

/// Measures one group of figures that one tool run yields; round trips
/// with the benchmark's own ping-pong when `ping_pong` (IPv6).
fn measure_group(
    group: &[Metric],
    ns: &netagent_tests::netns::Netns,
    addr: &str,
    ports: [u16; 3],
    d: Duration,
    ping_pong: bool,
) -> anyhow::Result<Vec<f64>> {
    Ok(match group[0] {
        Metric::TcpGbps => vec![measure::tcp_gbps(ns, addr, ports[0], d)?],
        Metric::Udp64Kpps => vec![measure::udp64_kpps(ns, addr, ports[0], d)?],
        Metric::RrP50Us | Metric::RrP99Us => {
            let (p50, p99) = if ping_pong {
                measure::rr_us_pingpong(ns, addr, ports[1], d)?
            } else {
                measure::rr_us(ns, addr, ports[1], d)?
            };
            vec![p50, p99]
        }
        Metric::ConnPerS => {
            let rate = measure::conn_per_s(ns, addr, ports[2], d)?;
            if rate.failures > 0 {
                eprintln!(
                    "  ! {} connections to {addr}:{} failed, first: {}",
                    rate.failures,
                    ports[2],
                    rate.first_error.unwrap_or_default()
                );
            }
            vec![rate.per_s]
        }
    })
}

fn check_tools() -> anyhow::Result<()> {
    for tool in [
        "iperf3",
        "sockperf",
        "iptables-restore",
        "nft",
        "ethtool",
        "ss",
        "bpftool",
    ] {
        if which(tool).is_none() {
            bail!("{tool} not found: run the benchmark through `./x bench`, which installs it");
        }
    }
    let proxy = docker_proxy_bin();
    if !proxy.exists() {
        bail!(
            "{} not found: `./x bench` unpacks it from Debian's docker.io package",
            proxy.display()
        );
    }
    Ok(())
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join(tool))
        .find(|p| p.exists())
}

/// Namespaces of an earlier run that was killed before it could clean up.
fn remove_leftovers() {
    let listed = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for name in listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(cni::PREFIX))
    {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", name])
            .status();
    }
    for kind in REMOTE {
        for role in ["c", "h", "t"] {
            let name = format!("{PREFIX}{}{role}", kind.tag());
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &name])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}
