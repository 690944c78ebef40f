//! journal-drained: a writable open finishes or rolls back every
//! interrupted operation before returning.

use super::{Invariant, InvariantSpec, Violation};
use crate::contract::Observation;

/// journal-drained in the catalogue.
pub(crate) const SPEC: InvariantSpec = InvariantSpec {
    name: "journal-drained",
    explanation: "A writable open finishes or rolls back every interrupted operation before returning: no \
                  intent or journal is left pending.",
    usually: "A journal of an interrupted operation was left behind after recovery, or a malformed one wedged every open. Usually fixed by draining journals on every writable open, and quarantining (not obeying, not failing on) one that does not parse.",
    example: "after recovery journal/m00000001.json is still on disk in state active",
    needs: None,
    applies_to: |_| true,
};

/// No intent or journal is pending after a writable open.
pub fn check(observation: &Observation) -> Option<Violation> {
    (observation.pending_work > 0).then(|| {
        Violation::new(
            Invariant::JournalDrained,
            format!(
                "{} intents or journals still pending after a writable open",
                observation.pending_work
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn pending_work_breaks_it_and_none_keeps_it() {
        let mut found = observation(&[("a", "1")]);
        assert_eq!(check(&found), None);
        found.pending_work = 2;
        let violation = check(&found).expect("caught");
        assert_eq!(violation.invariant, Invariant::JournalDrained);
        assert_eq!(
            violation.evidence,
            "2 intents or journals still pending after a writable open"
        );
    }
}
