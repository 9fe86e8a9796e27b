//! Staying in the foreground until Ctrl-C / SIGTERM while watching child processes.

use std::time::Duration;

use iotsec_broker::process::BrokerProcess;

/// Blocks until Ctrl-C or SIGTERM (returns `Ok`) or until the broker exits on its own (returns
/// an error naming `log`).
pub fn until_stopped(broker: &mut BrokerProcess, log: &str) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut ticker = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(()),
                _ = term.recv() => return Ok(()),
                _ = ticker.tick() => {
                    if let Some(status) = broker.exited() {
                        anyhow::bail!("mosquitto exited unexpectedly ({status}); see {log}");
                    }
                }
            }
        }
    })
}
