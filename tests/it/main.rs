//! Integration tests: every test starts the real `cairn` binary on 127.0.0.1 with ephemeral
//! ports and a RocksDB data dir in a temp dir, and talks to it over real HTTP and DNS.

mod acl;
mod acl_clients;
mod bad_input;
mod blocking;
mod catalog_health_dns;
mod check_types;
mod checks;
mod cluster;
mod clients;
mod coordinates;
mod cluster_util;
mod cli;
mod disk_full;
mod config_services;
mod durability;
mod events;
mod https;
mod hostile_raft;
mod jepsen;
mod keyring;
mod kv;
mod kv_history;
mod linearizability;
mod lock;
mod lifecycle;
mod sessions;
mod server_port_auth;
mod server_port_tls;
mod snapshot;
mod soak;
mod tidy;
mod txn;
mod util;
mod watch;
mod write_batch;
