//! What every end-to-end test of the `cairn` binary starts from.

#![allow(dead_code)] // Each test file uses what it needs.

pub mod agent;
pub mod fleet;
pub mod publish;
pub mod served;
pub mod systemctl;

use std::ffi::OsStr;
use std::process::{Command, Output};

/// Run `cairn` with these arguments.
pub fn cairn<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .output()
        .expect("cairn runs")
}

/// Run `cairn`, require success, and return its standard output.
pub fn ok<S: AsRef<OsStr> + std::fmt::Debug>(args: &[S]) -> String {
    let out = cairn(args);
    assert!(
        out.status.success(),
        "cairn {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Wait (at most 20 s) until `done`.
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..400 {
        if done() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}
