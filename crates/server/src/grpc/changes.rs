//! `callers.v1.ChangeService`: the change feed. `WatchChanges` catches up page by page, then
//! waits for the account's next commit: this replica's writes wake it at once
//! (`Store::committed_accounts`), other replicas' and the purge worker's are found by polling
//! with a back-off. Streams are capped per replica, send keepalives, and end with OK on
//! shutdown and at their maximum age, before the connection's own age closes it.
//!
//! Streams of one account mostly wait at the same cursor, and one commit wakes them all: their
//! reads are shared ([`Reads`]: one read per account and cursor at a time, its page handed to
//! every stream that asked), and stream reads have a budget of connections of their own, so a
//! thousand streams never take the pool from the writes.

use super::App;
use crate::convert::changes::{self, GetChangeCursor, ListChanges, WatchChanges};
use crate::error;
use callers_domain::AccountId;
use callers_proto::v1 as pb;
use callers_proto::v1::change_service_server::ChangeService;
use callers_store::{ChangePage, Store};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use metrics::gauge;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc, watch};
use tokio::time::Instant;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// Changes per stream message and per read while catching up.
const PAGE: usize = 500;
/// The first poll after a change; doubling up to [`WatchLimits::poll`] while nothing happens.
const FIRST_POLL: Duration = Duration::from_millis(50);

/// How `WatchChanges` streams behave on this replica.
#[derive(Debug, Clone)]
pub struct WatchLimits {
    /// Streams open at once; more are RESOURCE_EXHAUSTED.
    pub max_streams: usize,
    /// A stream ends with OK after this long; the client resumes with its cursor.
    pub max_age: Duration,
    /// A message without changes after this long without one.
    pub keepalive: Duration,
    /// The longest wait between two reads of the feed while nothing happens.
    pub poll: Duration,
    /// Reads of the feed for streams at once (each a pooled connection while it runs).
    pub max_reads: usize,
}

impl Default for WatchLimits {
    fn default() -> Self {
        Self {
            max_streams: 1_000,
            max_age: Duration::from_secs(300),
            keepalive: Duration::from_secs(15),
            poll: Duration::from_secs(1),
            max_reads: 4,
        }
    }
}

pub struct Changes {
    app: App,
    limits: WatchLimits,
    streams: Arc<Semaphore>,
    reads: Arc<Reads>,
    /// Turns true when the server shuts down: every stream ends.
    stopping: watch::Receiver<bool>,
}

impl Changes {
    pub fn new(app: App, limits: WatchLimits, stopping: watch::Receiver<bool>) -> Self {
        Self {
            streams: Arc::new(Semaphore::new(limits.max_streams)),
            reads: Arc::new(Reads::new(limits.max_reads)),
            app,
            limits,
            stopping,
        }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchChangesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ChangeService for Changes {
    async fn get_change_cursor(
        &self,
        request: Request<pb::GetChangeCursorRequest>,
    ) -> Result<Response<pb::GetChangeCursorResponse>, Status> {
        let cmd: GetChangeCursor = self.app.command(&request)?;
        let head = self
            .app
            .store
            .change_head(&cmd.account)
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(pb::GetChangeCursorResponse {
            cursor: changes::cursor_text(head),
        }))
    }

    async fn list_changes(
        &self,
        request: Request<pb::ListChangesRequest>,
    ) -> Result<Response<pb::ListChangesResponse>, Status> {
        let cmd: ListChanges = self.app.command(&request)?;
        let page = self
            .app
            .store
            .list_changes(&cmd.account, cmd.after, cmd.size)
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(cmd.response(&page, self.app.retention)))
    }

    type WatchChangesStream = WatchStream;

    async fn watch_changes(
        &self,
        request: Request<pb::WatchChangesRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let cmd: WatchChanges = self.app.command(&request)?;
        let permit = self.streams.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(
                "this replica serves its most change streams; retry with backoff",
            )
        })?;
        // Subscribed before the first read, so no commit between the two goes unnoticed.
        let committed = self.app.store.committed_accounts();
        // The first page here, so a bad cursor is the call's own error.
        let first = self
            .app
            .store
            .list_changes(&cmd.account, cmd.after, PAGE)
            .await
            .map_err(error::from_store)?;
        let (tx, rx) = mpsc::channel(2);
        let watcher = Watcher {
            store: self.app.store.clone(),
            reads: self.reads.clone(),
            retention: self.app.retention,
            account: cmd.account,
            after: cmd.after,
            limits: self.limits.clone(),
            committed,
            stopping: self.stopping.clone(),
            tx,
        };
        tokio::spawn(watcher.run(first, permit));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// One open stream.
struct Watcher {
    store: Store,
    reads: Arc<Reads>,
    retention: callers_domain::retention::Retention,
    account: AccountId,
    after: i64,
    limits: WatchLimits,
    committed: broadcast::Receiver<Arc<str>>,
    stopping: watch::Receiver<bool>,
    tx: mpsc::Sender<Result<pb::WatchChangesResponse, Status>>,
}

/// Why a stream stops waiting.
enum Wake {
    Look,
    End,
}

impl Watcher {
    async fn run(mut self, first: ChangePage, _permit: OwnedSemaphorePermit) {
        gauge!("callers_change_streams").increment(1.0);
        let end = Instant::now() + self.limits.max_age;
        let mut page = Some(Arc::new(first));
        let mut poll = FIRST_POLL;
        let mut last_sent = Instant::now();
        loop {
            let current = match page.take() {
                Some(p) => p,
                None => match self
                    .reads
                    .read(&self.store, &self.account, self.after)
                    .await
                {
                    Ok(p) => p,
                    Err(status) => {
                        // The client resumes from its cursor (after a pause on UNAVAILABLE).
                        let _ = self.tx.send(Err(status)).await;
                        break;
                    }
                },
            };
            let caught_up = current.caught_up(self.after);
            if !current.events.is_empty() {
                self.after = current.next(self.after);
                let message = pb::WatchChangesResponse {
                    changes: current
                        .events
                        .iter()
                        .map(|e| changes::change(e, self.retention))
                        .collect(),
                    cursor: changes::cursor_text(self.after),
                };
                if self.tx.send(Ok(message)).await.is_err() {
                    break;
                }
                last_sent = Instant::now();
                poll = FIRST_POLL;
                if !caught_up {
                    continue;
                }
            }
            let now = Instant::now();
            if now >= end {
                break;
            }
            let keepalive_at = last_sent + self.limits.keepalive;
            let wake_at = (now + poll).min(keepalive_at).min(end);
            match self.wait(wake_at).await {
                Wake::End => break,
                Wake::Look => {}
            }
            poll = (poll * 2).min(self.limits.poll);
            if Instant::now() >= keepalive_at {
                let keepalive = pb::WatchChangesResponse {
                    changes: Vec::new(),
                    cursor: changes::cursor_text(self.after),
                };
                if self.tx.send(Ok(keepalive)).await.is_err() {
                    break;
                }
                last_sent = Instant::now();
            }
        }
        gauge!("callers_change_streams").decrement(1.0);
    }

    /// Until `at`, a commit of the account on this replica, the client leaving or shutdown.
    async fn wait(&mut self, at: Instant) -> Wake {
        let account = self.account.as_str().to_owned();
        let committed = &mut self.committed;
        let ours = async {
            loop {
                match committed.recv().await {
                    Ok(a) if *a == *account => return,
                    Ok(_) => {}
                    // Missed some: one of them may have been ours.
                    Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
                }
            }
        };
        if *self.stopping.borrow() {
            return Wake::End;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(at) => Wake::Look,
            _ = ours => Wake::Look,
            _ = self.tx.closed() => Wake::End,
            _ = self.stopping.changed() => Wake::End,
        }
    }
}

type SharedRead = Shared<BoxFuture<'static, Result<Arc<ChangePage>, Status>>>;

/// The feed reads of this replica's streams: one at a time per account and cursor, shared by
/// every stream waiting for it, and at most `budget` at once.
pub(crate) struct Reads {
    pending: Mutex<HashMap<(String, i64), SharedRead>>,
    budget: Arc<Semaphore>,
}

impl Reads {
    fn new(budget: usize) -> Self {
        Self {
            pending: Mutex::default(),
            budget: Arc::new(Semaphore::new(budget.max(1))),
        }
    }

    async fn read(
        self: &Arc<Self>,
        store: &Store,
        account: &AccountId,
        after: i64,
    ) -> Result<Arc<ChangePage>, Status> {
        let key = (account.as_str().to_owned(), after);
        let read = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending
                .entry(key.clone())
                .or_insert_with(|| {
                    let (reads, store, account) = (self.clone(), store.clone(), account.clone());
                    // A task of its own, so the read ends (and leaves `pending`) even when every
                    // stream waiting for it went away.
                    let task = tokio::spawn(async move {
                        let page = {
                            let _turn = reads.budget.acquire().await;
                            store.list_changes(&account, after, PAGE).await
                        };
                        // Later streams at this cursor read anew: the feed may have grown.
                        reads
                            .pending
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&(account.as_str().to_owned(), after));
                        page.map(Arc::new).map_err(error::from_store)
                    });
                    async move {
                        task.await
                            .unwrap_or_else(|_| Err(Status::unavailable("the read was cancelled")))
                    }
                    .boxed()
                    .shared()
                })
                .clone()
        };
        read.await
    }
}
