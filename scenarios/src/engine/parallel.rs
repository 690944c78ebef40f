//! Splitting a matrix over CI shards and local worker processes, and
//! merging what they find.
//!
//! A [`Part`] is one CI shard (`--shard i/n`) and, within it, one of
//! `jobs` local workers. Case `c` belongs to shard `c % n`, and within it to
//! job `(c / n) % jobs`: any split covers every case exactly once, and
//! [`super::PartResult::merge`] orders the results by case number, so the
//! merged result is the same for any `jobs` and the union of the shards is
//! the whole.
//!
//! Local workers are processes, not threads: SQLite's PRNG is
//! process-global, so two simulations running SQLite on threads of one
//! process would perturb each other. The `tearline` binary re-invokes
//! itself with a hidden `worker` subcommand ([`WorkerCommand`]); a worker
//! prints `progress <done> <total>` lines on stderr and its
//! [`super::PartResult`] as JSON on stdout.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{HarnessError, PartResult};

/// One part of a matrix: shard `shard` of `shards`, job `job` of `jobs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Part {
    /// The CI shard (0-based).
    pub shard: u64,
    /// How many CI shards (at least 1).
    pub shards: u64,
    /// The local job within the shard (0-based).
    pub job: u64,
    /// How many local jobs (at least 1).
    pub jobs: u64,
}

impl Part {
    /// The whole matrix.
    pub const WHOLE: Part = Part {
        shard: 0,
        shards: 1,
        job: 0,
        jobs: 1,
    };

    /// Whether case (or point) number `index` belongs to this part's CI
    /// shard (to any of its jobs).
    pub fn shard_owns(&self, index: u64) -> bool {
        index % self.shards.max(1) == self.shard
    }

    /// Whether case (or point) number `index` belongs to this part.
    pub fn owns(&self, index: u64) -> bool {
        let (shards, jobs) = (self.shards.max(1), self.jobs.max(1));
        index % shards == self.shard && (index / shards) % jobs == self.job
    }

    /// The `jobs` parts of CI shard `shard` of `shards`.
    pub fn split(shard: u64, shards: u64, jobs: u64) -> Vec<Part> {
        (0..jobs.max(1))
            .map(|job| Part {
                shard,
                shards: shards.max(1),
                job,
                jobs: jobs.max(1),
            })
            .collect()
    }

    /// `shard/shards/job/jobs`, as the worker takes it.
    pub fn to_arg(&self) -> String {
        format!("{}/{}/{}/{}", self.shard, self.shards, self.job, self.jobs)
    }

    /// Parses [`Part::to_arg`].
    pub fn parse_arg(text: &str) -> Option<Part> {
        let numbers: Vec<u64> = text.split('/').map(|n| n.parse().ok()).collect::<Option<_>>()?;
        let [shard, shards, job, jobs] = numbers[..] else {
            return None;
        };
        (shards > 0 && jobs > 0 && shard < shards && job < jobs).then_some(Part {
            shard,
            shards,
            job,
            jobs,
        })
    }
}

/// How to start a worker: the program and the arguments before `--part`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerCommand {
    /// The program (the running `tearline`, from `std::env::current_exe`).
    pub program: PathBuf,
    /// Its arguments (`worker --store … --scenario … --seed …`).
    pub args: Vec<String>,
}

/// Runs each part in its own worker process, all at once, and returns their
/// results in part order. `progress(done, total)` sums the workers' progress.
pub fn run_parts(
    command: &WorkerCommand,
    parts: &[Part],
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Vec<PartResult>, HarnessError> {
    let done: Arc<Vec<AtomicU64>> = Arc::new(parts.iter().map(|_| AtomicU64::new(0)).collect());
    let total = Arc::new(AtomicU64::new(0));
    let mut children = Vec::new();
    for part in parts {
        let child = Command::new(&command.program)
            .args(&command.args)
            .arg("--part")
            .arg(part.to_arg())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| HarnessError(format!("starting a worker {}: {e}", command.program.display())))?;
        children.push(child);
    }
    let results = std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for (n, child) in children.iter_mut().enumerate() {
            let stderr = child.stderr.take();
            let mut stdout = child.stdout.take();
            let done = Arc::clone(&done);
            let total = Arc::clone(&total);
            let jobs = parts.len() as u64;
            let stderr_reader = scope.spawn(move || {
                let mut other = String::new();
                if let Some(stderr) = stderr {
                    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                        let mut words = line.split_whitespace();
                        if words.next() == Some("progress")
                            && let (Some(Ok(d)), Some(Ok(t))) =
                                (words.next().map(str::parse::<u64>), words.next().map(str::parse::<u64>))
                        {
                            done[n].store(d, Ordering::Relaxed);
                            total.store(t, Ordering::Relaxed);
                            let sum: u64 = done.iter().map(|d| d.load(Ordering::Relaxed)).sum();
                            progress(sum / jobs, t);
                        } else {
                            other.push_str(&line);
                            other.push('\n');
                        }
                    }
                }
                other
            });
            let stdout_reader = scope.spawn(move || {
                let mut text = String::new();
                if let Some(stdout) = stdout.as_mut() {
                    let _ = stdout.read_to_string(&mut text);
                }
                text
            });
            handles.push((stderr_reader, stdout_reader));
        }
        let mut results = Vec::new();
        for ((stderr_reader, stdout_reader), child) in handles.into_iter().zip(children.iter_mut()) {
            let errors = stderr_reader.join().unwrap_or_default();
            let output = stdout_reader.join().unwrap_or_default();
            let status = child.wait();
            results.push((status, output, errors));
        }
        results
    });
    let mut parsed = Vec::new();
    for (part, (status, output, errors)) in parts.iter().zip(results) {
        let status = status.map_err(|e| HarnessError(format!("waiting for a worker: {e}")))?;
        if !status.success() {
            return Err(HarnessError(format!(
                "worker {} failed ({status}): {}",
                part.to_arg(),
                errors.trim()
            )));
        }
        let result: PartResult = serde_json::from_str(&output).map_err(|e| {
            HarnessError(format!(
                "worker {} answered unreadably: {e}: {}",
                part.to_arg(),
                errors.trim()
            ))
        })?;
        parsed.push(result);
    }
    Ok(parsed)
}
