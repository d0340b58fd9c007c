//! Aggregate, read-only statements behind the observability endpoint (`/status`, `/metrics`).
//!
//! Why: Zabbix and Prometheus want the shape of the whole queue (task depths by type and
//! status, hosts by condition, failures by error code) and the throughput of the pipeline
//! (files and bytes copied, files catalogued, in the last hour and in total). Like the gateway
//! counters, every number is computed from the task rows at read time; nothing is stored.
//!
//! Cost: [`Store::queue_overview`] is one statement whose branches read only indexes
//! (`IX_HOST_TASK_QUEUE`, `IX_FILE_TASK_QUEUE`, `IX_FILE_TASK_LEASE` for the failed rows) and the
//! small `HOST` table, so it is cheap enough for every scrape. [`Store::throughput`] is one
//! pass over `FILE_TASK` (sizes are not in any index); it is meant for `/status`, which is
//! polled rarely. What this module must not do: take locks (plain consistent reads, no
//! `FOR UPDATE`), write anything, or return an unbounded number of rows (error codes are
//! capped at [`MAX_ERROR_CODES`] per task type).

use std::time::Duration;

use sqlx::Row;

use super::{Store, StoreError, status};

/// Most distinct error codes reported per task type (the most frequent ones).
pub const MAX_ERROR_CODES: u32 = 50;

/// Tasks of one type in one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueCount {
    /// Task type ([`super::task_type`]).
    pub task_type: i8,
    /// Task status ([`super::status`]).
    pub status: i8,
    /// How many.
    pub count: i64,
}

/// Failed file tasks of one type with one error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCount {
    /// Task type ([`super::task_type`]).
    pub task_type: i8,
    /// `NA_ERROR_CODE`, `UNSPECIFIED` when none was recorded.
    pub code: String,
    /// How many.
    pub count: i64,
}

/// The shape of the queue right now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueOverview {
    /// `HOST_TASK` rows by type and status.
    pub host_tasks: Vec<QueueCount>,
    /// `FILE_TASK` rows by type and status.
    pub file_tasks: Vec<QueueCount>,
    /// `HOST` rows by `NU_STATUS` (condition), as `(condition, count)`.
    pub hosts_by_condition: Vec<(i8, i64)>,
    /// Failed (`NU_STATUS = -1`) file tasks by type and error code.
    pub errors: Vec<ErrorCount>,
}

/// Work done by the pipeline, from `FILE_TASK.DT_BACKUP`, `VL_FILE_SIZE` and `DT_PROCESSED`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Throughput {
    /// The window of the `*_recent` fields.
    pub window: Duration,
    /// Files whose copy completed within the window.
    pub files_copied_recent: i64,
    /// Their bytes.
    pub bytes_copied_recent: i64,
    /// Files ever copied (still in the queue table).
    pub files_copied_total: i64,
    /// Their bytes.
    pub bytes_copied_total: i64,
    /// Files catalogued within the window.
    pub files_processed_recent: i64,
    /// Files ever catalogued.
    pub files_processed_total: i64,
}

fn i8_of(v: i64, what: &str) -> Result<i8, StoreError> {
    i8::try_from(v).map_err(|_| StoreError::Invalid(format!("{what} {v} is out of range")))
}

impl Store {
    /// Task depths, hosts by condition and failures by error code, in one statement.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn queue_overview(&self) -> Result<QueueOverview, StoreError> {
        let q = |e| StoreError::query("reading the queue overview", e);
        // Every branch yields (kind, type, status, code, count); the casts give the union one
        // set of column types (BIGINT / VARCHAR) whatever each branch selects.
        let rows = sqlx::query(self.sql(
            "(SELECT 'H' AS K, CAST(NU_TYPE AS SIGNED) AS T, CAST(NU_STATUS AS SIGNED) AS S,
                     CAST(NULL AS CHAR(64)) AS C, COUNT(*) AS N
              FROM {BPDATA}.HOST_TASK FORCE INDEX (IX_HOST_TASK_QUEUE) GROUP BY NU_TYPE, NU_STATUS)
             UNION ALL
             (SELECT 'F', CAST(NU_TYPE AS SIGNED), CAST(NU_STATUS AS SIGNED), NULL, COUNT(*)
              FROM {BPDATA}.FILE_TASK FORCE INDEX (IX_FILE_TASK_QUEUE) GROUP BY NU_TYPE, NU_STATUS)
             UNION ALL
             (SELECT 'C', NULL, CAST(NU_STATUS AS SIGNED), NULL, COUNT(*) FROM {BPDATA}.HOST GROUP BY NU_STATUS)
             UNION ALL
             (SELECT 'E', CAST(NU_TYPE AS SIGNED), NULL, CAST(IFNULL(NA_ERROR_CODE, 'UNSPECIFIED') AS CHAR(64)), COUNT(*)
              FROM {BPDATA}.FILE_TASK WHERE NU_STATUS = ?
              GROUP BY NU_TYPE, NA_ERROR_CODE ORDER BY COUNT(*) DESC LIMIT ?)",
        ))
        .bind(status::ERROR)
        .bind(MAX_ERROR_CODES * 2)
        .fetch_all(self.pool())
        .await
        .map_err(q)?;
        let mut out = QueueOverview::default();
        let mut codes_per_type: Vec<(i8, u32)> = Vec::new();
        for row in rows {
            let kind: String = row.try_get(0).map_err(q)?;
            let ty: Option<i64> = row.try_get(1).map_err(q)?;
            let st: Option<i64> = row.try_get(2).map_err(q)?;
            let code: Option<String> = row.try_get(3).map_err(q)?;
            let count: i64 = row.try_get(4).map_err(q)?;
            match (kind.as_str(), ty, st) {
                ("H", Some(t), Some(s)) => out.host_tasks.push(QueueCount {
                    task_type: i8_of(t, "task type")?,
                    status: i8_of(s, "task status")?,
                    count,
                }),
                ("F", Some(t), Some(s)) => out.file_tasks.push(QueueCount {
                    task_type: i8_of(t, "task type")?,
                    status: i8_of(s, "task status")?,
                    count,
                }),
                ("C", _, Some(s)) => out.hosts_by_condition.push((i8_of(s, "host condition")?, count)),
                ("E", Some(t), _) => {
                    let t = i8_of(t, "task type")?;
                    let seen = match codes_per_type.iter_mut().find(|(ty, _)| *ty == t) {
                        Some((_, n)) => n,
                        None => {
                            codes_per_type.push((t, 0));
                            match codes_per_type.last_mut() {
                                Some((_, n)) => n,
                                None => continue,
                            }
                        }
                    };
                    if *seen < MAX_ERROR_CODES {
                        *seen += 1;
                        out.errors.push(ErrorCount {
                            task_type: t,
                            code: code.unwrap_or_else(|| "UNSPECIFIED".into()),
                            count,
                        });
                    }
                }
                _ => {
                    return Err(StoreError::Invalid(format!(
                        "queue overview: unexpected row ({kind}, {ty:?}, {st:?})"
                    )));
                }
            }
        }
        Ok(out)
    }

    /// Files and bytes copied and files catalogued, within `window` (by the database clock)
    /// and in total: one pass over `FILE_TASK`.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn throughput(&self, window: Duration) -> Result<Throughput, StoreError> {
        let q = |e| StoreError::query("reading the pipeline throughput", e);
        let micros = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
        let row = sqlx::query(self.sql(
            "SELECT CAST(COALESCE(SUM(DT_BACKUP >= c.T), 0) AS SIGNED),
                    CAST(COALESCE(SUM(IF(DT_BACKUP >= c.T, VL_FILE_SIZE, 0)), 0) AS SIGNED),
                    CAST(COUNT(DT_BACKUP) AS SIGNED),
                    CAST(COALESCE(SUM(IF(DT_BACKUP IS NOT NULL, VL_FILE_SIZE, 0)), 0) AS SIGNED),
                    CAST(COALESCE(SUM(DT_PROCESSED >= c.T), 0) AS SIGNED),
                    CAST(COUNT(DT_PROCESSED) AS SIGNED)
             FROM (SELECT NOW(6) - INTERVAL ? MICROSECOND AS T) c
             CROSS JOIN {BPDATA}.FILE_TASK",
        ))
        .bind(micros)
        .fetch_one(self.pool())
        .await
        .map_err(q)?;
        Ok(Throughput {
            window,
            files_copied_recent: row.try_get(0).map_err(q)?,
            bytes_copied_recent: row.try_get(1).map_err(q)?,
            files_copied_total: row.try_get(2).map_err(q)?,
            bytes_copied_total: row.try_get(3).map_err(q)?,
            files_processed_recent: row.try_get(4).map_err(q)?,
            files_processed_total: row.try_get(5).map_err(q)?,
        })
    }
}
