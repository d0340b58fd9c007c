//! Level decoding (only with `ParseOptions::decode_levels`): 8-bit levels, threshold
//! compression and occupancy percentages (crfs-bin-format.md §3.0).

/// Appends `points` plain levels: `byte/2 + OFFSET − 127.5` in the block's unit.
pub(crate) fn plain(bytes: &[u8], offset: i32, out: &mut Vec<f32>) {
    let base = offset as f32 - 127.5;
    out.extend(bytes.iter().map(|&b| f32::from(b) / 2.0 + base));
}

/// Appends occupancy percentages: `byte/2`.
pub(crate) fn occupancy(bytes: &[u8], out: &mut Vec<f32>) {
    out.extend(bytes.iter().map(|&b| f32::from(b) / 2.0));
}

/// Appends exactly `points` levels decoded from threshold-compressed bytes.
///
/// Every point starts at `THRESH − 1`; then `255, n` skips n points, `254, b` is a literal `b`
/// (so that 254 and 255 can be stored), and any other byte is a literal level byte. Returns
/// `false` if the data was inconsistent (overran `points`, or ended inside an escape); the
/// output still has exactly `points` values.
pub(crate) fn compressed(
    bytes: &[u8],
    points: usize,
    threshold: i32,
    offset: i32,
    out: &mut Vec<f32>,
) -> bool {
    let start = out.len();
    let below = (threshold - 1) as f32;
    out.resize(start + points, below);
    let dst = &mut out[start..];
    let base = offset as f32 - 127.5;
    let mut ok = true;
    let (mut i, mut j) = (0usize, 0usize);
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        match b {
            255 => {
                let Some(&n) = bytes.get(i) else {
                    ok = false;
                    break;
                };
                i += 1;
                j += usize::from(n);
            }
            _ => {
                let lit = if b == 254 {
                    let Some(&v) = bytes.get(i) else {
                        ok = false;
                        break;
                    };
                    i += 1;
                    v
                } else {
                    b
                };
                match dst.get_mut(j) {
                    Some(slot) => *slot = f32::from(lit) / 2.0 + base,
                    None => {
                        ok = false;
                        break;
                    }
                }
                j += 1;
            }
        }
    }
    ok && j <= points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_rules() {
        let mut out = Vec::new();
        // literal 200, run of 3, escaped 255, escaped 254, literal 0
        let ok = compressed(&[200, 255, 3, 254, 255, 254, 254, 0], 8, -90, 0, &mut out);
        assert!(ok);
        assert_eq!(out, vec![-27.5, -91.0, -91.0, -91.0, 0.0, -0.5, -127.5, -91.0]);
        let mut out = Vec::new();
        assert!(!compressed(&[1, 2, 3], 2, -90, 0, &mut out));
        assert_eq!(out.len(), 2);
        let mut out = Vec::new();
        assert!(!compressed(&[255], 2, -90, 0, &mut out));
    }
}
