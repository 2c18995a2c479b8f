//! `ebs-csi demo`: Kubernetes YAML played end to end on the local backend, every step a real
//! gRPC call to a real driver process. The demo plays the external-provisioner, -attacher,
//! -resizer and -snapshotter and kubelet with the calls, parameters, topology, volume
//! capabilities and paths they use, for the objects in the YAML (src/manifest.rs reads and checks
//! them first). With no files it plays the seed's: examples/seed/ and examples/seed/day-2/,
//! built into the binary. The command line's `-f` and `--delete` runs are played in order, as a
//! user's `kubectl apply -f` and `kubectl delete -f`: `groups` turns the command line into those
//! runs, `play` plays each, `delete` what a deletion sets off, and `import` makes the volumes and
//! snapshots that pre-provisioned objects name (on AWS they exist already).

mod delete;
mod groups;
mod import;
mod play;

pub use groups::{Options, Step};

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tonic::transport::Channel;

use crate::csi::controller_client::ControllerClient;
use crate::csi::node_client::NodeClient;
use crate::csi::*;
use crate::error::{Error, Result};
use crate::manifest::{self, Claim, ClaimSource, NodeFacts, Plan};
use crate::topology::WELL_KNOWN_ZONE_KEY;

const DRIVER: &str = manifest::DRIVER;
const NODE: &str = "demo-node";
const PAGE: &str = "<h1>Hello from nginx on an ebs-csi volume</h1>\n";

/// The seed's files (and its day-2 follow-up: resize, snapshot, restore), as `demo` with no `-f`
/// plays them.
const SEED: [(&str, &str); 10] = [
    (
        "examples/seed/namespace.yaml",
        include_str!("../examples/seed/namespace.yaml"),
    ),
    ("examples/seed/sc.yaml", include_str!("../examples/seed/sc.yaml")),
    ("examples/seed/pvc.yaml", include_str!("../examples/seed/pvc.yaml")),
    (
        "examples/seed/deployment.yaml",
        include_str!("../examples/seed/deployment.yaml"),
    ),
    (
        "examples/seed/day-2/1-sc-expandable.yaml",
        include_str!("../examples/seed/day-2/1-sc-expandable.yaml"),
    ),
    (
        "examples/seed/day-2/2-pvc-20Gi.yaml",
        include_str!("../examples/seed/day-2/2-pvc-20Gi.yaml"),
    ),
    (
        "examples/seed/day-2/3-snapshotclass.yaml",
        include_str!("../examples/seed/day-2/3-snapshotclass.yaml"),
    ),
    (
        "examples/seed/day-2/4-snapshot.yaml",
        include_str!("../examples/seed/day-2/4-snapshot.yaml"),
    ),
    (
        "examples/seed/day-2/5-pvc-restore.yaml",
        include_str!("../examples/seed/day-2/5-pvc-restore.yaml"),
    ),
    (
        "examples/seed/day-2/6-deployment-restore.yaml",
        include_str!("../examples/seed/day-2/6-deployment-restore.yaml"),
    ),
];

/// What was made, so it can be unmade in reverse order whatever happens.
enum Undo {
    Volume(String),
    Attach(String),
    Stage(String, String),
    Publish(String, String),
    Snapshot(String),
}

/// One pod's use of a volume: where kubelet published it and what the pod does with it.
#[derive(Clone)]
struct PodUse {
    /// The pod: its workload and its index among the workload's pods.
    pod: (usize, usize),
    target: PathBuf,
    read_only: bool,
    /// The container path shown in messages (a mountPath or devicePath), if any container uses it.
    shown_at: Option<String>,
}

/// A claim's volume as the demo knows it.
struct VolumeState {
    volume: Volume,
    publish_context: Option<HashMap<String, String>>,
    staging: Option<PathBuf>,
    pods: Vec<PodUse>,
    /// Whether the demo's page is on it (written, or restored from a volume that had it).
    has_page: bool,
}

struct Demo {
    controller: ControllerClient<Channel>,
    node: NodeClient<Channel>,
    root: PathBuf,
    made: Vec<Undo>,
    started: Instant,
    plan: Plan,
    volumes: Vec<Option<VolumeState>>,
    /// Each VolumeSnapshot's snapshot id once taken (or bound), and whether it holds the page.
    snapshots: Vec<Option<(String, bool)>>,
    nodes: Vec<NodeFacts>,
    /// The driver's data directory: the demo makes pre-provisioned volumes and snapshots there.
    data_dir: PathBuf,
    /// Volumes kept (reclaim policy Retain) that hold the page, for a claim that binds them again.
    pages: std::collections::BTreeSet<String>,
    /// Whether the controller / node has SINGLE_NODE_MULTI_WRITER, which changes the access mode
    /// the sidecars (controller) and kubelet (node) send.
    controller_snmw: bool,
    node_snmw: bool,
}

fn status(e: tonic::Status) -> Error {
    Error::Internal(format!("{:?}: {}", e.code(), e.message()))
}

fn topology(segments: &BTreeMap<String, String>) -> Topology {
    Topology {
        segments: segments.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    }
}

fn gib_text(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

impl Demo {
    fn step(&self, name: &str, state: &str, facts: &str) {
        println!(
            "{:>7.2}s  {name:<26} {state:<11} {facts}",
            self.started.elapsed().as_secs_f64()
        );
    }

    /// The life-cycle state of a claim's volume, for the step lines.
    fn state(&self, claim: usize) -> &'static str {
        match &self.volumes[claim] {
            None => "",
            Some(v) if !v.pods.is_empty() => "PUBLISHED",
            Some(v) if v.staging.is_some() => "VOL_READY",
            Some(v) if v.publish_context.is_some() => "NODE_READY",
            Some(_) => "CREATED",
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
    async fn provision(&mut self, i: usize, selected: Option<&NodeFacts>) -> Result<()> {
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
        let (name, facts) = match claim.source {
            None => (
                "CreateVolume",
                format!(
                    "{} {}, {} GiB {} in {zone}",
                    v.volume_id,
                    claim.pv_name(),
                    v.capacity_bytes >> 30,
                    claim.volume_type
                ),
            ),
            Some(ClaimSource::Snapshot(_)) => ("CreateVolume (restore)", format!("{} from {source_id}", v.volume_id)),
            Some(ClaimSource::Claim(_)) => ("CreateVolume (clone)", format!("{} from {source_id}", v.volume_id)),
        };
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
        self.step(name, "CREATED", &facts);
        Ok(())
    }

    /// The attacher (ControllerPublish) and kubelet (NodeStage), once per volume on the node.
    async fn attach_and_stage(&mut self, i: usize) -> Result<()> {
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
            self.step(
                "ControllerPublishVolume",
                "NODE_READY",
                &format!("{id} attached as {device}"),
            );
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
            let facts = if claim.block {
                format!("block device, staging dir …/{}", tail(&staging, 2))
            } else {
                format!("{} mounted at …/{}", claim.fs_type, tail(&staging, 3))
            };
            if let Some(s) = self.volumes[i].as_mut() {
                s.staging = Some(staging);
            }
            self.step("NodeStageVolume", "VOL_READY", &facts);
        }
        Ok(())
    }

    /// kubelet's NodePublishVolume for one pod.
    async fn publish(
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
        let what = if claim.block { "device" } else { "the pod" };
        let ro = if read_only { " (read-only)" } else { "" };
        self.step(
            "NodePublishVolume",
            "PUBLISHED",
            &format!("bound into {what} at …/{}{ro}", tail(&target, 4)),
        );
        Ok(target)
    }

    /// What the pod does with its volume: the first writer puts the page there; a volume made
    /// from a source must already hold it.
    async fn use_volume(&mut self, i: usize, target: &Path, read_only: bool, shown_at: Option<&str>) -> Result<()> {
        let claim = self.plan.claims[i].clone();
        let (id, has_page) = match &self.volumes[i] {
            Some(s) => (s.volume.volume_id.clone(), s.has_page),
            None => return Ok(()),
        };
        let suffix = match claim.source {
            Some(ClaimSource::Snapshot(_)) => " (restore)",
            Some(ClaimSource::Claim(_)) => " (clone)",
            None => "",
        };
        let object = if claim.block {
            shown_at.unwrap_or("the device").to_owned()
        } else {
            "index.html".to_owned()
        };
        if has_page {
            let back = read_page(target, claim.block);
            if back.as_deref() != Some(PAGE) {
                return Err(Error::Internal(format!(
                    "volume {id} of claim {} does not hold the page it should",
                    claim.key()
                )));
            }
            self.step(&format!("read {object}{suffix}"), "PUBLISHED", "the page is there");
            return Ok(());
        }
        if read_only || shown_at.is_none() {
            return Ok(());
        }
        write_page(target, claim.block)?;
        let back = read_page(target, claim.block);
        if back.as_deref() != Some(PAGE) {
            return Err(Error::Internal(
                "the page read back differs from the one written".into(),
            ));
        }
        if let Some(s) = self.volumes[i].as_mut() {
            s.has_page = true;
        }
        let on = if claim.block { " on the raw device" } else { "" };
        self.step(
            &format!("write {object}"),
            "PUBLISHED",
            &format!("{} bytes written{on} and read back", PAGE.len()),
        );
        let stats = self.stats(&id, target).await?;
        self.step("NodeGetVolumeStats", "PUBLISHED", &stats);
        Ok(())
    }

    /// One pod of a workload: scheduled on the node, its claims provisioned (WaitForFirstConsumer),
    /// attached, staged and published, and used.
    async fn start_pod(&mut self, w: usize, r: usize) -> Result<()> {
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

    /// The external-resizer (ControllerExpandVolume) and kubelet (NodeExpandVolume, online, or
    /// offline by staging the volume again).
    async fn resize(&mut self, i: usize, required_bytes: i64, size_text: &str) -> Result<()> {
        let claim = self.plan.claims[i].clone();
        let Some(state) = &self.volumes[i] else {
            return Err(Error::Internal(format!("claim {} has no volume", claim.name)));
        };
        let id = state.volume.volume_id.clone();
        let req = ControllerExpandVolumeRequest {
            volume_id: id.clone(),
            capacity_range: Some(CapacityRange {
                required_bytes,
                limit_bytes: 0,
            }),
            volume_capability: Some(claim.capability(self.controller_snmw)),
            ..Default::default()
        };
        let r = self
            .controller
            .controller_expand_volume(req)
            .await
            .map_err(status)?
            .into_inner();
        let label = format!("Expand to {size_text}");
        let first = state.pods.first().cloned();
        let staging = state.staging.clone();
        let Some(pod) = first else {
            self.step(
                &label,
                self.state(i),
                &format!(
                    "{id} is {} GiB; kubelet grows the filesystem when a pod next stages it",
                    r.capacity_bytes >> 30
                ),
            );
            return Ok(());
        };
        if !r.node_expansion_required {
            let stats = self.stats(&id, &pod.target).await?;
            self.step(
                &label,
                "PUBLISHED",
                &format!("controller only (no filesystem to grow); {stats}"),
            );
            return Ok(());
        }
        let req = NodeExpandVolumeRequest {
            volume_id: id.clone(),
            volume_path: pod.target.display().to_string(),
            staging_target_path: staging.map(|p| p.display().to_string()).unwrap_or_default(),
            capacity_range: Some(CapacityRange {
                required_bytes: r.capacity_bytes,
                limit_bytes: 0,
            }),
            volume_capability: Some(claim.capability(self.node_snmw)),
            ..Default::default()
        };
        match self.node.node_expand_volume(req).await {
            Ok(_) => {
                let stats = self.stats(&id, &pod.target).await?;
                self.step(&label, "PUBLISHED", &format!("online, controller then node; {stats}"));
            }
            // Growing a mounted ext4 needs CAP_SYS_RESOURCE (a privileged node pod has it). Without
            // it, do what kubelet does for offline expansion: the pods go, the volume is staged
            // again, and staging grows the filesystem.
            Err(e) if e.message().contains("CAP_SYS_RESOURCE") => {
                self.step(
                    "NodeExpandVolume",
                    "PUBLISHED",
                    "online ext4 growth needs CAP_SYS_RESOURCE, which this host lacks; expanding offline",
                );
                let pods = self.take_down(i).await?;
                self.attach_and_stage(i).await?;
                let mut first_target = None;
                for p in pods {
                    let t = self.publish(i, p.pod, p.read_only, p.shown_at).await?;
                    first_target.get_or_insert(t);
                }
                let target = first_target.unwrap_or(pod.target);
                let stats = self.stats(&id, &target).await?;
                self.step(&label, "PUBLISHED", &format!("offline, grown at stage; {stats}"));
            }
            Err(e) => return Err(status(e)),
        }
        let state = self.volumes[i].as_ref();
        if let Some(s) = state
            && s.has_page
            && let Some(p) = s.pods.first()
            && read_page(&p.target, claim.block).as_deref() != Some(PAGE)
        {
            return Err(Error::Internal("the page is gone after the expansion".into()));
        }
        Ok(())
    }

    /// The external-resizer's ControllerModifyVolume for a new VolumeAttributesClass.
    async fn modify(&mut self, i: usize, class: &str, parameters: &HashMap<String, String>) -> Result<()> {
        let id = match &self.volumes[i] {
            Some(s) => s.volume.volume_id.clone(),
            None => {
                return Err(Error::Internal(format!(
                    "claim {} has no volume",
                    self.plan.claims[i].name
                )));
            }
        };
        let req = ControllerModifyVolumeRequest {
            volume_id: id.clone(),
            mutable_parameters: parameters.clone(),
            ..Default::default()
        };
        self.controller.controller_modify_volume(req).await.map_err(status)?;
        let mut shown: Vec<String> = parameters.iter().map(|(k, v)| format!("{k}={v}")).collect();
        shown.sort();
        self.step(
            "ControllerModifyVolume",
            self.state(i),
            &format!("{id} to VolumeAttributesClass {class} ({})", shown.join(", ")),
        );
        Ok(())
    }

    /// The external-snapshotter's CreateSnapshot, waiting for it to be ready as it does.
    async fn snapshot(&mut self, s: usize) -> Result<()> {
        let snap = self.plan.snapshots[s].clone();
        let Some(claim) = snap.claim else {
            return self.bind_snapshot(s);
        };
        let (source, has_page) = match &self.volumes[claim] {
            Some(v) => (v.volume.volume_id.clone(), v.has_page),
            None => {
                return Err(Error::Internal(format!(
                    "the source of snapshot {} has no volume",
                    snap.name
                )));
            }
        };
        let req = CreateSnapshotRequest {
            source_volume_id: source.clone(),
            name: format!("snapshot-{}", snap.uid),
            parameters: snap.parameters.clone(),
            ..Default::default()
        };
        let mut taken = self
            .controller
            .create_snapshot(req)
            .await
            .map_err(status)?
            .into_inner()
            .snapshot
            .ok_or_else(|| Error::Internal("CreateSnapshot returned no snapshot".into()))?;
        self.made.push(Undo::Snapshot(taken.snapshot_id.clone()));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !taken.ready_to_use && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let list = self
                .controller
                .list_snapshots(ListSnapshotsRequest {
                    snapshot_id: taken.snapshot_id.clone(),
                    ..Default::default()
                })
                .await
                .map_err(status)?
                .into_inner();
            if let Some(found) = list.entries.into_iter().find_map(|e| e.snapshot) {
                taken = found;
            }
        }
        self.step(
            "CreateSnapshot",
            "",
            &format!("{} of {source}, ready: {}", taken.snapshot_id, taken.ready_to_use),
        );
        if !taken.ready_to_use {
            return Err(Error::Internal(format!(
                "snapshot {} was not ready within 60 s",
                taken.snapshot_id
            )));
        }
        self.snapshots[s] = Some((taken.snapshot_id, has_page));
        Ok(())
    }

    /// What the driver says of itself, as the sidecars and the registrar learn it.
    async fn discover(&mut self) -> Result<()> {
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
        self.step(
            "NodeGetInfo",
            "",
            &format!(
                "node {} in {zone}, at most {} volumes (the registrar's announcement)",
                info.node_id, info.max_volumes_per_node
            ),
        );
        Ok(())
    }

    async fn stats(&mut self, id: &str, target: &Path) -> Result<String> {
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
            Some(u) if u.used == 0 && u.available == 0 => format!("{} device", gib_text(u.total as u64)),
            Some(u) => format!(
                "{:.1} GiB total, {:.1} MiB used",
                u.total as f64 / (1u64 << 30) as f64,
                u.used as f64 / (1u64 << 20) as f64
            ),
            None => "no byte usage reported".into(),
        })
    }

    /// Unmakes one thing and prints the step.
    async fn undo(&mut self, undo: Undo) -> Result<()> {
        let (what, state, id, result) = match undo {
            Undo::Publish(id, target) => {
                let r = self
                    .node
                    .node_unpublish_volume(NodeUnpublishVolumeRequest {
                        volume_id: id.clone(),
                        target_path: target,
                    })
                    .await;
                ("NodeUnpublishVolume", "VOL_READY", id, r.map(drop))
            }
            Undo::Stage(id, staging) => {
                let req = NodeUnstageVolumeRequest {
                    volume_id: id.clone(),
                    staging_target_path: staging,
                };
                let r = self.node.node_unstage_volume(req).await;
                ("NodeUnstageVolume", "NODE_READY", id, r.map(drop))
            }
            Undo::Attach(id) => {
                let req = ControllerUnpublishVolumeRequest {
                    volume_id: id.clone(),
                    node_id: NODE.into(),
                    ..Default::default()
                };
                let r = self.controller.controller_unpublish_volume(req).await;
                ("ControllerUnpublishVolume", "CREATED", id, r.map(drop))
            }
            Undo::Snapshot(id) => {
                let req = DeleteSnapshotRequest {
                    snapshot_id: id.clone(),
                    ..Default::default()
                };
                let r = self.controller.delete_snapshot(req).await;
                ("DeleteSnapshot", "", id, r.map(drop))
            }
            Undo::Volume(id) => {
                let req = DeleteVolumeRequest {
                    volume_id: id.clone(),
                    ..Default::default()
                };
                let r = self.controller.delete_volume(req).await;
                ("DeleteVolume", "deleted", id, r.map(drop))
            }
        };
        match result {
            Ok(()) => {
                self.step(what, state, &id);
                Ok(())
            }
            Err(e) => {
                self.step(what, "FAILED", &format!("{id}: {:?}: {}", e.code(), e.message()));
                Err(status(e))
            }
        }
    }

    /// Takes a volume's pods and staging mount down (kubelet's offline path); returns the pods
    /// to start again.
    async fn take_down(&mut self, i: usize) -> Result<Vec<PodUse>> {
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
    async fn teardown(&mut self) -> bool {
        let mut clean = true;
        while let Some(undo) = self.made.pop() {
            clean &= self.undo(undo).await.is_ok();
        }
        clean
    }
}

fn write_page(target: &Path, block: bool) -> Result<()> {
    if block {
        let mut dev = std::fs::OpenOptions::new()
            .write(true)
            .open(target)
            .map_err(|e| Error::internal(format!("cannot open {}", target.display()), e))?;
        dev.write_all(PAGE.as_bytes())
            .and_then(|()| dev.sync_all())
            .map_err(|e| Error::internal("cannot write the page to the device", e))
    } else {
        // Synced, file and directory, as an application must before a snapshot for the snapshot
        // to hold its data (EBS snapshots are crash-consistent, like ours).
        let page = target.join("index.html");
        std::fs::write(&page, PAGE)
            .and_then(|()| std::fs::File::open(&page)?.sync_all())
            .and_then(|()| std::fs::File::open(target)?.sync_all())
            .map_err(|e| Error::internal("cannot write the nginx page", e))
    }
}

fn read_page(target: &Path, block: bool) -> Option<String> {
    if block {
        let mut dev = std::fs::File::open(target).ok()?;
        dev.rewind().ok()?;
        let mut buf = vec![0u8; PAGE.len()];
        dev.read_exact(&mut buf).ok()?;
        String::from_utf8(buf).ok()
    } else {
        std::fs::read_to_string(target.join("index.html")).ok()
    }
}

fn tail(path: &Path, n: usize) -> String {
    let parts: Vec<_> = path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts[parts.len().saturating_sub(n)..].join("/")
}

/// Why the demo cannot run here, in one sentence, or None.
fn precondition() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("ebs-csi demo needs root: it makes loop devices and mounts filesystems".into());
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("ebs-csi demo needs loop devices, and /dev/loop-control is missing (modprobe loop?)".into());
    }
    for tool in ["mkfs.ext4", "losetup", "blkid", "resize2fs"] {
        let found = std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
        if !found {
            return Some(format!("ebs-csi demo needs {tool} (util-linux / e2fsprogs)"));
        }
    }
    None
}

/// `ebs-csi serve --mode all` on the local backend, as the plan's node, in the plan's region.
fn start_driver(dir: &Path, plan: &Plan) -> Result<Child> {
    let exe = std::env::current_exe().map_err(|e| Error::internal("cannot find this binary", e))?;
    let log = std::fs::File::create(dir.join("driver.log"))
        .map_err(|e| Error::internal("cannot create the driver log", e))?;
    let zone = plan.node.topology.get(WELL_KNOWN_ZONE_KEY).cloned().unwrap_or_default();
    Command::new(exe)
        .args(["serve", "--mode", "all", "--backend", "local", "--node-id", NODE])
        .arg("--zone")
        .arg(zone)
        .arg("--zones")
        .arg(plan.zones.join(","))
        .arg("--endpoint")
        .arg(format!("unix://{}", dir.join("csi.sock").display()))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| Error::internal("cannot start the driver", e))
}

async fn connect(dir: &Path, child: &mut Child) -> Result<Channel> {
    let endpoint = format!("unix://{}", dir.join("csi.sock").display());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("driver.log")).unwrap_or_default();
            return Err(Error::Internal(format!("the driver exited ({s}):\n{log}")));
        }
        if let Ok(ch) = crate::client::connect(&endpoint).await {
            return Ok(ch);
        }
        if Instant::now() > deadline {
            return Err(Error::Unavailable(
                "the driver did not start listening within 20 s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn stop_driver(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let _ = child.wait();
}

/// Runs the demo; the exit code says whether every step worked (1: the YAML cannot be played or
/// a step failed; 2: cannot run here).
pub async fn run(options: Options) -> i32 {
    let keep = options.keep;
    let node = manifest::DemoNode {
        name: NODE.into(),
        zones: options.zones.clone(),
        zone: options.node_zone.clone(),
    };
    // The YAML is checked before anything is made, and without needing root.
    let plan = match groups::groups(&options.steps).and_then(|g| manifest::plan(&g, &node)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ebs-csi demo: {e}");
            return 1;
        }
    };
    if let Some(why) = precondition() {
        eprintln!("{why}");
        return 2;
    }
    let dir = std::env::temp_dir().join(format!("ebs-csi-demo-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        return 1;
    }
    let mut child = match start_driver(&dir, &plan) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let code = match connect(&dir, &mut child).await {
        Err(e) => {
            eprintln!("{e}");
            1
        }
        Ok(channel) => {
            let claims = plan.claims.len();
            let snapshots = plan.snapshots.len();
            let node = plan.node.clone();
            let mut demo = Demo {
                controller: ControllerClient::new(channel.clone()),
                node: NodeClient::new(channel),
                root: dir.join("root"),
                made: Vec::new(),
                started: Instant::now(),
                plan,
                volumes: (0..claims).map(|_| None).collect(),
                snapshots: vec![None; snapshots],
                nodes: vec![node],
                data_dir: dir.join("data"),
                pages: Default::default(),
                controller_snmw: false,
                node_snmw: false,
            };
            let what = groups::describe(&options.steps);
            println!("ebs-csi demo: {what} on the local backend (data in {})", dir.display());
            let outcome = tokio::select! {
                r = demo.run() => r,
                _ = tokio::signal::ctrl_c() => Err(Error::Aborted("interrupted".into())),
            };
            if let Err(e) = &outcome {
                eprintln!("demo failed: {e}");
            }
            if keep && outcome.is_ok() {
                println!(
                    "--keep: the volumes stay published under {}; the driver keeps running (pid {}).",
                    dir.display(),
                    child.id()
                );
                println!(
                    "clean up: kill {} and unmount/detach what is under {}",
                    child.id(),
                    dir.display()
                );
                return 0;
            }
            let clean = demo.teardown().await;
            match (outcome.is_ok(), clean) {
                (true, true) => {
                    println!(
                        "{:>7.2}s  all steps worked; nothing left mounted or attached",
                        demo.started.elapsed().as_secs_f64()
                    );
                    0
                }
                _ => 1,
            }
        }
    };
    stop_driver(&mut child);
    let _ = std::fs::remove_dir_all(&dir);
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_seed_plays_the_seed_and_its_day_two() {
        let plan = manifest::plan(&groups::groups(&[]).unwrap(), &manifest::DemoNode::named(NODE)).unwrap();
        let claim = &plan.claims[0];
        assert_eq!(claim.key(), "dev-ns/ebs-claim");
        assert_eq!(claim.size_gib, 10);
        assert!(!claim.immediate, "ebs-sc waits for the first consumer");
        assert_eq!(claim.parameters["csi.storage.k8s.io/pvc/name"], "ebs-claim");
        assert_eq!(claim.parameters["csi.storage.k8s.io/pvc/namespace"], "dev-ns");
        assert_eq!(claim.parameters["csi.storage.k8s.io/pv/name"], claim.pv_name());
        assert_eq!(claim.fs_type, "ext4");
        assert!(matches!(
            plan.phases[0].updates[..],
            [manifest::Update::Resize { size_gib: 20, .. }]
        ));
        assert_eq!(
            plan.zones,
            ["local-1a", "local-1b", "local-1c"],
            "no zone named: the default region"
        );
        assert_eq!(plan.node.topology[WELL_KNOWN_ZONE_KEY], "local-1a");
        assert_eq!(plan.snapshots.len(), 1);
        assert_eq!(plan.claims[1].source, Some(ClaimSource::Snapshot(0)));
    }
}
