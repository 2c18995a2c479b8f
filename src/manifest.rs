//! Kubernetes objects read from YAML, for `ebs-csi demo -f`: the kinds and fields that the
//! external-provisioner, -attacher, -resizer, -snapshotter and kubelet act on, turned into a
//! checked [`Plan`]. Everything the demo cannot honour is refused here, naming the file, the
//! object and the field, so that a bad file fails before any volume exists.
//!
//! The command line's `-f` and `--delete` runs are [`Group`]s, played in order as a user's
//! `kubectl apply -f` and `kubectl delete -f`; each becomes a [`Phase`] of the plan. Within an
//! apply, documents are read in file-name order (as `kubectl apply -f DIR` does); a later document
//! for an object already there is an update: a PersistentVolumeClaim may grow its
//! `spec.resources.requests.storage` (a resize) or change `spec.volumeAttributesClassName` (a
//! modify), a StorageClass may change `allowVolumeExpansion`, as Kubernetes allows. Anything else
//! applied again under a name in use is refused; once deleted, a name makes a new object.
//!
//! Beside this file: `workloads` (pods and their volumes), `updates` (resizes and modifies),
//! `sequence` (deletes), `ephemeral` (generic ephemeral volumes), `static_pv` and
//! `snapshot_import` (PersistentVolumes and VolumeSnapshotContents made outside the cluster) and
//! `zones` (the zones the objects name, and where the demo's node goes).

mod ephemeral;
mod sequence;
mod snapshot_import;
mod static_pv;
mod updates;
mod workloads;
mod zones;

pub use snapshot_import::SnapshotContent;
pub use static_pv::PersistentVolume;
pub use zones::DemoNode;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::capability::check_capability;
use crate::csi::VolumeCapability;
use crate::csi::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume, access_mode::Mode};
use crate::ebs::{self, CreateParams, FsType, Performance, VolumeType};
use crate::params;

/// The driver the YAML must name.
pub const DRIVER: &str = "ebs.csi.aws.com";
/// The external-provisioner's `--default-fstype`, used when the StorageClass names none.
pub const DEFAULT_FSTYPE: &str = "ext4";
/// The prefix of the keys the sidecars reserve for themselves in StorageClass parameters.
const RESERVED_PREFIX: &str = "csi.storage.k8s.io/";
/// The external-provisioner's reserved keys: it strips them (fstype goes into the volume
/// capability) and refuses any other key under the prefix.
const PROVISIONER_KEYS: [&str; 15] = [
    "csi.storage.k8s.io/fstype",
    "csi.storage.k8s.io/provisioner-secret-name",
    "csi.storage.k8s.io/provisioner-secret-namespace",
    "csi.storage.k8s.io/controller-publish-secret-name",
    "csi.storage.k8s.io/controller-publish-secret-namespace",
    "csi.storage.k8s.io/node-stage-secret-name",
    "csi.storage.k8s.io/node-stage-secret-namespace",
    "csi.storage.k8s.io/node-publish-secret-name",
    "csi.storage.k8s.io/node-publish-secret-namespace",
    "csi.storage.k8s.io/controller-expand-secret-name",
    "csi.storage.k8s.io/controller-expand-secret-namespace",
    "csi.storage.k8s.io/node-expand-secret-name",
    "csi.storage.k8s.io/node-expand-secret-namespace",
    "csi.storage.k8s.io/secret-name",
    "csi.storage.k8s.io/secret-namespace",
];
/// The external-snapshotter's reserved VolumeSnapshotClass keys.
const SNAPSHOTTER_KEYS: [&str; 4] = [
    "csi.storage.k8s.io/snapshotter-secret-name",
    "csi.storage.k8s.io/snapshotter-secret-namespace",
    "csi.storage.k8s.io/snapshotter-list-secret-name",
    "csi.storage.k8s.io/snapshotter-list-secret-namespace",
];
/// Namespaces every cluster has.
const BUILT_IN_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];
/// More pods than this on the demo's one node is a typo, not a demo.
const MAX_PODS: u32 = 16;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// YAML the demo cannot honour: which file, which object, which field, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestError {
    pub file: String,
    /// `Kind namespace/name`, when the document got that far.
    pub object: Option<String>,
    /// The field's path in the object, as `kubectl explain` spells it.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(o) = &self.object {
            write!(f, ": {o}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ManifestError {}

type Result<T> = std::result::Result<T, ManifestError>;

/// Where a document came from, for messages.
#[derive(Clone, Debug)]
struct Origin {
    file: String,
    object: String,
}

impl Origin {
    fn error(&self, field: &str, message: impl Into<String>) -> ManifestError {
        ManifestError {
            file: self.file.clone(),
            object: Some(self.object.clone()),
            field: (!field.is_empty()).then(|| field.to_owned()),
            message: message.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading files
// ---------------------------------------------------------------------------------------------

/// One YAML file's name (as shown in messages) and text.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

/// Reads the files named, a directory meaning its `*.yaml`, `*.yml` and `*.json` files (not
/// its subdirectories), in name order as `kubectl apply -f` takes them.
pub fn read_sources(paths: &[PathBuf]) -> Result<Vec<SourceFile>> {
    let unreadable = |p: &Path, e: std::io::Error| ManifestError {
        file: p.display().to_string(),
        object: None,
        field: None,
        message: format!("cannot read it: {e}"),
    };
    let mut out = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| unreadable(path, e))?;
        let mut files = if meta.is_dir() {
            let mut list = Vec::new();
            for entry in std::fs::read_dir(path).map_err(|e| unreadable(path, e))? {
                let p = entry.map_err(|e| unreadable(path, e))?.path();
                let yaml = p
                    .extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| matches!(x, "yaml" | "yml" | "json"));
                if yaml && p.is_file() {
                    list.push(p);
                }
            }
            if list.is_empty() {
                return Err(ManifestError {
                    file: path.display().to_string(),
                    object: None,
                    field: None,
                    message: "the directory holds no .yaml, .yml or .json file".into(),
                });
            }
            list.sort();
            list
        } else {
            vec![path.clone()]
        };
        for p in files.drain(..) {
            let text = std::fs::read_to_string(&p).map_err(|e| unreadable(&p, e))?;
            out.push(SourceFile {
                name: p.display().to_string(),
                text,
            });
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The Kubernetes shapes (only the fields used; others are ignored, as the API server keeps them)
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase", default)]
struct Meta {
    name: Option<String>,
    namespace: Option<String>,
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct StorageClassDoc {
    #[serde(default)]
    metadata: Meta,
    provisioner: Option<String>,
    #[serde(default)]
    parameters: BTreeMap<String, Value>,
    volume_binding_mode: Option<String>,
    allow_volume_expansion: Option<bool>,
    reclaim_policy: Option<String>,
    #[serde(default)]
    mount_options: Vec<String>,
    #[serde(default)]
    allowed_topologies: Vec<TopologySelectorTerm>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
struct TopologySelectorTerm {
    match_label_expressions: Vec<TopologyRequirementDoc>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
struct TopologyRequirementDoc {
    key: String,
    values: Vec<String>,
}

#[derive(Deserialize, Debug)]
struct PvcDoc {
    spec: Option<PvcSpec>,
}

#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase", default)]
struct PvcSpec {
    access_modes: Vec<String>,
    resources: Resources,
    storage_class_name: Option<String>,
    volume_mode: Option<String>,
    data_source: Option<TypedRef>,
    data_source_ref: Option<TypedRef>,
    volume_attributes_class_name: Option<String>,
    volume_name: Option<String>,
}

#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(default)]
struct Resources {
    requests: BTreeMap<String, Value>,
}

#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase", default)]
struct TypedRef {
    api_group: Option<String>,
    kind: String,
    name: String,
    namespace: Option<String>,
}

#[derive(Deserialize, Debug)]
struct DeploymentDoc {
    spec: Option<DeploymentSpec>,
}

#[derive(Deserialize, Debug)]
struct DeploymentSpec {
    replicas: Option<i64>,
    template: Option<PodTemplate>,
}

#[derive(Deserialize, Debug)]
struct PodTemplate {
    spec: Option<PodSpec>,
}

#[derive(Deserialize, Debug)]
struct PodDoc {
    spec: Option<PodSpec>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
struct PodSpec {
    containers: Vec<Container>,
    init_containers: Vec<Container>,
    volumes: Vec<PodVolumeDoc>,
    node_selector: BTreeMap<String, String>,
    affinity: Option<zones::AffinityDoc>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
struct Container {
    name: String,
    volume_mounts: Vec<VolumeMountDoc>,
    volume_devices: Vec<VolumeDeviceDoc>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
struct VolumeMountDoc {
    name: String,
    mount_path: String,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
struct VolumeDeviceDoc {
    name: String,
    device_path: String,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
struct PodVolumeDoc {
    name: String,
    persistent_volume_claim: Option<ClaimSourceDoc>,
    ephemeral: Option<ephemeral::EphemeralDoc>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
struct ClaimSourceDoc {
    claim_name: String,
    read_only: bool,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct SnapshotClassDoc {
    #[serde(default)]
    metadata: Meta,
    driver: Option<String>,
    deletion_policy: Option<String>,
    #[serde(default)]
    parameters: BTreeMap<String, Value>,
}

#[derive(Deserialize, Debug)]
struct SnapshotDoc {
    spec: Option<SnapshotSpec>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
struct SnapshotSpec {
    volume_snapshot_class_name: Option<String>,
    source: SnapshotSourceDoc,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
struct SnapshotSourceDoc {
    persistent_volume_claim_name: Option<String>,
    volume_snapshot_content_name: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct AttributesClassDoc {
    driver_name: Option<String>,
    #[serde(default)]
    parameters: BTreeMap<String, Value>,
}

// ---------------------------------------------------------------------------------------------
// The plan the demo plays
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Access modes and quantities
// ---------------------------------------------------------------------------------------------

/// Kubernetes access modes → the CSI mode, as csi-lib-utils maps them for the provisioner, the
/// attacher and kubelet alike.
pub fn csi_access_mode(modes: &[String], single_node_multi_writer: bool) -> std::result::Result<Mode, String> {
    let set: BTreeSet<&str> = modes.iter().map(String::as_str).collect();
    if let Some(bad) = set.iter().find(|m| {
        !matches!(
            **m,
            "ReadWriteOnce" | "ReadOnlyMany" | "ReadWriteMany" | "ReadWriteOncePod"
        )
    }) {
        return Err(format!(
            "{bad:?} is not an access mode; use ReadWriteOnce, ReadWriteOncePod, ReadOnlyMany or ReadWriteMany"
        ));
    }
    if set.contains("ReadWriteOncePod") {
        if set.len() > 1 {
            return Err("ReadWriteOncePod cannot be combined with other access modes".into());
        }
        return Ok(if single_node_multi_writer {
            Mode::SingleNodeSingleWriter
        } else {
            Mode::SingleNodeWriter
        });
    }
    if set.contains("ReadWriteMany") {
        return Ok(Mode::MultiNodeMultiWriter);
    }
    if set.contains("ReadOnlyMany") && set.contains("ReadWriteOnce") {
        return Err("CSI has no mode for ReadOnlyMany together with ReadWriteOnce".into());
    }
    if set.contains("ReadOnlyMany") {
        return Ok(Mode::MultiNodeReaderOnly);
    }
    if set.contains("ReadWriteOnce") {
        return Ok(if single_node_multi_writer {
            Mode::SingleNodeMultiWriter
        } else {
            Mode::SingleNodeWriter
        });
    }
    Err("at least one access mode is required".into())
}

/// A Kubernetes quantity (`10Gi`, `500M`, `1.5Ti`, `1e9`, `1073741824`) in bytes, rounded up.
pub fn parse_quantity(text: &str) -> std::result::Result<u128, String> {
    let bad = || {
        format!(
            "{text:?} is not a quantity: a number with an optional suffix (Ki, Mi, Gi, Ti, Pi, Ei, k, M, G, T, P, E)"
        )
    };
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let number = number.strip_prefix('+').unwrap_or(number);
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() || !whole.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    // mantissa / 10^scale, exactly.
    let digits = format!("{whole}{frac}");
    let mantissa: u128 = digits.parse().map_err(|_| bad())?;
    let mut scale = u32::try_from(frac.len()).map_err(|_| bad())?;
    let (mult, extra_scale): (u128, u32) = match suffix {
        "" => (1, 0),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        "m" => (1, 3),
        "k" => (1_000, 0),
        "M" => (1_000_000, 0),
        "G" => (1_000_000_000, 0),
        "T" => (1_000_000_000_000, 0),
        "P" => (1_000_000_000_000_000, 0),
        "E" => (1_000_000_000_000_000_000, 0),
        e if e.starts_with(['e', 'E']) => {
            let exp: u32 = e[1..].parse().map_err(|_| bad())?;
            if exp > 30 {
                return Err(bad());
            }
            (10u128.pow(exp), 0)
        }
        _ => return Err(bad()),
    };
    scale += extra_scale;
    if scale > 30 {
        return Err(bad());
    }
    let num = mantissa.checked_mul(mult).ok_or_else(bad)?;
    Ok(num.div_ceil(10u128.pow(scale)))
}

/// A quantity from YAML: a string or a bare number.
fn quantity_bytes(value: &Value) -> std::result::Result<(i64, String), String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => return Err(format!("{other:?} is not a quantity")),
    };
    let bytes = parse_quantity(&text)?;
    let bytes = i64::try_from(bytes).map_err(|_| format!("{text} is too large"))?;
    if bytes == 0 {
        return Err(format!("{text} is zero; a volume needs a size"));
    }
    Ok((bytes, text))
}

/// A fresh uid, shaped as Kubernetes' (version 4).
pub fn uid() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// FNV-1a, 32 bits: the hash the provisioner spreads Immediate volumes over zones with.
fn fnv1a(text: &str) -> u32 {
    text.bytes()
        .fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// A topology term: segments that must all match.
pub type Term = BTreeMap<String, String>;

/// The external-provisioner's topology requirement. `requisite`: the StorageClass's
/// allowedTopologies (`allowed`), else the topology of every registered node, sorted and without
/// repeats. `preferred`: the requisite terms rotated to start at the selected node's term
/// (WaitForFirstConsumer), or by a hash of the PVC name (Immediate, to spread volumes).
pub fn topology_requirement(
    allowed: &[Term],
    nodes: &[NodeFacts],
    selected: Option<&NodeFacts>,
    pvc_name: &str,
) -> (Vec<Term>, Vec<Term>) {
    let mut requisite: Vec<BTreeMap<String, String>> = if allowed.is_empty() {
        nodes.iter().map(|n| n.topology.clone()).collect()
    } else {
        allowed.to_vec()
    };
    requisite.sort();
    requisite.dedup();
    if requisite.is_empty() {
        return (requisite, Vec::new());
    }
    let start = match selected {
        Some(node) => requisite
            .iter()
            .position(|t| t.iter().all(|(k, v)| node.topology.get(k) == Some(v)))
            .unwrap_or(0),
        None => fnv1a(pvc_name) as usize % requisite.len(),
    };
    let mut preferred = requisite.clone();
    preferred.rotate_left(start);
    (requisite, preferred)
}

// ---------------------------------------------------------------------------------------------
// Building the plan
// ---------------------------------------------------------------------------------------------

/// A document after the first pass: its kind and where it came from.
struct Doc {
    file: String,
    api_version: String,
    kind: String,
    namespace: Option<String>,
    name: String,
}

/// Parses every document of every file; syntax errors name the file and the line.
fn documents(files: &[SourceFile]) -> Result<Vec<(Doc, Value)>> {
    let mut out = Vec::new();
    for f in files {
        let syntax = |e: serde_yaml_ng::Error| ManifestError {
            file: f.name.clone(),
            object: None,
            field: None,
            message: format!("YAML syntax error: {e}"),
        };
        for (index, de) in serde_yaml_ng::Deserializer::from_str(&f.text).enumerate() {
            let value = Value::deserialize(de).map_err(syntax)?;
            if value.is_null() {
                continue;
            }
            let at = |field: &str, message: String| ManifestError {
                file: f.name.clone(),
                object: Some(format!("document {}", index + 1)),
                field: Some(field.to_owned()),
                message,
            };
            let Value::Mapping(map) = &value else {
                return Err(at("", "a Kubernetes object must be a mapping".into()));
            };
            let text = |key: &str| map.get(key).and_then(Value::as_str).map(str::to_owned);
            let kind = text("kind").ok_or_else(|| at("kind", "is missing".into()))?;
            let api_version = text("apiVersion").ok_or_else(|| at("apiVersion", "is missing".into()))?;
            let meta = map.get("metadata");
            let name = meta
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| ManifestError {
                    file: f.name.clone(),
                    object: Some(format!("{kind} (document {})", index + 1)),
                    field: Some("metadata.name".into()),
                    message: "is missing".into(),
                })?;
            let namespace = meta
                .and_then(|m| m.get("namespace"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            out.push((
                Doc {
                    file: f.name.clone(),
                    api_version,
                    kind,
                    namespace,
                    name,
                },
                value,
            ));
        }
    }
    Ok(out)
}

/// serde's message starts with the field path when there is one: `spec.replicas: invalid type…`.
fn typed_error(origin: &Origin, e: serde_yaml_ng::Error) -> ManifestError {
    let mut text = e.to_string();
    // The position is in the re-serialized document (see `typed`), not in the user's file.
    if let Some(cut) = text.find(" at line ") {
        text.truncate(cut);
    }
    match text.split_once(": ") {
        Some((path, rest)) if !path.contains(' ') && !path.is_empty() => origin.error(path, rest),
        _ => origin.error("", text),
    }
}

fn typed<T: serde::de::DeserializeOwned>(origin: &Origin, value: Value) -> Result<T> {
    // Round-trip through text so that serde_yaml_ng tracks the path of a mistyped field.
    let text = serde_yaml_ng::to_string(&value).map_err(|e| origin.error("", e.to_string()))?;
    serde_yaml_ng::from_str(&text).map_err(|e| typed_error(origin, e))
}

/// A `map[string]string` field (StorageClass and class parameters): Kubernetes refuses any value
/// that is not a string, where YAML would happily read `iops: 3000` as a number.
fn string_map(origin: &Origin, field: &str, map: &BTreeMap<String, Value>) -> Result<BTreeMap<String, String>> {
    map.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            other => Err(origin.error(
                &format!("{field}.{k}"),
                format!(
                    "is {}, but Kubernetes takes only strings here: quote it",
                    serde_yaml_ng::to_string(other).unwrap_or_default().trim()
                ),
            )),
        })
        .collect()
}

fn namespaced(doc: &Doc) -> String {
    doc.namespace.clone().unwrap_or_else(|| "default".into())
}

/// Builds the plan: every object read, checked against each other and against what the driver
/// accepts, the way the sidecars would send it.
/// One `-f` (apply) or `--delete` run of the command line: its files, read.
#[derive(Clone, Debug, Default)]
pub struct Group {
    pub delete: bool,
    /// The files and directories given, as typed.
    pub given: Vec<String>,
    pub files: Vec<SourceFile>,
}

/// Builds the plan: the groups in order, every object read and checked against each other and
/// against what the driver accepts, the way the sidecars would send it; then the zones the
/// objects name decide the demo's region and where its node is.
pub fn plan(groups: &[Group], node: &DemoNode) -> Result<Plan> {
    let mut b = Builder::default();
    for (k, group) in groups.iter().enumerate() {
        b.phase = k;
        let docs = documents(&group.files)?;
        if group.delete {
            b.delete(docs)?;
        } else {
            let start = b.plan.claims.len();
            for (doc, value) in docs {
                b.add(doc, value)?;
            }
            b.finish(start)?;
        }
        b.close_phase(group);
    }
    b.place(node)?;
    Ok(b.plan)
}

/// A Deployment's or Pod's pod spec, kept until every claim is known.
struct WorkloadDoc {
    origin: Origin,
    kind: &'static str,
    namespace: String,
    name: String,
    /// None for a bare Pod.
    replicas: Option<i64>,
    pod: PodSpec,
    /// Where the pod spec is in the object, for field paths.
    base: &'static str,
    /// Its pods' names, and per generic ephemeral volume (by index in `pod.volumes`) each pod's
    /// claim; filled in by `ephemeral_claims`.
    pod_names: Vec<String>,
    ephemeral: BTreeMap<usize, Vec<usize>>,
}

#[derive(Default)]
struct Builder {
    /// The group being read.
    phase: usize,
    plan: Plan,
    namespaces: BTreeSet<String>,
    /// Every object there, by `Kind namespace/name`, with the group that applied it and its
    /// document: a later document for it is an update, or, for kinds that cannot be updated here,
    /// unchanged (the same document) or refused.
    seen: BTreeMap<String, (usize, Value)>,
    class_origin: BTreeMap<String, (Origin, StorageClassDoc)>,
    /// Per claim: its document, and where its spec is in that document (`` for a claim, the
    /// volume's `…ephemeral.volumeClaimTemplate.` for an ephemeral one).
    claim_docs: Vec<(Origin, PvcSpec)>,
    claim_fields: Vec<String>,
    claim_updates: Vec<(Origin, usize, PvcSpec)>,
    workload_docs: Vec<WorkloadDoc>,
    snapshot_classes: BTreeMap<String, (Origin, SnapshotClassDoc)>,
    snapshot_docs: Vec<(Origin, String, String, SnapshotSpec)>,
    attribute_classes: BTreeMap<String, (Origin, AttributesClassDoc)>,
    /// The group's listing, updates and deletions, until it closes into a phase.
    listed: Vec<Listed>,
    updates: Vec<Update>,
    deletions: Vec<Deletion>,
    /// Updates of storage classes, listed with the claims' updates.
    late_listed: Vec<Listed>,
    /// Each claim's size, volume type and performance, and VolumeAttributesClass, as they stand
    /// after the updates read so far.
    sizes: Vec<(i64, u64)>,
    perfs: Vec<(VolumeType, Option<Performance>)>,
    vacs: Vec<Option<String>>,
    /// What the `--delete` runs have removed, and claims deleted while pods use them.
    gone: sequence::Gone,
    /// Pods' own scheduling rules (nodeSelector, node affinity), for the zones.
    pod_rules: Vec<zones::Rule>,
    /// Per PersistentVolume: its document and its node affinity.
    pv_origins: Vec<Origin>,
    pv_affinity: Vec<Option<zones::NodeSelector>>,
    /// Per provisioned claim: its StorageClass's document, for zone refusals.
    class_of: BTreeMap<usize, Origin>,
}

/// `Kind namespace/name` (`Kind name` for cluster-scoped kinds), as messages name objects.
fn object_key(doc: &Doc) -> String {
    let cluster_scoped = matches!(
        doc.kind.as_str(),
        "Namespace"
            | "StorageClass"
            | "VolumeSnapshotClass"
            | "VolumeAttributesClass"
            | "PersistentVolume"
            | "VolumeSnapshotContent"
    );
    if cluster_scoped {
        format!("{} {}", doc.kind, doc.name)
    } else {
        format!("{} {}/{}", doc.kind, namespaced(doc), doc.name)
    }
}

/// The API versions served for the kinds the demo plays; None for other kinds.
fn served_versions(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "Namespace" | "PersistentVolumeClaim" | "Pod" | "PersistentVolume" => Some(&["v1"]),
        "StorageClass" => Some(&["storage.k8s.io/v1"]),
        "VolumeAttributesClass" => Some(&["storage.k8s.io/v1beta1", "storage.k8s.io/v1"]),
        "Deployment" => Some(&["apps/v1"]),
        "VolumeSnapshot" | "VolumeSnapshotClass" | "VolumeSnapshotContent" => Some(&["snapshot.storage.k8s.io/v1"]),
        _ => None,
    }
}

impl Builder {
    fn add(&mut self, doc: Doc, value: Value) -> Result<()> {
        let object = object_key(&doc);
        let origin = Origin {
            file: doc.file.clone(),
            object: object.clone(),
        };
        let wanted = served_versions(&doc.kind);
        let Some(versions) = wanted else {
            self.listed.push(Listed {
                label: doc.kind.clone(),
                facts: format!("{}: not played by the demo; skipped", doc.name),
            });
            return Ok(());
        };
        if !versions.contains(&doc.api_version.as_str()) {
            return Err(origin.error(
                "apiVersion",
                format!(
                    "{:?} is not served for {}; use {}",
                    doc.api_version,
                    doc.kind,
                    versions.join(" or ")
                ),
            ));
        }
        let updatable = matches!(doc.kind.as_str(), "StorageClass" | "PersistentVolumeClaim");
        if let Some((first, old)) = self.seen.get(&object)
            && !updatable
        {
            if *old == value {
                let name = object.split_once(' ').map_or(object.as_str(), |(_, n)| n);
                self.listed.push(Listed {
                    label: doc.kind.clone(),
                    facts: format!("{name}: unchanged"),
                });
                return Ok(());
            }
            let first = *first;
            return Err(origin.error(
                "metadata.name",
                if first == self.phase {
                    "is defined twice; only claims and storage classes can be updated by a later document \
                     (to replace it, --delete it between two -f)"
                } else {
                    "already exists (an earlier -f applied it) and only claims and storage classes can be updated; \
                     --delete it first to apply it anew"
                },
            ));
        }
        self.seen
            .entry(object.clone())
            .or_insert_with(|| (self.phase, value.clone()));
        match doc.kind.as_str() {
            "Namespace" => {
                self.namespaces.insert(doc.name.clone());
                self.listed.push(Listed {
                    label: "Namespace".into(),
                    facts: doc.name,
                });
            }
            "StorageClass" => {
                let d: StorageClassDoc = typed(&origin, value)?;
                self.storage_class(origin, d)?;
            }
            "PersistentVolumeClaim" => {
                let d: PvcDoc = typed(&origin, value)?;
                let spec = d.spec.ok_or_else(|| origin.error("spec", "is missing"))?;
                self.claim(origin, namespaced(&doc), doc.name, spec)?;
            }
            "Deployment" => {
                let d: DeploymentDoc = typed(&origin, value)?;
                let spec = d.spec.ok_or_else(|| origin.error("spec", "is missing"))?;
                let pod = spec
                    .template
                    .and_then(|t| t.spec)
                    .ok_or_else(|| origin.error("spec.template.spec", "is missing"))?;
                self.workload_docs.push(WorkloadDoc {
                    origin,
                    kind: "Deployment",
                    namespace: namespaced(&doc),
                    name: doc.name,
                    replicas: Some(spec.replicas.unwrap_or(1)),
                    pod,
                    base: "spec.template.spec",
                    pod_names: Vec::new(),
                    ephemeral: BTreeMap::new(),
                });
            }
            "Pod" => {
                let d: PodDoc = typed(&origin, value)?;
                let pod = d.spec.ok_or_else(|| origin.error("spec", "is missing"))?;
                self.workload_docs.push(WorkloadDoc {
                    origin,
                    kind: "Pod",
                    namespace: namespaced(&doc),
                    name: doc.name,
                    replicas: None,
                    pod,
                    base: "spec",
                    pod_names: Vec::new(),
                    ephemeral: BTreeMap::new(),
                });
            }
            "VolumeSnapshotClass" => {
                let d: SnapshotClassDoc = typed(&origin, value)?;
                self.snapshot_classes.insert(doc.name, (origin, d));
            }
            "VolumeSnapshot" => {
                let d: SnapshotDoc = typed(&origin, value)?;
                let spec = d.spec.ok_or_else(|| origin.error("spec", "is missing"))?;
                self.snapshot_docs.push((origin, namespaced(&doc), doc.name, spec));
            }
            "VolumeAttributesClass" => {
                let d: AttributesClassDoc = typed(&origin, value)?;
                self.attribute_classes.insert(doc.name, (origin, d));
            }
            "PersistentVolume" => self.persistent_volume(origin, doc.name, value)?,
            "VolumeSnapshotContent" => self.snapshot_content(origin, doc.name, value)?,
            _ => unreachable!("kinds are filtered above"),
        }
        Ok(())
    }

    fn storage_class(&mut self, origin: Origin, d: StorageClassDoc) -> Result<()> {
        let name = d.metadata.name.clone().unwrap_or_default();
        if let Some((_, first)) = self.class_origin.get(&name) {
            // Kubernetes lets only allowVolumeExpansion change.
            let same = first.provisioner == d.provisioner
                && first.parameters == d.parameters
                && first.volume_binding_mode == d.volume_binding_mode
                && first.reclaim_policy == d.reclaim_policy
                && first.mount_options == d.mount_options;
            if !same {
                return Err(origin.error(
                    "",
                    "a StorageClass is immutable but for allowVolumeExpansion; this document changes more \
                     (provisioner, parameters, volumeBindingMode, reclaimPolicy or mountOptions)",
                ));
            }
            let expand = d.allow_volume_expansion.unwrap_or(false);
            let facts = if first.allow_volume_expansion.unwrap_or(false) == expand {
                "unchanged".to_owned()
            } else {
                format!("update: allowVolumeExpansion {expand}")
            };
            self.late_listed.push(Listed {
                label: format!("StorageClass {name}"),
                facts,
            });
            if let Some(c) = self.plan.classes.get_mut(&name) {
                c.allow_expansion = expand;
            }
            if let Some(entry) = self.class_origin.get_mut(&name) {
                entry.1.allow_volume_expansion = d.allow_volume_expansion;
            }
            return Ok(());
        }
        match d.provisioner.as_deref() {
            Some(DRIVER) => {}
            Some(other) => {
                return Err(origin.error(
                    "provisioner",
                    format!("{other:?} is not this driver; ebs-csi provisions only for {DRIVER}"),
                ));
            }
            None => return Err(origin.error("provisioner", "is missing")),
        }
        let immediate = match d.volume_binding_mode.as_deref() {
            None | Some("Immediate") => true,
            Some("WaitForFirstConsumer") => false,
            Some(other) => {
                return Err(origin.error(
                    "volumeBindingMode",
                    format!("{other:?} is not Immediate or WaitForFirstConsumer"),
                ));
            }
        };
        if let Some(p) = d.reclaim_policy.as_deref()
            && !matches!(p, "Delete" | "Retain")
        {
            return Err(origin.error("reclaimPolicy", format!("{p:?} is not Delete or Retain")));
        }
        let mut parameters = HashMap::new();
        let mut fs_type = DEFAULT_FSTYPE.to_owned();
        for (k, v) in &string_map(&origin, "parameters", &d.parameters)? {
            if k.starts_with(RESERVED_PREFIX) {
                if !PROVISIONER_KEYS.contains(&k.as_str()) {
                    return Err(origin.error(
                        &format!("parameters.{k}"),
                        format!("the external-provisioner refuses unknown keys under {RESERVED_PREFIX}"),
                    ));
                }
                if k == params::FSTYPE_KEY {
                    fs_type.clone_from(v);
                }
            } else {
                parameters.insert(k.clone(), v.clone());
            }
        }
        if let Err(e) = fs_type.parse::<FsType>() {
            return Err(origin.error(&format!("parameters.{}", params::FSTYPE_KEY), e.to_string()));
        }
        // The parameters alone (sizes come with each claim).
        let parsed = params::parse_create_params(&parameters).map_err(|e| origin.error("parameters", e.to_string()))?;
        let mut allowed = Vec::new();
        for (i, term) in d.allowed_topologies.iter().enumerate() {
            let mut terms: Vec<BTreeMap<String, String>> = vec![BTreeMap::new()];
            for (j, req) in term.match_label_expressions.iter().enumerate() {
                if req.key.is_empty() || req.values.is_empty() {
                    return Err(origin.error(
                        &format!("allowedTopologies[{i}].matchLabelExpressions[{j}]"),
                        "needs a key and at least one value",
                    ));
                }
                terms = terms
                    .iter()
                    .flat_map(|t| {
                        req.values.iter().map(move |v| {
                            let mut t = t.clone();
                            t.insert(req.key.clone(), v.clone());
                            t
                        })
                    })
                    .collect();
            }
            allowed.extend(terms.into_iter().filter(|t| !t.is_empty()));
        }
        let mut facts = format!(
            "provisioner {DRIVER}, {}, {}{}, {fs_type}",
            if immediate { "Immediate" } else { "WaitForFirstConsumer" },
            parsed.volume_type,
            if parameters.keys().any(|k| k.eq_ignore_ascii_case("type")) {
                ""
            } else {
                " (default)"
            },
        );
        let mut others: Vec<_> = parameters
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("type"))
            .collect();
        others.sort();
        for (k, v) in others {
            facts.push_str(&format!(", {k}={v}"));
        }
        if d.allow_volume_expansion == Some(true) {
            facts.push_str(", expandable");
        }
        if !allowed.is_empty() {
            let zones: BTreeSet<&String> = allowed.iter().flat_map(|t| t.values()).collect();
            facts.push_str(&format!(
                ", allowedTopologies {}",
                zones.into_iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        self.listed.push(Listed {
            label: format!("StorageClass {name}"),
            facts,
        });
        self.plan.classes.insert(
            name.clone(),
            StorageClass {
                name: name.clone(),
                immediate,
                allow_expansion: d.allow_volume_expansion.unwrap_or(false),
                parameters,
                fs_type,
                mount_options: d.mount_options.clone(),
                allowed,
                retain: d.reclaim_policy.as_deref() == Some("Retain"),
            },
        );
        self.class_origin.insert(name, (origin, d));
        Ok(())
    }

    fn claim(&mut self, origin: Origin, namespace: String, name: String, spec: PvcSpec) -> Result<()> {
        if let Some(i) = self.claim_index(&namespace, &name) {
            if let Some(owner) = &self.plan.claims[i].owner {
                return Err(origin.error(
                    "metadata.name",
                    format!("is the claim of {owner}'s generic ephemeral volume; Kubernetes would not start the pod"),
                ));
            }
            if self.gone.terminating.contains(&i) && self.claim_docs[i].1 != spec {
                return Err(origin.error(
                    "metadata.name",
                    "is being deleted (Terminating until the pods using it are deleted); it cannot be changed",
                ));
            }
            self.claim_updates.push((origin, i, spec));
            return Ok(());
        }
        self.new_claim(origin, String::new(), namespace, name, spec, None);
        Ok(())
    }

    /// Records a claim to be checked by `finish_claims`; `field` is where its spec is in the
    /// document, `owner` the pod of an ephemeral volume's claim.
    fn new_claim(
        &mut self,
        origin: Origin,
        field: String,
        namespace: String,
        name: String,
        spec: PvcSpec,
        owner: Option<String>,
    ) -> usize {
        self.claim_docs.push((origin.clone(), spec.clone()));
        self.claim_fields.push(field);
        // Filled in by finish(), once every class is known.
        self.plan.claims.push(Claim {
            phase: self.phase,
            namespace,
            name,
            uid: uid(),
            file: origin.file.clone(),
            immediate: true,
            access_modes: spec.access_modes.clone(),
            owner,
            ..Default::default()
        });
        self.plan.claims.len() - 1
    }

    fn check_namespace(&self, origin: &Origin, namespace: &str) -> Result<()> {
        if BUILT_IN_NAMESPACES.contains(&namespace) || self.namespaces.contains(namespace) {
            return Ok(());
        }
        Err(origin.error(
            "metadata.namespace",
            format!("namespace {namespace:?} is not defined in these files (kubectl would answer: namespaces \"{namespace}\" not found); add a Namespace"),
        ))
    }

    /// Checks what one apply added (its claims start at `start`), now that all of it is read.
    fn finish(&mut self, start: usize) -> Result<()> {
        self.ephemeral_claims()?;
        self.finish_claims(start)?;
        self.finish_workloads()?;
        self.finish_snapshots()?;
        self.finish_sources(start)?;
        self.finish_updates(start)?;
        // Claims nobody binds: WaitForFirstConsumer without a pod stays Pending.
        Ok(())
    }

    /// Ends a group: what it listed, updated and deleted becomes its phase.
    fn close_phase(&mut self, group: &Group) {
        let mut listed = std::mem::take(&mut self.listed);
        listed.append(&mut self.late_listed);
        self.plan.phases.push(Phase {
            delete: group.delete,
            given: group.given.clone(),
            listed,
            updates: std::mem::take(&mut self.updates),
            deletions: std::mem::take(&mut self.deletions),
        });
    }

    fn default_class(&self) -> Option<String> {
        self.class_origin
            .iter()
            .find(|(_, (_, d))| {
                d.metadata
                    .annotations
                    .get("storageclass.kubernetes.io/is-default-class")
                    .is_some_and(|v| v == "true")
            })
            .map(|(n, _)| n.clone())
    }

    /// Whether a claim's data source is an object an earlier apply made (then it is provisioned
    /// with the other claims), not one of its own apply (then after that apply's snapshots).
    fn source_is_earlier(&self, namespace: &str, spec: &PvcSpec) -> bool {
        let Some(src) = spec.data_source_ref.as_ref().or(spec.data_source.as_ref()) else {
            return true;
        };
        match src.kind.as_str() {
            "VolumeSnapshot" => self
                .live_snapshot(namespace, &src.name)
                .is_some_and(|s| self.plan.snapshots[s].phase < self.phase),
            _ => self
                .claim_index(namespace, &src.name)
                .is_some_and(|c| self.plan.claims[c].phase < self.phase),
        }
    }

    fn finish_claims(&mut self, start: usize) -> Result<()> {
        let default_class = self.default_class();
        let docs = std::mem::take(&mut self.claim_docs);
        for (i, (origin, spec)) in docs.iter().enumerate().skip(start) {
            let prefix = self.claim_fields[i].clone();
            let f = |name: &str| format!("{prefix}{name}");
            let namespace = self.plan.claims[i].namespace.clone();
            self.check_namespace(origin, &namespace)?;
            if spec.volume_name.is_some() || spec.storage_class_name.as_deref() == Some("") {
                self.bind_static(i, origin, &prefix, spec, default_class.as_deref())?;
                continue;
            }
            let class_name = match spec.storage_class_name.as_deref() {
                Some(n) => n.to_owned(),
                None => default_class.clone().ok_or_else(|| {
                    origin.error(
                        &f("spec.storageClassName"),
                        "is not set and no StorageClass in these files is the default (storageclass.kubernetes.io/is-default-class: \"true\")",
                    )
                })?,
            };
            let class = self.plan.classes.get(&class_name).cloned().ok_or_else(|| {
                origin.error(
                    &f("spec.storageClassName"),
                    format!("StorageClass {class_name:?} is not defined in these files"),
                )
            })?;
            let block = match spec.volume_mode.as_deref() {
                None | Some("Filesystem") => false,
                Some("Block") => true,
                Some(other) => {
                    return Err(origin.error(&f("spec.volumeMode"), format!("{other:?} is not Filesystem or Block")));
                }
            };
            let storage = spec
                .resources
                .requests
                .get("storage")
                .ok_or_else(|| origin.error(&f("spec.resources.requests.storage"), "is missing"))?;
            let (required_bytes, size_text) =
                quantity_bytes(storage).map_err(|e| origin.error(&f("spec.resources.requests.storage"), e))?;
            csi_access_mode(&spec.access_modes, true).map_err(|e| origin.error(&f("spec.accessModes"), e))?;
            let mut mutable = HashMap::new();
            if let Some(vac) = &spec.volume_attributes_class_name {
                mutable = self.attributes_class(origin, &f("spec.volumeAttributesClassName"), vac)?;
            }
            let late = !self.source_is_earlier(&namespace, spec);
            if let Some((class_origin, _)) = self.class_origin.get(&class_name) {
                self.class_of.insert(i, class_origin.clone());
            }
            let claim = &mut self.plan.claims[i];
            claim.class = class_name.clone();
            claim.immediate = class.immediate;
            claim.required_bytes = required_bytes;
            claim.size_text = size_text;
            claim.block = block;
            claim.late = late;
            claim.allowed = class.allowed.clone();
            claim.retain = class.retain;
            if !block {
                claim.fs_type = class.fs_type.clone();
                claim.mount_flags = class.mount_options.clone();
            }
            let cap = claim.capability(true);
            let cap_check = check_capability(&cap).map_err(|e| origin.error(&f("spec.accessModes"), e.to_string()))?;
            let pv = claim.pv_name();
            let mut parameters = class.parameters.clone();
            parameters.insert("csi.storage.k8s.io/pvc/name".into(), claim.name.clone());
            parameters.insert("csi.storage.k8s.io/pvc/namespace".into(), claim.namespace.clone());
            parameters.insert("csi.storage.k8s.io/pv/name".into(), pv);
            claim.attributes_class.clone_from(&spec.volume_attributes_class_name);
            let p: CreateParams = params::parse_create_request(&parameters, &mutable).map_err(|e| {
                origin.error(
                    &f(&format!("spec.storageClassName ({class_name}) parameters")),
                    e.to_string(),
                )
            })?;
            if !block {
                let fs: FsType = class
                    .fs_type
                    .parse()
                    .map_err(|e: crate::error::Error| origin.error("", e.to_string()))?;
                p.validate_for_fs(fs)
                    .map_err(|e| origin.error(&f("spec.storageClassName"), e.to_string()))?;
            }
            if cap_check.multi_node && !matches!(p.volume_type, VolumeType::Io1 | VolumeType::Io2) {
                return Err(origin.error(
                    &f("spec.accessModes"),
                    format!(
                        "{} needs a multi-attach volume, which only io1 and io2 can be; StorageClass {class_name} makes {}",
                        spec.access_modes.join(", "),
                        p.volume_type
                    ),
                ));
            }
            let gib = ebs::size_gib(required_bytes, 0, p.volume_type)
                .map_err(|e| origin.error(&f("spec.resources.requests.storage"), e.to_string()))?;
            p.performance(gib)
                .map_err(|e| origin.error(&f("spec.resources.requests.storage"), e.to_string()))?;
            claim.size_gib = gib;
            claim.volume_type = p.volume_type;
            claim.parameters = parameters;
            claim.mutable_parameters = mutable;
            let mut facts = format!("{}, {}, {}", claim.key(), claim.size_text, spec.access_modes.join(", "));
            if block {
                facts.push_str(", Block");
            }
            if let Some(v) = &claim.attributes_class {
                facts.push_str(&format!(", VolumeAttributesClass {v}"));
            }
            if let Some(src) = spec.data_source_ref.as_ref().or(spec.data_source.as_ref()) {
                facts.push_str(&format!(", from {} {}", src.kind, src.name));
            }
            if let Some(owner) = &claim.owner {
                facts.push_str(&format!(", ephemeral: {owner}'s, deleted with it"));
            }
            self.listed.push(Listed {
                label: "PersistentVolumeClaim".into(),
                facts,
            });
        }
        self.claim_docs = docs;
        Ok(())
    }

    /// A VolumeAttributesClass's parameters, checked as ControllerModifyVolume will check them.
    fn attributes_class(&self, origin: &Origin, field: &str, name: &str) -> Result<HashMap<String, String>> {
        let (vac_origin, vac) = self.attribute_classes.get(name).ok_or_else(|| {
            origin.error(
                field,
                format!("VolumeAttributesClass {name:?} is not defined in these files"),
            )
        })?;
        if vac.driver_name.as_deref() != Some(DRIVER) {
            return Err(origin.error(
                field,
                format!(
                    "VolumeAttributesClass {name} is for driver {:?}, not {DRIVER}",
                    vac.driver_name.as_deref().unwrap_or("")
                ),
            ));
        }
        let parameters: HashMap<String, String> = string_map(vac_origin, "parameters", &vac.parameters)?
            .into_iter()
            .collect();
        params::parse_modify_params(&parameters)
            .map_err(|e| origin.error(field, format!("VolumeAttributesClass {name}: parameters: {e}")))?;
        Ok(parameters)
    }

    /// The claim named so that is there now (not deleted).
    fn claim_index(&self, namespace: &str, name: &str) -> Option<usize> {
        (0..self.plan.claims.len()).rev().find(|&i| {
            let c = &self.plan.claims[i];
            c.namespace == namespace && c.name == name && !self.gone.claims.contains(&i)
        })
    }

    fn finish_snapshots(&mut self) -> Result<()> {
        let docs = std::mem::take(&mut self.snapshot_docs);
        for (origin, namespace, name, spec) in docs {
            self.check_namespace(&origin, &namespace)?;
            if let Some(content) = &spec.source.volume_snapshot_content_name {
                let content = content.clone();
                self.bind_content(&origin, namespace, name, &content)?;
                continue;
            }
            let field = "spec.source.persistentVolumeClaimName";
            let claim_name = spec
                .source
                .persistent_volume_claim_name
                .clone()
                .ok_or_else(|| origin.error(field, "is missing"))?;
            let claim = self.claim_index(&namespace, &claim_name).ok_or_else(|| {
                origin.error(
                    field,
                    format!("PersistentVolumeClaim {namespace}/{claim_name} is not defined in these files"),
                )
            })?;
            if !self.bound_early(claim) {
                return Err(origin.error(
                    field,
                    format!(
                        "claim {claim_name} has no volume when snapshots are taken: its StorageClass waits for a \
                         first consumer and no pod uses it, or it is itself made from a snapshot or a claim"
                    ),
                ));
            }
            let class_field = "spec.volumeSnapshotClassName";
            let class_name = match &spec.volume_snapshot_class_name {
                Some(c) => c.clone(),
                None => self
                    .snapshot_classes
                    .iter()
                    .find(|(_, (_, d))| {
                        d.metadata
                            .annotations
                            .get("snapshot.storage.kubernetes.io/is-default-class")
                            .is_some_and(|v| v == "true")
                    })
                    .map(|(n, _)| n.clone())
                    .ok_or_else(|| {
                        origin.error(
                            class_field,
                            "is not set and no VolumeSnapshotClass in these files is the default \
                             (snapshot.storage.kubernetes.io/is-default-class: \"true\")",
                        )
                    })?,
            };
            let (class_origin, class) = self.snapshot_classes.get(&class_name).ok_or_else(|| {
                origin.error(
                    class_field,
                    format!("VolumeSnapshotClass {class_name:?} is not defined in these files"),
                )
            })?;
            if class.driver.as_deref() != Some(DRIVER) {
                return Err(class_origin.error(
                    "driver",
                    format!("{:?} is not {DRIVER}", class.driver.as_deref().unwrap_or("")),
                ));
            }
            let retain = match class.deletion_policy.as_deref() {
                Some("Retain") => true,
                Some("Delete") => false,
                Some(other) => {
                    return Err(class_origin.error("deletionPolicy", format!("{other:?} is not Delete or Retain")));
                }
                None => return Err(class_origin.error("deletionPolicy", "is missing (it is required)")),
            };
            let uid = uid();
            let mut parameters = HashMap::new();
            for (k, v) in &string_map(class_origin, "parameters", &class.parameters)? {
                if k.starts_with(RESERVED_PREFIX) {
                    if !SNAPSHOTTER_KEYS.contains(&k.as_str()) {
                        return Err(class_origin.error(
                            &format!("parameters.{k}"),
                            format!("the external-snapshotter refuses unknown keys under {RESERVED_PREFIX}"),
                        ));
                    }
                } else if k.to_ascii_lowercase().starts_with("tagspecification_") {
                    params::parse_snapshot_tag(k, v)
                        .map_err(|e| class_origin.error(&format!("parameters.{k}"), e.to_string()))?;
                    parameters.insert(k.clone(), v.clone());
                } else {
                    return Err(class_origin.error(
                        &format!("parameters.{k}"),
                        "is not a snapshot parameter of this driver; use tagSpecification_N",
                    ));
                }
            }
            // The snapshotter's --extra-create-metadata.
            parameters.insert("csi.storage.k8s.io/volumesnapshot/name".into(), name.clone());
            parameters.insert("csi.storage.k8s.io/volumesnapshot/namespace".into(), namespace.clone());
            parameters.insert(
                "csi.storage.k8s.io/volumesnapshotcontent/name".into(),
                format!("snapcontent-{uid}"),
            );
            self.listed.push(Listed {
                label: "VolumeSnapshot".into(),
                facts: format!("{namespace}/{name} of {claim_name}, class {class_name}"),
            });
            self.plan.snapshots.push(Snapshot {
                phase: self.phase,
                namespace,
                name,
                uid,
                class: class_name,
                claim: Some(claim),
                content: None,
                retain,
                parameters,
                // Set after the updates are known.
                size_gib: 0,
            });
        }
        Ok(())
    }

    /// dataSource / dataSourceRef: a VolumeSnapshot or another claim (a clone).
    fn finish_sources(&mut self, start: usize) -> Result<()> {
        for i in start..self.plan.claims.len() {
            if self.plan.claims[i].static_pv.is_some() {
                continue;
            }
            let (origin, spec) = self.claim_docs[i].clone();
            let prefix = self.claim_fields[i].clone();
            let (field, src) = match (&spec.data_source_ref, &spec.data_source) {
                (Some(r), _) => (format!("{prefix}spec.dataSourceRef"), r.clone()),
                (None, Some(r)) => (format!("{prefix}spec.dataSource"), r.clone()),
                (None, None) => continue,
            };
            let field = field.as_str();
            let mode_field = format!("{prefix}spec.volumeMode");
            let namespace = self.plan.claims[i].namespace.clone();
            if src.namespace.as_deref().is_some_and(|n| n != namespace) {
                return Err(origin.error(
                    &format!("{field}.namespace"),
                    "cross-namespace data sources are not played by the demo",
                ));
            }
            let source = match (src.api_group.as_deref().unwrap_or(""), src.kind.as_str()) {
                ("snapshot.storage.k8s.io", "VolumeSnapshot") => {
                    let s = self.live_snapshot(&namespace, &src.name).ok_or_else(|| {
                        origin.error(
                            &format!("{field}.name"),
                            format!("VolumeSnapshot {namespace}/{} is not defined in these files", src.name),
                        )
                    })?;
                    match (self.plan.snapshots[s].claim, self.plan.snapshots[s].content) {
                        (Some(from), _) if self.plan.claims[from].block != self.plan.claims[i].block => {
                            return Err(origin.error(
                                &mode_field,
                                "differs from the snapshot's source claim; the provisioner refuses to convert a volume's mode",
                            ));
                        }
                        (_, Some(content)) => self.restore_from_content(content, i, &origin, &mode_field)?,
                        _ => {}
                    }
                    ClaimSource::Snapshot(s)
                }
                ("", "PersistentVolumeClaim") => {
                    let from = self.claim_index(&namespace, &src.name).ok_or_else(|| {
                        origin.error(
                            &format!("{field}.name"),
                            format!(
                                "PersistentVolumeClaim {namespace}/{} is not defined in these files",
                                src.name
                            ),
                        )
                    })?;
                    if !self.bound_early(from) {
                        return Err(origin.error(
                            &format!("{field}.name"),
                            format!(
                                "claim {} has no volume to clone: it waits for a first consumer that never comes, \
                                 or is itself made from a source",
                                src.name
                            ),
                        ));
                    }
                    if self.plan.claims[from].class != self.plan.claims[i].class {
                        return Err(origin.error(
                            &format!("{prefix}spec.storageClassName"),
                            "a clone must use its source claim's StorageClass",
                        ));
                    }
                    if self.plan.claims[from].block != self.plan.claims[i].block {
                        return Err(origin.error(&mode_field, "a clone must have its source claim's volumeMode"));
                    }
                    ClaimSource::Claim(from)
                }
                (group, kind) => {
                    return Err(origin.error(
                        field,
                        format!(
                            "{kind} ({}) is not a data source the provisioner takes for this driver; use a VolumeSnapshot or a PersistentVolumeClaim",
                            if group.is_empty() { "core" } else { group }
                        ),
                    ));
                }
            };
            self.plan.claims[i].source = Some(source);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(text: &str) -> Result<Plan> {
        let group = Group {
            delete: false,
            given: vec!["t.yaml".into()],
            files: vec![SourceFile {
                name: "t.yaml".into(),
                text: text.into(),
            }],
        };
        plan(&[group], &DemoNode::named("n"))
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("10Gi").unwrap(), 10 << 30);
        assert_eq!(parse_quantity("1.5Gi").unwrap(), 3 << 29);
        assert_eq!(parse_quantity("500M").unwrap(), 500_000_000);
        assert_eq!(parse_quantity("1e9").unwrap(), 1_000_000_000);
        assert_eq!(parse_quantity("1073741824").unwrap(), 1 << 30);
        assert_eq!(parse_quantity("1500m").unwrap(), 2);
        for bad in ["", "Gi", "10GB", "-1Gi", "1.2.3", "ten"] {
            assert!(parse_quantity(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn access_modes_map_as_csi_lib_utils_does() {
        let m = |v: &[&str], snmw| csi_access_mode(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>(), snmw);
        assert_eq!(m(&["ReadWriteOnce"], false), Ok(Mode::SingleNodeWriter));
        assert_eq!(m(&["ReadWriteOnce"], true), Ok(Mode::SingleNodeMultiWriter));
        assert_eq!(m(&["ReadWriteOncePod"], true), Ok(Mode::SingleNodeSingleWriter));
        assert_eq!(m(&["ReadWriteOncePod"], false), Ok(Mode::SingleNodeWriter));
        assert_eq!(m(&["ReadOnlyMany"], true), Ok(Mode::MultiNodeReaderOnly));
        assert_eq!(
            m(&["ReadWriteMany", "ReadWriteOnce"], true),
            Ok(Mode::MultiNodeMultiWriter)
        );
        assert!(m(&["ReadOnlyMany", "ReadWriteOnce"], true).is_err());
        assert!(m(&["ReadWriteOncePod", "ReadWriteOnce"], true).is_err());
        assert!(m(&[], true).is_err());
    }

    #[test]
    fn immediate_preferred_is_the_requisite_rotated() {
        let zone = |z: &str| NodeFacts {
            name: z.into(),
            topology: BTreeMap::from([("topology.kubernetes.io/zone".to_owned(), z.to_owned())]),
        };
        let nodes = [zone("b"), zone("a"), zone("a")];
        let (req, pref) = topology_requirement(&[], &nodes, Some(&nodes[0]), "x");
        assert_eq!(req.len(), 2, "sorted, without repeats");
        assert_eq!(req[0]["topology.kubernetes.io/zone"], "a");
        assert_eq!(
            pref[0]["topology.kubernetes.io/zone"], "b",
            "the selected node's zone first"
        );
        let (_, pref) = topology_requirement(&[], &nodes, None, "x");
        assert_eq!(pref.len(), 2);
    }

    #[test]
    fn syntax_errors_name_the_file() {
        let e = plan_of("apiVersion: v1\nkind: [\n").unwrap_err();
        assert_eq!(e.file, "t.yaml");
        assert!(e.message.contains("YAML syntax error"), "{e}");
    }

    #[test]
    fn mistyped_fields_name_their_path() {
        let e = plan_of(
            "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: s}\nprovisioner: ebs.csi.aws.com\nparameters:\n  iops: 3000\n",
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("parameters.iops"), "{e}");
        assert_eq!(e.object.as_deref(), Some("StorageClass s"));
    }
}
