//! What the CLI prints: Docker's tables and lines as text, the response's
//! payload as JSON (`--json`: one documented shape per command, see the
//! README), or each item through a template (`--format`).

use std::fmt::Write as _;

use serde_json::Value;

use crate::{
    api::{ContainerInfo, NetworkInfo, Request, Response, Stats},
    spec::{PortSpec, bracketed, host_port_str},
    state::Publication,
};

/// How to print a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Style {
    Text,
    Json,
    /// `--format TEMPLATE`.
    Template(String),
}

/// A rendered response: what goes to stdout, and Docker's warnings (to
/// stderr, prefixed `WARNING:`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rendered {
    pub stdout: String,
    pub warnings: Vec<String>,
}

/// Renders `response` to `request` in `style`.
pub fn render(request: &Request, response: &Response, style: &Style) -> anyhow::Result<Rendered> {
    let warnings = match response {
        Response::Container { warnings, .. } => warnings.clone(),
        _ => Vec::new(),
    };
    let stdout = match style {
        Style::Json => format!("{}\n", serde_json::to_string_pretty(&response.payload())?),
        Style::Template(template) => {
            let items = match response.payload() {
                Value::Array(items) => items,
                one => vec![one],
            };
            let mut out = String::new();
            for item in &items {
                out.push_str(&apply_template(template, item)?);
                out.push('\n');
            }
            out
        }
        Style::Text => text(request, response)?,
    };
    Ok(Rendered { stdout, warnings })
}

/// Text output, as Docker prints each command's result.
fn text(request: &Request, response: &Response) -> anyhow::Result<String> {
    Ok(match response {
        Response::Published { publication } => format!("published {}\n", publication.spec),
        Response::PublishedMany { publications } => publications
            .iter()
            .map(|p| format!("published {}\n", p.spec))
            .collect(),
        Response::Unpublished { publication } => format!("unpublished {}\n", publication.spec),
        Response::Publications { publications } => {
            let filtered = matches!(
                request,
                Request::List {
                    container_ip: Some(_)
                }
            );
            port_lines(publications, filtered)
        }
        Response::Stats { stats } => stats_table(stats),
        Response::Network { network } => format!("{}\n", network.id),
        Response::Networks { networks } => network_table(networks),
        Response::NetworkInfo { info } => match request {
            // Docker echoes what it was asked to remove.
            Request::NetworkRm { name } => format!("{name}\n"),
            _ => format!("{}\n", serde_json::to_string_pretty(info)?),
        },
        Response::Endpoint { .. } => String::new(),
        Response::Container { info, .. } => match request {
            Request::ContainerInspect { .. } => {
                format!("{}\n", serde_json::to_string_pretty(info)?)
            }
            _ => format!("{}\n", info.container.id),
        },
        Response::Containers { containers } => container_table(containers),
        Response::Detached { .. } => match request {
            Request::ContainerDetach { name } => format!("{name}\n"),
            _ => String::new(),
        },
        Response::Ports { ports, ipv6 } => {
            let filtered = matches!(
                request,
                Request::ContainerPorts {
                    filter: Some(_),
                    ..
                }
            );
            container_port_lines(ports, ipv6, filtered)
        }
        // The CNI plugin's answers, should another client ask: as JSON.
        Response::CniAttachment { .. }
        | Response::CniDeleted { .. }
        | Response::CniCollected { .. }
        | Response::CniStatus { .. } => {
            format!("{}\n", serde_json::to_string_pretty(&response.payload())?)
        }
        Response::Text { text } => text.clone(),
        Response::Error { message, .. } => anyhow::bail!("{message}"),
    })
}

/// Fills `{{.a.b}}` with the field at that path of `item` (strings bare,
/// anything else as JSON; a missing field is an error naming it), and
/// `{{json .a}}` with the field as JSON; `{{.}}` is the whole item.
pub fn apply_template(template: &str, item: &Value) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| anyhow::anyhow!("template: unclosed {{{{ in {template:?}"))?;
        let action = after[..end].trim();
        let (as_json, path) = match action.strip_prefix("json ") {
            Some(path) => (true, path.trim()),
            None => (false, action),
        };
        let path = path
            .strip_prefix('.')
            .ok_or_else(|| anyhow::anyhow!("template: {action:?} is not a field (.name)"))?;
        let mut value = item;
        for key in path.split('.').filter(|k| !k.is_empty()) {
            value = value
                .get(key)
                .ok_or_else(|| anyhow::anyhow!("template: no field {key:?} in .{path}"))?;
        }
        match value {
            Value::String(s) if !as_json => out.push_str(s),
            other => out.push_str(&serde_json::to_string(other)?),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

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
pub fn network_table(networks: &[NetworkInfo]) -> String {
    let rows: Vec<[String; 7]> = networks
        .iter()
        .map(|n| {
            let (subnet, gateway, options) = match &n.config {
                Some(c) => (
                    match &c.ipam6 {
                        Some(v6) => format!("{},{}", c.ipam.subnet, v6.subnet),
                        None => c.ipam.subnet.to_string(),
                    },
                    match &c.ipam6 {
                        Some(v6) => format!("{},{}", c.ipam.gateway, v6.gateway),
                        None => c.ipam.gateway.to_string(),
                    },
                    match (c.internal, c.icc) {
                        (true, true) => "internal".to_owned(),
                        (true, false) => "internal,icc=false".to_owned(),
                        (false, false) => "icc=false".to_owned(),
                        (false, true) => String::new(),
                    },
                ),
                None => Default::default(),
            };
            [
                n.id[..n.id.len().min(12)].to_owned(),
                n.name.clone(),
                n.driver.clone(),
                n.scope.clone(),
                subnet,
                gateway,
                options,
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

/// `docker ps`'s PORTS column: published ports as
/// `0.0.0.0:8080->80/tcp`, exposed but unpublished ones as `5432/tcp`, and
/// runs of consecutive ports folded into ranges
/// (`0.0.0.0:8000-8002->8000-8002/tcp`), as Docker's `DisplayablePorts`.
pub fn ports_cell(ports: &[PortSpec], exposed: &[crate::portmap::ExposedPorts]) -> String {
    /// Host address and port when published, container port, protocol.
    type Entry = (Option<(std::net::IpAddr, u16)>, u16, crate::spec::Proto);
    let mut entries: Vec<Entry> = ports
        .iter()
        .map(|s| (Some((s.host_ip, s.host_port)), s.container_port, s.proto))
        .collect();
    for e in exposed {
        for port in e.ports.ports() {
            let published = ports
                .iter()
                .any(|s| s.container_port == port && s.proto == e.proto);
            if !published {
                entries.push((None, port, e.proto));
            }
        }
    }
    entries
        .sort_by_key(|(host, port, proto)| (host.map(|h| h.0), *proto, *port, host.map(|h| h.1)));
    entries.dedup();
    let mut cells: Vec<String> = Vec::new();
    let mut i = 0;
    while i < entries.len() {
        let (host, first, proto) = entries[i];
        let mut last = i;
        while let Some(&(next_host, next_port, next_proto)) = entries.get(last + 1) {
            let (_, last_port, _) = entries[last];
            let consecutive = next_proto == proto
                && next_port == last_port + 1
                && match (next_host, entries[last].0) {
                    (None, None) => true,
                    (Some((ip, hp)), Some((last_ip, last_hp))) => {
                        ip == last_ip && hp == last_hp + 1
                    }
                    _ => false,
                };
            if !consecutive {
                break;
            }
            last += 1;
        }
        let (end_host, end, _) = entries[last];
        let range = |a: u16, b: u16| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        };
        cells.push(match (host, end_host) {
            (Some((ip, hp)), Some((_, end_hp))) => {
                format!(
                    "{}:{}->{}/{proto}",
                    bracketed(ip),
                    range(hp, end_hp),
                    range(first, end)
                )
            }
            _ => format!("{}/{proto}", range(first, end)),
        });
        i = last + 1;
    }
    cells.join(", ")
}

/// `netagent container ls`.
pub fn container_table(containers: &[ContainerInfo]) -> String {
    let rows: Vec<[String; 5]> = containers
        .iter()
        .map(|c| {
            let networks = match (&c.joined_to, &c.container.mode) {
                (Some(target), _) => format!("container:{target}"),
                (None, crate::model::NetworkMode::Host) => "host".to_owned(),
                (None, crate::model::NetworkMode::None) => "none".to_owned(),
                (None, crate::model::NetworkMode::Chained(a)) => format!("cni:{}", a.cni_network),
                (None, _) => c
                    .endpoints
                    .iter()
                    .map(|e| e.network.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            };
            let ips = match &c.container.mode {
                crate::model::NetworkMode::Chained(a) => {
                    a.ips.iter().map(|ip| ip.to_string()).collect::<Vec<_>>()
                }
                _ => c
                    .endpoints
                    .iter()
                    .map(|e| match e.ip6 {
                        Some(ip6) => format!("{},{ip6}", e.ip),
                        None => e.ip.to_string(),
                    })
                    .collect::<Vec<_>>(),
            }
            .join(",");
            [
                c.container.short_id().to_owned(),
                c.container.name.clone(),
                networks,
                ips,
                ports_cell(&c.ports, &c.container.exposed),
            ]
        })
        .collect();
    table(
        ["CONTAINER ID", "NAMES", "NETWORKS", "IP ADDRESSES", "PORTS"],
        &rows,
    )
}

/// `docker port NAME` lines (`80/tcp -> 0.0.0.0:8080`), or with a port
/// filter just the host sides (`0.0.0.0:8080`). A port also served on
/// `[::]` (`ipv6[i]`) gets Docker's second line (`80/tcp -> [::]:8080`).
pub fn container_port_lines(ports: &[PortSpec], ipv6: &[bool], filtered: bool) -> String {
    let mut out = String::new();
    for (i, s) in ports.iter().enumerate() {
        let hosts = [
            Some(bracketed(s.host_ip)),
            ipv6.get(i)
                .copied()
                .unwrap_or(false)
                .then(|| "[::]".to_owned()),
        ];
        for host in hosts.into_iter().flatten() {
            if filtered {
                let _ = writeln!(out, "{host}:{}", s.host_port);
            } else {
                let _ = writeln!(
                    out,
                    "{}/{} -> {host}:{}",
                    s.container_port, s.proto, s.host_port
                );
            }
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
                "{}/{} -> {}",
                s.container_port,
                s.proto,
                host_port_str(s.host_ip, s.host_port)
            );
        } else {
            let _ = writeln!(
                out,
                "{}/{} -> {}",
                host_port_str(s.container_ip, s.container_port),
                s.proto,
                host_port_str(s.host_ip, s.host_port)
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
            let n = |v: u64| if p.counted { v.to_string() } else { "-".into() };
            [
                p.publication.to_string(),
                n(p.fwd_packets),
                n(p.fwd_bytes),
                n(p.rev_packets),
                n(p.rev_bytes),
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
    if !stats.interfaces.is_empty() {
        out.push_str("\nSERVED INTERFACES\n");
        let width = stats
            .interfaces
            .iter()
            .map(|i| i.name.len())
            .max()
            .unwrap_or(0);
        for i in &stats.interfaces {
            let mode = match i.xdp_mode {
                crate::datapath::XdpAttachMode::Native => "xdp-native",
                crate::datapath::XdpAttachMode::Generic => "xdp-generic",
                _ => "tc-only",
            };
            let _ = writeln!(out, "{:<width$}  {mode:<11}  {}", i.name, i.reason);
        }
    }
    if let Some(d) = &stats.dns {
        let _ = writeln!(
            out,
            "\nEMBEDDED DNS\n{} resolvers; {} queries: {} answered here, {} forwarded ({} failovers), {} servfail, {} refused, {} dropped",
            d.resolvers,
            d.queries,
            d.answered,
            d.forwarded,
            d.failovers,
            d.servfail,
            d.refused,
            d.dropped
        );
    }
    match &stats.socket_hooks_cgroup {
        Some(cgroup) => {
            let _ = writeln!(
                out,
                "\nHOST-LOCAL ACCESS\nsocket hooks on cgroup {}",
                cgroup.display()
            );
        }
        None => out.push_str("\nHOST-LOCAL ACCESS\noff (--cgroup none)\n"),
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
    use crate::api::PublicationStats;

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
            interfaces: vec![crate::api::ServedInterface {
                name: "eth0".into(),
                driver: Some("veth".into()),
                xdp_mode: crate::datapath::XdpAttachMode::Off,
                reason: "TC only: veth".into(),
            }],
            socket_hooks_cgroup: Some("/sys/fs/cgroup".into()),
            publications: vec![PublicationStats {
                publication: "8080->172.17.0.2:80".parse().unwrap(),
                counted: true,
                fwd_packets: 12,
                fwd_bytes: 3400,
                rev_packets: 10,
                rev_bytes: 999,
            }],
            events: vec![("xdp_dnat".into(), 12), ("tc_dnat".into(), 0)],
            dns: Some(crate::api::DnsStats {
                resolvers: 2,
                queries: 10,
                answered: 7,
                forwarded: 3,
                failovers: 1,
                servfail: 0,
                refused: 0,
                dropped: 0,
            }),
        };
        let table = stats_table(&stats);
        assert!(
            table.contains("EMBEDDED DNS\n2 resolvers; 10 queries: 7 answered here, 3 forwarded (1 failovers), 0 servfail, 0 refused, 0 dropped\n"),
            "{table}"
        );
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0].len(), lines[1].len(), "{table}");
        assert!(lines[1].starts_with("0.0.0.0:8080->172.17.0.2:80/tcp"));
        assert!(lines[1].ends_with("999"));
        assert!(table.contains("xdp_dnat  12"));
        assert!(
            table.contains("HOST-LOCAL ACCESS\nsocket hooks on cgroup /sys/fs/cgroup\n"),
            "{table}"
        );
        assert!(
            table.contains("SERVED INTERFACES\neth0  tc-only      TC only: veth\n"),
            "{table}"
        );
    }

    #[test]
    fn the_ports_column_reads_as_dockers() {
        let published: Vec<PortSpec> = [
            "8000->10.0.0.2:8000",
            "8001->10.0.0.2:8001",
            "8002->10.0.0.2:8002",
            "127.0.0.1:53->10.0.0.2:53/udp",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let exposed: Vec<crate::portmap::ExposedPorts> = ["5432", "9000-9001/udp", "8000-8002"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(
            ports_cell(&published, &exposed),
            "5432/tcp, 9000-9001/udp, 0.0.0.0:8000-8002->8000-8002/tcp, 127.0.0.1:53->53/udp"
        );
        assert_eq!(ports_cell(&[], &exposed[..1]), "5432/tcp");
    }

    #[test]
    fn templates_pick_fields_and_refuse_unknown_ones() {
        let item = serde_json::json!({"name": "web", "config": {"ipam": {"subnet": "10.0.0.0/24"}}, "n": 3});
        assert_eq!(
            apply_template("{{.name}} {{.config.ipam.subnet}} {{.n}}", &item).unwrap(),
            "web 10.0.0.0/24 3"
        );
        assert_eq!(apply_template("{{json .name}}", &item).unwrap(), "\"web\"");
        assert!(
            apply_template("{{.nope}}", &item)
                .unwrap_err()
                .to_string()
                .contains("nope")
        );
        assert!(apply_template("{{.name", &item).is_err());
    }
}
