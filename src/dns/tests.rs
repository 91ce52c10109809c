//! Unit tests of answer building (`answer` and `zone`), with a seeded RNG and no sockets.

use std::collections::BTreeMap;
use std::net::IpAddr;

use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::answer::{self, Answer, Question};
use super::node_answer;
use super::records;
use super::zone::{Zone, Zones};
use super::{
    DNS_ANSWER_RECORDS_MAX, DNS_SRV_RECORDS_MAX, DnsConfig, DnsError, DnsHealth, DnsInstance,
    DnsNode,
};

pub(super) fn node(name: &str, address: &str) -> DnsNode {
    DnsNode {
        name: name.to_owned(),
        address: address.to_owned(),
        meta: BTreeMap::new(),
    }
}

pub(super) fn instance(node_name: &str, address: &str, health: DnsHealth) -> DnsInstance {
    DnsInstance {
        node: node(node_name, address),
        service_id: format!("web-{node_name}"),
        service_address: String::new(),
        port: 8080,
        tags: Vec::new(),
        weight_passing: 10,
        weight_warning: 1,
        health,
    }
}

pub(super) fn zone_with(edit: impl FnOnce(&mut DnsConfig)) -> Zone {
    let mut config = DnsConfig {
        node_ttl_s: 30,
        service_ttls_s: [("*".to_owned(), 5)].into(),
        ..DnsConfig::default()
    };
    edit(&mut config);
    Zones::new(&config).expect("valid test config").primary
}

pub(super) fn zone() -> Zone {
    zone_with(|_| {})
}

pub(super) fn name(text: &str) -> Name {
    Name::from_ascii(text).expect("valid test name")
}

pub(super) fn question(name: &Name, record_type: RecordType) -> Question<'_> {
    Question {
        name,
        record_type,
        soa_serial: 1_700_000_000,
    }
}

pub(super) fn ips(records: &[Record]) -> Vec<IpAddr> {
    records
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        })
        .collect()
}

pub(super) fn service(
    zone: &Zone,
    qname: &str,
    rtype: RecordType,
    instances: &[DnsInstance],
) -> Answer {
    let qname = name(qname);
    let mut rng = StdRng::seed_from_u64(7);
    answer::service_answer(
        zone,
        &question(&qname, rtype),
        "web",
        None,
        Some(instances),
        &mut rng,
    )
}

fn assert_soa_only(answer: &Answer, response_code: ResponseCode) {
    assert_eq!(answer.response_code, response_code);
    assert!(answer.answers.is_empty());
    assert_eq!(answer.authorities.len(), 1);
    let RData::SOA(soa) = &answer.authorities[0].data else {
        panic!("authority is not a SOA")
    };
    assert_eq!(answer.authorities[0].name, name("consul."));
    assert_eq!(soa.mname, name("ns.consul."));
    assert_eq!(soa.rname, name("hostmaster.consul."));
    assert_eq!(soa.serial, 1_700_000_000);
    assert_eq!(
        (soa.refresh, soa.retry, soa.expire, soa.minimum),
        (3600, 600, 86400, 0)
    );
}

#[test]
fn service_a_drops_critical_and_names_answers_after_the_question() {
    let instances = [
        instance("n1", "10.0.0.1", DnsHealth::Passing),
        instance("n2", "10.0.0.2", DnsHealth::Warning),
        instance("n3", "10.0.0.3", DnsHealth::Critical),
    ];
    let answer = service(&zone(), "Web.Service.Consul.", RecordType::A, &instances);
    assert_eq!(answer.response_code, ResponseCode::NoError);
    let mut got = ips(&answer.answers);
    got.sort();
    assert_eq!(
        got,
        [
            "10.0.0.1".parse::<IpAddr>().unwrap(),
            "10.0.0.2".parse().unwrap()
        ]
    );
    for record in &answer.answers {
        assert!(record.name.eq_case(&name("Web.Service.Consul.")));
        assert_eq!(record.ttl, 5);
    }
}

#[test]
fn only_passing_drops_warning_and_all_filtered_is_nxdomain() {
    let zone = zone_with(|config| config.only_passing = true);
    let instances = [
        instance("n1", "10.0.0.1", DnsHealth::Passing),
        instance("n2", "10.0.0.2", DnsHealth::Warning),
    ];
    let answer = service(&zone, "web.service.consul.", RecordType::A, &instances);
    assert_eq!(
        ips(&answer.answers),
        ["10.0.0.1".parse::<IpAddr>().unwrap()]
    );

    let unhealthy = [instance("n2", "10.0.0.2", DnsHealth::Warning)];
    let answer = service(&zone, "web.service.consul.", RecordType::A, &unhealthy);
    assert_soa_only(&answer, ResponseCode::NXDomain);
}

#[test]
fn unknown_service_is_nxdomain_and_wrong_type_is_nodata() {
    let qname = name("web.service.consul.");
    let mut rng = StdRng::seed_from_u64(1);
    let q = question(&qname, RecordType::A);
    let answer = answer::service_answer(&zone(), &q, "web", None, None, &mut rng);
    assert_soa_only(&answer, ResponseCode::NXDomain);

    let instances = [instance("n1", "10.0.0.1", DnsHealth::Passing)];
    for rtype in [RecordType::AAAA, RecordType::MX, RecordType::NS] {
        let answer = service(&zone(), "web.service.consul.", rtype, &instances);
        assert_soa_only(&answer, ResponseCode::NoError);
    }
}

#[test]
fn any_and_txt_on_a_service_return_address_records() {
    let mut v6 = instance("n2", "10.0.0.2", DnsHealth::Passing);
    v6.service_address = "2001:db8::2".to_owned();
    let instances = [instance("n1", "10.0.0.1", DnsHealth::Passing), v6];
    for rtype in [RecordType::ANY, RecordType::TXT] {
        let answer = service(&zone(), "web.service.consul.", rtype, &instances);
        assert_eq!(answer.answers.len(), 2, "{rtype}");
    }
    let answer = service(&zone(), "web.service.consul.", RecordType::AAAA, &instances);
    assert_eq!(
        ips(&answer.answers),
        ["2001:db8::2".parse::<IpAddr>().unwrap()]
    );
}

#[test]
fn tag_filter_is_case_insensitive() {
    let mut tagged = instance("n1", "10.0.0.1", DnsHealth::Passing);
    tagged.tags = vec!["Prod".to_owned()];
    let instances = [tagged, instance("n2", "10.0.0.2", DnsHealth::Passing)];
    let qname = name("prod.web.service.consul.");
    let mut rng = StdRng::seed_from_u64(3);
    let q = question(&qname, RecordType::A);
    let answer =
        answer::service_answer(&zone(), &q, "web", Some("prod"), Some(&instances), &mut rng);
    assert_eq!(
        ips(&answer.answers),
        ["10.0.0.1".parse::<IpAddr>().unwrap()]
    );
    let answer =
        answer::service_answer(&zone(), &q, "web", Some("dev"), Some(&instances), &mut rng);
    assert_eq!(answer.response_code, ResponseCode::NXDomain);
}

#[test]
fn a_records_are_deduplicated_shuffled_and_limited() {
    let mut instances: Vec<DnsInstance> = (1..=20)
        .map(|i| instance(&format!("n{i}"), &format!("10.0.0.{i}"), DnsHealth::Passing))
        .collect();
    instances.push(instance("n1", "10.0.0.1", DnsHealth::Passing));
    let answer = service(&zone(), "web.service.consul.", RecordType::A, &instances);
    assert_eq!(answer.answers.len(), 20);

    let limited = zone_with(|config| config.a_record_limit = 2);
    let qname = name("web.service.consul.");
    let q = question(&qname, RecordType::A);
    let mut firsts = std::collections::HashSet::new();
    for seed in 0..20 {
        let mut rng = StdRng::seed_from_u64(seed);
        let answer = answer::service_answer(&limited, &q, "web", None, Some(&instances), &mut rng);
        assert_eq!(answer.answers.len(), 2);
        firsts.insert(ips(&answer.answers)[0]);
    }
    assert!(
        firsts.len() > 3,
        "the limit applies after shuffling: {firsts:?}"
    );
}

#[test]
fn answers_are_bounded() {
    let instances: Vec<DnsInstance> = (0..5000)
        .map(|i| {
            instance(
                &format!("n{i}"),
                &format!("10.{}.{}.{}", i / 62500, i / 250 % 250, i % 250),
                DnsHealth::Passing,
            )
        })
        .collect();
    let answer = service(&zone(), "web.service.consul.", RecordType::A, &instances);
    assert_eq!(
        answer.answers.len(),
        instances.len().min(DNS_ANSWER_RECORDS_MAX)
    );
    let answer = service(&zone(), "web.service.consul.", RecordType::SRV, &instances);
    assert_eq!(answer.answers.len(), DNS_SRV_RECORDS_MAX);
    assert_eq!(
        answer.additionals.len(),
        DNS_SRV_RECORDS_MAX,
        "one glue per SRV record"
    );
}

#[test]
fn srv_targets_nodes_or_addr_names_with_additional_addresses() {
    let mut own_ip = instance("n2", "10.0.0.2", DnsHealth::Warning);
    own_ip.service_address = "192.168.1.9".to_owned();
    own_ip.port = 9090;
    let mut same_ip = instance("n3", "10.0.0.3", DnsHealth::Passing);
    same_ip.service_address = "10.0.0.3".to_owned();
    let mut meta = instance("n1", "10.0.0.1", DnsHealth::Passing);
    meta.node.meta.insert("rack".to_owned(), "r1".to_owned());
    let answer = service(
        &zone(),
        "web.service.consul.",
        RecordType::SRV,
        &[meta, own_ip, same_ip],
    );
    assert_eq!(answer.answers.len(), 3);
    let mut srvs: Vec<_> = answer
        .answers
        .iter()
        .map(|record| match &record.data {
            RData::SRV(srv) => (srv.target.to_string(), srv.priority, srv.weight, srv.port),
            other => panic!("not an SRV: {other:?}"),
        })
        .collect();
    srvs.sort();
    assert_eq!(
        srvs,
        [
            ("c0a80109.addr.dc1.consul.".to_owned(), 1, 1, 9090),
            ("n1.node.dc1.consul.".to_owned(), 1, 10, 8080),
            ("n3.node.dc1.consul.".to_owned(), 1, 10, 8080),
        ]
    );
    let additional = |owner: &str| -> Vec<&RData> {
        let owner = name(owner);
        answer
            .additionals
            .iter()
            .filter(|r| r.name == owner)
            .map(|r| &r.data)
            .collect()
    };
    assert_eq!(ips(&answer.additionals).len(), 3);
    assert!(
        matches!(additional("c0a80109.addr.dc1.consul.")[..], [RData::A(a)] if a.0.octets() == [192, 168, 1, 9])
    );
    let n1 = additional("n1.node.dc1.consul.");
    assert_eq!(n1.len(), 2, "address and metadata TXT: {n1:?}");
    assert!(n1.iter().any(|data| matches!(data, RData::TXT(txt) if *txt.txt_data == [b"rack=r1".to_vec().into_boxed_slice()])));
}

#[test]
fn node_answers() {
    let zone = zone();
    let mut web1 = node("web1", "10.0.0.7");
    web1.meta
        .insert("rfc1035-raw".to_owned(), "v=spf1".to_owned());
    web1.meta.insert(" a=b ".to_owned(), "x`y".to_owned());
    let qname = name("WEB1.node.consul.");
    let found = |rtype| node_answer::node_answer(&zone, &question(&qname, rtype), Some(&web1));

    let a = found(RecordType::A);
    assert_eq!(ips(&a.answers), ["10.0.0.7".parse::<IpAddr>().unwrap()]);
    assert_eq!(a.answers[0].ttl, 30);
    assert_eq!(a.additionals.len(), 2);

    let txt = found(RecordType::TXT);
    let texts: Vec<Vec<u8>> = txt
        .answers
        .iter()
        .map(|record| match &record.data {
            RData::TXT(txt) => txt.txt_data.concat(),
            other => panic!("not a TXT: {other:?}"),
        })
        .collect();
    assert_eq!(texts, [b"` a`=b` =x``y".to_vec(), b"v=spf1".to_vec()]);

    assert_eq!(found(RecordType::ANY).answers.len(), 3);
    assert_soa_only(&found(RecordType::AAAA), ResponseCode::NoError);
    assert_soa_only(&found(RecordType::SRV), ResponseCode::NoError);
    let missing = node_answer::node_answer(&zone, &question(&qname, RecordType::A), None);
    assert_soa_only(&missing, ResponseCode::NXDomain);
}

#[test]
fn long_metadata_is_split_into_txt_strings() {
    let mut meta = BTreeMap::new();
    meta.insert("k".to_owned(), "v".repeat(600));
    meta.insert("empty".to_owned(), String::new());
    let records = records::meta_txt_records(&name("n.node.dc1.consul."), 0, &meta);
    let RData::TXT(empty) = &records[0].data else {
        panic!("not a TXT")
    };
    assert_eq!(&*empty.txt_data, [b"empty=".to_vec().into_boxed_slice()]);
    let RData::TXT(long) = &records[1].data else {
        panic!("not a TXT")
    };
    let lengths: Vec<usize> = long.txt_data.iter().map(|s| s.len()).collect();
    assert_eq!(lengths, [255, 255, 92]);
}

#[test]
fn apex_answers_soa_and_ns() {
    let zone = zone();
    let servers: Vec<DnsNode> = (1..=5)
        .map(|i| node(&format!("server{i}"), &format!("10.0.1.{i}")))
        .chain([node("bad.name", "10.0.1.9")])
        .collect();
    let apex = name("consul.");
    let mut rng = StdRng::seed_from_u64(5);

    let soa =
        node_answer::apex_answer(&zone, &question(&apex, RecordType::SOA), &servers, &mut rng);
    assert!(matches!(
        soa.answers[..],
        [Record {
            data: RData::SOA(_),
            ..
        }]
    ));
    assert_eq!(soa.authorities.len(), 3);
    assert_eq!(soa.additionals.len(), 3);

    let ns = node_answer::apex_answer(&zone, &question(&apex, RecordType::NS), &servers, &mut rng);
    assert_eq!(ns.answers.len(), 3);
    for (record, glue) in ns.answers.iter().zip(&ns.additionals) {
        let RData::NS(target) = &record.data else {
            panic!("not an NS")
        };
        assert_eq!(record.name, apex);
        assert!(target.0.to_string().ends_with(".node.dc1.consul."));
        assert_eq!(glue.name, target.0);
    }

    let none = node_answer::apex_answer(&zone, &question(&apex, RecordType::NS), &[], &mut rng);
    assert_soa_only(&none, ResponseCode::NoError);
    let a = node_answer::apex_answer(&zone, &question(&apex, RecordType::A), &servers, &mut rng);
    assert_soa_only(&a, ResponseCode::NoError);
}

#[test]
fn addr_answers_only_the_matching_family() {
    let qname = name("0a000001.addr.consul.");
    let ip: IpAddr = "10.0.0.1".parse().unwrap();
    let a = node_answer::addr_answer(&zone(), &question(&qname, RecordType::A), ip);
    assert_eq!(ips(&a.answers), [ip]);
    assert_soa_only(
        &node_answer::addr_answer(&zone(), &question(&qname, RecordType::AAAA), ip),
        ResponseCode::NoError,
    );
    assert_soa_only(
        &node_answer::addr_answer(&zone(), &question(&qname, RecordType::TXT), ip),
        ResponseCode::NoError,
    );
}

#[test]
fn udp_limit_keeps_only_the_additionals_of_kept_answers() {
    let instances: Vec<DnsInstance> = (1..=6)
        .map(|i| instance(&format!("n{i}"), &format!("10.0.0.{i}"), DnsHealth::Passing))
        .collect();
    let mut answer = service(&zone(), "web.service.consul.", RecordType::SRV, &instances);
    assert_eq!(answer.additionals.len(), 6);
    assert!(answer::limit_answers(&mut answer, 3));
    assert_eq!(answer.answers.len(), 3);
    assert_eq!(answer.additionals.len(), 3);
    for (srv, extra) in answer.answers.iter().zip(&answer.additionals) {
        let RData::SRV(srv) = &srv.data else {
            panic!("not an SRV")
        };
        assert_eq!(srv.target, extra.name);
    }
    assert!(!answer::limit_answers(&mut answer, 3));
}

#[test]
fn invalid_configs_are_rejected() {
    let check = |edit: fn(&mut DnsConfig)| {
        let mut config = DnsConfig::default();
        edit(&mut config);
        config.validate()
    };
    assert!(check(|_| {}).is_ok());
    assert!(check(|c| c.domain = "cairn.internal".to_owned()).is_ok());
    assert!(matches!(
        check(|c| c.domain = ".".to_owned()),
        Err(DnsError::InvalidDomain { .. })
    ));
    assert!(matches!(
        check(|c| c.domain = "a..b".to_owned()),
        Err(DnsError::InvalidDomain { .. })
    ));
    assert!(matches!(
        check(|c| c.datacenter = String::new()),
        Err(DnsError::InvalidDatacenter { .. })
    ));
    assert!(matches!(
        check(|c| c.datacenter = "a.b".to_owned()),
        Err(DnsError::InvalidDatacenter { .. })
    ));
    assert!(matches!(
        check(|c| c.datacenter = "x".repeat(64)),
        Err(DnsError::InvalidDatacenter { .. })
    ));
}
