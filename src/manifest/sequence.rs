//! `--delete`: the objects of a `kubectl delete -f`, removed the way a cluster converges. Pods go
//! first (kubelet unpublishes and unstages their volumes, the attacher detaches them); a claim goes
//! by its reclaim policy, or stays Terminating while a pod that is not deleted still uses it (the
//! pvc-protection finalizer) and goes with that pod; a VolumeSnapshot goes by its deletion policy;
//! a Namespace takes everything in it. A name deleted is free: a later apply makes a new object.

use std::collections::BTreeSet;

use serde_yaml_ng::Value;

use super::read::{Doc, Kind};
use super::{BUILT_IN_NAMESPACES, Builder, Deletion, Listed, Origin, Result};

/// What the `--delete` runs so far have removed (indices into the plan's lists).
#[derive(Default)]
pub(super) struct Gone {
    pub claims: BTreeSet<usize>,
    pub workloads: BTreeSet<usize>,
    pub snapshots: BTreeSet<usize>,
    pub volumes: BTreeSet<usize>,
    pub contents: BTreeSet<usize>,
    /// Claims deleted while pods still use them: Terminating until those pods go.
    pub terminating: BTreeSet<usize>,
    /// PersistentVolumes whose claim was deleted: Released, and never bound again.
    pub released: BTreeSet<usize>,
    /// Volume and snapshot ids a reclaim or deletion policy deleted.
    pub handles: BTreeSet<String>,
}

/// The objects one `--delete` names, gathered before any goes.
#[derive(Default)]
struct Targets {
    workloads: BTreeSet<usize>,
    claims: BTreeSet<usize>,
    snapshots: BTreeSet<usize>,
    volumes: BTreeSet<usize>,
    contents: BTreeSet<usize>,
}

impl Builder {
    /// The VolumeSnapshot named so that is there now.
    pub(super) fn live_snapshot(&self, namespace: &str, name: &str) -> Option<usize> {
        (0..self.plan.snapshots.len()).rev().find(|&s| {
            let snap = &self.plan.snapshots[s];
            snap.namespace == namespace && snap.name == name && !self.gone.snapshots.contains(&s)
        })
    }

    fn live_workload(&self, kind: &str, namespace: &str, name: &str) -> Option<usize> {
        (0..self.plan.workloads.len()).rev().find(|&w| {
            let wl = &self.plan.workloads[w];
            wl.kind == kind && wl.namespace == namespace && wl.name == name && !self.gone.workloads.contains(&w)
        })
    }

    /// One `--delete` run: every object its documents name must be there, as for kubectl.
    pub(super) fn delete(&mut self, docs: Vec<(Doc, Value)>) -> Result<()> {
        let mut t = Targets::default();
        for (doc, _) in docs {
            let object = doc.key();
            let origin = doc.origin();
            let Some(kind) = doc.known else {
                self.listed.push(Listed {
                    label: doc.kind.clone(),
                    facts: format!("{}: not played by the demo; skipped", doc.name),
                });
                continue;
            };
            let namespace = doc.namespaced();
            let name = doc.name.as_str();
            let found = match kind {
                Kind::Namespace => self.delete_namespace(&origin, name, &mut t)?,
                Kind::Deployment | Kind::Pod => self
                    .live_workload(&doc.kind, &namespace, name)
                    .map(|w| t.workloads.insert(w))
                    .is_some(),
                Kind::PersistentVolumeClaim => self.claim_index(&namespace, name).map(|c| t.claims.insert(c)).is_some(),
                Kind::VolumeSnapshot => self
                    .live_snapshot(&namespace, name)
                    .map(|s| t.snapshots.insert(s))
                    .is_some(),
                Kind::PersistentVolume => self.live_volume(name).map(|v| t.volumes.insert(v)).is_some(),
                Kind::VolumeSnapshotContent => self.live_content(name).map(|c| t.contents.insert(c)).is_some(),
                Kind::StorageClass => {
                    self.plan.classes.remove(name);
                    let found = self.class_origin.remove(name).is_some();
                    if found {
                        self.note(&object, "deleted; volumes it made stay");
                    }
                    found
                }
                Kind::VolumeSnapshotClass => {
                    let found = self.snapshot_classes.remove(name).is_some();
                    if found {
                        self.note(&object, "deleted; snapshots taken with it stay");
                    }
                    found
                }
                Kind::VolumeAttributesClass => {
                    let found = self.attribute_classes.remove(name).is_some();
                    if found {
                        self.note(&object, "deleted; volumes keep the attributes it gave them");
                    }
                    found
                }
            };
            if !found && !self.already_targeted(&doc, &namespace, &t) {
                return Err(origin.error(
                    "metadata.name",
                    format!(
                        "is not there to delete (kubectl would answer: {} \"{name}\" not found)",
                        doc.kind.to_ascii_lowercase()
                    ),
                ));
            }
            self.seen.remove(&object);
        }
        for w in t.workloads {
            self.delete_pods(w);
        }
        for c in t.claims {
            self.delete_claim(c);
        }
        for s in t.snapshots {
            self.delete_snapshot(s);
        }
        for v in t.volumes {
            self.delete_volume(v);
        }
        for c in t.contents {
            self.delete_content(c);
        }
        Ok(())
    }

    /// A document naming an object this `--delete` already takes (twice in its files, or in a
    /// Namespace it deletes) is not an error.
    fn already_targeted(&self, doc: &Doc, namespace: &str, t: &Targets) -> bool {
        let name = doc.name.as_str();
        match doc.kind.as_str() {
            "Deployment" | "Pod" => t.workloads.iter().any(|&w| {
                let wl = &self.plan.workloads[w];
                wl.kind == doc.kind && wl.namespace == namespace && wl.name == name
            }),
            "PersistentVolumeClaim" => t.claims.iter().any(|&c| {
                let cl = &self.plan.claims[c];
                cl.namespace == namespace && cl.name == name
            }),
            "VolumeSnapshot" => t.snapshots.iter().any(|&s| {
                let sn = &self.plan.snapshots[s];
                sn.namespace == namespace && sn.name == name
            }),
            "PersistentVolume" => t.volumes.iter().any(|&v| self.plan.volumes[v].name == name),
            "VolumeSnapshotContent" => t.contents.iter().any(|&c| self.plan.contents[c].name == name),
            _ => false,
        }
    }

    fn note(&mut self, object: &str, facts: &str) {
        let (label, name) = object.split_once(' ').unwrap_or((object, ""));
        self.listed.push(Listed {
            label: label.to_owned(),
            facts: format!("{name}: {facts}"),
        });
    }

    /// A Namespace and everything in it.
    fn delete_namespace(&mut self, origin: &Origin, name: &str, t: &mut Targets) -> Result<bool> {
        if BUILT_IN_NAMESPACES.contains(&name) {
            return Err(origin.error(
                "metadata.name",
                format!("namespace {name:?} is built in; Kubernetes forbids deleting it"),
            ));
        }
        if !self.namespaces.remove(name) {
            return Ok(false);
        }
        let mut gone = 0;
        for w in 0..self.plan.workloads.len() {
            if self.plan.workloads[w].namespace == name && !self.gone.workloads.contains(&w) {
                gone += usize::from(t.workloads.insert(w));
            }
        }
        for c in 0..self.plan.claims.len() {
            if self.plan.claims[c].namespace == name && !self.gone.claims.contains(&c) {
                gone += usize::from(t.claims.insert(c));
            }
        }
        for s in 0..self.plan.snapshots.len() {
            if self.plan.snapshots[s].namespace == name && !self.gone.snapshots.contains(&s) {
                gone += usize::from(t.snapshots.insert(s));
            }
        }
        let facts = if gone == 0 {
            "deleted".to_owned()
        } else {
            "deleted, and everything in it".to_owned()
        };
        self.note(&format!("Namespace {name}"), &facts);
        Ok(true)
    }

    /// A Deployment's or Pod's pods go; the claims of their ephemeral volumes go with them, and
    /// claims that waited for them (Terminating) go now.
    fn delete_pods(&mut self, w: usize) {
        if !self.gone.workloads.insert(w) {
            return;
        }
        let wl = self.plan.workloads[w].clone();
        self.seen.remove(&wl.key());
        let count = wl.pods.len();
        self.listed.push(Listed {
            label: wl.kind.clone(),
            facts: format!(
                "{}/{}: deleted; {count} {} go{}",
                wl.namespace,
                wl.name,
                if count == 1 { "pod" } else { "pods" },
                if count == 1 { "es" } else { "" }
            ),
        });
        self.deletions.push(Deletion::Pods(w));
        let claims: Vec<usize> = wl.pods.iter().flat_map(|p| &p.volumes).map(|v| v.claim).collect();
        for &c in &claims {
            let claim = &mut self.plan.claims[c];
            claim.pods = claim.pods.saturating_sub(1);
        }
        for &c in &claims {
            if self.plan.claims[c].owner.is_some() {
                self.delete_claim(c);
            }
        }
        let waiting: Vec<usize> = self
            .gone
            .terminating
            .iter()
            .copied()
            .filter(|&c| self.plan.claims[c].pods == 0)
            .collect();
        for c in waiting {
            self.gone.terminating.remove(&c);
            self.remove_claim(c);
        }
    }

    fn delete_claim(&mut self, c: usize) {
        if self.gone.claims.contains(&c) || self.gone.terminating.contains(&c) {
            return;
        }
        if self.plan.claims[c].pods > 0 {
            self.gone.terminating.insert(c);
            let key = self.plan.claims[c].key();
            self.listed.push(Listed {
                label: "PersistentVolumeClaim".into(),
                facts: format!("{key}: Terminating while pods use it; it goes when they are deleted"),
            });
            return;
        }
        self.remove_claim(c);
    }

    /// The claim goes, and its PersistentVolume's reclaim policy decides its volume's fate.
    fn remove_claim(&mut self, c: usize) {
        let bound = self.bound_early(c);
        self.gone.claims.insert(c);
        let claim = self.plan.claims[c].clone();
        self.seen.remove(&format!("PersistentVolumeClaim {}", claim.key()));
        if let Some(v) = claim.static_pv {
            self.gone.released.insert(v);
            if !claim.retain {
                self.gone.handles.insert(self.plan.volumes[v].handle.clone());
            }
        }
        let fate = match (bound, claim.retain) {
            (false, _) => "deleted; it was never bound, so no volume goes",
            (true, true) => "deleted; reclaim policy Retain: its volume stays (PersistentVolume Released)",
            (true, false) => "deleted; reclaim policy Delete: its volume is deleted",
        };
        self.listed.push(Listed {
            label: "PersistentVolumeClaim".into(),
            facts: format!("{}: {fate}", claim.key()),
        });
        self.deletions.push(Deletion::Claim(c));
    }

    fn delete_snapshot(&mut self, s: usize) {
        if !self.gone.snapshots.insert(s) {
            return;
        }
        let snap = self.plan.snapshots[s].clone();
        self.seen
            .remove(&format!("VolumeSnapshot {}/{}", snap.namespace, snap.name));
        if let Some(ct) = snap.content {
            self.plan.contents[ct].snapshot = None;
            if !snap.retain {
                // The content goes with its snapshot.
                self.gone.contents.insert(ct);
                self.gone.handles.insert(self.plan.contents[ct].handle.clone());
                self.seen
                    .remove(&format!("VolumeSnapshotContent {}", self.plan.contents[ct].name));
            }
        }
        let fate = if snap.retain {
            "deleted; deletion policy Retain: its snapshot stays"
        } else {
            "deleted; deletion policy Delete: its snapshot is deleted"
        };
        self.listed.push(Listed {
            label: "VolumeSnapshot".into(),
            facts: format!("{}/{}: {fate}", snap.namespace, snap.name),
        });
        self.deletions.push(Deletion::Snapshot(s));
    }

    /// Deleting a PersistentVolume object never deletes its volume: only its claim's deletion
    /// (reclaim policy Delete) does. While bound, it waits for its claim (pv-protection).
    fn delete_volume(&mut self, v: usize) {
        if !self.gone.volumes.insert(v) {
            return;
        }
        let pv = &self.plan.volumes[v];
        let bound = pv
            .claim
            .filter(|c| !self.gone.claims.contains(c))
            .map(|c| self.plan.claims[c].key());
        let facts = match bound {
            Some(claim) => format!(
                "{}: Terminating until claim {claim} is deleted; its reclaim policy then applies",
                pv.name
            ),
            None => format!("{}: deleted; volume {} stays", pv.name, pv.handle),
        };
        self.listed.push(Listed {
            label: "PersistentVolume".into(),
            facts,
        });
    }

    /// A VolumeSnapshotContent: bound, it waits for its VolumeSnapshot; unbound with deletion
    /// policy Delete, the snapshotter deletes its snapshot.
    fn delete_content(&mut self, ct: usize) {
        if !self.gone.contents.insert(ct) {
            return;
        }
        let content = self.plan.contents[ct].clone();
        let facts = match content.snapshot {
            Some(s) => format!(
                "{}: Terminating until VolumeSnapshot {}/{} is deleted",
                content.name, self.plan.snapshots[s].namespace, self.plan.snapshots[s].name
            ),
            None if content.retain => format!(
                "{}: deleted; deletion policy Retain: {} stays",
                content.name, content.handle
            ),
            None => {
                self.gone.handles.insert(content.handle.clone());
                self.deletions.push(Deletion::Content(ct));
                format!(
                    "{}: deleted; deletion policy Delete: {} is deleted",
                    content.name, content.handle
                )
            }
        };
        self.listed.push(Listed {
            label: "VolumeSnapshotContent".into(),
            facts,
        });
    }
}
