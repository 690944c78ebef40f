//! One run of a network scenario: two or three turmoil hosts, `server`
//! (the reference store's HTTP service, `refstore serve`'s router, on a
//! simulated disk: a [`SimFs`]), `client` (the scenario's requests over
//! HTTP/1.1, with a timeout per attempt and bounded retries) and, where
//! the store keeps its vectors remote, `vectors` (the vector server on a
//! disk of its own, see [`super::vectors`]), and at most one [`NetFault`]
//! at one request or at one of the vector calls its handling makes.
//!
//! Everything derives from the seed: turmoil's message latencies, the
//! machine's crash outcomes; hyper is driven by hand (no `Date` header: it
//! reads the wall clock) and the service runs the store's work in lockstep
//! with its host ([`Offload::Bridged`], see [`super::lockstep`]). What the
//! client saw is the model: a 2xx it
//! received acknowledges the request; a client that gives up leaves it
//! uncertain and stops.

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use tearline_model::invariants::{no_destructive_without_force, reader_consistent};
use tearline_model::{Invariant, Model, Violation, content_hash};

use tearline_refstore::{Layout, Store, StoreError, StoreOptions};
use tearline_service::{Bridge, Keys, Offload, Service, ServiceOptions, WorkKind};
use tearline_sim_fs::{Fault, FaultPlan, Fs, FsExt, PersistenceModel, SimConfig, SimFs, SimSnapshot};
use tower::Service as _;

use super::case::{NetFault, NetInjection};
use super::vectors::VectorCallRecord;
use super::{NetScenario, Request, ServiceUnderTest};
use crate::case::resolve_crash;
use crate::engine::HarnessError;
use crate::engine::scenario::store_root;

/// The server's host name and port.
pub(super) const SERVER: &str = "server";
const PORT: u16 = 8080;
/// The key the client calls with (admin: it deletes).
const KEY: &str = "0123456789abcdef-net";
/// How long the client waits for one attempt (connect, send, answer).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// How many times the client tries one request before it gives up.
pub const ATTEMPTS: u32 = 4;
/// The client's pause after its first failed attempt (doubling after each).
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// How late a late answer comes: past the attempt's timeout.
pub const LATE_BY: Duration = Duration::from_millis(1500);
/// How long a partition lasts: longer than the client's retries.
pub const PARTITION_FOR: Duration = Duration::from_secs(10);
/// How long a crashed or powered-off server (or vector server) stays down.
const DOWN_FOR: Duration = Duration::from_millis(300);
/// Where the service stages imports on the server's disk (outside the
/// store's root, as on a real server).
const STAGING_DIR: &str = "/staging";
/// How far one step of the simulation moves its clock.
const TICK: Duration = Duration::from_millis(10);
/// The simulation's limit (the client gives up long before).
const SIMULATION_LIMIT: Duration = Duration::from_secs(600);

/// A host failure the server asks the harness for.
#[derive(Clone, Copy, Debug)]
pub(super) enum HostFailure {
    Crash,
    PowerCut(PersistenceModel, crate::case::CrashPick),
}

/// What the fault-free run saw of one request, for the matrix.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// The server's disk as the answer went out.
    pub snapshot: SimSnapshot,
    /// The syscalls the server made while it handled the request.
    pub syscalls: std::ops::Range<u64>,
    /// The server's disk before each of them.
    pub during: Vec<SimSnapshot>,
}

/// What the fault-free run saw of one background job (a rebuild).
#[derive(Clone, Debug)]
pub struct JobRecord {
    /// The request that started it (the last one received when it began).
    pub rpc: u64,
    /// The syscalls the server made while it ran.
    pub syscalls: std::ops::Range<u64>,
    /// The server's disk before each of them.
    pub during: Vec<SimSnapshot>,
}

/// A background job under way: which request started it, where its
/// syscalls began, and whether the strike was armed in it.
pub(super) struct JobStart {
    rpc: u64,
    before: u64,
    armed: Option<u64>,
}

impl JobStart {
    /// The request that started it.
    pub(super) fn rpc(&self) -> u64 {
        self.rpc
    }
}

/// What the hosts and the harness share.
pub(super) struct Control {
    /// The strike, if any.
    pub(super) strike: Option<NetInjection>,
    /// Requests received so far.
    received: u64,
    /// The server's current process.
    server: SimFs,
    /// A host failure the server asked for, not yet carried out.
    failure: Option<HostFailure>,
    /// What the run did, in order: the network log.
    log: Vec<String>,
    /// Each request the server handled to its end, by its number (fault-free runs).
    records: BTreeMap<u64, RequestRecord>,
    /// Why the strike could not strike, if it could not: a power cut
    /// whose outcome does not exist, a syscall past the handling's last.
    missed: Option<String>,
    /// The service under test.
    pub(super) under_test: ServiceUnderTest,
    /// What the client's answers alone already break.
    violations: Vec<Violation>,
    /// Reads the client checked against the model.
    reads_checked: u64,
    /// The vector server's current process, where the store's vectors are
    /// remote.
    pub(super) vectors: Option<SimFs>,
    /// Calls the server's store has made to its vector server so far.
    pub(super) vector_calls: u64,
    /// For each request received (in order), the vector calls made before it.
    calls_before: Vec<u64>,
    /// The fault the vector server carries out on the next call it gets.
    pub(super) vector_armed: Option<NetFault>,
    /// Whether a strike at a vector call or in a job was armed (a run has
    /// one strike).
    strike_armed: bool,
    /// A failure of the vector server's host asked for, not yet carried out.
    pub(super) vector_failure: Option<HostFailure>,
    /// Each vector call of the fault-free run, by its number.
    pub(super) vector_records: BTreeMap<u64, VectorCallRecord>,
    /// The threads the store's work ran on (joined when the server's host
    /// goes down, so that none runs on beside the simulation).
    pub(super) workers: Vec<std::thread::JoinHandle<()>>,
    /// Each background job of the fault-free run.
    jobs: Vec<JobRecord>,
    /// The server's syscall count each time the store's work waited on the
    /// network (a vector call, a pause between attempts): fault-free runs.
    waits: Vec<u64>,
    /// What the client saw: the model every read is judged by.
    model: Rc<RefCell<Model>>,
}

impl Control {
    /// Arms the strike for the vector server if it names vector call
    /// `index` (counted over the run): a fault at vector call `V` of
    /// request `N` names the `V`th call after those made before `N` was
    /// received.
    pub(super) fn arm_vector_strike(&mut self, index: u64) {
        let Some(strike) = self.strike.filter(|s| s.fault.at_vector_call()) else {
            return;
        };
        let Some(before) = self.calls_before.get((strike.rpc - 1) as usize) else {
            return;
        };
        let v = strike.at.unwrap_or(0);
        if index != before + v {
            return;
        }
        if self.received > strike.rpc {
            self.missed = Some(format!("request {} made {v} vector calls or fewer", strike.rpc));
            return;
        }
        self.vector_armed = Some(strike.fault);
        self.strike_armed = true;
    }

    /// A background job begins on the server: the strike is armed in it if
    /// it names a syscall of the job of the request last received.
    pub(super) fn begin_job(&mut self) -> JobStart {
        let (rpc, before) = (self.received, self.server.syscall_count());
        let strike = self
            .strike
            .filter(|s| s.fault.during_job() && s.rpc == rpc && !self.strike_armed);
        let armed = strike.map(|strike| {
            let j = strike.at.unwrap_or(0);
            let fault = match strike.fault {
                NetFault::JobPowerCut => Fault::PowerCut,
                _ => Fault::ProcessCrash,
            };
            self.server.set_fault_plan(FaultPlan::none().at(before + j, fault));
            self.strike_armed = true;
            j
        });
        JobStart { rpc, before, armed }
    }

    /// A background job has ended: the fault-free run keeps its record; a
    /// strike armed in it that it never reached makes the case a missed one.
    pub(super) fn end_job(&mut self, job: JobStart) {
        let after = self.server.syscall_count();
        if self.strike.is_none() {
            self.jobs.push(JobRecord {
                rpc: job.rpc,
                syscalls: job.before..after,
                during: Vec::new(),
            });
        }
        if let Some(j) = job.armed
            && self.server.halted().is_none()
        {
            self.server.set_fault_plan(FaultPlan::none());
            self.missed = Some(format!(
                "the job of request {} made {} syscalls, not {}",
                job.rpc,
                after - job.before,
                j + 1
            ));
        }
    }

    /// The store's work waits on the network now (a fault-free run notes
    /// where: the simulation's time and the vector server move only then).
    pub(super) fn waited(&mut self) {
        if self.strike.is_none() {
            let at = self.server.syscall_count();
            self.waits.push(at);
        }
    }

    /// Joins the threads the store's work ran on.
    pub(super) fn join_workers(&mut self) {
        for worker in std::mem::take(&mut self.workers) {
            worker.join().ok();
        }
    }
}

type Shared = Rc<RefCell<Control>>;

/// Adds a line to the run's log, at the simulation's time.
pub(super) fn note(control: &Shared, what: String) {
    let at = turmoil::elapsed();
    control
        .borrow_mut()
        .log
        .push(format!("{:>8.3}s {what}", at.as_secs_f64()));
}

/// What one run left.
pub struct Outcome {
    /// What the client saw: the model the checks use.
    pub model: Model,
    /// A fresh process on the server's machine, after the run (the
    /// server's own process closed).
    pub machine: SimFs,
    /// The network log (requests, answers, faults, host failures).
    pub log: Vec<String>,
    /// Each request of the run the server handled, by its number.
    pub records: BTreeMap<u64, RequestRecord>,
    /// Why the strike could not strike, if it could not (a power-cut
    /// outcome that does not exist there, a syscall past the handling's
    /// last, a request the run never made): no such case.
    pub missed: Option<String>,
    /// What the client's answers alone broke (an acknowledged request the
    /// model says must fail, a read that found what no acknowledged state
    /// has).
    pub violations: Vec<Violation>,
    /// Reads the client checked against the model.
    pub reads_checked: u64,
    /// A fresh process on the vector server's machine, where the store's
    /// vectors are remote.
    pub vectors: Option<SimFs>,
    /// Each vector call of the fault-free run, by its number.
    pub vector_records: BTreeMap<u64, VectorCallRecord>,
    /// For each request, the vector calls made before it was received.
    pub calls_before: Vec<u64>,
    /// Vector calls made in the whole run.
    pub vector_calls: u64,
    /// Each background job of the run (fault-free runs).
    pub jobs: Vec<JobRecord>,
    /// The server's syscall count each time the store's work waited on the
    /// network (fault-free runs), in order.
    pub waits: Vec<u64>,
}

/// The machines of a run as they stand before its first request: the
/// server's disk with a new store and the staging directory on it, and,
/// where the store keeps its vectors remote, the vector server's disk with
/// the store's first collection. The same for every case of a scenario on
/// one seed, so each matrix thread keeps the last it provisioned and runs
/// each case on a copy ([`SimFs::duplicate_machine`]), which goes on exactly as the
/// machines it copies would (`scenarios/tests/network.rs` compares a case
/// both ways, trace by trace).
struct Provisioned {
    seed: u64,
    remote_vectors: bool,
    machine: SimFs,
    vectors: Option<SimFs>,
}

thread_local! {
    /// The last machines provisioned on this thread, kept to be copied.
    static PROVISIONED: RefCell<Option<Provisioned>> = const { RefCell::new(None) };
}

impl Provisioned {
    /// Machines for one run: a copy of those provisioned last on this
    /// thread, if they were for the same seed and vectors, else new ones.
    fn for_run(remote_vectors: bool, seed: u64) -> Result<Provisioned, HarnessError> {
        let copy = PROVISIONED.with_borrow(|kept| {
            kept.as_ref()
                .filter(|kept| kept.seed == seed && kept.remote_vectors == remote_vectors)
                .map(Provisioned::duplicate)
        });
        if let Some(copy) = copy {
            return Ok(copy);
        }
        let provisioned = Provisioned::new(remote_vectors, seed)?;
        PROVISIONED.set(Some(provisioned.duplicate()));
        Ok(provisioned)
    }

    fn new(remote_vectors: bool, seed: u64) -> Result<Provisioned, HarnessError> {
        let machine = SimFs::new(SimConfig::with_seed(seed));
        let vectors = remote_vectors.then(|| SimFs::new(SimConfig::with_seed(super::vectors::machine_seed(seed))));
        let mut options = StoreOptions::default();
        if let Some(vectors) = &vectors {
            options.vector_backend = super::vectors::in_process(vectors, None)?;
        }
        Store::init_with(
            Arc::new(machine.clone()),
            Arc::new(machine.clock()),
            store_root(),
            &options,
        )
        .map_err(|e| HarnessError(format!("initialising the server's store: {e}")))?;
        machine
            .create_dir_all_durable(std::path::Path::new(STAGING_DIR))
            .map_err(|e| HarnessError(format!("creating the server's staging directory: {e}")))?;
        Ok(Provisioned {
            seed,
            remote_vectors,
            machine,
            vectors,
        })
    }

    fn duplicate(&self) -> Provisioned {
        Provisioned {
            seed: self.seed,
            remote_vectors: self.remote_vectors,
            machine: self.machine.duplicate_machine(),
            vectors: self.vectors.as_ref().map(SimFs::duplicate_machine),
        }
    }
}

/// Runs `scenario` on `seed` with `strike`.
pub fn run(
    scenario: &NetScenario,
    seed: u64,
    under_test: ServiceUnderTest,
    strike: Option<NetInjection>,
) -> Result<Outcome, HarnessError> {
    let Provisioned { machine, vectors, .. } = Provisioned::for_run(scenario.remote_vectors, seed)?;
    // The fault-free run records the disk before every syscall: the
    // matrix takes each power cut's outcomes from it.
    let recorded_from = machine.syscall_count();
    machine.record_snapshots(strike.is_none());
    let model = Rc::new(RefCell::new(Model::new()));
    let control: Shared = Rc::new(RefCell::new(Control {
        strike,
        received: 0,
        server: machine.spawn_process(),
        failure: None,
        log: Vec::new(),
        records: BTreeMap::new(),
        missed: None,
        under_test,
        violations: Vec::new(),
        reads_checked: 0,
        vectors: vectors.as_ref().map(SimFs::spawn_process),
        vector_calls: 0,
        calls_before: Vec::new(),
        vector_armed: None,
        strike_armed: false,
        vector_failure: None,
        vector_records: BTreeMap::new(),
        workers: Vec::new(),
        jobs: Vec::new(),
        waits: Vec::new(),
        model: Rc::clone(&model),
    }));
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        .simulation_duration(SIMULATION_LIMIT)
        .tick_duration(TICK)
        .build();
    let host_control = Rc::clone(&control);
    sim.host(SERVER, move || serve(Rc::clone(&host_control)));
    if vectors.is_some() {
        let vectors_control = Rc::clone(&control);
        sim.host(super::vectors::VECTORS, move || {
            super::vectors::serve_vectors(Rc::clone(&vectors_control))
        });
        sim.set_link_latency(SERVER, super::vectors::VECTORS, super::vectors::VECTOR_LINK_LATENCY);
    }
    // A server whose store's vectors are remote takes a few vector calls
    // to open: its client starts once it is up, as a deployment's does
    // (the others start at once, and their first attempt finds it up).
    let grace = if vectors.is_some() {
        super::vectors::STARTUP_GRACE
    } else {
        Duration::ZERO
    };
    sim.client(
        "client",
        client(scenario.requests.clone(), Rc::clone(&model), Rc::clone(&control), grace),
    );
    let mut restart_at: Option<Duration> = None;
    let mut vectors_restart_at: Option<Duration> = None;
    loop {
        // The server's log goes with the run's log, not to stderr.
        let finished = tearline_service::capture_log(server_log(&control), || sim.step())
            .map_err(|e| HarnessError(format!("the network simulation failed: {e}")))?;
        // A failure the last step asked for is carried out even when the
        // client has just finished: its answer is on the wire already.
        if fail_host(&control, &mut sim)? {
            restart_at = Some(sim.elapsed() + DOWN_FOR);
        }
        if fail_vectors(&control, &mut sim)? {
            vectors_restart_at = Some(sim.elapsed() + DOWN_FOR);
        }
        if finished || control.borrow().missed.is_some() {
            break;
        }
        if restart_at.is_some_and(|at| sim.elapsed() >= at) {
            restart_at = None;
            note_outside(&control, sim.elapsed(), "server restarts");
            sim.bounce(SERVER);
        }
        if vectors_restart_at.is_some_and(|at| sim.elapsed() >= at) {
            vectors_restart_at = None;
            note_outside(&control, sim.elapsed(), "vector server restarts");
            sim.bounce(super::vectors::VECTORS);
        }
    }
    // The run ends with the servers killed, not closed: what they
    // acknowledged must not depend on a clean shutdown.
    control.borrow().server.crash_process();
    if let Some(vectors) = &control.borrow().vectors {
        vectors.crash_process();
    }
    drop(sim);
    control.borrow_mut().join_workers();
    let mut control = Rc::try_unwrap(control)
        .map_err(|_| HarnessError("the simulation kept its hosts".to_string()))?
        .into_inner();
    let snapshots = machine.take_snapshots();
    machine.record_snapshots(false);
    let during = |syscalls: &std::ops::Range<u64>| {
        let range = (syscalls.start - recorded_from) as usize..(syscalls.end - recorded_from) as usize;
        snapshots.get(range).map(<[SimSnapshot]>::to_vec).unwrap_or_default()
    };
    for record in control.records.values_mut() {
        record.during = during(&record.syscalls);
    }
    for job in &mut control.jobs {
        job.during = during(&job.syscalls);
    }
    let machine = control.server.spawn_process();
    let model = model.borrow().clone();
    if let Some(strike) = strike.filter(|s| s.fault.at_vector_call() && !control.strike_armed)
        && control.missed.is_none()
        && control.received >= strike.rpc
    {
        control.missed = Some(format!(
            "request {} made {} vector calls or fewer",
            strike.rpc,
            strike.at.unwrap_or(0)
        ));
    }
    if let Some(strike) = strike.filter(|s| s.fault.during_job() && !control.strike_armed)
        && control.missed.is_none()
        && control.received >= strike.rpc
    {
        control.missed = Some(format!("request {} started no background job", strike.rpc));
    }
    Ok(Outcome {
        model,
        machine,
        log: control.log,
        records: std::mem::take(&mut control.records),
        missed: control.missed.or_else(|| {
            let strike = strike?;
            (control.received < strike.rpc)
                .then(|| format!("the run made {} requests, not {}", control.received, strike.rpc))
        }),
        violations: control.violations,
        reads_checked: control.reads_checked,
        vectors: control.vectors.as_ref().map(SimFs::spawn_process),
        vector_records: std::mem::take(&mut control.vector_records),
        calls_before: std::mem::take(&mut control.calls_before),
        vector_calls: control.vector_calls,
        jobs: std::mem::take(&mut control.jobs),
        waits: std::mem::take(&mut control.waits),
    })
}

/// Carries out the host failure the server asked for or the strike
/// caused, if any: kills the server's process, or cuts the power of its
/// host and boots it with the outcome the strike names (a missed case if
/// there is no such outcome), then stops the turmoil host. Whether the
/// server went down.
fn fail_host(control: &Shared, sim: &mut turmoil::Sim<'_>) -> Result<bool, HarnessError> {
    let asked = control.borrow_mut().failure.take();
    let Some(failure) = asked.or_else(|| went_down(control)) else {
        return Ok(false);
    };
    let server = control.borrow().server.clone();
    let Some(next) = fail_machine(control, sim.elapsed(), "server", &server, failure) else {
        return Ok(false);
    };
    sim.crash(SERVER);
    // The store's work the server's host was running stops with it.
    control.borrow_mut().join_workers();
    control.borrow_mut().server = next;
    Ok(true)
}

/// Carries out the failure the vector server asked for, if any (see
/// [`fail_host`]). Whether it went down.
fn fail_vectors(control: &Shared, sim: &mut turmoil::Sim<'_>) -> Result<bool, HarnessError> {
    let asked = control.borrow_mut().vector_failure.take();
    let (Some(failure), Some(vectors)) = (asked, control.borrow().vectors.clone()) else {
        return Ok(false);
    };
    let Some(next) = fail_machine(control, sim.elapsed(), "vector server", &vectors, failure) else {
        return Ok(false);
    };
    sim.crash(super::vectors::VECTORS);
    control.borrow_mut().vectors = Some(next);
    Ok(true)
}

/// Kills `machine`'s process, or cuts its host's power and boots it with
/// the outcome `failure` names: the process to restart on, or `None` (a
/// missed case) if there is no such outcome.
fn fail_machine(control: &Shared, at: Duration, host: &str, machine: &SimFs, failure: HostFailure) -> Option<SimFs> {
    match failure {
        HostFailure::Crash => {
            note_outside(control, at, &format!("the {host}'s process is killed"));
            machine.crash_process();
            Some(machine.spawn_process())
        }
        HostFailure::PowerCut(model, pick) => {
            let Some(choice) = resolve_crash(&machine.snapshot(), model, pick, machine.crash_seed()) else {
                control.borrow_mut().missed = Some(format!("the power cut has no {model} outcome {pick:?}"));
                return None;
            };
            let what = format!("the {host}'s host loses power; it will boot with {model} outcome {pick:?}");
            note_outside(control, at, &what);
            machine.power_cut();
            Some(machine.reboot_with(model, &choice))
        }
    }
}

/// Where the server's log lines go during a step: into the run's log.
fn server_log(control: &Shared) -> impl FnMut(&str) + 'static {
    let control = Rc::clone(control);
    move |line| note(&control, format!("server log: {line}"))
}

/// The failure a halted server process stands for (the strike's, which
/// halted it at a syscall of its handling), if it halted.
fn went_down(control: &Shared) -> Option<HostFailure> {
    let control = control.borrow();
    control.server.halted()?;
    let strike = control.strike?;
    Some(match strike.crash {
        Some((model, pick)) => HostFailure::PowerCut(model, pick),
        None => HostFailure::Crash,
    })
}

fn note_outside(control: &Shared, at: Duration, what: &str) {
    control
        .borrow_mut()
        .log
        .push(format!("{:>8.3}s {what}", at.as_secs_f64()));
}

/// The server host: opens the service on its current process's disk and
/// serves HTTP/1.1 on [`PORT`].
async fn serve(control: Shared) -> turmoil::Result {
    let (fs, under_test, remote) = {
        let control = control.borrow();
        (
            control.server.clone(),
            control.under_test.clone(),
            control.vectors.is_some(),
        )
    };
    let keys = Keys::parse_list(&format!("admin:{KEY}")).map_err(|e| e.to_string())?;
    let mut options = ServiceOptions::new(store_root(), keys, STAGING_DIR).with_staging_tag(0);
    if let Some(flaw) = &under_test.flaw {
        options = options.with_flaw_named(flaw)?;
    }
    // The store's work runs in lockstep with this host, which carries its
    // calls to the vector server (opening the store too), and runs its
    // background jobs.
    let routes = super::lockstep::Routes::default();
    let (bridge, backend) = super::lockstep::start_bridge(&control, Rc::clone(&routes));
    let (opened, offload) = {
        if remote {
            options = options.with_vector_backend(backend);
        }
        let slot = Arc::new(std::sync::Mutex::new(None));
        let filled = Arc::clone(&slot);
        bridge
            .run(
                Box::new(move || {
                    let opened = Service::open(Arc::new(fs.clone()), Arc::new(fs.clock()), options);
                    *filled.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(opened);
                }),
                WorkKind::Request,
            )
            .await;
        let opened = slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .unwrap_or_else(|| {
                Err(StoreError::Io {
                    context: "opening the store".to_string(),
                    source: std::io::Error::other("the store's work stopped"),
                })
            });
        (opened, Offload::Bridged(bridge))
    };
    let service = match opened {
        Ok(service) => service,
        Err(e) => {
            // The client will give up; the check after the run opens the
            // store itself and says what is wrong.
            note(&control, format!("server cannot open the store: {e}"));
            return Ok(());
        }
    };
    note(&control, "server up".to_string());
    let router = tearline_service::router_with(service, tearline_service::api::DEFAULT_MAX_BODY_BYTES, offload);
    *routes.borrow_mut() = Some(router.clone());
    let listener = turmoil::net::TcpListener::bind((IpAddr::V4(Ipv4Addr::UNSPECIFIED), PORT)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let router = router.clone();
        let control = Rc::clone(&control);
        tokio::task::spawn_local(async move {
            // Each request is handled to its end on a task of its own, as
            // a server's worker finishes what it began when the client
            // hangs up: what a handling did is on the record, and its
            // syscalls are all struck, whether the client waited or not.
            let service = hyper::service::service_fn(move |request| {
                let (answered, answer) = tokio::sync::oneshot::channel();
                let handling = handle(request, router.clone(), Rc::clone(&control));
                tokio::task::spawn_local(async move {
                    answered.send(handling.await).ok();
                });
                async move {
                    // Unanswered only if the handling panicked (when the
                    // host goes down, this goes with it).
                    answer.await.unwrap_or_else(|_| {
                        Ok(axum::response::IntoResponse::into_response(
                            hyper::StatusCode::INTERNAL_SERVER_ERROR,
                        ))
                    })
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .auto_date_header(false)
                .serve_connection(TokioIo::new(stream), service);
            // A connection the client dropped (it gave up on an attempt)
            // ends in an error: nothing to do.
            let _ = connection.await;
        });
    }
}

/// Handles one request, with the strike if it falls on it.
async fn handle(
    request: hyper::Request<Incoming>,
    mut router: axum::Router,
    control: Shared,
) -> Result<axum::response::Response, Infallible> {
    let line = format!("{} {}", request.method(), request.uri().path());
    let (rpc, strike) = {
        let mut control = control.borrow_mut();
        control.received += 1;
        let calls = control.vector_calls;
        control.calls_before.push(calls);
        let rpc = control.received;
        (rpc, control.strike.filter(|s| s.rpc == rpc))
    };
    let fault = strike.map(|s| s.fault);
    note(&control, format!("rpc{rpc} {line} received"));
    match fault {
        Some(NetFault::LoseRequest) => {
            note(&control, format!("rpc{rpc} lost before the server handled it"));
            return std::future::pending().await;
        }
        Some(NetFault::Partition) => {
            note(&control, format!("rpc{rpc}: client and server partitioned"));
            turmoil::partition("client", SERVER);
            let heal = Rc::clone(&control);
            tokio::task::spawn_local(async move {
                tokio::time::sleep(PARTITION_FOR).await;
                turmoil::repair("client", SERVER);
                note(&heal, "partition repaired".to_string());
            });
            return std::future::pending().await;
        }
        _ => {}
    }
    let before = control.borrow().server.syscall_count();
    if let Some(strike) = strike.filter(|s| s.fault.at_syscall()) {
        let k = strike.at.unwrap_or(0);
        let (fault, what) = match strike.fault {
            NetFault::PowerCutWhileHandling => (Fault::PowerCut, "its host loses power"),
            _ => (Fault::ProcessCrash, "its process is killed"),
        };
        control
            .borrow()
            .server
            .set_fault_plan(FaultPlan::none().at(before + k, fault));
        note(
            &control,
            format!("rpc{rpc}: the server will fail at syscall {k} of its handling ({what})"),
        );
    }
    let answer = router
        .call(request.map(axum::body::Body::new))
        .await
        .unwrap_or_else(|never| match never {});
    let status = answer.status().as_u16();
    let after = control.borrow().server.syscall_count();
    let alive = control.borrow().server.halted().is_none();
    if let Some(strike) = strike.filter(|s| s.fault.at_syscall() && alive) {
        // The handling ended before the syscall the strike names.
        let server = control.borrow().server.clone();
        server.set_fault_plan(FaultPlan::none());
        control.borrow_mut().missed = Some(format!(
            "request {rpc} made {} syscalls, not {}",
            after - before,
            strike.at.unwrap_or(0) + 1
        ));
    }
    let halted = control.borrow().server.halted();
    if let Some(halted) = halted {
        // A dead server answers nothing.
        note(
            &control,
            format!("rpc{rpc}: the server went down ({halted}); no answer"),
        );
        return std::future::pending().await;
    }
    {
        let mut control = control.borrow_mut();
        if control.strike.is_none() {
            let snapshot = control.server.snapshot();
            control.records.insert(
                rpc,
                RequestRecord {
                    snapshot,
                    syscalls: before..after,
                    during: Vec::new(),
                },
            );
        }
    }
    match fault {
        Some(NetFault::LoseResponse) => {
            note(&control, format!("rpc{rpc} applied ({status}), its answer lost"));
            std::future::pending().await
        }
        Some(NetFault::LateResponse) => {
            note(&control, format!("rpc{rpc} applied ({status}), answered late"));
            tokio::time::sleep(LATE_BY).await;
            Ok(answer)
        }
        Some(NetFault::CrashBeforeAnswer) => {
            note(
                &control,
                format!("rpc{rpc} applied ({status}); the server is killed before answering"),
            );
            control.borrow_mut().failure = Some(HostFailure::Crash);
            std::future::pending().await
        }
        Some(NetFault::CrashAfterAnswer | NetFault::PowerCutAfterAnswer) => {
            let failure = match strike.and_then(|s| s.crash) {
                Some((model, pick)) => HostFailure::PowerCut(model, pick),
                None => HostFailure::Crash,
            };
            // Carried out at the end of this step, once the answer is on
            // the wire and before anything else touches the disk.
            note(
                &control,
                format!("rpc{rpc} answered {status}; the server fails just after"),
            );
            control.borrow_mut().failure = Some(failure);
            Ok(answer)
        }
        _ => {
            note(&control, format!("rpc{rpc} answered {status}"));
            Ok(answer)
        }
    }
}

/// How one request ended for the client.
enum Ending {
    /// A 2xx (or a 404 for a delete it had already sent: it is gone).
    Acknowledged,
    /// A 4xx: the server says it did nothing.
    Refused,
    /// No answer, or only 5xx, after every attempt.
    GaveUp,
}

/// The client host: after `grace`, each request in turn, with retries;
/// stops at the first it gives up on.
async fn client(
    requests: Vec<Request>,
    model: Rc<RefCell<Model>>,
    control: Shared,
    grace: Duration,
) -> turmoil::Result {
    if !grace.is_zero() {
        tokio::time::sleep(grace).await;
    }
    for request in &requests {
        match request {
            Request::RemoveSourceBehindTheStore { name } => {
                // A store that lost the file has nothing here to remove:
                // what it lost, the check after the run says.
                remove_source(&control, name);
                model.borrow_mut().edit_source(name, None);
                note(&control, format!("operator: {}", request.describe()));
                continue;
            }
            Request::DamageVectorsBehindTheStore => {
                match damage_vectors(&control) {
                    Ok(damaged) => {
                        model
                            .borrow_mut()
                            .note_damage(format!("the vector server's segments ({})", damaged.join(", ")));
                        note(
                            &control,
                            format!("operator: {}: {}", request.describe(), damaged.join(", ")),
                        );
                        // An operator restarts it, and it opens them again.
                        control.borrow_mut().vector_failure = Some(HostFailure::Crash);
                    }
                    // Its host is down (a strike): nothing was damaged.
                    Err(e) => note(&control, format!("operator: {} failed: {e}", request.describe())),
                }
                continue;
            }
            Request::Get { name } => {
                let answer = send(request, &control).await;
                let found = match (&answer.ending, answer.status) {
                    (Ending::GaveUp, _) => {
                        note(&control, format!("client gives up on {}", request.describe()));
                        return Ok(());
                    }
                    (_, Some(404)) => None,
                    (_, Some(200)) => match content_of(&answer.body) {
                        Some(hash) => Some(hash),
                        None => {
                            control.borrow_mut().violations.push(Violation::new(
                                Invariant::ReaderConsistent,
                                format!("{} answered 200 without a document's content", request.describe()),
                            ));
                            continue;
                        }
                    },
                    // Refused (a 4xx but 404): nothing was read.
                    _ => continue,
                };
                let when = format!("{} answered {}", request.describe(), answer.status.unwrap_or(0));
                control.borrow_mut().reads_checked += 1;
                if let Some(violation) = reader_consistent::check_read(name, found.as_deref(), &model.borrow(), &when) {
                    control.borrow_mut().violations.push(violation);
                }
                continue;
            }
            Request::Rebuild => {
                if !rebuild(request, &model, &control).await {
                    return Ok(());
                }
                continue;
            }
            _ => {}
        }
        let Some(operation) = request.operation() else {
            continue;
        };
        model.borrow_mut().begin(&operation);
        match send(request, &control).await.ending {
            Ending::Acknowledged => {
                // A request the model says must fail was acknowledged.
                let must_fail = model.borrow().expect(&operation).must_fail;
                if let Some(violation) = no_destructive_without_force::check_acknowledged(&operation, must_fail) {
                    control.borrow_mut().violations.push(violation);
                }
                model.borrow_mut().acknowledge();
            }
            Ending::Refused => model.borrow_mut().reject(),
            Ending::GaveUp => {
                note(&control, format!("client gives up on {}", operation.describe()));
                return Ok(());
            }
        }
    }
    note(&control, "client done".to_string());
    Ok(())
}

/// How often the client asks how its rebuild job stands, and how many
/// times before it gives up on it.
const JOB_POLL: Duration = Duration::from_millis(50);
const JOB_POLLS: u32 = 200;

/// Asks for a full rebuild and waits for its job to end, telling the
/// model what came of it. Whether the client goes on (`false`: it gave
/// up, and the rebuild is uncertain).
async fn rebuild(request: &Request, model: &Rc<RefCell<Model>>, control: &Shared) -> bool {
    let Some(operation) = request.operation() else {
        return true;
    };
    model.borrow_mut().begin(&operation);
    let started = send(request, control).await;
    match started.ending {
        Ending::Acknowledged => {}
        Ending::Refused => {
            model.borrow_mut().reject();
            return true;
        }
        Ending::GaveUp => {
            note(control, format!("client gives up on {}", operation.describe()));
            return false;
        }
    }
    let job: serde_json::Value = serde_json::from_slice(&started.body).unwrap_or_default();
    let Some(id) = job["job_id"].as_u64() else {
        control.borrow_mut().violations.push(Violation::new(
            Invariant::CleanError,
            format!("{} answered {:?} without a job id", request.describe(), started.status),
        ));
        return false;
    };
    for _ in 0..JOB_POLLS {
        tokio::time::sleep(JOB_POLL).await;
        let polled = send(&Request::JobStatus { id }, control).await;
        let state = match (polled.ending, polled.status) {
            (Ending::GaveUp, _) => None,
            // Forgotten: the server restarted; the job may have switched
            // the generation before it went, or not.
            (_, Some(404)) => None,
            (_, Some(200)) => {
                let job: serde_json::Value = serde_json::from_slice(&polled.body).unwrap_or_default();
                match job["state"].as_str() {
                    Some("succeeded") => Some(true),
                    Some("failed") => Some(false),
                    _ => continue,
                }
            }
            _ => continue,
        };
        match state {
            Some(true) => model.borrow_mut().acknowledge(),
            Some(false) => model.borrow_mut().reject(),
            None => {
                note(
                    control,
                    format!("client cannot tell how job {id} ended; gives up on it"),
                );
                return false;
            }
        }
        note(
            control,
            format!(
                "client: job {id} {}",
                if state == Some(true) { "succeeded" } else { "failed" }
            ),
        );
        return true;
    }
    note(control, format!("client: job {id} did not end; gives up on it"));
    false
}

/// The documents a reader a background job lets in looks up: every name
/// the model has before or after the operation in flight (a read of one
/// that operation touches may find either).
pub(super) fn names_to_read(control: &Shared) -> Vec<String> {
    if control.borrow().server.halted().is_some() {
        return Vec::new();
    }
    let control = control.borrow();
    let model = control.model.borrow();
    let allowed = model.allowed();
    let names: std::collections::BTreeSet<&String> = allowed
        .before
        .indexed
        .keys()
        .chain(allowed.after.indexed.keys())
        .collect();
    names.into_iter().cloned().collect()
}

/// reader-consistent, for a read of `name` a background job let in, which
/// was answered `read` (status and body; `None`: never): it must be
/// served (zero downtime: not a 503 while a rebuild runs or switches) and
/// find what the model allows. Nothing is judged once the server's host
/// has failed (a strike can fall on a read's syscall). What the read
/// found, for the log.
pub(super) fn judge_read_during_job(control: &Shared, name: &str, read: Option<(u16, Bytes)>) -> String {
    let status = read.as_ref().map(|(status, _)| *status);
    let heard = format!(
        "GET {name} {}",
        status.map_or("unanswered".to_string(), |s| s.to_string())
    );
    if control.borrow().server.halted().is_some() {
        return heard;
    }
    let when = format!("a read of {name} while a background job had let readers in");
    let found = match read {
        Some((404, _)) => None,
        // A 200 without content finds no document: check_read says so.
        Some((200, body)) => content_of(&body),
        _ => {
            control.borrow_mut().violations.push(Violation::new(
                Invariant::ReaderConsistent,
                format!(
                    "{when} was answered {}: reads must be served from the live generation while a rebuild \
                     runs and switches (zero downtime)",
                    status.map_or("nothing".to_string(), |s| s.to_string())
                ),
            ));
            return heard;
        }
    };
    let mut control = control.borrow_mut();
    control.reads_checked += 1;
    let violation = reader_consistent::check_read(name, found.as_deref(), &control.model.borrow(), &when);
    control.violations.extend(violation);
    heard
}

/// In a process of its own on the vector server's machine, writes 16
/// bytes of garbage over the middle of each segment of every collection,
/// durably: the paths it damaged.
fn damage_vectors(control: &Shared) -> std::io::Result<Vec<String>> {
    let Some(vectors) = control.borrow().vectors.clone() else {
        return Err(std::io::Error::other("the store's vectors are not on a vector server"));
    };
    let operator = vectors.spawn_process();
    let damaged = super::vectors::damage_segments(&operator);
    operator.crash_process();
    damaged
}

/// An operator, in a process of its own on the server's machine, removes
/// source `name` durably (if it is there).
fn remove_source(control: &Shared, name: &str) {
    let operator = control.borrow().server.spawn_process();
    let dir = Layout::new(store_root()).source_dir();
    let removed = operator
        .remove_file_if_exists(&dir.join(name))
        .and_then(|_| operator.sync_dir(&dir));
    operator.crash_process();
    if let Err(e) = removed {
        note(control, format!("operator: removing source/{name} failed: {e}"));
    }
}

/// What the client made of a request: how it ended, and the last answer's
/// status and body.
struct Answer {
    ending: Ending,
    status: Option<u16>,
    body: Bytes,
}

/// Sends `request` until an attempt is answered with anything but a 5xx,
/// at most [`ATTEMPTS`] times, pausing between attempts.
async fn send(request: &Request, control: &Shared) -> Answer {
    let mut pause = FIRST_BACKOFF;
    let mut last = (None, Bytes::new());
    for attempt in 1..=ATTEMPTS {
        let answer = tokio::time::timeout(ATTEMPT_TIMEOUT, attempt_once(request))
            .await
            .ok()
            .flatten();
        let status = answer.as_ref().map(|(status, _)| *status);
        let heard = status.map_or("no answer".to_string(), |s| s.to_string());
        note(
            control,
            format!("client attempt {attempt} of {}: {heard}", request.describe()),
        );
        if let Some((status, body)) = answer {
            last = (Some(status), body);
        }
        let ending = match status {
            Some(s) if (200..300).contains(&s) => Some(Ending::Acknowledged),
            // Sent before, maybe applied then: a document that is gone is
            // what the client asked for.
            Some(404) if attempt > 1 && matches!(request, Request::Delete { .. }) => Some(Ending::Acknowledged),
            // A refusal of a retry says nothing of the attempt before it,
            // which may have been applied: the client cannot tell.
            Some(s) if (400..500).contains(&s) && attempt > 1 => Some(Ending::GaveUp),
            Some(s) if (400..500).contains(&s) => Some(Ending::Refused),
            _ => None,
        };
        if let Some(ending) = ending {
            return Answer {
                ending,
                status: last.0,
                body: last.1,
            };
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    }
    Answer {
        ending: Ending::GaveUp,
        status: last.0,
        body: last.1,
    }
}

/// One attempt on a fresh connection: the answer's status and body, if
/// one came whole.
async fn attempt_once(request: &Request) -> Option<(u16, Bytes)> {
    let http = http_request(request)?;
    let stream = turmoil::net::TcpStream::connect((SERVER, PORT)).await.ok()?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
    let driver = tokio::task::spawn_local(async move {
        let _ = connection.await;
    });
    let answer = async { status_and_body(sender.send_request(http).await.ok()?).await }.await;
    driver.abort();
    answer
}

/// `request` as the client sends it, with its key (`None` for what is not
/// a request); a reader a background job lets in sends the same.
pub(super) fn http_request(request: &Request) -> Option<hyper::Request<Full<Bytes>>> {
    let (method, uri, body) = match request {
        Request::Put { name, content } => (
            hyper::Method::PUT,
            format!("/v1/documents/{name}"),
            serde_json::json!({ "content": content }).to_string(),
        ),
        Request::Delete { name } => (hyper::Method::DELETE, format!("/v1/documents/{name}"), String::new()),
        Request::Get { name } => (hyper::Method::GET, format!("/v1/documents/{name}"), String::new()),
        Request::Import { documents } => {
            let documents: Vec<serde_json::Value> = documents
                .iter()
                .map(|(name, content)| serde_json::json!({ "name": name, "content": content }))
                .collect();
            (
                hyper::Method::POST,
                "/v1/import".to_string(),
                serde_json::json!({ "documents": documents }).to_string(),
            )
        }
        Request::Share { name } => (hyper::Method::PUT, format!("/v1/documents/{name}/share"), String::new()),
        Request::Own { name, owner } => (
            hyper::Method::PUT,
            format!("/v1/documents/{name}/owner"),
            serde_json::json!({ "owner": owner }).to_string(),
        ),
        Request::Reconcile { mode, force, user } => (
            hyper::Method::POST,
            "/v1/reconcile".to_string(),
            serde_json::json!({
                "mode": format!("{mode:?}").to_lowercase(),
                "dry_run": false,
                "force": force,
                "user": user,
            })
            .to_string(),
        ),
        Request::Rebuild => (
            hyper::Method::POST,
            "/v1/rebuild".to_string(),
            serde_json::json!({ "mode": "full" }).to_string(),
        ),
        Request::JobStatus { id } => (hyper::Method::GET, format!("/v1/jobs/{id}"), String::new()),
        Request::RemoveSourceBehindTheStore { .. } | Request::DamageVectorsBehindTheStore => return None,
    };
    hyper::Request::builder()
        .method(method)
        .uri(uri)
        .header(hyper::header::HOST, SERVER)
        .header(hyper::header::AUTHORIZATION, format!("Bearer {KEY}"))
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .ok()
}

/// The hash of the content a document's JSON (as `GET
/// /v1/documents/{name}` answers it) holds, if it holds one.
fn content_of(body: &Bytes) -> Option<String> {
    let document: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    document["content"]
        .as_str()
        .map(|content| content_hash(content.as_bytes()))
}

/// A response's status and whole body, if the body came whole.
pub(super) async fn status_and_body<B: hyper::body::Body>(response: hyper::Response<B>) -> Option<(u16, Bytes)> {
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.ok()?.to_bytes();
    Some((status, body))
}
