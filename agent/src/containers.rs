//! Networks and containers: what `netagent network ...` and `netagent
//! container ...` do, on top of the publication logic in agent.rs.
//!
//! Every operation follows one pattern: check everything first (names,
//! addresses, ports), then make the kernel objects (interfaces, map
//! entries, port reservations), undoing them if a later step fails, and
//! write the state file last. A crash between the kernel steps and the
//! state write leaves objects the state does not name; the next start's
//! [`Agent::reconcile_networks`] collects them (every interface netagent
//! makes carries its prefix). So an error changes nothing, and a crash
//! loses nothing that was acknowledged.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    path::PathBuf,
};

use datapath_common::{EndpointAddr, EndpointIface};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use crate::{
    agent::{Agent, AgentError, host_port, pub_key, pub_value},
    datapath::Datapath,
    host::{BridgeConfig, EndpointConfig, EndpointLink, Host, HostError, HostPort, parse_mac},
    ipam::{self, NetworkIpam},
    model::{
        Container, DEFAULT_BRIDGE, DEFAULT_NETWORK, Endpoint, GatewayMode, Network, NetworkMode,
        random_id, valid_alias, valid_container_name, valid_network_name,
    },
    portmap::{ExposedPorts, HostChoice, PortMapping},
    spec::{PortSpec, Proto},
    state::Publication,
};

/// Prefix of endpoint veths (host side) and of bridges; both start with
/// [`crate::host::IFACE_PREFIX`] (a test checks), so [`Host::own_links`] finds them.
const VETH_PREFIX: &str = "na-v";
const BRIDGE_PREFIX: &str = "na-br";

/// Whether `name` is one netagent gives a container's host-side veth.
pub fn is_endpoint_name(name: &str) -> bool {
    name.len() > VETH_PREFIX.len() && name.len() <= 15 && name.starts_with(VETH_PREFIX)
}

/// Whether `name` is one netagent gives a network's bridge.
pub fn is_bridge_name(name: &str) -> bool {
    name.len() > BRIDGE_PREFIX.len() && name.len() <= 15 && name.starts_with(BRIDGE_PREFIX)
}

/// Refusals, with Docker's wording where users know it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetError {
    #[error("network {0} not found")]
    NoSuchNetwork(String),
    #[error("network with name {0} already exists")]
    NetworkExists(String),
    #[error(
        "invalid network name {0:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, at most 63 characters"
    )]
    InvalidNetworkName(String),
    #[error(
        "invalid alias {0:?}: a DNS name of labels [a-zA-Z0-9_-] (at most 63 characters each, 253 in all)"
    )]
    InvalidAlias(String),
    #[error(
        "error while removing network: network {name} id {id} has active endpoints ({containers})"
    )]
    NetworkInUse {
        name: String,
        id: String,
        containers: String,
    },
    #[error("{0} is a pre-defined network and cannot be removed")]
    Predefined(String),
    #[error("plugin \"{0}\" not found: only the bridge driver is available")]
    Driver(String),
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    #[error(
        "Invalid container name ({0}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, at most 63 characters"
    )]
    InvalidContainerName(String),
    #[error(
        "Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name."
    )]
    NameInUse { name: String, id: String },
    #[error("conflicting options: {0} and the container type network mode")]
    JoinedConflict(&'static str),
    #[error(
        "container sharing network namespace with another container or host cannot be connected to any other network"
    )]
    JoinedConnect,
    #[error("cannot join container {0}: it is the container being attached")]
    JoinSelf(String),
    #[error(
        "container {name} has containers joined to its network stack ({joined}); detach them first"
    )]
    HasJoined { name: String, joined: String },
    #[error("endpoint with name {container} already exists in network {network}")]
    AlreadyConnected { container: String, network: String },
    #[error("container {container} is not connected to network {network}")]
    NotConnected { container: String, network: String },
    #[error("user specified IP address is supported on user defined networks only")]
    StaticIpOnDefault,
    #[error("network-scoped alias is supported only for containers in user defined networks")]
    AliasOnDefault,
    #[error("container {container} cannot publish ports: network {network} is internal")]
    InternalPublish { container: String, network: String },
    #[error(
        "container {container} publishes ports through network {network}, its only network with outside access; detach the container instead"
    )]
    LastPublishingNetwork { container: String, network: String },
    #[error("No public port '{port}' published for {container}")]
    NoPublicPort { port: String, container: String },
    #[error("all ports are allocated (no free {proto} port in {lo}-{hi} on {ip})")]
    AllPortsAllocated {
        ip: Ipv4Addr,
        lo: u16,
        hi: u16,
        proto: Proto,
    },
    #[error("invalid network option {0}")]
    BadOption(String),
    #[error("--netns is required (the container's network namespace)")]
    NetnsRequired,
    #[error(
        "network namespace {path} is not the one of container {target}, whose network stack --network container:{target} shares"
    )]
    NetnsNotShared { path: PathBuf, target: String },
    #[error(
        "network namespace {path} is already attached as container {container}; use --network container:{container} to share it"
    )]
    NetnsInUse { path: PathBuf, container: String },
    #[error(
        "network namespace {path} is the host's own: a container needs a namespace of its own (ip netns add, or the runtime's /proc/PID/ns/net)"
    )]
    HostNetns { path: PathBuf },
    #[error(
        "network namespace {path} is no longer container {container}'s (the path names another namespace now); detach the container"
    )]
    NetnsReplaced { path: PathBuf, container: String },
}

fn default_true() -> bool {
    true
}

/// `netagent network create` (its CLI arguments and its API request).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct NetworkCreate {
    pub name: String,
    /// Subnet in CIDR form (picked from 172.17-31.0.0/16, then
    /// 192.168.0.0/16 in /20s, avoiding networks and host routes).
    #[arg(long)]
    pub subnet: Option<Ipv4Net>,
    /// Gateway (the bridge's address); the subnet's first address by default.
    #[arg(long)]
    pub gateway: Option<Ipv4Addr>,
    /// Allocate container addresses from this sub-range only.
    #[arg(long)]
    pub ip_range: Option<Ipv4Net>,
    /// No traffic leaves the network's subnet.
    #[arg(long)]
    #[serde(default)]
    pub internal: bool,
    /// Inter-container communication (`--icc=false` blocks it).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    #[serde(default = "default_true")]
    pub icc: bool,
    /// Network driver (only `bridge`).
    #[arg(long, short = 'd')]
    pub driver: Option<String>,
    /// Driver options, as Docker takes them:
    /// `com.docker.network.bridge.gateway_mode_ipv4=nat|routed`.
    #[arg(long = "opt", short = 'o', value_name = "KEY=VALUE")]
    #[serde(default)]
    pub options: Vec<String>,
}

/// Docker's option key for the IPv4 gateway mode.
pub const GATEWAY_MODE_OPT: &str = "com.docker.network.bridge.gateway_mode_ipv4";

impl NetworkCreate {
    /// The gateway mode the options ask for; unknown options are refused.
    fn gateway_mode(&self) -> Result<GatewayMode, NetError> {
        let mut mode = GatewayMode::Nat;
        for opt in &self.options {
            let (key, value) = opt
                .split_once('=')
                .ok_or_else(|| NetError::BadOption(format!("{opt:?}: expected KEY=VALUE")))?;
            match key {
                GATEWAY_MODE_OPT => {
                    mode = value
                        .parse()
                        .map_err(|e: String| NetError::BadOption(format!("{key}: {e}")))?;
                }
                other => {
                    return Err(NetError::BadOption(format!(
                        "{other:?} is not supported (netagent knows {GATEWAY_MODE_OPT})"
                    )));
                }
            }
        }
        if mode == GatewayMode::Routed && self.internal {
            return Err(NetError::BadOption(format!(
                "{GATEWAY_MODE_OPT}=routed: an internal network has no gateway to route through"
            )));
        }
        Ok(mode)
    }
}

/// `netagent container attach` (its CLI arguments and its API request).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct ContainerAttach {
    /// Unique container name ([a-zA-Z0-9][a-zA-Z0-9_.-]+).
    pub name: String,
    /// The container's network namespace (/run/netns/NAME, /proc/PID/ns/net);
    /// optional with `--network container:OTHER` (then, if given, it must be
    /// OTHER's namespace, under any path).
    #[arg(long)]
    pub netns: Option<PathBuf>,
    /// A network (default `bridge`), or `container:OTHER` to share OTHER's
    /// network stack.
    #[arg(long)]
    pub network: Option<String>,
    #[arg(long)]
    pub ip: Option<Ipv4Addr>,
    #[arg(long = "alias")]
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Publish: [IP:][HOSTPORT[-END]:]CPORT[-END][/tcp|/udp] (as typed).
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    #[serde(default)]
    pub publish: Vec<String>,
    /// Publish every exposed port to a random host port.
    #[arg(short = 'P', long = "publish-all")]
    #[serde(default)]
    pub publish_all: bool,
    /// Expose PORT[-END][/PROTO] (published by -P; as typed).
    #[arg(long)]
    #[serde(default)]
    pub expose: Vec<String>,
}

/// One container's endpoint on a network, for `network inspect`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkMember {
    pub container: String,
    pub endpoint: Endpoint,
}

/// `netagent network inspect`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    pub network: Network,
    pub members: Vec<NetworkMember>,
}

/// `netagent container inspect` / `ls`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub container: Container,
    /// For a joined container, whose network stack it uses.
    pub joined_to: Option<String>,
    /// Its endpoints, or for a joined container, those it shares.
    pub endpoints: Vec<Endpoint>,
    pub ports: Vec<PortSpec>,
}

/// What [`Agent::reconcile_networks`] did, and what it could not do.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NetReconcileReport {
    pub recreated_endpoints: usize,
    pub missing_endpoints: usize,
    /// Endpoints whose ifindex or MAC the state file had wrong (taken
    /// from the kernel).
    pub corrected_endpoints: usize,
    pub collected: usize,
    /// One line per item that failed; everything else was done.
    pub errors: Vec<String>,
}

impl<D: Datapath, H: Host> Agent<D, H> {
    fn network(&self, name: &str) -> Result<&Network, NetError> {
        self.state
            .networks
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| NetError::NoSuchNetwork(name.to_owned()))
    }

    fn container(&self, name: &str) -> Result<&Container, NetError> {
        self.state
            .containers
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| NetError::NoSuchContainer(name.to_owned()))
    }

    /// Checks that the container's namespace path still names the
    /// namespace it was attached with.
    fn check_netns(&mut self, container: &Container) -> Result<(), AgentError> {
        let id = self.host.netns_id(&container.netns)?;
        if container.netns_id.is_some_and(|saved| saved != id) {
            return Err(NetError::NetnsReplaced {
                path: container.netns.clone(),
                container: container.name.clone(),
            }
            .into());
        }
        Ok(())
    }

    /// Subnets in use: networks and host routes (default routes aside).
    fn taken_subnets(&mut self) -> Result<Vec<(Ipv4Net, String)>, AgentError> {
        let mut taken: Vec<(Ipv4Net, String)> = self
            .state
            .networks
            .iter()
            .map(|n| (n.ipam.subnet, format!("network {}", n.name)))
            .collect();
        let bridges: BTreeSet<Ipv4Net> =
            self.state.networks.iter().map(|n| n.ipam.subnet).collect();
        // Our own bridges' routes are the networks above.
        taken.extend(
            self.host
                .routes()?
                .into_iter()
                .filter(|(net, _)| !bridges.contains(net)),
        );
        Ok(taken)
    }

    /// Creates the default `bridge` network if the state has none.
    pub fn ensure_default_network(&mut self) -> Result<(), AgentError> {
        if self
            .state
            .networks
            .iter()
            .any(|n| n.name == DEFAULT_NETWORK)
        {
            return Ok(());
        }
        let network = self.network_create(NetworkCreate {
            name: DEFAULT_NETWORK.into(),
            subnet: None,
            gateway: None,
            ip_range: None,
            internal: false,
            icc: true,
            driver: None,
            options: Vec::new(),
        })?;
        info!(subnet = %network.ipam.subnet, "created the default network");
        Ok(())
    }

    pub fn network_create(&mut self, req: NetworkCreate) -> Result<Network, AgentError> {
        if !valid_network_name(&req.name) {
            return Err(NetError::InvalidNetworkName(req.name).into());
        }
        if self.network(&req.name).is_ok() {
            return Err(NetError::NetworkExists(req.name).into());
        }
        let driver = req.driver.clone().unwrap_or_else(|| "bridge".into());
        if driver != "bridge" {
            return Err(NetError::Driver(driver).into());
        }
        let gateway_mode = req.gateway_mode()?;
        let taken = self.taken_subnets()?;
        let subnet = match req.subnet {
            Some(subnet) => {
                ipam::check_free(subnet, &taken)?;
                subnet
            }
            None => ipam::pick_subnet(&taken)?,
        };
        let ipam = NetworkIpam::new(subnet, req.gateway, req.ip_range)?;
        let used: BTreeSet<u32> = self.state.networks.iter().map(|n| n.net_id).collect();
        let net_id = (1..)
            .find(|i| !used.contains(i))
            .expect("fewer than 2^32 networks");
        let id = random_id();
        let bridge = if req.name == DEFAULT_NETWORK {
            DEFAULT_BRIDGE.to_owned()
        } else {
            format!("{BRIDGE_PREFIX}-{}", &id[..9])
        };
        let network = Network {
            name: req.name,
            id,
            net_id,
            driver,
            bridge,
            internal: req.internal,
            icc: req.icc,
            gateway_mode,
            ipam,
        };
        let link = self.host.ensure_bridge(&bridge_config(&network))?;
        self.bridges.insert(network.bridge.clone(), link);
        let mut next = self.state.clone();
        next.networks.push(network.clone());
        if let Err(e) = self.store.save(&next) {
            let _ = self.host.remove_bridge(&network.bridge);
            return Err(e.into());
        }
        self.state = next;
        info!(name = %network.name, subnet = %network.ipam.subnet, "network created");
        Ok(network)
    }

    pub fn network_rm(&mut self, name: &str) -> Result<Network, AgentError> {
        let network = self.network(name)?.clone();
        if network.name == DEFAULT_NETWORK {
            return Err(NetError::Predefined(network.name).into());
        }
        let members = self.members(name);
        if !members.is_empty() {
            return Err(NetError::NetworkInUse {
                name: network.name,
                id: network.id,
                containers: members
                    .iter()
                    .map(|m| m.container.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }
            .into());
        }
        let mut next = self.state.clone();
        next.networks.retain(|n| n.name != name);
        self.store.save(&next)?;
        if let Err(e) = self.host.remove_bridge(&network.bridge) {
            // Not named by the state any more: the next start collects it.
            warn!(bridge = %network.bridge, error = %e, "removing a network's bridge");
        }
        self.state = next;
        info!(name, "network removed");
        Ok(network)
    }

    pub fn network_list(&self) -> Vec<Network> {
        let mut list = self.state.networks.clone();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    fn members(&self, network: &str) -> Vec<NetworkMember> {
        self.state
            .containers
            .iter()
            .flat_map(|c| {
                c.endpoints()
                    .iter()
                    .filter(|e| e.network == network)
                    .map(|e| NetworkMember {
                        container: c.name.clone(),
                        endpoint: e.clone(),
                    })
            })
            .collect()
    }

    pub fn network_inspect(&self, name: &str) -> Result<NetworkInfo, AgentError> {
        Ok(NetworkInfo {
            network: self.network(name)?.clone(),
            members: self.members(name),
        })
    }

    /// Makes one endpoint: the veth pair, the isolation program, and the
    /// endpoint map entries. Nothing of it is left behind on error.
    fn create_endpoint(
        &mut self,
        container: &Container,
        network: &Network,
        ip: Ipv4Addr,
        ifname: String,
        default_route: bool,
        aliases: Vec<String>,
    ) -> Result<(Endpoint, u32), AgentError> {
        let host_ifname = format!("{VETH_PREFIX}{}", &random_id()[..11]);
        let link = self.host.add_endpoint(&endpoint_config(
            &container.netns,
            network,
            &host_ifname,
            &ifname,
            ip,
            default_route,
        ))?;
        let endpoint = Endpoint {
            network: network.name.clone(),
            ifname,
            host_ifname,
            host_ifindex: link.host_ifindex,
            ip,
            mac: link.mac,
            aliases,
        };
        if let Err(e) = self.program_endpoint(&endpoint, link.host_ifindex, network) {
            self.destroy_endpoint(&endpoint);
            return Err(e);
        }
        Ok((endpoint, link.host_ifindex))
    }

    /// The datapath side of an endpoint (idempotent): the isolation
    /// program on its host-side veth, and both endpoint map entries.
    fn program_endpoint(
        &mut self,
        endpoint: &Endpoint,
        host_ifindex: u32,
        network: &Network,
    ) -> Result<(), AgentError> {
        let bridge = match self.bridges.get(&network.bridge) {
            Some(link) => *link,
            None => {
                let link = self.host.ensure_bridge(&bridge_config(network))?;
                self.bridges.insert(network.bridge.clone(), link);
                link
            }
        };
        let mac = parse_mac(&endpoint.mac).ok_or_else(|| {
            HostError::Other(format!(
                "endpoint {} has no usable MAC address ({:?})",
                endpoint.host_ifname, endpoint.mac
            ))
        })?;
        let net = network.policy();
        self.datapath.attach_endpoint(&endpoint.host_ifname)?;
        self.datapath.set_endpoint_iface(
            host_ifindex,
            &EndpointIface {
                net,
                bridge_ifindex: bridge.ifindex,
                _pad: 0,
            },
        )?;
        self.datapath.set_endpoint_addr(
            endpoint.ip,
            &EndpointAddr {
                net,
                host_ifindex,
                mac,
                gw_mac: bridge.mac,
            },
        )?;
        Ok(())
    }

    /// Removes an endpoint's kernel objects, best effort: what fails is
    /// logged, and the next start's reconcile collects it.
    ///
    /// The veth goes first: while it exists, its program must find its map
    /// entries (without them it drops everything, failing closed), and
    /// once it is gone nothing can arrive through it.
    fn destroy_endpoint(&mut self, endpoint: &Endpoint) {
        let mut failures = Vec::new();
        if let Err(e) = self.host.remove_endpoint(&endpoint.host_ifname) {
            failures.push(e.to_string());
        }
        if let Err(e) = self.datapath.detach_endpoint(&endpoint.host_ifname) {
            failures.push(e.to_string());
        }
        if let Err(e) = self.datapath.remove_endpoint_iface(endpoint.host_ifindex) {
            failures.push(e.to_string());
        }
        if let Err(e) = self.datapath.remove_endpoint_addr(endpoint.ip) {
            failures.push(e.to_string());
        }
        if !failures.is_empty() {
            warn!(iface = %endpoint.host_ifname, ?failures, "removing an endpoint");
        }
    }

    /// The first free `ethN` of a container.
    fn next_ifname(container: &Container) -> String {
        let used: BTreeSet<&str> = container
            .endpoints()
            .iter()
            .map(|e| e.ifname.as_str())
            .collect();
        (0..)
            .map(|n| format!("eth{n}"))
            .find(|n| !used.contains(n.as_str()))
            .expect("a free interface name")
    }

    pub fn container_attach(&mut self, req: ContainerAttach) -> Result<ContainerInfo, AgentError> {
        if !valid_container_name(&req.name) {
            return Err(NetError::InvalidContainerName(req.name).into());
        }
        check_aliases(&req.aliases)?;
        if let Ok(existing) = self.container(&req.name) {
            return Err(NetError::NameInUse {
                name: req.name,
                id: existing.id.clone(),
            }
            .into());
        }
        let mappings = req
            .publish
            .iter()
            .map(|p| p.parse::<PortMapping>())
            .collect::<Result<Vec<_>, _>>()?;
        let mut exposed = req
            .expose
            .iter()
            .map(|p| p.parse::<ExposedPorts>())
            .collect::<Result<Vec<_>, _>>()?;
        for m in &mappings {
            exposed.push(ExposedPorts {
                ports: m.container,
                proto: m.proto,
            });
        }
        exposed.sort();
        exposed.dedup();
        let uid = self
            .state
            .containers
            .iter()
            .map(|c| c.uid)
            .max()
            .unwrap_or(0)
            + 1;
        let mut container = Container {
            name: req.name.clone(),
            id: random_id(),
            uid,
            netns: req.netns.clone().unwrap_or_default(),
            netns_id: None,
            mode: NetworkMode::Bridge {
                endpoints: Vec::new(),
            },
            exposed,
            port_mappings: mappings.clone(),
            publish_all: req.publish_all,
        };

        if let Some(target) = req
            .network
            .as_deref()
            .and_then(|n| n.strip_prefix("container:"))
        {
            return self.attach_joined(container, &req, target);
        }
        let netns = req.netns.clone().ok_or(NetError::NetnsRequired)?;
        let id = self.host.netns_id(&netns)?;
        if id == self.host.own_netns()? {
            return Err(NetError::HostNetns { path: netns }.into());
        }
        container.netns_id = Some(id);
        let bridged: Vec<(String, PathBuf)> = self
            .state
            .containers
            .iter()
            .filter(|c| matches!(c.mode, NetworkMode::Bridge { .. }))
            .map(|c| (c.name.clone(), c.netns.clone()))
            .collect();
        for (other, path) in bridged {
            if self.host.netns_id(&path).ok() == Some(id) {
                return Err(NetError::NetnsInUse {
                    path: netns,
                    container: other,
                }
                .into());
            }
        }
        let net_name = req
            .network
            .clone()
            .unwrap_or_else(|| DEFAULT_NETWORK.into());
        let mut network = self.network(&net_name)?.clone();
        if network.name == DEFAULT_NETWORK {
            if req.ip.is_some() {
                return Err(NetError::StaticIpOnDefault.into());
            }
            if !req.aliases.is_empty() {
                return Err(NetError::AliasOnDefault.into());
            }
        }
        let publishes = !mappings.is_empty() || (req.publish_all && !container.exposed.is_empty());
        if publishes && network.internal {
            return Err(NetError::InternalPublish {
                container: req.name,
                network: network.name,
            }
            .into());
        }
        let ip = network.ipam.allocate(req.ip)?;
        let (endpoint, _) = self.create_endpoint(
            &container,
            &network,
            ip,
            "eth0".into(),
            gives_default_route(&[], &network, &self.state.networks),
            req.aliases.clone(),
        )?;

        let mut reserved = Vec::new();
        let published = match self
            .allocate_ports(&container, ip, &mut reserved)
            .and_then(|specs| self.new_publications(&specs, Some(uid)))
            .and_then(|published| {
                self.install_publications(&published)?;
                Ok(published)
            }) {
            Ok(p) => p,
            Err(e) => {
                self.release_ports(&reserved);
                self.destroy_endpoint(&endpoint);
                return Err(AgentError::Connectivity {
                    endpoint: container.name.clone(),
                    id: container.id.clone(),
                    source: Box::new(e),
                });
            }
        };
        if let Some(eps) = container.endpoints_mut() {
            eps.push(endpoint.clone());
        }
        let mut next = self.state.clone();
        replace_network(&mut next.networks, network);
        next.containers.push(container.clone());
        next.publications.extend_from_slice(&published);
        if let Err(e) = self.store.save(&next) {
            self.uninstall_publications(&published);
            self.release_ports(&reserved);
            self.destroy_endpoint(&endpoint);
            return Err(e.into());
        }
        self.state = next;
        self.sync_open_ports();
        info!(name = %container.name, %ip, network = %net_name, ports = published.len(), "container attached");
        self.container_inspect(&container.name)
    }

    fn attach_joined(
        &mut self,
        mut container: Container,
        req: &ContainerAttach,
        target: &str,
    ) -> Result<ContainerInfo, AgentError> {
        if !req.publish.is_empty() || req.publish_all {
            return Err(NetError::JoinedConflict("port publishing").into());
        }
        if !req.expose.is_empty() {
            return Err(NetError::JoinedConflict("port exposing").into());
        }
        if req.ip.is_some() {
            return Err(NetError::JoinedConflict("static IP").into());
        }
        if !req.aliases.is_empty() {
            return Err(NetError::JoinedConflict("network aliases").into());
        }
        if target == req.name {
            return Err(NetError::JoinSelf(target.to_owned()).into());
        }
        let target = self.container(target)?;
        // Joining a joined container joins the stack it shares.
        let root = match &target.mode {
            NetworkMode::Container { target } => target.clone(),
            NetworkMode::Bridge { .. } => target.name.clone(),
        };
        let shared = target.netns.clone();
        let shared_id = target.netns_id;
        if let Some(given) = &req.netns {
            let same = match (self.host.netns_id(given), self.host.netns_id(&shared)) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            };
            if !same {
                return Err(NetError::NetnsNotShared {
                    path: given.clone(),
                    target: root,
                }
                .into());
            }
        }
        container.netns = shared;
        container.netns_id = shared_id;
        container.mode = NetworkMode::Container { target: root };
        let mut next = self.state.clone();
        next.containers.push(container.clone());
        self.store.save(&next)?;
        self.state = next;
        info!(name = %container.name, "container attached to another container's network stack");
        self.container_inspect(&container.name)
    }

    /// Chooses a host port for every `-p` container port and, with `-P`,
    /// for every exposed port not mapped by `-p`; reserves each (pushed on
    /// `reserved`, which the caller releases on error).
    fn allocate_ports(
        &mut self,
        container: &Container,
        container_ip: Ipv4Addr,
        reserved: &mut Vec<HostPort>,
    ) -> Result<Vec<PortSpec>, AgentError> {
        let mut wanted: Vec<(Ipv4Addr, HostChoice, u16, Proto)> = Vec::new();
        for m in &container.port_mappings {
            for (choice, cport) in m.expand() {
                wanted.push((m.host_ip, choice, cport, m.proto));
            }
        }
        if container.publish_all {
            for e in &container.exposed {
                for cport in e.ports.ports() {
                    let mapped = container
                        .port_mappings
                        .iter()
                        .any(|m| m.proto == e.proto && m.container.ports().any(|p| p == cport));
                    if !mapped {
                        wanted.push((Ipv4Addr::UNSPECIFIED, HostChoice::Ephemeral, cport, e.proto));
                    }
                }
            }
        }
        let mut taken = self.port_index();
        let mut specs = Vec::new();
        for (host_ip, choice, container_port, proto) in wanted {
            let spec = |host_port| PortSpec {
                host_ip,
                host_port,
                container_ip,
                container_port,
                proto,
            };
            let chosen = match choice {
                HostChoice::Fixed(port) => {
                    let s = spec(port);
                    taken.claim(&s)?;
                    self.host.reserve_port(host_port(&s))?;
                    s
                }
                HostChoice::AnyIn(lo, hi) => {
                    let candidates: Vec<u16> = (lo..=hi).collect();
                    self.first_free(&mut taken, &candidates, spec).ok_or(
                        NetError::AllPortsAllocated {
                            ip: host_ip,
                            lo,
                            hi,
                            proto,
                        },
                    )?
                }
                HostChoice::Ephemeral => {
                    let (lo, hi, skip) = self.host.ephemeral_ports();
                    let start = self
                        .port_cursors
                        .get(&(host_ip, proto))
                        .map(|c| c.wrapping_add(1))
                        .filter(|c| (lo..=hi).contains(c))
                        .unwrap_or(lo);
                    let candidates: Vec<u16> = (start..=hi)
                        .chain(lo..start)
                        .filter(|p| !skip.iter().any(|(a, b)| (*a..=*b).contains(p)))
                        .collect();
                    let s = self.first_free(&mut taken, &candidates, spec).ok_or(
                        NetError::AllPortsAllocated {
                            ip: host_ip,
                            lo,
                            hi,
                            proto,
                        },
                    )?;
                    self.port_cursors.insert((host_ip, proto), s.host_port);
                    s
                }
            };
            reserved.push(host_port(&chosen));
            specs.push(chosen);
        }
        Ok(specs)
    }

    /// The first candidate host port neither published nor held by another
    /// process; claimed and reserved.
    fn first_free(
        &mut self,
        taken: &mut crate::agent::PortIndex,
        candidates: &[u16],
        spec: impl Fn(u16) -> PortSpec,
    ) -> Option<PortSpec> {
        for &port in candidates {
            let s = spec(port);
            if taken.conflict(&s).is_some() {
                continue;
            }
            match self.host.reserve_port(host_port(&s)) {
                Ok(()) => {
                    taken.insert(s);
                    return Some(s);
                }
                Err(HostError::PortInUse { .. }) => continue,
                Err(e) => {
                    warn!(error = %e, port, "reserving a candidate host port");
                    continue;
                }
            }
        }
        None
    }

    pub fn container_detach(&mut self, name: &str) -> Result<Container, AgentError> {
        let container = self.container(name)?.clone();
        let joined: Vec<&str> = self
            .state
            .containers
            .iter()
            .filter(|c| matches!(&c.mode, NetworkMode::Container { target } if target == name))
            .map(|c| c.name.as_str())
            .collect();
        if !joined.is_empty() {
            return Err(NetError::HasJoined {
                name: name.to_owned(),
                joined: joined.join(", "),
            }
            .into());
        }
        let owned: Vec<Publication> = self
            .state
            .publications
            .iter()
            .filter(|p| p.owner == Some(container.uid))
            .copied()
            .collect();
        let mut next = self.state.clone();
        next.containers.retain(|c| c.name != name);
        next.publications.retain(|p| p.owner != Some(container.uid));
        for ep in container.endpoints() {
            if let Some(n) = next.networks.iter_mut().find(|n| n.name == ep.network) {
                n.ipam.release(ep.ip);
            }
        }
        self.store.save(&next)?;
        self.uninstall_publications(&owned);
        let ports: Vec<HostPort> = owned.iter().map(|p| host_port(&p.spec)).collect();
        self.release_ports(&ports);
        for ep in container.endpoints() {
            self.destroy_endpoint(ep);
        }
        self.state = next;
        self.sync_open_ports();
        info!(name, "container detached");
        Ok(container)
    }

    pub fn container_list(&self) -> Vec<ContainerInfo> {
        let mut names: Vec<&str> = self
            .state
            .containers
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|n| self.container_inspect(n).ok())
            .collect()
    }

    pub fn container_inspect(&self, name: &str) -> Result<ContainerInfo, AgentError> {
        let container = self.container(name)?.clone();
        let (joined_to, endpoints) = match &container.mode {
            NetworkMode::Bridge { endpoints } => (None, endpoints.clone()),
            NetworkMode::Container { target } => (
                Some(target.clone()),
                self.container(target)
                    .map(|t| t.endpoints().to_vec())
                    .unwrap_or_default(),
            ),
        };
        let mut ports: Vec<PortSpec> = self
            .state
            .publications
            .iter()
            .filter(|p| p.owner == Some(container.uid))
            .map(|p| p.spec)
            .collect();
        ports.sort_by_key(|s| (s.container_port, s.proto, s.host_ip, s.host_port));
        Ok(ContainerInfo {
            container,
            joined_to,
            endpoints,
            ports,
        })
    }

    /// `netagent port NAME [CPORT[/PROTO]]`: the container's publications,
    /// optionally only those of one container port.
    pub fn container_ports(
        &self,
        name: &str,
        filter: Option<(u16, Option<Proto>)>,
    ) -> Result<Vec<PortSpec>, AgentError> {
        let info = self.container_inspect(name)?;
        let Some((port, proto)) = filter else {
            return Ok(info.ports);
        };
        let proto_ = proto.unwrap_or(Proto::Tcp);
        let hits: Vec<PortSpec> = info
            .ports
            .into_iter()
            .filter(|s| s.container_port == port && s.proto == proto_)
            .collect();
        if hits.is_empty() {
            return Err(NetError::NoPublicPort {
                port: format!("{port}/{proto_}"),
                container: name.to_owned(),
            }
            .into());
        }
        Ok(hits)
    }

    pub fn network_connect(
        &mut self,
        net_name: &str,
        name: &str,
        ip: Option<Ipv4Addr>,
        aliases: Vec<String>,
    ) -> Result<Endpoint, AgentError> {
        let container = self.container(name)?.clone();
        if matches!(container.mode, NetworkMode::Container { .. }) {
            return Err(NetError::JoinedConnect.into());
        }
        check_aliases(&aliases)?;
        let mut network = self.network(net_name)?.clone();
        if container.endpoints().iter().any(|e| e.network == net_name) {
            return Err(NetError::AlreadyConnected {
                container: name.to_owned(),
                network: net_name.to_owned(),
            }
            .into());
        }
        if network.name == DEFAULT_NETWORK {
            if ip.is_some() {
                return Err(NetError::StaticIpOnDefault.into());
            }
            if !aliases.is_empty() {
                return Err(NetError::AliasOnDefault.into());
            }
        }
        self.check_netns(&container)?;
        let default_route =
            gives_default_route(container.endpoints(), &network, &self.state.networks);
        let addr = network.ipam.allocate(ip)?;
        let ifname = Self::next_ifname(&container);
        let (endpoint, _) =
            self.create_endpoint(&container, &network, addr, ifname, default_route, aliases)?;
        let mut next = self.state.clone();
        replace_network(&mut next.networks, network);
        if let Some(c) = next.containers.iter_mut().find(|c| c.name == name)
            && let Some(eps) = c.endpoints_mut()
        {
            eps.push(endpoint.clone());
        }
        if let Err(e) = self.store.save(&next) {
            self.destroy_endpoint(&endpoint);
            return Err(e.into());
        }
        self.state = next;
        info!(container = name, network = net_name, ip = %addr, "container connected");
        Ok(endpoint)
    }

    pub fn network_disconnect(
        &mut self,
        net_name: &str,
        name: &str,
    ) -> Result<Endpoint, AgentError> {
        let container = self.container(name)?.clone();
        if matches!(container.mode, NetworkMode::Container { .. }) {
            return Err(NetError::JoinedConnect.into());
        }
        self.network(net_name)?;
        let endpoint = container
            .endpoints()
            .iter()
            .find(|e| e.network == net_name)
            .cloned()
            .ok_or_else(|| NetError::NotConnected {
                container: name.to_owned(),
                network: net_name.to_owned(),
            })?;
        // Publications through this endpoint move to another endpoint with
        // outside access, or the disconnect is refused.
        let owned: Vec<Publication> = self
            .state
            .publications
            .iter()
            .filter(|p| p.owner == Some(container.uid) && p.spec.container_ip == endpoint.ip)
            .copied()
            .collect();
        let new_target = container
            .endpoints()
            .iter()
            .filter(|e| e.network != net_name)
            .find(|e| self.network(&e.network).is_ok_and(|n| !n.internal))
            .map(|e| e.ip);
        let retargeted: Vec<Publication> = match (owned.is_empty(), new_target) {
            (true, _) => Vec::new(),
            (false, Some(ip)) => owned
                .iter()
                .map(|p| {
                    let mut p = *p;
                    p.spec.container_ip = ip;
                    p
                })
                .collect(),
            (false, None) => {
                return Err(NetError::LastPublishingNetwork {
                    container: name.to_owned(),
                    network: net_name.to_owned(),
                }
                .into());
            }
        };
        let mut next = self.state.clone();
        if let Some(c) = next.containers.iter_mut().find(|c| c.name == name)
            && let Some(eps) = c.endpoints_mut()
        {
            eps.retain(|e| e.network != net_name);
        }
        if let Some(n) = next.networks.iter_mut().find(|n| n.name == net_name) {
            n.ipam.release(endpoint.ip);
        }
        for p in next.publications.iter_mut() {
            if let Some(r) = retargeted.iter().find(|r| r.stats_slot == p.stats_slot) {
                *p = *r;
            }
        }
        self.store.save(&next)?;
        for p in &retargeted {
            if let Err(e) = self
                .datapath
                .upsert_publication(&pub_key(&p.spec), &pub_value(p))
            {
                self.restore_state_file();
                // Put back the ones already moved.
                for old in &owned {
                    let _ = self
                        .datapath
                        .upsert_publication(&pub_key(&old.spec), &pub_value(old));
                }
                return Err(e.into());
            }
        }
        self.destroy_endpoint(&endpoint);
        self.state = next;
        self.sync_open_ports();
        info!(
            container = name,
            network = net_name,
            "container disconnected"
        );
        Ok(endpoint)
    }

    /// Makes bridges, endpoints and endpoint map entries match the state
    /// (daemon start): recreates what is missing where the container's
    /// namespace still exists (the same namespace it was attached with),
    /// takes each endpoint's ifindex and MAC from the kernel rather than
    /// the state file (a crash may have left the file behind the kernel),
    /// and collects what the state does not name.
    ///
    /// Never gives up half-way: what fails for one item goes into the
    /// report's errors (and the log), and every other item is still done.
    /// Map entries of an endpoint that could not be checked are kept.
    pub fn reconcile_networks(&mut self) -> NetReconcileReport {
        let mut report = NetReconcileReport::default();
        let mut broken_nets = BTreeSet::new();
        for network in self.state.networks.clone() {
            match self.host.ensure_bridge(&bridge_config(&network)) {
                Ok(link) => {
                    self.bridges.insert(network.bridge.clone(), link);
                }
                Err(e) => {
                    report.errors.push(format!("network {}: {e}", network.name));
                    broken_nets.insert(network.name.clone());
                }
            }
        }
        let networks: BTreeMap<String, Network> = self
            .state
            .networks
            .iter()
            .map(|n| (n.name.clone(), n.clone()))
            .collect();
        let mut want = Wanted::default();
        let mut changed = false;
        let mut containers = self.state.containers.clone();
        for container in &mut containers {
            let snapshot = container.clone();
            let Some(endpoints) = container.endpoints_mut() else {
                continue;
            };
            for (i, ep) in endpoints.iter_mut().enumerate() {
                let what = format!("container {} endpoint {}", snapshot.name, ep.host_ifname);
                let Some(network) = networks.get(&ep.network) else {
                    report
                        .errors
                        .push(format!("{what}: no network {}", ep.network));
                    continue;
                };
                if broken_nets.contains(&network.name) {
                    report
                        .errors
                        .push(format!("{what}: its network's bridge is broken"));
                    want.keep(ep);
                    continue;
                }
                let (link, recreated) = match self.host.endpoint_link(
                    &ep.host_ifname,
                    &snapshot.netns,
                    &ep.ifname,
                ) {
                    Ok(Some(link)) => (link, false),
                    Ok(None) => match self.recreate_endpoint(&snapshot, i, ep, network) {
                        Ok(Some(link)) => {
                            report.recreated_endpoints += 1;
                            (link, true)
                        }
                        Ok(None) => {
                            warn!(container = %snapshot.name, iface = %ep.host_ifname,
                                "endpoint interface missing and its namespace is gone; detach the container");
                            report.missing_endpoints += 1;
                            continue;
                        }
                        Err(e) => {
                            report.errors.push(format!("{what}: recreating: {e}"));
                            report.missing_endpoints += 1;
                            continue;
                        }
                    },
                    Err(e) => {
                        report.errors.push(format!("{what}: {e}"));
                        want.keep(ep);
                        continue;
                    }
                };
                if link.host_ifindex != ep.host_ifindex || link.mac != ep.mac {
                    if !recreated {
                        info!(container = %snapshot.name, iface = %ep.host_ifname, mac = %link.mac,
                            ifindex = link.host_ifindex, "endpoint taken from the kernel");
                        report.corrected_endpoints += 1;
                    }
                    ep.host_ifindex = link.host_ifindex;
                    ep.mac = link.mac;
                    changed = true;
                }
                if let Err(e) = self.program_endpoint(ep, ep.host_ifindex, network) {
                    report.errors.push(format!("{what}: {e}"));
                }
                want.keep(ep);
            }
        }
        self.collect_strays(&want, &networks, &mut report);
        if changed {
            let mut next = self.state.clone();
            next.containers = containers;
            match self.store.save(&next) {
                Ok(()) => self.state = next,
                Err(e) => report.errors.push(e.to_string()),
            }
        }
        self.sync_open_ports();
        for e in &report.errors {
            error!(error = %e, "reconciling networks");
        }
        report
    }

    /// Recreates a missing endpoint if its container's namespace is still
    /// the one it was attached with; `Ok(None)` if the namespace is gone
    /// (or the path names another namespace now: never touched).
    fn recreate_endpoint(
        &mut self,
        container: &Container,
        index: usize,
        ep: &Endpoint,
        network: &Network,
    ) -> Result<Option<EndpointLink>, AgentError> {
        let Ok(id) = self.host.netns_id(&container.netns) else {
            return Ok(None);
        };
        if container.netns_id.is_some_and(|saved| saved != id) {
            warn!(container = %container.name, netns = %container.netns.display(),
                "the namespace path names another namespace now; not recreating there");
            return Ok(None);
        }
        let earlier = &container.endpoints()[..index];
        let route = gives_default_route(earlier, network, &self.state.networks);
        let link = self.host.add_endpoint(&endpoint_config(
            &container.netns,
            network,
            &ep.host_ifname,
            &ep.ifname,
            ep.ip,
            route,
        ))?;
        Ok(Some(link))
    }

    /// Removes endpoint map entries, program links and interfaces the
    /// state does not name; each failure is reported, the rest goes on.
    fn collect_strays(
        &mut self,
        want: &Wanted,
        networks: &BTreeMap<String, Network>,
        report: &mut NetReconcileReport,
    ) {
        match self.datapath.endpoint_ifaces() {
            Ok(ifaces) => {
                for (ifindex, _) in ifaces.into_iter().filter(|(i, _)| !want.ifaces.contains(i)) {
                    match self.datapath.remove_endpoint_iface(ifindex) {
                        Ok(()) => report.collected += 1,
                        Err(e) => report.errors.push(e.to_string()),
                    }
                }
            }
            Err(e) => report.errors.push(e.to_string()),
        }
        match self.datapath.endpoint_addrs() {
            Ok(addrs) => {
                for (addr, _) in addrs.into_iter().filter(|(a, _)| !want.addrs.contains(a)) {
                    match self.datapath.remove_endpoint_addr(addr) {
                        Ok(()) => report.collected += 1,
                        Err(e) => report.errors.push(e.to_string()),
                    }
                }
            }
            Err(e) => report.errors.push(e.to_string()),
        }
        match self.datapath.attached_endpoints() {
            Ok(links) => {
                for name in links.into_iter().filter(|n| !want.links.contains(n)) {
                    match self.datapath.detach_endpoint(&name) {
                        Ok(()) => report.collected += 1,
                        Err(e) => report.errors.push(e.to_string()),
                    }
                }
            }
            Err(e) => report.errors.push(e.to_string()),
        }
        let bridges: BTreeSet<&str> = networks.values().map(|n| n.bridge.as_str()).collect();
        match self.host.own_links() {
            Ok(names) => {
                for name in names {
                    let stray_veth = name.starts_with(VETH_PREFIX) && !want.links.contains(&name);
                    let stray_bridge =
                        name.starts_with(BRIDGE_PREFIX) && !bridges.contains(name.as_str());
                    let removed = if stray_veth {
                        self.host.remove_endpoint(&name)
                    } else if stray_bridge {
                        self.host.remove_bridge(&name)
                    } else {
                        continue;
                    };
                    match removed {
                        Ok(()) => report.collected += 1,
                        Err(e) => report.errors.push(e.to_string()),
                    }
                }
            }
            Err(e) => report.errors.push(e.to_string()),
        }
    }
}

/// What reconcile keeps: endpoint interfaces, addresses and program links.
#[derive(Default)]
struct Wanted {
    ifaces: BTreeSet<u32>,
    addrs: BTreeSet<Ipv4Addr>,
    links: BTreeSet<String>,
}

impl Wanted {
    fn keep(&mut self, ep: &Endpoint) {
        self.ifaces.insert(ep.host_ifindex);
        self.addrs.insert(ep.ip);
        self.links.insert(ep.host_ifname.clone());
    }
}

/// Refuses aliases that are not DNS names.
fn check_aliases(aliases: &[String]) -> Result<(), NetError> {
    match aliases.iter().find(|a| !valid_alias(a)) {
        Some(bad) => Err(NetError::InvalidAlias(bad.clone())),
        None => Ok(()),
    }
}

/// The one rule for a container's default route: it goes through its first
/// endpoint (in attach order) on a network with outside access. `earlier`
/// are the endpoints before the one on `network`.
fn gives_default_route(earlier: &[Endpoint], network: &Network, networks: &[Network]) -> bool {
    let outside = |name: &str| networks.iter().any(|n| n.name == name && !n.internal);
    !network.internal && !earlier.iter().any(|e| outside(&e.network))
}

/// What the host needs to make one endpoint's veth pair.
fn endpoint_config(
    netns: &std::path::Path,
    network: &Network,
    host_ifname: &str,
    ifname: &str,
    ip: Ipv4Addr,
    default_route: bool,
) -> EndpointConfig {
    EndpointConfig {
        host_ifname: host_ifname.to_owned(),
        bridge: network.bridge.clone(),
        netns: netns.to_owned(),
        ifname: ifname.to_owned(),
        ip,
        prefix_len: network.ipam.subnet.prefix_len(),
        default_gateway: default_route.then_some(network.ipam.gateway),
    }
}

fn bridge_config(network: &Network) -> BridgeConfig {
    BridgeConfig {
        name: network.bridge.clone(),
        gateway: network.ipam.gateway,
        prefix_len: network.ipam.subnet.prefix_len(),
    }
}

fn replace_network(networks: &mut [Network], network: Network) {
    if let Some(n) = networks.iter_mut().find(|n| n.name == network.name) {
        *n = network;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{datapath::fake::FakeDatapath, host::fake::FakeHost, state::StateStore};

    type TestAgent = Agent<FakeDatapath, FakeHost>;

    /// An agent with the default network and `neta` (10.1.0.0/24); the
    /// "network namespace" is this process's own (a real nsfs file).
    fn agent(dir: &tempfile::TempDir) -> TestAgent {
        let store = StateStore::open(dir.path()).unwrap();
        let mut a = Agent::new(store, FakeDatapath::default(), FakeHost::default()).unwrap();
        a.ensure_default_network().unwrap();
        a.network_create(create("neta", Some("10.1.0.0/24")))
            .unwrap();
        a
    }

    fn create(name: &str, subnet: Option<&str>) -> NetworkCreate {
        NetworkCreate {
            name: name.into(),
            subnet: subnet.map(|s| s.parse().unwrap()),
            gateway: None,
            ip_range: None,
            internal: false,
            icc: true,
            driver: None,
            options: Vec::new(),
        }
    }

    fn attach(name: &str, network: &str, publish: &[&str]) -> ContainerAttach {
        ContainerAttach {
            name: name.into(),
            netns: Some(format!("/run/netns/{name}").into()),
            network: Some(network.into()),
            publish: publish.iter().map(|s| (*s).to_owned()).collect(),
            ..ContainerAttach::default()
        }
    }

    /// `attach` with namespace number `n` (the fake host gives each
    /// path a namespace of its own).
    fn attach_as(name: &str, network: &str, publish: &[&str], n: usize) -> ContainerAttach {
        ContainerAttach {
            netns: Some(format!("/run/netns/ns{n}").into()),
            ..attach(name, network, publish)
        }
    }

    fn err(r: Result<impl std::fmt::Debug, AgentError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn interface_prefixes_are_ours() {
        for p in [VETH_PREFIX, BRIDGE_PREFIX, DEFAULT_BRIDGE] {
            assert!(p.starts_with(crate::host::IFACE_PREFIX), "{p}");
        }
        // Names stay within IFNAMSIZ - 1.
        assert!(format!("{VETH_PREFIX}{}", &random_id()[..11]).len() <= 15);
        assert!(format!("{BRIDGE_PREFIX}-{}", &random_id()[..9]).len() <= 15);
    }

    #[test]
    fn the_default_network_exists_and_new_subnets_avoid_routes_and_networks() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let host = FakeHost {
            routes: vec![("172.17.0.0/16".parse().unwrap(), "docker0 route".into())],
            ..FakeHost::default()
        };
        let mut a = Agent::new(store, FakeDatapath::default(), host).unwrap();
        a.ensure_default_network().unwrap();
        a.ensure_default_network().unwrap();
        let nets = a.network_list();
        assert_eq!(nets.len(), 1);
        assert_eq!(nets[0].name, "bridge");
        assert_eq!(nets[0].bridge, DEFAULT_BRIDGE);
        assert_eq!(nets[0].ipam.subnet.to_string(), "172.18.0.0/16");
        let b = a.network_create(create("b", None)).unwrap();
        assert_eq!(b.ipam.subnet.to_string(), "172.19.0.0/16");
        assert_ne!(b.net_id, nets[0].net_id);
        assert!(a.host.bridges.contains_key(&b.bridge));
        assert!(err(a.network_create(create("c", Some("172.19.5.0/24")))).contains("overlaps"));
        assert_eq!(
            err(a.network_create(create("b", None))),
            "network with name b already exists"
        );
        assert!(err(a.network_create(create("bad name", None))).contains("invalid network name"));
        let mut other = create("d", None);
        other.driver = Some("overlay".into());
        assert!(err(a.network_create(other)).contains("plugin \"overlay\" not found"));
        assert_eq!(
            err(a.network_rm("bridge")),
            "bridge is a pre-defined network and cannot be removed"
        );
    }

    #[test]
    fn attach_makes_an_endpoint_with_policy_entries_and_publications() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = agent(&dir);
        let info = a
            .container_attach(attach("web", "neta", &["8080:80", "127.0.0.1::53/udp"]))
            .unwrap();
        let ep = &info.endpoints[0];
        assert_eq!(ep.ip.to_string(), "10.1.0.2");
        assert_eq!(ep.ifname, "eth0");
        assert!(a.datapath.attached.contains(&ep.host_ifname));
        let policy = a.network("neta").unwrap().policy();
        let addr = a.datapath.endpoint_addrs[&ep.ip];
        assert_eq!(addr.net, policy);
        assert_eq!(addr.host_ifindex, ep.host_ifindex);
        assert_eq!(addr.mac, [2, 0, 0, 0, 0, 1]);
        let bridge = a.bridges[&a.network("neta").unwrap().bridge];
        assert_eq!(addr.gw_mac, bridge.mac);
        let iface = a.datapath.endpoint_ifaces[&ep.host_ifindex];
        assert_eq!((iface.net, iface.bridge_ifindex), (policy, bridge.ifindex));
        let cfg = &a.host.endpoints[&ep.host_ifname];
        assert_eq!(cfg.default_gateway, Some("10.1.0.1".parse().unwrap()));
        let ports: Vec<String> = info.ports.iter().map(ToString::to_string).collect();
        assert_eq!(
            ports,
            [
                "127.0.0.1:32768->10.1.0.2:53/udp",
                "0.0.0.0:8080->10.1.0.2:80/tcp"
            ]
        );
        assert_eq!(a.datapath.publications.len(), 2);
        assert_eq!(a.host.reserved.len(), 2);
        // `port web 80` and a miss in Docker's words.
        let p80 = a.container_ports("web", Some((80, None))).unwrap();
        assert_eq!(p80[0].host_port, 8080);
        assert_eq!(
            err(a.container_ports("web", Some((81, None)))),
            "No public port '81/tcp' published for web"
        );
        // The state survives a reopen.
        drop(a);
        let store = StateStore::open(dir.path()).unwrap();
        let b = Agent::new(store, FakeDatapath::default(), FakeHost::default()).unwrap();
        assert_eq!(b.container_inspect("web").unwrap().ports.len(), 2);
    }

    #[test]
    fn names_are_unique_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = agent(&dir);
        let first = a.container_attach(attach("web", "neta", &[])).unwrap();
        let e = err(a.container_attach(attach_as("web", "neta", &[], 1)));
        assert!(
            e.starts_with("Conflict. The container name \"/web\" is already in use by container")
                && e.contains(&first.container.id),
            "{e}"
        );
        assert!(
            err(a.container_attach(attach_as("-x", "neta", &[], 1)))
                .starts_with("Invalid container name (-x)")
        );
        assert_eq!(
            err(a.container_attach(attach_as("db", "nope", &[], 1))),
            "network nope not found"
        );
        // The same namespace twice (not joined) is refused.
        let mut twice = attach("db", "neta", &[]);
        twice.netns = Some("/run/netns/web".into());
        assert!(err(a.container_attach(twice)).contains("use --network container:web"));
        let mut none = attach("db", "neta", &[]);
        none.netns = None;
        assert_eq!(
            err(a.container_attach(none)),
            "--netns is required (the container's network namespace)"
        );
        let mut gone = attach("db", "neta", &[]);
        gone.netns = Some("/nonexistent/ns".into());
        assert!(err(a.container_attach(gone)).starts_with("network namespace /nonexistent/ns: "));
        // A joined container's --netns must be its target's namespace.
        let mut other = attach("db", "container:web", &[]);
        other.netns = Some("/run/netns/elsewhere".into());
        assert!(err(a.container_attach(other)).contains("is not the one of container web"));
        a.container_detach("web").unwrap();
        a.container_attach(attach("web", "neta", &[])).unwrap();
    }

    #[test]
    fn every_port_form_allocates_as_docker_does() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = agent(&dir);
        a.host.ephemeral = Some((40000, 40003));
        // A host process holds 8000 and 40000.
        for port in [8000, 40000] {
            a.host.foreign.insert(HostPort {
                ip: Ipv4Addr::UNSPECIFIED,
                port,
                proto: Proto::Tcp,
            });
        }
        let mut req = attach(
            "web",
            "neta",
            &[
                "8000-8002:80",
                "9000-9001:90-91/udp",
                "100",
                "10.9.9.9::101",
            ],
        );
        req.expose = vec!["7000".into(), "90/udp".into()];
        req.publish_all = true;
        let info = a.container_attach(req).unwrap();
        let ports: Vec<String> = info.ports.iter().map(ToString::to_string).collect();
        assert_eq!(
            ports,
            [
                "0.0.0.0:8001->10.1.0.2:80/tcp",
                "0.0.0.0:9000->10.1.0.2:90/udp",
                "0.0.0.0:9001->10.1.0.2:91/udp",
                "0.0.0.0:40001->10.1.0.2:100/tcp",
                "10.9.9.9:40002->10.1.0.2:101/tcp",
                "0.0.0.0:40003->10.1.0.2:7000/tcp",
            ]
        );
        // The ephemeral range is now used up on 0.0.0.0/tcp.
        let e = err(a.container_attach(attach_as("db", "neta", &["5432"], 1)));
        assert!(
            e.starts_with("driver failed programming external connectivity on endpoint db (")
                && e.ends_with(
                    "all ports are allocated (no free tcp port in 40000-40003 on 0.0.0.0)"
                ),
            "{e}"
        );
        // A fixed port that is published, and one a host process holds.
        let e = err(a.container_attach(attach_as("db", "neta", &["8001:5432"], 1)));
        assert!(
            e.contains("Bind for 0.0.0.0:8001 failed: port is already allocated"),
            "{e}"
        );
        let e = err(a.container_attach(attach_as("db", "neta", &["8000:5432"], 1)));
        assert!(
            e.ends_with("failed to bind host port 0.0.0.0:8000/tcp: address already in use"),
            "{e}"
        );
        // None of the failures left anything behind.
        assert_eq!(a.state.containers.len(), 1);
        assert_eq!(a.host.endpoints.len(), 1);
        assert_eq!(a.datapath.endpoint_addrs.len(), 1);
        assert_eq!(a.host.reserved.len(), 6);
        assert_eq!(a.network("neta").unwrap().ipam.allocated.len(), 1);
        // Detach frees everything.
        a.container_detach("web").unwrap();
        assert!(a.host.reserved.is_empty() && a.datapath.publications.is_empty());
        assert!(a.host.endpoints.is_empty() && a.datapath.attached.is_empty());
        assert!(a.datapath.endpoint_addrs.is_empty() && a.datapath.endpoint_ifaces.is_empty());
        assert!(a.network("neta").unwrap().ipam.allocated.is_empty());
    }

    #[test]
    fn a_failed_kernel_step_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = agent(&dir);
        let before = std::fs::read(dir.path().join("state.json")).unwrap();
        a.host.fail_endpoints = true;
        assert!(
            a.container_attach(attach("web", "neta", &["8080:80"]))
                .is_err()
        );
        a.host.fail_endpoints = false;
        a.datapath.fail_writes = true;
        assert!(
            a.container_attach(attach("web", "neta", &["8080:80"]))
                .is_err()
        );
        a.datapath.fail_writes = false;
        assert_eq!(
            std::fs::read(dir.path().join("state.json")).unwrap(),
            before
        );
        assert!(a.host.endpoints.is_empty() && a.host.reserved.is_empty());
        assert!(a.datapath.attached.is_empty() && a.datapath.publications.is_empty());
        assert!(a.network("neta").unwrap().ipam.allocated.is_empty());
        a.container_attach(attach("web", "neta", &["8080:80"]))
            .unwrap();
    }

    #[test]
    fn joined_containers_share_and_refuse_what_docker_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = agent(&dir);
        a.container_attach(attach("web", "neta", &["8080:80"]))
            .unwrap();
        let mut side = attach("side", "container:web", &[]);
        side.netns = None;
        let info = a.container_attach(side.clone()).unwrap();
        assert_eq!(info.joined_to.as_deref(), Some("web"));
        assert_eq!(
            info.endpoints,
            a.container_inspect("web").unwrap().endpoints
        );
        assert!(info.ports.is_empty());
        assert_eq!(a.host.endpoints.len(), 1, "no new interface");
        // Joining a joined container joins the root.
        let mut third = attach("third", "container:side", &[]);
        third.netns = Some("/run/netns/web".into());
        assert_eq!(
            a.container_attach(third).unwrap().joined_to.as_deref(),
            Some("web")
        );
        let mut bad = attach("xx", "container:web", &["80"]);
        bad.netns = None;
        assert_eq!(
            err(a.container_attach(bad)),
            "conflicting options: port publishing and the container type network mode"
        );
        assert!(
            err(a.network_connect("bridge", "side", None, vec![]))
                .starts_with("container sharing network namespace")
        );
        assert!(
            err(a.container_detach("web"))
                .contains("has containers joined to its network stack (side, third)")
        );
        a.container_detach("side").unwrap();
        a.container_detach("third").unwrap();
        a.container_detach("web").unwrap();
        assert!(a.host.endpoints.is_empty());
    }

    #[test]
    fn connect_disconnect_and_network_removal() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = agent(&dir);
        a.network_create(create("netb", Some("10.2.0.0/24")))
            .unwrap();
        a.container_attach(attach("web", "neta", &["8080:80"]))
            .unwrap();
        let ep = a
            .network_connect(
                "netb",
                "web",
                Some("10.2.0.9".parse().unwrap()),
                vec!["w".into()],
            )
            .unwrap();
        assert_eq!(
            (ep.ifname.as_str(), ep.ip.to_string().as_str()),
            ("eth1", "10.2.0.9")
        );
        assert_eq!(
            a.host.endpoints[&ep.host_ifname].default_gateway, None,
            "one default route"
        );
        assert!(
            err(a.network_connect("netb", "web", None, vec![]))
                .contains("already exists in network netb")
        );
        assert!(
            err(a.network_connect("bridge", "web", Some("172.17.0.9".parse().unwrap()), vec![]))
                .contains("user specified IP address is supported on user defined networks only")
        );
        let e = err(a.network_rm("netb"));
        assert!(
            e.starts_with("error while removing network: network netb id ")
                && e.ends_with("has active endpoints (web)"),
            "{e}"
        );
        // Disconnecting the publishing network moves the ports to netb.
        a.network_disconnect("neta", "web").unwrap();
        let p = a.container_ports("web", None).unwrap();
        assert_eq!(p[0].container_ip.to_string(), "10.2.0.9");
        let value = a.datapath.publications.values().next().unwrap();
        assert_eq!(value.addr_be.to_ne_bytes(), [10, 2, 0, 9]);
        // The last one with outside access cannot go while it publishes.
        assert!(
            err(a.network_disconnect("netb", "web"))
                .contains("its only network with outside access")
        );
        assert!(
            err(a.network_disconnect("neta", "web")).contains("is not connected to network neta")
        );
        a.container_detach("web").unwrap();
        let removed = a.network_rm("netb").unwrap();
        assert!(!a.host.bridges.contains_key(&removed.bridge));
    }

    #[test]
    fn internal_networks_refuse_publishing_and_get_no_default_route() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = agent(&dir);
        let mut req = create("priv", Some("10.3.0.0/24"));
        req.internal = true;
        req.icc = false;
        let net = a.network_create(req).unwrap();
        let policy = net.policy();
        assert_eq!(
            policy.flags,
            datapath_common::NET_F_INTERNAL | datapath_common::NET_F_NO_ICC
        );
        assert_eq!(policy.subnet_be.to_ne_bytes(), [10, 3, 0, 0]);
        assert_eq!(policy.mask_be.to_ne_bytes(), [255, 255, 255, 0]);
        assert!(
            err(a.container_attach(attach("db", "priv", &["5432"])))
                .contains("network priv is internal")
        );
        let info = a.container_attach(attach("db", "priv", &[])).unwrap();
        assert_eq!(
            a.host.endpoints[&info.endpoints[0].host_ifname].default_gateway,
            None
        );
        // The first network with outside access gives the route, at connect
        // time and when reconcile rebuilds the interface alike.
        let eth1 = a.network_connect("neta", "db", None, vec![]).unwrap();
        let gw = Some("10.1.0.1".parse().unwrap());
        assert_eq!(a.host.endpoints[&eth1.host_ifname].default_gateway, gw);
        a.host.endpoints.clear();
        assert_eq!(a.reconcile_networks().recreated_endpoints, 2);
        assert_eq!(a.host.endpoints[&eth1.host_ifname].default_gateway, gw);
        assert_eq!(
            a.host.endpoints[&info.endpoints[0].host_ifname].default_gateway,
            None
        );
    }

    #[test]
    fn reconcile_collects_strays_and_recreates_missing_endpoints() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = agent(&dir);
        a.container_attach(attach("web", "neta", &[])).unwrap();
        // Strays: an interface, a map entry and a link nobody asked for;
        // and the container's veth vanished.
        a.host.endpoints.clear();
        a.host.endpoints.insert(
            "na-vstray".into(),
            EndpointConfig {
                host_ifname: "na-vstray".into(),
                bridge: "x".into(),
                netns: "/x".into(),
                ifname: "eth0".into(),
                ip: "10.9.9.9".parse().unwrap(),
                prefix_len: 24,
                default_gateway: None,
            },
        );
        a.datapath
            .endpoint_addrs
            .insert("10.9.9.9".parse().unwrap(), Default::default());
        a.datapath.attached.insert("na-vgone".into());
        a.host.bridges.insert(
            "na-br-stray".into(),
            BridgeConfig {
                name: "na-br-stray".into(),
                gateway: "10.8.0.1".parse().unwrap(),
                prefix_len: 24,
            },
        );
        let report = a.reconcile_networks();
        // The container's namespace still exists, so its veth is rebuilt.
        assert_eq!(report.recreated_endpoints, 1);
        assert!(!a.host.endpoints.contains_key("na-vstray"));
        assert!(!a.host.bridges.contains_key("na-br-stray"));
        assert!(!a.datapath.attached.contains("na-vgone"));
        assert!(
            !a.datapath
                .endpoint_addrs
                .contains_key(&"10.9.9.9".parse().unwrap())
        );
        assert_eq!(a.host.endpoints.len(), 1);
        assert_eq!(a.datapath.endpoint_addrs.len(), 1);
        assert!(
            a.datapath
                .attached
                .contains(a.host.endpoints.keys().next().unwrap())
        );
        // A second pass finds nothing to do.
        assert_eq!(a.reconcile_networks(), NetReconcileReport::default());
    }

    #[test]
    fn refused_input_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = agent(&dir);
        let before = std::fs::read(dir.path().join("state.json")).unwrap();
        for bad in [
            "127.0.0.0/16",
            "224.0.0.0/8",
            "169.254.0.0/16",
            "0.0.0.0/8",
            "240.0.0.0/8",
        ] {
            let e = err(a.network_create(create("bad", Some(bad))));
            assert!(
                e.contains("which is never a container network"),
                "{bad}: {e}"
            );
        }
        let long = "n".repeat(64);
        assert!(err(a.network_create(create(&long, None))).contains("at most 63"));
        assert!(err(a.container_attach(attach(&long, "neta", &[]))).contains("at most 63"));
        let mut req = attach("web", "neta", &[]);
        req.aliases = vec!["ok".into(), "not ok".into()];
        assert!(err(a.container_attach(req)).contains("invalid alias \"not ok\""));
        let mut req = attach("web", "neta", &[]);
        req.netns = Some("/proc/self/ns/net".into());
        assert!(err(a.container_attach(req)).contains("is the host's own"));
        let mut req = create("opt", None);
        req.options = vec!["com.docker.network.bridge.gateway_mode_ipv4=nat-unprotected".into()];
        assert!(err(a.network_create(req)).contains("unsupported gateway mode"));
        let mut req = create("opt", None);
        req.options = vec!["com.docker.network.bridge.enable_icc=false".into()];
        assert!(err(a.network_create(req)).contains("is not supported"));
        assert_eq!(
            std::fs::read(dir.path().join("state.json")).unwrap(),
            before
        );
        assert_eq!(a.host.bridges.len(), 2, "no bridge left behind");
        assert!(a.host.endpoints.is_empty());
    }

    #[test]
    fn publications_by_address_belong_to_their_container() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = agent(&dir);
        let mut internal = create("priv", Some("10.2.0.0/24"));
        internal.internal = true;
        a.network_create(internal).unwrap();
        let web = a.container_attach(attach("web", "neta", &[])).unwrap();
        let db = a.container_attach(attach_as("db", "priv", &[], 2)).unwrap();
        let (web_ip, db_ip) = (web.endpoints[0].ip, db.endpoints[0].ip);
        let e = err(a.publish(format!("5432->{db_ip}:5432").parse().unwrap()));
        assert!(e.contains("network priv is internal"), "{e}");
        let p = a
            .publish(format!("8080->{web_ip}:80").parse().unwrap())
            .unwrap();
        assert_eq!(p.owner, Some(web.container.uid));
        let stranger = a.publish("9090->10.1.0.200:80".parse().unwrap()).unwrap();
        assert_eq!(stranger.owner, None, "no container has that address");
        assert_eq!(a.container_ports("web", None).unwrap(), vec![p.spec]);
        a.container_detach("web").unwrap();
        assert_eq!(a.list(None), vec![stranger], "removed with its container");
        assert_eq!(a.datapath.publications.len(), 1);
    }

    #[test]
    fn a_container_veth_goes_before_its_map_entries() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = agent(&dir);
        let info = a.container_attach(attach("web", "neta", &[])).unwrap();
        let veth = info.endpoints[0].host_ifname.clone();
        a.container_detach("web").unwrap();
        let (veth_gone, _) = a
            .host
            .removals
            .iter()
            .find(|(_, what)| *what == format!("veth {veth}"))
            .unwrap();
        assert!(!a.datapath.removals.is_empty());
        for (seq, what) in &a.datapath.removals {
            assert!(veth_gone < seq, "{what} removed before the veth");
        }
    }

    #[test]
    fn reconcile_takes_mac_and_ifindex_from_the_kernel() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = agent(&dir);
        let info = a.container_attach(attach("web", "neta", &[])).unwrap();
        let ep = info.endpoints[0].clone();
        // A crash left the state behind the kernel: the veth was rebuilt
        // with a new MAC and index the state never heard of.
        a.host
            .kernel_macs
            .insert(ep.host_ifname.clone(), "02:00:00:00:00:99".into());
        a.host.ifindexes.insert(ep.host_ifname.clone(), 777);
        let report = a.reconcile_networks();
        assert_eq!(report.corrected_endpoints, 1, "{report:?}");
        assert!(report.errors.is_empty(), "{report:?}");
        let entry = a.datapath.endpoint_addrs[&ep.ip];
        assert_eq!(entry.mac, [2, 0, 0, 0, 0, 0x99]);
        assert_eq!(entry.host_ifindex, 777);
        assert!(a.datapath.endpoint_ifaces.contains_key(&777));
        assert!(!a.datapath.endpoint_ifaces.contains_key(&ep.host_ifindex));
        let saved = a.container_inspect("web").unwrap().endpoints[0].clone();
        assert_eq!(
            (saved.mac.as_str(), saved.host_ifindex),
            ("02:00:00:00:00:99", 777)
        );
        assert_eq!(a.reconcile_networks().corrected_endpoints, 0);
    }

    #[test]
    fn a_reused_namespace_path_is_never_taken_for_the_container() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = agent(&dir);
        let info = a.container_attach(attach("web", "neta", &[])).unwrap();
        let ep = info.endpoints[0].clone();
        // The namespace died (taking the veth) and its path now names
        // another namespace.
        a.host.endpoints.remove(&ep.host_ifname);
        a.host.replaced_netns.insert(
            "/run/netns/web".into(),
            crate::host::NetnsId { dev: 9, ino: 9 },
        );
        let report = a.reconcile_networks();
        assert_eq!(
            (report.recreated_endpoints, report.missing_endpoints),
            (0, 1),
            "{report:?}"
        );
        assert!(
            a.host.endpoints.is_empty(),
            "recreated in a stranger's namespace"
        );
        let e = err(a.network_connect("bridge", "web", None, Vec::new()));
        assert!(e.contains("no longer container web's"), "{e}");
        a.container_detach("web").unwrap();
    }

    #[test]
    fn reconcile_reports_what_fails_and_does_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = agent(&dir);
        a.network_create(create("netb", Some("10.3.0.0/24")))
            .unwrap();
        let ok = a.container_attach(attach("ok", "neta", &[])).unwrap();
        let broken = a
            .container_attach(attach_as("broken", "neta", &[], 2))
            .unwrap();
        let orphan = a
            .container_attach(attach_as("orphan", "netb", &[], 3))
            .unwrap();
        // One endpoint vanished and cannot be rebuilt, one network's
        // bridge cannot be made, and listing links fails.
        let broken_if = broken.endpoints[0].host_ifname.clone();
        a.host.endpoints.remove(&broken_if);
        a.host.fail_endpoint_names.insert(broken_if.clone());
        let netb_bridge = a.network_inspect("netb").unwrap().network.bridge;
        a.host.fail_bridges.insert(netb_bridge);
        a.host.fail_dumps = true;
        a.datapath.endpoint_ifaces.clear();
        a.datapath.endpoint_addrs.clear();
        let report = a.reconcile_networks();
        assert_eq!(report.errors.len(), 4, "{report:?}");
        // The healthy endpoint is programmed, the one on the broken bridge
        // keeps what it had.
        assert!(a.datapath.endpoint_addrs.contains_key(&ok.endpoints[0].ip));
        assert!(
            !a.datapath
                .endpoint_addrs
                .contains_key(&orphan.endpoints[0].ip)
        );
        // The broken container can still be detached.
        a.host.fail_dumps = false;
        a.host.fail_bridges.clear();
        a.container_detach("broken").unwrap();
        a.container_detach("orphan").unwrap();
        // A full endpoint map is reported too, per endpoint.
        a.datapath.endpoint_ifaces.clear();
        a.datapath.endpoint_capacity = Some(0);
        let report = a.reconcile_networks();
        assert_eq!(report.errors.len(), 1, "{report:?}");
        assert!(report.errors[0].contains("endpoint map full"), "{report:?}");
    }
}
