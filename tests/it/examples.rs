//! The `train` and `infer` examples as the tests run them: their sources are compiled into
//! this test binary, which runs one in a process of its own when asked (`example`). The
//! every-backend build then need not link both examples again for every backend (about a
//! tenth of its CPU time); the tests still run the examples' own `main_with`, argument
//! parsing and exit status included, each in its own process as a user runs it. Only the
//! line `fn main() { main_with(std::env::args_os()) }` is not run here, and `cargo test`
//! on default features builds the example binaries too.

use std::ffi::OsString;
use std::process::{Command, ExitCode};

use crate::common::this_test_alone;

#[path = "../../examples/infer.rs"]
#[allow(dead_code)]
// the example's `main`
// Both examples hold the examples' backend module (`infer` alone, `train` in `cli`).
#[allow(clippy::duplicate_mod)]
mod infer_example;
#[path = "../../examples/train.rs"]
#[allow(dead_code)] // the example's `main`
mod train_example;

/// Names the example the child process runs.
const EXAMPLE: &str = "DWCONV_TEST_EXAMPLE";
/// The test that is the child process's entry point.
const ENTRY: &str = "examples::example_process";

/// The example `name` (`train` or `infer`) as a command: arguments added with
/// `Command::arg(s)` are the example's, and the process's status and output are the
/// example's (behind one line of the test harness's on stdout).
pub fn example(name: &str) -> Command {
    let mut command = this_test_alone(ENTRY);
    // After `--`, the test harness takes every argument as one more name filter, which
    // matches no test (`--exact`): the child reads them back as the example's arguments.
    command.args(["--nocapture", "--quiet", "--"]);
    command.env(EXAMPLE, name);
    command
}

/// In a child process started by [`example`]: runs the example and exits with its status.
/// Otherwise: runs `train --help` that way, which must print the example's flags and
/// succeed, and `train --no-such-flag`, which must fail naming the flag.
#[test]
fn example_process() {
    let Ok(name) = std::env::var(EXAMPLE) else {
        let out = example("train").arg("--help").output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        assert!(stdout.contains("--image-size"), "{stdout}");
        let out = example("train").arg("--no-such-flag").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains("--no-such-flag"), "{stderr}");
        return;
    };
    let args: Vec<OsString> = std::iter::once(OsString::from(&name))
        .chain(std::env::args_os().skip_while(|a| a != "--").skip(1))
        .collect();
    let status = match name.as_str() {
        "train" => train_example::main_with(args),
        "infer" => infer_example::main_with(args),
        other => panic!("no example '{other}' in the tests"),
    };
    std::process::exit(if status == ExitCode::SUCCESS { 0 } else { 1 });
}
