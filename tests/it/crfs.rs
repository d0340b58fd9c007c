//! Tests of the CRFS `.bin` metadata parser: conformance with the shared fixtures (synthetic
//! truth files and the legacy rfpye output, with its documented quirks), generator round trips,
//! and property tests (no panic on arbitrary or truncated input).
//!
//! The fixtures live in `shared/fixtures/crfs/` (`APPCATALOGA_SHARED_DIR`, else `../shared`
//! next to the crate); when they are absent the fixture tests print why and pass.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use appcataloga::crfs::generator::{self, FileSpec, Format, StreamSpec};
use appcataloga::crfs::inspect;
use appcataloga::crfs::{self, CrfsError, FileMetadata, ParseOptions, SpectrumStream, StreamKind};
use chrono::{NaiveDateTime, Timelike};
use proptest::prelude::*;
use serde_json::Value;

const DECODE: ParseOptions = ParseOptions { decode_levels: true };

fn fixtures_dir() -> Option<PathBuf> {
    let shared = std::env::var_os("APPCATALOGA_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared")));
    let dir = shared.join("fixtures/crfs");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipped: CRFS fixtures not found at {}", dir.display());
        None
    }
}

/// Every `.bin` under the fixtures directory (real files and `synthetic/`).
fn fixture_bins(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in [dir.to_path_buf(), dir.join("synthetic")] {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "bin") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn sibling(bin: &Path, suffix: &str) -> PathBuf {
    let stem = bin.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    bin.with_file_name(format!("{stem}{suffix}"))
}

fn read_json(p: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(p).ok()?;
    Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
}

fn parse_file(p: &Path, opts: ParseOptions) -> (Vec<u8>, FileMetadata) {
    let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let meta = crfs::parse(&bytes, opts).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (bytes, meta)
}

fn dt(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .unwrap_or_else(|e| panic!("bad datetime {s:?}: {e}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// The truth files write the µ unit in ASCII; the catalogue uses U+03BC.
fn catalogue_unit(truth: &str) -> String {
    truth.replace("dBuV/m", "dB\u{3bc}V/m")
}

fn find_stream(meta: &FileMetadata, ty: i64, thread: i64) -> &SpectrumStream {
    meta.spectra
        .iter()
        .find(|s| i64::from(s.block_type) == ty && i64::from(s.thread_id) == thread)
        .unwrap_or_else(|| panic!("no stream type {ty} thread {thread} in {:?}", meta.spectra))
}

// ---------------------------------------------------------------------------------------------
// Conformance: synthetic truth files.

#[test]
fn synthetic_files_match_truth_exactly() {
    let Some(dir) = fixtures_dir() else { return };
    let mut checked = 0;
    for bin in fixture_bins(&dir) {
        let Some(truth) = read_json(&sibling(&bin, ".truth.json")) else {
            continue;
        };
        let name = bin.display().to_string();
        let (bytes, meta) = parse_file(&bin, DECODE);
        checked += 1;
        assert_eq!(meta.file_size, bytes.len() as u64);
        assert_eq!(Some(meta.file_size), truth["size"].as_u64(), "{name}: size");
        assert_eq!(Some(i64::from(meta.file_version)), truth["file_version"].as_i64(), "{name}");
        assert_eq!(Some(meta.file_string.as_str()), truth["string"].as_str(), "{name}");
        assert_eq!(meta.equipment.hostname.as_deref(), truth["hostname_raw"].as_str(), "{name}");
        assert_eq!(meta.equipment.unit_info.as_deref(), truth["unit_info"].as_str(), "{name}");
        assert_eq!(meta.procedure.method.as_deref(), truth["method"].as_str(), "{name}");
        assert_eq!(meta.procedure.file_number.map(u64::from), truth["file_number"].as_u64(), "{name}");

        // GPS: the truth lists the fixes kept; fix 0 blocks are counted separately.
        let kept: Vec<_> = meta.gps.samples.iter().filter(|g| g.fix != 0).collect();
        let tgps = truth["gps"].as_array().cloned().unwrap_or_default();
        assert_eq!(kept.len(), tgps.len(), "{name}: valid GPS fixes");
        assert_eq!(meta.gps.valid_fixes, tgps.len() as u64, "{name}");
        for (g, t) in kept.iter().zip(&tgps) {
            assert!(close(g.latitude, t["lat"].as_f64().unwrap_or(f64::NAN)), "{name}: lat");
            assert!(close(g.longitude, t["lon"].as_f64().unwrap_or(f64::NAN)), "{name}: lon");
            assert!(close(g.altitude_m, t["alt"].as_f64().unwrap_or(f64::NAN)), "{name}: alt");
            assert_eq!(Some(u64::from(g.fix)), t["fix"].as_u64());
            assert_eq!(Some(u64::from(g.satellites)), t["nsat"].as_u64());
            assert_eq!(g.gps_time, t["datetime"].as_str().map(dt), "{name}: GPS time");
        }
        let dropped = meta.gps.samples.iter().filter(|g| g.fix == 0).count() as u64;
        assert_eq!(dropped, truth["gps_dropped_no_fix"].as_u64().unwrap_or(0), "{name}");
        if tgps.is_empty() {
            assert_eq!(meta.gps.median, None, "{name}: no fix gives no position, not -1");
        }

        let tspectra = truth["spectra"].as_array().cloned().unwrap_or_default();
        assert_eq!(meta.spectra.len(), tspectra.len(), "{name}: stream count");
        for t in &tspectra {
            let ty = t["type"].as_i64().unwrap_or(-1);
            let s = find_stream(&meta, ty, t["thread_id"].as_i64().unwrap_or(-1));
            let what = format!("{name} type {ty} thread {}", s.thread_id);
            if let Some(d) = t["description"].as_str() {
                assert_eq!(s.description.as_deref(), Some(d), "{what}: description");
            }
            assert_eq!(s.start_mhz, t["start_mhz"].as_f64().unwrap_or(f64::NAN), "{what}: exact start");
            assert_eq!(s.stop_mhz, t["stop_mhz"].as_f64().unwrap_or(f64::NAN), "{what}: exact stop");
            if let Some(rbw) = t["rbw_hz"].as_i64() {
                assert_eq!(s.rbw_hz.map(i64::from), Some(rbw), "{what}: rbw");
            }
            assert_eq!(Some(u64::from(s.points)), t["ndata"].as_u64(), "{what}: points");
            assert_eq!(Some(s.trace_count), t["sweeps"].as_u64(), "{what}: sweeps");
            assert_eq!(Some(s.unit.clone()), t["unit"].as_str().map(catalogue_unit), "{what}");
            match t["processing"].as_str() {
                Some(p) => assert_eq!(s.processing, p, "{what}: processing"),
                None => {
                    assert_eq!(s.kind, StreamKind::Occupancy, "{what}");
                    assert_eq!(s.processing, "occupancy", "{what}");
                }
            }
            assert_eq!(Some(u64::from(s.antenna)), t["antuid"].as_u64(), "{what}: antenna");
            if let Some(th) = t["thresh"].as_i64() {
                assert_eq!(s.threshold.map(i64::from), Some(th), "{what}: threshold");
            }
            if let Some(d) = t["duration_s"].as_u64() {
                assert_eq!(s.duration_s.map(u64::from), Some(d), "{what}: duration");
            }
            if let Some(f) = t["first_time"].as_str() {
                assert_eq!(s.first_sweep, dt(f), "{what}: first sweep (nanoseconds kept)");
            }
            if let Some(l) = t["last_time"].as_str() {
                assert_eq!(s.last_sweep, dt(l), "{what}: last sweep");
            }
            let levels = s.levels.as_deref().unwrap_or_default();
            assert_eq!(levels.len() as u64, s.trace_count * u64::from(s.points), "{what}");
            if let Some(below) = t["below_threshold_value"].as_f64() {
                let below = below as f32;
                assert!(levels.contains(&below), "{what}: runs decode to thresh - 1");
                assert!(levels.iter().all(|&l| l >= below), "{what}: nothing below thresh - 1");
            }
        }
        if let Some(d) = truth.get("damage") {
            assert_eq!(Some(meta.damage.checksum_failures), d["bad_checksum_blocks"].as_u64());
            assert_eq!(Some(meta.damage.bad_blocks), d["bad_checksum_blocks"].as_u64());
            assert_eq!(Some(meta.damage.truncated_bytes), d["truncated_tail_bytes"].as_u64());
            assert_eq!(meta.damage.trailing_bytes, 0);
        } else {
            assert!(meta.is_clean(), "{name}: {:?}", meta.damage);
        }
        assert_eq!(meta.damage.level_decode_errors, 0, "{name}");
    }
    assert!(checked >= 4, "expected the 4 synthetic truth files, found {checked}");
}

#[test]
fn damaged_file_keeps_the_good_block_after_the_bad_one() {
    let Some(dir) = fixtures_dir() else { return };
    let (_, meta) = parse_file(&dir.join("synthetic/synthetic_v5_damaged.bin"), ParseOptions::default());
    assert_eq!(meta.damage.bad_blocks, 1, "one bad-checksum block");
    assert_eq!(meta.damage.truncated_bytes, 60, "truncated tail reported");
    assert_eq!(meta.damage.resyncs, 0, "framing was intact: no scan needed");
    let t10 = find_stream(&meta, 67, 10);
    assert_eq!(t10.trace_count, 4, "3 sweeps + the good block after the bad one");
    assert_eq!(t10.last_sweep, dt("2021-02-11T11:19:23"), "the good block after the bad one");
}

#[test]
fn file_without_spectra_gives_zero_streams_not_an_error() {
    let Some(dir) = fixtures_dir() else { return };
    let (_, meta) = parse_file(&dir.join("rfeye002218_NenhumBlocoDeEspectro.bin"), ParseOptions::default());
    assert!(meta.spectra.is_empty());
    assert_eq!(meta.gps.valid_fixes, 3969);
    assert!(meta.gps.median.is_some());
    assert_eq!(meta.texts.len(), 78);
    assert!(meta.texts.iter().any(|t| t.identifier.as_deref() == Some("MASK")));
    let json = inspect::render_json(&meta, None);
    assert_eq!(json["spectra"].as_array().map(Vec::len), Some(0));
}

// ---------------------------------------------------------------------------------------------
// Conformance: the legacy parser (rfpye 0.3.7) and the independent block walk.

/// rfpye's quirk 8.1: it prints `int(nano/1000)` after the dot without zero padding, so the
/// fraction it reports is `0.<microseconds as written>`.
fn rfpye_quirky_fraction(nanos: u32) -> f64 {
    format!("0.{}", nanos / 1000).parse().unwrap_or(f64::NAN)
}

fn fraction_of(t: &NaiveDateTime) -> f64 {
    f64::from(t.nanosecond()) / 1e9
}

/// Checks one of our sweep times against rfpye's string for it.
fn check_rfpye_time(ours: &NaiveDateTime, rfpye: &str, what: &str) {
    let theirs = dt(rfpye);
    assert_eq!(ours.with_nanosecond(0), theirs.with_nanosecond(0), "{what}: whole seconds agree with rfpye");
    let quirky = rfpye_quirky_fraction(ours.nanosecond());
    assert!(
        (fraction_of(&theirs) - quirky).abs() < 1e-6,
        "{what}: rfpye's fraction is explained by quirk 8.1 ({rfpye} vs ours {ours})"
    );
    let micros = ours.nanosecond() / 1000;
    if micros != 0 && micros < 100_000 {
        assert!(
            (fraction_of(ours) - fraction_of(&theirs)).abs() > 1e-6,
            "quirk 8.1: sub-second part: we must give the true {ours}, not rfpye's {rfpye}"
        );
    }
}

#[test]
fn files_match_rfpye_except_documented_quirks() {
    let Some(dir) = fixtures_dir() else { return };
    let mut checked = 0;
    let mut quirk81_seen = 0;
    for bin in fixture_bins(&dir) {
        let Some(oracle) = read_json(&sibling(&bin, ".rfpye.json")) else {
            continue;
        };
        let name = bin.display().to_string();
        let (_, meta) = parse_file(&bin, DECODE);
        checked += 1;
        assert!(oracle["parse_error"].is_null(), "{name}: rfpye parsed it");
        let m = &oracle["meta"];
        assert_eq!(Some(i64::from(meta.file_version)), m["file_version"].as_i64(), "{name}");
        assert_eq!(Some(meta.file_string.as_str()), m["string"].as_str(), "{name}");
        // quirk 8.4: rfpye rewrites the hostname as hostname[:2].upper() + hostname[2:].
        let host = meta.equipment.hostname.clone().unwrap_or_default();
        let quirky_host = format!(
            "{}{}",
            host.get(..2).unwrap_or_default().to_uppercase(),
            host.get(2..).unwrap_or_default()
        );
        assert_eq!(Some(quirky_host.as_str()), m["hostname"].as_str(), "{name}: quirk 8.4 hostname case");
        assert_eq!(meta.procedure.method.as_deref(), m["method"].as_str(), "{name}");
        assert_eq!(meta.equipment.unit_info.as_deref(), m["unit_info"].as_str(), "{name}");
        assert_eq!(meta.procedure.file_number.map(u64::from), m["file_number"].as_u64(), "{name}");
        // rfpye's meta.identifier is the last 41/42 identifier (quirk 8.3).
        if let Some(id) = m["identifier"].as_str() {
            assert_eq!(meta.texts.last().and_then(|t| t.identifier.as_deref()), Some(id), "{name}");
        }

        let g = &oracle["gps"];
        assert_eq!(Some(meta.gps.valid_fixes), g["n_fixes_kept"].as_u64(), "{name}: valid fixes");
        match meta.gps.median {
            None => {
                // quirk 8.5: rfpye reports -1 medians without GPS; we report no position.
                assert_eq!(g["latitude_median"].as_f64(), Some(-1.0), "{name}: quirk 8.5");
            }
            Some(p) => {
                assert!(close(p.latitude, g["latitude_median"].as_f64().unwrap_or(f64::NAN)), "{name}");
                assert!(close(p.longitude, g["longitude_median"].as_f64().unwrap_or(f64::NAN)), "{name}");
                assert!(close(p.altitude, g["altitude_median"].as_f64().unwrap_or(f64::NAN)), "{name}");
            }
        }

        let rs = oracle["spectrum"].as_array().cloned().unwrap_or_default();
        assert_eq!(meta.spectra.len(), rs.len(), "{name}: stream count");
        for r in &rs {
            let ty = r["type"].as_i64().unwrap_or(-1);
            let s = find_stream(&meta, ty, r["thread_id"].as_i64().unwrap_or(-1));
            let what = format!("{name} type {ty} thread {}", s.thread_id);
            match (ty, r["description"].as_str()) {
                // quirk 8.3: rfpye hard-codes "Peak" for v4 spectra; ours comes from type 24.
                (63 | 64, Some(d)) => {
                    assert_eq!(d, "Peak", "{what}");
                    let from24 = meta.thread_descriptions.get(&s.thread_id);
                    assert_eq!(s.description.as_ref(), from24, "{what}: quirk 8.3 description from type 24");
                }
                (_, Some(d)) => {
                    assert_eq!(s.description.as_deref(), Some(d), "{what}: description")
                }
                (_, None) => {}
            }
            // quirk 8.2: rfpye drops the millihertz part; we keep the exact frequency.
            assert_eq!(Some(s.start_mhz.floor() as i64), r["start_mega"].as_i64(), "{what}: quirk 8.2 start");
            assert_eq!(Some(s.stop_mhz.floor() as i64), r["stop_mega"].as_i64(), "{what}: quirk 8.2 stop");
            assert_eq!(Some(s.unit.as_str()), r["dtype"].as_str(), "{what}: unit (U+03BC)");
            assert_eq!(Some(u64::from(s.points)), r["ndata"].as_u64(), "{what}: points");
            if let Some(bw) = r["bw"].as_i64() {
                assert_eq!(s.rbw_hz.map(i64::from), Some(bw), "{what}: rbw");
            }
            match (s.kind, r["processing"].as_str()) {
                // rfpye has no processing for 69 and says "single measurement" for 65.
                (StreamKind::Occupancy, _) => assert_eq!(s.processing, "occupancy", "{what}"),
                (_, p) => assert_eq!(Some(s.processing.as_str()), p, "{what}: processing"),
            }
            assert_eq!(Some(u64::from(s.antenna)), r["antuid"].as_u64(), "{what}: antenna");
            if let Some(th) = r["thresh"].as_i64() {
                assert_eq!(s.threshold.map(i64::from), Some(th), "{what}: threshold");
            }
            assert_eq!(Some(s.trace_count), r["n_blocks"].as_u64(), "{what}: trace count");
            if let (Some(a), Some(b)) = (r["start_dateidx"].as_str(), r["stop_dateidx"].as_str()) {
                check_rfpye_time(&s.first_sweep, a, &format!("{what} first sweep"));
                check_rfpye_time(&s.last_sweep, b, &format!("{what} last sweep"));
                let micros = s.first_sweep.nanosecond() / 1000;
                if micros != 0 && micros < 100_000 {
                    quirk81_seen += 1;
                }
            }
            check_levels(s, &r["levels"], &what);
        }

        // Block counts and damage against the independent walk.
        let w = &oracle["independent_block_walk"];
        let by_type: BTreeMap<String, u64> =
            meta.block_counts.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let theirs: BTreeMap<String, u64> =
            serde_json::from_value(w["blocks_by_type"].clone()).unwrap_or_default();
        assert_eq!(by_type, theirs, "{name}: blocks by type");
        let theirs: BTreeMap<String, u64> =
            serde_json::from_value(w["blocks_by_type_and_thread"].clone()).unwrap_or_default();
        assert_eq!(meta.block_counts_by_thread, theirs, "{name}: blocks by type/thread");
        assert_eq!(
            Some(meta.damage.truncated_bytes + meta.damage.trailing_bytes),
            w["trailing_bytes"].as_u64(),
            "{name}: trailing bytes"
        );
        let problems = w["problems"].as_array().map(Vec::len).unwrap_or(0) as u64;
        let ours = meta.damage.bad_blocks + u64::from(meta.damage.truncated_bytes > 0);
        assert_eq!(ours, problems, "{name}: damaged blocks");
        assert_eq!(Some(meta.file_size), w["file_size"].as_u64(), "{name}");
    }
    assert!(checked >= 7, "expected 3 real + 4 synthetic rfpye files, found {checked}");
    assert!(quirk81_seen > 0, "quirk 8.1 should be exercised by the fixtures");
}

/// Compares decoded levels with rfpye's summary (shape, min, max, mean, first 8 values).
fn check_levels(s: &SpectrumStream, summary: &Value, what: &str) {
    if summary.is_null() {
        return;
    }
    let levels = s.levels.as_deref().unwrap_or_default();
    let shape: Vec<u64> = serde_json::from_value(summary["shape"].clone()).unwrap_or_default();
    assert_eq!(shape, vec![s.trace_count, u64::from(s.points)], "{what}: level shape");
    let min = levels.iter().copied().fold(f32::INFINITY, f32::min);
    let max = levels.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mean = levels.iter().map(|&l| f64::from(l)).sum::<f64>() / levels.len().max(1) as f64;
    assert_eq!(Some(f64::from(min)), summary["min"].as_f64(), "{what}: level min");
    assert_eq!(Some(f64::from(max)), summary["max"].as_f64(), "{what}: level max");
    assert!((mean - summary["mean"].as_f64().unwrap_or(f64::NAN)).abs() < 1e-3, "{what}: level mean {mean}");
    let head: Vec<f64> = serde_json::from_value(summary["first_row_head"].clone()).unwrap_or_default();
    let ours: Vec<f64> = levels.iter().take(head.len()).map(|&l| f64::from(l)).collect();
    assert_eq!(ours, head, "{what}: first levels");
}

#[test]
fn inspect_json_has_the_documented_keys() {
    let Some(dir) = fixtures_dir() else { return };
    let path = dir.join("synthetic/synthetic_v5_full.bin");
    let (_, meta) = parse_file(&path, ParseOptions::default());
    let v = inspect::render_json(&meta, Some(&path));
    crate::support::assert_inspect_keys(&v);
    let first = &v["spectra"][0];
    assert_eq!(first["first_sweep"], "2021-02-11T11:19:12.007250Z");
    assert_eq!(v["spectra"][2]["start_mhz"], 88.125);
    let text = inspect::render_text(&meta, Some(&path));
    assert!(text.contains("rfeye002292") && text.contains("88.125000"), "{text}");
    // The whole model serialises too.
    assert!(serde_json::to_value(&meta).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Generator round trips.

fn expected_processing(s: &StreamSpec) -> String {
    crfs::processing_name(s.kind, Some(s.processing))
}

fn check_round_trip(spec: &FileSpec) {
    let bytes = generator::generate(spec).expect("generate");
    let mut sink = Vec::new();
    let n = generator::write(spec, &mut sink).expect("write");
    assert_eq!(n, bytes.len() as u64);
    assert_eq!(sink, bytes, "write and generate agree");
    for opts in [ParseOptions::default(), DECODE] {
        let meta = crfs::parse(&bytes, opts).expect("parse generated file");
        assert!(meta.is_clean(), "{:?}", meta.damage);
        assert_eq!(meta.file_version, spec.format.version());
        assert_eq!(meta.file_string, spec.format.file_string());
        assert_eq!(meta.equipment.hostname.as_deref(), Some(spec.hostname.as_str()));
        assert_eq!(meta.equipment.unit_info.as_deref(), Some(spec.unit_info.as_str()));
        assert_eq!(meta.procedure.method.as_deref(), Some(spec.method.as_str()));
        assert_eq!(meta.procedure.file_number, Some(spec.file_number));
        assert_eq!(meta.gps.samples.len(), spec.gps.len());
        let valid: Vec<_> = spec.gps.iter().filter(|g| g.fix != 0).collect();
        assert_eq!(meta.gps.valid_fixes, valid.len() as u64);
        assert_eq!(meta.gps.median.is_some(), !valid.is_empty());
        for (g, s) in meta.gps.samples.iter().zip(&spec.gps) {
            assert_eq!(g.latitude, f64::from(s.latitude_e6) / 1e6);
            assert_eq!(g.altitude_m, f64::from(s.altitude_mm) / 1e3);
            assert_eq!(g.wall_time, Some(s.time));
        }
        assert_eq!(meta.spectra.len(), spec.streams.len(), "one stream per spec stream");
        for (i, want) in spec.streams.iter().enumerate() {
            let got = find_stream(&meta, i64::from(want.block_type(spec.format)), i64::from(want.thread_id));
            assert_eq!(got.block_type, want.block_type(spec.format));
            assert_eq!(got.thread_id, want.thread_id);
            assert_eq!(got.description.as_deref(), Some(want.description.as_str()));
            assert_eq!(got.start_mhz, want.start_mhz());
            assert_eq!(got.stop_mhz, want.stop_mhz());
            assert_eq!(got.unit, crfs::unit_name(Some(u16::from(want.unit))));
            assert_eq!(got.points, want.points);
            let rbw = (spec.format == Format::V5).then_some(want.rbw_hz);
            assert_eq!(got.rbw_hz, rbw);
            assert_eq!(got.processing, expected_processing(want));
            assert_eq!(got.antenna, want.antenna);
            assert_eq!(got.kind, want.kind);
            if want.kind != StreamKind::Spectrum {
                assert_eq!(got.threshold, Some(i32::from(want.threshold)));
            }
            if want.kind == StreamKind::Occupancy {
                assert_eq!(got.duration_s, Some(u32::from(want.duration_s)));
            }
            assert_eq!(got.trace_count, u64::from(want.sweeps));
            assert_eq!(got.first_sweep, want.start);
            assert_eq!(got.last_sweep, want.sweep_time(want.sweeps - 1));
            if opts.decode_levels {
                let expected: Vec<f32> =
                    (0..want.sweeps).flat_map(|k| generator::expected_levels(spec, i, k)).collect();
                assert_eq!(got.levels.as_deref(), Some(expected.as_slice()), "levels of stream {i}");
            } else {
                assert_eq!(got.levels, None);
            }
        }
    }
}

#[test]
fn generator_round_trips_v5() {
    let spec = generator::small_v5(1);
    check_round_trip(&spec);
}

#[test]
fn generator_round_trips_v4() {
    let mut spec = generator::small_v5(2);
    spec.format = Format::V4;
    check_round_trip(&spec);
    let bytes = generator::generate(&spec).expect("generate");
    let meta = crfs::parse_metadata(&bytes).expect("parse");
    for ty in [21, 41, 24, 40, 63, 64, 65] {
        assert!(meta.block_counts.contains_key(&ty), "v4 file has type {ty}");
    }
}

#[test]
fn millihertz_frequencies_are_exact_not_rounded_to_mhz() {
    // A real v4 file has 1399 MHz + 999999999 mHz: that is 1400 MHz, not 1399 (quirk 8.2).
    for format in [Format::V5, Format::V4] {
        let mut spec = generator::small_v5(4);
        spec.format = format;
        spec.streams.truncate(1);
        spec.streams[0] = StreamSpec::new(10, "L band", 1_399.999_999_999, 2_399.999_999_999, 64);
        assert_eq!((spec.streams[0].start_mega, spec.streams[0].start_milli), (1399, 999_999_999));
        check_round_trip(&spec);
        let meta = crfs::parse_metadata(&generator::generate(&spec).expect("generate")).expect("parse");
        let s = &meta.spectra[0];
        assert!((s.start_mhz - 1400.0).abs() < 1e-8, "{}", s.start_mhz);
        assert!((s.stop_mhz - 2400.0).abs() < 1e-8, "{}", s.stop_mhz);
        let json = inspect::render_json(&meta, None);
        assert!(json["spectra"][0]["start_mhz"].as_f64().is_some_and(|f| f > 1399.99));
    }
}

#[test]
fn generator_round_trips_with_escapes_and_long_runs() {
    // A compressed stream whose levels exercise 254/255 literals and runs over 255 points.
    let mut spec = generator::small_v5(3);
    spec.streams.retain(|s| s.kind == StreamKind::Compressed);
    spec.streams[0].points = 2000;
    spec.streams[0].sweeps = 20;
    spec.streams[0].offset = 0;
    check_round_trip(&spec);
    let any_escape = (0..20).any(|k| generator::sweep_bytes(&spec, 0, k).iter().any(|&b| b >= 254));
    assert!(any_escape, "seed 3 should produce some 254/255 level bytes");
}

#[test]
fn realistic_v5_is_about_the_target_size_and_parses() {
    let spec = generator::realistic_v5(3_000_000, 42);
    let bytes = generator::generate(&spec).expect("generate");
    assert!(bytes.len() > 2_000_000 && bytes.len() < 4_000_000, "{}", bytes.len());
    assert!(spec.streams.iter().all(|s| (4096..=14848).contains(&s.points)));
    check_round_trip(&generator::realistic_v5(400_000, 7));
    let meta = crfs::parse_metadata(&bytes).expect("parse");
    assert!(meta.is_clean());
    assert!(meta.spectra.len() >= 4);
    assert_eq!(generator::realistic_v5(3_000_000, 42), spec, "deterministic");
}

#[test]
fn errors_say_what_failed() {
    assert!(matches!(crfs::parse_metadata(b"short"), Err(CrfsError::TooShort { len: 5 })));
    let mut not = vec![0u8; 64];
    not[4..8].copy_from_slice(b"JUNK");
    let e = crfs::parse_metadata(&not).expect_err("not CRFS");
    assert!(e.to_string().contains("not a CRFS file"), "{e}");
    let mut bytes = generator::generate(&generator::small_v5(1)).expect("generate");
    bytes.truncate(36);
    bytes.extend_from_slice(&[0xaa; 100]);
    let e = crfs::parse_metadata(&bytes).expect_err("no block");
    assert!(matches!(e, CrfsError::NoReadableBlock { .. }), "{e}");
    assert!(e.to_string().contains("no readable block"), "{e}");
}

#[test]
fn resync_after_a_broken_block_keeps_the_rest() {
    let bytes = generator::generate(&generator::small_v5(1)).expect("generate");
    let boundaries = block_boundaries(&bytes);
    // Break the end marker of the 5th block.
    let mut broken = bytes.clone();
    let end = boundaries[5];
    broken[end - 1] = 0;
    let whole = crfs::parse_metadata(&bytes).expect("parse");
    let meta = crfs::parse_metadata(&broken).expect("parse damaged");
    assert_eq!(meta.damage.bad_blocks, 1);
    assert_eq!(meta.damage.resyncs, 1);
    let total = |m: &FileMetadata| m.block_counts.values().sum::<u64>();
    assert_eq!(total(&meta) + 1, total(&whole), "only the broken block is lost");
}

// ---------------------------------------------------------------------------------------------
// Property tests.

/// Block start offsets (and the end) by walking declared lengths: an independent mini walker.
fn block_boundaries(bytes: &[u8]) -> Vec<usize> {
    let mut out = vec![36];
    let mut pos = 36;
    while pos + 12 <= bytes.len() {
        let len =
            u32::from_le_bytes([bytes[pos + 4], bytes[pos + 5], bytes[pos + 6], bytes[pos + 7]]) as usize;
        pos += 20 + len;
        if pos > bytes.len() {
            break;
        }
        out.push(pos);
    }
    out
}

fn crfs_header() -> Vec<u8> {
    let mut h = 23i32.to_le_bytes().to_vec();
    let mut s = [0u8; 32];
    s[..19].copy_from_slice(b"CRFS DATA FILE V023");
    h.extend_from_slice(&s);
    h
}

#[test]
fn truncation_at_every_offset_never_panics() {
    let bytes = generator::generate(&generator::small_v5(5)).expect("generate");
    let boundaries = block_boundaries(&bytes);
    for cut in 0..=bytes.len() {
        let part = &bytes[..cut];
        let a = crfs::parse(part, ParseOptions::default());
        let b = crfs::parse(part, DECODE);
        assert_eq!(a.is_ok(), b.is_ok());
        if let Some(i) = boundaries.iter().position(|&b| b == cut) {
            if i == 0 {
                let m = a.expect("header only is a valid, empty file");
                assert!(m.block_counts.is_empty());
                continue;
            }
            let m = a.expect("truncated at a block boundary");
            assert_eq!(m.block_counts.values().sum::<u64>(), i as u64, "blocks before offset {cut}");
            assert!(m.is_clean(), "cut {cut}: {:?}", m.damage);
        } else if let Ok(m) = a {
            let prev = boundaries.iter().filter(|&&b| b <= cut).count() as u64 - 1;
            assert_eq!(m.block_counts.values().sum::<u64>(), prev, "cut {cut}");
            assert_eq!(
                m.damage.truncated_bytes + m.damage.trailing_bytes,
                (cut - boundaries[prev as usize]) as u64,
                "cut {cut}: the partial block is reported"
            );
        }
    }
}

#[test]
fn truncating_a_real_file_at_block_boundaries_keeps_earlier_blocks() {
    let Some(dir) = fixtures_dir() else { return };
    let bytes = std::fs::read(dir.join("rfeye002292_210211_T112336.bin")).expect("read");
    let boundaries = block_boundaries(&bytes);
    for (i, &b) in boundaries.iter().enumerate().step_by(7) {
        let m = crfs::parse_metadata(&bytes[..b]).expect("prefix parses");
        assert_eq!(m.block_counts.values().sum::<u64>(), i as u64);
        // And a cut in the middle of the next block.
        if let Some(&next) = boundaries.get(i + 1) {
            let mid = (b + next) / 2;
            if i == 0 {
                let e = crfs::parse(&bytes[..mid], DECODE);
                assert!(matches!(e, Err(CrfsError::NoReadableBlock { .. })), "{e:?}");
                continue;
            }
            let m = crfs::parse(&bytes[..mid], DECODE).expect("prefix parses");
            assert_eq!(m.block_counts.values().sum::<u64>(), i as u64);
            assert_eq!(m.damage.truncated_bytes + m.damage.trailing_bytes, (mid - b) as u64);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = crfs::parse(&data, DECODE);
        let mut with_header = crfs_header();
        with_header.extend_from_slice(&data);
        let _ = crfs::parse(&with_header, DECODE);
    }

    #[test]
    fn corrupted_generated_files_never_panic(
        seed in any::<u64>(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..16),
        cut in any::<usize>(),
    ) {
        let mut bytes = generator::generate(&generator::small_v5(seed)).expect("generate");
        let n = bytes.len();
        for (at, v) in flips {
            bytes[at % n] = v;
        }
        bytes.truncate(36 + cut % (n - 35));
        if let Ok(m) = crfs::parse(&bytes, DECODE) {
            // Whatever survived is consistent.
            for s in &m.spectra {
                let levels = s.levels.as_ref().map_or(0, Vec::len) as u64;
                prop_assert!(levels == 0 || levels == s.trace_count * u64::from(s.points));
            }
            let _ = inspect::render_json(&m, None);
            let _ = inspect::render_text(&m, None);
        }
    }

    #[test]
    fn truncating_a_real_file_anywhere_never_panics(cut in any::<usize>()) {
        if let Some(dir) = fixtures_dir() {
            let bytes = std::fs::read(dir.join("rfeye002292_210211_T112336.bin")).expect("read");
            let cut = cut % (bytes.len() + 1);
            let _ = crfs::parse(&bytes[..cut], DECODE);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-built blocks: GERROR, legacy and v3 types.

/// Frames one block (independent of the crate's writer): head, data, byte-sum checksum, UUUU.
fn frame(out: &mut Vec<u8>, thread: u32, ty: i32, data: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&thread.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&ty.to_le_bytes());
    out.extend_from_slice(data);
    let sum = out[start..].iter().fold(0u32, |a, &b| a.wrapping_add(u32::from(b)));
    out.extend_from_slice(&sum.to_le_bytes());
    out.extend_from_slice(b"UUUU");
}

#[test]
fn gerror_blocks_are_skipped_and_counted() {
    let spec = generator::small_v5(9);
    let mut bytes = generator::generate(&spec).expect("generate");
    let whole = crfs::parse_metadata(&bytes).expect("parse");
    let before = find_stream(&whole, 67, 10).trace_count;
    // Find the first type 67 block of thread 10 and set its GERROR (DATA + 56 + D) to 0.
    let boundaries = block_boundaries(&bytes);
    let at = boundaries
        .iter()
        .copied()
        .find(|&b| {
            b + 12 <= bytes.len()
                && bytes[b..b + 4] == 10u32.to_le_bytes()
                && bytes[b + 8..b + 12] == 67i32.to_le_bytes()
        })
        .expect("a 67 block of thread 10");
    let data = at + 12;
    let dlen = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]) as usize;
    let d =
        u32::from_le_bytes([bytes[data + 20], bytes[data + 21], bytes[data + 22], bytes[data + 23]]) as usize;
    bytes[data + 56 + d] = 0;
    let sum = bytes[at..data + dlen].iter().fold(0u32, |a, &b| a.wrapping_add(u32::from(b)));
    bytes[data + dlen..data + dlen + 4].copy_from_slice(&sum.to_le_bytes());
    let meta = crfs::parse_metadata(&bytes).expect("parse");
    assert_eq!(find_stream(&meta, 67, 10).trace_count, before - 1);
    assert_eq!(meta.damage.skipped_blocks.get(&crfs::SkipReason::Gerror), Some(&1));
    assert_eq!(meta.damage.bad_blocks, 0, "a GERROR block is not a damaged block");
}

#[test]
fn v021_files_are_walked_block_by_block() {
    let mut f = 21i32.to_le_bytes().to_vec();
    let mut s = [0u8; 32];
    s[..19].copy_from_slice(b"CRFS DATA FILE V021");
    f.extend_from_slice(&s);
    // Type 21 with hostname only up to TEXT1 (short variant).
    let mut d = b"rfeye002088\0\0\0\0\0".to_vec();
    d.extend_from_slice(&8u32.to_le_bytes());
    d.extend_from_slice(b"Mobile\0\0");
    frame(&mut f, 0, 21, &d);
    // Type 4 (v1/v2 8-bit spectrum, no time): recognised, skipped.
    let mut d = vec![0u8; 12];
    d[0..2].copy_from_slice(&105u16.to_le_bytes());
    d[2..4].copy_from_slice(&140u16.to_le_bytes());
    d[8..12].copy_from_slice(&4u32.to_le_bytes());
    d.extend_from_slice(&[1, 2, 3, 4]);
    frame(&mut f, 10, 4, &d);
    // Type 60 (v3 8-bit spectrum): 105..140 MHz as value × 10^6 Hz, 8 points, offset 10.
    for (k, nano) in [(0u8, 5_000_000u32), (1, 0)] {
        let mut d = vec![26, 4, 17, 0, 16, 27, 36 + k, 0];
        d.extend_from_slice(&nano.to_le_bytes());
        d.extend_from_slice(&105u32.to_le_bytes());
        d.extend_from_slice(&140u32.to_le_bytes());
        d.extend_from_slice(&[6, 1, 0xff, 0xff]); // FREQEXP ANTUID GERROR GFLAGS
        d.extend_from_slice(&0u16.to_le_bytes()); // PARENTID
        d.extend_from_slice(&[2, 1, 10, 0]); // PROC NLOOPS OFFSET NPAD
        d.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // NTUN NAGC res
        d.extend_from_slice(&8u32.to_le_bytes());
        d.extend_from_slice(&[0, 2, 4, 6, 8, 10, 12, 255]);
        frame(&mut f, 10, 60, &d);
    }
    frame(&mut f, 0, 6, &[0; 8]); // IQ data: not decoded
    let meta = crfs::parse(&f, DECODE).expect("parse V021");
    assert_eq!(meta.file_version, 21);
    assert_eq!(meta.equipment.hostname.as_deref(), Some("rfeye002088"));
    assert_eq!(meta.equipment.unit_info.as_deref(), Some("Mobile"));
    assert_eq!(meta.procedure.method, None);
    assert_eq!(meta.spectra.len(), 1);
    let s = &meta.spectra[0];
    assert_eq!((s.block_type, s.start_mhz, s.stop_mhz, s.points), (60, 105.0, 140.0, 8));
    assert_eq!((s.antenna, s.processing.as_str(), s.trace_count), (1, "peak", 2));
    assert_eq!(s.first_sweep, dt("2017-04-26T16:27:36.005"));
    assert_eq!(s.last_sweep, dt("2017-04-26T16:27:37"));
    let levels = s.levels.as_deref().unwrap_or_default();
    assert_eq!(&levels[..3], &[-117.5, -116.5, -115.5]);
    assert_eq!(levels[7], 10.0);
    assert_eq!(meta.damage.skipped_blocks.get(&crfs::SkipReason::Legacy), Some(&1));
    assert_eq!(meta.damage.skipped_blocks.get(&crfs::SkipReason::NotDecoded), Some(&1));
    assert_eq!(meta.block_counts.get(&4), Some(&1));
}
