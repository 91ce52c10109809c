//! The daemon: everything `cairn agent` wires around an [`Agent`] — logging, the data dir,
//! listeners, the HTTP, DNS and server-port (`rpc`) servers, signals and an orderly shutdown.
//!
//! This is the composition layer above `agent`, `http` and `dns`. Listeners are bound here and
//! handed to the servers, so the servers themselves never choose addresses. The services and
//! checks of the config files are registered at start and re-applied on reload (`reload.rs`).

mod notify;
mod reload;

use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::agent::{Agent, AgentError};
use crate::catalog::model::HealthStatus;
use crate::catalog::query::aggregate_status;
use crate::config::recursors::{Recursor, RecursorHost, RecursorStrategy};
use crate::config::{LogLevel, RuntimeConfig};
use crate::telemetry::logging::LogSettings;
use crate::telemetry::{LogFileSettings, MetricsSettings, TelemetryError};
use crate::dns::{DnsAddressOwner, DnsCatalog, DnsConfig, DnsHealth, DnsInstance, DnsNode, DnsQueryResult, DnsServer};
use crate::tls::AgentTls;

/// Worker threads of the agent's runtime: the agent is IO-bound; two keep a busy disk from
/// stalling the HTTP path.
const RUNTIME_WORKER_THREADS: usize = 2;
/// How long a `-dev` server may take to become leader before start-up is reported as slow.
const DEV_LEADER_WAIT_MS: u64 = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("cannot create the dev data dir: {0}")]
    TempDir(std::io::Error),
    #[error("data_dir is required (set -data-dir or use -dev)")]
    NoDataDir,
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error(transparent)]
    Definition(#[from] crate::http::definitions::DefinitionError),
    #[error("cannot register the services and checks of the config files: {0}")]
    Definitions(AgentError),
    #[error("HTTPS: {0}")]
    Tls(crate::tls::TlsError),
    #[error(transparent)]
    Telemetry(#[from] crate::telemetry::TelemetryError),
    #[error("recursor {recursor}: cannot resolve its host name: {reason}")]
    Recursor { recursor: String, reason: String },
    #[error("Could not write pid file {path}: {source}")]
    PidFile { path: PathBuf, source: std::io::Error },
}

/// Runs an agent until it is told to stop. Blocks the calling thread. `agent_args` (the
/// arguments after `cairn agent`, which `config` was loaded from) are read again on reload.
pub fn run(config: RuntimeConfig, agent_args: Vec<String>) -> Result<(), DaemonError> {
    let log_level_switch = init_logging(&config)?;
    install_metrics(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(RUNTIME_WORKER_THREADS)
        .enable_all()
        .thread_name("cairn")
        .build()
        .map_err(DaemonError::Runtime)?;
    runtime.block_on(run_async(config, agent_args, log_level_switch))
}

/// What `cairn validate` checks beyond `config::load`, as the agent checks it before it binds
/// anything: the config files' service and check definitions, decoded and held to the rules
/// the agent keeps (with no API registrations yet). Returns the decoder's warnings.
pub fn validate_definitions(config: &RuntimeConfig) -> Result<Vec<String>, DaemonError> {
    let (definitions, warnings) = crate::http::definitions::decode_definitions(config)?;
    let scripts_allowed = config.enable_script_checks || config.enable_local_script_checks;
    crate::agent::config_defs::check_definitions(&definitions, &Default::default(), 0, scripts_allowed).map_err(DaemonError::Definitions)?;
    Ok(warnings)
}

fn level_filter(level: LogLevel) -> tracing::level_filters::LevelFilter {
    use tracing::level_filters::LevelFilter;
    match level {
        LogLevel::Trace => LevelFilter::TRACE,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
    }
}

/// Installs the global subscriber (`telemetry::logging`); returns the switch a reload uses
/// to change the log level, unless `CAIRN_LOG` sets the filter (or a subscriber was already
/// installed). A log file that cannot be opened stops the agent.
fn init_logging(config: &RuntimeConfig) -> Result<Option<reload::LogLevelSwitch>, DaemonError> {
    let file = config.log_file.as_ref().map(|file| LogFileSettings {
        path: PathBuf::from(&file.path),
        rotate_bytes: file.rotate_bytes,
        rotate_duration: Duration::from_millis(file.rotate_duration_ms),
        rotate_max_files: file.rotate_max_files,
    });
    let settings = LogSettings { level: level_filter(config.log_level), json: config.log_json, env_filter: std::env::var("CAIRN_LOG").ok(), file };
    match crate::telemetry::logging::init(settings) {
        Ok(handle) if handle.adjustable() => Ok(Some(Box::new(move |level| handle.set_level(level_filter(level))))),
        Ok(_) | Err(TelemetryError::Logging(_)) => Ok(None),
        Err(error) => Err(DaemonError::Telemetry(error)),
    }
}

/// Installs the metrics recorder with Consul's `telemetry` settings.
fn install_metrics(config: &RuntimeConfig) -> Result<(), DaemonError> {
    let telemetry = &config.telemetry;
    let settings = MetricsSettings {
        prefix: telemetry.metrics_prefix.clone(),
        hostname: telemetry.metrics_hostname.clone(),
        prometheus_retention: (telemetry.prometheus_retention_ms > 0).then(|| Duration::from_millis(telemetry.prometheus_retention_ms)),
        filter_default: telemetry.filter_default,
        prefix_filter: telemetry.prefix_filter.clone(),
    };
    crate::telemetry::install_metrics(settings).map_err(DaemonError::Telemetry)
}

async fn run_async(config: RuntimeConfig, agent_args: Vec<String>, log_level_switch: Option<reload::LogLevelSwitch>) -> Result<(), DaemonError> {
    let (data_dir, temporary) = match &config.data_dir {
        Some(dir) => (dir.clone(), false),
        None if config.dev => {
            let dir = std::env::temp_dir().join(format!("cairn-dev-{}", crate::agent::new_uuid()));
            // Private from the start, like every data dir (`agent::data_dir`).
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(DaemonError::TempDir)?;
            (dir, true)
        }
        None => return Err(DaemonError::NoDataDir),
    };
    let result = match write_pid_file(&config, &data_dir) {
        Ok(()) => {
            let result = serve(config.clone(), data_dir.clone(), agent_args, log_level_switch).await;
            if let Some(pid_file) = &config.pid_file {
                let _ = std::fs::remove_file(pid_file);
            }
            result
        }
        Err(error) => Err(error),
    };
    if temporary {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    result
}

/// Mode of the pid file: readable by anyone, as pid files are (it names no secret).
const PID_FILE_MODE: u32 = 0o644;

/// Writes `-pid-file` (Consul's `storePid`: the pid in decimal, no newline) once the data dir
/// exists, since a pid file often lives in it. A pid file that cannot be written stops the
/// start, as in Consul: a service manager waiting for it would otherwise wait forever.
fn write_pid_file(config: &RuntimeConfig, data_dir: &std::path::Path) -> Result<(), DaemonError> {
    let Some(path) = &config.pid_file else { return Ok(()) };
    crate::agent::prepare_data_dir(data_dir)?;
    let error = |source| DaemonError::PidFile { path: path.clone(), source };
    std::fs::write(path, std::process::id().to_string()).map_err(error)?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(PID_FILE_MODE)).map_err(error)
}

async fn bind_tcp(what: &'static str, addr: SocketAddr) -> Result<tokio::net::TcpListener, DaemonError> {
    tokio::net::TcpListener::bind(addr).await.map_err(|source| DaemonError::Bind { what, addr, source })
}

/// Lifts the soft open-files limit to the hard one, as Go's runtime does for Consul: every
/// parked blocking query holds a connection.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                tracing::warn!("could not raise the open-files limit to {}", limit.rlim_max);
            }
        }
    }
}

async fn serve(config: RuntimeConfig, data_dir: PathBuf, agent_args: Vec<String>, log_level_switch: Option<reload::LogLevelSwitch>) -> Result<(), DaemonError> {
    raise_open_files_limit();
    // A bad definition stops the agent before it binds anything (Consul fails start-up too).
    let (definitions, warnings) = crate::http::definitions::decode_definitions(&config)?;
    for warning in &warnings {
        tracing::warn!(%warning, "configuration");
    }
    // Installed first: SIGHUP's default action would otherwise end the process.
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .inspect_err(|error| tracing::warn!(%error, "cannot handle SIGHUP; reload only through the HTTP API"))
        .ok();
    // Bind everything before starting the agent, so a port conflict fails fast and cleanly.
    let mut http_listeners = Vec::new();
    if let Some(port) = config.ports.http {
        for ip in &config.client_addrs {
            http_listeners.push(bind_tcp("HTTP", SocketAddr::new(*ip, port)).await?);
        }
    }
    // HTTPS: its certificate is read before anything binds, so a bad file fails the start.
    let https_tls = match &config.tls_https {
        Some(settings) if config.ports.https.is_some() => {
            let server_name = crate::tls::server_name(&config.datacenter, &config.domain);
            Some(Arc::new(AgentTls::load(settings, &server_name).map_err(DaemonError::Tls)?))
        }
        _ => None,
    };
    let mut https_listeners = Vec::new();
    if let (Some(port), Some(_)) = (config.ports.https, &https_tls) {
        for ip in &config.client_addrs {
            https_listeners.push(bind_tcp("HTTPS", SocketAddr::new(*ip, port)).await?);
        }
    }
    let mut dns_sockets = Vec::new();
    let recursors = if config.ports.dns.is_some() { resolve_recursors(&config.dns.recursors).await? } else { Vec::new() };
    if let Some(port) = config.ports.dns {
        for ip in &config.client_addrs {
            let addr = SocketAddr::new(*ip, port);
            let udp = tokio::net::UdpSocket::bind(addr).await.map_err(|source| DaemonError::Bind { what: "DNS (udp)", addr, source })?;
            dns_sockets.push((udp, bind_tcp("DNS (tcp)", addr).await?));
        }
    }
    // LAN gossip: UDP and TCP on the same port (Consul's serf LAN, 8301).
    let serf_addr = SocketAddr::new(config.bind_addr, config.ports.serf_lan);
    let gossip = crate::agent::GossipSockets {
        udp: tokio::net::UdpSocket::bind(serf_addr).await.map_err(|source| DaemonError::Bind { what: "serf LAN (udp)", addr: serf_addr, source })?,
        tcp: bind_tcp("serf LAN (tcp)", serf_addr).await?,
    };
    let raft_listener = if config.server {
        Some(bind_tcp("server RPC", SocketAddr::new(config.bind_addr, config.ports.server)).await?)
    } else {
        None
    };

    let (agent, results) = Agent::start(config.clone(), data_dir, gossip).await?;
    if let Err(error) = agent.validate_config_definitions(&definitions).await {
        agent.stop().await;
        return Err(DaemonError::Definitions(error));
    }
    let mut shutdown = agent.shutdown_requested();
    let mut tasks = Vec::new();
    if let (Some(listener), Some(raft)) = (raft_listener, agent.raft().cloned()) {
        // The server port: its one route table (`rpc::server`), with the HTTP API under /fwd
        // for requests relayed by other agents. Raft's hot messages come as frames on the same
        // port (`rpc::frames`), sniffed by their first byte.
        let endpoint: Arc<dyn crate::rpc::server::Endpoint> = Arc::new(crate::agent::endpoint::ServerEndpoint::new(agent.clone(), raft));
        let router = crate::rpc::server::router(endpoint.clone(), crate::http::router(agent.clone()));
        let frames = crate::http::server::Frames {
            magic: crate::rpc::frames::FRAME_MAGIC,
            serve: Arc::new(move |stream, peer, cert| Box::pin(crate::rpc::frames::serve(stream, peer, cert, endpoint.clone()))),
        };
        let frames = crate::http::server::PortOptions { frames: Some(frames), tls: agent.tls(), tls_only: false };
        let conns_per_peer_max = crate::rpc::RPC_CONNS_PER_PEER_MAX;
        tasks.push(tokio::spawn(crate::http::server::serve_shared(listener, router, conns_per_peer_max, agent.shutdown_requested(), Some(frames))));
    }
    agent.bootstrap_if_configured().await?;
    for listener in http_listeners {
        let addr = listener.local_addr().ok();
        tracing::info!(?addr, "HTTP API listening");
        let router = crate::http::router(agent.clone());
        let conns_per_client_max = config.limits.http_max_conns_per_client as usize;
        tasks.push(tokio::spawn(crate::http::server::serve(listener, router, conns_per_client_max, agent.shutdown_requested())));
    }
    for listener in https_listeners {
        tracing::info!(addr = ?listener.local_addr().ok(), "HTTPS API listening");
        let router = crate::http::router(agent.clone());
        let conns_per_client_max = config.limits.http_max_conns_per_client as usize;
        let options = crate::http::server::PortOptions { frames: None, tls: https_tls.clone(), tls_only: true };
        tasks.push(tokio::spawn(crate::http::server::serve_shared(listener, router, conns_per_client_max, agent.shutdown_requested(), Some(options))));
    }
    let mut dns_servers = Vec::new();
    for (udp, tcp) in dns_sockets {
        tracing::info!(addr = ?udp.local_addr().ok(), "DNS listening (udp and tcp)");
        dns_servers.push(DnsServer::start(udp, tcp, dns_config(&config, &recursors), Arc::new(CatalogDns { agent: agent.clone() })));
    }
    agent.spawn_loops(results);
    // Every listener is bound and serving: systemd may start what depends on the agent.
    let notifier = Arc::new(notify::Notifier::default());
    tasks.push(tokio::spawn(notifier.clone().ready_when_joined(agent.clone())));
    let reloader = reload::Reloader { agent: agent.clone(), agent_args, running: config.clone(), log_level_switch, https_tls: https_tls.clone(), notifier: notifier.clone() };
    tasks.push(tokio::spawn(reloader.apply_then_serve(definitions, hangup)));
    if config.dev
        && let Some(raft) = agent.raft()
        && !raft.wait_until_leader(Duration::from_millis(DEV_LEADER_WAIT_MS)).await
    {
        tracing::warn!("dev server is not leader after {DEV_LEADER_WAIT_MS} ms");
    }
    tracing::info!(node = %agent.identity().node_name, datacenter = %agent.identity().datacenter, server = config.server, "cairn agent running");

    tokio::select! {
        _ = shutdown.wait_for(|s| *s) => {}
        signal = terminate_signal() => {
            // Consul: SIGTERM leaves gracefully if `leave_on_terminate`, SIGINT unless
            // `skip_leave_on_interrupt` (clients leave on both by default, servers on neither).
            let leave = match signal {
                Signal::Terminate => config.gossip.leave_on_terminate,
                Signal::Interrupt => !config.gossip.skip_leave_on_interrupt,
            };
            tracing::info!(?signal, leave, "caught signal; shutting down");
            if leave {
                agent.leave().await;
            }
        }
    }
    notifier.stopping();
    agent.request_shutdown();
    for server in dns_servers {
        server.shutdown().await;
    }
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
    agent.stop().await;
    tracing::info!("agent stopped");
    Ok(())
}

/// The signals that stop the agent.
#[derive(Clone, Copy, Debug)]
enum Signal {
    Terminate,
    Interrupt,
}

async fn terminate_signal() -> Signal {
    let interrupt = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = interrupt => Signal::Interrupt,
                _ = terminate.recv() => Signal::Terminate,
            }
        }
        Err(_) => {
            let _ = interrupt.await;
            Signal::Interrupt
        }
    }
}

/// The recursors' addresses: host names are resolved once, at start, as Consul does
/// (`recursorAddr`), and a name that does not resolve stops the agent. Like Go's resolver,
/// an IPv4 address is preferred when a name has both.
async fn resolve_recursors(recursors: &[Recursor]) -> Result<Vec<SocketAddr>, DaemonError> {
    let mut addrs = Vec::with_capacity(recursors.len());
    for recursor in recursors {
        let name = match &recursor.host {
            RecursorHost::Ip(ip) => {
                addrs.push(SocketAddr::new(*ip, recursor.port));
                continue;
            }
            RecursorHost::Name(name) => name,
        };
        let failed = |reason: String| DaemonError::Recursor { recursor: recursor.to_string(), reason };
        let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), recursor.port)).await.map_err(|error| failed(error.to_string()))?.collect();
        let chosen = found.iter().find(|addr| addr.is_ipv4()).or(found.first()).ok_or_else(|| failed("no address".to_string()))?;
        addrs.push(*chosen);
    }
    Ok(addrs)
}

fn dns_config(config: &RuntimeConfig, recursors: &[SocketAddr]) -> DnsConfig {
    DnsConfig {
        node_name: config.node_name.clone(),
        domain: config.domain.clone(),
        alt_domain: config.alt_domain.clone(),
        datacenter: config.datacenter.clone(),
        only_passing: config.dns.only_passing,
        node_ttl_s: config.dns.node_ttl_s,
        service_ttls_s: config.dns.service_ttls_s.clone(),
        a_record_limit: config.dns.a_record_limit,
        udp_answer_limit: config.dns.udp_answer_limit,
        enable_truncate: config.dns.enable_truncate,
        recursors: recursors.to_vec(),
        recursor_strategy: match config.dns.recursor_strategy {
            RecursorStrategy::Sequential => crate::dns::RecursorStrategy::Sequential,
            RecursorStrategy::Random => crate::dns::RecursorStrategy::Random,
        },
        recursor_timeout: Duration::from_millis(config.dns.recursor_timeout_ms),
    }
}

/// DNS answers from a catalog: on a server its own committed catalog (Consul's `allow_stale`
/// default); on a client agent the service views it caches from the servers
/// (`agent::remote_view`), and the servers that gossip announces.
struct CatalogDns {
    agent: Arc<Agent>,
}

fn dns_node(node: &crate::catalog::model::Node) -> DnsNode {
    DnsNode { name: node.name.clone(), address: node.address.clone(), meta: node.meta.clone() }
}

/// One instance as DNS sees it, with its aggregated health.
fn dns_instance(node: &crate::catalog::model::Node, service: &crate::catalog::model::Service, status: HealthStatus) -> DnsInstance {
    let health = match status {
        HealthStatus::Passing => DnsHealth::Passing,
        HealthStatus::Warning => DnsHealth::Warning,
        HealthStatus::Critical => DnsHealth::Critical,
    };
    DnsInstance {
        node: dns_node(node),
        service_id: service.id.clone(),
        service_address: service.address.clone(),
        port: service.port,
        tags: service.tags.clone(),
        weight_passing: service.weights.passing.min(u16::MAX as u32) as u16,
        weight_warning: service.weights.warning.min(u16::MAX as u32) as u16,
        health,
    }
}

/// Every instance of `service` (matched case-insensitively) in `catalog`, with its health.
fn dns_instances(catalog: &crate::catalog::Catalog, service: &str) -> Option<Vec<DnsInstance>> {
    let names = catalog.service_names_ignoring_case(service);
    if names.is_empty() {
        return None;
    }
    let mut instances = Vec::new();
    for name in names {
        for instance in catalog.health_instances(&name) {
            let status = aggregate_status(instance.checks.iter().copied());
            instances.push(dns_instance(instance.node, instance.service, status));
        }
    }
    Some(instances)
}

impl CatalogDns {
    /// What DNS answers may show, with ACLs: the agent's `dns` token, else its default token,
    /// else the anonymous token (Consul's rule). `None` when that token no longer resolves:
    /// then nothing is shown.
    async fn authorizer(&self) -> Option<Arc<crate::agent::acl::Resolved>> {
        let secret = self.agent.acl().tokens().dns;
        self.agent.resolve_token(secret.as_deref()).await.ok()
    }
}

#[async_trait::async_trait]
impl DnsCatalog for CatalogDns {
    async fn service_instances(&self, service: &str) -> Option<Vec<DnsInstance>> {
        let authz = self.authorizer().await?;
        if !authz.authorizer.service_read(service) {
            return None;
        }
        let instances = match self.agent.service_view(service).await {
            None => self.agent.view().read(|catalog| dns_instances(catalog, service)),
            Some(Ok(view)) => dns_instances(&view.catalog, service),
            Some(Err(error)) => {
                tracing::debug!(%service, %error, "no service view from the servers");
                None
            }
        }?;
        Some(instances.into_iter().filter(|i| authz.authorizer.node_read(&i.node.name)).collect())
    }

    async fn node(&self, node: &str) -> Option<DnsNode> {
        let authz = self.authorizer().await?;
        let find = |catalog: &crate::catalog::Catalog| catalog.node_ignoring_case(node).map(dns_node);
        let found = if self.agent.raft().is_some() {
            self.agent.view().read(find)
        } else {
            self.agent.node_view(node).await.ok().and_then(|catalog| find(&catalog))
        };
        found.filter(|n| authz.authorizer.node_read(&n.name))
    }

    async fn address_owner(&self, ip: std::net::IpAddr) -> Option<DnsAddressOwner> {
        use crate::agent::remote_view::address_owner;
        let authz = self.authorizer().await?;
        let owner = |catalog: &crate::catalog::Catalog| match address_owner(catalog, ip)? {
            Ok(node) => Some(DnsAddressOwner::Node(node)),
            Err((node, service_id)) => catalog.service(&node, &service_id).map(|service| DnsAddressOwner::Service(service.name.clone())),
        };
        let found = if self.agent.raft().is_some() {
            self.agent.view().read(owner)
        } else {
            self.agent.address_view(ip).await.ok().and_then(|catalog| owner(&catalog))
        };
        found.filter(|found| match found {
            DnsAddressOwner::Node(node) => authz.authorizer.node_read(node),
            DnsAddressOwner::Service(service) => authz.authorizer.service_read(service),
        })
    }

    /// A server's applied Raft index (every committed change may change an answer, ACL
    /// changes included); a client's service cache generation
    /// (`Agent::service_cache_generation`). With ACLs on, an answer also depends on the DNS
    /// token, which `PUT /v1/agent/token/dns` changes without a Raft entry, and on that token's
    /// expiry, which no write announces: the generation then also covers the agent's `dns` and
    /// `default` secrets and the current second, so an answer is shared for one second at most.
    fn answer_generation(&self) -> Option<u64> {
        use std::hash::{Hash, Hasher};
        let data = match self.agent.raft() {
            Some(_) => self.agent.view().applied_index(),
            None => self.agent.service_cache_generation()?,
        };
        if !self.agent.config().acl_enabled {
            return Some(data);
        }
        let tokens = self.agent.acl().tokens();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (data, tokens.dns, tokens.default, crate::agent::wall_clock_ms() / 1000).hash(&mut hasher);
        Some(hasher.finish())
    }

    /// Executes the query as `/v1/query/:name/execute` does, with the DNS token as the
    /// caller's (Consul's `handlePreparedQuery`), sorted near this agent when the query says
    /// `_agent`.
    async fn prepared_query(&self, name_or_id: &str) -> Option<DnsQueryResult> {
        use crate::agent::prepared_query::{ExecuteError, ExecuteOptions};
        let options = ExecuteOptions { caller_secret: self.agent.acl().tokens().dns, near: None, limit: 0 };
        let executed = match self.agent.execute_prepared_query(name_or_id, &options).await {
            Ok(executed) => executed,
            Err(ExecuteError::Resolve(_)) => return None,
            Err(ExecuteError::Agent(error)) => {
                tracing::debug!(query = %name_or_id, %error, "prepared query not executed for DNS");
                return None;
            }
        };
        // Checked when the query was stored; one that does not parse is ignored, as Consul does.
        let ttl_s = match executed.query.dns.ttl.as_str() {
            "" => None,
            ttl => crate::config::parse_go_duration(ttl).ok().map(|ttl| u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX)),
        };
        let instances = executed
            .instances
            .iter()
            .map(|instance| dns_instance(&instance.node, &instance.service, aggregate_status(instance.checks.iter())))
            .collect();
        Some(DnsQueryResult { service: executed.query.service.service, ttl_s, instances })
    }
}
