//! Byte-level reading of a filter expression: the position, character classes, whole-word
//! keyword recognition and error construction that the grammar in `parse.rs` is built on.
//!
//! Every token boundary in the grammar is an ASCII byte, so the cursor works on bytes; every
//! position it stops at is an ASCII byte or the end, and slicing the source there cannot split
//! a UTF-8 character.

use super::FilterError;

/// Words with a grammatical role; they cannot be selectors or bare values.
const KEYWORDS: [&str; 7] = ["and", "or", "not", "in", "is", "contains", "matches"];

pub(super) fn is_keyword(word: &str) -> bool {
    KEYWORDS.contains(&word)
}

/// go-bexpr's whitespace: space, tab, carriage return and newline.
pub(super) fn is_whitespace_byte(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

/// Bytes of a bare word: a bare value, or the run of text a keyword must not be part of.
pub(super) fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'/' | b'-' | b':')
}

/// Bytes that may continue an identifier (one step of a dotted selector).
fn is_identifier_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'/' | b'-')
}

/// A read position in the expression.
pub(super) struct Cursor<'a> {
    pub(super) source: &'a str,
    /// Byte offset of the next unread byte.
    pub(super) position: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(source: &'a str) -> Cursor<'a> {
        Cursor { source, position: 0 }
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.source.as_bytes().get(self.position).copied()
    }

    pub(super) fn whitespace_end(&self, mut position: usize) -> usize {
        while self.source.as_bytes().get(position).is_some_and(|byte| is_whitespace_byte(*byte)) {
            position += 1;
        }
        position
    }

    pub(super) fn skip_whitespace(&mut self) {
        self.position = self.whitespace_end(self.position);
    }

    pub(super) fn word_end(&self, mut position: usize) -> usize {
        while self.source.as_bytes().get(position).is_some_and(|byte| is_word_byte(*byte)) {
            position += 1;
        }
        position
    }

    /// Whether `keyword` is at `position` as a whole word, so that `android` or `order` are
    /// never read as `and` / `or` followed by something.
    pub(super) fn keyword_at(&self, position: usize, keyword: &str) -> bool {
        self.source.as_bytes().get(position..).is_some_and(|rest| rest.starts_with(keyword.as_bytes()))
            && self.word_end(position) == position + keyword.len()
    }

    pub(super) fn eat_keyword(&mut self, keyword: &str) -> bool {
        let found = self.keyword_at(self.position, keyword);
        if found {
            self.position += keyword.len();
        }
        found
    }

    pub(super) fn eat_symbol(&mut self, symbol: &str) -> bool {
        let found = self.source.as_bytes().get(self.position..).is_some_and(|rest| rest.starts_with(symbol.as_bytes()));
        if found {
            self.position += symbol.len();
        }
        found
    }

    /// Consumes identifier bytes from the current position; the caller has checked the first.
    pub(super) fn take_identifier(&mut self) -> &'a str {
        let start = self.position;
        while self.peek().is_some_and(is_identifier_byte) {
            self.position += 1;
        }
        &self.source[start..self.position]
    }

    /// Names what is at the current position for an error message: a whole word, one
    /// character, or the end.
    pub(super) fn describe_here(&self) -> String {
        let word_end = self.word_end(self.position);
        if word_end > self.position {
            return format!("'{}'", &self.source[self.position..word_end]);
        }
        match self.source.get(self.position..).and_then(|rest| rest.chars().next()) {
            Some(character) => format!("{character:?}"),
            None => "the end of the expression".to_string(),
        }
    }

    pub(super) fn error_at(&self, position: usize, reason: impl Into<String>) -> FilterError {
        FilterError::Syntax { position, reason: reason.into() }
    }

    pub(super) fn error_here(&self, reason: impl Into<String>) -> FilterError {
        self.error_at(self.position, reason)
    }
}
