//! Statements behind the operator commands (`appcataloga status|hosts|tasks|reprocess`).
//!
//! Every change an operator makes is a state change like any other: one transaction with a
//! `TASK_HISTORY` row per task, the operator recorded as the actor.

use chrono::NaiveDateTime;
use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError, status};
use crate::secret::StationKey;

/// One line of `hosts list`.
#[derive(Debug, Clone, Serialize)]
pub struct HostRow {
    /// Zabbix host id.
    pub host_id: i32,
    /// Equipment name.
    pub host_uid: Option<String>,
    /// Address.
    pub address: Option<String>,
    /// SSH port.
    pub port: Option<i32>,
    /// SSH user.
    pub user: Option<String>,
    /// A sealed password is stored.
    pub has_password: bool,
    /// Pinned host key.
    pub host_key: Option<String>,
    /// `HOST.NU_STATUS`.
    pub condition: i8,
    /// Why.
    pub condition_message: Option<String>,
    /// Backup task status.
    pub task_status: Option<i8>,
    /// Backup task message.
    pub task_message: Option<String>,
    /// Files waiting to be copied.
    pub pending_backup: i64,
    /// Failed copies.
    pub backup_error: i64,
    /// Files waiting to be catalogued.
    pub pending_processing: i64,
    /// Failed cataloguing.
    pub processing_error: i64,
    /// Files catalogued.
    pub processed: i64,
    /// Last verified copy.
    pub last_backup: Option<NaiveDateTime>,
}

/// One line of `tasks list`.
#[derive(Debug, Clone, Serialize)]
pub struct TaskRow {
    /// `HOST` or `FILE`.
    pub kind: &'static str,
    /// Task id.
    pub id: i64,
    /// Host id.
    pub host_id: i32,
    /// Task type (1 backup, 2 processing).
    pub task_type: i8,
    /// Status code.
    pub status: i8,
    /// Station path (file tasks).
    pub file: Option<String>,
    /// Error code.
    pub error_code: Option<String>,
    /// Message.
    pub message: Option<String>,
    /// Attempts (claims).
    pub attempt: u32,
    /// Consecutive failures.
    pub failures: u32,
}

/// Queue summary for `appcataloga status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueueSummary {
    /// (type, status, count) of file tasks.
    pub file_tasks: Vec<(i8, i8, i64)>,
    /// (status, count) of host tasks.
    pub host_tasks: Vec<(i8, i64)>,
    /// (condition, count) of hosts.
    pub hosts: Vec<(i8, i64)>,
    /// Files copied in the last hour.
    pub copied_last_hour: i64,
    /// Bytes copied in the last hour.
    pub bytes_last_hour: i64,
    /// Files catalogued in the last hour.
    pub processed_last_hour: i64,
    /// (error code, count) of tasks in error.
    pub errors: Vec<(String, i64)>,
}

/// Which tasks an operator command applies to.
#[derive(Debug, Clone, Copy, Default)]
pub struct TaskFilter {
    /// Only this host.
    pub host_id: Option<i32>,
    /// Only this task id (file task).
    pub task_id: Option<i64>,
}

impl Store {
    /// Every host with its counters.
    ///
    /// # Errors
    /// [`StoreError`] on database failure.
    pub async fn list_hosts(&self, host_id: Option<i32>) -> Result<Vec<HostRow>, StoreError> {
        let q = |e| StoreError::query("listing hosts", e);
        let rows = sqlx::query(self.sql(
            "SELECT h.ID_HOST, h.NA_HOST_UID, h.NA_HOST_ADDRESS, h.NA_HOST_PORT, h.NA_HOST_USER,
                    h.BN_HOST_PASSWORD_SEALED IS NOT NULL, h.NA_HOST_KEY_FINGERPRINT, h.NU_STATUS, h.NA_STATUS_MESSAGE,
                    t.NU_STATUS, t.NA_MESSAGE,
                    CAST(COALESCE(SUM(f.NU_TYPE = 1 AND f.NU_STATUS IN (1, 2)), 0) AS SIGNED), CAST(COALESCE(SUM(f.NU_TYPE = 1 AND f.NU_STATUS = -1), 0) AS SIGNED),
                    CAST(COALESCE(SUM(f.NU_TYPE = 2 AND f.NU_STATUS IN (1, 2)), 0) AS SIGNED), CAST(COALESCE(SUM(f.NU_TYPE = 2 AND f.NU_STATUS = -1), 0) AS SIGNED),
                    CAST(COALESCE(SUM(f.NU_TYPE = 2 AND f.NU_STATUS = 0), 0) AS SIGNED), MAX(f.DT_BACKUP)
             FROM {BPDATA}.HOST h
             LEFT JOIN {BPDATA}.HOST_TASK t ON t.FK_HOST = h.ID_HOST AND t.NU_TYPE = 1
             LEFT JOIN {BPDATA}.FILE_TASK f ON f.FK_HOST = h.ID_HOST
             WHERE (? IS NULL OR h.ID_HOST = ?)
             GROUP BY h.ID_HOST ORDER BY h.ID_HOST",
        ))
        .bind(host_id)
        .bind(host_id)
        .fetch_all(self.pool())
        .await
        .map_err(q)?;
        rows.iter()
            .map(|r| {
                let n = |i: usize| r.try_get::<i64, _>(i);
                Ok(HostRow {
                    host_id: r.try_get(0)?,
                    host_uid: r.try_get(1)?,
                    address: r.try_get(2)?,
                    port: r.try_get(3)?,
                    user: r.try_get(4)?,
                    has_password: r.try_get::<i64, _>(5)? != 0,
                    host_key: r.try_get(6)?,
                    condition: r.try_get(7)?,
                    condition_message: r.try_get(8)?,
                    task_status: r.try_get(9)?,
                    task_message: r.try_get(10)?,
                    pending_backup: n(11)?,
                    backup_error: n(12)?,
                    pending_processing: n(13)?,
                    processing_error: n(14)?,
                    processed: n(15)?,
                    last_backup: r.try_get(16)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(q)
    }

    /// Creates or updates a host's access data; the password is sealed with `key`.
    ///
    /// # Errors
    /// [`StoreError`] on database failure.
    #[allow(clippy::too_many_arguments)]
    pub async fn upsert_host(
        &self,
        host_id: i32,
        host_uid: Option<&str>,
        address: Option<&str>,
        port: Option<u16>,
        user: Option<&str>,
        password: Option<&secrecy::SecretString>,
        key: Option<&StationKey>,
    ) -> Result<(), StoreError> {
        let sealed = match (password, key) {
            (Some(p), Some(k)) => Some(k.seal(host_id.into(), p)),
            (Some(_), None) => {
                return Err(StoreError::Invalid(
                    "no station-password key is configured (secrets.key_file): the password cannot be stored"
                        .into(),
                ));
            }
            _ => None,
        };
        sqlx::query(self.sql(
            "INSERT INTO {BPDATA}.HOST (ID_HOST, NA_HOST_UID, NA_HOST_ADDRESS, NA_HOST_PORT, NA_HOST_USER, BN_HOST_PASSWORD_SEALED, NA_SECRET_KEY_ID)
             VALUES (?, ?, ?, ?, ?, ?, ?)
             ON DUPLICATE KEY UPDATE NA_HOST_UID = IFNULL(VALUES(NA_HOST_UID), NA_HOST_UID),
                 NA_HOST_ADDRESS = IFNULL(VALUES(NA_HOST_ADDRESS), NA_HOST_ADDRESS),
                 NA_HOST_PORT = IFNULL(VALUES(NA_HOST_PORT), NA_HOST_PORT),
                 NA_HOST_USER = IFNULL(VALUES(NA_HOST_USER), NA_HOST_USER),
                 BN_HOST_PASSWORD_SEALED = IFNULL(VALUES(BN_HOST_PASSWORD_SEALED), BN_HOST_PASSWORD_SEALED),
                 NA_SECRET_KEY_ID = IFNULL(VALUES(NA_SECRET_KEY_ID), NA_SECRET_KEY_ID),
                 DT_UPDATED = NOW(6)",
        ))
        .bind(host_id)
        .bind(host_uid)
        .bind(address)
        .bind(port.map(i32::from))
        .bind(user)
        .bind(sealed.as_ref().map(|s| s.bytes.clone()))
        .bind(sealed.as_ref().map(|s| s.key_id.clone()))
        .execute(self.pool())
        .await
        .map_err(|e| StoreError::query("writing host access data", e))?;
        // New credentials deserve a prompt attempt.
        sqlx::query(self.sql("UPDATE {BPDATA}.HOST_TASK SET DT_NOT_BEFORE = NULL WHERE FK_HOST = ?"))
            .bind(host_id)
            .execute(self.pool())
            .await
            .map_err(|e| StoreError::query("writing host access data", e))?;
        Ok(())
    }

    /// Tasks, optionally only those with `status`.
    ///
    /// # Errors
    /// [`StoreError`] on database failure.
    pub async fn list_tasks(
        &self,
        status: Option<i8>,
        filter: TaskFilter,
        limit: u32,
    ) -> Result<Vec<TaskRow>, StoreError> {
        let q = |e| StoreError::query("listing tasks", e);
        let mut out = Vec::new();
        let hosts = sqlx::query(self.sql(
            "SELECT ID_HOST_TASK, FK_HOST, NU_TYPE, NU_STATUS, NA_MESSAGE, NU_ATTEMPT, NU_FAILURES FROM {BPDATA}.HOST_TASK
             WHERE (? IS NULL OR NU_STATUS = ?) AND (? IS NULL OR FK_HOST = ?) ORDER BY ID_HOST_TASK LIMIT ?",
        ))
        .bind(status)
        .bind(status)
        .bind(filter.host_id)
        .bind(filter.host_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(q)?;
        if filter.task_id.is_none() {
            for r in hosts {
                out.push(TaskRow {
                    kind: "HOST",
                    id: r.try_get::<i32, _>(0).map_err(q)?.into(),
                    host_id: r.try_get(1).map_err(q)?,
                    task_type: r.try_get(2).map_err(q)?,
                    status: r.try_get(3).map_err(q)?,
                    file: None,
                    error_code: None,
                    message: r.try_get(4).map_err(q)?,
                    attempt: r.try_get(5).map_err(q)?,
                    failures: r.try_get(6).map_err(q)?,
                });
            }
        }
        let files = sqlx::query(self.sql(
            "SELECT ID_FILE_TASK, FK_HOST, NU_TYPE, NU_STATUS, CONCAT(NA_HOST_FILE_PATH, '/', NA_HOST_FILE_NAME), NA_ERROR_CODE,
                    NA_MESSAGE, NU_ATTEMPT, NU_FAILURES FROM {BPDATA}.FILE_TASK
             WHERE (? IS NULL OR NU_STATUS = ?) AND (? IS NULL OR FK_HOST = ?) AND (? IS NULL OR ID_FILE_TASK = ?)
             ORDER BY ID_FILE_TASK LIMIT ?",
        ))
        .bind(status)
        .bind(status)
        .bind(filter.host_id)
        .bind(filter.host_id)
        .bind(filter.task_id)
        .bind(filter.task_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(q)?;
        for r in files {
            out.push(TaskRow {
                kind: "FILE",
                id: r.try_get(0).map_err(q)?,
                host_id: r.try_get(1).map_err(q)?,
                task_type: r.try_get(2).map_err(q)?,
                status: r.try_get(3).map_err(q)?,
                file: r.try_get(4).map_err(q)?,
                error_code: r.try_get(5).map_err(q)?,
                message: r.try_get(6).map_err(q)?,
                attempt: r.try_get(7).map_err(q)?,
                failures: r.try_get(8).map_err(q)?,
            });
        }
        Ok(out)
    }

    /// Moves tasks in `from` (optionally filtered) back to pending, clearing backoff and
    /// failure counts, with a history row each. Returns (host tasks, file tasks) changed.
    ///
    /// # Errors
    /// [`StoreError`] on database failure.
    pub async fn requeue_tasks(
        &self,
        from: &[i8],
        filter: TaskFilter,
        file_type: Option<i8>,
        actor: &str,
        message: &str,
    ) -> Result<(u64, u64), StoreError> {
        let q = |e| StoreError::query("requeueing tasks", e);
        let statuses = from.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(",");
        let mut tx = self.pool().begin().await.map_err(q)?;
        let mut host_changed = 0;
        if filter.task_id.is_none() && file_type.is_none() {
            let cond = format!("NU_STATUS IN ({statuses}) AND (? IS NULL OR FK_HOST = ?)");
            sqlx::query(self.sql(&format!(
                "INSERT INTO {{BPDATA}}.TASK_HISTORY (NA_TASK_KIND, FK_TASK, FK_HOST, NA_ACTOR, NU_TYPE, NU_STATUS_FROM, NU_STATUS_TO, NU_ATTEMPT, NA_MESSAGE)
                 SELECT 'HOST', ID_HOST_TASK, FK_HOST, ?, NU_TYPE, NU_STATUS, ?, NU_ATTEMPT, ? FROM {{BPDATA}}.HOST_TASK WHERE {cond} FOR UPDATE"
            )))
            .bind(actor)
            .bind(status::PENDING)
            .bind(message)
            .bind(filter.host_id)
            .bind(filter.host_id)
            .execute(&mut *tx)
            .await
            .map_err(q)?;
            host_changed = sqlx::query(self.sql(&format!(
                "UPDATE {{BPDATA}}.HOST_TASK SET NU_STATUS = ?, DT_NOT_BEFORE = NULL, NU_FAILURES = 0, NA_MESSAGE = ? WHERE {cond}"
            )))
            .bind(status::PENDING)
            .bind(message)
            .bind(filter.host_id)
            .bind(filter.host_id)
            .execute(&mut *tx)
            .await
            .map_err(q)?
            .rows_affected();
        }
        let cond = format!(
            "NU_STATUS IN ({statuses}) AND (? IS NULL OR FK_HOST = ?) AND (? IS NULL OR ID_FILE_TASK = ?) AND (? IS NULL OR NU_TYPE = ?)
             AND NA_HOST_FILE_PATH <> '(rejected index line)'"
        );
        sqlx::query(self.sql(&format!(
            "INSERT INTO {{BPDATA}}.TASK_HISTORY (NA_TASK_KIND, FK_TASK, FK_HOST, NA_ACTOR, NU_TYPE, NU_STATUS_FROM, NU_STATUS_TO, NU_ATTEMPT, NA_MESSAGE)
             SELECT 'FILE', ID_FILE_TASK, FK_HOST, ?, NU_TYPE, NU_STATUS, ?, NU_ATTEMPT, ? FROM {{BPDATA}}.FILE_TASK WHERE {cond} FOR UPDATE"
        )))
        .bind(actor)
        .bind(status::PENDING)
        .bind(message)
        .bind(filter.host_id)
        .bind(filter.host_id)
        .bind(filter.task_id)
        .bind(filter.task_id)
        .bind(file_type)
        .bind(file_type)
        .execute(&mut *tx)
        .await
        .map_err(q)?;
        let files = sqlx::query(self.sql(&format!(
            // MariaDB applies SET assignments left to right: read NU_STATUS before changing it.
            "UPDATE {{BPDATA}}.FILE_TASK SET
                    NA_TARGET_PATH = IF(NU_TYPE = 2 AND NU_STATUS = 0, CONCAT(NA_SERVER_FILE_PATH, '/', NA_SERVER_FILE_NAME), NA_TARGET_PATH),
                    NU_STATUS = ?, DT_NOT_BEFORE = NULL, NU_FAILURES = 0, NA_MESSAGE = ?
             WHERE {cond}"
        )))
        .bind(status::PENDING)
        .bind(message)
        .bind(filter.host_id)
        .bind(filter.host_id)
        .bind(filter.task_id)
        .bind(filter.task_id)
        .bind(file_type)
        .bind(file_type)
        .execute(&mut *tx)
        .await
        .map_err(q)?
        .rows_affected();
        tx.commit().await.map_err(q)?;
        Ok((host_changed, files))
    }

    /// Queue, throughput and error summary.
    ///
    /// # Errors
    /// [`StoreError`] on database failure.
    pub async fn queue_summary(&self) -> Result<QueueSummary, StoreError> {
        let q = |e| StoreError::query("summarising the queue", e);
        let mut s = QueueSummary::default();
        for r in
            sqlx::query(self.sql(
                "SELECT NU_TYPE, NU_STATUS, COUNT(*) FROM {BPDATA}.FILE_TASK GROUP BY NU_TYPE, NU_STATUS",
            ))
            .fetch_all(self.pool())
            .await
            .map_err(q)?
        {
            s.file_tasks.push((r.try_get(0).map_err(q)?, r.try_get(1).map_err(q)?, r.try_get(2).map_err(q)?));
        }
        for r in
            sqlx::query(self.sql("SELECT NU_STATUS, COUNT(*) FROM {BPDATA}.HOST_TASK GROUP BY NU_STATUS"))
                .fetch_all(self.pool())
                .await
                .map_err(q)?
        {
            s.host_tasks.push((r.try_get(0).map_err(q)?, r.try_get(1).map_err(q)?));
        }
        for r in sqlx::query(self.sql("SELECT NU_STATUS, COUNT(*) FROM {BPDATA}.HOST GROUP BY NU_STATUS"))
            .fetch_all(self.pool())
            .await
            .map_err(q)?
        {
            s.hosts.push((r.try_get(0).map_err(q)?, r.try_get(1).map_err(q)?));
        }
        let r = sqlx::query(self.sql(
            "SELECT (SELECT COUNT(*) FROM {BPDATA}.FILE_TASK WHERE DT_BACKUP > NOW(6) - INTERVAL 1 HOUR),
                    (SELECT CAST(IFNULL(SUM(VL_FILE_SIZE), 0) AS SIGNED) FROM {BPDATA}.FILE_TASK WHERE DT_BACKUP > NOW(6) - INTERVAL 1 HOUR),
                    (SELECT COUNT(*) FROM {BPDATA}.FILE_TASK WHERE DT_PROCESSED > NOW(6) - INTERVAL 1 HOUR)",
        ))
        .fetch_one(self.pool())
        .await
        .map_err(q)?;
        s.copied_last_hour = r.try_get(0).map_err(q)?;
        s.bytes_last_hour = r.try_get(1).map_err(q)?;
        s.processed_last_hour = r.try_get(2).map_err(q)?;
        for r in sqlx::query(self.sql(
            "SELECT IFNULL(NA_ERROR_CODE, 'UNSPECIFIED'), COUNT(*) FROM {BPDATA}.FILE_TASK WHERE NU_STATUS = ? GROUP BY 1 ORDER BY 2 DESC",
        ))
        .bind(status::ERROR)
        .fetch_all(self.pool())
        .await
        .map_err(q)?
        {
            s.errors.push((r.try_get(0).map_err(q)?, r.try_get(1).map_err(q)?));
        }
        Ok(s)
    }
}
