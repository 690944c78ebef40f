//! Damage at rest to the files the store derives from its sources (`CURRENT`,
//! `CREATED`, `index.db`, vector segments): a read-only open refuses naming
//! the file, a writable open rebuilds from the source files, keeps the
//! damaged generation aside and the backup, and a failed writable open
//! removes nothing; the known-bad designs of issue 12 fail where it passes.

#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::Env;
use tearline_refstore::embed::{Embedder, HashingEmbedder};
use tearline_refstore::{Flaw, RebuildMode, Store, StoreError, StoreOptions};
use tearline_sim_fs::{
    CrashChoice, Fault, FaultPlan, FileHandleExt, FileKind, Fs, FsExt, OpenOptions, PersistenceModel, SimConfig, SimFs,
};

const DOCS: [(&str, &str); 3] = [
    ("a.md", "Alpha\n\nThe first document, about crash safety."),
    ("b.md", "Beta\n\nThe second one, about vector stores."),
    ("c.md", "Gamma\n\nThe third, about generations and backups."),
];

/// One way a derived file goes bad.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Damage {
    /// 16 bytes overwritten at the start of a page in the middle of the
    /// live `index.db`.
    IndexBytes,
    /// A zero-length live `index.db`.
    IndexEmpty,
    /// Garbage (finite floats) in the middle of the first record of a
    /// vector segment, with valid records after it.
    VectorGarbage,
    /// `CURRENT` names a generation that does not exist.
    CurrentMissingGeneration,
    /// `CURRENT` holds garbage.
    CurrentGarbage,
    /// The live generation's `CREATED` does not hold a time.
    CreatedDamaged,
    /// `CURRENT` is removed (found by the fuzzer, target `store_at_rest`:
    /// the store took itself for one never initialised).
    CurrentRemoved,
}

const ALL: [Damage; 7] = [
    Damage::IndexBytes,
    Damage::IndexEmpty,
    Damage::VectorGarbage,
    Damage::CurrentMissingGeneration,
    Damage::CurrentGarbage,
    Damage::CreatedDamaged,
    Damage::CurrentRemoved,
];

impl Damage {
    /// Whether the damage is inside the live generation (which a repair
    /// then keeps aside), rather than in `CURRENT`.
    fn in_generation(self) -> bool {
        !matches!(
            self,
            Damage::CurrentMissingGeneration | Damage::CurrentGarbage | Damage::CurrentRemoved
        )
    }
}

fn gen_dir(root: &Path, n: u64) -> PathBuf {
    root.join(format!("generations/gen-{n:06}"))
}

/// A store with the three documents in generation 2 (live), generation 1
/// its backup.
fn prepared(env: &Env) {
    env.init();
    let mut store = env.open(StoreOptions::default()).expect("open");
    for (name, content) in DOCS {
        store.add(name, content.as_bytes()).expect("add");
    }
    store.rebuild(RebuildMode::Full, &mut |_| {}).expect("rebuild");
    assert_eq!(store.open_report().generation, 1);
    assert_eq!(store.status().expect("status").generation, 2);
}

/// Damages the live generation (2) of a prepared store; returns the path
/// the store must name.
fn damage(fs: &dyn Fs, root: &Path, kind: Damage) -> PathBuf {
    damage_generation(fs, root, kind, 2)
}

/// Damages generation `live`; returns the path the store must name.
fn damage_generation(fs: &dyn Fs, root: &Path, damage: Damage, live: u64) -> PathBuf {
    let live = gen_dir(root, live);
    match damage {
        Damage::IndexBytes => {
            let path = live.join("index.db");
            let len = fs.metadata(&path).expect("index").len;
            let pages = len / 4096;
            assert!(pages >= 2, "{len} bytes");
            let at = (pages / 2) * 4096;
            overwrite(fs, &path, at, &[0xa5; 16]);
            path
        }
        Damage::IndexEmpty => {
            let path = live.join("index.db");
            write(fs, &path, b"");
            path
        }
        Damage::VectorGarbage => {
            let path = live.join("vectors/seg-000001.vec");
            // The header (20 bytes), then the first record's frame (13
            // bytes), then 10 of its components: 0x3f3f3f3f is 0.747, a
            // finite float a store that trusts its bytes would serve.
            overwrite(fs, &path, 20 + 13 + 40, &[0x3f; 16]);
            path
        }
        Damage::CurrentMissingGeneration => {
            let path = root.join("CURRENT");
            write(fs, &path, b"gen-000099\n");
            path
        }
        Damage::CurrentGarbage => {
            let path = root.join("CURRENT");
            write(fs, &path, b"\x00garbage\xff");
            path
        }
        Damage::CreatedDamaged => {
            let path = live.join("CREATED");
            write(fs, &path, b"not a time");
            path
        }
        Damage::CurrentRemoved => {
            let path = root.join("CURRENT");
            fs.remove_file(&path).expect("remove CURRENT");
            fs.sync_dir(root).expect("sync");
            path
        }
    }
}

fn overwrite(fs: &dyn Fs, path: &Path, at: u64, bytes: &[u8]) {
    let mut content = fs.read_file(path).expect("read");
    let at = usize::try_from(at).expect("offset");
    assert!(
        at + bytes.len() <= content.len(),
        "{} is {} bytes",
        path.display(),
        content.len()
    );
    content[at..at + bytes.len()].copy_from_slice(bytes);
    write(fs, path, &content);
}

/// Writes `bytes` as `path`, durably: damage at rest survives a power cut.
fn write(fs: &dyn Fs, path: &Path, bytes: &[u8]) {
    let file = fs.open(path, &OpenOptions::create_truncate()).expect("open");
    file.write_all_at(bytes, 0).expect("write");
    file.sync_all().expect("sync");
    fs.sync_dir(path.parent().expect("parent")).expect("sync dir");
}

/// Every path under `root`, sorted (directories with a trailing `/`).
fn tree(fs: &dyn Fs, root: &Path) -> Vec<String> {
    fn walk(fs: &dyn Fs, dir: &Path, prefix: &str, out: &mut Vec<String>) {
        for entry in fs.read_dir_or_empty(dir).expect("ls") {
            let rel = format!("{prefix}{}", entry.name);
            if entry.kind == FileKind::Dir {
                out.push(format!("{rel}/"));
                walk(fs, &dir.join(&entry.name), &format!("{rel}/"), out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(fs, root, "", &mut out);
    out.sort();
    out
}

/// Every source document is served with its content and the embedding of
/// its summary as its vector; verify is clean.
fn assert_serves_everything(store: &Store, what: &str) {
    let embedder = HashingEmbedder::default();
    for (name, content) in DOCS {
        let doc = store
            .get(name)
            .expect("get")
            .unwrap_or_else(|| panic!("{what}: {name} is gone"));
        assert_eq!(doc.content, content, "{what}: {name}");
    }
    let dump = store.dump().expect("dump");
    assert_eq!(dump.documents.len(), DOCS.len(), "{what}");
    for doc in &dump.documents {
        assert_eq!(
            doc.vector.as_deref(),
            Some(&embedder.embed(&doc.summary)[..]),
            "{what}: the vector of {}",
            doc.name
        );
    }
    let verify = store.verify().expect("verify");
    assert!(verify.is_clean(), "{what}: {verify:?}");
}

fn a_damaged_live_generation_is_refused_read_only_and_repaired_writable(env: &Env) {
    prepared(env);
    let fs = env.fs.as_ref();
    // Each case on a copy of the prepared store.
    let pristine = tree(fs, &env.root);
    let backup_dir = env.root.with_extension("pristine");
    copy_tree(fs, &env.root, &backup_dir);
    for kind in ALL {
        let what = format!("{kind:?}");
        if fs.exists(&env.root).expect("exists") {
            fs.remove_tree(&env.root).expect("rm");
        }
        copy_tree(fs, &backup_dir, &env.root);
        assert_eq!(tree(fs, &env.root), pristine);
        let damaged = damage(fs, &env.root, kind);
        let before = tree(fs, &env.root);

        // A read-only open refuses, names the file, and changes nothing.
        let err = env
            .open(StoreOptions::read_only())
            .expect_err("a damaged store is refused");
        let StoreError::Damaged { path, .. } = &err else {
            panic!("{what}: {err}");
        };
        assert_eq!(path, &damaged, "{what}: {err}");
        let message = err.to_string();
        assert!(message.contains(&damaged.display().to_string()), "{what}: {message}");
        assert!(message.contains("writable open"), "{what}: {message}");
        assert!(message.contains("rebuild --full"), "{what}: {message}");
        assert_eq!(
            tree(fs, &env.root),
            before,
            "{what}: a read-only open changed something"
        );

        // A writable open rebuilds from the sources.
        let store = env.open(StoreOptions::default()).expect(&what);
        let report = store.open_report().clone();
        let repaired = report
            .repaired
            .as_ref()
            .unwrap_or_else(|| panic!("{what}: not repaired"));
        assert_eq!(repaired.damaged, damaged, "{what}");
        assert_eq!(report.generation, repaired.generation, "{what}");
        assert!(repaired.generation > 2, "{what}: {repaired:?}");
        assert_serves_everything(&store, &what);
        drop(store);

        let listing = tree(fs, &env.root);
        if kind.in_generation() {
            assert_eq!(
                repaired_kept(&env.root, fs),
                Some("generations/damaged-gen-000002".to_string()),
                "{what}"
            );
            assert!(
                listing.contains(&"generations/damaged-gen-000002/DAMAGED".to_string()),
                "{what}: {listing:?}"
            );
            // The backup is untouched.
            assert!(
                listing.contains(&"generations/gen-000001/CREATED".to_string()),
                "{what}: the backup is gone: {listing:?}"
            );
        } else {
            // The generation CURRENT named before is a complete backup now.
            assert!(
                listing.contains(&"generations/gen-000002/CREATED".to_string()),
                "{what}: no backup: {listing:?}"
            );
        }

        // A second writable open finds it sound: nothing more to repair,
        // and the kept generation stays.
        let store = env.open(StoreOptions::default()).expect("reopen");
        assert!(store.open_report().repaired.is_none(), "{what}");
        assert_eq!(store.open_report().generation, repaired.generation, "{what}");
        drop(store);
        assert_eq!(
            tree(fs, &env.root),
            listing,
            "{what}: the second open changed something"
        );
        let reader = env.open(StoreOptions::read_only()).expect("read-only after repair");
        assert_serves_everything(&reader, &what);
    }
}

/// Where the damaged generation was kept, from the listing.
fn repaired_kept(root: &Path, fs: &dyn Fs) -> Option<String> {
    fs.read_dir(&root.join("generations"))
        .expect("ls")
        .into_iter()
        .find(|e| e.name.starts_with("damaged-"))
        .map(|e| format!("generations/{}", e.name))
}

fn copy_tree(fs: &dyn Fs, from: &Path, to: &Path) {
    fs.create_dir_all(to).expect("mkdir");
    for entry in fs.read_dir(from).expect("ls") {
        let (src, dst) = (from.join(&entry.name), to.join(&entry.name));
        if entry.kind == FileKind::Dir {
            copy_tree(fs, &src, &dst);
        } else {
            let bytes = fs.read_file(&src).expect("read");
            fs.write_file(&dst, &bytes).expect("write");
        }
    }
}

fn rebuild_and_reconcile_work_on_a_damaged_store(env: &Env) {
    prepared(env);
    damage(env.fs.as_ref(), &env.root, Damage::IndexBytes);
    // What `refstore rebuild --full` does: a writable open, then the rebuild.
    let mut store = env.open(StoreOptions::default()).expect("open");
    assert!(store.open_report().repaired.is_some());
    let stats = store.rebuild(RebuildMode::Full, &mut |_| {}).expect("rebuild");
    assert_eq!(stats.indexed, DOCS.len());
    assert_serves_everything(&store, "rebuilt");
    drop(store);
    damage_live(env, Damage::VectorGarbage);
    let mut store = env.open(StoreOptions::default()).expect("open");
    assert!(store.open_report().repaired.is_some());
    let stats = store
        .reconcile(tearline_refstore::ReconcileOptions::audit())
        .expect("reconcile");
    assert!(stats.errors.is_empty(), "{stats:?}");
    assert_serves_everything(&store, "reconciled");
}

/// Damages whatever generation is live now.
fn damage_live(env: &Env, kind: Damage) {
    let status = env
        .open(StoreOptions::read_only())
        .expect("open")
        .status()
        .expect("status");
    damage_generation(env.fs.as_ref(), &env.root, kind, status.generation);
}

fn a_store_that_trusts_its_index_serves_a_wrong_vector(env: &Env) {
    prepared(env);
    damage(env.fs.as_ref(), &env.root, Damage::VectorGarbage);
    let trusting = StoreOptions {
        flaw: Some(Flaw::TrustsIndex),
        ..StoreOptions::default()
    };
    let store = env.open(trusting).expect("it opens: it checks nothing");
    assert!(store.open_report().repaired.is_none());
    let embedder = HashingEmbedder::default();
    let dump = store.dump().expect("dump");
    let wrong: Vec<&str> = dump
        .documents
        .iter()
        .filter(|d| d.vector.as_deref() != Some(&embedder.embed(&d.summary)[..]))
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(wrong, ["a.md"], "the damaged record is served as a vector");
}

fn a_rebuild_that_needs_the_live_generation_cannot_repair(env: &Env) {
    for kind in [Damage::IndexBytes, Damage::VectorGarbage, Damage::CurrentGarbage] {
        let env = fresh(env);
        prepared(&env);
        damage(env.fs.as_ref(), &env.root, kind);
        let needs_live = StoreOptions {
            flaw: Some(Flaw::RebuildNeedsLive),
            ..StoreOptions::default()
        };
        let err = env.open(needs_live).expect_err("the flaw cannot open it");
        assert!(matches!(err, StoreError::Damaged { .. }), "{kind:?}: {err}");
        // The real store, on the same damage, repairs it.
        let store = env.open(StoreOptions::default()).expect("the real store repairs");
        assert_serves_everything(&store, &format!("{kind:?}"));
    }
}

/// A new environment of the same kind as `env`.
fn fresh(env: &Env) -> Env {
    if env.root == Path::new("/store") {
        Env::sim()
    } else {
        Env::real()
    }
}

fn cleaning_before_checking_deletes_the_backup_and_fails(env: &Env) {
    prepared(env);
    damage(env.fs.as_ref(), &env.root, Damage::CurrentMissingGeneration);
    let before = tree(env.fs.as_ref(), &env.root);
    let cleans_first = StoreOptions {
        flaw: Some(Flaw::CleansBeforeCheck),
        ..StoreOptions::default()
    };
    let err = env.open(cleans_first).expect_err("the flaw fails");
    assert!(matches!(err, StoreError::Damaged { .. }), "{err}");
    let after = tree(env.fs.as_ref(), &env.root);
    let lost: Vec<&String> = before.iter().filter(|p| !after.contains(p)).collect();
    assert!(
        lost.iter().any(|p| p.starts_with("generations/gen-000001")),
        "the failed open removed the backup: {lost:?}"
    );
}

on_both!(
    a_damaged_live_generation_is_refused_read_only_and_repaired_writable,
    rebuild_and_reconcile_work_on_a_damaged_store,
    a_store_that_trusts_its_index_serves_a_wrong_vector,
    a_rebuild_that_needs_the_live_generation_cannot_repair,
    cleaning_before_checking_deletes_the_backup_and_fails,
);

/// failed-open-changes-nothing: an `EIO` at each syscall of a repairing
/// open, for every kind of damage. An open that fails has removed no
/// source, no backup and no generation (the damaged one may have been
/// moved aside, under its `damaged-` name); one that succeeds serves
/// everything.
#[test]
fn a_writable_open_that_fails_removes_nothing() {
    let mut cases = 0;
    let mut failed = 0;
    for kind in ALL {
        let sim = SimFs::new(SimConfig::with_seed(12));
        let env = Env::on(&sim);
        let (fs, root) = (Arc::clone(&env.fs), env.root.clone());
        let root = root.as_path();
        prepared(&env);
        damage(fs.as_ref(), root, kind);
        let start = sim.snapshot();
        let boot = || {
            start.boot(
                PersistenceModel::NothingUnsynced,
                &CrashChoice::nothing(start.pending_ops()),
            )
        };
        let kept: Vec<String> = tree(fs.as_ref(), root)
            .into_iter()
            .filter(|p| {
                p.starts_with("source/") || p.ends_with("/CREATED") || p.ends_with("/index.db") || p.contains(".vec")
            })
            .collect();
        // The probe: how many syscalls a repairing open makes.
        let probe = boot();
        let first = probe.syscall_count();
        drop(Env::on(&probe).open(StoreOptions::default()).expect("probe"));
        let syscalls = probe.syscall_count() - first;
        for offset in 0..syscalls {
            let sim = boot();
            let fs: Arc<dyn Fs> = Arc::new(sim.clone());
            let at = sim.syscall_count() + offset;
            sim.set_fault_plan(FaultPlan::none().at(at, Fault::EIO));
            let opened = Store::open(Arc::clone(&fs), Arc::new(sim.clock()), root, StoreOptions::default());
            sim.set_fault_plan(FaultPlan::none());
            cases += 1;
            match opened {
                Ok(store) => assert_serves_everything(&store, &format!("{kind:?}, EIO at +{offset}")),
                Err(e) => {
                    failed += 1;
                    let after = tree(fs.as_ref(), root);
                    for path in &kept {
                        let aside = path.replacen("generations/gen-000002", "generations/damaged-gen-000002", 1);
                        assert!(
                            after.contains(path) || after.contains(&aside),
                            "{kind:?}, EIO at +{offset}: the failed open ({e}) removed {path}"
                        );
                    }
                    // And the next open repairs it.
                    let store = Store::open(Arc::clone(&fs), Arc::new(sim.clock()), root, StoreOptions::default())
                        .unwrap_or_else(|e| panic!("{kind:?}, EIO at +{offset}, then: {e}"));
                    assert_serves_everything(&store, &format!("{kind:?}, EIO at +{offset}, reopened"));
                }
            }
        }
    }
    eprintln!("{cases} repairing opens with an EIO, {failed} failed and removed nothing");
    assert!(failed > 0);
}
