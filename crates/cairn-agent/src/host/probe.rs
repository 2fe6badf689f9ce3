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

/// True when `bootc switch --help` lists a `--download-only` option. An
/// option line, not any mention: a description may name another verb's flag.
pub fn offers_download_only(help: &str) -> bool {
    help.lines().any(|line| {
        let line = line.trim_start();
        // `-d, --download-only` if it ever gets a short form.
        let line = match line.split_once(", ") {
            Some((short, rest)) if short.len() == 2 && short.starts_with('-') => rest,
            _ => line,
        };
        line.strip_prefix("--download-only")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '=', '<']))
    })
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
    crate::store::write_atomically(path, &bytes)
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

    #[test]
    fn only_an_option_line_counts() {
        assert!(offers_download_only(&help(true)));
        assert!(
            !offers_download_only(&help(false)),
            "a mention in a description is not the option"
        );
        assert!(offers_download_only("  -d, --download-only  Stage only\n"));
        assert!(!offers_download_only("      --download-only-later  x\n"));
        assert!(!offers_download_only(""));
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
