//! `netagent-cni`, the CNI plugin container runtimes invoke (CNI 1.1.0,
//! answering 1.0.0 and 0.4.0 in their own formats).
//!
//! The protocol, without side effects: the `CNI_*` environment
//! ([`env`]), the network configuration ([`config`]), the versions the
//! plugin speaks ([`version`]), the success result in each version's
//! format ([`result`]) and the spec's error object ([`error`]). The side
//! effects: running a delegated (IPAM) plugin from `CNI_PATH`
//! ([`delegate`]), and the commands ([`plugin`]), each a request to the
//! running daemon through the agent's API (the daemon owns all state).

pub mod config;
pub mod delegate;
pub mod env;
pub mod error;
pub mod plugin;
pub mod result;
pub mod version;
