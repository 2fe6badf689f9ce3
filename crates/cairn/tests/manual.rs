//! `cairn man` and `cairn completions` on the real binary: a page for every
//! command `--help` lists, pages that groff and man render, and completion
//! scripts that each shell loads and that complete real verbs and flags.

mod common;
use common::{cairn, ok};

use cairn_testkit::registry::require_binary;
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

/// The subcommands a `--help` lists under "Commands:", without `help`.
fn listed_subcommands(help: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_commands = false;
    for line in help.lines() {
        if line == "Commands:" {
            in_commands = true;
        } else if in_commands {
            let Some(entry) = line.strip_prefix("  ") else {
                break;
            };
            let name = entry.split_whitespace().next().unwrap_or_default();
            if !name.is_empty() && name != "help" {
                names.push(name.to_string());
            }
        }
    }
    names
}

/// Every command path reachable through `--help`, the root (empty) included.
fn command_paths() -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut pending = vec![Vec::<String>::new()];
    while let Some(path) = pending.pop() {
        let mut args = path.clone();
        args.push("--help".to_string());
        for name in listed_subcommands(&ok(&args)) {
            let mut child = path.clone();
            child.push(name);
            pending.push(child);
        }
        paths.push(path);
    }
    paths
}

fn page_name(path: &[String]) -> String {
    let mut words = vec!["cairn".to_string()];
    words.extend(path.iter().cloned());
    format!("{}.1", words.join("-"))
}

fn run(program: &str, args: &[&str], dir: &Path) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("MANWIDTH", "100")
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"))
}

fn require_success(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_command_has_exactly_one_man_page() {
    let paths = command_paths();
    // A walk that found nothing would make the comparison below vacuous
    // (`man` and `completions` are in every build).
    assert!(
        paths.iter().any(|path| path == &["man".to_string()]),
        "the help walk did not find `cairn man`: {paths:?}"
    );
    let expected: BTreeSet<String> = paths.iter().map(|path| page_name(path)).collect();

    let temp = tempfile::tempdir().expect("temp dir");
    // Two levels that do not exist yet: `man` creates them.
    let dir = temp.path().join("share/man1");
    let out = cairn(&[OsStr::new("man"), OsStr::new("--output"), dir.as_os_str()]);
    let listing = require_success("cairn man", &out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("wrote {} man pages in", expected.len())),
        "the summary counts the pages: {stderr}"
    );

    let listed: BTreeSet<String> = listing
        .lines()
        .map(|line| {
            let path = Path::new(line);
            assert_eq!(path.parent(), Some(dir.as_path()), "listed {line}");
            path.file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(listed, expected, "the pages listed on stdout");
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("the man directory")
        .map(|entry| {
            entry
                .expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(on_disk, expected, "the pages written");

    // Each page is titled with its own name and shows its own command line.
    for path in &paths {
        let name = page_name(path);
        let text = std::fs::read_to_string(dir.join(&name)).expect("page text");
        let title = name.trim_end_matches(".1");
        assert!(
            text.lines()
                .any(|line| line.starts_with(&format!(".TH {title} 1 "))),
            "{name} has no .TH line for {title}:\n{text}"
        );
        let synopsis = format!("\\fBcairn{}", if path.is_empty() { "" } else { " " })
            + &path.join(" ").replace('-', "\\-");
        assert!(
            text.contains(&synopsis),
            "{name} does not show {synopsis:?}:\n{text}"
        );
    }
}

#[test]
fn man_pages_are_valid_roff_that_man_renders() {
    require_binary("groff", "groff-base");
    require_binary("man", "man-db");
    let temp = tempfile::tempdir().expect("temp dir");
    let out = cairn(&[
        OsStr::new("man"),
        OsStr::new("--output"),
        temp.path().as_os_str(),
    ]);
    let listing = require_success("cairn man", &out);
    let pages: Vec<&str> = listing.lines().collect();
    assert!(pages.len() > 10, "pages: {pages:?}");
    for page in &pages {
        // All warnings on, output discarded: any complaint is a defect.
        let out = run("groff", &["-man", "-Tutf8", "-ww", "-z", page], temp.path());
        require_success(&format!("groff {page}"), &out);
        assert!(
            out.stderr.is_empty(),
            "groff warns about {page}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Pages of verbs every build has.
    let page = temp.path().join("cairn-man.1");
    let out = run("man", &["-l", &page.to_string_lossy()], temp.path());
    // Justified text: compare with single spaces.
    let text = require_success("man -l cairn-man.1", &out)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for wanted in [
        "cairn-man - Write a man page for every command",
        "SYNOPSIS",
        "cairn man [-h|--help] <--output>",
        "--output <DIR>",
        "created if missing",
        "cairn 0.1.0",
    ] {
        assert!(text.contains(wanted), "man shows no {wanted:?}:\n{text}");
    }
    // The parent's page points at its subcommands' pages.
    let out = run(
        "man",
        &["-l", &temp.path().join("cairn.1").to_string_lossy()],
        temp.path(),
    );
    let text = require_success("man -l cairn.1", &out);
    assert!(text.contains("cairn-completions(1)"), "{text}");
}

#[test]
fn man_page_dates_follow_source_date_epoch() {
    let temp = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["man", "--output"])
        .arg(temp.path())
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .expect("cairn runs");
    require_success("cairn man", &out);
    let text = std::fs::read_to_string(temp.path().join("cairn.1")).expect("cairn.1");
    assert!(
        text.contains(".TH cairn 1 2023-11-14 \"cairn 0.1.0\" \"Cairn Manual\""),
        "{text}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["man", "--output"])
        .arg(temp.path())
        .env("SOURCE_DATE_EPOCH", "yesterday")
        .output()
        .expect("cairn runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("SOURCE_DATE_EPOCH=\"yesterday\""),
        "{stderr}"
    );
}

fn completion_script(shell: &str, dir: &Path) -> String {
    let script = ok(&["completions", shell]);
    // Every top-level verb this build has, as `--help` lists them.
    for verb in listed_subcommands(&ok(&["--help"])) {
        assert!(
            script.contains(&verb),
            "the {shell} script never mentions {verb}"
        );
    }
    std::fs::write(dir.join(format!("cairn.{shell}")), &script).expect("write script");
    script
}

#[test]
fn bash_completion_loads_and_completes_verbs_and_flags() {
    let temp = tempfile::tempdir().expect("temp dir");
    completion_script("bash", temp.path());
    require_success("bash -n", &run("bash", &["-n", "cairn.bash"], temp.path()));
    // Ask the completion function itself, as bash does on <Tab>.
    let complete = |words: &[&str]| {
        let words_list = words.join(" ");
        let script = format!(
            "source cairn.bash; COMP_WORDS=({words_list}); COMP_CWORD={}; \
             _cairn cairn '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            words.len() - 1,
            words[words.len() - 1],
            words[words.len() - 2],
        );
        require_success(
            "bash completion",
            &run("bash", &["-c", &script], temp.path()),
        )
    };
    assert_eq!(complete(&["cairn", "compl"]).trim(), "completions");
    assert_eq!(complete(&["cairn", "man", "--out"]).trim(), "--output");
    let shells = complete(&["cairn", "completions", ""]);
    let shells: BTreeSet<&str> = shells
        .split_whitespace()
        .filter(|word| !word.starts_with('-'))
        .collect();
    assert_eq!(shells, BTreeSet::from(["bash", "fish", "zsh"]));
}

#[test]
fn zsh_completion_parses() {
    require_binary("zsh", "zsh");
    let temp = tempfile::tempdir().expect("temp dir");
    let script = completion_script("zsh", temp.path());
    assert!(script.starts_with("#compdef cairn"), "{script}");
    require_success("zsh -n", &run("zsh", &["-n", "cairn.zsh"], temp.path()));
}

#[test]
fn fish_completion_loads_and_completes_verbs_and_flags() {
    require_binary("fish", "fish");
    let temp = tempfile::tempdir().expect("temp dir");
    completion_script("fish", temp.path());
    require_success(
        "fish --no-execute",
        &run("fish", &["--no-execute", "cairn.fish"], temp.path()),
    );
    let complete = |line: &str| {
        let script = format!("source cairn.fish; complete --do-complete '{line}'");
        require_success(
            "fish completion",
            &run("fish", &["-c", &script], temp.path()),
        )
    };
    let verbs = complete("cairn compl");
    assert!(verbs.starts_with("completions\t"), "{verbs}");
    let flags = complete("cairn man --out");
    assert!(flags.starts_with("--output\t"), "{flags}");
}

#[test]
fn completions_refuse_an_unknown_shell() {
    let out = cairn(&["completions", "tcsh"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("possible values: bash, zsh, fish"),
        "{stderr}"
    );
}
