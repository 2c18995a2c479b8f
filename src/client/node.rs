//! The Node service's calls (they act on the host the driver runs on).

use std::fmt::Write;

use clap::Subcommand;
use serde_json::{Value, json};
use tonic::transport::Channel;

use super::Failure;
use super::args::*;
use super::controller::capabilities;
use super::output::{self, Printed, storage_health_name, unit_name};
use super::show::{self, size, topologies};
use crate::csi::node_client::NodeClient;
use crate::csi::node_service_capability::{Type as CapType, rpc};
use crate::csi::*;

// The subcommands are the RPCs' names, which all start with `Node`.
#[allow(clippy::enum_variant_names)]
#[derive(Subcommand)]
pub enum Call {
    /// NodeStageVolume: format the attached device if blank and mount it at the staging path.
    NodeStageVolume {
        volume_id: String,
        #[arg(long, value_name = "PATH")]
        staging_target_path: String,
        /// What ControllerPublishVolume returned, e.g. devicePath=/dev/loop3 (repeatable).
        #[arg(long = "publish-context", value_name = "KEY=VALUE", value_parser = key_value)]
        publish_context: Vec<(String, String)>,
        /// What CreateVolume returned (repeatable).
        #[arg(long = "volume-context", value_name = "KEY=VALUE", value_parser = key_value)]
        volume_context: Vec<(String, String)>,
        #[command(flatten)]
        capability: CapabilityArgs,
        #[command(flatten)]
        secrets: SecretsArgs,
    },
    /// NodeUnstageVolume: unmount the staging path.
    NodeUnstageVolume {
        volume_id: String,
        #[arg(long, value_name = "PATH")]
        staging_target_path: String,
    },
    /// NodePublishVolume: bind the staged volume at the target path.
    NodePublishVolume {
        volume_id: String,
        #[arg(long, value_name = "PATH")]
        target_path: String,
        #[arg(long, value_name = "PATH", default_value = "")]
        staging_target_path: String,
        /// Publish read-only.
        #[arg(long)]
        readonly: bool,
        #[arg(long = "publish-context", value_name = "KEY=VALUE", value_parser = key_value)]
        publish_context: Vec<(String, String)>,
        #[arg(long = "volume-context", value_name = "KEY=VALUE", value_parser = key_value)]
        volume_context: Vec<(String, String)>,
        #[command(flatten)]
        capability: CapabilityArgs,
        #[command(flatten)]
        secrets: SecretsArgs,
    },
    /// NodeUnpublishVolume: unmount the target path and remove it.
    NodeUnpublishVolume {
        volume_id: String,
        #[arg(long, value_name = "PATH")]
        target_path: String,
    },
    /// NodeGetVolumeStats: space and inodes used at a published or staged path.
    NodeGetVolumeStats {
        volume_id: String,
        #[arg(long, value_name = "PATH")]
        volume_path: String,
        #[arg(long, value_name = "PATH", default_value = "")]
        staging_target_path: String,
    },
    /// NodeGetVolumeHealth: whether a published or staged volume is usable.
    NodeGetVolumeHealth {
        volume_id: String,
        #[arg(long, value_name = "PATH", default_value = "")]
        volume_publish_path: String,
        #[arg(long, value_name = "PATH", default_value = "")]
        staging_target_path: String,
    },
    /// NodeGetStorageHealth.
    NodeGetStorageHealth {
        #[command(flatten)]
        secrets: SecretsArgs,
    },
    /// NodeExpandVolume: grow the filesystem (or check the device) at a path.
    NodeExpandVolume {
        volume_id: String,
        #[arg(long, value_name = "PATH")]
        volume_path: String,
        #[arg(long, value_name = "PATH", default_value = "")]
        staging_target_path: String,
        #[command(flatten)]
        capacity: CapacityArgs,
        #[command(flatten)]
        capability: CapabilityArgs,
        #[command(flatten)]
        secrets: SecretsArgs,
    },
    /// NodeGetCapabilities.
    NodeGetCapabilities,
    /// NodeGetInfo: the node's id, attach limit and topology.
    NodeGetInfo,
}

pub async fn call(channel: Channel, call: Call) -> Result<Printed, Failure> {
    let mut c = NodeClient::new(channel);
    Ok(match call {
        Call::NodeStageVolume {
            volume_id,
            staging_target_path,
            publish_context,
            volume_context,
            capability,
            secrets,
        } => {
            let req = NodeStageVolumeRequest {
                volume_id: volume_id.clone(),
                publish_context: map(&publish_context),
                staging_target_path: staging_target_path.clone(),
                volume_capability: Some(capability.capability()),
                secrets: secrets.load()?,
                volume_context: map(&volume_context),
            };
            c.node_stage_volume(req).await?;
            Printed::new(json!({}), format!("staged {volume_id} at {staging_target_path}\n"))
        }
        Call::NodeUnstageVolume {
            volume_id,
            staging_target_path,
        } => {
            let req = NodeUnstageVolumeRequest {
                volume_id: volume_id.clone(),
                staging_target_path: staging_target_path.clone(),
            };
            c.node_unstage_volume(req).await?;
            Printed::new(json!({}), format!("unstaged {volume_id} from {staging_target_path}\n"))
        }
        Call::NodePublishVolume {
            volume_id,
            target_path,
            staging_target_path,
            readonly,
            publish_context,
            volume_context,
            capability,
            secrets,
        } => {
            let req = NodePublishVolumeRequest {
                volume_id: volume_id.clone(),
                publish_context: map(&publish_context),
                staging_target_path,
                target_path: target_path.clone(),
                volume_capability: Some(capability.capability()),
                readonly,
                secrets: secrets.load()?,
                volume_context: map(&volume_context),
            };
            c.node_publish_volume(req).await?;
            let ro = if readonly { " read-only" } else { "" };
            Printed::new(json!({}), format!("published {volume_id} at {target_path}{ro}\n"))
        }
        Call::NodeUnpublishVolume { volume_id, target_path } => {
            let req = NodeUnpublishVolumeRequest {
                volume_id: volume_id.clone(),
                target_path: target_path.clone(),
            };
            c.node_unpublish_volume(req).await?;
            Printed::new(json!({}), format!("unpublished {volume_id} from {target_path}\n"))
        }
        Call::NodeGetVolumeStats {
            volume_id,
            volume_path,
            staging_target_path,
        } => {
            let req = NodeGetVolumeStatsRequest {
                volume_id,
                volume_path,
                staging_target_path,
            };
            let r = c.node_get_volume_stats(req).await?.into_inner();
            let mut human = String::new();
            let mut usage = Vec::new();
            for u in &r.usage {
                let unit = unit_name(u.unit);
                let line = match volume_usage::Unit::try_from(u.unit) {
                    Ok(volume_usage::Unit::Bytes) => format!(
                        "bytes: {} used of {}, {} available",
                        size(u.used),
                        size(u.total),
                        size(u.available)
                    ),
                    _ => format!(
                        "{}: {} used of {}, {} available",
                        unit.to_lowercase(),
                        u.used,
                        u.total,
                        u.available
                    ),
                };
                let _ = writeln!(human, "{line}");
                usage.push(json!({ "unit": unit, "total": u.total, "used": u.used, "available": u.available }));
            }
            Printed::new(json!({ "usage": usage }), human)
        }
        Call::NodeGetVolumeHealth {
            volume_id,
            volume_publish_path,
            staging_target_path,
        } => {
            let req = NodeGetVolumeHealthRequest {
                volume_id,
                volume_publish_path,
                staging_target_path,
            };
            let r = c.node_get_volume_health(req).await?.into_inner();
            let h = r.volume_health.unwrap_or_default();
            Printed::new(json!({ "volume_health": output::health(&h) }), show::health(&h))
        }
        Call::NodeGetStorageHealth { secrets } => {
            let secrets = secrets.load()?;
            let r = c
                .node_get_storage_health(NodeGetStorageHealthRequest { secrets })
                .await?
                .into_inner();
            let mut human = String::new();
            let mut backends = Vec::new();
            for b in &r.backend_health {
                let status = storage_health_name(b.status);
                let _ = writeln!(human, "{status}: {}: {}", b.reason, b.message);
                backends.push(json!({
                    "status": status,
                    "reason": b.reason,
                    "message": b.message,
                    "volume_capability": b.volume_capability.as_ref().map(output::capability),
                }));
            }
            if r.backend_health.is_empty() {
                human.push_str("healthy\n");
            }
            Printed::new(json!({ "backend_health": backends }), human)
        }
        Call::NodeExpandVolume {
            volume_id,
            volume_path,
            staging_target_path,
            capacity,
            capability,
            secrets,
        } => {
            let req = NodeExpandVolumeRequest {
                volume_id: volume_id.clone(),
                volume_path,
                capacity_range: capacity.range(),
                staging_target_path,
                volume_capability: capability.if_given(),
                secrets: secrets.load()?,
            };
            let r = c.node_expand_volume(req).await?.into_inner();
            Printed::new(
                json!({ "capacity_bytes": r.capacity_bytes }),
                format!("{volume_id} is now {} on the node\n", size(r.capacity_bytes)),
            )
        }
        Call::NodeGetCapabilities => {
            let r = c
                .node_get_capabilities(NodeGetCapabilitiesRequest {})
                .await?
                .into_inner();
            let names = r
                .capabilities
                .iter()
                .filter_map(|cap| cap.r#type.as_ref())
                .map(|CapType::Rpc(r)| {
                    rpc::Type::try_from(r.r#type)
                        .map(|t| t.as_str_name().to_owned())
                        .unwrap_or_else(|_| r.r#type.to_string())
                })
                .collect();
            capabilities(names)
        }
        Call::NodeGetInfo => {
            let r = c.node_get_info(NodeGetInfoRequest {}).await?.into_inner();
            let topology: Vec<Topology> = r.accessible_topology.iter().cloned().collect();
            let mut human = format!("{}\n", r.node_id);
            let limit = if r.max_volumes_per_node > 0 {
                r.max_volumes_per_node.to_string()
            } else {
                "no limit reported".into()
            };
            let _ = writeln!(human, "  max volumes: {limit}");
            if !topology.is_empty() {
                let _ = writeln!(human, "  topology: {}", topologies(&topology));
            }
            Printed::new(
                json!({
                    "node_id": r.node_id,
                    "max_volumes_per_node": r.max_volumes_per_node,
                    "accessible_topology": r.accessible_topology.as_ref().map(output::topology).unwrap_or(Value::Null),
                }),
                human,
            )
        }
    })
}
