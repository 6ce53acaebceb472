//! Containers: `netagent container attach/detach/ls/inspect`, `port NAME`,
//! and `network connect/disconnect`. Orchestration only: each operation
//! checks its request, then runs its kernel steps (endpoints, host ports,
//! publications, routes) in one transaction (`journal`).

use std::{net::Ipv4Addr, path::PathBuf};

use tracing::info;

use crate::{
    agent::{Agent, Change},
    api::{ContainerAttach, ContainerInfo},
    datapath::Datapath,
    endpoints::{self, gateway_of, has_outside_access},
    error::{AgentError, NetError},
    host::Host,
    journal::{Journal, Step},
    lookup::{self, NetworkRef},
    model::{
        Container, DEFAULT_NETWORK, Endpoint, EndpointIps, Network, NetworkMode, random_id,
        valid_alias, valid_container_name,
    },
    names,
    portmap::{ExposedPorts, PortMapping},
    spec::{PortSpec, Proto},
    state::{DesiredState, Publication},
};

mod connect;
#[cfg(test)]
mod tests;

/// Docker's warning when `-p`/`-P` meet `--network host`.
pub const HOST_PORTS_WARNING: &str = "Published ports are discarded when using host network mode";
/// The same for `--network none` (netagent's: Docker drops them silently).
pub const NONE_PORTS_WARNING: &str = "Published ports are discarded when using network none";

/// What `container attach` answers: the container, and warnings (Docker
/// prints them and goes on).
#[derive(Debug)]
pub struct Attached {
    pub info: ContainerInfo,
    pub warnings: Vec<String>,
}

/// Refuses aliases that are not DNS names.
fn check_aliases(aliases: &[String]) -> Result<(), NetError> {
    match aliases.iter().find(|a| !valid_alias(a)) {
        Some(bad) => Err(NetError::InvalidAlias(bad.clone())),
        None => Ok(()),
    }
}

/// Refuses an interface name the kernel would refuse, and a MAC address
/// that is not a unicast one.
fn check_interface(ifname: Option<&str>, mac: Option<&str>) -> Result<(), NetError> {
    if let Some(name) = ifname.filter(|n| !crate::model::valid_ifname(n)) {
        return Err(NetError::InvalidIfname(name.to_owned()));
    }
    if let Some(mac) = mac.filter(|m| crate::model::parse_unicast_mac(m).is_none()) {
        return Err(NetError::InvalidMac(mac.to_owned()));
    }
    Ok(())
}

/// `--env`, `--dns-search` and `--dns-option` values, checked.
fn check_env_and_dns(req: &ContainerAttach) -> Result<crate::model::DnsSettings, NetError> {
    if let Some(bad) = req
        .env
        .iter()
        .find(|v| v.split_once('=').is_none_or(|(name, _)| name.is_empty()))
    {
        return Err(NetError::InvalidEnv(bad.clone()));
    }
    // `.` is Docker's "no search domains" (the host's are not used).
    if let Some(bad) = req
        .dns_search
        .iter()
        .find(|d| *d != "." && !valid_alias(d.trim_end_matches('.')))
    {
        return Err(NetError::InvalidDnsSearch(bad.clone()));
    }
    if let Some(bad) = req
        .dns_options
        .iter()
        .find(|o| o.is_empty() || o.contains(char::is_whitespace))
    {
        return Err(NetError::InvalidDnsOption(bad.clone()));
    }
    Ok(crate::model::DnsSettings {
        servers: req.dns.clone(),
        search: req.dns_search.clone(),
        options: req.dns_options.clone(),
    })
}

/// How a new endpoint is made, beyond its network and addresses.
struct EndpointOptions<'a> {
    /// The name inside the container.
    ifname: &'a str,
    /// A MAC address asked for (checked by [`check_interface`]).
    mac: Option<&'a str>,
    /// Whether the container's default route goes through it.
    default_route: bool,
    aliases: Vec<String>,
    /// The CNI network of an endpoint netagent-cni asked for.
    cni_network: Option<String>,
}

/// Docker's refusals of a static IP or aliases on a pre-defined network
/// (`bridge`, `host`, `none`).
fn check_user_defined(
    network: &str,
    ip: Option<Ipv4Addr>,
    aliases: &[String],
) -> Result<(), NetError> {
    if crate::model::is_predefined(network) {
        if ip.is_some() {
            return Err(NetError::StaticIpOnDefault);
        }
        if !aliases.is_empty() {
            return Err(NetError::AliasOnDefault);
        }
    }
    Ok(())
}

impl<D: Datapath, H: Host> Agent<D, H> {
    /// `container attach`: checks the request, then attaches by network
    /// mode (a bridge network, `container:OTHER`, `host` or `none`).
    pub fn container_attach(&mut self, req: ContainerAttach) -> Result<Attached, AgentError> {
        let mut container = self.new_container(&req)?;
        let network = req.network.as_deref().unwrap_or(DEFAULT_NETWORK);
        if let Some(target) = network.strip_prefix("container:") {
            return self.attach_joined(container, &req, target);
        }
        let network = lookup::network(&self.state, network)?;
        check_user_defined(network.name(), req.ip, &req.aliases)?;
        match network {
            NetworkRef::Host => self.attach_host(container, &req),
            NetworkRef::None => {
                container.mode = NetworkMode::None;
                if req.netns.is_some() {
                    container.netns_id = Some(self.own_netns_of(&container)?);
                }
                let warnings = self.discard_ports(&mut container, NONE_PORTS_WARNING);
                self.commit_container(container, warnings)
            }
            NetworkRef::Bridge(n) => {
                let network = n.clone();
                self.attach_bridged(container, &req, network)
            }
        }
    }

    /// The container `req` describes, checked: its name (or a generated
    /// one), aliases, `-p` and `--expose` values; a bridged container
    /// until its mode says otherwise.
    pub(crate) fn new_container(&self, req: &ContainerAttach) -> Result<Container, AgentError> {
        let name = match req.name.clone() {
            Some(name) => name,
            None => names::generate_unique(|n| lookup::container(&self.state, n).is_ok()),
        };
        if !valid_container_name(&name) {
            return Err(NetError::InvalidContainerName(name).into());
        }
        check_aliases(&req.aliases)?;
        check_interface(req.ifname.as_deref(), req.mac.as_deref())?;
        let dns = check_env_and_dns(req)?;
        if let Some(bad) = req.hostname.as_ref().filter(|h| !valid_alias(h)) {
            return Err(NetError::InvalidHostname(bad.clone()).into());
        }
        for link in &req.links {
            crate::links::parse(link)?;
        }
        if let Some(existing) = self.state.containers.iter().find(|c| c.name == name) {
            return Err(NetError::NameInUse {
                name,
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
        exposed.extend(mappings.iter().map(|m| ExposedPorts {
            ports: m.container,
            proto: m.proto,
        }));
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
        Ok(Container {
            name,
            id: random_id(),
            uid,
            netns: req.netns.clone().unwrap_or_default(),
            netns_id: None,
            mode: NetworkMode::Bridge {
                endpoints: Vec::new(),
            },
            cni_id: req.cni.as_ref().map(|k| k.container_id.clone()),
            gateway_network: None,
            exposed,
            port_mappings: mappings,
            publish_all: req.publish_all,
            env: req.env.clone(),
            dns,
            links: Vec::new(),
            hostname: req.hostname.clone(),
        })
    }

    /// The links `req` asks for, made for `container` on `network`: the
    /// linked container must be attached there (Docker: running); on the
    /// default bridge each link gets its variables now.
    fn make_links(
        &self,
        container: &Container,
        req: &ContainerAttach,
        network: &str,
    ) -> Result<Vec<crate::model::Link>, AgentError> {
        let mut links: Vec<crate::model::Link> = Vec::new();
        for value in &req.links {
            let (name, alias) = crate::links::parse(value)?;
            let source = lookup::container(&self.state, &name)?;
            let Some(ep) = source.endpoints().iter().find(|e| e.network == network) else {
                if network == DEFAULT_NETWORK && !source.endpoints().is_empty() {
                    return Err(NetError::LinkNotOnDefault(source.name.clone()).into());
                }
                return Err(NetError::LinkNotRunning {
                    name: source.name.clone(),
                    alias,
                }
                .into());
            };
            let env = if crate::model::resolves_names(network) {
                Vec::new()
            } else {
                crate::links::env(&container.name, &alias, ep.ip, &source.exposed, &source.env)
            };
            links.retain(|l| l.alias != alias);
            links.push(crate::model::Link {
                name: source.name.clone(),
                alias,
                network: network.to_owned(),
                ips: std::iter::once(std::net::IpAddr::V4(ep.ip))
                    .chain(ep.ip6.map(std::net::IpAddr::V6))
                    .collect(),
                env,
            });
        }
        Ok(links)
    }

    /// A container on a bridge network: its endpoint, host ports and
    /// publications, in one transaction.
    fn attach_bridged(
        &mut self,
        mut container: Container,
        req: &ContainerAttach,
        network: Network,
    ) -> Result<Attached, AgentError> {
        container.netns_id = Some(self.own_netns_of(&container)?);
        let publishes = !container.port_mappings.is_empty()
            || (container.publish_all && !container.exposed.is_empty());
        if publishes && network.internal {
            return Err(NetError::InternalPublish {
                container: container.name,
                network: network.name,
            }
            .into());
        }
        if has_outside_access(&network.name, &self.state.networks) {
            container.gateway_network = Some(network.name.clone());
        }
        container.links = self.make_links(&container, req, &network.name)?;
        let info = self.transaction(|agent, journal| {
            let mut network = network;
            let ips = network.allocate(req.ip, req.ip6)?;
            let default_route = container.gateway_network.is_some();
            let endpoint = agent.create_endpoint(
                &container,
                &network,
                ips,
                EndpointOptions {
                    ifname: req.ifname.as_deref().unwrap_or("eth0"),
                    mac: req.mac.as_deref(),
                    default_route,
                    aliases: req.aliases.clone(),
                    cni_network: req.cni.as_ref().map(|k| k.network.clone()),
                },
                journal,
            )?;
            let published = agent.publish_ports(&container, ips, journal).map_err(|e| {
                AgentError::Connectivity {
                    endpoint: container.name.clone(),
                    id: container.id.clone(),
                    source: Box::new(e),
                }
            })?;
            if let Some(eps) = container.endpoints_mut() {
                eps.push(endpoint);
            }
            let mut next = agent.state.clone();
            replace_network(&mut next, network);
            next.containers.push(container.clone());
            next.publications.extend_from_slice(&published);
            Ok(Change {
                next,
                output: container.name.clone(),
            })
        })?;
        info!(name = %info, "container attached");
        Ok(Attached {
            info: self.container_inspect(&info)?,
            warnings: Vec::new(),
        })
    }

    /// The identity of a bridged or `none` container's namespace, checked:
    /// a network namespace, not the host's, not another container's.
    fn own_netns_of(&mut self, container: &Container) -> Result<crate::host::NetnsId, AgentError> {
        if container.netns.as_os_str().is_empty() {
            return Err(NetError::NetnsRequired.into());
        }
        let path = container.netns.clone();
        let id = self.host.netns_id(&path)?;
        if id == self.host.own_netns()? {
            return Err(NetError::HostNetns { path }.into());
        }
        let owners: Vec<(String, PathBuf)> = self
            .state
            .containers
            .iter()
            .filter(|c| matches!(c.mode, NetworkMode::Bridge { .. } | NetworkMode::None))
            .filter(|c| !c.netns.as_os_str().is_empty())
            .map(|c| (c.name.clone(), c.netns.clone()))
            .collect();
        for (other, other_path) in owners {
            if self.host.netns_id(&other_path).ok() == Some(id) {
                return Err(NetError::NetnsInUse {
                    path,
                    container: other,
                }
                .into());
            }
        }
        Ok(id)
    }

    /// Drops `-p`/`-P` of a container that has no interface to publish
    /// through; `warning` says so (Docker's wording for `host`).
    fn discard_ports(&self, container: &mut Container, warning: &str) -> Vec<String> {
        if container.port_mappings.is_empty() && !container.publish_all {
            return Vec::new();
        }
        container.port_mappings.clear();
        container.publish_all = false;
        vec![warning.to_owned()]
    }

    /// `--network host`: the host's own stack; nothing is made.
    fn attach_host(
        &mut self,
        mut container: Container,
        req: &ContainerAttach,
    ) -> Result<Attached, AgentError> {
        if !req.links.is_empty() {
            return Err(NetError::HostLinks.into());
        }
        let own = self.host.own_netns()?;
        if let Some(path) = &req.netns
            && self.host.netns_id(path)? != own
        {
            return Err(NetError::NotHostNetns { path: path.clone() }.into());
        }
        container.mode = NetworkMode::Host;
        container.netns_id = Some(own);
        let warnings = self.discard_ports(&mut container, HOST_PORTS_WARNING);
        self.commit_container(container, warnings)
    }

    /// Saves a container that needs no kernel step.
    fn commit_container(
        &mut self,
        container: Container,
        warnings: Vec<String>,
    ) -> Result<Attached, AgentError> {
        let name = container.name.clone();
        self.transaction(|agent, _| {
            let mut next = agent.state.clone();
            next.containers.push(container);
            Ok(Change { next, output: () })
        })?;
        info!(%name, "container attached");
        Ok(Attached {
            info: self.container_inspect(&name)?,
            warnings,
        })
    }

    /// `--network container:TARGET`: TARGET's stack, no interface.
    fn attach_joined(
        &mut self,
        mut container: Container,
        req: &ContainerAttach,
        target: &str,
    ) -> Result<Attached, AgentError> {
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
        if !req.dns.is_empty() || !req.dns_search.is_empty() || !req.dns_options.is_empty() {
            return Err(NetError::DnsConflict.into());
        }
        if !req.links.is_empty() {
            return Err(NetError::JoinedLinks.into());
        }
        if req.hostname.is_some() {
            return Err(NetError::HostnameConflict.into());
        }
        if target == container.name {
            return Err(NetError::JoinSelf(target.to_owned()).into());
        }
        let target = lookup::container(&self.state, target)?.clone();
        // Joining a joined container joins the stack it shares.
        let root = match &target.mode {
            NetworkMode::Container { target } => target.clone(),
            _ => target.name.clone(),
        };
        if let Some(given) = &req.netns {
            let same = match (self.host.netns_id(given), target.netns_id) {
                (Ok(a), Some(b)) => a == b,
                (Ok(a), None) => self.host.netns_id(&target.netns).is_ok_and(|b| a == b),
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
        container.netns = target.netns.clone();
        container.netns_id = target.netns_id;
        container.mode = NetworkMode::Container { target: root };
        self.commit_container(container, Vec::new())
    }

    /// Makes one endpoint (`endpoints::create`) and journals its
    /// destruction.
    fn create_endpoint(
        &mut self,
        container: &Container,
        network: &Network,
        ips: EndpointIps,
        options: EndpointOptions<'_>,
        journal: &mut Journal,
    ) -> Result<Endpoint, AgentError> {
        let EndpointOptions {
            ifname,
            mac,
            default_route,
            aliases,
            cni_network,
        } = options;
        // Checked with the request (`check_interface`).
        let mac = mac.and_then(crate::model::parse_unicast_mac);
        let bridge = self.bridge_link(network)?;
        let endpoint = endpoints::create(
            &mut self.datapath,
            &mut self.host,
            endpoints::NewEndpoint {
                netns: &container.netns,
                network,
                bridge,
                ips,
                ifname,
                mac,
                default_route,
                aliases,
                cni_network,
            },
        )?;
        journal.undo(Step::DestroyEndpoint(endpoint.clone()));
        Ok(endpoint)
    }

    pub fn container_detach(&mut self, term: &str) -> Result<Container, AgentError> {
        let container = lookup::container(&self.state, term)?.clone();
        let name = container.name.clone();
        let joined: Vec<&str> = self
            .state
            .containers
            .iter()
            .filter(|c| matches!(&c.mode, NetworkMode::Container { target } if *target == name))
            .map(|c| c.name.as_str())
            .collect();
        if !joined.is_empty() {
            return Err(NetError::HasJoined {
                name,
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
        self.transaction(|agent, journal| {
            agent.uninstall_publications(&owned, journal)?;
            let mut next = agent.state.clone();
            next.containers.retain(|c| c.name != name);
            next.publications.retain(|p| p.owner != Some(container.uid));
            for ep in container.endpoints() {
                if let Some(n) = next.networks.iter_mut().find(|n| n.name == ep.network) {
                    n.release(ep);
                }
                journal.after_commit(Step::DestroyEndpoint(ep.clone()));
            }
            Ok(Change { next, output: () })
        })?;
        if matches!(
            container.mode,
            NetworkMode::Bridge { .. } | NetworkMode::None
        ) {
            self.host.forget_netns(&container.netns);
        }
        info!(name = %container.name, "container detached");
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

    pub fn container_inspect(&self, term: &str) -> Result<ContainerInfo, AgentError> {
        let container = lookup::container(&self.state, term)?.clone();
        let stack = match &container.mode {
            NetworkMode::Container { target } => lookup::container(&self.state, target).ok(),
            _ => Some(&container),
        };
        let endpoints = stack.map(|c| c.endpoints().to_vec()).unwrap_or_default();
        let gateway_network = stack
            .and_then(|c| gateway_of(c, &self.state.networks).map(|i| &c.endpoints()[i]))
            .map(|e| e.network.clone());
        let joined_to = match &container.mode {
            NetworkMode::Container { target } => Some(target.clone()),
            _ => None,
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
            gateway_network,
        })
    }

    /// `netagent port NAME [CPORT[/PROTO]]`: the container's publications,
    /// optionally only those of one container port.
    pub fn container_ports(
        &self,
        term: &str,
        filter: Option<(u16, Option<Proto>)>,
    ) -> Result<Vec<PortSpec>, AgentError> {
        let info = self.container_inspect(term)?;
        let Some((port, proto)) = filter else {
            return Ok(info.ports);
        };
        let proto = proto.unwrap_or(Proto::Tcp);
        let hits: Vec<PortSpec> = info
            .ports
            .into_iter()
            .filter(|s| s.container_port == port && s.proto == proto)
            .collect();
        if hits.is_empty() {
            return Err(NetError::NoPublicPort {
                port: format!("{port}/{proto}"),
                container: info.container.name,
            }
            .into());
        }
        Ok(hits)
    }
}

/// Puts `network` (with its IPAM changed) into `next`.
fn replace_network(next: &mut DesiredState, network: Network) {
    if let Some(n) = next.networks.iter_mut().find(|n| n.name == network.name) {
        *n = network;
    }
}
