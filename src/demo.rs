//! `appcataloga demo`: the whole system end to end on one machine, in about a minute.
//!
//! Why: the README's first command must show a newcomer (and CI) that the pieces work together
//! for real — Zabbix's wire format, SSH/SFTP backup from OpenSSH stations, CRFS processing into
//! the catalogue, Parquet publication — without any infrastructure beyond a MariaDB server
//! (`scripts/demo.sh` starts a private one and then runs this).
//!
//! What it does, in order:
//! 1. starts N simulated stations ([`crate::station`]: private `sshd`, chroot, indexer), each
//!    with its own receiver hostname and GPS position in a different Brazilian city, and fills
//!    them with realistic generated CRFS `.bin` files (consecutive in time, like a logger's),
//!    then runs each station's indexer so the files are listed in `DUE_BACKUP`;
//! 2. drops and recreates its own schemas (`<prefix>_BPDATA`, `<prefix>_RFDATA`, so a second
//!    run starts clean), loads the IBGE reference data with `appcataloga refdata load`, writes
//!    `<work>/appcataloga.toml` and a station-password key, and starts the real daemon binary
//!    (`appcataloga run`) as a child process, learning its gateway address from `READY=1` on a
//!    private `NOTIFY_SOCKET`, exactly as systemd would;
//! 3. asks for each station's backup like Zabbix's legacy client (7 tokens, no terminator, one
//!    `recv(1024)`) and prints the replies' key fields;
//! 4. polls (the same legacy `status` request) until every file is backed up and catalogued,
//!    then waits for `<repo>/Metadata/spectrum_catalog.parquet` to hold every spectrum;
//! 5. reads the Parquet file back (footer row count, then rows through the Arrow reader);
//! 6. stops the daemon with SIGTERM and checks it exits 0, stops the stations, prints a summary.
//!
//! Everything it creates lives under `--work` (repository, config, key, daemon log) and the
//! station simulator's base folder; nothing touches a system service. A daemon left by a run
//! that was killed is stopped at the next start (pid file), and a small guard process stops
//! the daemon if this process dies without cleaning up. Needs root (station users, sshd).
//! `anyhow` is used here because this is a binary edge, like `cli.rs`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type};
use arrow_array::{Array, RecordBatch};
use chrono::{NaiveDateTime, TimeDelta, Timelike};
use secrecy::SecretString;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{DatabaseConfig, DatabaseUrl};
use crate::crfs::generator::{self, FileSpec};
use crate::publish::{CATALOG_FILE, METADATA_DIR};
use crate::secret::StationKey;
use crate::station::{Station, StationSpec};
use crate::store::Store;

/// Options of `appcataloga demo`.
#[derive(clap::Args, Clone, Debug)]
pub struct DemoArgs {
    /// MariaDB server URL (the demo drops and recreates its own `<prefix>_BPDATA`/`_RFDATA`).
    #[arg(long, env = "APPCATALOGA_DATABASE__URL", value_name = "URL")]
    pub db_url: String,
    /// Work directory: repository, configuration, key and daemon log (recreated on each run).
    #[arg(long, default_value = "target/demo", value_name = "DIR")]
    pub work: PathBuf,
    /// Simulated stations (each in a different Brazilian city).
    #[arg(long, default_value_t = 3)]
    pub stations: usize,
    /// CRFS files generated on each station.
    #[arg(long, default_value_t = 8)]
    pub files_per_station: usize,
    /// Approximate size of each file, bytes.
    #[arg(long, default_value_t = 2_000_000)]
    pub file_size: u64,
    /// Give up (non-zero exit) when backup, processing and publication take longer than this.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Reference data folder (IBGE states, municipalities, seat coordinates). Default:
    /// `$APPCATALOGA_SHARED_DIR/reference-data`, else `../shared/reference-data`.
    #[arg(long, value_name = "DIR")]
    pub refdata: Option<PathBuf>,
    /// Schema name prefix: the demo uses `<prefix>_BPDATA` and `<prefix>_RFDATA`.
    #[arg(long, default_value = "demo", value_name = "PREFIX")]
    pub schema_prefix: String,
    /// The `appcataloga` binary to run as the daemon (default: this executable).
    #[arg(long, value_name = "PATH")]
    pub bin: Option<PathBuf>,
    /// Catalogue rows printed after reading the Parquet file back.
    #[arg(long, default_value_t = 5)]
    pub show_rows: usize,
}

impl DemoArgs {
    /// The defaults of the command line, for a given server (tests, embedding).
    pub fn new(db_url: impl Into<String>, work: impl Into<PathBuf>) -> Self {
        DemoArgs {
            db_url: db_url.into(),
            work: work.into(),
            stations: 3,
            files_per_station: 8,
            file_size: 2_000_000,
            timeout: Duration::from_secs(120),
            refdata: None,
            schema_prefix: "demo".into(),
            bin: None,
            show_rows: 5,
        }
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::config::duration_str::parse(text)
}

/// A city where a simulated station stands (near the municipal seat).
struct City {
    name: &'static str,
    latitude: f64,
    longitude: f64,
    altitude_m: f64,
}

const CITIES: [City; 8] = [
    City { name: "Brasília", latitude: -15.7795, longitude: -47.9297, altitude_m: 1172.0 },
    City { name: "Salvador", latitude: -12.9718, longitude: -38.5011, altitude_m: 8.0 },
    City { name: "Manaus", latitude: -3.1190, longitude: -60.0217, altitude_m: 92.0 },
    City { name: "Belo Horizonte", latitude: -19.9102, longitude: -43.9266, altitude_m: 852.0 },
    City { name: "Porto Alegre", latitude: -30.0318, longitude: -51.2065, altitude_m: 10.0 },
    City { name: "Recife", latitude: -8.0476, longitude: -34.8770, altitude_m: 4.0 },
    City { name: "Belém", latitude: -1.4554, longitude: -48.4898, altitude_m: 10.0 },
    City { name: "Curitiba", latitude: -25.4195, longitude: -49.2646, altitude_m: 934.0 },
];

/// One catalogue row read back from the Parquet file.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogSample {
    /// Receiver (equipment) name.
    pub receiver: String,
    /// Two-letter state, if resolved.
    pub state: Option<String>,
    /// IBGE municipality code, if resolved.
    pub county_code: Option<i32>,
    /// Municipality name, if resolved.
    pub county_name: Option<String>,
    /// Logger description of the stream.
    pub description: String,
    /// Start frequency, MHz.
    pub freq_start_mhz: Option<f64>,
    /// Stop frequency, MHz.
    pub freq_stop_mhz: Option<f64>,
    /// Sweeps.
    pub trace_count: Option<i32>,
    /// First sweep (logger clock).
    pub time_start: Option<String>,
}

/// One site of the catalogue, as read back from the Parquet file.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteSummary {
    /// `DIM_SPECTRUM_SITE.ID_SITE`.
    pub site_id: i32,
    /// Two-letter state, if resolved.
    pub state: Option<String>,
    /// IBGE municipality code, if resolved.
    pub county_code: Option<i32>,
    /// Municipality name, if resolved.
    pub county_name: Option<String>,
    /// Site position.
    pub latitude: f64,
    /// Site position.
    pub longitude: f64,
    /// Receivers seen at the site.
    pub receivers: Vec<String>,
    /// Spectra measured there.
    pub spectra: u64,
}

/// What a demo run measured.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// Stations simulated.
    pub stations: usize,
    /// Files generated, backed up and catalogued.
    pub files: usize,
    /// Their total size, bytes.
    pub bytes: u64,
    /// First backup request → last file copied and verified.
    pub backup: Duration,
    /// First backup request → last file catalogued.
    pub processing: Duration,
    /// First backup request → Parquet file complete.
    pub published: Duration,
    /// Sites in the catalogue.
    pub sites: Vec<SiteSummary>,
    /// Spectra (catalogue rows, Parquet footer row count).
    pub spectra: u64,
    /// The published file.
    pub parquet: PathBuf,
    /// Its size, bytes.
    pub parquet_bytes: u64,
    /// Every catalogue row read back (the summary prints a few).
    pub rows: Vec<CatalogSample>,
    /// Whether reference data was loaded (sites then have a state and county).
    pub refdata_loaded: bool,
    /// How long the daemon took to stop after SIGTERM.
    pub shutdown: Duration,
}

/// Runs the demo and prints its progress and summary (`appcataloga demo`). Ctrl-C stops it
/// cleanly: the daemon is stopped and the stations are torn down.
///
/// # Errors
/// Any failed step, with what failed and where to look (the daemon log), or a timeout.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    tokio::select! {
        r = execute(args) => r.map(|_| ()),
        r = tokio::signal::ctrl_c() => {
            r.context("waiting for Ctrl-C")?;
            // Dropping `execute` stopped the daemon and the stations.
            bail!("interrupted")
        }
    }
}

/// Runs the demo, printing as it goes, and returns the figures (tests call this directly; it
/// installs no signal handler).
///
/// # Errors
/// As [`run`].
pub async fn execute(args: DemoArgs) -> anyhow::Result<DemoReport> {
    let mut demo = Demo::prepare(&args)?;
    let result = demo.run(&args).await;
    if result.is_err() {
        demo.print_log_tail();
    }
    demo.cleanup().await;
    result
}

/// Paths of one run, and the processes it owns.
struct Demo {
    work: PathBuf,
    repo: PathBuf,
    config: PathBuf,
    key: PathBuf,
    log: PathBuf,
    notify: PathBuf,
    pid_file: PathBuf,
    bin: PathBuf,
    /// Declared before `stations`: dropped first (a daemon outliving its stations would log
    /// failures that are not the cause of anything).
    daemon: Option<DaemonProcess>,
    stations: Vec<StationFiles>,
}

/// What we generated on one station.
struct StationFiles {
    station: Station,
    city: &'static str,
    host_id: i32,
    host_uid: String,
    receiver: String,
    files: usize,
    bytes: u64,
    spectra: u64,
}

/// The latest legacy reply of one host.
#[derive(Default, Clone)]
struct HostProgress {
    reply: Value,
}

impl HostProgress {
    fn field(&self, key: &str) -> i64 {
        self.reply.get(key).and_then(Value::as_i64).unwrap_or(0)
    }
    fn copied(&self) -> i64 {
        self.field("host_files")
    }
    fn catalogued(&self) -> i64 {
        (self.copied() - self.field("pending_processing") - self.field("processing_error")).max(0)
    }
    fn backed_up(&self, expected: i64) -> bool {
        self.field("status") == 1
            && self.copied() >= expected
            && self.field("pending_backup") == 0
            && self.field("pending_host_task") == 0
    }
    fn processed(&self, expected: i64) -> bool {
        self.backed_up(expected) && self.field("pending_processing") == 0
    }
}

impl Demo {
    fn prepare(args: &DemoArgs) -> anyhow::Result<Demo> {
        ensure!(args.stations >= 1, "--stations must be at least 1");
        ensure!(args.files_per_station >= 1, "--files-per-station must be at least 1");
        ensure!(
            !args.schema_prefix.is_empty()
                && crate::config::is_sql_identifier(&format!("{}_BPDATA", args.schema_prefix)),
            "--schema-prefix {:?} must be a plain SQL identifier (letters, digits, _)",
            args.schema_prefix
        );
        ensure!(
            effective_uid() == Some(0),
            "the demo needs root: simulated stations create system users (useradd) and run sshd \
             with a chroot; run it as root (e.g. sudo scripts/demo.sh)"
        );
        ensure!(
            Path::new(crate::station::SSHD).exists(),
            "{} is missing: install openssh-server (scripts/install-deps.sh does)",
            crate::station::SSHD
        );
        check_station_base(&crate::station::default_base_dir())?;
        std::fs::create_dir_all(&args.work)
            .with_context(|| format!("creating the work directory {}", args.work.display()))?;
        let work = std::fs::canonicalize(&args.work)
            .with_context(|| format!("resolving the work directory {}", args.work.display()))?;
        let bin = match &args.bin {
            Some(b) => b.clone(),
            None => std::env::current_exe().context("locating the appcataloga executable")?,
        };
        ensure!(bin.is_file(), "the daemon binary {} does not exist", bin.display());
        let demo = Demo {
            repo: work.join("repo"),
            config: work.join("appcataloga.toml"),
            key: work.join("station.key"),
            log: work.join("daemon.log"),
            notify: work.join("notify.sock"),
            pid_file: work.join("daemon.pid"),
            work,
            bin,
            daemon: None,
            stations: Vec::new(),
        };
        demo.stop_stale_daemon();
        match std::fs::remove_dir_all(&demo.repo) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {} of an earlier run", demo.repo.display()));
            }
            _ => {}
        }
        for file in [&demo.config, &demo.key, &demo.log, &demo.notify, &demo.pid_file] {
            match std::fs::remove_file(file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("removing {} of an earlier run", file.display()));
                }
                _ => {}
            }
        }
        std::fs::create_dir_all(&demo.repo)
            .with_context(|| format!("creating the repository {}", demo.repo.display()))?;
        Ok(demo)
    }

    /// Stops a daemon left running by an earlier, killed run of the demo in the same folder.
    fn stop_stale_daemon(&self) {
        let Some(pid) =
            std::fs::read_to_string(&self.pid_file).ok().and_then(|p| p.trim().parse::<u32>().ok())
        else {
            return;
        };
        // Only a process that is our daemon with this work directory's configuration.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if !cmdline.contains(&self.config.display().to_string()) || !cmdline.contains(" run") {
            return;
        }
        println!("stopping the daemon (pid {pid}) left by an earlier, interrupted run");
        signal(pid, "TERM");
        let start = Instant::now();
        while Path::new(&format!("/proc/{pid}")).exists() && start.elapsed() < Duration::from_secs(15) {
            std::thread::sleep(Duration::from_millis(100));
        }
        if Path::new(&format!("/proc/{pid}")).exists() {
            signal(pid, "KILL");
        }
    }

    async fn run(&mut self, args: &DemoArgs) -> anyhow::Result<DemoReport> {
        let started = Instant::now();
        println!(
            "appcataloga demo: {} stations × {} files × ~{:.1} MB (work directory {})",
            args.stations,
            args.files_per_station,
            args.file_size as f64 / 1e6,
            self.work.display()
        );

        // 1. Stations and their files.
        let t = Instant::now();
        self.stations = start_stations(args).await?;
        let stations = &self.stations;
        let (files, bytes, spectra): (usize, u64, u64) =
            stations.iter().fold((0, 0, 0), |(f, b, s), st| (f + st.files, b + st.bytes, s + st.spectra));
        for st in stations {
            println!(
                "  station {:<12} {} ({:<14}) sshd 127.0.0.1:{:<5} user {:<9} {} files, {:.1} MB, {} spectra",
                st.host_uid,
                st.receiver,
                st.city,
                st.station.port(),
                st.station.user(),
                st.files,
                st.bytes as f64 / 1e6,
                st.spectra
            );
        }
        println!(
            "1. stations ready in {:.1} s: {files} files, {:.1} MB, indexed in DUE_BACKUP",
            t.elapsed().as_secs_f64(),
            bytes as f64 / 1e6
        );

        // 2. Database, reference data, configuration, key, daemon.
        let db = DatabaseConfig {
            url: Some(DatabaseUrl(SecretString::from(args.db_url.clone()))),
            bpdata_schema: format!("{}_BPDATA", args.schema_prefix),
            rfdata_schema: format!("{}_RFDATA", args.schema_prefix),
            max_connections: 2,
            acquire_timeout: Duration::from_secs(10),
            ..DatabaseConfig::default()
        };
        let store = Store::connect_lazy(&db).context("--db-url")?;
        let reset = reset_schemas(&store).await;
        store.close().await;
        reset?;
        self.write_config(&db)?;
        let refdata = self.load_refdata(args).await?;
        let key_id = StationKey::generate_file(&self.key)
            .with_context(|| format!("writing the station-password key {}", self.key.display()))?;
        let (daemon, addr) = self.start_daemon(&args.db_url).await?;
        self.daemon = Some(daemon);
        println!(
            "2. daemon started: gateway {addr}, schemas {}/{}, key {key_id}, repository {}, log {}",
            db.bpdata_schema,
            db.rfdata_schema,
            self.repo.display(),
            self.log.display()
        );

        // 3. Zabbix asks for each station's backup.
        println!("3. Zabbix polls every station (legacy request: 7 tokens, no terminator, one recv(1024)):");
        let t0 = Instant::now();
        for st in stations {
            let request = legacy_request("backup", st);
            let reply = legacy_query(addr, &request).await?;
            let v = reply_json(&reply)?;
            println!(
                "  {} → {} bytes: {}",
                redact(&request, st.station.password()),
                reply.len(),
                key_fields(&v)
            );
            ensure!(
                v.get("status").and_then(Value::as_i64) == Some(1),
                "the gateway refused the backup request of {}: {}",
                st.host_uid,
                v.get("message").and_then(Value::as_str).unwrap_or("no message")
            );
        }

        // 4. Wait for backup and processing, polling like Zabbix.
        let deadline = t0 + args.timeout;
        let (backup, processing_done, progress) =
            self.wait_for_catalogue(addr, stations, args, t0, files).await?;
        for (p, st) in progress.iter().zip(stations) {
            println!(
                "  {} → {}",
                redact(&legacy_request("status", st), st.station.password()),
                key_fields(&p.reply)
            );
        }
        println!(
            "4. backup done in {:.1} s ({:.1} MB/s), processing done in {:.1} s",
            backup.as_secs_f64(),
            bytes as f64 / 1e6 / backup.as_secs_f64().max(1e-3),
            processing_done.as_secs_f64()
        );

        // 5. Publication: wait for the Parquet file to hold every spectrum.
        let parquet = self.repo.join(METADATA_DIR).join(CATALOG_FILE);
        let published = self.wait_for_parquet(&parquet, spectra, t0, deadline, args.timeout).await?;
        let parquet_bytes = std::fs::metadata(&parquet).map(|m| m.len()).unwrap_or(0);
        let path = parquet.clone();
        let (sites, rows) = tokio::task::spawn_blocking(move || read_catalog(&path))
            .await
            .context("reading the Parquet file")??;
        println!("5. published in {:.1} s; read back {} rows", published.as_secs_f64(), spectra);

        // 6. Clean shutdown.
        let cities: Vec<(String, &'static str)> =
            stations.iter().map(|s| (s.receiver.clone(), s.city)).collect();
        let shutdown = self.stop_daemon().await?;
        println!("6. daemon stopped cleanly (SIGTERM → exit 0 in {:.1} s)", shutdown.as_secs_f64());
        stop_stations(std::mem::take(&mut self.stations)).await;

        let report = DemoReport {
            stations: args.stations,
            files,
            bytes,
            backup,
            processing: processing_done,
            published,
            sites,
            spectra,
            parquet,
            parquet_bytes,
            rows,
            refdata_loaded: refdata,
            shutdown,
        };
        print_summary(&report, &cities, args.show_rows, started.elapsed());
        Ok(report)
    }

    /// Polls every station with the legacy `status` request until all files are backed up and
    /// catalogued; returns (backup done, processing done) since `t0`, and the last replies.
    async fn wait_for_catalogue(
        &self,
        addr: SocketAddr,
        stations: &[StationFiles],
        args: &DemoArgs,
        t0: Instant,
        files: usize,
    ) -> anyhow::Result<(Duration, Duration, Vec<HostProgress>)> {
        let expected = i64::try_from(args.files_per_station).unwrap_or(i64::MAX);
        let deadline = t0 + args.timeout;
        let mut progress: Vec<HostProgress> = vec![HostProgress::default(); stations.len()];
        let mut backup_done: Option<Duration> = None;
        let mut shown = (-1, -1);
        let mut failed_rounds = 0;
        loop {
            let mut set = tokio::task::JoinSet::new();
            for (i, st) in stations.iter().enumerate() {
                let request = legacy_request("status", st);
                set.spawn(async move { (i, legacy_query(addr, &request).await) });
            }
            let mut last_error = None;
            while let Some(joined) = set.join_next().await {
                let (i, reply) = joined.context("polling task")?;
                match (progress.get_mut(i), reply.and_then(|r| reply_json(&r))) {
                    (Some(p), Ok(v)) => p.reply = v,
                    (_, Err(e)) => last_error = Some(e),
                    (None, Ok(_)) => {}
                }
            }
            failed_rounds = if last_error.is_some() { failed_rounds + 1 } else { 0 };
            if let Some(e) = last_error
                && failed_rounds >= 30
            {
                return Err(e.context(format!(
                    "the gateway has not answered for 3 s; see the daemon log {}",
                    self.log.display()
                )));
            }
            for (p, st) in progress.iter().zip(stations) {
                if p.field("host_check_error") >= 3 {
                    bail!(
                        "the backup of station {} failed {} times in a row: {}; see the daemon log {}",
                        st.host_uid,
                        p.field("host_check_error"),
                        p.reply.get("message").and_then(Value::as_str).unwrap_or("no message"),
                        self.log.display()
                    );
                }
                if p.field("backup_error") > 0 || p.field("processing_error") > 0 {
                    bail!(
                        "station {} reports failed files: {}; see the daemon log {}",
                        st.host_uid,
                        key_fields(&p.reply),
                        self.log.display()
                    );
                }
            }
            let copied: i64 = progress.iter().map(HostProgress::copied).sum();
            let catalogued: i64 = progress.iter().map(HostProgress::catalogued).sum();
            if (copied, catalogued) != shown {
                shown = (copied, catalogued);
                println!(
                    "  [{:5.1} s] copied {copied}/{files}, catalogued {catalogued}/{files}",
                    t0.elapsed().as_secs_f64()
                );
            }
            if backup_done.is_none() && progress.iter().all(|p| p.backed_up(expected)) {
                backup_done = Some(t0.elapsed());
            }
            if progress.iter().all(|p| p.processed(expected)) {
                let done = t0.elapsed();
                return Ok((backup_done.unwrap_or(done), done, progress));
            }
            if Instant::now() > deadline {
                let detail: Vec<String> = progress
                    .iter()
                    .zip(stations)
                    .map(|(p, st)| format!("{}: {}", st.host_uid, key_fields(&p.reply)))
                    .collect();
                bail!(
                    "timed out after {:?} waiting for backup and processing ({}); see the daemon log {}",
                    args.timeout,
                    detail.join("; "),
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the published catalogue's footer row count is `spectra`; returns when, since
    /// `t0`.
    async fn wait_for_parquet(
        &self,
        parquet: &Path,
        spectra: u64,
        t0: Instant,
        deadline: Instant,
        timeout: Duration,
    ) -> anyhow::Result<Duration> {
        let mut last_rows = None;
        loop {
            let rows = parquet_row_count(parquet).await;
            if rows != last_rows {
                if let Some(r) = rows {
                    println!("  [{:5.1} s] {} has {r} rows", t0.elapsed().as_secs_f64(), parquet.display());
                }
                last_rows = rows;
            }
            if rows == Some(spectra) {
                return Ok(t0.elapsed());
            }
            if Instant::now() > deadline {
                bail!(
                    "timed out after {timeout:?} waiting for {} to hold {spectra} rows (it has {}); see the daemon log {}",
                    parquet.display(),
                    rows.map_or("no file".to_string(), |r| format!("{r} rows")),
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn write_config(&self, db: &DatabaseConfig) -> anyhow::Result<()> {
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let text = format!(
            "# Written by `appcataloga demo` (recreated on every run). The database URL comes from\n\
             # APPCATALOGA_DATABASE__URL. Every key is documented in etc/appcataloga.toml.\n\
             [database]\nbpdata_schema = {bp}\nrfdata_schema = {rf}\n\n\
             [gateway]\nlisten = \"127.0.0.1:0\"\n\n\
             [repository]\nroot = {repo}\n\n\
             [secrets]\nkey_file = {key}\n\n\
             [backup]\npoll_interval = \"100ms\"\nretry_base = \"500ms\"\nretry_max = \"5s\"\n\
             connect_timeout = \"10s\"\n\n\
             [processing]\npoll_interval = \"100ms\"\nretry_base = \"1s\"\n\n\
             [publish]\ninterval = \"300ms\"\ndebounce = \"500ms\"\n\n\
             [log]\nformat = \"text\"\nlevel = \"info\"\n\n\
             [daemon]\nshutdown_timeout = \"15s\"\n",
            bp = q(&db.bpdata_schema),
            rf = q(&db.rfdata_schema),
            repo = q(&self.repo.display().to_string()),
            key = q(&self.key.display().to_string()),
        );
        std::fs::write(&self.config, text).with_context(|| format!("writing {}", self.config.display()))
    }

    /// A command of our binary with a clean environment: only the demo's configuration applies.
    fn command(&self, db_url: &str) -> Command {
        let mut cmd = Command::new(&self.bin);
        for (k, _) in std::env::vars_os() {
            let name = k.to_string_lossy();
            if name.starts_with(crate::config::ENV_PREFIX)
                || matches!(
                    name.as_ref(),
                    "NOTIFY_SOCKET" | "WATCHDOG_USEC" | "WATCHDOG_PID" | "JOURNAL_STREAM" | "RUST_LOG"
                )
            {
                cmd.env_remove(&k);
            }
        }
        cmd.arg("--config")
            .arg(&self.config)
            .env("APPCATALOGA_DATABASE__URL", db_url)
            .current_dir(&self.work)
            .stdin(Stdio::null());
        cmd
    }

    /// `appcataloga refdata load DIR` when the folder exists; returns whether it was loaded.
    async fn load_refdata(&self, args: &DemoArgs) -> anyhow::Result<bool> {
        let dir = match &args.refdata {
            Some(d) => {
                ensure!(d.is_dir(), "--refdata {} is not a folder", d.display());
                Some(d.clone())
            }
            None => default_refdata_dir(),
        };
        let Some(dir) = dir else {
            println!(
                "  note: no reference data (../shared/reference-data, $APPCATALOGA_SHARED_DIR or --refdata): \
                 sites will have no state or county"
            );
            return Ok(false);
        };
        let mut cmd = self.command(&args.db_url);
        cmd.args(["refdata", "load"]).arg(&dir).env("APPCATALOGA_LOG__LEVEL", "warn");
        let out = tokio::process::Command::from(cmd)
            .output()
            .await
            .with_context(|| format!("running {} refdata load", self.bin.display()))?;
        ensure!(
            out.status.success(),
            "`appcataloga refdata load {}` failed ({}): {}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            println!("  {line}");
        }
        Ok(true)
    }

    /// Starts `appcataloga run` and waits for `READY=1`; returns the process and the gateway
    /// address (a daemon that fails to start is stopped when the process value is dropped).
    async fn start_daemon(&self, db_url: &str) -> anyhow::Result<(DaemonProcess, SocketAddr)> {
        let socket = tokio::net::UnixDatagram::bind(&self.notify)
            .with_context(|| format!("binding the notification socket {}", self.notify.display()))?;
        let log = std::fs::File::create(&self.log)
            .with_context(|| format!("creating the daemon log {}", self.log.display()))?;
        let mut cmd = self.command(db_url);
        cmd.arg("run").env("NOTIFY_SOCKET", &self.notify).stdout(Stdio::null()).stderr(log);
        let child = cmd.spawn().with_context(|| format!("starting {} run", self.bin.display()))?;
        let pid = child.id();
        // Record the pid first, so the next run can stop this daemon if we are killed.
        let _ = std::fs::write(&self.pid_file, pid.to_string());
        let guard = spawn_guard(pid);
        let mut daemon = DaemonProcess { child: Some(child), guard, pid };

        let deadline = Instant::now() + Duration::from_secs(60);
        let mut buf = vec![0u8; 4096];
        loop {
            if let Some(status) = daemon.try_wait() {
                bail!("the daemon exited during start-up ({status}); see its log {}", self.log.display());
            }
            ensure!(
                Instant::now() < deadline,
                "the daemon did not report READY within 60 s; see its log {}",
                self.log.display()
            );
            let Ok(received) = tokio::time::timeout(Duration::from_millis(200), socket.recv(&mut buf)).await
            else {
                continue;
            };
            let n = received.context("reading the notification socket")?;
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg.lines().any(|l| l == "READY=1") {
                let addr = msg
                    .lines()
                    .find_map(|l| l.strip_prefix("STATUS=listening on "))
                    .with_context(|| format!("READY=1 without the gateway address: {msg:?}"))?;
                let addr = addr.parse().with_context(|| format!("gateway address {addr:?}"))?;
                return Ok((daemon, addr));
            }
        }
    }

    /// SIGTERM, then waits for exit status 0; returns how long the drain took.
    async fn stop_daemon(&mut self) -> anyhow::Result<Duration> {
        let Some(mut d) = self.daemon.take() else {
            bail!("the daemon is not running");
        };
        let t = Instant::now();
        signal(d.pid, "TERM");
        let status = loop {
            if let Some(s) = d.try_wait() {
                break s;
            }
            if t.elapsed() > Duration::from_secs(30) {
                d.kill();
                bail!("the daemon did not stop within 30 s of SIGTERM; see its log {}", self.log.display());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        d.kill(); // the guard
        let _ = std::fs::remove_file(&self.pid_file);
        ensure!(
            status.success(),
            "the daemon exited with {status} after SIGTERM; see its log {}",
            self.log.display()
        );
        Ok(t.elapsed())
    }

    fn print_log_tail(&self) {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        if lines.is_empty() {
            return;
        }
        eprintln!("last lines of the daemon log {}:", self.log.display());
        for l in &lines[lines.len().saturating_sub(15)..] {
            eprintln!("  {l}");
        }
    }

    /// Stops the daemon if still running, then the stations (error paths; the success path has
    /// already done both).
    async fn cleanup(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.kill();
            let _ = std::fs::remove_file(&self.pid_file);
        }
        stop_stations(std::mem::take(&mut self.stations)).await;
        let _ = std::fs::remove_file(&self.notify);
    }
}

/// The daemon child and its guard.
struct DaemonProcess {
    child: Option<Child>,
    guard: Option<Child>,
    pid: u32,
}

impl DaemonProcess {
    fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Stops the daemon if it still runs (SIGTERM, then SIGKILL after 10 s), and the guard.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            if matches!(c.try_wait(), Ok(None)) {
                signal(self.pid, "TERM");
                let t = Instant::now();
                while matches!(c.try_wait(), Ok(None)) && t.elapsed() < Duration::from_secs(10) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(mut g) = self.guard.take() {
            let _ = g.kill();
            let _ = g.wait();
        }
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A shell that sends SIGTERM to the daemon if this process dies first (e.g. `kill -9`).
fn spawn_guard(daemon: u32) -> Option<Child> {
    Command::new("sh")
        .arg("-c")
        .arg(
            "while kill -0 \"$1\" 2>/dev/null && kill -0 \"$2\" 2>/dev/null; do sleep 0.5; done; \
             kill -0 \"$1\" 2>/dev/null || kill -TERM \"$2\" 2>/dev/null",
        )
        .arg("appcataloga-demo-guard")
        .arg(std::process::id().to_string())
        .arg(daemon.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// sshd refuses a chroot below a folder that is group/world-writable or not owned by root (e.g.
/// a checkout under `/tmp`): say so now rather than time out on "connection lost" later.
fn check_station_base(base: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let absolute = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
    for dir in absolute.ancestors() {
        let Ok(meta) = std::fs::metadata(dir) else { continue };
        ensure!(
            meta.uid() == 0 && meta.mode() & 0o022 == 0,
            "simulated stations live under {} but {} is {} (sshd refuses such a chroot); \
             set APPCATALOGA_STATION_DIR to a folder whose every ancestor is root-owned and not \
             group/world-writable (e.g. /var/lib/appcataloga-demo/stations)",
            absolute.display(),
            dir.display(),
            if meta.uid() != 0 { "not owned by root" } else { "group/world-writable" }
        );
    }
    Ok(())
}

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("Uid:")?.split_whitespace().nth(1)?.parse().ok())
}

fn default_refdata_dir() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(shared) = std::env::var_os("APPCATALOGA_SHARED_DIR") {
        candidates.push(PathBuf::from(shared).join("reference-data"));
    }
    candidates.push(PathBuf::from("../shared/reference-data"));
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference-data"));
    candidates
        .into_iter()
        .find(|d| d.join(crate::refdata::MUNICIPALITIES_FILE).is_file())
        .and_then(|d| std::fs::canonicalize(d).ok())
}

/// Drops the demo's own schemas (names checked by the caller: `<prefix>_BPDATA`/`_RFDATA`,
/// never the production `BPDATA`/`RFDATA`), so each run starts from an empty catalogue.
async fn reset_schemas(store: &Store) -> anyhow::Result<()> {
    store.drop_scratch_schemas().await.with_context(|| {
        format!(
            "dropping the demo schemas {} and {} (is the MariaDB server at --db-url running?)",
            store.bpdata_schema(),
            store.rfdata_schema()
        )
    })
}

/// Starts the stations and generates their files, one thread per station.
async fn start_stations(args: &DemoArgs) -> anyhow::Result<Vec<StationFiles>> {
    let base = chrono::Utc::now().naive_utc().with_second(0).and_then(|t| t.with_nanosecond(0));
    let base = base.unwrap_or_else(generator::default_start);
    // Files of a logger are consecutive: the last one ends about now.
    let period = TimeDelta::minutes(15);
    let first = base - period * i32::try_from(args.files_per_station).unwrap_or(i32::MAX);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..args.stations {
        let (files, size) = (args.files_per_station, args.file_size);
        set.spawn_blocking(move || build_station(i, files, size, first, period));
    }
    let mut out = Vec::new();
    let mut first_error = None;
    while let Some(joined) = set.join_next().await {
        match joined.context("station thread") {
            Ok(Ok(st)) => out.push(st),
            Ok(Err(e)) | Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        stop_stations(out).await;
        return Err(e);
    }
    out.sort_by_key(|s| s.host_id);
    Ok(out)
}

fn build_station(
    i: usize,
    files: usize,
    size: u64,
    first: NaiveDateTime,
    period: TimeDelta,
) -> anyhow::Result<StationFiles> {
    let city = &CITIES[i % CITIES.len()];
    let number = 2101 + i;
    let receiver = format!("rfeye{number:06}");
    let host_uid = format!("RFEye{number:06}");
    let station = Station::start(StationSpec::new(format!("demo-{receiver}")))
        .with_context(|| format!("starting the simulated station {host_uid} (needs root and sshd)"))?;
    // A few hundred metres from the municipal seat; stations beyond the city list are spread out.
    let lap = (i / CITIES.len()) as f64;
    let lat = city.latitude + 0.004 + 0.01 * lap;
    let lon = city.longitude - 0.003 - 0.01 * lap;
    let (mut bytes, mut spectra) = (0u64, 0u64);
    for f in 0..files {
        let mut spec = generator::realistic_v5(size, (i as u64) << 32 | f as u64);
        spec.hostname = receiver.clone();
        spec.file_number = u32::try_from(f).unwrap_or(u32::MAX);
        let start = first + period * i32::try_from(f).unwrap_or(i32::MAX);
        place(&mut spec, start, lat, lon, city.altitude_m);
        let name = format!("{receiver}_{}.bin", start.format("%Y%m%d_%H%M%S"));
        let in_station = station
            .add_crfs_file(&name, &spec)
            .with_context(|| format!("writing {name} on station {host_uid}"))?;
        let local = station.path(&in_station);
        bytes += std::fs::metadata(&local).with_context(|| format!("stat {}", local.display()))?.len();
        spectra += spec.streams.len() as u64;
    }
    station.run_indexer().with_context(|| format!("running the indexer of station {host_uid}"))?;
    Ok(StationFiles {
        station,
        city: city.name,
        host_id: 10_401 + i as i32,
        host_uid,
        receiver,
        files,
        bytes,
        spectra,
    })
}

/// Moves a generated file to `start` and its GPS fixes to the station's position.
fn place(spec: &mut FileSpec, start: NaiveDateTime, lat: f64, lon: f64, alt_m: f64) {
    let delta = start - generator::default_start();
    for s in &mut spec.streams {
        s.start += delta;
    }
    let fixes = spec.gps.len().max(1);
    spec.gps = (0..fixes)
        .map(|k| {
            let time = generator::default_start() + delta + TimeDelta::seconds(60 * k as i64);
            // ±~1 m of GPS noise, deterministic.
            let jitter = |salt: usize| ((k * 7919 + salt) % 21) as i32 - 10;
            generator::gps_fix(
                time,
                2,
                (lat * 1e6).round() as i32 + jitter(1),
                (lon * 1e6).round() as i32 + jitter(5),
                (alt_m * 1000.0).round() as i32 + jitter(3) * 100,
            )
        })
        .collect();
}

async fn stop_stations(stations: Vec<StationFiles>) {
    if stations.is_empty() {
        return;
    }
    // Dropping a station waits for sshd to exit: off the async threads.
    let _ = tokio::task::spawn_blocking(move || drop(stations)).await;
}

/// The legacy 7-token request Zabbix's external check sends (no terminator).
fn legacy_request(command: &str, st: &StationFiles) -> String {
    format!(
        "{command} {} {} 127.0.0.1 {} {} {}",
        st.host_id,
        st.host_uid,
        st.station.port(),
        st.station.user(),
        st.station.password()
    )
}

fn redact(request: &str, password: &str) -> String {
    request.replace(password, "*****")
}

/// What `queryCataloga.py` does: connect, send, one read of at most 1024 bytes, close.
async fn legacy_query(addr: SocketAddr, request: &str) -> anyhow::Result<String> {
    let io = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(request.as_bytes()).await?;
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), io)
        .await
        .with_context(|| format!("no reply from the gateway {addr} within 5 s"))?
        .with_context(|| format!("querying the gateway {addr}"))
}

fn reply_json(reply: &str) -> anyhow::Result<Value> {
    let start = reply.rfind("<json>").with_context(|| format!("no <json> in the reply {reply:?}"))? + 6;
    let end = reply.rfind("</json>").with_context(|| format!("no </json> in the reply {reply:?}"))?;
    ensure!(start <= end, "malformed reply {reply:?}");
    serde_json::from_str(&reply[start..end]).with_context(|| format!("reply {reply:?} is not JSON"))
}

fn key_fields(v: &Value) -> String {
    const KEYS: [&str; 10] = [
        "status",
        "host_files",
        "pending_host_task",
        "host_check_error",
        "pending_backup",
        "backup_error",
        "pending_processing",
        "processing_error",
        "last_host_check",
        "message",
    ];
    KEYS.iter().filter_map(|k| v.get(*k).map(|x| format!("{k}={x}"))).collect::<Vec<_>>().join(" ")
}

/// Footer row count of the published file (`None` while it does not exist or is unreadable).
async fn parquet_row_count(path: &Path) -> Option<u64> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let file = std::fs::File::open(&path).ok()?;
        let reader = SerializedFileReader::new(file).ok()?;
        u64::try_from(reader.metadata().file_metadata().num_rows()).ok()
    })
    .await
    .ok()
    .flatten()
}

/// Reads every row through the Arrow reader: the sites, and a few evenly spaced sample rows.
fn read_catalog(path: &Path) -> anyhow::Result<(Vec<SiteSummary>, Vec<CatalogSample>)> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .with_context(|| format!("reading {}", path.display()))?;
    // (site, latitude, longitude, row)
    type Row = (Option<i32>, Option<f64>, Option<f64>, CatalogSample);
    let mut all: Vec<Row> = Vec::new();
    for batch in reader {
        let batch = batch.with_context(|| format!("reading {}", path.display()))?;
        let cols = Columns::of(&batch)?;
        for r in 0..batch.num_rows() {
            all.push((cols.site_id(r), cols.f64("latitude", r), cols.f64("longitude", r), cols.sample(r)));
        }
    }
    let mut sites: BTreeMap<i32, SiteSummary> = BTreeMap::new();
    for (site, lat, lon, s) in &all {
        let Some(id) = site else { continue };
        let e = sites.entry(*id).or_insert_with(|| SiteSummary {
            site_id: *id,
            state: s.state.clone(),
            county_code: s.county_code,
            county_name: s.county_name.clone(),
            latitude: lat.unwrap_or(f64::NAN),
            longitude: lon.unwrap_or(f64::NAN),
            receivers: Vec::new(),
            spectra: 0,
        });
        e.spectra += 1;
        if !e.receivers.contains(&s.receiver) {
            e.receivers.push(s.receiver.clone());
        }
    }
    Ok((sites.into_values().collect(), all.into_iter().map(|(_, _, _, s)| s).collect()))
}

/// Typed access to the columns the demo prints.
struct Columns<'a> {
    batch: &'a RecordBatch,
}

impl<'a> Columns<'a> {
    fn of(batch: &'a RecordBatch) -> anyhow::Result<Self> {
        for name in ["site_id", "receiver", "state", "county_code", "description", "freq_start_mhz"] {
            ensure!(batch.column_by_name(name).is_some(), "the catalogue has no column {name}");
        }
        Ok(Columns { batch })
    }

    fn text(&self, name: &str, r: usize) -> Option<String> {
        let a = self.batch.column_by_name(name)?.as_string_opt::<i32>()?;
        a.is_valid(r).then(|| a.value(r).to_string())
    }
    fn i32(&self, name: &str, r: usize) -> Option<i32> {
        let a = self.batch.column_by_name(name)?.as_primitive_opt::<Int32Type>()?;
        a.is_valid(r).then(|| a.value(r))
    }
    fn f64(&self, name: &str, r: usize) -> Option<f64> {
        let a = self.batch.column_by_name(name)?.as_primitive_opt::<Float64Type>()?;
        a.is_valid(r).then(|| a.value(r))
    }
    fn site_id(&self, r: usize) -> Option<i32> {
        self.i32("site_id", r)
    }
    fn time(&self, name: &str, r: usize) -> Option<String> {
        let col = self.batch.column_by_name(name)?;
        let a = col.as_primitive_opt::<arrow_array::types::TimestampMicrosecondType>()?;
        if !a.is_valid(r) {
            return None;
        }
        chrono::DateTime::from_timestamp_micros(a.value(r))
            .map(|t| t.naive_utc().format("%Y-%m-%d %H:%M:%S").to_string())
    }
    fn sample(&self, r: usize) -> CatalogSample {
        CatalogSample {
            receiver: self.text("receiver", r).or_else(|| self.text("station_uid", r)).unwrap_or_default(),
            state: self.text("state", r),
            county_code: self.i32("county_code", r),
            county_name: self.text("county_name", r),
            description: self.text("description", r).unwrap_or_default(),
            freq_start_mhz: self.f64("freq_start_mhz", r),
            freq_stop_mhz: self.f64("freq_stop_mhz", r),
            trace_count: self.i32("trace_count", r),
            time_start: self.time("time_start", r),
        }
    }
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".to_string(), T::to_string)
}

fn print_summary(r: &DemoReport, cities: &[(String, &str)], show: usize, total: Duration) {
    let mb = r.bytes as f64 / 1e6;
    println!();
    println!("== summary ({:.1} s in all)", total.as_secs_f64());
    let names: Vec<String> = cities.iter().map(|(rx, c)| format!("{rx} in {c}")).collect();
    println!("stations     {} ({})", r.stations, names.join(", "));
    println!("files        {} backed up over SFTP and catalogued, {:.1} MB", r.files, mb);
    println!(
        "backup       {:.1} MB in {:.1} s = {:.1} MB/s (first Zabbix request → last file verified)",
        mb,
        r.backup.as_secs_f64(),
        mb / r.backup.as_secs_f64().max(1e-3)
    );
    println!(
        "processing   all files catalogued {:.1} s after the first request; Parquet complete at {:.1} s",
        r.processing.as_secs_f64(),
        r.published.as_secs_f64()
    );
    println!("sites        {}", r.sites.len());
    for s in &r.sites {
        println!(
            "  site {:<3} {:>9.4} {:>9.4}  state {:<2}  county {:<7} {:<16} {} ({} spectra)",
            s.site_id,
            s.latitude,
            s.longitude,
            opt(&s.state),
            opt(&s.county_code),
            opt(&s.county_name),
            s.receivers.join(","),
            s.spectra
        );
    }
    if !r.refdata_loaded {
        println!("  (no reference data was loaded: sites have no state or county)");
    }
    println!("spectra      {}", r.spectra);
    println!(
        "parquet      {} ({} rows, {:.1} KiB)",
        r.parquet.display(),
        r.spectra,
        r.parquet_bytes as f64 / 1024.0
    );
    let n = r.rows.len();
    let picks: Vec<&CatalogSample> = if n <= show {
        r.rows.iter().collect()
    } else {
        (0..show).filter_map(|k| r.rows.get(k * n / show.max(1))).collect()
    };
    if !picks.is_empty() {
        println!("rows read back ({} of {n}):", picks.len());
        let header = format!(
            "  {:<12} {:<2} {:<24} {:<36} {:>9} {:>9} {:>6}  {}",
            "receiver", "UF", "county", "description", "start MHz", "stop MHz", "traces", "time start"
        );
        println!("{header}");
        for s in picks {
            println!(
                "  {:<12} {:<2} {:<7} {:<16} {:<36} {:>9.3} {:>9.3} {:>6}  {}",
                s.receiver,
                opt(&s.state),
                opt(&s.county_code),
                opt(&s.county_name),
                s.description,
                s.freq_start_mhz.unwrap_or(f64::NAN),
                s.freq_stop_mhz.unwrap_or(f64::NAN),
                opt(&s.trace_count),
                opt(&s.time_start)
            );
        }
    }
    println!(
        "shutdown     daemon exited 0 {:.1} s after SIGTERM; stations stopped",
        r.shutdown.as_secs_f64()
    );
}
