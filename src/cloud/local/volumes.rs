//! Creating (empty, from a snapshot, or cloned from a volume) and deleting volume images,
//! crash-safe: the record says `Creating`/`Deleting` while the image is made or removed, so
//! `reconcile` can undo a step a crash cut short.

use super::*;

impl Inner {
    pub(super) fn create_volume(&self, name: &str, spec: &VolumeSpec) -> Result<Volume> {
        if !self.zones.contains(&spec.zone) {
            return Err(Error::InvalidArgument(format!(
                "zone {:?} is not one of this region's zones ({})",
                spec.zone,
                self.zones.join(", ")
            )));
        }
        let source_image = match &spec.source {
            None => None,
            Some(VolumeSource::Snapshot(snap)) => match self.store.snapshot(snap)? {
                Some(r) if r.state == SnapshotState::Ready => Some(self.snapshot_path(snap)),
                Some(r) if r.state == SnapshotState::Creating => {
                    return Err(Error::FailedPrecondition(format!(
                        "snapshot {snap} is not ready yet; retry"
                    )));
                }
                _ => return Err(Error::NotFound(format!("source snapshot {snap} does not exist"))),
            },
            Some(VolumeSource::Volume(src)) => {
                let r = self
                    .volume_record(src)
                    .map_err(|_| Error::NotFound(format!("source volume {src} does not exist")))?;
                if r.volume.zone != spec.zone {
                    return Err(Error::InvalidArgument(format!(
                        "source volume {src} is in zone {}, not {}; a clone stays in its source's zone",
                        r.volume.zone, spec.zone
                    )));
                }
                Some(self.volume_path(src))
            }
        };
        let id = new_id("vol");
        let record = VolumeRecord {
            state: VolumeState::Creating,
            spec: spec.clone(),
            volume: Volume {
                id: id.clone(),
                name: name.to_owned(),
                size_gib: spec.size_gib,
                volume_type: spec.volume_type,
                iops: spec.iops,
                throughput: spec.throughput,
                encrypted: spec.encrypted,
                kms_key_id: spec.kms_key_id.clone(),
                zone: spec.zone.clone(),
                multi_attach: spec.multi_attach,
                source: spec.source.clone(),
                tags: spec.tags.clone(),
                attachments: Vec::new(),
                abnormal: None,
            },
            attaching: Vec::new(),
        };
        let record = match self.store.insert_volume(name, &record)? {
            None => record,
            Some(existing) if existing.spec != *spec => {
                return Err(Error::AlreadyExists(format!(
                    "volume name {name:?} is already used by {} with different parameters",
                    existing.volume.id
                )));
            }
            Some(existing) => match existing.state {
                VolumeState::Available => return Ok(self.present(existing)),
                VolumeState::Creating => existing, // a crashed or concurrent create: finish it
                VolumeState::Deleting => {
                    return Err(Error::Aborted(format!(
                        "volume {} named {name:?} is being deleted; retry",
                        existing.volume.id
                    )));
                }
            },
        };
        let id = record.volume.id.clone();
        self.crash_point("create-volume:after-intent");
        let path = self.volume_path(&id);
        let made = match source_image {
            None => files::create_sparse(&path, spec.size_gib),
            Some(src) => files::copy_image(&src, &path, spec.size_gib),
        };
        if let Err(e) = made {
            // Undo the intent so nothing is left that no call can find.
            let _ = self.store.remove_volume(&id);
            return Err(self.source_gone(&spec.source).unwrap_or(e));
        }
        self.crash_point("create-volume:after-image");
        self.update(&id, |r, _| {
            r.state = VolumeState::Available;
            Ok(())
        })?;
        info!(volume = %id, name, size_gib = spec.size_gib, "volume created");
        self.volume_record(&id).map(|r| self.present(r))
    }

    /// NOT_FOUND when a copy failed because its source was deleted meanwhile (a DeleteVolume or
    /// DeleteSnapshot racing the copy removes the image it was about to open); None when the
    /// source is still there, and the copy's own error stands.
    pub(super) fn source_gone(&self, source: &Option<VolumeSource>) -> Option<Error> {
        let gone = match source.as_ref()? {
            VolumeSource::Volume(v) => {
                let available = matches!(self.store.volume(v), Ok(Some(r)) if r.state == VolumeState::Available);
                (!available).then(|| format!("volume {v}"))
            }
            VolumeSource::Snapshot(s) => {
                let ready = matches!(self.store.snapshot(s), Ok(Some(r)) if r.state == SnapshotState::Ready);
                (!ready).then(|| format!("snapshot {s}"))
            }
        }?;
        Some(Error::NotFound(format!(
            "source {gone} was deleted while it was being copied"
        )))
    }

    pub(super) fn delete_volume(&self, id: &str) -> Result<()> {
        let Some(record) = self.store.volume(id)? else {
            return Err(Error::NotFound(format!("volume {id} does not exist")));
        };
        if let Some(node) = record
            .volume
            .attachments
            .iter()
            .map(|a| &a.node)
            .chain(&record.attaching)
            .next()
        {
            return Err(Error::FailedPrecondition(format!(
                "volume {id} is attached to node {node}; unpublish it from every node before deleting it"
            )));
        }
        self.update(id, |r, _| {
            r.state = VolumeState::Deleting;
            Ok(())
        })?;
        self.crash_point("delete-volume:after-intent");
        let path = self.volume_path(id);
        files::remove(&path.with_extension("tmp"))?;
        files::remove(&path)?;
        self.store.remove_volume(id)?;
        info!(volume = %id, "volume deleted");
        Ok(())
    }
}
