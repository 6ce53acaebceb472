//! Service discovery: the embedded DNS resolver every container on a
//! user-defined network reaches at 127.0.0.11, and the resolv.conf and
//! hosts files containers get.
//!
//! - `directory`: who resolves what, built from the state (pure);
//! - `answer`: one query answered from the directory, or to forward
//!   (pure, hickory for the protocol);
//! - `forward`: asking the upstream servers;
//! - `files`: resolv.conf and hosts, rendered and written;
//! - `service`: the resolver thread and the agent's handle on it.

pub mod answer;
pub mod directory;
pub mod files;
pub mod forward;
pub mod service;

pub use service::{Resolver, ResolverConfig};
