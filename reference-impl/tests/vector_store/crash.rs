//! Crash safety on `SimFs`: a power cut or a process crash at every syscall
//! of a workload leaves a store that opens (no `Corrupt`, no panic) and holds
//! exactly the acknowledged writes, plus possibly the one in flight.

use std::collections::BTreeMap;

use tearline_refstore::vectors::{AppendSync, LocalOptions, OpenMode, VectorStore};
use tearline_sim_fs::{
    CrashChoice, Fault, FaultPlan, PersistenceModel, SimConfig, SimFs, SimSnapshot, SyncDataPolicy, halted,
};

use crate::{
    Contents, DIM, Env, MATRIX_OPS, SEED, allowed_after_crash, contents, matrix_segments, run_sessions, workload,
};

/// Crash choices tried per crash point and model: all distinct ones up to
/// this many, else this many sampled.
const CHOICES_MAX: usize = 32;

/// What a run through the matrix saw, to show it covered the cases.
#[derive(Debug, Default)]
struct Coverage {
    crash_points: u64,
    states: u64,
    repairs: u64,
    in_flight_kept: u64,
    in_flight_lost: u64,
}

fn choices(snapshot: &SimSnapshot, model: PersistenceModel) -> Vec<CrashChoice> {
    snapshot.distinct_crashes(model, CHOICES_MAX).unwrap_or_else(|| {
        (0..CHOICES_MAX as u64)
            .map(|s| snapshot.sample_crash(model, SEED ^ s))
            .collect()
    })
}

/// Opens the store a crash left, checks it against `allowed`, and checks the
/// recovered store is whole: reopening repairs nothing more, and a new write
/// survives another power cut.
fn check_recovered(fs: &SimFs, options: LocalOptions, allowed: &[Contents], what: &str, coverage: &mut Coverage) {
    let env = Env::on_sim(fs.clone());
    let (mut store, report) = env
        .open_with(OpenMode::ReadWrite, options)
        .unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
    let found = contents(&store);
    let Some(which) = allowed.iter().position(|a| *a == found) else {
        panic!("{what}: the store holds {found:?}, allowed: {allowed:?} (repair: {report:?})");
    };
    coverage.states += 1;
    coverage.repairs += u64::from(report.repaired());
    if allowed.len() == 2 {
        if which == 1 {
            coverage.in_flight_kept += 1;
        } else {
            coverage.in_flight_lost += 1;
        }
    }
    store
        .upsert(1000, &[1.0; DIM])
        .expect("the recovered store takes writes");
    drop(store);
    let pending = fs.snapshot().pending_ops();
    let after = fs.reboot_with(PersistenceModel::NothingUnsynced, &CrashChoice::nothing(pending));
    let (store, report) = Env::on_sim(after)
        .open_with(OpenMode::ReadWrite, options)
        .unwrap_or_else(|e| panic!("{what}: second reopen failed: {e}"));
    assert!(
        !report.repaired(),
        "{what}: a repaired store needed repair again: {report:?}"
    );
    let mut expected = found;
    expected.insert(1000, vec![1.0; DIM]);
    assert_eq!(contents(&store), expected, "{what}: the write after recovery was lost");
}

/// Runs the workload once with snapshots, then boots every crash point under
/// each of `models` and checks what recovery finds. Returns the coverage per
/// model.
fn power_cut_matrix(
    config: &SimConfig,
    options: LocalOptions,
    models: &[PersistenceModel],
) -> BTreeMap<String, Coverage> {
    eprintln!("SEED={SEED} {config:?} {options:?}");
    let ops = workload(SEED, MATRIX_OPS);
    let probe = SimFs::new(config.clone());
    probe.record_snapshots(true);
    let mut spans = Vec::new();
    run_sessions(&Env::on_sim(probe.clone()), &probe, &ops, options, &mut spans).expect("probe run");
    let mut snapshots = probe.take_snapshots();
    snapshots.push(probe.snapshot());
    let mut per_model: BTreeMap<String, Coverage> = BTreeMap::new();
    for snapshot in &snapshots {
        let at = snapshot.syscall_index();
        let allowed = allowed_after_crash(&ops, &spans, at);
        for &model in models {
            let coverage = per_model.entry(model.to_string()).or_default();
            coverage.crash_points += 1;
            for choice in choices(snapshot, model) {
                let booted = snapshot.boot(model, &choice);
                let what = format!("seed {SEED}, power cut at syscall {at}, model {model}, choice {choice}");
                check_recovered(&booted, options, &allowed, &what, coverage);
            }
        }
    }
    for (model, coverage) in &per_model {
        eprintln!("{model}: {coverage:?}");
        assert!(coverage.in_flight_lost > 0, "{model}: never lost an in-flight write");
    }
    per_model
}

#[test]
fn a_power_cut_at_every_syscall_keeps_exactly_the_acknowledged_writes() {
    let per_model = power_cut_matrix(&SimConfig::with_seed(SEED), matrix_segments(), &PersistenceModel::ALL);
    for model in ["prefix", "subset", "torn"] {
        let coverage = &per_model[model];
        assert!(coverage.repairs > 0, "{model}: no crash ever left a tail to repair");
        assert!(coverage.in_flight_kept > 0, "{model}: never kept an in-flight write");
    }
}

#[test]
fn where_fdatasync_leaves_the_length_pending_fsynced_appends_are_durable() {
    let strict = SimConfig {
        sync_data: SyncDataPolicy::SizeNotDurable,
        ..SimConfig::with_seed(SEED)
    };
    // The default, fdatasync, is not enough there: an acknowledged append
    // is lost.
    let fs = SimFs::new(strict.clone());
    let (mut store, _) = Env::on_sim(fs.clone()).open(OpenMode::ReadWrite).expect("open");
    store.upsert(1, &[1.0; DIM]).expect("upsert");
    let pending = fs.snapshot().pending_ops();
    let after = fs.reboot_with(PersistenceModel::NothingUnsynced, &CrashChoice::nothing(pending));
    let (store, _) = Env::on_sim(after).open(OpenMode::ReadWrite).expect("reopen");
    assert_eq!(
        store.ids().expect("ids"),
        Vec::<u64>::new(),
        "fdatasync kept the new length"
    );
    // With fsync, every crash point keeps what was acknowledged.
    let options = LocalOptions {
        append_sync: AppendSync::All,
        ..matrix_segments()
    };
    power_cut_matrix(
        &strict,
        options,
        &[
            PersistenceModel::NothingUnsynced,
            PersistenceModel::Torn { sector_size: 512 },
        ],
    );
}

#[test]
fn a_process_crash_at_every_syscall_loses_nothing_acknowledged() {
    eprintln!("SEED={SEED}");
    let ops = workload(SEED, MATRIX_OPS);
    let options = matrix_segments();
    let probe = SimFs::new(SimConfig::with_seed(SEED));
    let mut spans = Vec::new();
    run_sessions(&Env::on_sim(probe.clone()), &probe, &ops, options, &mut spans).expect("probe run");
    let mut coverage = Coverage::default();
    for at in 0..probe.syscall_count() {
        let fs = SimFs::new(SimConfig::with_seed(SEED));
        fs.set_fault_plan(FaultPlan::none().at(at, Fault::ProcessCrash));
        let err = run_sessions(&Env::on_sim(fs.clone()), &fs, &ops, options, &mut Vec::new())
            .expect_err("the process is killed");
        let killed = match &err {
            tearline_refstore::vectors::VectorError::Io(e) => halted(e),
            _ => None,
        };
        assert!(killed.is_some(), "crash at {at}: {err:?}");
        // Another process takes over the page cache the dead one left; what
        // it opens must stay after a power cut: open makes it durable.
        let survivor = fs.spawn_process();
        let allowed = allowed_after_crash(&ops, &spans, at);
        coverage.crash_points += 1;
        let what = format!("seed {SEED}, process crash at syscall {at}");
        check_recovered(&survivor, options, &allowed, &what, &mut coverage);
    }
    eprintln!("process crash: {coverage:?}");
    assert!(coverage.in_flight_kept > 0, "never kept an in-flight write");
}
