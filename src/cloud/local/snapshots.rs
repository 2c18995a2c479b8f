//! Snapshots: a copy of the volume image (reflink, else sparse-aware), recorded as `Creating`
//! until the copy is whole.

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

    pub(super) fn delete_snapshot(&self, id: &str) -> Result<()> {
        if self.store.set_snapshot_state(id, SnapshotState::Deleting)?.is_none() {
            return Err(Error::NotFound(format!("snapshot {id} does not exist")));
        }
        let path = self.snapshot_path(id);
        files::remove(&path.with_extension("tmp"))?;
        files::remove(&path)?;
        self.store.remove_snapshot(id)
    }
}
