//! Static provisioning: a PersistentVolume whose `csi.volumeHandle` is an EBS volume made outside
//! the cluster. On AWS the volume exists before the cluster sees it; the demo makes it on its
//! local backend under the same id before playing. A claim binds to such a PersistentVolume as the
//! PV controller binds it (class, volume mode, access modes and size checked); snapshot import,
//! the same for snapshots, is in `snapshot_import`.

use std::collections::HashMap;

use super::kinds::{PvSpec, PvcSpec};
use super::{Builder, DRIVER, Listed, Origin, Result, csi_access_mode};
use crate::capability::check_capability;
use crate::cloud::is_id;
use crate::ebs::{self, FsType, VolumeType};

/// A pre-provisioned PersistentVolume of this driver.
#[derive(Clone, Debug, Default)]
pub struct PersistentVolume {
    /// The group (phase) that applied it.
    pub phase: usize,
    pub name: String,
    /// `spec.csi.volumeHandle`: the EBS volume's id.
    pub handle: String,
    pub file: String,
    /// `spec.capacity.storage`, in bytes and as written, and the volume's size in GiB.
    pub capacity_bytes: i64,
    pub capacity_text: String,
    pub size_gib: u64,
    pub access_modes: Vec<String>,
    pub block: bool,
    /// `spec.csi.fsType`, empty when not given (kubelet then sends none, and the driver formats
    /// ext4).
    pub fs_type: String,
    pub mount_flags: Vec<String>,
    /// `spec.csi.volumeAttributes`: the volume context kubelet and the attacher pass on.
    pub attributes: HashMap<String, String>,
    /// `spec.storageClassName`, empty when none.
    pub class: String,
    /// `persistentVolumeReclaimPolicy` is Retain (the default for a PersistentVolume made by hand).
    pub retain: bool,
    /// A multi-node access mode on a block volume: an io2 Multi-Attach volume.
    pub multi_attach: bool,
    /// `spec.claimRef`: the only claim that may bind to it.
    pub claim_ref: Option<(String, String)>,
    /// The claim bound to it (an index into the plan's claims).
    pub claim: Option<usize>,
    /// Where the demo makes its volume: the node's zone when its node affinity allows it.
    pub zone: String,
}

pub(super) fn volume_mode(origin: &Origin, field: &str, mode: Option<&str>) -> Result<bool> {
    match mode {
        None | Some("Filesystem") => Ok(false),
        Some("Block") => Ok(true),
        Some(other) => Err(origin.error(field, format!("{other:?} is not Filesystem or Block"))),
    }
}

impl Builder {
    /// The PersistentVolume named so that is there now.
    pub(super) fn live_volume(&self, name: &str) -> Option<usize> {
        (0..self.plan.volumes.len())
            .rev()
            .find(|&v| self.plan.volumes[v].name == name && !self.gone.volumes.contains(&v))
    }

    pub(super) fn persistent_volume(&mut self, origin: Origin, name: String, spec: PvSpec) -> Result<()> {
        let csi = spec.csi.as_ref().ok_or_else(|| {
            origin.error(
                "spec.csi",
                format!(
                    "is missing: the demo plays PersistentVolumes of the CSI driver {DRIVER} (an in-tree \
                     awsElasticBlockStore volume is migrated to it; write it as spec.csi)"
                ),
            )
        })?;
        if csi.driver != DRIVER {
            return Err(origin.error(
                "spec.csi.driver",
                format!("{:?} is not this driver; the demo plays {DRIVER} volumes", csi.driver),
            ));
        }
        let handle = csi.volume_handle.clone();
        if !is_id("vol", &handle) {
            return Err(origin.error(
                "spec.csi.volumeHandle",
                format!("{handle:?} is not an EBS volume id the demo can make: vol- and 17 hex digits"),
            ));
        }
        if let Some(other) = (0..self.plan.volumes.len())
            .find(|&v| self.plan.volumes[v].handle == handle && !self.gone.volumes.contains(&v))
        {
            return Err(origin.error(
                "spec.csi.volumeHandle",
                format!(
                    "{handle} is already the volume of PersistentVolume {}; two PersistentVolumes for one volume \
                     would attach it twice",
                    self.plan.volumes[other].name
                ),
            ));
        }
        if self.gone.handles.contains(&handle) {
            return Err(origin.error(
                "spec.csi.volumeHandle",
                format!("{handle} was deleted earlier (its claim's reclaim policy was Delete); it no longer exists"),
            ));
        }
        let storage = spec
            .capacity
            .get("storage")
            .ok_or_else(|| origin.error("spec.capacity.storage", "is missing"))?;
        let (capacity_bytes, capacity_text) = storage.bytes().map_err(|e| origin.error("spec.capacity.storage", e))?;
        let mode = csi_access_mode(&spec.access_modes, true).map_err(|e| origin.error("spec.accessModes", e))?;
        let block = volume_mode(&origin, "spec.volumeMode", spec.volume_mode.as_deref())?;
        let fs_type = if block {
            String::new()
        } else {
            csi.fs_type.clone().unwrap_or_default()
        };
        if !fs_type.is_empty()
            && let Err(e) = fs_type.parse::<FsType>()
        {
            return Err(origin.error("spec.csi.fsType", e.to_string()));
        }
        let cap = crate::csi::VolumeCapability {
            access_mode: Some(crate::csi::volume_capability::AccessMode { mode: mode as i32 }),
            access_type: Some(if block {
                crate::csi::volume_capability::AccessType::Block(Default::default())
            } else {
                crate::csi::volume_capability::AccessType::Mount(Default::default())
            }),
        };
        let multi_attach = check_capability(&cap)
            .map_err(|e| origin.error("spec.accessModes", e.to_string()))?
            .multi_node;
        let volume_type = if multi_attach { VolumeType::Io2 } else { VolumeType::Gp3 };
        let size_gib = ebs::size_gib(capacity_bytes, 0, volume_type)
            .map_err(|e| origin.error("spec.capacity.storage", e.to_string()))?;
        let retain = match spec.persistent_volume_reclaim_policy.as_deref() {
            None | Some("Retain") => true,
            Some("Delete") => false,
            Some(other) => {
                return Err(origin.error(
                    "spec.persistentVolumeReclaimPolicy",
                    format!("{other:?} is not Retain or Delete (Recycle is only for NFS and hostPath)"),
                ));
            }
        };
        let attributes: HashMap<String, String> = csi
            .volume_attributes
            .strings(&origin, "spec.csi.volumeAttributes")?
            .into_iter()
            .collect();
        let claim_ref = spec.claim_ref.as_ref().and_then(|r| {
            let name = r.name.clone()?;
            Some((r.namespace.clone().unwrap_or_else(|| "default".into()), name))
        });
        let affinity = spec.node_affinity.and_then(|a| a.required);
        let mut facts = format!(
            "{name}: {handle}, {capacity_text}, {}, reclaim policy {}",
            spec.access_modes.join(", "),
            if retain { "Retain" } else { "Delete" }
        );
        if block {
            facts.push_str(", Block");
        }
        if let Some(a) = &affinity {
            facts.push_str(&format!(", node affinity: {}", a.describe()));
        }
        self.listed.push(Listed {
            label: "PersistentVolume".into(),
            facts,
        });
        self.plan.volumes.push(PersistentVolume {
            phase: self.phase,
            name,
            handle,
            file: origin.file.clone(),
            capacity_bytes,
            capacity_text,
            size_gib,
            access_modes: spec.access_modes.clone(),
            block,
            fs_type,
            mount_flags: spec.mount_options.clone(),
            attributes,
            class: spec.storage_class_name.clone().unwrap_or_default(),
            retain,
            multi_attach,
            claim_ref,
            claim: None,
            zone: String::new(),
        });
        self.pv_origins.push(origin);
        self.pv_affinity.push(affinity);
        Ok(())
    }

    /// A claim that binds to a pre-provisioned PersistentVolume (`spec.volumeName`, or
    /// `storageClassName: ""`), checked as the PV controller checks a match.
    pub(super) fn bind_static(
        &mut self,
        i: usize,
        origin: &Origin,
        prefix: &str,
        spec: &PvcSpec,
        default_class: Option<&str>,
    ) -> Result<()> {
        let f = |name: &str| format!("{prefix}{name}");
        let (namespace, name) = (self.plan.claims[i].namespace.clone(), self.plan.claims[i].name.clone());
        let class = match spec.storage_class_name.as_deref() {
            Some(c) => c.to_owned(),
            None => default_class.unwrap_or("").to_owned(),
        };
        let block = volume_mode(origin, &f("spec.volumeMode"), spec.volume_mode.as_deref())?;
        let storage = spec
            .resources
            .requests
            .get("storage")
            .ok_or_else(|| origin.error(&f("spec.resources.requests.storage"), "is missing"))?;
        let (required_bytes, size_text) = storage
            .bytes()
            .map_err(|e| origin.error(&f("spec.resources.requests.storage"), e))?;
        csi_access_mode(&spec.access_modes, true).map_err(|e| origin.error(&f("spec.accessModes"), e))?;
        if let Some(src) = spec.data_source_ref.as_ref().or(spec.data_source.as_ref()) {
            return Err(origin.error(
                &f("spec.dataSource"),
                format!(
                    "names {} {}, but a claim bound to a pre-provisioned PersistentVolume gets that volume as it is; \
                     Kubernetes copies no data into it",
                    src.kind, src.name
                ),
            ));
        }
        if spec.volume_attributes_class_name.is_some() {
            return Err(origin.error(
                &f("spec.volumeAttributesClassName"),
                "the demo applies VolumeAttributesClasses to volumes it provisions, not to pre-provisioned ones",
            ));
        }
        let fits = |b: &Builder, v: usize| {
            let pv = &b.plan.volumes[v];
            pv.claim.is_none()
                && !b.gone.released.contains(&v)
                && pv
                    .claim_ref
                    .as_ref()
                    .is_none_or(|r| *r == (namespace.clone(), name.clone()))
                && pv.class == class
                && pv.block == block
                && spec.access_modes.iter().all(|m| pv.access_modes.contains(m))
                && pv.capacity_bytes >= required_bytes
        };
        let v = match &spec.volume_name {
            Some(pv_name) => {
                let field = f("spec.volumeName");
                let v = self.live_volume(pv_name).ok_or_else(|| {
                    origin.error(
                        &field,
                        format!(
                            "PersistentVolume {pv_name:?} is not defined in these files; the claim would stay Pending"
                        ),
                    )
                })?;
                self.check_match(v, origin, prefix, spec, &class, block, required_bytes)?;
                v
            }
            None => (0..self.plan.volumes.len())
                .filter(|&v| !self.gone.volumes.contains(&v) && fits(self, v))
                .min_by_key(|&v| self.plan.volumes[v].capacity_bytes)
                .ok_or_else(|| {
                    origin.error(
                        &f("spec.storageClassName"),
                        format!(
                            "is \"\", which binds to a pre-provisioned PersistentVolume, and none in these files is \
                             Available with class \"\", {}, {} and at least {size_text}; the claim would stay Pending",
                            spec.access_modes.join(", "),
                            if block { "Block" } else { "Filesystem" }
                        ),
                    )
                })?,
        };
        let pv = self.plan.volumes[v].clone();
        self.plan.volumes[v].claim = Some(i);
        let claim = &mut self.plan.claims[i];
        claim.class = class;
        claim.immediate = true;
        claim.required_bytes = required_bytes;
        claim.size_text = size_text;
        claim.size_gib = pv.size_gib;
        claim.access_modes = pv.access_modes.clone();
        claim.block = block;
        claim.fs_type = pv.fs_type.clone();
        claim.mount_flags = pv.mount_flags.clone();
        claim.retain = pv.retain;
        claim.static_pv = Some(v);
        claim.volume_name = Some(pv.name.clone());
        claim.volume_type = if pv.multi_attach {
            VolumeType::Io2
        } else {
            VolumeType::Gp3
        };
        let mut facts = format!("{}, {}, {}", claim.key(), claim.size_text, spec.access_modes.join(", "));
        if block {
            facts.push_str(", Block");
        }
        facts.push_str(&format!(", binds to PersistentVolume {} ({})", pv.name, pv.handle));
        self.listed.push(Listed {
            label: "PersistentVolumeClaim".into(),
            facts,
        });
        Ok(())
    }

    /// Why a claim naming a PersistentVolume cannot bind to it, as the PV controller checks.
    #[allow(clippy::too_many_arguments)]
    fn check_match(
        &self,
        v: usize,
        origin: &Origin,
        prefix: &str,
        spec: &PvcSpec,
        class: &str,
        block: bool,
        required_bytes: i64,
    ) -> Result<()> {
        let f = |name: &str| format!("{prefix}{name}");
        let pv = &self.plan.volumes[v];
        if self.gone.released.contains(&v) {
            return Err(origin.error(
                &f("spec.volumeName"),
                format!(
                    "PersistentVolume {} is Released (its claim was deleted) and Kubernetes does not bind it again; \
                     --delete it and apply it anew",
                    pv.name
                ),
            ));
        }
        if let Some(other) = pv.claim {
            return Err(origin.error(
                &f("spec.volumeName"),
                format!(
                    "PersistentVolume {} is already bound to claim {}",
                    pv.name,
                    self.plan.claims[other].key()
                ),
            ));
        }
        if pv.class != class {
            let hint = if spec.storage_class_name.is_none() {
                " (a claim that names no class gets the default one: set storageClassName: \"\")"
            } else {
                ""
            };
            return Err(origin.error(
                &f("spec.storageClassName"),
                format!(
                    "is {class:?} but PersistentVolume {}'s storageClassName is {:?}{hint}; the claim would stay Pending",
                    pv.name, pv.class
                ),
            ));
        }
        if pv.block != block {
            return Err(origin.error(
                &f("spec.volumeMode"),
                format!(
                    "differs from PersistentVolume {}'s ({}); the claim would stay Pending",
                    pv.name,
                    if pv.block { "Block" } else { "Filesystem" }
                ),
            ));
        }
        if let Some(m) = spec.access_modes.iter().find(|m| !pv.access_modes.contains(m)) {
            return Err(origin.error(
                &f("spec.accessModes"),
                format!(
                    "asks for {m}, which PersistentVolume {} does not offer ({}); the claim would stay Pending",
                    pv.name,
                    pv.access_modes.join(", ")
                ),
            ));
        }
        if required_bytes > pv.capacity_bytes {
            return Err(origin.error(
                &f("spec.resources.requests.storage"),
                format!(
                    "is more than PersistentVolume {}'s capacity ({}); the claim would stay Pending",
                    pv.name, pv.capacity_text
                ),
            ));
        }
        Ok(())
    }
}
