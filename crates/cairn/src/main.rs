//! The `cairn` command: safe, staged OS updates for bootc and rpm-ostree hosts.
//!
//! This file only parses the command line and reports errors; every verb lives
//! in `cli/`, and the work itself in the library crates.

#![forbid(unsafe_code)]

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(error) => {
            // One line, with the whole chain of context: file, field, cause.
            eprintln!("cairn: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
