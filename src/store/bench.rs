//! Statements used only by the benchmark and demo commands (scratch schema reset, progress).

use super::{Store, StoreError, status, task_type};

impl Store {
    /// Drops the configured schemas — only scratch ones (benchmarks, the demo): the names must
    /// be `<prefix>_BPDATA` / `<prefix>_RFDATA` with a non-empty prefix, never the production
    /// `BPDATA`/`RFDATA`.
    ///
    /// # Errors
    /// [`StoreError`] on database failure, or when the schemas are not scratch ones.
    pub async fn drop_scratch_schemas(&self) -> Result<(), StoreError> {
        let scratch = |name: &str, suffix: &str| {
            name.strip_suffix(suffix).is_some_and(|p| p.len() > 1 && p.ends_with('_'))
        };
        if !scratch(self.bpdata_schema(), "BPDATA") || !scratch(self.rfdata_schema(), "RFDATA") {
            return Err(StoreError::Invalid(format!(
                "refusing to drop {} and {}: only <prefix>_BPDATA / <prefix>_RFDATA scratch schemas are dropped",
                self.bpdata_schema(),
                self.rfdata_schema()
            )));
        }
        for template in ["DROP DATABASE IF EXISTS {RFDATA}", "DROP DATABASE IF EXISTS {BPDATA}"] {
            sqlx::query(self.sql(template))
                .execute(self.pool())
                .await
                .map_err(|e| StoreError::query("dropping scratch schemas", e))?;
        }
        Ok(())
    }

    /// (files copied so far, host tasks still pending or running).
    ///
    /// # Errors
    /// [`StoreError`] on database failure.
    pub async fn bench_backup_progress(&self) -> Result<(i64, i64), StoreError> {
        let q = |e| StoreError::query("reading benchmark progress", e);
        let copied: i64 =
            sqlx::query_scalar(self.sql("SELECT COUNT(*) FROM {BPDATA}.FILE_TASK WHERE NU_TYPE = ?"))
                .bind(task_type::PROCESSING)
                .fetch_one(self.pool())
                .await
                .map_err(q)?;
        let busy: i64 =
            sqlx::query_scalar(self.sql("SELECT COUNT(*) FROM {BPDATA}.HOST_TASK WHERE NU_STATUS IN (?, ?)"))
                .bind(status::PENDING)
                .bind(status::RUNNING)
                .fetch_one(self.pool())
                .await
                .map_err(q)?;
        Ok((copied, busy))
    }

    /// Files whose processing ended (done or failed).
    ///
    /// # Errors
    /// [`StoreError`] on database failure.
    pub async fn bench_processed(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar(
            self.sql("SELECT COUNT(*) FROM {BPDATA}.FILE_TASK WHERE NU_TYPE = ? AND NU_STATUS IN (?, ?)"),
        )
        .bind(task_type::PROCESSING)
        .bind(status::DONE)
        .bind(status::ERROR)
        .fetch_one(self.pool())
        .await
        .map_err(|e| StoreError::query("reading benchmark progress", e))
    }
}
