//! `callers.v1.ChangeService`: the change feed. `WatchChanges` catches up page by page, then
//! waits for the account's next commit: this replica's writes wake it at once
//! (`Store::committed_accounts`), other replicas' and the purge worker's are found by polling
//! with a back-off. Streams are capped per replica, send keepalives, and end with OK on
//! shutdown and at their maximum age, before the connection's own age closes it.

use super::App;
use crate::convert::changes::{self, GetChangeCursor, ListChanges, WatchChanges};
use crate::error;
use callers_domain::AccountId;
use callers_proto::v1 as pb;
use callers_proto::v1::change_service_server::ChangeService;
use callers_store::Store;
use metrics::gauge;
use std::pin::Pin;
use std::sync::Arc;
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
}

impl Default for WatchLimits {
    fn default() -> Self {
        Self {
            max_streams: 1_000,
            max_age: Duration::from_secs(300),
            keepalive: Duration::from_secs(15),
            poll: Duration::from_secs(1),
        }
    }
}

pub struct Changes {
    app: App,
    limits: WatchLimits,
    streams: Arc<Semaphore>,
    /// Turns true when the server shuts down: every stream ends.
    stopping: watch::Receiver<bool>,
}

impl Changes {
    pub fn new(app: App, limits: WatchLimits, stopping: watch::Receiver<bool>) -> Self {
        Self {
            streams: Arc::new(Semaphore::new(limits.max_streams)),
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
    async fn run(mut self, first: callers_store::ChangePage, _permit: OwnedSemaphorePermit) {
        gauge!("callers_change_streams").increment(1.0);
        let end = Instant::now() + self.limits.max_age;
        let mut page = Some(first);
        let mut poll = FIRST_POLL;
        let mut last_sent = Instant::now();
        loop {
            let current = match page.take() {
                Some(p) => p,
                None => match self
                    .store
                    .list_changes(&self.account, self.after, PAGE)
                    .await
                {
                    Ok(p) => p,
                    Err(e) => {
                        // The client resumes from its cursor (after a pause on UNAVAILABLE).
                        let _ = self.tx.send(Err(error::from_store(e))).await;
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
