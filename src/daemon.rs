//! Wiring of the daemon: database, migrations, stages, systemd notifications, ordered drain.
//!
//! Start-up order: reach the database (retrying with backoff, interruptible by a signal) →
//! migrate (unless `database.migrate_on_start = false`) → start the gateway on the listener the
//! caller bound, and the backup workers → `READY=1`. Shutdown: `STOPPING=1` → cancel the root token (the gateway stops
//! accepting) → close the tracker and wait for in-flight work, at most
//! `daemon.shutdown_timeout` → close the pool. One [`CancellationToken`] tree and one
//! [`TaskTracker`] own every task; nothing is spawned outside them.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::backup::engine::BackupContext;
use crate::config::Config;
use crate::gateway::{self, GatewayContext, Heartbeat};
use crate::instance::InstanceId;
use crate::secret::StationKey;
use crate::store::Store;

/// Sends a state to systemd's `NOTIFY_SOCKET`; a no-op when not run by systemd.
pub fn notify(state: &[(&str, &str)]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(error) = systemd::daemon::notify(state.iter()) {
        warn!(%error, "sd_notify failed.");
    }
}

/// Runs the daemon until `shutdown` resolves, then drains.
///
/// # Errors
/// Start-up failures (database unreachable before shutdown, migration failure).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = &'static str>,
) -> anyhow::Result<()> {
    let instance = InstanceId::current();
    info!(instance = %instance, version = env!("CARGO_PKG_VERSION"), "Starting.");
    let store = Store::connect_lazy(&config.database).context("database.url")?;
    let root = CancellationToken::new();
    let tracker = TaskTracker::new();
    tokio::pin!(shutdown);

    // Reach the database, interruptible.
    let mut delay = Duration::from_millis(250);
    loop {
        tokio::select! {
            sig = &mut shutdown => {
                info!(signal = sig, "Shutdown requested before the database was reachable.");
                notify(&[("STOPPING", "1")]);
                return Ok(());
            }
            res = store.ping() => match res {
                Ok(()) => break,
                Err(e) => {
                    warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "Database not reachable yet.");
                    notify(&[("STATUS", "waiting for the database")]);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
    if config.database.migrate_on_start {
        let report = store.migrate(&instance.to_string()).await.context("applying migrations")?;
        info!(applied = ?report.applied, "Schema up to date.");
    }

    let key = match StationKey::load(&config.secrets.key_file) {
        Ok(k) => {
            info!(key_id = k.id(), "Station-password key loaded.");
            Some(Arc::new(k))
        }
        Err(e) => {
            warn!(error = %e, "Station passwords will not be stored.");
            None
        }
    };
    let heartbeat = Heartbeat::default();
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let ctx = GatewayContext {
        store: store.clone(),
        key,
        key_file: config.secrets.key_file.display().to_string(),
        config: Arc::new(config.gateway.clone()),
        instance: instance.to_string().into(),
        metrics: Arc::clone(&metrics),
    };
    let addr = listener.local_addr().context("reading the listener address")?;
    let station_key = ctx.key.clone();
    let gateway_task =
        tracker.spawn(gateway::run(listener, ctx, heartbeat.clone(), root.child_token(), tracker.clone()));
    heartbeat.beat();
    if config.backup.enabled {
        let backup = BackupContext {
            store: store.clone(),
            config: Arc::new(config.backup.clone()),
            repo_root: config.repository.root.clone(),
            key: station_key,
            instance: instance.to_string().into(),
            metrics: Arc::clone(&metrics),
        };
        tracker.spawn(crate::backup::engine::run(backup, root.child_token(), tracker.clone()));
    }
    if config.processing.enabled {
        let processing = crate::process::ProcessContext {
            store: store.clone(),
            config: Arc::new(config.processing.clone()),
            repo_root: config.repository.root.clone(),
            instance: instance.to_string().into(),
            metrics: Arc::clone(&metrics),
        };
        tracker.spawn(crate::process::run(processing, root.child_token(), tracker.clone()));
    }
    if config.http.enabled {
        let http_listener = TcpListener::bind(config.http.listen)
            .await
            .with_context(|| format!("binding http.listen {}", config.http.listen))?;
        info!(addr = %http_listener.local_addr().context("reading the HTTP address")?, "HTTP endpoint listening.");
        let http = crate::http::HttpContext {
            store: store.clone(),
            metrics: Arc::clone(&metrics),
            instance: instance.to_string().into(),
            started: std::time::Instant::now(),
            max_connections: config.http.max_connections,
        };
        tracker.spawn(crate::http::run(http_listener, http, root.child_token(), tracker.clone()));
    }
    if config.publish.enabled {
        tracker.spawn(crate::publish::run(
            store.clone(),
            config.repository.root.clone(),
            config.publish.clone(),
            root.child_token(),
        ));
    }

    if let Some(period) = watchdog_period() {
        let hb = heartbeat.clone();
        let cancel = root.child_token();
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    _ = tick.tick() => {
                        // Ping only while the accept loop is alive.
                        if hb.age() < period * 2 {
                            notify(&[("WATCHDOG", "1")]);
                        } else {
                            error!(stalled_ms = hb.age().as_millis() as u64, "Gateway loop stalled; withholding the watchdog ping.");
                        }
                    }
                }
            }
        });
    }
    let status = format!("listening on {addr}");
    notify(&[("READY", "1"), ("STATUS", &status)]);
    info!(%addr, "Ready.");

    let sig = shutdown.await;
    info!(signal = sig, "Shutting down: draining in-flight work.");
    notify(&[("STOPPING", "1"), ("STATUS", "draining")]);
    root.cancel();
    tracker.close();
    let _ = gateway_task.await;
    if tokio::time::timeout(config.daemon.shutdown_timeout, tracker.wait()).await.is_err() {
        warn!(
            timeout_ms = config.daemon.shutdown_timeout.as_millis() as u64,
            "Shutdown timeout: abandoning unfinished work."
        );
    }
    store.close().await;
    info!("Stopped.");
    Ok(())
}

/// Half of `WATCHDOG_USEC` when systemd asked for watchdog pings for this process.
fn watchdog_period() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}
