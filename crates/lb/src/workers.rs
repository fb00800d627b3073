//! The data path's worker threads, one per core by default: each runs a current-thread Tokio
//! runtime, and every accepted client connection is handed to one of them (round robin) and
//! stays there, together with the target connections it uses. A request's whole life then
//! happens on one thread, with one reactor: no work stealing, no cross-thread wake-ups, and
//! uncontended locks. (The node's other tasks, such as the routes loop and health checks, stay
//! on the runtime that started the node.)
//!
//! Pooled target connections are kept per worker (see [`current_worker`]): a connection is
//! registered with the reactor of the worker that opened it, so it is only reused there.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a worker waits at shutdown for its connections to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

thread_local! {
    /// 1 + the worker index on worker threads, 0 elsewhere.
    static WORKER_SLOT: Cell<usize> = const { Cell::new(0) };
}

/// This thread's slot in per-worker structures: 0 off the workers, `1..=count` on them.
pub fn current_worker() -> usize {
    WORKER_SLOT.with(Cell::get)
}

struct Worker {
    handle: Handle,
    /// The tasks on this worker, waited for (up to the grace period) before it exits.
    tasks: TaskTracker,
}

/// The worker threads of one node.
pub struct Workers {
    workers: Vec<Worker>,
    next: AtomicUsize,
    /// The node's tracker: tasks spawned on workers count as the node's.
    node_tasks: TaskTracker,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("count", &self.workers.len())
            .finish_non_exhaustive()
    }
}

impl Workers {
    /// Starts `count` worker threads (none: tasks run on the caller's runtime). They stop
    /// once `cancel` is cancelled and their tasks are done (or the grace period is over).
    pub fn start(
        count: usize,
        node_tasks: TaskTracker,
        cancel: CancellationToken,
    ) -> std::io::Result<Workers> {
        let mut workers = Vec::with_capacity(count);
        for index in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let tasks = TaskTracker::new();
            workers.push(Worker {
                handle: runtime.handle().clone(),
                tasks: tasks.clone(),
            });
            let cancel = cancel.clone();
            std::thread::Builder::new()
                .name(format!("wharf-lb-{index}"))
                .spawn(move || {
                    WORKER_SLOT.with(|slot| slot.set(index + 1));
                    runtime.block_on(async {
                        cancel.cancelled().await;
                        tasks.close();
                        let _ = tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait()).await;
                    });
                })?;
        }
        Ok(Workers {
            workers,
            next: AtomicUsize::new(0),
            node_tasks,
        })
    }

    /// How many slots per-worker structures need ([`current_worker`]'s range).
    pub fn slots(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `future` on the next worker (on the current runtime without workers).
    pub fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let future = self.node_tasks.track_future(future);
        if self.workers.is_empty() {
            tokio::spawn(future);
            return;
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        let worker = &self.workers[index];
        worker.handle.spawn(worker.tasks.track_future(future));
    }
}
