//! The dashboard pushed to every open page. One task reads the engine (one shared
//! [`super::dashboard`] read) at an interval, and only while someone watches; each page gets the
//! same serialised answer through a `watch` channel, however many there are. The server streams
//! it as server-sent events; actions ask for a read at once ([`DashboardFeed::refresh_now`]) so
//! that a WAL switch shows without waiting for the next tick.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

/// How often the open dashboards get a new read.
pub const INTERVAL: Duration = Duration::from_secs(2);

/// One read, serialised once for every page.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub read: Instant,
    /// The [`crate::model::DashboardView`] as JSON.
    pub json: Arc<str>,
}

#[derive(Clone)]
pub struct DashboardFeed {
    inner: Arc<Inner>,
}

struct Inner {
    tx: watch::Sender<Option<Snapshot>>,
    wake: Notify,
    closed: AtomicBool,
}

impl DashboardFeed {
    /// Starts the reading task (it lives as long as the feed is open).
    pub fn start(engine: engine::Engine, every: Duration) -> Self {
        let (tx, _) = watch::channel(None);
        let inner = Arc::new(Inner {
            tx,
            wake: Notify::new(),
            closed: AtomicBool::new(false),
        });
        let task = Arc::clone(&inner);
        tokio::spawn(async move {
            while !task.closed.load(Ordering::SeqCst) {
                if task.tx.receiver_count() > 0 {
                    let read = Instant::now();
                    let view = super::dashboard(&engine).await;
                    match serde_json::to_string(&view) {
                        Ok(json) => {
                            task.tx.send_replace(Some(Snapshot {
                                read,
                                json: json.into(),
                            }));
                        }
                        Err(e) => tracing::error!(error = %e, "cannot serialise the dashboard"),
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = task.wake.notified() => {}
                }
            }
        });
        Self { inner }
    }

    /// A page's subscription: the latest read at once when it is recent, then every new one.
    pub fn subscribe(&self) -> watch::Receiver<Option<Snapshot>> {
        let mut rx = self.inner.tx.subscribe();
        let fresh = rx
            .borrow()
            .as_ref()
            .is_some_and(|s| s.read.elapsed() < INTERVAL);
        if fresh {
            rx.mark_changed();
        } else {
            self.refresh_now();
        }
        rx
    }

    /// Reads again now instead of at the next tick (an action just changed something).
    pub fn refresh_now(&self) {
        self.inner.wake.notify_one();
    }

    /// Stops the task and ends every page's stream (the server is shutting down).
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.tx.send_replace(None);
        self.inner.wake.notify_one();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }
}
