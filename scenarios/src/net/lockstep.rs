//! The server host's lockstep with the store's work.
//!
//! The store is blocking code; turmoil's hosts are tasks of one thread. So
//! the store's work (every request's, and every background job's: a
//! rebuild) runs on a thread of its own ([`Lockstep`], the service's
//! [`Bridge`]), in lockstep with the server host's pump task, in every
//! network scenario: while the work runs, the host thread waits for it;
//! when the work calls its vector server (`BridgedTransport`), it waits
//! while the pump carries the call over the simulated network, in
//! simulated time, with the attempt's timeout. Only the work's own threads
//! may wait on the pump: a call from any other (the host's, which would
//! wait on itself forever) is refused at once. Nothing runs beside anything
//! else, so the run is as deterministic as the rest of the simulation.
//!
//! **Readers meet a rebuild.** A full rebuild lets readers in after each
//! document and once it has ended ([`Bridge::let_readers_in`]). There
//! the pump reads every document the client's model knows through the
//! service's own routes (`GET /v1/documents/{name}`), running those reads'
//! work (and any other read queued by then) while the job waits, and
//! judges each against the model ([`super::world::judge_read_during_job`]):
//! a read that fails, or finds a document half rebuilt or missing, breaks
//! reader-consistent. Other work queued meanwhile waits for the job.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use hyper::body::Bytes;
use tearline_service::vectors::{RemoteVectors, Transport, Unanswered};
use tearline_service::{Bridge, WorkKind};
use tower::ServiceExt as _;

use super::Request;
use super::vectors::{VECTOR_PORT, VECTORS};
use super::world::{Control, note};

type Shared = Rc<RefCell<Control>>;

/// The name of the threads the store's work runs on: only they may wait
/// on the pump (the host's own thread would wait on itself, forever).
const WORK_THREAD: &str = "store-work";

/// Whether this thread runs the store's work (see [`WORK_THREAD`]).
fn on_work_thread() -> bool {
    std::thread::current().name() == Some(WORK_THREAD)
}

/// Where the server host puts its routes once the service is open, for
/// the readers a rebuild lets in.
pub(super) type Routes = Rc<RefCell<Option<axum::Router>>>;

/// One call of the store's to its vector server, waiting for its answer.
pub(super) struct VectorRequest {
    /// The HTTP method.
    pub(super) method: String,
    /// The path and query.
    pub(super) path: String,
    /// The JSON body, if any.
    pub(super) body: Option<Vec<u8>>,
    /// How long the attempt may take.
    pub(super) timeout: Duration,
    reply: mpsc::Sender<Result<(u16, String), Unanswered>>,
}

/// What the store's work thread tells the pump.
enum Event {
    /// Carry this call to the vector server.
    Call(VectorRequest),
    /// Let this much simulated time pass (a pause between attempts).
    Pause(Duration, mpsc::Sender<()>),
    /// A background job lets readers in; it goes on once told.
    ReadersIn(mpsc::Sender<()>),
    /// A line of the server's log.
    Log(String),
    /// The work has finished.
    Done,
}

/// Work queued for the pump, and who waits for it.
struct Start {
    work: Box<dyn FnOnce() + Send>,
    kind: WorkKind,
    done: tokio::sync::oneshot::Sender<()>,
}

/// The store's transport to its vector server: every request and pause
/// goes to the pump, and the work waits for it.
#[derive(Debug)]
struct BridgedTransport {
    events: mpsc::Sender<Event>,
}

impl Transport for BridgedTransport {
    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<(u16, String), Unanswered> {
        if !on_work_thread() {
            return Err(Unanswered::NotSent(format!(
                "{method} {path}: a vector call outside the store's work, which only the host's pump carries"
            )));
        }
        let (reply, answer) = mpsc::channel();
        let request = VectorRequest {
            method: method.to_string(),
            path: path.to_string(),
            body: body.map(<[u8]>::to_vec),
            timeout,
            reply,
        };
        if self.events.send(Event::Call(request)).is_err() {
            return Err(Unanswered::NotSent("the server's host is down".to_string()));
        }
        answer
            .recv()
            .unwrap_or_else(|_| Err(Unanswered::Lost("the server's host went down".to_string())))
    }

    fn pause(&self, pause: Duration) {
        let (reply, done) = mpsc::channel();
        if on_work_thread() && self.events.send(Event::Pause(pause, reply)).is_ok() {
            done.recv().ok();
        }
    }

    fn describe(&self) -> String {
        format!("http://{VECTORS}:{VECTOR_PORT}")
    }
}

/// The service's [`Bridge`] on the server host: queues work for the pump.
#[derive(Debug)]
pub(super) struct Lockstep {
    starts: tokio::sync::mpsc::UnboundedSender<Start>,
    events: mpsc::Sender<Event>,
}

impl Bridge for Lockstep {
    fn run(&self, work: Box<dyn FnOnce() + Send>, kind: WorkKind) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let (done, finished) = tokio::sync::oneshot::channel();
        let queued = self.starts.send(Start { work, kind, done }).is_ok();
        Box::pin(async move {
            if queued {
                // Dropped unanswered only when the host goes down.
                finished.await.ok();
            }
        })
    }

    fn let_readers_in(&self) {
        let (reply, done) = mpsc::channel();
        if on_work_thread() && self.events.send(Event::ReadersIn(reply)).is_ok() {
            // Unanswered only when the host goes down.
            done.recv().ok();
        }
    }
}

/// The server host's side of the lockstep: the bridge for the service, the
/// backend for a store whose vectors are remote, and the pump task
/// started. `routes`: where the host will put its routes.
pub(super) fn start_bridge(control: &Shared, routes: Routes) -> (Arc<Lockstep>, Arc<RemoteVectors>) {
    let (starts, queued) = tokio::sync::mpsc::unbounded_channel();
    let (events, received) = mpsc::channel();
    let transport = Arc::new(BridgedTransport { events: events.clone() });
    let pump = Pump {
        queued,
        deferred: VecDeque::new(),
        events: events.clone(),
        received,
        control: Rc::clone(control),
        routes,
    };
    tokio::task::spawn_local(pump.run());
    let flaw = control.borrow().under_test.flaw.clone();
    (
        Arc::new(Lockstep { starts, events }),
        super::vectors::backend(transport, flaw.as_deref()),
    )
}

/// The server host's pump: runs each queued work on a thread of its own,
/// waiting (blocking the host's thread) while it runs, and carries out
/// what it asks for.
struct Pump {
    queued: tokio::sync::mpsc::UnboundedReceiver<Start>,
    /// Works queued while a job had let readers in, that were not reads:
    /// they run after it, in order.
    deferred: VecDeque<Start>,
    events: mpsc::Sender<Event>,
    received: mpsc::Receiver<Event>,
    control: Shared,
    routes: Routes,
}

impl Pump {
    async fn run(mut self) {
        loop {
            let start = match self.deferred.pop_front() {
                Some(start) => start,
                None => match self.queued.recv().await {
                    Some(start) => start,
                    None => return,
                },
            };
            self.work(start).await;
        }
    }

    /// Runs one work to its end (boxed: the readers a job lets in run
    /// works of their own inside it).
    fn work(&mut self, start: Start) -> Pin<Box<dyn Future<Output = ()> + '_>> {
        Box::pin(async move {
            let Start { work, kind, done } = start;
            let job = (kind == WorkKind::Background).then(|| {
                let job = self.control.borrow_mut().begin_job();
                note(
                    &self.control,
                    format!("server starts a background job (of rpc{})", job.rpc()),
                );
                job
            });
            let told = self.events.clone();
            let spawned = std::thread::Builder::new()
                .name(WORK_THREAD.to_string())
                .spawn(move || {
                    let log = told.clone();
                    // A work that panics has ended too: the host must not wait on.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        tearline_service::capture_log(
                            move |line| {
                                log.send(Event::Log(line.to_string())).ok();
                            },
                            work,
                        );
                    }));
                    told.send(Event::Done).ok();
                });
            let worker = match spawned {
                Ok(worker) => worker,
                Err(e) => {
                    // The work is dropped unrun: its request answers 500.
                    note(&self.control, format!("server cannot start the store's work: {e}"));
                    done.send(()).ok();
                    return;
                }
            };
            let id = worker.thread().id();
            self.control.borrow_mut().workers.push(worker);
            loop {
                // The work runs alone: this thread waits for its next word.
                match self.received.recv() {
                    Ok(Event::Done) | Err(_) => break,
                    Ok(Event::Log(line)) => tearline_service::log(&line),
                    Ok(Event::Pause(pause, reply)) => {
                        self.control.borrow_mut().waited();
                        tokio::time::sleep(pause).await;
                        reply.send(()).ok();
                    }
                    Ok(Event::Call(request)) => {
                        let answer = super::vectors::call(&self.control, &request).await;
                        request.reply.send(answer).ok();
                    }
                    Ok(Event::ReadersIn(reply)) => {
                        self.readers_in().await;
                        reply.send(()).ok();
                    }
                }
            }
            // Its thread has said its last word: it ends now.
            let ended = {
                let mut control = self.control.borrow_mut();
                let at = control.workers.iter().position(|w| w.thread().id() == id);
                at.map(|at| control.workers.remove(at))
            };
            if let Some(ended) = ended {
                ended.join().ok();
            }
            if let Some(job) = job {
                note(
                    &self.control,
                    format!("server's background job (of rpc{}) ended", job.rpc()),
                );
                self.control.borrow_mut().end_job(job);
            }
            done.send(()).ok();
        })
    }

    /// A background job has let readers in: every document the model
    /// knows is read through the service's routes and judged, while the
    /// job waits.
    async fn readers_in(&mut self) {
        let Some(router) = self.routes.borrow().clone() else {
            return;
        };
        let mut seen = Vec::new();
        for name in super::world::names_to_read(&self.control) {
            let Some(request) = super::world::http_request(&Request::Get { name: name.clone() }) else {
                continue;
            };
            let (answered, mut answer) = tokio::sync::oneshot::channel();
            let reading = router.clone().oneshot(request);
            tokio::task::spawn_local(async move {
                let read = async { super::world::status_and_body(reading.await.ok()?).await };
                answered.send(read.await).ok();
            });
            let read: Option<(u16, Bytes)> = loop {
                tokio::select! {
                    biased;
                    read = &mut answer => break read.ok().flatten(),
                    start = self.queued.recv() => match start {
                        Some(start) if start.kind == WorkKind::Read => self.work(start).await,
                        Some(start) => self.deferred.push_back(start),
                        None => break None,
                    },
                }
            };
            seen.push(super::world::judge_read_during_job(&self.control, &name, read));
        }
        if !seen.is_empty() {
            note(
                &self.control,
                format!("server lets readers in during its job: {}", seen.join(", ")),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vector call from a thread that is not the store's work (the
    /// host's own, say) is refused at once: waiting for the pump there
    /// would wait forever.
    #[test]
    fn a_call_outside_the_store_s_work_is_refused_not_left_waiting() {
        let (events, _received) = mpsc::channel();
        let transport = BridgedTransport { events };
        let (result, answered) = mpsc::channel();
        std::thread::spawn(move || {
            result
                .send(transport.send("GET", "/v1/collections", None, Duration::from_millis(1)))
                .ok();
        });
        let answer = answered
            .recv_timeout(Duration::from_secs(10))
            .expect("the call waited for a pump that is not there instead of coming back");
        match answer {
            Err(Unanswered::NotSent(why)) => assert!(why.contains("outside the store's work"), "{why}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}
