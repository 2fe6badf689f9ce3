//! `examples/bootc/Containerfile`, built with real buildah on a tiny local
//! base image (there is no network): the preset enables the agent's units, the
//! other updaters end up masked, `cairn config check` passes on the result,
//! and the bootc labels survive. Once with the agent binary copied in, once
//! from the cairn-agent RPM with real rpm (after scripts/build-rpms).

mod common;
use common::cairn;

use cairn_testkit::registry::require_binary;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const BASE_IMAGE: &str = "localhost/cairn-test/bootc-base:latest";
const IMAGE: &str = "localhost/cairn-test/bootc-agent:latest";
const AGENT_UNITS: [&str; 2] = ["cairn-agent.service", "cairn-verify.service"];
const OTHER_UPDATERS: [&str; 3] = [
    "bootc-fetch-apply-updates.timer",
    "zincati.service",
    "rpm-ostreed-automatic.timer",
];

/// buildah on its own storage in a temporary directory (vfs, chroot
/// isolation: what works without privileges beyond root and without a
/// kernel overlay), removed when the test ends, failed or not.
struct Buildah {
    dir: tempfile::TempDir,
}

impl Buildah {
    fn new() -> Buildah {
        require_binary("buildah", "buildah");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("tmp")).expect("mkdir");
        Buildah { dir }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("buildah");
        command
            .args(["--storage-driver", "vfs", "--root"])
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("runroot"))
            .args(args)
            .env("BUILDAH_ISOLATION", "chroot")
            .env("STORAGE_DRIVER", "vfs")
            .env("TMPDIR", self.dir.path().join("tmp"));
        command
    }

    /// Run buildah, require success, and return its standard output, trimmed.
    fn run(&self, args: &[&str]) -> String {
        let out = self.command(args).output().expect("buildah runs");
        assert!(
            out.status.success(),
            "buildah {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("UTF-8 output")
            .trim()
            .to_string()
    }
}

impl Drop for Buildah {
    fn drop(&mut self) {
        // Working containers first (they may be mounted), then the directory.
        match self.command(&["rm", "--all"]).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "buildah rm --all: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => eprintln!("buildah rm --all: {e}"),
        }
    }
}

fn which(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| panic!("{name} is not on PATH"))
}

/// `path` inside `root`.
fn inside(root: &Path, path: impl AsRef<Path>) -> PathBuf {
    let path = path.as_ref();
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// Copy a program and every shared library `ldd` names into `root`.
fn copy_program(root: &Path, program: &Path, to: &str) {
    std::fs::copy(program, inside(root, to)).expect("copy program");
    let out = Command::new("ldd").arg(program).output().expect("ldd runs");
    assert!(out.status.success(), "ldd {}", program.display());
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "libc.so.6 => /lib/…/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)".
        let Some(library) = line.split_whitespace().find(|word| word.starts_with('/')) else {
            continue;
        };
        let target = inside(root, library);
        std::fs::create_dir_all(target.parent().expect("a library's directory")).expect("mkdir");
        std::fs::copy(library, &target).expect("copy library");
    }
}

fn write(path: PathBuf, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn symlink(target: &str, link: PathBuf) {
    std::fs::create_dir_all(link.parent().expect("parent")).expect("mkdir");
    std::os::unix::fs::symlink(target, link).expect("symlink");
}

/// How the Containerfile gets the agent.
enum Agent {
    /// The binary and dist/'s files, copied (no CAIRN_RPM).
    Binary,
    /// The cairn-agent RPM at this path (CAIRN_RPM), installed with rpm.
    Rpm(PathBuf),
}

/// The smallest base a bootc image build needs here: a shell, `install` and
/// systemctl (the host's, with their libraries) in a Fedora-like merged /usr,
/// and the updaters as a bootc base has them. bootc's timer is enabled the way a
/// distribution's presets enable it (a symlink in /etc); rpm-ostreed's timer
/// is enabled under /usr, which no `systemctl disable` can undo; Zincati is
/// absent, as on Fedora bootc, so masking it must work without a unit file.
fn base_rootfs(root: &Path) {
    for dir in ["usr/bin", "usr/lib/systemd/system", "usr/lib64", "etc"] {
        std::fs::create_dir_all(root.join(dir)).expect("mkdir");
    }
    for (link, target) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        symlink(target, root.join(link));
    }
    copy_program(root, &which("sh"), "/usr/bin/sh");
    copy_program(root, &which("install"), "/usr/bin/install");
    copy_program(root, &which("systemctl"), "/usr/bin/systemctl");
    let units = root.join("usr/lib/systemd/system");
    let service = "[Unit]\nDescription=stand-in\n[Service]\nExecStart=/usr/bin/true\n";
    let timer = "[Unit]\nDescription=stand-in\n[Timer]\nOnCalendar=daily\n[Install]\nWantedBy=timers.target\n";
    for name in ["bootc-fetch-apply-updates", "rpm-ostreed-automatic"] {
        write(units.join(format!("{name}.service")), service);
        write(units.join(format!("{name}.timer")), timer);
    }
    symlink(
        "/usr/lib/systemd/system/bootc-fetch-apply-updates.timer",
        root.join("etc/systemd/system/timers.target.wants/bootc-fetch-apply-updates.timer"),
    );
    symlink(
        "../rpm-ostreed-automatic.timer",
        units.join("timers.target.wants/rpm-ostreed-automatic.timer"),
    );
}

/// Where Fedora's rpm keeps its database; the stand-in base's rpm too.
const RPM_DBPATH: &str = "/usr/lib/sysimage/rpm";

/// The host's rpm (Debian's) in the base, set up as Fedora's is in a real one:
/// the program, its configuration and plugins, its database where Fedora has
/// it, and in that database what the base provides that `agent_rpm` needs
/// (glibc, libgcc, /bin/sh), as a real base's packages do.
fn add_rpm(root: &Path, agent_rpm: &Path, work: &Path) {
    copy_program(root, &which("rpm"), "/usr/bin/rpm");
    copy_tree(Path::new("/usr/lib/rpm"), &inside(root, "/usr/lib/rpm"));
    write(
        inside(root, "/usr/lib/rpm/macros.d/macros.dbpath"),
        &format!("%_dbpath {RPM_DBPATH}\n"),
    );
    let plugins = Path::new("/usr/lib/x86_64-linux-gnu/rpm-plugins");
    if plugins.is_dir() {
        copy_tree(plugins, &inside(root, plugins));
    }
    // Scriptlets run from /var/tmp.
    std::fs::create_dir_all(root.join("var/tmp")).expect("mkdir");

    let requires = rpm_query(
        &[
            "--query",
            "--requires",
            "--package",
            &agent_rpm.display().to_string(),
        ],
        None,
    );
    let mut spec = String::from(
        "Name: bootc-base-standin\nVersion: 1\nRelease: 1\nLicense: none\n\
         Summary: What the stand-in base provides\nBuildArch: noarch\n",
    );
    for capability in requires.lines().filter(|line| !line.starts_with("rpmlib(")) {
        spec.push_str(&format!("Provides: {capability}\n"));
    }
    spec.push_str("%description\nThe stand-in base's glibc, libgcc and shell.\n%files\n");
    let topdir = work.join("rpmbuild");
    write(topdir.join("base.spec"), &spec);
    let out = Command::new("rpmbuild")
        .args(["-bb", "--quiet", "--define"])
        .arg(format!("_topdir {}", topdir.display()))
        .args(["--define", "_build_name_fmt base.rpm"])
        .arg(topdir.join("base.spec"))
        .output()
        .expect("rpmbuild runs");
    assert!(
        out.status.success(),
        "rpmbuild of the base's package: {out:?}"
    );
    let base_rpm = topdir.join("RPMS/base.rpm").display().to_string();
    rpm_query(
        &[
            "--dbpath",
            RPM_DBPATH,
            "--install",
            "--force-debian",
            &base_rpm,
        ],
        Some(root),
    );
}

/// Copy a directory tree: directories, files and symbolic links as links.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        let file_type = entry.file_type().expect("file type");
        if file_type.is_dir() {
            copy_tree(&entry.path(), &target);
        } else if file_type.is_symlink() {
            let link = std::fs::read_link(entry.path()).expect("read link");
            std::os::unix::fs::symlink(link, &target).expect("symlink");
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// The build context as the docs lay it out, at the repository's root: dist/,
/// examples/bootc/, the agent binary where scripts/build-release writes it (or
/// the RPM where scripts/build-rpms does) and the release team's public key
/// next to the Containerfile. Returns the path of the RPM in the context.
fn build_context(context: &Path, agent: &Agent) -> Option<String> {
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    copy_tree(&repository.join("dist"), &context.join("dist"));
    copy_tree(
        &repository.join("examples/bootc"),
        &context.join("examples/bootc"),
    );
    let in_context = match agent {
        Agent::Binary => {
            let binary = context.join("target/dist/agent/cairn");
            std::fs::create_dir_all(binary.parent().expect("parent")).expect("mkdir");
            std::fs::copy(env!("CARGO_BIN_EXE_cairn"), &binary).expect("copy cairn");
            None
        }
        Agent::Rpm(rpm) => {
            let name = rpm.file_name().expect("an RPM file name");
            let relative = Path::new("target/dist/rpms").join(name);
            let target = context.join(&relative);
            std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
            std::fs::copy(rpm, &target).unwrap_or_else(|e| panic!("copy {}: {e}", rpm.display()));
            Some(relative.display().to_string())
        }
    };
    let keys = tempfile::tempdir().expect("temp dir");
    let prefix = keys.path().join("release-team");
    let out = cairn(&[
        "document",
        "keygen",
        "--output",
        &prefix.display().to_string(),
    ]);
    assert!(out.status.success(), "keygen: {out:?}");
    std::fs::copy(
        keys.path().join("release-team.pub"),
        context.join("examples/bootc/release-team.pub"),
    )
    .expect("copy key");
    in_context
}

/// Where `link` (an absolute symlink inside `root`) ends, resolved in `root`.
fn resolve_in(root: &Path, link: &Path) -> PathBuf {
    let target = std::fs::read_link(link)
        .unwrap_or_else(|e| panic!("{} is not a symlink: {e}", link.display()));
    std::fs::canonicalize(inside(root, &target))
        .unwrap_or_else(|e| panic!("{} -> {}: {e}", link.display(), target.display()))
}

/// Every `*.wants` directory under `dir` that holds a link named `unit`.
fn wanted_by(dir: &Path, unit: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "wants"))
        .map(|wants| wants.join(unit))
        .filter(|link| link.symlink_metadata().is_ok())
        .collect()
}

/// What `systemctl is-enabled` (the question the agent asks) answers in `root`.
fn is_enabled(root: &Path, unit: &str) -> String {
    let out = Command::new("systemctl")
        .arg(format!("--root={}", root.display()))
        .args(["is-enabled", unit])
        .output()
        .expect("systemctl runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn the_example_containerfile_layers_the_agent_into_a_bootc_image() {
    build_and_check(Agent::Binary);
}

/// Needs the RPM, so scripts/test runs it after scripts/build-rpms.
#[test]
#[ignore = "needs the cairn-agent RPM: CAIRN_AGENT_RPM=<path> (scripts/test sets it after scripts/build-rpms)"]
fn the_example_containerfile_installs_the_agent_rpm() {
    let rpm = std::env::var_os("CAIRN_AGENT_RPM")
        .map(PathBuf::from)
        .expect(
            "CAIRN_AGENT_RPM must name the cairn-agent RPM: scripts/build-rpms writes \
         target/dist/rpms/cairn-agent-VERSION-1.x86_64.rpm",
        );
    assert!(
        rpm.is_file(),
        "CAIRN_AGENT_RPM: {} is no file",
        rpm.display()
    );
    build_and_check(Agent::Rpm(rpm));
}

fn build_and_check(agent: Agent) {
    require_binary("systemctl", "systemd");
    require_binary("ldd", "libc-bin");
    require_binary("install", "coreutils");
    if let Agent::Rpm(_) = agent {
        require_binary("rpm", "rpm");
        require_binary("rpmbuild", "rpm");
    }
    let buildah = Buildah::new();
    let work = tempfile::tempdir().expect("temp dir");

    let rootfs = work.path().join("rootfs");
    base_rootfs(&rootfs);
    if let Agent::Rpm(rpm) = &agent {
        add_rpm(&rootfs, rpm, work.path());
    }
    let base = buildah.run(&["from", "scratch"]);
    buildah.run(&["copy", &base, &rootfs.display().to_string(), "/"]);
    buildah.run(&[
        "config",
        "--label",
        "containers.bootc=1",
        "--label",
        "ostree.bootable=1",
        &base,
    ]);
    buildah.run(&["commit", "--quiet", &base, BASE_IMAGE]);

    let context = work.path().join("context");
    let rpm_in_context = build_context(&context, &agent);
    let containerfile = context
        .join("examples/bootc/Containerfile")
        .display()
        .to_string();
    let base_arg = format!("BASE={BASE_IMAGE}");
    let mut build = vec![
        "build",
        "--isolation",
        "chroot",
        "--pull=never",
        "--file",
        &containerfile,
        "--build-arg",
        &base_arg,
    ];
    let rpm_arg = rpm_in_context.map(|rpm| format!("CAIRN_RPM={rpm}"));
    if let Some(rpm_arg) = &rpm_arg {
        build.extend(["--build-arg", rpm_arg]);
    }
    let context_arg = context.display().to_string();
    build.extend(["--tag", IMAGE, &context_arg]);
    buildah.run(&build);

    // The labels that make the result a bootc image, inherited from the base.
    let inspect: serde_json::Value =
        serde_json::from_str(&buildah.run(&["inspect", "--type", "image", IMAGE]))
            .expect("buildah inspect prints JSON");
    let labels = &inspect["OCIv1"]["config"]["Labels"];
    assert_eq!(labels["containers.bootc"], "1", "{labels}");
    assert_eq!(labels["ostree.bootable"], "1", "{labels}");

    let container = buildah.run(&["from", "--pull=never", IMAGE]);
    let image = PathBuf::from(buildah.run(&["mount", &container]));

    // The agent build and its units are where docs/bootc-image.md says.
    match &agent {
        Agent::Binary => {
            let installed = std::fs::read(image.join("usr/bin/cairn")).expect("/usr/bin/cairn");
            let built = std::fs::read(env!("CARGO_BIN_EXE_cairn")).expect("the cairn binary");
            assert!(
                installed == built,
                "/usr/bin/cairn is not the binary copied in"
            );
        }
        Agent::Rpm(rpm) => {
            // Installed by rpm: in the image's database, every file as the package has it.
            let name = rpm_query(&["--query", "--package", &rpm.display().to_string()], None);
            let in_image = |args: &[&str]| {
                let mut args = args.to_vec();
                args.extend(["--dbpath", RPM_DBPATH]);
                rpm_query(&args, Some(&image))
            };
            assert_eq!(in_image(&["--query", "cairn-agent"]), name);
            assert_eq!(in_image(&["--verify", "cairn-agent"]), "");
            assert_eq!(
                std::fs::metadata(image.join("usr/bin/cairn"))
                    .expect("/usr/bin/cairn")
                    .permissions()
                    .mode()
                    & 0o7777,
                0o755
            );
        }
    }
    let etc_units = image.join("etc/systemd/system");
    for unit in AGENT_UNITS {
        let path = image.join("usr/lib/systemd/system").join(unit);
        assert!(path.is_file(), "{} missing", path.display());
        // Enabled by the preset: its [Install] section's symlink, to the unit.
        let links = wanted_by(&etc_units, unit);
        assert_eq!(
            links,
            vec![etc_units.join("multi-user.target.wants").join(unit)],
            "{unit}"
        );
        assert_eq!(
            resolve_in(&image, &links[0]),
            std::fs::canonicalize(&path).expect("unit"),
            "{unit}"
        );
        assert_eq!(is_enabled(&image, unit), "enabled", "{unit}");
    }
    let preset = image.join("usr/lib/systemd/system-preset/80-cairn.preset");
    assert!(preset.is_file(), "{} missing", preset.display());

    // The other updaters: masked, and no symlink in /etc still wants them.
    for unit in OTHER_UPDATERS {
        let mask = etc_units.join(unit);
        assert_eq!(
            std::fs::read_link(&mask).ok(),
            Some(PathBuf::from("/dev/null")),
            "{unit} is not masked"
        );
        assert_eq!(wanted_by(&etc_units, unit), Vec::<PathBuf>::new(), "{unit}");
        assert_eq!(is_enabled(&image, unit), "masked", "{unit}");
    }

    // The configuration checks on the image's own files, with its own key.
    let out = cairn(&["config", "check", "--root", &image.display().to_string()]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "config check failed: {stderr}");
    assert_eq!(stderr, "", "no warning expected");
    assert!(
        stdout.contains("/usr/lib/cairn/keys/release-team.pub")
            && stdout.contains("50-image.toml")
            && stdout.ends_with("ok\n"),
        "{stdout}"
    );

    buildah.run(&["umount", &container]);
}

/// Run rpm (on the image's root and database when given), require success,
/// and return its standard output, trimmed.
fn rpm_query(args: &[&str], root: Option<&Path>) -> String {
    let mut command = Command::new("rpm");
    if let Some(root) = root {
        // Where rpm in the build (Debian's, run as root) kept its database.
        command.arg("--root").arg(root);
    }
    let out = command.args(args).output().expect("rpm runs");
    assert!(
        out.status.success(),
        "rpm {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8 output")
        .trim()
        .to_string()
}

#[test]
fn the_docs_show_the_example_containerfile_as_it_is() {
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let containerfile =
        std::fs::read_to_string(repository.join("examples/bootc/Containerfile")).expect("read");
    let docs = std::fs::read_to_string(repository.join("docs/bootc-image.md")).expect("read");
    assert!(
        docs.contains(&format!("```dockerfile\n{containerfile}```\n")),
        "docs/bootc-image.md does not show examples/bootc/Containerfile as it is"
    );
}
