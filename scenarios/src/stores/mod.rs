//! Stores the `tearline` binary can test by name (`--store NAME`).
//!
//! The binary re-invokes itself for its worker processes, so a worker must
//! be able to build the very factory the parent runs: factories are looked
//! up by name here. Each store crate registers its own stores
//! ([`NamedStore`]): the reference store's list comes from the reference
//! store (`tearline_refstore::under_test::stores`, with its known-bad
//! designs as `refstore/<flaw>` when the `flawed-variants` feature is on),
//! and this module adds its tiny file-per-document stores. Plug a new store
//! in by adding its list to [`registered`].

pub mod file_per_doc;

use tearline_model::{NamedStore, StoreFactory};

/// The store `tearline` tests when none is named.
pub const DEFAULT: &str = tearline_refstore::under_test::STORE_NAME;

/// Every registered store, the default first.
pub fn registered() -> Vec<NamedStore> {
    let mut stores = tearline_refstore::under_test::stores();
    stores.push(NamedStore::new(
        "file-per-doc",
        "a tiny store: one file per document, written carefully",
        || Box::new(file_per_doc::FilePerDocFactory::correct()),
    ));
    stores.push(NamedStore::new(
        "file-per-doc-nosync",
        "the tiny store without fsync: must be caught",
        || Box::new(file_per_doc::FilePerDocFactory::without_fsync()),
    ));
    stores
}

/// The store names [`by_name`] knows, the default first.
pub fn names() -> Vec<&'static str> {
    registered().iter().map(|s| s.name).collect()
}

/// The factory for a store name.
pub fn by_name(name: &str) -> Option<Box<dyn StoreFactory>> {
    registered().into_iter().find(|s| s.name == name).map(|s| s.factory())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_store_is_found_by_the_name_it_reports() {
        let names = names();
        assert_eq!(names.first(), Some(&DEFAULT));
        for name in &names {
            let factory = by_name(name).unwrap_or_else(|| panic!("{name} is not found"));
            assert_eq!(factory.name(), *name);
        }
        let unique: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "a name is registered twice: {names:?}");
        assert!(by_name("no-such-store").is_none());
    }
}
