//! Go's duration syntax (`time.ParseDuration`: "10s", "1m30s", "100ms"), which Consul uses
//! for every duration in its config files and flags. PURE.

use std::time::Duration;

/// A Go duration string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct DurationError {
    pub input: String,
    pub reason: String,
}

/// Parses Go's `time.ParseDuration` syntax ("10s", "1m30s", "15.0s", "100ms", "0").
///
/// Consul writes every duration this way, in files and flags alike. Negative
/// durations are rejected because no cairn setting can use them.
///
/// # Errors
/// Returns a [`DurationError`] for a missing or unknown unit, a malformed
/// number, a negative duration, or one longer than Go's ~292-year limit.
pub fn parse_go_duration(text: &str) -> Result<Duration, DurationError> {
    let fail = |reason: String| DurationError {
        input: text.to_string(),
        reason,
    };
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.starts_with('-') {
        return Err(fail("negative durations are not allowed".to_string()));
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(fail("empty duration".to_string()));
    }
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after_number) = rest.split_at(number_len);
        let unit_len = after_number
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after_number.len());
        let (unit, after_unit) = after_number.split_at(unit_len);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(fail(format!("expected a number before {unit:?}")));
        }
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(fail("missing unit (use ns, us, ms, s, m or h)".to_string())),
            other => return Err(fail(format!("unknown unit {other:?}"))),
        };
        let whole_value: u128 = if whole.is_empty() {
            0
        } else {
            whole
                .parse()
                .map_err(|_| fail("number too large".to_string()))?
        };
        // Digits past 18 cannot change a nanosecond count, and would overflow.
        let (mut fraction_value, mut fraction_scale) = (0u128, 1u128);
        for digit in fraction.bytes().take(18) {
            fraction_value = fraction_value * 10 + u128::from(digit - b'0');
            fraction_scale *= 10;
        }
        total_nanos = whole_value
            .checked_mul(unit_nanos)
            .and_then(|nanos| nanos.checked_add(fraction_value * unit_nanos / fraction_scale))
            .and_then(|nanos| nanos.checked_add(total_nanos))
            .ok_or_else(|| fail("duration too large".to_string()))?;
        rest = after_unit;
    }
    // Go's limit is i64 nanoseconds (about 292 years); anything above is a typo.
    let nanos = i64::try_from(total_nanos).map_err(|_| fail("duration too large".to_string()))?;
    Ok(Duration::from_nanos(nanos.unsigned_abs()))
}
