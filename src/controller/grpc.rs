//! The CSI Controller gRPC service: each call traced with its volume id and answered by the
//! matching method of [`ControllerService`].

use super::*;
use crate::csi::modify::{
    GetCsiDriverModificationCapabilityRequest, GetCsiDriverModificationCapabilityResponse,
    ModifyVolumePropertiesRequest, ModifyVolumePropertiesResponse,
};

const CAPABILITIES: [RpcType; 16] = [
    RpcType::CreateDeleteVolume,
    RpcType::PublishUnpublishVolume,
    RpcType::PublishReadonly,
    RpcType::CreateDeleteSnapshot,
    RpcType::ListSnapshots,
    RpcType::CloneVolume,
    RpcType::ExpandVolume,
    RpcType::ModifyVolume,
    RpcType::ListVolumes,
    RpcType::ListVolumesPublishedNodes,
    RpcType::GetVolume,
    RpcType::GetVolumeHealth,
    RpcType::ListVolumeHealth,
    RpcType::GetSnapshot,
    RpcType::GetCapacity,
    RpcType::SingleNodeMultiWriter,
];

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn create_volume(&self, r: Request<CreateVolumeRequest>) -> Result<Response<CreateVolumeResponse>, Status> {
        let r = r.into_inner();
        let name = r.name.clone();
        traced("CreateVolume", &name, self.create_volume(r)).await
    }

    async fn delete_volume(&self, r: Request<DeleteVolumeRequest>) -> Result<Response<DeleteVolumeResponse>, Status> {
        let r = r.into_inner();
        let id = r.volume_id.clone();
        traced("DeleteVolume", &id, self.delete_volume(r)).await
    }

    async fn controller_publish_volume(
        &self,
        r: Request<ControllerPublishVolumeRequest>,
    ) -> Result<Response<ControllerPublishVolumeResponse>, Status> {
        let r = r.into_inner();
        let id = r.volume_id.clone();
        traced("ControllerPublishVolume", &id, self.publish(r)).await
    }

    async fn controller_unpublish_volume(
        &self,
        r: Request<ControllerUnpublishVolumeRequest>,
    ) -> Result<Response<ControllerUnpublishVolumeResponse>, Status> {
        let r = r.into_inner();
        let id = r.volume_id.clone();
        traced("ControllerUnpublishVolume", &id, self.unpublish(r)).await
    }

    async fn validate_volume_capabilities(
        &self,
        r: Request<ValidateVolumeCapabilitiesRequest>,
    ) -> Result<Response<ValidateVolumeCapabilitiesResponse>, Status> {
        let r = r.into_inner();
        let id = r.volume_id.clone();
        traced("ValidateVolumeCapabilities", &id, self.validate(r)).await
    }

    async fn list_volumes(&self, r: Request<ListVolumesRequest>) -> Result<Response<ListVolumesResponse>, Status> {
        traced("ListVolumes", "", self.list_volumes(r.into_inner())).await
    }

    async fn get_capacity(&self, r: Request<GetCapacityRequest>) -> Result<Response<GetCapacityResponse>, Status> {
        traced("GetCapacity", "", self.get_capacity(r.into_inner())).await
    }

    async fn controller_get_capabilities(
        &self,
        _: Request<ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<ControllerGetCapabilitiesResponse>, Status> {
        // PUBLISH_READONLY promises that a publish with the other flag is refused, which needs
        // a cloud that remembers the flag.
        let keeps_read_only = self.cloud.keeps_read_only();
        let capabilities = CAPABILITIES
            .iter()
            .filter(|t| keeps_read_only || **t != RpcType::PublishReadonly)
            .map(|t| ControllerServiceCapability {
                r#type: Some(controller_service_capability::Type::Rpc(Rpc { r#type: *t as i32 })),
            })
            .collect();
        Ok(Response::new(ControllerGetCapabilitiesResponse { capabilities }))
    }

    async fn create_snapshot(
        &self,
        r: Request<CreateSnapshotRequest>,
    ) -> Result<Response<CreateSnapshotResponse>, Status> {
        let r = r.into_inner();
        let id = r.source_volume_id.clone();
        traced("CreateSnapshot", &id, self.create_snapshot(r)).await
    }

    async fn delete_snapshot(
        &self,
        r: Request<DeleteSnapshotRequest>,
    ) -> Result<Response<DeleteSnapshotResponse>, Status> {
        traced("DeleteSnapshot", "", self.delete_snapshot(r.into_inner())).await
    }

    async fn list_snapshots(
        &self,
        r: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        traced("ListSnapshots", "", self.list_snapshots(r.into_inner())).await
    }

    async fn controller_expand_volume(
        &self,
        r: Request<ControllerExpandVolumeRequest>,
    ) -> Result<Response<ControllerExpandVolumeResponse>, Status> {
        let r = r.into_inner();
        let id = r.volume_id.clone();
        traced("ControllerExpandVolume", &id, self.expand(r)).await
    }

    async fn controller_get_volume(
        &self,
        r: Request<ControllerGetVolumeRequest>,
    ) -> Result<Response<ControllerGetVolumeResponse>, Status> {
        let r = r.into_inner();
        let id = r.volume_id.clone();
        traced("ControllerGetVolume", &id, self.get_volume(r)).await
    }

    async fn controller_get_volume_health(
        &self,
        r: Request<ControllerGetVolumeHealthRequest>,
    ) -> Result<Response<ControllerGetVolumeHealthResponse>, Status> {
        let r = r.into_inner();
        let id = r.volume_id.clone();
        traced("ControllerGetVolumeHealth", &id, self.get_volume_health(r)).await
    }

    async fn controller_list_volume_health(
        &self,
        r: Request<ControllerListVolumeHealthRequest>,
    ) -> Result<Response<ControllerListVolumeHealthResponse>, Status> {
        traced(
            "ControllerListVolumeHealth",
            "",
            self.list_volume_health(r.into_inner()),
        )
        .await
    }

    async fn get_snapshot(&self, r: Request<GetSnapshotRequest>) -> Result<Response<GetSnapshotResponse>, Status> {
        traced("GetSnapshot", "", self.get_snapshot(r.into_inner())).await
    }

    async fn controller_modify_volume(
        &self,
        r: Request<ControllerModifyVolumeRequest>,
    ) -> Result<Response<ControllerModifyVolumeResponse>, Status> {
        let r = r.into_inner();
        let id = r.volume_id.clone();
        traced("ControllerModifyVolume", &id, self.modify(r)).await
    }
}

/// The volume-modifier-for-k8s sidecar's service: its ModifyVolumeProperties is
/// ControllerModifyVolume under another name, with the same parameters, checks and answers.
#[tonic::async_trait]
impl crate::csi::modify::modify_server::Modify for ControllerService {
    async fn get_csi_driver_modification_capability(
        &self,
        _: Request<GetCsiDriverModificationCapabilityRequest>,
    ) -> Result<Response<GetCsiDriverModificationCapabilityResponse>, Status> {
        Ok(Response::new(GetCsiDriverModificationCapabilityResponse {}))
    }

    async fn modify_volume_properties(
        &self,
        r: Request<ModifyVolumePropertiesRequest>,
    ) -> Result<Response<ModifyVolumePropertiesResponse>, Status> {
        let r = r.into_inner();
        let id = r.name.clone();
        let modify = async move {
            let id = require(&r.name, "name")?;
            self.modify(ControllerModifyVolumeRequest {
                volume_id: id.to_owned(),
                mutable_parameters: r.parameters,
                ..Default::default()
            })
            .await?;
            Ok(ModifyVolumePropertiesResponse {})
        };
        traced("ModifyVolumeProperties", &id, modify).await
    }
}
