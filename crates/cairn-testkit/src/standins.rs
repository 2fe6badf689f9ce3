//! Where the stand-in executables (`fake-bootc`, `fake-rpm-ostree`, `fake-systemd-run`) are, built
//! on first use. They are binaries of this crate, and Cargo builds a
//! dependency's binaries for nobody: without this, `cargo test -p
//! cairn-agent` would find none, or stale ones from an older build.
//!
//! The first lookup in a test process runs `cargo build -p cairn-testkit
//! --bins` once, into the target directory and profile the running test was
//! built in (found from its own path, so `CARGO_TARGET_DIR` and
//! `build.target-dir` are honored), with the `cargo` that runs the tests
//! (`$CARGO`). Cargo decides what is stale; when all is fresh that costs a
//! fraction of a second. `$CAIRN_FAKE_BOOTC` / `$CAIRN_FAKE_RPM_OSTREE` skip it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The outcome of the one build per process: the directory the stand-ins
/// are in, or why they could not be built.
static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The path of stand-in `name`, or `$variable` when set.
pub(crate) fn locate(name: &str, variable: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(variable) {
        return PathBuf::from(path);
    }
    match BUILT.get_or_init(build) {
        Ok(dir) => {
            let path = dir.join(name);
            assert!(
                path.exists(),
                "`cargo build -p cairn-testkit --bins` succeeded but left no {}",
                path.display()
            );
            path
        }
        Err(why) => panic!(
            "the {name} stand-in could not be built: {why}\n\
             build it with `cargo build -p cairn-testkit --bins`, or point ${variable} at it"
        ),
    }
}

/// Where the running test was built: `<target>/<profile>/deps/<test>`.
struct Layout {
    target_dir: PathBuf,
    profile_dir: PathBuf,
}

fn layout() -> Result<Layout, String> {
    let exe = std::env::current_exe().map_err(|e| format!("the running test's path: {e}"))?;
    let deps = exe
        .parent()
        .filter(|dir| dir.file_name().is_some_and(|n| n == "deps"))
        .ok_or_else(|| {
            format!(
                "{} is not in a Cargo target directory's deps/",
                exe.display()
            )
        })?;
    let profile_dir = deps
        .parent()
        .ok_or_else(|| format!("{} has no parent", deps.display()))?;
    let target_dir = profile_dir
        .parent()
        .ok_or_else(|| format!("{} has no parent", profile_dir.display()))?;
    Ok(Layout {
        target_dir: target_dir.to_path_buf(),
        profile_dir: profile_dir.to_path_buf(),
    })
}

/// The variables Cargo sets for a test process from its package (and a
/// build script's from its own), by name or prefix.
const PER_PACKAGE: [&str; 8] = [
    "CARGO_PKG_",
    "CARGO_MANIFEST_",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
    "OUT_DIR",
];

/// Run the build once; the stand-ins land in the test's own profile directory.
fn build() -> Result<PathBuf, String> {
    let layout = layout()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let mut command = Command::new(&cargo);
    // What Cargo set for the running test describes its package, not the
    // build: build scripts that watch such variables (ring's watches
    // CARGO_PKG_*) would see them change, and half the tree would rebuild
    // on every run, and again in the next plain `cargo build`.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if PER_PACKAGE.iter().any(|prefix| name.starts_with(prefix)) {
            command.env_remove(name.as_ref());
        }
    }
    command
        .args(["build", "--quiet", "--bins", "-p", "cairn-testkit"])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&layout.target_dir);
    // Cargo names a profile's directory after it, except `dev` (and `test`,
    // which inherits it) in `debug`.
    match layout.profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            command.arg("--release");
        }
        Some(other) => {
            command.args(["--profile", other]);
        }
    }
    let output = match command.stdin(Stdio::null()).output() {
        Ok(output) => output,
        // A test binary run without Cargo (copied elsewhere, or after
        // `--no-run`) uses the stand-ins as they were built, if they were.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "cairn-testkit: {} not found; using the stand-ins in {} as they are",
                Path::new(&cargo).display(),
                layout.profile_dir.display()
            );
            return Ok(layout.profile_dir);
        }
        Err(e) => return Err(format!("running {}: {e}", Path::new(&cargo).display())),
    };
    if !output.status.success() {
        return Err(format!(
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(layout.profile_dir)
}
