//! The local API between the CLI and the daemon: one JSON request per line
//! on a Unix socket, one JSON response line back.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::{
    agent::Stats,
    containers::{ContainerAttach, ContainerInfo, NetworkCreate, NetworkInfo},
    model::{Container, Endpoint, Network},
    spec::PortSpec,
    state::Publication,
};

/// Where the daemon listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/netagent/netagent.sock";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Publish a `[HOSTIP:]HOSTPORT->CONTAINERIP:CONTAINERPORT[/PROTO]` spec.
    Publish {
        spec: String,
    },
    /// Publish every spec or none (`netagent publish --file`).
    PublishMany {
        specs: Vec<String>,
    },
    /// Remove the publication `spec` names.
    Unpublish {
        spec: String,
    },
    /// Publications, optionally only those to one container address.
    List {
        container_ip: Option<Ipv4Addr>,
    },
    /// Counters.
    Stats,
    NetworkCreate(NetworkCreate),
    NetworkRm {
        name: String,
    },
    NetworkLs,
    NetworkInspect {
        name: String,
    },
    NetworkConnect {
        network: String,
        container: String,
        ip: Option<Ipv4Addr>,
        #[serde(default)]
        aliases: Vec<String>,
    },
    NetworkDisconnect {
        network: String,
        container: String,
    },
    ContainerAttach(ContainerAttach),
    ContainerDetach {
        name: String,
    },
    ContainerLs,
    ContainerInspect {
        name: String,
    },
    /// `netagent port NAME [CPORT[/PROTO]]`.
    ContainerPorts {
        name: String,
        /// `CPORT[/PROTO]` as typed.
        filter: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Published { publication: Publication },
    PublishedMany { publications: Vec<Publication> },
    Unpublished { publication: Publication },
    Publications { publications: Vec<Publication> },
    Stats { stats: Stats },
    Network { network: Network },
    Networks { networks: Vec<Network> },
    NetworkInfo { info: NetworkInfo },
    Endpoint { endpoint: Endpoint },
    Container { info: ContainerInfo },
    Containers { containers: Vec<ContainerInfo> },
    Detached { container: Container },
    Ports { ports: Vec<PortSpec> },
    Error { message: String },
}
