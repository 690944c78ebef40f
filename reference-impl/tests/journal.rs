//! Journaled mutations under faults: a power cut at every syscall of an add,
//! a replace, a remove and a five-file import (also with staging on another
//! device), EIO and ENOSPC at every syscall, malformed journals, rollback of a
//! failed import, draining a journal left by a killed process, and flawed
//! variants of the protocol that these checks must catch.
//!
//! After every fault, a writable open must succeed and leave: every touched
//! source file entirely old or entirely new (for an import, all old or all
//! new; if the call was acknowledged, all new), an index that agrees with the
//! files and the vectors, and no journal, snapshot, staging or temp leftovers.

use std::path::Path;
use std::sync::Arc;

use tearline_refstore::flawed::Flaw;
use tearline_refstore::{Store, StoreError, StoreOptions};
use tearline_sim_fs::{
    CrashChoice, Fault, FaultPlan, FileKind, Fs, FsExt, Mount, Outcome, PersistenceModel, SimConfig, SimFs,
    SimSnapshot, SyscallFilter, SyscallKind,
};

const ROOT: &str = "/store";
const INCOMING: &str = "/incoming";
const SEED: u64 = 44;

/// Names an import touches: the first three replace existing documents.
const IMPORTED: [&str; 5] = ["imp-0.md", "imp-1.md", "imp-2.md", "imp-3.md", "imp-4.md"];
const REPLACED_BY_IMPORT: usize = 3;

fn old_text(name: &str) -> String {
    format!("Old {name}\n\nThe document as it was before the operation.")
}

fn new_text(name: &str) -> String {
    format!("New {name}\n\nThe document as the operation leaves it, a little longer.")
}

/// The operation under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// Add `doc.md` (absent before).
    Add,
    /// Replace `doc.md`.
    Replace,
    /// Remove `doc.md`.
    Remove,
    /// Import five files, three replacing existing documents.
    Import,
}

impl Op {
    /// Every touched name with its content before and after.
    fn touched(&self) -> Vec<(String, Option<String>, Option<String>)> {
        let doc = "doc.md".to_string();
        match self {
            Op::Add => vec![(doc.clone(), None, Some(new_text(&doc)))],
            Op::Replace => vec![(doc.clone(), Some(old_text(&doc)), Some(new_text(&doc)))],
            Op::Remove => vec![(doc.clone(), Some(old_text(&doc)), None)],
            Op::Import => IMPORTED
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let old = (i < REPLACED_BY_IMPORT).then(|| old_text(n));
                    (n.to_string(), old, Some(new_text(n)))
                })
                .collect(),
        }
    }

    fn run(&self, store: &mut Store) -> Result<(), StoreError> {
        match self {
            Op::Add | Op::Replace => store.add("doc.md", new_text("doc.md").as_bytes()).map(|_| ()),
            Op::Remove => store.remove("doc.md"),
            Op::Import => store.import(Path::new(INCOMING)).map(|_| ()),
        }
    }
}

thread_local! {
    /// The defect the stores of this thread's test run with (see
    /// `flawed_import_is_caught`); per thread, so parallel tests do not mix.
    static FLAW: std::cell::Cell<Option<Flaw>> = const { std::cell::Cell::new(None) };
}

fn open(fs: &SimFs) -> Result<Store, StoreError> {
    Store::open(
        Arc::new(fs.clone()),
        Arc::new(fs.clock()),
        Path::new(ROOT),
        StoreOptions {
            flaw: FLAW.with(std::cell::Cell::get),
            ..StoreOptions::default()
        },
    )
}

/// A machine with an initialised store holding a bystander and the old
/// versions the operation expects, and the import directory filled, all
/// durable: the state every case of a test boots from.
fn prepared(config: SimConfig, op: Op) -> SimSnapshot {
    let fs = SimFs::new(config);
    Store::init(Arc::new(fs.clone()), Arc::new(fs.clock()), Path::new(ROOT)).expect("init");
    let mut store = open(&fs).expect("open");
    store
        .add("other.md", b"Another\n\nA bystander document.")
        .expect("add the bystander");
    for (name, old, _) in op.touched() {
        if let Some(old) = old {
            store.add(&name, old.as_bytes()).expect("add the old version");
        }
    }
    drop(store);
    if op == Op::Import {
        fs.create_dir_all_durable(Path::new(INCOMING)).expect("mkdir");
        for name in IMPORTED {
            fs.write_file_atomic(&Path::new(INCOMING).join(name), new_text(name).as_bytes())
                .expect("write an import file");
        }
    }
    fs.snapshot()
}

/// Boots the prepared machine (keeping only what is durable, which is all of
/// it) and opens the store.
fn boot(prepared: &SimSnapshot) -> (SimFs, Store) {
    let fs = prepared.boot(
        PersistenceModel::NothingUnsynced,
        &CrashChoice::nothing(prepared.pending_ops()),
    );
    let store = open(&fs).expect("open");
    (fs, store)
}

fn setup(config: SimConfig, op: Op) -> (SimFs, Store) {
    boot(&prepared(config, op))
}

/// Opens writable (recovering and draining) and checks every invariant.
fn check(fs: &SimFs, op: Op, acknowledged: bool) -> Result<(), String> {
    let store = open(fs).map_err(|e| format!("the store must open: {e}"))?;
    let report = store.verify().map_err(|e| format!("verify: {e}"))?;
    if !report.is_clean() {
        return Err(format!("not clean: {report:?}; open report {:?}", store.open_report()));
    }
    let mut old_count = 0;
    let mut new_count = 0;
    let touched = op.touched();
    for (name, old, new) in &touched {
        let path = Path::new(ROOT).join("source").join(name);
        let on_disk = match fs.read_file(&path) {
            Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        };
        let indexed = store.get(name).map_err(|e| format!("get: {e}"))?.map(|d| d.content);
        if indexed != on_disk {
            return Err(format!("{name}: indexed {indexed:?}, file {on_disk:?}"));
        }
        if on_disk == *old {
            old_count += 1;
        }
        if on_disk == *new {
            new_count += 1;
        }
        if on_disk != *old && on_disk != *new {
            return Err(format!("{name} is neither old nor new: {on_disk:?}"));
        }
    }
    let all_new = new_count == touched.len();
    let all_old = old_count == touched.len();
    if acknowledged && !all_new {
        return Err(format!("acknowledged, but only {new_count}/{} are new", touched.len()));
    }
    if !all_new && !all_old {
        return Err(format!(
            "not atomic: {old_count} old and {new_count} new of {}",
            touched.len()
        ));
    }
    if store.get("other.md").map_err(|e| format!("get: {e}"))?.is_none() {
        return Err("the bystander was lost".to_string());
    }
    let leftovers = leftovers(fs);
    if !leftovers.is_empty() {
        return Err(format!("leftovers after the open: {leftovers:?}"));
    }
    Ok(())
}

/// Journal, snapshot, staging and temp files left under the root.
fn leftovers(fs: &SimFs) -> Vec<String> {
    let mut found = Vec::new();
    for dir in ["journal", "staging", "source"] {
        let path = Path::new(ROOT).join(dir);
        for entry in fs.read_dir(&path).unwrap_or_default() {
            let leftover = match dir {
                "source" => entry.name.starts_with('.'),
                _ => true,
            };
            if leftover {
                found.push(format!("{dir}/{}", entry.name));
            }
        }
    }
    found
}

/// How many post-crash states each crash point is checked under.
#[derive(Clone, Copy, Debug)]
enum Breadth {
    /// Every distinct one under each model if there are at most 4, else two
    /// sampled.
    Wide,
    /// One sampled under each model (the import has ~700 crash points: the
    /// samples differ from point to point, and the run stays short).
    Sampled,
}

/// The post-crash states a point is checked under.
fn crash_states(snapshot: &SimSnapshot, breadth: Breadth) -> Vec<(PersistenceModel, CrashChoice)> {
    let mut states = Vec::new();
    for model in PersistenceModel::ALL {
        match (breadth, snapshot.distinct_crashes(model, 4)) {
            (Breadth::Wide, Some(choices)) => states.extend(choices.into_iter().map(|c| (model, c))),
            (Breadth::Wide, None) => states.extend((0..2).map(|i| (model, snapshot.sample_crash(model, i)))),
            (Breadth::Sampled, _) => states.push((model, snapshot.sample_crash(model, SEED))),
        }
    }
    states
}

/// Cuts the power at every syscall of `op` (fault-free run, snapshots),
/// boots each state and checks it. Returns the failures found (stopping at
/// the first if `stop_at_first`).
/// Right after an acknowledged operation, on the same handle, before any
/// recovery: every touched document is entirely new, and the index agrees
/// with the vectors and the files. (A later `drop` of a replaced vector may
/// still be pending; the old vector is then named by its intent, so it is no
/// orphan.)
fn check_acknowledged_in_place(store: &Store, op: Op) -> Result<(), String> {
    let report = store.verify().map_err(|e| format!("verify: {e}"))?;
    let vectors_agree = report.missing_vectors.is_empty() && report.orphan_vectors.is_empty();
    let files_agree = report.stale.is_empty() && report.missing_sources.is_empty();
    if report.integrity != "ok" || !vectors_agree || !files_agree {
        return Err(format!("acknowledged, but before recovery: {report:?}"));
    }
    for (name, _, new) in op.touched() {
        let indexed = store.get(&name).map_err(|e| format!("get: {e}"))?.map(|d| d.content);
        if indexed != new {
            return Err(format!("acknowledged, but {name} is {indexed:?} before recovery"));
        }
    }
    Ok(())
}

fn power_cut_at_every_syscall(config: SimConfig, op: Op, stop_at_first: bool) -> Vec<String> {
    let breadth = match op {
        Op::Import => Breadth::Sampled,
        _ => Breadth::Wide,
    };
    let (fs, mut store) = setup(config, op);
    fs.record_snapshots(true);
    op.run(&mut store)
        .unwrap_or_else(|e| panic!("{op:?} fails without faults: {e}"));
    if let Err(e) = check_acknowledged_in_place(&store, op) {
        panic!("{op:?}, the fault-free run: {e}");
    }
    let mut snapshots = fs.take_snapshots();
    fs.record_snapshots(false);
    drop(store);
    snapshots.push(fs.snapshot());
    let last = snapshots.len() - 1;
    let mut states = 0;
    let mut failures = Vec::new();
    for (i, snapshot) in snapshots.iter().enumerate() {
        if stop_at_first && !failures.is_empty() {
            break;
        }
        for (model, choice) in crash_states(snapshot, breadth) {
            let after = snapshot.boot(model, &choice);
            if let Err(e) = check(&after, op, i == last) {
                failures.push(format!(
                    "{op:?}, power cut at syscall {} under {model} ({choice}): {e}",
                    snapshot.syscall_index()
                ));
            }
            states += 1;
        }
    }
    eprintln!(
        "{op:?}: {} crash points, {states} post-crash states checked, {} failures",
        snapshots.len(),
        failures.len()
    );
    failures
}

fn assert_no_failures(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} failures (seed {SEED}), first: {}",
        failures.len(),
        failures.iter().take(5).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// For the import, faults in the index (SQLite and the vector store, under
/// `generations/`) are injected at every [`INDEX_STRIDE`]-th such syscall:
/// five reindexes of the same two-phase protocol that the single-document
/// operations here fault at every syscall. Every
/// syscall of the journal protocol itself is faulted.
const INDEX_STRIDE: usize = 5;

/// EIO and ENOSPC at every syscall of `op`: the call may fail; after a
/// reopen, and after a further power cut, the invariants hold.
fn errors_at_every_syscall(op: Op) {
    let machine = prepared(SimConfig::with_seed(SEED), op);
    let (fs, mut store) = boot(&machine);
    let start = fs.syscall_count();
    op.run(&mut store).expect("the probe run");
    let ops: Vec<(SyscallKind, bool)> = fs
        .trace()
        .entries()
        .iter()
        .filter(|e| e.index >= start && e.op != SyscallKind::Reboot)
        .map(|e| (e.op, e.path.starts_with("/store/generations/")))
        .collect();
    drop(store);
    let mut cases = 0;
    let mut index_calls = 0;
    let mut failures = Vec::new();
    for (offset, (kind, in_index)) in ops.iter().enumerate() {
        if *in_index {
            index_calls += 1;
            if op == Op::Import && index_calls % INDEX_STRIDE != 1 {
                continue;
            }
        }
        for fault in [Fault::EIO, Fault::ENOSPC] {
            if !fault.applies_to(*kind) {
                continue;
            }
            let (fs, mut store) = boot(&machine);
            let at = fs.syscall_count() + offset as u64;
            fs.set_fault_plan(FaultPlan::none().at(at, fault));
            let acknowledged = op.run(&mut store).is_ok();
            fs.set_fault_plan(FaultPlan::none());
            let what = format!("{op:?}, {fault} at syscall {at} ({kind})");
            if acknowledged && let Err(e) = check_acknowledged_in_place(&store, op) {
                failures.push(format!("{what}: {e}"));
            }
            drop(store);
            if let Err(e) = check(&fs, op, acknowledged) {
                failures.push(format!("{what}: {e}"));
            }
            let pending = fs.snapshot().pending_ops();
            let rebooted = fs.reboot_with(PersistenceModel::NothingUnsynced, &CrashChoice::nothing(pending));
            if let Err(e) = check(&rebooted, op, acknowledged) {
                failures.push(format!("{what}, then a power cut: {e}"));
            }
            cases += 1;
        }
    }
    eprintln!(
        "{op:?}: {} syscalls ({index_calls} in the index), {cases} error cases checked",
        ops.len()
    );
    assert_no_failures(&failures);
}

fn staging_on_another_device() -> SimConfig {
    SimConfig {
        seed: SEED,
        mounts: vec![Mount {
            path: "/store/staging".into(),
            capacity_bytes: 1 << 20,
        }],
        ..SimConfig::default()
    }
}

#[test]
fn add_survives_a_power_cut_at_every_syscall() {
    assert_no_failures(&power_cut_at_every_syscall(SimConfig::with_seed(SEED), Op::Add, false));
}

#[test]
fn replace_survives_a_power_cut_at_every_syscall() {
    assert_no_failures(&power_cut_at_every_syscall(
        SimConfig::with_seed(SEED),
        Op::Replace,
        false,
    ));
}

#[test]
fn remove_survives_a_power_cut_at_every_syscall() {
    assert_no_failures(&power_cut_at_every_syscall(
        SimConfig::with_seed(SEED),
        Op::Remove,
        false,
    ));
}

#[test]
fn import_is_atomic_under_a_power_cut_at_every_syscall() {
    assert_no_failures(&power_cut_at_every_syscall(
        SimConfig::with_seed(SEED),
        Op::Import,
        false,
    ));
}

#[test]
fn add_survives_eio_and_enospc_at_every_syscall() {
    errors_at_every_syscall(Op::Add);
}

#[test]
fn replace_survives_eio_and_enospc_at_every_syscall() {
    errors_at_every_syscall(Op::Replace);
}

#[test]
fn remove_survives_eio_and_enospc_at_every_syscall() {
    errors_at_every_syscall(Op::Remove);
}

#[test]
fn import_survives_eio_and_enospc_at_every_syscall() {
    errors_at_every_syscall(Op::Import);
}

#[test]
fn staging_on_another_device_publishes_by_copy() {
    let (fs, mut store) = setup(staging_on_another_device(), Op::Import);
    let start = fs.syscall_count();
    let stats = store.import(Path::new(INCOMING)).expect("import across devices");
    assert_eq!((stats.files, stats.replaced, stats.added), (5, REPLACED_BY_IMPORT, 2));
    let trace = fs.trace();
    let exdev: Vec<_> = trace
        .entries()
        .iter()
        .filter(|e| {
            e.index >= start
                && e.op == SyscallKind::Rename
                && e.path.starts_with("/store/staging/")
                && e.outcome == Outcome::Errno(libc_exdev())
        })
        .collect();
    assert_eq!(exdev.len(), IMPORTED.len(), "every publish tried a rename first");
    for name in IMPORTED {
        let doc = store.get(name).expect("get").expect("imported");
        assert_eq!(doc.content, new_text(name));
    }
    drop(store);
    check(&fs, Op::Import, true).expect("consistent");
}

/// EXDEV's number, as the trace records it.
fn libc_exdev() -> i32 {
    tearline_sim_fs::sim::trace::errno_from_name("EXDEV").expect("EXDEV is known")
}

#[test]
fn staging_on_another_device_survives_a_power_cut_at_every_syscall() {
    assert_no_failures(&power_cut_at_every_syscall(
        staging_on_another_device(),
        Op::Import,
        false,
    ));
}

#[test]
fn a_journal_on_another_device_snapshots_and_restores_by_copy() {
    let config = SimConfig {
        seed: SEED,
        mounts: vec![Mount {
            path: "/store/journal".into(),
            capacity_bytes: 1 << 20,
        }],
        ..SimConfig::default()
    };
    let (fs, mut store) = setup(config, Op::Import);
    let start = fs.syscall_count();
    let publishes = SyscallFilter::ops(&[SyscallKind::Rename])
        .path("/store/staging/*")
        .expect("glob");
    fs.set_fault_plan(FaultPlan::none().nth(publishes, 3, Fault::ENOSPC));
    store.import(Path::new(INCOMING)).expect_err("ENOSPC");
    fs.set_fault_plan(FaultPlan::none());
    let trace = fs.trace();
    let refused_links = trace
        .entries()
        .iter()
        .filter(|e| e.index >= start && e.op == SyscallKind::HardLink && e.outcome == Outcome::Errno(libc_exdev()))
        .count();
    assert_eq!(
        refused_links,
        REPLACED_BY_IMPORT + 2,
        "three snapshots and two restores fell back to copies"
    );
    for (name, old, _) in Op::Import.touched() {
        assert_eq!(store.get(&name).expect("get").map(|d| d.content), old, "{name}");
    }
    drop(store);
    check(&fs, Op::Import, false).expect("consistent");
}

#[test]
fn import_refuses_bad_files_up_front() {
    let (fs, mut store) = setup(SimConfig::with_seed(SEED), Op::Import);
    fs.write_file(Path::new("/incoming/bad name.md"), b"text")
        .expect("write");
    let err = store.import(Path::new(INCOMING)).expect_err("an invalid name");
    assert!(matches!(err, StoreError::ImportRefused { .. }), "{err}");
    assert!(err.to_string().contains("bad name.md"), "{err}");
    fs.remove_file(Path::new("/incoming/bad name.md")).expect("rm");
    fs.write_file(Path::new("/incoming/binary.md"), &[0xff, 0xfe, 0x00])
        .expect("write");
    let err = store.import(Path::new(INCOMING)).expect_err("not UTF-8");
    assert!(
        err.to_string().contains("binary.md") && err.to_string().contains("UTF-8"),
        "{err}"
    );
    let err = store.import(Path::new("/store/source")).expect_err("inside the root");
    assert!(err.to_string().contains("inside the store's root"), "{err}");
    for (name, old, _) in Op::Import.touched() {
        assert_eq!(store.get(&name).expect("get").map(|d| d.content), old, "{name} changed");
    }
    drop(store);
    check(&fs, Op::Import, false).expect("consistent");
}

#[test]
fn a_failed_publish_rolls_the_whole_import_back() {
    let third_publish = || {
        SyscallFilter::ops(&[SyscallKind::Rename])
            .path("/store/staging/*")
            .expect("glob")
    };
    // ENOSPC on the third publish: everything goes back, all cleaned up.
    let (fs, mut store) = setup(SimConfig::with_seed(SEED), Op::Import);
    fs.set_fault_plan(FaultPlan::none().nth(third_publish(), 3, Fault::ENOSPC));
    let err = store.import(Path::new(INCOMING)).expect_err("ENOSPC");
    fs.set_fault_plan(FaultPlan::none());
    let io = match &err {
        StoreError::NothingChanged { cause } => match cause.as_ref() {
            StoreError::Io { source, .. } => source,
            other => panic!("the original error is the cause, got {other}"),
        },
        other => panic!("a rolled-back import says nothing changed, got {other}"),
    };
    assert_eq!(io.kind(), std::io::ErrorKind::StorageFull, "{err}");
    assert_eq!(err.effect(), tearline_refstore::FailureEffect::NothingApplied);
    assert!(err.to_string().ends_with("; nothing was changed"), "{err}");
    for (name, old, _) in Op::Import.touched() {
        assert_eq!(store.get(&name).expect("get").map(|d| d.content), old, "{name}");
    }
    assert!(store.verify().expect("verify").is_clean());
    assert_eq!(leftovers(&fs), Vec::<String>::new(), "cleaned up at once");
    drop(store);
    check(&fs, Op::Import, false).expect("consistent after reopen");

    // The same, with the journal's removal failing too: the journal is left
    // on disk in state `rolled_back`, and the next open cleans it up.
    let (fs, mut store) = setup(SimConfig::with_seed(SEED), Op::Import);
    let journal_unlink = SyscallFilter::ops(&[SyscallKind::RemoveFile])
        .path("/store/journal/*.json")
        .expect("glob");
    fs.set_fault_plan(
        FaultPlan::none()
            .nth(third_publish(), 3, Fault::ENOSPC)
            .nth(journal_unlink, 1, Fault::EIO),
    );
    store.import(Path::new(INCOMING)).expect_err("ENOSPC");
    fs.set_fault_plan(FaultPlan::none());
    let journals: Vec<_> = fs
        .read_dir(Path::new("/store/journal"))
        .expect("ls")
        .into_iter()
        .filter(|e| e.kind == FileKind::File)
        .collect();
    assert_eq!(journals.len(), 1, "{journals:?}");
    let text = fs
        .read_file(&Path::new("/store/journal").join(&journals[0].name))
        .expect("read the journal");
    let record: serde_json::Value = serde_json::from_slice(&text).expect("JSON");
    assert_eq!(record["state"], "rolled_back", "{record}");
    assert_eq!(record["op"], "import", "{record}");
    assert_eq!(record["paths"].as_array().map(Vec::len), Some(IMPORTED.len()));
    drop(store);
    let store = open(&fs).expect("open");
    let id = journals[0].name.trim_end_matches(".json");
    assert_eq!(store.open_report().journals.cleaned_up, [id]);
    drop(store);
    check(&fs, Op::Import, false).expect("consistent after reopen");
}

#[test]
fn a_journal_left_active_by_a_killed_process_is_rolled_back_by_the_next_open() {
    let (fs, store) = setup(SimConfig::with_seed(SEED), Op::Import);
    drop(store);
    let second = fs.spawn_process();
    let mut store = open(&second).expect("the second process opens");
    // Kill the second process after its second publish.
    let publishes = SyscallFilter::ops(&[SyscallKind::Rename])
        .path("/store/staging/*")
        .expect("glob");
    fs.set_fault_plan(FaultPlan::none().nth(publishes, 3, Fault::ProcessCrash));
    store.import(Path::new(INCOMING)).expect_err("killed");
    fs.set_fault_plan(FaultPlan::none());
    assert!(second.halted().is_some(), "the second process is dead");
    drop(store);
    // Two files are new in the page cache, and the journal is active.
    let new_now = IMPORTED
        .iter()
        .filter(|n| fs.read_file(&Path::new("/store/source").join(n)).ok() == Some(new_text(n).into_bytes()))
        .count();
    assert_eq!(new_now, 2, "the import was cut half way");
    let journal = fs
        .read_dir(Path::new("/store/journal"))
        .expect("ls")
        .into_iter()
        .find(|e| e.name.ends_with(".json"))
        .expect("a journal is left");
    let text = fs
        .read_file(&Path::new("/store/journal").join(&journal.name))
        .expect("read");
    assert!(String::from_utf8_lossy(&text).contains("\"active\""));
    // The first process takes the lock (the dead one's is gone) and drains.
    let store = open(&fs).expect("the next open");
    let report = &store.open_report().journals;
    assert_eq!(report.rolled_back, [journal.name.trim_end_matches(".json")]);
    drop(store);
    check(&fs, Op::Import, false).expect("rolled back before any mutation");
    let mut store = open(&fs).expect("open");
    store.import(Path::new(INCOMING)).expect("the import works now");
    drop(store);
    check(&fs, Op::Import, true).expect("consistent");
}

#[test]
fn malformed_journals_are_quarantined_and_the_store_opens() {
    let (fs, store) = setup(SimConfig::with_seed(SEED), Op::Replace);
    drop(store);
    let journal = Path::new("/store/journal");
    let valid = r#"{"version":1,"id":"truncated","op":"import","state":"active","paths":[{"name":"doc.md","existed":true,"action":"write"}]}"#;
    let cases: [(&str, Vec<u8>, &str); 6] = [
        ("garbage", b"\x00\xffnot a journal".to_vec(), "not valid JSON"),
        ("empty", Vec::new(), "empty"),
        (
            "truncated",
            valid.as_bytes()[..valid.len() / 2].to_vec(),
            "not valid JSON",
        ),
        (
            "unknown-state",
            valid
                .replace("truncated", "unknown-state")
                .replace("active", "exploded")
                .into_bytes(),
            "exploded",
        ),
        (
            "bad-path",
            valid
                .replace("truncated", "bad-path")
                .replace("doc.md", "../etc/passwd")
                .into_bytes(),
            "../etc/passwd",
        ),
        (
            "future",
            valid
                .replace("truncated", "future")
                .replace("\"version\":1", "\"version\":9")
                .into_bytes(),
            "version 9",
        ),
    ];
    for (id, bytes, _) in &cases {
        fs.write_file(&journal.join(format!("{id}.json")), bytes)
            .expect("write");
    }
    // A half-published mutation its (corrupt) journal cannot describe: a new
    // file the index does not know, and a replaced one it has stale.
    fs.write_file(Path::new("/store/source/stray.md"), b"Stray\n\nUnindexed.")
        .expect("write");
    fs.write_file_atomic(
        Path::new("/store/source/doc.md"),
        b"Changed\n\nBehind the index's back.",
    )
    .expect("write");
    fs.create_dir(&journal.join("bad-path.snap")).expect("mkdir");
    fs.write_file(&journal.join("bad-path.snap/doc.md"), old_text("doc.md").as_bytes())
        .expect("write");

    let store = open(&fs).expect("malformed journals never block the open");
    let report = &store.open_report().journals;
    assert_eq!(report.quarantined.len(), cases.len(), "{report:?}");
    for (id, _, what) in &cases {
        let file = format!("journal/{id}.json");
        let q = report
            .quarantined
            .iter()
            .find(|q| q.file == file)
            .unwrap_or_else(|| panic!("{file} is not reported: {report:?}"));
        assert!(
            q.reason.contains(what),
            "{file}: {:?} should mention {what:?}",
            q.reason
        );
        assert!(q.to_string().contains(&file), "{q}");
        assert_eq!(q.moved_to, format!("journal/quarantine/{id}.json"));
        assert!(
            fs.exists(&Path::new(ROOT).join(&q.moved_to)).expect("stat"),
            "{} is missing",
            q.moved_to
        );
    }
    assert!(
        fs.exists(Path::new("/store/journal/quarantine/bad-path.json.snap/doc.md"))
            .expect("stat"),
        "the snapshot is kept beside its journal"
    );
    let names: Vec<String> = fs.read_dir(journal).expect("ls").into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["quarantine"]);
    assert!(store.verify().expect("verify").is_clean(), "{report:?}");
    assert_eq!(
        store.get("stray.md").expect("get").map(|d| d.content).as_deref(),
        Some("Stray\n\nUnindexed."),
        "the filesystem wins"
    );
    assert_eq!(
        report.reindexed,
        ["doc.md", "stray.md"],
        "every disagreeing name is reindexed"
    );
    drop(store);
    let mut store = open(&fs).expect("reopen");
    assert!(store.open_report().journals.is_empty(), "quarantined once only");
    store.add("after.md", b"After\n\nMutations work.").expect("add");
    assert!(store.verify().expect("verify").is_clean());
}

/// The checks have teeth: with a defect switched on, the crash matrix finds
/// violations.
fn flawed_import_is_caught(flaw: Flaw) {
    FLAW.with(|f| f.set(Some(flaw)));
    let failures = power_cut_at_every_syscall(SimConfig::with_seed(SEED), Op::Import, true);
    FLAW.with(|f| f.set(None));
    assert!(!failures.is_empty(), "{flaw:?} went unnoticed");
    eprintln!("{flaw:?} caught, e.g. {}", failures[0]);
}

#[test]
fn skipping_the_rollback_is_caught() {
    flawed_import_is_caught(Flaw::SkipRollback);
}

#[test]
fn publishing_without_a_directory_fsync_is_caught() {
    flawed_import_is_caught(Flaw::PublishWithoutFsync);
}

#[test]
fn an_import_whose_indexing_fails_says_it_is_applied_and_readers_wait_for_its_recovery() {
    let (fs, mut store) = setup(SimConfig::with_seed(SEED), Op::Import);
    let reader = fs.spawn_process();
    let read_only = || {
        Store::open(
            Arc::new(reader.clone()),
            Arc::new(reader.clock()),
            Path::new(ROOT),
            StoreOptions::read_only(),
        )
    };
    let early = read_only().expect("a reader before the import");
    // The first write under generations/ is the index phase's: the journal
    // is committed by then.
    let first_index_write = SyscallFilter::ops(&[SyscallKind::Write])
        .path("/store/generations/**")
        .expect("glob");
    fs.set_fault_plan(FaultPlan::none().nth(first_index_write, 1, Fault::ENOSPC));
    let err = store
        .import(Path::new(INCOMING))
        .expect_err("ENOSPC in the index phase");
    fs.set_fault_plan(FaultPlan::none());
    assert!(matches!(err, StoreError::CommittedNotIndexed { .. }), "{err}");
    assert_eq!(err.effect(), tearline_refstore::FailureEffect::Unknown);
    assert!(err.to_string().contains("it is applied"), "{err}");
    // A reader in another process refuses to serve half of it, and so does
    // every read of a read-only handle opened before.
    let refused = read_only().expect_err("a reader while the import is unfinished");
    assert!(matches!(refused, StoreError::RecoveryPending { .. }), "{refused}");
    assert_eq!(refused.effect(), tearline_refstore::FailureEffect::RecoveryPending);
    for read in [
        early.list().map(drop),
        early.status().map(drop),
        early.get(IMPORTED[0]).map(drop),
    ] {
        assert!(matches!(read, Err(StoreError::RecoveryPending { .. })), "{read:?}");
    }
    drop(store);
    check(&fs, Op::Import, true).expect("the next writable open finishes the import");
    let served = early.list().expect("served again once recovered");
    assert!(
        IMPORTED.iter().all(|name| served.iter().any(|s| s == name)),
        "{served:?}"
    );
}
