//! Mutations shared by the soak's fuzzers: of JSON values (type confusion, hostile and huge
//! strings, boundary numbers, long lists, unknown and missing fields, deep nesting, duplicate
//! keys, invalid UTF-8, truncation), of text (query values, filters, names) and of raw bytes.
//! Every size is bounded: nothing built here is larger than the agent's body limit.

use rand::Rng;
use rand::seq::SliceRandom;
use serde_json::Value;

/// Longest hostile string put into a JSON body (under the agent's 576 KiB body limit).
pub(crate) const HUGE_STRING_BYTES_MAX: usize = 400 * 1024;
/// Deepest nesting spliced into a body or a filter.
pub(crate) const NESTING_DEPTH_MAX: usize = 20_000;
/// Longest list grown by duplicating an element (past the agent's tag and meta limits).
const LIST_LENGTH_MAX: usize = 300;
/// Stands for deep nesting in a serialized body until it is spliced in.
const NEST_MARKER: &str = "@@soak-nest@@";

/// Strings that stress decoders: empty, control characters, non-ASCII, look-alikes of other
/// types, path tricks, durations and numbers that overflow, format strings.
const HOSTILE_STRINGS: &[&str] = &[
    "", " ", "\0", "\u{1}\u{7f}", "\t\r\n", "ü", "日本語", "🦀", "\u{202e}rtl", "\u{feff}bom", "null", "true", "0", "-1",
    "18446744073709551616", "1e309", "NaN", "../../etc/passwd", "a/../b", "%00", "%ff%fe", "%s%n%x", "${jndi:x}",
    "\\u0000", "\"", "'", "{", "[", "1h", "-1s", "0s", "1.5m", "9999999999h", "1e3s", "10", "passing", "critical",
    "maintenance", "ANY", "*", "a.b.c", "a b", "a\u{0}b", "_", "-", ".", "..", "/", "//", "?x=1", "#frag",
];

/// Values that a field of any type might wrongly get.
fn confused_value(rng: &mut impl Rng) -> Value {
    let choices: [fn() -> Value; 16] = [
        || Value::Null,
        || Value::Bool(true),
        || Value::Bool(false),
        || serde_json::json!(0),
        || serde_json::json!(-1),
        || serde_json::json!(1.5),
        || serde_json::json!(1e308),
        || serde_json::json!(u64::MAX),
        || serde_json::json!(i64::MIN),
        || serde_json::json!(""),
        || serde_json::json!("x"),
        || serde_json::json!([]),
        || serde_json::json!({}),
        || serde_json::json!([1, "a", null]),
        || serde_json::json!({"a": 1}),
        || serde_json::json!([[]]),
    ];
    choices[rng.gen_range(0..choices.len())]()
}

/// A string from [`HOSTILE_STRINGS`], a long repeated one (now and then up to
/// [`HUGE_STRING_BYTES_MAX`]), or random characters.
pub(crate) fn hostile_string(rng: &mut impl Rng) -> String {
    match rng.gen_range(0..10) {
        0..=5 => HOSTILE_STRINGS.choose(rng).expect("non-empty list").to_string(),
        6 => "x".repeat(rng.gen_range(256..4096)),
        7 if rng.gen_ratio(1, 8) => "y".repeat(rng.gen_range(4096..HUGE_STRING_BYTES_MAX)),
        _ => (0..rng.gen_range(1..32)).map(|_| random_char(rng)).collect(),
    }
}

fn random_char(rng: &mut impl Rng) -> char {
    match rng.gen_range(0..4) {
        0 => rng.gen_range(0x20u8..0x7f) as char,
        1 => rng.gen_range(0u8..0x20) as char,
        _ => char::from_u32(rng.gen_range(0x80..0x2_0000)).unwrap_or('\u{fffd}'),
    }
}

/// A number at or past some boundary, as text (for query values and path segments).
pub(crate) fn boundary_number(rng: &mut impl Rng) -> String {
    const NUMBERS: &[&str] = &[
        "0", "1", "-1", "2", "255", "256", "65535", "65536", "4294967295", "4294967296", "9223372036854775807",
        "9223372036854775808", "18446744073709551615", "18446744073709551616", "1e3", "0x10", "+1", " 1", "1.5", "", "abc",
    ];
    NUMBERS.choose(rng).expect("non-empty list").to_string()
}

/// A JSON pointer to every node of `value` (the root is `""`), at most `limit` of them.
fn pointers(value: &Value, prefix: String, out: &mut Vec<String>, limit: usize) {
    if out.len() >= limit {
        return;
    }
    out.push(prefix.clone());
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                pointers(child, format!("{prefix}/{}", key.replace('~', "~0").replace('/', "~1")), out, limit);
            }
        }
        Value::Array(items) => {
            for (position, child) in items.iter().enumerate() {
                pointers(child, format!("{prefix}/{position}"), out, limit);
            }
        }
        _ => {}
    }
}

/// Applies one to three mutations to nodes of `value`. A string under a key in `identity`
/// (names and IDs, which become catalog rows) only ever gets a confused type, so the rows
/// the fuzzer creates stay within its pools and the state stays bounded.
pub(crate) fn mutate_json(rng: &mut impl Rng, value: &mut Value, identity: &[&str]) {
    for _ in 0..rng.gen_range(1..=3) {
        let mut all = Vec::new();
        pointers(value, String::new(), &mut all, 512);
        let Some(pointer) = all.choose(rng).cloned() else { return };
        let key = pointer.rsplit('/').next().unwrap_or("").to_string();
        let Some(node) = value.pointer_mut(&pointer) else { continue };
        let is_identity = identity.contains(&key.as_str());
        match (rng.gen_range(0..8), &mut *node) {
            (0..=1, _) => *node = confused_value(rng),
            (2..=3, Value::String(text)) if !is_identity => *text = hostile_string(rng),
            (2..=3, Value::Number(_)) => *node = serde_json::from_str(&boundary_number(rng)).unwrap_or(Value::Null),
            (4, Value::Array(items)) if !items.is_empty() => {
                let copies = rng.gen_range(1..LIST_LENGTH_MAX);
                let item = items[rng.gen_range(0..items.len())].clone();
                items.extend(std::iter::repeat_n(item, copies));
            }
            (5, Value::Object(map)) => {
                map.insert(hostile_string(rng).chars().take(64).collect(), confused_value(rng));
            }
            (6, Value::Object(map)) if !map.is_empty() => {
                let keys: Vec<String> = map.keys().cloned().collect();
                map.remove(&keys[rng.gen_range(0..keys.len())]);
            }
            (7, _) if !is_identity => *node = Value::String(NEST_MARKER.into()),
            _ => *node = confused_value(rng),
        }
    }
}

/// Serializes `value`, splices in any deep nesting, and now and then damages the text:
/// a duplicate key, invalid UTF-8 inside a string, or a cut.
pub(crate) fn json_bytes(rng: &mut impl Rng, value: &Value) -> Vec<u8> {
    let text = value.to_string();
    let marker = format!("\"{NEST_MARKER}\"");
    let text = if text.contains(&marker) {
        let depth = rng.gen_range(2..NESTING_DEPTH_MAX);
        let (open, close) = if rng.gen_bool(0.5) { ("[", "]") } else { ("{\"a\":", "}") };
        text.replace(&marker, &format!("{}1{}", open.repeat(depth), close.repeat(depth)))
    } else {
        text
    };
    let mut bytes = text.into_bytes();
    match rng.gen_range(0..20) {
        0 if bytes.first() == Some(&b'{') && bytes.len() > 2 => {
            let key = value.as_object().and_then(|m| m.keys().next().cloned()).unwrap_or_else(|| "ID".into());
            let duplicate = format!("{}:{},", Value::String(key), confused_value(rng));
            bytes.splice(1..1, duplicate.into_bytes());
        }
        1 => {
            const INVALID: &[&[u8]] = &[&[0xff], &[0xc3, 0x28], &[0xed, 0xa0, 0x80], &[0xf4, 0x90, 0x80, 0x80], &[0xc0, 0xaf]];
            let quotes: Vec<usize> = bytes.iter().enumerate().filter(|(_, b)| **b == b'"').map(|(i, _)| i + 1).collect();
            if let Some(&at) = quotes.choose(rng) {
                bytes.splice(at..at, INVALID.choose(rng).expect("non-empty list").iter().copied());
            }
        }
        2 if !bytes.is_empty() => bytes.truncate(rng.gen_range(0..bytes.len())),
        _ => {}
    }
    bytes
}

/// Damages `text` a little: a hostile string inserted, a run repeated, or a cut.
pub(crate) fn mutate_text(rng: &mut impl Rng, text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let at = rng.gen_range(0..=chars.len());
    let (head, tail): (String, String) = (chars[..at].iter().collect(), chars[at..].iter().collect());
    match rng.gen_range(0..4) {
        0 => format!("{head}{}{tail}", hostile_string(rng).chars().take(256).collect::<String>()),
        1 => format!("{head}{}{tail}", tail.chars().take(8).collect::<String>().repeat(rng.gen_range(2..64))),
        2 => head,
        _ => format!("{head}{}{tail}", random_char(rng)),
    }
}

/// Applies `count` byte-level mutations: bit flips, interesting bytes, insertions, deletions,
/// duplicated runs and cuts.
pub(crate) fn mutate_bytes(rng: &mut impl Rng, bytes: &mut Vec<u8>, count: usize) {
    const INTERESTING: &[u8] = &[0, 1, 0x7f, 0x80, 0xff, b'\r', b'\n', b' ', b':', b'%', b'"', b'{', b'}', 0xc0];
    for _ in 0..count {
        if bytes.is_empty() {
            bytes.push(rng.r#gen());
            continue;
        }
        let at = rng.gen_range(0..bytes.len());
        match rng.gen_range(0..6) {
            0 => bytes[at] ^= 1 << rng.gen_range(0..8),
            1 => bytes[at] = *INTERESTING.choose(rng).expect("non-empty list"),
            2 => bytes.insert(at, rng.r#gen()),
            3 => {
                bytes.remove(at);
            }
            4 => {
                let end = (at + rng.gen_range(1..16)).min(bytes.len());
                let run = bytes[at..end].to_vec();
                bytes.splice(at..at, run);
            }
            _ => bytes.truncate(at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn identity_strings_only_get_confused_types() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..2_000 {
            let mut value = serde_json::json!({"Node": "fuzz-n1", "Meta": {"k": "v"}});
            mutate_json(&mut rng, &mut value, &["Node"]);
            if let Some(Value::String(node)) = value.get("Node") {
                assert!(node == "fuzz-n1" || node.is_empty() || node == "x", "{node}");
            }
        }
    }

    #[test]
    fn nesting_is_spliced_in_and_bounded() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let value = serde_json::json!({"a": NEST_MARKER});
        let bytes = json_bytes(&mut rng, &value);
        assert!(!String::from_utf8_lossy(&bytes).contains(NEST_MARKER));
        assert!(bytes.len() < 2 * NESTING_DEPTH_MAX * 6);
    }
}
