//! `fake-rpm-ostree`: answers the rpm-ostree command lines Cairn uses, with
//! rpm-ostree's exit codes (0, or 1 with `error: …`) and `status --json`
//! shape, on the same host state as `fake-bootc` (`$CAIRN_FAKE_HOST`). The
//! origin is an ostree container reference, `ostree-image-signed:docker://…`
//! when the host verifies signatures. `deploy --disallow-downgrade` refuses an
//! image created before the current deployment's, as rpm-ostree does.
//!
//! A registered update driver is tied to the caller's systemd unit
//! (`$CAIRN_FAKE_UNIT`, set by `fake-systemd-run`; a command started
//! directly runs in the agent's own `cairn-agent.service`): `deploy` from any
//! other unit is refused unless it says `--bypass-driver`, as rpm-ostree does.

use cairn_testkit::host::{
    FakeDeployment, FakeState, begin_command, block_until_rebooted, check_out, checksum_of,
    image_timestamp, resolve_digest, write_state,
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

fn deployment(
    state: &FakeState,
    d: &FakeDeployment,
    serial: u32,
    booted: bool,
    staged: bool,
) -> serde_json::Value {
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
    let show = |second: i64| {
        jiff::Timestamp::from_second(second)
            .map(|t| t.strftime("%a %b %e %H:%M:%S %Y").to_string())
            .unwrap_or_else(|_| second.to_string())
    };
    Err(format!(
        "While checking against deployment timestamp: Upgrade target revision '{}' with timestamp '{}' is chronologically older than current revision '{}' with timestamp '{}'; use --allow-downgrade to permit",
        checksum_of(digest),
        show(new_time),
        checksum_of(&current.digest),
        show(current_time)
    ))
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
            write_state(&dir, &state);
            ExitCode::SUCCESS
        }
        ["deploy", "--lock-finalization", rest @ ..]
            if matches!(
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
            state.staged = Some(FakeDeployment {
                digest,
                version,
                image: state.spec_image.clone(),
                download_only: true,
            });
            write_state(&dir, &state);
            ExitCode::SUCCESS
        }
        ["finalize-deployment", digest] => match &state.staged {
            Some(staged) if staged.digest == *digest => block_until_rebooted(&dir, state),
            Some(staged) => fail(&format!(
                "Expected staged base checksum {digest}, but found {}",
                staged.digest
            )),
            None => fail("No staged deployment found"),
        },
        ["cleanup", "-p"] => {
            state.staged = None;
            write_state(&dir, &state);
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
