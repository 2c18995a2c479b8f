//! Pre-provisioned objects. A PersistentVolume's `csi.volumeHandle` and a
//! VolumeSnapshotContent's `source.snapshotHandle` name an EBS volume and snapshot that, on AWS,
//! exist before the cluster sees them. Before playing, the demo makes them on its local backend
//! under those ids, and says so: the volume blank, in the zone the PersistentVolume's node
//! affinity allows; the snapshot from a scratch volume it makes, writes its page on and deletes,
//! so a claim restored from the snapshot finds the page. Then claims bind to those volumes and
//! VolumeSnapshots to those snapshots, as in a cluster.

use std::collections::BTreeSet;

use super::player::{Player, Undo, VolumeState};
use super::report::Event;
use crate::cloud::local::LocalCloud;
use crate::cloud::{Tags, VolumeSpec};
use crate::csi::{Topology, Volume};
use crate::ebs::VolumeType;
use crate::error::Result;
use crate::manifest::{self, Claim};
use crate::topology::{WELL_KNOWN_ZONE_KEY, ZONE_KEY};

impl Player {
    /// Makes the volumes and snapshots the pre-provisioned objects name, each id once.
    pub(super) async fn import(&mut self) -> Result<()> {
        if self.plan.volumes.is_empty() && self.plan.contents.is_empty() {
            return Ok(());
        }
        let cloud = LocalCloud::open(&self.data_dir, self.plan.zones.clone())?;
        let mut done = BTreeSet::new();
        for pv in self.plan.volumes.clone() {
            if !done.insert(pv.handle.clone()) {
                continue;
            }
            let volume_type = if pv.multi_attach {
                VolumeType::Io2
            } else {
                VolumeType::Gp3
            };
            let spec = VolumeSpec {
                size_gib: pv.size_gib,
                volume_type,
                iops: pv.multi_attach.then(|| (pv.size_gib * 500).clamp(100, 64_000) as u32),
                throughput: None,
                encrypted: false,
                kms_key_id: None,
                zone: pv.zone.clone(),
                multi_attach: pv.multi_attach,
                source: None,
                initialization_rate: None,
                tags: Tags::new(),
            };
            cloud.import_volume(&pv.handle, &spec)?;
            self.made.push(Undo::Volume(pv.handle.clone()));
            self.report.show(Event::ExistingVolume {
                handle: &pv.handle,
                pv: &pv.name,
                gib: pv.size_gib,
                volume_type,
                zone: &pv.zone,
            });
        }
        for c in 0..self.plan.contents.len() {
            if done.insert(self.plan.contents[c].handle.clone()) {
                self.import_snapshot(&cloud, c).await?;
            }
        }
        Ok(())
    }

    /// A scratch volume, played as a claim of its own: provisioned, attached, formatted and
    /// published, the page written, taken down; snapshotted under the content's id; deleted.
    async fn import_snapshot(&mut self, cloud: &LocalCloud, c: usize) -> Result<()> {
        let content = self.plan.contents[c].clone();
        let block = content.block.unwrap_or(false);
        let size_gib = content.size_gib.max(1);
        let name = format!("scratch-{}", content.handle);
        self.report.show(Event::ExistingSnapshot {
            handle: &content.handle,
            content: &content.name,
        });
        let i = self.plan.claims.len();
        self.plan.claims.push(Claim {
            // In no phase: never listed as Pending.
            phase: usize::MAX,
            name: name.clone(),
            uid: manifest::uid(),
            immediate: true,
            required_bytes: (size_gib << 30) as i64,
            size_text: format!("{size_gib}Gi"),
            size_gib,
            access_modes: vec!["ReadWriteOnce".into()],
            block,
            fs_type: match (block, content.fs_type.as_str()) {
                (true, _) => String::new(),
                (false, "") => manifest::DEFAULT_FSTYPE.into(),
                (false, fs) => fs.into(),
            },
            volume_name: Some(name),
            ..Default::default()
        });
        self.volumes.push(None);
        self.provision(i, None).await?;
        self.attach_and_stage(i).await?;
        let shown = if block { "/dev/scratch" } else { "/scratch" };
        let target = self.publish(i, (usize::MAX, 0), false, Some(shown.into())).await?;
        self.use_volume(i, &target, false, Some(shown)).await?;
        self.take_down(i).await?;
        let id = self.volumes[i]
            .as_ref()
            .map(|v| v.volume.volume_id.clone())
            .unwrap_or_default();
        if let Some(u) = self.take_made(|u| matches!(u, Undo::Attach(v) if *v == id)) {
            self.undo(u).await?;
        }
        let snapshot = cloud.import_snapshot(&content.handle, &id)?;
        self.made.push(Undo::Snapshot(content.handle.clone()));
        self.report.show(Event::ScratchSnapshot {
            snapshot_id: &snapshot.id,
            volume_id: &id,
            gib: snapshot.size_gib,
            ready: snapshot.ready,
        });
        if let Some(u) = self.take_made(|u| matches!(u, Undo::Volume(v) if *v == id)) {
            self.undo(u).await?;
        }
        self.volumes[i] = None;
        Ok(())
    }

    /// The PV controller binds a claim to its pre-provisioned PersistentVolume: no CreateVolume.
    pub(super) fn bind_static(&mut self, i: usize) -> Result<()> {
        let claim = self.plan.claims[i].clone();
        let Some(v) = claim.static_pv else {
            return Ok(());
        };
        let pv = self.plan.volumes[v].clone();
        let zone = Topology {
            segments: [ZONE_KEY, WELL_KNOWN_ZONE_KEY]
                .iter()
                .map(|k| (k.to_string(), pv.zone.clone()))
                .collect(),
        };
        self.volumes[i] = Some(VolumeState {
            volume: Volume {
                capacity_bytes: (pv.size_gib << 30) as i64,
                volume_id: pv.handle.clone(),
                volume_context: pv.attributes.clone(),
                accessible_topology: vec![zone],
                ..Default::default()
            },
            publish_context: None,
            staging: None,
            pods: Vec::new(),
            has_page: self.pages.contains(&pv.handle),
        });
        self.report.show(Event::BoundVolume {
            claim: &claim.key(),
            pv: &pv.name,
            handle: &pv.handle,
            gib: pv.size_gib,
            zone: &pv.zone,
        });
        Ok(())
    }

    /// The snapshot-controller binds a VolumeSnapshot to its pre-provisioned content: the
    /// snapshot is ready at once.
    pub(super) fn bind_snapshot(&mut self, s: usize) -> Result<()> {
        let snap = self.plan.snapshots[s].clone();
        let Some(c) = snap.content else {
            return Ok(());
        };
        let content = &self.plan.contents[c];
        self.report.show(Event::BoundSnapshot {
            snapshot: &format!("{}/{}", snap.namespace, snap.name),
            content: &content.name,
            handle: &content.handle,
        });
        self.snapshots[s] = Some((content.handle.clone(), true));
        Ok(())
    }
}
