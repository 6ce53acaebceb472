//! Unit tests of networks and containers against the fakes.

use super::*;
use crate::{
    api::NetworkCreate,
    datapath::fake::FakeDatapath,
    host::fake::FakeHost,
    host::{BridgeConfig, EndpointConfig, HostPort},
    model::DEFAULT_BRIDGE,
    reconcile::NetReconcileReport,
    state::StateStore,
};

type TestAgent = Agent<FakeDatapath, FakeHost>;

/// An agent with the default network and `neta` (10.1.0.0/24); the
/// "network namespace" is this process's own (a real nsfs file).
fn agent(dir: &tempfile::TempDir) -> TestAgent {
    let store = StateStore::open(dir.path()).unwrap();
    let mut a = Agent::new(store, FakeDatapath::default(), FakeHost::default()).unwrap();
    a.ensure_default_network().unwrap();
    a.network_create(create("neta", Some("10.1.0.0/24")))
        .unwrap();
    a
}

fn create(name: &str, subnet: Option<&str>) -> NetworkCreate {
    NetworkCreate {
        name: name.into(),
        subnet: subnet.map(|s| s.parse().unwrap()),
        gateway: None,
        ip_range: None,
        ipv6: false,
        subnet6: None,
        gateway6: None,
        internal: false,
        icc: true,
        driver: None,
        options: Vec::new(),
    }
}

fn attach(name: &str, network: &str, publish: &[&str]) -> ContainerAttach {
    ContainerAttach {
        name: Some(name.into()),
        netns: Some(format!("/run/netns/{name}").into()),
        network: Some(network.into()),
        publish: publish.iter().map(|s| (*s).to_owned()).collect(),
        ..ContainerAttach::default()
    }
}

/// `attach` with namespace number `n` (the fake host gives each
/// path a namespace of its own).
fn attach_as(name: &str, network: &str, publish: &[&str], n: usize) -> ContainerAttach {
    ContainerAttach {
        netns: Some(format!("/run/netns/ns{n}").into()),
        ..attach(name, network, publish)
    }
}

fn connect(
    a: &mut TestAgent,
    network: &str,
    container: &str,
    ip: Option<Ipv4Addr>,
    aliases: Vec<String>,
) -> Result<Endpoint, AgentError> {
    a.network_connect(crate::api::NetworkConnect {
        network: network.into(),
        container: container.into(),
        ip,
        ip6: None,
        aliases,
        ..crate::api::NetworkConnect::default()
    })
}

fn net(a: &TestAgent, name: &str) -> Network {
    lookup::bridge_network(&a.state, name).unwrap().clone()
}

fn err(r: Result<impl std::fmt::Debug, AgentError>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn the_default_network_exists_and_new_subnets_avoid_routes_and_networks() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let host = FakeHost {
        routes: vec![("172.17.0.0/16".parse().unwrap(), "docker0 route".into())],
        ..FakeHost::default()
    };
    let mut a = Agent::new(store, FakeDatapath::default(), host).unwrap();
    a.ensure_default_network().unwrap();
    a.ensure_default_network().unwrap();
    let list = a.network_list();
    let rows: Vec<(&str, &str)> = list
        .iter()
        .map(|n| (n.name.as_str(), n.driver.as_str()))
        .collect();
    assert_eq!(
        rows,
        [("bridge", "bridge"), ("host", "host"), ("none", "null")]
    );
    assert!(list.iter().all(|n| n.id.len() == 64 && n.scope == "local"));
    let nets = [net(&a, "bridge")];
    assert_eq!(nets[0].bridge, DEFAULT_BRIDGE);
    assert_eq!(nets[0].ipam.subnet.to_string(), "172.18.0.0/16");
    let b = a.network_create(create("b", None)).unwrap();
    assert_eq!(b.ipam.subnet.to_string(), "172.19.0.0/16");
    assert_ne!(b.net_id, nets[0].net_id);
    assert!(a.host.bridges.contains_key(&b.bridge));
    assert!(err(a.network_create(create("c", Some("172.19.5.0/24")))).contains("overlaps"));
    assert_eq!(
        err(a.network_create(create("b", None))),
        "network with name b already exists"
    );
    assert!(err(a.network_create(create("bad name", None))).contains("invalid network name"));
    let mut other = create("d", None);
    other.driver = Some("overlay".into());
    assert!(err(a.network_create(other)).contains("plugin \"overlay\" not found"));
    assert_eq!(
        err(a.network_rm("bridge")),
        "bridge is a pre-defined network and cannot be removed"
    );
}

#[test]
fn attach_makes_an_endpoint_with_policy_entries_and_publications() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    let info = a
        .container_attach(attach("web", "neta", &["8080:80", "127.0.0.1::53/udp"]))
        .unwrap()
        .info;
    let ep = &info.endpoints[0];
    assert_eq!(ep.ip.to_string(), "10.1.0.2");
    assert_eq!(ep.ifname, "eth0");
    assert!(a.datapath.endpoints.attached.contains(&ep.host_ifname));
    let policy = net(&a, "neta").policy();
    let addr = a.datapath.endpoints.addrs[&ep.ip];
    assert_eq!(addr.net, policy);
    assert_eq!(addr.host_ifindex, ep.host_ifindex);
    assert_eq!(addr.mac, [2, 0, 0, 0, 0, 1]);
    let bridge = a.bridges[&net(&a, "neta").bridge];
    assert_eq!(addr.gw_mac, bridge.mac);
    let iface = a.datapath.endpoints.ifaces[&ep.host_ifindex];
    assert_eq!((iface.net, iface.bridge_ifindex), (policy, bridge.ifindex));
    let cfg = &a.host.endpoints[&ep.host_ifname];
    assert_eq!(
        cfg.default_gateway.map(|g| g.v4),
        Some("10.1.0.1".parse().unwrap())
    );
    let ports: Vec<String> = info.ports.iter().map(ToString::to_string).collect();
    assert_eq!(
        ports,
        [
            "127.0.0.1:32768->10.1.0.2:53/udp",
            "0.0.0.0:8080->10.1.0.2:80/tcp"
        ]
    );
    assert_eq!(a.datapath.pubs.entries.len(), 2);
    assert_eq!(a.host.reserved.len(), 2);
    // `port web 80` and a miss in Docker's words.
    let p80 = a.container_ports("web", Some((80, None))).unwrap();
    assert_eq!(p80[0].host_port, 8080);
    assert_eq!(
        err(a.container_ports("web", Some((81, None)))),
        "No public port '81/tcp' published for web"
    );
    // The state survives a reopen.
    drop(a);
    let store = StateStore::open(dir.path()).unwrap();
    let b = Agent::new(store, FakeDatapath::default(), FakeHost::default()).unwrap();
    assert_eq!(b.container_inspect("web").unwrap().ports.len(), 2);
}

#[test]
fn names_are_unique_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    let first = a.container_attach(attach("web", "neta", &[])).unwrap().info;
    let e = err(a.container_attach(attach_as("web", "neta", &[], 1)));
    assert!(
        e.starts_with("Conflict. The container name \"/web\" is already in use by container")
            && e.contains(&first.container.id),
        "{e}"
    );
    assert!(
        err(a.container_attach(attach_as("-x", "neta", &[], 1)))
            .starts_with("Invalid container name (-x)")
    );
    assert_eq!(
        err(a.container_attach(attach_as("db", "nope", &[], 1))),
        "network nope not found"
    );
    // The same namespace twice (not joined) is refused.
    let mut twice = attach("db", "neta", &[]);
    twice.netns = Some("/run/netns/web".into());
    assert!(err(a.container_attach(twice)).contains("use --network container:web"));
    let mut none = attach("db", "neta", &[]);
    none.netns = None;
    assert_eq!(
        err(a.container_attach(none)),
        "--netns is required (the container's network namespace)"
    );
    let mut gone = attach("db", "neta", &[]);
    gone.netns = Some("/nonexistent/ns".into());
    assert!(err(a.container_attach(gone)).starts_with("network namespace /nonexistent/ns: "));
    // A joined container's --netns must be its target's namespace.
    let mut other = attach("db", "container:web", &[]);
    other.netns = Some("/run/netns/elsewhere".into());
    assert!(err(a.container_attach(other)).contains("is not the one of container web"));
    a.container_detach("web").unwrap();
    a.container_attach(attach("web", "neta", &[])).unwrap();
}

#[test]
fn every_port_form_allocates_as_docker_does() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    a.host.ephemeral = Some((40000, 40003));
    // A host process holds 8000 and 40000.
    for port in [8000, 40000] {
        a.host.foreign.insert(HostPort {
            ip: Ipv4Addr::UNSPECIFIED.into(),
            port,
            proto: Proto::Tcp,
        });
    }
    let mut req = attach(
        "web",
        "neta",
        &[
            "8000-8002:80",
            "9000-9001:90-91/udp",
            "100",
            "10.9.9.9::101",
        ],
    );
    req.expose = vec!["7000".into(), "90/udp".into()];
    req.publish_all = true;
    let info = a.container_attach(req).unwrap().info;
    let ports: Vec<String> = info.ports.iter().map(ToString::to_string).collect();
    assert_eq!(
        ports,
        [
            "0.0.0.0:8001->10.1.0.2:80/tcp",
            "0.0.0.0:9000->10.1.0.2:90/udp",
            "0.0.0.0:9001->10.1.0.2:91/udp",
            "0.0.0.0:40001->10.1.0.2:100/tcp",
            "10.9.9.9:40002->10.1.0.2:101/tcp",
            "0.0.0.0:40003->10.1.0.2:7000/tcp",
        ]
    );
    // The ephemeral range is now used up on 0.0.0.0/tcp.
    let e = err(a.container_attach(attach_as("db", "neta", &["5432"], 1)));
    assert!(
        e.starts_with("driver failed programming external connectivity on endpoint db (")
            && e.ends_with("all ports are allocated (no free tcp port in 40000-40003 on 0.0.0.0)"),
        "{e}"
    );
    // A fixed port that is published, and one a host process holds.
    let e = err(a.container_attach(attach_as("db", "neta", &["8001:5432"], 1)));
    assert!(
        e.contains("Bind for 0.0.0.0:8001 failed: port is already allocated"),
        "{e}"
    );
    let e = err(a.container_attach(attach_as("db", "neta", &["8000:5432"], 1)));
    assert!(
        e.ends_with("failed to bind host port 0.0.0.0:8000/tcp: address already in use"),
        "{e}"
    );
    // None of the failures left anything behind.
    assert_eq!(a.state.containers.len(), 1);
    assert_eq!(a.host.endpoints.len(), 1);
    assert_eq!(a.datapath.endpoints.addrs.len(), 1);
    assert_eq!(a.host.reserved.len(), 6);
    assert_eq!(net(&a, "neta").ipam.allocated.len(), 1);
    // Detach frees everything.
    a.container_detach("web").unwrap();
    assert!(a.host.reserved.is_empty() && a.datapath.pubs.entries.is_empty());
    assert!(a.host.endpoints.is_empty() && a.datapath.endpoints.attached.is_empty());
    assert!(a.datapath.endpoints.addrs.is_empty() && a.datapath.endpoints.ifaces.is_empty());
    assert!(net(&a, "neta").ipam.allocated.is_empty());
}

#[test]
fn a_failed_kernel_step_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    let before = std::fs::read(dir.path().join("state.json")).unwrap();
    a.host.fail_endpoints = true;
    assert!(
        a.container_attach(attach("web", "neta", &["8080:80"]))
            .is_err()
    );
    a.host.fail_endpoints = false;
    a.datapath.fail_writes(true);
    assert!(
        a.container_attach(attach("web", "neta", &["8080:80"]))
            .is_err()
    );
    a.datapath.fail_writes(false);
    assert_eq!(
        std::fs::read(dir.path().join("state.json")).unwrap(),
        before
    );
    assert!(a.host.endpoints.is_empty() && a.host.reserved.is_empty());
    assert!(a.datapath.endpoints.attached.is_empty() && a.datapath.pubs.entries.is_empty());
    assert!(net(&a, "neta").ipam.allocated.is_empty());
    a.container_attach(attach("web", "neta", &["8080:80"]))
        .unwrap();
}

#[test]
fn joined_containers_share_and_refuse_what_docker_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    a.container_attach(attach("web", "neta", &["8080:80"]))
        .unwrap();
    let mut side = attach("side", "container:web", &[]);
    side.netns = None;
    let info = a.container_attach(side.clone()).unwrap().info;
    assert_eq!(info.joined_to.as_deref(), Some("web"));
    assert_eq!(
        info.endpoints,
        a.container_inspect("web").unwrap().endpoints
    );
    assert!(info.ports.is_empty());
    assert_eq!(a.host.endpoints.len(), 1, "no new interface");
    // Joining a joined container joins the root.
    let mut third = attach("third", "container:side", &[]);
    third.netns = Some("/run/netns/web".into());
    assert_eq!(
        a.container_attach(third).unwrap().info.joined_to.as_deref(),
        Some("web")
    );
    let mut bad = attach("xx", "container:web", &["80"]);
    bad.netns = None;
    assert_eq!(
        err(a.container_attach(bad)),
        "conflicting options: port publishing and the container type network mode"
    );
    assert!(
        err(connect(&mut a, "bridge", "side", None, vec![]))
            .starts_with("container sharing network namespace")
    );
    assert!(
        err(a.container_detach("web"))
            .contains("has containers joined to its network stack (side, third)")
    );
    a.container_detach("side").unwrap();
    a.container_detach("third").unwrap();
    a.container_detach("web").unwrap();
    assert!(a.host.endpoints.is_empty());
}

#[test]
fn connect_disconnect_and_network_removal() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    a.network_create(create("netb", Some("10.2.0.0/24")))
        .unwrap();
    a.container_attach(attach("web", "neta", &["8080:80"]))
        .unwrap();
    let ep = a
        .network_connect(crate::api::NetworkConnect {
            network: "netb".into(),
            container: "web".into(),
            ip: Some("10.2.0.9".parse().unwrap()),
            ip6: None,
            aliases: vec!["w".into()],
            ..crate::api::NetworkConnect::default()
        })
        .unwrap();
    assert_eq!(
        (ep.ifname.as_str(), ep.ip.to_string().as_str()),
        ("eth1", "10.2.0.9")
    );
    assert_eq!(
        a.host.endpoints[&ep.host_ifname].default_gateway, None,
        "one default route"
    );
    assert!(
        err(connect(&mut a, "netb", "web", None, vec![]))
            .contains("already exists in network netb")
    );
    assert!(
        err(connect(
            &mut a,
            "bridge",
            "web",
            Some("172.17.0.9".parse().unwrap()),
            vec![]
        ))
        .contains("user specified IP address is supported on user defined networks only")
    );
    let e = err(a.network_rm("netb"));
    assert!(
        e.starts_with("error while removing network: network netb id ")
            && e.ends_with("has active endpoints (web)"),
        "{e}"
    );
    // Disconnecting the publishing network moves the ports to netb.
    a.network_disconnect("neta", "web").unwrap();
    let p = a.container_ports("web", None).unwrap();
    assert_eq!(p[0].container_ip.to_string(), "10.2.0.9");
    let value = a.datapath.pubs.entries.values().next().unwrap();
    assert_eq!(value.addr_be.to_ne_bytes(), [10, 2, 0, 9]);
    // The last one with outside access cannot go while it publishes.
    assert!(
        err(a.network_disconnect("netb", "web")).contains("its only network with outside access")
    );
    assert!(err(a.network_disconnect("neta", "web")).contains("is not connected to network neta"));
    a.container_detach("web").unwrap();
    let removed = a.network_rm("netb").unwrap();
    assert!(
        !a.host
            .bridges
            .contains_key(&removed.config.as_ref().unwrap().bridge)
    );
}

#[test]
fn internal_networks_refuse_publishing_and_get_no_default_route() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    let mut req = create("priv", Some("10.3.0.0/24"));
    req.internal = true;
    req.icc = false;
    let net = a.network_create(req).unwrap();
    let policy = net.policy();
    assert_eq!(
        policy.flags,
        datapath_common::NET_F_INTERNAL | datapath_common::NET_F_NO_ICC
    );
    assert_eq!(policy.subnet_be.to_ne_bytes(), [10, 3, 0, 0]);
    assert_eq!(policy.mask_be.to_ne_bytes(), [255, 255, 255, 0]);
    assert!(
        err(a.container_attach(attach("db", "priv", &["5432"])))
            .contains("network priv is internal")
    );
    let info = a.container_attach(attach("db", "priv", &[])).unwrap().info;
    assert_eq!(
        a.host.endpoints[&info.endpoints[0].host_ifname].default_gateway,
        None
    );
    // The first network with outside access gives the route, at connect
    // time and when reconcile rebuilds the interface alike.
    let eth1 = connect(&mut a, "neta", "db", None, vec![]).unwrap();
    let gw_addr: Ipv4Addr = "10.1.0.1".parse().unwrap();
    let gw = Some(gw_addr);
    assert_eq!(
        a.host.default_routes[std::path::Path::new("/run/netns/db")],
        ("eth1".to_owned(), gw_addr)
    );
    assert_eq!(
        a.container_inspect("db")
            .unwrap()
            .gateway_network
            .as_deref(),
        Some("neta")
    );
    a.host.endpoints.clear();
    assert_eq!(a.reconcile_networks().recreated_endpoints, 2);
    assert_eq!(
        a.host.endpoints[&eth1.host_ifname]
            .default_gateway
            .map(|g| g.v4),
        gw
    );
    assert_eq!(
        a.host.endpoints[&info.endpoints[0].host_ifname].default_gateway,
        None
    );
}

#[test]
fn reconcile_collects_strays_and_recreates_missing_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    a.container_attach(attach("web", "neta", &[])).unwrap();
    // Strays: an interface, a map entry and a link nobody asked for;
    // and the container's veth vanished.
    a.host.endpoints.clear();
    a.host.endpoints.insert(
        "na-vstray".into(),
        EndpointConfig {
            host_ifname: "na-vstray".into(),
            bridge: "x".into(),
            netns: "/x".into(),
            ifname: "eth0".into(),
            ip: "10.9.9.9".parse().unwrap(),
            prefix_len: 24,
            ip6: None,
            mac: None,
            default_gateway: None,
        },
    );
    a.datapath
        .endpoints
        .addrs
        .insert("10.9.9.9".parse().unwrap(), Default::default());
    a.datapath.endpoints.attached.insert("na-vgone".into());
    a.host.bridges.insert(
        "na-br-stray".into(),
        BridgeConfig {
            name: "na-br-stray".into(),
            gateway: "10.8.0.1".parse().unwrap(),
            prefix_len: 24,
            gateway6: None,
        },
    );
    let report = a.reconcile_networks();
    // The container's namespace still exists, so its veth is rebuilt.
    assert_eq!(report.recreated_endpoints, 1);
    assert!(!a.host.endpoints.contains_key("na-vstray"));
    assert!(!a.host.bridges.contains_key("na-br-stray"));
    assert!(!a.datapath.endpoints.attached.contains("na-vgone"));
    assert!(
        !a.datapath
            .endpoints
            .addrs
            .contains_key(&"10.9.9.9".parse().unwrap())
    );
    assert_eq!(a.host.endpoints.len(), 1);
    assert_eq!(a.datapath.endpoints.addrs.len(), 1);
    assert!(
        a.datapath
            .endpoints
            .attached
            .contains(a.host.endpoints.keys().next().unwrap())
    );
    // A second pass finds nothing to do.
    assert_eq!(a.reconcile_networks(), NetReconcileReport::default());
}

#[test]
fn refused_input_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    let before = std::fs::read(dir.path().join("state.json")).unwrap();
    for bad in [
        "127.0.0.0/16",
        "224.0.0.0/8",
        "169.254.0.0/16",
        "0.0.0.0/8",
        "240.0.0.0/8",
    ] {
        let e = err(a.network_create(create("bad", Some(bad))));
        assert!(
            e.contains("which is never a container network"),
            "{bad}: {e}"
        );
    }
    let long = "n".repeat(64);
    assert!(err(a.network_create(create(&long, None))).contains("at most 63"));
    assert!(err(a.container_attach(attach(&long, "neta", &[]))).contains("at most 63"));
    let mut req = attach("web", "neta", &[]);
    req.aliases = vec!["ok".into(), "not ok".into()];
    assert!(err(a.container_attach(req)).contains("invalid alias \"not ok\""));
    let mut req = attach("web", "neta", &[]);
    req.netns = Some("/proc/self/ns/net".into());
    assert!(err(a.container_attach(req)).contains("is the host's own"));
    let mut req = create("opt", None);
    req.options = vec!["com.docker.network.bridge.gateway_mode_ipv4=nat-unprotected".into()];
    assert!(err(a.network_create(req)).contains("unsupported gateway mode"));
    let mut req = create("opt", None);
    req.options = vec!["com.docker.network.bridge.enable_icc=false".into()];
    assert!(err(a.network_create(req)).contains("is not supported"));
    assert_eq!(
        std::fs::read(dir.path().join("state.json")).unwrap(),
        before
    );
    assert_eq!(a.host.bridges.len(), 2, "no bridge left behind");
    assert!(a.host.endpoints.is_empty());
}

#[test]
fn publications_by_address_belong_to_their_container() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    let mut internal = create("priv", Some("10.2.0.0/24"));
    internal.internal = true;
    a.network_create(internal).unwrap();
    let web = a.container_attach(attach("web", "neta", &[])).unwrap().info;
    let db = a
        .container_attach(attach_as("db", "priv", &[], 2))
        .unwrap()
        .info;
    let (web_ip, db_ip) = (web.endpoints[0].ip, db.endpoints[0].ip);
    let e = err(a.publish(format!("5432->{db_ip}:5432").parse().unwrap()));
    assert!(e.contains("network priv is internal"), "{e}");
    let p = a
        .publish(format!("8080->{web_ip}:80").parse().unwrap())
        .unwrap();
    assert_eq!(p.owner, Some(web.container.uid));
    let stranger = a.publish("9090->10.1.0.200:80".parse().unwrap()).unwrap();
    assert_eq!(stranger.owner, None, "no container has that address");
    assert_eq!(a.container_ports("web", None).unwrap(), vec![p.spec]);
    a.container_detach("web").unwrap();
    assert_eq!(a.list(None), vec![stranger], "removed with its container");
    assert_eq!(a.datapath.pubs.entries.len(), 1);
}

#[test]
fn a_container_veth_goes_before_its_map_entries() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    let info = a.container_attach(attach("web", "neta", &[])).unwrap().info;
    let veth = info.endpoints[0].host_ifname.clone();
    a.container_detach("web").unwrap();
    let (veth_gone, _) = a
        .host
        .removals
        .iter()
        .find(|(_, what)| *what == format!("veth {veth}"))
        .unwrap();
    assert!(!a.datapath.endpoints.removals.is_empty());
    for (seq, what) in &a.datapath.endpoints.removals {
        assert!(veth_gone < seq, "{what} removed before the veth");
    }
}

#[test]
fn reconcile_takes_mac_and_ifindex_from_the_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    let info = a.container_attach(attach("web", "neta", &[])).unwrap().info;
    let ep = info.endpoints[0].clone();
    // A crash left the state behind the kernel: the veth was rebuilt
    // with a new MAC and index the state never heard of.
    a.host
        .kernel_macs
        .insert(ep.host_ifname.clone(), "02:00:00:00:00:99".into());
    a.host.ifindexes.insert(ep.host_ifname.clone(), 777);
    let report = a.reconcile_networks();
    assert_eq!(report.corrected_endpoints, 1, "{report:?}");
    assert!(report.errors.is_empty(), "{report:?}");
    let entry = a.datapath.endpoints.addrs[&ep.ip];
    assert_eq!(entry.mac, [2, 0, 0, 0, 0, 0x99]);
    assert_eq!(entry.host_ifindex, 777);
    assert!(a.datapath.endpoints.ifaces.contains_key(&777));
    assert!(!a.datapath.endpoints.ifaces.contains_key(&ep.host_ifindex));
    let saved = a.container_inspect("web").unwrap().endpoints[0].clone();
    assert_eq!(
        (saved.mac.as_str(), saved.host_ifindex),
        ("02:00:00:00:00:99", 777)
    );
    assert_eq!(a.reconcile_networks().corrected_endpoints, 0);
}

#[test]
fn a_reused_namespace_path_is_never_taken_for_the_container() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    let info = a.container_attach(attach("web", "neta", &[])).unwrap().info;
    let ep = info.endpoints[0].clone();
    // The namespace died (taking the veth) and its path now names
    // another namespace.
    a.host.endpoints.remove(&ep.host_ifname);
    a.host.replaced_netns.insert(
        "/run/netns/web".into(),
        crate::host::NetnsId { dev: 9, ino: 9 },
    );
    let report = a.reconcile_networks();
    assert_eq!(
        (report.recreated_endpoints, report.missing_endpoints),
        (0, 1),
        "{report:?}"
    );
    assert!(
        a.host.endpoints.is_empty(),
        "recreated in a stranger's namespace"
    );
    let e = err(connect(&mut a, "bridge", "web", None, Vec::new()));
    assert!(e.contains("no longer container web's"), "{e}");
    a.container_detach("web").unwrap();
}

#[test]
fn reconcile_reports_what_fails_and_does_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    a.network_create(create("netb", Some("10.3.0.0/24")))
        .unwrap();
    let ok = a.container_attach(attach("ok", "neta", &[])).unwrap().info;
    let broken = a
        .container_attach(attach_as("broken", "neta", &[], 2))
        .unwrap()
        .info;
    let orphan = a
        .container_attach(attach_as("orphan", "netb", &[], 3))
        .unwrap()
        .info;
    // One endpoint vanished and cannot be rebuilt, one network's
    // bridge cannot be made, and listing links fails.
    let broken_if = broken.endpoints[0].host_ifname.clone();
    a.host.endpoints.remove(&broken_if);
    a.host.fail_endpoint_names.insert(broken_if.clone());
    let netb_bridge = a.network_inspect("netb").unwrap().config.unwrap().bridge;
    a.host.fail_bridges.insert(netb_bridge);
    a.host.fail_dumps = true;
    a.datapath.endpoints.ifaces.clear();
    a.datapath.endpoints.addrs.clear();
    let report = a.reconcile_networks();
    assert_eq!(report.errors.len(), 4, "{report:?}");
    // The healthy endpoint is programmed, the one on the broken bridge
    // keeps what it had.
    assert!(a.datapath.endpoints.addrs.contains_key(&ok.endpoints[0].ip));
    assert!(
        !a.datapath
            .endpoints
            .addrs
            .contains_key(&orphan.endpoints[0].ip)
    );
    // The broken container can still be detached.
    a.host.fail_dumps = false;
    a.host.fail_bridges.clear();
    a.container_detach("broken").unwrap();
    a.container_detach("orphan").unwrap();
    // A full endpoint map is reported too, per endpoint.
    a.datapath.endpoints.ifaces.clear();
    a.datapath.endpoints.capacity = Some(0);
    let report = a.reconcile_networks();
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert!(report.errors[0].contains("endpoint map full"), "{report:?}");
}

/// The publication map's container address for host port `port`.
fn target_of(a: &TestAgent, port: u16) -> Ipv4Addr {
    let (_, value) = a
        .datapath
        .pubs
        .entries
        .iter()
        .find(|((_, p, _), _)| u16::from_be(*p) == port)
        .expect("a publication");
    Ipv4Addr::from(value.addr_be.to_ne_bytes())
}

#[test]
fn the_gateway_and_its_ports_move_on_disconnect_and_come_back_on_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    a.network_create(create("netb", Some("10.2.0.0/24")))
        .unwrap();
    let netns = std::path::PathBuf::from("/run/netns/web");
    let web = a
        .container_attach(attach("web", "neta", &["8080:80"]))
        .unwrap()
        .info;
    let eth0 = web.endpoints[0].clone();
    assert_eq!(web.gateway_network.as_deref(), Some("neta"));
    assert_eq!(
        a.host.default_routes[&netns],
        ("eth0".to_owned(), "10.1.0.1".parse().unwrap())
    );
    let eth1 = connect(&mut a, "netb", "web", None, vec![]).unwrap();
    // A second network does not take the route.
    assert_eq!(a.host.default_routes[&netns].0, "eth0");
    assert_eq!(target_of(&a, 8080), eth0.ip);

    a.network_disconnect("neta", "web").unwrap();
    assert_eq!(
        a.host.default_routes[&netns],
        ("eth1".to_owned(), "10.2.0.1".parse().unwrap()),
        "the route moved to the remaining network"
    );
    assert_eq!(
        target_of(&a, 8080),
        eth1.ip,
        "the published port moved along"
    );
    let info = a.container_inspect("web").unwrap();
    assert_eq!(info.gateway_network.as_deref(), Some("netb"));
    assert_eq!(info.ports[0].container_ip, eth1.ip);
    assert_eq!(a.container_ports("web", Some((80, None))).unwrap().len(), 1);

    // Reconnecting the gateway network brings both back.
    let back = connect(&mut a, "neta", "web", None, vec![]).unwrap();
    assert_eq!(back.ifname, "eth0");
    assert_eq!(
        a.host.default_routes[&netns],
        ("eth0".to_owned(), "10.1.0.1".parse().unwrap())
    );
    assert_eq!(target_of(&a, 8080), back.ip);
    assert_eq!(
        a.container_inspect("web")
            .unwrap()
            .gateway_network
            .as_deref(),
        Some("neta")
    );
    // A removed network is forgotten as a gateway network.
    a.network_create(create("netc", Some("10.4.0.0/24")))
        .unwrap();
    connect(&mut a, "netc", "web", None, vec![]).unwrap();
    a.network_disconnect("neta", "web").unwrap();
    a.network_rm("neta").unwrap();
    assert_eq!(
        lookup::container(&a.state, "web").unwrap().gateway_network,
        None
    );
    a.network_create(create("neta", Some("10.1.0.0/24")))
        .unwrap();
    connect(&mut a, "neta", "web", None, vec![]).unwrap();
    assert_eq!(
        a.container_inspect("web")
            .unwrap()
            .gateway_network
            .as_deref(),
        Some("netb"),
        "a new network of the old name does not take the route"
    );
    a.network_disconnect("netc", "web").unwrap();
    a.network_disconnect("neta", "web").unwrap();
    // Disconnecting the last network with outside access is refused while
    // ports are published through it, and changes nothing.
    let before = a.state.clone();
    assert!(
        err(a.network_disconnect("netb", "web")).contains("its only network with outside access")
    );
    assert_eq!(a.state, before);
    assert_eq!(a.host.default_routes[&netns].0, "eth1");
}

#[test]
fn a_failed_gateway_move_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    a.network_create(create("netb", Some("10.2.0.0/24")))
        .unwrap();
    let web = a
        .container_attach(attach("web", "neta", &["8080:80"]))
        .unwrap()
        .info;
    connect(&mut a, "netb", "web", None, vec![]).unwrap();
    let before = a.state.clone();
    a.datapath.fail_writes(true);
    assert!(a.network_disconnect("neta", "web").is_err());
    a.datapath.fail_writes(false);
    assert_eq!(a.state, before);
    assert_eq!(
        a.host.default_routes[std::path::Path::new("/run/netns/web")].0,
        "eth0",
        "the route was put back"
    );
    assert_eq!(target_of(&a, 8080), web.endpoints[0].ip);
    assert!(a.host.endpoints.contains_key(&web.endpoints[0].host_ifname));
}

#[test]
fn containers_and_networks_are_found_by_name_id_or_unique_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    let web = a
        .container_attach(attach("web", "neta", &["8080:80"]))
        .unwrap()
        .info;
    let id = web.container.id.clone();
    for term in [&id[..5], &id[..12], id.as_str(), "web"] {
        assert_eq!(a.container_inspect(term).unwrap().container.name, "web");
        assert_eq!(a.container_ports(term, Some((80, None))).unwrap().len(), 1);
    }
    let neta = net(&a, "neta");
    let mut req = attach_as("db", "neta", &[], 2);
    req.network = Some(neta.id[..6].to_owned());
    assert_eq!(
        a.container_attach(req).unwrap().info.endpoints[0].network,
        "neta"
    );
    let netb = a
        .network_create(create("netb", Some("10.2.0.0/24")))
        .unwrap();
    connect(&mut a, &netb.id[..7], &id[..7], None, vec![]).unwrap();
    a.network_disconnect(&netb.id, &id).unwrap();
    assert_eq!(a.network_inspect(&netb.id[..5]).unwrap().name, "netb");
    assert_eq!(a.network_rm(&netb.id[..5]).unwrap().name, "netb");
    a.container_detach(&id[..6]).unwrap();
    assert_eq!(err(a.container_inspect("web")), "No such container: web");
    assert_eq!(
        err(a.container_detach("ffffffffffff")),
        "No such container: ffffffffffff"
    );
}

#[test]
fn host_and_none_networks_behave_as_dockers() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    // --network host: -p is discarded with Docker's warning, nothing made.
    let req = ContainerAttach {
        name: Some("hc".into()),
        network: Some("host".into()),
        publish: vec!["8080:80".into()],
        ..ContainerAttach::default()
    };
    let attached = a.container_attach(req).unwrap();
    assert_eq!(
        attached.warnings,
        ["Published ports are discarded when using host network mode"]
    );
    assert!(attached.info.ports.is_empty() && attached.info.endpoints.is_empty());
    assert!(a.host.endpoints.is_empty() && a.datapath.pubs.entries.is_empty());
    // A namespace that is not the host's is refused with host networking.
    let req = ContainerAttach {
        name: Some("h2".into()),
        netns: Some("/run/netns/other".into()),
        network: Some("host".into()),
        ..ContainerAttach::default()
    };
    assert!(err(a.container_attach(req)).contains("is not the host's"));
    let mut bad = attach("h3", "host", &[]);
    bad.netns = None;
    bad.ip = Some("10.1.0.9".parse().unwrap());
    assert_eq!(
        err(a.container_attach(bad)),
        "user specified IP address is supported on user defined networks only"
    );

    // --network none: loopback only.
    let none = a.container_attach(attach("nc", "none", &[])).unwrap();
    assert!(none.warnings.is_empty() && none.info.endpoints.is_empty());

    let host_conflict =
        "container cannot be disconnected from host network or connected to host network";
    let none_conflict = "container cannot be connected to multiple networks with one of the networks in private (none) mode";
    assert_eq!(
        err(connect(&mut a, "neta", "hc", None, vec![])),
        host_conflict
    );
    assert_eq!(err(a.network_disconnect("host", "hc")), host_conflict);
    assert_eq!(
        err(connect(&mut a, "neta", "nc", None, vec![])),
        none_conflict
    );
    a.container_attach(attach_as("web", "neta", &[], 3))
        .unwrap();
    assert_eq!(
        err(connect(&mut a, "host", "web", None, vec![])),
        host_conflict
    );
    assert_eq!(
        err(connect(&mut a, "none", "web", None, vec![])),
        none_conflict
    );

    // The pre-defined networks list their containers, and stay.
    let host = a.network_inspect("host").unwrap();
    assert_eq!((host.driver.as_str(), host.members.len()), ("host", 1));
    assert!(host.members[0].endpoint.is_none());
    assert_eq!(
        a.network_inspect("none").unwrap().members[0].container,
        "nc"
    );
    for name in ["host", "none", "bridge"] {
        assert_eq!(
            err(a.network_rm(name)),
            format!("{name} is a pre-defined network and cannot be removed")
        );
    }
    assert_eq!(
        err(a.network_create(create("host", None))),
        "network with name host already exists"
    );
    // Leaving `none` makes the container connectable (Docker allows it).
    assert_eq!(a.network_disconnect("none", "nc").unwrap(), None);
    connect(&mut a, "neta", "nc", None, vec![]).unwrap();
    // Every kind of container detaches cleanly.
    for name in ["hc", "nc", "web"] {
        a.container_detach(name).unwrap();
    }
    assert!(a.host.endpoints.is_empty());
}

#[test]
fn a_name_is_generated_when_none_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    let mut req = attach("x", "neta", &[]);
    req.name = None;
    let info = a.container_attach(req).unwrap().info;
    let name = &info.container.name;
    assert!(name.contains('_') && valid_container_name(name), "{name}");
    assert_eq!(
        a.container_inspect(name).unwrap().container.id,
        info.container.id
    );
}

#[test]
fn a_host_address_the_host_lacks_is_refused_with_dockers_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    a.host.local_addrs = Some(["10.0.0.5".parse().unwrap()].into());
    let e = err(a.container_attach(attach("web", "neta", &["192.0.2.1:8080:80"])));
    assert!(
        e.starts_with("driver failed programming external connectivity on endpoint web (")
            && e.ends_with(
                "failed to bind host port 192.0.2.1:8080/tcp: cannot assign requested address"
            ),
        "{e}"
    );
    assert!(a.state.containers.is_empty() && a.host.endpoints.is_empty());
    let e = err(a.container_attach(attach("web", "neta", &["192.0.2.1::80"])));
    assert!(e.ends_with("cannot assign requested address"), "{e}");
    let e = err(a.publish("192.0.2.1:5000->10.1.0.9:80".parse().unwrap()));
    assert_eq!(
        e,
        "failed to bind host port 192.0.2.1:5000/tcp: cannot assign requested address"
    );
    // The host's own address and the wildcard are fine.
    a.container_attach(attach("web", "neta", &["10.0.0.5:8080:80", "8081:81"]))
        .unwrap();
}

/// A dual-stack network: an IPv6 subnet (given, or a unique local /64),
/// endpoints with an IPv6 address, their link-local one and both default
/// routes; the datapath's IPv6 entries made and removed with them; a
/// static `--ip6`; refusals that change nothing.
#[test]
fn dual_stack_networks_give_endpoints_ipv6() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    let refused = a.network_create(NetworkCreate {
        subnet6: Some("fd00:66::/64".parse().unwrap()),
        ..create("v6", Some("10.6.0.0/24"))
    });
    assert!(
        refused.unwrap_err().to_string().contains("needs --ipv6"),
        "an IPv6 subnet without --ipv6"
    );
    let net6 = a
        .network_create(NetworkCreate {
            ipv6: true,
            subnet6: Some("fd00:66::/64".parse().unwrap()),
            ..create("v6", Some("10.6.0.0/24"))
        })
        .unwrap();
    let ipam6 = net6.ipam6.clone().unwrap();
    assert_eq!(
        ipam6.gateway,
        "fd00:66::1".parse::<std::net::Ipv6Addr>().unwrap()
    );
    assert_eq!(
        a.host.bridges[&net6.bridge].gateway6,
        Some((ipam6.gateway, 64))
    );
    let picked = a
        .network_create(NetworkCreate {
            ipv6: true,
            ..create("v6b", None)
        })
        .unwrap();
    let sub = picked.ipam6.unwrap().subnet;
    assert_eq!((sub.prefix_len(), sub.network().octets()[0]), (64, 0xfd));
    let overlap = a.network_create(NetworkCreate {
        ipv6: true,
        subnet6: Some("fd00:66::/48".parse().unwrap()),
        ..create("v6c", None)
    });
    assert!(overlap.is_err(), "overlapping IPv6 subnets");

    let info = a.container_attach(attach("web", "v6", &[])).unwrap();
    let ep = info.info.endpoints[0].clone();
    let ip6 = ep.ip6.expect("an IPv6 address");
    assert_eq!(ip6, "fd00:66::2".parse::<std::net::Ipv6Addr>().unwrap());
    let cfg = &a.host.endpoints[&ep.host_ifname];
    assert_eq!(cfg.ip6, Some((ip6, 64)));
    assert_eq!(cfg.default_gateway.and_then(|g| g.v6), Some(ipam6.gateway));
    let mac = crate::host::parse_mac(&ep.mac).unwrap();
    let ll = crate::host::link_local6(mac);
    assert!(ll.is_unicast_link_local());
    assert!(a.datapath.endpoints.addrs6.contains_key(&ip6));
    assert!(a.datapath.endpoints.addrs6.contains_key(&ll));
    let iface6 = a.datapath.endpoints.ifaces6[&ep.host_ifindex];
    assert_eq!(iface6.prefix_len, 64);

    // A static IPv6 address; one in use, or on an IPv4 network, refused
    // with nothing changed.
    let db = a
        .container_attach(ContainerAttach {
            ip6: Some("fd00:66::99".parse().unwrap()),
            ..attach_as("db", "v6", &[], 2)
        })
        .unwrap();
    assert_eq!(
        db.info.endpoints[0].ip6,
        Some("fd00:66::99".parse().unwrap())
    );
    let before = a.state.clone();
    for (net, n) in [("v6", 3), ("neta", 4)] {
        let err = a
            .container_attach(ContainerAttach {
                ip6: Some("fd00:66::99".parse().unwrap()),
                ..attach_as("xx", net, &[], n)
            })
            .unwrap_err()
            .to_string();
        assert!(err.contains("fd00:66::99"), "{net}: {err}");
    }
    assert_eq!(a.state, before, "refusals change nothing");

    // A wildcard publication gets its [::] side to the IPv6 address; one
    // on a specific address, or of an IPv4-only container, none.
    a.container_attach(attach_as(
        "pub6",
        "v6",
        &["8080:80", "127.0.0.1:8081:81"],
        5,
    ))
    .unwrap();
    a.container_attach(attach_as("pub4", "neta", &["8082:82"], 6))
        .unwrap();
    let pub6 = a
        .state
        .containers
        .iter()
        .find(|c| c.name == "pub6")
        .unwrap();
    let pub6_ip6 = pub6.endpoints()[0].ip6.unwrap();
    let sixes = &a.datapath.host_maps.publications6;
    assert_eq!(sixes.len(), 1, "{sixes:?}");
    assert_eq!(u16::from_be(sixes[0].0.port_be), 8080);
    assert_eq!(sixes[0].0.addr_be, [0; 4]);
    assert_eq!(sixes[0].1.addr_be, datapath_common::ipv6_be(pub6_ip6));
    assert_eq!(u16::from_be(sixes[0].1.port_be), 80);
    a.container_detach("pub6").unwrap();
    assert!(a.datapath.host_maps.publications6.is_empty());

    a.container_detach("web").unwrap();
    assert!(!a.datapath.endpoints.addrs6.contains_key(&ip6));
    assert!(!a.datapath.endpoints.addrs6.contains_key(&ll));
    assert!(!a.datapath.endpoints.ifaces6.contains_key(&ep.host_ifindex));
    let v6 = a.state.networks.iter().find(|n| n.name == "v6").unwrap();
    assert!(!v6.ipam6.as_ref().unwrap().allocated.contains(&ip6));
}

/// Publications on IPv6 host addresses: to a dual-stack container's IPv6
/// address (named by either of its addresses), to any container on
/// `[::1]` (IPv4-mapped for one without IPv6), refused where nothing
/// could deliver; Docker's overlap rule across the families.
#[test]
fn ipv6_host_publications_reach_the_containers_ipv6_address() {
    use crate::datapath::PublicationMaps as _;
    use std::net::Ipv6Addr;
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    a.network_create(NetworkCreate {
        ipv6: true,
        subnet6: Some("fd00:77::/64".parse().unwrap()),
        ..create("v6", Some("10.7.0.0/24"))
    })
    .unwrap();
    a.network_create(create("v4", Some("10.8.0.0/24"))).unwrap();
    let dual = a
        .container_attach(attach_as(
            "dual",
            "v6",
            &["[::1]:7001:80", "[::]::81/udp"],
            1,
        ))
        .unwrap();
    let ep = &dual.info.endpoints[0];
    let (ip4, ip6) = (ep.ip, ep.ip6.unwrap());
    let only4 = a
        .container_attach(attach_as("only4", "v4", &["[::1]:7002:80"], 2))
        .unwrap();
    let v4_only = only4.info.endpoints[0].ip;

    // `-p` on an IPv6 host address other than ::1 needs a container with
    // IPv6; refused with nothing changed.
    let before = a.state.clone();
    let err = a
        .container_attach(attach_as("bad", "v4", &["[2001:db8::1]:7003:80"], 3))
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("has no IPv6 address") && text.contains("host address 2001:db8::1"),
        "{text}"
    );
    assert_eq!(a.state, before);

    // `publish` names the target by either address.
    let by4 = a
        .publish(format!("[2001:db8::5]:7004->{ip4}:80").parse().unwrap())
        .unwrap();
    assert_eq!(by4.owner, Some(dual.info.container.uid));
    let by6 = a
        .publish(format!("7005->[{ip6}]:80/udp").parse().unwrap())
        .unwrap();
    assert_eq!(
        by6.spec.host_ip,
        std::net::IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    );
    assert_eq!(by6.owner, Some(dual.info.container.uid));
    for (bad, why) in [
        (
            format!("[2001:db8::5]:7006->{v4_only}:80"),
            "has no IPv6 address",
        ),
        ("[::]:7006->10.99.0.1:80".to_owned(), "has no IPv6 address"),
        (
            "7006->[fd00:99::1]:80".to_owned(),
            "not the IPv6 address of one of netagent's containers",
        ),
    ] {
        let err = a.publish(bad.parse().unwrap()).unwrap_err().to_string();
        assert!(err.contains(why), "{bad}: {err}");
    }
    // ::1 to an address netagent does not own: the host's sockets reach it.
    a.publish("[::1]:7007->10.99.0.1:80".parse().unwrap())
        .unwrap();

    // Nothing went into the IPv4 map for them; the IPv6 map has each.
    assert!(
        a.datapath
            .publications()
            .unwrap()
            .iter()
            .all(|(k, _)| ![7001, 7002, 7004, 7005, 7007].contains(&u16::from_be(k.port_be))),
        "an IPv6 publication has no IPv4 entry"
    );
    let mut sixes: Vec<(Ipv6Addr, u16, Ipv6Addr, u16)> = a
        .datapath
        .host_maps
        .publications6
        .iter()
        .map(|(k, v)| {
            let ip = |w: [u32; 4]| {
                let mut o = [0u8; 16];
                for (i, x) in w.iter().enumerate() {
                    o[i * 4..i * 4 + 4].copy_from_slice(&x.to_ne_bytes());
                }
                Ipv6Addr::from(o)
            };
            (
                ip(k.addr_be),
                u16::from_be(k.port_be),
                ip(v.addr_be),
                u16::from_be(v.port_be),
            )
        })
        .collect();
    sixes.sort();
    let any6 = Ipv6Addr::UNSPECIFIED;
    let lo6 = Ipv6Addr::LOCALHOST;
    let dp81 = a
        .state
        .publications
        .iter()
        .find(|p| p.spec.container_port == 81)
        .unwrap()
        .spec
        .host_port;
    let mut want = vec![
        (any6, 7005, ip6, 80),
        (any6, dp81, ip6, 81),
        (lo6, 7001, ip6, 80),
        (lo6, 7002, v4_only.to_ipv6_mapped(), 80),
        (
            lo6,
            7007,
            "10.99.0.1"
                .parse::<std::net::Ipv4Addr>()
                .unwrap()
                .to_ipv6_mapped(),
            80,
        ),
        ("2001:db8::5".parse().unwrap(), 7004, ip6, 80),
    ];
    want.sort();
    assert_eq!(sixes, want);

    // The ports are held on IPv6 only.
    assert!(
        a.host
            .reserved
            .iter()
            .any(|h| h.port == 7001 && h.ip == std::net::IpAddr::V6(lo6))
    );

    // Docker's overlap rule: 0.0.0.0 clashes with any IPv6 address; a
    // specific IPv4 address with none of them; [::] with every IPv6 one.
    for (clash, ok) in [
        (format!("7001->{v4_only}:80"), false),
        (format!("127.0.0.1:7001->{v4_only}:80"), true),
        (format!("[2001:db8::9]:7005->{ip4}:80/udp"), false),
        (format!("[2001:db8::9]:7005->{ip4}:80"), true),
    ] {
        let got = a.publish(clash.parse().unwrap());
        assert_eq!(got.is_ok(), ok, "{clash}: {got:?}");
        if let Err(e) = got {
            assert!(e.to_string().contains("port is already allocated"), "{e}");
        }
    }

    // Detaching the container takes its publications off the IPv6 map.
    a.container_detach("dual").unwrap();
    let left: Vec<u16> = a
        .datapath
        .host_maps
        .publications6
        .iter()
        .map(|(k, _)| u16::from_be(k.port_be))
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&7002) && left.contains(&7007), "{left:?}");
}
