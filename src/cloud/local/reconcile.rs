//! After a restart: finishing or undoing what a crash left half done, and matching records with
//! the loop devices that exist.

use super::*;

impl Inner {
    /// Finishes or undoes what a crash interrupted, and brings loop devices in line with the
    /// records: every attachment has its loop device, and no loop device of ours lacks one.
    pub(super) async fn reconcile(self: Arc<Self>) -> Result<()> {
        for r in self.store.all_volumes()? {
            let id = r.volume.id.clone();
            match r.state {
                VolumeState::Creating | VolumeState::Deleting => {
                    warn!(volume = %id, state = ?r.state, "finishing an interrupted create or delete: removing it");
                    let path = self.volume_path(&id);
                    let busy = !loopdev::find(&path)?.is_empty();
                    if !busy {
                        files::remove(&path.with_extension("tmp"))?;
                        files::remove(&path)?;
                        self.store.remove_volume(&id)?;
                    }
                }
                VolumeState::Available => {
                    if !r.attaching.is_empty() {
                        warn!(volume = %id, nodes = ?r.attaching, "undoing interrupted attaches");
                        for node in r.attaching.clone() {
                            self.clone().detach(id.clone(), node, false).await?;
                        }
                    }
                    if !r.volume.attachments.is_empty() && self.volume_path(&id).exists() {
                        let device = loopdev::attach(&self.volume_path(&id)).await?;
                        let device = device.to_string_lossy().into_owned();
                        if r.volume.attachments.iter().any(|a| a.device != device) {
                            info!(volume = %id, device, "attachment restored on a new loop device");
                            self.update(&id, |rec, _| {
                                for a in &mut rec.volume.attachments {
                                    a.device = device.clone();
                                }
                                Ok(())
                            })?;
                        }
                    }
                }
            }
        }
        for r in self.store.all_snapshots()? {
            if r.state != SnapshotState::Ready {
                warn!(snapshot = %r.snapshot.id, "removing an interrupted snapshot");
                let path = self.snapshot_path(&r.snapshot.id);
                files::remove(&path.with_extension("tmp"))?;
                files::remove(&path)?;
                self.store.remove_snapshot(&r.snapshot.id)?;
            }
        }
        // Loop devices on our images that no record accounts for.
        let volumes_dir = self.dir.join("volumes");
        for l in loopdev::list()? {
            // The path sysfs gives is the attaching process's; a device attached from a container
            // that has gone shows another path for the same image, so the file itself is compared.
            let Some(name) = l.backing_file.file_name() else {
                continue;
            };
            let image = volumes_dir.join(name);
            if !loopdev::backs(&l.device, &image) {
                continue;
            }
            let id = image
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_owned();
            let wanted = match self.store.volume(&id)? {
                Some(r) => r.state == VolumeState::Available && !r.volume.attachments.is_empty(),
                None => false,
            };
            if !wanted {
                warn!(device = %l.device.display(), volume = %id, "detaching a loop device no attachment accounts for");
                loopdev::detach(&l.device, &image).await?;
            }
        }
        Ok(())
    }
}
