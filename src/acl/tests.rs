//! Tests of the rule language and the authorizer: real rules text through the real parser.

use super::*;

fn rules(text: &str) -> Rules {
    match parse_rules(text) {
        Ok(rules) => rules,
        Err(e) => panic!("rules should parse: {e}\n{text}"),
    }
}

fn authz(default: DefaultPolicy, texts: &[&str]) -> Authorizer {
    let policies: Vec<Rules> = texts.iter().map(|t| rules(t)).collect();
    Authorizer::from_rules(default, &policies)
}

const MIXED_HCL: &str = r#"
# a policy touching every kind
acl = "read"
keyring = "write"
operator = "read"
key_prefix "app/" { policy = "write" }
key "app/secret" { policy = "deny" }
key_prefix "" { policy = "list" }
service "web" {
  policy = "write"
  intentions = "write"
}
service_prefix "" { policy = "read" }
node_prefix "db-" { policy = "write" }
session "n1" { policy = "read" }
agent_prefix "" { policy = "read" }
event "deploy" { policy = "write" }
query_prefix "q" { policy = "read" }
"#;

const MIXED_JSON: &str = r#"{
  "acl": "read", "keyring": "write", "operator": "read",
  "key_prefix": {"app/": {"policy": "write"}, "": {"policy": "list"}},
  "key": {"app/secret": {"policy": "deny"}},
  "service": {"web": {"policy": "write", "intentions": "write"}},
  "service_prefix": [{"": {"policy": "read"}}],
  "node_prefix": {"db-": {"policy": "write"}},
  "session": {"n1": {"policy": "read"}},
  "agent_prefix": {"": {"policy": "read"}},
  "event": {"deploy": {"policy": "write"}},
  "query_prefix": {"q": {"policy": "read"}}
}"#;

#[test]
fn hcl_and_json_of_one_policy_parse_the_same_and_answer_the_same() {
    let hcl = rules(MIXED_HCL);
    let json = rules(MIXED_JSON);
    assert_eq!(hcl, json);
    assert_eq!(hcl.named.len(), 10);
    assert_eq!(hcl.acl, Some(AccessLevel::Read));
    let a = Authorizer::from_rules(DefaultPolicy::Deny, &[hcl]);
    let b = Authorizer::from_rules(DefaultPolicy::Deny, &[json]);
    for key in ["app/x", "app/secret", "other", "", "app"] {
        assert_eq!(a.key_read(key), b.key_read(key), "{key}");
        assert_eq!(a.key_write(key), b.key_write(key), "{key}");
        assert_eq!(a.key_list(key), b.key_list(key), "{key}");
    }
    assert!(a.key_write("app/x") && !a.key_read("app/secret") && a.key_list("zzz") && !a.key_write("zzz"));
    assert!(a.service_write("web") && !a.service_write("api") && a.service_read("api"));
    assert!(a.intention_write("web") && !a.intention_write("api") && a.intention_read("api"));
    assert!(a.node_write("db-1") && !a.node_read("web-1"));
    assert!(a.session_read("n1") && !a.session_write("n1") && !a.session_read("n2"));
    assert!(a.agent_read("any") && !a.agent_write("any"));
    assert!(a.event_write("deploy") && !a.event_read("deploy-2"));
    assert!(a.query_read("q1") && !a.query_write("q1") && !a.query_read("x"));
    assert!(a.acl_read() && !a.acl_write() && !a.is_management());
    assert!(a.keyring_write() && a.operator_read() && !a.operator_write());
    // mesh falls back to operator
    assert!(a.mesh_read() && !a.mesh_write());
}

#[test]
fn key_prefix_write_with_default_deny() {
    let a = authz(DefaultPolicy::Deny, &[r#"key_prefix "app/" { policy = "write" }"#]);
    assert!(a.key_read("app/x"));
    assert!(a.key_write("app/x"));
    assert!(a.key_list("app/"));
    assert!(!a.key_read("app2"));
    assert!(!a.key_write("app2/x"));
    assert!(!a.key_read("ap"));
    assert!(a.key_write_prefix("app/"));
    assert!(a.key_write_prefix("app/sub/"));
    assert!(!a.key_write_prefix("ap"), "a prefix wider than the rule falls to the default");
    assert!(!a.key_write_prefix(""));
}

#[test]
fn key_write_prefix_is_refused_when_a_rule_under_it_grants_less() {
    let with_read = authz(DefaultPolicy::Deny, &[r#"key_prefix "app/" { policy = "write" }
key "app/secret" { policy = "read" }"#]);
    assert!(!with_read.key_write_prefix("app/"));
    assert!(with_read.key_write_prefix("app/other/"));
    assert!(with_read.key_write("app/x"));
    assert!(!with_read.key_write("app/secret"));
    let with_list = authz(DefaultPolicy::Deny, &[r#"key_prefix "app/" { policy = "write" }
key_prefix "app/ro/" { policy = "list" }"#]);
    assert!(!with_list.key_write_prefix("app/"));
    assert!(!with_list.key_write_prefix("app/ro/x"), "the covering prefix rule is list");
    // default allow, no covering rule: the default decides unless a rule under it says less
    let allow = authz(DefaultPolicy::Allow, &[r#"key "a/b" { policy = "deny" }"#]);
    assert!(allow.key_write_prefix("x/"));
    assert!(!allow.key_write_prefix("a/"));
    assert!(!allow.key_write_prefix(""));
    let allow_write = authz(DefaultPolicy::Allow, &[r#"key "a/b" { policy = "write" }"#]);
    assert!(allow_write.key_write_prefix("a/"));
}

#[test]
fn longest_prefix_wins_and_exact_beats_prefix() {
    let a = authz(DefaultPolicy::Allow, &[r#"
key_prefix "" { policy = "deny" }
key_prefix "foo/" { policy = "read" }
key_prefix "foo/bar/" { policy = "write" }
key "foo/bar/baz" { policy = "deny" }
key "foo/ex" { policy = "write" }
"#]);
    assert!(!a.key_read("zzz"), "the empty prefix covers everything");
    assert!(a.key_read("foo/x") && !a.key_write("foo/x"));
    assert!(a.key_write("foo/bar/x"));
    assert!(!a.key_read("foo/bar/baz"), "exact deny beats a longer-matching prefix write");
    assert!(a.key_write("foo/bar/bazz"), "an exact rule covers only its own name");
    assert!(a.key_write("foo/ex") && !a.key_write("foo/ex2"));
    // service_prefix works the same way
    let s = authz(DefaultPolicy::Deny, &[r#"service_prefix "we" { policy = "read" }
service_prefix "web" { policy = "write" }
service "webby" { policy = "deny" }"#]);
    assert!(s.service_write("web-1") && s.service_read("wet") && !s.service_write("wet"));
    assert!(!s.service_read("webby") && !s.service_read("x"));
}

#[test]
fn deny_in_one_policy_beats_write_in_another_and_levels_merge_upwards() {
    let a = authz(DefaultPolicy::Allow, &[
        r#"key_prefix "app/" { policy = "write" }
service "web" { policy = "write" }
operator = "write""#,
        r#"key_prefix "app/" { policy = "deny" }
service "web" { policy = "read" }
operator = "deny"
node "n" { policy = "read" }"#,
        r#"node "n" { policy = "write" }"#,
    ]);
    assert!(!a.key_read("app/x"), "deny wins whatever the order");
    assert!(a.service_write("web"), "write beats read");
    assert!(!a.operator_read());
    assert!(a.node_write("n"));
    // order does not matter
    let b = authz(DefaultPolicy::Allow, &[r#"key_prefix "app/" { policy = "deny" }"#, r#"key_prefix "app/" { policy = "write" }"#]);
    assert!(!b.key_read("app/x"));
    // list beats read, write beats list
    let c = authz(DefaultPolicy::Deny, &[r#"key "k" { policy = "read" }"#, r#"key "k" { policy = "list" }"#]);
    assert!(c.key_list("k") && !c.key_write("k"));
    // two blocks for one name in ONE policy merge the same way
    let d = authz(DefaultPolicy::Allow, &[r#"key "k" { policy = "write" }
key "k" { policy = "deny" }"#]);
    assert!(!d.key_read("k"));
}

#[test]
fn enforce_levels_as_consul() {
    use AccessLevel::*;
    assert!(Write.grants(Read) && Write.grants(List) && Write.grants(Write));
    assert!(List.grants(Read) && List.grants(List) && !List.grants(Write));
    assert!(Read.grants(Read) && !Read.grants(List) && !Read.grants(Write));
    assert!(!Deny.grants(Read) && !Deny.grants(Write));
    assert_eq!(Read.merge(Deny), Deny);
    assert_eq!(Write.merge(Read), Write);
    assert_eq!(Read.merge(List), List);
    // a read rule does not grant list: recursive reads need list or write
    let a = authz(DefaultPolicy::Allow, &[r#"key_prefix "a/" { policy = "read" }"#]);
    assert!(a.key_read("a/x") && !a.key_list("a/"));
}

#[test]
fn defaults_static_authorizers_and_management() {
    let allow = Authorizer::allow_all();
    assert!(allow.key_write("x") && allow.service_write("s") && allow.operator_write() && allow.node_read_all());
    assert!(!allow.acl_read() && !allow.acl_write() && !allow.is_management(), "AllowAll cannot manage ACLs");
    let deny = Authorizer::deny_all();
    assert!(!deny.key_read("x") && !deny.service_read("s") && !deny.operator_read() && !deny.node_read_all());
    assert!(!deny.acl_read() && !deny.key_write_prefix(""));
    let manage = Authorizer::management();
    assert!(manage.acl_write() && manage.acl_read() && manage.is_management() && manage.key_write_prefix(""));
    assert!(manage.keyring_write() && manage.mesh_write() && manage.intention_write("*"));
    // default allow with rules: unmentioned things allowed, acl still not
    let a = authz(DefaultPolicy::Allow, &[r#"key "k" { policy = "read" }"#]);
    assert!(a.service_write("s") && a.key_write("other") && !a.key_write("k"));
    assert!(!a.acl_read() && !a.acl_write());
    // an explicit acl rule answers even under default allow
    let b = authz(DefaultPolicy::Allow, &[r#"acl = "write""#]);
    assert!(b.acl_write() && b.is_management());
    let c = authz(DefaultPolicy::Deny, &[r#"acl = "read""#]);
    assert!(c.acl_read() && !c.acl_write());
}

#[test]
fn global_management_policy_grants_everything() {
    let a = authz(DefaultPolicy::Deny, &[GLOBAL_MANAGEMENT_RULES]);
    assert!(a.acl_write() && a.is_management() && a.key_write_prefix("") && a.node_read_all() && a.service_read_all());
    assert!(a.intention_write("*") && a.intention_write("web") && a.mesh_write() && a.peering_write());
    assert!(a.session_write("n") && a.agent_write("n") && a.event_write("e") && a.query_write("q") && a.keyring_write());
}

#[test]
fn node_read_all_and_service_read_all_follow_consul() {
    // default deny: needs a catch-all read
    assert!(authz(DefaultPolicy::Deny, &[r#"node_prefix "" { policy = "read" }"#]).node_read_all());
    assert!(!authz(DefaultPolicy::Deny, &[r#"node_prefix "web" { policy = "read" }"#]).node_read_all());
    // any rule denying read makes it false, even under a catch-all read or default allow
    assert!(!authz(DefaultPolicy::Deny, &[r#"node_prefix "" { policy = "read" }
node "secret" { policy = "deny" }"#]).node_read_all());
    assert!(!authz(DefaultPolicy::Allow, &[r#"node "secret" { policy = "deny" }"#]).node_read_all());
    assert!(authz(DefaultPolicy::Allow, &[r#"node "n" { policy = "write" }"#]).node_read_all());
    assert!(!authz(DefaultPolicy::Allow, &[r#"node_prefix "" { policy = "deny" }"#]).node_read_all());
    assert!(authz(DefaultPolicy::Deny, &[r#"service_prefix "" { policy = "read" }"#]).service_read_all());
    assert!(!authz(DefaultPolicy::Deny, &[r#"service_prefix "" { policy = "read" }
service "x" { policy = "deny" }"#]).service_read_all());
    let any = authz(DefaultPolicy::Deny, &[r#"service "x" { policy = "write" }"#]);
    assert!(any.service_write_any() && !authz(DefaultPolicy::Deny, &[r#"service "x" { policy = "read" }"#]).service_write_any());
}

#[test]
fn intentions_default_from_the_service_policy_unless_set() {
    let a = authz(DefaultPolicy::Deny, &[r#"
service "r" { policy = "read" }
service "w" { policy = "write" }
service "d" { policy = "deny" }
service "iw" {
  policy = "read"
  intentions = "write"
}
service "id" {
  policy = "write"
  intentions = "deny"
}
"#]);
    assert!(a.intention_read("r") && !a.intention_write("r"));
    assert!(a.intention_read("w") && !a.intention_write("w"), "write on a service implies only intentions read");
    assert!(!a.intention_read("d"));
    assert!(a.intention_write("iw"));
    assert!(!a.intention_read("id"));
    assert!(!a.intention_read("none"));
    assert!(a.intention_read("*"), "some rule grants intentions read");
    assert!(!a.intention_write("*"));
    // intentions merge like policies: deny in another policy wins
    let b = authz(DefaultPolicy::Deny, &[r#"service "s" {
  policy = "write"
  intentions = "write"
}"#, r#"service "s" {
  policy = "read"
  intentions = "deny"
}"#]);
    assert!(b.service_write("s") && !b.intention_read("s"));
}

#[test]
fn empty_text_and_comments_are_valid_policies_with_no_rules() {
    for text in ["", "   \n", "# only a comment\n", "// c\n/* block { [ ( */", "{}"] {
        let parsed = rules(text);
        assert!(parsed.is_empty(), "{text:?}");
    }
    let a = Authorizer::from_rules(DefaultPolicy::Deny, &[rules("")]);
    assert!(!a.key_read("x"));
    // brackets inside strings and comments neither open nor close
    let r = rules("key \"a{[(\" { policy = \"read\" } # ]]]\nkey \"b)]}\" { policy = \"write\" }");
    assert_eq!(r.named.len(), 2);
    // empty top-level strings are unset, as in Consul
    assert!(rules(r#"operator = """#).is_empty());
}

fn parse_error(text: &str) -> RulesError {
    match parse_rules(text) {
        Ok(r) => panic!("should be refused: {text:?} parsed as {r:?}"),
        Err(e) => e,
    }
}

#[test]
fn bad_policy_values_are_refused_with_consuls_wording() {
    let e = parse_error(r#"key "k" { policy = "rw" }"#);
    assert_eq!(e.to_string(), r#"Invalid key policy: "rw""#);
    let e = parse_error(r#"service "s" { policy = "list" }"#);
    assert_eq!(e.to_string(), r#"Invalid service policy: "list""#);
    assert_eq!(parse_error(r#"key_prefix "" { policy = "x" }"#).to_string(), r#"Invalid key_prefix policy: "x""#);
    assert_eq!(parse_error(r#"acl = "list""#).to_string(), r#"Invalid acl policy: "list""#);
    assert_eq!(parse_error(r#"operator = "admin""#).to_string(), r#"Invalid operator policy: "admin""#);
    let e = parse_error(r#"service "s" {
  policy = "read"
  intentions = "list"
}"#);
    assert_eq!(e.to_string(), r#"Invalid service intentions policy: "list""#);
    assert!(matches!(parse_error(r#"node "n" { }"#), RulesError::InvalidPolicy { .. }), "policy is required");
    assert!(matches!(parse_error(r#"{"key": {"k": {"policy": "rw"}}}"#), RulesError::InvalidPolicy { .. }));
    // key list is fine
    assert_eq!(rules(r#"key "k" { policy = "list" }"#).named[0].policy, AccessLevel::List);
}

#[test]
fn unknown_blocks_and_keys_are_refused() {
    let cases = [
        r#"bogus "x" { policy = "read" }"#,
        r#"bogus = "read""#,
        r#"key "k" { policy = "read" other = "x" }"#,
        r#"key "k" {
  policy = "read"
  intentions = "read"
}"#,
        r#"namespace "ns" { policy = "read" }"#,
        r#"partition "p" { policy = "read" }"#,
        r#"namespace_prefix "" { policy = "read" }"#,
        r#"key { policy = "read" }"#,
        r#"key "a" "b" { policy = "read" }"#,
        r#"key "k" { policy = read }"#,
        r#"key "k" { policy = "${var}" }"#,
        r#"acl = 1"#,
        r#"key "k" { policy = ["read"] }"#,
        r#"key "k" { policy = "read" "#,
        "key \"k\" { policy = \"read\" }\n}}}",
        r#"{"key": "read"}"#,
        r#"{"nope": {}}"#,
        r#"{"key": {"k": {"policy": "read"}}"#,
        "[1]",
        "\u{0}\u{1}garbage",
    ];
    for text in cases {
        let e = parse_error(text);
        assert!(!e.to_string().is_empty());
    }
    let e = parse_error("acl = \"read\"\nacl = \"write\"");
    assert!(e.to_string().contains("redefined attribute"), "{e}");
    assert!(parse_error("key \"k\" {\n  policy = \"read\"\n  policy = \"write\"\n}").to_string().contains("redefined"));
    let e = parse_error(r#"bogus "x" { policy = "read" }"#);
    assert!(e.to_string().starts_with("Failed to parse ACL rules: "), "{e}");
    assert!(parse_error(r#"namespace "ns" { policy = "read" }"#).to_string().contains("Enterprise"));
}

#[test]
fn oversized_and_deeply_nested_text_is_refused_without_a_panic() {
    let mut big = String::new();
    while big.len() <= 200 * 1024 {
        big.push_str("key \"a\" { policy = \"read\" }\n");
    }
    assert!(matches!(parse_error(&big), RulesError::TooLong { .. }));
    // exactly at the limit it parses (it is long, but not too long)
    let mut at_limit = String::new();
    while at_limit.len() + 30 < RULES_BYTES_MAX {
        at_limit.push_str("key \"a\" { policy = \"read\" }\n");
    }
    assert!(parse_rules(&at_limit).is_ok());
    for (open, close) in [("[", "]"), ("{", "}"), ("(", ")")] {
        let deep = format!("acl = {}\"read\"{}", open.repeat(50_000), close.repeat(50_000));
        assert!(matches!(parse_error(&deep), RulesError::Syntax(_)));
        let unclosed = format!("acl = {}", open.repeat(100_000));
        assert!(matches!(parse_error(&unclosed), RulesError::Syntax(_)));
    }
    // nesting after strings, comments and escapes full of closers
    let hide = format!("acl = \"$${{ ]]] \\\" ]]] \" # ]]]\n x = {}", "[".repeat(50_000));
    assert!(matches!(parse_error(&hide), RulesError::Syntax(_)));
    let interp = format!("acl = \"{}\"", "${\"".repeat(20_000));
    assert!(matches!(parse_error(&interp), RulesError::Syntax(_)));
    let heredoc = format!("acl = <<EOF\n]]]]\nEOF\nx = {}", "[".repeat(50_000));
    assert!(matches!(parse_error(&heredoc), RulesError::Syntax(_)));
    // JSON: serde_json's own depth limit answers
    let json = format!("{{\"acl\": {}", "[".repeat(100_000));
    assert!(matches!(parse_error(&json), RulesError::Syntax(_)));
    // long operator chains (a left-deep tree) are refused too
    let chain = format!("acl = {}1", "1 + ".repeat(30_000));
    assert!(matches!(parse_error(&chain), RulesError::Syntax(_)));
    // moderate nesting parses (and is refused later as a bad value)
    let shallow = format!("acl = {}\"read\"{}", "[".repeat(30), "]".repeat(30));
    assert!(matches!(parse_error(&shallow), RulesError::Syntax(m) if m.contains("must be a string")));
}

#[test]
fn hcl_attribute_object_form_is_accepted_like_blocks() {
    let a = rules(r#"key_prefix = { "app/" = { policy = "write" } }"#);
    let b = rules(r#"key_prefix "app/" { policy = "write" }"#);
    assert_eq!(a, b);
}

#[test]
fn authorizer_is_shareable_across_threads() {
    fn shareable<T: Clone + std::fmt::Debug + Send + Sync + 'static>(value: T) -> T {
        value
    }
    let a = std::sync::Arc::new(shareable(authz(DefaultPolicy::Deny, &[r#"key "k" { policy = "read" }"#])));
    let b = a.clone();
    let seen = std::thread::spawn(move || b.key_read("k")).join().expect("thread");
    assert!(seen && !a.key_write("k"));
}
