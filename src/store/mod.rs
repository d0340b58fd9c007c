//! The only module that speaks SQL.
//!
//! [`Store`] owns the MariaDB pool. Every statement lives in a submodule here, written as a
//! template whose `{BPDATA}`/`{RFDATA}` placeholders are replaced by the configured schema names
//! (validated identifiers, never request data); every value is a bind parameter. State changes
//! that touch several rows run in one transaction, and a transaction that hits a deadlock or a
//! lock-wait timeout is re-run whole (InnoDB rolls the whole transaction back on a deadlock).
//!
//! Every connection runs at READ COMMITTED; rows are locked explicitly. Lock order, to keep
//! deadlocks rare: `HOST` row before `HOST_TASK` row before `FILE_TASK` rows.

pub mod backup;
pub mod bench;
pub mod catalogue;
pub mod gateway;
pub mod migrate;
pub mod ops;
pub mod publish;
pub mod refdata;
pub mod stats;

use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::ConnectOptions;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};

use crate::config::DatabaseConfig;

/// Task status codes shared by `HOST_TASK` and `FILE_TASK` (PRODUCT.md).
pub mod status {
    /// Waiting for an operator (e.g. host key mismatch).
    pub const FROZEN: i8 = -3;
    /// Stopped on request; a new `backup` request re-arms it.
    pub const SUSPENDED: i8 = -2;
    /// Failed; the message says why.
    pub const ERROR: i8 = -1;
    /// Done.
    pub const DONE: i8 = 0;
    /// Waiting to be claimed.
    pub const PENDING: i8 = 1;
    /// Claimed by a worker holding a lease.
    pub const RUNNING: i8 = 2;

    /// A status code's name, for people.
    pub fn name(s: i8) -> &'static str {
        match s {
            FROZEN => "frozen",
            SUSPENDED => "stopped",
            ERROR => "failed",
            DONE => "done",
            PENDING => "pending",
            RUNNING => "running",
            _ => "unknown",
        }
    }
}

/// Task types.
pub mod task_type {
    /// `HOST_TASK`: back the host up. `FILE_TASK`: copy the file.
    pub const BACKUP: i8 = 1;
    /// `FILE_TASK`: catalogue the copied file.
    pub const PROCESSING: i8 = 2;
}

/// Database errors, classified for retry decisions.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or no connection was free in time.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A statement failed.
    #[error("database error while {action}: {source}")]
    Query {
        /// What we were doing.
        action: &'static str,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },
    /// A migration could not be applied.
    #[error("migration {version} ({name}) failed: {reason}")]
    Migration {
        /// Migration number.
        version: i64,
        /// Migration name.
        name: String,
        /// Why.
        reason: String,
    },
    /// Stored data contradicts what the caller was told to expect.
    #[error("{0}")]
    Invalid(String),
}

impl StoreError {
    /// Wraps a driver error, classifying connection problems as [`StoreError::Unavailable`].
    pub fn query(action: &'static str, source: sqlx::Error) -> StoreError {
        match &source {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                StoreError::Unavailable(format!("{action}: {source}"))
            }
            _ => StoreError::Query { action, source },
        }
    }

    /// `true` for errors a retry of the whole transaction may cure: deadlock (1213), lock wait
    /// timeout (1205), lost connection, pool timeout.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Unavailable(_) => true,
            StoreError::Query { source, .. } => is_transient(source),
            StoreError::Migration { .. } | StoreError::Invalid(_) => false,
        }
    }

    /// `true` when the database itself is out of reach (as opposed to a bad statement).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
            || matches!(self, StoreError::Query { source, .. } if matches!(source, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut))
    }
}

/// Deadlock, lock-wait timeout, or a dropped connection.
pub fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>().map(|m| m.number());
            matches!(code, Some(1213 | 1205 | 2006 | 2013 | 1927))
        }
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        _ => false,
    }
}

/// `true` for a duplicate-key error (1062).
pub fn is_duplicate_key(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db)
        if db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>().map(|m| m.number()) == Some(1062))
}

/// Handle to MariaDB. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: MySqlPool,
    bpdata: String,
    rfdata: String,
}

impl Store {
    /// Creates the pool without connecting; connections open on first use, so a database that
    /// is down at this moment is not an error here (see [`Store::ping`]).
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when the URL cannot be parsed.
    pub fn connect_lazy(cfg: &DatabaseConfig) -> Result<Store, StoreError> {
        let url = cfg.url.as_ref().ok_or_else(|| StoreError::Invalid("database.url is not set".into()))?;
        let options: MySqlConnectOptions = url
            .0
            .expose_secret()
            .replacen("mariadb://", "mysql://", 1)
            .parse()
            .map_err(|e| StoreError::Invalid(format!("database.url ({}): {e}", url.redacted())))?;
        let options = options
            .charset("utf8mb4")
            .timezone(Some("+00:00".into()))
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(2));
        let pool = MySqlPoolOptions::new()
            .max_connections(cfg.max_connections)
            .min_connections(0)
            .acquire_timeout(cfg.acquire_timeout)
            .idle_timeout(Some(Duration::from_secs(300)))
            .test_before_acquire(true)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    // Row locks are always explicit (FOR UPDATE / SKIP LOCKED); READ COMMITTED
                    // avoids the gap locks that make concurrent inserts of new hosts deadlock.
                    sqlx::Executor::execute(
                        &mut *conn,
                        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
                    )
                    .await
                    .map(|_| ())
                })
            })
            .connect_lazy_with(options);
        Ok(Store { pool, bpdata: cfg.bpdata_schema.clone(), rfdata: cfg.rfdata_schema.clone() })
    }

    /// One round trip to prove the database answers.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when it does not.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// Closes the pool, waiting for checked-out connections (the last step of a drain).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The pool, for submodules.
    pub(crate) fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// Configured queue schema name.
    pub fn bpdata_schema(&self) -> &str {
        &self.bpdata
    }

    /// Configured catalogue schema name.
    pub fn rfdata_schema(&self) -> &str {
        &self.rfdata
    }

    /// Instantiates a statement template for the configured schemas.
    ///
    /// Only the configured schema names (validated as plain identifiers by the configuration)
    /// are substituted; values are always bound, so the result is safe to send.
    pub(crate) fn sql(&self, template: &str) -> sqlx::AssertSqlSafe<String> {
        sqlx::AssertSqlSafe(template.replace("{BPDATA}", &self.bpdata).replace("{RFDATA}", &self.rfdata))
    }
}

/// After a failed transaction attempt: waits a short jittered pause and returns `true` when the
/// error is worth re-running the whole transaction for (deadlock, lock-wait timeout), at most
/// `max` attempts in all.
pub(crate) async fn retry_after(error: &StoreError, attempt: u32, max: u32) -> bool {
    if attempt >= max || !error.is_retryable() || error.is_unavailable() {
        return false;
    }
    let jitter = jitter_ms(5 * u64::from(attempt));
    tokio::time::sleep(Duration::from_millis(2 * u64::from(attempt) + jitter)).await;
    true
}

/// A pseudo-random number in `0..=max` (for retry jitter; not for cryptography).
pub fn jitter_ms(max: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0),
    );
    h.finish() % (max + 1)
}
