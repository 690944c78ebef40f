//! The invariant catalogue: what every store must keep, whatever fails.
//!
//! Each invariant has a name (used in reports and repro lines), an
//! explanation, the capability it needs, and a check that returns the
//! evidence of a violation. Checks take what the harness saw (an
//! [`Observation`] after a writable reopen, the [`Model`], the syscall
//! [`Trace`]) and never the store itself, so any store implementing the
//! contract is judged the same way.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tearline_sim_fs::{Outcome, SyscallKind, Trace};

use crate::contract::{Capabilities, Observation, Operation};
use crate::model::{Granularity, Model};

/// A named invariant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Invariant {
    /// After recovery a complete, sound database opens.
    CompleteDatabase,
    /// Every acknowledged operation survives.
    CommittedDurable,
    /// An interrupted operation is all or nothing.
    AtomicOp,
    /// The index and the vector store agree both ways.
    NoOrphanVectors,
    /// Rebuilding twice gives the same content as rebuilding once.
    RebuildIdempotent,
    /// After a full reconcile or rebuild the index equals the source files.
    FilesystemWins,
    /// Index files are only destroyed by a process that holds the lock.
    NoWipeWithoutLock,
    /// A writable open leaves no unfinished journal or intent behind.
    JournalDrained,
    /// The schema version on disk never claims a migration that did not run.
    SchemaNeverMisStamped,
    /// After a full rebuild the previous generation is kept as a backup.
    BackupPresent,
    /// Recovery leaves no temporary or staging file behind.
    NoLeakedTempFiles,
    /// A destructive operation without force fails and changes nothing.
    NoDestructiveWithoutForce,
    /// Bad input and injected faults give an error, never a panic or a hang.
    CleanError,
}

impl Invariant {
    /// The whole catalogue, in report order.
    pub const ALL: [Invariant; 13] = [
        Invariant::CompleteDatabase,
        Invariant::CommittedDurable,
        Invariant::AtomicOp,
        Invariant::NoOrphanVectors,
        Invariant::RebuildIdempotent,
        Invariant::FilesystemWins,
        Invariant::NoWipeWithoutLock,
        Invariant::JournalDrained,
        Invariant::SchemaNeverMisStamped,
        Invariant::BackupPresent,
        Invariant::NoLeakedTempFiles,
        Invariant::NoDestructiveWithoutForce,
        Invariant::CleanError,
    ];

    /// The catalogue name (`committed-durable`).
    pub fn name(&self) -> &'static str {
        match self {
            Invariant::CompleteDatabase => "complete-database",
            Invariant::CommittedDurable => "committed-durable",
            Invariant::AtomicOp => "atomic-op",
            Invariant::NoOrphanVectors => "no-orphan-vectors",
            Invariant::RebuildIdempotent => "rebuild-idempotent",
            Invariant::FilesystemWins => "filesystem-wins",
            Invariant::NoWipeWithoutLock => "no-wipe-without-lock",
            Invariant::JournalDrained => "journal-drained",
            Invariant::SchemaNeverMisStamped => "schema-never-mis-stamped",
            Invariant::BackupPresent => "backup-present",
            Invariant::NoLeakedTempFiles => "no-leaked-temp-files",
            Invariant::NoDestructiveWithoutForce => "no-destructive-without-force",
            Invariant::CleanError => "clean-error",
        }
    }

    /// The invariant with this catalogue name.
    pub fn parse(name: &str) -> Option<Invariant> {
        Invariant::ALL.into_iter().find(|i| i.name() == name)
    }

    /// What it means and how it is checked, for `tearline explain`.
    pub fn explanation(&self) -> &'static str {
        match self {
            Invariant::CompleteDatabase => {
                "After any fault and a writable reopen, the store opens, and its index passes its own \
                 integrity check (SQLite's integrity_check for SQLite stores). Checked after every \
                 injected fault."
            }
            Invariant::CommittedDurable => {
                "Every operation that returned Ok before the fault is there after recovery: its \
                 documents are in the index and the source files with the content it gave them. \
                 Checked against the model's acknowledged state; an operation still in flight is \
                 exempt (that is atomic-op)."
            }
            Invariant::AtomicOp => {
                "The operation in flight at the fault (or that failed) left every document it touches \
                 entirely as before or entirely as after; an atomic operation (add, remove, import, \
                 full rebuild) left all of them before or all after."
            }
            Invariant::NoOrphanVectors => {
                "After recovery, no vector is stored that no index entry refers to, and no index entry \
                 refers to a missing vector. Needs a vector store."
            }
            Invariant::RebuildIdempotent => {
                "A full rebuild run twice in a row gives the same logical content as running it once. \
                 Checked after a scenario's fault-free rebuild."
            }
            Invariant::FilesystemWins => {
                "After an acknowledged full reconcile (with force) or rebuild, the index serves exactly \
                 the source files. Needs source files."
            }
            Invariant::NoWipeWithoutLock => {
                "No process deletes, renames over or truncates one of the store's index files unless it \
                 holds the store's exclusive lock at that syscall. Read off the syscall trace. Needs an \
                 exclusive lock."
            }
            Invariant::JournalDrained => {
                "A writable open finishes or rolls back every interrupted operation before returning: no \
                 intent or journal is left pending."
            }
            Invariant::SchemaNeverMisStamped => {
                "The schema version on disk is this build's, and the stored schema is really that \
                 version's (no version stamped without its migration). Needs a versioned schema."
            }
            Invariant::BackupPresent => {
                "After an acknowledged full rebuild, the previous generation is kept as a backup. Needs \
                 full rebuilds."
            }
            Invariant::NoLeakedTempFiles => {
                "After a writable open, no temporary, staging or snapshot file of an interrupted \
                 operation is left under the store's root."
            }
            Invariant::NoDestructiveWithoutForce => {
                "A destructive operation (reconcile clean or full) without force fails and changes \
                 nothing. Needs reconcile."
            }
            Invariant::CleanError => {
                "Every store call, on bad input or under an injected fault, returns (Ok or an error): it \
                 never panics, and never makes more syscalls than the harness's budget (a hang)."
            }
        }
    }

    /// The capability it needs, in words (`None`: every store), for reports
    /// that say why an invariant is not applicable.
    pub fn needs(&self) -> Option<&'static str> {
        match self {
            Invariant::NoOrphanVectors => Some("a vector store (capability `vectors`)"),
            Invariant::RebuildIdempotent | Invariant::BackupPresent => {
                Some("full rebuilds (capability `full_rebuild`)")
            }
            Invariant::FilesystemWins => {
                Some("source files and a full reconcile or rebuild (`source_files` and `reconcile` or `full_rebuild`)")
            }
            Invariant::NoWipeWithoutLock => Some("an exclusive lock (capability `exclusive_lock`)"),
            Invariant::SchemaNeverMisStamped => Some("a versioned schema (capability `schema_version`)"),
            Invariant::NoDestructiveWithoutForce => Some("reconcile (capability `reconcile`)"),
            _ => None,
        }
    }

    /// Whether a store with these capabilities can be held to it.
    pub fn applies_to(&self, caps: &Capabilities) -> bool {
        match self {
            Invariant::NoOrphanVectors => caps.vectors,
            Invariant::RebuildIdempotent | Invariant::BackupPresent => caps.full_rebuild,
            Invariant::FilesystemWins => caps.source_files && (caps.reconcile || caps.full_rebuild),
            Invariant::NoWipeWithoutLock => caps.exclusive_lock,
            Invariant::SchemaNeverMisStamped => caps.schema_version,
            Invariant::NoDestructiveWithoutForce => caps.reconcile,
            _ => true,
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A broken invariant and its evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// Which invariant.
    pub invariant: Invariant,
    /// What was found, in words a developer can act on.
    pub evidence: String,
}

impl Violation {
    /// A violation of `invariant` with this evidence.
    pub fn new(invariant: Invariant, evidence: impl Into<String>) -> Self {
        Self {
            invariant,
            evidence: evidence.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.invariant, self.evidence)
    }
}

fn short(hash: Option<&String>) -> String {
    match hash {
        Some(hash) => hash.chars().take(8).collect(),
        None => "absent".to_string(),
    }
}

/// Compares one side (index or sources) of an observation with the model.
///
/// `sources`, for the index side of a store with source files: a document
/// the interrupted operation touched may also be indexed as its source file
/// is found. A rolled-back mutation re-indexes what it touched from the
/// files (the filesystem wins), which refreshes an entry that was stale
/// because the file had been edited behind the store's back; that counts as
/// "before".
fn compare_side(
    side: &str,
    found: &BTreeMap<String, String>,
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
    sources: Option<&BTreeMap<String, String>>,
    model: &Model,
    violations: &mut Vec<Violation>,
) {
    let allowed = model.allowed();
    let op = allowed.op.clone().unwrap_or_default();
    let mut was_after = Vec::new();
    let mut was_before = Vec::new();
    let names: std::collections::BTreeSet<&String> = found.keys().chain(before.keys()).chain(after.keys()).collect();
    for name in names {
        let (got, old, new) = (found.get(name), before.get(name), after.get(name));
        if !allowed.touched.contains(name) {
            if got != old {
                violations.push(Violation::new(
                    Invariant::CommittedDurable,
                    format!(
                        "{side} {name}: acknowledged content {}, found {}",
                        short(old),
                        short(got)
                    ),
                ));
            }
            continue;
        }
        let follows_source = sources.is_some_and(|sources| sources.get(name) == got);
        if got == new && got != old {
            was_after.push(name.as_str());
        } else if (got == old || follows_source) && got != new {
            was_before.push(name.as_str());
        } else if got != old && got != new {
            violations.push(Violation::new(
                Invariant::AtomicOp,
                format!(
                    "{side} {name} after an interrupted `{op}` is {}, neither before ({}) nor after ({})",
                    short(got),
                    short(old),
                    short(new)
                ),
            ));
        }
    }
    if allowed.granularity == Granularity::Whole && !was_after.is_empty() && !was_before.is_empty() {
        violations.push(Violation::new(
            Invariant::AtomicOp,
            format!(
                "an interrupted `{op}` is half applied in the {side}: {} as after, {} as before",
                was_after.join(", "),
                was_before.join(", ")
            ),
        ));
    }
}

/// Checks a store's observation after a writable reopen: every invariant an
/// observation can show. `caps` decides which apply.
pub fn check_recovered(observation: &Observation, model: &Model, caps: &Capabilities) -> Vec<Violation> {
    let mut violations = Vec::new();
    if !observation.integrity_ok {
        violations.push(Violation::new(
            Invariant::CompleteDatabase,
            format!("the index fails its integrity check: {}", observation.integrity_detail),
        ));
    }
    let allowed = model.allowed();
    compare_side(
        "index",
        &observation.indexed,
        &allowed.before.indexed,
        &allowed.after.indexed,
        caps.source_files.then_some(&observation.sources),
        model,
        &mut violations,
    );
    if caps.source_files {
        compare_side(
            "source",
            &observation.sources,
            &allowed.before.sources,
            &allowed.after.sources,
            None,
            model,
            &mut violations,
        );
    }
    if caps.vectors && (observation.orphan_vectors > 0 || observation.missing_vectors > 0) {
        violations.push(Violation::new(
            Invariant::NoOrphanVectors,
            format!(
                "{} vectors no entry refers to, {} entries whose vector is missing",
                observation.orphan_vectors, observation.missing_vectors
            ),
        ));
    }
    if observation.pending_work > 0 {
        violations.push(Violation::new(
            Invariant::JournalDrained,
            format!(
                "{} intents or journals still pending after a writable open",
                observation.pending_work
            ),
        ));
    }
    if !observation.leftover_files.is_empty() {
        violations.push(Violation::new(
            Invariant::NoLeakedTempFiles,
            format!("left behind: {}", observation.leftover_files.join(", ")),
        ));
    }
    if caps.schema_version {
        match &observation.schema {
            Some(schema) if !schema.matches_stamp => violations.push(Violation::new(
                Invariant::SchemaNeverMisStamped,
                format!(
                    "the schema is stamped version {} but is not that version's schema",
                    schema.version
                ),
            )),
            Some(schema) if schema.version != schema.expected => violations.push(Violation::new(
                Invariant::SchemaNeverMisStamped,
                format!(
                    "a writable open left version {}, not {}",
                    schema.version, schema.expected
                ),
            )),
            Some(_) => {}
            None => violations.push(Violation::new(
                Invariant::SchemaNeverMisStamped,
                "the store declares a versioned schema but reports none",
            )),
        }
    }
    if caps.full_rebuild && model.full_rebuilds() > 0 && observation.backups == 0 {
        violations.push(Violation::new(
            Invariant::BackupPresent,
            format!(
                "{} full rebuilds acknowledged, no backup generation kept",
                model.full_rebuilds()
            ),
        ));
    }
    violations
}

/// After an acknowledged full reconcile or rebuild: the index serves
/// exactly the source files.
pub fn check_filesystem_wins(observation: &Observation) -> Option<Violation> {
    if observation.indexed == observation.sources {
        return None;
    }
    let differing: Vec<&String> = observation
        .indexed
        .keys()
        .chain(observation.sources.keys())
        .filter(|name| observation.indexed.get(*name) != observation.sources.get(*name))
        .collect();
    let mut names: Vec<&str> = differing.iter().map(|s| s.as_str()).collect();
    names.dedup();
    Some(Violation::new(
        Invariant::FilesystemWins,
        format!("the index and the source files differ on: {}", names.join(", ")),
    ))
}

/// Two observations around a second full rebuild must be equal.
pub fn check_rebuild_idempotent(first: &Observation, second: &Observation) -> Option<Violation> {
    (first.indexed != second.indexed).then(|| {
        Violation::new(
            Invariant::RebuildIdempotent,
            format!(
                "a second full rebuild changed the index: {} entries before, {} after",
                first.indexed.len(),
                second.indexed.len()
            ),
        )
    })
}

/// A destructive reconcile without force (and not a dry run) must fail and
/// change nothing. `returned_ok` is what the store answered; `before` and
/// `after` are its observations around the call. `None` for any other
/// operation.
pub fn check_no_destructive_without_force(
    op: &Operation,
    returned_ok: bool,
    before: &Observation,
    after: &Observation,
) -> Option<Violation> {
    let Operation::Reconcile { mode, force, dry_run } = op else {
        return None;
    };
    if !mode.is_destructive() || *force || *dry_run {
        return None;
    }
    let mut changed: Vec<&str> = before
        .indexed
        .keys()
        .chain(after.indexed.keys())
        .filter(|name| before.indexed.get(*name) != after.indexed.get(*name))
        .map(String::as_str)
        .collect();
    changed.sort_unstable();
    changed.dedup();
    if !returned_ok && changed.is_empty() {
        return None;
    }
    let answer = if returned_ok { "returned Ok" } else { "failed" };
    let effect = if changed.is_empty() {
        "changed nothing".to_string()
    } else {
        format!("changed the index entries of {}", changed.join(", "))
    };
    Some(Violation::new(
        Invariant::NoDestructiveWithoutForce,
        format!("`{}` {answer} and {effect}", op.describe()),
    ))
}

/// Reads the trace for destructive syscalls on `protected` paths by a
/// process that does not hold the lock on `lock_file` at that moment.
///
/// A process holds the lock from a successful `flock` of `lock_file` until
/// its `funlock`, its death, or a reboot.
pub fn check_no_wipe_without_lock(trace: &Trace, lock_file: &Path, protected: &[String]) -> Option<Violation> {
    let patterns: Vec<glob::Pattern> = protected.iter().filter_map(|p| glob::Pattern::new(p).ok()).collect();
    let lock = lock_file.display().to_string();
    let mut holder: Option<(u32, u32)> = None; // (boot, pid)
    for entry in trace.entries() {
        if holder.is_some_and(|(boot, _)| boot != entry.boot) {
            holder = None;
        }
        match (entry.op, &entry.outcome) {
            (SyscallKind::Lock, Outcome::Ok) if entry.path == lock => holder = Some((entry.boot, entry.pid)),
            (SyscallKind::Unlock, _) if entry.path == lock && holder == Some((entry.boot, entry.pid)) => holder = None,
            (_, Outcome::ProcessCrash) if holder == Some((entry.boot, entry.pid)) => holder = None,
            _ => {}
        }
        let destructive = matches!(
            entry.op,
            SyscallKind::RemoveFile | SyscallKind::Rename | SyscallKind::SetLen | SyscallKind::RemoveDir
        );
        if !destructive || !matches!(entry.outcome, Outcome::Ok | Outcome::Count(_)) {
            continue;
        }
        let targets = std::iter::once(entry.path.as_str()).chain(entry.args.rename_target());
        let hit = targets
            .into_iter()
            .find(|path| patterns.iter().any(|p| p.matches(path)));
        if let Some(path) = hit
            && holder != Some((entry.boot, entry.pid))
        {
            return Some(Violation::new(
                Invariant::NoWipeWithoutLock,
                format!(
                    "process {} destroyed {path} ({} at syscall {}) without holding {lock}",
                    entry.pid, entry.op, entry.index
                ),
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Operation;

    fn observation(indexed: &[(&str, &str)]) -> Observation {
        let map: BTreeMap<String, String> = indexed
            .iter()
            .map(|(n, c)| (n.to_string(), crate::model::content_hash(c.as_bytes())))
            .collect();
        Observation {
            indexed: map.clone(),
            sources: map,
            integrity_ok: true,
            ..Observation::default()
        }
    }

    fn caps() -> Capabilities {
        Capabilities {
            source_files: true,
            vectors: true,
            ..Capabilities::default()
        }
    }

    fn model_with(ops: &[Operation], in_flight: Option<Operation>) -> Model {
        let mut model = Model::new();
        for op in ops {
            model.begin(op);
            model.acknowledge();
        }
        if let Some(op) = in_flight {
            model.begin(&op);
        }
        model
    }

    fn add(name: &str, content: &str) -> Operation {
        Operation::Add {
            name: name.into(),
            content: content.into(),
        }
    }

    fn broken(violations: &[Violation]) -> Vec<Invariant> {
        violations.iter().map(|v| v.invariant).collect()
    }

    #[test]
    fn an_invariant_needs_a_capability_exactly_when_a_bare_store_is_not_held_to_it() {
        for invariant in Invariant::ALL {
            assert_eq!(
                invariant.needs().is_some(),
                !invariant.applies_to(&Capabilities::default()),
                "{invariant}"
            );
        }
    }

    #[test]
    fn a_lost_acknowledged_document_breaks_committed_durable() {
        let model = model_with(&[add("a", "1"), add("b", "2")], None);
        let found = observation(&[("a", "1")]);
        let violations = check_recovered(&found, &model, &caps());
        assert_eq!(
            broken(&violations),
            [Invariant::CommittedDurable, Invariant::CommittedDurable]
        );
        assert!(violations[0].evidence.contains("index b"), "{}", violations[0].evidence);
        assert!(check_recovered(&observation(&[("a", "1"), ("b", "2")]), &model, &caps()).is_empty());
    }

    #[test]
    fn an_in_flight_operation_may_be_before_or_after_but_not_half() {
        let import = Operation::Import {
            documents: vec![("x".into(), "new".into()), ("y".into(), "new".into())],
        };
        let model = model_with(&[add("x", "old"), add("y", "old")], Some(import));
        assert!(check_recovered(&observation(&[("x", "old"), ("y", "old")]), &model, &caps()).is_empty());
        assert!(check_recovered(&observation(&[("x", "new"), ("y", "new")]), &model, &caps()).is_empty());
        let half = check_recovered(&observation(&[("x", "new"), ("y", "old")]), &model, &caps());
        assert!(broken(&half).contains(&Invariant::AtomicOp), "{half:?}");
        let garbage = check_recovered(&observation(&[("x", "???"), ("y", "old")]), &model, &caps());
        assert!(broken(&garbage).contains(&Invariant::AtomicOp));
    }

    #[test]
    fn per_document_operations_may_be_mixed() {
        let mut model = model_with(&[add("x", "old"), add("y", "old")], None);
        model.edit_source("x", Some("new"));
        model.edit_source("y", Some("new"));
        model.begin(&Operation::Rebuild {
            kind: crate::contract::RebuildKind::Incremental,
        });
        let mut found = observation(&[("x", "new"), ("y", "old")]);
        found.sources = observation(&[("x", "new"), ("y", "new")]).sources;
        assert!(check_recovered(&found, &model, &caps()).is_empty());
    }

    #[test]
    fn a_rolled_back_operation_may_refresh_a_stale_entry_from_its_file() {
        // a.md indexed as "1", then edited behind the store's back to "2";
        // a replace to "3" is interrupted and rolled back, re-indexing a.md
        // from its file.
        let mut model = model_with(&[add("a", "1")], None);
        model.edit_source("a", Some("2"));
        model.begin(&add("a", "3"));
        let mut found = observation(&[("a", "2")]);
        found.sources = observation(&[("a", "2")]).sources;
        assert!(check_recovered(&found, &model, &caps()).is_empty());
        // An entry matching neither the model nor the file is still caught.
        let mut garbage = observation(&[("a", "9")]);
        garbage.sources = found.sources.clone();
        assert!(broken(&check_recovered(&garbage, &model, &caps())).contains(&Invariant::AtomicOp));
    }

    #[test]
    fn store_health_breaks_its_own_invariants() {
        let model = Model::new();
        let mut found = observation(&[]);
        found.integrity_ok = false;
        found.integrity_detail = "page 3 is never used".into();
        found.orphan_vectors = 1;
        found.pending_work = 2;
        found.leftover_files = vec!["source/.a.tmp".into()];
        let broken = broken(&check_recovered(&found, &model, &caps()));
        for invariant in [
            Invariant::CompleteDatabase,
            Invariant::NoOrphanVectors,
            Invariant::JournalDrained,
            Invariant::NoLeakedTempFiles,
        ] {
            assert!(broken.contains(&invariant), "{invariant} not reported: {broken:?}");
        }
    }

    #[test]
    fn a_mis_stamped_schema_and_a_missing_backup_are_caught() {
        let caps = Capabilities {
            schema_version: true,
            full_rebuild: true,
            ..caps()
        };
        let model = model_with(
            &[Operation::Rebuild {
                kind: crate::contract::RebuildKind::Full,
            }],
            None,
        );
        let mut found = observation(&[]);
        found.schema = Some(crate::contract::SchemaObservation {
            version: 3,
            expected: 3,
            matches_stamp: false,
        });
        let broken = broken(&check_recovered(&found, &model, &caps));
        assert!(broken.contains(&Invariant::SchemaNeverMisStamped));
        assert!(broken.contains(&Invariant::BackupPresent));
    }

    #[test]
    fn filesystem_wins_and_idempotence_compare_observations() {
        let mut found = observation(&[("a", "1")]);
        assert!(check_filesystem_wins(&found).is_none());
        found.sources.insert("b".into(), "h".into());
        assert!(check_filesystem_wins(&found).is_some_and(|v| v.evidence.contains('b')));
        assert!(check_rebuild_idempotent(&found, &observation(&[("a", "1")])).is_none());
        assert!(check_rebuild_idempotent(&found, &observation(&[])).is_some());
    }

    #[test]
    fn wiping_an_index_file_without_the_lock_is_read_off_the_trace() {
        use std::path::Path;
        use tearline_sim_fs::{Fs, FsExt, SimConfig, SimFs};
        let fs = SimFs::new(SimConfig::with_seed(1));
        fs.create_dir_all(Path::new("/s/index")).expect("mkdir");
        fs.write_file(Path::new("/s/index/a.db"), b"x").expect("write");
        fs.write_file(Path::new("/s/index/b.db"), b"x").expect("write");
        let protected = vec!["/s/index/*".to_string()];
        let lock = Path::new("/s/store.lock");
        let _guard = fs.try_lock(lock).expect("lock");
        fs.remove_file(Path::new("/s/index/a.db"))
            .expect("unlink while holding the lock");
        assert_eq!(check_no_wipe_without_lock(&fs.trace(), lock, &protected), None);
        let other = fs.spawn_process();
        other
            .remove_file(Path::new("/s/index/b.db"))
            .expect("unlink by another process");
        let violation = check_no_wipe_without_lock(&fs.trace(), lock, &protected).expect("caught");
        assert!(violation.evidence.contains("process 2"), "{}", violation.evidence);
        // After the holder releases the lock, its own unlink is caught too.
        let fs = SimFs::new(SimConfig::with_seed(1));
        fs.create_dir_all(Path::new("/s/index")).expect("mkdir");
        fs.write_file(Path::new("/s/index/c.db"), b"x").expect("write");
        drop(fs.try_lock(lock).expect("lock"));
        assert!(
            fs.trace().entries().iter().any(|e| e.op == SyscallKind::Unlock),
            "the release is traced"
        );
        fs.remove_file(Path::new("/s/index/c.db"))
            .expect("unlink after releasing");
        let violation = check_no_wipe_without_lock(&fs.trace(), lock, &protected).expect("caught");
        assert!(violation.evidence.contains("process 1"), "{}", violation.evidence);
    }

    #[test]
    fn a_destructive_reconcile_without_force_must_fail_and_change_nothing() {
        let clean = |force, dry_run| Operation::Reconcile {
            mode: crate::contract::ReconcileKind::Clean,
            force,
            dry_run,
        };
        let before = observation(&[("a", "1"), ("b", "2")]);
        let after = observation(&[("a", "1")]);
        assert_eq!(
            check_no_destructive_without_force(&clean(false, false), false, &before, &before),
            None
        );
        let ok = check_no_destructive_without_force(&clean(false, false), true, &before, &after).expect("caught");
        assert_eq!(ok.invariant, Invariant::NoDestructiveWithoutForce);
        assert!(
            ok.evidence.contains("returned Ok") && ok.evidence.contains('b'),
            "{}",
            ok.evidence
        );
        assert!(check_no_destructive_without_force(&clean(false, false), false, &before, &after).is_some());
        assert_eq!(
            check_no_destructive_without_force(&clean(true, false), true, &before, &after),
            None
        );
        assert_eq!(
            check_no_destructive_without_force(&clean(false, true), true, &before, &before),
            None
        );
        assert_eq!(
            check_no_destructive_without_force(&add("a", "1"), true, &before, &after),
            None
        );
    }

    #[test]
    fn every_invariant_is_named_and_explained() {
        for invariant in Invariant::ALL {
            assert_eq!(Invariant::parse(invariant.name()), Some(invariant));
            assert!(invariant.explanation().len() > 40);
        }
    }
}
