//! Size, IOPS and throughput arithmetic shared by create, modify and resize: what a volume gets
//! for what it asks, capped and checked as EC2 does.

use serde::{Deserialize, Serialize};

use super::{DEFAULT_SIZE_GIB, GIB, ModifyParams, TypeLimits, VolumeType, limits};
use crate::error::{Error, Result};

/// IOPS EC2 gives a volume whose type changes to gp3, io1 or io2 when ModifyVolume names no IOPS.
const MODIFY_DEFAULT_IOPS: u64 = 3000;

/// What a volume really gets, as EC2 DescribeVolumes reports it: IOPS for gp2 (its size-derived
/// baseline), gp3, io1 and io2; throughput for gp3 only. None where EBS provisions nothing
/// (st1, sc1, standard: performance follows size and burst credits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Performance {
    pub iops: Option<u32>,
    /// MiB/s.
    pub throughput: Option<u32>,
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

pub fn check_size(t: VolumeType, gib: u64) -> Result<()> {
    let l = limits(t);
    if gib < l.min_gib || gib > l.max_gib {
        return Err(Error::OutOfRange(format!(
            "size {gib} GiB is outside {}–{} GiB for type \"{t}\"",
            l.min_gib, l.max_gib
        )));
    }
    Ok(())
}

/// `iops`, else `iopsPerGB` x size; None when neither is set.
pub(super) fn requested_iops(iops: Option<u32>, per_gib: Option<u32>, size_gib: u64) -> Option<u64> {
    iops.map(u64::from)
        .or_else(|| per_gib.map(|r| u64::from(r).saturating_mul(size_gib)))
}

/// The Go driver's `capIOPS`: raise to the minimum if allowed (else fail), cap at the maximum and
/// at the per-GiB ratio. The ratio never caps below the minimum: a 1 GiB gp3 volume still gets
/// its 3,000 baseline (Go skips the ratio cap there and lets EC2 reject the request).
pub(super) fn fit_iops(t: VolumeType, size_gib: u64, requested: u64, allow_increase: bool) -> Result<u32> {
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
pub(super) fn derived_iops(t: VolumeType, size_gib: u64) -> Option<u32> {
    let l = limits(t);
    let per_gib = l.baseline_iops_per_gib?;
    let iops = size_gib
        .saturating_mul(u64::from(per_gib))
        .clamp(u64::from(l.min_iops), u64::from(l.max_iops));
    u32::try_from(iops).ok()
}

/// EBS counts throughput in I/Os of up to 256 KiB: a volume's IOPS carry at most a quarter MiB/s
/// each (Amazon EBS User Guide, "Amazon EBS volume types": gp2 "Throughput = IOPS x I/O size, up
/// to 250 MiB/s"; io1 "up to 500 MiB/s for up to 32,000 IOPS, 1,000 MiB/s above"; io2 Block
/// Express up to 4,000 MiB/s).
const MIBS_PER_IOPS_DEN: u64 = 4;
const IO1_THROUGHPUT_AT_32K_IOPS: u32 = 500;
const IO1_HIGH_IOPS: u32 = 32_000;

/// What a volume delivers without bursting: gp2 its size-derived IOPS and the throughput they
/// carry; gp3 what is provisioned (or its defaults when EC2 reports none); io1/io2 their
/// provisioned IOPS and the throughput those carry, up to the type's ceiling. st1, sc1 and
/// standard deliver by burst credits and get None.
pub fn baseline(t: VolumeType, size_gib: u64, iops: Option<u32>, throughput: Option<u32>) -> Performance {
    let l = limits(t);
    let carried = |iops: u32, ceiling: u32| {
        let mibs = (u64::from(iops) / MIBS_PER_IOPS_DEN).min(u64::from(ceiling));
        u32::try_from(mibs).unwrap_or(ceiling)
    };
    match t {
        VolumeType::Gp2 => {
            let iops = derived_iops(t, size_gib);
            Performance {
                iops,
                throughput: iops.map(|i| carried(i, l.max_throughput)),
            }
        }
        VolumeType::Gp3 => Performance {
            iops: iops.or(l.default_iops),
            throughput: throughput.or(l.default_throughput),
        },
        VolumeType::Io1 | VolumeType::Io2 => {
            let ceiling = if t == VolumeType::Io1 && iops.is_some_and(|i| i <= IO1_HIGH_IOPS) {
                IO1_THROUGHPUT_AT_32K_IOPS
            } else {
                l.max_throughput
            };
            Performance {
                iops,
                throughput: iops.map(|i| carried(i, ceiling)),
            }
        }
        VolumeType::Sc1 | VolumeType::St1 | VolumeType::Standard => Performance::default(),
    }
}

pub fn check_iops_request(t: VolumeType, iops: Option<u32>, per_gib: Option<u32>) -> Result<()> {
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

pub fn throughput_allowed(t: VolumeType) -> Result<()> {
    if limits(t).throughput_configurable {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "parameter \"throughput\" is not supported for type \"{t}\" (only gp3 takes provisioned throughput)"
    )))
}

pub(super) fn check_throughput_range(l: &TypeLimits, mibs: u32) -> Result<()> {
    if mibs < l.min_throughput || mibs > l.max_throughput {
        return Err(Error::InvalidArgument(format!(
            "parameter \"throughput\": value {mibs} MiB/s is outside {}–{} MiB/s for type \"{}\"",
            l.min_throughput, l.max_throughput, l.volume_type
        )));
    }
    Ok(())
}

/// Range, then the throughput-per-IOPS ratio against the IOPS the volume will have.
pub(super) fn check_throughput(t: VolumeType, mibs: u32, iops: Option<u32>) -> Result<()> {
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
