//! Shared test helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The airlift binary under test, as an assert_cmd command.
pub fn airlift() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("airlift").expect("airlift binary");
    cmd.env_remove("SOURCE_DATE_EPOCH");
    cmd
}

pub fn airlift_path() -> PathBuf {
    assert_cmd::cargo::cargo_bin("airlift")
}

/// Whether an external tool is available. Under `CI=true` a missing tool fails the test;
/// elsewhere the test prints why it is skipped and returns early.
pub fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{tool} is required under CI=true but is not installed (see .ci/run)");
        }
        eprintln!("skipping: {tool} is not installed");
    }
    found
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("airlift-test").tempdir().expect("tempdir")
}

/// Path of a file under the repository's testdata/.
pub fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(rel)
}

/// Run a command and return stdout, panicking with stderr when it fails.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}:\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
