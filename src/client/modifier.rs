//! The calls of the volume-modifier-for-k8s sidecar's service (proto/modify.proto), as that
//! sidecar makes them.

use clap::Subcommand;
use serde_json::json;
use tonic::transport::Channel;

use super::Failure;
use super::args::{key_value, map};
use super::output::Printed;
use super::show::pairs;
use crate::csi::modify::modify_client::ModifyClient;
use crate::csi::modify::{GetCsiDriverModificationCapabilityRequest, ModifyVolumePropertiesRequest};

#[derive(Subcommand)]
pub enum Call {
    /// GetCSIDriverModificationCapability: whether the driver serves ModifyVolumeProperties.
    #[command(name = "get-csi-driver-modification-capability")]
    GetCsiDriverModificationCapability,
    /// ModifyVolumeProperties: change a volume as PVC annotations would (type or volumeType,
    /// iops, throughput, tags).
    ModifyVolumeProperties {
        /// The volume's id.
        name: String,
        #[arg(long = "parameter", value_name = "KEY=VALUE", value_parser = key_value)]
        parameters: Vec<(String, String)>,
        #[arg(long = "context", value_name = "KEY=VALUE", value_parser = key_value)]
        context: Vec<(String, String)>,
    },
}

pub async fn call(channel: Channel, call: Call) -> Result<Printed, Failure> {
    let mut c = ModifyClient::new(channel);
    Ok(match call {
        Call::GetCsiDriverModificationCapability => {
            c.get_csi_driver_modification_capability(GetCsiDriverModificationCapabilityRequest {})
                .await?;
            Printed::new(json!({}), "ModifyVolumeProperties is served\n".to_owned())
        }
        Call::ModifyVolumeProperties {
            name,
            parameters,
            context,
        } => {
            let parameters = map(&parameters);
            c.modify_volume_properties(ModifyVolumePropertiesRequest {
                name: name.clone(),
                parameters: parameters.clone(),
                context: map(&context),
            })
            .await?;
            Printed::new(json!({}), format!("modified {name}: {}\n", pairs(&parameters)))
        }
    })
}
