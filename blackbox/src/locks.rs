//! The mount's lock table: advisory record locks kept per lock owner, as the
//! kernel keeps them.
//!
//! A lock is a byte range of one inode held by one *owner*, shared (read)
//! or exclusive (write). The kernel names the owner in every lock request
//! over FUSE (`lock_owner`): the process (its table of open files) for
//! classic POSIX `fcntl` locks, the open file description for OFD locks and
//! for `flock` (see the mount's docs). The rules, those of `fcntl(2)`:
//!
//! - Two locks conflict when they belong to different owners, overlap, and
//!   at least one is exclusive. An owner never conflicts with itself.
//! - Setting a range replaces the owner's own locks over that range
//!   (upgrade, downgrade, split); unlocking removes them, splitting a lock
//!   that sticks out on either side. Adjacent or overlapping locks of one
//!   owner and one kind are merged, so a lock taken piece by piece reads as
//!   one.
//!
//! Everything here is a pure function of the table: no I/O, no clock, and
//! every map is ordered.

use std::collections::{BTreeMap, BTreeSet};

/// One locked range of one owner: bytes `start..=end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Held {
    /// The first byte.
    pub(crate) start: u64,
    /// The last byte (inclusive; the kernel's `OFFSET_MAX` for "to the end").
    pub(crate) end: u64,
    /// A write lock (else a read lock).
    pub(crate) exclusive: bool,
    /// The process that asked for it (for `F_GETLK` answers).
    pub(crate) pid: u32,
}

/// A lock request: bytes `start..=end` of `ino` for `owner`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Request {
    /// The inode.
    pub(crate) ino: u64,
    /// The lock owner the kernel named.
    pub(crate) owner: u64,
    /// The first byte.
    pub(crate) start: u64,
    /// The last byte (inclusive).
    pub(crate) end: u64,
    /// A write lock (else a read lock).
    pub(crate) exclusive: bool,
}

impl Request {
    fn conflicts_with(&self, owner: u64, held: &Held) -> bool {
        owner != self.owner && held.start <= self.end && self.start <= held.end && (self.exclusive || held.exclusive)
    }
}

/// Every lock held on the mount, by (inode, owner).
#[derive(Debug, Default)]
pub(crate) struct Table {
    held: BTreeMap<(u64, u64), Vec<Held>>,
}

impl Table {
    /// Whether no lock is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.held.values().all(Vec::is_empty)
    }

    /// The first lock (in owner order) that conflicts with `request`, with
    /// its owner.
    pub(crate) fn conflict(&self, request: &Request) -> Option<(u64, Held)> {
        self.on(request.ino)
            .flat_map(|(owner, held)| held.iter().map(move |h| (owner, *h)))
            .find(|(owner, held)| request.conflicts_with(*owner, held))
    }

    /// The owners holding a lock that conflicts with `request`.
    pub(crate) fn blockers(&self, request: &Request) -> BTreeSet<u64> {
        self.on(request.ino)
            .filter(|(owner, held)| held.iter().any(|h| request.conflicts_with(*owner, h)))
            .map(|(owner, _)| owner)
            .collect()
    }

    /// Whether any owner holds a lock overlapping bytes `start..=end` of `ino`.
    pub(crate) fn any_overlapping(&self, ino: u64, start: u64, end: u64) -> bool {
        self.on(ino)
            .any(|(_, held)| held.iter().any(|h| h.start <= end && start <= h.end))
    }

    fn on(&self, ino: u64) -> impl Iterator<Item = (u64, &Vec<Held>)> {
        self.held
            .range((ino, 0)..=(ino, u64::MAX))
            .map(|(&(_, owner), held)| (owner, held))
    }

    /// The locks `owner` holds on `ino`, sorted by start.
    pub(crate) fn held(&self, ino: u64, owner: u64) -> &[Held] {
        self.held.get(&(ino, owner)).map_or(&[], Vec::as_slice)
    }

    /// Sets (`Some(exclusive)`) or clears (`None`) `owner`'s lock over bytes
    /// `start..=end` of `ino`, replacing its own locks there. Never checks
    /// conflicts: call [`Table::conflict`] first.
    pub(crate) fn set(&mut self, ino: u64, owner: u64, start: u64, end: u64, mode: Option<bool>, pid: u32) {
        let old = self.held.remove(&(ino, owner)).unwrap_or_default();
        let mut kept: Vec<Held> = Vec::with_capacity(old.len() + 2);
        for h in old {
            if h.end < start || end < h.start {
                kept.push(h);
                continue;
            }
            if h.start < start {
                kept.push(Held { end: start - 1, ..h });
            }
            if end < h.end {
                kept.push(Held { start: end + 1, ..h });
            }
        }
        if let Some(exclusive) = mode {
            kept.push(Held {
                start,
                end,
                exclusive,
                pid,
            });
        }
        kept.sort_by_key(|h| h.start);
        let mut merged: Vec<Held> = Vec::with_capacity(kept.len());
        for h in kept {
            match merged.last_mut() {
                Some(last) if last.exclusive == h.exclusive && last.end.saturating_add(1) >= h.start => {
                    last.end = last.end.max(h.end);
                }
                _ => merged.push(h),
            }
        }
        if !merged.is_empty() {
            self.held.insert((ino, owner), merged);
        }
    }

    /// Drops every lock of `owner` on `ino`; whether it held any.
    pub(crate) fn clear(&mut self, ino: u64, owner: u64) -> bool {
        self.held.remove(&(ino, owner)).is_some()
    }

    /// Whether `owner` holds one exclusive lock over bytes `0..=whole_end`
    /// (or beyond) of `ino`: the whole file.
    pub(crate) fn whole_exclusive(&self, ino: u64, owner: u64, whole_end: u64) -> bool {
        matches!(self.held(ino, owner), [h] if h.exclusive && h.start == 0 && h.end >= whole_end)
    }
}

/// Whether granting nothing to `request` and letting it wait would close a
/// cycle of owners each waiting for the next: `request`'s blockers, the
/// owners those wait for (through the requests in `waiting`), and so on,
/// reach `request`'s own owner. The kernel answers such a request `EDEADLK`.
pub(crate) fn would_deadlock(table: &Table, waiting: &[Request], request: &Request) -> bool {
    let mut seen = BTreeSet::new();
    let mut frontier: Vec<u64> = table.blockers(request).into_iter().collect();
    while let Some(owner) = frontier.pop() {
        if owner == request.owner {
            return true;
        }
        if !seen.insert(owner) {
            continue;
        }
        for wait in waiting.iter().filter(|w| w.owner == owner) {
            frontier.extend(table.blockers(wait));
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = i64::MAX as u64;

    fn request(owner: u64, start: u64, end: u64, exclusive: bool) -> Request {
        Request {
            ino: 7,
            owner,
            start,
            end,
            exclusive,
        }
    }

    #[test]
    fn an_owner_never_conflicts_with_itself_and_upgrades_in_place() {
        let mut table = Table::default();
        table.set(7, 1, 0, MAX, Some(false), 10);
        // Another owner's shared lock is fine; its exclusive lock is not.
        assert_eq!(table.conflict(&request(2, 5, 5, false)), None);
        assert_eq!(table.conflict(&request(2, 5, 5, true)).map(|(o, _)| o), Some(1));
        // The holder upgrades its own shared lock: no conflict with itself.
        assert_eq!(table.conflict(&request(1, 0, MAX, true)), None);
        table.set(7, 1, 0, MAX, Some(true), 10);
        assert!(table.whole_exclusive(7, 1, MAX));
        // A lock on another inode is another matter.
        assert_eq!(
            table.conflict(&Request {
                ino: 8,
                ..request(2, 0, 0, true)
            }),
            None
        );
    }

    #[test]
    fn setting_and_clearing_split_and_merge_ranges() {
        let mut table = Table::default();
        table.set(7, 1, 0, 99, Some(true), 10);
        table.set(7, 1, 40, 59, None, 10);
        let ranges: Vec<(u64, u64, bool)> = table.held(7, 1).iter().map(|h| (h.start, h.end, h.exclusive)).collect();
        assert_eq!(ranges, vec![(0, 39, true), (60, 99, true)]);
        table.set(7, 1, 50, 69, Some(false), 10);
        let ranges: Vec<(u64, u64, bool)> = table.held(7, 1).iter().map(|h| (h.start, h.end, h.exclusive)).collect();
        assert_eq!(ranges, vec![(0, 39, true), (50, 69, false), (70, 99, true)]);
        // Filling the gap with an exclusive lock and downgrading nothing
        // merges it back into pieces of one kind.
        table.set(7, 1, 40, 99, Some(true), 10);
        let ranges: Vec<(u64, u64, bool)> = table.held(7, 1).iter().map(|h| (h.start, h.end, h.exclusive)).collect();
        assert_eq!(ranges, vec![(0, 99, true)]);
        assert!(!table.whole_exclusive(7, 1, MAX));
        table.set(7, 1, 100, MAX, Some(true), 10);
        assert!(table.whole_exclusive(7, 1, MAX), "taken piece by piece, held whole");
        assert!(table.clear(7, 1));
        assert!(!table.clear(7, 1));
        assert!(table.held(7, 1).is_empty());
    }

    #[test]
    fn a_cycle_of_waiting_owners_is_a_deadlock() {
        let mut table = Table::default();
        table.set(7, 1, 0, 0, Some(true), 10);
        table.set(7, 2, 1, 1, Some(true), 20);
        // Owner 1 waits for byte 1 (held by 2): no cycle yet.
        let first = request(1, 1, 1, true);
        assert!(!would_deadlock(&table, &[], &first));
        // Owner 2 now asks for byte 0 (held by 1, who waits for 2).
        assert!(would_deadlock(&table, &[first], &request(2, 0, 0, true)));
        // A third owner waiting for byte 0 closes no cycle.
        assert!(!would_deadlock(&table, &[first], &request(3, 0, 0, true)));
    }
}
