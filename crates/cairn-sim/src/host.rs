//! A simulated bootc host, in process: it answers the command lines the
//! agent's bootc driver runs (`status`, `switch --help`, `switch`, `upgrade
//! --download-only`, `upgrade --from-downloaded --apply`, `rollback --apply`) with bootc's
//! status JSON and exit codes, keeping its deployments in memory. Finalizing
//! "reboots" at once. `cairn demo` drives real agents against it, through a
//! few lines that adapt [`SimulatedHost::answer`] to the agent's command
//! runner: the simulator itself stays free of the agent and its I/O crates.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What a command printed and how it exited, as a process would report it.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: String,
}

#[derive(Debug, Clone, PartialEq)]
struct Deployment {
    digest: String,
    version: String,
    download_only: bool,
}

#[derive(Debug, Default)]
struct State {
    image: String,
    booted: Option<Deployment>,
    staged: Option<Deployment>,
    rollback: Option<Deployment>,
    reboots: u32,
}

/// A host; clones share it.
#[derive(Debug, Clone)]
pub struct SimulatedHost {
    state: Arc<Mutex<State>>,
    /// What each digest is: the registry the host would pull from.
    versions: Arc<HashMap<String, String>>,
}

impl SimulatedHost {
    /// A host following `image` (`repository:tag`), booted on `digest`.
    /// `versions` maps every pullable digest to its version label.
    pub fn new(image: &str, digest: &str, versions: HashMap<String, String>) -> Self {
        let version = versions.get(digest).cloned().unwrap_or_default();
        SimulatedHost {
            state: Arc::new(Mutex::new(State {
                image: image.to_string(),
                booted: Some(Deployment {
                    digest: digest.to_string(),
                    version,
                    download_only: false,
                }),
                ..State::default()
            })),
            versions: Arc::new(versions),
        }
    }

    /// The booted version.
    pub fn booted_version(&self) -> String {
        self.lock()
            .booted
            .as_ref()
            .map(|d| d.version.clone())
            .unwrap_or_default()
    }

    /// How many times it rebooted.
    pub fn reboots(&self) -> u32 {
        self.lock().reboots
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere must not wedge the simulation: take the data as is.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Run `bootc` with `args` against this host.
    pub fn answer(&self, args: &[String]) -> Output {
        let words: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut state = self.lock();
        let ok = |stdout: String| Output {
            code: 0,
            stdout: stdout.into_bytes(),
            stderr: String::new(),
        };
        let fail = |message: String| Output {
            code: 1,
            stdout: Vec::new(),
            stderr: format!("error: {message}\n"),
        };
        match words.as_slice() {
            ["--version"] => ok("bootc 1.17.0\n".into()),
            ["status", "--format=json", "--format-version=1"] => ok(status(&state)),
            // A bootc whose switch stages locked (download only).
            ["switch", "--help"] => ok("Usage: bootc switch [OPTIONS] <TARGET>\n\nOptions:\n      --download-only  Stage the image without applying it at the next reboot\n".into()),
            ["switch", rest @ ..] => {
                let Some(reference) = rest.iter().find(|a| !a.starts_with("--")) else {
                    return Output {
                        code: 2,
                        stdout: Vec::new(),
                        stderr:
                            "error: the following required arguments were not provided: <TARGET>\n"
                                .into(),
                    };
                };
                let digest = reference.rsplit_once('@').map_or("", |(_, d)| d);
                let Some(version) = self.versions.get(digest) else {
                    return fail(format!("Switching: pulling {reference}: manifest unknown"));
                };
                state.staged = Some(Deployment {
                    digest: digest.to_string(),
                    version: version.clone(),
                    download_only: rest.contains(&"--download-only"),
                });
                state.image = reference.to_string();
                ok(String::new())
            }
            ["upgrade", "--download-only"] => match state.staged.as_mut() {
                Some(staged) => {
                    staged.download_only = true;
                    ok(String::new())
                }
                None => fail("No update available".into()),
            },
            ["upgrade", "--from-downloaded", "--apply"] => match state.staged.take() {
                Some(staged) => {
                    state.rollback = state.booted.replace(Deployment {
                        download_only: false,
                        ..staged
                    });
                    state.reboots += 1;
                    ok(String::new())
                }
                None => fail("No staged deployment found".into()),
            },
            ["rollback", "--apply"] => match state.rollback.take() {
                Some(previous) => {
                    state.rollback = state.booted.replace(previous);
                    state.reboots += 1;
                    ok(String::new())
                }
                None => fail("No rollback available".into()),
            },
            _ => Output {
                code: 2,
                stdout: Vec::new(),
                stderr: format!("error: unrecognized arguments: {}\n", args.join(" ")),
            },
        }
    }
}

fn status(state: &State) -> String {
    let entry = |d: &Option<Deployment>| match d {
        None => serde_json::Value::Null,
        Some(d) => serde_json::json!({
            "downloadOnly": d.download_only, "incompatible": false,
            "image": {"image": {"image": state.image, "transport": "registry"},
                      "imageDigest": d.digest, "version": d.version},
            "pinned": false, "store": "ostreeContainer"
        }),
    };
    serde_json::json!({
        "apiVersion": "org.containers.bootc/v1", "kind": "BootcHost", "metadata": {"name": "host"},
        "spec": {"bootOrder": "default", "image": {"image": state.image, "transport": "registry"}},
        "status": {"booted": entry(&state.booted), "staged": entry(&state.staged),
                   "rollback": entry(&state.rollback), "rollbackQueued": false, "type": "bootcHost"}
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn stages_locked_applies_and_rolls_back() {
        let versions = HashMap::from([
            ("sha256:aa".to_string(), "1.0".to_string()),
            ("sha256:bb".to_string(), "1.1".to_string()),
        ]);
        let host = SimulatedHost::new("registry.example/os:stable", "sha256:aa", versions);
        let switch = host.answer(&args(
            "switch --download-only registry.example/os@sha256:bb",
        ));
        assert_eq!(switch.code, 0, "{}", switch.stderr);
        let status = host.answer(&args("status --format=json --format-version=1"));
        let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
        assert_eq!(status["status"]["staged"]["downloadOnly"], true);
        assert_eq!(status["status"]["staged"]["image"]["version"], "1.1");

        assert_eq!(
            host.answer(&args("upgrade --from-downloaded --apply")).code,
            0
        );
        assert_eq!((host.booted_version(), host.reboots()), ("1.1".into(), 1));
        assert_eq!(host.answer(&args("rollback --apply")).code, 0);
        assert_eq!((host.booted_version(), host.reboots()), ("1.0".into(), 2));
    }

    #[test]
    fn unknown_images_and_arguments_fail_like_bootc() {
        let host = SimulatedHost::new("registry.example/os:stable", "sha256:aa", HashMap::new());
        let pull = host.answer(&args("switch registry.example/os@sha256:cc"));
        assert_eq!(pull.code, 1);
        assert!(pull.stderr.contains("manifest unknown"), "{}", pull.stderr);
        assert_eq!(host.answer(&args("frobnicate")).code, 2);
        assert_eq!(
            host.answer(&args("upgrade --from-downloaded --apply")).code,
            1
        );
    }
}
