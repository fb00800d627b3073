//! From engine log entries to PutLogEvents batches, as pure steps so every limit is tested
//! exactly:
//!
//! - [`PositionTracker`] skips what a [`Checkpoint`] says was shipped and works out the
//!   checkpoint after any entry (a position in the engine's file, not a time: see there);
//! - [`LineAssembler`] joins the parts the engine splits long lines into (parts lack the
//!   trailing newline) and strips the newline; each line carries its position;
//! - [`split_line`] cuts lines into events of at most [`MAX_EVENT_BYTES`];
//! - [`Batch`] gathers events within [`MAX_BATCH_EVENTS`], [`MAX_BATCH_BYTES`] (26 bytes of
//!   overhead per event) and a span under 24 hours, and hands them out in chronological order.

use std::collections::VecDeque;

use super::checkpoint::Checkpoint;
use crate::runtime::{LogEntry, LogSource};

/// PutLogEvents: at most this many events per call.
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// PutLogEvents: at most this many bytes per call, counting [`EVENT_OVERHEAD_BYTES`] per event.
pub const MAX_BATCH_BYTES: usize = 1_048_576;
/// What CloudWatch Logs counts for every event on top of its message.
pub const EVENT_OVERHEAD_BYTES: usize = 26;
/// The largest message of one event (256 KiB with its overhead).
pub const MAX_EVENT_BYTES: usize = 262_144 - EVENT_OVERHEAD_BYTES;
/// The events of one call must span less than 24 hours.
pub const MAX_BATCH_SPAN_MILLIS: i64 = 24 * 60 * 60 * 1000;

/// How far an entry of one output stream may be stamped before an entry of the other that is
/// written ahead of it. The engine stamps each stream in its own goroutine and then waits for
/// the file's lock, so the gap is normally microseconds; a second leaves room for a stalled
/// disk or scheduler, and only costs re-reading (not re-sending) that much log on a resume.
pub const STAMP_SKEW_NANOS: i64 = 1_000_000_000;

const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// One CloudWatch Logs event (`InputLogEvent`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogEvent {
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    pub message: String,
}

impl LogEvent {
    fn size(&self) -> usize {
        self.message.len() + EVENT_OVERHEAD_BYTES
    }
}

/// Entries read in a row within one second of the engine's clock.
#[derive(Debug, Clone, Copy)]
struct Run {
    seconds: i64,
    /// The exact timestamp of its first entry.
    first_nanos: i64,
    entries: u64,
}

/// What [`PositionTracker::read`] makes of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// The checkpoint covers it.
    Shipped,
    New,
    /// New, and the log no longer starts with the entry the checkpoint counted from (the
    /// engine rotated its files away, or the file was replaced): nothing is skipped, as
    /// sending a few lines twice beats skipping some never sent.
    LogMoved,
}

/// Where one follow of the engine's log stands: skips the entries its [`Checkpoint`] covers
/// and works out the checkpoint after any entry read.
///
/// Timestamps are not in file order (stdout and stderr are stamped apart; every part of a
/// split line carries its first part's time, however long the line takes), so a checkpoint
/// is a position: follow from `since` and skip a count. The engine's `since` comes in two
/// flavours: Docker 20.10 drops every entry older than it, later versions only seek to the
/// first entry at or after it and then return everything. A checkpoint means the same to
/// both as long as, from the first entry at or after `since` on, no entry (shipped, read, or
/// still to come) is older than `since`. `since` therefore starts at the checkpoint's and only
/// moves forward to a second that:
///
/// - no entry read after the new starting point is older than (its run of entries is
///   tracked), while everything read before it is older (so the engine starts there), and
///   that starting point is no later than the position being checkpointed;
/// - no entry still to come can be older than: not after the first-part time of a line still
///   open on either stream (its further parts carry that time), nor within
///   [`STAMP_SKEW_NANOS`] of the newest entry read.
#[derive(Debug, Clone)]
pub struct PositionTracker {
    since_seconds: i64,
    /// Index (in this follow) of the first entry at or after `since_seconds`: where the
    /// engine's answer for `since_seconds` starts, and `runs` with it.
    base: u64,
    /// Every entry read from `base` on.
    runs: VecDeque<Run>,
    /// Entries read in this follow.
    read: u64,
    /// Entries at the start of this follow that the checkpoint covers.
    skip: u64,
    /// The timestamp the first of them must have.
    first_nanos: i64,
    newest_nanos: Option<i64>,
    /// Per stream (stdout, stderr): the first-part time of a line whose end was not read yet.
    open: [Option<i64>; 2],
}

fn stream_index(source: LogSource) -> usize {
    match source {
        LogSource::Stdout => 0,
        LogSource::Stderr => 1,
    }
}

impl PositionTracker {
    /// For a follow from `checkpoint.since_seconds`.
    pub fn new(checkpoint: Checkpoint) -> Self {
        Self {
            since_seconds: checkpoint.since_seconds,
            base: 0,
            runs: VecDeque::new(),
            read: 0,
            skip: checkpoint.entries,
            first_nanos: checkpoint.first_nanos,
            newest_nanos: None,
            open: [None; 2],
        }
    }

    /// Takes the next entry of the follow.
    pub fn read(&mut self, entry: &LogEntry) -> Read {
        let timestamp = entry.timestamp_nanos;
        let moved = self.read == 0 && self.skip > 0 && timestamp != self.first_nanos;
        if moved {
            self.skip = 0;
        }
        let seconds = timestamp.div_euclid(NANOS_PER_SECOND);
        match self.runs.back_mut() {
            Some(run) if run.seconds == seconds => run.entries += 1,
            _ => self.runs.push_back(Run {
                seconds,
                first_nanos: timestamp,
                entries: 1,
            }),
        }
        self.read += 1;
        self.newest_nanos = Some(self.newest_nanos.map_or(timestamp, |n| n.max(timestamp)));
        let open = &mut self.open[stream_index(entry.source)];
        if entry.message.last() == Some(&b'\n') {
            *open = None;
        } else if open.is_none() {
            *open = Some(timestamp);
        }
        if moved {
            Read::LogMoved
        } else if self.read <= self.skip {
            Read::Shipped
        } else {
            Read::New
        }
    }

    /// How many entries were read: the position just after the last one.
    pub fn position(&self) -> u64 {
        self.read
    }

    /// The checkpoint once every entry before `position` (at most [`position`](Self::position),
    /// and no less than an earlier call's) is shipped; moves `since` forward where it safely
    /// can.
    pub fn checkpoint_at(&mut self, position: u64) -> Checkpoint {
        let position = position.clamp(self.base, self.read);
        if let Some(newest) = self.newest_nanos {
            let lowest_to_come = self
                .open
                .iter()
                .flatten()
                .fold(newest.saturating_sub(STAMP_SKEW_NANOS), |low, t| {
                    low.min(*t)
                });
            let target = lowest_to_come.div_euclid(NANOS_PER_SECOND);
            // Splitting the runs before run k: everything before must be older than the new
            // `since`, everything from k on (and to come) at least as new.
            let mut newer_min = vec![i64::MAX; self.runs.len() + 1];
            for (k, run) in self.runs.iter().enumerate().rev() {
                newer_min[k] = newer_min[k + 1].min(run.seconds);
            }
            let mut older_max = i64::MIN;
            let mut start = self.base;
            let mut best: Option<(i64, usize, u64)> = None;
            for (k, newer) in newer_min.iter().enumerate() {
                if start > position {
                    break;
                }
                let since = (*newer).min(target);
                if since > older_max
                    && since >= self.since_seconds
                    && best.is_none_or(|(b, _, _)| since > b)
                {
                    best = Some((since, k, start));
                }
                if let Some(run) = self.runs.get(k) {
                    older_max = older_max.max(run.seconds);
                    start += run.entries;
                }
            }
            if let Some((since, k, start)) = best {
                self.runs.drain(..k);
                self.base = start;
                self.since_seconds = since;
            }
        }
        let entries = position - self.base;
        Checkpoint {
            since_seconds: self.since_seconds,
            entries,
            first_nanos: match self.runs.front() {
                Some(run) if entries > 0 => run.first_nanos,
                _ => 0,
            },
        }
    }
}

/// A complete line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The engine timestamp of its first entry, nanoseconds.
    pub timestamp_nanos: i64,
    /// Without the trailing newline.
    pub text: Vec<u8>,
    /// The [`PositionTracker`] position after its last entry: shipping this line (and
    /// everything before it) ships everything before that position.
    pub cursor: u64,
}

/// Joins entries into lines.
#[derive(Debug, Clone, Default)]
pub struct LineAssembler {
    /// The position after the last entry taken.
    cursor: u64,
    /// A line still missing its end: its first timestamp, source and bytes so far.
    pending: Option<(i64, LogSource, Vec<u8>)>,
}

impl LineAssembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next entry, which ends at `position`; returns the lines it completes (at
    /// most two: an unfinished line is ended where the other stream interrupts it, so a
    /// checkpoint never has to leave an entry behind, or where it would outgrow an event).
    pub fn push(&mut self, entry: &LogEntry, position: u64) -> Vec<Line> {
        let mut lines = Vec::new();
        // A line without an end in sight is cut before it outgrows an event, so memory stays
        // bounded and long lines cut into as few events as the engine's parts allow.
        if let Some((_, source, text)) = &self.pending {
            if *source != entry.source || text.len() + entry.message.len() > MAX_EVENT_BYTES {
                lines.extend(self.finish());
            }
        }
        self.cursor = position;
        let (_, _, text) = self.pending.get_or_insert_with(|| {
            (
                entry.timestamp_nanos,
                entry.source,
                Vec::with_capacity(entry.message.len()),
            )
        });
        text.extend_from_slice(&entry.message);
        let complete = text.last() == Some(&b'\n');
        if complete || text.len() >= MAX_EVENT_BYTES {
            if let Some((timestamp_nanos, _, mut text)) = self.pending.take() {
                if complete {
                    text.pop();
                }
                lines.push(Line {
                    timestamp_nanos,
                    text,
                    cursor: self.cursor,
                });
            }
        }
        lines
    }

    /// The unfinished line, as a line: the log ended (the container exited without a final
    /// newline).
    pub fn finish(&mut self) -> Option<Line> {
        let (timestamp_nanos, _, text) = self.pending.take()?;
        Some(Line {
            timestamp_nanos,
            text,
            cursor: self.cursor,
        })
    }
}

/// The messages of one line: valid UTF-8 (invalid bytes replaced), cut at character
/// boundaries into pieces of at most [`MAX_EVENT_BYTES`]. An empty line has none (CloudWatch
/// Logs refuses empty messages).
pub fn split_line(text: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(text);
    let mut pieces = Vec::new();
    let mut rest: &str = &text;
    while !rest.is_empty() {
        let mut end = rest.len().min(MAX_EVENT_BYTES);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        pieces.push(rest[..end].to_string());
        rest = &rest[end..];
    }
    pieces
}

/// Events waiting to be sent, and the position their delivery reaches.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    events: Vec<LogEvent>,
    bytes: usize,
    oldest: i64,
    newest: i64,
    /// Set by every line taken in, even one without events (an empty line).
    cursor: Option<u64>,
}

impl Batch {
    /// Whether these events can join the batch without breaking a PutLogEvents limit.
    pub fn fits(&self, events: &[LogEvent]) -> bool {
        if events.is_empty() {
            return true;
        }
        let count = self.events.len() + events.len();
        let bytes = self.bytes + events.iter().map(LogEvent::size).sum::<usize>();
        let mut oldest = if self.events.is_empty() {
            i64::MAX
        } else {
            self.oldest
        };
        let mut newest = if self.events.is_empty() {
            i64::MIN
        } else {
            self.newest
        };
        for event in events {
            oldest = oldest.min(event.timestamp);
            newest = newest.max(event.timestamp);
        }
        count <= MAX_BATCH_EVENTS
            && bytes <= MAX_BATCH_BYTES
            && newest - oldest < MAX_BATCH_SPAN_MILLIS
    }

    /// Adds an event; the caller checked [`fits`](Self::fits).
    pub fn push(&mut self, event: LogEvent) {
        if self.events.is_empty() {
            self.oldest = event.timestamp;
            self.newest = event.timestamp;
        } else {
            self.oldest = self.oldest.min(event.timestamp);
            self.newest = self.newest.max(event.timestamp);
        }
        self.bytes += event.size();
        self.events.push(event);
    }

    /// Records that everything before position `cursor` is in the batch.
    pub fn cover(&mut self, cursor: u64) {
        self.cursor = Some(cursor);
    }

    /// Whether there is anything to flush (events, or a checkpoint to move).
    pub fn has_content(&self) -> bool {
        !self.events.is_empty() || self.cursor.is_some()
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The events in chronological order (stdout and stderr are stamped separately, so the
    /// engine's order may step back by a little; equal timestamps keep their order) and the
    /// position their delivery reaches. Leaves the batch empty.
    pub fn take(&mut self) -> (Vec<LogEvent>, Option<u64>) {
        let mut events = std::mem::take(&mut self.events);
        events.sort_by_key(|e| e.timestamp);
        let cursor = self.cursor.take();
        *self = Batch::default();
        (events, cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(timestamp_nanos: i64, source: LogSource, message: &str) -> LogEntry {
        LogEntry {
            timestamp_nanos,
            source,
            message: bytes::Bytes::copy_from_slice(message.as_bytes()),
        }
    }

    fn event(timestamp: i64, size: usize) -> LogEvent {
        LogEvent {
            timestamp,
            message: "x".repeat(size),
        }
    }

    /// `seconds.millis` after an arbitrary epoch, in nanoseconds.
    fn at(seconds: i64, millis: i64) -> i64 {
        1_800_000_000 * NANOS_PER_SECOND + seconds * NANOS_PER_SECOND + millis * 1_000_000
    }

    /// The two meanings engines give `since`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Since {
        /// Docker 20.10 (and the fake engine): every older entry is dropped.
        Drops,
        /// Docker 23 and later: older entries are skipped until the first that is not.
        Seeks,
    }

    /// What the engine answers for a follow of `file` from `since_seconds`.
    fn answer(file: &[LogEntry], since_seconds: i64, flavour: Since) -> Vec<LogEntry> {
        let since = since_seconds * NANOS_PER_SECOND;
        match flavour {
            Since::Drops => file
                .iter()
                .filter(|e| e.timestamp_nanos >= since)
                .cloned()
                .collect(),
            Since::Seeks => file
                .iter()
                .skip_while(|e| e.timestamp_nanos < since)
                .cloned()
                .collect(),
        }
    }

    /// One follow as the shipper makes it: from `checkpoint` over the log as far as `file`
    /// goes, reading `read` entries (`None`: all, then the log ends) and delivering after
    /// every entry when `eager`, else once at the end (then the agent "crashes"). Appends
    /// the delivered lines to `shipped`; returns the checkpoint saved last.
    fn follow(
        file: &[LogEntry],
        mut checkpoint: Checkpoint,
        flavour: Since,
        read: Option<usize>,
        eager: bool,
        shipped: &mut Vec<Vec<u8>>,
    ) -> Checkpoint {
        let answer = answer(file, checkpoint.since_seconds, flavour);
        let mut tracker = PositionTracker::new(checkpoint);
        let mut lines = LineAssembler::new();
        let mut batch: Vec<Line> = Vec::new();
        let mut deliver = |tracker: &mut PositionTracker, batch: &mut Vec<Line>| {
            if let Some(last) = batch.last() {
                let next = tracker.checkpoint_at(last.cursor);
                assert!(
                    next.since_seconds >= checkpoint.since_seconds,
                    "since moved back: {checkpoint:?} then {next:?}"
                );
                checkpoint = next;
            }
            shipped.extend(batch.drain(..).map(|line| line.text));
        };
        let take = read.unwrap_or(answer.len()).min(answer.len());
        for entry in &answer[..take] {
            match tracker.read(entry) {
                Read::Shipped => {}
                Read::New => batch.extend(lines.push(entry, tracker.position())),
                Read::LogMoved => panic!("the log did not move"),
            }
            if eager {
                deliver(&mut tracker, &mut batch);
            }
        }
        if read.is_none() {
            batch.extend(lines.finish());
        }
        deliver(&mut tracker, &mut batch);
        checkpoint
    }

    /// Everything the engine logs, as shipped in one go.
    fn all_lines(file: &[LogEntry]) -> Vec<Vec<u8>> {
        let mut shipped = Vec::new();
        follow(
            file,
            Checkpoint::default(),
            Since::Drops,
            None,
            false,
            &mut shipped,
        );
        shipped
    }

    fn text(lines: &[Vec<u8>]) -> Vec<String> {
        lines
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect()
    }

    /// A log as Docker writes it: stdout stamped behind stderr (and back), split lines whose
    /// parts all carry their first part's time while the other stream goes on for seconds,
    /// entries sharing a timestamp, and a last line without a newline.
    fn out_of_order_log() -> Vec<LogEntry> {
        use LogSource::{Stderr as E, Stdout as O};
        vec![
            entry(at(0, 100), O, "a\n"),
            entry(at(0, 900), E, "b\n"),
            entry(at(0, 800), O, "c\n"),
            entry(at(0, 950), O, "long-1"),
            entry(at(1, 100), E, "d\n"),
            entry(at(1, 200), E, "e\n"),
            entry(at(0, 950), O, "long-2"),
            entry(at(0, 950), O, "long-3\n"),
            entry(at(1, 900), E, "f\n"),
            entry(at(1, 850), O, "g\n"),
            entry(at(2, 300), O, "h\n"),
            entry(at(2, 250), E, "i\n"),
            entry(at(2, 400), E, "j-1"),
            entry(at(3, 100), O, "k\n"),
            entry(at(3, 200), O, "l\n"),
            entry(at(4, 600), O, "m\n"),
            entry(at(2, 400), E, "j-2"),
            entry(at(2, 400), E, "j-3\n"),
            entry(at(4, 700), O, "n\n"),
            entry(at(4, 700), E, "o\n"),
            entry(at(5, 0), O, "the end"),
        ]
    }

    #[test]
    fn the_tracker_skips_exactly_what_the_checkpoint_covers() {
        let log = [
            entry(at(0, 0), LogSource::Stdout, "a\n"),
            entry(at(0, 0), LogSource::Stdout, "b\n"),
            entry(at(0, 0), LogSource::Stderr, "c\n"),
        ];
        let mut tracker = PositionTracker::new(Checkpoint {
            since_seconds: 1_800_000_000,
            entries: 2,
            first_nanos: at(0, 0),
        });
        let reads: Vec<Read> = log.iter().map(|e| tracker.read(e)).collect();
        assert_eq!(reads, vec![Read::Shipped, Read::Shipped, Read::New]);
        assert_eq!(tracker.position(), 3);
        let mut fresh = PositionTracker::new(Checkpoint::default());
        assert_eq!(fresh.read(&log[0]), Read::New);
    }

    #[test]
    fn since_stays_behind_open_split_lines_and_reordered_entries() {
        // The reviewer's case: stdout part P1 at T0, stderr E at T1, stdout P2 at T0.
        let t0 = at(10, 950);
        let p1 = entry(t0, LogSource::Stdout, "P1");
        let e = entry(at(11, 100), LogSource::Stderr, "E\n");
        let p2 = entry(t0, LogSource::Stdout, "P2\n");
        let mut tracker = PositionTracker::new(Checkpoint::default());
        let mut lines = LineAssembler::new();
        for entry in [&p1, &e] {
            assert_eq!(tracker.read(entry), Read::New);
            lines.push(entry, tracker.position());
        }
        // Shipped through E: P2 is still to come, at T0, so `since` stays at T0's second
        // and the count goes on from P1.
        let after_e = tracker.checkpoint_at(2);
        assert_eq!(
            after_e,
            Checkpoint {
                since_seconds: 1_800_000_010,
                entries: 2,
                first_nanos: t0
            }
        );
        for flavour in [Since::Drops, Since::Seeks] {
            let mut shipped = Vec::new();
            let file = [p1.clone(), e.clone(), p2.clone()];
            follow(&file, after_e, flavour, None, false, &mut shipped);
            assert_eq!(text(&shipped), vec!["P2"], "{flavour:?}");
        }
        // Shipped through P2: nothing before it is sent again.
        assert_eq!(tracker.read(&p2), Read::New);
        assert_eq!(tracker.checkpoint_at(3).entries, 3);
        // Once the log has moved on, so does `since`, past everything shipped.
        let later = entry(at(13, 0), LogSource::Stdout, "x\n");
        tracker.read(&later);
        assert_eq!(
            tracker.checkpoint_at(4),
            Checkpoint {
                since_seconds: 1_800_000_012,
                entries: 1,
                first_nanos: at(13, 0)
            }
        );
    }

    #[test]
    fn resuming_at_any_two_points_ships_every_line_once() {
        let log = out_of_order_log();
        let expected = all_lines(&log);
        assert_eq!(expected.len(), 19);
        assert_eq!(text(&expected[3..5]), vec!["long-1", "d"]);
        assert!(expected.contains(&b"long-2long-3".to_vec()));
        let mut runs = 0;
        for flavour in [Since::Drops, Since::Seeks] {
            for eager in [false, true] {
                // The log as far as the engine had written it, and how far the first
                // follow got before the agent stopped; then the same again; then to the end.
                for first_len in 0..=log.len() {
                    let first_answer = answer(&log[..first_len], 0, flavour).len();
                    for first_read in 0..=first_answer {
                        let mut shipped = Vec::new();
                        let first = follow(
                            &log[..first_len],
                            Checkpoint::default(),
                            flavour,
                            Some(first_read),
                            eager,
                            &mut shipped,
                        );
                        for second_len in first_len..=log.len() {
                            let second_answer =
                                answer(&log[..second_len], first.since_seconds, flavour).len();
                            for second_read in 0..=second_answer {
                                let mut shipped = shipped.clone();
                                let second = follow(
                                    &log[..second_len],
                                    first,
                                    flavour,
                                    Some(second_read),
                                    eager,
                                    &mut shipped,
                                );
                                follow(&log, second, flavour, None, eager, &mut shipped);
                                assert_eq!(
                                    text(&shipped),
                                    text(&expected),
                                    "{flavour:?}, eager {eager}: {first_read} of {first_len}, \
                                     then {second_read} of {second_len} from {first:?}"
                                );
                                runs += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(runs > 10_000, "{runs}");
    }

    /// xorshift64*: reproducible without a dependency.
    struct Random(u64);

    impl Random {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }

    /// A random log within what Docker does: each stream stamped in order, an entry of one
    /// stamped up to 0.9 s before an entry of the other written ahead of it, split lines
    /// whose parts keep their first time however long the other stream goes on.
    fn random_log(random: &mut Random, length: usize) -> Vec<LogEntry> {
        let mut clock = at(0, 0);
        let mut last = [i64::MIN; 2];
        let mut open: [Option<i64>; 2] = [None; 2];
        let mut log = Vec::new();
        for n in 0..length {
            clock += match random.below(4) {
                0 => 0,
                _ => random.below(700) as i64 * 1_000_000,
            };
            let (source, stream) = if random.below(2) == 0 {
                (LogSource::Stdout, 0)
            } else {
                (LogSource::Stderr, 1)
            };
            let (timestamp, message) = match open[stream] {
                Some(first) if random.below(3) == 0 => {
                    open[stream] = None;
                    (first, format!("{n} end\n"))
                }
                Some(first) => (first, format!("{n} part ")),
                None => {
                    let skewed = clock - random.below(900) as i64 * 1_000_000;
                    let timestamp = skewed.max(last[stream]);
                    last[stream] = timestamp;
                    if random.below(4) == 0 {
                        open[stream] = Some(timestamp);
                        (timestamp, format!("{n} start "))
                    } else {
                        (timestamp, format!("{n}\n"))
                    }
                }
            };
            log.push(entry(timestamp, source, &message));
        }
        log
    }

    #[test]
    fn random_logs_resumed_many_times_ship_every_line_once() {
        let mut random = Random(0x5eed_1234_abcd_0001);
        for round in 0..400 {
            let length = 5 + random.below(40) as usize;
            let log = random_log(&mut random, length);
            let expected = all_lines(&log);
            for schedule in 0..8 {
                let flavour = if schedule % 2 == 0 {
                    Since::Drops
                } else {
                    Since::Seeks
                };
                let mut shipped = Vec::new();
                let mut checkpoint = Checkpoint::default();
                let mut written = 0;
                for _ in 0..random.below(6) {
                    written = (written + random.below(12) as usize).min(log.len());
                    let available =
                        answer(&log[..written], checkpoint.since_seconds, flavour).len();
                    let read = random.below(available as u64 + 1) as usize;
                    let eager = random.below(2) == 0;
                    checkpoint = follow(
                        &log[..written],
                        checkpoint,
                        flavour,
                        Some(read),
                        eager,
                        &mut shipped,
                    );
                }
                follow(&log, checkpoint, flavour, None, false, &mut shipped);
                assert_eq!(
                    text(&shipped),
                    text(&expected),
                    "round {round}, schedule {schedule}"
                );
            }
        }
    }

    #[test]
    fn a_log_that_no_longer_starts_at_the_checkpoint_skips_nothing() {
        // The engine rotated the counted entries away while the agent was down.
        let mut tracker = PositionTracker::new(Checkpoint {
            since_seconds: 1_800_000_000,
            entries: 2,
            first_nanos: at(0, 100),
        });
        let newer = entry(at(0, 500), LogSource::Stdout, "after rotation\n");
        assert_eq!(tracker.read(&newer), Read::LogMoved);
        assert_eq!(tracker.read(&newer), Read::New);
    }

    #[test]
    fn lines_lose_their_newline_and_carry_their_position() {
        let mut lines = LineAssembler::new();
        let first = lines.push(&entry(5, LogSource::Stdout, "one\n"), 1);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].text, b"one");
        assert_eq!(first[0].cursor, 1);
        let second = lines.push(&entry(5, LogSource::Stderr, "two\n"), 2);
        assert_eq!(second[0].cursor, 2);
        // Parts of a long line join; the line keeps its first timestamp.
        assert!(lines.push(&entry(6, LogSource::Stdout, "lo"), 3).is_empty());
        assert!(lines.push(&entry(7, LogSource::Stdout, "ng"), 4).is_empty());
        let long = lines.push(&entry(8, LogSource::Stdout, " line\n"), 5);
        assert_eq!(long[0].text, b"long line");
        assert_eq!(long[0].timestamp_nanos, 6);
        assert_eq!(long[0].cursor, 5);
        // The other stream interrupting a part ends it there.
        assert!(lines
            .push(&entry(9, LogSource::Stdout, "cut"), 6)
            .is_empty());
        let both = lines.push(&entry(10, LogSource::Stderr, "err\n"), 7);
        assert_eq!(both.len(), 2);
        assert_eq!(
            (both[0].text.as_slice(), both[1].text.as_slice()),
            (&b"cut"[..], &b"err"[..])
        );
        assert_eq!((both[0].cursor, both[1].cursor), (6, 7));
        // A last line without a newline comes out at the end.
        assert!(lines
            .push(&entry(11, LogSource::Stdout, "tail"), 8)
            .is_empty());
        let tail = lines.finish().expect("a last line");
        assert_eq!((tail.text.as_slice(), tail.cursor), (&b"tail"[..], 8));
        assert_eq!(lines.finish(), None);
    }

    #[test]
    fn a_line_without_end_is_cut_before_it_outgrows_an_event() {
        let mut lines = LineAssembler::new();
        let part = "y".repeat(16 * 1024);
        let mut emitted = Vec::new();
        for n in 0..20 {
            emitted.extend(lines.push(&entry(n, LogSource::Stdout, &part), n as u64 + 1));
        }
        assert_eq!(emitted.len(), 1);
        assert_eq!(emitted[0].text.len(), 15 * part.len());
        // Its position is after the fifteen parts, not the sixteenth.
        assert_eq!(emitted[0].cursor, 15);
        // One part larger than an event comes out alone, to be split into events.
        let huge = "h".repeat(MAX_EVENT_BYTES + 1);
        let alone = lines.push(&entry(30, LogSource::Stdout, &huge), 21);
        assert_eq!(alone.len(), 2);
        assert_eq!(alone[1].text.len(), MAX_EVENT_BYTES + 1);
    }

    #[test]
    fn long_lines_split_at_character_boundaries() {
        assert!(split_line(b"").is_empty());
        assert_eq!(split_line(b"short"), vec!["short"]);
        let long = "é".repeat(MAX_EVENT_BYTES); // two bytes each
        let pieces = split_line(long.as_bytes());
        assert_eq!(pieces.len(), 2);
        assert!(pieces.iter().all(|p| p.len() <= MAX_EVENT_BYTES));
        assert_eq!(pieces[0].len(), MAX_EVENT_BYTES); // even: a boundary
        assert_eq!(pieces.concat(), long);
        let odd = format!("a{}", "é".repeat(MAX_EVENT_BYTES / 2));
        let pieces = split_line(odd.as_bytes());
        assert_eq!(pieces[0].len(), MAX_EVENT_BYTES - 1);
        assert_eq!(pieces.concat(), odd);
        // Invalid UTF-8 is replaced, not refused.
        assert_eq!(split_line(&[b'a', 0xff, b'b']), vec!["a\u{fffd}b"]);
    }

    #[test]
    fn batches_respect_every_put_log_events_limit() {
        // Count.
        let mut batch = Batch::default();
        for n in 0..MAX_BATCH_EVENTS {
            assert!(batch.fits(&[event(n as i64, 1)]));
            batch.push(event(n as i64, 1));
        }
        assert!(!batch.fits(&[event(0, 1)]));
        assert!(batch.fits(&[]));

        // Bytes, with 26 bytes per event: four events of 262,118 bytes fill 1 MiB exactly.
        let mut batch = Batch::default();
        for _ in 0..4 {
            assert!(batch.fits(&[event(0, MAX_EVENT_BYTES)]));
            batch.push(event(0, MAX_EVENT_BYTES));
        }
        assert!(!batch.fits(&[event(0, 1)]));
        let mut batch = Batch::default();
        batch.push(event(0, MAX_BATCH_BYTES - 2 * EVENT_OVERHEAD_BYTES - 1));
        assert!(batch.fits(&[event(0, 1)]));
        assert!(!batch.fits(&[event(0, 2)]));

        // Span: under 24 hours, in either direction.
        let mut batch = Batch::default();
        batch.push(event(MAX_BATCH_SPAN_MILLIS, 1));
        assert!(batch.fits(&[event(1, 1)]));
        assert!(!batch.fits(&[event(0, 1)]));
        assert!(!batch.fits(&[event(2 * MAX_BATCH_SPAN_MILLIS, 1)]));
    }

    #[test]
    fn batches_come_out_in_chronological_order_with_their_position() {
        let mut batch = Batch::default();
        assert!(!batch.has_content());
        batch.push(LogEvent {
            timestamp: 3,
            message: "c".into(),
        });
        batch.push(LogEvent {
            timestamp: 1,
            message: "a".into(),
        });
        batch.push(LogEvent {
            timestamp: 3,
            message: "d".into(),
        });
        let cursor = 7;
        batch.cover(cursor);
        let (events, covered) = batch.take();
        let messages: Vec<&str> = events.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages, vec!["a", "c", "d"]);
        assert_eq!(covered, Some(cursor));
        assert!(!batch.has_content());
        assert_eq!(batch.len(), 0);
    }
}
