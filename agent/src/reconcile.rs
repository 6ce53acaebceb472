//! Reconcile at start: bridges, endpoints, endpoint map entries and
//! program links converge on the state file, and the served interfaces on
//! the daemon's `--iface` list. Never gives up half-way: what fails for
//! one item goes into the report (and the log), every other item is done.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use tracing::{error, info, warn};

use crate::{
    agent::Agent,
    api::ServedInterface,
    datapath::{Datapath, XdpAttachMode, xdp_mode},
    endpoints::{self, BRIDGE_PREFIX, VETH_PREFIX, bridge_config, endpoint_config, gateway_of},
    error::AgentError,
    host::{EndpointLink, Host, IFACE_PREFIX},
    model::{Container, Endpoint, Network},
};

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

/// What [`Agent::serve_interfaces`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ServeReport {
    pub served: Vec<ServedInterface>,
    pub unserved: Vec<String>,
}

impl<D: Datapath, H: Host> Agent<D, H> {
    /// Attaches the datapath to every interface in `ifaces`, each in the
    /// XDP mode `requested` gives its driver (`datapath::xdp_mode`), and
    /// detaches it from every other it is attached to. netagent's own
    /// interfaces (bridges, container veths) are refused before anything
    /// is touched; an interface that cannot be served is an error (the
    /// daemon does not start half-serving what it was told to serve).
    pub fn serve_interfaces(
        &mut self,
        ifaces: &[String],
        requested: XdpAttachMode,
    ) -> Result<ServeReport, AgentError> {
        if let Some(own) = ifaces.iter().find(|i| i.starts_with(IFACE_PREFIX)) {
            return Err(crate::host::HostError::Other(format!(
                "--iface {own}: interfaces named {IFACE_PREFIX}* are netagent's own bridges and container veths, never served"
            ))
            .into());
        }
        let mut report = ServeReport::default();
        for iface in ifaces {
            let driver = self.host.driver(iface).unwrap_or_else(|e| {
                warn!(iface, error = %e, "cannot read the interface's driver");
                None
            });
            let choice = xdp_mode::choose(requested, driver.as_deref());
            self.datapath.serve(iface, choice.mode)?;
            info!(iface, driver = driver.as_deref().unwrap_or("none"), mode = ?choice.mode,
                reason = %choice.reason, "serving interface");
            report.served.push(ServedInterface {
                name: iface.clone(),
                driver,
                xdp_mode: choice.mode,
                reason: choice.reason,
            });
        }
        self.served = report.served.clone();
        match self.datapath.served() {
            Ok(served) => {
                for stale in served.into_iter().filter(|s| !ifaces.contains(s)) {
                    match self.datapath.unserve(&stale) {
                        Ok(()) => report.unserved.push(stale),
                        Err(e) => {
                            error!(iface = %stale, error = %e, "detaching from an interface no longer served")
                        }
                    }
                }
            }
            Err(e) => error!(error = %e, "listing served interfaces"),
        }
        Ok(report)
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
                if let Err(e) = self
                    .bridge_link(network)
                    .and_then(|bridge| endpoints::program(&mut self.datapath, ep, network, bridge))
                {
                    report.errors.push(format!("{what}: {e}"));
                }
                want.keep(ep);
            }
        }
        self.collect_strays(&want, &networks, &mut report);
        if changed {
            // The kernel's facts (ifindex, MAC) into the state, under the
            // one commit rule; nothing to undo if the write fails.
            let saved = self.transaction(|agent, _| {
                let mut next = agent.state.clone();
                next.containers = containers;
                Ok(crate::agent::Change { next, output: () })
            });
            if let Err(e) = saved {
                report.errors.push(e.to_string());
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
        let route = gateway_of(container, &self.state.networks) == Some(index);
        let link = self.host.add_endpoint(&endpoint_config(
            &container.netns,
            network,
            &ep.host_ifname,
            &ep.ifname,
            crate::model::EndpointIps {
                v4: ep.ip,
                v6: ep.ip6,
            },
            // The MAC it had: a CNI runtime may have asked for it, and
            // its IPv6 link-local address derives from it.
            crate::host::parse_mac(&ep.mac),
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
        match self.datapath.endpoint_ifaces6() {
            Ok(ifaces) => {
                for ifindex in ifaces.into_iter().filter(|i| !want.ifaces6.contains(i)) {
                    match self.datapath.remove_endpoint_iface6(ifindex) {
                        Ok(()) => report.collected += 1,
                        Err(e) => report.errors.push(e.to_string()),
                    }
                }
            }
            Err(e) => report.errors.push(e.to_string()),
        }
        match self.datapath.endpoint_addrs6() {
            Ok(addrs) => {
                for addr in addrs.into_iter().filter(|a| !want.addrs6.contains(a)) {
                    match self.datapath.remove_endpoint_addr6(addr) {
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
    ifaces6: BTreeSet<u32>,
    addrs6: BTreeSet<std::net::Ipv6Addr>,
    links: BTreeSet<String>,
}

impl Wanted {
    fn keep(&mut self, ep: &Endpoint) {
        self.ifaces.insert(ep.host_ifindex);
        self.addrs.insert(ep.ip);
        if let Some(ip6) = ep.ip6 {
            self.ifaces6.insert(ep.host_ifindex);
            self.addrs6.insert(ip6);
            if let Some(mac) = crate::host::parse_mac(&ep.mac) {
                self.addrs6.insert(crate::host::link_local6(mac));
            }
        }
        self.links.insert(ep.host_ifname.clone());
    }
}
