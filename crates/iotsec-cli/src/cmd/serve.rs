//! `iotsec serve`: the ingest (verify every message, store, count rejections) and, when
//! server.toml has a `[web]` section, the HTTPS API and dashboard in the same process.

use std::path::PathBuf;

use iotsec_server::ServerConfig;
use iotsec_server::service::Stats;
use iotsec_web::{AcmeOverrides, WebConfig, WebServer};
use tokio::sync::watch;

use crate::Outcome;

/// Arguments of `iotsec serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Server configuration (server.toml).
    #[arg(long, default_value = "server.toml")]
    config: PathBuf,
    /// Obtain and renew the HTTPS certificate from this ACME directory (e.g. Let's Encrypt's
    /// https://acme-v02.api.letsencrypt.org/directory); overrides [web.acme] directory.
    #[arg(long, value_name = "URL")]
    acme_directory: Option<String>,
    /// A DNS name for the ACME certificate (repeatable); it must resolve to this host.
    #[arg(long = "domain", value_name = "NAME")]
    domains: Vec<String>,
    /// Contact address for the ACME account.
    #[arg(long, value_name = "EMAIL")]
    acme_email: Option<String>,
    /// Where the HTTP-01 challenge responder listens (default 0.0.0.0:80).
    #[arg(long, value_name = "ADDR")]
    acme_http_listen: Option<String>,
    /// Trust this root for the ACME server's own HTTPS (test CAs such as pebble).
    #[arg(long, value_name = "FILE")]
    acme_directory_ca: Option<PathBuf>,
}

/// Completes once `rx` says stop.
pub async fn stopped(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn signalled() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Runs the ingest and, with `web`, the HTTPS API until `stop` says so (or one of them
/// fails, which stops the other). Prints the dashboard URL on stdout, then fires `listening`
/// (dropped unfired when the API cannot start).
pub async fn ingest_and_web(
    config: ServerConfig,
    web: Option<WebConfig>,
    stop: watch::Sender<bool>,
    listening: Option<tokio::sync::oneshot::Sender<()>>,
) -> anyhow::Result<Stats> {
    let storage = config.open_storage()?;
    let api = match web {
        Some(web) => {
            let storage = config.open_storage()?;
            let api = WebServer::bind(config.clone(), web, Box::new(storage)).await?;
            let addr = api.local_addr()?;
            tracing::info!(%addr, "HTTPS API and dashboard listening");
            println!("dashboard: https://{addr}/");
            Some(api)
        }
        None => None,
    };
    if let Some(tx) = listening {
        let _ = tx.send(());
    }
    let rx = stop.subscribe();
    let ingest = async {
        tracing::info!(config = %config.path.display(), "ingest starting");
        let r = iotsec_server::service::run(config, Box::new(storage), stopped(rx.clone())).await;
        let _ = stop.send_replace(true);
        r
    };
    let web = async {
        // Without [web] there is nothing to run; that must not stop the ingest.
        let Some(api) = api else { return Ok(()) };
        let r = api.run(stopped(rx.clone())).await;
        let _ = stop.send_replace(true);
        r
    };
    let (stats, web) = tokio::join!(ingest, web);
    web?;
    Ok(stats?)
}

/// Runs `iotsec serve` until Ctrl-C / SIGTERM.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    crate::logging::init();
    let config = ServerConfig::load(&args.config)?;
    let overrides = AcmeOverrides {
        directory: args.acme_directory,
        domains: args.domains,
        email: args.acme_email,
        http_listen: args.acme_http_listen,
        directory_ca: args.acme_directory_ca,
    };
    let web = WebConfig::of_server(&config, &overrides)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let stats = rt.block_on(async move {
        let (stop, _) = watch::channel(false);
        let on_signal = stop.clone();
        tokio::spawn(async move {
            signalled().await;
            let _ = on_signal.send_replace(true);
        });
        ingest_and_web(config, web, stop, None).await
    })?;
    eprintln!(
        "ingest stopped: {} stored, {} duplicates dropped, {} rejected",
        stats.stored, stats.duplicates, stats.rejected
    );
    Ok(Outcome::Ok)
}
