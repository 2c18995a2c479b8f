//! StorageClass parameters (CreateVolume `parameters`) and VolumeAttributesClass parameters
//! (ControllerModifyVolume `mutable_parameters`) parsed into typed values, with the semantics of
//! the Go driver `ebs.csi.aws.com` (kubernetes-sigs/aws-ebs-csi-driver), plus the EBS limits table.
//!
//! Where this module is deliberately stricter or more lenient than the Go driver:
//! - The Go driver leaves most range checks to EC2; here they are checked up front so that a bad
//!   StorageClass fails with InvalidArgument/OutOfRange instead of an opaque cloud error, and so
//!   that the local backend behaves like EBS.
//! - IOPS on a type that takes none (gp2, st1, sc1, standard) and throughput on any type but gp3
//!   are rejected; Go silently drops them.
//! - io1/io2 without `iops`/`iopsPerGB` is rejected (EC2 requires IOPS for them); Go sends none
//!   and EC2 fails the call.
//! - Booleans take every spelling of Go's `strconv.ParseBool`; anything else is rejected. Go
//!   compares with `"true"` and treats every other value, even `"True"`, as false.
//! - `type` is case-insensitive (Go passes it to EC2 as given, which rejects `"GP3"`).
//! - Keys differing only in case, and two tags with the same key, are rejected; in Go the winner
//!   depends on map iteration order.
//! - Tag templates support only the documented functions (`field`, `substring`, `toUpper`,
//!   `toLower`, `contains`) and no `if`/`range`/variables; Go allows most of text/template.
//! - The gp3 IOPS maximum is EC2's current 80,000; Go starts from a 16,000 fallback and learns
//!   the regional limit from a dry-run call.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const GIB: u64 = 1 << 30;

/// The size used when CreateVolume gives no capacity (the Go driver's `DefaultVolumeSize`).
pub const DEFAULT_SIZE_GIB: u64 = 100;

/// EC2 tag limits (AWS "Tag your Amazon EC2 resources", tag restrictions); the Go driver checks
/// the same three numbers in `validateExtraTags`.
pub const MAX_USER_TAGS: usize = 50;
pub const MAX_TAG_KEY_CHARS: usize = 128;
pub const MAX_TAG_VALUE_CHARS: usize = 256;

/// EBS Provisioned Rate for Volume Initialization, MiB/s (EC2 CreateVolume
/// `VolumeInitializationRate`: "Valid range: 100 - 300 MiB/s"). EC2 accepts it only for volumes
/// created from a snapshot: the caller must drop it for empty volumes (Go issue #2691).
pub const MIN_VOLUME_INITIALIZATION_RATE: u32 = 100;
pub const MAX_VOLUME_INITIALIZATION_RATE: u32 = 300;

/// IOPS EC2 gives a volume whose type changes to gp3, io1 or io2 when ModifyVolume names no IOPS.
const MODIFY_DEFAULT_IOPS: u64 = 3000;

/// Tag keys the driver itself sets and reads; a StorageClass must not override them.
const RESERVED_TAG_KEYS: [&str; 3] = ["CSIVolumeName", "CSIVolumeSnapshotName", "ebs.csi.aws.com/cluster"];
/// `kubernetes.io` covers `kubernetes.io/cluster/*` and `kubernetes.io/created-for/*` (as in Go);
/// `ebs.csi.aws.com/` keeps the driver's own bookkeeping tags (iopsPerGB and the like) safe.
const RESERVED_TAG_PREFIXES: [&str; 2] = ["kubernetes.io", "ebs.csi.aws.com/"];

const PVC_NAME_KEY: &str = "csi.storage.k8s.io/pvc/name";
const PVC_NAMESPACE_KEY: &str = "csi.storage.k8s.io/pvc/namespace";
const PV_NAME_KEY: &str = "csi.storage.k8s.io/pv/name";
pub const FSTYPE_KEY: &str = "csi.storage.k8s.io/fstype";
/// Lower-cased prefixes; the Go driver matches `tagSpecification`/`tagDeletion` + anything.
const TAG_SPEC_PREFIX: &str = "tagspecification";
const TAG_DELETION_PREFIX: &str = "tagdeletion";

const CREATE_KEYS: &str = "type, iops, iopsPerGB, allowAutoIOPSPerGBIncrease, \
     allowAutoIOPSIncreaseOnModify, throughput, encrypted, kmsKeyId, blockExpress, blockSize, \
     inodeSize, bytesPerInode, numberOfInodes, ext4BigAlloc, ext4ClusterSize, \
     ext4EncryptionSupport, volumeInitializationRate, csi.storage.k8s.io/fstype, fstype, \
     csi.storage.k8s.io/pvc/name, csi.storage.k8s.io/pvc/namespace, csi.storage.k8s.io/pv/name, \
     tagSpecification_<N>";
const MODIFY_KEYS: &str = "type, volumeType, iops, iopsPerGB, throughput, \
     allowAutoIOPSIncreaseOnModify, csi.storage.k8s.io/pvc/name, \
     csi.storage.k8s.io/pvc/namespace, csi.storage.k8s.io/pv/name, tagSpecification_<N>, \
     tagDeletion_<N>";

// ---------------------------------------------------------------------------------------------
// Volume and file system types
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeType {
    Gp2,
    /// The default for new volumes, as in Go and EC2.
    #[default]
    Gp3,
    Io1,
    Io2,
    Sc1,
    St1,
    Standard,
}

impl VolumeType {
    /// In the order of the limits table.
    pub const ALL: [VolumeType; 7] = [
        VolumeType::Gp2,
        VolumeType::Gp3,
        VolumeType::Io1,
        VolumeType::Io2,
        VolumeType::Sc1,
        VolumeType::St1,
        VolumeType::Standard,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VolumeType::Gp2 => "gp2",
            VolumeType::Gp3 => "gp3",
            VolumeType::Io1 => "io1",
            VolumeType::Io2 => "io2",
            VolumeType::Sc1 => "sc1",
            VolumeType::St1 => "st1",
            VolumeType::Standard => "standard",
        }
    }
}

impl fmt::Display for VolumeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Case-insensitive: `"GP3"` is gp3.
impl FromStr for VolumeType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        VolumeType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let hint = if ["sbp1", "sbg1"].iter().any(|t| t.eq_ignore_ascii_case(s)) {
                    " (sbp1/sbg1 exist only on Snow devices)"
                } else {
                    ""
                };
                Error::InvalidArgument(format!(
                    "volume type {} is not one of gp2, gp3, io1, io2, sc1, st1, standard{hint}",
                    shown(s)
                ))
            })
    }
}

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

// ---------------------------------------------------------------------------------------------
// The limits table
// ---------------------------------------------------------------------------------------------

/// `num/den` units of one quantity per unit of another, kept exact (no floats).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ratio {
    pub num: u32,
    pub den: u32,
}

impl Ratio {
    /// Whether `amount <= ratio * per`.
    pub fn allows(self, amount: u64, per: u64) -> bool {
        // u32 * u32 products cannot overflow u128, and u64 * u32 cannot either.
        u128::from(amount) * u128::from(self.den) <= u128::from(per) * u128::from(self.num)
    }
}

/// What EBS allows for one volume type. When `iops_configurable`/`throughput_configurable` is
/// false, the IOPS/throughput fields describe what the type delivers, not something to set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeLimits {
    pub volume_type: VolumeType,
    pub min_gib: u64,
    pub max_gib: u64,
    /// Whether CreateVolume/ModifyVolume take an IOPS figure for this type.
    pub iops_configurable: bool,
    /// Whether EC2 refuses the type without an IOPS figure (io1, io2).
    pub iops_required: bool,
    pub min_iops: u32,
    pub max_iops: u32,
    /// Provisioned IOPS may not exceed this times the size in GiB (never capped below min_iops).
    pub max_iops_per_gib: u32,
    pub default_iops: Option<u32>,
    /// gp2 only: IOPS follow the size at this rate, clamped to min_iops..=max_iops.
    pub baseline_iops_per_gib: Option<u32>,
    pub throughput_configurable: bool,
    /// MiB/s.
    pub min_throughput: u32,
    /// MiB/s.
    pub max_throughput: u32,
    /// MiB/s.
    pub default_throughput: Option<u32>,
    /// MiB/s per provisioned IOPS (gp3: 1/4).
    pub max_throughput_per_iops: Option<Ratio>,
}

/// The one limits table, indexed by `VolumeType as usize`.
///
/// Taken on 2026-11-26 from the AWS documentation (stored copies read through the project's
/// search tool):
/// - EC2 API Reference, CreateVolume and ModifyVolume
///   <https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateVolume.html>:
///   sizes gp2 1–16,384, gp3 1–65,536, io1 4–16,384, io2 4–65,536, st1/sc1 125–16,384,
///   standard 1–1,024 GiB; IOPS gp3 3,000–80,000 (default 3,000), io1 100–64,000,
///   io2 100–256,000, required for io1/io2; throughput gp3 125–2,000 MiB/s;
///   VolumeInitializationRate 100–300 MiB/s.
/// - Amazon EBS User Guide, "Amazon EBS volume types", "General Purpose SSD volumes",
///   "Provisioned IOPS SSD volumes", "Throughput Optimized HDD and Cold HDD volumes",
///   "Previous generation volumes"
///   <https://docs.aws.amazon.com/ebs/latest/userguide/ebs-volume-types.html>:
///   gp3 500 IOPS/GiB and 0.25 MiB/s per provisioned IOPS (limits raised in 2025 to 64 TiB,
///   80,000 IOPS, 2,000 MiB/s); io1 50 IOPS/GiB; io2 (Block Express) 1,000 IOPS/GiB, 4,000 MiB/s;
///   gp2 3 IOPS/GiB baseline, 100–16,000 IOPS, 250 MiB/s; st1 500 MiB/s, 500 IOPS; sc1 250 MiB/s,
///   250 IOPS; magnetic 40–200 IOPS, 40–90 MiB/s.
///
/// Not modelled: Outposts (gp3 up to 16,000 IOPS / 1,000 MiB/s), and instances not built on
/// Nitro (io2 up to 32,000 IOPS); EC2 rejects those there.
static TABLE: [TypeLimits; 7] = [
    TypeLimits {
        volume_type: VolumeType::Gp2,
        min_gib: 1,
        max_gib: 16_384,
        iops_configurable: false,
        iops_required: false,
        min_iops: 100,
        max_iops: 16_000,
        max_iops_per_gib: 3,
        default_iops: None,
        baseline_iops_per_gib: Some(3),
        throughput_configurable: false,
        min_throughput: 0,
        max_throughput: 250,
        default_throughput: None,
        max_throughput_per_iops: None,
    },
    TypeLimits {
        volume_type: VolumeType::Gp3,
        min_gib: 1,
        max_gib: 65_536,
        iops_configurable: true,
        iops_required: false,
        min_iops: 3_000,
        max_iops: 80_000,
        max_iops_per_gib: 500,
        default_iops: Some(3_000),
        baseline_iops_per_gib: None,
        throughput_configurable: true,
        min_throughput: 125,
        max_throughput: 2_000,
        default_throughput: Some(125),
        max_throughput_per_iops: Some(Ratio { num: 1, den: 4 }),
    },
    TypeLimits {
        volume_type: VolumeType::Io1,
        min_gib: 4,
        max_gib: 16_384,
        iops_configurable: true,
        iops_required: true,
        min_iops: 100,
        max_iops: 64_000,
        max_iops_per_gib: 50,
        default_iops: None,
        baseline_iops_per_gib: None,
        throughput_configurable: false,
        min_throughput: 0,
        max_throughput: 1_000,
        default_throughput: None,
        max_throughput_per_iops: None,
    },
    TypeLimits {
        volume_type: VolumeType::Io2,
        min_gib: 4,
        max_gib: 65_536,
        iops_configurable: true,
        iops_required: true,
        min_iops: 100,
        max_iops: 256_000,
        max_iops_per_gib: 1_000,
        default_iops: None,
        baseline_iops_per_gib: None,
        throughput_configurable: false,
        min_throughput: 0,
        max_throughput: 4_000,
        default_throughput: None,
        max_throughput_per_iops: None,
    },
    TypeLimits {
        volume_type: VolumeType::Sc1,
        min_gib: 125,
        max_gib: 16_384,
        iops_configurable: false,
        iops_required: false,
        min_iops: 0,
        max_iops: 250,
        max_iops_per_gib: 0,
        default_iops: None,
        baseline_iops_per_gib: None,
        throughput_configurable: false,
        min_throughput: 0,
        max_throughput: 250,
        default_throughput: None,
        max_throughput_per_iops: None,
    },
    TypeLimits {
        volume_type: VolumeType::St1,
        min_gib: 125,
        max_gib: 16_384,
        iops_configurable: false,
        iops_required: false,
        min_iops: 0,
        max_iops: 500,
        max_iops_per_gib: 0,
        default_iops: None,
        baseline_iops_per_gib: None,
        throughput_configurable: false,
        min_throughput: 0,
        max_throughput: 500,
        default_throughput: None,
        max_throughput_per_iops: None,
    },
    TypeLimits {
        volume_type: VolumeType::Standard,
        min_gib: 1,
        max_gib: 1_024,
        iops_configurable: false,
        iops_required: false,
        min_iops: 0,
        max_iops: 200,
        max_iops_per_gib: 0,
        default_iops: None,
        baseline_iops_per_gib: None,
        throughput_configurable: false,
        min_throughput: 0,
        max_throughput: 90,
        default_throughput: None,
        max_throughput_per_iops: None,
    },
];

pub fn limits(t: VolumeType) -> &'static TypeLimits {
    &TABLE[t as usize]
}

// ---------------------------------------------------------------------------------------------
// Parsed parameters
// ---------------------------------------------------------------------------------------------

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

/// What a volume really gets, as EC2 DescribeVolumes reports it: IOPS for gp2 (its size-derived
/// baseline), gp3, io1 and io2; throughput for gp3 only. None where EBS provisions nothing
/// (st1, sc1, standard: performance follows size and burst credits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Performance {
    pub iops: Option<u32>,
    /// MiB/s.
    pub throughput: Option<u32>,
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

    fn is_empty(&self) -> bool {
        !self.changes_volume() && !self.changes_tags() && self.allow_auto_iops_increase_on_modify.is_none()
    }
}

// ---------------------------------------------------------------------------------------------
// CreateVolume
// ---------------------------------------------------------------------------------------------

/// Parses StorageClass parameters. Keys are case-insensitive (the Go driver lower-cases them);
/// values are taken as given, untrimmed (as in Go).
pub fn parse_create_params(params: &HashMap<String, String>) -> Result<CreateParams> {
    parse_create_request(params, &HashMap::new())
}

/// Parses CreateVolume `parameters` and `mutable_parameters` (a VolumeAttributesClass given at
/// creation): the mutable ones take precedence, as the CSI spec requires. Mutable `iops` replaces
/// a StorageClass `iopsPerGB` and the other way round, instead of conflicting.
pub fn parse_create_request(
    params: &HashMap<String, String>,
    mutable: &HashMap<String, String>,
) -> Result<CreateParams> {
    let (mut out, specs) = parse_create_raw(params)?;
    let (change, mutable_specs) = parse_modify_raw(mutable)?;
    let props = TemplateProps {
        pvc_name: change.pvc_name.clone().or_else(|| out.pvc_name.clone()),
        pvc_namespace: change.pvc_namespace.clone().or_else(|| out.pvc_namespace.clone()),
        pv_name: change.pv_name.clone().or_else(|| out.pv_name.clone()),
    };
    out.tags = eval_tag_specs(&specs, &props)?;
    let mutable_tags = eval_tag_specs(&mutable_specs, &props)?;
    apply_mutable(&mut out, &change, mutable_tags);
    if out.tags.len() > MAX_USER_TAGS {
        return Err(too_many_tags(out.tags.len()));
    }
    if out.kms_key_id.is_some() {
        out.encrypted = true;
    }
    out.check_static()?;
    // Without an fstype here the filesystem comes from the volume capability, which the caller
    // checks the mkfs options against (`validate_for_fs`).
    // Options no filesystem can take are refused here all the same.
    match out.fs_type {
        Some(fs) => out.validate_for_fs(fs)?,
        None => {
            if let Err(e) = out.validate_for_fs(FsType::Ext4) {
                out.validate_for_fs(FsType::Xfs).map_err(|_| e)?;
            }
        }
    }
    Ok(out)
}

fn apply_mutable(out: &mut CreateParams, change: &ModifyParams, tags: BTreeMap<String, String>) {
    if let Some(t) = change.volume_type {
        out.volume_type = t;
    }
    if let Some(iops) = change.iops {
        out.iops = Some(iops);
        out.iops_per_gb = None;
    }
    if let Some(ratio) = change.iops_per_gb {
        out.iops_per_gb = Some(ratio);
        out.iops = None;
    }
    if let Some(t) = change.throughput {
        out.throughput = Some(t);
    }
    if let Some(allow) = change.allow_auto_iops_increase_on_modify {
        out.allow_auto_iops_increase_on_modify = allow;
    }
    for key in &change.tag_deletions {
        out.tags.remove(key);
    }
    out.tags.extend(tags);
}

/// One parameter's key and value, borrowed from the request, with the key lower-cased.
struct Entry<'a> {
    canonical: String,
    key: &'a str,
    value: &'a str,
}

/// Sorted so that the first error is the same on every run; two keys equal but for case are
/// refused because Go would pick one of them at random.
fn entries(params: &HashMap<String, String>) -> Result<Vec<Entry<'_>>> {
    let mut list: Vec<Entry<'_>> = params
        .iter()
        .map(|(k, v)| Entry {
            canonical: k.to_lowercase(),
            key: k,
            value: v,
        })
        .collect();
    list.sort_by(|a, b| (&a.canonical, a.key).cmp(&(&b.canonical, b.key)));
    if let Some(pair) = list.windows(2).find(|w| w[0].canonical == w[1].canonical) {
        return Err(Error::InvalidArgument(format!(
            "parameters {} and {} are the same key (keys are case-insensitive); keep one",
            shown(pair[0].key),
            shown(pair[1].key)
        )));
    }
    Ok(list)
}

/// A `tagSpecification_N` parameter: its key (for messages) and its `key=template` value.
type TagSpec<'a> = (&'a str, &'a str);

fn parse_create_raw(params: &HashMap<String, String>) -> Result<(CreateParams, Vec<TagSpec<'_>>)> {
    let mut out = CreateParams::default();
    let mut specs = Vec::new();
    for Entry { canonical, key, value } in entries(params)? {
        match canonical.as_str() {
            "type" => out.volume_type = parse_type(key, value)?.unwrap_or_default(),
            "iops" => out.iops = nonzero(parse_u32(key, value)?),
            "iopspergb" => out.iops_per_gb = nonzero(parse_u32(key, value)?),
            "allowautoiopspergbincrease" => out.allow_auto_iops_per_gb_increase = parse_bool(key, value)?,
            "allowautoiopsincreaseonmodify" => out.allow_auto_iops_increase_on_modify = parse_bool(key, value)?,
            "throughput" => out.throughput = nonzero(parse_u32(key, value)?),
            "encrypted" => out.encrypted = parse_bool(key, value)?,
            "kmskeyid" => out.kms_key_id = non_empty(value),
            "blockexpress" => out.block_express = parse_bool(key, value)?,
            "blocksize" => out.mkfs.block_size = Some(parse_size(key, value)?),
            "inodesize" => out.mkfs.inode_size = Some(parse_size(key, value)?),
            "bytesperinode" => out.mkfs.bytes_per_inode = Some(parse_size(key, value)?),
            "numberofinodes" => out.mkfs.number_of_inodes = Some(parse_inode_count(key, value)?),
            "ext4bigalloc" => out.mkfs.ext4_bigalloc = parse_bool(key, value)?,
            "ext4clustersize" => out.mkfs.ext4_cluster_size = Some(parse_size(key, value)?),
            "ext4encryptionsupport" => out.ext4_encryption_support = parse_bool(key, value)?,
            "volumeinitializationrate" => out.volume_initialization_rate = parse_initialization_rate(key, value)?,
            FSTYPE_KEY => out.fs_type = parse_fs_type(key, value)?,
            // Deprecated in Go, which logs and ignores it; so do we.
            "fstype" => {}
            PVC_NAME_KEY => out.pvc_name = Some(value.to_owned()),
            PVC_NAMESPACE_KEY => out.pvc_namespace = Some(value.to_owned()),
            PV_NAME_KEY => out.pv_name = Some(value.to_owned()),
            k if k.starts_with(TAG_SPEC_PREFIX) => specs.push((key, value)),
            _ => return Err(unknown_key(key, "CreateVolume", CREATE_KEYS)),
        }
    }
    Ok((out, specs))
}

impl CreateParams {
    /// Checks that need no size: conflicting or misplaced IOPS/throughput, and the throughput
    /// range. The per-GiB and per-IOPS ratios need the size: see [`CreateParams::performance`].
    fn check_static(&self) -> Result<()> {
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

/// Capacity range (0 = unset) → whole GiB. No required size: 100 GiB (the Go default), raised to
/// the type's minimum (st1/sc1 start at 125 GiB, where Go would let EC2 fail) and lowered to fit
/// under `limit_bytes`. A required size is rounded up to whole GiB.
pub fn size_gib(required_bytes: i64, limit_bytes: i64, t: VolumeType) -> Result<u64> {
    let (Ok(required), Ok(limit)) = (u64::try_from(required_bytes), u64::try_from(limit_bytes)) else {
        return Err(Error::InvalidArgument(format!(
            "capacity range: required_bytes {required_bytes} and limit_bytes {limit_bytes} must not be negative"
        )));
    };
    if required > 0 && limit > 0 && limit < required {
        return Err(Error::InvalidArgument(format!(
            "capacity range: limit_bytes {limit} is below required_bytes {required}"
        )));
    }
    let l = limits(t);
    let gib = if required == 0 {
        let default = DEFAULT_SIZE_GIB.clamp(l.min_gib, l.max_gib);
        if limit > 0 { default.min(limit / GIB) } else { default }
    } else {
        required.div_ceil(GIB)
    };
    // gib <= 2^33 here, so gib * GIB fits in u64.
    if limit > 0 && gib.saturating_mul(GIB) > limit {
        return Err(Error::OutOfRange(format!(
            "required_bytes {required} rounds up to {gib} GiB, above limit_bytes {limit}"
        )));
    }
    check_size(t, gib)?;
    Ok(gib)
}

fn check_size(t: VolumeType, gib: u64) -> Result<()> {
    let l = limits(t);
    if gib < l.min_gib || gib > l.max_gib {
        return Err(Error::OutOfRange(format!(
            "size {gib} GiB is outside {}–{} GiB for type \"{t}\"",
            l.min_gib, l.max_gib
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// IOPS and throughput arithmetic, shared by create and modify
// ---------------------------------------------------------------------------------------------

/// `iops`, else `iopsPerGB` x size; None when neither is set.
fn requested_iops(iops: Option<u32>, per_gib: Option<u32>, size_gib: u64) -> Option<u64> {
    iops.map(u64::from)
        .or_else(|| per_gib.map(|r| u64::from(r).saturating_mul(size_gib)))
}

/// The Go driver's `capIOPS`: raise to the minimum if allowed (else fail), cap at the maximum and
/// at the per-GiB ratio. The ratio never caps below the minimum: a 1 GiB gp3 volume still gets
/// its 3,000 baseline (Go skips the ratio cap there and lets EC2 reject the request).
fn fit_iops(t: VolumeType, size_gib: u64, requested: u64, allow_increase: bool) -> Result<u32> {
    let l = limits(t);
    let min = u64::from(l.min_iops);
    let mut iops = requested;
    if iops < min {
        if !allow_increase {
            return Err(Error::InvalidArgument(format!(
                "IOPS {iops} is below the minimum {min} for type \"{t}\"; raise \"iops\" or \
                 \"iopsPerGB\", or set \"allowAutoIOPSPerGBIncrease\" to \"true\""
            )));
        }
        iops = min;
    }
    let by_size = size_gib.saturating_mul(u64::from(l.max_iops_per_gib)).max(min);
    iops = iops.min(u64::from(l.max_iops)).min(by_size);
    // Capped at max_iops, a u32.
    Ok(u32::try_from(iops).unwrap_or(l.max_iops))
}

/// gp2's size-derived baseline; nothing for the HDD and magnetic types.
fn derived_iops(t: VolumeType, size_gib: u64) -> Option<u32> {
    let l = limits(t);
    let per_gib = l.baseline_iops_per_gib?;
    let iops = size_gib
        .saturating_mul(u64::from(per_gib))
        .clamp(u64::from(l.min_iops), u64::from(l.max_iops));
    u32::try_from(iops).ok()
}

fn check_iops_request(t: VolumeType, iops: Option<u32>, per_gib: Option<u32>) -> Result<()> {
    if iops.is_some() && per_gib.is_some() {
        return Err(Error::InvalidArgument(
            "parameters \"iops\" and \"iopsPerGB\" cannot both be set; set one".into(),
        ));
    }
    if !limits(t).iops_configurable {
        let key = if iops.is_some() {
            "iops"
        } else if per_gib.is_some() {
            "iopsPerGB"
        } else {
            return Ok(());
        };
        return Err(Error::InvalidArgument(format!(
            "parameter \"{key}\" is not supported for type \"{t}\" (only gp3, io1 and io2 take provisioned IOPS)"
        )));
    }
    Ok(())
}

fn throughput_allowed(t: VolumeType) -> Result<()> {
    if limits(t).throughput_configurable {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "parameter \"throughput\" is not supported for type \"{t}\" (only gp3 takes provisioned throughput)"
    )))
}

fn check_throughput_range(l: &TypeLimits, mibs: u32) -> Result<()> {
    if mibs < l.min_throughput || mibs > l.max_throughput {
        return Err(Error::InvalidArgument(format!(
            "parameter \"throughput\": value {mibs} MiB/s is outside {}–{} MiB/s for type \"{}\"",
            l.min_throughput, l.max_throughput, l.volume_type
        )));
    }
    Ok(())
}

/// Range, then the throughput-per-IOPS ratio against the IOPS the volume will have.
fn check_throughput(t: VolumeType, mibs: u32, iops: Option<u32>) -> Result<()> {
    let l = limits(t);
    check_throughput_range(l, mibs)?;
    if let (Some(ratio), Some(iops)) = (l.max_throughput_per_iops, iops)
        && !ratio.allows(mibs.into(), iops.into())
    {
        let needed = u64::from(mibs).saturating_mul(ratio.den.into()) / u64::from(ratio.num);
        return Err(Error::InvalidArgument(format!(
            "throughput {mibs} MiB/s needs at least {needed} IOPS on type \"{t}\" (at most \
             {}/{} MiB/s per IOPS), but the volume has {iops} IOPS",
            ratio.num, ratio.den
        )));
    }
    Ok(())
}

/// With `allowAutoIOPSIncreaseOnModify`, the IOPS a volume resized to `new_size_gib` should get to
/// keep its `iopsPerGB` ratio: Some when that is more than it has now (IOPS only go up), capped
/// like at creation.
pub fn iops_after_resize(t: VolumeType, new_size_gib: u64, iops_per_gb: u32, current_iops: Option<u32>) -> Option<u32> {
    if !limits(t).iops_configurable || iops_per_gb == 0 {
        return None;
    }
    let wanted = u64::from(iops_per_gb).saturating_mul(new_size_gib);
    let iops = fit_iops(t, new_size_gib, wanted, true).ok()?;
    (iops > current_iops.unwrap_or(0)).then_some(iops)
}

// ---------------------------------------------------------------------------------------------
// ControllerModifyVolume
// ---------------------------------------------------------------------------------------------

/// Parses VolumeAttributesClass parameters. An empty request, or one holding only PVC/PV
/// metadata, is refused: there is nothing to modify.
pub fn parse_modify_params(params: &HashMap<String, String>) -> Result<ModifyParams> {
    let (mut change, specs) = parse_modify_raw(params)?;
    change.tags = eval_tag_specs(&specs, &TemplateProps::of(&change))?;
    if change.tags.len() > MAX_USER_TAGS {
        return Err(too_many_tags(change.tags.len()));
    }
    if let Some(key) = change.tag_deletions.iter().find(|k| change.tags.contains_key(*k)) {
        return Err(Error::InvalidArgument(format!(
            "tag {} is both added (tagSpecification) and deleted (tagDeletion)",
            shown(key)
        )));
    }
    if change.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "nothing to modify: the parameters name no change (accepted: {MODIFY_KEYS})"
        )));
    }
    if change.iops.is_some() && change.iops_per_gb.is_some() {
        check_iops_request(VolumeType::Gp3, change.iops, change.iops_per_gb)?;
    }
    if let Some(t) = change.volume_type {
        check_iops_request(t, change.iops, change.iops_per_gb)?;
        if change.throughput.is_some() {
            throughput_allowed(t)?;
        }
    }
    Ok(change)
}

fn parse_modify_raw(params: &HashMap<String, String>) -> Result<(ModifyParams, Vec<TagSpec<'_>>)> {
    let mut out = ModifyParams::default();
    let mut specs = Vec::new();
    let list = entries(params)?;
    let has_type = list.iter().any(|e| e.canonical == "type");
    for Entry { canonical, key, value } in list {
        match canonical.as_str() {
            "type" => out.volume_type = parse_type(key, value)?,
            // Deprecated spelling; Go ignores it when `type` is present.
            "volumetype" if has_type => {}
            "volumetype" => out.volume_type = parse_type(key, value)?,
            "iops" => out.iops = nonzero(parse_u32(key, value)?),
            "iopspergb" => out.iops_per_gb = nonzero(parse_u32(key, value)?),
            "throughput" => out.throughput = nonzero(parse_u32(key, value)?),
            "allowautoiopsincreaseonmodify" => out.allow_auto_iops_increase_on_modify = Some(parse_bool(key, value)?),
            PVC_NAME_KEY => out.pvc_name = Some(value.to_owned()),
            PVC_NAMESPACE_KEY => out.pvc_namespace = Some(value.to_owned()),
            PV_NAME_KEY => out.pv_name = Some(value.to_owned()),
            k if k.starts_with(TAG_SPEC_PREFIX) => specs.push((key, value)),
            k if k.starts_with(TAG_DELETION_PREFIX) => {
                check_tag_key(key, value)?;
                out.tag_deletions.insert(value.to_owned());
            }
            _ => return Err(unknown_key(key, "ControllerModifyVolume", MODIFY_KEYS)),
        }
    }
    Ok((out, specs))
}

/// The performance after `change` is applied to a volume of `current_type` and `size_gib`, with
/// EC2 ModifyVolume's defaults: IOPS and throughput are kept when the type stays; a new gp3,
/// io1 or io2 type starts at 3,000 IOPS and gp3 at 125 MiB/s. IOPS above the maximum or the
/// per-GiB ratio are capped as at creation; below the minimum they are an error unless
/// `allow_auto_iops_increase` raises them. The result names every figure to send to EC2.
pub fn modified_performance(
    current_type: VolumeType,
    size_gib: u64,
    current: &Performance,
    change: &ModifyParams,
    allow_auto_iops_increase: bool,
) -> Result<(VolumeType, Performance)> {
    let new_type = change.volume_type.unwrap_or(current_type);
    let l = limits(new_type);
    check_size(new_type, size_gib)?;
    check_iops_request(new_type, change.iops, change.iops_per_gb)?;
    if change.throughput.is_some() {
        throughput_allowed(new_type)?;
    }
    let same_type = new_type == current_type;
    let iops = if l.iops_configurable {
        let requested = requested_iops(change.iops, change.iops_per_gb, size_gib)
            .or_else(|| current.iops.filter(|_| same_type).map(u64::from))
            .unwrap_or(MODIFY_DEFAULT_IOPS);
        Some(fit_iops(new_type, size_gib, requested, allow_auto_iops_increase)?)
    } else {
        derived_iops(new_type, size_gib)
    };
    let throughput = match l.default_throughput {
        Some(default) if l.throughput_configurable => {
            let mibs = change
                .throughput
                .or_else(|| current.throughput.filter(|_| same_type))
                .unwrap_or(default);
            check_throughput(new_type, mibs, iops)?;
            Some(mibs)
        }
        _ => None,
    };
    Ok((new_type, Performance { iops, throughput }))
}

// ---------------------------------------------------------------------------------------------
// Tags
// ---------------------------------------------------------------------------------------------

/// The tags of a VolumeSnapshotClass `tagSpecification_N` parameter (its templates see no PVC).
pub fn parse_snapshot_tag(param: &str, value: &str) -> Result<BTreeMap<String, String>> {
    eval_tag_specs(&[(param, value)], &TemplateProps::default())
}

/// The values the tag templates can read.
#[derive(Default)]
struct TemplateProps {
    pvc_name: Option<String>,
    pvc_namespace: Option<String>,
    pv_name: Option<String>,
}

impl TemplateProps {
    fn of(change: &ModifyParams) -> Self {
        TemplateProps {
            pvc_name: change.pvc_name.clone(),
            pvc_namespace: change.pvc_namespace.clone(),
            pv_name: change.pv_name.clone(),
        }
    }
}

/// `key=template` → (key, rendered value): the key is everything before the first `=` and is
/// not a template (as in Go).
fn eval_tag_specs(specs: &[TagSpec<'_>], props: &TemplateProps) -> Result<BTreeMap<String, String>> {
    let view = template::Props {
        pvc_name: props.pvc_name.as_deref().unwrap_or(""),
        pvc_namespace: props.pvc_namespace.as_deref().unwrap_or(""),
        pv_name: props.pv_name.as_deref().unwrap_or(""),
    };
    let mut tags = BTreeMap::new();
    let mut origin: BTreeMap<&str, &str> = BTreeMap::new();
    for &(param, spec) in specs {
        let Some((key, source)) = spec.split_once('=') else {
            return Err(Error::InvalidArgument(format!(
                "parameter {}: value {} is not of the form key=value",
                shown(param),
                shown(spec)
            )));
        };
        check_tag_key(param, key)?;
        let value = template::render(source, &view).map_err(|e| {
            Error::InvalidArgument(format!(
                "parameter {}: tag value template {}: {e}",
                shown(param),
                shown(source)
            ))
        })?;
        check_tag_value(param, key, &value)?;
        if let Some(first) = origin.insert(key, param) {
            return Err(Error::InvalidArgument(format!(
                "parameters {} and {} both set tag {}; keep one",
                shown(first),
                shown(param),
                shown(key)
            )));
        }
        tags.insert(key.to_owned(), value);
    }
    Ok(tags)
}

fn check_tag_key(param: &str, key: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::InvalidArgument(format!(
            "parameter {}: tag key {} {why}",
            shown(param),
            shown(key)
        )))
    };
    let chars = key.chars().count();
    if chars == 0 {
        return bad("is empty");
    }
    if chars > MAX_TAG_KEY_CHARS {
        return bad(&format!(
            "is {chars} characters long; EC2 allows at most {MAX_TAG_KEY_CHARS}"
        ));
    }
    if RESERVED_TAG_KEYS.contains(&key) {
        return bad("is reserved for the driver");
    }
    if let Some(prefix) = RESERVED_TAG_PREFIXES.iter().find(|p| key.starts_with(*p)) {
        return bad(&format!("starts with the reserved prefix \"{prefix}\""));
    }
    if key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:")) {
        return bad("starts with \"aws:\", which EC2 reserves");
    }
    Ok(())
}

fn check_tag_value(param: &str, key: &str, value: &str) -> Result<()> {
    let chars = value.chars().count();
    if chars > MAX_TAG_VALUE_CHARS {
        return Err(Error::InvalidArgument(format!(
            "parameter {}: value of tag {} is {chars} characters long; EC2 allows at most {MAX_TAG_VALUE_CHARS}",
            shown(param),
            shown(key)
        )));
    }
    Ok(())
}

fn too_many_tags(count: usize) -> Error {
    Error::InvalidArgument(format!(
        "{count} tags given; EC2 allows at most {MAX_USER_TAGS} per volume"
    ))
}

// ---------------------------------------------------------------------------------------------
// Value parsing
// ---------------------------------------------------------------------------------------------

/// A value for messages: quoted, and cut short so that a 10 KB value stays readable.
fn shown(s: &str) -> String {
    const LIMIT: usize = 64;
    match s.char_indices().nth(LIMIT) {
        None => format!("{s:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &s[..cut], s.len()),
    }
}

fn unknown_key(key: &str, call: &str, accepted: &str) -> Error {
    Error::InvalidArgument(format!(
        "unknown parameter {} for {call} (accepted, case-insensitive: {accepted})",
        shown(key)
    ))
}

fn fs_unsupported(option: &str, fs: FsType, allowed: &str) -> Error {
    Error::InvalidArgument(format!(
        "parameter \"{option}\" is not supported with file system \"{fs}\" (only {allowed})"
    ))
}

/// Go's `strconv.ParseBool` spellings.
fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(Error::InvalidArgument(format!(
            "parameter {}: value {} is not a boolean (use \"true\" or \"false\")",
            shown(key),
            shown(value)
        ))),
    }
}

/// A decimal whole number (an optional `+` like Go's ParseInt; no spaces).
fn parse_whole(key: &str, value: &str) -> Result<u64> {
    value.parse::<u64>().map_err(|_| {
        let digits = value.strip_prefix('-').unwrap_or(value);
        let numeric = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
        let why = if numeric && value.starts_with('-') {
            "is negative".to_owned()
        } else if numeric {
            format!("is too large (at most {})", u64::MAX)
        } else {
            "is not a whole number".to_owned()
        };
        Error::InvalidArgument(format!("parameter {}: value {} {why}", shown(key), shown(value)))
    })
}

fn parse_u32(key: &str, value: &str) -> Result<u32> {
    let n = parse_whole(key, value)?;
    u32::try_from(n).map_err(|_| {
        Error::InvalidArgument(format!(
            "parameter {}: value {} is too large (at most {})",
            shown(key),
            shown(value),
            u32::MAX
        ))
    })
}

/// 0 means unset, as in Go (which tests `!= 0`).
fn nonzero(n: u32) -> Option<u32> {
    (n != 0).then_some(n)
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

/// `""` keeps the default, as in Go.
fn parse_type(key: &str, value: &str) -> Result<Option<VolumeType>> {
    if value.is_empty() {
        return Ok(None);
    }
    value
        .parse()
        .map(Some)
        .map_err(|e: Error| Error::InvalidArgument(format!("parameter {}: {e}", shown(key))))
}

fn parse_fs_type(key: &str, value: &str) -> Result<Option<FsType>> {
    if value.is_empty() {
        return Ok(None);
    }
    value
        .parse()
        .map(Some)
        .map_err(|e: Error| Error::InvalidArgument(format!("parameter {}: {e}", shown(key))))
}

/// A byte size for mkfs: decimal, optionally with a binary `k`/`m`/`g` suffix as mke2fs and
/// mkfs.xfs accept (the Go driver passes the text through).
fn parse_size(key: &str, value: &str) -> Result<u32> {
    let (digits, shift) = match value.as_bytes().last() {
        Some(b'k' | b'K') => (&value[..value.len() - 1], 10),
        Some(b'm' | b'M') => (&value[..value.len() - 1], 20),
        Some(b'g' | b'G') => (&value[..value.len() - 1], 30),
        _ => (value, 0),
    };
    let bad = || {
        Error::InvalidArgument(format!(
            "parameter {}: value {} is not a size in bytes (a whole number, optionally with k, m or g)",
            shown(key),
            shown(value)
        ))
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n = digits.parse::<u64>().map_err(|_| bad())?;
    n.checked_mul(1 << shift)
        .and_then(|bytes| u32::try_from(bytes).ok())
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "parameter {}: value {} is too large (at most {} bytes)",
                shown(key),
                shown(value),
                u32::MAX
            ))
        })
}

fn parse_inode_count(key: &str, value: &str) -> Result<u64> {
    parse_whole(key, value)
}

fn parse_initialization_rate(key: &str, value: &str) -> Result<Option<u32>> {
    let Some(rate) = nonzero(parse_u32(key, value)?) else {
        return Ok(None);
    };
    if !(MIN_VOLUME_INITIALIZATION_RATE..=MAX_VOLUME_INITIALIZATION_RATE).contains(&rate) {
        return Err(Error::InvalidArgument(format!(
            "parameter {}: value {} is outside {MIN_VOLUME_INITIALIZATION_RATE}–{MAX_VOLUME_INITIALIZATION_RATE} MiB/s",
            shown(key),
            shown(value)
        )));
    }
    Ok(Some(rate))
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

// ---------------------------------------------------------------------------------------------
// Tag value templates: the subset of Go text/template the driver documents
// ---------------------------------------------------------------------------------------------

use super::template;

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn create(pairs: &[(&str, &str)]) -> Result<CreateParams> {
        parse_create_params(&map(pairs))
    }

    fn modify(pairs: &[(&str, &str)]) -> Result<ModifyParams> {
        parse_modify_params(&map(pairs))
    }

    fn invalid(r: Result<impl fmt::Debug>) -> String {
        match r {
            Err(Error::InvalidArgument(m)) => m,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    fn out_of_range(r: Result<impl fmt::Debug>) -> String {
        match r {
            Err(Error::OutOfRange(m)) => m,
            other => panic!("expected OutOfRange, got {other:?}"),
        }
    }

    fn perf(iops: Option<u32>, throughput: Option<u32>) -> Performance {
        Performance { iops, throughput }
    }

    // ---- types and table ----

    #[test]
    fn table_rows_match_their_types() {
        for t in VolumeType::ALL {
            assert_eq!(limits(t).volume_type, t);
            assert!(limits(t).min_gib <= limits(t).max_gib);
        }
    }

    #[test]
    fn current_ebs_limits() {
        let gp3 = limits(VolumeType::Gp3);
        assert_eq!((gp3.max_gib, gp3.max_iops, gp3.max_throughput), (65_536, 80_000, 2_000));
        assert_eq!(
            (gp3.max_iops_per_gib, gp3.default_iops, gp3.default_throughput),
            (500, Some(3000), Some(125))
        );
        let io2 = limits(VolumeType::Io2);
        assert_eq!(
            (io2.min_gib, io2.max_gib, io2.max_iops, io2.max_iops_per_gib),
            (4, 65_536, 256_000, 1000)
        );
        let io1 = limits(VolumeType::Io1);
        assert_eq!((io1.max_gib, io1.max_iops, io1.max_iops_per_gib), (16_384, 64_000, 50));
    }

    #[test]
    fn volume_type_parsing_and_serde() {
        for t in VolumeType::ALL {
            assert_eq!(t.as_str().parse::<VolumeType>().unwrap(), t);
            assert_eq!(t.as_str().to_uppercase().parse::<VolumeType>().unwrap(), t);
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{t}\""));
            assert_eq!(serde_json::from_str::<VolumeType>(&format!("\"{t}\"")).unwrap(), t);
        }
        let msg = invalid("gp9".parse::<VolumeType>());
        assert!(msg.contains("\"gp9\"") && msg.contains("gp3"), "{msg}");
        assert!(invalid("sbp1".parse::<VolumeType>()).contains("Snow"));
        assert!("".parse::<VolumeType>().is_err());
    }

    #[test]
    fn fs_type_is_case_sensitive() {
        for fs in FsType::ALL {
            assert_eq!(fs.as_str().parse::<FsType>().unwrap(), fs);
            assert_eq!(serde_json::to_string(&fs).unwrap(), format!("\"{fs}\""));
        }
        for bad in ["EXT4", "Xfs", "ntfs", "ext4 ", "btrfs"] {
            invalid(bad.parse::<FsType>());
        }
        assert_eq!(
            create(&[("csi.storage.k8s.io/fstype", "xfs")]).unwrap().fs_type,
            Some(FsType::Xfs)
        );
        let msg = invalid(create(&[("csi.storage.k8s.io/fstype", "XFS")]));
        assert!(
            msg.contains("csi.storage.k8s.io/fstype") && msg.contains("\"XFS\""),
            "{msg}"
        );
        assert_eq!(create(&[("csi.storage.k8s.io/fstype", "")]).unwrap().fs_type, None);
    }

    // ---- sizes ----

    #[test]
    fn size_limits_per_type_just_inside_and_outside() {
        for t in VolumeType::ALL {
            let l = limits(t);
            let bytes = |gib: u64| i64::try_from(gib * GIB).unwrap();
            assert_eq!(size_gib(bytes(l.min_gib), 0, t).unwrap(), l.min_gib, "{t}");
            assert_eq!(size_gib(bytes(l.max_gib), 0, t).unwrap(), l.max_gib, "{t}");
            let msg = out_of_range(size_gib(bytes(l.max_gib + 1), 0, t));
            assert!(
                msg.contains(&format!("{}–{} GiB", l.min_gib, l.max_gib)) && msg.contains(t.as_str()),
                "{msg}"
            );
            if l.min_gib > 1 {
                out_of_range(size_gib(bytes(l.min_gib - 1), 0, t));
            }
        }
        assert_eq!(
            out_of_range(size_gib(20_000 * GIB as i64, 0, VolumeType::Sc1)),
            "size 20000 GiB is outside 125–16384 GiB for type \"sc1\""
        );
    }

    #[test]
    fn size_rounding_defaults_and_limits() {
        let gp3 = VolumeType::Gp3;
        assert_eq!(size_gib(1, 0, gp3).unwrap(), 1);
        assert_eq!(size_gib(GIB as i64 + 1, 0, gp3).unwrap(), 2);
        assert_eq!(size_gib(0, 0, gp3).unwrap(), 100);
        assert_eq!(
            size_gib(0, 0, VolumeType::St1).unwrap(),
            125,
            "default raised to the type minimum"
        );
        assert_eq!(
            size_gib(0, 10 * GIB as i64, gp3).unwrap(),
            10,
            "default lowered under the limit"
        );
        assert_eq!(size_gib(0, 10 * GIB as i64 + 5, gp3).unwrap(), 10);
        out_of_range(size_gib(0, 10, gp3));
        assert_eq!(size_gib(GIB as i64, GIB as i64, gp3).unwrap(), 1);
        let msg = out_of_range(size_gib(GIB as i64 + 1, GIB as i64 + 2, gp3));
        assert!(msg.contains("rounds up to 2 GiB"), "{msg}");
        invalid(size_gib(2 * GIB as i64, GIB as i64, gp3));
        invalid(size_gib(-1, 0, gp3));
        invalid(size_gib(0, -1, gp3));
        out_of_range(size_gib(i64::MAX, 0, gp3));
        out_of_range(size_gib(i64::MAX, i64::MAX, VolumeType::Io2));
    }

    // ---- IOPS ----

    fn perf_of(pairs: &[(&str, &str)], size: u64) -> Result<Performance> {
        create(pairs)?.performance(size)
    }

    #[test]
    fn iops_capping_and_minimums() {
        struct Case {
            params: &'static [(&'static str, &'static str)],
            size: u64,
            iops: Option<u32>,
        }
        let cases = [
            // Defaults.
            Case {
                params: &[],
                size: 100,
                iops: Some(3000),
            },
            Case {
                params: &[("type", "gp2")],
                size: 1,
                iops: Some(100),
            },
            Case {
                params: &[("type", "gp2")],
                size: 1000,
                iops: Some(3000),
            },
            Case {
                params: &[("type", "gp2")],
                size: 16_384,
                iops: Some(16_000),
            },
            Case {
                params: &[("type", "st1")],
                size: 500,
                iops: None,
            },
            // Above the maximum: capped.
            Case {
                params: &[("iops", "100000")],
                size: 1000,
                iops: Some(80_000),
            },
            Case {
                params: &[("type", "io1"), ("iops", "70000")],
                size: 10_000,
                iops: Some(64_000),
            },
            Case {
                params: &[("type", "io2"), ("iops", "300000")],
                size: 10_000,
                iops: Some(256_000),
            },
            // Above the per-GiB ratio: capped.
            Case {
                params: &[("type", "io1"), ("iops", "1000")],
                size: 10,
                iops: Some(500),
            },
            Case {
                params: &[("type", "io2"), ("iops", "20000")],
                size: 10,
                iops: Some(10_000),
            },
            Case {
                params: &[("iops", "16000")],
                size: 10,
                iops: Some(5000),
            },
            // The ratio never caps below the minimum.
            Case {
                params: &[("iops", "16000")],
                size: 1,
                iops: Some(3000),
            },
            // iopsPerGB x size.
            Case {
                params: &[("type", "io1"), ("iopsPerGB", "10")],
                size: 100,
                iops: Some(1000),
            },
            Case {
                params: &[("type", "io2"), ("iopsPerGB", "4294967295")],
                size: 65_536,
                iops: Some(256_000),
            },
            Case {
                params: &[("iopsPerGB", "50")],
                size: 100,
                iops: Some(5000),
            },
            // Below the minimum, raised when allowed.
            Case {
                params: &[
                    ("type", "io1"),
                    ("iopsPerGB", "2"),
                    ("allowAutoIOPSPerGBIncrease", "true"),
                ],
                size: 10,
                iops: Some(100),
            },
            Case {
                params: &[("iops", "1000"), ("allowAutoIOPSPerGBIncrease", "true")],
                size: 100,
                iops: Some(3000),
            },
        ];
        for (i, c) in cases.iter().enumerate() {
            let got = perf_of(c.params, c.size).unwrap_or_else(|e| panic!("case {i}: {e}"));
            assert_eq!(got.iops, c.iops, "case {i}: {:?}", c.params);
        }
    }

    #[test]
    fn iops_errors() {
        let msg = invalid(perf_of(&[("type", "io1"), ("iopsPerGB", "2")], 10));
        assert!(
            msg.contains("20") && msg.contains("100") && msg.contains("allowAutoIOPSPerGBIncrease"),
            "{msg}"
        );
        invalid(perf_of(&[("iops", "2999")], 100));
        let msg = invalid(create(&[("iops", "3000"), ("iopsPerGB", "10")]));
        assert!(msg.contains("iops") && msg.contains("iopsPerGB"), "{msg}");
        for t in ["gp2", "st1", "sc1", "standard"] {
            let msg = invalid(create(&[("type", t), ("iops", "3000")]));
            assert!(msg.contains(t) && msg.contains("\"iops\""), "{msg}");
            invalid(create(&[("type", t), ("iopsPerGB", "3")]));
        }
        let msg = invalid(perf_of(&[("type", "io2")], 100));
        assert!(msg.contains("io2") && msg.contains("iopsPerGB"), "{msg}");
        // Mutated after parsing: performance() checks again.
        let mut p = create(&[("iops", "4000")]).unwrap();
        p.iops_per_gb = Some(3);
        invalid(p.performance(100));
    }

    // ---- throughput ----

    #[test]
    fn throughput_rules() {
        assert_eq!(perf_of(&[], 100).unwrap(), perf(Some(3000), Some(125)));
        assert_eq!(perf_of(&[("throughput", "750")], 100).unwrap().throughput, Some(750));
        let msg = invalid(perf_of(&[("throughput", "751")], 100));
        assert!(
            msg.contains("751") && msg.contains("3004") && msg.contains("3000 IOPS"),
            "{msg}"
        );
        assert_eq!(
            perf_of(&[("throughput", "2000"), ("iops", "8000")], 100).unwrap(),
            perf(Some(8000), Some(2000))
        );
        invalid(perf_of(&[("throughput", "2000"), ("iops", "7999")], 100));
        // The ratio applies to the IOPS after capping: 20 GiB allows 10,000 IOPS.
        invalid(perf_of(&[("throughput", "2000"), ("iops", "8000")], 10));
        let msg = invalid(create(&[("throughput", "2001"), ("iops", "16000")]));
        assert!(msg.contains("125–2000"), "{msg}");
        invalid(create(&[("throughput", "124")]));
        for t in ["gp2", "io1", "io2", "st1", "sc1", "standard"] {
            let msg = invalid(
                create(&[("type", t), ("throughput", "200"), ("iops", "1000")]).and_then(|p| p.performance(1000)),
            );
            assert!(msg.contains("throughput") || msg.contains("iops"), "{msg}");
            let msg = invalid(create(&[("type", t), ("throughput", "200")]));
            assert!(msg.contains("\"throughput\"") && msg.contains(t), "{msg}");
        }
        assert_eq!(
            perf_of(&[("type", "io2"), ("iops", "5000")], 100).unwrap(),
            perf(Some(5000), None)
        );
        assert_eq!(
            create(&[("throughput", "0")]).unwrap().throughput,
            None,
            "0 means unset, as in Go"
        );
    }

    // ---- keys and values ----

    #[test]
    fn accepted_keys_and_case_insensitivity() {
        let p = create(&[
            ("TYPE", "IO2"),
            ("IOPSPERGB", "100"),
            ("AllowAutoIopsPerGbIncrease", "True"),
            ("allowAutoIOPSIncreaseOnModify", "1"),
            ("Encrypted", "t"),
            ("KMSKEYID", "arn:aws:kms:us-east-1:123:key/abc"),
            ("blockExpress", "true"),
            ("csi.storage.k8s.io/pvc/name", "data"),
            ("CSI.storage.k8s.io/pvc/namespace", "prod"),
            ("csi.storage.k8s.io/pv/name", "pvc-1"),
            ("fstype", "whatever"),
            ("volumeInitializationRate", "300"),
        ])
        .unwrap();
        assert_eq!(p.volume_type, VolumeType::Io2);
        assert_eq!(p.iops_per_gb, Some(100));
        assert!(p.allow_auto_iops_per_gb_increase && p.allow_auto_iops_increase_on_modify);
        assert!(p.encrypted && p.block_express);
        assert_eq!(p.kms_key_id.as_deref(), Some("arn:aws:kms:us-east-1:123:key/abc"));
        assert_eq!(
            (p.pvc_name.as_deref(), p.pvc_namespace.as_deref(), p.pv_name.as_deref()),
            (Some("data"), Some("prod"), Some("pvc-1"))
        );
        assert_eq!(p.volume_initialization_rate, Some(300));
        assert_eq!(create(&[]).unwrap(), CreateParams::default());
        assert_eq!(create(&[("type", "")]).unwrap().volume_type, VolumeType::Gp3);
        assert!(
            create(&[("kmsKeyId", "k")]).unwrap().encrypted,
            "a key implies encryption"
        );
        assert_eq!(create(&[("kmsKeyId", "")]).unwrap().kms_key_id, None);
    }

    #[test]
    fn unknown_and_duplicate_keys() {
        let msg = invalid(create(&[("iopsPerGiB", "10")]));
        assert!(msg.contains("\"iopsPerGiB\"") && msg.contains("iopsPerGB"), "{msg}");
        invalid(create(&[("csi.storage.k8s.io/provisioner-secret-name", "s")]));
        invalid(create(&[("", "x")]));
        let msg = invalid(create(&[("iops", "3000"), ("IOPS", "4000")]));
        assert!(msg.contains("\"IOPS\"") && msg.contains("\"iops\""), "{msg}");
        let long_key = "k".repeat(10_000);
        let msg = invalid(create(&[(long_key.as_str(), "v")]));
        assert!(msg.len() < 1500, "long keys are cut in messages ({} bytes)", msg.len());
    }

    #[test]
    fn bad_values() {
        for (key, value) in [
            ("encrypted", "maybe"),
            ("encrypted", "yes"),
            ("encrypted", " true"),
            ("encrypted", ""),
            ("blockExpress", "on"),
            ("ext4BigAlloc", "2"),
        ] {
            let msg = invalid(create(&[(key, value)]));
            assert!(
                msg.contains(key) && msg.contains(&format!("{value:?}")) && msg.contains("boolean"),
                "{msg}"
            );
        }
        for good in ["1", "t", "T", "TRUE", "true", "True"] {
            assert!(create(&[("encrypted", good)]).unwrap().encrypted, "{good}");
        }
        for good in ["0", "f", "F", "FALSE", "false", "False"] {
            assert!(!create(&[("encrypted", good)]).unwrap().encrypted, "{good}");
        }
        assert_eq!(
            invalid(create(&[("iops", "abc")])),
            "parameter \"iops\": value \"abc\" is not a whole number"
        );
        assert!(invalid(create(&[("iops", "-5")])).contains("negative"));
        assert!(invalid(create(&[("iops", "99999999999999999999999")])).contains("too large"));
        assert!(invalid(create(&[("iops", "4294967296")])).contains("too large"));
        for bad in ["", " 100", "100 ", "1e3", "1_000", "0x10", "３０００"] {
            invalid(create(&[("iops", bad)]));
        }
        assert_eq!(
            create(&[("iops", "+4000")]).unwrap().iops,
            Some(4000),
            "Go's ParseInt takes a sign"
        );
        for rate in ["99", "301", "x"] {
            invalid(create(&[("volumeInitializationRate", rate)]));
        }
        assert_eq!(
            create(&[("volumeInitializationRate", "100")])
                .unwrap()
                .volume_initialization_rate,
            Some(100)
        );
        assert_eq!(
            create(&[("volumeInitializationRate", "0")])
                .unwrap()
                .volume_initialization_rate,
            None
        );
    }

    #[test]
    fn huge_and_odd_values_do_not_panic() {
        let huge = "9".repeat(10_240);
        let unicode = "ü€😀".repeat(2_000);
        for key in [
            "type",
            "iops",
            "iopsPerGB",
            "throughput",
            "encrypted",
            "blockSize",
            "inodeSize",
            "bytesPerInode",
            "numberOfInodes",
            "ext4ClusterSize",
            "volumeInitializationRate",
            "csi.storage.k8s.io/fstype",
            "tagSpecification_1",
        ] {
            for value in [huge.as_str(), unicode.as_str(), "", "=", "{{", "\u{0}"] {
                let r = create(&[(key, value)]);
                if let Err(e) = &r {
                    assert!(e.to_string().len() < 2000, "{key}: message too long");
                }
                let _ = r.and_then(|p| p.performance(100));
            }
        }
        let p = create(&[("kmsKeyId", huge.as_str())]).unwrap();
        assert_eq!(p.kms_key_id.map(|k| k.len()), Some(10_240));
    }

    // ---- mkfs ----

    #[test]
    fn mkfs_options() {
        let p = create(&[
            ("blockSize", "4096"),
            ("inodeSize", "512"),
            ("bytesPerInode", "16k"),
            ("numberOfInodes", "100000"),
            ("ext4BigAlloc", "true"),
            ("ext4ClusterSize", "64K"),
        ])
        .unwrap();
        assert_eq!(
            p.mkfs,
            MkfsOptions {
                block_size: Some(4096),
                inode_size: Some(512),
                bytes_per_inode: Some(16_384),
                number_of_inodes: Some(100_000),
                ext4_bigalloc: true,
                ext4_cluster_size: Some(65_536),
            }
        );
        let json = serde_json::to_string(&p.mkfs).unwrap();
        assert_eq!(serde_json::from_str::<MkfsOptions>(&json).unwrap(), p.mkfs);
        assert!(create(&[]).unwrap().mkfs.is_empty());
        assert_eq!(
            create(&[
                ("csi.storage.k8s.io/fstype", "xfs"),
                ("blockSize", "4096"),
                ("inodeSize", "2048")
            ])
            .unwrap()
            .mkfs
            .inode_size,
            Some(2048)
        );
        // What mkfs.xfs refuses for its (CRC-enabled) filesystems is refused here, not at
        // NodeStageVolume: blocks under 1 KiB, inodes under 512 bytes or over half a block.
        for params in [
            &[("csi.storage.k8s.io/fstype", "xfs"), ("blockSize", "512")][..],
            &[("csi.storage.k8s.io/fstype", "xfs"), ("inodeSize", "256")],
            &[
                ("csi.storage.k8s.io/fstype", "xfs"),
                ("blockSize", "1024"),
                ("inodeSize", "1024"),
            ],
        ] {
            invalid(create(params));
        }

        // Fine for ext4 (the filesystem assumed while none is named), not for xfs.
        let ext_only = create(&[("inodeSize", "256")]).unwrap();
        assert!(ext_only.validate_for_fs(FsType::Ext4).is_ok());
        invalid(ext_only.validate_for_fs(FsType::Xfs));
        let rejected: &[&[(&str, &str)]] = &[
            &[("blockSize", "3000")],
            &[("blockSize", "131072")],
            &[("blockSize", "4x")],
            &[("blockSize", "k")],
            &[("blockSize", "-4096")],
            &[("blockSize", "8g")],
            &[("inodeSize", "64")],
            &[("inodeSize", "8192")],
            &[("bytesPerInode", "512")],
            &[("numberOfInodes", "0")],
            &[("numberOfInodes", "4294967296")],
            &[("ext4ClusterSize", "65536")],
            &[("ext4BigAlloc", "true"), ("ext4ClusterSize", "2048")],
            &[("ext4BigAlloc", "true"), ("ext4ClusterSize", "1073741824")],
            &[("csi.storage.k8s.io/fstype", "xfs"), ("bytesPerInode", "4096")],
            &[("csi.storage.k8s.io/fstype", "xfs"), ("numberOfInodes", "1000")],
            &[("csi.storage.k8s.io/fstype", "xfs"), ("ext4BigAlloc", "true")],
            &[("csi.storage.k8s.io/fstype", "xfs"), ("inodeSize", "128")],
            &[("csi.storage.k8s.io/fstype", "ext3"), ("ext4BigAlloc", "true")],
            &[("csi.storage.k8s.io/fstype", "ext2"), ("ext4EncryptionSupport", "true")],
        ];
        for params in rejected {
            invalid(create(params));
        }
        let msg = invalid(create(&[
            ("csi.storage.k8s.io/fstype", "xfs"),
            ("bytesPerInode", "4096"),
        ]));
        assert!(msg.contains("bytesPerInode") && msg.contains("xfs"), "{msg}");
        assert!(invalid(create(&[("ext4ClusterSize", "65536")])).contains("ext4BigAlloc"));
        // Options valid at parse time (ext4 assumed) are checked again against the capability.
        let p = create(&[("ext4BigAlloc", "true"), ("ext4EncryptionSupport", "true")]).unwrap();
        assert!(p.validate_for_fs(FsType::Ext4).is_ok());
        invalid(p.validate_for_fs(FsType::Xfs));
    }

    // ---- tags and templates ----

    #[test]
    fn plain_tags() {
        let p = create(&[
            ("tagSpecification_1", "key1=value1"),
            ("tagSpecification_2", "key2=hello world"),
            ("tagSpecification_3", "key3="),
            ("TAGSPECIFICATION_4", "k4=a=b"),
            ("tagSpecificationX", "k5=v"),
        ])
        .unwrap();
        let want: BTreeMap<String, String> = [
            ("key1", "value1"),
            ("key2", "hello world"),
            ("key3", ""),
            ("k4", "a=b"),
            ("k5", "v"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(p.tags, want);
        assert!(invalid(create(&[("tagSpecification_1", "novalue")])).contains("key=value"));
        assert!(invalid(create(&[("tagSpecification_1", "=v")])).contains("empty"));
        let msg = invalid(create(&[("tagSpecification_1", "k=a"), ("tagSpecification_2", "k=b")]));
        assert!(
            msg.contains("tagSpecification_1") && msg.contains("tagSpecification_2"),
            "{msg}"
        );
    }

    #[test]
    fn reserved_and_oversized_tags() {
        for key in [
            "CSIVolumeName",
            "CSIVolumeSnapshotName",
            "ebs.csi.aws.com/cluster",
            "ebs.csi.aws.com/iopsPerGb",
            "kubernetes.io/cluster/abc",
            "kubernetes.io/created-for/pvc/name",
            "kubernetes.io/created-for/pvc/namespace",
            "kubernetes.io/created-for/pv/name",
            "aws:foo",
            "AWS:foo",
            "Aws:x",
        ] {
            let msg = invalid(create(&[("tagSpecification_1", &format!("{key}=v"))]));
            assert!(msg.contains(key) && msg.contains("tagSpecification_1"), "{msg}");
        }
        for key in ["Name", "KubernetesCluster", "awsome", "team"] {
            assert!(create(&[("tagSpecification_1", &format!("{key}=v"))]).is_ok(), "{key}");
        }
        let k128 = "k".repeat(128);
        assert!(create(&[("tagSpecification_1", &format!("{k128}=v"))]).is_ok());
        invalid(create(&[("tagSpecification_1", &format!("{k128}k=v"))]));
        let v256 = "ü".repeat(256);
        assert!(
            create(&[("tagSpecification_1", &format!("k={v256}"))]).is_ok(),
            "limits count characters"
        );
        let msg = invalid(create(&[("tagSpecification_1", &format!("k={v256}x"))]));
        assert!(msg.contains("257") && msg.len() < 500, "{msg}");
        let ten_kb = "x".repeat(10_240);
        invalid(create(&[("tagSpecification_1", &format!("k={ten_kb}"))]));
        invalid(create(&[("tagSpecification_1", &format!("{ten_kb}=v"))]));
        let many: Vec<(String, String)> = (0..51)
            .map(|i| (format!("tagSpecification_{i}"), format!("k{i}=v")))
            .collect();
        let params: HashMap<String, String> = many.iter().cloned().collect();
        assert!(invalid(parse_create_params(&params)).contains("51 tags"));
        let params: HashMap<String, String> = many[..50].iter().cloned().collect();
        assert_eq!(parse_create_params(&params).unwrap().tags.len(), 50);
    }

    fn render(src: &str) -> std::result::Result<String, String> {
        template::render_for_test(src, "ns-prod-abcdef")
    }

    #[test]
    fn template_functions() {
        let cases = [
            ("{{ .PVCNamespace }}", "ns-prod-abcdef"),
            ("{{ .PVCName }}/{{ .PVName }}", "data-db-0/pvc-1234"),
            ("{{ .PVCNamespace | contains \"prod\" }}", "true"),
            ("{{ .PVCNamespace | contains \"dev\" }}", "false"),
            ("{{ contains \"prod\" .PVCNamespace }}", "true"),
            ("{{ .PVCNamespace | field \"-\" 2 | toUpper }}", "ABCDEF"),
            ("{{ .PVCNamespace | field \"-\" 0 }}", "ns"),
            ("{{ field \"-\" 1 .PVCNamespace }}", "prod"),
            ("{{ field \"\" 1 \"añb\" }}", "ñ"),
            ("{{ .PVCNamespace | substring 3 7 }}", "prod"),
            ("{{ substring 0 2 .PVCName }}", "da"),
            ("{{ .PVCNamespace | substring -1 2 }}", "ns"),
            ("{{ .PVCNamespace | substring 8 100 }}", "abcdef"),
            ("{{ .PVCNamespace | substring 8 -1 }}", "abcdef"),
            ("{{ toUpper .PVCName }}", "DATA-DB-0"),
            ("{{ \"MiXeD\" | toLower }}", "mixed"),
            ("{{ toUpper \"straße\" }}", "STRAßE"),
            ("{{ toUpper (field \"-\" 1 .PVCNamespace) }}", "PROD"),
            ("{{ 42 }}-{{ -7 }}-{{ true }}", "42--7-true"),
            ("{{ `raw \"q\"` }}", "raw \"q\""),
            ("{{ \"a}}b\" }}", "a}}b"),
            ("{{ \"tab\\there\\u00e9\" }}", "tab\there\u{e9}"),
            ("a  {{- .PVName -}}  b", "apvc-1234b"),
            ("a {{- \"x\" }} b", "ax b"),
            ("{{/* note */}}x{{- /* c */ -}} y", "xy"),
            ("plain text }} here", "plain text }} here"),
            ("", ""),
        ];
        for (src, want) in cases {
            assert_eq!(render(src).as_deref(), Ok(want), "{src}");
        }
    }

    #[test]
    fn template_errors() {
        let cases = [
            ("{{ printf \"%s\" .PVCName }}", "not allowed"),
            ("{{ call .PVCName }}", "not allowed"),
            ("{{ index .PVCName 1 }}", "not allowed"),
            ("{{ html .PVCName }}", "not allowed"),
            ("{{ len .PVCName }}", "not allowed"),
            ("{{ .Namespace }}", "unknown field"),
            ("{{ .pvcName }}", "unknown field"),
            ("{{ .PVCName.Foo }}", "no fields"),
            ("{{ . }}", "alone"),
            ("{{ $x := 1 }}", "variables"),
            ("{{ if true }}x{{ end }}", "not supported"),
            ("{{ .PVCName", "unclosed"),
            ("{{ \"abc }}", "unterminated"),
            ("{{ }}", "missing value"),
            ("{{ .PVCName | }}", "missing value"),
            ("{{ field \"-\" 9 .PVCNamespace }}", "out of range"),
            ("{{ field \"-\" -1 .PVCNamespace }}", "out of range"),
            ("{{ field \"-\" \"1\" .PVCNamespace }}", "must be an integer"),
            ("{{ field 1 \"-\" .PVCNamespace }}", "must be a string"),
            ("{{ toUpper }}", "wrong number"),
            ("{{ toUpper \"a\" \"b\" }}", "wrong number"),
            ("{{ contains \"a\" }}", "wrong number"),
            ("{{ substring 5 2 .PVCName }}", "out of range"),
            ("{{ substring 100 200 .PVCName }}", "out of range"),
            ("{{ substring -1 100 .PVCName }}", "out of range"),
            ("{{ substring 0 1 \"ñ\" }}", "splits"),
            ("{{ .PVCName | .PVName }}", "non-function"),
            ("{{ .PVCName \"x\" }}", "non-function"),
            ("{{ 0x10 }}", "unsupported number"),
            ("{{ 99999999999999999999 }}", "out of range"),
            ("{{ (toUpper \"a\" }}", "unclosed"),
            ("{{ toUpper \"a\") }}", "unexpected"),
            ("{{ 'a' }}", "character"),
            ("{{ \"\\q\" }}", "escape"),
            ("{{/* open", "unclosed comment"),
            ("{{/* x */ y }}", "comment ends"),
        ];
        for (src, want) in cases {
            let err = render(src).expect_err(src);
            assert!(err.contains(want), "{src}: {err}");
        }
        let deep = format!("{{{{ {}\"a\"{} }}}}", "(".repeat(5000), ")".repeat(5000));
        assert!(render(&deep).unwrap_err().contains("nested"));
        let ok = format!("{{{{ {}\"a\"{} }}}}", "(".repeat(16), ")".repeat(16));
        assert_eq!(render(&ok).as_deref(), Ok("a"));
    }

    #[test]
    fn templated_tags_in_create() {
        let p = create(&[
            ("csi.storage.k8s.io/pvc/name", "ebs-claim"),
            ("csi.storage.k8s.io/pvc/namespace", "ns-prod-abcdef"),
            ("csi.storage.k8s.io/pv/name", "pvc-9"),
            ("tagSpecification_1", "backup={{ .PVCNamespace | contains \"prod\" }}"),
            (
                "tagSpecification_2",
                "billingID={{ .PVCNamespace | field \"-\" 2 | toUpper }}",
            ),
            ("tagSpecification_3", "pv={{ .PVName }}"),
        ])
        .unwrap();
        assert_eq!(p.tags["backup"], "true");
        assert_eq!(p.tags["billingID"], "ABCDEF");
        assert_eq!(p.tags["pv"], "pvc-9");
        // Without --extra-create-metadata the fields are empty, as in Go.
        assert_eq!(
            create(&[("tagSpecification_1", "pv={{ .PVName }}")]).unwrap().tags["pv"],
            ""
        );
        let msg = invalid(create(&[("tagSpecification_7", "k={{ printf \"x\" }}")]));
        assert!(
            msg.contains("tagSpecification_7") && msg.contains("printf") && msg.contains("field, substring"),
            "{msg}"
        );
        let msg = invalid(create(&[("tagSpecification_1", "k={{ toUpper .PVCName ")]));
        assert!(msg.contains("unclosed"), "{msg}");
        // A template yielding more than 256 characters.
        let long = format!("k={{{{ \"{}\" }}}}", "x".repeat(300));
        invalid(create(&[("tagSpecification_1", long.as_str())]));
    }

    // ---- modify ----

    #[test]
    fn parse_modify() {
        let m = modify(&[("type", "io2"), ("iops", "5000")]).unwrap();
        assert_eq!(
            (m.volume_type, m.iops, m.throughput),
            (Some(VolumeType::Io2), Some(5000), None)
        );
        assert!(m.changes_volume() && !m.changes_tags());
        assert_eq!(
            modify(&[("volumeType", "gp2")]).unwrap().volume_type,
            Some(VolumeType::Gp2)
        );
        assert_eq!(
            modify(&[("volumeType", "gp2"), ("type", "io1"), ("iops", "200")])
                .unwrap()
                .volume_type,
            Some(VolumeType::Io1),
            "type wins over the deprecated volumeType"
        );
        let m = modify(&[
            ("tagSpecification_1", "location=Seattle"),
            ("tagSpecification_2", "ns={{ .PVCNamespace }}"),
            ("tagDeletion_1", "cost-center"),
            ("csi.storage.k8s.io/pvc/namespace", "team-a"),
        ])
        .unwrap();
        assert!(!m.changes_volume() && m.changes_tags());
        assert_eq!(m.tags["location"], "Seattle");
        assert_eq!(m.tags["ns"], "team-a");
        assert!(m.tag_deletions.contains("cost-center"));
        assert_eq!(modify(&[("iopsPerGB", "50")]).unwrap().iops_per_gb, Some(50));
        assert_eq!(
            modify(&[("allowAutoIOPSIncreaseOnModify", "true")])
                .unwrap()
                .allow_auto_iops_increase_on_modify,
            Some(true)
        );

        assert!(invalid(modify(&[])).contains("nothing to modify"));
        invalid(modify(&[("csi.storage.k8s.io/pvc/name", "x")]));
        invalid(modify(&[("type", "")]));
        invalid(modify(&[("iops", "0")]));
        let msg = invalid(modify(&[("encrypted", "true")]));
        assert!(
            msg.contains("\"encrypted\"") && msg.contains("ControllerModifyVolume"),
            "{msg}"
        );
        invalid(modify(&[("type", "gp4")]));
        invalid(modify(&[("iops", "x")]));
        invalid(modify(&[("iops", "3000"), ("iopsPerGB", "10")]));
        invalid(modify(&[("type", "gp2"), ("iops", "3000")]));
        invalid(modify(&[("type", "io2"), ("throughput", "200")]));
        invalid(modify(&[("tagDeletion_1", "CSIVolumeName")]));
        invalid(modify(&[("tagDeletion_1", "")]));
        invalid(modify(&[("tagSpecification_1", "a=b"), ("tagDeletion_1", "a")]));
        invalid(modify(&[("tagSpecification_1", "kubernetes.io/x=b")]));
        invalid(modify(&[("tagSpecification_1", "a={{ call }}")]));
    }

    #[test]
    fn modified_performance_cases() {
        struct Case {
            current_type: VolumeType,
            size: u64,
            current: Performance,
            change: &'static [(&'static str, &'static str)],
            allow: bool,
            want: (VolumeType, Performance),
        }
        use VolumeType::*;
        let cases = [
            // Same type: unspecified figures are kept.
            Case {
                current_type: Gp3,
                size: 100,
                current: perf(Some(6000), Some(500)),
                change: &[("iops", "8000")],
                allow: false,
                want: (Gp3, perf(Some(8000), Some(500))),
            },
            Case {
                current_type: Gp3,
                size: 100,
                current: perf(Some(6000), Some(500)),
                change: &[("throughput", "250")],
                allow: false,
                want: (Gp3, perf(Some(6000), Some(250))),
            },
            Case {
                current_type: Io2,
                size: 100,
                current: perf(Some(20_000), None),
                change: &[("tagSpecification_1", "a=b")],
                allow: false,
                want: (Io2, perf(Some(20_000), None)),
            },
            // New type: EC2's defaults.
            Case {
                current_type: Gp2,
                size: 100,
                current: perf(Some(300), None),
                change: &[("type", "gp3")],
                allow: false,
                want: (Gp3, perf(Some(3000), Some(125))),
            },
            Case {
                current_type: Gp3,
                size: 100,
                current: perf(Some(6000), Some(500)),
                change: &[("type", "io2")],
                allow: false,
                want: (Io2, perf(Some(3000), None)),
            },
            Case {
                current_type: Gp3,
                size: 1000,
                current: perf(Some(3000), Some(125)),
                change: &[("type", "gp2")],
                allow: false,
                want: (Gp2, perf(Some(3000), None)),
            },
            Case {
                current_type: Gp3,
                size: 500,
                current: perf(Some(3000), Some(125)),
                change: &[("type", "st1")],
                allow: false,
                want: (St1, perf(None, None)),
            },
            // Capping like create.
            Case {
                current_type: Io1,
                size: 10,
                current: perf(Some(500), None),
                change: &[("iops", "50000")],
                allow: false,
                want: (Io1, perf(Some(500), None)),
            },
            Case {
                current_type: Gp3,
                size: 1000,
                current: perf(Some(3000), Some(125)),
                change: &[("iops", "90000")],
                allow: false,
                want: (Gp3, perf(Some(80_000), Some(125))),
            },
            Case {
                current_type: Gp2,
                size: 10,
                current: perf(Some(100), None),
                change: &[("type", "io1")],
                allow: false,
                want: (Io1, perf(Some(500), None)),
            },
            Case {
                current_type: Io2,
                size: 100,
                current: perf(Some(1000), None),
                change: &[("iopsPerGB", "50")],
                allow: false,
                want: (Io2, perf(Some(5000), None)),
            },
            // Below the minimum.
            Case {
                current_type: Io2,
                size: 100,
                current: perf(Some(1000), None),
                change: &[("iops", "50")],
                allow: true,
                want: (Io2, perf(Some(100), None)),
            },
        ];
        for (i, c) in cases.iter().enumerate() {
            let change = modify(c.change).unwrap();
            let got = modified_performance(c.current_type, c.size, &c.current, &change, c.allow)
                .unwrap_or_else(|e| panic!("case {i}: {e}"));
            assert_eq!(got, c.want, "case {i}");
        }
        fn change(pairs: &[(&str, &str)]) -> ModifyParams {
            parse_modify_params(&map(pairs)).unwrap()
        }
        let gp3 = perf(Some(3000), Some(125));
        invalid(modified_performance(
            Io2,
            100,
            &perf(Some(1000), None),
            &change(&[("iops", "50")]),
            false,
        ));
        invalid(modified_performance(
            Gp3,
            100,
            &gp3,
            &change(&[("iops", "2000")]),
            false,
        ));
        let msg = invalid(modified_performance(
            Gp3,
            100,
            &gp3,
            &change(&[("throughput", "1000")]),
            false,
        ));
        assert!(msg.contains("4000"), "{msg}");
        invalid(modified_performance(
            Gp3,
            100,
            &perf(Some(8000), Some(2000)),
            &change(&[("iops", "4000")]),
            false,
        ));
        invalid(modified_performance(
            Gp2,
            100,
            &perf(Some(300), None),
            &change(&[("iops", "4000")]),
            false,
        ));
        invalid(modified_performance(
            Io1,
            100,
            &perf(Some(300), None),
            &change(&[("throughput", "300")]),
            false,
        ));
        let msg = out_of_range(modified_performance(Gp3, 100, &gp3, &change(&[("type", "st1")]), false));
        assert!(msg.contains("st1") && msg.contains("125"), "{msg}");
        out_of_range(modified_performance(
            Gp3,
            20_000,
            &gp3,
            &change(&[("type", "io1")]),
            false,
        ));
    }

    #[test]
    fn mutable_parameters_at_create() {
        let params = map(&[
            ("type", "gp3"),
            ("iopsPerGB", "10"),
            ("tagSpecification_1", "a=1"),
            ("tagSpecification_2", "b=2"),
            ("csi.storage.k8s.io/pvc/name", "claim"),
        ]);
        let mutable = map(&[
            ("type", "io2"),
            ("iops", "5000"),
            ("tagSpecification_1", "a=9"),
            ("tagSpecification_2", "c={{ .PVCName }}"),
            ("tagDeletion_1", "b"),
        ]);
        let p = parse_create_request(&params, &mutable).unwrap();
        assert_eq!(
            (p.volume_type, p.iops, p.iops_per_gb),
            (VolumeType::Io2, Some(5000), None)
        );
        assert_eq!(
            p.tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            ["a=9", "c=claim"]
        );
        invalid(parse_create_request(
            &map(&[("type", "gp3"), ("throughput", "200")]),
            &map(&[("type", "io1")]),
        ));
        assert!(
            parse_create_request(&params, &HashMap::new()).is_ok(),
            "an empty VAC is no error at creation"
        );
    }

    #[test]
    fn resize_with_iops_per_gb() {
        assert_eq!(iops_after_resize(VolumeType::Io2, 200, 50, Some(5000)), Some(10_000));
        assert_eq!(
            iops_after_resize(VolumeType::Io2, 100, 50, Some(5000)),
            None,
            "no change"
        );
        assert_eq!(
            iops_after_resize(VolumeType::Io2, 50, 50, Some(5000)),
            None,
            "never lowered"
        );
        assert_eq!(iops_after_resize(VolumeType::Io1, 10_000, 50, Some(5000)), Some(64_000));
        assert_eq!(iops_after_resize(VolumeType::Gp3, 4, 10, None), Some(3000));
        assert_eq!(iops_after_resize(VolumeType::Gp2, 1000, 10, None), None);
        assert_eq!(iops_after_resize(VolumeType::Io2, 100, 0, None), None);
    }

    /// Random strings built from the characters the lexers care about: nothing may panic.
    #[test]
    fn fuzz_templates_and_values() {
        const PIECES: [&str; 24] = [
            "{{",
            "}}",
            "{{-",
            "-}}",
            " ",
            "|",
            "(",
            ")",
            "\"",
            "`",
            "'",
            "\\",
            ".PVCName",
            ".",
            "field",
            "substring",
            "toUpper",
            "contains",
            "-1",
            "2",
            "\"-\"",
            "ü",
            "/*",
            "*/",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            usize::try_from(seed >> 33).unwrap_or(0)
        };
        for _ in 0..20_000 {
            let len = next() % 12;
            let src: String = (0..len).map(|_| PIECES[next() % PIECES.len()]).collect();
            let _ = render(&src);
            let params = map(&[("tagSpecification_1", &format!("k={src}")), ("iops", &src)]);
            let _ = parse_create_params(&params);
            let _ = parse_modify_params(&map(&[("tagSpecification_1", &format!("k={src}"))]));
        }
    }

    #[test]
    fn create_params_serde_round_trip() {
        let p = create(&[
            ("type", "io2"),
            ("iops", "4000"),
            ("tagSpecification_1", "a=b"),
            ("csi.storage.k8s.io/fstype", "xfs"),
        ])
        .unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("\"io2\"") && json.contains("\"xfs\""), "{json}");
        assert_eq!(serde_json::from_str::<CreateParams>(&json).unwrap(), p);
    }
}
