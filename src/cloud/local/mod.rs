//! `local`: an embedded EBS look-alike. Volumes are sparse files under the data directory,
//! "attach" is a real loop device backed by the volume's file, snapshots are copies. Records
//! live in one redb file, written before each side effect so a crash can be finished or undone.

mod files;
mod import;
mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{info, warn};

use self::store::{SnapshotRecord, SnapshotState, Store, VolumeRecord, VolumeState};
use super::{
    Attachment, Cloud, Modification, Node, Page, Snapshot, SnapshotFilter, Tags, Volume, VolumeSource, VolumeSpec,
    new_id,
};
use crate::error::{Error, Result};
use crate::os::loopdev;

/// Attach limit of a local node that does not say otherwise: what EBS allows most Nitro
/// instances (28 shared slots less the root volume and one network interface).
pub const DEFAULT_ATTACH_LIMIT: u32 = 26;

pub struct LocalCloud {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    store: Store,
    zones: Vec<String>,
    /// Fault injection for the crash tests: the name of a step (`EBS_CSI_CRASH_AT`) at which
    /// the process announces itself and stalls, so a test can SIGKILL it exactly there.
    crash_at: Option<String>,
}

/// Paging tokens are the id to list from: anything else was not given out here.
fn check_token(token: Option<&str>, prefix: &str) -> Result<()> {
    match token {
        Some(t) if !super::is_id(prefix, t) => Err(Error::Aborted(format!(
            "starting_token {t:?} is not one this plugin gave out; list again from the start"
        ))),
        _ => Ok(()),
    }
}

/// The zones a local region has when none are given.
pub fn default_zones() -> Vec<String> {
    ["local-1a", "local-1b", "local-1c"]
        .iter()
        .map(|z| z.to_string())
        .collect()
}

impl Inner {
    fn crash_point(&self, step: &str) {
        if self.crash_at.as_deref() == Some(step) {
            let _ = std::fs::write(self.dir.join(format!("crash-point-{step}")), b"");
            std::thread::sleep(std::time::Duration::from_secs(600));
        }
    }

    fn volume_path(&self, id: &str) -> PathBuf {
        self.dir.join("volumes").join(format!("{id}.img"))
    }

    fn snapshot_path(&self, id: &str) -> PathBuf {
        self.dir.join("snapshots").join(format!("{id}.img"))
    }

    fn volume_record(&self, id: &str) -> Result<VolumeRecord> {
        match self.store.volume(id)? {
            Some(r) if r.state == VolumeState::Available => Ok(r),
            _ => Err(Error::NotFound(format!("volume {id} does not exist"))),
        }
    }

    /// The volume as callers see it: its record, plus whether its image is still there.
    fn present(&self, record: VolumeRecord) -> Volume {
        let mut v = record.volume;
        if !self.volume_path(&v.id).exists() {
            v.abnormal = Some(format!(
                "the image of volume {} is missing from {}",
                v.id,
                self.dir.display()
            ));
        }
        v
    }

    fn update(
        &self,
        id: &str,
        change: impl FnOnce(&mut VolumeRecord, &dyn Fn(&str) -> Result<usize>) -> Result<()>,
    ) -> Result<()> {
        self.store
            .update_volume(id, change)?
            .ok_or_else(|| Error::NotFound(format!("volume {id} does not exist")))
    }

    fn create_volume(&self, name: &str, spec: &VolumeSpec) -> Result<Volume> {
        if !self.zones.contains(&spec.zone) {
            return Err(Error::InvalidArgument(format!(
                "zone {:?} is not one of this region's zones ({})",
                spec.zone,
                self.zones.join(", ")
            )));
        }
        let source_image = match &spec.source {
            None => None,
            Some(VolumeSource::Snapshot(snap)) => match self.store.snapshot(snap)? {
                Some(r) if r.state == SnapshotState::Ready => Some(self.snapshot_path(snap)),
                Some(r) if r.state == SnapshotState::Creating => {
                    return Err(Error::FailedPrecondition(format!(
                        "snapshot {snap} is not ready yet; retry"
                    )));
                }
                _ => return Err(Error::NotFound(format!("source snapshot {snap} does not exist"))),
            },
            Some(VolumeSource::Volume(src)) => {
                let r = self
                    .volume_record(src)
                    .map_err(|_| Error::NotFound(format!("source volume {src} does not exist")))?;
                if r.volume.zone != spec.zone {
                    return Err(Error::InvalidArgument(format!(
                        "source volume {src} is in zone {}, not {}; a clone stays in its source's zone",
                        r.volume.zone, spec.zone
                    )));
                }
                Some(self.volume_path(src))
            }
        };
        let id = new_id("vol");
        let record = VolumeRecord {
            state: VolumeState::Creating,
            spec: spec.clone(),
            volume: Volume {
                id: id.clone(),
                name: name.to_owned(),
                size_gib: spec.size_gib,
                volume_type: spec.volume_type,
                iops: spec.iops,
                throughput: spec.throughput,
                encrypted: spec.encrypted,
                kms_key_id: spec.kms_key_id.clone(),
                zone: spec.zone.clone(),
                multi_attach: spec.multi_attach,
                source: spec.source.clone(),
                tags: spec.tags.clone(),
                attachments: Vec::new(),
                abnormal: None,
            },
            attaching: Vec::new(),
        };
        let record = match self.store.insert_volume(name, &record)? {
            None => record,
            Some(existing) if existing.spec != *spec => {
                return Err(Error::AlreadyExists(format!(
                    "volume name {name:?} is already used by {} with different parameters",
                    existing.volume.id
                )));
            }
            Some(existing) => match existing.state {
                VolumeState::Available => return Ok(self.present(existing)),
                VolumeState::Creating => existing, // a crashed or concurrent create: finish it
                VolumeState::Deleting => {
                    return Err(Error::Aborted(format!(
                        "volume {} named {name:?} is being deleted; retry",
                        existing.volume.id
                    )));
                }
            },
        };
        let id = record.volume.id.clone();
        self.crash_point("create-volume:after-intent");
        let path = self.volume_path(&id);
        let made = match source_image {
            None => files::create_sparse(&path, spec.size_gib),
            Some(src) => files::copy_image(&src, &path, spec.size_gib),
        };
        if let Err(e) = made {
            // Undo the intent so nothing is left that no call can find.
            let _ = self.store.remove_volume(&id);
            return Err(self.source_gone(&spec.source).unwrap_or(e));
        }
        self.crash_point("create-volume:after-image");
        self.update(&id, |r, _| {
            r.state = VolumeState::Available;
            Ok(())
        })?;
        info!(volume = %id, name, size_gib = spec.size_gib, "volume created");
        self.volume_record(&id).map(|r| self.present(r))
    }

    /// NOT_FOUND when a copy failed because its source was deleted meanwhile (a DeleteVolume or
    /// DeleteSnapshot racing the copy removes the image it was about to open); None when the
    /// source is still there, and the copy's own error stands.
    fn source_gone(&self, source: &Option<VolumeSource>) -> Option<Error> {
        let gone = match source.as_ref()? {
            VolumeSource::Volume(v) => {
                let available = matches!(self.store.volume(v), Ok(Some(r)) if r.state == VolumeState::Available);
                (!available).then(|| format!("volume {v}"))
            }
            VolumeSource::Snapshot(s) => {
                let ready = matches!(self.store.snapshot(s), Ok(Some(r)) if r.state == SnapshotState::Ready);
                (!ready).then(|| format!("snapshot {s}"))
            }
        }?;
        Some(Error::NotFound(format!(
            "source {gone} was deleted while it was being copied"
        )))
    }

    fn delete_volume(&self, id: &str) -> Result<()> {
        let Some(record) = self.store.volume(id)? else {
            return Err(Error::NotFound(format!("volume {id} does not exist")));
        };
        if let Some(node) = record
            .volume
            .attachments
            .iter()
            .map(|a| &a.node)
            .chain(&record.attaching)
            .next()
        {
            return Err(Error::FailedPrecondition(format!(
                "volume {id} is attached to node {node}; unpublish it from every node before deleting it"
            )));
        }
        self.update(id, |r, _| {
            r.state = VolumeState::Deleting;
            Ok(())
        })?;
        self.crash_point("delete-volume:after-intent");
        let path = self.volume_path(id);
        files::remove(&path.with_extension("tmp"))?;
        files::remove(&path)?;
        self.store.remove_volume(id)?;
        info!(volume = %id, "volume deleted");
        Ok(())
    }

    async fn attach(self: Arc<Self>, id: String, node_id: String, read_only: bool) -> Result<Attachment> {
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
    async fn detach(self: Arc<Self>, id: String, node: String, refuse_in_use: bool) -> Result<()> {
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

    fn node(&self, id: &str) -> Result<Node> {
        self.store.node(id)?.ok_or_else(|| {
            Error::NotFound(format!(
                "node {id} is not known: no node service has registered under that id"
            ))
        })
    }

    fn create_snapshot(&self, name: &str, source: &str, tags: &Tags) -> Result<Snapshot> {
        let volume = self.volume_record(source)?.volume;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let record = SnapshotRecord {
            state: SnapshotState::Creating,
            snapshot: Snapshot {
                id: new_id("snap"),
                name: name.to_owned(),
                source_volume: source.to_owned(),
                size_gib: volume.size_gib,
                created_at: (now.as_secs() as i64, now.subsec_nanos() as i32),
                ready: false,
                tags: tags.clone(),
            },
        };
        let record = match self.store.insert_snapshot(&record)? {
            None => record,
            Some(existing) if existing.snapshot.source_volume != source => {
                return Err(Error::AlreadyExists(format!(
                    "snapshot name {name:?} is already used by {} of volume {}",
                    existing.snapshot.id, existing.snapshot.source_volume
                )));
            }
            Some(existing) => match existing.state {
                SnapshotState::Ready => return Ok(existing.snapshot),
                SnapshotState::Creating => existing,
                SnapshotState::Deleting => {
                    return Err(Error::Aborted(format!(
                        "snapshot {} is being deleted; retry",
                        existing.snapshot.id
                    )));
                }
            },
        };
        let id = record.snapshot.id.clone();
        self.crash_point("snapshot:after-intent");
        if let Err(e) = files::copy_image(&self.volume_path(source), &self.snapshot_path(&id), 0) {
            let _ = self.store.remove_snapshot(&id);
            return Err(self
                .source_gone(&Some(VolumeSource::Volume(source.to_owned())))
                .unwrap_or(e));
        }
        self.crash_point("snapshot:after-copy");
        let done = self
            .store
            .set_snapshot_state(&id, SnapshotState::Ready)?
            .ok_or_else(|| Error::Aborted(format!("snapshot {id} vanished while it was being made; retry")))?;
        info!(volume = %source, snapshot = %id, "snapshot created");
        Ok(done.snapshot)
    }

    fn delete_snapshot(&self, id: &str) -> Result<()> {
        if self.store.set_snapshot_state(id, SnapshotState::Deleting)?.is_none() {
            return Err(Error::NotFound(format!("snapshot {id} does not exist")));
        }
        let path = self.snapshot_path(id);
        files::remove(&path.with_extension("tmp"))?;
        files::remove(&path)?;
        self.store.remove_snapshot(id)
    }

    /// Finishes or undoes what a crash interrupted, and brings loop devices in line with the
    /// records: every attachment has its loop device, and no loop device of ours lacks one.
    async fn reconcile(self: Arc<Self>) -> Result<()> {
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
            if l.backing_file.parent() != Some(volumes_dir.as_path()) {
                continue;
            }
            let id = l
                .backing_file
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
                loopdev::detach(&l.device, &l.backing_file).await?;
            }
        }
        Ok(())
    }
}

impl LocalCloud {
    /// Opens the local region in `dir`, creating it when new.
    pub fn open(dir: &Path, zones: Vec<String>) -> Result<Self> {
        for sub in ["volumes", "snapshots"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| Error::internal(format!("cannot create {}", d.display()), e))?;
        }
        let dir = dir
            .canonicalize()
            .map_err(|e| Error::internal(format!("cannot resolve {}", dir.display()), e))?;
        let store = Store::open(&dir.join("ebs.redb"))?;
        let zones = if zones.is_empty() { default_zones() } else { zones };
        let crash_at = std::env::var("EBS_CSI_CRASH_AT").ok();
        Ok(LocalCloud {
            inner: Arc::new(Inner {
                dir,
                store,
                zones,
                crash_at,
            }),
        })
    }

    /// Records a node so the controller can attach volumes to it (a node service does this on
    /// start, as an EC2 instance simply exists).
    pub fn register_node(&self, node: &Node) -> Result<()> {
        if !self.inner.zones.contains(&node.zone) {
            return Err(Error::InvalidArgument(format!(
                "zone {:?} is not one of this region's zones ({})",
                node.zone,
                self.inner.zones.join(", ")
            )));
        }
        self.inner.store.put_node(node)
    }

    /// See [`Inner::reconcile`]; run by the controller before it serves.
    pub async fn reconcile(&self) -> Result<()> {
        self.inner.clone().reconcile().await
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The image file of a volume (the node service proves devices against it).
    pub fn volume_path(&self, id: &str) -> PathBuf {
        self.inner.volume_path(id)
    }

    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(&Inner) -> Result<T> + Send + 'static) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| Error::internal("local backend task", e))?
    }
}

#[tonic::async_trait]
impl Cloud for LocalCloud {
    fn zones(&self) -> Vec<String> {
        self.inner.zones.clone()
    }

    fn zone_ids(&self) -> Vec<String> {
        (1..=self.inner.zones.len()).map(|n| format!("lcl1-az{n}")).collect()
    }

    async fn probe(&self) -> Result<()> {
        self.blocking(|i| {
            i.store.node("")?;
            if !i.dir.join("volumes").is_dir() {
                return Err(Error::Unavailable(format!(
                    "{} is missing its volumes directory",
                    i.dir.display()
                )));
            }
            Ok(())
        })
        .await
    }

    async fn create_volume(&self, name: &str, spec: &VolumeSpec) -> Result<Volume> {
        let (name, spec) = (name.to_owned(), spec.clone());
        self.blocking(move |i| i.create_volume(&name, &spec)).await
    }

    async fn delete_volume(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.blocking(move |i| i.delete_volume(&id)).await
    }

    async fn volume(&self, id: &str) -> Result<Volume> {
        let id = id.to_owned();
        self.blocking(move |i| i.volume_record(&id).map(|r| i.present(r))).await
    }

    async fn volume_by_name(&self, name: &str) -> Result<Option<Volume>> {
        let name = name.to_owned();
        self.blocking(move |i| match i.store.volume_id_by_name(&name)? {
            Some(id) => match i.store.volume(&id)? {
                Some(r) if r.state == VolumeState::Available => Ok(Some(i.present(r))),
                _ => Ok(None),
            },
            None => Ok(None),
        })
        .await
    }

    async fn list_volumes(&self, start: Option<&str>, max: usize) -> Result<Page<Volume>> {
        check_token(start, "vol")?;
        let start = start.map(str::to_owned);
        self.blocking(move |i| {
            let (records, next) = i.store.volumes_page(start.as_deref(), max)?;
            Ok(Page {
                items: records.into_iter().map(|r| i.present(r)).collect(),
                next,
            })
        })
        .await
    }

    async fn attach(&self, id: &str, node: &str, read_only: bool) -> Result<Attachment> {
        self.inner
            .clone()
            .attach(id.to_owned(), node.to_owned(), read_only)
            .await
    }

    fn keeps_read_only(&self) -> bool {
        true
    }

    async fn detach(&self, id: &str, node: &str) -> Result<()> {
        self.inner.clone().detach(id.to_owned(), node.to_owned(), true).await
    }

    async fn resize(&self, id: &str, size_gib: u64) -> Result<Volume> {
        let vid = id.to_owned();
        let volume = self
            .blocking(move |i| {
                let r = i.volume_record(&vid)?;
                if size_gib > r.volume.size_gib {
                    files::grow(&i.volume_path(&vid), size_gib)?;
                    i.update(&vid, |rec, _| {
                        rec.volume.size_gib = size_gib;
                        Ok(())
                    })?;
                }
                i.volume_record(&vid).map(|r| i.present(r))
            })
            .await?;
        // An attached volume's loop device learns its new size, as an EBS device does.
        for l in loopdev::find(&self.inner.volume_path(id))? {
            loopdev::refresh_capacity(&l.device).await?;
        }
        Ok(volume)
    }

    async fn modify(&self, id: &str, change: &Modification) -> Result<Volume> {
        let (id, change) = (id.to_owned(), change.clone());
        self.blocking(move |i| {
            i.volume_record(&id)?;
            i.update(&id, |r, _| {
                let v = &mut r.volume;
                if let Some(t) = change.volume_type {
                    v.volume_type = t;
                }
                if change.iops.is_some() {
                    v.iops = change.iops;
                }
                if change.throughput.is_some() {
                    v.throughput = change.throughput;
                }
                v.tags.extend(change.tags.clone());
                Ok(())
            })?;
            i.volume_record(&id).map(|r| i.present(r))
        })
        .await
    }

    async fn create_snapshot(&self, name: &str, source: &str, tags: &Tags) -> Result<Snapshot> {
        let (name, source, tags) = (name.to_owned(), source.to_owned(), tags.clone());
        self.blocking(move |i| i.create_snapshot(&name, &source, &tags)).await
    }

    async fn delete_snapshot(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.blocking(move |i| i.delete_snapshot(&id)).await
    }

    async fn snapshot(&self, id: &str) -> Result<Snapshot> {
        let id = id.to_owned();
        self.blocking(move |i| match i.store.snapshot(&id)? {
            Some(r) if r.state != SnapshotState::Deleting => Ok(r.snapshot),
            _ => Err(Error::NotFound(format!("snapshot {id} does not exist"))),
        })
        .await
    }

    async fn snapshot_by_name(&self, name: &str) -> Result<Option<Snapshot>> {
        let name = name.to_owned();
        self.blocking(move |i| match i.store.snapshot_id_by_name(&name)? {
            Some(id) => Ok(i
                .store
                .snapshot(&id)?
                .filter(|r| r.state == SnapshotState::Ready)
                .map(|r| r.snapshot)),
            None => Ok(None),
        })
        .await
    }

    async fn list_snapshots(&self, filter: &SnapshotFilter, start: Option<&str>, max: usize) -> Result<Page<Snapshot>> {
        check_token(start, "snap")?;
        let (filter, start) = (filter.clone(), start.map(str::to_owned));
        self.blocking(move |i| {
            let keep = |r: &SnapshotRecord| {
                r.state == SnapshotState::Ready
                    && filter.snapshot_id.as_ref().is_none_or(|s| *s == r.snapshot.id)
                    && filter
                        .source_volume
                        .as_ref()
                        .is_none_or(|v| *v == r.snapshot.source_volume)
            };
            let (records, next) = i.store.snapshots_page(start.as_deref(), keep, max)?;
            Ok(Page {
                items: records.into_iter().map(|r| r.snapshot).collect(),
                next,
            })
        })
        .await
    }

    async fn node(&self, id: &str) -> Result<Node> {
        let id = id.to_owned();
        self.blocking(move |i| i.node(&id)).await
    }

    async fn capacity(&self, zone: Option<&str>) -> Result<Option<u64>> {
        if let Some(z) = zone
            && !self.inner.zones.iter().any(|known| known == z)
        {
            return Ok(Some(0));
        }
        let dir = self.inner.dir.clone();
        self.blocking(move |_| files::free_bytes(&dir).map(Some)).await
    }
}
