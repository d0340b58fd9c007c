//! Renderings of a parsed file for `appcataloga inspect FILE... [--json]`.
//!
//! The JSON object is a stable, flat summary (the keys other tools and tests rely on); the text
//! rendering is a short human-readable report. Both are pure functions of [`FileMetadata`].

use std::fmt::Write as _;
use std::path::Path;

use chrono::NaiveDateTime;
use serde_json::{Value, json};

use super::model::FileMetadata;

/// RFC 3339 (UTC, `Z`), with sub-second digits (3, 6 or 9) only when non-zero.
///
/// The files store no time zone; the stations log UTC (crfs-bin-format.md §3.0).
pub fn rfc3339(t: &NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string()
}

/// The `inspect --json` object for one file.
///
/// Keys: `file` (when a path is given), `file_version`, `file_string`, `file_size`, `hostname`,
/// `unit_info`, `method`, `file_number`, `gps` {`latitude`, `longitude`, `altitude` (null
/// without a valid fix), `valid_fixes`, `samples`}, `spectra` [{`thread_id`, `block_type`,
/// `kind`, `description`, `start_mhz`, `stop_mhz`, `unit`, `points`, `rbw_hz`, `processing`,
/// `antenna`, `threshold`, `duration_s`, `trace_count`, `first_sweep`, `last_sweep`}], `damage`
/// {`bad_blocks`, `truncated_bytes`, `trailing_bytes`, `resyncs`, ...}, `block_counts`.
pub fn render_json(meta: &FileMetadata, path: Option<&Path>) -> Value {
    let median = meta.gps.median;
    let spectra: Vec<Value> = meta
        .spectra
        .iter()
        .map(|s| {
            json!({
                "thread_id": s.thread_id,
                "block_type": s.block_type,
                "kind": s.kind,
                "description": s.description,
                "start_mhz": s.start_mhz,
                "stop_mhz": s.stop_mhz,
                "unit": s.unit,
                "points": s.points,
                "rbw_hz": s.rbw_hz,
                "processing": s.processing,
                "antenna": s.antenna,
                "threshold": s.threshold,
                "duration_s": s.duration_s,
                "trace_count": s.trace_count,
                "first_sweep": rfc3339(&s.first_sweep),
                "last_sweep": rfc3339(&s.last_sweep),
            })
        })
        .collect();
    let mut v = json!({
        "file_version": meta.file_version,
        "file_string": meta.file_string,
        "file_size": meta.file_size,
        "hostname": meta.equipment.hostname,
        "unit_info": meta.equipment.unit_info,
        "method": meta.procedure.method,
        "file_number": meta.procedure.file_number,
        "gps": {
            "latitude": median.map(|p| p.latitude),
            "longitude": median.map(|p| p.longitude),
            "altitude": median.map(|p| p.altitude),
            "valid_fixes": meta.gps.valid_fixes,
            "samples": meta.gps.samples.len(),
        },
        "spectra": spectra,
        "damage": meta.damage,
        "block_counts": meta.block_counts,
    });
    if let (Some(p), Some(obj)) = (path, v.as_object_mut()) {
        obj.insert("file".to_owned(), Value::String(p.display().to_string()));
    }
    v
}

/// A short human-readable report for `inspect` without `--json`.
pub fn render_text(meta: &FileMetadata, path: Option<&Path>) -> String {
    let mut o = String::new();
    let or_dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".to_owned());
    if let Some(p) = path {
        let _ = writeln!(o, "{}", p.display());
    }
    let _ = writeln!(
        o,
        "  format    {} (version {}), {} bytes",
        meta.file_string, meta.file_version, meta.file_size
    );
    let _ = writeln!(
        o,
        "  station   {} ({}), method {}",
        or_dash(&meta.equipment.hostname),
        or_dash(&meta.equipment.unit_info),
        or_dash(&meta.procedure.method)
    );
    match meta.gps.median {
        Some(p) => {
            let _ = writeln!(
                o,
                "  gps       {:.6}, {:.6}, {:.1} m (median of {} valid fixes)",
                p.latitude, p.longitude, p.altitude, meta.gps.valid_fixes
            );
        }
        None => {
            let _ = writeln!(o, "  gps       no valid fix ({} samples)", meta.gps.samples.len());
        }
    }
    let _ = writeln!(o, "  spectra   {}", meta.spectra.len());
    for s in &meta.spectra {
        let _ = writeln!(
            o,
            "    thread {:>4} type {} {:.6}-{:.6} MHz {:>6} pts {} {} × {} sweeps {} .. {}  {}",
            s.thread_id,
            s.block_type,
            s.start_mhz,
            s.stop_mhz,
            s.points,
            s.unit,
            s.processing,
            s.trace_count,
            rfc3339(&s.first_sweep),
            rfc3339(&s.last_sweep),
            s.description.as_deref().unwrap_or("-"),
        );
    }
    let d = &meta.damage;
    if meta.is_clean() {
        let _ = writeln!(o, "  damage    none");
    } else {
        let skipped: u64 = d.skipped_blocks.values().sum();
        let _ = writeln!(
            o,
            "  damage    {} bad blocks, {} resyncs, {} truncated bytes, {} trailing bytes, {} skipped blocks",
            d.bad_blocks, d.resyncs, d.truncated_bytes, d.trailing_bytes, skipped
        );
    }
    o
}
