//! Inline SVG drawings of the dashboard: the update graph and rollout
//! timelines, each with a text alternative.
//!
//! Drawings scale with their `viewBox` (`width="100%"`), so they fit a
//! 390 px phone; marks differ by shape and by text, never by colour alone;
//! colours come from classes in `dashboard.css` (the CSP forbids inline
//! `style=`), with presentation attributes only for what must hold without
//! the stylesheet (`fill="none"` on lines).

use super::model::{GraphItem, ReleaseRow, StreamPage, TimelineSeries};
use super::pages::{expand_href, percent, short_time};
use jiff::Timestamp;
use maud::{Markup, html};
use std::collections::BTreeSet;

/// Width of the graph drawing, in `viewBox` units.
const GRAPH_WIDTH: f64 = 440.0;
/// Height of one graph row.
const ROW: f64 = 26.0;
/// Where the first row starts (below the legend).
const GRAPH_TOP: f64 = 34.0;
/// The x of the release marks; update arcs bulge to its left.
const NODE_X: f64 = 112.0;
/// The x where a row's text starts.
const TEXT_X: f64 = 126.0;

/// One formatted coordinate: one decimal is plenty and keeps pages small.
fn n(value: f64) -> String {
    let rounded = (value * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}")
    } else {
        format!("{rounded:.1}")
    }
}

/// What a release row says after its version: its states, in words.
pub(super) fn state_words(row: &ReleaseRow, newest: bool) -> Vec<String> {
    let mut words = Vec::new();
    let state = &row.state;
    if state.halt.is_some() {
        words.push("HALTED".to_string());
    }
    if let Some(deadend) = &state.deadend {
        words.push(if deadend.from_base.is_some() {
            "dead-end (from base)".to_string()
        } else {
            "dead-end".to_string()
        });
    }
    if let Some(barrier) = &state.barrier {
        words.push(if barrier.from_base.is_some() {
            "barrier (from base)".to_string()
        } else {
            "barrier".to_string()
        });
    }
    if let Some(rollout) = &state.rollout {
        words.push(format!("rollout {}", percent(rollout.share)));
    }
    if !row.available {
        words.push("unavailable".to_string());
    }
    if newest {
        words.push("newest".to_string());
    }
    words
}

/// The mark of a release: its shape says its most severe state.
fn release_mark(word: &str, y: f64) -> Markup {
    let x = NODE_X;
    match word {
        "halted" => {
            // An octagon: a stop sign.
            let r = 6.5;
            let k = r * 0.414;
            let points = [
                (x - k, y - r),
                (x + k, y - r),
                (x + r, y - k),
                (x + r, y + k),
                (x + k, y + r),
                (x - k, y + r),
                (x - r, y + k),
                (x - r, y - k),
            ]
            .iter()
            .map(|(px, py)| format!("{},{}", n(*px), n(*py)))
            .collect::<Vec<_>>()
            .join(" ");
            html! { polygon class="mark mark-halted" points=(points) {} }
        }
        "dead-end" => {
            // A triangle pointing down: the way ends here.
            let points = format!(
                "{},{} {},{} {},{}",
                n(x - 6.0),
                n(y - 5.0),
                n(x + 6.0),
                n(y - 5.0),
                n(x),
                n(y + 6.0)
            );
            html! { polygon class="mark mark-deadend" points=(points) {} }
        }
        "barrier" => {
            html! { rect class="mark mark-barrier" x=(n(x - 5.0)) y=(n(y - 5.0)) width="10" height="10" {} }
        }
        "rollout" => {
            // A ring: not yet offered to everyone.
            html! { circle class="mark mark-rollout" cx=(n(x)) cy=(n(y)) r="5" fill="none" stroke="currentColor" stroke-width="2.5" {} }
        }
        _ => html! { circle class="mark mark-plain" cx=(n(x)) cy=(n(y)) r="4.5" {} },
    }
}

/// A collapsed run's mark: three dots in a column.
fn run_mark(y: f64) -> Markup {
    html! {
        g class="mark mark-run" {
            circle cx=(n(NODE_X)) cy=(n(y - 7.0)) r="2" {}
            circle cx=(n(NODE_X)) cy=(n(y)) r="2" {}
            circle cx=(n(NODE_X)) cy=(n(y + 7.0)) r="2" {}
        }
    }
}

/// The text of a collapsed run, as in the drawing and its alternative.
pub(super) fn run_label(page: &StreamPage, first: usize, last: usize) -> String {
    let count = last.saturating_sub(first) + 1;
    let version = |index: usize| {
        page.releases
            .get(index)
            .map(|row| row.version.as_str())
            .unwrap_or("?")
    };
    format!("{count} releases: {} … {}", version(first), version(last))
}

/// An update arc as drawn: between rows, for some architectures.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct DrawnArc {
    from_row: usize,
    to_row: usize,
    arches: Vec<String>,
}

/// The update arcs between rows: arcs inside one collapsed run vanish and
/// arcs leaving a run for the same release merge into one.
fn drawn_arcs(page: &StreamPage, row_of: &[Option<usize>]) -> BTreeSet<DrawnArc> {
    let mut drawn = BTreeSet::new();
    for arc in &page.graph.arcs {
        let (Some(Some(from_row)), Some(Some(to_row))) =
            (row_of.get(arc.from).copied(), row_of.get(arc.to).copied())
        else {
            continue;
        };
        if from_row == to_row {
            continue;
        }
        let mut arches = arc.arches.clone();
        arches.sort();
        drawn.insert(DrawnArc {
            from_row,
            to_row,
            arches,
        });
    }
    drawn
}

/// The y of a row's centre.
fn row_y(row: usize) -> f64 {
    GRAPH_TOP + row as f64 * ROW + ROW / 2.0
}

/// The legend above the graph: every shape with its word.
fn legend() -> Markup {
    let y = 14.0;
    let entries: [(&str, &str, f64); 5] = [
        ("plain", "plain", 8.0),
        ("rollout", "rollout", 84.0),
        ("barrier", "barrier", 172.0),
        ("dead-end", "dead-end", 258.0),
        ("halted", "halted", 352.0),
    ];
    html! {
        g class="legend" {
            @for (word, label, x) in entries {
                g transform=(format!("translate({},0)", n(x - NODE_X))) {
                    (release_mark(word, y))
                }
                text x=(n(x + 10.0)) y=(n(y + 4.0)) font-size="12" { (label) }
            }
        }
    }
}

/// The update graph of a stream page: releases top to bottom in update
/// order, long plain runs collapsed into one linked row, one arc from each
/// release to the newest release a host on it takes once every rollout is
/// done (dashed, with its architectures named, where only some
/// architectures have it).
pub fn graph(page: &StreamPage) -> Markup {
    let items = &page.graph.items;
    let mut row_of = vec![None; page.releases.len()];
    for (row, item) in items.iter().enumerate() {
        let (first, last) = match item {
            GraphItem::Release { index } => (*index, *index),
            GraphItem::Collapsed { first, last, .. } => (*first, *last),
        };
        for slot in row_of.iter_mut().take(last.saturating_add(1)).skip(first) {
            *slot = Some(row);
        }
    }
    let arcs = drawn_arcs(page, &row_of);
    let height = GRAPH_TOP + items.len() as f64 * ROW + 8.0;
    let newest = page.releases.len().checked_sub(1);
    let collapsed = items
        .iter()
        .filter(|item| matches!(item, GraphItem::Collapsed { .. }))
        .count();
    let title = format!(
        "Update graph of {} ({}, {})",
        page.name, page.arch, page.scheme
    );
    let desc = format!(
        "{} releases, oldest at the top, in {} rows ({} collapsed runs of plain releases). \
         Each arc leads from a release to the newest release a host on it is offered once \
         every rollout is done; dashed arcs exist only for the architectures named. \
         Circles are plain releases, rings rollouts, squares barriers, downward triangles \
         dead-ends and octagons halted releases. The list after the drawing says the same in text.",
        page.releases.len(),
        items.len(),
        collapsed
    );
    html! {
        svg class="graph" role="img" aria-labelledby="graph-title graph-desc"
            viewBox=(format!("0 0 {} {}", n(GRAPH_WIDTH), n(height)))
            width="100%" preserveAspectRatio="xMinYMin meet" {
            title id="graph-title" { (title) }
            desc id="graph-desc" { (desc) }
            defs {
                marker id="graph-arrow" viewBox="0 0 8 8" refX="7" refY="4"
                    markerWidth="6" markerHeight="6" orient="auto" {
                    path d="M0,0 L8,4 L0,8 z" class="arrow-head" {}
                }
            }
            (legend())
            g class="arcs" {
                @for arc in &arcs {
                    @let y_from = row_y(arc.from_row);
                    @let y_to = row_y(arc.to_row);
                    @let rows = arc.from_row.abs_diff(arc.to_row) as f64;
                    @let bulge = (12.0 + rows * 5.0).min(NODE_X - 10.0);
                    @let x = NODE_X - 7.0;
                    @let d = format!(
                        "M{},{} C{},{} {},{} {},{}",
                        n(x), n(y_from), n(NODE_X - bulge), n(y_from),
                        n(NODE_X - bulge), n(y_to), n(x), n(y_to)
                    );
                    @let partial = !arc.arches.is_empty();
                    @let to_version = row_version(page, items, arc.to_row);
                    @let from_version = row_version(page, items, arc.from_row);
                    path class=(if partial { "arc arc-partial" } else { "arc" })
                        d=(d) fill="none" stroke="currentColor" stroke-width="1.3"
                        stroke-dasharray=[partial.then_some("4 3")]
                        marker-end="url(#graph-arrow)" {
                        title {
                            (from_version) " updates to " (to_version)
                            @if partial { " (only " (arc.arches.join(", ")) ")" }
                        }
                    }
                    @if partial {
                        text class="arc-label" font-size="10" text-anchor="end"
                            x=(n((NODE_X - bulge * 0.75 - 2.0).max(40.0)))
                            y=(n((y_from + y_to) / 2.0 + 3.0)) {
                            (arc.arches.join(", "))
                        }
                    }
                }
            }
            g class="rows" {
                @for (row, item) in items.iter().enumerate() {
                    @let y = row_y(row);
                    @match item {
                        GraphItem::Release { index } => {
                            @if let Some(release) = page.releases.get(*index) {
                                g class=(format!("row row-{}", release.state.word().replace('-', ""))) {
                                    title {
                                        (release.version) " (age " (release.age_index) "): "
                                        (release.state.word())
                                    }
                                    (release_mark(release.state.word(), y))
                                    text x=(n(TEXT_X)) y=(n(y + 4.5)) font-size="13" {
                                        tspan class="version" { (release.version) }
                                        @for word in state_words(release, newest == Some(*index)) {
                                            tspan class="state" { " · " (word) }
                                        }
                                    }
                                }
                            }
                        }
                        GraphItem::Collapsed { first, last, expand } => {
                            g class="row row-run" {
                                (run_mark(y))
                                a href=(expand_href(page, expand)) {
                                    title { "Expand " (run_label(page, *first, *last)) }
                                    text x=(n(TEXT_X)) y=(n(y + 4.5)) font-size="12" class="run-link" {
                                        (run_label(page, *first, *last))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The version a row stands for (a run: its first … last).
fn row_version(page: &StreamPage, items: &[GraphItem], row: usize) -> String {
    let version = |index: usize| {
        page.releases
            .get(index)
            .map(|release| release.version.clone())
            .unwrap_or_default()
    };
    match items.get(row) {
        Some(GraphItem::Release { index }) => version(*index),
        Some(GraphItem::Collapsed { first, last, .. }) => {
            format!("{} … {}", version(*first), version(*last))
        }
        None => String::new(),
    }
}

/// The graph in words, for screen readers and for browsers that do not
/// follow links inside SVG: one list item per row, runs as links.
pub fn graph_text(page: &StreamPage) -> Markup {
    let items = &page.graph.items;
    let newest = page.releases.len().checked_sub(1);
    let collapsed = items
        .iter()
        .any(|item| matches!(item, GraphItem::Collapsed { .. }));
    // Where each release's arcs lead, by release index.
    let mut updates: Vec<Vec<(usize, &[String])>> = vec![Vec::new(); page.releases.len()];
    for arc in &page.graph.arcs {
        if let Some(list) = updates.get_mut(arc.from) {
            list.push((arc.to, arc.arches.as_slice()));
        }
    }
    html! {
        p class="graph-links" {
            @if collapsed {
                a href=(expand_href(page, "all")) { "Expand every run" }
            } @else {
                a href=(expand_href(page, "")) { "Collapse long runs" }
            }
        }
        ol class="graph-text" {
            @for item in items {
                @match item {
                    GraphItem::Release { index } => {
                        @if let Some(release) = page.releases.get(*index) {
                            li {
                                strong { (release.version) }
                                @for word in state_words(release, newest == Some(*index)) {
                                    " · " (word)
                                }
                                @if let Some(list) = updates.get(*index) {
                                    @for (to, arches) in list {
                                        @if let Some(target) = page.releases.get(*to) {
                                            "; updates to " (target.version)
                                            @if !arches.is_empty() {
                                                " (only " (arches.join(", ")) ")"
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    GraphItem::Collapsed { first, last, expand } => {
                        li {
                            a href=(expand_href(page, expand)) {
                                (run_label(page, *first, *last)) ", plain: expand"
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A safe id fragment from a version: letters, digits and `-` only.
fn id_fragment(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Plot area of a timeline, in `viewBox` units.
const PLOT_LEFT: f64 = 48.0;
const PLOT_RIGHT: f64 = 424.0;
const PLOT_TOP: f64 = 30.0;
const PLOT_BOTTOM: f64 = 126.0;

/// A rollout's timeline: the share of the fleet (by wariness) offered the
/// release from its start until everyone has it, with "now" marked.
pub fn timeline(series: &TimelineSeries, now: Timestamp) -> Markup {
    let points: Vec<(i64, f64)> = series
        .points
        .iter()
        .filter_map(|(time, share)| {
            let at = time.parse::<Timestamp>().ok()?;
            Some((at.as_second(), share.clamp(0.0, 1.0)))
        })
        .collect();
    let id = format!("timeline-{}", id_fragment(&series.version));
    let title = format!(
        "Rollout of {}: share of the fleet offered over time",
        series.version
    );
    let (start, end) = match (points.first(), points.last()) {
        (Some(first), Some(last)) => (first.0, last.0.max(first.0 + 1)),
        _ => (now.as_second(), now.as_second() + 1),
    };
    let first_time = series.points.first().map(|(time, _)| time.as_str());
    let last_time = series.points.last().map(|(time, _)| time.as_str());
    let desc = format!(
        "Starts {}, reaches {} at {}; now ({}) {} of the fleet is offered it.",
        first_time.map(short_time).unwrap_or_else(|| "?".into()),
        points
            .last()
            .map(|(_, share)| percent(*share))
            .unwrap_or_else(|| "100%".into()),
        last_time.map(short_time).unwrap_or_else(|| "?".into()),
        short_time(&series.now),
        percent(series.share_now)
    );
    let span = (end - start) as f64;
    let x_of = |at: i64| {
        let at = at.clamp(start, end);
        PLOT_LEFT + (at - start) as f64 / span * (PLOT_RIGHT - PLOT_LEFT)
    };
    let y_of = |share: f64| PLOT_BOTTOM - share.clamp(0.0, 1.0) * (PLOT_BOTTOM - PLOT_TOP);
    let line = points
        .iter()
        .map(|(at, share)| format!("{},{}", n(x_of(*at)), n(y_of(*share))))
        .collect::<Vec<_>>()
        .join(" ");
    let area = format!(
        "{},{} {} {},{}",
        n(x_of(start)),
        n(PLOT_BOTTOM),
        line,
        n(x_of(end)),
        n(PLOT_BOTTOM)
    );
    let now_x = x_of(now.as_second());
    let now_y = y_of(series.share_now);
    let now_anchor = if now_x > (PLOT_LEFT + PLOT_RIGHT) / 2.0 {
        "end"
    } else {
        "start"
    };
    let now_label = if now.as_second() < start {
        format!("now (not started) · {}", percent(series.share_now))
    } else {
        format!("now · {}", percent(series.share_now))
    };
    let axis_time = |at: Option<&str>| {
        at.and_then(|text| text.parse::<Timestamp>().ok())
            .map(|at| at.strftime("%b %d %H:%M").to_string())
            .unwrap_or_default()
    };
    html! {
        svg class="timeline" role="img"
            aria-labelledby=(format!("{id}-title {id}-desc"))
            viewBox="0 0 440 152" width="100%" preserveAspectRatio="xMinYMin meet" {
            title id=(format!("{id}-title")) { (title) }
            desc id=(format!("{id}-desc")) { (desc) }
            g class="axes" font-size="13" {
                @for (share, label) in [(0.0, "0%"), (0.5, "50%"), (1.0, "100%")] {
                    line class="grid" x1=(n(PLOT_LEFT)) x2=(n(PLOT_RIGHT))
                        y1=(n(y_of(share))) y2=(n(y_of(share))) stroke="currentColor" stroke-width="0.5" {}
                    text x=(n(PLOT_LEFT - 4.0)) y=(n(y_of(share) + 4.0)) text-anchor="end" { (label) }
                }
                text x=(n(PLOT_LEFT)) y=(n(PLOT_BOTTOM + 18.0)) text-anchor="start" { (axis_time(first_time)) }
                text x=(n(PLOT_RIGHT)) y=(n(PLOT_BOTTOM + 18.0)) text-anchor="end" { (axis_time(last_time)) }
            }
            @if points.len() >= 2 {
                polygon class="timeline-area" points=(area) {}
                polyline class="timeline-line" points=(line) fill="none" stroke="currentColor" stroke-width="2" {}
            }
            g class="now" {
                line x1=(n(now_x)) x2=(n(now_x)) y1=(n(PLOT_TOP - 8.0)) y2=(n(PLOT_BOTTOM))
                    stroke="currentColor" stroke-width="1.5" stroke-dasharray="3 2" {}
                circle cx=(n(now_x)) cy=(n(now_y)) r="4" {}
                text x=(n(if now_anchor == "end" { now_x - 4.0 } else { now_x + 4.0 }))
                    y=(n(PLOT_TOP - 12.0)) text-anchor=(now_anchor) font-size="14" { (now_label) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::pages::tests::{assert_balanced, sample_page};
    use super::*;

    fn versions_drawn(svg: &str, page: &StreamPage) -> usize {
        page.releases
            .iter()
            .filter(|row| svg.contains(&format!("<tspan class=\"version\">{}<", row.version)))
            .count()
    }

    #[test]
    fn a_plain_run_of_ten_collapses_into_one_linked_row() {
        // Releases 6..=15 are plain (barrier at 2, dead-end at 5, halt at 17,
        // rollout at 19): one collapsed row.
        let page = sample_page(20, false, false);
        let run = page
            .graph
            .items
            .iter()
            .find_map(|item| match item {
                GraphItem::Collapsed { first, last, .. } => Some((*first, *last)),
                GraphItem::Release { .. } => None,
            })
            .expect("a collapsed run");
        assert_eq!(run, (6, 16));
        let svg = graph(&page).into_string();
        assert_balanced(&svg);
        assert!(svg.contains("<a href=\"?arch=x86_64&amp;scheme=oci&amp;expand=6#graph\"><title>"));
        assert!(svg.contains(">11 releases: 40.20250007.3.0 … 40.20250017.3.0</text></a>"));
        assert!(versions_drawn(&svg, &page) < page.releases.len() - 10);
        assert!(svg.contains("role=\"img\" aria-labelledby=\"graph-title graph-desc\""));
        assert!(
            svg.contains("<title id=\"graph-title\">") && svg.contains("<desc id=\"graph-desc\">")
        );
        assert!(svg.contains("width=\"100%\"") && svg.contains("viewBox=\"0 0 440 "));
        assert!(!svg.contains("style="));
        // Shapes and words for every state.
        for needle in [
            "mark-barrier",
            "mark-deadend",
            "mark-halted",
            "mark-rollout",
            "mark-run",
            " · HALTED",
            " · barrier",
            " · dead-end (from base)",
            " · rollout 42%",
        ] {
            assert!(svg.contains(needle), "the graph shows {needle}");
        }
        // The partial arc is dashed and names its architecture.
        assert!(svg.contains("stroke-dasharray=\"4 3\""));
        assert!(svg.contains("class=\"arc-label\" font-size=\"10\""));

        let text = graph_text(&page).into_string();
        assert_balanced(&text);
        assert!(text.contains("href=\"?arch=x86_64&amp;scheme=oci&amp;expand=6#graph\""));
        assert!(text.contains("expand=all"));
        assert!(text.contains(
            "<strong>40.20250004.3.0</strong>; updates to 40.20250020.3.0 (only aarch64)"
        ));
        assert!(text.contains("updates to 40.20250020.3.0"));
    }

    #[test]
    fn expanded_every_release_is_drawn() {
        let page = sample_page(20, true, false);
        let svg = graph(&page).into_string();
        assert_balanced(&svg);
        assert_eq!(versions_drawn(&svg, &page), page.releases.len());
        assert!(!svg.contains("mark-run"));
        let text = graph_text(&page).into_string();
        for row in &page.releases {
            assert!(text.contains(&format!("<strong>{}</strong>", row.version)));
        }
        assert!(text.contains("Collapse long runs"));
    }

    #[test]
    fn a_timeline_marks_now_with_its_share() {
        let page = sample_page(8, false, false);
        let series = &page.timeline[0];
        let now: Timestamp = "2026-05-01T12:00:00Z".parse().expect("time");
        let svg = timeline(series, now).into_string();
        assert_balanced(&svg);
        assert!(svg.contains("now · 42%"));
        assert!(svg.contains("<polyline class=\"timeline-line\""));
        // 12:00 is 60% of the way from 00:00 to 20:00: x = 48 + 0.6 * 376.
        assert!(svg.contains("x1=\"273.6\" x2=\"273.6\""), "{svg}");
        assert!(svg.contains(
            "aria-labelledby=\"timeline-40-20250008-3-0-title timeline-40-20250008-3-0-desc\""
        ));
        assert!(svg.contains("reaches 100% at 2026-05-01 20:00 UTC"));
        assert!(!svg.contains("style="));
    }
}
