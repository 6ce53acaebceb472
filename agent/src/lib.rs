//! netagent: the agent that drives the eBPF datapath, as a library so the
//! integration tests (and the CNI plugin, through `api` and `client`) use
//! the same types.
//!
//! Modules, bottom up (each uses only those before it; a test checks):
//! - model and parsing: `spec`, `portmap`, `ipam`, `masq`, `model`, `names`;
//! - the kernel: `datapath` (BPF maps and links), `host` (netlink,
//!   namespaces, port reservations), each a set of traits with fakes;
//! - `state` (the state file), `api` (wire types), `error`, `lookup`,
//!   `links` (legacy links: variables, datapath holes);
//! - `dns` (the embedded resolver: its directory, answers, forwarding,
//!   the containers' files, its thread);
//! - the agent: `endpoints`, `journal`, `agent` (the struct and the commit
//!   rule), then one module per domain: `publications`, `hostports`,
//!   `networks`, `containers`, `reconcile`, `cni` (netagent-cni's
//!   attachments, built on `containers` and `networks`), and `discovery`
//!   (a container's resolv.conf, hosts and link variables);
//! - the edges: `server` (the daemon), `client`, `cli`, `output`.

pub mod agent;
pub mod api;
pub mod cli;
pub mod client;
pub mod cni;
pub mod containers;
pub mod datapath;
pub mod discovery;
pub mod dns;
pub mod endpoints;
pub mod error;
pub mod host;
pub mod hostports;
pub mod ipam;
pub mod ipam6;
pub mod journal;
pub mod links;
pub mod localaddr;
pub mod lookup;
pub mod masq;
pub mod model;
pub mod names;
pub mod networks;
pub mod output;
pub mod portmap;
pub mod publications;
pub mod reconcile;
pub mod server;
pub mod spec;
pub mod state;

#[cfg(test)]
mod layering;
