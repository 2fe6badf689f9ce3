//! A stand-in `systemctl` for the questions the agent asks a host's systemd
//! (other updaters, boot-complete.target, greenboot), answered from flag
//! files a test sets.

use std::path::{Path, PathBuf};

/// The stand-in, in its own directory with its flag files.
#[derive(Debug, Clone)]
pub struct FakeSystemctl {
    pub path: PathBuf,
}

impl FakeSystemctl {
    /// Write the stand-in into `dir`: no other updater is enabled;
    /// boot-complete.target and greenboot as the flags say, or nothing
    /// asking for boot-complete.target at all; or no answer (`down`).
    pub fn new(dir: &Path) -> FakeSystemctl {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).expect("mkdir");
        let path = dir.join("systemctl");
        let flags = dir.display();
        std::fs::write(
            &path,
            format!(
                r#"#!/bin/sh
[ -e '{flags}/down' ] && {{ echo 'Failed to connect to bus: No such file or directory' >&2; exit 1; }}
case "$*" in
  "is-enabled "*) echo disabled; exit 1 ;;
  "is-failed --quiet boot-complete.target") exit 1 ;;
  "show --property=Requires --value boot-complete.target") [ -e '{flags}/no-health-checks' ] || echo health-check.service; exit 0 ;;
  "is-failed --quiet health-check.service") [ -e '{flags}/boot-complete-failed' ] && exit 0; exit 1 ;;
  "list-jobs --no-legend boot-complete.target") exit 0 ;;
  "show --property=LoadState --value greenboot-healthcheck.service") [ -e '{flags}/greenboot' ] && echo loaded || echo not-found; exit 0 ;;
  "is-failed --quiet greenboot-healthcheck.service") [ -e '{flags}/greenboot-failed' ] && exit 0; exit 1 ;;
  "is-active boot-complete.target") if [ -e '{flags}/boot-complete-failed' ] || [ -e '{flags}/no-health-checks' ]; then echo inactive; exit 3; fi; echo active; exit 0 ;;
esac
echo "unexpected: $*" >&2; exit 1
"#
            ),
        )
        .expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        FakeSystemctl { path }
    }

    /// Set or clear the flag file `name`.
    pub fn flag(&self, name: &str, on: bool) {
        let path = self.path.parent().expect("dir").join(name);
        if on {
            std::fs::write(&path, "").expect("flag");
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }

    /// Say how this boot went.
    pub fn boot(&self, boot_complete_failed: bool, greenboot_failed: Option<bool>) {
        self.flag("boot-complete-failed", boot_complete_failed);
        self.flag("greenboot", greenboot_failed.is_some());
        self.flag("greenboot-failed", greenboot_failed == Some(true));
    }

    /// A host with nothing that asks for boot-complete.target: no unit
    /// requires it and it is never started, so health cannot be judged.
    pub fn no_health_checks(&self) {
        self.flag("no-health-checks", true);
    }
}
