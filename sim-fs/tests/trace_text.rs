//! The trace's text form is pinned, line for line, for every syscall kind:
//! traces and their hashes are compared across runs and recorded in reports,
//! so a change to how any entry prints is a change to every recorded hash.

use std::path::Path;
use std::time::Duration;

use tearline_sim_fs::{
    ByteRange, CrashChoice, Fate, Fault, FaultPlan, FileHandleExt, Fs, FsExt, Mount, OpenOptions, PersistenceModel,
    RangeLockMode, SimConfig, SimFs, SyscallArgs, SyscallFilter, SyscallKind,
};

/// One workload that makes every kind of syscall, with and without errors
/// and faults, then loses power and reboots.
fn workload() -> SimFs {
    let fs = SimFs::new(SimConfig {
        mounts: vec![Mount {
            path: "/mnt".into(),
            capacity_bytes: 1 << 20,
        }],
        ..SimConfig::with_seed(7)
    });
    let d = Path::new("/d");
    fs.create_dir(d).expect("mkdir");
    fs.create_dir_all(Path::new("/d/sub/deeper")).expect("mkdir -p");
    let a = fs.open(Path::new("/d/a"), &OpenOptions::create()).expect("create");
    a.write_all_at(b"hello world", 0).expect("write");
    let mut buf = [0u8; 5];
    a.read_at(&mut buf, 6).expect("read");
    a.len().expect("len");
    a.identity().expect("identity");
    a.set_len(4096).expect("grow");
    a.set_len(3).expect("shrink");
    a.sync_data().expect("fdatasync");
    a.sync_all().expect("fsync");
    fs.sync_dir(d).expect("fsync dir");
    a.lock_range(ByteRange::new(0, 100), RangeLockMode::Shared)
        .expect("shared");
    a.lock_range(ByteRange::new(10, 20), RangeLockMode::Exclusive)
        .expect("exclusive");
    let other = fs.spawn_process();
    let a2 = other
        .open(Path::new("/d/a"), &OpenOptions::read_write())
        .expect("open rw");
    assert!(a2.lock_range(ByteRange::new(15, 1), RangeLockMode::Shared).is_err());
    a.lock_range(ByteRange::new(0, 100), RangeLockMode::Unlock)
        .expect("unlock");
    assert!(a.lock_range(ByteRange::new(0, 0), RangeLockMode::Shared).is_err());
    drop(a2);
    fs.rename(Path::new("/d/a"), Path::new("/d/b")).expect("rename");
    assert!(fs.rename(Path::new("/d/b"), Path::new("/mnt/b")).is_err());
    fs.hard_link(Path::new("/d/b"), Path::new("/d/c")).expect("link");
    assert!(fs.hard_link(Path::new("/d"), Path::new("/d/e")).is_err());
    fs.remove_file(Path::new("/d/c")).expect("unlink");
    drop(
        fs.open(Path::new("/d/b"), &OpenOptions::create_truncate())
            .expect("truncate"),
    );
    assert!(fs.open(Path::new("/d/b"), &OpenOptions::create_new()).is_err());
    drop(
        fs.open(Path::new("/d/b"), &OpenOptions::read_only())
            .expect("read only"),
    );
    assert!(fs.open(Path::new("/d/none"), &OpenOptions::read_only()).is_err());
    fs.read_dir(d).expect("readdir");
    fs.metadata(Path::new("/d/b")).expect("stat");
    fs.free_space(Path::new("/mnt")).expect("statvfs");
    let lock = fs.try_lock(Path::new("/d/store.lock")).expect("flock");
    assert!(other.try_lock(Path::new("/d/store.lock")).is_err());
    drop(lock);
    fs.remove_dir(Path::new("/d/sub/deeper")).expect("rmdir");
    fs.set_fault_plan(
        FaultPlan::none()
            .nth(SyscallFilter::ops(&[SyscallKind::Write]), 1, Fault::Errno(libc::ENOSPC))
            .nth(SyscallFilter::ops(&[SyscallKind::Write]), 2, Fault::ShortWrite)
            .nth(
                SyscallFilter::ops(&[SyscallKind::Metadata]),
                1,
                Fault::ClockJumpBack(Duration::from_millis(5)),
            )
            .nth(SyscallFilter::ops(&[SyscallKind::Read]), 1, Fault::ProcessCrash),
    );
    let b = fs.open(Path::new("/d/b"), &OpenOptions::read_write()).expect("open");
    assert!(b.write_at(b"xyz", 0).is_err());
    b.write_at(b"abcdef", 0).expect("short write");
    fs.metadata(Path::new("/d/b")).expect("stat");
    let reader = other.open(Path::new("/d/b"), &OpenOptions::read_only()).expect("open");
    assert!(reader.read_at(&mut buf, 0).is_err());
    fs.write_file(Path::new("/d/late"), b"late").expect("write file");
    fs.power_cut();
    assert!(fs.metadata(d).is_err());
    let after = fs.reboot_with(
        PersistenceModel::AnySubset,
        &CrashChoice::from_fates(vec![Fate::Kept, Fate::Lost, Fate::Kept]),
    );
    after.read_dir(d).expect("readdir after");
    after
}

/// A torn write, a power cut injected at an fsync, and the seeded reboot.
fn torn() -> SimFs {
    let fs = SimFs::new(SimConfig {
        persistence: PersistenceModel::Torn { sector_size: 512 },
        ..SimConfig::with_seed(11)
    });
    fs.set_fault_plan(
        FaultPlan::none()
            .nth(SyscallFilter::ops(&[SyscallKind::Write]), 2, Fault::TornWrite)
            .nth(SyscallFilter::file_syncs(), 1, Fault::PowerCut),
    );
    let f = fs.open(Path::new("/f"), &OpenOptions::create()).expect("create");
    f.write_all_at(&[1; 2048], 0).expect("write");
    assert!(f.sync_all().is_err());
    let again = fs.reboot();
    again.set_fault_plan(FaultPlan::none().nth(SyscallFilter::ops(&[SyscallKind::Write]), 1, Fault::TornWrite));
    let f = again.open(Path::new("/f"), &OpenOptions::create()).expect("create");
    assert!(f.write_at(&[2; 2048], 0).is_err());
    again.reboot()
}

#[test]
fn every_syscall_kind_prints_as_it_always_has() {
    let expected = concat!(
        "#000000 b0 p1 mkdir /d -> ok\n",
        "#000001 b0 p1 stat /d/sub/deeper -> ENOENT\n",
        "#000002 b0 p1 stat /d/sub -> ENOENT\n",
        "#000003 b0 p1 stat /d -> ok\n",
        "#000004 b0 p1 mkdir /d/sub -> ok\n",
        "#000005 b0 p1 mkdir /d/sub/deeper -> ok\n",
        "#000006 b0 p1 open /d/a rw,create -> ok\n",
        "#000007 b0 p1 write /d/a off=0 len=11 -> ok 11\n",
        "#000008 b0 p1 read /d/a off=6 len=5 -> ok 5\n",
        "#000009 b0 p1 fstat /d/a len -> ok 11\n",
        "#000010 b0 p1 fstat /d/a identity -> ok\n",
        "#000011 b0 p1 set_len /d/a len=4096 -> ok\n",
        "#000012 b0 p1 set_len /d/a len=3 -> ok\n",
        "#000013 b0 p1 fdatasync /d/a -> ok\n",
        "#000014 b0 p1 fsync /d/a -> ok\n",
        "#000015 b0 p1 fsync_dir /d -> ok\n",
        "#000016 b0 p1 fcntl_lock /d/a Shared start=0 len=100 -> ok\n",
        "#000017 b0 p1 fcntl_lock /d/a Exclusive start=10 len=20 -> ok\n",
        "#000018 b0 p2 open /d/a rw -> ok\n",
        "#000019 b0 p2 fcntl_lock /d/a Shared start=15 len=1 -> EWOULDBLOCK\n",
        "#000020 b0 p1 fcntl_lock /d/a Unlock start=0 len=100 -> ok\n",
        "#000021 b0 p1 fcntl_lock /d/a Shared start=0 len=0 -> EINVAL\n",
        "#000022 b0 p1 rename /d/a to=/d/b -> ok\n",
        "#000023 b0 p1 rename /d/b to=/mnt/b -> EXDEV\n",
        "#000024 b0 p1 link /d/b link=/d/c -> ok\n",
        "#000025 b0 p1 link /d link=/d/e -> EPERM\n",
        "#000026 b0 p1 unlink /d/c -> ok\n",
        "#000027 b0 p1 open /d/b rw,create,trunc -> ok\n",
        "#000028 b0 p1 open /d/b rw,excl -> EEXIST\n",
        "#000029 b0 p1 open /d/b r -> ok\n",
        "#000030 b0 p1 open /d/none r -> ENOENT\n",
        "#000031 b0 p1 readdir /d -> ok 2\n",
        "#000032 b0 p1 stat /d/b -> ok\n",
        "#000033 b0 p1 statvfs /mnt -> ok 1048576\n",
        "#000034 b0 p1 flock /d/store.lock exclusive -> ok\n",
        "#000035 b0 p2 flock /d/store.lock exclusive -> EWOULDBLOCK\n",
        "#000036 b0 p1 funlock /d/store.lock -> ok\n",
        "#000037 b0 p1 rmdir /d/sub/deeper -> ok\n",
        "#000038 b0 p1 open /d/b rw -> ok\n",
        "#000039 b0 p1 write /d/b off=0 len=3 -> ENOSPC [fault=ENOSPC]\n",
        "#000040 b0 p1 write /d/b off=0 len=6 -> ok 4 [fault=short-write]\n",
        "#000041 b0 p1 stat /d/b -> ok [fault=clock-back-5ms]\n",
        "#000042 b0 p2 open /d/b r -> ok\n",
        "#000043 b0 p2 read /d/b off=0 len=5 -> PROCESS-CRASH [fault=crash]\n",
        "#000044 b0 p1 open /d/late rw,create,trunc -> ok\n",
        "#000045 b0 p1 write /d/late off=0 len=4 -> ok 4\n",
        "#000046 b1 p0 reboot / model=subset survived=2/3 choice=K-K -> ok\n",
        "#000046 b1 p3 readdir /d -> ok 2\n",
    );
    assert_eq!(workload().trace().to_text(), expected);
}

#[test]
fn torn_writes_power_cuts_and_reboots_print_as_they_always_have() {
    let expected = concat!(
        "#000000 b0 p1 open /f rw,create -> ok\n",
        "#000001 b0 p1 write /f off=0 len=2048 -> ok 2048\n",
        "#000002 b0 p1 fsync /f -> POWER-CUT [fault=power-cut]\n",
        "#000003 b1 p0 reboot / model=torn survived=0/2 choice=-- -> ok\n",
        "#000003 b1 p2 open /f rw,create -> ok\n",
        "#000004 b1 p2 write /f off=0 len=2048 -> POWER-CUT [fault=torn-write]\n",
        "#000005 b2 p0 reboot / model=torn survived=2/2 choice=KK -> ok\n",
    );
    assert_eq!(torn().trace().to_text(), expected);
}

#[test]
fn the_arguments_are_typed() {
    let trace = workload().trace();
    let at = |index: u64| {
        trace
            .entries()
            .iter()
            .find(|e| e.index == index)
            .map(|e| e.args.clone())
            .expect("entry")
    };
    assert_eq!(at(7), SyscallArgs::Write { offset: 0, len: 11 });
    assert_eq!(
        at(11),
        SyscallArgs::SetLen {
            len: 4096,
            old_len: Some(11)
        }
    );
    assert!(!at(11).truncates(), "growing is not truncating");
    assert_eq!(
        at(12),
        SyscallArgs::SetLen {
            len: 3,
            old_len: Some(4096)
        }
    );
    assert!(at(12).truncates(), "shrinking is truncating");
    assert_eq!(at(22).rename_target(), Some("/d/b"));
    assert_eq!(at(23).rename_target(), Some("/mnt/b"));
    assert_eq!(
        at(24),
        SyscallArgs::HardLink {
            link: "/d/c".to_string()
        }
    );
    assert_eq!(
        at(27),
        SyscallArgs::Open {
            options: OpenOptions::create_truncate(),
            existing_len: Some(3)
        }
    );
    assert!(at(27).truncates(), "O_TRUNC of a non-empty file");
    assert!(!at(29).truncates(), "a read-only open");
    assert!(!at(44).truncates(), "O_TRUNC of a new file cuts nothing");
    assert_eq!(
        at(17),
        SyscallArgs::LockRange {
            mode: RangeLockMode::Exclusive,
            range: ByteRange::new(10, 20)
        }
    );
    assert_eq!(at(34), SyscallArgs::ExclusiveLock);
    assert_eq!(at(36), SyscallArgs::None);
    assert_eq!(at(9), SyscallArgs::FstatLen);
    assert_eq!(at(10), SyscallArgs::FstatIdentity);
    let reboot = trace
        .entries()
        .iter()
        .find(|e| e.op == SyscallKind::Reboot)
        .expect("a reboot");
    assert_eq!(
        reboot.args,
        SyscallArgs::Reboot {
            model: PersistenceModel::AnySubset,
            choice: CrashChoice::from_fates(vec![Fate::Kept, Fate::Lost, Fate::Kept])
        }
    );
}
