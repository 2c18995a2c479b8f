//! The read-only calls: listing and getting volumes, their health, and the capacity left.

use super::*;

/// A volume's health as CSI v1.13 reports it: no entries when nothing is known to be wrong.
fn health(v: &Volume) -> VolumeHealth {
    use volume_health::VolumeHealthEntry;
    VolumeHealth {
        volume_id: v.id.clone(),
        health_statuses: v
            .abnormal
            .iter()
            .map(|m| VolumeHealthEntry {
                status: VolumeHealthErrorType::Inaccessible as i32,
                reason: "BackingStoreMissing".into(),
                message: m.clone(),
            })
            .collect(),
    }
}

impl ControllerService {
    pub(super) fn volume_entry(&self, v: &Volume) -> list_volumes_response::Entry {
        list_volumes_response::Entry {
            volume: Some(self.volume_message(v, HashMap::new())),
            status: Some(list_volumes_response::VolumeStatus {
                published_node_ids: v.attachments.iter().map(|a| a.node.clone()).collect(),
            }),
        }
    }

    pub(super) async fn list_volumes(&self, req: ListVolumesRequest) -> Result<ListVolumesResponse> {
        let max = max_entries(req.max_entries)?;
        let start = start_token(&req.starting_token);
        let page = self.cloud.list_volumes(start, max).await?;
        Ok(ListVolumesResponse {
            entries: page.items.iter().map(|v| self.volume_entry(v)).collect(),
            next_token: page.next.unwrap_or_default(),
        })
    }

    pub(super) async fn get_volume(&self, req: ControllerGetVolumeRequest) -> Result<ControllerGetVolumeResponse> {
        let id = require(&req.volume_id, "volume_id")?;
        let v = self.cloud.volume(id).await?;
        let entry = self.volume_entry(&v);
        Ok(ControllerGetVolumeResponse {
            volume: entry.volume,
            status: entry.status.map(|s| controller_get_volume_response::VolumeStatus {
                published_node_ids: s.published_node_ids,
            }),
        })
    }

    pub(super) async fn get_volume_health(
        &self,
        req: ControllerGetVolumeHealthRequest,
    ) -> Result<ControllerGetVolumeHealthResponse> {
        let id = require(&req.volume_id, "volume_id")?;
        let v = self.cloud.volume(id).await?;
        Ok(ControllerGetVolumeHealthResponse {
            volume_health: Some(health(&v)),
        })
    }

    pub(super) async fn list_volume_health(
        &self,
        req: ControllerListVolumeHealthRequest,
    ) -> Result<ControllerListVolumeHealthResponse> {
        let max = max_entries(req.max_entries)?;
        let start = start_token(&req.starting_token);
        let page = self.cloud.list_volumes(start, max).await?;
        // Healthy volumes are left out, as the spec suggests; the page boundaries stay the
        // volume listing's, so a token always resumes where the last page ended.
        Ok(ControllerListVolumeHealthResponse {
            entries: page.items.iter().filter(|v| v.abnormal.is_some()).map(health).collect(),
            next_token: page.next.unwrap_or_default(),
        })
    }

    pub(super) async fn get_capacity(&self, req: GetCapacityRequest) -> Result<GetCapacityResponse> {
        let p = params::parse_create_params(&req.parameters)?;
        let zone = match &req.accessible_topology {
            Some(t) => {
                let req = TopologyRequirement {
                    requisite: vec![t.clone()],
                    preferred: vec![],
                };
                match self.zones(|z| z.choose(Some(&req), "")) {
                    Ok(z) => Some(z),
                    Err(_) => return Ok(GetCapacityResponse::default()),
                }
            }
            None => None,
        };
        let limits = ebs::limits(p.volume_type);
        let available = self.cloud.capacity(zone.as_deref()).await?;
        let max = bytes(limits.max_gib);
        Ok(GetCapacityResponse {
            available_capacity: available.map(|a| i64::try_from(a).unwrap_or(i64::MAX)).unwrap_or(max),
            maximum_volume_size: Some(max),
            minimum_volume_size: Some(bytes(limits.min_gib)),
        })
    }
}
