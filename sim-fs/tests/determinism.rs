//! Same seed, same trace, byte for byte; a different seed, a different run.

use std::path::Path;

use tearline_sim_fs::{
    Clock, Fault, FaultPlan, FileHandleExt, Fs, OpenOptions, PersistenceModel, SimConfig, SimFs, SyscallFilter,
    SyscallKind,
};

/// A workload with seeded faults, a power cut and a reboot: everything the
/// seed can influence. Returns the trace text and the final disk fingerprint.
fn run(seed: u64) -> (String, u64) {
    let fs = SimFs::new(SimConfig {
        persistence: PersistenceModel::Torn { sector_size: 512 },
        ..SimConfig::with_seed(seed)
    });
    fs.set_fault_plan(
        FaultPlan::none()
            .random(SyscallFilter::ops(&[SyscallKind::Write]), 0.2, Fault::ShortWrite)
            .nth(SyscallFilter::file_syncs(), 3, Fault::PowerCut),
    );
    let work = || -> std::io::Result<()> {
        fs.create_dir(Path::new("/d"))?;
        for i in 0..6u64 {
            let file = fs.open(&Path::new("/d").join(format!("f{i}")), &OpenOptions::create())?;
            file.write_all_at(&vec![i as u8 + 1; 3000], 0)?;
            file.write_all_at(&vec![0xEE; 1500], 1000)?;
            file.sync_all()?;
        }
        Ok(())
    };
    assert!(work().is_err(), "the third fsync cuts the power");
    let after = fs.reboot();
    let _ = after.read_dir(Path::new("/d"));
    (after.trace().to_text(), after.fingerprint())
}

#[test]
fn the_same_seed_gives_the_same_trace_byte_for_byte() {
    let (first, disk_a) = run(42);
    let (second, disk_b) = run(42);
    assert_eq!(first, second);
    assert_eq!(disk_a, disk_b);
    assert!(first.contains("POWER-CUT") && first.contains("reboot"));
}

#[test]
fn the_trace_hash_is_a_hash_of_the_text() {
    let fs = SimFs::new(SimConfig::with_seed(1));
    fs.create_dir(Path::new("/d")).expect("mkdir");
    let trace = fs.trace();
    assert_eq!(trace.to_text(), "#000000 b0 p1 mkdir /d -> ok\n");
    assert_eq!(
        trace.hash(),
        tearline_sim_fs::sim::trace::fnv1a(trace.to_text().as_bytes())
    );
}

#[test]
fn a_different_seed_gives_a_different_post_crash_state_somewhere() {
    let fingerprints: std::collections::BTreeSet<u64> = (0..8).map(|seed| run(seed).1).collect();
    assert!(fingerprints.len() > 1, "eight seeds all left the same disk");
    let traces: std::collections::BTreeSet<String> = (0..8).map(|seed| run(seed).0).collect();
    assert!(traces.len() > 1, "eight seeds all gave the same trace");
}

/// The two halves of [`a_duplicated_machine_goes_on_as_the_original_would`]'s
/// workload: the first leaves a file open and unsynced writes behind, the
/// second draws seeded faults until the third fsync cuts the power.
fn first_half(fs: &SimFs) -> std::io::Result<Box<dyn tearline_sim_fs::FileHandle>> {
    fs.create_dir(Path::new("/d"))?;
    let kept = fs.open(Path::new("/d/kept"), &OpenOptions::create())?;
    kept.write_all_at(&[7; 5000], 0)?;
    let file = fs.open(Path::new("/d/unsynced"), &OpenOptions::create())?;
    file.write_all_at(&[9; 2000], 0)?;
    Ok(kept)
}

fn second_half(fs: &SimFs) -> std::io::Result<()> {
    for i in 0..6u64 {
        let file = fs.open(&Path::new("/d").join(format!("f{i}")), &OpenOptions::create())?;
        file.write_all_at(&vec![i as u8 + 1; 3000], 0)?;
        file.sync_all()?;
    }
    Ok(())
}

fn faulty_machine() -> SimFs {
    let fs = SimFs::new(SimConfig {
        persistence: PersistenceModel::Torn { sector_size: 512 },
        ..SimConfig::with_seed(7)
    });
    fs.set_fault_plan(
        FaultPlan::none()
            .random(SyscallFilter::ops(&[SyscallKind::Write]), 0.3, Fault::ShortWrite)
            .nth(SyscallFilter::file_syncs(), 3, Fault::PowerCut),
    );
    fs
}

#[test]
fn a_duplicated_machine_goes_on_as_the_original_would() {
    // Straight through, on one machine.
    let straight = faulty_machine();
    let _kept = first_half(&straight).expect("the first half");
    assert!(second_half(&straight).is_err(), "the third fsync cuts the power");
    let straight = straight.reboot();

    // The first half, then a copy of the machine runs the second.
    let original = faulty_machine();
    let _kept_too = first_half(&original).expect("the first half");
    let before = (
        original.trace().to_text(),
        original.fingerprint(),
        original.syscall_count(),
    );
    let copy = original.duplicate_machine();
    assert_eq!(copy.pid(), original.pid());
    assert!(
        second_half(&copy).is_err(),
        "the third fsync cuts the power on the copy too"
    );
    let copy = copy.reboot();

    assert_eq!(copy.trace().to_text(), straight.trace().to_text());
    assert_eq!(copy.fingerprint(), straight.fingerprint());
    assert_eq!(copy.clock().now(), straight.clock().now());
    let mut pages = tearline_sim_fs::PageHashes::default();
    assert_eq!(copy.state_key(&mut pages), straight.state_key(&mut pages));
    // The original did not move.
    assert_eq!(
        (
            original.trace().to_text(),
            original.fingerprint(),
            original.syscall_count()
        ),
        before
    );
    assert!(original.halted().is_none());
}
