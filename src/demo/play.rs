//! The plan's phases, in order: an apply converges as a cluster does, a delete plays what the
//! deletion sets off (`delete`). Before the first, the demo tells the zones the YAML chose, learns
//! the driver's node, and makes the pre-provisioned volumes and snapshots (`import`).

use super::player::Player;
use super::report::Event;
use crate::error::Result;
use crate::manifest::Update;

impl Player {
    pub(super) async fn run(&mut self) -> Result<()> {
        let phases = self.plan.phases.len();
        for k in 0..phases {
            let phase = self.plan.phases[k].clone();
            if phases > 1 {
                self.report.show(Event::Run {
                    delete: phase.delete,
                    given: &phase.given,
                });
            }
            for l in &phase.listed {
                self.report.show(Event::Listed(l));
            }
            if k == 0 {
                if let Some(note) = &self.plan.zones_note {
                    self.report.show(Event::Zones(note));
                }
                self.discover().await?;
                self.import().await?;
            }
            if phase.delete {
                self.play_deletions(k).await?;
            } else {
                self.play_apply(k).await?;
            }
        }
        Ok(())
    }

    /// One apply, in the order a cluster converges to: Immediate claims are provisioned, pods
    /// start (and their WaitForFirstConsumer claims are provisioned on the node), updates are
    /// applied, snapshots taken, then claims made from this apply's snapshots or claims are
    /// provisioned and their pods start.
    async fn play_apply(&mut self, k: usize) -> Result<()> {
        let claims: Vec<usize> = (0..self.plan.claims.len())
            .filter(|&i| self.plan.claims[i].phase == k)
            .collect();
        let workloads: Vec<usize> = (0..self.plan.workloads.len())
            .filter(|&w| self.plan.workloads[w].phase == k)
            .collect();
        // Immediate claims are provisioned (or bound) as soon as they exist.
        for &i in &claims {
            let c = &self.plan.claims[i];
            if c.immediate && !c.late {
                self.provision(i, None).await?;
            }
        }
        // Pods whose claims need no snapshot of this apply: scheduled, their volumes brought up.
        for &w in &workloads {
            if !self.plan.is_late(&self.plan.workloads[w]) {
                for r in 0..self.plan.workloads[w].pods.len() {
                    self.start_pod(w, r).await?;
                }
            }
        }
        for u in self.plan.phases[k].updates.clone() {
            match u {
                Update::Resize {
                    claim,
                    required_bytes,
                    size_text,
                    ..
                } => self.resize(claim, required_bytes, &size_text).await?,
                Update::Modify {
                    claim,
                    class,
                    parameters,
                } => self.modify(claim, &class, &parameters).await?,
            }
        }
        for s in 0..self.plan.snapshots.len() {
            if self.plan.snapshots[s].phase == k {
                self.snapshot(s).await?;
            }
        }
        // Claims made from this apply's snapshots or claims, and the pods that use them.
        for &i in &claims {
            let c = &self.plan.claims[i];
            if c.late && c.immediate {
                self.provision(i, None).await?;
            }
        }
        for &w in &workloads {
            if self.plan.is_late(&self.plan.workloads[w]) {
                for r in 0..self.plan.workloads[w].pods.len() {
                    self.start_pod(w, r).await?;
                }
            }
        }
        for &i in &claims {
            if self.volumes[i].is_none() {
                self.report.show(Event::Pending {
                    claim: &self.plan.claims[i].key(),
                });
            }
        }
        Ok(())
    }
}
