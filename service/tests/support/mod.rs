//! A real `refstore serve` on loopback, for the HTTP tests.

#![allow(dead_code)] // each test binary uses its own part of this.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

/// The keys every test server knows, one per role.
pub const READER: &str = "reader-key-0123456789";
/// The writer's key.
pub const WRITER: &str = "writer-key-0123456789";
/// The admin's key.
pub const ADMIN: &str = "admin-key-01234567890";

/// A running server; killed when dropped.
pub struct Server {
    child: Mutex<Child>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    agent: ureq::Agent,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `refstore ARGS` on `root`.
pub fn refstore(root: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_refstore"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .expect("refstore runs")
}

impl Server {
    /// Initialises a store at `root` (if it is not one) and serves it.
    pub fn start(root: &Path, extra: &[&str]) -> Server {
        if !root.join("source").exists() {
            let init = refstore(root, &["init"]);
            assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
        }
        let mut command = Command::new(env!("CARGO_BIN_EXE_refstore"));
        command
            .arg("--root")
            .arg(root)
            .args(["serve", "--bind", "127.0.0.1:0"])
            .args(extra)
            .env(
                "REFSTORE_KEYS",
                format!("reader:{READER},writer:{WRITER},admin:{ADMIN}"),
            )
            // Imports stage in the temp dir: keep what a killed server
            // leaves there inside the test's own.
            .env("TMPDIR", staging_dir(root));
        let (child, url) = spawn_listening(command);
        let agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        Server {
            child: Mutex::new(child),
            url,
            agent,
        }
    }

    /// Kills the server with SIGKILL (no chance to finish anything) and
    /// waits for it to be gone.
    pub fn kill(&self) {
        let mut child = self.child.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        child.kill().ok();
        child.wait().ok();
    }

    /// One request: `key` as the bearer key (none if `None`), `body` as
    /// JSON (none if `None`). Returns the status and the body as JSON
    /// (`null` if empty), and checks every error is a problem document.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        self.try_call(method, path, key, body)
            .unwrap_or_else(|| panic!("{method} {path}: no answer"))
    }

    /// [`Server::call`], but `None` when no answer came (the server is
    /// gone, or the connection broke).
    pub fn try_call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Option<(u16, serde_json::Value)> {
        let url = format!("{}{path}", self.url);
        let request = http_request(method, &url, key, body.is_some());
        let response = match body {
            Some(body) => self
                .agent
                .run(request.body(body.to_string().into_bytes()).expect("request")),
            None => self.agent.run(request.body(Vec::new()).expect("request")),
        };
        let mut response = response.ok()?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or("").to_string())
            .unwrap_or_default();
        let text = response.body_mut().read_to_string().ok()?;
        let json = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"))
        };
        if status >= 400 {
            assert_eq!(content_type, "application/problem+json", "{method} {path}: {text}");
            assert_eq!(json["status"], status, "{method} {path}: {text}");
            assert!(
                json["type"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("urn:tearline:problem:")),
                "{text}"
            );
            assert!(json["detail"].as_str().is_some_and(|d| !d.is_empty()), "{text}");
        }
        Some((status, json))
    }

    /// Sends raw bytes as the body (for malformed and oversized bodies).
    pub fn call_raw(&self, method: &str, path: &str, key: Option<&str>, body: Vec<u8>) -> (u16, serde_json::Value) {
        let url = format!("{}{path}", self.url);
        let request = http_request(method, &url, key, true);
        let mut response = self
            .agent
            .run(request.body(body).expect("request"))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().expect("a body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    /// Waits for a job to finish; returns it.
    pub fn wait_for_job(&self, id: u64) -> serde_json::Value {
        loop {
            let (status, job) = self.call("GET", &format!("/v1/jobs/{id}"), Some(READER), None);
            assert_eq!(status, 200, "{job}");
            if job["state"] == "succeeded" || job["state"] == "failed" {
                return job;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// Beside `root`: where its server stages imports.
fn staging_dir(root: &Path) -> std::path::PathBuf {
    let dir = root.with_extension("staging");
    std::fs::create_dir_all(&dir).expect("the staging dir");
    dir
}

/// Starts `command` (a server told to bind port 0) and reads the address
/// it prints first: `listening on URL`.
pub fn spawn_listening(mut command: Command) -> (Child, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the server starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the address line");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("expected `listening on URL`, got {line:?}"))
        .to_string();
    (child, url)
}

/// A running `vector-server`; killed when dropped.
pub struct VectorServer {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl VectorServer {
    /// Serves the collections in `root`, with `extra` arguments.
    pub fn start(root: &Path, extra: &[&str]) -> VectorServer {
        let mut command = Command::new(env!("CARGO_BIN_EXE_vector-server"));
        command
            .arg("--root")
            .arg(root)
            .args(["--bind", "127.0.0.1:0"])
            .args(extra);
        let (child, url) = spawn_listening(command);
        VectorServer { child, url }
    }
}

impl Drop for VectorServer {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn http_request(method: &str, url: &str, key: Option<&str>, json: bool) -> ureq::http::request::Builder {
    let mut request = ureq::http::Request::builder().method(method).uri(url);
    if let Some(key) = key {
        request = request.header("Authorization", format!("Bearer {key}"));
    }
    if json {
        request = request.header("Content-Type", "application/json");
    }
    request
}
