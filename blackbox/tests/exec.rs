//! `ExecStoreFactory`: a tiny Python store speaking the protocol, driven
//! through the `StoreFactory` contract on the simulated filesystem; children
//! that break the protocol fail cleanly and never hang.
//!
//! Every test SKIPS, with the reason printed on stderr, where FUSE is not
//! available (`tearline_blackbox::fuse_available`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tearline_blackbox::{ExecError, ExecOptions, ExecStoreFactory, fuse_or_skip, is_protocol_break};
use tearline_model::{Access, Env, Operation, SchemaStamp, StoreFactory, content_hash};
use tearline_sim_fs::{
    CrashChoice, Fault, FaultPlan, Fs, FsExt, Outcome, PersistenceModel, SimConfig, SimFs, SyscallFilter, SyscallKind,
};

/// The smallest store that keeps the protocol: one file per document under
/// `docs/`, written and fsynced (file and directory) before the answer; an
/// exclusive `lockf` on `LOCK` for a writable open. Its observation's
/// `integrity_detail` is its process id. `RESET` (set before this text)
/// says how it takes `reset`: `none` (not reusable), `proper` (closes
/// everything), `leaky` (says it did, and keeps a file open), `refusing`
/// (says it is reusable, and answers `reset` with a failure).
const TINY_STORE: &str = r#"
import fcntl, hashlib, json, os, sys
def say(answer):
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
caps = ["remove", "import", "full_rebuild", "incremental_rebuild", "reconcile", "vectors",
        "schema_version", "exclusive_lock", "source_files"]
say({"hello": "tearline/1", "name": "tiny", "capabilities": {c: c == "exclusive_lock" for c in caps},
     "source_dir": None, "lock_file": "LOCK", "protected": ["docs/*"], "reusable": RESET != "none"})
lock = None
for line in sys.stdin:
    request = json.loads(line)
    kind = request["request"]
    try:
        if kind == "init":
            os.mkdir("docs")
            fsync_dir(".")
            say({"ok": True})
        elif kind == "open":
            if request["access"] == "writable":
                lock = open("LOCK", "a+")
                fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            say({"ok": True})
        elif kind == "apply" and request["operation"]["op"] == "add":
            op = request["operation"]
            fd = os.open("docs/" + op["name"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, op["content"].encode())
            os.fsync(fd)
            os.close(fd)
            fsync_dir("docs")
            say({"ok": True})
        elif kind == "observe":
            indexed = {n: hashlib.sha256(open("docs/" + n, "rb").read()).hexdigest()
                       for n in sorted(os.listdir("docs"))}
            say({"ok": True, "observation": {"indexed": indexed, "sources": {}, "integrity_ok": True,
                 "integrity_detail": str(os.getpid()), "orphan_vectors": 0, "missing_vectors": 0, "pending_work": 0,
                 "leftover_files": [], "backups": 0, "schema": None}})
        elif kind in ("remote-fault", "stamp-schema"):
            say({"ok": True, "supported": False})
        elif kind == "close":
            say({"ok": True})
            break
        elif kind == "reset" and RESET == "proper":
            if lock is not None:
                lock.close()
                lock = None
            say({"ok": True})
        elif kind == "reset" and RESET == "leaky":
            lock = None
            kept = open(".keep", "a")  # never closed
            say({"ok": True})
        else:
            say({"ok": False, "error": "unsupported: " + kind})
    except OSError as e:
        say({"ok": False, "error": str(e)})
"#;

/// Scripts written to a temp dir that lives as long as the test.
struct Scripts {
    dir: tempfile::TempDir,
}

impl Scripts {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        for reset in ["none", "proper", "leaky", "refusing"] {
            std::fs::write(
                dir.path().join(format!("store-{reset}.py")),
                format!("RESET = {reset:?}\n{TINY_STORE}"),
            )
            .expect("write the store");
        }
        std::fs::write(
            dir.path().join("hello.json"),
            r#"{"hello":"tearline/1","name":"broken","capabilities":{"remove":false,"import":false,"full_rebuild":false,"incremental_rebuild":false,"reconcile":false,"vectors":false,"schema_version":false,"exclusive_lock":false,"source_files":false},"source_dir":null,"lock_file":null,"protected":[]}
"#,
        )
        .expect("write hello.json");
        Scripts { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn store_command(&self) -> String {
        self.store_resetting("none")
    }

    /// The tiny store taking `reset` as `reset` says (see [`TINY_STORE`]).
    fn store_resetting(&self, reset: &str) -> String {
        format!(
            "PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1 exec python3 {}",
            self.path(&format!("store-{reset}.py")).display()
        )
    }

    /// Says hello, then runs `then` (shell) on the first request.
    fn hello_then(&self, then: &str) -> String {
        format!("cat {}; read request; {then}", self.path("hello.json").display())
    }
}

fn machine(seed: u64) -> SimFs {
    let fs = SimFs::new(SimConfig::with_seed(seed));
    fs.create_dir(Path::new("/store")).expect("mkdir /store");
    fs.sync_dir(Path::new("/")).expect("sync /");
    fs
}

fn env_for(fs: &SimFs) -> Env {
    Env::new(Arc::new(fs.clone()), Arc::new(fs.clock()), "/store")
}

fn add(name: &str, content: &str) -> Operation {
    Operation::Add {
        name: name.to_string(),
        content: content.to_string(),
    }
}

#[test]
fn the_hello_is_read_without_a_mount_and_paths_are_made_absolute() {
    let scripts = Scripts::new();
    let factory = ExecStoreFactory::new(&scripts.store_command(), ExecOptions::default()).expect("hello");
    assert_eq!(factory.name(), "tiny");
    assert!(factory.capabilities().exclusive_lock);
    assert!(!factory.capabilities().remove);
    // Its store is other processes: the matrix never forks to branch cases.
    assert!(!factory.forks_with_this_process());
    assert!(
        factory.without_reuse().is_none(),
        "not reusable: nothing to compare with"
    );
    let env = env_for(&machine(0));
    assert_eq!(factory.lock_file(&env), Some(PathBuf::from("/store/LOCK")));
    assert_eq!(factory.protected_paths(&env), vec!["/store/docs/*".to_string()]);
    assert_eq!(factory.source_dir(&env), None);
}

#[test]
fn an_add_is_observed_and_survives_a_reopen() {
    if !fuse_or_skip("an_add_is_observed_and_survives_a_reopen") {
        return;
    }
    let scripts = Scripts::new();
    let factory = ExecStoreFactory::new(&scripts.store_command(), ExecOptions::default()).expect("hello");
    let fs = machine(1);
    let env = env_for(&fs);
    factory.init(&env).expect("init");
    assert!(!factory.stamp_schema(&env, SchemaStamp::Newer).expect("stamp"));

    let started = Instant::now();
    let mut store = factory.open(&env, Access::Writable).expect("open");
    let open_ms = started.elapsed().as_millis();
    let before = fs.syscall_count();
    let started = Instant::now();
    store.apply(&add("a.md", "text")).expect("add");
    let add_us = started.elapsed().as_micros();
    let add_syscalls = fs.syscall_count() - before;
    let observation = store.observe().expect("observe");
    assert_eq!(observation.indexed.get("a.md"), Some(&content_hash(b"text")));
    assert!(!store.set_remote_fault(tearline_model::RemoteFault::Unavailable));
    drop(store);
    let _ = writeln!(
        std::io::stderr(),
        "measured: open (mount + spawn + hello + open) {open_ms} ms; add {add_us} us, {add_syscalls} simulated syscalls"
    );
    assert_eq!(fs.read_file(Path::new("/store/docs/a.md")).expect("read"), b"text");

    let store = factory.open(&env, Access::ReadOnly).expect("reopen");
    assert_eq!(store.observe().expect("observe").indexed.len(), 1);
    drop(store);

    let trace = fs.trace();
    let lock = trace
        .entries()
        .iter()
        .find(|e| e.op == SyscallKind::Lock && e.path == "/store/LOCK")
        .expect("the writable open's lockf reached the simulator");
    assert_eq!(lock.outcome, Outcome::Ok);
    assert!(
        trace
            .entries()
            .iter()
            .any(|e| e.op == SyscallKind::Unlock && e.path == "/store/LOCK"),
        "closing released it"
    );
}

/// Inits a new machine, adds `name` in a writable open, and returns the
/// machine and the process id of the child that served the open.
fn one_add_on_a_new_machine(factory: &ExecStoreFactory, seed: u64, name: &str) -> (SimFs, String) {
    let fs = machine(seed);
    factory.init(&env_for(&fs)).expect("init");
    let mut store = factory.open(&env_for(&fs), Access::Writable).expect("open");
    store.apply(&add(name, name)).expect("add");
    let observation = store.observe().expect("observe");
    let names: Vec<&String> = observation.indexed.keys().collect();
    assert_eq!(names, [name], "the child sees this machine's store only");
    (fs, observation.integrity_detail)
}

#[test]
fn a_reusable_child_serves_the_next_opens_on_other_machines() {
    if !fuse_or_skip("a_reusable_child_serves_the_next_opens_on_other_machines") {
        return;
    }
    let scripts = Scripts::new();
    let command = scripts.store_resetting("proper");
    let factory = ExecStoreFactory::new(&command, ExecOptions::default()).expect("hello");
    let (first, pid) = one_add_on_a_new_machine(&factory, 10, "a.md");
    let (second, again) = one_add_on_a_new_machine(&factory, 11, "b.md");
    assert_eq!(pid, again, "one process served both machines");
    assert_eq!(first.read_file(Path::new("/store/docs/a.md")).expect("a.md"), b"a.md");
    assert!(!first.exists(Path::new("/store/docs/b.md")).expect("exists"));
    assert!(!second.exists(Path::new("/store/docs/a.md")).expect("exists"));
    assert!(
        first
            .trace()
            .entries()
            .iter()
            .any(|e| e.op == SyscallKind::Unlock && e.path == "/store/LOCK"),
        "the reset released the first machine's lock"
    );
    // A second process alive at once is another child, reused in turn.
    let store = factory.open(&env_for(&second), Access::ReadOnly).expect("reader");
    let other = factory
        .open(&env_for(&second.spawn_process()), Access::ReadOnly)
        .expect("a second reader");
    assert_ne!(
        store.observe().expect("observe").integrity_detail,
        other.observe().expect("observe").integrity_detail
    );

    let fresh = factory.fresh_children();
    let (_, pid) = one_add_on_a_new_machine(&fresh, 12, "c.md");
    let (_, again) = one_add_on_a_new_machine(&fresh, 13, "d.md");
    assert_ne!(pid, again, "without reuse, a child per open");
}

#[test]
fn a_child_that_keeps_a_file_open_or_refuses_the_reset_is_not_reused() {
    if !fuse_or_skip("a_child_that_keeps_a_file_open_or_refuses_the_reset_is_not_reused") {
        return;
    }
    let scripts = Scripts::new();
    for reset in ["leaky", "refusing", "none"] {
        let factory = ExecStoreFactory::new(&scripts.store_resetting(reset), ExecOptions::default()).expect("hello");
        let started = Instant::now();
        let (_, pid) = one_add_on_a_new_machine(&factory, 20, "a.md");
        let (_, again) = one_add_on_a_new_machine(&factory, 21, "b.md");
        assert_ne!(pid, again, "{reset}: a new child for the second machine");
        assert!(started.elapsed() < Duration::from_secs(10), "{reset}: no hang");
    }
}

#[test]
fn a_second_writer_is_refused_cleanly() {
    if !fuse_or_skip("a_second_writer_is_refused_cleanly") {
        return;
    }
    let scripts = Scripts::new();
    let factory = ExecStoreFactory::new(&scripts.store_command(), ExecOptions::default()).expect("hello");
    let fs = machine(2);
    factory.init(&env_for(&fs)).expect("init");
    let first = factory.open(&env_for(&fs), Access::Writable).expect("open");
    let other = fs.spawn_process();
    let err = factory
        .open(&env_for(&other), Access::Writable)
        .err()
        .expect("the second writer is refused");
    assert!(!is_protocol_break(&err), "{err}");
    assert!(err.message.contains("Resource temporarily unavailable"), "{err}");
    drop(first);
}

#[test]
fn a_power_cut_during_an_add_kills_the_child_and_the_acknowledged_add_survives() {
    if !fuse_or_skip("a_power_cut_during_an_add_kills_the_child_and_the_acknowledged_add_survives") {
        return;
    }
    let scripts = Scripts::new();
    let factory = ExecStoreFactory::new(&scripts.store_command(), ExecOptions::default()).expect("hello");
    let fs = machine(3);
    factory.init(&env_for(&fs)).expect("init");
    let mut store = factory.open(&env_for(&fs), Access::Writable).expect("open");
    store.apply(&add("a.md", "first")).expect("add");
    // The second add's file fsync cuts the power.
    fs.set_fault_plan(FaultPlan::none().nth(SyscallFilter::file_syncs(), 1, Fault::PowerCut));
    let started = Instant::now();
    let err = store.apply(&add("b.md", "second")).expect_err("the power is cut");
    assert!(!is_protocol_break(&err), "{err}");
    assert!(err.message.contains("lost power"), "{err}");
    drop(store);
    assert!(started.elapsed() < Duration::from_secs(10), "no hang");

    let pending = fs.snapshot().pending_ops();
    let after = fs.reboot_with(PersistenceModel::NothingUnsynced, &CrashChoice::nothing(pending));
    let store = factory
        .open(&env_for(&after), Access::Writable)
        .expect("reopen after the cut");
    let observation = store.observe().expect("observe");
    assert_eq!(observation.indexed.get("a.md"), Some(&content_hash(b"first")));
    assert_eq!(
        observation.indexed.get("b.md"),
        None,
        "b.md's name was never made durable"
    );
}

#[test]
fn a_hello_that_is_not_json_is_an_error_naming_it() {
    let scripts = Scripts::new();
    let err = ExecStoreFactory::new("echo not-json; echo oops >&2", ExecOptions::default()).expect_err("garbage");
    let text = err.to_string();
    assert!(matches!(err, ExecError::Hello { .. }), "{text}");
    assert!(
        text.contains("not a JSON object") && text.contains("not-json"),
        "{text}"
    );
    assert!(text.contains("oops"), "the stderr tail is shown: {text}");
    let err = ExecStoreFactory::new("exit 3", ExecOptions::default()).expect_err("no hello");
    assert!(err.to_string().contains("exit status: 3"), "{err}");
    drop(scripts);
}

#[test]
fn a_line_without_end_is_refused_at_its_limit_not_held_without_bound() {
    // 48 MiB without a newline, from a child that then stays silent: the
    // reader must stop at its limit and report it, not buffer the stream
    // until the timeout (a child printing forever would exhaust memory).
    let started = Instant::now();
    let err = ExecStoreFactory::new(
        "head -c 50331648 /dev/zero | tr '\\0' x; exec sleep 60",
        ExecOptions::with_timeout(Duration::from_secs(20)).with_close_grace(Duration::from_millis(100)),
    )
    .expect_err("no hello");
    let text = err.to_string();
    assert!(text.contains("longer than"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the reader waited for the timeout: {:?}",
        started.elapsed()
    );
}

#[test]
fn a_hello_that_points_outside_the_root_is_refused() {
    let hello = serde_json::json!({
        "hello": tearline_blackbox::PROTOCOL_VERSION,
        "name": "s",
        "capabilities": tearline_model::Capabilities::default(),
        "source_dir": "../../etc",
    });
    let err = ExecStoreFactory::new(&format!("echo '{hello}'"), ExecOptions::default()).expect_err("outside");
    assert!(
        err.to_string().contains("not a relative path under the store's root"),
        "{err}"
    );
}

/// Runs a child that says hello and then misbehaves on `open`; returns the
/// failure and how long it took.
fn open_misbehaving(then: &str, timeout: Duration) -> (tearline_model::StoreFailure, Duration) {
    let scripts = Scripts::new();
    let command = scripts.hello_then(then);
    let factory = ExecStoreFactory::new(
        &command,
        ExecOptions::with_timeout(timeout).with_close_grace(Duration::from_millis(200)),
    )
    .expect("hello");
    let fs = machine(5);
    let started = Instant::now();
    let err = factory
        .open(&env_for(&fs), Access::Writable)
        .err()
        .expect("the child breaks the protocol");
    (err, started.elapsed())
}

#[test]
fn garbage_an_exit_or_silence_is_a_clean_protocol_break() {
    if !fuse_or_skip("garbage_an_exit_or_silence_is_a_clean_protocol_break") {
        return;
    }
    let (err, _) = open_misbehaving("echo garbage; echo 'Traceback: boom' >&2", Duration::from_secs(60));
    assert!(is_protocol_break(&err), "{err}");
    assert!(
        err.message.contains("not a JSON object") && err.message.contains("garbage"),
        "{err}"
    );
    assert!(err.message.contains("Traceback: boom"), "{err}");

    let (err, _) = open_misbehaving("echo dying >&2; exit 7", Duration::from_secs(60));
    assert!(is_protocol_break(&err), "{err}");
    assert!(
        err.message.contains("exit status: 7") && err.message.contains("dying"),
        "{err}"
    );

    let (err, took) = open_misbehaving("sleep 30", Duration::from_millis(300));
    assert!(is_protocol_break(&err), "{err}");
    assert!(err.message.contains("no answer"), "{err}");
    assert!(
        took < Duration::from_secs(5),
        "killed at the timeout, not after the sleep: {took:?}"
    );
}

/// A store that records its absolute root at `init` (durably) and refuses
/// to open anywhere else, as a store with absolute paths in its journal
/// would fail its recovery.
const ROOTED_STORE: &str = r#"
import json, os, sys
def say(answer):
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
caps = ["remove", "import", "full_rebuild", "incremental_rebuild", "reconcile", "vectors",
        "schema_version", "exclusive_lock", "source_files"]
say({"hello": "tearline/1", "name": "rooted", "capabilities": {c: False for c in caps},
     "source_dir": None, "lock_file": None, "protected": []})
for line in sys.stdin:
    kind = json.loads(line)["request"]
    if kind == "init":
        fd = os.open("ROOT", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, os.getcwd().encode())
        os.fsync(fd)
        os.close(fd)
        d = os.open(".", os.O_RDONLY)
        os.fsync(d)
        os.close(d)
        say({"ok": True})
    elif kind == "open":
        recorded = open("ROOT").read()
        if recorded == os.getcwd() == os.environ.get("TEARLINE_STORE"):
            say({"ok": True})
        else:
            say({"ok": False, "error": "recorded %s, now at %s" % (recorded, os.getcwd())})
    else:
        say({"ok": True})
        if kind == "close":
            break
"#;

#[test]
fn every_child_sees_the_store_at_the_same_absolute_path() {
    if !fuse_or_skip("every_child_sees_the_store_at_the_same_absolute_path") {
        return;
    }
    let scripts = Scripts::new();
    std::fs::write(scripts.path("rooted.py"), ROOTED_STORE).expect("write rooted.py");
    let command = format!("exec python3 {}", scripts.path("rooted.py").display());
    let options = ExecOptions::default().with_store_path(scripts.path("store-root"));
    let factory = ExecStoreFactory::new(&command, options).expect("hello");
    let fs = machine(40);
    factory.init(&env_for(&fs)).expect("init");
    // Two children at once, each at the same path on its own mount.
    let first = factory.open(&env_for(&fs), Access::Writable).expect("open");
    let second = factory
        .open(&env_for(&fs.spawn_process()), Access::ReadOnly)
        .expect("a second child");
    drop((first, second));
    // A crash of the process, then a power cut: each recovery is a new child.
    fs.crash_process();
    let restarted = fs.spawn_process();
    drop(
        factory
            .open(&env_for(&restarted), Access::Writable)
            .expect("open after a crash"),
    );
    restarted.power_cut();
    let pending = restarted.snapshot().pending_ops();
    let rebooted = restarted.reboot_with(PersistenceModel::NothingUnsynced, &CrashChoice::nothing(pending));
    drop(
        factory
            .open(&env_for(&rebooted), Access::Writable)
            .expect("open after a power cut"),
    );
    assert_eq!(
        rebooted.read_file(Path::new("/store/ROOT")).expect("read"),
        scripts.path("store-root").display().to_string().as_bytes()
    );
}
