//! A test-only fault layer in the server-to-server transport.
//!
//! Off unless the agent starts with `CAIRN_FAULT_INJECTION=1` in its environment. When on, the
//! server port accepts `POST /raft/fault` with a [`FaultPlan`]: a set of peer server addresses
//! to be cut off from (both directions: our calls to them fail as unreachable, their calls to
//! us are refused), and a deliberately wrong knob that serves `?consistent` reads from a
//! follower's local state, so the linearizability checker can be shown to catch it.

use std::collections::BTreeSet;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

/// The header carrying the caller's server address on server-to-server requests.
pub const FROM_HEADER: &str = "x-cairn-from";
/// The environment variable that enables fault injection.
pub const FAULT_INJECTION_ENV: &str = "CAIRN_FAULT_INJECTION";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultPlan {
    /// Server addresses (`host:port`) this server cannot talk to.
    pub partitioned_from: BTreeSet<String>,
    /// Serve `?consistent` reads from local state without a quorum check (a planted bug).
    pub consistent_reads_from_follower: bool,
}

/// The faults in force on one server.
#[derive(Debug, Default)]
pub struct Faults {
    enabled: bool,
    /// The current plan. Read on every server-to-server request; written only by tests.
    plan: RwLock<FaultPlan>,
}

impl Faults {
    pub fn new(enabled: bool) -> Faults {
        Faults { enabled, plan: RwLock::new(FaultPlan::default()) }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// True when traffic to or from `addr` must be dropped.
    pub fn blocks(&self, addr: &str) -> bool {
        self.enabled && self.plan.read().expect("fault plan lock poisoned").partitioned_from.contains(addr)
    }

    pub fn consistent_reads_from_follower(&self) -> bool {
        self.enabled && self.plan.read().expect("fault plan lock poisoned").consistent_reads_from_follower
    }

    /// Installs a plan; refused when fault injection is off.
    pub fn set(&self, plan: FaultPlan) -> Result<(), String> {
        if !self.enabled {
            return Err(format!("fault injection is off (start the agent with {FAULT_INJECTION_ENV}=1)"));
        }
        *self.plan.write().expect("fault plan lock poisoned") = plan;
        Ok(())
    }
}
