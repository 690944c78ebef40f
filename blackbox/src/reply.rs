//! What a child's lines mean: its hello, an answer to a request, and the
//! observation in an answer. Pure functions of the text, so every byte a
//! child can print is fuzzed without a child (`fuzz/`, target
//! `blackbox_answer`); the conversation in [`crate::exec`] reads each line
//! through them.

use std::path::{Component, Path};

use serde::Deserialize;
use serde_json::Value;
use tearline_model::{Capabilities, FailureKind, Observation};

/// The protocol this crate speaks: the `hello` value a child must send.
pub const PROTOCOL_VERSION: &str = "tearline/1";

/// The longest line a child may print, newline included: a longer one is a
/// protocol break (a child cannot make the harness hold its output without
/// bound).
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// A child's hello line: who it is and what it supports. Paths are relative
/// to the store's root.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Hello {
    /// Must be [`PROTOCOL_VERSION`].
    pub hello: String,
    /// The store's name, for reports.
    pub name: String,
    /// What it supports.
    pub capabilities: Capabilities,
    /// Where its source files live, relative to the root.
    #[serde(default)]
    pub source_dir: Option<String>,
    /// Its exclusive lock file, relative to the root.
    #[serde(default)]
    pub lock_file: Option<String>,
    /// Globs (relative) of the files only the lock holder may destroy.
    #[serde(default)]
    pub protected: Vec<String>,
    /// Whether the child answers `reset` (drops everything and waits for a
    /// new conversation), so one process can serve many opens.
    #[serde(default)]
    pub reusable: bool,
}

/// What one answer line says.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// `"ok": true`: the whole answer.
    Done(Value),
    /// `"ok": false`: what the child claims of the effect (an outcome it
    /// does not name claims nothing), and its error.
    Failed {
        /// The claimed effect.
        kind: FailureKind,
        /// The child's `error`, or a note that it gave none.
        error: String,
    },
    /// Not an answer: why.
    Broken(String),
}

/// The first 200 characters of a line, for messages.
pub fn shown(line: &str) -> String {
    line.trim_end().chars().take(200).collect()
}

/// A line as a JSON object, or why it is not one.
fn object(line: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(line) {
        Ok(value) if value.is_object() => Ok(value),
        _ => Err(format!("a line that is not a JSON object: {:?}", shown(line))),
    }
}

/// A path the hello names must stay under the store's root.
fn relative(field: &str, path: &str) -> Result<(), String> {
    let inside = !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if inside {
        Ok(())
    } else {
        Err(format!(
            "its hello's {field} {path:?} is not a relative path under the store's root"
        ))
    }
}

/// Reads a hello line: the protocol version this crate speaks, and paths
/// that stay under the store's root.
pub fn read_hello(line: &str) -> Result<Hello, String> {
    let value = object(line)?;
    let hello: Hello =
        serde_json::from_value(value).map_err(|e| format!("its hello does not parse ({e}): {}", shown(line)))?;
    if hello.hello != PROTOCOL_VERSION {
        return Err(format!("it speaks {:?}, not {PROTOCOL_VERSION:?}", hello.hello));
    }
    if let Some(dir) = &hello.source_dir {
        relative("source_dir", dir)?;
    }
    if let Some(lock) = &hello.lock_file {
        relative("lock_file", lock)?;
    }
    for glob in &hello.protected {
        relative("protected glob", glob)?;
    }
    Ok(hello)
}

/// Reads an answer line.
pub fn read_reply(line: &str) -> Reply {
    let answer = match object(line) {
        Ok(answer) => answer,
        Err(why) => return Reply::Broken(why),
    };
    match answer.get("ok").and_then(Value::as_bool) {
        Some(true) => Reply::Done(answer),
        Some(false) => Reply::Failed {
            kind: answer
                .get("outcome")
                .and_then(|o| serde_json::from_value::<FailureKind>(o.clone()).ok())
                .unwrap_or_default(),
            error: answer
                .get("error")
                .and_then(Value::as_str)
                .filter(|e| !e.trim().is_empty())
                .unwrap_or("(no error given)")
                .to_string(),
        },
        None => Reply::Broken(format!("an answer with no boolean \"ok\": {}", shown(line))),
    }
}

/// The observation in an `observe` answer.
pub fn read_observation(answer: &Value) -> Result<Observation, String> {
    let observation = answer.get("observation").cloned().unwrap_or(Value::Null);
    serde_json::from_value(observation).map_err(|e| format!("the observation does not parse ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hello_must_keep_its_paths_under_the_root() {
        let hello = |source: &str| {
            serde_json::json!({
                "hello": PROTOCOL_VERSION,
                "name": "s",
                "capabilities": Capabilities::default(),
                "source_dir": source,
            })
            .to_string()
        };
        assert!(read_hello(&hello("source")).is_ok());
        assert!(read_hello(&hello("./docs/src")).is_ok());
        for bad in ["/etc", "../outside", "docs/../../x", ""] {
            let err = read_hello(&hello(bad)).expect_err(bad);
            assert!(err.contains("not a relative path"), "{bad}: {err}");
        }
    }

    #[test]
    fn an_answer_is_done_failed_with_its_claim_or_broken() {
        assert!(matches!(read_reply(r#"{"ok":true,"x":1}"#), Reply::Done(_)));
        assert_eq!(
            read_reply(r#"{"ok":false,"error":"full","outcome":"not-applied"}"#),
            Reply::Failed {
                kind: FailureKind::NotApplied,
                error: "full".to_string()
            }
        );
        assert_eq!(
            read_reply(r#"{"ok":false,"outcome":"a claim nobody knows"}"#),
            Reply::Failed {
                kind: FailureKind::default(),
                error: "(no error given)".to_string()
            }
        );
        assert_eq!(
            read_reply(r#"{"ok":false,"error":"  "}"#),
            Reply::Failed {
                kind: FailureKind::default(),
                error: "(no error given)".to_string()
            },
            "a failure always has words"
        );
        for broken in ["", "[1]", "{\"ok\":1}", "not json", "{\"ok\":true"] {
            assert!(matches!(read_reply(broken), Reply::Broken(_)), "{broken:?}");
        }
    }
}
