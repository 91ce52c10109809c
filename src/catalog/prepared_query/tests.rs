//! Prepared queries in the catalog: Consul's integrity rules, session cleanup, resolution by
//! ID, name and template, template rendering, execution filters, persistence, and the pinned
//! bytes of the commands and rows.

use std::collections::BTreeMap;

use crate::catalog::codec::{decode_command, encode_command};
use crate::catalog::command::Command;
use crate::catalog::model::HealthStatus;
use crate::catalog::prepared_query::{PreparedQuery, PreparedQueryOp, ResolveError, ServiceQuery, execute, resolve};
use crate::catalog::tests::{check, registration, release_session};
use crate::catalog::{Catalog, ChangeSet, Outcome, RowKey, apply};

const ID_A: &str = "11111111-2222-3333-4444-555555555555";
const ID_B: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

fn query(id: &str, name: &str, service: &str) -> PreparedQuery {
    PreparedQuery {
        id: id.into(),
        name: name.into(),
        service: ServiceQuery { service: service.into(), ..ServiceQuery::default() },
        ..PreparedQuery::default()
    }
}

fn template(id: &str, name: &str, service: &str, regexp: &str) -> PreparedQuery {
    let mut query = query(id, name, service);
    query.template.kind = "name_prefix_match".into();
    query.template.regexp = regexp.into();
    query
}

fn set(catalog: &mut Catalog, index: u64, query: PreparedQuery, create: bool) -> Outcome {
    apply(catalog, index, &Command::PreparedQuery(PreparedQueryOp::Set { query, create }), &mut ChangeSet::new())
}

fn rejected(outcome: Outcome) -> String {
    match outcome {
        Outcome::Rejected(reason) => reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The command's and rows' bytes are a compatibility promise: these must never change.
#[test]
fn prepared_query_encoding_is_pinned() {
    // Version 1, Command::PreparedQuery (tag 23 = 0x17), Set (0): id "i", name "n", empty
    // session and token, empty template, service "s" with empty failover/lists/maps, empty
    // DNS TTL, indexes 0, then create = true.
    let set_command = Command::PreparedQuery(PreparedQueryOp::Set { query: query("i", "n", "s"), create: true });
    let expected = "0117 00 0169 016e 00 00 000000 0173 000000 00 00 00 00 00 00 00 00 00 00 00 00 01";
    assert_eq!(hex(&encode_command(&set_command)), expected.split_whitespace().collect::<String>());
    assert_eq!(decode_command(&encode_command(&set_command)).expect("decodes"), set_command);
    let delete = Command::PreparedQuery(PreparedQueryOp::Delete { id: "i".into() });
    assert_eq!(hex(&encode_command(&delete)), "01170101".to_string() + "69");
    assert_eq!(decode_command(&encode_command(&delete)).expect("decodes"), delete);

    let mut catalog = Catalog::new();
    assert_eq!(set(&mut catalog, 5, query("i", "n", "s"), true), Outcome::Done);
    let (key, value) = catalog.encode_row(&RowKey::PreparedQuery("i".into())).expect("row exists");
    assert_eq!(hex(&key), "710000000169");
    // Row format 1, the query as above with create/modify index 5.
    let row = "01 0169 016e 00 00 000000 0173 000000 00 00 00 00 00 00 00 00 00 00 05 05";
    assert_eq!(hex(&value), row.split_whitespace().collect::<String>());
    let (key, value) = catalog.encode_row(&RowKey::PreparedQueriesIndex).expect("index row exists");
    assert_eq!((hex(&key), hex(&value)), ("51".to_string(), "0105".to_string()));
}

#[test]
fn names_ids_and_templates_stay_unique_as_in_consul() {
    let mut catalog = Catalog::new();
    assert_eq!(set(&mut catalog, 1, query(ID_A, "web", "web"), true), Outcome::Done);
    assert!(rejected(set(&mut catalog, 2, query(ID_A, "other", "web"), true)).contains("already exists"));
    assert_eq!(rejected(set(&mut catalog, 3, query(ID_B, "WEB", "web"), true)), "name 'WEB' aliases an existing query name");
    assert_eq!(rejected(set(&mut catalog, 4, query(ID_B, ID_A, "web"), true)), format!("name '{ID_A}' aliases an existing query ID"));
    assert_eq!(rejected(set(&mut catalog, 5, query(ID_B, "x", "web"), false)), format!("Cannot modify non-existent prepared query: '{ID_B}'"));
    assert_eq!(set(&mut catalog, 6, template(ID_B, "", "${name.full}", ""), true), Outcome::Done);
    assert_eq!(rejected(set(&mut catalog, 7, template("c", "", "x", ""), true)), "a query template with an empty name already exists");
    let mut unbound = query("d", "y", "web");
    unbound.session = "nope".into();
    assert_eq!(rejected(set(&mut catalog, 8, unbound, true)), "invalid session \"nope\"");
    assert_eq!(rejected(set(&mut catalog, 9, template("e", "t", "x", "("), true)).split(':').next(), Some("failed compiling template"));
    let mut bad_type = template("f", "u", "x", "");
    bad_type.template.kind = "nope".into();
    assert_eq!(rejected(set(&mut catalog, 10, bad_type, true)), "failed compiling template: Bad Template.Type 'nope'");
    assert!(rejected(set(&mut catalog, 11, template("g", "v", "${nope(1)", ""), true)).starts_with("failed compiling template: Bad format"));
    // An update keeps the create index and moves the modify index.
    assert_eq!(set(&mut catalog, 12, query(ID_A, "web2", "web"), false), Outcome::Done);
    let stored = catalog.prepared_query(ID_A).expect("stored");
    assert_eq!((stored.create_index, stored.modify_index, stored.name.as_str()), (1, 12, "web2"));
    assert_eq!(catalog.prepared_queries_index(), 12);
    let delete = Command::PreparedQuery(PreparedQueryOp::Delete { id: ID_A.into() });
    assert_eq!(apply(&mut catalog, 13, &delete, &mut ChangeSet::new()), Outcome::Done);
    assert!(catalog.prepared_query(ID_A).is_none());
    assert_eq!(catalog.last_index(), 13);
}

#[test]
fn a_query_goes_with_its_session_and_survives_persistence() {
    let mut catalog = Catalog::new();
    apply(&mut catalog, 1, &registration("n1", None, vec![]), &mut ChangeSet::new());
    apply(&mut catalog, 2, &release_session("s1", "n1"), &mut ChangeSet::new());
    let mut bound = query(ID_A, "", "web");
    bound.session = "s1".into();
    assert_eq!(set(&mut catalog, 3, bound, true), Outcome::Done);
    assert_eq!(set(&mut catalog, 4, query(ID_B, "kept", "web"), true), Outcome::Done);

    let mut reloaded = Catalog::new();
    for row in catalog.all_rows() {
        let (key, value) = catalog.encode_row(&row).expect("row exists");
        reloaded.load_row(&key, &value).expect("row decodes");
    }
    assert_eq!(reloaded, catalog);

    let mut changes = ChangeSet::new();
    apply(&mut catalog, 5, &Command::SessionDestroy { session: "s1".into(), now_ms: 0 }, &mut changes);
    assert!(catalog.prepared_query(ID_A).is_none(), "the session's query is deleted");
    assert!(catalog.prepared_query(ID_B).is_some());
    assert!(changes.rows().any(|row| *row == RowKey::PreparedQuery(ID_A.into())));
    assert_eq!(catalog.prepared_queries_index(), 5);
}

#[test]
fn resolution_by_id_name_and_longest_template_prefix() {
    let mut catalog = Catalog::new();
    set(&mut catalog, 1, query(ID_A, "exact", "web"), true);
    set(&mut catalog, 2, template(ID_B, "geo-db", "mysql-${match(1)}", r"^geo-db-(.*?)-([^\-]+?)$"), true);
    set(&mut catalog, 3, template("c", "", "${name.full}", ""), true);
    set(&mut catalog, 4, template("d", "geo-db-special", "special", ""), true);
    assert_eq!(resolve(&catalog, &ID_A.to_uppercase()).map(|q| q.service.service), Ok("web".into()));
    assert_eq!(resolve(&catalog, "EXACT").map(|q| q.id), Ok(ID_A.into()));
    assert_eq!(resolve(&catalog, "geo-db-customer-primary").map(|q| q.service.service), Ok("mysql-customer".into()));
    assert_eq!(resolve(&catalog, "geo-db-special-x").map(|q| q.service.service), Ok("special".into()));
    assert_eq!(resolve(&catalog, "anything").map(|q| q.service.service), Ok("anything".into()), "the catch-all");
    assert_eq!(resolve(&catalog, ID_B), Err(ResolveError::TemplateById));
    assert_eq!(resolve(&catalog, ""), Err(ResolveError::MissingId));
    let mut empty = Catalog::new();
    set(&mut empty, 1, query(ID_A, "exact", "web"), true);
    assert_eq!(resolve(&empty, "other"), Err(ResolveError::NotFound));
}

#[test]
fn templates_interpolate_every_service_string() {
    let mut geo = template("t", "geo-db", "${name.prefix}:${name.suffix}:${ match(2) }:$${x}", r"^geo-db-(.*?)-([^\-]+?)$");
    geo.service.tags = vec!["${match(1)}".into(), "${match(7)}".into(), "!${match(2)}".into()];
    geo.service.node_meta = BTreeMap::from([("dc".to_string(), "${name.full}".to_string())]);
    geo.service.ignore_check_ids = vec!["${match(0)}".into()];
    let mut catalog = Catalog::new();
    assert_eq!(set(&mut catalog, 1, geo.clone(), true), Outcome::Done);
    let rendered = resolve(&catalog, "geo-db-customer-primary").expect("renders");
    assert_eq!(rendered.service.service, "geo-db:-customer-primary:primary:${x}");
    assert_eq!(rendered.service.tags, vec!["customer", "", "!primary"]);
    assert_eq!(rendered.service.node_meta["dc"], "geo-db-customer-primary");
    assert_eq!(rendered.service.ignore_check_ids, vec!["geo-db-customer-primary"]);

    geo.template.remove_empty_tags = true;
    assert_eq!(set(&mut catalog, 2, geo, false), Outcome::Done);
    let rendered = resolve(&catalog, "geo-db-nomatch").expect("renders");
    assert_eq!(rendered.service.tags, vec!["!"], "no match: every group is empty, and empty tags go");

    let unknown = template("u", "zz", "${name.nope}", "");
    assert!(rejected(set(&mut catalog, 3, unknown, true)).contains("unknown variable accessed: name.nope"));
}

/// `n1` runs web (tags primary, v1) passing; `n2` runs WEB warning with meta env=prod and a
/// node in rack r1; `n3` runs web with a critical check "flaky".
fn three_instances() -> Catalog {
    let mut catalog = Catalog::new();
    let mut register = |index, node: &str, name: &str, status, check_id: &str, tags: &[&str]| {
        let mut command = registration(node, Some(("web1", name)), vec![check(check_id, "web1", status)]);
        if let Command::Register(registration) = &mut command {
            let service = registration.service.as_mut().expect("has a service");
            service.tags = tags.iter().map(|t| t.to_string()).collect();
            if node == "n2" {
                service.meta.insert("env".into(), "prod".into());
                registration.node_meta.insert("rack".into(), "r1".into());
            }
        }
        apply(&mut catalog, index, &command, &mut ChangeSet::new());
    };
    register(1, "n1", "web", HealthStatus::Passing, "c1", &["primary", "v1"]);
    register(2, "n2", "WEB", HealthStatus::Warning, "c2", &["Primary"]);
    register(3, "n3", "web", HealthStatus::Critical, "flaky", &["v1"]);
    catalog
}

fn nodes_selected(catalog: &Catalog, query: ServiceQuery) -> Vec<String> {
    let mut nodes: Vec<String> = execute(catalog, &query).iter().map(|i| i.node.name.clone()).collect();
    nodes.sort();
    nodes
}

#[test]
fn execution_filters_as_consul() {
    let catalog = three_instances();
    let web = || ServiceQuery { service: "Web".into(), ..ServiceQuery::default() };
    assert_eq!(nodes_selected(&catalog, web()), ["n1", "n2"], "names match case-insensitively; critical goes");
    assert_eq!(nodes_selected(&catalog, ServiceQuery { only_passing: true, ..web() }), ["n1"]);
    assert_eq!(nodes_selected(&catalog, ServiceQuery { ignore_check_ids: vec!["flaky".into()], ..web() }), ["n1", "n2", "n3"]);
    assert_eq!(nodes_selected(&catalog, ServiceQuery { tags: vec!["PRIMARY".into()], ..web() }), ["n1", "n2"]);
    assert_eq!(nodes_selected(&catalog, ServiceQuery { tags: vec!["primary".into(), "!v1".into()], ..web() }), ["n2"]);
    let rack = BTreeMap::from([("rack".to_string(), "r1".to_string())]);
    assert_eq!(nodes_selected(&catalog, ServiceQuery { node_meta: rack, ..web() }), ["n2"]);
    let env = BTreeMap::from([("env".to_string(), "dev".to_string())]);
    assert!(nodes_selected(&catalog, ServiceQuery { service_meta: env, ..web() }).is_empty());
    assert!(nodes_selected(&catalog, ServiceQuery { connect: true, ..web() }).is_empty(), "no service mesh: nothing is connect-capable");
}
