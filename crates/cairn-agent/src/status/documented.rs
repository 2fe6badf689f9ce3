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
