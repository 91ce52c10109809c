//! `/v1/txn`: KV, Node, Service and Check operations applied atomically as one Raft entry
//! (`Command::TxnOps`).
//!
//! 200 with `Results` when every operation succeeded, 409 with `Errors` (`OpIndex`, `What`)
//! when any failed and the transaction was rolled back. Malformed operations (unknown type or
//! verb, missing node or service name, bad base64) are refused with a one-line 400 before
//! anything is proposed; Consul reports an unknown verb as a 409 instead. At most
//! `TXN_OPS_MAX` operations, and the body is bounded by `limits.txn_max_req_len` (413 beyond
//! either).

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use crate::catalog::txn::{TXN_OPS_MAX, TxnCatalogVerb, TxnCheckOp, TxnKvOp, TxnKvVerb, TxnNodeOp, TxnOp, TxnOpResult, TxnServiceOp};
use crate::catalog::{Command, Outcome};
use crate::http::AppState;
use crate::http::authz::Authz;
use crate::http::decode::{self, Fields};
use crate::http::dto::{CheckOut, KvOut, NodeOut, ServiceOut};
use crate::http::error::ApiError;
use crate::http::query::{Params, check_datacenter, json_body};

fn kv_verb(text: &str) -> Option<TxnKvVerb> {
    Some(match text {
        "set" => TxnKvVerb::Set,
        "cas" => TxnKvVerb::Cas,
        "lock" => TxnKvVerb::Lock,
        "unlock" => TxnKvVerb::Unlock,
        "get" => TxnKvVerb::Get,
        "get-tree" => TxnKvVerb::GetTree,
        "check-index" => TxnKvVerb::CheckIndex,
        "check-session" => TxnKvVerb::CheckSession,
        "check-not-exists" => TxnKvVerb::CheckNotExists,
        "delete" => TxnKvVerb::Delete,
        "delete-tree" => TxnKvVerb::DeleteTree,
        "delete-cas" => TxnKvVerb::DeleteCas,
        "get-or-empty" => TxnKvVerb::GetOrEmpty,
        _ => return None,
    })
}

/// The verb of a Node, Service or Check operation (`kind` names it in the error).
fn catalog_verb(position: usize, kind: &str, op: &Fields) -> Result<TxnCatalogVerb, ApiError> {
    let text = op.string(&["Verb"])?;
    Ok(match text.as_str() {
        "set" => TxnCatalogVerb::Set,
        "cas" => TxnCatalogVerb::Cas,
        "get" => TxnCatalogVerb::Get,
        "delete" => TxnCatalogVerb::Delete,
        "delete-cas" => TxnCatalogVerb::DeleteCas,
        _ => return Err(bad(position, format!("unknown {kind} verb {text:?}"))),
    })
}

fn bad(position: usize, what: String) -> ApiError {
    ApiError::BadRequest(format!("operation {position}: {what}"))
}

/// The one object under `kind` in an operation's body (`Node`, `Service`, `Check`).
fn required_object(position: usize, fields: &Fields, kind: &str) -> Result<Fields, ApiError> {
    fields.object(&[kind])?.ok_or_else(|| bad(position, format!("{kind} operation needs a {kind} object")))
}

fn decode_op(position: usize, item: Value, datacenter: &str) -> Result<TxnOp, ApiError> {
    let op = Fields::from_value(item, "operation")?;
    let kinds: Vec<&str> = ["KV", "Node", "Service", "Check"].into_iter().filter(|kind| op.get(&[kind]).is_some()).collect();
    match kinds.as_slice() {
        ["KV"] => decode_kv(position, &required_object(position, &op, "KV")?).map(TxnOp::Kv),
        ["Node"] => decode_node(position, &required_object(position, &op, "Node")?, datacenter).map(TxnOp::Node),
        ["Service"] => decode_service(position, &required_object(position, &op, "Service")?).map(TxnOp::Service),
        ["Check"] => decode_check(position, &required_object(position, &op, "Check")?).map(TxnOp::Check),
        [] if op.get(&["Session", "Intention"]).is_some() => Err(bad(position, "Session and Intention operations are not supported".into())),
        [] => Err(bad(position, "unknown operation type (expected KV, Node, Service or Check)".into())),
        _ => Err(bad(position, format!("more than one operation type ({})", kinds.join(", ")))),
    }
}

fn decode_kv(position: usize, kv: &Fields) -> Result<TxnKvOp, ApiError> {
    let verb_text = kv.string(&["Verb"])?;
    let verb = kv_verb(&verb_text).ok_or_else(|| bad(position, format!("unknown KV verb {verb_text:?}")))?;
    let key = kv.string(&["Key"])?;
    super::kv::validate_key(&key)?;
    let value = match kv.string(&["Value"])? {
        text if text.is_empty() => Vec::new(),
        text => base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(|_| bad(position, "Value must be base64".into()))?,
    };
    Ok(TxnKvOp { verb, key, value, flags: kv.u64(&["Flags"])?, index: kv.u64(&["Index"])?, session: kv.string(&["Session"])? })
}

/// `{"Verb": ..., "Node": {"ID", "Node", "Address", "Datacenter", "TaggedAddresses", "Meta", "ModifyIndex"}}`
fn decode_node(position: usize, op: &Fields, datacenter: &str) -> Result<TxnNodeOp, ApiError> {
    let verb = catalog_verb(position, "Node", op)?;
    let node = required_object(position, op, "Node")?;
    let (node_id, name) = (node.name(&["ID"])?, node.name(&["Node"])?);
    // Consul looks a node up by ID when one is given, so `get` may name only the ID.
    let lookup_by_id = verb == TxnCatalogVerb::Get && !node_id.is_empty();
    if name.is_empty() && !lookup_by_id {
        return Err(bad(position, "Must provide node".into()));
    }
    let given_datacenter = node.string(&["Datacenter"])?;
    Ok(TxnNodeOp {
        verb,
        node_id,
        node: name,
        address: node.string(&["Address"])?,
        datacenter: if given_datacenter.is_empty() { datacenter.to_string() } else { given_datacenter },
        tagged_addresses: node.string_map(&["TaggedAddresses"])?,
        meta: node.string_map(&["Meta", "NodeMeta"])?,
        index: node.u64(&["ModifyIndex"])?,
    })
}

/// `{"Verb": ..., "Node": "name", "Service": {"ID", "Service", "Tags", ..., "ModifyIndex"}}`
fn decode_service(position: usize, op: &Fields) -> Result<TxnServiceOp, ApiError> {
    let verb = catalog_verb(position, "Service", op)?;
    let node = op.name(&["Node"])?;
    if node.is_empty() {
        return Err(bad(position, "Must provide node".into()));
    }
    let service = required_object(position, op, "Service")?;
    let name = service.name(&["Service", "Name"])?;
    let id = match service.name(&["ID"])? {
        id if id.is_empty() => name.clone(),
        id => id,
    };
    let writes = matches!(verb, TxnCatalogVerb::Set | TxnCatalogVerb::Cas);
    if (writes && name.is_empty()) || id.is_empty() {
        return Err(bad(position, "Must provide service name".into()));
    }
    let index = service.u64(&["ModifyIndex"])?;
    Ok(TxnServiceOp { verb, node, service: decode::service_registration(&service, id, name)?, index })
}

/// `{"Verb": ..., "Check": {"Node", "CheckID", "Name", "Status", ..., "ModifyIndex"}}`
fn decode_check(position: usize, op: &Fields) -> Result<TxnCheckOp, ApiError> {
    let verb = catalog_verb(position, "Check", op)?;
    let check = required_object(position, op, "Check")?;
    let node = check.name(&["Node"])?;
    if node.is_empty() {
        return Err(bad(position, "Must provide node".into()));
    }
    let registration = decode::catalog_check(&check).map_err(|e| match e {
        ApiError::BadRequest(what) => bad(position, what),
        other => other,
    })?;
    Ok(TxnCheckOp { verb, node, check: registration, index: check.u64(&["ModifyIndex"])? })
}

fn result_json(result: &TxnOpResult) -> Value {
    match result {
        TxnOpResult::Kv(row) => {
            let mut kv = KvOut::from(&row.entry);
            if !row.include_value {
                kv.value = None;
            }
            json!({"KV": kv})
        }
        TxnOpResult::Node(node) => json!({"Node": NodeOut::from(node)}),
        TxnOpResult::Service(service) => json!({"Service": ServiceOut::from(service)}),
        TxnOpResult::Check(check) => json!({"Check": CheckOut::from(check)}),
    }
}

pub(super) async fn txn(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>, body: Bytes) -> Result<Response, ApiError> {
    check_datacenter(&state, &params)?;
    let limit = state.agent.config().limits.txn_max_req_len_bytes;
    if body.len() > limit {
        return Err(ApiError::PayloadTooLarge(format!("Request body({} bytes) too large, max size: {limit} bytes", body.len())));
    }
    let ops = decode_ops(&body, &state.agent.identity().datacenter)?;
    for op in &ops {
        authorize_op(&authz, op)?;
    }
    let (_, outcome) = state.agent.write(Command::TxnOps { ops }).await?;
    let pretty = params.contains_key("pretty");
    match outcome {
        Outcome::TxnOps(Ok(results)) => {
            let results: Vec<Value> = results.iter().map(result_json).collect();
            Ok(([("content-type", "application/json")], json_body(&json!({"Results": results, "Errors": null}), pretty)).into_response())
        }
        Outcome::TxnOps(Err(errors)) => {
            let errors: Vec<Value> = errors.iter().map(|e| json!({"OpIndex": e.op_index, "What": e.what})).collect();
            Ok((StatusCode::CONFLICT, [("content-type", "application/json")], json_body(&json!({"Results": null, "Errors": errors}), pretty)).into_response())
        }
        Outcome::Rejected(reason) => Err(ApiError::Internal(reason)),
        _ => Err(ApiError::Internal("unexpected transaction outcome".into())),
    }
}

/// The operations of a `PUT /v1/txn` body, for this agent's datacenter. Pure.
pub(crate) fn decode_ops(body: &[u8], datacenter: &str) -> Result<Vec<TxnOp>, ApiError> {
    let items: Vec<Value> = match serde_json::from_slice(body) {
        Ok(Value::Array(items)) => items,
        Ok(_) => return Err(ApiError::BadRequest("Failed to parse body: expected a list of operations".into())),
        Err(e) => return Err(ApiError::BadRequest(format!("Failed to parse body: {e}"))),
    };
    if items.len() > TXN_OPS_MAX {
        return Err(ApiError::PayloadTooLarge(format!("Transaction contains too many operations ({} > {TXN_OPS_MAX})", items.len())));
    }
    items.into_iter().enumerate().map(|(i, item)| decode_op(i, item, datacenter)).collect()
}

/// Each operation needs what the same request outside a transaction needs; one refused
/// operation refuses the whole transaction before anything is written (Consul checks them all
/// up front too).
fn authorize_op(authz: &Authz, op: &crate::catalog::txn::TxnOp) -> Result<(), ApiError> {
    use crate::catalog::txn::{TxnCatalogVerb, TxnKvVerb, TxnOp};
    if authz.allows_everything() {
        return Ok(());
    }
    let a = authz.authorizer();
    let reads = |verb: TxnCatalogVerb| matches!(verb, TxnCatalogVerb::Get);
    match op {
        TxnOp::Kv(kv) => match kv.verb {
            TxnKvVerb::Get | TxnKvVerb::GetOrEmpty | TxnKvVerb::CheckIndex | TxnKvVerb::CheckSession | TxnKvVerb::CheckNotExists => {
                authz.require(a.key_read(&kv.key), "key:read", Some(&kv.key))
            }
            TxnKvVerb::GetTree => authz.require(a.key_list(&kv.key) || a.key_read(&kv.key), "key:list", Some(&kv.key)),
            TxnKvVerb::DeleteTree => authz.require(a.key_write_prefix(&kv.key), "key:write", Some(&kv.key)),
            _ => authz.require(a.key_write(&kv.key), "key:write", Some(&kv.key)),
        },
        TxnOp::Node(node) if reads(node.verb) => authz.require(a.node_read(&node.node), "node:read", Some(&node.node)),
        TxnOp::Node(node) => authz.require(a.node_write(&node.node), "node:write", Some(&node.node)),
        TxnOp::Service(op) if reads(op.verb) => authz.require(a.service_read(&op.service.name), "service:read", Some(&op.service.name)),
        TxnOp::Service(op) => authz.require(a.service_write(&op.service.name), "service:write", Some(&op.service.name)),
        TxnOp::Check(op) if reads(op.verb) => authz.require(a.node_read(&op.node), "node:read", Some(&op.node)),
        TxnOp::Check(op) => authz.require(a.node_write(&op.node), "node:write", Some(&op.node)),
    }
}
