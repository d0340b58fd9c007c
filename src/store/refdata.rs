//! Stores reference data (states, municipalities, seat coordinates) idempotently.
//!
//! The current rows are read first and only new or changed rows are written, so a second load
//! of the same files writes nothing and reports every row as unchanged.

use std::collections::HashMap;

use sqlx::Row;

use super::{Store, StoreError};
use crate::refdata::{County, ReferenceData, State};

/// Rows written by [`Store::load_reference_data`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RefDataReport {
    /// Rows inserted.
    pub inserted: u64,
    /// Rows whose values changed.
    pub updated: u64,
    /// Rows already identical.
    pub unchanged: u64,
}

const BATCH: usize = 500;

/// Coordinates are stored as DECIMAL(9,6): compare at that precision.
fn micro(v: Option<f64>) -> Option<i64> {
    v.map(|x| (x * 1e6).round() as i64)
}

impl Store {
    /// Upserts every state and municipality in one transaction. `progress` is called with the
    /// number of municipalities handled so far.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails (nothing is then committed).
    pub async fn load_reference_data(
        &self,
        data: &ReferenceData,
        mut progress: impl FnMut(usize),
    ) -> Result<RefDataReport, StoreError> {
        let q = |e| StoreError::query("loading reference data", e);
        let mut tx = self.pool().begin().await.map_err(q)?;
        let mut report = RefDataReport::default();

        let existing_states: HashMap<i32, (String, String)> =
            sqlx::query(self.sql("SELECT ID_STATE, NA_STATE, LC_STATE FROM {RFDATA}.DIM_SITE_STATE"))
                .fetch_all(&mut *tx)
                .await
                .map_err(q)?
                .iter()
                .map(|r| {
                    (
                        r.get::<i32, _>(0),
                        (
                            r.get::<Option<String>, _>(1).unwrap_or_default(),
                            r.get::<Option<String>, _>(2).unwrap_or_default(),
                        ),
                    )
                })
                .collect();
        let mut states: Vec<&State> = Vec::new();
        for s in &data.states {
            match existing_states.get(&s.id) {
                None => report.inserted += 1,
                Some((name, code)) if *name == s.name && *code == s.code => report.unchanged += 1,
                Some(_) => report.updated += 1,
            }
            if existing_states.get(&s.id) != Some(&(s.name.clone(), s.code.clone())) {
                states.push(s);
            }
        }
        for chunk in states.chunks(BATCH) {
            let values = vec!["(?, ?, ?)"; chunk.len()].join(", ");
            let sql = self.sql(&format!(
                "INSERT INTO {{RFDATA}}.DIM_SITE_STATE (ID_STATE, NA_STATE, LC_STATE) VALUES {values}
                 ON DUPLICATE KEY UPDATE NA_STATE = VALUES(NA_STATE), LC_STATE = VALUES(LC_STATE)"
            ));
            let mut query = sqlx::query(sql);
            for s in chunk {
                query = query.bind(s.id).bind(&s.name).bind(&s.code);
            }
            query.execute(&mut *tx).await.map_err(q)?;
        }

        type CountyRow = (i32, String, Option<i64>, Option<i64>);
        let existing: HashMap<i32, CountyRow> = sqlx::query(self.sql(
            "SELECT ID_COUNTY, FK_STATE, NA_COUNTY, CAST(VL_SEAT_LATITUDE * 1000000 AS SIGNED), CAST(VL_SEAT_LONGITUDE * 1000000 AS SIGNED)
             FROM {RFDATA}.DIM_SITE_COUNTY",
        ))
        .fetch_all(&mut *tx)
        .await
        .map_err(q)?
        .iter()
        .map(|r| {
            (
                r.get::<i32, _>(0),
                (r.get::<i32, _>(1), r.get::<Option<String>, _>(2).unwrap_or_default(), r.get(3), r.get(4)),
            )
        })
        .collect();
        let mut changed: Vec<&County> = Vec::new();
        for c in &data.counties {
            let want = (c.state, c.name.clone(), micro(c.latitude), micro(c.longitude));
            match existing.get(&c.id) {
                None => report.inserted += 1,
                Some(have) if *have == want => {
                    report.unchanged += 1;
                    continue;
                }
                Some(_) => report.updated += 1,
            }
            changed.push(c);
        }
        let mut done = data.counties.len() - changed.len();
        for chunk in changed.chunks(BATCH) {
            let values = vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(", ");
            let sql = self.sql(&format!(
                "INSERT INTO {{RFDATA}}.DIM_SITE_COUNTY (ID_COUNTY, FK_STATE, NA_COUNTY, VL_SEAT_LATITUDE, VL_SEAT_LONGITUDE)
                 VALUES {values}
                 ON DUPLICATE KEY UPDATE FK_STATE = VALUES(FK_STATE), NA_COUNTY = VALUES(NA_COUNTY),
                     VL_SEAT_LATITUDE = VALUES(VL_SEAT_LATITUDE), VL_SEAT_LONGITUDE = VALUES(VL_SEAT_LONGITUDE)"
            ));
            let mut query = sqlx::query(sql);
            for c in chunk {
                query = query
                    .bind(c.id)
                    .bind(c.state)
                    .bind(&c.name)
                    .bind(c.latitude.map(|v| format!("{v:.6}")))
                    .bind(c.longitude.map(|v| format!("{v:.6}")));
            }
            query.execute(&mut *tx).await.map_err(q)?;
            done += chunk.len();
            progress(done);
        }
        progress(data.counties.len());
        tx.commit().await.map_err(q)?;
        Ok(report)
    }
}
