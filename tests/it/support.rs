//! Test harness: private MariaDB servers, per-test schemas, the real daemon binary, and a client
//! that behaves exactly like `queryCataloga.py`.
//!
//! A MariaDB server is started from Debian's `mariadbd` on a temporary datadir and a free
//! loopback port, under a small shell guard that kills it and removes the datadir when the test
//! process exits (Rust tests have no global teardown). Tests share one server and isolate
//! themselves with prefixed schema names (`t<N>_BPDATA`, `t<N>_RFDATA`); a test that needs to
//! stop the server starts its own.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Path of the shared test data (`../shared` beside the repository, or `APPCATALOGA_SHARED_DIR`).
pub fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("APPCATALOGA_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    dir.is_dir().then_some(dir)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A private MariaDB server.
pub struct MariaDb {
    /// Loopback port.
    pub port: u16,
    /// Temporary directory (datadir, socket, logs).
    pub dir: PathBuf,
    guard: std::sync::Mutex<Option<Child>>,
}

impl MariaDb {
    /// Installs a datadir and starts the server; panics with the server log if it fails.
    pub fn start() -> MariaDb {
        // Concurrent mariadb-install-db runs can trip over each other: one at a time.
        static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::Builder::new().prefix("acat-db-").tempdir_in("/tmp").unwrap().keep();
        let data = dir.join("data");
        let out = Command::new("mariadb-install-db")
            .args(["--no-defaults", "--user=root", "--auth-root-authentication-method=normal"])
            .arg(format!("--datadir={}", data.display()))
            .output()
            .expect(
                "mariadb-install-db (Debian package mariadb-server) must be installed: run scripts/test.sh",
            );
        assert!(out.status.success(), "mariadb-install-db failed: {}", String::from_utf8_lossy(&out.stderr));
        let db = MariaDb { port: free_port(), dir, guard: std::sync::Mutex::new(None) };
        db.launch();
        db.sql("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;");
        db
    }

    fn launch(&self) {
        let data = self.dir.join("data");
        let sock = self.dir.join("sock");
        // The guard shell: runs mariadbd; when the test process is gone, kills it and removes
        // the directory.
        let script = format!(
            "mariadbd --no-defaults --user=root --datadir={data} --socket={sock} --port={port} \
             --bind-address=127.0.0.1 --skip-log-bin --innodb-buffer-pool-size=64M \
             --innodb-log-file-size=16M --innodb-flush-log-at-trx-commit=2 --max-connections=500 \
             --pid-file={dir}/mariadbd.pid >>{dir}/mariadbd.log 2>&1 & M=$!; \
             while kill -0 {parent} 2>/dev/null && kill -0 $M 2>/dev/null; do sleep 0.3; done; \
             if ! kill -0 {parent} 2>/dev/null; then kill -9 $M 2>/dev/null; wait $M; rm -rf {dir}; fi",
            data = data.display(),
            sock = sock.display(),
            port = self.port,
            dir = self.dir.display(),
            parent = std::process::id(),
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        *self.guard.lock().unwrap() = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if start.elapsed() > Duration::from_secs(30) {
                panic!(
                    "mariadbd did not start: {}",
                    std::fs::read_to_string(self.dir.join("mariadbd.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server (as a crash would).
    pub fn stop(&self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("mariadbd.pid")) {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        }
        if let Some(mut guard) = self.guard.lock().unwrap().take() {
            let _ = guard.wait();
        }
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && start.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the server again on the same datadir and port.
    pub fn restart(&self) {
        self.launch();
    }

    /// Runs SQL through the `mariadb` client over the socket; returns its tab-separated output.
    pub fn sql(&self, sql: &str) -> String {
        let out = Command::new("mariadb")
            .args(["--no-defaults", "-uroot", "-N", "-B"])
            .arg(format!("--socket={}", self.dir.join("sock").display()))
            .arg("-e")
            .arg(sql)
            .output()
            .expect("mariadb client");
        assert!(out.status.success(), "SQL failed: {sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Server URL for the root user.
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/", self.port)
    }
}

/// The server shared by every test of this binary.
pub fn shared_db() -> &'static MariaDb {
    static DB: OnceLock<MariaDb> = OnceLock::new();
    DB.get_or_init(MariaDb::start)
}

/// A pair of schemas private to one test.
pub struct TestDb {
    /// Server.
    pub db: &'static MariaDb,
    /// Queue schema.
    pub bpdata: String,
    /// Catalogue schema.
    pub rfdata: String,
}

impl TestDb {
    /// Fresh, empty schema names on the shared server.
    pub fn new() -> TestDb {
        TestDb::on(shared_db())
    }

    /// Fresh schema names on a given server.
    pub fn on(db: &'static MariaDb) -> TestDb {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("t{}_{n}", std::process::id());
        TestDb { db, bpdata: format!("{prefix}_BPDATA"), rfdata: format!("{prefix}_RFDATA") }
    }

    /// Environment for the daemon binary pointing at these schemas.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("APPCATALOGA_DATABASE__URL".into(), self.db.url()),
            ("APPCATALOGA_DATABASE__BPDATA_SCHEMA".into(), self.bpdata.clone()),
            ("APPCATALOGA_DATABASE__RFDATA_SCHEMA".into(), self.rfdata.clone()),
        ]
    }

    /// Runs SQL where `{BP}` and `{RF}` stand for this test's schemas.
    pub fn sql(&self, sql: &str) -> String {
        self.db.sql(&sql.replace("{BP}", &self.bpdata).replace("{RF}", &self.rfdata))
    }

    /// A single value.
    pub fn value(&self, sql: &str) -> String {
        self.sql(sql).trim().to_string()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = Command::new("mariadb")
                .args(["--no-defaults", "-uroot"])
                .arg(format!("--socket={}", self.db.dir.join("sock").display()))
                .arg("-e")
                .arg(format!(
                    "DROP DATABASE IF EXISTS {}; DROP DATABASE IF EXISTS {};",
                    self.bpdata, self.rfdata
                ))
                .output();
        }
    }
}

/// An empty configuration file in `dir` (so only defaults and the environment apply).
pub fn empty_config(dir: &Path) -> PathBuf {
    let path = dir.join("empty.toml");
    std::fs::write(&path, "").unwrap();
    path
}

/// The `appcataloga` binary built for these tests.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_appcataloga")
}

/// A running daemon process.
pub struct TestDaemon {
    /// The process.
    pub child: Child,
    /// Gateway address.
    pub addr: SocketAddr,
    /// Log file (stderr).
    pub log: PathBuf,
    /// Notifications received so far.
    pub notifications: Vec<String>,
    notify: UnixDatagram,
    dir: tempfile::TempDir,
}

/// Options for [`TestDaemon::start`].
#[derive(Default)]
pub struct DaemonOptions {
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Write a station-password key and configure it.
    pub with_key: bool,
    /// Run the backup workers (off by default: gateway tests check queue rows untouched).
    pub backup: bool,
    /// Run the processing workers (off by default: other tests check copied files untouched).
    pub processing: bool,
    /// Repository root (default: a directory private to the daemon).
    pub repo: Option<PathBuf>,
    /// Station-password key file to use (shared between daemons of one test).
    pub key_file: Option<PathBuf>,
}

/// Settings that make the backup engine quick to observe in tests.
pub fn fast_backup_env() -> Vec<(String, String)> {
    [
        ("APPCATALOGA_BACKUP__POLL_INTERVAL", "100ms"),
        ("APPCATALOGA_BACKUP__LEASE", "6s"),
        ("APPCATALOGA_BACKUP__HALT_WAIT_MIN", "300ms"),
        ("APPCATALOGA_BACKUP__HALT_WAIT_MAX", "500ms"),
        ("APPCATALOGA_BACKUP__HALT_WAIT_CYCLES", "4"),
        ("APPCATALOGA_BACKUP__RETRY_BASE", "300ms"),
        ("APPCATALOGA_BACKUP__RETRY_MAX", "2s"),
        ("APPCATALOGA_BACKUP__CONNECT_TIMEOUT", "10s"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

impl TestDaemon {
    /// Starts the daemon on `127.0.0.1:0` and waits for `READY=1` (which carries the address).
    pub fn start(db: &TestDb, opts: DaemonOptions) -> TestDaemon {
        let dir = tempfile::tempdir().unwrap();
        let notify_path = dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        notify.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let log = dir.path().join("daemon.log");
        let mut cmd = Command::new(binary());
        cmd.arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("APPCATALOGA_CONFIG", empty_config(dir.path()))
            .env("APPCATALOGA_GATEWAY__LISTEN", "127.0.0.1:0")
            .env("APPCATALOGA_HTTP__LISTEN", "127.0.0.1:0")
            // The publisher stage is tested on its own (tests/it/publish.rs).
            .env("APPCATALOGA_PUBLISH__ENABLED", "false")
            .env(
                "APPCATALOGA_SECRETS__KEY_FILE",
                opts.key_file.clone().unwrap_or_else(|| dir.path().join("station.key")),
            )
            .env("APPCATALOGA_BACKUP__ENABLED", if opts.backup { "true" } else { "false" })
            .env("APPCATALOGA_PROCESSING__ENABLED", if opts.processing { "true" } else { "false" })
            .env("APPCATALOGA_REPOSITORY__ROOT", opts.repo.clone().unwrap_or_else(|| dir.path().join("repo")))
            .env("APPCATALOGA_LOG__FORMAT", "text")
            .env("RUST_LOG", "debug,sqlx=info")
            .env("NOTIFY_SOCKET", &notify_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if opts.with_key && opts.key_file.is_none() {
            let out =
                Command::new(binary()).arg("keygen").arg(dir.path().join("station.key")).output().unwrap();
            assert!(out.status.success());
        }
        for (k, v) in db.env().into_iter().chain(opts.env) {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let mut daemon = TestDaemon {
            child,
            addr: "127.0.0.1:1".parse().unwrap(),
            log,
            notifications: Vec::new(),
            notify,
            dir,
        };
        let msg = daemon.wait_notification("READY=1");
        let addr = msg
            .lines()
            .find_map(|l| l.strip_prefix("STATUS=listening on "))
            .unwrap_or_else(|| panic!("READY without address: {msg:?}"));
        daemon.addr = addr.parse().unwrap();
        daemon
    }

    /// Waits for a notification containing `needle`; panics with the log after 20 s.
    pub fn wait_notification(&mut self, needle: &str) -> String {
        if let Some(m) = self.notifications.iter().find(|m| m.contains(needle)) {
            return m.clone();
        }
        let mut buf = [0u8; 4096];
        loop {
            match self.notify.recv(&mut buf) {
                Ok(n) => {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    self.notifications.push(msg.clone());
                    if msg.contains(needle) {
                        return msg;
                    }
                }
                Err(e) => panic!("no {needle} notification ({e}); log:\n{}", self.log_text()),
            }
        }
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Directory private to this daemon.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
    }

    /// Waits for exit (at most `limit`), returning the exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Exactly what `queryCataloga.py` does: connect, `sendall` the request (no terminator), one
/// `recv(1024)`, close. Returns the raw reply.
pub fn legacy_query(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Sends bytes and reads the whole reply until the server closes.
pub fn query_bytes(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(request);
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

/// Extracts the JSON between the last `<json>` and `</json>` (as the legacy client does).
pub fn reply_json(reply: &str) -> serde_json::Value {
    let start = reply.rfind("<json>").unwrap_or_else(|| panic!("no <json> in {reply:?}")) + 6;
    let end = reply.rfind("</json>").unwrap_or_else(|| panic!("no </json> in {reply:?}"));
    serde_json::from_str(&reply[start..end]).unwrap_or_else(|e| panic!("bad JSON {reply:?}: {e}"))
}

/// The keys of a valid legacy reply, in order.
pub const LEGACY_KEYS: [&str; 13] = [
    "host",
    "host_files",
    "pending_host_task",
    "last_host_check",
    "host_check_error",
    "pending_backup",
    "last_backup",
    "backup_error",
    "pending_processing",
    "processing_error",
    "last_processing",
    "status",
    "message",
];

/// The keys of a JSON reply body, in document order.
pub fn keys_in_order(reply: &str) -> Vec<String> {
    let start = reply.rfind("<json>").unwrap() + 6;
    let body = &reply[start..reply.rfind("</json>").unwrap()];
    let mut keys = Vec::new();
    let mut de = serde_json::Deserializer::from_str(body);
    use serde::Deserializer;
    struct V<'a>(&'a mut Vec<String>);
    impl<'de> serde::de::Visitor<'de> for V<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(k) = map.next_key::<String>()? {
                let _: serde::de::IgnoredAny = map.next_value()?;
                self.0.push(k);
            }
            Ok(())
        }
    }
    de.deserialize_map(V(&mut keys)).unwrap();
    keys
}

/// Checks the keys `appcataloga inspect --json` promises (issue: at least these).
pub fn assert_inspect_keys(v: &serde_json::Value) {
    for key in ["file_version", "hostname", "method", "gps", "spectra", "damage"] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    for key in ["latitude", "longitude", "altitude", "valid_fixes"] {
        assert!(v["gps"].get(key).is_some(), "missing gps.{key}");
    }
    for key in ["bad_blocks", "truncated_bytes"] {
        assert!(v["damage"].get(key).is_some(), "missing damage.{key}");
    }
    if let Some(first) = v["spectra"].get(0) {
        for key in [
            "thread_id",
            "description",
            "start_mhz",
            "stop_mhz",
            "unit",
            "points",
            "trace_count",
            "first_sweep",
            "last_sweep",
        ] {
            assert!(first.get(key).is_some(), "missing spectra[].{key}");
        }
    }
}
