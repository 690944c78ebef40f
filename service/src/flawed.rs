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
    /// from the live generation. Caught by the zero-downtime test.
    UnavailableWhileRebuilding,
    /// A write-behind server: `PUT /v1/documents/{name}` answers `201`
    /// before the write is made (it is queued on a thread of its own), so a
    /// server killed after answering loses writes its clients saw
    /// acknowledged. Caught by the kill-and-restart test.
    AcknowledgeBeforeWrite,
}

impl ServiceFlaw {
    /// Every flaw.
    pub const ALL: [ServiceFlaw; 3] = [
        ServiceFlaw::DeleteWithoutRoleCheck,
        ServiceFlaw::UnavailableWhileRebuilding,
        ServiceFlaw::AcknowledgeBeforeWrite,
    ];

    /// Its `--flaw` name.
    pub fn name(&self) -> &'static str {
        match self {
            ServiceFlaw::DeleteWithoutRoleCheck => "delete-without-role-check",
            ServiceFlaw::UnavailableWhileRebuilding => "unavailable-while-rebuilding",
            ServiceFlaw::AcknowledgeBeforeWrite => "acknowledge-before-write",
        }
    }

    /// The flaw with this `--flaw` name.
    pub fn parse(name: &str) -> Option<ServiceFlaw> {
        Self::ALL.into_iter().find(|flaw| flaw.name() == name)
    }
}
