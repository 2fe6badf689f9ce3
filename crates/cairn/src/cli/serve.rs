//! `cairn serve`: the Cincinnati-compatible graph server.

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

/// Serve `/v1/graph` for Zincati hosts and `/v2/graph/<stream>` for agents;
/// with `[fleet_lock]`, a FleetLock server; with `[reports]`, the collector of
/// hosts' outcome reports.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The server configuration (TOML).
    #[arg(long)]
    config: PathBuf,
    /// Listen address; overrides `listen` (default 127.0.0.1:8080).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Seconds between source refreshes; overrides `refresh_interval_seconds`.
    #[arg(long)]
    refresh_interval: Option<u64>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let mut config = cairn_server::Config::from_toml(&text, &args.config)?;
    // As containers tools do, registries the host marks insecure in
    // registries.conf are reached over plain HTTP without repeating them here.
    // A server runs for long: a broken file stops it now, not at each refresh.
    config.registries_conf = cairn_oci::registries_conf::RegistriesConf::load_for_user()?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(seconds) = args.refresh_interval {
        anyhow::ensure!(seconds > 0, "--refresh-interval must be at least 1");
        config.refresh_interval = std::time::Duration::from_secs(seconds);
    }
    crate::cli::args::init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(cairn_server::serve(config))?;
    Ok(ExitCode::SUCCESS)
}
