//! What a `--delete` sets off, played as the cluster's programs play it: kubelet unpublishes a
//! deleted pod's volumes and unstages those no other pod on the node uses, and the attacher
//! detaches them; the provisioner deletes a deleted claim's volume when its reclaim policy is
//! Delete; the snapshotter deletes a deleted VolumeSnapshot's snapshot when its deletion policy is
//! Delete. What a Retain policy keeps stays on the undo stack, so the demo still removes it at the
//! end.

use super::player::{Player, Undo};
use super::report::Event;
use crate::error::Result;
use crate::manifest::Deletion;

impl Player {
    /// Takes the newest undo entry `pick` chooses off the stack, if any.
    pub(super) fn take_made(&mut self, pick: impl Fn(&Undo) -> bool) -> Option<Undo> {
        let n = self.made.iter().rposition(pick)?;
        Some(self.made.remove(n))
    }

    pub(super) async fn play_deletions(&mut self, k: usize) -> Result<()> {
        for d in self.plan.phases[k].deletions.clone() {
            match d {
                Deletion::Pods(w) => self.stop_pods(w).await?,
                Deletion::Claim(c) => self.delete_claim(c).await?,
                Deletion::Snapshot(s) => self.delete_snapshot(s).await?,
                Deletion::Content(c) => {
                    let handle = self.plan.contents[c].handle.clone();
                    self.delete_snapshot_id(&handle).await?;
                }
            }
        }
        Ok(())
    }

    /// A workload's pods go: each volume is unpublished from each pod; a volume no pod uses any
    /// more is unstaged and detached.
    async fn stop_pods(&mut self, w: usize) -> Result<()> {
        let claims: Vec<usize> = self.plan.workloads[w]
            .pods
            .iter()
            .flat_map(|p| &p.volumes)
            .map(|v| v.claim)
            .collect();
        for c in claims {
            let Some(state) = self.volumes[c].as_mut() else {
                continue;
            };
            let id = state.volume.volume_id.clone();
            let (gone, kept): (Vec<_>, Vec<_>) =
                std::mem::take(&mut state.pods).into_iter().partition(|p| p.pod.0 == w);
            state.pods = kept;
            let idle = state.pods.is_empty();
            for p in gone {
                let target = p.target.display().to_string();
                if let Some(u) = self.take_made(|u| matches!(u, Undo::Publish(v, t) if *v == id && *t == target)) {
                    self.undo(u).await?;
                }
            }
            if idle {
                if let Some(u) = self.take_made(|u| matches!(u, Undo::Stage(v, _) if *v == id)) {
                    self.undo(u).await?;
                }
                if let Some(u) = self.take_made(|u| matches!(u, Undo::Attach(v) if *v == id)) {
                    self.undo(u).await?;
                }
                if let Some(s) = self.volumes[c].as_mut() {
                    s.staging = None;
                    s.publish_context = None;
                }
            }
        }
        Ok(())
    }

    /// A claim goes: its volume is deleted, or kept by reclaim policy Retain (and removed by the
    /// demo's teardown).
    async fn delete_claim(&mut self, c: usize) -> Result<()> {
        let Some(state) = self.volumes[c].take() else {
            return Ok(());
        };
        let claim = &self.plan.claims[c];
        let id = state.volume.volume_id;
        if claim.retain {
            if state.has_page {
                self.pages.insert(id.clone());
            }
            self.report.show(Event::Released {
                pv: &claim.pv_name(),
                volume_id: &id,
            });
            return Ok(());
        }
        if let Some(u) = self.take_made(|u| matches!(u, Undo::Volume(v) if *v == id)) {
            self.undo(u).await?;
        }
        Ok(())
    }

    /// A VolumeSnapshot goes: its snapshot is deleted, or kept by deletion policy Retain.
    async fn delete_snapshot(&mut self, s: usize) -> Result<()> {
        let Some((id, _)) = self.snapshots[s].take() else {
            return Ok(());
        };
        if self.plan.snapshots[s].retain {
            self.report.show(Event::SnapshotKept { snapshot_id: &id });
            return Ok(());
        }
        self.delete_snapshot_id(&id).await
    }

    async fn delete_snapshot_id(&mut self, id: &str) -> Result<()> {
        if let Some(u) = self.take_made(|u| matches!(u, Undo::Snapshot(v) if v == id)) {
            self.undo(u).await?;
        }
        Ok(())
    }
}
