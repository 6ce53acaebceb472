//! The agent: desired state in, kernel maps and interfaces out.
//!
//! [`Agent`] holds the state, its store, the kernel behind the
//! [`Datapath`] and [`Host`] traits, and the runtime caches. Its
//! operations live in one module per domain (`publications`, `networks`,
//! `containers`, `reconcile`; `endpoints` and `hostports` are their
//! building blocks), each an `impl Agent` block; this module holds only
//! what they share: the one commit rule ([`Agent::transaction`], see
//! `journal`) and name resolution.

use std::{collections::HashMap, net::IpAddr};

use tracing::error;

use crate::{
    datapath::Datapath,
    error::AgentError,
    host::{BridgeLink, Host},
    journal::Journal,
    spec::Proto,
    state::{DesiredState, StateStore},
};

pub struct Agent<D, H> {
    pub(crate) store: StateStore,
    /// What the state file says: changed only by [`Agent::transaction`]
    /// (and reconcile, through the same store).
    pub(crate) state: DesiredState,
    pub(crate) datapath: D,
    pub(crate) host: H,
    /// Where the next random host port search starts, per (host IP,
    /// protocol): Docker's rotating allocator, so a just-freed port is not
    /// handed out again at once. Not persisted, as in Docker.
    pub(crate) port_cursors: HashMap<(IpAddr, Proto), u16>,
    /// Bridge interfaces by name, as [`Host::ensure_bridge`] last reported
    /// them (filled at network creation and at start).
    pub(crate) bridges: HashMap<String, BridgeLink>,
    /// The served interfaces and their XDP modes (`serve_interfaces`).
    pub(crate) served: Vec<crate::api::ServedInterface>,
    /// The embedded DNS resolver, when the daemon runs one (unit tests
    /// run without).
    pub(crate) resolver: Option<crate::dns::Resolver>,
}

/// What one operation changes: the next state, and what it returns.
pub(crate) struct Change<T> {
    pub next: DesiredState,
    pub output: T,
}

impl<D: Datapath, H: Host> Agent<D, H> {
    /// Loads the desired state; call the reconcilers before serving.
    pub fn new(store: StateStore, datapath: D, host: H) -> Result<Self, AgentError> {
        let state = store.load()?;
        Ok(Self {
            store,
            state,
            datapath,
            host,
            port_cursors: HashMap::new(),
            bridges: HashMap::new(),
            served: Vec::new(),
            resolver: None,
        })
    }

    pub fn datapath_mut(&mut self) -> &mut D {
        &mut self.datapath
    }

    pub fn host_mut(&mut self) -> &mut H {
        &mut self.host
    }

    /// The state as last committed.
    pub fn state(&self) -> &DesiredState {
        &self.state
    }

    /// Runs one multi-step operation under the commit rule (module doc of
    /// `journal`): `op` does its kernel steps, recording each one's
    /// compensation in the journal, and returns the next state; this
    /// writes it (the commit), then runs the after-commit steps. If `op`
    /// or the write fails, the compensations run in reverse and nothing
    /// has changed.
    pub(crate) fn transaction<T>(
        &mut self,
        op: impl FnOnce(&mut Self, &mut Journal) -> Result<Change<T>, AgentError>,
    ) -> Result<T, AgentError> {
        let mut journal = Journal::default();
        let change = match op(self, &mut journal) {
            Ok(change) => change,
            Err(e) => {
                journal.roll_back(&mut self.datapath, &mut self.host);
                return Err(e);
            }
        };
        if let Err(e) = self.store.save(&change.next) {
            journal.roll_back(&mut self.datapath, &mut self.host);
            return Err(e.into());
        }
        self.state = change.next;
        journal.finish(&mut self.datapath, &mut self.host);
        self.sync_open_ports();
        self.sync_resolver();
        Ok(change.output)
    }

    /// Gives the daemon's resolver to the agent, and brings it in line
    /// with the state.
    pub fn set_resolver(&mut self, resolver: crate::dns::Resolver) {
        self.resolver = Some(resolver);
        self.sync_resolver();
    }

    /// Closes the resolvers of containers whose namespace is gone (see
    /// `dns::Resolver::close_orphans`).
    pub fn close_orphan_resolvers(&mut self) {
        if let Some(resolver) = self.resolver.as_mut() {
            resolver.close_orphans(&mut self.host, &mut self.datapath);
        }
    }

    /// The resolver, if the daemon runs one.
    pub fn resolver(&self) -> Option<&crate::dns::Resolver> {
        self.resolver.as_ref()
    }

    /// Brings the embedded resolver (its sockets, names and the
    /// containers' files) in line with the state, after every change.
    /// Best effort, as [`Self::sync_open_ports`].
    pub(crate) fn sync_resolver(&mut self) {
        if let Some(resolver) = self.resolver.as_mut() {
            resolver.sync(&self.state, &mut self.host, &mut self.datapath);
        }
    }

    /// Brings the open-port map in line with the state, after a change of
    /// publications or endpoints. Best effort: a failure is logged, and
    /// the next start's reconcile writes it again.
    pub(crate) fn sync_open_ports(&mut self) {
        let ports = self.state.open_ports();
        if let Err(e) = self.datapath.set_open_ports(&ports) {
            error!(error = %e, "updating the open-port map (routed networks)");
        }
        let holes = crate::links::holes(&self.state);
        if let Err(e) = self.datapath.set_link_holes(&holes) {
            error!(error = %e, "updating the link-hole map (legacy links, icc=false)");
        }
        let pubs6 = self.state.publications6();
        if let Err(e) = self.datapath.set_publications6(&pubs6) {
            error!(error = %e, "updating the IPv6 publication map (dual-stack containers)");
        }
    }
}

#[cfg(test)]
mod tests;
