//! One builder for `cairn publish`, as a release team runs it: every test
//! that publishes a stream states only what differs.

use std::path::Path;
use std::process::{Command, Output};

/// A `cairn publish` command line: `--repository`, `--stream` (`stable`
/// unless [`Publish::stream`] says otherwise) and, when signed, `--sign-key`.
///
/// ```ignore
/// Publish::signed(&repo, dir.join("team.key"))
///     .insecure_registry(&registry.host)
///     .cache(dir.join("cache.json"))
///     .run();
/// ```
///
/// It never touches the user's cache: without [`Publish::cache`], `cairn`
/// would default to `$XDG_CACHE_HOME`, which points at an unused directory.
#[derive(Debug, Clone)]
pub struct Publish {
    repository: String,
    stream: String,
    args: Vec<String>,
}

/// What a publish that succeeded printed.
#[derive(Debug)]
pub struct Ran {
    pub stdout: String,
    pub stderr: String,
}

fn text(path: impl AsRef<Path>) -> String {
    path.as_ref().display().to_string()
}

impl Publish {
    /// Publish `repository` (a registry repository or a layout), signed with `key`.
    pub fn signed(repository: &str, key: impl AsRef<Path>) -> Publish {
        Publish::unsigned(repository).args(["--sign-key".to_string(), text(key)])
    }

    /// Publish `repository` without signing (what someone without the key can do).
    pub fn unsigned(repository: &str) -> Publish {
        Publish {
            repository: repository.to_string(),
            stream: "stable".to_string(),
            args: Vec::new(),
        }
    }

    /// Another stream than `stable`.
    pub fn stream(mut self, stream: &str) -> Publish {
        self.stream = stream.to_string();
        self
    }

    /// Reach `registry` (`host:port`) over plain HTTP; repeat for more.
    pub fn insecure_registry(self, registry: &str) -> Publish {
        self.args(["--insecure-registry", registry])
    }

    /// The publish cache file.
    pub fn cache(self, path: impl AsRef<Path>) -> Publish {
        self.args(["--cache".to_string(), text(path)])
    }

    /// The policy file.
    pub fn policy(self, path: impl AsRef<Path>) -> Publish {
        self.args(["--policy".to_string(), text(path)])
    }

    /// One more argument.
    pub fn arg(mut self, arg: impl AsRef<str>) -> Publish {
        self.args.push(arg.as_ref().to_string());
        self
    }

    /// More arguments.
    pub fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Publish {
        self.args
            .extend(args.into_iter().map(|s| s.as_ref().to_string()));
        self
    }

    /// The whole argument list after `cairn`.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = ["publish", "--repository", &self.repository, "--stream"]
            .map(String::from)
            .to_vec();
        args.push(self.stream.clone());
        args.extend(self.args.iter().cloned());
        args
    }

    /// Run it, whatever the outcome.
    pub fn output(&self) -> Output {
        Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(self.to_args())
            .env(
                "XDG_CACHE_HOME",
                std::env::temp_dir().join("cairn-test-cache-unused"),
            )
            .output()
            .expect("cairn runs")
    }

    /// Run it and require success.
    pub fn run(&self) -> Ran {
        let out = self.output();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "cairn {:?} failed ({:?}): {stderr}",
            self.to_args(),
            out.status.code()
        );
        Ran {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr,
        }
    }
}
