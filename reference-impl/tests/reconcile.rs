//! Reconcile against a source directory changed behind the store's back:
//! each mode, force, dry runs, idempotence, and the audit every writable open
//! runs. Each body runs on `SimFs` and on a real temporary directory.

#[macro_use]
mod common;

use common::Env;
use tearline_refstore::{ReconcileMode, ReconcileOptions, ReconcileStats, Store, StoreError, StoreOptions};
use tearline_sim_fs::FsExt;

on_both!(
    audit_reports_every_discrepancy_and_changes_nothing,
    sync_adds_and_refreshes_but_keeps_orphans,
    destructive_modes_refuse_without_force_and_change_nothing,
    full_with_force_brings_the_index_in_line,
    a_dry_run_reports_what_a_run_does_and_changes_nothing,
    reconcile_is_idempotent,
    a_writable_open_audits_without_blocking,
    a_reconcile_scoped_to_an_owner_touches_only_their_records,
    owners_are_kept_durably_and_go_with_their_document,
);

/// A store holding keep.md, edit.md and gone.md; then, behind its back:
/// edit.md edited, gone.md deleted, new.md added, plus a binary file and a
/// file whose name the store cannot hold.
fn drifted(env: &Env) -> Store {
    env.init();
    let mut store = env.open(StoreOptions::default()).expect("open");
    for (name, text) in [
        ("keep.md", "Keep\n\nUnchanged."),
        ("edit.md", "Edit\n\nBefore."),
        ("gone.md", "Gone\n\nDeleted later."),
    ] {
        store.add(name, text.as_bytes()).expect("add");
    }
    let source = env.root.join("source");
    env.fs
        .write_file(&source.join("edit.md"), b"Edit\n\nAfter, by hand.")
        .expect("edit");
    env.fs.remove_file(&source.join("gone.md")).expect("delete");
    env.fs
        .write_file(&source.join("new.md"), b"New\n\nAdded by hand.")
        .expect("add");
    env.fs
        .write_file(&source.join("blob.bin"), &[0xff, 0x00, 0xfe])
        .expect("binary");
    env.fs
        .write_file(&source.join("bad name.md"), b"Bad\n\nSpace in the name.")
        .expect("bad name");
    store
}

fn run(store: &mut Store, mode: ReconcileMode, dry_run: bool, force: bool) -> Result<ReconcileStats, StoreError> {
    store.reconcile(ReconcileOptions {
        mode,
        dry_run,
        force,
        owner: None,
    })
}

fn snapshot(store: &Store) -> String {
    serde_json::to_string(&store.dump().expect("dump")).expect("json")
}

fn audit_reports_every_discrepancy_and_changes_nothing(env: &Env) {
    let mut store = drifted(env);
    let before = snapshot(&store);
    let stats = run(&mut store, ReconcileMode::Audit, false, false).expect("audit");
    assert_eq!(stats.missing, ["new.md"]);
    assert_eq!(stats.stale, ["edit.md"]);
    assert_eq!(stats.orphaned, ["gone.md"]);
    assert_eq!(stats.skipped, ["bad name.md", "blob.bin"]);
    assert_eq!((stats.files_on_disk, stats.files_in_index), (3, 3));
    assert!(!stats.changed() && !stats.in_agreement());
    assert_eq!(snapshot(&store), before);
}

fn sync_adds_and_refreshes_but_keeps_orphans(env: &Env) {
    let mut store = drifted(env);
    let stats = run(&mut store, ReconcileMode::Sync, false, false).expect("sync needs no force");
    assert_eq!((stats.created, stats.refreshed, stats.deleted), (1, 1, 0));
    assert!(stats.errors.is_empty(), "{:?}", stats.errors);
    assert_eq!(store.get("edit.md").expect("get").expect("present").summary, "Edit");
    assert!(
        store
            .get("edit.md")
            .expect("get")
            .expect("present")
            .content
            .contains("After")
    );
    assert!(store.list().expect("list").contains(&"new.md".to_string()));
    let verify = store.verify().expect("verify");
    assert_eq!(verify.missing_sources, ["gone.md"], "sync never deletes");
    assert!(verify.stale.is_empty());
}

fn destructive_modes_refuse_without_force_and_change_nothing(env: &Env) {
    let mut store = drifted(env);
    let before = snapshot(&store);
    for mode in [ReconcileMode::Clean, ReconcileMode::Full] {
        let err = run(&mut store, mode, false, false).expect_err("needs force");
        assert!(matches!(err, StoreError::ForceRequired { .. }), "{err}");
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(snapshot(&store), before, "{mode} changed something without force");
    }
    let stats = run(&mut store, ReconcileMode::Clean, false, true).expect("clean with force");
    assert_eq!((stats.created, stats.refreshed, stats.deleted), (0, 0, 1));
    assert!(store.get("gone.md").expect("get").is_none());
    assert_eq!(store.verify().expect("verify").stale, ["edit.md"], "clean never syncs");
}

fn full_with_force_brings_the_index_in_line(env: &Env) {
    let mut store = drifted(env);
    let stats = run(&mut store, ReconcileMode::Full, false, true).expect("full");
    assert_eq!((stats.created, stats.refreshed, stats.deleted), (1, 1, 1));
    let verify = store.verify().expect("verify");
    // What cannot be indexed is skipped and named, not left as a problem
    // that makes verify fail forever.
    assert!(verify.is_clean(), "{verify:?}");
    let skipped: Vec<&str> = verify.skipped_sources.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(skipped, ["bad name.md", "blob.bin"], "{verify:?}");
    assert!(verify.skipped_sources[1].reason.contains("not UTF-8"), "{verify:?}");
    assert_eq!(store.list().expect("list"), ["edit.md", "keep.md", "new.md"]);
}

fn a_dry_run_reports_what_a_run_does_and_changes_nothing(env: &Env) {
    for mode in [ReconcileMode::Sync, ReconcileMode::Clean, ReconcileMode::Full] {
        let fresh = if matches!(env.root.to_str(), Some("/store")) {
            Env::sim()
        } else {
            Env::real()
        };
        let mut store = drifted(&fresh);
        let before = snapshot(&store);
        let dry = run(&mut store, mode, true, false).expect("a dry run needs no force");
        assert!(dry.dry_run);
        assert_eq!(snapshot(&store), before, "a dry {mode} changed something");
        let real = run(&mut store, mode, false, true).expect("run");
        assert_eq!(
            (dry.created, dry.refreshed, dry.deleted),
            (real.created, real.refreshed, real.deleted),
            "{mode}: the dry run promised something else"
        );
    }
}

fn reconcile_is_idempotent(env: &Env) {
    let mut store = drifted(env);
    let first = run(&mut store, ReconcileMode::Full, false, true).expect("full");
    assert!(first.changed());
    let after_first = snapshot(&store);
    let second = run(&mut store, ReconcileMode::Full, false, true).expect("again");
    assert!(!second.changed(), "{second:?}");
    assert!(second.in_agreement());
    assert_eq!(snapshot(&store), after_first);
}

fn a_writable_open_audits_without_blocking(env: &Env) {
    let store = drifted(env);
    drop(store);
    let store = env
        .open(StoreOptions::default())
        .expect("the open is not blocked by drift");
    let audit = store.open_report().audit.as_ref().expect("a writable open audits");
    assert_eq!(audit.mode, ReconcileMode::Audit);
    assert_eq!(
        (audit.missing.len(), audit.stale.len(), audit.orphaned.len()),
        (1, 1, 1)
    );
    assert!(
        store.list().expect("list").contains(&"gone.md".to_string()),
        "the audit changed nothing: the orphaned entry is still indexed"
    );
    let reader = env.open_in_other_process(StoreOptions::read_only());
    assert!(matches!(reader, Ok(ref r) if r.open_report().audit.is_none()));
}

/// The drifted store with owners: keep.md and gone.md are alice's, edit.md
/// is bob's; new.md (added behind the store's back) belongs to nobody.
fn owned(env: &Env) -> Store {
    let mut store = drifted(env);
    store.set_owner("keep.md", "alice").expect("own");
    store.set_owner("gone.md", "alice").expect("own");
    store.set_owner("edit.md", "bob").expect("own");
    store
}

fn scoped(store: &mut Store, owner: &str, mode: ReconcileMode) -> Result<ReconcileStats, StoreError> {
    store.reconcile(ReconcileOptions {
        owner: Some(owner.to_string()),
        ..ReconcileOptions::new(mode, true)
    })
}

fn a_reconcile_scoped_to_an_owner_touches_only_their_records(env: &Env) {
    let mut store = owned(env);
    let before_bob = store.get("edit.md").expect("get").expect("edit.md");
    let alice = scoped(&mut store, "alice", ReconcileMode::Full).expect("alice");
    assert_eq!(alice.owner.as_deref(), Some("alice"));
    assert_eq!((alice.files_in_index, alice.files_on_disk), (2, 1));
    assert_eq!(alice.orphaned, vec!["gone.md".to_string()]);
    assert!(alice.missing.is_empty() && alice.stale.is_empty() && alice.skipped.is_empty());
    assert_eq!((alice.created, alice.refreshed, alice.deleted), (0, 0, 1));
    let list = store.list().expect("list");
    assert!(!list.contains(&"gone.md".to_string()), "alice's orphan is deleted");
    assert!(
        !list.contains(&"new.md".to_string()),
        "a file nobody owns is out of her scope"
    );
    assert_eq!(
        store.get("edit.md").expect("get").expect("bob's record"),
        before_bob,
        "bob's stale record is left as it was"
    );
    let bob = scoped(&mut store, "bob", ReconcileMode::Sync).expect("bob");
    assert_eq!((bob.stale, bob.refreshed), (vec!["edit.md".to_string()], 1));
    assert!(
        store
            .get("edit.md")
            .expect("get")
            .expect("edit.md")
            .content
            .contains("by hand")
    );
    let nobody = scoped(&mut store, "carol", ReconcileMode::Full).expect("carol");
    assert_eq!((nobody.files_in_index, nobody.files_on_disk), (0, 0));
    assert!(!nobody.changed());
    // Without force a scoped clean refuses like any other.
    let refused = store.reconcile(ReconcileOptions {
        owner: Some("bob".to_string()),
        ..ReconcileOptions::new(ReconcileMode::Clean, false)
    });
    assert!(matches!(refused, Err(StoreError::ForceRequired { .. })), "{refused:?}");
    let bad = scoped(&mut store, "../alice", ReconcileMode::Audit);
    assert!(matches!(bad, Err(StoreError::InvalidOwner { .. })), "{bad:?}");
}

fn owners_are_kept_durably_and_go_with_their_document(env: &Env) {
    let mut store = owned(env);
    assert!(matches!(
        store.set_owner("never.md", "alice"),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.set_owner("keep.md", ""),
        Err(StoreError::InvalidOwner { .. })
    ));
    store.set_owner("keep.md", "bob").expect("a new owner replaces the old");
    store.remove("gone.md").expect("remove");
    let owners = store.owners().expect("owners");
    assert_eq!(
        owners.into_iter().collect::<Vec<_>>(),
        vec![
            ("edit.md".to_string(), "bob".to_string()),
            ("keep.md".to_string(), "bob".to_string()),
        ]
    );
    assert!(!env.fs.exists(&env.root.join("owners/gone.md")).expect("exists"));
    // A stale owner (left by a crash between a removal and its disowning)
    // is pruned by the next writable open: it never claims a later document.
    env.fs
        .write_file(&env.root.join("owners/gone.md"), b"mallory\n0f3d6c1b\n")
        .expect("plant");
    // A damaged owner names nobody: one whose CRC no longer matches (a bit
    // flipped at rest: "bob" became "cob").
    let bob = env.fs.read_file(&env.root.join("owners/keep.md")).expect("read");
    assert_eq!(String::from_utf8_lossy(&bob).lines().next(), Some("bob"));
    let mut flipped = bob.clone();
    flipped[0] ^= 1;
    env.fs
        .write_file(&env.root.join("owners/edit.md"), &flipped)
        .expect("damage");
    drop(store);
    let mut store = env.open(StoreOptions::default()).expect("reopen");
    assert!(!env.fs.exists(&env.root.join("owners/gone.md")).expect("exists"));
    store.add("gone.md", b"Gone\n\nBack.").expect("add");
    assert_eq!(store.owner("gone.md").expect("owner"), None);
    assert_eq!(store.owner("edit.md").expect("owner"), None);
    assert_eq!(store.owner("keep.md").expect("owner").as_deref(), Some("bob"));
}

#[test]
fn modes_parse_from_their_names() {
    for mode in [
        ReconcileMode::Audit,
        ReconcileMode::Sync,
        ReconcileMode::Clean,
        ReconcileMode::Full,
    ] {
        assert_eq!(ReconcileMode::parse(&mode.to_string()), Some(mode));
    }
    assert_eq!(ReconcileMode::parse("everything"), None);
}
