//! The example pipelines in `examples/ci/` cannot drift from the CLI: each
//! file must be YAML, and every `cairn` command line in its shell steps must
//! parse with this build's command-line definition, flags and values included.

use super::Cli;
use clap::Parser;
use serde_yaml_ng::Value;
use std::path::{Path, PathBuf};

/// The keys whose values are shell: GitHub's `run`, GitLab's scripts.
const SHELL_KEYS: [&str; 4] = ["run", "script", "before_script", "after_script"];

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/ci")
        .join(name)
}

/// A piece of shell from the file, with the keys that lead to it
/// (`jobs`, `release`, `steps`, `3`, `run`).
#[derive(Debug)]
struct Shell {
    at: Vec<String>,
    text: String,
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(text) => text.clone(),
        other => serde_yaml_ng::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

fn collect_shell(value: &Value, at: &[String], found: &mut Vec<Shell>) {
    match value {
        Value::Mapping(map) => {
            for (key, value) in map {
                let mut here = at.to_vec();
                here.push(key_text(key));
                if SHELL_KEYS.contains(&key_text(key).as_str()) {
                    collect_scripts(value, &here, found);
                } else {
                    collect_shell(value, &here, found);
                }
            }
        }
        Value::Sequence(items) => {
            for (index, item) in items.iter().enumerate() {
                let mut here = at.to_vec();
                here.push(index.to_string());
                collect_shell(item, &here, found);
            }
        }
        Value::Tagged(tagged) => collect_shell(&tagged.value, at, found),
        _ => {}
    }
}

/// A script is a string or a list of them, nested as GitLab allows (anchors).
fn collect_scripts(value: &Value, at: &[String], found: &mut Vec<Shell>) {
    match value {
        Value::String(text) => found.push(Shell {
            at: at.to_vec(),
            text: text.clone(),
        }),
        Value::Sequence(items) => {
            for item in items {
                collect_scripts(item, at, found);
            }
        }
        other => panic!("{}: a script that is not text: {other:?}", at.join(".")),
    }
}

/// One `cairn …` command found in a script.
#[derive(Debug)]
struct CairnLine {
    /// 1-based line in the file where it starts.
    line: usize,
    /// The whole command as written, continuations joined.
    text: String,
    /// Its words, up to the first shell operator.
    words: Vec<String>,
    /// The keys of the script it is in.
    at: Vec<String>,
}

/// Shell logical lines (`\` continuations joined), each with its first
/// physical line.
fn logical_lines(text: &str) -> Vec<(String, String)> {
    let mut lines = Vec::new();
    let mut current: Option<(String, String)> = None;
    for physical in text.lines() {
        let (first, mut joined) = current
            .take()
            .unwrap_or_else(|| (physical.to_string(), String::new()));
        match physical.trim_end().strip_suffix('\\') {
            Some(head) => {
                joined.push_str(head);
                joined.push(' ');
                current = Some((first, joined));
            }
            None => {
                joined.push_str(physical);
                lines.push((first, joined));
            }
        }
    }
    lines.extend(current);
    lines
}

/// `${{ … }}` (GitHub's expressions) holds spaces a shell never sees: one word.
fn without_expressions(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        match rest[start..].find("}}") {
            Some(end) => {
                out.push_str("EXPRESSION");
                rest = &rest[start + end + 2..];
            }
            None => {
                rest = &rest[start..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

fn is_shell_operator(word: &str) -> bool {
    matches!(word, "|" | "||" | "&&" | ";" | "&")
        || word.starts_with('>')
        || word.starts_with('<')
        || word.starts_with("2>")
}

/// The file line where `first` (a script's physical line) is: the first not
/// yet taken, as scripts come in file order; else the first at all (a
/// script repeated through a YAML alias).
fn file_line(source: &str, first: &str, taken: &mut Vec<usize>) -> Option<usize> {
    let wanted = first.trim();
    let matching: Vec<usize> = source
        .lines()
        .enumerate()
        .filter(|(_, line)| {
            let line = line.trim();
            let line = line.strip_prefix("- ").unwrap_or(line);
            let line = line.strip_prefix("run: ").unwrap_or(line);
            !line.is_empty() && wanted.starts_with(line)
        })
        .map(|(index, _)| index)
        .collect();
    let index = matching
        .iter()
        .find(|index| !taken.contains(index))
        .or(matching.first())
        .copied()?;
    taken.push(index);
    Some(index + 1)
}

/// Every `cairn` command in the file's scripts; a line that runs cairn
/// anywhere but at its start is an error (this check could not see it).
fn cairn_lines(name: &str, source: &str) -> (Value, Vec<CairnLine>) {
    let yaml: Value =
        serde_yaml_ng::from_str(source).unwrap_or_else(|e| panic!("{name}: not YAML: {e}"));
    let mut scripts = Vec::new();
    collect_shell(&yaml, &[], &mut scripts);
    assert!(!scripts.is_empty(), "{name}: no run or script steps");

    let mut taken = Vec::new();
    let mut found = Vec::new();
    for script in &scripts {
        for (first, joined) in logical_lines(&script.text) {
            let trimmed = joined.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if !trimmed.contains("cairn") {
                continue;
            }
            let line = file_line(source, &first, &mut taken)
                .unwrap_or_else(|| panic!("{name}: cannot find the line of {first:?} in the file"));
            let words = shlex::split(&without_expressions(trimmed))
                .unwrap_or_else(|| panic!("{name}:{line}: unbalanced quotes in {trimmed:?}"));
            let runs_cairn_later = words
                .windows(2)
                .skip(1)
                .any(|pair| pair[0] == "cairn" && !is_shell_operator(&pair[1]));
            assert!(
                !runs_cairn_later,
                "{name}:{line}: put `cairn` first on its line, so this check sees it: {trimmed}"
            );
            if words.first().map(String::as_str) != Some("cairn") {
                continue;
            }
            let end = words
                .iter()
                .position(|word| is_shell_operator(word))
                .unwrap_or(words.len());
            found.push(CairnLine {
                line,
                text: trimmed.split_whitespace().collect::<Vec<_>>().join(" "),
                words: words[..end].to_vec(),
                at: script.at.clone(),
            });
        }
    }
    // The YAML walk saw every command the raw text starts a line with.
    let in_text = source
        .lines()
        .map(str::trim)
        .map(|line| line.strip_prefix("- ").unwrap_or(line))
        .map(|line| line.strip_prefix("run: ").unwrap_or(line))
        .filter(|line| line.starts_with("cairn "))
        .count();
    let mut lines: Vec<usize> = found.iter().map(|command| command.line).collect();
    lines.dedup();
    assert_eq!(
        lines.len(),
        in_text,
        "{name}: the scripts hold cairn commands at lines {lines:?}, the text has {in_text}"
    );
    (yaml, found)
}

/// The CLI's verdict on each command: `file:line: command: error`.
fn parse_errors(name: &str, lines: &[CairnLine]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|command| {
            Cli::try_parse_from(&command.words).err().map(|error| {
                let error = error.to_string();
                let first = error.lines().next().unwrap_or_default();
                format!("{name}:{}: {}\n    {first}", command.line, command.text)
            })
        })
        .collect()
}

fn publishes<'a>(lines: &'a [CairnLine], flag: &str) -> Vec<&'a CairnLine> {
    lines
        .iter()
        .filter(|command| command.words.get(1).map(String::as_str) == Some("publish"))
        .filter(|command| command.words.iter().any(|word| word == flag))
        .collect()
}

/// An example file's YAML and its `cairn` lines, every one of which must
/// parse with this build's CLI.
fn parsed_example(name: &str) -> (Value, Vec<CairnLine>) {
    let path = example(name);
    let source = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let (yaml, lines) = cairn_lines(name, &source);
    let errors = parse_errors(name, &lines);
    assert!(
        errors.is_empty(),
        "cairn command lines the CLI refuses:\n{}",
        errors.join("\n")
    );
    (yaml, lines)
}

/// Both release pipelines: commands that parse, a signed publish and a
/// signed refresh.
fn check(name: &str) -> (Value, Vec<CairnLine>) {
    let (yaml, lines) = parsed_example(name);
    let every_publish: Vec<&CairnLine> = lines
        .iter()
        .filter(|command| command.words.get(1).map(String::as_str) == Some("publish"))
        .collect();
    assert!(
        every_publish.len() >= 2,
        "{name}: fewer than two publish commands"
    );
    for command in &every_publish {
        assert!(
            command.words.iter().any(|word| word == "--sign-key"),
            "{name}:{}: publishes unsigned: {}",
            command.line,
            command.text
        );
        // Once the guard signs the list, a publish trusting only its own
        // key would fail with halts_bad_signature.
        assert!(
            command.words.iter().any(|word| word == "--halt-key"),
            "{name}:{}: publishes without --halt-key: {}",
            command.line,
            command.text
        );
    }
    assert!(
        !publishes(&lines, "--refresh").is_empty(),
        "{name}: no `cairn publish --refresh`"
    );
    (yaml, lines)
}

/// The job (first keys of the path) that runs `--refresh`.
fn refresh_job<'a>(name: &str, lines: &'a [CairnLine], depth: usize) -> &'a [String] {
    let refreshes = publishes(lines, "--refresh");
    let first = refreshes
        .first()
        .unwrap_or_else(|| panic!("{name}: no refresh"));
    &first.at[..depth]
}

/// The nightly job also renews the halt list, signed.
fn check_halt_refresh(name: &str, lines: &[CairnLine], depth: usize) {
    let renewals: Vec<&CairnLine> = lines
        .iter()
        .filter(|command| command.words.get(1..3) == Some(&["halt".into(), "refresh".into()]))
        .collect();
    let first = renewals
        .first()
        .unwrap_or_else(|| panic!("{name}: no `cairn halt refresh`"));
    for flag in ["--key", "--trust-key", "--document", "--document-key"] {
        assert!(
            first.words.iter().any(|word| word == flag),
            "{name}:{}: renews the halt list without {flag}: {}",
            first.line,
            first.text
        );
    }
    // The list first, so the document re-signed next pairs with it.
    let document_refresh = publishes(lines, "--refresh")
        .into_iter()
        .find(|command| command.at[..depth] == first.at[..depth])
        .unwrap_or_else(|| panic!("{name}: no `cairn publish --refresh` in the nightly job"));
    assert!(
        first.line < document_refresh.line,
        "{name}:{}: `cairn halt refresh` runs after `cairn publish --refresh` (line {}): \
         the document would pair with the list before it",
        first.line,
        document_refresh.line
    );
    assert_eq!(
        &first.at[..depth],
        refresh_job(name, lines, depth),
        "{name}: `cairn halt refresh` is not in the nightly job"
    );
}

fn lookup<'a>(value: &'a Value, keys: &[String]) -> &'a Value {
    keys.iter().fold(value, |value, key| {
        value
            .get(key.as_str())
            .unwrap_or_else(|| panic!("no {key} in {value:?}"))
    })
}

#[test]
fn github_actions_example_matches_the_cli() {
    let name = "github-actions.yml";
    let (yaml, lines) = check(name);
    check_halt_refresh(name, &lines, 2);
    // A nightly schedule, and the refresh job runs on it alone.
    let on = yaml.get("on").expect("an `on` trigger");
    assert!(on.get("schedule").is_some(), "{name}: no schedule: {on:?}");
    let job = lookup(&yaml, refresh_job(name, &lines, 2));
    let condition = job.get("if").and_then(Value::as_str).unwrap_or_default();
    assert!(
        condition.contains("== 'schedule'"),
        "{name}: the refresh job does not run on the schedule: if {condition:?}"
    );
}

#[test]
fn gitlab_ci_example_matches_the_cli() {
    let name = "gitlab-ci.yml";
    let (yaml, lines) = check(name);
    check_halt_refresh(name, &lines, 1);
    let job = lookup(&yaml, refresh_job(name, &lines, 1));
    let rules =
        serde_yaml_ng::to_string(job.get("rules").expect("refresh rules")).expect("rules as text");
    assert!(
        rules.contains("$CI_PIPELINE_SOURCE == \"schedule\""),
        "{name}: the refresh job does not run in the schedule: {rules}"
    );
}

#[test]
fn github_actions_promote_example_matches_the_cli() {
    let name = "github-actions-promote.yml";
    let (yaml, lines) = parsed_example(name);
    let promotes: Vec<&CairnLine> = lines
        .iter()
        .filter(|command| command.words.get(1).map(String::as_str) == Some("promote"))
        .collect();
    let [promote] = promotes.as_slice() else {
        panic!("{name}: not exactly one `cairn promote`: {promotes:?}");
    };
    let has = |flag: &str| promote.words.iter().any(|word| word == flag);
    // Trusted as hosts trust it, halts included; real time, real writes.
    for flag in ["--key", "--halt-key", "--wave"] {
        assert!(has(flag), "{name}:{}: promote without {flag}", promote.line);
    }
    for flag in ["--now", "--dry-run", "--allow-retreat"] {
        assert!(!has(flag), "{name}:{}: promote with {flag}", promote.line);
    }
    let on = yaml.get("on").expect("an `on` trigger");
    assert!(on.get("schedule").is_some(), "{name}: no schedule: {on:?}");
}

const BOGUS_FLAG: &str = "\
jobs:
  a:
    steps:
      - run: |
          echo hi
          cairn publish --repository \"$R\" --stream s \\
            --sign-key \"$KEY\" --sign-with-hsm
";

#[test]
fn a_flag_the_cli_does_not_have_fails_naming_file_and_line() {
    let (_, lines) = cairn_lines("test.yml", BOGUS_FLAG);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let errors = parse_errors("test.yml", &lines);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("test.yml:6: cairn publish --repository"),
        "{errors:?}"
    );
    assert!(errors[0].contains("'--sign-with-hsm'"), "{errors:?}");
}

#[test]
#[should_panic(expected = "test.yml:3: put `cairn` first on its line")]
fn a_cairn_command_the_check_cannot_see_fails() {
    let source = "job:\n  script:\n    - sudo cairn publish --bogus\n";
    cairn_lines("test.yml", source);
}

#[test]
fn expressions_and_operators_do_not_reach_the_cli() {
    let words = shlex::split(&without_expressions(
        "cairn graph show \"$R:tag\" --key ${{ secrets.KEY }} | tee log",
    ))
    .expect("words");
    assert_eq!(
        words,
        [
            "cairn",
            "graph",
            "show",
            "$R:tag",
            "--key",
            "EXPRESSION",
            "|",
            "tee",
            "log"
        ]
    );
    assert_eq!(words.iter().position(|w| is_shell_operator(w)), Some(6));
}
