//! Snapshots: a copy of the volume image (reflink, else sparse-aware), recorded as `Creating`
//! until the copy is whole. A lock and the zones with fast restores live in the snapshot's
//! record, written in one transaction each, so they survive a crash as the rest of it does.

use super::*;

impl Inner {
    pub(super) fn create_snapshot(&self, name: &str, source: &str, tags: &Tags) -> Result<Snapshot> {
        let volume = self.volume_record(source)?.volume;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let record = SnapshotRecord {
            state: SnapshotState::Creating,
            snapshot: Snapshot {
                id: new_id("snap"),
                name: name.to_owned(),
                source_volume: source.to_owned(),
                size_gib: volume.size_gib,
                created_at: (now.as_secs() as i64, now.subsec_nanos() as i32),
                ready: false,
                tags: tags.clone(),
                lock: None,
                fast_restore_zones: Vec::new(),
            },
        };
        let record = match self.store.insert_snapshot(&record)? {
            None => record,
            Some(existing) if existing.snapshot.source_volume != source => {
                return Err(Error::AlreadyExists(format!(
                    "snapshot name {name:?} is already used by {} of volume {}",
                    existing.snapshot.id, existing.snapshot.source_volume
                )));
            }
            Some(existing) => match existing.state {
                SnapshotState::Ready => return Ok(existing.snapshot),
                SnapshotState::Creating => existing,
                SnapshotState::Deleting => {
                    return Err(Error::Aborted(format!(
                        "snapshot {} is being deleted; retry",
                        existing.snapshot.id
                    )));
                }
            },
        };
        let id = record.snapshot.id.clone();
        self.crash_point("snapshot:after-intent");
        if let Err(e) = files::copy_image(&self.volume_path(source), &self.snapshot_path(&id), 0) {
            let _ = self.store.remove_snapshot(&id);
            return Err(self
                .source_gone(&Some(VolumeSource::Volume(source.to_owned())))
                .unwrap_or(e));
        }
        self.crash_point("snapshot:after-copy");
        let done = self
            .store
            .set_snapshot_state(&id, SnapshotState::Ready)?
            .ok_or_else(|| Error::Aborted(format!("snapshot {id} vanished while it was being made; retry")))?;
        info!(volume = %source, snapshot = %id, "snapshot created");
        Ok(done.snapshot)
    }

    /// Locks it and records fast restores, where the request asks and they are not there yet;
    /// a lock already on it (expired or not) is kept as it is, as a retried call must not move it.
    pub(super) fn settle_snapshot(&self, id: &str, req: &SnapshotRequest) -> Result<Snapshot> {
        self.crash_point("snapshot:before-protect");
        let now = now_ms();
        self.store
            .update_snapshot(id, |r| {
                if r.state != SnapshotState::Ready {
                    return Err(Error::Aborted(format!("snapshot {id} is not ready; retry")));
                }
                let s = &mut r.snapshot;
                if s.lock.is_none()
                    && let Some(lock) = &req.lock
                {
                    s.lock = Some(lock.applied(now));
                    info!(snapshot = %id, mode = lock.mode.as_str(), until = %rfc3339(lock.applied(now).expires_ms), "snapshot locked");
                }
                for z in &req.fast_restore_zones {
                    if !s.fast_restore_zones.contains(z) {
                        s.fast_restore_zones.push(z.clone());
                    }
                }
                Ok(s.clone())
            })?
            .ok_or_else(|| Error::NotFound(format!("snapshot {id} does not exist")))
    }

    pub(super) fn delete_snapshot(&self, id: &str) -> Result<()> {
        // The lock is checked in the transaction that marks the deletion, so nothing locks it
        // in between.
        let marked = self.store.update_snapshot(id, |r| {
            if let Some(lock) = r.snapshot.lock.filter(|l| l.holds(now_ms())) {
                return Err(lock.refusal(id));
            }
            r.state = SnapshotState::Deleting;
            r.snapshot.ready = false;
            Ok(())
        })?;
        if marked.is_none() {
            return Err(Error::NotFound(format!("snapshot {id} does not exist")));
        }
        let path = self.snapshot_path(id);
        files::remove(&path.with_extension("tmp"))?;
        files::remove(&path)?;
        self.store.remove_snapshot(id)
    }
}
