//! Networks: `netagent network create/rm/ls/inspect`, the default `bridge`
//! network, and the pre-defined `host` and `none` networks.
//!
//! A bridge network is a bridge interface with the gateway address, an
//! IPAM (`ipam`), and a policy the datapath enforces (`Network::policy`).

use std::collections::BTreeSet;

use ipnet::{Ipv4Net, Ipv6Net};
use tracing::info;

use crate::{
    agent::{Agent, Change},
    api::{NetworkCreate, NetworkInfo, NetworkMember},
    datapath::Datapath,
    endpoints::{bridge_config, new_bridge_name},
    error::{AgentError, NetError},
    host::Host,
    ipam::{self, NetworkIpam},
    ipam6::{self, Ipam6},
    journal::Step,
    lookup::{self, NetworkRef},
    model::{
        DEFAULT_BRIDGE, DEFAULT_NETWORK, GatewayMode, HOST_NETWORK, NONE_NETWORK, Network,
        NetworkMode, is_predefined, random_id, valid_network_name,
    },
};

/// Docker's option key for the IPv4 gateway mode.
pub const GATEWAY_MODE_OPT: &str = "com.docker.network.bridge.gateway_mode_ipv4";

/// The gateway mode `req`'s options ask for; unknown options are refused.
fn gateway_mode(req: &NetworkCreate) -> Result<GatewayMode, NetError> {
    let mut mode = GatewayMode::Nat;
    for opt in &req.options {
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
    if mode == GatewayMode::Routed && req.internal {
        return Err(NetError::BadOption(format!(
            "{GATEWAY_MODE_OPT}=routed: an internal network has no gateway to route through"
        )));
    }
    Ok(mode)
}

impl<D: Datapath, H: Host> Agent<D, H> {
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

    /// The IPv6 side `req` asks for: `None` without `--ipv6`; the given
    /// subnet (or a unique local /64 for network `id`) otherwise.
    fn ipam6_for(&mut self, req: &NetworkCreate, id: &str) -> Result<Option<Ipam6>, AgentError> {
        if !req.ipv6 {
            if let Some(subnet) = req.subnet6 {
                return Err(NetError::BadOption(format!(
                    "--subnet {subnet}: an IPv6 subnet needs --ipv6"
                ))
                .into());
            }
            return Ok(None);
        }
        let mut taken: Vec<(Ipv6Net, String)> = self
            .state
            .networks
            .iter()
            .filter_map(|n| {
                n.ipam6
                    .as_ref()
                    .map(|i| (i.subnet, format!("network {}", n.name)))
            })
            .collect();
        let ours: BTreeSet<Ipv6Net> = taken.iter().map(|(s, _)| *s).collect();
        taken.extend(
            self.host
                .routes6()?
                .into_iter()
                .filter(|(net, _)| !ours.contains(net)),
        );
        let subnet = match req.subnet6 {
            Some(subnet) => {
                ipam6::check_free(subnet, &taken)?;
                subnet
            }
            None => ipam6::pick_subnet(id, &taken)?,
        };
        Ok(Some(Ipam6::new(subnet, req.gateway6)?))
    }

    /// Creates the default `bridge` network if the state has none, and
    /// gives `host` and `none` their IDs.
    pub fn ensure_default_network(&mut self) -> Result<(), AgentError> {
        let missing_ids = [HOST_NETWORK, NONE_NETWORK]
            .iter()
            .any(|n| !self.state.predefined.contains_key(*n));
        if missing_ids {
            self.transaction(|agent, _| {
                let mut next = agent.state.clone();
                for name in [HOST_NETWORK, NONE_NETWORK] {
                    next.predefined
                        .entry(name.to_owned())
                        .or_insert_with(random_id);
                }
                Ok(Change { next, output: () })
            })?;
        }
        if self
            .state
            .networks
            .iter()
            .any(|n| n.name == DEFAULT_NETWORK)
        {
            return Ok(());
        }
        let network = self.network_create(NetworkCreate::named(DEFAULT_NETWORK))?;
        info!(subnet = %network.ipam.subnet, "created the default network");
        Ok(())
    }

    /// The daemon's `--icc` for the default network (Docker's: a daemon
    /// setting, not a network's): recorded in the state if it changed;
    /// the endpoints take it when they are programmed (at start, by
    /// `reconcile_networks`).
    pub fn set_default_icc(&mut self, icc: bool) -> Result<(), AgentError> {
        let Some(current) = self
            .state
            .networks
            .iter()
            .find(|n| n.name == DEFAULT_NETWORK)
        else {
            return Ok(());
        };
        if current.icc == icc {
            return Ok(());
        }
        self.transaction(|agent, _| {
            let mut next = agent.state.clone();
            for n in next
                .networks
                .iter_mut()
                .filter(|n| n.name == DEFAULT_NETWORK)
            {
                n.icc = icc;
            }
            Ok(Change { next, output: () })
        })?;
        info!(
            icc,
            "default network: inter-container communication changed"
        );
        Ok(())
    }

    pub fn network_create(&mut self, req: NetworkCreate) -> Result<Network, AgentError> {
        if !valid_network_name(&req.name) {
            return Err(NetError::InvalidNetworkName(req.name).into());
        }
        let predefined_taken = is_predefined(&req.name) && req.name != DEFAULT_NETWORK;
        if predefined_taken || self.state.networks.iter().any(|n| n.name == req.name) {
            return Err(NetError::NetworkExists(req.name).into());
        }
        let driver = req.driver.clone().unwrap_or_else(|| "bridge".into());
        if driver != "bridge" {
            return Err(NetError::Driver(driver).into());
        }
        let gateway_mode = gateway_mode(&req)?;
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
        let ipam6 = self.ipam6_for(&req, &id)?;
        let bridge = if req.name == DEFAULT_NETWORK {
            DEFAULT_BRIDGE.to_owned()
        } else {
            new_bridge_name(&id)
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
            ipam6,
        };
        let network = self.transaction(|agent, journal| {
            let link = agent.host.ensure_bridge(&bridge_config(&network))?;
            journal.undo(Step::RemoveBridge(network.bridge.clone()));
            agent.bridges.insert(network.bridge.clone(), link);
            let mut next = agent.state.clone();
            next.networks.push(network.clone());
            Ok(Change {
                next,
                output: network,
            })
        })?;
        info!(name = %network.name, subnet = %network.ipam.subnet, "network created");
        Ok(network)
    }

    pub fn network_rm(&mut self, term: &str) -> Result<NetworkInfo, AgentError> {
        let info = self.network_inspect(term)?;
        let Some(network) = info.config.clone() else {
            return Err(NetError::Predefined(info.name).into());
        };
        if network.name == DEFAULT_NETWORK {
            return Err(NetError::Predefined(network.name).into());
        }
        if !info.members.is_empty() {
            return Err(NetError::NetworkInUse {
                name: network.name,
                id: network.id,
                containers: info
                    .members
                    .iter()
                    .map(|m| m.container.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }
            .into());
        }
        self.transaction(|agent, journal| {
            // Not named by the state once committed: if deleting it fails,
            // the next start collects it.
            journal.after_commit(Step::RemoveBridge(network.bridge.clone()));
            agent.bridges.remove(&network.bridge);
            let mut next = agent.state.clone();
            next.networks.retain(|n| n.name != network.name);
            // A container that preferred it for its route (and left it)
            // forgets it: a later network of the same name is another one.
            for c in &mut next.containers {
                if c.gateway_network.as_deref() == Some(network.name.as_str()) {
                    c.gateway_network = None;
                }
            }
            Ok(Change { next, output: () })
        })?;
        info!(name = %network.name, "network removed");
        Ok(info)
    }

    /// Every network, Docker's pre-defined ones included, by name.
    pub fn network_list(&self) -> Vec<NetworkInfo> {
        let mut names: Vec<&str> = self
            .state
            .networks
            .iter()
            .map(|n| n.name.as_str())
            .chain([HOST_NETWORK, NONE_NETWORK])
            .collect();
        names.sort_unstable();
        names
            .into_iter()
            .filter_map(|n| self.network_inspect(n).ok())
            .collect()
    }

    pub fn network_inspect(&self, term: &str) -> Result<NetworkInfo, AgentError> {
        let found = lookup::network(&self.state, term)?;
        let name = found.name().to_owned();
        let (id, driver, config) = match found {
            NetworkRef::Bridge(n) => (n.id.clone(), n.driver.clone(), Some(n.clone())),
            NetworkRef::Host => (self.predefined_id(HOST_NETWORK), "host".to_owned(), None),
            NetworkRef::None => (self.predefined_id(NONE_NETWORK), "null".to_owned(), None),
        };
        Ok(NetworkInfo {
            members: self.members(&name),
            name,
            id,
            driver,
            scope: "local".into(),
            config,
        })
    }

    fn predefined_id(&self, name: &str) -> String {
        self.state.predefined.get(name).cloned().unwrap_or_default()
    }

    /// The containers on `network`, in attach order.
    fn members(&self, network: &str) -> Vec<NetworkMember> {
        let mut members = Vec::new();
        for c in &self.state.containers {
            let on_predefined = match &c.mode {
                NetworkMode::Host => network == HOST_NETWORK,
                NetworkMode::None => network == NONE_NETWORK,
                _ => false,
            };
            if on_predefined {
                members.push(NetworkMember {
                    container: c.name.clone(),
                    endpoint: None,
                });
            }
            for e in c.endpoints().iter().filter(|e| e.network == network) {
                members.push(NetworkMember {
                    container: c.name.clone(),
                    endpoint: Some(e.clone()),
                });
            }
        }
        members
    }

    /// A network's bridge link, from the cache or the kernel.
    pub(crate) fn bridge_link(
        &mut self,
        network: &Network,
    ) -> Result<crate::host::BridgeLink, AgentError> {
        if let Some(link) = self.bridges.get(&network.bridge) {
            return Ok(*link);
        }
        let link = self.host.ensure_bridge(&bridge_config(network))?;
        self.bridges.insert(network.bridge.clone(), link);
        Ok(link)
    }
}
