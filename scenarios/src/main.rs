//! `tearline`: run the crash matrix over the scenario catalogue, and reproduce
//! any failure from the one line it printed.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use tearline::case::{Case, DEFAULT_SCALE, MAX_SCALE};
use tearline::catalogue::{self, Entry};
use tearline::engine::{self, EngineOptions, Part, WorkerCommand};
use tearline::report::{InvariantStatus, REPORT_SCHEMA_VERSION, RunReport};
use tearline::run::{self, RunOptions};
use tearline::{certify, map, replay, stores};
use tearline_model::{Invariant, StoreFactory};
use tearline_sim_fs::Fault;

/// mimalloc for Rust's allocations; its `override` feature also gives it
/// SQLite's (see the dependency's note in `Cargo.toml`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code when every scenario met its expectation.
const EXIT_PASS: u8 = 0;
/// Exit code when a scenario broke an invariant it must keep (or kept one it must break).
const EXIT_VIOLATION: u8 = 1;
/// Exit code when the harness itself failed (bad arguments, I/O).
const EXIT_HARNESS_ERROR: u8 = 2;
/// How much of each child's stderr a replay of an `--exec` store prints.
const REPLAY_STDERR_BYTES: usize = 64 * 1024;

#[derive(Parser)]
#[command(
    name = "tearline",
    version,
    about = "Deterministic crash-matrix testing for storage code"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the scenarios (and what each must show) and the invariants.
    List {
        /// The store under test (see the list for the names).
        #[arg(long, default_value = stores::DEFAULT)]
        store: String,
    },
    /// Run the crash matrix over the catalogue (or the named scenarios).
    Run(RunArgs),
    /// Replay one case from the line a failure printed, with its trace.
    Repro {
        /// `<scenario>:<seed>:<syscall>:<fault>[:<model>:<d|s><n>][@<scale>]`,
        /// as a failure printed it (see `tearline::case` for the grammar).
        line: String,
        /// The store under test (default: the one the line names, else the reference store).
        #[arg(long)]
        store: Option<String>,
        /// Syscalls of the trace to show before and after the fault
        /// (default: 8 before, 40 after).
        #[arg(long, value_name = "N")]
        context: Option<usize>,
    },
    /// Certify a store: every applicable scenario, every invariant, and a
    /// certificate (pass/fail per invariant, with evidence).
    Certify(CertifyArgs),
    /// Explain an invariant (`tearline explain committed-durable`).
    Explain {
        /// The invariant's name.
        invariant: String,
    },
    /// Run one part of one scenario's matrix and print it as JSON (used by `run --jobs`).
    #[command(hide = true)]
    Worker(WorkerArgs),
}

/// The options of the hidden `worker` command (what `run --jobs` passes on).
#[derive(clap::Args)]
struct WorkerArgs {
    #[arg(long, default_value = "refstore")]
    store: String,
    /// A black-box store's command (`certify --exec`), instead of `--store`.
    #[arg(long)]
    exec: Option<String>,
    /// With `--exec`: seconds to wait for each answer.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// With `--exec`: start a new child for every open.
    #[arg(long)]
    no_reuse: bool,
    #[arg(long)]
    scenario: String,
    #[arg(long)]
    seed: u64,
    #[arg(long, value_delimiter = ',')]
    faults: Vec<String>,
    #[arg(long)]
    scale: u32,
    #[arg(long)]
    part: String,
    #[arg(long)]
    check_determinism: bool,
    #[arg(long)]
    every_state: bool,
    #[arg(long)]
    rerun_each_case: bool,
    #[arg(long)]
    branch_from: Option<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::List { store } => list(&store),
        Command::Run(args) => run(args),
        Command::Repro { line, store, context } => repro(&line, store.as_deref(), context),
        Command::Certify(args) => certify_command(args),
        Command::Explain { invariant } => explain(&invariant),
        Command::Worker(args) => worker(&args),
    };
    ExitCode::from(code)
}

fn factory(name: &str) -> Result<Box<dyn StoreFactory>, u8> {
    stores::by_name(name).ok_or_else(|| {
        eprintln!("error: no store named {name:?} (known: {})", stores::names().join(", "));
        EXIT_HARNESS_ERROR
    })
}

fn parse_faults(names: &[String]) -> Result<Vec<Fault>, u8> {
    let mut faults = Vec::new();
    for name in names {
        match Fault::parse(name.trim()) {
            Some(fault) if engine::ALL_FAULTS.contains(&fault) => faults.push(fault),
            _ => {
                eprintln!(
                    "error: unknown fault {name:?} (known: {})",
                    engine::ALL_FAULTS.map(|f| f.to_string()).join(", ")
                );
                return Err(EXIT_HARNESS_ERROR);
            }
        }
    }
    // A fixed order, whatever order they were given in.
    Ok(engine::ALL_FAULTS.into_iter().filter(|f| faults.contains(f)).collect())
}

fn list(store: &str) -> u8 {
    let factory = match factory(store) {
        Ok(f) => f,
        Err(code) => return code,
    };
    println!("scenarios (store: {}):\n", factory.name());
    for entry in catalogue::entries(factory.as_ref(), 1) {
        println!("{}\n    {}", entry.name(), entry.description());
        if let Entry::Store { scenario, .. } = &entry {
            let missing = scenario.missing(&factory.capabilities());
            if !missing.is_empty() {
                println!("    not applicable to {}: lacks {}", factory.name(), missing.join(", "));
            }
        }
        if entry.expect().findings.is_empty() {
            println!("    must pass every invariant");
        }
        for finding in &entry.expect().findings {
            let invariants: Vec<&str> = finding.invariants.iter().map(|i| i.name()).collect();
            println!("    must reproduce ({}): {}", invariants.join(", "), finding.summary);
        }
        println!();
    }
    println!("invariants (`tearline explain NAME` for details):\n");
    for invariant in Invariant::ALL {
        let applies = if invariant.applies_to(&factory.capabilities()) {
            ""
        } else {
            " [not applicable to this store]"
        };
        println!(
            "  {:<30} {}{applies}",
            invariant.name(),
            first_sentence(invariant.explanation())
        );
    }
    println!("\nfaults (`tearline run --faults`), at every syscall of a workload:\n");
    for (name, what) in FAULTS {
        println!("  {name:<30} {what}");
    }
    println!("\nwhat scenarios do besides (see each scenario's steps):\n");
    for (name, what) in ATTACKS {
        println!("  {name:<30} {what}");
    }
    EXIT_PASS
}

/// The faults the matrix injects, for `tearline list`.
const FAULTS: [(&str, &str); engine::ALL_FAULTS.len()] = [
    (
        "power-cut",
        "the power goes before the syscall; the disk keeps what a persistence model lets survive \
         (nothing, prefix, subset, torn at 512-byte sectors, zeroed: metadata but no unsynced data)",
    ),
    (
        "crash",
        "the process is killed (kill -9) at the syscall; the page cache survives",
    ),
    (
        "ENOSPC",
        "the syscall fails with no space left and changes nothing (at a file's fsync: Linux drops its dirty data)",
    ),
    (
        "EIO",
        "the syscall fails with an I/O error and changes nothing; at a file's fsync, as on Linux, the dirty \
         data is dropped, the error is reported once, and a retried fsync succeeds without it",
    ),
    ("EXDEV", "a rename or link fails as across devices"),
    (
        "torn-write",
        "a sector-aligned part of a write reaches the disk, then the power goes",
    ),
    (
        "misdirected-write",
        "a write lands at another sector-aligned offset of the file and reports success",
    ),
    (
        "latent-sector",
        "a sector a read covers goes bad: EIO at every read of it, across reboots, until it is rewritten",
    ),
    ("bit-rot", "one bit a read covers flips on the disk, for good"),
    ("bit-flip", "one read returns one bit flipped; the disk is unchanged"),
    (
        "vanish",
        "another process removes a source file, durably, just before the store opens it (listed, then gone)",
    ),
    (
        "clock-back-691200000ms",
        "the wall clock steps back 8 days (at the first syscall of each workload step)",
    ),
    (
        "clock-forward-691200000ms",
        "the wall clock steps forward 8 days (at the first syscall of each workload step)",
    ),
];

/// What scenarios do to a store besides the faults, for `tearline list`.
const ATTACKS: [(&str, &str); 8] = [
    (
        "readers",
        "a read-only open in another process beside every syscall of every operation, and after \
         every fault before recovery (reader-consistent; stores with concurrent_readers)",
    ),
    (
        "a device that stays full",
        "after the fault the device is still full: read, remove, then add once there is room \
         (stays-serviceable)",
    ),
    (
        "lock file removed",
        "another process removes the store's lock while the writer holds it",
    ),
    (
        "lock file replaced",
        "another process renames a new file or directory over the lock",
    ),
    (
        "stale lock",
        "a writer is killed holding the store; the next writable open must get in",
    ),
    (
        "hostile sources",
        "an empty file, a large one, bytes that are not UTF-8, a directory under a document's name",
    ),
    (
        "edits behind the store's back",
        "source files written or deleted by another process",
    ),
    (
        "damage at rest",
        "the store closed, garbage, an unreadable sector, a truncation or a wrong name in one of the \
         files it derives from its sources (index, vectors, CURRENT, CREATED): the next writable open \
         must rebuild from the sources (rebuildable-from-source; stores with derived_files)",
    ),
];

fn first_sentence(text: &str) -> &str {
    text.split_once(". ").map_or(text, |(first, _)| first)
}

fn explain(name: &str) -> u8 {
    match Invariant::parse(name) {
        Some(invariant) => {
            println!("{invariant}\n\n{}\n", invariant.explanation());
            println!(
                "What a violation usually means, and the usual fix:\n{}\n",
                invariant.usually()
            );
            println!("An example of its evidence:\n  {}\n", invariant.example());
            if let Some(needs) = invariant.needs() {
                println!("Only for stores that have: {needs}\n");
            }
            let Some(factory) = stores::by_name(stores::DEFAULT) else {
                return EXIT_PASS;
            };
            let checking: Vec<String> = catalogue::entries(factory.as_ref(), DEFAULT_SCALE)
                .iter()
                .filter(|entry| run::applicable(entry, factory.as_ref(), invariant))
                .map(|entry| entry.name().to_string())
                .collect();
            println!(
                "Checked after every fault by {} scenarios (for {}): {}",
                checking.len(),
                factory.name(),
                checking.join(", ")
            );
            EXIT_PASS
        }
        None => {
            eprintln!(
                "error: no invariant named {name:?} (known: {})",
                Invariant::ALL.map(|i| i.name()).join(", ")
            );
            EXIT_HARNESS_ERROR
        }
    }
}

/// What `run` and `certify` share: the store, the seed, the faults.
#[derive(clap::Args)]
struct MatrixArgs {
    /// The store under test.
    #[arg(long, default_value = stores::DEFAULT)]
    store: String,
    /// The run seed: everything random derives from it.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Faults to inject, comma-separated (`tearline list` describes each; the default is all of them).
    #[arg(long, value_delimiter = ',', default_values_t = engine::ALL_FAULTS.iter().map(|f| f.to_string()).collect::<Vec<_>>())]
    faults: Vec<String>,
}

/// The options of `tearline run`.
#[derive(clap::Args)]
struct RunArgs {
    /// Scenarios to run (default: all).
    #[arg(value_name = "SCENARIOS")]
    names: Vec<String>,
    #[command(flatten)]
    matrix: MatrixArgs,
    /// This CI shard, `i/n` (0-based): runs the cases whose number is i modulo n.
    #[arg(long, default_value = "0/1")]
    shard: String,
    /// Local worker processes, 1 to 256 (default: the number of cores).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
    jobs: Option<u64>,
    /// SQLite matrices' size multiplier (transactions = 6 x scale), 1 to 20.
    #[arg(long, default_value_t = DEFAULT_SCALE, value_parser = clap::value_parser!(u32).range(1..=MAX_SCALE as i64))]
    scale: u32,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the crash map here: one self-contained HTML page drawing each
    /// scenario's matrix, every cell clickable for its cases.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Write the JUnit XML report here.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Run every case twice and compare trace hashes.
    #[arg(long)]
    check_determinism: bool,
    /// Check every post-fault state, even one an earlier case of the matrix
    /// already checked (the same disk, or after a crash the same machine,
    /// under the same model): slower, with the same verdicts; for measuring
    /// what deduplication saves.
    #[arg(long)]
    every_state: bool,
    /// Replay the workload from scratch for every case that is not a power
    /// cut, instead of branching each off one run of it (a fork at its
    /// syscall) or checking a crash from the snapshot before it: slower,
    /// with the same verdicts; for measuring what both save.
    #[arg(long)]
    rerun_each_case: bool,
    /// Branch the cases whose fault strikes at or after this syscall off
    /// one run of the workload (0: every case that is not a power cut);
    /// replay the others from scratch. Where a prefix is short, a replay
    /// costs less than a fork's copied pages. The verdicts are the same.
    #[arg(long, value_name = "SYSCALL", default_value_t = tearline::engine::BRANCH_FROM)]
    branch_from: u64,
    /// Off a terminal (a CI log), how often, in seconds, a scenario still
    /// running prints how far it is (0: at every step of progress).
    #[arg(long, default_value_t = 10)]
    heartbeat: u64,
    /// Violations to print per failing scenario.
    #[arg(long, default_value_t = 5)]
    show: usize,
}

/// The options of `tearline certify`.
#[derive(clap::Args)]
struct CertifyArgs {
    #[command(flatten)]
    matrix: MatrixArgs,
    /// Run the cases numbered i modulo n of each matrix (`0/10`: a tenth, for a quick check).
    #[arg(long, default_value = "0/1")]
    sample: String,
    /// Only these scenarios (repeatable; default: every applicable one).
    #[arg(long = "scenario")]
    scenarios: Vec<String>,
    /// Write the certificate here: `.md` for Markdown, `.json` for JSON, `.html`
    /// for the crash map of every scenario (repeatable).
    #[arg(long = "report")]
    reports: Vec<PathBuf>,
    /// Instead of certifying, replay this repro line from a certificate.
    #[arg(long)]
    repro: Option<String>,
    /// Instead of certifying, print each scenario's plan: its fault-free
    /// workload's syscalls, and the cases, crash points and derived power
    /// cuts of its matrix within the sample (one probe per scenario).
    #[arg(long, conflicts_with = "repro")]
    plan: bool,
    /// With --repro: syscalls of the trace to show before and after the
    /// fault (default: 8 before, 40 after).
    #[arg(long, value_name = "N", requires = "repro")]
    context: Option<usize>,
    /// Certify a store in any language, black box: run `sh -c CMD` in a FUSE
    /// mount of the simulated filesystem and speak blackbox/PROTOCOL.md with it.
    #[arg(long, value_name = "CMD")]
    exec: Option<String>,
    /// Seconds to wait for each answer of an --exec store (wall time), 1 to 86400.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    timeout: u64,
    /// With --exec: start a new child (and mount) for every open of the
    /// store, even where its hello says it is reusable (by default such a
    /// child is sent `reset` and serves the next open).
    #[arg(long, requires = "exec")]
    no_reuse: bool,
    /// Replay every case that is not a power cut from scratch, instead of
    /// checking a crash from the snapshot before it (or branching a case
    /// off one run of the workload): slower, with the same certificate.
    #[arg(long)]
    rerun_each_case: bool,
    /// Local worker processes, 1 to 256, each running its share of every
    /// matrix (an --exec store gets a mount per child, so workers never
    /// share one); the certificate is the same for any number.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    jobs: u64,
}

/// How `certify --jobs` starts a worker: the same store, faults and seed.
fn certify_worker(args: &CertifyArgs, faults: &[String]) -> Option<WorkerCommand> {
    let program = std::env::current_exe().ok()?;
    let mut worker_args = vec!["worker".to_string()];
    match &args.exec {
        Some(command) => {
            worker_args.extend([
                "--exec".to_string(),
                command.clone(),
                "--timeout".to_string(),
                args.timeout.to_string(),
            ]);
            if args.no_reuse {
                worker_args.push("--no-reuse".to_string());
            }
        }
        None => worker_args.extend(["--store".to_string(), args.matrix.store.clone()]),
    }
    if args.rerun_each_case {
        worker_args.push("--rerun-each-case".to_string());
    }
    worker_args.extend([
        "--seed".to_string(),
        args.matrix.seed.to_string(),
        "--faults".to_string(),
        faults.join(","),
        "--scale".to_string(),
        DEFAULT_SCALE.to_string(),
    ]);
    Some(WorkerCommand {
        program,
        args: worker_args,
    })
}

fn certify_command(args: CertifyArgs) -> u8 {
    for path in &args.reports {
        if !matches!(path.extension().and_then(|e| e.to_str()), Some("md" | "json" | "html")) {
            eprintln!("error: --report {} must end in .md, .json or .html", path.display());
            return EXIT_HARNESS_ERROR;
        }
        if let Err(why) = writable_destination(path) {
            eprintln!("error: cannot write a report to {}: {why}", path.display());
            return EXIT_HARNESS_ERROR;
        }
    }
    // A replay of an --exec store shows what each child wrote to stderr.
    let stderr_log = (args.repro.is_some() && args.exec.is_some()).then(tearline_blackbox::StderrLog::default);
    let factory: Box<dyn StoreFactory> = match &args.exec {
        Some(command) => match exec_factory(
            command,
            args.timeout,
            !args.no_reuse,
            stderr_log.clone(),
            Default::default(),
        ) {
            Ok(f) => Box::new(f),
            Err(code) => return code,
        },
        None => match factory(&args.matrix.store) {
            Ok(f) => f,
            Err(code) => return code,
        },
    };
    if let Some(line) = &args.repro {
        let context = args
            .context
            .map_or_else(replay::Context::default, replay::Context::around);
        let reproduced = replay::reproduce_line_with(factory.as_ref(), line, context);
        let code = print_reproduction(reproduced);
        if let Some(log) = &stderr_log {
            print!("{}", children_stderr(&log.children()));
        }
        return code;
    }
    let faults = match parse_faults(&args.matrix.faults) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let fault_names: Vec<String> = faults.iter().map(ToString::to_string).collect();
    let Some(sample) = parse_shard(&args.sample) else {
        eprintln!("error: --sample takes i/n with i < n, got {:?}", args.sample);
        return EXIT_HARNESS_ERROR;
    };
    let options = certify::CertifyOptions {
        seed: args.matrix.seed,
        faults,
        sample,
        scenarios: args.scenarios.clone(),
        reproduce_with: match &args.exec {
            Some(command) => format!("`tearline certify --exec {} --repro LINE`", shell_quote(command)),
            None => format!("`tearline certify --store {} --repro LINE`", args.matrix.store),
        },
        driver: match &args.exec {
            Some(command) => format!("black box: `{command}` on a FUSE mount"),
            None => "in-process".to_string(),
        },
        nondeterminism: if args.exec.is_some() {
            tearline_blackbox::NONDETERMINISM
                .iter()
                .map(|n| n.to_string())
                .collect()
        } else {
            Vec::new()
        },
        measure_repeatability: args.exec.is_some(),
        rerun_each_case: args.rerun_each_case,
        jobs: args.jobs,
        worker: (args.jobs > 1).then(|| certify_worker(&args, &fault_names)).flatten(),
        ..certify::CertifyOptions::default()
    };
    if args.plan {
        return print_plan(factory.as_ref(), &options);
    }
    run_certification(factory.as_ref(), &options, &args.reports)
}

/// `certify --plan`: one probe per scenario, the matrix sizes, no case run.
fn print_plan(factory: &dyn StoreFactory, options: &certify::CertifyOptions) -> u8 {
    let lines = match certify::plan(factory, options) {
        Ok(lines) => lines,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_HARNESS_ERROR;
        }
    };
    println!(
        "plan for {} (SEED={}, sample {}/{})\n",
        factory.name(),
        options.seed,
        options.sample.0,
        options.sample.1
    );
    println!("| scenario | syscalls | cases | crash points | derived power cuts | replays | probe (s) |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let (mut cases, mut estimate) = (0, 0.0);
    for line in &lines {
        if let Some(why) = &line.not_applicable_because {
            println!("| {} | not applicable: {why} | | | | | |", line.scenario);
            continue;
        }
        if let Some(error) = &line.error {
            println!(
                "| {} | its fault-free run does not finish (a clean-error finding): {} | | | | | |",
                line.scenario,
                error.replace('\n', " ")
            );
            continue;
        }
        let size = &line.size;
        let replays = size.owned_cases - size.derived_cases;
        let probe = line.probe_time.as_secs_f64();
        cases += size.owned_cases;
        // A replay runs the workload again; a derived power cut only the
        // recovery (counted as half a workload).
        estimate += probe * (replays as f64 + size.derived_cases as f64 / 2.0);
        println!(
            "| {} | {} | {} | {} | {} | {replays} | {probe:.2} |",
            line.scenario, size.workload_syscalls, size.owned_cases, size.crash_points, size.derived_cases
        );
    }
    println!("\n{cases} cases; estimated wall time about {estimate:.0} s (from each probe's time, one job)");
    EXIT_PASS
}

/// The black-box factory for `--exec`: FUSE must work here, and the
/// command must say hello.
/// `, about N s left` in a scenario that took `elapsed` for `done` of its
/// `total` cases, if the rate is known yet (cases cost about the same).
fn time_left(elapsed: Duration, done: u64, total: u64) -> String {
    if done == 0 || done >= total {
        return String::new();
    }
    let left = elapsed.as_secs_f64() * (total - done) as f64 / done as f64;
    format!(", about {left:.0} s left in it")
}

/// What each child of a replay wrote to stderr, in the order they
/// started, with the requests each was sent.
fn children_stderr(children: &[tearline_blackbox::ChildStderr]) -> String {
    let mut text = format!("\nthe store's children ({}), each with its stderr:\n", children.len());
    for child in children {
        let said = child.text.trim_end();
        let _ = writeln!(
            text,
            "  child {}: asked {}; {}",
            child.number,
            if child.requests.is_empty() {
                "nothing after its hello".to_string()
            } else {
                child.requests.join(", ")
            },
            if said.is_empty() { "stderr was empty" } else { "stderr:" }
        );
        for line in said.lines().filter(|_| !said.is_empty()) {
            let _ = writeln!(text, "    | {line}");
        }
    }
    text
}

fn exec_factory(
    command: &str,
    timeout: u64,
    reuse_children: bool,
    stderr_log: Option<tearline_blackbox::StderrLog>,
    cpu: tearline_blackbox::CpuPlacement,
) -> Result<tearline_blackbox::ExecStoreFactory, u8> {
    if let Err(why) = tearline_blackbox::fuse_available() {
        eprintln!(
            "error: --exec needs FUSE: {why}\n(install fuse3 for fusermount3, run as root or a user allowed to \
             mount, and in a container pass --device /dev/fuse --cap-add SYS_ADMIN)"
        );
        return Err(EXIT_HARNESS_ERROR);
    }
    let mut options = tearline_blackbox::ExecOptions::with_timeout(std::time::Duration::from_secs(timeout))
        .with_reuse_children(reuse_children)
        .with_cpu(cpu);
    if let Some(log) = stderr_log {
        options = options.with_stderr_log(log, REPLAY_STDERR_BYTES);
    }
    tearline_blackbox::ExecStoreFactory::new(command, options).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_HARNESS_ERROR
    })
}

/// Where a worker's black-box children run: on the CPU of its local job's
/// number (an unparsable `--part` is reported later).
fn worker_cpu(part: &str) -> tearline_blackbox::CpuPlacement {
    Part::parse_arg(part)
        .and_then(|part| usize::try_from(part.job).ok())
        .map_or_else(Default::default, tearline_blackbox::CpuPlacement::Index)
}

/// `text` as one shell word.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// Runs a certification with a progress bar, prints the certificate and
/// writes its reports.
fn run_certification(factory: &dyn StoreFactory, options: &certify::CertifyOptions, reports: &[PathBuf]) -> u8 {
    println!(
        "certifying {} (SEED={}, sample {}/{})",
        factory.name(),
        options.seed,
        options.sample.0,
        options.sample.1
    );
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg:32} [{bar:40}] {pos}/{len} cases {elapsed}, {eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let started = Instant::now();
    // Off a terminal (a CI log), a line per scenario at every tenth of its
    // cases instead of the bar.
    let lines = !std::io::IsTerminal::is_terminal(&std::io::stderr());
    // The scenario last reported, its tenth, and when it started.
    let printed: std::sync::Mutex<(String, u64, Instant)> = std::sync::Mutex::new((String::new(), 0, started));
    // Crash maps are drawn only for an `.html` report.
    let mut maps = Vec::new();
    let draw = reports
        .iter()
        .any(|path| path.extension().is_some_and(|e| e == "html"))
        .then_some(&mut maps);
    let result = certify::certify_with_progress(
        factory,
        options,
        &|scenario, done, total| {
            bar.set_message(scenario.to_string());
            bar.set_length(total);
            bar.set_position(done);
            if lines && total > 0 {
                let tenth = done * 10 / total;
                let mut last = printed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if last.0 != scenario {
                    *last = (scenario.to_string(), tenth, Instant::now());
                    eprintln!(
                        "{scenario}: {done}/{total} of its matrix ({:.0} s)",
                        started.elapsed().as_secs_f64()
                    );
                } else if tenth > last.1 {
                    last.1 = tenth;
                    eprintln!(
                        "{scenario}: {done}/{total} of its matrix ({:.0} s{})",
                        started.elapsed().as_secs_f64(),
                        time_left(last.2.elapsed(), done, total)
                    );
                }
            }
        },
        draw,
    );
    bar.finish_and_clear();
    let certificate = match result {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: the harness failed: {e}");
            return EXIT_HARNESS_ERROR;
        }
    };
    println!("{}", certificate.to_markdown());
    println!("wall time {:.1} s", started.elapsed().as_secs_f64());
    for path in reports {
        let text = match path.extension().and_then(|e| e.to_str()) {
            Some("json") => certificate.to_json(),
            Some("html") => map::render(
                &map::MapSummary {
                    title: format!("tearline certify ({})", certificate.coverage),
                    store: certificate.store.clone(),
                    seed: certificate.seed,
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    states: certificate.scenarios.iter().map(|s| s.states_checked).sum(),
                    failures: certificate.scenarios.iter().map(|s| s.violations).sum(),
                    seconds: started.elapsed().as_secs_f64(),
                },
                &maps,
            ),
            _ => certificate.to_markdown(),
        };
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("error: writing {}: {e}", path.display());
            return EXIT_HARNESS_ERROR;
        }
        println!("certificate written to {}", path.display());
    }
    if certificate.passed { EXIT_PASS } else { EXIT_VIOLATION }
}

/// Whether a report can be written at `path` once the run ends: its
/// directory exists and `path` is not a directory. Checked before a run, so
/// a typo does not cost the whole run.
fn writable_destination(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return Err("it is a directory".to_string());
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    Ok(())
}

fn parse_shard(text: &str) -> Option<(u64, u64)> {
    let (i, n) = text.split_once('/')?;
    let (i, n) = (i.parse().ok()?, n.parse().ok()?);
    (n > 0 && i < n).then_some((i, n))
}

fn run(args: RunArgs) -> u8 {
    let factory = match factory(&args.matrix.store) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let faults = match parse_faults(&args.matrix.faults) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let Some(shard) = parse_shard(&args.shard) else {
        eprintln!("error: --shard takes i/n with i < n, got {:?}", args.shard);
        return EXIT_HARNESS_ERROR;
    };
    for path in args.json.iter().chain(&args.junit).chain(&args.html) {
        if let Err(why) = writable_destination(path) {
            eprintln!("error: cannot write a report to {}: {why}", path.display());
            return EXIT_HARNESS_ERROR;
        }
    }
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u64))
        .max(1);
    let all = catalogue::entries(factory.as_ref(), args.scale);
    let chosen: Vec<Entry> = if args.names.is_empty() {
        all
    } else {
        let mut chosen = Vec::new();
        for name in &args.names {
            match all.iter().find(|e| e.name() == name) {
                Some(e) => chosen.push(e.clone()),
                None => {
                    eprintln!("error: no scenario named {name:?} (see `tearline list`)");
                    return EXIT_HARNESS_ERROR;
                }
            }
        }
        chosen
    };
    let fault_names: Vec<String> = faults.iter().map(|f| f.to_string()).collect();
    println!(
        "SEED={} store={} faults={} shard={}/{} jobs={jobs} scale={}",
        args.matrix.seed,
        factory.name(),
        fault_names.join(","),
        shard.0,
        shard.1,
        args.scale
    );
    let worker = match std::env::current_exe() {
        Ok(program) => {
            let mut worker_args = vec![
                "worker".to_string(),
                "--store".to_string(),
                args.matrix.store.clone(),
                "--seed".to_string(),
                args.matrix.seed.to_string(),
                "--faults".to_string(),
                fault_names.join(","),
                "--scale".to_string(),
                args.scale.to_string(),
            ];
            if args.check_determinism {
                worker_args.push("--check-determinism".to_string());
            }
            if args.every_state {
                worker_args.push("--every-state".to_string());
            }
            if args.rerun_each_case {
                worker_args.push("--rerun-each-case".to_string());
            }
            worker_args.push(format!("--branch-from={}", args.branch_from));
            Some(WorkerCommand {
                program,
                args: worker_args,
            })
        }
        Err(_) => None,
    };
    let options = RunOptions {
        engine: EngineOptions {
            seed: args.matrix.seed,
            faults,
            check_determinism: args.check_determinism,
            dedup: !args.every_state,
            branch_from: branch_options(Some(args.branch_from), args.rerun_each_case),
            derive_crashes: !args.rerun_each_case,
            ..EngineOptions::default()
        },
        shard,
        jobs,
        worker,
    };
    let started = Instant::now();
    let mut report = RunReport {
        schema_version: REPORT_SCHEMA_VERSION,
        store: factory.name().to_string(),
        seed: args.matrix.seed,
        shard: format!("{}/{}", shard.0, shard.1),
        faults: fault_names,
        scenarios: Vec::new(),
    };
    let mut seconds = Vec::new();
    let mut maps = Vec::new();
    // On a terminal, a bar per scenario; off one (a CI log), a line as each
    // scenario ends.
    let terminal = std::io::stderr().is_terminal();
    for (n, entry) in chosen.iter().enumerate() {
        // Hidden until the matrix is sized, so no frame says "0/0".
        let bar = ProgressBar::hidden();
        bar.set_style(
            ProgressStyle::with_template("{msg:32} [{bar:40}] {pos}/{len} cases {elapsed}, {eta} left")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(entry.name().to_string());
        let scenario_start = Instant::now();
        // Off a terminal, a heartbeat at most every --heartbeat seconds.
        let heartbeat = Duration::from_secs(args.heartbeat);
        let last_beat = std::sync::Mutex::new(scenario_start);
        let result = run::run_entry(entry, factory.as_ref(), &options, &|done, total| {
            if terminal && bar.is_hidden() {
                bar.set_draw_target(ProgressDrawTarget::stderr());
            }
            bar.set_length(total);
            bar.set_position(done);
            if !terminal && done < total {
                let mut last = last_beat.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if last.elapsed() >= heartbeat {
                    *last = Instant::now();
                    eprintln!(
                        "[{}/{}] {}: {done}/{total} cases, {:.0} s so far{}",
                        n + 1,
                        chosen.len(),
                        entry.name(),
                        scenario_start.elapsed().as_secs_f64(),
                        time_left(scenario_start.elapsed(), done, total)
                    );
                }
            }
        });
        bar.finish_and_clear();
        if !terminal && let Ok(result) = &result {
            eprintln!(
                "[{}/{}] {}: {} states, {} readers, {:.1} s: {}",
                n + 1,
                chosen.len(),
                result.scenario,
                result.states_checked,
                result.reader_observations,
                scenario_start.elapsed().as_secs_f64(),
                if result.passed { "pass" } else { "FAIL" }
            );
        }
        let result = match result {
            Ok(result) => result,
            Err(e) => {
                eprintln!("error: {}: the harness failed: {e}", entry.name());
                return EXIT_HARNESS_ERROR;
            }
        };
        seconds.push(scenario_start.elapsed().as_secs_f64());
        // A crash map draws syscalls: a network scenario has none.
        if args.html.is_some()
            && result.not_applicable.is_none()
            && let Ok(subject) = entry.subject(factory.as_ref())
        {
            match map::scenario_map(
                subject.as_ref(),
                &options.engine,
                result.passed,
                &result.verdict,
                &result.failures,
            ) {
                Ok(map) => maps.push(map),
                Err(e) => {
                    eprintln!("error: {}: drawing its crash map failed: {e}", entry.name());
                    return EXIT_HARNESS_ERROR;
                }
            }
        }
        if !result.passed {
            eprintln!("FAIL {}: {}", result.scenario, result.verdict);
            for invariant in result
                .invariants
                .iter()
                .filter(|i| i.status == InvariantStatus::Failed)
                .take(args.show)
            {
                eprintln!(
                    "  {} broke at {} cases: {}\n    reproduce: tearline repro {}",
                    invariant.invariant,
                    invariant.failures,
                    invariant.evidence.as_deref().unwrap_or(""),
                    invariant.repro_line().unwrap_or_else(|| "?".to_string()),
                );
            }
        }
        report.scenarios.push(result);
    }
    print_summary(&report, &seconds);
    println!("total wall time {:.1} s", started.elapsed().as_secs_f64());
    if let Some(path) = &args.json
        && let Err(e) = std::fs::write(path, report.to_json())
    {
        eprintln!("error: writing {}: {e}", path.display());
        return EXIT_HARNESS_ERROR;
    }
    if let Some(path) = &args.junit
        && let Err(e) = std::fs::write(path, report.to_junit(&seconds))
    {
        eprintln!("error: writing {}: {e}", path.display());
        return EXIT_HARNESS_ERROR;
    }
    if let Some(path) = &args.html {
        let summary = map::MapSummary {
            title: "tearline run".to_string(),
            store: report.store.clone(),
            seed: report.seed,
            version: env!("CARGO_PKG_VERSION").to_string(),
            states: report.scenarios.iter().map(|s| s.states_checked).sum(),
            failures: report.scenarios.iter().map(|s| s.failures.len() as u64).sum(),
            seconds: started.elapsed().as_secs_f64(),
        };
        if let Err(e) = std::fs::write(path, map::render(&summary, &maps)) {
            eprintln!("error: writing {}: {e}", path.display());
            return EXIT_HARNESS_ERROR;
        }
        println!("crash map written to {}", path.display());
    }
    if report.passed() { EXIT_PASS } else { EXIT_VIOLATION }
}

fn print_summary(report: &RunReport, seconds: &[f64]) {
    println!();
    println!(
        "{:<32} {:>8} {:>7} {:>8} {:>8} {:>8} {:>9} {:>8} {:>10}  verdict",
        "scenario", "syscalls", "points", "states", "distinct", "readers", "failures", "time s", "states/s"
    );
    let (mut states, mut distinct, mut readers, mut time) = (0, 0, 0, 0.0);
    for (result, secs) in report.scenarios.iter().zip(seconds) {
        let rate = if *secs > 0.0 {
            result.states_checked as f64 / secs
        } else {
            0.0
        };
        states += result.states_checked;
        distinct += result.distinct_states;
        readers += result.reader_observations;
        time += secs;
        println!(
            "{:<32} {:>8} {:>7} {:>8} {:>8} {:>8} {:>9} {:>8.1} {:>10.0}  {}",
            result.scenario,
            result.workload_syscalls,
            result.crash_points,
            result.states_checked,
            result.distinct_states,
            result.reader_observations,
            result.failures.len() + result.net_failures.len(),
            secs,
            rate,
            result.verdict
        );
    }
    let rate = if time > 0.0 { states as f64 / time } else { 0.0 };
    println!(
        "{:<32} {:>8} {:>7} {states:>8} {distinct:>8} {readers:>8} {:>9} {time:>8.1} {rate:>10.0}",
        "total", "", "", ""
    );
    for result in &report.scenarios {
        for invariant in &result.invariants {
            if invariant.status == InvariantStatus::KnownFinding {
                println!(
                    "\n{} reproduced a known finding ({}) at {} cases\n  e.g. {}\n  reproduce: tearline repro {}",
                    result.scenario,
                    invariant.invariant,
                    invariant.failures,
                    invariant.evidence.as_deref().unwrap_or(""),
                    invariant.repro_line().unwrap_or_else(|| "?".to_string())
                );
            }
        }
    }
}

/// [`EngineOptions::branch_from`] from `--branch-from` and `--rerun-each-case`.
fn branch_options(from: Option<u64>, rerun_each_case: bool) -> Option<u64> {
    (!rerun_each_case).then(|| from.unwrap_or(tearline::engine::BRANCH_FROM))
}

fn worker(args: &WorkerArgs) -> u8 {
    let WorkerArgs {
        store,
        exec,
        timeout,
        no_reuse,
        scenario,
        seed,
        faults,
        scale,
        part,
        check_determinism,
        every_state,
        rerun_each_case,
        branch_from,
    } = args;
    let factory: Box<dyn StoreFactory> = match exec {
        // Each worker's children on a CPU of their own (see ExecOptions::cpu).
        Some(command) => match exec_factory(command, *timeout, !*no_reuse, None, worker_cpu(part)) {
            Ok(f) => Box::new(f),
            Err(code) => return code,
        },
        None => match factory(store) {
            Ok(f) => f,
            Err(code) => return code,
        },
    };
    let faults = match parse_faults(faults) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let Some(part) = Part::parse_arg(part) else {
        eprintln!("error: bad --part {part:?}");
        return EXIT_HARNESS_ERROR;
    };
    let Some(entry) = catalogue::find_entry(factory.as_ref(), scenario, *scale) else {
        eprintln!("error: no scenario named {scenario:?}");
        return EXIT_HARNESS_ERROR;
    };
    let options = EngineOptions {
        seed: *seed,
        faults,
        check_determinism: *check_determinism,
        dedup: !every_state,
        branch_from: branch_options(*branch_from, *rerun_each_case),
        derive_crashes: !rerun_each_case,
        ..EngineOptions::default()
    };
    let mut last = 0;
    let result = run::run_part(&entry, factory.as_ref(), &options, part, &mut |done, total| {
        let step = (total / 100).max(1);
        if done == total || done >= last + step {
            last = done;
            eprintln!("progress {done} {total}");
        }
    });
    match result {
        Ok(result) => match serde_json::to_string(&result) {
            Ok(json) => {
                println!("{json}");
                EXIT_PASS
            }
            Err(e) => {
                eprintln!("error: {e}");
                EXIT_HARNESS_ERROR
            }
        },
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_HARNESS_ERROR
        }
    }
}

fn repro(line: &str, store: Option<&str>, context: Option<usize>) -> u8 {
    let scenario = line.trim().split(':').next().unwrap_or_default();
    if tearline::net::find(scenario).is_some() {
        return print_report(replay::reproduce_net_line(line, store).map(|r| (r.report, r.violations.is_empty())));
    }
    let mut case: Case = match line.parse() {
        Ok(case) => case,
        Err(e) => {
            eprintln!("error: {line:?}: {e}");
            return EXIT_HARNESS_ERROR;
        }
    };
    if let Some(store) = store {
        case.store = store.to_string();
    }
    let factory = match factory(&case.store) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let context = context.map_or_else(replay::Context::default, replay::Context::around);
    print_reproduction(replay::reproduce_with(factory.as_ref(), &case, context))
}

fn print_reproduction(result: Result<replay::Reproduction, engine::HarnessError>) -> u8 {
    print_report(result.map(|r| (r.report, r.violations.is_empty())))
}

/// Prints a replay's report; the exit code says whether it held.
fn print_report(result: Result<(String, bool), engine::HarnessError>) -> u8 {
    match result {
        Ok((report, held)) => {
            print!("{report}");
            if held { EXIT_PASS } else { EXIT_VIOLATION }
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_HARNESS_ERROR
        }
    }
}
