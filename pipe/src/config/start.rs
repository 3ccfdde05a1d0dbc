//! Where a pipeline starts reading when it has no position in its
//! stream's log (`start` in its definition); the supervisor resolves it
//! (`crate::running::supervisor`).

use chrono::DateTime;

/// A pipeline's start point (`start` in its definition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    #[default]
    Earliest,
    End,
    Offset(u64),
    /// µs since the epoch.
    Time(i64),
}

impl std::str::FromStr for StartAt {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<StartAt, String> {
        let expected = "expected `earliest`, `end`, `offset:N` or `time:RFC3339`";
        match text.trim() {
            "earliest" => Ok(StartAt::Earliest),
            "end" => Ok(StartAt::End),
            other => match other.split_once(':') {
                Some(("offset", n)) => n
                    .trim()
                    .parse()
                    .map(StartAt::Offset)
                    .map_err(|e| format!("`{other}`: {e}; {expected}")),
                Some(("time", t)) => DateTime::parse_from_rfc3339(t.trim())
                    .map(|t| StartAt::Time(t.timestamp_micros()))
                    .map_err(|e| format!("`{other}`: {e}; {expected}")),
                _ => Err(format!("`{other}`: {expected}")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_points_parse_and_bad_ones_say_what_is_expected() {
        assert_eq!("end".parse(), Ok(StartAt::End));
        assert_eq!("earliest".parse(), Ok(StartAt::Earliest));
        assert_eq!("offset:42".parse(), Ok(StartAt::Offset(42)));
        assert_eq!(
            "time:2026-11-30T10:00:00Z".parse(),
            Ok(StartAt::Time(1_796_032_800_000_000))
        );
        let bad = "latest".parse::<StartAt>().unwrap_err();
        assert!(bad.contains("expected `earliest`"), "{bad}");
        assert!("offset:x".parse::<StartAt>().is_err());
    }
}
