//! The demo (`appcataloga demo`, `scripts/demo.sh`) as a CI test: the README's first command
//! must keep working, end to end, and a second run in the same work folder must work too.
//!
//! Runs [`appcataloga::demo::execute`] in-process against the harness's private MariaDB (schemas
//! private to this test), with the daemon binary built for the tests: three real `sshd`
//! stations with generated CRFS files, the real daemon, legacy Zabbix polls, processing and
//! Parquet publication, then a clean SIGTERM. Needs root, like the other station tests.

use std::path::PathBuf;
use std::time::Duration;

use appcataloga::demo::{DemoArgs, DemoReport, execute};

use crate::support::*;

fn demo(db: &TestDb, work: &std::path::Path) -> DemoReport {
    let mut args = DemoArgs::new(db.db.url(), work);
    args.bin = Some(PathBuf::from(binary()));
    args.schema_prefix = db.bpdata.trim_end_matches("_BPDATA").to_string();
    args.refdata = shared_dir().map(|d| d.join("reference-data"));
    args.timeout = Duration::from_secs(150);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(execute(args)).unwrap_or_else(|e| panic!("demo failed: {e:#}"))
}

fn check(report: &DemoReport) {
    assert_eq!(report.stations, 3);
    assert_eq!(report.files, 24);
    assert!(report.bytes > 24 * 1_500_000, "{} bytes", report.bytes);
    assert!(report.spectra >= 24 * 4, "{} spectra", report.spectra);
    assert!(report.parquet.ends_with("repo/Metadata/spectrum_catalog.parquet"), "{:?}", report.parquet);
    assert!(report.parquet.is_file());
    assert!(report.backup <= report.processing && report.processing <= report.published);
    // One site per station, each in its own city.
    assert_eq!(report.sites.len(), 3, "{:?}", report.sites);
    assert_eq!(report.sites.iter().map(|s| s.spectra).sum::<u64>(), report.spectra);
    assert_eq!(report.rows.len() as u64, report.spectra);
    if report.refdata_loaded {
        let mut places: Vec<(Option<&str>, Option<i32>)> =
            report.sites.iter().map(|s| (s.state.as_deref(), s.county_code)).collect();
        places.sort();
        assert_eq!(
            places,
            vec![(Some("AM"), Some(1_302_603)), (Some("BA"), Some(2_927_408)), (Some("DF"), Some(5_300_108))]
        );
    }
    for row in &report.rows {
        assert!(row.receiver.starts_with("rfeye0021"), "{row:?}");
        assert!(!row.description.is_empty() && row.freq_start_mhz < row.freq_stop_mhz, "{row:?}");
        assert!(row.trace_count.unwrap_or(0) > 0, "{row:?}");
    }
}

#[test]
fn demo_runs_end_to_end_twice() {
    let db = TestDb::new();
    let work = tempfile::tempdir().unwrap();
    let first = demo(&db, work.path());
    check(&first);
    // A second run in the same folder and schemas starts clean and gives the same catalogue.
    let second = demo(&db, work.path());
    check(&second);
    assert_eq!(second.spectra, first.spectra);
    assert_eq!(second.bytes, first.bytes);
}
