//! `appcataloga bench pipeline`: backup then processing of many stations' files, end to end
//! (a benchmark, not a test).
//!
//! Stands up N simulated stations (private `sshd`, station tree, indexer), each with F realistic
//! CRFS files of about S bytes, queues every station as Zabbix would, runs the real backup
//! engine against a real MariaDB until every station is done, then the real processing workers
//! until every copy is catalogued and filed. Prints files/s and MB/s for each stage and this
//! process's peak RSS (it holds both stages). Needs root (station users) and a MariaDB URL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backup::engine::{self, BackupContext};
use crate::config::{BackupConfig, DatabaseConfig, DatabaseUrl, ProcessingConfig};
use crate::crfs::generator;
use crate::process::{self, ProcessContext};
use crate::secret::StationKey;
use crate::station::{Station, StationSpec};
use crate::store::Store;
use crate::store::gateway::StationAccess;

/// Options of the pipeline benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct PipelineBenchArgs {
    /// MariaDB server URL (schemas `bench_BPDATA`/`bench_RFDATA` are created and dropped).
    #[arg(long, env = "APPCATALOGA_DATABASE__URL")]
    pub db_url: String,
    /// Simulated stations.
    #[arg(long, default_value_t = 8)]
    pub stations: usize,
    /// Files per station.
    #[arg(long, default_value_t = 250)]
    pub files: usize,
    /// Approximate size of each file, bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub file_size: u64,
    /// Backup sessions at once.
    #[arg(long, default_value_t = 16)]
    pub parallel_hosts: usize,
    /// Repository directory (default: a temporary one, removed at the end).
    #[arg(long)]
    pub repo: Option<std::path::PathBuf>,
}

fn vm_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Runs the benchmark and prints the figures.
///
/// # Errors
/// Setup failures (stations, database).
pub async fn run(args: PipelineBenchArgs) -> anyhow::Result<()> {
    let tmp = std::env::temp_dir().join(format!("acat-bench-pipeline-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).context("temporary directory")?;
    let repo = args.repo.clone().unwrap_or_else(|| tmp.join("repo"));
    let db = DatabaseConfig {
        url: Some(DatabaseUrl(SecretString::from(args.db_url.clone()))),
        bpdata_schema: "bench_BPDATA".into(),
        rfdata_schema: "bench_RFDATA".into(),
        max_connections: 32,
        ..DatabaseConfig::default()
    };
    let store = Store::connect_lazy(&db)?;
    store.drop_scratch_schemas().await?;
    store.migrate("bench").await?;
    let key = Arc::new(StationKey::from_bytes(&[42u8; 32]));

    println!(
        "pipeline benchmark: {} stations × {} files × ~{} KiB",
        args.stations,
        args.files,
        args.file_size / 1024
    );
    let setup = Instant::now();
    let mut stations = Vec::new();
    let mut total_bytes = 0u64;
    for s in 0..args.stations {
        let st = Station::start(StationSpec::new(format!("bench{s}")))?;
        for f in 0..args.files {
            let mut spec = generator::realistic_v5(args.file_size, (s * 100_000 + f) as u64);
            spec.hostname = format!("rfeye{:06}", 3000 + s);
            let bytes = generator::generate(&spec)?;
            total_bytes += bytes.len() as u64;
            st.add_file(&format!("rfeye{:06}_{f:05}.bin", 3000 + s), &bytes)?;
        }
        st.run_indexer()?;
        stations.push(st);
    }
    println!(
        "  setup            {:.1} s ({:.0} MB on the stations)",
        setup.elapsed().as_secs_f64(),
        total_bytes as f64 / 1e6
    );
    for (i, st) in stations.iter().enumerate() {
        let access = StationAccess {
            host_id: 100 + i as i32,
            host_uid: format!("RFEye{:06}", 3000 + i),
            address: "127.0.0.1".into(),
            port: st.port(),
            user: st.user().into(),
            password: Some(SecretString::from(st.password().to_string())),
        };
        store.request_backup(&access, Some(&key), "bench").await?;
    }

    let rss_before = vm_kib("VmRSS:");
    let instance: Arc<str> = crate::instance::InstanceId::current().to_string().into();
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let backup = BackupContext {
        store: store.clone(),
        config: Arc::new(BackupConfig {
            max_parallel_hosts: args.parallel_hosts,
            poll_interval: Duration::from_millis(50),
            ..BackupConfig::default()
        }),
        repo_root: repo.clone(),
        key: Some(Arc::clone(&key)),
        instance: Arc::clone(&instance),
        metrics: Arc::new(crate::metrics::Metrics::new()),
    };
    let started = Instant::now();
    tracker.spawn(engine::run(backup, cancel.child_token(), tracker.clone()));
    let n_files = (args.stations * args.files) as i64;
    let mut peak = 0;
    loop {
        peak = peak.max(vm_kib("VmRSS:"));
        let (copied, busy) = store.bench_backup_progress().await?;
        if copied >= n_files && busy == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let backup_secs = started.elapsed().as_secs_f64();
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
    println!(
        "  backup           {n_files} files in {backup_secs:.1} s: {:.0} files/s, {:.0} MB/s, peak RSS {:.0} MiB (before {:.0} MiB)",
        n_files as f64 / backup_secs,
        total_bytes as f64 / 1e6 / backup_secs,
        peak as f64 / 1024.0,
        rss_before as f64 / 1024.0
    );

    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let processing = ProcessContext {
        store: store.clone(),
        config: Arc::new(ProcessingConfig {
            poll_interval: Duration::from_millis(50),
            ..ProcessingConfig::default()
        }),
        repo_root: repo.clone(),
        instance,
        metrics: Arc::new(crate::metrics::Metrics::new()),
    };
    let started = Instant::now();
    tracker.spawn(process::run(processing, cancel.child_token(), tracker.clone()));
    loop {
        peak = peak.max(vm_kib("VmRSS:"));
        if store.bench_processed().await? >= n_files {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
    println!(
        "  processing       {n_files} files in {secs:.1} s: {:.0} files/s, {:.0} MB/s (parse + catalogue + move)",
        n_files as f64 / secs,
        total_bytes as f64 / 1e6 / secs
    );
    println!(
        "  peak RSS         {:.0} MiB (VmHWM {:.0} MiB)",
        peak as f64 / 1024.0,
        vm_kib("VmHWM:") as f64 / 1024.0
    );
    drop(stations);
    store.drop_scratch_schemas().await?;
    store.close().await;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}
