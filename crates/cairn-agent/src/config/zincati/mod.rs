//! `cairn config import-zincati`: Zincati's configuration, read with
//! Zincati's own rules, written as one Cairn fragment that behaves the same.
//!
//! Carried over: `identity.group`, `identity.rollout_wariness`,
//! `updates.enabled`, `updates.allow_downgrade`, the check interval, the
//! strategy (`periodic` windows and time zone, the `fleet_lock` URL) and
//! `cincinnati.base_url` as a `cincinnati:` source. Each key that is not
//! carried, or carried in another form, becomes one line saying why. A value
//! Zincati itself would not have started with, or one Cairn cannot take,
//! stops the import: nothing half-carried is ever written.

mod convert;
mod read;
mod urls;

pub use convert::{HostValues, NodeIdError};
pub use read::ReadError;

use super::ConfigError;
use convert::Cairn;
use read::Findings;
use std::fmt::Write as _;
use std::path::Path;

/// One thing said about the import: a file, a key, or both, and what.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// The fragment, as the host names it (`/etc/zincati/config.d/…`).
    pub file: Option<String>,
    /// Zincati's key, dotted.
    pub key: Option<String>,
    /// What happened to it, and why.
    pub message: String,
}

impl Line {
    fn file(file: String, message: impl Into<String>) -> Line {
        Line {
            file: Some(file),
            key: None,
            message: message.into(),
        }
    }

    fn key(file: &str, key: &str, message: impl Into<String>) -> Line {
        Line {
            file: Some(file.to_string()),
            key: Some(key.to_string()),
            message: message.into(),
        }
    }

    fn unset(key: &str, message: impl Into<String>) -> Line {
        Line {
            file: None,
            key: Some(key.to_string()),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for part in [&self.file, &self.key].into_iter().flatten() {
            write!(f, "{part}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// A finished import.
#[derive(Debug)]
pub struct Imported {
    /// Zincati's fragments, in the order Zincati applied them.
    pub fragments: Vec<String>,
    /// What was not carried over, or carried in another form, and why.
    pub notes: Vec<Line>,
    /// The Cairn fragment. It has passed Cairn's validation.
    pub text: String,
}

/// Why nothing was written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// A fragment cannot be read or is not TOML.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Nothing to import.
    #[error("no Zincati configuration fragments (*.toml) in {0}")]
    NoFragments(String),
    /// Values Cairn cannot carry over as Zincati used them.
    #[error(
        "{} value(s) cannot be carried over (above); nothing was written. Fix them in Zincati's fragments (an /etc/zincati/config.d file of the same name overrides a /usr/lib one) and run the import again",
        refused.len()
    )]
    Refused {
        /// One line per value.
        refused: Vec<Line>,
        /// The notes found before stopping.
        notes: Vec<Line>,
    },
    /// The fragment written fails Cairn's own validation (a bug here).
    #[error("the fragment written fails Cairn's validation: {0}")]
    Invalid(ConfigError),
}

impl ImportError {
    /// A short, fixed label for metrics and status.
    pub fn kind(&self) -> &'static str {
        match self {
            ImportError::Read(ReadError::Io { .. }) => "read",
            ImportError::Read(ReadError::Syntax { .. }) => "syntax",
            ImportError::NoFragments(_) => "no_fragments",
            ImportError::Refused { .. } => "refused",
            ImportError::Invalid(_) => "invalid",
        }
    }
}

/// What the host under `root` tells for Zincati's templates and node id:
/// `ignition.platform.id` from `proc/cmdline` and the node id from
/// `etc/machine-id`, unless given.
pub fn host_values(
    root: &Path,
    basearch: Option<String>,
    platform: Option<String>,
    stream: Option<String>,
) -> HostValues {
    let platform = platform.or_else(|| {
        let cmdline = std::fs::read_to_string(root.join("proc/cmdline")).ok()?;
        cmdline
            .split_whitespace()
            .find_map(|word| word.strip_prefix("ignition.platform.id="))
            .filter(|id| !id.is_empty())
            .map(str::to_string)
    });
    let node_id = match std::fs::read_to_string(root.join("etc/machine-id")) {
        Ok(machine_id) => crate::identity::node_id(&machine_id)
            .map_err(|e| convert::NodeIdError::Invalid(e.to_string())),
        Err(e) => Err(convert::NodeIdError::Unreadable(e.to_string())),
    };
    HostValues {
        basearch,
        platform,
        stream,
        node_id,
    }
}

/// Read Zincati's fragments under `root` and write the Cairn fragment.
pub fn import(root: &Path, host: &HostValues) -> Result<Imported, ImportError> {
    let mut findings = Findings::default();
    let files = read::fragments(root, &mut findings)?;
    read::ignored_files(root, &mut findings);
    if files.is_empty() {
        let dirs: Vec<String> = read::DIRS
            .iter()
            .map(|dir| read::host_path(root, &root.join(dir)))
            .collect();
        return Err(ImportError::NoFragments(dirs.join(" or ")));
    }
    let merged = read::merge(root, &files, &mut findings)?;
    let cairn = convert::convert(&merged, host, &mut findings);
    if !findings.refused.is_empty() {
        return Err(ImportError::Refused {
            refused: findings.refused,
            notes: findings.notes,
        });
    }
    let fragments: Vec<String> = files.iter().map(|f| read::host_path(root, f)).collect();
    let text = render(&fragments, &cairn);
    super::validate_fragment(&text, "the imported fragment").map_err(ImportError::Invalid)?;
    Ok(Imported {
        fragments,
        notes: findings.notes,
        text,
    })
}

/// TOML text for a string, float or list, quoted and escaped by the toml crate.
fn toml(value: impl Into<toml::Value>) -> String {
    value.into().to_string()
}

/// The Cairn fragment: where it came from, then each section that has keys.
fn render(fragments: &[String], cairn: &Cairn) -> String {
    let mut text = String::from(
        "# Carried over from Zincati by `cairn config import-zincati`, from these\n# fragments in the order Zincati applied them:\n",
    );
    for file in fragments {
        let _ = writeln!(text, "#   {file}");
    }
    let mut updates = String::new();
    if let Some(flag) = cairn.enabled {
        let _ = writeln!(updates, "enabled = {flag}");
    }
    if let Some(flag) = cairn.allow_downgrade {
        let _ = writeln!(updates, "allow_downgrade = {flag}");
    }
    if let Some(seconds) = cairn.check_interval_seconds {
        let _ = writeln!(updates, "check_interval_seconds = {seconds}");
    }
    if let Some(source) = &cairn.source {
        let _ = writeln!(updates, "source = {}", toml(source.as_str()));
    }
    let mut identity = String::new();
    if let Some(group) = &cairn.group {
        let _ = writeln!(identity, "group = {}", toml(group.as_str()));
    }
    if let Some(wariness) = cairn.rollout_wariness {
        let _ = writeln!(identity, "rollout_wariness = {}", toml(wariness));
    }
    let mut strategy = String::new();
    if let Some(zone) = &cairn.time_zone {
        let _ = writeln!(strategy, "time_zone = {}", toml(zone.as_str()));
    }
    for (name, body) in [
        ("[updates]", updates),
        ("[identity]", identity),
        ("[strategy]", strategy),
    ] {
        if !body.is_empty() {
            let _ = write!(text, "\n{name}\n{body}");
        }
    }
    for window in &cairn.windows {
        let _ = write!(
            text,
            "\n[[strategy.window]]\ndays = {}\nstart_time = {}\nlength_minutes = {}\n",
            toml(window.days.clone()),
            toml(window.start_time.as_str()),
            window.length_minutes
        );
    }
    if let Some(url) = &cairn.fleet_lock_base_url {
        let _ = write!(
            text,
            "\n[strategy.fleet_lock]\nbase_url = {}\n",
            toml(url.as_str())
        );
    }
    text
}
