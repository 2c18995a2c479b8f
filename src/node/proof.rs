//! Proof that what is at a path belongs to a volume. Kubernetes hands the node paths, and a path
//! can hold anything: the host's root, a tmpfs, another volume. Before a node call unmounts,
//! measures, resizes or reports on what it finds at a path, it proves here that the filesystem
//! mounted there lives on the volume's device, or that the device node bound there is the
//! volume's; anything else is NOT_FOUND and nothing is done.

use std::path::{Path, PathBuf};

use super::device::DeviceLocator;
use crate::error::{Error, Result};
use crate::os::blockdev::{self, Backing};
use crate::os::mount::{self, Mount};

/// A mount at a path, proven to be a volume's.
#[derive(Debug)]
pub struct Proof {
    /// The volume's device, `/dev/<kernel name>`.
    pub device: PathBuf,
    /// Its device number.
    pub dev: u64,
    /// The topmost mount at the path.
    pub mount: Mount,
    /// A raw block device node is bound at the path (rather than a filesystem mounted there).
    pub block: bool,
}

/// The mount at `path` if it is volume `id`'s; `Ok(None)` when nothing is mounted there;
/// NotFound when something else is.
pub fn at(locator: &dyn DeviceLocator, id: &str, path: &Path) -> Result<Option<Proof>> {
    let Some(mount) = mount::mount_at(path)? else {
        return Ok(None);
    };
    // A bound device node says which device it is; a filesystem mount says what it lives on.
    let (dev, block) = match blockdev::backing(path) {
        Some(Backing::Device(rdev)) => (rdev, true),
        _ => (mount.dev, false),
    };
    match blockdev::node_path(dev) {
        Some(device) if locator.owns(id, &device) => Ok(Some(Proof {
            device,
            dev,
            mount,
            block,
        })),
        _ => Err(Error::NotFound(format!(
            "volume {id} is not at {}: {} from {} is mounted there, not the volume's device; nothing was done",
            path.display(),
            mount.fs_type,
            mount.source
        ))),
    }
}

/// Where else the device `dev` is in use as a volume: a mount of its filesystem, or its device
/// node bound somewhere, at a path other than `except`.
pub fn used_elsewhere(dev: u64, except: &[&Path]) -> Result<Option<PathBuf>> {
    let except: Vec<PathBuf> = except
        .iter()
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()))
        .collect();
    for m in mount::mounts()? {
        if except.contains(&m.target) {
            continue;
        }
        // Device nodes live on devtmpfs: a bind of one shows a root such as `/loop3`.
        let bound_node =
            m.fs_type == "devtmpfs" && m.root != Path::new("/") && blockdev::number(&m.target) == Some(dev);
        if m.dev == dev || bound_node {
            return Ok(Some(m.target));
        }
    }
    Ok(None)
}
