//! Store calls under guard: a panic in the store is a clean-error
//! violation with the panic's message, never a crash of the harness, and
//! the panic hook stays silent about it (the violation reports it).

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

use crate::invariants::{Violation, clean_error};

thread_local! {
    /// How many silenced calls are running on this thread (they nest).
    static SILENCED: Cell<u32> = const { Cell::new(0) };
}

/// Installs (once) a panic hook that is silent on a thread running a
/// silenced call and defers to the previous hook otherwise.
fn install_quiet_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if SILENCED.with(Cell::get) == 0 {
                previous(info);
            }
        }));
    });
}

/// Runs `call` with the panic hook silent on this thread: for calls whose
/// panics are expected and reported otherwise (a guarded store call, a
/// search for a failing case).
pub fn silenced<T>(call: impl FnOnce() -> T) -> T {
    struct Restore;
    impl Drop for Restore {
        fn drop(&mut self) {
            SILENCED.with(|n| n.set(n.get() - 1));
        }
    }
    install_quiet_hook();
    SILENCED.with(|n| n.set(n.get() + 1));
    let _restore = Restore;
    call()
}

/// Runs one store call: a panic is a clean-error violation saying
/// `"{what} panicked: {message}"`.
pub fn catch_store_panic<T>(what: &str, call: impl FnOnce() -> T) -> Result<T, Violation> {
    silenced(|| catch_unwind(AssertUnwindSafe(call))).map_err(|payload| clean_error::panicked(what, payload.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::Invariant;

    #[test]
    fn a_panic_is_a_clean_error_violation_with_its_message() {
        let violation = catch_store_panic("apply", || -> u32 { panic!("boom {}", 7) }).unwrap_err();
        assert_eq!(violation.invariant, Invariant::CleanError);
        assert_eq!(violation.evidence, "apply panicked: boom 7");
        assert_eq!(catch_store_panic("observe", || 3), Ok(3));
    }

    #[test]
    fn silencing_nests_and_ends_with_the_call() {
        silenced(|| {
            let _ = catch_store_panic("inner", || panic!("quiet"));
            assert_eq!(SILENCED.with(Cell::get), 1);
        });
        assert_eq!(SILENCED.with(Cell::get), 0);
        let _ = std::panic::catch_unwind(|| silenced(|| panic!("unwinds through")));
        assert_eq!(SILENCED.with(Cell::get), 0);
    }
}
