//! Background jobs (rebuilds): an id each, their state and progress, one
//! rebuild at a time.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;
use tearline_refstore::{RebuildMode, RebuildStats};

use crate::problem::Problem;

/// How many finished jobs are remembered (the oldest are forgotten first).
pub const FINISHED_JOBS_KEPT: usize = 100;

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Accepted, waiting for the writer.
    Queued,
    /// Running.
    Running,
    /// Finished; `stats` says what it did.
    Succeeded,
    /// Finished with `error`.
    Failed,
}

/// Documents handled out of all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Handled so far.
    pub done: usize,
    /// In all.
    pub total: usize,
}

/// One job, as `GET /v1/jobs/{id}` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Job {
    /// Its id.
    pub id: u64,
    /// The rebuild it runs.
    pub mode: RebuildMode,
    /// Where it is.
    pub state: JobState,
    /// How far it got (once running).
    pub progress: Option<Progress>,
    /// What it did (once succeeded).
    pub stats: Option<RebuildStats>,
    /// Why it failed (once failed).
    pub error: Option<Problem>,
}

#[derive(Debug, Default)]
struct Registry {
    next_id: u64,
    jobs: BTreeMap<u64, Job>,
    /// The rebuild queued or running, if any.
    active: Option<u64>,
}

/// The job registry.
#[derive(Debug, Default)]
pub struct Jobs {
    registry: Mutex<Registry>,
}

impl Jobs {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a rebuild, or a 409 naming the one queued or running.
    pub fn start(&self, mode: RebuildMode) -> Result<u64, Problem> {
        let mut registry = self.registry();
        if let Some(active) = registry.active {
            return Err(Problem::conflict(format!(
                "rebuild job {active} is still running; one rebuild at a time"
            )));
        }
        registry.next_id += 1;
        let id = registry.next_id;
        registry.jobs.insert(
            id,
            Job {
                id,
                mode,
                state: JobState::Queued,
                progress: None,
                stats: None,
                error: None,
            },
        );
        registry.active = Some(id);
        Ok(id)
    }

    /// The rebuild queued or running, if any.
    pub fn active(&self) -> Option<u64> {
        self.registry().active
    }

    /// Records progress (and that the job runs).
    pub fn progress(&self, id: u64, progress: Progress) {
        if let Some(job) = self.registry().jobs.get_mut(&id) {
            job.state = JobState::Running;
            job.progress = Some(progress);
        }
    }

    /// Marks the job running.
    pub fn running(&self, id: u64) {
        if let Some(job) = self.registry().jobs.get_mut(&id) {
            job.state = JobState::Running;
        }
    }

    /// Records how the job ended and lets the next rebuild start.
    pub fn finish(&self, id: u64, result: Result<RebuildStats, Problem>) {
        let mut registry = self.registry();
        if let Some(job) = registry.jobs.get_mut(&id) {
            match result {
                Ok(stats) => {
                    job.state = JobState::Succeeded;
                    job.stats = Some(stats);
                }
                Err(problem) => {
                    job.state = JobState::Failed;
                    job.error = Some(problem);
                }
            }
        }
        if registry.active == Some(id) {
            registry.active = None;
        }
        let finished: Vec<u64> = registry
            .jobs
            .values()
            .filter(|job| matches!(job.state, JobState::Succeeded | JobState::Failed))
            .map(|job| job.id)
            .collect();
        for old in finished.iter().take(finished.len().saturating_sub(FINISHED_JOBS_KEPT)) {
            registry.jobs.remove(old);
        }
    }

    /// A job, if it is known.
    pub fn get(&self, id: u64) -> Option<Job> {
        self.registry().jobs.get(&id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rebuild_at_a_time_and_old_jobs_are_forgotten() {
        let jobs = Jobs::default();
        let first = jobs.start(RebuildMode::Full).unwrap();
        assert_eq!(jobs.start(RebuildMode::Incremental).unwrap_err().status, 409);
        jobs.progress(first, Progress { done: 1, total: 2 });
        assert_eq!(jobs.get(first).unwrap().state, JobState::Running);
        jobs.finish(first, Err(Problem::internal("failed")));
        assert_eq!(jobs.get(first).unwrap().state, JobState::Failed);
        for _ in 0..FINISHED_JOBS_KEPT {
            let id = jobs.start(RebuildMode::Full).unwrap();
            jobs.finish(id, Err(Problem::internal("failed")));
        }
        assert_eq!(jobs.get(first), None, "the oldest finished job is forgotten");
        assert!(jobs.get(first + 1).is_some());
        assert_eq!(jobs.active(), None);
    }
}
