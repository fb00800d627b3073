//! Write-ahead-log records: what one `put` appends to the durable log before it returns.
//!
//! A record names the units and series it introduces (so replay can rebuild the index without
//! the tables a checkpoint writes) and then lists its points by series id, unit id and tier.
//! Timestamps are delta-encoded within the record, since a batch usually shares one timestamp.
//! Layout (varints are LEB128, `str` is `varint len` + UTF-8):
//!
//! ```text
//! record := varint n_units  (varint id, str name)*
//!           varint n_series (varint id, str namespace, str metric, varint n_dims (str, str)*)*
//!           varint n_points (varint series, varint unit, u8 flags, zigzag-varint dt, f64*)*
//! flags  := tier (2 bits) | 4 if a statistic set (4 floats follow, else 1)
//! ```

use crate::codec::{get_varint, is_plain, put_varint};
use crate::{MetricKey, Point};

/// One point as logged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoggedPoint {
    pub series: u32,
    pub unit: u32,
    pub tier: u8,
    pub point: Point,
}

/// A decoded record.
#[derive(Debug, Default, PartialEq)]
pub struct Record {
    pub units: Vec<(u32, String)>,
    pub series: Vec<(u32, MetricKey)>,
    pub points: Vec<LoggedPoint>,
}

/// Builds a record in place: definitions first, then points.
#[derive(Debug, Default)]
pub struct RecordWriter {
    n_units: usize,
    n_series: usize,
    units: Vec<u8>,
    series: Vec<u8>,
    points: Vec<u8>,
    n_points: usize,
    t_prev: i64,
}

impl RecordWriter {
    pub fn with_capacity(points: usize) -> Self {
        RecordWriter {
            points: Vec::with_capacity(points * 16),
            ..Default::default()
        }
    }

    pub fn unit(&mut self, id: u32, name: &str) {
        self.n_units += 1;
        put_varint(&mut self.units, u64::from(id));
        put_str(&mut self.units, name);
    }

    pub fn series(&mut self, id: u32, key: &MetricKey) {
        self.n_series += 1;
        put_varint(&mut self.series, u64::from(id));
        put_str(&mut self.series, &key.namespace);
        put_str(&mut self.series, &key.metric_name);
        put_varint(&mut self.series, key.dimensions.len() as u64);
        for (n, v) in &key.dimensions {
            put_str(&mut self.series, n);
            put_str(&mut self.series, v);
        }
    }

    #[inline]
    pub fn point(&mut self, series: u32, unit: u32, tier: u8, p: &Point) {
        self.n_points += 1;
        let out = &mut self.points;
        put_varint(out, u64::from(series));
        put_varint(out, u64::from(unit));
        let plain = is_plain(p);
        out.push(tier & 3 | if plain { 0 } else { 4 });
        let dt = p.timestamp_ms.wrapping_sub(self.t_prev);
        self.t_prev = p.timestamp_ms;
        put_varint(out, ((dt << 1) ^ (dt >> 63)) as u64);
        if plain {
            out.extend_from_slice(&p.sum.to_le_bytes());
        } else {
            for v in [p.count, p.sum, p.min, p.max] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }

    /// Appends the finished record to `out`.
    pub fn finish_into(&mut self, out: &mut Vec<u8>) {
        out.reserve(self.units.len() + self.series.len() + self.points.len() + 16);
        put_varint(out, self.n_units as u64);
        out.extend_from_slice(&self.units);
        put_varint(out, self.n_series as u64);
        out.extend_from_slice(&self.series);
        put_varint(out, self.n_points as u64);
        out.extend_from_slice(&self.points);
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// A malformed log record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt log record: {0}")]
pub struct CorruptRecord(pub &'static str);

struct Cursor<'a> {
    data: &'a [u8],
}

impl Cursor<'_> {
    fn varint(&mut self) -> Result<u64, CorruptRecord> {
        let (v, used) = get_varint(self.data).ok_or(CorruptRecord("bad varint"))?;
        self.data = &self.data[used..];
        Ok(v)
    }

    fn id(&mut self) -> Result<u32, CorruptRecord> {
        u32::try_from(self.varint()?).map_err(|_| CorruptRecord("id out of range"))
    }

    fn bytes(&mut self, n: usize) -> Result<&[u8], CorruptRecord> {
        if self.data.len() < n {
            return Err(CorruptRecord("truncated"));
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    fn string(&mut self) -> Result<String, CorruptRecord> {
        let n = usize::try_from(self.varint()?).map_err(|_| CorruptRecord("bad length"))?;
        String::from_utf8(self.bytes(n)?.to_vec()).map_err(|_| CorruptRecord("bad utf-8"))
    }

    fn f64(&mut self) -> Result<f64, CorruptRecord> {
        let b: [u8; 8] = self
            .bytes(8)?
            .try_into()
            .map_err(|_| CorruptRecord("f64"))?;
        Ok(f64::from_le_bytes(b))
    }
}

/// Decodes every record of a log row (a row holds the records of one group commit).
pub fn decode_row(data: &[u8]) -> Result<Vec<Record>, CorruptRecord> {
    let mut c = Cursor { data };
    let mut out = Vec::new();
    while !c.data.is_empty() {
        let mut rec = Record::default();
        for _ in 0..c.varint()? {
            let id = c.id()?;
            rec.units.push((id, c.string()?));
        }
        for _ in 0..c.varint()? {
            let id = c.id()?;
            let namespace = c.string()?;
            let metric_name = c.string()?;
            let n = c.varint()?;
            let mut dims = Vec::new();
            for _ in 0..n {
                dims.push((c.string()?, c.string()?));
            }
            rec.series
                .push((id, MetricKey::new(namespace, metric_name, dims)));
        }
        let mut t = 0i64;
        for _ in 0..c.varint()? {
            let series = c.id()?;
            let unit = c.id()?;
            let flags = c.bytes(1)?[0];
            let z = c.varint()?;
            t = t.wrapping_add(((z >> 1) as i64) ^ -((z & 1) as i64));
            let point = if flags & 4 == 0 {
                Point::value(t, c.f64()?)
            } else {
                Point {
                    timestamp_ms: t,
                    count: c.f64()?,
                    sum: c.f64()?,
                    min: c.f64()?,
                    max: c.f64()?,
                }
            };
            rec.points.push(LoggedPoint {
                series,
                unit,
                tier: flags & 3,
                point,
            });
        }
        out.push(rec);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let key = MetricKey::new(
            "AWS/ECS",
            "CPUUtilization",
            vec![("ClusterName".into(), "prod".into())],
        );
        let points = [
            Point::value(1_700_000_000_000, 12.5),
            Point::value(1_699_000_000_000, -0.0),
            Point {
                timestamp_ms: 1_700_000_060_000,
                count: 3.0,
                sum: 9.0,
                min: 1.0,
                max: 5.0,
            },
        ];
        let mut row = Vec::new();
        for round in 0..2u32 {
            let mut w = RecordWriter::with_capacity(4);
            w.unit(round, "Percent");
            w.series(7 + round, &key);
            for (i, p) in points.iter().enumerate() {
                w.point(7 + round, round, i as u8, p);
            }
            w.finish_into(&mut row);
        }
        let recs = decode_row(&row).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].units, vec![(1, "Percent".to_string())]);
        assert_eq!(recs[1].series, vec![(8, key.clone())]);
        let got: Vec<Point> = recs[0].points.iter().map(|p| p.point).collect();
        assert_eq!(got[0], points[0]);
        assert_eq!(got[1].sum.to_bits(), (-0.0f64).to_bits());
        assert_eq!(got[2], points[2]);
        assert_eq!(recs[0].points[2].tier, 2);
        assert!(decode_row(&row[..row.len() - 3]).is_err());
    }
}
