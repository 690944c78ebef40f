//! Known-bad designs, kept only to prove that Tearline's checks catch them.
//!
//! Each [`Flaw`] is one design an origin document proposed (or a defect the
//! journal tests switch on), implemented as a small branch at the one place
//! where it differs from the real design. Only with the `flawed-variants`
//! cargo feature; a store selects one with [`crate::StoreOptions::flaw`].
//! Never enable in a build that stores data.

/// One deliberate defect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flaw {
    /// A journal rollback does not restore any file (it only marks and cleans up).
    SkipRollback,
    /// Publishing a mutation's files does not fsync `source/` before the
    /// commit (origins/4: publish by rename without fsync).
    PublishWithoutDirSync,
    /// Publishing across devices copies the staged file without fsyncing the
    /// copy before renaming it into place (origins/4: the EXDEV fallback
    /// without fsync).
    CopyWithoutFsync,
    /// A full rebuild drops every row of the live index, then re-indexes the
    /// source files in place, one commit per document (origins/1: the
    /// rebuild that loses everything when interrupted).
    DropAndReindex,
    /// Index and vector store are written without intents or recovery: the
    /// index rows first, then the vector, and a failed vector write is
    /// ignored ("failure is acceptable", origins/2); a writable open neither
    /// resolves intents nor sweeps orphans.
    NoIntents,
    /// A read-only open (no lock) that finds a newer schema deletes the index
    /// and recreates it anyway (origins/5 before the wipe was gated on the lock).
    WipeWithoutLock,
    /// An in-place migration stamps the new version first, in its own
    /// transaction, and runs the step's SQL afterwards (origins/5: a version
    /// stamped without its migration).
    StampWithoutMigration,
    /// Reconcile's destructive modes do not require force (origins/3 without
    /// the safety flag).
    CleanWithoutForce,
}
