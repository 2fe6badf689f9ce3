//! The `cairn` command: safe, staged OS updates for bootc and rpm-ostree hosts.
//!
//! This file only parses the command line and reports errors; every verb lives
//! in `cli/`, and the work itself in the library crates.

#![forbid(unsafe_code)]

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(error) => {
            // Help and version are "errors" too, printed to stdout with exit code 0.
            let _ = error.print();
            if let Some(note) = cli::compiled_out(&error) {
                eprintln!("{note}");
            }
            return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
        }
    };
    match cli::run(args) {
        Ok(code) => code,
        // A reader that stopped early (`cairn ... | head`) is not a failure.
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            // One line, with the whole chain of context: file, field, cause.
            eprintln!("cairn: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
