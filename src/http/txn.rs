//! `/v1/txn`: KV operations applied atomically as one Raft entry.
//!
//! 200 with `Results` when every operation succeeded, 409 with `Errors` (`OpIndex`, `What`)
//! when one failed and the transaction was rolled back. At most `TXN_OPS_MAX` operations, and
//! the body is bounded by `limits.txn_max_req_len` (413 beyond either).

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use crate::catalog::txn::{TXN_OPS_MAX, TxnKvOp, TxnKvVerb};
use crate::catalog::{Command, Outcome};
use crate::http::AppState;
use crate::http::decode::Fields;
use crate::http::dto::KvOut;
use crate::http::error::ApiError;
use crate::http::query::{Params, check_datacenter, json_body};

fn verb(text: &str) -> Option<TxnKvVerb> {
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

fn decode_op(position: usize, item: Value) -> Result<TxnKvOp, ApiError> {
    let op = Fields::from_value(item, "operation")?;
    let Some(kv) = op.object(&["KV"])? else {
        if op.get(&["Node", "Service", "Check"]).is_some() {
            return Err(ApiError::BadRequest(format!("operation {position}: Node, Service and Check operations in transactions are not supported yet")));
        }
        return Err(ApiError::BadRequest(format!("operation {position}: unknown operation type")));
    };
    let verb_text = kv.string(&["Verb"])?;
    let verb = verb(&verb_text).ok_or_else(|| ApiError::BadRequest(format!("operation {position}: unknown KV verb {verb_text:?}")))?;
    let key = kv.string(&["Key"])?;
    super::kv::validate_key(&key)?;
    let value = match kv.string(&["Value"])? {
        text if text.is_empty() => Vec::new(),
        text => base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(|_| ApiError::BadRequest(format!("operation {position}: Value must be base64")))?,
    };
    Ok(TxnKvOp { verb, key, value, flags: kv.u64(&["Flags"])?, index: kv.u64(&["Index"])?, session: kv.string(&["Session"])? })
}

pub(super) async fn txn(State(state): State<AppState>, Query(params): Query<Params>, body: Bytes) -> Result<Response, ApiError> {
    check_datacenter(&state, &params)?;
    let limit = state.agent.config().limits.txn_max_req_len_bytes;
    if body.len() > limit {
        return Err(ApiError::PayloadTooLarge(format!("Request body({} bytes) too large, max size: {limit} bytes", body.len())));
    }
    let items: Vec<Value> = match serde_json::from_slice(&body) {
        Ok(Value::Array(items)) => items,
        Ok(_) => return Err(ApiError::BadRequest("Failed to parse body: expected a list of operations".into())),
        Err(e) => return Err(ApiError::BadRequest(format!("Failed to parse body: {e}"))),
    };
    if items.len() > TXN_OPS_MAX {
        return Err(ApiError::PayloadTooLarge(format!("Transaction contains too many operations ({} > {TXN_OPS_MAX})", items.len())));
    }
    let ops = items.into_iter().enumerate().map(|(i, item)| decode_op(i, item)).collect::<Result<Vec<_>, _>>()?;
    let (_, outcome) = state.agent.write(Command::Txn { ops }).await?;
    let pretty = params.contains_key("pretty");
    match outcome {
        Outcome::Txn(Ok(results)) => {
            let results: Vec<Value> = results
                .iter()
                .map(|r| {
                    let mut kv = KvOut::from(&r.entry);
                    if !r.include_value {
                        kv.value = None;
                    }
                    json!({"KV": kv})
                })
                .collect();
            Ok(([("content-type", "application/json")], json_body(&json!({"Results": results, "Errors": null}), pretty)).into_response())
        }
        Outcome::Txn(Err(errors)) => {
            let errors: Vec<Value> = errors.iter().map(|e| json!({"OpIndex": e.op_index, "What": e.what})).collect();
            Ok((StatusCode::CONFLICT, [("content-type", "application/json")], json_body(&json!({"Results": null, "Errors": errors}), pretty)).into_response())
        }
        Outcome::Rejected(reason) => Err(ApiError::Internal(reason)),
        _ => Err(ApiError::Internal("unexpected transaction outcome".into())),
    }
}
