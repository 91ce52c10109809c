//! Unit tests of the coordinates table: apply rules, deletion with the node, rollback in a
//! transaction, persistence, and the pinned bytes of the command and rows.

use std::collections::BTreeMap;

use super::{COORDINATE_BATCH_UPDATES_MAX, CoordinateUpdate, NodeCoordinate};
use crate::catalog::codec::{decode_command, encode_command};
use crate::catalog::command::Command;
use crate::catalog::tests::{registration, run};
use crate::catalog::txn::{TxnCatalogVerb, TxnKvOp, TxnKvVerb, TxnNodeOp, TxnOp};
use crate::catalog::{Catalog, ChangeSet, Outcome, RowKey, apply};

fn coord(x: f64) -> NodeCoordinate {
    NodeCoordinate { vec: vec![x, 0.0], error: 1.5, adjustment: 0.0, height: 0.5 }
}

fn update(node: &str, x: f64) -> Command {
    Command::CoordinateBatchUpdate(vec![CoordinateUpdate { node: node.into(), segment: String::new(), coord: coord(x) }])
}

fn two_nodes() -> Catalog {
    let mut catalog = Catalog::new();
    run(&mut catalog, 1, registration("n1", None, vec![]));
    run(&mut catalog, 2, registration("n2", None, vec![]));
    catalog
}

#[test]
fn updates_are_stored_and_move_the_index() {
    let mut catalog = two_nodes();
    let mut changes = ChangeSet::new();
    assert_eq!(apply(&mut catalog, 3, &update("n1", 0.25), &mut changes), Outcome::Done);
    assert_eq!(catalog.coordinate("n1", ""), Some(&coord(0.25)));
    assert_eq!(catalog.coordinates_index(), 3);
    assert_eq!(catalog.last_index(), 3);
    assert!(changes.rows().any(|row| *row == RowKey::Coordinate("n1".into(), String::new())));
    // The same coordinate again changes nothing, so it wakes nobody.
    let mut again = ChangeSet::new();
    apply(&mut catalog, 4, &update("n1", 0.25), &mut again);
    assert!(again.is_empty());
    assert_eq!(catalog.coordinates_index(), 3);
}

#[test]
fn unknown_nodes_are_skipped_and_invalid_coordinates_refused() {
    let mut catalog = two_nodes();
    let before = catalog.clone();
    assert_eq!(run(&mut catalog, 3, update("ghost", 0.1)), Outcome::Done);
    assert_eq!(catalog, before, "a coordinate for an unknown node is not stored");
    for bad in [f64::NAN, f64::INFINITY] {
        let mut invalid = coord(0.1);
        invalid.vec[1] = bad;
        let batch = vec![
            CoordinateUpdate { node: "n1".into(), segment: String::new(), coord: coord(0.3) },
            CoordinateUpdate { node: "n2".into(), segment: String::new(), coord: invalid },
        ];
        assert!(matches!(run(&mut catalog, 4, Command::CoordinateBatchUpdate(batch)), Outcome::Rejected(_)));
        assert_eq!(catalog, before, "a rejected batch changes nothing");
    }
    let negative = NodeCoordinate { error: -1.0, ..coord(0.1) };
    let empty = NodeCoordinate { vec: Vec::new(), ..coord(0.1) };
    let huge = NodeCoordinate { vec: vec![0.0; 65], ..coord(0.1) };
    for invalid in [negative, empty, huge] {
        let batch = vec![CoordinateUpdate { node: "n1".into(), segment: String::new(), coord: invalid }];
        assert!(matches!(run(&mut catalog, 5, Command::CoordinateBatchUpdate(batch)), Outcome::Rejected(_)));
    }
    let too_many = vec![CoordinateUpdate { node: "n1".into(), segment: String::new(), coord: coord(0.1) }; COORDINATE_BATCH_UPDATES_MAX + 1];
    assert!(matches!(run(&mut catalog, 6, Command::CoordinateBatchUpdate(too_many)), Outcome::Rejected(_)));
    assert_eq!(catalog, before);
}

#[test]
fn deregistering_a_node_deletes_its_coordinates() {
    let mut catalog = two_nodes();
    run(&mut catalog, 3, update("n1", 0.1));
    run(&mut catalog, 4, update("n2", 0.2));
    let mut changes = ChangeSet::new();
    apply(&mut catalog, 5, &Command::DeregisterNode { node: "n1".into() }, &mut changes);
    assert_eq!(catalog.coordinate("n1", ""), None);
    assert_eq!(catalog.coordinate("n2", ""), Some(&coord(0.2)));
    assert_eq!(catalog.coordinates_index(), 5, "a deletion moves the table's index");
    assert!(changes.rows().any(|row| *row == RowKey::Coordinate("n1".into(), String::new())));
    assert_eq!(catalog.coordinates().count(), 1);
}

#[test]
fn a_rolled_back_transaction_keeps_the_coordinates() {
    let mut catalog = two_nodes();
    run(&mut catalog, 3, update("n1", 0.1));
    let before = catalog.clone();
    let delete_node = TxnOp::Node(TxnNodeOp {
        verb: TxnCatalogVerb::Delete,
        node_id: String::new(),
        node: "n1".into(),
        address: String::new(),
        datacenter: String::new(),
        tagged_addresses: BTreeMap::new(),
        meta: BTreeMap::new(),
        index: 0,
    });
    let failing_cas = TxnOp::Kv(TxnKvOp { verb: TxnKvVerb::Cas, key: "k".into(), value: vec![], flags: 0, index: 99, session: String::new() });
    let outcome = run(&mut catalog, 4, Command::TxnOps { ops: vec![delete_node, failing_cas] });
    assert!(matches!(outcome, Outcome::TxnOps(Err(_))), "{outcome:?}");
    assert_eq!(catalog, before);
}

#[test]
fn coordinates_round_trip_through_persistence() {
    let mut catalog = two_nodes();
    run(&mut catalog, 3, update("n1", 0.1));
    let mut reloaded = Catalog::new();
    for row in catalog.all_rows() {
        let (key, value) = catalog.encode_row(&row).expect("row exists");
        reloaded.load_row(&key, &value).expect("row decodes");
    }
    assert_eq!(reloaded, catalog);
    assert_eq!(reloaded.coordinates_index(), 3);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The command's and rows' bytes are a compatibility promise: these must never change.
#[test]
fn coordinate_encoding_is_pinned() {
    let command = update("n", 1.0);
    // Version 1, variant 21, one update: "n", segment "", vec [1.0, 0.0], error 1.5,
    // adjustment 0.0, height 0.5 (f64 little-endian).
    let expected = "0115 01 016e 00 02 000000000000f03f 0000000000000000 000000000000f83f 0000000000000000 000000000000e03f";
    let expected: String = expected.split_whitespace().collect();
    assert_eq!(hex(&encode_command(&command)), expected);
    assert_eq!(decode_command(&encode_command(&command)).expect("decodes"), command);

    let mut catalog = two_nodes();
    run(&mut catalog, 3, Command::CoordinateBatchUpdate(vec![CoordinateUpdate { node: "n1".into(), segment: String::new(), coord: coord(1.0) }]));
    let (key, value) = catalog.encode_row(&RowKey::Coordinate("n1".into(), String::new())).expect("row exists");
    assert_eq!(hex(&key), "6f000000026e3100000000");
    let value_hex: String =
        "01 02 000000000000f03f 0000000000000000 000000000000f83f 0000000000000000 000000000000e03f".split_whitespace().collect();
    assert_eq!(hex(&value), value_hex);
    let (key, value) = catalog.encode_row(&RowKey::CoordinatesIndex).expect("index row exists");
    assert_eq!((hex(&key), hex(&value)), ("70".to_string(), "0103".to_string()));
}
