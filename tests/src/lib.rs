//! Shared helpers of netagent's integration tests: frames built and
//! verified from scratch, and RAII guards for namespaces, bpffs and the
//! daemon.

pub mod cni;
pub mod dns;
pub mod dp;
pub mod netns;
pub mod packet;
pub mod probe;
pub mod runtime;
pub mod traffic;
pub mod world;
