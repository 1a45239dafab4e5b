//! The run tag an outbox row carries (column `run_tag`): which run and phase it belongs to,
//! which generator wrote it and when it was due. Any consumer of the group can then file the
//! event's latency under its run and phase, and measure it from its schedule, without asking
//! the process that generated it: that is what lets figures merge across processes and hosts.
//!
//! On the wire it is one short line, `v1|RUN|PHASE|GENERATOR|DUE_US` (`-` when unpaced).
//! A row written by someone else may carry anything there: a tag that does not parse is no
//! tag (the event is still applied, and counted as untagged), never an error.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The longest tag read; longer text is not a tag of ours.
pub const MAX_TAG_BYTES: usize = 256;

/// The longest run or phase name.
pub const MAX_NAME_BYTES: usize = 80;

/// Where an event belongs in a run.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RunTag {
    /// The run's name: shared by every generator of one run.
    pub run: Arc<str>,
    /// The phase's name ("load", "warm-up", …).
    pub phase: Arc<str>,
    /// Which generator of the run wrote the row (0 for a run with one).
    pub generator: u32,
    /// When the row was due to be inserted, µs since the epoch (open-loop phases only).
    pub due_us: Option<i64>,
}

/// Why a run or phase name cannot be used.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("is empty".into())
    } else if name.len() > MAX_NAME_BYTES {
        Some(format!("is longer than {MAX_NAME_BYTES} bytes"))
    } else if name.chars().any(|c| c == '|' || c.is_control()) {
        Some("may not hold `|` or control characters".into())
    } else {
        None
    }
}

impl RunTag {
    /// The column's text.
    pub fn encode(&self) -> String {
        let due = self
            .due_us
            .map_or_else(|| "-".to_owned(), |d| d.to_string());
        format!("v1|{}|{}|{}|{due}", self.run, self.phase, self.generator)
    }

    /// The tag in a column's text, if it is one.
    pub fn parse(text: &str) -> Option<RunTag> {
        if text.len() > MAX_TAG_BYTES {
            return None;
        }
        let mut parts = text.split('|');
        if parts.next()? != "v1" {
            return None;
        }
        let run = parts.next()?;
        let phase = parts.next()?;
        let generator = parts.next()?.parse().ok()?;
        let due_us = match parts.next()? {
            "-" => None,
            d => Some(d.parse().ok()?),
        };
        if parts.next().is_some() || name_problem(run).is_some() || name_problem(phase).is_some() {
            return None;
        }
        Some(RunTag {
            run: run.into(),
            phase: phase.into(),
            generator,
            due_us,
        })
    }
}

impl fmt::Display for RunTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} / {}", self.run, self.phase)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(due: Option<i64>) -> RunTag {
        RunTag {
            run: "demo-1".into(),
            phase: "ramp 100".into(),
            generator: 2,
            due_us: due,
        }
    }

    #[test]
    fn a_tag_reads_back_as_written() {
        for due in [None, Some(1_795_377_600_123_456)] {
            let t = tag(due);
            assert_eq!(RunTag::parse(&t.encode()), Some(t));
        }
        assert_eq!(tag(None).encode(), "v1|demo-1|ramp 100|2|-");
    }

    #[test]
    fn anything_else_is_no_tag() {
        let long = format!("v1|{}|p|0|-", "r".repeat(300));
        for bad in [
            "",
            "v2|r|p|0|-",
            "v1|r|p|0",
            "v1|r|p|x|-",
            "v1|r|p|0|soon",
            "v1|r|p|0|-|more",
            "v1||p|0|-",
            "v1|r\u{1b}[2J|p|0|-",
            long.as_str(),
        ] {
            assert_eq!(RunTag::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn names_are_checked_with_a_reason() {
        assert_eq!(name_problem("nightly-2026.12.02"), None);
        assert!(name_problem("").is_some());
        assert!(name_problem("a|b").unwrap().contains("`|`"));
        assert!(name_problem(&"x".repeat(81)).is_some());
    }
}
