//! `netagent-cni`, the CNI plugin container runtimes invoke (CNI 1.1.0,
//! answering 1.0.0 and 0.4.0 in their own formats).
//!
//! What is here is the protocol, with no side effects: reading the
//! `CNI_*` environment ([`env`]) and the network configuration
//! ([`config`]), the versions the plugin speaks ([`version`]), the success
//! result in each version's format ([`result`]) and the spec's error
//! object ([`error`]); and running a delegated (IPAM) plugin from
//! `CNI_PATH` ([`delegate`]). The commands
//! (ADD, DEL, CHECK, STATUS, GC) talk to the running daemon through the
//! agent's API and arrive with the rest of the CNI issue; until then there
//! is no binary, so a runtime configured with `"type": "netagent-cni"`
//! fails to find the plugin rather than getting a result that did nothing.

pub mod config;
pub mod delegate;
pub mod env;
pub mod error;
pub mod result;
pub mod version;
