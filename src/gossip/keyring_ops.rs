//! Keyring operations (Consul's `keyring -list|-install|-use|-remove`): what they are, how one
//! member applies one to its own ring (`LocalKeyring`), and how the answers of every member
//! add up to Consul's keyring response (`ClusterAnswer::summary`, pure).
//!
//! A member applies an operation under one lock: the new ring is computed (pure, `keyring`),
//! saved to the keyring file when there is one (temporary file, fsync, rename), and only then
//! swapped into the sealer. So the file never holds a ring the member did not use, and a
//! failed save changes nothing.
//!
//! Invariants: an operation on a pool without encryption is refused with serf's words; the
//! primary key is never removed; a ring is never emptied.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::envelope::Sealer;
use super::keyring::{self, Cipher, KEYRING_KEYS_MAX};
use super::keyring_file;

/// A validated gossip key: 16, 24 or 32 bytes, given in base64.
#[derive(Clone)]
pub struct GossipKey {
    pub(super) cipher: Cipher,
}

impl std::fmt::Debug for GossipKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "GossipKey({} bytes)", self.cipher.key_bytes().len())
    }
}

impl GossipKey {
    /// Decodes and checks a key as `consul keyring -install` takes it.
    pub fn from_base64(key_base64: &str) -> Result<GossipKey, KeyringError> {
        let cipher = Cipher::from_base64(key_base64).map_err(|reason| KeyringError::InvalidKey { reason })?;
        Ok(GossipKey { cipher })
    }

    /// The key in base64, as Consul lists it.
    pub fn to_base64(&self) -> String {
        self.cipher.key_base64()
    }
}

/// One keyring operation. The numbers are on the wire (`keyring_wire`): append only.
#[derive(Clone, Debug)]
pub enum KeyringOp {
    List,
    /// Adds a key (not primary); a key already installed changes nothing.
    Install(GossipKey),
    /// Makes an installed key the primary, the one that encrypts.
    Use(GossipKey),
    /// Removes a key that is not the primary; an absent key changes nothing.
    Remove(GossipKey),
}

impl KeyringOp {
    #[cfg(test)]
    pub(super) fn key(&self) -> Option<&GossipKey> {
        match self {
            KeyringOp::List => None,
            KeyringOp::Install(key) | KeyringOp::Use(key) | KeyringOp::Remove(key) => Some(key),
        }
    }
}

/// Why a keyring operation failed on a member. The texts are memberlist's and serf's, which
/// Consul shows as they are.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    #[error("invalid gossip encryption key: {reason}")]
    InvalidKey { reason: String },
    #[error("Requested key is not in the keyring")]
    NotInstalled,
    #[error("Removing the primary key is not allowed")]
    RemovePrimary,
    #[error("keyring is full: it holds at most {limit} keys")]
    Full { limit: usize },
    /// serf's answer to a list on a pool without encryption.
    #[error("Keyring is empty (encryption not enabled)")]
    NothingToList,
    /// serf's answer to an install, use or remove on a pool without encryption.
    #[error("No keyring to modify (encryption not enabled)")]
    NothingToModify,
    #[error("failed to write the keyring file: {reason}")]
    Save { reason: String },
}

/// One member's keyring, keys in base64, primary first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeKeys {
    pub keys: Vec<String>,
}

impl NodeKeys {
    pub(super) fn of(ring: &[Cipher]) -> NodeKeys {
        NodeKeys { keys: ring.iter().map(Cipher::key_base64).collect() }
    }

    /// The key that encrypts.
    pub fn primary(&self) -> Option<&str> {
        self.keys.first().map(String::as_str)
    }
}

/// What one member answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeOutcome {
    /// Applied: its keyring afterwards.
    Applied(NodeKeys),
    /// It answered with an error (serf's `Result: false`).
    Refused(String),
    /// No answer: unreachable, timed out, or it could not open the request.
    NoAnswer(String),
}

/// One member's answer, by node name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAnswer {
    pub node: String,
    pub outcome: NodeOutcome,
}

/// The answers of every alive member to one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterAnswer {
    pub answers: Vec<NodeAnswer>,
}

/// Serf's `KeyResponse` with Consul's error: what `/v1/operator/keyring` reports for a pool.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyringSummary {
    /// Each key, with how many members hold it.
    pub keys: BTreeMap<String, usize>,
    /// Each primary key, with how many members encrypt with it.
    pub primary_keys: BTreeMap<String, usize>,
    /// Each member's error, by node name.
    pub messages: BTreeMap<String, String>,
    /// Alive members asked.
    pub num_nodes: usize,
    /// Members that answered (with success or with an error).
    pub num_resp: usize,
    /// Members that answered with an error.
    pub num_err: usize,
    /// serf's verdict: `n/m nodes reported failure`, or `n/m nodes reported success` when
    /// some did not answer.
    pub error: Option<String>,
}

impl ClusterAnswer {
    /// Adds the answers up as serf's `streamKeyResp` and `handleKeyRequest` do.
    pub fn summary(&self) -> KeyringSummary {
        let mut summary = KeyringSummary { num_nodes: self.answers.len(), ..KeyringSummary::default() };
        for answer in &self.answers {
            match &answer.outcome {
                NodeOutcome::Applied(node_keys) => {
                    summary.num_resp += 1;
                    for key in &node_keys.keys {
                        *summary.keys.entry(key.clone()).or_default() += 1;
                    }
                    if let Some(primary) = node_keys.primary() {
                        *summary.primary_keys.entry(primary.to_owned()).or_default() += 1;
                    }
                }
                NodeOutcome::Refused(message) => {
                    summary.num_resp += 1;
                    summary.num_err += 1;
                    summary.messages.insert(answer.node.clone(), message.clone());
                }
                // Not a response in serf's count; named anyway, so the operator knows who.
                NodeOutcome::NoAnswer(reason) => {
                    summary.messages.insert(answer.node.clone(), reason.clone());
                }
            }
        }
        let (failed, answered, nodes) = (summary.num_err, summary.num_resp, summary.num_nodes);
        summary.error = if failed > 0 {
            Some(format!("{failed}/{nodes} nodes reported failure"))
        } else if answered != nodes {
            Some(format!("{answered}/{nodes} nodes reported success"))
        } else {
            None
        };
        summary
    }
}

/// This member's side of keyring operations: its ring (shared with the sealer) and its file.
pub(super) struct LocalKeyring {
    sealer: Sealer,
    /// Where every change is saved (Consul's `<data_dir>/serf/local.keyring`); `None` in dev
    /// mode or without a data dir: memory only.
    file: Option<PathBuf>,
    /// Held while one operation computes, saves and swaps in a ring, so two operations never
    /// interleave their saves. Lives as long as the gossip agent.
    changes: tokio::sync::Mutex<()>,
}

impl LocalKeyring {
    pub(super) fn new(sealer: Sealer, file: Option<PathBuf>) -> LocalKeyring {
        LocalKeyring { sealer, file, changes: tokio::sync::Mutex::new(()) }
    }

    /// Applies `op` to this member's ring; answers the ring afterwards.
    pub(super) async fn apply(&self, op: &KeyringOp) -> Result<NodeKeys, KeyringError> {
        if !self.sealer.encrypted() {
            return Err(match op {
                KeyringOp::List => KeyringError::NothingToList,
                _ => KeyringError::NothingToModify,
            });
        }
        let _change = self.changes.lock().await;
        let ring = self.sealer.ring();
        let changed = match op {
            KeyringOp::List => return Ok(NodeKeys::of(&ring)),
            KeyringOp::Install(key) => keyring::install(&ring, &key.cipher)?,
            KeyringOp::Use(key) => keyring::use_key(&ring, &key.cipher)?,
            KeyringOp::Remove(key) => keyring::remove(&ring, &key.cipher)?,
        };
        debug_assert!(!changed.is_empty() && changed.len() <= KEYRING_KEYS_MAX);
        // Every successful change is saved, as serf's `writeKeyringFile` after each query.
        if let Some(file) = self.file.clone() {
            let to_save = changed.clone();
            let saved = tokio::task::spawn_blocking(move || keyring_file::write(&file, &to_save)).await;
            let saved = saved.map_err(|error| error.to_string()).and_then(|result| result.map_err(|error| error.to_string()));
            if let Err(reason) = saved {
                tracing::error!(%reason, "gossip: saving the keyring failed; the ring is unchanged");
                return Err(KeyringError::Save { reason });
            }
        }
        let node_keys = NodeKeys::of(&changed);
        self.sealer.replace_ring(changed);
        tracing::info!(operation = op_name(op), keys = node_keys.keys.len(), "gossip: keyring changed");
        Ok(node_keys)
    }
}

/// The operation's name for logs (never its key).
pub(super) fn op_name(op: &KeyringOp) -> &'static str {
    match op {
        KeyringOp::List => "list",
        KeyringOp::Install(_) => "install",
        KeyringOp::Use(_) => "use",
        KeyringOp::Remove(_) => "remove",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(node: &str, keys: &[&str]) -> NodeAnswer {
        let keys = keys.iter().map(|key| key.to_string()).collect();
        NodeAnswer { node: node.to_owned(), outcome: NodeOutcome::Applied(NodeKeys { keys }) }
    }

    #[test]
    fn a_summary_counts_keys_and_primaries_per_member() {
        let answer = ClusterAnswer { answers: vec![applied("a", &["new", "old"]), applied("b", &["old", "new"]), applied("c", &["new"])] };
        let summary = answer.summary();
        assert_eq!(summary.keys, BTreeMap::from([("new".to_owned(), 3), ("old".to_owned(), 2)]));
        assert_eq!(summary.primary_keys, BTreeMap::from([("new".to_owned(), 2), ("old".to_owned(), 1)]));
        assert_eq!((summary.num_nodes, summary.num_resp, summary.num_err), (3, 3, 0));
        assert_eq!(summary.error, None);
        assert!(summary.messages.is_empty());
    }

    #[test]
    fn a_summary_reports_failures_then_missing_answers_in_serfs_words() {
        let refused = NodeAnswer { node: "b".into(), outcome: NodeOutcome::Refused("Requested key is not in the keyring".into()) };
        let silent = NodeAnswer { node: "c".into(), outcome: NodeOutcome::NoAnswer("i/o timeout".into()) };
        let summary = ClusterAnswer { answers: vec![applied("a", &["k"]), refused, silent.clone()] }.summary();
        assert_eq!(summary.error.as_deref(), Some("1/3 nodes reported failure"));
        assert_eq!((summary.num_resp, summary.num_err), (2, 1));
        assert_eq!(summary.messages.get("b").map(String::as_str), Some("Requested key is not in the keyring"));
        assert_eq!(summary.messages.get("c").map(String::as_str), Some("i/o timeout"));
        let summary = ClusterAnswer { answers: vec![applied("a", &["k"]), silent] }.summary();
        assert_eq!(summary.error.as_deref(), Some("1/2 nodes reported success"));
    }

    #[tokio::test]
    async fn a_pool_without_encryption_refuses_every_operation() {
        let local = LocalKeyring::new(Sealer::new(Vec::new(), true, true), None);
        let key = GossipKey::from_base64(&keyring::generate_key_base64()).expect("a key");
        assert_eq!(local.apply(&KeyringOp::List).await, Err(KeyringError::NothingToList));
        assert_eq!(local.apply(&KeyringOp::Install(key)).await, Err(KeyringError::NothingToModify));
    }

    #[tokio::test]
    async fn a_change_is_saved_before_it_is_used_and_a_failed_save_changes_nothing() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let file = dir.path().join("serf").join("local.keyring");
        let old = GossipKey::from_base64(&keyring::generate_key_base64()).expect("a key");
        let new = GossipKey::from_base64(&keyring::generate_key_base64()).expect("a key");
        let sealer = Sealer::new(vec![old.cipher.clone()], true, true);
        let local = LocalKeyring::new(sealer.clone(), Some(file.clone()));
        local.apply(&KeyringOp::Install(new.clone())).await.expect("installed");
        local.apply(&KeyringOp::Use(new.clone())).await.expect("used");
        let keys = local.apply(&KeyringOp::Remove(old.clone())).await.expect("removed");
        assert_eq!(keys.keys, [new.to_base64()]);
        let saved = keyring_file::read(&file).expect("readable").expect("saved");
        assert_eq!(NodeKeys::of(&saved), keys);
        assert_eq!(NodeKeys::of(&sealer.ring()), keys);
        // A directory where the file should be: the save fails and the ring stays as it was.
        let directory = dir.path().join("blocked");
        std::fs::create_dir(&directory).expect("a directory");
        let blocked = LocalKeyring::new(sealer.clone(), Some(directory));
        let refused = blocked.apply(&KeyringOp::Install(old)).await.err().expect("refused");
        assert!(matches!(refused, KeyringError::Save { .. }), "{refused:?}");
        assert_eq!(NodeKeys::of(&sealer.ring()), keys);
    }
}
