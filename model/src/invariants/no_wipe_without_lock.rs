//! no-wipe-without-lock: no process deletes, renames over, truncates or
//! writes over one of the store's index files unless it holds the store's
//! exclusive lock at that syscall.
//!
//! What counts as destroying a protected file, read off the typed trace
//! arguments: `unlink` and `rmdir` of it; a `rename` from it, or onto it
//! when it existed (a rename that creates the name destroys nothing); an
//! `open` with `O_TRUNC` of it while it has bytes, or a `set_len` shorter
//! than it was ([`tearline_sim_fs::SyscallArgs::truncates`]); any `write`
//! to it (a process without the lock has no business changing an index's
//! bytes). A file a process created itself without the lock, in this boot,
//! and that no other process has touched since, is its own: changing,
//! moving or removing it destroys nothing that was there before (an `init`
//! publishing a new file by rename, SQLite deleting the journal it has just
//! created). What a process creates under the lock is the store's.
//!
//! Read off the syscall trace ([`check`]); a second writable open that the
//! store lets in while another process holds it breaks it too
//! ([`check_second_writer`]). When the lock file was removed or replaced
//! under its holder first (the harness's lock attacks), the evidence says
//! so: that is how a lock that trusts its path lets a second writer in.

use std::collections::BTreeMap;
use std::path::Path;

use tearline_sim_fs::{Outcome, SyscallArgs, SyscallKind, Trace, TraceEntry};

use super::{Invariant, InvariantSpec, Violation};
use crate::contract::Capabilities;

/// no-wipe-without-lock in the catalogue.
pub(crate) const SPEC: InvariantSpec = InvariantSpec {
    name: "no-wipe-without-lock",
    explanation: "No process deletes, renames over, truncates (O_TRUNC, or set_len shorter) or writes over \
                  one of the store's index files unless it holds the store's exclusive lock at that \
                  syscall (a file it created itself without the lock, untouched by others since, is its \
                  own). Read off the syscall trace. Needs an exclusive lock.",
    usually: "A process that does not hold the write lock deleted, renamed over or truncated the index (a read-only open \"fixing\" a schema, a second writer let in by a lock file that was removed). Usually fixed by making only the lock holder able to wipe, and a lock the filesystem cannot take away.",
    example: "process 2 unlinked /store/index.db without holding the lock (after process 1 removed the lock file /store/store.lock)",
    needs: Some("an exclusive lock (capability `exclusive_lock`)"),
    applies_to: |caps| caps.exclusive_lock,
};

/// Reads the trace for destructive syscalls on `protected` paths by a
/// process that does not hold the lock on `lock_file` at that moment.
///
/// A process holds the lock from a successful `flock` of `lock_file` until
/// its `funlock`, its death, or a reboot. If the lock file was removed or
/// replaced before the violation, the evidence says so: a lock on a file no
/// longer at its path excludes no one.
pub fn check(trace: &Trace, lock_file: &Path, protected: &[String]) -> Option<Violation> {
    check_entries(trace.entries(), lock_file, protected)
}

/// [`check`] over entries in order: a trace, or pieces of traces read as
/// one (what a machine did before a power cut, then after the reboot).
pub fn check_entries<'a>(
    entries: impl IntoIterator<Item = &'a TraceEntry>,
    lock_file: &Path,
    protected: &[String],
) -> Option<Violation> {
    let patterns: Vec<glob::Pattern> = protected.iter().filter_map(|p| glob::Pattern::new(p).ok()).collect();
    let lock = lock_file.display().to_string();
    let mut holder: Option<(u32, u32)> = None; // (boot, pid)
    let mut tampered: Option<String> = None;
    // Files each process created itself and nobody else touched since.
    let mut own: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for entry in entries {
        if own.values().next().is_some_and(|&(boot, _)| boot != entry.boot) {
            own.clear();
        }
        let process = (entry.boot, entry.pid);
        if matches!(entry.outcome, Outcome::Ok) {
            let done = match entry.op {
                SyscallKind::RemoveFile | SyscallKind::RemoveDir if entry.path == lock => Some("removed"),
                SyscallKind::Rename if entry.path == lock => Some("renamed away"),
                SyscallKind::Rename if entry.args.replaced_target() == Some(lock.as_str()) => Some("replaced"),
                _ => None,
            };
            if let Some(done) = done {
                tampered = Some(format!(
                    "; earlier, process {} {done} {lock} (syscall {}): a lock on a file no longer at its path \
                     excludes no one",
                    entry.pid, entry.index
                ));
            }
        }
        holder = holder_after(holder, entry, &lock);
        if !matches!(entry.outcome, Outcome::Ok | Outcome::Count(_)) {
            continue;
        }
        let mine = own.get(&entry.path) == Some(&process);
        let destroyed = match entry.op {
            SyscallKind::RemoveFile | SyscallKind::Rename | SyscallKind::RemoveDir => Some("destroyed"),
            SyscallKind::Open | SyscallKind::SetLen if entry.args.truncates() => Some("truncated"),
            SyscallKind::Write => Some("wrote over"),
            _ => None,
        };
        // A rename destroys what it moves away and what it replaces; one
        // that creates a new name destroys nothing there. Nothing of a
        // process's own new file is destroyed by it.
        let hit = destroyed.and_then(|destroyed| {
            let targets = std::iter::once(entry.path.as_str())
                .filter(|_| !mine)
                .chain(entry.args.replaced_target().filter(|to| own.get(*to) != Some(&process)));
            targets
                .into_iter()
                .find(|path| patterns.iter().any(|p| p.matches(path)))
                .map(|path| (path.to_string(), destroyed))
        });
        track_own(&mut own, entry, process, mine, holder == Some(process));
        let Some((path, destroyed)) = hit else {
            continue;
        };
        if holder != Some(process) {
            return Some(Violation::new(
                Invariant::NoWipeWithoutLock,
                format!(
                    "process {} {destroyed} {path} ({} at syscall {}) without holding {lock}{}",
                    entry.pid,
                    entry.op,
                    entry.index,
                    tampered.as_deref().unwrap_or_default()
                ),
            ));
        }
    }
    None
}

/// Who holds the lock on `lock` (boot, pid) after `entry`, given who held
/// it before (within one boot: a reboot frees it).
fn holder_after(holder: Option<(u32, u32)>, entry: &TraceEntry, lock: &str) -> Option<(u32, u32)> {
    let holder = holder.filter(|&(boot, _)| boot == entry.boot);
    let process = (entry.boot, entry.pid);
    match (entry.op, &entry.outcome) {
        (SyscallKind::Lock, Outcome::Ok) if entry.path == lock => Some(process),
        (SyscallKind::Unlock, _) if entry.path == lock && holder == Some(process) => None,
        (_, Outcome::ProcessCrash) if holder == Some(process) => None,
        _ => holder,
    }
}

/// The process (boot, pid) that holds the lock on `lock_file` after
/// `entries`, as [`check_entries`] reads them, if any: what a later piece
/// of a trace read on its own would not know.
pub fn lock_holder<'a>(entries: impl IntoIterator<Item = &'a TraceEntry>, lock_file: &Path) -> Option<(u32, u32)> {
    let lock = lock_file.display().to_string();
    entries
        .into_iter()
        .fold(None, |holder, entry| holder_after(holder, entry, &lock))
}

/// Keeps `own` (each file a process created without the lock and nobody
/// else touched since) up to date after `entry`, a successful syscall of
/// `process`; `mine`: whether `entry.path` was the process's own before
/// it; `locked`: whether the process holds the lock (what it creates then
/// is the store's, for good).
fn track_own(
    own: &mut BTreeMap<String, (u32, u32)>,
    entry: &TraceEntry,
    process: (u32, u32),
    mine: bool,
    locked: bool,
) {
    match (entry.op, &entry.args) {
        (SyscallKind::Open, SyscallArgs::Open { options, existing_len })
            if options.create && existing_len.is_none() && !locked =>
        {
            own.insert(entry.path.clone(), process);
        }
        (SyscallKind::Rename, SyscallArgs::Rename { to, .. }) => {
            own.remove(&entry.path);
            if mine && !locked {
                own.insert(to.clone(), process);
            } else {
                own.remove(to);
            }
        }
        _ if own.get(&entry.path).is_some_and(|&owner| owner != process) => {
            // Another process has a stake in it now.
            own.remove(&entry.path);
        }
        (SyscallKind::RemoveFile | SyscallKind::RemoveDir, _) => {
            own.remove(&entry.path);
        }
        _ => {}
    }
}

/// A store with an exclusive lock let process `writer` open it writable
/// while process `holder` held it open writable: call it when that second
/// writable open succeeded, with what was done to the lock before it, if
/// anything (`after`: "process 4 removed the lock file /store/store.lock at
/// syscall 301"). `None` for a store without a lock.
pub fn check_second_writer(caps: &Capabilities, writer: u32, holder: u32, after: Option<&str>) -> Option<Violation> {
    (SPEC.applies_to)(caps).then(|| {
        let after = after.map(|what| format!(", after {what}")).unwrap_or_default();
        Violation::new(
            Invariant::NoWipeWithoutLock,
            format!("process {writer} was let open the store writable while process {holder} held it{after}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_is_held_by_whoever_took_it_until_they_let_go() {
        use tearline_sim_fs::{Fs, SimConfig, SimFs};
        let fs = SimFs::new(SimConfig::with_seed(1));
        let lock = Path::new("/store.lock");
        let holder = |fs: &SimFs| fs.with_trace(|trace| lock_holder(trace.entries(), lock).map(|(_, pid)| pid));
        assert_eq!(holder(&fs), None);
        let guard = fs.try_lock(lock).expect("lock");
        assert_eq!(holder(&fs), Some(fs.pid()));
        drop(guard);
        assert_eq!(holder(&fs), None, "let go");
        let other = fs.spawn_process();
        let held = other.try_lock(lock).expect("lock");
        assert_eq!(holder(&fs), Some(other.pid()));
        assert!(fs.try_lock(lock).is_err(), "held by the other");
        assert_eq!(holder(&fs), Some(other.pid()), "a failed lock takes nothing");
        drop(held);
        assert_eq!(holder(&fs), None);
    }

    #[test]
    fn wiping_an_index_file_without_the_lock_is_read_off_the_trace() {
        use std::path::Path;
        use tearline_sim_fs::{Fs, FsExt, SimConfig, SimFs};
        let fs = SimFs::new(SimConfig::with_seed(1));
        fs.create_dir_all(Path::new("/s/index")).expect("mkdir");
        let protected = vec!["/s/index/*".to_string()];
        let lock = Path::new("/s/store.lock");
        let _guard = fs.try_lock(lock).expect("lock");
        fs.write_file(Path::new("/s/index/a.db"), b"x").expect("write");
        fs.write_file(Path::new("/s/index/b.db"), b"x").expect("write");
        fs.remove_file(Path::new("/s/index/a.db"))
            .expect("unlink while holding the lock");
        assert_eq!(check(&fs.trace(), lock, &protected), None);
        let other = fs.spawn_process();
        other
            .remove_file(Path::new("/s/index/b.db"))
            .expect("unlink by another process");
        let violation = check(&fs.trace(), lock, &protected).expect("caught");
        assert!(violation.evidence.contains("process 2"), "{}", violation.evidence);
        // After the holder releases the lock, its own unlink is caught too.
        let fs = SimFs::new(SimConfig::with_seed(1));
        fs.create_dir_all(Path::new("/s/index")).expect("mkdir");
        let guard = fs.try_lock(lock).expect("lock");
        fs.write_file(Path::new("/s/index/c.db"), b"x").expect("write");
        assert_eq!(check(&fs.trace(), lock, &protected), None, "written under the lock");
        drop(guard);
        assert!(
            fs.trace().entries().iter().any(|e| e.op == SyscallKind::Unlock),
            "the release is traced"
        );
        fs.remove_file(Path::new("/s/index/c.db"))
            .expect("unlink after releasing");
        let violation = check(&fs.trace(), lock, &protected).expect("caught");
        assert!(violation.evidence.contains("process 1"), "{}", violation.evidence);
    }

    #[test]
    fn truncating_or_writing_over_an_index_file_without_the_lock_is_caught() {
        use std::path::Path;
        use tearline_sim_fs::{FileHandleExt, Fs, FsExt, OpenOptions, SimConfig, SimFs};
        let lock = Path::new("/s/store.lock");
        let protected = vec!["/s/index/*".to_string()];
        // A store with one index file written under the lock; then `act` in
        // another process that holds no lock.
        let after = |act: &dyn Fn(&SimFs)| {
            let fs = SimFs::new(SimConfig::with_seed(1));
            fs.create_dir_all(Path::new("/s/index")).expect("mkdir");
            drop(fs.try_lock(lock).and_then(|guard| {
                fs.write_file(Path::new("/s/index/a.db"), b"index bytes")?;
                fs.write_file(Path::new("/s/index/empty.db"), b"")?;
                Ok(guard)
            }));
            assert_eq!(check(&fs.trace(), lock, &protected), None, "setup under the lock");
            act(&fs.spawn_process());
            check(&fs.trace(), lock, &protected)
        };
        let truncate = OpenOptions {
            write: true,
            truncate: true,
            ..OpenOptions::read_only()
        };
        let by_o_trunc = after(&|other| drop(other.open(Path::new("/s/index/a.db"), &truncate).expect("open")))
            .expect("O_TRUNC caught");
        assert!(
            by_o_trunc.evidence.contains("truncated /s/index/a.db (open"),
            "{}",
            by_o_trunc.evidence
        );
        let by_set_len = after(&|other| {
            let file = other
                .open(Path::new("/s/index/a.db"), &OpenOptions::read_write())
                .expect("open");
            file.set_len(3).expect("shrink");
        })
        .expect("a shorter set_len caught");
        assert!(
            by_set_len.evidence.contains("truncated /s/index/a.db (set_len"),
            "{}",
            by_set_len.evidence
        );
        let by_write = after(&|other| {
            let file = other
                .open(Path::new("/s/index/a.db"), &OpenOptions::read_write())
                .expect("open");
            file.write_all_at(b"garbage", 0).expect("write");
        })
        .expect("a write caught");
        assert!(
            by_write.evidence.contains("wrote over /s/index/a.db (write"),
            "{}",
            by_write.evidence
        );
        // Neither growing a file nor "truncating" an empty one destroys anything.
        assert_eq!(
            after(&|other| {
                let file = other
                    .open(Path::new("/s/index/a.db"), &OpenOptions::read_write())
                    .expect("open");
                file.set_len(4096).expect("grow");
            }),
            None
        );
        assert_eq!(
            after(&|other| drop(other.open(Path::new("/s/index/empty.db"), &truncate).expect("open"))),
            None
        );
        // Renaming a new file into place creates the name: nothing is
        // destroyed. Renaming one over the index destroys it.
        let staged = |other: &SimFs, to: &str| {
            other.write_file(Path::new("/s/staged.tmp"), b"new").expect("write");
            other.rename(Path::new("/s/staged.tmp"), Path::new(to)).expect("rename");
        };
        assert_eq!(after(&|other| staged(other, "/s/index/new.db")), None);
        let over = after(&|other| staged(other, "/s/index/a.db")).expect("a rename over the index caught");
        assert!(
            over.evidence.contains("destroyed /s/index/a.db (rename"),
            "{}",
            over.evidence
        );
        // Reading is not destroying.
        assert_eq!(
            after(&|other| drop(other.read_file(Path::new("/s/index/a.db")).expect("read"))),
            None
        );
        // A process's own new file, even one the protected pattern names,
        // is its own to write, move into place and remove (OpenKB's `init`
        // publishing `index/x.tmp` as `index/x`; SQLite deleting the journal
        // it has just created).
        assert_eq!(
            after(&|other| {
                other.write_file(Path::new("/s/index/reg.tmp"), b"new").expect("write");
                other
                    .rename(Path::new("/s/index/reg.tmp"), Path::new("/s/index/reg.json"))
                    .expect("rename");
                other.write_file(Path::new("/s/index/journal"), b"j").expect("write");
                other.remove_file(Path::new("/s/index/journal")).expect("unlink");
            }),
            None
        );
        // But moving it over a file that was there destroys that file.
        let over_existing = after(&|other| {
            other.write_file(Path::new("/s/index/a.tmp"), b"new").expect("write");
            other
                .rename(Path::new("/s/index/a.tmp"), Path::new("/s/index/a.db"))
                .expect("rename");
        })
        .expect("a rename of its own file over the index caught");
        assert!(
            over_existing.evidence.contains("destroyed /s/index/a.db (rename"),
            "{}",
            over_existing.evidence
        );
        // And once another process has written to it, it is not only its
        // creator's any more.
        let shared = after(&|other| {
            other
                .write_file(Path::new("/s/index/shared.db"), b"mine")
                .expect("write");
            let third = other.spawn_process();
            let file = third
                .open(Path::new("/s/index/shared.db"), &OpenOptions::read_write())
                .expect("open");
            drop(file);
            other.remove_file(Path::new("/s/index/shared.db")).expect("unlink");
        })
        .expect("removing a file another process opened is caught");
        assert!(
            shared.evidence.contains("destroyed /s/index/shared.db (unlink"),
            "{}",
            shared.evidence
        );
    }

    #[test]
    fn the_evidence_says_when_the_lock_file_was_removed_or_replaced() {
        use std::path::Path;
        use tearline_sim_fs::{Fs, FsExt, SimConfig, SimFs};
        let lock = Path::new("/s/store.lock");
        let protected = vec!["/s/index/*".to_string()];
        for replace in [false, true] {
            let fs = SimFs::new(SimConfig::with_seed(1));
            fs.create_dir_all(Path::new("/s/index")).expect("mkdir");
            let _first = fs.try_lock(lock).expect("lock");
            fs.write_file(Path::new("/s/index/a.db"), b"first").expect("write");
            let other = fs.spawn_process();
            if replace {
                other.write_file(Path::new("/s/new.lock"), b"").expect("write");
                other.rename(Path::new("/s/new.lock"), lock).expect("rename over");
            } else {
                other.remove_file(lock).expect("unlink");
            }
            let second = fs.spawn_process();
            let _stolen = second.try_lock(lock).expect("a new lock file, a new lock");
            // The first holder writes: the path's lock is the second's now.
            fs.write_file(Path::new("/s/index/a.db"), b"x").expect("write");
            let violation = check(&fs.trace(), lock, &protected).expect("caught");
            let done = if replace { "replaced" } else { "removed" };
            assert!(
                violation
                    .evidence
                    .contains(&format!("earlier, process 2 {done} /s/store.lock")),
                "{}",
                violation.evidence
            );
        }
    }

    #[test]
    fn a_second_writer_let_in_beside_the_lock_holder_breaks_it() {
        let locked = Capabilities {
            exclusive_lock: true,
            ..Capabilities::default()
        };
        let violation = check_second_writer(&locked, 2, 1, None).expect("caught");
        assert_eq!(violation.invariant, Invariant::NoWipeWithoutLock);
        assert_eq!(
            violation.evidence,
            "process 2 was let open the store writable while process 1 held it"
        );
        // What was done to the lock is part of the evidence.
        let after =
            check_second_writer(&locked, 5, 1, Some("process 4 removed the lock file /s/store.lock")).expect("caught");
        assert_eq!(
            after.evidence,
            "process 5 was let open the store writable while process 1 held it, after process 4 removed the \
             lock file /s/store.lock"
        );
        // A store without a lock promises no single writer.
        assert_eq!(check_second_writer(&Capabilities::default(), 2, 1, None), None);
    }
}
