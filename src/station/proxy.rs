//! A loopback TCP proxy that delays each direction by a fixed time, to put a station "far away".
//!
//! Why: `tc netem` is unavailable on the test machines, and SFTP throughput is governed by
//! in-flight bytes / RTT, so benchmarks and tests need a real round-trip time. Data is forwarded
//! in a pipeline (each chunk is released `delay` after it was read), so the proxy adds latency
//! without capping bandwidth beyond its bounded buffer.
//!
//! What it must not do: alter, reorder or drop bytes; buffer without bound (each direction holds
//! at most [`MAX_BUFFERED_CHUNKS`] chunks); outlive its owner (dropping the proxy cancels every
//! task, which all live in one [`TaskTracker`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Chunks buffered per direction (each at most 64 KiB).
pub const MAX_BUFFERED_CHUNKS: usize = 512;
const CHUNK: usize = 64 * 1024;

/// A running delay proxy; dropping it stops it and closes every proxied connection.
pub struct DelayProxy {
    addr: SocketAddr,
    cancel: CancellationToken,
    tracker: TaskTracker,
    accepted: Arc<AtomicU64>,
}

impl DelayProxy {
    /// Listens on a free loopback port and forwards every connection to `target`, delaying each
    /// direction by `one_way` (so the added round-trip time is `2 × one_way`).
    pub async fn start(target: SocketAddr, one_way: Duration) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let accepted = Arc::new(AtomicU64::new(0));
        let (c, t, a) = (cancel.clone(), tracker.clone(), accepted.clone());
        tracker.spawn(async move {
            loop {
                let conn = tokio::select! {
                    _ = c.cancelled() => break,
                    conn = listener.accept() => conn,
                };
                let Ok((inbound, _)) = conn else { continue };
                a.fetch_add(1, Ordering::Relaxed);
                let (c2, t2) = (c.clone(), t.clone());
                t.spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (ir, iw) = inbound.into_split();
                    let (or, ow) = outbound.into_split();
                    t2.spawn(pipe(ir, ow, one_way, c2.clone()));
                    t2.spawn(pipe(or, iw, one_way, c2));
                });
            }
        });
        tracker.close();
        Ok(Self { addr, cancel, tracker, accepted })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// How many TCP connections were accepted so far (to count connection attempts).
    pub fn connections(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Stops accepting, closes every connection and waits for the tasks to end.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tracker.wait().await;
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
    cancel: CancellationToken,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(MAX_BUFFERED_CHUNKS);
    let reader = async move {
        loop {
            let mut buf = vec![0u8; CHUNK];
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.send((Instant::now() + delay, buf)).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, buf)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&buf).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = async { tokio::join!(reader, writer) } => {}
    }
}
