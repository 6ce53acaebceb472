//! The local API between the CLI and the daemon: one JSON request per line
//! on a Unix socket, one JSON response line back.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::{agent::Stats, state::Publication};

/// Where the daemon listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/netagent/netagent.sock";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Publish a `[HOSTIP:]HOSTPORT->CONTAINERIP:CONTAINERPORT[/PROTO]` spec.
    Publish { spec: String },
    /// Publish every spec or none (`netagent publish --file`).
    PublishMany { specs: Vec<String> },
    /// Remove the publication `spec` names.
    Unpublish { spec: String },
    /// Publications, optionally only those to one container address.
    List { container_ip: Option<Ipv4Addr> },
    /// Counters.
    Stats,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Published { publication: Publication },
    PublishedMany { publications: Vec<Publication> },
    Unpublished { publication: Publication },
    Publications { publications: Vec<Publication> },
    Stats { stats: Stats },
    Error { message: String },
}
