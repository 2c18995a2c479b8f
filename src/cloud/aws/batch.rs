//! Shared describes: callers ask for one id and await its answer; one task gathers the ids asked
//! for within a short window and makes one EC2 call for all of them. N volumes waiting to become
//! available cost one DescribeVolumes per poll, not N.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};

/// How long the first request of a batch waits for company.
const WINDOW: Duration = Duration::from_millis(20);
/// EC2's most values for one filter.
const MAX_BATCH: usize = 200;

type Fetch<T> =
    Arc<dyn Fn(Vec<String>) -> Pin<Box<dyn Future<Output = Result<HashMap<String, T>>> + Send>> + Send + Sync>;
type Waiter<T> = (String, oneshot::Sender<Result<Option<T>>>);

pub struct Batcher<T> {
    tx: mpsc::UnboundedSender<Waiter<T>>,
}

impl<T: Clone + Send + 'static> Batcher<T> {
    /// `fetch` looks up many ids in one call; ids it does not return do not exist.
    pub fn new(fetch: Fetch<T>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Waiter<T>>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                tokio::time::sleep(WINDOW).await;
                let mut waiters = vec![first];
                while waiters.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(w) => waiters.push(w),
                        Err(_) => break,
                    }
                }
                let mut ids: Vec<String> = waiters.iter().map(|(id, _)| id.clone()).collect();
                ids.sort();
                ids.dedup();
                let fetch = fetch.clone();
                // The call runs on its own so the next batch can gather meanwhile.
                tokio::spawn(async move {
                    match fetch(ids).await {
                        Ok(found) => {
                            for (id, reply) in waiters {
                                let _ = reply.send(Ok(found.get(&id).cloned()));
                            }
                        }
                        Err(e) => {
                            for (_, reply) in waiters {
                                let _ = reply.send(Err(copy(&e)));
                            }
                        }
                    }
                });
            }
        });
        Batcher { tx }
    }

    /// The object with this id, None when it does not exist.
    pub async fn get(&self, id: &str) -> Result<Option<T>> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((id.to_owned(), reply))
            .map_err(|_| Error::Internal("the describe batcher has stopped".into()))?;
        answer
            .await
            .map_err(|_| Error::Internal("the describe batcher dropped a request".into()))?
    }
}

/// The same error for every waiter of a failed batch.
pub fn copy(e: &Error) -> Error {
    match e {
        Error::InvalidArgument(m) => Error::InvalidArgument(m.clone()),
        Error::OutOfRange(m) => Error::OutOfRange(m.clone()),
        Error::NotFound(m) => Error::NotFound(m.clone()),
        Error::AlreadyExists(m) => Error::AlreadyExists(m.clone()),
        Error::FailedPrecondition(m) => Error::FailedPrecondition(m.clone()),
        Error::ResourceExhausted(m) => Error::ResourceExhausted(m.clone()),
        Error::Aborted(m) => Error::Aborted(m.clone()),
        Error::Unavailable(m) => Error::Unavailable(m.clone()),
        Error::Unimplemented(m) => Error::Unimplemented(m.clone()),
        Error::Internal(m) => Error::Internal(m.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_gets_share_one_fetch() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let batcher: Arc<Batcher<String>> = Arc::new(Batcher::new(Arc::new(move |ids: Vec<String>| {
            counter.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                Ok(ids
                    .into_iter()
                    .filter(|i| i != "missing")
                    .map(|i| (i.clone(), format!("got {i}")))
                    .collect())
            })
        })));
        let mut tasks = Vec::new();
        for n in 0..40 {
            let b = batcher.clone();
            tasks.push(tokio::spawn(async move { b.get(&format!("vol-{n}")).await }));
        }
        for (n, t) in tasks.into_iter().enumerate() {
            assert_eq!(t.await.unwrap().unwrap(), Some(format!("got vol-{n}")));
        }
        assert_eq!(batcher.get("missing").await.unwrap(), None);
        assert!(
            calls.load(Ordering::SeqCst) <= 3,
            "{} fetches for 41 gets",
            calls.load(Ordering::SeqCst)
        );
    }
}
