//! The journal record: the on-disk format of `journal/<id>.json` and its
//! parser, which refuses anything this build did not write.
//!
//! # On-disk format (version 1)
//!
//! ```json
//! {"version":1,"id":"m00000001700000000123","op":"import","state":"active",
//!  "paths":[{"name":"a.md","existed":true,"action":"write"},
//!           {"name":"b.md","existed":false,"action":"write"}]}
//! ```
//!
//! `op` is `add`, `remove` or `import`; `state` is `active`, `committed` or
//! `rolled_back`; `action` is `write` or `remove`; `name` is a document name
//! (relative to `source/`); `id` equals the file's stem. Unknown fields are
//! refused.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::layout::DocName;

/// The journal format this build writes and reads.
pub const JOURNAL_VERSION: u32 = 1;

/// What a journaled mutation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MutationOp {
    /// [`Store::add`](crate::Store::add): one document written.
    Add,
    /// [`Store::remove`](crate::Store::remove): one document removed.
    Remove,
    /// [`Store::import`](crate::Store::import): several documents written.
    Import,
}

/// Where a journaled mutation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalState {
    /// In progress: a drain rolls it back.
    Active,
    /// Its files are published: a drain brings the index in line and cleans up.
    Committed,
    /// Its files are restored: a drain cleans up.
    RolledBack,
}

/// What a mutation does to one document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathAction {
    /// Writes new content.
    Write,
    /// Removes it.
    Remove,
}

/// One document a mutation touches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TouchedPath {
    /// The document's name (its file under `source/`).
    pub name: String,
    /// Whether its source file existed when the mutation began.
    pub existed: bool,
    /// What the mutation does to it.
    pub action: PathAction,
}

/// A journal file's content. See the module docs for the format.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalRecord {
    /// Always [`JOURNAL_VERSION`].
    pub version: u32,
    /// The journal's id: its file is `journal/<id>.json`.
    pub id: String,
    /// The mutation.
    pub op: MutationOp,
    /// Where it stands.
    pub state: JournalState,
    /// Every document it touches, each once.
    pub paths: Vec<TouchedPath>,
}

/// A journal id is what this build generates: ASCII letters, digits, `-`, `_`.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 100 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
}

/// Parses and checks a journal file whose name is `<id>.json`; the reason it
/// is malformed otherwise.
pub fn parse_journal(id: &str, bytes: &[u8]) -> std::result::Result<JournalRecord, String> {
    if bytes.is_empty() {
        return Err("the file is empty".to_string());
    }
    if !valid_id(id) {
        return Err(format!(
            "its name {id:?} is not a journal id (ASCII letters, digits, '-' and '_')"
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("it is not valid JSON ({e})"))?;
    match value.get("version").and_then(serde_json::Value::as_u64) {
        None => return Err("it has no numeric \"version\"".to_string()),
        Some(v) if v != u64::from(JOURNAL_VERSION) => {
            return Err(format!(
                "it has version {v}, this build reads version {JOURNAL_VERSION}"
            ));
        }
        Some(_) => {}
    }
    let record: JournalRecord =
        serde_json::from_value(value).map_err(|e| format!("it does not match the journal format ({e})"))?;
    if record.id != id {
        return Err(format!("it names journal {:?} but its file is {id}.json", record.id));
    }
    let mut seen = BTreeSet::new();
    for path in &record.paths {
        if let Err(e) = DocName::new(&path.name) {
            return Err(format!("it lists a path that is not a valid document name: {e}"));
        }
        if !seen.insert(path.name.as_str()) {
            return Err(format!("it lists {:?} twice", path.name));
        }
    }
    Ok(record)
}
