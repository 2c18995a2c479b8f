//! The Controller service's calls.

use std::fmt::Write;

use clap::Subcommand;
use serde_json::{Value, json};
use tonic::transport::Channel;

use super::Failure;
use super::args::*;
use super::output::{self, Printed, sorted};
use super::show::{self, pairs, size};
use crate::csi::controller_client::ControllerClient;
use crate::csi::controller_service_capability::{Type as CapType, rpc};
use crate::csi::*;

#[derive(Subcommand)]
pub enum Call {
    /// CreateVolume: make a volume (StorageClass parameters as -p key=value).
    CreateVolume {
        name: String,
        #[command(flatten)]
        capacity: CapacityArgs,
        /// A parameter, as a StorageClass's (repeatable).
        #[arg(long = "parameter", short = 'p', value_name = "KEY=VALUE", value_parser = key_value)]
        parameters: Vec<(String, String)>,
        /// A mutable parameter, as a VolumeAttributesClass's (repeatable).
        #[arg(long = "mutable-parameter", value_name = "KEY=VALUE", value_parser = key_value)]
        mutable_parameters: Vec<(String, String)>,
        #[command(flatten)]
        capability: CapabilityArgs,
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        topology: TopologyArgs,
        #[command(flatten)]
        secrets: SecretsArgs,
    },
    /// DeleteVolume.
    DeleteVolume {
        volume_id: String,
        #[command(flatten)]
        secrets: SecretsArgs,
    },
    /// ControllerPublishVolume: attach a volume to a node.
    #[command(visible_alias = "publish")]
    ControllerPublishVolume {
        volume_id: String,
        node_id: String,
        /// Attach read-only.
        #[arg(long)]
        readonly: bool,
        /// The volume context CreateVolume returned (repeatable).
        #[arg(long = "volume-context", value_name = "KEY=VALUE", value_parser = key_value)]
        volume_context: Vec<(String, String)>,
        #[command(flatten)]
        capability: CapabilityArgs,
        #[command(flatten)]
        secrets: SecretsArgs,
    },
    /// ControllerUnpublishVolume: detach a volume from a node.
    #[command(visible_alias = "unpublish")]
    ControllerUnpublishVolume {
        volume_id: String,
        node_id: String,
        #[command(flatten)]
        secrets: SecretsArgs,
    },
    /// ValidateVolumeCapabilities: whether a volume supports a capability.
    ValidateVolumeCapabilities {
        volume_id: String,
        #[command(flatten)]
        capability: CapabilityArgs,
        #[arg(long = "volume-context", value_name = "KEY=VALUE", value_parser = key_value)]
        volume_context: Vec<(String, String)>,
        #[arg(long = "parameter", short = 'p', value_name = "KEY=VALUE", value_parser = key_value)]
        parameters: Vec<(String, String)>,
        #[arg(long = "mutable-parameter", value_name = "KEY=VALUE", value_parser = key_value)]
        mutable_parameters: Vec<(String, String)>,
        #[command(flatten)]
        secrets: SecretsArgs,
    },
    /// ListVolumes, one page.
    ListVolumes {
        #[command(flatten)]
        page: PageArgs,
    },
    /// GetCapacity: room for new volumes.
    GetCapacity {
        #[command(flatten)]
        capability: CapabilityArgs,
        #[arg(long = "parameter", short = 'p', value_name = "KEY=VALUE", value_parser = key_value)]
        parameters: Vec<(String, String)>,
        /// The topology asked about: `key=value[,key=value…]`.
        #[arg(long, value_name = "SEGMENTS", value_parser = topology)]
        accessible_topology: Option<Topology>,
    },
    /// ControllerGetCapabilities.
    ControllerGetCapabilities,
    /// CreateSnapshot (VolumeSnapshotClass parameters as -p key=value).
    CreateSnapshot {
        name: String,
        #[arg(long, value_name = "VOLUME_ID")]
        source_volume_id: String,
        #[arg(long = "parameter", short = 'p', value_name = "KEY=VALUE", value_parser = key_value)]
        parameters: Vec<(String, String)>,
        #[command(flatten)]
        secrets: SecretsArgs,
    },
    /// DeleteSnapshot.
    DeleteSnapshot {
        snapshot_id: String,
        #[command(flatten)]
        secrets: SecretsArgs,
    },
    /// ListSnapshots, one page; all, one volume's, or one by id.
    ListSnapshots {
        #[arg(long, value_name = "VOLUME_ID", default_value = "")]
        source_volume_id: String,
        #[arg(long, value_name = "SNAPSHOT_ID", default_value = "")]
        snapshot_id: String,
        #[command(flatten)]
        page: PageArgs,
        #[command(flatten)]
        secrets: SecretsArgs,
    },
    /// GetSnapshot.
    GetSnapshot {
        snapshot_id: String,
        #[command(flatten)]
        secrets: SecretsArgs,
    },
    /// ControllerExpandVolume: grow a volume.
    ControllerExpandVolume {
        volume_id: String,
        #[command(flatten)]
        capacity: CapacityArgs,
        #[command(flatten)]
        capability: CapabilityArgs,
        #[command(flatten)]
        secrets: SecretsArgs,
    },
    /// ControllerGetVolume.
    ControllerGetVolume { volume_id: String },
    /// ControllerModifyVolume: change a volume's mutable parameters (type, iops, throughput, tags).
    ControllerModifyVolume {
        volume_id: String,
        #[arg(long = "mutable-parameter", value_name = "KEY=VALUE", value_parser = key_value)]
        mutable_parameters: Vec<(String, String)>,
        #[command(flatten)]
        secrets: SecretsArgs,
    },
    /// ControllerGetVolumeHealth.
    ControllerGetVolumeHealth {
        volume_id: String,
        #[command(flatten)]
        secrets: SecretsArgs,
    },
    /// ControllerListVolumeHealth, one page.
    ControllerListVolumeHealth {
        #[command(flatten)]
        page: PageArgs,
        #[command(flatten)]
        secrets: SecretsArgs,
    },
}

pub async fn call(channel: Channel, call: Call) -> Result<Printed, Failure> {
    let mut c = ControllerClient::new(channel);
    Ok(match call {
        Call::CreateVolume {
            name,
            capacity,
            parameters,
            mutable_parameters,
            capability,
            source,
            topology,
            secrets,
        } => {
            let req = CreateVolumeRequest {
                name,
                // A size is what a user means to give; without one, 10 GiB as before.
                capacity_range: capacity.range().or(Some(CapacityRange {
                    required_bytes: 10 << 30,
                    limit_bytes: 0,
                })),
                volume_capabilities: vec![capability.capability()],
                parameters: map(&parameters),
                secrets: secrets.load()?,
                volume_content_source: source.source(),
                accessibility_requirements: topology.requirement(),
                mutable_parameters: map(&mutable_parameters),
            };
            let v = c.create_volume(req).await?.into_inner().volume.unwrap_or_default();
            Printed::new(json!({ "volume": output::volume(&v) }), show::volume(&v, None))
        }
        Call::DeleteVolume { volume_id, secrets } => {
            let secrets = secrets.load()?;
            c.delete_volume(DeleteVolumeRequest {
                volume_id: volume_id.clone(),
                secrets,
            })
            .await?;
            Printed::new(json!({}), format!("deleted {volume_id}\n"))
        }
        Call::ControllerPublishVolume {
            volume_id,
            node_id,
            readonly,
            volume_context,
            capability,
            secrets,
        } => {
            let req = ControllerPublishVolumeRequest {
                volume_id: volume_id.clone(),
                node_id: node_id.clone(),
                volume_capability: Some(capability.capability()),
                readonly,
                secrets: secrets.load()?,
                volume_context: map(&volume_context),
            };
            let r = c.controller_publish_volume(req).await?.into_inner();
            let mut human = format!("attached {volume_id} to {node_id}\n");
            if !r.publish_context.is_empty() {
                let _ = writeln!(human, "  publish context: {}", pairs(&r.publish_context));
            }
            Printed::new(json!({ "publish_context": sorted(&r.publish_context) }), human)
        }
        Call::ControllerUnpublishVolume {
            volume_id,
            node_id,
            secrets,
        } => {
            let req = ControllerUnpublishVolumeRequest {
                volume_id: volume_id.clone(),
                node_id: node_id.clone(),
                secrets: secrets.load()?,
            };
            c.controller_unpublish_volume(req).await?;
            Printed::new(json!({}), format!("detached {volume_id} from {node_id}\n"))
        }
        Call::ValidateVolumeCapabilities {
            volume_id,
            capability,
            volume_context,
            parameters,
            mutable_parameters,
            secrets,
        } => {
            let cap = capability.capability();
            let req = ValidateVolumeCapabilitiesRequest {
                volume_id: volume_id.clone(),
                volume_context: map(&volume_context),
                volume_capabilities: vec![cap.clone()],
                parameters: map(&parameters),
                secrets: secrets.load()?,
                mutable_parameters: map(&mutable_parameters),
            };
            let r = c.validate_volume_capabilities(req).await?.into_inner();
            validated(&volume_id, &cap, &r)
        }
        Call::ListVolumes { page } => {
            let req = ListVolumesRequest {
                max_entries: page.max_entries,
                starting_token: page.starting_token,
            };
            let r = c.list_volumes(req).await?.into_inner();
            let mut human = String::new();
            let mut entries = Vec::new();
            for e in &r.entries {
                let v = e.volume.clone().unwrap_or_default();
                let nodes = e.status.as_ref().map(|s| s.published_node_ids.as_slice());
                human.push_str(&show::volume(&v, nodes));
                entries.push(json!({
                    "volume": output::volume(&v),
                    "status": e.status.as_ref().map(|s| json!({ "published_node_ids": s.published_node_ids })),
                }));
            }
            if r.entries.is_empty() {
                human.push_str("no volumes\n");
            }
            human.push_str(&show::next_token(&r.next_token));
            Printed::new(json!({ "entries": entries, "next_token": r.next_token }), human)
        }
        Call::GetCapacity {
            capability,
            parameters,
            accessible_topology,
        } => {
            let req = GetCapacityRequest {
                volume_capabilities: capability.if_given().into_iter().collect(),
                parameters: map(&parameters),
                accessible_topology,
            };
            let r = c.get_capacity(req).await?.into_inner();
            let mut human = format!("available: {}\n", size(r.available_capacity));
            if let Some(max) = r.maximum_volume_size {
                let _ = writeln!(human, "largest volume: {}", size(max));
            }
            if let Some(min) = r.minimum_volume_size {
                let _ = writeln!(human, "smallest volume: {}", size(min));
            }
            Printed::new(
                json!({
                    "available_capacity": r.available_capacity,
                    "maximum_volume_size": r.maximum_volume_size,
                    "minimum_volume_size": r.minimum_volume_size,
                }),
                human,
            )
        }
        Call::ControllerGetCapabilities => {
            let r = c
                .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
                .await?
                .into_inner();
            let names: Vec<String> = r
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
        Call::CreateSnapshot {
            name,
            source_volume_id,
            parameters,
            secrets,
        } => {
            let req = CreateSnapshotRequest {
                source_volume_id,
                name,
                secrets: secrets.load()?,
                parameters: map(&parameters),
            };
            let s = c.create_snapshot(req).await?.into_inner().snapshot.unwrap_or_default();
            Printed::new(json!({ "snapshot": output::snapshot(&s) }), show::snapshot(&s))
        }
        Call::DeleteSnapshot { snapshot_id, secrets } => {
            let secrets = secrets.load()?;
            c.delete_snapshot(DeleteSnapshotRequest {
                snapshot_id: snapshot_id.clone(),
                secrets,
            })
            .await?;
            Printed::new(json!({}), format!("deleted {snapshot_id}\n"))
        }
        Call::ListSnapshots {
            source_volume_id,
            snapshot_id,
            page,
            secrets,
        } => {
            let req = ListSnapshotsRequest {
                max_entries: page.max_entries,
                starting_token: page.starting_token,
                source_volume_id,
                snapshot_id,
                secrets: secrets.load()?,
            };
            let r = c.list_snapshots(req).await?.into_inner();
            let snaps: Vec<Snapshot> = r.entries.into_iter().filter_map(|e| e.snapshot).collect();
            let mut human: String = snaps.iter().map(show::snapshot).collect();
            if snaps.is_empty() {
                human.push_str("no snapshots\n");
            }
            human.push_str(&show::next_token(&r.next_token));
            let entries: Vec<Value> = snaps
                .iter()
                .map(|s| json!({ "snapshot": output::snapshot(s) }))
                .collect();
            Printed::new(json!({ "entries": entries, "next_token": r.next_token }), human)
        }
        Call::GetSnapshot { snapshot_id, secrets } => {
            let secrets = secrets.load()?;
            let r = c.get_snapshot(GetSnapshotRequest { snapshot_id, secrets }).await?;
            let s = r.into_inner().snapshot.unwrap_or_default();
            Printed::new(json!({ "snapshot": output::snapshot(&s) }), show::snapshot(&s))
        }
        Call::ControllerExpandVolume {
            volume_id,
            capacity,
            capability,
            secrets,
        } => {
            let req = ControllerExpandVolumeRequest {
                volume_id: volume_id.clone(),
                capacity_range: capacity.range(),
                secrets: secrets.load()?,
                volume_capability: capability.if_given(),
            };
            let r = c.controller_expand_volume(req).await?.into_inner();
            let node = if r.node_expansion_required {
                "; the node grows the filesystem next"
            } else {
                ""
            };
            Printed::new(
                json!({
                    "capacity_bytes": r.capacity_bytes,
                    "node_expansion_required": r.node_expansion_required,
                }),
                format!("{volume_id} is now {}{node}\n", size(r.capacity_bytes)),
            )
        }
        Call::ControllerGetVolume { volume_id } => {
            let r = c
                .controller_get_volume(ControllerGetVolumeRequest { volume_id })
                .await?
                .into_inner();
            let v = r.volume.unwrap_or_default();
            let nodes = r.status.as_ref().map(|s| s.published_node_ids.as_slice());
            Printed::new(
                json!({
                    "volume": output::volume(&v),
                    "status": r.status.as_ref().map(|s| json!({ "published_node_ids": s.published_node_ids })),
                }),
                show::volume(&v, nodes),
            )
        }
        Call::ControllerModifyVolume {
            volume_id,
            mutable_parameters,
            secrets,
        } => {
            let req = ControllerModifyVolumeRequest {
                volume_id: volume_id.clone(),
                secrets: secrets.load()?,
                mutable_parameters: map(&mutable_parameters),
            };
            c.controller_modify_volume(req).await?;
            Printed::new(
                json!({}),
                format!("modified {volume_id}: {}\n", pairs(&map(&mutable_parameters))),
            )
        }
        Call::ControllerGetVolumeHealth { volume_id, secrets } => {
            let secrets = secrets.load()?;
            let r = c
                .controller_get_volume_health(ControllerGetVolumeHealthRequest { volume_id, secrets })
                .await?
                .into_inner();
            let h = r.volume_health.unwrap_or_default();
            Printed::new(json!({ "volume_health": output::health(&h) }), show::health(&h))
        }
        Call::ControllerListVolumeHealth { page, secrets } => {
            let req = ControllerListVolumeHealthRequest {
                max_entries: page.max_entries,
                starting_token: page.starting_token,
                secrets: secrets.load()?,
            };
            let r = c.controller_list_volume_health(req).await?.into_inner();
            let mut human: String = r.entries.iter().map(show::health).collect();
            // Drivers list only the volumes with a condition (CSI suggests leaving out healthy ones).
            if r.entries.is_empty() {
                human.push_str("no unhealthy volumes\n");
            }
            human.push_str(&show::next_token(&r.next_token));
            let entries: Vec<Value> = r.entries.iter().map(output::health).collect();
            Printed::new(json!({ "entries": entries, "next_token": r.next_token }), human)
        }
    })
}

/// Capability names, one a line.
pub fn capabilities(names: Vec<String>) -> Printed {
    let human: String = names.iter().map(|n| format!("{n}\n")).collect();
    Printed::new(json!({ "capabilities": names }), human)
}

fn validated(volume_id: &str, asked: &VolumeCapability, r: &ValidateVolumeCapabilitiesResponse) -> Printed {
    let confirmed = r.confirmed.as_ref().map(|c| {
        json!({
            "volume_context": sorted(&c.volume_context),
            "volume_capabilities": c.volume_capabilities.iter().map(output::capability).collect::<Vec<_>>(),
            "parameters": sorted(&c.parameters),
            "mutable_parameters": sorted(&c.mutable_parameters),
        })
    });
    let human = if r.confirmed.is_some() {
        format!("{volume_id} supports {}\n", show::capability(asked))
    } else if r.message.is_empty() {
        format!("{volume_id}: not confirmed for {}\n", show::capability(asked))
    } else {
        format!(
            "{volume_id}: not confirmed for {}: {}\n",
            show::capability(asked),
            r.message
        )
    };
    Printed::new(json!({ "confirmed": confirmed, "message": r.message }), human)
}
