//! Deterministic generator of valid CRFS files.
//!
//! Used by the tests (round trips), the station simulator, the demo and the benchmark. A
//! [`FileSpec`] describes the file (unit info, GPS fixes, streams); [`write`] streams it to any
//! [`std::io::Write`] block by block, so a file of hundreds of MB never has to be held in memory;
//! [`generate`] returns it as a `Vec<u8>`. The same spec always gives the same bytes.
//!
//! v5 (`V023`) files use blocks 21, 42, 40, 67/68/69 (the description is inline); v4 (`V022`)
//! files use 21, 41, 24 (thread description), 40, 63/64/65. Sweeps of all streams are
//! interleaved in time order, with GPS fixes among them.

use std::io::{self, Write};

use chrono::{Datelike, NaiveDate, NaiveDateTime, TimeDelta, Timelike};

use super::model::StreamKind;
use super::walk::frame_block;

/// Which logger format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `CRFS DATA FILE V022` (logger v4): 21, 41, 24, 40, 63/64/65.
    V4,
    /// `CRFS DATA FILE V023` (logger v5): 21, 42, 40, 67/68/69.
    V5,
}

impl Format {
    /// The header version number.
    pub fn version(self) -> i32 {
        match self {
            Format::V4 => 22,
            Format::V5 => 23,
        }
    }

    /// The header string.
    pub fn file_string(self) -> String {
        format!("CRFS DATA FILE V0{}", self.version())
    }
}

/// A whole file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSpec {
    pub format: Format,
    /// At most 16 bytes.
    pub hostname: String,
    pub unit_info: String,
    pub method: String,
    pub file_number: u32,
    pub gps: Vec<GpsFixSpec>,
    pub streams: Vec<StreamSpec>,
    /// Seeds the level content (noise and peaks).
    pub seed: u64,
}

/// One GPS block (type 40). The wall clock and the GPS clock are both `time`.
#[derive(Debug, Clone, PartialEq)]
pub struct GpsFixSpec {
    pub time: NaiveDateTime,
    /// 0 = no fix, 1 = standard, 2 = differential.
    pub fix: u8,
    pub satellites: u8,
    pub latitude_e6: i32,
    pub longitude_e6: i32,
    pub altitude_mm: i32,
    /// km/h × 1000.
    pub speed_e3: i32,
    /// degrees × 100.
    pub heading_e2: i16,
}

/// One measurement stream: `sweeps` blocks of the same thread, `interval` apart.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSpec {
    pub thread_id: u32,
    /// Inline (v5) or type 24 (v4; omitted when empty).
    pub description: String,
    pub start_mega: u16,
    /// Millihertz (0..1e9).
    pub start_milli: i32,
    pub stop_mega: u16,
    pub stop_milli: i32,
    /// DTYPE: 0 = dBm, 1 = dBμV/m.
    pub unit: u8,
    pub points: u32,
    /// Hz (written in v5 only).
    pub rbw_hz: i32,
    /// PROC: 0 single, 1 average, 2 peak, 3 minimum.
    pub processing: u8,
    pub antenna: u8,
    pub kind: StreamKind,
    /// dB; compressed and occupancy streams.
    pub threshold: i16,
    /// Seconds; occupancy streams.
    pub duration_s: u16,
    pub sweeps: u32,
    pub start: NaiveDateTime,
    pub interval: TimeDelta,
    /// Level OFFSET of every block (levels are `byte/2 + offset − 127.5`).
    pub offset: i8,
}

impl StreamSpec {
    /// A plain peak dBm spectrum stream with sensible defaults.
    pub fn new(thread_id: u32, description: &str, start_mhz: f64, stop_mhz: f64, points: u32) -> Self {
        let (start_mega, start_milli) = freq_pair(start_mhz);
        let (stop_mega, stop_milli) = freq_pair(stop_mhz);
        StreamSpec {
            thread_id,
            description: description.to_owned(),
            start_mega,
            start_milli,
            stop_mega,
            stop_milli,
            unit: 0,
            points,
            rbw_hz: 73_828,
            processing: 2,
            antenna: 0,
            kind: StreamKind::Spectrum,
            threshold: -90,
            duration_s: 300,
            sweeps: 3,
            start: default_start(),
            interval: TimeDelta::seconds(1),
            offset: 0,
        }
    }

    /// Exact start frequency in MHz.
    pub fn start_mhz(&self) -> f64 {
        f64::from(self.start_mega) + f64::from(self.start_milli) / 1e9
    }

    /// Exact stop frequency in MHz.
    pub fn stop_mhz(&self) -> f64 {
        f64::from(self.stop_mega) + f64::from(self.stop_milli) / 1e9
    }

    /// Wall-clock time of sweep `k`.
    pub fn sweep_time(&self, k: u32) -> NaiveDateTime {
        // Saturates instead of panicking; an out-of-range time is then refused by `write`.
        i32::try_from(k)
            .ok()
            .and_then(|k| self.interval.checked_mul(k))
            .and_then(|d| self.start.checked_add_signed(d))
            .unwrap_or(NaiveDateTime::MAX)
    }

    /// The block type this stream is written as.
    pub fn block_type(&self, format: Format) -> i32 {
        let base = match format {
            Format::V4 => 63,
            Format::V5 => 67,
        };
        base + match self.kind {
            StreamKind::Spectrum => 0,
            StreamKind::Compressed => 1,
            StreamKind::Occupancy => 2,
        }
    }
}

/// Splits a frequency in MHz into the CRFS MEGA + MILLI (millihertz) pair.
pub fn freq_pair(mhz: f64) -> (u16, i32) {
    let mega = mhz.floor().clamp(0.0, f64::from(u16::MAX));
    let milli = ((mhz - mega) * 1e9).round().clamp(0.0, 999_999_999.0);
    // Both values were clamped into range above.
    (mega as u16, milli as i32)
}

/// 2021-02-11 11:19:12 (the time of the real fixture files).
pub fn default_start() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2021, 2, 11).and_then(|d| d.and_hms_opt(11, 19, 12)).unwrap_or_default()
}

/// The raw level bytes of sweep `k` of stream `index` (deterministic from the seed).
///
/// For occupancy streams the bytes are percentages × 2 (0..=200).
pub fn sweep_bytes(spec: &FileSpec, index: usize, k: u32) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(s) = spec.streams.get(index) {
        fill_sweep(spec.seed, s, k, &mut out);
    }
    out
}

/// The levels the parser should decode for sweep `k` of stream `index`.
pub fn expected_levels(spec: &FileSpec, index: usize, k: u32) -> Vec<f32> {
    let Some(s) = spec.streams.get(index) else {
        return Vec::new();
    };
    let bytes = sweep_bytes(spec, index, k);
    let base = f32::from(s.offset) - 127.5;
    bytes
        .iter()
        .map(|&b| match s.kind {
            StreamKind::Occupancy => f32::from(b) / 2.0,
            StreamKind::Spectrum => f32::from(b) / 2.0 + base,
            StreamKind::Compressed => {
                let level = f32::from(b) / 2.0 + base;
                if level < f32::from(s.threshold) { f32::from(s.threshold) - 1.0 } else { level }
            }
        })
        .collect()
}

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    fn next(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

fn fill_sweep(seed: u64, s: &StreamSpec, k: u32, out: &mut Vec<u8>) {
    let mut rng = Rng::new(
        seed.wrapping_mul(0x100_0000_01b3)
            ^ (u64::from(s.thread_id) << 32)
            ^ u64::from(k).wrapping_mul(0x9e37_79b9),
    );
    let n = s.points as usize;
    out.clear();
    out.reserve(n);
    if s.kind == StreamKind::Occupancy {
        for _ in 0..n {
            out.push((rng.below(201)) as u8);
        }
        return;
    }
    // Noise floor around byte 60..91 with a few carriers; 8 bytes per random draw.
    while out.len() < n {
        let r = rng.next();
        for i in 0..8 {
            if out.len() == n {
                break;
            }
            out.push(60 + ((r >> (i * 8)) as u8 & 0x1f));
        }
    }
    let carriers = 1 + rng.below(4);
    for _ in 0..carriers {
        let at = rng.below(n as u64) as usize;
        let width = 1 + rng.below(40) as usize;
        let top = 150 + rng.below(106) as u8; // reaches 254 and 255 sometimes
        for (j, b) in out.iter_mut().enumerate().skip(at).take(width) {
            let fall = ((j - at) * 2).min(80) as u8;
            *b = top.saturating_sub(fall).max(*b);
        }
    }
}

/// Encodes level bytes with threshold compression: runs of points below `threshold` become
/// `255, n`; literal 254 and 255 are escaped with 254.
fn compress(bytes: &[u8], threshold: i16, offset: i8, out: &mut Vec<u8>) {
    out.clear();
    let base = f32::from(offset) - 127.5;
    let mut run: usize = 0;
    let flush = |run: &mut usize, out: &mut Vec<u8>| {
        while *run > 0 {
            let n = (*run).min(255);
            out.push(255);
            out.push(n as u8);
            *run -= n;
        }
    };
    for &b in bytes {
        if f32::from(b) / 2.0 + base < f32::from(threshold) {
            run += 1;
            continue;
        }
        flush(&mut run, out);
        if b >= 254 {
            out.push(254);
        }
        out.push(b);
    }
    flush(&mut run, out);
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn push_wall(out: &mut Vec<u8>, t: &NaiveDateTime) -> io::Result<()> {
    let yy = u8::try_from(t.year() - 2000)
        .map_err(|_| invalid(format!("year {} cannot be stored (2000..=2255)", t.year())))?;
    // Day, month, hour, minute and second always fit in a byte.
    out.extend_from_slice(&[t.day() as u8, t.month() as u8, yy, 0]);
    out.extend_from_slice(&[t.hour() as u8, t.minute() as u8, t.second().min(59) as u8, 0]);
    out.extend_from_slice(&t.nanosecond().min(999_999_999).to_le_bytes());
    Ok(())
}

/// A length-prefixed text: `u32 len` (incl. NUL, padded to 4) + text + NULs.
fn push_text(out: &mut Vec<u8>, text: &str) {
    let len = (text.len() + 1).next_multiple_of(4);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.resize(out.len() + len - text.len(), 0);
}

fn push_fixed(out: &mut Vec<u8>, text: &str, width: usize) -> io::Result<()> {
    if text.len() > width {
        return Err(invalid(format!("{text:?} is longer than {width} bytes")));
    }
    out.extend_from_slice(text.as_bytes());
    out.resize(out.len() + width - text.len(), 0);
    Ok(())
}

fn u32_len(n: usize) -> io::Result<u32> {
    u32::try_from(n).map_err(|_| invalid(format!("length {n} does not fit in u32")))
}

/// Builds the DATA of one sweep block into `data` (cleared first).
fn sweep_data(
    format: Format,
    s: &StreamSpec,
    k: u32,
    levels: &[u8],
    packed: &mut Vec<u8>,
    data: &mut Vec<u8>,
) -> io::Result<()> {
    data.clear();
    push_wall(data, &s.sweep_time(k))?;
    let payload: &[u8] = if s.kind == StreamKind::Compressed {
        compress(levels, s.threshold, s.offset, packed);
        packed
    } else {
        levels
    };
    let npad = (4 - payload.len() % 4) % 4;
    let n = u32_len(payload.len())?;
    let pair = |data: &mut Vec<u8>, mega: u16, milli: i32| {
        data.extend_from_slice(&mega.to_le_bytes());
        data.extend_from_slice(&milli.to_le_bytes());
    };
    let chans = |data: &mut Vec<u8>| {
        data.extend_from_slice(&0u16.to_le_bytes());
        data.extend_from_slice(&(s.points.min(u32::from(u16::MAX)) as u16).to_le_bytes());
    };
    match format {
        Format::V5 => {
            data.extend_from_slice(&0i32.to_le_bytes()); // GROUP_ID
            data.extend_from_slice(&0i32.to_le_bytes()); // DYNAMIC_ID
            push_text(data, &s.description);
            pair(data, s.start_mega, s.start_milli);
            pair(data, s.stop_mega, s.stop_milli);
            data.extend_from_slice(&s.rbw_hz.to_le_bytes());
            chans(data);
            if s.kind == StreamKind::Occupancy {
                data.extend_from_slice(&0i32.to_le_bytes()); // OPTYPE
                data.push(1); // OPCOUNT
                data.push(s.antenna);
                data.extend_from_slice(&u16::from(s.unit).to_le_bytes());
                data.extend_from_slice(&[0xff, 0xff, 0, npad as u8]); // GERROR GFLAGS res NPAD
                data.extend_from_slice(&s.threshold.to_le_bytes());
                data.extend_from_slice(&s.duration_s.to_le_bytes());
                data.extend_from_slice(&n.to_le_bytes());
            } else {
                data.extend_from_slice(&5093u32.to_le_bytes()); // SAMPLE µs
                data.extend_from_slice(&1i32.to_le_bytes()); // NAMAL
                data.extend_from_slice(&[s.antenna, s.processing, s.unit, s.offset as u8]);
                data.extend_from_slice(&[0xff, 0xff, 0]); // GERROR GFLAGS res
                data.extend_from_slice(&0u16.to_le_bytes()); // NTUN
                data.extend_from_slice(&0u16.to_le_bytes()); // NAGC
                data.push(npad as u8);
                data.extend_from_slice(&n.to_le_bytes()); // NDATA or NCDATA
                if s.kind == StreamKind::Compressed {
                    data.extend_from_slice(&i32::from(s.threshold).to_le_bytes());
                    data.extend_from_slice(&s.points.to_le_bytes()); // NORIG
                }
            }
        }
        Format::V4 => {
            pair(data, s.start_mega, s.start_milli);
            pair(data, s.stop_mega, s.stop_milli);
            chans(data);
            if s.kind == StreamKind::Occupancy {
                data.extend_from_slice(&1i32.to_le_bytes()); // NAMAL
                data.extend_from_slice(&[s.antenna, s.processing]);
                data.extend_from_slice(&u16::from(s.unit).to_le_bytes());
                data.extend_from_slice(&[0xff, 0xff, 0, npad as u8]); // GERROR GFLAGS GROUP NPAD
                data.extend_from_slice(&s.threshold.to_le_bytes());
                data.extend_from_slice(&s.duration_s.to_le_bytes());
                data.extend_from_slice(&n.to_le_bytes());
            } else {
                data.extend_from_slice(&5093u32.to_le_bytes()); // SAMPLE µs
                data.extend_from_slice(&1i32.to_le_bytes()); // NAMAL
                data.extend_from_slice(&[s.antenna, s.processing, s.unit, s.offset as u8]);
                data.extend_from_slice(&[0xff, 0xff, 0]); // GERROR GFLAGS GROUP
                data.extend_from_slice(&0u16.to_le_bytes()); // NTUN
                data.extend_from_slice(&0u16.to_le_bytes()); // NAGC
                data.push(npad as u8);
                data.extend_from_slice(&n.to_le_bytes()); // NDATA or NCDATA
                if s.kind == StreamKind::Compressed {
                    data.extend_from_slice(&i32::from(s.threshold).to_le_bytes());
                    data.extend_from_slice(&s.points.to_le_bytes()); // NORIG
                }
            }
        }
    }
    data.extend_from_slice(payload);
    data.resize(data.len() + npad, 0);
    Ok(())
}

fn gps_data(g: &GpsFixSpec, data: &mut Vec<u8>) -> io::Result<()> {
    data.clear();
    push_wall(data, &g.time)?;
    let mut wall = Vec::with_capacity(12);
    push_wall(&mut wall, &g.time)?;
    data.extend_from_slice(&wall[0..8]); // GPS date and time = wall clock (to the second)
    data.extend_from_slice(&[g.fix, g.satellites]);
    data.extend_from_slice(&g.heading_e2.to_le_bytes());
    data.extend_from_slice(&g.latitude_e6.to_le_bytes());
    data.extend_from_slice(&g.longitude_e6.to_le_bytes());
    data.extend_from_slice(&g.speed_e3.to_le_bytes());
    data.extend_from_slice(&g.altitude_mm.to_le_bytes());
    Ok(())
}

fn timed_text(
    format: Format,
    t: &NaiveDateTime,
    ident: &str,
    text: &str,
    data: &mut Vec<u8>,
) -> io::Result<()> {
    data.clear();
    push_wall(data, t)?;
    if format == Format::V5 {
        data.extend_from_slice(&0i32.to_le_bytes()); // GROUP
        data.extend_from_slice(&0i32.to_le_bytes()); // DYNAMIC
    }
    push_fixed(data, ident, 32)?;
    push_text(data, text);
    Ok(())
}

/// Writes the file described by `spec` to `w`; returns the number of bytes written.
///
/// Fails only on an I/O error or an impossible spec (hostname over 16 bytes, a year outside
/// 2000..=2255, a length over `u32`).
pub fn write<W: Write>(spec: &FileSpec, w: &mut W) -> io::Result<u64> {
    let mut written = 0u64;
    let mut block = Vec::new();
    let mut data = Vec::new();
    let mut emit = |w: &mut W, block: &mut Vec<u8>, thread: u32, ty: i32, data: &[u8]| -> io::Result<()> {
        block.clear();
        frame_block(block, thread, ty, data);
        w.write_all(block)?;
        written += block.len() as u64;
        Ok(())
    };

    let mut header = Vec::with_capacity(36);
    header.extend_from_slice(&spec.format.version().to_le_bytes());
    push_fixed(&mut header, &spec.format.file_string(), 32)?;
    w.write_all(&header)?;
    let mut total_header = header.len() as u64;

    // 21: unit and job info.
    data.clear();
    push_fixed(&mut data, &spec.hostname, 16)?;
    push_text(&mut data, &spec.unit_info);
    push_text(&mut data, &spec.method);
    data.extend_from_slice(&spec.file_number.to_le_bytes());
    emit(w, &mut block, 0, 21, &data)?;

    // 41/42: logger name and version.
    let first = spec
        .streams
        .iter()
        .map(|s| s.start)
        .chain(spec.gps.iter().map(|g| g.time))
        .min()
        .unwrap_or_else(default_start);
    let text_type = if spec.format == Format::V5 { 42 } else { 41 };
    timed_text(spec.format, &first, "LOGGER_NAME", "log_main", &mut data)?;
    emit(w, &mut block, 0, text_type, &data)?;
    timed_text(
        spec.format,
        &first,
        "LOGGER_VERSION",
        "build_version=appcataloga-generator;build_date=2026",
        &mut data,
    )?;
    emit(w, &mut block, 0, text_type, &data)?;

    // 24: thread descriptions (v4 only, where spectra carry no description).
    if spec.format == Format::V4 {
        let mut seen: Vec<u32> = Vec::new();
        for s in &spec.streams {
            if s.description.is_empty() || seen.contains(&s.thread_id) {
                continue;
            }
            seen.push(s.thread_id);
            data.clear();
            data.extend_from_slice(&0i32.to_le_bytes()); // GROUP
            push_text(&mut data, &s.description);
            emit(w, &mut block, s.thread_id, 24, &data)?;
        }
    }

    // GPS fixes and sweeps, merged in time order (ties: GPS first, then stream order).
    let mut next_sweep: Vec<u32> = vec![0; spec.streams.len()];
    let mut next_gps = 0usize;
    let mut levels = Vec::new();
    let mut packed = Vec::new();
    loop {
        let mut best: Option<(NaiveDateTime, Option<usize>)> = spec.gps.get(next_gps).map(|g| (g.time, None));
        for (i, s) in spec.streams.iter().enumerate() {
            if next_sweep[i] < s.sweeps {
                let t = s.sweep_time(next_sweep[i]);
                if best.is_none_or(|(bt, _)| t < bt) {
                    best = Some((t, Some(i)));
                }
            }
        }
        match best {
            None => break,
            Some((_, None)) => {
                if let Some(g) = spec.gps.get(next_gps) {
                    gps_data(g, &mut data)?;
                    emit(w, &mut block, 1, 40, &data)?;
                }
                next_gps += 1;
            }
            Some((_, Some(i))) => {
                let s = &spec.streams[i];
                let k = next_sweep[i];
                fill_sweep(spec.seed, s, k, &mut levels);
                sweep_data(spec.format, s, k, &levels, &mut packed, &mut data)?;
                emit(w, &mut block, s.thread_id, s.block_type(spec.format), &data)?;
                next_sweep[i] += 1;
            }
        }
    }
    total_header += written;
    Ok(total_header)
}

/// Generates the file described by `spec` in memory.
pub fn generate(spec: &FileSpec) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    write(spec, &mut out)?;
    Ok(out)
}

/// A small v5 file with two dBm/dBμV/m threads, one compressed and one occupancy stream.
pub fn small_v5(seed: u64) -> FileSpec {
    let mut t20 = StreamSpec::new(20, "PRD 2021 (Faixa principal 2 de 4).", 70.0, 110.0, 64);
    t20.unit = 1;
    t20.offset = 30;
    let mut t30 = StreamSpec::new(30, "Fractional start", 88.125, 108.0, 40);
    t30.start = default_start() + TimeDelta::nanoseconds(7_250_000);
    let mut t40 = StreamSpec::new(40, "Compressed @ -90 dBm", 470.0, 700.0, 300);
    t40.kind = StreamKind::Compressed;
    t40.offset = -20;
    t40.sweeps = 2;
    let mut t50 = StreamSpec::new(50, "Occupancy 15 min", 105.0, 140.0, 30);
    t50.kind = StreamKind::Occupancy;
    t50.sweeps = 1;
    FileSpec {
        format: Format::V5,
        hostname: "rfeye002292".to_owned(),
        unit_info: "Stationary".to_owned(),
        method: "SyntheticScript".to_owned(),
        file_number: 0,
        gps: vec![
            gps_fix(default_start(), 2, -12_971_594, -38_481_505, 143_700),
            gps_fix(default_start() + TimeDelta::seconds(60), 0, 0, 0, 0),
            gps_fix(default_start() + TimeDelta::seconds(61), 2, -12_971_588, -38_481_500, 143_900),
        ],
        streams: vec![
            StreamSpec::new(10, "PRD 2021 (Faixa principal 1 de 4).", 50.0, 90.0, 64),
            t20,
            t30,
            t40,
            t50,
        ],
        seed,
    }
}

/// A GPS fix at `time`.
pub fn gps_fix(
    time: NaiveDateTime,
    fix: u8,
    latitude_e6: i32,
    longitude_e6: i32,
    altitude_mm: i32,
) -> GpsFixSpec {
    GpsFixSpec {
        time,
        fix,
        satellites: if fix == 0 { 0 } else { 11 },
        latitude_e6,
        longitude_e6,
        altitude_mm,
        speed_e3: 11,
        heading_e2: 0,
    }
}

/// A realistic multi-thread v5 file of about `target_bytes` (never less than one sweep per
/// thread): four to six PRD-like threads with 4096..14848 points, 1 s sweeps starting at
/// different sub-second offsets (some below 100 ms), dBm and dBμV/m, and a GPS fix per minute.
pub fn realistic_v5(target_bytes: u64, seed: u64) -> FileSpec {
    const BANDS: [(f64, f64, &str); 6] = [
        (50.0, 90.0, "PRD 2021 (Faixa principal 1 de 4)."),
        (70.0, 110.0, "PRD 2021 (Faixa principal 2 de 4)."),
        (170.0, 220.0, "PRD 2021 (Faixa principal 3 de 4)."),
        (470.0, 700.0, "PRD 2021 (Faixa principal 4 de 4)."),
        (700.0, 960.0, "PMEC 2021 (Faixa 5 de 6)."),
        (1_399.999_999_999, 2_399.999_999_999, "PMEC 2021 (Faixa 6 de 6)."),
    ];
    const POINTS: [u32; 6] = [4096, 5888, 8192, 10240, 12288, 14848];
    let mut rng = Rng::new(seed);
    let threads = 4 + rng.below(3) as usize;
    let mut streams = Vec::with_capacity(threads);
    for (i, &(start, stop, desc)) in BANDS.iter().take(threads).enumerate() {
        let mut s = StreamSpec::new(10 * (i as u32 + 1), desc, start, stop, POINTS[rng.below(6) as usize]);
        s.unit = (i % 2) as u8;
        s.offset = if s.unit == 1 { 30 } else { -5 + rng.below(8) as i8 };
        // Sub-second start: half of the threads below 100 ms (rfpye quirk 8.1 territory).
        let nanos = if i % 2 == 0 { rng.below(100_000_000) } else { rng.below(1_000_000_000) };
        s.start = default_start() + TimeDelta::nanoseconds(nanos as i64);
        streams.push(s);
    }
    let per_round: u64 = streams
        .iter()
        .map(|s| {
            let d = (s.description.len() as u64 + 1).next_multiple_of(4);
            20 + 68 + d + u64::from(s.points).next_multiple_of(4)
        })
        .sum();
    let sweeps = (target_bytes / per_round.max(1)).max(1);
    let sweeps = u32::try_from(sweeps).unwrap_or(u32::MAX);
    for s in &mut streams {
        s.sweeps = sweeps;
    }
    let minutes = sweeps / 60 + 1;
    let gps = (0..minutes)
        .map(|m| {
            let jitter = |r: &mut Rng| r.below(20) as i32 - 10;
            gps_fix(
                default_start() + TimeDelta::seconds(60 * i64::from(m)),
                2,
                -12_971_590 + jitter(&mut rng),
                -38_481_500 + jitter(&mut rng),
                143_000 + jitter(&mut rng) * 100,
            )
        })
        .collect();
    FileSpec {
        format: Format::V5,
        hostname: "rfeye002292".to_owned(),
        unit_info: "Stationary".to_owned(),
        method: "ScriptRFeye2021_v.1".to_owned(),
        file_number: 0,
        gps,
        streams,
        seed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freq_pair_is_exact() {
        assert_eq!(freq_pair(88.125), (88, 125_000_000));
        assert_eq!(freq_pair(1_399.999_999_999), (1399, 999_999_999));
    }

    #[test]
    fn compress_escapes_and_runs() {
        let mut out = Vec::new();
        // threshold -90 with offset 0: byte b is below when b/2 - 127.5 < -90, i.e. b < 75.
        compress(&[0, 0, 0, 255, 254, 100, 1], -90, 0, &mut out);
        assert_eq!(out, vec![255, 3, 254, 255, 254, 254, 100, 255, 1]);
    }

    #[test]
    fn impossible_specs_are_refused_not_panicked() {
        let mut spec = small_v5(1);
        spec.hostname = "a-hostname-longer-than-16".to_owned();
        assert!(generate(&spec).is_err());
        let mut spec = small_v5(1);
        spec.streams[0].interval = TimeDelta::MAX;
        assert!(generate(&spec).is_err());
    }

    #[test]
    fn generation_is_deterministic() {
        let a = generate(&small_v5(7)).unwrap_or_default();
        let b = generate(&small_v5(7)).unwrap_or_default();
        assert!(!a.is_empty());
        assert_eq!(a, b);
        assert_eq!(a.len() % 4, 0);
    }
}
