//! Evaluates a parsed filter against one JSON document.
//!
//! go-bexpr evaluates against Go structs via reflection; here the document is the JSON the HTTP
//! API returns, so the rules are stated in JSON terms:
//! - A selector resolves to a list of candidates. Each step looks up an object key. A step that
//!   meets an array indexes it when the step is all digits (`Checks.0.Status`) and otherwise
//!   maps the rest of the path over every element (nested arrays are flattened), so
//!   `Checks.Status` yields one candidate per check. A step into anything else, or a key that
//!   is absent, yields a missing candidate; missing is never an error.
//! - `==`, `contains`/`in` and `matches` are true if ANY candidate satisfies them; `is empty`
//!   is true if EVERY candidate is empty (so a path that fans out over an empty array is
//!   empty). Each negated operator is exactly the negation of its positive form.
//! - `==` compares scalars with the operand's text: strings exactly, numbers numerically when
//!   the operand is a number, booleans against `true` / `false`, and missing or null only
//!   against the empty string. Arrays and objects never equal a value.
//! - `contains` / `in` mean element equality (by the `==` rule) on arrays, key presence on
//!   objects and substring on strings; on anything else they are false.
//! - `matches` applies to strings, and to numbers and booleans through their JSON text.
//!
//! Recursion here follows only the filter's own tree, whose depth the parser bounds; walking
//! the document is iterative, so a deeply nested document cannot exhaust the stack.

use regex::Regex;
use serde_json::{Number, Value};

use super::ast::{Condition, Expression, MatchExpression, Operand};

/// Whether `document` satisfies `expression`.
pub(super) fn evaluate(expression: &Expression, document: &Value) -> bool {
    match expression {
        Expression::And(operands) => operands.iter().all(|operand| evaluate(operand, document)),
        Expression::Or(operands) => operands.iter().any(|operand| evaluate(operand, document)),
        Expression::Not(operand) => !evaluate(operand, document),
        Expression::Match(match_expression) => evaluate_match(match_expression, document),
    }
}

fn evaluate_match(match_expression: &MatchExpression, document: &Value) -> bool {
    let candidates = resolve(document, &match_expression.selector.steps);
    let positive = match &match_expression.condition {
        Condition::Equal(operand) => candidates.iter().any(|candidate| scalar_equals(*candidate, operand)),
        Condition::Empty => candidates.iter().all(|candidate| is_empty(*candidate)),
        Condition::Contains(operand) => candidates.iter().any(|candidate| contains(*candidate, operand)),
        Condition::Matches(regex) => candidates.iter().any(|candidate| matches_regex(*candidate, regex)),
    };
    positive != match_expression.negated
}

/// Follows `steps` from `document`, returning one entry per value reached; `None` stands for a
/// missing value.
fn resolve<'a>(document: &'a Value, steps: &[String]) -> Vec<Option<&'a Value>> {
    let mut candidates = vec![Some(document)];
    for step in steps {
        let mut next_candidates = Vec::with_capacity(candidates.len());
        for candidate in candidates {
            match candidate {
                Some(value) => step_into(value, step, &mut next_candidates),
                None => next_candidates.push(None),
            }
        }
        candidates = next_candidates;
    }
    candidates
}

/// Applies one path step to `value`, pushing what it reaches onto `reached`.
fn step_into<'a>(value: &'a Value, step: &str, reached: &mut Vec<Option<&'a Value>>) {
    match value {
        Value::Object(map) => reached.push(map.get(step)),
        Value::Array(items) => match array_index(step) {
            Some(index) => reached.push(items.get(index)),
            None => fan_out(items, step, reached),
        },
        _ => reached.push(None),
    }
}

/// Maps a key lookup over every element of an array, flattening nested arrays with an explicit
/// stack. Elements that are not objects contribute a missing candidate.
fn fan_out<'a>(items: &'a [Value], step: &str, reached: &mut Vec<Option<&'a Value>>) {
    let mut pending: Vec<&'a Value> = items.iter().rev().collect();
    while let Some(item) = pending.pop() {
        match item {
            Value::Object(map) => reached.push(map.get(step)),
            Value::Array(nested) => pending.extend(nested.iter().rev()),
            _ => reached.push(None),
        }
    }
}

/// A step of only ASCII digits is an array index; anything else (including `+1` or ` 1`,
/// which `usize::from_str` would accept or which are object keys) is not.
fn array_index(step: &str) -> Option<usize> {
    if step.is_empty() || !step.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    step.parse().ok()
}

/// The `==` rule between one candidate and the operand.
fn scalar_equals(candidate: Option<&Value>, operand: &Operand) -> bool {
    match candidate {
        None | Some(Value::Null) => operand.text.is_empty(),
        Some(Value::String(text)) => *text == operand.text,
        Some(Value::Bool(flag)) => operand.text == bool_text(*flag),
        Some(Value::Number(number)) => number_equals(number, operand),
        Some(Value::Array(_) | Value::Object(_)) => false,
    }
}

/// Integers compare exactly (so large IDs do not lose precision through f64); anything else
/// compares as f64. An operand that is not a number never equals a JSON number.
fn number_equals(number: &Number, operand: &Operand) -> bool {
    if let Some(operand_integer) = operand.integer {
        if let Some(signed) = number.as_i64() {
            return i128::from(signed) == operand_integer;
        }
        if let Some(unsigned) = number.as_u64() {
            return i128::from(unsigned) == operand_integer;
        }
    }
    match (number.as_f64(), operand.float) {
        (Some(left), Some(right)) => left == right,
        _ => false,
    }
}

fn contains(candidate: Option<&Value>, operand: &Operand) -> bool {
    match candidate {
        Some(Value::Array(items)) => items.iter().any(|item| scalar_equals(Some(item), operand)),
        Some(Value::Object(map)) => map.contains_key(&operand.text),
        Some(Value::String(text)) => text.contains(operand.text.as_str()),
        _ => false,
    }
}

fn matches_regex(candidate: Option<&Value>, regex: &Regex) -> bool {
    match candidate {
        Some(Value::String(text)) => regex.is_match(text),
        Some(Value::Number(number)) => regex.is_match(&number.to_string()),
        Some(Value::Bool(flag)) => regex.is_match(bool_text(*flag)),
        _ => false,
    }
}

fn is_empty(candidate: Option<&Value>) -> bool {
    match candidate {
        None | Some(Value::Null) => true,
        Some(Value::String(text)) => text.is_empty(),
        Some(Value::Array(items)) => items.is_empty(),
        Some(Value::Object(map)) => map.is_empty(),
        Some(Value::Bool(_) | Value::Number(_)) => false,
    }
}

fn bool_text(flag: bool) -> &'static str {
    if flag { "true" } else { "false" }
}
