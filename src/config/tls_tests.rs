//! Security settings: the server port's TLS keys, and the ones cairn refuses to start with.

use super::*;

/// Security settings cairn cannot honour yet stop the agent with a clear error instead of an
/// "unknown key ignored" warning (or, for ACLs and HTTPS, instead of running without them).
#[test]
fn unhonoured_security_settings_are_errors() {
    let refused = [
        (r#"{"acl":{"enabled":true,"msp_disable_bootstrap":true}}"#, "acl.msp_disable_bootstrap"),
        (r#"{"acl":{"tokens":{"managed_service_provider":[]}}}"#, "acl.tokens.managed_service_provider"),
        (r#"{"tls":{"https":{"verify_outgoing":true}}}"#, "tls.https.verify_outgoing"),
        (r#"{"tls":{"grpc":{}}}"#, "gRPC"),
        (r#"{"tls_cipher_suites":"TLS_AES_128_GCM_SHA256"}"#, "tls_cipher_suites"),
        (r#"{"tls":{"internal_rpc":{"use_auto_cert":true}}}"#, "tls.internal_rpc.use_auto_cert"),
        (r#"{"auto_encrypt":{"tls":true}}"#, "auto_encrypt"),
    ];
    for (contents, needle) in refused {
        let error = load_files(&[("security.json", contents)], &["-dev"]).err().unwrap_or_else(|| panic!("{contents} loaded"));
        let message = error.to_string();
        assert!(message.contains(needle) && message.contains("refusing to start"), "{contents}: {message}");
    }
    // Client agents resolve tokens through the servers (`agent::acl_client`).
    assert!(load_files(&[("acl.json", r#"{"acl":{"enabled":true}}"#)], &["-data-dir=/tmp/cairn-acl-client"]).is_ok());
    assert!(load_files(&[("acl.json", r#"{"acl":{"enabled":true,"default_policy":"deny"}}"#)], &["-dev"]).is_ok());
    let bad = load_files(&[("acl.json", r#"{"acl":{"enabled":true,"down_policy":"maybe"}}"#)], &["-dev"]);
    assert!(bad.err().expect("a bad down_policy is refused").to_string().contains("acl.down_policy"));
    let error = load_err(&["-dev", "-https-port=8501"]).to_string();
    assert!(error.contains("ports.https needs a certificate"), "{error}");
    let https = r#"{"ports":{"https":8501},"verify_incoming_https":true,"ca_file":"/ca.pem","tls":{"https":{"cert_file":"/c.pem","key_file":"/k.pem"}}}"#;
    let config = config_from(&[("https.json", https)], &["-dev"]);
    let tls = config.tls_https.expect("https tls");
    assert!(tls.verify_incoming && tls.cert_file.is_some() && config.tls_rpc.as_ref().is_some_and(|rpc| !rpc.verify_incoming));
    // Disabled values are fine, and a key that merely shares a prefix is no security key.
    let fine = r#"{"ports":{"https":-1},"acl":{"enabled":false},"tlsfoo":1}"#;
    let loaded = load_files(&[("fine.json", fine)], &["-dev"]).expect("load");
    assert!(warned(&loaded.warnings, "tlsfoo"));
}

/// The server port's TLS keys merge as Consul's (`internal_rpc` over `defaults` over the
/// legacy top level) and follow Consul's rules.
#[test]
fn server_port_tls_settings_merge_and_validate() {
    let files = r#"{"ca_file":"/legacy/ca.pem","verify_incoming":false,
        "tls":{"defaults":{"cert_file":"/d/cert.pem","key_file":"/d/key.pem","verify_incoming":true},
               "internal_rpc":{"verify_server_hostname":true,"tls_min_version":"TLSv1_3"}}}"#;
    let tls = config_from(&[("tls.json", files)], &["-dev"]).tls_rpc.expect("tls set");
    assert_eq!(tls.ca_file.as_deref(), Some(std::path::Path::new("/legacy/ca.pem")));
    assert_eq!(tls.cert_file.as_deref(), Some(std::path::Path::new("/d/cert.pem")));
    assert!(tls.verify_incoming, "tls.defaults wins over the legacy key");
    assert!(tls.verify_server_hostname && tls.verify_outgoing, "verify_server_hostname enables verify_outgoing");
    assert_eq!(tls.min_version, crate::config::tls::TlsMinVersion::Tls13);
    assert!(config_from(&[("none.json", "{}")], &["-dev"]).tls_rpc.is_none());
    let refused = [
        (r#"{"verify_incoming":true}"#, "no CA certificate"),
        (r#"{"tls":{"defaults":{"verify_outgoing":true}}}"#, "no CA certificate"),
        (r#"{"ca_file":"/ca.pem","verify_incoming":true}"#, "no Cert/Key pair"),
        (r#"{"cert_file":"/c.pem"}"#, "set together"),
        (r#"{"tls_min_version":"TLSv1_0"}"#, "TLSv1_2 and TLSv1_3 only"),
    ];
    for (contents, needle) in refused {
        let error = load_files(&[("tls.json", contents)], &["-dev"]).err().unwrap_or_else(|| panic!("{contents} loaded"));
        assert!(error.to_string().contains(needle), "{contents}: {error}");
    }
}
