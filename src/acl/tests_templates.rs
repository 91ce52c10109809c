//! Tests of the builtin templated policies and the identity policies: each renders, parses,
//! and grants what Consul's does.

use super::*;

fn authorize(text: &str) -> Authorizer {
    let rules = parse_rules(text).unwrap_or_else(|e| panic!("rendered rules should parse: {e}\n{text}"));
    Authorizer::from_rules(DefaultPolicy::Deny, &[rules])
}

#[test]
fn every_templated_policy_renders_and_its_rules_parse() {
    assert_eq!(templated_policies().len(), 6);
    for template in templated_policies() {
        assert!(template.name.starts_with("builtin/"), "{}", template.name);
        assert_eq!(template.id.len(), 36);
        assert!(!template.description.is_empty());
        let needs_name = template.template.contains("{{.Name}}");
        assert_eq!(needs_name, !template.schema.is_empty(), "{}: schema iff it takes a name", template.name);
        if needs_name {
            let schema: serde_json::Value = serde_json::from_str(template.schema).expect("schema is JSON");
            assert_eq!(schema["required"][0], "name");
        }
        let rendered = render_template(template.name, Some("my-svc")).expect("renders");
        assert!(!rendered.contains("{{"), "{rendered}");
        let rules = parse_rules(&rendered).expect("parses");
        assert!(!rules.is_empty());
        assert_eq!(templated_policy(template.name), Some(template));
    }
    let ids: std::collections::BTreeSet<_> = templated_policies().iter().map(|t| t.id).collect();
    assert_eq!(ids.len(), templated_policies().len(), "IDs are distinct");
}

#[test]
fn builtin_service_grants_the_service_and_its_sidecar() {
    let a = authorize(&render_template("builtin/service", Some("api")).unwrap());
    assert!(a.service_write("api") && a.service_write("api-sidecar-proxy"));
    assert!(!a.service_write("web") && a.service_read("web") && a.node_read("n1"));
    assert!(!a.node_write("n1") && !a.key_read("k") && !a.acl_read());
    assert_eq!(service_identity_rules("api"), render_template("builtin/service", Some("api")).unwrap());
}

#[test]
fn builtin_node_and_node_identity() {
    let a = authorize(&node_identity_rules("node-1"));
    assert!(a.node_write("node-1") && !a.node_write("node-2") && !a.node_read("node-2"));
    assert!(a.service_read("anything") && !a.service_write("anything"));
    assert_eq!(node_identity_rules("node-1"), render_template("builtin/node", Some("node-1")).unwrap());
}

#[test]
fn builtin_dns_nomad_and_api_gateway() {
    let dns = authorize(&render_template("builtin/dns", None).unwrap());
    assert!(dns.node_read("n") && dns.service_read("s") && dns.query_read("q"));
    assert!(!dns.service_write("s") && !dns.key_read("k"));
    let server = authorize(&render_template("builtin/nomad-server", None).unwrap());
    assert!(server.acl_write() && server.service_write("s") && server.agent_read("a") && !server.agent_write("a"));
    let client = authorize(&render_template("builtin/nomad-client", None).unwrap());
    assert!(client.service_write("s") && client.key_read("k") && !client.key_write("k") && !client.acl_read());
    let gateway = authorize(&render_template("builtin/api-gateway", Some("gw")).unwrap());
    assert!(gateway.mesh_read() && !gateway.mesh_write() && gateway.service_write("gw") && !gateway.service_write("x"));
}

#[test]
fn template_variables_are_validated_as_consul() {
    assert_eq!(render_template("builtin/nope", None), Err(TemplateError::Unknown("builtin/nope".into())));
    assert_eq!(render_template("builtin/service", None), Err(TemplateError::NameRequired));
    assert_eq!(render_template("builtin/node", Some("")), Err(TemplateError::NameRequired));
    for bad in ["Web", "-web", "web-", "web app", "web\"} acl = \"write", "wéb", "a.b"] {
        assert!(matches!(render_template("builtin/service", Some(bad)), Err(TemplateError::InvalidServiceName(_))), "{bad:?}");
        assert!(matches!(render_template("builtin/node", Some(bad)), Err(TemplateError::InvalidNodeName(_))), "{bad:?}");
        assert!(render_template("builtin/api-gateway", Some(bad)).is_err(), "{bad:?}");
    }
    assert!(is_valid_identity_name("a") && is_valid_identity_name("web_1-x") && is_valid_identity_name("9"));
    assert!(is_valid_identity_name(&"a".repeat(IDENTITY_NAME_BYTES_MAX)));
    assert!(!is_valid_identity_name(&"a".repeat(IDENTITY_NAME_BYTES_MAX + 1)));
    assert!(!is_valid_identity_name(""));
    let e = render_template("builtin/service", Some("Web")).unwrap_err();
    assert_eq!(e.to_string(), r#"service identity "Web" has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed"#);
    // templates without variables ignore a name
    assert_eq!(render_template("builtin/dns", Some("x")), render_template("builtin/dns", None));
}
