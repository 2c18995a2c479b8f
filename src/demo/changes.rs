//! Changes to volumes in use, as the external-resizer and -snapshotter make them: resizes
//! (ControllerExpandVolume, then kubelet's NodeExpandVolume online, or offline by staging again),
//! modifies (ControllerModifyVolume) and snapshots (CreateSnapshot, waited on until ready).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::PAGE;
use super::page::read_page;
use super::player::{Player, Undo, status};
use super::report::Event;
use crate::csi::*;
use crate::error::{Error, Result};

impl Player {
    /// The external-resizer (ControllerExpandVolume) and kubelet (NodeExpandVolume, online, or
    /// offline by staging the volume again).
    pub(super) async fn resize(&mut self, i: usize, required_bytes: i64, size_text: &str) -> Result<()> {
        let claim = self.plan.claims[i].clone();
        let Some(state) = &self.volumes[i] else {
            return Err(Error::Internal(format!("claim {} has no volume", claim.name)));
        };
        let id = state.volume.volume_id.clone();
        let req = ControllerExpandVolumeRequest {
            volume_id: id.clone(),
            capacity_range: Some(CapacityRange {
                required_bytes,
                limit_bytes: 0,
            }),
            volume_capability: Some(claim.capability(self.controller_snmw)),
            ..Default::default()
        };
        let r = self
            .controller
            .controller_expand_volume(req)
            .await
            .map_err(status)?
            .into_inner();
        let first = state.pods.first().cloned();
        let staging = state.staging.clone();
        let Some(pod) = first else {
            self.report.show(Event::ExpandedLater {
                size: size_text,
                stage: self.stage(i),
                volume_id: &id,
                gib: r.capacity_bytes >> 30,
            });
            return Ok(());
        };
        if !r.node_expansion_required {
            let usage = self.stats(&id, &pod.target).await?;
            self.report
                .show(Event::ExpandedControllerOnly { size: size_text, usage });
            return Ok(());
        }
        let req = NodeExpandVolumeRequest {
            volume_id: id.clone(),
            volume_path: pod.target.display().to_string(),
            staging_target_path: staging.map(|p| p.display().to_string()).unwrap_or_default(),
            capacity_range: Some(CapacityRange {
                required_bytes: r.capacity_bytes,
                limit_bytes: 0,
            }),
            volume_capability: Some(claim.capability(self.node_snmw)),
            ..Default::default()
        };
        match self.node.node_expand_volume(req).await {
            Ok(_) => {
                let usage = self.stats(&id, &pod.target).await?;
                self.report.show(Event::ExpandedOnline { size: size_text, usage });
            }
            // Growing a mounted ext4 needs CAP_SYS_RESOURCE (a privileged node pod has it). Without
            // it, do what kubelet does for offline expansion: the pods go, the volume is staged
            // again, and staging grows the filesystem.
            Err(e) if e.message().contains("CAP_SYS_RESOURCE") => {
                self.report.show(Event::OfflineExpansion);
                let pods = self.take_down(i).await?;
                self.attach_and_stage(i).await?;
                let mut first_target = None;
                for p in pods {
                    let t = self.publish(i, p.pod, p.read_only, p.shown_at).await?;
                    first_target.get_or_insert(t);
                }
                let target = first_target.unwrap_or(pod.target);
                let usage = self.stats(&id, &target).await?;
                self.report.show(Event::ExpandedOffline { size: size_text, usage });
            }
            Err(e) => return Err(status(e)),
        }
        let state = self.volumes[i].as_ref();
        if let Some(s) = state
            && s.has_page
            && let Some(p) = s.pods.first()
            && read_page(&p.target, claim.block).as_deref() != Some(PAGE)
        {
            return Err(Error::Internal("the page is gone after the expansion".into()));
        }
        Ok(())
    }

    /// The external-resizer's ControllerModifyVolume for a new VolumeAttributesClass.
    pub(super) async fn modify(&mut self, i: usize, class: &str, parameters: &HashMap<String, String>) -> Result<()> {
        let id = match &self.volumes[i] {
            Some(s) => s.volume.volume_id.clone(),
            None => {
                return Err(Error::Internal(format!(
                    "claim {} has no volume",
                    self.plan.claims[i].name
                )));
            }
        };
        let req = ControllerModifyVolumeRequest {
            volume_id: id.clone(),
            mutable_parameters: parameters.clone(),
            ..Default::default()
        };
        self.controller.controller_modify_volume(req).await.map_err(status)?;
        self.report.show(Event::Modified {
            stage: self.stage(i),
            volume_id: &id,
            class,
            parameters,
        });
        Ok(())
    }

    /// The external-snapshotter's CreateSnapshot, waiting for it to be ready as it does.
    pub(super) async fn snapshot(&mut self, s: usize) -> Result<()> {
        let snap = self.plan.snapshots[s].clone();
        let Some(claim) = snap.claim else {
            return self.bind_snapshot(s);
        };
        let (source, has_page) = match &self.volumes[claim] {
            Some(v) => (v.volume.volume_id.clone(), v.has_page),
            None => {
                return Err(Error::Internal(format!(
                    "the source of snapshot {} has no volume",
                    snap.name
                )));
            }
        };
        let req = CreateSnapshotRequest {
            source_volume_id: source.clone(),
            name: format!("snapshot-{}", snap.uid),
            parameters: snap.parameters.clone(),
            ..Default::default()
        };
        let mut taken = self
            .controller
            .create_snapshot(req)
            .await
            .map_err(status)?
            .into_inner()
            .snapshot
            .ok_or_else(|| Error::Internal("CreateSnapshot returned no snapshot".into()))?;
        self.made.push(Undo::Snapshot(taken.snapshot_id.clone()));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !taken.ready_to_use && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let list = self
                .controller
                .list_snapshots(ListSnapshotsRequest {
                    snapshot_id: taken.snapshot_id.clone(),
                    ..Default::default()
                })
                .await
                .map_err(status)?
                .into_inner();
            if let Some(found) = list.entries.into_iter().find_map(|e| e.snapshot) {
                taken = found;
            }
        }
        self.report.show(Event::SnapshotTaken {
            snapshot_id: &taken.snapshot_id,
            source: &source,
            ready: taken.ready_to_use,
        });
        if !taken.ready_to_use {
            return Err(Error::Internal(format!(
                "snapshot {} was not ready within 60 s",
                taken.snapshot_id
            )));
        }
        self.snapshots[s] = Some((taken.snapshot_id, has_page));
        Ok(())
    }
}
