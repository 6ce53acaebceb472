//! Results: medians, ratios to the direct path, the machine they were
//! measured on; written as JSON, markdown and an SVG of the scale curves.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;
use plotters::prelude::*;
use serde::Serialize;

use crate::measure::Metric;

#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub variant: String,
    /// The client's sender profile (`topo::Profile::name`).
    pub profile: String,
    /// Publications installed while measured.
    pub publications: usize,
    pub metric: Metric,
    pub value: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ScalePoint {
    pub variant: String,
    pub publications: usize,
    /// Seconds to install all publications with the variant's bulk tool.
    pub install_s: f64,
    pub conn_per_s: f64,
    pub udp64_kpps: f64,
    pub agent_rss_kib: Option<u64>,
    /// Kernel memory of netagent's maps, KiB, on this machine's CPUs.
    pub map_kib: Option<u64>,
    /// The per-CPU maps' share of it, per CPU, KiB.
    pub map_per_cpu_kib: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub kernel: String,
    pub cpu: String,
    pub cpus: usize,
    pub load_average_start: String,
    pub load_average_end: String,
    pub tools: BTreeMap<String, String>,
    pub commit: String,
    pub date: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    #[serde(skip)]
    out: PathBuf,
    pub rounds: usize,
    pub seconds: u64,
    pub machine: Machine,
    pub remote: Vec<Sample>,
    /// The remote client over IPv6 (one publication).
    pub remote6: Vec<Sample>,
    pub host_local: Vec<Sample>,
    pub scale: Vec<ScalePoint>,
    /// CNI ADD and DEL latencies (`cni.rs`).
    pub cni: Vec<crate::cni::CniSample>,
    /// The CNI checks per variant.
    pub cni_checks: Vec<crate::cni::CniChecks>,
    /// Things that happened during the run that a reader should know.
    pub notes: Vec<String>,
}

/// The 90th percentile of `values` (nearest rank).
pub fn p90(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n => v[((n * 9).div_ceil(10)).saturating_sub(1)],
    }
}

/// Median of `values` (mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn sh(cmd: &str) -> String {
    Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

impl Report {
    pub fn new(out: &Path, rounds: usize, seconds: u64) -> anyhow::Result<Self> {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        let tools = [
            ("iperf3", "iperf3 --version | head -1"),
            ("sockperf", "sockperf --version 2>&1 | grep -i version | head -1"),
            ("iptables", "iptables -V"),
            ("nft", "nft -v"),
            ("docker-proxy", "echo docker.io $(dpkg-deb -f /var/cache/netagent-bench/docker.io.deb Version 2>/dev/null)"),
        ]
        .into_iter()
        .map(|(k, c)| (k.to_owned(), sh(c)))
        .collect();
        Ok(Self {
            out: out.to_owned(),
            rounds,
            seconds,
            machine: Machine {
                kernel: sh("uname -r"),
                cpu: sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
                cpus: std::thread::available_parallelism().map_or(0, usize::from),
                load_average_start: sh("cut -d' ' -f1-3 /proc/loadavg"),
                load_average_end: String::new(),
                tools,
                commit: sh("git rev-parse --short HEAD"),
                date: sh("date -u +%Y-%m-%dT%H:%M:%SZ"),
            },
            remote: Vec::new(),
            remote6: Vec::new(),
            host_local: Vec::new(),
            scale: Vec::new(),
            cni: Vec::new(),
            cni_checks: Vec::new(),
            notes: Vec::new(),
        })
    }

    pub fn finish(mut self) -> anyhow::Result<()> {
        self.machine.load_average_end = sh("cut -d' ' -f1-3 /proc/loadavg");
        let grouped = |samples: &[Sample]| -> Vec<serde_json::Value> {
            remote_groups(samples)
                .into_iter()
                .map(|((n, profile), samples)| {
                    serde_json::json!({
                        "publications": n,
                        "profile": profile,
                        "medians": medians(samples.iter().copied()),
                    })
                })
                .collect()
        };
        let json = serde_json::json!({
            "report": &self,
            "medians": {
                "remote": grouped(&self.remote),
                "remote_ipv6": grouped(&self.remote6),
                "host_local": medians(self.host_local.iter()),
            },
        });
        std::fs::write(
            self.out.join("results.json"),
            serde_json::to_string_pretty(&json)?,
        )?;
        std::fs::write(self.out.join("results.md"), self.markdown())?;
        self.plot(&self.out.join("scale.svg"))?;
        Ok(())
    }

    fn markdown(&self) -> String {
        let m = &self.machine;
        let mut s = String::new();
        let _ = writeln!(s, "# netagent benchmark results\n");
        let _ = writeln!(
            s,
            "{} · kernel {} · {} CPUs ({}) · load average {} at start, {} at end · \
             {} interleaved rounds of {} s per figure · commit {}\n",
            m.date,
            m.kernel,
            m.cpus,
            m.cpu,
            m.load_average_start,
            m.load_average_end,
            self.rounds,
            self.seconds,
            m.commit
        );
        for (tool, version) in &m.tools {
            let _ = writeln!(s, "- {tool}: {version}");
        }
        let variants = [
            "direct",
            "netagent",
            "netagent-xdp",
            "netagent-endpoint",
            "iptables",
            "nftables",
        ];
        let groups = remote_groups(&self.remote);
        for ((n, profile), samples) in &groups {
            let _ = writeln!(
                s,
                "\n## Remote client, {profile} sender, {n} publication{}\n",
                if *n == 1 { "" } else { "s" }
            );
            table(
                &mut s,
                &medians(samples.iter().copied()),
                &variants,
                "direct",
            );
        }
        for ((n, profile), samples) in remote_groups(&self.remote6) {
            let _ = writeln!(
                s,
                "\n## Remote client over IPv6, {profile} sender, {n} publication{}\n",
                if n == 1 { "" } else { "s" }
            );
            table(
                &mut s,
                &medians(samples.iter().copied()),
                &["direct", "netagent-endpoint", "iptables", "nftables"],
                "direct",
            );
        }
        if !self.remote6.is_empty() {
            let _ = writeln!(
                s,
                "\nOver IPv6: the client at fd90:1::2 reaches [fd90:1::1]:PORT (the \
                 container fd90:2::2 for direct); netagent's own dual-stack container \
                 (its `[::]` publication), Docker's ip6tables rules, netavark's `inet` \
                 table. Round trips by the benchmark's own 64-byte TCP ping-pong \
                 (sockperf 3.7 speaks IPv4 only): compare them within this table only.\n"
            );
        }
        let local = medians(self.host_local.iter());
        let _ = writeln!(
            s,
            "\n## Host-local client: a process on the host → 127.0.0.1:port\n"
        );
        table(
            &mut s,
            &local,
            &["direct", "docker-proxy", "netagent"],
            "direct",
        );
        let _ = writeln!(
            s,
            "\nnetagent host-local: a process of the daemon's cgroup connects to \
             127.0.0.1:PORT and the socket hooks send it to the container at connect; \
             direct connects to the container's address. docker-proxy runs TCP proxies \
             only here (no UDP figure).\n"
        );
        let _ = writeln!(
            s,
            "## Scale: N publications installed, the measured one last\n"
        );
        let _ = writeln!(
            s,
            "| publications | variant | install (s) | TCP connections/s | UDP 64 B kpps | agent RSS (MiB) | map memory (MiB) | of which per CPU (MiB) |"
        );
        let _ = writeln!(s, "|---:|---|---:|---:|---:|---:|---:|---:|");
        let mib = |k: Option<u64>| k.map_or(String::new(), |k| format!("{:.1}", k as f64 / 1024.0));
        for p in &self.scale {
            let _ = writeln!(
                s,
                "| {} | {} | {:.3} | {:.0} | {:.1} | {} | {} | {} |",
                p.publications,
                p.variant,
                p.install_s,
                p.conn_per_s,
                p.udp64_kpps,
                mib(p.agent_rss_kib),
                mib(p.map_kib),
                mib(p.map_per_cpu_kib)
            );
        }
        let _ = writeln!(s, "\n![scale curves](scale.svg)\n");
        self.cni_table(&mut s);
        if !self.notes.is_empty() {
            let _ = writeln!(s, "## Notes from the run\n");
            for note in &self.notes {
                let _ = writeln!(s, "- {note}");
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(s, "## Targets (same run)\n");
        for line in self.targets(&groups, &local) {
            let _ = writeln!(s, "- {line}");
        }
        s
    }

    /// The CNI section: each variant's ADD and DEL latency (median, 90th
    /// percentile), and netagent-cni's medians as ratios to the
    /// reference chain's.
    fn cni_table(&self, s: &mut String) {
        if self.cni.is_empty() {
            return;
        }
        let _ = writeln!(
            s,
            "## CNI: ADD and DEL through libcni, one published port per container\n"
        );
        let _ = writeln!(
            s,
            "| variant | ADD median (ms) | ADD p90 (ms) | DEL median (ms) | DEL p90 (ms) |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|");
        for (variant, [add, add90, del, del90]) in self.cni_figures() {
            let _ = writeln!(
                s,
                "| {variant} | {add:.2} | {add90:.2} | {del:.2} | {del90:.2} |"
            );
        }
        let _ = writeln!(s);
        if self.cni_checks.is_empty() {
            return;
        }
        let _ = writeln!(
            s,
            "Checks, one container per network of each kind, its port published \
             (TCP and UDP, probed at 127.0.0.1 from the plugins' host namespace):\n"
        );
        let _ = writeln!(
            s,
            "| variant | address and route | published TCP | published UDP | isolated from another network | CHECK | STATUS and GC | DEL leaves nothing |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
        let yes = |b: bool| if b { "yes" } else { "no" };
        for c in &self.cni_checks {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                c.variant,
                yes(c.address_and_route),
                yes(c.published_tcp),
                yes(c.published_udp),
                yes(c.isolated),
                yes(c.check),
                yes(c.status_and_gc),
                yes(c.del_clean)
            );
        }
        let _ = writeln!(s);
    }

    /// Per CNI variant: ADD median, ADD p90, DEL median, DEL p90.
    fn cni_figures(&self) -> BTreeMap<String, [f64; 4]> {
        let mut by: BTreeMap<String, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
        for c in &self.cni {
            let e = by.entry(c.variant.clone()).or_default();
            if c.op == "ADD" {
                e.0.push(c.ms)
            } else {
                e.1.push(c.ms)
            }
        }
        by.into_iter()
            .map(|(v, (add, del))| (v, [median(&add), p90(&add), median(&del), p90(&del)]))
            .collect()
    }

    /// The targets (issue 10), each with the measured ratio and a
    /// verdict, per sender profile and number of publications.
    fn targets(&self, groups: &RemoteGroups<'_>, local: &Medians) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |what: String, r: Option<f64>, ok: bool| match r {
            Some(r) => out.push(format!(
                "{what}: {r:.3} — {}",
                if ok { "met" } else { "missed" }
            )),
            None => out.push(format!("{what}: not measured")),
        };
        for ((n, profile), samples) in groups {
            let m = medians(samples.iter().copied());
            let ratio = |metric: Metric, a: &str| {
                Some(m.get(&metric)?.get(a)? / m.get(&metric)?.get("direct")?)
            };
            for na in ["netagent", "netagent-endpoint"] {
                for (metric, bound) in [
                    (Metric::TcpGbps, 0.98),
                    (Metric::Udp64Kpps, 1.0),
                    (Metric::ConnPerS, 1.0),
                    (Metric::RrP50Us, 1.02),
                ] {
                    let higher = metric.higher_is_better();
                    let r = ratio(metric, na);
                    let ok = r.is_some_and(|r| if higher { r >= bound } else { r <= bound });
                    let op = if higher { "≥" } else { "≤" };
                    check(
                        format!(
                            "{na}/direct {} {op} {bound} ({profile}, {n} publications)",
                            metric.label()
                        ),
                        r,
                        ok,
                    );
                }
            }
        }
        // Host-local (issue 11): netagent against the direct connection.
        for (metric, bound) in [
            (Metric::TcpGbps, 0.98),
            (Metric::Udp64Kpps, 0.98),
            (Metric::ConnPerS, 0.98),
        ] {
            let r = local
                .get(&metric)
                .and_then(|m| Some(m.get("netagent")? / m.get("direct")?));
            check(
                format!("host-local netagent/direct {} ≥ {bound}", metric.label()),
                r,
                r.is_some_and(|r| r >= bound),
            );
        }
        let largest = self
            .scale
            .iter()
            .filter(|p| p.variant == "netagent")
            .max_by_key(|p| p.publications);
        if let Some(p) = largest {
            check(
                format!(
                    "netagent install of {} publications < 0.3 s",
                    p.publications
                ),
                Some(p.install_s),
                p.install_s < 0.3,
            );
            if let (Some(total), Some(per_cpu)) = (p.map_kib, p.map_per_cpu_kib) {
                let fixed = total.saturating_sub(per_cpu * self.machine.cpus as u64);
                // On a 128-CPU host the counter array has
                // `stats_slots(128)` entries; the events array is the rest
                // of the per-CPU share.
                let per_cpu_128 = (u64::from(datapath_common::stats_slots(128))
                    * std::mem::size_of::<datapath_common::PubStats>() as u64
                    + u64::from(datapath_common::EVENT_SLOTS) * 8)
                    / 1024;
                out.push(format!(
                    "netagent map memory: {:.1} MiB here ({} CPUs): {:.1} MiB shared + {:.2} MiB per CPU; on a 128-CPU host {:.2} MiB per CPU, {:.0} MiB in all",
                    total as f64 / 1024.0,
                    self.machine.cpus,
                    fixed as f64 / 1024.0,
                    per_cpu as f64 / 1024.0,
                    per_cpu_128 as f64 / 1024.0,
                    (fixed + per_cpu_128 * 128) as f64 / 1024.0
                ));
            }
        }
        // The CNI issue's target: ADD and DEL each at most half the
        // reference chain's (medians, through libcni).
        let cni = self.cni_figures();
        if let (Some(ours), Some(theirs)) = (
            cni.get(crate::cni::NETAGENT),
            cni.get(crate::cni::REFERENCE),
        ) {
            for (op, i) in [("ADD", 0), ("DEL", 2)] {
                let r = ours[i] / theirs[i];
                out.push(format!(
                    "CNI {op} median, netagent-cni / bridge+host-local+portmap ≤ 0.5: {r:.3} ({:.2} ms vs {:.2} ms) — {}",
                    ours[i],
                    theirs[i],
                    if r <= 0.5 { "met" } else { "missed" }
                ));
            }
        }
        out
    }

    fn plot(&self, path: &Path) -> anyhow::Result<()> {
        let root = SVGBackend::new(path, (1000, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let (left, right) = root.split_horizontally(500);
        let max_n = self
            .scale
            .iter()
            .map(|p| p.publications)
            .max()
            .unwrap_or(1)
            .max(2) as f64;
        let series = |f: &dyn Fn(&ScalePoint) -> f64| -> Vec<(&str, Vec<(f64, f64)>)> {
            ["netagent", "netagent-endpoint", "iptables", "nftables"]
                .into_iter()
                .map(|v| {
                    let mut pts: Vec<(f64, f64)> = self
                        .scale
                        .iter()
                        .filter(|p| p.variant == v)
                        .map(|p| (p.publications.max(1) as f64, f(p)))
                        .collect();
                    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                    (v, pts)
                })
                .collect()
        };
        for (area, title, ylabel, legend_at, data) in [
            (
                &left,
                "New TCP connections/s vs publications",
                "connections/s",
                SeriesLabelPosition::LowerLeft,
                series(&|p| p.conn_per_s),
            ),
            (
                &right,
                "Install time vs publications",
                "seconds",
                SeriesLabelPosition::UpperLeft,
                series(&|p| p.install_s.max(1e-4)),
            ),
        ] {
            let ymax = data
                .iter()
                .flat_map(|(_, p)| p.iter().map(|x| x.1))
                .fold(1e-3, f64::max)
                * 1.2;
            let ymin = data
                .iter()
                .flat_map(|(_, p)| p.iter().map(|x| x.1))
                .fold(f64::MAX, f64::min)
                .max(1e-4)
                / 2.0;
            let mut chart = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(60)
                .build_cartesian_2d((1f64..max_n * 1.5).log_scale(), (ymin..ymax).log_scale())?;
            chart
                .configure_mesh()
                .x_desc("publications installed")
                .y_desc(ylabel)
                .draw()?;
            for (name, pts) in data {
                let color = match name {
                    "netagent" => RGBColor(0xd6, 0x27, 0x28),
                    "netagent-endpoint" => RGBColor(0xff, 0x7f, 0x0e),
                    "iptables" => RGBColor(0x2c, 0xa0, 0x2c),
                    _ => RGBColor(0x1f, 0x77, 0xb4),
                }
                .to_rgba();
                chart
                    .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
                    .label(name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                    });
                chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
            }
            chart
                .configure_series_labels()
                .position(legend_at)
                .border_style(BLACK)
                .background_style(WHITE.mix(0.8))
                .draw()?;
        }
        root.present()?;
        Ok(())
    }
}

/// metric -> variant -> median.
type Medians = BTreeMap<Metric, BTreeMap<String, f64>>;

/// Remote samples by (publications, sender profile).
type RemoteGroups<'a> = BTreeMap<(usize, String), Vec<&'a Sample>>;

fn remote_groups(samples: &[Sample]) -> RemoteGroups<'_> {
    let mut groups: RemoteGroups<'_> = BTreeMap::new();
    for s in samples {
        groups
            .entry((s.publications, s.profile.clone()))
            .or_default()
            .push(s);
    }
    groups
}

fn medians<'a>(samples: impl Iterator<Item = &'a Sample>) -> Medians {
    let mut grouped: BTreeMap<Metric, BTreeMap<String, Vec<f64>>> = BTreeMap::new();
    for s in samples {
        grouped
            .entry(s.metric)
            .or_default()
            .entry(s.variant.clone())
            .or_default()
            .push(s.value);
    }
    grouped
        .into_iter()
        .map(|(m, by)| (m, by.into_iter().map(|(v, xs)| (v, median(&xs))).collect()))
        .collect()
}

/// One markdown table: medians per variant, then each variant's ratio to
/// `base` (for latency, above 1 is slower).
fn table(s: &mut String, medians: &Medians, variants: &[&str], base: &str) {
    let others: Vec<&&str> = variants.iter().filter(|v| **v != base).collect();
    let _ = write!(s, "| figure |");
    for v in variants {
        let _ = write!(s, " {v} |");
    }
    for v in &others {
        let _ = write!(s, " {v}/{base} |");
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "|---|{}", "---:|".repeat(variants.len() + others.len()));
    for (metric, by) in medians {
        let _ = write!(s, "| {} |", metric.label());
        for v in variants {
            let _ = write!(
                s,
                " {} |",
                by.get(*v).map_or("".into(), |x| format!("{x:.2}"))
            );
        }
        for v in &others {
            let r = by.get(**v).zip(by.get(base)).map(|(a, b)| a / b);
            let _ = write!(s, " {} |", r.map_or("".into(), |r| format!("{r:.3}")));
        }
        let _ = writeln!(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(variant: &str, metric: Metric, value: f64) -> Sample {
        Sample {
            variant: variant.into(),
            profile: "wire-like".into(),
            publications: 1,
            metric,
            value,
        }
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn table_shows_medians_and_ratios_to_the_base() {
        let samples = [
            sample("direct", Metric::TcpGbps, 10.0),
            sample("direct", Metric::TcpGbps, 12.0),
            sample("direct", Metric::TcpGbps, 11.0),
            sample("netagent", Metric::TcpGbps, 9.9),
        ];
        let mut s = String::new();
        table(
            &mut s,
            &medians(samples.iter()),
            &["direct", "netagent"],
            "direct",
        );
        let row = s
            .lines()
            .find(|l| l.starts_with("| TCP throughput"))
            .unwrap();
        assert_eq!(row, "| TCP throughput (Gbit/s) | 11.00 | 9.90 | 0.900 |");
    }
}
