//! `EIO` and `ENOSPC` injected at every syscall of a workload: the call that
//! meets it returns the error, the failed write is not applied (in memory,
//! after a reopen, after a power cut), nothing acknowledged is lost, and the
//! store goes on taking writes.

use tearline_refstore::vectors::{LocalVectorStore, OpenMode, VectorError, VectorStore};
use tearline_sim_fs::{CrashChoice, Fault, FaultPlan, PersistenceModel, SimConfig, SimFs};

use crate::{Contents, Env, MATRIX_OPS, SEED, contents, matrix_segments, run_sessions, workload};

/// Checks `error` is the injected one.
fn expect_injected(error: &VectorError, code: i32, what: &str) {
    match error {
        VectorError::Io(e) => assert_eq!(e.raw_os_error(), Some(code), "{what}: {e}"),
        other => panic!("{what}: expected the injected errno, got {other:?}"),
    }
}

/// Opens, retrying once after the injected error.
fn open(env: &Env, code: i32, errors: &mut u32, what: &str) -> LocalVectorStore {
    match env.open_matrix(OpenMode::ReadWrite) {
        Ok((store, _)) => store,
        Err(e) => {
            expect_injected(&e, code, what);
            *errors += 1;
            env.open_matrix(OpenMode::ReadWrite)
                .unwrap_or_else(|e| panic!("{what}: the retry failed: {e}"))
                .0
        }
    }
}

#[test]
fn an_injected_errno_at_every_syscall_loses_nothing_acknowledged() {
    eprintln!("SEED={SEED}");
    let ops = workload(SEED, MATRIX_OPS);
    let probe = SimFs::new(SimConfig::with_seed(SEED));
    run_sessions(
        &Env::on_sim(probe.clone()),
        &probe,
        &ops,
        matrix_segments(),
        &mut Vec::new(),
    )
    .expect("probe run");
    for fault in [Fault::EIO, Fault::ENOSPC] {
        let Fault::Errno(code) = fault else {
            unreachable!("errno faults")
        };
        let mut fired_total = 0;
        for at in 0..probe.syscall_count() {
            let what = format!("seed {SEED}, {fault} at syscall {at}");
            let fs = SimFs::new(SimConfig::with_seed(SEED));
            fs.set_fault_plan(FaultPlan::none().at(at, fault));
            let env = Env::on_sim(fs.clone());
            let mut model = Contents::new();
            let mut errors = 0;
            for session in ops.chunks(ops.len().div_ceil(2)) {
                let mut store = open(&env, code, &mut errors, &what);
                for op in session {
                    match op.apply(&mut store) {
                        Ok(()) => op.apply_to(&mut model),
                        Err(e) => {
                            expect_injected(&e, code, &what);
                            errors += 1;
                        }
                    }
                    assert_eq!(contents(&store), model, "{what}: after {op:?}");
                }
            }
            let fired = fs.trace().entries().iter().any(|e| e.fault == Some(fault));
            assert_eq!(
                errors,
                u32::from(fired),
                "{what}: each injected fault surfaces exactly once"
            );
            fired_total += u32::from(fired);
            let (store, _) = env.open_matrix(OpenMode::ReadWrite).expect("reopen");
            assert_eq!(contents(&store), model, "{what}: after a reopen");
            drop(store);
            let pending = fs.snapshot().pending_ops();
            let after = fs.reboot_with(PersistenceModel::NothingUnsynced, &CrashChoice::nothing(pending));
            let (store, _) = Env::on_sim(after).open_matrix(OpenMode::ReadWrite).expect("reboot");
            assert_eq!(contents(&store), model, "{what}: after a power cut");
        }
        eprintln!(
            "{fault}: injected at {fired_total} of {} syscalls",
            probe.syscall_count()
        );
        assert!(fired_total > 0, "{fault} never fired");
    }
}

#[test]
fn a_cut_back_that_fails_is_retried_before_the_next_write_reports_success() {
    let fs = SimFs::new(SimConfig::with_seed(SEED));
    let env = Env::on_sim(fs.clone());
    let (mut store, _) = env.open(OpenMode::ReadWrite).expect("open");
    store.upsert(1, &[1.0; crate::DIM]).expect("upsert");
    // upsert(2): its write, then EIO at its sync_data and at the set_len
    // that would cut it back, so the record stays in the page cache.
    let write = fs.syscall_count();
    fs.set_fault_plan(FaultPlan::none().at(write + 1, Fault::EIO).at(write + 2, Fault::EIO));
    store.upsert(2, &[2.0; crate::DIM]).expect_err("EIO at sync_data");
    assert_eq!(store.get(2).expect("get"), None);
    // Deleting the id the store does not hold must still remove that record.
    store.delete(2).expect("the cut back is retried first");
    let pending = fs.snapshot().pending_ops();
    let after = fs.reboot_with(PersistenceModel::AnySubset, &CrashChoice::everything(pending));
    let (store, report) = Env::on_sim(after).open(OpenMode::ReadWrite).expect("reboot");
    assert!(!report.repaired(), "{report:?}");
    assert_eq!(
        store.ids().expect("ids"),
        vec![1],
        "a delete reported success and the record came back"
    );
}
