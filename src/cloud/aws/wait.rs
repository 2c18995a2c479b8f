//! Waiting for EC2 to finish: volumes, attachments and modifications, polled on one shared grid
//! of ticks so that every waiter's describe joins the same batch.

use super::*;

/// How long a volume, attachment or modification is waited for before the call gives up (the
/// CO retries, and the retry finds the work already under way).
pub(super) const WAIT_LIMIT: Duration = Duration::from_secs(300);

/// Waits for a volume poll on one process-wide grid of ticks this far apart: waiters due in the
/// same tick ask the batcher at the same instant and share one DescribeVolumes, so a tick costs
/// one call however many volumes wait, and a volume is seen ready at most a tick after it is.
pub(super) const POLL_TICK: Duration = Duration::from_millis(200);

/// A wait first looks this long after it starts (EC2 often has the answer by then).
pub(super) const FIRST_LOOK: Duration = Duration::from_millis(200);

/// A wait polls every tick for this long, the time most new volumes and attachments take; after
/// that, half as long again between polls each time, up to 5 s.
pub(super) const STEADY_POLLING: Duration = Duration::from_secs(5);

pub(super) static POLL_EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// The first tick of the poll grid at or after `at`.
pub(super) fn poll_tick(at: Instant) -> Instant {
    let epoch = *POLL_EPOCH;
    let tick = POLL_TICK.as_nanos();
    let ticks = at.saturating_duration_since(epoch).as_nanos().div_ceil(tick);
    epoch + Duration::from_nanos(u64::try_from(ticks * tick).unwrap_or(u64::MAX))
}

impl AwsCloud {
    pub(super) async fn describe(&self, id: &str) -> Result<ec2::Volume> {
        if !is_ec2_id("vol", id) {
            return Err(not_found("volume", id));
        }
        self.volumes.get(id).await?.ok_or_else(|| not_found("volume", id))
    }

    /// Polls (through the shared batcher, on the poll grid) until `check` answers: first after
    /// 200 ms, then every tick for the first 5 s, then backing off to every 5 s.
    pub(super) async fn wait_volume<T>(
        &self,
        id: &str,
        what: &str,
        check: impl Fn(&ec2::Volume) -> Option<Result<T>>,
    ) -> Result<T> {
        let start = Instant::now();
        let deadline = start + WAIT_LIMIT;
        let mut delay = FIRST_LOOK;
        loop {
            tokio::time::sleep_until(poll_tick(Instant::now() + delay).into()).await;
            let v = self.describe(id).await?;
            if let Some(answer) = check(&v) {
                return answer;
            }
            if Instant::now() > deadline {
                return Err(Error::Unavailable(format!(
                    "volume {id} is still not {what} after {WAIT_LIMIT:?}; retry"
                )));
            }
            // Half a tick on: the next tick, never the one just polled.
            delay = if start.elapsed() < STEADY_POLLING {
                POLL_TICK / 2
            } else {
                (delay.max(POLL_TICK) * 3 / 2).min(Duration::from_secs(5))
            };
        }
    }

    pub(super) async fn wait_available(&self, id: &str) -> Result<ec2::Volume> {
        self.wait_volume(id, "available", |v| match v.state() {
            Some(ec2::VolumeState::Available | ec2::VolumeState::InUse) => Some(Ok(v.clone())),
            Some(ec2::VolumeState::Error) => Some(Err(Error::Internal(format!("volume {id} went to state error")))),
            Some(ec2::VolumeState::Deleted | ec2::VolumeState::Deleting) => Some(Err(not_found("volume", id))),
            _ => None,
        })
        .await
    }

    pub(super) async fn wait_modification(&self, id: &str) -> Result<()> {
        let deadline = Instant::now() + WAIT_LIMIT;
        let mut delay = Duration::from_millis(200);
        loop {
            tokio::time::sleep(delay).await;
            match self.modifications.get(id).await? {
                None => return Ok(()),
                Some(m) => match m.modification_state() {
                    Some(ec2::VolumeModificationState::Optimizing | ec2::VolumeModificationState::Completed) => {
                        return Ok(());
                    }
                    Some(ec2::VolumeModificationState::Failed) => {
                        return Err(Error::Internal(format!(
                            "EC2 failed to modify volume {id}: {}",
                            m.status_message().unwrap_or("no reason given")
                        )));
                    }
                    _ => {}
                },
            }
            if Instant::now() > deadline {
                return Err(Error::Unavailable(format!(
                    "volume {id} is still being modified; retry"
                )));
            }
            delay = (delay * 3 / 2).min(Duration::from_secs(5));
        }
    }

    pub(super) async fn wait_attached(&self, id: &str, node: &str) -> Result<()> {
        self.wait_volume(id, "attached", |v| {
            let a = v.attachments().iter().find(|a| a.instance_id() == Some(node));
            match a.and_then(|a| a.state()) {
                Some(ec2::VolumeAttachmentState::Attached) => Some(Ok(())),
                Some(ec2::VolumeAttachmentState::Attaching) => None,
                _ => Some(Err(Error::Unavailable(format!(
                    "the attach of volume {id} to {node} did not take; retry"
                )))),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_poll_on_one_grid_of_ticks() {
        let now = Instant::now();
        let tick = poll_tick(now);
        assert!(tick >= now && tick - now <= POLL_TICK);
        assert_eq!(poll_tick(tick), tick, "a tick is its own tick");
        // Waiters due at different moments within a tick poll together at its end.
        let later = poll_tick(tick + POLL_TICK / 3);
        assert_eq!(later - tick, POLL_TICK);
        assert_eq!(poll_tick(tick + POLL_TICK * 2 / 3), later);
    }
}
