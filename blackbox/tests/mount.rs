//! `SimMount`: real programs (sh, python3, SQLite through python3) doing I/O
//! on the simulated filesystem through FUSE.
//!
//! Every test SKIPS, with the reason printed on stderr, where FUSE is not
//! available (`tearline_blackbox::fuse_available`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use tearline_blackbox::{SimMount, fuse_or_skip};
use tearline_sim_fs::{
    CrashChoice, Fault, FaultPlan, Fs, FsExt, HaltKind, Outcome, PersistenceModel, SimConfig, SimFs, SyscallFilter,
    SyscallKind,
};

/// A fresh machine with a durable, empty `/store`.
fn machine(seed: u64) -> SimFs {
    let fs = SimFs::new(SimConfig::with_seed(seed));
    fs.create_dir(Path::new("/store")).expect("mkdir /store");
    fs.sync_dir(Path::new("/")).expect("sync /");
    fs
}

fn mount(fs: &SimFs, dir: &Path) -> SimMount {
    SimMount::mount(Arc::new(fs.clone()), "/store".into(), dir).expect("mount")
}

/// Runs `script` with `sh -c` in `dir`; panics with its output if it fails.
fn sh(dir: &Path, script: &str) -> Output {
    let output = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .env("PYTHONHASHSEED", "0")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run sh");
    assert!(
        output.status.success(),
        "`{script}` failed: {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn python(dir: &Path, code: &str) -> Output {
    sh(dir, &format!("python3 -c '{code}'"))
}

/// Writes one durable file (file and directory fsynced) and one volatile one.
const DURABLE_AND_VOLATILE: &str = "
import os
fd = os.open(\"durable.txt\", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, b\"kept\")
os.fsync(fd)
os.close(fd)
d = os.open(\".\", os.O_RDONLY)
os.fsync(d)
os.close(d)
with open(\"volatile.txt\", \"w\") as f:
    f.write(\"lost\")
";

#[test]
fn shell_writes_land_in_the_simulator() {
    if !fuse_or_skip("shell_writes_land_in_the_simulator") {
        return;
    }
    let fs = machine(0);
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = mount(&fs, dir.path());
    sh(
        dir.path(),
        "printf hello > a.txt && mkdir sub && mv a.txt sub/b.txt && echo x > gone && rm gone && ls sub",
    );
    assert_eq!(fs.read_file(Path::new("/store/sub/b.txt")).expect("read"), b"hello");
    assert!(!fs.exists(Path::new("/store/gone")).expect("exists"));
    // A rename of a directory moves what the mount knows under it too.
    sh(
        dir.path(),
        "mv sub moved && cat moved/b.txt > copy.txt && rmdir empty 2>/dev/null; mkdir empty && rmdir empty",
    );
    assert_eq!(fs.read_file(Path::new("/store/copy.txt")).expect("read"), b"hello");
    assert!(!fs.exists(Path::new("/store/sub")).expect("exists"));
    let listing = String::from_utf8(sh(dir.path(), "ls").stdout).expect("utf-8");
    assert_eq!(listing, "copy.txt\nmoved\n");
    assert_eq!(mnt.halted(), None);
    drop(mnt);
    let text = fs.trace().to_text();
    assert!(text.contains("rename /store/sub to=/store/moved -> ok"), "{text}");
}

#[test]
fn a_symbolic_link_in_the_simulator_is_one_on_the_mount() {
    if !fuse_or_skip("a_symbolic_link_in_the_simulator_is_one_on_the_mount") {
        return;
    }
    let fs = machine(0);
    fs.write_file(Path::new("/store/real.md"), b"real").expect("write");
    fs.plant_symlink(Path::new("/store/link.md"), Path::new("real.md"))
        .expect("a link");
    fs.plant_symlink(Path::new("/store/loop.md"), Path::new("loop.md"))
        .expect("a loop");
    let dir = tempfile::tempdir().expect("tempdir");
    let _mnt = mount(&fs, dir.path());
    // The kernel sees links (`test -L`), reads their targets and follows
    // them; a loop is no regular file (`test -f` follows it, and fails).
    let out = sh(
        dir.path(),
        "test -L link.md && readlink link.md && cat link.md && echo && test -L loop.md && ! test -f loop.md && echo loop",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "real.md\nreal\nloop\n");
}

#[test]
fn a_power_cut_keeps_fsynced_data_and_drops_the_rest() {
    if !fuse_or_skip("a_power_cut_keeps_fsynced_data_and_drops_the_rest") {
        return;
    }
    let fs = machine(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = mount(&fs, dir.path());
    python(dir.path(), DURABLE_AND_VOLATILE);
    assert_eq!(fs.read_file(Path::new("/store/volatile.txt")).expect("read"), b"lost");
    mnt.unmount().expect("unmount");
    fs.power_cut();
    let pending = fs.snapshot().pending_ops();
    let after = fs.reboot_with(PersistenceModel::NothingUnsynced, &CrashChoice::nothing(pending));
    assert_eq!(after.read_file(Path::new("/store/durable.txt")).expect("read"), b"kept");
    assert!(!after.exists(Path::new("/store/volatile.txt")).expect("exists"));
    let trace = after.trace().to_text();
    assert!(trace.contains("fsync /store/durable.txt"), "{trace}");
    assert!(trace.contains("fsync_dir /store -> ok"), "{trace}");
}

#[test]
fn sqlite_through_python_runs_on_the_simulator() {
    if !fuse_or_skip("sqlite_through_python_runs_on_the_simulator") {
        return;
    }
    let fs = machine(2);
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = mount(&fs, dir.path());
    let out = python(
        dir.path(),
        "
import sqlite3
c = sqlite3.connect(\"t.db\")
c.execute(\"create table t(x)\")
c.execute(\"insert into t values (42)\")
c.commit()
print(c.execute(\"select x from t\").fetchone()[0])
print(c.execute(\"pragma integrity_check\").fetchone()[0])
c.close()
",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "42\nok\n");
    let db = fs
        .read_file(Path::new("/store/t.db"))
        .expect("the database is in the simulator");
    assert!(db.starts_with(b"SQLite format 3\0"));
    assert!(!fs.exists(Path::new("/store/t.db-journal")).expect("exists"));
    drop(mnt);
    let trace = fs.trace();
    let locks = trace
        .entries()
        .iter()
        .filter(|e| e.op == SyscallKind::LockRange && e.path == "/store/t.db")
        .count();
    assert!(locks > 0, "SQLite's fcntl locks reach the simulator");
}

#[test]
fn a_power_cut_mid_program_halts_the_mount_and_answers_eio() {
    if !fuse_or_skip("a_power_cut_mid_program_halts_the_mount_and_answers_eio") {
        return;
    }
    let fs = machine(3);
    fs.set_fault_plan(FaultPlan::none().nth(SyscallFilter::file_syncs(), 1, Fault::PowerCut));
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = mount(&fs, dir.path());
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import os\nfd = os.open('f', os.O_WRONLY | os.O_CREAT, 0o644)\nos.write(fd, b'x')\ntry:\n    \
             os.fsync(fd)\nexcept OSError as e:\n    print(e.errno)\n",
        )
        .current_dir(dir.path())
        .output()
        .expect("python3");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), libc::EIO.to_string());
    assert_eq!(mnt.halted().map(|h| h.kind), Some(HaltKind::PowerCut));
    // Everything answers EIO from now on, without reaching the simulator.
    let calls = fs.syscall_count();
    assert!(std::fs::metadata(dir.path().join("f")).is_err());
    assert_eq!(fs.syscall_count(), calls);
}

/// A python workload: files, fsyncs, a rename, a directory, SQLite.
const WORKLOAD: &str = "
import os, sqlite3
os.mkdir(\"d\")
for i in range(3):
    with open(\"d/f%d\" % i, \"wb\") as f:
        f.write(bytes([i + 1]) * 3000)
        f.flush()
        os.fsync(f.fileno())
os.rename(\"d/f0\", \"d/g0\")
os.unlink(\"d/f1\")
d = os.open(\"d\", os.O_RDONLY)
os.fsync(d)
os.close(d)
c = sqlite3.connect(\"t.db\")
c.execute(\"create table t(x)\")
with c:
    c.executemany(\"insert into t values (?)\", [(i,) for i in range(50)])
c.close()
print(sorted(os.listdir(\"d\")))
";

fn run_workload() -> String {
    let fs = machine(7);
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = mount(&fs, dir.path());
    python(dir.path(), WORKLOAD);
    mnt.unmount().expect("unmount");
    fs.trace().to_text()
}

#[test]
fn the_same_program_gives_the_same_trace_byte_for_byte() {
    if !fuse_or_skip("the_same_program_gives_the_same_trace_byte_for_byte") {
        return;
    }
    let first = run_workload();
    let second = run_workload();
    if first != second {
        let diff: Vec<String> = first
            .lines()
            .zip(second.lines())
            .filter(|(a, b)| a != b)
            .take(10)
            .map(|(a, b)| format!("- {a}\n+ {b}"))
            .collect();
        panic!(
            "traces differ ({} vs {} lines); first differences:\n{}",
            first.lines().count(),
            second.lines().count(),
            diff.join("\n")
        );
    }
    assert!(first.contains("rename /store/d/f0 to=/store/d/g0"), "{first}");
}

/// Starts python3 in `dir` holding an exclusive `lockf` on `LOCK` until its
/// stdin closes.
fn hold_lock(dir: &Path) -> std::process::Child {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(
            "import fcntl, sys\nf = open('LOCK', 'a+')\nfcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n\
             print('locked', flush=True)\nsys.stdin.read()\n",
        )
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line, "locked\n");
    child
}

const TRY_LOCK: &str = "
import errno, fcntl
f = open(\"LOCK\", \"a+\")
try:
    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print(\"locked\")
except OSError as e:
    print(errno.errorcode[e.errno])
";

#[test]
fn a_second_process_cannot_take_a_held_lock() {
    if !fuse_or_skip("a_second_process_cannot_take_a_held_lock") {
        return;
    }
    let first = machine(4);
    let second = first.spawn_process();
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let mnt_a = mount(&first, dir_a.path());
    let mnt_b = mount(&second, dir_b.path());
    let mut holder = hold_lock(dir_a.path());
    let refused = python(dir_b.path(), TRY_LOCK);
    assert_eq!(String::from_utf8_lossy(&refused.stdout), "EAGAIN\n");
    drop(holder.stdin.take());
    assert!(holder.wait().expect("wait").success());
    // The holder's exit released the lock (the kernel's RELEASE may come a
    // moment after the exit: retry briefly).
    let mut got = String::new();
    for _ in 0..50 {
        got = String::from_utf8_lossy(&python(dir_b.path(), TRY_LOCK).stdout).into_owned();
        if got == "locked\n" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(got, "locked\n");
    drop((mnt_a, mnt_b));
    let trace = first.trace();
    let lock_calls: Vec<(u32, Outcome)> = trace
        .entries()
        .iter()
        .filter(|e| e.op == SyscallKind::Lock && e.path == "/store/LOCK")
        .map(|e| (e.pid, e.outcome.clone()))
        .collect();
    assert_eq!(lock_calls.first(), Some(&(first.pid(), Outcome::Ok)), "{lock_calls:?}");
    assert!(lock_calls.contains(&(second.pid(), Outcome::Ok)), "{lock_calls:?}");
    assert!(
        trace
            .entries()
            .iter()
            .any(|e| e.op == SyscallKind::Unlock && e.path == "/store/LOCK" && e.pid == first.pid()),
        "the holder's unlock is traced"
    );
}

/// A python process that takes and drops locks on command, one line each
/// (`open ID PATH`, `close ID`, `lockf ID ex|sh|un START LEN wait|nowait`,
/// `flock ID ex|sh|un wait|nowait`), answering `ok` or the errno's name.
const LOCKER: &str = r#"
import errno, fcntl, os, sys
fds = {}
kinds = {"ex": fcntl.LOCK_EX, "sh": fcntl.LOCK_SH, "un": fcntl.LOCK_UN}
print("ready", flush=True)
for line in sys.stdin:
    w = line.split()
    try:
        if w[0] == "open":
            fds[w[1]] = os.open(w[2], os.O_RDWR | os.O_CREAT, 0o644)
        elif w[0] == "close":
            os.close(fds.pop(w[1]))
        elif w[0] == "lockf":
            cmd = kinds[w[2]] | (fcntl.LOCK_NB if w[5] == "nowait" and w[2] != "un" else 0)
            fcntl.lockf(fds[w[1]], cmd, int(w[4]), int(w[3]))
        elif w[0] == "flock":
            cmd = kinds[w[2]] | (fcntl.LOCK_NB if w[3] == "nowait" and w[2] != "un" else 0)
            fcntl.flock(fds[w[1]], cmd)
        print("ok", flush=True)
    except OSError as e:
        # EDEADLK and EDEADLOCK are one number on Linux: print the first.
        print("EDEADLK" if e.errno == errno.EDEADLK else errno.errorcode[e.errno], flush=True)
"#;

/// A running [`LOCKER`].
struct Locker {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    answers: std::sync::mpsc::Receiver<String>,
}

impl Locker {
    fn start(dir: &Path) -> Locker {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(LOCKER)
            .current_dir(dir)
            .env("PYTHONSAFEPATH", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let stdout = child.stdout.take().expect("stdout");
        let (send, answers) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        let mut locker = Locker {
            stdin: child.stdin.take(),
            child,
            answers,
        };
        assert_eq!(locker.answer(), "ready");
        locker
    }

    /// Sends a command without waiting for its answer.
    fn send(&mut self, command: &str) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{command}").expect("send");
        stdin.flush().expect("flush");
    }

    /// The next answer (waiting up to 20 s: a hang fails the test).
    fn answer(&mut self) -> String {
        self.answer_within(std::time::Duration::from_secs(20))
            .expect("an answer within 20 s")
    }

    fn answer_within(&mut self, wait: std::time::Duration) -> Option<String> {
        self.answers.recv_timeout(wait).ok()
    }

    fn ask(&mut self, command: &str) -> String {
        self.send(command);
        self.answer()
    }

    /// Closes stdin (the script ends, closing every descriptor) and waits.
    fn finish(mut self) {
        drop(self.stdin.take());
        assert!(self.child.wait().expect("wait").success());
    }
}

/// Two SQLite connections to one file in one process, in `mode`: both
/// write, both read, with statements of one open while the other works (so
/// SQLite's per-process lock sharing takes a lock through one descriptor
/// and drops or upgrades it through the other, as POSIX locks allow).
fn two_connections(mode: &str) -> String {
    format!(
        r#"
import sqlite3
a = sqlite3.connect("t.db", timeout=2, isolation_level=None)
b = sqlite3.connect("t.db", timeout=2, isolation_level=None)
print(a.execute("pragma journal_mode={mode}").fetchone()[0])
a.execute("create table t(x)")
for i in range(3):
    a.execute("insert into t values (?)", (i,))
    b.execute("insert into t values (?)", (10 + i,))
    ra = a.execute("select x from t order by x")
    ra.fetchone()
    rb = b.execute("select x from t order by x")
    rb.fetchone()
    ra.fetchall()
    rb.fetchall()
    b.execute("begin immediate")
    b.execute("insert into t values (?)", (20 + i,))
    b.execute("commit")
print(a.execute("select count(*) from t").fetchone()[0], b.execute("select count(*) from t").fetchone()[0])
print(a.execute("pragma integrity_check").fetchone()[0])
a.close()
b.close()
"#
    )
}

#[test]
fn two_sqlite_connections_in_one_process_do_not_lock_each_other_out() {
    if !fuse_or_skip("two_sqlite_connections_in_one_process_do_not_lock_each_other_out") {
        return;
    }
    for (seed, mode, said) in [(20, "delete", "delete"), (21, "wal", "wal")] {
        let fs = machine(seed);
        let dir = tempfile::tempdir().expect("tempdir");
        let mnt = mount(&fs, dir.path());
        let out = Command::new("python3")
            .arg("-c")
            .arg(two_connections(mode))
            .current_dir(dir.path())
            .env("PYTHONSAFEPATH", "1")
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{mode}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{said}\n9 9\nok\n"),
            "{mode}"
        );
        drop(mnt);
    }
}

#[test]
fn a_blocking_lock_waits_for_the_holder_to_let_go() {
    if !fuse_or_skip("a_blocking_lock_waits_for_the_holder_to_let_go") {
        return;
    }
    let fs = machine(22);
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = mount(&fs, dir.path());
    for (take, drop_it) in [
        ("lockf f ex 0 0 wait", "lockf f un 0 0 wait"),
        ("flock f ex wait", "flock f un wait"),
    ] {
        let (mut first, mut second) = (Locker::start(dir.path()), Locker::start(dir.path()));
        assert_eq!(first.ask("open f LOCK"), "ok");
        assert_eq!(second.ask("open f LOCK"), "ok");
        assert_eq!(first.ask(take), "ok", "{take}");
        second.send(take);
        assert_eq!(
            second.answer_within(std::time::Duration::from_millis(300)),
            None,
            "{take}: the second process waits while the first holds the lock"
        );
        assert_eq!(first.ask(drop_it), "ok");
        assert_eq!(second.answer(), "ok", "{take}: granted once the first let go");
        // Now the first one waits, until the second process exits.
        first.send(take);
        assert_eq!(first.answer_within(std::time::Duration::from_millis(100)), None);
        second.finish();
        assert_eq!(first.answer(), "ok", "{take}: the holder's exit lets the waiter in");
        first.finish();
    }
    drop(mnt);
}

#[test]
fn posix_locks_go_with_any_close_of_the_process_and_flock_locks_with_their_open_file() {
    if !fuse_or_skip("posix_locks_go_with_any_close_of_the_process_and_flock_locks_with_their_open_file") {
        return;
    }
    let fs = machine(23);
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = mount(&fs, dir.path());
    let (mut holder, mut other) = (Locker::start(dir.path()), Locker::start(dir.path()));
    for id in ["p1", "p2", "f1", "f2"] {
        let file = if id.starts_with('p') { "POSIX" } else { "FLOCK" };
        assert_eq!(holder.ask(&format!("open {id} {file}")), "ok");
    }
    assert_eq!(other.ask("open p POSIX"), "ok");
    assert_eq!(other.ask("open f FLOCK"), "ok");
    // One owner, two descriptors: a lock through one is the process's; a
    // second lock through the other descriptor upgrades, never conflicts.
    assert_eq!(holder.ask("lockf p1 sh 0 0 nowait"), "ok");
    assert_eq!(holder.ask("lockf p2 ex 0 0 nowait"), "ok");
    assert_eq!(holder.ask("flock f1 ex nowait"), "ok");
    assert_eq!(other.ask("lockf p ex 0 0 nowait"), "EAGAIN");
    assert_eq!(other.ask("flock f ex nowait"), "EAGAIN");
    // Closing the OTHER descriptor of each file: the process's POSIX lock
    // goes (the kernel's close rule); the flock, held by the open file f1,
    // stays.
    assert_eq!(holder.ask("close p1"), "ok");
    assert_eq!(holder.ask("close f2"), "ok");
    assert_eq!(other.ask("lockf p ex 0 0 nowait"), "ok");
    assert_eq!(other.ask("flock f ex nowait"), "EAGAIN");
    assert_eq!(holder.ask("close f1"), "ok");
    assert_eq!(other.ask("flock f ex nowait"), "ok");
    holder.finish();
    other.finish();
    drop(mnt);
}

#[test]
fn a_deadlock_between_two_waiting_processes_is_answered_edeadlk() {
    if !fuse_or_skip("a_deadlock_between_two_waiting_processes_is_answered_edeadlk") {
        return;
    }
    let fs = machine(24);
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = mount(&fs, dir.path());
    let (mut a, mut b) = (Locker::start(dir.path()), Locker::start(dir.path()));
    assert_eq!(a.ask("open f DB"), "ok");
    assert_eq!(b.ask("open f DB"), "ok");
    assert_eq!(a.ask("lockf f ex 0 1 nowait"), "ok");
    assert_eq!(b.ask("lockf f ex 1 1 nowait"), "ok");
    a.send("lockf f ex 1 1 wait");
    assert_eq!(
        a.answer_within(std::time::Duration::from_millis(200)),
        None,
        "a waits for b"
    );
    // b asking for a's byte would wait for a, who waits for b.
    assert_eq!(b.ask("lockf f ex 0 1 wait"), "EDEADLK");
    assert_eq!(b.ask("lockf f un 1 1 nowait"), "ok");
    assert_eq!(a.answer(), "ok", "a gets b's byte once b lets go");
    a.finish();
    b.finish();
    drop(mnt);
}
