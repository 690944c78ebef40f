//! The simulator checked against reality: every test body here runs once on
//! `SimFs` and once on a real temporary directory through `RealFs`, with no
//! fault injected, and must pass on both.

use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};

use tearline_sim_fs::{
    ByteRange, FileHandleExt, FileKind, Fs, FsExt, OpenOptions, PathError, RangeLockMode, RealFs, SimConfig, SimFs,
};

/// Makes a symbolic link (`link`, `target`), as a user would.
type MakeSymlink = Box<dyn Fn(&Path, &Path) -> io::Result<()>>;

/// A filesystem under test and a fresh, empty directory on it. `other` is a
/// second process on the same machine (for RealFs, the same process: its
/// locks are per open file, so they exclude each other all the same).
struct Env {
    fs: Box<dyn Fs>,
    other: Box<dyn Fs>,
    root: PathBuf,
    /// Makes `link` a symbolic link to `target`, as a user would (the store
    /// never does: it is not part of `Fs`).
    symlink: MakeSymlink,
    _tmp: Option<tempfile::TempDir>,
}

impl Env {
    fn sim() -> Env {
        let fs = SimFs::new(SimConfig::with_seed(1));
        fs.create_dir(Path::new("/work")).expect("mkdir /work");
        let user = fs.clone();
        Env {
            other: Box::new(fs.spawn_process()),
            fs: Box::new(fs),
            root: PathBuf::from("/work"),
            symlink: Box::new(move |link, target| user.plant_symlink(link, target)),
            _tmp: None,
        }
    }

    fn real() -> Env {
        let tmp = tempfile::tempdir().expect("tempdir");
        Env {
            fs: Box::new(RealFs),
            other: Box::new(RealFs),
            root: tmp.path().to_path_buf(),
            symlink: Box::new(|link, target| std::os::unix::fs::symlink(target, link)),
            _tmp: Some(tmp),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn on_simfs() {
                    super::$name(&super::Env::sim());
                }
                #[test]
                fn on_realfs() {
                    super::$name(&super::Env::real());
                }
            }
        )*
    };
}

conformance!(
    reads_see_writes,
    set_len_truncates_and_zero_extends,
    rename_replaces_the_target,
    hard_links_share_one_file,
    missing_and_existing_paths_give_the_kernels_errors,
    directories_follow_the_kernels_rules,
    read_dir_is_sorted_and_typed,
    an_unlinked_file_stays_readable_through_open_handles,
    whole_file_locks_exclude_other_holders,
    a_lock_follows_the_inode_so_an_unlinked_lock_file_lets_another_in,
    a_directory_locks_and_cannot_be_removed_or_replaced_while_it_holds_files,
    range_locks_follow_ofd_semantics,
    conveniences_compose_the_primitives,
    read_dir_or_empty_lists_a_missing_directory_as_empty,
    names_are_bytes_and_are_listed_lossily,
    symbolic_links_are_followed_listed_as_other_and_unlinked_themselves,
    remove_file_if_exists_reports_what_it_removed,
    remove_tree_removes_a_tree_and_accepts_a_missing_one,
    remove_tree_durable_removes_a_tree_and_accepts_a_missing_one,
    sync_dir_named_names_the_directory_and_keeps_the_kind,
    a_private_directory_is_created_exclusively,
);

fn a_private_directory_is_created_exclusively(env: &Env) {
    let dir = env.path("private");
    env.fs.create_private_dir(&dir).expect("mkdir");
    let again = env.fs.create_private_dir(&dir).expect_err("it exists");
    assert_eq!(again.raw_os_error(), Some(libc::EEXIST));
    env.fs.write_file(&dir.join("f"), b"x").expect("write in it");
    assert_eq!(env.fs.read_file(&dir.join("f")).expect("read"), b"x");
    // On a real disk, only its owner may enter it.
    if env._tmp.is_some() {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "mode {mode:o}");
    }
}

fn reads_see_writes(env: &Env) {
    let path = env.path("a");
    let file = env.fs.open(&path, &OpenOptions::create()).expect("create");
    file.write_all_at(b"hello world", 0).expect("write");
    file.write_all_at(b"HELLO", 0).expect("overwrite");
    file.write_all_at(b"!", 20).expect("write past the end");
    assert_eq!(file.len().expect("len"), 21);
    let mut buf = [0xFFu8; 32];
    let n = file.read_at(&mut buf, 0).expect("read");
    assert_eq!(n, 21);
    assert_eq!(&buf[..11], b"HELLO world");
    assert_eq!(&buf[11..20], &[0u8; 9], "a gap reads as zeros");
    assert_eq!(buf[20], b'!');
    assert_eq!(file.read_at(&mut buf, 21).expect("read at end"), 0);
    assert_eq!(file.read_at(&mut buf, 1000).expect("read past end"), 0);
    let meta = env.fs.metadata(&path).expect("stat");
    assert_eq!((meta.kind, meta.len), (FileKind::File, 21));
    let reader = env.fs.open(&path, &OpenOptions::read_only()).expect("open read-only");
    let err = reader.write_at(b"x", 0).expect_err("write on a read-only handle");
    assert_eq!(err.raw_os_error(), Some(libc::EBADF));
    assert!(env.fs.free_space(&env.root).expect("statvfs") > 0);
}

fn set_len_truncates_and_zero_extends(env: &Env) {
    let path = env.path("f");
    env.fs.write_file(&path, &[7u8; 5000]).expect("write");
    let file = env.fs.open(&path, &OpenOptions::read_write()).expect("open");
    file.set_len(3).expect("truncate");
    file.set_len(5000).expect("extend");
    let data = env.fs.read_file(&path).expect("read");
    assert_eq!(&data[..3], &[7u8; 3]);
    assert!(
        data[3..].iter().all(|&b| b == 0),
        "bytes after a truncate-then-extend read as zeros"
    );
    drop(file);
    env.fs
        .open(&path, &OpenOptions::create_truncate())
        .expect("open with O_TRUNC");
    assert_eq!(env.fs.metadata(&path).expect("stat").len, 0);
}

fn rename_replaces_the_target(env: &Env) {
    let (a, b) = (env.path("a"), env.path("b"));
    env.fs.write_file(&a, b"new").expect("write a");
    env.fs.write_file(&b, b"old").expect("write b");
    env.fs.rename(&a, &b).expect("rename over");
    assert_eq!(env.fs.read_file(&b).expect("read b"), b"new");
    assert_eq!(env.fs.metadata(&a).expect_err("a is gone").kind(), ErrorKind::NotFound);
    let err = env.fs.rename(&a, &b).expect_err("rename of a missing file");
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    env.fs.rename(&b, &b).expect("rename onto itself is a no-op");
    assert_eq!(env.fs.read_file(&b).expect("read b"), b"new");
}

fn hard_links_share_one_file(env: &Env) {
    let (a, b) = (env.path("a"), env.path("b"));
    env.fs.write_file(&a, b"one").expect("write");
    env.fs.hard_link(&a, &b).expect("link");
    assert_eq!(env.fs.metadata(&a).expect("stat").links, 2);
    env.fs
        .open(&b, &OpenOptions::read_write())
        .expect("open b")
        .write_all_at(b"two", 0)
        .expect("write through b");
    assert_eq!(env.fs.read_file(&a).expect("read a"), b"two");
    assert_eq!(
        env.fs
            .hard_link(&a, &b)
            .expect_err("link onto an existing name")
            .raw_os_error(),
        Some(libc::EEXIST)
    );
    env.fs.remove_file(&a).expect("unlink a");
    assert_eq!(env.fs.read_file(&b).expect("b survives"), b"two");
    assert_eq!(env.fs.metadata(&b).expect("stat").links, 1);
    let dir = env.path("d");
    env.fs.create_dir(&dir).expect("mkdir");
    assert_eq!(
        env.fs
            .hard_link(&dir, &env.path("d2"))
            .expect_err("link a directory")
            .raw_os_error(),
        Some(libc::EPERM)
    );
}

fn missing_and_existing_paths_give_the_kernels_errors(env: &Env) {
    let missing = env.path("missing");
    let code = |r: std::io::Result<()>| r.expect_err("should fail").raw_os_error();
    assert_eq!(
        code(env.fs.open(&missing, &OpenOptions::read_only()).map(drop)),
        Some(libc::ENOENT)
    );
    assert_eq!(
        code(env.fs.open(&env.path("no/such/file"), &OpenOptions::create()).map(drop)),
        Some(libc::ENOENT)
    );
    assert_eq!(code(env.fs.remove_file(&missing)), Some(libc::ENOENT));
    assert_eq!(code(env.fs.metadata(&missing).map(drop)), Some(libc::ENOENT));
    let existing = env.path("e");
    env.fs.write_file(&existing, b"x").expect("write");
    assert_eq!(
        code(env.fs.open(&existing, &OpenOptions::create_new()).map(drop)),
        Some(libc::EEXIST)
    );
    assert_eq!(code(env.fs.create_dir(&existing)), Some(libc::EEXIST));
    assert_eq!(
        code(env.fs.open(&existing.join("child"), &OpenOptions::create()).map(drop)),
        Some(libc::ENOTDIR)
    );
}

fn directories_follow_the_kernels_rules(env: &Env) {
    let (dir, sub) = (env.path("d"), env.path("d/sub"));
    env.fs.create_dir(&dir).expect("mkdir");
    env.fs.create_dir(&sub).expect("mkdir sub");
    let code = |r: std::io::Result<()>| r.expect_err("should fail").raw_os_error();
    assert_eq!(code(env.fs.remove_dir(&dir)), Some(libc::ENOTEMPTY));
    assert_eq!(code(env.fs.remove_file(&sub)), Some(libc::EISDIR));
    assert_eq!(
        code(env.fs.open(&sub, &OpenOptions::read_write()).map(drop)),
        Some(libc::EISDIR)
    );
    let file = env.path("d/f");
    env.fs.write_file(&file, b"x").expect("write");
    assert_eq!(code(env.fs.remove_dir(&file)), Some(libc::ENOTDIR));
    assert_eq!(code(env.fs.rename(&file, &sub)), Some(libc::EISDIR));
    let other = env.path("other");
    env.fs.create_dir(&other).expect("mkdir other");
    assert_eq!(code(env.fs.rename(&other, &file)), Some(libc::ENOTDIR));
    assert_eq!(code(env.fs.rename(&other, &dir)), Some(libc::ENOTEMPTY));
    env.fs.rename(&other, &env.path("d/moved")).expect("move a directory");
    env.fs.remove_dir(&env.path("d/moved")).expect("rmdir");
    env.fs.remove_file(&file).expect("unlink");
    env.fs.remove_dir(&sub).expect("rmdir sub");
    env.fs.remove_dir(&dir).expect("rmdir d");
    assert!(!env.fs.exists(&dir).expect("exists"));
}

fn read_dir_is_sorted_and_typed(env: &Env) {
    for name in ["zeta", "alpha", "Mid", "beta"] {
        env.fs.write_file(&env.path(name), b"").expect("write");
    }
    env.fs.create_dir(&env.path("dir")).expect("mkdir");
    let listing: Vec<(String, FileKind)> = env
        .fs
        .read_dir(&env.root)
        .expect("readdir")
        .into_iter()
        .map(|e| (e.name, e.kind))
        .collect();
    let expected = [
        ("Mid", FileKind::File),
        ("alpha", FileKind::File),
        ("beta", FileKind::File),
        ("dir", FileKind::Dir),
        ("zeta", FileKind::File),
    ];
    let expected: Vec<(String, FileKind)> = expected.iter().map(|(n, k)| (n.to_string(), *k)).collect();
    assert_eq!(listing, expected);
}

fn an_unlinked_file_stays_readable_through_open_handles(env: &Env) {
    let path = env.path("f");
    env.fs.write_file(&path, b"still here").expect("write");
    let file = env.fs.open(&path, &OpenOptions::read_write()).expect("open");
    env.fs.remove_file(&path).expect("unlink");
    assert!(!env.fs.exists(&path).expect("exists"));
    file.write_all_at(b"STILL", 0).expect("write after unlink");
    let mut buf = [0u8; 10];
    assert_eq!(file.read_at(&mut buf, 0).expect("read after unlink"), 10);
    assert_eq!(&buf, b"STILL here");
}

fn whole_file_locks_exclude_other_holders(env: &Env) {
    let path = env.path("store.lock");
    let guard = env.fs.try_lock(&path).expect("first lock");
    assert_eq!(guard.path(), path);
    let err = env.other.try_lock(&path).expect_err("second holder");
    assert_eq!(err.kind(), ErrorKind::WouldBlock);
    assert!(
        env.fs.try_lock(&path).is_err(),
        "a second lock in the same process conflicts too"
    );
    drop(guard);
    let again = env.other.try_lock(&path).expect("lock after release");
    drop(again);
}

fn a_lock_follows_the_inode_so_an_unlinked_lock_file_lets_another_in(env: &Env) {
    let path = env.path("store.lock");
    let held = env.fs.try_lock(&path).expect("first lock");
    env.other.remove_file(&path).expect("unlink the held lock file");
    let stolen = env.other.try_lock(&path).expect("a new file at the path is a new lock");
    // Replaced by rename: the same, a new inode at the path.
    let replacement = env.path("store.lock.new");
    env.fs.write_file(&replacement, b"").expect("write");
    env.fs.rename(&replacement, &path).expect("rename over the held file");
    let again = env.fs.try_lock(&path).expect("the replacement is unlocked");
    drop((held, stolen, again));
}

fn a_directory_locks_and_cannot_be_removed_or_replaced_while_it_holds_files(env: &Env) {
    let dir = env.path("store");
    env.fs.create_dir(&dir).expect("mkdir");
    env.fs.write_file(&dir.join("CURRENT"), b"x").expect("write");
    let guard = env.fs.try_lock(&dir).expect("lock the directory");
    assert_eq!(guard.path(), dir);
    assert_eq!(
        env.fs.metadata(&dir).expect("stat").kind,
        FileKind::Dir,
        "still a directory"
    );
    let busy = env.other.try_lock(&dir).expect_err("second holder");
    assert_eq!(busy.kind(), ErrorKind::WouldBlock);
    // Neither removing it nor renaming another directory over it works.
    let err = env.other.remove_dir(&dir).expect_err("rmdir of a store");
    assert_eq!(err.raw_os_error(), Some(libc::ENOTEMPTY));
    let other_dir = env.path("store.new");
    env.other.create_dir(&other_dir).expect("mkdir");
    env.other.write_file(&other_dir.join("f"), b"y").expect("write");
    let err = env.other.rename(&other_dir, &dir).expect_err("rename over a store");
    assert!(
        matches!(err.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)),
        "{err}"
    );
    let err = env.other.try_lock(&dir).expect_err("still held");
    assert_eq!(err.kind(), ErrorKind::WouldBlock);
    drop(guard);
    let again = env.other.try_lock(&dir).expect("lock after release");
    drop(again);
}

fn range_locks_follow_ofd_semantics(env: &Env) {
    let path = env.path("db");
    env.fs.write_file(&path, b"").expect("create");
    let a = env.fs.open(&path, &OpenOptions::read_write()).expect("open a");
    let b = env.other.open(&path, &OpenOptions::read_write()).expect("open b");
    let range = ByteRange::new(100, 10);
    a.lock_range(range, RangeLockMode::Shared).expect("a shared");
    b.lock_range(range, RangeLockMode::Shared).expect("b shared");
    let busy = b
        .lock_range(range, RangeLockMode::Exclusive)
        .expect_err("upgrade while a shares");
    assert_eq!(busy.kind(), ErrorKind::WouldBlock);
    a.lock_range(range, RangeLockMode::Unlock).expect("a unlocks");
    b.lock_range(range, RangeLockMode::Exclusive).expect("b upgrades");
    assert!(a.lock_range(ByteRange::new(105, 1), RangeLockMode::Shared).is_err());
    a.lock_range(ByteRange::new(110, 5), RangeLockMode::Exclusive)
        .expect("an adjacent range is free");
    // Unlocking the middle of b's range frees only the middle.
    b.lock_range(ByteRange::new(103, 2), RangeLockMode::Unlock)
        .expect("partial unlock");
    a.lock_range(ByteRange::new(103, 2), RangeLockMode::Shared)
        .expect("freed middle");
    assert!(a.lock_range(ByteRange::new(102, 1), RangeLockMode::Shared).is_err());
    drop(b);
    a.lock_range(range, RangeLockMode::Exclusive)
        .expect("closing b released its locks");
}

fn conveniences_compose_the_primitives(env: &Env) {
    let deep = env.path("x/y/z");
    env.fs.create_dir_all(&deep).expect("mkdir -p");
    env.fs.create_dir_all(&deep).expect("mkdir -p again is fine");
    assert!(env.fs.metadata(&deep).expect("stat").is_dir());
    let file = deep.join("f");
    env.fs.write_file_atomic(&file, b"first").expect("atomic write");
    env.fs.write_file_atomic(&file, b"second").expect("atomic replace");
    assert_eq!(env.fs.read_file(&file).expect("read"), b"second");
    let names: Vec<String> = env
        .fs
        .read_dir(&deep)
        .expect("readdir")
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["f"], "no temp file is left behind");
}

/// A tree `t/{a, sub/{b, deeper/c}, empty/}` under the root.
fn make_tree(env: &Env) -> PathBuf {
    let tree = env.path("t");
    env.fs.create_dir_all(&tree.join("sub/deeper")).expect("mkdir -p");
    env.fs.create_dir(&tree.join("empty")).expect("mkdir");
    for file in ["a", "sub/b", "sub/deeper/c"] {
        env.fs.write_file(&tree.join(file), file.as_bytes()).expect("write");
    }
    tree
}

/// A Linux name is bytes: one that is not UTF-8 (a Latin-1 `é`) opens by
/// its bytes, is listed with U+FFFD where its bytes are not UTF-8, and the
/// listed name does not open it.
fn names_are_bytes_and_are_listed_lossily(env: &Env) {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = env.path("names");
    env.fs.create_dir(&dir).expect("mkdir");
    let raw = dir.join(OsStr::from_bytes(b"caf\xe9.md"));
    env.fs.write_file(&raw, b"latin-1").expect("a name that is not UTF-8");
    env.fs.write_file(&dir.join("plain.md"), b"utf-8").expect("write");
    assert_eq!(env.fs.read_file(&raw).expect("opens by its bytes"), b"latin-1");
    let listed = env.fs.read_dir(&dir).expect("read_dir");
    let names: Vec<&str> = listed.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["caf\u{FFFD}.md", "plain.md"]);
    let err = env
        .fs
        .read_file(&dir.join("caf\u{FFFD}.md"))
        .expect_err("the listed name is another name");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let moved = dir.join(OsStr::from_bytes(b"\xff\xfe"));
    env.fs.rename(&raw, &moved).expect("rename by bytes");
    assert_eq!(env.fs.read_file(&moved).expect("read"), b"latin-1");
    env.fs.remove_file(&moved).expect("unlink by bytes");
    let names: Vec<String> = env
        .fs
        .read_dir(&dir)
        .expect("read_dir")
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["plain.md"]);
}

/// A symbolic link in a tree a store reads: opening one reads what it
/// names (from its directory, or absolute; through a linked directory too),
/// a dangling one is `ENOENT`, a loop `ELOOP`; it is listed and described
/// as neither file nor directory, and unlink and rename act on the link.
fn symbolic_links_are_followed_listed_as_other_and_unlinked_themselves(env: &Env) {
    let dir = env.path("links");
    env.fs.create_dir(&dir).expect("mkdir");
    env.fs.create_dir(&dir.join("inner")).expect("mkdir");
    env.fs.write_file(&dir.join("real.md"), b"real").expect("write");
    env.fs.write_file(&dir.join("inner/deep.md"), b"deep").expect("write");
    let link = |name: &str, target: &Path| (env.symlink)(&dir.join(name), target).expect("symlink");
    link("relative.md", Path::new("real.md"));
    link("absolute.md", &dir.join("real.md"));
    link("dangling.md", Path::new("missing.md"));
    link("up.md", Path::new("inner/../real.md"));
    link("sub", Path::new("inner"));
    link("loop-a", Path::new("loop-b"));
    link("loop-b", Path::new("loop-a"));
    for name in ["relative.md", "absolute.md", "up.md"] {
        assert_eq!(env.fs.read_file(&dir.join(name)).expect(name), b"real", "{name}");
    }
    assert_eq!(
        env.fs
            .read_file(&dir.join("sub/deep.md"))
            .expect("through a linked directory"),
        b"deep"
    );
    assert_eq!(
        env.fs.read_file(&dir.join("dangling.md")).expect_err("dangling").kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        env.fs
            .read_file(&dir.join("loop-a"))
            .expect_err("a loop")
            .raw_os_error(),
        Some(libc::ELOOP)
    );
    let listed: Vec<(String, FileKind)> = env
        .fs
        .read_dir(&dir)
        .expect("read_dir")
        .into_iter()
        .map(|e| (e.name, e.kind))
        .collect();
    let kind = |name: &str| listed.iter().find(|(n, _)| n == name).map(|(_, k)| *k);
    assert_eq!(kind("real.md"), Some(FileKind::File));
    assert_eq!(kind("inner"), Some(FileKind::Dir));
    for name in ["relative.md", "absolute.md", "dangling.md", "sub", "loop-a"] {
        assert_eq!(kind(name), Some(FileKind::Other), "{name}");
    }
    assert_eq!(
        env.fs.metadata(&dir.join("relative.md")).expect("lstat").kind,
        FileKind::Other
    );
    env.fs
        .rename(&dir.join("relative.md"), &dir.join("moved.md"))
        .expect("rename the link");
    assert_eq!(env.fs.read_file(&dir.join("moved.md")).expect("read"), b"real");
    env.fs.remove_file(&dir.join("moved.md")).expect("unlink the link");
    assert_eq!(env.fs.read_file(&dir.join("real.md")).expect("the file stays"), b"real");
}

fn read_dir_or_empty_lists_a_missing_directory_as_empty(env: &Env) {
    let missing = env.path("missing");
    assert!(env.fs.read_dir_or_empty(&missing).expect("missing").is_empty());
    assert!(
        env.fs
            .read_dir_or_empty(&missing.join("deeper"))
            .expect("missing ancestor")
            .is_empty()
    );
    let tree = make_tree(env);
    let names: Vec<String> = env
        .fs
        .read_dir_or_empty(&tree)
        .expect("ls")
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["a", "empty", "sub"]);
    let not_a_dir = env.fs.read_dir_or_empty(&tree.join("a")).expect_err("a file");
    assert_eq!(not_a_dir.kind(), ErrorKind::NotADirectory);
}

fn remove_file_if_exists_reports_what_it_removed(env: &Env) {
    let file = env.path("f");
    env.fs.write_file(&file, b"x").expect("write");
    assert!(env.fs.remove_file_if_exists(&file).expect("remove"));
    assert!(!env.fs.exists(&file).expect("exists"));
    assert!(!env.fs.remove_file_if_exists(&file).expect("again: nothing to remove"));
    assert!(
        !env.fs
            .remove_file_if_exists(&env.path("no/such/dir"))
            .expect("missing parent")
    );
    let dir = env.path("d");
    env.fs.create_dir(&dir).expect("mkdir");
    let is_dir = env.fs.remove_file_if_exists(&dir).expect_err("a directory");
    assert_eq!(is_dir.kind(), ErrorKind::IsADirectory);
    assert!(env.fs.exists(&dir).expect("exists"), "the directory stays");
}

fn remove_tree_removes_a_tree_and_accepts_a_missing_one(env: &Env) {
    let tree = make_tree(env);
    let not_a_dir = env.fs.remove_tree(&tree.join("a")).expect_err("a file");
    assert_eq!(not_a_dir.kind(), ErrorKind::NotADirectory);
    assert!(env.fs.exists(&tree.join("a")).expect("exists"), "a file is not removed");
    assert!(env.fs.remove_tree(&tree).expect("rm -r"));
    assert!(!env.fs.exists(&tree).expect("exists"));
    assert!(!env.fs.remove_tree(&tree).expect("again: nothing to remove"));
    let empty = env.path("empty");
    env.fs.create_dir(&empty).expect("mkdir");
    assert!(env.fs.remove_tree(&empty).expect("an empty directory"));
    assert!(env.fs.read_dir(&env.root).expect("ls").is_empty());
}

fn remove_tree_durable_removes_a_tree_and_accepts_a_missing_one(env: &Env) {
    let tree = make_tree(env);
    let not_a_dir = env.fs.remove_tree_durable(&tree.join("a")).expect_err("a file");
    assert_eq!(not_a_dir.kind(), ErrorKind::NotADirectory);
    assert!(env.fs.remove_tree_durable(&tree).expect("rm -r"));
    assert!(!env.fs.exists(&tree).expect("exists"));
    assert!(!env.fs.remove_tree_durable(&tree).expect("again: nothing to remove"));
    assert!(env.fs.read_dir(&env.root).expect("ls").is_empty());
}

fn sync_dir_named_names_the_directory_and_keeps_the_kind(env: &Env) {
    env.fs.sync_dir_named(&env.root).expect("sync an existing directory");
    let missing = env.path("missing");
    let error = env.fs.sync_dir_named(&missing).expect_err("a missing directory");
    assert_eq!(error.kind(), ErrorKind::NotFound);
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("syncing {}: ", missing.display())),
        "{message}"
    );
    let inner = PathError::unwrap_from(error).expect("a PathError inside");
    assert_eq!(inner.source.raw_os_error(), Some(libc_enoent()));
    assert_eq!(inner.doing, format!("syncing {}", missing.display()));
    // An error without a PathError comes back unchanged.
    let plain = io::Error::from_raw_os_error(libc_enoent());
    let back = PathError::unwrap_from(plain).expect_err("no PathError inside");
    assert_eq!(back.raw_os_error(), Some(libc_enoent()));
}

/// The kernel's `ENOENT`, as the simulator reports it too.
fn libc_enoent() -> i32 {
    tearline_sim_fs::errno::enoent().raw_os_error().expect("an OS error")
}
