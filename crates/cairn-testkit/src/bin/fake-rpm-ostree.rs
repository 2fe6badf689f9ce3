//! `fake-rpm-ostree`: answers the rpm-ostree command lines Cairn uses, with
//! rpm-ostree's exit codes (0, or 1 with `error: …`) and `status --json`
//! shape, on the same host state as `fake-bootc` (`$CAIRN_FAKE_HOST`). The
//! origin is an ostree container reference, `ostree-image-signed:docker://…`
//! when the host verifies signatures. `deploy --disallow-downgrade` refuses an
//! image created before the current deployment's, as rpm-ostree does.
//!
//! A host booted from ostree commits (`FakeState::origin` set) reports the
//! branch as each deployment's `origin`, with the commit's checksum, version
//! and timestamp, and deploys a commit of its remote named by
//! `revision=<checksum>` (or a bare checksum): without `--skip-branch-check`
//! only a commit in the branch's history is accepted, and
//! `--disallow-downgrade` compares commit timestamps, as rpm-ostree does.
//!
//! A registered update driver is tied to the caller's systemd unit
//! (`$CAIRN_FAKE_UNIT`, set by `fake-systemd-run`; a command started
//! directly runs in the agent's own `cairn-agent.service`): `deploy` from any
//! other unit is refused unless it says `--bypass-driver`, as rpm-ostree does.

use cairn_testkit::host::{
    FakeCommit, FakeDeployment, FakeState, begin_command, block_until_rebooted, check_out,
    checksum_of, image_timestamp, resolve_digest, save_host,
};
use std::path::PathBuf;
use std::process::ExitCode;

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(1)
}

fn origin(state: &FakeState, image: &str) -> String {
    if state.container_policy {
        format!("ostree-image-signed:docker://{image}")
    } else {
        format!("ostree-unverified-registry:{image}")
    }
}

/// A deployment as `rpm-ostree status --json` lists it: `finalization-locked`
/// appears only when true, as rpm-ostree writes it.
fn deployment(
    state: &FakeState,
    d: &FakeDeployment,
    serial: u32,
    booted: bool,
    staged: bool,
) -> serde_json::Value {
    let mut value = deployment_fields(state, d, serial, booted, staged);
    if let Some(fields) = value.as_object_mut()
        && fields.get("finalization-locked") == Some(&serde_json::Value::Bool(false))
    {
        fields.remove("finalization-locked");
    }
    value
}

fn deployment_fields(
    state: &FakeState,
    d: &FakeDeployment,
    serial: u32,
    booted: bool,
    staged: bool,
) -> serde_json::Value {
    if let Some(origin) = &state.origin {
        // A deployment of a commit: its origin is the branch, and there is
        // no container reference.
        let timestamp = state.commit(&d.digest).map(|c| c.timestamp);
        return serde_json::json!({
            "id": format!("fedora-coreos-{}.{serial}", d.digest),
            "osname": "fedora-coreos",
            "checksum": d.digest,
            "serial": serial,
            "booted": booted,
            "staged": staged,
            "finalization-locked": staged && d.download_only,
            "version": d.version,
            "timestamp": timestamp,
            "origin": origin,
            "pinned": false,
            "unlocked": "none",
            "gpg-enabled": true,
            "packages": [],
            "requested-packages": [],
            "base-removals": [],
            "regenerate-initramfs": false,
        });
    }
    serde_json::json!({
        "id": format!("default-{}.{serial}", &d.digest.trim_start_matches("sha256:")[..12.min(d.digest.len())]),
        "osname": "default",
        "checksum": checksum_of(&d.digest),
        "serial": serial,
        "booted": booted,
        "staged": staged,
        "finalization-locked": staged && d.download_only,
        "version": d.version,
        "container-image-reference": origin(state, &d.image),
        "container-image-reference-digest": d.digest,
    })
}

fn status(state: &FakeState) -> String {
    let mut deployments = Vec::new();
    if let Some(d) = &state.staged {
        deployments.push(deployment(state, d, 0, false, true));
    }
    if let Some(d) = &state.booted {
        deployments.push(deployment(state, d, 0, true, false));
    }
    if let Some(d) = &state.rollback {
        deployments.push(deployment(state, d, 1, false, false));
    }
    serde_json::json!({
        "deployments": deployments,
        "transaction": null,
        "cached-update": null,
        "update-driver": state.update_driver.as_ref().map(|name| serde_json::json!({
            "driver-name": name,
            "driver-sd-unit": state.update_driver_unit.as_deref().unwrap_or("cairn-agent.service"),
        })),
    })
    .to_string()
}

/// rpm-ostree's downgrade check for a container deployment: the new commit's
/// timestamp (the image's creation time) must not be older than the current
/// base's, the pending deployment's if there is one, else the booted one's.
/// Equal times pass; so does the same commit.
fn check_timestamps(state: &FakeState, repository: &str, digest: &str) -> Result<(), String> {
    let Some(current) = state.staged.as_ref().or(state.booted.as_ref()) else {
        return Ok(());
    };
    if current.digest == digest {
        return Ok(());
    }
    let now = jiff::Timestamp::now().as_second();
    let stamp = |digest: &str| -> Result<i64, String> {
        Ok(image_timestamp(state, &format!("{repository}@{digest}"))?.unwrap_or(now))
    };
    let (current_time, new_time) = (stamp(&current.digest)?, stamp(digest)?);
    if new_time >= current_time {
        return Ok(());
    }
    Err(older_than(
        (&checksum_of(digest), new_time),
        (&checksum_of(&current.digest), current_time),
    ))
}

/// How ostree shows a commit timestamp in its downgrade message.
fn show_time(second: i64) -> String {
    jiff::Timestamp::from_second(second)
        .map(|t| t.strftime("%a %b %e %H:%M:%S %Y").to_string())
        .unwrap_or_else(|_| second.to_string())
}

/// The downgrade refusal rpm-ostree passes on from ostree.
fn older_than(new: (&str, i64), current: (&str, i64)) -> String {
    format!(
        "While checking against deployment timestamp: Upgrade target revision '{}' with timestamp '{}' is chronologically older than current revision '{}' with timestamp '{}'; use --allow-downgrade to permit",
        new.0,
        show_time(new.1),
        current.0,
        show_time(current.1)
    )
}

/// The commit a deploy names, as rpm-ostree reads its REVISION: the text
/// after `revision=`, or the whole argument, is a checksum when it is 64
/// lower-case hex digits and a version otherwise (`version=` says so). A
/// version is looked up in the branch's history.
fn commit_of<'a>(
    state: &'a FakeState,
    origin: &str,
    revision: &str,
) -> Result<&'a FakeCommit, String> {
    let is_checksum = |text: &str| {
        text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let named = revision.strip_prefix("revision=").unwrap_or(revision);
    if is_checksum(named) && !revision.starts_with("version=") {
        return state
            .commit(named)
            .ok_or_else(|| format!("No such metadata object {named}.commit"));
    }
    let version = named.strip_prefix("version=").unwrap_or(named);
    state
        .commits
        .iter()
        .find(|c| c.on_branch && c.version == version)
        .ok_or_else(|| format!("Version {version} not found in {origin}"))
}

/// `deploy` on a host booted from commits.
fn deploy_commit(
    dir: &std::path::Path,
    mut state: FakeState,
    origin: &str,
    revision: &str,
    options: &[&str],
) -> ExitCode {
    let commit = match commit_of(&state, origin, revision) {
        Ok(commit) => commit.clone(),
        Err(message) => return fail(&message),
    };
    // A checksum must be in the branch's history unless the check is skipped.
    let by_checksum = !revision.starts_with("version=");
    if by_checksum && !options.contains(&"--skip-branch-check") && !commit.on_branch {
        return fail(&format!(
            "Checksum {} not found in {origin}",
            commit.checksum
        ));
    }
    if options.contains(&"--disallow-downgrade")
        && let Some(current) = state.staged.as_ref().or(state.booted.as_ref())
        && current.digest != commit.checksum
    {
        // rpm-ostree reads the current commit from the local repository,
        // where it always is; a stand-in without it was set up wrong.
        let Some(current_time) = state.commit(&current.digest).map(|c| c.timestamp) else {
            return fail(&format!(
                "stand-in: the current commit {} is not among the stand-in's commits",
                current.digest
            ));
        };
        if commit.timestamp < current_time {
            return fail(&older_than(
                (&commit.checksum, commit.timestamp),
                (&current.digest, current_time),
            ));
        }
    }
    state.staged = Some(FakeDeployment {
        digest: commit.checksum.clone(),
        version: Some(commit.version.clone()),
        image: origin.to_string(),
        download_only: options.contains(&"--lock-finalization"),
    });
    save_host(dir, &state, Some(format!("staged {}", commit.checksum)));
    ExitCode::SUCCESS
}

/// rpm-ostree's refusal when a driver registered from another unit that is
/// still active. A transient `run-u*` unit is gone once its command ended
/// (`systemd-run --collect`), and rpm-ostree ignores a driver whose unit is
/// not active.
fn driven_elsewhere(state: &FakeState) -> Option<String> {
    let name = state.update_driver.as_ref()?;
    let unit = state
        .update_driver_unit
        .clone()
        .unwrap_or_else(|| "cairn-agent.service".into());
    (unit != caller_unit() && !unit.starts_with("run-u")).then(|| {
        format!(
            "Updates and deployments are driven by {name} ({unit})\nSee {name}'s documentation. Use --bypass-driver to bypass {name} and perform the operation."
        )
    })
}

/// The options and the one REVISION of a `deploy` on a host booted from
/// commits, in any order, as rpm-ostree's option parser takes them; `None`
/// for an option it does not know, for `--` (after which rpm-ostree's parser
/// finds no revision), or for no revision or more than one.
fn deploy_arguments<'a>(words: &[&'a str]) -> Option<(Vec<&'a str>, &'a str)> {
    const KNOWN: [&str; 3] = [
        "--bypass-driver",
        "--skip-branch-check",
        "--disallow-downgrade",
    ];
    let (options, revisions): (Vec<&str>, Vec<&str>) =
        words.iter().partition(|word| word.starts_with('-'));
    match (
        options.iter().all(|o| KNOWN.contains(o)),
        revisions.as_slice(),
    ) {
        (true, [revision]) if !revision.is_empty() => Some((options, revision)),
        _ => None,
    }
}

/// The systemd unit the caller runs in.
fn caller_unit() -> String {
    std::env::var("CAIRN_FAKE_UNIT").unwrap_or_else(|_| "cairn-agent.service".into())
}

fn main() -> ExitCode {
    let Some(dir) = std::env::var_os("CAIRN_FAKE_HOST").map(PathBuf::from) else {
        return fail("CAIRN_FAKE_HOST is not set");
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut state = begin_command(&dir, &args);
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["status", "--json"] => {
            println!("{}", status(&state));
            ExitCode::SUCCESS
        }
        ["deploy", "", "--register-driver=Cairn"] => {
            // rpm-ostree checks the driver for a registration too.
            if let Some(message) = driven_elsewhere(&state) {
                return fail(&message);
            }
            state.update_driver = Some("Cairn".into());
            state.update_driver_unit = Some(caller_unit());
            save_host(&dir, &state, None);
            ExitCode::SUCCESS
        }
        ["deploy", "--lock-finalization", rest @ ..]
            if state.origin.is_some() && deploy_arguments(rest).is_some() =>
        {
            let Some((options, revision)) = deploy_arguments(rest) else {
                return fail("no revision");
            };
            if let (Some(message), false) = (
                driven_elsewhere(&state),
                options.contains(&"--bypass-driver"),
            ) {
                return fail(&message);
            }
            let origin = state.origin.clone().unwrap_or_default();
            let mut options = options;
            options.push("--lock-finalization");
            deploy_commit(&dir, state, &origin, revision, &options)
        }
        ["deploy", "--lock-finalization", rest @ ..]
            if state.origin.is_none()
                && matches!(
                    rest,
                    [_] | ["--disallow-downgrade", _]
                        | ["--bypass-driver", _]
                        | ["--bypass-driver", "--disallow-downgrade", _]
                ) =>
        {
            let bypass = rest[0] == "--bypass-driver";
            let disallow_downgrade = rest.contains(&"--disallow-downgrade");
            let digest = rest[rest.len() - 1];
            if let (Some(message), false) = (driven_elsewhere(&state), bypass) {
                return fail(&message);
            }
            // Deploying a digest keeps the origin's repository.
            let repository = state
                .spec_image
                .rsplit_once(':')
                .filter(|(repo, tag)| !tag.contains('/') && repo.contains('/'))
                .map_or(state.spec_image.as_str(), |(repo, _)| repo)
                .to_string();
            let reference = format!("{repository}@{digest}");
            let (digest, version) = match resolve_digest(&state, &reference) {
                Ok(found) => found,
                Err(message) => return fail(&message),
            };
            if disallow_downgrade
                && let Err(message) = check_timestamps(&state, &repository, &digest)
            {
                return fail(&message);
            }
            if let Err(message) = check_out(&dir, &state, &reference, &digest) {
                return fail(&message);
            }
            let event = format!("staged {digest}");
            state.staged = Some(FakeDeployment {
                digest,
                version,
                image: state.spec_image.clone(),
                download_only: true,
            });
            save_host(&dir, &state, Some(event));
            ExitCode::SUCCESS
        }
        ["finalize-deployment", digest] => match &state.staged {
            Some(staged) if staged.digest == *digest && !staged.download_only => {
                fail("Staged deployment already unlocked")
            }
            Some(staged) if staged.digest == *digest => block_until_rebooted(&dir, state),
            Some(staged) => fail(&format!(
                "Expected staged base checksum {digest}, but found {}",
                staged.digest
            )),
            None => fail("No pending staged deployment found"),
        },
        ["cleanup", "-p"] => {
            let event = state
                .staged
                .take()
                .map(|staged| format!("discarded {}", staged.digest));
            save_host(&dir, &state, event);
            ExitCode::SUCCESS
        }
        ["rollback", "-r"] => {
            if state.rollback.is_none() {
                return fail("No rollback deployment found");
            }
            std::mem::swap(&mut state.booted, &mut state.rollback);
            block_until_rebooted(&dir, state)
        }
        _ => fail(&format!("Unknown command or options: {}", args.join(" "))),
    }
}
