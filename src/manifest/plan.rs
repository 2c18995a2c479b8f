//! The plan the demo plays: the objects read and checked, in the order of the command line's
//! runs, with what the sidecars and kubelet will send for each.

use std::collections::{BTreeMap, HashMap};

use super::sidecars::{Term, csi_access_mode};
use super::{PersistentVolume, SnapshotContent};
use crate::csi::VolumeCapability;
use crate::csi::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume, access_mode::Mode};
use crate::ebs::VolumeType;

/// The node the demo's pods are scheduled on: its name and the topology its driver reports.
#[derive(Clone, Debug, Default)]
pub struct NodeFacts {
    pub name: String,
    pub topology: BTreeMap<String, String>,
}

/// One line of the demo's summary of what it read.
#[derive(Clone, Debug)]
pub struct Listed {
    pub label: String,
    pub facts: String,
}

#[derive(Clone, Debug)]
pub struct StorageClass {
    pub name: String,
    pub immediate: bool,
    pub allow_expansion: bool,
    /// The parameters as the provisioner sends them: the reserved `csi.storage.k8s.io/` keys
    /// taken out.
    pub parameters: HashMap<String, String>,
    /// `csi.storage.k8s.io/fstype`, else the provisioner's default.
    pub fs_type: String,
    pub mount_options: Vec<String>,
    /// `allowedTopologies`, flattened into terms (every key of a term must match).
    pub allowed: Vec<BTreeMap<String, String>>,
    /// `reclaimPolicy: Retain`: a deleted claim's volume stays.
    pub retain: bool,
}

/// Where a claim's content comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimSource {
    /// An index into [`Plan::snapshots`].
    Snapshot(usize),
    /// An index into [`Plan::claims`]: a clone.
    Claim(usize),
}

#[derive(Clone, Debug, Default)]
pub struct Claim {
    /// The group (phase) that applied it.
    pub phase: usize,
    pub namespace: String,
    pub name: String,
    /// The PVC's uid; the PV is `pvc-<uid>`, as the provisioner names it.
    pub uid: String,
    pub file: String,
    pub class: String,
    pub immediate: bool,
    /// `spec.resources.requests.storage` in bytes, and as written.
    pub required_bytes: i64,
    pub size_text: String,
    /// The size the volume gets, in GiB.
    pub size_gib: u64,
    pub access_modes: Vec<String>,
    pub block: bool,
    /// Empty for block volumes.
    pub fs_type: String,
    pub mount_flags: Vec<String>,
    /// CreateVolume's `parameters`: the StorageClass's plus the provisioner's extra metadata.
    pub parameters: HashMap<String, String>,
    /// CreateVolume's `mutable_parameters`: the VolumeAttributesClass named at creation.
    pub mutable_parameters: HashMap<String, String>,
    pub attributes_class: Option<String>,
    pub source: Option<ClaimSource>,
    pub volume_type: VolumeType,
    /// How many pods use it (pods deleted since are not counted).
    pub pods: u32,
    /// Made from a snapshot or a claim of its own apply: provisioned after that apply's snapshots.
    pub late: bool,
    /// The StorageClass's allowedTopologies, as the provisioner reads them.
    pub allowed: Vec<Term>,
    /// The reclaim policy is Retain: deleting the claim keeps the volume.
    pub retain: bool,
    /// The PersistentVolume it binds to instead of being provisioned (an index into
    /// [`Plan::volumes`]), and that PersistentVolume's name.
    pub static_pv: Option<usize>,
    pub volume_name: Option<String>,
    /// For a generic ephemeral volume's claim: the pod it belongs to, `Pod namespace/name`.
    pub owner: Option<String>,
}

impl Claim {
    /// The PersistentVolume's name: the provisioner's `pvc-<uid>`, or the pre-provisioned one's.
    pub fn pv_name(&self) -> String {
        match &self.volume_name {
            Some(n) => n.clone(),
            None => format!("pvc-{}", self.uid),
        }
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The volume capability the provisioner, attacher and kubelet build for this claim's PV.
    /// `single_node_multi_writer`: whether the driver has that capability, which changes how
    /// ReadWriteOnce and ReadWriteOncePod map (csi-lib-utils' accessmodes.ToCSIAccessMode).
    pub fn capability(&self, single_node_multi_writer: bool) -> VolumeCapability {
        let mode = csi_access_mode(&self.access_modes, single_node_multi_writer).unwrap_or(Mode::Unknown);
        let access_type = if self.block {
            AccessType::Block(BlockVolume {})
        } else {
            AccessType::Mount(MountVolume {
                fs_type: self.fs_type.clone(),
                mount_flags: self.mount_flags.clone(),
                ..Default::default()
            })
        };
        VolumeCapability {
            access_mode: Some(AccessMode { mode: mode as i32 }),
            access_type: Some(access_type),
        }
    }
}

/// One pod volume backed by a claim.
#[derive(Clone, Debug)]
pub struct PodVolume {
    pub name: String,
    /// An index into [`Plan::claims`].
    pub claim: usize,
    pub read_only: bool,
    pub mount_paths: Vec<String>,
    pub device_paths: Vec<String>,
}

/// One pod: its name and its volumes (a generic ephemeral volume's claim is the pod's own).
#[derive(Clone, Debug)]
pub struct Pod {
    pub name: String,
    pub volumes: Vec<PodVolume>,
}

/// A Deployment or a Pod: its pods.
#[derive(Clone, Debug)]
pub struct Workload {
    pub phase: usize,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub pods: Vec<Pod>,
}

impl Workload {
    /// `Kind namespace/name`.
    pub fn key(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }
}

#[derive(Clone, Debug)]
pub struct Snapshot {
    pub phase: usize,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub class: String,
    /// The claim it is taken of (an index into [`Plan::claims`]), or None for a snapshot bound
    /// to a pre-provisioned VolumeSnapshotContent.
    pub claim: Option<usize>,
    /// The pre-provisioned VolumeSnapshotContent it is bound to (an index into
    /// [`Plan::contents`]).
    pub content: Option<usize>,
    /// The deletion policy is Retain: deleting the VolumeSnapshot keeps the snapshot.
    pub retain: bool,
    /// CreateSnapshot's `parameters`: the class's plus the snapshotter's extra metadata.
    pub parameters: HashMap<String, String>,
    /// The source volume's size when the snapshot is taken.
    pub size_gib: u64,
}

/// A change to a claim that is already in use, played after the pods are up.
#[derive(Clone, Debug)]
pub enum Update {
    Resize {
        claim: usize,
        required_bytes: i64,
        size_text: String,
        size_gib: u64,
    },
    Modify {
        claim: usize,
        class: String,
        parameters: HashMap<String, String>,
    },
}

/// What a `--delete` does that the demo plays, in the order it plays it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// A Deployment's or Pod's pods go (an index into [`Plan::workloads`]).
    Pods(usize),
    /// A claim goes; its volume is deleted or, with reclaim policy Retain, kept.
    Claim(usize),
    /// A VolumeSnapshot goes; its snapshot is deleted or, with deletion policy Retain, kept.
    Snapshot(usize),
    /// An unbound VolumeSnapshotContent with deletion policy Delete goes, and its snapshot.
    Content(usize),
}

/// One `-f` run (an apply) or `--delete` run of the command line.
#[derive(Clone, Debug, Default)]
pub struct Phase {
    pub delete: bool,
    /// The files and directories given, as typed.
    pub given: Vec<String>,
    pub listed: Vec<Listed>,
    /// An apply's changes to objects already there, played after its pods start.
    pub updates: Vec<Update>,
    pub deletions: Vec<Deletion>,
}

/// Everything read, checked, in the order the demo plays it.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub phases: Vec<Phase>,
    pub classes: BTreeMap<String, StorageClass>,
    pub claims: Vec<Claim>,
    pub workloads: Vec<Workload>,
    pub snapshots: Vec<Snapshot>,
    /// Pre-provisioned PersistentVolumes.
    pub volumes: Vec<PersistentVolume>,
    /// Pre-provisioned VolumeSnapshotContents.
    pub contents: Vec<SnapshotContent>,
    /// The local region's zones, and the demo's node (in one of them).
    pub zones: Vec<String>,
    pub node: NodeFacts,
    /// Why the region has these zones and the node its zone, when the YAML or the command line
    /// chose them.
    pub zones_note: Option<String>,
}

impl Plan {
    /// Whether a workload uses a claim made from a snapshot or a claim of the workload's own
    /// apply: those pods start after the apply's snapshots are taken.
    pub fn is_late(&self, w: &Workload) -> bool {
        w.pods.iter().flat_map(|p| &p.volumes).any(|v| {
            let c = &self.claims[v.claim];
            c.late && c.phase == w.phase
        })
    }
}
