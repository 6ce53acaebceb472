//! netagent: the agent that drives the eBPF datapath, as a library so the
//! integration tests can load the same object and reuse the same types.

pub mod agent;
pub mod api;
pub mod client;
pub mod containers;
pub mod datapath;
pub mod host;
pub mod ipam;
pub mod localaddr;
pub mod masq;
pub mod model;
pub mod output;
pub mod portmap;
pub mod server;
pub mod spec;
pub mod state;
