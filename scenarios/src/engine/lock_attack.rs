//! The lock as an attack surface: what another process does to a store's
//! lock ([`tearline_model::StoreFactory::lock_file`]) while a writer holds
//! it, for [`Step::LockFile`](super::Step::LockFile).
//!
//! A lock that is a file can be unlinked or replaced under its holder: the
//! holder keeps its lock on an inode that no longer has the name, and the
//! next process to lock the path locks a new one and gets in. A lock that is
//! a directory holding the store cannot be: the filesystem refuses both. The
//! attack reports what it did, in words for the evidence of whatever breaks
//! next.

use std::io;
use std::path::{Path, PathBuf};

use tearline_sim_fs::{FileKind, Fs, FsExt, SimFs};

use super::scenario::LockAttack;

/// Removes or replaces the lock at `lock` from process `harness` (which the
/// caller crashes afterwards); says what happened, as a clause for evidence
/// ("process 4 removed the lock file /store/store.lock at syscall 301").
/// A filesystem that refuses the attack is reported the same way. `Err` only
/// when the machine stopped under it (a power cut).
pub(crate) fn tamper(harness: &SimFs, lock: &Path, attack: LockAttack) -> io::Result<String> {
    let pid = harness.pid();
    let shown = lock.display();
    let kind = match harness.metadata(lock) {
        Ok(meta) => Some(meta.kind),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return refused(harness, e, format!("process {pid} could not look at the lock {shown}")),
    };
    let at = harness.syscall_count();
    // (what it tries, what it did, the outcome)
    let (tried, did, done) = match (attack, kind) {
        (LockAttack::Remove, None) => return Ok(format!("process {pid} found no lock at {shown} to remove")),
        (LockAttack::Remove, Some(FileKind::File | FileKind::Other)) => (
            format!("remove the lock file {shown}"),
            format!("removed the lock file {shown}"),
            harness.remove_file(lock),
        ),
        (LockAttack::Remove, Some(FileKind::Dir)) => (
            format!("remove the lock directory {shown}"),
            format!("removed the lock directory {shown}"),
            harness.remove_dir(lock),
        ),
        (LockAttack::Replace, None | Some(FileKind::File | FileKind::Other)) => {
            let new = beside(lock);
            let done = harness.write_file(&new, b"").and_then(|()| harness.rename(&new, lock));
            (
                format!("replace the lock file {shown} with a new file"),
                format!("replaced the lock file {shown} with a new file"),
                done,
            )
        }
        (LockAttack::Replace, Some(FileKind::Dir)) => {
            let new = beside(lock);
            let done = harness.create_dir(&new).and_then(|()| {
                harness.rename(&new, lock).inspect_err(|_| {
                    // Best effort: a refused replacement leaves no stray directory.
                    let _ = harness.remove_dir(&new);
                })
            });
            (
                format!("replace the lock directory {shown} with a new directory"),
                format!("replaced the lock directory {shown} with a new directory"),
                done,
            )
        }
    };
    match done {
        Ok(()) => Ok(format!("process {pid} {did} at syscall {at}")),
        Err(e) => refused(harness, e, format!("process {pid} tried to {tried} at syscall {at}")),
    }
}

/// What a refused attack says, unless the machine stopped.
fn refused(harness: &SimFs, error: io::Error, tried: String) -> io::Result<String> {
    if harness.halted().is_some() {
        return Err(error);
    }
    Ok(format!("{tried}, and the filesystem refused: {error}"))
}

/// The name a replacement is made under before it is renamed over `lock`.
fn beside(lock: &Path) -> PathBuf {
    let name = lock.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    lock.with_file_name(format!("{name}.replacement"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tearline_sim_fs::SimConfig;

    #[test]
    fn a_lock_file_is_removed_or_replaced_and_a_store_directory_is_not() {
        let fs = SimFs::new(SimConfig::with_seed(1));
        fs.create_dir_all(Path::new("/s")).expect("mkdir");
        fs.write_file(Path::new("/s/CURRENT"), b"x").expect("write");
        let file = Path::new("/s/store.lock");
        let held = fs.try_lock(file).expect("lock");
        let other = fs.spawn_process();
        let removed = tamper(&other, file, LockAttack::Remove).expect("tamper");
        assert!(
            removed.starts_with("process 2 removed the lock file /s/store.lock"),
            "{removed}"
        );
        assert!(!fs.exists(file).expect("exists"));
        assert_eq!(
            tamper(&other, file, LockAttack::Remove).expect("tamper"),
            "process 2 found no lock at /s/store.lock to remove"
        );
        let replaced = tamper(&other, file, LockAttack::Replace).expect("tamper");
        assert!(
            replaced.contains("replaced the lock file /s/store.lock with a new file"),
            "{replaced}"
        );
        assert!(fs.exists(file).expect("exists"), "a new file at the path");
        drop(held);
        let dir = Path::new("/s");
        let _held = fs.try_lock(dir).expect("lock the directory");
        for attack in [LockAttack::Remove, LockAttack::Replace] {
            let refused = tamper(&other, dir, attack).expect("tamper");
            assert!(refused.contains("and the filesystem refused"), "{refused}");
        }
        assert!(
            fs.exists(Path::new("/s/CURRENT")).expect("exists"),
            "the store is intact"
        );
        assert!(
            !fs.exists(Path::new("/s.replacement")).expect("exists"),
            "no stray directory"
        );
        assert!(other.try_lock(dir).is_err(), "still held");
    }
}
