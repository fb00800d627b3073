//! The [`Shipper`] of one awslogs container: follows the container's log in the engine from
//! its checkpoint, turns entries into events, and delivers them in batches: when a batch is
//! full, and at least every `flush_interval` (one second). Before each delivery it persists the
//! batch as in flight, after it the checkpoint past it. It ends ([`ShipperExit::Finished`])
//! once the container stopped and everything it logged was delivered (or refused), or when
//! cancelled.
//!
//! Failures:
//! - retryable (server unreachable, 5xx, throttling): the batch is dropped from memory, the
//!   lines stay in the engine's file; after a backoff the shipper asks the stream whether the
//!   batch landed after all (a lost answer) and follows again from past it or from its
//!   checkpoint. A shipper that finds a batch in flight at its start (the agent stopped during
//!   a delivery) does the same;
//! - `ResourceNotFoundException` from PutLogEvents (the stream or group was deleted): it
//!   creates them again and retries once;
//! - any other refusal (for example `InvalidParameterException`, or a server without
//!   CloudWatch Logs): the batch is dropped, as Docker's awslogs driver does, with a warning
//!   the first time per error code; otherwise one bad batch would hold back the log forever.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::batch::{split_line, Batch, Line, LineAssembler, LogEvent, PositionTracker, Read};
use super::checkpoint::{Checkpoint, CheckpointStore, InFlight, TailDigest};
use super::{LogDestination, LogSink};
use crate::backoff::Backoff;
use crate::client::ClientError;
use crate::runtime::{ContainerRuntime, RuntimeError};

/// Events wait at most this long before they are sent.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Why a shipper ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShipperExit {
    /// The container stopped (or is gone) and its whole log was handled.
    Finished,
    Cancelled,
}

enum Followed {
    /// The engine ended the log (the container stopped, or the stream broke off).
    Ended,
    /// Reading or delivering failed; follow again after a backoff.
    Failed,
    Cancelled,
}

enum Flushed {
    Done,
    Failed,
    Cancelled,
}

enum Delivery {
    Delivered,
    /// Refused for good: counts as handled.
    Dropped,
    Retry(ClientError),
    Cancelled,
}

/// `None` when cancelled first.
async fn cancellable<T>(cancel: &CancellationToken, work: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        _ = cancel.cancelled() => None,
        output = work => Some(output),
    }
}

/// Ships one container's log. Build it with [`Shipper::new`], run [`Shipper::run`] as an owned
/// task.
pub struct Shipper {
    container_id: String,
    destination: LogDestination,
    stream_name: String,
    runtime: Arc<dyn ContainerRuntime>,
    sink: Arc<dyn LogSink>,
    checkpoints: CheckpointStore,
    flush_interval: Duration,
    cancel: CancellationToken,
    checkpoint: Checkpoint,
    /// A batch sent without a confirmation that it landed; settled before following again.
    in_flight: Option<InFlight>,
    /// The newest event this shipper delivered to the stream, while it knows it.
    last_delivered: Option<LogEvent>,
    backoff: Backoff,
    /// Error codes already warned about.
    refusals: BTreeSet<String>,
}

impl std::fmt::Debug for Shipper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shipper")
            .field("container_id", &self.container_id)
            .field("group", &self.destination.group)
            .field("stream", &self.stream_name)
            .field("checkpoint", &self.checkpoint)
            .finish_non_exhaustive()
    }
}

impl Shipper {
    pub fn new(
        container_id: &str,
        destination: LogDestination,
        runtime: Arc<dyn ContainerRuntime>,
        sink: Arc<dyn LogSink>,
        checkpoints: CheckpointStore,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            container_id: container_id.to_string(),
            stream_name: destination.stream_name(container_id),
            destination,
            runtime,
            sink,
            checkpoints,
            flush_interval: FLUSH_INTERVAL,
            cancel,
            checkpoint: Checkpoint::default(),
            in_flight: None,
            last_delivered: None,
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(30)),
            refusals: BTreeSet::new(),
        }
    }

    pub fn with_flush_interval(mut self, flush_interval: Duration) -> Self {
        self.flush_interval = flush_interval;
        self
    }

    /// Ships until the container's log is done, or until cancelled.
    pub async fn run(mut self) -> ShipperExit {
        let saved = self.checkpoints.load(&self.container_id).await;
        self.checkpoint = saved.checkpoint;
        self.in_flight = saved.in_flight;
        tracing::debug!(container_id = %self.container_id, group = %self.destination.group, stream = %self.stream_name, checkpoint = ?self.checkpoint, in_flight = self.in_flight.is_some(), "shipping container log");
        let cancel = self.cancel.clone();
        let mut prepared = false;
        let mut final_pass = false;
        loop {
            if !prepared {
                match cancellable(&cancel, self.prepare()).await {
                    None => return ShipperExit::Cancelled,
                    Some(Ok(())) => prepared = true,
                    Some(Err(error)) if error.is_retryable() => {
                        tracing::warn!(container_id = %self.container_id, error = %error, "cannot create the log stream, will retry");
                        if !self.pause().await {
                            return ShipperExit::Cancelled;
                        }
                        continue;
                    }
                    Some(Err(error)) => {
                        // Deliveries will tell whether the destination is usable after all.
                        self.refused("creating the log stream", &error);
                        prepared = true;
                    }
                }
            }
            if self.in_flight.is_some() {
                match cancellable(&cancel, self.settle()).await {
                    None => return ShipperExit::Cancelled,
                    Some(Ok(())) => {}
                    Some(Err(error)) => {
                        tracing::warn!(container_id = %self.container_id, error = %error, "cannot tell whether the last log batch was delivered, will retry");
                        if !self.pause().await {
                            return ShipperExit::Cancelled;
                        }
                        continue;
                    }
                }
            }
            match self.follow().await {
                Followed::Cancelled => return ShipperExit::Cancelled,
                Followed::Failed => {}
                Followed::Ended => match self.runtime.inspect_container(&self.container_id).await {
                    Ok(info) if !info.status.is_running() => {
                        if final_pass {
                            tracing::debug!(container_id = %self.container_id, "container log shipped");
                            return ShipperExit::Finished;
                        }
                        // Docker may end a follow as the container exits before it read the
                        // last entries; a container that is not running is read to the end
                        // of its file, so one more pass picks up whatever was missed.
                        final_pass = true;
                        continue;
                    }
                    Err(RuntimeError::NoSuchContainer { .. }) => {
                        tracing::debug!(container_id = %self.container_id, "container removed; its log is shipped as far as it could be read");
                        return ShipperExit::Finished;
                    }
                    Ok(_) => {
                        tracing::debug!(container_id = %self.container_id, "log stream ended while the container runs, following again")
                    }
                    Err(error) => {
                        tracing::debug!(container_id = %self.container_id, error = %error, "cannot inspect container after its log ended")
                    }
                },
            }
            if !self.pause().await {
                return ShipperExit::Cancelled;
            }
        }
    }

    /// Sleeps the next backoff delay; `false` when cancelled.
    async fn pause(&mut self) -> bool {
        let delay = self.backoff.next_delay();
        cancellable(&self.cancel, tokio::time::sleep(delay))
            .await
            .is_some()
    }

    /// Decides where the batch in flight leaves the checkpoint: past it when the stream's
    /// newest events are the batch's, else where it was (the batch is sent again). Only a
    /// retryable error leaves it undecided; a missing stream or a refusal means it did not
    /// land (sending it again can duplicate lines, never lose them).
    async fn settle(&mut self) -> Result<(), ClientError> {
        let Some(in_flight) = self.in_flight.clone() else {
            return Ok(());
        };
        let newest = self
            .sink
            .newest_log_events(
                &self.destination.group,
                &self.stream_name,
                in_flight.tail.events,
            )
            .await;
        let landed = match newest {
            Ok(newest) if in_flight.tail.matches(&newest) => {
                self.last_delivered = newest.last().cloned();
                true
            }
            Ok(_) => false,
            Err(error) if error.is_retryable() => return Err(error),
            Err(error) => {
                tracing::debug!(container_id = %self.container_id, error = %error, "cannot read the log stream's newest events; sending the last batch again");
                false
            }
        };
        if landed {
            tracing::info!(container_id = %self.container_id, checkpoint = ?in_flight.after, "the log batch in flight was delivered; not sending it again");
            self.checkpoint = in_flight.after;
        } else {
            tracing::debug!(container_id = %self.container_id, checkpoint = ?self.checkpoint, "the log batch in flight was not delivered; sending it again");
        }
        self.in_flight = None;
        if let Err(error) = self
            .checkpoints
            .save(&self.container_id, self.checkpoint)
            .await
        {
            tracing::warn!(container_id = %self.container_id, error = %error, "cannot save log checkpoint");
        }
        Ok(())
    }

    /// Creates the group (when asked to) and the stream.
    async fn prepare(&self) -> Result<(), ClientError> {
        if self.destination.create_group {
            self.sink.create_log_group(&self.destination.group).await?;
        }
        self.sink
            .create_log_stream(&self.destination.group, &self.stream_name)
            .await
    }

    fn refused(&mut self, what: &str, error: &ClientError) {
        let code = error
            .code()
            .map(str::to_string)
            .unwrap_or_else(|| error.to_string());
        if self.refusals.insert(code) {
            tracing::warn!(container_id = %self.container_id, group = %self.destination.group, stream = %self.stream_name, error = %error, "CloudWatch Logs refused {what}; log events it refuses are dropped");
        } else {
            tracing::debug!(container_id = %self.container_id, error = %error, "CloudWatch Logs refused {what}");
        }
    }

    /// One subscription to the engine's log, from the checkpoint.
    async fn follow(&mut self) -> Followed {
        let mut entries = self
            .runtime
            .logs(&self.container_id, self.checkpoint.since_seconds);
        let mut tracker = PositionTracker::new(self.checkpoint);
        let mut lines = LineAssembler::new();
        let mut batch = Batch::default();
        let mut deadline: Option<Instant> = None;
        let cancel = self.cancel.clone();
        loop {
            let flush_at = deadline;
            let item = tokio::select! {
                _ = cancel.cancelled() => return Followed::Cancelled,
                _ = tokio::time::sleep_until(flush_at.unwrap_or_else(Instant::now)), if flush_at.is_some() => {
                    deadline = None;
                    match self.flush(&mut batch, &mut tracker).await {
                        Flushed::Done => continue,
                        Flushed::Failed => return Followed::Failed,
                        Flushed::Cancelled => return Followed::Cancelled,
                    }
                }
                item = entries.next() => item,
            };
            let outcome = match item {
                Some(Ok(entry)) => {
                    match tracker.read(&entry) {
                        Read::Shipped => continue,
                        Read::New => {}
                        Read::LogMoved => {
                            tracing::warn!(container_id = %self.container_id, checkpoint = ?self.checkpoint, "the engine's log no longer starts where the checkpoint counted from (its files were rotated?); shipping it all, some lines may be sent twice");
                        }
                    }
                    let mut outcome = Flushed::Done;
                    for line in lines.push(&entry, tracker.position()) {
                        outcome = self.add_line(&mut batch, &mut tracker, line).await;
                        if !matches!(outcome, Flushed::Done) {
                            break;
                        }
                    }
                    outcome
                }
                Some(Err(error)) => {
                    tracing::debug!(container_id = %self.container_id, error = %error, "container log stream failed");
                    // Deliver what is complete; the rest is read again from the checkpoint.
                    return match self.flush(&mut batch, &mut tracker).await {
                        Flushed::Cancelled => Followed::Cancelled,
                        // Removed: there is nothing more to read, ever.
                        Flushed::Done if matches!(error, RuntimeError::NoSuchContainer { .. }) => {
                            Followed::Ended
                        }
                        _ => Followed::Failed,
                    };
                }
                None => {
                    let mut outcome = Flushed::Done;
                    if let Some(line) = lines.finish() {
                        outcome = self.add_line(&mut batch, &mut tracker, line).await;
                    }
                    if matches!(outcome, Flushed::Done) {
                        outcome = self.flush(&mut batch, &mut tracker).await;
                    }
                    return match outcome {
                        Flushed::Done => Followed::Ended,
                        Flushed::Failed => Followed::Failed,
                        Flushed::Cancelled => Followed::Cancelled,
                    };
                }
            };
            match outcome {
                Flushed::Done => {}
                Flushed::Failed => return Followed::Failed,
                Flushed::Cancelled => return Followed::Cancelled,
            }
            if batch.has_content() && deadline.is_none() {
                deadline = Some(Instant::now() + self.flush_interval);
            }
        }
    }

    /// Adds a line's events, flushing first when they would not fit.
    async fn add_line(
        &mut self,
        batch: &mut Batch,
        tracker: &mut PositionTracker,
        line: Line,
    ) -> Flushed {
        let timestamp = line.timestamp_nanos.div_euclid(1_000_000);
        let events: Vec<LogEvent> = split_line(&line.text)
            .into_iter()
            .map(|message| LogEvent { timestamp, message })
            .collect();
        // A line goes into one batch whenever it can, so a checkpoint never falls inside it.
        if !batch.fits(&events) {
            let flushed = self.flush(batch, tracker).await;
            if !matches!(flushed, Flushed::Done) {
                return flushed;
            }
        }
        for event in events {
            if !batch.fits(std::slice::from_ref(&event)) {
                let flushed = self.flush(batch, tracker).await;
                if !matches!(flushed, Flushed::Done) {
                    return flushed;
                }
            }
            batch.push(event);
        }
        batch.cover(line.cursor);
        Flushed::Done
    }

    /// Delivers the batch and moves the checkpoint past it.
    async fn flush(&mut self, batch: &mut Batch, tracker: &mut PositionTracker) -> Flushed {
        let (events, cursor) = batch.take();
        let after = cursor.map(|cursor| tracker.checkpoint_at(cursor));
        if !events.is_empty() {
            if let Some(after) = after {
                // Recorded first, so that a stop before the checkpoint below is saved can tell
                // whether the batch landed (see `settle`).
                let in_flight = InFlight {
                    after,
                    tail: TailDigest::after_delivery(self.last_delivered.as_ref(), &events),
                };
                let saved = self
                    .checkpoints
                    .save_in_flight(&self.container_id, self.checkpoint, in_flight.clone())
                    .await;
                if let Err(error) = saved {
                    tracing::warn!(container_id = %self.container_id, error = %error, "cannot save log checkpoint");
                }
                self.in_flight = Some(in_flight);
            }
            match self.deliver(&events).await {
                Delivery::Delivered => self.last_delivered = events.last().cloned(),
                Delivery::Dropped => {
                    tracing::debug!(container_id = %self.container_id, events = events.len(), "log events dropped");
                }
                Delivery::Retry(error) => {
                    // It may have landed with its answer lost; `run` settles that.
                    tracing::warn!(container_id = %self.container_id, error = %error, "cannot deliver log events, will retry from the engine's log");
                    return Flushed::Failed;
                }
                Delivery::Cancelled => return Flushed::Cancelled,
            }
            self.in_flight = None;
            self.backoff.reset();
        }
        if let Some(checkpoint) = after {
            self.checkpoint = checkpoint;
            if let Err(error) = self.checkpoints.save(&self.container_id, checkpoint).await {
                // Shipping goes on; a restart before the next save may send lines again.
                tracing::warn!(container_id = %self.container_id, error = %error, "cannot save log checkpoint");
            }
        }
        Flushed::Done
    }

    async fn deliver(&mut self, events: &[LogEvent]) -> Delivery {
        let cancel = self.cancel.clone();
        let mut recreated = false;
        loop {
            let sent = cancellable(
                &cancel,
                self.sink
                    .put_log_events(&self.destination.group, &self.stream_name, events),
            )
            .await;
            match sent {
                None => return Delivery::Cancelled,
                Some(Ok(())) => return Delivery::Delivered,
                Some(Err(error)) if error.is_retryable() => return Delivery::Retry(error),
                Some(Err(error))
                    if error.code() == Some("ResourceNotFoundException") && !recreated =>
                {
                    // Deleted behind the agent's back: create it again, once. The new stream
                    // does not hold what was delivered before.
                    recreated = true;
                    self.last_delivered = None;
                    match cancellable(&cancel, self.prepare()).await {
                        None => return Delivery::Cancelled,
                        Some(Ok(())) => {}
                        Some(Err(error)) if error.is_retryable() => return Delivery::Retry(error),
                        Some(Err(error)) => self.refused("creating the log stream", &error),
                    }
                }
                Some(Err(error)) => {
                    self.refused("log events", &error);
                    return Delivery::Dropped;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fake::FakeRuntime;
    use crate::runtime::{ContainerSpec, LogSource};
    use crate::testing::RecordingLogSink;

    const GROUP: &str = "/ecs/web";
    const STREAM: &str = "ecs/app/0123";

    fn destination() -> LogDestination {
        LogDestination {
            group: GROUP.into(),
            stream: Some(STREAM.into()),
            create_group: true,
        }
    }

    async fn running(fake: &FakeRuntime) -> String {
        fake.add_image("img:1");
        let id = fake
            .create_container(&ContainerSpec {
                name: "app".into(),
                image: "img:1".into(),
                ..Default::default()
            })
            .await
            .expect("creates");
        fake.start_container(&id).await.expect("starts");
        id
    }

    struct Running {
        cancel: CancellationToken,
        handle: tokio::task::JoinHandle<ShipperExit>,
    }

    fn ship(
        fake: &FakeRuntime,
        id: &str,
        sink: &Arc<RecordingLogSink>,
        checkpoints: &CheckpointStore,
    ) -> Running {
        let cancel = CancellationToken::new();
        let shipper = Shipper::new(
            id,
            destination(),
            Arc::new(fake.clone()),
            sink.clone(),
            checkpoints.clone(),
            cancel.clone(),
        );
        Running {
            cancel,
            handle: tokio::spawn(shipper.run()),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn lines_become_events_within_a_second_and_the_exit_ends_the_shipper() {
        let fake = FakeRuntime::new();
        let id = running(&fake).await;
        fake.log(&id, LogSource::Stdout, "hello\n");
        let sink = Arc::new(RecordingLogSink::default());
        let checkpoints = CheckpointStore::in_memory();
        let shipper = ship(&fake, &id, &sink, &checkpoints);

        tokio::time::sleep(Duration::from_millis(1_100)).await;
        assert_eq!(sink.messages(GROUP, STREAM), vec!["hello"]);
        assert_eq!(sink.groups(), vec![GROUP.to_string()]);
        fake.log(&id, LogSource::Stderr, "oops\n");
        fake.log(&id, LogSource::Stdout, "\n");
        fake.log(&id, LogSource::Stdout, "no newline at the end");
        fake.exit(&id, 0);
        assert_eq!(shipper.handle.await.expect("ends"), ShipperExit::Finished);
        assert_eq!(
            sink.messages(GROUP, STREAM),
            vec!["hello", "oops", "no newline at the end"]
        );
        let events = sink.events(GROUP, STREAM);
        let logged = fake.container(&id).expect("exists").logs;
        assert_eq!(events[0].timestamp, logged[0].timestamp_nanos / 1_000_000);
        // All four entries, counted from the second a skew allowance before the newest.
        assert_eq!(
            checkpoints.load(&id).await.checkpoint,
            Checkpoint {
                since_seconds: (logged[3].timestamp_nanos - 1_000_000_000)
                    .div_euclid(1_000_000_000),
                entries: 4,
                first_nanos: logged[0].timestamp_nanos,
            }
        );
        assert!(sink.violations().is_empty(), "{:?}", sink.violations());
        drop(shipper.cancel);
    }

    #[tokio::test(start_paused = true)]
    async fn a_restarted_shipper_resumes_at_its_checkpoint_without_loss_or_duplicates() {
        let fake = FakeRuntime::new();
        let id = running(&fake).await;
        let sink = Arc::new(RecordingLogSink::default());
        let checkpoints = CheckpointStore::in_memory();
        // Several entries share a timestamp (and the engine's `since` is whole seconds).
        let base = 1_800_000_000_000_000_000;
        fake.log_at(&id, base, LogSource::Stdout, "a\n");
        fake.log_at(&id, base, LogSource::Stdout, "b\n");
        let first = ship(&fake, &id, &sink, &checkpoints);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(sink.messages(GROUP, STREAM), vec!["a", "b"]);
        first.cancel.cancel();
        assert_eq!(first.handle.await.expect("ends"), ShipperExit::Cancelled);

        // While no shipper runs, more lines arrive, some at the very same timestamp.
        fake.log_at(&id, base, LogSource::Stderr, "c\n");
        fake.log_at(&id, base + 1, LogSource::Stdout, "d\n");
        let second = ship(&fake, &id, &sink, &checkpoints);
        tokio::time::sleep(Duration::from_secs(2)).await;
        fake.log_at(&id, base + 2, LogSource::Stdout, "e\n");
        fake.exit(&id, 0);
        assert_eq!(second.handle.await.expect("ends"), ShipperExit::Finished);
        assert_eq!(sink.messages(GROUP, STREAM), vec!["a", "b", "c", "d", "e"]);

        // Shipping a finished container again sends nothing.
        let third = ship(&fake, &id, &sink, &checkpoints);
        assert_eq!(third.handle.await.expect("ends"), ShipperExit::Finished);
        assert_eq!(sink.messages(GROUP, STREAM).len(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn restarts_lose_no_line_stamped_out_of_order_and_repeat_none() {
        // The fake engine drops entries older than `since`, as Docker 20.10 does.
        let fake = FakeRuntime::new();
        let id = running(&fake).await;
        let sink = Arc::new(RecordingLogSink::default());
        let dir = tempfile::tempdir().expect("temp dir");
        let checkpoints = CheckpointStore::in_dir(dir.path().join("logs"));
        let second = 1_000_000_000;
        let t0 = 1_800_000_000 * second + 900_000_000;
        // A long stdout line's first part, then stderr lines seconds later, while the rest
        // of the stdout line (stamped with its first part's time) is still to come.
        fake.log_at(&id, t0, LogSource::Stdout, "long-1 ");
        fake.log_at(&id, t0 + 2 * second, LogSource::Stderr, "err 1\n");
        fake.log_at(&id, t0 + 3 * second, LogSource::Stderr, "err 2\n");
        let restart = |sink: &Arc<RecordingLogSink>| ship(&fake, &id, sink, &checkpoints);
        let first = restart(&sink);
        tokio::time::sleep(Duration::from_secs(2)).await;
        first.cancel.cancel();
        assert_eq!(first.handle.await.expect("ends"), ShipperExit::Cancelled);
        assert_eq!(
            sink.messages(GROUP, STREAM),
            vec!["long-1 ", "err 1", "err 2"]
        );

        // The line ends while no shipper runs; stdout is stamped behind stderr once more.
        fake.log_at(&id, t0, LogSource::Stdout, "long-2\n");
        fake.log_at(&id, t0 + 3 * second + 5, LogSource::Stderr, "err 3\n");
        fake.log_at(&id, t0 + 3 * second + 1, LogSource::Stdout, "out 1\n");
        let second_run = restart(&sink);
        tokio::time::sleep(Duration::from_secs(2)).await;
        second_run.cancel.cancel();
        second_run.handle.await.expect("ends");
        let third = restart(&sink);
        tokio::time::sleep(Duration::from_secs(2)).await;
        fake.log_at(&id, t0 + 9 * second, LogSource::Stdout, "out 2\n");
        fake.exit(&id, 0);
        assert_eq!(third.handle.await.expect("ends"), ShipperExit::Finished);
        let mut messages = sink.messages(GROUP, STREAM);
        messages.sort();
        assert_eq!(
            messages,
            vec!["err 1", "err 2", "err 3", "long-1 ", "long-2", "out 1", "out 2"]
        );
        // With the log shipped, `since` moved past everything but the skew allowance before
        // the newest entry, which is all it still counts.
        assert_eq!(
            checkpoints.load(&id).await.checkpoint,
            Checkpoint {
                since_seconds: 1_800_000_008,
                entries: 1,
                first_nanos: t0 + 9 * second,
            }
        );
        assert!(sink.violations().is_empty(), "{:?}", sink.violations());
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_server_loses_nothing_and_refusals_drop_the_batch() {
        let fake = FakeRuntime::new();
        let id = running(&fake).await;
        let sink = Arc::new(RecordingLogSink::default());
        sink.fail_next_puts(3, true);
        let checkpoints = CheckpointStore::in_memory();
        for n in 0..5 {
            fake.log(&id, LogSource::Stdout, &format!("line {n}\n"));
        }
        let shipper = ship(&fake, &id, &sink, &checkpoints);
        tokio::time::sleep(Duration::from_secs(10)).await;
        let expected: Vec<String> = (0..5).map(|n| format!("line {n}")).collect();
        assert_eq!(sink.messages(GROUP, STREAM), expected);

        // A refusal drops its batch and shipping goes on.
        sink.fail_next_puts(1, false);
        fake.log(&id, LogSource::Stdout, "refused\n");
        tokio::time::sleep(Duration::from_secs(2)).await;
        fake.log(&id, LogSource::Stdout, "after\n");
        fake.exit(&id, 0);
        assert_eq!(shipper.handle.await.expect("ends"), ShipperExit::Finished);
        let messages = sink.messages(GROUP, STREAM);
        assert_eq!(messages.last().map(String::as_str), Some("after"));
        assert!(!messages.contains(&"refused".to_string()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_removed_container_ends_its_shipper() {
        let fake = FakeRuntime::new();
        let id = running(&fake).await;
        let sink = Arc::new(RecordingLogSink::default());
        let shipper = ship(&fake, &id, &sink, &CheckpointStore::in_memory());
        fake.remove_container(&id).await.expect("removes");
        assert_eq!(shipper.handle.await.expect("ends"), ShipperExit::Finished);
        let gone = ship(&fake, "never-existed", &sink, &CheckpointStore::in_memory());
        assert_eq!(gone.handle.await.expect("ends"), ShipperExit::Finished);
    }

    #[tokio::test(start_paused = true)]
    async fn a_deleted_stream_is_created_again() {
        let fake = FakeRuntime::new();
        let id = running(&fake).await;
        let sink = Arc::new(RecordingLogSink::default());
        let checkpoints = CheckpointStore::in_memory();
        let shipper = ship(&fake, &id, &sink, &checkpoints);
        fake.log(&id, LogSource::Stdout, "one\n");
        tokio::time::sleep(Duration::from_secs(2)).await;
        sink.delete_streams();
        fake.log(&id, LogSource::Stdout, "two\n");
        fake.exit(&id, 0);
        assert_eq!(shipper.handle.await.expect("ends"), ShipperExit::Finished);
        assert_eq!(sink.messages(GROUP, STREAM), vec!["two"]);
    }

    #[tokio::test(start_paused = true)]
    async fn big_logs_are_cut_into_batches_within_the_limits() {
        let fake = FakeRuntime::new();
        let id = running(&fake).await;
        let sink = Arc::new(RecordingLogSink::default());
        let checkpoints = CheckpointStore::in_memory();
        for n in 0..25_000 {
            fake.log(&id, LogSource::Stdout, &format!("{n}\n"));
        }
        // A 600 KiB line, logged in the engine's 16 KiB parts.
        let part = "z".repeat(16 * 1024);
        for _ in 0..37 {
            fake.log(&id, LogSource::Stderr, &part);
        }
        fake.log(&id, LogSource::Stderr, "!\n");
        // Lines over a day apart cannot share a batch.
        let later = fake
            .container(&id)
            .expect("exists")
            .logs
            .last()
            .expect("logged")
            .timestamp_nanos
            + 25 * 3_600 * 1_000_000_000;
        fake.log_at(&id, later, LogSource::Stdout, "tomorrow\n");
        fake.exit(&id, 0);
        let shipper = ship(&fake, &id, &sink, &checkpoints);
        assert_eq!(shipper.handle.await.expect("ends"), ShipperExit::Finished);
        assert!(sink.violations().is_empty(), "{:?}", sink.violations());
        let messages = sink.messages(GROUP, STREAM);
        assert_eq!(messages.len(), 25_000 + 3 + 1);
        assert_eq!(messages[24_999], "24999");
        let long: String = messages[25_000..25_003].concat();
        assert_eq!(long.len(), 37 * 16 * 1024 + 1);
        assert!(messages[25_000..25_003]
            .iter()
            .all(|m| m.len() <= super::super::batch::MAX_EVENT_BYTES));
        assert_eq!(messages[25_003], "tomorrow");
        let sizes = sink.batch_sizes();
        assert!(sizes.iter().all(|s| *s <= 10_000), "{sizes:?}");
        assert!(sizes.len() >= 4, "{sizes:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_delivered_as_the_agent_stopped_is_not_sent_again() {
        let fake = FakeRuntime::new();
        let id = running(&fake).await;
        let sink = Arc::new(RecordingLogSink::default());
        let dir = tempfile::tempdir().expect("temp dir");
        let checkpoints = CheckpointStore::in_dir(dir.path().join("logs"));
        fake.log(&id, LogSource::Stdout, "one\n");
        fake.log(&id, LogSource::Stdout, "one\n");
        sink.lose_next_answers(1, true);
        let first = ship(&fake, &id, &sink, &checkpoints);
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Stopped after the batch landed and before its checkpoint was saved.
        first.cancel.cancel();
        assert_eq!(first.handle.await.expect("ends"), ShipperExit::Cancelled);
        assert_eq!(sink.messages(GROUP, STREAM), vec!["one", "one"]);
        assert!(checkpoints.load(&id).await.in_flight.is_some());

        let second = ship(&fake, &id, &sink, &checkpoints);
        tokio::time::sleep(Duration::from_secs(2)).await;
        fake.log(&id, LogSource::Stdout, "two\n");
        fake.exit(&id, 0);
        assert_eq!(second.handle.await.expect("ends"), ShipperExit::Finished);
        assert_eq!(sink.messages(GROUP, STREAM), vec!["one", "one", "two"]);
        assert_eq!(checkpoints.load(&id).await.in_flight, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_delivery_whose_answer_was_lost_is_not_sent_again() {
        let fake = FakeRuntime::new();
        let id = running(&fake).await;
        let sink = Arc::new(RecordingLogSink::default());
        let checkpoints = CheckpointStore::in_memory();
        fake.log(&id, LogSource::Stdout, "one\n");
        sink.lose_next_answers(1, false);
        let shipper = ship(&fake, &id, &sink, &checkpoints);
        tokio::time::sleep(Duration::from_secs(3)).await;
        fake.log(&id, LogSource::Stdout, "two\n");
        fake.exit(&id, 0);
        assert_eq!(shipper.handle.await.expect("ends"), ShipperExit::Finished);
        assert_eq!(sink.messages(GROUP, STREAM), vec!["one", "two"]);
    }
}
