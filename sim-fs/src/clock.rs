//! Time, as a store sees it: the [`Clock`] trait, the system clock, and a
//! virtual clock for simulations.
//!
//! [`SimClock`] starts at a fixed epoch ([`SimClock::epoch`]), moves only when
//! told to (the simulated filesystem advances it by a fixed cost per syscall;
//! [`Clock::sleep`] advances it instead of blocking), and can be made to jump
//! backwards, as a real wall clock does when NTP steps it.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// A source of wall-clock time. Object-safe; stores hold an `Arc<dyn Clock>`.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current wall-clock time. It may go backwards (clocks get stepped).
    fn now(&self) -> SystemTime;

    /// Waits for `duration` (on a virtual clock: advances it, returns at once).
    fn sleep(&self, duration: Duration);
}

/// The operating system's clock: `SystemTime::now` and `std::thread::sleep`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// A virtual clock. Clones share the same time.
#[derive(Clone, Debug)]
pub struct SimClock {
    now: Arc<Mutex<SystemTime>>,
}

impl Default for SimClock {
    fn default() -> Self {
        Self::new()
    }
}

impl SimClock {
    /// Seconds from the Unix epoch to [`SimClock::epoch`]: 2020-01-01T00:00:00Z.
    pub const EPOCH_UNIX_SECS: u64 = 1_577_836_800;

    /// Where every simulation's time starts: 2020-01-01T00:00:00Z.
    pub fn epoch() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(Self::EPOCH_UNIX_SECS)
    }

    /// A clock at [`SimClock::epoch`].
    pub fn new() -> Self {
        Self {
            now: Arc::new(Mutex::new(Self::epoch())),
        }
    }

    /// A clock of its own showing `now` (a copy of a machine's clock).
    pub(crate) fn at(now: SystemTime) -> Self {
        Self {
            now: Arc::new(Mutex::new(now)),
        }
    }

    /// Moves time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now = now.checked_add(by).unwrap_or(*now);
    }

    /// Steps time backwards by `by` (never before the Unix epoch).
    pub fn jump_back(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now = now.checked_sub(by).unwrap_or(SystemTime::UNIX_EPOCH);
    }

    /// Time elapsed since [`SimClock::epoch`] (zero if the clock was stepped before it).
    pub fn since_epoch(&self) -> Duration {
        self.now().duration_since(Self::epoch()).unwrap_or_default()
    }
}

impl Clock for SimClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sleep(&self, duration: Duration) {
        self.advance(duration);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_clock_starts_at_the_epoch_and_moves_only_when_told() {
        let clock = SimClock::new();
        assert_eq!(clock.now(), SimClock::epoch());
        clock.sleep(Duration::from_secs(5));
        assert_eq!(clock.since_epoch(), Duration::from_secs(5));
        let shared = clock.clone();
        shared.advance(Duration::from_millis(1));
        assert_eq!(clock.since_epoch(), Duration::from_millis(5001));
    }

    #[test]
    fn sim_clock_can_jump_backwards() {
        let clock = SimClock::new();
        clock.advance(Duration::from_secs(10));
        let before = clock.now();
        clock.jump_back(Duration::from_secs(60));
        assert!(clock.now() < before);
        assert!(clock.now() < SimClock::epoch());
    }
}
