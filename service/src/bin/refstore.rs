//! `refstore`: the reference store on the real filesystem.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use tearline_refstore::vectors::{LocalVectors, VectorBackend};
use tearline_refstore::{
    FailureEffect, RebuildMode, ReconcileMode, ReconcileOptions, SkippedSource, Store, StoreError, StoreOptions,
};
use tearline_service::vectors::{RemoteOptions, RemoteVectors, VectorServerClient};
use tearline_sim_fs::{Clock, Fs, RealFs, SystemClock};

#[derive(Parser)]
#[command(
    name = "refstore",
    version,
    about = "The Tearline reference document store",
    after_help = "Exit status: 0 done; 1 failed and nothing was changed (or verify found a problem); \
                  2 bad arguments; 3 failed, but it may be applied (the message says whether the next \
                  writable command finishes it); 4 a read refused because a write is unfinished (retry, \
                  or run any write command to recover); 5 refused because a file derived from the sources \
                  (CURRENT, an index, a vector segment) is damaged (the message names it; any write \
                  command, or `rebuild --full`, rebuilds it from the source files)."
)]
struct Cli {
    /// The store's root directory.
    #[arg(long, global = true, default_value = ".")]
    root: PathBuf,
    /// Print results as JSON.
    #[arg(long, global = true)]
    json: bool,
    /// Keep the vectors on a `vector-server` at this URL
    /// (`http://127.0.0.1:8751`), a collection per generation, instead of
    /// in files beside the index. A store initialised with it must be
    /// opened with it by every command.
    #[arg(long, global = true, value_name = "URL")]
    vectors: Option<String>,
    /// The prefix of this store's collection names on the vector server
    /// (stores sharing a server need different ones).
    #[arg(long, global = true, value_name = "PREFIX", default_value = "", requires = "vectors")]
    vectors_prefix: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create an empty store at --root.
    Init,
    /// Add (or replace) documents: each FILE is stored under its file name.
    Add {
        /// Files to add.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Remove a document.
    Rm {
        /// The document's name.
        name: String,
    },
    /// Give a document a share link: a clean or full reconcile never
    /// deletes it (it is reported as protected) while the link is active.
    Share {
        /// The document's name.
        name: String,
    },
    /// Revoke a document's share link.
    Unshare {
        /// The document's name.
        name: String,
    },
    /// Make OWNER the owner of a document: a reconcile scoped to another
    /// owner (--user) leaves it alone.
    Own {
        /// The document's name.
        name: String,
        /// The owner's id (ASCII letters, digits, '.', '_', '-').
        owner: String,
    },
    /// Print a document.
    Get {
        /// The document's name.
        name: String,
    },
    /// Find the documents whose summaries are nearest to TEXT.
    Search {
        /// The query.
        text: String,
        /// How many results.
        #[arg(short, default_value_t = 5)]
        k: usize,
    },
    /// Check the index, the vectors and the sources agree (exit 1 if not).
    Verify,
    /// Show the store's generation, schema, counts and pending work.
    Status,
    /// Rebuild the index from the source files if its schema requires it.
    Upgrade,
    /// Rebuild the index: --full builds a new generation beside the live one
    /// and switches to it atomically (the old one stays as a backup);
    /// --incremental re-indexes only what changed.
    Rebuild {
        /// Build a whole new generation (the default).
        #[arg(long, conflicts_with = "incremental")]
        full: bool,
        /// Re-index only changed, new and deleted documents.
        #[arg(long)]
        incremental: bool,
    },
    /// Import every file of DIR as documents, all or nothing.
    Import {
        /// The directory to import (not inside the store).
        dir: PathBuf,
    },
    /// Compare the index with the source files (the filesystem wins) and,
    /// depending on the mode, bring it in line.
    Reconcile {
        /// audit: report only; sync: add missing, refresh stale; clean: delete
        /// entries whose file is gone (needs --force); full: sync + clean (needs --force).
        #[arg(long, value_parser = ["audit", "sync", "clean", "full"], default_value = "audit")]
        mode: String,
        /// Report what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Allow the modes that delete index entries.
        #[arg(long)]
        force: bool,
        /// Only this owner's records (set with `refstore own`).
        #[arg(long, value_name = "OWNER")]
        user: Option<String>,
    },
    /// Serve the store over HTTP/JSON under /v1 until interrupted (keys from
    /// --keys FILE or REFSTORE_KEYS="admin:KEY,reader:KEY"; see the README).
    Serve {
        /// The address to listen on: loopback unless you say otherwise.
        #[arg(long, default_value = "127.0.0.1:8750")]
        bind: std::net::SocketAddr,
        /// A key file: one `ROLE KEY` per line (roles: reader, writer, admin).
        #[arg(long)]
        keys: Option<PathBuf>,
        /// The largest request body accepted, in bytes.
        #[arg(long, default_value_t = tearline_service::api::DEFAULT_MAX_BODY_BYTES)]
        max_body_bytes: usize,
        /// A known-bad service design, for the service's own tests.
        #[cfg(feature = "flawed-variants")]
        #[arg(long, hide = true)]
        flaw: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            let code = exit_code(&e);
            let fix = fix_for(&cli.command, &e);
            eprintln!("refstore: {e}");
            if let Some(fix) = &fix {
                eprintln!("refstore: to fix: {fix}");
            }
            if cli.json {
                // A script reads one stream: the error is JSON on stdout too.
                let error = serde_json::json!({
                    "schema_version": JSON_SCHEMA_VERSION,
                    "error": e.to_string(),
                    "effect": e.effect(),
                    "exit_status": exit_status(&e),
                    "fix": fix,
                });
                println!("{error}");
            }
            code
        }
    }
}

/// `refstore serve`'s options.
struct ServeOptions<'a> {
    bind: std::net::SocketAddr,
    keys: Option<&'a Path>,
    max_body_bytes: usize,
    #[cfg(feature = "flawed-variants")]
    flaw: Option<tearline_service::flawed::ServiceFlaw>,
}

/// `refstore serve`: opens the store (recovering), starts the startup
/// audit, and serves until SIGINT or SIGTERM. Prints `listening on
/// http://ADDR` once the socket is bound (port 0 picks a free one).
fn serve(root: &Path, vectors: Arc<dyn VectorBackend>, serve: ServeOptions<'_>) -> Result<(), String> {
    use tearline_service::{Keys, Service, ServiceOptions};
    let ServeOptions {
        bind,
        keys,
        max_body_bytes,
        #[cfg(feature = "flawed-variants")]
        flaw,
    } = serve;
    let keys = match (keys, std::env::var("REFSTORE_KEYS")) {
        (Some(file), _) => {
            let text = std::fs::read_to_string(file).map_err(|e| format!("reading {}: {e}", file.display()))?;
            Keys::parse_file(&text).map_err(|e| format!("{}: {e}", file.display()))?
        }
        (None, Ok(list)) => Keys::parse_list(&list).map_err(|e| format!("REFSTORE_KEYS: {e}"))?,
        (None, Err(_)) => {
            return Err(
                "no keys: give --keys FILE (`ROLE KEY` per line) or REFSTORE_KEYS=\"admin:KEY\" \
                        (roles reader, writer, admin; keys of 16 characters or more)"
                    .to_string(),
            );
        }
    };
    let fs: Arc<dyn Fs> = Arc::new(RealFs);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let options = ServiceOptions {
        #[cfg(feature = "flawed-variants")]
        flaw,
        ..ServiceOptions::new(root, keys, std::env::temp_dir()).with_vector_backend(vectors)
    };
    let service = Service::open(fs, clock, options).map_err(|e| {
        let fix = fix_for(&Command::Upgrade, &e)
            .map(|f| format!(" (to fix: {f})"))
            .unwrap_or_default();
        format!("{e}{fix}")
    })?;
    service.start_audit();
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("starting the runtime: {e}"))?;
    runtime.block_on(tearline_service::listen::serve(
        bind,
        tearline_service::router(service, max_body_bytes),
    ))
}

/// Where the store's vectors live: `--vectors URL`'s server (its client
/// with `serve --flaw`'s known-bad design where that is the vector
/// client's), or files beside the index.
fn vector_backend(cli: &Cli) -> Arc<dyn VectorBackend> {
    let flaw = match &cli.command {
        #[cfg(feature = "flawed-variants")]
        Command::Serve { flaw: Some(flaw), .. } => flaw.as_str(),
        _ => "",
    };
    match &cli.vectors {
        Some(url) => {
            let server = VectorServerClient::new(url, RemoteOptions::default()).with_flaw_named(flaw);
            Arc::new(RemoteVectors::new(server, &cli.vectors_prefix))
        }
        None => Arc::new(LocalVectors),
    }
}

/// The command that gets past `error`, when there is one.
fn fix_for(command: &Command, error: &StoreError) -> Option<String> {
    match error {
        StoreError::NotInitialized { .. } => Some("`refstore init`".to_string()),
        StoreError::RebuildRequired { .. } => {
            Some("`refstore upgrade` rebuilds the index from the source files under this build's schema".to_string())
        }
        StoreError::ForceRequired { .. } => Some("add `--force` (preview with `--dry-run`)".to_string()),
        StoreError::RecoveryPending { .. }
        | StoreError::CommittedNotIndexed { .. }
        | StoreError::RollbackFailed { .. } => {
            Some("any write command (`refstore upgrade`, say) recovers the unfinished work".to_string())
        }
        StoreError::Damaged { .. } | StoreError::Corrupt { .. } if !matches!(command, Command::Rebuild { .. }) => {
            Some("`refstore rebuild --full` rebuilds the index from the source files".to_string())
        }
        StoreError::Locked { .. } => Some("wait for the other writer to exit, or open read-only".to_string()),
        _ => None,
    }
}

/// Names, on stderr, what `source/` holds that is not a document.
fn warn_skipped(skipped: &[SkippedSource]) {
    if skipped.is_empty() {
        return;
    }
    eprintln!(
        "refstore: warning: {} entries of source/ are not documents and were skipped:",
        skipped.len()
    );
    for entry in skipped {
        eprintln!("  {}: {}", entry.name, entry.reason);
    }
}

/// The exit status of a failure: it tells a script whether the store changed.
fn exit_status(error: &StoreError) -> u8 {
    match error.effect() {
        // A vector store that cannot be reached refuses before anything changes.
        FailureEffect::NothingApplied | FailureEffect::Unavailable => 1,
        FailureEffect::Unknown => 3,
        FailureEffect::RecoveryPending => 4,
        FailureEffect::Damaged => 5,
    }
}

fn exit_code(error: &StoreError) -> ExitCode {
    ExitCode::from(exit_status(error))
}

/// The version of every `--json` document's schema (`schemas/refstore/`).
const JSON_SCHEMA_VERSION: u32 = 1;

fn print<T: serde::Serialize>(json: bool, value: &T) -> Result<(), StoreError> {
    if json {
        // Every document is an object that names its schema's version.
        let mut value = serde_json::to_value(value).map_err(|e| StoreError::Io {
            context: "writing JSON".to_string(),
            source: std::io::Error::other(e),
        })?;
        if let Some(fields) = value.as_object_mut() {
            fields.insert("schema_version".to_string(), JSON_SCHEMA_VERSION.into());
        }
        let text = serde_json::to_string_pretty(&value).map_err(|e| StoreError::Io {
            context: "writing JSON".to_string(),
            source: std::io::Error::other(e),
        })?;
        println!("{text}");
    } else {
        let value = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        print!("{}", human(&value, 0));
    }
    Ok(())
}

/// A value for people: one aligned `key  value` line per field (keys in
/// words), lists joined, nested records indented, empty lists as `none`.
fn human(value: &serde_json::Value, indent: usize) -> String {
    use serde_json::Value;
    let pad = " ".repeat(indent);
    let scalar = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    };
    let flat = |v: &Value| match v {
        Value::Array(items) if items.is_empty() => Some("none".to_string()),
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            Some(items.iter().map(scalar).collect::<Vec<_>>().join(", "))
        }
        Value::Object(_) | Value::Array(_) => None,
        other => Some(scalar(other)),
    };
    match value {
        Value::Object(fields) => {
            let width = fields.keys().map(|k| k.len()).max().unwrap_or(0);
            let mut out = String::new();
            for (key, v) in fields {
                let key = key.replace('_', " ");
                match flat(v) {
                    Some(text) => out.push_str(&format!("{pad}{key:width$}  {text}\n")),
                    None => out.push_str(&format!("{pad}{key}:\n{}", human(v, indent + 2))),
                }
            }
            out
        }
        // Records in a list, a blank line between them.
        Value::Array(items) => items
            .iter()
            .map(|item| flat(item).map_or_else(|| human(item, indent), |text| format!("{pad}{text}\n")))
            .collect::<Vec<_>>()
            .join("\n"),
        other => format!("{pad}{}\n", scalar(other)),
    }
}

fn run(cli: &Cli) -> Result<ExitCode, StoreError> {
    let fs: Arc<dyn Fs> = Arc::new(RealFs);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let root = cli.root.as_path();
    let backend = vector_backend(cli);
    let open = |options| {
        let options = StoreOptions {
            vector_backend: Arc::clone(&backend),
            ..options
        };
        Store::open(Arc::clone(&fs), Arc::clone(&clock), root, options)
    };
    match &cli.command {
        Command::Init => {
            let options = StoreOptions {
                vector_backend: Arc::clone(&backend),
                ..StoreOptions::default()
            };
            Store::init_with(Arc::clone(&fs), Arc::clone(&clock), root, &options)?;
            if cli.json {
                print(true, &serde_json::json!({"initialised": root}))?;
            } else {
                println!("initialised an empty store at {}", root.display());
            }
        }
        Command::Add { files } => {
            let mut store = open(StoreOptions::default())?;
            report_recovery(&store);
            let mut done = Vec::new();
            for (i, file) in files.iter().enumerate() {
                let added = file_name(file).and_then(|name| {
                    let content = std::fs::read(file).map_err(|source| StoreError::Io {
                        context: format!("reading {}", file.display()),
                        source,
                    })?;
                    Ok((store.add(&name, &content)?, name))
                });
                match added {
                    Ok((outcome, name)) => {
                        let verb = if outcome.replaced { "replaced" } else { "added" };
                        if !cli.json {
                            println!("{verb} {name} (vector {})", outcome.vector_id);
                        }
                        done.push(serde_json::json!({"name": name, "done": verb, "vector": outcome.vector_id}));
                    }
                    Err(e) => {
                        // Each add is its own mutation: say what is in and what was not tried.
                        let not_tried: Vec<String> = files[i + 1..].iter().map(|f| f.display().to_string()).collect();
                        if !not_tried.is_empty() {
                            eprintln!(
                                "refstore: {} of {} files added; {} failed; not tried: {}",
                                done.len(),
                                files.len(),
                                file.display(),
                                not_tried.join(", ")
                            );
                        }
                        if cli.json {
                            print(
                                true,
                                &serde_json::json!({"done": done, "failed": file, "not_tried": not_tried}),
                            )?;
                        }
                        return Err(e);
                    }
                }
            }
            if cli.json {
                print(true, &serde_json::json!({"done": done}))?;
            }
        }
        Command::Rm { name } => {
            let mut store = open(StoreOptions::default())?;
            report_recovery(&store);
            store.remove(name)?;
            if cli.json {
                print(true, &serde_json::json!({"removed": name}))?;
            } else {
                println!("removed {name}");
            }
        }
        Command::Share { name } | Command::Unshare { name } => {
            let shared = matches!(cli.command, Command::Share { .. });
            let mut store = open(StoreOptions::default())?;
            report_recovery(&store);
            if shared {
                store.share(name)?;
            } else {
                store.unshare(name)?;
            }
            if cli.json {
                print(true, &serde_json::json!({"name": name, "shared": shared}))?;
            } else if shared {
                println!("shared {name}: a clean keeps it while the link is active");
            } else {
                println!("unshared {name}");
            }
        }
        Command::Own { name, owner } => {
            let mut store = open(StoreOptions::default())?;
            report_recovery(&store);
            store.set_owner(name, owner)?;
            if cli.json {
                print(true, &serde_json::json!({"name": name, "owner": owner}))?;
            } else {
                println!("{name} belongs to {owner}");
            }
        }
        Command::Get { name } => {
            let store = open(StoreOptions::read_only())?;
            match store.get(name)? {
                Some(doc) if cli.json => print(true, &doc)?,
                Some(doc) => print!("{}", doc.content),
                None => {
                    return Err(StoreError::NotFound { name: name.clone() });
                }
            }
        }
        Command::Search { text, k } => {
            let store = open(StoreOptions::read_only())?;
            let hits = store.search(text, *k)?;
            if cli.json {
                print(true, &serde_json::json!({ "hits": hits }))?;
            } else {
                for hit in hits {
                    println!("{:.3}  {}  {}", hit.score, hit.name, hit.summary);
                }
            }
        }
        Command::Verify => {
            let store = open(StoreOptions::read_only())?;
            let report = store.verify()?;
            warn_skipped(&report.skipped_sources);
            print(cli.json, &report)?;
            if !report.is_clean() {
                eprintln!(
                    "refstore: the store is not consistent; to fix: any write command (`refstore upgrade`, say) \
                     recovers pending work, and `refstore reconcile --mode sync` brings the index in line with \
                     the source files (`--mode full --force` also drops entries whose file is gone)"
                );
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Status => {
            let store = open(StoreOptions::read_only())?;
            print(cli.json, &store.status()?)?;
        }
        Command::Serve {
            bind,
            keys,
            max_body_bytes,
            #[cfg(feature = "flawed-variants")]
            flaw,
        } => {
            #[cfg(feature = "flawed-variants")]
            let flaw = match flaw
                .as_deref()
                .map(|name| (name, tearline_service::flawed::ServiceFlaw::parse(name)))
            {
                None => None,
                Some((_, Some(flaw))) => Some(flaw),
                Some((name, None)) => {
                    eprintln!("refstore: unknown flaw {name}");
                    return Ok(ExitCode::from(2));
                }
            };
            let options = ServeOptions {
                bind: *bind,
                keys: keys.as_deref(),
                max_body_bytes: *max_body_bytes,
                #[cfg(feature = "flawed-variants")]
                flaw,
            };
            // Its errors are not the store's: said here, exit status 1.
            if let Err(message) = serve(root, Arc::clone(&backend), options) {
                eprintln!("refstore: {message}");
                return Ok(ExitCode::from(1));
            }
        }
        Command::Reconcile {
            mode,
            dry_run,
            force,
            user,
        } => {
            let mode = ReconcileMode::parse(mode).ok_or_else(|| StoreError::InvalidName {
                name: mode.clone(),
                reason: "not a reconcile mode",
            })?;
            let options = if mode == ReconcileMode::Audit || *dry_run {
                StoreOptions::read_only()
            } else {
                StoreOptions::default()
            };
            let mut store = open(options)?;
            let stats = store.reconcile(ReconcileOptions {
                mode,
                dry_run: *dry_run,
                force: *force,
                owner: user.clone(),
            })?;
            print(cli.json, &stats)?;
            if !stats.errors.is_empty() {
                eprintln!("refstore: {} documents could not be reconciled", stats.errors.len());
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Rebuild { incremental, .. } => {
            let mode = if *incremental {
                RebuildMode::Incremental
            } else {
                RebuildMode::Full
            };
            let mut store = open(StoreOptions::default())?;
            report_recovery(&store);
            let mut shown = Progress::new("rebuild");
            let stats = store.rebuild(mode, &mut |p| shown.update("indexing", p.done, p.total, &p.name));
            shown.finish();
            let stats = stats?;
            warn_skipped(&stats.skipped);
            print(cli.json, &stats)?;
        }
        Command::Import { dir } => {
            let mut store = open(StoreOptions::default())?;
            report_recovery(&store);
            let mut shown = Progress::new("import");
            let stats = store.import_with_progress(dir, &mut |p| shown.update(p.phase, p.done, p.total, &p.name));
            shown.finish();
            let stats = stats?;
            warn_skipped_import(&stats.skipped);
            print(cli.json, &stats)?;
        }
        Command::Upgrade => {
            let store = open(StoreOptions {
                rebuild_if_needed: true,
                ..StoreOptions::default()
            })?;
            report_recovery(&store);
            print(cli.json, store.open_report())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A long command's progress: a bar on a terminal; off one (a log), a line
/// as each phase starts and at most every [`Progress::EVERY`] within it.
struct Progress {
    command: &'static str,
    bar: Option<ProgressBar>,
    last: Instant,
    phase: String,
}

impl Progress {
    const EVERY: Duration = Duration::from_secs(2);

    fn new(command: &'static str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("{prefix:>9} [{bar:40}] {pos}/{len} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar
        });
        Progress {
            command,
            bar,
            last: Instant::now(),
            phase: String::new(),
        }
    }

    fn update(&mut self, phase: &str, done: usize, total: usize, name: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_prefix(phase.to_string());
                bar.set_length(total as u64);
                bar.set_position(done as u64);
                bar.set_message(name.to_string());
            }
            None if self.phase != phase || self.last.elapsed() >= Self::EVERY => {
                self.last = Instant::now();
                self.phase = phase.to_string();
                eprintln!("refstore: {}: {phase} {done}/{total} ({name})", self.command);
            }
            None => {}
        }
    }

    fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

fn report_recovery(store: &Store) {
    let open = store.open_report();
    if let Some(repair) = &open.repaired {
        let kept = repair.kept_aside.as_ref().map_or(String::new(), |kept| {
            format!("; the damaged generation is kept at {kept} for inspection")
        });
        eprintln!(
            "refstore: repaired: {} was damaged ({}); gen-{:06} was rebuilt from the source files and is live{kept}",
            repair.damaged.display(),
            repair.detail,
            repair.generation
        );
    }
    if let Some(error) = &open.cleanup_error {
        eprintln!("refstore: warning: removing old generations failed ({error}); the next write command retries");
    }
    if let Some(why) = &open.vectors_deferred {
        eprintln!(
            "refstore: warning: the vector store is down ({why}): interrupted work was finished at the files and the \
             index, so reads serve a whole state; what the vectors owe, and every write, waits until it is back"
        );
    }
    for line in recovery_lines(open) {
        eprintln!("refstore: recovered: {line}");
    }
}

/// What a writable open's recovery did, one line each, naming the files.
fn recovery_lines(open: &tearline_refstore::OpenReport) -> Vec<String> {
    let dual = &open.recovery;
    let journals = &open.journals;
    let mut lines = Vec::new();
    let mut say = |what: &str, items: Vec<String>| {
        if !items.is_empty() {
            lines.push(format!("{what}: {}", items.join(", ")));
        }
    };
    let journal = |id: &String| format!("journal/{id}.json");
    say(
        "interrupted mutations rolled back (their files restored)",
        journals.rolled_back.iter().map(journal).collect(),
    );
    say(
        "committed mutations finished (indexed)",
        journals.completed.iter().map(journal).collect(),
    );
    say(
        "rolled-back mutations cleaned up",
        journals.cleaned_up.iter().map(journal).collect(),
    );
    say(
        "malformed journals quarantined",
        journals.quarantined.iter().map(ToString::to_string).collect(),
    );
    say("documents reindexed to match their files", journals.reindexed.clone());
    say("leftovers removed", journals.leftovers_removed.clone());
    say("interrupted adds and removals completed", dual.completed.clone());
    say("interrupted adds and removals undone", dual.undone.clone());
    say(
        "orphan vectors removed",
        dual.orphan_vectors_removed.iter().map(ToString::to_string).collect(),
    );
    say(
        "vectors deleted for dropped documents",
        dual.dropped_vectors.iter().map(ToString::to_string).collect(),
    );
    say("missing vectors recomputed", dual.vectors_restored.clone());
    say("temporary files removed", dual.temp_files_removed.clone());
    lines
}

/// Names, on stderr, what an import left out of the directory.
fn warn_skipped_import(skipped: &[SkippedSource]) {
    if skipped.is_empty() {
        return;
    }
    eprintln!("refstore: warning: {} entries were not imported:", skipped.len());
    for entry in skipped {
        eprintln!("  {}: {}", entry.name, entry.reason);
    }
}

fn file_name(path: &Path) -> Result<String, StoreError> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| StoreError::InvalidName {
            name: path.display().to_string(),
            reason: "the file has no UTF-8 file name",
        })
}
