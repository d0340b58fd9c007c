//! Statements of the backup stage: claims with leases, file registration, copy results.
//!
//! A claim is `SELECT … FOR UPDATE SKIP LOCKED` on the oldest claimable `HOST_TASK` (pending,
//! past its backoff), then an update that sets the owner instance, the lease expiry (database
//! clock) and bumps `NU_ATTEMPT`, the fencing token. Every later write of the backup checks
//! in the same transaction that the task is still running under that owner and attempt; a
//! worker whose lease was lost (paused, partitioned) writes nothing. Expired leases of dead
//! daemons return to the queue through [`Store::requeue_expired`]. One `HOST_TASK` per host
//! and type (unique key) means at most one backup per host at a time, across daemons.

use std::time::Duration;

use sqlx::{MySqlConnection, Row};

use super::{Store, StoreError, status, task_type};
use crate::backup::index::{DueFile, RejectedLine};
use crate::secret::SealedPassword;

/// A claimed host task: the fencing identity of every later write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// `HOST_TASK.ID_HOST_TASK`.
    pub task_id: i64,
    /// `NU_ATTEMPT` after the claim.
    pub attempt: u32,
    /// Instance id of the owner.
    pub owner: String,
    /// The host.
    pub host_id: i32,
}

/// Station access data read at claim time.
#[derive(Debug, Clone)]
pub struct HostAccess {
    /// Zabbix host id.
    pub host_id: i32,
    /// Equipment name.
    pub host_uid: String,
    /// Address.
    pub address: String,
    /// SSH port.
    pub port: u16,
    /// SSH user.
    pub user: String,
    /// Sealed password, if stored.
    pub password: Option<SealedPassword>,
    /// Pinned host key fingerprint.
    pub host_key_fingerprint: Option<String>,
    /// Private key file for key authentication.
    pub key_file: Option<String>,
    /// Station config path override.
    pub station_config: Option<String>,
    /// Consecutive failures so far (for backoff).
    pub failures: u32,
}

/// What the lease renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Still ours; `cancel_requested` when a stop request arrived.
    Held {
        /// A `stop` request arrived.
        cancel_requested: bool,
    },
    /// Another worker or a reaper took it: stop writing.
    Lost,
}

/// How a host backup ended.
#[derive(Debug, Clone, PartialEq)]
pub enum HostOutcome {
    /// Completed.
    Done {
        /// Summary for `NA_MESSAGE`.
        message: String,
    },
    /// Put back without counting a failure (shutdown).
    Released {
        /// Why.
        message: String,
    },
    /// Stopped by a `stop` request.
    Stopped,
    /// Failed; retried after `backoff`.
    Retry {
        /// Why.
        message: String,
        /// Delay before the next attempt.
        backoff: Duration,
        /// Status: `PENDING` for transient problems, `ERROR` for permanent ones (a poll
        /// re-arms them, the backoff still applies).
        status: i8,
    },
    /// Needs an operator (host key mismatch).
    Frozen {
        /// Why.
        message: String,
    },
}

/// A file copy to perform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyJob {
    /// `FILE_TASK.ID_FILE_TASK`.
    pub file_id: i64,
    /// Station directory.
    pub dir: String,
    /// File name.
    pub name: String,
    /// File attempt (fencing for the file row).
    pub attempt: u32,
}

/// A verified copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyDone {
    /// Repository directory.
    pub server_dir: String,
    /// Repository file name.
    pub server_name: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// Station mtime (unix seconds).
    pub mtime: i64,
    /// Note for the message (dedup, collision).
    pub note: Option<String>,
}

/// Counts from [`Store::register_due_files`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Registered {
    /// New rows.
    pub new: u64,
    /// Known rows re-armed.
    pub rearmed: u64,
    /// Already copied or queued.
    pub known: u64,
    /// Rejected lines recorded.
    pub rejected: u64,
}

/// Rejected index lines recorded per index (the rest are summarised in one row).
pub const MAX_REJECTED_ROWS: usize = 1000;

fn lease_lost() -> StoreError {
    StoreError::Invalid("lease lost: another worker owns this task now".into())
}

impl StoreError {
    /// `true` for the fencing failure of a stale worker.
    pub fn is_lease_lost(&self) -> bool {
        matches!(self, StoreError::Invalid(m) if m.starts_with("lease lost"))
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl Store {
    /// Claims the oldest claimable backup task, if any.
    ///
    /// # Errors
    /// [`StoreError`] on database failure.
    pub async fn claim_backup(
        &self,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<(Claim, HostAccess)>, StoreError> {
        let q = |e| StoreError::query("claiming a backup task", e);
        let mut tx = self.pool().begin().await.map_err(q)?;
        let row = sqlx::query(self.sql(
            "SELECT ID_HOST_TASK FROM {BPDATA}.HOST_TASK
             WHERE NU_TYPE = ? AND NU_STATUS = ? AND (DT_NOT_BEFORE IS NULL OR DT_NOT_BEFORE <= NOW(6))
             ORDER BY DT_HOST_TASK, ID_HOST_TASK LIMIT 1 FOR UPDATE SKIP LOCKED",
        ))
        .bind(task_type::BACKUP)
        .bind(status::PENDING)
        .fetch_optional(&mut *tx)
        .await
        .map_err(q)?;
        let Some(row) = row else { return Ok(None) };
        let task_id: i32 = row.try_get(0).map_err(q)?;
        sqlx::query(self.sql(
            "UPDATE {BPDATA}.HOST_TASK SET NU_STATUS = ?, NA_OWNER = ?, NU_PID = ?, NU_ATTEMPT = NU_ATTEMPT + 1,
                    DT_LEASE_EXPIRY = NOW(6) + INTERVAL ? MICROSECOND, NA_MESSAGE = 'Running', IS_CANCEL_REQUESTED = 0
             WHERE ID_HOST_TASK = ?",
        ))
        .bind(status::RUNNING)
        .bind(owner)
        .bind(std::process::id())
        .bind(micros(lease))
        .bind(task_id)
        .execute(&mut *tx)
        .await
        .map_err(q)?;
        self.host_history(&mut tx, task_id.into(), owner, Some(status::PENDING), status::RUNNING, "Claimed")
            .await?;
        let r = sqlx::query(self.sql(
            "SELECT t.NU_ATTEMPT, t.NU_FAILURES, h.ID_HOST, h.NA_HOST_UID, h.NA_HOST_ADDRESS, h.NA_HOST_PORT, h.NA_HOST_USER,
                    h.BN_HOST_PASSWORD_SEALED, h.NA_SECRET_KEY_ID, h.NA_HOST_KEY_FINGERPRINT, h.NA_HOST_KEY_FILE, h.NA_STATION_CONFIG
             FROM {BPDATA}.HOST_TASK t JOIN {BPDATA}.HOST h ON h.ID_HOST = t.FK_HOST WHERE t.ID_HOST_TASK = ?",
        ))
        .bind(task_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(q)?;
        tx.commit().await.map_err(q)?;
        let sealed: Option<Vec<u8>> = r.try_get(7).map_err(q)?;
        let key_id: Option<String> = r.try_get(8).map_err(q)?;
        let port: Option<i32> = r.try_get(5).map_err(q)?;
        let access = HostAccess {
            host_id: r.try_get(2).map_err(q)?,
            host_uid: r.try_get::<Option<String>, _>(3).map_err(q)?.unwrap_or_default(),
            address: r.try_get::<Option<String>, _>(4).map_err(q)?.unwrap_or_default(),
            port: port.and_then(|p| u16::try_from(p).ok()).unwrap_or(22),
            user: r.try_get::<Option<String>, _>(6).map_err(q)?.unwrap_or_default(),
            password: match (sealed, key_id) {
                (Some(bytes), Some(key_id)) => Some(SealedPassword { bytes, key_id }),
                _ => None,
            },
            host_key_fingerprint: r.try_get(9).map_err(q)?,
            key_file: r.try_get(10).map_err(q)?,
            station_config: r.try_get(11).map_err(q)?,
            failures: r.try_get(1).map_err(q)?,
        };
        let claim = Claim {
            task_id: task_id.into(),
            attempt: r.try_get(0).map_err(q)?,
            owner: owner.into(),
            host_id: access.host_id,
        };
        Ok(Some((claim, access)))
    }

    /// Checks in `conn`'s transaction that `claim` still holds its task (shared lock).
    async fn fence(&self, conn: &mut MySqlConnection, claim: &Claim) -> Result<bool, StoreError> {
        let row = sqlx::query(self.sql(
            "SELECT IS_CANCEL_REQUESTED FROM {BPDATA}.HOST_TASK
             WHERE ID_HOST_TASK = ? AND NU_ATTEMPT = ? AND NA_OWNER = ? AND NU_STATUS = ? LOCK IN SHARE MODE",
        ))
        .bind(claim.task_id)
        .bind(claim.attempt)
        .bind(&claim.owner)
        .bind(status::RUNNING)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| StoreError::query("checking the lease", e))?;
        Ok(row.is_some())
    }

    /// Extends the lease; reports a stop request or a lost lease.
    ///
    /// # Errors
    /// [`StoreError`] on database failure.
    pub async fn renew_lease(&self, claim: &Claim, lease: Duration) -> Result<LeaseState, StoreError> {
        let q = |e| StoreError::query("renewing a lease", e);
        let res = sqlx::query(self.sql(
            "UPDATE {BPDATA}.HOST_TASK SET DT_LEASE_EXPIRY = NOW(6) + INTERVAL ? MICROSECOND
             WHERE ID_HOST_TASK = ? AND NU_ATTEMPT = ? AND NA_OWNER = ? AND NU_STATUS = ?",
        ))
        .bind(micros(lease))
        .bind(claim.task_id)
        .bind(claim.attempt)
        .bind(&claim.owner)
        .bind(status::RUNNING)
        .execute(self.pool())
        .await
        .map_err(q)?;
        if res.rows_affected() == 0 {
            return Ok(LeaseState::Lost);
        }
        let cancel: i8 = sqlx::query_scalar(
            self.sql("SELECT IS_CANCEL_REQUESTED FROM {BPDATA}.HOST_TASK WHERE ID_HOST_TASK = ?"),
        )
        .bind(claim.task_id)
        .fetch_one(self.pool())
        .await
        .map_err(q)?;
        Ok(LeaseState::Held { cancel_requested: cancel != 0 })
    }

    /// Pins a host key fingerprint (first contact under accept-new).
    ///
    /// # Errors
    /// [`StoreError`] on database failure.
    pub async fn pin_host_key(&self, host_id: i32, fingerprint: &str) -> Result<(), StoreError> {
        sqlx::query(self.sql(
            "UPDATE {BPDATA}.HOST SET NA_HOST_KEY_FINGERPRINT = ?, DT_HOST_KEY_PINNED = NOW(6)
             WHERE ID_HOST = ? AND NA_HOST_KEY_FINGERPRINT IS NULL",
        ))
        .bind(fingerprint)
        .bind(host_id)
        .execute(self.pool())
        .await
        .map_err(|e| StoreError::query("pinning a host key", e))?;
        Ok(())
    }

    /// Forgets a host's pinned key, clears a host-key condition and unfreezes its task
    /// (`appcataloga hosts trust-key`).
    ///
    /// # Errors
    /// [`StoreError`] on database failure.
    pub async fn trust_host_key(&self, host_id: i32, actor: &str) -> Result<bool, StoreError> {
        let q = |e| StoreError::query("re-trusting a host key", e);
        let mut tx = self.pool().begin().await.map_err(q)?;
        let res = sqlx::query(self.sql(
            "UPDATE {BPDATA}.HOST SET NA_HOST_KEY_FINGERPRINT = NULL, DT_HOST_KEY_PINNED = NULL,
                    NU_STATUS = IF(NU_STATUS = 3, 0, NU_STATUS), DT_STATUS = NOW(6) WHERE ID_HOST = ?",
        ))
        .bind(host_id)
        .execute(&mut *tx)
        .await
        .map_err(q)?;
        let frozen: Option<i32> = sqlx::query_scalar(self.sql(
            "SELECT ID_HOST_TASK FROM {BPDATA}.HOST_TASK WHERE FK_HOST = ? AND NU_TYPE = ? AND NU_STATUS = ? FOR UPDATE",
        ))
        .bind(host_id)
        .bind(task_type::BACKUP)
        .bind(status::FROZEN)
        .fetch_optional(&mut *tx)
        .await
        .map_err(q)?;
        if let Some(id) = frozen {
            sqlx::query(self.sql(
                "UPDATE {BPDATA}.HOST_TASK SET NU_STATUS = ?, DT_NOT_BEFORE = NULL, NA_MESSAGE = 'Host key re-trusted' WHERE ID_HOST_TASK = ?",
            ))
            .bind(status::PENDING)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(q)?;
            self.host_history(
                &mut tx,
                id.into(),
                actor,
                Some(status::FROZEN),
                status::PENDING,
                "Host key re-trusted",
            )
            .await?;
        }
        tx.commit().await.map_err(q)?;
        Ok(res.rows_affected() > 0)
    }

    /// Records the host's condition (`HOST.NU_STATUS`: 0 ok, 1 no daemon, 2 halt flag alert,
    /// 3 host key mismatch, 4 authentication failed, 5 unreachable).
    ///
    /// # Errors
    /// [`StoreError`] on database failure.
    pub async fn set_host_condition(
        &self,
        host_id: i32,
        condition: i8,
        message: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(self.sql(
            "UPDATE {BPDATA}.HOST SET DT_STATUS = IF(NU_STATUS = ?, DT_STATUS, NOW(6)), NU_STATUS = ?, NA_STATUS_MESSAGE = ?
             WHERE ID_HOST = ?",
        ))
        .bind(condition)
        .bind(condition)
        .bind(message)
        .bind(host_id)
        .execute(self.pool())
        .await
        .map_err(|e| StoreError::query("recording a host condition", e))?;
        Ok(())
    }

    /// Records every listed file (and every rejected line, as an error with its reason) in one
    /// transaction, fenced by the claim. Known files are not duplicated; failed or stopped
    /// copies of listed files are re-armed.
    ///
    /// # Errors
    /// [`StoreError`] (lease lost included).
    pub async fn register_due_files(
        &self,
        claim: &Claim,
        files: &[DueFile],
        rejected: &[RejectedLine],
    ) -> Result<Registered, StoreError> {
        let q = |e| StoreError::query("recording the station index", e);
        let mut tx = self.pool().begin().await.map_err(q)?;
        if !self.fence(&mut tx, claim).await? {
            return Err(lease_lost());
        }
        let mut reg = Registered::default();
        for chunk in files.chunks(500) {
            let values =
                vec!["(?, NOW(6), ?, ?, ?, ?, 'Listed by the station index')"; chunk.len()].join(", ");
            let sql = self.sql(&format!(
                "INSERT IGNORE INTO {{BPDATA}}.FILE_TASK (FK_HOST, DT_FILE_TASK, NU_TYPE, NA_HOST_FILE_PATH, NA_HOST_FILE_NAME, NU_STATUS, NA_MESSAGE)
                 VALUES {values}"
            ));
            let mut query = sqlx::query(sql);
            for f in chunk {
                query = query
                    .bind(claim.host_id)
                    .bind(task_type::BACKUP)
                    .bind(&f.dir)
                    .bind(&f.name)
                    .bind(status::PENDING);
            }
            let inserted = query.execute(&mut *tx).await.map_err(q)?.rows_affected();
            reg.new += inserted;
            reg.known += chunk.len() as u64 - inserted;
        }
        // Rejected lines: recorded (at most MAX_REJECTED_ROWS, plus a summary) with their reason.
        let shown = rejected.len().min(MAX_REJECTED_ROWS);
        let mut rows: Vec<(String, String)> = rejected[..shown]
            .iter()
            .map(|r| {
                (r.text.chars().take(250).collect(), format!("Index line {} rejected: {}", r.line, r.reason))
            })
            .collect();
        if rejected.len() > shown {
            rows.push((
                format!("(and {} more rejected lines)", rejected.len() - shown),
                format!(
                    "{} further index lines rejected; the first {shown} are recorded",
                    rejected.len() - shown
                ),
            ));
        }
        for chunk in rows.chunks(200) {
            let values =
                vec!["(?, NOW(6), ?, '(rejected index line)', ?, ?, 'REJECTED', ?)"; chunk.len()].join(", ");
            let sql = self.sql(&format!(
                "INSERT INTO {{BPDATA}}.FILE_TASK (FK_HOST, DT_FILE_TASK, NU_TYPE, NA_HOST_FILE_PATH, NA_HOST_FILE_NAME, NU_STATUS, NA_ERROR_CODE, NA_MESSAGE)
                 VALUES {values} ON DUPLICATE KEY UPDATE NA_MESSAGE = VALUES(NA_MESSAGE)"
            ));
            let mut query = sqlx::query(sql);
            for (text, message) in chunk {
                query = query
                    .bind(claim.host_id)
                    .bind(task_type::BACKUP)
                    .bind(text)
                    .bind(status::ERROR)
                    .bind(message);
            }
            query.execute(&mut *tx).await.map_err(q)?;
        }
        reg.rejected = rejected.len() as u64;
        // History rows for the new files.
        if reg.new > 0 {
            sqlx::query(self.sql(
                "INSERT INTO {BPDATA}.TASK_HISTORY (NA_TASK_KIND, FK_TASK, FK_HOST, NA_ACTOR, NU_TYPE, NU_STATUS_FROM, NU_STATUS_TO, NU_ATTEMPT, NA_MESSAGE)
                 SELECT 'FILE', f.ID_FILE_TASK, f.FK_HOST, ?, f.NU_TYPE, NULL, f.NU_STATUS, 0, 'Listed by the station index'
                 FROM {BPDATA}.FILE_TASK f
                 WHERE f.FK_HOST = ? AND f.NU_TYPE = ? AND f.NU_ATTEMPT = 0 AND f.NU_STATUS = ?
                   AND NOT EXISTS (SELECT 1 FROM {BPDATA}.TASK_HISTORY h WHERE h.NA_TASK_KIND = 'FILE' AND h.FK_TASK = f.ID_FILE_TASK)",
            ))
            .bind(&claim.owner)
            .bind(claim.host_id)
            .bind(task_type::BACKUP)
            .bind(status::PENDING)
            .execute(&mut *tx)
            .await
            .map_err(q)?;
        }
        tx.commit().await.map_err(q)?;
        Ok(reg)
    }

    /// Re-arms this host's failed copies that may be retried (fewer than `limit` failures and
    /// past their backoff), and copies a dead attempt left running.
    ///
    /// # Errors
    /// [`StoreError`] (lease lost included).
    pub async fn rearm_copies(&self, claim: &Claim, limit: u32) -> Result<u64, StoreError> {
        let q = |e| StoreError::query("re-arming failed copies", e);
        let mut tx = self.pool().begin().await.map_err(q)?;
        if !self.fence(&mut tx, claim).await? {
            return Err(lease_lost());
        }
        let cond = "FK_HOST = ? AND NU_TYPE = ? AND ((NU_STATUS = ? AND NA_ERROR_CODE IN ('COPY_FAILED', 'CHANGED') AND NU_FAILURES < ?
                    AND (DT_NOT_BEFORE IS NULL OR DT_NOT_BEFORE <= NOW(6))) OR NU_STATUS = ?)";
        sqlx::query(self.sql(&format!(
            "INSERT INTO {{BPDATA}}.TASK_HISTORY (NA_TASK_KIND, FK_TASK, FK_HOST, NA_ACTOR, NU_TYPE, NU_STATUS_FROM, NU_STATUS_TO, NU_ATTEMPT, NA_MESSAGE)
             SELECT 'FILE', ID_FILE_TASK, FK_HOST, ?, NU_TYPE, NU_STATUS, ?, NU_ATTEMPT, 'Copy re-armed' FROM {{BPDATA}}.FILE_TASK WHERE {cond}"
        )))
        .bind(&claim.owner)
        .bind(status::PENDING)
        .bind(claim.host_id)
        .bind(task_type::BACKUP)
        .bind(status::ERROR)
        .bind(limit)
        .bind(status::RUNNING)
        .execute(&mut *tx)
        .await
        .map_err(q)?;
        let res = sqlx::query(
            self.sql(&format!("UPDATE {{BPDATA}}.FILE_TASK SET NU_STATUS = ?, NA_OWNER = NULL WHERE {cond}")),
        )
        .bind(status::PENDING)
        .bind(claim.host_id)
        .bind(task_type::BACKUP)
        .bind(status::ERROR)
        .bind(limit)
        .bind(status::RUNNING)
        .execute(&mut *tx)
        .await
        .map_err(q)?;
        tx.commit().await.map_err(q)?;
        Ok(res.rows_affected())
    }

    /// Takes the next pending copy of the claimed host (oldest first), marking it running.
    ///
    /// # Errors
    /// [`StoreError`] (lease lost included).
    pub async fn next_copy(&self, claim: &Claim) -> Result<Option<CopyJob>, StoreError> {
        let q = |e| StoreError::query("taking a file copy", e);
        let mut tx = self.pool().begin().await.map_err(q)?;
        if !self.fence(&mut tx, claim).await? {
            return Err(lease_lost());
        }
        let row = sqlx::query(self.sql(
            "SELECT ID_FILE_TASK, NA_HOST_FILE_PATH, NA_HOST_FILE_NAME FROM {BPDATA}.FILE_TASK
             WHERE FK_HOST = ? AND NU_TYPE = ? AND NU_STATUS = ? ORDER BY DT_FILE_TASK, ID_FILE_TASK LIMIT 1 FOR UPDATE",
        ))
        .bind(claim.host_id)
        .bind(task_type::BACKUP)
        .bind(status::PENDING)
        .fetch_optional(&mut *tx)
        .await
        .map_err(q)?;
        let Some(row) = row else { return Ok(None) };
        let file_id: i64 = row.try_get(0).map_err(q)?;
        sqlx::query(self.sql(
            "UPDATE {BPDATA}.FILE_TASK SET NU_STATUS = ?, NA_OWNER = ?, NU_PID = ?, NU_ATTEMPT = NU_ATTEMPT + 1 WHERE ID_FILE_TASK = ?",
        ))
        .bind(status::RUNNING)
        .bind(&claim.owner)
        .bind(std::process::id())
        .bind(file_id)
        .execute(&mut *tx)
        .await
        .map_err(q)?;
        let attempt: u32 =
            sqlx::query_scalar(self.sql("SELECT NU_ATTEMPT FROM {BPDATA}.FILE_TASK WHERE ID_FILE_TASK = ?"))
                .bind(file_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(q)?;
        tx.commit().await.map_err(q)?;
        Ok(Some(CopyJob {
            file_id,
            dir: row.try_get(1).map_err(q)?,
            name: row.try_get(2).map_err(q)?,
            attempt,
        }))
    }

    /// Records a verified copy: the file task becomes "processing pending" with its server
    /// path, size and hash, in one fenced transaction with its history row.
    ///
    /// # Errors
    /// [`StoreError`] (lease lost included).
    pub async fn complete_copy(
        &self,
        claim: &Claim,
        job: &CopyJob,
        done: &CopyDone,
    ) -> Result<(), StoreError> {
        let q = |e| StoreError::query("recording a copy", e);
        let mut tx = self.pool().begin().await.map_err(q)?;
        if !self.fence(&mut tx, claim).await? {
            return Err(lease_lost());
        }
        let remote = format!("{}/{}", job.dir, job.name);
        let local = format!("{}/{}", done.server_dir, done.server_name);
        let code = done.note.as_deref().filter(|n| n.contains("collision")).map(|_| "NAME_COLLISION");
        let mut message = format!("File '{remote}' copied to '{local}'");
        if let Some(note) = &done.note {
            message.push_str(&format!(" ({note})"));
        }
        let res = sqlx::query(self.sql(
            "UPDATE {BPDATA}.FILE_TASK SET NU_TYPE = ?, NU_STATUS = ?, NA_SERVER_FILE_PATH = ?, NA_SERVER_FILE_NAME = ?,
                    VL_FILE_SIZE = ?, NA_SHA256 = ?, DT_HOST_FILE_MODIFIED = FROM_UNIXTIME(?), DT_BACKUP = NOW(6),
                    NA_MESSAGE = ?, NA_ERROR_CODE = ?, NU_PID = NULL, NA_OWNER = NULL, NU_FAILURES = 0, NU_ATTEMPT = 0,
                    DT_NOT_BEFORE = NULL
             WHERE ID_FILE_TASK = ? AND NU_ATTEMPT = ? AND NU_STATUS = ?",
        ))
        .bind(task_type::PROCESSING)
        .bind(status::PENDING)
        .bind(&done.server_dir)
        .bind(&done.server_name)
        .bind(i64::try_from(done.size).unwrap_or(i64::MAX))
        .bind(&done.sha256)
        .bind(done.mtime)
        .bind(&message)
        .bind(code)
        .bind(job.file_id)
        .bind(job.attempt)
        .bind(status::RUNNING)
        .execute(&mut *tx)
        .await
        .map_err(q)?;
        if res.rows_affected() == 0 {
            return Err(lease_lost());
        }
        self.file_history(&mut tx, job.file_id, &claim.owner, status::RUNNING, &message).await?;
        tx.commit().await.map_err(q)?;
        Ok(())
    }

    /// Records a failed copy. `retry_after` = `Some` re-arms it for a later backup (counted
    /// against the retry limit); `None` leaves it in error.
    ///
    /// # Errors
    /// [`StoreError`] (lease lost included).
    pub async fn fail_copy(
        &self,
        claim: &Claim,
        job: &CopyJob,
        code: &str,
        message: &str,
        retry_after: Option<Duration>,
        back_to_pending: bool,
    ) -> Result<(), StoreError> {
        let q = |e| StoreError::query("recording a failed copy", e);
        let mut tx = self.pool().begin().await.map_err(q)?;
        if !self.fence(&mut tx, claim).await? {
            return Err(lease_lost());
        }
        let to = if back_to_pending { status::PENDING } else { status::ERROR };
        sqlx::query(self.sql(
            "UPDATE {BPDATA}.FILE_TASK SET NU_STATUS = ?, NA_ERROR_CODE = ?, NA_MESSAGE = ?, NU_PID = NULL, NA_OWNER = NULL,
                    NU_FAILURES = NU_FAILURES + IF(? , 0, 1),
                    DT_NOT_BEFORE = IF(? IS NULL, NULL, NOW(6) + INTERVAL ? MICROSECOND)
             WHERE ID_FILE_TASK = ? AND NU_ATTEMPT = ? AND NU_STATUS = ?",
        ))
        .bind(to)
        .bind(code)
        .bind(message)
        .bind(back_to_pending)
        .bind(retry_after.map(micros))
        .bind(retry_after.map(micros).unwrap_or(0))
        .bind(job.file_id)
        .bind(job.attempt)
        .bind(status::RUNNING)
        .execute(&mut *tx)
        .await
        .map_err(q)?;
        self.file_history(&mut tx, job.file_id, &claim.owner, status::RUNNING, message).await?;
        tx.commit().await.map_err(q)?;
        Ok(())
    }

    /// Appends a `FILE_TASK` history row (the task's status after the change is read back).
    pub(crate) async fn file_history(
        &self,
        conn: &mut MySqlConnection,
        file_id: i64,
        actor: &str,
        from: i8,
        message: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(self.sql(
            "INSERT INTO {BPDATA}.TASK_HISTORY (NA_TASK_KIND, FK_TASK, FK_HOST, NA_ACTOR, NU_TYPE, NU_STATUS_FROM, NU_STATUS_TO, NU_ATTEMPT, NA_MESSAGE)
             SELECT 'FILE', ID_FILE_TASK, FK_HOST, ?, NU_TYPE, ?, NU_STATUS, NU_ATTEMPT, ? FROM {BPDATA}.FILE_TASK WHERE ID_FILE_TASK = ?",
        ))
        .bind(actor)
        .bind(from)
        .bind(message.chars().take(2000).collect::<String>())
        .bind(file_id)
        .execute(&mut *conn)
        .await
        .map_err(|e| StoreError::query("writing file history", e))?;
        Ok(())
    }

    /// Ends a host backup, fenced by the claim. Returns `false` if the lease was lost.
    ///
    /// # Errors
    /// [`StoreError`] on database failure.
    pub async fn finish_backup(&self, claim: &Claim, outcome: &HostOutcome) -> Result<bool, StoreError> {
        let q = |e| StoreError::query("finishing a backup task", e);
        let (to, message, backoff, failed, done): (i8, String, Option<Duration>, bool, bool) = match outcome {
            HostOutcome::Done { message } => (status::DONE, message.clone(), None, false, true),
            HostOutcome::Released { message } => (status::PENDING, message.clone(), None, false, false),
            HostOutcome::Stopped => (status::SUSPENDED, "Stopped by request".into(), None, false, false),
            HostOutcome::Retry { message, backoff, status } => {
                (*status, message.clone(), Some(*backoff), true, false)
            }
            HostOutcome::Frozen { message } => (status::FROZEN, message.clone(), None, true, false),
        };
        let mut tx = self.pool().begin().await.map_err(q)?;
        let res = sqlx::query(self.sql(
            "UPDATE {BPDATA}.HOST_TASK SET NU_STATUS = ?, NA_MESSAGE = ?, NA_OWNER = NULL, NU_PID = NULL, DT_LEASE_EXPIRY = NULL,
                    IS_CANCEL_REQUESTED = 0,
                    NU_FAILURES = IF(?, NU_FAILURES + 1, IF(?, 0, NU_FAILURES)),
                    DT_LAST_DONE = IF(?, NOW(6), DT_LAST_DONE),
                    DT_NOT_BEFORE = IF(? IS NULL, NULL, NOW(6) + INTERVAL ? MICROSECOND)
             WHERE ID_HOST_TASK = ? AND NU_ATTEMPT = ? AND NA_OWNER = ? AND NU_STATUS = ?",
        ))
        .bind(to)
        .bind(message.chars().take(2000).collect::<String>())
        .bind(failed)
        .bind(done)
        .bind(done)
        .bind(backoff.map(micros))
        .bind(backoff.map(micros).unwrap_or(0))
        .bind(claim.task_id)
        .bind(claim.attempt)
        .bind(&claim.owner)
        .bind(status::RUNNING)
        .execute(&mut *tx)
        .await
        .map_err(q)?;
        if res.rows_affected() == 0 {
            return Ok(false);
        }
        self.host_history(&mut tx, claim.task_id, &claim.owner, Some(status::RUNNING), to, &message).await?;
        if done {
            sqlx::query(self.sql(
                "UPDATE {BPDATA}.HOST SET DT_STATUS = IF(NU_STATUS = 0, DT_STATUS, NOW(6)), NU_STATUS = 0, NA_STATUS_MESSAGE = NULL
                 WHERE ID_HOST = ?",
            ))
            .bind(claim.host_id)
            .execute(&mut *tx)
            .await
            .map_err(q)?;
        }
        tx.commit().await.map_err(q)?;
        Ok(true)
    }

    /// Returns tasks whose lease expired (their owner died or hung) to the queue, and the
    /// running claims of dead daemons that ran on this host (`host_prefix` = `hostname:`),
    /// except `me`. Returns how many host tasks were requeued.
    ///
    /// # Errors
    /// [`StoreError`] on database failure.
    pub async fn requeue_expired(
        &self,
        actor: &str,
        host_prefix: Option<(&str, &str)>,
    ) -> Result<u64, StoreError> {
        let q = |e| StoreError::query("requeueing expired claims", e);
        let mut tx = self.pool().begin().await.map_err(q)?;
        let (prefix, me) = host_prefix.map(|(p, m)| (format!("{p}%"), m.to_string())).unwrap_or_default();
        let rows = sqlx::query(self.sql(
            "SELECT ID_HOST_TASK, FK_HOST FROM {BPDATA}.HOST_TASK
             WHERE NU_STATUS = ? AND (DT_LEASE_EXPIRY < NOW(6) OR (? <> '' AND NA_OWNER LIKE ? AND NA_OWNER <> ?))
             FOR UPDATE SKIP LOCKED",
        ))
        .bind(status::RUNNING)
        .bind(&prefix)
        .bind(&prefix)
        .bind(&me)
        .fetch_all(&mut *tx)
        .await
        .map_err(q)?;
        for r in &rows {
            let id: i32 = r.try_get(0).map_err(q)?;
            let host: i32 = r.try_get(1).map_err(q)?;
            self.host_history(
                &mut tx,
                id.into(),
                actor,
                Some(status::RUNNING),
                status::PENDING,
                "Lease expired: requeued",
            )
            .await?;
            sqlx::query(self.sql(
                "UPDATE {BPDATA}.HOST_TASK SET NU_STATUS = ?, NA_OWNER = NULL, NU_PID = NULL, DT_LEASE_EXPIRY = NULL,
                        NA_MESSAGE = 'Lease expired: requeued' WHERE ID_HOST_TASK = ?",
            ))
            .bind(status::PENDING)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(q)?;
            // Copies the dead owner had started go back to pending too.
            self.move_file_tasks(
                &mut tx,
                host,
                task_type::BACKUP,
                status::RUNNING,
                status::PENDING,
                actor,
                "Owner died: requeued",
            )
            .await?;
        }
        tx.commit().await.map_err(q)?;
        Ok(rows.len() as u64)
    }
}
