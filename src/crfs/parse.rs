//! Turns the walked blocks into a [`FileMetadata`]: dispatch on each block's type code, stream
//! grouping, GPS median and damage accounting.
//!
//! Pure: bytes in, metadata out. The only allocations per block are for texts and new streams;
//! spectral blocks borrow their description and level bytes from the input.

use std::collections::{BTreeMap, HashMap};

use super::CrfsError;
use super::ParseOptions;
use super::blocks::{self, Spectral};
use super::levels;
use super::model::{
    Damage, Equipment, FileMetadata, Gps, Position, Procedure, SkipReason, SpectrumStream, StreamKind,
    TextRecord, median,
};
use super::walk::{self, HEADER_LEN, RawBlock};

/// The static fields that identify a stream (OFFSET is deliberately not part of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StreamKey<'a> {
    block_type: i32,
    thread_id: u32,
    description: Option<&'a [u8]>,
    start_raw: (i64, i64),
    stop_raw: (i64, i64),
    unit: Option<u16>,
    points: u32,
    rbw_hz: Option<i32>,
    processing: Option<u8>,
    antenna: u8,
    threshold: Option<i32>,
}

impl<'a> StreamKey<'a> {
    fn of(thread_id: u32, block_type: i32, s: &Spectral<'a>) -> Self {
        StreamKey {
            block_type,
            thread_id,
            description: s.description,
            start_raw: s.start_raw,
            stop_raw: s.stop_raw,
            unit: s.unit,
            points: s.points,
            rbw_hz: s.rbw_hz,
            processing: s.processing,
            antenna: s.antenna,
            threshold: s.threshold,
        }
    }
}

struct Builder<'a> {
    decode_levels: bool,
    level_budget: u64,
    equipment: Equipment,
    procedure: Procedure,
    gps: Gps,
    thread_descriptions: BTreeMap<u32, String>,
    texts: Vec<TextRecord>,
    keys: Vec<StreamKey<'a>>,
    streams: Vec<SpectrumStream>,
    last_hit: HashMap<(u32, i32), usize>,
    skipped: BTreeMap<SkipReason, u64>,
    level_decode_errors: u64,
    counts: HashMap<(i32, u32), u64>,
}

/// Parses a whole CRFS file held in memory.
pub fn parse(bytes: &[u8], options: ParseOptions) -> Result<FileMetadata, CrfsError> {
    let header = walk::parse_header(bytes)?;
    let mut b = Builder {
        decode_levels: options.decode_levels,
        // Decoded points are bounded by the input size (a compressed byte pair can stand for
        // at most 255 points; 64 points per input byte is far above what real files need).
        level_budget: (bytes.len() as u64).saturating_mul(64).saturating_add(1 << 22),
        equipment: Equipment::default(),
        procedure: Procedure::default(),
        gps: Gps::default(),
        thread_descriptions: BTreeMap::new(),
        texts: Vec::new(),
        keys: Vec::new(),
        streams: Vec::new(),
        last_hit: HashMap::new(),
        skipped: BTreeMap::new(),
        level_decode_errors: 0,
        counts: HashMap::new(),
    };
    let st = walk::walk(bytes, |blk| b.block(blk));
    if st.good_blocks == 0 && bytes.len() > HEADER_LEN {
        return Err(CrfsError::NoReadableBlock {
            bytes_after_header: bytes.len() - HEADER_LEN,
            bad_blocks: st.bad_blocks,
        });
    }
    Ok(b.finish(header, bytes.len() as u64, st))
}

impl<'a> Builder<'a> {
    fn skip(&mut self, reason: SkipReason) {
        *self.skipped.entry(reason).or_insert(0) += 1;
    }

    fn block(&mut self, blk: RawBlock<'a>) {
        *self.counts.entry((blk.block_type, blk.thread_id)).or_insert(0) += 1;
        let (t, d) = (blk.block_type, blk.data);
        match t {
            60..=65 | 67..=69 => match blocks::spectral(d, t) {
                Ok(s) => self.sweep(blk.thread_id, t, &s),
                Err(reason) => self.skip(reason),
            },
            21 | 1 => match blocks::unit_info(d, t) {
                Ok(u) => {
                    if self.equipment.hostname.is_none() {
                        self.equipment.hostname = Some(u.hostname);
                        self.equipment.unit_info = u.unit_info;
                        self.procedure.method = u.method;
                        self.procedure.file_number = u.file_number;
                    }
                }
                Err(reason) => self.skip(reason),
            },
            40 => match blocks::gps(d) {
                Ok(g) => {
                    if g.fix != 0 {
                        self.gps.valid_fixes += 1;
                    }
                    self.gps.samples.push(g);
                }
                Err(reason) => self.skip(reason),
            },
            24 | 22 | 3 => match blocks::text_block(d, t) {
                Ok(x) => {
                    self.thread_descriptions.insert(blk.thread_id, x.text);
                }
                Err(reason) => self.skip(reason),
            },
            41 | 42 | 5 | 23 => match blocks::text_block(d, t) {
                Ok(x) => self.texts.push(TextRecord {
                    block_type: t,
                    thread_id: blk.thread_id,
                    time: x.time,
                    identifier: x.identifier,
                    text: x.text,
                }),
                Err(reason) => self.skip(reason),
            },
            2 | 4 | 7 | 8 => self.skip(SkipReason::Legacy),
            _ => self.skip(SkipReason::NotDecoded),
        }
    }

    fn find_stream(&mut self, key: &StreamKey<'a>) -> Option<usize> {
        let cache = (key.thread_id, key.block_type);
        if let Some(&i) = self.last_hit.get(&cache)
            && self.keys.get(i) == Some(key)
        {
            return Some(i);
        }
        let i = self.keys.iter().position(|k| k == key)?;
        self.last_hit.insert(cache, i);
        Some(i)
    }

    fn sweep(&mut self, thread_id: u32, block_type: i32, s: &Spectral<'a>) {
        let Some(time) = s.time else {
            self.skip(SkipReason::BadTimestamp);
            return;
        };
        let key = StreamKey::of(thread_id, block_type, s);
        let idx = match self.find_stream(&key) {
            Some(i) => i,
            None => {
                self.keys.push(key);
                self.streams.push(SpectrumStream {
                    block_type,
                    kind: s.kind,
                    thread_id,
                    description: s.description.map(blocks_text),
                    start_mhz: s.start_mhz,
                    stop_mhz: s.stop_mhz,
                    unit: blocks::unit_name(s.unit),
                    points: s.points,
                    rbw_hz: s.rbw_hz,
                    processing: blocks::processing_name(s.kind, s.processing),
                    antenna: s.antenna,
                    threshold: s.threshold,
                    duration_s: s.duration_s,
                    trace_count: 0,
                    first_sweep: time,
                    last_sweep: time,
                    levels: self.decode_levels.then(Vec::new),
                });
                let i = self.streams.len() - 1;
                self.last_hit.insert((thread_id, block_type), i);
                i
            }
        };
        let Some(stream) = self.streams.get_mut(idx) else {
            return;
        };
        stream.trace_count += 1;
        stream.first_sweep = stream.first_sweep.min(time);
        stream.last_sweep = stream.last_sweep.max(time);
        if let Some(out) = stream.levels.as_mut() {
            let points = u64::from(s.points);
            if points > self.level_budget {
                stream.levels = None;
                self.level_decode_errors += 1;
                return;
            }
            self.level_budget -= points;
            let ok = match s.kind {
                StreamKind::Spectrum => {
                    levels::plain(s.payload, s.offset, out);
                    true
                }
                StreamKind::Occupancy => {
                    levels::occupancy(s.payload, out);
                    true
                }
                StreamKind::Compressed => levels::compressed(
                    s.payload,
                    s.points as usize,
                    s.threshold.unwrap_or_default(),
                    s.offset,
                    out,
                ),
            };
            if !ok {
                self.level_decode_errors += 1;
            }
        }
    }

    fn finish(mut self, header: walk::Header, file_size: u64, st: walk::WalkStats) -> FileMetadata {
        // v3/v4 streams take their description from the thread's type 24 (or 22/3) block.
        for s in &mut self.streams {
            if s.description.is_none() {
                s.description = self.thread_descriptions.get(&s.thread_id).cloned();
            }
        }
        let valid: Vec<_> = self.gps.samples.iter().filter(|g| g.fix != 0).collect();
        let mut lat: Vec<f64> = valid.iter().map(|g| g.latitude).collect();
        let mut lon: Vec<f64> = valid.iter().map(|g| g.longitude).collect();
        let mut alt: Vec<f64> = valid.iter().map(|g| g.altitude_m).collect();
        self.gps.median = match (median(&mut lat), median(&mut lon), median(&mut alt)) {
            (Some(latitude), Some(longitude), Some(altitude)) => {
                Some(Position { latitude, longitude, altitude })
            }
            _ => None,
        };
        let mut block_counts = BTreeMap::new();
        let mut block_counts_by_thread = BTreeMap::new();
        for (&(t, th), &n) in &self.counts {
            *block_counts.entry(t).or_insert(0) += n;
            block_counts_by_thread.insert(format!("{t}/{th}"), n);
        }
        FileMetadata {
            file_version: header.version,
            file_string: header.string,
            file_size,
            equipment: self.equipment,
            procedure: self.procedure,
            gps: self.gps,
            thread_descriptions: self.thread_descriptions,
            texts: self.texts,
            spectra: self.streams,
            damage: Damage {
                bad_blocks: st.bad_blocks,
                checksum_failures: st.checksum_failures,
                framing_failures: st.framing_failures,
                truncated_bytes: st.truncated_bytes,
                trailing_bytes: st.trailing_bytes,
                resyncs: st.resyncs,
                resync_skipped_bytes: st.resync_skipped_bytes,
                unrecovered_bytes: st.unrecovered_bytes,
                skipped_blocks: self.skipped,
                level_decode_errors: self.level_decode_errors,
            },
            block_counts,
            block_counts_by_thread,
        }
    }
}

fn blocks_text(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}
