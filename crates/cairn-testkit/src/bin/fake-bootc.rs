//! `fake-bootc`: answers bootc's command lines for tests, with bootc's exit
//! codes (0, 1 with `error: …`, 2 for usage) and status JSON, keeping its
//! state in `$CAIRN_FAKE_HOST`. Staging resolves the digest in the registry.

use cairn_testkit::host::{
    FakeDeployment, FakeState, begin_command, block_until_rebooted, check_out, checksum_of,
    resolve_digest, save_host,
};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(1)
}

fn usage(message: &str) -> ExitCode {
    eprintln!("error: {message}\n\nUsage: bootc <COMMAND>\n\nFor more information, try '--help'.");
    ExitCode::from(2)
}

/// An argument `switch` does not know, reported the way clap does.
fn unknown_switch_option(option: &str) -> ExitCode {
    eprintln!(
        "error: unexpected argument '{option}' found\n\n  tip: to pass '{option}' as a value, use '-- {option}'\n\nUsage: bootc switch [OPTIONS] <TARGET>\n\nFor more information, try '--help'."
    );
    ExitCode::from(2)
}

/// `bootc switch --help`, laid out as clap lays it out; `--download-only`
/// only where the stand-in's bootc has it.
fn switch_help(download_only: bool) -> String {
    let mut options = vec![
        ("--quiet", "Do not show progress"),
        (
            "--apply",
            "Reboot into the new image once it is staged (to keep it locked, see `bootc upgrade --download-only`)",
        ),
        (
            "--soft-reboot <SOFT_REBOOT>",
            "Soft-reboot when possible [possible values: required, auto]",
        ),
        (
            "--transport <TRANSPORT>",
            "How to fetch the image: registry, oci, oci-archive, containers-storage [default: registry]",
        ),
        (
            "--enforce-container-sigpolicy",
            "Refuse images that containers-policy.json does not verify",
        ),
        ("--retain", "Keep the ostree ref of the booted deployment"),
    ];
    if download_only {
        options.insert(
            3,
            (
                "--download-only",
                "Fetch and stage the image, but do not apply it at the next reboot",
            ),
        );
    }
    let mut text = String::from(
        "Switch the host to another container image\n\nUsage: bootc switch [OPTIONS] <TARGET>\n\nArguments:\n  <TARGET>  The image to boot next\n\nOptions:\n",
    );
    for (option, help) in options {
        text.push_str(&format!("      {option:<31}  {help}\n"));
    }
    text.push_str(&format!("  {:<35}  Print help\n", "-h, --help"));
    text
}

fn entry(d: &Option<FakeDeployment>, arch: &str) -> serde_json::Value {
    match d {
        None => serde_json::Value::Null,
        Some(d) => serde_json::json!({
            "cachedUpdate": null, "composefs": null, "downloadOnly": d.download_only,
            "image": {"architecture": arch, "image": {"image": d.image, "transport": "registry"},
                      "imageDigest": d.digest, "timestamp": null, "version": d.version},
            "incompatible": false, "ostree": {"checksum": checksum_of(&d.digest), "deploySerial": 0, "stateroot": "default"},
            "pinned": false, "softRebootCapable": false, "store": "ostreeContainer"
        }),
    }
}

fn status(state: &FakeState) -> String {
    let mut spec_image = serde_json::json!({"image": state.spec_image, "transport": "registry"});
    if state.container_policy {
        spec_image["signature"] = serde_json::json!("containerPolicy");
    }
    let host = serde_json::json!({
        "apiVersion": "org.containers.bootc/v1", "kind": "BootcHost", "metadata": {"name": "host"},
        "spec": {"bootOrder": "default", "image": spec_image},
        "status": {"booted": entry(&state.booted, state.arch()), "staged": entry(&state.staged, state.arch()),
                   "rollback": entry(&state.rollback, state.arch()), "rollbackQueued": false, "readOnly": false,
                   "type": "bootcHost", "usrOverlay": null}
    });
    host.to_string()
}

/// `bootc upgrade [--apply]`, as bootc's ostree backend does it: fetch the
/// spec image and compare its digest with the staged one, then the booted
/// one; otherwise stage it. There is no downgrade check: whatever the tag
/// names is staged. `--quiet` only hides progress, which the stand-in has none of.
fn upgrade(dir: &Path, mut state: FakeState, apply: bool) -> ExitCode {
    if state.spec_image.is_empty() {
        return fail("No image source specified");
    }
    let image = state.spec_image.clone();
    let (digest, version) = match resolve_digest(&state, &image) {
        Ok(found) => found,
        Err(message) => return fail(&format!("Upgrading: pulling {image}: {message}")),
    };
    if let Some(staged) = state.staged.as_mut().filter(|s| s.digest == digest) {
        if staged.download_only {
            staged.download_only = false;
            save_host(dir, &state, None);
            println!("Staged deployment will now be applied on reboot");
        } else {
            println!("Staged update present, not changed");
        }
        if apply {
            block_until_rebooted(dir, state)
        }
        return ExitCode::SUCCESS;
    }
    if state.booted.as_ref().is_some_and(|b| b.digest == digest) {
        // bootc leaves a different staged deployment alone and does not reboot.
        println!("No update available.");
        return ExitCode::SUCCESS;
    }
    if let Err(message) = check_out(dir, &state, &image, &digest) {
        return fail(&format!("Upgrading: deploying {image}: {message}"));
    }
    println!("Queued for next boot: {image}");
    if let Some(version) = &version {
        println!("  Version: {version}");
    }
    println!("  Digest: {digest}");
    let event = format!("staged {digest}");
    state.staged = Some(FakeDeployment {
        digest,
        version,
        image,
        download_only: false,
    });
    save_host(dir, &state, Some(event));
    if apply {
        block_until_rebooted(dir, state)
    }
    ExitCode::SUCCESS
}

/// Whether a plain `bootc upgrade`'s flags (`--apply` and `--quiet`, each at
/// most once, in any order) ask to apply. `None` for any other flags.
fn plain_upgrade_applies(flags: &[&str]) -> Option<bool> {
    let (mut apply, mut quiet) = (false, false);
    for flag in flags {
        let seen = match *flag {
            "--apply" => &mut apply,
            "--quiet" => &mut quiet,
            _ => return None,
        };
        if *seen {
            return None;
        }
        *seen = true;
    }
    Some(apply)
}

fn main() -> ExitCode {
    let Some(dir) = std::env::var_os("CAIRN_FAKE_HOST").map(PathBuf::from) else {
        return fail("CAIRN_FAKE_HOST is not set");
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut state = begin_command(&dir, &args);
    if let Some((prefix, message)) = &state.fail
        && args.join(" ").starts_with(prefix.as_str())
    {
        return fail(message);
    }
    if let Some(prefix) = &state.fail_usage
        && args.join(" ").starts_with(prefix.as_str())
    {
        return unknown_switch_option(args.get(1).map_or("", String::as_str));
    }
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["--version"] => {
            println!("bootc {}", state.version);
            ExitCode::SUCCESS
        }
        ["status", "--format=json", "--format-version=1"] => {
            println!("{}", status(&state));
            ExitCode::SUCCESS
        }
        ["switch", "--help"] => {
            print!("{}", switch_help(state.accepts_switch_download_only()));
            ExitCode::SUCCESS
        }
        ["switch", rest @ ..] => {
            let download_only = rest.contains(&"--download-only");
            if download_only && !state.accepts_switch_download_only() {
                return unknown_switch_option("--download-only");
            }
            let enforce = rest.contains(&"--enforce-container-sigpolicy");
            let Some(reference) = rest.iter().find(|a| !a.starts_with("--")) else {
                return usage("the following required arguments were not provided: <TARGET>");
            };
            let (digest, version) = match resolve_digest(&state, reference) {
                Ok(found) => found,
                Err(message) => return fail(&format!("Switching: pulling {reference}: {message}")),
            };
            if let Err(message) = check_out(&dir, &state, reference, &digest) {
                return fail(&format!("Switching: deploying {reference}: {message}"));
            }
            let event = format!("staged {digest}");
            state.staged = Some(FakeDeployment {
                digest,
                version,
                image: reference.to_string(),
                download_only,
            });
            state.spec_image = reference.to_string();
            // An unverified switch really does turn verification off.
            state.container_policy = enforce;
            save_host(&dir, &state, Some(event));
            ExitCode::SUCCESS
        }
        ["upgrade", "--download-only"] => match state.staged.as_mut() {
            Some(staged) => {
                staged.download_only = true;
                save_host(&dir, &state, None);
                ExitCode::SUCCESS
            }
            None => fail("No update available"),
        },
        ["upgrade", "--from-downloaded", "--apply"] => {
            if state.staged.is_none() {
                return fail("No staged deployment found");
            }
            block_until_rebooted(&dir, state)
        }
        ["upgrade", flags @ ..] => match plain_upgrade_applies(flags) {
            Some(apply) => upgrade(&dir, state, apply),
            None => usage(&format!("unrecognized arguments: {}", args.join(" "))),
        },
        ["rollback", "--apply"] => {
            if state.rollback.is_none() {
                return fail("No rollback available");
            }
            std::mem::swap(&mut state.booted, &mut state.rollback);
            block_until_rebooted(&dir, state)
        }
        _ => usage(&format!("unrecognized arguments: {}", args.join(" "))),
    }
}
