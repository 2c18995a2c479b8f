//! Volumes and snapshots made under an id the caller gives, for `ebs-csi demo`: a
//! PersistentVolume or VolumeSnapshotContent names an EBS volume or snapshot that, on AWS, exists
//! before the cluster sees it, so the demo makes it here first. Nothing else calls these: the
//! driver itself never lets a caller choose an id.
//!
//! Both write their intent before the image, as CreateVolume and CreateSnapshot do, so the
//! controller's start-up reconcile removes what a crash interrupted.

use std::time::{SystemTime, UNIX_EPOCH};

use tracing::info;

use super::store::{SnapshotRecord, SnapshotState, VolumeRecord, VolumeState};
use super::{Inner, LocalCloud, files};
use crate::cloud::{Snapshot, Volume, VolumeSpec, is_id};
use crate::error::{Error, Result};

impl LocalCloud {
    /// Makes a blank volume with id `id` (`vol-` and 17 hex digits), as if made elsewhere; its
    /// name is its id. AlreadyExists when the id is taken.
    pub fn import_volume(&self, id: &str, spec: &VolumeSpec) -> Result<Volume> {
        self.inner.import_volume(id, spec)
    }

    /// Snapshots volume `source` under id `id` (`snap-` and 17 hex digits), as if taken
    /// elsewhere; its name is its id. AlreadyExists when the id is taken.
    pub fn import_snapshot(&self, id: &str, source: &str) -> Result<Snapshot> {
        self.inner.import_snapshot(id, source)
    }
}

impl Inner {
    fn import_volume(&self, id: &str, spec: &VolumeSpec) -> Result<Volume> {
        if !is_id("vol", id) {
            return Err(Error::InvalidArgument(format!(
                "{id:?} is not a volume id of this backend: vol- and 17 lowercase hex digits"
            )));
        }
        if !self.zones.contains(&spec.zone) {
            return Err(Error::InvalidArgument(format!(
                "zone {:?} is not one of this region's zones ({})",
                spec.zone,
                self.zones.join(", ")
            )));
        }
        if spec.source.is_some() {
            return Err(Error::InvalidArgument("an imported volume starts blank".into()));
        }
        if self.store.volume(id)?.is_some() {
            return Err(Error::AlreadyExists(format!("volume {id} already exists")));
        }
        let record = VolumeRecord {
            state: VolumeState::Creating,
            spec: spec.clone(),
            volume: Volume {
                id: id.to_owned(),
                name: id.to_owned(),
                size_gib: spec.size_gib,
                volume_type: spec.volume_type,
                iops: spec.iops,
                throughput: spec.throughput,
                encrypted: spec.encrypted,
                kms_key_id: spec.kms_key_id.clone(),
                zone: spec.zone.clone(),
                multi_attach: spec.multi_attach,
                source: None,
                tags: spec.tags.clone(),
                attachments: Vec::new(),
                abnormal: None,
            },
            attaching: Vec::new(),
        };
        if let Some(existing) = self.store.insert_volume(id, &record)? {
            return Err(Error::AlreadyExists(format!(
                "volume name {id:?} is already used by {}",
                existing.volume.id
            )));
        }
        if let Err(e) = files::create_sparse(&self.volume_path(id), spec.size_gib) {
            let _ = self.store.remove_volume(id);
            return Err(e);
        }
        self.update(id, |r, _| {
            r.state = VolumeState::Available;
            Ok(())
        })?;
        info!(volume = %id, size_gib = spec.size_gib, zone = %spec.zone, "volume imported");
        self.volume_record(id).map(|r| self.present(r))
    }

    fn import_snapshot(&self, id: &str, source: &str) -> Result<Snapshot> {
        if !is_id("snap", id) {
            return Err(Error::InvalidArgument(format!(
                "{id:?} is not a snapshot id of this backend: snap- and 17 lowercase hex digits"
            )));
        }
        let volume = self.volume_record(source)?.volume;
        if self.store.snapshot(id)?.is_some() {
            return Err(Error::AlreadyExists(format!("snapshot {id} already exists")));
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let record = SnapshotRecord {
            state: SnapshotState::Creating,
            snapshot: Snapshot {
                id: id.to_owned(),
                name: id.to_owned(),
                source_volume: source.to_owned(),
                size_gib: volume.size_gib,
                created_at: (now.as_secs() as i64, now.subsec_nanos() as i32),
                ready: false,
                tags: Default::default(),
                lock: None,
                fast_restore_zones: Vec::new(),
            },
        };
        if let Some(existing) = self.store.insert_snapshot(&record)? {
            return Err(Error::AlreadyExists(format!(
                "snapshot name {id:?} is already used by {}",
                existing.snapshot.id
            )));
        }
        if let Err(e) = files::copy_image(&self.volume_path(source), &self.snapshot_path(id), 0) {
            let _ = self.store.remove_snapshot(id);
            return Err(e);
        }
        let done = self
            .store
            .set_snapshot_state(id, SnapshotState::Ready)?
            .ok_or_else(|| Error::Aborted(format!("snapshot {id} vanished while it was being made; retry")))?;
        info!(volume = %source, snapshot = %id, "snapshot imported");
        Ok(done.snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::{Cloud, Tags};
    use crate::ebs::VolumeType;

    fn spec(zone: &str) -> VolumeSpec {
        VolumeSpec {
            size_gib: 2,
            volume_type: VolumeType::Gp3,
            iops: None,
            throughput: None,
            encrypted: false,
            kms_key_id: None,
            zone: zone.into(),
            multi_attach: false,
            source: None,
            initialization_rate: None,
            tags: Tags::new(),
        }
    }

    #[tokio::test]
    async fn a_volume_and_a_snapshot_are_made_under_the_ids_given() {
        let dir = tempfile::tempdir().unwrap();
        let cloud = LocalCloud::open(dir.path(), vec!["us-east-2c".into()]).unwrap();
        let vol = "vol-0123456789abcdef0";
        let made = cloud.import_volume(vol, &spec("us-east-2c")).unwrap();
        assert_eq!(
            (made.id.as_str(), made.size_gib, made.zone.as_str()),
            (vol, 2, "us-east-2c")
        );
        assert_eq!(
            cloud.volume(vol).await.unwrap().id,
            vol,
            "the driver finds it by its id"
        );
        assert!(
            matches!(
                cloud.import_volume(vol, &spec("us-east-2c")),
                Err(Error::AlreadyExists(_))
            ),
            "an id is made once"
        );
        let snap = "snap-0fedcba9876543210";
        let taken = cloud.import_snapshot(snap, vol).unwrap();
        assert!(taken.ready && taken.source_volume == vol && taken.size_gib == 2);
        assert_eq!(cloud.snapshot(snap).await.unwrap().id, snap);
        cloud.delete_snapshot(snap).await.unwrap();
        cloud.delete_volume(vol).await.unwrap();
        assert!(matches!(cloud.volume(vol).await, Err(Error::NotFound(_))));
    }

    #[test]
    fn ids_and_zones_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let cloud = LocalCloud::open(dir.path(), vec!["us-east-2c".into()]).unwrap();
        for bad in ["vol-1234abcd", "vol-../../etc", "snap-0123456789abcdef0"] {
            assert!(
                matches!(
                    cloud.import_volume(bad, &spec("us-east-2c")),
                    Err(Error::InvalidArgument(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            cloud.import_volume("vol-0123456789abcdef0", &spec("us-east-2a")),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            cloud.import_snapshot("snap-0123456789abcdef0", "vol-0123456789abcdef0"),
            Err(Error::NotFound(_))
        ));
    }
}
