//! A registry that speaks plain HTTP, as a local test registry does: what
//! `cairn` says when it is not listed as insecure, and how a script lists it
//! once, in `CAIRN_INSECURE_REGISTRIES`, instead of on every command.

mod common;
use common::publish::Publish;

use cairn_testkit::{Auth, TestRegistry};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const ENV: &str = "CAIRN_INSECURE_REGISTRIES";

/// `cairn` with `args`, and the insecure-registry variable set to `insecure`
/// (removed when `None`, whatever the test's own environment holds).
fn cairn(args: &[String], insecure: Option<&str>) -> Output {
    command(args, insecure, Path::new("/dev/null"))
        .output()
        .expect("cairn runs")
}

/// `cairn` with `args`, the insecure-registry variable as in [`cairn`], and
/// `registries_conf` as the containers tools' main file.
fn command(args: &[String], insecure: Option<&str>, registries_conf: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cairn"));
    command
        .args(args)
        .env(
            "XDG_CACHE_HOME",
            std::env::temp_dir().join("cairn-test-cache-unused"),
        )
        .env("CONTAINERS_REGISTRIES_CONF", registries_conf);
    match insecure {
        Some(hosts) => command.env(ENV, hosts),
        None => command.env_remove(ENV),
    };
    command
}

/// Run `cairn serve` on `document` (signed with `public`) with
/// `registries_conf`, until its log has a line with `wanted` (returned) or
/// 30 s have passed (the log so far is the error).
fn serve_until(
    dir: &Path,
    document: &str,
    public: &str,
    registries_conf: &Path,
    wanted: &str,
) -> Result<String, String> {
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[[stream]]\nname = \"stable\"\n\
             document = {{ location = \"{document}\", keys = [\"{public}\"] }}\n"
        ),
    )
    .expect("server config");
    let serve = strings(&["serve", "--config", &config.display().to_string()]);
    let mut child = command(&serve, None, registries_conf)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("cairn serve starts");
    let line = wait_for_line(&mut child, wanted);
    let _ = child.kill();
    let _ = child.wait();
    line
}

/// The first line of `child`'s stderr that contains `wanted`, within 30 s;
/// the lines before it when none does.
fn wait_for_line(child: &mut std::process::Child, wanted: &str) -> Result<String, String> {
    let stderr = child.stderr.take().expect("piped stderr");
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut log = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match seen.recv_timeout(left) {
            Ok(line) if line.contains(wanted) => return Ok(line),
            Ok(line) => log.push_str(&format!("{line}\n")),
            Err(_) => return Err(log),
        }
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn keygen(dir: &Path) -> (String, String) {
    let prefix = dir.join("team").display().to_string();
    let out = cairn(&strings(&["document", "keygen", "--output", &prefix]), None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (format!("{prefix}.key"), format!("{prefix}.pub"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http_registry_is_named_with_the_flag_to_use() {
    let registry = TestRegistry::start(Auth::None).await;
    let host = registry.host.clone();
    let document = format!("{host}/acme/os:cairn-graph-stable");
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, public) = keygen(dir.path());

    let out = cairn(
        &strings(&["document", "verify", &document, "--key", &public]),
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let url = format!("https://{host}/v2/acme/os/manifests/cairn-graph-stable");
    assert_eq!(
        stderr,
        format!(
            "cairn: error: {document}: GET {url}: {host} answered in plain HTTP, not TLS; \
             if that is meant (a local registry), pass --insecure-registry {host} or set \
             CAIRN_INSECURE_REGISTRIES={host} (for `cairn serve`: insecure_registries = [\"{host}\"])\n"
        )
    );
    assert!(!stderr.contains("InvalidContentType"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_variable_lists_insecure_registries_for_every_command() {
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    cairn_testkit::write_release(&store, "44.1", "2026-01-01T00:00:00Z", &["44.1"]).await;
    let host = registry.host.clone();
    let dir = tempfile::tempdir().expect("temp dir");
    let (key, public) = keygen(dir.path());
    let publish = Publish::signed(&format!("{host}/acme/os"), &key)
        .cache(dir.path().join("cache.json"))
        .to_args();

    // Other hosts in the list, and blanks, do not get in the way.
    let listed = format!("registry.invalid:5000, {host}");
    let out = cairn(&publish, Some(&listed));
    assert!(
        out.status.success(),
        "publish with {ENV}={listed}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let document = format!("{host}/acme/os:cairn-graph-stable");
    let verify = strings(&["document", "verify", &document, "--key", &public]);
    let out = cairn(&verify, Some(&listed));
    assert!(
        out.status.success(),
        "verify with {ENV}={listed}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The same command without the variable proves it was the variable.
    let out = cairn(&verify, None);
    assert!(!out.status.success(), "verify without {ENV} reached {host}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_without_a_good_graph_says_there_is_none_yet() {
    let registry = TestRegistry::start(Auth::None).await;
    let host = registry.host.clone();
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, public) = keygen(dir.path());
    // The registry is not listed as insecure, so the first refresh fails.
    let document = format!("{host}/acme/os:cairn-graph-stable");
    let failed = serve_until(
        dir.path(),
        &document,
        &public,
        Path::new("/dev/null"),
        "source refresh failed",
    )
    .unwrap_or_else(|log| panic!("no refresh failure logged:\n{log}"));
    assert!(
        failed.contains(
            "source refresh failed and no refresh has succeeded yet: no graph to serve, so this stream's requests get 503 until one does"
        ),
        "{failed}"
    );
    assert!(failed.contains("kind=\"plain_http\""), "{failed}");
    assert!(
        failed.contains(&format!("{host} answered in plain HTTP, not TLS")),
        "{failed}"
    );
    assert!(!failed.contains("last good graph"), "{failed}");
}

/// A registry marked `insecure = true` in the containers tools'
/// `registries.conf` is reached over plain HTTP, once it shows it has no TLS,
/// by every command, `cairn serve` included, with no flag and no variable;
/// a namespace marked insecure leaves the rest of its host on TLS; a file
/// named by the variable must exist; a broken file is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registries_conf_marks_a_registry_insecure_for_every_command() {
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    cairn_testkit::write_release(&store, "44.1", "2026-01-01T00:00:00Z", &["44.1"]).await;
    let host = registry.host.clone();
    let dir = tempfile::tempdir().expect("temp dir");
    let (key, public) = keygen(dir.path());
    let conf = dir.path().join("registries.conf");
    std::fs::write(
        &conf,
        format!(
            "unqualified-search-registries = [\"docker.io\"]\n\
             [[registry]]\nlocation = \"{host}\"\ninsecure = true\n"
        ),
    )
    .expect("write");
    let publish = Publish::signed(&format!("{host}/acme/os"), &key)
        .cache(dir.path().join("cache.json"))
        .to_args();
    let out = command(&publish, None, &conf).output().expect("cairn runs");
    assert!(
        out.status.success(),
        "publish with {}: {}",
        conf.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let document = format!("{host}/acme/os:cairn-graph-stable");
    let verify = strings(&["document", "verify", &document, "--key", &public]);
    let out = command(&verify, None, &conf).output().expect("cairn runs");
    assert!(
        out.status.success(),
        "verify with {}: {}",
        conf.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the file's entry, the same command meets plain HTTP.
    let out = cairn(&verify, None);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("answered in plain HTTP"),
        "{out:?}"
    );
    // An entry for another namespace of the host leaves this one on TLS.
    let other = dir.path().join("other.conf");
    std::fs::write(
        &other,
        format!("[[registry]]\nlocation = \"{host}/other\"\ninsecure = true\n"),
    )
    .expect("write");
    let out = command(&verify, None, &other).output().expect("cairn runs");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("answered in plain HTTP"),
        "{out:?}"
    );
    // A file named on purpose that is not there is an error, not "no entries".
    let missing = dir.path().join("missing.conf");
    let out = command(&verify, None, &missing)
        .output()
        .expect("cairn runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.ends_with(&format!(
            ":cairn-graph-stable: {}: No such file or directory (os error 2)\n",
            missing.display()
        )),
        "{stderr}"
    );

    // `cairn serve` with no insecure_registries of its own.
    serve_until(
        dir.path(),
        &document,
        &public,
        &conf,
        "serving the document's sequence",
    )
    .unwrap_or_else(|log| panic!("the document was not served:\n{log}"));

    // A file that does not parse stops a registry command and is named, but
    // not a command on local files.
    std::fs::write(&conf, "[[registry]\n").expect("write");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/stable.json");
    let local = strings(&[
        "graph",
        "show",
        "--document",
        &example.display().to_string(),
    ]);
    let out = command(&local, None, &conf).output().expect("cairn runs");
    assert!(out.status.success(), "{out:?}");
    let out = command(&verify, None, &conf).output().expect("cairn runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "cairn: error: {host}/acme/os:cairn-graph-stable: {}: TOML parse error at line 1, column 11\n",
            conf.display()
        )),
        "{stderr}"
    );
}
