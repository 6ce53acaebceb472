//! Finding networks and containers the way Docker does: by full ID, by
//! name, or by a unique ID prefix, with Docker's ambiguity errors.
//!
//! The pre-defined networks `host` and `none` are not bridges and are not
//! in the state's network list; they are found here all the same, so every
//! command can refuse them with Docker's own words.

use crate::{
    error::NetError,
    model::{Container, HOST_NETWORK, NONE_NETWORK, Network},
    state::DesiredState,
};

/// A network a request names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetworkRef<'a> {
    Bridge(&'a Network),
    /// The host's own network stack (`--network host`).
    Host,
    /// No network at all, loopback only (`--network none`).
    None,
}

impl NetworkRef<'_> {
    pub fn name(&self) -> &str {
        match self {
            NetworkRef::Bridge(n) => &n.name,
            NetworkRef::Host => HOST_NETWORK,
            NetworkRef::None => NONE_NETWORK,
        }
    }
}

/// Docker's order: a full ID, then a name, then a unique ID prefix.
fn resolve<'a, T>(
    items: impl Iterator<Item = (&'a str, &'a str, T)> + Clone,
    term: &str,
) -> Result<Option<T>, usize> {
    if let Some((_, _, t)) = items.clone().find(|(id, _, _)| *id == term) {
        return Ok(Some(t));
    }
    if let Some((_, _, t)) = items.clone().find(|(_, name, _)| *name == term) {
        return Ok(Some(t));
    }
    if term.is_empty() || !term.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let mut hits = items.filter(|(id, _, _)| id.starts_with(term));
    match (hits.next(), hits.count()) {
        (None, _) => Ok(None),
        (Some((_, _, t)), 0) => Ok(Some(t)),
        (Some(_), more) => Err(more + 1),
    }
}

/// The network `term` names (a name, a full ID or a unique ID prefix).
pub fn network<'a>(state: &'a DesiredState, term: &str) -> Result<NetworkRef<'a>, NetError> {
    let bridges = state
        .networks
        .iter()
        .map(|n| (n.id.as_str(), n.name.as_str(), NetworkRef::Bridge(n)));
    let predefined = [
        (HOST_NETWORK, NetworkRef::Host),
        (NONE_NETWORK, NetworkRef::None),
    ]
    .into_iter()
    .filter_map(|(name, r)| state.predefined.get(name).map(|id| (id.as_str(), name, r)));
    match resolve(bridges.chain(predefined), term) {
        Ok(Some(found)) => Ok(found),
        Ok(None) if term == HOST_NETWORK => Ok(NetworkRef::Host),
        Ok(None) if term == NONE_NETWORK => Ok(NetworkRef::None),
        Ok(None) => Err(NetError::NoSuchNetwork(term.to_owned())),
        Err(count) => Err(NetError::AmbiguousNetwork {
            prefix: term.to_owned(),
            count,
        }),
    }
}

/// The bridge network `term` names; `host` and `none` are not found.
pub fn bridge_network<'a>(state: &'a DesiredState, term: &str) -> Result<&'a Network, NetError> {
    match network(state, term)? {
        NetworkRef::Bridge(n) => Ok(n),
        _ => Err(NetError::NoSuchNetwork(term.to_owned())),
    }
}

/// The container `term` names (a name, a full ID or a unique ID prefix).
pub fn container<'a>(state: &'a DesiredState, term: &str) -> Result<&'a Container, NetError> {
    let all = state
        .containers
        .iter()
        .map(|c| (c.id.as_str(), c.name.as_str(), c));
    match resolve(all, term) {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err(NetError::NoSuchContainer(term.to_owned())),
        Err(_) => Err(NetError::AmbiguousContainer(term.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Container, NetworkMode};

    fn container_with(name: &str, id: &str) -> Container {
        Container {
            name: name.into(),
            id: id.into(),
            uid: 1,
            netns: "/run/netns/x".into(),
            netns_id: None,
            mode: NetworkMode::None,
            cni_id: None,
            gateway_network: None,
            exposed: Vec::new(),
            port_mappings: Vec::new(),
            publish_all: false,
            env: Vec::new(),
            dns: Default::default(),
            links: Vec::new(),
            hostname: None,
        }
    }

    #[test]
    fn names_ids_and_unique_prefixes_resolve_as_docker_does() {
        let mut state = DesiredState {
            containers: vec![
                container_with("web", &format!("7c742{}", "0".repeat(59))),
                container_with("db", &format!("7c7f1{}", "1".repeat(59))),
                // A name that is another container's ID prefix: the name wins.
                container_with("7c7f1", &format!("abcde{}", "2".repeat(59))),
            ],
            ..DesiredState::default()
        };
        assert_eq!(container(&state, "web").unwrap().name, "web");
        assert_eq!(container(&state, "7c742").unwrap().name, "web");
        assert_eq!(
            container(&state, &state.containers[1].id.clone())
                .unwrap()
                .name,
            "db"
        );
        assert_eq!(container(&state, "7c7f1").unwrap().name, "7c7f1");
        assert_eq!(
            container(&state, "7c7").unwrap_err().to_string(),
            "multiple IDs found with provided prefix: 7c7"
        );
        assert_eq!(
            container(&state, "nope").unwrap_err().to_string(),
            "No such container: nope"
        );
        assert_eq!(
            container(&state, "").unwrap_err().to_string(),
            "No such container: "
        );

        state.networks = vec![
            Network::for_tests("front", "10.1.0.0/24", false),
            Network::for_tests("back", "10.2.0.0/24", false),
        ];
        state.networks[0].id = format!("f00d1{}", "0".repeat(59));
        state.networks[1].id = format!("f00d2{}", "0".repeat(59));
        state
            .predefined
            .insert("host".into(), format!("0a0a{}", "3".repeat(60)));
        assert_eq!(network(&state, "f00d2").unwrap().name(), "back");
        assert_eq!(network(&state, "host").unwrap(), NetworkRef::Host);
        assert_eq!(network(&state, "0a0a").unwrap(), NetworkRef::Host);
        assert_eq!(network(&state, "none").unwrap(), NetworkRef::None);
        assert_eq!(
            network(&state, "f00d").unwrap_err().to_string(),
            "network f00d is ambiguous (2 matches found based on ID prefix)"
        );
        assert_eq!(
            bridge_network(&state, "host").unwrap_err().to_string(),
            "network host not found"
        );
    }
}
