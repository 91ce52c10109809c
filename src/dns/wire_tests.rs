//! Unit tests of the response encoder: full name compression (measured against hickory's
//! encoder), and cuts that keep the OPT record and one glue record per kept SRV record.

use hickory_server::proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RData, RecordType};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::answer::{self, Answer};
use super::tests::{instance, name, question, zone};
use super::wire::{self, DNS_TCP_MESSAGE_BYTES_MAX, Response, ResponseHeader};
use super::{DnsHealth, DnsInstance};

/// `count` passing instances of `web`, one per node `n<i>`.
fn instances(count: usize) -> Vec<DnsInstance> {
    (0..count)
        .map(|i| {
            instance(
                &format!("n{i}"),
                &format!("10.0.{}.{}", i / 250, i % 250 + 1),
                DnsHealth::Passing,
            )
        })
        .collect()
}

fn srv_answer(qname: &Name, instances: &[DnsInstance]) -> Answer {
    let mut rng = StdRng::seed_from_u64(11);
    answer::service_answer(
        &zone(),
        &question(qname, RecordType::SRV),
        "web",
        None,
        Some(instances),
        &mut rng,
    )
}

fn header() -> ResponseHeader {
    ResponseHeader {
        id: 7,
        op_code: OpCode::Query,
        authoritative: true,
        truncated: false,
        recursion_desired: true,
        recursion_available: false,
        checking_disabled: false,
        response_code: ResponseCode::NoError,
    }
}

/// The same response through hickory's own encoder, for comparison.
fn hickory_bytes(query: &Query, answer: &Answer) -> Vec<u8> {
    let mut message = Message::response(7, OpCode::Query);
    message.add_query(query.clone());
    message.answers = answer.answers.clone();
    message.additionals = answer.additionals.clone();
    message.to_vec().expect("hickory encodes")
}

/// The size an SRV answer takes when every name that can be compressed is: the question once,
/// each SRV record's owner as a pointer, each target in full (RFC 2782 forbids compressing
/// it), and each glue owner as a pointer to its target, or, when the target lies beyond the
/// 14-bit reach of a pointer, its first label and a pointer to `node.dc1.consul.`.
fn fully_compressed_bytes(qname: &Name, answer: &Answer) -> usize {
    let mut offset = 12 + qname.to_ascii().len() + 1 + 4;
    let mut target_offsets = std::collections::HashMap::new();
    for record in &answer.answers {
        let RData::SRV(srv) = &record.data else {
            panic!("SRV answers only")
        };
        target_offsets
            .entry(srv.target.clone())
            .or_insert(offset + 18);
        offset += 2 + 10 + 6 + srv.target.to_ascii().len() + 1;
    }
    for record in &answer.additionals {
        let owner = if target_offsets[&record.name] <= 0x3FFF {
            2
        } else {
            1 + record.name.iter().next().expect("a label").len() + 2
        };
        offset += owner + 10 + 4;
    }
    offset
}

#[test]
fn every_repeated_name_is_compressed() {
    let qname = name("web.service.consul.");
    let query = Query::query(qname.clone(), RecordType::SRV);
    for count in [3, 40, 300, 1000] {
        let answer = srv_answer(&qname, &instances(count));
        let response = Response {
            header: header(),
            question: Some(&query),
            answer: &answer,
            edns: None,
        };
        let ours = wire::encode(&response).expect("encodes");
        assert_eq!(
            ours.len(),
            fully_compressed_bytes(&qname, &answer),
            "{count} instances"
        );
        let theirs = hickory_bytes(&query, &answer);
        println!(
            "{count} SRV instances: cairn {} bytes, hickory {} bytes",
            ours.len(),
            theirs.len()
        );
        if count == 300 {
            assert!(
                ours.len() * 10 < theirs.len() * 8,
                "at least 20% smaller: {} vs {}",
                ours.len(),
                theirs.len()
            );
        }
        let a_query = Query::query(qname.clone(), RecordType::A);
        let mut rng = StdRng::seed_from_u64(11);
        let a_answer = answer::service_answer(
            &zone(),
            &question(&qname, RecordType::A),
            "web",
            None,
            Some(&instances(count)),
            &mut rng,
        );
        let a_response = Response {
            header: header(),
            question: Some(&a_query),
            answer: &a_answer,
            edns: None,
        };
        let a_ours = wire::encode(&a_response).expect("encodes").len();
        assert_eq!(
            a_ours,
            12 + 24 + 16 * count,
            "every A record's owner is a pointer"
        );
        println!(
            "{count} A records: cairn {a_ours} bytes, hickory {} bytes",
            hickory_bytes(&a_query, &a_answer).len()
        );
        let decoded = Message::from_vec(&ours).expect("our message decodes");
        assert_eq!(
            decoded.answers, answer.answers,
            "{count}: the same records come back"
        );
        assert_eq!(decoded.additionals, answer.additionals);
    }
}

#[test]
fn a_cut_keeps_the_opt_record_and_the_glue_of_the_kept_srv_records() {
    let qname = name("web.service.consul.");
    let query = Query::query(qname.clone(), RecordType::SRV);
    let answer = srv_answer(&qname, &instances(300));
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    let response = Response {
        header: header(),
        question: Some(&query),
        answer: &answer,
        edns: Some(&edns),
    };
    let encoded = wire::encode_within(&response, 4096, true).expect("encodes");
    assert!(encoded.bytes.len() <= 4096);
    let decoded = Message::from_vec(&encoded.bytes).expect("decodes");
    assert!(decoded.metadata.truncation, "TC set");
    assert_eq!(
        decoded.edns.as_ref().map(Edns::max_payload),
        Some(4096),
        "OPT kept"
    );
    let kept = decoded.answers.len();
    assert!(kept > 50 && kept < 300, "{kept} kept");
    assert_eq!(encoded.answers_cut, 300 - kept);
    let targets: Vec<&Name> = decoded
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::SRV(srv) => &srv.target,
            other => panic!("not an SRV: {other:?}"),
        })
        .collect();
    let glue: Vec<&Name> = decoded.additionals.iter().map(|r| &r.name).collect();
    assert_eq!(
        glue, targets,
        "one glue record per kept SRV record, in order"
    );
    // One more answer would not have fitted.
    let mut one_more = answer.clone();
    one_more.answers.truncate(kept + 1);
    answer::retain_glue_of_answers(&mut one_more);
    let bigger = Response {
        answer: &one_more,
        ..response
    };
    assert!(wire::encode(&bigger).expect("encodes").len() > 4096);
}

#[test]
fn tcp_answers_stay_within_a_dns_message() {
    let qname = name("web.service.consul.");
    let query = Query::query(qname.clone(), RecordType::SRV);
    let answer = srv_answer(&qname, &instances(1024));
    let response = Response {
        header: header(),
        question: Some(&query),
        answer: &answer,
        edns: None,
    };
    let encoded =
        wire::encode_within(&response, DNS_TCP_MESSAGE_BYTES_MAX, false).expect("encodes");
    assert!(encoded.bytes.len() <= DNS_TCP_MESSAGE_BYTES_MAX);
    let decoded = Message::from_vec(&encoded.bytes).expect("decodes");
    assert!(!decoded.metadata.truncation, "no TC over TCP");
    assert_eq!(decoded.answers.len() + encoded.answers_cut, 1024);
    assert_eq!(decoded.additionals.len(), decoded.answers.len());
    println!(
        "1024 SRV instances over TCP: {} kept in {} bytes",
        decoded.answers.len(),
        encoded.bytes.len()
    );
}
