//! What both servers (`refstore serve`, `vector-server`) share: bind, say
//! where, serve until SIGINT or SIGTERM; run blocking work off the async
//! threads.

use std::io::Write;
use std::net::SocketAddr;

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

/// Runs blocking work (the store's, the vector store's) off the async
/// threads; a worker that panics answers 500.
pub(crate) async fn blocking<R: Send + 'static>(
    work: impl FnOnce() -> Result<R, Problem> + Send + 'static,
) -> Result<R, Problem> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|_| Err(Problem::internal("the request's worker stopped unexpectedly")))
}
