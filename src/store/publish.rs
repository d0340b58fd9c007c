//! SQL of the Parquet publisher: the flat spectrum catalogue, the per-table dumps of RFDATA, the
//! cheap "catalogue version" used for debouncing, and a synthetic catalogue filler for tests and
//! benchmarks.
//!
//! Why three streams instead of one big join: on 1,000,000 spectra, one query that picks the
//! repository copy, the station copy, the receiver and the antenna with correlated subqueries
//! took 72 s on MariaDB 10.11, and the same picks as nested outer joins 27 s (every spectrum
//! paid ~25 index lookups). The catalogue is therefore read as three streams, each an ordered
//! index scan, merged here by `ID_SPECTRUM` (a merge join):
//!
//! * `FACT_SPECTRUM` joined to its small dimensions (site, state, county, district, procedure,
//!   unit, trace type, detector), in primary-key order;
//! * `BRIDGE_SPECTRUM_FILE` ⋈ `DIM_SPECTRUM_FILE` in `(FK_SPECTRUM, FK_FILE)` order;
//! * `BRIDGE_SPECTRUM_EQUIPMENT` in `(FK_SPECTRUM, FK_EQUIPMENT)` order, resolved against
//!   `DIM_SPECTRUM_EQUIPMENT` ⋈ `DIM_EQUIPMENT_TYPE`, which is small and read into memory.
//!
//! Exactly one [`CatalogRow`] is produced per `FACT_SPECTRUM` row (no fan-out): the repository
//! copy is the lowest `ID_FILE` whose `NA_VOLUME` is the repository volume, the station copy the
//! lowest other one; the receiver is the lowest `ID_EQUIPMENT` whose type uid is `rfeye`, else
//! the lowest whose type uid is not `acc_ant`; the antenna the lowest `acc_ant` one.
//!
//! Consistency: the fact stream starts first and the two bridge streams only after its first
//! row arrived, so every spectrum the fact stream sees is also seen (with its bridge rows) by
//! the others; bridge rows of spectra committed in between are skipped. Each stream holds one
//! pooled connection; memory stays bounded because rows are handed to the sink one at a time
//! and the sink flushes in batches.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use chrono::{NaiveDate, NaiveDateTime};
use futures_core::Stream;
use sqlx::mysql::MySqlRow;
use sqlx::pool::PoolConnection;
use sqlx::{MySql, Row};

use super::{Store, StoreError};

/// The flat catalogue, one row per `FACT_SPECTRUM` row, fields borrowed from the driver's rows.
/// Column meanings and units are specified in [`crate::publish`].
#[derive(Debug, Clone, Copy)]
pub struct CatalogRow<'a> {
    /// `FACT_SPECTRUM.ID_SPECTRUM`.
    pub spectrum_id: i32,
    /// The copy in the central repository, if recorded.
    pub repository: Option<FileCopy<'a>>,
    /// The copy on the station, if recorded.
    pub station: Option<FileCopy<'a>>,
    /// `FK_SITE` (NULL when the file had no valid GPS fix).
    pub site_id: Option<i32>,
    /// WGS84 degrees (`ST_Y(GEO_POINT)`).
    pub latitude: Option<f64>,
    /// WGS84 degrees (`ST_X(GEO_POINT)`).
    pub longitude: Option<f64>,
    /// Metres.
    pub altitude_m: Option<f64>,
    /// IBGE state code.
    pub state_code: Option<i32>,
    /// Two-letter state abbreviation.
    pub state_abbrev: Option<&'a str>,
    /// State name.
    pub state_name: Option<&'a str>,
    /// IBGE municipality code.
    pub county_code: Option<i32>,
    /// Municipality name.
    pub county_name: Option<&'a str>,
    /// District name.
    pub district_name: Option<&'a str>,
    /// The receiver.
    pub receiver: Option<&'a Equipment>,
    /// The antenna.
    pub antenna: Option<&'a Equipment>,
    /// Logger method.
    pub procedure: Option<&'a str>,
    /// Free text from the logger.
    pub description: Option<&'a str>,
    /// Measurement unit.
    pub unit: Option<&'a str>,
    /// Trace type (`peak`, `average`, …).
    pub trace_type: Option<&'a str>,
    /// Detector.
    pub detector: Option<&'a str>,
    /// MHz.
    pub freq_start_mhz: Option<f64>,
    /// MHz.
    pub freq_stop_mhz: Option<f64>,
    /// Logger clock, no zone.
    pub time_start: Option<NaiveDateTime>,
    /// Logger clock, no zone.
    pub time_end: Option<NaiveDateTime>,
    /// Seconds.
    pub sample_duration_s: Option<f64>,
    /// Sweeps.
    pub trace_count: Option<i32>,
    /// Points per sweep.
    pub trace_length: Option<i32>,
    /// Hz.
    pub rbw_hz: Option<f64>,
    /// Hz.
    pub vbw_hz: Option<f64>,
    /// dB.
    pub att_gain_db: Option<f64>,
    /// Logger thread.
    pub thread_id: Option<i32>,
    /// CRFS block type.
    pub block_type: Option<i32>,
    /// Antenna input.
    pub antenna_input: Option<i32>,
}

/// One copy of a measurement file (`DIM_SPECTRUM_FILE`).
#[derive(Debug, Clone, Copy)]
pub struct FileCopy<'a> {
    /// `ID_FILE`.
    pub id: i32,
    /// `NA_VOLUME`: the host uid, or the repository volume.
    pub volume: Option<&'a str>,
    /// `NA_FILE`.
    pub name: Option<&'a str>,
    /// `NA_PATH`.
    pub path: Option<&'a str>,
    /// `VL_FILE_SIZE`, bytes.
    pub size_bytes: Option<i64>,
    /// `NA_SHA256`, lower-case hex.
    pub sha256: Option<&'a str>,
    /// `DT_FILE_LOGGED` (UTC: every connection of the crate runs with `time_zone = +00:00`).
    pub logged_at: Option<NaiveDateTime>,
}

/// One row of `DIM_SPECTRUM_EQUIPMENT` with its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Equipment {
    /// `ID_EQUIPMENT`.
    pub id: i32,
    /// `NA_EQUIPMENT`.
    pub name: String,
    /// `DIM_EQUIPMENT_TYPE.NA_EQUIPMENT_TYPE`.
    pub type_name: Option<String>,
    /// `DIM_EQUIPMENT_TYPE.NA_EQUIPMENT_TYPE_UID`.
    pub type_uid: Option<String>,
}

/// Cheap fingerprint of the catalogue: when any field changes, the publication is stale.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CatalogVersion {
    /// `MAX(FACT_SPECTRUM.ID_SPECTRUM)` (0 when empty).
    pub max_spectrum_id: i64,
    /// `COUNT(*)` of `FACT_SPECTRUM` (catches deletions).
    pub spectra: i64,
    /// `MAX(DIM_SPECTRUM_FILE.ID_FILE)` (0 when empty).
    pub max_file_id: i64,
    /// `MAX(DIM_SPECTRUM_FILE.DT_FILE_LOGGED)` as `YYYY-MM-DD HH:MM:SS` (None when empty).
    pub last_file_logged: Option<String>,
    /// `MAX(information_schema.TABLES.UPDATE_TIME)` over the RFDATA tables: catches updates of
    /// dimension rows. InnoDB keeps it in memory only, so it reads None after a server restart
    /// (which costs at most one extra publication).
    pub last_update: Option<String>,
}

/// Arrow-facing type of a dumped column, derived from `information_schema.COLUMNS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// TINYINT, SMALLINT, MEDIUMINT, INT (signed), YEAR.
    Int32,
    /// BIGINT, INT UNSIGNED.
    Int64,
    /// BIGINT UNSIGNED, BIT.
    UInt64,
    /// FLOAT.
    Float32,
    /// DOUBLE.
    Float64,
    /// DECIMAL(p,s) with p ≤ 38: exact, read as text and scaled.
    Decimal {
        /// Total digits.
        precision: u8,
        /// Digits after the point.
        scale: i8,
    },
    /// Character data, DECIMAL with p > 38, TIME, ENUM, SET, JSON and anything unknown
    /// (`CAST(… AS CHAR)`).
    Utf8,
    /// BINARY, VARBINARY, BLOBs; geometry as standard WKB (`ST_AsBinary`).
    Binary,
    /// DATE.
    Date,
    /// DATETIME: no zone.
    DateTime,
    /// TIMESTAMP: UTC (the session time zone of every connection is `+00:00`).
    TimestampUtc,
}

/// One column of a dumped table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableColumn {
    /// Column name, as in the database.
    pub name: String,
    /// Arrow-facing type.
    pub kind: ColumnKind,
    /// `IS_NULLABLE = 'YES'`.
    pub nullable: bool,
    /// `information_schema.COLUMNS.COLUMN_TYPE`, e.g. `decimal(18,9)`, `point`.
    pub sql_type: String,
    /// `true` for geometry columns (dumped as WKB).
    pub geometry: bool,
}

/// One base table of RFDATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// Table name, as in the database.
    pub name: String,
    /// Columns, in ordinal order.
    pub columns: Vec<TableColumn>,
}

/// A value of a dumped cell, borrowed from the driver's row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// SQL NULL.
    Null,
    /// Signed integer.
    Int(i64),
    /// Unsigned integer.
    UInt(u64),
    /// Floating point.
    Float(f64),
    /// Text (also DECIMAL in its exact text form).
    Text(&'a str),
    /// Bytes.
    Bytes(&'a [u8]),
    /// DATE.
    Date(NaiveDate),
    /// DATETIME / TIMESTAMP.
    DateTime(NaiveDateTime),
}

/// Receiver of streamed rows, flushed in batches so memory stays bounded.
pub trait RowSink {
    /// The sink's error; database failures are converted into it.
    type Error: From<StoreError> + Send;
    /// `true` when a batch is complete and [`RowSink::flush`] should be awaited.
    fn is_full(&self) -> bool;
    /// Hands the completed batch on (e.g. to the Parquet writer thread).
    fn flush(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Receives the flat catalogue.
pub trait CatalogSink: RowSink {
    /// One spectrum.
    ///
    /// # Errors
    /// Whatever the sink cannot accept; streaming stops.
    fn push(&mut self, row: &CatalogRow<'_>) -> Result<(), Self::Error>;
}

/// Receives the rows of one dumped table.
pub trait TableSink: RowSink {
    /// One row, values in [`TableSpec::columns`] order.
    ///
    /// # Errors
    /// Whatever the sink cannot accept; streaming stops.
    fn push(&mut self, row: &[Value<'_>]) -> Result<(), Self::Error>;
}

type RowStream<'e> = Pin<Box<dyn Stream<Item = Result<MySqlRow, sqlx::Error>> + Send + 'e>>;

async fn next_row(stream: &mut RowStream<'_>, action: &'static str) -> Result<Option<MySqlRow>, StoreError> {
    std::future::poll_fn(|cx| stream.as_mut().poll_next(cx))
        .await
        .transpose()
        .map_err(|e| StoreError::query(action, e))
}

const READ_CATALOG: &str = "reading the spectrum catalogue";

/// Fact stream: columns by position (see the mapping in [`decode_fact`]).
const FACT_SQL: &str = "SELECT s.ID_SPECTRUM, s.FK_SITE, ST_Y(site.GEO_POINT), ST_X(site.GEO_POINT),
        CAST(site.NU_ALTITUDE AS DOUBLE), st.ID_STATE, st.LC_STATE, st.NA_STATE, co.ID_COUNTY,
        co.NA_COUNTY, di.NA_DISTRICT, pr.NA_PROCEDURE, s.NA_DESCRIPTION, un.NA_MEASURE_UNIT,
        tt.NA_TRACE_TYPE, de.NA_DETECTOR, CAST(s.NU_FREQ_START AS DOUBLE), CAST(s.NU_FREQ_END AS DOUBLE),
        s.DT_TIME_START, s.DT_TIME_END, CAST(s.NU_SAMPLE_DURATION AS DOUBLE), s.NU_TRACE_COUNT,
        s.NU_TRACE_LENGTH, CAST(s.NU_RBW AS DOUBLE), CAST(s.NU_VBW AS DOUBLE), CAST(s.NU_ATT_GAIN AS DOUBLE),
        s.NU_THREAD_ID, s.NU_BLOCK_TYPE, s.NU_ANTENNA
    FROM {RFDATA}.FACT_SPECTRUM s
    LEFT JOIN {RFDATA}.DIM_SPECTRUM_SITE site ON site.ID_SITE = s.FK_SITE
    LEFT JOIN {RFDATA}.DIM_SITE_STATE st ON st.ID_STATE = site.FK_STATE
    LEFT JOIN {RFDATA}.DIM_SITE_COUNTY co ON co.ID_COUNTY = site.FK_COUNTY
    LEFT JOIN {RFDATA}.DIM_SITE_DISTRICT di ON di.ID_DISTRICT = site.FK_DISTRICT
    LEFT JOIN {RFDATA}.DIM_SPECTRUM_PROCEDURE pr ON pr.ID_PROCEDURE = s.FK_PROCEDURE
    LEFT JOIN {RFDATA}.DIM_SPECTRUM_UNIT un ON un.ID_MEASURE_UNIT = s.FK_MEASURE_UNIT
    LEFT JOIN {RFDATA}.DIM_SPECTRUM_TRACE_TYPE tt ON tt.ID_TRACE_TYPE = s.FK_TRACE_TYPE
    LEFT JOIN {RFDATA}.DIM_SPECTRUM_DETECTOR de ON de.ID_DETECTOR = s.FK_DETECTOR
    ORDER BY s.ID_SPECTRUM";

/// File stream: (FK_SPECTRUM, ID_FILE, NA_VOLUME, NA_FILE, NA_PATH, VL_FILE_SIZE, NA_SHA256,
/// DT_FILE_LOGGED). The index hint keeps it an ordered index scan (without it the optimizer
/// scans DIM_SPECTRUM_FILE and sorts 2 rows per spectrum).
const FILE_SQL: &str = "SELECT b.FK_SPECTRUM, f.ID_FILE, f.NA_VOLUME, f.NA_FILE, f.NA_PATH, f.VL_FILE_SIZE,
        f.NA_SHA256, f.DT_FILE_LOGGED
    FROM {RFDATA}.BRIDGE_SPECTRUM_FILE b FORCE INDEX (IX_BRIDGE_FILE_SPECTRUM)
    STRAIGHT_JOIN {RFDATA}.DIM_SPECTRUM_FILE f ON f.ID_FILE = b.FK_FILE
    ORDER BY b.FK_SPECTRUM, b.FK_FILE";

const EQUIPMENT_BRIDGE_SQL: &str = "SELECT FK_SPECTRUM, FK_EQUIPMENT
    FROM {RFDATA}.BRIDGE_SPECTRUM_EQUIPMENT FORCE INDEX (IX_BRIDGE_EQUIPMENT_SPECTRUM)
    ORDER BY FK_SPECTRUM, FK_EQUIPMENT";

const EQUIPMENT_SQL: &str =
    "SELECT e.ID_EQUIPMENT, e.NA_EQUIPMENT, t.NA_EQUIPMENT_TYPE, t.NA_EQUIPMENT_TYPE_UID
    FROM {RFDATA}.DIM_SPECTRUM_EQUIPMENT e
    LEFT JOIN {RFDATA}.DIM_EQUIPMENT_TYPE t ON t.ID_EQUIPMENT_TYPE = e.FK_EQUIPMENT_TYPE";

/// Seconds the server waits for us to read a result before it drops the connection; generous
/// because the consumer is paced by the Parquet writer, which may sit on a slow network mount.
const NET_WRITE_TIMEOUT_S: u32 = 600;

fn decode_fact<'r>(
    row: &'r MySqlRow,
    repository: Option<FileCopy<'r>>,
    station: Option<FileCopy<'r>>,
    receiver: Option<&'r Equipment>,
    antenna: Option<&'r Equipment>,
) -> Result<CatalogRow<'r>, sqlx::Error> {
    Ok(CatalogRow {
        spectrum_id: row.try_get(0)?,
        repository,
        station,
        site_id: row.try_get(1)?,
        latitude: row.try_get(2)?,
        longitude: row.try_get(3)?,
        altitude_m: row.try_get(4)?,
        state_code: row.try_get(5)?,
        state_abbrev: row.try_get(6)?,
        state_name: row.try_get(7)?,
        county_code: row.try_get(8)?,
        county_name: row.try_get(9)?,
        district_name: row.try_get(10)?,
        receiver,
        antenna,
        procedure: row.try_get(11)?,
        description: row.try_get(12)?,
        unit: row.try_get(13)?,
        trace_type: row.try_get(14)?,
        detector: row.try_get(15)?,
        freq_start_mhz: row.try_get(16)?,
        freq_stop_mhz: row.try_get(17)?,
        time_start: row.try_get(18)?,
        time_end: row.try_get(19)?,
        sample_duration_s: row.try_get(20)?,
        trace_count: row.try_get(21)?,
        trace_length: row.try_get(22)?,
        rbw_hz: row.try_get(23)?,
        vbw_hz: row.try_get(24)?,
        att_gain_db: row.try_get(25)?,
        thread_id: row.try_get::<Option<i64>, _>(26)?.and_then(|v| i32::try_from(v).ok()),
        block_type: row.try_get::<Option<i64>, _>(27)?.and_then(|v| i32::try_from(v).ok()),
        antenna_input: row.try_get::<Option<i64>, _>(28)?.and_then(|v| i32::try_from(v).ok()),
    })
}

fn decode_file(row: &MySqlRow) -> Result<FileCopy<'_>, sqlx::Error> {
    Ok(FileCopy {
        id: row.try_get(1)?,
        volume: row.try_get(2)?,
        name: row.try_get(3)?,
        path: row.try_get(4)?,
        size_bytes: row.try_get(5)?,
        sha256: row.try_get(6)?,
        logged_at: row.try_get(7)?,
    })
}

fn is_antenna(e: &Equipment) -> bool {
    e.type_uid.as_deref() == Some("acc_ant")
}

fn is_rfeye(e: &Equipment) -> bool {
    e.type_uid.as_deref() == Some("rfeye")
}

impl Store {
    async fn streaming_connection(&self) -> Result<PoolConnection<MySql>, StoreError> {
        let q = |e| StoreError::query(READ_CATALOG, e);
        let mut conn = self.pool().acquire().await.map_err(q)?;
        let sql = format!("SET SESSION net_write_timeout = {NET_WRITE_TIMEOUT_S}");
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut *conn).await.map_err(q)?;
        Ok(conn)
    }

    /// The catalogue's current [`CatalogVersion`]: five index look-ups and one
    /// `information_schema` read, cheap enough to poll every few seconds.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn catalog_version(&self) -> Result<CatalogVersion, StoreError> {
        let q = |e| StoreError::query("reading the catalogue version", e);
        let row = sqlx::query(self.sql(
            "SELECT (SELECT COALESCE(MAX(ID_SPECTRUM), 0) FROM {RFDATA}.FACT_SPECTRUM),
                    (SELECT COUNT(*) FROM {RFDATA}.FACT_SPECTRUM),
                    (SELECT COALESCE(MAX(ID_FILE), 0) FROM {RFDATA}.DIM_SPECTRUM_FILE),
                    (SELECT DATE_FORMAT(MAX(DT_FILE_LOGGED), '%Y-%m-%d %H:%i:%s') FROM {RFDATA}.DIM_SPECTRUM_FILE),
                    (SELECT DATE_FORMAT(MAX(UPDATE_TIME), '%Y-%m-%d %H:%i:%s') FROM information_schema.TABLES
                      WHERE TABLE_SCHEMA = ?)",
        ))
        .bind(self.rfdata_schema())
        .fetch_one(self.pool())
        .await
        .map_err(q)?;
        Ok(CatalogVersion {
            max_spectrum_id: row.try_get(0).map_err(q)?,
            spectra: row.try_get(1).map_err(q)?,
            max_file_id: row.try_get(2).map_err(q)?,
            last_file_logged: row.try_get(3).map_err(q)?,
            last_update: row.try_get(4).map_err(q)?,
        })
    }

    async fn load_equipment(&self) -> Result<HashMap<i32, Equipment>, StoreError> {
        let q = |e| StoreError::query("reading DIM_SPECTRUM_EQUIPMENT", e);
        let rows = sqlx::query(self.sql(EQUIPMENT_SQL)).fetch_all(self.pool()).await.map_err(q)?;
        let mut map = HashMap::with_capacity(rows.len());
        for r in rows {
            let e = Equipment {
                id: r.try_get(0).map_err(q)?,
                name: r.try_get(1).map_err(q)?,
                type_name: r.try_get(2).map_err(q)?,
                type_uid: r.try_get::<Option<String>, _>(3).map_err(q)?.map(|s| s.to_ascii_lowercase()),
            };
            map.insert(e.id, e);
        }
        Ok(map)
    }

    /// Streams the flat catalogue, one [`CatalogRow`] per `FACT_SPECTRUM` row in `ID_SPECTRUM`
    /// order, into `sink`, flushing it whenever it is full (and not at the end: the caller
    /// flushes the remainder). `repository_volume` is the `NA_VOLUME` of repository copies
    /// (`repoSFI` in the original). Returns the number of rows.
    ///
    /// # Errors
    /// A database failure (as `S::Error`) or the sink's own error.
    pub async fn stream_spectrum_catalog<S: CatalogSink + Send>(
        &self,
        repository_volume: &str,
        sink: &mut S,
    ) -> Result<u64, S::Error> {
        let mut equipment = self.load_equipment().await?;
        let mut equipment_reloads = 0u32;

        let mut fact_conn = self.streaming_connection().await?;
        let mut file_conn = self.streaming_connection().await?;
        let mut equip_conn = self.streaming_connection().await?;
        let fact_sql = self.sql(FACT_SQL);
        let file_sql = self.sql(FILE_SQL);
        let equip_sql = self.sql(EQUIPMENT_BRIDGE_SQL);

        let mut facts: RowStream<'_> = sqlx::query(fact_sql).fetch(&mut *fact_conn);
        // The fact statement must have started (its read view taken) before the bridge
        // statements start: see the module doc.
        let mut fact_next = next_row(&mut facts, READ_CATALOG).await?;
        let mut files: RowStream<'_> = sqlx::query(file_sql).fetch(&mut *file_conn);
        let mut bridges: RowStream<'_> = sqlx::query(equip_sql).fetch(&mut *equip_conn);
        let mut file_next = next_row(&mut files, READ_CATALOG).await?;
        let mut bridge_next = next_row(&mut bridges, READ_CATALOG).await?;
        let q = |e| StoreError::query(READ_CATALOG, e);

        let mut rows = 0u64;
        while let Some(fact) = fact_next.take() {
            let id: i32 = fact.try_get(0).map_err(q)?;

            // Files of this spectrum: keep the first repository copy and the first other copy.
            let mut repository_row: Option<MySqlRow> = None;
            let mut station_row: Option<MySqlRow> = None;
            while let Some(f) = file_next.take() {
                let sid: i32 = f.try_get(0).map_err(q)?;
                if sid > id {
                    file_next = Some(f);
                    break;
                }
                if sid == id {
                    let volume: Option<&str> = f.try_get(2).map_err(q)?;
                    if volume == Some(repository_volume) {
                        if repository_row.is_none() {
                            repository_row = Some(f);
                        }
                    } else if station_row.is_none() {
                        station_row = Some(f);
                    }
                }
                file_next = next_row(&mut files, READ_CATALOG).await?;
            }

            // Equipment of this spectrum.
            let mut equipment_ids: Vec<i32> = Vec::new();
            while let Some(b) = bridge_next.take() {
                let sid: i32 = b.try_get(0).map_err(q)?;
                if sid > id {
                    bridge_next = Some(b);
                    break;
                }
                if sid == id {
                    equipment_ids.push(b.try_get(1).map_err(q)?);
                }
                bridge_next = next_row(&mut bridges, READ_CATALOG).await?;
            }
            if equipment_reloads < 3 && equipment_ids.iter().any(|e| !equipment.contains_key(e)) {
                // Equipment inserted after the map was read.
                equipment = self.load_equipment().await?;
                equipment_reloads += 1;
            }
            let known: Vec<&Equipment> = equipment_ids.iter().filter_map(|e| equipment.get(e)).collect();
            let receiver = known
                .iter()
                .copied()
                .find(|e| is_rfeye(e))
                .or_else(|| known.iter().copied().find(|e| !is_antenna(e)));
            let antenna = known.iter().copied().find(|e| is_antenna(e));

            let repository = repository_row.as_ref().map(decode_file).transpose().map_err(q)?;
            let station = station_row.as_ref().map(decode_file).transpose().map_err(q)?;
            let row = decode_fact(&fact, repository, station, receiver, antenna).map_err(q)?;
            sink.push(&row)?;
            rows += 1;
            if sink.is_full() {
                sink.flush().await?;
            }
            fact_next = next_row(&mut facts, READ_CATALOG).await?;
        }
        Ok(rows)
    }

    /// The base tables of RFDATA with their columns typed for export, in name order.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn catalog_tables(&self) -> Result<Vec<TableSpec>, StoreError> {
        let q = |e| StoreError::query("listing the RFDATA tables (information_schema)", e);
        let rows = sqlx::query(
            "SELECT c.TABLE_NAME, c.COLUMN_NAME, LOWER(c.DATA_TYPE), LOWER(c.COLUMN_TYPE), c.IS_NULLABLE,
                    CAST(c.NUMERIC_PRECISION AS SIGNED), CAST(c.NUMERIC_SCALE AS SIGNED)
             FROM information_schema.COLUMNS c
             JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME
             WHERE c.TABLE_SCHEMA = ? AND t.TABLE_TYPE = 'BASE TABLE'
             ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION",
        )
        .bind(self.rfdata_schema())
        .fetch_all(self.pool())
        .await
        .map_err(q)?;
        let mut tables: Vec<TableSpec> = Vec::new();
        for r in rows {
            let table: String = r.try_get(0).map_err(q)?;
            let name: String = r.try_get(1).map_err(q)?;
            let data_type: String = r.try_get(2).map_err(q)?;
            let sql_type: String = r.try_get(3).map_err(q)?;
            let nullable = r.try_get::<String, _>(4).map_err(q)? == "YES";
            let precision: Option<i64> = r.try_get(5).map_err(q)?;
            let scale: Option<i64> = r.try_get(6).map_err(q)?;
            let (kind, geometry) = column_kind(&data_type, &sql_type, precision, scale);
            let column = TableColumn { name, kind, nullable, sql_type, geometry };
            match tables.last_mut() {
                Some(t) if t.name == table => t.columns.push(column),
                _ => tables.push(TableSpec { name: table, columns: vec![column] }),
            }
        }
        Ok(tables)
    }

    /// Streams every row of one RFDATA table into `sink` (flushing when full; the caller
    /// flushes the remainder). Returns the number of rows.
    ///
    /// # Errors
    /// A database failure (as `S::Error`) or the sink's own error.
    pub async fn stream_table<S: TableSink + Send>(
        &self,
        table: &TableSpec,
        sink: &mut S,
    ) -> Result<u64, S::Error> {
        let q = |e| StoreError::query("dumping an RFDATA table", e);
        let select: Vec<String> = table.columns.iter().map(select_expr).collect();
        let sql = format!("SELECT {} FROM {{RFDATA}}.{}", select.join(", "), quote_ident(&table.name));
        let sql = self.sql(&sql);
        let mut conn = self.streaming_connection().await?;
        let mut stream: RowStream<'_> = sqlx::query(sql).fetch(&mut *conn);
        let mut rows = 0u64;
        while let Some(row) = next_row(&mut stream, "dumping an RFDATA table").await? {
            let mut values: Vec<Value<'_>> = Vec::with_capacity(table.columns.len());
            for (i, c) in table.columns.iter().enumerate() {
                values.push(decode_value(&row, i, c.kind).map_err(q)?);
            }
            sink.push(&values)?;
            rows += 1;
            if sink.is_full() {
                sink.flush().await?;
            }
        }
        Ok(rows)
    }
}

fn decode_value(row: &MySqlRow, i: usize, kind: ColumnKind) -> Result<Value<'_>, sqlx::Error> {
    Ok(match kind {
        ColumnKind::Int32 | ColumnKind::Int64 => {
            row.try_get::<Option<i64>, _>(i)?.map_or(Value::Null, Value::Int)
        }
        ColumnKind::UInt64 => row.try_get::<Option<u64>, _>(i)?.map_or(Value::Null, Value::UInt),
        ColumnKind::Float32 | ColumnKind::Float64 => {
            row.try_get::<Option<f64>, _>(i)?.map_or(Value::Null, Value::Float)
        }
        ColumnKind::Decimal { .. } | ColumnKind::Utf8 => {
            row.try_get::<Option<&str>, _>(i)?.map_or(Value::Null, Value::Text)
        }
        ColumnKind::Binary => row.try_get::<Option<&[u8]>, _>(i)?.map_or(Value::Null, Value::Bytes),
        ColumnKind::Date => row.try_get::<Option<NaiveDate>, _>(i)?.map_or(Value::Null, Value::Date),
        ColumnKind::DateTime | ColumnKind::TimestampUtc => {
            row.try_get::<Option<NaiveDateTime>, _>(i)?.map_or(Value::Null, Value::DateTime)
        }
    })
}

/// `` `name` `` with embedded backticks doubled.
fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// The SELECT expression that yields a value decodable as the column's kind.
fn select_expr(c: &TableColumn) -> String {
    let col = quote_ident(&c.name);
    if c.geometry {
        return format!("ST_AsBinary({col})");
    }
    match c.kind {
        ColumnKind::Decimal { .. } => format!("CAST({col} AS CHAR)"),
        ColumnKind::Utf8 => format!("CAST({col} AS CHAR)"),
        ColumnKind::UInt64 if c.sql_type.starts_with("bit") => format!("CAST({col} AS UNSIGNED)"),
        ColumnKind::Int32 if c.sql_type.starts_with("year") => format!("CAST({col} AS SIGNED)"),
        _ => col,
    }
}

/// Maps `information_schema` types to export kinds (see [`ColumnKind`]); the flag says
/// "geometry, dump as WKB".
pub fn column_kind(
    data_type: &str,
    column_type: &str,
    precision: Option<i64>,
    scale: Option<i64>,
) -> (ColumnKind, bool) {
    let unsigned = column_type.contains("unsigned");
    let kind = match data_type {
        "tinyint" | "smallint" | "mediumint" | "year" => ColumnKind::Int32,
        "int" | "integer" if !unsigned => ColumnKind::Int32,
        "int" | "integer" => ColumnKind::Int64,
        "bigint" if !unsigned => ColumnKind::Int64,
        "bigint" | "bit" => ColumnKind::UInt64,
        "float" => ColumnKind::Float32,
        "double" | "real" => ColumnKind::Float64,
        "decimal" | "numeric" => match (precision, scale) {
            (Some(p), Some(s)) if (1..=38).contains(&p) && (0..=p).contains(&s) => {
                ColumnKind::Decimal { precision: p as u8, scale: s as i8 }
            }
            _ => ColumnKind::Utf8,
        },
        "date" => ColumnKind::Date,
        "datetime" => ColumnKind::DateTime,
        "timestamp" => ColumnKind::TimestampUtc,
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => ColumnKind::Binary,
        "point" | "linestring" | "polygon" | "geometry" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" => return (ColumnKind::Binary, true),
        _ => ColumnKind::Utf8,
    };
    (kind, false)
}

/// What [`Store::fill_synthetic_catalog`] inserted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyntheticReport {
    /// First `ID_SPECTRUM` inserted.
    pub first_spectrum_id: i64,
    /// Spectra inserted.
    pub spectra: u64,
    /// File rows inserted (two copies per file).
    pub files: u64,
    /// Spectra whose site is NULL (no GPS fix).
    pub without_site: u64,
}

/// Spectra per synthetic file (a CRFS `.bin` holds several streams).
pub const SYNTHETIC_SPECTRA_PER_FILE: u64 = 4;
const SYNTHETIC_STATIONS: u64 = 200;
const SYNTHETIC_SITES: u64 = 1000;

impl Store {
    /// Appends `spectra` synthetic spectra to the catalogue, for tests and benchmarks only:
    /// 4 spectra per file, each file with a station copy (volume `rfeye9xxxxx`) and a
    /// repository copy (volume `repository_volume`), 200 stations (receiver + antenna), 1,000
    /// sites in 50 synthetic municipalities of São Paulo (codes 3599901–3599950). Every tenth
    /// file has no site (NULL position), every seventh spectrum no description, NU_VBW is
    /// always NULL. Ids continue after the current maxima; rows are inserted with
    /// `INSERT … SELECT` over MariaDB's SEQUENCE engine in chunks of 100,000 spectra.
    /// `progress` receives the spectra inserted so far.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails (chunks already inserted stay).
    pub async fn fill_synthetic_catalog(
        &self,
        spectra: u64,
        repository_volume: &str,
        mut progress: impl FnMut(u64),
    ) -> Result<SyntheticReport, StoreError> {
        let q = |e| StoreError::query("filling a synthetic catalogue", e);
        let pool = self.pool();
        let exec = |sql: String| sqlx::query(self.sql(&sql));
        // Reference rows (idempotent).
        for sql in [
            "INSERT IGNORE INTO {RFDATA}.DIM_SITE_STATE (ID_STATE, NA_STATE, LC_STATE) VALUES (35, 'São Paulo', 'SP')",
            "INSERT IGNORE INTO {RFDATA}.DIM_SITE_COUNTY (ID_COUNTY, FK_STATE, NA_COUNTY)
             SELECT 3599900 + seq, 35, CONCAT('Synthetic county ', seq) FROM {RFDATA}.seq_1_to_50",
            "INSERT IGNORE INTO {RFDATA}.DIM_SITE_DISTRICT (FK_COUNTY, NA_DISTRICT)
             SELECT 3599900 + seq, CONCAT('Synthetic district ', seq) FROM {RFDATA}.seq_1_to_50",
            "INSERT IGNORE INTO {RFDATA}.DIM_SPECTRUM_PROCEDURE (NA_PROCEDURE) VALUES ('synthetic_logger')",
            "INSERT IGNORE INTO {RFDATA}.DIM_SPECTRUM_TRACE_TYPE (NA_TRACE_TYPE) VALUES ('peak')",
            "INSERT IGNORE INTO {RFDATA}.DIM_SPECTRUM_DETECTOR (NA_DETECTOR) VALUES ('RMS')",
            "INSERT IGNORE INTO {RFDATA}.DIM_SPECTRUM_UNIT (NA_MEASURE_UNIT) VALUES ('dBm')",
            "INSERT IGNORE INTO {RFDATA}.DIM_EQUIPMENT_TYPE (NA_EQUIPMENT_TYPE, NA_EQUIPMENT_TYPE_UID)
             SELECT 'CRFS / RFEye Node 20-6', 'rfeye' FROM DUAL WHERE NOT EXISTS
             (SELECT 1 FROM {RFDATA}.DIM_EQUIPMENT_TYPE WHERE NA_EQUIPMENT_TYPE_UID = 'rfeye')",
            "INSERT IGNORE INTO {RFDATA}.DIM_EQUIPMENT_TYPE (NA_EQUIPMENT_TYPE, NA_EQUIPMENT_TYPE_UID)
             SELECT 'CRFS / Antenna ACC', 'acc_ant' FROM DUAL WHERE NOT EXISTS
             (SELECT 1 FROM {RFDATA}.DIM_EQUIPMENT_TYPE WHERE NA_EQUIPMENT_TYPE_UID = 'acc_ant')",
            "INSERT IGNORE INTO {RFDATA}.DIM_SPECTRUM_EQUIPMENT (NA_EQUIPMENT, FK_EQUIPMENT_TYPE)
             SELECT CONCAT('rfeye', 900000 + seq),
                    (SELECT MIN(ID_EQUIPMENT_TYPE) FROM {RFDATA}.DIM_EQUIPMENT_TYPE WHERE NA_EQUIPMENT_TYPE_UID = 'rfeye')
             FROM {RFDATA}.seq_0_to_199",
            "INSERT IGNORE INTO {RFDATA}.DIM_SPECTRUM_EQUIPMENT (NA_EQUIPMENT, FK_EQUIPMENT_TYPE)
             SELECT CONCAT('acc_ant[0]_', 900000 + seq),
                    (SELECT MIN(ID_EQUIPMENT_TYPE) FROM {RFDATA}.DIM_EQUIPMENT_TYPE WHERE NA_EQUIPMENT_TYPE_UID = 'acc_ant')
             FROM {RFDATA}.seq_0_to_199",
        ] {
            exec(sql.to_string()).execute(pool).await.map_err(q)?;
        }
        let scalar = |sql: &str| sqlx::query_scalar::<_, i64>(self.sql(sql));
        let one = |sql: &str| scalar(sql).fetch_one(pool);
        let site_base =
            one("SELECT CAST(COALESCE(MAX(ID_SITE), 0) AS SIGNED) FROM {RFDATA}.DIM_SPECTRUM_SITE")
                .await
                .map_err(q)?;
        exec(format!(
            "INSERT INTO {{RFDATA}}.DIM_SPECTRUM_SITE
                 (ID_SITE, FK_DISTRICT, FK_COUNTY, FK_STATE, GEO_POINT, NU_ALTITUDE, NU_GNSS_MEASUREMENTS)
             SELECT {site_base} + seq, d.ID_DISTRICT, d.FK_COUNTY, 35,
                    POINT(-47.0 + seq * 0.001, -23.0 - seq * 0.0005), 700 + seq MOD 100, 1000
             FROM {{RFDATA}}.seq_1_to_{SYNTHETIC_SITES} JOIN {{RFDATA}}.DIM_SITE_DISTRICT d
               ON d.FK_COUNTY = 3599901 + seq MOD 50 AND d.NA_DISTRICT = CONCAT('Synthetic district ', 1 + seq MOD 50)"
        ))
        .execute(pool)
        .await
        .map_err(q)?;
        let ids = |sql: &'static str| {
            let s = self.sql(sql);
            async move { sqlx::query_scalar::<_, i64>(s).fetch_one(pool).await }
        };
        let proc_id = ids("SELECT CAST(ID_PROCEDURE AS SIGNED) FROM {RFDATA}.DIM_SPECTRUM_PROCEDURE WHERE NA_PROCEDURE = 'synthetic_logger'").await.map_err(q)?;
        let trace_id = ids("SELECT CAST(ID_TRACE_TYPE AS SIGNED) FROM {RFDATA}.DIM_SPECTRUM_TRACE_TYPE WHERE NA_TRACE_TYPE = 'peak'").await.map_err(q)?;
        let detector_id = ids("SELECT CAST(ID_DETECTOR AS SIGNED) FROM {RFDATA}.DIM_SPECTRUM_DETECTOR WHERE NA_DETECTOR = 'RMS'").await.map_err(q)?;
        let unit_id = ids("SELECT CAST(ID_MEASURE_UNIT AS SIGNED) FROM {RFDATA}.DIM_SPECTRUM_UNIT WHERE NA_MEASURE_UNIT = 'dBm'").await.map_err(q)?;
        let spectrum_base =
            one("SELECT CAST(COALESCE(MAX(ID_SPECTRUM), 0) AS SIGNED) FROM {RFDATA}.FACT_SPECTRUM")
                .await
                .map_err(q)?;
        let file_base =
            one("SELECT CAST(COALESCE(MAX(ID_FILE), 0) AS SIGNED) FROM {RFDATA}.DIM_SPECTRUM_FILE")
                .await
                .map_err(q)?;
        // The volume is bound; everything else formatted here is an integer we computed.
        let mut report = SyntheticReport { first_spectrum_id: spectrum_base + 1, ..Default::default() };
        let per_file = SYNTHETIC_SPECTRA_PER_FILE;
        let files_total = spectra.div_ceil(per_file);
        const CHUNK_FILES: u64 = 25_000;
        let mut file_lo = 0u64;
        while file_lo < files_total {
            let file_hi = (file_lo + CHUNK_FILES).min(files_total) - 1;
            let spec_lo = file_lo * per_file + 1;
            let spec_hi = ((file_hi + 1) * per_file).min(spectra);
            // Files f in file_lo..=file_hi: station copy file_base+2f+1, repository copy +2.
            sqlx::query(self.sql(&format!(
                "INSERT INTO {{RFDATA}}.DIM_SPECTRUM_FILE
                     (ID_FILE, ID_TYPE_FILE, NA_FILE, NA_PATH, NA_VOLUME, VL_FILE_SIZE, NA_SHA256)
                 SELECT {file_base} + 2 * f + c, NULL,
                   CONCAT('rfeye', 900000 + f MOD {SYNTHETIC_STATIONS}, '_',
                          DATE_FORMAT(TIMESTAMP '2026-01-01 00:00:00' + INTERVAL f MINUTE, '%y%m%d_T%H%i%s'),
                          '_', {file_base} + 2 * f, '.bin'),
                   IF(c = 1, '/mnt/internal/data',
                      CONCAT('/mnt/reposfi/2026/SP/', 3599901 + (1 + f MOD {SYNTHETIC_SITES}) MOD 50, '/',
                             {site_base} + 1 + f MOD {SYNTHETIC_SITES})),
                   IF(c = 1, CONCAT('rfeye', 900000 + f MOD {SYNTHETIC_STATIONS}), ?),
                   1000000 + (f * 7919) MOD 5000000,
                   SHA2(CONCAT('synthetic-file-', {file_base} + 2 * f), 256)
                 FROM (SELECT seq AS f FROM {{RFDATA}}.seq_{file_lo}_to_{file_hi}) x
                 JOIN (SELECT 1 AS c UNION ALL SELECT 2) y"
            )))
            .bind(repository_volume)
            .execute(pool)
            .await
            .map_err(q)?;
            sqlx::query(self.sql(&format!(
                "INSERT INTO {{RFDATA}}.FACT_SPECTRUM (ID_SPECTRUM, FK_SITE, FK_DETECTOR, FK_TRACE_TYPE,
                     FK_MEASURE_UNIT, FK_PROCEDURE, NA_DESCRIPTION, NU_FREQ_START, NU_FREQ_END, DT_TIME_START,
                     DT_TIME_END, NU_SAMPLE_DURATION, NU_TRACE_COUNT, NU_TRACE_LENGTH, NU_RBW, NU_VBW,
                     NU_ATT_GAIN, NU_THREAD_ID, NU_BLOCK_TYPE, NU_ANTENNA, BN_SPECTRUM_KEY)
                 SELECT {spectrum_base} + k, IF(f MOD 10 = 9, NULL, {site_base} + 1 + f MOD {SYNTHETIC_SITES}),
                   {detector_id}, {trace_id}, {unit_id}, {proc_id},
                   IF(k MOD 7 = 0, NULL, CONCAT('PMEC 2026 (Faixa ', t + 1, ' de {per_file}).')),
                   70 + t * 100 + 0.000123456, 170 + t * 100 + 0.000123456,
                   TIMESTAMP '2026-01-01 00:00:00.123456' + INTERVAL f MINUTE,
                   TIMESTAMP '2026-01-01 00:00:59.5' + INTERVAL f MINUTE,
                   0.5, 600 + k MOD 50, 4096, 12207.0, NULL, 0.0, 10 + t, 67, 0,
                   UNHEX(SHA2(CONCAT('synthetic-spectrum-', {spectrum_base} + k), 256))
                 FROM (SELECT seq AS k, (seq - 1) DIV {per_file} AS f, (seq - 1) MOD {per_file} AS t
                       FROM {{RFDATA}}.seq_{spec_lo}_to_{spec_hi}) x"
            )))
            .execute(pool)
            .await
            .map_err(q)?;
            sqlx::query(self.sql(&format!(
                "INSERT INTO {{RFDATA}}.BRIDGE_SPECTRUM_FILE (FK_FILE, FK_SPECTRUM)
                 SELECT {file_base} + 2 * ((seq - 1) DIV {per_file}) + c, {spectrum_base} + seq
                 FROM {{RFDATA}}.seq_{spec_lo}_to_{spec_hi} JOIN (SELECT 1 AS c UNION ALL SELECT 2) y"
            )))
            .execute(pool)
            .await
            .map_err(q)?;
            sqlx::query(self.sql(&format!(
                "INSERT INTO {{RFDATA}}.BRIDGE_SPECTRUM_EQUIPMENT (FK_EQUIPMENT, FK_SPECTRUM)
                 SELECT e.ID_EQUIPMENT, {spectrum_base} + x.seq
                 FROM {{RFDATA}}.seq_{spec_lo}_to_{spec_hi} x
                 JOIN (SELECT ID_EQUIPMENT,
                              CAST(SUBSTRING_INDEX(NA_EQUIPMENT, IF(NA_EQUIPMENT LIKE 'rfeye%', 'rfeye', '_'), -1) AS SIGNED) - 900000 AS st
                       FROM {{RFDATA}}.DIM_SPECTRUM_EQUIPMENT
                       WHERE NA_EQUIPMENT LIKE 'rfeye9_____' OR NA_EQUIPMENT LIKE 'acc\\_ant[0]\\_9_____') e
                   ON e.st = ((x.seq - 1) DIV {per_file}) MOD {SYNTHETIC_STATIONS}"
            )))
            .execute(pool)
            .await
            .map_err(q)?;
            report.spectra += spec_hi + 1 - spec_lo;
            report.files += 2 * (file_hi + 1 - file_lo);
            report.without_site +=
                (spec_lo..=spec_hi).filter(|k| ((k - 1) / per_file) % 10 == 9).count() as u64;
            progress(report.spectra);
            file_lo = file_hi + 1;
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_information_schema_types() {
        assert_eq!(column_kind("int", "int(11)", Some(10), Some(0)), (ColumnKind::Int32, false));
        assert_eq!(column_kind("int", "int(10) unsigned", Some(10), Some(0)), (ColumnKind::Int64, false));
        assert_eq!(
            column_kind("bigint", "bigint(20) unsigned", Some(20), Some(0)),
            (ColumnKind::UInt64, false)
        );
        assert_eq!(
            column_kind("decimal", "decimal(18,9)", Some(18), Some(9)),
            (ColumnKind::Decimal { precision: 18, scale: 9 }, false)
        );
        assert_eq!(column_kind("decimal", "decimal(65,2)", Some(65), Some(2)), (ColumnKind::Utf8, false));
        assert_eq!(column_kind("point", "point", None, None), (ColumnKind::Binary, true));
        assert_eq!(column_kind("datetime", "datetime(6)", None, None), (ColumnKind::DateTime, false));
        assert_eq!(column_kind("uuid", "uuid", None, None), (ColumnKind::Utf8, false));
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("A`B"), "`A``B`");
    }
}
