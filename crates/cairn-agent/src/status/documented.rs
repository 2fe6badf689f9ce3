//! docs/agent.md lists the status schema's states, reason kinds and final
//! outcomes for people; these tests keep those lists and the code in step.

use super::StateName;
use crate::history::Outcome;
use crate::reason::ReasonKind;
use std::collections::BTreeSet;

const DOC: &str = include_str!("../../../../docs/agent.md");

/// The backticked words in `text`.
fn quoted(text: &str) -> BTreeSet<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// The text from the line starting with `heading` to the next blank line.
fn paragraph(heading: &str) -> &'static str {
    let start = DOC
        .find(heading)
        .unwrap_or_else(|| panic!("docs/agent.md has no {heading:?}"));
    let rest = &DOC[start..];
    &rest[..rest.find("\n\n").unwrap_or(rest.len())]
}

fn names<T: Copy>(all: &[T], name: fn(T) -> &'static str) -> BTreeSet<&'static str> {
    all.iter().map(|&x| name(x)).collect()
}

#[test]
fn the_documented_reason_kinds_are_the_code_s() {
    // The table after the heading: the kinds are in its first column.
    let section = &DOC[DOC.find("**Reason kinds**").expect("a reason-kind table")..];
    let table = section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2);
    let documented: BTreeSet<&str> = table
        .flat_map(|row| quoted(row.split('|').nth(1).unwrap_or_default()))
        .collect();
    assert_eq!(documented, names(&ReasonKind::ALL, ReasonKind::as_str));
}

#[test]
fn the_documented_states_are_the_code_s() {
    let text = paragraph("**States** (`state`):");
    let list = &text[text.find("):").expect("the list after the heading")..];
    assert_eq!(quoted(list), names(&StateName::ALL, StateName::as_str));
}

#[test]
fn the_documented_final_outcomes_are_the_code_s() {
    let row = DOC
        .lines()
        .find(|l| l.starts_with("| `lastOutcome` |"))
        .expect("a lastOutcome row");
    let words = &row[row.find("(hooks.md#history)):").expect("the final words")..];
    let finals: Vec<Outcome> = Outcome::ALL.into_iter().filter(|o| o.is_final()).collect();
    assert_eq!(quoted(words), names(&finals, Outcome::as_str));
}

/// The causes table: each row's reason kinds (first column) and causes.
fn cause_rows() -> Vec<(BTreeSet<&'static str>, BTreeSet<&'static str>)> {
    let section = &DOC[DOC
        .find("**Causes** (`reason.cause`)")
        .expect("a cause table")..];
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|row| {
            let mut cells = row.split('|').skip(1);
            let kinds = quoted(cells.next().unwrap_or_default());
            (kinds, quoted(cells.next().unwrap_or_default()))
        })
        .collect()
}

/// The causes documented for `kind`.
fn causes_of(kind: ReasonKind) -> BTreeSet<&'static str> {
    cause_rows()
        .into_iter()
        .filter(|(kinds, _)| kinds.contains(kind.as_str()))
        .flat_map(|(_, causes)| causes)
        .collect()
}

#[test]
fn the_documented_causes_are_snake_case_under_real_reason_kinds() {
    let known = names(&ReasonKind::ALL, ReasonKind::as_str);
    let rows = cause_rows();
    assert!(rows.len() > 5, "{rows:?}");
    for (kinds, causes) in rows {
        assert!(kinds.is_subset(&known), "{kinds:?}");
        for cause in causes.iter().filter(|c| !c.contains('.')) {
            assert!(
                cause.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{cause:?} is not snake_case"
            );
        }
    }
}

#[test]
fn the_host_tool_s_lock_server_s_and_source_setting_s_causes_are_documented() {
    use crate::fleetlock::LockError;
    use crate::host::driver::DriverError;
    let command = || "rpm-ostree deploy".to_string();
    let message = || "no".to_string();
    let host = [
        DriverError::NotInstalled {
            command: command(),
            message: message(),
        },
        DriverError::Run {
            command: command(),
            message: message(),
        },
        DriverError::TimedOut {
            command: command(),
            after: std::time::Duration::from_secs(1),
        },
        DriverError::Failed {
            command: command(),
            message: message(),
        },
        DriverError::Unsupported {
            command: command(),
            message: message(),
        },
        DriverError::OlderThanCurrent {
            command: command(),
            message: message(),
            release: "44.3".into(),
        },
        DriverError::Probe {
            command: command(),
            message: message(),
        },
    ];
    let documented = causes_of(ReasonKind::HostError);
    for e in host {
        assert!(documented.contains(e.kind()), "{} for {e}", e.kind());
    }
    let refused = |status| LockError::Refused {
        url: "http://lock/v1/pre-reboot".into(),
        status,
        kind: "k".into(),
        value: "v".into(),
    };
    let transport = LockError::Transport {
        url: "http://lock/v1/pre-reboot".into(),
        message: message(),
    };
    let documented = causes_of(ReasonKind::LockError);
    for e in [refused(409), refused(500), transport] {
        assert!(documented.contains(e.kind()), "{} for {e}", e.kind());
    }
    let documented = causes_of(ReasonKind::ConfigError);
    for bad in ["server:ftp://x", "nonsense"] {
        let e = crate::config::parse_source(bad).expect_err(bad);
        assert!(documented.contains(e.kind()), "{} for {e}", e.kind());
    }
    let e = cairn_oci::sources::BaseSource::parse("fcos:").expect_err("no stream");
    assert!(documented.contains(e.kind()), "{} for {e}", e.kind());
}
