//! Human output of the CLI. JSON output is the API's own types.

use std::fmt::Write as _;

use crate::{
    agent::Stats, containers::ContainerInfo, model::Network, spec::PortSpec, state::Publication,
};

/// A left-aligned table with two spaces between columns.
fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let mut line = |cells: [&str; N]| {
        let row: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", row.join("  ").trim_end());
    };
    line(header);
    for r in rows {
        line(r.each_ref().map(String::as_str));
    }
    out
}

/// `netagent network ls`: Docker's columns, then the addressing.
pub fn network_table(networks: &[Network]) -> String {
    let rows: Vec<[String; 7]> = networks
        .iter()
        .map(|n| {
            [
                n.id[..12].to_owned(),
                n.name.clone(),
                n.driver.clone(),
                "local".to_owned(),
                n.ipam.subnet.to_string(),
                n.ipam.gateway.to_string(),
                match (n.internal, n.icc) {
                    (true, true) => "internal".to_owned(),
                    (true, false) => "internal,icc=false".to_owned(),
                    (false, false) => "icc=false".to_owned(),
                    (false, true) => String::new(),
                },
            ]
        })
        .collect();
    table(
        [
            "NETWORK ID",
            "NAME",
            "DRIVER",
            "SCOPE",
            "SUBNET",
            "GATEWAY",
            "OPTIONS",
        ],
        &rows,
    )
}

/// `docker ps`-style port column: `0.0.0.0:8080->80/tcp, ...`.
pub fn ports_cell(ports: &[PortSpec]) -> String {
    ports
        .iter()
        .map(|s| {
            format!(
                "{}:{}->{}/{}",
                s.host_ip, s.host_port, s.container_port, s.proto
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `netagent container ls`.
pub fn container_table(containers: &[ContainerInfo]) -> String {
    let rows: Vec<[String; 5]> = containers
        .iter()
        .map(|c| {
            let networks = match &c.joined_to {
                Some(target) => format!("container:{target}"),
                None => c
                    .endpoints
                    .iter()
                    .map(|e| e.network.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            };
            let ips = c
                .endpoints
                .iter()
                .map(|e| e.ip.to_string())
                .collect::<Vec<_>>()
                .join(",");
            [
                c.container.short_id().to_owned(),
                c.container.name.clone(),
                networks,
                ips,
                ports_cell(&c.ports),
            ]
        })
        .collect();
    table(
        ["CONTAINER ID", "NAMES", "NETWORKS", "IP ADDRESSES", "PORTS"],
        &rows,
    )
}

/// `docker port NAME` lines (`80/tcp -> 0.0.0.0:8080`), or with a port
/// filter just the host sides (`0.0.0.0:8080`).
pub fn container_port_lines(ports: &[PortSpec], filtered: bool) -> String {
    let mut out = String::new();
    for s in ports {
        if filtered {
            let _ = writeln!(out, "{}:{}", s.host_ip, s.host_port);
        } else {
            let _ = writeln!(
                out,
                "{}/{} -> {}:{}",
                s.container_port, s.proto, s.host_ip, s.host_port
            );
        }
    }
    out
}

/// `docker port` lines: `<cport>/<proto> -> <hostip>:<hport>`. When not
/// filtered to one container, the container address leads the line so
/// publications to different containers stay apart.
pub fn port_lines(publications: &[Publication], filtered: bool) -> String {
    let mut out = String::new();
    for p in publications {
        let s = p.spec;
        if filtered {
            let _ = writeln!(
                out,
                "{}/{} -> {}:{}",
                s.container_port, s.proto, s.host_ip, s.host_port
            );
        } else {
            let _ = writeln!(
                out,
                "{}:{}/{} -> {}:{}",
                s.container_ip, s.container_port, s.proto, s.host_ip, s.host_port
            );
        }
    }
    out
}

/// The `netagent stats` table: one row per publication, then the datapath
/// events.
pub fn stats_table(stats: &Stats) -> String {
    let rows: Vec<[String; 5]> = stats
        .publications
        .iter()
        .map(|p| {
            [
                p.publication.to_string(),
                p.fwd_packets.to_string(),
                p.fwd_bytes.to_string(),
                p.rev_packets.to_string(),
                p.rev_bytes.to_string(),
            ]
        })
        .collect();
    let header = [
        "PUBLICATION",
        "IN_PACKETS",
        "IN_BYTES",
        "OUT_PACKETS",
        "OUT_BYTES",
    ];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].len())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let _ = write!(out, "{:<w$}", cells[0], w = widths[0]);
        for (cell, w) in cells.iter().zip(&widths).skip(1) {
            let _ = write!(out, "  {cell:>w$}");
        }
        out.push('\n');
    };
    line(&header);
    for r in &rows {
        line(&r.each_ref().map(String::as_str));
    }
    out.push_str("\nDATAPATH EVENTS\n");
    let name_width = stats.events.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (name, count) in &stats.events {
        let _ = writeln!(out, "{name:<name_width$}  {count}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::PublicationStats;

    fn publication(spec: &str) -> Publication {
        Publication {
            spec: spec.parse().unwrap(),
            stats_slot: 0,
            owner: None,
        }
    }

    #[test]
    fn port_lines_match_docker_port() {
        let ps = [
            publication("127.0.0.1:5000->172.17.0.2:5000/udp"),
            publication("8080->172.17.0.2:80"),
        ];
        assert_eq!(
            port_lines(&ps, true),
            "5000/udp -> 127.0.0.1:5000\n80/tcp -> 0.0.0.0:8080\n"
        );
        assert_eq!(
            port_lines(&ps[..1], false),
            "172.17.0.2:5000/udp -> 127.0.0.1:5000\n"
        );
    }

    #[test]
    fn stats_table_aligns_columns() {
        let stats = Stats {
            publications: vec![PublicationStats {
                publication: "8080->172.17.0.2:80".parse().unwrap(),
                fwd_packets: 12,
                fwd_bytes: 3400,
                rev_packets: 10,
                rev_bytes: 999,
            }],
            events: vec![("xdp_dnat".into(), 12), ("tc_dnat".into(), 0)],
        };
        let table = stats_table(&stats);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0].len(), lines[1].len(), "{table}");
        assert!(lines[1].starts_with("0.0.0.0:8080->172.17.0.2:80/tcp"));
        assert!(lines[1].ends_with("999"));
        assert!(table.contains("xdp_dnat  12"));
    }
}
