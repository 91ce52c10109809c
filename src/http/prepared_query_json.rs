//! Prepared queries in Consul's JSON: the request body (`structs.PreparedQuery`, decoded
//! loosely like every body: any key case, snake_case aliases, as py-consul sends
//! `{"service": {"onlypassing": ...}}`), Consul's endpoint validation (`parseQuery`) with its
//! messages, and the JSON of a stored query.
//!
//! As in Consul, a query's `CreateIndex` and `ModifyIndex` sit at its top level (Go embeds
//! `RaftIndex`), and unset lists and maps are `null`.

use serde_json::{Map, Value, json};

use crate::agent::prepared_query::REDACTED_TOKEN;
use crate::catalog::prepared_query::{PreparedQuery, QueryDns, QueryFailover, QueryFailoverTarget, QueryTemplate, ServiceQuery};
use crate::config::parse_go_duration;
use crate::http::decode::Fields;
use crate::http::error::ApiError;

/// Consul's limits on metadata used as a filter (`ValidateNodeMetadata`).
const META_KEY_BYTES_MAX: usize = 128;
const META_VALUE_BYTES_MAX: usize = 512;
const META_PAIRS_MAX: usize = 64;

/// The body of `POST /v1/query` or `PUT /v1/query/:id`, as the query `id`. Decode errors are
/// Consul's 400 `Request decode failed`; the rules of `parseQuery` are checked by [`validate`].
pub(crate) fn decode_query(body: &[u8], id: String) -> Result<PreparedQuery, ApiError> {
    let fields = if body.iter().all(u8::is_ascii_whitespace) { Fields::parse(b"{}")? } else { Fields::parse(body)? };
    let template = match fields.object(&["Template"])? {
        None => QueryTemplate::default(),
        Some(t) => QueryTemplate { kind: t.string(&["Type"])?, regexp: t.string(&["Regexp"])?, remove_empty_tags: t.bool(&["RemoveEmptyTags"])? },
    };
    let service = match fields.object(&["Service"])? {
        None => ServiceQuery::default(),
        Some(s) => decode_service(&s)?,
    };
    let dns = match fields.object(&["DNS"])? {
        None => QueryDns::default(),
        Some(d) => QueryDns { ttl: d.string(&["TTL"])? },
    };
    Ok(PreparedQuery {
        id,
        name: fields.string(&["Name"])?,
        session: fields.string(&["Session"])?,
        token: fields.string(&["Token"])?,
        template,
        service,
        dns,
        create_index: 0,
        modify_index: 0,
    })
}

fn decode_service(s: &Fields) -> Result<ServiceQuery, ApiError> {
    let failover = match s.object(&["Failover"])? {
        None => QueryFailover::default(),
        Some(f) => {
            let nearest_n = match f.get(&["NearestN"]) {
                None => 0,
                Some(Value::Number(n)) => match n.as_i64() {
                    Some(n) if n < 0 => return Err(invalid(format!("Bad NearestN '{n}', must be >= 0"))),
                    Some(n) => n as u64,
                    None => return Err(ApiError::BadRequest("Request decode failed: field \"NearestN\" must be an integer".into())),
                },
                Some(_) => return Err(ApiError::BadRequest("Request decode failed: field \"NearestN\" must be an integer".into())),
            };
            let mut targets = Vec::new();
            if let Some(Value::Array(items)) = f.get(&["Targets"]) {
                for item in items {
                    let t = Fields::from_value(item.clone(), "Targets")?;
                    let peer = match t.string(&["Peer"])? {
                        peer if peer.is_empty() => t.string(&["PeerName"])?,
                        peer => peer,
                    };
                    let (datacenter, partition, namespace) = (t.string(&["Datacenter"])?, t.string(&["Partition"])?, t.string(&["Namespace"])?);
                    targets.push(QueryFailoverTarget { peer, datacenter, partition, namespace });
                }
            }
            QueryFailover { nearest_n, datacenters: f.strings(&["Datacenters"])?, targets }
        }
    };
    Ok(ServiceQuery {
        service: s.string(&["Service"])?,
        failover,
        only_passing: s.bool(&["OnlyPassing"])?,
        ignore_check_ids: s.strings(&["IgnoreCheckIDs"])?,
        near: s.string(&["Near"])?,
        tags: s.strings(&["Tags"])?,
        node_meta: s.string_map(&["NodeMeta"])?,
        service_meta: s.string_map(&["ServiceMeta"])?,
        peer: s.string(&["Peer"])?,
        sameness_group: s.string(&["SamenessGroup"])?,
        connect: s.bool(&["Connect"])?,
    })
}

fn invalid(reason: String) -> ApiError {
    // Consul returns these from its RPC endpoint as plain errors, which its HTTP layer answers
    // with 500 (not 400), prefixed "Invalid prepared query: ".
    ApiError::Internal(format!("Invalid prepared query: {reason}"))
}

/// Consul's `parseQuery`: the checks made before a query is committed, with its messages.
pub(crate) fn validate(query: &PreparedQuery) -> Result<(), ApiError> {
    if query.name.is_empty() && !query.is_template() && query.session.is_empty() {
        return Err(invalid("Must be bound to a session".into()));
    }
    if query.token == REDACTED_TOKEN {
        return Err(invalid(format!("Bad Token '{}', it looks like a query definition with a redacted token was submitted", query.token)));
    }
    let service = &query.service;
    if service.service.is_empty() {
        return Err(invalid("Must provide a Service name to query".into()));
    }
    let failover = &service.failover;
    if !failover.targets.is_empty() && (failover.nearest_n > 0 || !failover.datacenters.is_empty()) {
        return Err(invalid("Targets cannot be populated with NearestN or Datacenters".into()));
    }
    if failover.targets.iter().any(|t| !t.peer.is_empty() && !t.datacenter.is_empty()) {
        return Err(invalid("Targets cannot contain both PeerName and Datacenter".into()));
    }
    validate_meta(&service.node_meta).map_err(invalid)?;
    if !query.dns.ttl.is_empty() && let Err(error) = parse_go_duration(&query.dns.ttl) {
        return Err(invalid(format!("Bad DNS TTL '{}': {error}", query.dns.ttl)));
    }
    Ok(())
}

/// Consul's `ValidateNodeMetadata` with reserved keys allowed, as `parseService` calls it.
fn validate_meta(meta: &std::collections::BTreeMap<String, String>) -> Result<(), String> {
    if meta.len() > META_PAIRS_MAX {
        return Err(format!("Node metadata cannot contain more than {META_PAIRS_MAX} key/value pairs"));
    }
    for (key, value) in meta {
        if key.is_empty() {
            return Err("Key cannot be blank".into());
        }
        if !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(format!("Key contains invalid characters: {key}"));
        }
        if key.len() > META_KEY_BYTES_MAX {
            return Err(format!("Key is too long (limit: {META_KEY_BYTES_MAX} characters)"));
        }
        if value.len() > META_VALUE_BYTES_MAX {
            return Err(format!("Value is too long (limit: {META_VALUE_BYTES_MAX} characters)"));
        }
    }
    Ok(())
}

/// `null` for an empty list or map, as Go's nil slices and maps encode.
fn list(items: &[String]) -> Value {
    if items.is_empty() { Value::Null } else { json!(items) }
}

fn map(pairs: &std::collections::BTreeMap<String, String>) -> Value {
    if pairs.is_empty() { Value::Null } else { json!(pairs) }
}

/// A stored (or rendered) query as Consul shows it; `redact` hides a non-empty `Token`.
pub(crate) fn query_json(query: &PreparedQuery, redact: bool) -> Value {
    let token = if redact && !query.token.is_empty() { REDACTED_TOKEN } else { query.token.as_str() };
    let s = &query.service;
    let targets: Vec<Value> = s
        .failover
        .targets
        .iter()
        .map(|t| {
            let mut target = Map::new();
            target.insert("Peer".into(), json!(t.peer));
            target.insert("Datacenter".into(), json!(t.datacenter));
            for (key, value) in [("Partition", &t.partition), ("Namespace", &t.namespace)] {
                if !value.is_empty() {
                    target.insert(key.into(), json!(value));
                }
            }
            Value::Object(target)
        })
        .collect();
    json!({
        "ID": query.id,
        "Name": query.name,
        "Session": query.session,
        "Token": token,
        "Template": {"Type": query.template.kind, "Regexp": query.template.regexp, "RemoveEmptyTags": query.template.remove_empty_tags},
        "Service": {
            "Service": s.service,
            "Failover": {"NearestN": s.failover.nearest_n, "Datacenters": list(&s.failover.datacenters), "Targets": if targets.is_empty() { Value::Null } else { Value::Array(targets) }},
            "OnlyPassing": s.only_passing,
            "IgnoreCheckIDs": list(&s.ignore_check_ids),
            "Near": s.near,
            "Tags": list(&s.tags),
            "NodeMeta": map(&s.node_meta),
            "ServiceMeta": map(&s.service_meta),
            "Peer": s.peer,
            "SamenessGroup": s.sameness_group,
            "Connect": s.connect,
        },
        "DNS": {"TTL": query.dns.ttl},
        "CreateIndex": query.create_index,
        "ModifyIndex": query.modify_index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// py-consul's body: lowercase keys, a null token, a template with no regexp.
    #[test]
    fn py_consul_body_decodes_and_validates() {
        let body = br#"{"name": "fooquery", "token": null, "template": {"type": "name_prefix_match"},
            "service": {"service": "foo", "onlypassing": true, "tags": ["a", "!b"], "failover": {"nearestn": 3, "datacenters": ["dc2"]}},
            "dns": {"ttl": "10s"}}"#;
        let query = decode_query(body, "id".into()).expect("decodes");
        assert_eq!((query.name.as_str(), query.token.as_str(), query.template.kind.as_str()), ("fooquery", "", "name_prefix_match"));
        assert!(query.service.only_passing);
        assert_eq!((query.service.failover.nearest_n, query.dns.ttl.as_str()), (3, "10s"));
        assert!(validate(&query).is_ok());
        let shown = query_json(&query, true);
        assert_eq!(shown["Service"]["Tags"], json!(["a", "!b"]));
        assert_eq!(shown["Service"]["IgnoreCheckIDs"], Value::Null);
    }

    #[test]
    fn consul_validation_messages() {
        let message = |body: &[u8]| match decode_query(body, "id".into()).and_then(|q| validate(&q)) {
            Err(error) => error.to_string(),
            Ok(()) => "ok".into(),
        };
        assert_eq!(message(br#"{"Service": {"Service": "web"}}"#), "Invalid prepared query: Must be bound to a session");
        assert_eq!(message(br#"{"Name": "q"}"#), "Invalid prepared query: Must provide a Service name to query");
        assert_eq!(message(br#"{"Name": "q", "Token": "<hidden>", "Service": {"Service": "w"}}"#).split(',').next(), Some("Invalid prepared query: Bad Token '<hidden>'"));
        assert_eq!(message(br#"{"Name": "q", "Service": {"Service": "w", "Failover": {"NearestN": -1}}}"#), "Invalid prepared query: Bad NearestN '-1', must be >= 0");
        assert!(message(br#"{"Name": "q", "Service": {"Service": "w"}, "DNS": {"TTL": "soon"}}"#).starts_with("Invalid prepared query: Bad DNS TTL 'soon'"));
        assert!(message(br#"{"Name": "q", "Service": {"Service": "w", "NodeMeta": {"a b": "x"}}}"#).contains("invalid characters"));
        assert!(message(br#"{"Name": 5}"#).starts_with("Request decode failed"));
        assert!(message(b"[").starts_with("Request decode failed"));
        assert_eq!(message(br#"{"Name": "q", "Service": {"Service": "w"}}"#), "ok");
    }
}
