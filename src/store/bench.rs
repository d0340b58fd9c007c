//! Statements used only by the benchmark commands (schema reset and progress counters).

use super::{Store, StoreError, status, task_type};

impl Store {
    /// Drops the configured schemas (benchmarks use dedicated `bench_*` names).
    ///
    /// # Errors
    /// [`StoreError`] on database failure, or when the schemas are not `bench_*` ones.
    pub async fn drop_schemas_for_bench(&self) -> Result<(), StoreError> {
        if !self.bpdata_schema().starts_with("bench_") || !self.rfdata_schema().starts_with("bench_") {
            return Err(StoreError::Invalid("refusing to drop schemas not named bench_*".into()));
        }
        for template in ["DROP DATABASE IF EXISTS {RFDATA}", "DROP DATABASE IF EXISTS {BPDATA}"] {
            sqlx::query(self.sql(template))
                .execute(self.pool())
                .await
                .map_err(|e| StoreError::query("dropping benchmark schemas", e))?;
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
