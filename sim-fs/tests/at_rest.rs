//! Linux's failed-fsync rule and the faults at rest: a failed sync drops the
//! dirty data (and the retry "succeeds"), latent sector errors, bit rot, bit
//! flips, misdirected writes, and the extended regions a power cut zeroes.

use std::path::Path;
use std::time::Duration;

use tearline_sim_fs::{
    Clock, Fault, FaultPlan, FileHandleExt, Fs, FsExt, FsyncFailure, OpenOptions, Outcome, PersistenceModel, SimConfig,
    SimFs, SyscallFilter, SyscallKind,
};

const PATH: &str = "/d/f";

/// A machine with `/d/f` holding `old`, durably (data and name).
fn machine_with(config: SimConfig, old: &[u8]) -> SimFs {
    let fs = SimFs::new(config);
    fs.create_dir_all_durable(Path::new("/d")).expect("mkdir");
    fs.write_file_atomic(Path::new(PATH), old).expect("write");
    fs
}

/// What is left of `/d/f` after a power cut that keeps nothing unsynced.
fn after_power_cut(fs: &SimFs) -> Vec<u8> {
    fs.power_cut();
    let model = PersistenceModel::NothingUnsynced;
    let rebooted = fs.reboot_with(model, &fs.crash_choice(model));
    rebooted.read_file(Path::new(PATH)).expect("the file survives")
}

/// Fails the next fsync or fdatasync of a file with `EIO`.
fn fail_next_sync(fs: &SimFs) {
    fs.set_fault_plan(FaultPlan::none().nth(SyscallFilter::file_syncs(), 1, Fault::EIO));
}

#[test]
fn a_failed_fsync_drops_the_dirty_data_and_the_retry_succeeds_without_it() {
    for sync_data in [false, true] {
        let fs = machine_with(SimConfig::with_seed(1), b"old-old-old");
        let file = fs.open(Path::new(PATH), &OpenOptions::read_write()).expect("open");
        file.write_all_at(b"NEW", 0).expect("write");
        fail_next_sync(&fs);
        let sync = |f: &dyn tearline_sim_fs::FileHandle| if sync_data { f.sync_data() } else { f.sync_all() };
        let err = sync(file.as_ref()).expect_err("injected");
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
        // Reported once: the retry succeeds, and the page cache still shows the write.
        sync(file.as_ref()).expect("the retry returns success");
        assert_eq!(fs.read_file(Path::new(PATH)).expect("read"), b"NEW-old-old");
        assert_eq!(
            after_power_cut(&fs),
            b"old-old-old",
            "the dropped write reached the disk (fdatasync: {sync_data})"
        );
    }
}

#[test]
fn after_a_failed_fsync_only_what_is_written_again_becomes_durable() {
    let fs = machine_with(SimConfig::with_seed(2), b"aaaa-bbbb-cccc");
    let file = fs.open(Path::new(PATH), &OpenOptions::read_write()).expect("open");
    file.write_all_at(b"AAAA", 0).expect("write");
    fail_next_sync(&fs);
    file.sync_all().expect_err("injected");
    file.write_all_at(b"CCCC", 10).expect("write");
    file.sync_all().expect("fsync");
    assert_eq!(after_power_cut(&fs), b"aaaa-bbbb-CCCC");
}

#[test]
fn the_store_that_rewrites_after_a_failed_fsync_keeps_its_data() {
    let fs = machine_with(SimConfig::with_seed(3), b"old");
    let file = fs.open(Path::new(PATH), &OpenOptions::read_write()).expect("open");
    file.write_all_at(b"new", 0).expect("write");
    fail_next_sync(&fs);
    file.sync_all().expect_err("injected");
    // What a correct store does: write its own copy again, then sync.
    file.write_all_at(b"new", 0).expect("rewrite");
    file.sync_all().expect("fsync");
    assert_eq!(after_power_cut(&fs), b"new");
}

#[test]
fn keeps_dirty_data_is_the_named_alternative() {
    let config = SimConfig {
        fsync_failure: FsyncFailure::KeepsDirtyData,
        ..SimConfig::with_seed(4)
    };
    let fs = machine_with(config, b"old");
    let file = fs.open(Path::new(PATH), &OpenOptions::read_write()).expect("open");
    file.write_all_at(b"new", 0).expect("write");
    fail_next_sync(&fs);
    file.sync_all().expect_err("injected");
    file.sync_all().expect("retry");
    assert_eq!(after_power_cut(&fs), b"new");
    assert_eq!(FsyncFailure::default(), FsyncFailure::DropsDirtyData);
}

/// A 2 KiB file of four sectors filled with 1, 2, 3, 4, durable.
fn four_sectors(seed: u64) -> SimFs {
    let data: Vec<u8> = (1..=4u8).flat_map(|b| [b; 512]).collect();
    machine_with(SimConfig::with_seed(seed), &data)
}

#[test]
fn a_latent_sector_error_fails_every_read_of_it_across_reboots_until_rewritten() {
    let fs = four_sectors(5);
    let file = fs.open(Path::new(PATH), &OpenOptions::read_write()).expect("open");
    fs.set_fault_plan(FaultPlan::none().at(fs.syscall_count(), Fault::LatentSector));
    let mut sector = [0u8; 512];
    let err = file.read_at(&mut sector, 1024).expect_err("the sector went bad");
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    let entry = fs.trace().entries().last().cloned().expect("traced");
    assert_eq!(
        (entry.op, entry.outcome, entry.fault),
        (SyscallKind::Read, Outcome::Errno(libc::EIO), Some(Fault::LatentSector))
    );
    assert!(file.read_at(&mut sector, 1024).is_err(), "the error is persistent");
    file.read_at(&mut sector, 0).expect("other sectors read");
    drop(file);
    fs.power_cut();
    let rebooted = fs.reboot();
    let err = rebooted
        .read_file(Path::new(PATH))
        .expect_err("still bad after a reboot");
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    let file = rebooted
        .open(Path::new(PATH), &OpenOptions::read_write())
        .expect("open");
    file.write_all_at(&[9u8; 512], 1024).expect("rewrite the sector");
    let data = rebooted.read_file(Path::new(PATH)).expect("healed by the write");
    assert_eq!(data[1024], 9);
}

#[test]
fn bit_rot_is_on_the_medium_and_a_bit_flip_is_on_the_wire() {
    let original: Vec<u8> = (1..=4u8).flat_map(|b| [b; 512]).collect();
    for (fault, persistent) in [(Fault::BitRot, true), (Fault::BitFlip, false)] {
        let fs = four_sectors(6);
        let file = fs.open(Path::new(PATH), &OpenOptions::read_only()).expect("open");
        fs.set_fault_plan(FaultPlan::none().at(fs.syscall_count(), fault));
        let mut first = vec![0u8; original.len()];
        file.read_exact_at_most(&mut first, 0).expect("read");
        let differing: Vec<usize> = (0..first.len()).filter(|&i| first[i] != original[i]).collect();
        assert_eq!(differing.len(), 1, "{fault}: one byte differs");
        assert_eq!(
            (first[differing[0]] ^ original[differing[0]]).count_ones(),
            1,
            "{fault}: one bit"
        );
        drop(file);
        let again = fs.read_file(Path::new(PATH)).expect("read again");
        assert_eq!(again == first, persistent, "{fault}: persistence");
        fs.power_cut();
        let rebooted = fs.reboot().read_file(Path::new(PATH)).expect("read after reboot");
        assert_eq!(rebooted == first, persistent, "{fault}: after a reboot");
    }
}

#[test]
fn a_misdirected_write_lands_elsewhere_and_says_it_succeeded() {
    let original: Vec<u8> = (1..=4u8).flat_map(|b| [b; 512]).collect();
    let mut landed = std::collections::BTreeSet::new();
    for seed in 0..20 {
        let fs = four_sectors(seed);
        let file = fs.open(Path::new(PATH), &OpenOptions::read_write()).expect("open");
        fs.set_fault_plan(FaultPlan::none().at(fs.syscall_count(), Fault::MisdirectedWrite));
        assert_eq!(file.write_at(&[0xEE; 512], 512).expect("reports success"), 512);
        let data = fs.read_file(Path::new(PATH)).expect("read");
        assert_eq!(&data[512..1024], &original[512..1024], "the meant sector is unchanged");
        let at = (0..data.len() / 512)
            .find(|&s| data[s * 512..(s + 1) * 512].iter().all(|&b| b == 0xEE))
            .expect("the write landed somewhere");
        assert_ne!(at, 1);
        landed.insert(at);
    }
    assert!(landed.len() > 1, "always the same wrong place: {landed:?}");
}

#[test]
fn zeroed_keeps_a_rename_without_fsync_and_loses_its_data() {
    let fs = SimFs::new(SimConfig::with_seed(7));
    fs.create_dir_all_durable(Path::new("/d")).expect("mkdir");
    fs.write_file_atomic(Path::new(PATH), b"old contents").expect("write");
    // The classic replace without fsync: write a temp file, rename it over.
    fs.write_file(Path::new("/d/f.tmp"), b"new contents!").expect("write");
    fs.rename(Path::new("/d/f.tmp"), Path::new(PATH)).expect("rename");
    fs.power_cut();
    let model = PersistenceModel::Zeroed;
    let rebooted = fs.reboot_with(model, &fs.crash_choice(model));
    assert_eq!(rebooted.read_file(Path::new(PATH)).expect("read"), vec![0u8; 13]);
}

#[test]
fn the_clock_steps_forward_and_back_at_a_syscall() {
    for (fault, forward) in [
        (Fault::ClockJumpForward(Duration::from_secs(86_400)), true),
        (Fault::ClockJumpBack(Duration::from_secs(86_400)), false),
    ] {
        let fs = machine_with(SimConfig::with_seed(8), b"x");
        let before = fs.clock().now();
        fs.set_fault_plan(FaultPlan::none().at(fs.syscall_count(), fault));
        fs.metadata(Path::new(PATH)).expect("the call proceeds");
        let after = fs.clock().now();
        assert_eq!(after > before + Duration::from_secs(3600), forward, "{fault}");
        assert_eq!(after + Duration::from_secs(3600) < before, !forward, "{fault}");
    }
}

#[test]
fn a_sector_damaged_at_rest_reads_as_eio_until_rewritten() {
    let fs = four_sectors(9);
    fs.damage_sector(Path::new(PATH), 1500).expect("damage");
    let file = fs.open(Path::new(PATH), &OpenOptions::read_write()).expect("open");
    let mut sector = [0u8; 512];
    file.read_at(&mut sector, 0).expect("sector 0 reads");
    assert_eq!(
        file.read_at(&mut sector, 1024).expect_err("sector 2").raw_os_error(),
        Some(libc::EIO)
    );
    file.write_all_at(&[5u8; 512], 1024).expect("rewrite");
    file.read_at(&mut sector, 1024).expect("healed");
    assert_eq!(
        fs.damage_sector(Path::new("/d/none"), 0).expect_err("no file").kind(),
        std::io::ErrorKind::NotFound
    );
}
