//! The observability endpoint (`appcataloga::http`), served in-process against a real MariaDB:
//! `/status` and `/hosts/{id}` JSON computed from known queue rows, `/metrics` parsed as a
//! Prometheus text exposition (HELP/TYPE for every family, cumulative histogram buckets,
//! `_sum`/`_count`), error statuses (400, 404, 405, 408, 431, 503), clients that trickle or
//! send garbage not blocking others, and a database killed under the server.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use appcataloga::config::{DatabaseConfig, DatabaseUrl};
use appcataloga::gateway::protocol::Command;
use appcataloga::http::{self, HttpContext};
use appcataloga::metrics::Metrics;
use appcataloga::store::Store;
use secrecy::SecretString;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::support::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn store_cfg(db: &TestDb) -> DatabaseConfig {
    DatabaseConfig {
        url: Some(DatabaseUrl(SecretString::from(db.db.url()))),
        bpdata_schema: db.bpdata.clone(),
        rfdata_schema: db.rfdata.clone(),
        ..Default::default()
    }
}

/// A running endpoint; cancelled and drained on drop of the runtime.
struct Server {
    addr: SocketAddr,
    cancel: CancellationToken,
    tracker: TaskTracker,
    metrics: Arc<Metrics>,
}

async fn start(store: Store, max_connections: usize) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = Arc::new(Metrics::new());
    let ctx = HttpContext {
        store,
        metrics: Arc::clone(&metrics),
        instance: "test-host:1:0".into(),
        started: Instant::now(),
        max_connections,
    };
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    tracker.spawn(http::run(listener, ctx, cancel.clone(), tracker.clone()));
    Server { addr, cancel, tracker, metrics }
}

impl Server {
    async fn stop(self) {
        self.cancel.cancel();
        self.tracker.close();
        tokio::time::timeout(Duration::from_secs(10), self.tracker.wait()).await.expect("server drains");
    }
}

/// A parsed reply.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn parse_reply(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head end in {text:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(parts.next(), Some("HTTP/1.1"), "{status_line}");
    let status: u16 = parts.next().unwrap().parse().unwrap();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect::<BTreeMap<_, _>>();
    let reply = Reply { status, headers, body: body.to_string() };
    assert_eq!(reply.headers.get("connection").map(String::as_str), Some("close"), "{reply:?}");
    assert_eq!(
        reply.headers.get("content-length").and_then(|l| l.parse::<usize>().ok()),
        Some(reply.body.len()),
        "{reply:?}"
    );
    reply
}

/// Reads until the server closes (at most 10 s); a reset after some data keeps the data.
async fn read_reply<R: AsyncReadExt + Unpin>(s: &mut R) -> Reply {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await.expect("reply within 10 s") {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if !buf.is_empty() => {
                eprintln!("read ended with {e} after {} bytes", buf.len());
                break;
            }
            Err(e) => panic!("no reply: {e}"),
        }
    }
    parse_reply(&buf)
}

/// Sends raw bytes, reads until the server closes.
async fn raw(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    read_reply(&mut s).await
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    raw(addr, format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: Zabbix\r\n\r\n").as_bytes())
        .await
}

/// Hosts 101 (ok, backup pending), 102 (auth failed, backup failed), 103 (unreachable, done),
/// 104 (ok, no task) and file tasks whose counts and sums the assertions know.
fn seed(db: &TestDb) {
    db.sql(
        "INSERT INTO {BP}.HOST (ID_HOST, NA_HOST_UID, NU_STATUS, NA_STATUS_MESSAGE) VALUES
           (101, 'RFEye000101', 0, NULL),
           (102, 'RFEye000102', 4, 'Permission denied (password)'),
           (103, 'RFEye000103', 5, 'No route to host'),
           (104, 'RFEye000104', 0, NULL);
         INSERT INTO {BP}.HOST_TASK (FK_HOST, NU_TYPE, DT_HOST_TASK, NU_STATUS, NA_MESSAGE, NU_FAILURES, DT_LAST_DONE) VALUES
           (101, 1, UTC_TIMESTAMP(6), 1, 'New task', 0, NULL),
           (102, 1, UTC_TIMESTAMP(6), -1, 'authentication failed', 3, NULL),
           (103, 1, UTC_TIMESTAMP(6), 0, 'Done', 0, UTC_TIMESTAMP(6) - INTERVAL 1 DAY);
         INSERT INTO {BP}.FILE_TASK (FK_HOST, DT_FILE_TASK, NU_TYPE, NA_HOST_FILE_PATH, NA_HOST_FILE_NAME, NU_STATUS,
                                     NA_ERROR_CODE, VL_FILE_SIZE, DT_BACKUP, DT_PROCESSED) VALUES
           (101, UTC_TIMESTAMP(6), 1, '/d', 'a.bin', 1, NULL, NULL, NULL, NULL),
           (101, UTC_TIMESTAMP(6), 1, '/d', 'b.bin', 1, NULL, NULL, NULL, NULL),
           (101, UTC_TIMESTAMP(6), 1, '/d', 'c.bin', -1, 'COPY_FAILED', NULL, NULL, NULL),
           (102, UTC_TIMESTAMP(6), 1, '/d', 'd.bin', -1, 'COPY_FAILED', NULL, NULL, NULL),
           (102, UTC_TIMESTAMP(6), 1, '/d', 'e.bin', -1, NULL, NULL, NULL, NULL),
           (101, UTC_TIMESTAMP(6), 2, '/d', 'f.bin', 1, NULL, 1000, UTC_TIMESTAMP(6) - INTERVAL 5 MINUTE, NULL),
           (101, UTC_TIMESTAMP(6), 2, '/d', 'g.bin', 0, NULL, 250, UTC_TIMESTAMP(6) - INTERVAL 10 MINUTE,
              UTC_TIMESTAMP(6) - INTERVAL 1 MINUTE),
           (103, UTC_TIMESTAMP(6), 2, '/d', 'h.bin', 0, 'NAME_COLLISION', 500, UTC_TIMESTAMP(6) - INTERVAL 2 HOUR,
              UTC_TIMESTAMP(6) - INTERVAL 2 HOUR),
           (103, UTC_TIMESTAMP(6), 2, '/d', 'i.bin', -1, 'BAD_FILE', 70, UTC_TIMESTAMP(6) - INTERVAL 3 HOUR, NULL);",
    );
}

#[test]
fn status_hosts_and_metrics_reflect_the_queue() {
    let db = TestDb::new();
    seed_schema_and_run(&db);
}

fn seed_schema_and_run(db: &TestDb) {
    let rt = runtime();
    let _enter = rt.enter();
    let store = Store::connect_lazy(&store_cfg(db)).unwrap();
    rt.block_on(store.migrate("test")).unwrap();
    seed(db);
    rt.block_on(async {
        let server = start(store, 16).await;
        let addr = server.addr;
        server.metrics.record_gateway(Some(Command::Backup), true, Duration::from_micros(800));
        server.metrics.record_gateway(Some(Command::Backup), true, Duration::from_millis(30));
        server.metrics.record_gateway(Some(Command::Status), false, Duration::from_secs(3));
        server.metrics.record_gateway(None, false, Duration::from_millis(1));
        server.metrics.add_copied(4096);
        server.metrics.add_copied(1);
        server.metrics.inc_processed();
        server.metrics.inc_backup_error("AUTH");
        server.metrics.inc_backup_error("COPY_FAILED");
        server.metrics.inc_backup_error("AUTH");

        // /status
        let r = get(addr, "/status").await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.headers.get("content-type").map(String::as_str), Some("application/json"));
        let s = r.json();
        assert_eq!(s["database"], "ok", "{s}");
        assert_eq!(s["instance"], "test-host:1:0");
        assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
        assert!(s["uptime_seconds"].is_u64());
        let hq = &s["queues"]["host_tasks"]["backup"];
        assert_eq!(
            (hq["pending"].as_i64(), hq["failed"].as_i64(), hq["done"].as_i64()),
            (Some(1), Some(1), Some(1))
        );
        assert_eq!(hq["running"], 0);
        let fb = &s["queues"]["file_tasks"]["backup"];
        assert_eq!((fb["pending"].as_i64(), fb["failed"].as_i64()), (Some(2), Some(3)));
        let fp = &s["queues"]["file_tasks"]["processing"];
        assert_eq!(
            (fp["pending"].as_i64(), fp["done"].as_i64(), fp["failed"].as_i64()),
            (Some(1), Some(2), Some(1))
        );
        assert_eq!(fp["frozen"], 0);
        // Copied: f (5 min, 1000 B) and g (10 min, 250 B) within the hour; h and i before.
        assert_eq!(s["copied"]["files_last_hour"], 2, "{s}");
        assert_eq!(s["copied"]["bytes_last_hour"], 1250);
        assert_eq!(s["copied"]["files_total"], 4);
        assert_eq!(s["copied"]["bytes_total"], 1820);
        let rate = s["copied"]["bytes_per_second_last_hour"].as_f64().unwrap();
        assert!((rate - 1250.0 / 3600.0).abs() < 1e-9, "{rate}");
        assert_eq!(s["processed"]["files_last_hour"], 1);
        assert_eq!(s["processed"]["files_total"], 2);
        assert_eq!(s["errors"]["backup"]["total"], 3, "{s}");
        assert_eq!(s["errors"]["backup"]["by_code"]["COPY_FAILED"], 2);
        assert_eq!(s["errors"]["backup"]["by_code"]["UNSPECIFIED"], 1);
        assert_eq!(s["errors"]["processing"]["total"], 1);
        assert_eq!(s["errors"]["processing"]["by_code"]["BAD_FILE"], 1);
        let hosts = &s["hosts"];
        assert_eq!((hosts["ok"].as_i64(), hosts["auth_failed"].as_i64()), (Some(2), Some(1)));
        assert_eq!((hosts["unreachable"].as_i64(), hosts["total"].as_i64()), (Some(1), Some(4)));
        assert_eq!((hosts["no_daemon"].as_i64(), hosts["host_key_mismatch"].as_i64()), (Some(0), Some(0)));
        assert_eq!(s["since_start"]["files_copied"], 2);
        assert_eq!(s["since_start"]["gateway_requests"], 4);

        // /hosts/{id}
        let r = get(addr, "/hosts/102").await;
        assert_eq!(r.status, 200, "{}", r.body);
        let h = r.json();
        for key in LEGACY_KEYS.iter().copied().chain([
            "condition",
            "condition_message",
            "task_status",
            "task_message",
        ]) {
            assert!(h.get(key).is_some(), "key {key} missing in {h}");
        }
        assert_eq!(h["host"], 102);
        assert_eq!(h["condition"], 4);
        assert_eq!(h["condition_name"], "auth_failed");
        assert_eq!(h["condition_message"], "Permission denied (password)");
        assert_eq!(h["task_status"], -1);
        assert_eq!(h["task_message"], "authentication failed");
        assert_eq!(h["host_check_error"], 3);
        assert_eq!(h["backup_error"], 2);
        assert_eq!(h["last_backup"], "N/A");
        let h = get(addr, "/hosts/104").await.json();
        assert_eq!((h["condition"].as_i64(), h["task_status"].is_null()), (Some(0), true), "{h}");
        let h = get(addr, "/hosts/101").await.json();
        assert_eq!((h["pending_backup"].as_i64(), h["host_files"].as_i64()), (Some(2), Some(2)), "{h}");
        assert!(h["last_backup"].is_f64(), "{h}");

        let r = get(addr, "/hosts/999").await;
        assert_eq!(r.status, 404, "{}", r.body);
        assert!(r.json()["error"].as_str().unwrap().contains("999"));
        for bad in ["/hosts/abc", "/hosts/-5", "/hosts/", "/hosts/99999999999", "/hosts/1%20"] {
            let r = get(addr, bad).await;
            assert_eq!(r.status, 400, "{bad}: {}", r.body);
            assert!(r.json()["error"].is_string());
        }
        for missing in ["/", "/status/", "/hosts", "/hosts/1/files", "/metricsx", "/../etc/passwd"] {
            assert_eq!(get(addr, missing).await.status, 404, "{missing}");
        }
        let r = raw(addr, b"POST /status HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}").await;
        assert_eq!(r.status, 405);
        assert_eq!(r.headers.get("allow").map(String::as_str), Some("GET"));
        assert_eq!(raw(addr, b"GET /status HTTP/2.0\r\n\r\n").await.status, 505);
        assert_eq!(raw(addr, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n").await.status, 400);
        // Query strings are ignored (Zabbix may add them).
        assert_eq!(get(addr, "/status?x=1").await.status, 200);

        // /metrics
        let r = get(addr, "/metrics").await;
        assert_eq!(r.status, 200);
        assert!(r.headers["content-type"].starts_with("text/plain; version=0.0.4"), "{:?}", r.headers);
        let m = Exposition::parse(&r.body);
        assert_eq!(m.value("appcataloga_database_up", &[]), 1.0);
        assert_eq!(m.value("appcataloga_host_tasks", &[("type", "backup"), ("status", "pending")]), 1.0);
        assert_eq!(m.value("appcataloga_host_tasks", &[("type", "backup"), ("status", "running")]), 0.0);
        assert_eq!(m.value("appcataloga_file_tasks", &[("type", "backup"), ("status", "failed")]), 3.0);
        assert_eq!(m.value("appcataloga_file_tasks", &[("type", "processing"), ("status", "done")]), 2.0);
        assert_eq!(m.value("appcataloga_hosts", &[("condition", "ok")]), 2.0);
        assert_eq!(m.value("appcataloga_hosts", &[("condition", "auth_failed")]), 1.0);
        assert_eq!(m.value("appcataloga_hosts", &[("condition", "halt_flag_alert")]), 0.0);
        assert_eq!(
            m.value("appcataloga_failed_file_tasks", &[("type", "backup"), ("code", "COPY_FAILED")]),
            2.0
        );
        assert_eq!(
            m.value("appcataloga_gateway_requests_total", &[("command", "backup"), ("outcome", "ok")]),
            2.0
        );
        assert_eq!(
            m.value("appcataloga_gateway_requests_total", &[("command", "invalid"), ("outcome", "error")]),
            1.0
        );
        assert_eq!(m.value("appcataloga_copied_bytes_total", &[]), 4097.0);
        assert_eq!(m.value("appcataloga_copied_files_total", &[]), 2.0);
        assert_eq!(m.value("appcataloga_processed_files_total", &[]), 1.0);
        assert_eq!(m.value("appcataloga_backup_errors_total", &[("kind", "AUTH")]), 2.0);
        assert_eq!(m.value("appcataloga_backup_errors_total", &[("kind", "COPY_FAILED")]), 1.0);
        let h = m.histogram("appcataloga_gateway_request_duration_seconds", &[("command", "backup")]);
        let les: Vec<&str> = h.buckets.iter().map(|(le, _)| le.as_str()).collect();
        assert_eq!(
            les,
            ["0.001", "0.002", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "+Inf"]
        );
        let counts: Vec<f64> = h.buckets.iter().map(|(_, n)| *n).collect();
        assert_eq!(counts, [1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]);
        assert_eq!(h.count, 2.0);
        assert!((h.sum - 0.0308).abs() < 1e-9, "{}", h.sum);
        let h = m.histogram("appcataloga_gateway_request_duration_seconds", &[("command", "status")]);
        assert_eq!(h.buckets.last().map(|b| b.1), Some(1.0));
        assert_eq!(h.buckets.first().map(|b| b.1), Some(0.0));

        server.stop().await;
    });
}

#[test]
fn slow_and_garbage_clients_do_not_block_others_and_excess_is_refused() {
    let db = TestDb::new();
    let rt = runtime();
    let _enter = rt.enter();
    let store = Store::connect_lazy(&store_cfg(&db)).unwrap();
    rt.block_on(store.migrate("test")).unwrap();
    rt.block_on(async {
        let server = start(store, 4).await;
        let addr = server.addr;

        // A client that trickles a byte every 300 ms and never finishes its head.
        let trickler = tokio::spawn(async move {
            let started = Instant::now();
            let (mut rd, mut wr) = TcpStream::connect(addr).await.unwrap().into_split();
            let writer = tokio::spawn(async move {
                for b in
                    b"GET /status HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter()
                {
                    if wr.write_all(&[*b]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            });
            let reply = read_reply(&mut rd).await;
            writer.abort();
            (started.elapsed(), reply)
        });
        // A client that connects and sends nothing.
        let idle = tokio::spawn(async move {
            let started = Instant::now();
            let mut s = TcpStream::connect(addr).await.unwrap();
            let reply = read_reply(&mut s).await;
            (started.elapsed(), reply)
        });
        tokio::time::sleep(Duration::from_millis(200)).await;

        // Meanwhile, garbage, an oversized head and normal requests are answered at once.
        let t = Instant::now();
        let r = raw(addr, b"\x00\xff garbage without any structure\r\n\r\n").await;
        assert_eq!(r.status, 400);
        let mut big = b"GET /status HTTP/1.1\r\nX-Big: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 9000));
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(raw(addr, &big).await.status, 431);
        for _ in 0..5 {
            assert_eq!(get(addr, "/status").await.status, 200);
            assert_eq!(get(addr, "/metrics").await.status, 200);
        }
        assert!(t.elapsed() < Duration::from_secs(3), "others were blocked: {:?}", t.elapsed());

        // Fill the remaining permits (4 - trickler - idle = 2) with idle clients: the next one is
        // refused with 503 at once instead of queued.
        let hold1 = TcpStream::connect(addr).await.unwrap();
        let hold2 = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t = Instant::now();
        let mut s = TcpStream::connect(addr).await.unwrap();
        let r = read_reply(&mut s).await;
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(t.elapsed() < Duration::from_secs(1));
        // Also with a request already sent (the refusal drains what arrived before closing).
        assert_eq!(get(addr, "/status").await.status, 503);
        drop((hold1, hold2));
        // Freed permits: served again (a closed client releases its permit at once).
        let mut served = false;
        for _ in 0..50 {
            if get(addr, "/status").await.status == 200 {
                served = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(served, "permits were not released");

        // The header deadline cuts both slow clients at about 5 s with 408.
        let (elapsed, reply) = idle.await.unwrap();
        assert_eq!(reply.status, 408, "{}", reply.body);
        assert!(elapsed >= Duration::from_millis(4800) && elapsed < Duration::from_secs(7), "{elapsed:?}");
        let (elapsed, reply) = trickler.await.unwrap();
        assert_eq!(reply.status, 408, "{}", reply.body);
        assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");

        server.stop().await;
    });
}

#[test]
fn database_down_status_still_answers_and_metrics_has_process_counters() {
    // Install our private server only after the shared one is up: two concurrent
    // `mariadb-install-db` runs have been seen to fail with "Unknown table 'mysql.tmp_user_sys'".
    let _ = shared_db();
    let mariadb: &'static MariaDb = Box::leak(Box::new(MariaDb::start()));
    let db = TestDb::on(mariadb);
    let rt = runtime();
    let _enter = rt.enter();
    let store = Store::connect_lazy(&store_cfg(&db)).unwrap();
    rt.block_on(store.migrate("test")).unwrap();
    db.sql("INSERT INTO {BP}.HOST (ID_HOST, NA_HOST_UID) VALUES (7, 'RFEye000007')");
    let server = rt.block_on(start(store, 8));
    let addr = server.addr;
    server.metrics.add_copied(10);
    rt.block_on(async {
        assert_eq!(get(addr, "/status").await.json()["database"], "ok");
        assert_eq!(get(addr, "/hosts/7").await.status, 200);
    });

    mariadb.stop();
    rt.block_on(async {
        let t = Instant::now();
        let r = get(addr, "/status").await;
        assert_eq!(r.status, 200, "{}", r.body);
        let s = r.json();
        assert_eq!(s["database"], "unavailable", "{s}");
        assert!(s["database_error"].is_string());
        assert!(s["queues"].is_null() && s["hosts"].is_null());
        assert_eq!(s["since_start"]["bytes_copied"], 10);
        assert!(t.elapsed() < Duration::from_secs(2), "status took {:?}", t.elapsed());

        let r = get(addr, "/metrics").await;
        assert_eq!(r.status, 200);
        let m = Exposition::parse(&r.body);
        assert_eq!(m.value("appcataloga_database_up", &[]), 0.0);
        assert_eq!(m.value("appcataloga_copied_bytes_total", &[]), 10.0);
        assert!(!m.samples.iter().any(|s| s.name == "appcataloga_host_tasks"));

        let r = get(addr, "/hosts/7").await;
        assert_eq!(r.status, 503, "{}", r.body);
        assert_eq!(r.json()["database"], "unavailable");
    });

    // Back up: answers recover without restarting the endpoint.
    mariadb.restart();
    rt.block_on(async {
        let mut ok = false;
        for _ in 0..50 {
            if get(addr, "/status").await.json()["database"] == "ok" {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(ok, "database never reported ok again");
        server.stop().await;
    });
}

/// One sample of an exposition.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A strictly parsed Prometheus text exposition (format 0.0.4).
struct Exposition {
    samples: Vec<Sample>,
}

/// One histogram series.
struct Histogram {
    /// `(le, cumulative count)` in exposition order.
    buckets: Vec<(String, f64)>,
    sum: f64,
    count: f64,
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            name.push(c);
            chars.next();
        }
        if name.is_empty() {
            break;
        }
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "label name {name:?}");
        assert_eq!(chars.next(), Some('='));
        assert_eq!(chars.next(), Some('"'), "label {name} value must be quoted");
        let mut value = String::new();
        loop {
            match chars.next().expect("unterminated label value") {
                '\\' => match chars.next().expect("dangling escape") {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    c => panic!("bad escape \\{c}"),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        assert!(out.insert(name.clone(), value).is_none(), "duplicate label {name}");
        match chars.next() {
            Some(',') => continue,
            None => break,
            Some(c) => panic!("unexpected {c:?} after a label"),
        }
    }
    out
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        assert!(text.ends_with('\n'), "exposition must end with a newline");
        let mut help = BTreeSet::new();
        let mut types: BTreeMap<String, String> = BTreeMap::new();
        let mut samples = Vec::new();
        let mut seen_series = BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, _) = rest.split_once(' ').expect("HELP has text");
                assert!(help.insert(name.to_string()), "HELP twice for {name}");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE has a kind");
                assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind), "{line}");
                assert!(help.contains(name), "TYPE before HELP for {name}");
                assert!(types.insert(name.to_string(), kind.to_string()).is_none(), "TYPE twice for {name}");
                continue;
            }
            assert!(!line.starts_with('#') && !line.is_empty(), "unexpected line {line:?}");
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("sample line {line:?}"));
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, parse_labels(l.strip_suffix('}').expect("labels end with }"))),
                None => (series, BTreeMap::new()),
            };
            assert!(
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "metric name {name:?}"
            );
            // Every sample belongs to a declared family (histograms: _bucket/_sum/_count).
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    name.strip_suffix(suffix)
                        .filter(|base| types.get(*base).map(String::as_str) == Some("histogram"))
                })
                .unwrap_or(name);
            let kind = types.get(family).unwrap_or_else(|| panic!("no TYPE for {name}"));
            assert!(help.contains(family), "no HELP for {name}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter {name} should end in _total");
                assert!(value >= 0.0, "{line}");
            }
            if kind == "histogram" && name.ends_with("_bucket") {
                assert!(labels.contains_key("le"), "{line}");
            }
            assert!(seen_series.insert(series.to_string()), "duplicate series {series}");
            samples.push(Sample { name: name.to_string(), labels, value });
        }
        let e = Exposition { samples };
        // Histograms: buckets ascending and cumulative, +Inf = _count, _sum present.
        for (family, kind) in &types {
            if kind != "histogram" {
                continue;
            }
            let mut groups: BTreeMap<Vec<(String, String)>, Vec<&Sample>> = BTreeMap::new();
            for s in e.samples.iter().filter(|s| s.name == format!("{family}_bucket")) {
                let key = s
                    .labels
                    .iter()
                    .filter(|(k, _)| *k != "le")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                groups.entry(key).or_default().push(s);
            }
            assert!(!groups.is_empty(), "histogram {family} has no buckets");
            for (key, buckets) in groups {
                let les: Vec<f64> = buckets
                    .iter()
                    .map(|b| match b.labels["le"].as_str() {
                        "+Inf" => f64::INFINITY,
                        v => v.parse().unwrap(),
                    })
                    .collect();
                assert!(les.windows(2).all(|w| w[0] < w[1]), "{family}{key:?}: le not ascending");
                assert_eq!(les.last(), Some(&f64::INFINITY), "{family}{key:?}: no +Inf bucket");
                assert!(
                    buckets.windows(2).all(|w| w[0].value <= w[1].value),
                    "{family}{key:?}: buckets not cumulative"
                );
                let labels: Vec<(&str, &str)> = key.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let count = e.value(&format!("{family}_count"), &labels);
                let _sum = e.value(&format!("{family}_sum"), &labels);
                assert_eq!(buckets.last().map(|b| b.value), Some(count), "{family}{key:?}: +Inf != _count");
            }
        }
        e
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let want: BTreeMap<String, String> =
            labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
            .value
    }

    fn histogram(&self, family: &str, labels: &[(&str, &str)]) -> Histogram {
        let want: BTreeMap<String, String> =
            labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let buckets = self
            .samples
            .iter()
            .filter(|s| {
                s.name == format!("{family}_bucket") && {
                    let mut l = s.labels.clone();
                    l.remove("le");
                    l == want
                }
            })
            .map(|s| (s.labels["le"].clone(), s.value))
            .collect();
        Histogram {
            buckets,
            sum: self.value(&format!("{family}_sum"), labels),
            count: self.value(&format!("{family}_count"), labels),
        }
    }
}
