//! Golden bytes (tests only): every encoding that outlives a release, pinned in files.
//!
//! `tests/golden/*.golden` hold one line per case, `<name> <hex>`, written by the release that
//! introduced the case. They are a compatibility promise: a later build must encode each
//! case's value to exactly those bytes and decode those bytes back to the value. A change to
//! an encoded type that would break old bytes fails here; the way to change a format is a new
//! format version with a decoder for the old one (`docs/formats.md`), which adds new cases
//! and keeps the old lines.
//!
//! Every variant of every encoded enum must have a case: [`assert_every_variant`] decodes the
//! first tag past the ones covered and insists that it is unknown, so a variant appended
//! without a case fails the test that covers its enum.
//!
//! New cases are appended by `CAIRN_GOLDEN_BLESS=1 cargo test --lib golden`; existing lines are
//! never rewritten (delete a line by hand only for a case that never shipped).

mod catalog;
mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::path::PathBuf;

/// One pinned value: its name, its encoding by this build, and a check that given bytes
/// decode back to it.
pub(crate) struct Case {
    name: String,
    encoded: Vec<u8>,
    decodes_back: Box<dyn Fn(&[u8]) -> Result<(), String>>,
}

/// A case for `value` with its encoder and decoder.
pub(crate) fn case<T, E>(name: impl Into<String>, value: T, encode: impl Fn(&T) -> Vec<u8>, decode: impl Fn(&[u8]) -> Result<T, E> + 'static) -> Case
where
    T: PartialEq + Debug + 'static,
    E: Debug,
{
    let encoded = encode(&value);
    let decodes_back = Box::new(move |bytes: &[u8]| match decode(bytes) {
        Ok(decoded) if decoded == value => Ok(()),
        Ok(decoded) => Err(format!("decodes to {decoded:?}, not {value:?}")),
        Err(error) => Err(format!("does not decode: {error:?}")),
    });
    Case { name: name.into(), encoded, decodes_back }
}

/// A case for a value encoded with postcard and no format byte of its own (a part of a
/// versioned whole, or a value of a gossip or RPC message).
pub(crate) fn plain<T>(name: impl Into<String>, value: T) -> Case
where
    T: PartialEq + Debug + serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    case(name, value, |v| postcard::to_allocvec(v).expect("encodes"), |b| postcard::from_bytes::<T>(b))
}

fn golden_path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{file}.golden"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    (0..text.len()).step_by(2).map(|i| text.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok())).collect()
}

fn read_golden(file: &str) -> BTreeMap<String, Vec<u8>> {
    let text = std::fs::read_to_string(golden_path(file)).unwrap_or_default();
    let mut pinned = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let (name, bytes) = line.split_once(' ').unwrap_or_else(|| panic!("{file}.golden: malformed line {line:?}"));
        let bytes = unhex(bytes.trim()).unwrap_or_else(|| panic!("{file}.golden: bad hex for {name}"));
        assert!(pinned.insert(name.to_string(), bytes).is_none(), "{file}.golden: {name} is pinned twice");
    }
    pinned
}

/// Checks `cases` against `tests/golden/<file>.golden` (see the module docs).
pub(crate) fn check(file: &str, header: &str, cases: Vec<Case>) {
    let pinned = read_golden(file);
    let mut problems = Vec::new();
    let mut missing = Vec::new();
    let mut names = BTreeSet::new();
    for case in &cases {
        assert!(names.insert(case.name.clone()), "two cases are named {}", case.name);
        match pinned.get(&case.name) {
            None => missing.push(case),
            Some(bytes) => {
                if *bytes != case.encoded {
                    problems.push(format!("{}: encodes to {} but {file}.golden pins {}", case.name, hex(&case.encoded), hex(bytes)));
                }
                if let Err(error) = (case.decodes_back)(bytes) {
                    problems.push(format!("{}: the pinned bytes {error}", case.name));
                }
            }
        }
    }
    for name in pinned.keys().filter(|name| !names.contains(*name)) {
        problems.push(format!("{name}: pinned in {file}.golden but no longer a case (formats are append-only)"));
    }
    if !missing.is_empty() && std::env::var_os("CAIRN_GOLDEN_BLESS").is_some() {
        bless(file, header, &missing);
    } else if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|c| c.name.as_str()).collect();
        problems.push(format!("not pinned yet: {names:?}; pin them with CAIRN_GOLDEN_BLESS=1 cargo test --lib golden"));
    }
    assert!(problems.is_empty(), "golden bytes of {file}:\n{}", problems.join("\n"));
}

/// Appends the missing cases (after checking that this build decodes its own bytes).
fn bless(file: &str, header: &str, missing: &[&Case]) {
    let path = golden_path(file);
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|_| header.lines().map(|l| format!("# {l}\n")).collect());
    for case in missing {
        (case.decodes_back)(&case.encoded).unwrap_or_else(|e| panic!("{}: this build's own bytes {e}", case.name));
        text.push_str(&format!("{} {}\n", case.name, hex(&case.encoded)));
    }
    std::fs::write(&path, text).expect("write the golden file");
}

/// Every variant of the enum `T` is covered: `tags` are the variant tags the cases use (the
/// first byte of each plain encoding), and the tag after the highest must not decode as a
/// variant of `T` (postcard refuses an unknown tag; a known one fails later or succeeds).
pub(crate) fn assert_every_variant<T: serde::de::DeserializeOwned>(what: &str, tags: &BTreeSet<u8>) {
    let count = tags.len() as u8;
    assert_eq!(tags.iter().copied().collect::<Vec<_>>(), (0..count).collect::<Vec<_>>(), "{what}: cases miss a variant tag (have {tags:?})");
    let next = [count, 0, 0, 0, 0, 0, 0, 0];
    assert!(
        matches!(postcard::from_bytes::<T>(&next), Err(postcard::Error::SerdeDeCustom)),
        "{what}: variant tag {count} exists but has no golden case"
    );
}

/// The variant tag of a plain encoding (tags below 128 are one byte).
pub(crate) fn tag_of<T: serde::Serialize>(value: &T) -> u8 {
    let bytes = postcard::to_allocvec(value).expect("encodes");
    assert!(bytes[0] < 128, "a variant tag past 127 needs a wider tag reader");
    bytes[0]
}
