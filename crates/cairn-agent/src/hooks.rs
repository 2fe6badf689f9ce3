//! Update hooks: executables the new image ships in
//! `/usr/lib/cairn/hooks/pre-update.d/`, run after staging and before the
//! reboot, and the operator's own in `/etc/cairn/hooks/{pre,post}-update.d/`.
//!
//! Where systemd is PID 1, an image hook runs as a transient unit whose root
//! directory is the staged deployment, so it uses the new image's own loader
//! and libraries; the booted root is mounted read-only at
//! [`BOOTED_ROOT_INSIDE`]. Elsewhere (containers, tests) a hook runs directly
//! with the staged deployment as its working directory and in
//! `CAIRN_STAGED_ROOT`; image hooks should reach the new tree through
//! `${CAIRN_STAGED_ROOT:-/}`, which is `/` under systemd.

use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Where image hooks live in an image.
pub const IMAGE_HOOKS: &str = "usr/lib/cairn/hooks/pre-update.d";
/// Where the booted root is, read-only, inside an image hook's root.
pub const BOOTED_ROOT_INSIDE: &str = "/run/cairn/booted-root";
/// The exit code a hook uses to say "try again soon" (EX_TEMPFAIL).
pub const TEMPORARY_FAILURE: i32 = 75;
/// Lines of each stream logged per hook; the rest are counted.
const LOGGED_LINES: usize = 1000;
/// Longest line kept.
const LINE_BYTES: usize = 4096;

/// The environment contract: the only variables a hook gets.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HookEnv {
    /// `CAIRN_FROM_VERSION`.
    pub from_version: String,
    /// `CAIRN_FROM_DIGEST`.
    pub from_digest: String,
    /// `CAIRN_TO_VERSION`.
    pub to_version: String,
    /// `CAIRN_TO_DIGEST`.
    pub to_digest: String,
    /// `CAIRN_STREAM`.
    pub stream: String,
}

impl HookEnv {
    fn pairs(&self, booted_root: &str, staged_root: &str) -> Vec<(String, String)> {
        [
            ("CAIRN_FROM_VERSION", self.from_version.as_str()),
            ("CAIRN_FROM_DIGEST", self.from_digest.as_str()),
            ("CAIRN_TO_VERSION", self.to_version.as_str()),
            ("CAIRN_TO_DIGEST", self.to_digest.as_str()),
            ("CAIRN_STREAM", self.stream.as_str()),
            ("CAIRN_BOOTED_ROOT", booted_root),
            ("CAIRN_STAGED_ROOT", staged_root),
            ("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

/// Why an image hook did not run where systemd is not PID 1.
pub const UNCONFINED_REFUSED: &str = "not run: systemd is not PID 1, so the image's hook cannot be confined to its tree and would run as root on the host; set hooks.allow_unconfined = true to run it anyway";

/// How hooks run on this host.
#[derive(Debug, Clone)]
pub struct HookSettings {
    /// The host's root (`/`; a temporary root in tests): operator hooks are
    /// under `<root>/etc/cairn/hooks`.
    pub root: PathBuf,
    /// The sysroot deployments live under (`/sysroot`).
    pub sysroot: PathBuf,
    /// Longest a hook may run.
    pub timeout: Duration,
    /// Run through `systemd-run` (systemd is PID 1).
    pub systemd: bool,
    /// Run image hooks unconfined where `systemd` is false
    /// (`hooks.allow_unconfined`); otherwise they veto the update.
    pub allow_unconfined: bool,
}

/// One hook that did not pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Veto {
    /// `image:<name>` or `operator:<name>`.
    pub hook: String,
    /// The hook's last line on stderr, or what happened to it.
    pub reason: String,
    /// It exited 75: retry soon.
    pub temporary: bool,
}

/// The outcome of the pre-update hooks.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every hook passed (names, in the order run).
    Passed(Vec<String>),
    /// One vetoed; the rest did not run.
    Vetoed(Veto),
}

/// The executables in a hook directory, in lexical order.
pub fn list(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| {
            e.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// The `systemd-run` line for an image hook: the staged deployment as root,
/// the booted root read-only inside it, `/boot` and `/sysroot` bound, a
/// clean environment, and a runtime limit.
pub fn systemd_run_line(
    staged_root: &Path,
    hook: &str,
    env: &HookEnv,
    timeout: Duration,
) -> Vec<String> {
    let mut line: Vec<String> = [
        "--wait",
        "--collect",
        "--pipe",
        "--quiet",
        "--service-type=exec",
    ]
    .map(String::from)
    .to_vec();
    line.push(format!(
        "--property=RootDirectory={}",
        staged_root.display()
    ));
    line.push("--property=MountAPIVFS=yes".into());
    line.push(format!(
        "--property=BindReadOnlyPaths=/:{BOOTED_ROOT_INSIDE}"
    ));
    line.push("--property=BindPaths=/boot /sysroot".into());
    line.push(format!(
        "--property=RuntimeMaxSec={}",
        timeout.as_secs().max(1)
    ));
    for (key, value) in env.pairs(BOOTED_ROOT_INSIDE, "/") {
        line.push(format!("--setenv={key}={value}"));
    }
    line.push("--".into());
    line.push(format!("/{IMAGE_HOOKS}/{hook}"));
    line
}

/// Run the new image's pre-update hooks. The operator's run separately, just
/// before the reboot, once every gate has passed (see [`operator`]).
pub async fn pre_update(
    settings: &HookSettings,
    staged_root: Option<&Path>,
    env: &HookEnv,
) -> Outcome {
    let mut ran = Vec::new();
    if let Some(staged_root) = staged_root {
        for name in list(&staged_root.join(IMAGE_HOOKS)) {
            let label = format!("image:{name}");
            // An image's hooks come from whoever built the image; only
            // systemd-run confines them to its tree. Unconfined, they would
            // run as root on the host: refuse, unless the operator said so.
            if !settings.systemd && !settings.allow_unconfined {
                return Outcome::Vetoed(Veto {
                    hook: label,
                    reason: UNCONFINED_REFUSED.to_string(),
                    temporary: false,
                });
            }
            let (program, args, booted_root, staged_env, cwd) = if settings.systemd {
                (
                    "systemd-run".to_string(),
                    systemd_run_line(staged_root, &name, env, settings.timeout),
                    BOOTED_ROOT_INSIDE.to_string(),
                    "/".to_string(),
                    PathBuf::from("/"),
                )
            } else {
                (
                    staged_root
                        .join(IMAGE_HOOKS)
                        .join(&name)
                        .display()
                        .to_string(),
                    Vec::new(),
                    settings.root.display().to_string(),
                    staged_root.display().to_string(),
                    staged_root.to_path_buf(),
                )
            };
            let pairs = env.pairs(&booted_root, &staged_env);
            if let Some(veto) =
                run_one(&label, &program, &args, &pairs, &cwd, settings.timeout).await
            {
                return Outcome::Vetoed(veto);
            }
            ran.push(label);
        }
    }
    Outcome::Passed(ran)
}

/// Run the operator's hooks in `/etc/cairn/hooks/<dir>` on the booted root.
pub async fn operator(
    settings: &HookSettings,
    dir: &str,
    env: &HookEnv,
    staged_root: &str,
) -> Result<Vec<String>, Veto> {
    let base = settings.root.join("etc/cairn/hooks").join(dir);
    let pairs = env.pairs(&settings.root.display().to_string(), staged_root);
    let mut ran = Vec::new();
    for name in list(&base) {
        let label = format!("operator:{name}");
        let program = base.join(&name).display().to_string();
        if let Some(veto) = run_one(
            &label,
            &program,
            &[],
            &pairs,
            &settings.root,
            settings.timeout,
        )
        .await
        {
            return Err(veto);
        }
        ran.push(label);
    }
    Ok(ran)
}

/// Run one hook with a clean environment and a timeout; its output goes to
/// the log line by line. `None` when it passed.
async fn run_one(
    label: &str,
    program: &str,
    args: &[String],
    env: &[(String, String)],
    cwd: &Path,
    timeout: Duration,
) -> Option<Veto> {
    let veto = |reason: String, temporary: bool| {
        Some(Veto {
            hook: label.to_string(),
            reason,
            temporary,
        })
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        // Its own process group, so a timeout kills whatever it started too.
        .process_group(0)
        .kill_on_drop(true);
    // A file just written may be briefly "busy" while another thread's fork
    // still holds its write descriptor: retry that, nothing else.
    let mut spawned = command.spawn();
    for _ in 0..10 {
        match &spawned {
            Err(e) if e.raw_os_error() == Some(26) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                spawned = command.spawn();
            }
            _ => break,
        }
    }
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return veto(format!("could not run {program}: {e}"), false),
    };
    let pid = child.id();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let out_label = label.to_string();
    let mut out_task = tokio::spawn(async move {
        if let Some(stream) = stdout {
            drain(&out_label, "stdout", stream).await;
        }
    });
    let err_label = label.to_string();
    let mut err_task = tokio::spawn(async move {
        match stderr {
            Some(stream) => drain(&err_label, "stderr", stream).await,
            None => None,
        }
    });
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            kill_group(pid).await;
            let _ = child.kill().await;
            out_task.abort();
            err_task.abort();
            return veto(
                format!("timed out after {}s and was killed", timeout.as_secs()),
                false,
            );
        }
    };
    // Whatever the hook left running goes with it; its output pipes then
    // close. A child that escaped its group cannot hold the agent either.
    kill_group(pid).await;
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = (&mut out_task).await;
        (&mut err_task).await.ok().flatten()
    })
    .await;
    out_task.abort();
    err_task.abort();
    let last = drained.ok().flatten();
    match status {
        Ok(status) if status.success() => {
            tracing::info!(hook = label, "hook passed");
            None
        }
        Ok(status) => {
            let code = status.code();
            let reason = last
                .filter(|l| !l.trim().is_empty())
                .unwrap_or_else(|| match code {
                    Some(code) => format!("exited with status {code}"),
                    None => "was killed by a signal".to_string(),
                });
            veto(reason, code == Some(TEMPORARY_FAILURE))
        }
        Err(e) => veto(format!("could not wait for {program}: {e}"), false),
    }
}

/// Log a stream line by line (bounded), returning its last non-empty line.
async fn drain(
    label: &str,
    stream_name: &str,
    stream: impl tokio::io::AsyncRead + Unpin,
) -> Option<String> {
    let mut reader = BufReader::new(stream);
    let mut buffer = Vec::new();
    let mut last = None;
    let mut lines = 0usize;
    loop {
        // One line, keeping at most LINE_BYTES of it: a hook that never
        // writes a newline cannot grow the agent's memory.
        buffer.clear();
        let mut ended = false;
        loop {
            let chunk = match reader.fill_buf().await {
                Ok([]) | Err(_) => {
                    ended = true;
                    break;
                }
                Ok(chunk) => chunk,
            };
            let (take, newline) = match chunk.iter().position(|&b| b == b'\n') {
                Some(at) => (at + 1, true),
                None => (chunk.len(), false),
            };
            let room = LINE_BYTES.saturating_sub(buffer.len());
            buffer.extend_from_slice(&chunk[..take.min(room)]);
            reader.consume(take);
            if newline {
                break;
            }
        }
        if ended && buffer.is_empty() {
            break;
        }
        let line = String::from_utf8_lossy(&buffer).trim_end().to_string();
        lines += 1;
        if lines <= LOGGED_LINES {
            tracing::info!(hook = label, stream = stream_name, "{line}");
        }
        if !line.trim().is_empty() {
            last = Some(line);
        }
    }
    if lines > LOGGED_LINES {
        tracing::info!(
            hook = label,
            stream = stream_name,
            "{} more lines not logged",
            lines - LOGGED_LINES
        );
    }
    last
}

/// Kill the hook's process group. The group id is the hook's pid (it was
/// started as a group leader); `--` keeps `-<pgid>` from being read as an
/// option, and pids 0 and 1 are never used (`kill -- -1` would hit everything).
async fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid.filter(|&p| p > 1) {
        let _ = tokio::process::Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{pid}")])
            .status()
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_systemd_run_line_roots_the_hook_in_the_staged_deployment() {
        let env = HookEnv {
            from_version: "1".into(),
            from_digest: "sha256:a".into(),
            to_version: "2".into(),
            to_digest: "sha256:b".into(),
            stream: "stable".into(),
        };
        let line = systemd_run_line(
            Path::new("/sysroot/ostree/deploy/default/deploy/abc.0"),
            "10-migrate",
            &env,
            Duration::from_secs(300),
        );
        assert_eq!(
            line.join(" "),
            "--wait --collect --pipe --quiet --service-type=exec \
             --property=RootDirectory=/sysroot/ostree/deploy/default/deploy/abc.0 \
             --property=MountAPIVFS=yes --property=BindReadOnlyPaths=/:/run/cairn/booted-root \
             --property=BindPaths=/boot /sysroot --property=RuntimeMaxSec=300 \
             --setenv=CAIRN_FROM_VERSION=1 --setenv=CAIRN_FROM_DIGEST=sha256:a \
             --setenv=CAIRN_TO_VERSION=2 --setenv=CAIRN_TO_DIGEST=sha256:b \
             --setenv=CAIRN_STREAM=stable --setenv=CAIRN_BOOTED_ROOT=/run/cairn/booted-root \
             --setenv=CAIRN_STAGED_ROOT=/ \
             --setenv=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin \
             -- /usr/lib/cairn/hooks/pre-update.d/10-migrate"
        );
    }

    fn script(dir: &Path, name: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).expect("mkdir");
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    /// The process whose pid is in `pid_file` is gone. SIGKILL is delivered
    /// at once but dying may take a moment; a zombie waiting for init is dead.
    fn assert_dead(pid_file: &Path) {
        let pid = std::fs::read_to_string(pid_file).expect("pid file");
        let mut state = String::new();
        for _ in 0..100 {
            state =
                std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
            if state.is_empty() || state.contains(") Z") {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the hook's child still runs: {state}");
    }

    fn settings(root: &Path, timeout: Duration) -> HookSettings {
        HookSettings {
            root: root.to_path_buf(),
            sysroot: root.join("sysroot"),
            timeout,
            systemd: false,
            allow_unconfined: true,
        }
    }

    #[tokio::test]
    async fn image_hooks_are_refused_unconfined_unless_allowed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let staged = dir.path().join("staged");
        script(
            &staged.join(IMAGE_HOOKS),
            "10-check",
            "touch \"$CAIRN_STAGED_ROOT/ran\"",
        );
        let confined_only = HookSettings {
            allow_unconfined: false,
            ..settings(dir.path(), Duration::from_secs(10))
        };
        let outcome = pre_update(&confined_only, Some(&staged), &HookEnv::default()).await;
        assert_eq!(
            outcome,
            Outcome::Vetoed(Veto {
                hook: "image:10-check".into(),
                reason: UNCONFINED_REFUSED.into(),
                temporary: false,
            })
        );
        assert!(!staged.join("ran").exists(), "the hook did not run");
        // No image hooks: nothing to refuse.
        let empty = dir.path().join("empty");
        std::fs::create_dir_all(&empty).expect("mkdir");
        assert_eq!(
            pre_update(&confined_only, Some(&empty), &HookEnv::default()).await,
            Outcome::Passed(Vec::new())
        );
        // Allowed: it runs.
        let allowed = settings(dir.path(), Duration::from_secs(10));
        assert_eq!(
            pre_update(&allowed, Some(&staged), &HookEnv::default()).await,
            Outcome::Passed(vec!["image:10-check".into()])
        );
        assert!(staged.join("ran").exists());
    }

    #[tokio::test]
    async fn hooks_run_in_order_with_only_the_contracted_environment() {
        let dir = tempfile::tempdir().expect("temp dir");
        let staged = dir.path().join("staged");
        let hooks = staged.join(IMAGE_HOOKS);
        script(
            &hooks,
            "20-second",
            "echo second >> \"$CAIRN_STAGED_ROOT/ran\"",
        );
        script(
            &hooks,
            "10-first",
            "echo first >> \"$CAIRN_STAGED_ROOT/ran\"; env | sort > \"$CAIRN_STAGED_ROOT/env\"",
        );
        std::fs::write(hooks.join("30-not-executable"), "exit 1").expect("write");
        script(
            &dir.path().join("etc/cairn/hooks/pre-update.d"),
            "50-drain",
            "echo drained > \"$CAIRN_STAGED_ROOT/drained\"",
        );
        let env = HookEnv {
            to_version: "2".into(),
            ..HookEnv::default()
        };
        // SAFETY of the check: a variable of the agent's must not leak into hooks.
        let outcome = pre_update(
            &settings(dir.path(), Duration::from_secs(10)),
            Some(&staged),
            &env,
        )
        .await;
        assert_eq!(
            outcome,
            Outcome::Passed(vec!["image:10-first".into(), "image:20-second".into()])
        );
        let operator_ran = operator(
            &settings(dir.path(), Duration::from_secs(10)),
            "pre-update.d",
            &env,
            &staged.display().to_string(),
        )
        .await;
        assert_eq!(operator_ran, Ok(vec!["operator:50-drain".to_string()]));
        assert_eq!(
            std::fs::read_to_string(staged.join("ran")).expect("ran"),
            "first\nsecond\n"
        );
        let seen = std::fs::read_to_string(staged.join("env")).expect("env");
        let names: Vec<&str> = seen.lines().filter_map(|l| l.split('=').next()).collect();
        for name in &names {
            assert!(
                name.starts_with("CAIRN_")
                    || ["PATH", "PWD", "SHLVL", "_", "OLDPWD"].contains(name),
                "unexpected variable {name} in {seen}"
            );
        }
        assert!(seen.contains("CAIRN_TO_VERSION=2"), "{seen}");
        assert!(staged.join("drained").exists());
    }

    #[tokio::test]
    async fn a_veto_names_the_hook_and_its_last_stderr_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        let staged = dir.path().join("staged");
        let hooks = staged.join(IMAGE_HOOKS);
        script(
            &hooks,
            "10-check",
            "echo checking; echo 'disk too small' >&2; echo 'need 2 GiB free on /boot' >&2; exit 3",
        );
        script(&hooks, "20-never", "touch \"$CAIRN_STAGED_ROOT/never\"");
        let outcome = pre_update(
            &settings(dir.path(), Duration::from_secs(10)),
            Some(&staged),
            &HookEnv::default(),
        )
        .await;
        assert_eq!(
            outcome,
            Outcome::Vetoed(Veto {
                hook: "image:10-check".into(),
                reason: "need 2 GiB free on /boot".into(),
                temporary: false
            })
        );
        assert!(!staged.join("never").exists(), "later hooks do not run");
        script(&hooks, "10-check", "echo 'registry busy' >&2; exit 75");
        let outcome = pre_update(
            &settings(dir.path(), Duration::from_secs(10)),
            Some(&staged),
            &HookEnv::default(),
        )
        .await;
        assert!(
            matches!(
                outcome,
                Outcome::Vetoed(Veto {
                    temporary: true,
                    ..
                })
            ),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn a_hanging_hook_and_its_children_are_killed_at_the_timeout() {
        let dir = tempfile::tempdir().expect("temp dir");
        let staged = dir.path().join("staged");
        script(
            &staged.join(IMAGE_HOOKS),
            "10-hang",
            "sleep 300 & echo $! > \"$CAIRN_STAGED_ROOT/child\"; sleep 300",
        );
        let started = std::time::Instant::now();
        let outcome = pre_update(
            &settings(dir.path(), Duration::from_secs(1)),
            Some(&staged),
            &HookEnv::default(),
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(20));
        assert!(
            matches!(&outcome, Outcome::Vetoed(Veto { reason, .. }) if reason.contains("timed out after 1s")),
            "{outcome:?}"
        );
        assert_dead(&staged.join("child"));
    }

    #[tokio::test]
    async fn a_hook_that_leaves_a_process_behind_does_not_hold_the_agent() {
        let dir = tempfile::tempdir().expect("temp dir");
        let staged = dir.path().join("staged");
        script(
            &staged.join(IMAGE_HOOKS),
            "10-daemon",
            "sleep 300 & echo $! > \"$CAIRN_STAGED_ROOT/child\"; head -c 3000000 /dev/zero | tr '\\0' x; exit 0",
        );
        let started = std::time::Instant::now();
        let outcome = pre_update(
            &settings(dir.path(), Duration::from_secs(60)),
            Some(&staged),
            &HookEnv::default(),
        )
        .await;
        assert_eq!(outcome, Outcome::Passed(vec!["image:10-daemon".into()]));
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
        assert_dead(&staged.join("child"));
    }

    #[tokio::test]
    async fn a_hook_writing_a_lot_of_output_neither_blocks_nor_fails() {
        let dir = tempfile::tempdir().expect("temp dir");
        let staged = dir.path().join("staged");
        // About 20 MB on each stream: more than any pipe buffer.
        script(
            &staged.join(IMAGE_HOOKS),
            "10-loud",
            "yes 'a line of hook output' | head -c 20000000; yes 'noise' | head -c 20000000 >&2; exit 0",
        );
        let outcome = pre_update(
            &settings(dir.path(), Duration::from_secs(60)),
            Some(&staged),
            &HookEnv::default(),
        )
        .await;
        assert_eq!(outcome, Outcome::Passed(vec!["image:10-loud".into()]));
    }
}
