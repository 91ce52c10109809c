//! Fuzzes `bexpr::Filter::parse` and `Filter::matches`, Consul's `?filter=` expressions: any
//! HTTP client writes them, and every list endpoint evaluates one against each item it would
//! return. The attack: a client sends an expression built to crash the parser (deep nesting,
//! odd escapes, cut-off strings), to compile a huge regex, or to make evaluation slow over a
//! large answer.

use serde_json::{Value, json};

use crate::bexpr::{FILTER_EXPRESSION_BYTES_MAX, Filter};
use crate::fuzz::{FUZZ_ALLOC_BYTES_MAX_DEFAULT, Target, Verdict, fuzz};

/// Items as the HTTP API renders them: a catalog service, a health entry, a node, a KV pair.
fn documents() -> Vec<Value> {
    vec![
        json!({
            "ID": "b3a9e1b2", "Node": "n1", "Address": "10.0.0.5", "Datacenter": "dc1",
            "NodeMeta": {"rack-1": "a", "os": "linux"}, "ServiceID": "web-1", "ServiceName": "web",
            "ServiceTags": ["prod", "v2"], "ServicePort": 8080, "ServiceEnableTagOverride": false,
            "ServiceMeta": {"version": "2", "k8s/app": "web"}, "ServiceWeights": {"Passing": 10, "Warning": 1},
            "ServiceProxy": {"Mode": "", "Upstreams": []}, "EmptyTags": [],
        }),
        json!({
            "Node": {"Node": "n2", "Meta": {}}, "Service": {"Service": "db", "Tags": [], "Meta": {"k8s/app": "db"}, "Port": 5432},
            "Checks": [{"CheckID": "serfHealth", "Status": "passing"}, {"CheckID": "service:db", "Status": "critical", "Output": "x\ny"}],
        }),
        json!({"Key": "app/config", "Flags": 42, "Value": "eyJhIjoxfQ==", "Session": null, "LockIndex": 0}),
        json!([1, "two", {"three": [3.5, -4, 1e300]}]),
    ]
}

fn seeds() -> Vec<Vec<u8>> {
    [
        r#"Node == "n1""#,
        r#""prod" in ServiceTags and ServicePort != "80""#,
        r#"ServiceMeta["k8s/app"] == web or Service.Meta.k8s/app == db"#,
        r#"Checks.CheckID matches "^service:" and not ("staging" in ServiceTags)"#,
        r#""/ServiceMeta/k8s~1app" contains "we""#,
        r#"EmptyTags is empty and ServiceProxy is not empty"#,
        r#"Name == "a\"b\\c\nd\u00e9\U0001F600" or Name contains `a"b\c`"#,
        r#"(Node == n1 or (Node == n2 and Service.Port == "5432")) and Checks.Status not contains critical"#,
        r#"Key matches "^app/[a-z]+$" and Flags == 42"#,
    ]
    .iter()
    .map(|expression| expression.as_bytes().to_vec())
    .collect()
}

/// Filter expressions, parsed and evaluated against every sample item.
#[test]
fn expressions() {
    let dictionary = [
        " and ", " or ", "not ", " in ", " not in ", " contains ", " not contains ", " matches ", " not matches ", " is empty", " is not empty",
        " == ", " != ", "(", ")", "[\"", "\"]", "\"", "`", ".", "\\u", "\\U", "\\x", "\\", "/", "~1", "(?i)", ".*", "{1000}", "\\w+",
    ]
    .iter()
    .map(|word| word.as_bytes().to_vec())
    .collect();
    let target = Target {
        name: "filter::expressions",
        seeds: seeds(),
        dictionary,
        // A little past the limit, so that the limit is tried too.
        input_bytes_max: FILTER_EXPRESSION_BYTES_MAX + 64,
        alloc_bytes_max: FUZZ_ALLOC_BYTES_MAX_DEFAULT,
    };
    fuzz(target, || {
        let documents = documents();
        move |input: &[u8]| {
            // Query strings are percent-decoded into UTF-8 before the handler sees them.
            let expression = String::from_utf8_lossy(input);
            let Ok(filter) = Filter::parse(&expression) else { return Verdict::Refused };
            for document in &documents {
                let _ = filter.matches(document);
            }
            Verdict::Accepted
        }
    });
}
