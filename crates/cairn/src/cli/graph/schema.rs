//! `cairn graph schema`: the JSON Schema of the update graph document.

use std::process::ExitCode;

/// Print the JSON Schema of the update graph document (schema version 1).
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    let schema = cairn_graph::GraphDocument::json_schema();
    crate::cli::args::emit(&format!("{}\n", serde_json::to_string_pretty(&schema)?))?;
    Ok(ExitCode::SUCCESS)
}
