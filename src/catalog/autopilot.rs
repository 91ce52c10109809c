//! Consul's autopilot configuration as replicated state (`/v1/operator/autopilot/configuration`):
//! one row, set whole by `Command::SetAutopilotConfig`, optionally check-and-set on its
//! `ModifyIndex`. The leader seeds it from the agent's `autopilot` settings when the cluster
//! has none (check-and-set on 0: only while none exists), as Consul's
//! `getOrCreateAutopilotConfig` does.

use crate::catalog::model::{AutopilotConfig, AutopilotSettings};
use crate::catalog::{Catalog, ChangeSet, Outcome, RowKey};

/// Replaces the configuration, unless `cas_index` names another `ModifyIndex`. A `cas_index`
/// of 0 succeeds only while no configuration exists (as KV's `?cas=0`). Answers whether it
/// took effect.
pub(super) fn set(catalog: &mut Catalog, index: u64, settings: &AutopilotSettings, cas_index: Option<u64>, changes: &mut ChangeSet) -> Outcome {
    let existing = catalog.autopilot.as_ref();
    if let Some(cas) = cas_index
        && existing.map_or(0, |config| config.modify_index) != cas
    {
        return Outcome::Bool(false);
    }
    let create_index = existing.map_or(index, |config| config.create_index);
    catalog.autopilot = Some(AutopilotConfig { settings: settings.clone(), create_index, modify_index: index });
    changes.touch(RowKey::AutopilotConfig);
    Outcome::Bool(true)
}

impl Catalog {
    /// The replicated autopilot configuration, once the leader has stored one.
    pub fn autopilot_config(&self) -> Option<&AutopilotConfig> {
        self.autopilot.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use crate::catalog::model::AutopilotSettings;
    use crate::catalog::{Catalog, ChangeSet, Command, Outcome, apply};

    fn settings(cleanup: bool) -> AutopilotSettings {
        AutopilotSettings {
            cleanup_dead_servers: cleanup,
            last_contact_threshold_ns: 200_000_000,
            max_trailing_logs: 250,
            min_quorum: 0,
            server_stabilization_time_ns: 10_000_000_000,
        }
    }

    fn set(catalog: &mut Catalog, index: u64, cleanup: bool, cas_index: Option<u64>) -> Outcome {
        apply(catalog, index, &Command::SetAutopilotConfig { settings: settings(cleanup), cas_index }, &mut ChangeSet::new())
    }

    #[test]
    fn check_and_set_follows_the_modify_index() {
        let mut catalog = Catalog::new();
        assert_eq!(set(&mut catalog, 5, true, Some(3)), Outcome::Bool(false), "nothing to match yet");
        assert_eq!(set(&mut catalog, 6, true, Some(0)), Outcome::Bool(true), "0 seeds an absent config");
        assert_eq!(set(&mut catalog, 7, false, Some(0)), Outcome::Bool(false), "but never replaces one");
        let config = catalog.autopilot_config().cloned().expect("stored");
        assert_eq!((config.create_index, config.modify_index, config.settings.cleanup_dead_servers), (6, 6, true));
        assert_eq!(set(&mut catalog, 8, false, Some(1006)), Outcome::Bool(false));
        assert_eq!(set(&mut catalog, 9, false, Some(6)), Outcome::Bool(true));
        assert_eq!(set(&mut catalog, 10, true, None), Outcome::Bool(true), "no cas: unconditional");
        let config = catalog.autopilot_config().cloned().expect("stored");
        assert_eq!((config.create_index, config.modify_index), (6, 10));
        assert_eq!(catalog.last_index(), 10, "the write has its own index");

        // The row is a compatibility promise too: key `a`, then the settings and indexes.
        let (key, value) = catalog.encode_row(&crate::catalog::RowKey::AutopilotConfig).expect("stored");
        let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!((key, hex.as_str()), (b"a".to_vec(), "01 01 8084af5f fa01 00 80c8afa025 06 0a".split_whitespace().collect::<String>().as_str()));

        let mut reloaded = Catalog::new();
        for row in catalog.all_rows() {
            let (key, value) = catalog.encode_row(&row).expect("row exists");
            reloaded.load_row(&key, &value).expect("row decodes");
        }
        assert_eq!(reloaded, catalog);
    }
}
