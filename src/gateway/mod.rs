//! The Zabbix-facing TCP gateway: accept, read one request, answer once, close.
//!
//! Every connection is bounded: an allow-list of client networks, a semaphore of
//! `gateway.max_connections` permits taken *before* anything is spawned (the excess gets a
//! status-0 "busy" reply written without blocking and is closed at once, never queued), a
//! whole-request deadline that a trickling client cannot extend, a request size cap, and a
//! budget for the database work. The gateway never touches SSH or files; it only talks to the
//! [`Store`]. No input can panic it: parsing is total and every error becomes a reply.

pub mod protocol;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::timeout_at;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::GatewayConfig;
use crate::secret::StationKey;
use crate::store::gateway::{EnqueueOutcome, HostStatus, PasswordOutcome, StationAccess, StopOutcome};
use crate::store::{Store, StoreError, status};
use protocol::{Command, Request, StatusReply, parse_request, render_error, render_status};

/// Everything a connection handler needs. Cheap to clone.
#[derive(Clone)]
pub struct GatewayContext {
    /// The queue.
    pub store: Store,
    /// Key that seals station passwords; `None` means passwords are not stored.
    pub key: Option<Arc<StationKey>>,
    /// Where the key was expected (for the warning in replies).
    pub key_file: String,
    /// Limits and allow-list.
    pub config: Arc<GatewayConfig>,
    /// This daemon instance, recorded as the actor of state changes.
    pub instance: Arc<str>,
    /// Counters exported on `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Liveness of the accept loop, read by the systemd watchdog.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    origin: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat { origin: Instant::now(), last_ms: Arc::new(AtomicU64::new(0)) }
    }
}

impl Heartbeat {
    /// Records that the loop is alive now.
    pub fn beat(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Time since the last beat.
    pub fn age(&self) -> Duration {
        let now = self.origin.elapsed();
        now.saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

fn allowed(allow: &[IpNet], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    allow.iter().any(|net| net.contains(&ip))
}

/// Serves connections until `cancel` fires; then stops accepting. In-flight requests are
/// tracked by `tracker` and finish on their own (each is bounded by the request deadline).
pub async fn run(
    listener: TcpListener,
    ctx: GatewayContext,
    heartbeat: Heartbeat,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let permits = Arc::new(Semaphore::new(ctx.config.max_connections));
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut accept_errors = 0u32;
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "Gateway listening.");
    }
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = tick.tick() => heartbeat.beat(),
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    accept_errors = 0;
                    if !allowed(&ctx.config.allow, peer.ip()) {
                        warn!(peer = %peer, "Refused a client outside gateway.allow.");
                        refuse(&stream, &format!("client {} is not allowed (gateway.allow)", peer.ip()));
                        continue;
                    }
                    match Arc::clone(&permits).try_acquire_owned() {
                        Ok(permit) => {
                            let ctx = ctx.clone();
                            let cancel = cancel.clone();
                            tracker.spawn(async move { serve(stream, peer, ctx, permit, cancel).await });
                        }
                        Err(_) => {
                            warn!(peer = %peer, limit = ctx.config.max_connections, "Gateway busy: refused a connection.");
                            refuse(&stream, &format!(
                                "server busy: {} connections in progress (gateway.max_connections); retry later",
                                ctx.config.max_connections
                            ));
                        }
                    }
                }
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    accept_errors = accept_errors.saturating_add(1);
                    warn!(%error, "Accept failed.");
                    tokio::time::sleep(Duration::from_millis(10u64 << accept_errors.min(6))).await;
                }
            },
        }
    }
    info!("Gateway stopped accepting connections.");
}

/// Writes a short error reply without waiting, then drops the connection.
fn refuse(stream: &TcpStream, message: &str) {
    let _ = stream.try_write(&render_error(message));
}

async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    ctx: GatewayContext,
    _permit: OwnedSemaphorePermit,
    cancel: CancellationToken,
) {
    let started = Instant::now();
    let _ = stream.set_nodelay(true);
    let (reply, command, ok) = match read_request(&mut stream, &ctx.config, &cancel).await {
        ReadOutcome::Closed => return,
        ReadOutcome::Reply(bytes) => (bytes, None, false),
        ReadOutcome::Request(buf) => match parse_request(&buf) {
            Ok(req) => {
                let (reply, ok) = answer(&ctx, &req, peer).await;
                (reply, Some(req.command), ok)
            }
            Err(e) => {
                debug!(peer = %peer, error = %e, "Rejected a request.");
                (render_error(&e.to_string()), None, false)
            }
        },
    };
    ctx.metrics.record_gateway(command, ok, started.elapsed());
    let write = crate::net::reply_and_close(&mut stream, &reply, 4 << 20);
    if let Err(error) = tokio::time::timeout(ctx.config.request_timeout, write).await.unwrap_or_else(|_| {
        Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "client did not read the reply"))
    }) {
        debug!(peer = %peer, %error, "Could not deliver a reply.");
    }
    debug!(peer = %peer, elapsed_ms = started.elapsed().as_millis() as u64, "Connection done.");
}

enum ReadOutcome {
    /// The peer closed without sending anything (port probe).
    Closed,
    /// Answer this without parsing.
    Reply(Vec<u8>),
    /// A request to parse.
    Request(Vec<u8>),
}

async fn read_request(
    stream: &mut TcpStream,
    cfg: &GatewayConfig,
    cancel: &CancellationToken,
) -> ReadOutcome {
    let deadline = tokio::time::Instant::now() + cfg.request_timeout;
    let mut buf: Vec<u8> = Vec::with_capacity(256);
    let mut chunk = [0u8; 2048];
    loop {
        let wait_until = if buf.is_empty() {
            deadline
        } else {
            (tokio::time::Instant::now() + cfg.idle_gap).min(deadline)
        };
        let read = tokio::select! {
            r = timeout_at(wait_until, stream.read(&mut chunk)) => r,
            () = cancel.cancelled(), if buf.is_empty() => {
                return ReadOutcome::Reply(render_error("Server shutting down"));
            }
        };
        match read {
            Ok(Ok(0)) => {
                return if buf.is_empty() { ReadOutcome::Closed } else { ReadOutcome::Request(buf) };
            }
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > cfg.max_request_bytes {
                    return ReadOutcome::Reply(render_error(&format!(
                        "request too large (more than {} bytes)",
                        cfg.max_request_bytes
                    )));
                }
                if protocol::looks_complete(&buf) {
                    return ReadOutcome::Request(buf);
                }
            }
            Ok(Err(_)) => return ReadOutcome::Closed,
            Err(_) if tokio::time::Instant::now() >= deadline => {
                return ReadOutcome::Reply(render_error(&format!(
                    "no complete request within {} ms",
                    cfg.request_timeout.as_millis()
                )));
            }
            // Quiet for the idle gap: what arrived is the whole (unterminated) request.
            Err(_) => return ReadOutcome::Request(buf),
        }
    }
}

async fn answer(ctx: &GatewayContext, req: &Request, peer: SocketAddr) -> (Vec<u8>, bool) {
    let actor = format!("gateway {} peer {}", ctx.instance, peer.ip());
    let budget = ctx.config.db_timeout;
    let result = match req.command {
        Command::Backup => {
            let Some(access) = &req.access else {
                return (render_error("backup needs host_uid, host_add, host_port, user and passwd"), false);
            };
            let station = StationAccess {
                host_id: req.host_id,
                host_uid: access.host_uid.clone(),
                address: access.address.clone(),
                port: access.port,
                user: access.user.clone(),
                password: Some(access.password.clone()),
            };
            let key = ctx.key.as_deref();
            match tokio::time::timeout(budget, ctx.store.request_backup(&station, key, &actor)).await {
                Ok(Ok((outcome, pw, st))) => {
                    log_enqueue(peer, req, outcome);
                    Ok(StatusReply::new(&st, backup_message(outcome, pw, &st, &ctx.key_file)))
                }
                Ok(Err(e)) => Err(e),
                Err(_) => Err(StoreError::Unavailable(format!("no answer within {} ms", budget.as_millis()))),
            }
        }
        Command::Stop => {
            match tokio::time::timeout(budget, ctx.store.request_stop(req.host_id, &actor)).await {
                Ok(Ok(Some((outcome, st)))) => {
                    info!(peer = %peer, host_id = req.host_id, files = outcome.files_suspended, "Backup stopped by request.");
                    Ok(StatusReply::new(&st, stop_message(outcome)))
                }
                Ok(Ok(None)) => return (render_error(&unknown_host(req.host_id)), false),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(StoreError::Unavailable(format!("no answer within {} ms", budget.as_millis()))),
            }
        }
        Command::Status => match tokio::time::timeout(budget, ctx.store.host_status(req.host_id)).await {
            Ok(Ok(Some(st))) => Ok(StatusReply::new(&st, condition_message(&st))),
            Ok(Ok(None)) => return (render_error(&unknown_host(req.host_id)), false),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(StoreError::Unavailable(format!("no answer within {} ms", budget.as_millis()))),
        },
    };
    match result {
        Ok(reply) => (render_status(&reply), true),
        Err(e) => {
            warn!(peer = %peer, host_id = req.host_id, command = %req.command, error = %e, "Request failed.");
            let what = if e.is_unavailable() { "database unavailable" } else { "database error" };
            let reply = render_error(&format!(
                "{what} while handling {} for host {}: {e}; nothing was changed, retry at the next poll",
                req.command, req.host_id
            ));
            (reply, false)
        }
    }
}

fn log_enqueue(peer: SocketAddr, req: &Request, outcome: EnqueueOutcome) {
    let host_uid = req.access.as_ref().map(|a| a.host_uid.as_str()).unwrap_or("");
    match outcome {
        EnqueueOutcome::Created | EnqueueOutcome::Requeued(_) => {
            info!(peer = %peer, host_id = req.host_id, host_uid, ?outcome, "Backup queued.");
        }
        _ => debug!(peer = %peer, host_id = req.host_id, host_uid, ?outcome, "Backup poll."),
    }
}

fn unknown_host(host_id: i32) -> String {
    format!("host {host_id} is unknown: no backup was ever requested for it")
}

/// The host's condition (`HOST.NU_STATUS`) and last task failure, for the reply message.
fn condition_message(st: &HostStatus) -> String {
    let mut parts = Vec::new();
    let condition = match st.condition {
        0 => None,
        1 => Some("no daemon: station config missing"),
        2 => Some("halt flag alert"),
        3 => Some("host key mismatch"),
        4 => Some("authentication failed"),
        5 => Some("unreachable"),
        _ => Some("unknown condition"),
    };
    if let Some(c) = condition {
        match &st.condition_message {
            Some(m) if !m.is_empty() => parts.push(format!("{c}: {m}")),
            _ => parts.push(c.to_string()),
        }
    }
    if let Some(s) = st.task_status {
        if s == status::ERROR || s == status::FROZEN {
            parts.push(format!(
                "backup {}: {}",
                status::name(s),
                st.task_message.as_deref().unwrap_or("no detail")
            ));
        } else if parts.is_empty() {
            parts.push(format!("backup {}", status::name(s)));
        }
    }
    if !st.has_password {
        parts.push("no station password stored".into());
    }
    parts.join("; ")
}

fn backup_message(outcome: EnqueueOutcome, pw: PasswordOutcome, st: &HostStatus, key_file: &str) -> String {
    let mut msg = match outcome {
        EnqueueOutcome::Created => "backup queued".to_string(),
        EnqueueOutcome::Requeued(prev) => {
            format!("backup queued (previous run {})", status::name(prev))
        }
        EnqueueOutcome::AlreadyPending => "backup already queued".to_string(),
        EnqueueOutcome::AlreadyRunning => "backup running".to_string(),
        EnqueueOutcome::Frozen => format!(
            "backup frozen until an operator acts: {}",
            st.task_message.as_deref().unwrap_or("no detail")
        ),
    };
    if pw == PasswordOutcome::NoKey {
        msg.push_str(&format!(
            "; warning: password not stored: no encryption key at {key_file} (create one with `appcataloga keygen {key_file}`)"
        ));
    }
    let condition = condition_message(st);
    if !condition.is_empty() && !condition.starts_with("backup ") {
        msg.push_str("; ");
        msg.push_str(&condition);
    }
    msg
}

fn stop_message(outcome: StopOutcome) -> String {
    let mut msg = if outcome.cancel_requested {
        "stop requested: the running backup stops at its next check".to_string()
    } else if outcome.task_before == Some(status::PENDING) {
        "backup stopped".to_string()
    } else {
        "nothing to stop".to_string()
    };
    if outcome.files_suspended > 0 {
        msg.push_str(&format!("; {} pending file copies suspended", outcome.files_suspended));
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_matches_mapped_v4() {
        let allow: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        assert!(allowed(&allow, "127.0.0.1".parse().unwrap()));
        assert!(allowed(&allow, "::ffff:127.0.0.1".parse().unwrap()));
        assert!(!allowed(&allow, "10.0.0.1".parse().unwrap()));
    }
}
