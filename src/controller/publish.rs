//! ControllerPublishVolume, ControllerUnpublishVolume and ValidateVolumeCapabilities.

use super::*;

impl ControllerService {
    pub(super) async fn publish(&self, req: ControllerPublishVolumeRequest) -> Result<ControllerPublishVolumeResponse> {
        let id = require(&req.volume_id, "volume_id")?;
        let node = require(&req.node_id, "node_id")?;
        let cap = req
            .volume_capability
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("volume_capability is required".into()))?;
        let summary = check_capability(cap)?;
        let _guard = self.inflight.start(format!("volume/{id}"), &format!("volume {id}"))?;
        // The cloud's attach checks the volume and the node itself; only multi-node access
        // needs a look at the volume first.
        if summary.multi_node && !self.cloud.volume(id).await?.multi_attach {
            return Err(Error::InvalidArgument(format!(
                "volume {id} is not a multi-attach volume; it cannot be published with multi-node access"
            )));
        }
        let attachment = self.cloud.attach(id, node, req.readonly).await?;
        let mut context = HashMap::from([("devicePath".to_owned(), attachment.device)]);
        if req.readonly {
            context.insert("readonly".into(), "true".into());
        }
        Ok(ControllerPublishVolumeResponse {
            publish_context: context,
        })
    }

    pub(super) async fn unpublish(
        &self,
        req: ControllerUnpublishVolumeRequest,
    ) -> Result<ControllerUnpublishVolumeResponse> {
        let id = require(&req.volume_id, "volume_id")?;
        let _guard = self.inflight.start(format!("volume/{id}"), &format!("volume {id}"))?;
        // Only "every node" needs the volume's attachments; a named node is detached directly.
        let nodes: Vec<String> = if req.node_id.is_empty() {
            match self.cloud.volume(id).await {
                Ok(v) => v.attachments.iter().map(|a| a.node.clone()).collect(),
                Err(Error::NotFound(_)) => return Ok(ControllerUnpublishVolumeResponse {}),
                Err(e) => return Err(e),
            }
        } else {
            vec![req.node_id.clone()]
        };
        for node in nodes {
            match self.cloud.detach(id, &node).await {
                Ok(()) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(ControllerUnpublishVolumeResponse {})
    }

    pub(super) async fn validate(
        &self,
        req: ValidateVolumeCapabilitiesRequest,
    ) -> Result<ValidateVolumeCapabilitiesResponse> {
        let id = require(&req.volume_id, "volume_id")?;
        if req.volume_capabilities.is_empty() {
            return Err(Error::InvalidArgument("volume_capabilities is required".into()));
        }
        let volume = self.cloud.volume(id).await?;
        let confirmed = match check_capabilities(&req.volume_capabilities) {
            Ok(s) if !s.multi_node || volume.multi_attach => Some(validate_volume_capabilities_response::Confirmed {
                volume_context: req.volume_context.clone(),
                volume_capabilities: req.volume_capabilities.clone(),
                parameters: req.parameters.clone(),
                mutable_parameters: req.mutable_parameters.clone(),
            }),
            _ => None,
        };
        let message = if confirmed.is_some() {
            String::new()
        } else {
            "the capabilities are not supported".into()
        };
        Ok(ValidateVolumeCapabilitiesResponse { confirmed, message })
    }
}
