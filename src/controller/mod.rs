//! The CSI Controller service: validates each call, then asks the cloud. Never touches the OS.

use std::collections::HashMap;
use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::info;

use crate::capability::{check_capabilities, check_capability};
use crate::cloud::{Cloud, Modification, Snapshot, SnapshotFilter, Tags, Volume, VolumeSource, VolumeSpec};
use crate::csi::controller_server::Controller;
use crate::csi::controller_service_capability::{Rpc, rpc::Type as RpcType};
use crate::csi::volume_capability::AccessType;
use crate::csi::{self, *};
use crate::ebs::{self, CLUSTER_TAG, CreateParams, GIB, ModifyParams, SNAPSHOT_NAME_TAG, VOLUME_NAME_TAG, VolumeType};
use crate::error::{Error, Result};
use crate::inflight::InFlight;
use crate::params;
use crate::rpc::{require, traced};
use crate::topology::Zones;

const PVC_NAME_TAG: &str = "kubernetes.io/created-for/pvc/name";
const PVC_NAMESPACE_TAG: &str = "kubernetes.io/created-for/pvc/namespace";
const PV_NAME_TAG: &str = "kubernetes.io/created-for/pv/name";
/// EC2's limit on a tag value, which the volume name becomes.
const MAX_NAME_LEN: usize = 256;
/// The snapshotter's extra metadata.
const SNAPSHOT_META: [(&str, &str); 3] = [
    (
        "csi.storage.k8s.io/volumesnapshot/name",
        "kubernetes.io/created-for/volumesnapshot/name",
    ),
    (
        "csi.storage.k8s.io/volumesnapshot/namespace",
        "kubernetes.io/created-for/volumesnapshot/namespace",
    ),
    (
        "csi.storage.k8s.io/volumesnapshotcontent/name",
        "kubernetes.io/created-for/volumesnapshotcontent/name",
    ),
];

/// What the controller adds to every object it creates.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub extra_tags: Tags,
    pub cluster_id: Option<String>,
}

pub struct ControllerService {
    cloud: Arc<dyn Cloud>,
    inflight: InFlight,
    opts: Options,
}

fn bytes(gib: u64) -> i64 {
    i64::try_from(gib.saturating_mul(GIB)).unwrap_or(i64::MAX)
}

/// The filesystem the capabilities ask for (the provisioner moves the StorageClass's fstype
/// there), if any.
fn capability_fs(caps: &[VolumeCapability]) -> Result<Option<ebs::FsType>> {
    for cap in caps {
        if let Some(AccessType::Mount(m)) = &cap.access_type
            && !m.fs_type.is_empty()
        {
            return m.fs_type.parse().map(Some);
        }
    }
    Ok(None)
}

fn content_source(source: &Option<VolumeSource>) -> Option<VolumeContentSource> {
    use volume_content_source::{SnapshotSource, Type, VolumeSource as VolSrc};
    source.as_ref().map(|s| VolumeContentSource {
        r#type: Some(match s {
            VolumeSource::Snapshot(id) => Type::Snapshot(SnapshotSource {
                snapshot_id: id.clone(),
            }),
            VolumeSource::Volume(id) => Type::Volume(VolSrc { volume_id: id.clone() }),
        }),
    })
}

fn snapshot_message(s: &Snapshot) -> csi::Snapshot {
    csi::Snapshot {
        size_bytes: bytes(s.size_gib),
        snapshot_id: s.id.clone(),
        source_volume_id: s.source_volume.clone(),
        creation_time: Some(prost_types::Timestamp {
            seconds: s.created_at.0,
            nanos: s.created_at.1,
        }),
        ready_to_use: s.ready,
        group_snapshot_id: String::new(),
    }
}

/// A paging token as the cloud takes it: none when empty. The cloud checks it is one of its own.
fn start_token(token: &str) -> Option<&str> {
    (!token.is_empty()).then_some(token)
}

fn max_entries(n: i32) -> Result<usize> {
    usize::try_from(n).map_err(|_| Error::InvalidArgument(format!("max_entries {n} is negative")))
}

impl ControllerService {
    pub fn new(cloud: Arc<dyn Cloud>, opts: Options) -> Self {
        ControllerService {
            cloud,
            inflight: InFlight::default(),
            opts,
        }
    }

    fn zones<R>(&self, f: impl FnOnce(&Zones) -> R) -> R {
        let (names, ids) = (self.cloud.zones(), self.cloud.zone_ids());
        f(&Zones {
            names: &names,
            ids: &ids,
        })
    }

    fn volume_message(&self, v: &Volume, context: HashMap<String, String>) -> csi::Volume {
        csi::Volume {
            capacity_bytes: bytes(v.size_gib),
            volume_id: v.id.clone(),
            volume_context: context,
            content_source: content_source(&v.source),
            accessible_topology: vec![self.zones(|z| z.describe(&v.zone))],
        }
    }

    /// The tags every new volume gets, before the StorageClass's own.
    fn volume_tags(&self, name: &str, p: &CreateParams) -> Result<Tags> {
        let mut tags = self.opts.extra_tags.clone();
        tags.extend(p.tags.clone());
        tags.insert(VOLUME_NAME_TAG.into(), name.into());
        tags.insert(CLUSTER_TAG.into(), "true".into());
        if let Some(id) = &self.opts.cluster_id {
            tags.insert(format!("kubernetes.io/cluster/{id}"), "owned".into());
        }
        for (key, value) in [
            (PVC_NAME_TAG, &p.pvc_name),
            (PVC_NAMESPACE_TAG, &p.pvc_namespace),
            (PV_NAME_TAG, &p.pv_name),
        ] {
            if let Some(v) = value {
                tags.insert(key.into(), v.clone());
            }
        }
        if tags.len() > ebs::MAX_USER_TAGS {
            return Err(Error::InvalidArgument(format!(
                "volume {name:?} would carry {} tags (the driver's, --extra-tags and tagSpecification_N); EBS allows {}",
                tags.len(),
                ebs::MAX_USER_TAGS
            )));
        }
        Ok(tags)
    }

    async fn create_volume(&self, req: CreateVolumeRequest) -> Result<CreateVolumeResponse> {
        let name = require(&req.name, "name")?;
        if name.len() > MAX_NAME_LEN {
            return Err(Error::InvalidArgument(format!(
                "name is {} bytes long; at most {MAX_NAME_LEN} are allowed",
                name.len()
            )));
        }
        let caps = check_capabilities(&req.volume_capabilities)?;
        // A VolumeAttributesClass named at creation applies from the start.
        let p = params::parse_create_request(&req.parameters, &req.mutable_parameters)?;
        p.validate_for_fs(
            capability_fs(&req.volume_capabilities)?
                .or(p.fs_type)
                .unwrap_or(ebs::FsType::Ext4),
        )?;
        let range = req.capacity_range.unwrap_or_default();
        let mut size_gib = ebs::size_gib(range.required_bytes, range.limit_bytes, p.volume_type)?;

        let multi_attach = caps.multi_node;
        if multi_attach && !matches!(p.volume_type, VolumeType::Io1 | VolumeType::Io2) {
            return Err(Error::InvalidArgument(format!(
                "multi-node access needs a multi-attach volume, which only io1 and io2 can be; type is {}",
                p.volume_type.as_str()
            )));
        }

        let (source, source_zone) = self.resolve_source(&req.volume_content_source).await?;
        if let Some((kind, id, gib)) = source.as_ref().map(|(s, g)| (s, s.id(), *g))
            && gib > size_gib
        {
            let limit = range.limit_bytes;
            if limit > 0 && bytes(gib) > limit {
                return Err(Error::OutOfRange(format!(
                    "source {kind} {id} is {gib} GiB, more than the limit of {limit} bytes; a new volume must be at least as large as its source"
                )));
            }
            size_gib = gib;
        }
        let source = source.map(|(s, _)| s);
        let perf = p.performance(size_gib)?;

        let guard_key = format!("name/{name}");
        let _guard = self.inflight.start(guard_key, &format!("volume name {name:?}"))?;

        let req_topology = req.accessibility_requirements.as_ref();
        if let Some(existing) = self.cloud.volume_by_name(name).await? {
            return self.existing_volume(existing, &req, &p, &source, multi_attach);
        }

        let zone = match source_zone {
            Some(z) if self.zones(|t| t.satisfies(req_topology, &z)) => z,
            Some(z) => {
                return Err(Error::ResourceExhausted(format!(
                    "the source is in zone {z}, which the accessibility requirements exclude"
                )));
            }
            None => {
                let fallback = self.cloud.zones().first().cloned().unwrap_or_default();
                self.zones(|t| t.choose(req_topology, &fallback))?
            }
        };
        // EBS takes an initialization rate only for a volume restored from a snapshot.
        let restoring = matches!(source, Some(VolumeSource::Snapshot(_)));
        let initialization_rate = p.volume_initialization_rate.filter(|_| restoring);
        let spec = VolumeSpec {
            size_gib,
            volume_type: p.volume_type,
            iops: perf.iops,
            throughput: perf.throughput,
            encrypted: p.encrypted,
            kms_key_id: p.kms_key_id.clone(),
            zone,
            multi_attach,
            source,
            initialization_rate,
            tags: self.volume_tags(name, &p)?,
        };
        let volume = self.cloud.create_volume(name, &spec).await?;
        info!(volume = %volume.id, name, zone = %volume.zone, size_gib = volume.size_gib, "CreateVolume done");
        Ok(CreateVolumeResponse {
            volume: Some(self.volume_message(&volume, volume_context(&p))),
        })
    }

    /// Answers a repeated CreateVolume: the existing volume when compatible, else ALREADY_EXISTS.
    fn existing_volume(
        &self,
        v: Volume,
        req: &CreateVolumeRequest,
        p: &CreateParams,
        source: &Option<VolumeSource>,
        multi_attach: bool,
    ) -> Result<CreateVolumeResponse> {
        let range = req.capacity_range.unwrap_or_default();
        let size = bytes(v.size_gib);
        let mut conflicts = Vec::new();
        if range.required_bytes > size || (range.limit_bytes > 0 && size > range.limit_bytes) {
            conflicts.push(format!("its size is {} GiB", v.size_gib));
        }
        if v.volume_type != p.volume_type {
            conflicts.push(format!("its type is {}", v.volume_type.as_str()));
        }
        if v.encrypted != p.encrypted || (p.kms_key_id.is_some() && v.kms_key_id != p.kms_key_id) {
            conflicts.push("its encryption differs".into());
        }
        if v.source != *source {
            conflicts.push("its content source differs".into());
        }
        if v.multi_attach != multi_attach {
            conflicts.push("its multi-attach setting differs".into());
        }
        if !self.zones(|z| z.satisfies(req.accessibility_requirements.as_ref(), &v.zone)) {
            conflicts.push(format!("its zone {} is outside the requested topology", v.zone));
        }
        if !conflicts.is_empty() {
            return Err(Error::AlreadyExists(format!(
                "volume {} already exists with name {:?} but {}; use another name or the same arguments",
                v.id,
                req.name,
                conflicts.join(", ")
            )));
        }
        Ok(CreateVolumeResponse {
            volume: Some(self.volume_message(&v, volume_context(p))),
        })
    }

    /// The content source, checked to exist: what it is, its size, and its zone when it has one.
    async fn resolve_source(
        &self,
        source: &Option<VolumeContentSource>,
    ) -> Result<(Option<(VolumeSource, u64)>, Option<String>)> {
        use volume_content_source::Type;
        match source.as_ref().and_then(|s| s.r#type.as_ref()) {
            None => Ok((None, None)),
            Some(Type::Snapshot(s)) => {
                let id = require(&s.snapshot_id, "volume_content_source.snapshot.snapshot_id")?;
                let snap = self.cloud.snapshot(id).await?;
                if !snap.ready {
                    return Err(Error::FailedPrecondition(format!(
                        "snapshot {id} is not ready yet; retry"
                    )));
                }
                Ok((Some((VolumeSource::Snapshot(snap.id), snap.size_gib)), None))
            }
            Some(Type::Volume(s)) => {
                let id = require(&s.volume_id, "volume_content_source.volume.volume_id")?;
                let v = self.cloud.volume(id).await?;
                Ok((Some((VolumeSource::Volume(v.id), v.size_gib)), Some(v.zone)))
            }
        }
    }

    async fn delete_volume(&self, req: DeleteVolumeRequest) -> Result<DeleteVolumeResponse> {
        let id = require(&req.volume_id, "volume_id")?;
        let _guard = self.inflight.start(format!("volume/{id}"), &format!("volume {id}"))?;
        match self.cloud.delete_volume(id).await {
            Ok(()) | Err(Error::NotFound(_)) => Ok(DeleteVolumeResponse {}),
            Err(e) => Err(e),
        }
    }

    async fn publish(&self, req: ControllerPublishVolumeRequest) -> Result<ControllerPublishVolumeResponse> {
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

    async fn unpublish(&self, req: ControllerUnpublishVolumeRequest) -> Result<ControllerUnpublishVolumeResponse> {
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

    async fn validate(&self, req: ValidateVolumeCapabilitiesRequest) -> Result<ValidateVolumeCapabilitiesResponse> {
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

    fn volume_entry(&self, v: &Volume) -> list_volumes_response::Entry {
        list_volumes_response::Entry {
            volume: Some(self.volume_message(v, HashMap::new())),
            status: Some(list_volumes_response::VolumeStatus {
                published_node_ids: v.attachments.iter().map(|a| a.node.clone()).collect(),
            }),
        }
    }

    async fn list_volumes(&self, req: ListVolumesRequest) -> Result<ListVolumesResponse> {
        let max = max_entries(req.max_entries)?;
        let start = start_token(&req.starting_token);
        let page = self.cloud.list_volumes(start, max).await?;
        Ok(ListVolumesResponse {
            entries: page.items.iter().map(|v| self.volume_entry(v)).collect(),
            next_token: page.next.unwrap_or_default(),
        })
    }

    async fn get_volume(&self, req: ControllerGetVolumeRequest) -> Result<ControllerGetVolumeResponse> {
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

    async fn get_volume_health(
        &self,
        req: ControllerGetVolumeHealthRequest,
    ) -> Result<ControllerGetVolumeHealthResponse> {
        let id = require(&req.volume_id, "volume_id")?;
        let v = self.cloud.volume(id).await?;
        Ok(ControllerGetVolumeHealthResponse {
            volume_health: Some(health(&v)),
        })
    }

    async fn list_volume_health(
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

    async fn get_snapshot(&self, req: GetSnapshotRequest) -> Result<GetSnapshotResponse> {
        let id = require(&req.snapshot_id, "snapshot_id")?;
        let snap = self.cloud.snapshot(id).await?;
        Ok(GetSnapshotResponse {
            snapshot: Some(snapshot_message(&snap)),
        })
    }

    async fn get_capacity(&self, req: GetCapacityRequest) -> Result<GetCapacityResponse> {
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

    async fn expand(&self, req: ControllerExpandVolumeRequest) -> Result<ControllerExpandVolumeResponse> {
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

    async fn modify(&self, req: ControllerModifyVolumeRequest) -> Result<ControllerModifyVolumeResponse> {
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
        let (volume_type, perf) = ebs::modified_performance(v.volume_type, v.size_gib, &current, &change, false)?;
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

    async fn create_snapshot(&self, req: CreateSnapshotRequest) -> Result<CreateSnapshotResponse> {
        let name = require(&req.name, "name")?;
        if name.len() > MAX_NAME_LEN {
            return Err(Error::InvalidArgument(format!(
                "name is {} bytes long; at most {MAX_NAME_LEN} are allowed",
                name.len()
            )));
        }
        let source = require(&req.source_volume_id, "source_volume_id")?;
        let mut tags = self.opts.extra_tags.clone();
        for (key, value) in &req.parameters {
            if let Some((_, tag)) = SNAPSHOT_META.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)) {
                tags.insert((*tag).to_owned(), value.clone());
            } else if key.to_ascii_lowercase().starts_with("tagspecification_") {
                tags.extend(params::parse_snapshot_tag(key, value)?);
            } else {
                return Err(Error::InvalidArgument(format!(
                    "snapshot parameter {key:?} is not supported; use tagSpecification_N or the snapshotter's metadata keys"
                )));
            }
        }
        tags.insert(SNAPSHOT_NAME_TAG.into(), name.into());
        tags.insert(CLUSTER_TAG.into(), "true".into());
        if let Some(id) = &self.opts.cluster_id {
            tags.insert(format!("kubernetes.io/cluster/{id}"), "owned".into());
        }
        let _guard = self
            .inflight
            .start(format!("snapshot/{name}"), &format!("snapshot name {name:?}"))?;
        if let Some(existing) = self.cloud.snapshot_by_name(name).await? {
            if existing.source_volume != source {
                return Err(Error::AlreadyExists(format!(
                    "snapshot {} named {name:?} is of volume {}, not {source}",
                    existing.id, existing.source_volume
                )));
            }
            return Ok(CreateSnapshotResponse {
                snapshot: Some(snapshot_message(&existing)),
            });
        }
        let snap = self.cloud.create_snapshot(name, source, &tags).await?;
        info!(volume = %source, snapshot = %snap.id, "CreateSnapshot done");
        Ok(CreateSnapshotResponse {
            snapshot: Some(snapshot_message(&snap)),
        })
    }

    async fn delete_snapshot(&self, req: DeleteSnapshotRequest) -> Result<DeleteSnapshotResponse> {
        let id = require(&req.snapshot_id, "snapshot_id")?;
        let _guard = self
            .inflight
            .start(format!("snapshot-id/{id}"), &format!("snapshot {id}"))?;
        match self.cloud.delete_snapshot(id).await {
            Ok(()) | Err(Error::NotFound(_)) => Ok(DeleteSnapshotResponse {}),
            Err(e) => Err(e),
        }
    }

    async fn list_snapshots(&self, req: ListSnapshotsRequest) -> Result<ListSnapshotsResponse> {
        let max = max_entries(req.max_entries)?;
        let start = start_token(&req.starting_token);
        let filter = SnapshotFilter {
            snapshot_id: (!req.snapshot_id.is_empty()).then(|| req.snapshot_id.clone()),
            source_volume: (!req.source_volume_id.is_empty()).then(|| req.source_volume_id.clone()),
        };
        let page = self.cloud.list_snapshots(&filter, start, max).await?;
        Ok(ListSnapshotsResponse {
            entries: page
                .items
                .iter()
                .map(|s| list_snapshots_response::Entry {
                    snapshot: Some(snapshot_message(s)),
                })
                .collect(),
            next_token: page.next.unwrap_or_default(),
        })
    }
}

impl VolumeSource {
    fn id(&self) -> &str {
        match self {
            VolumeSource::Snapshot(id) | VolumeSource::Volume(id) => id,
        }
    }
}

impl std::fmt::Display for VolumeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VolumeSource::Snapshot(_) => "snapshot",
            VolumeSource::Volume(_) => "volume",
        })
    }
}

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

/// What the node needs to format the volume, handed over in the volume context.
fn volume_context(p: &CreateParams) -> HashMap<String, String> {
    let mut ctx = HashMap::new();
    if let Some(fs) = p.fs_type {
        ctx.insert(params::FSTYPE_KEY.to_owned(), fs.as_str().to_owned());
    }
    let m = &p.mkfs;
    let numbers: [(&str, Option<u64>); 5] = [
        ("blockSize", m.block_size.map(u64::from)),
        ("inodeSize", m.inode_size.map(u64::from)),
        ("bytesPerInode", m.bytes_per_inode.map(u64::from)),
        ("numberOfInodes", m.number_of_inodes),
        ("ext4ClusterSize", m.ext4_cluster_size.map(u64::from)),
    ];
    for (key, value) in numbers {
        if let Some(v) = value {
            ctx.insert(key.to_owned(), v.to_string());
        }
    }
    if m.ext4_bigalloc {
        ctx.insert("ext4BigAlloc".into(), "true".into());
    }
    if p.ext4_encryption_support {
        ctx.insert("ext4EncryptionSupport".into(), "true".into());
    }
    ctx
}

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
