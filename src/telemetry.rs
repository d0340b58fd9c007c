//! Logging setup: journald under systemd, readable text or JSON lines on stderr otherwise.
//!
//! Structured fields use these names everywhere so `journalctl -o json` shows them as
//! `HOST_ID`, `HOST_UID`, `TASK_ID`, `FILE` and `PEER` (journald upper-cases field names):
//! `host_id`, `host_uid`, `task_id`, `file`, `peer`. Secrets never reach a log call: they live
//! in `SecretString`, whose `Debug` is redacted.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// The format actually used once `auto` is resolved.
pub fn resolve(format: LogFormat) -> LogFormat {
    match format {
        LogFormat::Auto if std::env::var_os("JOURNAL_STREAM").is_some() => LogFormat::Journald,
        LogFormat::Auto => LogFormat::Text,
        other => other,
    }
}

/// Installs the global subscriber. `RUST_LOG` overrides `level`.
pub fn init(format: LogFormat, level: &str) {
    let filter = || {
        EnvFilter::try_from_default_env()
            .or_else(|_| EnvFilter::try_new(format!("{level},sqlx=warn")))
            .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"))
    };
    match resolve(format) {
        LogFormat::Journald => match tracing_journald::layer() {
            Ok(layer) => {
                tracing_subscriber::registry()
                    .with(filter())
                    .with(layer.with_field_prefix(None).with_syslog_identifier("appcataloga".into()))
                    .init();
            }
            Err(error) => {
                init_text(filter());
                tracing::warn!(%error, "journald is not reachable; logging to stderr instead.");
            }
        },
        LogFormat::Json => {
            tracing_subscriber::fmt()
                .json()
                .with_env_filter(filter())
                .with_writer(std::io::stderr)
                .with_current_span(true)
                .init();
        }
        LogFormat::Text | LogFormat::Auto => init_text(filter()),
    }
}

fn init_text(filter: EnvFilter) {
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
