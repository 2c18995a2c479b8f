//! What a caller asks of a volume: its creation parameters and a modification, as plain values.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::fs::fs_unsupported;
use super::performance::{
    check_iops_request, check_throughput, check_throughput_range, derived_iops, fit_iops, requested_iops,
    throughput_allowed,
};
use super::{FsType, MkfsOptions, Performance, VolumeType, limits};
use crate::error::{Error, Result};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateParams {
    pub volume_type: VolumeType,
    pub iops: Option<u32>,
    pub iops_per_gb: Option<u32>,
    /// Raise IOPS below the type's minimum to the minimum instead of failing (Go applies it to
    /// `iops` as well as `iopsPerGB`).
    pub allow_auto_iops_per_gb_increase: bool,
    /// Keep `iopsPerGB` on resize: the caller records it and raises IOPS when the volume grows
    /// (see [`iops_after_resize`]).
    pub allow_auto_iops_increase_on_modify: bool,
    /// MiB/s.
    pub throughput: Option<u32>,
    /// True also when only `kmsKeyId` is given (Go sets Encrypted whenever a key is named).
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    /// From `csi.storage.k8s.io/fstype`; the external-provisioner usually moves it into the
    /// volume capability instead, so check the capability's type too ([`CreateParams::validate_for_fs`]).
    pub fs_type: Option<FsType>,
    pub mkfs: MkfsOptions,
    /// `ext4EncryptionSupport`: format ext4 with the `encrypt` feature (ext4 only).
    pub ext4_encryption_support: bool,
    /// MiB/s; only for volumes created from a snapshot.
    pub volume_initialization_rate: Option<u32>,
    /// From `tagSpecification_N`, templates evaluated.
    pub tags: BTreeMap<String, String>,
    pub pvc_name: Option<String>,
    pub pvc_namespace: Option<String>,
    pub pv_name: Option<String>,
    /// `blockExpress`: accepted for compatibility and otherwise ignored, as in Go since every io2
    /// volume is Block Express; kept so the caller can log a deprecation.
    pub block_express: bool,
}

/// A ControllerModifyVolume request. Sizes are not here: they come with ControllerExpandVolume.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModifyParams {
    pub volume_type: Option<VolumeType>,
    pub iops: Option<u32>,
    /// New in the Go driver with allowAutoIOPSIncreaseOnModify: IOPS = ratio x size.
    pub iops_per_gb: Option<u32>,
    /// MiB/s.
    pub throughput: Option<u32>,
    /// Record (or clear) the wish to keep `iopsPerGB` on resize.
    pub allow_auto_iops_increase_on_modify: Option<bool>,
    /// Tags to add or overwrite, templates evaluated.
    pub tags: BTreeMap<String, String>,
    /// Tag keys to delete (`tagDeletion_N`).
    pub tag_deletions: BTreeSet<String>,
    /// Passed by the external-resizer with `--extra-modify-metadata`, for the templates.
    pub pvc_name: Option<String>,
    pub pvc_namespace: Option<String>,
    pub pv_name: Option<String>,
}

impl ModifyParams {
    /// Whether EC2 ModifyVolume is needed (subject to its 6-hour cooldown), rather than tags only.
    pub fn changes_volume(&self) -> bool {
        self.volume_type.is_some() || self.iops.is_some() || self.iops_per_gb.is_some() || self.throughput.is_some()
    }

    pub fn changes_tags(&self) -> bool {
        !self.tags.is_empty() || !self.tag_deletions.is_empty()
    }

    pub(crate) fn is_empty(&self) -> bool {
        !self.changes_volume() && !self.changes_tags() && self.allow_auto_iops_increase_on_modify.is_none()
    }
}

impl CreateParams {
    /// Checks that need no size: conflicting or misplaced IOPS/throughput, and the throughput
    /// range. The per-GiB and per-IOPS ratios need the size: see [`CreateParams::performance`].
    pub(crate) fn check_static(&self) -> Result<()> {
        check_iops_request(self.volume_type, self.iops, self.iops_per_gb)?;
        let l = limits(self.volume_type);
        if let Some(t) = self.throughput {
            throughput_allowed(self.volume_type)?;
            check_throughput_range(l, t)?;
        }
        Ok(())
    }

    /// Checks the mkfs options (and ext4 encryption) against the file system that will really be
    /// made, which may come from the volume capability rather than the parameters.
    pub fn validate_for_fs(&self, fs: FsType) -> Result<()> {
        self.mkfs.validate_for(fs)?;
        if self.ext4_encryption_support && fs != FsType::Ext4 {
            return Err(fs_unsupported("ext4EncryptionSupport", fs, "ext4"));
        }
        Ok(())
    }

    /// The IOPS and throughput the volume gets at `size_gib`, as the Go driver computes them:
    /// `iopsPerGB` x size; above the type's maximum, or above its IOPS-per-GiB ratio x size, the
    /// IOPS are capped and the call succeeds; below the minimum they are an error unless
    /// `allowAutoIOPSPerGBIncrease` raises them to it. gp3 without IOPS gets 3,000 IOPS and
    /// 125 MiB/s; throughput is checked against its range and 0.25 MiB/s per IOPS.
    pub fn performance(&self, size_gib: u64) -> Result<Performance> {
        self.check_static()?;
        let t = self.volume_type;
        let l = limits(t);
        let iops = if l.iops_configurable {
            match requested_iops(self.iops, self.iops_per_gb, size_gib) {
                Some(r) => Some(fit_iops(t, size_gib, r, self.allow_auto_iops_per_gb_increase)?),
                None if l.iops_required => {
                    return Err(Error::InvalidArgument(format!(
                        "type \"{t}\" needs \"iops\" or \"iopsPerGB\" ({}–{} IOPS, at most {} per GiB)",
                        l.min_iops, l.max_iops, l.max_iops_per_gib
                    )));
                }
                None => l.default_iops,
            }
        } else {
            derived_iops(t, size_gib)
        };
        let throughput = match l.default_throughput {
            Some(default) if l.throughput_configurable => {
                let mibs = self.throughput.unwrap_or(default);
                check_throughput(t, mibs, iops)?;
                Some(mibs)
            }
            _ => None,
        };
        Ok(Performance { iops, throughput })
    }
}
