//! What the invariants' tests share: observations, capabilities and models
//! built from a few names and contents.

use std::collections::BTreeMap;

use super::{Invariant, Violation};
use crate::contract::{Capabilities, Observation, Operation};
use crate::model::Model;

/// A sound store whose index and source files both hold these documents.
pub(crate) fn observation(indexed: &[(&str, &str)]) -> Observation {
    let map: BTreeMap<String, String> = indexed
        .iter()
        .map(|(n, c)| (n.to_string(), crate::model::content_hash(c.as_bytes())))
        .collect();
    Observation {
        indexed: map.clone(),
        sources: map,
        integrity_ok: true,
        ..Observation::default()
    }
}

/// A store with source files and a vector store.
pub(crate) fn caps() -> Capabilities {
    Capabilities {
        source_files: true,
        vectors: true,
        ..Capabilities::default()
    }
}

/// The model after `ops`, all acknowledged, and `in_flight` begun.
pub(crate) fn model_with(ops: &[Operation], in_flight: Option<Operation>) -> Model {
    let mut model = Model::new();
    for op in ops {
        model.begin(op);
        model.acknowledge();
    }
    if let Some(op) = in_flight {
        model.begin(&op);
    }
    model
}

/// Adds (or replaces) one document.
pub(crate) fn add(name: &str, content: &str) -> Operation {
    Operation::Add {
        name: name.into(),
        content: content.into(),
    }
}

/// Which invariants these violations break, in order.
pub(crate) fn broken(violations: &[Violation]) -> Vec<Invariant> {
    violations.iter().map(|v| v.invariant).collect()
}
