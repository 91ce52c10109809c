//! The soak's periodic cleanup: removes what the fuzzers managed to create (catalog nodes,
//! KV keys, sessions, ACL objects, agent services and checks), so that the cluster's state
//! stays bounded and RSS growth can only come from the agents themselves. It keeps a few of
//! the newest sessions and ACL objects, whose IDs the fuzzers then aim at (`Known`).

use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::base_load::{BASE_SERVICE, BaseTarget};
use super::http_seeds::Known;
use super::report::Tally;

/// Newest fuzzer-made sessions and ACL objects of each kind left in place for the fuzzers.
const KEPT_PER_KIND: usize = 8;
/// Most rows of one kind removed in one pass (the next pass takes the rest).
const REMOVED_PER_PASS_MAX: usize = 2_000;
/// IDs of ACL objects the cluster creates itself (the builtin policies and the anonymous
/// token) start with this.
const BUILTIN_ID_PREFIX: &str = "00000000-0000-0000-0000-";

/// One cleanup pass through the first server, with the management token.
pub(crate) async fn pass(target: &BaseTarget, token: &str, servers: &[String], known: &Arc<Mutex<Known>>, tally: &Tally) {
    let api = Api { target, token, http: &target.https[0] };
    for node in api.list("/v1/catalog/nodes", "Node").await.into_iter().filter(|n| !servers.contains(n)).take(REMOVED_PER_PASS_MAX) {
        api.call(reqwest::Method::PUT, "/v1/catalog/deregister", Some(serde_json::json!({ "Node": node }))).await;
    }
    api.call(reqwest::Method::DELETE, "/v1/kv/fuzz?recurse", None).await;
    let keys = api.get("/v1/kv/?keys").await;
    let strays = keys.as_array().into_iter().flatten().filter_map(Value::as_str).filter(|k| !k.starts_with("base/") && !k.starts_with("soak-probe/"));
    for key in strays.take(REMOVED_PER_PASS_MAX).map(str::to_string).collect::<Vec<_>>() {
        api.call(reqwest::Method::DELETE, &format!("/v1/kv/{}", super::http_seeds::encode_segment(&key)), None).await;
    }
    let sessions = api.prune("/v1/session/list", "ID", "/v1/session/destroy/", reqwest::Method::PUT, |_| true).await;
    let not_builtin = |id: &str| !id.starts_with(BUILTIN_ID_PREFIX);
    let tokens = api.prune("/v1/acl/tokens", "AccessorID", "/v1/acl/token/", reqwest::Method::DELETE, |item| {
        item["AccessorID"].as_str().is_some_and(not_builtin) && item["Description"].as_str() != Some("Initial Management Token") && item["SecretID"].as_str() != Some(token)
    })
    .await;
    let policies = api.prune("/v1/acl/policies", "ID", "/v1/acl/policy/", reqwest::Method::DELETE, |item| item["ID"].as_str().is_some_and(not_builtin)).await;
    let roles = api.prune("/v1/acl/roles", "ID", "/v1/acl/role/", reqwest::Method::DELETE, |_| true).await;
    api.prune("/v1/acl/binding-rules", "ID", "/v1/acl/binding-rule/", reqwest::Method::DELETE, |_| true).await;
    api.prune("/v1/acl/auth-methods", "Name", "/v1/acl/auth-method/", reqwest::Method::DELETE, |_| true).await;
    for http in &target.https {
        agent_strays(&Api { target, token, http }).await;
    }
    *known.lock().expect("known ids lock") = Known { sessions, tokens, policies, roles };
    tally.count("cleanup.passes");
}

/// Services and checks the fuzzers registered on one agent.
async fn agent_strays(api: &Api<'_>) {
    let services = api.get("/v1/agent/services").await;
    for id in services.as_object().into_iter().flat_map(|m| m.keys()) {
        if id != BASE_SERVICE && !id.starts_with("soak-churn-") {
            api.call(reqwest::Method::PUT, &format!("/v1/agent/service/deregister/{}", super::http_seeds::encode_segment(id)), None).await;
        }
    }
    let checks = api.get("/v1/agent/checks").await;
    for (id, check) in checks.as_object().into_iter().flatten() {
        let service = check["ServiceID"].as_str().unwrap_or("");
        if service.is_empty() || (service != BASE_SERVICE && !service.starts_with("soak-churn-")) {
            api.call(reqwest::Method::PUT, &format!("/v1/agent/check/deregister/{}", super::http_seeds::encode_segment(id)), None).await;
        }
    }
}

/// The HTTP API of one server, as the cleanup calls it.
struct Api<'a> {
    target: &'a BaseTarget,
    token: &'a str,
    http: &'a str,
}

impl Api<'_> {
    async fn get(&self, path: &str) -> Value {
        match self.target.client.get(format!("http://{}{path}", self.http)).header("X-Consul-Token", self.token).send().await {
            Ok(response) if response.status().is_success() => response.json().await.unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }

    /// The `field` of every object the list at `path` returns.
    async fn list(&self, path: &str, field: &str) -> Vec<String> {
        let items = self.get(path).await;
        items.as_array().into_iter().flatten().filter_map(|item| item[field].as_str().map(str::to_string)).collect()
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) {
        let mut request = self.target.client.request(method, format!("http://{}{path}", self.http)).header("X-Consul-Token", self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Ok(response) = request.send().await {
            let _ = response.bytes().await;
        }
    }

    /// Removes the objects of the list at `path` that `removable` allows, all but the
    /// [`KEPT_PER_KIND`] newest (by `CreateIndex`); returns the kept ones' `field`.
    async fn prune(&self, path: &str, field: &str, remove_path: &str, method: reqwest::Method, removable: impl Fn(&Value) -> bool) -> Vec<String> {
        let items = self.get(path).await;
        let mut items: Vec<&Value> = items.as_array().into_iter().flatten().filter(|item| removable(item)).collect();
        items.sort_by_key(|item| std::cmp::Reverse(item["CreateIndex"].as_u64().unwrap_or(0)));
        let ids: Vec<String> = items.iter().filter_map(|item| item[field].as_str().map(str::to_string)).collect();
        for id in ids.iter().skip(KEPT_PER_KIND).take(REMOVED_PER_PASS_MAX) {
            self.call(method.clone(), &format!("{remove_path}{}", super::http_seeds::encode_segment(id)), None).await;
        }
        ids.into_iter().take(KEPT_PER_KIND).collect()
    }
}
