//! Reloading the configuration, as Consul's `ReloadConfig`: SIGHUP to the daemon and
//! `PUT /v1/agent/reload` (which `cairn reload` calls) both land in [`Reloader::run`], one
//! reload at a time.
//!
//! A reload re-reads the same `-config-file`/`-config-dir` paths with the same flags, decodes
//! the service and check definitions (`http::definitions`), and lets the agent apply the
//! difference (`agent::config_defs`). The log level is switched in place (a `tracing` reload
//! handle), as Consul does, and so are TLS certificates, CAs and `verify_*` settings of the
//! server port and the HTTPS port (`tls::AgentTls::replace`), read again from their files even
//! when the paths did not change, so renewed certificates are picked up. Turning TLS (or
//! `verify_outgoing`) on or off, and every other setting that changed, only takes effect at the
//! next start, and the reload says so in a warning that names them. An invalid configuration,
//! or a certificate file that cannot be read, fails the reload before anything changes.

use std::sync::Arc;

use tokio::signal::unix::Signal;
use tokio::sync::{mpsc, watch};

use crate::agent::Agent;
use crate::agent::config_defs::{ConfigDefinitions, ReloadRequest};
use crate::config::tls::TlsSettings;
use crate::config::{LogLevel, RuntimeConfig};
use crate::http::definitions::decode_definitions;
use crate::tls::AgentTls;

/// Switches the log level of the running process.
pub(super) type LogLevelSwitch = Box<dyn Fn(LogLevel) -> Result<(), String> + Send + Sync>;

/// The state a reload needs: what to re-read and what is running.
pub(super) struct Reloader {
    pub(super) agent: Arc<Agent>,
    /// The arguments after `cairn agent`, re-parsed on every reload.
    pub(super) agent_args: Vec<String>,
    /// The configuration the agent started with (the log level follows reloads).
    pub(super) running: RuntimeConfig,
    /// `None` when `CAIRN_LOG` sets the log filter, which then wins over `log_level`.
    pub(super) log_level_switch: Option<LogLevelSwitch>,
    /// The HTTPS port's TLS, when it serves (the server port's is the agent's).
    pub(super) https_tls: Option<Arc<AgentTls>>,
    /// Tells systemd a reload is under way (`RELOADING=1`, then `READY=1`).
    pub(super) notifier: Arc<super::notify::Notifier>,
}

/// A port's TLS read again by a reload, to be swapped in once nothing else can fail.
struct TlsReload {
    running: Arc<AgentTls>,
    fresh: AgentTls,
    /// The restart warning's name for these settings, now applied instead.
    setting: &'static str,
}

impl Reloader {
    /// Registers the definitions read at start, then serves reloads until shutdown. Run in
    /// the background: on a server each registration waits for a leader to sync it.
    pub(super) async fn apply_then_serve(self, definitions: ConfigDefinitions, hangup: Option<Signal>) {
        if let Err(error) = self.agent.apply_config_definitions(definitions).await {
            tracing::error!(%error, "cannot register the services and checks of the config files");
        }
        if let Some(requests) = self.agent.take_reload_requests() {
            let shutdown = self.agent.shutdown_requested();
            self.run(requests, hangup, shutdown).await;
        }
    }

    /// Serves reload requests and SIGHUP until shutdown.
    async fn run(mut self, mut requests: mpsc::Receiver<ReloadRequest>, mut hangup: Option<Signal>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let hangup_received = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            // The select only picks the event: a watch guard must not live across the reload.
            let request = tokio::select! {
                request = requests.recv() => match request {
                    Some(answer) => Some(answer),
                    None => return,
                },
                _ = hangup_received => None,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            match request {
                Some(answer) => {
                    tracing::info!("reload requested over HTTP");
                    let result = self.reload_notified().await;
                    if let Err(error) = &result {
                        tracing::error!(%error, "reload failed; nothing changed");
                    }
                    // The requester may have given up (its connection closed); nothing to tell.
                    let _ = answer.send(result);
                }
                None => {
                    tracing::info!("caught SIGHUP; reloading the configuration");
                    if let Err(error) = self.reload_notified().await {
                        tracing::error!(%error, "reload failed; nothing changed");
                    }
                }
            }
        }
    }

    /// [`Reloader::reload`] between `RELOADING=1` and `READY=1` to systemd.
    async fn reload_notified(&mut self) -> Result<(), String> {
        self.notifier.reloading();
        let result = self.reload().await;
        self.notifier.reloaded();
        result
    }

    /// One reload; the error is the message for the requester, worded like Consul's.
    async fn reload(&mut self) -> Result<(), String> {
        let args = self.agent_args.clone();
        let loaded = tokio::task::spawn_blocking(move || crate::config::load(&args))
            .await
            .map_err(|error| format!("Failed to reload configs: {error}"))?
            .map_err(|error| format!("Failed to reload configs: {error}"))?;
        for warning in &loaded.warnings {
            tracing::warn!(%warning, "configuration");
        }
        // Consul's wording: services first, then standalone checks.
        let (definitions, warnings) = decode_definitions(&loaded.config).map_err(|error| {
            let what = if error.what.starts_with("check") { "checks" } else { "services" };
            format!("Failed reloading {what}: {error}")
        })?;
        for warning in &warnings {
            tracing::warn!(%warning, "configuration");
        }
        let mut pending = crate::config::restart_required_changes(&self.running, &loaded.config);
        let tls = self.read_tls(&loaded.config)?;
        self.agent.apply_config_definitions(definitions).await.map_err(|error| format!("Failed reloading services: {error}"))?;
        for TlsReload { running, fresh, setting } in tls {
            running.replace(fresh);
            pending.retain(|name| *name != setting);
            if setting == crate::config::TLS_RPC_SETTING {
                self.running.tls_rpc = loaded.config.tls_rpc.clone();
            } else {
                self.running.tls_https = loaded.config.tls_https.clone();
            }
            tracing::info!(port = setting, "TLS certificates and settings reloaded");
        }
        let level = loaded.config.log_level;
        if level != self.running.log_level {
            match &self.log_level_switch {
                Some(switch) => {
                    switch(level)?;
                    tracing::info!(log_level = level.as_str(), "log level changed");
                    self.running.log_level = level;
                }
                None => pending.push("log_level (the CAIRN_LOG environment variable sets the log filter)"),
            }
        }
        if !pending.is_empty() {
            tracing::warn!(settings = %pending.join(", "), "these settings changed but take effect only after a restart");
        }
        tracing::info!("configuration reloaded");
        Ok(())
    }
}

impl Reloader {
    /// Reads the certificate files of each TLS port again, as the reloaded `config` names them.
    /// A port whose TLS would be turned on or off, or whose `verify_outgoing` flips (which
    /// decides the scheme of calls to servers), is left for a restart.
    fn read_tls(&self, config: &RuntimeConfig) -> Result<Vec<TlsReload>, String> {
        let server_name = crate::tls::server_name(&config.datacenter, &config.domain);
        let ports = [
            (self.agent.tls(), &self.running.tls_rpc, &config.tls_rpc, crate::config::TLS_RPC_SETTING),
            (self.https_tls.clone(), &self.running.tls_https, &config.tls_https, crate::config::TLS_HTTPS_SETTING),
        ];
        let mut reloads = Vec::new();
        for (running, was, now, setting) in ports {
            let (Some(running), Some(was), Some(now)) = (running, was, now) else { continue };
            if !same_shape(was, now) {
                continue;
            }
            let fresh = AgentTls::load(now, &server_name).map_err(|error| format!("Failed to reload TLS configuration: {error}"))?;
            reloads.push(TlsReload { running, fresh, setting });
        }
        Ok(reloads)
    }
}

/// Whether `now` can replace `was` in place: `verify_outgoing` decides whether calls to servers
/// are TLS at all, which only a restart changes.
fn same_shape(was: &TlsSettings, now: &TlsSettings) -> bool {
    was.verify_outgoing == now.verify_outgoing
}
