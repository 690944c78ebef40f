//! Fault injection: every fault kind, at an index and by predicate, with the
//! kernel's exact error; EXDEV across mounts; ENOSPC at capacity.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tearline_sim_fs::{
    Clock, Fault, FaultPlan, FileHandleExt, Fs, FsExt, HaltKind, Mount, OpenOptions, Outcome, SimConfig, SimFs,
    SyscallFilter, SyscallKind, halted,
};

fn machine() -> SimFs {
    let fs = SimFs::new(SimConfig::with_seed(11));
    fs.create_dir(Path::new("/d")).expect("mkdir");
    fs
}

/// The index the next syscall will get.
fn next(fs: &SimFs) -> u64 {
    fs.syscall_count()
}

#[test]
fn errno_faults_carry_the_kernels_kind_and_code_and_change_nothing() {
    for (fault, kind, code) in [
        (Fault::ENOSPC, ErrorKind::StorageFull, libc::ENOSPC),
        (Fault::EIO, ErrorKind::Other, libc::EIO),
    ] {
        let fs = machine();
        let path = Path::new("/d/f");
        fs.write_file(path, b"before").expect("write");
        let file = fs.open(path, &OpenOptions::read_write()).expect("open");
        fs.set_fault_plan(FaultPlan::none().at(next(&fs), fault));
        let err = file.write_at(b"AFTER!", 0).expect_err("injected");
        assert_eq!(err.raw_os_error(), Some(code));
        if kind != ErrorKind::Other {
            assert_eq!(err.kind(), kind);
        }
        assert_eq!(fs.read_file(path).expect("read"), b"before", "{fault} changed the file");
        let last = fs
            .trace()
            .entries()
            .iter()
            .rev()
            .find(|e| e.op == SyscallKind::Write)
            .cloned();
        let last = last.expect("traced");
        assert_eq!((last.outcome, last.fault), (Outcome::Errno(code), Some(fault)));
    }
}

#[test]
fn exdev_is_injected_only_where_the_kernel_can_return_it() {
    let fs = machine();
    fs.write_file(Path::new("/d/a"), b"x").expect("write");
    let at = next(&fs);
    fs.set_fault_plan(FaultPlan::none().at(at, Fault::EXDEV));
    fs.metadata(Path::new("/d/a"))
        .expect("EXDEV does not apply to stat, so nothing fires");
    fs.set_fault_plan(FaultPlan::none().nth(SyscallFilter::ops(&[SyscallKind::Rename]), 1, Fault::EXDEV));
    let err = fs.rename(Path::new("/d/a"), Path::new("/d/b")).expect_err("injected");
    assert_eq!(err.kind(), ErrorKind::CrossesDevices);
    assert!(fs.exists(Path::new("/d/a")).expect("exists"));
}

#[test]
fn rename_and_link_across_mounts_fail_with_exdev() {
    let fs = SimFs::new(SimConfig {
        mounts: vec![Mount {
            path: PathBuf::from("/mnt/staging"),
            capacity_bytes: 1 << 20,
        }],
        ..SimConfig::with_seed(1)
    });
    fs.write_file(Path::new("/mnt/staging/doc"), b"staged")
        .expect("write on the mount");
    let err = fs
        .rename(Path::new("/mnt/staging/doc"), Path::new("/doc"))
        .expect_err("cross-device rename");
    assert_eq!(err.raw_os_error(), Some(libc::EXDEV));
    let err = fs
        .hard_link(Path::new("/mnt/staging/doc"), Path::new("/doc"))
        .expect_err("cross-device link");
    assert_eq!(err.kind(), ErrorKind::CrossesDevices);
    fs.rename(Path::new("/mnt/staging/doc"), Path::new("/mnt/staging/doc2"))
        .expect("a rename within the mount works");
    assert_eq!(fs.read_file(Path::new("/mnt/staging/doc2")).expect("read"), b"staged");
}

#[test]
fn a_device_at_capacity_gives_enospc_and_leaves_the_file_unchanged() {
    let fs = SimFs::new(SimConfig {
        root_capacity_bytes: 10_000,
        ..SimConfig::with_seed(1)
    });
    let path = Path::new("/f");
    let file = fs.open(path, &OpenOptions::create()).expect("create");
    file.write_all_at(&[1u8; 8000], 0).expect("fits");
    assert_eq!(fs.free_space(Path::new("/")).expect("statvfs"), 2000);
    let err = file.write_all_at(&[2u8; 3000], 8000).expect_err("does not fit");
    assert_eq!(err.kind(), ErrorKind::StorageFull);
    assert_eq!(fs.read_file(path).expect("read"), vec![1u8; 8000]);
    assert_eq!(
        file.set_len(20_000).expect_err("no room").raw_os_error(),
        Some(libc::ENOSPC)
    );
    file.write_all_at(&[3u8; 100], 0).expect("an overwrite needs no space");
    file.set_len(1000).expect("truncate frees space");
    assert_eq!(fs.free_space(Path::new("/")).expect("statvfs"), 9000);
    fs.remove_file(path).expect("unlink");
    drop(file);
    assert_eq!(
        fs.free_space(Path::new("/")).expect("statvfs"),
        10_000,
        "the last close frees the inode"
    );
}

#[test]
fn a_power_cut_stops_every_process() {
    let fs = machine();
    let other = fs.spawn_process();
    fs.set_fault_plan(FaultPlan::none().at(next(&fs), Fault::PowerCut));
    let err = fs.write_file(Path::new("/d/f"), b"x").expect_err("cut");
    assert_eq!(halted(&err).map(|h| h.kind), Some(HaltKind::PowerCut));
    let err = other
        .metadata(Path::new("/d"))
        .expect_err("the other process is down too");
    assert_eq!(halted(&err).map(|h| h.kind), Some(HaltKind::PowerCut));
    assert_eq!(
        fs.trace().entries().last().map(|e| e.outcome.clone()),
        Some(Outcome::PowerCut)
    );
}

#[test]
fn a_process_crash_stops_only_the_caller() {
    let fs = machine();
    let other = fs.spawn_process();
    fs.set_fault_plan(FaultPlan::none().at(next(&fs), Fault::ProcessCrash));
    let err = fs.write_file(Path::new("/d/f"), b"x").expect_err("crash");
    assert_eq!(halted(&err).map(|h| h.kind), Some(HaltKind::ProcessCrash));
    other
        .write_file(Path::new("/d/g"), b"y")
        .expect("the other process runs on");
    assert!(
        !other.exists(Path::new("/d/f")).expect("exists"),
        "the crashed open never ran"
    );
}

#[test]
fn a_short_write_returns_less_and_write_all_completes_it() {
    let fs = machine();
    let file = fs.open(Path::new("/d/f"), &OpenOptions::create()).expect("create");
    fs.set_fault_plan(FaultPlan::none().at(next(&fs), Fault::ShortWrite));
    let n = file.write_at(&[9u8; 1000], 0).expect("a short write is not an error");
    assert!((1..1000).contains(&n), "wrote {n}");
    fs.set_fault_plan(FaultPlan::none().at(next(&fs), Fault::ShortWrite));
    file.write_all_at(&[7u8; 1000], 0).expect("write_all retries");
    assert_eq!(fs.read_file(Path::new("/d/f")).expect("read"), vec![7u8; 1000]);
}

#[test]
fn a_torn_write_leaves_a_durable_sector_prefix_then_cuts_the_power() {
    let mut lengths = std::collections::BTreeSet::new();
    for seed in 0..30 {
        let fs = SimFs::new(SimConfig::with_seed(seed));
        let path = Path::new("/f");
        let file = fs.open(path, &OpenOptions::create()).expect("create");
        file.sync_all().expect("fsync");
        fs.sync_dir(Path::new("/")).expect("sync");
        fs.set_fault_plan(FaultPlan::none().nth(SyscallFilter::ops(&[SyscallKind::Write]), 1, Fault::TornWrite));
        let err = file.write_at(&[5u8; 4096], 0).expect_err("torn");
        assert_eq!(halted(&err).map(|h| h.kind), Some(HaltKind::PowerCut));
        let pending = fs.snapshot().pending_ops();
        let after = fs.reboot_with(
            tearline_sim_fs::PersistenceModel::NothingUnsynced,
            &tearline_sim_fs::CrashChoice::from_fates(vec![tearline_sim_fs::Fate::Kept; pending]),
        );
        let data = after.read_file(path).expect("read");
        assert_eq!(data.len() % 512, 0, "torn at sector granularity");
        assert!(data.len() < 4096, "a torn write never completes");
        assert!(data.iter().all(|&b| b == 5));
        lengths.insert(data.len());
    }
    assert!(
        lengths.len() > 2,
        "the torn length should vary with the seed: {lengths:?}"
    );
}

#[test]
fn the_reboot_keeps_a_torn_writes_prefix_whatever_the_model_draws() {
    for seed in 0..20 {
        let fs = SimFs::new(SimConfig {
            persistence: tearline_sim_fs::PersistenceModel::NothingUnsynced,
            ..SimConfig::with_seed(seed)
        });
        let file = fs.open(Path::new("/f"), &OpenOptions::create()).expect("create");
        file.sync_all().expect("fsync");
        fs.sync_dir(Path::new("/")).expect("sync");
        fs.set_fault_plan(FaultPlan::none().nth(SyscallFilter::ops(&[SyscallKind::Write]), 1, Fault::TornWrite));
        let _ = file.write_at(&[5u8; 4096], 0);
        let torn_len = fs.snapshot().describe_pending();
        let data = fs.reboot().read_file(Path::new("/f")).expect("read");
        if torn_len.is_empty() {
            assert!(data.is_empty(), "a zero-length tear writes nothing");
        } else {
            assert!(
                !data.is_empty(),
                "seed {seed}: the sectors that reached the disk were lost"
            );
        }
    }
}

#[test]
fn the_clock_can_jump_backwards() {
    let fs = machine();
    let clock = fs.clock();
    let before = clock.now();
    fs.set_fault_plan(FaultPlan::none().at(next(&fs), Fault::ClockJumpBack(Duration::from_secs(3600))));
    fs.write_file(Path::new("/d/f"), b"x")
        .expect("the call itself succeeds");
    assert!(clock.now() < before);
    assert!(fs.metadata(Path::new("/d/f")).expect("stat").modified < before);
}

#[test]
fn a_predicate_picks_the_first_fsync_of_a_database() {
    let fs = machine();
    let filter = SyscallFilter::file_syncs().path("*.db").expect("glob");
    fs.set_fault_plan(FaultPlan::none().nth(filter, 1, Fault::EIO));
    let journal = fs
        .open(Path::new("/d/x.db-journal"), &OpenOptions::create())
        .expect("create");
    journal.sync_all().expect("not a *.db file");
    let db = fs.open(Path::new("/d/x.db"), &OpenOptions::create()).expect("create");
    db.write_all_at(b"page", 0).expect("a write is not an fsync");
    assert_eq!(
        db.sync_all().expect_err("first fsync of *.db").raw_os_error(),
        Some(libc::EIO)
    );
    db.sync_all().expect("only the first one");
}

#[test]
fn random_faults_fire_at_the_same_calls_for_the_same_seed() {
    let run = |seed| {
        let fs = SimFs::new(SimConfig::with_seed(seed));
        fs.set_fault_plan(FaultPlan::none().random(SyscallFilter::ops(&[SyscallKind::Write]), 0.25, Fault::EIO));
        let file = fs.open(Path::new("/f"), &OpenOptions::create()).expect("create");
        (0..64u64)
            .map(|i| file.write_at(b"x", i).is_err())
            .collect::<Vec<bool>>()
    };
    assert_eq!(run(3), run(3));
    assert_ne!(run(3), run(4));
    assert!(run(3).iter().any(|f| *f) && run(3).iter().any(|f| !*f));
}

/// A file that vanishes: another process unlinks it just before an open
/// names it. The open finds nothing (`ENOENT`), the unlink is durable (a
/// power cut does not bring the file back), an open that creates gets a new
/// empty file, and the fault applies to opens only.
#[test]
fn a_file_vanishes_just_before_an_open_and_stays_gone() {
    assert!(Fault::Vanish.applies_to(SyscallKind::Open));
    assert!(!Fault::Vanish.applies_to(SyscallKind::Read));
    assert_eq!(Fault::parse("vanish"), Some(Fault::Vanish));
    assert_eq!(Fault::Vanish.to_string(), "vanish");
    let fs = SimFs::new(SimConfig::with_seed(11));
    fs.create_dir_all_durable(Path::new("/d")).expect("mkdir");
    fs.write_file_atomic(Path::new("/d/a"), b"listed").expect("write");
    fs.write_file_atomic(Path::new("/d/b"), b"listed too").expect("write");
    assert_eq!(fs.read_dir(Path::new("/d")).expect("list").len(), 2);
    fs.set_fault_plan(FaultPlan::none().at(next(&fs), Fault::Vanish));
    let gone = fs
        .open(Path::new("/d/a"), &OpenOptions::read_only())
        .expect_err("it vanished");
    assert_eq!(gone.kind(), ErrorKind::NotFound);
    let entry = fs.trace().entries().last().cloned().expect("traced");
    assert_eq!(entry.fault, Some(Fault::Vanish));
    assert_eq!(entry.outcome, Outcome::Errno(libc::ENOENT));
    fs.set_fault_plan(FaultPlan::none().at(next(&fs), Fault::Vanish));
    let created = fs
        .open(Path::new("/d/b"), &OpenOptions::create_truncate())
        .expect("an open that creates gets a new file");
    assert_eq!(created.len().expect("len"), 0);
    drop(created);
    fs.power_cut();
    let model = tearline_sim_fs::PersistenceModel::NothingUnsynced;
    let rebooted = fs.reboot_with(model, &fs.crash_choice(model));
    assert!(
        !rebooted.exists(Path::new("/d/a")).expect("exists"),
        "the unlink was durable"
    );
}

#[test]
fn the_syscall_hook_sees_each_index_before_its_syscall_and_can_plan_a_fault_there() {
    use std::sync::{Arc, Mutex};
    let fs = machine();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let strike = next(&fs) + 1;
    let log = Arc::clone(&seen);
    fs.set_syscall_hook(Some(Arc::new(move |fs: &SimFs, index: u64| {
        log.lock().expect("log").push((index, fs.syscall_count()));
        if index == strike {
            // The hook runs outside the machine's lock, so it may plan a
            // fault for the very syscall it precedes.
            fs.set_fault_plan(FaultPlan::none().at(index, Fault::EIO));
        }
    })));
    let first = next(&fs);
    fs.write_file(Path::new("/d/a"), b"a")
        .expect_err("the write's second syscall fails");
    fs.set_syscall_hook(None);
    let unhooked = next(&fs);
    fs.write_file(Path::new("/d/b"), b"b").expect("no hook, no fault");
    let seen = seen.lock().expect("log").clone();
    assert!(seen.iter().all(|(index, _)| *index < unhooked), "no hook, no call");
    // Every index once, in order, each seen before its syscall was numbered.
    assert!(seen.len() >= 2, "{seen:?}");
    for (n, (index, count)) in seen.iter().enumerate() {
        assert_eq!(*index, first + n as u64);
        assert_eq!(count, index);
    }
    let trace = fs.trace();
    let struck = trace.entries().iter().find(|e| e.index == strike).expect("traced");
    assert_eq!(struck.outcome, Outcome::Errno(libc::EIO));
    assert_eq!(struck.fault, Some(Fault::EIO));
}
