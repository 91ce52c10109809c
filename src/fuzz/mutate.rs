//! The mutation engine: a seeded PRNG and mutators that turn valid inputs into hostile ones.
//!
//! Everything random comes from one `StdRng` seeded by the run's seed, so a run is a pure
//! function of its seed (and of what the target accepts, which decides the pool). Each new
//! input is a pool entry (a seed, or an earlier input the target accepted) with a few stacked
//! mutations. The mutators aim at what decoders of remote input get wrong: lengths and counts
//! (interesting integers, postcard varints, ASCII numbers), truncation, duplication and
//! splicing of valid pieces, tokens of the format (a target's dictionary), and deep nesting
//! (a prefix repeated many times, the way `[[[[` or a chain of wrapping enums is built).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Most mutations stacked on one input.
const STACKED_MUTATIONS_MAX: u32 = 8;
/// Longest chunk inserted, deleted or duplicated at once, in bytes.
const CHUNK_BYTES_MAX: usize = 64;
/// Most copies of a prefix the nesting amplifier makes.
const NESTING_COPIES_MAX: usize = 20_000;

/// Single bytes that sit on boundaries: sign bits, varint continuation, ASCII edges.
const INTERESTING_BYTES: [u8; 12] = [0x00, 0x01, 0x02, 0x10, 0x1f, 0x20, 0x40, 0x7f, 0x80, 0x81, 0xfe, 0xff];

/// Integers that sit on boundaries of every width, written in several encodings.
const INTERESTING_INTS: [u64; 16] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1 << 32,
    1 << 53,
    (1 << 62) + 1,
    i64::MAX as u64,
    u64::MAX,
];

/// Decimal numbers that break parsers and arithmetic on parsed values.
const INTERESTING_DECIMALS: [&str; 14] = [
    "0",
    "-1",
    "-0",
    "65536",
    "4294967296",
    "9007199254740993",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "340282366920938463463374607431768211456",
    "1e308",
    "1e-400",
    "0.000000001",
];

/// The seeded randomness of one run.
pub(super) struct Mutator {
    rng: StdRng,
    /// The format's tokens (JSON keys, keywords, labels), inserted or overwritten whole.
    dictionary: Vec<Vec<u8>>,
    input_bytes_max: usize,
}

impl Mutator {
    pub(super) fn new(seed: u64, dictionary: Vec<Vec<u8>>, input_bytes_max: usize) -> Mutator {
        Mutator { rng: StdRng::seed_from_u64(seed), dictionary, input_bytes_max }
    }

    pub(super) fn below(&mut self, bound: usize) -> usize {
        if bound == 0 { 0 } else { self.rng.gen_range(0..bound) }
    }

    /// A new input from `pool` (never empty): one entry with stacked mutations, capped at
    /// the target's size.
    pub(super) fn next_input(&mut self, pool: &[Vec<u8>]) -> Vec<u8> {
        let mut input = pool[self.below(pool.len())].clone();
        // Mostly few mutations (small steps keep inputs near valid), sometimes many.
        let stacked = 1 + self.rng.gen_range(0..STACKED_MUTATIONS_MAX).min(self.rng.gen_range(0..STACKED_MUTATIONS_MAX));
        for _ in 0..stacked {
            self.mutate(&mut input, pool);
        }
        input.truncate(self.input_bytes_max);
        input
    }

    fn mutate(&mut self, input: &mut Vec<u8>, pool: &[Vec<u8>]) {
        match self.below(14) {
            0 => self.flip_bit(input),
            1 => self.interesting_byte(input),
            2 => self.interesting_int(input),
            3 => self.interesting_varint(input),
            4 => self.nudge_byte(input),
            5 => self.insert_random(input),
            6 => self.delete_chunk(input),
            7 => self.duplicate_chunk(input),
            8 => self.splice(input, pool),
            9 => self.truncate(input),
            10 => self.amplify_nesting(input),
            11 => self.replace_decimal(input),
            12 | 13 => self.dictionary_token(input),
            _ => unreachable!("below(14)"),
        }
    }

    fn position(&mut self, input: &[u8]) -> usize {
        self.below(input.len() + 1)
    }

    fn flip_bit(&mut self, input: &mut [u8]) {
        if !input.is_empty() {
            let at = self.below(input.len());
            input[at] ^= 1 << self.below(8);
        }
    }

    fn interesting_byte(&mut self, input: &mut [u8]) {
        if !input.is_empty() {
            let at = self.below(input.len());
            input[at] = INTERESTING_BYTES[self.below(INTERESTING_BYTES.len())];
        }
    }

    /// Overwrites bytes with a boundary integer as u16/u32/u64, big- or little-endian.
    fn interesting_int(&mut self, input: &mut Vec<u8>) {
        let value = INTERESTING_INTS[self.below(INTERESTING_INTS.len())];
        let width = [2, 4, 8][self.below(3)];
        // The low `width` bytes of the value, in either byte order.
        let bytes = if self.rng.r#gen() { value.to_be_bytes()[8 - width..].to_vec() } else { value.to_le_bytes()[..width].to_vec() };
        let at = self.position(input);
        self.overwrite(input, at, &bytes);
    }

    /// Overwrites a varint-sized run with a boundary integer as a postcard (LEB128) varint.
    fn interesting_varint(&mut self, input: &mut Vec<u8>) {
        let mut value = INTERESTING_INTS[self.below(INTERESTING_INTS.len())];
        let mut varint = Vec::with_capacity(10);
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                varint.push(byte);
                break;
            }
            varint.push(byte | 0x80);
        }
        let at = self.position(input);
        // Replace what is there (an old varint, likely) rather than shift everything after.
        let replaced = self.below(varint.len() + 1).min(input.len() - at);
        input.splice(at..at + replaced, varint);
    }

    /// Adds or subtracts a little from one byte: lengths and counts off by a few.
    fn nudge_byte(&mut self, input: &mut [u8]) {
        if !input.is_empty() {
            let at = self.below(input.len());
            let delta = 1 + self.below(16) as u8;
            input[at] = if self.rng.r#gen() { input[at].wrapping_add(delta) } else { input[at].wrapping_sub(delta) };
        }
    }

    fn insert_random(&mut self, input: &mut Vec<u8>) {
        let at = self.position(input);
        let len = 1 + self.below(16);
        let bytes: Vec<u8> = (0..len).map(|_| self.rng.r#gen()).collect();
        input.splice(at..at, bytes);
    }

    fn chunk(&mut self, input: &[u8]) -> std::ops::Range<usize> {
        let start = self.below(input.len());
        let len = 1 + self.below(CHUNK_BYTES_MAX.min(input.len() - start).max(1));
        start..(start + len).min(input.len())
    }

    fn delete_chunk(&mut self, input: &mut Vec<u8>) {
        if !input.is_empty() {
            let range = self.chunk(input);
            input.drain(range);
        }
    }

    fn duplicate_chunk(&mut self, input: &mut Vec<u8>) {
        if !input.is_empty() {
            let range = self.chunk(input);
            let copy = input[range].to_vec();
            let at = self.position(input);
            input.splice(at..at, copy);
        }
    }

    /// A prefix of this input followed by a suffix of another pool entry.
    fn splice(&mut self, input: &mut Vec<u8>, pool: &[Vec<u8>]) {
        let other = &pool[self.below(pool.len())];
        let cut = self.position(input);
        let from = self.below(other.len() + 1);
        input.truncate(cut);
        input.extend_from_slice(&other[from..]);
    }

    fn truncate(&mut self, input: &mut Vec<u8>) {
        let at = self.below(input.len());
        input.truncate(at);
    }

    /// Repeats a short run many times in place (`[` → `[[[[…`, a wrapping enum's header → a
    /// chain of them): recursive decoders must refuse the depth, not exhaust the stack.
    fn amplify_nesting(&mut self, input: &mut Vec<u8>) {
        if input.is_empty() {
            return;
        }
        let start = self.below(input.len());
        let len = 1 + self.below(8.min(input.len() - start));
        let run = input[start..start + len].to_vec();
        let room = self.input_bytes_max.saturating_sub(input.len()) / len;
        let copies = (1 + self.below(NESTING_COPIES_MAX)).min(room);
        let repeated: Vec<u8> = run.iter().copied().cycle().take(len * copies).collect();
        input.splice(start..start, repeated);
    }

    /// Replaces a run of ASCII digits (or inserts one) with a boundary decimal.
    fn replace_decimal(&mut self, input: &mut Vec<u8>) {
        let decimal = INTERESTING_DECIMALS[self.below(INTERESTING_DECIMALS.len())].as_bytes().to_vec();
        let digits: Vec<usize> = input.iter().enumerate().filter(|(_, b)| b.is_ascii_digit()).map(|(at, _)| at).collect();
        if digits.is_empty() {
            let at = self.position(input);
            input.splice(at..at, decimal);
            return;
        }
        let start = digits[self.below(digits.len())];
        let end = input[start..].iter().position(|b| !b.is_ascii_digit() && *b != b'.').map_or(input.len(), |len| start + len);
        input.splice(start..end, decimal);
    }

    /// Inserts a token of the format, or overwrites with it.
    fn dictionary_token(&mut self, input: &mut Vec<u8>) {
        if self.dictionary.is_empty() {
            return self.insert_random(input);
        }
        let chosen = self.below(self.dictionary.len());
        let token = self.dictionary[chosen].clone();
        let at = self.position(input);
        if self.rng.r#gen() {
            input.splice(at..at, token);
        } else {
            self.overwrite(input, at, &token);
        }
    }

    fn overwrite(&mut self, input: &mut Vec<u8>, at: usize, bytes: &[u8]) {
        let end = (at + bytes.len()).min(input.len());
        input.splice(at..end, bytes.iter().copied());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_inputs() {
        let pool = vec![b"{\"Name\":\"web\",\"Port\":80}".to_vec(), vec![1, 2, 3, 4]];
        let mut first = Mutator::new(42, vec![b"Tags".to_vec()], 4096);
        let mut second = Mutator::new(42, vec![b"Tags".to_vec()], 4096);
        for _ in 0..1000 {
            assert_eq!(first.next_input(&pool), second.next_input(&pool));
        }
    }

    #[test]
    fn inputs_stay_under_the_cap_and_nesting_gets_deep() {
        let pool = vec![b"[1]".to_vec()];
        let mut mutator = Mutator::new(7, Vec::new(), 50_000);
        let mut deepest = 0;
        for _ in 0..2000 {
            let input = mutator.next_input(&pool);
            assert!(input.len() <= 50_000);
            deepest = deepest.max(input.iter().filter(|b| **b == b'[').count());
        }
        assert!(deepest > 1000, "the nesting amplifier must build deep inputs, got {deepest}");
    }
}
