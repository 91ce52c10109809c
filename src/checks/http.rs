//! HTTP checks: 2xx is passing, 429 (Too Many Requests) is warning, any other
//! status or a failed request is critical — Consul's mapping.
//!
//! Like Consul the request carries `User-Agent: Consul Health Check` and
//! `Accept: text/plain, text/*, */*` unless the check sets them, connections
//! are not kept alive between runs (a stale pooled connection must not fail a
//! check), and redirects are followed up to 10 hops (Go's client default,
//! which Consul keeps unless `disable_redirects` is set). The output is
//! `HTTP <METHOD> <url>: <code> <reason> Output: <body>`, with the body cut so
//! the whole output fits the limit; at most that many body bytes are read.

use std::sync::OnceLock;
use std::time::Duration;

use reqwest::header::{ACCEPT, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use reqwest::{Client, Method, StatusCode};

use super::CheckStatus;
use super::runner::{error_chain, go_duration, truncate_to_bytes};

/// Consul's `checks.UserAgent`.
const USER_AGENT_VALUE: &str = "Consul Health Check";

/// Consul's default `Accept` for health checks.
const ACCEPT_VALUE: &str = "text/plain, text/*, */*";

/// Redirect hops followed, matching Go's `http.Client` default.
const REDIRECTS_MAX: usize = 10;

/// Slack on top of the check timeout for the outer bound. reqwest enforces
/// the timeout itself; the outer bound only guarantees the run cannot hang.
const TIMEOUT_GRACE: Duration = Duration::from_secs(1);

/// The scheduler's shared clients, built on first use so `Scheduler::new`
/// does no work. A build failure is kept and reported by every check using
/// that client instead of panicking.
#[derive(Default)]
pub(super) struct HttpClients {
    /// Client that verifies certificates.
    verified: OnceLock<Result<Client, String>>,
    /// Client for `tls_skip_verify` checks only.
    insecure: OnceLock<Result<Client, String>>,
}

impl HttpClients {
    pub(super) fn get(&self, tls_skip_verify: bool) -> Result<Client, String> {
        let cell = if tls_skip_verify {
            &self.insecure
        } else {
            &self.verified
        };
        cell.get_or_init(|| build_client(tls_skip_verify)).clone()
    }
}

fn build_client(tls_skip_verify: bool) -> Result<Client, String> {
    Client::builder()
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::limited(REDIRECTS_MAX))
        .danger_accept_invalid_certs(tls_skip_verify)
        .build()
        .map_err(|err| {
            let text = error_chain(&err);
            tracing::error!(tls_skip_verify, error = %text, "cannot build HTTP client for health checks");
            format!("HTTP client unavailable: {text}")
        })
}

/// One HTTP check's configuration, with the client it uses.
pub(super) struct HttpProbe {
    pub(super) client: Result<Client, String>,
    /// Never empty: the scheduler defaults it to GET.
    pub(super) method: String,
    pub(super) url: String,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Option<String>,
    pub(super) timeout: Duration,
}

impl HttpProbe {
    pub(super) async fn run(&self, output_bytes_max: usize) -> (CheckStatus, String) {
        let request = match self.request() {
            Ok(request) => request,
            Err(text) => {
                tracing::warn!(url = %self.url, error = %text, "HTTP check request invalid");
                return (CheckStatus::Critical, text);
            }
        };
        let exchange = async {
            let mut response = request.send().await?;
            let status = response.status();
            let mut body = Vec::new();
            while body.len() < output_bytes_max {
                match response.chunk().await {
                    Ok(Some(chunk)) => {
                        let take = chunk.len().min(output_bytes_max - body.len());
                        body.extend_from_slice(&chunk[..take]);
                    }
                    Ok(None) => break,
                    Err(err) => {
                        // Consul logs a body read error and reports what it got.
                        tracing::warn!(url = %self.url, error = %error_chain(&err), "HTTP check error while reading body");
                        break;
                    }
                }
            }
            Ok::<_, reqwest::Error>((status, body))
        };
        match tokio::time::timeout(self.timeout + TIMEOUT_GRACE, exchange).await {
            Ok(Ok((status, body))) => (
                classify(status),
                self.output(status, &body, output_bytes_max),
            ),
            Ok(Err(err)) => {
                let text = error_chain(&err);
                tracing::warn!(url = %self.url, error = %text, "HTTP check request failed");
                (CheckStatus::Critical, text)
            }
            Err(_elapsed) => {
                let text = format!(
                    "HTTP {} {}: timed out after {}",
                    self.method,
                    self.url,
                    go_duration(self.timeout)
                );
                tracing::warn!(url = %self.url, "HTTP check timed out");
                (CheckStatus::Critical, text)
            }
        }
    }

    fn request(&self) -> Result<reqwest::RequestBuilder, String> {
        let client = self.client.clone()?;
        let method = Method::from_bytes(self.method.as_bytes())
            .map_err(|err| format!("invalid HTTP method {:?}: {err}", self.method))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let header_name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|err| format!("invalid header name {name:?}: {err}"))?;
            let header_value = HeaderValue::from_str(value)
                .map_err(|err| format!("invalid value for header {name:?}: {err}"))?;
            headers.append(header_name, header_value);
        }
        if !headers.contains_key(USER_AGENT) {
            headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        }
        if !headers.contains_key(ACCEPT) {
            headers.insert(ACCEPT, HeaderValue::from_static(ACCEPT_VALUE));
        }
        let mut request = client
            .request(method, &self.url)
            .headers(headers)
            .timeout(self.timeout);
        if let Some(body) = &self.body {
            request = request.body(body.clone());
        }
        Ok(request)
    }

    /// `HTTP <METHOD> <url>: <code> <reason> Output: <body>`, cut to fit.
    fn output(&self, status: StatusCode, body: &[u8], output_bytes_max: usize) -> String {
        let status_text = match status.canonical_reason() {
            Some(reason) => format!("{} {reason}", status.as_u16()),
            None => status.as_u16().to_string(),
        };
        let mut text = format!("HTTP {} {}: {status_text} Output: ", self.method, self.url);
        text.push_str(&String::from_utf8_lossy(body));
        truncate_to_bytes(&mut text, output_bytes_max);
        text
    }
}

fn classify(status: StatusCode) -> CheckStatus {
    if status.is_success() {
        CheckStatus::Passing
    } else if status == StatusCode::TOO_MANY_REQUESTS {
        CheckStatus::Warning
    } else {
        CheckStatus::Critical
    }
}

