//! The CRFS file header and the block walk (framing, checksum, resynchronisation, truncation).
//!
//! Layout (see `shared/docs/crfs-bin-format.md` §1): a 36-byte header (`i32` version +
//! `char[32]` file string) followed by blocks framed as
//! `u32 THREAD | u32 DATA_LEN | i32 TYPE | DATA | u32 CHECKSUM | "UUUU"`.
//! Blocks are walked by their declared length; `UUUU` is only used to validate a block and as a
//! resynchronisation hint, because it also occurs inside spectral data.

use super::CrfsError;
use super::bytes::{byte_sum, i32_at, trim_nul, u32_at};

/// Size of the file header.
pub const HEADER_LEN: usize = 36;
/// Size of a block head (thread, length, type).
pub const BLOCK_HEAD_LEN: usize = 12;
/// Bytes of framing around DATA: head + checksum + end-of-block marker.
pub const BLOCK_OVERHEAD: usize = 20;
/// The end-of-block marker.
pub const EOB: [u8; 4] = *b"UUUU";

/// The decoded file header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub version: i32,
    pub string: String,
}

/// Reads and checks the 36-byte header.
pub(crate) fn parse_header(bytes: &[u8]) -> Result<Header, CrfsError> {
    if bytes.len() < HEADER_LEN {
        return Err(CrfsError::TooShort { len: bytes.len() });
    }
    let version = i32_at(bytes, 0).ok_or(CrfsError::TooShort { len: bytes.len() })?;
    let raw = trim_nul(&bytes[4..HEADER_LEN]);
    let string = String::from_utf8_lossy(raw).into_owned();
    if !raw.starts_with(b"CRFS") {
        return Err(CrfsError::NotCrfs { found: string });
    }
    if !(1..=255).contains(&version) {
        return Err(CrfsError::CorruptHeader { version, string });
    }
    Ok(Header { version, string })
}

/// One block whose framing and checksum are valid.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawBlock<'a> {
    pub thread_id: u32,
    pub block_type: i32,
    pub data: &'a [u8],
}

/// Damage found by the walk itself (before any block content is looked at).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct WalkStats {
    pub good_blocks: u64,
    pub bad_blocks: u64,
    pub checksum_failures: u64,
    pub framing_failures: u64,
    pub truncated_bytes: u64,
    pub trailing_bytes: u64,
    pub resyncs: u64,
    pub resync_skipped_bytes: u64,
    pub unrecovered_bytes: u64,
}

/// What is at a given position.
enum Probe {
    /// A complete block with valid framing and checksum; its total size.
    Good { total: usize },
    /// The end-of-block marker is where the length says, but the checksum differs.
    BadChecksum { total: usize },
    /// The marker is not where the length says.
    BadFraming,
    /// The declared length runs past the end of the file.
    PastEnd,
    /// Fewer than 12 bytes remain.
    ShortHead,
    /// Checking the checksum would exceed the resynchronisation work budget.
    OverBudget,
}

/// Checks what is at `pos`; checksum work is charged to `budget`.
#[inline]
fn probe(bytes: &[u8], pos: usize, budget: &mut u64) -> Probe {
    let rest = bytes.len().saturating_sub(pos);
    if rest < BLOCK_HEAD_LEN {
        return Probe::ShortHead;
    }
    let Some(dlen) = u32_at(bytes, pos + 4).and_then(|v| usize::try_from(v).ok()) else {
        return Probe::ShortHead;
    };
    let Some(total) = dlen.checked_add(BLOCK_OVERHEAD) else {
        return Probe::PastEnd;
    };
    if total > rest {
        return Probe::PastEnd;
    }
    let sum_end = pos + BLOCK_HEAD_LEN + dlen;
    if bytes[sum_end + 4..sum_end + 8] != EOB {
        return Probe::BadFraming;
    }
    let Some(stored) = u32_at(bytes, sum_end) else {
        return Probe::BadFraming;
    };
    let work = (sum_end - pos) as u64;
    if *budget < work {
        return Probe::OverBudget;
    }
    *budget -= work;
    if byte_sum(&bytes[pos..sum_end]) == stored {
        Probe::Good { total }
    } else {
        Probe::BadChecksum { total }
    }
}

/// Scans forward from `from` in 4-byte steps (blocks are 4-aligned) for the next position where
/// a complete block with a valid end marker and checksum starts, and returns it.
///
/// This finds the block that follows the next intact `UUUU` (what rfpye does) and also recovers
/// the block after one whose own marker is damaged. Checksums are only computed where the end
/// marker is at the declared place, so the scan is cheap; on crafted input where many
/// candidates have a marker, the checksum work of all scans together is bounded by `budget`
/// (a few times the file size), which keeps the walk linear.
fn resync(bytes: &[u8], from: usize, budget: &mut u64) -> Option<usize> {
    let mut p = from.checked_add(4)?;
    while p.checked_add(BLOCK_HEAD_LEN)? <= bytes.len() {
        match probe(bytes, p, budget) {
            Probe::Good { .. } => return Some(p),
            Probe::OverBudget => return None,
            _ => {}
        }
        p += 4;
    }
    None
}

/// Walks the blocks after the header and calls `on_block` for every valid one.
pub(crate) fn walk<'a>(bytes: &'a [u8], mut on_block: impl FnMut(RawBlock<'a>)) -> WalkStats {
    let mut st = WalkStats::default();
    let mut pos = HEADER_LEN.min(bytes.len());
    let len = bytes.len();
    // The main walk sums each byte at most once; resynchronisation scans share this budget.
    let mut unlimited = u64::MAX;
    let mut resync_budget = (len as u64).saturating_mul(4).saturating_add(1 << 20);
    while pos < len {
        match probe(bytes, pos, &mut unlimited) {
            Probe::Good { total } => {
                let data = &bytes[pos + BLOCK_HEAD_LEN..pos + total - 8];
                let thread_id = u32_at(bytes, pos).unwrap_or_default();
                let block_type = i32_at(bytes, pos + 8).unwrap_or_default();
                st.good_blocks += 1;
                on_block(RawBlock { thread_id, block_type, data });
                pos += total;
            }
            Probe::BadChecksum { total } => {
                // Framing intact: skip exactly this block.
                st.bad_blocks += 1;
                st.checksum_failures += 1;
                pos += total;
            }
            Probe::ShortHead | Probe::OverBudget => {
                st.trailing_bytes += (len - pos) as u64;
                break;
            }
            Probe::PastEnd => {
                // Either the last block was cut short, or its length field is corrupt.
                if let Some(q) = resync(bytes, pos, &mut resync_budget) {
                    st.bad_blocks += 1;
                    st.framing_failures += 1;
                    st.resyncs += 1;
                    st.resync_skipped_bytes += (q - pos) as u64;
                    pos = q;
                } else {
                    st.truncated_bytes += (len - pos) as u64;
                    break;
                }
            }
            Probe::BadFraming => {
                st.bad_blocks += 1;
                st.framing_failures += 1;
                if let Some(q) = resync(bytes, pos, &mut resync_budget) {
                    st.resyncs += 1;
                    st.resync_skipped_bytes += (q - pos) as u64;
                    pos = q;
                } else {
                    st.unrecovered_bytes += (len - pos) as u64;
                    break;
                }
            }
        }
    }
    st
}

/// Appends one framed block (head, data, checksum, `UUUU`) to `out`.
pub(crate) fn frame_block(out: &mut Vec<u8>, thread_id: u32, block_type: i32, data: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&thread_id.to_le_bytes());
    // Data built by the generator always fits: its lengths come from u32 fields.
    out.extend_from_slice(&(u32::try_from(data.len()).unwrap_or(u32::MAX)).to_le_bytes());
    out.extend_from_slice(&block_type.to_le_bytes());
    out.extend_from_slice(data);
    let sum = byte_sum(&out[start..]);
    out.extend_from_slice(&sum.to_le_bytes());
    out.extend_from_slice(&EOB);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(blocks: &[(u32, i32, Vec<u8>)]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&23i32.to_le_bytes());
        let mut s = [0u8; 32];
        s[..19].copy_from_slice(b"CRFS DATA FILE V023");
        f.extend_from_slice(&s);
        for (t, ty, d) in blocks {
            frame_block(&mut f, *t, *ty, d);
        }
        f
    }

    #[test]
    fn header_errors() {
        assert_eq!(parse_header(b"abc"), Err(CrfsError::TooShort { len: 3 }));
        let mut f = file_with(&[]);
        assert!(parse_header(&f).is_ok());
        f[4] = b'X';
        assert!(matches!(parse_header(&f), Err(CrfsError::NotCrfs { .. })));
        let mut f = file_with(&[]);
        f[0..4].copy_from_slice(&(-5i32).to_le_bytes());
        assert!(matches!(parse_header(&f), Err(CrfsError::CorruptHeader { .. })));
    }

    #[test]
    fn walk_bad_checksum_then_good_then_truncated() {
        let mut f = file_with(&[(1, 40, vec![1; 40]), (2, 42, vec![2; 16]), (3, 67, vec![3; 8])]);
        // Corrupt the data of the second block (checksum mismatch, framing intact).
        let second = HEADER_LEN + 60 + 12;
        f[second] ^= 0xff;
        // Cut the third block short.
        f.truncate(f.len() - 5);
        let mut seen = Vec::new();
        let st = walk(&f, |b| seen.push(b.block_type));
        assert_eq!(seen, vec![40]);
        assert_eq!(st.bad_blocks, 1);
        assert_eq!(st.truncated_bytes, 23);
    }

    #[test]
    fn crafted_resync_candidates_stay_linear() {
        // Every aligned word is a DATA_LEN pointing at the same far end marker with a wrong
        // checksum: without the work budget each resync candidate would sum ~n bytes (O(n²)).
        let n = 1 << 20;
        let mut f = file_with(&[]);
        let end = HEADER_LEN + n;
        while f.len() < end {
            let word_at = f.len();
            let dlen = (end + 4).saturating_sub(word_at + BLOCK_HEAD_LEN) as u32;
            f.extend_from_slice(&dlen.to_le_bytes());
        }
        f.extend_from_slice(&[0, 0, 0, 0]);
        f.extend_from_slice(&EOB);
        // The first block's length points nowhere useful: bad framing, so a resync starts.
        f[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&8u32.to_le_bytes());
        let started = std::time::Instant::now();
        let st = walk(&f, |_| {});
        assert_eq!(st.good_blocks, 0);
        assert_eq!(st.bad_blocks, 1);
        assert!(started.elapsed().as_secs() < 20, "resync work is bounded");
    }

    #[test]
    fn walk_resyncs_after_broken_marker() {
        let mut f = file_with(&[(1, 40, vec![1; 40]), (2, 42, vec![2; 16]), (3, 67, vec![3; 8])]);
        // Destroy the end marker of the first block.
        let eob = HEADER_LEN + 12 + 40 + 4;
        f[eob] = 0;
        let mut seen = Vec::new();
        let st = walk(&f, |b| seen.push(b.block_type));
        assert_eq!(seen, vec![42, 67]);
        assert_eq!(st.bad_blocks, 1);
        assert_eq!(st.resyncs, 1);
        assert_eq!(st.resync_skipped_bytes, 60);
    }
}
