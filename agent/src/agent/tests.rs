//! The commit rule and the journal, against the fakes.

use std::sync::atomic::Ordering;

use datapath_common::PubValue;

use super::*;
use crate::{
    api::{ContainerAttach, NetworkCreate},
    datapath::XdpAttachMode,
    datapath::{PublicationMaps as _, fake::FakeDatapath},
    host::fake::FakeHost,
    journal::Step,
    publications::pub_key,
    spec::PortSpec,
};

type TestAgent = Agent<FakeDatapath, FakeHost>;

fn agent(dir: &tempfile::TempDir) -> TestAgent {
    let store = StateStore::open(dir.path()).unwrap();
    let mut a = Agent::new(store, FakeDatapath::default(), FakeHost::default()).unwrap();
    a.ensure_default_network().unwrap();
    let mut net = NetworkCreate::named("n");
    net.subnet = Some("10.7.0.0/24".parse().unwrap());
    a.network_create(net).unwrap();
    a
}

fn attach(name: &str, publish: &[&str]) -> ContainerAttach {
    ContainerAttach {
        name: Some(name.into()),
        netns: Some(format!("/run/netns/{name}").into()),
        network: Some("n".into()),
        publish: publish.iter().map(|s| (*s).to_owned()).collect(),
        ..ContainerAttach::default()
    }
}

fn state_file(dir: &tempfile::TempDir) -> Vec<u8> {
    std::fs::read(dir.path().join("state.json")).unwrap()
}

#[test]
fn compensations_run_newest_first() {
    let mut dp = FakeDatapath::default();
    let mut host = FakeHost::default();
    let key = pub_key(&"5000->10.0.0.2:80".parse::<PortSpec>().unwrap()).unwrap();
    let value = |port: u16| PubValue {
        port_be: port.to_be(),
        ..PubValue::default()
    };
    let mut journal = Journal::default();
    journal.undo(Step::PutPublication(key, value(1)));
    journal.undo(Step::PutPublication(key, value(2)));
    journal.after_commit(Step::RemovePublication(key));
    assert_eq!(journal.pending_undo().len(), 2);
    journal.roll_back(&mut dp, &mut host);
    // The oldest compensation ran last: its value is what stays.
    assert_eq!(dp.publications().unwrap()[0].1, value(1));
}

#[test]
fn a_failed_commit_undoes_every_kernel_step() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    let before = state_file(&dir);
    let endpoints_before = a.datapath.endpoints.addrs.len();
    a.store.fail_next_save.store(true, Ordering::Relaxed);
    let err = a
        .container_attach(attach("web", &["8080:80", "5353:53/udp"]))
        .unwrap_err();
    assert!(err.to_string().contains("No space left"), "{err}");
    assert_eq!(state_file(&dir), before, "the state file is untouched");
    assert!(a.host.endpoints.is_empty(), "the veth is gone");
    assert!(a.host.reserved.is_empty(), "the host ports are released");
    assert!(
        a.datapath.pubs.entries.is_empty(),
        "the publications are gone"
    );
    assert_eq!(a.datapath.endpoints.addrs.len(), endpoints_before);
    assert!(a.datapath.endpoints.attached.is_empty());
    assert!(a.state.containers.is_empty());
    // The same request then succeeds: nothing was left holding a port.
    a.container_attach(attach("web", &["8080:80", "5353:53/udp"]))
        .unwrap();
    assert_eq!(a.datapath.pubs.entries.len(), 2);
}

#[test]
fn cleanups_wait_for_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    a.container_attach(attach("web", &["8080:80"])).unwrap();
    let before = state_file(&dir);
    a.store.fail_next_save.store(true, Ordering::Relaxed);
    assert!(a.container_detach("web").is_err());
    // Nothing irreversible ran: the veth, the port and the map entry stay.
    assert_eq!(state_file(&dir), before);
    assert_eq!(a.host.endpoints.len(), 1);
    assert_eq!(a.host.reserved.len(), 1);
    assert_eq!(a.datapath.pubs.entries.len(), 1, "the removal was undone");
    a.container_detach("web").unwrap();
    assert!(a.host.endpoints.is_empty() && a.host.reserved.is_empty());
    assert!(a.datapath.pubs.entries.is_empty());
}

#[test]
fn serving_interfaces_refuses_our_own_and_detaches_stale_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    a.datapath
        .served
        .served
        .insert("old0".into(), XdpAttachMode::Native);
    let err = a
        .serve_interfaces(&["eth9".into(), "na-br0".into()], XdpAttachMode::Off)
        .unwrap_err();
    assert!(err.to_string().contains("netagent's own"), "{err}");
    assert!(
        !a.datapath.served.served.contains_key("eth9"),
        "nothing attached before the refusal"
    );
    let report = a
        .serve_interfaces(&["eth9".into(), "eth8".into()], XdpAttachMode::Off)
        .unwrap();
    let names: Vec<&str> = report.served.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["eth9", "eth8"]);
    assert_eq!(report.unserved, ["old0"]);
    let served: Vec<_> = a.datapath.served.served.iter().collect();
    assert_eq!(
        served,
        [
            (&"eth8".to_owned(), &XdpAttachMode::Off),
            (&"eth9".to_owned(), &XdpAttachMode::Off)
        ]
    );
    // An interface that cannot be served is an error naming it.
    a.datapath.served.fail.insert("gone0".into());
    let err = a
        .serve_interfaces(&["gone0".into()], XdpAttachMode::Native)
        .unwrap_err();
    assert!(err.to_string().contains("gone0"), "{err}");
}

#[test]
fn auto_mode_chooses_per_driver_and_stats_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    a.host.drivers.insert("nic0".into(), "mlx5_core".into());
    a.host.drivers.insert("veth0".into(), "veth".into());
    let report = a
        .serve_interfaces(
            &["nic0".into(), "veth0".into(), "br9".into()],
            XdpAttachMode::Auto,
        )
        .unwrap();
    let modes: Vec<(&str, XdpAttachMode)> = report
        .served
        .iter()
        .map(|s| (s.name.as_str(), s.xdp_mode))
        .collect();
    assert_eq!(
        modes,
        [
            ("nic0", XdpAttachMode::Native),
            ("veth0", XdpAttachMode::Off),
            ("br9", XdpAttachMode::Off)
        ]
    );
    assert_eq!(a.datapath.served.served["nic0"], XdpAttachMode::Native);
    assert_eq!(a.datapath.served.served["veth0"], XdpAttachMode::Off);
    let stats = a.stats().unwrap();
    assert_eq!(stats.interfaces, report.served);
    assert!(
        stats.interfaces[1].reason.contains("GSO"),
        "{:?}",
        stats.interfaces
    );
}
