//! The chunk codec: a Gorilla-style bit stream of [`Point`]s (delta-of-delta timestamps,
//! XOR-encoded floats), with one flag bit per point so the common single-valued point
//! (`count 1, sum = min = max`) costs one float instead of four.
//!
//! Written here rather than taken from a crate: the Gorilla crates on crates.io (`tsz` and its
//! forks) encode `(u64 seconds, f64)` pairs in time order only, while we need millisecond
//! timestamps that may repeat or go backwards (CloudWatch accepts out-of-order samples) and
//! four-float statistic sets; a generic bit-I/O crate would put an `io::Write` call on the
//! per-sample hot path for what is ~60 lines of shifting.
//!
//! Layout of an encoded chunk: `varint n` followed by the bit stream, most significant bit
//! first, zero-padded to a byte. Point 0 carries its timestamp in 64 raw bits and a kind bit;
//! every later point carries `dod = (t - t_prev) - (t_prev - t_prev_prev)` (the first delta is
//! taken against 0):
//!
//! | prefix | payload |
//! | --- | --- |
//! | `0` | dod = 0 |
//! | `10` | 7 bits, dod in [-63, 64] |
//! | `110` | 12 bits, dod in [-2047, 2048] |
//! | `1110` | 20 bits, dod in [-524287, 524288] |
//! | `11110` | 64 bits, anything else (wrapping arithmetic, so any i64 round-trips) |
//! | `11111` | the point's kind differs from the previous point's; a timestamp code follows |
//!
//! A point's kind is single-valued (one XOR-encoded value) or statistic set (count, sum, min,
//! max, each XOR-encoded against its own previous value). The kind flag is sent only when it
//! changes, as an escape in the timestamp code: a series of single values (almost all of them)
//! pays nothing for it, where a flag bit per point would cost ~15 % of a regular series' size.
//! A float is XOR-ed with the previous one of its stream: `0` equal; `10` + the meaningful bits
//! inside the previous leading/trailing-zero window; `11` + 5 bits of leading zeros + 6 bits of
//! length (64 as 0) + the meaningful bits.

use crate::Point;

/// A chunk whose bits do not decode (truncated or corrupted on disk).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt chunk: {0}")]
pub struct CorruptChunk(pub &'static str);

/// Appends bits, most significant first, to a byte vector.
#[derive(Debug, Clone, Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Pending bits not yet making a whole byte (fewer than 8, in the low bits).
    acc: u64,
    nbits: u32,
}

impl BitWriter {
    #[inline]
    fn write(&mut self, value: u64, n: u32) {
        debug_assert!(n <= 64);
        if n > 32 {
            self.write32(value >> 32, n - 32);
            self.write32(value & 0xffff_ffff, 32);
        } else {
            self.write32(value, n);
        }
    }

    /// Writes the low `n <= 32` bits of `value`; the accumulator never holds more than
    /// 7 + 32 bits, so it cannot overflow.
    #[inline]
    fn write32(&mut self, value: u64, n: u32) {
        if n == 0 {
            return;
        }
        let mask = (1u64 << n) - 1;
        self.acc = (self.acc << n) | (value & mask);
        self.nbits += n;
        while self.nbits >= 8 {
            self.nbits -= 8;
            self.bytes.push((self.acc >> self.nbits) as u8);
        }
        self.acc &= (1u64 << self.nbits) - 1;
    }

    #[inline]
    fn bit(&mut self, b: bool) {
        self.write32(b as u64, 1);
    }

    /// Number of bytes the stream takes once padded.
    fn padded_len(&self) -> usize {
        self.bytes.len() + usize::from(self.nbits > 0)
    }

    /// Appends the padded stream to `out` without disturbing the writer (a head chunk keeps
    /// growing after it is snapshotted).
    fn copy_padded(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.bytes);
        if self.nbits > 0 {
            out.push((self.acc << (8 - self.nbits)) as u8);
        }
    }
}

/// Reads bits, most significant first.
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    #[inline]
    fn read(&mut self, n: u32) -> Result<u64, CorruptChunk> {
        if n > 56 {
            let hi = self.read(n - 32)?;
            let lo = self.read(32)?;
            return Ok((hi << 32) | lo);
        }
        if n == 0 {
            return Ok(0);
        }
        if self.pos + n as usize > self.data.len() * 8 {
            return Err(CorruptChunk("bit stream ends early"));
        }
        let byte = self.pos / 8;
        let shift = (self.pos % 8) as u32;
        // Load up to 8 bytes big-endian; at most 7 + 56 = 63 bits are needed.
        let mut word = [0u8; 8];
        let avail = (self.data.len() - byte).min(8);
        word[..avail].copy_from_slice(&self.data[byte..byte + avail]);
        let word = u64::from_be_bytes(word) << shift;
        self.pos += n as usize;
        Ok(word >> (64 - n))
    }

    #[inline]
    fn bit(&mut self) -> Result<bool, CorruptChunk> {
        Ok(self.read(1)? == 1)
    }

    /// Counts leading one bits, up to `max` (the unary prefixes of the timestamp buckets).
    #[inline]
    fn ones(&mut self, max: u32) -> Result<u32, CorruptChunk> {
        let mut k = 0;
        while k < max && self.bit()? {
            k += 1;
        }
        Ok(k)
    }
}

/// The XOR stream of one float field.
#[derive(Debug, Clone, Copy, Default)]
struct XorState {
    prev: u64,
    /// Leading and trailing zeros of the current window; `lead > 64` means no window yet.
    lead: u32,
    trail: u32,
}

impl XorState {
    fn new() -> Self {
        XorState {
            prev: 0,
            lead: u32::MAX,
            trail: 0,
        }
    }

    #[inline]
    fn encode(&mut self, w: &mut BitWriter, value: f64) {
        let bits = value.to_bits();
        let x = bits ^ self.prev;
        self.prev = bits;
        if x == 0 {
            w.bit(false);
            return;
        }
        let lead = x.leading_zeros().min(31);
        let trail = x.trailing_zeros();
        if self.lead <= 64 && lead >= self.lead && trail >= self.trail {
            w.write32(0b10, 2);
            w.write(x >> self.trail, 64 - self.lead - self.trail);
        } else {
            let len = 64 - lead - trail;
            // 2 + 5 + 6 bits of header in one write.
            w.write32((0b11 << 11) | ((lead as u64) << 6) | (len as u64 & 63), 13);
            w.write(x >> trail, len);
            self.lead = lead;
            self.trail = trail;
        }
    }

    #[inline]
    fn decode(&mut self, r: &mut BitReader<'_>) -> Result<f64, CorruptChunk> {
        if r.bit()? {
            let x = if r.bit()? {
                let lead = r.read(5)? as u32;
                let len = match r.read(6)? as u32 {
                    0 => 64,
                    l => l,
                };
                if lead + len > 64 {
                    return Err(CorruptChunk("xor window out of range"));
                }
                self.lead = lead;
                self.trail = 64 - lead - len;
                r.read(len)? << self.trail
            } else {
                if self.lead > 64 {
                    return Err(CorruptChunk("xor window reused before set"));
                }
                r.read(64 - self.lead - self.trail)? << self.trail
            };
            self.prev ^= x;
        }
        Ok(f64::from_bits(self.prev))
    }
}

/// Whether a point is stored with one float: exactly `count 1, sum = min = max` (bitwise, so
/// `-0.0` and NaN payloads round-trip).
#[inline]
pub fn is_plain(p: &Point) -> bool {
    p.count.to_bits() == 1f64.to_bits()
        && p.sum.to_bits() == p.min.to_bits()
        && p.min.to_bits() == p.max.to_bits()
}

/// Encodes points one at a time; a head chunk is an encoder that is still growing.
#[derive(Debug, Clone)]
pub struct ChunkEncoder {
    w: BitWriter,
    n: u32,
    t_prev: i64,
    d_prev: i64,
    /// Kind of the previous point: statistic set (true) or single value.
    stats: bool,
    min_ts: i64,
    max_ts: i64,
    value: XorState,
    count: XorState,
    sum: XorState,
    min: XorState,
    max: XorState,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        ChunkEncoder {
            w: BitWriter::default(),
            n: 0,
            t_prev: 0,
            d_prev: 0,
            stats: false,
            min_ts: i64::MAX,
            max_ts: i64::MIN,
            value: XorState::new(),
            count: XorState::new(),
            sum: XorState::new(),
            min: XorState::new(),
            max: XorState::new(),
        }
    }
}

impl ChunkEncoder {
    pub fn new() -> Self {
        Self::default()
    }

    #[inline]
    pub fn push(&mut self, p: &Point) {
        let t = p.timestamp_ms;
        let stats = !is_plain(p);
        if self.n == 0 {
            self.w.write(t as u64, 64);
            self.w.bit(stats);
            self.d_prev = 0;
        } else {
            if stats != self.stats {
                self.w.write32(0b11111, 5);
            }
            let delta = t.wrapping_sub(self.t_prev);
            let dod = delta.wrapping_sub(self.d_prev);
            self.d_prev = delta;
            let w = &mut self.w;
            if dod == 0 {
                w.bit(false);
            } else if (-63..=64).contains(&dod) {
                w.write32((0b10 << 7) | (dod + 63) as u64, 9);
            } else if (-2047..=2048).contains(&dod) {
                w.write32((0b110 << 12) | (dod + 2047) as u64, 15);
            } else if (-524_287..=524_288).contains(&dod) {
                w.write32((0b1110 << 20) | (dod + 524_287) as u64, 24);
            } else {
                w.write32(0b11110, 5);
                w.write(dod as u64, 64);
            }
        }
        self.stats = stats;
        self.t_prev = t;
        self.min_ts = self.min_ts.min(t);
        self.max_ts = self.max_ts.max(t);
        if stats {
            self.count.encode(&mut self.w, p.count);
            self.sum.encode(&mut self.w, p.sum);
            self.min.encode(&mut self.w, p.min);
            self.max.encode(&mut self.w, p.max);
        } else {
            self.value.encode(&mut self.w, p.sum);
        }
        self.n += 1;
    }

    pub fn len(&self) -> u32 {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Smallest and largest timestamp pushed (`i64::MAX`, `i64::MIN` when empty).
    pub fn time_range(&self) -> (i64, i64) {
        (self.min_ts, self.max_ts)
    }

    /// Size of the encoded chunk so far, in bytes.
    pub fn encoded_len(&self) -> usize {
        varint_len(u64::from(self.n)) + self.w.padded_len()
    }

    /// The encoded chunk as it stands (the encoder can keep growing).
    pub fn encoded(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        put_varint(&mut out, u64::from(self.n));
        self.w.copy_padded(&mut out);
        out
    }

    /// An encoder holding the points of an encoded chunk, ready to take more (recovering a
    /// head chunk from its snapshot).
    pub fn resume(bytes: &[u8]) -> Result<ChunkEncoder, CorruptChunk> {
        let mut enc = ChunkEncoder::new();
        decode(bytes, |p| enc.push(&p))?;
        Ok(enc)
    }
}

/// Calls `f` with every point of an encoded chunk, in the order they were pushed.
pub fn decode(bytes: &[u8], mut f: impl FnMut(Point)) -> Result<(), CorruptChunk> {
    let (n, used) = get_varint(bytes).ok_or(CorruptChunk("bad point count"))?;
    let mut r = BitReader::new(&bytes[used..]);
    let (mut t, mut delta) = (0i64, 0i64);
    let mut value = XorState::new();
    let (mut count, mut sum, mut min, mut max) = (
        XorState::new(),
        XorState::new(),
        XorState::new(),
        XorState::new(),
    );
    let mut stats = false;
    for i in 0..n {
        if i == 0 {
            t = r.read(64)? as i64;
            stats = r.bit()?;
        } else {
            let mut code = r.ones(5)?;
            if code == 5 {
                stats = !stats;
                code = r.ones(5)?;
            }
            let dod = match code {
                0 => 0,
                1 => r.read(7)? as i64 - 63,
                2 => r.read(12)? as i64 - 2047,
                3 => r.read(20)? as i64 - 524_287,
                4 => r.read(64)? as i64,
                _ => return Err(CorruptChunk("repeated kind escape")),
            };
            delta = delta.wrapping_add(dod);
            t = t.wrapping_add(delta);
        }
        let point = if stats {
            Point {
                timestamp_ms: t,
                count: count.decode(&mut r)?,
                sum: sum.decode(&mut r)?,
                min: min.decode(&mut r)?,
                max: max.decode(&mut r)?,
            }
        } else {
            let v = value.decode(&mut r)?;
            Point {
                timestamp_ms: t,
                count: 1.0,
                sum: v,
                min: v,
                max: v,
            }
        };
        f(point);
    }
    Ok(())
}

/// Decodes a whole chunk into a vector.
pub fn decode_all(bytes: &[u8]) -> Result<Vec<Point>, CorruptChunk> {
    let mut out = Vec::new();
    decode(bytes, |p| out.push(p))?;
    Ok(out)
}

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `(value, bytes used)`, or `None` if truncated or longer than 10 bytes.
pub fn get_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(points: &[Point]) -> Vec<Point> {
        let mut enc = ChunkEncoder::new();
        for p in points {
            enc.push(p);
        }
        let bytes = enc.encoded();
        assert_eq!(bytes.len(), enc.encoded_len());
        decode_all(&bytes).expect("decodes")
    }

    fn same(a: &Point, b: &Point) -> bool {
        a.timestamp_ms == b.timestamp_ms
            && a.count.to_bits() == b.count.to_bits()
            && a.sum.to_bits() == b.sum.to_bits()
            && a.min.to_bits() == b.min.to_bits()
            && a.max.to_bits() == b.max.to_bits()
    }

    #[test]
    fn empty_chunk_round_trips() {
        assert!(round_trip(&[]).is_empty());
    }

    #[test]
    fn regular_series_is_compact() {
        // 1 s samples of a slowly moving integer gauge: ~2 bits of timestamp and flag plus a
        // few bits of value per sample.
        let points: Vec<Point> = (0..1000)
            .map(|i| Point::value(1_700_000_000_000 + i * 1000, (100 + (i / 10) % 7) as f64))
            .collect();
        let mut enc = ChunkEncoder::new();
        points.iter().for_each(|p| enc.push(p));
        assert!(enc.encoded_len() < 1000 / 2, "{} bytes", enc.encoded_len());
        let back = round_trip(&points);
        assert!(points.iter().zip(&back).all(|(a, b)| same(a, b)));
    }

    #[test]
    fn edge_values_round_trip() {
        let points = vec![
            Point::value(i64::MIN, -0.0),
            Point::value(i64::MAX, f64::MAX),
            Point::value(0, f64::MIN_POSITIVE),
            Point::value(0, -1.5),
            Point::value(-5, 1e300),
            Point {
                timestamp_ms: 7,
                count: 3.0,
                sum: 6.0,
                min: 1.0,
                max: 3.0,
            },
            Point {
                timestamp_ms: 7,
                count: 1.0,
                sum: 2.0,
                min: 2.0,
                max: 2.0,
            },
            Point {
                timestamp_ms: 9,
                count: 2.0,
                sum: 4.0,
                min: 2.0,
                max: 2.0,
            },
            Point::value(8, f64::NAN),
        ];
        let back = round_trip(&points);
        assert_eq!(back.len(), points.len());
        assert!(points.iter().zip(&back).all(|(a, b)| same(a, b)));
    }

    #[test]
    fn truncated_chunk_is_an_error_not_a_panic() {
        let mut enc = ChunkEncoder::new();
        for i in 0..50 {
            enc.push(&Point::value(i * 1000, i as f64 * 1.1));
        }
        let bytes = enc.encoded();
        for cut in 0..bytes.len() {
            let _ = decode_all(&bytes[..cut]);
        }
        assert!(decode_all(&bytes[..bytes.len() / 2]).is_err());
    }

    #[test]
    fn resume_continues_the_stream() {
        let points: Vec<Point> = (0..30)
            .map(|i| Point::value(i * 1000 - (i % 3) * 7, (i * i) as f64))
            .collect();
        let mut enc = ChunkEncoder::new();
        points[..10].iter().for_each(|p| enc.push(p));
        let mut resumed = ChunkEncoder::resume(&enc.encoded()).unwrap();
        points[10..].iter().for_each(|p| resumed.push(p));
        let back = decode_all(&resumed.encoded()).unwrap();
        assert!(points.iter().zip(&back).all(|(a, b)| same(a, b)));
        assert_eq!(resumed.time_range(), (0, 29_000 - 14));
    }

    #[test]
    fn varints_round_trip() {
        for v in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v));
            assert_eq!(get_varint(&out), Some((v, out.len())));
        }
    }

    fn finite() -> impl Strategy<Value = f64> {
        prop_oneof![
            // Slowly varying values on a grid, the common case.
            (-1000i32..1000).prop_map(|v| v as f64 * 0.5),
            // Anything finite, negative values included.
            any::<f64>().prop_filter("finite", |v| v.is_finite()),
        ]
    }

    fn point() -> impl Strategy<Value = Point> {
        let ts = prop_oneof![
            -10_000i64..10_000,
            1_600_000_000_000i64..1_800_000_000_000,
            any::<i64>(),
        ];
        (ts, finite(), finite(), finite(), 0u8..4).prop_map(|(t, a, b, c, kind)| match kind {
            0 | 1 => Point::value(t, a),
            2 => Point {
                timestamp_ms: t,
                count: (b.abs() % 100.0).floor() + 1.0,
                sum: a * 3.0,
                min: a,
                max: a,
            },
            _ => Point {
                timestamp_ms: t,
                count: 4.0,
                sum: a + b + c,
                min: a.min(b).min(c),
                max: a.max(b).max(c),
            },
        })
    }

    proptest! {
        /// Any sequence of points, timestamps in any order and repeated, round-trips bit for bit.
        #[test]
        fn points_round_trip(points in proptest::collection::vec(point(), 0..300)) {
            let back = round_trip(&points);
            prop_assert_eq!(back.len(), points.len());
            for (a, b) in points.iter().zip(&back) {
                prop_assert!(same(a, b), "{:?} != {:?}", a, b);
            }
        }

        /// Regular timestamps with jitter, equal and out-of-order steps.
        #[test]
        fn near_regular_round_trips(
            start in 1_600_000_000_000i64..1_800_000_000_000,
            steps in proptest::collection::vec(-3_000i64..3_000, 1..400),
            values in proptest::collection::vec(finite(), 400),
        ) {
            let mut t = start;
            let points: Vec<Point> = steps.iter().zip(&values).map(|(s, v)| {
                t += 1000 + s / 10 * 10;
                Point::value(if s % 7 == 0 { t - 60_000 } else { t }, *v)
            }).collect();
            let back = round_trip(&points);
            prop_assert_eq!(back.len(), points.len());
            for (a, b) in points.iter().zip(&back) {
                prop_assert!(same(a, b));
            }
        }
    }
}
