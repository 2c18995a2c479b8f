//! CreateSnapshot, DeleteSnapshot, ListSnapshots and GetSnapshot.

use super::*;

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
        // Every parameter is checked before anything is made.
        let mut ask = params::parse_snapshot_params(&req.parameters, &self.cloud.zones(), ebs::now_ms())?;
        if ask.outpost_arn.is_some() && !self.cloud.offers_outposts() {
            return Err(Error::InvalidArgument(
                "outpostArn: this backend has no Outposts (only the aws backend makes snapshots on one)".into(),
            ));
        }
        let mut tags = self.opts.extra_tags.clone();
        tags.append(&mut ask.tags);
        tags.insert(SNAPSHOT_NAME_TAG.into(), name.into());
        tags.insert(CLUSTER_TAG.into(), "true".into());
        if let Some(id) = &self.opts.cluster_id {
            tags.insert(format!("kubernetes.io/cluster/{id}"), "owned".into());
        }
        ask.tags = tags;
        let _guard = self
            .inflight
            .start(format!("snapshot/{name}"), &format!("snapshot name {name:?}"))?;
        let snap = match self.cloud.snapshot_by_name(name).await? {
            Some(existing) if existing.source_volume != source => {
                return Err(Error::AlreadyExists(format!(
                    "snapshot {} named {name:?} is of volume {}, not {source}",
                    existing.id, existing.source_volume
                )));
            }
            Some(existing) => existing,
            None => {
                let made = self.cloud.create_snapshot(name, source, &ask).await?;
                info!(volume = %source, snapshot = %made.id, "CreateSnapshot done");
                made
            }
        };
        // A retry finds the snapshot by name and puts on it whatever a failure or crash left
        // out; what is already there is left alone.
        let snap = if ask.lock.is_some() || !ask.fast_restore_zones.is_empty() {
            self.cloud.settle_snapshot(snap, &ask).await?
        } else {
            snap
        };
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
