//! `vector-server`: the remote vector store (see
//! `tearline_service::vectors::server` for its API).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tearline_service::vectors::{VectorServer, VectorServerOptions};
use tearline_sim_fs::{Fs, RealFs};

#[derive(Parser)]
#[command(
    name = "vector-server",
    version,
    about = "The Tearline remote vector store: collections of vectors over HTTP, durable when answered"
)]
struct Cli {
    /// Where the collections live (created if missing).
    #[arg(long, default_value = "vectors")]
    root: PathBuf,
    /// Address to listen on (loopback by default; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:7641")]
    bind: SocketAddr,
    /// Tests only: every Nth write is slowed by --slow-ms, after it is
    /// durable (its answer comes late: the ambiguous outcome a client must
    /// survive) or, with --slow-before-apply, before.
    #[cfg(feature = "flawed-variants")]
    #[arg(long, hide = true, requires = "slow_ms")]
    slow_every: Option<u64>,
    /// Tests only: how late (milliseconds).
    #[cfg(feature = "flawed-variants")]
    #[arg(long, hide = true, requires = "slow_every")]
    slow_ms: Option<u64>,
    /// Tests only: slow those writes before they are applied, not after.
    #[cfg(feature = "flawed-variants")]
    #[arg(long, hide = true, requires = "slow_every")]
    slow_before_apply: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    #[cfg(feature = "flawed-variants")]
    let slow_writes =
        cli.slow_every
            .zip(cli.slow_ms)
            .map(|(slow_every, ms)| tearline_service::vectors::server::SlowWrites {
                slow_every,
                slow_by: std::time::Duration::from_millis(ms),
                before_apply: cli.slow_before_apply,
            });
    #[cfg(not(feature = "flawed-variants"))]
    let slow_writes = None;
    let fs: Arc<dyn Fs> = Arc::new(RealFs);
    let served = VectorServer::new(
        fs,
        VectorServerOptions {
            slow_writes,
            ..VectorServerOptions::new(cli.root.clone())
        },
    )
    .map_err(|e| format!("{}: {e}", cli.root.display()))
    .and_then(|server| {
        let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("starting the runtime: {e}"))?;
        runtime.block_on(tearline_service::listen::serve(
            cli.bind,
            tearline_service::vectors::server::router(server),
        ))
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vector-server: {e}");
            ExitCode::FAILURE
        }
    }
}
