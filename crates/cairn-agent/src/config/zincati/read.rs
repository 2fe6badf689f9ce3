//! Zincati's fragments as Zincati reads them: which files count, in which
//! order, and the values they set, merged by Zincati's rules.
//!
//! Files: `*.toml` in `/usr/lib/zincati/config.d` and `/etc/zincati/config.d`
//! (liboverdrop's rules: a name in `/etc` replaces the same name in
//! `/usr/lib`; a symbolic link to `/dev/null` removes the name; any other
//! symbolic link, a dotfile or a directory is skipped), applied in file-name
//! order. Scalars: the last file wins. Maintenance windows add up.
//! `/run/zincati/config.d` is left out on purpose: it holds changes that end
//! at the next boot (`zincati-update-now` writes one there).

use super::Line;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The directories Zincati reads that are carried over, lowest precedence first.
pub(super) const DIRS: [&str; 2] = ["usr/lib/zincati/config.d", "etc/zincati/config.d"];

/// Zincati's runtime directory: read by Zincati, never carried over.
pub(super) const RUNTIME_DIR: &str = "run/zincati/config.d";

/// A value and the fragment that set it, as the host names it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Set<T> {
    pub value: T,
    pub file: String,
}

/// One `[[updates.periodic.window]]` entry, as written.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Window {
    /// The day names, duplicates removed (Zincati keeps them in a set).
    pub days: Vec<String>,
    pub start_time: String,
    pub length_minutes: i64,
}

/// Zincati's configuration after merging, each value with its file.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Merged {
    pub steady_interval_secs: Option<Set<i64>>,
    pub cincinnati_base_url: Option<Set<String>>,
    pub group: Option<Set<String>>,
    pub node_uuid: Option<Set<String>>,
    pub rollout_wariness: Option<Set<f64>>,
    pub enabled: Option<Set<bool>>,
    pub allow_downgrade: Option<Set<bool>>,
    pub strategy: Option<Set<String>>,
    pub fleet_lock_base_url: Option<Set<String>>,
    pub time_zone: Option<Set<String>>,
    pub windows: Vec<Set<Window>>,
}

/// What reading found besides the values.
#[derive(Debug, Default)]
pub(super) struct Findings {
    /// Keys and files that are not carried over, and why.
    pub notes: Vec<Line>,
    /// Values Zincati itself would not have started with.
    pub refused: Vec<Line>,
}

/// A fragment that cannot be read or parsed: Zincati would not start either.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file or directory cannot be read.
    #[error("{file}: {error}")]
    Io {
        /// The file, as the host names it.
        file: String,
        /// Why.
        error: std::io::Error,
    },
    /// Not TOML.
    #[error("{file}: TOML syntax (Zincati would not start either): {message}")]
    Syntax {
        /// The file, as the host names it.
        file: String,
        /// The parser's message, on one line.
        message: String,
    },
}

/// `path` under `root` as the host names it: `/etc/zincati/…`.
pub(super) fn host_path(root: &Path, path: &Path) -> String {
    match path.strip_prefix(root) {
        Ok(relative) => format!("/{}", relative.display()),
        Err(_) => path.display().to_string(),
    }
}

/// The fragments Zincati applies, in order, and notes on the files it skips.
pub(super) fn fragments(root: &Path, findings: &mut Findings) -> Result<Vec<PathBuf>, ReadError> {
    let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
    for dir in DIRS {
        let dir = root.join(dir);
        for (name, path) in entries(root, &dir)? {
            // Not following the link: liboverdrop looks at the entry itself.
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.file_type().is_symlink() {
                if std::fs::read_link(&path).is_ok_and(|target| target == Path::new("/dev/null")) {
                    by_name.remove(&name);
                } else {
                    findings.notes.push(Line::file(
                        host_path(root, &path),
                        "not read: a symbolic link, which Zincati skips (only a link to /dev/null counts, to mask the name)",
                    ));
                }
            } else if meta.is_file() {
                by_name.insert(name, path);
            }
        }
    }
    let runtime = root.join(RUNTIME_DIR);
    for (_, path) in entries(root, &runtime)? {
        findings.notes.push(Line::file(
            host_path(root, &path),
            "not read: /run holds changes that end at the next boot (zincati-update-now writes one here); only /usr/lib and /etc are carried over",
        ));
    }
    Ok(by_name.into_values().collect())
}

/// The `*.toml` entries of `dir` by name, sorted; other names get a note
/// (dotfiles and directories are skipped silently, as Zincati does).
fn entries(root: &Path, dir: &Path) -> Result<Vec<(String, PathBuf)>, ReadError> {
    let listing = match std::fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            return Err(ReadError::Io {
                file: host_path(root, dir),
                error,
            });
        }
    };
    let mut found = Vec::new();
    for entry in listing.flatten() {
        let path = entry.path();
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') || path.is_dir() {
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) == Some("toml") {
            found.push((name, path));
        }
    }
    found.sort();
    Ok(found)
}

/// Non-TOML files next to the fragments: Zincati ignores them, and people
/// have been caught out by that (a `.yaml` fragment, zincati#1160).
pub(super) fn ignored_files(root: &Path, findings: &mut Findings) {
    for dir in DIRS {
        let Ok(listing) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut names: Vec<PathBuf> = listing
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                !name.is_some_and(|n| n.starts_with('.'))
                    && !path.is_dir()
                    && path.extension().and_then(|e| e.to_str()) != Some("toml")
            })
            .collect();
        names.sort();
        for path in names {
            findings.notes.push(Line::file(
                host_path(root, &path),
                "not read: Zincati reads only files named *.toml",
            ));
        }
    }
}

/// Read and merge the fragments, in this order.
pub(super) fn merge(
    root: &Path,
    files: &[PathBuf],
    findings: &mut Findings,
) -> Result<Merged, ReadError> {
    let mut merged = Merged::default();
    for path in files {
        let file = host_path(root, path);
        let text = std::fs::read_to_string(path).map_err(|error| ReadError::Io {
            file: file.clone(),
            error,
        })?;
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let message: Vec<String> = e
                .to_string()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect();
            ReadError::Syntax {
                file: file.clone(),
                message: message.join(" "),
            }
        })?;
        apply(&mut merged, &table, &file, findings);
    }
    Ok(merged)
}

/// The tables Zincati knows; any other key is unknown to it.
const SECTIONS: [&str; 7] = [
    "agent",
    "agent.timing",
    "cincinnati",
    "identity",
    "updates",
    "updates.fleet_lock",
    "updates.periodic",
];

/// Every key of `table` as a dotted path, descending only into the tables
/// Zincati knows (an unknown table is one unknown key).
fn leaves<'a>(table: &'a toml::Table, prefix: &str, out: &mut Vec<(String, &'a toml::Value)>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) if SECTIONS.contains(&path.as_str()) => {
                leaves(inner, &path, out);
            }
            _ => out.push((path, value)),
        }
    }
}

/// Apply one fragment's values over `merged`.
pub(super) fn apply(merged: &mut Merged, table: &toml::Table, file: &str, findings: &mut Findings) {
    let mut found = Vec::new();
    leaves(table, "", &mut found);
    for (key, value) in found {
        let mut wrong_type = |expected: &str| {
            findings.refused.push(Line::key(
                file,
                &key,
                format!("expected {expected}; Zincati would not start with this file"),
            ));
        };
        match key.as_str() {
            section if SECTIONS.contains(&section) => wrong_type("a table"),
            "agent.timing.steady_interval_secs" => match value.as_integer() {
                Some(seconds) if seconds > 0 => merged.steady_interval_secs = set(seconds, file),
                _ => wrong_type("a whole number above 0"),
            },
            "identity.rollout_wariness" => match value {
                toml::Value::Float(w) if !w.is_nan() => merged.rollout_wariness = set(*w, file),
                toml::Value::Integer(w) => merged.rollout_wariness = set(*w as f64, file),
                _ => wrong_type("a number"),
            },
            "updates.enabled" | "updates.allow_downgrade" => match value.as_bool() {
                Some(flag) if key == "updates.enabled" => merged.enabled = set(flag, file),
                Some(flag) => merged.allow_downgrade = set(flag, file),
                None => wrong_type("true or false"),
            },
            "updates.periodic.window" => match windows(value) {
                Ok((list, unknown)) => {
                    merged.windows.extend(list.into_iter().map(|w| Set {
                        value: w,
                        file: file.to_string(),
                    }));
                    for name in unknown {
                        findings
                            .notes
                            .push(Line::key(file, &format!("{key}.{name}"), UNKNOWN));
                    }
                }
                Err(expected) => wrong_type(&expected),
            },
            "cincinnati.base_url"
            | "identity.group"
            | "identity.node_uuid"
            | "updates.strategy"
            | "updates.fleet_lock.base_url"
            | "updates.periodic.time_zone" => {
                let Some(text) = value.as_str() else {
                    wrong_type("a string");
                    continue;
                };
                let slot = match key.as_str() {
                    "cincinnati.base_url" => &mut merged.cincinnati_base_url,
                    "identity.group" => &mut merged.group,
                    "identity.node_uuid" => &mut merged.node_uuid,
                    "updates.strategy" => &mut merged.strategy,
                    "updates.fleet_lock.base_url" => &mut merged.fleet_lock_base_url,
                    _ => &mut merged.time_zone,
                };
                *slot = set(text.to_string(), file);
            }
            _ => findings.notes.push(Line::key(file, &key, UNKNOWN)),
        }
    }
}

fn set<T>(value: T, file: &str) -> Option<Set<T>> {
    Some(Set {
        value,
        file: file.to_string(),
    })
}

const UNKNOWN: &str = "not carried: Zincati does not know this key (it ignores it too)";

/// The windows of one `updates.periodic.window` value, and the names of keys
/// inside them that Zincati ignores; or what was expected instead.
fn windows(value: &toml::Value) -> Result<(Vec<Window>, Vec<String>), String> {
    let expected = "a list of windows, each with days, start_time and length_minutes";
    let list = value.as_array().ok_or_else(|| expected.to_string())?;
    let mut windows = Vec::new();
    let mut unknown = Vec::new();
    for entry in list {
        let table = entry.as_table().ok_or_else(|| expected.to_string())?;
        let mut days: Vec<String> = Vec::new();
        for day in table
            .get("days")
            .and_then(toml::Value::as_array)
            .ok_or("a window with a list of days")?
        {
            let day = day.as_str().ok_or("days as strings")?.to_string();
            if !days.contains(&day) {
                days.push(day);
            }
        }
        let start_time = table
            .get("start_time")
            .and_then(toml::Value::as_str)
            .ok_or("a window with a start_time string")?
            .to_string();
        let length_minutes = table
            .get("length_minutes")
            .and_then(toml::Value::as_integer)
            .filter(|m| u32::try_from(*m).is_ok())
            .ok_or("a window with length_minutes, a whole number of minutes")?;
        for name in table.keys() {
            if !matches!(name.as_str(), "days" | "start_time" | "length_minutes")
                && !unknown.contains(name)
            {
                unknown.push(name.clone());
            }
        }
        windows.push(Window {
            days,
            start_time,
            length_minutes,
        });
    }
    Ok((windows, unknown))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(fragments: &[(&str, &str)]) -> (Merged, Findings) {
        let mut merged = Merged::default();
        let mut findings = Findings::default();
        for (file, text) in fragments {
            let table: toml::Table = text.parse().expect("TOML");
            apply(&mut merged, &table, file, &mut findings);
        }
        (merged, findings)
    }

    #[test]
    fn the_last_file_wins_and_windows_add_up() {
        let window = "[[updates.periodic.window]]\ndays = [\"Sat\", \"Sat\"]\nstart_time = \"01:00\"\nlength_minutes = 60\n";
        let (merged, findings) = applied(&[
            (
                "a",
                &format!("[updates]\nstrategy = \"immediate\"\n{window}"),
            ),
            (
                "b",
                &format!(
                    "[updates]\nstrategy = \"periodic\"\nfleet_lock.base_url = \"http://l/\"\n{window}"
                ),
            ),
        ]);
        assert_eq!(
            merged.strategy,
            Some(Set {
                value: "periodic".to_string(),
                file: "b".to_string()
            })
        );
        assert_eq!(merged.windows.len(), 2);
        assert_eq!(merged.windows[0].value.days, ["Sat"]);
        assert_eq!(merged.windows[1].file, "b");
        assert_eq!(
            merged.fleet_lock_base_url.map(|s| s.value).as_deref(),
            Some("http://l/")
        );
        assert!(findings.notes.is_empty() && findings.refused.is_empty());
    }

    #[test]
    fn unknown_keys_are_noted_and_wrong_types_refused() {
        let (merged, findings) = applied(&[(
            "f",
            "[drogue]\nenabled = true\n[identity]\nrollout_wariness = 1\ngroup = 7\n[updates]\nperiodic = 3\n",
        )]);
        assert_eq!(merged.rollout_wariness.map(|s| s.value), Some(1.0));
        let notes: Vec<String> = findings.notes.iter().map(ToString::to_string).collect();
        assert_eq!(
            notes,
            ["f: drogue: not carried: Zincati does not know this key (it ignores it too)"]
        );
        let refused: Vec<String> = findings.refused.iter().map(ToString::to_string).collect();
        assert_eq!(
            refused,
            [
                "f: identity.group: expected a string; Zincati would not start with this file",
                "f: updates.periodic: expected a table; Zincati would not start with this file",
            ]
        );
    }
}
