//! NodeGetVolumeStats, NodeGetVolumeHealth and NodeExpandVolume: each acts only on a path
//! proven to hold the volume.

use super::*;

impl NodeService {
    /// The volume's mount at `path`, proven; NOT_FOUND when the volume is not there.
    pub(super) fn proven_at(&self, id: &str, path: &Path) -> Result<proof::Proof> {
        proof::at(self.locator.as_ref(), id, path)?
            .ok_or_else(|| Error::NotFound(format!("volume {id} is not mounted at {}", path.display())))
    }

    pub(super) async fn stats(&self, req: NodeGetVolumeStatsRequest) -> Result<NodeGetVolumeStatsResponse> {
        let id = require(&req.volume_id, "volume_id")?;
        let path = volume_path(&req.volume_path, "volume_path", id)?;
        let found = self.proven_at(id, &path)?;
        use volume_usage::Unit;
        if found.block {
            let size = resize::device_size(&found.device)?;
            return Ok(NodeGetVolumeStatsResponse {
                usage: vec![VolumeUsage {
                    total: as_i64(size),
                    unit: Unit::Bytes as i32,
                    ..Default::default()
                }],
            });
        }
        let s = stats::fs_stats(&path)?;
        Ok(NodeGetVolumeStatsResponse {
            usage: vec![
                VolumeUsage {
                    available: as_i64(s.available_bytes),
                    total: as_i64(s.total_bytes),
                    used: as_i64(s.used_bytes),
                    unit: Unit::Bytes as i32,
                },
                VolumeUsage {
                    available: as_i64(s.free_inodes),
                    total: as_i64(s.total_inodes),
                    used: as_i64(s.used_inodes),
                    unit: Unit::Inodes as i32,
                },
            ],
        })
    }

    pub(super) async fn health(&self, req: NodeGetVolumeHealthRequest) -> Result<NodeGetVolumeHealthResponse> {
        use volume_health::VolumeHealthEntry;
        let id = require(&req.volume_id, "volume_id")?;
        let mut entries = Vec::new();
        for (field, value) in [
            ("volume_publish_path", &req.volume_publish_path),
            ("staging_target_path", &req.staging_target_path),
        ] {
            if value.is_empty() {
                continue;
            }
            let path = volume_path(value, field, id)?;
            match proof::at(self.locator.as_ref(), id, &path)? {
                None => entries.push(VolumeHealthEntry {
                    status: VolumeHealthErrorType::Inaccessible as i32,
                    reason: "NotMounted".into(),
                    message: format!("volume {id} is not mounted at {}", path.display()),
                }),
                Some(p) if p.mount.super_options.iter().any(|o| o == "ro") && !p.mount.read_only() => {
                    entries.push(VolumeHealthEntry {
                        status: VolumeHealthErrorType::Degraded as i32,
                        reason: "ReadOnlyFilesystem".into(),
                        message: format!(
                            "the filesystem of volume {id} at {} went read-only (an I/O or filesystem error?)",
                            path.display()
                        ),
                    })
                }
                Some(_) => {}
            }
        }
        Ok(NodeGetVolumeHealthResponse {
            volume_health: Some(VolumeHealth {
                volume_id: id.to_owned(),
                health_statuses: entries,
            }),
        })
    }

    pub(super) async fn expand(&self, req: NodeExpandVolumeRequest) -> Result<NodeExpandVolumeResponse> {
        let id = require(&req.volume_id, "volume_id")?;
        let path = volume_path(&req.volume_path, "volume_path", id)?;
        let range = req.capacity_range.unwrap_or_default();
        let (required, limit) = (range.required_bytes, range.limit_bytes);
        if required < 0 || limit < 0 {
            return Err(Error::InvalidArgument(format!(
                "capacity_range must not be negative (required_bytes {required}, limit_bytes {limit})"
            )));
        }
        if limit > 0 && required > limit {
            return Err(Error::OutOfRange(format!(
                "required_bytes {required} is more than limit_bytes {limit}"
            )));
        }
        let asked_block = match &req.volume_capability {
            Some(cap) => Some(check_capability(cap)?.block),
            None => None,
        };
        let _guard = self.inflight.start(format!("volume/{id}"), &format!("volume {id}"))?;
        let found = self.proven_at(id, &path)?;
        if let Some(block) = asked_block
            && block != found.block
        {
            let (asked, there) = if block {
                ("block", "a filesystem")
            } else {
                ("mount", "a raw block device")
            };
            return Err(Error::InvalidArgument(format!(
                "volume_capability asks for {asked} access, but {} holds {there}",
                path.display()
            )));
        }
        // The device's size is the controller's doing; the node only grows the filesystem to it.
        let size = resize::device_size(&found.device)?;
        if limit > 0 && as_i64(size) > limit {
            return Err(Error::OutOfRange(format!(
                "volume {id} is {size} bytes, more than limit_bytes {limit}; volumes cannot shrink"
            )));
        }
        if !found.block {
            // A read-only publication cannot be grown through (xfs_growfs fails with EROFS);
            // the filesystem grows just as well through a writable mount of it.
            let at = if found.mount.read_only() {
                mount::mounts()?
                    .into_iter()
                    .find(|m| m.dev == found.dev && !m.read_only())
                    .map(|m| m.target)
                    .ok_or_else(|| {
                        Error::FailedPrecondition(format!(
                            "volume {id} is mounted only read-only, so its filesystem cannot grow now; it grows when the volume is next staged read-write"
                        ))
                    })?
            } else {
                path.clone()
            };
            resize::grow(&found.device, &found.mount.fs_type, &at).await?;
        }
        if as_i64(size) < required {
            return Err(Error::FailedPrecondition(format!(
                "volume {id}'s device is {size} bytes, less than the {required} asked for; expand it on the controller first"
            )));
        }
        info!(volume = %id, size, "expanded on the node");
        Ok(NodeExpandVolumeResponse {
            capacity_bytes: as_i64(size),
        })
    }
}
