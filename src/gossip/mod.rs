//! LAN gossip: SWIM membership and failure detection (foca on tokio).
//!
//! Work in progress: only the timing configuration is here so far.

pub mod timing;
