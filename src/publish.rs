//! The Parquet publisher: writes the catalogue to `<repository.root>/Metadata/` for readers
//! that never touch MariaDB (pyarrow, pandas, DuckDB, MATLAB, Power BI).
//!
//! It replaces `appCataloga_pub_metadata.py`, whose defects it avoids: files were overwritten in
//! place (readers saw partial or mixed files), NULL became the string `"na"`, types were
//! inferred per run, an empty catalogue crashed it and any error stopped the service.
//!
//! # Files
//!
//! * `spectrum_catalog.parquet`: the flat catalogue, one row per spectrum (`FACT_SPECTRUM`
//!   row), specified column by column below. This is what consumers should read.
//! * `rf_metadata.<TABLE>.parquet`: one file per base table of RFDATA, as the original wrote
//!   them (column names as in the database), but typed from `information_schema` (see
//!   [`crate::store::publish::ColumnKind`]): integers → int32/int64, DECIMAL(p,s) →
//!   decimal128(p,s) (exact, as pandas produced; p > 38 → string), FLOAT/DOUBLE →
//!   float32/float64, DATETIME → timestamp\[µs\] without zone, TIMESTAMP → timestamp\[µs, UTC\],
//!   DATE → date32, character types → string, BLOB/BINARY → binary, geometry → binary holding
//!   standard WKB (`ST_AsBinary`, not MariaDB's internal SRID-prefixed bytes).
//!
//! NULL is always a real Parquet null. Every file carries key-value metadata in its footer:
//! `appcataloga.schema` (`spectrum_catalog` or `rf_metadata.<TABLE>`),
//! `appcataloga.schema_version` ([`SCHEMA_VERSION`]), `appcataloga.generated_at` (RFC 3339,
//! UTC; identical in every file of one publication), `appcataloga.row_count`,
//! `appcataloga.catalog_version` (JSON of [`CatalogVersion`]), plus the Arrow schema (so field
//! descriptions travel in the field metadata under `description`).
//!
//! # `spectrum_catalog.parquet`, schema version 1
//!
//! | column | type | null | meaning |
//! |---|---|---|---|
//! | `spectrum_id` | int32 | no | `FACT_SPECTRUM.ID_SPECTRUM` |
//! | `repository_file` | string | yes | file name of the copy in the central repository |
//! | `repository_path` | string | yes | its folder in the repository (`/mnt/reposfi/<YYYY>/<UF>/<county>/<site>`) |
//! | `station_uid` | string | yes | host uid of the station the file came from (volume of the station copy) |
//! | `station_file` | string | yes | file name on the station |
//! | `station_path` | string | yes | folder on the station |
//! | `file_size_bytes` | int64 | yes | size of the file, bytes (repository copy, else station copy) |
//! | `file_sha256` | string | yes | SHA-256 of the file, lower-case hex (repository copy, else station copy) |
//! | `file_logged_at` | timestamp\[µs, UTC\] | yes | when the repository copy was catalogued |
//! | `site_id` | int32 | yes | `DIM_SPECTRUM_SITE.ID_SITE`; null when the file had no GPS fix |
//! | `latitude` | float64 | yes | site latitude, WGS84 degrees |
//! | `longitude` | float64 | yes | site longitude, WGS84 degrees |
//! | `altitude_m` | float64 | yes | site altitude, metres |
//! | `state_code` | int32 | yes | IBGE code of the state (UF) |
//! | `state` | string | yes | two-letter state abbreviation |
//! | `state_name` | string | yes | state name |
//! | `county_code` | int32 | yes | IBGE 7-digit municipality code |
//! | `county_name` | string | yes | municipality name |
//! | `district_name` | string | yes | district name |
//! | `receiver` | string | yes | receiver id (e.g. `rfeye002080`) |
//! | `receiver_type` | string | yes | receiver model (equipment type name) |
//! | `antenna` | string | yes | antenna id (e.g. `acc_ant[0]_002080`) |
//! | `procedure` | string | yes | logger method (script name) |
//! | `description` | string | yes | free text set in the logger |
//! | `unit` | string | yes | measurement unit (e.g. `dBm`) |
//! | `trace_type` | string | yes | trace processing (`peak`, `average`, …) |
//! | `detector` | string | yes | detector (e.g. `RMS`) |
//! | `freq_start_mhz` | float64 | yes | start frequency, MHz |
//! | `freq_stop_mhz` | float64 | yes | stop frequency, MHz |
//! | `time_start` | timestamp\[µs\] | yes | first sweep, logger clock (no zone) |
//! | `time_end` | timestamp\[µs\] | yes | last sweep, logger clock (no zone) |
//! | `sample_duration_s` | float64 | yes | sample duration, seconds |
//! | `trace_count` | int32 | yes | number of sweeps |
//! | `trace_length` | int32 | yes | points per sweep |
//! | `rbw_hz` | float64 | yes | resolution bandwidth, Hz |
//! | `vbw_hz` | float64 | yes | video bandwidth, Hz |
//! | `att_gain_db` | float64 | yes | attenuation/gain, dB |
//! | `thread_id` | int32 | yes | logger thread of the stream |
//! | `block_type` | int32 | yes | CRFS block type (63–69) |
//! | `antenna_input` | int32 | yes | antenna input (0 auto, 1–4) |
//!
//! Rows are in `spectrum_id` order. How the copies and equipment are picked (one row per
//! spectrum, no fan-out) is described in [`crate::store::publish`]. Compatible evolution
//! (appending columns) keeps the version; renaming, removing or retyping a column bumps it.
//!
//! # Writing
//!
//! Rows are streamed from MariaDB, gathered into Arrow batches of `batch_rows`, and handed
//! through a bounded channel (2 batches) to a blocking thread that encodes Parquet (zstd by
//! default, row groups of `row_group_rows`), so memory stays bounded whatever the catalogue
//! size. Each file is written to a dot-named temporary file in `Metadata/`
//! (`.<name>.tmp-<pid>`, which `*.parquet` globs never match), fsynced; once every file of the
//! publication is complete they are renamed over the published ones in a burst and the folder
//! is fsynced. A reader therefore sees either the previous or the new version of each file,
//! never a partial one. Files are replaced one by one, so a reader that opens several files
//! during the burst can see two generations: compare `appcataloga.generated_at` when that
//! matters. A lock file (`Metadata/.publish.lock`, `flock`) keeps two publishers (the daemon
//! and `appcataloga publish`) apart; under that lock every temporary file left by a killed
//! publisher is removed.

use crate::config::PublishConfig;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::builder::{
    BinaryBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder, Int32Builder,
    Int64Builder, StringBuilder, TimestampMicrosecondBuilder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{Datelike, NaiveDateTime};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::store::publish::{
    CatalogRow, CatalogSink, CatalogVersion, ColumnKind, RowSink, TableSink, TableSpec, Value,
};
use crate::store::{Store, StoreError};

/// Version of the `spectrum_catalog.parquet` schema (footer key `appcataloga.schema_version`).
pub const SCHEMA_VERSION: &str = "1";
/// Folder under the repository root.
pub const METADATA_DIR: &str = "Metadata";
/// The flat catalogue's file name.
pub const CATALOG_FILE: &str = "spectrum_catalog.parquet";
/// Prefix of the per-table files (`rf_metadata.<TABLE>.parquet`).
pub const TABLE_FILE_PREFIX: &str = "rf_metadata.";
/// Lock file serialising publishers.
pub const LOCK_FILE: &str = ".publish.lock";
/// Marker in temporary file names: `.<final name>.tmp-<pid>`.
pub const TEMP_MARKER: &str = ".tmp-";

/// Footer keys.
pub mod keys {
    /// `spectrum_catalog` or `rf_metadata.<TABLE>`.
    pub const SCHEMA: &str = "appcataloga.schema";
    /// [`super::SCHEMA_VERSION`].
    pub const SCHEMA_VERSION: &str = "appcataloga.schema_version";
    /// RFC 3339 UTC, identical across one publication.
    pub const GENERATED_AT: &str = "appcataloga.generated_at";
    /// Rows in the file.
    pub const ROW_COUNT: &str = "appcataloga.row_count";
    /// JSON of the catalogue version read before the publication.
    pub const CATALOG_VERSION: &str = "appcataloga.catalog_version";
}

/// One column of the flat catalogue.
#[derive(Debug, Clone, Copy)]
pub struct CatalogColumn {
    /// Parquet column name.
    pub name: &'static str,
    /// Type.
    pub kind: ColumnKind,
    /// May hold nulls.
    pub nullable: bool,
    /// Meaning and unit (stored as field metadata `description`).
    pub description: &'static str,
}

const fn col(name: &'static str, kind: ColumnKind, description: &'static str) -> CatalogColumn {
    CatalogColumn { name, kind, nullable: true, description }
}

/// The flat catalogue's columns, in file order (the table in the module doc).
pub const CATALOG_COLUMNS: [CatalogColumn; 40] = {
    use ColumnKind::*;
    [
        CatalogColumn {
            name: "spectrum_id",
            kind: Int32,
            nullable: false,
            description: "FACT_SPECTRUM.ID_SPECTRUM",
        },
        col("repository_file", Utf8, "file name of the copy in the central repository"),
        col("repository_path", Utf8, "folder of the copy in the central repository"),
        col("station_uid", Utf8, "host uid of the station the file came from"),
        col("station_file", Utf8, "file name on the station"),
        col("station_path", Utf8, "folder on the station"),
        col("file_size_bytes", Int64, "file size, bytes"),
        col("file_sha256", Utf8, "SHA-256 of the file, lower-case hex"),
        col("file_logged_at", TimestampUtc, "when the repository copy was catalogued (UTC)"),
        col("site_id", Int32, "DIM_SPECTRUM_SITE.ID_SITE; null without GPS fix"),
        col("latitude", Float64, "site latitude, WGS84 degrees"),
        col("longitude", Float64, "site longitude, WGS84 degrees"),
        col("altitude_m", Float64, "site altitude, metres"),
        col("state_code", Int32, "IBGE state (UF) code"),
        col("state", Utf8, "two-letter state abbreviation"),
        col("state_name", Utf8, "state name"),
        col("county_code", Int32, "IBGE 7-digit municipality code"),
        col("county_name", Utf8, "municipality name"),
        col("district_name", Utf8, "district name"),
        col("receiver", Utf8, "receiver id"),
        col("receiver_type", Utf8, "receiver model"),
        col("antenna", Utf8, "antenna id"),
        col("procedure", Utf8, "logger method"),
        col("description", Utf8, "free text set in the logger"),
        col("unit", Utf8, "measurement unit"),
        col("trace_type", Utf8, "trace processing (peak, average, ...)"),
        col("detector", Utf8, "detector"),
        col("freq_start_mhz", Float64, "start frequency, MHz"),
        col("freq_stop_mhz", Float64, "stop frequency, MHz"),
        col("time_start", DateTime, "first sweep, logger clock (no zone)"),
        col("time_end", DateTime, "last sweep, logger clock (no zone)"),
        col("sample_duration_s", Float64, "sample duration, seconds"),
        col("trace_count", Int32, "number of sweeps"),
        col("trace_length", Int32, "points per sweep"),
        col("rbw_hz", Float64, "resolution bandwidth, Hz"),
        col("vbw_hz", Float64, "video bandwidth, Hz"),
        col("att_gain_db", Float64, "attenuation/gain, dB"),
        col("thread_id", Int32, "logger thread of the stream"),
        col("block_type", Int32, "CRFS block type (63-69)"),
        col("antenna_input", Int32, "antenna input (0 auto, 1-4)"),
    ]
};

fn int(v: Option<i32>) -> Value<'static> {
    v.map_or(Value::Null, |x| Value::Int(i64::from(x)))
}
fn float(v: Option<f64>) -> Value<'static> {
    v.map_or(Value::Null, Value::Float)
}
fn text(v: Option<&str>) -> Value<'_> {
    v.map_or(Value::Null, Value::Text)
}
fn time(v: Option<NaiveDateTime>) -> Value<'static> {
    v.map_or(Value::Null, Value::DateTime)
}

/// A catalogue row as values in [`CATALOG_COLUMNS`] order.
fn catalog_values<'a>(r: &CatalogRow<'a>) -> [Value<'a>; 40] {
    let repo = r.repository.as_ref();
    let station = r.station.as_ref();
    let either = repo.or(station);
    [
        Value::Int(i64::from(r.spectrum_id)),
        text(repo.and_then(|f| f.name)),
        text(repo.and_then(|f| f.path)),
        text(station.and_then(|f| f.volume)),
        text(station.and_then(|f| f.name)),
        text(station.and_then(|f| f.path)),
        repo.and_then(|f| f.size_bytes)
            .or(station.and_then(|f| f.size_bytes))
            .map_or(Value::Null, Value::Int),
        text(repo.and_then(|f| f.sha256).or(station.and_then(|f| f.sha256))),
        time(repo.and_then(|f| f.logged_at).or(either.and_then(|f| f.logged_at))),
        int(r.site_id),
        float(r.latitude),
        float(r.longitude),
        float(r.altitude_m),
        int(r.state_code),
        text(r.state_abbrev),
        text(r.state_name),
        int(r.county_code),
        text(r.county_name),
        text(r.district_name),
        text(r.receiver.map(|e| e.name.as_str())),
        text(r.receiver.and_then(|e| e.type_name.as_deref())),
        text(r.antenna.map(|e| e.name.as_str())),
        text(r.procedure),
        text(r.description),
        text(r.unit),
        text(r.trace_type),
        text(r.detector),
        float(r.freq_start_mhz),
        float(r.freq_stop_mhz),
        time(r.time_start),
        time(r.time_end),
        float(r.sample_duration_s),
        int(r.trace_count),
        int(r.trace_length),
        float(r.rbw_hz),
        float(r.vbw_hz),
        float(r.att_gain_db),
        int(r.thread_id),
        int(r.block_type),
        int(r.antenna_input),
    ]
}

/// Arrow type of a column kind.
pub fn arrow_type(kind: ColumnKind) -> DataType {
    match kind {
        ColumnKind::Int32 => DataType::Int32,
        ColumnKind::Int64 => DataType::Int64,
        ColumnKind::UInt64 => DataType::UInt64,
        ColumnKind::Float32 => DataType::Float32,
        ColumnKind::Float64 => DataType::Float64,
        ColumnKind::Decimal { precision, scale } => DataType::Decimal128(precision, scale),
        ColumnKind::Utf8 => DataType::Utf8,
        ColumnKind::Binary => DataType::Binary,
        ColumnKind::Date => DataType::Date32,
        ColumnKind::DateTime => DataType::Timestamp(TimeUnit::Microsecond, None),
        ColumnKind::TimestampUtc => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    }
}

/// The explicit Arrow schema of `spectrum_catalog.parquet`.
pub fn catalog_schema() -> SchemaRef {
    let fields: Vec<Field> = CATALOG_COLUMNS
        .iter()
        .map(|c| {
            Field::new(c.name, arrow_type(c.kind), c.nullable)
                .with_metadata(HashMap::from([("description".to_string(), c.description.to_string())]))
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// The Arrow schema of `rf_metadata.<TABLE>.parquet`.
pub fn table_schema(table: &TableSpec) -> SchemaRef {
    let fields: Vec<Field> = table
        .columns
        .iter()
        .map(|c| {
            Field::new(c.name.clone(), arrow_type(c.kind), c.nullable)
                .with_metadata(HashMap::from([("sql_type".to_string(), c.sql_type.clone())]))
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// Parquet compression codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PublishCompression {
    /// zstd level 3: small files, fast enough (the default).
    #[default]
    Zstd,
    /// Snappy: faster, larger (what pandas wrote).
    Snappy,
    /// No compression.
    None,
}

/// Progress of a publication, for progress bars.
#[derive(Debug, Clone)]
pub struct PublishProgress {
    /// File being written (final name).
    pub file: String,
    /// Rows written to it so far.
    pub rows: u64,
}

/// Progress callback.
pub type ProgressFn = Arc<dyn Fn(&PublishProgress) + Send + Sync>;

/// Options of one publication.
#[derive(Clone)]
pub struct PublishOptions {
    /// `NA_VOLUME` of repository copies.
    pub repository_volume: String,
    /// Also write the per-table files.
    pub table_dumps: bool,
    /// Compression codec.
    pub compression: PublishCompression,
    /// Rows per row group (at least 1).
    pub row_group_rows: usize,
    /// Rows per batch (at least 1).
    pub batch_rows: usize,
    /// Called after every batch.
    pub progress: Option<ProgressFn>,
    /// Cancels the publication (temporary files are removed, published files untouched).
    pub cancel: CancellationToken,
}

impl std::fmt::Debug for PublishOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishOptions")
            .field("repository_volume", &self.repository_volume)
            .field("table_dumps", &self.table_dumps)
            .field("compression", &self.compression)
            .field("row_group_rows", &self.row_group_rows)
            .field("batch_rows", &self.batch_rows)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl Default for PublishOptions {
    fn default() -> Self {
        PublishOptions::from(&PublishConfig::default())
    }
}

impl From<&PublishConfig> for PublishOptions {
    fn from(c: &PublishConfig) -> Self {
        PublishOptions {
            repository_volume: c.repository_volume.clone(),
            table_dumps: c.table_dumps,
            compression: c.compression,
            row_group_rows: c.row_group_rows,
            batch_rows: c.batch_rows,
            progress: None,
            cancel: CancellationToken::new(),
        }
    }
}

/// One published file.
#[derive(Debug, Clone)]
pub struct FileReport {
    /// Final path.
    pub path: PathBuf,
    /// Rows.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
}

/// What [`publish_once`] did.
#[derive(Debug, Clone)]
pub struct PublishReport {
    /// The catalogue version read before the publication.
    pub version: CatalogVersion,
    /// `spectrum_catalog.parquet`.
    pub catalog: FileReport,
    /// `rf_metadata.<TABLE>.parquet` files, in table-name order.
    pub tables: Vec<FileReport>,
    /// Temporary files of killed publishers removed first.
    pub stale_temps_removed: usize,
    /// Wall time.
    pub elapsed: Duration,
}

/// Why a publication failed. The published files are untouched in every case.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Reading the catalogue failed.
    #[error(
        "publishing the catalogue: {0}; the published files are untouched, the next round retries (check that MariaDB is up)"
    )]
    Database(#[from] StoreError),
    /// A file-system operation failed.
    #[error(
        "publishing the catalogue: cannot {action} {}: {source}; check that the repository (repository.root) is mounted and writable", path.display()
    )]
    Io {
        /// What we were doing.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Parquet encoding failed.
    #[error("publishing the catalogue: writing Parquet to {}: {source}", path.display())]
    Parquet {
        /// Temporary file being written.
        path: PathBuf,
        /// The encoder error.
        #[source]
        source: ParquetError,
    },
    /// A value did not fit its declared column type (a schema/database mismatch: report it).
    #[error("publishing the catalogue: building {file}: {reason}")]
    Arrow {
        /// File being built.
        file: String,
        /// What went wrong.
        reason: String,
    },
    /// Another publisher holds the lock.
    #[error(
        "publishing the catalogue: another publisher is writing in {} (it holds {}); retry when it has finished",
        dir.display(), lock.display()
    )]
    Busy {
        /// The Metadata folder.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// Cancelled (shutdown).
    #[error("publishing the catalogue: cancelled; the published files are untouched")]
    Cancelled,
    /// The writer thread died.
    #[error("publishing the catalogue: the Parquet writer thread for {file} failed: {reason}")]
    Writer {
        /// File being written.
        file: String,
        /// Panic or join error.
        reason: String,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> PublishError + 'a {
    move |source| PublishError::Io { action, path: path.to_path_buf(), source }
}

// ---------------------------------------------------------------------------------------------
// Arrow batch building

enum ColumnBuilder {
    I32(Int32Builder),
    I64(Int64Builder),
    U64(UInt64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Dec(Decimal128Builder, i8),
    Str(StringBuilder),
    Bin(BinaryBuilder),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder),
}

/// Days from 0001-01-01 (CE day 1) to 1970-01-01.
const UNIX_EPOCH_CE_DAYS: i32 = 719_163;

/// Exact DECIMAL text (`-123.450`) → unscaled integer at `scale`.
pub fn parse_decimal(text: &str, scale: i8) -> Option<i128> {
    let t = text.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int_part, frac_part) = t.split_once('.').unwrap_or((t, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let scale = usize::try_from(scale).ok()?;
    let mut v: i128 = 0;
    for b in int_part.bytes() {
        v = v.checked_mul(10)?.checked_add(i128::from(char::from(b).to_digit(10)?))?;
    }
    let frac = frac_part.as_bytes();
    for i in 0..scale {
        let d = match frac.get(i) {
            Some(b) => char::from(*b).to_digit(10)?,
            None => 0,
        };
        v = v.checked_mul(10)?.checked_add(i128::from(d))?;
    }
    // Digits beyond the scale would be lost: refuse rather than round silently.
    if frac.len() > scale && frac[scale..].iter().any(|b| *b != b'0') {
        return None;
    }
    Some(if neg { -v } else { v })
}

impl ColumnBuilder {
    fn new(kind: ColumnKind, capacity: usize) -> Result<ColumnBuilder, ArrowError> {
        Ok(match kind {
            ColumnKind::Int32 => ColumnBuilder::I32(Int32Builder::with_capacity(capacity)),
            ColumnKind::Int64 => ColumnBuilder::I64(Int64Builder::with_capacity(capacity)),
            ColumnKind::UInt64 => ColumnBuilder::U64(UInt64Builder::with_capacity(capacity)),
            ColumnKind::Float32 => ColumnBuilder::F32(Float32Builder::with_capacity(capacity)),
            ColumnKind::Float64 => ColumnBuilder::F64(Float64Builder::with_capacity(capacity)),
            ColumnKind::Decimal { precision, scale } => ColumnBuilder::Dec(
                Decimal128Builder::with_capacity(capacity).with_precision_and_scale(precision, scale)?,
                scale,
            ),
            ColumnKind::Utf8 => ColumnBuilder::Str(StringBuilder::with_capacity(capacity, capacity * 16)),
            ColumnKind::Binary => ColumnBuilder::Bin(BinaryBuilder::with_capacity(capacity, capacity * 16)),
            ColumnKind::Date => ColumnBuilder::Date(Date32Builder::with_capacity(capacity)),
            ColumnKind::DateTime => ColumnBuilder::Ts(TimestampMicrosecondBuilder::with_capacity(capacity)),
            ColumnKind::TimestampUtc => {
                ColumnBuilder::Ts(TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC"))
            }
        })
    }

    fn push(&mut self, v: &Value<'_>) -> Result<(), String> {
        let mismatch = || format!("value {v:?} does not fit the column type");
        match (self, v) {
            (ColumnBuilder::I32(b), Value::Null) => b.append_null(),
            (ColumnBuilder::I32(b), Value::Int(x)) => {
                b.append_value(i32::try_from(*x).map_err(|_| mismatch())?)
            }
            (ColumnBuilder::I64(b), Value::Null) => b.append_null(),
            (ColumnBuilder::I64(b), Value::Int(x)) => b.append_value(*x),
            (ColumnBuilder::U64(b), Value::Null) => b.append_null(),
            (ColumnBuilder::U64(b), Value::UInt(x)) => b.append_value(*x),
            (ColumnBuilder::U64(b), Value::Int(x)) => {
                b.append_value(u64::try_from(*x).map_err(|_| mismatch())?)
            }
            (ColumnBuilder::F32(b), Value::Null) => b.append_null(),
            (ColumnBuilder::F32(b), Value::Float(x)) => b.append_value(*x as f32),
            (ColumnBuilder::F64(b), Value::Null) => b.append_null(),
            (ColumnBuilder::F64(b), Value::Float(x)) => b.append_value(*x),
            (ColumnBuilder::Dec(b, _), Value::Null) => b.append_null(),
            (ColumnBuilder::Dec(b, scale), Value::Text(t)) => b.append_value(
                parse_decimal(t, *scale).ok_or_else(|| format!("{t:?} is not a decimal of scale {scale}"))?,
            ),
            (ColumnBuilder::Str(b), Value::Null) => b.append_null(),
            (ColumnBuilder::Str(b), Value::Text(t)) => b.append_value(t),
            (ColumnBuilder::Bin(b), Value::Null) => b.append_null(),
            (ColumnBuilder::Bin(b), Value::Bytes(x)) => b.append_value(x),
            (ColumnBuilder::Date(b), Value::Null) => b.append_null(),
            (ColumnBuilder::Date(b), Value::Date(d)) => {
                b.append_value(d.num_days_from_ce() - UNIX_EPOCH_CE_DAYS)
            }
            (ColumnBuilder::Ts(b), Value::Null) => b.append_null(),
            (ColumnBuilder::Ts(b), Value::DateTime(t)) => b.append_value(t.and_utc().timestamp_micros()),
            _ => return Err(mismatch()),
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::I32(b) => Arc::new(b.finish()),
            ColumnBuilder::I64(b) => Arc::new(b.finish()),
            ColumnBuilder::U64(b) => Arc::new(b.finish()),
            ColumnBuilder::F32(b) => Arc::new(b.finish()),
            ColumnBuilder::F64(b) => Arc::new(b.finish()),
            ColumnBuilder::Dec(b, _) => Arc::new(b.finish()),
            ColumnBuilder::Str(b) => Arc::new(b.finish()),
            ColumnBuilder::Bin(b) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Ts(b) => Arc::new(b.finish()),
        }
    }
}

/// Builds record batches of one schema, row by row.
struct BatchBuilder {
    schema: SchemaRef,
    columns: Vec<ColumnBuilder>,
    rows: usize,
}

impl BatchBuilder {
    fn new(schema: SchemaRef, kinds: &[ColumnKind], capacity: usize) -> Result<BatchBuilder, ArrowError> {
        let columns = kinds.iter().map(|k| ColumnBuilder::new(*k, capacity)).collect::<Result<_, _>>()?;
        Ok(BatchBuilder { schema, columns, rows: 0 })
    }

    fn push(&mut self, values: &[Value<'_>]) -> Result<(), String> {
        if values.len() != self.columns.len() {
            return Err(format!("row has {} values for {} columns", values.len(), self.columns.len()));
        }
        for (i, (b, v)) in self.columns.iter_mut().zip(values).enumerate() {
            b.push(v).map_err(|e| format!("column {}: {e}", self.schema.field(i).name()))?;
        }
        self.rows += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let arrays: Vec<ArrayRef> = self.columns.iter_mut().map(ColumnBuilder::finish).collect();
        self.rows = 0;
        RecordBatch::try_new(Arc::clone(&self.schema), arrays)
    }
}

// ---------------------------------------------------------------------------------------------
// One output file: a blocking writer thread fed by a bounded channel

enum Msg {
    Batch(RecordBatch),
    /// All rows sent: write the footer. Without it (channel closed) the file is abandoned.
    Finish,
}

struct PendingFile {
    tmp: PathBuf,
    target: PathBuf,
}

fn temp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}{TEMP_MARKER}{}", std::process::id()))
}

/// Writes batches to a new temporary file; on `Finish` appends the row count to the footer,
/// flushes and fsyncs. Removes the temporary file on any failure.
fn write_file(
    tmp: &Path,
    schema: SchemaRef,
    props: WriterProperties,
    rx: &mut mpsc::Receiver<Msg>,
) -> Result<(u64, u64), PublishError> {
    let result = (|| {
        let _ = std::fs::remove_file(tmp); // a leftover of an earlier process with our pid
        let file = File::options().write(true).create_new(true).open(tmp).map_err(io_err("create", tmp))?;
        let perr = |source| PublishError::Parquet { path: tmp.to_path_buf(), source };
        let mut writer = ArrowWriter::try_new(file, schema, Some(props)).map_err(perr)?;
        let mut rows = 0u64;
        loop {
            match rx.blocking_recv() {
                Some(Msg::Batch(batch)) => {
                    rows += batch.num_rows() as u64;
                    writer.write(&batch).map_err(perr)?;
                }
                Some(Msg::Finish) => break,
                None => return Err(PublishError::Cancelled),
            }
        }
        writer.append_key_value_metadata(KeyValue::new(keys::ROW_COUNT.to_string(), rows.to_string()));
        let file = writer.into_inner().map_err(perr)?;
        file.sync_all().map_err(io_err("fsync", tmp))?;
        let bytes = file.metadata().map_err(io_err("stat", tmp))?.len();
        Ok((rows, bytes))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

/// The async side of one file: builds batches and sends them to the writer thread.
struct FileSink {
    name: String,
    builder: BatchBuilder,
    batch_rows: usize,
    rows: u64,
    tx: Option<mpsc::Sender<Msg>>,
    progress: Option<ProgressFn>,
    cancel: CancellationToken,
}

impl FileSink {
    fn push_values(&mut self, values: &[Value<'_>]) -> Result<(), PublishError> {
        self.builder.push(values).map_err(|reason| PublishError::Arrow { file: self.name.clone(), reason })
    }

    async fn send(&mut self, msg: Msg) -> Result<(), PublishError> {
        let Some(tx) = &self.tx else { return Err(PublishError::Cancelled) };
        tokio::select! {
            () = self.cancel.cancelled() => Err(PublishError::Cancelled),
            sent = tx.send(msg) => sent.map_err(|_| PublishError::Writer {
                file: self.name.clone(),
                reason: "the writer stopped early".into(),
            }),
        }
    }

    async fn flush_batch(&mut self) -> Result<(), PublishError> {
        if self.builder.rows == 0 {
            return Ok(());
        }
        let n = self.builder.rows as u64;
        let batch = self
            .builder
            .finish()
            .map_err(|e| PublishError::Arrow { file: self.name.clone(), reason: e.to_string() })?;
        self.send(Msg::Batch(batch)).await?;
        self.rows += n;
        if let Some(p) = &self.progress {
            p(&PublishProgress { file: self.name.clone(), rows: self.rows });
        }
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), PublishError> {
        self.flush_batch().await?;
        self.send(Msg::Finish).await?;
        self.tx = None;
        Ok(())
    }
}

impl RowSink for FileSink {
    type Error = PublishError;

    fn is_full(&self) -> bool {
        self.builder.rows >= self.batch_rows
    }

    fn flush(&mut self) -> impl std::future::Future<Output = Result<(), PublishError>> + Send {
        self.flush_batch()
    }
}

impl CatalogSink for FileSink {
    fn push(&mut self, row: &CatalogRow<'_>) -> Result<(), PublishError> {
        self.push_values(&catalog_values(row))
    }
}

impl TableSink for FileSink {
    fn push(&mut self, row: &[Value<'_>]) -> Result<(), PublishError> {
        self.push_values(row)
    }
}

struct Publication<'a> {
    dir: PathBuf,
    opts: &'a PublishOptions,
    generated_at: String,
    version_json: String,
    /// Cancelled by the user's token, or by the first failure (stops the other writers).
    cancel: CancellationToken,
    /// Complete temporary files, in completion order.
    done: std::sync::Mutex<Vec<(PendingFile, u64, u64)>>,
}

impl Publication<'_> {
    fn props(&self, schema_name: &str) -> WriterProperties {
        let compression = match self.opts.compression {
            PublishCompression::Zstd => {
                ZstdLevel::try_new(3).map(Compression::ZSTD).unwrap_or(Compression::SNAPPY)
            }
            PublishCompression::Snappy => Compression::SNAPPY,
            PublishCompression::None => Compression::UNCOMPRESSED,
        };
        let kv = vec![
            KeyValue::new(keys::SCHEMA.to_string(), schema_name.to_string()),
            KeyValue::new(keys::SCHEMA_VERSION.to_string(), SCHEMA_VERSION.to_string()),
            KeyValue::new(keys::GENERATED_AT.to_string(), self.generated_at.clone()),
            KeyValue::new(keys::CATALOG_VERSION.to_string(), self.version_json.clone()),
        ];
        WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_row_count(Some(self.opts.row_group_rows.max(1)))
            .set_created_by(format!("appcataloga {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(kv))
            .build()
    }

    /// Writes one file to its temporary path: `fill` streams rows into the sink.
    async fn write<F>(
        &self,
        name: String,
        schema: SchemaRef,
        kinds: &[ColumnKind],
        fill: F,
    ) -> Result<(), PublishError>
    where
        F: AsyncFnOnce(&mut FileSink) -> Result<u64, PublishError>,
    {
        let schema_name = name.trim_end_matches(".parquet").to_string();
        let pending = PendingFile { tmp: temp_path(&self.dir, &name), target: self.dir.join(&name) };
        let batch_rows = self.opts.batch_rows.max(1);
        let builder = BatchBuilder::new(Arc::clone(&schema), kinds, batch_rows)
            .map_err(|e| PublishError::Arrow { file: name.clone(), reason: e.to_string() })?;
        let (tx, mut rx) = mpsc::channel::<Msg>(2);
        let props = self.props(&schema_name);
        let tmp = pending.tmp.clone();
        let writer = tokio::task::spawn_blocking(move || write_file(&tmp, schema, props, &mut rx));
        let mut sink = FileSink {
            name: name.clone(),
            builder,
            batch_rows,
            rows: 0,
            tx: Some(tx),
            progress: self.opts.progress.clone(),
            cancel: self.cancel.clone(),
        };
        let streamed = async {
            fill(&mut sink).await?;
            sink.finish().await
        }
        .await;
        drop(sink); // closes the channel: an unfinished writer abandons its file
        let written = writer.await;
        let (rows, bytes) = match (streamed, written) {
            (_, Err(join)) => {
                let _ = std::fs::remove_file(&pending.tmp);
                return Err(PublishError::Writer { file: name, reason: join.to_string() });
            }
            (Err(e), _) => {
                let _ = std::fs::remove_file(&pending.tmp);
                return Err(e);
            }
            (Ok(()), Ok(result)) => result?,
        };
        debug!(file = %name, rows, bytes, "Temporary Parquet file complete.");
        if let Ok(mut done) = self.done.lock() {
            done.push((pending, rows, bytes));
        }
        Ok(())
    }

    /// Removes every temporary file written so far (on failure).
    fn abandon(&mut self) {
        let done = std::mem::take(self.done.get_mut().unwrap_or_else(|e| e.into_inner()));
        for (p, _, _) in done {
            let _ = std::fs::remove_file(&p.tmp);
        }
    }
}

/// Renames the temporary files over the published ones, then fsyncs the folder.
fn commit(dir: &Path, files: &[(PendingFile, u64, u64)]) -> Result<(), PublishError> {
    for (p, _, _) in files {
        std::fs::rename(&p.tmp, &p.target).map_err(io_err("rename into place", &p.target))?;
    }
    fsync_dir(dir)
}

fn fsync_dir(dir: &Path) -> Result<(), PublishError> {
    match File::open(dir).and_then(|d| d.sync_all()) {
        Ok(()) => Ok(()),
        // Some network file systems (CIFS) refuse fsync on a directory; the renames are still
        // issued, and there is nothing more we can do.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOTSUP)) => {
            debug!(dir = %dir.display(), error = %e, "Directory fsync not supported here.");
            Ok(())
        }
        Err(e) => Err(PublishError::Io { action: "fsync the folder", path: dir.to_path_buf(), source: e }),
    }
}

/// `true` for the name of a temporary file of this publisher (any pid).
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(&format!(".parquet{TEMP_MARKER}"))
}

/// The pid in a temporary file name.
fn temp_pid(name: &str) -> Option<u32> {
    name.rsplit_once(TEMP_MARKER)?.1.parse().ok()
}

/// Removes the temporary files of interrupted publications in `dir`: all of them while we
/// hold the lock (their writers are dead: the kernel released their locks), otherwise only
/// those whose pid is not a live process of this host.
fn remove_stale_temps(dir: &Path, locked: bool) -> Result<usize, PublishError> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let alive = |pid: u32| pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists();
        if is_temp_name(&name) && (locked || !temp_pid(&name).is_some_and(alive)) {
            let path = entry.path();
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    info!(path = %path.display(), "Removed a temporary file left by an interrupted publication.");
                    removed += 1;
                }
                Err(e) => warn!(path = %path.display(), error = %e, "Cannot remove a stale temporary file."),
            }
        }
    }
    Ok(removed)
}

/// Publishes the catalogue once into `<root>/Metadata/`: `spectrum_catalog.parquet` and, when
/// `opts.table_dumps`, `rf_metadata.<TABLE>.parquet` for every RFDATA table. Creates the folder
/// if needed. Atomic per file (see the module doc); on any error or cancellation the published
/// files are untouched and temporary files are removed.
///
/// # Errors
/// [`PublishError`], naming what failed on which file.
pub async fn publish_once(
    store: &Store,
    root: &Path,
    opts: &PublishOptions,
) -> Result<PublishReport, PublishError> {
    let started = Instant::now();
    let dir = root.join(METADATA_DIR);
    let lock_path = dir.join(LOCK_FILE);
    let (lock, stale_temps_removed) = {
        let dir = dir.clone();
        let lock_path = lock_path.clone();
        tokio::task::spawn_blocking(move || -> Result<(File, usize), PublishError> {
            std::fs::create_dir_all(&dir).map_err(io_err("create the folder", &dir))?;
            let lock = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(io_err("open the lock file", &lock_path))?;
            let locked = match lock.try_lock() {
                Ok(()) => true,
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(PublishError::Busy { dir: dir.clone(), lock: lock_path.clone() });
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    // Some network file systems do not support flock: publish anyway (each
                    // file is still atomic) and only clean temporaries of dead local pids.
                    warn!(lock = %lock_path.display(), error = %e, "Cannot lock; publishing without the lock.");
                    false
                }
            };
            let removed = remove_stale_temps(&dir, locked)?;
            Ok((lock, removed))
        })
        .await
        .map_err(|e| PublishError::Writer { file: LOCK_FILE.into(), reason: e.to_string() })??
    };

    let version = store.catalog_version().await?;
    let mut publication = Publication {
        dir: dir.clone(),
        opts,
        generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        version_json: serde_json::to_string(&version).unwrap_or_default(),
        cancel: opts.cancel.child_token(),
        done: std::sync::Mutex::new(Vec::new()),
    };
    let result = write_all(store, opts, &publication).await;
    let result = match result {
        Ok(()) => {
            let dir = dir.clone();
            let mut files = std::mem::take(publication.done.get_mut().unwrap_or_else(|e| e.into_inner()));
            // The catalogue first, then the tables by name (they may complete in any order).
            files.sort_by_key(|(p, _, _)| (!p.target.ends_with(CATALOG_FILE), p.target.clone()));
            tokio::task::spawn_blocking(move || {
                let r = commit(&dir, &files);
                (r, files)
            })
            .await
            .map_err(|e| PublishError::Writer { file: "commit".into(), reason: e.to_string() })
            .and_then(|(r, files)| {
                publication.done = std::sync::Mutex::new(files);
                r
            })
        }
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        publication.abandon();
        drop(lock);
        return Err(e);
    }
    drop(lock);
    let done = std::mem::take(publication.done.get_mut().unwrap_or_else(|e| e.into_inner()));
    let mut reports =
        done.iter().map(|(p, rows, bytes)| FileReport { path: p.target.clone(), rows: *rows, bytes: *bytes });
    let catalog = reports.next().ok_or_else(|| PublishError::Writer {
        file: CATALOG_FILE.into(),
        reason: "no catalogue file was produced".into(),
    })?;
    let tables: Vec<FileReport> = reports.collect();
    let report = PublishReport { version, catalog, tables, stale_temps_removed, elapsed: started.elapsed() };
    info!(
        rows = report.catalog.rows,
        bytes = report.catalog.bytes,
        tables = report.tables.len(),
        elapsed_ms = report.elapsed.as_millis() as u64,
        path = %report.catalog.path.display(),
        "Catalogue published."
    );
    Ok(report)
}

/// Writes the catalogue and, concurrently (on their own connection and writer thread), the
/// per-table files one after another; the first failure cancels the other side.
async fn write_all(
    store: &Store,
    opts: &PublishOptions,
    publication: &Publication<'_>,
) -> Result<(), PublishError> {
    let stop_on_error = |r: Result<(), PublishError>| {
        if r.is_err() {
            publication.cancel.cancel();
        }
        r
    };
    let flat = async {
        let kinds: Vec<ColumnKind> = CATALOG_COLUMNS.iter().map(|c| c.kind).collect();
        let volume = opts.repository_volume.clone();
        let r = publication
            .write(CATALOG_FILE.to_string(), catalog_schema(), &kinds, async |sink: &mut FileSink| {
                store.stream_spectrum_catalog(&volume, sink).await
            })
            .await;
        stop_on_error(r)
    };
    let tables = async {
        if !opts.table_dumps {
            return Ok(());
        }
        let r = async {
            for table in store.catalog_tables().await? {
                if publication.cancel.is_cancelled() {
                    return Err(PublishError::Cancelled);
                }
                let kinds: Vec<ColumnKind> = table.columns.iter().map(|c| c.kind).collect();
                let name = format!("{TABLE_FILE_PREFIX}{}.parquet", table.name);
                publication
                    .write(name, table_schema(&table), &kinds, async |sink: &mut FileSink| {
                        store.stream_table(&table, sink).await
                    })
                    .await?;
            }
            Ok(())
        }
        .await;
        stop_on_error(r)
    };
    match tokio::join!(flat, tables) {
        (Ok(()), Ok(())) => Ok(()),
        // Report the failure that caused the cancellation, not the cancellation.
        (Err(PublishError::Cancelled), Err(e)) | (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

/// The catalogue version recorded in the footer of a published `spectrum_catalog.parquet`
/// (None when the file is missing, unreadable or from another writer).
pub fn published_version(root: &Path) -> Option<CatalogVersion> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let file = File::open(root.join(METADATA_DIR).join(CATALOG_FILE)).ok()?;
    let reader = SerializedFileReader::new(file).ok()?;
    let kv = reader.metadata().file_metadata().key_value_metadata()?;
    let json = kv.iter().find(|k| k.key == keys::CATALOG_VERSION)?.value.as_deref()?;
    serde_json::from_str(json).ok()
}

/// The daemon stage: polls the catalogue version every `config.interval`; once it differs
/// from the published one and has been stable for `config.debounce` (or has kept changing for
/// `config.max_delay`), publishes. Never stops on an error: logs it and retries next round.
/// Returns when `cancel` fires (an ongoing publication is abandoned, its temporary files
/// removed).
pub async fn run(store: Store, root: PathBuf, config: PublishConfig, cancel: CancellationToken) {
    if !config.enabled {
        info!("Parquet publisher disabled (publish.enabled = false).");
        return;
    }
    let mut published = {
        let root = root.clone();
        tokio::task::spawn_blocking(move || published_version(&root)).await.ok().flatten()
    };
    // (version seen, since when stable, first unpublished change)
    let mut pending: Option<(CatalogVersion, Instant, Instant)> = None;
    let mut delay = Duration::ZERO;
    info!(root = %root.display(), interval_s = config.interval.as_secs_f64(), "Parquet publisher started.");
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(delay) => {}
        }
        delay = config.interval;
        let version = match store.catalog_version().await {
            Ok(v) => v,
            Err(e) => {
                warn!(error = %e, "Cannot read the catalogue version; retrying next round.");
                continue;
            }
        };
        if published.as_ref() == Some(&version) {
            pending = None;
            continue;
        }
        let now = Instant::now();
        let (stable_since, first_change) = match &pending {
            Some((v, since, first)) if *v == version => (*since, *first),
            Some((_, _, first)) => (now, *first),
            None => (now, now),
        };
        pending = Some((version.clone(), stable_since, first_change));
        let stable = now.duration_since(stable_since) >= config.debounce;
        let overdue = now.duration_since(first_change) >= config.max_delay;
        if !stable && !overdue {
            delay = config.debounce.min(config.interval).max(Duration::from_millis(100));
            continue;
        }
        let mut opts = PublishOptions::from(&config);
        opts.cancel = cancel.child_token();
        match publish_once(&store, &root, &opts).await {
            Ok(report) => {
                published = Some(report.version);
                pending = None;
            }
            Err(PublishError::Cancelled) => break,
            Err(e) => error!(error = %e, "Parquet publication failed; retrying next round."),
        }
    }
    info!("Parquet publisher stopped.");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_exactly() {
        assert_eq!(parse_decimal("123.450000000", 9), Some(123_450_000_000));
        assert_eq!(parse_decimal("-0.5", 1), Some(-5));
        assert_eq!(parse_decimal("12207.0", 1), Some(122_070));
        assert_eq!(parse_decimal("7", 3), Some(7000));
        assert_eq!(parse_decimal("1.25", 1), None);
        assert_eq!(parse_decimal("abc", 1), None);
    }

    #[test]
    fn temp_names_are_hidden_from_parquet_globs() {
        let t = temp_path(Path::new("/x"), CATALOG_FILE);
        let name = t.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        assert!(name.starts_with('.') && !name.ends_with(".parquet"), "{name}");
        assert!(is_temp_name(&name));
        assert_eq!(temp_pid(&name), Some(std::process::id()));
        assert!(!is_temp_name(CATALOG_FILE));
        assert!(!is_temp_name(LOCK_FILE));
    }

    #[test]
    fn catalog_schema_matches_the_columns() {
        let s = catalog_schema();
        assert_eq!(s.fields().len(), CATALOG_COLUMNS.len());
        assert_eq!(s.field(0).name(), "spectrum_id");
        assert!(!s.field(0).is_nullable());
        assert_eq!(
            s.field_with_name("time_start").map(|f| f.data_type().clone()).ok(),
            Some(DataType::Timestamp(TimeUnit::Microsecond, None))
        );
    }

    #[test]
    fn empty_batches_are_valid() {
        let kinds: Vec<ColumnKind> = CATALOG_COLUMNS.iter().map(|c| c.kind).collect();
        let mut b = BatchBuilder::new(catalog_schema(), &kinds, 4).expect("builder");
        assert_eq!(b.finish().expect("batch").num_rows(), 0);
    }
}
