//! Lines the harness reads: a repro line, and a black-box child's answers.

use arbitrary::{Arbitrary, Unstructured};
use tearline_blackbox::reply::{Reply, read_hello, read_observation, read_reply};
use tearline_sim_fs::PersistenceModel;

use crate::case::{Case, CrashPick, Injection, MAX_SCALE};
use crate::engine::ALL_FAULTS;

/// The parts of a case, from which a case the grammar allows is built.
#[derive(Arbitrary, Debug)]
struct CaseParts {
    scenario: Vec<u8>,
    seed: u64,
    syscall: u64,
    fault: u8,
    model: u8,
    distinct: bool,
    pick: u64,
    scale: u8,
    store: Vec<u8>,
}

/// A name of the characters the catalogue's names use.
fn name(bytes: &[u8], fallback: &str) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-_/.";
    let name: String = bytes
        .iter()
        .take(40)
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect();
    if name.is_empty() { fallback.to_string() } else { name }
}

impl CaseParts {
    fn case(&self) -> Case {
        let fault = ALL_FAULTS[usize::from(self.fault) % ALL_FAULTS.len()];
        let model = PersistenceModel::ALL[usize::from(self.model) % PersistenceModel::ALL.len()];
        let pick = if self.distinct {
            CrashPick::Distinct(self.pick as usize)
        } else {
            CrashPick::Sample(self.pick)
        };
        Case {
            scenario: name(&self.scenario, "s"),
            seed: self.seed,
            injection: Injection {
                syscall: self.syscall,
                fault,
                crash: (fault == tearline_sim_fs::Fault::PowerCut).then_some((model, pick)),
            },
            scale: u32::from(self.scale) % MAX_SCALE + 1,
            store: name(&self.store, "refstore"),
        }
    }
}

/// A repro line: any text parses to a case or a clean error; a parsed
/// case prints as a line that parses back to it; and every case the
/// grammar allows (built from arbitrary parts) does too.
pub fn repro_line(data: &[u8]) {
    let mut input = Unstructured::new(data);
    if let Ok(parts) = input.arbitrary::<CaseParts>() {
        let case = parts.case();
        let line = case.to_string();
        assert_eq!(
            line.parse::<Case>().as_ref(),
            Ok(&case),
            "the line {line:?} does not read back"
        );
    }
    let text = String::from_utf8_lossy(input.take_rest());
    if let Ok(case) = text.parse::<Case>() {
        let line = case.to_string();
        assert_eq!(
            line.parse::<Case>().as_ref(),
            Ok(&case),
            "{text:?} parses, but the line it prints ({line:?}) does not read back"
        );
    }
}

/// A black-box child's line: read as a hello, an answer, and the
/// observation in an answer, it is a value or a clean error, never a
/// panic; a failure keeps the child's words.
pub fn blackbox_answer(data: &[u8]) {
    let line = String::from_utf8_lossy(data);
    let _ = read_hello(&line);
    match read_reply(&line) {
        Reply::Done(answer) => {
            let _ = read_observation(&answer);
        }
        Reply::Failed { error, .. } => assert!(!error.is_empty(), "a failure with no words"),
        Reply::Broken(why) => assert!(!why.is_empty(), "a broken answer with no reason"),
    }
}
