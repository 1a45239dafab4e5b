//! What handled batches still owe before their offsets may be committed: their statistics,
//! their timing records and the offsets themselves, folded over a short window of batches.
//!
//! At 1,000 events/s a poll holds one transaction's events (a few to a few dozen), and each
//! batch's statistics were a command of their own on the MongoDB-protocol server: folded
//! over [`WINDOW`], many polls share one. Nothing changes for the read models: the
//! documents are written per batch and T5 is their acknowledgement; the statistics are
//! exact whatever the folding, because each partition's counted mark guards them (a crash
//! before the folded update leaves the offsets uncommitted, the messages come again and
//! count then). The records are published once the statistics they add up to are written,
//! so a run that has every record also has its statistics.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use crate::pipeline::store::statistics::Counted;
use crate::telemetry::metrics::EventRecord;

/// How long a handled batch may wait for its statistics, records and offsets: short beside
/// the commit interval and the dashboard's refresh, long beside the gap between polls.
pub const WINDOW: Duration = Duration::from_millis(50);

/// The debts of the batches handled since the last settling.
#[derive(Debug, Default)]
pub struct Owed {
    /// Events to count in the global statistics.
    pub counted: Vec<Counted>,
    /// Each joined activity's participant count, the highest seen.
    pub activity_counts: BTreeMap<String, i64>,
    /// Timing records to publish.
    pub records: Vec<EventRecord>,
    /// The next offset to commit per (topic, partition).
    pub offsets: HashMap<(String, i32), i64>,
    /// When the oldest debt was taken on.
    since: Option<Instant>,
}

impl Owed {
    /// Adds a handled batch: what it counts, its activities' counts, its records and the
    /// offsets it reached.
    pub fn add(
        &mut self,
        counted: Vec<Counted>,
        activity_counts: BTreeMap<String, i64>,
        records: Vec<EventRecord>,
        offsets: impl IntoIterator<Item = ((String, i32), i64)>,
        now: Instant,
    ) {
        self.since.get_or_insert(now);
        self.counted.extend(counted);
        for (id, n) in activity_counts {
            let e = self.activity_counts.entry(id).or_insert(n);
            *e = (*e).max(n);
        }
        self.records.extend(records);
        for (tp, next) in offsets {
            let e = self.offsets.entry(tp).or_insert(next);
            *e = (*e).max(next);
        }
    }

    /// Whether anything is owed.
    pub fn is_empty(&self) -> bool {
        self.since.is_none()
    }

    /// When the debts are to be settled (`None`: nothing owed).
    pub fn due(&self) -> Option<Instant> {
        self.since.map(|s| s + WINDOW)
    }

    /// Whether the window is over at `now`.
    pub fn is_due(&self, now: Instant) -> bool {
        self.due().is_some_and(|d| now >= d)
    }

    /// Takes everything owed, leaving nothing.
    pub fn take(&mut self) -> Owed {
        std::mem::take(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventType;
    use crate::pipeline::store::statistics::Lane;

    fn c(offset: i64) -> Counted {
        Counted {
            lane: Lane::Raw,
            partition: 0,
            offset,
            event_type: EventType::UserCreated,
        }
    }

    #[test]
    fn batches_fold_into_one_settling_with_the_highest_counts_and_offsets() {
        let t0 = Instant::now();
        let mut o = Owed::default();
        assert!(o.is_empty() && o.due().is_none() && !o.is_due(t0));
        o.add(
            vec![c(1), c(2)],
            BTreeMap::from([("a".to_owned(), 3)]),
            vec![],
            [(("t".to_owned(), 0), 3), (("t".to_owned(), 1), 7)],
            t0,
        );
        o.add(
            vec![c(3)],
            BTreeMap::from([("a".to_owned(), 2), ("b".to_owned(), 1)]),
            vec![],
            [(("t".to_owned(), 0), 4)],
            t0 + Duration::from_millis(30),
        );
        // The window runs from the first debt, not the last.
        assert_eq!(o.due(), Some(t0 + WINDOW));
        assert!(!o.is_due(t0 + Duration::from_millis(49)));
        assert!(o.is_due(t0 + WINDOW));
        let all = o.take();
        assert!(o.is_empty());
        assert_eq!(all.counted, vec![c(1), c(2), c(3)]);
        assert_eq!(
            all.activity_counts,
            BTreeMap::from([("a".to_owned(), 3), ("b".to_owned(), 1)])
        );
        assert_eq!(all.offsets[&("t".to_owned(), 0)], 4);
        assert_eq!(all.offsets[&("t".to_owned(), 1)], 7);
    }
}
