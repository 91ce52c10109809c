//! Unit tests of the answers added for issue 12: CNAMEs for host-name addresses, glue per SRV
//! record, PTR, the alt domain, per-service TTLs and SOA/NS below the apex. Pure: no sockets.

use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::{Name, RData, RecordType};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::answer::{self, Answer};
use super::node_answer;
use super::tests::{instance, ips, name, node, question, service, zone, zone_with};
use super::zone::Zones;
use super::{DnsAddressOwner, DnsConfig, DnsHealth, DnsInstance};

fn cname_target(answer: &Answer) -> Option<String> {
    match answer.answers.as_slice() {
        [record] => match &record.data {
            RData::CNAME(cname) => Some(cname.0.to_string()),
            _ => None,
        },
        _ => None,
    }
}

fn srv_targets(answer: &Answer) -> Vec<String> {
    answer
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::SRV(srv) => Some(srv.target.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_service_at_a_host_name_is_a_cname_and_an_srv_target() {
    let mut external = instance("n1", "10.0.0.1", DnsHealth::Passing);
    external.service_address = "backend.example.org".to_owned();
    for rtype in [
        RecordType::A,
        RecordType::AAAA,
        RecordType::ANY,
        RecordType::CNAME,
    ] {
        let answer = service(&zone(), "web.service.consul.", rtype, &[external.clone()]);
        assert_eq!(answer.response_code, ResponseCode::NoError);
        assert_eq!(
            cname_target(&answer).as_deref(),
            Some("backend.example.org."),
            "{rtype}"
        );
        assert!(
            ips(&answer.answers).is_empty(),
            "never the node's IP: {answer:?}"
        );
    }
    let srv = service(
        &zone(),
        "web.service.consul.",
        RecordType::SRV,
        &[external.clone()],
    );
    assert_eq!(srv_targets(&srv), ["backend.example.org."]);
    assert!(
        ips(&srv.additionals).is_empty(),
        "no glue without a resolver"
    );

    // Beside an instance with an IP, the CNAME is dropped (Consul keeps the address records).
    let plain = instance("n2", "10.0.0.2", DnsHealth::Passing);
    let mixed = service(
        &zone(),
        "web.service.consul.",
        RecordType::A,
        &[external, plain],
    );
    assert_eq!(
        ips(&mixed.answers),
        ["10.0.0.2".parse::<std::net::IpAddr>().unwrap()]
    );
    assert!(cname_target(&mixed).is_none());
}

#[test]
fn a_node_at_a_host_name_is_a_cname() {
    let host_node = node("ext", "db.example.org");
    let qname = name("ext.node.consul.");
    for rtype in [RecordType::A, RecordType::AAAA, RecordType::ANY] {
        let answer = node_answer::node_answer(&zone(), &question(&qname, rtype), Some(&host_node));
        assert_eq!(
            cname_target(&answer).as_deref(),
            Some("db.example.org."),
            "{rtype}"
        );
        assert_eq!(answer.answers[0].ttl, 30, "node TTL");
    }
    let mut on_host = instance("ext", "db.example.org", DnsHealth::Passing);
    on_host.node = host_node;
    let srv = service(
        &zone(),
        "db.service.consul.",
        RecordType::SRV,
        &[on_host.clone()],
    );
    assert_eq!(srv_targets(&srv), ["db.example.org."]);
    let a = service(&zone(), "db.service.consul.", RecordType::A, &[on_host]);
    assert_eq!(cname_target(&a).as_deref(), Some("db.example.org."));
}

#[test]
fn every_srv_record_gets_its_own_glue() {
    let instances: Vec<DnsInstance> = [8080, 8081, 8082]
        .into_iter()
        .map(|port| {
            let mut on_one_node = instance("n1", "10.0.0.1", DnsHealth::Passing);
            on_one_node.service_id = format!("web-{port}");
            on_one_node.port = port;
            on_one_node
        })
        .collect();
    let answer = service(&zone(), "web.service.consul.", RecordType::SRV, &instances);
    assert_eq!(srv_targets(&answer), ["n1.node.dc1.consul."; 3]);
    let glue: Vec<&Name> = answer
        .additionals
        .iter()
        .map(|record| &record.name)
        .collect();
    assert_eq!(
        glue,
        [&name("n1.node.dc1.consul."); 3],
        "one A record per SRV record"
    );

    // A cut (UDP without EDNS) keeps exactly the glue of the SRV records it keeps.
    let mut cut = answer.clone();
    assert!(answer::limit_answers(&mut cut, 2));
    assert_eq!((cut.answers.len(), cut.additionals.len()), (2, 2));
}

#[test]
fn ptr_names_the_node_or_the_service() {
    let zone = zone();
    let qname = name("1.0.0.10.in-addr.arpa.");
    let ptr = |owner: Option<&DnsAddressOwner>, rtype| {
        node_answer::ptr_answer(&zone, &question(&qname, rtype), owner)
    };
    let target = |answer: &Answer| match answer.answers.as_slice() {
        [record] => match &record.data {
            RData::PTR(ptr) => (ptr.0.to_string(), record.ttl),
            other => panic!("not a PTR: {other:?}"),
        },
        other => panic!("expected one record: {other:?}"),
    };
    let node_owner = DnsAddressOwner::Node("web1".to_owned());
    assert_eq!(
        target(&ptr(Some(&node_owner), RecordType::PTR)),
        ("web1.node.dc1.consul.".to_owned(), 0)
    );
    let service_owner = DnsAddressOwner::Service("db".to_owned());
    assert_eq!(
        target(&ptr(Some(&service_owner), RecordType::ANY)).0,
        "db.service.dc1.consul."
    );
    assert_eq!(
        ptr(None, RecordType::PTR).response_code,
        ResponseCode::NXDomain
    );
    let nodata = ptr(Some(&node_owner), RecordType::A);
    assert_eq!(
        (nodata.response_code, nodata.answers.len()),
        (ResponseCode::NoError, 0)
    );
}

#[test]
fn the_alt_domain_answers_with_its_own_names() {
    let config = DnsConfig {
        alt_domain: Some("cairn.example".to_owned()),
        ..DnsConfig::default()
    };
    let zones = Zones::new(&config).expect("valid");
    let alt_question = name("web.service.CAIRN.example.");
    let zone = zones.for_name(&alt_question).expect("in the alt domain");
    assert_eq!(zone.domain, name("cairn.example."));
    assert_eq!(
        zones
            .for_name(&name("web.service.consul."))
            .map(|z| &z.domain),
        Some(&name("consul."))
    );
    assert!(zones.for_name(&name("example.")).is_none());
    let mut rng = StdRng::seed_from_u64(1);
    let instances = [instance("n1", "10.0.0.1", DnsHealth::Passing)];
    let q = question(&alt_question, RecordType::SRV);
    let srv = answer::service_answer(zone, &q, "web", None, Some(&instances), &mut rng);
    assert_eq!(srv_targets(&srv), ["n1.node.dc1.cairn.example."]);
    let missing = answer::service_answer(zone, &q, "web", None, None, &mut rng);
    assert_eq!(
        missing.authorities[0].name,
        name("cairn.example."),
        "SOA of the alt domain"
    );

    // An alt domain inside the primary one wins for its names: the longest suffix.
    let nested = DnsConfig {
        alt_domain: Some("dc.consul".to_owned()),
        ..DnsConfig::default()
    };
    let zones = Zones::new(&nested).expect("valid");
    let zone = zones
        .for_name(&name("web.service.dc.consul."))
        .expect("served");
    assert_eq!(zone.domain, name("dc.consul."));
}

#[test]
fn service_ttls_prefer_the_exact_name_then_the_longest_prefix() {
    let zone = zone_with(|config| {
        config.service_ttls_s = [
            ("*", 5),
            ("web", 10),
            ("db-*", 20),
            ("db-main*", 30),
            ("Api", 40),
        ]
        .into_iter()
        .map(|(key, ttl)| (key.to_owned(), ttl))
        .collect();
    });
    for (service, ttl) in [
        ("web", 10),
        ("web2", 5),
        ("db-x", 20),
        ("db-main-1", 30),
        ("db-main*", 30),
        ("api", 40),
        ("other", 5),
    ] {
        assert_eq!(zone.service_ttl_s(service), ttl, "{service}");
        let qname = name(&format!("{}.service.consul.", service.replace('*', "x")));
        let mut rng = StdRng::seed_from_u64(3);
        let instances = [instance("n1", "10.0.0.1", DnsHealth::Passing)];
        let a = answer::service_answer(
            &zone,
            &question(&qname, RecordType::A),
            service,
            None,
            Some(&instances),
            &mut rng,
        );
        assert_eq!(a.answers[0].ttl, ttl, "{service}");
    }
    let no_wildcard = zone_with(|config| config.service_ttls_s = [("web".to_owned(), 9)].into());
    assert_eq!(
        (
            no_wildcard.service_ttl_s("web"),
            no_wildcard.service_ttl_s("db")
        ),
        (9, 0)
    );
}

#[test]
fn soa_and_ns_are_answered_for_any_name_in_the_zone() {
    let servers = [node("server1", "10.0.9.1")];
    let mut rng = StdRng::seed_from_u64(5);
    for qname in [
        "web.service.consul.",
        "node-a.node.consul.",
        "nothing.here.consul.",
    ] {
        let qname = name(qname);
        let soa = node_answer::apex_answer(
            &zone(),
            &question(&qname, RecordType::SOA),
            &servers,
            &mut rng,
        );
        assert!(matches!(soa.answers[0].data, RData::SOA(_)), "{qname}");
        assert_eq!(soa.answers[0].name, name("consul."));
        assert_eq!(soa.authorities.len(), 1, "NS in authority");
        let ns = node_answer::apex_answer(
            &zone(),
            &question(&qname, RecordType::NS),
            &servers,
            &mut rng,
        );
        assert!(
            matches!(&ns.answers[0].data, RData::NS(ns) if ns.0 == name("server1.node.dc1.consul."))
        );
        assert_eq!(ips(&ns.additionals).len(), 1, "glue");
    }
}

#[test]
fn a_record_limit_caps_address_answers_but_not_srv() {
    let instances: Vec<DnsInstance> = (1..=5)
        .map(|i| instance(&format!("n{i}"), &format!("10.0.0.{i}"), DnsHealth::Passing))
        .collect();
    let limited = zone_with(|config| config.a_record_limit = 2);
    for rtype in [RecordType::A, RecordType::ANY] {
        let answer = service(&limited, "web.service.consul.", rtype, &instances);
        assert_eq!(answer.answers.len(), 2, "{rtype}");
    }
    let srv = service(&limited, "web.service.consul.", RecordType::SRV, &instances);
    assert_eq!(srv.answers.len(), 5);
}
