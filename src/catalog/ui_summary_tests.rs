//! Unit tests of the dashboard summaries: Consul's counting rules on a small catalog.

use std::collections::BTreeMap;

use crate::catalog::Catalog;
use crate::catalog::command::{CheckRegistration, Command, Registration, ServiceRegistration};
use crate::catalog::model::{HealthStatus};
use crate::catalog::tests::check;
use crate::catalog::ui_summary::{StatusCounts, catalog_overview, node_info, node_infos, service_summaries};
use crate::catalog::{ChangeSet, apply};

struct Instance<'a> {
    node: &'a str,
    id: &'a str,
    name: &'a str,
    tags: &'a [&'a str],
    kind: &'a str,
    meta: &'a [(&'a str, &'a str)],
    opaque: &'a [(&'a str, &'a str)],
    checks: Vec<CheckRegistration>,
}

fn instance<'a>(node: &'a str, id: &'a str, name: &'a str, tags: &'a [&'a str], status: HealthStatus) -> Instance<'a> {
    Instance { node, id, name, tags, kind: "", meta: &[], opaque: &[], checks: vec![check(&format!("{id}-check"), id, status)] }
}

fn register(catalog: &mut Catalog, index: &mut u64, node: &str, service: Option<&Instance<'_>>, checks: Vec<CheckRegistration>) {
    *index += 1;
    let pairs = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
    let command = Command::Register(Registration {
        node_id: String::new(),
        node: node.into(),
        address: "10.0.0.1".into(),
        datacenter: "dc1".into(),
        tagged_addresses: BTreeMap::new(),
        node_meta: BTreeMap::new(),
        skip_node_update: false,
        service: service.map(|s| ServiceRegistration {
            id: s.id.into(),
            name: s.name.into(),
            tags: s.tags.iter().map(|t| t.to_string()).collect(),
            meta: pairs(s.meta),
            port: 80,
            kind: s.kind.into(),
            opaque_json: pairs(s.opaque),
            ..Default::default()
        }),
        checks,
    });
    apply(catalog, *index, &command, &mut ChangeSet::new());
}

/// n1: serfHealth passing; web1 (passing), web2 (warning), a proxy for web (critical).
/// n2: serfHealth critical; web3 (passing, from k8s), db1 (critical). n3: no services.
fn sample() -> Catalog {
    let mut catalog = Catalog::new();
    let mut index = 0;
    register(&mut catalog, &mut index, "n1", None, vec![check("serfHealth", "", HealthStatus::Passing)]);
    register(&mut catalog, &mut index, "n2", None, vec![check("serfHealth", "", HealthStatus::Critical)]);
    register(&mut catalog, &mut index, "n3", None, vec![check("serfHealth", "", HealthStatus::Warning)]);
    let web1 = instance("n1", "web1", "web", &["b", "a"], HealthStatus::Passing);
    let web2 = instance("n1", "web2", "web", &["a", "c"], HealthStatus::Warning);
    let mut web3 = instance("n2", "web3", "web", &[], HealthStatus::Passing);
    web3.meta = &[("external-source", "k8s")];
    let db1 = instance("n2", "db1", "db", &[], HealthStatus::Critical);
    let mut proxy = instance("n1", "web-proxy", "web-sidecar-proxy", &[], HealthStatus::Critical);
    proxy.kind = "connect-proxy";
    proxy.opaque = &[("Proxy", r#"{"DestinationServiceName":"web","Mode":"transparent"}"#)];
    for service in [web1, web2, web3, db1, proxy] {
        let checks = service.checks.clone();
        register(&mut catalog, &mut index, service.node, Some(&service), checks);
    }
    catalog
}

#[test]
fn service_summaries_count_as_consul_does() {
    let catalog = sample();
    let summaries = service_summaries(&catalog, |_| true);
    let names: Vec<&str> = summaries.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["db", "web", "web-sidecar-proxy"], "sorted by name");
    let web = &summaries[1];
    assert_eq!(web.nodes, ["n1", "n2"]);
    assert_eq!(web.instance_count, 3);
    assert_eq!(web.tags, ["a", "b", "c"], "the union, sorted");
    assert_eq!(web.external_sources, ["k8s"]);
    assert_eq!(web.datacenter, "dc1");
    // n1's serfHealth once (not once per instance), web1, web2, the proxy's check; n2's
    // serfHealth and web3. n3 runs nothing, so its node check counts nowhere.
    assert_eq!(web.checks, StatusCounts { passing: 3, warning: 1, critical: 2 });
    assert!(web.connected_with_proxy && web.transparent_proxy);
    let db = &summaries[0];
    assert_eq!((db.instance_count, db.checks), (1, StatusCounts { passing: 0, warning: 0, critical: 2 }));
    assert!(!db.connected_with_proxy);
    let proxy = &summaries[2];
    assert_eq!(proxy.kind, "connect-proxy");
    assert_eq!(proxy.checks, StatusCounts { passing: 1, warning: 0, critical: 1 });
}

#[test]
fn the_predicate_filters_instances_before_they_are_summarized() {
    let catalog = sample();
    let summaries = service_summaries(&catalog, |instance| instance.node.name == "n2");
    let web = summaries.iter().find(|s| s.name == "web").expect("web on n2");
    assert_eq!((web.instance_count, web.nodes.clone()), (1, vec!["n2".to_string()]));
    assert_eq!(web.checks, StatusCounts { passing: 1, warning: 0, critical: 1 });
    assert!(!web.connected_with_proxy, "the proxy on n1 was filtered out");
    assert!(service_summaries(&catalog, |_| false).is_empty());
}

#[test]
fn the_overview_counts_nodes_instances_and_checks_by_their_own_rules() {
    let overview = catalog_overview(&sample());
    assert_eq!(overview.nodes.len(), 1);
    assert_eq!(overview.nodes[0].name, "");
    assert_eq!(overview.nodes[0].counts, StatusCounts { passing: 1, warning: 1, critical: 1 });
    let services: Vec<(&str, StatusCounts)> = overview.services.iter().map(|s| (s.name.as_str(), s.counts)).collect();
    // Instances by their service checks only: web3 passes though n2's serfHealth fails.
    assert_eq!(services, [
        ("db", StatusCounts { passing: 0, warning: 0, critical: 1 }),
        ("web", StatusCounts { passing: 2, warning: 1, critical: 0 }),
        ("web-sidecar-proxy", StatusCounts { passing: 0, warning: 0, critical: 1 }),
    ]);
    let serf = overview.checks.iter().find(|c| c.name == "serfHealth").expect("serfHealth summary");
    assert_eq!((serf.counts, serf.counts.total()), (StatusCounts { passing: 1, warning: 1, critical: 1 }, 3));
    assert_eq!(overview.checks.len(), 6, "serfHealth and one check per instance, by name");
    assert_eq!(catalog_overview(&Catalog::new()), Default::default(), "nothing: empty lists");
}

#[test]
fn node_infos_hold_each_nodes_services_and_checks() {
    let catalog = sample();
    let infos = node_infos(&catalog);
    let shape: Vec<(&str, usize, usize)> = infos.iter().map(|i| (i.node.name.as_str(), i.services.len(), i.checks.len())).collect();
    assert_eq!(shape, [("n1", 3, 4), ("n2", 2, 3), ("n3", 0, 1)]);
    assert_eq!(node_info(&catalog, "n2").map(|i| i.services[0].id.clone()), Some("db1".into()), "services by ID");
    assert!(node_info(&catalog, "nope").is_none());
}
