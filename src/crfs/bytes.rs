//! Little-endian field readers, text helpers and the block checksum.
//!
//! Every reader takes a slice and an offset and returns `None` instead of panicking when the
//! field does not fit: CRFS files come from remote stations and may be damaged or truncated, so
//! no offset computed from file content is ever trusted.

/// Reads a `u8` at `off`.
#[inline]
pub(crate) fn u8_at(d: &[u8], off: usize) -> Option<u8> {
    d.get(off).copied()
}

/// Reads an `i8` at `off`.
#[inline]
pub(crate) fn i8_at(d: &[u8], off: usize) -> Option<i8> {
    d.get(off).map(|&b| i8::from_le_bytes([b]))
}

/// Reads a little-endian `u16` at `off`.
#[inline]
pub(crate) fn u16_at(d: &[u8], off: usize) -> Option<u16> {
    let s = d.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

/// Reads a little-endian `i16` at `off`.
#[inline]
pub(crate) fn i16_at(d: &[u8], off: usize) -> Option<i16> {
    u16_at(d, off).map(|v| i16::from_le_bytes(v.to_le_bytes()))
}

/// Reads a little-endian `u32` at `off`.
#[inline]
pub(crate) fn u32_at(d: &[u8], off: usize) -> Option<u32> {
    let s = d.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Reads a little-endian `i32` at `off`.
#[inline]
pub(crate) fn i32_at(d: &[u8], off: usize) -> Option<i32> {
    u32_at(d, off).map(|v| i32::from_le_bytes(v.to_le_bytes()))
}

/// Returns `len` bytes at `off`, or `None` when they are not all there.
#[inline]
pub(crate) fn slice_at(d: &[u8], off: usize, len: usize) -> Option<&[u8]> {
    d.get(off..off.checked_add(len)?)
}

/// Strips a fixed or length-prefixed text field at its first NUL (CRFS texts are NUL padded).
#[inline]
pub(crate) fn trim_nul(s: &[u8]) -> &[u8] {
    match s.iter().position(|&b| b == 0) {
        Some(end) => &s[..end],
        None => s,
    }
}

/// Decodes a NUL-trimmed text field as UTF-8, replacing invalid sequences (texts are ASCII or
/// UTF-8 in practice, e.g. `Máscara 20MHz-6Ghz`).
pub(crate) fn text(s: &[u8]) -> String {
    String::from_utf8_lossy(trim_nul(s)).into_owned()
}

/// Reads a `u32` length followed by that many text bytes at `off`; returns the text bytes
/// (untrimmed) and the offset just after them.
pub(crate) fn len_prefixed(d: &[u8], off: usize) -> Option<(&[u8], usize)> {
    let len = usize::try_from(u32_at(d, off)?).ok()?;
    let start = off.checked_add(4)?;
    let s = slice_at(d, start, len)?;
    Some((s, start + len))
}

/// The CRFS block checksum: the sum of the unsigned bytes, modulo 2^32.
///
/// This is the hot loop of metadata extraction (every byte of the file goes through it), so it
/// sums 8-byte words with SWAR: byte lanes are spread into 16-bit lanes and accumulated for up
/// to 128 words before they can overflow, then folded into the total.
pub(crate) fn byte_sum(bytes: &[u8]) -> u32 {
    const LOW: u64 = 0x00ff_00ff_00ff_00ff;
    let mut total: u64 = 0;
    let mut words = bytes.chunks_exact(8);
    // 128 words × 2 bytes × 255 = 65 280 per 16-bit lane: never overflows.
    let mut lanes: u64 = 0;
    let mut n = 0u32;
    for w in &mut words {
        let x = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        lanes += (x & LOW) + ((x >> 8) & LOW);
        n += 1;
        if n == 128 {
            total += fold16(lanes);
            lanes = 0;
            n = 0;
        }
    }
    total += fold16(lanes);
    for &b in words.remainder() {
        total += u64::from(b);
    }
    // Truncation to u32 is the checksum's definition (mod 2^32).
    (total & 0xffff_ffff) as u32
}

#[inline]
fn fold16(lanes: u64) -> u64 {
    (lanes & 0xffff) + ((lanes >> 16) & 0xffff) + ((lanes >> 32) & 0xffff) + (lanes >> 48)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sum_matches_naive_sum() {
        let mut v = Vec::new();
        let mut x: u32 = 12345;
        for len in [0usize, 1, 7, 8, 9, 1023, 1024, 1025, 5000, 70_000] {
            v.clear();
            for _ in 0..len {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                v.push((x >> 24) as u8);
            }
            let naive = v.iter().fold(0u32, |a, &b| a.wrapping_add(u32::from(b)));
            assert_eq!(byte_sum(&v), naive, "len {len}");
        }
        let all_ff = vec![0xffu8; 20_000];
        assert_eq!(byte_sum(&all_ff), 255 * 20_000);
    }

    #[test]
    fn readers_refuse_out_of_range() {
        let d = [1u8, 2, 3];
        assert_eq!(u16_at(&d, 1), Some(0x0302));
        assert_eq!(u16_at(&d, 2), None);
        assert_eq!(u32_at(&d, 0), None);
        assert_eq!(u32_at(&d, usize::MAX), None);
        assert_eq!(slice_at(&d, usize::MAX, 2), None);
        assert_eq!(trim_nul(b"ab\0\0"), b"ab");
    }
}
