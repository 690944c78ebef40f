//! Network scenarios: the reference store as a service (`refstore serve`'s
//! HTTP API) on a simulated host, a client on another, and the network
//! between them simulated by turmoil, deterministically from the run seed.
//!
//! A network matrix takes the fault-free run's requests and, at each, one
//! [`NetFault`]: the request or its answer lost, the answer late, the link
//! partitioned, the server killed before or after answering, or its host's
//! power cut after answering; and at every syscall the server makes while
//! it handles the request, its process killed or its host's power cut
//! (every outcome the persistence model allows, as the syscall matrix
//! enumerates them). Each case runs from scratch
//! ([`world::run`]); afterwards the server's disk is opened by the store's
//! own recovery and checked with the same invariants as every store
//! scenario, against what the client saw: a 2xx acknowledges, a request
//! the client gave up on is uncertain.
//!
//! - [`case`]: the repro line of a network case (`rpc<N>:<fault>`).
//! - [`world`]: the hosts, the client's retries, the faults.
//! - [`lockstep`]: the server host's lockstep with the store's blocking
//!   work, and the readers a rebuild lets in.
//! - [`vectors`]: the vector server's host, where the store's vectors are
//!   remote, and how the store's calls reach it.

pub mod case;
pub mod lockstep;
pub mod vectors;
pub mod world;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use std::rc::Rc;
use std::sync::Arc;
use tearline_model::{Invariant, Operation, RebuildKind, ReconcileKind, RemoteFault, Violation};

use tearline_refstore::under_test::RefStoreFactory;
use tearline_refstore::vectors::VectorBackend;
use tearline_refstore::{Store, StoreOptions};
use tearline_sim_fs::{Fault, PersistenceModel};

use crate::case::CrashPick;
use crate::engine::scenario::store_root;
use crate::engine::{EngineOptions, HarnessError, driver};
use crate::report::{InvariantResult, InvariantStatus, NetFailure, ScenarioResult};
use case::{NetCase, NetFault, NetInjection};

/// One request of a network scenario's client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `PUT /v1/documents/{name}`: add or replace.
    Put {
        /// The document's name.
        name: String,
        /// Its content.
        content: String,
    },
    /// `DELETE /v1/documents/{name}`.
    Delete {
        /// The document's name.
        name: String,
    },
    /// `POST /v1/import`: several documents, all or nothing.
    Import {
        /// Name and content of each.
        documents: Vec<(String, String)>,
    },
    /// `GET /v1/documents/{name}`: what it finds must be what every
    /// acknowledged write left (reader-consistent).
    Get {
        /// The document's name.
        name: String,
    },
    /// `PUT /v1/documents/{name}/share`: an active share link.
    Share {
        /// The document's name.
        name: String,
    },
    /// `PUT /v1/documents/{name}/owner {owner}`: the document's owner.
    Own {
        /// The document's name.
        name: String,
        /// The owner's id.
        owner: String,
    },
    /// `POST /v1/reconcile {mode, force, user}`.
    Reconcile {
        /// The mode.
        mode: ReconcileKind,
        /// Allow the destructive modes.
        force: bool,
        /// Only this owner's records; `None`: every record.
        user: Option<String>,
    },
    /// `POST /v1/rebuild {mode: full}` (`202` and a job id), then `GET
    /// /v1/jobs/{id}` until the job has ended: the rebuild is acknowledged
    /// once the job succeeded, refused if it failed (a full rebuild that
    /// fails changes nothing), and uncertain if the job is gone (the
    /// server restarted) or the client gave up.
    Rebuild,
    /// `GET /v1/jobs/{id}`: how a rebuild job stands (the client's own
    /// poll, not a step of a scenario).
    JobStatus {
        /// The job's id.
        id: u64,
    },
    /// Not a request: an operator removes the document's source file on
    /// the server's disk, behind the store's back, durably (and the
    /// record it leaves is an orphan a clean must deal with).
    RemoveSourceBehindTheStore {
        /// The document's name.
        name: String,
    },
    /// Not a request: the vector server's disk goes bad under it. 16
    /// bytes of garbage land over the middle of each of its segments,
    /// durably (damage no torn-tail repair may cut away), and an operator
    /// restarts it: the store must bring its vectors back from its source
    /// files (rebuildable-from-source).
    DamageVectorsBehindTheStore,
}

impl Request {
    /// The store operation it asks for (`None`: a read, or not a request).
    pub fn operation(&self) -> Option<Operation> {
        Some(match self {
            Request::Put { name, content } => Operation::Add {
                name: name.clone(),
                content: content.clone(),
            },
            Request::Delete { name } => Operation::Remove { name: name.clone() },
            Request::Share { name } => Operation::Share { name: name.clone() },
            Request::Import { documents } => Operation::Import {
                documents: documents.clone(),
            },
            Request::Own { name, owner } => Operation::SetOwner {
                name: name.clone(),
                owner: owner.clone(),
            },
            Request::Reconcile { mode, force, user } => Operation::Reconcile {
                mode: *mode,
                force: *force,
                dry_run: false,
                owner: user.clone(),
            },
            Request::Rebuild => Operation::Rebuild {
                kind: RebuildKind::Full,
            },
            Request::Get { .. }
            | Request::JobStatus { .. }
            | Request::RemoveSourceBehindTheStore { .. }
            | Request::DamageVectorsBehindTheStore => {
                return None;
            }
        })
    }

    /// The request in a log line (`PUT a.md`, `POST reconcile clean --force`).
    pub fn describe(&self) -> String {
        match self {
            Request::Put { name, .. } => format!("PUT {name}"),
            Request::Delete { name } => format!("DELETE {name}"),
            Request::Get { name } => format!("GET {name}"),
            Request::Import { documents } => format!("POST import of {} documents", documents.len()),
            Request::Share { name } => format!("PUT {name}/share"),
            Request::Own { name, owner } => format!("PUT {name}/owner {owner}"),
            Request::Reconcile { mode, force, user } => {
                let mode = format!("{mode:?}").to_lowercase();
                format!(
                    "POST reconcile {mode}{}{}",
                    if *force { " --force" } else { "" },
                    user.as_ref().map(|user| format!(" --user {user}")).unwrap_or_default()
                )
            }
            Request::RemoveSourceBehindTheStore { name } => format!("rm source/{name}"),
            Request::DamageVectorsBehindTheStore => "the vector server's segments damaged".to_string(),
            Request::Rebuild => "POST rebuild full".to_string(),
            Request::JobStatus { id } => format!("GET job {id}"),
        }
    }
}

/// A network scenario: a client's requests to the service.
#[derive(Clone, Debug)]
pub struct NetScenario {
    /// Its catalogue name (`net-…`).
    pub name: String,
    /// What it does.
    pub description: String,
    /// The client's requests, in order.
    pub requests: Vec<Request>,
    /// The store keeps its vectors on a vector server, a host of its own
    /// (`vectors`), rather than in files on the server's disk.
    pub remote_vectors: bool,
}

/// Which service the scenarios run: the reference store's, or one of its
/// known-bad designs (a `refstore serve --flaw` name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceUnderTest {
    /// The known-bad design, if any.
    pub flaw: Option<String>,
}

impl ServiceUnderTest {
    /// The service a `--store` name stands for: `refstore` is the
    /// reference service; `refstore/NAME` serves with the known-bad design
    /// NAME, the service's own (`refstore/acknowledge-before-write`) or the
    /// store's (`refstore/drop-and-reindex`, served as `store:…`). `None`
    /// for any other store: the network scenarios serve the reference
    /// store and do not apply to it.
    pub fn for_store(store: &str) -> Option<ServiceUnderTest> {
        if store == crate::stores::DEFAULT {
            return Some(ServiceUnderTest::default());
        }
        let flaw = store.strip_prefix("refstore/")?;
        let options = tearline_service::ServiceOptions::new(
            "/",
            tearline_service::Keys::parse_list("reader:0123456789abcdef").ok()?,
            "/",
        );
        let name = [flaw.to_string(), format!("store:{flaw}")]
            .into_iter()
            .find(|name| options.clone().with_flaw_named(name).is_ok())?;
        Some(ServiceUnderTest { flaw: Some(name) })
    }
}

fn put(name: &str, content: &str) -> Request {
    Request::Put {
        name: name.to_string(),
        content: content.to_string(),
    }
}

fn delete(name: &str) -> Request {
    Request::Delete { name: name.to_string() }
}

fn get(name: &str) -> Request {
    Request::Get { name: name.to_string() }
}

fn import(documents: &[(&str, &str)]) -> Request {
    Request::Import {
        documents: documents
            .iter()
            .map(|(name, content)| (name.to_string(), content.to_string()))
            .collect(),
    }
}

fn share(name: &str) -> Request {
    Request::Share { name: name.to_string() }
}

fn remove_source(name: &str) -> Request {
    Request::RemoveSourceBehindTheStore { name: name.to_string() }
}

fn reconcile(mode: ReconcileKind, force: bool) -> Request {
    Request::Reconcile {
        mode,
        force,
        user: None,
    }
}

fn own(name: &str, owner: &str) -> Request {
    Request::Own {
        name: name.to_string(),
        owner: owner.to_string(),
    }
}

/// A reconcile of `user`'s records only.
fn reconcile_for(user: &str, mode: ReconcileKind, force: bool) -> Request {
    Request::Reconcile {
        mode,
        force,
        user: Some(user.to_string()),
    }
}

/// The network scenarios, in catalogue order.
pub fn scenarios() -> Vec<NetScenario> {
    vec![
        NetScenario {
            remote_vectors: false,
            name: "net-client-writes".to_string(),
            description: "a client puts, replaces, deletes and reads documents over HTTP while requests or answers \
                          are lost or late, the link is partitioned, and the server is killed or loses power around \
                          its answer"
                .to_string(),
            requests: vec![
                put("a.md", "alpha"),
                get("a.md"),
                put("b.md", "bravo"),
                put("a.md", "alpha, second version"),
                get("a.md"),
                delete("b.md"),
                get("b.md"),
                put("c.md", "charlie"),
                delete("missing.md"),
                get("c.md"),
            ],
        },
        NetScenario {
            remote_vectors: false,
            name: "net-retried-delete".to_string(),
            description: "a client deletes what it has just written and writes it again: a delete retried after its \
                          answer was lost finds nothing to delete, and must not be taken as refused"
                .to_string(),
            requests: vec![
                put("d.md", "delta"),
                delete("d.md"),
                get("d.md"),
                put("d.md", "delta again"),
                get("d.md"),
                delete("d.md"),
            ],
        },
        NetScenario {
            remote_vectors: false,
            name: "net-import".to_string(),
            description: "a client imports documents in batches, all or nothing, over HTTP, one batch replacing some \
                          of the first: an import cut by a lost answer, a partition or the server's host failing \
                          in the middle of it is wholly there or wholly absent, and a retried one is applied once"
                .to_string(),
            requests: vec![
                import(&[("i1.md", "one"), ("i2.md", "two"), ("i3.md", "three")]),
                get("i2.md"),
                import(&[
                    ("i2.md", "two, second version"),
                    ("i3.md", "three, second version"),
                    ("i4.md", "four"),
                ]),
                get("i3.md"),
                delete("i1.md"),
                get("i4.md"),
            ],
        },
        NetScenario {
            remote_vectors: false,
            name: "net-shared-record-kept".to_string(),
            description: "a client shares a document; an operator removes its source and another's on the server; \
                          the client's clean (first without --force: refused) must drop the other's orphaned \
                          record and keep the shared one, whatever the network or the server's host does"
                .to_string(),
            requests: vec![
                put("kept.md", "shared, then its source removed"),
                put("orphan.md", "its source removed"),
                share("kept.md"),
                remove_source("kept.md"),
                remove_source("orphan.md"),
                reconcile(ReconcileKind::Clean, false),
                reconcile(ReconcileKind::Clean, true),
                put("after.md", "written after the clean"),
            ],
        },
        NetScenario {
            remote_vectors: false,
            name: "net-owner-scoped-reconcile".to_string(),
            description: "a client gives documents owners (alice, bob, and one of nobody's); an operator removes \
                          their sources on the server; the client's clean for alice (first without --force: \
                          refused) must drop only her orphaned record; bob's and nobody's must stay, bob's \
                          with its owner, whatever the network or the server's host does"
                .to_string(),
            requests: vec![
                put("a.md", "alice's"),
                put("b.md", "bob's"),
                put("n.md", "nobody's"),
                own("a.md", "alice"),
                own("b.md", "bob"),
                get("b.md"),
                remove_source("a.md"),
                remove_source("b.md"),
                remove_source("n.md"),
                reconcile_for("alice", ReconcileKind::Clean, false),
                reconcile_for("alice", ReconcileKind::Clean, true),
                put("after.md", "written after the clean"),
            ],
        },
        NetScenario {
            remote_vectors: true,
            name: "net-remote-vectors".to_string(),
            description: "the store keeps its vectors on a vector server, a third host with a disk of its own: a \
                          client puts, rebuilds (a new collection), replaces, deletes, imports and reads documents while the server's calls to \
                          the vector server are lost, answered after they were applied or never, cut off by a \
                          partition, or met by a vector server that is killed or loses power after applying them, \
                          and while the client's own requests meet every fault of the other network scenarios"
                .to_string(),
            requests: vec![
                put("a.md", "alpha"),
                Request::Rebuild,
                get("a.md"),
                put("b.md", "bravo"),
                put("a.md", "alpha, second version"),
                delete("b.md"),
                import(&[("i1.md", "one"), ("i2.md", "two")]),
                get("i2.md"),
                get("a.md"),
            ],
        },
        NetScenario {
            remote_vectors: true,
            name: "net-damaged-vectors".to_string(),
            description: "the vector server's disk goes bad under the store (garbage over the middle of each \
                          segment) and it is restarted: the store must bring its vectors back from its source \
                          files and go on serving, while the client's requests meet every network fault"
                .to_string(),
            requests: vec![
                put("a.md", "alpha"),
                put("b.md", "bravo"),
                put("c.md", "charlie"),
                Request::DamageVectorsBehindTheStore,
                put("d.md", "delta"),
                get("a.md"),
                get("d.md"),
            ],
        },
        NetScenario {
            remote_vectors: false,
            name: "net-rebuild".to_string(),
            description: "a client asks the service for full rebuilds (202 and a job it polls) between writes: the \
                          server's host is killed or loses power at every syscall of each rebuild job, after its \
                          request was answered, and the job is gone when it restarts; every fault of the other \
                          network scenarios strikes the requests"
                .to_string(),
            requests: vec![
                put("a.md", "alpha"),
                put("b.md", "bravo"),
                Request::Rebuild,
                get("a.md"),
                put("c.md", "charlie"),
                delete("b.md"),
                Request::Rebuild,
                get("c.md"),
                get("b.md"),
            ],
        },
    ]
}

/// The network scenario with this name.
pub fn find(name: &str) -> Option<NetScenario> {
    scenarios().into_iter().find(|s| s.name == name)
}

/// Every injection of a matrix over `scenario`'s fault-free run, and the
/// syscalls the server made in that run.
fn injections(
    scenario: &NetScenario,
    seed: u64,
    service: &ServiceUnderTest,
    options: &EngineOptions,
) -> Result<(Vec<NetInjection>, u64), HarnessError> {
    let probe = world::run(scenario, seed, service.clone(), None)?;
    // The outcomes a power cut is checked under: the store engine's rule.
    let (limit, samples, crash_seed) = (
        options.exhaustive_limit,
        options.samples_per_point,
        probe.machine.crash_seed(),
    );
    let picks = |snapshot: &tearline_sim_fs::SimSnapshot, model| -> Vec<CrashPick> {
        let picked = crate::case::crash_picks(snapshot, model, limit, samples, crash_seed);
        picked.into_iter().map(|(pick, _)| pick).collect()
    };
    let mut all = Vec::new();
    let mut host = HostFailures {
        options,
        crash_seed,
        pages: tearline_sim_fs::PageHashes::default(),
        waits: &probe.waits,
        ops: probe
            .machine
            .with_trace(|trace| trace.entries().iter().map(|e| (e.index, e.op)).collect()),
    };
    for (&rpc, record) in &probe.records {
        for fault in NetFault::AT_REQUEST {
            let crashes: Vec<Option<(PersistenceModel, CrashPick)>> = if fault.cuts_power() {
                let models = options.models.iter();
                models
                    .flat_map(|&model| {
                        picks(&record.snapshot, model)
                            .into_iter()
                            .map(move |pick| Some((model, pick)))
                    })
                    .collect()
            } else {
                vec![None]
            };
            all.extend(crashes.into_iter().map(|crash| NetInjection {
                rpc,
                fault,
                at: None,
                crash,
            }));
        }
        // The host fails at each syscall of the handling.
        all.extend(host.at_each_syscall(
            rpc,
            record.syscalls.start,
            &record.during,
            (NetFault::CrashWhileHandling, NetFault::PowerCutWhileHandling),
        ));
    }
    // The host fails at each syscall of each background job (a rebuild)
    // a request started, after its answer went out.
    for job in &probe.jobs {
        all.extend(host.at_each_syscall(
            job.rpc,
            job.syscalls.start,
            &job.during,
            (NetFault::JobCrash, NetFault::JobPowerCut),
        ));
    }
    if scenario.remote_vectors {
        all.extend(vector_call_injections(&probe, options, &picks));
    }
    Ok((all, probe.machine.syscall_count()))
}

/// What the server's host failing at syscalls takes: the run's faults and
/// models, the crash outcomes of a disk, what tells equal disks apart, and
/// where the store's work waited on the network.
struct HostFailures<'a> {
    options: &'a EngineOptions,
    crash_seed: u64,
    pages: tearline_sim_fs::PageHashes,
    /// [`world::Outcome::waits`].
    waits: &'a [u64],
    /// What each syscall of the fault-free run was: a host failure is
    /// enumerated only where it [`Fault::applies_to`] (not at an unlock,
    /// a guard's drop).
    ops: BTreeMap<u64, tearline_sim_fs::SyscallKind>,
}

impl HostFailures<'_> {
    /// The host failing at each syscall of a stretch of the fault-free run
    /// (from syscall `first`; `during`: the disk before each), as the run's
    /// faults say: its process killed (`faults.0`), and its power cut with
    /// each outcome (`faults.1`); as faults of request `rpc`.
    ///
    /// A power cut that boots the same disk as an earlier one of the
    /// stretch, with no wait on the network between them, is left out:
    /// between two waits the store's work runs within one step of the
    /// simulation, so the network and the vector server are the same too,
    /// and so is all that follows. (The machines' clocks differ by the
    /// syscalls between the two; nothing these scenarios run decides by
    /// the time.)
    fn at_each_syscall(
        &mut self,
        rpc: u64,
        first: u64,
        during: &[tearline_sim_fs::SimSnapshot],
        faults: (NetFault, NetFault),
    ) -> Vec<NetInjection> {
        let (crash, power_cut) = faults;
        let mut all = Vec::new();
        let mut booted = BTreeSet::new();
        for (k, snapshot) in during.iter().enumerate() {
            let at = Some(k as u64);
            let syscall = first + k as u64;
            let op = self.ops.get(&syscall).copied();
            let strikes =
                |fault: Fault| self.options.faults.contains(&fault) && op.is_some_and(|op| fault.applies_to(op));
            let (kill, cut) = (strikes(Fault::ProcessCrash), strikes(Fault::PowerCut));
            let waits_before = self.waits.partition_point(|&wait| wait <= syscall);
            if kill {
                all.push(NetInjection {
                    rpc,
                    fault: crash,
                    at,
                    crash: None,
                });
            }
            if !cut {
                continue;
            }
            for &model in &self.options.models {
                let (limit, samples) = (self.options.exhaustive_limit, self.options.samples_per_point);
                // Each outcome with its disk, enumerated once.
                for (pick, choice) in crate::case::crash_picks(snapshot, model, limit, samples, self.crash_seed) {
                    let key = snapshot.crash_state_key(model, &choice, &mut self.pages);
                    if booted.insert((key, waits_before)) {
                        all.push(NetInjection {
                            rpc,
                            fault: power_cut,
                            at,
                            crash: Some((model, pick)),
                        });
                    }
                }
            }
        }
        all
    }
}

/// Every injection at a vector call of the fault-free run `probe`: each
/// fault of [`NetFault::AT_VECTOR_CALL`] at each call each request's
/// handling made (the power cuts with each outcome `picks` gives of the
/// vector server's disk as it had applied the call).
fn vector_call_injections(
    probe: &world::Outcome,
    options: &EngineOptions,
    picks: &dyn Fn(&tearline_sim_fs::SimSnapshot, PersistenceModel) -> Vec<CrashPick>,
) -> Vec<NetInjection> {
    let mut all = Vec::new();
    for (i, &first) in probe.calls_before.iter().enumerate() {
        let rpc = i as u64 + 1;
        let end = probe.calls_before.get(i + 1).copied().unwrap_or(probe.vector_calls);
        for index in first..end {
            let at = Some(index - first);
            for fault in NetFault::AT_VECTOR_CALL {
                let needs = match fault {
                    NetFault::VectorCrashAfterApply => Some(Fault::ProcessCrash),
                    NetFault::VectorPowerCutAfterApply => Some(Fault::PowerCut),
                    _ => None,
                };
                if needs.is_some_and(|needed| !options.faults.contains(&needed)) {
                    continue;
                }
                if !fault.cuts_power() {
                    all.push(NetInjection {
                        rpc,
                        fault,
                        at,
                        crash: None,
                    });
                    continue;
                }
                // A call the vector server never answered in the
                // fault-free run has no disk to cut the power of.
                let Some(record) = probe.vector_records.get(&index) else {
                    continue;
                };
                for &model in &options.models {
                    all.extend(picks(&record.snapshot, model).into_iter().map(|pick| NetInjection {
                        rpc,
                        fault,
                        at,
                        crash: Some((model, pick)),
                    }));
                }
            }
        }
    }
    all
}

/// Every case of `scenario`'s matrix for the store named `store` (one the
/// network scenarios serve), in the matrix's order.
pub fn cases(scenario: &NetScenario, store: &str, options: &EngineOptions) -> Result<Vec<NetCase>, HarnessError> {
    let service = ServiceUnderTest::for_store(store)
        .ok_or_else(|| HarnessError(format!("the network scenarios do not serve store {store:?}")))?;
    matrix(scenario, store, &service, options).map(|(cases, _)| cases)
}

/// The matrix's cases, and the syscalls the server made in the fault-free run.
fn matrix(
    scenario: &NetScenario,
    store: &str,
    service: &ServiceUnderTest,
    options: &EngineOptions,
) -> Result<(Vec<NetCase>, u64), HarnessError> {
    let (injections, syscalls) = injections(scenario, options.seed, service, options)?;
    let cases = injections
        .into_iter()
        .map(|injection| NetCase {
            scenario: scenario.name.clone(),
            seed: options.seed,
            injection,
            store: store.to_string(),
        })
        .collect();
    Ok((cases, syscalls))
}

/// What checking one case found.
pub struct Checked {
    /// Every invariant broken (the first violation of each).
    pub violations: Vec<Violation>,
    /// The network log of the run.
    pub log: Vec<String>,
    /// A fingerprint of the state checked: the server's disk and the model.
    pub state: (u64, String),
    /// The server's machine after the check (its trace, for comparing runs).
    pub machine: tearline_sim_fs::SimFs,
    /// The vector server's machine after the check, where the store's
    /// vectors are remote.
    pub vectors: Option<tearline_sim_fs::SimFs>,
    /// Reads the client checked against the model.
    pub reads_checked: u64,
}

/// Runs one case from scratch and checks the server's disk after it; the
/// inner `Err` says why there is no such case (a power-cut outcome that
/// does not exist there, a syscall past the handling's last).
pub fn check_case(scenario: &NetScenario, case: &NetCase) -> Result<Result<Checked, String>, HarnessError> {
    let service = ServiceUnderTest::for_store(&case.store)
        .ok_or_else(|| HarnessError(format!("the network scenarios do not serve store {:?}", case.store)))?;
    let outcome = world::run(scenario, case.seed, service.clone(), Some(case.injection))?;
    if let Some(why) = outcome.missed {
        return Ok(Err(why));
    }
    // The service's own known-bad designs run the reference store.
    let mut factory = RefStoreFactory::named(&case.store).unwrap_or_else(RefStoreFactory::correct);
    let machine = &outcome.machine;
    let mut fingerprint = machine.fingerprint();
    let mut backend: Option<Arc<dyn VectorBackend>> = None;
    if let Some(vectors) = &outcome.vectors {
        // Checked with its vectors where the run left them, on the vector
        // server's disk, reached by the service's own vector client (a
        // writable open is what its service does to recover).
        let remote: Arc<dyn VectorBackend> = vectors::in_process(vectors, service.flaw.as_deref())?;
        factory = factory.with_vector_backend(Arc::clone(&remote));
        backend = Some(remote);
        fingerprint ^= vectors.fingerprint().rotate_left(17);
    }
    let state = (fingerprint, format!("{:?}", outcome.model));
    let mut violations = outcome.violations;
    // What the service's code logs while it is checked (the vector
    // server's routes, reached in process) goes with the run's log.
    let logged = Rc::new(RefCell::new(Vec::new()));
    let sink = Rc::clone(&logged);
    let checked = tearline_service::capture_log(
        move |line| sink.borrow_mut().push(format!("   check log: {line}")),
        || {
            let leaked = leaked_vectors(machine, backend);
            let budget_end = machine.syscall_count().saturating_add(200_000);
            let recovered = driver::recover_and_check(
                &factory,
                machine,
                &outcome.model,
                budget_end,
                RemoteFault::Healthy,
                false,
                driver::Reuse::default(),
            );
            leaked.into_iter().chain(recovered.violations)
        },
    );
    violations.extend(checked);
    let mut log = outcome.log;
    log.extend(logged.take());
    Ok(Ok(Checked {
        violations: driver::first_of_each(violations),
        log,
        state,
        reads_checked: outcome.reads_checked,
        machine: outcome.machine,
        vectors: outcome.vectors,
    }))
}

/// What the service left its users between requests, before any
/// recovery: a store whose every write has finished holds no vector that
/// neither an entry nor a pending intent refers to (a vector the store
/// wrote twice, or lost track of, that no crash explains). Looked at
/// read-only, as a reader would; a store a reader cannot open yet (a
/// write unfinished) is left to the recovery's check. `backend`: where its
/// vectors are, if not beside its index.
fn leaked_vectors(machine: &tearline_sim_fs::SimFs, backend: Option<Arc<dyn VectorBackend>>) -> Option<Violation> {
    let reader = machine.spawn_process();
    let mut options = StoreOptions::read_only();
    if let Some(backend) = backend {
        options.vector_backend = backend;
    }
    let store = Store::open(
        Arc::new(reader.clone()),
        Arc::new(reader.clock()),
        store_root(),
        options,
    )
    .ok()?;
    let report = store.verify().ok()?;
    (!report.orphan_vectors.is_empty()).then(|| {
        Violation::new(
            Invariant::NoOrphanVectors,
            format!(
                "after the run, before any recovery, the store serves {} vectors that no entry and no pending \
                 intent refers to (ids {:?})",
                report.orphan_vectors.len(),
                report.orphan_vectors
            ),
        )
    })
}

/// What one case showed: its violations, the state it checked and the
/// reads checked, or why there is no such case.
type Verdict = Result<(Vec<Violation>, (u64, String), u64), String>;

/// Runs `scenario`'s matrix for the store named `store` on `jobs` threads
/// and judges it.
pub fn run_scenario(
    scenario: &NetScenario,
    store: &str,
    options: &EngineOptions,
    jobs: u64,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<ScenarioResult, HarnessError> {
    let Some(service) = ServiceUnderTest::for_store(store) else {
        let why = format!("{store} is not served by the reference service (network scenarios run `refstore serve`)");
        return Ok(ScenarioResult::not_applicable(
            &scenario.name,
            "network",
            &scenario.description,
            why,
        ));
    };
    let mut result = ScenarioResult {
        verdict: "pass".to_string(),
        ..ScenarioResult::empty(&scenario.name, "network", &scenario.description)
    };
    let (cases, workload_syscalls) = matrix(scenario, store, &service, options)?;
    let total = cases.len() as u64;
    progress(0, total);
    // Each case is a whole run of its own: split over `jobs` threads, the
    // verdicts merged in the matrix's order, so the report is the same for
    // any split.
    let done = std::sync::atomic::AtomicU64::new(0);
    let jobs = usize::try_from(jobs.max(1)).unwrap_or(1);
    let mut verdicts: Vec<(usize, Verdict)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|worker| {
                let (cases, done) = (&cases, &done);
                scope.spawn(move || -> Result<Vec<(usize, Verdict)>, (usize, HarnessError)> {
                    let mut verdicts = Vec::new();
                    for (i, case) in cases.iter().enumerate().skip(worker).step_by(jobs) {
                        let verdict = match check_case(scenario, case) {
                            Ok(verdict) => verdict.map(|c| (c.violations, c.state, c.reads_checked)),
                            Err(error) => return Err((i, error)),
                        };
                        verdicts.push((i, verdict));
                        progress(done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1, total);
                    }
                    Ok(verdicts)
                })
            })
            .collect();
        // The error of the first case that failed, whatever the split.
        let mut all = Vec::new();
        let mut first_error: Option<(usize, HarnessError)> = None;
        for worker in workers {
            match worker.join() {
                Ok(Ok(verdicts)) => all.extend(verdicts),
                Ok(Err((i, error))) => {
                    if first_error.as_ref().is_none_or(|(first, _)| i < *first) {
                        first_error = Some((i, error));
                    }
                }
                Err(_) => return Err(HarnessError("a network matrix worker panicked".to_string())),
            }
        }
        match first_error {
            Some((_, error)) => Err(error),
            None => Ok(all),
        }
    })?;
    verdicts.sort_by_key(|(i, _)| *i);
    let mut states = BTreeSet::new();
    for (i, verdict) in verdicts {
        // Every case comes from the fault-free run: one that does not
        // exist on its replay means the runs differ.
        let (violations, state, reads) = verdict.map_err(|why| {
            HarnessError(format!(
                "{}: the fault-free run has this case, but not its replay ({why}): nondeterminism?",
                cases[i]
            ))
        })?;
        result.states_checked += 1;
        result.reader_observations += reads;
        states.insert(state);
        for violation in violations {
            result.net_failures.push(NetFailure {
                case_index: i as u64,
                repro: cases[i].to_string(),
                invariant: violation.invariant,
                evidence: violation.evidence,
            });
        }
    }
    result.cases = total;
    result.crash_points = total;
    result.workload_syscalls = workload_syscalls;
    result.distinct_states = states.len() as u64;
    for invariant in Invariant::ALL {
        let failing: Vec<&NetFailure> = result
            .net_failures
            .iter()
            .filter(|f| f.invariant == invariant)
            .collect();
        // Reads are judged only where the client checked some.
        let exercised = invariant != Invariant::ReaderConsistent || result.reader_observations > 0;
        let status = if !failing.is_empty() {
            InvariantStatus::Failed
        } else if applies(scenario, invariant) && exercised {
            InvariantStatus::Passed
        } else {
            InvariantStatus::NotApplicable
        };
        result.invariants.push(InvariantResult {
            invariant,
            status,
            failures: failing.len() as u64,
            repro: None,
            evidence: failing.first().map(|f| f.evidence.clone()),
            reproduces: None,
            net_repro: failing.first().map(|f| f.repro.clone()),
        });
    }
    if !result.net_failures.is_empty() {
        result.passed = false;
        let broken: BTreeSet<&str> = result.net_failures.iter().map(|f| f.invariant.name()).collect();
        result.verdict = format!(
            "FAIL: {} broken at {} cases",
            broken.into_iter().collect::<Vec<_>>().join(", "),
            result.net_failures.len()
        );
    }
    Ok(result)
}

/// Whether `scenario`'s check exercises `invariant`: what a recovered
/// store is checked for after any case,
/// protected-records-kept where a document is shared, owner-scope-kept
/// where one is given an owner, reader-consistent where a document is
/// read or a full rebuild lets readers in, rebuildable-from-source where
/// the vector server's disk goes bad, and
/// no-destructive-without-force where a clean is asked for without force.
pub fn applies(scenario: &NetScenario, invariant: Invariant) -> bool {
    let asks = |wanted: fn(&Request) -> bool| scenario.requests.iter().any(wanted);
    match invariant {
        Invariant::ProtectedRecordsKept => asks(|r| matches!(r, Request::Share { .. })),
        Invariant::OwnerScopeKept => asks(|r| matches!(r, Request::Own { .. })),
        // A full rebuild lets readers in (see `lockstep`).
        Invariant::ReaderConsistent => asks(|r| matches!(r, Request::Get { .. } | Request::Rebuild)),
        Invariant::RebuildableFromSource => asks(|r| matches!(r, Request::DamageVectorsBehindTheStore)),
        Invariant::NoDestructiveWithoutForce => {
            asks(|r| matches!(r, Request::Reconcile { mode, force: false, .. } if mode.is_destructive()))
        }
        _ => applies_to_every_case(invariant),
    }
}

/// The invariants every network case's check exercises.
fn applies_to_every_case(invariant: Invariant) -> bool {
    matches!(
        invariant,
        Invariant::CompleteDatabase
            | Invariant::CommittedDurable
            | Invariant::AtomicOp
            | Invariant::NoOrphanVectors
            | Invariant::JournalDrained
            | Invariant::NoLeakedTempFiles
            | Invariant::RecoveryIdempotent
            | Invariant::FailedMeansNotApplied
            | Invariant::NoSilentCorruption
            | Invariant::CleanError
    )
}

/// A network scenario's result in a CI shard other than the first, which
/// does not run it (its matrix is not split).
pub fn skipped_in_shard(scenario: &NetScenario, shard: (u64, u64)) -> ScenarioResult {
    let why = format!(
        "network scenarios run in shard 0 only (this is {}/{})",
        shard.0, shard.1
    );
    ScenarioResult::not_applicable(&scenario.name, "network", &scenario.description, why)
}
