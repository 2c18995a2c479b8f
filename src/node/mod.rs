//! The CSI Node service: find the attached device (with proof), format it if blank, mount it at
//! the staging path, bind it into pods; and back. Every host change goes through `crate::os`.

pub mod device;
pub mod proof;

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::{info, warn};

use self::device::DeviceLocator;
use crate::capability::check_capability;
use crate::csi::node_server::Node;
use crate::csi::node_service_capability::{Rpc, rpc::Type as RpcType};
use crate::csi::volume_capability::{AccessType, access_mode::Mode};
use crate::csi::*;
use crate::ebs::{self, FsType};
use crate::error::{Error, Result};
use crate::inflight::InFlight;
use crate::os::{blockdev, format, mount, resize, stats};
use crate::params::FSTYPE_KEY;
use crate::rpc::{require, traced};
use crate::topology::{OS_KEY, WELL_KNOWN_ZONE_KEY, ZONE_KEY};

/// Who this node is, as NodeGetInfo reports it.
#[derive(Clone, Debug)]
pub struct NodeIdentity {
    pub id: String,
    pub zone: String,
    pub attach_limit: u32,
}

pub struct NodeService {
    me: NodeIdentity,
    locator: Arc<dyn DeviceLocator>,
    inflight: InFlight,
}

/// The longest path and path component Linux takes (PATH_MAX less its NUL, NAME_MAX).
const PATH_MAX: usize = 4095;
const NAME_MAX: usize = 255;

/// Why `value` cannot name a place on this host, if it cannot: it must be absolute, without
/// `..` or NUL, and within the kernel's length limits. Never resolved against a working dir.
fn path_problem(value: &str) -> Option<&'static str> {
    let path = Path::new(value);
    if !path.is_absolute() {
        Some("must be an absolute path")
    } else if path.components().any(|c| c == Component::ParentDir) {
        Some("must not contain '..'")
    } else if value.contains('\0') {
        Some("must not contain a NUL byte")
    } else if value.len() > PATH_MAX {
        Some("is longer than the 4095 bytes a Linux path may have")
    } else if path.iter().any(|c| c.len() > NAME_MAX) {
        Some("has a component longer than the 255 bytes Linux allows")
    } else {
        None
    }
}

/// A path the CO asks the node to make or use: required, and well-formed.
fn checked_path(value: &str, field: &str) -> Result<PathBuf> {
    require(value, field)?;
    match path_problem(value) {
        Some(problem) => Err(Error::InvalidArgument(format!("{field} {value:?} {problem}"))),
        None => Ok(PathBuf::from(value)),
    }
}

/// A path where the CO says the volume already is (unstage, unpublish, stats, expand, health):
/// required; a path that cannot exist cannot hold the volume either, so a bad shape is
/// NOT_FOUND, and such a path is never resolved against anything.
fn volume_path(value: &str, field: &str, id: &str) -> Result<PathBuf> {
    require(value, field)?;
    match path_problem(value) {
        Some(problem) => Err(Error::NotFound(format!(
            "volume {id} is not at {field} {value:?}: it {problem}"
        ))),
        None => Ok(PathBuf::from(value)),
    }
}

fn capability(cap: &Option<VolumeCapability>) -> Result<&VolumeCapability> {
    let cap = cap
        .as_ref()
        .ok_or_else(|| Error::InvalidArgument("volume_capability is required".into()))?;
    check_capability(cap)?;
    Ok(cap)
}

/// Access modes that allow one publication on the node at a time.
fn single_publish_mode(cap: &VolumeCapability) -> bool {
    matches!(
        cap.access_mode.as_ref().map(|m| m.mode()),
        Some(Mode::SingleNodeSingleWriter | Mode::SingleNodeReaderOnly)
    )
}

fn read_only_mode(cap: &VolumeCapability) -> bool {
    matches!(
        cap.access_mode.as_ref().map(|m| m.mode()),
        Some(Mode::SingleNodeReaderOnly | Mode::MultiNodeReaderOnly)
    )
}

/// The filesystem a mount capability asks for: its own fs_type, else the StorageClass's, else ext4.
fn fs_type(cap: &VolumeCapability, context: &HashMap<String, String>) -> String {
    match &cap.access_type {
        Some(AccessType::Mount(m)) if !m.fs_type.is_empty() => m.fs_type.clone(),
        _ => context
            .get(FSTYPE_KEY)
            .filter(|f| !f.is_empty())
            .cloned()
            .unwrap_or_else(|| "ext4".into()),
    }
}

/// The mkfs options the controller put in the volume context, checked as the controller checks
/// StorageClass parameters: the context is the caller's to send, and a value mkfs refuses must
/// be the caller's INVALID_ARGUMENT, not a failed mkfs.
fn mkfs_options(context: &HashMap<String, String>, fs: FsType) -> Result<format::MkfsOptions> {
    let opts = parse_mkfs_options(context)?;
    ebs::MkfsOptions {
        block_size: opts.block_size,
        inode_size: opts.inode_size,
        bytes_per_inode: opts.bytes_per_inode,
        number_of_inodes: opts.number_of_inodes,
        ext4_bigalloc: opts.ext4_bigalloc,
        ext4_cluster_size: opts.ext4_cluster_size,
    }
    .validate_for(fs)
    .map_err(|e| Error::InvalidArgument(format!("volume context: {e}")))?;
    // mke2fs makes blocks larger than a memory page when told to, but the kernel cannot mount
    // them: the volume would be formatted and never usable.
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|p| u32::try_from(p).ok());
    if fs != FsType::Xfs
        && let (Some(block), Some(page)) = (opts.block_size, page)
        && block > page
    {
        return Err(Error::InvalidArgument(format!(
            "volume context blockSize={block}: {fs} blocks larger than this node's {page}-byte memory pages cannot be mounted"
        )));
    }
    Ok(opts)
}

fn parse_mkfs_options(context: &HashMap<String, String>) -> Result<format::MkfsOptions> {
    fn number<T: std::str::FromStr>(ctx: &HashMap<String, String>, key: &str) -> Result<Option<T>> {
        ctx.get(key)
            .map(|v| {
                v.parse()
                    .map_err(|_| Error::InvalidArgument(format!("volume context {key}={v:?} is not a number")))
            })
            .transpose()
    }
    Ok(format::MkfsOptions {
        block_size: number(context, "blockSize")?,
        inode_size: number(context, "inodeSize")?,
        bytes_per_inode: number(context, "bytesPerInode")?,
        number_of_inodes: number(context, "numberOfInodes")?,
        ext4_bigalloc: context.get("ext4BigAlloc").is_some_and(|v| v == "true"),
        ext4_cluster_size: number(context, "ext4ClusterSize")?,
    })
}

/// A failure to make or remove something at a path the CO gave: the path's fault (a file where
/// a directory must be, a read-only place) is the caller's to fix, not an internal error.
fn path_error(what: &str, path: &Path, e: &std::io::Error) -> Error {
    use nix::errno::Errno;
    let message = format!("cannot {what} {}: {e}", path.display());
    match e.raw_os_error().map(Errno::from_raw) {
        // ENOENT and EINVAL: a place where no directory can be made (inside /proc or /sys);
        // EISDIR: a directory where a raw block target (a file) must be.
        Some(
            Errno::ENOTDIR
            | Errno::EEXIST
            | Errno::ENAMETOOLONG
            | Errno::ELOOP
            | Errno::ENOENT
            | Errno::EINVAL
            | Errno::EISDIR,
        ) => Error::InvalidArgument(message),
        Some(Errno::EROFS | Errno::EACCES | Errno::EPERM) => Error::FailedPrecondition(message),
        Some(Errno::ENOSPC | Errno::EDQUOT | Errno::EMLINK) => Error::ResourceExhausted(message),
        _ => Error::Internal(message),
    }
}

fn create_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| path_error("create", path, &e))
}

/// Removes what publish made at a target: an empty directory, or the empty file a raw device
/// was bound on. Anything else at the path is not the driver's and is left alone (a non-empty
/// directory, a file with data, a device node): the volume is not there, which is what the
/// caller wants.
fn remove_target(path: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(path_error("inspect", path, &e)),
    };
    let removed = if meta.is_dir() {
        std::fs::remove_dir(path)
    } else if meta.is_file() && meta.len() == 0 {
        std::fs::remove_file(path)
    } else {
        warn!(target = %path.display(), "not an empty directory or file; left in place");
        return Ok(());
    };
    match removed {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {
            warn!(target = %path.display(), "directory is not empty; left in place");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(path_error("remove", path, &e)),
    }
}

/// Whether a filesystem on `device` is mounted anywhere.
fn mounted_elsewhere(device: &Path) -> Result<bool> {
    let Some(dev) = blockdev::number(device) else {
        return Ok(false);
    };
    Ok(mount::mounts()?.iter().any(|m| m.dev == dev))
}

/// Unmounts the volume's mounts stacked at `path`, each proven first. A mount that is still
/// there after its unmount succeeded ends the call instead of looping (this loop runs on an
/// async worker: spinning here once starved every call of the connection).
fn unmount_all(locator: &dyn DeviceLocator, id: &str, path: &Path) -> Result<()> {
    let mut last = None;
    while let Some(p) = proof::at(locator, id, path)? {
        if last == Some(p.mount.id) {
            return Err(Error::Internal(format!(
                "{} at {} is still mounted after it was unmounted",
                p.mount.source,
                path.display()
            )));
        }
        last = Some(p.mount.id);
        mount::unmount(path)?;
    }
    Ok(())
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl NodeService {
    pub fn new(me: NodeIdentity, locator: Arc<dyn DeviceLocator>) -> Self {
        NodeService {
            me,
            locator,
            inflight: InFlight::default(),
        }
    }

    /// A mount on the backend's store, or on a directory above it, would hide the store from
    /// this driver (and the controller sharing it): every image would seem to vanish.
    fn not_over_store(&self, path: &Path, field: &str) -> Result<()> {
        let Some(store) = self.locator.store() else {
            return Ok(());
        };
        let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if store.starts_with(path) || store.starts_with(&resolved) {
            return Err(Error::InvalidArgument(format!(
                "{field} {} would cover the driver's store at {}; volumes are never mounted there",
                path.display(),
                store.display()
            )));
        }
        Ok(())
    }

    async fn stage(&self, req: NodeStageVolumeRequest) -> Result<NodeStageVolumeResponse> {
        let id = require(&req.volume_id, "volume_id")?;
        let staging = checked_path(&req.staging_target_path, "staging_target_path")?;
        let cap = capability(&req.volume_capability)?;
        let Some(AccessType::Mount(m)) = &cap.access_type else {
            // Block volumes are used straight from the device at publish time.
            return Ok(NodeStageVolumeResponse {});
        };
        let fs = fs_type(cap, &req.volume_context);
        // The capability's type is checked with the capability; one from the volume context
        // only here.
        let fs_kind: FsType = fs
            .parse()
            .map_err(|e| Error::InvalidArgument(format!("volume context: {e}")))?;
        let _guard = self.inflight.start(format!("volume/{id}"), &format!("volume {id}"))?;
        let device = self.locator.locate(id, &req.publish_context).await?;

        match proof::at(self.locator.as_ref(), id, &staging) {
            Ok(None) => {}
            Ok(Some(p)) if !p.block && p.device == device && p.mount.fs_type == fs => {
                return Ok(NodeStageVolumeResponse {});
            }
            Ok(Some(p)) => {
                return Err(Error::AlreadyExists(format!(
                    "{} already has volume {id} mounted as {}; this request asks for {fs}",
                    staging.display(),
                    p.mount.fs_type
                )));
            }
            Err(_) => {
                let other = mount::mount_at(&staging)?;
                return Err(Error::AlreadyExists(format!(
                    "{} already has {} mounted, which is not volume {id} ({}); it is left alone",
                    staging.display(),
                    other
                        .map(|m| format!("{} ({})", m.source, m.fs_type))
                        .unwrap_or_default(),
                    device.display()
                )));
            }
        }
        self.not_over_store(&staging, "staging_target_path")?;
        create_dir(&staging)?;
        let formatted = match format::filesystem_of(&device).await? {
            None => {
                info!(volume = %id, device = %device.display(), fs, "formatting a blank device");
                format::mkfs(&fs, &device, &mkfs_options(&req.volume_context, fs_kind)?).await?;
                true
            }
            Some(found) if found == fs => false,
            Some(found) => {
                return Err(Error::FailedPrecondition(format!(
                    "volume {id} ({}) already holds {found}, not {fs}; it is never reformatted",
                    device.display()
                )));
            }
        };
        // An existing filesystem may be smaller than its device (restored from a smaller
        // snapshot, or grown while detached): fill the device. ext* grows before it is mounted
        // (no privilege needed), xfs only once mounted. A fresh one already fills it.
        let device_size = if formatted { 0 } else { resize::device_size(&device)? };
        let is_ext = fs.starts_with("ext");
        // Not while it is mounted elsewhere (staged at another path too): e2fsck refuses a
        // mounted filesystem, and that mount is where it grows (NodeExpandVolume).
        if !formatted
            && is_ext
            && !mounted_elsewhere(&device)?
            && resize::filesystem_size(&device, &fs, None).await? < device_size
        {
            info!(volume = %id, device_size, "growing the filesystem to its device before mounting");
            resize::grow_unmounted_ext(&device).await?;
        }
        mount::mount_device(&device, &staging, &fs, &m.mount_flags)?;
        if !formatted && !is_ext {
            let grown = async {
                if resize::filesystem_size(&device, &fs, Some(&staging)).await? < device_size {
                    info!(volume = %id, device_size, "growing the filesystem to its device");
                    resize::grow(&device, &fs, &staging).await?;
                }
                Ok(())
            };
            // A failed stage leaves nothing mounted: a retry that found the mount would
            // answer success without growing.
            if let Err(e) = grown.await {
                let _ = mount::unmount(&staging);
                return Err(e);
            }
        }
        info!(volume = %id, device = %device.display(), staging = %staging.display(), fs, "staged");
        Ok(NodeStageVolumeResponse {})
    }

    async fn unstage(&self, req: NodeUnstageVolumeRequest) -> Result<NodeUnstageVolumeResponse> {
        let id = require(&req.volume_id, "volume_id")?;
        let staging = volume_path(&req.staging_target_path, "staging_target_path", id)?;
        let _guard = self.inflight.start(format!("volume/{id}"), &format!("volume {id}"))?;
        // Stacked mounts (a retried stage after a crash) come off one by one, only at this path,
        // and each only once it is proven to be this volume's.
        unmount_all(self.locator.as_ref(), id, &staging)?;
        info!(volume = %id, staging = %staging.display(), "unstaged");
        Ok(NodeUnstageVolumeResponse {})
    }

    async fn publish(&self, req: NodePublishVolumeRequest) -> Result<NodePublishVolumeResponse> {
        let id = require(&req.volume_id, "volume_id")?;
        let target = checked_path(&req.target_path, "target_path")?;
        let staging = checked_path(&req.staging_target_path, "staging_target_path")?;
        let cap = capability(&req.volume_capability)?;
        let read_only = req.readonly || read_only_mode(cap);
        let _guard = self
            .inflight
            .start(format!("target/{}", target.display()), &format!("volume {id}"))?;

        let block = matches!(cap.access_type, Some(AccessType::Block(_)));
        // A block volume is bound straight from its (proven) device; a filesystem from its
        // staging mount, once that is proven to be the volume's.
        let (source, dev, staged) = if block {
            let device = self.locator.locate(id, &req.publish_context).await?;
            let dev = blockdev::number(&device)
                .ok_or_else(|| Error::FailedPrecondition(format!("{} is not a block device", device.display())))?;
            (device, dev, None)
        } else {
            let staged = proof::at(self.locator.as_ref(), id, &staging)?.ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "volume {id} is not staged at {}; NodeStageVolume first",
                    staging.display()
                ))
            })?;
            // The volume's raw device bound there (a block publish target) is no filesystem
            // to bind into the pod.
            if staged.block {
                return Err(Error::FailedPrecondition(format!(
                    "volume {id} is not staged at {}: its raw device is bound there, not a filesystem; NodeStageVolume first",
                    staging.display()
                )));
            }
            (staging.clone(), staged.dev, Some(staged.mount))
        };

        if let Some(existing) = mount::mount_at(&target)? {
            let same_source = match proof::at(self.locator.as_ref(), id, &target) {
                Ok(Some(p)) => {
                    p.dev == dev && p.block == block && staged.as_ref().is_none_or(|s| s.root == p.mount.root)
                }
                _ => false,
            };
            if same_source && existing.read_only() == read_only {
                return Ok(NodePublishVolumeResponse {});
            }
            return Err(Error::AlreadyExists(format!(
                "{} is already published from {}{}; not compatible with this request",
                target.display(),
                existing.source,
                if existing.read_only() { " read-only" } else { "" }
            )));
        }
        if single_publish_mode(cap)
            && let Some(other) = proof::used_elsewhere(dev, &[&staging, &target])?
        {
            return Err(Error::FailedPrecondition(format!(
                "volume {id} is already published at {} and its access mode allows one publication on a node",
                other.display()
            )));
        }
        self.not_over_store(&target, "target_path")?;
        if block {
            if let Some(parent) = target.parent() {
                create_dir(parent)?;
            }
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&target)
                .map_err(|e| path_error("create", &target, &e))?;
        } else {
            create_dir(&target)?;
        }
        mount::bind(&source, &target, read_only)?;
        info!(volume = %id, target = %target.display(), read_only, block, "published");
        Ok(NodePublishVolumeResponse {})
    }

    async fn unpublish(&self, req: NodeUnpublishVolumeRequest) -> Result<NodeUnpublishVolumeResponse> {
        let id = require(&req.volume_id, "volume_id")?;
        let target = volume_path(&req.target_path, "target_path", id)?;
        let _guard = self
            .inflight
            .start(format!("target/{}", target.display()), &format!("volume {id}"))?;
        unmount_all(self.locator.as_ref(), id, &target)?;
        remove_target(&target)?;
        info!(volume = %id, target = %target.display(), "unpublished");
        Ok(NodeUnpublishVolumeResponse {})
    }

    /// The volume's mount at `path`, proven; NOT_FOUND when the volume is not there.
    fn proven_at(&self, id: &str, path: &Path) -> Result<proof::Proof> {
        proof::at(self.locator.as_ref(), id, path)?
            .ok_or_else(|| Error::NotFound(format!("volume {id} is not mounted at {}", path.display())))
    }

    async fn stats(&self, req: NodeGetVolumeStatsRequest) -> Result<NodeGetVolumeStatsResponse> {
        let id = require(&req.volume_id, "volume_id")?;
        let path = volume_path(&req.volume_path, "volume_path", id)?;
        let found = self.proven_at(id, &path)?;
        use volume_usage::Unit;
        if found.block {
            let size = resize::device_size(&found.device)?;
            return Ok(NodeGetVolumeStatsResponse {
                usage: vec![VolumeUsage {
                    total: as_i64(size),
                    unit: Unit::Bytes as i32,
                    ..Default::default()
                }],
            });
        }
        let s = stats::fs_stats(&path)?;
        Ok(NodeGetVolumeStatsResponse {
            usage: vec![
                VolumeUsage {
                    available: as_i64(s.available_bytes),
                    total: as_i64(s.total_bytes),
                    used: as_i64(s.used_bytes),
                    unit: Unit::Bytes as i32,
                },
                VolumeUsage {
                    available: as_i64(s.free_inodes),
                    total: as_i64(s.total_inodes),
                    used: as_i64(s.used_inodes),
                    unit: Unit::Inodes as i32,
                },
            ],
        })
    }

    async fn health(&self, req: NodeGetVolumeHealthRequest) -> Result<NodeGetVolumeHealthResponse> {
        use volume_health::VolumeHealthEntry;
        let id = require(&req.volume_id, "volume_id")?;
        let mut entries = Vec::new();
        for (field, value) in [
            ("volume_publish_path", &req.volume_publish_path),
            ("staging_target_path", &req.staging_target_path),
        ] {
            if value.is_empty() {
                continue;
            }
            let path = volume_path(value, field, id)?;
            match proof::at(self.locator.as_ref(), id, &path)? {
                None => entries.push(VolumeHealthEntry {
                    status: VolumeHealthErrorType::Inaccessible as i32,
                    reason: "NotMounted".into(),
                    message: format!("volume {id} is not mounted at {}", path.display()),
                }),
                Some(p) if p.mount.super_options.iter().any(|o| o == "ro") && !p.mount.read_only() => {
                    entries.push(VolumeHealthEntry {
                        status: VolumeHealthErrorType::Degraded as i32,
                        reason: "ReadOnlyFilesystem".into(),
                        message: format!(
                            "the filesystem of volume {id} at {} went read-only (an I/O or filesystem error?)",
                            path.display()
                        ),
                    })
                }
                Some(_) => {}
            }
        }
        Ok(NodeGetVolumeHealthResponse {
            volume_health: Some(VolumeHealth {
                volume_id: id.to_owned(),
                health_statuses: entries,
            }),
        })
    }

    async fn expand(&self, req: NodeExpandVolumeRequest) -> Result<NodeExpandVolumeResponse> {
        let id = require(&req.volume_id, "volume_id")?;
        let path = volume_path(&req.volume_path, "volume_path", id)?;
        let required = req.capacity_range.map(|r| r.required_bytes).unwrap_or(0);
        let _guard = self.inflight.start(format!("volume/{id}"), &format!("volume {id}"))?;
        let found = self.proven_at(id, &path)?;
        if !found.block {
            // A read-only publication cannot be grown through (xfs_growfs fails with EROFS);
            // the filesystem grows just as well through a writable mount of it.
            let at = if found.mount.read_only() {
                mount::mounts()?
                    .into_iter()
                    .find(|m| m.dev == found.dev && !m.read_only())
                    .map(|m| m.target)
                    .ok_or_else(|| {
                        Error::FailedPrecondition(format!(
                            "volume {id} is mounted only read-only, so its filesystem cannot grow now; it grows when the volume is next staged read-write"
                        ))
                    })?
            } else {
                path.clone()
            };
            resize::grow(&found.device, &found.mount.fs_type, &at).await?;
        }
        let size = resize::device_size(&found.device)?;
        if as_i64(size) < required {
            return Err(Error::FailedPrecondition(format!(
                "volume {id}'s device is {size} bytes, less than the {required} asked for; expand it on the controller first"
            )));
        }
        info!(volume = %id, size, "expanded on the node");
        Ok(NodeExpandVolumeResponse {
            capacity_bytes: as_i64(size),
        })
    }

    fn info(&self) -> NodeGetInfoResponse {
        let segments = HashMap::from([
            (ZONE_KEY.to_owned(), self.me.zone.clone()),
            (WELL_KNOWN_ZONE_KEY.to_owned(), self.me.zone.clone()),
            (OS_KEY.to_owned(), "linux".to_owned()),
        ]);
        NodeGetInfoResponse {
            node_id: self.me.id.clone(),
            max_volumes_per_node: i64::from(self.me.attach_limit),
            accessible_topology: Some(Topology { segments }),
        }
    }
}

const CAPABILITIES: [RpcType; 5] = [
    RpcType::StageUnstageVolume,
    RpcType::ExpandVolume,
    RpcType::GetVolumeStats,
    RpcType::GetVolumeHealth,
    RpcType::SingleNodeMultiWriter,
];

#[tonic::async_trait]
impl Node for NodeService {
    async fn node_stage_volume(
        &self,
        r: Request<NodeStageVolumeRequest>,
    ) -> Result<Response<NodeStageVolumeResponse>, Status> {
        let r = r.into_inner();
        let id = r.volume_id.clone();
        traced("NodeStageVolume", &id, self.stage(r)).await
    }

    async fn node_unstage_volume(
        &self,
        r: Request<NodeUnstageVolumeRequest>,
    ) -> Result<Response<NodeUnstageVolumeResponse>, Status> {
        let r = r.into_inner();
        let id = r.volume_id.clone();
        traced("NodeUnstageVolume", &id, self.unstage(r)).await
    }

    async fn node_publish_volume(
        &self,
        r: Request<NodePublishVolumeRequest>,
    ) -> Result<Response<NodePublishVolumeResponse>, Status> {
        let r = r.into_inner();
        let id = r.volume_id.clone();
        traced("NodePublishVolume", &id, self.publish(r)).await
    }

    async fn node_unpublish_volume(
        &self,
        r: Request<NodeUnpublishVolumeRequest>,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        let r = r.into_inner();
        let id = r.volume_id.clone();
        traced("NodeUnpublishVolume", &id, self.unpublish(r)).await
    }

    async fn node_get_volume_stats(
        &self,
        r: Request<NodeGetVolumeStatsRequest>,
    ) -> Result<Response<NodeGetVolumeStatsResponse>, Status> {
        let r = r.into_inner();
        let id = r.volume_id.clone();
        traced("NodeGetVolumeStats", &id, self.stats(r)).await
    }

    async fn node_get_volume_health(
        &self,
        r: Request<NodeGetVolumeHealthRequest>,
    ) -> Result<Response<NodeGetVolumeHealthResponse>, Status> {
        let r = r.into_inner();
        let id = r.volume_id.clone();
        traced("NodeGetVolumeHealth", &id, self.health(r)).await
    }

    async fn node_get_storage_health(
        &self,
        _: Request<NodeGetStorageHealthRequest>,
    ) -> Result<Response<NodeGetStorageHealthResponse>, Status> {
        Err(
            Error::Unimplemented("NodeGetStorageHealth is not offered (no GET_STORAGE_HEALTH capability)".into())
                .into(),
        )
    }

    async fn node_expand_volume(
        &self,
        r: Request<NodeExpandVolumeRequest>,
    ) -> Result<Response<NodeExpandVolumeResponse>, Status> {
        let r = r.into_inner();
        let id = r.volume_id.clone();
        traced("NodeExpandVolume", &id, self.expand(r)).await
    }

    async fn node_get_capabilities(
        &self,
        _: Request<NodeGetCapabilitiesRequest>,
    ) -> Result<Response<NodeGetCapabilitiesResponse>, Status> {
        let capabilities = CAPABILITIES
            .iter()
            .map(|t| NodeServiceCapability {
                r#type: Some(node_service_capability::Type::Rpc(Rpc { r#type: *t as i32 })),
            })
            .collect();
        Ok(Response::new(NodeGetCapabilitiesResponse { capabilities }))
    }

    async fn node_get_info(&self, _: Request<NodeGetInfoRequest>) -> Result<Response<NodeGetInfoResponse>, Status> {
        Ok(Response::new(self.info()))
    }
}
