//! Versioned schema migrations from `sql/NNNN_name.sql`, embedded in the binary.
//!
//! We run our own small migrator instead of `sqlx::migrate!` because the schema names are
//! configurable (tests isolate themselves with prefixed schemas; a site may rename them), so the
//! files are templates. Applied versions and the SHA-256 of their text are recorded in
//! `{BPDATA}.SCHEMA_MIGRATION`; a recorded migration whose text changed stops the start-up
//! rather than silently diverging. MariaDB DDL is not transactional, so every statement is
//! written to be re-runnable (`IF NOT EXISTS`, `INSERT IGNORE`, `CREATE OR REPLACE VIEW`): a
//! migration interrupted half-way is completed by the next run. A named lock keeps two daemons
//! from migrating at once.

use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Store, StoreError};

/// One migration: version, name, SQL template.
pub struct Migration {
    /// Monotonic version number (the `NNNN` of the file name).
    pub version: i64,
    /// Human name (the rest of the file name).
    pub name: &'static str,
    /// Template text; statements end with `;` at the end of a line.
    pub sql: &'static str,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "bpdata", sql: include_str!("../../sql/0001_bpdata.sql") },
    Migration { version: 2, name: "rfdata", sql: include_str!("../../sql/0002_rfdata.sql") },
    Migration { version: 3, name: "seed_reference", sql: include_str!("../../sql/0003_seed_reference.sql") },
];

/// What [`Store::migrate`] did.
#[derive(Debug, Default, Clone)]
pub struct MigrationReport {
    /// Versions applied by this call.
    pub applied: Vec<i64>,
    /// Versions that were already there.
    pub already: Vec<i64>,
}

/// Splits a template into statements: a statement ends at a line whose last non-blank
/// character is `;`. Comment-only lines are dropped.
pub fn split_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("--") || (trimmed.is_empty() && current.trim().is_empty()) {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if trimmed.ends_with(';') {
            let stmt = current.trim().trim_end_matches(';').trim().to_string();
            if !stmt.is_empty() {
                out.push(stmt);
            }
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
}

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

impl Store {
    /// Applies every pending migration.
    ///
    /// # Errors
    /// [`StoreError::Migration`] naming the migration and the failing statement's error, or
    /// [`StoreError::Unavailable`].
    pub async fn migrate(&self, applied_by: &str) -> Result<MigrationReport, StoreError> {
        let mut conn =
            self.pool().acquire().await.map_err(|e| StoreError::Unavailable(format!("migrate: {e}")))?;
        let lock_name = format!("appcataloga-migrate-{}", self.bpdata_schema());
        let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 60)")
            .bind(&lock_name)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| StoreError::query("taking the migration lock", e))?;
        if got != Some(1) {
            return Err(StoreError::Migration {
                version: 0,
                name: "lock".into(),
                reason: "another process held the migration lock for 60 s".into(),
            });
        }
        let result = self.migrate_locked(&mut conn, applied_by).await;
        let _ = sqlx::query("SELECT RELEASE_LOCK(?)").bind(&lock_name).execute(&mut *conn).await;
        result
    }

    async fn migrate_locked(
        &self,
        conn: &mut sqlx::MySqlConnection,
        applied_by: &str,
    ) -> Result<MigrationReport, StoreError> {
        let bootstrap = [
            "CREATE DATABASE IF NOT EXISTS {BPDATA} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
            "CREATE TABLE IF NOT EXISTS {BPDATA}.SCHEMA_MIGRATION (
                NU_VERSION BIGINT NOT NULL PRIMARY KEY,
                NA_NAME VARCHAR(100) NOT NULL,
                NA_CHECKSUM CHAR(64) NOT NULL,
                DT_APPLIED DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
                NA_APPLIED_BY VARCHAR(200) NOT NULL
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        ];
        for stmt in bootstrap {
            sqlx::query(self.sql(stmt)).execute(&mut *conn).await.map_err(|e| StoreError::Migration {
                version: 0,
                name: "bootstrap".into(),
                reason: e.to_string(),
            })?;
        }
        let rows = sqlx::query(self.sql("SELECT NU_VERSION, NA_CHECKSUM FROM {BPDATA}.SCHEMA_MIGRATION"))
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| StoreError::query("reading applied migrations", e))?;
        let applied: Vec<(i64, String)> =
            rows.iter().map(|r| (r.get::<i64, _>(0), r.get::<String, _>(1))).collect();
        let mut report = MigrationReport::default();
        for m in MIGRATIONS {
            let sum = checksum(m.sql);
            if let Some((_, recorded)) = applied.iter().find(|(v, _)| *v == m.version) {
                if *recorded != sum {
                    return Err(StoreError::Migration {
                        version: m.version,
                        name: m.name.into(),
                        reason: "the applied migration's text differs from this binary's (checksum mismatch); never edit an applied migration, add a new one".into(),
                    });
                }
                report.already.push(m.version);
                continue;
            }
            for stmt in split_statements(&self.sql(m.sql).0) {
                sqlx::query(sqlx::AssertSqlSafe(stmt.clone())).execute(&mut *conn).await.map_err(|e| {
                    StoreError::Migration {
                        version: m.version,
                        name: m.name.into(),
                        reason: format!(
                            "{e} (statement starting {:?})",
                            stmt.chars().take(80).collect::<String>()
                        ),
                    }
                })?;
            }
            sqlx::query(self.sql(
                "INSERT INTO {BPDATA}.SCHEMA_MIGRATION (NU_VERSION, NA_NAME, NA_CHECKSUM, NA_APPLIED_BY) VALUES (?, ?, ?, ?)",
            ))
            .bind(m.version)
            .bind(m.name)
            .bind(&sum)
            .bind(applied_by)
            .execute(&mut *conn)
            .await
            .map_err(|e| StoreError::query("recording a migration", e))?;
            tracing::info!(version = m.version, name = m.name, "Applied migration.");
            report.applied.push(m.version);
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_line_final_semicolons() {
        let s = split_statements("-- c\nCREATE A (x);\n\nINSERT 'a;b' VALUES\n (1);\n");
        assert_eq!(s, vec!["CREATE A (x)".to_string(), "INSERT 'a;b' VALUES\n (1)".to_string()]);
    }

    #[test]
    fn every_migration_has_statements_and_increasing_versions() {
        let mut last = 0;
        for m in MIGRATIONS {
            assert!(m.version > last);
            last = m.version;
            assert!(!split_statements(m.sql).is_empty());
        }
    }
}
