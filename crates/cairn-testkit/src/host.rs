//! A stand-in for a booted bootc host: state in a directory, answered by the
//! `fake-bootc` executable with bootc's command lines, exit codes, stderr style
//! and status JSON. A "reboot" is a harness call.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One deployment of the stand-in.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FakeDeployment {
    /// Manifest digest; on a host booted from ostree commits, the commit checksum.
    pub digest: String,
    /// Version label.
    pub version: Option<String>,
    /// The image reference it came from.
    pub image: String,
    /// Staged with finalization locked.
    #[serde(default)]
    pub download_only: bool,
}

/// An ostree commit the stand-in's remote has, for a host booted from commits.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FakeCommit {
    /// Its checksum.
    pub checksum: String,
    /// Its `version` metadata.
    pub version: String,
    /// Its timestamp, in Unix seconds (what `--disallow-downgrade` compares).
    pub timestamp: i64,
    /// In the history of the origin's branch: what rpm-ostree's branch check
    /// (skipped with `--skip-branch-check`) looks for.
    pub on_branch: bool,
}

/// The stand-in's state file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FakeState {
    /// The bootc version it pretends to be.
    pub version: String,
    /// Registries reached over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// `spec.image.image`.
    pub spec_image: String,
    /// `spec.image.signature`: `containerPolicy` or none.
    pub container_policy: bool,
    /// Booted.
    pub booted: Option<FakeDeployment>,
    /// Staged.
    pub staged: Option<FakeDeployment>,
    /// Rollback.
    pub rollback: Option<FakeDeployment>,
    /// PID of a running `--apply`, which blocks like bootc until "reboot".
    pub apply_pid: Option<u32>,
    /// Every command line received.
    pub calls: Vec<String>,
    /// rpm-ostree's registered update driver.
    #[serde(default)]
    pub update_driver: Option<String>,
    /// The systemd unit the driver registered from (rpm-ostree records the
    /// caller's unit, and lets only that unit deploy without `--bypass-driver`).
    #[serde(default)]
    pub update_driver_unit: Option<String>,
    /// Stop before carrying out a command line that starts with this
    /// (`status`, `switch --download-only`, …) until [`FakeHost::resume`], so
    /// a test can kill the agent mid-command.
    #[serde(default)]
    pub pause_before: Option<String>,
    /// Fail command lines that start with this (`rollback`, `switch`, …) as
    /// the tool does: exit 1 with `error: <message>`.
    #[serde(default)]
    pub fail: Option<(String, String)>,
    /// Reject command lines that start with this as a usage error (exit 2),
    /// whatever the help says.
    #[serde(default)]
    pub fail_usage: Option<String>,
    /// `bootc switch` accepts `--download-only` (and lists it in `switch
    /// --help`). Unset: as bootc releases do, from 1.17 on.
    #[serde(default)]
    pub switch_download_only: Option<bool>,
    /// On an rpm-ostree host booted from ostree commits: the branch the
    /// deployments follow (`fedora:fedora/x86_64/coreos/stable`). Unset: the
    /// host boots from images.
    #[serde(default)]
    pub origin: Option<String>,
    /// The commits the ostree remote has, for a host booted from commits.
    #[serde(default)]
    pub commits: Vec<FakeCommit>,
    /// The host's OCI architecture (`amd64`, `arm64`): which image of an
    /// index it boots. Unset: `amd64`.
    #[serde(default)]
    pub arch: Option<String>,
    /// What happened to the deployments, in order: `staged <digest>` for
    /// each staging that succeeded, `discarded <digest>` when rpm-ostree
    /// dropped it, `booted <digest>` for a healthy reboot into it and
    /// `boot-failed <digest>` for a failed one (the harness's reboots). A
    /// soak judges the host by this log.
    #[serde(default)]
    pub events: Vec<String>,
}

impl FakeState {
    /// The host's OCI architecture.
    pub fn arch(&self) -> &str {
        self.arch.as_deref().unwrap_or("amd64")
    }

    /// The remote's commit with this checksum.
    pub fn commit(&self, checksum: &str) -> Option<&FakeCommit> {
        self.commits.iter().find(|c| c.checksum == checksum)
    }
}

impl FakeState {
    /// Whether this stand-in's `switch` accepts `--download-only`.
    pub fn accepts_switch_download_only(&self) -> bool {
        self.switch_download_only.unwrap_or_else(|| {
            let mut parts = self
                .version
                .split('.')
                .map(|p| p.parse::<u32>().unwrap_or(0));
            let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
            (major, minor) >= (1, 17)
        })
    }
}

/// The file a paused stand-in creates (holding its PID) and waits to see removed.
pub fn pause_marker(dir: &Path) -> PathBuf {
    dir.join("paused")
}

/// An image as read from the registry: manifest digest, manifest and config.
struct ReadImage {
    digest: String,
    manifest: serde_json::Value,
    config: serde_json::Value,
}

/// Whether a fetched manifest is an OCI index or a Docker manifest list.
fn is_index(media_type: &str, manifest: &serde_json::Value) -> bool {
    let declared = manifest["mediaType"].as_str().unwrap_or_default();
    let media_type = if media_type.is_empty() {
        declared
    } else {
        media_type
    };
    media_type == cairn_oci::client::OCI_INDEX
        || media_type == cairn_oci::client::DOCKER_LIST
        || (media_type.is_empty() && manifest["manifests"].is_array())
}

/// The digest of the image an index holds for Linux on `arch`, as bootc
/// picks it: the first entry whose platform matches.
fn index_child(index: &serde_json::Value, arch: &str) -> Option<String> {
    index["manifests"]
        .as_array()?
        .iter()
        .find(|entry| {
            entry["platform"]["os"].as_str() == Some("linux")
                && entry["platform"]["architecture"].as_str() == Some(arch)
        })
        .and_then(|entry| entry["digest"].as_str())
        .map(str::to_string)
}

/// Read `repo@digest` (or `repo:tag`) from the registry. A reference to an
/// index reads the host architecture's image in it, and its digest is that
/// image's, as bootc reports it.
fn read_image(state: &FakeState, reference: &str) -> Result<ReadImage, String> {
    let image = cairn_oci::ImageRef::parse(reference).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let client = cairn_oci::RegistryClient::new(cairn_oci::ClientOptions {
            insecure_registries: state.insecure_registries.clone(),
            retries: 0,
            ..cairn_oci::ClientOptions::default()
        })
        .map_err(|e| e.to_string())?;
        let store = cairn_oci::Store::registry(client, image.repository.clone());
        let mut fetched = store
            .get_manifest(image.reference())
            .await
            .map_err(|e| e.to_string())?;
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&fetched.bytes).map_err(|e| e.to_string())?;
        if is_index(&fetched.media_type, &manifest) {
            let arch = state.arch();
            let child = index_child(&manifest, arch).ok_or_else(|| {
                format!("no image for linux/{arch} in the index {}", fetched.digest)
            })?;
            fetched = store
                .get_manifest(&child)
                .await
                .map_err(|e| e.to_string())?;
            manifest = serde_json::from_slice(&fetched.bytes).map_err(|e| e.to_string())?;
        }
        let config = manifest["config"]["digest"]
            .as_str()
            .ok_or_else(|| format!("the manifest {} names no config", fetched.digest))?
            .to_string();
        let config = store
            .get_blob(&config, 1 << 20)
            .await
            .map_err(|e| e.to_string())?;
        let config: serde_json::Value =
            serde_json::from_slice(&config).map_err(|e| e.to_string())?;
        Ok(ReadImage {
            digest: fetched.digest,
            manifest,
            config,
        })
    })
}

/// Resolve `repo@digest` (or `repo:tag`) in the registry: digest and version label.
pub fn resolve_digest(
    state: &FakeState,
    reference: &str,
) -> Result<(String, Option<String>), String> {
    let image = read_image(state, reference)?;
    let version = image.config["config"]["Labels"]["org.opencontainers.image.version"]
        .as_str()
        .map(str::to_string);
    Ok((image.digest, version))
}

/// The timestamp ostree-ext gives the commit it imports an image as (and so
/// what `rpm-ostree deploy --disallow-downgrade` compares): the manifest's
/// `org.opencontainers.image.created` annotation, else the config's
/// `created`, in Unix seconds. `None` when neither parses: ostree-ext then
/// uses the import time.
pub fn image_timestamp(state: &FakeState, reference: &str) -> Result<Option<i64>, String> {
    let image = read_image(state, reference)?;
    let parse = |value: &serde_json::Value| {
        value
            .as_str()
            .and_then(|text| text.parse::<jiff::Timestamp>().ok())
            .map(|t| t.as_second())
    };
    Ok(
        parse(&image.manifest["annotations"]["org.opencontainers.image.created"])
            .or_else(|| parse(&image.config["created"])),
    )
}

/// The ostree checksum the stand-in gives a deployment of `digest`: its hex.
pub fn checksum_of(digest: &str) -> String {
    digest.trim_start_matches("sha256:").to_string()
}

/// A deployment's directory, as a real host has it under `/sysroot`:
/// `<host>/sysroot/ostree/deploy/default/deploy/<checksum>.0`.
pub fn deployment_dir(dir: &Path, digest: &str) -> PathBuf {
    dir.join("sysroot/ostree/deploy/default/deploy")
        .join(format!("{}.0", checksum_of(digest)))
}

/// Check the image out into its deployment directory, as staging does:
/// every layer (plain tar, as the test images are) unpacked in order.
pub fn check_out(
    dir: &Path,
    state: &FakeState,
    reference: &str,
    digest: &str,
) -> Result<(), String> {
    let image = cairn_oci::ImageRef::parse(reference).map_err(|e| e.to_string())?;
    let target = deployment_dir(dir, digest);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let layers = runtime.block_on(async {
        let client = cairn_oci::RegistryClient::new(cairn_oci::ClientOptions {
            insecure_registries: state.insecure_registries.clone(),
            retries: 0,
            ..cairn_oci::ClientOptions::default()
        })
        .map_err(|e| e.to_string())?;
        let store = cairn_oci::Store::registry(client, image.repository.clone());
        let manifest = store
            .get_manifest(digest)
            .await
            .map_err(|e| e.to_string())?;
        let value: serde_json::Value =
            serde_json::from_slice(&manifest.bytes).map_err(|e| e.to_string())?;
        let mut layers = Vec::new();
        for layer in value["layers"].as_array().into_iter().flatten() {
            let digest = layer["digest"].as_str().unwrap_or_default();
            layers.push(
                store
                    .get_blob(digest, 64 << 20)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        Ok::<_, String>(layers)
    })?;
    std::fs::create_dir_all(&target).map_err(|e| e.to_string())?;
    for layer in layers {
        tar::Archive::new(&layer[..])
            .unpack(&target)
            .map_err(|e| format!("unpacking a layer into {}: {e}", target.display()))?;
    }
    Ok(())
}

/// The start of every stand-in command: record the command line, then wait
/// while the test pauses this subcommand. Returns the host state to act on.
pub fn begin_command(dir: &Path, args: &[String]) -> FakeState {
    let mut state = modify_state(dir, |state| {
        state.calls.push(args.join(" "));
        state.clone()
    });
    if state
        .pause_before
        .as_ref()
        .is_some_and(|prefix| args.join(" ").starts_with(prefix.as_str()))
    {
        let marker = pause_marker(dir);
        let _ = std::fs::write(&marker, std::process::id().to_string());
        while marker.exists() {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // The test may have changed the host meanwhile.
        state = read_state(dir);
    }
    state
}

/// What `bootc ... --apply` and `rpm-ostree finalize-deployment` do: never
/// return; the harness's "reboot" kills the process.
pub fn block_until_rebooted(dir: &Path, mut state: FakeState) -> ! {
    state.apply_pid = Some(std::process::id());
    save_host(dir, &state, None);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// A host state booted on `booted` (digest, version) from `image`.
fn booted_state(
    tool_version: &str,
    image: &str,
    booted: (&str, &str),
    insecure: &[String],
    container_policy: bool,
) -> FakeState {
    FakeState {
        version: tool_version.to_string(),
        insecure_registries: insecure.to_vec(),
        spec_image: image.to_string(),
        container_policy,
        booted: Some(FakeDeployment {
            digest: booted.0.to_string(),
            version: Some(booted.1.to_string()),
            image: image.to_string(),
            download_only: false,
        }),
        ..FakeState::default()
    }
}

/// The state file inside a stand-in directory.
pub fn state_path(dir: &Path) -> PathBuf {
    dir.join("fake-bootc.json")
}

/// Read the stand-in's state.
pub fn read_state(dir: &Path) -> FakeState {
    let bytes = std::fs::read(state_path(dir)).unwrap_or_else(|e| panic!("fake host state: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("fake host state: {e}"))
}

/// Change the stand-in's state under its lock: the harness and stand-in
/// processes (several at once when an agent is killed mid-command) never
/// lose each other's changes.
pub fn modify_state<T>(dir: &Path, change: impl FnOnce(&mut FakeState) -> T) -> T {
    let path = dir.join("fake-bootc.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("locking {}: {e}", path.display()));
    let mut state = read_state(dir);
    let answer = change(&mut state);
    write_state(dir, &state);
    answer
}

/// Save what a stand-in command did to the host (`state`, read when the
/// command began), keeping what others changed since: the calls and events
/// logged and the harness's faults. `event` is added to the log.
pub fn save_host(dir: &Path, state: &FakeState, event: Option<String>) {
    modify_state(dir, |fresh| {
        let mut merged = state.clone();
        merged.calls = std::mem::take(&mut fresh.calls);
        merged.events = std::mem::take(&mut fresh.events);
        merged.events.extend(event);
        merged.fail = fresh.fail.take();
        merged.fail_usage = fresh.fail_usage.take();
        merged.pause_before = fresh.pause_before.take();
        *fresh = merged;
    });
}

/// Write the stand-in's state; by rename, so that a test reading it while
/// the stand-in runs never sees half a file.
pub fn write_state(dir: &Path, state: &FakeState) {
    let bytes = serde_json::to_vec_pretty(state).unwrap_or_else(|e| panic!("fake host state: {e}"));
    let temporary = dir.join(format!("fake-bootc.json.{}", std::process::id()));
    std::fs::write(&temporary, bytes).unwrap_or_else(|e| panic!("fake host state: {e}"));
    std::fs::rename(&temporary, state_path(dir)).unwrap_or_else(|e| panic!("fake host state: {e}"));
}

/// Where the `fake-bootc` executable is: `$CAIRN_FAKE_BOOTC`, or built
/// (once per test process, if missing or stale) next to the running test in
/// Cargo's target directory; see [`crate::standins`].
pub fn fake_bootc_binary() -> PathBuf {
    crate::standins::locate("fake-bootc", "CAIRN_FAKE_BOOTC")
}

/// Where the `fake-systemd-run` executable is: `$CAIRN_FAKE_SYSTEMD_RUN`, or built as above.
pub fn fake_systemd_run_binary() -> PathBuf {
    crate::standins::locate("fake-systemd-run", "CAIRN_FAKE_SYSTEMD_RUN")
}

/// Where the `fake-rpm-ostree` executable is: `$CAIRN_FAKE_RPM_OSTREE`, or built as above.
pub fn fake_rpm_ostree_binary() -> PathBuf {
    crate::standins::locate("fake-rpm-ostree", "CAIRN_FAKE_RPM_OSTREE")
}

/// What a [`FakeHost::timer_run`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upgraded {
    /// The upgrade finished without rebooting.
    NoUpdate,
    /// The upgrade rebooted the host into this deployment.
    Rebooted {
        /// The booted manifest digest.
        digest: String,
        /// Its version label.
        version: Option<String>,
    },
}

/// A stand-in host for a test.
#[derive(Debug)]
pub struct FakeHost {
    /// Its directory.
    pub dir: PathBuf,
    /// The executable the agent calls as `bootc`.
    pub program: PathBuf,
}

impl FakeHost {
    /// A host booted on `booted` (digest, version), following `image`.
    pub fn new(
        dir: &Path,
        bootc_version: &str,
        image: &str,
        booted: (&str, &str),
        insecure: &[String],
        container_policy: bool,
    ) -> FakeHost {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
        let state = booted_state(bootc_version, image, booted, insecure, container_policy);
        write_state(dir, &state);
        FakeHost::wrap(dir, "bootc", &fake_bootc_binary())
    }

    /// An rpm-ostree host booted on `booted` (digest, version) from `image`,
    /// verified by signature policy when `signed` (an `ostree-image-signed:`
    /// origin, which bootc cannot drive).
    pub fn rpm_ostree(
        dir: &Path,
        image: &str,
        booted: (&str, &str),
        insecure: &[String],
        signed: bool,
    ) -> FakeHost {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
        let state = booted_state("2025.10", image, booted, insecure, signed);
        write_state(dir, &state);
        FakeHost::wrap(dir, "rpm-ostree", &fake_rpm_ostree_binary())
    }

    /// An rpm-ostree host booted from the ostree commit `booted` of `commits`
    /// (its remote), following the branch `origin`
    /// (`fedora:fedora/x86_64/coreos/stable`), as Fedora CoreOS hosts that
    /// Zincati updates are.
    pub fn rpm_ostree_commits(
        dir: &Path,
        origin: &str,
        booted: &str,
        commits: Vec<FakeCommit>,
    ) -> FakeHost {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
        let version = commits
            .iter()
            .find(|c| c.checksum == booted)
            .map(|c| c.version.clone())
            .unwrap_or_else(|| panic!("the booted commit {booted} is not among the commits"));
        let mut state = booted_state("2025.10", origin, (booted, &version), &[], false);
        state.origin = Some(origin.to_string());
        state.commits = commits;
        write_state(dir, &state);
        FakeHost::wrap(dir, "rpm-ostree", &fake_rpm_ostree_binary())
    }

    /// Each host gets a wrapper naming its own state directory.
    fn wrap(dir: &Path, name: &str, binary: &Path) -> FakeHost {
        let program = dir.join(name);
        let binary = binary.display();
        std::fs::write(
            &program,
            format!(
                "#!/bin/sh\nexec env CAIRN_FAKE_HOST='{}' '{binary}' \"$@\"\n",
                dir.display()
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
        FakeHost {
            dir: dir.to_path_buf(),
            program,
        }
    }

    /// The current state.
    pub fn state(&self) -> FakeState {
        read_state(&self.dir)
    }

    /// Make the next command line that starts with `prefix` wait until
    /// [`FakeHost::resume`].
    pub fn pause_before(&self, prefix: &str) {
        modify_state(&self.dir, |state| {
            state.pause_before = Some(prefix.to_string())
        });
    }

    /// Pretend to be bootc `version`, whose `switch` does or does not accept
    /// `--download-only`, whatever the version would suggest.
    pub fn set_bootc(&self, version: &str, switch_download_only: bool) {
        modify_state(&self.dir, |state| {
            state.version = version.to_string();
            state.switch_download_only = Some(switch_download_only);
        });
    }

    /// Make every later command line that starts with `prefix` fail with
    /// `message`, as the tool does.
    pub fn fail(&self, prefix: &str, message: &str) {
        modify_state(&self.dir, |state| {
            state.fail = Some((prefix.to_string(), message.to_string()));
        });
    }

    /// Make every later command line that starts with `prefix` a usage
    /// error (exit 2), as clap reports an argument it does not know.
    pub fn fail_usage(&self, prefix: &str) {
        modify_state(&self.dir, |state| {
            state.fail_usage = Some(prefix.to_string())
        });
    }

    /// The PID of a stand-in process waiting at the pause, if one is.
    pub fn paused_pid(&self) -> Option<u32> {
        std::fs::read_to_string(pause_marker(&self.dir))
            .ok()
            .and_then(|text| text.trim().parse().ok())
    }

    /// Let a paused command go on, and pause no more.
    pub fn resume(&self) {
        modify_state(&self.dir, |state| state.pause_before = None);
        let _ = std::fs::remove_file(pause_marker(&self.dir));
    }

    /// Wait until a command that reboots (`--apply`, `finalize-deployment`,
    /// `rollback --apply`) is blocked in the stand-in, as it is until the reboot.
    pub async fn wait_for_apply(&self) {
        for _ in 0..400 {
            if self.state().apply_pid.is_some() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("no command reached the reboot: {:?}", self.state().calls);
    }

    /// Let `child`, a `cairn` process that finalizes, reach its reboot;
    /// reboot (healthy or not); and collect its output.
    pub async fn reboot_under(
        &self,
        child: std::process::Child,
        healthy: bool,
    ) -> std::process::Output {
        self.wait_for_apply().await;
        self.reboot(healthy);
        tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap_or_else(|e| panic!("joining {e}"))
            .unwrap_or_else(|e| panic!("waiting for cairn: {e}"))
    }

    /// The booted deployment.
    pub fn booted(&self) -> Option<FakeDeployment> {
        self.state().booted
    }

    /// Make the host boot `arch`'s image (`amd64`, `arm64`) out of an index.
    pub fn set_arch(&self, arch: &str) {
        modify_state(&self.dir, |state| state.arch = Some(arch.to_string()));
    }

    /// What the stock `bootc-fetch-apply-updates.service` does when its
    /// timer fires: `bootc upgrade --apply --quiet`. When that blocks to
    /// reboot, the host reboots (healthy) and the call returns what it booted.
    /// Panics when the upgrade fails, as the unit would.
    pub async fn timer_run(&self) -> Upgraded {
        let mut child = std::process::Command::new(&self.program)
            .args(["upgrade", "--apply", "--quiet"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.program.display()));
        // The wrapper script execs the stand-in, so the PIDs agree.
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let exited = child
                .try_wait()
                .unwrap_or_else(|e| panic!("waiting for bootc upgrade --apply: {e}"));
            if exited.is_some() {
                let output = tokio::task::spawn_blocking(move || child.wait_with_output())
                    .await
                    .unwrap_or_else(|e| panic!("joining {e}"))
                    .unwrap_or_else(|e| panic!("waiting for bootc upgrade --apply: {e}"));
                assert!(
                    output.status.success(),
                    "bootc upgrade --apply --quiet failed ({}): {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                );
                return Upgraded::NoUpdate;
            }
            if self.state().apply_pid == Some(pid) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "bootc upgrade --apply --quiet neither finished nor reached the reboot: {:?}",
                self.state().calls
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        self.reboot(true);
        tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap_or_else(|e| panic!("joining {e}"))
            .unwrap_or_else(|e| panic!("reaping bootc upgrade --apply: {e}"));
        let booted = self
            .booted()
            .unwrap_or_else(|| panic!("the host booted nothing: {:?}", self.state()));
        Upgraded::Rebooted {
            digest: booted.digest,
            version: booted.version,
        }
    }

    /// Reboot: the running `--apply` dies with the shutdown. A healthy boot
    /// makes the staged deployment the booted one; a failed boot (greenboot
    /// rolling back) leaves the old one booted and the new one as rollback.
    pub fn reboot(&self, healthy: bool) {
        // The new boot first: an agent that outlives the killed `--apply`
        // (a test's update-now) may ask for status at once.
        let apply = modify_state(&self.dir, |state| {
            let apply = state.apply_pid.take();
            if let Some(mut staged) = state.staged.take() {
                staged.download_only = false;
                let word = if healthy { "booted" } else { "boot-failed" };
                state.events.push(format!("{word} {}", staged.digest));
                if healthy {
                    state.rollback = state.booted.replace(staged);
                } else {
                    state.rollback = Some(staged);
                }
            }
            apply
        });
        if let Some(pid) = apply {
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
    }
}
