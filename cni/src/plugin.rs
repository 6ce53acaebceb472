//! The commands: ADD, DEL, CHECK, STATUS, GC and VERSION, each a thin
//! exchange with the daemon (which owns all state) plus the delegated
//! IPAM plugin's part when the configuration names one.
//!
//! Error codes, beyond the spec's (see `error`): the daemon not reachable
//! is 11 (STATUS: 50) and nothing changed; what the daemon refuses maps by
//! kind: invalid 7, not found 7 (CHECK: 3), in use [`CODE_IN_USE`],
//! exhausted [`CODE_EXHAUSTED`], a broken attachment (CHECK)
//! [`CODE_BROKEN`], a kernel or state failure [`CODE_DAEMON`].

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use netagent::{
    api::{CniAdd, CniAttachment, CniKey, CniMain, CniMode, ErrorKind, Request, Response},
    client::{self, ClientError},
};

use crate::{
    config::NetConf,
    delegate,
    env::{Command, Env},
    error::{CniError, Code},
    result::{CniResult, Interface, IpConfig, Route},
};

/// A port, address, name or namespace asked for is taken.
pub const CODE_IN_USE: u32 = 100;
/// No free address, port or map entry.
pub const CODE_EXHAUSTED: u32 = 101;
/// CHECK found the attachment broken (the message says what).
pub const CODE_BROKEN: u32 = 102;
/// The daemon failed (kernel or state store): its message says how.
pub const CODE_DAEMON: u32 = 103;

/// Runs one command; what to print on success (`None`: nothing).
pub fn run(env: &Env, input: &[u8]) -> Result<Option<String>, CniError> {
    if env.command == Command::Version {
        return Ok(Some(crate::version::version_result()));
    }
    let conf = NetConf::parse(input)?;
    let version = conf.version;
    match env.command {
        Command::Add => add(env, &conf, input).map(|r| Some(r.to_string())),
        Command::Del => del(env, &conf, input).map(|()| None),
        Command::Check => check(env, &conf, input).map(|()| None),
        Command::Status | Command::Gc if !version.has_status_and_gc() => Err(CniError::new(
            Code::IncompatibleVersion,
            format!(
                "{} exists from cniVersion 1.1.0 on; the configuration says {}",
                env.command.as_str(),
                version.as_str()
            ),
        )),
        Command::Status => status(env, &conf, input).map(|()| None),
        Command::Gc => gc(env, &conf, input).map(|()| None),
        Command::Version => unreachable!("answered above"),
    }
}

/// The attachment's key: the variables the command requires (checked by
/// `Env`), and the configuration's name.
fn key(env: &Env, conf: &NetConf) -> CniKey {
    CniKey {
        container_id: env.container_id.clone().unwrap_or_default(),
        ifname: env.ifname.clone().unwrap_or_default(),
        network: conf.name.clone(),
    }
}

/// Asks the daemon; its refusals become CNI errors (see the module doc).
fn ask(conf: &NetConf, command: Command, request: &Request) -> Result<Response, CniError> {
    client::request(Path::new(&conf.socket), request).map_err(|e| client_error(command, e))
}

fn client_error(command: Command, e: ClientError) -> CniError {
    let code = match &e {
        ClientError::Unreachable { .. } if command == Command::Status => Code::NotAvailable,
        ClientError::Unreachable { .. } => Code::TryAgainLater,
        ClientError::Exchange { .. } | ClientError::NoAnswer | ClientError::Decode(_) => Code::Io,
        ClientError::Refused { kind, .. } => match kind {
            Some(ErrorKind::Invalid) | None => Code::InvalidConfig,
            Some(ErrorKind::NotFound) if command == Command::Check => Code::UnknownContainer,
            Some(ErrorKind::NotFound) => Code::InvalidConfig,
            Some(ErrorKind::Conflict) => Code::Plugin(CODE_IN_USE),
            Some(ErrorKind::Exhausted) => Code::Plugin(CODE_EXHAUSTED),
            Some(ErrorKind::Broken) => Code::Plugin(CODE_BROKEN),
            Some(ErrorKind::Internal) => Code::Plugin(CODE_DAEMON),
        },
    };
    CniError::new(code, e.to_string())
}

/// The network namespace ADD and CHECK work in: it must exist.
fn netns(env: &Env) -> Result<PathBuf, CniError> {
    let path = env.netns.clone().unwrap_or_default();
    match std::fs::metadata(&path) {
        Ok(_) => Ok(path),
        Err(e) => Err(CniError::new(
            Code::InvalidEnvironment,
            format!("CNI_NETNS {}: {e}", path.display()),
        )),
    }
}

/// The container's name as asked for: `NETAGENT_NAME` in `CNI_ARGS`.
fn container_name(env: &Env) -> Option<String> {
    env.arg("NETAGENT_NAME").map(str::to_owned)
}

/// The name a Kubernetes pod suggests: `NAMESPACE_POD` (pods of two
/// namespaces may share a name), or the pod's name alone.
fn preferred_name(env: &Env) -> Option<String> {
    let pod = env.arg("K8S_POD_NAME")?;
    Some(match env.arg("K8S_POD_NAMESPACE") {
        Some(ns) if !ns.is_empty() => format!("{ns}_{pod}"),
        _ => pod.to_owned(),
    })
}

/// `portMappings` as `-p` values (`[IP:]HOSTPORT:CPORT/PROTO`).
fn publish_values(conf: &NetConf) -> Vec<String> {
    conf.port_mappings
        .iter()
        .map(|m| {
            let host = match m.host_ip {
                None => String::new(),
                Some(IpAddr::V4(ip)) => format!("{ip}:"),
                Some(IpAddr::V6(ip)) => format!("[{ip}]:"),
            };
            format!("{host}{}:{}/{}", m.host_port, m.container_port, m.protocol)
        })
        .collect()
}

fn add(env: &Env, conf: &NetConf, input: &[u8]) -> Result<serde_json::Value, CniError> {
    let netns = netns(env)?;
    let mut request = CniAdd {
        key: key(env, conf),
        netns,
        name: container_name(env),
        preferred_name: preferred_name(env),
        publish: publish_values(conf),
        mode: CniMode::Chained { ips: Vec::new() },
    };
    if let Some(prev) = &conf.prev_result {
        // Chained: another plugin made the interface.
        let prev_result = CniResult::from_json(prev)?;
        request.mode = CniMode::Chained {
            ips: container_ips(&prev_result, &request.key.ifname),
        };
        ask(conf, Command::Add, &Request::CniAdd(request))?;
        // Passed on as it came (a chained plugin that changes nothing
        // of it must), in the configuration's version as it was given.
        return Ok(prev.clone());
    }
    let (ip, ip6) = static_ips(env, conf)?;
    let mut main = CniMain {
        network: conf.network.clone(),
        create: Some(conf.create.clone()),
        ip,
        ip6,
        mac: conf.mac.map(|m| {
            m.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        }),
        aliases: conf.aliases.clone(),
    };
    let Some(ipam) = conf.ipam_type() else {
        request.mode = CniMode::Main(main);
        let attachment = attachment_of(ask(conf, Command::Add, &Request::CniAdd(request))?)?;
        return Ok(main_result(&attachment, conf).to_json(conf.version));
    };
    // Delegated IPAM: its addresses, given to the daemon as static ones;
    // on any failure after it, its allocation is given back.
    let allocated = CniResult::from_json(&delegate::run(ipam, Command::Add, env, input)?)?;
    let outcome = (|| {
        let (v4, v6) = delegated_ips(&allocated, ipam)?;
        main.ip = Some(v4.0);
        main.ip6 = v6.map(|v| v.0);
        if let Some(create) = main.create.as_mut() {
            create.subnet = Some(v4.1);
            create.gateway = v4.2;
            if let Some((_, net6, gw6)) = v6 {
                create.ipv6 = true;
                create.subnet6 = Some(net6);
                create.gateway6 = gw6;
            }
        }
        request.mode = CniMode::Main(main);
        attachment_of(ask(conf, Command::Add, &Request::CniAdd(request))?)
    })();
    match outcome {
        Ok(attachment) => {
            let mut result = main_result(&attachment, conf);
            result.dns = merge_dns(result.dns, allocated.dns);
            Ok(result.to_json(conf.version))
        }
        Err(e) => {
            // Best effort: the error that matters is the first one.
            let _ = delegate::run(ipam, Command::Del, env, input);
            Err(e)
        }
    }
}

/// An IPv4 address a delegated IPAM plugin handed out, with its subnet
/// and gateway; the same for IPv6, if any. Routes other than a default
/// one are refused (netagent installs the default route only).
type Delegated4 = (Ipv4Addr, ipnet::Ipv4Net, Option<Ipv4Addr>);
type Delegated6 = (Ipv6Addr, ipnet::Ipv6Net, Option<Ipv6Addr>);

fn delegated_ips(
    result: &CniResult,
    ipam: &str,
) -> Result<(Delegated4, Option<Delegated6>), CniError> {
    if let Some(r) = result.routes.iter().find(|r| r.prefix_len != 0) {
        return Err(CniError::new(
            Code::UnsupportedField,
            format!(
                "ipam {ipam:?} gave route {}/{}: netagent installs the default route only",
                r.dst, r.prefix_len
            ),
        ));
    }
    let mut v4 = None;
    let mut v6 = None;
    for ip in &result.ips {
        match (ip.address, ip.gateway) {
            (IpAddr::V4(a), gw) if v4.is_none() => {
                let net = ipnet::Ipv4Net::new(a, ip.prefix_len)
                    .map(|n| n.trunc())
                    .map_err(|e| CniError::new(Code::InvalidConfig, e.to_string()))?;
                let gw = match gw {
                    Some(IpAddr::V4(g)) => Some(g),
                    _ => None,
                };
                v4 = Some((a, net, gw));
            }
            (IpAddr::V6(a), gw) if v6.is_none() => {
                let net = ipnet::Ipv6Net::new(a, ip.prefix_len)
                    .map(|n| n.trunc())
                    .map_err(|e| CniError::new(Code::InvalidConfig, e.to_string()))?;
                let gw = match gw {
                    Some(IpAddr::V6(g)) => Some(g),
                    _ => None,
                };
                v6 = Some((a, net, gw));
            }
            _ => {}
        }
    }
    let v4 = v4.ok_or_else(|| {
        CniError::new(
            Code::InvalidConfig,
            format!("ipam {ipam:?} gave no IPv4 address: a netagent endpoint has one"),
        )
    })?;
    Ok((v4, v6))
}

/// The static addresses asked for, from every place the CNI conventions
/// put them (as host-local reads them): the `ips` capability
/// (`runtimeConfig.ips`), `args.cni.ips`, and `IP` in `CNI_ARGS` (a
/// comma-separated list). One address per family at most: the same
/// address asked for twice is one request, two different ones are
/// refused naming where each came from.
fn static_ips(env: &Env, conf: &NetConf) -> Result<(Option<Ipv4Addr>, Option<Ipv6Addr>), CniError> {
    let mut asked: Vec<(&str, IpAddr)> = Vec::new();
    asked.extend(conf.ips.iter().map(|(ip, _)| ("runtimeConfig.ips", *ip)));
    asked.extend(conf.arg_ips.iter().map(|ip| ("args.cni.ips", *ip)));
    if let Some(list) = env.arg("IP") {
        for text in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let ip = text.parse().map_err(|_| {
                CniError::new(
                    Code::InvalidEnvironment,
                    format!("CNI_ARGS IP {text:?} is not an IP address"),
                )
            })?;
            asked.push(("CNI_ARGS IP", ip));
        }
    }
    let mut v4: Option<(&str, Ipv4Addr)> = None;
    let mut v6: Option<(&str, Ipv6Addr)> = None;
    for (source, ip) in asked {
        let earlier: (&str, IpAddr) = match ip {
            IpAddr::V4(a) => {
                let (s, first) = *v4.get_or_insert((source, a));
                (s, first.into())
            }
            IpAddr::V6(a) => {
                let (s, first) = *v6.get_or_insert((source, a));
                (s, first.into())
            }
        };
        if earlier.1 != ip {
            return Err(CniError::new(
                Code::InvalidConfig,
                format!(
                    "{} asks for {} and {source} for {ip}: one address per family",
                    earlier.0, earlier.1
                ),
            ));
        }
    }
    Ok((v4.map(|(_, a)| a), v6.map(|(_, a)| a)))
}

/// The addresses of the container's interface `ifname` in a previous
/// result: those of that interface if the result names it, else those
/// of any interface in a sandbox, else every address.
fn container_ips(prev: &CniResult, ifname: &str) -> Vec<IpAddr> {
    let of = |want: &dyn Fn(&Interface) -> bool| -> Vec<IpAddr> {
        prev.ips
            .iter()
            .filter(|ip| {
                ip.interface
                    .and_then(|i| prev.interfaces.get(i))
                    .is_some_and(want)
            })
            .map(|ip| ip.address)
            .collect()
    };
    let named = of(&|i| i.name == ifname && i.sandbox.is_some());
    if !named.is_empty() {
        return named;
    }
    let sandboxed = of(&|i| i.sandbox.as_deref().is_some_and(|s| !s.is_empty()));
    if !sandboxed.is_empty() {
        return sandboxed;
    }
    prev.ips.iter().map(|ip| ip.address).collect()
}

fn attachment_of(response: Response) -> Result<CniAttachment, CniError> {
    match response {
        Response::CniAttachment { attachment } => Ok(attachment),
        other => Err(CniError::new(
            Code::Io,
            format!(
                "the daemon answered {:?}, not an attachment",
                other.payload()
            ),
        )),
    }
}

/// ADD's result in main mode: the host-side veth and the container's
/// interface, its addresses with their gateways, the default routes the
/// container got, and the configuration's DNS.
fn main_result(a: &CniAttachment, conf: &NetConf) -> CniResult {
    let mut result = CniResult::default();
    let (Some(e), Some(n)) = (&a.endpoint, &a.network) else {
        return result;
    };
    result.interfaces = vec![
        Interface {
            name: e.host_ifname.clone(),
            mac: None,
            sandbox: None,
        },
        Interface {
            name: e.ifname.clone(),
            mac: Some(e.mac.clone()),
            sandbox: Some(a.netns.display().to_string()),
        },
    ];
    result.ips.push(IpConfig {
        address: IpAddr::V4(e.ip),
        prefix_len: n.ipam.subnet.prefix_len(),
        gateway: Some(IpAddr::V4(n.ipam.gateway)),
        interface: Some(1),
    });
    if let (Some(ip6), Some(ipam6)) = (e.ip6, &n.ipam6) {
        result.ips.push(IpConfig {
            address: IpAddr::V6(ip6),
            prefix_len: ipam6.subnet.prefix_len(),
            gateway: Some(IpAddr::V6(ipam6.gateway)),
            interface: Some(1),
        });
    }
    if a.default_route {
        result.routes.push(Route {
            dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            prefix_len: 0,
            gw: Some(IpAddr::V4(n.ipam.gateway)),
        });
        if let (Some(_), Some(ipam6)) = (e.ip6, &n.ipam6) {
            result.routes.push(Route {
                dst: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                prefix_len: 0,
                gw: Some(IpAddr::V6(ipam6.gateway)),
            });
        }
    }
    if let Some(dns) = &conf.dns {
        result.dns = serde_json::from_value(dns.clone()).unwrap_or_default();
    }
    if netagent::dns::directory::resolves_names(&n.name) {
        // The embedded resolver in the container's namespace answers the
        // network's names and forwards the rest: first, with Docker's
        // ndots:0 unless the configuration sets ndots.
        let embedded = netagent::host::RESOLVER_IP.to_string();
        result.dns.nameservers.retain(|ns| *ns != embedded);
        result.dns.nameservers.insert(0, embedded);
        if !result.dns.options.iter().any(|o| o.starts_with("ndots:")) {
            result.dns.options.insert(0, "ndots:0".to_owned());
        }
    }
    result
}

/// The configuration's DNS, with what the IPAM plugin added.
fn merge_dns(mut ours: crate::result::Dns, theirs: crate::result::Dns) -> crate::result::Dns {
    for ns in theirs.nameservers {
        if !ours.nameservers.contains(&ns) {
            ours.nameservers.push(ns);
        }
    }
    ours.domain = ours.domain.or(theirs.domain);
    for s in theirs.search {
        if !ours.search.contains(&s) {
            ours.search.push(s);
        }
    }
    for o in theirs.options {
        if !ours.options.contains(&o) {
            ours.options.push(o);
        }
    }
    ours
}

/// DEL: the daemon's part (nothing there is a success), then the
/// delegated IPAM's, which is idempotent too.
fn del(env: &Env, conf: &NetConf, input: &[u8]) -> Result<(), CniError> {
    ask(
        conf,
        Command::Del,
        &Request::CniDel {
            key: key(env, conf),
        },
    )?;
    if let Some(ipam) = conf.ipam_type() {
        delegate::run(ipam, Command::Del, env, input)?;
    }
    Ok(())
}

/// CHECK: the daemon checks the attachment whole; the previous result
/// (this plugin's own, or in chained mode the main plugin's) must match
/// it; the delegated IPAM checks its allocation.
fn check(env: &Env, conf: &NetConf, input: &[u8]) -> Result<(), CniError> {
    netns(env)?;
    let attachment = attachment_of(ask(
        conf,
        Command::Check,
        &Request::CniCheck {
            key: key(env, conf),
        },
    )?)?;
    if let Some(prev) = &conf.prev_result {
        let prev = CniResult::from_json(prev)?;
        let mismatch = |what: String| CniError::new(Code::Plugin(CODE_BROKEN), what);
        if let Some(e) = &attachment.endpoint {
            let ips = container_ips(&prev, &e.ifname);
            let ours: Vec<IpAddr> = std::iter::once(IpAddr::V4(e.ip))
                .chain(e.ip6.map(IpAddr::V6))
                .collect();
            if let Some(missing) = ours.iter().find(|ip| !ips.contains(ip)) {
                return Err(mismatch(format!(
                    "prevResult does not list {missing}, the address of {}",
                    e.ifname
                )));
            }
        } else {
            // Chained: the publications go to the addresses the main
            // plugin reported.
            let ips = container_ips(&prev, &env.ifname.clone().unwrap_or_default());
            if let Some(p) = attachment
                .ports
                .iter()
                .find(|p| !ips.contains(&p.container_ip))
            {
                return Err(mismatch(format!(
                    "publication {} goes to {}, which prevResult does not list",
                    p, p.container_ip
                )));
            }
        }
    }
    if let Some(ipam) = conf.ipam_type() {
        delegate::run(ipam, Command::Check, env, input)?;
    }
    Ok(())
}

/// STATUS: ready if the daemon answers that it is (and the delegated
/// IPAM, if it speaks 1.1.0). A daemon that does not answer is 50 while
/// its pinned datapath goes on forwarding for the existing containers,
/// 51 when there is none (they may have no connectivity at all).
fn status(env: &Env, conf: &NetConf, input: &[u8]) -> Result<(), CniError> {
    let answer = match ask(conf, Command::Status, &Request::CniStatus) {
        Err(e) if e.code == Code::NotAvailable && !datapath_pinned(&conf.bpffs) => {
            return Err(CniError::new(
                Code::NotAvailableLimitedConnectivity,
                format!(
                    "{}; and no datapath is pinned under {}",
                    e.details, conf.bpffs
                ),
            ));
        }
        other => other?,
    };
    match answer {
        Response::CniStatus { status } if status.ready => {}
        Response::CniStatus { status } => {
            return Err(CniError::new(
                Code::NotAvailable,
                status
                    .reason
                    .unwrap_or_else(|| "the daemon is not ready".into()),
            ));
        }
        other => {
            return Err(CniError::new(
                Code::Io,
                format!("the daemon answered {:?} to STATUS", other.payload()),
            ));
        }
    }
    if let Some(ipam) = conf.ipam_type() {
        delegate::run(ipam, Command::Status, env, input)?;
    }
    Ok(())
}

/// Whether the daemon's datapath is pinned under `bpffs` (its maps
/// directory holds the publication map).
fn datapath_pinned(bpffs: &str) -> bool {
    Path::new(bpffs)
        .join("maps")
        .join(datapath_common::map_names::PUBLICATIONS)
        .exists()
}

fn gc(env: &Env, conf: &NetConf, input: &[u8]) -> Result<(), CniError> {
    let valid = conf.valid_attachments.clone().ok_or_else(|| {
        CniError::new(
            Code::InvalidConfig,
            "GC needs cni.dev/valid-attachments (the attachments that stay)",
        )
    })?;
    ask(
        conf,
        Command::Gc,
        &Request::CniGc {
            network: conf.name.clone(),
            valid,
        },
    )?;
    if let Some(ipam) = conf.ipam_type() {
        delegate::run(ipam, Command::Gc, env, input)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(cni_args: &str) -> Env {
        Env::from_vars(|name| {
            match name {
                "CNI_COMMAND" => Some("ADD"),
                "CNI_CONTAINERID" => Some("c1"),
                "CNI_NETNS" => Some("/run/netns/x"),
                "CNI_IFNAME" => Some("eth0"),
                "CNI_ARGS" => Some(cni_args),
                _ => None,
            }
            .map(str::to_owned)
        })
        .expect("a valid environment")
    }

    fn conf(extra: serde_json::Value) -> NetConf {
        let mut json =
            serde_json::json!({"cniVersion": "1.1.0", "name": "n1", "type": "netagent-cni"});
        if let (Some(o), Some(e)) = (json.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        NetConf::parse(json.to_string().as_bytes()).expect("a valid configuration")
    }

    /// The capability, `args.cni.ips` and `CNI_ARGS IP` are one request:
    /// the same address from two of them is fine, two different ones of
    /// a family are refused naming both places.
    #[test]
    fn static_addresses_come_from_every_conventional_place() {
        let v4 = |s: &str| s.parse::<Ipv4Addr>().expect("v4");
        let v6 = |s: &str| s.parse::<Ipv6Addr>().expect("v6");
        let none = conf(serde_json::json!({}));
        assert_eq!(static_ips(&env(""), &none).expect("none"), (None, None));
        let from_env = static_ips(&env("IgnoreUnknown=1;IP=10.9.0.7,fd00::7"), &none);
        assert_eq!(
            from_env.expect("CNI_ARGS"),
            (Some(v4("10.9.0.7")), Some(v6("fd00::7")))
        );
        let both = conf(serde_json::json!({
            "runtimeConfig": {"ips": ["10.9.0.7/24"]},
            "args": {"cni": {"ips": ["10.9.0.7", "fd00::8"]}}
        }));
        assert_eq!(
            static_ips(&env("IP=10.9.0.7"), &both).expect("one address per family"),
            (Some(v4("10.9.0.7")), Some(v6("fd00::8")))
        );
        let e = static_ips(&env("IP=10.9.0.9"), &both).expect_err("two IPv4 addresses");
        assert_eq!(e.code, Code::InvalidConfig);
        assert!(
            e.details
                .contains("runtimeConfig.ips asks for 10.9.0.7 and CNI_ARGS IP for 10.9.0.9"),
            "{e}"
        );
        let e = static_ips(&env("IP=10.9.0"), &none).expect_err("not an address");
        assert_eq!(e.code, Code::InvalidEnvironment);
        assert!(e.details.contains("CNI_ARGS IP \"10.9.0\""), "{e}");
    }
}
