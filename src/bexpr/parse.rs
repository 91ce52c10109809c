//! Recursive-descent parser for the go-bexpr grammar that Consul's `?filter=` uses.
//!
//! ```text
//! expression := or
//! or         := and ("or" and)*
//! and        := not ("and" not)*
//! not        := "not" not | primary
//! primary    := "(" or ")" | match
//! match      := selector ("==" | "!=") value
//!             | selector ("contains" | "not" "contains" | "matches" | "not" "matches") value
//!             | selector "is" ["not"] "empty"
//!             | value ("in" | "not" "in") selector
//! selector   := identifier ("." step | "[" string "]")*  |  string holding a JSON pointer "/a/b"
//! value      := string | bare word such as 8080, passing, true, web-01, 1.2.3
//! string     := "double-quoted with \escapes" | `raw backtick`
//! ```
//!
//! Keywords are lowercase and case-sensitive, as in go-bexpr, and are recognised only as whole
//! words. Where go-bexpr is stricter or Go-specific this parser makes these choices:
//! - A keyword needs a word boundary, not whitespace, on each side, so `not(A == b)` and
//!   `A == "x"and B == "y"` parse; every expression go-bexpr accepts parses the same way here.
//! - Identifiers may contain `-` after the first character (`Meta.rack-1`), since the grammar
//!   has no minus operator for it to clash with; the `Meta["rack-1"]` form also works.
//! - A bare value is a run of `[A-Za-z0-9_./:-]`, which covers numbers, words, versions,
//!   addresses and node names. The keywords above are not bare values (quote them instead),
//!   so `A == and` is an error rather than a guess.
//! - A quoted string at the start of a match is the value of `in` / `not in` when one of those
//!   follows it, and otherwise a JSON-pointer selector (go-bexpr's `"/Service/Tags"` form).
//! - Nesting depth counts both parentheses and `not`, since both make evaluation recurse.

use super::ast::{Condition, Expression, MatchExpression, Operand, Selector};
use super::cursor::{self, Cursor, is_keyword, is_word_byte};
use super::literal::{compile_regex, json_pointer_steps, parse_string_literal};
use super::{FILTER_EXPRESSION_BYTES_MAX, FILTER_NESTING_DEPTH_MAX, FILTER_REGEX_COUNT_MAX, FilterError};

/// Parses a whole expression, enforcing the length limit first so that nothing else ever sees
/// an over-long input.
pub(super) fn parse_expression(expression: &str) -> Result<Expression, FilterError> {
    if expression.len() > FILTER_EXPRESSION_BYTES_MAX {
        return Err(FilterError::TooLong {
            length_bytes: expression.len(),
            length_bytes_max: FILTER_EXPRESSION_BYTES_MAX,
        });
    }
    if expression.bytes().all(cursor::is_whitespace_byte) {
        return Err(FilterError::Empty);
    }
    let mut parser = Parser { cursor: Cursor::new(expression), depth: 0, regex_count: 0 };
    let tree = parser.parse_or()?;
    parser.cursor.skip_whitespace();
    match parser.cursor.peek() {
        None => Ok(tree),
        Some(b')') => Err(parser.cursor.error_here("unexpected ')' without a matching '('")),
        Some(_) => {
            let found = parser.cursor.describe_here();
            Err(parser.cursor.error_here(format!("expected 'and', 'or' or the end of the expression, found {found}")))
        }
    }
}

/// Grammar-level parser state; the byte-level reading lives in [`Cursor`].
struct Parser<'a> {
    cursor: Cursor<'a>,
    /// Current nesting of parentheses and `not`, checked against [`FILTER_NESTING_DEPTH_MAX`].
    depth: usize,
    /// `matches` operators seen so far, checked against [`FILTER_REGEX_COUNT_MAX`].
    regex_count: usize,
}

impl Parser<'_> {
    fn enter_nesting(&mut self, position: usize) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > FILTER_NESTING_DEPTH_MAX {
            return Err(FilterError::TooDeep { position, depth_max: FILTER_NESTING_DEPTH_MAX });
        }
        Ok(())
    }

    fn parse_or(&mut self) -> Result<Expression, FilterError> {
        let mut operands = vec![self.parse_and()?];
        loop {
            self.cursor.skip_whitespace();
            if !self.cursor.eat_keyword("or") {
                break;
            }
            operands.push(self.parse_and()?);
        }
        Ok(flatten(operands, Expression::Or))
    }

    fn parse_and(&mut self) -> Result<Expression, FilterError> {
        let mut operands = vec![self.parse_not()?];
        loop {
            self.cursor.skip_whitespace();
            if !self.cursor.eat_keyword("and") {
                break;
            }
            operands.push(self.parse_not()?);
        }
        Ok(flatten(operands, Expression::And))
    }

    fn parse_not(&mut self) -> Result<Expression, FilterError> {
        self.cursor.skip_whitespace();
        let start = self.cursor.position;
        if !self.cursor.eat_keyword("not") {
            return self.parse_primary();
        }
        self.enter_nesting(start)?;
        let operand = self.parse_not()?;
        self.depth -= 1;
        Ok(Expression::Not(Box::new(operand)))
    }

    fn parse_primary(&mut self) -> Result<Expression, FilterError> {
        let open = self.cursor.position;
        if !self.cursor.eat_symbol("(") {
            return self.parse_match();
        }
        self.enter_nesting(open)?;
        let inner = self.parse_or()?;
        self.cursor.skip_whitespace();
        if !self.cursor.eat_symbol(")") {
            let found = self.cursor.describe_here();
            return Err(self
                .cursor
                .error_here(format!("expected ')' to close the '(' at position {open}, found {found}")));
        }
        self.depth -= 1;
        Ok(inner)
    }

    /// A match expression starts either with a selector or with the value of `in` / `not in`;
    /// which one is decided by looking past the first word or string for those operators.
    fn parse_match(&mut self) -> Result<Expression, FilterError> {
        let start = self.cursor.position;
        let leading_value = match self.cursor.peek() {
            Some(b'"' | b'`') => {
                let (text, end) = parse_string_literal(self.cursor.source, start)?;
                Some((text, end, true))
            }
            Some(byte) if is_word_byte(byte) => {
                let end = self.cursor.word_end(start);
                Some((self.cursor.source[start..end].to_string(), end, false))
            }
            _ => None,
        };
        if let Some((text, end, quoted)) = leading_value
            && let Some((negated, operator_end)) = self.in_operator_at(end)
        {
            if !quoted && is_keyword(&text) {
                return Err(self.cursor.error_at(start, format!("expected a value, found the keyword '{text}'")));
            }
            self.cursor.position = self.cursor.whitespace_end(operator_end);
            let selector = self.parse_selector()?;
            let condition = Condition::Contains(Operand::new(text));
            return Ok(Expression::Match(MatchExpression { selector, condition, negated }));
        }
        let selector = self.parse_selector()?;
        self.parse_selector_operator(selector)
    }

    /// Looks (without consuming) for `in` or `not in` after optional whitespace at `position`;
    /// returns whether it is negated and where the operator ends.
    fn in_operator_at(&self, position: usize) -> Option<(bool, usize)> {
        let position = self.cursor.whitespace_end(position);
        if self.cursor.keyword_at(position, "in") {
            return Some((false, position + "in".len()));
        }
        if self.cursor.keyword_at(position, "not") {
            let after_not = self.cursor.whitespace_end(position + "not".len());
            if self.cursor.keyword_at(after_not, "in") {
                return Some((true, after_not + "in".len()));
            }
        }
        None
    }

    fn parse_selector(&mut self) -> Result<Selector, FilterError> {
        let start = self.cursor.position;
        if matches!(self.cursor.peek(), Some(b'"' | b'`')) {
            let (text, end) = parse_string_literal(self.cursor.source, start)?;
            let Some(steps) = json_pointer_steps(&text) else {
                return Err(self.cursor.error_at(
                    start,
                    "expected a selector, but a quoted selector must be a JSON pointer starting with '/'",
                ));
            };
            self.cursor.position = end;
            return Ok(Selector { steps });
        }
        if !self.cursor.peek().is_some_and(|byte| byte.is_ascii_alphabetic() || byte == b'_') {
            let found = self.cursor.describe_here();
            return Err(self.cursor.error_here(format!("expected a selector, found {found}")));
        }
        let first = self.cursor.take_identifier();
        if is_keyword(first) {
            return Err(self.cursor.error_at(start, format!("expected a selector, found the keyword '{first}'")));
        }
        let mut steps = vec![first.to_string()];
        loop {
            if self.cursor.eat_symbol(".") {
                if !self.cursor.peek().is_some_and(|byte| byte.is_ascii_alphanumeric() || byte == b'_') {
                    let found = self.cursor.describe_here();
                    return Err(self.cursor.error_here(format!("expected a field name after '.', found {found}")));
                }
                steps.push(self.cursor.take_identifier().to_string());
            } else if self.cursor.peek() == Some(b'[') {
                steps.push(self.parse_index()?);
            } else {
                return Ok(Selector { steps });
            }
        }
    }

    /// Parses `["key"]` (or a backtick key), the form for map keys that are not identifiers.
    fn parse_index(&mut self) -> Result<String, FilterError> {
        let open = self.cursor.position;
        self.cursor.position += 1;
        self.cursor.skip_whitespace();
        if !matches!(self.cursor.peek(), Some(b'"' | b'`')) {
            let found = self.cursor.describe_here();
            return Err(self.cursor.error_here(format!("expected a quoted key after '[', found {found}")));
        }
        let (key, end) = parse_string_literal(self.cursor.source, self.cursor.position)?;
        self.cursor.position = end;
        self.cursor.skip_whitespace();
        if !self.cursor.eat_symbol("]") {
            let found = self.cursor.describe_here();
            return Err(self
                .cursor
                .error_here(format!("expected ']' to close the '[' at position {open}, found {found}")));
        }
        Ok(key)
    }

    /// Parses the operator (and value, if it takes one) that follows a selector.
    fn parse_selector_operator(&mut self, selector: Selector) -> Result<Expression, FilterError> {
        self.cursor.skip_whitespace();
        let operator_start = self.cursor.position;
        let (negated, operator) = if self.cursor.eat_symbol("==") {
            (false, ValueOperator::Equal)
        } else if self.cursor.eat_symbol("!=") {
            (true, ValueOperator::Equal)
        } else if self.cursor.eat_keyword("is") {
            self.cursor.skip_whitespace();
            let negated = self.cursor.eat_keyword("not");
            self.cursor.skip_whitespace();
            if !self.cursor.eat_keyword("empty") {
                let found = self.cursor.describe_here();
                return Err(self
                    .cursor
                    .error_here(format!("expected 'empty' or 'not empty' after 'is', found {found}")));
            }
            return Ok(Expression::Match(MatchExpression { selector, condition: Condition::Empty, negated }));
        } else if self.cursor.eat_keyword("contains") {
            (false, ValueOperator::Contains)
        } else if self.cursor.eat_keyword("matches") {
            (false, ValueOperator::Matches)
        } else if self.cursor.eat_keyword("not") {
            self.cursor.skip_whitespace();
            if self.cursor.eat_keyword("contains") {
                (true, ValueOperator::Contains)
            } else if self.cursor.eat_keyword("matches") {
                (true, ValueOperator::Matches)
            } else if self.cursor.keyword_at(self.cursor.position, "in") {
                return Err(self
                    .cursor
                    .error_at(operator_start, "'not in' must follow a value, as in \"value\" not in Selector"));
            } else {
                let found = self.cursor.describe_here();
                return Err(self
                    .cursor
                    .error_here(format!("expected 'contains' or 'matches' after 'not', found {found}")));
            }
        } else if self.cursor.keyword_at(self.cursor.position, "in") {
            return Err(self.cursor.error_here("'in' must follow a value, as in \"value\" in Selector"));
        } else {
            let found = self.cursor.describe_here();
            return Err(self.cursor.error_here(format!(
                "expected an operator (==, !=, is empty, is not empty, contains, matches) after the selector, found {found}"
            )));
        };
        let (text, value_position) = self.parse_value()?;
        let condition = match operator {
            ValueOperator::Equal => Condition::Equal(Operand::new(text)),
            ValueOperator::Contains => Condition::Contains(Operand::new(text)),
            ValueOperator::Matches => {
                self.regex_count += 1;
                if self.regex_count > FILTER_REGEX_COUNT_MAX {
                    return Err(FilterError::TooManyRegexes {
                        position: operator_start,
                        count_max: FILTER_REGEX_COUNT_MAX,
                    });
                }
                Condition::Matches(compile_regex(&text, value_position)?)
            }
        };
        Ok(Expression::Match(MatchExpression { selector, condition, negated }))
    }

    /// Parses the value after `==`, `contains`, `matches` and their negations; returns its text
    /// and where it started (for regex errors).
    fn parse_value(&mut self) -> Result<(String, usize), FilterError> {
        self.cursor.skip_whitespace();
        let start = self.cursor.position;
        match self.cursor.peek() {
            Some(b'"' | b'`') => {
                let (text, end) = parse_string_literal(self.cursor.source, start)?;
                self.cursor.position = end;
                Ok((text, start))
            }
            Some(byte) if is_word_byte(byte) => {
                let end = self.cursor.word_end(start);
                let word = &self.cursor.source[start..end];
                if is_keyword(word) {
                    return Err(self.cursor.error_at(
                        start,
                        format!("expected a value, found the keyword '{word}'; quote it to use it as a value"),
                    ));
                }
                self.cursor.position = end;
                Ok((word.to_string(), start))
            }
            _ => {
                let found = self.cursor.describe_here();
                Err(self.cursor.error_here(format!("expected a value, found {found}")))
            }
        }
    }
}

/// Builds an `and` / `or` node, or returns the single operand when there was no operator.
fn flatten(mut operands: Vec<Expression>, build: fn(Vec<Expression>) -> Expression) -> Expression {
    if operands.len() == 1
        && let Some(only) = operands.pop()
    {
        return only;
    }
    build(operands)
}

/// The operators that take a value after the selector, before the value is read.
enum ValueOperator {
    Equal,
    Contains,
    Matches,
}
