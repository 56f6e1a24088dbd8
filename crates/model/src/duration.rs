//! Durations as people write them: the one parser behind every duration belay reads, whether
//! from a command-line flag, `belay.toml`, a playbook, a guardrail or an action's input.
//!
//! It only turns text into a `Duration`; it never applies a limit (a maximum, a non-zero
//! rule): those belong to the caller, who knows what the duration is for.

use std::time::Duration;

/// Text that is not a duration; shows why (e.g. `unknown time unit "x"`), not which text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DurationError(String);

/// Parses a duration such as `500ms`, `30s`, `10m`, `1h`, `30d`, `2w` or `1h 30m` (the forms
/// of the `humantime` crate), or a bare number of seconds such as `30`.
///
/// ```
/// use std::time::Duration;
/// use belay_model::parse_duration;
/// assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
/// assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
/// assert!(parse_duration("soon").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return trimmed
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| DurationError("number is too large".into()));
    }
    humantime::parse_duration(text).map_err(|e| DurationError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(text: &str) -> u64 {
        parse_duration(text)
            .unwrap_or_else(|e| panic!("`{text}`: {e}"))
            .as_secs()
    }

    #[test]
    fn every_unit_a_flag_or_setting_uses_is_accepted() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(secs("30s"), 30);
        assert_eq!(secs("10m"), 600);
        assert_eq!(secs("1h"), 3600);
        assert_eq!(secs("30d"), 30 * 86_400);
        assert_eq!(secs("2w"), 14 * 86_400);
        assert_eq!(secs("1h 30m"), 5400);
        assert_eq!(secs("1day"), 86_400);
        assert_eq!(secs("1.5h"), 5400);
    }

    #[test]
    fn a_bare_number_is_seconds() {
        assert_eq!(secs("30"), 30);
        assert_eq!(secs("0"), 0);
        assert_eq!(secs(" 7 "), 7);
    }

    #[test]
    fn text_that_is_not_a_duration_is_refused_with_the_reason() {
        for bad in ["", "soon", "1x", "-5s", "99999999999999999999999"] {
            assert!(parse_duration(bad).is_err(), "`{bad}` was accepted");
        }
        let e = parse_duration("3 parsecs").unwrap_err().to_string();
        assert!(e.contains("unknown time unit"), "{e}");
    }
}
