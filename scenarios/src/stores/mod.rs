//! Stores the `tearline` binary can test by name (`--store NAME`).
//!
//! The binary re-invokes itself for its worker processes, so a worker must
//! be able to build the very factory the parent runs: factories are looked
//! up by name here. Plug a new store in by adding it to [`by_name`] and
//! [`NAMES`].

pub mod file_per_doc;

use tearline_model::StoreFactory;

/// The store names [`by_name`] knows, the default first.
pub const NAMES: [&str; 2] = ["file-per-doc", "file-per-doc-nosync"];

/// The factory for a store name.
pub fn by_name(name: &str) -> Option<Box<dyn StoreFactory>> {
    match name {
        "file-per-doc" => Some(Box::new(file_per_doc::FilePerDocFactory::correct())),
        "file-per-doc-nosync" => Some(Box::new(file_per_doc::FilePerDocFactory::without_fsync())),
        _ => None,
    }
}
