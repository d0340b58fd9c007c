//! `appcataloga bench gateway`: a load generator for a running daemon (a benchmark, not a test).
//!
//! N concurrent clients behave like `queryCataloga.py`: connect, send the 7 legacy tokens with
//! no terminator, read the reply until the server closes, check it is a status-1 `<json>` reply.
//! Optionally K extra connections stay open without sending a request (reconnecting when the
//! server's request deadline closes them), to measure memory under many open connections.
//! Prints requests/s, latency percentiles, errors, and the daemon's RSS (current and peak)
//! read from `/proc/<pid>/status` when `--pid` is given.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Options of the gateway benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayBenchArgs {
    /// Gateway address.
    #[arg(long, default_value = "127.0.0.1:5555")]
    pub addr: SocketAddr,
    /// Concurrent clients, each sending requests back to back.
    #[arg(long, default_value_t = 256)]
    pub clients: usize,
    /// How long to run.
    #[arg(long, default_value = "10s", value_parser = crate::config::duration_str::parse)]
    pub duration: Duration,
    /// Distinct host ids polled (round robin).
    #[arg(long, default_value_t = 1000)]
    pub hosts: u32,
    /// First host id used.
    #[arg(long, default_value_t = 900_000)]
    pub first_host_id: u32,
    /// Command sent: backup or status.
    #[arg(long, default_value = "backup")]
    pub command: String,
    /// Total request rate to hold (requests/s, spread over the clients); 0 = as fast as
    /// possible. Latency is measured from each request's scheduled time, so a slow server
    /// cannot hide its queueing (no coordinated omission).
    #[arg(long, default_value_t = 0)]
    pub rate: u32,
    /// Extra connections held open without a request.
    #[arg(long, default_value_t = 0)]
    pub idle_connections: usize,
    /// Daemon pid, to report its memory.
    #[arg(long)]
    pub pid: Option<u32>,
}

fn rss_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse().ok()
}

async fn one_request(addr: SocketAddr, request: &[u8]) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    stream.write_all(request).await.map_err(|e| format!("send: {e}"))?;
    let mut reply = Vec::with_capacity(1024);
    stream.read_to_end(&mut reply).await.map_err(|e| format!("recv: {e}"))?;
    let text = String::from_utf8_lossy(&reply);
    if text.starts_with("<json>")
        && text.ends_with("</json>")
        && text.contains("\"status\":1")
        && reply.len() <= 1024
    {
        Ok(())
    } else {
        Err(format!("bad reply: {}", text.chars().take(200).collect::<String>()))
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1000.0
}

/// Runs the benchmark and prints the figures.
///
/// # Errors
/// Only when nothing could be measured.
pub async fn run(args: GatewayBenchArgs) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let peak_rss = Arc::new(AtomicU64::new(0));
    let tracker = tokio_util::task::TaskTracker::new();

    // Memory sampler.
    if let Some(pid) = args.pid {
        let stop = Arc::clone(&stop);
        let peak = Arc::clone(&peak_rss);
        tracker.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid, "VmRSS:") {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }
    // Idle connections.
    let idle_open = Arc::new(AtomicU64::new(0));
    for _ in 0..args.idle_connections {
        let stop = Arc::clone(&stop);
        let open = Arc::clone(&idle_open);
        let addr = args.addr;
        tracker.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(mut s) = TcpStream::connect(addr).await {
                    open.fetch_add(1, Ordering::Relaxed);
                    let mut buf = [0u8; 256];
                    let _ = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await;
                    open.fetch_sub(1, Ordering::Relaxed);
                } else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
    }
    if args.idle_connections > 0 {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let started = Instant::now();
    let deadline = started + args.duration;
    let mut handles = Vec::with_capacity(args.clients);
    for c in 0..args.clients {
        let args = args.clone();
        let errors = Arc::clone(&errors);
        let first_error = Arc::clone(&first_error);
        handles.push(tokio::spawn(async move {
            let mut latencies: Vec<u64> = Vec::with_capacity(4096);
            let mut n = c as u64;
            // Open loop: client c sends at started + (c + k·clients) / rate.
            let period =
                (args.rate > 0).then(|| Duration::from_secs_f64(args.clients as f64 / f64::from(args.rate)));
            let mut next = started + Duration::from_secs_f64(c as f64 / f64::from(args.rate.max(1)));
            while Instant::now() < deadline {
                let scheduled = match period {
                    Some(p) => {
                        let at = next;
                        next += p;
                        if at >= deadline {
                            break;
                        }
                        tokio::time::sleep_until(at.into()).await;
                        at
                    }
                    None => Instant::now(),
                };
                let host = args.first_host_id + (n % u64::from(args.hosts.max(1))) as u32;
                n += args.clients as u64;
                let req = format!(
                    "{} {host} RFEye{host:06} 10.{}.{}.{} 22 bench bench-password",
                    args.command,
                    (host >> 16) & 255,
                    (host >> 8) & 255,
                    host & 255
                );
                match one_request(args.addr, req.as_bytes()).await {
                    Ok(()) => latencies.push(scheduled.elapsed().as_micros() as u64),
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut g) = first_error.lock() {
                            g.get_or_insert(e);
                        }
                    }
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap_or_default());
    }
    let elapsed = started.elapsed();
    let idle_at_end = idle_open.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    all.sort_unstable();
    let ok = all.len() as u64;
    let errs = errors.load(Ordering::Relaxed);
    let load = if args.rate > 0 { format!("{} req/s offered", args.rate) } else { "closed loop".into() };
    println!(
        "gateway benchmark: {} clients, {:?}, {load}, command {}, {} hosts",
        args.clients, args.duration, args.command, args.hosts
    );
    println!("  requests ok      {ok}");
    println!("  errors           {errs}");
    println!("  throughput       {:.0} req/s", ok as f64 / elapsed.as_secs_f64());
    println!(
        "  latency ms       p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        percentile(&all, 0.999),
        percentile(&all, 1.0)
    );
    if args.idle_connections > 0 {
        println!("  idle connections {} requested, {idle_at_end} open at the end", args.idle_connections);
    }
    if let Some(pid) = args.pid {
        println!(
            "  daemon RSS       peak during run {:.1} MiB, VmHWM {:.1} MiB",
            peak_rss.load(Ordering::Relaxed) as f64 / 1024.0,
            rss_kib(pid, "VmHWM:").unwrap_or(0) as f64 / 1024.0
        );
    }
    if let Some(e) = first_error.lock().ok().and_then(|g| g.clone()) {
        println!("  first error      {e}");
    }
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(1), tracker.wait()).await;
    anyhow::ensure!(ok > 0, "no request succeeded");
    Ok(())
}
