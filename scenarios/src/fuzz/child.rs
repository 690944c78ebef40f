//! A black-box child that prints arbitrary bytes: the harness reads them
//! through the real pipes, reader thread and timeout of
//! [`tearline_blackbox::ExecStoreFactory`].

use std::io::Write;
use std::time::{Duration, Instant};

use tearline_blackbox::reply::read_hello;
use tearline_blackbox::{ExecError, ExecOptions, ExecStoreFactory};
use tearline_model::StoreFactory;

/// How long the fuzzed child has to say hello.
const TIMEOUT: Duration = Duration::from_millis(150);

/// Slack on top of the timeout and the close grace, for spawning and
/// killing a process on a loaded machine.
const SLACK: Duration = Duration::from_secs(5);

/// A child whose stdout is the input (and, when the input's first byte is
/// odd, which then stays silent without exiting): the harness reads its
/// hello or fails with a clean [`ExecError::Hello`], within the timeout
/// and the close grace, never a panic and never a hang.
pub fn blackbox_child(data: &[u8]) {
    let Some((&mode, output)) = data.split_first() else {
        return;
    };
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    file.write_all(output).expect("writing the child's output");
    let path = file.path().display().to_string();
    let command = if mode % 2 == 1 {
        format!("cat '{path}'; exec sleep 30")
    } else {
        format!("cat '{path}'")
    };
    let options = ExecOptions::with_timeout(TIMEOUT).with_close_grace(Duration::from_millis(50));
    let bound = TIMEOUT + options.close_grace + SLACK;
    let started = Instant::now();
    let result = ExecStoreFactory::new(&command, options);
    let took = started.elapsed();
    assert!(took < bound, "reading a child's hello took {took:?} (bound {bound:?})");
    match result {
        Ok(factory) => {
            let first = output.split(|&b| b == b'\n').next().unwrap_or_default();
            let hello = read_hello(&String::from_utf8_lossy(first))
                .unwrap_or_else(|why| panic!("a hello was accepted from a first line that is none: {why}"));
            assert_eq!(hello.name, factory.name(), "the hello read is not the first line");
        }
        Err(ExecError::Hello { message, .. }) => assert!(!message.is_empty(), "a refused hello with no reason"),
        Err(other) => panic!("the child could not be run: {other}"),
    }
}
