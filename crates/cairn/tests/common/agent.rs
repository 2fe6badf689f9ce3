//! One builder for the `cairn` commands that act on a host (`agent`,
//! `update-now`, `verify`, …), pointed at a stand-in: the flags that keep a
//! test's agent off this machine and on the test's registry live here only.

use cairn_testkit::host::FakeHost;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// A `cairn` command line for one stand-in host.
///
/// Always given: the host's tool (`--bootc`, or for an rpm-ostree stand-in
/// `--rpm-ostree` with `--bootc` pointed at nothing), `--root`, `--state-dir`
/// and `--arch x86_64`; and, unless [`AgentCommand::systemctl`] names a
/// stand-in, `--no-updater-check --no-systemd`, since this machine's systemd
/// is not the host's.
///
/// ```ignore
/// let out = AgentCommand::new(&["agent", "--once"], &host, &root, &state)
///     .insecure_registry(&registry.host)
///     .ok();
/// let child = node.command(&["update-now"]).arg("--no-user-check").spawn();
/// ```
#[derive(Debug, Clone)]
pub struct AgentCommand {
    verb: Vec<String>,
    host: Vec<String>,
    systemctl: Option<String>,
    extra: Vec<String>,
}

fn text(path: impl AsRef<Path>) -> String {
    path.as_ref().display().to_string()
}

impl AgentCommand {
    /// `cairn <verb…>` for `host`, configured under `root`, with its state in `state_dir`.
    pub fn new(
        verb: &[&str],
        host: &FakeHost,
        root: impl AsRef<Path>,
        state_dir: impl AsRef<Path>,
    ) -> AgentCommand {
        let program = text(&host.program);
        let mut tool = if host.program.ends_with("rpm-ostree") {
            vec![
                "--rpm-ostree".to_string(),
                program,
                "--bootc".to_string(),
                text(host.dir.join("no-bootc")),
            ]
        } else {
            vec!["--bootc".to_string(), program]
        };
        tool.extend([
            "--root".to_string(),
            text(root),
            "--state-dir".to_string(),
            text(state_dir),
            "--arch".to_string(),
            "x86_64".to_string(),
        ]);
        AgentCommand {
            verb: verb.iter().map(|s| s.to_string()).collect(),
            host: tool,
            systemctl: None,
            extra: Vec::new(),
        }
    }

    /// Reach `registry` (`host:port`) over plain HTTP; repeat for more.
    pub fn insecure_registry(self, registry: &str) -> AgentCommand {
        self.args(["--insecure-registry", registry])
    }

    /// Ask this stand-in `systemctl`, instead of asking no systemd at all.
    pub fn systemctl(mut self, path: impl AsRef<Path>) -> AgentCommand {
        self.systemctl = Some(text(path));
        self
    }

    /// One more argument.
    pub fn arg(mut self, arg: impl AsRef<str>) -> AgentCommand {
        self.extra.push(arg.as_ref().to_string());
        self
    }

    /// More arguments.
    pub fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> AgentCommand {
        self.extra
            .extend(args.into_iter().map(|s| s.as_ref().to_string()));
        self
    }

    /// The whole argument list after `cairn`.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = self.verb.clone();
        args.extend(self.host.iter().cloned());
        match &self.systemctl {
            Some(path) => args.extend(["--systemctl".to_string(), path.clone()]),
            None => args.extend(["--no-updater-check", "--no-systemd"].map(String::from)),
        }
        args.extend(self.extra.iter().cloned());
        args
    }

    /// The process, to adjust before running.
    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cairn"));
        command.args(self.to_args());
        command
    }

    /// Run it, whatever the outcome.
    pub fn output(&self) -> Output {
        self.command().output().expect("cairn runs")
    }

    /// Run it, require success, and return its standard output.
    pub fn ok(&self) -> String {
        super::ok(&self.to_args())
    }

    /// Start it as a daemon (`cairn agent` checking every 100 ms), on its
    /// own socket in `state_dir`, never on the default one.
    pub fn daemon(self, state_dir: &str) -> Daemon {
        let socket = format!("{state_dir}/agent.sock");
        self.args(["--socket", socket.as_str(), "--no-user-check"])
            .args(["--check-interval-ms", "100"])
            .command()
            .stderr(Stdio::null())
            .spawn()
            .map(Daemon)
            .expect("spawn the agent")
    }

    /// Start it with its output piped (for a command that blocks until the
    /// stand-in reboots, as [`FakeHost::reboot_under`] wants).
    pub fn spawn(&self) -> Child {
        self.command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cairn starts")
    }
}

/// A stand-in host with its configuration root and state directory.
pub struct Node {
    pub host: FakeHost,
    pub root: String,
    pub state: String,
}

impl Node {
    /// Put `host` in `base`: `config` as `root/etc/cairn/config.d/50-site.toml`,
    /// state in `state`.
    pub fn configured(host: FakeHost, base: &Path, config: &str) -> Node {
        let dir = base.join("root/etc/cairn/config.d");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("50-site.toml"), config).expect("write");
        Node {
            host,
            root: text(base.join("root")),
            state: text(base.join("state")),
        }
    }

    /// `cairn <verb…>` against this host.
    pub fn command(&self, verb: &[&str]) -> AgentCommand {
        AgentCommand::new(verb, &self.host, &self.root, &self.state)
    }
}

/// A running `cairn agent`, killed when dropped: a test that fails midway
/// leaves no agent behind (holding the test's output pipe open).
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        // Already gone after a test's SIGKILL; errors mean just that.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every pass of the agent ends by rewriting its metrics file (nothing reads
/// it back), so a removed one that reappears proves a whole pass ran.
pub fn forget_passes(n: &Node) {
    match std::fs::remove_file(Path::new(&n.state).join("metrics.prom")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("metrics.prom: {e}"),
        _ => {}
    }
}

/// Wait until the running agent has finished `passes` more whole passes:
/// only then may a test conclude that something did *not* happen.
pub async fn wait_for_passes(n: &Node, passes: usize) {
    let metrics = Path::new(&n.state).join("metrics.prom");
    for pass in 1..=passes {
        forget_passes(n);
        super::wait_until(&format!("pass {pass} of {passes} finished"), || {
            metrics.exists()
        })
        .await;
    }
}

/// The weekday `days_from_today` days after today (UTC), as a window names it.
pub fn weekday(days_from_today: i64) -> &'static str {
    // 1970-01-01 was a Thursday.
    let today = jiff::Timestamp::now().as_second().div_euclid(86_400) + 4;
    ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        [(today + days_from_today).rem_euclid(7) as usize]
}

/// A weekly window on a day other than today, so finalization waits: three
/// days away, so it is closed now in any time zone.
pub fn closed_window() -> String {
    format!(
        "[[strategy.window]]\ndays = [\"{}\"]\nstart_time = \"00:00\"\nlength_minutes = 60\n",
        weekday(3)
    )
}

/// A window open every day, all day, so finalization may go on now.
pub fn open_window() -> String {
    "[[strategy.window]]\ndays = [\"Mon\", \"Tue\", \"Wed\", \"Thu\", \"Fri\", \"Sat\", \"Sun\"]\nstart_time = \"00:00\"\nlength_minutes = 1440\n".to_string()
}

/// A signed stream behind a registry login (htpasswd), and a stand-in host
/// on its one release whose agent is configured to trust the team key. The
/// login is in `auth` (an `auth.json`), not yet anywhere the agent looks.
pub struct BehindLogin {
    pub registry: cairn_testkit::TestRegistry,
    pub dir: tempfile::TempDir,
    pub host: FakeHost,
    /// The agent's `--root`, with its `config.d` written.
    pub root: std::path::PathBuf,
    /// The `auth.json` text that logs in to the registry.
    pub auth: String,
}

/// [`BehindLogin`]; `bootc_insecure`: the stand-in bootc reaches the
/// registry over plain HTTP itself (not needed when nothing is pulled).
pub async fn behind_login(bootc_insecure: bool) -> BehindLogin {
    use base64::Engine;
    use cairn_testkit::{Auth, TestRegistry, write_release};
    let registry = TestRegistry::start(Auth::Htpasswd).await;
    let store = registry.store("acme/os");
    let (_, written) =
        write_release(&store, "44.1", "2026-01-01T00:00:00Z", &["44.1", "stable"]).await;
    let digest = written[0].manifest.clone();
    let dir = tempfile::tempdir().expect("temp dir");
    let d = |name: &str| dir.path().join(name).display().to_string();
    let login = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        cairn_testkit::registry::USER,
        cairn_testkit::registry::PASSWORD
    ));
    let auth = format!(
        r#"{{"auths":{{"{}":{{"auth":"{login}"}}}}}}"#,
        registry.host
    );
    std::fs::write(d("auth.json"), &auth).expect("auth.json");
    let repo = format!("{}/acme/os", registry.host);
    super::ok(&["document", "keygen", "--output", &d("team")]);
    super::publish::Publish::signed(&repo, d("team.key"))
        .insecure_registry(&registry.host)
        .cache(d("cache.json"))
        .args(["--authfile", &d("auth.json")])
        .run();
    let insecure = if bootc_insecure {
        vec![registry.host.clone()]
    } else {
        Vec::new()
    };
    let host = FakeHost::new(
        &dir.path().join("host"),
        "1.17.0",
        &format!("{repo}:stable"),
        (&digest, "44.1"),
        &insecure,
        true,
    );
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc/cairn/config.d")).expect("mkdir");
    std::fs::write(
        root.join("etc/cairn/config.d/50-site.toml"),
        format!(
            "[updates]\nkeys = [\"{}\"]\n[identity]\nrollout_wariness = 0.5\n",
            d("team.pub")
        ),
    )
    .expect("config");
    BehindLogin {
        registry,
        dir,
        host,
        root,
        auth,
    }
}
