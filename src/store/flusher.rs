//! [`GroupFlusher`]: group commit for write-through mode. A request handler writes to the
//! [`Store`], then awaits [`GroupFlusher::flush`] before sending its 2xx; concurrent callers
//! share one underlying [`Store::flush`] (sled's flush is database-wide, so one covers every
//! write made before it started).
//!
//! # Invariants
//!
//! * A caller is released only by a flush that **started after the caller called `flush`**
//!   (so after its write): a flush already running when the caller arrives does not count;
//!   the caller waits for the next one.
//! * At most one `Store::flush` runs at a time. While one runs, any number of callers
//!   register for the next; it starts as soon as the running one ends, and covers them all.
//! * Flushes are numbered 1, 2, … in start order. `state.started` is the number of the last
//!   started flush; the `Progress` published on the watch channel says which flush ended
//!   last and which was the last to succeed.
//! * The flush loop runs on tokio's blocking pool (`spawn_blocking`), never on the caller's
//!   thread, and does not depend on any caller staying alive: a caller that is cancelled
//!   (its future dropped) strands nobody. A failed flush fails every caller it would have
//!   released (a later caller gets a fresh attempt); a flush task the runtime refuses to run
//!   (shutdown) fails its waiters instead of leaving them waiting forever.
//! * The state lock is a `std` mutex held for a few statements and never across an await;
//!   waiting is on a `tokio::sync::watch` channel.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use super::{Store, StoreError};

/// Shares one durable flush among concurrent write-through requests.
pub struct GroupFlusher {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    state: Mutex<State>,
    done: watch::Sender<Progress>,
}

/// Who is flushing. Only touched in short critical sections, never across an await.
#[derive(Default)]
struct State {
    /// Number of the last flush started (0 = none yet).
    started: u64,
    /// A flush is running on the blocking pool.
    running: bool,
    /// Some caller arrived while a flush was running: start another when it ends.
    pending: bool,
}

/// Published after every flush.
#[derive(Clone, Debug, Default)]
struct Progress {
    /// Number of the last flush that ended.
    completed: u64,
    /// Number of the last flush that succeeded (0 = none).
    last_ok: u64,
    /// The error of the last failed flush.
    last_err: Option<String>,
}

impl GroupFlusher {
    /// A flusher over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        let (done, _) = watch::channel(Progress::default());
        GroupFlusher {
            inner: Arc::new(Inner {
                store,
                state: Mutex::new(State::default()),
                done,
            }),
        }
    }

    /// Returns once every write made before this call is durable, sharing the underlying
    /// flush with concurrent callers. Must be polled inside a tokio runtime (actix's is one);
    /// otherwise it fails with [`StoreError::Backend`].
    pub async fn flush(&self) -> Result<(), StoreError> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| StoreError::Backend("flush needs a tokio runtime".into()))?;
        let mut rx = self.inner.done.subscribe();
        let (target, start) = {
            let mut s = self.inner.lock();
            let target = s.started + 1;
            let start = !s.running;
            if start {
                s.started = target;
                s.running = true;
            } else {
                s.pending = true;
            }
            (target, start)
        };
        if start {
            let runner = Runner {
                inner: Arc::clone(&self.inner),
                next: Some(target),
            };
            // Spawned with the state lock released: a runner dropped unrun locks it. The loop
            // reports on the watch channel, so its JoinHandle is not needed.
            drop(handle.spawn_blocking(move || runner.run()));
        }
        let progress = rx
            .wait_for(|p| p.completed >= target)
            .await
            .map_err(|_| StoreError::Backend("flusher stopped".into()))?;
        if progress.last_ok >= target {
            Ok(())
        } else {
            let why = progress.last_err.clone().unwrap_or_default();
            Err(StoreError::Backend(format!("flush failed: {why}")))
        }
    }

    /// Number of underlying flushes that have ended (succeeded or failed).
    pub fn flushes(&self) -> u64 {
        self.inner.done.borrow().completed
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // State is consistent between statements; a panic elsewhere leaves it usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The flush loop, moved to the blocking pool. If it is dropped without running (the runtime
/// is shutting down), its `Drop` fails every waiting caller instead of stranding them.
struct Runner {
    inner: Arc<Inner>,
    /// The flush to run next; `None` once the loop has handed `running` back.
    next: Option<u64>,
}

impl Runner {
    /// Flushes number `next`, publishes, and goes on while callers arrived meanwhile.
    fn run(mut self) {
        while let Some(n) = self.next {
            let store = &self.inner.store;
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| store.flush()))
                .unwrap_or_else(|_| Err(StoreError::Backend("flush panicked".into())));
            if let Err(e) = &result {
                tracing::error!(error = %e, flush = n, "store flush failed");
            }
            // Publish and decide under the state lock, so that a caller registering now
            // either sees `running` (and is covered by the next flush) or starts its own.
            let mut s = self.inner.lock();
            self.inner.done.send_modify(|p| {
                p.completed = n;
                match result {
                    Ok(_) => p.last_ok = n,
                    Err(e) => p.last_err = Some(e.to_string()),
                }
            });
            if s.pending {
                s.pending = false;
                s.started += 1;
                self.next = Some(s.started);
            } else {
                s.running = false;
                self.next = None;
            }
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        if self.next.take().is_none() {
            return;
        }
        let mut s = self.inner.lock();
        // Every waiter targets at most `started`, or `started + 1` when pending.
        let last = s.started + u64::from(s.pending);
        s.started = last;
        s.running = false;
        s.pending = false;
        self.inner.done.send_modify(|p| {
            p.completed = last;
            p.last_err = Some("flush task did not run (runtime shutting down)".into());
        });
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::ids::{DialogId, ETag, EventKey, PresentityUri};
    use crate::presence::publication::Publication;
    use crate::presence::subscription::DialogState;
    use crate::store::PublicationRow;

    /// Counts writes and flushes. A flush makes durable the writes made before it started.
    #[derive(Default)]
    struct FakeStore {
        writes: AtomicU64,
        durable: AtomicU64,
        flushes: AtomicU64,
        flush_started: AtomicU64,
        fail: AtomicBool,
        delay_ms: u64,
        /// When set, each flush waits for one token before it ends.
        gate: Option<Mutex<mpsc::Receiver<()>>>,
    }

    impl FakeStore {
        /// A write; returns its sequence number (1, 2, …).
        fn write(&self) -> u64 {
            self.writes.fetch_add(1, SeqCst) + 1
        }
    }

    impl Store for FakeStore {
        fn put_publication(
            &self,
            _: &PresentityUri,
            _: &EventKey,
            _: &Publication,
        ) -> Result<(), StoreError> {
            Ok(())
        }
        fn delete_publication(
            &self,
            _: &PresentityUri,
            _: &EventKey,
            _: &ETag,
        ) -> Result<(), StoreError> {
            Ok(())
        }
        fn publications(
            &self,
            _: &PresentityUri,
            _: &EventKey,
        ) -> Result<Vec<Publication>, StoreError> {
            Ok(Vec::new())
        }
        fn put_subscription(&self, _: &DialogState) -> Result<(), StoreError> {
            Ok(())
        }
        fn delete_subscription(
            &self,
            _: &PresentityUri,
            _: &EventKey,
            _: &DialogId,
        ) -> Result<(), StoreError> {
            Ok(())
        }
        fn scan_subscriptions(
            &self,
            _: Option<&[u8]>,
            _: usize,
        ) -> Result<(Vec<DialogState>, Option<Vec<u8>>), StoreError> {
            Ok((Vec::new(), None))
        }
        fn scan_publications(
            &self,
            _: Option<&[u8]>,
            _: usize,
        ) -> Result<(Vec<PublicationRow>, Option<Vec<u8>>), StoreError> {
            Ok((Vec::new(), None))
        }
        fn put_rules(&self, _: &PresentityUri, _: &[u8]) -> Result<(), StoreError> {
            Ok(())
        }
        fn delete_rules(&self, _: &PresentityUri) -> Result<(), StoreError> {
            Ok(())
        }
        fn rules(&self, _: &PresentityUri) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(None)
        }
        fn subscription(
            &self,
            _: &PresentityUri,
            _: &EventKey,
            _: &DialogId,
        ) -> Result<Option<DialogState>, StoreError> {
            Ok(None)
        }
        fn put_watcher(
            &self,
            _: &PresentityUri,
            _: &EventKey,
            _: &crate::store::WatcherRecord,
        ) -> Result<(), StoreError> {
            Ok(())
        }
        fn delete_watcher(
            &self,
            _: &PresentityUri,
            _: &EventKey,
            _: &PresentityUri,
        ) -> Result<(), StoreError> {
            Ok(())
        }
        fn watchers(
            &self,
            _: &PresentityUri,
            _: &EventKey,
        ) -> Result<Vec<crate::store::WatcherRecord>, StoreError> {
            Ok(Vec::new())
        }
        fn flush(&self) -> Result<usize, StoreError> {
            self.flush_started.fetch_add(1, SeqCst);
            let covered = self.writes.load(SeqCst);
            std::thread::sleep(Duration::from_millis(self.delay_ms));
            if let Some(gate) = &self.gate {
                let _ = gate.lock().unwrap().recv();
            }
            self.flushes.fetch_add(1, SeqCst);
            if self.fail.load(SeqCst) {
                return Err(StoreError::Backend("disk on fire".into()));
            }
            self.durable.fetch_max(covered, SeqCst);
            Ok(0)
        }
    }

    #[tokio::test]
    async fn concurrent_callers_share_flushes_and_each_write_is_covered() {
        let store = Arc::new(FakeStore {
            delay_ms: 2,
            ..FakeStore::default()
        });
        let flusher = Arc::new(GroupFlusher::new(store.clone()));
        let mut tasks = Vec::new();
        for i in 0..100u64 {
            let (store, flusher) = (store.clone(), flusher.clone());
            tasks.push(tokio::spawn(async move {
                for round in 0..3u64 {
                    if (i + round) % 3 == 0 {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    let w = store.write();
                    flusher.flush().await.unwrap();
                    let durable = store.durable.load(SeqCst);
                    assert!(durable >= w, "write {w} released at durable {durable}");
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let flushes = store.flushes.load(SeqCst);
        assert!(
            (1..=30).contains(&flushes),
            "300 calls took {flushes} flushes"
        );
        assert_eq!(flusher.flushes(), flushes);
    }

    #[tokio::test]
    async fn a_flush_started_before_the_call_does_not_release_it() {
        let (tokens, gate) = mpsc::channel();
        let store = Arc::new(FakeStore {
            gate: Some(Mutex::new(gate)),
            ..FakeStore::default()
        });
        let flusher = Arc::new(GroupFlusher::new(store.clone()));
        store.write();
        let f = flusher.clone();
        let first = tokio::spawn(async move { f.flush().await });
        while store.flush_started.load(SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Flush 1 is running (held at the gate); this write comes after its start.
        let w2 = store.write();
        let f = flusher.clone();
        let second = tokio::spawn(async move { f.flush().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        tokens.send(()).unwrap();
        first.await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !second.is_finished(),
            "released by a flush that predates its write"
        );
        assert!(store.durable.load(SeqCst) < w2);
        tokens.send(()).unwrap();
        second.await.unwrap().unwrap();
        assert!(store.durable.load(SeqCst) >= w2);
        assert_eq!(store.flushes.load(SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_flush_fails_its_callers_and_the_next_one_recovers() {
        let store = Arc::new(FakeStore::default());
        store.fail.store(true, SeqCst);
        let flusher = GroupFlusher::new(store.clone());
        let err = flusher.flush().await.unwrap_err();
        assert!(err.to_string().contains("disk on fire"), "{err}");
        store.fail.store(false, SeqCst);
        flusher.flush().await.unwrap();
        assert_eq!(store.flushes.load(SeqCst), 2);
    }

    #[test]
    fn outside_a_runtime_flush_is_an_error_not_a_panic() {
        let flusher = GroupFlusher::new(Arc::new(FakeStore::default()));
        let fut = flusher.flush();
        // A minimal executor: poll once with a no-op waker, outside any tokio runtime.
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut fut = std::pin::pin!(fut);
        match fut.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(Err(StoreError::Backend(m))) => assert!(m.contains("runtime")),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn a_runtime_shutting_down_fails_the_flush_instead_of_stranding_callers() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let handle = rt.handle().clone();
        drop(rt);
        let _entered = handle.enter();
        let store = Arc::new(FakeStore::default());
        let flusher = GroupFlusher::new(store.clone());
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        for _ in 0..2 {
            let mut fut = std::pin::pin!(flusher.flush());
            match fut.as_mut().poll(&mut cx) {
                std::task::Poll::Ready(Err(StoreError::Backend(m))) => {
                    assert!(m.contains("did not run"), "{m}")
                }
                other => panic!("expected an error, got {other:?}"),
            }
        }
        assert_eq!(store.flushes.load(SeqCst), 0);
    }
}
