//! What protects a snapshot after it is made: EC2 LockSnapshot (read back with
//! DescribeLockedSnapshots, so a retry never locks twice) and EnableFastSnapshotRestores; and a
//! delete that a lock refuses, answered with the lock's end.

use aws_smithy_types::DateTime;

use super::*;
use crate::ebs::{LockMode, LockRequest, LockTerm, SnapshotLock, SnapshotRequest, now_ms};

fn ms(t: Option<&DateTime>) -> Option<i64> {
    t.and_then(|t| t.to_millis().ok())
}

/// A lock as EC2 reports it; None for a state this driver does not know.
fn lock_from(
    state: Option<&ec2::LockState>,
    expires: Option<&DateTime>,
    cool_off: Option<&DateTime>,
) -> Option<SnapshotLock> {
    let mode = match state? {
        ec2::LockState::Governance => LockMode::Governance,
        ec2::LockState::Compliance | ec2::LockState::ComplianceCooloff => LockMode::Compliance,
        // The mode of an expired lock no longer matters: it holds nothing.
        ec2::LockState::Expired => LockMode::Governance,
        _ => return None,
    };
    Some(SnapshotLock {
        mode,
        expires_ms: ms(expires).unwrap_or(0),
        cool_off_until_ms: ms(cool_off),
    })
}

impl AwsCloud {
    /// The lock EC2 keeps on the snapshot (an expired one included); None when never locked.
    pub(super) async fn lock_of(&self, id: &str) -> Result<Option<SnapshotLock>> {
        let out = self
            .retrier
            .send("DescribeLockedSnapshots", true, || {
                self.ec2.describe_locked_snapshots().snapshot_ids(id).send()
            })
            .await
            .map_err(|e| errors::map(&format!("reading the lock of snapshot {id}"), e))?;
        Ok(out
            .snapshots()
            .iter()
            .find(|s| s.snapshot_id() == Some(id))
            .and_then(|s| lock_from(s.lock_state(), s.lock_expires_on(), s.cool_off_period_expires_on())))
    }

    async fn lock(&self, id: &str, lock: &LockRequest) -> Result<Option<SnapshotLock>> {
        let mut req = self
            .ec2
            .lock_snapshot()
            .snapshot_id(id)
            .lock_mode(ec2::LockMode::from(lock.mode.as_str()))
            .set_cool_off_period(lock.cool_off_hours.map(|h| h as i32));
        req = match lock.term {
            LockTerm::Days(d) => req.lock_duration(d as i32),
            LockTerm::Until(t) => req.expiration_date(DateTime::from_millis(t)),
        };
        // Not sent twice but after a throttle: a second lock would move the first one's term.
        let out = self
            .retrier
            .send("LockSnapshot", false, || req.clone().send())
            .await
            .map_err(|e| errors::map(&format!("locking snapshot {id}"), e))?;
        info!(snapshot = %id, mode = lock.mode.as_str(), "snapshot locked");
        Ok(lock_from(
            out.lock_state(),
            out.lock_expires_on(),
            out.cool_off_period_expires_on(),
        ))
    }

    async fn enable_fast_restores(&self, id: &str, zones: &[String]) -> Result<Vec<String>> {
        let out = self
            .retrier
            .send("EnableFastSnapshotRestores", true, || {
                self.ec2
                    .enable_fast_snapshot_restores()
                    .source_snapshot_ids(id)
                    .set_availability_zones(Some(zones.to_vec()))
                    .send()
            })
            .await
            .map_err(|e| errors::map(&format!("enabling fast snapshot restores of {id}"), e))?;
        // EC2 answers 200 and lists the zones it could not enable in; those fail the call.
        if let Some(item) = out
            .unsuccessful()
            .iter()
            .flat_map(|u| u.fast_snapshot_restore_state_errors())
            .next()
        {
            let (code, message) = item
                .error()
                .map(|e| (e.code().unwrap_or("Unknown"), e.message().unwrap_or("")))
                .unwrap_or(("Unknown", ""));
            return Err(errors::by_code(
                code,
                format!(
                    "enabling fast snapshot restores of {id} in {}: EC2 {code}: {message}",
                    item.availability_zone().unwrap_or("a zone")
                ),
            ));
        }
        Ok(out
            .successful()
            .iter()
            .filter_map(|s| s.availability_zone().map(str::to_owned))
            .collect())
    }

    /// See [`Cloud::settle_snapshot`]: a snapshot EC2 already holds a lock on keeps it. Fast
    /// restores come first: when EC2 refuses them, an unlocked snapshot is deleted again (as the
    /// Go driver does), so a VolumeSnapshot that never gets its snapshot leaves none behind.
    pub(super) async fn settle(&self, mut snap: Snapshot, req: &SnapshotRequest) -> Result<Snapshot> {
        let held = match &req.lock {
            Some(_) => self.lock_of(&snap.id).await?,
            None => None,
        };
        if !req.fast_restore_zones.is_empty() {
            match self.enable_fast_restores(&snap.id, &req.fast_restore_zones).await {
                Ok(zones) => snap.fast_restore_zones = zones,
                Err(e) => {
                    if held.is_none()
                        && let Err(d) = self.delete_unlocked(&snap.id).await
                    {
                        warn!(snapshot = %snap.id, error = %d, "could not delete the snapshot whose fast restores failed");
                    }
                    return Err(e);
                }
            }
        }
        if let Some(lock) = &req.lock {
            snap.lock = match held {
                Some(held) => Some(held),
                None => self.lock(&snap.id, lock).await?,
            };
        }
        Ok(snap)
    }

    /// DeleteSnapshot; a refusal because of a lock is FailedPrecondition naming when it ends.
    pub(super) async fn delete_unlocked(&self, id: &str) -> Result<()> {
        let out = self
            .retrier
            .send("DeleteSnapshot", true, || {
                self.ec2.delete_snapshot().snapshot_id(id).send()
            })
            .await;
        let Err(e) = out else { return Ok(()) };
        let about_lock = errors::code_of(&e).is_some_and(|c| c.to_ascii_lowercase().contains("lock"))
            || aws_sdk_ec2::error::ProvideErrorMetadata::message(&e)
                .is_some_and(|m| m.to_ascii_lowercase().contains("locked"));
        let mapped = errors::map(&format!("deleting snapshot {id}"), e);
        if about_lock && let Some(lock) = self.lock_of(id).await?.filter(|l| l.holds(now_ms())) {
            return Err(lock.refusal(id));
        }
        Err(mapped)
    }
}
