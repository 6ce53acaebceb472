//! Legacy links, `--link NAME[:ALIAS]`: the value's grammar, and the
//! environment variables a link gives, exactly as Docker's
//! `daemon/links` makes them (REFERENCE §1.7):
//!
//! - `ALIAS_PORT=proto://IP:PORT` for the first exposed port, TCP first,
//!   then by number;
//! - for every port `ALIAS_PORT_<n>_<PROTO>` and its `_ADDR`, `_PORT`
//!   and `_PROTO`;
//! - for each run of consecutive ports of one protocol, after the run's
//!   last port (or after the port that ends it), `..._START`,
//!   `..._PORT_START`, `..._END`, `..._PORT_END` named after its first;
//! - `ALIAS_NAME=/RECIPIENT/ALIAS`;
//! - `ALIAS_ENV_<VAR>=<VALUE>` for the linked container's `--env`, but
//!   `HOME` and `PATH`.
//!
//! ALIAS in the names is upper case with `-` as `_`.

use std::net::Ipv4Addr;

use datapath_common::{LINK_DPORT, LINK_SPORT, LinkHole};

use crate::{
    error::NetError, model::resolves_names, portmap::ExposedPorts, spec::Proto, state::DesiredState,
};

/// `NAME` or `NAME:ALIAS` (a leading `/` on either is Docker's full
/// name and is dropped): (name, alias).
pub fn parse(value: &str) -> Result<(String, String), NetError> {
    let bad = || NetError::InvalidLink(value.to_owned());
    let (name, alias) = match value.split_once(':') {
        Some((name, alias)) => (name, alias),
        None => (value, value),
    };
    let (name, alias) = (name.trim_start_matches('/'), alias.trim_start_matches('/'));
    if name.is_empty() || alias.is_empty() || alias.contains([':', '/']) {
        return Err(bad());
    }
    if !crate::model::valid_alias(alias) {
        return Err(NetError::InvalidAlias(alias.to_owned()));
    }
    Ok((name.to_owned(), alias.to_owned()))
}

/// The variables a container named `recipient` gets from a link `alias`
/// to a container at `ip` exposing `exposed` with `env`.
pub fn env(
    recipient: &str,
    alias: &str,
    ip: Ipv4Addr,
    exposed: &[ExposedPorts],
    source_env: &[String],
) -> Vec<String> {
    let prefix = alias.to_ascii_uppercase().replace('-', "_");
    let mut ports: Vec<(Proto, u16)> = exposed
        .iter()
        .flat_map(|e| e.ports.ports().map(move |p| (e.proto, p)))
        .collect();
    // TCP first, then by number (Docker's `withTCPPriority`).
    ports.sort_by_key(|&(proto, port)| (proto != Proto::Tcp, proto, port));
    ports.dedup();
    let var = |proto: Proto, port: u16| format!("{prefix}_PORT_{port}_{}", upper(proto));
    let url = |proto: Proto, port: u16| format!("{proto}://{ip}:{port}");
    let mut out = Vec::new();
    let Some(&(first_proto, first_port)) = ports.first() else {
        return finish(out, &prefix, recipient, alias, source_env);
    };
    out.push(format!("{prefix}_PORT={}", url(first_proto, first_port)));
    let (mut start, mut end) = (ports[0], ports[0]);
    for (i, &(proto, port)) in ports.iter().enumerate() {
        let name = var(proto, port);
        out.push(format!("{name}={}", url(proto, port)));
        out.push(format!("{name}_ADDR={ip}"));
        out.push(format!("{name}_PORT={port}"));
        out.push(format!("{name}_PROTO={proto}"));
        let extends = proto == end.0 && u32::from(port) == u32::from(end.1) + 1;
        if extends {
            end = (proto, port);
            if i + 1 < ports.len() {
                continue;
            }
        }
        if end != start {
            let name = var(start.0, start.1);
            out.push(format!("{name}_START={}", url(start.0, start.1)));
            out.push(format!("{name}_PORT_START={}", start.1));
            out.push(format!("{name}_END={}", url(end.0, end.1)));
            out.push(format!("{name}_PORT_END={}", end.1));
        }
        (start, end) = ((proto, port), (proto, port));
    }
    finish(out, &prefix, recipient, alias, source_env)
}

fn finish(
    mut out: Vec<String>,
    prefix: &str,
    recipient: &str,
    alias: &str,
    source_env: &[String],
) -> Vec<String> {
    out.push(format!("{prefix}_NAME=/{recipient}/{alias}"));
    for pair in source_env {
        let Some((name, value)) = pair.split_once('=') else {
            continue;
        };
        if name != "HOME" && name != "PATH" {
            out.push(format!("{prefix}_ENV_{name}={value}"));
        }
    }
    out
}

/// The holes links open in icc=false networks, derived whole from the
/// state: for a link on the default bridge with icc off, between the
/// linking container and the linked one (both attached there), for every
/// port the linked one exposes: to that port, and back from it.
pub fn holes(state: &DesiredState) -> Vec<LinkHole> {
    let mut holes = Vec::new();
    for recipient in &state.containers {
        for link in recipient
            .links
            .iter()
            .filter(|l| !resolves_names(&l.network))
        {
            let closed = state
                .networks
                .iter()
                .any(|n| n.name == link.network && !n.icc);
            let from = recipient
                .endpoints()
                .iter()
                .find(|e| e.network == link.network);
            let source = state.containers.iter().find(|c| c.name == link.name);
            let to = source.and_then(|s| s.endpoints().iter().find(|e| e.network == link.network));
            let (true, Some(from), Some(source), Some(to)) = (closed, from, source, to) else {
                continue;
            };
            let (from_be, to_be) = (
                u32::from_ne_bytes(from.ip.octets()),
                u32::from_ne_bytes(to.ip.octets()),
            );
            for exposed in &source.exposed {
                for port in exposed.ports.ports() {
                    let proto = exposed.proto.number();
                    let port_be = port.to_be();
                    holes.push(LinkHole {
                        from_be,
                        to_be,
                        port_be,
                        proto,
                        dir: LINK_DPORT,
                    });
                    holes.push(LinkHole {
                        from_be: to_be,
                        to_be: from_be,
                        port_be,
                        proto,
                        dir: LINK_SPORT,
                    });
                }
            }
        }
    }
    holes.sort_unstable();
    holes.dedup();
    holes
}

fn upper(proto: Proto) -> &'static str {
    match proto {
        Proto::Tcp => "TCP",
        Proto::Udp => "UDP",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposed(specs: &[&str]) -> Vec<ExposedPorts> {
        specs.iter().map(|s| s.parse().expect("a port")).collect()
    }

    #[test]
    fn the_documented_example_byte_for_byte() {
        // Docker's docs: `docker run --name web2 --link db:db` to a
        // postgres container at 172.17.0.5 exposing 5432.
        let env = env(
            "web2",
            "db",
            Ipv4Addr::new(172, 17, 0, 5),
            &exposed(&["5432"]),
            &[],
        );
        assert_eq!(
            env,
            [
                "DB_PORT=tcp://172.17.0.5:5432",
                "DB_PORT_5432_TCP=tcp://172.17.0.5:5432",
                "DB_PORT_5432_TCP_ADDR=172.17.0.5",
                "DB_PORT_5432_TCP_PORT=5432",
                "DB_PORT_5432_TCP_PROTO=tcp",
                "DB_NAME=/web2/db",
            ]
        );
    }

    #[test]
    fn ranges_protocols_and_the_sources_environment() {
        let env = env(
            "web",
            "my-db",
            Ipv4Addr::new(10, 0, 0, 2),
            &exposed(&["53/udp", "8001-8002", "80"]),
            &[
                "PASSWORD=s3cret".into(),
                "HOME=/root".into(),
                "PATH=/bin".into(),
                "EMPTY=".into(),
            ],
        );
        let p = "tcp://10.0.0.2";
        assert_eq!(
            env,
            [
                format!("MY_DB_PORT={p}:80"),
                format!("MY_DB_PORT_80_TCP={p}:80"),
                "MY_DB_PORT_80_TCP_ADDR=10.0.0.2".into(),
                "MY_DB_PORT_80_TCP_PORT=80".into(),
                "MY_DB_PORT_80_TCP_PROTO=tcp".into(),
                format!("MY_DB_PORT_8001_TCP={p}:8001"),
                "MY_DB_PORT_8001_TCP_ADDR=10.0.0.2".into(),
                "MY_DB_PORT_8001_TCP_PORT=8001".into(),
                "MY_DB_PORT_8001_TCP_PROTO=tcp".into(),
                format!("MY_DB_PORT_8002_TCP={p}:8002"),
                "MY_DB_PORT_8002_TCP_ADDR=10.0.0.2".into(),
                "MY_DB_PORT_8002_TCP_PORT=8002".into(),
                "MY_DB_PORT_8002_TCP_PROTO=tcp".into(),
                // The run 8001-8002 ends at 53/udp: named after it, there.
                "MY_DB_PORT_53_UDP=udp://10.0.0.2:53".into(),
                "MY_DB_PORT_53_UDP_ADDR=10.0.0.2".into(),
                "MY_DB_PORT_53_UDP_PORT=53".into(),
                "MY_DB_PORT_53_UDP_PROTO=udp".into(),
                format!("MY_DB_PORT_8001_TCP_START={p}:8001"),
                "MY_DB_PORT_8001_TCP_PORT_START=8001".into(),
                // All four named after the run's first port, as Docker's.
                format!("MY_DB_PORT_8001_TCP_END={p}:8002"),
                "MY_DB_PORT_8001_TCP_PORT_END=8002".into(),
                "MY_DB_NAME=/web/my-db".into(),
                "MY_DB_ENV_PASSWORD=s3cret".into(),
                "MY_DB_ENV_EMPTY=".into(),
            ]
        );
    }

    #[test]
    fn a_run_at_the_end_is_closed_after_its_last_port() {
        let vars = env(
            "r",
            "s",
            Ipv4Addr::new(10, 0, 0, 3),
            &exposed(&["7-8"]),
            &[],
        );
        assert_eq!(
            vars[vars.len() - 5..],
            [
                "S_PORT_7_TCP_START=tcp://10.0.0.3:7",
                "S_PORT_7_TCP_PORT_START=7",
                "S_PORT_7_TCP_END=tcp://10.0.0.3:8",
                "S_PORT_7_TCP_PORT_END=8",
                "S_NAME=/r/s",
            ]
        );
        // No ports: the name alone.
        assert_eq!(
            env("r", "s", Ipv4Addr::LOCALHOST, &[], &[]),
            ["S_NAME=/r/s"]
        );
    }

    #[test]
    fn link_values() {
        assert_eq!(parse("db"), Ok(("db".into(), "db".into())));
        assert_eq!(parse("db:webdb"), Ok(("db".into(), "webdb".into())));
        assert_eq!(parse("/db:/webdb"), Ok(("db".into(), "webdb".into())));
        for bad in ["", ":x", "db:", "a:b:c"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            parse("db:bad alias"),
            Err(NetError::InvalidAlias(_))
        ));
    }
}
