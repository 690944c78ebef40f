//! [`InProcess`]: a `vector-server` in this process, on a filesystem of
//! its own, reached without a socket: its routes are called directly and
//! answered at once. A harness uses it to open a store whose vectors are
//! remote after a simulation has ended (the vector server's disk is a
//! simulated one), and to initialise one before it starts.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use tearline_sim_fs::Fs;
use tower::Service as _;

use super::client::{Transport, Unanswered};
use super::server::{BUDGET_HEADER, VectorServer, VectorServerOptions, router};
use crate::listen::Offload;

/// A `vector-server` in this process: see the module docs.
pub struct InProcess {
    router: Mutex<Router>,
    runtime: tokio::runtime::Runtime,
    root: String,
}

impl std::fmt::Debug for InProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcess")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl InProcess {
    /// The collections in `root` on `fs` (recovering what a crash left, as
    /// a starting server does).
    pub fn new(fs: Arc<dyn Fs>, root: &Path) -> std::io::Result<InProcess> {
        let options = VectorServerOptions {
            offload: Offload::Inline,
            budgets: false,
            ..VectorServerOptions::new(root)
        };
        let server = VectorServer::new(fs, options)?;
        let runtime = tokio::runtime::Builder::new_current_thread().build()?;
        Ok(InProcess {
            router: Mutex::new(router(server)),
            runtime,
            root: root.display().to_string(),
        })
    }
}

impl Transport for InProcess {
    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<(u16, String), Unanswered> {
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header(axum::http::header::CONTENT_TYPE, "application/json")
            .header(BUDGET_HEADER, timeout.as_millis().to_string())
            .body(axum::body::Body::from(body.map(<[u8]>::to_vec).unwrap_or_default()))
            .map_err(|e| Unanswered::NotSent(e.to_string()))?;
        let mut router = self
            .router
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        self.runtime.block_on(async move {
            let response = router.call(request).await.unwrap_or_else(|never| match never {});
            let status = response.status().as_u16();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .map_err(|e| Unanswered::Lost(e.to_string()))?;
            Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
        })
    }

    fn pause(&self, _pause: Duration) {
        // Answers come at once: there is nothing to wait out.
    }

    fn describe(&self) -> String {
        format!("in-process:{}", self.root)
    }
}
