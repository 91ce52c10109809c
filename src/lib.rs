//! cairn: a service-discovery and configuration agent that speaks Consul's HTTP API and DNS.
//!
//! Modules in reading order, from the pure core outwards (see ARCHITECTURE.md for the layer
//! table that says which may use which):
//! - `telemetry`: metrics (Consul's names, the in-memory sink, Prometheus) and the log
//!   (stdout, file, the monitor stream); every module may use it;
//! - `catalog`: the replicated state machine and its queries (pure);
//! - `bexpr`: Consul's `?filter=` expressions (pure);
//! - `acl`: Consul's ACL rule language, the authorizer, templated policies (pure);
//! - `config`: flags and config files into a validated runtime config (pure);
//! - `store`: RocksDB, and nothing else;
//! - `tls`: the server port's rustls configurations, and certificates for `cairn tls`;
//! - `watch`: which blocking queries wait on which topics, and waking only those;
//! - `rpc`: the server port's protocol: one client, one route table, frames (no Raft knowledge);
//! - `raft`: openraft glue: log store, state machine, network;
//! - `checks`: health-check runners;
//! - `gossip`: LAN membership and failure detection (SWIM over foca), member events;
//! - `agent`: the composition root of a running agent;
//! - `http`: Consul's HTTP API;
//! - `dns`: Consul's DNS interface;
//! - `daemon`: listeners, servers and signals around a running agent;
//! - `ui`: the embedded web dashboard;
//! - `cli`: the command line;
//! - `fuzz` (tests only): the bounded mutation fuzzer over every decoder of remote input;
//! - `golden` (tests only): the pinned bytes of every encoding that outlives a release.

pub mod acl;
pub mod agent;
pub mod bexpr;
pub mod catalog;
pub mod checks;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dns;
#[cfg(test)]
mod fuzz;
pub mod gossip;
#[cfg(test)]
mod golden;
pub mod http;
pub mod raft;
pub mod rpc;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod ui;
pub mod watch;
