//! Tidy checks on the source tree itself: every file documents itself, stays a readable size,
//! and modules only use the modules the layer table in ARCHITECTURE.md allows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Largest source file we accept (lines); the style target is about 500.
const SOURCE_FILE_LINES_MAX: usize = 700;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files
}

#[test]
fn every_source_file_starts_with_a_module_doc_and_stays_small() {
    for file in sources() {
        let text = std::fs::read_to_string(&file).expect("read source");
        assert!(text.starts_with("//!"), "{} must start with a //! doc comment", file.display());
        let lines = text.lines().count();
        assert!(lines <= SOURCE_FILE_LINES_MAX, "{} has {lines} lines (max {SOURCE_FILE_LINES_MAX})", file.display());
    }
}

/// Modules every module may use besides its row (the layer table's last line).
const USABLE_BY_EVERY_MODULE: [&str; 1] = ["telemetry"];

/// The layer table: which top-level modules each module may `use crate::` from.
fn layer_table() -> BTreeMap<&'static str, &'static [&'static str]> {
    BTreeMap::from([
        ("catalog", &[][..]),
        ("bexpr", &[][..]),
        ("acl", &[][..]),
        ("config", &[][..]),
        ("store", &[][..]),
        ("checks", &[][..]),
        ("dns", &[][..]),
        ("ui", &[][..]),
        ("telemetry", &[][..]),
        ("tls", &["config"][..]),
        ("rpc", &["tls"][..]),
        ("gossip", &[][..]),
        ("watch", &["catalog"][..]),
        ("raft", &["catalog", "store", "watch", "rpc"][..]),
        ("agent", &["catalog", "raft", "checks", "store", "config", "rpc", "gossip", "watch", "tls", "acl"][..]),
        ("http", &["agent", "catalog", "bexpr", "config", "checks", "raft", "ui", "watch", "rpc", "gossip", "tls", "acl"][..]),
        ("daemon", &["agent", "http", "dns", "raft", "catalog", "config", "rpc", "tls"][..]),
        ("cli", &["config", "daemon", "raft", "gossip", "tls"][..]),
        // Test-only: the golden bytes of every encoding, built from the fuzzer's samples.
        ("golden", &["catalog", "raft", "rpc", "agent", "fuzz"][..]),
        // Test-only: the fuzzer feeds every module's decoders.
        (
            "fuzz",
            &["catalog", "bexpr", "acl", "config", "store", "checks", "dns", "ui", "tls", "rpc", "gossip", "watch", "raft", "agent", "http", "daemon", "cli"][..],
        ),
    ])
}

#[test]
fn modules_only_use_what_the_layer_table_allows() {
    let table = layer_table();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for file in sources() {
        let relative = file.strip_prefix(&src).expect("under src");
        let module = relative.components().next().and_then(|c| c.as_os_str().to_str()).unwrap_or("").trim_end_matches(".rs");
        let Some(allowed) = table.get(module) else { continue };
        let text = std::fs::read_to_string(&file).expect("read source");
        for (number, line) in text.lines().enumerate() {
            let mut rest = line;
            while let Some(at) = rest.find("crate::") {
                let after = &rest[at + "crate::".len()..];
                let used: String = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                let everyones = USABLE_BY_EVERY_MODULE.contains(&used.as_str());
                if !used.is_empty() && used != module && !allowed.contains(&used.as_str()) && !everyones {
                    panic!("{}:{}: `{module}` may not use `crate::{used}` (see the layer table in ARCHITECTURE.md)", file.display(), number + 1);
                }
                rest = &after[used.len()..];
            }
        }
    }
}

#[test]
fn agent_toml_sample_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("agent.toml");
    let args = vec![format!("-config-file={}", path.display()), "-dev".to_string()];
    let loaded = cairn::config::load(&args).expect("agent.toml parses");
    assert!(loaded.warnings.is_empty(), "agent.toml has unknown keys: {:?}", loaded.warnings);
}

/// Handlers that Consul serves without an ACL check, by (file, function): the datacenter
/// list, the version, the Raft status, and the ACL endpoints that take
/// no token (bootstrap, login) or check it themselves.
const HANDLERS_WITHOUT_AUTHZ: [(&str, &str); 11] = [
    // Middleware, not handlers.
    ("route_timers.rs", "time_request"),
    ("forward.rs", "leader_reads"),
    ("body_deadline.rs", "with_deadline"),
    ("host.rs", "check"),
    ("catalog.rs", "datacenters"),
    ("coordinate.rs", "datacenters"),
    ("agent.rs", "version"),
    ("status.rs", "leader"),
    ("status.rs", "peers"),
    ("acl.rs", "bootstrap"),
    ("acl.rs", "login"),
];

/// Every HTTP handler takes the `Authz` extractor (and so a request's token is resolved and
/// checked before it runs), except the few Consul leaves open, listed above.
#[test]
fn every_http_handler_takes_the_request_token() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        if !file.ends_with(".rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (at, _) in text.match_indices("pub(super) async fn ") {
            let rest = &text[at + "pub(super) async fn ".len()..];
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            let signature = &rest[..rest.find('{').unwrap_or(rest.len())];
            let exempt = HANDLERS_WITHOUT_AUTHZ.contains(&(file.as_str(), name.as_str()));
            // A handler takes axum's extractors (`State(..)`); helpers take `&AppState`.
            let handler = signature.contains("State(");
            if handler && !signature.contains("Authz") && !exempt {
                missing.push(format!("{file}: {name}"));
            }
        }
    }
    assert!(missing.is_empty(), "HTTP handlers without the Authz extractor: {missing:?}");
}
