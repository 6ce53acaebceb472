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
    pub host_local: Vec<Sample>,
    pub scale: Vec<ScalePoint>,
    /// Things that happened during the run that a reader should know.
    pub notes: Vec<String>,
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
            host_local: Vec::new(),
            scale: Vec::new(),
            notes: Vec::new(),
        })
    }

    pub fn finish(mut self) -> anyhow::Result<()> {
        self.machine.load_average_end = sh("cut -d' ' -f1-3 /proc/loadavg");
        let json = serde_json::json!({
            "report": &self,
            "medians": {
                "remote": medians(&self.remote),
                "host_local": medians(&self.host_local),
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
        let remote = medians(&self.remote);
        let _ = writeln!(
            s,
            "\n## Remote client: client namespace → host → bridge → container\n"
        );
        table(
            &mut s,
            &remote,
            &["direct", "netagent", "netagent-tc", "iptables", "nftables"],
            "direct",
        );
        let local = medians(&self.host_local);
        let _ = writeln!(
            s,
            "\n## Host-local client: a process on the host → 127.0.0.1:port\n"
        );
        table(&mut s, &local, &["direct", "docker-proxy"], "direct");
        let _ = writeln!(
            s,
            "\nnetagent host-local: not measured yet: translating host-local connections \
             (cgroup socket hooks) arrives with a later issue.\n"
        );
        let _ = writeln!(
            s,
            "## Scale: N publications installed, the measured one last\n"
        );
        let _ = writeln!(
            s,
            "| publications | variant | install (s) | TCP connections/s | UDP 64 B kpps | agent RSS (MiB) |"
        );
        let _ = writeln!(s, "|---:|---|---:|---:|---:|---:|");
        for p in &self.scale {
            let rss = p
                .agent_rss_kib
                .map_or("".into(), |k| format!("{:.1}", k as f64 / 1024.0));
            let _ = writeln!(
                s,
                "| {} | {} | {:.3} | {:.0} | {:.1} | {rss} |",
                p.publications, p.variant, p.install_s, p.conn_per_s, p.udp64_kpps
            );
        }
        let _ = writeln!(s, "\n![scale curves](scale.svg)\n");
        if !self.notes.is_empty() {
            let _ = writeln!(s, "## Notes from the run\n");
            for note in &self.notes {
                let _ = writeln!(s, "- {note}");
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(s, "## Targets (same run)\n");
        for line in self.targets(&remote, &local) {
            let _ = writeln!(s, "- {line}");
        }
        s
    }

    /// The issue's targets, each with the measured ratio and a verdict.
    fn targets(&self, remote: &Medians, local: &Medians) -> Vec<String> {
        let mut out = Vec::new();
        let ratio = |m: &Medians, metric: Metric, a: &str, b: &str| {
            Some(m.get(&metric)?.get(a)? / m.get(&metric)?.get(b)?)
        };
        let mut check = |what: String, r: Option<f64>, ok: &dyn Fn(f64) -> bool| match r {
            Some(r) => out.push(format!(
                "{what}: {r:.3} — {}",
                if ok(r) { "met" } else { "missed" }
            )),
            None => out.push(format!("{what}: not measured")),
        };
        // Both attach modes: which one fits depends on the interfaces
        // (native XDP for NICs, TC for veth, as in this topology).
        let vs_direct = [
            (Metric::TcpGbps, "TCP throughput ≥ 0.95"),
            (Metric::Udp64Kpps, "UDP 64 B rate ≥ 0.95"),
            (Metric::RrP50Us, "TCP RR p50 ≤ 1.05"),
        ];
        for na in ["netagent", "netagent-tc"] {
            for (metric, what) in vs_direct {
                let ok: &dyn Fn(f64) -> bool = if metric.higher_is_better() {
                    &|r| r >= 0.95
                } else {
                    &|r| r <= 1.05
                };
                check(
                    format!("{na}/direct {what}"),
                    ratio(remote, metric, na, "direct"),
                    ok,
                );
            }
            for other in ["iptables", "nftables"] {
                for metric in [
                    Metric::TcpGbps,
                    Metric::Udp64Kpps,
                    Metric::RrP50Us,
                    Metric::RrP99Us,
                    Metric::ConnPerS,
                ] {
                    let (better, bound): (&dyn Fn(f64) -> bool, _) = if metric.higher_is_better() {
                        (&|r| r >= 1.0, "≥ 1")
                    } else {
                        (&|r| r <= 1.0, "≤ 1")
                    };
                    check(
                        format!("{na}/{other} {} ({bound} is better)", metric.label()),
                        ratio(remote, metric, na, other),
                        better,
                    );
                }
            }
        }
        let at = |n_first: bool, f: &dyn Fn(&ScalePoint) -> f64| {
            let mut points: Vec<&ScalePoint> = self
                .scale
                .iter()
                .filter(|p| p.variant == "netagent")
                .collect();
            points.sort_by_key(|p| p.publications);
            let p = if n_first {
                points.first()
            } else {
                points.last()
            }?;
            Some((p.publications, f(p)))
        };
        if let (Some((n0, c0)), Some((n1, c1))) =
            (at(true, &|p| p.conn_per_s), at(false, &|p| p.conn_per_s))
        {
            check(
                format!("netagent connections/s at {n1} / at {n0} publications ≥ 0.95"),
                Some(c1 / c0),
                &|r| r >= 0.95,
            );
        }
        if let (Some((n0, u0)), Some((n1, u1))) =
            (at(true, &|p| p.udp64_kpps), at(false, &|p| p.udp64_kpps))
        {
            check(
                format!("netagent UDP 64 B rate at {n1} / at {n0} publications ≥ 0.95"),
                Some(u1 / u0),
                &|r| r >= 0.95,
            );
        }
        let _ = local;
        out.push("host-local netagent/docker-proxy throughput ≥ 3: not measured (host-local translation is a later issue)".into());
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
            ["netagent", "iptables", "nftables"]
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

fn medians(samples: &[Sample]) -> Medians {
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
            &medians(&samples),
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
