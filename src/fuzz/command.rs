//! Fuzzes `catalog::codec::decode_command`, the decoder of every Raft log entry's payload and
//! of the writes other agents send to `/raft/forward` and `/rpc/write` (`rpc::decode`, the
//! same bytes). The attack: a LAN member or a compromised peer posts hostile bytes, hoping to
//! crash every server that decodes them, or, worse, to commit a command whose `apply` panics,
//! which would crash every server on every restart as it replays the log.
//!
//! A command that decodes is applied to the catalog the sample commands build, and the
//! catalog's own promises are checked: `apply` never panics; a rejected command changes
//! nothing; applying is deterministic; and the rows it leaves, persisted and loaded again (a
//! restart), give back the same catalog.

use crate::catalog::codec::{decode_command, encode_command};
use crate::catalog::{Catalog, ChangeSet, Command, Outcome, apply};
use crate::fuzz::{FUZZ_ALLOC_BYTES_MAX_DEFAULT, Target, Verdict, fuzz, samples};

/// Largest command generated, in bytes (the server port takes 32 MiB; big values add nothing
/// a decoder could get wrong that small ones do not).
const COMMAND_INPUT_BYTES_MAX: usize = 64 * 1024;

/// Checks the catalog's promises for one decoded command, applied at `index` after `base`;
/// returns the catalog after it and the outcome.
pub(super) fn apply_and_check(base: &Catalog, index: u64, command: &Command) -> (Catalog, Outcome) {
    let mut catalog = base.clone();
    let mut changes = ChangeSet::new();
    let outcome = apply(&mut catalog, index, command, &mut changes);
    if let Outcome::Rejected(reason) = &outcome {
        assert!(catalog == *base, "a rejected command ({reason}) changed the catalog");
    }
    let mut again = base.clone();
    let outcome_again = apply(&mut again, index, command, &mut ChangeSet::new());
    assert_eq!(outcome, outcome_again, "apply is not deterministic");
    assert!(again == catalog, "apply is not deterministic: two servers would diverge");
    assert!(catalog.last_index() >= base.last_index(), "the catalog's last index went backwards");
    let mut reloaded = Catalog::new();
    for (key, value) in samples::rows(&catalog) {
        reloaded.load_row(&key, &value).unwrap_or_else(|error| panic!("a row apply wrote does not load: {error}"));
    }
    assert!(reloaded == catalog, "the rows persisted after apply do not load back to the same catalog (a restart would diverge)");
    (catalog, outcome)
}

fn seeds() -> Vec<Vec<u8>> {
    samples::commands().iter().chain([&Command::Restore { rows: samples::rows(&samples::catalog().0) }]).map(encode_command).collect()
}

/// Command payloads: decoded, re-encoded, and applied to a populated catalog.
#[test]
fn decode_and_apply() {
    let target = Target {
        name: "command::decode_and_apply",
        seeds: seeds(),
        dictionary: Vec::new(),
        input_bytes_max: COMMAND_INPUT_BYTES_MAX,
        alloc_bytes_max: FUZZ_ALLOC_BYTES_MAX_DEFAULT,
    };
    fuzz(target, || {
        let (base, index) = samples::catalog();
        move |input: &[u8]| {
            let decoded = decode_command(input);
            let forwarded: Result<Command, _> = crate::rpc::decode(input);
            assert_eq!(decoded.as_ref().ok(), forwarded.as_ref().ok(), "a log entry and a forwarded write decode differently");
            let Ok(command) = decoded else { return Verdict::Refused };
            let encoded = encode_command(&command);
            assert_eq!(decode_command(&encoded).ok().as_ref(), Some(&command), "a decoded command does not survive a round trip");
            let _ = command.payload_bytes();
            apply_and_check(&base, index, &command);
            Verdict::Accepted
        }
    });
}
