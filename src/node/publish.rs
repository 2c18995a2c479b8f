//! NodePublishVolume and NodeUnpublishVolume: bind mounts from the staging path (or the raw
//! device) into the pod's target path.

use super::*;

impl NodeService {
    pub(super) async fn publish(&self, req: NodePublishVolumeRequest) -> Result<NodePublishVolumeResponse> {
        let id = require(&req.volume_id, "volume_id")?;
        let target = checked_path(&req.target_path, "target_path")?;
        let staging = checked_path(&req.staging_target_path, "staging_target_path")?;
        let cap = capability(&req.volume_capability)?;
        let read_only = req.readonly || read_only_mode(cap);
        let _guard = self
            .inflight
            .start(format!("target/{}", target.display()), &format!("volume {id}"))?;

        let block = matches!(cap.access_type, Some(AccessType::Block(_)));
        // A block volume is bound straight from its (proven) device; a filesystem from its
        // staging mount, once that is proven to be the volume's.
        let (source, dev, staged) = if block {
            let device = self.locator.locate(id, &req.publish_context).await?;
            let dev = blockdev::number(&device)
                .ok_or_else(|| Error::FailedPrecondition(format!("{} is not a block device", device.display())))?;
            (device, dev, None)
        } else {
            let staged = proof::at(self.locator.as_ref(), id, &staging)?.ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "volume {id} is not staged at {}; NodeStageVolume first",
                    staging.display()
                ))
            })?;
            // The volume's raw device bound there (a block publish target) is no filesystem
            // to bind into the pod.
            if staged.block {
                return Err(Error::FailedPrecondition(format!(
                    "volume {id} is not staged at {}: its raw device is bound there, not a filesystem; NodeStageVolume first",
                    staging.display()
                )));
            }
            (staging.clone(), staged.dev, Some(staged.mount))
        };

        if let Some(existing) = mount::mount_at(&target)? {
            let same_source = match proof::at(self.locator.as_ref(), id, &target) {
                Ok(Some(p)) => {
                    p.dev == dev && p.block == block && staged.as_ref().is_none_or(|s| s.root == p.mount.root)
                }
                _ => false,
            };
            if same_source && existing.read_only() == read_only {
                return Ok(NodePublishVolumeResponse {});
            }
            return Err(Error::AlreadyExists(format!(
                "{} is already published from {}{}; not compatible with this request",
                target.display(),
                existing.source,
                if existing.read_only() { " read-only" } else { "" }
            )));
        }
        if single_publish_mode(cap)
            && let Some(other) = proof::used_elsewhere(dev, &[&staging, &target])?
        {
            return Err(Error::FailedPrecondition(format!(
                "volume {id} is already published at {} and its access mode allows one publication on a node",
                other.display()
            )));
        }
        self.not_over_store(&target, "target_path")?;
        if block {
            if let Some(parent) = target.parent() {
                create_dir(parent)?;
            }
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&target)
                .map_err(|e| path_error("create", &target, &e))?;
        } else {
            create_dir(&target)?;
        }
        mount::bind(&source, &target, read_only)?;
        info!(volume = %id, target = %target.display(), read_only, block, "published");
        Ok(NodePublishVolumeResponse {})
    }

    pub(super) async fn unpublish(&self, req: NodeUnpublishVolumeRequest) -> Result<NodeUnpublishVolumeResponse> {
        let id = require(&req.volume_id, "volume_id")?;
        let target = volume_path(&req.target_path, "target_path", id)?;
        let _guard = self
            .inflight
            .start(format!("target/{}", target.display()), &format!("volume {id}"))?;
        unmount_all(self.locator.as_ref(), id, &target)?;
        remove_target(&target)?;
        info!(volume = %id, target = %target.display(), "unpublished");
        Ok(NodeUnpublishVolumeResponse {})
    }
}
