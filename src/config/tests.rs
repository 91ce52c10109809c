//! Tests for flag parsing, file loading, merging, defaults and validation.
//!
//! Files are written to throwaway `tempfile` directories; the only fixed path
//! read is the shipped `agent.toml` next to Cargo.toml.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::recursors::RecursorStrategy;
use super::{ConfigError, LoadedConfig, LogLevel, Ports, RuntimeConfig, load, parse_go_duration};

fn load_args(args: &[&str]) -> Result<LoadedConfig, ConfigError> {
    load(&args.iter().map(ToString::to_string).collect::<Vec<_>>())
}

fn load_ok(args: &[&str]) -> LoadedConfig {
    load_args(args).unwrap_or_else(|error| panic!("load({args:?}) failed: {error}"))
}

fn load_err(args: &[&str]) -> ConfigError {
    match load_args(args) {
        Ok(loaded) => panic!("load({args:?}) unexpectedly succeeded: {:?}", loaded.config),
        Err(error) => error,
    }
}

/// Writes each (name, contents) file into a fresh directory, then loads them as
/// `-config-file` flags in that order, followed by `args`.
fn load_files(files: &[(&str, &str)], args: &[&str]) -> Result<LoadedConfig, ConfigError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut all_args: Vec<String> = Vec::new();
    for (name, contents) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).expect("write test config");
        all_args.push(format!("-config-file={}", path.display()));
    }
    all_args.extend(args.iter().map(ToString::to_string));
    load(&all_args)
}

/// Like `load_files`, for tests that expect success and only need the config.
fn config_from(files: &[(&str, &str)], args: &[&str]) -> RuntimeConfig {
    load_files(files, args).expect("load test config").config
}

fn warned(warnings: &[String], needle: &str) -> bool {
    warnings.iter().any(|warning| warning.contains(needle))
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test ip")
}

fn manifest_file(name: &str) -> PathBuf {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    Path::new(&manifest_dir).join(name)
}

#[test]
fn defaults_match_consul() {
    let loaded = load_ok(&["-data-dir=/var/lib/cairn"]);
    let config = loaded.config;
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(config.datacenter, "dc1");
    assert_eq!(config.domain, "consul.");
    assert!(!config.server && !config.bootstrap && !config.dev && config.ui);
    assert_eq!(config.client_addrs, vec![ip("127.0.0.1")]);
    assert_eq!(config.bind_addr, ip("0.0.0.0"));
    let ports = Ports {
        http: Some(8500),
        dns: Some(8600),
        server: 8300,
        serf_lan: 8301,
        https: None,
        grpc: None,
    };
    assert_eq!(config.ports, ports);
    assert_eq!(config.log_level, LogLevel::Info);
    let raft = config.raft;
    assert_eq!(raft.raft_multiplier, 1);
    assert_eq!(raft.heartbeat_interval_ms, 100);
    assert_eq!(raft.election_timeout_min_ms, 500);
    assert_eq!(raft.election_timeout_max_ms, 1000);
    assert_eq!(raft.snapshot_threshold_entries, 16384);
    assert_eq!(raft.trailing_logs_entries, 10240);
    let limits = config.limits;
    assert_eq!(limits.kv_max_value_size_bytes, 524_288);
    assert_eq!(limits.txn_max_req_len_bytes, 524_288);
    assert_eq!(limits.http_body_bytes_max, 524_288 + 65_536);
    assert_eq!(limits.http_max_conns_per_client, 200);
    assert_eq!(config.default_query_time_s, 300);
    assert_eq!(config.max_query_time_s, 600);
    assert_eq!(config.session_ttl_min_ms, 10_000);
    assert_eq!(config.check_output_max_size_bytes, 4096);
    assert_eq!(config.check_update_interval_ms, 300_000);
    assert!(config.dns.allow_stale && !config.dns.only_passing);
    assert_eq!(config.dns.udp_answer_limit, 3);
    assert_eq!(config.dns.a_record_limit, 0);
    assert_eq!(config.acl_default_policy, "allow");
    assert!(!config.node_name.is_empty());
}

#[test]
fn dev_mode_is_a_fast_single_server() {
    let config = load_ok(&["-dev"]).config;
    assert!(config.dev && config.server && config.bootstrap);
    assert_eq!(config.data_dir, None);
    assert_eq!(config.client_addrs, vec![ip("127.0.0.1")]);
    assert_eq!(config.bind_addr, ip("127.0.0.1"));
    assert_eq!(config.log_level, LogLevel::Info);
    assert_eq!(config.raft.raft_multiplier, 1);
    assert_eq!(config.raft.heartbeat_interval_ms, 50);
    assert_eq!(config.raft.election_timeout_min_ms, 150);
    assert_eq!(config.raft.election_timeout_max_ms, 300);
}

#[test]
fn files_merge_in_order_and_flags_win() {
    let files = [
        (
            "first.json",
            r#"{"datacenter":"east","retry_join":["a"],"ports":{"http":1111},"node_meta":{"x":"1"}}"#,
        ),
        (
            "second.toml",
            "datacenter = \"west\"\nretry_join = [\"b\"]\nports.dns = 2222\nnode_meta.y = \"2\"\n",
        ),
        // Consul treats null as "not set", so it must not erase "west".
        ("third.json", r#"{"datacenter":null}"#),
    ];
    let config = config_from(&files, &["-dev", "-retry-join=c"]);
    assert_eq!(config.datacenter, "west");
    assert_eq!(config.retry_join, vec!["a", "b", "c"]);
    assert_eq!(
        (config.ports.http, config.ports.dns),
        (Some(1111), Some(2222))
    );
    assert_eq!(config.node_meta.len(), 2);
    let config = config_from(&files, &["-dev", "-datacenter=North"]);
    assert_eq!(config.datacenter, "north");
}

#[test]
fn config_dir_reads_json_and_toml_sorted_and_skips_hcl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = [
        (
            "20-late.json",
            r#"{"node_name":"late","service":{"name":"web"}}"#,
        ),
        (
            "10-early.toml",
            "node_name = \"early\"\n[[services]]\nname = \"db\"\n",
        ),
        ("15-consul.hcl", "node_name = \"hcl\""),
        ("README.md", "not config"),
    ];
    for (name, contents) in files {
        std::fs::write(dir.path().join(name), contents).expect("write");
    }
    std::fs::create_dir(dir.path().join("sub.json")).expect("subdir");
    let config_dir = format!("-config-dir={}", dir.path().display());
    let loaded = load_ok(&["-dev", &config_dir]);
    assert_eq!(loaded.config.node_name, "late");
    let names: Vec<&str> = loaded
        .config
        .services
        .iter()
        .filter_map(|service| service.definition["name"].as_str())
        .collect();
    assert_eq!(names, vec!["db", "web"]);
    assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
    assert!(
        warned(&loaded.warnings, "skipping config file")
            && warned(&loaded.warnings, "15-consul.hcl: hcl")
    );
    assert!(warned(&loaded.warnings, "README.md"));
    // -config-format overrides the extension, as in Consul.
    let loaded = load_files(
        &[("conf.txt", r#"{"node_name":"txt"}"#)],
        &["-dev", "-config-format=json"],
    );
    assert_eq!(loaded.expect("load").config.node_name, "txt");
}

#[test]
fn singular_service_and_check_definitions_append_across_files() {
    let files = [
        (
            "a.json",
            r#"{"service":{"name":"a"},"check":{"name":"ca"}}"#,
        ),
        (
            "b.json",
            r#"{"service":{"name":"b"},"checks":[{"name":"cb"},{"name":"cc"}]}"#,
        ),
    ];
    let config = config_from(&files, &["-dev"]);
    assert_eq!((config.services.len(), config.checks.len()), (2, 3));
    assert_eq!(config.services[1].definition["name"], "b");
    assert!(config.services[1].source.ends_with("b.json"));
}

#[test]
fn py_consul_test_config_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let contents = r#"{"ports":{"https":-1,"dns":-1,"grpc_tls":-1},"performance":{"raft_multiplier":1},"enable_script_checks":true}"#;
    std::fs::write(dir.path().join("config.json"), contents).expect("write");
    let config_dir = format!("-config-dir={}", dir.path().display());
    let loaded = load_ok(&[
        "-data-dir=/x",
        &config_dir,
        "-dev",
        "-client=0.0.0.0",
        "-log-level",
        "trace",
    ]);
    let config = loaded.config;
    assert_eq!(
        (config.ports.dns, config.ports.https, config.ports.http),
        (None, None, Some(8500))
    );
    assert_eq!(config.client_addrs, vec![ip("0.0.0.0")]);
    assert_eq!(config.log_level, LogLevel::Trace);
    assert!(config.enable_script_checks && config.dev && config.server);
    assert_eq!(config.data_dir, Some(PathBuf::from("/x")));
    assert_eq!(config.raft.election_timeout_min_ms, 150);
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(loaded.warnings[0].contains("ports.grpc_tls"));
}

#[test]
fn acl_config_and_legacy_token_names() {
    let modern = r#"{"primary_datacenter":"dc1","acl":{"enabled":false,"tokens":{"initial_management":"abc","agent":"ag"}}}"#;
    let config = config_from(&[("acl.json", modern)], &["-dev"]);
    assert!(!config.acl_enabled);
    assert_eq!(config.primary_datacenter.as_deref(), Some("dc1"));
    assert_eq!(config.acl_tokens.initial_management.as_deref(), Some("abc"));
    assert_eq!(config.acl_tokens.agent.as_deref(), Some("ag"));
    assert!(
        !format!("{config:?}").contains("abc"),
        "tokens must not appear in Debug output"
    );
    let legacy = r#"{"acl_master_token":"old","acl_token":"anon","acl_default_policy":"deny"}"#;
    let loaded = load_files(&[("legacy.json", legacy)], &["-dev"]).expect("load");
    assert_eq!(loaded.config.acl_default_policy, "deny");
    assert_eq!(
        loaded.config.acl_tokens.initial_management.as_deref(),
        Some("old")
    );
    assert_eq!(loaded.config.acl_tokens.default.as_deref(), Some("anon"));
    assert_eq!(loaded.warnings.len(), 3, "{:?}", loaded.warnings);
    let master = r#"{"acl":{"tokens":{"master":"m"}}}"#;
    let config = config_from(&[("master.json", master)], &["-dev"]);
    assert_eq!(config.acl_tokens.initial_management.as_deref(), Some("m"));
}

#[test]
fn go_durations_parse_like_go() {
    let cases = [
        ("10s", Duration::from_secs(10)),
        ("1m30s", Duration::from_secs(90)),
        ("15.0s", Duration::from_secs(15)),
        ("100ms", Duration::from_millis(100)),
        ("1.5h", Duration::from_secs(5400)),
        ("0", Duration::ZERO),
        ("0.3s", Duration::from_millis(300)),
        ("2us", Duration::from_micros(2)),
        ("3µs", Duration::from_micros(3)),
        ("+7ns", Duration::from_nanos(7)),
        (".5s", Duration::from_millis(500)),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_go_duration(text), Ok(expected), "{text}");
    }
    for bad in [
        "",
        "10",
        "-1s",
        "1x",
        "s",
        "1.2.3s",
        "1s2",
        "99999999999999999999h",
        "3000000h",
    ] {
        assert!(parse_go_duration(bad).is_err(), "{bad:?} should fail");
    }
}

#[test]
fn file_values_are_typed_and_converted() {
    let toml = r#"
log_level = "WARN"
session_ttl_min = "500ms"
default_query_time = "1m30s"
dns_config.node_ttl = "15.0s"
dns_config.service_ttl = { "*" = "5s", "web" = "10s", "db-*" = "1m" }
alt_domain = "example.internal"
limits.txn_max_req_len = 1048576
raft.heartbeat_interval = "20ms"
raft.election_timeout_min = "100ms"
raft.election_timeout_max = "200ms"
bootstrap_expect = 1
server = true
domain = "cairn"
node_id = "ADF4238A-882B-9DDC-4A9D-5B6758E4159E"
"#;
    let loaded = load_files(&[("typed.toml", toml)], &["-data-dir=/d"]).expect("load");
    let config = loaded.config;
    assert_eq!(config.log_level, LogLevel::Warn);
    assert_eq!(
        (config.session_ttl_min_ms, config.default_query_time_s),
        (500, 90)
    );
    assert_eq!(config.dns.node_ttl_s, 15);
    let service_ttls: Vec<(&str, u32)> = config.dns.service_ttls_s.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(service_ttls, [("*", 5), ("db-*", 60), ("web", 10)]);
    assert_eq!(config.alt_domain.as_deref(), Some("example.internal."));
    assert_eq!(config.limits.http_body_bytes_max, 1_048_576 + 65_536);
    assert_eq!(
        (
            config.raft.heartbeat_interval_ms,
            config.raft.election_timeout_max_ms
        ),
        (20, 200)
    );
    assert!(config.bootstrap && config.bootstrap_expect == 0);
    assert_eq!(config.domain, "cairn.");
    assert_eq!(
        config.node_id.as_deref(),
        Some("adf4238a-882b-9ddc-4a9d-5b6758e4159e")
    );
    // bootstrap_expect = 1 warns; per-service TTLs do not (they are supported).
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
}

#[test]
fn type_errors_name_the_file_and_key() {
    let cases = [
        ("port.json", r#"{"ports":{"http":"abc"}}"#, "ports.http"),
        ("big.json", r#"{"ports":{"dns":70000}}"#, "ports.dns"),
        (
            "ttl.json",
            r#"{"dns_config":{"service_ttl":{"*":"soon"}}}"#,
            "dns_config.service_ttl.*",
        ),
        ("bool.toml", "server = \"yes\"", "server"),
        (
            "addr.json",
            r#"{"bind_addr":"{{ GetPrivateIP }}"}"#,
            "bind_addr",
        ),
        ("svc.json", r#"{"services":["web"]}"#, "services"),
        ("meta.json", r#"{"node_meta":{"a":1}}"#, "node_meta.a"),
    ];
    for (name, contents, expected_key) in cases {
        match load_files(&[(name, contents)], &["-dev"]) {
            Err(ConfigError::InvalidKey { path, key, .. }) => {
                assert!(path.ends_with(name), "{name}: {}", path.display());
                assert_eq!(key, expected_key, "{name}");
            }
            other => panic!("{name}: unexpected result {other:?}"),
        }
    }
    let broken = load_files(&[("broken.json", "{\"server\": ")], &["-dev"]);
    assert!(matches!(broken, Err(ConfigError::Parse { .. })));
    assert!(matches!(
        load_err(&["-dev", "-config-file=/nonexistent/x.json"]),
        ConfigError::Read { .. }
    ));
}

#[test]
fn unknown_keys_warn_with_their_path() {
    let consul = r#"{"telemetry":{"x":1},"dns_config":{"nope":true}}"#;
    let warnings = load_files(&[("consul.json", consul)], &["-dev"])
        .expect("load")
        .warnings;
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warned(&warnings, "`telemetry.x`"));
    assert!(warned(&warnings, "`dns_config.nope`"));
}

#[test]
fn validation_errors_use_consul_wording() {
    let cases: [(&[&str], &str); 9] = [
        (&[], "data_dir is required (set -data-dir or use -dev)"),
        (
            &[
                "-data-dir=/d",
                "-server",
                "-bootstrap",
                "-bootstrap-expect=3",
            ],
            "mutually exclusive",
        ),
        (
            &["-data-dir=/d", "-bootstrap-expect=3"],
            "'bootstrap_expect > 0' requires 'server = true'",
        ),
        (
            &["-data-dir=/d", "-bootstrap"],
            "'bootstrap = true' requires 'server = true'",
        ),
        (&["-dev", "-bootstrap-expect=3"], "not allowed in dev mode"),
        (
            &["-dev", "-http-port=8600"],
            "ports.http and ports.dns both use port 8600",
        ),
        (&["-dev", "-datacenter=dc 1"], "datacenter cannot be"),
        (&["-dev", "-node-id=not-a-uuid"], "must be a uuid"),
        (&["-dev", "-advertise=0.0.0.0"], "advertise_addr"),
    ];
    for (args, expected) in cases {
        let message = load_err(args).to_string();
        assert!(message.contains(expected), "{args:?}: {message}");
    }
    let file_cases = [
        (
            r#"{"performance":{"raft_multiplier":11}}"#,
            "between 1 and 10",
        ),
        (
            r#"{"ports":{"dns":-1,"http":8301}}"#,
            "ports.http and ports.serf_lan",
        ),
        (
            r#"{"ports":{"server":-1}}"#,
            "ports.server cannot be disabled",
        ),
        (
            r#"{"raft":{"heartbeat_interval":"2s","election_timeout_min":"1s"}}"#,
            "raft.heartbeat_interval",
        ),
        (
            r#"{"acl":{"default_policy":"maybe"}}"#,
            "acl.default_policy",
        ),
    ];
    for (contents, expected) in file_cases {
        let message = load_files(&[("bad.json", contents)], &["-dev"])
            .expect_err(contents)
            .to_string();
        assert!(message.contains(expected), "{contents}: {message}");
    }
}

#[test]
fn sample_agent_toml_loads_without_warnings() {
    let path = manifest_file("agent.toml");
    let loaded = load_ok(&[&format!("-config-file={}", path.display())]);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let mut expected = load_ok(&["-data-dir=/var/lib/cairn"]).config;
    expected.node_name.clone_from(&loaded.config.node_name);
    assert_eq!(loaded.config, expected, "agent.toml must show the defaults");
}

/// Every `#key = value` line in agent.toml is an optional key: uncommented, all must load cleanly.
#[test]
fn sample_agent_toml_optional_keys_are_all_supported() {
    let text = std::fs::read_to_string(manifest_file("agent.toml")).expect("read agent.toml");
    let uncommented: String = text
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if !rest.is_empty() && !rest.starts_with([' ', '#']) => rest,
            _ => line,
        })
        .fold(String::new(), |all, line| all + line + "\n");
    let loaded =
        load_files(&[("all.toml", &uncommented)], &[]).expect("load uncommented agent.toml");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let config = loaded.config;
    assert_eq!(config.node_name, "web-01");
    assert_eq!((config.services.len(), config.checks.len()), (1, 1));
    assert_eq!(config.raft.heartbeat_interval_ms, 500);
    assert!(
        config.acl_tokens.default.is_some()
            && config.gossip.encrypt.is_some()
            && config.pid_file.is_some()
    );
}

#[test]
fn kv_settings_are_read_and_bad_ones_refused() {
    let config = config_from(&[("a.toml", "kv_history_versions = 3\nkv_tombstone_ttl = \"2m\"\n")], &["-dev"]);
    assert_eq!((config.kv_history_versions, config.kv_tombstone_ttl_ms), (3, 120_000));
    for bad in ["kv_tombstone_ttl = \"0s\"\n", "kv_tombstone_ttl = \"soon\"\n", "kv_history_versions = -1\n"] {
        assert!(load_files(&[("a.toml", bad)], &["-dev"]).is_err(), "{bad}");
    }
}

#[test]
fn gossip_settings_follow_consul_and_bad_ones_are_refused() {
    let dev = config_from(&[], &["-dev"]).gossip;
    assert_eq!((dev.lan.probe_interval_ms, dev.lan.suspicion_mult), (100, 3));
    assert!(!dev.leave_on_terminate && dev.skip_leave_on_interrupt, "servers stay on signals by default");
    let client = config_from(&[("a.json", r#"{"data_dir":"/tmp/x","gossip_lan":{"probe_interval":"2s","probe_timeout":"1s"},"reconnect_timeout":"10m"}"#)], &[]).gossip;
    assert_eq!((client.lan.probe_interval_ms, client.lan.probe_timeout_ms, client.lan.suspicion_mult), (2_000, 1_000, 4));
    assert_eq!(client.reconnect_timeout_ms, 600_000);
    assert!(client.leave_on_terminate && !client.skip_leave_on_interrupt, "clients leave on signals by default");
    assert!(client.encrypt_verify_incoming && client.encrypt_verify_outgoing);
    for bad in [
        r#"{"encrypt":"not base64!"}"#,
        r#"{"encrypt":"c2hvcnQ="}"#,
        r#"{"reconnect_timeout":"1m"}"#,
        r#"{"gossip_lan":{"probe_interval":"1s","probe_timeout":"2s"}}"#,
        r#"{"gossip_lan":{"suspicion_mult":0}}"#,
    ] {
        assert!(load_files(&[("a.json", bad)], &["-dev"]).is_err(), "{bad}");
    }
}

/// Consul's `check_update_interval`: read as a Go duration ("0s" turns the deferral off);
/// a value that is no duration stops the agent.
#[test]
fn check_update_interval_is_read_and_bad_ones_refused() {
    let config = config_from(&[("a.toml", "check_update_interval = \"30s\"\n")], &["-dev"]);
    assert_eq!(config.check_update_interval_ms, 30_000);
    let off = config_from(&[("a.json", r#"{"check_update_interval":"0s"}"#)], &["-dev"]);
    assert_eq!(off.check_update_interval_ms, 0);
    for bad in ["check_update_interval = \"soon\"\n", "check_update_interval = 5\n"] {
        assert!(load_files(&[("a.toml", bad)], &["-dev"]).is_err(), "{bad}");
    }
}

/// Consul's `recursors` with `dns_config.recursor_strategy` and `recursor_timeout`: every
/// address is read at load time, and a bad one (or a template, or an unknown strategy) stops
/// the agent instead of being ignored.
#[test]
fn recursor_settings_are_read_and_bad_ones_refused() {
    let defaults = config_from(&[], &["-dev"]).dns;
    assert!(defaults.recursors.is_empty());
    assert_eq!((defaults.recursor_strategy, defaults.recursor_timeout_ms), (RecursorStrategy::Sequential, 2_000));
    let json = r#"{"recursors":["10.0.0.1","[::1]:5353"],"dns_config":{"recursor_strategy":"random","recursor_timeout":"250ms"}}"#;
    let dns = config_from(&[("a.json", json)], &["-dev", "-recursor=resolver.example.org:54"]).dns;
    let recursors: Vec<String> = dns.recursors.iter().map(ToString::to_string).collect();
    assert_eq!(recursors, ["10.0.0.1:53", "[::1]:5353", "resolver.example.org:54"]);
    assert_eq!((dns.recursor_strategy, dns.recursor_timeout_ms), (RecursorStrategy::Random, 250));
    for (bad, expected) in [
        (r#"{"recursors":["10.0.0.1:99999"]}"#, "recursors: invalid address"),
        (r#"{"recursors":["{{ GetPrivateIP }}"]}"#, "go-sockaddr templates are not supported"),
        (r#"{"dns_config":{"recursor_strategy":"fastest"}}"#, "recursor_strategy"),
        (r#"{"dns_config":{"recursor_timeout":"0s"}}"#, "recursor_timeout"),
        (r#"{"dns_config":{"recursor_timeout":"soon"}}"#, "recursor_timeout"),
    ] {
        let message = load_files(&[("a.json", bad)], &["-dev"]).expect_err(bad).to_string();
        assert!(message.contains(expected), "{bad}: {message}");
    }
    let message = load_err(&["-dev", "-recursor=not a host"]).to_string();
    assert!(message.contains("recursors: invalid address"), "{message}");
}

#[path = "tls_tests.rs"]
mod tls_tests;

#[path = "flags_tests.rs"]
mod flags_tests;
