//! What is on a device (blkid) and making a filesystem on it (mkfs.*).

use std::ffi::OsString;
use std::path::Path;

use super::mount::io_error;
use crate::error::{Error, Result};

/// What blkid finds on `device`: a filesystem type ("ext4", "xfs", …), "partition table:<type>"
/// for a partitioned disk, or None when the device is blank. Anything but None means "do not
/// format".
pub async fn filesystem_of(device: &Path) -> Result<Option<String>> {
    // blkid exits 2, silently, for a path it cannot open too; so open it first, lest a missing
    // device look blank.
    check_device(device)?;
    let out = super::run(
        "blkid",
        [
            // -p probes the device itself rather than trusting the blkid cache.
            "-p".as_ref(),
            "-o".as_ref(),
            "export".as_ref(),
            "-s".as_ref(),
            "TYPE".as_ref(),
            "-s".as_ref(),
            "PTTYPE".as_ref(),
            device.as_os_str(),
        ],
    )
    .await;
    match out {
        Ok(out) => parse_blkid(&out).map(Some).ok_or_else(|| {
            Error::Internal(format!(
                "blkid found a signature on {} but named no filesystem or partition table; refusing to treat it as blank: {}",
                device.display(),
                out.trim()
            ))
        }),
        Err(e) if nothing_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// blkid's "no signature" answer: exit status 2 with nothing on stderr. `run` keeps no exit
/// code, only its message, "… failed (exit status: 2): <stderr>".
fn nothing_found(err: &Error) -> bool {
    matches!(err, Error::Internal(m) if m.ends_with("failed (exit status: 2): "))
}

/// `KEY=value` lines of `blkid -o export`; a filesystem type wins over a partition table.
fn parse_blkid(out: &str) -> Option<String> {
    let value = |key: &str| {
        out.lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, v)| *k == key && !v.is_empty())
            .map(|(_, v)| v.to_owned())
    };
    value("TYPE").or_else(|| value("PTTYPE").map(|t| format!("partition table:{t}")))
}

/// The device must exist and be readable, and be a block device (or, for tests and images, a
/// regular file).
fn check_device(device: &Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let file = std::fs::File::open(device).map_err(|e| io_error(format_args!("open {}", device.display()), &e))?;
    let kind = file
        .metadata()
        .map_err(|e| io_error(format_args!("stat {}", device.display()), &e))?
        .file_type();
    if kind.is_block_device() || kind.is_file() {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{} is not a block device",
            device.display()
        )))
    }
}

/// Filesystem creation options, from the StorageClass parameters of the same names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MkfsOptions {
    pub block_size: Option<u32>,
    pub inode_size: Option<u32>,
    pub bytes_per_inode: Option<u32>,
    pub number_of_inodes: Option<u64>,
    pub ext4_bigalloc: bool,
    pub ext4_cluster_size: Option<u32>,
    /// xfs without bigtime, inobtcount and reflink (`--legacy-xfs`), for kernels before 5.10.
    pub legacy_xfs: bool,
}

/// The mkfs program and arguments for `fs` on `device`. Options the filesystem cannot take are
/// refused rather than dropped, so a StorageClass never silently gets a different filesystem.
pub fn mkfs_args(fs: &str, device: &Path, opts: &MkfsOptions) -> Result<(String, Vec<OsString>)> {
    let unsupported = |option: &str| {
        Err(Error::InvalidArgument(format!(
            "parameter {option:?} is not supported for filesystem {fs}"
        )))
    };
    let mut args: Vec<OsString> = Vec::new();
    match fs {
        "ext2" | "ext3" | "ext4" => {
            if fs != "ext4" {
                if opts.ext4_bigalloc {
                    return unsupported("ext4BigAlloc");
                }
                if opts.ext4_cluster_size.is_some() {
                    return unsupported("ext4ClusterSize");
                }
            }
            if opts.ext4_cluster_size.is_some() && !opts.ext4_bigalloc {
                return Err(Error::InvalidArgument(
                    "parameter \"ext4ClusterSize\" needs \"ext4BigAlloc\"".into(),
                ));
            }
            // -F: mke2fs asks for confirmation on a whole disk, and nobody is there to answer.
            // -m0: no blocks reserved for root; a volume's capacity is its user's (as the Go
            // driver formats).
            args.push("-F".into());
            args.push("-m0".into());
            add(&mut args, "-b", "blockSize", opts.block_size.map(u64::from), number)?;
            add(&mut args, "-I", "inodeSize", opts.inode_size.map(u64::from), number)?;
            add(
                &mut args,
                "-i",
                "bytesPerInode",
                opts.bytes_per_inode.map(u64::from),
                number,
            )?;
            add(&mut args, "-N", "numberOfInodes", opts.number_of_inodes, number)?;
            if opts.ext4_bigalloc {
                args.extend(["-O".into(), "bigalloc".into()]);
            }
            add(
                &mut args,
                "-C",
                "ext4ClusterSize",
                opts.ext4_cluster_size.map(u64::from),
                number,
            )?;
        }
        "xfs" => {
            if opts.bytes_per_inode.is_some() {
                return unsupported("bytesPerInode");
            }
            if opts.number_of_inodes.is_some() {
                return unsupported("numberOfInodes");
            }
            if opts.ext4_bigalloc {
                return unsupported("ext4BigAlloc");
            }
            if opts.ext4_cluster_size.is_some() {
                return unsupported("ext4ClusterSize");
            }
            // -f: overwrite whatever signature is there; the caller decided the device is blank.
            args.push("-f".into());
            add(&mut args, "-b", "blockSize", opts.block_size.map(u64::from), xfs_size)?;
            add(&mut args, "-i", "inodeSize", opts.inode_size.map(u64::from), xfs_size)?;
            if opts.legacy_xfs {
                args.push("-m".into());
                args.push("bigtime=0,inobtcount=0,reflink=0".into());
            }
        }
        other => {
            return Err(Error::InvalidArgument(format!(
                "filesystem type {other:?} is not supported; use ext2, ext3, ext4 or xfs"
            )));
        }
    }
    args.push(device.as_os_str().to_owned());
    Ok((format!("mkfs.{fs}"), args))
}

fn number(v: u64) -> String {
    v.to_string()
}

/// xfs takes sizes as suboptions: `-b size=4096`.
fn xfs_size(v: u64) -> String {
    format!("size={v}")
}

/// Adds `flag value` when the option is set; zero is refused, as no mkfs means anything by it.
fn add(
    args: &mut Vec<OsString>,
    flag: &str,
    option: &str,
    value: Option<u64>,
    render: fn(u64) -> String,
) -> Result<()> {
    match value {
        None => Ok(()),
        Some(0) => Err(Error::InvalidArgument(format!("parameter {option:?} must be positive"))),
        Some(v) => {
            args.extend([flag.into(), render(v).into()]);
            Ok(())
        }
    }
}

/// Makes a filesystem on `device`, overwriting whatever is there: call it only after
/// `filesystem_of` said None.
pub async fn mkfs(fs: &str, device: &Path, opts: &MkfsOptions) -> Result<()> {
    let (program, args) = mkfs_args(fs, device, opts)?;
    check_device(device)?;
    match super::run(&program, &args).await {
        Ok(_) => Ok(()),
        // Options within mkfs's fixed limits can still not fit this device (more inodes than
        // it has room for, a cluster too large for its journal): with options given, mkfs
        // refusing to run is theirs to fix, and they are the request's.
        Err(Error::Internal(m)) if *opts != MkfsOptions::default() && m.contains(" failed (") => Err(
            Error::InvalidArgument(format!("{m} (the filesystem options do not fit this device)")),
        ),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Seek, SeekFrom, Write};

    use super::*;

    #[test]
    fn legacy_xfs_turns_off_what_old_kernels_cannot_mount() {
        let opts = MkfsOptions {
            legacy_xfs: true,
            ..Default::default()
        };
        let (_, args) = mkfs_args("xfs", Path::new("/dev/xvdb"), &opts).unwrap();
        let args: Vec<_> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args, ["-f", "-m", "bigtime=0,inobtcount=0,reflink=0", "/dev/xvdb"]);
    }
    use crate::os::mount::scratch::Scratch;

    fn args(fs: &str, opts: &MkfsOptions) -> Result<(String, Vec<String>)> {
        let (program, args) = mkfs_args(fs, Path::new("/dev/xvdb"), opts)?;
        Ok((program, args.iter().map(|a| a.to_string_lossy().into_owned()).collect()))
    }

    #[test]
    fn mkfs_arguments() {
        let all_ext = MkfsOptions {
            block_size: Some(4096),
            inode_size: Some(512),
            bytes_per_inode: Some(16384),
            number_of_inodes: Some(5_000_000_000),
            ..Default::default()
        };
        let table: Vec<(&str, MkfsOptions, &str, Vec<&str>)> = vec![
            (
                "ext4",
                MkfsOptions::default(),
                "mkfs.ext4",
                vec!["-F", "-m0", "/dev/xvdb"],
            ),
            (
                "ext2",
                MkfsOptions::default(),
                "mkfs.ext2",
                vec!["-F", "-m0", "/dev/xvdb"],
            ),
            (
                "ext3",
                all_ext.clone(),
                "mkfs.ext3",
                vec![
                    "-F",
                    "-m0",
                    "-b",
                    "4096",
                    "-I",
                    "512",
                    "-i",
                    "16384",
                    "-N",
                    "5000000000",
                    "/dev/xvdb",
                ],
            ),
            (
                "ext4",
                MkfsOptions {
                    ext4_bigalloc: true,
                    ..Default::default()
                },
                "mkfs.ext4",
                vec!["-F", "-m0", "-O", "bigalloc", "/dev/xvdb"],
            ),
            (
                "ext4",
                MkfsOptions {
                    block_size: Some(1024),
                    ext4_bigalloc: true,
                    ext4_cluster_size: Some(65536),
                    ..Default::default()
                },
                "mkfs.ext4",
                vec!["-F", "-m0", "-b", "1024", "-O", "bigalloc", "-C", "65536", "/dev/xvdb"],
            ),
            ("xfs", MkfsOptions::default(), "mkfs.xfs", vec!["-f", "/dev/xvdb"]),
            (
                "xfs",
                MkfsOptions {
                    block_size: Some(4096),
                    inode_size: Some(1024),
                    ..Default::default()
                },
                "mkfs.xfs",
                vec!["-f", "-b", "size=4096", "-i", "size=1024", "/dev/xvdb"],
            ),
        ];
        for (fs, opts, program, expected) in table {
            let (got_program, got) = args(fs, &opts).unwrap();
            assert_eq!(got_program, program);
            assert_eq!(got, expected, "{fs} {opts:?}");
        }
    }

    #[test]
    fn mkfs_refusals_name_the_option() {
        let bigalloc = MkfsOptions {
            ext4_bigalloc: true,
            ..Default::default()
        };
        let cluster = MkfsOptions {
            ext4_cluster_size: Some(65536),
            ..Default::default()
        };
        let table: Vec<(&str, MkfsOptions, &str)> = vec![
            ("ext3", bigalloc.clone(), "ext4BigAlloc"),
            ("ext2", bigalloc.clone(), "ext4BigAlloc"),
            ("xfs", bigalloc, "ext4BigAlloc"),
            ("ext4", cluster.clone(), "ext4BigAlloc"),
            ("ext3", cluster.clone(), "ext4ClusterSize"),
            ("xfs", cluster, "ext4ClusterSize"),
            (
                "xfs",
                MkfsOptions {
                    bytes_per_inode: Some(4096),
                    ..Default::default()
                },
                "bytesPerInode",
            ),
            (
                "xfs",
                MkfsOptions {
                    number_of_inodes: Some(100),
                    ..Default::default()
                },
                "numberOfInodes",
            ),
            (
                "ext4",
                MkfsOptions {
                    block_size: Some(0),
                    ..Default::default()
                },
                "blockSize",
            ),
            (
                "xfs",
                MkfsOptions {
                    inode_size: Some(0),
                    ..Default::default()
                },
                "inodeSize",
            ),
            ("btrfs", MkfsOptions::default(), "btrfs"),
            ("", MkfsOptions::default(), "\"\""),
            ("ext4 ", MkfsOptions::default(), "ext4 "),
            ("EXT4", MkfsOptions::default(), "EXT4"),
        ];
        for (fs, opts, named) in table {
            match args(fs, &opts) {
                Err(Error::InvalidArgument(m)) => assert!(m.contains(named), "{m:?} should name {named}"),
                other => panic!("{fs} {opts:?}: expected InvalidArgument, got {other:?}"),
            }
        }
    }

    #[test]
    fn blkid_output_and_exit_codes() {
        assert_eq!(parse_blkid("DEVNAME=/dev/loop0\nTYPE=ext4\n").as_deref(), Some("ext4"));
        assert_eq!(
            parse_blkid("DEVNAME=/dev/loop0\nPTTYPE=gpt\n").as_deref(),
            Some("partition table:gpt")
        );
        assert_eq!(parse_blkid("DEVNAME=x\nPTTYPE=dos\nTYPE=xfs\n").as_deref(), Some("xfs"));
        assert_eq!(parse_blkid("DEVNAME=/dev/loop0\n"), None);

        let blank = Error::Internal("blkid -p -o export /dev/loop0 failed (exit status: 2): ".into());
        assert!(nothing_found(&blank));
        let noisy = Error::Internal("blkid -p /dev/loop0 failed (exit status: 2): error: /dev/loop0: EIO".into());
        assert!(!nothing_found(&noisy), "an error blkid printed is not a blank device");
        let ambiguous = Error::Internal("blkid -p /dev/loop0 failed (exit status: 8): ".into());
        assert!(!nothing_found(&ambiguous));
        assert!(!nothing_found(&Error::NotFound("failed (exit status: 2): ".into())));
    }

    #[tokio::test]
    async fn missing_or_odd_devices_are_not_blank() {
        let s = Scratch::without_device(0);
        let missing = s.dir.path().join("missing");
        assert!(matches!(filesystem_of(&missing).await, Err(Error::NotFound(_))));
        assert!(matches!(
            mkfs("ext4", &missing, &MkfsOptions::default()).await,
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            filesystem_of(s.dir.path()).await,
            Err(Error::InvalidArgument(_))
        ));
    }

    #[tokio::test]
    async fn a_partition_table_is_not_blank() {
        let s = Scratch::without_device(64 << 20);
        assert_eq!(filesystem_of(&s.image).await.unwrap(), None);
        // A minimal MBR: one Linux partition at sector 2048, and the boot signature.
        let mut f = std::fs::OpenOptions::new().write(true).open(&s.image).unwrap();
        let mut entry = [0u8; 16];
        entry[4] = 0x83;
        entry[8..12].copy_from_slice(&2048u32.to_le_bytes());
        entry[12..16].copy_from_slice(&20480u32.to_le_bytes());
        f.seek(SeekFrom::Start(446)).unwrap();
        f.write_all(&entry).unwrap();
        f.seek(SeekFrom::Start(510)).unwrap();
        f.write_all(&[0x55, 0xAA]).unwrap();
        drop(f);
        assert_eq!(
            filesystem_of(&s.image).await.unwrap().as_deref(),
            Some("partition table:dos")
        );
    }

    #[tokio::test]
    async fn mkfs_ext4_and_xfs_on_a_loop_device() {
        let s = Scratch::new(320 << 20).await;
        assert_eq!(filesystem_of(s.device()).await.unwrap(), None, "a new image is blank");
        mkfs("ext4", s.device(), &MkfsOptions::default()).await.unwrap();
        assert_eq!(filesystem_of(s.device()).await.unwrap().as_deref(), Some("ext4"));
        mkfs("xfs", s.device(), &MkfsOptions::default()).await.unwrap();
        assert_eq!(filesystem_of(s.device()).await.unwrap().as_deref(), Some("xfs"));
    }

    /// The options reach the filesystem: dumpe2fs / xfs_info report what was asked for.
    #[tokio::test]
    async fn mkfs_options_take_effect() {
        let s = Scratch::without_device(320 << 20);
        let ext = MkfsOptions {
            block_size: Some(2048),
            inode_size: Some(512),
            number_of_inodes: Some(4096),
            ext4_bigalloc: true,
            ext4_cluster_size: Some(32768),
            ..Default::default()
        };
        mkfs("ext4", &s.image, &ext).await.unwrap();
        let out = crate::os::run("dumpe2fs", ["-h".as_ref(), s.image.as_os_str()])
            .await
            .unwrap();
        let field = |name: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
                .unwrap_or_else(|| panic!("{name} missing from dumpe2fs"))
        };
        assert_eq!(field("Block size:"), "2048");
        assert_eq!(field("Inode size:"), "512");
        assert_eq!(field("Cluster size:"), "32768");
        assert!(field("Filesystem features:").contains("bigalloc"));
        let inodes: u64 = field("Inode count:").parse().unwrap();
        assert!(
            (4096..8192).contains(&inodes),
            "about the 4096 inodes asked for, got {inodes}"
        );

        let xfs = MkfsOptions {
            block_size: Some(2048),
            inode_size: Some(1024),
            ..Default::default()
        };
        mkfs("xfs", &s.image, &xfs).await.unwrap();
        let out = crate::os::run("xfs_info", [s.image.as_os_str()]).await.unwrap();
        assert!(out.contains("isize=1024"), "{out}");
        assert!(
            out.lines().any(|l| l.starts_with("data") && l.contains("bsize=2048")),
            "{out}"
        );
    }
}
