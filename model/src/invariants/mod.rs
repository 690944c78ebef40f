//! The invariant catalogue: what every store must keep, whatever fails.
//!
//! One file per invariant, named after it, holds its definition (its
//! `SPEC`: name, explanation, the capability it needs), its check and the
//! evidence the check gives, and the tests that show the check failing on a state that breaks it and passing on one that keeps it. This
//! module maps each [`Invariant`] to its file once, and composes the checks
//! an observation can show ([`check_recovered`], [`check_read_only`]).
//!
//! Checks take what the harness saw (an [`Observation`] after a writable
//! reopen, the [`Model`], the syscall [`Trace`](tearline_sim_fs::Trace)) and
//! never the store itself, so any store implementing the contract is judged
//! the same way.
//!
//! | invariant | its file | what a caller calls |
//! |---|---|---|
//! | complete-database | [`complete_database`] | [`check_recovered`], [`complete_database::open_failed`], [`complete_database::observe_failed`] |
//! | committed-durable | [`committed_durable`] | [`check_recovered`], [`check_read_only`] |
//! | atomic-op | [`atomic_op`] | [`check_recovered`], [`check_read_only`] |
//! | no-orphan-vectors | [`no_orphan_vectors`] | [`check_recovered`] |
//! | rebuild-idempotent | [`rebuild_idempotent`] | [`rebuild_idempotent::check`] |
//! | filesystem-wins | [`filesystem_wins`] | [`filesystem_wins::check`] |
//! | no-wipe-without-lock | [`no_wipe_without_lock`] | [`no_wipe_without_lock::check`], [`no_wipe_without_lock::check_second_writer`] |
//! | journal-drained | [`journal_drained`] | [`check_recovered`] |
//! | schema-never-mis-stamped | [`schema_never_mis_stamped`] | [`check_recovered`] |
//! | backup-present | [`backup_present`] | [`check_recovered`] |
//! | no-leaked-temp-files | [`no_leaked_temp_files`] | [`check_recovered`] |
//! | no-destructive-without-force | [`no_destructive_without_force`] | [`no_destructive_without_force::check`], [`no_destructive_without_force::check_acknowledged`] |
//! | recovery-idempotent | [`recovery_idempotent`] | [`recovery_idempotent::check`], [`recovery_idempotent::reopen_failed`] |
//! | reader-consistent | [`reader_consistent`] | [`reader_consistent::check`], [`reader_consistent::refused`], [`reader_consistent::changed_disk`] |
//! | failed-means-not-applied | [`failed_means_not_applied`] | [`check_recovered`], [`check_read_only`], [`reader_consistent::check`] |
//! | stays-serviceable | [`stays_serviceable`] | [`stays_serviceable::failed`] |
//! | no-silent-corruption | [`no_silent_corruption`] | [`check_recovered`], [`reader_consistent::check`], [`no_silent_corruption::refusal`], [`no_silent_corruption::after_damage`] |
//! | rebuildable-from-source | [`rebuildable_from_source`] | [`rebuildable_from_source::open_failed`] |
//! | failed-open-changes-nothing | [`failed_open_changes_nothing`] | [`failed_open_changes_nothing::check`] |
//! | protected-records-kept | [`protected_records_kept`] | [`check_recovered`] |
//! | owner-scope-kept | [`owner_scope_kept`] | [`check_recovered`] |
//! | clean-error | [`clean_error`] | [`crate::guard::catch_store_panic`], [`clean_error::check_budget`] |

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::contract::{Capabilities, Observation};
use crate::model::Model;

pub mod atomic_op;
pub mod backup_present;
pub mod clean_error;
pub mod committed_durable;
pub mod complete_database;
pub mod failed_means_not_applied;
pub mod failed_open_changes_nothing;
pub mod filesystem_wins;
pub mod journal_drained;
pub mod model_comparison;
pub mod no_destructive_without_force;
pub mod no_leaked_temp_files;
pub mod no_orphan_vectors;
pub mod no_silent_corruption;
pub mod no_wipe_without_lock;
pub mod owner_scope_kept;
pub mod protected_records_kept;
pub mod reader_consistent;
pub mod rebuild_idempotent;
pub mod rebuildable_from_source;
pub mod recovery_idempotent;
pub mod schema_never_mis_stamped;
pub mod stays_serviceable;
#[cfg(test)]
mod test_support;

pub use filesystem_wins::check as check_filesystem_wins;
pub use no_destructive_without_force::check as check_no_destructive_without_force;
pub use no_wipe_without_lock::check as check_no_wipe_without_lock;
pub use rebuild_idempotent::check as check_rebuild_idempotent;

/// What the catalogue says of one invariant. Each invariant's file defines
/// its own `SPEC`; [`Invariant`] maps to it once.
pub(crate) struct InvariantSpec {
    /// The catalogue name (`committed-durable`), used in reports and repro
    /// lines; it is also the invariant's serde name.
    pub name: &'static str,
    /// What it means and how it is checked, for `tearline explain`.
    pub explanation: &'static str,
    /// What a violation usually means in a store, and how such bugs are
    /// usually fixed.
    pub usually: &'static str,
    /// An example of its evidence.
    pub example: &'static str,
    /// The capability it needs, in words (`None`: every store).
    pub needs: Option<&'static str>,
    /// Whether a store with these capabilities can be held to it.
    pub applies_to: fn(&Capabilities) -> bool,
}

/// A named invariant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Invariant {
    /// After recovery a complete, sound database opens.
    CompleteDatabase,
    /// Every acknowledged operation survives.
    CommittedDurable,
    /// An interrupted operation is all or nothing.
    AtomicOp,
    /// The index and the vector store agree both ways.
    NoOrphanVectors,
    /// Rebuilding twice gives the same content as rebuilding once.
    RebuildIdempotent,
    /// After a full reconcile or rebuild the index equals the source files.
    FilesystemWins,
    /// Index files are only destroyed by a process that holds the lock.
    NoWipeWithoutLock,
    /// A writable open leaves no unfinished journal or intent behind.
    JournalDrained,
    /// The schema version on disk never claims a migration that did not run.
    SchemaNeverMisStamped,
    /// After a full rebuild the previous generation is kept as a backup.
    BackupPresent,
    /// Recovery leaves no temporary or staging file behind.
    NoLeakedTempFiles,
    /// A destructive operation without force fails and changes nothing.
    NoDestructiveWithoutForce,
    /// Bad input and injected faults give an error, never a panic or a hang.
    CleanError,
    /// A second writable open after recovery shows the same state.
    RecoveryIdempotent,
    /// A reader during an operation or after a fault sees an allowed state,
    /// or is told recovery is pending.
    ReaderConsistent,
    /// An operation that failed saying nothing was applied stays absent.
    FailedMeansNotApplied,
    /// A store whose device stays full can still read, remove, and recover
    /// once there is room.
    StaysServiceable,
    /// After a fault at rest every answer is right or an error naming the
    /// damaged file.
    NoSilentCorruption,
    /// After damage to a derived file a writable open brings the store back
    /// from its source files.
    RebuildableFromSource,
    /// A writable open that fails removes nothing.
    FailedOpenChangesNothing,
    /// A record with an active share link is never deleted by a clean, and
    /// an acknowledged share link survives.
    ProtectedRecordsKept,
    /// A reconcile scoped to one owner leaves other owners' records as they
    /// were, and an acknowledged owner survives.
    OwnerScopeKept,
}

impl Invariant {
    /// The whole catalogue, in report order.
    pub const ALL: [Invariant; 22] = [
        Invariant::CompleteDatabase,
        Invariant::CommittedDurable,
        Invariant::AtomicOp,
        Invariant::NoOrphanVectors,
        Invariant::RebuildIdempotent,
        Invariant::FilesystemWins,
        Invariant::NoWipeWithoutLock,
        Invariant::JournalDrained,
        Invariant::SchemaNeverMisStamped,
        Invariant::BackupPresent,
        Invariant::NoLeakedTempFiles,
        Invariant::NoDestructiveWithoutForce,
        Invariant::CleanError,
        Invariant::RecoveryIdempotent,
        Invariant::ReaderConsistent,
        Invariant::FailedMeansNotApplied,
        Invariant::StaysServiceable,
        Invariant::NoSilentCorruption,
        Invariant::RebuildableFromSource,
        Invariant::FailedOpenChangesNothing,
        Invariant::ProtectedRecordsKept,
        Invariant::OwnerScopeKept,
    ];

    /// Its definition, from its own file.
    fn spec(&self) -> &'static InvariantSpec {
        match self {
            Invariant::CompleteDatabase => &complete_database::SPEC,
            Invariant::CommittedDurable => &committed_durable::SPEC,
            Invariant::AtomicOp => &atomic_op::SPEC,
            Invariant::NoOrphanVectors => &no_orphan_vectors::SPEC,
            Invariant::RebuildIdempotent => &rebuild_idempotent::SPEC,
            Invariant::FilesystemWins => &filesystem_wins::SPEC,
            Invariant::NoWipeWithoutLock => &no_wipe_without_lock::SPEC,
            Invariant::JournalDrained => &journal_drained::SPEC,
            Invariant::SchemaNeverMisStamped => &schema_never_mis_stamped::SPEC,
            Invariant::BackupPresent => &backup_present::SPEC,
            Invariant::NoLeakedTempFiles => &no_leaked_temp_files::SPEC,
            Invariant::NoDestructiveWithoutForce => &no_destructive_without_force::SPEC,
            Invariant::CleanError => &clean_error::SPEC,
            Invariant::RecoveryIdempotent => &recovery_idempotent::SPEC,
            Invariant::ReaderConsistent => &reader_consistent::SPEC,
            Invariant::FailedMeansNotApplied => &failed_means_not_applied::SPEC,
            Invariant::StaysServiceable => &stays_serviceable::SPEC,
            Invariant::NoSilentCorruption => &no_silent_corruption::SPEC,
            Invariant::RebuildableFromSource => &rebuildable_from_source::SPEC,
            Invariant::FailedOpenChangesNothing => &failed_open_changes_nothing::SPEC,
            Invariant::ProtectedRecordsKept => &protected_records_kept::SPEC,
            Invariant::OwnerScopeKept => &owner_scope_kept::SPEC,
        }
    }

    /// The catalogue name (`committed-durable`).
    pub fn name(&self) -> &'static str {
        self.spec().name
    }

    /// The invariant with this catalogue name (case-insensitive, surrounding
    /// white space ignored).
    pub fn parse(name: &str) -> Option<Invariant> {
        let name = name.trim();
        Invariant::ALL.into_iter().find(|i| i.name().eq_ignore_ascii_case(name))
    }

    /// What it means and how it is checked, for `tearline explain`.
    pub fn explanation(&self) -> &'static str {
        self.spec().explanation
    }

    /// What a violation usually means in a store, and how such bugs are
    /// usually fixed, for `tearline explain`.
    pub fn usually(&self) -> &'static str {
        self.spec().usually
    }

    /// An example of its evidence, for `tearline explain`.
    pub fn example(&self) -> &'static str {
        self.spec().example
    }

    /// The capability it needs, in words (`None`: every store), for reports
    /// that say why an invariant is not applicable.
    pub fn needs(&self) -> Option<&'static str> {
        self.spec().needs
    }

    /// Whether a store with these capabilities can be held to it.
    pub fn applies_to(&self, caps: &Capabilities) -> bool {
        (self.spec().applies_to)(caps)
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A broken invariant and its evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// Which invariant.
    pub invariant: Invariant,
    /// What was found, in words a developer can act on.
    pub evidence: String,
}

impl Violation {
    /// A violation of `invariant` with this evidence.
    pub fn new(invariant: Invariant, evidence: impl Into<String>) -> Self {
        Self {
            invariant,
            evidence: evidence.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.invariant, self.evidence)
    }
}

/// Checks a store's observation after a writable reopen: every invariant an
/// observation can show, each by its own check, in catalogue order. `caps`
/// decides which apply.
pub fn check_recovered(observation: &Observation, model: &Model, caps: &Capabilities) -> Vec<Violation> {
    let mut violations = Vec::new();
    violations.extend(complete_database::check(observation));
    violations.extend(complete_database::repaired_without_damage(observation, model));
    let compared = model_comparison::check(observation, model, caps);
    match model.damage() {
        // After damage to a derived file, what disagrees with the model is a
        // wrong answer given from damaged data.
        Some(damage) => violations.extend(compared.iter().map(|v| no_silent_corruption::after_damage(damage, v))),
        None => violations.extend(compared),
    }
    if Invariant::ProtectedRecordsKept.applies_to(caps) {
        violations.extend(protected_records_kept::check(observation, model));
    }
    if Invariant::OwnerScopeKept.applies_to(caps) {
        violations.extend(owner_scope_kept::check(observation, model));
    }
    if observation.remote_unavailable {
        // The vector store was down: what the index serves is all that can
        // be checked (the harness refuses the claim while it is up).
        return violations;
    }
    violations.extend(no_silent_corruption::check(observation));
    if Invariant::NoOrphanVectors.applies_to(caps) {
        violations.extend(no_orphan_vectors::check(observation));
    }
    violations.extend(journal_drained::check(observation));
    violations.extend(no_leaked_temp_files::check(observation));
    if Invariant::SchemaNeverMisStamped.applies_to(caps) {
        violations.extend(schema_never_mis_stamped::check(observation));
    }
    if Invariant::BackupPresent.applies_to(caps) {
        violations.extend(backup_present::check(observation, model));
    }
    violations
}

/// Checks what a read-only open observed, while the writer holds the store:
/// only what the model says must be there (committed-durable and atomic-op),
/// since recovery has not run. Each piece of evidence starts with "seen by a
/// read-only open: ".
pub fn check_read_only(observation: &Observation, model: &Model, caps: &Capabilities) -> Vec<Violation> {
    model_comparison::check(observation, model, caps)
        .into_iter()
        .map(|v| Violation::new(v.invariant, format!("seen by a read-only open: {}", v.evidence)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use crate::contract::Operation;

    #[test]
    fn an_invariant_needs_a_capability_exactly_when_a_bare_store_is_not_held_to_it() {
        for invariant in Invariant::ALL {
            assert_eq!(
                invariant.needs().is_some(),
                !invariant.applies_to(&Capabilities::default()),
                "{invariant}"
            );
        }
    }

    #[test]
    fn store_health_breaks_its_own_invariants() {
        let model = Model::new();
        let mut found = observation(&[]);
        found.integrity_ok = false;
        found.integrity_detail = "page 3 is never used".into();
        found.orphan_vectors = 1;
        found.pending_work = 2;
        found.leftover_files = vec!["source/.a.tmp".into()];
        let broken = broken(&check_recovered(&found, &model, &caps()));
        for invariant in [
            Invariant::CompleteDatabase,
            Invariant::NoOrphanVectors,
            Invariant::JournalDrained,
            Invariant::NoLeakedTempFiles,
        ] {
            assert!(broken.contains(&invariant), "{invariant} not reported: {broken:?}");
        }
    }

    #[test]
    fn a_mis_stamped_schema_and_a_missing_backup_are_caught() {
        let caps = Capabilities {
            schema_version: true,
            full_rebuild: true,
            ..caps()
        };
        let model = model_with(
            &[Operation::Rebuild {
                kind: crate::contract::RebuildKind::Full,
            }],
            None,
        );
        let mut found = observation(&[]);
        found.schema = Some(crate::contract::SchemaObservation {
            version: 3,
            expected: 3,
            matches_stamp: false,
        });
        let broken = broken(&check_recovered(&found, &model, &caps));
        assert!(broken.contains(&Invariant::SchemaNeverMisStamped));
        assert!(broken.contains(&Invariant::BackupPresent));
    }

    #[test]
    fn check_recovered_reports_in_catalogue_order_and_only_what_applies() {
        let model = model_with(
            &[
                add("a", "1"),
                Operation::Rebuild {
                    kind: crate::contract::RebuildKind::Full,
                },
            ],
            None,
        );
        let mut found = observation(&[]);
        found.integrity_ok = false;
        found.orphan_vectors = 1;
        found.pending_work = 1;
        found.leftover_files = vec!["x.tmp".into()];
        let all = Capabilities {
            schema_version: true,
            full_rebuild: true,
            ..caps()
        };
        assert_eq!(
            broken(&check_recovered(&found, &model, &all)),
            [
                Invariant::CompleteDatabase,
                Invariant::CommittedDurable,
                Invariant::CommittedDurable,
                Invariant::NoOrphanVectors,
                Invariant::JournalDrained,
                Invariant::NoLeakedTempFiles,
                Invariant::SchemaNeverMisStamped,
                Invariant::BackupPresent,
            ]
        );
        // A bare store is not held to what needs a capability, and its
        // sources are not compared.
        assert_eq!(
            broken(&check_recovered(&found, &model, &Capabilities::default())),
            [
                Invariant::CompleteDatabase,
                Invariant::CommittedDurable,
                Invariant::JournalDrained,
                Invariant::NoLeakedTempFiles,
            ]
        );
    }

    #[test]
    fn a_read_only_open_is_held_only_to_the_model_and_says_so() {
        let model = model_with(&[add("a", "1")], None);
        let mut found = observation(&[]);
        found.integrity_ok = false;
        found.pending_work = 1;
        let violations = check_read_only(&found, &model, &caps());
        assert_eq!(
            broken(&violations),
            [Invariant::CommittedDurable, Invariant::CommittedDurable]
        );
        assert_eq!(
            violations[0].evidence,
            format!(
                "seen by a read-only open: {}",
                check_recovered(&found, &model, &caps())[1].evidence
            )
        );
        assert!(check_read_only(&observation(&[("a", "1")]), &model, &caps()).is_empty());
    }

    #[test]
    fn an_unspecified_source_is_not_judged_on_either_side() {
        let mut model = model_with(&[add("a", "1")], None);
        model.unspecify("binary.md");
        let mut found = observation(&[("a", "1"), ("binary.md", "\u{fffd}")]);
        assert!(check_recovered(&found, &model, &caps()).is_empty());
        found.sources.remove("binary.md");
        assert!(check_recovered(&found, &model, &caps()).is_empty());
        found.indexed.insert("other.md".into(), "x".into());
        assert_eq!(
            broken(&check_recovered(&found, &model, &caps())),
            [Invariant::CommittedDurable]
        );
    }

    #[test]
    fn every_invariant_is_named_and_explained() {
        assert_eq!(Invariant::parse("no-such-invariant"), None);
        for invariant in Invariant::ALL {
            assert_eq!(Invariant::parse(invariant.name()), Some(invariant));
            let shouted = format!(" {} ", invariant.name().to_ascii_uppercase());
            assert_eq!(Invariant::parse(&shouted), Some(invariant), "case-insensitive");
            assert!(invariant.explanation().len() > 40);
        }
    }

    #[test]
    fn the_serde_name_is_the_catalogue_name() {
        for invariant in Invariant::ALL {
            let json = serde_json::to_string(&invariant).expect("serialise");
            assert_eq!(json, format!("\"{}\"", invariant.name()));
            assert_eq!(serde_json::from_str::<Invariant>(&json).expect("parse"), invariant);
        }
    }
}
