//! The harness itself must be able to fail: a target that panics, allocates without bound,
//! hangs or refuses its seeds is reported with the input that did it.

use super::*;

fn budget(time_ms: u64) -> Budget {
    Budget { time_ms, iterations_max: 10_000_000, seed: 11, input_ms_max: 5_000, hang_grace_ms: 30_000, replaying: false }
}

fn target(seeds: &[&[u8]], dictionary: &[&[u8]]) -> Target {
    Target {
        name: "self_test",
        seeds: seeds.iter().map(|seed| seed.to_vec()).collect(),
        dictionary: dictionary.iter().map(|word| word.to_vec()).collect(),
        input_bytes_max: 256,
        alloc_bytes_max: FUZZ_ALLOC_BYTES_MAX_DEFAULT,
    }
}

fn contains(input: &[u8], needle: &[u8]) -> bool {
    input.windows(needle.len()).any(|window| window == needle)
}

#[test]
fn a_panicking_target_is_reported_with_its_input() {
    tracing::info!("phase: a target that panics on a token the mutations can insert");
    let check = || |input: &[u8]| {
        assert!(!contains(input, b"BOOM"), "the decoder fell over");
        Verdict::Accepted
    };
    let failure = try_fuzz(target(&[b"{\"Name\":\"web\"}"], &[b"BOOM"]), budget(20_000), check).expect_err("the panic is found");
    assert!(contains(&failure.input, b"BOOM"), "the report names the input: {failure}");
    assert!(failure.reason.contains("the decoder fell over"), "{failure}");
    let report = failure.to_string();
    let hex: String = failure.input.iter().map(|b| format!("{b:02x}")).collect();
    assert!(report.contains(&hex), "the report holds the input in hex: {report}");
    assert!(report.contains("CAIRN_FUZZ_SEED=11 cargo test --lib fuzz::self_test"), "{report}");
}

#[test]
fn the_same_seed_finds_the_same_input() {
    let check = || |input: &[u8]| {
        assert!(!contains(input, b"\xff\xff"), "two 0xff bytes");
        Verdict::Accepted
    };
    let first = try_fuzz(target(&[b"abcdef"], &[]), budget(20_000), check).expect_err("found");
    let second = try_fuzz(target(&[b"abcdef"], &[]), budget(20_000), check).expect_err("found");
    assert_eq!((first.iteration, first.input), (second.iteration, second.input));
}

#[test]
fn an_input_that_allocates_without_bound_is_reported() {
    let check = || |input: &[u8]| {
        if input.first() == Some(&b'!') {
            // A decoder that believes a length prefix of 1 GiB.
            let buffer = vec![0u8; 1 << 30];
            std::hint::black_box(&buffer);
        }
        Verdict::Accepted
    };
    let failure = try_fuzz(target(&[b"length"], &[b"!"]), budget(20_000), check).expect_err("the allocation is found");
    assert!(failure.reason.contains("allocated"), "{failure}");
    assert_eq!(failure.input.first(), Some(&b'!'));
}

#[test]
fn a_slow_input_and_a_hang_are_reported() {
    let slow = || |input: &[u8]| {
        if input.first() == Some(&b'~') {
            std::thread::sleep(Duration::from_millis(300));
        }
        Verdict::Accepted
    };
    let tight = Budget { input_ms_max: 100, ..budget(20_000) };
    let failure = try_fuzz(target(&[b"~slow"], &[]), tight, slow).expect_err("the slow seed is found");
    assert!(failure.reason.starts_with("slow"), "{failure}");

    let hangs = || |input: &[u8]| {
        if input.first() == Some(&b'~') {
            std::thread::sleep(Duration::from_millis(1_500));
        }
        Verdict::Accepted
    };
    let watched = Budget { hang_grace_ms: 300, ..budget(100) };
    let failure = try_fuzz(target(&[b"~hang"], &[]), watched, hangs).expect_err("the watchdog fires");
    assert!(failure.reason.starts_with("hang"), "{failure}");
    assert_eq!(failure.input, b"~hang");
}

#[test]
fn a_refused_seed_fails_the_target() {
    let check = || |input: &[u8]| if input.is_empty() { Verdict::Accepted } else { Verdict::Refused };
    let failure = try_fuzz(target(&[b"valid?"], &[]), budget(100), check).expect_err("refused seed");
    assert!(failure.reason.contains("seed is refused"), "{failure}");
}

#[test]
fn a_target_that_finds_nothing_reports_its_work() {
    let check = || |input: &[u8]| if input.len() % 2 == 0 { Verdict::Accepted } else { Verdict::Refused };
    let report = try_fuzz(target(&[b"ab"], &[]), budget(200), check).expect("nothing to find");
    assert!(report.executions > 100, "{report:?}");
    assert!(report.accepted > 1 && report.pool_len > 1, "accepted inputs join the pool: {report:?}");
}
