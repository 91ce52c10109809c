//! Fuzzes `acl::parse_rules`, the parser of a policy's rules (HCL through hcl-rs, or JSON)
//! that `PUT /v1/acl/policy` takes, and the authorizer built from the result, which every
//! request resolved with that policy then consults. The attack: a token holder allowed to
//! write policies (or a leaked management token) posts rules built to crash the parser (deep
//! nesting, long operator chains, odd escapes and heredocs), or rules that parse but make
//! later lookups panic for every request.

use crate::acl::{Authorizer, DefaultPolicy, RULES_BYTES_MAX, parse_rules};
use crate::fuzz::{FUZZ_ALLOC_BYTES_MAX_DEFAULT, Target, Verdict, fuzz};

/// Largest rules text generated (the limit is `RULES_BYTES_MAX`, 128 KiB).
const RULES_INPUT_BYTES_MAX: usize = 16 * 1024;

fn seeds() -> Vec<Vec<u8>> {
    [
        "key_prefix \"app/\" {\n  policy = \"write\"\n}\nkey \"app/secret\" { policy = \"deny\" }\n",
        "service_prefix \"\" { policy = \"read\" }\nservice \"web\" {\n  policy = \"write\"\n  intentions = \"read\"\n}\nnode_prefix \"\" { policy = \"read\" }\n",
        "acl = \"read\"\noperator = \"write\"\nkeyring = \"deny\"\nmesh = \"read\"\npeering = \"read\"\nsession_prefix \"\" { policy = \"write\" }\nevent \"deploy\" { policy = \"write\" }\nquery_prefix \"\" { policy = \"read\" }\nagent_prefix \"\" { policy = \"read\" }\n",
        "key_prefix \"\" { policy = \"list\" }\n# a comment\n/* another */\n// and another\nnode \"n1\" {\n  policy = \"write\"\n}\n",
        r#"{"key_prefix": {"app/": {"policy": "write"}}, "service": [{"web": {"policy": "read"}}], "acl": "read"}"#,
        r#"{"node_prefix": {"": {"policy": "read"}}, "agent": {"n1": {"policy": "write"}}, "identity_prefix": {"": {"policy": "read"}}}"#,
    ]
    .iter()
    .map(|rules| rules.as_bytes().to_vec())
    .collect()
}

/// Asks the authorizer what requests ask; answers do not matter, only that they come.
fn consult(authorizer: &Authorizer) {
    for name in ["", "app/", "app/secret", "web", "web-sidecar-proxy", "n1", "deploy", "\u{0}", "ü/ö"] {
        let _ = (authorizer.key_read(name), authorizer.key_list(name), authorizer.key_write(name), authorizer.key_write_prefix(name));
        let _ = (authorizer.service_read(name), authorizer.service_write(name), authorizer.node_read(name), authorizer.node_write(name));
        let _ = (authorizer.session_read(name), authorizer.session_write(name), authorizer.agent_read(name), authorizer.agent_write(name));
        let _ = (authorizer.event_read(name), authorizer.event_write(name), authorizer.query_read(name), authorizer.query_write(name));
        let _ = (authorizer.identity_read(name), authorizer.identity_write(name), authorizer.intention_read(name), authorizer.intention_write(name));
    }
    let _ = (authorizer.acl_read(), authorizer.acl_write(), authorizer.operator_read(), authorizer.operator_write(), authorizer.keyring_read());
    let _ = (authorizer.keyring_write(), authorizer.mesh_read(), authorizer.mesh_write(), authorizer.peering_read(), authorizer.peering_write());
    let _ = (authorizer.service_read_all(), authorizer.service_write_any(), authorizer.node_read_all(), authorizer.snapshot(), authorizer.is_management());
}

/// Policy rules text, parsed, merged with another policy and consulted.
#[test]
fn rules() {
    let dictionary = [
        "key", "key_prefix", "service", "service_prefix", "node", "node_prefix", "session", "agent_prefix", "event", "query", "identity",
        "policy", "intentions", "\"read\"", "\"write\"", "\"deny\"", "\"list\"", " = ", "{", "}", "[", "]", "\"", "\n", "<<EOF\n", "\nEOF\n",
        "${", "%{", "#", "//", "/*", "*/", "\\u", "1e999", "true", "null", ",", ":",
    ]
    .iter()
    .map(|word| word.as_bytes().to_vec())
    .collect();
    let target = Target { name: "acl_rules::rules", seeds: seeds(), dictionary, input_bytes_max: RULES_INPUT_BYTES_MAX.min(RULES_BYTES_MAX), alloc_bytes_max: FUZZ_ALLOC_BYTES_MAX_DEFAULT };
    fuzz(target, || {
        let other = parse_rules("key_prefix \"app/\" { policy = \"read\" }\nservice \"web\" { policy = \"deny\" }").expect("valid rules");
        move |input: &[u8]| {
            // The rules arrive as a JSON string: valid UTF-8.
            let text = String::from_utf8_lossy(input);
            let Ok(rules) = parse_rules(&text) else { return Verdict::Refused };
            for default in [DefaultPolicy::Allow, DefaultPolicy::Deny] {
                consult(&Authorizer::from_rules(default, &[rules.clone(), other.clone()]));
            }
            Verdict::Accepted
        }
    });
}
