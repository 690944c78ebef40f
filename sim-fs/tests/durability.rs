//! Durability semantics of `SimFs`: what survives a power cut, a process
//! crash, and each persistence model.

use std::path::Path;

use tearline_sim_fs::{
    CrashChoice, Fate, Fault, FaultPlan, FileHandleExt, Fs, FsExt, HaltKind, OpenOptions, PageHashes, PersistenceModel,
    SimConfig, SimFs, SyncDataPolicy, halted,
};

fn machine(seed: u64) -> SimFs {
    let fs = SimFs::new(SimConfig::with_seed(seed));
    fs.create_dir(Path::new("/d")).expect("mkdir");
    fs.sync_dir(Path::new("/")).expect("sync /");
    fs
}

fn cut_keeping_nothing(fs: &SimFs) -> SimFs {
    let pending = fs.snapshot().pending_ops();
    fs.reboot_with(PersistenceModel::NothingUnsynced, &CrashChoice::nothing(pending))
}

#[test]
fn an_fsynced_file_whose_directory_was_never_synced_is_gone() {
    let fs = machine(1);
    let path = Path::new("/d/f");
    let file = fs.open(path, &OpenOptions::create()).expect("create");
    file.write_all_at(b"data", 0).expect("write");
    file.sync_all().expect("fsync");
    let after = cut_keeping_nothing(&fs);
    assert!(!after.exists(path).expect("exists"), "the name was never made durable");
}

#[test]
fn a_file_and_its_directory_both_synced_survive_every_model() {
    for model in PersistenceModel::ALL {
        for seed in 0..20 {
            let fs = machine(seed);
            let path = Path::new("/d/f");
            let file = fs.open(path, &OpenOptions::create()).expect("create");
            file.write_all_at(b"data", 0).expect("write");
            file.sync_all().expect("fsync");
            fs.sync_dir(Path::new("/d")).expect("sync dir");
            file.write_all_at(b"more", 4).expect("unsynced write");
            let choice = fs.snapshot().sample_crash(model, seed);
            let after = fs.reboot_with(model, &choice);
            let content = after.read_file(path).expect("file survives");
            // Zeroed keeps the extension's length, not its bytes.
            let allowed: &[&[u8]] = match model {
                PersistenceModel::Zeroed => &[b"data\0\0\0\0"],
                _ => &[b"data", b"datamore"],
            };
            assert!(allowed.contains(&&content[..]), "{model} seed {seed}: {content:?}");
        }
    }
}

#[test]
fn a_rename_without_directory_sync_may_revert() {
    let fs = machine(2);
    let (tmp, dst) = (Path::new("/d/tmp"), Path::new("/d/dst"));
    fs.write_file(dst, b"old").expect("write dst");
    fs.write_file(tmp, b"new").expect("write tmp");
    for p in [tmp, dst] {
        fs.open(p, &OpenOptions::read_write())
            .expect("open")
            .sync_all()
            .expect("fsync");
    }
    fs.sync_dir(Path::new("/d")).expect("sync dir");
    fs.rename(tmp, dst).expect("rename");
    let reverted = cut_keeping_nothing(&fs);
    assert_eq!(reverted.read_file(dst).expect("read"), b"old");
    assert_eq!(reverted.read_file(tmp).expect("tmp is back"), b"new");

    let fs = machine(2);
    fs.write_file(dst, b"old").expect("write dst");
    fs.write_file(tmp, b"new").expect("write tmp");
    for p in [tmp, dst] {
        fs.open(p, &OpenOptions::read_write())
            .expect("open")
            .sync_all()
            .expect("fsync");
    }
    fs.sync_dir(Path::new("/d")).expect("sync dir");
    fs.rename(tmp, dst).expect("rename");
    fs.sync_dir(Path::new("/d")).expect("sync dir after rename");
    let kept = cut_keeping_nothing(&fs);
    assert_eq!(kept.read_file(dst).expect("read"), b"new");
    assert!(!kept.exists(tmp).expect("exists"));
}

#[test]
fn a_process_crash_loses_nothing_written_and_releases_its_locks() {
    let fs = machine(3);
    let lock = fs.try_lock(Path::new("/d/lock")).expect("lock");
    fs.write_file(Path::new("/d/f"), b"unsynced").expect("write");
    fs.crash_process();
    let err = fs.read_file(Path::new("/d/f")).expect_err("a dead process cannot read");
    assert_eq!(halted(&err).map(|h| h.kind), Some(HaltKind::ProcessCrash));
    let survivor = fs.spawn_process();
    assert_eq!(survivor.read_file(Path::new("/d/f")).expect("read"), b"unsynced");
    let relock = survivor
        .try_lock(Path::new("/d/lock"))
        .expect("the dead process's lock is gone");
    drop(lock);
    drop(relock);
}

#[test]
fn after_a_reboot_every_old_handle_is_dead() {
    let fs = machine(4);
    let file = fs.open(Path::new("/d/f"), &OpenOptions::create()).expect("create");
    let other = fs.spawn_process();
    fs.power_cut();
    let err = other.metadata(Path::new("/d")).expect_err("the power is off");
    assert_eq!(halted(&err).map(|h| h.kind), Some(HaltKind::PowerCut));
    let rebooted = fs.reboot();
    assert!(halted(&file.len().expect_err("a handle from before the cut")).is_some());
    assert!(rebooted.metadata(Path::new("/d")).is_ok());
}

/// Appends `chunks` 512-byte records (record i filled with byte i+1) to a
/// durable, empty file, without syncing, and returns the machine.
fn unsynced_appends(seed: u64, chunks: u8) -> SimFs {
    let fs = machine(seed);
    let path = Path::new("/d/log");
    let file = fs.open(path, &OpenOptions::create()).expect("create");
    file.sync_all().expect("fsync");
    fs.sync_dir(Path::new("/d")).expect("sync dir");
    for i in 0..chunks {
        file.write_all_at(&[i + 1; 512], u64::from(i) * 512).expect("append");
    }
    fs
}

/// The record numbers present in a recovered log (0 = a record of zeros).
fn records(fs: &SimFs) -> Vec<u8> {
    let data = fs.read_file(Path::new("/d/log")).expect("log survives");
    data.chunks(512).map(|c| c[0]).collect()
}

#[test]
fn each_persistence_model_produces_only_states_it_allows() {
    let mut saw_non_prefix_subset = false;
    let mut saw_torn = false;
    for seed in 0..60 {
        for model in PersistenceModel::ALL {
            let fs = unsynced_appends(seed, 6);
            let choice = fs.snapshot().sample_crash(model, seed);
            let data = fs
                .reboot_with(model, &choice)
                .read_file(Path::new("/d/log"))
                .expect("read");
            let recs: Vec<u8> = data.chunks(512).map(|c| c[0]).collect();
            let whole = data.chunks(512).all(|c| c.iter().all(|&b| b == c[0]));
            match model {
                PersistenceModel::NothingUnsynced => assert!(data.is_empty(), "{model}: {recs:?}"),
                PersistenceModel::Prefix => {
                    let expected: Vec<u8> = (1..=recs.len() as u8).collect();
                    assert_eq!(recs, expected, "{model}: not a prefix");
                    assert!(whole);
                }
                PersistenceModel::AnySubset => {
                    assert!(whole, "{model}: a record was torn");
                    assert!(recs.iter().enumerate().all(|(i, &r)| r == 0 || r == i as u8 + 1));
                    saw_non_prefix_subset |= recs.contains(&0);
                }
                PersistenceModel::Zeroed => {
                    // The appends' lengths survive, their data does not.
                    assert_eq!(recs.len(), 6, "{model}: the length was lost");
                    assert!(
                        recs.iter().all(|&r| r == 0),
                        "{model}: unsynced data survived: {recs:?}"
                    );
                }
                PersistenceModel::Torn { sector_size } => {
                    assert_eq!(sector_size, 512);
                    // Sectors are 512 bytes and records are aligned: a record is
                    // whole or zeros, but any subset of them may survive.
                    assert!(whole);
                    saw_torn |= recs.contains(&0);
                }
            }
        }
    }
    assert!(saw_non_prefix_subset, "the subset model never left a gap");
    assert!(saw_torn, "the torn model never lost a middle record");
}

#[test]
fn a_torn_write_mixes_old_and_new_sectors() {
    let mut saw_mixed = false;
    for seed in 0..40 {
        let fs = machine(seed);
        let path = Path::new("/d/page");
        let file = fs.open(path, &OpenOptions::create()).expect("create");
        file.write_all_at(&[0xAA; 4096], 0).expect("write");
        file.sync_all().expect("fsync");
        fs.sync_dir(Path::new("/d")).expect("sync");
        file.write_all_at(&[0xBB; 4096], 0).expect("overwrite");
        let model = PersistenceModel::Torn { sector_size: 512 };
        let choice = fs.snapshot().sample_crash(model, seed);
        let data = fs.reboot_with(model, &choice).read_file(path).expect("read");
        assert_eq!(data.len(), 4096);
        for sector in data.chunks(512) {
            assert!(sector.iter().all(|&b| b == sector[0]), "a sector was split");
            assert!(sector[0] == 0xAA || sector[0] == 0xBB);
        }
        saw_mixed |= data.contains(&0xAA) && data.contains(&0xBB);
    }
    assert!(saw_mixed, "no crash ever tore the page");
}

#[test]
fn exhaustive_enumeration_yields_every_distinct_state() {
    let fs = unsynced_appends(0, 3);
    let snapshot = fs.snapshot();
    assert_eq!(snapshot.pending_ops(), 3);
    let prefix = snapshot.distinct_crashes(PersistenceModel::Prefix, 100).expect("small");
    assert_eq!(prefix.len(), 4);
    let subset = snapshot
        .distinct_crashes(PersistenceModel::AnySubset, 100)
        .expect("small");
    assert_eq!(subset.len(), 8);
    let mut states: Vec<Vec<u8>> = subset
        .iter()
        .map(|choice| records(&snapshot.boot(PersistenceModel::AnySubset, choice)))
        .collect();
    states.sort();
    states.dedup();
    assert_eq!(states.len(), 8, "each enumerated choice leaves a different disk");
    assert!(snapshot.distinct_crashes(PersistenceModel::AnySubset, 7).is_none());
}

#[test]
fn a_state_derived_from_a_snapshot_equals_a_rerun_to_that_point() {
    let workload = |fs: &SimFs| -> std::io::Result<()> {
        let file = fs.open(Path::new("/d/f"), &OpenOptions::create())?;
        for i in 0..5u8 {
            file.write_all_at(&[i; 700], u64::from(i) * 700)?;
            if i % 2 == 0 {
                file.sync_data()?;
            }
        }
        fs.sync_dir(Path::new("/d"))?;
        fs.rename(Path::new("/d/f"), Path::new("/d/g"))
    };
    let probe = machine(9);
    probe.record_snapshots(true);
    workload(&probe).expect("probe run");
    let snapshots = probe.take_snapshots();
    assert_eq!(
        snapshots.len() as u64,
        probe.syscall_count() - snapshots[0].syscall_index()
    );
    let model = PersistenceModel::AnySubset;
    for snapshot in &snapshots {
        let choice = snapshot.sample_crash(model, 9);
        let derived = snapshot.boot(model, &choice);
        let rerun = machine(9);
        rerun.set_fault_plan(
            tearline_sim_fs::FaultPlan::none().at(snapshot.syscall_index(), tearline_sim_fs::Fault::PowerCut),
        );
        assert!(
            workload(&rerun).is_err(),
            "the cut at {} must stop the workload",
            snapshot.syscall_index()
        );
        let rebooted = rerun.reboot_with(model, &choice);
        assert_eq!(
            derived.fingerprint(),
            rebooted.fingerprint(),
            "post-crash state at syscall {} differs",
            snapshot.syscall_index()
        );
    }
}

#[test]
fn a_process_crash_derived_from_a_snapshot_equals_a_rerun_killed_there() {
    // A second process holds a lock and a file open throughout; the first
    // writes, syncs some of it, takes a lock of its own and renames.
    let workload = |fs: &SimFs, other: &SimFs| -> std::io::Result<()> {
        let file = fs.open(Path::new("/d/f"), &OpenOptions::create())?;
        let _lock = fs.try_lock(Path::new("/d/lock"))?;
        for i in 0..4u8 {
            file.write_all_at(&[i; 700], u64::from(i) * 700)?;
            if i == 1 {
                file.sync_data()?;
            }
            let _ = other.metadata(Path::new("/d/f"))?;
            let _ = fs.metadata(Path::new("/d/f"))?;
        }
        fs.rename(Path::new("/d/f"), Path::new("/d/g"))?;
        fs.remove_file(Path::new("/d/g"))
    };
    // What a new process then does (every syscall after the killed one,
    // and the clock), and the power cut after it.
    let after = |killed: &SimFs, at: u64| -> (Vec<String>, u64) {
        let next = killed.spawn_process();
        let lock = next.try_lock(Path::new("/d/lock")).is_ok();
        let names = next.read_dir(Path::new("/d")).map(|n| n.len()).unwrap_or(usize::MAX);
        let file = next
            .open(Path::new("/d/after"), &OpenOptions::create())
            .expect("create");
        file.write_all_at(b"after", 0).expect("write");
        file.sync_all().expect("sync");
        let mut summary: Vec<String> = next
            .trace()
            .entries()
            .iter()
            .filter(|e| e.index > at)
            .map(|e| e.to_string())
            .collect();
        summary.push(format!(
            "lock {lock}, {names} names, clock {:?}",
            tearline_sim_fs::Clock::now(&next.clock())
        ));
        let rebooted = next.reboot_with(
            PersistenceModel::NothingUnsynced,
            &next.crash_choice(PersistenceModel::NothingUnsynced),
        );
        (summary, rebooted.fingerprint())
    };
    let setup = |fs: &SimFs| -> SimFs {
        fs.create_dir_all(Path::new("/d")).expect("mkdir");
        fs.sync_dir(Path::new("/")).expect("sync root");
        let other = fs.spawn_process();
        let held = other.open(Path::new("/d/held"), &OpenOptions::create()).expect("held");
        std::mem::forget(held);
        other
    };
    let probe = machine(3);
    let other = setup(&probe);
    probe.record_snapshots(true);
    workload(&probe, &other).expect("probe run");
    let snapshots = probe.take_snapshots();
    let mut pages = PageHashes::default();
    let mut keys = std::collections::BTreeSet::new();
    let mut killed_here = 0;
    for snapshot in &snapshots {
        let at = snapshot.syscall_index();
        let rerun = machine(3);
        let other = setup(&rerun);
        rerun.set_fault_plan(FaultPlan::none().at(at, Fault::ProcessCrash));
        let _ = workload(&rerun, &other);
        if rerun.halted().is_none() {
            continue; // the other process's syscall: the workload went on
        }
        killed_here += 1;
        let derived = snapshot.resume_killed(probe.pid());
        assert_eq!(
            derived.state_key(&mut pages),
            rerun.state_key(&mut pages),
            "the state after a kill at syscall {at}"
        );
        keys.insert(derived.state_key(&mut pages));
        assert_eq!(
            after(&derived, at),
            after(&rerun, at),
            "what follows a kill at syscall {at}"
        );
    }
    assert_eq!(killed_here, 13, "every syscall of the first process is a kill point");
    assert_eq!(keys.len(), 9, "a kill at a stat leaves the state a kill before it does");
}

#[test]
fn a_device_given_room_keys_apart_from_the_same_disk_left_full() {
    let full = machine(5);
    full.write_file(Path::new("/d/f"), b"some bytes").expect("write");
    full.set_capacity(Path::new("/"), full.used_bytes(Path::new("/")));
    let roomy = full.duplicate_machine();
    roomy.set_capacity(Path::new("/"), u64::MAX);
    let mut pages = PageHashes::default();
    assert_ne!(
        full.state_key(&mut pages),
        roomy.state_key(&mut pages),
        "a write fails on one with ENOSPC and not on the other"
    );
    assert!(full.write_file(Path::new("/d/g"), b"more").is_err());
    assert!(roomy.write_file(Path::new("/d/g"), b"more").is_ok());
}

#[test]
fn fdatasync_policy_decides_whether_an_extension_is_durable() {
    let run = |policy| {
        let fs = SimFs::new(SimConfig {
            sync_data: policy,
            ..SimConfig::with_seed(5)
        });
        let path = Path::new("/f");
        let file = fs.open(path, &OpenOptions::create()).expect("create");
        file.write_all_at(b"head", 0).expect("write");
        file.sync_all().expect("fsync");
        fs.sync_dir(Path::new("/")).expect("sync");
        file.write_all_at(b"-tail", 4).expect("extend");
        file.sync_data().expect("fdatasync");
        cut_keeping_nothing(&fs).read_file(path).expect("read")
    };
    assert_eq!(run(SyncDataPolicy::Linux), b"head-tail");
    assert_eq!(run(SyncDataPolicy::SizeNotDurable), b"head");
}

#[test]
fn an_explicit_choice_is_applied_exactly() {
    let fs = unsynced_appends(0, 3);
    let choice = CrashChoice::from_fates(vec![Fate::Lost, Fate::Kept, Fate::Lost]);
    let after = fs.reboot_with(PersistenceModel::AnySubset, &choice);
    assert_eq!(records(&after), vec![0, 2]);
}

#[test]
fn the_clock_advances_per_syscall_and_stamps_mtimes() {
    let fs = machine(0);
    let clock = fs.clock();
    let before = tearline_sim_fs::Clock::now(&clock);
    fs.write_file(Path::new("/d/f"), b"x").expect("write");
    let after = tearline_sim_fs::Clock::now(&clock);
    assert!(after > before);
    let mtime = fs.metadata(Path::new("/d/f")).expect("stat").modified;
    assert!(mtime > before && mtime <= after);
}

/// A file's space comes back when its last name and its last open handle
/// are both gone, and not before: through hard links, several handles, a
/// rename over an open file, and a process's death.
#[test]
fn space_comes_back_when_the_last_name_and_the_last_handle_are_gone() {
    let fs = machine(3);
    let used = |fs: &SimFs| fs.used_bytes(Path::new("/d"));
    fs.write_file(Path::new("/d/a"), &[1; 8000]).expect("write a");
    let first = fs.open(Path::new("/d/a"), &OpenOptions::read_write()).expect("open a");
    fs.hard_link(Path::new("/d/a"), Path::new("/d/b")).expect("link b");
    fs.remove_file(Path::new("/d/a")).expect("unlink a");
    drop(first);
    assert_eq!(used(&fs), 8000, "still named b");

    let second = fs.open(Path::new("/d/b"), &OpenOptions::read_write()).expect("open b");
    let third = fs
        .open(Path::new("/d/b"), &OpenOptions::read_write())
        .expect("open b again");
    fs.remove_file(Path::new("/d/b")).expect("unlink b");
    drop(second);
    assert_eq!(used(&fs), 8000, "a handle still keeps it");
    drop(third);
    assert_eq!(used(&fs), 0, "no name and no handle");

    fs.write_file(Path::new("/d/c"), &[2; 4000]).expect("write c");
    let replaced = fs.open(Path::new("/d/c"), &OpenOptions::read_write()).expect("open c");
    fs.write_file(Path::new("/d/e"), &[3; 1000]).expect("write e");
    fs.rename(Path::new("/d/e"), Path::new("/d/c"))
        .expect("rename e over c");
    assert_eq!(used(&fs), 5000, "the replaced file is kept open");
    drop(replaced);
    assert_eq!(used(&fs), 1000);

    // A process that dies with the last handle on a file no name reaches.
    let other = fs.spawn_process();
    let held = other
        .open(Path::new("/d/c"), &OpenOptions::read_write())
        .expect("open c");
    fs.remove_file(Path::new("/d/c")).expect("unlink c");
    assert_eq!(used(&fs), 1000, "its handle keeps it");
    other.crash_process();
    assert_eq!(used(&fs), 0, "its death closed it");
    drop(held);
}
