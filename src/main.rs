//! The `pgroar` binary: parses the command line and reports errors at the edge.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    // Fault injection for tests, from `FAILPOINTS` (compiled out of release builds).
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    match cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
