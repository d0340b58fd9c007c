//! OS signals → one shutdown future.
//!
//! The first SIGTERM or SIGINT resolves [`shutdown_signal`] (graceful drain). A second one
//! while draining exits at once with status 130, for an operator who does not want to wait.

use std::pin::Pin;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_tokio::Signals;

/// Resolves on the first SIGTERM/SIGINT; the returned value names it.
///
/// # Errors
/// When the signal handlers cannot be installed.
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = &'static str>> {
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    Ok(async move {
        let first = next(&mut signals).await;
        // Deliberately outside the daemon's TaskTracker: it must outlive the drain it can cut
        // short, and the tracker's wait() must not wait for it.
        tokio::spawn(async move {
            if let Some(sig) = next(&mut signals).await {
                tracing::warn!(signal = name(sig), "Second signal while draining: exiting now.");
                std::process::exit(130);
            }
        });
        first.map(name).unwrap_or("signal stream closed")
    })
}

async fn next(signals: &mut Signals) -> Option<i32> {
    use futures_core::Stream;
    std::future::poll_fn(|cx| Pin::new(&mut *signals).poll_next(cx)).await
}

fn name(sig: i32) -> &'static str {
    match sig {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        _ => "signal",
    }
}
