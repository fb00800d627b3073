//! The storage engine: interned series, open head chunks in memory, a group-committed
//! write-ahead log, sealed chunks in SQLite, checkpoints, recovery, queries and compaction.
//!
//! Data model: a *series* is a [`MetricKey`]; a *lane* is one series' points of one unit in one
//! tier (see [`crate::tiers`]). Every lane has an open *head* chunk in memory that points are
//! appended to in arrival order (the codec accepts any timestamp order, so out-of-order puts
//! cost bits, not rewrites); a head that reaches [`SEAL_BYTES`] is sealed and queued for the
//! next checkpoint. Queries aggregate everything overlapping the range, so chunk order and
//! overlap never matter.
//!
//! Durability: `put` encodes its batch as a log record and queues it; whoever then holds the
//! writer lock commits every queued record in one SQLite transaction (one fsync for all
//! concurrent callers), applies them to the heads and answers everyone. A checkpoint writes the
//! sealed chunks, head snapshots and new dictionary rows and deletes the log rows in one
//! transaction; recovery loads those and replays the remaining log rows.
//!
//! Locks, always taken in this order: `writer` (the committer and its connection), `index`,
//! `epoch`, `mem`, a reader connection. `epoch` makes a query's view of memory and SQLite one
//! snapshot: a checkpoint or compaction commits and updates memory under `epoch.write()`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use rusqlite::{params, Connection, OptionalExtension};

use crate::codec::{self, ChunkEncoder};
use crate::db::{self, io, Location};
use crate::tiers::{self, TIERS};
use crate::wal::{self, RecordWriter};
use crate::{Bucket, DimensionFilter, MetricKey, MetricStoreError, Point, Sample};

/// A head chunk is sealed once its encoding reaches this size. Chosen so four sealed chunks and
/// their row headers fill an 8 KiB SQLite page (~3 % slack), the per-chunk row and index cost
/// (~50 bytes) stays under 3 %, and decoding one for a small query stays in the microseconds;
/// at ~0.5 byte per sample that is ~4,000 samples a chunk.
pub const SEAL_BYTES: usize = 1_950;
/// ... or this many points (a constant series costs ~2 bits a point).
pub const SEAL_POINTS: u32 = 8_192;
/// Checkpoint once this much log has accumulated (bounds replay time and the database's
/// temporary growth) ...
const CHECKPOINT_LOG_BYTES: usize = 16 << 20;
/// ... or this many bytes of sealed chunks wait in memory.
const CHECKPOINT_SEALED_BYTES: usize = 8 << 20;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}
fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

struct Series {
    key: MetricKey,
    /// Latest sample timestamp seen (`i64::MIN`: none yet), for `active_since_ms`.
    last_ts: AtomicI64,
    /// In the log or the tables, so records need not define it again.
    durable: AtomicBool,
    lanes: Vec<u32>,
}

struct Unit {
    name: String,
    durable: AtomicBool,
}

#[derive(Debug, Clone, Copy)]
struct Lane {
    series: u32,
    unit: u32,
    tier: u8,
}

/// Interned names. Ids are never reused while the store is open; after a crash, ids that
/// never became durable may be skipped, hence the `Option`s.
#[derive(Default)]
struct Index {
    by_key: HashMap<MetricKey, u32>,
    series: Vec<Option<Series>>,
    unit_ids: HashMap<String, u32>,
    units: Vec<Option<Unit>>,
    lanes: Vec<Lane>,
}

impl Index {
    #[inline]
    fn find(&self, key: &MetricKey, unit: &str, tier: u8) -> Option<(u32, u32, u32)> {
        let sid = *self.by_key.get(key)?;
        let series = self.series[sid as usize].as_ref()?;
        series.lanes.iter().find_map(|&l| {
            let lane = self.lanes[l as usize];
            let name = &self.units[lane.unit as usize].as_ref()?.name;
            (lane.tier == tier && name == unit).then_some((l, sid, lane.unit))
        })
    }

    fn add_series(&mut self, id: u32, key: MetricKey, last_ts: i64, durable: bool) {
        let i = id as usize;
        if self.series.len() <= i {
            self.series.resize_with(i + 1, || None);
        }
        self.by_key.insert(key.clone(), id);
        self.series[i] = Some(Series {
            key,
            last_ts: AtomicI64::new(last_ts),
            durable: AtomicBool::new(durable),
            lanes: Vec::new(),
        });
    }

    fn add_unit(&mut self, id: u32, name: String, durable: bool) {
        let i = id as usize;
        if self.units.len() <= i {
            self.units.resize_with(i + 1, || None);
        }
        self.unit_ids.insert(name.clone(), id);
        self.units[i] = Some(Unit {
            name,
            durable: AtomicBool::new(durable),
        });
    }

    fn add_lane(&mut self, id: u32, lane: Lane) {
        let i = id as usize;
        if self.lanes.len() <= i {
            // Placeholder lanes (never referenced) only arise from ids skipped by a crash.
            self.lanes.resize(
                i + 1,
                Lane {
                    series: u32::MAX,
                    unit: u32::MAX,
                    tier: u8::MAX,
                },
            );
        }
        self.lanes[i] = lane;
        if let Some(Some(s)) = self.series.get_mut(lane.series as usize) {
            s.lanes.push(id);
        }
    }

    fn series_id(&mut self, key: &MetricKey) -> u32 {
        if let Some(&id) = self.by_key.get(key) {
            return id;
        }
        let id = self.series.len() as u32;
        self.add_series(id, key.clone(), i64::MIN, false);
        id
    }

    fn unit_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.unit_ids.get(name) {
            return id;
        }
        let id = self.units.len() as u32;
        self.add_unit(id, name.to_string(), false);
        id
    }

    fn lane_id(&mut self, series: u32, unit: u32, tier: u8) -> u32 {
        if let Some(Some(s)) = self.series.get(series as usize) {
            for &l in &s.lanes {
                let lane = self.lanes[l as usize];
                if lane.unit == unit && lane.tier == tier {
                    return l;
                }
            }
        }
        let id = self.lanes.len() as u32;
        self.add_lane(id, Lane { series, unit, tier });
        id
    }

    fn series(&self, id: u32) -> &Series {
        self.series[id as usize]
            .as_ref()
            .expect("series ids in records and lanes are registered")
    }

    fn unit(&self, id: u32) -> &Unit {
        self.units[id as usize]
            .as_ref()
            .expect("unit ids in records and lanes are registered")
    }
}

/// How one batch's commit ended.
type Outcome = Arc<OnceLock<Result<(), MetricStoreError>>>;

/// A batch waiting for the committer.
struct Pending {
    /// Set by whichever caller commits the batch, before it releases the writer lock. Each
    /// batch has its own so that its caller learns the result however many other groups
    /// commit (or fail) before it gets the lock back; a shared log of recent failures could
    /// forget it and report a lost batch as stored.
    outcome: Outcome,
    record: Vec<u8>,
    /// `(lane, series, point)`.
    points: Vec<(u32, u32, Point)>,
    series_defs: Vec<u32>,
    unit_defs: Vec<u32>,
}

#[derive(Default)]
struct Queue {
    items: Vec<Pending>,
}

/// What only the committer touches.
struct Writer {
    conn: Connection,
    /// Group commits so far (each one transaction, one fsync).
    commits: u64,
    log_bytes: usize,
    persisted_series: Vec<bool>,
    persisted_units: Vec<bool>,
    persisted_lanes: Vec<bool>,
    /// Per lane, a lower bound of `min_ts` over its chunks in SQLite (`i64::MAX`: none), so
    /// compaction skips lanes with nothing to expire without asking SQLite.
    sealed_min: Vec<i64>,
}

fn set_flag(v: &mut Vec<bool>, i: u32) {
    let i = i as usize;
    if v.len() <= i {
        v.resize(i + 1, false);
    }
    v[i] = true;
}

fn flag(v: &[bool], i: usize) -> bool {
    v.get(i).copied().unwrap_or(false)
}

#[derive(Clone, Default)]
struct Head {
    enc: ChunkEncoder,
    /// Changed since the last checkpoint wrote its snapshot.
    dirty: bool,
}

/// A sealed chunk not yet written to SQLite (the log covers it until then).
#[derive(Clone)]
struct Sealed {
    lane: u32,
    min_ts: i64,
    max_ts: i64,
    data: Arc<[u8]>,
}

#[derive(Default)]
struct Mem {
    heads: Vec<Head>,
    sealed: Vec<Sealed>,
    sealed_bytes: usize,
    /// Series whose `last_ts` moved since the last checkpoint.
    dirty_series: Vec<u32>,
    dirty_series_flag: Vec<bool>,
}

impl Mem {
    fn head(&mut self, lane: u32) -> &mut Head {
        let i = lane as usize;
        if self.heads.len() <= i {
            self.heads.resize_with(i + 1, Head::default);
        }
        &mut self.heads[i]
    }

    #[inline]
    fn append(&mut self, lane: u32, p: &Point) {
        let head = self.head(lane);
        head.enc.push(p);
        head.dirty = true;
        if head.enc.encoded_len() >= SEAL_BYTES || head.enc.len() >= SEAL_POINTS {
            self.seal(lane);
        }
    }

    fn seal(&mut self, lane: u32) {
        let head = self.head(lane);
        if head.enc.is_empty() {
            return;
        }
        let enc = std::mem::take(&mut head.enc);
        head.dirty = true;
        let (min_ts, max_ts) = enc.time_range();
        let data: Arc<[u8]> = enc.encoded().into();
        self.sealed_bytes += data.len();
        self.sealed.push(Sealed {
            lane,
            min_ts,
            max_ts,
            data,
        });
    }

    fn touch_series(&mut self, sid: u32) {
        let i = sid as usize;
        if self.dirty_series_flag.len() <= i {
            self.dirty_series_flag.resize(i + 1, false);
        }
        if !self.dirty_series_flag[i] {
            self.dirty_series_flag[i] = true;
            self.dirty_series.push(sid);
        }
    }
}

pub struct Engine {
    location: Location,
    /// Whether puts go through the log (false for `in_memory`).
    logged: bool,
    index: RwLock<Index>,
    queue: Mutex<Queue>,
    writer: Mutex<Writer>,
    epoch: RwLock<()>,
    mem: Mutex<Mem>,
    readers: Vec<Mutex<Connection>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Engine {
    pub fn open(location: Location) -> Result<Engine, MetricStoreError> {
        let logged = matches!(location, Location::File(_));
        let conn = location.open_writer()?;
        let readers = (0..2)
            .map(|_| location.open_reader().map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        let mut writer = Writer {
            conn,
            commits: 0,
            log_bytes: 0,
            persisted_series: Vec::new(),
            persisted_units: Vec::new(),
            persisted_lanes: Vec::new(),
            sealed_min: Vec::new(),
        };
        let mut index = Index::default();
        let mut mem = Mem::default();
        load(&mut writer, &mut index, &mut mem).map_err(|e| io("load metrics", e))?;
        let engine = Engine {
            location,
            logged,
            index: RwLock::new(index),
            queue: Mutex::new(Queue::default()),
            writer: Mutex::new(writer),
            epoch: RwLock::new(()),
            mem: Mutex::new(mem),
            readers,
        };
        engine.replay()?;
        Ok(engine)
    }

    /// Re-applies the log rows left after the last checkpoint, then checkpoints so the log
    /// starts empty.
    fn replay(&self) -> Result<(), MetricStoreError> {
        let mut w = lock(&self.writer);
        let rows: Vec<Vec<u8>> = {
            let mut stmt = w
                .conn
                .prepare("SELECT data FROM wal ORDER BY seq")
                .map_err(|e| io("read metrics log", e))?;
            let rows = stmt
                .query_map([], |r| r.get(0))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<Vec<u8>>>>())
                .map_err(|e| io("read metrics log", e))?;
            rows
        };
        if rows.is_empty() {
            return Ok(());
        }
        let (mut records, mut points) = (0usize, 0usize);
        for row in &rows {
            w.log_bytes += row.len();
            let decoded = wal::decode_row(row).map_err(|e| io("replay metrics log", e))?;
            let mut idx = write(&self.index);
            let mut mem = lock(&self.mem);
            for rec in decoded {
                records += 1;
                for (id, name) in rec.units {
                    if !idx.unit_ids.contains_key(&name) {
                        idx.add_unit(id, name, true);
                    }
                }
                for (id, key) in rec.series {
                    if !idx.by_key.contains_key(&key) {
                        idx.add_series(id, key, i64::MIN, true);
                    }
                }
                for p in rec.points {
                    if idx
                        .series
                        .get(p.series as usize)
                        .is_none_or(|s| s.is_none())
                        || idx.units.get(p.unit as usize).is_none_or(|u| u.is_none())
                    {
                        return Err(io("replay metrics log", "point of an undefined series"));
                    }
                    let lane = idx.lane_id(p.series, p.unit, p.tier);
                    mem.append(lane, &p.point);
                    let s = idx.series(p.series);
                    if p.point.timestamp_ms > s.last_ts.load(Ordering::Relaxed) {
                        s.last_ts.store(p.point.timestamp_ms, Ordering::Relaxed);
                    }
                    mem.touch_series(p.series);
                    points += 1;
                }
            }
        }
        tracing::info!(rows = rows.len(), records, points, "replayed metrics log");
        self.checkpoint(&mut w, false)
    }

    /// Stores samples; returns once they are durable (in the log) and visible.
    pub fn put(&self, samples: Vec<Sample>) -> Result<(), MetricStoreError> {
        if samples.is_empty() {
            return Ok(());
        }
        let pending = self.prepare(&samples);
        // Free the callers' strings before waiting, not while holding the writer lock.
        drop(samples);
        self.commit(pending)
    }

    /// Interns every sample's series, unit and lane and encodes the batch's log record.
    fn prepare(&self, samples: &[Sample]) -> Pending {
        let mut rec = RecordWriter::with_capacity(if self.logged { samples.len() } else { 0 });
        let mut points = Vec::with_capacity(samples.len());
        let mut series_defs = Vec::new();
        let mut unit_defs = Vec::new();
        let mut missing = Vec::new();
        let mut emit = |idx: &Index, (lane, sid, uid): (u32, u32, u32), s: &Sample| {
            let tier = tiers::entry_tier(s.resolution);
            points.push((lane, sid, s.point));
            if self.logged {
                rec.point(sid, uid, tier, &s.point);
            }
            if !idx.series(sid).durable.load(Ordering::Relaxed) {
                series_defs.push(sid);
            }
            if !idx.unit(uid).durable.load(Ordering::Relaxed) {
                unit_defs.push(uid);
            }
        };
        {
            let idx = read(&self.index);
            for (i, s) in samples.iter().enumerate() {
                match idx.find(&s.key, &s.unit, tiers::entry_tier(s.resolution)) {
                    Some(ids) => emit(&idx, ids, s),
                    None => missing.push(i),
                }
            }
        }
        if !missing.is_empty() {
            {
                let mut idx = write(&self.index);
                for &i in &missing {
                    let s = &samples[i];
                    let sid = idx.series_id(&s.key);
                    let uid = idx.unit_id(&s.unit);
                    idx.lane_id(sid, uid, tiers::entry_tier(s.resolution));
                }
            }
            let idx = read(&self.index);
            for &i in &missing {
                let s = &samples[i];
                let ids = idx
                    .find(&s.key, &s.unit, tiers::entry_tier(s.resolution))
                    .expect("just interned");
                emit(&idx, ids, s);
            }
        }
        series_defs.sort_unstable();
        series_defs.dedup();
        unit_defs.sort_unstable();
        unit_defs.dedup();
        let mut record = Vec::new();
        if self.logged {
            let idx = read(&self.index);
            for &u in &unit_defs {
                rec.unit(u, &idx.unit(u).name);
            }
            for &s in &series_defs {
                rec.series(s, &idx.series(s).key);
            }
            rec.finish_into(&mut record);
        }
        Pending {
            outcome: Arc::new(OnceLock::new()),
            record,
            points,
            series_defs,
            unit_defs,
        }
    }

    /// Group commit: queue the batch, then either find it committed by another caller or
    /// commit everything queued.
    fn commit(&self, pending: Pending) -> Result<(), MetricStoreError> {
        let outcome = self.enqueue(pending);
        let mut w = lock(&self.writer);
        if outcome.get().is_none() {
            // Our batch is still queued: every drain happens under the writer lock and answers
            // each batch it took before releasing it.
            self.commit_queued(&mut w);
        }
        drop(w);
        match outcome.get() {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(e.clone()),
            // The caller that took our batch panicked before answering it: it may be in the
            // log (and come back at the next start) but was not made visible.
            None => Err(MetricStoreError::Io(
                "a metrics commit was interrupted; the batch may not have been stored".into(),
            )),
        }
    }

    /// Queues a batch for the next group commit; the result is its outcome slot.
    fn enqueue(&self, pending: Pending) -> Outcome {
        let outcome = pending.outcome.clone();
        lock(&self.queue).items.push(pending);
        outcome
    }

    /// Logs and applies every queued batch as one group and answers each of them. Called with
    /// the writer lock held.
    fn commit_queued(&self, w: &mut Writer) {
        let items = std::mem::take(&mut lock(&self.queue).items);
        if items.is_empty() {
            return;
        }
        let result = match self.log(w, &items) {
            Ok(bytes) => {
                w.log_bytes += bytes;
                w.commits += 1;
                self.apply(&items);
                if self.checkpoint_due(w) {
                    // The batches are durable in the log already; a failed checkpoint is
                    // retried by the next one.
                    if let Err(e) = self.checkpoint(w, false) {
                        tracing::warn!(error = %e, "metrics checkpoint failed");
                    }
                }
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, batches = items.len(), "metrics commit failed");
                Err(e)
            }
        };
        for item in &items {
            // Only this drain holds the batch, so the slot is empty.
            let _ = item.outcome.set(result.clone());
        }
    }

    /// Appends the group's records to the log in one transaction (one fsync).
    fn log(&self, w: &Writer, items: &[Pending]) -> Result<usize, MetricStoreError> {
        if !self.logged {
            return Ok(0);
        }
        let joined;
        let data: &[u8] = if items.len() == 1 {
            &items[0].record
        } else {
            joined = items
                .iter()
                .flat_map(|p| p.record.iter().copied())
                .collect::<Vec<u8>>();
            &joined
        };
        w.conn
            .prepare_cached("INSERT INTO wal (data) VALUES (?1)")
            .and_then(|mut stmt| stmt.execute([data]))
            .map_err(|e| io("append to metrics log", e))?;
        Ok(data.len())
    }

    /// Makes committed batches visible: definitions become durable, points go to the heads.
    fn apply(&self, items: &[Pending]) {
        let idx = read(&self.index);
        let mut mem = lock(&self.mem);
        for item in items {
            for &s in &item.series_defs {
                idx.series(s).durable.store(true, Ordering::Relaxed);
            }
            for &u in &item.unit_defs {
                idx.unit(u).durable.store(true, Ordering::Relaxed);
            }
            let mut last_sid = u32::MAX;
            for (lane, sid, p) in &item.points {
                mem.append(*lane, p);
                let s = idx.series(*sid);
                if p.timestamp_ms > s.last_ts.load(Ordering::Relaxed) {
                    s.last_ts.store(p.timestamp_ms, Ordering::Relaxed);
                }
                if *sid != last_sid {
                    mem.touch_series(*sid);
                    last_sid = *sid;
                }
            }
        }
    }

    fn checkpoint_due(&self, w: &Writer) -> bool {
        w.log_bytes >= CHECKPOINT_LOG_BYTES
            || lock(&self.mem).sealed_bytes >= CHECKPOINT_SEALED_BYTES
    }

    /// Seals every open head and checkpoints: everything lands in sealed chunks and the log
    /// is empty (shutdown, benchmarks).
    pub fn flush(&self) -> Result<(), MetricStoreError> {
        let mut w = lock(&self.writer);
        self.checkpoint(&mut w, true)
    }

    /// Writes sealed chunks, head snapshots and new dictionary rows and empties the log, in
    /// one transaction. Called with the writer lock held, so no batch is applied meanwhile and
    /// memory cannot change under it (queries only read).
    fn checkpoint(&self, w: &mut Writer, seal_all: bool) -> Result<(), MetricStoreError> {
        let idx = read(&self.index);
        let (sealed, heads, dirty_series) = {
            let mut mem = lock(&self.mem);
            if seal_all {
                for lane in 0..mem.heads.len() as u32 {
                    mem.seal(lane);
                }
            }
            let heads: Vec<(u32, Option<Vec<u8>>)> = if self.logged {
                mem.heads
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| h.dirty)
                    .map(|(l, h)| (l as u32, (!h.enc.is_empty()).then(|| h.enc.encoded())))
                    .collect()
            } else {
                Vec::new()
            };
            let dirty: Vec<(u32, i64)> = mem
                .dirty_series
                .iter()
                .map(|&s| (s, idx.series(s).last_ts.load(Ordering::Relaxed)))
                .collect();
            (mem.sealed.clone(), heads, dirty)
        };
        let new_units: Vec<u32> = (0..idx.units.len() as u32)
            .filter(|&u| !flag(&w.persisted_units, u as usize))
            .filter(|&u| {
                idx.units[u as usize]
                    .as_ref()
                    .is_some_and(|u| u.durable.load(Ordering::Relaxed))
            })
            .collect();
        let new_series: Vec<u32> = (0..idx.series.len() as u32)
            .filter(|&s| !flag(&w.persisted_series, s as usize))
            .filter(|&s| {
                idx.series[s as usize]
                    .as_ref()
                    .is_some_and(|s| s.durable.load(Ordering::Relaxed))
            })
            .collect();
        let new_lanes: Vec<u32> = (0..idx.lanes.len() as u32)
            .filter(|&l| !flag(&w.persisted_lanes, l as usize))
            .filter(|&l| {
                let lane = idx.lanes[l as usize];
                idx.series
                    .get(lane.series as usize)
                    .and_then(|s| s.as_ref())
                    .is_some_and(|s| s.durable.load(Ordering::Relaxed))
            })
            .collect();

        let tx = w
            .conn
            .unchecked_transaction()
            .map_err(|e| io("begin metrics checkpoint", e))?;
        let run = || -> rusqlite::Result<()> {
            let mut st =
                tx.prepare_cached("INSERT OR IGNORE INTO units (id, name) VALUES (?1, ?2)")?;
            for &u in &new_units {
                st.execute(params![u, idx.unit(u).name])?;
            }
            let mut st = tx.prepare_cached(
                "INSERT OR IGNORE INTO series (id, namespace, metric_name, dims, last_ts)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for &s in &new_series {
                let series = idx.series(s);
                st.execute(params![
                    s,
                    series.key.namespace,
                    series.key.metric_name,
                    db::encode_dims(&series.key.dimensions),
                    series.last_ts.load(Ordering::Relaxed)
                ])?;
            }
            let mut st =
                tx.prepare_cached("UPDATE series SET last_ts = max(last_ts, ?2) WHERE id = ?1")?;
            for &(s, ts) in &dirty_series {
                st.execute(params![s, ts])?;
            }
            let mut st = tx.prepare_cached(
                "INSERT OR IGNORE INTO lanes (id, series, unit, tier) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for &l in &new_lanes {
                let lane = idx.lanes[l as usize];
                st.execute(params![l, lane.series, lane.unit, lane.tier])?;
            }
            let mut st = tx.prepare_cached(
                "INSERT INTO chunks (lane, min_ts, max_ts, data) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for c in &sealed {
                st.execute(params![c.lane, c.min_ts, c.max_ts, &c.data[..]])?;
            }
            write_heads(&tx, &heads)?;
            tx.execute("DELETE FROM wal", [])?;
            Ok(())
        };
        run().map_err(|e| io("write metrics checkpoint", e))?;
        {
            let _epoch = write(&self.epoch);
            tx.commit()
                .map_err(|e| io("commit metrics checkpoint", e))?;
            let mut mem = lock(&self.mem);
            mem.sealed.drain(..sealed.len());
            mem.sealed_bytes = mem.sealed.iter().map(|c| c.data.len()).sum();
            for (l, _) in &heads {
                mem.heads[*l as usize].dirty = false;
            }
            if !self.logged {
                for h in &mut mem.heads {
                    h.dirty = false;
                }
            }
            for &(s, _) in &dirty_series {
                mem.dirty_series_flag[s as usize] = false;
            }
            mem.dirty_series.clear();
        }
        for &u in &new_units {
            set_flag(&mut w.persisted_units, u);
        }
        for &s in &new_series {
            set_flag(&mut w.persisted_series, s);
        }
        for &l in &new_lanes {
            set_flag(&mut w.persisted_lanes, l);
        }
        for c in &sealed {
            lower_sealed_min(w, c.lane, c.min_ts);
        }
        w.log_bytes = 0;
        tracing::debug!(
            chunks = sealed.len(),
            heads = heads.len(),
            series = new_series.len(),
            "metrics checkpoint"
        );
        Ok(())
    }

    pub fn list_metrics(
        &self,
        namespace: Option<&str>,
        metric_name: Option<&str>,
        dimensions: &[DimensionFilter],
        active_since_ms: Option<i64>,
    ) -> Vec<MetricKey> {
        let idx = read(&self.index);
        let mut out: Vec<MetricKey> = idx
            .series
            .iter()
            .flatten()
            .filter(|s| {
                let last = s.last_ts.load(Ordering::Relaxed);
                // A series interned by a put that has not committed yet has no data.
                last != i64::MIN && active_since_ms.is_none_or(|t| last >= t)
            })
            .map(|s| &s.key)
            .filter(|key| namespace.is_none_or(|n| key.namespace == n))
            .filter(|key| metric_name.is_none_or(|n| key.metric_name == n))
            .filter(|key| {
                dimensions.iter().all(|f| {
                    key.dimensions
                        .iter()
                        .any(|(n, v)| *n == f.name && f.value.as_ref().is_none_or(|fv| fv == v))
                })
            })
            .cloned()
            .collect();
        out.sort();
        out
    }

    pub fn query(
        &self,
        key: &MetricKey,
        start_ms: i64,
        end_ms: i64,
        period_seconds: i64,
        unit: Option<&str>,
    ) -> Result<Vec<Bucket>, MetricStoreError> {
        // (lane, index into `units`)
        let mut lanes: Vec<(u32, usize)> = Vec::new();
        let mut units: Vec<String> = Vec::new();
        {
            let idx = read(&self.index);
            let Some(series) = idx
                .by_key
                .get(key)
                .and_then(|&s| idx.series[s as usize].as_ref())
            else {
                return Ok(Vec::new());
            };
            for &l in &series.lanes {
                let name = &idx.unit(idx.lanes[l as usize].unit).name;
                if unit.is_some_and(|u| u != name) {
                    continue;
                }
                let i = match units.iter().position(|u| u == name) {
                    Some(i) => i,
                    None => {
                        units.push(name.clone());
                        units.len() - 1
                    }
                };
                lanes.push((l, i));
            }
        }
        if lanes.is_empty() || start_ms >= end_ms {
            return Ok(Vec::new());
        }
        let mut acc = Aggregator::new(start_ms, end_ms, period_seconds.max(1).saturating_mul(1000));
        let corrupt = |e: codec::CorruptChunk| io("read metric chunk", e);
        {
            let _epoch = read(&self.epoch);
            let mut in_memory: Vec<(usize, Arc<[u8]>)> = Vec::new();
            {
                let mem = lock(&self.mem);
                for &(l, u) in &lanes {
                    if let Some(h) = mem.heads.get(l as usize) {
                        let (lo, hi) = h.enc.time_range();
                        if !h.enc.is_empty() && hi >= start_ms && lo < end_ms {
                            in_memory.push((u, h.enc.encoded().into()));
                        }
                    }
                }
                for c in &mem.sealed {
                    if c.max_ts >= start_ms && c.min_ts < end_ms {
                        if let Some(&(_, u)) = lanes.iter().find(|(l, _)| *l == c.lane) {
                            in_memory.push((u, c.data.clone()));
                        }
                    }
                }
            }
            for (u, data) in &in_memory {
                codec::decode(data, |p| acc.add(&p, *u)).map_err(corrupt)?;
            }
            let conn = self.reader();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT data FROM chunks WHERE lane = ?1 AND max_ts >= ?2 AND min_ts < ?3",
                )
                .map_err(|e| io("query metric chunks", e))?;
            for &(l, u) in &lanes {
                let mut rows = stmt
                    .query(params![l, start_ms, end_ms])
                    .map_err(|e| io("query metric chunks", e))?;
                while let Some(row) = rows.next().map_err(|e| io("query metric chunks", e))? {
                    let data = row
                        .get_ref(0)
                        .map_err(|e| io("query metric chunks", e))?
                        .as_blob()
                        .map_err(|e| io("query metric chunks", e))?;
                    codec::decode(data, |p| acc.add(&p, u)).map_err(corrupt)?;
                }
            }
        }
        Ok(acc.finish(&units))
    }

    /// A reader connection, preferring an idle one.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        for r in &self.readers {
            if let Ok(g) = r.try_lock() {
                return g;
            }
        }
        lock(&self.readers[0])
    }

    /// Retention and roll-up as of `now_ms`, tier by tier so one call cascades: points of a
    /// tier older than its cutoff are folded into statistic sets of the next tier's period
    /// (appended to that lane's head) or, from the last tier, dropped. Chunks straddling the
    /// cutoff are split. One transaction; heads are updated when it commits.
    pub fn compact(&self, now_ms: i64) -> Result<(), MetricStoreError> {
        let mut w = lock(&self.writer);
        self.checkpoint(&mut w, false)?;
        let tx = w
            .conn
            .unchecked_transaction()
            .map_err(|e| io("begin metrics compaction", e))?;
        // Heads compaction changed (working copies, swapped in when it commits) and lower
        // bounds of chunk `min_ts` changed by it, over `w.sealed_min`.
        let mut work: BTreeMap<u32, ChunkEncoder> = BTreeMap::new();
        let mut mins: HashMap<u32, i64> = HashMap::new();
        let head_of = |work: &BTreeMap<u32, ChunkEncoder>, l: u32| -> ChunkEncoder {
            match work.get(&l) {
                Some(enc) => enc.clone(),
                None => lock(&self.mem)
                    .heads
                    .get(l as usize)
                    .map(|h| h.enc.clone())
                    .unwrap_or_default(),
            }
        };
        let (mut rolled_points, mut dropped_points) = (0usize, 0usize);
        let sqlerr = |e: rusqlite::Error| io("metrics compaction", e);
        for (tier, spec) in TIERS.iter().enumerate() {
            let cutoff = tiers::cutoff(tier, now_ms);
            let lanes: Vec<(u32, Lane)> = read(&self.index)
                .lanes
                .iter()
                .enumerate()
                .filter(|(_, l)| usize::from(l.tier) == tier)
                .map(|(i, l)| (i as u32, *l))
                .collect();
            let mut rollups: HashMap<(u32, u32), BTreeMap<i64, Point>> = HashMap::new();
            for (l, lane) in lanes {
                // A head holding expired points is sealed first, so the split below sees it.
                let head_min = match work.get(&l) {
                    Some(enc) => (!enc.is_empty()).then(|| enc.time_range().0),
                    None => lock(&self.mem)
                        .heads
                        .get(l as usize)
                        .filter(|h| !h.enc.is_empty())
                        .map(|h| h.enc.time_range().0),
                };
                let mut lane_min = mins
                    .get(&l)
                    .copied()
                    .unwrap_or_else(|| w.sealed_min.get(l as usize).copied().unwrap_or(i64::MAX));
                if let Some(head_min) = head_min.filter(|m| *m < cutoff) {
                    insert_chunk(&tx, l, &head_of(&work, l)).map_err(sqlerr)?;
                    work.insert(l, ChunkEncoder::new());
                    lane_min = lane_min.min(head_min);
                }
                if lane_min >= cutoff {
                    continue;
                }
                let rows: Vec<(i64, Vec<u8>)> = {
                    let mut st = tx
                        .prepare_cached(
                            "SELECT id, data FROM chunks WHERE lane = ?1 AND min_ts < ?2",
                        )
                        .map_err(sqlerr)?;
                    let rows = st
                        .query_map(params![l, cutoff], |r| Ok((r.get(0)?, r.get(1)?)))
                        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                        .map_err(sqlerr)?;
                    rows
                };
                for (id, data) in rows {
                    let points =
                        codec::decode_all(&data).map_err(|e| io("compact metric chunk", e))?;
                    tx.execute("DELETE FROM chunks WHERE id = ?1", [id])
                        .map_err(sqlerr)?;
                    let (old, keep): (Vec<Point>, Vec<Point>) =
                        points.into_iter().partition(|p| p.timestamp_ms < cutoff);
                    insert_points(&tx, l, &keep).map_err(sqlerr)?;
                    match spec.rolls_into_ms {
                        Some(period) => {
                            let buckets = rollups.entry((lane.series, lane.unit)).or_default();
                            for p in &old {
                                let start = p.timestamp_ms.div_euclid(period) * period;
                                buckets
                                    .entry(start)
                                    .and_modify(|acc| tiers::merge(acc, p))
                                    .or_insert(Point {
                                        timestamp_ms: start,
                                        ..*p
                                    });
                            }
                            rolled_points += old.len();
                        }
                        None => dropped_points += old.len(),
                    }
                }
                let min: Option<i64> = tx
                    .query_row("SELECT MIN(min_ts) FROM chunks WHERE lane = ?1", [l], |r| {
                        r.get(0)
                    })
                    .optional()
                    .map_err(sqlerr)?
                    .flatten();
                mins.insert(l, min.unwrap_or(i64::MAX));
            }
            // Roll-ups join the next tier's heads (in period order), sealing as usual.
            let mut targets: Vec<((u32, u32), BTreeMap<i64, Point>)> =
                rollups.into_iter().collect();
            targets.sort_by_key(|(k, _)| *k);
            for ((series, unit), buckets) in targets {
                let l = write(&self.index).lane_id(series, unit, tier as u8 + 1);
                let mut head = head_of(&work, l);
                for p in buckets.values() {
                    head.push(p);
                    if head.encoded_len() >= SEAL_BYTES || head.len() >= SEAL_POINTS {
                        insert_chunk(&tx, l, &head).map_err(sqlerr)?;
                        let min = mins.get(&l).copied().unwrap_or_else(|| {
                            w.sealed_min.get(l as usize).copied().unwrap_or(i64::MAX)
                        });
                        mins.insert(l, min.min(head.time_range().0));
                        head = ChunkEncoder::new();
                    }
                }
                work.insert(l, head);
            }
        }
        // Lanes created for roll-ups, and the changed heads.
        let new_lanes: Vec<(u32, Lane)> = {
            let idx = read(&self.index);
            (0..idx.lanes.len() as u32)
                .filter(|&l| !flag(&w.persisted_lanes, l as usize))
                .filter(|l| work.contains_key(l) || mins.contains_key(l))
                .map(|l| (l, idx.lanes[l as usize]))
                .collect()
        };
        let heads: Vec<(u32, Option<Vec<u8>>)> = if self.logged {
            work.iter()
                .map(|(l, enc)| (*l, (!enc.is_empty()).then(|| enc.encoded())))
                .collect()
        } else {
            Vec::new()
        };
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO lanes (id, series, unit, tier) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(sqlerr)?;
            for (l, lane) in &new_lanes {
                st.execute(params![l, lane.series, lane.unit, lane.tier])
                    .map_err(sqlerr)?;
            }
        }
        write_heads(&tx, &heads).map_err(sqlerr)?;
        {
            let _epoch = write(&self.epoch);
            tx.commit()
                .map_err(|e| io("commit metrics compaction", e))?;
            let mut mem = lock(&self.mem);
            for (l, enc) in work {
                let head = mem.head(l);
                head.enc = enc;
                head.dirty = false;
            }
        }
        for (l, _) in &new_lanes {
            set_flag(&mut w.persisted_lanes, *l);
        }
        for (l, min) in mins {
            let i = l as usize;
            if w.sealed_min.len() <= i {
                w.sealed_min.resize(i + 1, i64::MAX);
            }
            w.sealed_min[i] = min;
        }
        // Give freed pages (deleted log rows, rewritten chunks) back to the file system, then
        // fold SQLite's own log into the file and truncate it; failures here cost space only.
        // (Each step of incremental_vacuum frees one page, so it is stepped to the end.)
        let vacuum = || -> rusqlite::Result<()> {
            let mut st = w.conn.prepare("PRAGMA incremental_vacuum")?;
            let mut rows = st.query([])?;
            while rows.next()?.is_some() {}
            Ok(())
        };
        if let Err(e) = vacuum() {
            tracing::warn!(error = %e, "metrics database vacuum failed");
        }
        if self.logged {
            if let Err(e) = w.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
                tracing::warn!(error = %e, "metrics database checkpoint failed");
            }
        }
        tracing::debug!(rolled_points, dropped_points, "metrics compaction");
        Ok(())
    }
}

fn lower_sealed_min(w: &mut Writer, lane: u32, min_ts: i64) {
    let i = lane as usize;
    if w.sealed_min.len() <= i {
        w.sealed_min.resize(i + 1, i64::MAX);
    }
    w.sealed_min[i] = w.sealed_min[i].min(min_ts);
}

fn insert_chunk(conn: &Connection, lane: u32, enc: &ChunkEncoder) -> rusqlite::Result<()> {
    let (min_ts, max_ts) = enc.time_range();
    conn.prepare_cached("INSERT INTO chunks (lane, min_ts, max_ts, data) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![lane, min_ts, max_ts, enc.encoded()])?;
    Ok(())
}

/// Writes `points` as sealed chunks of the usual size.
fn insert_points(conn: &Connection, lane: u32, points: &[Point]) -> rusqlite::Result<()> {
    let mut enc = ChunkEncoder::new();
    for p in points {
        enc.push(p);
        if enc.encoded_len() >= SEAL_BYTES || enc.len() >= SEAL_POINTS {
            insert_chunk(conn, lane, &enc)?;
            enc = ChunkEncoder::new();
        }
    }
    if !enc.is_empty() {
        insert_chunk(conn, lane, &enc)?;
    }
    Ok(())
}

fn write_heads(conn: &Connection, heads: &[(u32, Option<Vec<u8>>)]) -> rusqlite::Result<()> {
    let mut put =
        conn.prepare_cached("INSERT OR REPLACE INTO heads (lane, data) VALUES (?1, ?2)")?;
    let mut del = conn.prepare_cached("DELETE FROM heads WHERE lane = ?1")?;
    for (l, data) in heads {
        match data {
            Some(d) => put.execute(params![l, d])?,
            None => del.execute([l])?,
        };
    }
    Ok(())
}

/// Loads dictionaries, chunk bounds and head snapshots from the tables.
fn load(w: &mut Writer, idx: &mut Index, mem: &mut Mem) -> Result<(), MetricStoreError> {
    let sql = |e: rusqlite::Error| io("load metrics", e);
    let conn = &w.conn;
    let mut st = conn.prepare("SELECT id, name FROM units").map_err(sql)?;
    let mut rows = st.query([]).map_err(sql)?;
    while let Some(r) = rows.next().map_err(sql)? {
        let id: u32 = r.get(0).map_err(sql)?;
        idx.add_unit(id, r.get(1).map_err(sql)?, true);
        set_flag(&mut w.persisted_units, id);
    }
    drop(rows);
    let mut st = conn
        .prepare("SELECT id, namespace, metric_name, dims, last_ts FROM series")
        .map_err(sql)?;
    let mut rows = st.query([]).map_err(sql)?;
    while let Some(r) = rows.next().map_err(sql)? {
        let id: u32 = r.get(0).map_err(sql)?;
        let dims: Vec<u8> = r.get(3).map_err(sql)?;
        let key = MetricKey::new(
            r.get::<_, String>(1).map_err(sql)?,
            r.get::<_, String>(2).map_err(sql)?,
            db::decode_dims(&dims)?,
        );
        idx.add_series(id, key, r.get(4).map_err(sql)?, true);
        set_flag(&mut w.persisted_series, id);
    }
    drop(rows);
    let mut st = conn
        .prepare("SELECT id, series, unit, tier FROM lanes")
        .map_err(sql)?;
    let mut rows = st.query([]).map_err(sql)?;
    while let Some(r) = rows.next().map_err(sql)? {
        let id: u32 = r.get(0).map_err(sql)?;
        let lane = Lane {
            series: r.get(1).map_err(sql)?,
            unit: r.get(2).map_err(sql)?,
            tier: r.get(3).map_err(sql)?,
        };
        if idx
            .series
            .get(lane.series as usize)
            .is_none_or(|s| s.is_none())
            || idx
                .units
                .get(lane.unit as usize)
                .is_none_or(|u| u.is_none())
            || usize::from(lane.tier) >= TIERS.len()
        {
            return Err(io("load metrics", format!("lane {id} refers to nothing")));
        }
        idx.add_lane(id, lane);
        set_flag(&mut w.persisted_lanes, id);
    }
    drop(rows);
    let mut st = conn
        .prepare("SELECT lane, MIN(min_ts) FROM chunks GROUP BY lane")
        .map_err(sql)?;
    let mut rows = st.query([]).map_err(sql)?;
    while let Some(r) = rows.next().map_err(sql)? {
        let lane: u32 = r.get(0).map_err(sql)?;
        let min: i64 = r.get(1).map_err(sql)?;
        let i = lane as usize;
        if w.sealed_min.len() <= i {
            w.sealed_min.resize(i + 1, i64::MAX);
        }
        w.sealed_min[i] = min;
    }
    drop(rows);
    let mut st = conn.prepare("SELECT lane, data FROM heads").map_err(sql)?;
    let mut rows = st.query([]).map_err(sql)?;
    while let Some(r) = rows.next().map_err(sql)? {
        let lane: u32 = r.get(0).map_err(sql)?;
        let data: Vec<u8> = r.get(1).map_err(sql)?;
        if lane as usize >= idx.lanes.len() {
            return Err(io("load metrics", format!("head of unknown lane {lane}")));
        }
        mem.head(lane).enc = ChunkEncoder::resume(&data).map_err(|e| io("load metric head", e))?;
    }
    Ok(())
}

/// Per-period aggregation for a query.
struct Aggregator {
    start_ms: i64,
    end_ms: i64,
    period_ms: i64,
    buckets: BTreeMap<i64, Acc>,
}

struct Acc {
    count: f64,
    sum: f64,
    min: f64,
    max: f64,
    /// Unit of the latest point in the period, and that point's timestamp.
    unit: usize,
    unit_ts: i64,
    values: Option<Vec<(f64, f64)>>,
}

impl Aggregator {
    fn new(start_ms: i64, end_ms: i64, period_ms: i64) -> Self {
        Aggregator {
            start_ms,
            end_ms,
            period_ms,
            buckets: BTreeMap::new(),
        }
    }

    #[inline]
    fn add(&mut self, p: &Point, unit: usize) {
        if p.timestamp_ms < self.start_ms || p.timestamp_ms >= self.end_ms {
            return;
        }
        let start = p.timestamp_ms.div_euclid(self.period_ms) * self.period_ms;
        let acc = self.buckets.entry(start).or_insert_with(|| Acc {
            count: 0.0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            unit,
            unit_ts: i64::MIN,
            values: Some(Vec::new()),
        });
        acc.count += p.count;
        acc.sum += p.sum;
        acc.min = acc.min.min(p.min);
        acc.max = acc.max.max(p.max);
        if p.timestamp_ms >= acc.unit_ts {
            acc.unit = unit;
            acc.unit_ts = p.timestamp_ms;
        }
        if p.is_single_valued() {
            if let Some(values) = acc.values.as_mut() {
                values.push((p.min, p.count));
            }
        } else {
            acc.values = None;
        }
    }

    fn finish(self, units: &[String]) -> Vec<Bucket> {
        self.buckets
            .into_iter()
            .map(|(timestamp_ms, acc)| Bucket {
                timestamp_ms,
                count: acc.count,
                sum: acc.sum,
                min: acc.min,
                max: acc.max,
                unit: units[acc.unit].clone(),
                values: acc.values.map(|mut v| {
                    v.sort_by(|a, b| a.0.total_cmp(&b.0));
                    v
                }),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Resolution;

    #[test]
    fn concurrent_puts_share_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Arc::new(Engine::open(Location::file_in(dir.path()).unwrap()).unwrap());
        // Hold the committer while four callers queue their batches.
        let w = lock(&engine.writer);
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let engine = engine.clone();
                std::thread::spawn(move || {
                    engine.put(vec![Sample {
                        key: MetricKey::new("N", format!("m{i}"), vec![]),
                        point: Point::value(1_000 * i, 1.0),
                        unit: "Count".into(),
                        resolution: Resolution::High,
                    }])
                })
            })
            .collect();
        while lock(&engine.queue).items.len() < 4 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let before = w.commits;
        drop(w);
        for t in threads {
            t.join().unwrap().unwrap();
        }
        assert_eq!(lock(&engine.writer).commits, before + 1);
        assert_eq!(engine.list_metrics(None, None, &[], None).len(), 4);
    }

    /// A caller whose group failed learns it even when many more groups fail before it gets
    /// the writer lock back (a bounded log of recent failures once forgot it: `put` then
    /// returned `Ok` for data neither logged nor applied).
    #[test]
    fn a_failed_commit_is_reported_however_many_groups_fail_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Arc::new(Engine::open(Location::file_in(dir.path()).unwrap()).unwrap());
        let sample = |i: i64| Sample {
            key: MetricKey::new("N", format!("m{i}"), vec![]),
            point: Point::value(1_000 * i, 1.0),
            unit: "Count".into(),
            resolution: Resolution::High,
        };
        let mut w = lock(&engine.writer);
        // Every commit fails from now on: the log's table is gone.
        w.conn.execute_batch("DROP TABLE wal").unwrap();
        let waiter = {
            let engine = engine.clone();
            std::thread::spawn(move || engine.put(vec![sample(0)]))
        };
        while lock(&engine.queue).items.is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // The waiter's group fails, then many others do, all before the waiter gets the lock.
        engine.commit_queued(&mut w);
        for i in 1..=200 {
            let outcome = engine.enqueue(engine.prepare(&[sample(i)]));
            engine.commit_queued(&mut w);
            assert!(matches!(outcome.get(), Some(Err(_))), "{outcome:?}");
        }
        drop(w);
        let result = waiter.join().unwrap();
        assert!(result.is_err(), "{result:?}");
        assert!(engine.list_metrics(None, None, &[], None).is_empty());
    }
}
