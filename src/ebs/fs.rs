//! File systems the driver makes on a volume, and the mkfs tuning a StorageClass may ask for.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, shown};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsType {
    Ext2,
    Ext3,
    Ext4,
    Xfs,
}

impl FsType {
    pub const ALL: [FsType; 4] = [FsType::Ext2, FsType::Ext3, FsType::Ext4, FsType::Xfs];

    pub fn as_str(self) -> &'static str {
        match self {
            FsType::Ext2 => "ext2",
            FsType::Ext3 => "ext3",
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
        }
    }

    fn is_ext(self) -> bool {
        self != FsType::Xfs
    }
}

impl fmt::Display for FsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Case-sensitive, as the Go driver documents ("This parameter is case sensitive!").
impl FromStr for FsType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        FsType::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "file system type {} is not one of ext2, ext3, ext4, xfs (case-sensitive)",
                shown(s)
            ))
        })
    }
}

/// mkfs tuning from the StorageClass, in bytes/counts; the node passes them to mkfs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MkfsOptions {
    pub block_size: Option<u32>,
    pub inode_size: Option<u32>,
    pub bytes_per_inode: Option<u32>,
    pub number_of_inodes: Option<u64>,
    pub ext4_bigalloc: bool,
    pub ext4_cluster_size: Option<u32>,
}

impl MkfsOptions {
    pub fn is_empty(&self) -> bool {
        *self == MkfsOptions::default()
    }

    /// The options mkfs for `fs` accepts, in the ranges mke2fs/mkfs.xfs take; the Go driver
    /// rejects the same fs/option pairs (bigalloc only on ext4, inode counts not on xfs).
    pub fn validate_for(&self, fs: FsType) -> Result<()> {
        if self.ext4_cluster_size.is_some() && !self.ext4_bigalloc {
            return Err(Error::InvalidArgument(
                "parameter \"ext4ClusterSize\" needs \"ext4BigAlloc\" set to \"true\"".into(),
            ));
        }
        let block = self.check_block_size()?;
        self.check_inode_size(fs, block)?;
        if let Some(ratio) = self.bytes_per_inode {
            if !fs.is_ext() {
                return Err(fs_unsupported("bytesPerInode", fs, "ext2, ext3, ext4"));
            }
            // mke2fs -i: from 1 KiB to 64 MiB.
            check_range("bytesPerInode", ratio.into(), 1024, 64 << 20, "bytes")?;
        }
        if let Some(count) = self.number_of_inodes {
            if !fs.is_ext() {
                return Err(fs_unsupported("numberOfInodes", fs, "ext2, ext3, ext4"));
            }
            // ext4 counts inodes in 32 bits.
            check_range("numberOfInodes", count, 1, u32::MAX.into(), "inodes")?;
        }
        if self.ext4_bigalloc && fs != FsType::Ext4 {
            return Err(fs_unsupported("ext4BigAlloc", fs, "ext4"));
        }
        if let Some(cluster) = self.ext4_cluster_size {
            if fs != FsType::Ext4 {
                return Err(fs_unsupported("ext4ClusterSize", fs, "ext4"));
            }
            // A cluster holds whole blocks; mke2fs stops at 2^29 bytes.
            check_power_of_two("ext4ClusterSize", cluster, block.into(), 1 << 29)?;
        }
        Ok(())
    }

    /// The block size mkfs will use: the option, or 4 KiB (what both mkfs pick for EBS sizes).
    /// 1 KiB to 64 KiB for both: mke2fs's range, and mkfs.xfs's for the CRC-enabled (v5)
    /// filesystems it makes.
    fn check_block_size(&self) -> Result<u32> {
        let Some(block) = self.block_size else {
            return Ok(4096);
        };
        check_power_of_two("blockSize", block, 1024, 65_536)?;
        Ok(block)
    }

    fn check_inode_size(&self, fs: FsType, block: u32) -> Result<()> {
        let Some(inode) = self.inode_size else {
            return Ok(());
        };
        // mke2fs: at least 128 and at most the block size; mkfs.xfs (v5): 512 to 2048, and at
        // most half a block.
        let (min, max) = if fs.is_ext() {
            (128, u64::from(block))
        } else {
            (512, u64::from(block / 2).min(2048))
        };
        check_power_of_two("inodeSize", inode, min, max)
    }
}

pub(super) fn fs_unsupported(option: &str, fs: FsType, allowed: &str) -> Error {
    Error::InvalidArgument(format!(
        "parameter \"{option}\" is not supported with file system \"{fs}\" (only {allowed})"
    ))
}

fn check_range(option: &str, n: u64, min: u64, max: u64, unit: &str) -> Result<()> {
    if n < min || n > max {
        return Err(Error::InvalidArgument(format!(
            "parameter \"{option}\": value {n} is outside {min}–{max} {unit}"
        )));
    }
    Ok(())
}

fn check_power_of_two(option: &str, n: u32, min: u64, max: u64) -> Result<()> {
    if !n.is_power_of_two() {
        return Err(Error::InvalidArgument(format!(
            "parameter \"{option}\": value {n} is not a power of two ({min}–{max} bytes)"
        )));
    }
    check_range(option, n.into(), min, max, "bytes")
}
