//! Unit tests of `Command::Batch`: every write of a batch gets its own index and outcome, and a
//! batch leaves the catalog exactly as the same writes in separate entries would.

use crate::catalog::command::Command;
use crate::catalog::tests::{registration, run};
use crate::catalog::{Catalog, Outcome};

fn set(key: &str, value: &str, cas_index: Option<u64>) -> Command {
    Command::KvSet { key: key.into(), value: value.as_bytes().to_vec(), flags: 0, cas_index }
}

#[test]
fn each_write_in_a_batch_gets_its_own_index_and_outcome() {
    let mut catalog = Catalog::new();
    let batch = Command::Batch(vec![
        set("a", "1", None),
        set("b", "1", Some(0)),
        // A CAS against the index the first write of this batch was given.
        set("a", "2", Some(10)),
        // Refused (b exists): uses no index.
        set("b", "2", Some(0)),
        set("c", "1", None),
    ]);
    let outcome = run(&mut catalog, 10, batch);
    assert_eq!(
        outcome,
        Outcome::Batch(vec![Outcome::Bool(true), Outcome::Bool(true), Outcome::Bool(true), Outcome::Bool(false), Outcome::Bool(true)])
    );
    let modify = |key: &str| catalog.kv_get(key).map(|e| (e.create_index, e.modify_index));
    assert_eq!(modify("a"), Some((10, 12)));
    assert_eq!(modify("b"), Some((11, 11)));
    assert_eq!(modify("c"), Some((13, 13)));
    assert_eq!(catalog.last_index(), 13);
    // The next entry's Raft index (11) is behind what the batch handed out: it continues after.
    run(&mut catalog, 11, set("d", "1", None));
    assert_eq!(catalog.kv_get("d").map(|e| e.modify_index), Some(14));
    // Once the Raft index is ahead again, it is the index, as in Consul.
    run(&mut catalog, 40, set("e", "1", None));
    assert_eq!(catalog.kv_get("e").map(|e| e.modify_index), Some(40));
}

#[test]
fn a_batch_equals_the_same_writes_in_separate_entries() {
    let writes = vec![
        registration("n1", Some(("web1", "web")), vec![]),
        set("k", "1", None),
        Command::KvDelete { key: "k".into(), cas_index: None },
        registration("n2", Some(("web2", "web")), vec![]),
        set("k", "2", Some(0)),
    ];
    let mut batched = Catalog::new();
    run(&mut batched, 7, Command::Batch(writes.clone()));
    let mut separate = Catalog::new();
    for (offset, write) in writes.into_iter().enumerate() {
        run(&mut separate, 7 + offset as u64, write);
    }
    assert_eq!(batched, separate);
    assert_eq!(batched.digest(), separate.digest());
}

#[test]
fn a_nested_batch_is_refused_and_changes_nothing() {
    let mut catalog = Catalog::new();
    let outcome = run(&mut catalog, 3, Command::Batch(vec![Command::Batch(vec![set("a", "1", None)]), set("b", "1", None)]));
    let Outcome::Batch(outcomes) = outcome else { panic!("a batch answers with a batch") };
    assert!(matches!(outcomes[0], Outcome::Rejected(_)));
    assert_eq!(outcomes[1], Outcome::Bool(true));
    assert!(catalog.kv_get("a").is_none());
    assert_eq!(catalog.kv_get("b").map(|e| e.modify_index), Some(3));
}
