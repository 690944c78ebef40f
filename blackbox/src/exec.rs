//! [`ExecStoreFactory`]: a [`StoreFactory`] whose store is a child process
//! speaking the protocol of `blackbox/PROTOCOL.md` (version 1).
//!
//! # Fault model of the black-box path
//!
//! - The child's filesystem is one simulated process view (`env.fs`),
//!   mounted with [`SimMount`]; every fault the simulator injects reaches the
//!   child as the errno a kernel would give, at the syscall it strikes.
//! - A power cut or process crash in the simulator halts the view: the
//!   mount answers `EIO` from then on, and the conversation kills the child
//!   with `SIGKILL` (its whole process group) as soon as it notices (within
//!   [`POLL_INTERVAL`]), then reports `Err`. Whatever the child had not made
//!   durable is dropped by the simulator's reboot, not here.
//! - A child that breaks the protocol (exits outside a fault, prints a line
//!   that is not JSON or not an answer, or does not answer within
//!   [`ExecOptions::timeout`]) is killed and reported as an `Err` whose
//!   message starts with [`PROTOCOL_BROKEN`] and ends with the tail of its
//!   stderr.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ffi::CString;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tearline_model::{
    Access, Capabilities, Env, Observation, Operation, RemoteFault, SchemaStamp, StoreFactory, StoreFailure,
    StoreUnderTest,
};
use tearline_sim_fs::{FsExt, SimConfig, SimFs};

use crate::cpu::OneCpu;
use crate::mount::{LockWaiters, SimMount};
pub use crate::reply::{Hello, MAX_LINE_BYTES, PROTOCOL_VERSION};
use crate::reply::{Reply, read_hello, read_observation, read_reply, shown};

/// The start of every [`StoreFailure`] message that reports a child breaking
/// the protocol (as opposed to a clean `{"ok":false}` answer or a halt).
pub const PROTOCOL_BROKEN: &str = "black-box protocol broken: ";

/// How often a wait for an answer checks the mount for a halt.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Where every child sees the store by default ([`ExecOptions::store_path`]).
pub const DEFAULT_STORE_PATH: &str = "/tmp/tearline-store";

/// How long a killed child may take to die before it is left behind.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// How long a gone child's stderr pipe may take to drain into a [`StderrLog`].
const STDERR_DRAIN: Duration = Duration::from_millis(500);

/// How long the kernel may take, after a child answered `reset`, to release
/// what it had open on its mount (`release` is asynchronous) before the
/// child is closed instead of reused.
const RESET_SETTLE: Duration = Duration::from_secs(1);

/// The most children a factory keeps waiting to be reused: as many as a
/// scenario has alive at once (a writer, a reader, a second process).
const IDLE_CHILDREN: usize = 4;

/// What the black-box path cannot make deterministic. A certificate of an
/// `--exec` store should print these beside its seed.
pub const NONDETERMINISM: &[&str] = &[
    "the child's own clock, threads, randomness and environment (hash seeds, PIDs, temp names): \
     run it single-threaded with fixed seeds (e.g. PYTHONHASHSEED=0) to get repeatable traces",
    "the kernel sends RELEASE (the last close of an open file) and FORGET asynchronously: a \
     release may reach the simulator after the child's next request, so flock and OFD locks, \
     which go at release, are held a little longer (POSIX locks go at the close itself; closes \
     are not traced, unlocks are)",
    "a power cut or process crash is noticed by polling the mount (every 10 ms of wall time): \
     requests the child makes in between answer EIO and do not reach the simulator, but how \
     many it makes before the SIGKILL lands varies",
    "the answer timeout is wall-clock time (default 60 s): a slow machine can turn a slow \
     answer into a protocol break",
    "files the child opens outside its working directory (interpreter, libraries, /tmp) are \
     not simulated; a child that searches its working directory at start-up (`python3 -c`, \
     whose sys.path[0] is the cwd: ~87 lookups) makes lookups there that are traced, and are \
     fault points, like any other (run a script file, or set PYTHONSAFEPATH=1)",
    "a halt the child did not cause (a power cut by the harness while the child waits for a \
     request) is noticed at the child's next syscall through the mount, not before: an answer \
     that needs no syscall still arrives",
    "mmap'd writes (allowed for SQLite's WAL -shm file) go through the page cache and reach \
     the simulator when the kernel writes them back, not in program order",
];

/// Settings of an [`ExecStoreFactory`]. Every field documents its default.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ExecOptions {
    /// How long to wait for each answer (and for the hello) in wall time.
    /// Default 60 s; at least 1 ms.
    pub timeout: Duration,
    /// How long a closing child may take to answer `close` and exit before
    /// it is killed. Default 5 s.
    pub close_grace: Duration,
    /// How many bytes of the child's stderr to keep for error messages.
    /// Default 4096.
    pub stderr_tail_bytes: usize,
    /// The absolute path at which every child sees the store's root (its
    /// working directory), the same for every child: each child runs in a
    /// mount namespace of its own with its mount bind-mounted there, so
    /// children alive at once do not see each other's. Created if missing
    /// (an empty directory; nothing is mounted on it outside the children).
    /// Default `/tmp/tearline-store`.
    pub store_path: PathBuf,
    /// Where to keep what every child wrote to stderr (its last
    /// [`ExecOptions::stderr_tail_bytes`]) and the requests it was asked,
    /// once it is gone: what a replay prints. Default: not kept.
    pub stderr_log: Option<StderrLog>,
    /// Reuse a child whose hello says `reusable`: when its conversation
    /// ends without a halt, it is sent `reset` instead of `close`, and once
    /// it has closed everything on its mount, the mount is pointed at the
    /// next conversation's filesystem and the same process serves it (no
    /// mount, start-up or hello). Never with a [`ExecOptions::stderr_log`],
    /// whose replay tells each conversation's child apart. Default true.
    pub reuse_children: bool,
    /// Where each child and its mount's request thread run: both on one
    /// CPU unless [`CpuPlacement::Anywhere`]. A request through the mount
    /// is two wakeups, and across CPUs each is an inter-processor
    /// interrupt, which a virtual machine pays dearly for (measured on a
    /// 2-core VM: a `pread` through the mount 45 us across CPUs, 8 us on
    /// one). Default [`CpuPlacement::Current`].
    pub cpu: CpuPlacement,
}

/// Which CPU a child and its mount's request thread share
/// ([`ExecOptions::cpu`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CpuPlacement {
    /// The CPU the calling thread runs on when the conversation starts.
    #[default]
    Current,
    /// The CPU of this index among those this process may use, modulo
    /// their number (`certify --jobs` gives worker *i* index *i*).
    Index(usize),
    /// No placement: wherever the kernel schedules them.
    Anywhere,
}

impl Default for ExecOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            close_grace: Duration::from_secs(5),
            stderr_tail_bytes: 4096,
            store_path: PathBuf::from(DEFAULT_STORE_PATH),
            stderr_log: None,
            reuse_children: true,
            cpu: CpuPlacement::Current,
        }
    }
}

/// What each child of a factory said on stderr ([`ExecOptions::stderr_log`]).
/// Cloning shares the log.
#[derive(Clone, Debug, Default)]
pub struct StderrLog(Arc<Mutex<StderrLogState>>);

#[derive(Debug, Default)]
struct StderrLogState {
    started: usize,
    ended: Vec<ChildStderr>,
}

/// One child's stderr, and what it was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildStderr {
    /// Its number among the factory's children, in the order they started
    /// (from 1).
    pub number: usize,
    /// The requests it was sent, in order (`open`, `apply add`, ...).
    pub requests: Vec<String>,
    /// The end of what it wrote to stderr (lossy UTF-8).
    pub text: String,
}

impl StderrLog {
    /// Every ended child's stderr kept so far, in the order they started.
    pub fn children(&self) -> Vec<ChildStderr> {
        let mut children = self.0.lock().unwrap_or_else(PoisonError::into_inner).ended.clone();
        children.sort_by_key(|c| c.number);
        children
    }

    /// The number of the child starting now.
    fn next_number(&self) -> usize {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        state.started += 1;
        state.started
    }

    fn keep(&self, child: ChildStderr) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).ended.push(child);
    }
}

impl ExecOptions {
    /// The defaults with this answer timeout.
    pub fn with_timeout(timeout: Duration) -> Self {
        Self {
            timeout,
            ..Self::default()
        }
    }

    /// These options with this close grace.
    pub fn with_close_grace(self, close_grace: Duration) -> Self {
        Self { close_grace, ..self }
    }

    /// These options keeping every child's stderr in `log`, with up to
    /// `tail_bytes` of each.
    pub fn with_stderr_log(self, log: StderrLog, tail_bytes: usize) -> Self {
        Self {
            stderr_log: Some(log),
            stderr_tail_bytes: tail_bytes,
            ..self
        }
    }

    /// Whether a child whose hello says `reusable` is reused
    /// ([`ExecOptions::reuse_children`], and no stderr log).
    fn reuses_children(&self) -> bool {
        self.reuse_children && self.stderr_log.is_none()
    }

    /// These options reusing children (`true`) or starting a child for
    /// every conversation (`false`).
    pub fn with_reuse_children(self, reuse_children: bool) -> Self {
        Self { reuse_children, ..self }
    }

    /// These options placing children so ([`ExecOptions::cpu`]).
    pub fn with_cpu(self, cpu: CpuPlacement) -> Self {
        Self { cpu, ..self }
    }

    /// These options with this store path.
    pub fn with_store_path(self, store_path: impl Into<PathBuf>) -> Self {
        Self {
            store_path: store_path.into(),
            ..self
        }
    }
}

/// Why an [`ExecStoreFactory`] could not be made.
#[derive(Debug)]
#[non_exhaustive]
pub enum ExecError {
    /// A setting is out of range.
    BadOption(String),
    /// The command could not be started.
    Spawn {
        /// The command.
        command: String,
        /// What spawning it failed with.
        source: io::Error,
    },
    /// The command started but did not send a valid hello line.
    Hello {
        /// The command.
        command: String,
        /// What went wrong, with the tail of its stderr.
        message: String,
    },
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::BadOption(what) => write!(f, "bad option: {what}"),
            ExecError::Spawn { command, source } => write!(f, "cannot start `{command}`: {source}"),
            ExecError::Hello { command, message } => write!(f, "`{command}` did not say hello: {message}"),
        }
    }
}

impl std::error::Error for ExecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ExecError::Spawn { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Whether `failure` reports a child that broke the protocol (exited, printed
/// garbage, timed out) rather than a clean `{"ok":false}` or a halt.
pub fn is_protocol_break(failure: &StoreFailure) -> bool {
    failure.message.starts_with(PROTOCOL_BROKEN)
}

/// For tests: `true` where FUSE works; otherwise prints `SKIPPED {test}:
/// <why>` on stderr and returns `false`, or panics with it when the
/// environment sets `TEARLINE_REQUIRE_FUSE` (CI sets it where it installed
/// FUSE, so a broken mount fails the run instead of skipping quietly).
pub fn fuse_or_skip(test: &str) -> bool {
    match fuse_available() {
        Ok(()) => true,
        Err(why) if std::env::var_os("TEARLINE_REQUIRE_FUSE").is_some() => {
            panic!("{test}: FUSE is required here (TEARLINE_REQUIRE_FUSE) but not available: {why}")
        }
        Err(why) => {
            // Straight to the stderr handle: the test harness does not capture it.
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: FUSE is not available: {why}");
            false
        }
    }
}

/// Checks this machine can serve a [`SimMount`]: `/dev/fuse` opens, and an
/// empty simulated filesystem mounts on a temporary directory and can be
/// listed. The answer is computed once per process.
pub fn fuse_available() -> Result<(), String> {
    static ANSWER: OnceLock<Result<(), String>> = OnceLock::new();
    ANSWER
        .get_or_init(|| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/fuse")
                .map_err(|e| format!("cannot open /dev/fuse: {e}"))?;
            let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temp dir: {e}"))?;
            let fs = Arc::new(SimFs::new(SimConfig::with_seed(0)));
            let mount = SimMount::mount(fs, PathBuf::from("/"), dir.path())
                .map_err(|e| format!("cannot mount FUSE on {}: {e}", dir.path().display()))?;
            let listed = std::fs::read_dir(dir.path()).map(|entries| entries.count());
            // An unmount can find the mount busy for a moment (the kernel
            // releases the directory asynchronously); `unmount` then detaches
            // it lazily. That says nothing about whether FUSE works.
            let _ = mount.unmount();
            listed.map_err(|e| format!("the FUSE mount does not answer: {e}"))?;
            Ok(())
        })
        .clone()
}

/// The last bytes a child wrote to stderr.
#[derive(Debug)]
struct Tail {
    bytes: VecDeque<u8>,
    limit: usize,
    /// The pipe reached its end (every writer closed it).
    ended: bool,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.bytes.extend(data);
        while self.bytes.len() > self.limit {
            self.bytes.pop_front();
        }
    }

    /// What is kept, as text (lossy UTF-8).
    fn text(&self) -> String {
        let bytes: Vec<u8> = self.bytes.iter().copied().collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// What the stdout reader thread sends.
#[derive(Debug)]
enum Line {
    Text(String),
    End,
    Error(String),
}

/// How a wait for an answer ended, when it did not end with one.
#[derive(Debug)]
enum Broken {
    /// The simulated process halted: not the child's fault.
    Halted(String),
    /// The child broke the protocol.
    Protocol(String),
}

impl Broken {
    fn into_failure(self) -> StoreFailure {
        match self {
            Broken::Halted(message) => StoreFailure::new(message),
            Broken::Protocol(message) => StoreFailure::new(format!("{PROTOCOL_BROKEN}{message}")),
        }
    }
}

/// A running child and its pipes.
struct StoreProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Line>,
    stderr: Arc<Mutex<Tail>>,
    command: String,
    /// Its number in a [`StderrLog`], if one is kept.
    number: usize,
    /// What it was asked, for [`StderrLog`].
    requests: Vec<String>,
    exited: Option<ExitStatus>,
    /// The blocking lock requests of its mount, answered after a kill so
    /// the child can die.
    waiters: Option<LockWaiters>,
}

impl StoreProcess {
    /// Starts `command` with `sh -c` in `cwd`; with `store_path`, in a
    /// mount namespace of its own where `cwd` is bind-mounted at
    /// `store_path`, which becomes its working directory.
    fn spawn(
        command: &str,
        cwd: &Path,
        options: &ExecOptions,
        store_path: Option<&Path>,
        cpu: Option<OneCpu>,
    ) -> io::Result<StoreProcess> {
        let mut builder = Command::new("sh");
        builder
            .arg("-c")
            .arg(command)
            .current_dir(cwd)
            .env("TEARLINE_PROTOCOL", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a SIGKILL reaches whatever `sh` started.
            .process_group(0);
        if let Some(cpu) = cpu {
            // SAFETY: between fork and exec the closure makes one system
            // call on a set prepared before the fork.
            unsafe {
                builder.pre_exec(move || cpu.enter());
            }
        }
        if let Some(store_path) = store_path {
            builder.env("TEARLINE_STORE", store_path);
            let source = CString::new(cwd.as_os_str().as_bytes()).map_err(io::Error::other)?;
            let target = CString::new(store_path.as_os_str().as_bytes()).map_err(io::Error::other)?;
            let others: Vec<CString> = crate::mount::mountpoints()
                .iter()
                .filter(|m| m.as_path() != cwd)
                .filter_map(|m| CString::new(m.as_os_str().as_bytes()).ok())
                .collect();
            let check = |rc: libc::c_int| {
                if rc == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            };
            // SAFETY: between fork and exec the closure makes only
            // async-signal-safe system calls on memory prepared before the
            // fork; it allocates nothing.
            unsafe {
                builder.pre_exec(move || {
                    check(libc::unshare(libc::CLONE_NEWNS))?;
                    // Nothing mounted here propagates back to the harness.
                    check(libc::mount(
                        c"none".as_ptr(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    ))?;
                    check(libc::mount(
                        source.as_ptr(),
                        target.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    ))?;
                    // Copies of the other mounts of the harness would keep
                    // them alive while this child lives.
                    for other in &others {
                        libc::umount2(other.as_ptr(), libc::MNT_DETACH);
                    }
                    check(libc::chdir(target.as_ptr()))
                });
            }
        }
        let mut child = builder.spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| io::Error::other("no stdout pipe"))?;
        let mut stderr = child.stderr.take().ok_or_else(|| io::Error::other("no stderr pipe"))?;
        let (send, lines) = mpsc::channel();
        thread::Builder::new()
            .name("blackbox-stdout".to_string())
            .spawn(move || {
                let mut reader = BufReader::new(stdout);
                loop {
                    let mut line = Vec::new();
                    let limit = MAX_LINE_BYTES as u64;
                    let message = match (&mut reader).take(limit).read_until(b'\n', &mut line) {
                        Ok(0) => Line::End,
                        Ok(_) if !line.ends_with(b"\n") && line.len() as u64 == limit => Line::Error(format!(
                            "a line longer than {MAX_LINE_BYTES} bytes: {:?}...",
                            shown(&String::from_utf8_lossy(&line[..200]))
                        )),
                        Ok(_) => match String::from_utf8(line) {
                            Ok(text) => Line::Text(text),
                            Err(e) => Line::Error(format!(
                                "a line that is not UTF-8: {:?}",
                                shown(&String::from_utf8_lossy(e.as_bytes()))
                            )),
                        },
                        Err(e) => Line::Error(e.to_string()),
                    };
                    let last = !matches!(message, Line::Text(_));
                    if send.send(message).is_err() || last {
                        return;
                    }
                }
            })?;
        let tail = Arc::new(Mutex::new(Tail {
            bytes: VecDeque::new(),
            limit: options.stderr_tail_bytes,
            ended: false,
        }));
        let sink = Arc::clone(&tail);
        thread::Builder::new()
            .name("blackbox-stderr".to_string())
            .spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut buf)
                    && n > 0
                {
                    sink.lock().unwrap_or_else(PoisonError::into_inner).push(&buf[..n]);
                }
                sink.lock().unwrap_or_else(PoisonError::into_inner).ended = true;
            })?;
        Ok(StoreProcess {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr: tail,
            command: command.to_string(),
            number: 0,
            requests: Vec::new(),
            exited: None,
            waiters: None,
        })
    }

    fn stderr_tail(&self) -> String {
        let tail = self.stderr.lock().unwrap_or_else(PoisonError::into_inner);
        let text = tail.text();
        let text = text.trim_end();
        if text.is_empty() {
            "(stderr was empty)".to_string()
        } else {
            format!("stderr (last {} bytes):\n{text}", tail.bytes.len())
        }
    }

    /// SIGKILL to the child's whole process group, then reap it.
    fn kill(&mut self) {
        if self.exited.is_some() {
            // Reaped already: only stragglers of its group may be left.
            self.kill_group();
            return;
        }
        self.kill_group();
        let _ = self.child.kill();
        // A child waiting in a blocking lock request cannot die before the
        // mount answers it: cancel the waiters until it is gone.
        let deadline = Instant::now() + KILL_WAIT;
        loop {
            if let Some(waiters) = &self.waiters {
                waiters.cancel();
            }
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.exited = Some(status);
                    break;
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(2)),
                _ => break,
            }
        }
        self.stdin = None;
    }

    fn kill_group(&self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// Waits up to `grace` for the child to exit by itself.
    fn wait_exit(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.exited.is_some() {
            return self.exited;
        }
        let deadline = Instant::now() + grace;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.exited = Some(status);
                    return self.exited;
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(2)),
                _ => return None,
            }
        }
    }

    fn halt_check(&mut self, mount: Option<&SimMount>) -> Result<(), Broken> {
        if let Some(halt) = mount.and_then(SimMount::halted) {
            self.kill();
            return Err(Broken::Halted(format!("{halt}: the store process was killed")));
        }
        Ok(())
    }

    fn send(&mut self, request: &Value, mount: Option<&SimMount>) -> Result<(), Broken> {
        self.halt_check(mount)?;
        let mut text = request.to_string();
        text.push('\n');
        let result = match self.stdin.as_mut() {
            Some(stdin) => stdin.write_all(text.as_bytes()).and_then(|()| stdin.flush()),
            None => Err(io::Error::from(io::ErrorKind::BrokenPipe)),
        };
        if let Err(err) = result {
            self.halt_check(mount)?;
            let status = self.wait_exit(Duration::from_millis(500));
            self.kill();
            return Err(Broken::Protocol(format!(
                "could not send {what} to `{command}` ({err}); {status}; {tail}",
                what = describe_request(request),
                command = self.command,
                status = describe_status(status),
                tail = self.stderr_tail(),
            )));
        }
        Ok(())
    }

    /// The next line of stdout, within `timeout`.
    fn receive(&mut self, what: &str, timeout: Duration, mount: Option<&SimMount>) -> Result<String, Broken> {
        let deadline = Instant::now() + timeout;
        loop {
            self.halt_check(mount)?;
            let now = Instant::now();
            if now >= deadline {
                self.kill();
                return Err(Broken::Protocol(format!(
                    "`{}` gave no answer to {what} within {:.1} s and was killed; {}",
                    self.command,
                    timeout.as_secs_f64(),
                    self.stderr_tail()
                )));
            }
            let wait = (deadline - now).min(POLL_INTERVAL);
            match self.lines.recv_timeout(wait) {
                Ok(Line::Text(line)) => {
                    self.halt_check(mount)?;
                    return Ok(line);
                }
                Ok(Line::End) | Err(RecvTimeoutError::Disconnected) => {
                    let status = self.wait_exit(Duration::from_millis(500));
                    self.halt_check(mount)?;
                    self.kill();
                    return Err(Broken::Protocol(format!(
                        "`{}` closed its stdout without answering {what}; {}; {}",
                        self.command,
                        describe_status(status),
                        self.stderr_tail()
                    )));
                }
                Ok(Line::Error(err)) => {
                    self.halt_check(mount)?;
                    self.kill();
                    return Err(Broken::Protocol(format!(
                        "reading the answer of `{}` to {what} failed ({err}); {}",
                        self.command,
                        self.stderr_tail()
                    )));
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Parses a line as a JSON object.
    /// Kills the child and reports a line that breaks the protocol.
    fn broke(&mut self, why: &str, what: &str) -> Broken {
        self.kill();
        Broken::Protocol(format!(
            "`{}` printed {why} in answer to {what}; {}",
            self.command,
            self.stderr_tail()
        ))
    }

    fn hello(&mut self, timeout: Duration, mount: Option<&SimMount>) -> Result<Hello, Broken> {
        let line = self.receive("the hello", timeout, mount)?;
        read_hello(&line).map_err(|why| self.broke(&why, "the hello"))
    }

    /// Sends one request and reads its answer: `Ok(answer)` for `"ok":true`,
    /// a clean failure for `"ok":false`.
    fn request(&mut self, request: &Value, timeout: Duration, mount: Option<&SimMount>) -> Result<Value, StoreFailure> {
        let what = describe_request(request);
        self.requests.push(what.trim_matches('`').to_string());
        self.send(request, mount).map_err(Broken::into_failure)?;
        let line = self.receive(&what, timeout, mount).map_err(Broken::into_failure)?;
        match read_reply(&line) {
            Reply::Done(answer) => Ok(answer),
            Reply::Failed { kind, error } => Err(StoreFailure::of_kind(kind, format!("{what} failed: {error}"))),
            Reply::Broken(why) => Err(self.broke(&why, &what).into_failure()),
        }
    }
}

fn describe_request(request: &Value) -> String {
    let kind = request.get("request").and_then(Value::as_str).unwrap_or("?");
    match request.get("operation").and_then(Value::as_object) {
        Some(op) => format!("`{kind} {}`", op.get("op").and_then(Value::as_str).unwrap_or("?")),
        None => format!("`{kind}`"),
    }
}

fn describe_status(status: Option<ExitStatus>) -> String {
    match status {
        Some(status) => format!("it exited with {status}"),
        None => "it was still running".to_string(),
    }
}

/// Starts the child at [`ExecOptions::store_path`] (in a mount namespace of
/// its own); where this process may not make one (no `CAP_SYS_ADMIN`), at
/// the mountpoint itself, saying so once on stderr.
fn spawn_at_store_path(
    command: &str,
    mountpoint: &Path,
    options: &ExecOptions,
    cpu: Option<OneCpu>,
) -> Result<StoreProcess, StoreFailure> {
    static WARNED: OnceLock<()> = OnceLock::new();
    let cannot_start = |e: io::Error| StoreFailure::new(format!("cannot start `{command}`: {e}"));
    if let Err(e) = std::fs::create_dir_all(&options.store_path) {
        return Err(StoreFailure::new(format!(
            "cannot make the store path {}: {e}",
            options.store_path.display()
        )));
    }
    match StoreProcess::spawn(command, mountpoint, options, Some(&options.store_path), cpu) {
        Ok(child) => Ok(child),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) => {
            WARNED.get_or_init(|| {
                let _ = writeln!(
                    io::stderr(),
                    "tearline: cannot give the store a fixed path ({e}: mount namespaces need CAP_SYS_ADMIN); \
                     each child sees it at a new path"
                );
            });
            StoreProcess::spawn(command, mountpoint, options, None, cpu).map_err(cannot_start)
        }
        Err(e) => Err(cannot_start(e)),
    }
}

/// One conversation with a child on a mount: the child, the mount, and the
/// temporary mountpoint, torn down in that order.
struct Conversation {
    child: StoreProcess,
    mount: Option<SimMount>,
    mountpoint: Option<tempfile::TempDir>,
    options: ExecOptions,
    /// The child said it answers `reset`, and the options allow reuse.
    reusable: bool,
}

/// The children of a factory waiting, after a `reset`, to serve another
/// conversation: each with its mount, idle.
#[derive(Default)]
struct IdleChildren(Mutex<Vec<Conversation>>);

impl fmt::Debug for IdleChildren {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let idle = self.0.lock().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("IdleChildren").field("idle", &idle).finish()
    }
}

impl IdleChildren {
    fn take(&self) -> Option<Conversation> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).pop()
    }

    /// Keeps `conversation` for reuse if there is room (else it is closed).
    fn keep(&self, conversation: Conversation) {
        let mut idle = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_CHILDREN {
            idle.push(conversation);
        }
    }

    /// Ends a conversation: a reusable child is reset and kept; any other
    /// is closed.
    fn end(&self, mut conversation: Conversation) -> Result<(), StoreFailure> {
        if conversation.reset() {
            self.keep(conversation);
            return Ok(());
        }
        conversation.finish()
    }
}

impl Conversation {
    fn start(command: &str, env: &Env, options: &ExecOptions) -> Result<Conversation, StoreFailure> {
        let mountpoint = tempfile::Builder::new()
            .prefix("tearline-mnt-")
            .tempdir()
            .map_err(|e| StoreFailure::new(format!("cannot make a mountpoint: {e}")))?;
        // The mount's request thread starts on the child's CPU.
        let cpu = crate::cpu::choose(options.cpu);
        let mount = |fs, root| SimMount::mount(fs, root, mountpoint.path());
        let mount = match cpu {
            Some(cpu) => cpu.around(|| mount(Arc::clone(&env.fs), env.root.clone())),
            None => mount(Arc::clone(&env.fs), env.root.clone()),
        }
        .map_err(|e| {
            StoreFailure::new(format!(
                "cannot mount the simulated {} on {}: {e}",
                env.root.display(),
                mountpoint.path().display()
            ))
        })?;
        let mut child = spawn_at_store_path(command, mountpoint.path(), options, cpu)?;
        child.waiters = Some(mount.lock_waiters());
        child.number = options.stderr_log.as_ref().map_or(0, StderrLog::next_number);
        let mut conversation = Conversation {
            child,
            mount: Some(mount),
            mountpoint: Some(mountpoint),
            options: options.clone(),
            reusable: false,
        };
        let timeout = conversation.options.timeout;
        let hello = conversation
            .child
            .hello(timeout, conversation.mount.as_ref())
            .map_err(Broken::into_failure)?;
        conversation.reusable = hello.reusable && options.reuses_children();
        Ok(conversation)
    }

    /// Points an idle child's mount at `env` for a new conversation.
    /// `false` if the child has gone meanwhile, or its mount is not idle.
    fn resume(&mut self, env: &Env) -> bool {
        if !matches!(self.child.child.try_wait(), Ok(None)) {
            return false;
        }
        self.mount
            .as_ref()
            .is_some_and(|mount| mount.rebind(Arc::clone(&env.fs), env.root.clone()).is_ok())
    }

    /// Asks a reusable child to `reset` and waits until the kernel has
    /// released everything it had open on the mount. `true` if it can
    /// serve another conversation; otherwise the caller closes it.
    fn reset(&mut self) -> bool {
        let Some(mount) = self.mount.as_ref() else {
            return false;
        };
        if !self.reusable || mount.halted().is_some() || self.child.exited.is_some() || self.child.stdin.is_none() {
            return false;
        }
        if self
            .child
            .request(&json!({"request": "reset"}), self.options.close_grace, Some(mount))
            .is_err()
        {
            return false;
        }
        self.child.requests.clear();
        let deadline = Instant::now() + RESET_SETTLE;
        while !mount.is_idle() {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_micros(200));
        }
        true
    }

    fn request(&mut self, request: &Value) -> Result<Value, StoreFailure> {
        self.child.request(request, self.options.timeout, self.mount.as_ref())
    }

    /// Sends `close` (unless halted), waits briefly, kills what is left,
    /// unmounts. Returns the outcome of the `close` request.
    fn finish(&mut self) -> Result<(), StoreFailure> {
        let halted = self.mount.as_ref().and_then(SimMount::halted).is_some();
        let mut result = Ok(());
        if !halted && self.child.exited.is_none() && self.child.stdin.is_some() {
            let grace = self.options.close_grace;
            result = self
                .child
                .request(&json!({"request": "close"}), grace, self.mount.as_ref())
                .map(|_| ());
            self.child.stdin = None;
            self.child.wait_exit(grace);
        }
        self.child.kill();
        if let Some(log) = &self.options.stderr_log {
            // The child is gone; what it wrote last may still be in the pipe.
            let deadline = Instant::now() + STDERR_DRAIN;
            let text = loop {
                let tail = self.child.stderr.lock().unwrap_or_else(PoisonError::into_inner);
                if tail.ended || Instant::now() >= deadline {
                    break tail.text();
                }
                drop(tail);
                thread::sleep(Duration::from_millis(2));
            };
            log.keep(ChildStderr {
                number: self.child.number,
                requests: std::mem::take(&mut self.child.requests),
                text,
            });
        }
        if let Some(mount) = self.mount.take() {
            let _ = mount.unmount();
        }
        self.mountpoint = None;
        result
    }
}

impl Drop for Conversation {
    fn drop(&mut self) {
        if self.mount.is_some() {
            let _ = self.finish();
        }
    }
}

/// A [`StoreFactory`] for a store that runs as a child process speaking the
/// black-box protocol. See the [crate docs](crate).
#[derive(Debug)]
pub struct ExecStoreFactory {
    command: String,
    options: ExecOptions,
    hello: Hello,
    idle: Arc<IdleChildren>,
}

impl ExecStoreFactory {
    /// Runs `command` (with `sh -c`) once in a scratch real directory, with
    /// no mount, only to read its hello line; then closes its stdin and
    /// kills it if it does not exit within [`ExecOptions::close_grace`].
    pub fn new(command: &str, options: ExecOptions) -> Result<Self, ExecError> {
        if options.timeout.is_zero() {
            return Err(ExecError::BadOption("timeout must be at least 1 ms".to_string()));
        }
        if !options.store_path.is_absolute() || options.store_path.parent().is_none() {
            return Err(ExecError::BadOption(format!(
                "the store path must be absolute and not /: {}",
                options.store_path.display()
            )));
        }
        let scratch = tempfile::Builder::new()
            .prefix("tearline-hello-")
            .tempdir()
            .map_err(|source| ExecError::Spawn {
                command: command.to_string(),
                source,
            })?;
        let mut child =
            StoreProcess::spawn(command, scratch.path(), &options, None, None).map_err(|source| ExecError::Spawn {
                command: command.to_string(),
                source,
            })?;
        let hello = child.hello(options.timeout, None);
        child.stdin = None;
        child.wait_exit(options.close_grace);
        child.kill();
        let hello = hello.map_err(|broken| ExecError::Hello {
            command: command.to_string(),
            message: broken.into_failure().message,
        })?;
        Ok(Self {
            command: command.to_string(),
            options,
            hello,
            idle: Arc::default(),
        })
    }

    /// The same store with a new child for every conversation (none
    /// reused), sharing nothing with this factory: what the repeatability
    /// check compares a certification's reused children against.
    pub fn fresh_children(&self) -> ExecStoreFactory {
        ExecStoreFactory {
            command: self.command.clone(),
            options: self.options.clone().with_reuse_children(false),
            hello: self.hello.clone(),
            idle: Arc::default(),
        }
    }

    /// A conversation on `env`: an idle child if one can resume there,
    /// else a new child on a new mount.
    fn start(&self, env: &Env) -> Result<Conversation, StoreFailure> {
        while let Some(mut idle) = self.idle.take() {
            if idle.resume(env) {
                return Ok(idle);
            }
        }
        Conversation::start(&self.command, env, &self.options)
    }

    /// One request in a fresh conversation, then its end.
    fn one_shot(&self, env: &Env, request: &Value) -> Result<Value, StoreFailure> {
        let mut conversation = self.start(env)?;
        let answer = conversation.request(request)?;
        self.idle.end(conversation)?;
        Ok(answer)
    }
}

fn under_root(env: &Env, rel: &str) -> PathBuf {
    let rel = rel.trim_start_matches("./");
    if rel.is_empty() || rel == "." {
        env.root.clone()
    } else {
        env.root.join(rel)
    }
}

fn supported(answer: &Value) -> Result<bool, StoreFailure> {
    answer.get("supported").and_then(Value::as_bool).ok_or_else(|| {
        StoreFailure::new(format!(
            "{PROTOCOL_BROKEN}the answer has no boolean \"supported\": {answer}"
        ))
    })
}

impl StoreFactory for ExecStoreFactory {
    fn name(&self) -> &str {
        &self.hello.name
    }

    fn capabilities(&self) -> Capabilities {
        self.hello.capabilities
    }

    fn init(&self, env: &Env) -> Result<(), StoreFailure> {
        // The harness makes the root before init; a caller that did not
        // gets it made (durably) here, since the child's cwd must exist.
        if !env.fs.exists(&env.root).unwrap_or(true) {
            env.fs
                .create_dir_all_durable(&env.root)
                .map_err(|e| StoreFailure::new(format!("cannot create {}: {e}", env.root.display())))?;
        }
        self.one_shot(env, &json!({"request": "init"})).map(|_| ())
    }

    fn open(&self, env: &Env, access: Access) -> Result<Box<dyn StoreUnderTest>, StoreFailure> {
        let mut conversation = self.start(env)?;
        if env.remote != RemoteFault::Healthy {
            // The remote dependency is already down (an outage outlives the
            // store's processes): the child hears so before it opens.
            let answer = conversation.request(&json!({"request": "remote-fault", "fault": env.remote}))?;
            if !supported(&answer)? {
                return Err(StoreFailure::new(format!(
                    "{PROTOCOL_BROKEN}the store cannot be opened with its remote dependency {:?}: it does not \
                     support remote-fault",
                    env.remote
                )));
            }
        }
        conversation.request(&json!({"request": "open", "access": access}))?;
        Ok(Box::new(ExecStore {
            conversation: RefCell::new(Some(conversation)),
            idle: Arc::clone(&self.idle),
        }))
    }

    fn source_dir(&self, env: &Env) -> Option<PathBuf> {
        self.hello.source_dir.as_deref().map(|rel| under_root(env, rel))
    }

    fn protected_paths(&self, env: &Env) -> Vec<String> {
        self.hello
            .protected
            .iter()
            .map(|glob| under_root(env, glob).display().to_string())
            .collect()
    }

    fn lock_file(&self, env: &Env) -> Option<PathBuf> {
        self.hello.lock_file.as_deref().map(|rel| under_root(env, rel))
    }

    fn stamp_schema(&self, env: &Env, stamp: SchemaStamp) -> Result<bool, StoreFailure> {
        let answer = self.one_shot(env, &json!({"request": "stamp-schema", "stamp": stamp}))?;
        supported(&answer)
    }

    fn forks_with_this_process(&self) -> bool {
        false
    }

    fn without_reuse(&self) -> Option<Box<dyn StoreFactory>> {
        (self.options.reuses_children() && self.hello.reusable).then(|| Box::new(self.fresh_children()) as _)
    }
}

/// An open black-box store: one child on one mount. Dropping it ends the
/// conversation: a reusable child is reset and kept for the next one; any
/// other is closed (or killed after a halt) and its mount unmounted.
struct ExecStore {
    /// `None` only while being dropped.
    conversation: RefCell<Option<Conversation>>,
    idle: Arc<IdleChildren>,
}

impl Drop for ExecStore {
    fn drop(&mut self) {
        if let Some(conversation) = self.conversation.get_mut().take() {
            let _ = self.idle.end(conversation);
        }
    }
}

/// The failure of a request to a store already closed (never seen: the
/// conversation is gone only inside `drop`).
fn closed() -> StoreFailure {
    StoreFailure::new("the black-box store is closed".to_string())
}

/// A child that dies, hangs or answers garbage outside any injected fault
/// has done what a panic is for an in-process store: the harness's
/// `guarded` calls turn it into a clean-error violation. So a protocol
/// break of `apply` or `observe` panics here, with the child's own words;
/// anything else stays a clean failure.
fn escalate<T>(result: Result<T, StoreFailure>) -> Result<T, StoreFailure> {
    match result {
        Err(failure) if is_protocol_break(&failure) => panic!("{}", failure.message),
        other => other,
    }
}

impl StoreUnderTest for ExecStore {
    fn apply(&mut self, op: &Operation) -> Result<(), StoreFailure> {
        let conversation = self.conversation.get_mut().as_mut().ok_or_else(closed)?;
        escalate(
            conversation
                .request(&json!({"request": "apply", "operation": op}))
                .map(|_| ()),
        )
    }

    fn observe(&self) -> Result<Observation, StoreFailure> {
        let mut conversation = self.conversation.borrow_mut();
        let conversation = conversation.as_mut().ok_or_else(closed)?;
        let answer = escalate(conversation.request(&json!({"request": "observe"})))?;
        escalate(read_observation(&answer).map_err(|why| {
            StoreFailure::new(format!(
                "{PROTOCOL_BROKEN}{why} in the answer of `{}`: {answer}",
                conversation.child.command
            ))
        }))
    }

    fn set_remote_fault(&mut self, fault: RemoteFault) -> bool {
        let Some(conversation) = self.conversation.get_mut().as_mut() else {
            return false;
        };
        let answer = conversation.request(&json!({"request": "remote-fault", "fault": fault}));
        // The trait has no error channel here: a failed request means the
        // fault is not in force, which the harness reads as "no remote".
        answer.ok().as_ref().and_then(|a| supported(a).ok()).unwrap_or(false)
    }
}
