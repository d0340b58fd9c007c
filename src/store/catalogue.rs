//! Statements of the processing stage: claim a copied file, write its catalogue rows in one
//! transaction, finish or fail the task.
//!
//! Every catalogue write is idempotent: dimensions are select-or-insert on unique names,
//! `FACT_SPECTRUM` rows carry a natural key (hash of the file content and the stream's
//! identity), file rows a unique (volume, path, name) key, bridges are primary keys. Reprocessing
//! a file therefore adds no row, and a site's position is refined only the first time a file is
//! catalogued. Site creation is serialised per state (the state row is the lock), so two files
//! from a new place cannot create two sites.

use std::time::Duration;

use sqlx::{MySqlConnection, Row};

use super::{Store, StoreError, status, task_type};
use crate::process::site::Seat;

/// A claimed processing task.
#[derive(Debug, Clone)]
pub struct ProcessingJob {
    /// `FILE_TASK.ID_FILE_TASK`.
    pub file_id: i64,
    /// Claim attempt (fencing token).
    pub attempt: u32,
    /// Owner instance.
    pub owner: String,
    /// Host id.
    pub host_id: i32,
    /// Host equipment name (the station copy's volume).
    pub host_uid: String,
    /// Station directory.
    pub station_dir: String,
    /// Station file name.
    pub station_name: String,
    /// Repository directory of the copy.
    pub server_dir: String,
    /// Repository file name of the copy.
    pub server_name: String,
    /// Size recorded by the backup.
    pub size: Option<i64>,
    /// SHA-256 recorded by the backup.
    pub sha256: Option<String>,
    /// Where an earlier attempt decided to file it (crash repair).
    pub target_path: Option<String>,
    /// Failed attempts so far.
    pub failures: u32,
    /// Year the file was listed by the station index (fallback filing year).
    pub listed_year: i32,
}

/// One spectrum stream to catalogue.
#[derive(Debug, Clone)]
pub struct StreamRow {
    /// Natural key (32 bytes).
    pub key: [u8; 32],
    /// Description.
    pub description: Option<String>,
    /// Start frequency, MHz.
    pub start_mhz: f64,
    /// Stop frequency, MHz.
    pub stop_mhz: f64,
    /// First sweep (logger clock).
    pub first_sweep: chrono::NaiveDateTime,
    /// Last sweep.
    pub last_sweep: chrono::NaiveDateTime,
    /// Sweeps.
    pub trace_count: u64,
    /// Points per sweep.
    pub points: u32,
    /// RBW, Hz.
    pub rbw_hz: Option<i32>,
    /// Unit name.
    pub unit: String,
    /// Trace type (processing).
    pub trace_type: String,
    /// Thread id.
    pub thread_id: u32,
    /// CRFS block type.
    pub block_type: i32,
    /// Antenna input.
    pub antenna: u8,
}

/// GPS summary of a file.
#[derive(Debug, Clone, Copy)]
pub struct GpsSummary {
    /// Median latitude.
    pub latitude: f64,
    /// Median longitude.
    pub longitude: f64,
    /// Median altitude, m.
    pub altitude: f64,
    /// Valid fixes.
    pub samples: u64,
    /// Sums over the valid fixes (for the running mean).
    pub sum_latitude: f64,
    /// Sum of longitudes.
    pub sum_longitude: f64,
    /// Sum of altitudes.
    pub sum_altitude: f64,
}

/// What to write for one file.
#[derive(Debug, Clone)]
pub struct CatalogueEntry {
    /// Receiver name (lower case).
    pub receiver: String,
    /// Antenna names per antenna input used.
    pub antennas: Vec<(u8, String)>,
    /// Procedure (logger method).
    pub procedure: String,
    /// GPS, when the file had a valid fix.
    pub gps: Option<GpsSummary>,
    /// Nearest municipal seat to the GPS position.
    pub seat: Option<Seat>,
    /// Streams.
    pub streams: Vec<StreamRow>,
    /// File size.
    pub size: i64,
    /// File SHA-256, hex.
    pub sha256: String,
    /// Volume name of repository copies.
    pub repo_volume: String,
    /// Site tolerance, degrees per axis.
    pub tolerance: f64,
    /// Stop refining a site after this many samples.
    pub max_site_samples: u64,
    /// District name for a new site (from the optional geocoder).
    pub district: Option<String>,
}

/// The site a file was attached to.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteInfo {
    /// `ID_SITE`.
    pub id: i32,
    /// IBGE state code.
    pub state: Option<i32>,
    /// Two-letter state code.
    pub state_code: Option<String>,
    /// IBGE municipality code.
    pub county: Option<i32>,
    /// Created by this file.
    pub created: bool,
}

/// Result of [`Store::catalogue_file`].
#[derive(Debug, Clone, PartialEq)]
pub struct Catalogued {
    /// Site, if the file had GPS.
    pub site: Option<SiteInfo>,
    /// Spectra inserted now.
    pub new_spectra: u64,
    /// Spectra already catalogued (reprocessing).
    pub known_spectra: u64,
    /// Repository directory and name chosen.
    pub target: (String, String),
}

fn lease_lost() -> StoreError {
    StoreError::Invalid("lease lost: another worker owns this task now".into())
}

impl Store {
    /// Claims the oldest pending processing task.
    ///
    /// # Errors
    /// [`StoreError`] on database failure.
    pub async fn claim_processing(
        &self,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<ProcessingJob>, StoreError> {
        let q = |e| StoreError::query("claiming a processing task", e);
        let mut tx = self.pool().begin().await.map_err(q)?;
        let id: Option<i64> = sqlx::query_scalar(self.sql(
            "SELECT ID_FILE_TASK FROM {BPDATA}.FILE_TASK
             WHERE NU_TYPE = ? AND NU_STATUS = ? AND (DT_NOT_BEFORE IS NULL OR DT_NOT_BEFORE <= NOW(6))
             ORDER BY DT_FILE_TASK, ID_FILE_TASK LIMIT 1 FOR UPDATE SKIP LOCKED",
        ))
        .bind(task_type::PROCESSING)
        .bind(status::PENDING)
        .fetch_optional(&mut *tx)
        .await
        .map_err(q)?;
        let Some(id) = id else { return Ok(None) };
        sqlx::query(self.sql(
            "UPDATE {BPDATA}.FILE_TASK SET NU_STATUS = ?, NA_OWNER = ?, NU_PID = ?, NU_ATTEMPT = NU_ATTEMPT + 1,
                    DT_LEASE_EXPIRY = NOW(6) + INTERVAL ? MICROSECOND WHERE ID_FILE_TASK = ?",
        ))
        .bind(status::RUNNING)
        .bind(owner)
        .bind(std::process::id())
        .bind(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX))
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(q)?;
        let r = sqlx::query(self.sql(
            "SELECT f.NU_ATTEMPT, f.FK_HOST, IFNULL(h.NA_HOST_UID, CONCAT('host', f.FK_HOST)), f.NA_HOST_FILE_PATH, f.NA_HOST_FILE_NAME,
                    IFNULL(f.NA_SERVER_FILE_PATH, ''), IFNULL(f.NA_SERVER_FILE_NAME, ''), f.VL_FILE_SIZE, f.NA_SHA256,
                    f.NA_TARGET_PATH, f.NU_FAILURES, YEAR(f.DT_FILE_TASK)
             FROM {BPDATA}.FILE_TASK f JOIN {BPDATA}.HOST h ON h.ID_HOST = f.FK_HOST WHERE f.ID_FILE_TASK = ?",
        ))
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .map_err(q)?;
        self.file_history(&mut tx, id, owner, status::PENDING, "Processing claimed").await?;
        tx.commit().await.map_err(q)?;
        Ok(Some(ProcessingJob {
            file_id: id,
            attempt: r.try_get(0).map_err(q)?,
            owner: owner.into(),
            host_id: r.try_get(1).map_err(q)?,
            host_uid: r.try_get(2).map_err(q)?,
            station_dir: r.try_get(3).map_err(q)?,
            station_name: r.try_get(4).map_err(q)?,
            server_dir: r.try_get(5).map_err(q)?,
            server_name: r.try_get(6).map_err(q)?,
            size: r.try_get(7).map_err(q)?,
            sha256: r.try_get(8).map_err(q)?,
            target_path: r.try_get(9).map_err(q)?,
            failures: r.try_get(10).map_err(q)?,
            listed_year: r.try_get::<Option<i32>, _>(11).map_err(q)?.unwrap_or(1970),
        }))
    }

    async fn fence_file(&self, conn: &mut MySqlConnection, job: &ProcessingJob) -> Result<(), StoreError> {
        let held: Option<i64> = sqlx::query_scalar(self.sql(
            "SELECT ID_FILE_TASK FROM {BPDATA}.FILE_TASK
             WHERE ID_FILE_TASK = ? AND NU_ATTEMPT = ? AND NA_OWNER = ? AND NU_STATUS = ? FOR UPDATE",
        ))
        .bind(job.file_id)
        .bind(job.attempt)
        .bind(&job.owner)
        .bind(status::RUNNING)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| StoreError::query("checking the processing lease", e))?;
        if held.is_none() {
            return Err(lease_lost());
        }
        Ok(())
    }

    /// `true` when a site lies within `tolerance` degrees (both axes) of the position.
    ///
    /// # Errors
    /// [`StoreError`] on database failure.
    pub async fn site_near(&self, latitude: f64, longitude: f64, tolerance: f64) -> Result<bool, StoreError> {
        let envelope = format!(
            "POLYGON(({a} {b}, {c} {b}, {c} {d}, {a} {d}, {a} {b}))",
            a = longitude - tolerance,
            b = latitude - tolerance,
            c = longitude + tolerance,
            d = latitude + tolerance
        );
        let n: i64 = sqlx::query_scalar(self.sql(
            "SELECT COUNT(*) FROM {RFDATA}.DIM_SPECTRUM_SITE WHERE MBRIntersects(GEO_POINT, ST_GeomFromText(?))",
        ))
        .bind(envelope)
        .fetch_one(self.pool())
        .await
        .map_err(|e| StoreError::query("looking for a nearby site", e))?;
        Ok(n > 0)
    }

    /// Municipal seats with coordinates (from `refdata load`).
    ///
    /// # Errors
    /// [`StoreError`] on database failure.
    pub async fn load_seats(&self) -> Result<Vec<Seat>, StoreError> {
        let rows = sqlx::query(self.sql(
            "SELECT ID_COUNTY, FK_STATE, CAST(VL_SEAT_LATITUDE AS DOUBLE), CAST(VL_SEAT_LONGITUDE AS DOUBLE)
             FROM {RFDATA}.DIM_SITE_COUNTY WHERE VL_SEAT_LATITUDE IS NOT NULL AND VL_SEAT_LONGITUDE IS NOT NULL",
        ))
        .fetch_all(self.pool())
        .await
        .map_err(|e| StoreError::query("loading municipal seats", e))?;
        rows.iter()
            .map(|r| {
                Ok(Seat {
                    county: r.try_get(0)?,
                    state: r.try_get(1)?,
                    latitude: r.try_get(2)?,
                    longitude: r.try_get(3)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| StoreError::query("loading municipal seats", e))
    }

    async fn dim_id(
        &self,
        conn: &mut MySqlConnection,
        table: &str,
        id_col: &str,
        name_col: &str,
        name: &str,
    ) -> Result<i32, StoreError> {
        let q = |e| StoreError::query("writing a catalogue dimension", e);
        sqlx::query(self.sql(&format!("INSERT IGNORE INTO {{RFDATA}}.{table} ({name_col}) VALUES (?)")))
            .bind(name)
            .execute(&mut *conn)
            .await
            .map_err(q)?;
        sqlx::query_scalar(self.sql(&format!("SELECT {id_col} FROM {{RFDATA}}.{table} WHERE {name_col} = ?")))
            .bind(name)
            .fetch_one(&mut *conn)
            .await
            .map_err(q)
    }

    async fn equipment_id(&self, conn: &mut MySqlConnection, name: &str) -> Result<i32, StoreError> {
        let q = |e| StoreError::query("writing equipment", e);
        sqlx::query(self.sql(
            "INSERT IGNORE INTO {RFDATA}.DIM_SPECTRUM_EQUIPMENT (NA_EQUIPMENT, FK_EQUIPMENT_TYPE)
             SELECT ?, (SELECT ID_EQUIPMENT_TYPE FROM {RFDATA}.DIM_EQUIPMENT_TYPE
                        WHERE NA_EQUIPMENT_TYPE_UID <> '' AND INSTR(?, NA_EQUIPMENT_TYPE_UID) > 0
                        ORDER BY CHAR_LENGTH(NA_EQUIPMENT_TYPE_UID) DESC, ID_EQUIPMENT_TYPE LIMIT 1)",
        ))
        .bind(name)
        .bind(name)
        .execute(&mut *conn)
        .await
        .map_err(q)?;
        sqlx::query_scalar(
            self.sql("SELECT ID_EQUIPMENT FROM {RFDATA}.DIM_SPECTRUM_EQUIPMENT WHERE NA_EQUIPMENT = ?"),
        )
        .bind(name)
        .fetch_one(&mut *conn)
        .await
        .map_err(q)
    }

    async fn file_row(
        &self,
        conn: &mut MySqlConnection,
        volume: &str,
        path: &str,
        name: &str,
        size: i64,
        sha256: &str,
    ) -> Result<i32, StoreError> {
        let res = sqlx::query(self.sql(
            "INSERT INTO {RFDATA}.DIM_SPECTRUM_FILE (DT_FILE_LOGGED, ID_TYPE_FILE, NA_FILE, NA_PATH, NA_VOLUME, VL_FILE_SIZE, NA_SHA256)
             VALUES (NOW(), 1, ?, ?, ?, ?, ?)
             ON DUPLICATE KEY UPDATE ID_FILE = LAST_INSERT_ID(ID_FILE), VL_FILE_SIZE = VALUES(VL_FILE_SIZE), NA_SHA256 = VALUES(NA_SHA256)",
        ))
        .bind(name)
        .bind(path)
        .bind(volume)
        .bind(size)
        .bind(sha256)
        .execute(&mut *conn)
        .await
        .map_err(|e| StoreError::query("writing a file row", e))?;
        i32::try_from(res.last_insert_id()).map_err(|_| StoreError::Invalid("file id out of range".into()))
    }

    async fn resolve_site(
        &self,
        conn: &mut MySqlConnection,
        entry: &CatalogueEntry,
        gps: &GpsSummary,
        first_time: bool,
    ) -> Result<SiteInfo, StoreError> {
        let q = |e| StoreError::query("resolving the site", e);
        // Serialise site creation per state: the state row is the lock.
        if let Some(seat) = &entry.seat {
            sqlx::query(
                self.sql("SELECT ID_STATE FROM {RFDATA}.DIM_SITE_STATE WHERE ID_STATE = ? FOR UPDATE"),
            )
            .bind(seat.state)
            .fetch_optional(&mut *conn)
            .await
            .map_err(q)?;
        }
        let t = entry.tolerance;
        let (lat, lon) = (gps.latitude, gps.longitude);
        let envelope = format!(
            "POLYGON(({a} {b}, {c} {b}, {c} {d}, {a} {d}, {a} {b}))",
            a = lon - t,
            b = lat - t,
            c = lon + t,
            d = lat + t
        );
        let candidates = sqlx::query(self.sql(
            "SELECT ID_SITE, ST_X(GEO_POINT), ST_Y(GEO_POINT), IFNULL(NU_GNSS_MEASUREMENTS, 0), CAST(IFNULL(NU_ALTITUDE, 0) AS DOUBLE),
                    FK_STATE, FK_COUNTY
             FROM {RFDATA}.DIM_SPECTRUM_SITE WHERE MBRIntersects(GEO_POINT, ST_GeomFromText(?)) FOR UPDATE",
        ))
        .bind(&envelope)
        .fetch_all(&mut *conn)
        .await
        .map_err(q)?;
        let mut best: Option<(f64, sqlx::mysql::MySqlRow)> = None;
        for r in candidates {
            let x: f64 = r.try_get(1).map_err(q)?;
            let y: f64 = r.try_get(2).map_err(q)?;
            if !crate::process::site::within(t, lat, lon, y, x) {
                continue;
            }
            let d = crate::process::site::distance_m(lat, lon, y, x);
            if best.as_ref().is_none_or(|(bd, _)| d < *bd) {
                best = Some((d, r));
            }
        }
        let (id, state, county, created) = if let Some((_, r)) = best {
            let id: i32 = r.try_get(0).map_err(q)?;
            let n: i64 = r.try_get(3).map_err(q)?;
            let n = u64::try_from(n).unwrap_or(0);
            if first_time && n < entry.max_site_samples && gps.samples > 0 {
                let x: f64 = r.try_get(1).map_err(q)?;
                let y: f64 = r.try_get(2).map_err(q)?;
                let alt: f64 = r.try_get(4).map_err(q)?;
                use crate::process::site::refine;
                let m = gps.samples;
                let point = format!(
                    "POINT({} {})",
                    refine(x, n, gps.sum_longitude, m),
                    refine(y, n, gps.sum_latitude, m)
                );
                sqlx::query(self.sql(
                    "UPDATE {RFDATA}.DIM_SPECTRUM_SITE SET GEO_POINT = ST_GeomFromText(?), NU_ALTITUDE = ?, NU_GNSS_MEASUREMENTS = ?
                     WHERE ID_SITE = ?",
                ))
                .bind(point)
                .bind(format!("{:.3}", refine(alt, n, gps.sum_altitude, m)))
                .bind(i64::try_from(n + m).unwrap_or(i64::MAX))
                .bind(id)
                .execute(&mut *conn)
                .await
                .map_err(q)?;
            }
            (
                id,
                r.try_get::<Option<i32>, _>(5).map_err(q)?,
                r.try_get::<Option<i32>, _>(6).map_err(q)?,
                false,
            )
        } else {
            let (state, county) =
                entry.seat.as_ref().map(|s| (Some(s.state), Some(s.county))).unwrap_or((None, None));
            let district = match (county, entry.district.as_deref()) {
                (Some(c), Some(name)) => {
                    sqlx::query(self.sql(
                        "INSERT IGNORE INTO {RFDATA}.DIM_SITE_DISTRICT (FK_COUNTY, NA_DISTRICT) VALUES (?, ?)",
                    ))
                    .bind(c)
                    .bind(name)
                    .execute(&mut *conn)
                    .await
                    .map_err(q)?;
                    sqlx::query_scalar::<_, i32>(self.sql(
                        "SELECT ID_DISTRICT FROM {RFDATA}.DIM_SITE_DISTRICT WHERE FK_COUNTY = ? AND NA_DISTRICT = ?",
                    ))
                    .bind(c)
                    .bind(name)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(q)?
                }
                _ => None,
            };
            let res = sqlx::query(self.sql(
                "INSERT INTO {RFDATA}.DIM_SPECTRUM_SITE (FK_STATE, FK_COUNTY, FK_DISTRICT, FK_TYPE, GEO_POINT, NU_ALTITUDE, NU_GNSS_MEASUREMENTS)
                 VALUES (?, ?, ?, 1, ST_GeomFromText(?), ?, ?)",
            ))
            .bind(state)
            .bind(county)
            .bind(district)
            .bind(format!("POINT({lon} {lat})"))
            .bind(format!("{:.3}", gps.altitude))
            .bind(i64::try_from(gps.samples).unwrap_or(i64::MAX))
            .execute(&mut *conn)
            .await
            .map_err(q)?;
            (i32::try_from(res.last_insert_id()).unwrap_or(0), state, county, true)
        };
        let state_code: Option<String> = match state {
            Some(s) => sqlx::query_scalar(
                self.sql("SELECT LC_STATE FROM {RFDATA}.DIM_SITE_STATE WHERE ID_STATE = ?"),
            )
            .bind(s)
            .fetch_optional(&mut *conn)
            .await
            .map_err(q)?
            .flatten(),
            None => None,
        };
        Ok(SiteInfo { id, state, state_code, county, created })
    }

    /// Writes every catalogue row of one file in one transaction, fenced by the claim.
    /// `place` chooses the repository directory and name once the site is known; the choice is
    /// recorded in the task (for crash repair) and in the repository copy's file row.
    ///
    /// # Errors
    /// [`StoreError`] (lease lost included); nothing is committed then.
    pub async fn catalogue_file(
        &self,
        job: &ProcessingJob,
        entry: &CatalogueEntry,
        place: impl FnOnce(Option<&SiteInfo>) -> (String, String),
    ) -> Result<Catalogued, StoreError> {
        let q = |e| StoreError::query("writing the catalogue", e);
        let mut tx = self.pool().begin().await.map_err(q)?;
        self.fence_file(&mut tx, job).await?;
        // Was this content catalogued before (reprocessing)? Then the site is not refined again.
        let known: Option<i32> = sqlx::query_scalar(self.sql(
            "SELECT ID_FILE FROM {RFDATA}.DIM_SPECTRUM_FILE
             WHERE BN_FILE_KEY = UNHEX(SHA2(CONCAT_WS(CHAR(0), ?, ?, ?), 256)) AND NA_SHA256 = ?",
        ))
        .bind(&job.host_uid)
        .bind(&job.station_dir)
        .bind(&job.station_name)
        .bind(&entry.sha256)
        .fetch_optional(&mut *tx)
        .await
        .map_err(q)?;
        let site = match &entry.gps {
            Some(gps) => Some(self.resolve_site(&mut tx, entry, gps, known.is_none()).await?),
            None => None,
        };
        let (dir, name) = place(site.as_ref());

        let procedure = self
            .dim_id(&mut tx, "DIM_SPECTRUM_PROCEDURE", "ID_PROCEDURE", "NA_PROCEDURE", &entry.procedure)
            .await?;
        let detector =
            self.dim_id(&mut tx, "DIM_SPECTRUM_DETECTOR", "ID_DETECTOR", "NA_DETECTOR", "RMS").await?;
        let receiver = self.equipment_id(&mut tx, &entry.receiver).await?;
        let mut antennas = Vec::new();
        for (input, name) in &entry.antennas {
            antennas.push((*input, self.equipment_id(&mut tx, name).await?));
        }
        let station_file = self
            .file_row(&mut tx, &job.host_uid, &job.station_dir, &job.station_name, entry.size, &entry.sha256)
            .await?;
        let repo_file =
            self.file_row(&mut tx, &entry.repo_volume, &dir, &name, entry.size, &entry.sha256).await?;

        let mut new_spectra = 0;
        let mut known_spectra = 0;
        for s in &entry.streams {
            let unit = self
                .dim_id(&mut tx, "DIM_SPECTRUM_UNIT", "ID_MEASURE_UNIT", "NA_MEASURE_UNIT", &s.unit)
                .await?;
            let trace = self
                .dim_id(&mut tx, "DIM_SPECTRUM_TRACE_TYPE", "ID_TRACE_TYPE", "NA_TRACE_TYPE", &s.trace_type)
                .await?;
            let res = sqlx::query(self.sql(
                "INSERT INTO {RFDATA}.FACT_SPECTRUM (FK_SITE, FK_DETECTOR, FK_TRACE_TYPE, FK_MEASURE_UNIT, FK_PROCEDURE, NA_DESCRIPTION,
                        NU_FREQ_START, NU_FREQ_END, DT_TIME_START, DT_TIME_END, NU_SAMPLE_DURATION, NU_TRACE_COUNT, NU_TRACE_LENGTH,
                        NU_RBW, NU_ATT_GAIN, NU_THREAD_ID, NU_BLOCK_TYPE, NU_ANTENNA, BN_SPECTRUM_KEY)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, 0, ?, ?, ?, ?)
                 ON DUPLICATE KEY UPDATE ID_SPECTRUM = LAST_INSERT_ID(ID_SPECTRUM)",
            ))
            .bind(site.as_ref().map(|s| s.id))
            .bind(detector)
            .bind(trace)
            .bind(unit)
            .bind(procedure)
            .bind(s.description.as_deref().map(|d| d.chars().take(3000).collect::<String>()))
            .bind(format!("{:.9}", s.start_mhz))
            .bind(format!("{:.9}", s.stop_mhz))
            .bind(s.first_sweep)
            .bind(s.last_sweep)
            .bind(i64::try_from(s.trace_count).unwrap_or(i64::MAX))
            .bind(s.points)
            .bind(s.rbw_hz.filter(|r| *r > 0))
            .bind(s.thread_id)
            .bind(s.block_type)
            .bind(s.antenna)
            .bind(&s.key[..])
            .execute(&mut *tx)
            .await
            .map_err(q)?;
            // 1 = inserted, 2 = duplicate key path taken.
            if res.rows_affected() == 1 {
                new_spectra += 1;
            } else {
                known_spectra += 1;
            }
            let spectrum = i32::try_from(res.last_insert_id()).unwrap_or(0);
            let mut equipment = vec![receiver];
            equipment.extend(antennas.iter().filter(|(i, _)| *i == s.antenna).map(|(_, id)| *id));
            for e in equipment {
                sqlx::query(self.sql("INSERT IGNORE INTO {RFDATA}.BRIDGE_SPECTRUM_EQUIPMENT (FK_EQUIPMENT, FK_SPECTRUM) VALUES (?, ?)"))
                    .bind(e)
                    .bind(spectrum)
                    .execute(&mut *tx)
                    .await
                    .map_err(q)?;
            }
            sqlx::query(self.sql(
                "INSERT IGNORE INTO {RFDATA}.BRIDGE_SPECTRUM_FILE (FK_FILE, FK_SPECTRUM) VALUES (?, ?), (?, ?)",
            ))
            .bind(station_file)
            .bind(spectrum)
            .bind(repo_file)
            .bind(spectrum)
            .execute(&mut *tx)
            .await
            .map_err(q)?;
        }
        let target = format!("{dir}/{name}");
        sqlx::query(self.sql("UPDATE {BPDATA}.FILE_TASK SET NA_TARGET_PATH = ? WHERE ID_FILE_TASK = ?"))
            .bind(&target)
            .bind(job.file_id)
            .execute(&mut *tx)
            .await
            .map_err(q)?;
        sqlx::query(self.sql(
            "UPDATE {BPDATA}.HOST SET FK_EQUIPMENT_RFDB = ? WHERE ID_HOST = ? AND FK_EQUIPMENT_RFDB IS NULL",
        ))
        .bind(receiver)
        .bind(job.host_id)
        .execute(&mut *tx)
        .await
        .map_err(q)?;
        tx.commit().await.map_err(q)?;
        Ok(Catalogued { site, new_spectra, known_spectra, target: (dir, name) })
    }

    /// Marks a processed file done, with its final location.
    ///
    /// # Errors
    /// [`StoreError`] (lease lost included).
    pub async fn finish_processing(
        &self,
        job: &ProcessingJob,
        dir: &str,
        name: &str,
        message: &str,
    ) -> Result<(), StoreError> {
        let q = |e| StoreError::query("finishing a processing task", e);
        let mut tx = self.pool().begin().await.map_err(q)?;
        self.fence_file(&mut tx, job).await?;
        sqlx::query(self.sql(
            "UPDATE {BPDATA}.FILE_TASK SET NU_STATUS = ?, NA_SERVER_FILE_PATH = ?, NA_SERVER_FILE_NAME = ?, DT_PROCESSED = NOW(6),
                    NA_MESSAGE = ?, NA_ERROR_CODE = NULL, NA_OWNER = NULL, NU_PID = NULL, DT_LEASE_EXPIRY = NULL, NU_FAILURES = 0
             WHERE ID_FILE_TASK = ?",
        ))
        .bind(status::DONE)
        .bind(dir)
        .bind(name)
        .bind(message)
        .bind(job.file_id)
        .execute(&mut *tx)
        .await
        .map_err(q)?;
        self.file_history(&mut tx, job.file_id, &job.owner, status::RUNNING, message).await?;
        tx.commit().await.map_err(q)?;
        Ok(())
    }

    /// Records a processing failure. `retry_after = None` is final (the file went to trash, at
    /// `moved_to` if given); otherwise the task returns to pending after the delay.
    ///
    /// # Errors
    /// [`StoreError`] (lease lost included).
    pub async fn fail_processing(
        &self,
        job: &ProcessingJob,
        code: &str,
        message: &str,
        moved_to: Option<(&str, &str)>,
        retry_after: Option<Duration>,
    ) -> Result<(), StoreError> {
        let q = |e| StoreError::query("recording a processing failure", e);
        let mut tx = self.pool().begin().await.map_err(q)?;
        self.fence_file(&mut tx, job).await?;
        let to = if retry_after.is_some() { status::PENDING } else { status::ERROR };
        let delay = retry_after.map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        sqlx::query(self.sql(
            "UPDATE {BPDATA}.FILE_TASK SET NU_STATUS = ?, NA_ERROR_CODE = ?, NA_MESSAGE = ?, NA_OWNER = NULL, NU_PID = NULL,
                    DT_LEASE_EXPIRY = NULL, NU_FAILURES = NU_FAILURES + 1,
                    NA_SERVER_FILE_PATH = IFNULL(?, NA_SERVER_FILE_PATH), NA_SERVER_FILE_NAME = IFNULL(?, NA_SERVER_FILE_NAME),
                    DT_NOT_BEFORE = IF(? IS NULL, NULL, NOW(6) + INTERVAL ? MICROSECOND)
             WHERE ID_FILE_TASK = ?",
        ))
        .bind(to)
        .bind(code)
        .bind(message.chars().take(4000).collect::<String>())
        .bind(moved_to.map(|m| m.0))
        .bind(moved_to.map(|m| m.1))
        .bind(delay)
        .bind(delay.unwrap_or(0))
        .bind(job.file_id)
        .execute(&mut *tx)
        .await
        .map_err(q)?;
        self.file_history(&mut tx, job.file_id, &job.owner, status::RUNNING, message).await?;
        tx.commit().await.map_err(q)?;
        Ok(())
    }

    /// Returns processing tasks whose lease expired (dead or hung worker) to the queue.
    ///
    /// # Errors
    /// [`StoreError`] on database failure.
    pub async fn requeue_expired_processing(
        &self,
        actor: &str,
        host_prefix: Option<(&str, &str)>,
    ) -> Result<u64, StoreError> {
        let q = |e| StoreError::query("requeueing expired processing claims", e);
        let mut tx = self.pool().begin().await.map_err(q)?;
        let (prefix, me) = host_prefix.map(|(p, m)| (format!("{p}%"), m.to_string())).unwrap_or_default();
        let cond = "NU_TYPE = ? AND NU_STATUS = ? AND (DT_LEASE_EXPIRY < NOW(6) OR (? <> '' AND NA_OWNER LIKE ? AND NA_OWNER <> ?))";
        sqlx::query(self.sql(&format!(
            "INSERT INTO {{BPDATA}}.TASK_HISTORY (NA_TASK_KIND, FK_TASK, FK_HOST, NA_ACTOR, NU_TYPE, NU_STATUS_FROM, NU_STATUS_TO, NU_ATTEMPT, NA_MESSAGE)
             SELECT 'FILE', ID_FILE_TASK, FK_HOST, ?, NU_TYPE, NU_STATUS, ?, NU_ATTEMPT, 'Lease expired: requeued'
             FROM {{BPDATA}}.FILE_TASK WHERE {cond} FOR UPDATE SKIP LOCKED"
        )))
        .bind(actor)
        .bind(status::PENDING)
        .bind(task_type::PROCESSING)
        .bind(status::RUNNING)
        .bind(&prefix)
        .bind(&prefix)
        .bind(&me)
        .execute(&mut *tx)
        .await
        .map_err(q)?;
        let res = sqlx::query(self.sql(&format!(
            "UPDATE {{BPDATA}}.FILE_TASK SET NU_STATUS = ?, NA_OWNER = NULL, NU_PID = NULL, DT_LEASE_EXPIRY = NULL WHERE {cond}"
        )))
        .bind(status::PENDING)
        .bind(task_type::PROCESSING)
        .bind(status::RUNNING)
        .bind(&prefix)
        .bind(&prefix)
        .bind(&me)
        .execute(&mut *tx)
        .await
        .map_err(q)?;
        tx.commit().await.map_err(q)?;
        Ok(res.rows_affected())
    }
}
