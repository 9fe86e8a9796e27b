//! `iotsec serve`: the ingest (verify every message, store, count rejections).

use std::path::PathBuf;

use iotsec_server::ServerConfig;

use crate::Outcome;

/// Arguments of `iotsec serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Server configuration (server.toml).
    #[arg(long, default_value = "server.toml")]
    config: PathBuf,
}

/// Runs `iotsec serve` until Ctrl-C / SIGTERM.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    crate::logging::init();
    let config = ServerConfig::load(&args.config)?;
    let storage = config.open_storage()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let stats = rt.block_on(async move {
        let shutdown = async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(_) => return std::future::pending().await,
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        };
        tracing::info!(config = %args.config.display(), "ingest starting");
        iotsec_server::service::run(config, Box::new(storage), shutdown).await
    })?;
    eprintln!(
        "ingest stopped: {} stored, {} duplicates dropped, {} rejected",
        stats.stored, stats.duplicates, stats.rejected
    );
    Ok(Outcome::Ok)
}
