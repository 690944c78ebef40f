//! The same seed and workload give the same syscall trace, byte for byte,
//! through a power cut and a recovery.

use tearline_refstore::vectors::{OpenMode, VectorStore};
use tearline_sim_fs::{Fault, FaultPlan, SimConfig, SimFs};

use crate::{Env, SEED, contents, matrix_segments, run_sessions, workload};

/// Runs `ops`, cuts the power at syscall 60, reboots (the outcome drawn from
/// the seed), recovers, searches, and returns the trace's hash.
fn traced_run(seed: u64, ops_len: usize) -> u64 {
    let ops = workload(seed, ops_len);
    let fs = SimFs::new(SimConfig::with_seed(seed));
    fs.set_fault_plan(FaultPlan::none().at(60, Fault::PowerCut));
    run_sessions(&Env::on_sim(fs.clone()), &fs, &ops, matrix_segments(), &mut Vec::new())
        .expect_err("the power is cut");
    let rebooted = fs.reboot();
    let (store, _) = Env::on_sim(rebooted.clone())
        .open_matrix(OpenMode::ReadWrite)
        .expect("recover");
    assert!(!contents(&store).is_empty());
    store.nearest(&[1.0, 0.0, 0.0, 0.0], 3).expect("search");
    rebooted.trace().hash()
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    eprintln!("SEED={SEED}");
    assert_eq!(traced_run(SEED, 30), traced_run(SEED, 30));
    assert_ne!(
        traced_run(SEED, 30),
        traced_run(SEED + 1, 30),
        "the trace does not depend on the workload"
    );
}
