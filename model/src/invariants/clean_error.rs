//! clean-error: every store call, on bad input or under an injected fault,
//! returns (Ok or an error): it never panics, and never makes more syscalls
//! than the harness's budget (a hang).
//!
//! The call itself runs under [`crate::guard::catch_store_panic`], which
//! turns a panic into [`panicked`]; the harness then compares the syscall
//! count with its budget ([`check_budget`]).

use std::any::Any;

use super::{Invariant, InvariantSpec, Violation};

/// clean-error in the catalogue.
pub(crate) const SPEC: InvariantSpec = InvariantSpec {
    name: "clean-error",
    explanation: "Every store call, on bad input or under an injected fault, returns (Ok or an error): it \
                  never panics, and never makes more syscalls than the harness's budget (a hang).",
    usually: "A fault reached the caller as a panic, a hang or an error that does not say what happened (or a corrupt file made the store crash). Usually fixed by treating every syscall result and every byte read back as untrusted: return a typed error that names the file and what is wrong with it.",
    example: "the store panicked on open: called `Result::unwrap()` on an `Err` value: Os { code: 5, kind: Uncategorized }",
    needs: None,
    applies_to: |_| true,
};

/// The store call `what` panicked with this payload: the violation says
/// `"{what} panicked: {message}"`.
pub fn panicked(what: &str, payload: &(dyn Any + Send)) -> Violation {
    Violation::new(
        Invariant::CleanError,
        format!("{what} panicked: {}", panic_message(payload)),
    )
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-text payload".to_string()
    }
}

/// The store call `what` returned with the machine at `syscall_count`: past
/// `budget_end` (the last syscall the budget allows) it hung.
pub fn check_budget(what: &str, syscall_count: u64, budget_end: u64) -> Option<Violation> {
    (syscall_count > budget_end).then(|| {
        Violation::new(
            Invariant::CleanError,
            format!("{what} exceeded the syscall budget (syscall {budget_end}): a hang"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_breaks_it_with_its_message() {
        let text: Box<dyn Any + Send> = Box::new("boom");
        assert_eq!(panicked("apply", text.as_ref()).evidence, "apply panicked: boom");
        let formatted: Box<dyn Any + Send> = Box::new(format!("boom {}", 7));
        let violation = panicked("observe", formatted.as_ref());
        assert_eq!(violation.invariant, Invariant::CleanError);
        assert_eq!(violation.evidence, "observe panicked: boom 7");
        let opaque: Box<dyn Any + Send> = Box::new(7_u32);
        assert_eq!(
            panicked("init", opaque.as_ref()).evidence,
            "init panicked: a panic with a non-text payload"
        );
    }

    #[test]
    fn a_call_past_the_syscall_budget_breaks_it_and_one_within_keeps_it() {
        assert_eq!(check_budget("`add a`", 100, 100), None);
        assert_eq!(check_budget("`add a`", 7, u64::MAX), None);
        let violation = check_budget("`add a`", 101, 100).expect("caught");
        assert_eq!(violation.invariant, Invariant::CleanError);
        assert_eq!(
            violation.evidence,
            "`add a` exceeded the syscall budget (syscall 100): a hang"
        );
    }
}
