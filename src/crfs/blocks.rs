//! Decoders for the DATA part of each CRFS block type (crfs-bin-format.md §3).
//!
//! Each decoder reads a checksum-valid block's DATA slice and returns either the fields the
//! catalogue needs or a [`SkipReason`]. They borrow from the input (no copy of level data) so the
//! metadata walk does not allocate per spectral block.

use chrono::{NaiveDate, NaiveDateTime};

use super::bytes::{i8_at, i16_at, i32_at, len_prefixed, slice_at, text, trim_nul, u8_at, u16_at, u32_at};
use super::model::{GpsSample, SkipReason, StreamKind};

/// Largest number of points per sweep accepted (RFeye sweeps have at most ~15 000 points; this
/// bounds what a corrupt NORIG can make the level decoder allocate).
pub const MAX_POINTS_PER_SWEEP: u32 = 1 << 20;

/// Decodes a WALLDATE/WALLTIME/WALLNANO triple (12 bytes) at `off`.
pub(crate) fn wall_time(d: &[u8], off: usize) -> Option<NaiveDateTime> {
    let w = slice_at(d, off, 12)?;
    let nano = u32::from_le_bytes([w[8], w[9], w[10], w[11]]);
    date_time(&w[0..4], &w[4..8], nano)
}

/// `dd mm yy 0` + `hh mm ss 0` (+ nanoseconds) to a date-time; `None` when impossible.
pub(crate) fn date_time(date: &[u8], time: &[u8], nano: u32) -> Option<NaiveDateTime> {
    if nano >= 1_000_000_000 {
        return None;
    }
    let (day, month, yy) = (*date.first()?, *date.get(1)?, *date.get(2)?);
    let (h, m, s) = (*time.first()?, *time.get(1)?, *time.get(2)?);
    NaiveDate::from_ymd_opt(2000 + i32::from(yy), u32::from(month), u32::from(day))?.and_hms_nano_opt(
        u32::from(h),
        u32::from(m),
        u32::from(s),
        nano,
    )
}

/// Type 21 (and the v1 type 1 subset): unit and job information.
#[derive(Debug, Default)]
pub(crate) struct UnitInfo {
    pub hostname: String,
    pub unit_info: Option<String>,
    pub method: Option<String>,
    pub file_number: Option<u32>,
}

pub(crate) fn unit_info(d: &[u8], block_type: i32) -> Result<UnitInfo, SkipReason> {
    let host = slice_at(d, 0, 16).ok_or(SkipReason::Malformed)?;
    let mut out = UnitInfo { hostname: text(host), ..UnitInfo::default() };
    let (t1, next) = len_prefixed(d, 16).ok_or(SkipReason::Malformed)?;
    out.unit_info = Some(text(t1));
    if block_type == 21 {
        // A short type 21 that stops after TEXT1 still gives the hostname.
        if let Some((t2, next2)) = len_prefixed(d, next) {
            out.method = Some(text(t2));
            out.file_number = u32_at(d, next2);
        }
    }
    Ok(out)
}

/// Type 40: GPS.
pub(crate) fn gps(d: &[u8]) -> Result<GpsSample, SkipReason> {
    let m = SkipReason::Malformed;
    if d.len() < 40 {
        return Err(m);
    }
    let gps_time = date_time(&d[12..16], &d[16..20], 0);
    Ok(GpsSample {
        wall_time: wall_time(d, 0),
        gps_time,
        fix: u8_at(d, 20).ok_or(m)?,
        satellites: u8_at(d, 21).ok_or(m)?,
        heading_deg: f64::from(i16_at(d, 22).ok_or(m)?) / 100.0,
        latitude: f64::from(i32_at(d, 24).ok_or(m)?) / 1e6,
        longitude: f64::from(i32_at(d, 28).ok_or(m)?) / 1e6,
        speed_kmh: f64::from(i32_at(d, 32).ok_or(m)?) / 1000.0,
        altitude_m: f64::from(i32_at(d, 36).ok_or(m)?) / 1000.0,
    })
}

/// A decoded text block.
pub(crate) struct Text {
    pub time: Option<NaiveDateTime>,
    pub identifier: Option<String>,
    pub text: String,
}

/// Types 41 and 42 (timed free text), 5 and 22/3 (plain text), 23 (text with id), 24 (thread
/// description with group id).
pub(crate) fn text_block(d: &[u8], block_type: i32) -> Result<Text, SkipReason> {
    let m = SkipReason::Malformed;
    let (time, ident_off, text_off) = match block_type {
        41 => (wall_time(d, 0), Some(12), 44),
        42 => (wall_time(d, 0), Some(20), 52),
        23 => (None, Some(0), 32),
        24 => (None, None, 4),
        _ => (None, None, 0),
    };
    let identifier = match ident_off {
        Some(off) => Some(text(slice_at(d, off, 32).ok_or(m)?)),
        None => None,
    };
    let (body, _) = match len_prefixed(d, text_off) {
        Some(found) => found,
        // Some writers pad the text field less than declared: keep what is there.
        None => (d.get(text_off.saturating_add(4)..).ok_or(m)?, 0),
    };
    Ok(Text { time, identifier, text: text(body) })
}

/// The static and per-sweep fields of a spectral block (60..65, 67..69).
#[derive(Debug, Clone)]
pub(crate) struct Spectral<'a> {
    pub kind: StreamKind,
    pub time: Option<NaiveDateTime>,
    /// Inline description (67/68/69), NUL-trimmed raw bytes.
    pub description: Option<&'a [u8]>,
    /// Raw frequency fields, used as part of the stream key: (MEGA, MILLI) or (value, exp).
    pub start_raw: (i64, i64),
    pub stop_raw: (i64, i64),
    pub start_mhz: f64,
    pub stop_mhz: f64,
    pub rbw_hz: Option<i32>,
    /// DTYPE; `None` for v3 blocks, which carry no unit.
    pub unit: Option<u16>,
    pub processing: Option<u8>,
    pub antenna: u8,
    pub offset: i32,
    pub gerror: i8,
    pub threshold: Option<i32>,
    pub duration_s: Option<u32>,
    pub points: u32,
    /// Level bytes (NDATA), compressed bytes (NCDATA) or occupancy bytes.
    pub payload: &'a [u8],
}

/// Exact frequency in MHz from a v4/v5 MEGA + MILLI (millihertz) pair.
#[inline]
fn mhz(mega: u16, milli: i32) -> f64 {
    f64::from(mega) + f64::from(milli) / 1e9
}

/// Exact frequency in MHz from a v3 value × 10^exp Hz.
#[inline]
fn mhz_exp(value: u32, exp: i8) -> f64 {
    f64::from(value) * 10f64.powi(i32::from(exp)) / 1e6
}

#[inline]
fn payload(d: &[u8], tuning_off: usize, ntun: u16, nagc: u16, n: u32) -> Option<&[u8]> {
    let off = tuning_off.checked_add(4 * usize::from(ntun))?.checked_add(usize::from(nagc))?;
    slice_at(d, off, usize::try_from(n).ok()?)
}

/// Decodes a spectral block; `Err` says why it cannot be used.
pub(crate) fn spectral(d: &[u8], block_type: i32) -> Result<Spectral<'_>, SkipReason> {
    let s = spectral_fields(d, block_type).ok_or(SkipReason::Malformed)?;
    if s.points > MAX_POINTS_PER_SWEEP || !s.start_mhz.is_finite() || !s.stop_mhz.is_finite() {
        return Err(SkipReason::Malformed);
    }
    if s.gerror != -1 {
        return Err(SkipReason::Gerror);
    }
    if s.time.is_none() {
        return Err(SkipReason::BadTimestamp);
    }
    Ok(s)
}

fn spectral_fields(d: &[u8], block_type: i32) -> Option<Spectral<'_>> {
    let time = wall_time(d, 0);
    match block_type {
        67..=69 => {
            let dlen = usize::try_from(u32_at(d, 20)?).ok()?;
            let desc = trim_nul(slice_at(d, 24, dlen)?);
            let b = 24usize.checked_add(dlen)?;
            let (m0, f0) = (u16_at(d, b)?, i32_at(d, b + 2)?);
            let (m1, f1) = (u16_at(d, b + 6)?, i32_at(d, b + 8)?);
            let rbw = i32_at(d, b + 12)?;
            let mut s = Spectral {
                kind: StreamKind::Spectrum,
                time,
                description: Some(desc),
                start_raw: (i64::from(m0), i64::from(f0)),
                stop_raw: (i64::from(m1), i64::from(f1)),
                start_mhz: mhz(m0, f0),
                stop_mhz: mhz(m1, f1),
                rbw_hz: Some(rbw),
                unit: None,
                processing: None,
                antenna: 0,
                offset: 0,
                gerror: -1,
                threshold: None,
                duration_s: None,
                points: 0,
                payload: &[],
            };
            if block_type == 69 {
                s.kind = StreamKind::Occupancy;
                s.antenna = u8_at(d, b + 25)?;
                s.unit = Some(u16_at(d, b + 26)?);
                s.gerror = i8_at(d, b + 28)?;
                s.threshold = Some(i32::from(i16_at(d, b + 32)?));
                s.duration_s = Some(u32::from(u16_at(d, b + 34)?));
                s.points = u32_at(d, b + 36)?;
                s.payload = slice_at(d, b + 40, usize::try_from(s.points).ok()?)?;
                return Some(s);
            }
            s.antenna = u8_at(d, b + 28)?;
            s.processing = Some(u8_at(d, b + 29)?);
            s.unit = Some(u16::from(u8_at(d, b + 30)?));
            s.offset = i32::from(i8_at(d, b + 31)?);
            s.gerror = i8_at(d, b + 32)?;
            let ntun = u16_at(d, b + 35)?;
            let nagc = u16_at(d, b + 37)?;
            if block_type == 67 {
                s.points = u32_at(d, b + 40)?;
                s.payload = payload(d, b + 44, ntun, nagc, s.points)?;
            } else {
                s.kind = StreamKind::Compressed;
                let ncdata = u32_at(d, b + 40)?;
                s.threshold = Some(i32_at(d, b + 44)?);
                s.points = u32_at(d, b + 48)?;
                s.payload = payload(d, b + 52, ntun, nagc, ncdata)?;
            }
            Some(s)
        }
        63..=65 => {
            let (m0, f0) = (u16_at(d, 12)?, i32_at(d, 14)?);
            let (m1, f1) = (u16_at(d, 18)?, i32_at(d, 20)?);
            let mut s = Spectral {
                kind: StreamKind::Spectrum,
                time,
                description: None,
                start_raw: (i64::from(m0), i64::from(f0)),
                stop_raw: (i64::from(m1), i64::from(f1)),
                start_mhz: mhz(m0, f0),
                stop_mhz: mhz(m1, f1),
                rbw_hz: None,
                unit: None,
                processing: None,
                antenna: 0,
                offset: 0,
                gerror: -1,
                threshold: None,
                duration_s: None,
                points: 0,
                payload: &[],
            };
            if block_type == 65 {
                s.kind = StreamKind::Occupancy;
                s.antenna = u8_at(d, 32)?;
                s.unit = Some(u16_at(d, 34)?);
                s.gerror = i8_at(d, 36)?;
                s.threshold = Some(i32::from(i16_at(d, 40)?));
                s.duration_s = Some(u32::from(u16_at(d, 42)?));
                s.points = u32_at(d, 44)?;
                s.payload = slice_at(d, 48, usize::try_from(s.points).ok()?)?;
                return Some(s);
            }
            s.antenna = u8_at(d, 36)?;
            s.processing = Some(u8_at(d, 37)?);
            s.unit = Some(u16::from(u8_at(d, 38)?));
            s.offset = i32::from(i8_at(d, 39)?);
            s.gerror = i8_at(d, 40)?;
            let ntun = u16_at(d, 43)?;
            let nagc = u16_at(d, 45)?;
            if block_type == 63 {
                s.points = u32_at(d, 48)?;
                s.payload = payload(d, 52, ntun, nagc, s.points)?;
            } else {
                s.kind = StreamKind::Compressed;
                let ncdata = u32_at(d, 48)?;
                s.threshold = Some(i32_at(d, 52)?);
                s.points = u32_at(d, 56)?;
                s.payload = payload(d, 60, ntun, nagc, ncdata)?;
            }
            Some(s)
        }
        60..=62 => {
            let (v0, v1, exp) = (u32_at(d, 12)?, u32_at(d, 16)?, i8_at(d, 20)?);
            let mut s = Spectral {
                kind: StreamKind::Spectrum,
                time,
                description: None,
                start_raw: (i64::from(v0), i64::from(exp)),
                stop_raw: (i64::from(v1), i64::from(exp)),
                start_mhz: mhz_exp(v0, exp),
                stop_mhz: mhz_exp(v1, exp),
                rbw_hz: None,
                unit: None,
                processing: None,
                antenna: u8_at(d, 21)?,
                offset: 0,
                gerror: i8_at(d, 22)?,
                threshold: None,
                duration_s: None,
                points: 0,
                payload: &[],
            };
            if block_type == 62 {
                s.kind = StreamKind::Occupancy;
                s.threshold = Some(i32::from(i16_at(d, 26)?));
                s.duration_s = Some(u32_at(d, 32)?);
                s.points = u32_at(d, 40)?;
                s.payload = slice_at(d, 44, usize::try_from(s.points).ok()?)?;
                return Some(s);
            }
            s.processing = Some(u8_at(d, 26)?);
            s.offset = i32::from(i8_at(d, 28)?);
            let ntun = u16_at(d, 30)?;
            let nagc = u16_at(d, 32)?;
            if block_type == 60 {
                s.points = u32_at(d, 36)?;
                s.payload = payload(d, 40, ntun, nagc, s.points)?;
            } else {
                s.kind = StreamKind::Compressed;
                let ncdata = u32_at(d, 36)?;
                s.threshold = Some(i32_at(d, 40)?);
                s.points = u32_at(d, 44)?;
                s.payload = payload(d, 48, ntun, nagc, ncdata)?;
            }
            Some(s)
        }
        _ => None,
    }
}

/// The catalogue's unit string for a DTYPE code.
pub fn unit_name(code: Option<u16>) -> String {
    match code {
        // v3 blocks carry no unit; their levels are dBm.
        None | Some(0) => "dBm".to_owned(),
        Some(1) => "dB\u{3bc}V/m".to_owned(),
        Some(other) => format!("unknown unit {other}"),
    }
}

/// The catalogue's trace-type string (rfpye's words) for a PROC code, or `occupancy`.
pub fn processing_name(kind: StreamKind, code: Option<u8>) -> String {
    if kind == StreamKind::Occupancy {
        return "occupancy".to_owned();
    }
    match code {
        Some(0) | None => "single measurement".to_owned(),
        Some(1) => "average".to_owned(),
        Some(2) => "peak".to_owned(),
        Some(3) => "minimum".to_owned(),
        Some(other) => format!("unknown processing {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_small_sub_second_parts() {
        let mut d = [0u8; 12];
        d[0..3].copy_from_slice(&[11, 2, 21]);
        d[4..7].copy_from_slice(&[11, 19, 12]);
        d[8..12].copy_from_slice(&7_250_000u32.to_le_bytes());
        let t = wall_time(&d, 0).map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string());
        assert_eq!(t.as_deref(), Some("2021-02-11T11:19:12.007250"));
        d[1] = 13;
        assert_eq!(wall_time(&d, 0), None);
    }

    #[test]
    fn units_and_processing() {
        assert_eq!(unit_name(Some(1)), "dBμV/m");
        assert_eq!(processing_name(StreamKind::Spectrum, Some(2)), "peak");
        assert_eq!(processing_name(StreamKind::Occupancy, Some(2)), "occupancy");
    }

    #[test]
    fn spectral_rejects_short_blocks() {
        for t in [60, 61, 62, 63, 64, 65, 67, 68, 69] {
            assert!(spectral(&[0u8; 30], t).is_err());
        }
    }
}
