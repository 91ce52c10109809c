//! Consul's builtin templated policies (`agent/structs/acl_templated_policy.go` and
//! `acltemplatedpolicy/policies/ce/*.hcl`) and the synthetic policies of service and node
//! identities, which Consul renders from the same `builtin/service` and `builtin/node` rules.
//!
//! Consul renders its templates with Go's text/template and says a name needs no escaping
//! because it was validated first; we substitute `{{.Name}}` only after the same validation
//! (`acl/validation.go`: lowercase letters, digits, `-` and `_`, at most 256 bytes).

/// One builtin templated policy, as `GET /v1/acl/templated-policies` lists it.
#[derive(Debug, PartialEq, Eq)]
pub struct TemplatedPolicy {
    pub name: &'static str,
    /// Consul's fixed template ID.
    pub id: &'static str,
    pub description: &'static str,
    /// The JSON schema of the template's variables; empty when it takes none.
    pub schema: &'static str,
    /// The rules, with `{{.Name}}` where the `name` variable goes.
    pub template: &'static str,
}

/// Longest service or node identity name (Consul's `ServiceIdentityNameMaxLength` and
/// `NodeIdentityNameMaxLength`).
pub const IDENTITY_NAME_BYTES_MAX: usize = 256;

/// The schema of the templates that take a `name` (Consul's `service.json`, `node.json`,
/// `api-gateway.json`: a required string of at least one character).
const NAME_SCHEMA: &str = r##"{
  "type": "object",
  "properties": {
    "name": { "type": "string", "$ref": "#/definitions/min-length-one" }
  },
  "required": ["name"],
  "definitions": {
    "min-length-one": { "type": "string", "minLength": 1 }
  }
}"##;

const SERVICE_TEMPLATE: &str = r#"
service "{{.Name}}" {
	policy = "write"
}
service "{{.Name}}-sidecar-proxy" {
	policy = "write"
}
service_prefix "" {
	policy = "read"
}
node_prefix "" {
	policy = "read"
}"#;

const NODE_TEMPLATE: &str = r#"
node "{{.Name}}" {
	policy = "write"
}
service_prefix "" {
	policy = "read"
}"#;

const DNS_TEMPLATE: &str = r#"
node_prefix "" {
	policy = "read"
}
service_prefix "" {
	policy = "read"
}
query_prefix "" {
	policy = "read"
}"#;

const NOMAD_SERVER_TEMPLATE: &str = r#"
acl = "write"
agent_prefix "" {
  policy = "read"
}
node_prefix "" {
  policy = "read"
}
service_prefix "" {
  policy = "write"
}"#;

const NOMAD_CLIENT_TEMPLATE: &str = r#"
agent_prefix "" {
  policy = "read"
}
node_prefix "" {
  policy = "read"
}
service_prefix "" {
  policy = "write"
}
key_prefix "" {
  policy = "read"
}"#;

const API_GATEWAY_TEMPLATE: &str = r#"
mesh = "read"
node_prefix "" {
	policy = "read"
}
service_prefix "" {
	policy = "read"
}
service "{{.Name}}" {
	policy = "write"
}"#;

/// Consul CE's builtin templates, in Consul's ID order. (ID `...0007`, the former
/// `builtin/workload-identity`, is retired in current Consul and not offered.)
static TEMPLATED_POLICIES: [TemplatedPolicy; 6] = [
    TemplatedPolicy {
        name: "builtin/service",
        id: "00000000-0000-0000-0000-000000000003",
        description: "Gives the token or role permissions to register a service and discover services in the Consul catalog. It also gives the specified service's sidecar proxy the permission to discover and route traffic to other services.",
        schema: NAME_SCHEMA,
        template: SERVICE_TEMPLATE,
    },
    TemplatedPolicy {
        name: "builtin/node",
        id: "00000000-0000-0000-0000-000000000004",
        description: "Gives the token or role permissions for a register an agent/node into the catalog. A node is typically a consul agent but can also be a physical server, cloud instance or a container.",
        schema: NAME_SCHEMA,
        template: NODE_TEMPLATE,
    },
    TemplatedPolicy {
        name: "builtin/dns",
        id: "00000000-0000-0000-0000-000000000005",
        description: "Gives the token or role permissions for the Consul DNS to query services in the network.",
        schema: "",
        template: DNS_TEMPLATE,
    },
    TemplatedPolicy {
        name: "builtin/nomad-server",
        id: "00000000-0000-0000-0000-000000000006",
        description: "Gives the token or role permissions required for integration with a nomad server.",
        schema: "",
        template: NOMAD_SERVER_TEMPLATE,
    },
    TemplatedPolicy {
        name: "builtin/api-gateway",
        id: "00000000-0000-0000-0000-000000000008",
        description: "Gives the token or role permissions for a Consul api gateway",
        schema: NAME_SCHEMA,
        template: API_GATEWAY_TEMPLATE,
    },
    TemplatedPolicy {
        name: "builtin/nomad-client",
        id: "00000000-0000-0000-0000-000000000009",
        description: "Gives the token or role permissions required for integration with a nomad client.",
        schema: "",
        template: NOMAD_CLIENT_TEMPLATE,
    },
];

/// Why a template could not be rendered; messages as Consul's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("acl templated policy does not exist: {0}")]
    Unknown(String),
    #[error("name: name is required")]
    NameRequired,
    #[error("service identity {0:?} has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed")]
    InvalidServiceName(String),
    #[error("node identity {0:?}  has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed")]
    InvalidNodeName(String),
}

/// Every builtin templated policy.
pub fn templated_policies() -> &'static [TemplatedPolicy] {
    &TEMPLATED_POLICIES
}

/// The builtin templated policy called `name` (`builtin/service`, ...).
pub fn templated_policy(name: &str) -> Option<&'static TemplatedPolicy> {
    TEMPLATED_POLICIES.iter().find(|t| t.name == name)
}

/// Consul's `IsValidServiceIdentityName` / `IsValidNodeIdentityName` (the same rule):
/// `^[a-z0-9]([a-z0-9\-_]*[a-z0-9])?$`, 1 to 256 bytes.
pub fn is_valid_identity_name(name: &str) -> bool {
    let inner = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_';
    let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = name.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            bytes.len() <= IDENTITY_NAME_BYTES_MAX && edge(first) && edge(last) && bytes.iter().all(inner)
        }
        _ => false,
    }
}

/// Renders the template's rules for these variables: `name` for `builtin/service`,
/// `builtin/node` and `builtin/api-gateway` (required); the others take none and ignore it.
pub fn render_template(name: &str, vars_name: Option<&str>) -> Result<String, TemplateError> {
    let template = templated_policy(name).ok_or_else(|| TemplateError::Unknown(name.to_string()))?;
    if template.schema.is_empty() {
        return Ok(template.template.to_string());
    }
    let value = vars_name.filter(|v| !v.is_empty()).ok_or(TemplateError::NameRequired)?;
    // Consul checks service and node names; an api-gateway is a service, and its name is
    // pasted into the rules, so it gets the service rule too (Consul only checks its length).
    if !is_valid_identity_name(value) {
        return Err(match template.name {
            "builtin/node" => TemplateError::InvalidNodeName(value.to_string()),
            _ => TemplateError::InvalidServiceName(value.to_string()),
        });
    }
    Ok(template.template.replace("{{.Name}}", value))
}

/// Consul's synthetic policy for a `ServiceIdentity` (the `builtin/service` rules). The caller
/// validates the name ([`is_valid_identity_name`]) before storing the identity, as Consul does.
pub fn service_identity_rules(service: &str) -> String {
    SERVICE_TEMPLATE.replace("{{.Name}}", service)
}

/// Consul's synthetic policy for a `NodeIdentity` (the `builtin/node` rules).
pub fn node_identity_rules(node: &str) -> String {
    NODE_TEMPLATE.replace("{{.Name}}", node)
}

/// Consul's builtin `global-management` policy (ID `00000000-0000-0000-0000-000000000001`).
pub const GLOBAL_MANAGEMENT_POLICY_ID: &str = "00000000-0000-0000-0000-000000000001";

/// The rules of Consul's `global-management` policy: write on everything.
pub const GLOBAL_MANAGEMENT_RULES: &str = r#"
acl = "write"
agent_prefix "" {
  policy = "write"
}
event_prefix "" {
  policy = "write"
}
key_prefix "" {
  policy = "write"
}
keyring = "write"
node_prefix "" {
  policy = "write"
}
operator = "write"
mesh = "write"
peering = "write"
query_prefix "" {
  policy = "write"
}
service_prefix "" {
  policy = "write"
  intentions = "write"
}
session_prefix "" {
  policy = "write"
}
"#;
