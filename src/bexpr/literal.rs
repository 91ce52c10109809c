//! Lexical pieces of a filter that need more than a glance at one byte: quoted strings (with
//! Go's backslash escapes), JSON-pointer selectors and `matches` regexes.
//!
//! Kept apart from the recursive-descent parser so that the parser reads as the grammar, and
//! so that the places where Go semantics are translated to Rust ones are in one file.

use regex::{Regex, RegexBuilder};
use std::str::CharIndices;

use super::{FILTER_REGEX_SIZE_BYTES_MAX, FilterError};

fn syntax_error(position: usize, reason: impl Into<String>) -> FilterError {
    FilterError::Syntax { position, reason: reason.into() }
}

/// Reads the string literal whose opening quote (`"` or a backtick) is at byte `start` of
/// `source`, returning its decoded text and the byte position just after the closing quote.
///
/// Backtick strings are raw, as in Go: no escapes, newlines allowed. Double-quoted strings take
/// Go's escapes (`\n`, `\t`, `\"`, `\\`, `\xHH`, `\uHHHH`, ...) because go-bexpr unquotes them
/// with `strconv.Unquote`; like Go they may not contain a raw newline.
pub(super) fn parse_string_literal(source: &str, start: usize) -> Result<(String, usize), FilterError> {
    let (Some(quote), Some(rest)) = (source.as_bytes().get(start), source.get(start + 1..)) else {
        return Err(syntax_error(start, "expected a quoted string"));
    };
    let content_start = start + 1;
    match quote {
        b'`' => match rest.find('`') {
            Some(offset) => Ok((rest[..offset].to_string(), content_start + offset + 1)),
            None => Err(syntax_error(start, "unterminated raw string, missing the closing '`'")),
        },
        b'"' => {
            let mut text = String::new();
            let mut characters = rest.char_indices();
            while let Some((offset, character)) = characters.next() {
                match character {
                    '"' => return Ok((text, content_start + offset + 1)),
                    '\n' => {
                        return Err(syntax_error(
                            content_start + offset,
                            "newline inside a double-quoted string; use a backtick string for multi-line values",
                        ));
                    }
                    '\\' => text.push(decode_escape(&mut characters, content_start + offset)?),
                    other => text.push(other),
                }
            }
            Err(syntax_error(start, "unterminated string, missing the closing '\"'"))
        }
        _ => Err(syntax_error(start, "expected a quoted string")),
    }
}

/// Decodes the escape sequence whose backslash is at `position`; `characters` is just past it.
fn decode_escape(characters: &mut CharIndices<'_>, position: usize) -> Result<char, FilterError> {
    let Some((_, kind)) = characters.next() else {
        return Err(syntax_error(position, "unterminated escape sequence"));
    };
    let code_point = match kind {
        'n' => return Ok('\n'),
        't' => return Ok('\t'),
        'r' => return Ok('\r'),
        '\\' => return Ok('\\'),
        '"' => return Ok('"'),
        'a' => return Ok('\u{7}'),
        'b' => return Ok('\u{8}'),
        'f' => return Ok('\u{c}'),
        'v' => return Ok('\u{b}'),
        'x' => single_byte(read_digits(characters, 2, 16, position)?, position)?,
        'u' => read_digits(characters, 4, 16, position)?,
        'U' => read_digits(characters, 8, 16, position)?,
        '0'..='7' => {
            // `kind` is an octal digit by the pattern above, so the fallback is never taken.
            let high = kind.to_digit(8).unwrap_or(0);
            single_byte(high * 64 + read_digits(characters, 2, 8, position)?, position)?
        }
        other => return Err(syntax_error(position, format!("unknown escape sequence '\\{other}'"))),
    };
    char::from_u32(code_point).ok_or_else(|| {
        syntax_error(position, format!("escape sequence encodes {code_point:#x}, which is not a unicode character"))
    })
}

/// Go lets `\xHH` and octal escapes produce any byte, but a filter value is UTF-8 text, so only
/// the ASCII half is accepted; other characters can be written directly or with `\u`.
fn single_byte(value: u32, position: usize) -> Result<u32, FilterError> {
    if value <= 0x7f {
        Ok(value)
    } else {
        Err(syntax_error(position, "byte escapes above \\x7f are not valid utf-8 on their own; use \\u instead"))
    }
}

fn read_digits(
    characters: &mut CharIndices<'_>,
    count: usize,
    radix: u32,
    position: usize,
) -> Result<u32, FilterError> {
    let mut value: u32 = 0;
    for _ in 0..count {
        let digit = characters.next().and_then(|(_, character)| character.to_digit(radix));
        let Some(digit) = digit else {
            return Err(syntax_error(position, format!("escape sequence needs {count} base-{radix} digits")));
        };
        // At most 8 hex digits, so this fits in a u32.
        value = value * radix + digit;
    }
    Ok(value)
}

/// Splits a JSON pointer (RFC 6901) such as `/Service/Meta/team~1owner` into path steps, or
/// returns `None` if the text does not start with `/` and so is not a pointer. go-bexpr
/// accepts a double-quoted JSON pointer wherever a selector may appear.
pub(super) fn json_pointer_steps(text: &str) -> Option<Vec<String>> {
    let pointer = text.strip_prefix('/')?;
    Some(pointer.split('/').map(|step| step.replace("~1", "/").replace("~0", "~")).collect())
}

/// Compiles the value of a `matches` operator. The `regex` crate's syntax is close to Go's RE2
/// (both lack backreferences and lookaround), and its matching time is linear, so a hostile
/// pattern can only cost memory, which the size limits cap.
pub(super) fn compile_regex(pattern: &str, position: usize) -> Result<Regex, FilterError> {
    RegexBuilder::new(pattern)
        .size_limit(FILTER_REGEX_SIZE_BYTES_MAX)
        .dfa_size_limit(FILTER_REGEX_SIZE_BYTES_MAX)
        .build()
        .map_err(|error| FilterError::InvalidRegex { position, reason: describe_regex_error(&error) })
}

/// The `regex` crate's syntax errors span several lines with a caret diagram; an HTTP error
/// message wants just the final `error: ...` line.
fn describe_regex_error(error: &regex::Error) -> String {
    match error {
        regex::Error::Syntax(text) => {
            let summary = text.lines().rev().find_map(|line| line.trim().strip_prefix("error: "));
            summary.unwrap_or(text).trim().to_string()
        }
        regex::Error::CompiledTooBig(limit_bytes) => {
            format!("compiled size exceeds the limit of {limit_bytes} bytes")
        }
        other => other.to_string().trim().trim_end_matches('.').to_string(),
    }
}
