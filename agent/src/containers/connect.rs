//! `network connect` and `network disconnect`, and what moves with a
//! container's gateway endpoint: its default route and published ports.

use tracing::info;

use super::{EndpointOptions, check_aliases, check_interface, check_user_defined, replace_network};
use crate::{
    agent::{Agent, Change},
    api::NetworkConnect,
    datapath::Datapath,
    endpoints::{gateway_of, has_outside_access, next_ifname},
    error::{AgentError, NetError},
    host::Host,
    journal::{Journal, Step},
    lookup::{self, NetworkRef},
    model::{Container, Endpoint, NONE_NETWORK, NetworkMode},
    state::{DesiredState, Publication},
};

impl<D: Datapath, H: Host> Agent<D, H> {
    pub fn network_connect(&mut self, req: NetworkConnect) -> Result<Endpoint, AgentError> {
        let container = lookup::container(&self.state, &req.container)?.clone();
        let network = match (&container.mode, lookup::network(&self.state, &req.network)?) {
            (NetworkMode::Host, _) | (_, NetworkRef::Host) => {
                return Err(NetError::HostNetworkConflict.into());
            }
            (NetworkMode::None, _) | (_, NetworkRef::None) => {
                return Err(NetError::NoneNetworkConflict.into());
            }
            (NetworkMode::Container { .. }, _) => return Err(NetError::JoinedConnect.into()),
            (NetworkMode::Chained(_), _) => {
                return Err(NetError::ChainedConnect(container.name).into());
            }
            (NetworkMode::Bridge { .. }, NetworkRef::Bridge(n)) => n.clone(),
        };
        check_aliases(&req.aliases)?;
        check_interface(req.ifname.as_deref(), req.mac.as_deref())?;
        if let Some(ifname) = &req.ifname
            && container.endpoints().iter().any(|e| &e.ifname == ifname)
        {
            return Err(NetError::IfnameInUse {
                container: container.name,
                ifname: ifname.clone(),
            }
            .into());
        }
        if container
            .endpoints()
            .iter()
            .any(|e| e.network == network.name)
        {
            return Err(NetError::AlreadyConnected {
                container: container.name,
                network: network.name,
            }
            .into());
        }
        check_user_defined(&network.name, req.ip, &req.aliases)?;
        self.check_netns(&container)?;
        let net_name = network.name.clone();
        let endpoint = self.transaction(|agent, journal| {
            let mut network = network;
            let ips = network.allocate(req.ip, req.ip6)?;
            let ifname = req
                .ifname
                .clone()
                .unwrap_or_else(|| next_ifname(&container));
            let endpoint = agent.create_endpoint(
                &container,
                &network,
                ips,
                EndpointOptions {
                    ifname: &ifname,
                    mac: req.mac.as_deref(),
                    default_route: false,
                    aliases: req.aliases.clone(),
                    cni_network: req.cni_network.clone(),
                },
                journal,
            )?;
            let mut after = container.clone();
            if let Some(eps) = after.endpoints_mut() {
                eps.push(endpoint.clone());
            }
            if after.gateway_network.is_none() {
                // The route stays where it is; a container without one
                // gets it through the new network if that leads outside.
                after.gateway_network = gateway_of(&container, &agent.state.networks)
                    .map(|i| container.endpoints()[i].network.clone())
                    .or_else(|| {
                        has_outside_access(&net_name, &agent.state.networks)
                            .then(|| net_name.clone())
                    });
            }
            let mut next = agent.state.clone();
            replace_network(&mut next, network);
            agent.move_gateway(&container, &after, &mut next, journal)?;
            replace_container(&mut next, after);
            Ok(Change {
                next,
                output: endpoint,
            })
        })?;
        info!(container = %container.name, network = %net_name, ip = %endpoint.ip, "container connected");
        Ok(endpoint)
    }

    /// Disconnects a container; the endpoint removed (`None` when a
    /// `none` container leaves `none`).
    pub fn network_disconnect(
        &mut self,
        network: &str,
        container: &str,
    ) -> Result<Option<Endpoint>, AgentError> {
        let container = lookup::container(&self.state, container)?.clone();
        let network = lookup::network(&self.state, network)?;
        let net_name = network.name().to_owned();
        match (&container.mode, network) {
            (NetworkMode::Host, _) | (_, NetworkRef::Host) => {
                return Err(NetError::HostNetworkConflict.into());
            }
            (NetworkMode::None, NetworkRef::None) => return self.leave_none(container),
            (NetworkMode::Container { .. }, _) => return Err(NetError::JoinedConnect.into()),
            (NetworkMode::Chained(_), _) => {
                return Err(NetError::ChainedConnect(container.name).into());
            }
            _ => {}
        }
        let endpoint = container
            .endpoints()
            .iter()
            .find(|e| e.network == net_name)
            .cloned()
            .ok_or_else(|| NetError::NotConnected {
                container: container.name.clone(),
                network: net_name.clone(),
            })?;
        self.transaction(|agent, journal| {
            let mut after = container.clone();
            if let Some(eps) = after.endpoints_mut() {
                eps.retain(|e| e.network != net_name);
            }
            let mut next = agent.state.clone();
            if let Some(n) = next.networks.iter_mut().find(|n| n.name == net_name) {
                n.release(&endpoint);
            }
            agent.move_gateway(&container, &after, &mut next, journal)?;
            // Publications by address to the endpoint that goes (not the
            // gateway's, which moved above) follow the gateway too.
            let gateway = gateway_of(&after, &next.networks).map(|i| after.endpoints()[i].clone());
            let stranded = moves(
                &next,
                container.uid,
                &endpoint,
                gateway.as_ref().unwrap_or(&endpoint),
            );
            if !stranded.is_empty() && gateway.is_none() {
                return Err(NetError::LastPublishingNetwork {
                    container: container.name.clone(),
                    network: net_name.clone(),
                }
                .into());
            }
            agent.retarget_publications(&stranded, journal)?;
            apply_moves(&mut next, &stranded);
            replace_container(&mut next, after);
            journal.after_commit(Step::DestroyEndpoint(endpoint.clone()));
            Ok(Change { next, output: () })
        })?;
        info!(container = %container.name, network = %net_name, "container disconnected");
        Ok(Some(endpoint))
    }

    /// `network disconnect none C` of a `none` container: it is left with
    /// no network, and may be connected to one (as in Docker).
    fn leave_none(&mut self, container: Container) -> Result<Option<Endpoint>, AgentError> {
        let mut after = container.clone();
        after.mode = NetworkMode::Bridge {
            endpoints: Vec::new(),
        };
        self.transaction(|agent, _| {
            let mut next = agent.state.clone();
            replace_container(&mut next, after);
            Ok(Change { next, output: () })
        })?;
        info!(container = %container.name, "container left network {NONE_NETWORK}");
        Ok(None)
    }

    /// Moves a container's default route, and the publications aimed at
    /// its gateway endpoint, when a change of its endpoints (`before` to
    /// `after`) changes which endpoint is the gateway: Docker's behaviour
    /// on disconnect of the gateway network, and on its reconnect.
    fn move_gateway(
        &mut self,
        before: &Container,
        after: &Container,
        next: &mut DesiredState,
        journal: &mut Journal,
    ) -> Result<(), AgentError> {
        let networks = &next.networks;
        let old = gateway_of(before, networks).map(|i| before.endpoints()[i].clone());
        let new = gateway_of(after, networks).map(|i| after.endpoints()[i].clone());
        if old.as_ref().map(|e| &e.host_ifname) == new.as_ref().map(|e| &e.host_ifname) {
            return Ok(());
        }
        let gateway = |e: &Endpoint| {
            networks
                .iter()
                .find(|n| n.name == e.network)
                .map(crate::model::Network::default_route)
        };
        if let Some(new_ep) = &new {
            self.host
                .set_default_route(&after.netns, &new_ep.ifname, gateway(new_ep))?;
            journal.undo(Step::DefaultRoute {
                netns: after.netns.clone(),
                ifname: old.as_ref().map_or_else(String::new, |e| e.ifname.clone()),
                gateway: old.as_ref().and_then(gateway),
            });
        }
        let (Some(old_ep), Some(new_ep)) = (&old, &new) else {
            return Ok(());
        };
        let moved = moves(next, before.uid, old_ep, new_ep);
        self.retarget_publications(&moved, journal)?;
        apply_moves(next, &moved);
        if !moved.is_empty() {
            info!(container = %before.name, from = %old_ep.network, to = %new_ep.network,
                ports = moved.len(), "default route and published ports moved");
        }
        Ok(())
    }

    /// Checks that the container's namespace path still names the
    /// namespace it was attached with.
    fn check_netns(&mut self, container: &Container) -> Result<(), AgentError> {
        if container.netns.as_os_str().is_empty() {
            return Err(NetError::NetnsRequired.into());
        }
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
}

/// The publications of container `uid` aimed at endpoint `from` (either
/// of its addresses), each with its copy aimed at `to` (same counter
/// slot): at `to`'s address of the same family, or its IPv4 address, which
/// stands for the container, when it has no IPv6 one.
fn moves(
    state: &DesiredState,
    uid: u64,
    from: &Endpoint,
    to: &Endpoint,
) -> Vec<(Publication, Publication)> {
    use std::net::IpAddr;
    state
        .publications
        .iter()
        .filter(|p| p.owner == Some(uid) && from.has_address(p.spec.container_ip))
        .map(|p| {
            let mut moved = *p;
            moved.spec.container_ip = match (p.spec.container_ip, to.ip6) {
                (IpAddr::V6(_), Some(ip6)) => IpAddr::V6(ip6),
                _ => IpAddr::V4(to.ip),
            };
            (*p, moved)
        })
        .collect()
}

/// Puts moved publications (same counter slot) into `next`.
fn apply_moves(next: &mut DesiredState, moves: &[(Publication, Publication)]) {
    for p in next.publications.iter_mut() {
        if let Some((_, moved)) = moves.iter().find(|(old, _)| old.stats_slot == p.stats_slot) {
            *p = *moved;
        }
    }
}

/// Puts `container` (changed) into `next`.
fn replace_container(next: &mut DesiredState, container: Container) {
    if let Some(c) = next.containers.iter_mut().find(|c| c.uid == container.uid) {
        *c = container;
    }
}
