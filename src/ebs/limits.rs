//! What EBS allows per volume type: the one limits table, with its source.

use super::VolumeType;

/// EBS Provisioned Rate for Volume Initialization, MiB/s (EC2 CreateVolume
/// `VolumeInitializationRate`: "Valid range: 100 - 300 MiB/s"). EC2 accepts it only for volumes
/// created from a snapshot: the caller must drop it for empty volumes (Go issue #2691).
pub const MIN_VOLUME_INITIALIZATION_RATE: u32 = 100;
pub const MAX_VOLUME_INITIALIZATION_RATE: u32 = 300;

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
