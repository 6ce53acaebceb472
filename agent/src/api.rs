//! The local API between the CLI (or the CNI plugin) and the daemon: one
//! JSON request per line on a Unix socket, one JSON response line back.
//!
//! These types are serde only: the CLI's flags live in `cli` and are mapped
//! onto them, so a flag can change without changing the API, and other
//! clients (the CNI plugin) use this module as a library.

use std::{net::Ipv4Addr, path::PathBuf};

use serde::{Deserialize, Serialize};

use crate::{
    model::{Container, Endpoint, Network},
    spec::PortSpec,
    state::Publication,
};

/// Where the daemon listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/netagent/netagent.sock";

fn default_true() -> bool {
    true
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Publish a `[HOSTIP:]HOSTPORT->CONTAINERIP:CONTAINERPORT[/PROTO]` spec.
    Publish {
        spec: String,
    },
    /// Publish every spec or none (`netagent publish --file`).
    PublishMany {
        specs: Vec<String>,
    },
    /// Remove the publication `spec` names.
    Unpublish {
        spec: String,
    },
    /// Publications, optionally only those to one container address.
    List {
        container_ip: Option<std::net::IpAddr>,
    },
    /// Counters.
    Stats,
    NetworkCreate(NetworkCreate),
    /// `name`: a network's name, full ID or unique ID prefix (so for every
    /// `network` field below).
    NetworkRm {
        name: String,
    },
    NetworkLs,
    NetworkInspect {
        name: String,
    },
    NetworkConnect(NetworkConnect),
    NetworkDisconnect {
        network: String,
        container: String,
    },
    ContainerAttach(ContainerAttach),
    /// `name`: a container's name, full ID or unique ID prefix (so for
    /// every `container` field).
    ContainerDetach {
        name: String,
    },
    ContainerLs,
    ContainerInspect {
        name: String,
    },
    /// netagent-cni's commands.
    CniAdd(CniAdd),
    /// Removes the attachment; nothing to remove is a success.
    CniDel {
        key: CniKey,
    },
    /// Checks the attachment is whole (state, kernel objects, maps).
    CniCheck {
        key: CniKey,
    },
    /// Removes the attachments of CNI network `network` that `valid` (the
    /// runtime's `cni.dev/valid-attachments`: container ID, ifname) does
    /// not name.
    CniGc {
        network: String,
        valid: Vec<(String, String)>,
    },
    CniStatus,
    /// One of a container's files, as netagent writes it.
    ContainerFile {
        name: String,
        file: ContainerFile,
    },
    /// `netagent port NAME [CPORT[/PROTO]]`.
    ContainerPorts {
        name: String,
        /// `CPORT[/PROTO]` as typed.
        filter: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Published {
        publication: Publication,
    },
    PublishedMany {
        publications: Vec<Publication>,
    },
    Unpublished {
        publication: Publication,
    },
    Publications {
        publications: Vec<Publication>,
    },
    Stats {
        stats: Stats,
    },
    Network {
        network: Network,
    },
    Networks {
        networks: Vec<NetworkInfo>,
    },
    NetworkInfo {
        info: NetworkInfo,
    },
    /// `network connect` (the new endpoint) and `disconnect` (the one
    /// removed; none when a container leaves `none`).
    Endpoint {
        endpoint: Option<Endpoint>,
    },
    Container {
        info: ContainerInfo,
        /// Docker's warnings (ports discarded on `host`, say).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        warnings: Vec<String>,
    },
    Containers {
        containers: Vec<ContainerInfo>,
    },
    Detached {
        container: Container,
    },
    Ports {
        ports: Vec<PortSpec>,
        /// For each of `ports`, whether it is served on `[::]` too (a
        /// wildcard publication of a dual-stack container), which `port`
        /// prints as Docker does (`80/tcp -> [::]:8080`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ipv6: Vec<bool>,
    },
    CniAttachment {
        attachment: CniAttachment,
    },
    /// DEL: whether there was anything to remove.
    CniDeleted {
        removed: bool,
    },
    /// GC: the attachments removed.
    CniCollected {
        removed: Vec<CniKey>,
    },
    CniStatus {
        status: CniStatus,
    },
    /// A file's text (`container resolv-conf`, `hosts`, `env`).
    Text {
        text: String,
    },
    Error {
        message: String,
        /// What kind of failure, for clients that answer by kind (the CNI
        /// plugin's error codes); `None` from daemons before it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kind: Option<ErrorKind>,
    },
}

/// The kind of a failed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request is malformed or names something invalid.
    Invalid,
    /// What it names does not exist.
    NotFound,
    /// What it asks for is taken (a port, a name, an address, a
    /// namespace).
    Conflict,
    /// A limit is reached (a full map, no free address or port).
    Exhausted,
    /// Something that should exist is broken (CNI's CHECK).
    Broken,
    /// The kernel or the state store failed.
    Internal,
}

impl Response {
    /// Decodes one response line, as `serde_json::from_str` does, but the
    /// bulk answers (`published_many`, `publications`: 50,000 entries after
    /// a bulk publish) straight into their list. serde decodes an
    /// internally tagged enum by first buffering the whole object (every
    /// string and number an allocation of its own), which cost the CLI
    /// more than the daemon spends writing 50,000 map entries. The tag is
    /// checked all the same: any other answer fails the direct form at its
    /// first key and takes the general one.
    pub fn from_line(line: &str) -> serde_json::Result<Self> {
        #[derive(Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum BulkTag {
            PublishedMany,
            Publications,
        }
        #[derive(Deserialize)]
        struct Bulk {
            result: BulkTag,
            publications: Vec<Publication>,
        }
        match serde_json::from_str::<Bulk>(line) {
            Ok(Bulk {
                result: BulkTag::PublishedMany,
                publications,
            }) => Ok(Response::PublishedMany { publications }),
            Ok(Bulk {
                result: BulkTag::Publications,
                publications,
            }) => Ok(Response::Publications { publications }),
            Err(_) => serde_json::from_str(line),
        }
    }

    /// The payload alone, as `--json` prints it: every command prints the
    /// object or list its response carries, never the `result` wrapper.
    pub fn payload(&self) -> serde_json::Value {
        let value = match self {
            Response::Published { publication } | Response::Unpublished { publication } => {
                serde_json::to_value(publication)
            }
            Response::PublishedMany { publications } | Response::Publications { publications } => {
                serde_json::to_value(publications)
            }
            Response::Stats { stats } => serde_json::to_value(stats),
            Response::Network { network } => serde_json::to_value(network),
            Response::Networks { networks } => serde_json::to_value(networks),
            Response::NetworkInfo { info } => serde_json::to_value(info),
            Response::Endpoint { endpoint } => serde_json::to_value(endpoint),
            Response::Container { info, .. } => serde_json::to_value(info),
            Response::Containers { containers } => serde_json::to_value(containers),
            Response::Detached { container } => serde_json::to_value(container),
            Response::Ports { ports, .. } => serde_json::to_value(ports),
            Response::CniAttachment { attachment } => serde_json::to_value(attachment),
            Response::CniDeleted { removed } => Ok(serde_json::json!({ "removed": removed })),
            Response::CniCollected { removed } => serde_json::to_value(removed),
            Response::CniStatus { status } => serde_json::to_value(status),
            Response::Text { text } => Ok(serde_json::json!({ "text": text })),
            Response::Error { message, .. } => Ok(serde_json::json!({ "error": message })),
        };
        value.expect("API types serialize")
    }
}

/// `network create`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkCreate {
    pub name: String,
    /// `None`: picked from 172.17-31.0.0/16, then 192.168.0.0/16 in /20s.
    #[serde(default)]
    pub subnet: Option<ipnet::Ipv4Net>,
    /// `None`: the subnet's first address.
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default)]
    pub ip_range: Option<ipnet::Ipv4Net>,
    /// Dual stack (`--ipv6`): the network gets an IPv6 subnet too.
    #[serde(default)]
    pub ipv6: bool,
    /// `None` with `ipv6`: a unique local /64 picked for the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<ipnet::Ipv6Net>,
    /// `None`: the IPv6 subnet's first host address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<std::net::Ipv6Addr>,
    #[serde(default)]
    pub internal: bool,
    #[serde(default = "default_true")]
    pub icc: bool,
    /// `None`: bridge, the only driver.
    #[serde(default)]
    pub driver: Option<String>,
    /// `KEY=VALUE` driver options, as Docker takes them.
    #[serde(default)]
    pub options: Vec<String>,
}

impl NetworkCreate {
    /// A request with every default (Docker's `network create NAME`).
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            subnet: None,
            gateway: None,
            ip_range: None,
            ipv6: false,
            subnet6: None,
            gateway6: None,
            internal: false,
            icc: true,
            driver: None,
            options: Vec::new(),
        }
    }
}

/// `network connect`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConnect {
    pub network: String,
    pub container: String,
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    /// A static IPv6 address on a dual-stack network (`--ip6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<std::net::Ipv6Addr>,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The interface's name inside the container; `None`: the first free
    /// `ethN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
    /// Its MAC address; `None`: a random one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Set by netagent-cni: the CNI network the endpoint belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni_network: Option<String>,
}

/// A file netagent makes for a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerFile {
    /// Its resolv.conf.
    ResolvConf,
    /// Its hosts file.
    Hosts,
    /// Its legacy links' environment variables, `VAR=VALUE` lines.
    Env,
}

/// `container attach`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerAttach {
    /// `None`: a generated name (Docker's adjective_surname).
    #[serde(default)]
    pub name: Option<String>,
    /// The container's network namespace; not needed with
    /// `container:OTHER`, `host` or `none`.
    #[serde(default)]
    pub netns: Option<PathBuf>,
    /// A network, `container:OTHER`, `host` or `none`; `None`: `bridge`.
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    /// A static IPv6 address on a dual-stack network (`--ip6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<std::net::Ipv6Addr>,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `-p` values as typed.
    #[serde(default)]
    pub publish: Vec<String>,
    #[serde(default)]
    pub publish_all: bool,
    /// `--expose` values as typed.
    #[serde(default)]
    pub expose: Vec<String>,
    /// The interface's name inside the container; `None`: `eth0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
    /// Its MAC address (`--mac-address`); `None`: a random one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Set by netagent-cni: who attached the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni: Option<CniKey>,
    /// `--env VAR=VALUE`: seen by containers linking to this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// `--link NAME[:ALIAS]` values as typed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    /// `--dns`: upstream servers for its embedded resolver (or, on the
    /// default bridge, its resolv.conf's nameservers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<std::net::IpAddr>,
    /// `--dns-search`: its resolv.conf's search domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    /// `--dns-option`: its resolv.conf's options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_options: Vec<String>,
    /// `--hostname`: the hostname its runtime gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

/// One CNI attachment's identity (the spec's key, with the network): the
/// runtime's container ID (`CNI_CONTAINERID`), the interface inside the
/// container (`CNI_IFNAME`) and the CNI network's name (the
/// configuration's `name`). DEL, CHECK and GC find attachments by it and
/// by nothing else, so they never touch another container's.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CniKey {
    pub container_id: String,
    pub ifname: String,
    pub network: String,
}

/// CNI ADD: attach a container for a runtime.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniAdd {
    pub key: CniKey,
    /// `CNI_NETNS`.
    pub netns: PathBuf,
    /// The container's name, as asked for (`NETAGENT_NAME`): one in use
    /// is refused.
    #[serde(default)]
    pub name: Option<String>,
    /// A name to use if it is free (from `K8S_POD_NAMESPACE` and
    /// `K8S_POD_NAME`): a pod's new sandbox may be added before its old
    /// one is deleted, which must not fail. Otherwise, and without either
    /// name, [`crate::cni::default_name`] of the container ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_name: Option<String>,
    /// The `portMappings` capability, as `-p` values
    /// (`[IP:]HOSTPORT:CPORT/PROTO`).
    #[serde(default)]
    pub publish: Vec<String>,
    pub mode: CniMode,
}

/// Who makes the container's interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum CniMode {
    /// netagent-cni is the main plugin: an endpoint on a netagent network.
    Main(CniMain),
    /// Another plugin made the interface and gave it `ips` (its result):
    /// netagent publishes the ports to them, as the reference `portmap`.
    Chained { ips: Vec<std::net::IpAddr> },
}

/// ADD as the main plugin.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniMain {
    /// The netagent network to attach to.
    pub network: String,
    /// How to create it if it does not exist yet (`None`: it must exist).
    #[serde(default)]
    pub create: Option<NetworkCreate>,
    /// A static IPv4 address (the `ips` capability, or what a delegated
    /// IPAM plugin handed out).
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    #[serde(default)]
    pub ip6: Option<std::net::Ipv6Addr>,
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// One CNI attachment as the daemon has it (ADD's and CHECK's answer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniAttachment {
    pub key: CniKey,
    /// The netagent container.
    pub container: String,
    pub netns: PathBuf,
    /// Main mode: the endpoint, and its network (subnet and gateway for
    /// the result).
    #[serde(default)]
    pub endpoint: Option<Endpoint>,
    #[serde(default)]
    pub network: Option<Network>,
    /// Whether the container's default route goes through it.
    #[serde(default)]
    pub default_route: bool,
    /// The publications to it.
    #[serde(default)]
    pub ports: Vec<PortSpec>,
}

/// What STATUS reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniStatus {
    /// Whether ADD can succeed now.
    pub ready: bool,
    /// Why not, if not.
    #[serde(default)]
    pub reason: Option<String>,
}

/// One container on a network, for `network inspect`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkMember {
    pub container: String,
    /// Its interface on the network; `None` on `host` and `none`.
    pub endpoint: Option<Endpoint>,
}

/// `network inspect` and each row of `network ls`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    pub name: String,
    /// 64 hex digits.
    pub id: String,
    /// `bridge`, `host` or `null` (Docker's driver names).
    pub driver: String,
    /// Always `local`.
    pub scope: String,
    /// A bridge network's configuration; `None` for `host` and `none`.
    pub config: Option<Network>,
    pub members: Vec<NetworkMember>,
}

/// `container inspect` / `ls`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub container: Container,
    /// For a joined container, whose network stack it uses.
    pub joined_to: Option<String>,
    /// Its endpoints, or for a joined container, those it shares.
    pub endpoints: Vec<Endpoint>,
    pub ports: Vec<PortSpec>,
    /// The network the container's default route goes through, if any.
    #[serde(default)]
    pub gateway_network: Option<String>,
}

/// One publication's counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicationStats {
    pub publication: PortSpec,
    /// Whether it has counters of its own (a host with many CPUs has
    /// fewer counter slots than publications may be; the rest are
    /// translated all the same, uncounted).
    #[serde(default = "default_true")]
    pub counted: bool,
    pub fwd_packets: u64,
    pub fwd_bytes: u64,
    pub rev_packets: u64,
    pub rev_bytes: u64,
}

/// A served interface, the XDP mode it got and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedInterface {
    pub name: String,
    /// Its driver, as ethtool reports it.
    pub driver: Option<String>,
    /// `native`, `generic` or `off` (TC only).
    pub xdp_mode: crate::datapath::XdpAttachMode,
    pub reason: String,
}

/// Everything `netagent stats` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// The interfaces the datapath serves.
    #[serde(default)]
    pub interfaces: Vec<ServedInterface>,
    /// The cgroup whose processes reach published ports from the host
    /// itself (the socket hooks); none with `--cgroup none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_hooks_cgroup: Option<PathBuf>,
    pub publications: Vec<PublicationStats>,
    /// Datapath events by name, in `Event::ALL` order.
    pub events: Vec<(String, u64)>,
    /// The embedded DNS resolver's counters since the daemon started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsStats>,
}

/// The embedded DNS resolver's counters (Docker's `libnetwork_resolver_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsStats {
    /// Containers with a resolver now.
    pub resolvers: u64,
    /// Queries received, UDP and TCP.
    pub queries: u64,
    /// Answered from the directory (names, PTR, empty answers, errors to
    /// malformed queries).
    pub answered: u64,
    /// Sent to upstream servers.
    pub forwarded: u64,
    /// Upstream servers that timed out, failed or refused, and were
    /// passed over for the next.
    pub failovers: u64,
    /// Forwarded queries no server answered (SERVFAIL to the asker).
    pub servfail: u64,
    /// Refused: over the per-container limit of forwards in flight.
    pub refused: u64,
    /// Not answered: responses sent to the resolver, packets shorter than
    /// a header.
    pub dropped: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publication(spec: &str, stats_slot: u32) -> Publication {
        Publication {
            spec: spec.parse().unwrap(),
            stats_slot,
            owner: None,
        }
    }

    /// The direct decoding of bulk answers gives what serde's general one
    /// gives, and every other answer still decodes.
    #[test]
    fn response_lines_decode_as_serde_decodes_them() {
        let many = vec![
            publication("8080->10.0.0.2:80", 0),
            publication("127.0.0.1:53->10.0.0.3:53/udp", 1),
        ];
        for response in [
            Response::PublishedMany {
                publications: many.clone(),
            },
            Response::Publications {
                publications: many.clone(),
            },
            Response::Publications {
                publications: Vec::new(),
            },
            Response::Published {
                publication: many[0],
            },
            Response::Error {
                message: "port is already allocated".into(),
                kind: Some(ErrorKind::Conflict),
            },
            Response::Ports {
                ports: Vec::new(),
                ipv6: Vec::new(),
            },
        ] {
            let line = serde_json::to_string(&response).unwrap();
            assert_eq!(Response::from_line(&line).unwrap(), response, "{line}");
            assert_eq!(
                serde_json::from_str::<Response>(&line).unwrap(),
                response,
                "{line}"
            );
        }
        // The tag may come anywhere, as in any JSON object.
        let reordered = r#"{"publications":[],"result":"published_many"}"#;
        assert_eq!(
            Response::from_line(reordered).unwrap(),
            Response::PublishedMany {
                publications: Vec::new()
            }
        );
        // A list under another tag is not taken for a bulk answer.
        assert!(Response::from_line(r#"{"result":"ports","publications":[]}"#).is_err());
        assert!(Response::from_line("{").is_err());
    }
}
