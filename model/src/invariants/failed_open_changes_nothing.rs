//! failed-open-changes-nothing: a writable open that fails, with no fault
//! injected while it ran, removes nothing.
//!
//! Read off the trace of the failed open's process ([`check`]): no source
//! file and no protected index file (the live generation's or a backup's)
//! that existed when the open began is unlinked, removed, renamed away or
//! replaced, or opened with `O_TRUNC`. What the open itself created and
//! then removed (its temp files) is its own business, and so are SQLite's
//! own journals (`-journal`, `-wal`, `-shm`), which it rolls back and
//! deletes. Origin: an open that deleted the backup generation first and
//! then failed on a `CURRENT` naming a generation that does not exist.

use std::collections::BTreeSet;
use std::path::Path;

use tearline_sim_fs::{Outcome, SyscallArgs, SyscallKind, TraceEntry};

use super::{Invariant, InvariantSpec, Violation};

/// failed-open-changes-nothing in the catalogue.
pub(crate) const SPEC: InvariantSpec = InvariantSpec {
    name: "failed-open-changes-nothing",
    explanation: "A writable open that fails, with no fault injected while it ran, removes nothing: no \
                  source file and no index file of any generation (the live one or a backup) that existed \
                  when it began is unlinked, renamed away or over, or truncated before it gives up. Read \
                  off the trace of the open's process.",
    usually: "A writable open that failed had already destroyed something (a backup, a generation) while cleaning up before checking what is live. Usually fixed by checking everything first and removing last, so a failure at any point has removed nothing.",
    example: "a writable open that failed had first destroyed /store/generations/gen-000001/index.db",
    needs: None,
    applies_to: |_| true,
};

/// Reads the entries of a writable open that failed (`entries`: the
/// failing open's process, from its first syscall on) for a removal of a
/// file that existed before: one matching `protected` (globs) or under
/// `sources`.
pub fn check<'a>(
    entries: impl IntoIterator<Item = &'a TraceEntry>,
    protected: &[String],
    sources: Option<&Path>,
) -> Option<Violation> {
    let patterns: Vec<glob::Pattern> = protected.iter().filter_map(|p| glob::Pattern::new(p).ok()).collect();
    let guarded = |path: &str| {
        let sqlite_own = [".db-journal", "-journal", "-wal", "-shm"]
            .iter()
            .any(|suffix| path.ends_with(suffix));
        !sqlite_own
            && (patterns.iter().any(|p| p.matches(path)) || sources.is_some_and(|dir| Path::new(path).starts_with(dir)))
    };
    let mut created: BTreeSet<String> = BTreeSet::new();
    for entry in entries {
        if !matches!(entry.outcome, Outcome::Ok | Outcome::Count(_)) {
            continue;
        }
        let destroyed: Vec<&str> = match entry.op {
            SyscallKind::RemoveFile | SyscallKind::RemoveDir => vec![entry.path.as_str()],
            SyscallKind::Rename => std::iter::once(entry.path.as_str())
                .chain(entry.args.replaced_target())
                .collect(),
            SyscallKind::Open if entry.args.truncates() => vec![entry.path.as_str()],
            _ => Vec::new(),
        };
        if let Some(path) = destroyed.into_iter().find(|p| guarded(p) && !created.contains(*p)) {
            return Some(Violation::new(
                Invariant::FailedOpenChangesNothing,
                format!(
                    "a writable open that failed had first destroyed {path} ({} at syscall {})",
                    entry.op, entry.index
                ),
            ));
        }
        if let Some(new) = created_by(entry) {
            created.insert(new.to_string());
        }
    }
    None
}

/// The path a successful syscall created, if it created one.
fn created_by(entry: &TraceEntry) -> Option<&str> {
    match (entry.op, &entry.args) {
        (
            SyscallKind::Open,
            SyscallArgs::Open {
                options,
                existing_len: None,
            },
        ) if options.create || options.create_new => Some(&entry.path),
        (SyscallKind::CreateDir, _) => Some(&entry.path),
        (SyscallKind::Rename, SyscallArgs::Rename { to, .. }) => Some(to),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tearline_sim_fs::{Fs, FsExt, SimConfig, SimFs};

    #[test]
    fn removing_a_backup_before_failing_breaks_it_and_a_temp_file_does_not() {
        let fs = SimFs::new(SimConfig::with_seed(1));
        fs.create_dir_all(Path::new("/s/gen-1")).expect("mkdir");
        fs.write_file(Path::new("/s/gen-1/index.db"), b"backup").expect("write");
        let start = fs.syscall_count();
        // The open's own temp file, created and removed: fine.
        fs.write_file(Path::new("/s/tmp-index.db"), b"t").expect("write");
        fs.remove_file(Path::new("/s/tmp-index.db")).expect("unlink");
        let protected = vec!["/s/*index.db".to_string(), "/s/*/index.db".to_string()];
        let trace = fs.trace();
        let after = |from| trace.entries().iter().filter(move |e| e.index >= from);
        assert_eq!(check(after(start), &protected, None), None);
        let before_removal = fs.syscall_count();
        fs.remove_file(Path::new("/s/gen-1/index.db")).expect("unlink");
        let trace = fs.trace();
        let violation = check(trace.entries().iter().filter(|e| e.index >= start), &protected, None).expect("caught");
        assert_eq!(violation.invariant, Invariant::FailedOpenChangesNothing);
        assert_eq!(
            violation.evidence,
            format!(
                "a writable open that failed had first destroyed /s/gen-1/index.db (unlink at syscall {before_removal})"
            )
        );
    }

    #[test]
    fn a_source_file_renamed_away_breaks_it() {
        let fs = SimFs::new(SimConfig::with_seed(2));
        fs.create_dir_all(Path::new("/s/source")).expect("mkdir");
        fs.write_file(Path::new("/s/source/a.md"), b"a").expect("write");
        let start = fs.syscall_count();
        fs.rename(Path::new("/s/source/a.md"), Path::new("/s/a.md.bak"))
            .expect("rename");
        let trace = fs.trace();
        let violation = check(
            trace.entries().iter().filter(|e| e.index >= start),
            &[],
            Some(Path::new("/s/source")),
        )
        .expect("caught");
        assert!(
            violation.evidence.contains("destroyed /s/source/a.md"),
            "{}",
            violation.evidence
        );
    }
}
