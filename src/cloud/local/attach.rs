//! Attaching a volume as a loop device on its node, with EBS's attach limits and errors, and
//! detaching it.

use super::*;

impl Inner {
    pub(super) async fn attach(self: Arc<Self>, id: String, node_id: String, read_only: bool) -> Result<Attachment> {
        let node = self.node(&node_id)?;
        let record = self.volume_record(&id)?;
        if let Some(a) = record.volume.attachments.iter().find(|a| a.node == node_id) {
            if a.read_only != read_only {
                return Err(Error::AlreadyExists(format!(
                    "volume {id} is already published to node {node_id} {}; unpublish it before publishing it {}",
                    if a.read_only { "read-only" } else { "read-write" },
                    if read_only { "read-only" } else { "read-write" },
                )));
            }
            let file = self.volume_path(&id);
            if loopdev::backs(Path::new(&a.device), &file) {
                return Ok(a.clone());
            }
        }
        // Intent first, with every check inside the same transaction.
        let inner = self.clone();
        let (vid, nid) = (id.clone(), node_id.clone());
        tokio::task::spawn_blocking(move || {
            inner.update(&vid, |r, count| {
                if r.volume.zone != node.zone {
                    return Err(Error::FailedPrecondition(format!(
                        "volume {vid} is in zone {} but node {nid} is in zone {}; it can only attach within its zone",
                        r.volume.zone, node.zone
                    )));
                }
                let others: Vec<&String> =
                    r.volume.attachments.iter().map(|a| &a.node).chain(&r.attaching).filter(|n| **n != nid).collect();
                if !r.volume.multi_attach
                    && let Some(other) = others.first()
                {
                    return Err(Error::FailedPrecondition(format!(
                        "volume {vid} is attached to node {other} and is not a multi-attach volume; unpublish it there first"
                    )));
                }
                let mine = r.volume.attachments.iter().any(|a| a.node == nid) || r.attaching.contains(&nid);
                if !mine {
                    let used = count(&nid)?;
                    if used >= node.attach_limit as usize {
                        return Err(Error::ResourceExhausted(format!(
                            "node {nid} already has {used} volumes attached, its limit; volume {vid} cannot attach there"
                        )));
                    }
                    r.attaching.push(nid.clone());
                }
                Ok(())
            })
        })
        .await
        .map_err(|e| Error::internal("attach task", e))??;
        self.crash_point("attach:after-intent");
        let device = loopdev::attach(&self.volume_path(&id)).await?;
        self.crash_point("attach:after-loop");
        let attachment = Attachment {
            node: node_id.clone(),
            device: device.to_string_lossy().into_owned(),
            read_only,
        };
        let done = attachment.clone();
        let id_for_log = id.clone();
        let inner = self.clone();
        tokio::task::spawn_blocking(move || {
            inner.update(&id, |r, _| {
                r.attaching.retain(|n| *n != done.node);
                r.volume.attachments.retain(|a| a.node != done.node);
                r.volume.attachments.push(done.clone());
                // All nodes of a local region share one loop device per volume.
                for a in &mut r.volume.attachments {
                    a.device = done.device.clone();
                }
                Ok(())
            })
        })
        .await
        .map_err(|e| Error::internal("attach task", e))??;
        info!(volume = %id_for_log, node = %node_id, device = %attachment.device, "volume attached");
        Ok(attachment)
    }

    /// Detaches the volume from `node`. With `refuse_in_use`, a loop device that is still
    /// mounted or bound somewhere is not cut from under its user (FAILED_PRECONDITION): the
    /// kernel would only defer the detach, the mount would outlive the volume, and once the
    /// volume is deleted no node call could prove the mount is the volume's and remove it.
    pub(super) async fn detach(self: Arc<Self>, id: String, node: String, refuse_in_use: bool) -> Result<()> {
        let record = match self.store.volume(&id)? {
            Some(r) => r,
            None => return Err(Error::NotFound(format!("volume {id} does not exist"))),
        };
        let attached_here =
            record.volume.attachments.iter().any(|a| a.node == node) || record.attaching.contains(&node);
        if !attached_here {
            return Ok(());
        }
        let remaining = record.volume.attachments.iter().filter(|a| a.node != node).count()
            + record.attaching.iter().filter(|n| **n != node).count();
        if remaining == 0 {
            let file = self.volume_path(&id);
            let devices = loopdev::find(&file)?;
            if refuse_in_use {
                for l in &devices {
                    if let Some(user) = loopdev::in_use(&l.device)? {
                        return Err(Error::FailedPrecondition(format!(
                            "volume {id} is still in use on node {node}: {} is {user}; NodeUnpublishVolume and NodeUnstageVolume it first",
                            l.device.display()
                        )));
                    }
                }
            }
            for l in devices {
                loopdev::detach(&l.device, &file).await?;
            }
        }
        let inner = self.clone();
        let nid = node.clone();
        tokio::task::spawn_blocking(move || {
            inner.update(&id, |r, _| {
                r.attaching.retain(|n| *n != nid);
                r.volume.attachments.retain(|a| a.node != nid);
                Ok(())
            })
        })
        .await
        .map_err(|e| Error::internal("detach task", e))??;
        info!(node = %node, "volume detached");
        Ok(())
    }

    pub(super) fn node(&self, id: &str) -> Result<Node> {
        self.store.node(id)?.ok_or_else(|| {
            Error::NotFound(format!(
                "node {id} is not known: no node service has registered under that id"
            ))
        })
    }
}
