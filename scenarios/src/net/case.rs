//! One case of a network matrix and its repro line, beside the syscall
//! grammar of [`crate::case`]:
//!
//! ```text
//! LINE     := SCENARIO ":" SEED ":rpc" N ":" NETFAULT [ ":" MODEL ":" PICK ] [ " --store " STORE ]
//! NETFAULT := lose-request | lose-response | late-response | partition
//!           | crash-before-answer | crash-after-answer | power-cut-after-answer
//!           | "crash@" K | "power-cut@" K
//!           | "vector-lose-request@" V | "vector-lose-response@" V
//!           | "vector-partition@" V | "vector-partition-after-apply@" V
//!           | "vector-crash-after-apply@" V | "vector-power-cut-after-apply@" V
//!           | "job-crash@" J | "job-power-cut@" J
//! ```
//!
//! `N` counts the requests the server received, from 1, as in the
//! fault-free run (a fault strikes once, so every request before it is the
//! same as there); `K` counts the syscalls the server makes while it
//! handles request `N`, from 0 (`crash@3`: its process is killed at the
//! fourth); `V` counts the calls the server's store makes to its remote
//! vector server (scenarios whose vectors are remote) from the moment
//! request `N` was received, from 0: its handling's, or a background job's
//! running then; `J` counts the syscalls of the background job (a
//! rebuild) request `N` started, after it was answered, from 0. `MODEL` and
//! `PICK` are the syscall grammar's, for the power cuts only. `Display` writes the line and `FromStr`
//! reads it back; anything else is a [`CaseParseError`], never a panic.

use std::fmt;
use std::str::FromStr;

use tearline_sim_fs::PersistenceModel;

use crate::case::{CaseParseError, CrashPick};
use crate::stores;

/// What goes wrong at one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NetFault {
    /// The request never reaches the server's handler: the client hears nothing.
    LoseRequest,
    /// The server applies the request; its answer is lost.
    LoseResponse,
    /// The server applies the request and answers after the client has
    /// stopped waiting for that attempt ([`super::world::LATE_BY`]).
    LateResponse,
    /// The link between client and server breaks as the request arrives,
    /// unapplied, for longer than the client retries
    /// ([`super::world::PARTITION_FOR`]).
    Partition,
    /// The server's process is killed (SIGKILL) after applying the
    /// request, before answering; it restarts on the same disk.
    CrashBeforeAnswer,
    /// The server's process is killed just after answering.
    CrashAfterAnswer,
    /// The server's host loses power just after answering, and boots with
    /// what the persistence model keeps.
    PowerCutAfterAnswer,
    /// The server's process is killed at one syscall it makes while it
    /// handles the request (the `@K` of the line); it restarts.
    CrashWhileHandling,
    /// The server's host loses power at one syscall it makes while it
    /// handles the request, and boots with what the persistence model keeps.
    PowerCutWhileHandling,
    /// One call the store makes to its vector server while it handles the
    /// request (the `@V` of the line) never reaches it: that attempt hears
    /// nothing.
    VectorLoseRequest,
    /// The vector server applies the call; its answer is lost.
    VectorLoseResponse,
    /// The link between the server and its vector server breaks as the
    /// call arrives, unapplied, for longer than the store retries
    /// ([`super::vectors::VECTOR_PARTITION_FOR`]).
    VectorPartition,
    /// The vector server applies the call, and then the link breaks, for
    /// longer than the store retries: applied, and the store cannot know.
    VectorPartitionAfterApply,
    /// The vector server's process is killed after applying the call,
    /// before answering; it restarts on the same disk.
    VectorCrashAfterApply,
    /// The vector server's host loses power after applying the call,
    /// before answering, and boots with what the persistence model keeps.
    VectorPowerCutAfterApply,
    /// The server's process is killed at one syscall (the `@J` of the
    /// line) of the background job the request started (a rebuild), after
    /// the request was answered; it restarts, and the job is gone.
    JobCrash,
    /// The server's host loses power at one syscall of the background job
    /// the request started, and boots with what the persistence model
    /// keeps.
    JobPowerCut,
}

impl NetFault {
    /// The faults that strike a request as a whole (the matrix injects
    /// each at every request; the two that strike a syscall of the
    /// request's handling are [`NetFault::WHILE_HANDLING`]).
    pub const AT_REQUEST: [NetFault; 7] = [
        NetFault::LoseRequest,
        NetFault::LoseResponse,
        NetFault::LateResponse,
        NetFault::Partition,
        NetFault::CrashBeforeAnswer,
        NetFault::CrashAfterAnswer,
        NetFault::PowerCutAfterAnswer,
    ];

    /// The faults that strike a syscall the server makes while it handles
    /// a request.
    pub const WHILE_HANDLING: [NetFault; 2] = [NetFault::CrashWhileHandling, NetFault::PowerCutWhileHandling];

    /// The faults that strike one call the server's store makes to its
    /// remote vector server while it handles a request.
    pub const AT_VECTOR_CALL: [NetFault; 6] = [
        NetFault::VectorLoseRequest,
        NetFault::VectorLoseResponse,
        NetFault::VectorPartition,
        NetFault::VectorPartitionAfterApply,
        NetFault::VectorCrashAfterApply,
        NetFault::VectorPowerCutAfterApply,
    ];

    /// The faults that strike a syscall of the background job a request
    /// started.
    pub const DURING_JOB: [NetFault; 2] = [NetFault::JobCrash, NetFault::JobPowerCut];

    /// Every fault, in the grammar's order.
    pub fn all() -> impl Iterator<Item = NetFault> {
        Self::AT_REQUEST
            .into_iter()
            .chain(Self::WHILE_HANDLING)
            .chain(Self::AT_VECTOR_CALL)
            .chain(Self::DURING_JOB)
    }

    /// Whether it strikes one syscall of the request's handling (`@K`).
    pub fn at_syscall(self) -> bool {
        Self::WHILE_HANDLING.contains(&self)
    }

    /// Whether it strikes one vector call of the request's handling (`@V`).
    pub fn at_vector_call(self) -> bool {
        Self::AT_VECTOR_CALL.contains(&self)
    }

    /// Whether it strikes one syscall of the request's job (`@J`).
    pub fn during_job(self) -> bool {
        Self::DURING_JOB.contains(&self)
    }

    /// Whether it strikes the `@`-numbered syscall or call of the request.
    pub fn takes_index(self) -> bool {
        self.at_syscall() || self.at_vector_call() || self.during_job()
    }

    /// Whether it is a power cut (it takes a persistence model and a pick).
    pub fn cuts_power(self) -> bool {
        matches!(
            self,
            NetFault::PowerCutAfterAnswer
                | NetFault::PowerCutWhileHandling
                | NetFault::VectorPowerCutAfterApply
                | NetFault::JobPowerCut
        )
    }

    /// Its name in a repro line.
    pub fn name(self) -> &'static str {
        match self {
            NetFault::LoseRequest => "lose-request",
            NetFault::LoseResponse => "lose-response",
            NetFault::LateResponse => "late-response",
            NetFault::Partition => "partition",
            NetFault::CrashBeforeAnswer => "crash-before-answer",
            NetFault::CrashAfterAnswer => "crash-after-answer",
            NetFault::PowerCutAfterAnswer => "power-cut-after-answer",
            NetFault::CrashWhileHandling => "crash",
            NetFault::PowerCutWhileHandling => "power-cut",
            NetFault::VectorLoseRequest => "vector-lose-request",
            NetFault::VectorLoseResponse => "vector-lose-response",
            NetFault::VectorPartition => "vector-partition",
            NetFault::VectorPartitionAfterApply => "vector-partition-after-apply",
            NetFault::VectorCrashAfterApply => "vector-crash-after-apply",
            NetFault::VectorPowerCutAfterApply => "vector-power-cut-after-apply",
            NetFault::JobCrash => "job-crash",
            NetFault::JobPowerCut => "job-power-cut",
        }
    }

    /// The fault with this name.
    pub fn parse(name: &str) -> Option<NetFault> {
        Self::all().find(|f| f.name() == name)
    }
}

impl fmt::Display for NetFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where and how a network case strikes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NetInjection {
    /// The request it strikes (1: the first the server receives).
    pub rpc: u64,
    /// The fault.
    pub fault: NetFault,
    /// For a fault while handling: which syscall of the handling (from
    /// 0); for a fault at a vector call: which vector call of the handling
    /// (from 0).
    pub at: Option<u64>,
    /// For a power cut: the persistence model and which outcome.
    pub crash: Option<(PersistenceModel, CrashPick)>,
}

/// One network case: scenario, seed, store and injection.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NetCase {
    /// The scenario's catalogue name.
    pub scenario: String,
    /// The run seed.
    pub seed: u64,
    /// Where and how the fault strikes.
    pub injection: NetInjection,
    /// The store under test (its `--store` name).
    pub store: String,
}

/// The network grammar, as an error message shows it.
const EXPECTED: &str = "<scenario>:<seed>:rpc<n>:<fault>[:<model>:<d|s><n>][ --store <name>]";

fn bad(why: impl Into<String>) -> CaseParseError {
    CaseParseError::new(why, EXPECTED)
}

impl fmt::Display for NetInjection {
    /// `rpc<N>:<fault>[@<K>][:<model>:<d3|s1>]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rpc{}:{}", self.rpc, self.fault)?;
        if let Some(k) = self.at {
            write!(f, "@{k}")?;
        }
        match &self.crash {
            Some((model, CrashPick::Distinct(i))) => write!(f, ":{model}:d{i}"),
            Some((model, CrashPick::Sample(i))) => write!(f, ":{model}:s{i}"),
            None => Ok(()),
        }
    }
}

impl FromStr for NetInjection {
    type Err = CaseParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.split(':').collect();
        let (rpc, fault, crash) = match parts[..] {
            [rpc, fault] => (rpc, fault, None),
            [rpc, fault, model, pick] => (rpc, fault, Some((model, pick))),
            _ => return Err(bad(format!("{text:?} is not rpc<n>:<fault>[:<model>:<pick>]"))),
        };
        let rpc = rpc
            .strip_prefix("rpc")
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| bad(format!("{rpc:?} is not rpc<n> with n from 1")))?;
        let (fault, at) = match fault.split_once('@') {
            Some((fault, k)) => (
                fault,
                Some(
                    k.parse::<u64>()
                        .map_err(|_| bad(format!("syscall or vector call {k:?} of the handling is not a number")))?,
                ),
            ),
            None => (fault, None),
        };
        let fault = NetFault::parse(fault).ok_or_else(|| {
            let names: Vec<&str> = NetFault::all().map(NetFault::name).collect();
            bad(format!("unknown network fault {fault:?} (one of {})", names.join(", ")))
        })?;
        match (fault.takes_index(), at) {
            (true, None) if fault.at_vector_call() => {
                return Err(bad(format!(
                    "{fault} needs @<v>, the vector call of the handling it strikes"
                )));
            }
            (true, None) if fault.during_job() => {
                return Err(bad(format!(
                    "{fault} needs @<j>, the syscall of the request's job it strikes"
                )));
            }
            (true, None) => {
                return Err(bad(format!(
                    "{fault} needs @<k>, the syscall of the handling it strikes"
                )));
            }
            (false, Some(_)) => return Err(bad(format!("{fault} strikes the whole request: it takes no @<k>"))),
            _ => {}
        }
        let crash = match crash {
            None if fault.cuts_power() => {
                return Err(bad(format!("{fault} needs :<model>:<pick>")));
            }
            None => None,
            Some(_) if !fault.cuts_power() => {
                return Err(bad(format!("{fault} takes no persistence model")));
            }
            Some((model, pick)) => {
                let model = PersistenceModel::parse(model)
                    .ok_or_else(|| bad(format!("unknown persistence model {model:?}")))?;
                Some((model, crate::case::parse_pick(pick)?))
            }
        };
        Ok(NetInjection { rpc, fault, at, crash })
    }
}

impl fmt::Display for NetCase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.scenario, self.seed, self.injection)?;
        if self.store != stores::DEFAULT {
            write!(f, " --store {}", self.store)?;
        }
        Ok(())
    }
}

impl FromStr for NetCase {
    type Err = CaseParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (line, store) = match text.split_once(" --store") {
            Some((line, store)) if store.starts_with(char::is_whitespace) && !store.trim().is_empty() => {
                (line.trim_end(), store.trim().to_string())
            }
            Some((_, store)) if store.trim().is_empty() => return Err(bad("--store needs a store name")),
            Some(_) | None => (text, stores::DEFAULT.to_string()),
        };
        let mut parts = line.splitn(3, ':');
        let (Some(scenario), Some(seed), Some(injection)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad(format!("{line:?} is not <scenario>:<seed>:rpc<n>:<fault>")));
        };
        if scenario.is_empty() {
            return Err(bad("the scenario name is empty"));
        }
        let seed = seed
            .parse()
            .map_err(|_| bad(format!("seed {seed:?} is not a number")))?;
        Ok(NetCase {
            scenario: scenario.to_string(),
            seed,
            injection: injection.parse()?,
            store,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_and_pick_reads_back_as_it_was_written() {
        for fault in NetFault::all() {
            let crash = fault
                .cuts_power()
                .then_some((PersistenceModel::Prefix, CrashPick::Distinct(2)));
            let at = fault.takes_index().then_some(41);
            for store in [stores::DEFAULT, "refstore/acknowledge-before-write"] {
                let case = NetCase {
                    scenario: "net-client-writes".to_string(),
                    seed: 7,
                    injection: NetInjection {
                        rpc: 3,
                        fault,
                        at,
                        crash,
                    },
                    store: store.to_string(),
                };
                let line = case.to_string();
                assert_eq!(line.parse::<NetCase>(), Ok(case), "{line}");
            }
        }
        let during: NetCase = "net-client-writes:0:rpc2:power-cut@17:prefix:d1".parse().unwrap();
        assert_eq!(
            (during.injection.fault, during.injection.at),
            (NetFault::PowerCutWhileHandling, Some(17))
        );
        let sampled: NetCase = "net-client-writes:0:rpc1:power-cut-after-answer:subset:s4"
            .parse()
            .unwrap();
        assert_eq!(
            sampled.injection.crash,
            Some((PersistenceModel::AnySubset, CrashPick::Sample(4)))
        );
    }

    #[test]
    fn a_line_that_is_not_a_network_case_says_what_is_wrong() {
        for (line, says) in [
            ("net-client-writes:0:3:lose-request", "rpc<n>"),
            ("net-client-writes:0:rpc0:lose-request", "rpc<n>"),
            ("net-client-writes:0:rpc1:drop-everything", "unknown network fault"),
            (
                "net-client-writes:0:rpc1:power-cut-after-answer",
                "needs :<model>:<pick>",
            ),
            (
                "net-client-writes:0:rpc1:lose-response:prefix:d0",
                "takes no persistence model",
            ),
            ("net-client-writes:x:rpc1:lose-request", "seed"),
            (
                "net-client-writes:0:rpc1:power-cut-after-answer:sideways:d0",
                "persistence model",
            ),
            ("net-client-writes:0:rpc1:lose-request --store ", "store name"),
            ("net-client-writes:0:rpc1:crash", "needs @<k>"),
            ("net-client-writes:0:rpc1:crash@x", "not a number"),
            ("net-client-writes:0:rpc1:lose-request@3", "takes no @<k>"),
            ("net-client-writes:0:rpc1:power-cut@3", "needs :<model>:<pick>"),
            ("net-remote-vectors:0:rpc1:vector-lose-response", "needs @<v>"),
            ("net-rebuild:0:rpc3:job-crash", "needs @<j>"),
            (
                "net-remote-vectors:0:rpc1:vector-power-cut-after-apply@2",
                "needs :<model>:<pick>",
            ),
        ] {
            let error = line.parse::<NetCase>().unwrap_err().to_string();
            assert!(error.contains(says), "{line}: {error}");
            assert!(error.contains("rpc<n>:<fault>"), "names the network grammar: {error}");
        }
    }
}
