//! The player: what the external-provisioner, -attacher and -snapshotter and kubelet do for the
//! plan's objects, as CSI calls in their order, with the parameters, topology, capabilities and
//! paths they use. It keeps what it made on an undo stack, and tells each step to the
//! [`Report`]; `changes` holds resizes, modifies and snapshots, `page` what the pods do with their
//! volumes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tonic::transport::Channel;

use super::report::{Event, Report, Stage, Unmake, Usage};
use super::{DRIVER, NODE};
use crate::csi::controller_client::ControllerClient;
use crate::csi::node_client::NodeClient;
use crate::csi::*;
use crate::error::{Error, Result};
use crate::manifest::{self, Claim, ClaimSource, NodeFacts, Plan};
use crate::topology::WELL_KNOWN_ZONE_KEY;

/// What was made, so it can be unmade in reverse order whatever happens.
pub(super) enum Undo {
    Volume(String),
    Attach(String),
    Stage(String, String),
    Publish(String, String),
    Snapshot(String),
}

/// One pod's use of a volume: where kubelet published it and what the pod does with it.
#[derive(Clone)]
pub(super) struct PodUse {
    /// The pod: its workload and its index among the workload's pods.
    pub(super) pod: (usize, usize),
    pub(super) target: PathBuf,
    pub(super) read_only: bool,
    /// The container path shown in messages (a mountPath or devicePath), if any container uses it.
    pub(super) shown_at: Option<String>,
}

/// A claim's volume as the demo knows it.
pub(super) struct VolumeState {
    pub(super) volume: Volume,
    pub(super) publish_context: Option<HashMap<String, String>>,
    pub(super) staging: Option<PathBuf>,
    pub(super) pods: Vec<PodUse>,
    /// Whether the demo's page is on it (written, or restored from a volume that had it).
    pub(super) has_page: bool,
}

/// The cluster's programs, played against one driver for one plan.
pub(super) struct Player {
    pub(super) controller: ControllerClient<Channel>,
    pub(super) node: NodeClient<Channel>,
    /// The stand-in for the node's `/`: kubelet's paths are made under it, in the demo's temp dir.
    pub(super) root: PathBuf,
    pub(super) made: Vec<Undo>,
    pub(super) report: Report,
    pub(super) plan: Plan,
    pub(super) volumes: Vec<Option<VolumeState>>,
    /// Each VolumeSnapshot's snapshot id once taken (or bound), and whether it holds the page.
    pub(super) snapshots: Vec<Option<(String, bool)>>,
    pub(super) nodes: Vec<NodeFacts>,
    /// The driver's data directory: the demo makes pre-provisioned volumes and snapshots there.
    pub(super) data_dir: PathBuf,
    /// Volumes kept (reclaim policy Retain) that hold the page, for a claim that binds them again.
    pub(super) pages: BTreeSet<String>,
    /// Whether the controller / node has SINGLE_NODE_MULTI_WRITER, which changes the access mode
    /// the sidecars (controller) and kubelet (node) send.
    pub(super) controller_snmw: bool,
    pub(super) node_snmw: bool,
}

/// A failed call, as the demo's error.
pub(super) fn status(e: tonic::Status) -> Error {
    Error::Internal(format!("{:?}: {}", e.code(), e.message()))
}

fn topology(segments: &BTreeMap<String, String>) -> Topology {
    Topology {
        segments: segments.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    }
}

impl Player {
    /// The plan's player, with nothing made yet and nothing known of the driver.
    pub(super) fn new(channel: Channel, plan: Plan, dir: &Path) -> Self {
        Player {
            controller: ControllerClient::new(channel.clone()),
            node: NodeClient::new(channel),
            root: dir.join("root"),
            made: Vec::new(),
            report: Report::new(
                plan.claims.len() + plan.snapshots.len() + plan.workloads.iter().map(|w| w.pods.len()).sum::<usize>(),
            ),
            volumes: (0..plan.claims.len()).map(|_| None).collect(),
            snapshots: vec![None; plan.snapshots.len()],
            nodes: vec![plan.node.clone()],
            plan,
            data_dir: dir.join("data"),
            pages: BTreeSet::new(),
            controller_snmw: false,
            node_snmw: false,
        }
    }

    /// The life-cycle state of a claim's volume.
    pub(super) fn stage(&self, claim: usize) -> Stage {
        match &self.volumes[claim] {
            None => Stage::None,
            Some(v) if !v.pods.is_empty() => Stage::Published,
            Some(v) if v.staging.is_some() => Stage::VolReady,
            Some(v) if v.publish_context.is_some() => Stage::NodeReady,
            Some(_) => Stage::Created,
        }
    }

    /// kubelet's staging path: a filesystem's global mount, or a block volume's staging dir.
    fn staging(&self, claim: &Claim, handle: &str) -> PathBuf {
        if claim.block {
            return self.root.join(format!(
                "var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/staging/{}",
                claim.pv_name()
            ));
        }
        let hash = format!("{:x}", Sha256::digest(handle.as_bytes()));
        self.root.join(format!(
            "var/lib/kubelet/plugins/kubernetes.io/csi/{DRIVER}/{hash}/globalmount"
        ))
    }

    /// kubelet's publish path for a pod: a mount dir, or a block volume's device file.
    fn target(&self, claim: &Claim, pod_uid: &str) -> PathBuf {
        let pv = claim.pv_name();
        if claim.block {
            return self.root.join(format!(
                "var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/publish/{pv}/{pod_uid}"
            ));
        }
        self.root.join(format!(
            "var/lib/kubelet/pods/{pod_uid}/volumes/kubernetes.io~csi/{pv}/mount"
        ))
    }

    /// The external-provisioner: CreateVolume for a claim, on `selected` for WaitForFirstConsumer.
    pub(super) async fn provision(&mut self, i: usize, selected: Option<&NodeFacts>) -> Result<()> {
        let claim = self.plan.claims[i].clone();
        if claim.static_pv.is_some() {
            return self.bind_static(i);
        }
        let (requisite, preferred) = manifest::topology_requirement(&claim.allowed, &self.nodes, selected, &claim.name);
        let source = match claim.source {
            None => None,
            Some(ClaimSource::Snapshot(s)) => {
                let (id, _) = self.snapshots[s].clone().ok_or_else(|| {
                    Error::Internal(format!("snapshot {} was not taken", self.plan.snapshots[s].name))
                })?;
                Some(volume_content_source::Type::Snapshot(
                    volume_content_source::SnapshotSource { snapshot_id: id },
                ))
            }
            Some(ClaimSource::Claim(c)) => {
                let id = self.volumes[c]
                    .as_ref()
                    .map(|v| v.volume.volume_id.clone())
                    .ok_or_else(|| Error::Internal(format!("claim {} has no volume", self.plan.claims[c].name)))?;
                Some(volume_content_source::Type::Volume(
                    volume_content_source::VolumeSource { volume_id: id },
                ))
            }
        };
        let source_id = match &source {
            Some(volume_content_source::Type::Snapshot(s)) => s.snapshot_id.clone(),
            Some(volume_content_source::Type::Volume(v)) => v.volume_id.clone(),
            None => String::new(),
        };
        let req = CreateVolumeRequest {
            name: claim.pv_name(),
            capacity_range: Some(CapacityRange {
                required_bytes: claim.required_bytes,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![claim.capability(self.controller_snmw)],
            parameters: claim.parameters.clone(),
            mutable_parameters: claim.mutable_parameters.clone(),
            volume_content_source: source.map(|t| VolumeContentSource { r#type: Some(t) }),
            accessibility_requirements: (!requisite.is_empty()).then(|| TopologyRequirement {
                requisite: requisite.iter().map(topology).collect(),
                preferred: preferred.iter().map(topology).collect(),
            }),
            ..Default::default()
        };
        let v = self
            .controller
            .create_volume(req)
            .await
            .map_err(status)?
            .into_inner()
            .volume
            .ok_or_else(|| Error::Internal("CreateVolume returned no volume".into()))?;
        self.made.push(Undo::Volume(v.volume_id.clone()));
        let zone = v
            .accessible_topology
            .first()
            .and_then(|t| t.segments.get(WELL_KNOWN_ZONE_KEY))
            .cloned()
            .unwrap_or_default();
        let volume_id = v.volume_id.as_str();
        let pv = claim.pv_name();
        let event = match claim.source {
            None => Event::Created {
                volume_id,
                pv: &pv,
                gib: v.capacity_bytes >> 30,
                volume_type: claim.volume_type,
                zone: &zone,
            },
            Some(ClaimSource::Snapshot(_)) => Event::Restored {
                volume_id,
                from: &source_id,
            },
            Some(ClaimSource::Claim(_)) => Event::Cloned {
                volume_id,
                from: &source_id,
            },
        };
        self.report.show(event);
        let has_page = match claim.source {
            None => false,
            Some(ClaimSource::Snapshot(s)) => self.snapshots[s].as_ref().is_some_and(|(_, page)| *page),
            Some(ClaimSource::Claim(c)) => self.volumes[c].as_ref().is_some_and(|v| v.has_page),
        };
        self.volumes[i] = Some(VolumeState {
            volume: v,
            publish_context: None,
            staging: None,
            pods: Vec::new(),
            has_page,
        });
        Ok(())
    }

    /// The attacher (ControllerPublish) and kubelet (NodeStage), once per volume on the node.
    pub(super) async fn attach_and_stage(&mut self, i: usize) -> Result<()> {
        let claim = self.plan.claims[i].clone();
        let Some(state) = &self.volumes[i] else {
            return Err(Error::Internal(format!("claim {} has no volume", claim.name)));
        };
        let id = state.volume.volume_id.clone();
        let context = state.volume.volume_context.clone();
        if state.publish_context.is_none() {
            let req = ControllerPublishVolumeRequest {
                volume_id: id.clone(),
                node_id: NODE.into(),
                volume_capability: Some(claim.capability(self.controller_snmw)),
                volume_context: context.clone(),
                ..Default::default()
            };
            let ctx = self
                .controller
                .controller_publish_volume(req)
                .await
                .map_err(status)?
                .into_inner()
                .publish_context;
            self.made.push(Undo::Attach(id.clone()));
            let device = ctx.get("devicePath").cloned().unwrap_or_else(|| "?".into());
            if let Some(s) = self.volumes[i].as_mut() {
                s.publish_context = Some(ctx);
            }
            self.report.show(Event::Attached {
                volume_id: &id,
                device: &device,
            });
        }
        if self.volumes[i].as_ref().is_some_and(|s| s.staging.is_none()) {
            let staging = self.staging(&claim, &id);
            let req = NodeStageVolumeRequest {
                volume_id: id.clone(),
                publish_context: self.volumes[i]
                    .as_ref()
                    .and_then(|s| s.publish_context.clone())
                    .unwrap_or_default(),
                staging_target_path: staging.display().to_string(),
                volume_capability: Some(claim.capability(self.node_snmw)),
                volume_context: context,
                ..Default::default()
            };
            self.node.node_stage_volume(req).await.map_err(status)?;
            self.made.push(Undo::Stage(id.clone(), staging.display().to_string()));
            self.report.show(Event::Staged {
                block: claim.block,
                fs_type: &claim.fs_type,
                staging: &staging,
            });
            if let Some(s) = self.volumes[i].as_mut() {
                s.staging = Some(staging);
            }
        }
        Ok(())
    }

    /// kubelet's NodePublishVolume for one pod.
    pub(super) async fn publish(
        &mut self,
        i: usize,
        pod: (usize, usize),
        read_only: bool,
        shown_at: Option<String>,
    ) -> Result<PathBuf> {
        let claim = self.plan.claims[i].clone();
        let Some(state) = &self.volumes[i] else {
            return Err(Error::Internal(format!("claim {} has no volume", claim.name)));
        };
        let id = state.volume.volume_id.clone();
        let target = self.target(&claim, &manifest::uid());
        let req = NodePublishVolumeRequest {
            volume_id: id.clone(),
            publish_context: state.publish_context.clone().unwrap_or_default(),
            staging_target_path: state
                .staging
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            target_path: target.display().to_string(),
            volume_capability: Some(claim.capability(self.node_snmw)),
            readonly: read_only,
            volume_context: state.volume.volume_context.clone(),
            ..Default::default()
        };
        self.node.node_publish_volume(req).await.map_err(status)?;
        self.made.push(Undo::Publish(id.clone(), target.display().to_string()));
        if let Some(s) = self.volumes[i].as_mut() {
            s.pods.push(PodUse {
                pod,
                target: target.clone(),
                read_only,
                shown_at,
            });
        }
        self.report.show(Event::Published {
            block: claim.block,
            target: &target,
            read_only,
        });
        Ok(target)
    }

    /// One pod of a workload: scheduled on the node, its claims provisioned (WaitForFirstConsumer),
    /// attached, staged and published, and used.
    pub(super) async fn start_pod(&mut self, w: usize, r: usize) -> Result<()> {
        let pod = self.plan.workloads[w].pods[r].clone();
        let node = self.nodes.first().cloned().unwrap_or_else(|| self.plan.node.clone());
        for v in &pod.volumes {
            if self.volumes[v.claim].is_none() {
                self.provision(v.claim, Some(&node)).await?;
            }
            self.attach_and_stage(v.claim).await?;
            let shown_at = v.mount_paths.first().or(v.device_paths.first()).cloned();
            let target = self.publish(v.claim, (w, r), v.read_only, shown_at.clone()).await?;
            self.use_volume(v.claim, &target, v.read_only, shown_at.as_deref())
                .await?;
        }
        Ok(())
    }

    /// What the driver says of itself, as the sidecars and the registrar learn it.
    pub(super) async fn discover(&mut self) -> Result<()> {
        let snmw = crate::csi::controller_service_capability::rpc::Type::SingleNodeMultiWriter as i32;
        let caps = self
            .controller
            .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
            .await
            .map_err(status)?
            .into_inner();
        self.controller_snmw = caps
            .capabilities
            .iter()
            .any(|c| matches!(&c.r#type, Some(controller_service_capability::Type::Rpc(r)) if r.r#type == snmw));
        let node_snmw = crate::csi::node_service_capability::rpc::Type::SingleNodeMultiWriter as i32;
        let caps = self
            .node
            .node_get_capabilities(NodeGetCapabilitiesRequest {})
            .await
            .map_err(status)?
            .into_inner();
        self.node_snmw = caps
            .capabilities
            .iter()
            .any(|c| matches!(&c.r#type, Some(node_service_capability::Type::Rpc(r)) if r.r#type == node_snmw));
        let info = self
            .node
            .node_get_info(NodeGetInfoRequest {})
            .await
            .map_err(status)?
            .into_inner();
        let segments: BTreeMap<String, String> = info
            .accessible_topology
            .map(|t| t.segments.into_iter().collect())
            .unwrap_or_default();
        let zone = segments.get(WELL_KNOWN_ZONE_KEY).cloned().unwrap_or_default();
        self.nodes = vec![NodeFacts {
            name: info.node_id.clone(),
            topology: segments,
        }];
        self.report.show(Event::NodeInfo {
            node: &info.node_id,
            zone: &zone,
            max_volumes: info.max_volumes_per_node,
        });
        Ok(())
    }

    /// kubelet's NodeGetVolumeStats for a published volume.
    pub(super) async fn stats(&mut self, id: &str, target: &Path) -> Result<Usage> {
        let req = NodeGetVolumeStatsRequest {
            volume_id: id.into(),
            volume_path: target.display().to_string(),
            ..Default::default()
        };
        let usage = self
            .node
            .node_get_volume_stats(req)
            .await
            .map_err(status)?
            .into_inner()
            .usage;
        let bytes = usage.iter().find(|u| u.unit == volume_usage::Unit::Bytes as i32);
        Ok(match bytes {
            Some(u) => Usage::Bytes {
                total: u.total,
                used: u.used,
                available: u.available,
            },
            None => Usage::Unknown,
        })
    }

    /// Unmakes one thing and reports the step.
    pub(super) async fn undo(&mut self, undo: Undo) -> Result<()> {
        let (call, id, result) = match undo {
            Undo::Publish(id, target) => {
                let r = self
                    .node
                    .node_unpublish_volume(NodeUnpublishVolumeRequest {
                        volume_id: id.clone(),
                        target_path: target,
                    })
                    .await;
                (Unmake::NodeUnpublish, id, r.map(drop))
            }
            Undo::Stage(id, staging) => {
                let req = NodeUnstageVolumeRequest {
                    volume_id: id.clone(),
                    staging_target_path: staging,
                };
                let r = self.node.node_unstage_volume(req).await;
                (Unmake::NodeUnstage, id, r.map(drop))
            }
            Undo::Attach(id) => {
                let req = ControllerUnpublishVolumeRequest {
                    volume_id: id.clone(),
                    node_id: NODE.into(),
                    ..Default::default()
                };
                let r = self.controller.controller_unpublish_volume(req).await;
                (Unmake::ControllerUnpublish, id, r.map(drop))
            }
            Undo::Snapshot(id) => {
                let req = DeleteSnapshotRequest {
                    snapshot_id: id.clone(),
                    ..Default::default()
                };
                let r = self.controller.delete_snapshot(req).await;
                (Unmake::DeleteSnapshot, id, r.map(drop))
            }
            Undo::Volume(id) => {
                let req = DeleteVolumeRequest {
                    volume_id: id.clone(),
                    ..Default::default()
                };
                let r = self.controller.delete_volume(req).await;
                (Unmake::DeleteVolume, id, r.map(drop))
            }
        };
        match result {
            Ok(()) => {
                self.report.show(Event::Unmade { call, id: &id });
                Ok(())
            }
            Err(e) => {
                self.report.show(Event::UnmakeFailed {
                    call,
                    id: &id,
                    status: &e,
                });
                Err(status(e))
            }
        }
    }

    /// Takes a volume's pods and staging mount down (kubelet's offline path); returns the pods
    /// to start again.
    pub(super) async fn take_down(&mut self, i: usize) -> Result<Vec<PodUse>> {
        let Some(state) = self.volumes[i].as_mut() else {
            return Ok(Vec::new());
        };
        let id = state.volume.volume_id.clone();
        let pods = std::mem::take(&mut state.pods);
        state.staging = None;
        let mut ours = Vec::new();
        let mut n = self.made.len();
        while n > 0 {
            n -= 1;
            if matches!(&self.made[n], Undo::Publish(v, _) | Undo::Stage(v, _) if *v == id) {
                ours.push(self.made.remove(n));
            }
        }
        for u in ours {
            self.undo(u).await?;
        }
        Ok(pods)
    }

    /// Unmakes everything, newest first; keeps going past failures and reports them.
    pub(super) async fn teardown(&mut self) -> bool {
        let mut clean = true;
        while let Some(undo) = self.made.pop() {
            clean &= self.undo(undo).await.is_ok();
        }
        clean
    }
}
