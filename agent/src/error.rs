//! The agent's errors. Refusals carry Docker's wording where users and
//! scripts know it; kernel and state errors name the operation.

use std::{net::IpAddr, path::PathBuf};

use datapath_common::MAX_PUBLICATIONS;

use crate::{
    datapath::DatapathError,
    host::HostError,
    ipam::IpamError,
    portmap::PortMapError,
    spec::{PortSpec, Proto, SpecError, host_port_str},
    state::StateError,
};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// Docker's wording, which users and scripts know.
    #[error(
        "Bind for {} failed: port is already allocated ({existing} is published)",
        host_port_str(*ip, *port)
    )]
    AlreadyAllocated {
        ip: IpAddr,
        port: u16,
        existing: PortSpec,
    },
    #[error("no publication {0}")]
    NotPublished(PortSpec),
    #[error("{published} is published, not {requested}")]
    Mismatch {
        published: PortSpec,
        requested: PortSpec,
    },
    #[error("publication table is full ({MAX_PUBLICATIONS} entries)")]
    Full,
    #[error("saving state: {0}")]
    State(#[from] StateError),
    #[error("datapath: {0}")]
    Datapath(#[from] DatapathError),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    PortMap(#[from] PortMapError),
    #[error(transparent)]
    Net(#[from] NetError),
    /// Docker's wrapping of a port error of a container's endpoint.
    #[error(
        "driver failed programming external connectivity on endpoint {endpoint} ({id}): {source}"
    )]
    Connectivity {
        endpoint: String,
        id: String,
        #[source]
        source: Box<AgentError>,
    },
}

/// Refusals of network and container requests, with Docker's wording
/// where users know it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetError {
    #[error("network {0} not found")]
    NoSuchNetwork(String),
    /// Docker's ambiguity error for an ID prefix naming several networks.
    #[error("network {prefix} is ambiguous ({count} matches found based on ID prefix)")]
    AmbiguousNetwork { prefix: String, count: usize },
    #[error("network with name {0} already exists")]
    NetworkExists(String),
    #[error(
        "invalid network name {0:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, at most 63 characters"
    )]
    InvalidNetworkName(String),
    #[error(
        "invalid alias {0:?}: a DNS name of labels [a-zA-Z0-9_-] (at most 63 characters each, 253 in all)"
    )]
    InvalidAlias(String),
    #[error(
        "error while removing network: network {name} id {id} has active endpoints ({containers})"
    )]
    NetworkInUse {
        name: String,
        id: String,
        containers: String,
    },
    #[error("{0} is a pre-defined network and cannot be removed")]
    Predefined(String),
    #[error("plugin \"{0}\" not found: only the bridge driver is available")]
    Driver(String),
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    /// Docker's ambiguity error for an ID prefix naming several containers.
    #[error("multiple IDs found with provided prefix: {0}")]
    AmbiguousContainer(String),
    #[error(
        "Invalid container name ({0}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, at most 63 characters"
    )]
    InvalidContainerName(String),
    #[error(
        "Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name."
    )]
    NameInUse { name: String, id: String },
    #[error("conflicting options: {0} and the container type network mode")]
    JoinedConflict(&'static str),
    #[error(
        "container sharing network namespace with another container or host cannot be connected to any other network"
    )]
    JoinedConnect,
    /// Docker's `ErrConflictHostNetwork`.
    #[error("container cannot be disconnected from host network or connected to host network")]
    HostNetworkConflict,
    /// Docker's `ErrConflictNoNetwork`.
    #[error(
        "container cannot be connected to multiple networks with one of the networks in private (none) mode"
    )]
    NoneNetworkConflict,
    #[error("cannot join container {0}: it is the container being attached")]
    JoinSelf(String),
    #[error(
        "container {name} has containers joined to its network stack ({joined}); detach them first"
    )]
    HasJoined { name: String, joined: String },
    #[error("endpoint with name {container} already exists in network {network}")]
    AlreadyConnected { container: String, network: String },
    #[error("container {container} is not connected to network {network}")]
    NotConnected { container: String, network: String },
    #[error("user specified IP address is supported on user defined networks only")]
    StaticIpOnDefault,
    #[error("network-scoped alias is supported only for containers in user defined networks")]
    AliasOnDefault,
    #[error("container {container} cannot publish ports: network {network} is internal")]
    InternalPublish { container: String, network: String },
    #[error(
        "container {container} publishes ports through network {network}, its only network with outside access; detach the container instead"
    )]
    LastPublishingNetwork { container: String, network: String },
    #[error(
        "cannot publish on host address {host_ip}: container address {container_ip} has no IPv6 address; a publication on an IPv6 host address other than ::1 reaches its container over IPv6, and netagent does not translate IPv6 to IPv4"
    )]
    NoIpv6Target {
        host_ip: IpAddr,
        container_ip: IpAddr,
    },
    #[error(
        "cannot publish {spec}: {} is not the IPv6 address of one of netagent's containers (the IPv6 datapath delivers to its own containers only)",
        spec.container_ip
    )]
    ForeignIpv6Target { spec: PortSpec },
    #[error("No public port '{port}' published for {container}")]
    NoPublicPort { port: String, container: String },
    #[error("all ports are allocated (no free {proto} port in {lo}-{hi} on {ip})")]
    AllPortsAllocated {
        ip: IpAddr,
        lo: u16,
        hi: u16,
        proto: Proto,
    },
    #[error("invalid network option {0}")]
    BadOption(String),
    #[error(
        "invalid interface name {0:?}: 1 to 15 bytes, no '/', ':' or whitespace, not '.' or '..'"
    )]
    InvalidIfname(String),
    #[error("container {container} already has an interface named {ifname}")]
    IfnameInUse { container: String, ifname: String },
    #[error("invalid MAC address {0:?}: expected a unicast aa:bb:cc:dd:ee:ff")]
    InvalidMac(String),
    #[error("invalid environment variable {0:?}: expected VAR=VALUE, VAR not empty")]
    InvalidEnv(String),
    /// Docker's `ValidateDNSSearch` wording.
    #[error("{0} is not a valid domain")]
    InvalidDnsSearch(String),
    #[error("invalid DNS option {0:?}: one word, as resolv.conf's options take it")]
    InvalidDnsOption(String),
    #[error("invalid hostname {0:?}: a DNS name of labels [a-zA-Z0-9_-]")]
    InvalidHostname(String),
    /// Docker's `ErrConflictNetworkHostname`.
    #[error("conflicting options: hostname and the network mode")]
    HostnameConflict,
    /// Docker's `ErrConflictNetworkAndDNS`.
    #[error("conflicting options: dns and the network mode")]
    DnsConflict,
    /// Docker's `ErrConflictContainerNetworkAndLinks`.
    #[error(
        "conflicting options: container type network can't be used with links. This would result in undefined behavior"
    )]
    JoinedLinks,
    /// Docker's `ErrConflictHostNetworkAndLinks`.
    #[error(
        "conflicting options: host type networking can't be used with links. This would result in undefined behavior"
    )]
    HostLinks,
    #[error("invalid link {0:?}: expected NAME or NAME:ALIAS")]
    InvalidLink(String),
    /// Docker's wording for a link to a container that is not running
    /// (here: not attached to a network the recipient is on).
    #[error("Cannot link to a non running container: {name} AS {alias}")]
    LinkNotRunning { name: String, alias: String },
    #[error("Cannot link to /{0}, as it does not belong to the default network")]
    LinkNotOnDefault(String),
    #[error(
        "container {0}'s interface is another CNI plugin's (netagent-cni chained after it publishes its ports only): it cannot join or leave netagent networks"
    )]
    ChainedConnect(String),
    #[error(
        "container {} already has interface {} on CNI network {} (DEL it first)",
        .0.container_id, .0.ifname, .0.network
    )]
    CniAttachmentExists(crate::api::CniKey),
    #[error(
        "no CNI attachment of container {} with interface {} on network {}",
        .0.container_id, .0.ifname, .0.network
    )]
    NoCniAttachment(crate::api::CniKey),
    #[error(
        "container {container_id} (netagent container {name}) is already attached in the other CNI mode, or chained once already: one container is either netagent's (main plugin) or another plugin's with netagent chained after it, once"
    )]
    CniModeMix { container_id: String, name: String },
    #[error(
        "{0} is a pre-defined network without interfaces (host or none): a CNI network needs a bridge network"
    )]
    CniPredefined(String),
    #[error("container {container_id} was attached in another network namespace than {path}")]
    CniNetnsMismatch { container_id: String, path: PathBuf },
    #[error(
        "the previous plugin's result has no IPv4 address for {ifname}: netagent publishes ports to IPv4 addresses of interfaces it did not make"
    )]
    CniNoIpv4 { ifname: String },
    #[error("network {network} exists with {what} {has}, but the configuration asks for {asked}")]
    CniNetworkDiffers {
        network: String,
        what: String,
        has: String,
        asked: String,
    },
    #[error(
        "CHECK of container {} interface {} on network {}: {what}",
        key.container_id, key.ifname, key.network
    )]
    CniCheck {
        key: crate::api::CniKey,
        what: String,
    },
    #[error("--netns is required (the container's network namespace)")]
    NetnsRequired,
    #[error(
        "network namespace {path} is not the one of container {target}, whose network stack --network container:{target} shares"
    )]
    NetnsNotShared { path: PathBuf, target: String },
    #[error(
        "network namespace {path} is not the host's: --network host shares the host's network stack (leave --netns out)"
    )]
    NotHostNetns { path: PathBuf },
    #[error(
        "network namespace {path} is already attached as container {container}; use --network container:{container} to share it"
    )]
    NetnsInUse { path: PathBuf, container: String },
    #[error(
        "network namespace {path} is the host's own: a container needs a namespace of its own (ip netns add, or the runtime's /proc/PID/ns/net)"
    )]
    HostNetns { path: PathBuf },
    #[error(
        "network namespace {path} is no longer container {container}'s (the path names another namespace now); detach the container"
    )]
    NetnsReplaced { path: PathBuf, container: String },
}

impl AgentError {
    /// What kind of failure this is, for API clients that answer by kind
    /// (the CNI plugin's error codes).
    pub fn kind(&self) -> crate::api::ErrorKind {
        use crate::api::ErrorKind;
        match self {
            AgentError::Spec(_) | AgentError::PortMap(_) | AgentError::Mismatch { .. } => {
                ErrorKind::Invalid
            }
            AgentError::AlreadyAllocated { .. } => ErrorKind::Conflict,
            AgentError::NotPublished(_) => ErrorKind::NotFound,
            AgentError::Full => ErrorKind::Exhausted,
            AgentError::State(_) | AgentError::Datapath(_) => ErrorKind::Internal,
            AgentError::Host(e) => match e {
                HostError::PortInUse { .. } => ErrorKind::Conflict,
                HostError::NotLocal { .. } => ErrorKind::Invalid,
                HostError::Netns { .. } => ErrorKind::NotFound,
                HostError::Netlink { .. } | HostError::Io { .. } | HostError::Other(_) => {
                    ErrorKind::Internal
                }
            },
            AgentError::Ipam(e) => match e {
                IpamError::InUse { .. } | IpamError::InUse6 { .. } => ErrorKind::Conflict,
                IpamError::Exhausted { .. }
                | IpamError::Exhausted6 { .. }
                | IpamError::NoPool
                | IpamError::NoPool6 => ErrorKind::Exhausted,
                _ => ErrorKind::Invalid,
            },
            AgentError::Net(e) => e.kind(),
            AgentError::Connectivity { source, .. } => source.kind(),
        }
    }
}

impl NetError {
    fn kind(&self) -> crate::api::ErrorKind {
        use crate::api::ErrorKind;
        match self {
            NetError::NoSuchNetwork(_)
            | NetError::NoSuchContainer(_)
            | NetError::NoCniAttachment(_) => ErrorKind::NotFound,
            NetError::NetworkExists(_)
            | NetError::NameInUse { .. }
            | NetError::AlreadyConnected { .. }
            | NetError::NetnsInUse { .. }
            | NetError::NetworkInUse { .. }
            | NetError::IfnameInUse { .. }
            | NetError::CniAttachmentExists(_)
            | NetError::CniModeMix { .. }
            | NetError::HasJoined { .. } => ErrorKind::Conflict,
            NetError::AllPortsAllocated { .. } => ErrorKind::Exhausted,
            NetError::CniCheck { .. } => ErrorKind::Broken,
            _ => ErrorKind::Invalid,
        }
    }
}
