//! recovery-idempotent's last opens, each checked once per distinct
//! machine.
//!
//! After every recovery that kept every invariant, the check cuts the power
//! (nothing unsynced survives) and opens the store a third time on the
//! rebooted machine: right after the recovery if it left anything unsynced,
//! and in the middle of the second open. Recoveries from different faults
//! mostly end in the same few stores, so most of those rebooted machines
//! are ones an earlier case of the matrix already opened: in long-mixed,
//! 18,771 third opens booted 4,748 distinct machines. A rebooted machine is
//! thrown away after its open, so nothing that follows depends on what the
//! open did, only on its verdict.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tearline_model::{Observation, RemoteFault};
use tearline_sim_fs::{PageHashes, SimFs};

/// The third opens that passed, by the machine they booted
/// ([`SimFs::state_key`], which holds everything a store can tell apart
/// but the clock and the syscall numbering, as the matrix's deduplication
/// assumes), each with what it was compared against and how many
/// syscalls it took. An open of an equal machine, compared against an
/// equal observation with more syscalls of budget than that, passes
/// too: it is not run again. Only passes are kept; a failure is checked
/// every time, so its evidence is the case's own. Off (`remember: false`)
/// when the matrix checks every state.
pub(crate) struct PassedReboots {
    remember: bool,
    known: Mutex<Known>,
}

#[derive(Default)]
struct Known {
    pages: PageHashes,
    passed: BTreeMap<u64, Vec<Pass>>,
}

/// One third open that passed.
struct Pass {
    recovered: Observation,
    remote: RemoteFault,
    syscalls: u64,
}

impl PassedReboots {
    /// Remembers passes if `remember`.
    pub(crate) fn new(remember: bool) -> Self {
        Self {
            remember,
            known: Mutex::new(Known::default()),
        }
    }

    /// The key of a rebooted machine before its third open, if passes are
    /// remembered.
    pub(crate) fn key(&self, machine: &SimFs) -> Option<u64> {
        self.remember.then(|| machine.state_key(&mut self.known().pages))
    }

    /// Whether a third open of a machine keyed `key`, compared against
    /// `recovered` with the remote dependency `remote`, already passed in
    /// fewer syscalls than `budget`.
    pub(crate) fn passed(&self, key: u64, recovered: &Observation, remote: RemoteFault, budget: u64) -> bool {
        self.known().passed.get(&key).is_some_and(|passes| {
            passes
                .iter()
                .any(|p| p.remote == remote && p.syscalls < budget && p.recovered == *recovered)
        })
    }

    /// Keeps a pass of a machine keyed `key` that took `syscalls`.
    pub(crate) fn remember(&self, key: u64, recovered: &Observation, remote: RemoteFault, syscalls: u64) {
        self.known().passed.entry(key).or_default().push(Pass {
            recovered: recovered.clone(),
            remote,
            syscalls,
        });
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
