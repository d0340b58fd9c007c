//! The observability endpoint: a minimal HTTP/1.1 server for Zabbix HTTP-agent items and
//! Prometheus scrapes.
//!
//! Routes (GET only; anything else is 404, other methods 405):
//! - `/status`: JSON overview of the daemon (instance, version, uptime, database reachability,
//!   queue depths, throughput in the last hour and in total, failures by error code, hosts by
//!   condition). It answers 200 even when the database is down (`"database": "unavailable"`),
//!   so a Zabbix item can alert on that value instead of on a timeout.
//! - `/hosts/{id}`: one host's status, the keys of the Zabbix gateway reply plus `condition`,
//!   `condition_message`, `task_status` and `task_message` (404 for an unknown host, 400 for a
//!   bad id, 503 when the database cannot answer).
//! - `/metrics`: Prometheus text exposition: gauges from the database (queue depths, hosts by
//!   condition, failed files by code) and this process's counters ([`Metrics`]).
//!
//! Why hand-written: the endpoint needs a few GET routes, not a web framework; a small,
//! strictly bounded server keeps the dependency set (and the attack surface) where it is.
//!
//! What it must not do: block or be blocked. Like the gateway, a connection holds a semaphore
//! permit taken before anything is spawned (the excess gets a 503 written without waiting and
//! is closed), the request head must arrive whole within [`HEADER_DEADLINE`] and fit in
//! [`MAX_REQUEST_BYTES`], every database call has its own short budget, every reply carries
//! `Connection: close`, and no input can panic it. It never writes to the database.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::timeout_at;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::gateway::protocol::StatusReply;
use crate::metrics::{Exposition, Metrics};
use crate::store::gateway::HostStatus;
use crate::store::stats::{QueueOverview, Throughput};
use crate::store::{Store, StoreError, status, task_type};

/// Largest request head accepted (request line and headers), in bytes.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// The whole request head must have arrived this long after the connection was accepted.
pub const HEADER_DEADLINE: Duration = Duration::from_secs(5);

/// Budget of the reachability check in `/status`.
pub const PING_TIMEOUT: Duration = Duration::from_millis(500);

/// Budget of the other database work of one request.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Budget for writing the reply (a client that does not read is dropped).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Window of the "recent" throughput figures in `/status`.
const RECENT_WINDOW: Duration = Duration::from_secs(3600);

/// Everything a request handler needs. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HttpContext {
    /// The queue (read only).
    pub store: Store,
    /// This process's counters.
    pub metrics: Arc<Metrics>,
    /// This daemon instance (`hostname:pid:start`).
    pub instance: Arc<str>,
    /// When the daemon started, for the uptime.
    pub started: Instant,
    /// Connections served at once (`http.max_connections`).
    pub max_connections: usize,
}

/// Why a request could not be routed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    /// The request head is larger than [`MAX_REQUEST_BYTES`].
    #[error("request head larger than {MAX_REQUEST_BYTES} bytes")]
    TooLarge,
    /// The head did not arrive within [`HEADER_DEADLINE`].
    #[error("no complete request head within {} ms", HEADER_DEADLINE.as_millis())]
    Timeout,
    /// The head is not HTTP.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// A method other than GET.
    #[error("method {0} not allowed; only GET is served")]
    MethodNotAllowed(String),
    /// Not HTTP/1.0 or HTTP/1.1.
    #[error("HTTP version {0} not supported")]
    Version(String),
    /// The daemon is stopping.
    #[error("server shutting down")]
    ShuttingDown,
}

impl RequestError {
    fn status(&self) -> u16 {
        match self {
            RequestError::TooLarge => 431,
            RequestError::Timeout => 408,
            RequestError::Malformed(_) => 400,
            RequestError::MethodNotAllowed(_) => 405,
            RequestError::Version(_) => 505,
            RequestError::ShuttingDown => 503,
        }
    }
}

/// A routed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /status`
    Status,
    /// `GET /metrics`
    Metrics,
    /// `GET /hosts/{id}` with a valid id.
    Host(i32),
    /// `GET /hosts/{garbage}`
    BadHostId(String),
    /// Anything else.
    NotFound,
}

/// A reply about to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

const JSON: &str = "application/json";

impl Response {
    fn json(status: u16, value: &Value) -> Response {
        Response { status, content_type: JSON, body: value.to_string().into_bytes() }
    }

    fn error(status: u16, message: &str) -> Response {
        Response::json(status, &json!({ "error": message, "status": status }))
    }

    /// The full HTTP/1.1 message.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        if self.status == 405 {
            out.push_str("Allow: GET\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Serves connections until `cancel` fires; then stops accepting. In-flight requests are
/// tracked by `tracker` and finish on their own (each is bounded by its deadlines).
pub async fn run(listener: TcpListener, ctx: HttpContext, cancel: CancellationToken, tracker: TaskTracker) {
    let limit = ctx.max_connections.max(1);
    let permits = Arc::new(Semaphore::new(limit));
    let mut accept_errors = 0u32;
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "Observability endpoint listening.");
    }
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    accept_errors = 0;
                    match Arc::clone(&permits).try_acquire_owned() {
                        Ok(permit) => {
                            let ctx = ctx.clone();
                            let cancel = cancel.clone();
                            tracker.spawn(async move { serve(stream, peer, ctx, permit, cancel).await });
                        }
                        Err(_) => {
                            warn!(peer = %peer, limit, "Observability endpoint busy: refused a connection.");
                            refuse(&stream);
                        }
                    }
                }
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    accept_errors = accept_errors.saturating_add(1);
                    warn!(%error, "Observability endpoint: accept failed.");
                    tokio::time::sleep(Duration::from_millis(10u64 << accept_errors.min(6))).await;
                }
            },
        }
    }
    info!("Observability endpoint stopped accepting connections.");
}

/// Writes a 503 without waiting, drains what already arrived (so the close is less likely to
/// become a reset that destroys the reply), and lets the caller drop the connection.
fn refuse(stream: &TcpStream) {
    let busy = Response::error(503, "server busy (http.max_connections); retry later");
    let _ = stream.try_write(&busy.to_bytes());
    let mut sink = [0u8; 1024];
    for _ in 0..(MAX_REQUEST_BYTES / sink.len() + 1) {
        match stream.try_read(&mut sink) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}

async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    ctx: HttpContext,
    _permit: OwnedSemaphorePermit,
    cancel: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let deadline = tokio::time::Instant::now() + HEADER_DEADLINE;
    let response = match read_head(&mut stream, deadline, &cancel).await.and_then(|head| match head {
        Some(head) => parse_head(&head).map(Some),
        None => Ok(None),
    }) {
        Ok(None) => return,
        Ok(Some(route)) => respond(&ctx, route).await,
        Err(e) => {
            debug!(peer = %peer, error = %e, "Rejected an HTTP request.");
            Response::error(e.status(), &e.to_string())
        }
    };
    let bytes = response.to_bytes();
    let write = crate::net::reply_and_close(&mut stream, &bytes, 1 << 20);
    match tokio::time::timeout(WRITE_TIMEOUT, write).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => debug!(peer = %peer, %error, "Could not deliver an HTTP reply."),
        Err(_) => debug!(peer = %peer, "HTTP client did not read the reply."),
    }
}

/// Reads until the end of the request head (`\r\n\r\n`, or `\n\n` from lax clients).
/// `Ok(None)`: the peer closed without sending anything.
async fn read_head(
    stream: &mut TcpStream,
    deadline: tokio::time::Instant,
    cancel: &CancellationToken,
) -> Result<Option<Vec<u8>>, RequestError> {
    let mut buf = vec![0u8; MAX_REQUEST_BYTES];
    let mut len = 0usize;
    loop {
        let Some(room) = buf.get_mut(len..).filter(|r| !r.is_empty()) else {
            return Err(RequestError::TooLarge);
        };
        let read = tokio::select! {
            r = timeout_at(deadline, stream.read(room)) => r,
            () = cancel.cancelled(), if len == 0 => return Err(RequestError::ShuttingDown),
        };
        match read {
            Err(_) => return Err(RequestError::Timeout),
            Ok(Err(_)) => return Ok(None),
            Ok(Ok(0)) => {
                return if len == 0 {
                    Ok(None)
                } else {
                    Err(RequestError::Malformed("incomplete request head"))
                };
            }
            Ok(Ok(n)) => {
                let start = len.saturating_sub(3);
                len += n;
                let seen = buf.get(..len).unwrap_or_default();
                if let Some(end) = head_end(seen, start) {
                    buf.truncate(end);
                    return Ok(Some(buf));
                }
            }
        }
    }
}

/// Index just past the blank line that ends the head, searching from `from`.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let tail = buf.get(from..)?;
    let crlf = tail.windows(4).position(|w| w == b"\r\n\r\n").map(|i| from + i + 4);
    let lf = tail.windows(2).position(|w| w == b"\n\n").map(|i| from + i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Parses a request head into a route.
///
/// # Errors
/// [`RequestError`] for anything that is not a well-formed HTTP/1.x GET.
pub fn parse_head(head: &[u8]) -> Result<Route, RequestError> {
    let text = std::str::from_utf8(head).map_err(|_| RequestError::Malformed("request head is not UTF-8"))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::Malformed("request line is not 'METHOD target HTTP/1.x'"));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(RequestError::Malformed("bad method"));
    }
    if !version.starts_with("HTTP/") {
        return Err(RequestError::Malformed("bad protocol version"));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(RequestError::Version(version.chars().take(16).collect()));
    }
    for line in lines {
        if line.is_empty() {
            break;
        }
        match line.split_once(':') {
            Some((name, _)) if !name.is_empty() && !name.contains([' ', '\t']) => {}
            _ => return Err(RequestError::Malformed("bad header line")),
        }
    }
    if method != "GET" {
        return Err(RequestError::MethodNotAllowed(method.chars().take(16).collect()));
    }
    if !target.starts_with('/') {
        return Err(RequestError::Malformed("request target must be a path"));
    }
    let path = target.split(['?', '#']).next().unwrap_or_default();
    Ok(route(path))
}

fn route(path: &str) -> Route {
    match path {
        "/status" => Route::Status,
        "/metrics" => Route::Metrics,
        _ => match path.strip_prefix("/hosts/") {
            Some(id) if id.contains('/') => Route::NotFound,
            Some(id) => match parse_host_id(id) {
                Some(n) => Route::Host(n),
                None => Route::BadHostId(id.chars().take(32).collect()),
            },
            None => Route::NotFound,
        },
    }
}

/// A Zabbix host id: decimal digits only, fitting an `i32`.
fn parse_host_id(s: &str) -> Option<i32> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

async fn respond(ctx: &HttpContext, route: Route) -> Response {
    match route {
        Route::Status => Response::json(200, &status_json(ctx).await),
        Route::Metrics => {
            let text = metrics_text(ctx).await;
            Response { status: 200, content_type: Exposition::CONTENT_TYPE, body: text.into_bytes() }
        }
        Route::Host(id) => host_response(ctx, id).await,
        Route::BadHostId(id) => {
            Response::error(400, &format!("bad host id '{id}': expected a Zabbix host id (decimal digits)"))
        }
        Route::NotFound => Response::error(404, "not found; try /status, /hosts/{id} or /metrics"),
    }
}

/// Runs `f` under `budget`, turning a timeout into [`StoreError::Unavailable`].
async fn within<T>(
    budget: Duration,
    f: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(budget, f).await {
        Ok(r) => r,
        Err(_) => Err(StoreError::Unavailable(format!("no answer within {} ms", budget.as_millis()))),
    }
}

const STATUSES: [i8; 6] =
    [status::PENDING, status::RUNNING, status::DONE, status::ERROR, status::SUSPENDED, status::FROZEN];

/// Name of a task type.
pub fn type_name(t: i8) -> &'static str {
    match t {
        task_type::BACKUP => "backup",
        task_type::PROCESSING => "processing",
        _ => "unknown",
    }
}

/// Name of a host condition (`HOST.NU_STATUS`).
pub fn condition_name(c: i8) -> &'static str {
    match c {
        0 => "ok",
        1 => "no_daemon",
        2 => "halt_flag_alert",
        3 => "host_key_mismatch",
        4 => "auth_failed",
        5 => "unreachable",
        _ => "unknown",
    }
}

const CONDITIONS: [i8; 6] = [0, 1, 2, 3, 4, 5];

/// `{type: {status: n}}` with every known status present (Zabbix items need stable keys).
fn queue_json(counts: &[crate::store::stats::QueueCount], types: &[i8]) -> Value {
    let mut by_type = Map::new();
    let mut all_types: Vec<i8> = types.to_vec();
    for c in counts {
        if !all_types.contains(&c.task_type) {
            all_types.push(c.task_type);
        }
    }
    for t in all_types {
        let mut by_status = Map::new();
        for s in STATUSES {
            by_status.insert(status::name(s).into(), json!(0));
        }
        for c in counts.iter().filter(|c| c.task_type == t) {
            let key = status::name(c.status);
            let old = by_status.get(key).and_then(Value::as_i64).unwrap_or(0);
            by_status.insert(key.into(), json!(old.saturating_add(c.count)));
        }
        by_type.insert(type_name(t).into(), Value::Object(by_status));
    }
    Value::Object(by_type)
}

fn overview_json(o: &QueueOverview) -> (Value, Value, Value) {
    let queues = json!({
        "host_tasks": queue_json(&o.host_tasks, &[task_type::BACKUP]),
        "file_tasks": queue_json(&o.file_tasks, &[task_type::BACKUP, task_type::PROCESSING]),
    });
    let mut errors = Map::new();
    for t in [task_type::BACKUP, task_type::PROCESSING] {
        let list: Vec<_> = o.errors.iter().filter(|e| e.task_type == t).collect();
        let mut by_code = Map::new();
        for e in &list {
            by_code.insert(e.code.clone(), json!(e.count));
        }
        let total: i64 = list.iter().map(|e| e.count).sum();
        errors.insert(type_name(t).into(), json!({ "total": total, "by_code": by_code }));
    }
    let mut hosts = Map::new();
    for c in CONDITIONS {
        hosts.insert(condition_name(c).into(), json!(0));
    }
    let mut total = 0i64;
    for (c, n) in &o.hosts_by_condition {
        total = total.saturating_add(*n);
        let key = condition_name(*c);
        let old = hosts.get(key).and_then(Value::as_i64).unwrap_or(0);
        hosts.insert(key.into(), json!(old.saturating_add(*n)));
    }
    hosts.insert("total".into(), json!(total));
    (queues, Value::Object(errors), Value::Object(hosts))
}

fn throughput_json(t: &Throughput) -> (Value, Value) {
    let secs = t.window.as_secs_f64().max(1.0);
    let copied = json!({
        "files_last_hour": t.files_copied_recent,
        "bytes_last_hour": t.bytes_copied_recent,
        "bytes_per_second_last_hour": t.bytes_copied_recent as f64 / secs,
        "files_total": t.files_copied_total,
        "bytes_total": t.bytes_copied_total,
    });
    let processed = json!({
        "files_last_hour": t.files_processed_recent,
        "files_total": t.files_processed_total,
    });
    (copied, processed)
}

/// The `/status` document. Never fails: database trouble is reported inside it.
async fn status_json(ctx: &HttpContext) -> Value {
    let uptime = ctx.started.elapsed().as_secs();
    let snap = ctx.metrics.snapshot();
    let gateway_requests: u64 = snap.gateway_requests.iter().map(|(_, _, n)| n).sum();
    let mut doc = json!({
        "instance": &*ctx.instance,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": uptime,
        "database": "unavailable",
        "database_error": Value::Null,
        "queues": Value::Null,
        "copied": Value::Null,
        "processed": Value::Null,
        "errors": Value::Null,
        "hosts": Value::Null,
        "since_start": {
            "gateway_requests": gateway_requests,
            "files_copied": snap.files_copied,
            "bytes_copied": snap.bytes_copied,
            "files_processed": snap.files_processed,
            "backup_errors": snap.backup_errors.iter().map(|(_, n)| n).sum::<u64>(),
            "processing_errors": snap.processing_errors.iter().map(|(_, n)| n).sum::<u64>(),
        },
    });
    if let Err(e) = within(PING_TIMEOUT, ctx.store.ping()).await {
        doc["database_error"] = json!(e.to_string());
        return doc;
    }
    let work = async {
        let overview = ctx.store.queue_overview().await?;
        let throughput = ctx.store.throughput(RECENT_WINDOW).await?;
        Ok::<_, StoreError>((overview, throughput))
    };
    match within(QUERY_TIMEOUT, work).await {
        Ok((overview, throughput)) => {
            let (queues, errors, hosts) = overview_json(&overview);
            let (copied, processed) = throughput_json(&throughput);
            doc["database"] = json!("ok");
            doc["queues"] = queues;
            doc["errors"] = errors;
            doc["hosts"] = hosts;
            doc["copied"] = copied;
            doc["processed"] = processed;
        }
        Err(e) => {
            warn!(error = %e, "Observability endpoint: status queries failed.");
            doc["database"] = json!(if e.is_unavailable() { "unavailable" } else { "error" });
            doc["database_error"] = json!(e.to_string());
        }
    }
    doc
}

/// The `/metrics` exposition. Never fails: without the database, only the process counters
/// and `appcataloga_database_up 0` are exposed.
async fn metrics_text(ctx: &HttpContext) -> String {
    let mut out = Exposition::new();
    out.family("appcataloga_build_info", "Version and instance of this daemon.", "gauge");
    out.sample(
        "appcataloga_build_info",
        &[("version", env!("CARGO_PKG_VERSION")), ("instance", &ctx.instance)],
        1,
    );
    out.family("appcataloga_uptime_seconds", "Seconds since the daemon started.", "gauge");
    out.sample_f64("appcataloga_uptime_seconds", &[], ctx.started.elapsed().as_secs_f64());
    let overview = within(QUERY_TIMEOUT, ctx.store.queue_overview()).await;
    out.family("appcataloga_database_up", "1 when the queue database answered this scrape.", "gauge");
    out.sample("appcataloga_database_up", &[], u64::from(overview.is_ok()));
    match &overview {
        Ok(o) => render_overview(&mut out, o),
        Err(e) => warn!(error = %e, "Observability endpoint: metrics queries failed."),
    }
    ctx.metrics.render(&mut out);
    out.into_string()
}

fn render_overview(out: &mut Exposition, o: &QueueOverview) {
    out.family("appcataloga_host_tasks", "Host tasks in the queue, by type and status.", "gauge");
    render_queue(out, "appcataloga_host_tasks", &o.host_tasks, &[task_type::BACKUP]);
    out.family("appcataloga_file_tasks", "File tasks in the queue, by type and status.", "gauge");
    render_queue(out, "appcataloga_file_tasks", &o.file_tasks, &[task_type::BACKUP, task_type::PROCESSING]);
    out.family("appcataloga_hosts", "Hosts by condition (HOST.NU_STATUS).", "gauge");
    let mut by_condition: Vec<(&'static str, i64)> =
        CONDITIONS.iter().map(|c| (condition_name(*c), 0)).collect();
    for (c, n) in &o.hosts_by_condition {
        let name = condition_name(*c);
        match by_condition.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = slot.1.saturating_add(*n),
            None => by_condition.push((name, *n)),
        }
    }
    for (name, n) in by_condition {
        out.sample_i64("appcataloga_hosts", &[("condition", name)], n);
    }
    out.family("appcataloga_failed_file_tasks", "File tasks in error now, by type and error code.", "gauge");
    for e in &o.errors {
        out.sample_i64(
            "appcataloga_failed_file_tasks",
            &[("type", type_name(e.task_type)), ("code", &e.code)],
            e.count,
        );
    }
}

/// Every (type, status) pair is present, zero when absent, so series do not vanish.
fn render_queue(out: &mut Exposition, name: &str, counts: &[crate::store::stats::QueueCount], types: &[i8]) {
    let mut rows: Vec<(&'static str, &'static str, i64)> = Vec::new();
    for t in types {
        for s in STATUSES {
            rows.push((type_name(*t), status::name(s), 0));
        }
    }
    for c in counts {
        let key = (type_name(c.task_type), status::name(c.status));
        match rows.iter_mut().find(|r| (r.0, r.1) == key) {
            Some(r) => r.2 = r.2.saturating_add(c.count),
            None => rows.push((key.0, key.1, c.count)),
        }
    }
    for (t, s, n) in rows {
        out.sample_i64(name, &[("type", t), ("status", s)], n);
    }
}

async fn host_response(ctx: &HttpContext, id: i32) -> Response {
    match within(QUERY_TIMEOUT, ctx.store.host_status(id)).await {
        Ok(Some(st)) => match host_json(&st) {
            Some(v) => Response::json(200, &v),
            None => Response::error(500, "could not render the host status"),
        },
        Ok(None) => {
            Response::error(404, &format!("host {id} is unknown: no backup was ever requested for it"))
        }
        Err(e) if e.is_unavailable() => {
            let mut v = json!({ "error": format!("database unavailable: {e}"), "status": 503 });
            v["database"] = json!("unavailable");
            Response::json(503, &v)
        }
        Err(e) => {
            warn!(host_id = id, error = %e, "Observability endpoint: host status failed.");
            Response::error(500, &format!("database error: {e}"))
        }
    }
}

/// The Zabbix reply keys plus the host's condition and task state.
fn host_json(st: &HostStatus) -> Option<Value> {
    let mut v = serde_json::to_value(StatusReply::new(st, host_message(st))).ok()?;
    let obj = v.as_object_mut()?;
    obj.insert("condition".into(), json!(st.condition));
    obj.insert("condition_name".into(), json!(condition_name(st.condition)));
    obj.insert("condition_message".into(), json!(st.condition_message));
    obj.insert("task_status".into(), json!(st.task_status));
    obj.insert("task_status_name".into(), json!(st.task_status.map(status::name)));
    obj.insert("task_message".into(), json!(st.task_message));
    obj.insert("has_password".into(), json!(st.has_password));
    Some(v)
}

/// A one-line summary for the `message` key.
fn host_message(st: &HostStatus) -> String {
    let mut parts = vec![format!("condition {}", condition_name(st.condition))];
    if let Some(m) = st.condition_message.as_deref().filter(|m| !m.is_empty()) {
        parts.push(m.to_string());
    }
    if let Some(s) = st.task_status {
        parts.push(format!("backup {}", status::name(s)));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HttpConfig;

    #[test]
    fn routes() {
        let r = |s: &str| parse_head(s.as_bytes());
        assert_eq!(r("GET /status HTTP/1.1\r\nHost: x\r\n\r\n"), Ok(Route::Status));
        assert_eq!(r("GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Ok(Route::Metrics));
        assert_eq!(r("GET /metrics HTTP/1.1\n\n"), Ok(Route::Metrics));
        assert_eq!(r("HEAD /metrics HTTP/1.1\r\n\r\n"), Err(RequestError::MethodNotAllowed("HEAD".into())));
        assert_eq!(r("GET /hosts/42 HTTP/1.1\r\n\r\n"), Ok(Route::Host(42)));
        assert_eq!(r("GET /hosts/-1 HTTP/1.1\r\n\r\n"), Ok(Route::BadHostId("-1".into())));
        assert_eq!(r("GET /hosts/99999999999 HTTP/1.1\r\n\r\n"), Ok(Route::BadHostId("99999999999".into())));
        assert_eq!(r("GET /hosts/ HTTP/1.1\r\n\r\n"), Ok(Route::BadHostId(String::new())));
        assert_eq!(r("GET /hosts/1/x HTTP/1.1\r\n\r\n"), Ok(Route::NotFound));
        assert_eq!(r("GET / HTTP/1.1\r\n\r\n"), Ok(Route::NotFound));
        assert_eq!(r("POST /status HTTP/1.1\r\n\r\n"), Err(RequestError::MethodNotAllowed("POST".into())));
        assert_eq!(r("GET /status HTTP/2.0\r\n\r\n"), Err(RequestError::Version("HTTP/2.0".into())));
        assert!(matches!(r("GET /status\r\n\r\n"), Err(RequestError::Malformed(_))));
        assert!(matches!(r("\u{0}\u{1}garbage\r\n\r\n"), Err(RequestError::Malformed(_))));
        assert!(matches!(r("GET http://x/status HTTP/1.1\r\n\r\n"), Err(RequestError::Malformed(_))));
        assert!(matches!(r("GET /status HTTP/1.1\r\nno colon\r\n\r\n"), Err(RequestError::Malformed(_))));
    }

    #[test]
    fn head_end_finds_crlf_and_lf() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody", 0), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n", 0), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n", 0), None);
    }

    #[test]
    fn response_framing() {
        let r = Response::error(405, "nope");
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.contains("Allow: GET\r\n"));
        assert!(text.contains(&format!("Content-Length: {}\r\n", r.body.len())));
    }

    #[test]
    fn config_defaults_and_unknown_keys() {
        let c: HttpConfig = toml::from_str("").unwrap();
        assert_eq!(c, HttpConfig::default());
        assert_eq!(c.listen.to_string(), "127.0.0.1:5556");
        assert!(c.enabled);
        assert_eq!(c.max_connections, 64);
        assert!(toml::from_str::<HttpConfig>("bogus = 1").is_err());
        let c: HttpConfig = toml::from_str("listen = \"0.0.0.0:9000\"").unwrap();
        assert_eq!(c.listen.port(), 9000);
    }

    #[test]
    fn queue_json_has_every_status() {
        let v = queue_json(
            &[crate::store::stats::QueueCount {
                task_type: task_type::BACKUP,
                status: status::PENDING,
                count: 3,
            }],
            &[task_type::BACKUP, task_type::PROCESSING],
        );
        assert_eq!(v["backup"]["pending"], json!(3));
        assert_eq!(v["backup"]["frozen"], json!(0));
        assert_eq!(v["processing"]["running"], json!(0));
    }
}
