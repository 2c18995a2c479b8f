//! NodeStageVolume and NodeUnstageVolume: the proven device formatted if blank and mounted at
//! the staging path, and unmounted from there.

use super::*;

/// Whether a filesystem on `device` is mounted anywhere.
pub(super) fn mounted_elsewhere(device: &Path) -> Result<bool> {
    let Some(dev) = blockdev::number(device) else {
        return Ok(false);
    };
    Ok(mount::mounts()?.iter().any(|m| m.dev == dev))
}

/// Unmounts the volume's mounts stacked at `path`, each proven first. A mount that is still
/// there after its unmount succeeded ends the call instead of looping (this loop runs on an
/// async worker: spinning here once starved every call of the connection).
pub(super) fn unmount_all(locator: &dyn DeviceLocator, id: &str, path: &Path) -> Result<()> {
    let mut last = None;
    while let Some(p) = proof::at(locator, id, path)? {
        if last == Some(p.mount.id) {
            return Err(Error::Internal(format!(
                "{} at {} is still mounted after it was unmounted",
                p.mount.source,
                path.display()
            )));
        }
        last = Some(p.mount.id);
        mount::unmount(path)?;
    }
    Ok(())
}

impl NodeService {
    pub(super) async fn stage(&self, req: NodeStageVolumeRequest) -> Result<NodeStageVolumeResponse> {
        let id = require(&req.volume_id, "volume_id")?;
        let staging = checked_path(&req.staging_target_path, "staging_target_path")?;
        let cap = capability(&req.volume_capability)?;
        let Some(AccessType::Mount(m)) = &cap.access_type else {
            // Block volumes are used straight from the device at publish time.
            return Ok(NodeStageVolumeResponse {});
        };
        let fs = fs_type(cap, &req.volume_context);
        // The capability's type is checked with the capability; one from the volume context
        // only here.
        let fs_kind: FsType = fs
            .parse()
            .map_err(|e| Error::InvalidArgument(format!("volume context: {e}")))?;
        let _guard = self.inflight.start(format!("volume/{id}"), &format!("volume {id}"))?;
        let device = self.locator.locate(id, &req.publish_context).await?;

        match proof::at(self.locator.as_ref(), id, &staging) {
            Ok(None) => {}
            Ok(Some(p)) if !p.block && p.device == device && p.mount.fs_type == fs => {
                return Ok(NodeStageVolumeResponse {});
            }
            Ok(Some(p)) => {
                return Err(Error::AlreadyExists(format!(
                    "{} already has volume {id} mounted as {}; this request asks for {fs}",
                    staging.display(),
                    p.mount.fs_type
                )));
            }
            Err(_) => {
                let other = mount::mount_at(&staging)?;
                return Err(Error::AlreadyExists(format!(
                    "{} already has {} mounted, which is not volume {id} ({}); it is left alone",
                    staging.display(),
                    other
                        .map(|m| format!("{} ({})", m.source, m.fs_type))
                        .unwrap_or_default(),
                    device.display()
                )));
            }
        }
        self.not_over_store(&staging, "staging_target_path")?;
        create_dir(&staging)?;
        let formatted = match format::filesystem_of(&device).await? {
            None => {
                info!(volume = %id, device = %device.display(), fs, "formatting a blank device");
                let mut opts = mkfs_options(&req.volume_context, fs_kind)?;
                opts.legacy_xfs = self.legacy_xfs;
                format::mkfs(&fs, &device, &opts).await?;
                true
            }
            Some(found) if found == fs => false,
            Some(found) => {
                return Err(Error::FailedPrecondition(format!(
                    "volume {id} ({}) already holds {found}, not {fs}; it is never reformatted",
                    device.display()
                )));
            }
        };
        // An existing filesystem may be smaller than its device (restored from a smaller
        // snapshot, or grown while detached): fill the device. ext* grows before it is mounted
        // (no privilege needed), xfs only once mounted. A fresh one already fills it.
        let device_size = if formatted { 0 } else { resize::device_size(&device)? };
        let is_ext = fs.starts_with("ext");
        // Not while it is mounted elsewhere (staged at another path too): e2fsck refuses a
        // mounted filesystem, and that mount is where it grows (NodeExpandVolume).
        if !formatted
            && is_ext
            && !mounted_elsewhere(&device)?
            && resize::filesystem_size(&device, &fs, None).await? < device_size
        {
            info!(volume = %id, device_size, "growing the filesystem to its device before mounting");
            resize::grow_unmounted_ext(&device).await?;
        }
        mount::mount_device(&device, &staging, &fs, &m.mount_flags)?;
        if !formatted && !is_ext {
            let grown = async {
                if resize::filesystem_size(&device, &fs, Some(&staging)).await? < device_size {
                    info!(volume = %id, device_size, "growing the filesystem to its device");
                    resize::grow(&device, &fs, &staging).await?;
                }
                Ok(())
            };
            // A failed stage leaves nothing mounted: a retry that found the mount would
            // answer success without growing.
            if let Err(e) = grown.await {
                let _ = mount::unmount(&staging);
                return Err(e);
            }
        }
        info!(volume = %id, device = %device.display(), staging = %staging.display(), fs, "staged");
        Ok(NodeStageVolumeResponse {})
    }

    pub(super) async fn unstage(&self, req: NodeUnstageVolumeRequest) -> Result<NodeUnstageVolumeResponse> {
        let id = require(&req.volume_id, "volume_id")?;
        let staging = volume_path(&req.staging_target_path, "staging_target_path", id)?;
        let _guard = self.inflight.start(format!("volume/{id}"), &format!("volume {id}"))?;
        // Stacked mounts (a retried stage after a crash) come off one by one, only at this path,
        // and each only once it is proven to be this volume's.
        unmount_all(self.locator.as_ref(), id, &staging)?;
        info!(volume = %id, staging = %staging.display(), "unstaged");
        Ok(NodeUnstageVolumeResponse {})
    }
}
