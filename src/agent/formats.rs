//! Which encoding format the whole cluster reads, and keeping newer commands out until it does.
//!
//! Every server announces the newest format it reads in its gossip tags (`ft_fmt`; Consul
//! announces its feature flags the same way, as `ft_*` serf tags, and gates features on
//! `ServersMeetMinimumVersion`). A server without the tag is of the first release: format 1.
//! Before a command is proposed, [`Agent::fit_format`] rewrites it into the oldest format that
//! every server of the cluster reads (`Command::downgraded`), or refuses it. So during a
//! rolling upgrade the leader never proposes what an older follower could not decode, and
//! once the last server is upgraded the new formats switch on by themselves.

use crate::agent::Agent;
use crate::agent::role::WriteError;
use crate::catalog::codec::{FORMAT_NEWEST, FORMAT_V1};
use crate::catalog::command::Command;
use crate::gossip::{Member, MemberStatus};
use crate::raft::RaftServer;

/// The serf tag carrying the newest format a server reads.
pub const FORMAT_TAG: &str = "ft_fmt";

/// The format a member announces: its tag, or format 1 for a release that predates the tag.
fn announced(member: &Member) -> u8 {
    member.tags.get(FORMAT_TAG).and_then(|v| v.parse().ok()).unwrap_or(FORMAT_V1)
}

impl Agent {
    /// The newest format every server reads: the Raft members on a server (one that gossip
    /// does not describe counts as format 1), the servers gossip knows on a client agent.
    pub fn cluster_format(&self, raft: Option<&RaftServer>) -> u8 {
        let members = self.members();
        let format_of = |name: &str| members.iter().find(|m| m.name == name).map_or(FORMAT_V1, announced);
        let formats: Vec<u8> = match raft {
            Some(raft) => {
                let status = raft.status();
                status.voters.iter().chain(&status.learners).map(|(_, node)| format_of(&node.name)).collect()
            }
            None => members
                .iter()
                .filter(|m| m.status != MemberStatus::Left && m.tags.get("role").is_some_and(|r| r == "consul"))
                .filter(|m| m.tags.get("dc").is_some_and(|dc| *dc == self.identity().datacenter))
                .map(announced)
                .collect(),
        };
        formats.into_iter().min().unwrap_or(FORMAT_V1).min(FORMAT_NEWEST)
    }

    /// `command` in a format every server reads. Commands of the first format pass without
    /// looking at the cluster (every write takes this path).
    pub(crate) fn fit_format(&self, raft: Option<&RaftServer>, command: Command) -> Result<Command, WriteError> {
        if command.format_needed() <= FORMAT_V1 {
            return Ok(command);
        }
        let format = self.cluster_format(raft);
        command.downgraded(format).map_err(|command| {
            tracing::warn!(needed = command.format_needed(), cluster = format, "refused a write that not every server can read yet");
            WriteError::FormatTooNew { needed: command.format_needed(), cluster: format }
        })
    }
}
