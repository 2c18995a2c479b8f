//! Sizes of devices and filesystems, and growing a mounted filesystem to fill its device.

use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use super::mount::{errno_error, io_error};
use crate::error::{Error, Result};

// BLKGETSIZE64 from linux/fs.h: the size of a block device in bytes.
nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);

/// The size in bytes of a block device, or of a regular file (an image).
pub fn device_size(device: &Path) -> Result<u64> {
    let file = std::fs::File::open(device).map_err(|e| io_error(format_args!("open {}", device.display()), &e))?;
    let meta = file
        .metadata()
        .map_err(|e| io_error(format_args!("stat {}", device.display()), &e))?;
    let kind = meta.file_type();
    if kind.is_file() {
        return Ok(meta.len());
    }
    if !kind.is_block_device() {
        return Err(Error::InvalidArgument(format!(
            "{} is neither a block device nor a file",
            device.display()
        )));
    }
    let mut size = 0u64;
    // SAFETY: the fd stays open for the call and BLKGETSIZE64 writes one u64 into `size`.
    unsafe { blkgetsize64(file.as_raw_fd(), &mut size) }
        .map_err(|e| errno_error(format_args!("BLKGETSIZE64 on {}", device.display()), e))?;
    Ok(size)
}

/// The size in bytes of the filesystem on `device`, as the filesystem itself records it. xfs is
/// asked through its mount point when it has one (xfs_info reads a mounted filesystem's
/// geometry from the kernel); unmounted, through the device.
pub async fn filesystem_size(device: &Path, fs: &str, mount_path: Option<&Path>) -> Result<u64> {
    let size = match fs {
        "ext2" | "ext3" | "ext4" => {
            require(device)?;
            let out = super::run("dumpe2fs", ["-h".as_ref(), device.as_os_str()]).await?;
            parse_dumpe2fs(&out)
        }
        "xfs" => {
            let out = match mount_path {
                // `xfs_growfs -n` prints the mounted geometry (as xfs_info does) from the path
                // itself; xfs_info is a shell script that looks the path up with findmnt,
                // which fails for a mount point whose name has a newline.
                Some(target) => {
                    require(target)?;
                    super::run("xfs_growfs", ["-n".as_ref(), target.as_os_str()]).await?
                }
                None => {
                    require(device)?;
                    super::run("xfs_info", [device]).await?
                }
            };
            parse_xfs_info(&out)
        }
        other => return Err(unknown_fs(other)),
    };
    size.ok_or_else(|| {
        Error::Internal(format!(
            "cannot read the size of the {fs} filesystem on {}: unexpected tool output",
            device.display()
        ))
    })
}

/// Grows the mounted filesystem on `device` (mounted at `mount_path`) to fill the device. Growing
/// a filesystem that already fills it succeeds and does nothing.
pub async fn grow(device: &Path, fs: &str, mount_path: &Path) -> Result<()> {
    match fs {
        "ext2" | "ext3" | "ext4" => {
            require(device)?;
            // Given a mounted device, resize2fs grows it online through the kernel.
            super::run("resize2fs", [device]).await.map_err(|e| match e {
                // The kernel wants CAP_SYS_RESOURCE for an online resize; root without it is
                // told only "Permission denied".
                // Not a fault of the driver's nor of the request: this host cannot grow a
                // mounted ext4 (CSI's code for "cannot expand while in use" is
                // FAILED_PRECONDITION); it grows at the next stage instead.
                Error::Internal(m) if m.contains("Permission denied to resize") => Error::FailedPrecondition(format!(
                    "{m} (online ext4 resizing needs CAP_SYS_RESOURCE; without it the filesystem grows when the volume is next staged)"
                )),
                e => e,
            })?;
        }
        "xfs" => {
            require(mount_path)?;
            // xfs grows only online, through its mount point; -d: the data section, to the
            // device's size.
            super::run("xfs_growfs", ["-d".as_ref(), mount_path.as_os_str()]).await?;
        }
        other => return Err(unknown_fs(other)),
    }
    Ok(())
}

/// Grows an ext2/3/4 filesystem that is not mounted: checked first (resize2fs insists), then
/// grown by writing the device directly, which needs no CAP_SYS_RESOURCE, unlike an online grow.
pub async fn grow_unmounted_ext(device: &Path) -> Result<()> {
    require(device)?;
    // e2fsck: 0 clean, 1 errors fixed; anything else leaves the filesystem alone.
    super::run_accepting("e2fsck", ["-f".as_ref(), "-p".as_ref(), device.as_os_str()], &[0, 1]).await?;
    super::run("resize2fs", [device]).await?;
    Ok(())
}

fn unknown_fs(fs: &str) -> Error {
    Error::InvalidArgument(format!(
        "filesystem type {fs:?} is not supported; use ext2, ext3, ext4 or xfs"
    ))
}

/// A missing path is NotFound here rather than a tool's Internal error.
fn require(path: &Path) -> Result<()> {
    std::fs::symlink_metadata(path)
        .map(drop)
        .map_err(|e| io_error(format_args!("stat {}", path.display()), &e))
}

/// "Block count:" × "Block size:" from `dumpe2fs -h`.
fn parse_dumpe2fs(out: &str) -> Option<u64> {
    let field = |name: &str| {
        out.lines().find_map(|l| {
            let (key, value) = l.split_once(':')?;
            (key.trim() == name).then(|| value.trim().parse::<u64>().ok())?
        })
    };
    field("Block count")?.checked_mul(field("Block size")?)
}

/// `bsize` × `blocks` of the data section of `xfs_info`:
/// ```text
/// meta-data=/dev/loop0             isize=512    agcount=4, agsize=20480 blks
/// data     =                       bsize=4096   blocks=81920, imaxpct=25
///          =                       sunit=0      swidth=0 blks
/// naming   =version 2              bsize=4096   ascii-ci=0, ftype=1
/// ```
/// A section starts at a line not beginning with a space and continues on indented lines; the
/// same keys recur in other sections, so only the data section's count.
fn parse_xfs_info(out: &str) -> Option<u64> {
    let mut section = "";
    let (mut bsize, mut blocks) = (None, None);
    for line in out.lines() {
        if !line.starts_with(char::is_whitespace) {
            section = line.split('=').next().unwrap_or_default().trim();
        }
        if section != "data" {
            continue;
        }
        for token in line.split(|c: char| c.is_whitespace() || c == ',') {
            match token.split_once('=') {
                Some(("bsize", v)) => bsize = bsize.or(v.parse::<u64>().ok()),
                Some(("blocks", v)) => blocks = blocks.or(v.parse::<u64>().ok()),
                _ => {}
            }
        }
    }
    bsize?.checked_mul(blocks?)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::os::format::{MkfsOptions, filesystem_of, mkfs};
    use crate::os::mount::scratch::Scratch;
    use crate::os::mount::{bind, mount_at, mount_device, unmount};
    use crate::os::stats::fs_stats;

    const XFS_INFO: &str = "\
meta-data=/dev/loop0             isize=512    agcount=4, agsize=20480 blks
         =                       sectsz=512   attr=2, projid32bit=1
         =                       crc=1        finobt=1, sparse=1, rmapbt=0
         =                       reflink=1    bigtime=1 inobtcount=1 nrext64=0
data     =                       bsize=4096   blocks=81920, imaxpct=25
         =                       sunit=0      swidth=0 blks
naming   =version 2              bsize=4096   ascii-ci=0, ftype=1
log      =internal log           bsize=4096   blocks=16384, version=2
         =                       sectsz=512   sunit=0 blks, lazy-count=1
realtime =none                   extsz=4096   blocks=0, rtextents=0
";

    #[test]
    fn xfs_info_data_section() {
        assert_eq!(parse_xfs_info(XFS_INFO), Some(4096 * 81920));
        // The log's blocks must not stand in for a missing data count.
        let no_data_blocks = XFS_INFO.replace("blocks=81920,", "");
        assert_eq!(parse_xfs_info(&no_data_blocks), None);
        // Keys may move to a continuation line of the data section.
        let split = "data     =                       bsize=1024\n         =      blocks=10 imaxpct=25\nlog      =internal bsize=4096 blocks=7\n";
        assert_eq!(parse_xfs_info(split), Some(10_240));
        assert_eq!(parse_xfs_info(""), None);
        assert_eq!(parse_xfs_info("data = bsize=x blocks=5"), None);
    }

    #[test]
    fn dumpe2fs_header() {
        let out = "Filesystem volume name:   <none>\nInode count:              16384\nBlock count:              65536\nReserved block count:     3276\nBlock size:               1024\nReserved GDT blocks:      255\n";
        assert_eq!(parse_dumpe2fs(out), Some(65536 * 1024));
        assert_eq!(parse_dumpe2fs("Block count: 10\n"), None);
        assert_eq!(
            parse_dumpe2fs("Block count: 18446744073709551615\nBlock size: 4096\n"),
            None,
            "overflow"
        );
    }

    #[tokio::test]
    async fn sizes_of_missing_things_and_unknown_filesystems() {
        let s = Scratch::without_device(12345);
        assert_eq!(device_size(&s.image).unwrap(), 12345);
        let missing = s.dir.path().join("missing");
        assert!(matches!(device_size(&missing), Err(Error::NotFound(_))));
        assert!(matches!(device_size(s.dir.path()), Err(Error::InvalidArgument(_))));
        assert!(matches!(
            filesystem_size(&missing, "ext4", None).await,
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            filesystem_size(&s.image, "btrfs", None).await,
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            grow(&s.image, "vfat", s.dir.path()).await,
            Err(Error::InvalidArgument(_))
        ));
        // Not a filesystem at all: the tool's failure comes back as Internal.
        assert!(matches!(
            filesystem_size(&s.image, "ext4", None).await,
            Err(Error::Internal(_))
        ));
    }

    #[tokio::test]
    async fn ext4_stage_publish_grow_online() {
        stage_publish_grow("ext4", 64 << 20, 192 << 20).await;
    }

    #[tokio::test]
    async fn xfs_stage_publish_grow_online() {
        stage_publish_grow("xfs", 320 << 20, 640 << 20).await;
    }

    /// Whether this process may resize ext4 online (bit 24 of the effective capabilities).
    fn has_cap_sys_resource() -> bool {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:")).unwrap().trim();
        u64::from_str_radix(hex, 16).unwrap() & (1 << 24) != 0
    }

    /// The node's whole path on a real loop device: format a blank device, stage, publish
    /// read-only, grow the volume and the filesystem online, tear down.
    async fn stage_publish_grow(fs: &str, size: u64, grown: u64) {
        let mut s = Scratch::new(size).await;
        let device = s.device().to_path_buf();
        let stage = s.dir("stage");
        let publish = s.dir("publish");

        assert_eq!(device_size(&device).unwrap(), size);
        assert_eq!(filesystem_of(&device).await.unwrap(), None);
        mkfs(fs, &device, &MkfsOptions::default()).await.unwrap();
        assert_eq!(filesystem_of(&device).await.unwrap().as_deref(), Some(fs));
        let before_mount = filesystem_size(&device, fs, None).await.unwrap();
        assert!(
            before_mount <= size && before_mount > size / 2,
            "{before_mount} of {size}"
        );

        s.will_mount(&stage);
        mount_device(&device, &stage, fs, &[]).unwrap();
        let m = mount_at(&stage).unwrap().expect("staged");
        assert_eq!(
            (m.fs_type.as_str(), m.source.as_str()),
            (fs, &*device.to_string_lossy())
        );
        std::fs::File::create(stage.join("data"))
            .and_then(|mut f| f.write_all(&[7u8; 1 << 20]).and_then(|()| f.sync_all()))
            .unwrap();

        s.will_mount(&publish);
        bind(&stage, &publish, true).unwrap();
        assert_eq!(std::fs::read(publish.join("data")).unwrap().len(), 1 << 20);
        let err = std::fs::write(publish.join("new"), b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS));

        let small = filesystem_size(&device, fs, Some(&stage)).await.unwrap();
        assert_eq!(small, before_mount);
        let stats = fs_stats(&publish).unwrap();
        assert!(stats.total_bytes <= small && stats.total_bytes > small / 2, "{stats:?}");
        assert!(stats.used_bytes >= 1 << 20, "the 1 MiB file counts: {stats:?}");

        s.grow_image(grown).await;
        assert_eq!(device_size(&device).unwrap(), grown);
        if fs != "xfs" && !has_cap_sys_resource() {
            // ext4 online resizing needs CAP_SYS_RESOURCE; without it the failure must say so
            // and change nothing.
            let err = grow(&device, fs, &stage).await.unwrap_err();
            assert!(
                matches!(&err, Error::FailedPrecondition(m) if m.contains("CAP_SYS_RESOURCE")),
                "{err:?}"
            );
            assert_eq!(filesystem_size(&device, fs, Some(&stage)).await.unwrap(), small);
            eprintln!("no CAP_SYS_RESOURCE: {fs} online growth not exercised");
            unmount(&publish).unwrap();
            unmount(&stage).unwrap();
            return;
        }
        grow(&device, fs, &stage).await.unwrap();
        let large = filesystem_size(&device, fs, Some(&stage)).await.unwrap();
        assert!(large > small + (grown - size) / 2, "{small} → {large}");
        assert!(large <= grown);
        let grown_stats = fs_stats(&publish).unwrap();
        assert!(
            grown_stats.total_bytes > stats.total_bytes + (grown - size) / 2,
            "{stats:?} → {grown_stats:?}"
        );
        grow(&device, fs, &stage).await.expect("growing again does nothing");
        assert_eq!(filesystem_size(&device, fs, Some(&stage)).await.unwrap(), large);
        assert_eq!(std::fs::read(stage.join("data")).unwrap(), vec![7u8; 1 << 20]);

        unmount(&publish).unwrap();
        unmount(&stage).unwrap();
        assert_eq!(mount_at(&stage).unwrap(), None);
        unmount(&stage).expect("unmounting twice is fine");
        assert_eq!(filesystem_size(&device, fs, None).await.unwrap(), large, "unmounted");
    }
}
