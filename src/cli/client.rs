//! A deliberately small blocking HTTP client for the agent's Consul-style API.
//!
//! The verbs are short-lived and sequential, so each [`Client`] owns a
//! current-thread tokio runtime and drives `reqwest` with `block_on`; nothing
//! async leaks into the verbs. Every request has a timeout
//! ([`HTTP_REQUEST_TIMEOUT_S`]) and response bodies are read with a size bound
//! ([`MAX_RESPONSE_BYTES`]) so a wedged or hostile endpoint cannot hang or
//! balloon the CLI. Errors carry Consul's wording (`Unexpected response
//! code: ...`) because scripts written against `consul` grep for it.
//!
//! URLs are built by hand rather than with `reqwest`'s serde query support so
//! valueless parameters go out as `?recurse` / `?stale`, and so KV keys are
//! percent-encoded per segment while their `/` separators survive.

use std::time::Duration;

use crate::cli::Fail;

/// Whole-request timeout. None of the CLI verbs use blocking queries, so a
/// healthy agent answers far sooner; this only bounds a wedged one.
pub(crate) const HTTP_REQUEST_TIMEOUT_S: u64 = 30;
/// Connecting to a local agent is instant or refused; don't wait long.
const CONNECT_TIMEOUT_S: u64 = 5;
/// Upper bound on a response body. KV values are capped at 512 KiB by
/// Consul, but `kv get -recurse` on a big tree can legitimately be large.
pub(crate) const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// A streamed answer (`cairn monitor`) lasts as long as the user watches: only this bounds it.
const STREAM_TIMEOUT_S: u64 = 10 * 365 * 24 * 3600;
/// What is kept of an error answer's body when the rest of the answer would be streamed.
const ERROR_BODY_BYTES_MAX: usize = 64 * 1024;
/// A token file holds one token (a UUID); anything much bigger is the wrong file.
const TOKEN_FILE_BYTES_MAX: usize = 64 * 1024;
pub(crate) const DEFAULT_HTTP_ADDR: &str = "http://127.0.0.1:8500";

/// HTTP flags shared by every client verb (Consul's `ClientFlags` +
/// `ServerFlags` subset that this agent supports).
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct HttpFlags {
    /// Agent HTTP address (host:port or http[s]://host:port). Defaults to
    /// $CAIRN_HTTP_ADDR, then $CONSUL_HTTP_ADDR, then http://127.0.0.1:8500.
    #[arg(long)]
    pub(crate) http_addr: Option<String>,
    /// ACL token sent as X-Consul-Token. Defaults to $CAIRN_HTTP_TOKEN, then $CONSUL_HTTP_TOKEN.
    #[arg(long)]
    pub(crate) token: Option<String>,
    /// File holding the ACL token; when it holds one it wins over -token, as in Consul.
    /// Defaults to $CAIRN_HTTP_TOKEN_FILE, then $CONSUL_HTTP_TOKEN_FILE.
    #[arg(long)]
    pub(crate) token_file: Option<String>,
    /// Datacenter to query. Defaults to the agent's own.
    #[arg(long)]
    pub(crate) datacenter: Option<String>,
    /// Allow any server (not just the leader) to answer reads.
    #[arg(long)]
    pub(crate) stale: bool,
    #[command(flatten)]
    pub(crate) tls: super::client_tls::TlsFlags,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    #[error("Invalid HTTP address {addr:?}: {reason}")]
    BadAddress { addr: String, reason: String },
    #[error("Failed to connect to agent at {base}: {reason}")]
    Connect { base: String, reason: String },
    #[error("Request to agent at {base} timed out after {HTTP_REQUEST_TIMEOUT_S}s")]
    Timeout { base: String },
    #[error("Unexpected response code: {code} ({body})")]
    Status { code: u16, body: String },
    #[error("Response from agent is larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    #[error("Failed to decode agent response: {0}")]
    Decode(String),
    #[error("HTTP client error: {0}")]
    Other(String),
    #[error("Error loading token file: {0}")]
    TokenFile(String),
}

/// A status code and the (bounded) body of a response.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
    /// `X-Consul-Index`, for blocking queries.
    pub(crate) index: Option<u64>,
    /// The text of a `Warning` header (`299 agent "text"`), which the agent sends about a
    /// setting it keeps but does not act on.
    pub(crate) warning: Option<String>,
}

impl Reply {
    /// Turn any non-2xx answer into Consul's "Unexpected response code" error.
    pub(crate) fn ok(self) -> Result<Vec<u8>, ClientError> {
        if (200..300).contains(&self.status) {
            return Ok(self.body);
        }
        let body = String::from_utf8_lossy(&self.body).trim_end().to_owned();
        Err(ClientError::Status {
            code: self.status,
            body,
        })
    }

    pub(crate) fn json<T: serde::de::DeserializeOwned>(self) -> Result<T, ClientError> {
        decode_json(&self.ok()?)
    }
}

pub(crate) fn decode_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|e| ClientError::Decode(e.to_string()))
}

/// Pick the agent address: flag, then `CAIRN_HTTP_ADDR`, then
/// `CONSUL_HTTP_ADDR` (so existing Consul tooling environments just work),
/// then the default. Empty values count as unset, as in Consul.
pub(crate) fn resolve_base(
    flag: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ClientError> {
    let chosen = flag
        .map(str::to_owned)
        .or_else(|| env("CAIRN_HTTP_ADDR"))
        .filter(|s| !s.trim().is_empty())
        .or_else(|| env("CONSUL_HTTP_ADDR").filter(|s| !s.trim().is_empty()))
        .unwrap_or_else(|| DEFAULT_HTTP_ADDR.to_owned());
    normalize_base(&chosen)
}

/// Accept `host:port`, `http://host:port` and `https://host:port`; return the
/// base URL without a trailing slash.
pub(crate) fn normalize_base(addr: &str) -> Result<String, ClientError> {
    let trimmed = addr.trim();
    let bad = |reason: &str| ClientError::BadAddress {
        addr: addr.to_owned(),
        reason: reason.to_owned(),
    };
    let with_scheme = match trimmed.split_once("://") {
        Some((scheme, _))
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
        {
            trimmed.to_owned()
        }
        Some((scheme, _)) => {
            return Err(bad(&format!(
                "unsupported scheme {scheme:?} (use http or https)"
            )));
        }
        None => format!("http://{trimmed}"),
    };
    let url = reqwest::Url::parse(&with_scheme).map_err(|e| bad(&e.to_string()))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("missing host"));
    }
    Ok(with_scheme.trim_end_matches('/').to_owned())
}

/// Percent-encode a string for a URL. With `keep_slash` it encodes a KV key
/// as a path (each segment encoded, `/` kept); without, a query value.
pub(crate) fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// One query parameter: `(name, None)` renders as a bare `name`.
pub(crate) type Param<'a> = (&'a str, Option<String>);

pub(crate) struct Client {
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
    base: String,
    token: Option<String>,
    datacenter: Option<String>,
    stale: bool,
}

impl Client {
    pub(crate) fn new(
        flags: &HttpFlags,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ClientError> {
        let base = super::client_tls::https_by_default(resolve_base(flags.http_addr.as_deref(), env)?, flags.http_addr.as_deref(), env);
        let token = flags
            .token
            .clone()
            .or_else(|| env("CAIRN_HTTP_TOKEN"))
            .or_else(|| env("CONSUL_HTTP_TOKEN"))
            .filter(|t| !t.is_empty());
        let token_file = flags
            .token_file
            .clone()
            .or_else(|| env("CAIRN_HTTP_TOKEN_FILE"))
            .or_else(|| env("CONSUL_HTTP_TOKEN_FILE"))
            .filter(|f| !f.is_empty());
        // Consul's api.NewClient: a token file that holds a token replaces the token.
        let token = match token_file {
            Some(path) => read_token_file(&path)?.or(token),
            None => token,
        };
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(HTTP_REQUEST_TIMEOUT_S))
            .connect_timeout(Duration::from_secs(CONNECT_TIMEOUT_S));
        // A proxy from the environment must never sit between the CLI and a
        // loopback agent (Go's ProxyFromEnvironment skips localhost too).
        if is_loopback(&base) {
            builder = builder.no_proxy();
        }
        let (builder, base) = super::client_tls::configure(builder, base, &flags.tls, env)?;
        let http = builder
            .build()
            .map_err(|e| ClientError::Other(root_cause(&e)))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError::Other(e.to_string()))?;
        Ok(Client {
            http,
            rt,
            base,
            token,
            datacenter: flags.datacenter.clone(),
            stale: flags.stale,
        })
    }

    /// Build `base + path + ?query`, adding `dc` and (for reads) `stale`.
    pub(crate) fn url(&self, path: &str, params: &[Param<'_>], read: bool) -> String {
        let mut parts: Vec<String> = params
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={}", encode(v, false)),
                None => (*k).to_owned(),
            })
            .collect();
        if let Some(dc) = &self.datacenter {
            parts.push(format!("dc={}", encode(dc, false)));
        }
        if read && self.stale {
            parts.push("stale".to_owned());
        }
        let mut url = format!("{}{path}", self.base);
        if !parts.is_empty() {
            url.push('?');
            url.push_str(&parts.join("&"));
        }
        url
    }

    pub(crate) fn get(&self, path: &str, params: &[Param<'_>]) -> Result<Reply, ClientError> {
        self.send(reqwest::Method::GET, self.url(path, params, true), None)
    }

    /// [`Client::get`], counting the response's bytes on `progress` as they arrive (its length
    /// set from `Content-Length` when the agent sends one).
    pub(crate) fn get_with_progress(&self, path: &str, params: &[Param<'_>], progress: &indicatif::ProgressBar) -> Result<Reply, ClientError> {
        self.send_observed(reqwest::Method::GET, self.url(path, params, true), None, Some(progress))
    }

    pub(crate) fn put(
        &self,
        path: &str,
        params: &[Param<'_>],
        body: Vec<u8>,
    ) -> Result<Reply, ClientError> {
        self.send(
            reqwest::Method::PUT,
            self.url(path, params, false),
            Some(body),
        )
    }

    /// A POST with an empty body (operator actions).
    pub(crate) fn send_post(&self, path: &str) -> Result<Reply, ClientError> {
        self.send(reqwest::Method::POST, self.url(path, &[], false), Some(Vec::new()))
    }

    /// A write with a body and any method (`keyring` sends its key with POST, PUT and DELETE).
    pub(crate) fn send_body(&self, method: reqwest::Method, path: &str, params: &[Param<'_>], body: Vec<u8>) -> Result<Reply, ClientError> {
        self.send(method, self.url(path, params, false), Some(body))
    }

    /// A GET whose body streams into `sink` until the agent ends it, `wait` has passed, or
    /// `bytes_max` bytes came (`cairn debug`'s log capture). Returns the bytes written; a
    /// non-2xx answer is an error carrying its (bounded) body.
    pub(crate) fn get_streamed(&self, path: &str, params: &[Param<'_>], wait: Duration, bytes_max: usize, sink: &mut dyn std::io::Write) -> Result<usize, ClientError> {
        let mut req = self.http.get(self.url(path, params, true)).timeout(wait + Duration::from_secs(HTTP_REQUEST_TIMEOUT_S));
        if let Some(token) = &self.token {
            req = req.header("X-Consul-Token", token);
        }
        let base = || self.base.clone();
        self.rt.block_on(async {
            let deadline = tokio::time::Instant::now() + wait;
            let sent = tokio::time::timeout_at(deadline, req.send()).await;
            let Ok(sent) = sent else { return Ok(0) };
            let mut resp = sent.map_err(|e| ClientError::Connect { base: base(), reason: root_cause(&e) })?;
            let status = resp.status().as_u16();
            let failed = !(200..300).contains(&status);
            let (mut written, limit) = (0, if failed { ERROR_BODY_BYTES_MAX } else { bytes_max });
            let mut error_body = Vec::new();
            while written < limit {
                let Ok(chunk) = tokio::time::timeout_at(deadline, resp.chunk()).await else { break };
                let Some(chunk) = chunk.map_err(|e| ClientError::Other(root_cause(&e)))? else { break };
                let chunk = &chunk[..chunk.len().min(limit - written)];
                if failed {
                    error_body.extend_from_slice(chunk);
                } else {
                    sink.write_all(chunk).map_err(|e| ClientError::Other(e.to_string()))?;
                }
                written += chunk.len();
            }
            if failed {
                return Err(ClientError::Status { code: status, body: String::from_utf8_lossy(&error_body).trim_end().to_owned() });
            }
            Ok(written)
        })
    }

    pub(crate) fn delete(&self, path: &str, params: &[Param<'_>]) -> Result<Reply, ClientError> {
        self.send(reqwest::Method::DELETE, self.url(path, params, false), None)
    }

    fn send(
        &self,
        method: reqwest::Method,
        url: String,
        body: Option<Vec<u8>>,
    ) -> Result<Reply, ClientError> {
        self.send_observed(method, url, body, None)
    }

    fn send_observed(
        &self,
        method: reqwest::Method,
        url: String,
        body: Option<Vec<u8>>,
        progress: Option<&indicatif::ProgressBar>,
    ) -> Result<Reply, ClientError> {
        let mut req = self.http.request(method, &url);
        if let Some(token) = &self.token {
            req = req.header("X-Consul-Token", token);
        }
        if let Some(body) = body {
            req = req.body(body);
        }
        let classify = |e: reqwest::Error| self.classify(&e);
        self.rt.block_on(async {
            let mut resp = req.send().await.map_err(classify)?;
            let status = resp.status().as_u16();
            let index = resp.headers().get("x-consul-index").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
            let warning = resp.headers().get("warning").and_then(|v| v.to_str().ok()).map(warning_text);
            if resp
                .content_length()
                .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
            {
                return Err(ClientError::TooLarge);
            }
            if let (Some(progress), Some(len)) = (progress, resp.content_length()) {
                progress.set_length(len);
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(classify)? {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(ClientError::TooLarge);
                }
                body.extend_from_slice(&chunk);
                if let Some(progress) = progress {
                    progress.inc(chunk.len() as u64);
                }
            }
            Ok(Reply { status, body, index, warning })
        })
    }
}

impl Client {
    fn classify(&self, e: &reqwest::Error) -> ClientError {
        if e.is_timeout() {
            ClientError::Timeout { base: self.base.clone() }
        } else if e.is_connect() || e.is_request() {
            ClientError::Connect { base: self.base.clone(), reason: root_cause(e) }
        } else {
            ClientError::Other(root_cause(e))
        }
    }

    /// A GET whose body is handed to `chunk` piece by piece as it arrives, for as long as the
    /// agent sends it (`cairn monitor`); returns when the agent ends it. A non-2xx answer is
    /// the usual [`ClientError::Status`].
    pub(crate) fn stream_get(&self, path: &str, params: &[Param<'_>], mut chunk: impl FnMut(&[u8]) -> Result<(), ClientError>) -> Result<(), ClientError> {
        let mut req = self.http.get(self.url(path, params, false)).timeout(Duration::from_secs(STREAM_TIMEOUT_S));
        if let Some(token) = &self.token {
            req = req.header("X-Consul-Token", token);
        }
        self.rt.block_on(async {
            let mut resp = req.send().await.map_err(|e| self.classify(&e))?;
            let status = resp.status().as_u16();
            let mut refusal = Vec::new();
            while let Some(bytes) = resp.chunk().await.map_err(|e| self.classify(&e))? {
                if (200..300).contains(&status) {
                    chunk(&bytes)?;
                } else if refusal.len() + bytes.len() <= MAX_RESPONSE_BYTES {
                    refusal.extend_from_slice(&bytes);
                }
            }
            Reply { status, body: refusal, index: None, warning: None }.ok().map(drop)
        })
    }
}

/// The quoted text of a `Warning` header value (`299 agent "text"`), or the value whole.
fn warning_text(value: &str) -> String {
    match (value.find('"'), value.rfind('"')) {
        (Some(start), Some(end)) if end > start => value[start + 1..end].to_owned(),
        _ => value.to_owned(),
    }
}

/// The token in `path`, trimmed; `None` when the file holds only whitespace.
fn read_token_file(path: &str) -> Result<Option<String>, ClientError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| ClientError::TokenFile(e.to_string()))?;
    let mut text = String::new();
    file.take(TOKEN_FILE_BYTES_MAX as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| ClientError::TokenFile(e.to_string()))?;
    if text.len() > TOKEN_FILE_BYTES_MAX {
        return Err(ClientError::TokenFile(format!("{path} is larger than {TOKEN_FILE_BYTES_MAX} bytes")));
    }
    let token = text.trim();
    Ok((!token.is_empty()).then(|| token.to_owned()))
}

/// Build a client from a verb's flags; a bad address is a usage-level error.
pub(crate) fn connect(
    flags: &HttpFlags,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Client, Fail> {
    Ok(Client::new(flags, env)?)
}

fn is_loopback(base: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(base) else {
        return false;
    };
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// reqwest's top-level message ("error sending request for url ...") hides
/// the useful part; report the innermost cause, e.g. "Connection refused".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
