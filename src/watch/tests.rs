//! Unit tests of the watch registry: a change wakes exactly the topics it touches.

use std::time::Duration;

use crate::catalog::command::Command;
use crate::catalog::{Catalog, ChangeSet, apply};
use crate::watch::{Table, Topic, Watches};

fn changes_of(catalog: &mut Catalog, index: u64, command: Command) -> ChangeSet {
    let mut changes = ChangeSet::new();
    apply(catalog, index, &command, &mut changes);
    changes
}

fn set(key: &str) -> Command {
    Command::KvSet { key: key.into(), value: b"v".to_vec(), flags: 0, cas_index: None }
}

/// True if the subscription saw a change (without waiting for one).
async fn woke(sub: &mut crate::watch::Subscription<'_>) -> bool {
    tokio::time::timeout(Duration::from_millis(10), sub.changed()).await.is_ok()
}

#[tokio::test]
async fn a_kv_write_wakes_its_key_its_prefixes_and_nobody_else() {
    let watches = Watches::new();
    let mut catalog = Catalog::new();
    let mut key = watches.subscribe(Topic::Kv("app/x".into()));
    let mut prefix = watches.subscribe(Topic::KvPrefix("app/".into()));
    let mut root = watches.subscribe(Topic::KvPrefix(String::new()));
    let mut table = watches.subscribe(Topic::Table(Table::Kv));
    let mut other_key = watches.subscribe(Topic::Kv("app/y".into()));
    let mut other_prefix = watches.subscribe(Topic::KvPrefix("other/".into()));
    let mut longer_prefix = watches.subscribe(Topic::KvPrefix("app/xy".into()));
    let mut nodes = watches.subscribe(Topic::Table(Table::Nodes));
    for sub in [&mut key, &mut prefix, &mut root, &mut table, &mut other_key, &mut other_prefix, &mut longer_prefix, &mut nodes] {
        sub.mark_seen();
    }
    watches.publish(1, &changes_of(&mut catalog, 1, set("app/x")));
    for sub in [&mut key, &mut prefix, &mut root, &mut table] {
        assert!(woke(sub).await);
        assert_eq!(sub.mark_seen(), 1);
    }
    for sub in [&mut other_key, &mut other_prefix, &mut longer_prefix, &mut nodes] {
        assert!(!woke(sub).await, "an unrelated watcher woke");
    }
}

#[tokio::test]
async fn service_watchers_wake_on_their_service_and_its_nodes_checks_only() {
    let watches = Watches::new();
    let mut catalog = Catalog::new();
    apply(&mut catalog, 1, &crate::catalog::tests::registration("n1", Some(("web1", "web")), vec![]), &mut ChangeSet::new());
    apply(&mut catalog, 2, &crate::catalog::tests::registration("n2", Some(("db1", "db")), vec![]), &mut ChangeSet::new());
    let mut web = watches.subscribe(Topic::Service("web".into()));
    let mut db = watches.subscribe(Topic::Service("db".into()));
    web.mark_seen();
    db.mark_seen();
    // A node-level check on n1 changes web's health results, not db's.
    let check = crate::catalog::command::CheckRegistration {
        check_id: "mem".into(),
        name: "mem".into(),
        status: crate::catalog::model::HealthStatus::Passing,
        notes: String::new(),
        output: String::new(),
        service_id: String::new(),
        definition: Default::default(),
    };
    let changes = changes_of(&mut catalog, 3, crate::catalog::tests::registration("n1", None, vec![check]));
    watches.publish(3, &changes);
    assert!(woke(&mut web).await);
    assert!(!woke(&mut db).await);
    let changes = changes_of(&mut catalog, 4, Command::DeregisterService { node: "n2".into(), service_id: "db1".into() });
    watches.publish(4, &changes);
    assert!(woke(&mut db).await, "deregistering the last instance wakes its watchers");
}

#[tokio::test]
async fn slots_are_shared_and_released_with_their_last_subscriber() {
    let watches = Watches::new();
    let a = watches.subscribe(Topic::Kv("k".into()));
    let b = watches.subscribe(Topic::Kv("k".into()));
    let c = watches.subscribe(Topic::KvPrefix("p".into()));
    assert_eq!(watches.topics_watched(), 2);
    drop(a);
    assert_eq!(watches.topics_watched(), 2);
    drop(b);
    drop(c);
    assert_eq!(watches.topics_watched(), 0);
}

#[tokio::test]
async fn identical_queries_compute_once_per_change() {
    let watches = Watches::new();
    let mut subs: Vec<_> = (0..100).map(|_| watches.subscribe(Topic::Kv("k".into()))).collect();
    let computed = std::cell::Cell::new(0);
    for sub in &mut subs {
        let stamp = sub.mark_seen();
        sub.memo(stamp, "GET k", || computed.set(computed.get() + 1));
    }
    assert_eq!(computed.get(), 1);
    watches.publish(5, &changes_of(&mut Catalog::new(), 5, set("k")));
    for sub in &mut subs {
        let stamp = sub.mark_seen();
        sub.memo(stamp, "GET k", || computed.set(computed.get() + 1));
        sub.memo(stamp, "GET k?raw", || computed.set(computed.get() + 1));
    }
    assert_eq!(computed.get(), 3, "one computation per query shape per change");
}

#[tokio::test]
async fn the_dashboard_topic_wakes_on_nodes_services_and_checks_but_not_kv() {
    let watches = Watches::new();
    let mut catalog = Catalog::new();
    let mut health = watches.subscribe(Topic::Table(Table::CatalogHealth));
    health.mark_seen();
    watches.publish(1, &changes_of(&mut catalog, 1, set("app/x")));
    assert!(!woke(&mut health).await, "a KV write woke the dashboard's summaries");
    let check = crate::catalog::tests::check("c1", "", crate::catalog::model::HealthStatus::Passing);
    watches.publish(2, &changes_of(&mut catalog, 2, crate::catalog::tests::registration("n1", None, vec![check])));
    assert!(woke(&mut health).await);
    assert_eq!(health.mark_seen(), 2);
    let update = Command::UpdateCheck { node: "n1".into(), check_id: "c1".into(), status: crate::catalog::model::HealthStatus::Critical, output: String::new() };
    watches.publish(3, &changes_of(&mut catalog, 3, update));
    assert!(woke(&mut health).await, "a check's status change wakes it");
}
