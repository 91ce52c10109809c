//! Golden cases of the replicated data model: every `Command` variant (and the enums inside
//! commands), every `Outcome` variant, and every row type's key and value.

use std::collections::BTreeSet;

use crate::catalog::acl::AclOp;
use crate::catalog::codec::{decode_command, decode_row_key, encode_command, encode_row_key};
use crate::catalog::command::{Command, SessionRequest};
use crate::catalog::model::{HealthStatus, SessionBehavior};
use crate::catalog::prepared_query::{PreparedQuery, PreparedQueryOp, ServiceQuery};
use crate::catalog::txn::{TxnCatalogVerb, TxnError, TxnKvOp, TxnKvVerb, TxnOp};
use crate::catalog::{Catalog, ChangeSet, Outcome, apply};
use crate::fuzz::samples;
use crate::golden::{Case, assert_every_variant, case, check, plain, tag_of};

/// How many kinds of row the catalog persists (the variants of `RowKey`).
const ROW_KINDS: usize = 24;

const HEADER: &str = "Golden bytes of cairn's replicated commands, outcomes and catalog rows (src/golden).
A compatibility promise: never edit or delete a line; see docs/formats.md.";

/// A session whose TTL is not whole seconds: written in format 2.
pub(crate) fn exact_session() -> Command {
    let request = SessionRequest {
        id: "5f1a2b3c-0000-4000-8000-00000000e7a5".into(),
        name: "exact".into(),
        node: "node-1".into(),
        node_checks: vec!["serfHealth".into()],
        service_checks: Vec::new(),
        lock_delay_ms: 0,
        behavior: SessionBehavior::Delete,
        ttl_s: 8,
    };
    Command::SessionCreateExact { request, ttl_ms: 7_500 }
}

fn prepared_query_ops() -> Vec<PreparedQueryOp> {
    let mut query = PreparedQuery {
        id: "11111111-2222-3333-4444-555555555555".into(),
        name: "web-near".into(),
        service: ServiceQuery { service: "web".into(), ..ServiceQuery::default() },
        ..PreparedQuery::default()
    };
    query.service.only_passing = true;
    query.service.tags = vec!["prod".into(), "!canary".into()];
    query.dns.ttl = "10s".into();
    vec![PreparedQueryOp::Set { query, create: true }, PreparedQueryOp::Delete { id: "00000000-2222-3333-4444-555555555555".into() }]
}

/// How many of the fuzzer's samples the golden cases are built from. Samples the fuzzer adds
/// later are left out (they would move the indexes the pinned rows were written at): a new
/// variant gets its golden case in [`later_commands`].
const FUZZ_SAMPLES_PINNED: usize = 27;

fn pinned_samples() -> Vec<Command> {
    let samples = samples::commands();
    assert!(samples.len() >= FUZZ_SAMPLES_PINNED, "the fuzzer's samples shrank: the golden cases are built from them");
    samples.into_iter().take(FUZZ_SAMPLES_PINNED).collect()
}

/// The catalog the pinned samples leave behind, then replaced by a restore of its own rows
/// (what `samples::catalog` did when the golden cases were written), and the next index.
pub(crate) fn samples_catalog() -> (Catalog, u64) {
    let mut catalog = Catalog::new();
    let mut index = 1;
    for command in pinned_samples() {
        apply(&mut catalog, index, &command, &mut ChangeSet::new());
        index += 1;
    }
    let rows = samples::rows(&catalog);
    assert_eq!(apply(&mut catalog, index, &Command::Restore { rows }, &mut ChangeSet::new()), Outcome::Done);
    (catalog, index + 1)
}

/// Commands appended after the golden files were first written, in the order they came.
fn later_commands() -> Vec<Command> {
    let settings = crate::catalog::model::AutopilotSettings {
        cleanup_dead_servers: true,
        last_contact_threshold_ns: 200_000_000,
        max_trailing_logs: 250,
        min_quorum: 0,
        server_stabilization_time_ns: 10_000_000_000,
    };
    vec![Command::SetAutopilotConfig { settings, cas_index: Some(0) }]
}

/// One of every command: the fuzzer's samples, the variants they lack, a restore, and the
/// variants added since.
fn commands() -> Vec<Command> {
    let mut commands = first_commands();
    commands.extend(later_commands());
    commands
}

/// The commands the golden files were first written with.
fn first_commands() -> Vec<Command> {
    let mut commands = pinned_samples();
    commands.extend(prepared_query_ops().into_iter().map(Command::PreparedQuery));
    commands.push(exact_session());
    // What the samples only send wrapped in `At` or `Batch`, unwrapped.
    commands.extend([
        Command::DeregisterNode { node: "node-9".into() },
        Command::DeregisterService { node: "node-1".into(), service_id: "web-9".into() },
        Command::DeregisterCheck { node: "node-1".into(), check_id: "web-9-http".into() },
        Command::KvDelete { key: "app/gone".into(), cas_index: Some(3) },
    ]);
    let gone = "00000000-0000-4000-8000-00000000dead".to_string();
    commands.extend(
        [
            AclOp::TokenDelete { accessor_id: gone.clone() },
            AclOp::PolicyDelete { id: gone.clone() },
            AclOp::RoleDelete { id: gone.clone() },
            AclOp::AuthMethodDelete { name: "gone".into() },
            AclOp::BindingRuleDelete { id: gone },
        ]
        .map(Command::Acl),
    );
    let (catalog, _) = samples_catalog();
    let mut rows = samples::rows(&catalog);
    rows.truncate(3);
    commands.push(Command::Restore { rows });
    commands
}

/// `Name` of `Name { .. }` / `Name(..)`, from the derived `Debug`.
fn variant_name<T: std::fmt::Debug>(value: &T) -> String {
    format!("{value:?}").split(['(', ' ', '{']).next().unwrap_or_default().to_string()
}

/// Names a case `<prefix>.<Variant>`, with `.2`, `.3`… for later cases of the same variant.
fn named(prefix: &str, variant: String, seen: &mut BTreeSet<String>) -> String {
    let base = format!("{prefix}.{variant}");
    (1..).map(|n| if n == 1 { base.clone() } else { format!("{base}.{n}") }).find(|name| seen.insert(name.clone())).expect("a free name")
}

#[test]
fn every_command_variant_is_pinned() {
    let commands = commands();
    let mut seen = BTreeSet::new();
    let mut cases: Vec<Case> = Vec::new();
    let (mut tags, mut acl_tags, mut txn_tags, mut query_tags) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for command in commands {
        tags.insert(tag_of(&command));
        match &command {
            Command::Acl(op) => _ = acl_tags.insert(tag_of(op)),
            Command::TxnOps { ops } => txn_tags.extend(ops.iter().map(tag_of)),
            Command::PreparedQuery(op) => _ = query_tags.insert(tag_of(op)),
            _ => {}
        }
        let name = match &command {
            Command::Acl(op) => named("command.Acl", variant_name(op), &mut seen),
            Command::PreparedQuery(op) => named("command.PreparedQuery", variant_name(op), &mut seen),
            other => named("command", variant_name(other), &mut seen),
        };
        cases.push(case(name, command, encode_command, decode_command));
    }
    // The unit enums inside commands, one case per variant.
    use TxnKvVerb::*;
    for (i, verb) in [Set, Cas, Lock, Unlock, Get, GetTree, CheckIndex, CheckSession, CheckNotExists, Delete, DeleteTree, DeleteCas, GetOrEmpty]
        .into_iter()
        .enumerate()
    {
        assert_eq!(tag_of(&verb) as usize, i);
        cases.push(plain(format!("txn.kv_verb.{verb:?}"), verb));
    }
    let catalog_verbs = [TxnCatalogVerb::Set, TxnCatalogVerb::Cas, TxnCatalogVerb::Get, TxnCatalogVerb::Delete, TxnCatalogVerb::DeleteCas];
    for verb in catalog_verbs {
        cases.push(plain(format!("txn.catalog_verb.{verb:?}"), verb));
    }
    for status in [HealthStatus::Passing, HealthStatus::Warning, HealthStatus::Critical] {
        cases.push(plain(format!("health_status.{status:?}"), status));
    }
    for behavior in [SessionBehavior::Release, SessionBehavior::Delete] {
        cases.push(plain(format!("session_behavior.{behavior:?}"), behavior));
    }
    assert_every_variant::<Command>("Command", &tags);
    assert_every_variant::<AclOp>("AclOp", &acl_tags);
    assert_every_variant::<TxnOp>("TxnOp", &txn_tags);
    assert_every_variant::<PreparedQueryOp>("PreparedQueryOp", &query_tags);
    assert_every_variant::<TxnKvVerb>("TxnKvVerb", &(0..13).collect());
    assert_every_variant::<TxnCatalogVerb>("TxnCatalogVerb", &catalog_verbs.iter().map(tag_of).collect());
    assert_every_variant::<HealthStatus>("HealthStatus", &(0..3).collect());
    assert_every_variant::<SessionBehavior>("SessionBehavior", &(0..2).collect());
    check("commands", HEADER, cases);
}

/// The outcomes of applying every sample command, and the failures they do not produce.
fn outcomes() -> Vec<Outcome> {
    let mut catalog = Catalog::new();
    let mut outcomes = Vec::new();
    for (index, command) in (1..).zip(first_commands()) {
        outcomes.push(apply(&mut catalog, index, &command, &mut ChangeSet::new()));
    }
    let error = TxnError { op_index: 1, what: "key \"app/x\" doesn't exist".into() };
    outcomes.push(Outcome::Txn(Err(vec![error.clone()])));
    outcomes.push(Outcome::TxnOps(Err(vec![error])));
    outcomes.push(Outcome::Bool(false));
    outcomes.push(Outcome::Rejected("Missing node registration for \"node-9\"".into()));
    let lock = TxnKvOp { verb: TxnKvVerb::Get, key: "app/config".into(), value: Vec::new(), flags: 0, index: 0, session: String::new() };
    outcomes.push(apply(&mut catalog, 1_000, &Command::Txn { ops: vec![lock] }, &mut ChangeSet::new()));
    for (index, command) in (2_000..).zip(later_commands()) {
        outcomes.push(apply(&mut catalog, index, &command, &mut ChangeSet::new()));
    }
    outcomes
}

#[test]
fn every_outcome_variant_is_pinned() {
    let mut seen = BTreeSet::new();
    let mut tags = BTreeSet::new();
    let mut cases = Vec::new();
    for outcome in outcomes() {
        tags.insert(tag_of(&outcome));
        let name = named("outcome", variant_name(&outcome), &mut seen);
        cases.push(plain(name, outcome));
    }
    assert_every_variant::<Outcome>("Outcome", &tags);
    check("outcomes", HEADER, cases);
}

/// The sample catalog, with the rows the fuzzer's samples leave out.
fn sample_catalog() -> Catalog {
    let (mut catalog, mut index) = samples_catalog();
    // A session that ends holding a lock leaves a lock delay behind.
    let holder = "9e0c1d2e-0000-4000-8000-00000000d1a7";
    let Command::SessionCreateExact { mut request, .. } = exact_session() else { unreachable!("exact_session is a session") };
    (request.id, request.lock_delay_ms) = (holder.into(), 15_000);
    let locked = [
        Command::SessionCreate(request),
        Command::KvLock { key: "app/held".into(), value: Vec::new(), flags: 0, session: holder.into(), now_ms: 1_700_000_005_000 },
        Command::SessionDestroy { session: holder.into(), now_ms: 1_700_000_006_000 },
    ];
    let extra = prepared_query_ops().into_iter().take(1).map(Command::PreparedQuery).chain([exact_session()]).chain(locked).chain(later_commands());
    for command in extra {
        let outcome = apply(&mut catalog, index, &command, &mut ChangeSet::new());
        assert!(!matches!(outcome, Outcome::Rejected(_)), "{command:?}: {outcome:?}");
        index += 1;
    }
    catalog
}

#[test]
fn every_row_type_is_pinned() {
    let catalog = sample_catalog();
    let mut seen = BTreeSet::new();
    let mut kinds = BTreeSet::new();
    let mut cases = Vec::new();
    for row in catalog.all_rows() {
        let kind = variant_name(&row);
        kinds.insert(kind.clone());
        let name = named("row", kind, &mut seen);
        let (_, value) = catalog.encode_row(&row).expect("a listed row encodes");
        cases.push(case(format!("{name}.key"), row.clone(), encode_row_key, decode_row_key));
        let decodes_back = {
            let (row, value) = (row.clone(), value.clone());
            move |bytes: &[u8]| -> Result<Vec<u8>, String> {
                let mut fresh = Catalog::new();
                fresh.load_row(&encode_row_key(&row), bytes).map_err(|e| e.to_string())?;
                let again = fresh.encode_row(&row).map(|(_, v)| v).ok_or("the row is gone")?;
                if again != value { Err(format!("reads back as {again:?}")) } else { Ok(again) }
            }
        };
        cases.push(case(format!("{name}.value"), value, Clone::clone, decodes_back));
    }
    assert_eq!(kinds.len(), ROW_KINDS, "the sample catalog lacks a row kind: has {kinds:?}");
    check("rows", HEADER, cases);
}
