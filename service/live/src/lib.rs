//! The live view a server reads through while one writer changes the store.
//!
//! The service (`tearline-service`) serves reads from a *view*: a read-only
//! handle on the store opened at a moment when no write was in flight. Two
//! kinds of write change what a view shows, and [`Live`] orders both against
//! the readers:
//!
//! - **In-place writes** (put, delete, import, reconcile, an incremental
//!   rebuild) change the live generation's files. The writer holds
//!   [`Live::exclusive`] while it changes them and publishes the view it
//!   opens afterwards through the same guard ([`Exclusive::publish`]): no
//!   reader is inside a read while the files are half changed, and every
//!   reader that comes after sees the new view.
//! - **Shadow writes** (a full rebuild) build a new generation beside the
//!   live one and switch to it; the live generation's files do not change.
//!   Readers go on reading the old view the whole time; the writer then
//!   [`Live::publish`]es the new one, which only waits for reads already
//!   inside the old view. Reads never fail and never wait for the build.
//!
//! A reader holds a [`Reading`] for the length of one read. It derefs to the
//! view; the view it sees cannot change under it.
//!
//! Under `--cfg loom` the locks are loom's, and `tests/loom.rs` explores
//! every interleaving of a reader with a switch and of two writers, and
//! shows that a swap done without the gate is caught.

#[cfg(loom)]
use loom::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
#[cfg(not(loom))]
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The published view, swapped under concurrent readers. See the crate docs.
#[derive(Debug)]
pub struct Live<T> {
    view: RwLock<Arc<T>>,
}

impl<T> Live<T> {
    /// A live view showing `view`.
    pub fn new(view: T) -> Self {
        Self {
            view: RwLock::new(Arc::new(view)),
        }
    }

    /// Enters a read: the view stays the same, and no in-place write runs,
    /// until the returned guard is dropped.
    pub fn read(&self) -> Reading<'_, T> {
        Reading {
            guard: self.view.read().unwrap_or_else(|poisoned| poisoned.into_inner()),
        }
    }

    /// The current view, to keep past the read (it stays valid, but an
    /// in-place write may change the files under it: for what outlives a
    /// read, like a job's result, not for reading the store).
    pub fn snapshot(&self) -> Arc<T> {
        Arc::clone(&self.read().guard)
    }

    /// Waits for the reads in progress, then keeps every new read out until
    /// the guard is dropped: for a write that changes the live files.
    pub fn exclusive(&self) -> Exclusive<'_, T> {
        Exclusive {
            guard: self.view.write().unwrap_or_else(|poisoned| poisoned.into_inner()),
        }
    }

    /// Makes `view` the one every later read sees, waiting only for reads
    /// already inside the current one: for a write that built its state
    /// beside the live one.
    pub fn publish(&self, view: T) {
        self.exclusive().publish(view);
    }
}

/// One read of the live view (see [`Live::read`]).
#[derive(Debug)]
pub struct Reading<'a, T> {
    guard: RwLockReadGuard<'a, Arc<T>>,
}

impl<T> std::ops::Deref for Reading<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.guard
    }
}

/// An in-place write's hold on the live view (see [`Live::exclusive`]).
#[derive(Debug)]
pub struct Exclusive<'a, T> {
    guard: RwLockWriteGuard<'a, Arc<T>>,
}

impl<T> Exclusive<'_, T> {
    /// The view readers saw before this write.
    pub fn current(&self) -> &T {
        &self.guard
    }

    /// Replaces the view; readers see it once the guard is dropped.
    pub fn publish(&mut self, view: T) {
        *self.guard = Arc::new(view);
    }
}
