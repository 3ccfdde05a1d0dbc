//! CRC-32 (IEEE, as `crc32fast` computes it) of any span of a byte slice
//! in constant time, after one pass over the slice.
//!
//! Recovery asks, at every byte after a damaged record, whether a frame
//! there is valid: a checksum over a payload that may run to the end of
//! the file. A client's event can hold a frame-like header every few
//! bytes, so checksumming each payload is quadratic. CRCs compose
//! instead: for `A‖B`, `crc(A‖B) = crc(A)·x^(8·|B|) ⊕ crc(B)` (mod the
//! CRC polynomial, zlib's `crc32_combine`), so with the CRC of every
//! prefix, the CRC of a span is the difference of two prefixes. Prefix
//! CRCs are kept every [`STRIDE`] bytes; a prefix between two is
//! finished by hashing fewer than `STRIDE` bytes.

/// The reflected CRC-32 polynomial.
const POLY: u32 = 0xedb8_8320;
/// Bytes between two kept prefix CRCs.
const STRIDE: usize = 64;

/// `a·b` modulo the polynomial (both reflected), from zlib.
fn multmodp(a: u32, mut b: u32) -> u32 {
    let mut m = 1u32 << 31;
    let mut p = 0u32;
    loop {
        if a & m != 0 {
            p ^= b;
            if a & (m - 1) == 0 {
                break;
            }
        }
        m >>= 1;
        if m == 0 {
            break;
        }
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
    }
    p
}

/// `x^(2^k)` modulo the polynomial, for k in 0..32.
fn powers() -> [u32; 32] {
    let mut table = [0u32; 32];
    let mut p = 1u32 << 30; // x^1
    for t in &mut table {
        *t = p;
        p = multmodp(p, p);
    }
    table
}

/// The operator that appends `bytes` zero bits' worth of shift:
/// `x^(8·bytes)` modulo the polynomial.
fn shift_op(table: &[u32; 32], bytes: u64) -> u32 {
    let mut p = 1u32 << 31; // x^0
    let mut n = bytes;
    let mut k = 3; // 8 bits per byte: x^(n·2^3)
    while n != 0 {
        if n & 1 != 0 {
            p = multmodp(table[k & 31], p);
        }
        n >>= 1;
        k += 1;
    }
    p
}

/// CRCs of the spans of one byte slice.
pub struct Spans<'a> {
    bytes: &'a [u8],
    /// `crc(bytes[..i·STRIDE])` for each i.
    prefixes: Vec<u32>,
    /// `x^(8·d)` for d in 0..STRIDE.
    short: [u32; STRIDE],
    table: [u32; 32],
}

impl<'a> Spans<'a> {
    /// One pass over `bytes`; keeps `4 / STRIDE` bytes per byte.
    pub fn new(bytes: &'a [u8]) -> Spans<'a> {
        let mut prefixes = Vec::with_capacity(bytes.len() / STRIDE + 1);
        let mut hasher = crc32fast::Hasher::new();
        prefixes.push(0);
        for chunk in bytes.chunks_exact(STRIDE) {
            hasher.update(chunk);
            prefixes.push(hasher.clone().finalize());
        }
        let table = powers();
        let short = std::array::from_fn(|d| shift_op(&table, d as u64));
        Spans {
            bytes,
            prefixes,
            short,
            table,
        }
    }

    /// `crc(bytes[..end])`.
    fn prefix(&self, end: usize) -> u32 {
        let kept = end / STRIDE;
        let start = kept * STRIDE;
        multmodp(self.short[end - start], self.prefixes[kept])
            ^ crc32fast::hash(&self.bytes[start..end])
    }

    /// `crc(head ‖ bytes[start..end])`, given `head_crc = crc(head)`.
    pub fn crc_after(&self, head_crc: u32, start: usize, end: usize) -> u32 {
        debug_assert!(start <= end && end <= self.bytes.len());
        let op = shift_op(&self.table, (end - start) as u64);
        let span = self.prefix(end) ^ multmodp(op, self.prefix(start));
        multmodp(op, head_crc) ^ span
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn spans_match_hashing_them(
            bytes in proptest::collection::vec(any::<u8>(), 0..700),
            head in proptest::collection::vec(any::<u8>(), 0..20),
            a in 0usize..700,
            b in 0usize..700,
        ) {
            let (start, end) = (a.min(b).min(bytes.len()), a.max(b).min(bytes.len()));
            let spans = Spans::new(&bytes);
            let mut whole = head.clone();
            whole.extend_from_slice(&bytes[start..end]);
            prop_assert_eq!(
                spans.crc_after(crc32fast::hash(&head), start, end),
                crc32fast::hash(&whole)
            );
        }
    }
}
