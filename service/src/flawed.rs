//! Known-bad service designs, kept only to prove the service's tests catch
//! them (feature `flawed-variants`; `refstore serve --flaw NAME`). Never
//! enable in a build that serves data.

/// One deliberate defect of the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceFlaw {
    /// An admin endpoint that forgets its role check: `DELETE
    /// /v1/documents/{name}` takes any key. Caught by the endpoint × role
    /// table.
    DeleteWithoutRoleCheck,
    /// origins/1's rebuild API: reads answer `503` while a rebuild runs
    /// ("returns 503 during brief swap moment") instead of being served
    /// from the live generation. Caught by the zero-downtime test, and by
    /// the network scenarios' readers a rebuild lets in
    /// (reader-consistent).
    UnavailableWhileRebuilding,
    /// A write-behind server: `PUT /v1/documents/{name}` answers `201`
    /// before the write is made (it is queued on a thread of its own), so a
    /// server killed after answering loses writes its clients saw
    /// acknowledged. Caught by the kill-and-restart test.
    AcknowledgeBeforeWrite,
    /// A read cache without invalidation: `GET /v1/documents/{name}`
    /// answers what it answered the first time, whatever was written
    /// since. Caught by the network scenarios' reads (reader-consistent).
    CachedReads,
    /// A vector client that retries an upsert as a non-idempotent add: an
    /// attempt whose answer was lost is sent again as a new vector (under
    /// a fresh id), so a first attempt that was applied stays behind as a
    /// duplicate no document refers to. Caught by the network scenario
    /// whose vectors are remote (no-orphan-vectors, where a vector call's
    /// answer is lost).
    RetriedUpsertDuplicates,
    /// A vector client that reports a damaged collection as an I/O error,
    /// not as damage: the store cannot tell that its derived vectors are
    /// damaged, never rebuilds them from its sources, and every write
    /// fails from then on. Caught by `net-damaged-vectors`
    /// (rebuildable-from-source).
    DamageAsIoError,
    /// The service over a store with a known-bad design (`--flaw
    /// store:NAME`, NAME one of the store's flaws, as `tearline run --store
    /// refstore/NAME` names them). `store:drop-and-reindex` is origins/1's
    /// rebuild, which empties the live index and refills it: a service
    /// that trusts a full rebuild to build beside the live generation then
    /// answers reads from the index being built. Caught by the
    /// zero-downtime test, and by the network scenarios' readers a rebuild
    /// lets in (reader-consistent).
    Store(tearline_refstore::Flaw),
}

impl ServiceFlaw {
    /// Every flaw of the service's own.
    pub const ALL: [ServiceFlaw; 6] = [
        ServiceFlaw::DeleteWithoutRoleCheck,
        ServiceFlaw::UnavailableWhileRebuilding,
        ServiceFlaw::AcknowledgeBeforeWrite,
        ServiceFlaw::CachedReads,
        ServiceFlaw::RetriedUpsertDuplicates,
        ServiceFlaw::DamageAsIoError,
    ];

    /// Its `--flaw` name.
    pub fn name(&self) -> String {
        let name = match self {
            ServiceFlaw::DeleteWithoutRoleCheck => "delete-without-role-check",
            ServiceFlaw::UnavailableWhileRebuilding => "unavailable-while-rebuilding",
            ServiceFlaw::AcknowledgeBeforeWrite => "acknowledge-before-write",
            ServiceFlaw::CachedReads => "cached-reads",
            ServiceFlaw::RetriedUpsertDuplicates => "retried-upsert-duplicates",
            ServiceFlaw::DamageAsIoError => "damage-as-io-error",
            ServiceFlaw::Store(flaw) => {
                return format!("store:{}", flaw.store_name().trim_start_matches("refstore/"));
            }
        };
        name.to_string()
    }

    /// The flaw with this `--flaw` name.
    pub fn parse(name: &str) -> Option<ServiceFlaw> {
        let store_flaws = tearline_refstore::Flaw::ALL.into_iter().map(ServiceFlaw::Store);
        Self::ALL
            .into_iter()
            .chain(store_flaws)
            .find(|flaw| flaw.name() == name)
    }

    /// The store's known-bad design, if this flaw is one.
    pub fn store_flaw(&self) -> Option<tearline_refstore::Flaw> {
        match self {
            ServiceFlaw::Store(flaw) => Some(*flaw),
            _ => None,
        }
    }
}
