//! ControllerExpandVolume and ControllerModifyVolume: the new size or performance fitted by the
//! EBS rules, then one cloud modification.

use super::*;

impl ControllerService {
    pub(super) async fn expand(&self, req: ControllerExpandVolumeRequest) -> Result<ControllerExpandVolumeResponse> {
        let id = require(&req.volume_id, "volume_id")?;
        let range = req
            .capacity_range
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("capacity_range is required".into()))?;
        if let Some(cap) = &req.volume_capability {
            check_capability(cap)?;
        }
        let block = matches!(
            req.volume_capability.as_ref().and_then(|c| c.access_type.as_ref()),
            Some(AccessType::Block(_))
        );
        // Expand and modify have keys of their own: the cloud may merge them into one change.
        let _guard = self
            .inflight
            .start(format!("expand/{id}"), &format!("expanding volume {id}"))?;
        let v = self.cloud.volume(id).await?;
        let wanted = ebs::size_gib(range.required_bytes, range.limit_bytes, v.volume_type)?;
        let v = if wanted > v.size_gib {
            self.cloud.resize(id, wanted).await?
        } else {
            if range.limit_bytes > 0 && bytes(v.size_gib) > range.limit_bytes {
                return Err(Error::OutOfRange(format!(
                    "volume {id} is already {} GiB, above the limit of {} bytes; volumes never shrink",
                    v.size_gib, range.limit_bytes
                )));
            }
            v
        };
        info!(volume = %id, size_gib = v.size_gib, "ControllerExpandVolume done");
        Ok(ControllerExpandVolumeResponse {
            capacity_bytes: bytes(v.size_gib),
            node_expansion_required: !block,
        })
    }

    pub(super) async fn modify(&self, req: ControllerModifyVolumeRequest) -> Result<ControllerModifyVolumeResponse> {
        let id = require(&req.volume_id, "volume_id")?;
        let change: ModifyParams = params::parse_modify_params(&req.mutable_parameters)?;
        let _guard = self
            .inflight
            .start(format!("modify/{id}"), &format!("modifying volume {id}"))?;
        let v = self.cloud.volume(id).await?;
        let current = ebs::Performance {
            iops: v.iops,
            throughput: v.throughput,
        };
        // CSI names one code for parameters the volume cannot take, INVALID_ARGUMENT (the
        // external-resizer marks the change infeasible on it); a size outside the new type's
        // range is such a parameter here, not a capacity the caller asked for.
        let (volume_type, perf) = ebs::modified_performance(v.volume_type, v.size_gib, &current, &change, false)
            .map_err(|e| match e {
                Error::OutOfRange(m) => Error::InvalidArgument(m),
                e => e,
            })?;
        let modification = Modification {
            volume_type: (volume_type != v.volume_type).then_some(volume_type),
            iops: perf.iops,
            throughput: perf.throughput,
            tags: change.tags,
        };
        self.cloud.modify(id, &modification).await?;
        info!(volume = %id, volume_type = volume_type.as_str(), ?perf.iops, ?perf.throughput, "ControllerModifyVolume done");
        Ok(ControllerModifyVolumeResponse {})
    }
}
