//! What the installed bootc accepts, found by asking it rather than by its
//! version number: `switch --download-only` arrived in a pull request
//! (bootc-dev/bootc#2342), not at a version a build can be trusted to report.
//! The answer is kept per `bootc --version` string, in memory and in a small
//! file in the agent's state directory.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// The probe cache's file name in the state directory.
pub const PROBE_FILE: &str = "bootc-probe.json";

/// One bootc's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// `bootc --version`, trimmed: a different string is a different bootc.
    pub version: String,
    /// `bootc switch` accepts `--download-only`.
    pub switch_download_only: bool,
}

/// True when `bootc switch --help` (short or long help) lists a
/// `--download-only` option: an entry in an options section, not any
/// mention. A description may name another verb's flag, and a wrapped
/// description line may even start with it.
pub fn offers_download_only(help: &str) -> bool {
    let mut in_options = false;
    help.lines().any(|line| {
        if !line.starts_with(' ') && !line.trim().is_empty() {
            // A heading (`Options:`, or a custom one) starts a section; any
            // other unindented text (usage, after-help) ends it.
            in_options = line.ends_with(':') && !matches!(line.trim(), "Arguments:" | "Commands:");
            return false;
        }
        in_options && names_option(line, "--download-only")
    })
}

/// True when `line` is clap 4's entry for the option `long`. clap writes an
/// entry as two spaces, then `-x, ` or four spaces, then `--long`; wrapped
/// and long-help description lines are indented further (to the description
/// column, or by ten spaces).
fn names_option(line: &str, long: &str) -> bool {
    let entry = match line.strip_prefix("  ") {
        Some(rest) if rest.starts_with("    ") => &rest[4..],
        Some(rest) => {
            let mut chars = rest.chars();
            match (chars.next(), chars.next()) {
                (Some('-'), Some(short)) if short != '-' && !short.is_whitespace() => {
                    match chars.as_str().strip_prefix(", ") {
                        Some(entry) => entry,
                        None => return false,
                    }
                }
                _ => return false,
            }
        }
        None => return false,
    };
    entry
        .strip_prefix(long)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '=', '<', '[']))
}

/// Forget the kept answer: the bootc it was found for turned out to reject
/// what it was found to accept.
pub fn forget(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The cached answer for `version`, if the file has one. A missing or
/// damaged file is no answer: the caller probes again.
pub fn cached(path: &Path, version: &str) -> Option<Probe> {
    let bytes = std::fs::read(path).ok()?;
    let probe: Probe = serde_json::from_slice(&bytes).ok()?;
    (probe.version == version).then_some(probe)
}

/// Keep an answer; only the newest bootc's is kept.
pub fn store(path: &Path, probe: &Probe) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(probe).map_err(std::io::Error::other)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    cairn_fs::write_atomic(path, &bytes).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Help in the shape clap prints it, with or without the option.
    fn help(with_option: bool) -> String {
        let mut text = String::from(
            "Target a new container image reference to boot\n\n\
             Usage: bootc switch [OPTIONS] <TARGET>\n\n\
             Arguments:\n  <TARGET>  Target image to use for the next boot\n\n\
             Options:\n      --quiet                        Don't display progress\n\
             \x20     --apply                        Restart or reboot into the new target image (for a locked update, see `bootc upgrade --download-only`)\n",
        );
        if with_option {
            text.push_str(
                "      --download-only                Download and stage the image, but do not apply it on reboot\n",
            );
        }
        text.push_str("  -h, --help                         Print help\n");
        text
    }

    /// Long help (`--help`) in clap 4's layout: each entry on its own line,
    /// its description below, indented by ten spaces.
    fn long_help(with_option: bool) -> String {
        let mut text = String::from(
            "Target a new container image reference to boot\n\n\
             Usage: bootc switch [OPTIONS] <TARGET>\n\n\
             Arguments:\n  <TARGET>\n          Target image to use for the next boot\n\n\
             Options:\n      --quiet\n          Don't display progress\n\n\
             \x20     --apply\n          Restart or reboot into the new target image. To stage it\n\
             \x20         locked instead, see `bootc upgrade`:\n\
             \x20         --download-only there keeps the next boot on this image\n\n",
        );
        if with_option {
            text.push_str(
                "      --download-only\n          Download and stage the image, but do not apply it on reboot\n\n",
            );
        }
        text.push_str("  -h, --help\n          Print help (see a summary with '-h')\n");
        text
    }

    #[test]
    fn only_an_option_entry_counts() {
        assert!(offers_download_only(&help(true)));
        assert!(
            !offers_download_only(&help(false)),
            "a mention in a description is not the option"
        );
        assert!(offers_download_only(&long_help(true)));
        assert!(
            !offers_download_only(&long_help(false)),
            "a long-help description line that starts with it is not the option"
        );
        let options = |entry: &str| format!("Options:\n{entry}\n");
        assert!(offers_download_only(&options(
            "  -d, --download-only  Stage only"
        )));
        assert!(offers_download_only(&options("      --download-only")));
        assert!(offers_download_only(&options(
            "      --download-only <WHEN>  Stage only"
        )));
        assert!(!offers_download_only(&options(
            "      --download-only-later  x"
        )));
        // Not clap's option column.
        assert!(!offers_download_only(&options("  --download-only  x")));
        assert!(!offers_download_only(&options("    --download-only  x")));
        assert!(!offers_download_only(&options("  -d --download-only  x")));
        // Outside an options section.
        assert!(!offers_download_only("      --download-only  x\n"));
        assert!(!offers_download_only(
            "Arguments:\n      --download-only  x\n"
        ));
        assert!(!offers_download_only(
            "Options:\n      --quiet  q\n\nExamples:\n  bootc switch\nSee also:\n          --download-only\n"
        ));
        assert!(!offers_download_only(""));
    }

    #[test]
    fn a_wrapped_description_line_that_starts_with_the_flag_does_not_count() {
        // Short help wraps a description at its column, 37 spaces in here.
        let help = "Options:\n      \
                    --quiet                        Don't display progress\n      \
                    --apply                        Restart or reboot into the new target image; to keep it\n\
                    \x20                                    --download-only of `bootc upgrade`\n  \
                    -h, --help                         Print help (see more with '--help')\n";
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with("--download-only")),
            "the fixture has the wrapped line"
        );
        assert!(!offers_download_only(help));
        // clap's next-line layout (a narrow terminal) indents by ten spaces.
        let narrow = "Options:\n      --apply\n          Reboot; to keep it locked see\n          --download-only of `bootc upgrade`\n";
        assert!(!offers_download_only(narrow));
    }

    #[test]
    fn a_forgotten_answer_is_gone_and_forgetting_twice_is_fine() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(PROBE_FILE);
        let probe = Probe {
            version: "bootc 1.17.1".into(),
            switch_download_only: true,
        };
        store(&path, &probe).expect("store");
        forget(&path).expect("forget");
        assert_eq!(cached(&path, "bootc 1.17.1"), None);
        forget(&path).expect("nothing to forget");
    }

    #[test]
    fn answers_are_kept_per_version_string() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state").join(PROBE_FILE);
        assert_eq!(cached(&path, "bootc 1.17.1"), None);
        let probe = Probe {
            version: "bootc 1.17.1".into(),
            switch_download_only: true,
        };
        store(&path, &probe).expect("store");
        assert_eq!(cached(&path, "bootc 1.17.1"), Some(probe));
        assert_eq!(cached(&path, "bootc 1.17.2"), None, "another bootc");
        std::fs::write(&path, b"{\"version\": ").expect("damage");
        assert_eq!(cached(&path, "bootc 1.17.1"), None);
    }
}
