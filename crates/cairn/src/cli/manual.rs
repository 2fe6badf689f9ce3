//! `cairn completions` and `cairn man`: shell completions and man pages,
//! generated from the command-line definition itself, so they list exactly the
//! verbs and options this build of the binary has.

use anyhow::Context;
use clap::CommandFactory;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The shells a completion script can be written for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CompletionShell {
    /// Install as /usr/share/bash-completion/completions/cairn.
    Bash,
    /// Install as /usr/share/zsh/site-functions/_cairn.
    Zsh,
    /// Install as /usr/share/fish/vendor_completions.d/cairn.fish.
    Fish,
}

/// Which shell to write completions for.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: CompletionShell,
}

/// Where to write the man pages.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// The directory to write the pages into (created if missing), for
    /// example /usr/share/man/man1.
    #[arg(long, value_name = "DIR")]
    output: PathBuf,
}

/// Print the completion script for one shell on standard output.
pub fn run_completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let shell = match args.shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    // Into memory first: the generators panic on a failed write, and a
    // closed pipe must stay an ordinary error.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut super::Cli::command(), "cairn", &mut script);
    crate::cli::args::emit(&String::from_utf8_lossy(&script))?;
    Ok(ExitCode::SUCCESS)
}

/// Write one page per command and subcommand, named by its full path
/// (`cairn-graph-show.1`), and list the files written.
pub fn run_man(args: ManArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    // `cairn help graph` is `cairn graph --help`: no page of its own.
    let mut root = super::Cli::command().disable_help_subcommand(true);
    // Building gives every subcommand its full name (`cairn-graph-show`).
    root.build();
    let heading = Heading {
        source: format!("cairn {}", env!("CARGO_PKG_VERSION")),
        date: page_date()?,
    };
    let mut written = Vec::new();
    write_pages(&root, &args.output, &heading, &mut written)?;
    let mut listing = String::new();
    for path in &written {
        listing.push_str(&format!("{}\n", path.display()));
    }
    crate::cli::args::emit(&listing)?;
    eprintln!(
        "cairn: wrote {} man pages in {}",
        written.len(),
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// What every page's title line carries besides its name.
struct Heading {
    source: String,
    date: String,
}

/// The date on the pages: from `SOURCE_DATE_EPOCH` when a package build sets
/// it (so the same sources give the same pages), else today. Never empty: an
/// empty date shifts the title line's later fields into its place.
fn page_date() -> anyhow::Result<String> {
    let now = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(seconds) => seconds
            .trim()
            .parse::<i64>()
            .ok()
            .and_then(|seconds| jiff::Timestamp::from_second(seconds).ok())
            .with_context(|| format!("SOURCE_DATE_EPOCH={seconds:?} is not Unix seconds"))?,
        Err(_) => jiff::Timestamp::now(),
    };
    Ok(now.strftime("%Y-%m-%d").to_string())
}

fn write_pages(
    command: &clap::Command,
    dir: &Path,
    heading: &Heading,
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    let page = clap_mangen::Man::new(command.clone())
        .date(&heading.date)
        .source(&heading.source)
        .manual("Cairn Manual");
    let path = dir.join(page.get_filename());
    let mut text = Vec::new();
    page.render(&mut text)
        .with_context(|| format!("rendering {}", path.display()))?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    written.push(path);
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        write_pages(sub, dir, heading, written)?;
    }
    Ok(())
}
