//! Configuration fragments: precedence, order, masking, merging, and errors
//! that name the file and the key.

use cairn_agent::config::{ConfigDirs, MirrorRootCheck, RegistryReader, Source, load};
use std::path::Path;

fn write(root: &Path, dir: &str, name: &str, text: &str) {
    let dir = root.join(dir).join("cairn/config.d");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join(name), text).expect("write");
}

#[test]
fn defaults_with_no_fragment() {
    let root = tempfile::tempdir().expect("temp dir");
    let settings = load(&ConfigDirs::under(root.path())).expect("valid");
    assert!(settings.enabled);
    assert_eq!(settings.source, Source::Registry(None));
    assert_eq!(settings.strategy_name(), "immediate");
    assert_eq!(settings.check_interval.as_secs(), 300);
    assert_eq!(settings.group, "default");
    assert_eq!(settings.wariness, None);
    assert!(settings.systemd, "a host has systemd unless told otherwise");
    assert_eq!(settings.mirror_root_check, MirrorRootCheck::BestEffort);
    assert_eq!(settings.registry_reader, RegistryReader::Auto);
    assert_eq!(settings.skopeo, Path::new("skopeo"));
    assert_eq!(
        settings.reports, None,
        "nothing is reported unless configured"
    );
}

#[test]
fn reports_need_a_url_and_a_token_file_and_delay_healthy_boots_by_default() {
    let root = tempfile::tempdir().expect("temp dir");
    write(
        root.path(),
        "usr/lib",
        "40-reports.toml",
        "[reports]\nurl = \"https://cairn.example/collector\"\ntoken_file = \"/etc/cairn/report.token\"\n",
    );
    let settings = load(&ConfigDirs::under(root.path())).expect("valid");
    let reports = settings.reports.expect("configured");
    assert_eq!(reports.url.as_str(), "https://cairn.example/collector");
    assert_eq!(reports.token_file, Path::new("/etc/cairn/report.token"));
    assert_eq!(reports.max_delay.as_secs(), 1800);
    // A later fragment changes one key; the others stay.
    write(
        root.path(),
        "etc",
        "60-site.toml",
        "[reports]\nmax_delay_seconds = 0\n",
    );
    let settings = load(&ConfigDirs::under(root.path())).expect("valid");
    let reports = settings.reports.expect("configured");
    assert_eq!(reports.max_delay.as_secs(), 0);
    assert_eq!(reports.url.as_str(), "https://cairn.example/collector");
}

#[test]
fn a_host_without_systemd_is_said_so_in_the_host_table() {
    let root = tempfile::tempdir().expect("temp dir");
    write(
        root.path(),
        "etc",
        "50-host.toml",
        "[host]\nsystemd = false\n",
    );
    assert!(
        !load(&ConfigDirs::under(root.path()))
            .expect("valid")
            .systemd
    );
    write(
        root.path(),
        "etc",
        "50-host.toml",
        "[host]\nsystemd = \"no\"\n",
    );
    let err = load(&ConfigDirs::under(root.path())).expect_err("not a boolean");
    assert_eq!(err.key, "host.systemd", "{err}");
    write(
        root.path(),
        "etc",
        "50-host.toml",
        "[host]\nsystem = false\n",
    );
    let err = load(&ConfigDirs::under(root.path())).expect_err("unknown key");
    assert!(err.key.starts_with("host"), "{err}");
    assert!(err.message.contains("unknown field"), "{err}");
}

#[test]
fn etc_beats_run_beats_usr_lib_and_names_apply_in_order() {
    let root = tempfile::tempdir().expect("temp dir");
    write(
        root.path(),
        "usr/lib",
        "10-stream.toml",
        "[updates]\nstream = \"from-usr-lib\"\n",
    );
    write(
        root.path(),
        "run",
        "10-stream.toml",
        "[updates]\nstream = \"from-run\"\n",
    );
    let settings = load(&ConfigDirs::under(root.path())).expect("valid");
    assert_eq!(settings.stream.as_deref(), Some("from-run"));
    write(
        root.path(),
        "etc",
        "10-stream.toml",
        "[updates]\nstream = \"from-etc\"\n",
    );
    assert_eq!(
        load(&ConfigDirs::under(root.path()))
            .expect("valid")
            .stream
            .as_deref(),
        Some("from-etc")
    );
    // A later file name wins over an earlier one, whatever its directory.
    write(
        root.path(),
        "usr/lib",
        "90-stream.toml",
        "[updates]\nstream = \"latest-name\"\n",
    );
    assert_eq!(
        load(&ConfigDirs::under(root.path()))
            .expect("valid")
            .stream
            .as_deref(),
        Some("latest-name")
    );
    // Dotfiles and other extensions are not fragments.
    write(
        root.path(),
        "etc",
        ".99-hidden.toml",
        "[updates]\nstream = \"hidden\"\n",
    );
    write(root.path(), "etc", "99-notes.yaml", "nonsense");
    assert_eq!(
        load(&ConfigDirs::under(root.path()))
            .expect("valid")
            .stream
            .as_deref(),
        Some("latest-name")
    );
}

#[test]
fn a_symlink_to_dev_null_masks_a_fragment() {
    let root = tempfile::tempdir().expect("temp dir");
    write(
        root.path(),
        "usr/lib",
        "50-lock.toml",
        "[strategy.fleet_lock]\nbase_url = \"https://locks.example/\"\n",
    );
    assert_eq!(
        load(&ConfigDirs::under(root.path()))
            .expect("valid")
            .strategy_name(),
        "fleet_lock"
    );
    let etc = root.path().join("etc/cairn/config.d");
    std::fs::create_dir_all(&etc).expect("mkdir");
    std::os::unix::fs::symlink("/dev/null", etc.join("50-lock.toml")).expect("symlink");
    assert_eq!(
        load(&ConfigDirs::under(root.path()))
            .expect("valid")
            .strategy_name(),
        "immediate"
    );
}

#[test]
fn windows_add_up_and_combine_with_a_lock() {
    let root = tempfile::tempdir().expect("temp dir");
    write(
        root.path(),
        "etc",
        "50-windows.toml",
        "[strategy]\ntime_zone = \"Europe/Berlin\"\n[[strategy.window]]\ndays = [\"Sat\", \"Sun\"]\nstart_time = \"02:00\"\nlength_minutes = 120\n",
    );
    write(
        root.path(),
        "etc",
        "60-more.toml",
        "[[strategy.window]]\ndays = [\"Wednesday\"]\nstart_time = \"23:30\"\nlength_minutes = 60\n[strategy.fleet_lock]\nbase_url = \"https://locks.example/fleet/\"\ngroup = \"workers\"\n[identity]\nrollout_wariness = 0.25\n",
    );
    let settings = load(&ConfigDirs::under(root.path())).expect("valid");
    let schedule = settings.schedule.as_ref().expect("windows");
    assert_eq!(schedule.windows.len(), 2);
    assert_eq!(schedule.zone_name, "Europe/Berlin");
    assert_eq!(schedule.weekly_minutes(), 2 * 120 + 60);
    let lock = settings.fleet_lock.as_ref().expect("lock");
    assert_eq!(lock.group, "workers");
    assert!(!lock.release_on_failure, "kept by default");
    assert_eq!(settings.strategy_name(), "periodic+fleet_lock");
    assert_eq!(settings.wariness, Some(0.25));
}

#[test]
fn every_mistake_names_the_file_and_the_key() {
    let cases = [
        (
            "[updates]\nstram = \"stable\"\n",
            "updates.stram",
            "unknown field `stram`",
            "invalid_key",
        ),
        (
            "[update]\nstream = \"stable\"\n",
            "update",
            "unknown field `update`",
            "invalid_key",
        ),
        (
            "[updates]\ncheck_interval_seconds = \"often\"\n",
            "updates.check_interval_seconds",
            "invalid type",
            "invalid_key",
        ),
        (
            "[updates]\ncheck_interval_seconds = 1\n",
            "updates.check_interval_seconds",
            "outside",
            "invalid_value",
        ),
        (
            "[updates]\nsource = \"ftp://x\"\n",
            "updates.source",
            "not one of",
            "unknown_source",
        ),
        (
            "[updates]\nsource = \"cincinnati:not a url\"\n",
            "updates.source",
            "not an http(s) URL",
            "not_http_url",
        ),
        (
            "[identity]\nrollout_wariness = 1.5\n",
            "identity.rollout_wariness",
            "outside [0, 1]",
            "invalid_value",
        ),
        (
            "[strategy]\ntime_zone = \"Mars/Olympus\"\n",
            "strategy.time_zone",
            "unknown time zone",
            "invalid_value",
        ),
        (
            "[[strategy.window]]\ndays = [\"Caturday\"]\nstart_time = \"02:00\"\nlength_minutes = 60\n",
            "strategy.window",
            "unknown day",
            "invalid_value",
        ),
        (
            "[[strategy.window]]\ndays = [\"Sat\"]\nstart_time = \"25:00\"\nlength_minutes = 60\n",
            "strategy.window",
            "HH:MM",
            "invalid_value",
        ),
        (
            "[[strategy.window]]\ndays = [\"Sat\"]\nstart_time = \"02:00\"\nlength_minutes = 0\n",
            "strategy.window",
            "outside",
            "invalid_value",
        ),
        (
            "[strategy.fleet_lock]\nbase_url = \"locks\"\n",
            "strategy.fleet_lock.base_url",
            "not an http(s) URL",
            "invalid_value",
        ),
        (
            "[strategy.fleet_lock]\ngroup = \"g\"\n",
            "strategy.fleet_lock.group",
            "without",
            "invalid_value",
        ),
        (
            "[strategy.fleet_lock]\nrelease_on_failure = true\n",
            "strategy.fleet_lock.release_on_failure",
            "without",
            "invalid_value",
        ),
        (
            "[strategy.fleet_lock]\nbase_url = \"https://l/\"\nrelease_on_failure = \"no\"\n",
            "strategy.fleet_lock.release_on_failure",
            "boolean",
            "invalid_key",
        ),
        (
            "[reports]\nurl = \"collector.example\"\ntoken_file = \"/etc/cairn/report.token\"\n",
            "reports.url",
            "not an http(s) URL",
            "invalid_value",
        ),
        (
            "[reports]\nurl = \"https://cairn.example/\"\n",
            "reports.token_file",
            "must be set with reports.url",
            "invalid_value",
        ),
        (
            "[reports]\ntoken_file = \"/etc/cairn/report.token\"\n",
            "reports.token_file",
            "without reports.url",
            "invalid_value",
        ),
        (
            "[reports]\nmax_delay_seconds = 60\n",
            "reports.max_delay_seconds",
            "without reports.url",
            "invalid_value",
        ),
        (
            "[reports]\nurl = \"https://c/\"\ntoken_file = \"t\"\nmax_delay_seconds = 90000\n",
            "reports.max_delay_seconds",
            "outside 0 to 86400 seconds",
            "invalid_value",
        ),
        (
            "[reports]\nurl = \"https://c/\"\ntoken_file = \"t\"\nhostname = true\n",
            "reports.hostname",
            "unknown field `hostname`",
            "invalid_key",
        ),
        ("[updates\n", "", "TOML", "syntax"),
        (
            "[updates]\nmirror_root_check = \"always\"\n",
            "updates.mirror_root_check",
            "neither \"best-effort\" nor \"required\"",
            "invalid_value",
        ),
        (
            "[updates]\nregistry_reader = \"skopeo\"\n",
            "updates.registry_reader",
            "neither \"auto\" nor \"builtin\"",
            "invalid_value",
        ),
        (
            "[updates]\nskopeo = \"\"\n",
            "updates.skopeo",
            "is empty",
            "invalid_value",
        ),
        (
            "[updates]\nbase_source = \"fcos:\"\n",
            "updates.base_source",
            "expected fcos:<stream>",
            "bad_source",
        ),
    ];
    for (text, key, needle, kind) in cases {
        let root = tempfile::tempdir().expect("temp dir");
        write(root.path(), "etc", "70-site.toml", text);
        let err = load(&ConfigDirs::under(root.path())).expect_err(text);
        assert!(
            err.file.ends_with("etc/cairn/config.d/70-site.toml"),
            "{text}: {err}"
        );
        assert_eq!(err.key, key, "{text}: {err}");
        assert_eq!(err.kind(), kind, "{text}: {err}");
        assert!(
            err.to_string().contains(needle) || needle == "TOML",
            "{needle:?} missing from {err}"
        );
        // Fixing the file recovers.
        write(
            root.path(),
            "etc",
            "70-site.toml",
            "[updates]\nstream = \"stable\"\n",
        );
        load(&ConfigDirs::under(root.path())).expect("fixed");
    }
}

#[test]
fn the_mirror_root_check_can_be_required() {
    let root = tempfile::tempdir().expect("temp dir");
    write(
        root.path(),
        "etc",
        "70-site.toml",
        "[updates]\nmirror_root_check = \"required\"\n",
    );
    let settings = load(&ConfigDirs::under(root.path())).expect("valid");
    assert_eq!(settings.mirror_root_check, MirrorRootCheck::Required);
    assert_eq!(settings.mirror_root_check.as_str(), "required");
}

#[test]
fn the_registry_reader_can_be_the_built_in_client_and_skopeo_a_path() {
    let root = tempfile::tempdir().expect("temp dir");
    write(
        root.path(),
        "etc",
        "70-site.toml",
        "[updates]\nregistry_reader = \"builtin\"\nskopeo = \"/opt/bin/skopeo\"\n",
    );
    let settings = load(&ConfigDirs::under(root.path())).expect("valid");
    assert_eq!(settings.registry_reader, RegistryReader::Builtin);
    assert_eq!(settings.registry_reader.as_str(), "builtin");
    assert_eq!(settings.skopeo, Path::new("/opt/bin/skopeo"));
}
