//! [`FaultyVectorStore`]: any [`VectorStore`] made to fail like a remote
//! vector database, switched at run time through a [`FaultSwitch`].
//!
//! # Fault model
//!
//! A remote store can fail in ways a local file does not, and the caller
//! cannot always tell whether a write happened:
//!
//! | [`FaultMode`] | writes (`upsert`, `delete`) | reads (`get`, `ids`, `nearest`) |
//! |---|---|---|
//! | `Healthy` | forwarded | forwarded |
//! | `Unavailable` | `Unavailable`, not applied | `Unavailable` |
//! | `IoError` | `Io` (`EIO`), not applied | `Io` (`EIO`) |
//! | `TimeoutBeforeApply` | `Timeout`, not applied | `Timeout` |
//! | `TimeoutAfterApply` | applied (durably), then `Timeout` | `Timeout` |
//!
//! `TimeoutAfterApply` is the ambiguous outcome a caller must survive: the
//! write is in the store, but the caller was told it timed out. If the inner
//! store refuses the write itself (bad input, its own failure), that error is
//! returned instead of `Timeout`. [`VectorStore::dimension`] is configuration,
//! not a call to the remote, and is always forwarded.
//!
//! A mode stays until it is switched again. The switch is shared: a test
//! keeps a clone and flips it while the store under test owns the wrapper.

use std::sync::{Arc, Mutex, PoisonError};

use tearline_sim_fs::errno;

use super::{Neighbour, VectorError, VectorId, VectorStore};

/// How a [`FaultyVectorStore`] behaves. See the module docs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FaultMode {
    /// Every call is forwarded.
    #[default]
    Healthy,
    /// Every call fails with [`VectorError::Unavailable`]; nothing is applied.
    Unavailable,
    /// Every call fails with [`VectorError::Io`] (`EIO`); nothing is applied.
    IoError,
    /// Every call fails with [`VectorError::Timeout`]; nothing is applied.
    TimeoutBeforeApply,
    /// Writes are applied, then fail with [`VectorError::Timeout`]; reads
    /// fail with `Timeout`.
    TimeoutAfterApply,
}

/// A shared handle on a [`FaultyVectorStore`]'s mode. Clones control the same
/// store. Starts [`FaultMode::Healthy`].
#[derive(Clone, Debug, Default)]
pub struct FaultSwitch {
    mode: Arc<Mutex<FaultMode>>,
}

impl FaultSwitch {
    /// A new switch, set to [`FaultMode::Healthy`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the mode for every call from now on.
    pub fn set(&self, mode: FaultMode) {
        *self.mode.lock().unwrap_or_else(PoisonError::into_inner) = mode;
    }

    /// The current mode.
    pub fn mode(&self) -> FaultMode {
        *self.mode.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A [`VectorStore`] wrapper that fails as its [`FaultSwitch`] says.
#[derive(Debug)]
pub struct FaultyVectorStore {
    inner: Box<dyn VectorStore>,
    switch: FaultSwitch,
}

impl FaultyVectorStore {
    /// Wraps `inner`, controlled by `switch`.
    pub fn new(inner: Box<dyn VectorStore>, switch: FaultSwitch) -> Self {
        Self { inner, switch }
    }

    /// The switch controlling this store (clone it to keep one).
    pub fn switch(&self) -> &FaultSwitch {
        &self.switch
    }

    /// The wrapped store, without the faults.
    pub fn into_inner(self) -> Box<dyn VectorStore> {
        self.inner
    }

    /// Runs a write as the mode says.
    fn write(
        &mut self,
        apply: impl FnOnce(&mut dyn VectorStore) -> Result<(), VectorError>,
    ) -> Result<(), VectorError> {
        let mode = self.switch.mode();
        if let Some(error) = refusal(mode) {
            return Err(error);
        }
        apply(&mut *self.inner)?;
        match mode {
            FaultMode::TimeoutAfterApply => Err(VectorError::Timeout),
            _ => Ok(()),
        }
    }

    /// Runs a read as the mode says.
    fn read<T>(&self, query: impl FnOnce(&dyn VectorStore) -> Result<T, VectorError>) -> Result<T, VectorError> {
        let mode = self.switch.mode();
        if let Some(error) = refusal(mode) {
            return Err(error);
        }
        match mode {
            FaultMode::TimeoutAfterApply => Err(VectorError::Timeout),
            _ => query(&*self.inner),
        }
    }
}

/// The error a mode returns without calling the inner store, if it is one
/// that refuses.
fn refusal(mode: FaultMode) -> Option<VectorError> {
    match mode {
        FaultMode::Healthy | FaultMode::TimeoutAfterApply => None,
        FaultMode::Unavailable => Some(VectorError::Unavailable(
            "injected: the vector store is unreachable".into(),
        )),
        FaultMode::IoError => Some(VectorError::Io(errno::eio())),
        FaultMode::TimeoutBeforeApply => Some(VectorError::Timeout),
    }
}

#[deny(clippy::missing_trait_methods)]
impl VectorStore for FaultyVectorStore {
    fn dimension(&self) -> usize {
        self.inner.dimension()
    }

    fn upsert(&mut self, id: VectorId, vector: &[f32]) -> Result<(), VectorError> {
        self.write(|inner| inner.upsert(id, vector))
    }

    fn delete(&mut self, id: VectorId) -> Result<(), VectorError> {
        self.write(|inner| inner.delete(id))
    }

    fn get(&self, id: VectorId) -> Result<Option<Vec<f32>>, VectorError> {
        self.read(|inner| inner.get(id))
    }

    fn ids(&self) -> Result<Vec<VectorId>, VectorError> {
        self.read(|inner| inner.ids())
    }

    fn nearest(&self, query: &[f32], k: usize) -> Result<Vec<Neighbour>, VectorError> {
        self.read(|inner| inner.nearest(query, k))
    }
}
