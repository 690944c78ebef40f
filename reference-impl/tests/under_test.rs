//! The reference store through Tearline's contract: round trips on `SimFs`
//! and on a real directory, checked by the model's own invariant checks; and
//! each known-bad variant of the origin documents caught by the check of the
//! invariant it breaks, where the correct store passes the very same test.
//!
//! The crash tests scan a handful of power-cut points (every few syscalls,
//! a few crash outcomes each), not the whole matrix: they prove each variant
//! is detectable at all. The crash-matrix engine lives in `scenarios/`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::OpenFlags;
use tearline_model::contract::{Access, RebuildKind, ReconcileKind};
use tearline_model::invariants::{
    check_filesystem_wins, check_no_destructive_without_force, check_no_wipe_without_lock, check_recovered,
};
use tearline_model::{Env, Invariant, Model, Observation, Operation, StoreFactory, StoreUnderTest, Violation};
use tearline_refstore::{Flaw, RefStoreFactory};
use tearline_sim_fs::{
    CrashChoice, Fault, FaultPlan, Fs, FsExt, Mount, PersistenceModel, RealFs, SimConfig, SimFs, SimSnapshot,
    SqliteVfs, SyscallFilter, SyscallKind, SystemClock, VfsOptions,
};

const ROOT: &str = "/store";
const EIO: i32 = 5;

fn env_on(fs: &SimFs) -> Env {
    Env::new(Arc::new(fs.clone()), Arc::new(fs.clock()), ROOT)
}

fn add(name: &str, content: &str) -> Operation {
    Operation::Add {
        name: name.into(),
        content: content.into(),
    }
}

fn import(documents: &[(&str, &str)]) -> Operation {
    Operation::Import {
        documents: documents.iter().map(|(n, c)| (n.to_string(), c.to_string())).collect(),
    }
}

fn reconcile(mode: ReconcileKind, force: bool) -> Operation {
    Operation::Reconcile {
        mode,
        force,
        dry_run: false,
        owner: None,
    }
}

/// Applies `op`, telling the model how it went. Returns whether it was `Ok`.
fn run(store: &mut dyn StoreUnderTest, model: &mut Model, op: &Operation) -> bool {
    model.begin(op);
    let ok = store.apply(op).is_ok();
    if ok {
        model.acknowledge();
    }
    // On an error the model keeps the operation uncertain.
    ok
}

/// Opens writable and checks everything an observation shows; a store that
/// does not open breaks complete-database.
fn check_reopened(factory: &RefStoreFactory, env: &Env, model: &Model) -> Vec<Violation> {
    let store = match factory.open(env, Access::Writable) {
        Ok(store) => store,
        Err(e) => {
            return vec![Violation::new(
                Invariant::CompleteDatabase,
                format!("the store does not open: {e}"),
            )];
        }
    };
    match store.observe() {
        Ok(observation) => check_recovered(&observation, model, &factory.capabilities()),
        Err(e) => vec![Violation::new(
            Invariant::CompleteDatabase,
            format!("the store cannot be observed: {e}"),
        )],
    }
}

fn assert_clean(what: &str, violations: &[Violation]) {
    assert!(violations.is_empty(), "{what}: {violations:#?}");
}

/// Writes a source file behind the store's back, durably, and tells the model.
fn edit_source(env: &Env, model: &mut Model, name: &str, content: Option<&str>) {
    let path = env.root.join("source").join(name);
    match content {
        Some(content) => env.fs.write_file_atomic(&path, content.as_bytes()).expect("edit"),
        None => {
            env.fs.remove_file(&path).expect("delete");
            env.fs.sync_dir(&env.root.join("source")).expect("sync");
        }
    }
    model.edit_source(name, content);
}

/// A workload touching every operation, checked after each step and after a
/// reopen. Returns the last observation.
fn round_trip(env: &Env) -> Observation {
    let factory = RefStoreFactory::correct();
    let caps = factory.capabilities();
    assert!(caps.remove && caps.import && caps.vectors && caps.exclusive_lock && caps.schema_version);
    factory.init(env).expect("init");
    let mut model = Model::new();
    let mut store = factory.open(env, Access::Writable).expect("open");
    let check = |store: &dyn StoreUnderTest, model: &Model, what: &str| {
        let observation = store.observe().expect("observe");
        assert_clean(what, &check_recovered(&observation, model, &caps));
        observation
    };
    check(store.as_ref(), &model, "fresh");
    let ops = [
        add("a.md", "Alpha\n\nThe first."),
        add("b.md", "Beta\n\nThe second."),
        add("a.md", "Alpha\n\nThe first, again."),
        import(&[("c.md", "Gamma\n\nThird."), ("d.md", "Delta\n\nFourth.")]),
        Operation::Remove { name: "b.md".into() },
        Operation::Rebuild {
            kind: RebuildKind::Full,
        },
        Operation::Rebuild {
            kind: RebuildKind::Incremental,
        },
        reconcile(ReconcileKind::Sync, false),
    ];
    for op in &ops {
        assert!(run(store.as_mut(), &mut model, op), "{} failed", op.describe());
        check(store.as_ref(), &model, &op.describe());
    }
    let observation = store.observe().expect("observe");
    assert_eq!(observation.backups, 1, "the full rebuild kept a backup");
    assert_eq!(observation.indexed.len(), 3);
    // What must fail, fails, and changes nothing.
    let remove_absent = Operation::Remove { name: "zz.md".into() };
    assert!(model.expect(&remove_absent).must_fail);
    assert!(!run(store.as_mut(), &mut model, &remove_absent));
    edit_source(env, &mut model, "c.md", None);
    edit_source(env, &mut model, "e.md", Some("Epsilon\n\nBehind the back."));
    let before = store.observe().expect("observe");
    let clean = reconcile(ReconcileKind::Clean, false);
    let ok = run(store.as_mut(), &mut model, &clean);
    let after = store.observe().expect("observe");
    assert!(!ok, "clean without force is refused");
    assert_eq!(check_no_destructive_without_force(&clean, ok, &before, &after), None);
    let full = reconcile(ReconcileKind::Full, true);
    assert!(run(store.as_mut(), &mut model, &full));
    let observation = check(store.as_ref(), &model, "reconcile full");
    assert_eq!(check_filesystem_wins(&observation), None);
    // A second writer is refused at once, by another process.
    drop(store);
    assert_clean("after a reopen", &check_reopened(&factory, env, &model));
    let observation = {
        let store = factory.open(env, Access::ReadOnly).expect("read-only open");
        store.observe().expect("observe")
    };
    assert_clean(
        "read-only",
        &check_recovered(&observation, &model, &factory.capabilities()),
    );
    observation
}

#[test]
fn the_correct_store_round_trips_through_the_contract_on_simfs() {
    let fs = SimFs::new(SimConfig::with_seed(11));
    let env = env_on(&fs);
    let observation = round_trip(&env);
    let _holder = RefStoreFactory::correct().open(&env, Access::Writable).expect("open");
    let other = Env {
        fs: Arc::new(fs.spawn_process()),
        ..env.clone()
    };
    let second = RefStoreFactory::correct().open(&other, Access::Writable);
    assert!(second.is_err(), "a second writer must be refused, not wait");
    assert_eq!(
        observation.schema.as_ref().map(|s| (s.version, s.matches_stamp)),
        Some((3, true))
    );
}

#[test]
fn the_same_workload_observes_the_same_on_a_real_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let real = Env::new(Arc::new(RealFs), Arc::new(SystemClock), tmp.path().join("store"));
    let on_real = round_trip(&real);
    let on_sim = round_trip(&env_on(&SimFs::new(SimConfig::with_seed(12))));
    assert_eq!(on_real.indexed, on_sim.indexed);
    assert_eq!(on_real.sources, on_sim.sources);
    assert_eq!(on_real.backups, on_sim.backups);
    assert_eq!(on_real.schema, on_sim.schema);
    assert!(on_real.leftover_files.is_empty(), "{:?}", on_real.leftover_files);
}

/// A store at `/store` on a fresh machine, with `setup` applied (and
/// acknowledged in the returned model).
fn prepared(factory: &RefStoreFactory, config: SimConfig, setup: &[Operation]) -> (SimFs, Model) {
    let fs = SimFs::new(config);
    let env = env_on(&fs);
    factory.init(&env).expect("init");
    let mut model = Model::new();
    let mut store = factory.open(&env, Access::Writable).expect("open");
    for op in setup {
        assert!(run(store.as_mut(), &mut model, op), "setup: {} failed", op.describe());
    }
    (fs, model)
}

/// A few crash outcomes at one point: nothing unsynced kept, everything
/// kept, and two prefixes.
fn outcomes(snapshot: &SimSnapshot, seed: u64) -> Vec<(PersistenceModel, CrashChoice)> {
    let pending = snapshot.pending_ops();
    let mut outcomes = vec![
        (PersistenceModel::Prefix, CrashChoice::everything(pending)),
        (PersistenceModel::Prefix, CrashChoice::nothing(pending)),
    ];
    if pending > 1 {
        for i in 0..2 {
            outcomes.push((
                PersistenceModel::Prefix,
                snapshot.sample_crash(PersistenceModel::Prefix, seed + i),
            ));
        }
    }
    outcomes
}

/// What a power-cut scan found.
#[derive(Debug, Default)]
struct Scan {
    states: usize,
    /// (where, what broke), up to the first that breaks one of `stop_at`.
    found: Vec<(String, Violation)>,
}

impl Scan {
    fn broke(&self, invariants: &[Invariant]) -> bool {
        self.found.iter().any(|(_, v)| invariants.contains(&v.invariant))
    }
}

/// Runs `op` on `fs` (a prepared store) recording a snapshot before every
/// syscall, then cuts the power at every `stride`-th point (and after `op`
/// returned), boots each of a few outcomes, reopens writable and checks.
/// Stops at the first violation of one of `stop_at`.
fn power_cut_scan(
    factory: &RefStoreFactory,
    fs: &SimFs,
    mut model: Model,
    op: &Operation,
    stride: usize,
    stop_at: &[Invariant],
) -> Scan {
    let env = env_on(fs);
    let mut store = factory.open(&env, Access::Writable).expect("open");
    model.begin(op);
    fs.record_snapshots(true);
    let ok = store.apply(op);
    let mut snapshots = fs.take_snapshots();
    fs.record_snapshots(false);
    assert!(ok.is_ok(), "{} failed without a fault: {ok:?}", op.describe());
    drop(store);
    let in_flight = model.clone();
    model.acknowledge();
    snapshots.push(fs.snapshot());
    let last = snapshots.len() - 1;
    let mut scan = Scan::default();
    let points = (0..last).step_by(stride.max(1)).chain([last]);
    for i in points {
        let snapshot = &snapshots[i];
        let model = if i == last { &model } else { &in_flight };
        for (persistence, choice) in outcomes(snapshot, i as u64) {
            scan.states += 1;
            let booted = snapshot.boot(persistence, &choice);
            let violations = check_reopened(factory, &env_on(&booted), model);
            let at = format!(
                "power cut before syscall {} of `{}` ({choice}){}",
                snapshot.syscall_index(),
                op.describe(),
                if i == last { ", after it returned" } else { "" }
            );
            let stop = violations.iter().any(|v| stop_at.contains(&v.invariant));
            scan.found.extend(violations.into_iter().map(|v| (at.clone(), v)));
            if stop {
                return scan;
            }
        }
    }
    scan
}

/// The correct store passes `test`'s scan; `variant` breaks one of its
/// invariants in it.
fn caught_by_scan(variant: Flaw, test: impl Fn(&RefStoreFactory, &[Invariant]) -> Scan) {
    let correct = test(&RefStoreFactory::correct(), &[]);
    assert!(
        correct.found.is_empty(),
        "the correct store fails ({} states): {:#?}",
        correct.states,
        &correct.found[..correct.found.len().min(5)]
    );
    let flawed = test(&RefStoreFactory::with_flaw(variant), variant.breaks());
    assert!(
        flawed.broke(variant.breaks()),
        "{variant:?} went unnoticed in {} states (expected {:?}); found {:#?}",
        flawed.states,
        variant.breaks(),
        flawed.found
    );
    let (at, violation) = flawed
        .found
        .iter()
        .find(|(_, v)| variant.breaks().contains(&v.invariant))
        .expect("found");
    eprintln!(
        "{variant:?} caught after {} states (correct: {} states clean): {at}: {violation}",
        flawed.states, correct.states
    );
}

const DOCS: [(&str, &str); 3] = [
    ("a.md", "Alpha\n\nThe first document."),
    ("b.md", "Beta\n\nThe second document."),
    ("c.md", "Gamma\n\nThe third document."),
];

/// A full rebuild after a source was edited behind the store's back.
fn rebuild_scan(factory: &RefStoreFactory, stop_at: &[Invariant]) -> Scan {
    let setup: Vec<Operation> = DOCS.iter().map(|(n, c)| add(n, c)).collect();
    let (fs, mut model) = prepared(factory, SimConfig::with_seed(21), &setup);
    edit_source(&env_on(&fs), &mut model, "b.md", Some("Beta\n\nEdited by hand."));
    let rebuild = Operation::Rebuild {
        kind: RebuildKind::Full,
    };
    power_cut_scan(factory, &fs, model, &rebuild, 1, stop_at)
}

#[test]
fn dropping_the_tables_and_reindexing_in_place_is_caught() {
    caught_by_scan(Flaw::DropAndReindex, rebuild_scan);
}

#[test]
fn the_two_rename_swap_is_caught() {
    caught_by_scan(Flaw::TwoRenameSwap, rebuild_scan);
}

#[test]
fn publishing_without_a_directory_fsync_is_caught() {
    caught_by_scan(Flaw::PublishWithoutFsync, |factory, stop_at| {
        let (fs, model) = prepared(factory, SimConfig::with_seed(22), &[add("a.md", "Alpha\n\nOld.")]);
        let op = import(&[
            ("a.md", "Alpha\n\nNew."),
            ("b.md", "Beta\n\nNew."),
            ("c.md", "Gamma\n\nNew."),
        ]);
        power_cut_scan(factory, &fs, model, &op, 3, stop_at)
    });
}

#[test]
fn copying_across_devices_without_an_fsync_is_caught() {
    caught_by_scan(Flaw::CopyWithoutFsync, |factory, stop_at| {
        let config = SimConfig {
            mounts: vec![Mount {
                path: PathBuf::from(format!("{ROOT}/staging")),
                capacity_bytes: u64::MAX,
            }],
            ..SimConfig::with_seed(23)
        };
        let (fs, model) = prepared(factory, config, &[add("a.md", "Alpha\n\nOld.")]);
        power_cut_scan(factory, &fs, model, &add("a.md", "Alpha\n\nNew."), 2, stop_at)
    });
}

/// Runs SQL on the live index directly, as another build would have (under
/// the store's lock, as that build's writer would hold it).
fn tamper(fs: &SimFs, sql: &str) {
    let _lock = fs.try_lock(Path::new(ROOT)).expect("lock");
    let vfs = SqliteVfs::register(Arc::new(fs.clone()), Arc::new(fs.clock()), checksummed()).expect("vfs");
    let conn = vfs
        .open(
            Path::new(&format!("{ROOT}/generations/gen-000001/index.db")),
            OpenFlags::SQLITE_OPEN_READ_WRITE,
        )
        .expect("open index");
    conn.execute_batch(sql).expect("tamper");
}

#[test]
fn stamping_a_version_without_its_migration_is_caught() {
    caught_by_scan(Flaw::StampWithoutMigration, |factory, stop_at| {
        let setup: Vec<Operation> = DOCS.iter().map(|(n, c)| add(n, c)).collect();
        let (fs, model) = prepared(factory, SimConfig::with_seed(24), &setup);
        // As an older build left it: version 2, without version 3's column
        // (durably: the tampering connection does not run the store's
        // `synchronous=EXTRA`).
        tamper(
            &fs,
            "ALTER TABLE files DROP COLUMN indexed_at_ms; PRAGMA user_version = 2;",
        );
        let fs = fs.reboot_with(
            PersistenceModel::Prefix,
            &CrashChoice::everything(fs.snapshot().pending_ops()),
        );
        // The migrating open is what is interrupted.
        fs.record_snapshots(true);
        let opened = factory.open(&env_on(&fs), Access::Writable);
        let mut snapshots = fs.take_snapshots();
        fs.record_snapshots(false);
        drop(opened.expect("the migrating open"));
        snapshots.push(fs.snapshot());
        let mut scan = Scan::default();
        for snapshot in &snapshots {
            for (persistence, choice) in outcomes(snapshot, snapshot.syscall_index()) {
                scan.states += 1;
                let booted = snapshot.boot(persistence, &choice);
                let violations = check_reopened(factory, &env_on(&booted), &model);
                let at = format!(
                    "power cut before syscall {} of the migrating open ({choice})",
                    snapshot.syscall_index()
                );
                let stop = violations.iter().any(|v| stop_at.contains(&v.invariant));
                scan.found.extend(violations.into_iter().map(|v| (at.clone(), v)));
                if stop {
                    return scan;
                }
            }
        }
        scan
    });
}

#[test]
fn a_vector_store_failure_without_intents_leaves_an_orphan() {
    for variant in [None, Some(Flaw::NoIntents)] {
        let factory = variant.map_or_else(RefStoreFactory::correct, RefStoreFactory::with_flaw);
        let (fs, mut model) = prepared(&factory, SimConfig::with_seed(25), &[add("a.md", "Alpha\n\nOne.")]);
        let env = env_on(&fs);
        let mut store = factory.open(&env, Access::Writable).expect("open");
        // The vector store's next write fails with EIO.
        let vectors = SyscallFilter::ops(&[SyscallKind::Write])
            .path(&format!("{ROOT}/generations/*/vectors/*"))
            .expect("glob");
        fs.set_fault_plan(FaultPlan::none().nth(vectors, 1, Fault::Errno(EIO)));
        let ok = run(store.as_mut(), &mut model, &add("b.md", "Beta\n\nTwo."));
        fs.set_fault_plan(FaultPlan::none());
        drop(store);
        let store = factory.open(&env, Access::Writable).expect("reopen");
        let observation = store.observe().expect("observe");
        let violations = check_recovered(&observation, &model, &factory.capabilities());
        match variant {
            None => assert_clean("correct store after a vector-store failure", &violations),
            _ => {
                assert!(ok, "the flawed dual write reports success");
                assert!(
                    observation.missing_vectors + observation.orphan_vectors > 0,
                    "{observation:?}"
                );
                assert!(
                    violations.iter().any(|v| v.invariant == Invariant::NoOrphanVectors),
                    "{violations:?}"
                );
            }
        }
    }
}

#[test]
fn a_read_only_open_that_wipes_without_the_lock_is_caught() {
    for variant in [None, Some(Flaw::WipeWithoutLock)] {
        let factory = variant.map_or_else(RefStoreFactory::correct, RefStoreFactory::with_flaw);
        let (fs, _) = prepared(&factory, SimConfig::with_seed(26), &[add("a.md", "Alpha\n\nOne.")]);
        // A newer build wrote the index.
        tamper(&fs, "PRAGMA user_version = 99;");
        let env = env_on(&fs);
        // A reader in another process opens it.
        let reader = Env {
            fs: Arc::new(fs.spawn_process()),
            ..env.clone()
        };
        let opened = factory.open(&reader, Access::ReadOnly);
        let lock = factory.lock_file(&env).expect("lock file");
        let found = check_no_wipe_without_lock(&fs.trace(), &lock, &factory.protected_paths(&env));
        match variant {
            None => {
                assert!(opened.is_err(), "a read-only open of a newer schema refuses");
                assert_eq!(found, None);
            }
            _ => {
                let violation = found.expect("the wipe is read off the trace");
                assert_eq!(violation.invariant, Invariant::NoWipeWithoutLock);
                eprintln!("{variant:?} caught: {violation}");
            }
        }
    }
}

#[test]
fn clean_without_force_is_caught() {
    for variant in [None, Some(Flaw::CleanWithoutForce)] {
        let factory = variant.map_or_else(RefStoreFactory::correct, RefStoreFactory::with_flaw);
        let setup = [add("a.md", "Alpha\n\nOne."), add("b.md", "Beta\n\nTwo.")];
        let (fs, mut model) = prepared(&factory, SimConfig::with_seed(27), &setup);
        let env = env_on(&fs);
        let mut store = factory.open(&env, Access::Writable).expect("open");
        edit_source(&env, &mut model, "b.md", None);
        let clean = reconcile(ReconcileKind::Clean, false);
        assert!(model.expect(&clean).must_fail);
        let before = store.observe().expect("observe");
        let ok = store.apply(&clean).is_ok();
        let after = store.observe().expect("observe");
        let found = check_no_destructive_without_force(&clean, ok, &before, &after);
        match variant {
            None => assert_eq!(found, None),
            _ => {
                let violation = found.expect("caught");
                assert_eq!(violation.invariant, Invariant::NoDestructiveWithoutForce);
                eprintln!("{variant:?} caught: {violation}");
            }
        }
    }
}

#[test]
fn every_flaw_names_what_it_breaks_and_is_registered_by_its_name() {
    let names: std::collections::BTreeSet<&str> = Flaw::ALL.iter().map(Flaw::store_name).collect();
    assert_eq!(names.len(), Flaw::ALL.len(), "every flaw has its own name");
    for flaw in Flaw::ALL {
        assert!(!flaw.breaks().is_empty(), "{flaw:?}");
        assert!(flaw.store_name().starts_with("refstore/"), "{flaw:?}");
        assert_eq!(RefStoreFactory::with_flaw(flaw).name(), flaw.store_name());
    }
    let stores = tearline_refstore::under_test::stores();
    let names: Vec<&str> = stores.iter().map(|s| s.name).collect();
    assert_eq!(names[0], "refstore");
    assert_eq!(stores[0].factory().name(), "refstore");
    assert_eq!(names.len(), 1 + Flaw::ALL.len());
    for (store, flaw) in stores[1..].iter().zip(Flaw::ALL) {
        assert_eq!(store.name, flaw.store_name());
        assert_eq!(store.factory().name(), flaw.store_name());
    }
}

/// The import scratch directory is outside the root, and gone afterwards.
#[test]
fn an_import_leaves_no_scratch_directory() {
    let factory = RefStoreFactory::correct();
    let (fs, mut model) = prepared(&factory, SimConfig::with_seed(28), &[]);
    let env = env_on(&fs);
    let mut store = factory.open(&env, Access::Writable).expect("open");
    assert!(run(store.as_mut(), &mut model, &import(&DOCS)));
    let names: Vec<String> = fs
        .read_dir(Path::new("/"))
        .expect("ls")
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["store"]);
    // One left by an interrupted import is removed by the next writable open.
    fs.create_dir_all(Path::new("/store.import-0")).expect("mkdir");
    fs.write_file(Path::new("/store.import-0/x.md"), b"x").expect("write");
    assert_eq!(store.observe().expect("observe").leftover_files, ["/store.import-0"]);
    drop(store);
    assert_clean("reopened", &check_reopened(&factory, &env, &model));
    assert!(!fs.exists(Path::new("/store.import-0")).expect("exists"));
}

/// The bridge as the store opens its index: with page checksums (a page
/// written without one reads as damage).
fn checksummed() -> VfsOptions {
    VfsOptions {
        page_checksums: true,
        ..VfsOptions::default()
    }
}
