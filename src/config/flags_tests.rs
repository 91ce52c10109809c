//! Go-style flags: their forms, unknown flags, and bad values.

use super::*;

#[test]
fn flag_forms_follow_go_semantics() {
    let forms: [&[&str]; 4] = [
        &["-bootstrap-expect=3", "-data-dir=/d", "-server"],
        &["-bootstrap-expect", "3", "-data-dir", "/d", "-server=true"],
        &["--bootstrap-expect=3", "--data-dir=/d", "--server"],
        &[
            "--bootstrap-expect",
            "3",
            "--data-dir",
            "/d",
            "--server",
            "-dev=false",
        ],
    ];
    for args in forms {
        let config = load_ok(args).config;
        assert_eq!(config.bootstrap_expect, 3, "{args:?}");
        assert_eq!(config.data_dir, Some(PathBuf::from("/d")), "{args:?}");
        assert!(config.server && !config.dev, "{args:?}");
    }
    // A bare boolean never swallows the next flag; `-http-port -1` takes the negative value.
    let config = load_ok(&["-dev", "-log-json", "-http-port", "-1", "-ui=false"]).config;
    assert!(config.dev && config.log_json && !config.ui);
    assert_eq!(config.ports.http, None);
    let config = load_ok(&["-dev", "-client", "0.0.0.0 ::1", "-node-meta", "rack:r1:a"]).config;
    assert_eq!(config.client_addrs, vec![ip("0.0.0.0"), ip("::1")]);
    assert_eq!(
        config.node_meta.get("rack").map(String::as_str),
        Some("r1:a")
    );
    let config = load_ok(&["-dev", "-join=a", "-retry-join", "b", "-recursor=8.8.8.8"]).config;
    assert_eq!(config.retry_join, vec!["a", "b"]);
    let recursors: Vec<String> = config.dns.recursors.iter().map(ToString::to_string).collect();
    assert_eq!(recursors, ["8.8.8.8:53"]);
}

#[test]
fn unknown_flags_warn_and_consume_a_following_word() {
    let loaded = load_ok(&[
        "-dev",
        "-telemetry-thing",
        "value",
        "-serf-wan-port=8302",
        "-syslog",
        "-server",
    ]);
    assert!(loaded.config.server);
    let warnings = loaded.warnings.join("\n");
    for name in ["-telemetry-thing", "-serf-wan-port", "-syslog"] {
        assert!(warnings.contains(name), "{warnings}");
    }
    let loaded = load_ok(&["-dev", "-hcl", "ports { http = 1 }"]);
    assert!(warned(&loaded.warnings, "hcl"));
}

#[test]
fn bad_flags_are_errors_naming_the_flag() {
    let error = load_err(&["-dev", "-data-dir"]);
    assert!(
        matches!(error, ConfigError::MissingFlagValue { ref flag } if flag == "data-dir"),
        "{error}"
    );
    assert!(matches!(
        load_err(&["-data-dir", "-dev"]),
        ConfigError::MissingFlagValue { .. }
    ));
    assert!(
        load_err(&["-dev", "-http-port=abc"])
            .to_string()
            .contains("-http-port")
    );
    let invalid_values: [&[&str]; 6] = [
        &["-dev", "-server=maybe"],
        &["-dev", "-log-level=loud"],
        &["-dev", "-bind=nowhere"],
        &["-dev", "-retry-interval=10"],
        &["-dev", "-node-meta=nocolon"],
        &["-dev", "-http-port=70000"],
    ];
    for args in invalid_values {
        assert!(
            matches!(load_err(args), ConfigError::InvalidFlagValue { .. }),
            "{args:?}"
        );
    }
    assert!(matches!(
        load_err(&["-dev", "stray"]),
        ConfigError::UnexpectedArgument { .. }
    ));
    assert!(matches!(
        load_err(&["-dev", "---x"]),
        ConfigError::BadFlagSyntax { .. }
    ));
}
