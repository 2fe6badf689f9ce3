//! Every default a `--help` states, checked against the value the code uses.

use super::Cli;
use clap::CommandFactory;
use std::collections::BTreeMap;

/// What each help says a default is: clap's `[default: …]` (`… [default]`) and
/// the prose after "Default:" or "(default " (`… [prose]`), by command path and option.
fn stated(command: &clap::Command, path: &str, found: &mut BTreeMap<String, String>) {
    for arg in command.get_arguments() {
        let name = arg
            .get_long()
            .map_or_else(|| arg.get_id().to_string(), |long| format!("--{long}"));
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        if !defaults.is_empty() {
            found.insert(format!("{path} {name} [default]"), defaults.join(", "));
        }
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(ToString::to_string)
            .unwrap_or_default();
        if let Some(prose) = prose_default(&help) {
            found.insert(format!("{path} {name} [prose]"), prose);
        }
    }
    for sub in command.get_subcommands() {
        stated(sub, &format!("{path} {}", sub.get_name()), found);
    }
}

/// The text after "Default:" (to the end of its sentence) or "(default " (to the ")").
fn prose_default(help: &str) -> Option<String> {
    let help = help.replace('\n', " ");
    if let Some(at) = help.find("(default ") {
        let rest = &help[at + "(default ".len()..];
        return Some(rest[..rest.find(')').unwrap_or(rest.len())].to_string());
    }
    let at = help.to_lowercase().find("default: ")?;
    let rest = &help[at + "default: ".len()..];
    let end = rest.find(". ").unwrap_or(rest.len());
    Some(rest[..end].trim_end_matches('.').to_string())
}

/// The defaults the code uses, from its constants where it has them.
fn expected() -> BTreeMap<String, String> {
    let ostree_files: Vec<String> = super::agent::OSTREE_AUTH_FILES
        .iter()
        .map(|path| format!("/{path}"))
        .collect();
    let agent_authfile = format!(
        "the first of the host's ostree auth files that exists, as bootc reads them ({}, below --root); never a user's file",
        ostree_files.join(", ")
    );
    let user_authfile = "the containers tools' lookup ($REGISTRY_AUTH_FILE, ~/.config/containers/auth.json, ~/.docker/config.json)";
    let mut map = BTreeMap::new();
    let mut put = |key: &str, value: &str| {
        map.insert(key.to_string(), value.to_string());
    };
    for verb in ["cairn agent", "cairn verify", "cairn update-now"] {
        put(&format!("{verb} --root [default]"), "/");
        put(&format!("{verb} --sysroot [default]"), "/sysroot");
        put(&format!("{verb} --bootc [default]"), "bootc");
        put(&format!("{verb} --rpm-ostree [default]"), "rpm-ostree");
        put(&format!("{verb} --systemctl [default]"), "systemctl");
        put(&format!("{verb} --loginctl [default]"), "loginctl");
        put(&format!("{verb} --arch [prose]"), "the running one");
        put(&format!("{verb} --authfile [prose]"), &agent_authfile);
    }
    for verb in [
        "cairn agent",
        "cairn verify",
        "cairn update-now",
        "cairn status",
        "cairn hold",
        "cairn unhold",
        "cairn deny-list list",
        "cairn deny-list remove",
        "cairn release-slot",
    ] {
        put(&format!("{verb} --state-dir [default]"), "/var/lib/cairn");
        put(
            &format!("{verb} --socket [default]"),
            cairn_agent::control::DEFAULT_SOCKET,
        );
    }
    put("cairn hold --until [prose]", "until `cairn unhold`");
    put("cairn unhold --until [prose]", "until `cairn unhold`");
    put("cairn config check --root [default]", "/");
    put("cairn config import-zincati --root [default]", "/");
    put(
        "cairn config import-zincati --output [prose]",
        "standard output",
    );
    put(
        "cairn config import-zincati --basearch [prose]",
        "the running one",
    );
    put(
        "cairn config import-zincati --platform [prose]",
        "the ignition.platform.id on proc/cmdline under --root",
    );
    // Registry commands read a user's credentials, as the containers tools do.
    let stream_tag = format!(
        "the stream a `{}` tag names",
        cairn_oci::document::default_tag("<stream>")
    );
    for verb in [
        "cairn document verify",
        "cairn graph next",
        "cairn graph show",
        "cairn publish",
        "cairn simulate",
        "cairn halt add",
        "cairn halt refresh",
        "cairn halt show",
        "cairn policy halt clear",
        "cairn promote",
    ] {
        put(&format!("{verb} --authfile [prose]"), user_authfile);
        if !verb.starts_with("cairn publish") && !verb.contains("halt") {
            put(&format!("{verb} --stream [prose]"), &stream_tag);
        }
    }
    for at in [
        "cairn document verify --now",
        "cairn graph convert-fcos --now",
        "cairn graph fcos --now",
        "cairn graph next --now",
        "cairn graph show --now",
        "cairn policy --now",
        "cairn policy rollout start --at",
        "cairn promote --now",
        "cairn publish --now",
        "cairn simulate --start",
    ] {
        put(&format!("{at} [prose]"), "now");
    }
    let halt_lifetime = format!("{}h", cairn_oci::halts::DEFAULT_LIFETIME.as_hours());
    for verb in ["cairn halt add", "cairn halt refresh", "cairn halt show"] {
        put(
            &format!("{verb} --stream [prose]"),
            "the one the tag cairn-halts-<stream> names, and for `add` the document's",
        );
        if verb != "cairn halt show" {
            put(&format!("{verb} --lifetime [default]"), &halt_lifetime);
        }
    }
    put("cairn halt add --reason [default]", "halted by hand");
    put("cairn halt add --who [prose]", "$USER");
    put("cairn halt show --now [prose]", "now");
    put(
        "cairn policy halt clear --from [prose]",
        "its progress when it was halted (needs --halt-list)",
    );
    put(
        "cairn policy halt clear --over [prose]",
        "the time it had left when it was halted (needs --halt-list)",
    );
    put("cairn demo --dir [prose]", "a new temporary directory");
    put("cairn demo --nodes [default]", "10000");
    put("cairn document keygen --output [default]", "cairn");
    put("cairn graph convert-fcos --expires-in [default]", "14d");
    put("cairn graph show --format [default]", "text");
    put("cairn policy --policy [default]", "updates.json");
    put("cairn policy rollout start --from [default]", "0");
    put(
        "cairn policy rollout resume --over [prose]",
        "the time it had left when it was paused",
    );
    put(
        "cairn publish --cache [prose]",
        "under $XDG_CACHE_HOME/cairn",
    );
    put(
        "cairn promote --barrier-dwell [default]",
        &format!(
            "{}d",
            cairn_graph::promote::DEFAULT_BARRIER_DWELL.as_hours() / 24
        ),
    );
    put("cairn promote --min-dwell [default]", "0");
    put(
        "cairn promote --settle [default]",
        &format!("{}ms", cairn_oci::promote::SETTLE.as_millis()),
    );
    put(
        "cairn promote --to [prose]",
        "the document's own repository",
    );
    put(
        "cairn promote --arch [prose]",
        "every architecture of the wave's release",
    );
    put("cairn publish --default-rollout [default]", "immediate");
    put("cairn publish --expires-in [default]", "14d");
    put(
        "cairn publish --mutable-tag [default]",
        &cairn_oci::scan::ScanOptions::for_stream("s")
            .mutable_tags
            .join(", "),
    );
    put(
        "cairn publish --tag [prose]",
        &cairn_oci::document::default_tag("<stream>"),
    );
    put("cairn root show --authfile [prose]", user_authfile);
    let root_expires = super::root::DEFAULT_EXPIRES;
    put("cairn root init --expires [default]", root_expires);
    put("cairn root rotate --expires [default]", root_expires);
    put("cairn root init --root-key [prose]", "the graph keys");
    put(
        "cairn root init --root-threshold [prose]",
        "2 when there are two root keys or more, else 1 (which needs --allow-single-key)",
    );
    for role in ["root", "graph", "halt"] {
        put(
            &format!("cairn root rotate --{role}-threshold [prose]"),
            "as in the newest root",
        );
    }
    put("cairn simulate --arch [default]", "x86_64");
    put(
        "cairn simulate --booted [prose]",
        "everybody on the newest release offered to the whole fleet at the start",
    );
    // A simulated node checks as often as an agent does by default.
    put(
        "cairn simulate --check-interval [default]",
        &format!("{}m", cairn_agent::config::DEFAULT_CHECK_SECONDS / 60),
    );
    put("cairn simulate --days [default]", "14");
    // The guard model's own defaults, which follow `cairn serve` and the agent.
    let guard = cairn_sim::Guard::default();
    assert_eq!(
        guard.report_delay.as_secs(),
        cairn_agent::config::DEFAULT_REPORT_DELAY_SECONDS as i64,
        "the simulated report delay is the agent's default"
    );
    put(
        "cairn simulate --guard-interval [default]",
        &format!("{}m", guard.interval.as_secs() / 60),
    );
    put(
        "cairn simulate --report-delay [default]",
        &format!("{}m", guard.report_delay.as_secs() / 60),
    );
    put("cairn simulate --nodes [default]", "10000");
    put("cairn simulate --seed [default]", "1");
    put("cairn simulate --strategy [default]", "immediate");
    put("cairn simulate --time-zone [default]", "UTC");
    put("cairn simulate --wariness-dist [default]", "uniform");
    put(
        "cairn serve --listen [prose]",
        cairn_server::config::DEFAULT_LISTEN,
    );
    // `cairn lock` asks a server at `cairn serve`'s own default address.
    for verb in ["status", "release", "ack"] {
        put(
            &format!("cairn lock {verb} --server [default]"),
            &format!("http://{}", cairn_server::config::DEFAULT_LISTEN),
        );
    }
    map
}

#[test]
fn every_stated_default_is_the_one_the_code_uses() {
    let mut found = BTreeMap::new();
    stated(&Cli::command(), "cairn", &mut found);
    let expected = expected();
    let mut wrong = Vec::new();
    for (key, value) in &found {
        match expected.get(key) {
            Some(want) if want == value => {}
            Some(want) => wrong.push(format!(
                "{key}: help says {value:?}, the code uses {want:?}"
            )),
            None => wrong.push(format!("{key}: {value:?} is checked against nothing")),
        }
    }
    for key in expected.keys().filter(|key| !found.contains_key(*key)) {
        wrong.push(format!("{key}: no longer stated"));
    }
    assert!(
        wrong.is_empty(),
        "help defaults:\n{}\nall stated: {found:#?}",
        wrong.join("\n")
    );
}
