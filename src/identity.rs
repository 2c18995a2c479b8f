//! The CSI Identity service: who we are, what we offer, and whether we are ready.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::cloud::Cloud;
use crate::config::Mode;
use crate::csi::identity_server::Identity;
use crate::csi::plugin_capability::{self, service, volume_expansion};
use crate::csi::*;
use crate::error::Error;

pub struct IdentityService {
    name: String,
    mode: Mode,
    /// The backend Probe asks; a node service on AWS has none (it never calls EC2).
    cloud: Option<Arc<dyn Cloud>>,
}

impl IdentityService {
    pub fn new(name: String, mode: Mode, cloud: Option<Arc<dyn Cloud>>) -> Self {
        IdentityService { name, mode, cloud }
    }
}

fn service_capability(t: service::Type) -> PluginCapability {
    PluginCapability {
        r#type: Some(plugin_capability::Type::Service(plugin_capability::Service {
            r#type: t as i32,
        })),
    }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn get_plugin_info(
        &self,
        _: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: self.name.clone(),
            vendor_version: env!("CARGO_PKG_VERSION").to_owned(),
            manifest: Default::default(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        let mut capabilities = Vec::new();
        if self.mode.has_controller() {
            capabilities.push(service_capability(service::Type::ControllerService));
        }
        capabilities.push(service_capability(service::Type::VolumeAccessibilityConstraints));
        capabilities.push(PluginCapability {
            r#type: Some(plugin_capability::Type::VolumeExpansion(
                plugin_capability::VolumeExpansion {
                    r#type: volume_expansion::Type::Online as i32,
                },
            )),
        });
        Ok(Response::new(GetPluginCapabilitiesResponse { capabilities }))
    }

    async fn probe(&self, _: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        let Some(cloud) = &self.cloud else {
            return Ok(Response::new(ProbeResponse { ready: Some(true) }));
        };
        match cloud.probe().await {
            Ok(()) => Ok(Response::new(ProbeResponse { ready: Some(true) })),
            Err(e) => Err(Error::FailedPrecondition(format!("the volume backend is not answering: {e}")).into()),
        }
    }
}
