//! Summaries of a document for people (text), scripts (JSON) and Graphviz (DOT).
//!
//! Each renderer writes to any `impl Write`, so the same code serves the
//! terminal and golden tests.

use crate::digest::short;
use crate::document::{GraphDocument, Release};
use crate::graph::{Scheme, UpdateGraph};
use crate::policy::describe_rollout;
use jiff::Timestamp;
use serde_json::{Value, json};
use std::io::{self, Write};

/// What to summarise.
#[derive(Debug, Clone)]
pub struct ShowOptions {
    /// Only this architecture; all of them when `None`.
    pub arch: Option<String>,
    /// Show the graph as a node of this wariness sees it.
    pub wariness: Option<f64>,
    /// The time rollout progress is computed for.
    pub now: Timestamp,
}

/// The graph of one architecture, as summarised.
struct ArchView {
    arch: String,
    full: UpdateGraph,
    seen: UpdateGraph,
}

fn scheme_for(document: &GraphDocument, arch: &str) -> Scheme {
    let has_digest = document.releases.iter().any(|release| {
        release
            .architectures
            .get(arch)
            .is_some_and(|entry| entry.digest.is_some())
    });
    if has_digest {
        Scheme::Oci
    } else {
        Scheme::Checksum
    }
}

fn views(document: &GraphDocument, options: &ShowOptions) -> Vec<ArchView> {
    let arches = match &options.arch {
        Some(arch) => vec![arch.clone()],
        None => document.architectures(),
    };
    arches
        .into_iter()
        .map(|arch| {
            let full = UpdateGraph::from_document(document, &arch, scheme_for(document, &arch));
            let seen = match options.wariness {
                Some(w) => full.throttled(w, options.now.as_second()),
                None => full.clone(),
            };
            ArchView { arch, full, seen }
        })
        .collect()
}

fn state_words(release: &Release, options: &ShowOptions) -> Vec<String> {
    let mut words = Vec::new();
    if let Some(base) = &release.base {
        words.push(match &base.version {
            Some(version) => format!("on base {version}"),
            None => format!(
                "on base {} (not in the base graph: no edges)",
                crate::digest::short(&base.digest)
            ),
        });
    }
    if let Some(barrier) = &release.barrier {
        words.push(format!("barrier ({})", or_generic(&barrier.describe())));
    }
    if let Some(deadend) = &release.deadend {
        words.push(format!("dead-end ({})", or_generic(&deadend.describe())));
    }
    if let Some(rollout) = &release.rollout {
        let now = options.now.as_second();
        let progress = rollout.progress_at(now);
        let mut text = format!("rollout {:.1}%", progress * 100.0);
        if rollout.duration_minutes.is_none() && rollout.start_value() < 1.0 {
            text.push_str(", paused");
        }
        if now < rollout.start() {
            text.push_str(&format!(", starts {}", when(rollout.start())));
        } else if let Some(end) = rollout.end().filter(|&end| now <= end) {
            text.push_str(&format!(", full at {}", when(end)));
        }
        if let Some(w) = options.wariness {
            let seen = if rollout.hides(w, now) {
                "hidden from"
            } else {
                "offered to"
            };
            text.push_str(&format!(", {seen} wariness {w}"));
        }
        words.push(text);
    }
    words
}

fn when(second: i64) -> String {
    Timestamp::from_second(second).map_or_else(|_| second.to_string(), |t| t.to_string())
}

fn or_generic(reason: &str) -> &str {
    if reason.is_empty() { "generic" } else { reason }
}

fn expiry_note(document: &GraphDocument, now: Timestamp) -> &'static str {
    if now > document.expires {
        " (EXPIRED: agents will not use it)"
    } else {
        ""
    }
}

/// A summary for people.
pub fn text(
    document: &GraphDocument,
    options: &ShowOptions,
    out: &mut impl Write,
) -> io::Result<()> {
    writeln!(
        out,
        "stream {} of {} (schema {}, sequence {})",
        document.stream, document.repository, document.schema, document.sequence
    )?;
    writeln!(
        out,
        "issued {}, expires {}{}",
        document.issued,
        document.expires,
        expiry_note(document, options.now)
    )?;
    writeln!(
        out,
        "{} releases; architectures: {}",
        document.releases.len(),
        document.architectures().join(", ")
    )?;
    if let Some(base) = &document.base {
        let barriers: Vec<&str> = base.barriers.iter().map(|b| b.version.as_str()).collect();
        writeln!(
            out,
            "derived from {} ({}); base barriers no edge may cross: {}",
            base.repository,
            base.source,
            if barriers.is_empty() {
                "none".to_string()
            } else {
                barriers.join(", ")
            }
        )?;
        writeln!(
            out,
            "releases in update order: by base release, then publication"
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:>5}  {:<24} {:<30} state",
        "age", "version", "architectures"
    )?;
    // In update order, so the last line is the newest release: for derived
    // releases, by base first (see `GraphDocument::update_order`).
    for (age, position) in document.update_order().into_iter().enumerate() {
        let release = &document.releases[position];
        let arches: Vec<&str> = release.architectures.keys().map(String::as_str).collect();
        let arches = if arches.is_empty() {
            "(source only)".to_string()
        } else {
            arches.join(",")
        };
        writeln!(
            out,
            "{age:>5}  {:<24} {:<30} {}",
            release.version,
            arches,
            state_words(release, options).join("; ")
        )?;
    }
    for view in views(document, options) {
        write_edges(&view, options, out)?;
    }
    if let Some(line) = not_offered_line(document) {
        writeln!(out, "\n{line}")?;
    }
    for warning in document.warnings() {
        writeln!(out, "warning: {warning}")?;
    }
    Ok(())
}

fn write_edges(view: &ArchView, options: &ShowOptions, out: &mut impl Write) -> io::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "{} ({}): {} nodes, {} edges{}",
        view.arch,
        view.full.scheme.as_str(),
        view.full.nodes().len(),
        view.seen.edges().count(),
        options
            .wariness
            .map(|w| format!(" seen at wariness {w} (of {})", view.full.edges().count()))
            .unwrap_or_default()
    )?;
    let mut by_target: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (from, to) in view.seen.edges() {
        by_target.entry(to).or_default().push(from);
    }
    for (target, mut sources) in by_target.into_iter().rev() {
        sources.sort_unstable();
        let node = &view.seen.nodes()[target];
        writeln!(
            out,
            "  {} [{}] <- {}",
            node.version,
            short(&node.id),
            sources_text(view.seen.nodes(), &sources)
        )?;
    }
    Ok(())
}

/// Lists longer than this are shown as a range and the releases it skips.
const LISTED_SOURCES: usize = 6;

/// `1 source: a`, `2 sources: a, c`, or for many `9 sources: a .. i, not c (dead-end)`,
/// so that a range never hides the releases it leaves out.
fn sources_text(nodes: &[crate::graph::Node], sources: &[usize]) -> String {
    let count = match sources.len() {
        1 => "1 source".to_string(),
        n => format!("{n} sources"),
    };
    let (Some(&first), Some(&last)) = (sources.first(), sources.last()) else {
        return count;
    };
    if sources.len() <= LISTED_SOURCES {
        let names: Vec<&str> = sources.iter().map(|&i| nodes[i].version.as_str()).collect();
        return format!("{count}: {}", names.join(", "));
    }
    let skipped: Vec<String> = (first..=last)
        .filter(|i| sources.binary_search(i).is_err())
        .map(|i| match nodes[i].deadend {
            Some(_) => format!("{} (dead-end)", nodes[i].version),
            None => nodes[i].version.clone(),
        })
        .collect();
    let mut text = format!(
        "{count}: {} .. {}",
        nodes[first].version, nodes[last].version
    );
    if !skipped.is_empty() {
        let shown = skipped.len().min(LISTED_SOURCES);
        text.push_str(&format!(", not {}", skipped[..shown].join(", ")));
        if skipped.len() > shown {
            text.push_str(&format!(" and {} more", skipped.len() - shown));
        }
    }
    text
}

/// Why no host is sent to `release`, in a word or two.
fn not_offered_reason(release: &Release) -> &'static str {
    if release.deadend.is_some() {
        "dead-end"
    } else if release.rollout.is_none() && release.barrier.is_none() {
        "no rollout or barrier"
    } else {
        "no edge leads to it"
    }
}

/// `not a target for any host: 44.3 (dead-end), …`, or `None` when every
/// release is a target: information for `graph show` and `publish`.
pub fn not_offered_line(document: &GraphDocument) -> Option<String> {
    let listed: Vec<String> = crate::assemble::not_offered(document)
        .into_iter()
        .map(|version| match document.release(&version) {
            Some((_, release)) => format!("{version} ({})", not_offered_reason(release)),
            None => version,
        })
        .collect();
    if listed.is_empty() {
        return None;
    }
    Some(format!("not a target for any host: {}", listed.join(", ")))
}

/// A summary for scripts.
pub fn json(
    document: &GraphDocument,
    options: &ShowOptions,
    out: &mut impl Write,
) -> io::Result<()> {
    let now = options.now.as_second();
    let releases: Vec<Value> = document
        .update_order()
        .into_iter()
        .enumerate()
        .map(|(age, position)| {
            let release = &document.releases[position];
            json!({
                "age_index": age,
                "position": position,
                "version": release.version,
                "architectures": release.architectures.keys().collect::<Vec<_>>(),
                "barrier": release.barrier.as_ref().map(|b| &b.reason),
                "deadend": release.deadend.as_ref().map(|d| &d.reason),
                "inherited_from": release
                    .barrier
                    .iter()
                    .chain(&release.deadend)
                    .find_map(|r| r.from_base.as_ref()),
                "base": release.base.as_ref().map(|b| json!({
                    "repository": b.repository,
                    "digest": b.digest,
                    "version": b.version,
                    "age_index": b.age_index,
                })),
                "rollout": release.rollout.map(|r| json!({
                    "start_epoch": r.start(),
                    "start_percentage": r.start_value(),
                    "duration_minutes": r.duration_minutes,
                    "progress": r.progress_at(now),
                    "hidden": options.wariness.map(|w| r.hides(w, now)),
                })),
            })
        })
        .collect();
    let graphs: Vec<Value> = views(document, options)
        .iter()
        .map(|view| {
            let by_age = |i: usize| view.seen.nodes()[i].age_index;
            json!({
                "arch": view.arch,
                "scheme": view.full.scheme.as_str(),
                "nodes": view.full.nodes().len(),
                "edges": view.seen.edges().map(|(a, b)| [by_age(a), by_age(b)]).collect::<Vec<_>>(),
            })
        })
        .collect();
    let summary = json!({
        "schema": document.schema,
        "stream": document.stream,
        "repository": document.repository,
        "sequence": document.sequence,
        "issued": document.issued.to_string(),
        "expires": document.expires.to_string(),
        "expired": options.now > document.expires,
        "now": options.now.to_string(),
        "wariness": options.wariness,
        "releases": releases,
        "graphs": graphs,
        "warnings": document.warnings(),
        "not_offered": crate::assemble::not_offered(document),
    });
    serde_json::to_writer_pretty(&mut *out, &summary)?;
    writeln!(out)
}

/// A Graphviz digraph, one cluster per architecture.
pub fn dot(
    document: &GraphDocument,
    options: &ShowOptions,
    out: &mut impl Write,
) -> io::Result<()> {
    writeln!(out, "digraph cairn {{")?;
    writeln!(out, "  rankdir=LR;")?;
    writeln!(
        out,
        "  label={};",
        quote(&format!("{} {}", document.repository, document.stream))
    )?;
    writeln!(out, "  node [shape=ellipse, fontsize=10];")?;
    for (n, view) in views(document, options).iter().enumerate() {
        writeln!(out, "  subgraph cluster_{n} {{")?;
        writeln!(out, "    label={};", quote(&view.arch))?;
        let now = options.now.as_second();
        for node in view.full.nodes() {
            let mut label = escape(&node.version);
            let mut attributes = Vec::new();
            if node.barrier.is_some() {
                label.push_str("\\nbarrier");
                attributes.push("shape=box".to_string());
            }
            if node.deadend.is_some() {
                label.push_str("\\ndead-end");
                attributes.push("color=red, fontcolor=red".to_string());
            }
            if let Some(rollout) = node.rollout {
                label.push_str(&format!(
                    "\\nrollout {:.0}%",
                    rollout.progress_at(now) * 100.0
                ));
                attributes.push("style=dashed".to_string());
            }
            attributes.push(format!("label=\"{label}\""));
            writeln!(
                out,
                "    n{n}_{} [{}];",
                node.age_index,
                attributes.join(", ")
            )?;
        }
        let seen: std::collections::HashSet<(usize, usize)> = view.seen.edges().collect();
        for (from, to) in view.full.edges() {
            let hidden = !seen.contains(&(from, to));
            let style = if hidden {
                " [style=dotted, color=gray]"
            } else {
                ""
            };
            writeln!(
                out,
                "    n{n}_{} -> n{n}_{}{style};",
                view.full.nodes()[from].age_index,
                view.full.nodes()[to].age_index
            )?;
        }
        writeln!(out, "  }}")?;
    }
    for warning in document.warnings() {
        writeln!(out, "  // warning: {}", warning.replace('\n', " "))?;
    }
    writeln!(out, "}}")
}

fn quote(text: &str) -> String {
    format!("\"{}\"", escape(text))
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// What changed from `old` to `new`, one line per change, for `publish
/// --dry-run`, in `cairn policy`'s words: `44.5: rollout paused at 5% (was
/// 5% → 100% over 2 d from 2026-03-10 12:00 UTC)`.
pub fn diff(old: Option<&GraphDocument>, new: &GraphDocument) -> Vec<String> {
    let empty = Vec::new();
    let old_releases = old.map_or(&empty, |d| &d.releases);
    let mut lines = Vec::new();
    for (position, release) in new.releases.iter().enumerate() {
        let version = &release.version;
        let Some(before) = old_releases.get(position) else {
            let arches: Vec<&str> = release.architectures.keys().map(String::as_str).collect();
            let mut words = vec![format!("new release [{}]", arches.join(","))];
            words.extend(
                release
                    .barrier
                    .as_ref()
                    .map(|r| format!("barrier {}", reason(r))),
            );
            words.extend(
                release
                    .deadend
                    .as_ref()
                    .map(|r| format!("dead-end {}", reason(r))),
            );
            words.push(match &release.rollout {
                Some(rollout) => format!("rollout {}", describe_rollout(rollout)),
                None => "no rollout".to_string(),
            });
            lines.push(format!("{version}: {}", words.join(", ")));
            continue;
        };
        let mut changes = Vec::new();
        for (what, was, now) in [
            ("barrier", &before.barrier, &release.barrier),
            ("dead-end", &before.deadend, &release.deadend),
        ] {
            changes.extend(reason_change(what, was.as_ref(), now.as_ref()));
        }
        if before.rollout != release.rollout {
            let words = |rollout: &Option<crate::Rollout>| match rollout {
                Some(rollout) => describe_rollout(rollout),
                None => "none".to_string(),
            };
            changes.push(match release.rollout {
                Some(_) => format!(
                    "rollout {} (was {})",
                    words(&release.rollout),
                    words(&before.rollout)
                ),
                None => format!("rollout stopped (was {})", words(&before.rollout)),
            });
        }
        for (arch, entry) in &release.architectures {
            match before.architectures.get(arch) {
                None => changes.push(format!("new architecture {arch}")),
                Some(old_entry) if old_entry.available != entry.available => changes.push(format!(
                    "{arch} {}",
                    if entry.available {
                        "available again"
                    } else {
                        "no longer in the registry"
                    }
                )),
                Some(old_entry) if old_entry != entry => {
                    changes.push(format!("{arch} entry changed"))
                }
                Some(_) => {}
            }
        }
        lines.extend(
            changes
                .into_iter()
                .map(|change| format!("{version}: {change}")),
        );
    }
    lines
}

/// A barrier's or dead-end's reason, quoted, with where it was inherited from.
fn reason(reason: &crate::document::Reason) -> String {
    match &reason.from_base {
        Some(base) => format!("{:?} (inherited from base {base})", reason.reason),
        None => format!("{:?}", reason.reason),
    }
}

/// `barrier "x" (was none)`, `barrier reason "x" (was "y")`, `barrier removed (was "y")`.
fn reason_change(
    what: &str,
    was: Option<&crate::document::Reason>,
    now: Option<&crate::document::Reason>,
) -> Option<String> {
    match (was, now) {
        (was, now) if was == now => None,
        (None, Some(now)) => Some(format!("{what} {} (was none)", reason(now))),
        (Some(was), None) => Some(format!("{what} removed (was {})", reason(was))),
        (Some(was), Some(now)) => Some(format!(
            "{what} reason {} (was {})",
            reason(now),
            reason(was)
        )),
        (None, None) => None,
    }
}
