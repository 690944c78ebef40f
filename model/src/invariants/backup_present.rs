//! backup-present: after an acknowledged full rebuild, the previous
//! generation is kept as a backup.

use super::{Invariant, InvariantSpec, Violation};
use crate::contract::Observation;
use crate::model::Model;

/// backup-present in the catalogue.
pub(crate) const SPEC: InvariantSpec = InvariantSpec {
    name: "backup-present",
    explanation: "After an acknowledged full rebuild, the previous generation is kept as a backup. Needs \
                  full rebuilds.",
    usually: "A full rebuild removed or overwrote the previous generation before the new one was durable and live, so a crash left no complete index to fall back to. Usually fixed by building beside the live generation and removing the old one only after the switch is durable.",
    example: "after an acknowledged full rebuild no backup generation is left: generations/ holds gen-000002 only",
    needs: Some("full rebuilds (capability `full_rebuild`)"),
    applies_to: |caps| caps.full_rebuild,
};

/// Once the model has an acknowledged full rebuild, the store keeps a
/// backup generation.
pub fn check(observation: &Observation, model: &Model) -> Option<Violation> {
    (model.full_rebuilds() > 0 && observation.backups == 0).then(|| {
        Violation::new(
            Invariant::BackupPresent,
            format!(
                "{} full rebuilds acknowledged, no backup generation kept",
                model.full_rebuilds()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::contract::{Operation, RebuildKind};

    #[test]
    fn a_full_rebuild_without_a_backup_breaks_it_and_one_with_a_backup_keeps_it() {
        let full = Operation::Rebuild {
            kind: RebuildKind::Full,
        };
        let model = model_with(&[full.clone(), full], None);
        let mut found = observation(&[]);
        let violation = check(&found, &model).expect("caught");
        assert_eq!(violation.invariant, Invariant::BackupPresent);
        assert_eq!(
            violation.evidence,
            "2 full rebuilds acknowledged, no backup generation kept"
        );
        found.backups = 1;
        assert_eq!(check(&found, &model), None);
        // Before any full rebuild there is nothing to back up.
        assert_eq!(check(&observation(&[]), &Model::new()), None);
    }
}
