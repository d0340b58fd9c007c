//! Statements behind the Zabbix gateway: queue a backup, stop it, read a host's status.
//!
//! Enqueueing is idempotent: one `HOST_TASK` row per (host, type) (a unique key), a poll of a
//! pending or running task changes nothing (so a host keeps its place in the FIFO and a running
//! backup is never reset), and a finished, failed or stopped task is re-armed at the back of the
//! queue. Every status change writes a `TASK_HISTORY` row in the same transaction. The reply's
//! counters are computed from the task rows at read time; nothing here maintains a counter.

use chrono::{DateTime, NaiveDateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use sqlx::{MySqlConnection, Row};

use super::{Store, StoreError, retry_after, status, task_type};
use crate::secret::{SealedPassword, StationKey};

/// Access data for a station, as received from Zabbix.
#[derive(Debug, Clone)]
pub struct StationAccess {
    /// Zabbix host id.
    pub host_id: i32,
    /// Equipment name.
    pub host_uid: String,
    /// IP or DNS name.
    pub address: String,
    /// SSH port.
    pub port: u16,
    /// SSH user.
    pub user: String,
    /// SSH password; `None` or empty keeps what is stored.
    pub password: Option<SecretString>,
}

/// What happened to the host's backup task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnqueueOutcome {
    /// A task was created.
    Created,
    /// A finished, failed or stopped task was re-armed (previous status given).
    Requeued(i8),
    /// The task was already waiting; it keeps its place.
    AlreadyPending,
    /// A worker holds the task.
    AlreadyRunning,
    /// The task is frozen until an operator acts.
    Frozen,
}

/// What happened to the password in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordOutcome {
    /// Sealed and stored (new or changed).
    Stored,
    /// Same as the stored one.
    Unchanged,
    /// No password in the request.
    NotGiven,
    /// No encryption key is configured, so the password was not stored.
    NoKey,
}

/// What a stop request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopOutcome {
    /// Status of the host task before the stop, if there was one.
    pub task_before: Option<i8>,
    /// A running task was asked to stop at its next check.
    pub cancel_requested: bool,
    /// Pending file copies suspended.
    pub files_suspended: u64,
}

/// A host's status, computed from the task tables.
#[derive(Debug, Clone, PartialEq)]
pub struct HostStatus {
    /// Zabbix host id.
    pub host: i32,
    /// Files copied to the server so far.
    pub host_files: i64,
    /// 1 while the host's backup task is pending or running.
    pub pending_host_task: i64,
    /// Last successful completion of the host's backup task.
    pub last_host_check: Option<DateTime<Utc>>,
    /// Consecutive failed attempts of the host's backup task.
    pub host_check_error: i64,
    /// Files waiting to be copied.
    pub pending_backup: i64,
    /// Last verified copy.
    pub last_backup: Option<DateTime<Utc>>,
    /// Files whose copy failed.
    pub backup_error: i64,
    /// Files copied and waiting to be catalogued.
    pub pending_processing: i64,
    /// Files whose cataloguing failed.
    pub processing_error: i64,
    /// Last catalogued file.
    pub last_processing: Option<DateTime<Utc>>,
    /// `HOST.NU_STATUS`: 0 ok, 1 no daemon, 2 halt flag alert, 3 host key mismatch, 4 auth, 5 unreachable.
    pub condition: i8,
    /// Why the host is in that condition.
    pub condition_message: Option<String>,
    /// Status of the host's backup task, if one exists.
    pub task_status: Option<i8>,
    /// The task's message.
    pub task_message: Option<String>,
    /// A sealed password is stored.
    pub has_password: bool,
}

/// Access data as stored, for the read-only fast path of a poll.
struct StoredAccess {
    uid: Option<String>,
    address: Option<String>,
    port: Option<i32>,
    user: Option<String>,
    sealed: Option<Vec<u8>>,
    key_id: Option<String>,
    cancel_requested: bool,
}

impl StoredAccess {
    /// `Some(outcome)` when nothing in `a` differs from what is stored (so a poll can be
    /// answered without a write).
    fn unchanged(&self, a: &StationAccess, key: Option<&StationKey>) -> Option<PasswordOutcome> {
        let same = self.uid.as_deref() == Some(a.host_uid.as_str())
            && self.address.as_deref() == Some(a.address.as_str())
            && self.port == Some(i32::from(a.port))
            && self.user.as_deref() == Some(a.user.as_str());
        if !same || self.cancel_requested {
            return None;
        }
        match (a.password.as_ref().filter(|p| !p.expose_secret().is_empty()), key) {
            (None, _) => Some(PasswordOutcome::NotGiven),
            (Some(_), None) => Some(PasswordOutcome::NoKey),
            (Some(p), Some(k)) => {
                let sealed = SealedPassword { bytes: self.sealed.clone()?, key_id: self.key_id.clone()? };
                let old = k.open(a.host_id.into(), &sealed).ok()?;
                (old.expose_secret() == p.expose_secret()).then_some(PasswordOutcome::Unchanged)
            }
        }
    }
}

fn utc(t: Option<NaiveDateTime>) -> Option<DateTime<Utc>> {
    t.map(|t| t.and_utc())
}

impl Store {
    /// Records the station's access data and queues its backup (idempotently), then reads its
    /// status on the same connection.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails; deadlocks are retried internally.
    pub async fn request_backup(
        &self,
        access: &StationAccess,
        key: Option<&StationKey>,
        actor: &str,
    ) -> Result<(EnqueueOutcome, PasswordOutcome, HostStatus), StoreError> {
        let mut conn = self
            .pool()
            .acquire()
            .await
            .map_err(|e| StoreError::Unavailable(format!("queueing a backup: {e}")))?;
        // Fast path, read-only: most polls find the task already queued or running and the
        // access data unchanged; they are answered without a transaction.
        if let Some((st, stored)) = self.status_and_access(&mut conn, access.host_id).await?
            && let Some(pw) = stored.unchanged(access, key)
        {
            match st.task_status {
                Some(status::PENDING) => return Ok((EnqueueOutcome::AlreadyPending, pw, st)),
                Some(status::RUNNING) => return Ok((EnqueueOutcome::AlreadyRunning, pw, st)),
                _ => {}
            }
        }
        let mut attempt = 0;
        let (outcome, pw) = loop {
            attempt += 1;
            match self.request_backup_tx(&mut conn, access, key, actor).await {
                Err(e) if retry_after(&e, attempt, 4).await => continue,
                other => break other?,
            }
        };
        let status = self
            .status_on(&mut conn, access.host_id)
            .await?
            .ok_or_else(|| StoreError::Invalid(format!("host {} vanished", access.host_id)))?;
        Ok((outcome, pw, status))
    }

    async fn request_backup_tx(
        &self,
        conn: &mut MySqlConnection,
        a: &StationAccess,
        key: Option<&StationKey>,
        actor: &str,
    ) -> Result<(EnqueueOutcome, PasswordOutcome), StoreError> {
        let q = |e| StoreError::query("queueing a backup", e);
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(q)?;
        // Takes the HOST row's exclusive lock whether or not it exists (no S→X upgrade).
        sqlx::query(self.sql(
            "INSERT INTO {BPDATA}.HOST (ID_HOST, NA_HOST_UID) VALUES (?, ?) ON DUPLICATE KEY UPDATE ID_HOST = ID_HOST",
        ))
        .bind(a.host_id)
        .bind(&a.host_uid)
        .execute(&mut *tx)
        .await
        .map_err(q)?;
        let row = sqlx::query(self.sql(
            "SELECT h.NA_HOST_UID, h.NA_HOST_ADDRESS, h.NA_HOST_PORT, h.NA_HOST_USER,
                    h.BN_HOST_PASSWORD_SEALED, h.NA_SECRET_KEY_ID, t.ID_HOST_TASK, t.NU_STATUS, t.IS_CANCEL_REQUESTED
             FROM {BPDATA}.HOST h
             LEFT JOIN {BPDATA}.HOST_TASK t ON t.FK_HOST = h.ID_HOST AND t.NU_TYPE = ?
             WHERE h.ID_HOST = ? FOR UPDATE",
        ))
        .bind(task_type::BACKUP)
        .bind(a.host_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(q)?;
        let uid: Option<String> = row.try_get(0).map_err(q)?;
        let address: Option<String> = row.try_get(1).map_err(q)?;
        let port: Option<i32> = row.try_get(2).map_err(q)?;
        let user: Option<String> = row.try_get(3).map_err(q)?;
        let sealed: Option<Vec<u8>> = row.try_get(4).map_err(q)?;
        let key_id: Option<String> = row.try_get(5).map_err(q)?;
        let task_id: Option<i32> = row.try_get(6).map_err(q)?;
        let task_status: Option<i8> = row.try_get(7).map_err(q)?;
        let cancel_requested: Option<i8> = row.try_get(8).map_err(q)?;

        // Password: store only sealed, and only when it differs from what is stored.
        let given = a.password.as_ref().filter(|p| !p.expose_secret().is_empty());
        let (pw_outcome, new_seal) = match (given, key) {
            (None, _) => (PasswordOutcome::NotGiven, None),
            (Some(_), None) => (PasswordOutcome::NoKey, None),
            (Some(p), Some(k)) => {
                let same = match (&sealed, &key_id) {
                    (Some(bytes), Some(id)) => k
                        .open(a.host_id.into(), &SealedPassword { bytes: bytes.clone(), key_id: id.clone() })
                        .map(|old| old.expose_secret() == p.expose_secret())
                        .unwrap_or(false),
                    _ => false,
                };
                if same {
                    (PasswordOutcome::Unchanged, None)
                } else {
                    (PasswordOutcome::Stored, Some(k.seal(a.host_id.into(), p)))
                }
            }
        };
        let access_changed = uid.as_deref() != Some(a.host_uid.as_str())
            || address.as_deref() != Some(a.address.as_str())
            || port != Some(i32::from(a.port))
            || user.as_deref() != Some(a.user.as_str());
        if access_changed {
            sqlx::query(self.sql(
                "UPDATE {BPDATA}.HOST SET NA_HOST_UID = ?, NA_HOST_ADDRESS = ?, NA_HOST_PORT = ?, NA_HOST_USER = ?,
                        DT_UPDATED = NOW(6) WHERE ID_HOST = ?",
            ))
            .bind(&a.host_uid)
            .bind(&a.address)
            .bind(i32::from(a.port))
            .bind(&a.user)
            .bind(a.host_id)
            .execute(&mut *tx)
            .await
            .map_err(q)?;
        }
        if let Some(seal) = &new_seal {
            sqlx::query(self.sql(
                "UPDATE {BPDATA}.HOST SET BN_HOST_PASSWORD_SEALED = ?, NA_SECRET_KEY_ID = ?, NA_HOST_PASSWORD = NULL,
                        DT_UPDATED = NOW(6) WHERE ID_HOST = ?",
            ))
            .bind(&seal.bytes)
            .bind(&seal.key_id)
            .bind(a.host_id)
            .execute(&mut *tx)
            .await
            .map_err(q)?;
        }

        if (access_changed || new_seal.is_some()) && task_id.is_some() {
            // New credentials deserve a prompt attempt, whatever the backoff of the last failure.
            sqlx::query(
                self.sql("UPDATE {BPDATA}.HOST_TASK SET DT_NOT_BEFORE = NULL WHERE ID_HOST_TASK = ?"),
            )
            .bind(task_id)
            .execute(&mut *tx)
            .await
            .map_err(q)?;
        }
        let outcome = match (task_id, task_status) {
            (None, _) | (_, None) => {
                let res = sqlx::query(self.sql(
                    "INSERT INTO {BPDATA}.HOST_TASK (FK_HOST, NU_TYPE, DT_HOST_TASK, NU_STATUS, NA_MESSAGE, DT_LAST_REQUEST)
                     VALUES (?, ?, NOW(6), ?, 'New task', NOW(6))",
                ))
                .bind(a.host_id)
                .bind(task_type::BACKUP)
                .bind(status::PENDING)
                .execute(&mut *tx)
                .await
                .map_err(q)?;
                let id = i64::try_from(res.last_insert_id()).unwrap_or(i64::MAX);
                self.host_history(&mut tx, id, actor, None, status::PENDING, "New task").await?;
                EnqueueOutcome::Created
            }
            (Some(id), Some(s)) if s == status::DONE || s == status::ERROR || s == status::SUSPENDED => {
                sqlx::query(self.sql(
                    "UPDATE {BPDATA}.HOST_TASK SET NU_STATUS = ?, DT_HOST_TASK = NOW(6), NA_MESSAGE = 'Refreshed',
                            NU_PID = NULL, NA_OWNER = NULL, DT_LEASE_EXPIRY = NULL, IS_CANCEL_REQUESTED = 0,
                            DT_LAST_REQUEST = NOW(6)
                     WHERE ID_HOST_TASK = ?",
                ))
                .bind(status::PENDING)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(q)?;
                self.host_history(&mut tx, id.into(), actor, Some(s), status::PENDING, "Refreshed").await?;
                if s == status::SUSPENDED {
                    self.move_file_tasks(
                        &mut tx,
                        a.host_id,
                        task_type::BACKUP,
                        status::SUSPENDED,
                        status::PENDING,
                        actor,
                        "resumed by a backup request",
                    )
                    .await?;
                }
                EnqueueOutcome::Requeued(s)
            }
            (Some(id), Some(s)) if s == status::RUNNING => {
                if cancel_requested == Some(1) {
                    sqlx::query(self.sql(
                        "UPDATE {BPDATA}.HOST_TASK SET IS_CANCEL_REQUESTED = 0, DT_LAST_REQUEST = NOW(6) WHERE ID_HOST_TASK = ?",
                    ))
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(q)?;
                    self.host_history(
                        &mut tx,
                        id.into(),
                        actor,
                        Some(s),
                        s,
                        "stop request withdrawn by a backup request",
                    )
                    .await?;
                }
                EnqueueOutcome::AlreadyRunning
            }
            (Some(_), Some(s)) if s == status::FROZEN => EnqueueOutcome::Frozen,
            (Some(_), Some(_)) => EnqueueOutcome::AlreadyPending,
        };
        tx.commit().await.map_err(q)?;
        Ok((outcome, pw_outcome))
    }

    /// Suspends the host's pending backup work; a running backup is asked to stop.
    ///
    /// Returns `None` when the host is unknown.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn request_stop(
        &self,
        host_id: i32,
        actor: &str,
    ) -> Result<Option<(StopOutcome, HostStatus)>, StoreError> {
        let mut conn = self
            .pool()
            .acquire()
            .await
            .map_err(|e| StoreError::Unavailable(format!("stopping a backup: {e}")))?;
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            match self.request_stop_tx(&mut conn, host_id, actor).await {
                Err(e) if retry_after(&e, attempt, 4).await => continue,
                other => break other?,
            }
        };
        let Some(outcome) = outcome else {
            return Ok(None);
        };
        let status = self
            .status_on(&mut conn, host_id)
            .await?
            .ok_or_else(|| StoreError::Invalid(format!("host {host_id} vanished")))?;
        Ok(Some((outcome, status)))
    }

    async fn request_stop_tx(
        &self,
        conn: &mut MySqlConnection,
        host_id: i32,
        actor: &str,
    ) -> Result<Option<StopOutcome>, StoreError> {
        let q = |e| StoreError::query("stopping a backup", e);
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(q)?;
        let row = sqlx::query(self.sql(
            "SELECT h.ID_HOST, t.ID_HOST_TASK, t.NU_STATUS
             FROM {BPDATA}.HOST h
             LEFT JOIN {BPDATA}.HOST_TASK t ON t.FK_HOST = h.ID_HOST AND t.NU_TYPE = ?
             WHERE h.ID_HOST = ? FOR UPDATE",
        ))
        .bind(task_type::BACKUP)
        .bind(host_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(q)?;
        let Some(row) = row else { return Ok(None) };
        let task_id: Option<i32> = row.try_get(1).map_err(q)?;
        let task_status: Option<i8> = row.try_get(2).map_err(q)?;
        let mut outcome =
            StopOutcome { task_before: task_status, cancel_requested: false, files_suspended: 0 };
        if let (Some(id), Some(s)) = (task_id, task_status) {
            if s == status::PENDING {
                sqlx::query(self.sql(
                    "UPDATE {BPDATA}.HOST_TASK SET NU_STATUS = ?, NA_MESSAGE = 'Stopped by request' WHERE ID_HOST_TASK = ?",
                ))
                .bind(status::SUSPENDED)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(q)?;
                self.host_history(
                    &mut tx,
                    id.into(),
                    actor,
                    Some(s),
                    status::SUSPENDED,
                    "Stopped by request",
                )
                .await?;
            } else if s == status::RUNNING {
                sqlx::query(
                    self.sql("UPDATE {BPDATA}.HOST_TASK SET IS_CANCEL_REQUESTED = 1 WHERE ID_HOST_TASK = ?"),
                )
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(q)?;
                self.host_history(&mut tx, id.into(), actor, Some(s), s, "Stop requested while running")
                    .await?;
                outcome.cancel_requested = true;
            }
        }
        outcome.files_suspended = self
            .move_file_tasks(
                &mut tx,
                host_id,
                task_type::BACKUP,
                status::PENDING,
                status::SUSPENDED,
                actor,
                "Stopped by request",
            )
            .await?;
        tx.commit().await.map_err(q)?;
        Ok(Some(outcome))
    }

    /// Reads a host's status; `None` when the host is unknown.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn host_status(&self, host_id: i32) -> Result<Option<HostStatus>, StoreError> {
        let mut conn = self
            .pool()
            .acquire()
            .await
            .map_err(|e| StoreError::Unavailable(format!("reading a host status: {e}")))?;
        self.status_on(&mut conn, host_id).await
    }

    async fn status_on(
        &self,
        conn: &mut MySqlConnection,
        host_id: i32,
    ) -> Result<Option<HostStatus>, StoreError> {
        Ok(self.status_and_access(conn, host_id).await?.map(|(st, _)| st))
    }

    /// The host's status and its stored access data, in two statements.
    async fn status_and_access(
        &self,
        conn: &mut MySqlConnection,
        host_id: i32,
    ) -> Result<Option<(HostStatus, StoredAccess)>, StoreError> {
        let q = |e| StoreError::query("reading a host status", e);
        let row = sqlx::query(self.sql(
            "SELECT h.NU_STATUS, h.NA_STATUS_MESSAGE, h.BN_HOST_PASSWORD_SEALED IS NOT NULL,
                    t.NU_STATUS, t.NU_FAILURES, t.DT_LAST_DONE, t.NA_MESSAGE,
                    (SELECT MAX(f.DT_BACKUP) FROM {BPDATA}.FILE_TASK f WHERE f.FK_HOST = h.ID_HOST),
                    (SELECT MAX(f.DT_PROCESSED) FROM {BPDATA}.FILE_TASK f WHERE f.FK_HOST = h.ID_HOST),
                    h.NA_HOST_UID, h.NA_HOST_ADDRESS, h.NA_HOST_PORT, h.NA_HOST_USER, h.BN_HOST_PASSWORD_SEALED,
                    h.NA_SECRET_KEY_ID, t.IS_CANCEL_REQUESTED
             FROM {BPDATA}.HOST h
             LEFT JOIN {BPDATA}.HOST_TASK t ON t.FK_HOST = h.ID_HOST AND t.NU_TYPE = ?
             WHERE h.ID_HOST = ?",
        ))
        .bind(task_type::BACKUP)
        .bind(host_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(q)?;
        let Some(row) = row else { return Ok(None) };
        let counts = sqlx::query(self.sql(
            "SELECT NU_TYPE, NU_STATUS, COUNT(*) FROM {BPDATA}.FILE_TASK WHERE FK_HOST = ? GROUP BY NU_TYPE, NU_STATUS",
        ))
        .bind(host_id)
        .fetch_all(&mut *conn)
        .await
        .map_err(q)?;
        let task_status: Option<i8> = row.try_get(3).map_err(q)?;
        let failures: Option<u32> = row.try_get(4).map_err(q)?;
        let stored = StoredAccess {
            uid: row.try_get(9).map_err(q)?,
            address: row.try_get(10).map_err(q)?,
            port: row.try_get(11).map_err(q)?,
            user: row.try_get(12).map_err(q)?,
            sealed: row.try_get(13).map_err(q)?,
            key_id: row.try_get(14).map_err(q)?,
            cancel_requested: row.try_get::<Option<i8>, _>(15).map_err(q)?.unwrap_or(0) != 0,
        };
        let mut st = HostStatus {
            host: host_id,
            host_files: 0,
            pending_host_task: i64::from(matches!(task_status, Some(status::PENDING | status::RUNNING))),
            last_host_check: utc(row.try_get(5).map_err(q)?),
            host_check_error: i64::from(failures.unwrap_or(0)),
            pending_backup: 0,
            last_backup: utc(row.try_get(7).map_err(q)?),
            backup_error: 0,
            pending_processing: 0,
            processing_error: 0,
            last_processing: utc(row.try_get(8).map_err(q)?),
            condition: row.try_get(0).map_err(q)?,
            condition_message: row.try_get(1).map_err(q)?,
            task_status,
            task_message: row.try_get(6).map_err(q)?,
            has_password: row.try_get::<i64, _>(2).map_err(q)? != 0,
        };
        for c in counts {
            let ty: i8 = c.try_get(0).map_err(q)?;
            let s: i8 = c.try_get(1).map_err(q)?;
            let n: i64 = c.try_get(2).map_err(q)?;
            match (ty, s) {
                (task_type::BACKUP, status::PENDING | status::RUNNING) => st.pending_backup += n,
                (task_type::BACKUP, status::ERROR) => st.backup_error += n,
                (task_type::PROCESSING, _) => {
                    st.host_files += n;
                    match s {
                        status::PENDING | status::RUNNING => st.pending_processing += n,
                        status::ERROR => st.processing_error += n,
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        Ok(Some((st, stored)))
    }

    /// Appends a `HOST_TASK` history row.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn host_history(
        &self,
        conn: &mut MySqlConnection,
        task_id: i64,
        actor: &str,
        from: Option<i8>,
        to: i8,
        message: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(self.sql(
            "INSERT INTO {BPDATA}.TASK_HISTORY (NA_TASK_KIND, FK_TASK, FK_HOST, NA_ACTOR, NU_TYPE, NU_STATUS_FROM, NU_STATUS_TO, NU_ATTEMPT, NA_MESSAGE)
             SELECT 'HOST', ID_HOST_TASK, FK_HOST, ?, NU_TYPE, ?, ?, NU_ATTEMPT, ? FROM {BPDATA}.HOST_TASK WHERE ID_HOST_TASK = ?",
        ))
        .bind(actor)
        .bind(from)
        .bind(to)
        .bind(message)
        .bind(task_id)
        .execute(&mut *conn)
        .await
        .map_err(|e| StoreError::query("writing task history", e))?;
        Ok(())
    }

    /// Moves every `FILE_TASK` of a host from one status to another, with a history row each.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn move_file_tasks(
        &self,
        conn: &mut MySqlConnection,
        host_id: i32,
        ty: i8,
        from: i8,
        to: i8,
        actor: &str,
        message: &str,
    ) -> Result<u64, StoreError> {
        let q = |e| StoreError::query("changing file task status", e);
        sqlx::query(self.sql(
            "INSERT INTO {BPDATA}.TASK_HISTORY (NA_TASK_KIND, FK_TASK, FK_HOST, NA_ACTOR, NU_TYPE, NU_STATUS_FROM, NU_STATUS_TO, NU_ATTEMPT, NA_MESSAGE)
             SELECT 'FILE', ID_FILE_TASK, FK_HOST, ?, NU_TYPE, NU_STATUS, ?, NU_ATTEMPT, ?
             FROM {BPDATA}.FILE_TASK WHERE FK_HOST = ? AND NU_TYPE = ? AND NU_STATUS = ? FOR UPDATE",
        ))
        .bind(actor)
        .bind(to)
        .bind(message)
        .bind(host_id)
        .bind(ty)
        .bind(from)
        .execute(&mut *conn)
        .await
        .map_err(q)?;
        let res = sqlx::query(self.sql(
            "UPDATE {BPDATA}.FILE_TASK SET NU_STATUS = ?, NA_MESSAGE = ? WHERE FK_HOST = ? AND NU_TYPE = ? AND NU_STATUS = ?",
        ))
        .bind(to)
        .bind(message)
        .bind(host_id)
        .bind(ty)
        .bind(from)
        .execute(&mut *conn)
        .await
        .map_err(q)?;
        Ok(res.rows_affected())
    }
}
