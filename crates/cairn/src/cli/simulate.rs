//! `cairn simulate`: a fleet following a document over simulated days.

use crate::cli::args::{self, DocumentArgs};
use anyhow::Context;
use cairn_graph::Reason;
use cairn_graph::fcos::Updates;
use std::path::PathBuf;
use std::process::ExitCode;

/// Simulate a fleet following a document, and plot it.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    document: DocumentArgs,
    #[command(flatten)]
    halt_keys: args::HaltKeyArgs,
    /// A release team's policy (updates.json) applied on top of the document:
    /// preview a rollout before publishing it.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Number of nodes.
    #[arg(long, default_value_t = 10_000)]
    nodes: usize,
    /// `uniform`, or a file with one wariness in [0, 1] per line.
    #[arg(long, default_value = "uniform")]
    wariness_dist: String,
    /// The architecture whose graph the fleet follows.
    #[arg(long, default_value = "x86_64")]
    arch: String,
    /// Where the fleet starts: a release (version or digest), or shares such as
    /// `43.20260413.3.2=0.3,44.20260621.3.1=0.7`. Default: everybody on the
    /// newest release offered to the whole fleet at the start.
    #[arg(long)]
    booted: Option<String>,
    /// Start (Unix seconds or RFC 3339). Default: now.
    #[arg(long)]
    start: Option<String>,
    /// Days to simulate.
    #[arg(long, default_value_t = 14.0)]
    days: f64,
    /// Time between a node's checks (s, m, h, d or w).
    #[arg(long, default_value = "5m")]
    check_interval: String,
    /// `immediate`, `periodic` (with --window), or `fleet_lock` (with
    /// --lock-slots); windows and a lock combine.
    #[arg(long, default_value = "immediate")]
    strategy: String,
    /// Slots of a FleetLock reboot lock: at most this many nodes reboot at once.
    #[arg(long)]
    lock_slots: Option<usize>,
    /// A maintenance window: `DAYS HH:MM MINUTES`, days comma-separated
    /// (`"Sat,Sun 02:00 120"`). Repeatable; implies `periodic`.
    #[arg(long = "window")]
    windows: Vec<String>,
    /// Time zone of the windows (IANA name).
    #[arg(long, default_value = "UTC")]
    time_zone: String,
    /// Write the plot here (SVG).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seed of the nodes' check phases, of which hosts a failing release
    /// fails on, and of the delays of healthy reports.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// `VERSION=SHARE`: this release fails to boot on SHARE (0 to 1) of the
    /// hosts that take them; they roll back and never take it again.
    /// Repeatable.
    #[arg(long = "failure")]
    failures: Vec<String>,
    /// Model the rollout guard of `cairn serve`:
    /// `min_failures=N,max_share=S[,max_missing=M]` (keys left out take the
    /// defaults 3 and 0.05; no missing limit). The fleet is then simulated
    /// with and without it.
    #[arg(long)]
    guard: Option<String>,
    /// With --guard: the longest random delay of a healthy report (the
    /// agent's `reports.max_delay_seconds`).
    #[arg(long, requires = "guard", default_value = "30m")]
    report_delay: String,
    /// With --guard: the time between the guard's readings of the counts.
    #[arg(long, requires = "guard", default_value = "1m")]
    guard_interval: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut document = args.document.load()?;
    if let Some(path) = &args.policy {
        let policy =
            Updates::from_json(&args::read(path)?).with_context(|| path.display().to_string())?;
        for release in &mut document.releases {
            if let Some(settings) = policy.settings(&release.version) {
                release.barrier = settings.barrier.map(|b| Reason::new(b.reason));
                release.deadend = settings.deadend.map(|d| Reason::new(d.reason));
                release.rollout = settings.rollout;
            }
        }
    }
    let wariness = if args.wariness_dist == "uniform" {
        cairn_sim::Wariness::Uniform
    } else {
        let path = PathBuf::from(&args.wariness_dist);
        let text = String::from_utf8(args::read(&path)?).context("--wariness-dist")?;
        let mut values = Vec::new();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let value: f64 = line
                .trim()
                .parse()
                .ok()
                .filter(|v: &f64| (0.0..=1.0).contains(v))
                .with_context(|| {
                    format!(
                        "{}:{}: {line:?} is not a wariness in [0, 1]",
                        path.display(),
                        n + 1
                    )
                })?;
            values.push(value);
        }
        anyhow::ensure!(!values.is_empty(), "{}: no wariness values", path.display());
        cairn_sim::Wariness::Values(values)
    };
    let schedule = match (args.strategy.as_str(), args.windows.is_empty()) {
        ("immediate" | "fleet_lock", true) => None,
        ("immediate" | "periodic" | "fleet_lock", false) => {
            Some(schedule(&args.windows, &args.time_zone)?)
        }
        ("periodic", true) => anyhow::bail!("--strategy periodic needs at least one --window"),
        (other, _) => {
            anyhow::bail!("--strategy {other:?} is not immediate, periodic or fleet_lock")
        }
    };
    anyhow::ensure!(
        args.strategy != "fleet_lock" || args.lock_slots.is_some(),
        "--strategy fleet_lock needs --lock-slots"
    );
    anyhow::ensure!(
        args.lock_slots != Some(0),
        "--lock-slots must be at least 1"
    );
    anyhow::ensure!(
        args.days > 0.0 && args.days <= 3660.0,
        "--days must be in (0, 3660]"
    );
    // Halts in force now (the list is read now, whatever --start says).
    let halts = args
        .document
        .halts(&document, &args.halt_keys, jiff::Timestamp::now())?;
    if let Some(halts) = &halts {
        eprintln!("cairn: {}", halts.note());
    }
    let options = cairn_sim::Options {
        nodes: args.nodes,
        wariness,
        arch: args.arch.clone(),
        booted: match &args.booted {
            None => Vec::new(),
            Some(text) => parse_booted(text)?
                .into_iter()
                .map(|(booted, share)| {
                    let release =
                        booted_release(&document, &args.arch, &booted).with_context(|| {
                            format!(
                                "--booted {booted}: no {} release has this version or digest",
                                args.arch
                            )
                        })?;
                    Ok((release.version.clone(), share))
                })
                .collect::<anyhow::Result<_>>()?,
        },
        start: args::now_or(args.start.as_deref())?,
        span: jiff::SignedDuration::from_secs((args.days * 86_400.0) as i64),
        check_interval: args::parse_duration(&args.check_interval).context("--check-interval")?,
        reboot_time: jiff::SignedDuration::from_mins(2),
        schedule,
        lock_slots: args.lock_slots,
        samples: 400,
        seed: args.seed,
        failures: args
            .failures
            .iter()
            .map(|text| parse_failure(&document, &args.arch, text))
            .collect::<anyhow::Result<_>>()?,
        guard: match &args.guard {
            None => None,
            Some(text) => Some(parse_guard(
                text,
                args::parse_duration(&args.report_delay).context("--report-delay")?,
                args::parse_duration(&args.guard_interval).context("--guard-interval")?,
            )?),
        },
        halted: halts.as_ref().map(args::Halts::digests).unwrap_or_default(),
    };
    let (timeline, compared) = if options.guard.is_some() {
        let compared = cairn_sim::simulate_with_and_without_guard(&document, &options)?;
        (compared.with_guard.clone(), Some(compared))
    } else {
        (cairn_sim::simulate(&document, &options)?, None)
    };
    let mut text = timeline.summary();
    text.push_str(&match &compared {
        Some(compared) => compared.summary(),
        None => timeline.failure_summary(),
    });
    // What the fleet's reboots were bound to, so the numbers above can be read.
    text.push_str(&if args.windows.is_empty() {
        "windows: none, nodes reboot at any time\n".to_string()
    } else {
        format!(
            "windows: {} (time zone {})\n",
            args.windows.join("; "),
            args.time_zone
        )
    });
    if let Some(out) = &args.out {
        let title = format!(
            "{} {} ({}), {} nodes",
            document.repository, document.stream, args.arch, args.nodes
        );
        cairn_sim::plot::svg(&timeline, &title, out).map_err(anyhow::Error::msg)?;
        text.push_str(&format!("plot: {}\n", out.display()));
        if !options.failures.is_empty() {
            let beside = failures_plot_path(out);
            let runs: Vec<(&str, &cairn_sim::Timeline)> = match &compared {
                Some(c) => vec![
                    ("with the guard", &c.with_guard),
                    ("without the guard", &c.without_guard),
                ],
                None => vec![("without a guard", &timeline)],
            };
            cairn_sim::plot::failures_svg(&runs, &format!("{title}: failing releases"), &beside)
                .map_err(anyhow::Error::msg)?;
            text.push_str(&format!("failures plot: {}\n", beside.display()));
        }
    }
    args::emit(&text)?;
    args.document.warn_if_unchecked();
    Ok(ExitCode::SUCCESS)
}

/// The release a `--booted` value names on `arch`: a version, a manifest
/// digest (or alias), or an ostree checksum. `None` when no release matches.
pub fn booted_release<'a>(
    document: &'a cairn_graph::GraphDocument,
    arch: &str,
    booted: &str,
) -> Option<&'a cairn_graph::document::Release> {
    if let Some((_, release)) = document.release(booted) {
        return Some(release);
    }
    document.releases.iter().find(|release| {
        release.architectures.get(arch).is_some_and(|entry| {
            entry.digest.as_deref() == Some(booted)
                || entry.ostree.as_deref() == Some(booted)
                || entry.aliases.iter().any(|alias| alias == booted)
        })
    })
}

/// `DAYS HH:MM MINUTES` windows in a time zone.
fn schedule(specs: &[String], zone_name: &str) -> anyhow::Result<cairn_graph::windows::Schedule> {
    use cairn_agent::windows::parse_zone;
    use cairn_graph::windows::{MAX_LENGTH_MINUTES, Schedule, Window, parse_day, parse_time};
    let zone = parse_zone(zone_name)
        .with_context(|| format!("--time-zone {zone_name:?} is not an IANA name"))?;
    let mut windows = Vec::new();
    for spec in specs {
        let bad = || {
            format!(
                "--window {spec:?}: expected DAYS HH:MM MINUTES, for example \"Sat,Sun 02:00 120\""
            )
        };
        let parts: Vec<&str> = spec.split_whitespace().collect();
        let [days, start, minutes] = parts.as_slice() else {
            anyhow::bail!(bad());
        };
        let days = days
            .split(',')
            .map(parse_day)
            .collect::<Option<Vec<_>>>()
            .with_context(bad)?;
        windows.push(Window {
            days,
            start: parse_time(start).with_context(bad)?,
            length_minutes: minutes
                .parse()
                .ok()
                .filter(|m| (1..=MAX_LENGTH_MINUTES).contains(m))
                .with_context(bad)?,
        });
    }
    Ok(Schedule {
        windows,
        zone,
        zone_name: zone_name.to_string(),
    })
}

/// `V` or `V1=share,V2=share`; each `V` a version or a digest.
fn parse_booted(text: &str) -> anyhow::Result<Vec<(String, f64)>> {
    if !text.contains('=') {
        return Ok(vec![(text.to_string(), 1.0)]);
    }
    text.split(',')
        .map(|part| {
            let (version, share) = part
                .split_once('=')
                .with_context(|| format!("--booted {part:?}: expected VERSION=SHARE"))?;
            let share: f64 = share
                .parse()
                .ok()
                .filter(|s: &f64| s.is_finite() && *s > 0.0)
                .with_context(|| {
                    format!("--booted {part:?}: the share must be a positive number")
                })?;
            Ok((version.to_string(), share))
        })
        .collect()
}

/// The failing releases' plot beside `out`: `plot.svg` gives `plot-failures.svg`.
pub fn failures_plot_path(out: &std::path::Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map_or_else(|| "plot".into(), |s| s.to_string_lossy().into_owned());
    out.with_file_name(format!("{stem}-failures.svg"))
}

/// `VERSION=SHARE` of `--failure`; the version (or digest) must name a
/// release of `arch`.
fn parse_failure(
    document: &cairn_graph::GraphDocument,
    arch: &str,
    text: &str,
) -> anyhow::Result<cairn_sim::Failure> {
    let (version, share) = text.rsplit_once('=').with_context(|| {
        format!("--failure {text}: expected VERSION=SHARE, for example 44.2=0.3")
    })?;
    let share: f64 = share
        .parse()
        .ok()
        .filter(|s: &f64| (0.0..=1.0).contains(s))
        .with_context(|| format!("--failure {text}: the share must be a number from 0 to 1"))?;
    let release = booted_release(document, arch, version).with_context(|| {
        format!("--failure {text}: no {arch} release has the version or digest {version}")
    })?;
    Ok(cairn_sim::Failure {
        version: release.version.clone(),
        share,
    })
}

/// `min_failures=N,max_share=S[,max_missing=M]` of `--guard`.
fn parse_guard(
    text: &str,
    report_delay: jiff::SignedDuration,
    interval: jiff::SignedDuration,
) -> anyhow::Result<cairn_sim::Guard> {
    anyhow::ensure!(
        interval.as_secs() > 0,
        "--guard-interval must be at least 1s"
    );
    let mut guard = cairn_sim::Guard {
        report_delay,
        interval,
        ..cairn_sim::Guard::default()
    };
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        let (key, value) = part.split_once('=').with_context(|| {
            format!("--guard {part:?}: expected KEY=VALUE (min_failures, max_share, max_missing)")
        })?;
        let (key, value) = (key.trim(), value.trim());
        match key {
            "min_failures" => {
                guard.min_failures = value.parse().ok().filter(|n| *n >= 1).with_context(|| {
                    format!("--guard min_failures={value}: expected a whole number, at least 1")
                })?
            }
            "max_share" => {
                guard.max_share = value
                    .parse()
                    .ok()
                    .filter(|s: &f64| (0.0..=1.0).contains(s))
                    .with_context(|| {
                        format!("--guard max_share={value}: expected a number from 0 to 1")
                    })?
            }
            "max_missing" => {
                guard.max_missing = Some(value.parse().with_context(|| {
                    format!("--guard max_missing={value}: expected a whole number")
                })?)
            }
            other => anyhow::bail!(
                "--guard {other}: unknown key; the keys are min_failures, max_share and max_missing"
            ),
        }
    }
    Ok(guard)
}
