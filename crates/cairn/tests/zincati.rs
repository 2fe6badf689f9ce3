//! `cairn config import-zincati` on the real binary: fragments written the
//! way Zincati ships and documents them, the exact Cairn fragment and notes
//! that come out, `cairn config check` on the result, and a host's rollout
//! position before and after the move.

mod common;
use common::cairn;

use std::path::{Path, PathBuf};
use std::process::Output;

/// A host's file system: Zincati's fragments, its machine id, its kernel
/// command line.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    /// A Fedora CoreOS host as shipped: Zincati's five default fragments in
    /// /usr/lib (their keys as Zincati's `dist/config.d` sets them).
    fn fedora_coreos() -> Host {
        let host = Host {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        for (name, text) in [
            (
                "10-agent.toml",
                "[agent.timing]\nsteady_interval_secs = 300\n",
            ),
            ("10-auto-updates.toml", "[updates]\nenabled = true\n"),
            ("10-identity.toml", "[identity]\ngroup = \"default\"\n"),
            (
                "30-updates-strategy.toml",
                "[updates]\nstrategy = \"immediate\"\n",
            ),
            (
                "50-fedora-coreos-cincinnati.toml",
                "[cincinnati]\nbase_url= \"https://updates.coreos.fedoraproject.org\"\n",
            ),
        ] {
            host.write("usr/lib/zincati/config.d", name, text);
        }
        host
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, dir: &str, name: &str, text: &str) {
        let dir = self.root().join(dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(name), text).expect("write");
    }

    /// A fragment of the administrator's, in /etc/zincati/config.d.
    fn etc(&self, name: &str, text: &str) {
        self.write("etc/zincati/config.d", name, text);
    }

    /// Mask a /usr/lib fragment the documented way: a link to /dev/null.
    fn mask(&self, name: &str) {
        let dir = self.root().join("etc/zincati/config.d");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::os::unix::fs::symlink("/dev/null", dir.join(name)).expect("symlink");
    }

    fn machine_id(&self, id: &str) {
        self.write("etc", "machine-id", &format!("{id}\n"));
    }

    fn output_path(&self) -> PathBuf {
        self.root().join("etc/cairn/config.d/50-from-zincati.toml")
    }

    fn import(&self, extra: &[&str]) -> Output {
        let root = self.root().display().to_string();
        let mut args = vec!["config", "import-zincati", "--root", &root];
        args.extend(extra);
        cairn(&args)
    }

    fn check(&self) -> Output {
        cairn(&[
            "config",
            "check",
            "--root",
            &self.root().display().to_string(),
        ])
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The wariness Fedora's server gives these node ids, the position a
/// Zincati host had. Fedora's policy engine hashes the id string with the
/// standard library's `DefaultHasher` (SipHash-1-3, zero keys); the values
/// are pinned here, as that hasher's output is not promised to stay the same.
/// Fedora's live server gave the second id 0.65332.
fn fedoras_wariness(node_id: &str) -> f64 {
    match node_id {
        "975228d46dc94622b9bbe16671e2b58d" => 0.7057841999772573,
        "e0f3745b108f471cbd4883c6fbed8cdd" => 0.6533234000651716,
        other => panic!("no pinned wariness for {other}"),
    }
}

const SHIPPED: &str = "#   /usr/lib/zincati/config.d/10-agent.toml
#   /usr/lib/zincati/config.d/10-auto-updates.toml
#   /usr/lib/zincati/config.d/10-identity.toml
#   /usr/lib/zincati/config.d/30-updates-strategy.toml
#   /usr/lib/zincati/config.d/50-fedora-coreos-cincinnati.toml
";

const HEADER: &str = "# Carried over from Zincati by `cairn config import-zincati`, from these
# fragments in the order Zincati applied them:
";

#[test]
fn periodic_windows_in_a_named_zone_and_every_key_carry_over() {
    let host = Host::fedora_coreos();
    host.etc(
        "55-updates-strategy.toml",
        "[updates]
strategy = \"periodic\"

[updates.periodic]
time_zone = \"America/Toronto\"

[[updates.periodic.window]]
days = [ \"Sat\", \"Sun\" ]
start_time = \"23:30\"
length_minutes = 60

[[updates.periodic.window]]
days = [ \"Wed\" ]
start_time = \"1:00\"
length_minutes = 30
",
    );
    host.etc(
        "90-custom-identity.toml",
        "[identity]\ngroup = \"workers\"\nrollout_wariness = 0.25\n",
    );
    host.etc(
        "95-site.toml",
        "[agent.timing]\nsteady_interval_secs = 600\n\n[updates]\nallow_downgrade = false\n",
    );
    let out = host.import(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let fragment = format!(
        "{HEADER}{SHIPPED}#   /etc/zincati/config.d/55-updates-strategy.toml
#   /etc/zincati/config.d/90-custom-identity.toml
#   /etc/zincati/config.d/95-site.toml

[updates]
enabled = true
allow_downgrade = false
check_interval_seconds = 600
source = \"cincinnati:https://updates.coreos.fedoraproject.org\"

[identity]
group = \"workers\"
rollout_wariness = 0.25

[strategy]
time_zone = \"America/Toronto\"

[[strategy.window]]
days = [\"Sat\", \"Sun\"]
start_time = \"23:30\"
length_minutes = 60

[[strategy.window]]
days = [\"Wed\"]
start_time = \"01:00\"
length_minutes = 30
"
    );
    assert_eq!(stdout(&out), fragment);
    // Every key Zincati used is carried: nothing to report.
    assert_eq!(stderr(&out), "");

    let output = host.output_path();
    let out = host.import(&["--output", &output.display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("wrote {}\n", output.display()));
    assert_eq!(std::fs::read_to_string(&output).expect("written"), fragment);

    let out = host.check();
    assert!(out.status.success(), "{}", stderr(&out));
    let f = output.display();
    assert_eq!(
        stdout(&out),
        format!(
            "fragments, in the order they apply:
  {f}
source:     cincinnati:https://updates.coreos.fedoraproject.org  ({f})
stream:     the tag the host follows, or its Fedora CoreOS branch's  (default)
keys:       none  (default)
window:     Sat,Sun 23:30 for 60 min  ({f})
window:     Wed 01:00 for 30 min  ({f})
time zone:  America/Toronto  ({f})
strategy:   periodic  (the windows above)
wariness:   0.25  ({f})
group:      workers  ({f})
check:      every 600 s  ({f})
reports:    off: nothing is sent  (default)
updates:    enabled  ({f})
ok
"
        )
    );
    assert_eq!(stderr(&out), "");
}

#[test]
fn fleet_lock_with_a_templated_url_behind_masked_vendor_fragments() {
    let host = Host::fedora_coreos();
    // A vendor image's defaults, both masked by the administrator: one by a
    // link to /dev/null, one by an empty file of the same name. The files
    // apply in name order across both directories, as Zincati applies them.
    host.write(
        "usr/lib/zincati/config.d",
        "40-vendor-windows.toml",
        "[updates]\nstrategy = \"periodic\"\n\n[[updates.periodic.window]]\ndays = [ \"Mon\" ]\nstart_time = \"03:00\"\nlength_minutes = 60\n",
    );
    host.write(
        "usr/lib/zincati/config.d",
        "41-vendor-identity.toml",
        "[identity]\nrollout_wariness = 0.9\n",
    );
    host.mask("40-vendor-windows.toml");
    host.etc("41-vendor-identity.toml", "");
    host.etc(
        "55-updates-strategy.toml",
        "[updates]\nstrategy = \"fleet_lock\"\n\n[updates.fleet_lock]\nbase_url = \"http://fleet-lock.example.com:8080/${group}/${basearch}/\"\n",
    );
    host.etc(
        "90-custom-identity.toml",
        "[identity]\ngroup = \"workers\"\n",
    );
    host.machine_id("3d1219c7c4c5404aaa1f6d2a48adfda4");
    let output = host.output_path();
    let out = host.import(&[
        "--basearch",
        "aarch64",
        "--output",
        &output.display().to_string(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("wrote {}\n", output.display()));
    // The id systemd 252 printed for this machine id with Zincati's app id:
    // the node_uuid Zincati sent, from which Fedora's server placed the host.
    let node_id = "975228d46dc94622b9bbe16671e2b58d";
    let before = fedoras_wariness(node_id);
    assert_eq!(
        stderr(&out),
        format!(
            "cairn: note: identity.rollout_wariness: not set, so none is written: Cairn derives {before} from /etc/machine-id, as Fedora's server derived it from Zincati's node id {node_id}
cairn: note: /etc/zincati/config.d/55-updates-strategy.toml: updates.fleet_lock.base_url: carried as http://fleet-lock.example.com:8080/workers/aarch64/: Cairn does not fill in templates, so the values Zincati filled in on this host are written (${{group}} = workers, ${{basearch}} = aarch64)
"
        )
    );
    assert_eq!(
        std::fs::read_to_string(&output).expect("written"),
        format!(
            "{HEADER}#   /usr/lib/zincati/config.d/10-agent.toml
#   /usr/lib/zincati/config.d/10-auto-updates.toml
#   /usr/lib/zincati/config.d/10-identity.toml
#   /usr/lib/zincati/config.d/30-updates-strategy.toml
#   /etc/zincati/config.d/41-vendor-identity.toml
#   /usr/lib/zincati/config.d/50-fedora-coreos-cincinnati.toml
#   /etc/zincati/config.d/55-updates-strategy.toml
#   /etc/zincati/config.d/90-custom-identity.toml

[updates]
enabled = true
check_interval_seconds = 300
source = \"cincinnati:https://updates.coreos.fedoraproject.org\"

[identity]
group = \"workers\"

[strategy.fleet_lock]
base_url = \"http://fleet-lock.example.com:8080/workers/aarch64/\"
"
        )
    );
    let out = host.check();
    assert!(out.status.success(), "{}", stderr(&out));
    let f = output.display();
    // After the move: the same place in every rollout.
    assert_eq!(
        stdout(&out),
        format!(
            "fragments, in the order they apply:
  {f}
source:     cincinnati:https://updates.coreos.fedoraproject.org  ({f})
stream:     the tag the host follows, or its Fedora CoreOS branch's  (default)
keys:       none  (default)
windows:    none: reboots at any time  (default)
time zone:  UTC  (default)
strategy:   fleet_lock (lock http://fleet-lock.example.com:8080/workers/aarch64/, group workers, slot kept after a failed boot)  ({f})
wariness:   {before}, derived from the node id  (default)
group:      workers  ({f})
check:      every 300 s  ({f})
reports:    off: nothing is sent  (default)
updates:    enabled  ({f})
ok
"
        )
    );
}

#[test]
fn a_configured_node_id_keeps_the_position_it_gave() {
    let host = Host::fedora_coreos();
    host.etc(
        "90-custom-identity.toml",
        "[identity]\nnode_uuid = \"e0f3745b-108f-471c-bd48-83c6fbed8cdd\"\n",
    );
    host.machine_id("3d1219c7c4c5404aaa1f6d2a48adfda4");
    let out = host.import(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Fedora's server gave this id 0.65332 (checked against the live server).
    let before = fedoras_wariness("e0f3745b108f471cbd4883c6fbed8cdd");
    assert_eq!((before * 100_000.0).round() / 100_000.0, 0.65332);
    assert_eq!(
        stderr(&out),
        format!(
            "cairn: note: /etc/zincati/config.d/90-custom-identity.toml: identity.node_uuid: not carried: Cairn has no node id setting; its FleetLock id is derived from /etc/machine-id (975228d46dc94622b9bbe16671e2b58d). The rollout position Fedora's server gave this id is kept as identity.rollout_wariness = {before}\n"
        )
    );
    assert!(
        stdout(&out).ends_with(&format!(
            "\n[identity]\ngroup = \"default\"\nrollout_wariness = {before}\n"
        )),
        "{}",
        stdout(&out)
    );
    let output = host.output_path();
    std::fs::create_dir_all(output.parent().expect("dir")).expect("mkdir");
    std::fs::write(&output, stdout(&out)).expect("write");
    let out = host.check();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("\nwariness:   {before}  ({})\n", output.display())),
        "{}",
        stdout(&out)
    );
}

#[test]
fn unknown_keys_and_skipped_files_are_reported_not_fatal() {
    let host = Host::fedora_coreos();
    // A lock with windows, which Zincati does not have (coreos/airlock#81),
    // and a key misspelt.
    host.etc(
        "55-updates-strategy.toml",
        "[updates]
strategy = \"fleet_lock\"
enable = false

[updates.fleet_lock]
base_url = \"http://fleet-lock.example.com:8080/fleet_lock\"

[[updates.fleet_lock.window]]
days = [ \"Sat\" ]
start_time = \"02:00\"
length_minutes = 60
",
    );
    // Files Zincati does not read, or not after the next boot.
    host.etc("60-site.yaml", "updates:\n  enabled: false\n");
    host.write(
        "run/zincati/config.d",
        "99-update-now.toml",
        "[identity]\nrollout_wariness = 0.0\n[updates]\nstrategy = \"immediate\"\n",
    );
    let elsewhere = host.root().join("elsewhere.toml");
    std::fs::write(&elsewhere, "[identity]\ngroup = \"linked\"\n").expect("write");
    std::os::unix::fs::symlink(
        &elsewhere,
        host.root().join("etc/zincati/config.d/70-linked.toml"),
    )
    .expect("symlink");
    let out = host.import(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "cairn: note: /etc/zincati/config.d/70-linked.toml: not read: a symbolic link, which Zincati skips (only a link to /dev/null counts, to mask the name)
cairn: note: /run/zincati/config.d/99-update-now.toml: not read: /run holds changes that end at the next boot (zincati-update-now writes one here); only /usr/lib and /etc are carried over
cairn: note: /etc/zincati/config.d/60-site.yaml: not read: Zincati reads only files named *.toml
cairn: note: /etc/zincati/config.d/55-updates-strategy.toml: updates.enable: not carried: Zincati does not know this key (it ignores it too)
cairn: note: /etc/zincati/config.d/55-updates-strategy.toml: updates.fleet_lock.window: not carried: Zincati does not know this key (it ignores it too)
cairn: note: identity.rollout_wariness: not set, so none is written; but /etc/machine-id cannot be read (No such file or directory (os error 2)), so the agent cannot derive it: set identity.rollout_wariness
cairn: note: /etc/zincati/config.d/55-updates-strategy.toml: updates.fleet_lock.base_url: carried as http://fleet-lock.example.com:8080/: Zincati called http://fleet-lock.example.com:8080/v1/pre-reboot (a base without a trailing slash loses its last path segment, and any query), and Cairn calls the same from this base
"
    );
    assert_eq!(
        stdout(&out),
        format!(
            "{HEADER}{SHIPPED}#   /etc/zincati/config.d/55-updates-strategy.toml

[updates]
enabled = true
check_interval_seconds = 300
source = \"cincinnati:https://updates.coreos.fedoraproject.org\"

[identity]
group = \"default\"

[strategy.fleet_lock]
base_url = \"http://fleet-lock.example.com:8080/\"
"
        )
    );
}

#[test]
fn values_cairn_cannot_carry_stop_the_import_and_nothing_is_written() {
    let host = Host::fedora_coreos();
    host.etc(
        "50-fedora-coreos-cincinnati.toml",
        "[cincinnati]\nbase_url = \"https://updates.example.com/${stream}/\"\n",
    );
    host.etc(
        "55-updates-strategy.toml",
        "[agent.timing]
steady_interval_secs = 5

[updates]
strategy = \"periodic\"

[updates.periodic]
time_zone = \"Mars/Olympus\"

[[updates.periodic.window]]
days = [ \"Tuesday\", \"Caturday\" ]
start_time = \"24:00\"
length_minutes = 0
",
    );
    let output = host.output_path();
    let out = host.import(&["--output", &output.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    let e = "/etc/zincati/config.d/55-updates-strategy.toml";
    assert_eq!(
        stderr(&out),
        format!(
            "cairn: note: identity.rollout_wariness: not set, so none is written; but /etc/machine-id cannot be read (No such file or directory (os error 2)), so the agent cannot derive it: set identity.rollout_wariness
cairn: refused: {e}: agent.timing.steady_interval_secs: 5 s: Cairn checks every 10 seconds to 7 days (updates.check_interval_seconds)
cairn: refused: /etc/zincati/config.d/50-fedora-coreos-cincinnati.toml: cincinnati.base_url: uses ${{stream}}, but the import does not read it from the host (Zincati asks rpm-ostree): give the host's value with --stream
cairn: refused: {e}: updates.periodic.window: day \"Tuesday\": Zincati's parser refuses it (it knows \"tue\" and the misspelling \"tuesady\"), so Zincati never ran with this file; if Tue is meant, write \"Tue\"
cairn: refused: {e}: updates.periodic.window: day \"Caturday\" is not a day of the week
cairn: refused: {e}: updates.periodic.window: start_time \"24:00\" is not hh:mm (24 h); Zincati would not start with it
cairn: refused: {e}: updates.periodic.window: length_minutes 0 is outside 1 minute to 1 week; Zincati would not start with it
cairn: refused: {e}: updates.periodic.time_zone: \"Mars/Olympus\" is not a time zone Cairn knows (an IANA name or \"localtime\")
cairn: error: 7 value(s) cannot be carried over (above); nothing was written. Fix them in Zincati's fragments (an /etc/zincati/config.d file of the same name overrides a /usr/lib one) and run the import again
"
        )
    );
    assert!(!output.exists(), "nothing is written");
    // With the stream given, the template is filled in as Zincati did it.
    host.etc(
        "55-updates-strategy.toml",
        "[updates]\nstrategy = \"immediate\"\n",
    );
    let out = host.import(&["--stream", "stable"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("\nsource = \"cincinnati:https://updates.example.com/stable/\"\n"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_host_without_zincati_fragments_is_an_error() {
    let host = tempfile::tempdir().expect("temp dir");
    let r = host.path().display().to_string();
    let out = cairn(&["config", "import-zincati", "--root", &r]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "cairn: error: no Zincati configuration fragments (*.toml) in /usr/lib/zincati/config.d or /etc/zincati/config.d\n"
    );
}
