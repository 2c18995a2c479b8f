//! CreateSnapshot, DeleteSnapshot, ListSnapshots and GetSnapshot.

use super::*;

/// The snapshotter's extra metadata.
const SNAPSHOT_META: [(&str, &str); 3] = [
    (
        "csi.storage.k8s.io/volumesnapshot/name",
        "kubernetes.io/created-for/volumesnapshot/name",
    ),
    (
        "csi.storage.k8s.io/volumesnapshot/namespace",
        "kubernetes.io/created-for/volumesnapshot/namespace",
    ),
    (
        "csi.storage.k8s.io/volumesnapshotcontent/name",
        "kubernetes.io/created-for/volumesnapshotcontent/name",
    ),
];

fn snapshot_message(s: &Snapshot) -> csi::Snapshot {
    csi::Snapshot {
        size_bytes: bytes(s.size_gib),
        snapshot_id: s.id.clone(),
        source_volume_id: s.source_volume.clone(),
        creation_time: Some(prost_types::Timestamp {
            seconds: s.created_at.0,
            nanos: s.created_at.1,
        }),
        ready_to_use: s.ready,
        group_snapshot_id: String::new(),
    }
}

impl ControllerService {
    pub(super) async fn create_snapshot(&self, req: CreateSnapshotRequest) -> Result<CreateSnapshotResponse> {
        let name = require(&req.name, "name")?;
        if name.len() > MAX_NAME_LEN {
            return Err(Error::InvalidArgument(format!(
                "name is {} bytes long; at most {MAX_NAME_LEN} are allowed",
                name.len()
            )));
        }
        let source = require(&req.source_volume_id, "source_volume_id")?;
        let mut tags = self.opts.extra_tags.clone();
        for (key, value) in &req.parameters {
            if let Some((_, tag)) = SNAPSHOT_META.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)) {
                tags.insert((*tag).to_owned(), value.clone());
            } else if key.to_ascii_lowercase().starts_with("tagspecification_") {
                tags.extend(params::parse_snapshot_tag(key, value)?);
            } else {
                return Err(Error::InvalidArgument(format!(
                    "snapshot parameter {key:?} is not supported; use tagSpecification_N or the snapshotter's metadata keys"
                )));
            }
        }
        tags.insert(SNAPSHOT_NAME_TAG.into(), name.into());
        tags.insert(CLUSTER_TAG.into(), "true".into());
        if let Some(id) = &self.opts.cluster_id {
            tags.insert(format!("kubernetes.io/cluster/{id}"), "owned".into());
        }
        let _guard = self
            .inflight
            .start(format!("snapshot/{name}"), &format!("snapshot name {name:?}"))?;
        if let Some(existing) = self.cloud.snapshot_by_name(name).await? {
            if existing.source_volume != source {
                return Err(Error::AlreadyExists(format!(
                    "snapshot {} named {name:?} is of volume {}, not {source}",
                    existing.id, existing.source_volume
                )));
            }
            return Ok(CreateSnapshotResponse {
                snapshot: Some(snapshot_message(&existing)),
            });
        }
        let snap = self.cloud.create_snapshot(name, source, &tags).await?;
        info!(volume = %source, snapshot = %snap.id, "CreateSnapshot done");
        Ok(CreateSnapshotResponse {
            snapshot: Some(snapshot_message(&snap)),
        })
    }

    pub(super) async fn delete_snapshot(&self, req: DeleteSnapshotRequest) -> Result<DeleteSnapshotResponse> {
        let id = require(&req.snapshot_id, "snapshot_id")?;
        let _guard = self
            .inflight
            .start(format!("snapshot-id/{id}"), &format!("snapshot {id}"))?;
        match self.cloud.delete_snapshot(id).await {
            Ok(()) | Err(Error::NotFound(_)) => Ok(DeleteSnapshotResponse {}),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn list_snapshots(&self, req: ListSnapshotsRequest) -> Result<ListSnapshotsResponse> {
        let max = max_entries(req.max_entries)?;
        let start = start_token(&req.starting_token);
        let filter = SnapshotFilter {
            snapshot_id: (!req.snapshot_id.is_empty()).then(|| req.snapshot_id.clone()),
            source_volume: (!req.source_volume_id.is_empty()).then(|| req.source_volume_id.clone()),
        };
        let page = self.cloud.list_snapshots(&filter, start, max).await?;
        Ok(ListSnapshotsResponse {
            entries: page
                .items
                .iter()
                .map(|s| list_snapshots_response::Entry {
                    snapshot: Some(snapshot_message(s)),
                })
                .collect(),
            next_token: page.next.unwrap_or_default(),
        })
    }

    pub(super) async fn get_snapshot(&self, req: GetSnapshotRequest) -> Result<GetSnapshotResponse> {
        let id = require(&req.snapshot_id, "snapshot_id")?;
        let snap = self.cloud.snapshot(id).await?;
        Ok(GetSnapshotResponse {
            snapshot: Some(snapshot_message(&snap)),
        })
    }
}
