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
//! Three stages, each in files of its own. Reading: `read` (files → documents → typed objects)
//! and `kinds` (the typed objects). Checking, per kind, into the plan: this file (the builder and
//! the order of an apply), `classes`, `claims`, `workloads` (pods and their volumes), `ephemeral`
//! (generic ephemeral volumes), `snapshots`, `updates` (resizes and modifies), `sequence`
//! (deletes), `static_pv` and `snapshot_import` (PersistentVolumes and VolumeSnapshotContents made
//! outside the cluster) and `zones` (the zones the objects name, and where the demo's node goes),
//! with `sidecars` (what the sidecars compute themselves). The plan: `plan`.

mod claims;
mod classes;
mod ephemeral;
mod kinds;
mod plan;
mod read;
mod sequence;
mod sidecars;
mod snapshot_import;
mod snapshots;
mod static_pv;
mod updates;
mod workloads;
mod zones;

pub use kinds::parse_quantity;
pub use plan::{
    Claim, ClaimSource, Deletion, Listed, NodeFacts, Phase, Plan, Pod, PodVolume, Snapshot, StorageClass, Update,
    Workload,
};
pub use read::{ManifestError, SourceFile, read_sources};
pub use sidecars::{Term, csi_access_mode, topology_requirement, uid};
pub use snapshot_import::SnapshotContent;
pub use static_pv::PersistentVolume;
pub use zones::DemoNode;

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml_ng::Value;

use crate::ebs::{Performance, VolumeType};
use kinds::{AttributesClassDoc, NodeSelector, PodSpec, PvcSpec, SnapshotClassDoc, SnapshotSpec, StorageClassDoc};
use read::{Doc, Kind, Object, Origin, Result, decode, documents};

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
    pv_affinity: Vec<Option<NodeSelector>>,
    /// Per provisioned claim: its StorageClass's document, for zone refusals.
    class_of: BTreeMap<usize, Origin>,
}

impl Builder {
    /// One document of an apply: a new object, an update, or the same document again.
    fn add(&mut self, doc: Doc, value: Value) -> Result<()> {
        let object = doc.key();
        let origin = doc.origin();
        let Some(kind) = doc.known else {
            self.listed.push(Listed {
                label: doc.kind.clone(),
                facts: format!("{}: not played by the demo; skipped", doc.name),
            });
            return Ok(());
        };
        let versions = kind.served_versions();
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
        let updatable = matches!(kind, Kind::StorageClass | Kind::PersistentVolumeClaim);
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
        let namespace = doc.namespaced();
        match decode(kind, &origin, value)? {
            Object::Namespace => {
                self.namespaces.insert(doc.name.clone());
                self.listed.push(Listed {
                    label: "Namespace".into(),
                    facts: doc.name,
                });
            }
            Object::StorageClass(d) => self.storage_class(origin, d)?,
            Object::Claim(spec) => self.claim(origin, namespace, doc.name, spec)?,
            Object::Deployment { replicas, pod } => self.workload(
                origin,
                "Deployment",
                namespace,
                doc.name,
                Some(replicas),
                pod,
                "spec.template.spec",
            ),
            Object::Pod(pod) => self.workload(origin, "Pod", namespace, doc.name, None, pod, "spec"),
            Object::SnapshotClass(d) => {
                self.snapshot_classes.insert(doc.name, (origin, d));
            }
            Object::Snapshot(spec) => self.snapshot_docs.push((origin, namespace, doc.name, spec)),
            Object::AttributesClass(d) => {
                self.attribute_classes.insert(doc.name, (origin, d));
            }
            Object::Volume(spec) => self.persistent_volume(origin, doc.name, spec)?,
            Object::Content(spec) => self.snapshot_content(origin, doc.name, spec)?,
        }
        Ok(())
    }

    /// A Deployment's or Pod's pod spec, kept until the apply's claims are known.
    #[allow(clippy::too_many_arguments)]
    fn workload(
        &mut self,
        origin: Origin,
        kind: &'static str,
        namespace: String,
        name: String,
        replicas: Option<i64>,
        pod: PodSpec,
        base: &'static str,
    ) {
        self.workload_docs.push(WorkloadDoc {
            origin,
            kind,
            namespace,
            name,
            replicas,
            pod,
            base,
            pod_names: Vec::new(),
            ephemeral: BTreeMap::new(),
        });
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

    /// The claim named so that is there now (not deleted).
    fn claim_index(&self, namespace: &str, name: &str) -> Option<usize> {
        (0..self.plan.claims.len()).rev().find(|&i| {
            let c = &self.plan.claims[i];
            c.namespace == namespace && c.name == name && !self.gone.claims.contains(&i)
        })
    }
}
