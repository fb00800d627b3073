//! From engine log entries to PutLogEvents batches, as pure steps so every limit is tested
//! exactly:
//!
//! - [`ResumeFilter`] skips what a [`Checkpoint`] says was shipped (the engine's `since` is
//!   whole seconds, the checkpoint is exact);
//! - [`LineAssembler`] joins the parts the engine splits long lines into (parts lack the
//!   trailing newline) and strips the newline; each line carries the checkpoint that covers it;
//! - [`split_line`] cuts lines into events of at most [`MAX_EVENT_BYTES`];
//! - [`Batch`] gathers events within [`MAX_BATCH_EVENTS`], [`MAX_BATCH_BYTES`] (26 bytes of
//!   overhead per event) and a span under 24 hours, and hands them out in chronological order.

use super::checkpoint::Checkpoint;
use crate::runtime::LogEntry;

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

/// Skips the entries a checkpoint covers: every entry older than its timestamp, and the first
/// `entries` entries at exactly its timestamp.
#[derive(Debug, Clone)]
pub struct ResumeFilter {
    checkpoint: Checkpoint,
    seen_at_timestamp: u64,
}

impl ResumeFilter {
    pub fn new(checkpoint: Checkpoint) -> Self {
        Self {
            checkpoint,
            seen_at_timestamp: 0,
        }
    }

    /// Whether the entry with this timestamp was shipped already.
    pub fn already_shipped(&mut self, timestamp_nanos: i64) -> bool {
        if timestamp_nanos < self.checkpoint.timestamp_nanos {
            return true;
        }
        if timestamp_nanos == self.checkpoint.timestamp_nanos
            && self.seen_at_timestamp < self.checkpoint.entries
        {
            self.seen_at_timestamp += 1;
            return true;
        }
        false
    }
}

/// A complete line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The engine timestamp of its first entry, nanoseconds.
    pub timestamp_nanos: i64,
    /// Without the trailing newline.
    pub text: Vec<u8>,
    /// Shipping this line (and everything before it) makes this the checkpoint.
    pub cursor: Checkpoint,
}

/// Joins entries into lines.
#[derive(Debug, Clone)]
pub struct LineAssembler {
    /// The position after the last entry read.
    cursor: Checkpoint,
    /// A line still missing its end: its first timestamp, source and bytes so far.
    pending: Option<(i64, crate::runtime::LogSource, Vec<u8>)>,
}

impl LineAssembler {
    /// Starts after `checkpoint` (the entries it covers are skipped by a [`ResumeFilter`]).
    pub fn new(checkpoint: Checkpoint) -> Self {
        Self {
            cursor: checkpoint,
            pending: None,
        }
    }

    /// Takes the next entry; returns the lines it completes (at most two: an unfinished line
    /// is ended where the other stream interrupts it, so a checkpoint never has to leave an
    /// entry behind, or where it would outgrow an event).
    pub fn push(&mut self, entry: &LogEntry) -> Vec<Line> {
        let mut lines = Vec::new();
        // A line without an end in sight is cut before it outgrows an event, so memory stays
        // bounded and long lines cut into as few events as the engine's parts allow.
        if let Some((_, source, text)) = &self.pending {
            if *source != entry.source || text.len() + entry.message.len() > MAX_EVENT_BYTES {
                lines.extend(self.finish());
            }
        }
        self.cursor.advance(entry.timestamp_nanos);
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

/// Events waiting to be sent, and the checkpoint their delivery reaches.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    events: Vec<LogEvent>,
    bytes: usize,
    oldest: i64,
    newest: i64,
    /// Set by every line taken in, even one without events (an empty line).
    cursor: Option<Checkpoint>,
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

    /// Records that everything up to `cursor` is in the batch.
    pub fn cover(&mut self, cursor: Checkpoint) {
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
    /// checkpoint their delivery reaches. Leaves the batch empty.
    pub fn take(&mut self) -> (Vec<LogEvent>, Option<Checkpoint>) {
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
    use crate::runtime::LogSource;

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

    #[test]
    fn the_filter_skips_exactly_what_the_checkpoint_covers() {
        let mut filter = ResumeFilter::new(Checkpoint {
            timestamp_nanos: 100,
            entries: 2,
        });
        let shipped: Vec<bool> = [90, 100, 100, 100, 101]
            .iter()
            .map(|t| filter.already_shipped(*t))
            .collect();
        assert_eq!(shipped, vec![true, true, true, false, false]);
        let mut fresh = ResumeFilter::new(Checkpoint::default());
        assert!(!fresh.already_shipped(1));
    }

    #[test]
    fn lines_lose_their_newline_and_carry_their_checkpoint() {
        let mut lines = LineAssembler::new(Checkpoint::default());
        let first = lines.push(&entry(5, LogSource::Stdout, "one\n"));
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].text, b"one");
        assert_eq!(
            first[0].cursor,
            Checkpoint {
                timestamp_nanos: 5,
                entries: 1
            }
        );
        let second = lines.push(&entry(5, LogSource::Stderr, "two\n"));
        assert_eq!(
            second[0].cursor,
            Checkpoint {
                timestamp_nanos: 5,
                entries: 2
            }
        );
        // Parts of a long line join; the line keeps its first timestamp.
        assert!(lines.push(&entry(6, LogSource::Stdout, "lo")).is_empty());
        assert!(lines.push(&entry(7, LogSource::Stdout, "ng")).is_empty());
        let long = lines.push(&entry(8, LogSource::Stdout, " line\n"));
        assert_eq!(long[0].text, b"long line");
        assert_eq!(long[0].timestamp_nanos, 6);
        assert_eq!(
            long[0].cursor,
            Checkpoint {
                timestamp_nanos: 8,
                entries: 1
            }
        );
        // The other stream interrupting a part ends it there.
        assert!(lines.push(&entry(9, LogSource::Stdout, "cut")).is_empty());
        let both = lines.push(&entry(10, LogSource::Stderr, "err\n"));
        assert_eq!(both.len(), 2);
        assert_eq!(
            (both[0].text.as_slice(), both[1].text.as_slice()),
            (&b"cut"[..], &b"err"[..])
        );
        assert_eq!(both[0].cursor.timestamp_nanos, 9);
        // A last line without a newline comes out at the end.
        assert!(lines.push(&entry(11, LogSource::Stdout, "tail")).is_empty());
        assert_eq!(lines.finish().map(|l| l.text), Some(b"tail".to_vec()));
        assert_eq!(lines.finish(), None);
    }

    #[test]
    fn a_line_without_end_is_cut_before_it_outgrows_an_event() {
        let mut lines = LineAssembler::new(Checkpoint::default());
        let part = "y".repeat(16 * 1024);
        let mut emitted = Vec::new();
        for n in 0..20 {
            emitted.extend(lines.push(&entry(n, LogSource::Stdout, &part)));
        }
        assert_eq!(emitted.len(), 1);
        assert_eq!(emitted[0].text.len(), 15 * part.len());
        // Its checkpoint covers the fifteen parts, not the sixteenth.
        assert_eq!(
            emitted[0].cursor,
            Checkpoint {
                timestamp_nanos: 14,
                entries: 1
            }
        );
        // One part larger than an event comes out alone, to be split into events.
        let huge = "h".repeat(MAX_EVENT_BYTES + 1);
        let alone = lines.push(&entry(30, LogSource::Stdout, &huge));
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
    fn batches_come_out_in_chronological_order_with_their_checkpoint() {
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
        let cursor = Checkpoint {
            timestamp_nanos: 3_000_000,
            entries: 2,
        };
        batch.cover(cursor);
        let (events, covered) = batch.take();
        let messages: Vec<&str> = events.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages, vec!["a", "c", "d"]);
        assert_eq!(covered, Some(cursor));
        assert!(!batch.has_content());
        assert_eq!(batch.len(), 0);
    }
}
