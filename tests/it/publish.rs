//! The Parquet publisher, checked by real consumers: the files are read back with pyarrow and
//! DuckDB (installed in a venv by `scripts/pyenv.sh`), for declared types, row counts and real
//! nulls; a publisher killed mid-write leaves the previous file intact and no temporary file
//! that a `*.parquet` glob would pick up.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use appcataloga::config::{DatabaseConfig, DatabaseUrl};
use appcataloga::publish::{self, PublishOptions};
use appcataloga::store::Store;
use secrecy::SecretString;

use crate::support::*;

/// The venv python with pyarrow and duckdb; panics with the script's message when it cannot
/// be set up (a missing consumer must fail the test, not skip it).
fn python() -> PathBuf {
    static PY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PY.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pyenv.sh");
        let out = Command::new("bash").arg(&script).output().expect("running scripts/pyenv.sh");
        assert!(
            out.status.success(),
            "scripts/pyenv.sh failed (python3 with venv and PyPI access are needed to check the Parquet files with pyarrow and DuckDB): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        PathBuf::from(stdout.lines().last().expect("pyenv.sh prints the interpreter").trim())
    })
    .clone()
}

/// Runs a Python check; panics with its output when it fails.
fn py_check(code: &str, args: &[&str]) -> String {
    let out = Command::new(python()).arg("-c").arg(code).args(args).output().expect("python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "python check failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

async fn store_for(db: &TestDb) -> Store {
    let cfg = DatabaseConfig {
        url: Some(DatabaseUrl(SecretString::from(db.db.url()))),
        bpdata_schema: db.bpdata.clone(),
        rfdata_schema: db.rfdata.clone(),
        ..Default::default()
    };
    let store = Store::connect_lazy(&cfg).unwrap();
    store.migrate("test").await.unwrap();
    store
}

const CHECK_CATALOG: &str = r#"
import sys, json, glob, os
import pyarrow.parquet as pq, pyarrow as pa, duckdb
d, expected_rows, expected_null_sites = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
path = os.path.join(d, "spectrum_catalog.parquet")
t = pq.read_table(path)
assert t.num_rows == expected_rows, (t.num_rows, expected_rows)
want = {
    "spectrum_id": pa.int32(), "repository_file": pa.string(), "station_uid": pa.string(),
    "file_size_bytes": pa.int64(), "file_sha256": pa.string(),
    "file_logged_at": pa.timestamp("us", tz="UTC"), "site_id": pa.int32(),
    "latitude": pa.float64(), "longitude": pa.float64(), "altitude_m": pa.float64(),
    "state_code": pa.int32(), "county_code": pa.int32(), "receiver": pa.string(), "antenna": pa.string(),
    "freq_start_mhz": pa.float64(), "freq_stop_mhz": pa.float64(),
    "time_start": pa.timestamp("us"), "time_end": pa.timestamp("us"),
    "trace_count": pa.int32(), "trace_length": pa.int32(), "rbw_hz": pa.float64(), "vbw_hz": pa.float64(),
}
for name, ty in want.items():
    assert t.schema.field(name).type == ty, (name, t.schema.field(name).type, ty)
assert not t.schema.field("spectrum_id").nullable
assert len(t.schema) == 40, len(t.schema)
meta = {k.decode(): v.decode() for k, v in pq.read_metadata(path).metadata.items()}
assert meta["appcataloga.schema_version"] == "1", meta
assert meta["appcataloga.row_count"] == str(expected_rows), meta
assert "appcataloga.generated_at" in meta and "appcataloga.catalog_version" in meta
# Real nulls, never "na".
assert t.column("latitude").null_count == expected_null_sites, (t.column("latitude").null_count, expected_null_sites)
assert t.column("vbw_hz").null_count == expected_rows
for name in ("description", "county_name", "state", "receiver", "antenna", "repository_file"):
    col = t.column(name)
    assert not any(v == "na" for v in col.to_pylist()), name
if expected_rows:
    assert t.column("description").null_count > 0
    assert t.column("receiver").null_count == 0 and t.column("antenna").null_count == 0
    assert t.column("repository_file").null_count == 0 and t.column("station_file").null_count == 0
    ids = t.column("spectrum_id").to_pylist()
    assert ids == sorted(ids) and len(set(ids)) == len(ids), "one row per spectrum, in order"
    r = t.slice(0, 1).to_pylist()[0]
    assert abs(r["freq_start_mhz"] - 70.000123456) < 1e-9, r
    assert r["receiver"].startswith("rfeye") and r["antenna"].startswith("acc_ant"), r
    assert r["state"] == "SP" and r["county_code"] is not None, r
    assert r["station_uid"] == r["receiver"], r
    assert r["time_start"].microsecond == 123456, r
# DuckDB, through a glob as a consumer would point it at the folder.
con = duckdb.connect()
n = con.execute(f"SELECT count(*), count(latitude), count(DISTINCT spectrum_id) FROM read_parquet('{path}')").fetchone()
assert n == (expected_rows, expected_rows - expected_null_sites, expected_rows), n
types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet('{path}'))").fetchall())
assert types["spectrum_id"] == "INTEGER" and types["freq_start_mhz"] == "DOUBLE", types
assert types["time_start"] == "TIMESTAMP" and types["file_logged_at"] == "TIMESTAMP WITH TIME ZONE", types
assert types["file_size_bytes"] == "BIGINT", types
files = sorted(os.path.basename(p) for p in glob.glob(os.path.join(d, "*.parquet")))
print(json.dumps({"files": files, "types": types}))
"#;

const CHECK_TABLES: &str = r#"
import sys, os
import pyarrow.parquet as pq, pyarrow as pa, duckdb
d, expected_rows = sys.argv[1], int(sys.argv[2])
f = pq.read_table(os.path.join(d, "rf_metadata.FACT_SPECTRUM.parquet"))
assert f.num_rows == expected_rows, f.num_rows
assert f.schema.field("NU_FREQ_START").type == pa.decimal128(18, 9), f.schema.field("NU_FREQ_START").type
assert f.schema.field("DT_TIME_START").type == pa.timestamp("us"), f.schema.field("DT_TIME_START").type
assert f.schema.field("ID_SPECTRUM").type == pa.int32() and not f.schema.field("ID_SPECTRUM").nullable
assert f.schema.field("BN_SPECTRUM_KEY").type == pa.binary()
assert f.column("NU_VBW").null_count == expected_rows
if expected_rows:
    from decimal import Decimal
    assert f.column("NU_FREQ_START")[0].as_py() == Decimal("70.000123456"), f.column("NU_FREQ_START")[0]
s = pq.read_table(os.path.join(d, "rf_metadata.DIM_SPECTRUM_SITE.parquet"))
assert s.schema.field("GEO_POINT").type == pa.binary()
if s.num_rows:
    wkb = s.column("GEO_POINT")[0].as_py()
    assert len(wkb) == 21 and wkb[0] == 1 and wkb[1:5] == b"\x01\x00\x00\x00", wkb  # little-endian WKB Point
    assert s.column("NA_SITE").null_count == s.num_rows  # never "na"
st = pq.read_table(os.path.join(d, "rf_metadata.DIM_SITE_STATE.parquet"))
assert st.num_rows >= 27 and st.schema.field("NA_STATE").type == pa.string()
con = duckdb.connect()
n = con.execute(f"SELECT count(*) FROM read_parquet('{d}/rf_metadata.FACT_SPECTRUM.parquet')").fetchone()[0]
assert n == expected_rows, n
t = con.execute(f"SELECT typeof(NU_FREQ_START) FROM read_parquet('{d}/rf_metadata.FACT_SPECTRUM.parquet') LIMIT 1").fetchall()
assert not expected_rows or t[0][0] == "DECIMAL(18,9)", t
print("ok")
"#;

#[test]
fn catalogue_of_100k_spectra_reads_back_in_pyarrow_and_duckdb() {
    let _ = python(); // fail early with a clear message when the consumers are missing
    let db = TestDb::new();
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(store_for(&db));
    let n = 100_000u64;
    let filled = rt.block_on(store.fill_synthetic_catalog(n, "repoSFI", |_| {})).unwrap();
    assert_eq!(filled.spectra, n);
    let null_sites: u64 =
        db.value("SELECT COUNT(*) FROM {RF}.FACT_SPECTRUM WHERE FK_SITE IS NULL").parse().unwrap();
    assert_eq!(null_sites, filled.without_site);
    assert!(null_sites > 0);

    let progress = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut opts = PublishOptions::default();
    {
        let progress = progress.clone();
        opts.progress = Some(std::sync::Arc::new(move |p| {
            if p.file == publish::CATALOG_FILE {
                progress.store(p.rows, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    let report = rt.block_on(publish::publish_once(&store, dir.path(), &opts)).unwrap();
    assert_eq!(report.catalog.rows, n);
    assert_eq!(progress.load(std::sync::atomic::Ordering::Relaxed), n);
    assert!(
        report.tables.iter().any(|t| t.path.ends_with("rf_metadata.FACT_SPECTRUM.parquet") && t.rows == n)
    );

    let meta = dir.path().join("Metadata");
    let out = py_check(CHECK_CATALOG, &[meta.to_str().unwrap(), &n.to_string(), &null_sites.to_string()]);
    assert!(out.contains("rf_metadata.FACT_SPECTRUM.parquet"), "{out}");
    py_check(CHECK_TABLES, &[meta.to_str().unwrap(), &n.to_string()]);
    // No temporary file remains; the footer's version is what the daemon compares against.
    let leftovers: Vec<String> = std::fs::read_dir(&meta)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| publish::is_temp_name(n))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(publish::published_version(dir.path()), Some(report.version.clone()));
    assert_eq!(rt.block_on(store.catalog_version()).unwrap(), report.version);
}

#[test]
fn empty_catalogue_still_writes_a_valid_empty_file() {
    let _ = python();
    let db = TestDb::new();
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(store_for(&db));
    let report = rt.block_on(publish::publish_once(&store, dir.path(), &PublishOptions::default())).unwrap();
    assert_eq!(report.catalog.rows, 0);
    let meta = dir.path().join("Metadata");
    py_check(CHECK_CATALOG, &[meta.to_str().unwrap(), "0", "0"]);
    py_check(CHECK_TABLES, &[meta.to_str().unwrap(), "0"]);
}

fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn killed_publisher_leaves_the_previous_file_intact() {
    let _ = python();
    let db = TestDb::new();
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(store_for(&db));
    rt.block_on(store.fill_synthetic_catalog(20_000, "repoSFI", |_| {})).unwrap();
    let first = rt.block_on(publish::publish_once(&store, dir.path(), &PublishOptions::default())).unwrap();
    assert_eq!(first.catalog.rows, 20_000);
    let meta = dir.path().join("Metadata");
    let published = meta.join(publish::CATALOG_FILE);
    let before = sha256_file(&published);
    // The catalogue grows, then a publisher is killed while it writes.
    rt.block_on(store.fill_synthetic_catalog(60_000, "repoSFI", |_| {})).unwrap();

    let mut child = Command::new(binary())
        .arg("publish")
        .env("APPCATALOGA_CONFIG", empty_config(dir.path()))
        .env("APPCATALOGA_REPOSITORY__ROOT", dir.path())
        .envs(db.env())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let temp = loop {
        let found = std::fs::read_dir(&meta)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| publish::is_temp_name(n));
        if let Some(name) = found {
            break name;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the child publisher ended ({status}) before a temporary file was seen");
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no temporary file appeared");
        std::thread::sleep(Duration::from_millis(2));
    };
    std::thread::sleep(Duration::from_millis(50)); // let it write a little
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();

    // The published file is byte-for-byte the previous one and still reads; the killed
    // publisher's temporary file is there but hidden from `*.parquet` globs.
    assert_eq!(sha256_file(&published), before, "the published file changed");
    assert!(meta.join(&temp).exists(), "SIGKILL cannot clean up: {temp} should still be there");
    py_check(
        r#"
import sys, glob, os, pyarrow.parquet as pq, duckdb
d, temp = sys.argv[1], sys.argv[2]
assert os.path.exists(os.path.join(d, temp))
assert pq.read_metadata(os.path.join(d, "spectrum_catalog.parquet")).num_rows == 20000
names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(d, "*.parquet")))
assert temp not in names and all(not n.startswith(".") for n in names), names
n = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{d}/spectrum_catalog*.parquet')").fetchone()[0]
assert n == 20000, n
"#,
        &[meta.to_str().unwrap(), &temp],
    );

    // The next publication removes the stale temporary file and publishes everything.
    let second = rt.block_on(publish::publish_once(&store, dir.path(), &PublishOptions::default())).unwrap();
    assert_eq!(second.catalog.rows, 80_000);
    assert!(second.stale_temps_removed >= 1, "{second:?}");
    assert!(!meta.join(&temp).exists(), "stale {temp} still there");
    py_check(
        "import sys, pyarrow.parquet as pq; assert pq.read_metadata(sys.argv[1]).num_rows == 80000",
        &[published.to_str().unwrap()],
    );
}

#[test]
fn a_second_publisher_is_refused_while_one_holds_the_lock() {
    let db = TestDb::new();
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(store_for(&db));
    let meta = dir.path().join("Metadata");
    std::fs::create_dir_all(&meta).unwrap();
    let lock = std::fs::File::create(meta.join(publish::LOCK_FILE)).unwrap();
    lock.lock().unwrap();
    let err = rt.block_on(publish::publish_once(&store, dir.path(), &PublishOptions::default())).unwrap_err();
    assert!(matches!(err, publish::PublishError::Busy { .. }), "{err}");
    assert!(err.to_string().contains(".publish.lock"), "{err}");
    lock.unlock().unwrap();
    rt.block_on(publish::publish_once(&store, dir.path(), &PublishOptions::default())).unwrap();
}

/// `cargo test --release --test it -- --ignored --nocapture publish::bench_publish_1m`: the
/// publisher benchmark through the library until `appcataloga bench publish` is wired. Uses
/// `BENCH_DATABASE_URL` (a server of your own) or the shared test server.
#[test]
#[ignore = "benchmark"]
fn bench_publish_1m() {
    let rows: u64 = std::env::var("BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let (url, rf, bp) = match std::env::var("BENCH_DATABASE_URL") {
        Ok(url) => (
            url,
            std::env::var("BENCH_RFDATA_SCHEMA").unwrap_or_else(|_| "BENCH_RFDATA".into()),
            std::env::var("BENCH_BPDATA_SCHEMA").unwrap_or_else(|_| "BENCH_BPDATA".into()),
        ),
        Err(_) => {
            let db = Box::leak(Box::new(TestDb::new()));
            (db.db.url(), db.rfdata.clone(), db.bpdata.clone())
        }
    };
    let args = appcataloga::bench_publish::PublishBenchArgs {
        url,
        bpdata_schema: bp,
        rfdata_schema: rf,
        rows,
        root: None,
        no_tables: std::env::var("BENCH_NO_TABLES").is_ok(),
        compression: "zstd".into(),
    };
    runtime().block_on(appcataloga::bench_publish::run(args)).unwrap();
}

#[test]
fn daemon_stage_publishes_after_the_debounce_and_again_after_a_change() {
    let db = TestDb::new();
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(store_for(&db));
    rt.block_on(store.fill_synthetic_catalog(1_000, "repoSFI", |_| {})).unwrap();
    let config = appcataloga::config::PublishConfig {
        interval: Duration::from_millis(200),
        debounce: Duration::from_millis(300),
        table_dumps: false,
        ..Default::default()
    };
    let cancel = tokio_util::sync::CancellationToken::new();
    let stage = rt.spawn(publish::run(store.clone(), dir.path().to_path_buf(), config, cancel.clone()));
    let rows = |root: &Path| publish::published_version(root).map(|v| v.spectra);
    let wait_for = |want: i64| {
        let start = Instant::now();
        while rows(dir.path()) != Some(want) {
            assert!(start.elapsed() < Duration::from_secs(30), "no publication of {want} rows");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for(1_000);
    rt.block_on(store.fill_synthetic_catalog(500, "repoSFI", |_| {})).unwrap();
    wait_for(1_500);
    // Cancellation stops the stage promptly.
    cancel.cancel();
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), stage).await }).unwrap().unwrap();
}
