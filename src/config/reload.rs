//! What a reload may change: the settings that differ between the running configuration and
//! the one re-read from the files.
//!
//! A reload applies the service and check definitions (and the log level, in `daemon`); every
//! other setting takes effect only at the next start. [`restart_required_changes`] names the
//! settings that changed, so the daemon can warn about each one instead of silently ignoring
//! it (Consul reloads a few more, such as `http_config`; cairn has none of those).

use super::RuntimeConfig;

/// How the restart warning names the server port's TLS settings; a reload applies them in
/// place (`daemon::reload`) unless TLS or `verify_outgoing` is turned on or off.
pub const TLS_RPC_SETTING: &str = "TLS on the server port (turning TLS or verify_outgoing on or off)";
/// The same for the HTTPS port.
pub const TLS_HTTPS_SETTING: &str = "TLS on the HTTPS port (turning HTTPS on or off)";

/// The settings (named as config files spell them) that differ between `running` and
/// `reloaded`, other than `services`/`checks` and `log_level`, which a reload applies.
///
/// A change this list does not name (a setting added later) is still reported, as
/// `other settings`, so nothing is ever ignored silently.
pub fn restart_required_changes(running: &RuntimeConfig, reloaded: &RuntimeConfig) -> Vec<&'static str> {
    let (a, b) = (running, reloaded);
    let named: [(&'static str, bool); 42] = [
        ("node_name", a.node_name != b.node_name),
        ("node_id", a.node_id != b.node_id),
        ("datacenter", a.datacenter != b.datacenter),
        ("domain", a.domain != b.domain),
        ("alt_domain", a.alt_domain != b.alt_domain),
        ("server", a.server != b.server),
        ("bootstrap", a.bootstrap != b.bootstrap),
        ("bootstrap_expect", a.bootstrap_expect != b.bootstrap_expect),
        ("dev", a.dev != b.dev),
        ("data_dir", a.data_dir != b.data_dir),
        ("client_addr", a.client_addrs != b.client_addrs),
        ("bind_addr", a.bind_addr != b.bind_addr),
        ("advertise_addr", a.advertise_addr != b.advertise_addr),
        ("ports", a.ports != b.ports),
        ("log_json", a.log_json != b.log_json),
        ("log_file (and log_rotate_*)", a.log_file != b.log_file),
        ("telemetry", a.telemetry != b.telemetry),
        ("enable_script_checks", a.enable_script_checks != b.enable_script_checks),
        ("enable_local_script_checks", a.enable_local_script_checks != b.enable_local_script_checks),
        ("retry_join", a.retry_join != b.retry_join),
        ("retry_interval", a.retry_interval_s != b.retry_interval_s),
        ("retry_max", a.retry_max_attempts != b.retry_max_attempts),
        ("rejoin_after_leave", a.rejoin_after_leave != b.rejoin_after_leave),
        ("pid_file", a.pid_file != b.pid_file),
        ("ui_config.enabled", a.ui != b.ui),
        ("ui_config.dir", a.ui_dir != b.ui_dir),
        ("raft timing (performance.raft_multiplier, raft.*)", a.raft != b.raft),
        ("autopilot", a.autopilot != b.autopilot),
        ("limits", a.limits != b.limits),
        ("default_query_time", a.default_query_time_s != b.default_query_time_s),
        ("max_query_time", a.max_query_time_s != b.max_query_time_s),
        ("dns_config", a.dns != b.dns),
        ("session_ttl_min", a.session_ttl_min_ms != b.session_ttl_min_ms),
        ("kv_history_versions", a.kv_history_versions != b.kv_history_versions),
        ("kv_tombstone_ttl", a.kv_tombstone_ttl_ms != b.kv_tombstone_ttl_ms),
        ("check_output_max_size", a.check_output_max_size_bytes != b.check_output_max_size_bytes),
        ("acl", a.acl_enabled != b.acl_enabled || a.acl_default_policy != b.acl_default_policy || a.acl_tokens != b.acl_tokens),
        ("gossip (encrypt, gossip_lan, reconnect_timeout, leave_on_terminate, ...)", a.gossip != b.gossip),
        (TLS_RPC_SETTING, a.tls_rpc != b.tls_rpc),
        (TLS_HTTPS_SETTING, a.tls_https != b.tls_https),
        ("primary_datacenter", a.primary_datacenter != b.primary_datacenter),
        ("node_meta", a.node_meta != b.node_meta),
    ];
    let mut changed: Vec<&'static str> = named.iter().filter(|(_, differs)| *differs).map(|(name, _)| *name).collect();
    // Whatever the list above misses: compare the rest of the value as a whole.
    let mut running_rest = running.clone();
    let mut reloaded_rest = reloaded.clone();
    for config in [&mut running_rest, &mut reloaded_rest] {
        config.services.clear();
        config.checks.clear();
    }
    reloaded_rest.log_level = running_rest.log_level;
    if changed.is_empty() && running_rest != reloaded_rest {
        changed.push("other settings");
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::restart_required_changes;

    fn dev_config(extra: &[&str]) -> super::RuntimeConfig {
        let mut args = vec!["-dev".to_string(), "-node=n1".to_string()];
        args.extend(extra.iter().map(ToString::to_string));
        crate::config::load(&args).expect("dev config").config
    }

    #[test]
    fn only_settings_a_reload_cannot_apply_are_named() {
        let running = dev_config(&[]);
        assert!(restart_required_changes(&running, &running.clone()).is_empty());
        let mut reloaded = dev_config(&["-log-level=debug"]);
        reloaded.services = vec![crate::config::ConfigDefinition { source: "web.json".into(), definition: serde_json::json!({"name": "web"}) }];
        assert!(restart_required_changes(&running, &reloaded).is_empty(), "services and log_level are applied by the reload");
        let reloaded = dev_config(&["-http-port=18500", "-node-meta=rack:r1"]);
        assert_eq!(restart_required_changes(&running, &reloaded), vec!["ports", "node_meta"]);
    }
}
