//! Snapshot import: a VolumeSnapshotContent whose `source.snapshotHandle` is an EBS snapshot
//! taken outside the cluster, and the VolumeSnapshot bound to it (each names the other, as the
//! snapshot-controller requires). On AWS the snapshot exists already; the demo makes it on its
//! local backend under the same id, from a scratch volume as large as the smallest claim restored
//! from it, in their volume mode and filesystem.

use std::collections::HashMap;

use super::kinds::ContentSpec;
use super::static_pv::volume_mode;
use super::{Builder, DRIVER, Listed, Origin, Result, Snapshot, uid};
use crate::cloud::is_id;

/// A pre-provisioned VolumeSnapshotContent of this driver.
#[derive(Clone, Debug, Default)]
pub struct SnapshotContent {
    pub phase: usize,
    pub name: String,
    /// `spec.source.snapshotHandle`: the EBS snapshot's id.
    pub handle: String,
    /// `deletionPolicy: Retain`.
    pub retain: bool,
    /// `spec.volumeSnapshotRef`: namespace and name of the VolumeSnapshot it binds to.
    pub snapshot_ref: (String, String),
    /// The VolumeSnapshot bound to it now, and whether one ever was (Kubernetes binds it once).
    pub snapshot: Option<usize>,
    pub bound_once: bool,
    /// The volume the demo writes its page on and snapshots under `handle`: as large as the
    /// smallest claim restored from it (1 GiB when none), in their volume mode and filesystem.
    pub size_gib: u64,
    pub block: Option<bool>,
    pub fs_type: String,
}

impl Builder {
    /// The VolumeSnapshotContent named so that is there now.
    pub(super) fn live_content(&self, name: &str) -> Option<usize> {
        (0..self.plan.contents.len())
            .rev()
            .find(|&c| self.plan.contents[c].name == name && !self.gone.contents.contains(&c))
    }

    pub(super) fn snapshot_content(&mut self, origin: Origin, name: String, spec: ContentSpec) -> Result<()> {
        if spec.driver.as_deref() != Some(DRIVER) {
            return Err(origin.error(
                "spec.driver",
                format!("{:?} is not {DRIVER}", spec.driver.as_deref().unwrap_or("")),
            ));
        }
        let retain = match spec.deletion_policy.as_deref() {
            Some("Retain") => true,
            Some("Delete") => false,
            Some(other) => {
                return Err(origin.error("spec.deletionPolicy", format!("{other:?} is not Delete or Retain")));
            }
            None => return Err(origin.error("spec.deletionPolicy", "is missing (it is required)")),
        };
        let handle = match (&spec.source.snapshot_handle, &spec.source.volume_handle) {
            (Some(h), _) => h.clone(),
            (None, Some(_)) => {
                return Err(origin.error(
                    "spec.source.volumeHandle",
                    "asks the snapshotter to take a snapshot, which it does only for contents it makes itself; \
                     a pre-provisioned content names an existing snapshot in spec.source.snapshotHandle",
                ));
            }
            (None, None) => return Err(origin.error("spec.source.snapshotHandle", "is missing")),
        };
        if !is_id("snap", &handle) {
            return Err(origin.error(
                "spec.source.snapshotHandle",
                format!("{handle:?} is not an EBS snapshot id the demo can make: snap- and 17 hex digits"),
            ));
        }
        if self.gone.handles.contains(&handle) {
            return Err(origin.error(
                "spec.source.snapshotHandle",
                format!("{handle} was deleted earlier (a deletion policy Delete); it no longer exists"),
            ));
        }
        if let Some(other) = (0..self.plan.contents.len())
            .find(|&c| self.plan.contents[c].handle == handle && !self.gone.contents.contains(&c))
        {
            return Err(origin.error(
                "spec.source.snapshotHandle",
                format!(
                    "{handle} is already the snapshot of VolumeSnapshotContent {}",
                    self.plan.contents[other].name
                ),
            ));
        }
        let snapshot_ref = spec
            .volume_snapshot_ref
            .as_ref()
            .and_then(|r| Some((r.namespace.clone()?, r.name.clone()?)))
            .ok_or_else(|| {
                origin.error(
                    "spec.volumeSnapshotRef",
                    "needs the namespace and name of the VolumeSnapshot that binds to it",
                )
            })?;
        let block = match spec.source_volume_mode.as_deref() {
            None => None,
            mode => Some(volume_mode(&origin, "spec.sourceVolumeMode", mode)?),
        };
        self.listed.push(Listed {
            label: "VolumeSnapshotContent".into(),
            facts: format!(
                "{name}: {handle}, for VolumeSnapshot {}/{}, deletion policy {}",
                snapshot_ref.0,
                snapshot_ref.1,
                if retain { "Retain" } else { "Delete" }
            ),
        });
        self.plan.contents.push(SnapshotContent {
            phase: self.phase,
            name,
            handle,
            retain,
            snapshot_ref,
            block,
            ..Default::default()
        });
        Ok(())
    }

    /// A VolumeSnapshot whose source is a pre-provisioned VolumeSnapshotContent.
    pub(super) fn bind_content(
        &mut self,
        origin: &Origin,
        namespace: String,
        name: String,
        content: &str,
    ) -> Result<()> {
        let field = "spec.source.volumeSnapshotContentName";
        let ct = self.live_content(content).ok_or_else(|| {
            origin.error(
                field,
                format!("VolumeSnapshotContent {content:?} is not defined in these files"),
            )
        })?;
        let c = &self.plan.contents[ct];
        if c.snapshot_ref != (namespace.clone(), name.clone()) {
            return Err(origin.error(
                field,
                format!(
                    "VolumeSnapshotContent {content}'s spec.volumeSnapshotRef names {}/{}, not this snapshot; the \
                     snapshot-controller binds only a pair that names each other",
                    c.snapshot_ref.0, c.snapshot_ref.1
                ),
            ));
        }
        if c.bound_once {
            return Err(origin.error(
                field,
                format!(
                    "VolumeSnapshotContent {content} was bound to an earlier VolumeSnapshot {namespace}/{name} and \
                     Kubernetes does not bind it again; --delete it and apply it anew"
                ),
            ));
        }
        let (handle, retain) = (c.handle.clone(), c.retain);
        self.listed.push(Listed {
            label: "VolumeSnapshot".into(),
            facts: format!("{namespace}/{name}, bound to VolumeSnapshotContent {content} ({handle})"),
        });
        self.plan.snapshots.push(Snapshot {
            phase: self.phase,
            namespace,
            name,
            uid: uid(),
            class: String::new(),
            claim: None,
            content: Some(ct),
            retain,
            parameters: HashMap::new(),
            size_gib: 0,
        });
        let c = &mut self.plan.contents[ct];
        c.snapshot = Some(self.plan.snapshots.len() - 1);
        c.bound_once = true;
        Ok(())
    }

    /// A claim restored from an imported snapshot: the demo's stand-in for that snapshot must fit
    /// it, in size, volume mode and filesystem.
    pub(super) fn restore_from_content(
        &mut self,
        ct: usize,
        i: usize,
        origin: &Origin,
        mode_field: &str,
    ) -> Result<()> {
        let claim = &self.plan.claims[i];
        let c = &mut self.plan.contents[ct];
        match c.block {
            Some(b) if b != claim.block => {
                return Err(origin.error(
                    mode_field,
                    format!(
                        "differs from the volume mode of snapshot {} (VolumeSnapshotContent {}'s sourceVolumeMode, \
                         or the first claim restored from it); the provisioner refuses to convert a volume's mode",
                        c.handle, c.name
                    ),
                ));
            }
            Some(_) => {}
            None => c.block = Some(claim.block),
        }
        if c.fs_type.is_empty() && !claim.block {
            c.fs_type.clone_from(&claim.fs_type);
        }
        c.size_gib = match c.size_gib {
            0 => claim.size_gib,
            n => n.min(claim.size_gib),
        };
        Ok(())
    }
}
