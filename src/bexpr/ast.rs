//! Syntax tree of a parsed filter expression, shared by the parser (which builds it) and the
//! evaluator (which walks it).
//!
//! The tree is normalised so that evaluation is simple: `in` and `contains` become the same
//! condition (they differ only in operand order), every negated operator (`!=`, `not in`,
//! `is not empty`, ...) is its positive form plus a `negated` flag, and chains of `and` / `or`
//! are kept flat so that a long chain does not make the tree (and the evaluator's recursion)
//! deep.

use regex::Regex;

/// One node of the boolean structure of a filter.
#[derive(Debug, Clone)]
pub(super) enum Expression {
    /// True when every operand is true (two or more operands).
    And(Vec<Expression>),
    /// True when at least one operand is true (two or more operands).
    Or(Vec<Expression>),
    /// True when the operand is false.
    Not(Box<Expression>),
    /// A leaf comparing a selected part of the document with a value.
    Match(MatchExpression),
}

/// A leaf such as `Service.Tags contains "prod"` or `"prod" not in Service.Tags`.
#[derive(Debug, Clone)]
pub(super) struct MatchExpression {
    pub(super) selector: Selector,
    pub(super) condition: Condition,
    /// Set for `!=`, `not in`, `not contains`, `not matches` and `is not empty`, which go-bexpr
    /// defines as the negation of their positive forms.
    pub(super) negated: bool,
}

/// The positive form of a match operator.
#[derive(Debug, Clone)]
pub(super) enum Condition {
    /// `==`: the selected scalar equals the operand.
    Equal(Operand),
    /// `is empty`: the selected value is missing, null, "", [] or {}.
    Empty,
    /// `contains`, and `in` with its operands swapped: element, key or substring presence.
    Contains(Operand),
    /// `matches`: the selected scalar matches the regex, compiled at parse time.
    Matches(Regex),
}

/// A path into the document: object keys, or array indexes written as digits (`Checks.0`).
#[derive(Debug, Clone)]
pub(super) struct Selector {
    pub(super) steps: Vec<String>,
}

/// A value as written in the expression. It is kept as text, as go-bexpr does, and its numeric
/// readings are computed once here rather than on every comparison.
#[derive(Debug, Clone)]
pub(super) struct Operand {
    pub(super) text: String,
    /// The text read as an integer, for exact comparison with JSON integers.
    pub(super) integer: Option<i128>,
    /// The text read as a finite float, for comparison with JSON numbers that are not integers
    /// (or when the text itself is not an integer, as in `Weight == 1.5`).
    pub(super) float: Option<f64>,
}

impl Operand {
    pub(super) fn new(text: String) -> Operand {
        let (integer, float) = if looks_numeric(&text) {
            (text.parse::<i128>().ok(), text.parse::<f64>().ok().filter(|value| value.is_finite()))
        } else {
            (None, None)
        };
        Operand { text, integer, float }
    }
}

/// Whether `text` is a decimal number: `-?digits(.digits)?([eE][+-]?digits)?`. Checked by hand
/// because Rust's float parser also accepts `inf`, `NaN` and `+1`, which a filter value like
/// `Name == inf` must not turn into a number.
fn looks_numeric(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut index = 0;
    let digits_from = |mut at: usize| {
        while at < bytes.len() && bytes[at].is_ascii_digit() {
            at += 1;
        }
        at
    };
    if bytes.first() == Some(&b'-') {
        index += 1;
    }
    let integer_end = digits_from(index);
    if integer_end == index {
        return false;
    }
    index = integer_end;
    if bytes.get(index) == Some(&b'.') {
        let fraction_end = digits_from(index + 1);
        if fraction_end == index + 1 {
            return false;
        }
        index = fraction_end;
    }
    if matches!(bytes.get(index), Some(b'e' | b'E')) {
        index += 1;
        if matches!(bytes.get(index), Some(b'+' | b'-')) {
            index += 1;
        }
        let exponent_end = digits_from(index);
        if exponent_end == index {
            return false;
        }
        index = exponent_end;
    }
    index == bytes.len()
}
