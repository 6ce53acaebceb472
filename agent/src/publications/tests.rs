//! Unit tests of publications against the fakes.

use super::*;
use crate::{
    datapath::{PublicationMaps as _, fake::FakeDatapath},
    host::fake::FakeHost,
    state::StateStore,
};

fn spec(s: &str) -> PortSpec {
    s.parse().unwrap()
}

fn agent(dir: &tempfile::TempDir) -> Agent<FakeDatapath, FakeHost> {
    let store = StateStore::open(dir.path()).unwrap();
    Agent::new(store, FakeDatapath::default(), FakeHost::default()).unwrap()
}

fn reopen(dir: &tempfile::TempDir, dp: FakeDatapath) -> Agent<FakeDatapath, FakeHost> {
    let store = StateStore::open(dir.path()).unwrap();
    Agent::new(store, dp, FakeHost::default()).unwrap()
}

#[test]
fn publish_writes_key_and_value_in_network_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    let p = a.publish(spec("10.0.0.1:5000->172.17.0.2:80/udp")).unwrap();
    let entries = a.datapath.publications().unwrap();
    assert_eq!(entries.len(), 1);
    let (key, value) = entries[0];
    assert_eq!(key.addr_be.to_ne_bytes(), [10, 0, 0, 1]);
    assert_eq!(key.port_be.to_ne_bytes(), 5000u16.to_be_bytes());
    assert_eq!(key.proto, 17);
    assert_eq!(value.addr_be.to_ne_bytes(), [172, 17, 0, 2]);
    assert_eq!(value.port_be.to_ne_bytes(), 80u16.to_be_bytes());
    assert_eq!(value.stats_slot, p.stats_slot);
}

#[test]
fn overlapping_publications_are_refused_with_dockers_wording() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    a.publish(spec("5000->172.17.0.2:80")).unwrap();
    for clash in [
        "5000->172.17.0.3:81",
        "10.0.0.1:5000->172.17.0.3:81",
        "0.0.0.0:5000->172.17.0.2:80/tcp",
    ] {
        let err = a.publish(spec(clash)).unwrap_err().to_string();
        assert!(
            err.starts_with("Bind for ") && err.contains(":5000 failed: port is already allocated"),
            "{clash}: {err}"
        );
    }
    // Other protocol, other port: fine.
    a.publish(spec("5000->172.17.0.2:80/udp")).unwrap();
    a.publish(spec("5001->172.17.0.2:80")).unwrap();
    // A specific address clashes with a later wildcard too.
    a.publish(spec("10.0.0.1:6000->172.17.0.2:80")).unwrap();
    assert!(a.publish(spec("6000->172.17.0.9:80")).is_err());
    a.publish(spec("10.0.0.2:6000->172.17.0.2:80")).unwrap();
    assert_eq!(a.datapath.pubs.entries.len(), 5);
}

#[test]
fn a_failed_datapath_write_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    a.publish(spec("5000->172.17.0.2:80")).unwrap();
    let before = std::fs::read(dir.path().join("state.json")).unwrap();
    a.datapath.fail_writes(true);
    assert!(a.publish(spec("5001->172.17.0.2:81")).is_err());
    assert!(a.unpublish(spec("5000->172.17.0.2:80")).is_err());
    assert_eq!(
        std::fs::read(dir.path().join("state.json")).unwrap(),
        before
    );
    assert_eq!(a.list(None).len(), 1);
    a.datapath.fail_writes(false);
    assert_eq!(a.datapath.pubs.entries.len(), 1);
}

#[test]
fn a_full_map_is_a_clear_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    a.datapath.pubs.capacity = Some(1);
    a.publish(spec("5000->172.17.0.2:80")).unwrap();
    let err = a.publish(spec("5001->172.17.0.2:80")).unwrap_err();
    assert!(err.to_string().contains("map full"), "{err}");
    assert_eq!(a.list(None).len(), 1);
}

#[test]
fn publish_many_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    a.publish(spec("5000->172.17.0.2:80")).unwrap();
    // A clash inside the batch, and one with an existing publication.
    for batch in [
        vec![
            spec("6000->172.17.0.2:80"),
            spec("10.0.0.1:6000->172.17.0.3:80"),
        ],
        vec![spec("6001->172.17.0.2:80"), spec("5000->172.17.0.3:80")],
    ] {
        let err = a.publish_many(&batch).unwrap_err().to_string();
        assert!(err.contains("port is already allocated"), "{err}");
        assert_eq!(a.list(None).len(), 1);
        assert_eq!(a.datapath.pubs.entries.len(), 1);
    }
    // A map that fills up half-way: the first writes are undone.
    a.datapath.pubs.capacity = Some(3);
    let batch: Vec<PortSpec> = (7000..7004)
        .map(|p| spec(&format!("{p}->172.17.0.2:80")))
        .collect();
    assert!(a.publish_many(&batch).is_err());
    assert_eq!(a.datapath.pubs.entries.len(), 1, "partial writes undone");
    assert_eq!(a.list(None).len(), 1);
    a.datapath.pubs.capacity = None;
    let published = a.publish_many(&batch).unwrap();
    assert_eq!(published.len(), 4);
    let slots: BTreeSet<u32> = a.list(None).iter().map(|p| p.stats_slot).collect();
    assert_eq!(slots.len(), 5, "distinct slots");
    assert_eq!(a.datapath.pubs.entries.len(), 5);
}

#[test]
fn unpublish_needs_the_exact_publication() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    a.publish(spec("5000->172.17.0.2:80")).unwrap();
    let err = a
        .unpublish(spec("5000->172.17.0.9:80"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("is published, not"), "{err}");
    let err = a
        .unpublish(spec("5001->172.17.0.2:80"))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("no publication"), "{err}");
    a.unpublish(spec("5000->172.17.0.2:80")).unwrap();
    assert!(a.datapath.pubs.entries.is_empty());
    assert!(a.list(None).is_empty());
}

#[test]
fn slots_are_unique_reused_and_zeroed() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    let p0 = a.publish(spec("5000->172.17.0.2:80")).unwrap();
    let p1 = a.publish(spec("5001->172.17.0.2:80")).unwrap();
    assert_ne!(p0.stats_slot, p1.stats_slot);
    a.datapath.pubs.stats.insert(
        p0.stats_slot,
        PubStats {
            fwd_packets: 9,
            ..Default::default()
        },
    );
    a.unpublish(p0.spec).unwrap();
    let p2 = a.publish(spec("5002->172.17.0.2:80")).unwrap();
    assert_eq!(p2.stats_slot, p0.stats_slot, "lowest free slot is reused");
    assert_eq!(a.datapath.stats(p2.stats_slot).unwrap().fwd_packets, 0);
}

#[test]
fn reconcile_converges_the_map_on_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    let kept = a.publish(spec("5000->172.17.0.2:80")).unwrap();
    let changed = a.publish(spec("5001->172.17.0.2:81")).unwrap();
    let missing = a.publish(spec("5002->172.17.0.2:82/udp")).unwrap();
    let mut dp = std::mem::take(&mut a.datapath);
    drop(a);
    // The kernel drifted while the agent was away.
    dp.pubs.entries.remove(&{
        let k = pub_key(&missing.spec).unwrap();
        (k.addr_be, k.port_be, k.proto)
    });
    let k = pub_key(&changed.spec).unwrap();
    dp.pubs
        .entries
        .get_mut(&(k.addr_be, k.port_be, k.proto))
        .unwrap()
        .port_be = 1;
    let stray = pub_key(&spec("9999->172.17.0.2:99")).unwrap();
    dp.upsert_publication(&stray, &PubValue::default()).unwrap();
    dp.pubs.stats.insert(
        kept.stats_slot,
        PubStats {
            fwd_packets: 5,
            ..Default::default()
        },
    );

    let mut a = reopen(&dir, dp);
    let report = a.reconcile();
    assert_eq!(
        report,
        ReconcileReport {
            added: 1,
            updated: 1,
            removed: 1,
            errors: Vec::new(),
        }
    );
    let mut want: Vec<(PubKey, PubValue)> = [kept, changed, missing]
        .iter()
        .filter_map(pub_entry)
        .collect();
    want.sort_by_key(|(k, _)| (k.addr_be, k.port_be, k.proto));
    assert_eq!(a.datapath.publications().unwrap(), want);
    assert_eq!(
        a.datapath.stats(kept.stats_slot).unwrap().fwd_packets,
        5,
        "an entry already right is left alone, counters included"
    );
    assert_eq!(a.reconcile(), ReconcileReport::default());
    // A full map: the entries that fit go in, the rest is reported.
    let mut dp = std::mem::take(&mut a.datapath);
    drop(a);
    dp.pubs.entries.clear();
    dp.pubs.capacity = Some(2);
    let mut a = reopen(&dir, dp);
    let report = a.reconcile();
    assert_eq!((report.added, report.errors.len()), (2, 1), "{report:?}");
    assert!(report.errors[0].contains("map full"), "{report:?}");
}

#[test]
fn list_filters_and_sorts_naturally() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    for s in [
        "8080->172.17.0.3:80",
        "10000->172.17.0.2:1000/udp",
        "9000->172.17.0.2:90",
        "10001->172.17.0.2:1000",
    ] {
        a.publish(spec(s)).unwrap();
    }
    let got: Vec<String> = a
        .list(Some("172.17.0.2".parse().unwrap()))
        .iter()
        .map(|p| p.spec.to_string())
        .collect();
    assert_eq!(
        got,
        [
            "0.0.0.0:9000->172.17.0.2:90/tcp",
            "0.0.0.0:10001->172.17.0.2:1000/tcp",
            "0.0.0.0:10000->172.17.0.2:1000/udp",
        ]
    );
    assert_eq!(a.list(None).len(), 4);
}

#[test]
fn publications_past_the_hosts_counter_slots_are_translated_uncounted() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    a.datapath.pubs.slots = Some(2);
    let specs: Vec<PortSpec> = (5000..5003)
        .map(|p| spec(&format!("{p}->172.17.0.2:80")))
        .collect();
    let published = a.publish_many(&specs).unwrap();
    let slots: Vec<u32> = published.iter().map(|p| p.stats_slot).collect();
    assert_eq!(slots, [0, 1, NO_STATS_SLOT]);
    assert_eq!(a.datapath.pubs.entries.len(), 3, "all three translated");
    let stats = a.stats().unwrap();
    let counted: Vec<bool> = stats.publications.iter().map(|p| p.counted).collect();
    assert_eq!(counted, [true, true, false]);
    // Freed slots are handed out again; the uncounted one keeps none.
    a.unpublish(specs[0]).unwrap();
    let next = a.publish(spec("5010->172.17.0.2:80")).unwrap();
    assert_eq!(next.stats_slot, 0);
    assert_eq!(
        a.publish(spec("5011->172.17.0.2:80")).unwrap().stats_slot,
        NO_STATS_SLOT
    );
    // The state file takes any number of uncounted publications, and a
    // restart reconciles them without error.
    let dp = std::mem::take(&mut a.datapath);
    drop(a);
    let mut a = reopen(&dir, dp);
    assert_eq!(a.list(None).len(), 4);
    a.datapath.pubs.slots = Some(2);
    assert_eq!(a.reconcile().errors, Vec::<String>::new());
}
