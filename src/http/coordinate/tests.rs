//! Unit tests of the pure parts of `/v1/coordinate`: the `?near=` sort and body decoding.

use super::*;
use crate::catalog::tests::registration;
use crate::catalog::{ChangeSet, apply};

fn at(x: f64) -> NodeCoordinate {
    NodeCoordinate { vec: vec![x, 0.0], error: 0.2, adjustment: 0.0, height: 1e-5 }
}

/// Nodes a..e; a at 0, b at 3 ms, c at 1 ms, d at 2 ms; e has no coordinate.
fn catalog() -> Catalog {
    let mut catalog = Catalog::new();
    let mut index = 0;
    let mut run = |catalog: &mut Catalog, command: Command| {
        index += 1;
        apply(catalog, index, &command, &mut ChangeSet::new())
    };
    for node in ["a", "b", "c", "d", "e"] {
        run(&mut catalog, registration(node, None, vec![]));
    }
    for (node, x) in [("a", 0.0), ("b", 0.003), ("c", 0.001), ("d", 0.002)] {
        let update = CoordinateUpdate { node: node.into(), segment: String::new(), coord: at(x) };
        run(&mut catalog, Command::CoordinateBatchUpdate(vec![update]));
    }
    catalog
}

#[test]
fn near_sorts_by_estimated_rtt_and_unknown_nodes_go_last() {
    let catalog = catalog();
    let items = vec!["e", "b", "a", "e", "d", "c"];
    assert_eq!(sort_by_distance(&catalog, Some("a"), items.clone(), |n| n), ["a", "c", "d", "b", "e", "e"]);
    assert_eq!(sort_by_distance(&catalog, Some("b"), items.clone(), |n| n), ["b", "d", "c", "a", "e", "e"]);
    // A source without a coordinate, or none at all, leaves the order alone (Consul's rule).
    assert_eq!(sort_by_distance(&catalog, Some("e"), items.clone(), |n| n), items);
    assert_eq!(sort_by_distance(&catalog, Some("ghost"), items.clone(), |n| n), items);
    assert_eq!(sort_by_distance(&catalog, None, items.clone(), |n| n), items);
}

#[test]
fn coordinate_bodies_decode_like_consuls() {
    let fields = Fields::parse(br#"{"vec": [0.5, 1], "error": 1.5, "Height": 0.0001}"#).expect("an object");
    let coordinate = decode_coordinate(&fields).expect("decodes");
    assert_eq!(coordinate, NodeCoordinate { vec: vec![0.5, 1.0], error: 1.5, adjustment: 0.0, height: 0.0001 });
    for bad in [r#"{"Vec": "x"}"#, r#"{"Vec": [1, "x"]}"#, r#"{"Error": "big"}"#, r#"{"Height": [1]}"#] {
        let fields = Fields::parse(bad.as_bytes()).expect("an object");
        assert!(matches!(decode_coordinate(&fields), Err(ApiError::BadRequest(_))), "{bad}");
    }
    let wide = format!(r#"{{"Vec": [{}]}}"#, vec!["0"; COORDINATE_DIMENSIONS_MAX + 1].join(","));
    let fields = Fields::parse(wide.as_bytes()).expect("an object");
    assert!(matches!(decode_coordinate(&fields), Err(ApiError::BadRequest(_))));
}

#[test]
fn coordinates_render_with_consuls_names() {
    let entry = CoordinateOut { node: "n".into(), segment: String::new(), coord: coord_out(&at(0.5)) };
    let json = serde_json::to_value(&entry).expect("serializes");
    assert_eq!(json, serde_json::json!({"Node": "n", "Segment": "", "Coord": {"Vec": [0.5, 0.0], "Error": 0.2, "Adjustment": 0.0, "Height": 1e-5}}));
    let map = DatacenterMapOut { datacenter: "dc1".into(), area_id: "WAN".into(), coordinates: vec![] };
    assert_eq!(serde_json::to_value(&map).expect("serializes"), serde_json::json!({"Datacenter": "dc1", "AreaID": "WAN", "Coordinates": []}));
}
