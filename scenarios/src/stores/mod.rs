//! Stores the `tearline` binary can test by name (`--store NAME`).
//!
//! The binary re-invokes itself for its worker processes, so a worker must
//! be able to build the very factory the parent runs: factories are looked
//! up by name here. Plug a new store in by adding it to [`by_name`] and
//! [`names`].
//!
//! With the `flawed-variants` feature, the reference store's known-bad
//! variants (the origin documents' designs) are here too, as
//! `refstore/<variant>`: the matrix must catch each of them.

pub mod file_per_doc;

use tearline_model::StoreFactory;
use tearline_refstore::under_test::{RefStoreFactory, Variant};

/// The store `tearline` tests when none is named.
pub const DEFAULT: &str = "refstore";

/// The store names [`by_name`] knows, the default first.
pub fn names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Variant::all().iter().map(Variant::store_name).collect();
    names.extend(["file-per-doc", "file-per-doc-nosync"]);
    names
}

/// The factory for a store name.
pub fn by_name(name: &str) -> Option<Box<dyn StoreFactory>> {
    if let Some(variant) = Variant::all().into_iter().find(|v| v.store_name() == name) {
        return Some(Box::new(RefStoreFactory::new(variant)));
    }
    match name {
        "file-per-doc" => Some(Box::new(file_per_doc::FilePerDocFactory::correct())),
        "file-per-doc-nosync" => Some(Box::new(file_per_doc::FilePerDocFactory::without_fsync())),
        _ => None,
    }
}
