//! What both servers (`refstore serve`, `vector-server`) do with a socket:
//! bind, say where, serve until SIGINT or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;

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
