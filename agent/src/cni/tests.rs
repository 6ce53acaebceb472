//! CNI attachments against the fakes: ADD in both modes, DEL, GC, CHECK,
//! and ADDs that fail leaving nothing.

use super::*;
use crate::{
    api::{ErrorKind, NetworkCreate},
    datapath::fake::FakeDatapath,
    host::{HostPort, NetnsId, fake::FakeHost},
    spec::Proto,
    state::StateStore,
};

type TestAgent = Agent<FakeDatapath, FakeHost>;

fn agent(dir: &tempfile::TempDir) -> TestAgent {
    let store = StateStore::open(dir.path()).unwrap();
    let mut a = Agent::new(store, FakeDatapath::default(), FakeHost::default()).unwrap();
    a.ensure_default_network().unwrap();
    a
}

fn key(id: &str, ifname: &str, network: &str) -> CniKey {
    CniKey {
        container_id: id.into(),
        ifname: ifname.into(),
        network: network.into(),
    }
}

/// ADD as the main plugin on netagent network `network`, created as
/// `subnet` if missing.
fn main_add(k: &CniKey, network: &str, subnet: &str, publish: &[&str]) -> CniAdd {
    let mut create = NetworkCreate::named(network);
    create.subnet = Some(subnet.parse().unwrap());
    CniAdd {
        key: k.clone(),
        netns: format!("/run/netns/{}", k.container_id).into(),
        name: None,
        preferred_name: None,
        publish: publish.iter().map(|s| (*s).to_owned()).collect(),
        mode: CniMode::Main(CniMain {
            network: network.into(),
            create: Some(create),
            ..CniMain::default()
        }),
    }
}

fn chained_add(k: &CniKey, ip: &str, publish: &[&str]) -> CniAdd {
    CniAdd {
        key: k.clone(),
        netns: format!("/run/netns/{}", k.container_id).into(),
        name: None,
        preferred_name: None,
        publish: publish.iter().map(|s| (*s).to_owned()).collect(),
        mode: CniMode::Chained {
            ips: vec![ip.parse().unwrap()],
        },
    }
}

fn kind(e: &AgentError) -> ErrorKind {
    e.kind()
}

#[test]
fn main_add_makes_the_network_and_endpoint_del_removes_them_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    let k = key("c0ffee000001", "net1", "web");
    let mut add = main_add(
        &k,
        "web",
        "10.30.0.0/24",
        &["8080:80", "127.0.0.1:5353:53/udp"],
    );
    if let CniMode::Main(m) = &mut add.mode {
        m.mac = Some("02:42:0a:1e:00:09".into());
    }
    let got = a.cni_add(add.clone()).unwrap();
    assert_eq!(got.container, "cni-c0ffee000001");
    let ep = got.endpoint.clone().unwrap();
    assert_eq!(
        (
            ep.ifname.as_str(),
            ep.mac.as_str(),
            ep.cni_network.as_deref()
        ),
        ("net1", "02:42:0a:1e:00:09", Some("web"))
    );
    assert_eq!(
        got.network.as_ref().unwrap().ipam.subnet.to_string(),
        "10.30.0.0/24"
    );
    assert!(got.default_route);
    assert_eq!(got.ports.len(), 2);
    assert_eq!(a.datapath.pubs.entries.len(), 2);
    assert!(
        a.host
            .endpoints
            .values()
            .any(|e| e.ifname == "net1" && e.mac == Some([2, 0x42, 10, 30, 0, 9]))
    );
    // The same key again is refused, and changes nothing.
    let e = a.cni_add(add).unwrap_err();
    assert_eq!(kind(&e), ErrorKind::Conflict, "{e}");
    assert_eq!(a.state.containers.len(), 1);
    // CHECK finds everything.
    a.cni_check(&k).unwrap();

    assert!(a.cni_del(&k).unwrap());
    assert!(a.state.containers.is_empty() && a.state.publications.is_empty());
    assert!(a.datapath.pubs.entries.is_empty() && a.host.endpoints.is_empty());
    assert!(a.host.reserved.is_empty(), "host ports released");
    // DEL of what is gone succeeds; CHECK says it is unknown.
    assert!(!a.cni_del(&k).unwrap());
    assert_eq!(kind(&a.cni_check(&k).unwrap_err()), ErrorKind::NotFound);
    // The network stays, as the bridge plugin's bridge does.
    assert!(a.state.networks.iter().any(|n| n.name == "web"));
}

#[test]
fn a_second_interface_connects_and_its_del_leaves_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    let k0 = key("c0ffee000002", "eth0", "front");
    let k1 = key("c0ffee000002", "eth1", "back");
    a.cni_add(main_add(&k0, "front", "10.31.0.0/24", &["8081:80"]))
        .unwrap();
    let got = a
        .cni_add(main_add(&k1, "back", "10.32.0.0/24", &["8082:80"]))
        .unwrap();
    assert!(!got.default_route, "the route stays on the first network");
    assert_eq!(got.ports.len(), 1);
    assert_eq!(got.ports[0].host_port, 8082);
    assert_eq!(a.state.containers.len(), 1);
    assert_eq!(a.state.containers[0].endpoints().len(), 2);
    assert_eq!(a.state.publications.len(), 2);
    // Another namespace for the same container ID is refused.
    let mut other = main_add(
        &key("c0ffee000002", "eth2", "third"),
        "third",
        "10.33.0.0/24",
        &[],
    );
    other.netns = "/run/netns/elsewhere".into();
    assert!(a.cni_add(other).is_err());
    assert!(
        !a.state.networks.iter().any(|n| n.name == "third"),
        "the network it made is gone"
    );

    assert!(a.cni_del(&k1).unwrap());
    let c = &a.state.containers[0];
    assert_eq!(c.endpoints().len(), 1);
    assert_eq!(
        a.state.publications.len(),
        1,
        "eth1's publication went with it"
    );
    assert_eq!(a.state.publications[0].spec.host_port, 8081);
    a.cni_check(&k0).unwrap();
    assert!(a.cni_del(&k0).unwrap());
    assert!(a.state.containers.is_empty());
}

#[test]
fn a_failed_add_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    a.host.foreign.insert(HostPort {
        ip: "0.0.0.0".parse().unwrap(),
        port: 9090,
        proto: Proto::Tcp,
    });
    let k = key("c0ffee000003", "eth0", "fresh");
    let e = a
        .cni_add(main_add(
            &k,
            "fresh",
            "10.34.0.0/24",
            &["9091:81", "9090:80"],
        ))
        .unwrap_err();
    assert_eq!(kind(&e), ErrorKind::Conflict, "{e}");
    assert!(e.to_string().contains("9090"), "{e}");
    assert!(a.state.containers.is_empty() && a.state.publications.is_empty());
    assert!(!a.state.networks.iter().any(|n| n.name == "fresh"));
    assert!(a.host.endpoints.is_empty() && a.host.reserved.is_empty());
    assert!(a.datapath.pubs.entries.is_empty());
    // A name in use: a conflict too.
    let mut named = main_add(&k, "fresh", "10.34.0.0/24", &[]);
    named.name = Some("db".into());
    a.cni_add(named.clone()).unwrap();
    let mut again = main_add(
        &key("c0ffee000004", "eth0", "fresh"),
        "fresh",
        "10.34.0.0/24",
        &[],
    );
    again.name = Some("db".into());
    assert_eq!(kind(&a.cni_add(again).unwrap_err()), ErrorKind::Conflict);
    // A configuration that describes the existing network otherwise.
    let differs = main_add(
        &key("c0ffee000005", "eth0", "fresh"),
        "fresh",
        "10.35.0.0/24",
        &[],
    );
    let e = a.cni_add(differs).unwrap_err();
    assert!(e.to_string().contains("10.34.0.0/24"), "{e}");
    assert_eq!(a.state.containers.len(), 1);
    // An internal network named by a configuration that says nothing of
    // it is taken as it is; one asking for internal is refused another.
    let mut internal = NetworkCreate::named("walled");
    internal.internal = true;
    a.network_create(internal).unwrap();
    let mut plain = main_add(
        &key("c0ffee000006", "eth0", "walled"),
        "walled",
        "10.36.0.0/24",
        &[],
    );
    if let CniMode::Main(m) = &mut plain.mode {
        m.create.as_mut().unwrap().subnet = None;
    }
    a.cni_add(plain).unwrap();
    let mut wants = main_add(
        &key("c0ffee000007", "eth0", "fresh"),
        "fresh",
        "10.34.0.0/24",
        &[],
    );
    if let CniMode::Main(m) = &mut wants.mode {
        m.create.as_mut().unwrap().internal = true;
    }
    let e = a.cni_add(wants).unwrap_err();
    assert!(e.to_string().contains("internal"), "{e}");
}

#[test]
fn chained_add_publishes_to_the_previous_plugins_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    let k = key("feed00000001", "eth0", "podman");
    let got = a
        .cni_add(chained_add(&k, "10.88.0.5", &["8088:80", "5300:53/udp"]))
        .unwrap();
    assert!(got.endpoint.is_none());
    assert_eq!(got.ports.len(), 2);
    assert!(
        got.ports
            .iter()
            .all(|p| p.container_ip.to_string() == "10.88.0.5")
    );
    assert!(matches!(
        a.state.containers[0].mode,
        NetworkMode::Chained(_)
    ));
    a.cni_check(&k).unwrap();
    // A removed map entry is what CHECK reports.
    let saved = a.datapath.pubs.entries.clone();
    a.datapath.pubs.entries.clear();
    let e = a.cni_check(&k).unwrap_err();
    assert_eq!(kind(&e), ErrorKind::Broken);
    assert!(e.to_string().contains("8088"), "{e}");
    a.datapath.pubs.entries = saved;
    // Once per container; never both modes.
    let e = a
        .cni_add(chained_add(
            &key("feed00000001", "eth1", "podman"),
            "10.88.0.6",
            &[],
        ))
        .unwrap_err();
    assert_eq!(kind(&e), ErrorKind::Conflict);
    let e = a
        .cni_add(main_add(
            &key("feed00000001", "eth1", "x"),
            "x",
            "10.36.0.0/24",
            &[],
        ))
        .unwrap_err();
    assert_eq!(kind(&e), ErrorKind::Conflict);
    // Without an IPv4 address there is nothing to publish to.
    let e = a
        .cni_add(chained_add(
            &key("feed00000002", "eth0", "podman"),
            "fd00::5",
            &["8089:80"],
        ))
        .unwrap_err();
    assert!(e.to_string().contains("IPv4"), "{e}");
    assert!(a.cni_del(&k).unwrap());
    assert!(a.state.containers.is_empty() && a.state.publications.is_empty());
    assert!(a.datapath.pubs.entries.is_empty() && a.host.reserved.is_empty());
}

#[test]
fn check_finds_what_is_missing_on_the_host_side() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    let k = key("c0ffee000006", "eth0", "chk");
    let ep = a
        .cni_add(main_add(&k, "chk", "10.37.0.0/24", &[]))
        .unwrap()
        .endpoint
        .unwrap();
    a.datapath.endpoints.attached.remove(&ep.host_ifname);
    let e = a.cni_check(&k).unwrap_err();
    assert!(e.to_string().contains("isolation program"), "{e}");
    a.datapath.endpoints.attached.insert(ep.host_ifname.clone());
    a.datapath.endpoints.addrs.clear();
    assert!(
        a.cni_check(&k)
            .unwrap_err()
            .to_string()
            .contains("address entry")
    );
    a.host.endpoints.clear();
    assert!(a.cni_check(&k).is_err());
}

#[test]
fn del_of_a_container_whose_namespace_is_gone_removes_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    let k0 = key("c0ffee000007", "eth0", "n1");
    let k1 = key("c0ffee000007", "eth1", "n2");
    a.cni_add(main_add(&k0, "n1", "10.38.0.0/24", &["8090:80"]))
        .unwrap();
    a.cni_add(main_add(&k1, "n2", "10.39.0.0/24", &[])).unwrap();
    a.host
        .replaced_netns
        .insert("/run/netns/c0ffee000007".into(), NetnsId { dev: 9, ino: 9 });
    assert!(a.cni_del(&k1).unwrap());
    assert!(a.state.containers.is_empty() && a.state.publications.is_empty());
    assert!(!a.cni_del(&k0).unwrap(), "already gone with the namespace");
}

#[test]
fn gc_removes_only_this_networks_attachments_the_runtime_does_not_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    let keep = key("aaaa00000001", "eth0", "gcnet");
    let stale = key("aaaa00000002", "eth0", "gcnet");
    let stale_chained = key("aaaa00000003", "eth0", "gcnet");
    let other_net = key("aaaa00000004", "eth0", "othernet");
    for k in [&keep, &stale] {
        a.cni_add(main_add(k, "gcnet", "10.40.0.0/24", &[]))
            .unwrap();
    }
    a.cni_add(chained_add(&stale_chained, "10.88.0.9", &["8099:80"]))
        .unwrap();
    a.cni_add(main_add(&other_net, "othernet", "10.41.0.0/24", &[]))
        .unwrap();
    // A container of the CLI on the same netagent network.
    a.container_attach(ContainerAttach {
        name: Some("cli".into()),
        netns: Some("/run/netns/cli".into()),
        network: Some("gcnet".into()),
        ..ContainerAttach::default()
    })
    .unwrap();
    let removed = a
        .cni_gc(
            "gcnet",
            &[
                ("aaaa00000001".into(), "eth0".into()),
                ("unknown".into(), "eth9".into()),
            ],
        )
        .unwrap();
    assert_eq!(removed, vec![stale.clone(), stale_chained.clone()]);
    let names: Vec<&str> = a.state.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["cni-aaaa00000001", "cni-aaaa00000004", "cli"]);
    assert!(a.state.publications.is_empty());
    // Nothing left to collect.
    assert!(
        a.cni_gc("gcnet", &[("aaaa00000001".into(), "eth0".into())])
            .unwrap()
            .is_empty()
    );
}

#[test]
fn names_come_from_the_runtime_and_a_preferred_one_never_fails_an_add() {
    assert_eq!(default_name("c0ffee000001"), "cni-c0ffee000001");
    let hex = "0123456789abcdef".repeat(4);
    assert_eq!(default_name(&hex), "cni-0123456789ab");
    let long = "default-".to_owned() + &"webapp-".repeat(10);
    let name = default_name(&long);
    assert_eq!(name.len(), crate::model::MAX_NAME_LEN);
    assert!(crate::model::valid_container_name(&name));

    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    let pod = |sandbox: &str| main_add(&key(sandbox, "eth0", "pods"), "pods", "10.42.0.0/24", &[]);
    let mut first = pod("sandbox-1");
    first.preferred_name = Some("default_web".into());
    assert_eq!(a.cni_add(first).unwrap().container, "default_web");
    // The pod's next sandbox, added before the old one is deleted.
    let mut second = pod("sandbox-2");
    second.preferred_name = Some("default_web".into());
    assert_eq!(a.cni_add(second).unwrap().container, "cni-sandbox-2");
    // A name asked for is refused when taken.
    let mut strict = pod("sandbox-3");
    strict.name = Some("default_web".into());
    assert_eq!(a.cni_add(strict).unwrap_err().kind(), ErrorKind::Conflict);
}
