//! `cairn demo`: Cairn end to end on this machine in under a minute, with
//! no registry, no root and no network: real OCI images in an `oci:`
//! layout, a signed document published next to them, real agents deciding
//! for simulated hosts, a simulated fleet with its plot, and the rollout
//! guard halting a release that fails on part of that fleet.

use crate::cli::args;
use anyhow::Context;
use bytes::Bytes;
use cairn_agent::agent::{Agent, World};
use cairn_agent::host::Tool;
use cairn_agent::host::driver::{CommandRunner, Driver, DriverError, Output};
use cairn_agent::reason::ReasonKind;
use cairn_agent::source::SourceGraph;
use cairn_agent::status::StateName;
use cairn_oci::Store;
use cairn_oci::layout::Layout;
use cairn_sim::host::SimulatedHost;
use jiff::{SignedDuration, Timestamp};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Show Cairn working: images, a signed graph, agents, and a fleet plot.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to put everything (kept afterwards). Default: a new temporary directory.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Nodes in the simulated fleet.
    #[arg(long, default_value_t = 10_000)]
    nodes: usize,
}

const STREAM: &str = "stable";
/// The releases: version, what the policy makes of it.
const RELEASES: [(&str, &str); 5] = [
    ("1.0", "the release most hosts run"),
    ("1.1", "a barrier: it carries a one-time migration"),
    ("1.2", "a dead-end: a regression was found"),
    ("1.3", "the fix, offered to everybody"),
    ("1.4", "rolling out over 2 days, started 12 hours ago"),
];

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
            dir.clone()
        }
        None => tempfile::Builder::new()
            .prefix("cairn-demo-")
            .tempdir()
            .context("creating a temporary directory")?
            .keep(),
    };
    args::parallel_runtime()?.block_on(demo(&dir, args.nodes))?;
    Ok(ExitCode::SUCCESS)
}

fn say(text: &str) {
    println!("{text}");
}

async fn demo(dir: &Path, nodes: usize) -> anyhow::Result<()> {
    let now = Timestamp::now();
    let layout_dir = dir.join("repo");
    let store = Store::Layout(Layout::open_or_create(&layout_dir)?);
    let repository = format!("oci:{}", layout_dir.display());
    say(&format!("Cairn demo, in {}\n", dir.display()));

    say(&format!(
        "1. Five bootable images in an OCI image layout ({repository}):"
    ));
    let mut versions = HashMap::new();
    let mut digests = HashMap::new();
    for (i, (version, what)) in RELEASES.iter().enumerate() {
        let created = now - SignedDuration::from_hours(24 * 7 * (RELEASES.len() - i) as i64);
        let digest = write_image(&store, version, created).await?;
        say(&format!(
            "   {version}  {}  {what}",
            cairn_graph::digest::short(&digest)
        ));
        versions.insert(digest.clone(), version.to_string());
        digests.insert(version.to_string(), digest);
    }

    let rollout_start = (now - SignedDuration::from_hours(12)).as_second();
    let policy = serde_json::json!({
        "stream": STREAM,
        "metadata": {"last-modified": now.to_string()},
        "releases": [
            {"version": "1.1", "metadata": {"barrier": {"reason": "https://example.org/migrate-bootloader"}}},
            {"version": "1.2", "metadata": {"deadend": {"reason": "kernel regression on some NICs"}}},
            {"version": "1.4", "metadata": {"rollout": {"start_epoch": rollout_start, "start_percentage": 0.0, "duration_minutes": 2880}}},
        ]
    });
    let policy = cairn_graph::fcos::Updates::from_json(policy.to_string().as_bytes())?;
    say("\n2. The release team's policy (Fedora CoreOS's updates.json format):");
    say("   1.1 barrier, 1.2 dead-end, 1.4 rollout 0% -> 100% over 48 h, 25% now.");

    say("\n3. Scan, assemble, sign and publish the update graph document into the layout:");
    let key = cairn_oci::signing::SigningKey::generate();
    std::fs::write(dir.join("demo.pub"), key.verifying_key().to_pem()?)?;
    let report = cairn_oci::scan::scan(
        &store,
        &cairn_oci::scan::ScanOptions::for_stream(STREAM),
        &mut cairn_oci::scan::ScanCache::default(),
        &|_, _| {},
    )
    .await?;
    let assembled = cairn_graph::assemble::assemble(
        None,
        report.candidates,
        &cairn_graph::assemble::AssembleOptions {
            stream: STREAM,
            repository: &repository,
            now,
            expires: now + SignedDuration::from_hours(24 * 14),
            default_rollout: Some(cairn_graph::Rollout::immediate()),
            policy: Some(&policy),
            present: Some(&report.present),
            base: None,
        },
    )?;
    let tag = cairn_oci::document::default_tag(STREAM);
    let published = cairn_oci::document::publish(
        &store,
        assembled.document,
        &cairn_oci::document::PublishOptions {
            tag: &tag,
            identity: &repository,
            key: Some(&key),
            settle: std::time::Duration::ZERO,
            expected: Some(None),
        },
    )
    .await?;
    say(&format!(
        "   {repository}:{tag}, sequence {}, signed with {}",
        published.sequence,
        dir.join("demo.pub").display()
    ));

    // What every agent does first: read the document and check its signature.
    let location = cairn_oci::Location::parse(&format!("{repository}:{tag}"))?;
    let client = cairn_oci::RegistryClient::new(cairn_oci::ClientOptions::default())?;
    let fetched = cairn_oci::document::fetch_location(&location, &client).await?;
    let signers =
        cairn_oci::trust::RoleKeys::any_of(cairn_oci::trust::Role::Graph, &[key.verifying_key()]);
    fetched.verify(
        &location.to_string(),
        &cairn_oci::document::TrustPolicy {
            signers: Some(&signers),
            allow_unsigned: false,
            now,
            last_seen: None,
            stream: Some(STREAM),
        },
    )?;
    let document = fetched.document;

    say("\n4. Four hosts, each with a real Cairn agent (the hosts are simulated in process).");
    say("   Hosts on 1.0 must boot the barrier 1.1 first; nobody is sent to the dead-end 1.2;");
    say("   1.4 goes only to hosts whose wariness its rollout has reached:");
    let hosts = [
        ("host-a", "1.0", 0.10),
        ("host-b", "1.0", 0.90),
        ("host-c", "1.2", 0.20),
        ("host-d", "1.3", 0.15),
    ];
    for (name, booted, wariness) in hosts {
        say(&format!("   {name}: on {booted}, wariness {wariness:.2}"));
        let digest = digests.get(booted).context("demo release")?;
        let host = SimulatedHost::new(&format!("{repository}:{STREAM}"), digest, versions.clone());
        run_agent(dir, name, &host, &document, wariness, &repository, now).await?;
        say(&format!(
            "     -> now on {} after {} reboot(s)",
            host.booted_version(),
            host.reboots()
        ));
    }

    say(&format!(
        "\n5. The whole fleet: {nodes} nodes on 1.0, checking every 5 minutes, over 3 days:"
    ));
    let fleet = cairn_sim::Options {
        nodes,
        wariness: cairn_sim::Wariness::Uniform,
        arch: "x86_64".into(),
        booted: vec![("1.0".into(), 1.0)],
        start: now,
        span: SignedDuration::from_hours(72),
        check_interval: SignedDuration::from_mins(5),
        reboot_time: SignedDuration::from_mins(2),
        schedule: None,
        lock_slots: None,
        samples: 400,
        seed: 1,
        failures: Vec::new(),
        guard: None,
        halted: Vec::new(),
    };
    let timeline = cairn_sim::simulate(&document, &fleet)?;
    for line in timeline.summary().lines() {
        say(&format!("   {line}"));
    }
    let plot = dir.join("rollout.svg");
    cairn_sim::plot::svg(
        &timeline,
        "cairn demo: 1.0 -> 1.1 (barrier) -> 1.3 -> 1.4 (rollout)",
        &plot,
    )
    .map_err(anyhow::Error::msg)?;
    say(&format!("\nPlot: {}", plot.display()));

    say("\n6. Suppose 1.4 fails to boot on 30% of the hosts that take it. Each host tells");
    say("   cairn serve \"rebooting\" before it reboots and its failure at once; the rollout");
    say("   guard halts 1.4 at 3 failures and a failure share above 5%, and from then on no");
    say("   host is offered it. The same fleet, with the guard and without:");
    let compared = cairn_sim::simulate_with_and_without_guard(
        &document,
        &cairn_sim::Options {
            failures: vec![cairn_sim::Failure {
                version: "1.4".into(),
                share: 0.3,
            }],
            guard: Some(cairn_sim::Guard::default()),
            ..fleet
        },
    )?;
    for line in compared.summary().lines() {
        say(&format!("   {line}"));
    }
    let guard_plot = dir.join("guard.svg");
    cairn_sim::plot::failures_svg(
        &[
            ("with the guard", &compared.with_guard),
            ("without the guard", &compared.without_guard),
        ],
        "cairn demo: 1.4 fails on 30% of hosts",
        &guard_plot,
    )
    .map_err(anyhow::Error::msg)?;
    say(&format!("Guard plot: {}", guard_plot.display()));
    say("\nNext, try:");
    say(&format!(
        "   cairn graph show --document {repository}:{tag} --key {}",
        dir.join("demo.pub").display()
    ));
    say(&format!(
        "   cairn graph show --document {repository}:{tag} --key {} --wariness 0.9",
        dir.join("demo.pub").display()
    ));
    say(&format!(
        "   cairn simulate --document {repository}:{tag} --key {} --nodes 100000 --window \"Sat,Sun 02:00 120\" --out {}",
        dir.join("demo.pub").display(),
        dir.join("windows.svg").display()
    ));
    say(&format!(
        "   cairn simulate --document {repository}:{tag} --key {} --booted 1.0 --failure 1.4=0.3 --guard min_failures=3,max_share=0.05 --out {}",
        dir.join("demo.pub").display(),
        dir.join("failing.svg").display()
    ));
    Ok(())
}

/// One host's agent until it settles: each pass recovers, then steps; a
/// finalization "reboots" the simulated host at once, and the next pass
/// verifies the boot and checks again.
async fn run_agent(
    dir: &Path,
    name: &str,
    host: &SimulatedHost,
    document: &cairn_graph::GraphDocument,
    wariness: f64,
    repository: &str,
    now: Timestamp,
) -> anyhow::Result<()> {
    let root = dir.join("hosts").join(name);
    let config = root.join("etc/cairn/config.d");
    std::fs::create_dir_all(&config)?;
    std::fs::write(
        config.join("50-demo.toml"),
        format!("[identity]\nrollout_wariness = {wariness}\n"),
    )?;
    let settings = cairn_agent::config::load(&cairn_agent::config::ConfigDirs::under(&root))?;
    let driver = Driver::new(
        Simulated(host.clone()),
        Tool::Bootc,
        "bootc",
        std::time::Duration::from_secs(60),
    );
    let mut agent = Agent::new(
        settings,
        driver,
        None,
        root.join("var/lib/cairn"),
        wariness,
        "x86_64",
        repository,
    )?;
    let world = World {
        now,
        graph: Ok(SourceGraph::Document(document.clone())),
        users_logged_in: false,
        may_reboot: true,
        boot_health: cairn_agent::health::BootHealth::Healthy,
        boot_id: None,
    };
    let mut said = String::new();
    agent.recover(now).await?;
    for _ in 0..16 {
        // The host rebooted: the agent starts again and finds out how it went.
        if matches!(agent.state(), cairn_agent::machine::State::Rebooting { .. }) {
            agent.recover(now).await?;
        }
        let before = agent.state().clone();
        let report = agent.tick(&world).await?;
        let startup = report.reason.kind == ReasonKind::SteadyStateReported;
        if report.reason.message != said && !startup {
            say(&format!("     {}: {}", report.state, report.reason));
            said = report.reason.message.clone();
        }
        if agent.state() == &before && report.state == StateName::Steady {
            break;
        }
    }
    Ok(())
}

/// The agent's bootc driver, answered by a simulated host. The simulator
/// knows nothing of the agent, so the two meet here.
struct Simulated(SimulatedHost);

impl CommandRunner for Simulated {
    async fn run(
        &self,
        _program: &str,
        args: &[String],
        _mutating: bool,
        _timeout: std::time::Duration,
    ) -> Result<Output, DriverError> {
        let answer = self.0.answer(args);
        Ok(Output {
            code: Some(answer.code),
            stdout: answer.stdout,
            stderr: answer.stderr,
        })
    }
}

/// One small bootable image: a layer with an os-release file, a config with
/// the labels bootc images carry, and a manifest tagged with the version.
async fn write_image(store: &Store, version: &str, created: Timestamp) -> anyhow::Result<String> {
    let mut builder = tar::Builder::new(Vec::new());
    let content = format!("NAME=\"Cairn demo\"\nVERSION_ID={version}\n");
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    builder.append_data(&mut header, "usr/lib/os-release", content.as_bytes())?;
    let layer = Bytes::from(builder.into_inner()?);
    let layer_size = layer.len();
    let layer_digest = store.put_blob(layer).await?;
    let created = created.to_string();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": created,
        "config": {"Labels": {
            "containers.bootc": "1", "ostree.bootable": "true",
            "org.opencontainers.image.version": version,
            "org.opencontainers.image.created": created,
            "com.coreos.stream": STREAM,
        }},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    });
    let config = Bytes::from(config.to_string());
    let config_size = config.len();
    let config_digest = store.put_blob(config).await?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": cairn_oci::client::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
    });
    Ok(store
        .put_manifest(
            Bytes::from(manifest.to_string()),
            cairn_oci::client::OCI_MANIFEST,
            Some(version),
        )
        .await?)
}
