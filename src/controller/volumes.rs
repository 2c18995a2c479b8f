//! CreateVolume and DeleteVolume: name and parameters checked against the EBS rules, an existing
//! volume of the same name answered as it is, then the cloud asked.

use super::*;

use crate::ebs::{PV_NAME_TAG, PVC_NAME_TAG, PVC_NAMESPACE_TAG};

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

impl ControllerService {
    pub(super) fn volume_message(&self, v: &Volume, context: HashMap<String, String>) -> csi::Volume {
        csi::Volume {
            capacity_bytes: bytes(v.size_gib),
            volume_id: v.id.clone(),
            volume_context: context,
            content_source: content_source(&v.source),
            accessible_topology: vec![self.zones(|z| z.describe(&v.zone))],
        }
    }

    /// The tags every new volume gets, before the StorageClass's own.
    pub(super) fn volume_tags(&self, name: &str, p: &CreateParams) -> Result<Tags> {
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

    pub(super) async fn create_volume(&self, req: CreateVolumeRequest) -> Result<CreateVolumeResponse> {
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
    pub(super) fn existing_volume(
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
    pub(super) async fn resolve_source(
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

    pub(super) async fn delete_volume(&self, req: DeleteVolumeRequest) -> Result<DeleteVolumeResponse> {
        let id = require(&req.volume_id, "volume_id")?;
        let _guard = self.inflight.start(format!("volume/{id}"), &format!("volume {id}"))?;
        match self.cloud.delete_volume(id).await {
            Ok(()) | Err(Error::NotFound(_)) => Ok(DeleteVolumeResponse {}),
            Err(e) => Err(e),
        }
    }
}
