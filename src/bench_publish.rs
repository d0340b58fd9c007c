//! `appcataloga bench publish`: fills a database with N synthetic catalogue rows (unless it
//! already holds them) and times one Parquet publication, printing seconds and the peak RSS of
//! this process (VmHWM). A benchmark, not a test: target ≤ 15 s and ≤ 200 MiB for 1,000,000
//! rows. Use a release build on an idle machine for figures worth quoting.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use secrecy::SecretString;

use crate::config::{DatabaseConfig, DatabaseUrl};
use crate::publish::{PublishCompression, PublishOptions, publish_once};
use crate::store::Store;

/// Options of the publisher benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct PublishBenchArgs {
    /// Database URL (mysql://user:password@host:port/).
    #[arg(long, env = "APPCATALOGA_DATABASE__URL", hide_env_values = true)]
    pub url: String,
    /// Queue schema (migrations record themselves there).
    #[arg(long, env = "APPCATALOGA_DATABASE__BPDATA_SCHEMA", default_value = "BENCH_BPDATA")]
    pub bpdata_schema: String,
    /// Catalogue schema to fill and publish.
    #[arg(long, env = "APPCATALOGA_DATABASE__RFDATA_SCHEMA", default_value = "BENCH_RFDATA")]
    pub rfdata_schema: String,
    /// Catalogue rows (spectra) wanted; only the missing ones are inserted.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
    /// Repository root to publish into (default: a temporary folder, removed afterwards).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Skip the per-table files (`rf_metadata.<TABLE>.parquet`).
    #[arg(long)]
    pub no_tables: bool,
    /// Compression: zstd, snappy or none.
    #[arg(long, default_value = "zstd")]
    pub compression: String,
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse().ok()
}

/// Runs the benchmark and prints the figures.
///
/// # Errors
/// Database or file-system failures, named.
pub async fn run(args: PublishBenchArgs) -> anyhow::Result<()> {
    let cfg = DatabaseConfig {
        url: Some(DatabaseUrl(SecretString::from(args.url.clone()))),
        bpdata_schema: args.bpdata_schema.clone(),
        rfdata_schema: args.rfdata_schema.clone(),
        ..Default::default()
    };
    anyhow::ensure!(
        crate::config::is_sql_identifier(&cfg.bpdata_schema)
            && crate::config::is_sql_identifier(&cfg.rfdata_schema),
        "schema names must be plain identifiers"
    );
    let store = Store::connect_lazy(&cfg)?;
    store.migrate("bench-publish").await.context("applying migrations")?;
    let compression = match args.compression.as_str() {
        "zstd" => PublishCompression::Zstd,
        "snappy" => PublishCompression::Snappy,
        "none" => PublishCompression::None,
        other => anyhow::bail!("unknown compression {other:?} (zstd, snappy, none)"),
    };
    let opts = PublishOptions { table_dumps: !args.no_tables, compression, ..Default::default() };

    let have = store.catalog_version().await?.spectra.max(0) as u64;
    if have < args.rows {
        let missing = args.rows - have;
        let t = Instant::now();
        eprintln!("filling {missing} synthetic spectra into {} ...", args.rfdata_schema);
        store
            .fill_synthetic_catalog(missing, &opts.repository_volume, |done| eprint!("\r  {done}/{missing}"))
            .await
            .context("filling the synthetic catalogue")?;
        eprintln!("\r  filled in {:.1} s", t.elapsed().as_secs_f64());
    }
    let spectra = store.catalog_version().await?.spectra;

    let tmp;
    let root = match &args.root {
        Some(r) => r.clone(),
        None => {
            tmp = tempfile_dir()?;
            tmp.clone()
        }
    };
    let rss_before = status_kib("VmHWM:").unwrap_or(0);
    let last = Arc::new(AtomicU64::new(0));
    let mut opts = opts;
    {
        let last = Arc::clone(&last);
        opts.progress = Some(Arc::new(move |p| last.store(p.rows, Ordering::Relaxed)));
    }
    let t = Instant::now();
    let report = publish_once(&store, &root, &opts).await.context("publishing")?;
    let secs = t.elapsed().as_secs_f64();
    let hwm = status_kib("VmHWM:").unwrap_or(0);
    println!(
        "publish benchmark ({} build): {spectra} catalogue rows, tables {}, compression {}",
        if cfg!(debug_assertions) { "debug" } else { "release" },
        if opts.table_dumps { "on" } else { "off" },
        args.compression
    );
    println!(
        "  spectrum_catalog.parquet  {} rows, {:.1} MiB",
        report.catalog.rows,
        report.catalog.bytes as f64 / 1_048_576.0
    );
    let table_rows: u64 = report.tables.iter().map(|t| t.rows).sum();
    let table_bytes: u64 = report.tables.iter().map(|t| t.bytes).sum();
    println!(
        "  rf_metadata.*.parquet     {} files, {table_rows} rows, {:.1} MiB",
        report.tables.len(),
        table_bytes as f64 / 1_048_576.0
    );
    println!("  seconds                   {secs:.2}");
    println!(
        "  peak RSS (VmHWM)          {:.1} MiB (before publishing {:.1} MiB)",
        hwm as f64 / 1024.0,
        rss_before as f64 / 1024.0
    );
    if args.root.is_none() {
        let _ = std::fs::remove_dir_all(&root);
    }
    store.close().await;
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("appcataloga-bench-publish-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
