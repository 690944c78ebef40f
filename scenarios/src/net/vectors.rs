//! The third host of a network scenario whose store keeps its vectors
//! remote: `vectors`, the `vector-server`'s routes on a simulated disk of
//! its own, and how the store on `server` reaches it through turmoil: its
//! calls go through the server host's pump ([`super::lockstep`]), which
//! carries each over the simulated network, in simulated time, with the
//! attempt's timeout.
//!
//! The strike of a vector fault ([`NetFault::at_vector_call`]) is armed by
//! the pump for the call it names and carried out by the vector host when
//! that call arrives: the request dropped, the answer dropped, the link
//! partitioned before or after applying, or the host killed or powered off
//! after applying.

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use tearline_service::vectors::{
    InProcess, RemoteOptions, RemoteVectors, Transport, Unanswered, VectorServer, VectorServerClient,
    VectorServerOptions,
};
use tearline_sim_fs::{FileKind, Fs, SimFs, SimSnapshot};
use tower::Service as _;

use super::case::NetFault;
use super::lockstep::VectorRequest;
use super::world::{Control, HostFailure, note};
use crate::engine::{Damage, HarnessError};

/// The vector server's host name and port.
pub const VECTORS: &str = "vectors";
pub(super) const VECTOR_PORT: u16 = 7641;
/// Where its collections live on its disk.
const VECTOR_ROOT: &str = "/vectors";
/// The prefix of the store's collections.
const PREFIX: &str = "";
/// How the store calls its vector server in a simulation: every attempt,
/// its retry and the last wait out of the budget fit well inside one of
/// the client's attempts ([`super::world::ATTEMPT_TIMEOUT`]).
pub const REMOTE: RemoteOptions = RemoteOptions {
    timeout: Duration::from_millis(200),
    retries: 1,
    backoff: Duration::from_millis(20),
};
/// The latency of the link between the server and its vector server: a
/// data centre's, fixed.
pub const VECTOR_LINK_LATENCY: Duration = Duration::from_millis(1);
/// How long a partition between the server and its vector server lasts:
/// longer than the store's attempts at one call before its last wait (an
/// attempt, a pause and a second attempt: some 420 ms), shorter than the
/// client's retries of its request.
pub const VECTOR_PARTITION_FOR: Duration = Duration::from_millis(500);
/// How long the client waits for the server to open its store (which
/// takes a few vector calls) before its first request.
pub const STARTUP_GRACE: Duration = Duration::from_secs(1);

/// The seed of the vector server's machine, from the run's.
pub fn machine_seed(seed: u64) -> u64 {
    seed ^ 0x7665_6374_6f72_7321
}

/// The backend of a store whose vectors are on `transport`'s server, its
/// client with the service's known-bad design `flaw` where it is the
/// vector client's.
pub(super) fn backend(transport: Arc<dyn Transport>, flaw: Option<&str>) -> Arc<RemoteVectors> {
    let client = VectorServerClient::over(transport, REMOTE).with_flaw_named(flaw.unwrap_or_default());
    Arc::new(RemoteVectors::new(client, PREFIX))
}

/// The backend of a store whose vectors are on the vector server's
/// machine `machine`, reached in this process by the vector client with
/// the service's known-bad design `flaw`, if it has one: for initialising
/// the store before a run and checking it after.
pub fn in_process(machine: &SimFs, flaw: Option<&str>) -> Result<Arc<RemoteVectors>, HarnessError> {
    let server = InProcess::new(Arc::new(machine.clone()), Path::new(VECTOR_ROOT))
        .map_err(|e| HarnessError(format!("opening the vector server's collections: {e}")))?;
    Ok(backend(Arc::new(server), flaw))
}

/// Damages every segment of every collection on the vector server's disk
/// (in process `fs`, durably): 16 bytes of garbage over its middle, with
/// records after them, so no torn-tail repair may cut it away. The paths
/// it damaged, in order.
pub(super) fn damage_segments(fs: &SimFs) -> std::io::Result<Vec<String>> {
    let root = Path::new(VECTOR_ROOT);
    let mut damaged = Vec::new();
    for collection in fs.read_dir(root)? {
        if collection.kind != FileKind::Dir {
            continue;
        }
        let dir = root.join(&collection.name);
        for segment in fs.read_dir(&dir)? {
            let path = dir.join(&segment.name);
            if segment.name.ends_with(".vec") && fs.metadata(&path)?.len > 0 {
                crate::engine::driver::damage_file(fs, &path, &Damage::Garbage)?;
                damaged.push(path.display().to_string());
            }
        }
    }
    Ok(damaged)
}

/// One attempt of a call over the simulated network, the strike armed if
/// it names this call.
pub(super) async fn call(control: &Rc<RefCell<Control>>, request: &VectorRequest) -> Result<(u16, String), Unanswered> {
    let index = {
        let mut control = control.borrow_mut();
        control.waited();
        let index = control.vector_calls;
        control.vector_calls += 1;
        control.arm_vector_strike(index);
        index
    };
    let line = format!("{} {}", request.method, request.path);
    note(control, format!("server calls vectors: {line} (vector call {index})"));
    let deadline = tokio::time::Instant::now() + request.timeout;
    let connected = tokio::time::timeout_at(deadline, turmoil::net::TcpStream::connect((VECTORS, VECTOR_PORT))).await;
    let Ok(Ok(stream)) = connected else {
        note(control, format!("vector call {index}: no connection"));
        return Err(Unanswered::NotSent("no connection to the vector server".to_string()));
    };
    let exchange = async {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
        let driver = tokio::task::spawn_local(async move {
            let _ = connection.await;
        });
        let http = hyper::Request::builder()
            .method(request.method.as_str())
            .uri(request.path.as_str())
            .header(hyper::header::HOST, VECTORS)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(
                tearline_service::vectors::server::BUDGET_HEADER,
                request.timeout.as_millis().to_string(),
            )
            .body(Full::new(Bytes::from(request.body.clone().unwrap_or_default())))
            .ok()?;
        let answer = async {
            let response = sender.send_request(http).await.ok()?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.ok()?.to_bytes();
            Some((status, String::from_utf8_lossy(&body).into_owned()))
        }
        .await;
        driver.abort();
        answer
    };
    match tokio::time::timeout_at(deadline, exchange).await {
        Ok(Some((status, body))) => {
            note(control, format!("vector call {index} answered {status}"));
            Ok((status, body))
        }
        _ => {
            note(control, format!("vector call {index}: no answer in time"));
            Err(Unanswered::Lost("no answer from the vector server in time".to_string()))
        }
    }
}

/// What the fault-free run saw of one vector call.
#[derive(Clone, Debug)]
pub struct VectorCallRecord {
    /// The vector server's disk as its answer went out.
    pub snapshot: SimSnapshot,
}

/// The vector server host: its routes on its current process's disk.
pub(super) async fn serve_vectors(control: Rc<RefCell<Control>>) -> turmoil::Result {
    let Some(fs) = control.borrow().vectors.clone() else {
        return Ok(());
    };
    let options = VectorServerOptions {
        offload: tearline_service::Offload::Inline,
        budgets: false,
        ..VectorServerOptions::new(VECTOR_ROOT)
    };
    let server = match VectorServer::new(Arc::new(fs), options) {
        Ok(server) => server,
        Err(e) => {
            note(&control, format!("vector server cannot open its collections: {e}"));
            return Ok(());
        }
    };
    note(&control, "vector server up".to_string());
    let router = tearline_service::vectors::server::router(server);
    let listener = turmoil::net::TcpListener::bind((IpAddr::V4(Ipv4Addr::UNSPECIFIED), VECTOR_PORT)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let router = router.clone();
        let control = Rc::clone(&control);
        tokio::task::spawn_local(async move {
            let service = hyper::service::service_fn(move |request| {
                handle_vector_call(request, router.clone(), Rc::clone(&control))
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .auto_date_header(false)
                .serve_connection(TokioIo::new(stream), service);
            let _ = connection.await;
        });
    }
}

/// Handles one call to the vector server, with the strike if it was armed
/// for it.
async fn handle_vector_call(
    request: hyper::Request<Incoming>,
    mut router: axum::Router,
    control: Rc<RefCell<Control>>,
) -> Result<axum::response::Response, Infallible> {
    let armed = control.borrow_mut().vector_armed.take();
    let line = format!("{} {}", request.method(), request.uri().path());
    match armed {
        Some(NetFault::VectorLoseRequest) => {
            note(&control, format!("vectors: {line} lost before it was handled"));
            return std::future::pending().await;
        }
        Some(NetFault::VectorPartition) => {
            note(&control, format!("vectors: {line}: server and vectors partitioned"));
            partition_for_a_while(&control);
            return std::future::pending().await;
        }
        _ => {}
    }
    let answer = router
        .call(request.map(axum::body::Body::new))
        .await
        .unwrap_or_else(|never| match never {});
    let status = answer.status().as_u16();
    {
        let mut control = control.borrow_mut();
        if control.strike.is_none() {
            let snapshot = control.vectors.as_ref().map(SimFs::snapshot);
            // The call being handled is the last one the pump made.
            if let (Some(snapshot), Some(index)) = (snapshot, control.vector_calls.checked_sub(1)) {
                control.vector_records.insert(index, VectorCallRecord { snapshot });
            }
        }
    }
    match armed {
        Some(NetFault::VectorLoseResponse) => {
            note(&control, format!("vectors: {line} applied ({status}), its answer lost"));
            std::future::pending().await
        }
        Some(NetFault::VectorPartitionAfterApply) => {
            note(
                &control,
                format!("vectors: {line} applied ({status}); then server and vectors partitioned"),
            );
            partition_for_a_while(&control);
            std::future::pending().await
        }
        Some(NetFault::VectorCrashAfterApply | NetFault::VectorPowerCutAfterApply) => {
            let failure = match control.borrow().strike.and_then(|s| s.crash) {
                Some((model, pick)) => HostFailure::PowerCut(model, pick),
                None => HostFailure::Crash,
            };
            note(
                &control,
                format!("vectors: {line} applied ({status}); the vector server fails before answering"),
            );
            control.borrow_mut().vector_failure = Some(failure);
            std::future::pending().await
        }
        _ => Ok(answer),
    }
}

/// Partitions the server from its vector server for
/// [`VECTOR_PARTITION_FOR`].
fn partition_for_a_while(control: &Rc<RefCell<Control>>) {
    turmoil::partition(super::world::SERVER, VECTORS);
    let heal = Rc::clone(control);
    tokio::task::spawn_local(async move {
        tokio::time::sleep(VECTOR_PARTITION_FOR).await;
        turmoil::repair(super::world::SERVER, VECTORS);
        note(&heal, "server and vectors reconnected".to_string());
    });
}
