//! The undo journal of a multi-step operation, and the one rule for when
//! the state file is written.
//!
//! An operation checks everything it can first, then changes the kernel
//! step by step. Each step that can be undone (an interface made, a map
//! entry written, a port reserved) records its compensation with
//! [`Journal::undo`] as soon as it is done. Steps that cannot be undone
//! (deleting an interface, letting go of a port) are only recorded, with
//! [`Journal::after_commit`], to run once the operation has committed.
//!
//! **The rule**: the state file is written once per operation, after every
//! kernel object it names exists and before any object it stops naming is
//! removed. That write is the commit ([`crate::agent::Agent::transaction`]):
//! if it (or any step before it) fails, the compensations run in reverse
//! order and the error is returned, so an error changes nothing; once it
//! succeeds, the after-commit steps run, best effort. A crash at any point
//! leaves the kernel holding at most objects the state does not name,
//! which the next start's reconcile collects: a crash loses nothing that
//! was acknowledged.

use datapath_common::{PubKey, PubValue};
use tracing::warn;

use crate::{
    datapath::Datapath,
    endpoints,
    host::{Host, HostPort},
    model::Endpoint,
};

/// One kernel step, as a compensation or a deferred cleanup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Let go of a host port reservation.
    ReleasePort(HostPort),
    /// Take a publication out of the map.
    RemovePublication(PubKey),
    /// Write a publication entry (back) into the map.
    PutPublication(PubKey, PubValue),
    /// Delete an endpoint's veth, program link and map entries.
    DestroyEndpoint(Endpoint),
    /// Delete a bridge.
    RemoveBridge(String),
    /// Point a container's default route at `gateway` through `ifname`
    /// (inside the container's namespace), or remove it (`None`).
    DefaultRoute {
        netns: std::path::PathBuf,
        ifname: String,
        gateway: Option<crate::host::DefaultRoute>,
    },
}

/// Compensations of the steps done so far, and the cleanups to run after
/// the commit.
#[derive(Debug, Default)]
#[must_use = "a journal must be committed or rolled back"]
pub struct Journal {
    undo: Vec<Step>,
    after_commit: Vec<Step>,
}

impl Journal {
    /// Records the compensation of a step just done.
    pub fn undo(&mut self, step: Step) {
        self.undo.push(step);
    }

    /// Records a step to run once the operation has committed.
    pub fn after_commit(&mut self, step: Step) {
        self.after_commit.push(step);
    }

    /// Runs the compensations, newest first. Each failure is logged and
    /// the rest still run (what is left is collected by reconcile).
    pub fn roll_back<D: Datapath, H: Host>(self, datapath: &mut D, host: &mut H) {
        for step in self.undo.into_iter().rev() {
            run(step, datapath, host);
        }
    }

    /// Runs the after-commit steps, in the order they were recorded.
    pub fn finish<D: Datapath, H: Host>(self, datapath: &mut D, host: &mut H) {
        for step in self.after_commit {
            run(step, datapath, host);
        }
    }

    /// The compensations recorded so far, oldest first (for tests).
    pub fn pending_undo(&self) -> &[Step] {
        &self.undo
    }
}

/// Carries out one step, logging a failure.
fn run<D: Datapath, H: Host>(step: Step, datapath: &mut D, host: &mut H) {
    let failed = match &step {
        Step::ReleasePort(port) => {
            host.release_port(*port);
            None
        }
        Step::RemovePublication(key) => datapath
            .remove_publication(key)
            .err()
            .map(|e| e.to_string()),
        Step::PutPublication(key, value) => datapath
            .upsert_publication(key, value)
            .err()
            .map(|e| e.to_string()),
        Step::DestroyEndpoint(ep) => {
            endpoints::destroy(datapath, host, ep);
            None
        }
        Step::RemoveBridge(name) => host.remove_bridge(name).err().map(|e| e.to_string()),
        Step::DefaultRoute {
            netns,
            ifname,
            gateway,
        } => host
            .set_default_route(netns, ifname, *gateway)
            .err()
            .map(|e| e.to_string()),
    };
    if let Some(error) = failed {
        warn!(?step, %error, "a compensation or cleanup step failed; reconcile collects what is left");
    }
}
