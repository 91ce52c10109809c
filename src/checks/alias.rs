//! Alias checks: the pure status computation of Consul's `CheckAlias.processChecks`. An
//! alias check mirrors another service instance: critical if any of its checks (or its
//! node's checks) is critical, else warning if one warns, else passing. The agent feeds it
//! the checks it watches (its own local state, or another node's catalog rows) and reports
//! what it returns.

use super::CheckStatus;

/// One check as the alias computation sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AliasInput<'a> {
    pub node: &'a str,
    pub check_id: &'a str,
    pub name: &'a str,
    /// Empty for node-level checks.
    pub service_id: &'a str,
    pub status: CheckStatus,
    pub output: &'a str,
}

/// What the alias check aliases.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AliasTarget<'a> {
    /// Empty: this agent's own checks (all of them are local to it).
    pub node: &'a str,
    pub service_id: &'a str,
    /// The alias check itself, left out when it sits among the checks it reads (a
    /// node-level alias check on this agent); Consul would read its own critical start
    /// status and stay critical for ever.
    pub own_check_id: &'a str,
}

/// The alias status and output from `checks`; `service_exists` says whether the aliased
/// service is registered at all (asked only when none of its checks is among `checks`).
pub fn alias_status(target: &AliasTarget<'_>, checks: &[AliasInput<'_>], service_exists: impl FnOnce() -> bool) -> (CheckStatus, String) {
    let mut health = CheckStatus::Passing;
    let mut output = "No checks found.".to_owned();
    let mut service_found = false;
    for check in checks {
        if !target.node.is_empty() && target.node != check.node {
            continue;
        }
        if target.node.is_empty() && check.check_id == target.own_check_id {
            continue;
        }
        let service_match = check.service_id == target.service_id;
        if !check.service_id.is_empty() && !service_match {
            continue;
        }
        if service_match {
            service_found = true;
        }
        match check.status {
            CheckStatus::Critical | CheckStatus::Warning => {
                health = check.status;
                output = format!("Aliased check {:?} failing: {}", check.name, check.output);
                // A critical check decides; a warning may still be overruled by one.
                if check.status == CheckStatus::Critical {
                    break;
                }
            }
            CheckStatus::Passing => {
                if health == CheckStatus::Passing {
                    output = "All checks passing.".to_owned();
                }
            }
        }
    }
    if !service_found && !service_exists() {
        output = format!("Service {} could not be found on node {}", target.service_id, target.node);
        health = CheckStatus::Critical;
    }
    (health, output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use CheckStatus::{Critical, Passing, Warning};

    fn input<'a>(node: &'a str, id: &'a str, service_id: &'a str, status: CheckStatus, output: &'a str) -> AliasInput<'a> {
        AliasInput { node, check_id: id, name: id, service_id, status, output }
    }

    fn target<'a>(node: &'a str, service_id: &'a str) -> AliasTarget<'a> {
        AliasTarget { node, service_id, own_check_id: "alias" }
    }

    #[test]
    fn worst_status_of_the_service_and_its_node_wins() {
        let checks = [
            input("n1", "web-ok", "web", Passing, "fine"),
            input("n1", "web-slow", "web", Warning, "slow"),
            input("n1", "other", "db", Critical, "down"),
        ];
        assert_eq!(alias_status(&target("n1", "web"), &checks, || true), (Warning, "Aliased check \"web-slow\" failing: slow".into()));
        let with_node = [checks[0].clone(), input("n1", "serfHealth", "", Critical, "gone"), checks[1].clone()];
        assert_eq!(alias_status(&target("n1", "web"), &with_node, || true), (Critical, "Aliased check \"serfHealth\" failing: gone".into()));
        assert_eq!(alias_status(&target("n1", "web"), &checks[..1], || true), (Passing, "All checks passing.".into()));
    }

    #[test]
    fn checks_of_other_nodes_are_ignored() {
        let checks = [input("n2", "web-bad", "web", Critical, "x"), input("n1", "web-ok", "web", Passing, "")];
        assert_eq!(alias_status(&target("n1", "web"), &checks, || true), (Passing, "All checks passing.".into()));
    }

    #[test]
    fn a_missing_service_is_critical_and_one_without_checks_passes() {
        let none: [AliasInput<'_>; 0] = [];
        assert_eq!(alias_status(&target("", "web"), &none, || false), (Critical, "Service web could not be found on node ".into()));
        assert_eq!(alias_status(&target("n1", "web"), &none, || false), (Critical, "Service web could not be found on node n1".into()));
        assert_eq!(alias_status(&target("", "web"), &none, || true), (Passing, "No checks found.".into()));
    }

    #[test]
    fn a_local_alias_check_does_not_read_itself() {
        let checks = [input("", "alias", "", Critical, ""), input("", "web-ok", "web", Passing, "")];
        assert_eq!(alias_status(&target("", "web"), &checks, || true), (Passing, "All checks passing.".into()));
    }
}
