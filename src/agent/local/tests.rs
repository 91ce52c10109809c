//! The persisted local-state formats: golden bytes of every runner variant in V1 (written by
//! releases before V2, still read) and V2 (written today), and the V1 → V2 conversion.

use super::*;
use crate::catalog::model::{CheckDefinition, HealthStatus};

fn registration() -> CheckRegistration {
    CheckRegistration {
        check_id: "c".into(),
        name: "n".into(),
        status: HealthStatus::Passing,
        notes: String::new(),
        output: String::new(),
        service_id: "s".into(),
        definition: CheckDefinition { check_type: "t".into(), ..CheckDefinition::default() },
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    let text: String = text.split_whitespace().collect();
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
}

/// The V1 bytes below were written by the code before V2 existed (one per runner variant).
/// They must keep decoding, into V2 checks with default options.
#[test]
fn local_format_v1_still_decodes() {
    let prefix = "01 0163 016e 00 00 00 0173 0174 0000000000";
    let cases: Vec<(&str, Option<v1::CheckRunner>, Option<CheckRunner>)> = vec![
        ("00", None, None),
        ("01 00 ac02", Some(v1::CheckRunner::Ttl { ttl_ms: 300 }), Some(CheckRunner::Ttl { ttl_ms: 300 })),
        (
            "01 01 0175 014d 01 0168 0176 01 0162 01 02 03",
            Some(v1::CheckRunner::Http {
                url: "u".into(),
                method: "M".into(),
                headers: vec![("h".into(), "v".into())],
                body: Some("b".into()),
                tls_skip_verify: true,
                interval_ms: 2,
                timeout_ms: 3,
            }),
            Some(CheckRunner::Http {
                url: "u".into(),
                method: "M".into(),
                headers: vec![("h".into(), "v".into())],
                body: Some("b".into()),
                tls_skip_verify: true,
                tls_server_name: String::new(),
                interval_ms: 2,
                timeout_ms: 3,
            }),
        ),
        (
            "01 02 0161 02 03",
            Some(v1::CheckRunner::Tcp { address: "a".into(), interval_ms: 2, timeout_ms: 3 }),
            Some(CheckRunner::Tcp { address: "a".into(), interval_ms: 2, timeout_ms: 3 }),
        ),
        (
            "01 03 01 0178 02 03",
            Some(v1::CheckRunner::Script { args: vec!["x".into()], interval_ms: 2, timeout_ms: 3 }),
            Some(CheckRunner::Script { args: vec!["x".into()], interval_ms: 2, timeout_ms: 3 }),
        ),
    ];
    for (tail, old_runner, new_runner) in cases {
        let bytes = unhex(&format!("{prefix}{tail}"));
        let old = v1::LocalCheck { registration: registration(), runner: old_runner };
        assert_eq!(hex(&v1::encode(&old)), hex(&bytes), "V1 bytes of {old:?}");
        let decoded: LocalCheck = decode(&bytes).expect("V1 decodes");
        assert_eq!(decoded, LocalCheck { registration: registration(), runner: new_runner, options: CheckOptions::default() });
    }
}

/// What is written today. Each runner variant's V2 bytes are pinned: variants are
/// append-only, and a change to a field needs a V3 with a decoder for V2.
#[test]
fn local_format_v2_is_pinned() {
    let options = CheckOptions {
        success_before_passing: 1,
        failures_before_warning: 2,
        failures_before_critical: 3,
        deregister_critical_service_after_ms: 4,
        output_max_size: 5,
    };
    let cases: Vec<(Option<CheckRunner>, &str)> = vec![
        (None, "02 0163 016e 00 00 00 0173 0174 0000000000 00 0102030405"),
        (Some(CheckRunner::Ttl { ttl_ms: 300 }), "02 0163 016e 00 00 00 0173 0174 0000000000 01 00 ac02 0102030405"),
        (
            Some(CheckRunner::Http {
                url: "u".into(),
                method: "M".into(),
                headers: vec![("h".into(), "v".into())],
                body: Some("b".into()),
                tls_skip_verify: true,
                tls_server_name: "sn".into(),
                interval_ms: 2,
                timeout_ms: 3,
            }),
            "02 0163 016e 00 00 00 0173 0174 0000000000 01 01 0175 014d 01 0168 0176 01 0162 01 02736e 02 03 0102030405",
        ),
        (Some(CheckRunner::Tcp { address: "a".into(), interval_ms: 2, timeout_ms: 3 }), "02 0163 016e 00 00 00 0173 0174 0000000000 01 02 0161 02 03 0102030405"),
        (Some(CheckRunner::Script { args: vec!["x".into()], interval_ms: 2, timeout_ms: 3 }), "02 0163 016e 00 00 00 0173 0174 0000000000 01 03 01 0178 02 03 0102030405"),
        (
            Some(CheckRunner::Grpc {
                target: "g".into(),
                use_tls: true,
                tls_skip_verify: false,
                tls_server_name: "sn".into(),
                interval_ms: 2,
                timeout_ms: 3,
            }),
            "02 0163 016e 00 00 00 0173 0174 0000000000 01 04 0167 01 00 02736e 02 03 0102030405",
        ),
        (
            Some(CheckRunner::H2Ping {
                address: "h".into(),
                use_tls: false,
                tls_skip_verify: true,
                tls_server_name: String::new(),
                interval_ms: 2,
                timeout_ms: 3,
            }),
            "02 0163 016e 00 00 00 0173 0174 0000000000 01 05 0168 00 01 00 02 03 0102030405",
        ),
        (Some(CheckRunner::Udp { address: "u".into(), interval_ms: 2, timeout_ms: 3 }), "02 0163 016e 00 00 00 0173 0174 0000000000 01 06 0175 02 03 0102030405"),
        (Some(CheckRunner::Alias { service_id: "w".into(), node: "n".into() }), "02 0163 016e 00 00 00 0173 0174 0000000000 01 07 0177 016e 0102030405"),
    ];
    let mut failures = Vec::new();
    for (runner, expected) in cases {
        let check = LocalCheck { registration: registration(), runner, options: options.clone() };
        let bytes = encode(&check);
        let got = hex(&bytes);
        let expected: String = expected.split_whitespace().collect();
        if got != expected {
            failures.push(format!("{:?}: {got}", check.runner));
        }
        assert_eq!(decode::<LocalCheck>(&bytes).expect("V2 decodes"), check);
    }
    assert!(failures.is_empty(), "encoding changed:\n{}", failures.join("\n"));
    let service = LocalService {
        registration: ServiceRegistration {
            id: "s".into(),
            name: "w".into(),
            tags: vec!["t".into()],
            address: String::new(),
            tagged_addresses: BTreeMap::new(),
            meta: BTreeMap::new(),
            port: 80,
            kind: String::new(),
            enable_tag_override: false,
            weights: crate::catalog::model::Weights::default(),
            opaque_json: BTreeMap::new(),
        },
    };
    let bytes = encode(&service);
    assert_eq!(bytes[0], LOCAL_FORMAT_V2);
    assert_eq!(decode::<LocalService>(&bytes).expect("decodes"), service);
    let mut v1_bytes = bytes.clone();
    v1_bytes[0] = LOCAL_FORMAT_V1;
    assert_eq!(decode::<LocalService>(&v1_bytes).expect("a V1 service decodes"), service, "a service's shape is the same in V1");
    assert!(decode::<LocalCheck>(&[3, 0]).is_err(), "unknown versions are refused");
    assert!(decode::<LocalCheck>(&[]).is_err());
}
