//! `local`: an embedded EBS look-alike. Volumes are sparse files under the data directory,
//! "attach" is a real loop device backed by the volume's file, snapshots are copies. Records
//! live in one redb file, written before each side effect so a crash can be finished or undone.

mod attach;
mod files;
mod import;
mod metrics;
mod reconcile;
mod snapshots;
mod store;
mod volumes;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{info, warn};

use self::store::{SnapshotRecord, SnapshotState, Store, VolumeRecord, VolumeState};
use super::{
    Attachment, Cloud, Modification, Node, Page, Snapshot, SnapshotFilter, Tags, Volume, VolumeSource, VolumeSpec,
    new_id,
};
use crate::ebs::{SnapshotRequest, now_ms, rfc3339};
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

    async fn create_snapshot(&self, name: &str, source: &str, req: &SnapshotRequest) -> Result<Snapshot> {
        let (name, source, tags) = (name.to_owned(), source.to_owned(), req.tags.clone());
        self.blocking(move |i| i.create_snapshot(&name, &source, &tags)).await
    }

    async fn settle_snapshot(&self, snap: Snapshot, req: &SnapshotRequest) -> Result<Snapshot> {
        let req = req.clone();
        self.blocking(move |i| i.settle_snapshot(&snap.id, &req)).await
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
