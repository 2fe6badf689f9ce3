//! The dashboard's HTML pages, rendered on the server from the view model.
//!
//! Every render function here is pure: a [`super::model`] value in, maud
//! [`Markup`] out. maud escapes every value, so nothing from a release
//! document, a report or a request can turn into markup; notices are a
//! fixed map from a kind to fixed text, so no input is ever echoed.
//! The pages work without JavaScript: `dashboard.js` only refreshes them.

use super::model::{
    HaltMark, HostDecision, LockGroup, Locks, Marked, Overview, ReleaseRow, RolloutProgress,
    SourceHealth, StreamPage, StreamSummary, Viewer,
};
use super::svg;
use crate::AppState;
use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::Timestamp;
use maud::{DOCTYPE, Markup, html};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// The stylesheet, embedded in the binary.
pub const DASHBOARD_CSS: &str = include_str!("assets/dashboard.css");
/// The auto-refresh script, embedded in the binary.
pub const DASHBOARD_JS: &str = include_str!("assets/dashboard.js");

/// The Content-Security-Policy of every dashboard response: nothing from
/// other hosts, no inline script or style, forms only to this server, and
/// requests from scripts (the auto-refresh) only to this server.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     connect-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// The version in asset URLs, so a new build's assets are fetched anew
/// despite the long cache.
const ASSET_VERSION: &str = env!("CARGO_PKG_VERSION");

/// `/`, `/streams/{stream}`, `/locks`, `/login` (see [`handlers`]) and the
/// static assets `/static/dashboard.css` and `/static/dashboard.js`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/static/dashboard.css", get(stylesheet))
        .route("/static/dashboard.js", get(script))
        .route("/", get(handlers::overview))
        .route("/streams/{stream}", get(handlers::stream))
        .route("/locks", get(handlers::locks))
        .route("/login", get(handlers::login))
}

async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", DASHBOARD_CSS)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", DASHBOARD_JS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    security_headers(headers);
    response
}

/// Adds the dashboard's security headers (CSP, `nosniff`, no referrer) to
/// any response's headers.
pub fn security_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

/// A `200 OK` HTML page with the dashboard's security headers. Pages are
/// `no-store`: they carry the session's CSRF token and change every refresh.
pub fn secure_html(markup: Markup) -> Response {
    secure_html_status(StatusCode::OK, markup)
}

/// [`secure_html`] with another status (an error page).
pub fn secure_html_status(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    security_headers(headers);
    response
}

/// Characters kept as they are in a path segment or query value.
const URL_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A path segment or query value, percent-encoded.
pub(super) fn url_value(text: &str) -> String {
    utf8_percent_encode(text, URL_VALUE).to_string()
}

/// The page of a stream.
pub(super) fn stream_href(name: &str) -> String {
    format!("/streams/{}", url_value(name))
}

/// A link to the stream page shown, with other runs expanded: `expand` is
/// the model's `expand=<first>` (or just its value); empty: none expanded.
pub(super) fn expand_href(page: &StreamPage, expand: &str) -> String {
    let value = expand.strip_prefix("expand=").unwrap_or(expand);
    let mut href = format!(
        "?arch={}&scheme={}",
        url_value(&page.arch),
        url_value(&page.scheme)
    );
    if !value.is_empty() {
        href.push_str("&expand=");
        href.push_str(&url_value(value));
    }
    href.push_str("#graph");
    href
}

/// A share in [0, 1] as a percentage people read: whole percents, with one
/// decimal below 10% so an early rollout does not read "0%".
pub(super) fn percent(share: f64) -> String {
    let value = (share * 100.0).clamp(0.0, 100.0);
    if value < 10.0 && value.fract() != 0.0 {
        format!("{value:.1}%")
    } else {
        format!("{value:.0}%")
    }
}

/// An RFC 3339 time as people read it (UTC, to the minute); anything else
/// as it is.
pub(super) fn short_time(rfc3339: &str) -> String {
    match rfc3339.parse::<Timestamp>() {
        Ok(at) => at.strftime("%Y-%m-%d %H:%M UTC").to_string(),
        Err(_) => rfc3339.to_string(),
    }
}

/// A `<time>` element for an RFC 3339 time.
fn when(rfc3339: &str) -> Markup {
    html! { time datetime=(rfc3339) { (short_time(rfc3339)) } }
}

/// A span of seconds in words: "2 h 5 min", "4 min 10 s", "12 s".
fn duration(seconds: u64) -> String {
    let (hours, minutes, secs) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    match (hours, minutes) {
        (0, 0) => format!("{secs} s"),
        (0, _) if secs == 0 => format!("{minutes} min"),
        (0, _) => format!("{minutes} min {secs} s"),
        _ if minutes == 0 => format!("{hours} h"),
        _ => format!("{hours} h {minutes} min"),
    }
}

/// The fixed text of a notice kind (`?notice=`): a class and the sentence.
/// Unknown kinds show nothing: the query is never echoed.
pub fn notice_text(kind: &str) -> Option<(&'static str, &'static str)> {
    let notice = super::session::Notice::parse(kind)?;
    let class = if notice.is_success() { "ok" } else { "error" };
    Some((class, notice.message()))
}

/// Which nav entry is the current page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Current<'a> {
    Overview,
    Stream(&'a str),
    Locks,
    Login,
    Other,
}

/// What every page has around its content.
struct Frame<'a> {
    title: &'a str,
    current: Current<'a>,
    streams: &'a [String],
    viewer: &'a Viewer,
    notice: Option<&'a str>,
    now: Option<&'a str>,
}

fn layout(frame: &Frame<'_>, content: Markup) -> Markup {
    let page_marker = |entry: Current<'_>| (frame.current == entry).then_some("page");
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (frame.title) " · Cairn" }
                // No icon: an empty one keeps browsers from asking for
                // /favicon.ico (a failed request on every page).
                link rel="icon" href="data:,";
                link rel="stylesheet" href=(format!("/static/dashboard.css?v={ASSET_VERSION}"));
                script src=(format!("/static/dashboard.js?v={ASSET_VERSION}")) defer {}
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header class="site" {
                    nav aria-label="Dashboard" {
                        ul {
                            li { a href="/" aria-current=[page_marker(Current::Overview)] { "Overview" } }
                            @for name in frame.streams {
                                li {
                                    a href=(stream_href(name))
                                        aria-current=[page_marker(Current::Stream(name))] { (name) }
                                }
                            }
                            li { a href="/locks" aria-current=[page_marker(Current::Locks)] { "Locks" } }
                        }
                    }
                    div class="account" {
                        @if let Some(name) = &frame.viewer.name {
                            span { "Logged in as " strong { (name) } }
                            @if let Some(csrf) = &frame.viewer.csrf {
                                form method="post" action="/logout" class="inline" {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button type="submit" { "Log out" }
                                }
                            }
                        } @else {
                            span { "Read-only" }
                            @if frame.current != Current::Login {
                                " · "
                                a href="/login" { "Log in" }
                            }
                        }
                    }
                }
                main id="main" {
                    @if let Some((class, text)) = frame.notice.and_then(notice_text) {
                        p class=(format!("notice notice-{class}")) role="status" { (text) }
                    }
                    (content)
                }
                footer {
                    "Cairn " (ASSET_VERSION)
                    @if let Some(now) = frame.now { " · as of " (when(now)) }
                    " · with JavaScript on, this page refreshes every 30 seconds."
                }
            }
        }
    }
}

/// A state tag: the word is always written, the colour only repeats it.
fn tag(class: &str, word: &str) -> Markup {
    html! { span class=(format!("tag tag-{class}")) { (word) } }
}

/// A source's health: up or failing in words, last good refresh, error.
fn health(health: &SourceHealth) -> Markup {
    html! {
        dl class="facts" {
            dt { "Source" }
            dd {
                @if health.up { (tag("up", "Up")) } @else { (tag("failing", "Failing")) }
            }
            dt { "Last good refresh" }
            dd {
                @match &health.last_success { Some(at) => (when(at)), None => "never" }
            }
            @if let Some(error) = &health.error {
                dt { "Last error" }
                dd { code { (error.kind) } ": " (error.message) }
            }
            @if let Some(sequence) = health.sequence {
                dt { "Document sequence" }
                dd { (sequence) }
            }
            @if let Some(expires) = &health.expires {
                dt { "Document expires" }
                dd { (when(expires)) }
            }
            @if let Some(version) = health.root_version {
                dt { "Trust root" }
                dd {
                    @if version == 0 { "version 0 (the configured keys)" } @else { "version " (version) }
                }
            }
        }
    }
}

/// A rollout's bar with its percentage in text and when it is full.
fn rollout_bar(rollout: &RolloutProgress) -> Markup {
    let value = format!("{:.1}", (rollout.share * 100.0).clamp(0.0, 100.0));
    html! {
        span class="rollout" {
            progress max="100" value=(value) aria-label="Share of the fleet offered" { (percent(rollout.share)) }
            " " strong { (percent(rollout.share)) } " offered"
            @match &rollout.full_at {
                Some(at) => { ", 100% at " (when(at)) }
                None => { ", never grows" }
            }
        }
    }
}

/// A halt, highlighted, with what tripped it and the resume command.
fn halt_block(halt: &HaltMark) -> Markup {
    html! {
        div class="halt" {
            p {
                (tag("halted", "Halted")) " "
                strong { (halt.version) } " by " (halt.tripped_by) ", " (when(&halt.time))
            }
            p { "Reason: " (halt.reason) }
            p class="resume" { "Resume (the release team, signed): " }
            pre { code { (halt.resume_command) } }
        }
    }
}

/// The link in a barrier or dead-end reason, only if it is http(s).
fn reason_link(marked: &Marked) -> Option<&str> {
    marked
        .link
        .as_deref()
        .filter(|link| link.starts_with("https://") || link.starts_with("http://"))
}

fn marked(kind: &str, word: &str, marked: &Marked) -> Markup {
    html! {
        div class="state-line" {
            (tag(kind, word)) " " (marked.reason)
            @if let Some(link) = reason_link(marked) {
                " " a href=(link) rel="noreferrer" { "(link)" }
            }
            @if let Some(base) = &marked.from_base {
                " " span class="from-base" { "from base " code { (base) } }
            }
        }
    }
}

// ---------------------------------------------------------------- overview

/// `/`: every stream at a glance, halted releases and lock groups first
/// to the eye.
pub fn overview(overview: &Overview, viewer: &Viewer, notice: Option<&str>) -> Markup {
    let streams: Vec<String> = overview.streams.iter().map(|s| s.name.clone()).collect();
    let frame = Frame {
        title: "Overview",
        current: Current::Overview,
        streams: &streams,
        viewer,
        notice,
        now: Some(&overview.now),
    };
    let content = html! {
        h1 { "Overview" }
        @if let Some(error) = &overview.fleet_lock_error {
            p class="notice notice-error" { "The reboot locks could not be read: " (error) }
        }
        @if !overview.halted_lock_groups.is_empty() {
            section class="alert" aria-labelledby="halted-groups" {
                h2 id="halted-groups" { (tag("halted", "Halted")) " reboot lock groups" }
                ul {
                    @for group in &overview.halted_lock_groups {
                        li {
                            strong { (group.name) }
                            @if let Some(halt) = &group.halt {
                                ": " (halt.reason)
                                @if !halt.detail.is_empty() { " (" (halt.detail) ")" }
                                ", " (when(&halt.at))
                            }
                        }
                    }
                }
                p { a href="/locks" { "See the reboot locks" } }
            }
        }
        @if overview.streams.is_empty() {
            p { "No stream is configured." }
        }
        @for stream in &overview.streams {
            (stream_card(stream))
        }
        @if !overview.fleet_lock {
            p class="muted" { "FleetLock reboot locks are not configured on this server." }
        }
    };
    layout(&frame, content)
}

fn stream_card(stream: &StreamSummary) -> Markup {
    let heading = format!("stream-{}", url_value(&stream.name));
    html! {
        section class=(if stream.halted.is_empty() { "card" } else { "card alert" })
            aria-labelledby=(heading) {
            h2 id=(heading) {
                a href=(stream_href(&stream.name)) { (stream.name) }
                @if !stream.halted.is_empty() { " " (tag("halted", "Halted")) }
            }
            (health(&stream.health))
            dl class="facts" {
                dt { "Newest release" }
                dd {
                    @match &stream.newest {
                        Some(newest) => { strong { (newest.version) } " (age " (newest.age_index) ")" }
                        None => "no graph served yet",
                    }
                }
                dt { "Releases" }
                dd { (stream.releases) }
            }
            @if !stream.rollouts.is_empty() {
                h3 { "Rollouts in progress" }
                ul class="plain" {
                    @for rollout in &stream.rollouts {
                        li { strong { (rollout.version) } " " (rollout_bar(rollout)) }
                    }
                }
            }
            @for halt in &stream.halted {
                (halt_block(halt))
            }
        }
    }
}

// ------------------------------------------------------------- stream page

/// `/streams/{stream}`: the releases, the graph, rollout timelines, the
/// "what would this host get" control, outcomes and halts. `streams` names
/// every configured stream, for the navigation.
pub fn stream(
    page: &StreamPage,
    viewer: &Viewer,
    decision: Option<Result<&HostDecision, &str>>,
    notice: Option<&str>,
    streams: &[String],
) -> Markup {
    let frame = Frame {
        title: &page.name,
        current: Current::Stream(&page.name),
        streams,
        viewer,
        notice,
        now: Some(&page.now),
    };
    let now = page.now.parse::<Timestamp>().ok();
    let content = html! {
        h1 { "Stream " (page.name) }
        (health(&page.health))
        @if let Some(base) = &page.base {
            p { "Derived from base " code { (base.repository) } ", its graph read from " code { (base.source) } "." }
            @if !base.barriers.is_empty() {
                ul class="base-barriers" aria-label="The base's barriers" {
                    @for barrier in &base.barriers {
                        li {
                            (tag("barrier", "Base barrier")) " " strong { (barrier.version) }
                            @if !barrier.reason.is_empty() { ": " (barrier.reason) }
                            @if let Some(link) = &barrier.link { " " a href=(link) { "(link)" } }
                            @if barrier.built_on.is_empty() {
                                " — no release of this stream is built on it yet, so hosts on older bases wait for one."
                            } @else {
                                " — inherited by " (barrier.built_on.join(", ")) "."
                            }
                        }
                    }
                }
            }
        }
        (switcher(page))
        nav class="toc" aria-label="On this page" {
            ul {
                li { a href="#rollouts" { "Rollouts" } }
                li { a href="#host" { "What would a host get" } }
                li { a href="#graph" { "Graph" } }
                li { a href="#releases" { "Releases" } }
                li { a href="#outcomes" { "Outcomes" } }
                li { a href="#halts" { "Halts" } }
            }
        }
        @if !page.halts.halted.is_empty() {
            section class="alert" aria-labelledby="halted-now" {
                h2 id="halted-now" { (tag("halted", "Halted")) " releases" }
                @for halt in &page.halts.halted { (halt_block(halt)) }
            }
        }
        section aria-labelledby="rollouts" {
            h2 id="rollouts" { "Rollouts" }
            @if page.timeline.is_empty() {
                p { "No rollout in progress." }
            }
            @for series in &page.timeline {
                figure {
                    @if let Some(now) = now { (svg::timeline(series, now)) }
                    figcaption {
                        strong { (series.version) } ": " (percent(series.share_now)) " of the fleet offered now"
                        @if let (Some(first), Some(last)) = (series.points.first(), series.points.last()) {
                            "; started " (when(&first.0)) ", " (percent(last.1)) " at " (when(&last.0))
                        }
                        "."
                    }
                }
            }
        }
        (host_control(page, decision))
        section aria-labelledby="graph" {
            h2 id="graph" { "Update graph" }
            div class="figure" { (svg::graph(page)) }
            h3 { "The graph in text" }
            (svg::graph_text(page))
        }
        section aria-labelledby="releases" {
            h2 id="releases" { "Releases" }
            (releases_table(page))
        }
        (outcomes(page))
        (halts(page, viewer))
    };
    layout(&frame, content)
}

fn switcher(page: &StreamPage) -> Markup {
    let href = |arch: &str, scheme: &str| {
        format!("?arch={}&scheme={}", url_value(arch), url_value(scheme))
    };
    html! {
        nav class="switcher" aria-label="Architecture and scheme" {
            span { "Architecture: " }
            ul {
                @for arch in &page.arches {
                    li {
                        a href=(href(arch, &page.scheme))
                            aria-current=[(arch == &page.arch).then_some("page")] { (arch) }
                    }
                }
            }
            span { "Scheme: " }
            ul {
                @for scheme in &page.schemes {
                    li {
                        a href=(href(&page.arch, scheme))
                            aria-current=[(scheme == &page.scheme).then_some("page")] { (scheme) }
                    }
                }
            }
        }
    }
}

fn releases_table(page: &StreamPage) -> Markup {
    html! {
        div class="table-wrap" {
            table class="releases" {
                caption { "Oldest first, in update order; architecture " (page.arch) "." }
                thead {
                    tr {
                        th scope="col" { "Age" }
                        th scope="col" { "Version" }
                        th scope="col" { "Architectures" }
                        th scope="col" { "Base release" }
                        th scope="col" { "State" }
                    }
                }
                tbody {
                    @for row in &page.releases { (release_row(row, &page.arch)) }
                }
            }
        }
    }
}

fn release_row(row: &ReleaseRow, arch: &str) -> Markup {
    let state = &row.state;
    html! {
        tr class=(format!("state-{}", state.word())) {
            td data-label="Age" { (row.age_index) }
            th scope="row" { (row.version) }
            td data-label="Architectures" { (row.architectures.join(", ")) }
            td data-label="Base release" { @if let Some(base) = &row.base_release { (base) } }
            td {
                @if let Some(halt) = &state.halt {
                    div class="state-line" {
                        (tag("halted", "Halted")) " by " (halt.tripped_by) ", " (when(&halt.time)) ": " (halt.reason)
                    }
                    pre { code { (halt.resume_command) } }
                }
                @if let Some(deadend) = &state.deadend { (marked("deadend", "Dead-end", deadend)) }
                @if let Some(barrier) = &state.barrier { (marked("barrier", "Barrier", barrier)) }
                @if let Some(rollout) = &state.rollout {
                    div class="state-line" { (tag("rollout", "Rollout")) " " (rollout_bar(rollout)) }
                }
                @if state.word() == "plain" { span class="muted" { "plain" } }
                @if !row.available {
                    div class="state-line" { (tag("unavailable", "Unavailable")) " on " (arch) }
                }
            }
        }
    }
}

/// The "what would this host get" form, with the answer (or why there is
/// none) when it was asked.
fn host_control(page: &StreamPage, asked: Option<Result<&HostDecision, &str>>) -> Markup {
    let action = format!("{}#host", stream_href(&page.name));
    let decision = asked.and_then(Result::ok);
    let wariness = decision.map(|decision| decision.wariness.to_string());
    let booted = decision.and_then(|decision| decision.booted.clone());
    html! {
        section aria-labelledby="host" {
            h2 id="host" { "What would this host get?" }
            p { "The decision the agent makes now, for a host of this stream." }
            form method="get" action=(action) class="ask" {
                input type="hidden" name="scheme" value=(page.scheme);
                div {
                    label for="ask-arch" { "Architecture" }
                    select id="ask-arch" name="arch" {
                        @for arch in &page.arches {
                            option value=(arch) selected[arch == &page.arch] { (arch) }
                        }
                    }
                }
                div {
                    label for="ask-booted" { "Booted version" }
                    input id="ask-booted" type="text" name="booted" list="ask-versions"
                        autocomplete="off" value=[booted];
                    datalist id="ask-versions" {
                        @for row in page.releases.iter().rev() { option value=(row.version) {} }
                    }
                }
                div {
                    label for="ask-wariness" { "Wariness (0 eager to 1 wary)" }
                    input id="ask-wariness" type="number" name="wariness" min="0" max="1"
                        step="any" value=[wariness];
                }
                div { button type="submit" { "Show the decision" } }
            }
            @match asked {
                Some(Ok(decision)) => (decision_view(decision)),
                Some(Err(why)) => p class="notice notice-error" role="status" { "No answer: " (why) },
                None => {},
            }
        }
    }
}

fn decision_view(decision: &HostDecision) -> Markup {
    html! {
        div class="decision" role="region" aria-label="Decision" {
            dl class="facts" {
                dt { "Asked" }
                dd {
                    (decision.arch) ", booted "
                    @match &decision.booted { Some(booted) => (booted), None => "(none given)" }
                    ", wariness " (decision.wariness)
                }
                dt { "Offered now" }
                dd {
                    @match &decision.target {
                        Some(target) => { strong { (target.version) } " " code class="digest" { (target.digest) } }
                        None => strong { "No update" },
                    }
                }
                dt { "Why" }
                dd { (decision.reason) }
                @if !decision.held.is_empty() {
                    dt { "Held back" }
                    dd {
                        ul class="plain" {
                            @for held in &decision.held { li { strong { (held.version) } ": " (held.reason) } }
                        }
                    }
                }
                dt { "Next change" }
                dd { @match &decision.next_change { Some(at) => (when(at)), None => "none foreseen" } }
            }
        }
    }
}

fn outcomes(page: &StreamPage) -> Markup {
    html! {
        section aria-labelledby="outcomes" {
            h2 id="outcomes" { "Outcomes" }
            @match &page.outcomes {
                None => p { "The report collector is not configured on this server (" code { "[reports]" } ")." },
                Some(outcomes) => {
                    @if let Some(error) = &outcomes.error {
                        p class="notice notice-error" { "The counts could not be read: " (error) }
                    }
                    @if let Some(guard) = &outcomes.guard {
                        p {
                            "The guard halts a release at " strong { (guard.min_failures) } " failures or more with a failure share above "
                            strong { (percent(guard.max_failure_share)) }
                            @if let Some(missing) = guard.max_missing_share {
                                ", or with a missing share above " strong { (percent(missing)) }
                            }
                            ". A host is missing " (duration(guard.missing_after_seconds)) " after saying it reboots."
                        }
                    } @else {
                        p { "No guard is configured: no release is halted by outcomes." }
                    }
                    @if outcomes.releases.is_empty() {
                        p { "No reports yet." }
                    } @else {
                        @let words: Vec<&str> = outcomes.releases[0].counts.iter().map(|(word, _)| word.as_str()).collect();
                        div class="table-wrap" {
                            table {
                                caption { "Reports per release, newest first" }
                                thead {
                                    tr {
                                        th scope="col" { "Version" }
                                        @for word in &words { th scope="col" { (word) } }
                                        th scope="col" { "Failure share" }
                                        th scope="col" { "Missing hosts" }
                                    }
                                }
                                tbody {
                                    @for release in &outcomes.releases {
                                        tr {
                                            th scope="row" { (release.version) }
                                            @for word in &words {
                                                td { (release.counts.iter().find(|(w, _)| w == word).map_or(0, |(_, count)| *count)) }
                                            }
                                            td { @match release.failure_share { Some(share) => (percent(share)), None => "–" } }
                                            td { (release.missing) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if !outcomes.audit.is_empty() {
                        h3 { "Halts, as audited" }
                        div class="table-wrap" {
                            table {
                                thead {
                                    tr {
                                        th scope="col" { "When" }
                                        th scope="col" { "Version" }
                                        th scope="col" { "Halt id" }
                                        th scope="col" { "Tripped by" }
                                        th scope="col" { "List sequence" }
                                    }
                                }
                                tbody {
                                    @for line in &outcomes.audit {
                                        tr {
                                            td { (when(&line.time)) }
                                            th scope="row" { (line.version) }
                                            td { code { (line.halt_id) } }
                                            td { (line.tripped_by) }
                                            td { (line.sequence) }
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
}

fn halts(page: &StreamPage, viewer: &Viewer) -> Markup {
    let state = &page.halts;
    let form_csrf = viewer
        .csrf
        .as_deref()
        .filter(|_| viewer.can_halt && state.can_publish);
    html! {
        section aria-labelledby="halts" {
            h2 id="halts" { "Halts" }
            @if state.on {
                p {
                    "Halts are on for this stream"
                    @if let Some(location) = &state.location { "; the list is at " code { (location) } }
                    @if let Some(sequence) = state.sequence { ", sequence " (sequence) }
                    @if let Some(expires) = &state.expires { ", expiring " (when(expires)) }
                    "."
                }
            } @else {
                p { "This stream's document does not turn halts on." }
            }
            @if let Some(error) = &state.error {
                p class="notice notice-error" { "The halt list could not be read: " (error) }
            }
            @if state.halted.is_empty() {
                p { "No release is halted." }
            } @else {
                p { "Halted releases: " (state.halted.len()) ", listed at the top of this page. Only the release team resumes one, with the command shown there." }
            }
            @if let Some(csrf) = form_csrf {
                form method="post" action="/ui/halt" class="halt-form" {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="stream" value=(page.name);
                    div {
                        label for="halt-version" { "Release to halt" }
                        select id="halt-version" name="version" required {
                            @for row in page.releases.iter().rev() { option value=(row.version) { (row.version) } }
                        }
                    }
                    div {
                        label for="halt-reason" { "Reason" }
                        input id="halt-reason" type="text" name="reason" required maxlength="500";
                    }
                    div { button type="submit" class="danger" { "Halt this release" } }
                }
            } @else {
                p class="muted" {
                    "Halting a release from here needs "
                    @if !viewer.can_halt {
                        a href="/login" { "a login" } " with a token of the " code { "halt" } " scope"
                        @if !state.can_publish { ", and " }
                    }
                    @if !state.can_publish {
                        @if state.on {
                            "a server with a " code { "[guard]" } " section and a halt key"
                        } @else {
                            "a stream whose document turns halts on (" code { "cairn publish --halt-list" } ")"
                        }
                    }
                    @if viewer.can_halt && state.can_publish { "a session" }
                    "."
                }
            }
        }
    }
}

// ------------------------------------------------------------------- locks

/// `/locks`: the FleetLock groups: slots, lease, holders (ids only for a
/// lock admin), halts and, for an admin, the acknowledge form.
pub fn locks(locks: &Locks, viewer: &Viewer, notice: Option<&str>, streams: &[String]) -> Markup {
    let frame = Frame {
        title: "Reboot locks",
        current: Current::Locks,
        streams,
        viewer,
        notice,
        now: Some(&locks.now),
    };
    let content = html! {
        h1 { "Reboot locks" }
        @if locks.groups.is_empty() { p { "No lock group has been used yet." } }
        @if !locks.holders_shown {
            p class="muted" { "Holder ids are node identifiers: " a href="/login" { "log in" } " as lock admin to see them." }
        }
        @for group in &locks.groups { (lock_group(group, viewer)) }
    };
    layout(&frame, content)
}

fn lock_group(group: &LockGroup, viewer: &Viewer) -> Markup {
    let heading = format!("group-{}", url_value(&group.name));
    let ack_csrf = viewer
        .csrf
        .as_deref()
        .filter(|_| viewer.can_admin_locks && group.halt.is_some());
    html! {
        section class=(if group.halt.is_some() { "card alert" } else { "card" }) aria-labelledby=(heading) {
            h2 id=(heading) {
                (group.name)
                @if group.halt.is_some() { " " (tag("halted", "Halted")) }
            }
            dl class="facts" {
                dt { "Slots taken" }
                dd { (group.taken) " of " (group.slots) }
                dt { "Lease length" }
                dd { (duration(group.lease_seconds)) }
            }
            @if let Some(halt) = &group.halt {
                div class="halt" {
                    p { (tag("halted", "Halted")) " " (when(&halt.at)) ": " strong { (halt.reason) } }
                    @if !halt.detail.is_empty() { p { "Detail: " (halt.detail) } }
                    @if let Some(node) = &halt.node { p { "Node: " code { (node) } } }
                }
            }
            @if let Some(csrf) = ack_csrf {
                form method="post" action=(format!("/ui/locks/{}/ack", url_value(&group.name))) {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" { "Acknowledge" }
                }
            } @else if group.halt.is_some() {
                p class="muted" {
                    "Acknowledging the halt needs " a href="/login" { "a login" }
                    " with a token of the " code { "lock-admin" } " scope."
                }
            }
            @if group.holders.is_empty() {
                p { "No holder." }
            } @else {
                div class="table-wrap" {
                    table {
                        thead {
                            tr {
                                th scope="col" { "Holder" }
                                th scope="col" { "Took the slot" }
                                th scope="col" { "Lease left" }
                            }
                        }
                        tbody {
                            @for holder in &group.holders {
                                tr {
                                    td {
                                        @match &holder.id {
                                            Some(id) => code { (id) },
                                            None => span class="muted" { "hidden: log in as lock admin to see node ids" },
                                        }
                                    }
                                    td { (when(&holder.taken)) }
                                    td { (duration(holder.lease_left_seconds)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

// ------------------------------------------------------------------- login

/// `/login`: the token form (the token is sent once; the session lives in
/// a cookie).
/// The login page; `csrf` is `None` when the request did not come over
/// HTTPS (or from loopback): then the page has no token field at all, so no
/// token is typed where it would cross the network in clear text.
pub fn login(csrf: Option<&str>, notice: Option<&str>, streams: &[String]) -> Markup {
    let viewer = Viewer::default();
    let frame = Frame {
        title: "Log in",
        current: Current::Login,
        streams,
        viewer: &viewer,
        notice,
        now: None,
    };
    let content = html! {
        h1 { "Log in" }
        p { "Without logging in, the dashboard is read-only. A token with the " code { "halt" } " scope may halt releases; one with the " code { "lock-admin" } " scope sees lock holders and acknowledges halted lock groups." }
        @if let Some(csrf) = csrf {
            form method="post" action="/login" class="login" {
                input type="hidden" name="csrf" value=(csrf);
                div {
                    label for="login-token" { "Token" }
                    input id="login-token" type="password" name="token" autocomplete="off" required;
                }
                div { button type="submit" { "Log in" } }
            }
        } @else {
            p class="notice notice-error" role="status" {
                "This page was not reached over HTTPS, so it takes no token: one typed here would cross the network in clear text. Open the dashboard through its HTTPS address."
            }
        }
        p { "The session cookie is HttpOnly, Secure and SameSite=Strict; the page never shows the token." }
        p { "Over plain HTTP, login is accepted only from loopback (such as a TLS proxy on this host)." }
    };
    layout(&frame, content)
}

/// An error page (unknown stream, no FleetLock here, ...): the status and
/// the error's own message, rendered as text.
pub fn error(status: StatusCode, message: &str, viewer: &Viewer, streams: &[String]) -> Markup {
    let title = status.canonical_reason().unwrap_or("Error");
    let frame = Frame {
        title,
        current: Current::Other,
        streams,
        viewer,
        notice: None,
        now: None,
    };
    let content = html! {
        h1 { (title) }
        p { (message) }
        p { a href="/" { "Back to the overview" } }
    };
    layout(&frame, content)
}

/// The page handlers' request side, ready for the builders in
/// [`super::build`]: query parsing and turning a built model (or its error)
/// into a secure response. The async handlers that call the builders are
/// wired by the dashboard's [`super::routes`] once `build.rs` has them.
pub mod handlers {
    use super::super::model::{HostDecision, Locks, Overview, StreamPage, Viewer};
    use super::super::session;
    use crate::AppState;
    use crate::dashboard::build;
    use crate::error::ApiError;
    use axum::extract::rejection::QueryRejection;
    use axum::extract::{ConnectInfo, Path, Query, RawQuery, Request, State};
    use axum::http::{HeaderMap, HeaderValue, header};
    use axum::response::Response;
    use serde::Deserialize;
    use std::net::SocketAddr;

    /// `GET /login`: the token form, with its double-submit CSRF cookie.
    pub async fn login(State(state): State<AppState>, request: Request) -> Response {
        let query = PageQuery::from_raw(request.uri().query());
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| *peer);
        let headers = request.headers();
        let streams = stream_names(&state);
        if !session::secure_transport(peer, headers) {
            return login_response(None, None, &query, &streams);
        }
        let (csrf, cookie) = session::login_form_token(&state, headers);
        login_response(Some(&csrf), cookie, &query, &streams)
    }

    /// `GET /`.
    pub async fn overview(
        State(state): State<AppState>,
        headers: HeaderMap,
        query: Result<Query<PageQuery>, QueryRejection>,
    ) -> Response {
        let query = query.map(|Query(query)| query).unwrap_or_default();
        let viewer = session::viewer(&state, &headers);
        let model = build::overview(&state, (state.shared.clock)()).await;
        overview_response(&model, &viewer, &query)
    }

    /// `GET /streams/{stream}`: the page, and the decision when the form
    /// asked one. The query is read as `/api/streams/{stream}` reads it, so
    /// a bad value is an error page naming the parameter.
    pub async fn stream(
        State(state): State<AppState>,
        Path(stream): Path<String>,
        headers: HeaderMap,
        RawQuery(raw): RawQuery,
    ) -> Response {
        let viewer = session::viewer(&state, &headers);
        let streams = stream_names(&state);
        let view = match build::StreamQuery::parse(raw.as_deref()) {
            Ok(view) => view,
            Err(error) => return error_response(&error, &viewer, &streams),
        };
        let notice = PageQuery::from_raw(raw.as_deref());
        let now = (state.shared.clock)();
        let page = build::stream_page(&state, &stream, &view, now).await;
        let asks = view.booted.is_some() || view.wariness.is_some();
        let decision = match &page {
            Ok(page) if asks => Some(
                build::decide_off_worker(
                    &state,
                    &stream,
                    Some(page.arch.clone()),
                    view.booted.clone(),
                    view.wariness,
                    now,
                )
                .await,
            ),
            _ => None,
        };
        stream_response(page, decision, &viewer, &notice, &streams)
    }

    /// `GET /locks`.
    pub async fn locks(
        State(state): State<AppState>,
        headers: HeaderMap,
        query: Result<Query<PageQuery>, QueryRejection>,
    ) -> Response {
        let query = query.map(|Query(query)| query).unwrap_or_default();
        let viewer = session::viewer(&state, &headers);
        let model = build::locks(&state, (state.shared.clock)(), &viewer).await;
        locks_response(model, &viewer, &query, &stream_names(&state))
    }

    /// `?notice=` of every page.
    #[derive(Debug, Default, Deserialize)]
    pub struct PageQuery {
        /// A notice kind after an action (fixed texts; unknown: nothing).
        pub notice: Option<String>,
    }

    impl PageQuery {
        /// The notice of a raw query string, other parameters ignored.
        pub fn from_raw(raw: Option<&str>) -> PageQuery {
            let notice = url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .find(|(key, _)| key == "notice")
                .map(|(_, value)| value.into_owned());
            PageQuery { notice }
        }
    }

    /// Every configured stream's name, for the navigation.
    pub fn stream_names(state: &AppState) -> Vec<String> {
        state.shared.streams.keys().cloned().collect()
    }

    /// A builder's error as an HTML page with its status.
    pub fn error_response(error: &ApiError, viewer: &Viewer, streams: &[String]) -> Response {
        super::secure_html_status(
            error.status,
            super::error(error.status, &error.value, viewer, streams),
        )
    }

    /// `GET /`, once the overview is built.
    pub fn overview_response(overview: &Overview, viewer: &Viewer, query: &PageQuery) -> Response {
        super::secure_html(super::overview(overview, viewer, query.notice.as_deref()))
    }

    /// `GET /streams/{stream}`, once the page (and the decision, if the
    /// form asked one) are built. A failed decision is shown with its
    /// message next to the form, never failing the page.
    pub fn stream_response(
        page: Result<StreamPage, ApiError>,
        decision: Option<Result<HostDecision, ApiError>>,
        viewer: &Viewer,
        query: &PageQuery,
        streams: &[String],
    ) -> Response {
        match page {
            Ok(page) => {
                let decision = decision
                    .as_ref()
                    .map(|decision| decision.as_ref().map_err(|error| error.value.as_str()));
                super::secure_html(super::stream(
                    &page,
                    viewer,
                    decision,
                    query.notice.as_deref(),
                    streams,
                ))
            }
            Err(error) => error_response(&error, viewer, streams),
        }
    }

    /// `GET /locks`, once the lock view is built.
    pub fn locks_response(
        locks: Result<Locks, ApiError>,
        viewer: &Viewer,
        query: &PageQuery,
        streams: &[String],
    ) -> Response {
        match locks {
            Ok(locks) => super::secure_html(super::locks(
                &locks,
                viewer,
                query.notice.as_deref(),
                streams,
            )),
            Err(error) => error_response(&error, viewer, streams),
        }
    }

    /// `GET /login`: the form, with the double-submit CSRF cookie to set.
    pub fn login_response(
        csrf: Option<&str>,
        cookie: Option<HeaderValue>,
        query: &PageQuery,
        streams: &[String],
    ) -> Response {
        let mut response = super::secure_html(super::login(csrf, query.notice.as_deref(), streams));
        if let Some(cookie) = cookie {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        response
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::model::*;
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use std::time::Instant;
    use tower::ServiceExt;

    pub(crate) const CSRF: &str = "c5rf0123456789abcdefABCDEF0123456789xyz";
    const NOW: &str = "2026-05-01T12:00:00Z";
    const EVIL: &str = "<script>alert('x')</script>";

    fn version(index: usize) -> String {
        format!("40.2025{:04}.3.0", index + 1)
    }

    fn halt_mark(version: &str) -> HaltMark {
        HaltMark {
            version: version.to_string(),
            id: "h-1".into(),
            reason: format!("boot failures {EVIL}"),
            tripped_by: "guard: 4 failures of 20 reboots".into(),
            time: "2026-05-01T11:00:00Z".into(),
            resume_command: format!(
                "cairn policy halt clear --version {version} ... && cairn publish ..."
            ),
        }
    }

    fn rollout(share: f64) -> RolloutProgress {
        RolloutProgress {
            version: String::new(),
            share,
            start: "2026-05-01T00:00:00Z".into(),
            full_at: Some("2026-05-02T00:00:00Z".into()),
        }
    }

    /// A stream page of `count` releases: a barrier at 2, an inherited
    /// dead-end at 5, a halt three before the end and a rollout at the
    /// newest; plain runs of 4 or more collapse unless `expand_all`.
    pub(crate) fn sample_page(count: usize, expand_all: bool, can_publish: bool) -> StreamPage {
        let newest = count - 1;
        let halted = count.saturating_sub(3);
        let releases: Vec<ReleaseRow> = (0..count)
            .map(|index| {
                let mut state = ReleaseState::default();
                if index == 2 {
                    state.barrier = Some(Marked {
                        reason: format!("migrate first {EVIL}, see https://example.org/b"),
                        link: Some("https://example.org/b".into()),
                        from_base: None,
                    });
                }
                if index == 5 {
                    state.deadend = Some(Marked {
                        reason: "broken bootloader".into(),
                        link: Some("javascript:alert(1)".into()),
                        from_base: Some("quay.io/fedora/fedora-coreos".into()),
                    });
                }
                if index == halted {
                    state.halt = Some(halt_mark(&version(index)));
                }
                if index == newest {
                    state.rollout = Some(RolloutProgress {
                        version: version(index),
                        ..rollout(0.42)
                    });
                }
                ReleaseRow {
                    age_index: index as u64,
                    version: version(index),
                    architectures: vec!["aarch64".into(), "x86_64".into()],
                    base_release: (index % 2 == 0).then(|| format!("base-{index}")),
                    available: true,
                    state,
                }
            })
            .collect();
        let plain = |index: usize| releases[index].state.word() == "plain" && index != newest;
        let mut items = Vec::new();
        let mut index = 0;
        while index < count {
            let mut end = index;
            while end < count && plain(end) {
                end += 1;
            }
            if !expand_all && end - index >= 4 {
                items.push(GraphItem::Collapsed {
                    first: index,
                    last: end - 1,
                    expand: format!("expand={index}"),
                });
                index = end;
            } else {
                items.push(GraphItem::Release { index });
                index += 1;
            }
        }
        let arcs = (0..newest)
            .filter(|index| *index != 5)
            .map(|from| {
                let to = if from < 2 { 2 } else { newest };
                GraphArc {
                    from,
                    to,
                    arches: if from == 3 {
                        vec!["aarch64".into()]
                    } else {
                        Vec::new()
                    },
                }
            })
            .collect();
        let timeline = vec![TimelineSeries {
            version: version(newest),
            points: (0..=10)
                .map(|step| {
                    (
                        format!("2026-05-01T{:02}:00:00Z", step * 2),
                        step as f64 / 10.0,
                    )
                })
                .collect(),
            now: NOW.into(),
            share_now: 0.42,
        }];
        StreamPage {
            now: NOW.into(),
            name: "stable".into(),
            health: SourceHealth {
                up: false,
                last_success: Some("2026-05-01T11:55:00Z".into()),
                error: Some(SourceError {
                    kind: "registry".into(),
                    message: format!("unreachable {EVIL}"),
                }),
                sequence: Some(7),
                expires: None,
                root_version: Some(3),
            },
            arch: "x86_64".into(),
            arches: vec!["aarch64".into(), "x86_64".into()],
            scheme: "oci".into(),
            schemes: vec!["oci".into(), "checksum".into()],
            base: Some(BaseInfo {
                repository: "quay.io/fedora/fedora-coreos".into(),
                source: "graph.json".into(),
                barriers: vec![
                    BaseBarrierRow {
                        version: "40.20250301.3.0".into(),
                        reason: "bootloader update".into(),
                        link: None,
                        built_on: vec!["40.20250302.3.0".into()],
                    },
                    BaseBarrierRow {
                        version: "41.20250501.3.0".into(),
                        reason: String::new(),
                        link: None,
                        built_on: Vec::new(),
                    },
                ],
            }),
            releases,
            graph: GraphView { items, arcs },
            timeline,
            outcomes: Some(Outcomes {
                releases: vec![ReleaseOutcomes {
                    version: version(halted),
                    counts: vec![("booted".into(), 16), ("failed".into(), 4)],
                    failures: 4,
                    rebooting: 20,
                    failure_share: Some(0.2),
                    missing: 1,
                }],
                guard: Some(GuardThresholds {
                    min_failures: 3,
                    max_failure_share: 0.1,
                    max_missing_share: None,
                    missing_after_seconds: 1800,
                }),
                audit: vec![AuditLine {
                    time: "2026-05-01T11:00:00Z".into(),
                    version: version(halted),
                    halt_id: "h-1".into(),
                    tripped_by: "guard".into(),
                    sequence: 3,
                }],
                error: None,
            }),
            halts: HaltState {
                on: true,
                location: Some("registry.example/halts:stable".into()),
                sequence: Some(3),
                expires: None,
                error: None,
                halted: vec![halt_mark(&version(halted))],
                can_publish,
            },
        }
    }

    fn decision() -> HostDecision {
        HostDecision {
            arch: "x86_64".into(),
            booted: Some(version(0)),
            wariness: 0.5,
            target: Some(DecisionTarget {
                version: version(2),
                digest: format!("sha256:{}", "ab".repeat(32)),
            }),
            reason: "barrier first".into(),
            held: vec![HeldRelease {
                version: version(9),
                reason: "rollout: wariness above the share".into(),
            }],
            next_change: None,
        }
    }

    pub(crate) fn viewer(can_halt: bool, can_admin_locks: bool) -> Viewer {
        Viewer {
            name: Some("ops".into()),
            can_halt,
            can_admin_locks,
            csrf: Some(CSRF.into()),
        }
    }

    fn streams() -> Vec<String> {
        vec!["stable".into(), "next".into()]
    }

    /// Every element opened is closed, in order (void elements aside).
    pub(crate) fn assert_balanced(html: &str) {
        const VOID: [&str; 8] = ["meta", "link", "input", "br", "hr", "img", "source", "wbr"];
        let mut stack: Vec<String> = Vec::new();
        let mut rest = html;
        while let Some(start) = rest.find('<') {
            rest = &rest[start + 1..];
            let end = rest.find('>').expect("a tag ends");
            let tag = &rest[..end];
            rest = &rest[end + 1..];
            if tag.starts_with('!') {
                continue;
            }
            assert!(!tag.ends_with('/'), "no self-closing tags: <{tag}>");
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack.pop().unwrap_or_default();
                assert_eq!(open, name, "</{name}> closes <{open}>");
            } else {
                let name = tag.split_whitespace().next().unwrap_or_default();
                assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()));
                if !VOID.contains(&name) {
                    stack.push(name.to_string());
                }
            }
        }
        assert!(stack.is_empty(), "unclosed: {stack:?}");
    }

    /// Long runs of token-like characters: only the CSRF token and digests
    /// may appear, and the CSRF token only in `csrf` fields.
    fn assert_no_secrets(html: &str) {
        let found = secrets_in(html);
        assert!(found.is_empty(), "token-like text in the page: {found:?}");
    }

    /// What looks like a secret in a page: random-looking words other than
    /// the CSRF token and digests, the CSRF token outside `csrf` fields, and
    /// the word "bearer".
    fn secrets_in(html: &str) -> Vec<String> {
        let mut found = Vec::new();
        let mut run = String::new();
        for c in html.chars().chain(std::iter::once(' ')) {
            if c.is_ascii_alphanumeric() || "+/_=-".contains(c) {
                run.push(c);
                continue;
            }
            let word = std::mem::take(&mut run);
            if word.len() < 24 {
                continue;
            }
            // Mixed case with digits, or one long unbroken word: random-looking.
            let mixed = word.chars().any(|c| c.is_ascii_uppercase())
                && word.chars().any(|c| c.is_ascii_lowercase())
                && word.chars().any(|c| c.is_ascii_digit());
            let unbroken = word.len() >= 32 && !word.contains('-');
            let digest = word.len() == 64 && word.chars().all(|c| c.is_ascii_hexdigit());
            if (mixed || unbroken) && word != CSRF && !digest {
                found.push(word);
            }
        }
        let in_fields = html
            .matches(&format!(r#"name="csrf" value="{CSRF}""#))
            .count();
        if html.matches(CSRF).count() != in_fields {
            found.push("the CSRF token outside a csrf field".into());
        }
        if html.to_ascii_lowercase().contains("bearer") {
            found.push("bearer".into());
        }
        found
    }

    #[test]
    fn the_secret_check_catches_a_token_outside_a_csrf_field() {
        assert_eq!(
            secrets_in("<p>Tk9aXq3LmZ0pR7sV2wY5bN8c</p>"),
            ["Tk9aXq3LmZ0pR7sV2wY5bN8c"]
        );
        assert_eq!(
            secrets_in(&format!("<p>{CSRF}</p>")),
            ["the CSRF token outside a csrf field"]
        );
        assert_eq!(secrets_in("Authorization: Bearer x"), ["bearer"]);
        assert_no_secrets(&format!(
            r#"<input name="csrf" value="{CSRF}"> sha256:{}"#,
            "ab".repeat(32)
        ));
    }

    #[test]
    fn stream_page_is_balanced_escaped_and_says_states_in_words() {
        let page = sample_page(20, false, true);
        let html = stream(
            &page,
            &viewer(true, false),
            Some(Ok(&decision())),
            None,
            &streams(),
        )
        .into_string();
        assert_balanced(&html);
        assert!(!html.contains("<script>alert"), "reasons are escaped");
        assert!(html.contains("&lt;script&gt;alert"));
        assert!(!html.contains("javascript:"), "only http(s) links");
        assert!(html.starts_with("<!DOCTYPE html><html lang=\"en\">"));
        for needle in [
            "<main id=\"main\">",
            "<nav aria-label=\"Dashboard\">",
            "<footer>",
            "name=\"viewport\"",
            "<link rel=\"icon\" href=\"data:,\">",
            "/static/dashboard.css?v=",
            "defer",
            ">Barrier</span>",
            ">Dead-end</span>",
            "from base <code>quay.io/fedora/fedora-coreos</code>",
            ">Halted</span>",
            "guard: 4 failures of 20 reboots",
            "<pre><code>cairn policy halt clear --version",
            ">Failing</span>",
            "<progress max=\"100\" value=\"42.0\" aria-label=\"Share of the fleet offered\">42%</progress>",
            "<option value=\"x86_64\" selected>x86_64</option>",
            "<option value=\"aarch64\">aarch64</option>",
            "100% at <time datetime=\"2026-05-02T00:00:00Z\">2026-05-02 00:00 UTC</time>",
            "<th scope=\"col\">Base release</th>",
            "href=\"https://example.org/b\"",
            "<datalist id=\"ask-versions\">",
            "name=\"wariness\" min=\"0\" max=\"1\" step=\"any\" value=\"0.5\"",
            "<label for=\"ask-booted\">",
            "barrier first",
            "Held back",
            "20%",
            "Missing hosts",
        ] {
            assert!(html.contains(needle), "the page shows {needle}");
        }
        assert!(!html.contains("resume\" method"), "no resume form");
        assert!(!html.contains(" style="), "no inline styles (CSP)");
        assert_no_secrets(&html);
    }

    #[test]
    fn halt_form_only_for_a_halt_session_on_a_publishing_server() {
        for (can_halt, can_publish) in [(true, true), (true, false), (false, true), (false, false)]
        {
            let page = sample_page(12, false, can_publish);
            let html = stream(&page, &viewer(can_halt, true), None, None, &streams()).into_string();
            assert_eq!(
                html.contains("action=\"/ui/halt\""),
                can_halt && can_publish,
                "halt form for can_halt={can_halt} can_publish={can_publish}"
            );
            if !can_publish {
                assert!(html.contains("<code>[guard]</code>"));
            }
            if !can_halt {
                assert!(html.contains("<code>halt</code> scope"));
            }
        }
        let anonymous = stream(
            &sample_page(12, false, true),
            &Viewer::default(),
            None,
            None,
            &streams(),
        )
        .into_string();
        assert!(!anonymous.contains("/ui/halt"));
        assert!(!anonymous.contains("name=\"csrf\""));
        assert!(anonymous.contains("href=\"/login\""));
    }

    pub(crate) fn sample_locks(admin: bool) -> Locks {
        LockGroup {
            name: "workers a".into(),
            slots: 2,
            taken: 1,
            lease_seconds: 900,
            holders: vec![LockHolder {
                id: admin.then(|| "node-7f3e".into()),
                taken: "2026-05-01T11:50:00Z".into(),
                lease_left_seconds: 300,
            }],
            halt: Some(LockHalt {
                at: "2026-05-01T11:40:00Z".into(),
                reason: "boot_failed".into(),
                detail: format!("rpm-ostree said {EVIL}"),
                node: admin.then(|| "node-dead".into()),
            }),
        }
        .into_locks(admin)
    }

    impl LockGroup {
        fn into_locks(self, admin: bool) -> Locks {
            Locks {
                now: NOW.into(),
                groups: vec![self],
                holders_shown: admin,
            }
        }
    }

    #[test]
    fn lock_holders_only_for_an_admin_and_ack_only_for_an_admin() {
        let html =
            locks(&sample_locks(false), &viewer(true, false), None, &streams()).into_string();
        assert_balanced(&html);
        assert!(!html.contains("node-7f3e") && !html.contains("node-dead"));
        assert!(html.contains("hidden: log in as lock admin to see node ids"));
        assert!(!html.contains("/ack"));
        assert!(html.contains("<code>lock-admin</code> scope"));
        assert!(html.contains(">Halted</span>") && html.contains("boot_failed"));
        assert!(html.contains("1 of 2") && html.contains("15 min") && html.contains("5 min"));
        assert!(html.contains("&lt;script&gt;"));

        let html = locks(&sample_locks(true), &viewer(false, true), None, &streams()).into_string();
        assert_balanced(&html);
        assert!(html.contains("<code>node-7f3e</code>") && html.contains("node-dead"));
        assert!(html.contains("action=\"/ui/locks/workers%20a/ack\""));
        assert_no_secrets(&html);
    }

    #[test]
    fn overview_highlights_halts_and_health_in_words() {
        let page = sample_page(12, false, false);
        let summary = |name: &str, up: bool, halted: bool| StreamSummary {
            name: name.into(),
            health: SourceHealth {
                up,
                ..page.health.clone()
            },
            newest: Some(ReleaseRef {
                version: version(11),
                age_index: 11,
            }),
            releases: 12,
            rollouts: vec![RolloutProgress {
                version: version(11),
                ..rollout(0.05)
            }],
            halted: if halted {
                vec![halt_mark(&version(9))]
            } else {
                Vec::new()
            },
        };
        let model = Overview {
            now: NOW.into(),
            streams: vec![summary("stable", true, false), summary("next", false, true)],
            halted_lock_groups: sample_locks(false).groups,
            fleet_lock: true,
            fleet_lock_error: Some("the lock store failed (store_unavailable)".into()),
        };
        let html = overview(&model, &Viewer::default(), Some("logged_out")).into_string();
        assert_balanced(&html);
        for needle in [
            ">Up</span>",
            ">Failing</span>",
            ">Halted</span> reboot lock groups",
            "href=\"/streams/next\"",
            "5%",
            "Logged out.",
            "Read-only",
            "aria-current=\"page\">Overview",
        ] {
            assert!(html.contains(needle), "the overview shows {needle}");
        }
        assert_eq!(html.matches(">Halted</span>").count(), 3);
        assert_no_secrets(&html);
    }

    #[test]
    fn notices_are_fixed_texts_and_unknown_kinds_show_nothing() {
        for kind in [
            "halted",
            "already_halted",
            "acked",
            "logged_in",
            "logged_out",
            "csrf",
            "forbidden",
            "unauthorized",
            "plain_http",
            "failed",
        ] {
            let (_, text) = notice_text(kind).expect("a known kind");
            let html = login(Some(CSRF), Some(kind), &streams()).into_string();
            assert!(html.contains(text), "{kind} shows its text");
        }
        let html = login(Some(CSRF), Some("<b>pwned</b>"), &streams()).into_string();
        assert!(!html.contains("pwned") && !html.contains("role=\"status\""));
        assert_balanced(&html);
        assert!(html.contains("type=\"password\" name=\"token\" autocomplete=\"off\""));
        assert!(html.contains("<label for=\"login-token\">"));
        assert!(html.contains("HttpOnly, Secure and SameSite=Strict"));
        assert!(html.contains("loopback"));
        assert_no_secrets(&html);
    }

    #[test]
    fn a_stream_page_of_179_releases_is_small_and_quick() {
        let page = sample_page(179, false, true);
        let viewer = viewer(true, true);
        let html = stream(&page, &viewer, Some(Ok(&decision())), None, &streams()).into_string();
        assert_balanced(&html);
        let rounds = 200;
        let started = Instant::now();
        let mut bytes = 0;
        for _ in 0..rounds {
            bytes += stream(&page, &viewer, Some(Ok(&decision())), None, &streams())
                .into_string()
                .len();
        }
        let each = started.elapsed() / rounds;
        println!(
            "179-release stream page: {} bytes, {:?} per render ({} rounds)",
            html.len(),
            each,
            rounds
        );
        assert_eq!(bytes, html.len() * rounds as usize);
        assert!(html.len() < 200 * 1024, "{} bytes", html.len());
        let expanded = stream(
            &sample_page(179, true, true),
            &viewer,
            None,
            None,
            &streams(),
        )
        .into_string();
        println!("expanded: {} bytes", expanded.len());
        assert!(expanded.len() < 200 * 1024, "{} bytes", expanded.len());
    }

    #[test]
    fn error_pages_are_text() {
        let html = error(
            StatusCode::NOT_FOUND,
            &format!("no stream {EVIL}"),
            &Viewer::default(),
            &streams(),
        )
        .into_string();
        assert_balanced(&html);
        assert!(html.contains("<h1>Not Found</h1>") && html.contains("&lt;script&gt;"));
    }

    #[tokio::test]
    async fn assets_and_pages_carry_types_cache_and_security_headers() {
        let state = AppState::new(
            ["stable".to_string()],
            std::sync::Arc::new(jiff::Timestamp::now),
            300,
        );
        let app = routes().with_state(state);
        for (path, content_type, body) in [
            (
                "/static/dashboard.css",
                "text/css; charset=utf-8",
                DASHBOARD_CSS,
            ),
            (
                "/static/dashboard.js",
                "text/javascript; charset=utf-8",
                DASHBOARD_JS,
            ),
        ] {
            let response = app
                .clone()
                .oneshot(Request::get(path).body(Body::empty()).expect("request"))
                .await
                .expect("response");
            assert_eq!(response.status(), StatusCode::OK);
            let headers = response.headers();
            assert_eq!(headers[header::CONTENT_TYPE], content_type);
            assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=86400");
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("body");
            assert_eq!(bytes, body.as_bytes());
        }
        let response = secure_html(login(Some(CSRF), None, &streams()));
        let headers = response.headers();
        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    }

    #[tokio::test]
    async fn the_login_page_is_served_beside_a_post_login_route() {
        let state = AppState::new(
            ["stable".to_string()],
            std::sync::Arc::new(jiff::Timestamp::now),
            300,
        );
        // The session routes answer POST /login; the page answers GET.
        let app = routes()
            .merge(Router::new().route("/login", axum::routing::post(|| async { "posted" })))
            .with_state(state);
        let from = |peer: &str| {
            let mut request = Request::get("/login?notice=csrf&x=%3Cb%3E")
                .body(Body::empty())
                .expect("request");
            let peer: std::net::SocketAddr = peer.parse().expect("address");
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            request
        };
        // From another host over plain HTTP: no field to type a token into.
        let remote = app
            .clone()
            .oneshot(from("10.0.0.5:40000"))
            .await
            .expect("response");
        assert_eq!(remote.status(), StatusCode::OK);
        assert!(remote.headers().get(header::SET_COOKIE).is_none());
        let body = axum::body::to_bytes(remote.into_body(), usize::MAX)
            .await
            .expect("body");
        let html = String::from_utf8(body.to_vec()).expect("utf-8");
        assert!(!html.contains("name=\"token\""), "{html}");
        assert!(html.contains("not reached over HTTPS"), "{html}");
        let response = app
            .clone()
            .oneshot(from("127.0.0.1:40000"))
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY
        );
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let html = String::from_utf8(body.to_vec()).expect("utf-8");
        assert!(html.contains("action=\"/login\"") && html.contains("href=\"/streams/stable\""));
        assert!(html.contains("name=\"token\""), "{html}");
        assert!(html.contains(notice_text("csrf").expect("known").1));
        let posted = app
            .oneshot(
                Request::post("/login")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        let body = axum::body::to_bytes(posted.into_body(), usize::MAX)
            .await
            .expect("body");
        assert_eq!(&body[..], b"posted");
    }
}
