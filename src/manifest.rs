//! Kubernetes objects read from YAML, for `ebs-csi demo -f`: the kinds and fields that the
//! external-provisioner, -attacher, -resizer, -snapshotter and kubelet act on, turned into a
//! checked [`Plan`]. Everything the demo cannot honour is refused here, naming the file, the
//! object and the field, so that a bad file fails before any volume exists.
//!
//! Documents are read in file-name order (as `kubectl apply -f DIR` does); a later document for
//! an object already seen is an update: a PersistentVolumeClaim may grow its
//! `spec.resources.requests.storage` (a resize) or change `spec.volumeAttributesClassName` (a
//! modify), a StorageClass may change `allowVolumeExpansion`, as Kubernetes allows.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::capability::check_capability;
use crate::controller::params::{self, CreateParams, FsType, Performance, VolumeType};
use crate::csi::VolumeCapability;
use crate::csi::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume, access_mode::Mode};

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
    ephemeral: Option<Value>,
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
}

/// Where a claim's content comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimSource {
    /// An index into [`Plan::snapshots`].
    Snapshot(usize),
    /// An index into [`Plan::claims`]: a clone.
    Claim(usize),
}

#[derive(Clone, Debug)]
pub struct Claim {
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
    /// How many pods use it.
    pub pods: u32,
}

impl Claim {
    pub fn pv_name(&self) -> String {
        format!("pvc-{}", self.uid)
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

/// A Deployment or a Pod: `replicas` pods with the same volumes.
#[derive(Clone, Debug)]
pub struct Workload {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub replicas: u32,
    pub volumes: Vec<PodVolume>,
}

#[derive(Clone, Debug)]
pub struct Snapshot {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub class: String,
    /// An index into [`Plan::claims`].
    pub claim: usize,
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

/// Everything read, checked, in the order the demo plays it.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub listed: Vec<Listed>,
    pub classes: BTreeMap<String, StorageClass>,
    pub claims: Vec<Claim>,
    pub workloads: Vec<Workload>,
    pub snapshots: Vec<Snapshot>,
    pub updates: Vec<Update>,
}

impl Plan {
    /// Whether a workload uses a claim that is made from a snapshot or another claim: those
    /// pods start after the snapshots are taken.
    pub fn is_late(&self, w: &Workload) -> bool {
        w.volumes.iter().any(|v| self.claims[v.claim].source.is_some())
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
/// allowedTopologies, else the topology of every registered node, sorted and without repeats.
/// `preferred`: the requisite terms rotated to start at the selected node's term
/// (WaitForFirstConsumer), or by a hash of the PVC name (Immediate, to spread volumes).
pub fn topology_requirement(
    class: &StorageClass,
    nodes: &[NodeFacts],
    selected: Option<&NodeFacts>,
    pvc_name: &str,
) -> (Vec<Term>, Vec<Term>) {
    let mut requisite: Vec<BTreeMap<String, String>> = if class.allowed.is_empty() {
        nodes.iter().map(|n| n.topology.clone()).collect()
    } else {
        class.allowed.clone()
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
pub fn plan(files: &[SourceFile], node: &NodeFacts) -> Result<Plan> {
    let docs = documents(files)?;
    let mut b = Builder {
        node: node.clone(),
        ..Default::default()
    };
    for (doc, value) in docs {
        b.add(doc, value)?;
    }
    b.finish()
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
}

#[derive(Default)]
struct Builder {
    node: NodeFacts,
    plan: Plan,
    namespaces: BTreeSet<String>,
    /// Every object seen, by `Kind namespace/name`, to catch duplicates of kinds that cannot be
    /// updated here.
    seen: BTreeSet<String>,
    class_origin: BTreeMap<String, (Origin, StorageClassDoc)>,
    claim_docs: Vec<(Origin, PvcSpec)>,
    claim_updates: Vec<(Origin, usize, PvcSpec)>,
    workload_docs: Vec<WorkloadDoc>,
    snapshot_classes: BTreeMap<String, (Origin, SnapshotClassDoc)>,
    snapshot_docs: Vec<(Origin, String, String, SnapshotSpec)>,
    attribute_classes: BTreeMap<String, (Origin, AttributesClassDoc)>,
    /// Updates of storage classes, listed with the claims' updates.
    late_listed: Vec<Listed>,
}

impl Builder {
    fn add(&mut self, doc: Doc, value: Value) -> Result<()> {
        let cluster_scoped = matches!(
            doc.kind.as_str(),
            "Namespace" | "StorageClass" | "VolumeSnapshotClass" | "VolumeAttributesClass"
        );
        let object = if cluster_scoped {
            format!("{} {}", doc.kind, doc.name)
        } else {
            format!("{} {}/{}", doc.kind, namespaced(&doc), doc.name)
        };
        let origin = Origin {
            file: doc.file.clone(),
            object: object.clone(),
        };
        let wanted: Option<&[&str]> = match doc.kind.as_str() {
            "Namespace" | "PersistentVolumeClaim" | "Pod" => Some(&["v1"]),
            "StorageClass" => Some(&["storage.k8s.io/v1"]),
            "VolumeAttributesClass" => Some(&["storage.k8s.io/v1beta1", "storage.k8s.io/v1"]),
            "Deployment" => Some(&["apps/v1"]),
            "VolumeSnapshot" | "VolumeSnapshotClass" => Some(&["snapshot.storage.k8s.io/v1"]),
            _ => None,
        };
        let Some(versions) = wanted else {
            self.plan.listed.push(Listed {
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
        if !self.seen.insert(object.clone()) && !updatable {
            return Err(origin.error(
                "metadata.name",
                "is defined twice; only claims and storage classes can be updated by a later document",
            ));
        }
        match doc.kind.as_str() {
            "Namespace" => {
                self.namespaces.insert(doc.name.clone());
                self.plan.listed.push(Listed {
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
            self.late_listed.push(Listed {
                label: format!("StorageClass {name}"),
                facts: format!("update: allowVolumeExpansion {expand}"),
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
        self.plan.listed.push(Listed {
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
            },
        );
        self.class_origin.insert(name, (origin, d));
        Ok(())
    }

    fn claim(&mut self, origin: Origin, namespace: String, name: String, spec: PvcSpec) -> Result<()> {
        if let Some(i) = self
            .plan
            .claims
            .iter()
            .position(|c| c.namespace == namespace && c.name == name)
        {
            self.claim_updates.push((origin, i, spec));
            return Ok(());
        }
        self.claim_docs.push((origin.clone(), spec.clone()));
        // Filled in by finish(), once every class is known.
        self.plan.claims.push(Claim {
            namespace,
            name,
            uid: uid(),
            file: origin.file.clone(),
            class: String::new(),
            immediate: true,
            required_bytes: 0,
            size_text: String::new(),
            size_gib: 0,
            access_modes: spec.access_modes.clone(),
            block: false,
            fs_type: String::new(),
            mount_flags: Vec::new(),
            parameters: HashMap::new(),
            mutable_parameters: HashMap::new(),
            attributes_class: None,
            source: None,
            volume_type: VolumeType::default(),
            pods: 0,
        });
        Ok(())
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

    fn finish(mut self) -> Result<Plan> {
        self.finish_claims()?;
        self.finish_workloads()?;
        self.finish_snapshots()?;
        self.finish_sources()?;
        self.finish_updates()?;
        // Claims nobody binds: WaitForFirstConsumer without a pod stays Pending.
        Ok(self.plan)
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

    fn finish_claims(&mut self) -> Result<()> {
        let default_class = self.default_class();
        let docs = std::mem::take(&mut self.claim_docs);
        for (i, (origin, spec)) in docs.iter().enumerate() {
            let namespace = self.plan.claims[i].namespace.clone();
            self.check_namespace(origin, &namespace)?;
            let class_name = match spec.storage_class_name.as_deref() {
                Some("") => {
                    return Err(origin.error(
                        "spec.storageClassName",
                        "is empty, which asks for a pre-provisioned PersistentVolume; the demo provisions dynamically: name a StorageClass",
                    ));
                }
                Some(n) => n.to_owned(),
                None => default_class.clone().ok_or_else(|| {
                    origin.error(
                        "spec.storageClassName",
                        "is not set and no StorageClass in these files is the default (storageclass.kubernetes.io/is-default-class: \"true\")",
                    )
                })?,
            };
            let class = self.plan.classes.get(&class_name).cloned().ok_or_else(|| {
                origin.error(
                    "spec.storageClassName",
                    format!("StorageClass {class_name:?} is not defined in these files"),
                )
            })?;
            if spec.volume_name.is_some() {
                return Err(origin.error(
                    "spec.volumeName",
                    "binds to a pre-provisioned PersistentVolume; the demo provisions dynamically",
                ));
            }
            let block = match spec.volume_mode.as_deref() {
                None | Some("Filesystem") => false,
                Some("Block") => true,
                Some(other) => {
                    return Err(origin.error("spec.volumeMode", format!("{other:?} is not Filesystem or Block")));
                }
            };
            let storage = spec
                .resources
                .requests
                .get("storage")
                .ok_or_else(|| origin.error("spec.resources.requests.storage", "is missing"))?;
            let (required_bytes, size_text) =
                quantity_bytes(storage).map_err(|e| origin.error("spec.resources.requests.storage", e))?;
            csi_access_mode(&spec.access_modes, true).map_err(|e| origin.error("spec.accessModes", e))?;
            let mut mutable = HashMap::new();
            if let Some(vac) = &spec.volume_attributes_class_name {
                mutable = self.attributes_class(origin, "spec.volumeAttributesClassName", vac)?;
            }
            let claim = &mut self.plan.claims[i];
            claim.class = class_name.clone();
            claim.immediate = class.immediate;
            claim.required_bytes = required_bytes;
            claim.size_text = size_text;
            claim.block = block;
            if !block {
                claim.fs_type = class.fs_type.clone();
                claim.mount_flags = class.mount_options.clone();
            }
            let cap = claim.capability(true);
            let cap_check = check_capability(&cap).map_err(|e| origin.error("spec.accessModes", e.to_string()))?;
            let pv = claim.pv_name();
            let mut parameters = class.parameters.clone();
            parameters.insert("csi.storage.k8s.io/pvc/name".into(), claim.name.clone());
            parameters.insert("csi.storage.k8s.io/pvc/namespace".into(), claim.namespace.clone());
            parameters.insert("csi.storage.k8s.io/pv/name".into(), pv);
            claim.attributes_class.clone_from(&spec.volume_attributes_class_name);
            let p: CreateParams = params::parse_create_request(&parameters, &mutable).map_err(|e| {
                origin.error(
                    &format!("spec.storageClassName ({class_name}) parameters"),
                    e.to_string(),
                )
            })?;
            if !block {
                let fs: FsType = class
                    .fs_type
                    .parse()
                    .map_err(|e: crate::error::Error| origin.error("", e.to_string()))?;
                p.validate_for_fs(fs)
                    .map_err(|e| origin.error("spec.storageClassName", e.to_string()))?;
            }
            if cap_check.multi_node && !matches!(p.volume_type, VolumeType::Io1 | VolumeType::Io2) {
                return Err(origin.error(
                    "spec.accessModes",
                    format!(
                        "{} needs a multi-attach volume, which only io1 and io2 can be; StorageClass {class_name} makes {}",
                        spec.access_modes.join(", "),
                        p.volume_type
                    ),
                ));
            }
            let gib = params::size_gib(required_bytes, 0, p.volume_type)
                .map_err(|e| origin.error("spec.resources.requests.storage", e.to_string()))?;
            p.performance(gib)
                .map_err(|e| origin.error("spec.resources.requests.storage", e.to_string()))?;
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
            self.plan.listed.push(Listed {
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

    fn claim_index(&self, namespace: &str, name: &str) -> Option<usize> {
        self.plan
            .claims
            .iter()
            .position(|c| c.namespace == namespace && c.name == name)
    }

    fn finish_workloads(&mut self) -> Result<()> {
        let docs = std::mem::take(&mut self.workload_docs);
        for WorkloadDoc {
            origin,
            kind,
            namespace,
            name,
            replicas,
            pod,
            base,
        } in docs
        {
            self.check_namespace(&origin, &namespace)?;
            let replicas = match replicas {
                None => 1,
                Some(r) if (0..=i64::from(MAX_PODS)).contains(&r) => r as u32,
                Some(r) => {
                    return Err(origin.error(
                        "spec.replicas",
                        format!("{r} pods: the demo plays 0 to {MAX_PODS} pods on its one node"),
                    ));
                }
            };
            let mut volumes = Vec::new();
            for (i, v) in pod.volumes.iter().enumerate() {
                if v.ephemeral.is_some() {
                    return Err(origin.error(
                        &format!("{base}.volumes[{i}].ephemeral"),
                        "generic ephemeral volumes are not played by the demo; use a PersistentVolumeClaim",
                    ));
                }
                let Some(src) = &v.persistent_volume_claim else {
                    continue;
                };
                let field = format!("{base}.volumes[{i}].persistentVolumeClaim.claimName");
                let claim = self.claim_index(&namespace, &src.claim_name).ok_or_else(|| {
                    origin.error(
                        &field,
                        format!(
                            "PersistentVolumeClaim {namespace}/{} is not defined in these files; the pod would never start",
                            src.claim_name
                        ),
                    )
                })?;
                volumes.push(PodVolume {
                    name: v.name.clone(),
                    claim,
                    read_only: src.read_only,
                    mount_paths: Vec::new(),
                    device_paths: Vec::new(),
                });
            }
            let containers = pod
                .init_containers
                .iter()
                .map(|c| (c, "initContainers"))
                .chain(pod.containers.iter().map(|c| (c, "containers")));
            let mut counters: HashMap<&str, usize> = HashMap::new();
            for (c, list) in containers {
                let ci = {
                    let n = counters.entry(list).or_default();
                    *n += 1;
                    *n - 1
                };
                for (j, m) in c.volume_mounts.iter().enumerate() {
                    let field = format!("{base}.{list}[{ci}].volumeMounts[{j}]");
                    let known = pod.volumes.iter().any(|v| v.name == m.name);
                    if !known {
                        return Err(origin.error(
                            &field,
                            format!("names volume {:?}, which the pod does not have", m.name),
                        ));
                    }
                    if let Some(v) = volumes.iter_mut().find(|v| v.name == m.name) {
                        if self.plan.claims[v.claim].block {
                            return Err(origin.error(
                                &field,
                                format!(
                                    "claim {} is volumeMode Block; mount it with volumeDevices, not volumeMounts",
                                    self.plan.claims[v.claim].name
                                ),
                            ));
                        }
                        v.mount_paths.push(m.mount_path.clone());
                    }
                }
                for (j, d) in c.volume_devices.iter().enumerate() {
                    let field = format!("{base}.{list}[{ci}].volumeDevices[{j}]");
                    let Some(v) = volumes.iter_mut().find(|v| v.name == d.name) else {
                        return Err(origin.error(
                            &field,
                            format!(
                                "names volume {:?}, which is not a PersistentVolumeClaim of the pod",
                                d.name
                            ),
                        ));
                    };
                    if !self.plan.claims[v.claim].block {
                        return Err(origin.error(
                            &field,
                            format!(
                                "claim {} is volumeMode Filesystem; a device needs a Block claim",
                                self.plan.claims[v.claim].name
                            ),
                        ));
                    }
                    v.device_paths.push(d.device_path.clone());
                }
            }
            for v in &volumes {
                let class = &self.plan.classes[&self.plan.claims[v.claim].class];
                let fits =
                    |t: &BTreeMap<String, String>| t.iter().all(|(k, val)| self.node.topology.get(k) == Some(val));
                if !class.immediate && !class.allowed.is_empty() && !class.allowed.iter().any(fits) {
                    return Err(origin.error(
                        "",
                        format!(
                            "claim {} waits for its first consumer, but StorageClass {}'s allowedTopologies exclude the node's \
                             topology {:?}; the pod would never be scheduled",
                            self.plan.claims[v.claim].name, class.name, self.node.topology
                        ),
                    ));
                }
                let claim = &mut self.plan.claims[v.claim];
                claim.pods += replicas;
                if claim.access_modes.iter().any(|m| m == "ReadWriteOncePod") && claim.pods > 1 {
                    return Err(origin.error(
                        "",
                        format!(
                            "claim {} is ReadWriteOncePod but more than one pod uses it; the second pod would never start",
                            claim.name
                        ),
                    ));
                }
            }
            let uses: Vec<String> = volumes
                .iter()
                .map(|v| {
                    let paths: Vec<&String> = v.mount_paths.iter().chain(&v.device_paths).collect();
                    let at = if paths.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " at {}",
                            paths.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
                        )
                    };
                    format!("{}{at}", self.plan.claims[v.claim].name)
                })
                .collect();
            self.plan.listed.push(Listed {
                label: kind.to_owned(),
                facts: format!(
                    "{namespace}/{name}, {replicas} {}{}{}",
                    if replicas == 1 { "pod" } else { "pods" },
                    if uses.is_empty() { "" } else { ", " },
                    uses.join("; ")
                ),
            });
            self.plan.workloads.push(Workload {
                kind: kind.to_owned(),
                namespace,
                name,
                replicas,
                volumes,
            });
        }
        Ok(())
    }

    /// Whether the claim gets a volume before the snapshots are taken: Immediate, or used by a
    /// pod that starts early, and not made from a source.
    fn provisioned_early(&self, claim: usize) -> bool {
        let c = &self.plan.claims[claim];
        if self.claim_docs[claim].1.data_source.is_some() || self.claim_docs[claim].1.data_source_ref.is_some() {
            return false;
        }
        c.immediate
            || self.plan.workloads.iter().any(|w| {
                w.replicas > 0
                    && w.volumes.iter().any(|v| v.claim == claim)
                    && w.volumes.iter().all(|v| {
                        self.claim_docs[v.claim].1.data_source.is_none()
                            && self.claim_docs[v.claim].1.data_source_ref.is_none()
                    })
            })
    }

    fn finish_snapshots(&mut self) -> Result<()> {
        let docs = std::mem::take(&mut self.snapshot_docs);
        for (origin, namespace, name, spec) in docs {
            self.check_namespace(&origin, &namespace)?;
            if spec.source.volume_snapshot_content_name.is_some() {
                return Err(origin.error(
                    "spec.source.volumeSnapshotContentName",
                    "pre-provisioned snapshots are not played by the demo; use persistentVolumeClaimName",
                ));
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
            if !self.provisioned_early(claim) {
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
            match class.deletion_policy.as_deref() {
                Some("Delete" | "Retain") => {}
                Some(other) => {
                    return Err(class_origin.error("deletionPolicy", format!("{other:?} is not Delete or Retain")));
                }
                None => return Err(class_origin.error("deletionPolicy", "is missing (it is required)")),
            }
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
            self.plan.listed.push(Listed {
                label: "VolumeSnapshot".into(),
                facts: format!("{namespace}/{name} of {claim_name}, class {class_name}"),
            });
            self.plan.snapshots.push(Snapshot {
                namespace,
                name,
                uid,
                class: class_name,
                claim,
                parameters,
                // Set after the updates are known.
                size_gib: 0,
            });
        }
        Ok(())
    }

    /// dataSource / dataSourceRef: a VolumeSnapshot or another claim (a clone).
    fn finish_sources(&mut self) -> Result<()> {
        for i in 0..self.plan.claims.len() {
            let (origin, spec) = self.claim_docs[i].clone();
            let (field, src) = match (&spec.data_source_ref, &spec.data_source) {
                (Some(r), _) => ("spec.dataSourceRef", r.clone()),
                (None, Some(r)) => ("spec.dataSource", r.clone()),
                (None, None) => continue,
            };
            let namespace = self.plan.claims[i].namespace.clone();
            if src.namespace.as_deref().is_some_and(|n| n != namespace) {
                return Err(origin.error(
                    &format!("{field}.namespace"),
                    "cross-namespace data sources are not played by the demo",
                ));
            }
            let source = match (src.api_group.as_deref().unwrap_or(""), src.kind.as_str()) {
                ("snapshot.storage.k8s.io", "VolumeSnapshot") => {
                    let s = self
                        .plan
                        .snapshots
                        .iter()
                        .position(|s| s.namespace == namespace && s.name == src.name)
                        .ok_or_else(|| {
                            origin.error(
                                &format!("{field}.name"),
                                format!("VolumeSnapshot {namespace}/{} is not defined in these files", src.name),
                            )
                        })?;
                    let from = self.plan.snapshots[s].claim;
                    if self.plan.claims[from].block != self.plan.claims[i].block {
                        return Err(origin.error(
                            "spec.volumeMode",
                            "differs from the snapshot's source claim; the provisioner refuses to convert a volume's mode",
                        ));
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
                    if !self.provisioned_early(from) {
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
                            "spec.storageClassName",
                            "a clone must use its source claim's StorageClass",
                        ));
                    }
                    if self.plan.claims[from].block != self.plan.claims[i].block {
                        return Err(origin.error("spec.volumeMode", "a clone must have its source claim's volumeMode"));
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

    fn finish_updates(&mut self) -> Result<()> {
        let updates = std::mem::take(&mut self.claim_updates);
        let late = std::mem::take(&mut self.late_listed);
        self.plan.listed.extend(late);
        // Sizes and types as they stand after each update, to check the next one and the
        // snapshots taken after them.
        let mut size: Vec<(i64, u64)> = self
            .plan
            .claims
            .iter()
            .map(|c| (c.required_bytes, c.size_gib))
            .collect();
        let mut vac: Vec<Option<String>> = self.plan.claims.iter().map(|c| c.attributes_class.clone()).collect();
        let mut perf: Vec<(VolumeType, Option<Performance>)> = Vec::new();
        for c in &self.plan.claims {
            let p = params::parse_create_request(&c.parameters, &c.mutable_parameters).ok();
            let performance = p.as_ref().and_then(|p| p.performance(c.size_gib).ok());
            perf.push((c.volume_type, performance));
        }
        for (origin, i, spec) in updates {
            let first = &self.claim_docs[i].1;
            let claim = self.plan.claims[i].clone();
            // Kubernetes: a bound claim's spec is immutable but for these two fields.
            let mut rest_new = spec.clone();
            let mut rest_old = first.clone();
            rest_new.resources = Resources::default();
            rest_old.resources = Resources::default();
            rest_new.volume_attributes_class_name = None;
            rest_old.volume_attributes_class_name = None;
            if rest_new.storage_class_name.is_none() {
                rest_new.storage_class_name = rest_old.storage_class_name.clone();
            }
            if rest_new != rest_old {
                return Err(origin.error(
                    "spec",
                    "a claim's spec is immutable but for resources.requests.storage and volumeAttributesClassName; \
                     this document changes more",
                ));
            }
            if claim.source.is_some() || !self.provisioned_early(i) {
                return Err(origin.error(
                    "",
                    "the demo plays updates only on claims in use before the snapshots: not made from a source, \
                     and bound (Immediate, or used by a pod)",
                ));
            }
            let storage = spec
                .resources
                .requests
                .get("storage")
                .ok_or_else(|| origin.error("spec.resources.requests.storage", "is missing"))?;
            let (bytes, text) =
                quantity_bytes(storage).map_err(|e| origin.error("spec.resources.requests.storage", e))?;
            if bytes < size[i].0 {
                return Err(origin.error(
                    "spec.resources.requests.storage",
                    format!(
                        "{text} is smaller than the claim's {}: volumes never shrink",
                        claim.size_text
                    ),
                ));
            }
            if bytes > size[i].0 {
                let class = &self.plan.classes[&claim.class];
                if !class.allow_expansion {
                    return Err(origin.error(
                        "spec.resources.requests.storage",
                        format!(
                            "StorageClass {} does not set allowVolumeExpansion: true, so Kubernetes refuses to resize its claims",
                            class.name
                        ),
                    ));
                }
                let gib = params::size_gib(bytes, 0, perf[i].0)
                    .map_err(|e| origin.error("spec.resources.requests.storage", e.to_string()))?;
                size[i] = (bytes, gib);
                self.plan.listed.push(Listed {
                    label: "PersistentVolumeClaim".into(),
                    facts: format!("update: {} to {text}", claim.key()),
                });
                self.plan.updates.push(Update::Resize {
                    claim: i,
                    required_bytes: bytes,
                    size_text: text,
                    size_gib: gib,
                });
            }
            if spec.volume_attributes_class_name != vac[i] {
                let Some(name) = spec.volume_attributes_class_name.clone() else {
                    return Err(origin.error(
                        "spec.volumeAttributesClassName",
                        "cannot be removed once set; name another VolumeAttributesClass",
                    ));
                };
                let parameters = self.attributes_class(&origin, "spec.volumeAttributesClassName", &name)?;
                let change = params::parse_modify_params(&parameters)
                    .map_err(|e| origin.error("spec.volumeAttributesClassName", e.to_string()))?;
                let current = perf[i].1.unwrap_or_default();
                let (new_type, new_perf) = params::modified_performance(perf[i].0, size[i].1, &current, &change, false)
                    .map_err(|e| {
                        origin.error(
                            "spec.volumeAttributesClassName",
                            format!(
                                "VolumeAttributesClass {name} cannot apply to this {} GiB {} volume: {e}",
                                size[i].1, perf[i].0
                            ),
                        )
                    })?;
                perf[i] = (new_type, Some(new_perf));
                vac[i] = Some(name.clone());
                self.plan.listed.push(Listed {
                    label: "PersistentVolumeClaim".into(),
                    facts: format!("update: {} to VolumeAttributesClass {name}", claim.key()),
                });
                self.plan.updates.push(Update::Modify {
                    claim: i,
                    class: name,
                    parameters,
                });
            }
        }
        // A snapshot is as large as its source when it is taken (after the updates); a claim
        // restored from it must be at least that large.
        for s in &mut self.plan.snapshots {
            s.size_gib = size[s.claim].1;
        }
        for i in 0..self.plan.claims.len() {
            let (origin, _) = &self.claim_docs[i];
            let needed = match self.plan.claims[i].source {
                Some(ClaimSource::Snapshot(s)) => Some((self.plan.snapshots[s].size_gib, "snapshot")),
                Some(ClaimSource::Claim(c)) => Some((size[c].1, "source claim")),
                None => None,
            };
            if let Some((gib, what)) = needed
                && (self.plan.claims[i].required_bytes as u64) < gib * params::GIB
            {
                return Err(origin.error(
                    "spec.resources.requests.storage",
                    format!(
                        "{} is smaller than its {what} ({gib} GiB); ask for at least {gib}Gi",
                        self.plan.claims[i].size_text
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeFacts {
        NodeFacts {
            name: "n".into(),
            topology: BTreeMap::from([("topology.kubernetes.io/zone".to_owned(), "local-1a".to_owned())]),
        }
    }

    fn plan_of(text: &str) -> Result<Plan> {
        plan(
            &[SourceFile {
                name: "t.yaml".into(),
                text: text.into(),
            }],
            &node(),
        )
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
        let class = StorageClass {
            name: "c".into(),
            immediate: true,
            allow_expansion: false,
            parameters: HashMap::new(),
            fs_type: "ext4".into(),
            mount_options: vec![],
            allowed: vec![],
        };
        let zone = |z: &str| NodeFacts {
            name: z.into(),
            topology: BTreeMap::from([("topology.kubernetes.io/zone".to_owned(), z.to_owned())]),
        };
        let nodes = [zone("b"), zone("a"), zone("a")];
        let (req, pref) = topology_requirement(&class, &nodes, Some(&nodes[0]), "x");
        assert_eq!(req.len(), 2, "sorted, without repeats");
        assert_eq!(req[0]["topology.kubernetes.io/zone"], "a");
        assert_eq!(
            pref[0]["topology.kubernetes.io/zone"], "b",
            "the selected node's zone first"
        );
        let (_, pref) = topology_requirement(&class, &nodes, None, "x");
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
