//! The metadata model that the CRFS parser produces for one `.bin` file.
//!
//! It holds everything the catalogue needs (crfs-bin-format.md §5): file version, equipment,
//! procedure, GPS samples and their median, one entry per spectrum stream, damage statistics and
//! block counts. It is plain data (serde-serialisable, comparable) so that both the legacy
//! (rfpye/bbce514) and the HEAD (appAnalise) projections can be derived from it.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use serde::Serialize;

/// Options for [`super::parse`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParseOptions {
    /// Decode the level of every point of every sweep into [`SpectrumStream::levels`]. Off by
    /// default: the catalogue only needs metadata, and decoding costs memory (4 bytes per point).
    pub decode_levels: bool,
}

/// Everything extracted from one CRFS file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileMetadata {
    /// Header `FILE_VERSION` (21, 22 or 23 seen).
    pub file_version: i32,
    /// Header `FILE_STRING`, e.g. `CRFS DATA FILE V023`.
    pub file_string: String,
    /// Size of the parsed byte buffer.
    pub file_size: u64,
    pub equipment: Equipment,
    pub procedure: Procedure,
    pub gps: Gps,
    /// Thread descriptions from type 24/22/3 blocks, by thread id (the last one wins).
    pub thread_descriptions: BTreeMap<u32, String>,
    /// Free texts (types 41, 42, 5, 23) in file order.
    pub texts: Vec<TextRecord>,
    /// One entry per stream, in order of first appearance.
    pub spectra: Vec<SpectrumStream>,
    pub damage: Damage,
    /// Checksum-valid blocks by type code.
    pub block_counts: BTreeMap<i32, u64>,
    /// Checksum-valid blocks by `"type/thread"` (the same keys as the fixtures' independent walk).
    pub block_counts_by_thread: BTreeMap<String, u64>,
}

/// The receiver (type 21, or type 1 in v1 files).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Equipment {
    /// Hostname exactly as stored (lower case in real files, e.g. `rfeye002292`).
    pub hostname: Option<String>,
    /// TEXT1 of type 21 (`Stationary`, `Mobile`, ...).
    pub unit_info: Option<String>,
}

/// The measurement procedure (type 21).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Procedure {
    /// TEXT2 of type 21: the logger cfg `method`.
    pub method: Option<String>,
    pub file_number: Option<u32>,
}

/// GPS samples (type 40) and their summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Gps {
    /// Every GPS block, including those without a fix.
    pub samples: Vec<GpsSample>,
    /// Samples with fix status ≠ 0 (rfpye's rule; M keeps 1 and 2 only, the same in practice).
    pub valid_fixes: u64,
    /// Median latitude/longitude/altitude over valid fixes; `None` without any valid fix.
    pub median: Option<Position>,
}

/// A position (degrees, metres).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Position {
    pub latitude: f64,
    pub longitude: f64,
    pub altitude: f64,
}

/// One type 40 GPS block.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpsSample {
    /// Logger wall clock when the block was written (`None` if the stored date is invalid).
    pub wall_time: Option<NaiveDateTime>,
    /// GPS date and time (`None` if invalid, e.g. all zero without a fix).
    pub gps_time: Option<NaiveDateTime>,
    /// 0 = no fix, 1 = standard, 2 = differential.
    pub fix: u8,
    pub satellites: u8,
    pub heading_deg: f64,
    pub latitude: f64,
    pub longitude: f64,
    pub speed_kmh: f64,
    pub altitude_m: f64,
}

/// One free-text block (41/42: timed with identifier; 5/23: plain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TextRecord {
    pub block_type: i32,
    pub thread_id: u32,
    pub time: Option<NaiveDateTime>,
    /// e.g. `LOGGER_NAME`, `LOGGER_VERSION`, `INFO`, `MASK`, `MESSAGE`.
    pub identifier: Option<String>,
    pub text: String,
}

/// What a stream's blocks hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    /// 8-bit levels (60, 63, 67).
    Spectrum,
    /// Threshold-compressed levels (61, 64, 68).
    Compressed,
    /// Channel occupancy in % (62, 65, 69).
    Occupancy,
}

/// One measurement stream: the blocks with the same thread id, block type and static fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpectrumStream {
    pub block_type: i32,
    pub kind: StreamKind,
    pub thread_id: u32,
    /// Inline description (67/68/69) or the type 24 text of the thread (63/64/65).
    pub description: Option<String>,
    /// Exact start frequency in MHz (`MEGA + MILLI/1e9`; v3: `value × 10^exp / 1e6`).
    pub start_mhz: f64,
    pub stop_mhz: f64,
    /// `dBm` or `dBμV/m` (U+03BC, as the catalogue's measurementUnit.csv).
    pub unit: String,
    /// Points per sweep (NDATA, or NORIG for compressed blocks).
    pub points: u32,
    /// Resolution bandwidth in Hz (67/68/69 only; −1 when the writer did not know it).
    pub rbw_hz: Option<i32>,
    /// `single measurement`, `average`, `peak`, `minimum` (rfpye's words) or `occupancy`.
    pub processing: String,
    /// Antenna input (0 = automatic, 1..4 = port).
    pub antenna: u8,
    /// Threshold in dB (compressed and occupancy blocks).
    pub threshold: Option<i32>,
    /// Occupancy integration duration in seconds (65/69); sampling seconds for 62.
    pub duration_s: Option<u32>,
    /// Number of sweeps (blocks).
    pub trace_count: u64,
    /// Earliest sweep wall-clock time (no time zone is stored; the stations log UTC).
    pub first_sweep: NaiveDateTime,
    /// Latest sweep wall-clock time.
    pub last_sweep: NaiveDateTime,
    /// `trace_count × points` values, sweep after sweep (levels in `unit`, or % for
    /// occupancy); present only with [`ParseOptions::decode_levels`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub levels: Option<Vec<f32>>,
}

/// Why a checksum-valid block was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Spectral block with `GERROR != -1` (skipped by rfpye and appAnalise too).
    Gerror,
    /// Its fields do not fit in its declared length, or are inconsistent.
    Malformed,
    /// Its wall-clock date or time is impossible.
    BadTimestamp,
    /// A legacy v1/v2 type (1..8) that is recognised but not decoded (4/7 carry no time).
    Legacy,
    /// A type that carries nothing the catalogue needs or is unknown (6, 20, 51, 66, ...).
    NotDecoded,
}

/// Damage statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Damage {
    /// Blocks that failed their checksum or framing (end marker not where the length says).
    pub bad_blocks: u64,
    pub checksum_failures: u64,
    pub framing_failures: u64,
    /// Bytes of a final block cut short (its declared length runs past the end of the file).
    pub truncated_bytes: u64,
    /// Bytes after the last block, too few to hold a block head.
    pub trailing_bytes: u64,
    /// Times the walk had to scan forward for the next valid block.
    pub resyncs: u64,
    /// Bytes skipped by those scans.
    pub resync_skipped_bytes: u64,
    /// Bytes after a bad block from which no valid block could be recovered.
    pub unrecovered_bytes: u64,
    /// Checksum-valid blocks not used, by reason.
    pub skipped_blocks: BTreeMap<SkipReason, u64>,
    /// Compressed sweeps whose data decoded to more or fewer points than declared
    /// (only counted with level decoding).
    pub level_decode_errors: u64,
}

impl FileMetadata {
    /// `true` if nothing at all was wrong with the file.
    pub fn is_clean(&self) -> bool {
        self.damage.bad_blocks == 0
            && self.damage.truncated_bytes == 0
            && self.damage.trailing_bytes == 0
            && self.damage.unrecovered_bytes == 0
            && self.damage.skipped_blocks.is_empty()
            && self.damage.level_decode_errors == 0
    }

    /// The inspect JSON object (see [`super::inspect::render_json`]).
    pub fn to_inspect_json(&self) -> serde_json::Value {
        super::inspect::render_json(self, None)
    }
}

/// Median with numpy's convention (mean of the two middle values for an even count).
pub(crate) fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 })
}
