//! The participant counts of the activities this process last wrote or read, so that a batch's
//! joins need no read before their update: one command on `activities` for the joins instead
//! of a read and an update.
//!
//! A count decides nothing by itself: the join statement it plans is guarded by it
//! ([`super::joins`]), so a count that is out of date (another consumer joined the activity
//! since a rebalance, a redelivered join is already listed, the read models were cleared)
//! matches nothing, and the batch's joins are then settled one by one with reads, as when two
//! writers race. Partitioning by aggregate gives one consumer an activity's joins, so its
//! counts stay right until its partitions move.

use indexmap::IndexMap;

/// How many activities' counts are kept: about 6 MB at most. Joins pick any activity of the
/// run; in a longer run, older counts make room (their next join reads).
pub const KEPT: usize = 65_536;

/// Activity id → participant count, bounded by a capacity.
#[derive(Debug)]
pub struct KnownCounts {
    counts: IndexMap<String, i64>,
    capacity: usize,
    /// Where the next count to make room is taken: it walks the map, so that what is taken
    /// is spread over all ages (a swap-remove moves the newest count into the hole, which the
    /// walk has passed).
    evict_at: usize,
    /// The consumer's assignment the counts were seen under ([`Self::since`]).
    assignment: u64,
}

impl Default for KnownCounts {
    fn default() -> Self {
        KnownCounts::with_capacity(KEPT)
    }
}

impl KnownCounts {
    /// At most `capacity` counts (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        KnownCounts {
            counts: IndexMap::new(),
            capacity: capacity.max(1),
            evict_at: 0,
            assignment: 0,
        }
    }

    /// Forgets every count unless they were seen under `assignment` (the consumer's
    /// assignments so far): after a rebalance, what another consumer joined meanwhile and the
    /// messages redelivered are planned from reads, as before any count was known. (A stale
    /// count would only cost a read, but a redelivered join planned from a count cannot be told
    /// from one applied now when its statement shares the update with others.)
    pub fn since(&mut self, assignment: u64) {
        if self.assignment != assignment {
            self.counts.clear();
            self.evict_at = 0;
            self.assignment = assignment;
        }
    }

    /// The count last seen for `activity`.
    pub fn get(&self, activity: &str) -> Option<i64> {
        self.counts.get(activity).copied()
    }

    /// Records the count seen for `activity` (read, or acknowledged after a write). When full,
    /// an older count makes room.
    pub fn set(&mut self, activity: &str, count: i64) {
        if let Some(c) = self.counts.get_mut(activity) {
            *c = count;
            return;
        }
        if self.counts.len() >= self.capacity {
            self.evict_at %= self.counts.len();
            self.counts.swap_remove_index(self.evict_at);
            self.evict_at += 1;
        }
        self.counts.insert(activity.to_owned(), count);
    }

    /// Forgets `activity`'s count: its next join reads.
    pub fn forget(&mut self, activity: &str) {
        self.counts.swap_remove(activity);
    }

    /// How many counts are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.counts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_assignment_forgets_every_count() {
        let mut k = KnownCounts::with_capacity(4);
        k.since(1);
        k.set("a1", 3);
        k.since(1);
        assert_eq!(k.get("a1"), Some(3));
        k.since(2);
        assert_eq!(k.get("a1"), None);
    }

    #[test]
    fn a_count_is_replaced_forgotten_and_older_ones_make_room() {
        let mut k = KnownCounts::with_capacity(2);
        k.set("a1", 0);
        k.set("a1", 3);
        assert_eq!(k.get("a1"), Some(3));
        k.set("a2", 1);
        k.set("a3", 5);
        assert_eq!(k.len(), 2);
        assert_eq!(k.get("a1"), None, "the oldest went first");
        assert_eq!((k.get("a2"), k.get("a3")), (Some(1), Some(5)));
        k.set("a4", 2);
        assert_eq!(k.get("a3"), None, "then the next one the walk reaches");
        assert_eq!((k.get("a2"), k.get("a4")), (Some(1), Some(2)));
        k.forget("a2");
        assert_eq!(k.get("a2"), None);
        assert_eq!(k.len(), 1);
    }
}
