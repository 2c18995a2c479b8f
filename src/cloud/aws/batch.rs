//! Shared describes: callers ask for one id and await its answer; one task gathers the ids asked
//! for within a short window and makes one EC2 call for all of them. N volumes waiting to become
//! available cost one DescribeVolumes per poll, not N.
//!
//! What is guaranteed whatever the scheduling: every id asked for before a window closes is in
//! the call made when it closes (up to [`MAX_BATCH`] ids, the rest go in the next window's call);
//! a call carries each id once; a call runs on its own, so the next window gathers meanwhile.
//! How many asks fall into one 20 ms window is up to the clock and the scheduler, so the tests
//! close the windows themselves ([`Batcher::with_window`]).

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

pub type Fetch<T> =
    Arc<dyn Fn(Vec<String>) -> Pin<Box<dyn Future<Output = Result<HashMap<String, T>>> + Send>> + Send + Sync>;
type Waiter<T> = (String, oneshot::Sender<Result<Option<T>>>);
/// What a batch waits for once its first id is asked for: [`WINDOW`] of the clock, or in the
/// tests a window they close by hand.
type Window = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

pub struct Batcher<T> {
    tx: mpsc::UnboundedSender<Waiter<T>>,
}

impl<T: Clone + Send + 'static> Batcher<T> {
    /// `fetch` looks up many ids in one call; ids it does not return do not exist.
    pub fn new(fetch: Fetch<T>) -> Self {
        Self::with_window(fetch, Arc::new(|| Box::pin(tokio::time::sleep(WINDOW))))
    }

    /// One call per id, at once (`--batching=false`).
    pub fn unbatched(fetch: Fetch<T>) -> Self {
        Self::gathering(fetch, Arc::new(|| Box::pin(std::future::ready(()))), 1)
    }

    /// As [`Batcher::new`], each batch gathering until `window` completes.
    fn with_window(fetch: Fetch<T>, window: Window) -> Self {
        Self::gathering(fetch, window, MAX_BATCH)
    }

    fn gathering(fetch: Fetch<T>, window: Window, most: usize) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Waiter<T>>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                window().await;
                let mut waiters = vec![first];
                while waiters.len() < most {
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
        self.ask(id)?.await
    }

    /// Queues the id at once (it is in the batch of the next window to close); the answer comes
    /// when that batch's call does.
    fn ask(&self, id: &str) -> Result<impl Future<Output = Result<Option<T>>> + use<T>> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((id.to_owned(), reply))
            .map_err(|_| Error::Internal("the describe batcher has stopped".into()))?;
        Ok(async move {
            answer
                .await
                .map_err(|_| Error::Internal("the describe batcher dropped a request".into()))?
        })
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
    use std::sync::Mutex;
    use tokio::sync::Semaphore;

    /// A batcher whose windows the test closes (one permit of `windows` closes one) and whose
    /// calls it sees (the ids of each, in order, on `calls`); `gate`, when given, holds every
    /// call until the test adds a permit for it. No clock is involved.
    struct Rig {
        batcher: Batcher<String>,
        windows: Arc<Semaphore>,
        calls: mpsc::UnboundedReceiver<Vec<String>>,
        seen: Arc<Mutex<usize>>,
    }

    fn rig(gate: Option<Arc<Semaphore>>) -> Rig {
        let windows = Arc::new(Semaphore::new(0));
        let (calls_tx, calls) = mpsc::unbounded_channel();
        let seen = Arc::new(Mutex::new(0));
        let counted = seen.clone();
        let fetch: Fetch<String> = Arc::new(move |ids: Vec<String>| {
            *counted.lock().unwrap() += 1;
            let _ = calls_tx.send(ids.clone());
            let gate = gate.clone();
            Box::pin(async move {
                if let Some(g) = gate {
                    g.acquire().await.unwrap().forget();
                }
                if ids.iter().any(|i| i == "fail") {
                    return Err(Error::Unavailable("EC2 throttled the call".into()));
                }
                Ok(ids
                    .into_iter()
                    .filter(|i| i != "missing")
                    .map(|i| (i.clone(), format!("got {i}")))
                    .collect())
            })
        });
        let w = windows.clone();
        let window: Window = Arc::new(move || {
            let w = w.clone();
            Box::pin(async move { w.acquire().await.unwrap().forget() })
        });
        Rig {
            batcher: Batcher::with_window(fetch, window),
            windows,
            calls,
            seen,
        }
    }

    #[tokio::test]
    async fn ids_asked_before_the_window_closes_share_one_call() {
        let mut r = rig(None);
        let mut answers = Vec::new();
        for n in 0..40 {
            answers.push((n, r.batcher.ask(&format!("vol-{n}")).unwrap()));
        }
        let again = r.batcher.ask("vol-7").unwrap();
        let missing = r.batcher.ask("missing").unwrap();
        r.windows.add_permits(1);
        // The call first: a batcher that split these asks would leave the rest waiting for
        // windows this test never closes.
        let call = r.calls.recv().await.unwrap();
        assert_eq!(
            call.len(),
            41,
            "42 asks in one window are one call, each id once: {call:?}"
        );
        for (n, a) in answers {
            assert_eq!(a.await.unwrap(), Some(format!("got vol-{n}")));
        }
        assert_eq!(
            again.await.unwrap(),
            Some("got vol-7".into()),
            "an id asked twice, answered twice"
        );
        assert_eq!(
            missing.await.unwrap(),
            None,
            "an id the call does not return does not exist"
        );
        assert_eq!(*r.seen.lock().unwrap(), 1);
    }

    #[tokio::test]
    async fn a_full_batch_leaves_the_rest_for_the_next_window() {
        let mut r = rig(None);
        let answers: Vec<_> = (0..450).map(|n| r.batcher.ask(&format!("vol-{n}")).unwrap()).collect();
        r.windows.add_permits(1);
        assert_eq!(r.calls.recv().await.unwrap().len(), MAX_BATCH);
        r.windows.add_permits(2);
        assert_eq!(r.calls.recv().await.unwrap().len(), MAX_BATCH);
        assert_eq!(r.calls.recv().await.unwrap().len(), 50);
        for a in answers {
            assert!(a.await.unwrap().is_some());
        }
        assert_eq!(*r.seen.lock().unwrap(), 3);
    }

    #[tokio::test]
    async fn asks_made_during_a_call_gather_for_the_next_one() {
        let gate = Arc::new(Semaphore::new(0));
        let mut r = rig(Some(gate.clone()));
        let first = r.batcher.ask("vol-a").unwrap();
        r.windows.add_permits(1);
        assert_eq!(r.calls.recv().await.unwrap(), ["vol-a"]);
        // The first call has not answered: the next window gathers and calls regardless.
        let (b, c) = (r.batcher.ask("vol-b").unwrap(), r.batcher.ask("vol-c").unwrap());
        r.windows.add_permits(1);
        assert_eq!(r.calls.recv().await.unwrap(), ["vol-b", "vol-c"]);
        gate.add_permits(2);
        assert_eq!(first.await.unwrap(), Some("got vol-a".into()));
        assert_eq!(b.await.unwrap(), Some("got vol-b".into()));
        assert_eq!(c.await.unwrap(), Some("got vol-c".into()));
    }

    #[tokio::test]
    async fn a_failed_call_fails_every_ask_in_it() {
        let mut r = rig(None);
        let asks = [r.batcher.ask("vol-a").unwrap(), r.batcher.ask("fail").unwrap()];
        r.windows.add_permits(1);
        for a in asks {
            assert!(matches!(a.await, Err(Error::Unavailable(_))));
        }
        let later = r.batcher.ask("vol-a").unwrap();
        r.windows.add_permits(1);
        assert_eq!(
            later.await.unwrap(),
            Some("got vol-a".into()),
            "the next window calls again"
        );
        assert_eq!(r.calls.recv().await.unwrap().len(), 2);
        assert_eq!(r.calls.recv().await.unwrap(), ["vol-a"]);
    }

    #[tokio::test]
    async fn the_clock_window_answers_every_ask() {
        // The production window: how asks spread over windows depends on the scheduler, so only
        // the answers are checked here.
        let batcher: Arc<Batcher<String>> = Arc::new(Batcher::new(Arc::new(|ids: Vec<String>| {
            Box::pin(async move { Ok(ids.into_iter().map(|i| (i.clone(), i)).collect()) })
        })));
        let tasks: Vec<_> = (0..20)
            .map(|n| {
                let b = batcher.clone();
                tokio::spawn(async move { b.get(&format!("vol-{n}")).await })
            })
            .collect();
        for (n, t) in tasks.into_iter().enumerate() {
            assert_eq!(t.await.unwrap().unwrap(), Some(format!("vol-{n}")));
        }
    }
}
