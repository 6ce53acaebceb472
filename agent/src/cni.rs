//! CNI attachments: the daemon side of `netagent-cni` (ADD, DEL, CHECK,
//! GC, STATUS) in terms of the agent's containers and networks.
//!
//! An attachment is keyed by [`CniKey`] (the runtime's container ID, the
//! interface name, the CNI network's name) and is one of:
//! - main mode: an endpoint of a container whose `cni_id` is the
//!   container ID, with that `ifname` and `cni_network`. A container's
//!   first ADD attaches it (`container_attach`), later ADDs of other
//!   interfaces connect it to more networks (`network_connect`);
//! - chained mode: a container in [`NetworkMode::Chained`], whose
//!   interface another plugin made; it holds the publications of the
//!   `portMappings` capability to the addresses that plugin gave.
//!
//! Invariants: DEL and GC remove only what a key names (never an
//! endpoint or container the CLI made: those have no `cni_id`); DEL of
//! what is gone (or of a container whose namespace is gone) succeeds;
//! ADD either makes the whole attachment or leaves nothing of it (a
//! network it created for it included).

use std::{net::IpAddr, path::Path};

use tracing::{info, warn};

use crate::{
    agent::{Agent, Change},
    api::{
        CniAdd, CniAttachment, CniKey, CniMain, CniMode, CniStatus, ContainerAttach, NetworkConnect,
    },
    datapath::Datapath,
    endpoints::gateway_of,
    error::{AgentError, NetError},
    host::Host,
    lookup::{self, NetworkRef},
    model::{ChainedAttachment, Container, EndpointIps, NetworkMode},
    portmap::PortMapping,
    state::{DesiredState, Publication},
};

/// Where an attachment is in the state.
enum Found {
    /// Main mode: the container and its endpoint's index.
    Endpoint(Container, usize),
    /// Chained mode.
    Chained(Container),
}

/// Every CNI attachment of the state, with its key.
fn attachments(state: &DesiredState) -> Vec<(CniKey, &Container)> {
    let mut found = Vec::new();
    for c in &state.containers {
        let Some(id) = &c.cni_id else { continue };
        let key = |ifname: &str, network: &str| CniKey {
            container_id: id.clone(),
            ifname: ifname.to_owned(),
            network: network.to_owned(),
        };
        match &c.mode {
            NetworkMode::Chained(a) => found.push((key(&a.ifname, &a.cni_network), c)),
            _ => {
                for e in c.endpoints() {
                    if let Some(network) = &e.cni_network {
                        found.push((key(&e.ifname, network), c));
                    }
                }
            }
        }
    }
    found
}

fn find(state: &DesiredState, key: &CniKey) -> Option<Found> {
    let container = state
        .containers
        .iter()
        .find(|c| c.cni_id.as_deref() == Some(&key.container_id))?;
    match &container.mode {
        NetworkMode::Chained(a) => (a.ifname == key.ifname && a.cni_network == key.network)
            .then(|| Found::Chained(container.clone())),
        _ => container
            .endpoints()
            .iter()
            .position(|e| e.ifname == key.ifname && e.cni_network.as_deref() == Some(&key.network))
            .map(|i| Found::Endpoint(container.clone(), i)),
    }
}

/// The name a runtime's container gets when it names none: `cni-` and
/// the container ID (a valid container name: the ID is an identifier),
/// shortened to its first 12 characters when it is a runtime's long hex
/// ID (unique in 12, as Docker shows IDs), else to the longest name.
pub fn default_name(container_id: &str) -> String {
    let hex = container_id.len() >= 32 && container_id.bytes().all(|b| b.is_ascii_hexdigit());
    let keep = if hex {
        12
    } else {
        crate::model::MAX_NAME_LEN - "cni-".len()
    };
    let short: String = container_id.chars().take(keep).collect();
    format!("cni-{short}")
}

impl<D: Datapath, H: Host> Agent<D, H> {
    /// CNI ADD: makes the attachment `req` describes.
    pub fn cni_add(&mut self, req: CniAdd) -> Result<CniAttachment, AgentError> {
        if !crate::model::valid_ifname(&req.key.ifname) {
            return Err(NetError::InvalidIfname(req.key.ifname).into());
        }
        if find(&self.state, &req.key).is_some() {
            return Err(NetError::CniAttachmentExists(req.key).into());
        }
        let existing = self
            .state
            .containers
            .iter()
            .find(|c| c.cni_id.as_deref() == Some(&req.key.container_id))
            .cloned();
        let chained = matches!(req.mode, CniMode::Chained { .. });
        if let Some(c) = &existing
            && (chained || matches!(c.mode, NetworkMode::Chained(_)))
        {
            // One chained attachment per container, and never both modes.
            return Err(NetError::CniModeMix {
                container_id: req.key.container_id.clone(),
                name: c.name.clone(),
            }
            .into());
        }
        match &req.mode {
            CniMode::Chained { ips } => self.cni_add_chained(&req, ips.clone())?,
            CniMode::Main(main) => self.cni_add_main(&req, main.clone(), existing)?,
        }
        info!(container_id = %req.key.container_id, ifname = %req.key.ifname,
            network = %req.key.network, "CNI attachment added");
        self.cni_attachment(&req.key)
    }

    /// The name of the container `req` makes: the one asked for, else the
    /// preferred one if it is a free, valid name, else the default.
    fn cni_name(&self, req: &CniAdd) -> String {
        if let Some(name) = &req.name {
            return name.clone();
        }
        req.preferred_name
            .clone()
            .filter(|n| crate::model::valid_container_name(n))
            .filter(|n| !self.state.containers.iter().any(|c| &c.name == n))
            .unwrap_or_else(|| default_name(&req.key.container_id))
    }

    /// Main mode: the network (created from the configuration if it does
    /// not exist yet), then the container attached or connected.
    fn cni_add_main(
        &mut self,
        req: &CniAdd,
        main: CniMain,
        existing: Option<Container>,
    ) -> Result<(), AgentError> {
        let created = match lookup::network(&self.state, &main.network) {
            Ok(NetworkRef::Bridge(n)) => {
                check_matches(n, main.create.as_ref())?;
                false
            }
            Ok(_) => return Err(NetError::CniPredefined(main.network).into()),
            Err(NetError::NoSuchNetwork(_)) if main.create.is_some() => {
                let create = main.create.clone().expect("checked");
                self.network_create(create)?;
                true
            }
            Err(e) => return Err(e.into()),
        };
        let result = match existing {
            None => self
                .container_attach(ContainerAttach {
                    name: Some(self.cni_name(req)),
                    netns: Some(req.netns.clone()),
                    network: Some(main.network.clone()),
                    ip: main.ip,
                    ip6: main.ip6,
                    aliases: main.aliases.clone(),
                    publish: req.publish.clone(),
                    ifname: Some(req.key.ifname.clone()),
                    mac: main.mac.clone(),
                    cni: Some(req.key.clone()),
                    ..ContainerAttach::default()
                })
                .map(drop),
            Some(container) => self.cni_connect(req, &main, &container),
        };
        if result.is_err()
            && created
            && let Err(e) = self.network_rm(&main.network)
        {
            warn!(network = %main.network, error = %e, "removing the network a failed CNI ADD created");
        }
        result
    }

    /// A further interface of a container the runtime attached before.
    fn cni_connect(
        &mut self,
        req: &CniAdd,
        main: &CniMain,
        container: &Container,
    ) -> Result<(), AgentError> {
        let given = self.host.netns_id(&req.netns)?;
        if container.netns_id.is_some_and(|id| id != given) {
            return Err(NetError::CniNetnsMismatch {
                container_id: req.key.container_id.clone(),
                path: req.netns.clone(),
            }
            .into());
        }
        let endpoint = self.network_connect(NetworkConnect {
            network: main.network.clone(),
            container: container.name.clone(),
            ip: main.ip,
            ip6: main.ip6,
            aliases: main.aliases.clone(),
            ifname: Some(req.key.ifname.clone()),
            mac: main.mac.clone(),
            cni_network: Some(req.key.network.clone()),
        })?;
        if req.publish.is_empty() {
            return Ok(());
        }
        let ips = EndpointIps {
            v4: endpoint.ip,
            v6: endpoint.ip6,
        };
        if let Err(e) = self.cni_publish(&container.name, &req.publish, ips) {
            if let Err(undo) = self.network_disconnect(&main.network, &container.name) {
                warn!(container = %container.name, error = %undo, "undoing a CNI connect");
            }
            return Err(e);
        }
        Ok(())
    }

    /// Publishes `publish` (`-p` values) of an existing container to the
    /// endpoint with addresses `ips`, in one transaction.
    fn cni_publish(
        &mut self,
        name: &str,
        publish: &[String],
        ips: EndpointIps,
    ) -> Result<(), AgentError> {
        let mut container = lookup::container(&self.state, name)?.clone();
        container.port_mappings = parse_mappings(publish)?;
        container.publish_all = false;
        self.transaction(|agent, journal| {
            let published = agent.publish_ports(&container, ips, journal)?;
            let mut next = agent.state.clone();
            if let Some(c) = next
                .containers
                .iter_mut()
                .find(|c| c.name == container.name)
            {
                c.port_mappings
                    .extend(container.port_mappings.iter().cloned());
            }
            next.publications.extend_from_slice(&published);
            Ok(Change { next, output: () })
        })
    }

    /// Chained mode: a container of the interface another plugin made,
    /// holding the publications to its addresses.
    fn cni_add_chained(&mut self, req: &CniAdd, ips: Vec<IpAddr>) -> Result<(), AgentError> {
        let attach = ContainerAttach {
            name: Some(self.cni_name(req)),
            netns: Some(req.netns.clone()),
            publish: req.publish.clone(),
            cni: Some(req.key.clone()),
            ..ContainerAttach::default()
        };
        let mut container = self.new_container(&attach)?;
        container.netns_id = Some(self.host.netns_id(&req.netns)?);
        container.mode = NetworkMode::Chained(ChainedAttachment {
            cni_network: req.key.network.clone(),
            ifname: req.key.ifname.clone(),
            ips: ips.clone(),
        });
        let v4 = ips.iter().find_map(|ip| match ip {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        });
        let target = match v4 {
            Some(v4) => Some(EndpointIps { v4, v6: None }),
            None if container.port_mappings.is_empty() => None,
            None => {
                return Err(NetError::CniNoIpv4 {
                    ifname: req.key.ifname.clone(),
                }
                .into());
            }
        };
        self.transaction(|agent, journal| {
            let published = match target {
                Some(ips) => agent.publish_ports(&container, ips, journal)?,
                None => Vec::new(),
            };
            let mut next = agent.state.clone();
            next.containers.push(container);
            next.publications.extend_from_slice(&published);
            Ok(Change { next, output: () })
        })
    }

    /// The attachment `key` names, as ADD and CHECK report it.
    pub fn cni_attachment(&self, key: &CniKey) -> Result<CniAttachment, AgentError> {
        let found = find(&self.state, key).ok_or_else(|| NetError::NoCniAttachment(key.clone()))?;
        let (container, endpoint) = match found {
            Found::Endpoint(c, i) => {
                let e = c.endpoints()[i].clone();
                (c, Some((i, e)))
            }
            Found::Chained(c) => (c, None),
        };
        let owned = self
            .state
            .publications
            .iter()
            .filter(|p| p.owner == Some(container.uid));
        let ports = match &endpoint {
            Some((_, e)) => owned
                .filter(|p| e.has_address(p.spec.container_ip))
                .map(|p| p.spec)
                .collect(),
            None => owned.map(|p| p.spec).collect(),
        };
        let network = endpoint.as_ref().and_then(|(_, e)| {
            self.state
                .networks
                .iter()
                .find(|n| n.name == e.network)
                .cloned()
        });
        let default_route = endpoint
            .as_ref()
            .is_some_and(|(i, _)| gateway_of(&container, &self.state.networks) == Some(*i));
        Ok(CniAttachment {
            key: key.clone(),
            container: container.name.clone(),
            netns: container.netns.clone(),
            endpoint: endpoint.map(|(_, e)| e),
            network,
            default_route,
            ports,
        })
    }

    /// CNI DEL: removes the attachment; `false` if there was none. A
    /// container whose namespace is gone is detached whole (its other
    /// interfaces went with the namespace).
    pub fn cni_del(&mut self, key: &CniKey) -> Result<bool, AgentError> {
        let Some(found) = find(&self.state, key) else {
            return Ok(false);
        };
        match found {
            Found::Chained(c) => {
                self.container_detach(&c.name)?;
            }
            Found::Endpoint(c, i) => {
                let alive = self
                    .host
                    .netns_id(&c.netns)
                    .is_ok_and(|id| c.netns_id.is_none_or(|saved| saved == id));
                if !alive || c.endpoints().len() == 1 {
                    self.container_detach(&c.name)?;
                } else {
                    let endpoint = c.endpoints()[i].clone();
                    // Its publications were made for this attachment:
                    // they go with it rather than move to another.
                    let owned: Vec<Publication> = self
                        .state
                        .publications
                        .iter()
                        .filter(|p| {
                            p.owner == Some(c.uid) && endpoint.has_address(p.spec.container_ip)
                        })
                        .copied()
                        .collect();
                    if !owned.is_empty() {
                        self.transaction(|agent, journal| {
                            agent.uninstall_publications(&owned, journal)?;
                            let mut next = agent.state.clone();
                            next.publications.retain(|p| !owned.contains(p));
                            Ok(Change { next, output: () })
                        })?;
                    }
                    self.network_disconnect(&endpoint.network, &c.name)?;
                }
            }
        }
        info!(container_id = %key.container_id, ifname = %key.ifname,
            network = %key.network, "CNI attachment deleted");
        Ok(true)
    }

    /// CNI GC: removes the attachments of CNI network `network` that
    /// `valid` (container ID, ifname) does not name; the keys removed. A
    /// failure to remove one is reported after trying the rest.
    pub fn cni_gc(
        &mut self,
        network: &str,
        valid: &[(String, String)],
    ) -> Result<Vec<CniKey>, AgentError> {
        let stale: Vec<CniKey> = attachments(&self.state)
            .into_iter()
            .map(|(key, _)| key)
            .filter(|k| k.network == network)
            .filter(|k| {
                !valid
                    .iter()
                    .any(|(id, ifname)| *id == k.container_id && *ifname == k.ifname)
            })
            .collect();
        let mut removed = Vec::new();
        let mut first_error = None;
        for key in stale {
            match self.cni_del(&key) {
                Ok(_) => removed.push(key),
                Err(e) => {
                    warn!(container_id = %key.container_id, ifname = %key.ifname, error = %e, "GC");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(removed),
        }
    }

    /// CNI STATUS: whether ADD can succeed now.
    pub fn cni_status(&self) -> CniStatus {
        match self.datapath.served() {
            Ok(_) => CniStatus {
                ready: true,
                reason: None,
            },
            Err(e) => CniStatus {
                ready: false,
                reason: Some(format!("the datapath does not answer: {e}")),
            },
        }
    }

    /// CNI CHECK: the attachment is whole. Checks the state's record, the
    /// namespace's identity, the host side (interface, program, endpoint
    /// map entries), the container side (interface, MAC, addresses) and
    /// the publication map entries; the first thing missing is the error.
    pub fn cni_check(&mut self, key: &CniKey) -> Result<CniAttachment, AgentError> {
        let attachment = self.cni_attachment(key)?;
        let broken = |what: String| -> AgentError {
            NetError::CniCheck {
                key: key.clone(),
                what,
            }
            .into()
        };
        let container = lookup::container(&self.state, &attachment.container)?.clone();
        let id = self
            .host
            .netns_id(&container.netns)
            .map_err(|e| broken(format!("its namespace: {e}")))?;
        if container.netns_id.is_some_and(|saved| saved != id) {
            return Err(broken(format!(
                "{} names another namespace now",
                container.netns.display()
            )));
        }
        if let Some(e) = &attachment.endpoint {
            self.check_endpoint(&container.netns, e).map_err(broken)?;
        }
        let installed = self.datapath.publications()?;
        let owned = self
            .state
            .publications
            .iter()
            .filter(|p| p.owner == Some(container.uid) && attachment.ports.contains(&p.spec));
        for p in owned {
            if let Some(entry) = crate::publications::pub_entry(p)
                && !installed.contains(&entry)
            {
                return Err(broken(format!(
                    "publication {} is not in the datapath",
                    p.spec
                )));
            }
        }
        Ok(attachment)
    }

    /// One endpoint's kernel objects, as [`Self::cni_check`] wants them.
    fn check_endpoint(&mut self, netns: &Path, e: &crate::model::Endpoint) -> Result<(), String> {
        let link = self
            .host
            .endpoint_link(&e.host_ifname, netns, &e.ifname)
            .map_err(|err| err.to_string())?
            .ok_or_else(|| format!("host interface {} is gone", e.host_ifname))?;
        if link.host_ifindex != e.host_ifindex {
            return Err(format!(
                "host interface {} was recreated (index {}, not {})",
                e.host_ifname, link.host_ifindex, e.host_ifindex
            ));
        }
        if !link.mac.eq_ignore_ascii_case(&e.mac) {
            return Err(format!("{} has MAC {}, not {}", e.ifname, link.mac, e.mac));
        }
        let addrs = self
            .host
            .interface_addrs(netns, &e.ifname)
            .map_err(|err| err.to_string())?
            .ok_or_else(|| format!("{} is gone from the container", e.ifname))?;
        let wanted: Vec<IpAddr> = std::iter::once(IpAddr::V4(e.ip))
            .chain(e.ip6.map(IpAddr::V6))
            .collect();
        if let Some(missing) = wanted.iter().find(|ip| !addrs.contains(ip)) {
            return Err(format!("{} lacks its address {missing}", e.ifname));
        }
        let attached = self
            .datapath
            .attached_endpoints()
            .map_err(|err| err.to_string())?;
        if !attached.contains(&e.host_ifname) {
            return Err(format!("no isolation program on {}", e.host_ifname));
        }
        let ifaces = self
            .datapath
            .endpoint_ifaces()
            .map_err(|err| err.to_string())?;
        if !ifaces.iter().any(|(i, _)| *i == e.host_ifindex) {
            return Err(format!("no endpoint entry for {}", e.host_ifname));
        }
        let addrs = self
            .datapath
            .endpoint_addrs()
            .map_err(|err| err.to_string())?;
        if !addrs
            .iter()
            .any(|(ip, a)| *ip == e.ip && a.host_ifindex == e.host_ifindex)
        {
            return Err(format!("no endpoint address entry for {}", e.ip));
        }
        if let Some(ip6) = e.ip6 {
            let addrs6 = self
                .datapath
                .endpoint_addrs6()
                .map_err(|err| err.to_string())?;
            if !addrs6.contains(&ip6) {
                return Err(format!("no endpoint address entry for {ip6}"));
            }
        }
        Ok(())
    }
}

/// `portMappings` as `-p` values, parsed.
fn parse_mappings(publish: &[String]) -> Result<Vec<PortMapping>, AgentError> {
    publish
        .iter()
        .map(|p| p.parse::<PortMapping>().map_err(AgentError::from))
        .collect()
}

/// Refuses a configuration that describes an existing network otherwise
/// (another subnet, or internal when it is not): the runtime would be told
/// one thing and get another. What the configuration leaves out is not
/// compared.
fn check_matches(
    network: &crate::model::Network,
    create: Option<&crate::api::NetworkCreate>,
) -> Result<(), NetError> {
    let Some(create) = create else { return Ok(()) };
    let differs = |what: &str, has: String, asked: String| NetError::CniNetworkDiffers {
        network: network.name.clone(),
        what: what.to_owned(),
        has,
        asked,
    };
    if let Some(subnet) = create.subnet
        && subnet != network.ipam.subnet
    {
        return Err(differs(
            "subnet",
            network.ipam.subnet.to_string(),
            subnet.to_string(),
        ));
    }
    if let Some(subnet6) = create.subnet6 {
        let has = network.ipam6.as_ref().map(|i| i.subnet);
        if has != Some(subnet6) {
            return Err(differs(
                "IPv6 subnet",
                has.map_or_else(|| "none".to_owned(), |s| s.to_string()),
                subnet6.to_string(),
            ));
        }
    }
    // `internal` is asked for or not mentioned (a configuration cannot say
    // "not internal" apart from saying nothing): only a configuration
    // asking for an internal network is refused one with outside access.
    if create.internal && !network.internal {
        return Err(differs("internal", "false".to_owned(), "true".to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
