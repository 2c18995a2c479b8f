//! Block devices by number: what a path is backed by, and the kernel's name for a device
//! number. The node's device proof starts here, so it reads only what the kernel says (stat and
//! /sys/dev/block), never what a path or a mount's source string claims.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What `stat` says a path is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// A block device node (a raw block volume bound at a publish target): its device number.
    Device(u64),
    /// A file or directory on the filesystem of device `st_dev`.
    Filesystem(u64),
}

/// What `path` is backed by; None when it cannot be read (it does not exist, say).
pub fn backing(path: &Path) -> Option<Backing> {
    let meta = std::fs::metadata(path).ok()?;
    Some(if meta.file_type().is_block_device() {
        Backing::Device(meta.rdev())
    } else {
        Backing::Filesystem(meta.dev())
    })
}

/// The device number of a block device node, if `device` is one.
pub fn number(device: &Path) -> Option<u64> {
    match backing(device)? {
        Backing::Device(rdev) => Some(rdev),
        Backing::Filesystem(_) => None,
    }
}

/// The kernel's name of block device `dev` (`loop3`, `nvme1n1`, `xvdf`), from the
/// `/sys/dev/block/MAJ:MIN` link. Filesystems without a block device (tmpfs, overlay, proc)
/// have none.
pub fn kernel_name(dev: u64) -> Option<String> {
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    let link = std::fs::read_link(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    Some(link.file_name()?.to_str()?.to_owned())
}

/// `/dev/<kernel name>` of block device `dev`.
pub fn node_path(dev: u64) -> Option<PathBuf> {
    kernel_name(dev).map(|name| Path::new("/dev").join(name))
}

/// A block device's I/O counters since it appeared (`/sys/block/NAME/stat`; the kernel's
/// Documentation/block/stat.rst gives the fields).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoStats {
    pub read_ios: u64,
    pub read_sectors: u64,
    pub read_ms: u64,
    pub write_ios: u64,
    pub write_sectors: u64,
    pub write_ms: u64,
    pub in_flight: u64,
}

/// The counters of the block device with kernel name `name` (`loop3`), if it exists.
pub fn io_stats(name: &str) -> Option<IoStats> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return None;
    }
    parse_io_stats(&std::fs::read_to_string(Path::new("/sys/block").join(name).join("stat")).ok()?)
}

fn parse_io_stats(text: &str) -> Option<IoStats> {
    let f: Vec<u64> = text.split_whitespace().map(|w| w.parse().ok()).collect::<Option<_>>()?;
    Some(IoStats {
        read_ios: *f.first()?,
        read_sectors: *f.get(2)?,
        read_ms: *f.get(3)?,
        write_ios: *f.get(4)?,
        write_sectors: *f.get(6)?,
        write_ms: *f.get(7)?,
        in_flight: *f.get(8)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tmpfs_has_no_block_device() {
        // /dev/shm is a tmpfs on every Linux host that runs these tests.
        let Some(Backing::Filesystem(dev)) = backing(Path::new("/dev/shm")) else {
            panic!("/dev/shm is not a directory");
        };
        assert_eq!(kernel_name(dev), None);
    }

    #[test]
    fn a_missing_path_has_no_backing() {
        assert_eq!(backing(Path::new("/nonexistent/ebs-csi")), None);
    }
}
