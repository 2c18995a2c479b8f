//! Resizes and modifications: changes of one volume arriving together become one ModifyVolume.

use super::*;

/// An expand and a modify of one volume arriving together become one ModifyVolume: EC2 allows
/// one modification per volume every six hours, so two calls would fail the second.
#[derive(Default)]
pub(super) struct PendingChange {
    size: Option<u64>,
    change: Modification,
    waiters: Vec<tokio::sync::oneshot::Sender<Result<()>>>,
}

pub(super) type ChangeWaiter = tokio::sync::oneshot::Sender<Result<()>>;

/// The changes queued per volume. Whatever the timing, every change queued before the first
/// one's caller takes them is in what it takes; a change queued after starts the next batch.
#[derive(Default)]
pub(super) struct Pending(Mutex<HashMap<String, PendingChange>>);

impl Pending {
    /// Adds a change; true for the first of its volume, whose caller takes and sends them all.
    fn queue(&self, id: &str, size: Option<u64>, change: Modification, waiter: ChangeWaiter) -> bool {
        let mut pending = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let first = !pending.contains_key(id);
        let p = pending.entry(id.to_owned()).or_default();
        p.size = p.size.max(size);
        p.change.volume_type = change.volume_type.or(p.change.volume_type);
        p.change.iops = change.iops.or(p.change.iops);
        p.change.throughput = change.throughput.or(p.change.throughput);
        p.change.tags.extend(change.tags);
        p.waiters.push(waiter);
        first
    }

    /// Everything queued for the volume, merged.
    fn take(&self, id: &str) -> PendingChange {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
            .unwrap_or_default()
    }
}

impl AwsCloud {
    /// Queues a size and/or performance change; the first caller for a volume waits a moment,
    /// then sends everything queued for it as one ModifyVolume and tells every caller the result.
    pub(super) async fn change_volume(&self, id: &str, size: Option<u64>, change: Modification) -> Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.pending.queue(id, size, change, tx) {
            tokio::time::sleep(self.modify_window).await;
            let merged = self.pending.take(id);
            let result = self.modify_volume(id, merged.size, &merged.change).await;
            for w in merged.waiters {
                let _ = w.send(match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(batch::copy(e)),
                });
            }
        }
        rx.await
            .map_err(|_| Error::Internal(format!("the change of volume {id} was dropped")))?
    }

    pub(super) async fn modify_volume(&self, id: &str, size: Option<u64>, change: &Modification) -> Result<()> {
        if size.is_none() && change.volume_type.is_none() && change.iops.is_none() && change.throughput.is_none() {
            return Ok(());
        }
        let out = self
            .retrier
            .send("ModifyVolume", false, || {
                self.ec2
                    .modify_volume()
                    .volume_id(id)
                    .set_size(size.map(|s| s as i32))
                    .set_volume_type(change.volume_type.map(|t| ec2::VolumeType::from(t.as_str())))
                    .set_iops(change.iops.map(|i| i as i32))
                    .set_throughput(change.throughput.map(|t| t as i32))
                    .send()
            })
            .await;
        match out {
            Ok(_) => self.wait_modification(id).await,
            Err(e) => {
                let code = errors::code_of(&e).map(str::to_owned);
                let err = errors::map(&format!("modifying volume {id}"), e);
                match code.as_deref() {
                    // A modification already running (ours, retried): wait for it instead.
                    Some("IncorrectModificationState") => {
                        self.wait_modification(id).await?;
                        Err(Error::Aborted(format!(
                            "volume {id} had a modification under way; retry to apply this one"
                        )))
                    }
                    Some("VolumeModificationRateExceeded") => Err(Error::ResourceExhausted(format!(
                        "{err}; EBS allows one modification per volume every 6 hours: retry after that"
                    ))),
                    _ => Err(err),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_queued_before_the_take_become_one_modification() {
        use tokio::sync::oneshot;
        let pending = Pending::default();
        let (expand, expanded) = oneshot::channel();
        let (modify, modified) = oneshot::channel();
        let iops = Modification {
            iops: Some(5000),
            ..Default::default()
        };
        assert!(
            pending.queue("vol-1", Some(30), Modification::default(), expand),
            "the first sends"
        );
        assert!(!pending.queue("vol-1", None, iops.clone(), modify), "the second waits");
        let (other, _) = oneshot::channel();
        assert!(
            pending.queue("vol-2", Some(5), Modification::default(), other),
            "volumes apart"
        );
        let merged = pending.take("vol-1");
        assert_eq!((merged.size, merged.change.iops), (Some(30), Some(5000)));
        assert_eq!(merged.waiters.len(), 2);
        for w in merged.waiters {
            w.send(Ok(())).unwrap();
        }
        assert!(expanded.blocking_recv().unwrap().is_ok() && modified.blocking_recv().unwrap().is_ok());
        // Queued after the take: the start of the next modification, not lost.
        let (late, _) = oneshot::channel();
        assert!(pending.queue("vol-1", None, iops, late));
        assert_eq!(pending.take("vol-1").change.iops, Some(5000));
    }
}
