//! `cairn config check`: everything that would fail the agent, found before it
//! runs, and the effective settings with the file that set each one.

use super::{ConfigDirs, ConfigError, Merged, Settings, Source, fragments, read_merged, validate};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A configuration that will load, and what an operator should know about it.
#[derive(Debug)]
pub struct Checked {
    /// The validated settings.
    pub settings: Settings,
    /// Risks that do not stop the agent (no keys: unsigned documents pass).
    pub warnings: Vec<String>,
    /// The fragments and effective settings, for people.
    pub summary: String,
}

fn error(file: &str, key: &str, message: String, kind: &'static str) -> ConfigError {
    ConfigError {
        file: file.to_string(),
        key: key.to_string(),
        message,
        kind,
        rendered: None,
    }
}

/// Read, merge and validate the fragments under `root`, read every key file
/// (under `root` too), and explain the result. A root that does not exist, or holds no fragment
/// at all, is an error: the agent would silently run on defaults.
pub fn check(root: &Path) -> Result<Checked, ConfigError> {
    let shown = root.display().to_string();
    if !root.is_dir() {
        return Err(error(
            &format!("--root {shown}"),
            "",
            "does not exist".into(),
            "no_root",
        ));
    }
    let dirs = ConfigDirs::under(root);
    let files = fragments(&dirs)?;
    if files.is_empty() {
        let looked: Vec<String> = dirs.dirs.iter().map(|d| d.display().to_string()).collect();
        return Err(error(
            &format!("--root {shown}"),
            "",
            format!(
                "no configuration fragments (*.toml) in {}",
                looked.join(", ")
            ),
            "no_fragments",
        ));
    }
    let merged = read_merged(&files)?;
    let settings = validate(&merged)?;
    for (key, paths) in [
        ("updates.keys", &settings.keys),
        ("updates.halt_keys", &settings.halt_keys),
        ("updates.base_keys", &settings.base_keys),
    ] {
        for path in paths {
            cairn_oci::signing::VerifyingKey::from_file(&under_root(root, path))
                .map_err(|e| error(&origin(&merged, key), key, e.to_string(), "bad_key"))?;
        }
    }
    let mut warnings = Vec::new();
    let reads_documents = matches!(
        settings.source,
        Source::Registry(_) | Source::Server(_) | Source::File(_)
    );
    if reads_documents && settings.keys.is_empty() {
        warnings.push(
            "updates.keys is not set: unsigned documents are accepted (set it to the release team's public key files)".into(),
        );
    } else if reads_documents && settings.allow_unsigned {
        warnings.push(format!(
            "updates.allow_unsigned = true ({}): unsigned documents are accepted although keys are set",
            origin(&merged, "updates.allow_unsigned")
        ));
    }
    if let Some(reports) = &settings.reports {
        // Read at each use, so a token written later still works: a warning.
        let path = under_root(root, &reports.token_file);
        match std::fs::read_to_string(&path) {
            Ok(token) if token.trim().is_empty() => warnings.push(format!(
                "reports.token_file {} is empty: the collector will refuse the reports",
                reports.token_file.display()
            )),
            Ok(_) => {}
            Err(e) => warnings.push(format!(
                "reports.token_file {} cannot be read ({e}): reports wait in the queue until it can",
                reports.token_file.display()
            )),
        }
    }
    let summary = summary(&files, &merged, &settings, root);
    Ok(Checked {
        settings,
        warnings,
        summary,
    })
}

/// Where the agent on `root` reads `path`: a root being checked (an image's
/// file system) carries its own keys, and the host's must not stand in for them.
/// The agent's working directory is `/`, so a relative path is under `root` too.
fn under_root(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// The file that set `key`, or "default".
fn origin(merged: &Merged, key: &'static str) -> String {
    merged
        .get(key)
        .map_or_else(|| "default".to_string(), |(_, file)| file.clone())
}

fn summary(files: &[PathBuf], merged: &Merged, settings: &Settings, root: &Path) -> String {
    let mut text = String::from("fragments, in the order they apply:\n");
    for file in files {
        let _ = writeln!(text, "  {}", file.display());
    }
    let mut line = |name: &str, value: String, from: String| {
        let _ = writeln!(text, "{name:<12}{value}  ({from})");
    };
    let written = |key: &'static str| {
        merged
            .get(key)
            .and_then(|(v, _)| v.as_str().map(str::to_string))
    };
    line(
        "source:",
        written("updates.source").unwrap_or_else(|| match settings.source {
            // Which one applies depends on the host, which the check does not ask.
            Source::Registry(None) => "registry (the repository the host follows), or fcos on a host booted from Fedora CoreOS commits".into(),
            ref other => other.to_string(),
        }),
        origin(merged, "updates.source"),
    );
    line(
        "stream:",
        settings
            .stream
            .clone()
            .unwrap_or_else(|| "the tag the host follows, or its Fedora CoreOS branch's".into()),
        origin(merged, "updates.stream"),
    );
    let keys: Vec<String> = settings
        .keys
        .iter()
        .map(|k| k.display().to_string())
        .collect();
    line(
        "keys:",
        if keys.is_empty() {
            "none".into()
        } else {
            keys.join(", ")
        },
        origin(merged, "updates.keys"),
    );
    // Shown once set: hosts of streams without halt lists need none.
    if !settings.halt_keys.is_empty() {
        let halt_keys: Vec<String> = settings
            .halt_keys
            .iter()
            .map(|k| k.display().to_string())
            .collect();
        line(
            "halt keys:",
            halt_keys.join(", "),
            origin(merged, "updates.halt_keys"),
        );
    }
    if merged.windows.is_empty() {
        line(
            "windows:",
            "none: reboots at any time".into(),
            "default".into(),
        );
    }
    for (window, file) in &merged.windows {
        line(
            "window:",
            format!(
                "{} {} for {} min",
                window.days.join(","),
                window.start_time,
                window.length_minutes
            ),
            file.clone(),
        );
    }
    line(
        "time zone:",
        settings
            .schedule
            .as_ref()
            .map_or_else(|| "UTC".to_string(), |s| s.zone_name.clone()),
        origin(merged, "strategy.time_zone"),
    );
    line(
        "strategy:",
        match &settings.fleet_lock {
            Some(lock) => format!(
                "{} (lock {}, group {}, {})",
                settings.strategy_name(),
                lock.base_url,
                lock.group,
                if !lock.release_on_failure {
                    "slot kept after a failed boot"
                } else {
                    "slot given back after a failed boot"
                }
            ),
            None => settings.strategy_name().to_string(),
        },
        match (&settings.fleet_lock, merged.windows.is_empty()) {
            (None, false) => "the windows above".to_string(),
            _ => origin(merged, "strategy.fleet_lock.base_url"),
        },
    );
    line(
        "wariness:",
        match (
            settings.wariness,
            crate::daemon::derived_wariness(root).ok(),
        ) {
            (Some(w), _) => w.to_string(),
            (None, Some(w)) => format!("{w}, derived from the node id"),
            (None, None) => "derived from the node id".to_string(),
        },
        origin(merged, "identity.rollout_wariness"),
    );
    line(
        "group:",
        settings.group.clone(),
        origin(merged, "identity.group"),
    );
    line(
        "check:",
        format!("every {} s", settings.check_interval.as_secs()),
        origin(merged, "updates.check_interval_seconds"),
    );
    line(
        "reports:",
        match &settings.reports {
            Some(reports) => format!(
                "to {} (token {}; healthy boots after a random delay of up to {} s)",
                reports.url,
                reports.token_file.display(),
                reports.max_delay.as_secs()
            ),
            None => "off: nothing is sent".into(),
        },
        origin(merged, "reports.url"),
    );
    line(
        "updates:",
        if settings.enabled {
            "enabled".into()
        } else {
            "disabled: checked and reported, never staged".into()
        },
        origin(merged, "updates.enabled"),
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halt_keys_are_read_checked_and_shown() {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("etc/cairn/config.d");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let key = cairn_oci::signing::SigningKey::generate()
            .verifying_key()
            .to_pem()
            .expect("PEM");
        std::fs::write(root.path().join("halt.pub"), key).expect("key");
        let fragment = dir.join("50-site.toml");
        std::fs::write(&fragment, "[updates]\nhalt_keys = [\"/halt.pub\"]\n").expect("write");
        let checked = check(root.path()).expect("valid");
        assert_eq!(checked.settings.halt_keys, vec![PathBuf::from("/halt.pub")]);
        let shown = format!("halt keys:  /halt.pub  ({})", fragment.display());
        assert!(checked.summary.contains(&shown), "{}", checked.summary);
        // A key file that is not a key is an error naming the setting.
        std::fs::write(root.path().join("halt.pub"), "not a key").expect("key");
        let error = check(root.path()).expect_err("bad key").to_string();
        assert!(error.contains("updates.halt_keys"), "{error}");
    }
}
