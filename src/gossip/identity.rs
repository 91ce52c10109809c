//! Node names and the foca identity of a member.
//!
//! The identity rides in every foca packet, so it stays small: the node name, the advertised
//! socket address and a `bump` that orders the identities one node has had. foca keys members
//! by `Identity::addr`, which here is the node *name*: two identities with the same name are
//! the same member, and the one with the higher `(bump, addr)` wins. A fresh process starts
//! with `bump` = microseconds since the Unix epoch, so a restarted agent beats the identity it
//! had before; `renew` adds one, so a member wrongly declared down (SIGSTOP, partition) comes
//! back by itself under a new identity. Tags do not travel here (see `broadcasts`).
//!
//! Invariant: a `NodeName` is never empty, never longer than `NODE_NAME_BYTES_MAX` and holds
//! no control characters, whether built locally or decoded from the network.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest node name, in bytes (a DNS label is 63; Consul warns beyond that but allows
/// longer names, so the bound is generous).
pub(super) const NODE_NAME_BYTES_MAX: usize = 128;

/// A validated node name; cheap to clone because foca clones `Identity::addr` often.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct NodeName(Arc<str>);

impl NodeName {
    /// Validates `name`: non-empty, at most `NODE_NAME_BYTES_MAX` bytes, no control characters.
    pub(super) fn new(name: &str) -> Result<NodeName, String> {
        if name.is_empty() {
            return Err("node name is empty".to_owned());
        }
        if name.len() > NODE_NAME_BYTES_MAX {
            return Err(format!("node name is {} bytes, the limit is {NODE_NAME_BYTES_MAX}", name.len()));
        }
        if name.chars().any(char::is_control) {
            return Err("node name holds a control character".to_owned());
        }
        Ok(NodeName(Arc::from(name)))
    }

    pub(super) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NodeName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, formatter)
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl Serialize for NodeName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for NodeName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<NodeName, D::Error> {
        let name = String::deserialize(deserializer)?;
        NodeName::new(&name).map_err(serde::de::Error::custom)
    }
}

/// A member's foca identity: name, advertised address, and the bump that orders restarts.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(super) struct NodeId {
    pub(super) name: NodeName,
    pub(super) addr: SocketAddr,
    pub(super) bump: u64,
}

impl NodeId {
    /// The identity of a freshly started agent: its bump is the wall clock in microseconds,
    /// above any bump an earlier run of the same node could have reached by renewing.
    pub(super) fn fresh(name: NodeName, addr: SocketAddr) -> NodeId {
        // The wall clock is read once per start, only to order this run after earlier ones.
        let bump = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |since_epoch| since_epoch.as_micros() as u64);
        NodeId { name, addr, bump }
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}@{}#{}", self.name, self.addr, self.bump)
    }
}

impl foca::Identity for NodeId {
    type Addr = NodeName;

    fn renew(&self) -> Option<NodeId> {
        Some(NodeId { bump: self.bump.wrapping_add(1), ..self.clone() })
    }

    fn addr(&self) -> NodeName {
        self.name.clone()
    }

    fn win_addr_conflict(&self, adversary: &NodeId) -> bool {
        (self.bump, self.addr) > (adversary.bump, adversary.addr)
    }
}

#[cfg(test)]
mod tests {
    use foca::Identity as _;

    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(NodeName::new("node-1").is_ok());
        assert!(NodeName::new("").is_err());
        assert!(NodeName::new(&"x".repeat(NODE_NAME_BYTES_MAX + 1)).is_err());
        assert!(NodeName::new("a\nb").is_err());
        // Decoding validates too.
        let bytes = postcard::to_allocvec("").expect("encodes");
        assert!(postcard::from_bytes::<NodeName>(&bytes).is_err());
    }

    #[test]
    fn renewed_and_restarted_identities_win() {
        let name = NodeName::new("a").expect("valid");
        let addr: SocketAddr = "127.0.0.1:8301".parse().expect("valid");
        let first = NodeId::fresh(name.clone(), addr);
        let renewed = first.renew().expect("renews");
        assert!(renewed.win_addr_conflict(&first));
        assert!(!first.win_addr_conflict(&renewed));
        assert_eq!(renewed.addr(), first.addr());
        std::thread::sleep(std::time::Duration::from_millis(2));
        let restarted = NodeId::fresh(name, addr);
        assert!(restarted.win_addr_conflict(&renewed));
    }

    #[test]
    fn identity_is_small_on_the_wire() {
        let id = NodeId::fresh(NodeName::new("node-1").expect("valid"), "10.0.0.1:8301".parse().expect("valid"));
        let bytes = postcard::to_allocvec(&id).expect("encodes");
        assert!(bytes.len() < 32, "{} bytes", bytes.len());
    }
}
