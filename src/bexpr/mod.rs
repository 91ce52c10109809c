//! Consul `?filter=` expressions: the go-bexpr grammar, parsed once and evaluated against the
//! JSON document that the HTTP API would return for one item.
//!
//! The HTTP layer parses the query parameter with [`Filter::parse`] (so a bad filter becomes a
//! 400 before any catalog work happens) and then keeps the items for which [`Filter::matches`]
//! is true. Evaluation works on `serde_json::Value` rather than on typed structs so that one
//! implementation serves every endpoint, and so that selectors name exactly the JSON field
//! names that Consul users already write filters against.
//!
//! The grammar, semantics and the choices made where go-bexpr is ambiguous or Go-specific are
//! described in `parse.rs` (syntax) and `eval.rs` (meaning). All input is untrusted: every
//! limit below exists so that a hostile query string costs bounded time and memory, and no
//! input makes the parser or the evaluator panic.

mod ast;
mod cursor;
mod eval;
mod literal;
mod parse;

#[cfg(test)]
mod tests;

/// Longest filter expression accepted, in bytes. Consul users write filters of a few dozen
/// bytes; the cap bounds parse time, the size of the syntax tree and the number of regexes.
pub const FILTER_EXPRESSION_BYTES_MAX: usize = 4096;

/// Deepest nesting of parentheses and `not` operators accepted. Parsing and evaluation recurse
/// once per level, so this keeps the stack use of both small and fixed.
pub const FILTER_NESTING_DEPTH_MAX: usize = 32;

/// Compiled size limit for each `matches` regex, in bytes, handed to the `regex` crate both
/// for the compiled program and for its lazy DFA cache. A short pattern such as `\w{500}` can
/// compile to megabytes, so the expression length alone does not bound memory.
pub const FILTER_REGEX_SIZE_BYTES_MAX: usize = 256 * 1024;

/// Most `matches` / `not matches` operators in one expression, so that many regexes that are
/// each under [`FILTER_REGEX_SIZE_BYTES_MAX`] cannot add up to a large allocation.
pub const FILTER_REGEX_COUNT_MAX: usize = 16;

/// Why a filter expression was rejected. Positions are 0-based byte offsets into the
/// expression as given, so a client can point at the offending character.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// Nothing but whitespace. Callers that treat an absent `?filter=` as "match everything"
    /// should not call [`Filter::parse`] at all.
    #[error("filter expression is empty")]
    Empty,

    /// Longer than [`FILTER_EXPRESSION_BYTES_MAX`].
    #[error("filter expression is {length_bytes} bytes, longer than the maximum of {length_bytes_max} bytes")]
    TooLong { length_bytes: usize, length_bytes_max: usize },

    /// The expression does not follow the grammar.
    #[error("failed to parse filter at position {position}: {reason}")]
    Syntax { position: usize, reason: String },

    /// Parentheses and `not` nest deeper than [`FILTER_NESTING_DEPTH_MAX`].
    #[error("failed to parse filter at position {position}: nesting is deeper than the maximum of {depth_max} levels")]
    TooDeep { position: usize, depth_max: usize },

    /// The value of a `matches` operator is not a valid regex, or compiles too big.
    #[error("failed to parse filter at position {position}: invalid regular expression: {reason}")]
    InvalidRegex { position: usize, reason: String },

    /// More `matches` operators than [`FILTER_REGEX_COUNT_MAX`].
    #[error("failed to parse filter at position {position}: more than the maximum of {count_max} regular expressions")]
    TooManyRegexes { position: usize, count_max: usize },
}

/// A parsed filter expression, ready to be evaluated against many documents.
///
/// Parsing does all the fallible work (syntax, regex compilation, limits) so that
/// [`Filter::matches`] is infallible and cheap to call once per returned item.
#[derive(Debug, Clone)]
pub struct Filter {
    expression: ast::Expression,
}

impl Filter {
    /// Parses a go-bexpr expression such as `Service.Tags contains "prod" and not Meta.env == dev`.
    pub fn parse(expression: &str) -> Result<Filter, FilterError> {
        let expression = parse::parse_expression(expression)?;
        Ok(Filter { expression })
    }

    /// Whether `document` (one item as the HTTP API renders it) satisfies the filter. Missing
    /// fields are not errors: they behave like an empty value.
    pub fn matches(&self, document: &serde_json::Value) -> bool {
        eval::evaluate(&self.expression, document)
    }
}
