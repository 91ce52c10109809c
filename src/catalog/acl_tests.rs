//! Tests of the replicated ACL tables: the rules `apply_acl` keeps, persistence round trips,
//! and the pinned bytes of every `AclOp` and of a token row.

use crate::catalog::acl::{
    ANONYMOUS_TOKEN_ID, AclAuthMethod, AclBindingRule, AclLink, AclOp, AclPolicy, AclRole, AclToken,
    GLOBAL_MANAGEMENT_POLICY_ID,
};
use crate::catalog::codec::{decode_command, encode_command};
use crate::catalog::{Catalog, ChangeSet, Command, Outcome, RowKey, apply};

fn token(accessor: &str, secret: &str) -> AclToken {
    AclToken {
        accessor_id: accessor.into(),
        secret_id: secret.into(),
        description: String::new(),
        policies: Vec::new(),
        roles: Vec::new(),
        service_identities: Vec::new(),
        node_identities: Vec::new(),
        templated_policies: Vec::new(),
        local: false,
        auth_method: String::new(),
        expiration_time_ms: None,
        create_time_ms: 0,
        create_index: 0,
        modify_index: 0,
    }
}

fn policy(id: &str, name: &str) -> AclPolicy {
    AclPolicy { id: id.into(), name: name.into(), description: String::new(), rules: "r".into(), datacenters: Vec::new(), create_index: 0, modify_index: 0 }
}

fn role(id: &str, name: &str) -> AclRole {
    AclRole {
        id: id.into(),
        name: name.into(),
        description: String::new(),
        policies: Vec::new(),
        service_identities: Vec::new(),
        node_identities: Vec::new(),
        templated_policies: Vec::new(),
        create_index: 0,
        modify_index: 0,
    }
}

fn method() -> AclAuthMethod {
    AclAuthMethod {
        name: "m".into(),
        method_type: "jwt".into(),
        display_name: String::new(),
        description: String::new(),
        max_token_ttl_ms: 0,
        token_locality: String::new(),
        config_json: "{}".into(),
        create_index: 0,
        modify_index: 0,
    }
}

fn rule() -> AclBindingRule {
    AclBindingRule {
        id: "b".into(),
        description: String::new(),
        auth_method: "m".into(),
        selector: String::new(),
        bind_type: "service".into(),
        bind_name: "x".into(),
        create_index: 0,
        modify_index: 0,
    }
}

fn run(catalog: &mut Catalog, index: u64, op: AclOp) -> Outcome {
    apply(catalog, index, &Command::Acl(op), &mut ChangeSet::new())
}

#[test]
fn every_acl_op_encoding_is_pinned() {
    // Command::Acl is tag 22 (0x16); the AclOp tag follows; empty strings and lists are 00.
    let token_bytes = "0161 0173 00 00 00 00 00 00 00 00 00 00 00 00";
    let cases: Vec<(AclOp, String)> = vec![
        (AclOp::Bootstrap { token: token("a", "s") }, format!("0116 00 {token_bytes}")),
        (AclOp::TokenSet { token: token("a", "s"), create: true }, format!("0116 01 {token_bytes} 01")),
        (AclOp::TokenDelete { accessor_id: "a".into() }, "0116 02 0161".into()),
        (AclOp::PolicySet { policy: policy("i", "n") }, "0116 03 0169 016e 00 0172 00 00 00".into()),
        (AclOp::PolicyDelete { id: "p".into() }, "0116 04 0170".into()),
        (AclOp::RoleSet { role: role("i", "n") }, "0116 05 0169 016e 00 00 00 00 00 00 00".into()),
        (AclOp::RoleDelete { id: "r".into() }, "0116 06 0172".into()),
        (AclOp::AuthMethodSet { method: method() }, "0116 07 016d 036a7774 00 00 00 00 027b7d 00 00".into()),
        (AclOp::AuthMethodDelete { name: "m".into() }, "0116 08 016d".into()),
        (AclOp::BindingRuleSet { rule: rule() }, "0116 09 0162 00 016d 00 0773657276696365 0178 00 00".into()),
        (AclOp::BindingRuleDelete { id: "b".into() }, "0116 0a 0162".into()),
    ];
    for (op, hex) in cases {
        let command = Command::Acl(op);
        let hex: String = hex.split_whitespace().collect();
        let bytes = encode_command(&command);
        let got: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, hex, "encoding of {command:?} changed");
        assert_eq!(decode_command(&bytes).expect("decodes"), command);
    }
}

#[test]
fn a_token_row_is_pinned_and_round_trips_with_its_secret_index() {
    let mut catalog = Catalog::new();
    assert_eq!(run(&mut catalog, 7, AclOp::TokenSet { token: token("a", "s"), create: true }), Outcome::Done);
    let (key, value) = catalog.encode_row(&RowKey::AclToken("a".into())).expect("row exists");
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert_eq!(hex(&key), "410000000161");
    // Row format 1, then the token with create/modify index 7.
    assert_eq!(hex(&value), "0101610173000000000000000000000707");
    let mut reloaded = Catalog::new();
    for row in catalog.all_rows() {
        if let Some((key, value)) = catalog.encode_row(&row) {
            reloaded.load_row(&key, &value).expect("loads");
        }
    }
    assert_eq!(reloaded, catalog);
    assert_eq!(reloaded.acl().token_by_secret("s").map(|t| t.accessor_id.as_str()), Some("a"));
    assert_eq!(reloaded.last_index(), 7);
}

#[test]
fn ids_secrets_and_names_stay_unique_and_links_must_exist() {
    let mut catalog = Catalog::new();
    assert_eq!(run(&mut catalog, 1, AclOp::TokenSet { token: token("a", "s"), create: true }), Outcome::Done);
    assert!(matches!(run(&mut catalog, 2, AclOp::TokenSet { token: token("a", "t"), create: true }), Outcome::Rejected(_)));
    assert!(matches!(run(&mut catalog, 3, AclOp::TokenSet { token: token("b", "s"), create: true }), Outcome::Rejected(_)));
    assert!(matches!(run(&mut catalog, 4, AclOp::TokenSet { token: token("a", "other"), create: false }), Outcome::Rejected(_)), "a secret never changes");
    assert!(matches!(run(&mut catalog, 5, AclOp::TokenSet { token: token("zz", "q"), create: false }), Outcome::Rejected(_)), "update of an unknown token");

    assert_eq!(run(&mut catalog, 6, AclOp::PolicySet { policy: policy("p1", "readers") }), Outcome::Done);
    assert!(matches!(run(&mut catalog, 7, AclOp::PolicySet { policy: policy("p2", "readers") }), Outcome::Rejected(_)));
    let mut linked = token("c", "u");
    linked.policies = vec![AclLink { id: "missing".into(), name: String::new() }];
    assert!(matches!(run(&mut catalog, 8, AclOp::TokenSet { token: linked.clone(), create: true }), Outcome::Rejected(_)));
    linked.policies = vec![AclLink { id: "p1".into(), name: "stale".into() }];
    assert_eq!(run(&mut catalog, 9, AclOp::TokenSet { token: linked, create: true }), Outcome::Done);
    assert_eq!(catalog.acl().token("c").unwrap().policies[0].name, "readers", "links take the current name");

    assert_eq!(run(&mut catalog, 10, AclOp::RoleSet { role: role("r1", "ops") }), Outcome::Done);
    assert!(matches!(run(&mut catalog, 11, AclOp::RoleSet { role: role("r2", "ops") }), Outcome::Rejected(_)));
    assert!(matches!(run(&mut catalog, 12, AclOp::BindingRuleSet { rule: rule() }), Outcome::Rejected(_)), "no such auth method");
    assert_eq!(run(&mut catalog, 13, AclOp::AuthMethodSet { method: method() }), Outcome::Done);
    assert_eq!(run(&mut catalog, 14, AclOp::BindingRuleSet { rule: rule() }), Outcome::Done);
    assert_eq!(run(&mut catalog, 15, AclOp::AuthMethodDelete { name: "m".into() }), Outcome::Done);
    assert!(catalog.acl().binding_rule("b").is_none(), "a method's rules go with it");
    assert_eq!(catalog.acl().indexes().max(), 15);
}

#[test]
fn bootstrap_happens_once_and_builtins_are_protected() {
    let mut catalog = Catalog::new();
    assert_eq!(run(&mut catalog, 1, AclOp::PolicySet { policy: policy(GLOBAL_MANAGEMENT_POLICY_ID, "global-management") }), Outcome::Done);
    assert_eq!(run(&mut catalog, 2, AclOp::Bootstrap { token: token("a", "s") }), Outcome::Done);
    assert!(catalog.acl().bootstrapped());
    match run(&mut catalog, 3, AclOp::Bootstrap { token: token("b", "t") }) {
        Outcome::Rejected(reason) => assert!(reason.contains("reset index: 2"), "{reason}"),
        other => panic!("second bootstrap: {other:?}"),
    }
    let mut changed = policy(GLOBAL_MANAGEMENT_POLICY_ID, "global-management");
    changed.rules = "key_prefix \"\" { policy = \"deny\" }".into();
    assert!(matches!(run(&mut catalog, 4, AclOp::PolicySet { policy: changed }), Outcome::Rejected(_)));
    assert!(matches!(run(&mut catalog, 5, AclOp::PolicyDelete { id: GLOBAL_MANAGEMENT_POLICY_ID.into() }), Outcome::Rejected(_)));
    assert!(matches!(run(&mut catalog, 6, AclOp::TokenDelete { accessor_id: ANONYMOUS_TOKEN_ID.into() }), Outcome::Rejected(_)));
    assert_eq!(run(&mut catalog, 7, AclOp::TokenDelete { accessor_id: "a".into() }), Outcome::Done);
    assert!(catalog.acl().token_by_secret("s").is_none(), "a deleted token's secret no longer resolves");
}
