//! What both servers (`refstore serve`, `vector-server`) share: bind, say
//! where, serve until SIGINT or SIGTERM; run blocking work off the async
//! threads.

use std::fmt;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use crate::problem::Problem;

/// Binds `bind` (port 0 picks a free one), prints `listening on
/// http://ADDR` on stdout once bound, and serves `app` until SIGINT or
/// SIGTERM, finishing the requests in flight.
pub async fn serve(bind: SocketAddr, app: axum::Router) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| format!("binding {bind}: {e}"))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on http://{address}");
    std::io::stdout().flush().ok();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await
        .map_err(|e| format!("serving: {e}"))
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(_) => return interrupt.await.unwrap_or(()),
    };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
}

/// Where a thread's server log goes instead of stderr ([`capture_log`]).
type LogSink = Box<dyn FnMut(&str)>;

thread_local! {
    /// Where this thread's server log goes instead of stderr, if anywhere.
    static LOG_SINK: std::cell::RefCell<Option<LogSink>> = std::cell::RefCell::new(None);
}

/// Writes one line of the server's log: on stderr, or to the sink this
/// thread runs under ([`capture_log`]).
pub fn log(line: &str) {
    let captured = LOG_SINK.with(|sink| match sink.try_borrow_mut().ok().as_deref_mut() {
        Some(Some(sink)) => {
            sink(line);
            true
        }
        _ => false,
    });
    if !captured {
        eprintln!("{line}");
    }
}

/// Runs `work` with the server log written on this thread going to `sink`
/// instead of stderr: a simulation runs every host on its own thread and
/// keeps the log with the run.
pub fn capture_log<R>(sink: impl FnMut(&str) + 'static, work: impl FnOnce() -> R) -> R {
    /// Puts the sink before back, even if `work` panics.
    struct Restore(Option<LogSink>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            LOG_SINK.with(|current| *current.borrow_mut() = previous);
        }
    }
    let _restore = Restore(LOG_SINK.with(|current| current.replace(Some(Box::new(sink)))));
    work()
}

/// Where a handler runs the store's (blocking) work.
#[derive(Clone, Debug, Default)]
pub enum Offload {
    /// On tokio's blocking threads, off the async ones: a real server.
    #[default]
    Threads,
    /// On the calling task: a host of a deterministic simulation, which is
    /// one thread whose every step the simulation orders.
    Inline,
    /// Through a [`Bridge`]: a host of a deterministic simulation whose
    /// store's work itself calls the (simulated) network, which the host's
    /// tasks must carry while the work waits.
    Bridged(Arc<dyn Bridge>),
}

/// Runs blocking work on a thread of its own in lockstep with the host it
/// serves: while the work runs, the host does nothing; while the host
/// carries out what the work asked of the network, the work waits. One
/// work at a time, in the order given, but for reads a background job lets
/// in ([`Bridge::let_readers_in`]), which run inside it. Object-safe.
pub trait Bridge: Send + Sync + fmt::Debug {
    /// Queues `work`, of `kind`; the future ends once it has run.
    fn run(&self, work: Box<dyn FnOnce() + Send>, kind: WorkKind) -> Pin<Box<dyn Future<Output = ()> + Send>>;

    /// Called by a background job (on its own thread) at a point where it
    /// holds nothing a read needs: between the documents of a full
    /// rebuild, and once it has ended (switched, or failed). A bridge that
    /// runs one work at a time may run reads ([`WorkKind::Read`]) here
    /// before the job goes on; it returns once the job may go on.
    fn let_readers_in(&self);
}

/// What a bridged work is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkKind {
    /// A request's: its answer waits for it.
    Request,
    /// A background job's (a rebuild), started by a request that has been
    /// answered.
    Background,
    /// A read's (a request that changes nothing): it may run while a
    /// background job has let readers in ([`Bridge::let_readers_in`]).
    Read,
}

impl Offload {
    /// Runs `work`, a request's; a worker that panics answers 500.
    pub(crate) async fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<R, Problem> + Send + 'static,
    ) -> Result<R, Problem> {
        self.run_as(WorkKind::Request, work).await
    }

    /// Runs `work`, a read's (it changes nothing); as [`Offload::run`].
    pub(crate) async fn read<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<R, Problem> + Send + 'static,
    ) -> Result<R, Problem> {
        self.run_as(WorkKind::Read, work).await
    }

    async fn run_as<R: Send + 'static>(
        &self,
        kind: WorkKind,
        work: impl FnOnce() -> Result<R, Problem> + Send + 'static,
    ) -> Result<R, Problem> {
        let stopped = || Err(Problem::internal("the request's worker stopped unexpectedly"));
        match self {
            Offload::Threads => tokio::task::spawn_blocking(work).await.unwrap_or_else(|_| stopped()),
            Offload::Inline => {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|_| stopped())
            }
            Offload::Bridged(bridge) => {
                let (answer, answered) = std::sync::mpsc::channel();
                bridge
                    .run(
                        Box::new(move || {
                            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
                                .unwrap_or_else(|_| stopped());
                            answer.send(result).ok();
                        }),
                        kind,
                    )
                    .await;
                answered.try_recv().unwrap_or_else(|_| stopped())
            }
        }
    }

    /// A background job's point where readers may come in (see
    /// [`Bridge::let_readers_in`]); nothing to do where reads run on
    /// threads of their own or on the host's task.
    pub(crate) fn let_readers_in(&self) {
        if let Offload::Bridged(bridge) = self {
            bridge.let_readers_in();
        }
    }

    /// Starts `work`, a background job (`name` names its thread), and
    /// returns at once: on a thread of its own in a server, on a task of
    /// the host's in a simulation (in lockstep with it, if bridged).
    pub(crate) fn detach(&self, name: String, work: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
        match self {
            Offload::Threads => std::thread::Builder::new().name(name).spawn(work).map(drop),
            Offload::Inline => {
                drop(tokio::spawn(async move { work() }));
                Ok(())
            }
            Offload::Bridged(bridge) => {
                drop(tokio::spawn(bridge.run(Box::new(work), WorkKind::Background)));
                Ok(())
            }
        }
    }

    /// Runs `work` after the answer has gone out: a write-behind queue (the
    /// `acknowledge-before-write` flaw only). In a simulation, the queue
    /// lags [`WRITE_BEHIND_LAG`] of the simulation's time.
    #[cfg(feature = "flawed-variants")]
    pub(crate) fn later(&self, work: impl FnOnce() + Send + 'static) {
        match self {
            Offload::Threads => drop(std::thread::spawn(work)),
            Offload::Inline => drop(tokio::spawn(async move {
                tokio::time::sleep(WRITE_BEHIND_LAG).await;
                work();
            })),
            Offload::Bridged(bridge) => {
                let bridge = Arc::clone(bridge);
                drop(tokio::spawn(async move {
                    tokio::time::sleep(WRITE_BEHIND_LAG).await;
                    bridge.run(Box::new(work), WorkKind::Request).await;
                }));
            }
        }
    }
}

/// How far a simulated write-behind queue lags its answers.
#[cfg(feature = "flawed-variants")]
pub const WRITE_BEHIND_LAG: std::time::Duration = std::time::Duration::from_millis(20);
