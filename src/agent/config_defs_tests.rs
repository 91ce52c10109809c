//! The reload diff: new, removed, changed and unchanged definitions, and entries that
//! disappeared from the local state since.

use super::{ConfigAction, ConfigDefinitions, LocalIds, ServiceDefinition, diff};
use crate::agent::local::{CheckRunner, LocalCheck};
use crate::catalog::command::ServiceRegistration;

fn service(id: &str, port: u16, checks: &[(&str, u64)]) -> ServiceDefinition {
    ServiceDefinition {
        registration: ServiceRegistration {
            id: id.into(),
            name: id.into(),
            port,
            ..Default::default()
        },
        checks: checks.iter().map(|(check_id, ttl_ms)| check(check_id, id, *ttl_ms)).collect(),
    }
}

fn check(id: &str, service_id: &str, ttl_ms: u64) -> LocalCheck {
    let mut check = LocalCheck { runner: Some(CheckRunner::Ttl { ttl_ms }), ..LocalCheck::for_test(id, service_id) };
    check.registration.definition.check_type = "ttl".into();
    check
}

fn definitions(services: Vec<ServiceDefinition>, checks: Vec<LocalCheck>) -> ConfigDefinitions {
    ConfigDefinitions {
        services: services.into_iter().map(|s| (s.registration.id.clone(), s)).collect(),
        checks: checks.into_iter().map(|c| (c.registration.check_id.clone(), c)).collect(),
    }
}

/// Every ID of `defs` is present in the local state.
fn all_present(defs: &ConfigDefinitions) -> LocalIds {
    defs.ids()
}

fn register(id: &str, check_ids: &[&str]) -> ConfigAction {
    ConfigAction::RegisterService { id: id.into(), check_ids: check_ids.iter().map(|c| c.to_string()).collect() }
}

#[test]
fn the_first_apply_registers_everything() {
    let wanted = definitions(vec![service("web", 80, &[("web-ttl", 1000)])], vec![check("disk", "", 5000)]);
    let actions = diff(&ConfigDefinitions::default(), &wanted, &LocalIds::default());
    assert_eq!(actions, vec![register("web", &["web-ttl"]), ConfigAction::RegisterCheck("disk".into())]);
}

#[test]
fn an_unchanged_configuration_does_nothing() {
    let applied = definitions(vec![service("web", 80, &[("web-ttl", 1000)])], vec![check("disk", "", 5000)]);
    assert_eq!(diff(&applied, &applied.clone(), &all_present(&applied)), vec![]);
}

#[test]
fn new_removed_and_changed_entries_and_only_those_are_touched() {
    let applied = definitions(
        vec![service("web", 80, &[("web-ttl", 1000), ("web-old", 1000)]), service("db", 5432, &[]), service("cache", 6379, &[("cache-ttl", 1000)])],
        vec![check("disk", "", 5000), check("mem", "", 5000)],
    );
    let wanted = definitions(
        // web: one check removed, one unchanged; db unchanged; cache's port changed; api new.
        vec![service("web", 80, &[("web-ttl", 1000)]), service("db", 5432, &[]), service("cache", 6380, &[("cache-ttl", 1000)]), service("api", 9000, &[])],
        // disk: changed TTL; mem removed; load new.
        vec![check("disk", "", 9000), check("load", "", 5000)],
    );
    let actions = diff(&applied, &wanted, &all_present(&applied));
    assert_eq!(
        actions,
        vec![
            ConfigAction::DeregisterCheck("web-old".into()),
            ConfigAction::DeregisterCheck("mem".into()),
            // A changed service keeps its unchanged check (and that check's status).
            register("api", &[]),
            register("cache", &[]),
            ConfigAction::RegisterCheck("disk".into()),
            ConfigAction::RegisterCheck("load".into()),
        ]
    );
    let removed = definitions(vec![service("web", 80, &[("web-ttl", 1000)])], vec![]);
    let actions = diff(&applied, &removed, &all_present(&applied));
    assert_eq!(
        actions,
        vec![
            ConfigAction::DeregisterService("cache".into()),
            ConfigAction::DeregisterService("db".into()),
            ConfigAction::DeregisterCheck("web-old".into()),
            ConfigAction::DeregisterCheck("disk".into()),
            ConfigAction::DeregisterCheck("mem".into()),
        ]
    );
}

#[test]
fn entries_deregistered_through_the_api_come_back_and_are_not_deregistered_twice() {
    let applied = definitions(vec![service("web", 80, &[("web-ttl", 1000)]), service("db", 1, &[])], vec![check("disk", "", 5000)]);
    let mut present = all_present(&applied);
    present.checks.remove("web-ttl");
    present.checks.remove("disk");
    present.services.remove("db");
    assert_eq!(diff(&applied, &applied, &present), vec![register("db", &[]), register("web", &["web-ttl"]), ConfigAction::RegisterCheck("disk".into())]);
    // Removed from the config while already gone: nothing to do.
    assert_eq!(diff(&applied, &definitions(vec![service("web", 80, &[("web-ttl", 1000)])], vec![]), &present), vec![register("web", &["web-ttl"])]);
}

#[test]
fn a_check_moving_from_a_service_to_the_top_level_is_kept() {
    let applied = definitions(vec![service("web", 80, &[("c", 1000)])], vec![]);
    let wanted = definitions(vec![service("web", 80, &[])], vec![check("c", "web", 1000)]);
    assert_eq!(diff(&applied, &wanted, &all_present(&applied)), vec![ConfigAction::RegisterCheck("c".into())]);
}
