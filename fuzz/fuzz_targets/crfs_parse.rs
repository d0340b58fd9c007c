//! Fuzz target `crfs_parse`: the CRFS parser must never panic, hang or over-allocate, whatever
//! the bytes (it reads files from remote stations that may be damaged or hostile).
//!
//! Seed it with the fixtures for deeper coverage:
//! `mkdir -p corpus/crfs_parse && cp ../../shared/fixtures/crfs/*.bin ../../shared/fixtures/crfs/synthetic/*.bin corpus/crfs_parse/`
#![no_main]

use appcataloga::crfs::{self, ParseOptions, inspect};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for decode_levels in [false, true] {
        if let Ok(meta) = crfs::parse(data, ParseOptions { decode_levels }) {
            // Whatever was recovered must be internally consistent and renderable.
            for s in &meta.spectra {
                assert!(s.trace_count > 0);
                assert!(s.first_sweep <= s.last_sweep);
                if let Some(levels) = &s.levels {
                    assert_eq!(levels.len() as u64, s.trace_count * u64::from(s.points));
                }
            }
            let _ = inspect::render_json(&meta, None);
            let _ = inspect::render_text(&meta, None);
        }
    }
});
