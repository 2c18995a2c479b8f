//! Which volumes gp3 serves for less: the gp3 figures that keep at least what a gp2, io1 or io2
//! volume delivers without bursting, checked with the EBS rules, and what both cost. Pure.

use serde::Serialize;

use super::prices::{Cents, RegionPrices};
use crate::ebs::{self, ModifyParams, Performance, VolumeType};
use crate::error::Result;

/// io1/io2 volumes above this many IOPS stay: they are provisioned for the sub-millisecond
/// latency gp3 does not promise, and gp3 reached them only in 2025 (16,000 IOPS is still its
/// ceiling on Outposts).
pub const MAX_IO_IOPS_FOR_GP3: u32 = 16_000;

/// A volume as the report needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    pub volume_type: VolumeType,
    pub size_gib: u64,
    /// As the cloud reports them (None where it reports nothing).
    pub iops: Option<u32>,
    pub throughput: Option<u32>,
    pub multi_attach: bool,
}

/// The gp3 figures to move to, and what they cost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Move {
    pub iops: u32,
    /// MiB/s.
    pub throughput: u32,
    pub monthly: Cents,
    pub saving: Cents,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assessment {
    /// What the volume delivers without bursting (gp2: from its size).
    pub baseline: Performance,
    pub monthly: Cents,
    /// The move to gp3, or why there is none.
    pub verdict: std::result::Result<Move, String>,
}

/// Prices the volume as it is and, for gp2, io1 and io2, as the gp3 volume that delivers at
/// least its baseline.
pub fn assess(v: &Subject, prices: &RegionPrices) -> Result<Assessment> {
    let baseline = ebs::baseline(v.volume_type, v.size_gib, v.iops, v.throughput);
    let billed = ebs::limits(v.volume_type);
    let monthly = prices.monthly(
        v.volume_type,
        v.size_gib,
        baseline.iops.filter(|_| billed.iops_configurable),
        baseline.throughput.filter(|_| billed.throughput_configurable),
    )?;
    let verdict = match gp3_for(v, &baseline) {
        Ok((iops, throughput)) => {
            let gp3 = prices.monthly(VolumeType::Gp3, v.size_gib, Some(iops), Some(throughput))?;
            if gp3 < monthly {
                Ok(Move {
                    iops,
                    throughput,
                    monthly: gp3,
                    saving: monthly - gp3,
                })
            } else {
                Err(format!(
                    "gp3 with {iops} IOPS and {throughput} MiB/s would cost {gp3}, not less"
                ))
            }
        }
        Err(why) => Err(why),
    };
    Ok(Assessment {
        baseline,
        monthly,
        verdict,
    })
}

/// The gp3 IOPS and throughput that keep the baseline, or why gp3 does not fit.
fn gp3_for(v: &Subject, baseline: &Performance) -> std::result::Result<(u32, u32), String> {
    match v.volume_type {
        VolumeType::Gp2 => {}
        VolumeType::Io1 | VolumeType::Io2 => {
            if v.multi_attach {
                return Err("multi-attach: gp3 volumes attach to one instance".into());
            }
            let iops = baseline.iops.unwrap_or(0);
            if iops > MAX_IO_IOPS_FOR_GP3 {
                return Err(format!(
                    "{iops} IOPS: above {MAX_IO_IOPS_FOR_GP3}, {} stays for its latency",
                    v.volume_type
                ));
            }
        }
        VolumeType::Gp3 => return Err("already gp3".into()),
        VolumeType::St1 | VolumeType::Sc1 | VolumeType::Standard => {
            return Err(format!(
                "{}: priced for throughput per GiB, not compared",
                v.volume_type
            ));
        }
    }
    let gp3 = ebs::limits(VolumeType::Gp3);
    let iops = baseline.iops.unwrap_or(0).max(gp3.min_iops);
    let throughput = baseline.throughput.unwrap_or(0).max(gp3.min_throughput);
    // The EBS rules decide whether gp3 can have these figures at this size.
    let change = ModifyParams {
        volume_type: Some(VolumeType::Gp3),
        iops: Some(iops),
        throughput: Some(throughput),
        ..Default::default()
    };
    let current = Performance {
        iops: v.iops,
        throughput: v.throughput,
    };
    match ebs::modified_performance(v.volume_type, v.size_gib, &current, &change, false) {
        Ok((_, p)) if p.iops == Some(iops) && p.throughput == Some(throughput) => Ok((iops, throughput)),
        Ok((_, p)) => Err(format!(
            "gp3 at {} GiB gives {} IOPS and {} MiB/s, less than the volume has",
            v.size_gib,
            p.iops.unwrap_or(0),
            p.throughput.unwrap_or(0)
        )),
        Err(e) => Err(format!("gp3 cannot match it: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::prices::PriceBook;

    fn prices() -> RegionPrices {
        PriceBook::built_in().unwrap().region("us-east-1").unwrap().clone()
    }

    fn subject(t: VolumeType, size_gib: u64, iops: Option<u32>) -> Subject {
        Subject {
            volume_type: t,
            size_gib,
            iops,
            throughput: None,
            multi_attach: false,
        }
    }

    #[test]
    fn gp2_100_gib_moves_to_gp3_at_3000_iops_and_125_mibs_for_less() {
        let a = assess(&subject(VolumeType::Gp2, 100, None), &prices()).unwrap();
        assert_eq!(a.baseline.iops, Some(300));
        assert_eq!(a.baseline.throughput, Some(75));
        assert_eq!(a.monthly, Cents(1000));
        let m = a.verdict.unwrap();
        assert_eq!((m.iops, m.throughput), (3000, 125));
        assert_eq!(m.monthly, Cents(800));
        assert_eq!(m.saving, Cents(200));
    }

    #[test]
    fn a_large_gp2_keeps_its_higher_iops_and_throughput() {
        // 2,000 GiB of gp2: 6,000 IOPS and gp2's 250 MiB/s ceiling.
        let a = assess(&subject(VolumeType::Gp2, 2000, None), &prices()).unwrap();
        assert_eq!(a.baseline.iops, Some(6000));
        assert_eq!(a.baseline.throughput, Some(250));
        let m = a.verdict.unwrap();
        assert_eq!((m.iops, m.throughput), (6000, 250));
        // 2,000 x 0.08 + 3,000 x 0.005 + 125 x 0.04 = 160 + 15 + 5
        assert_eq!(m.monthly, Cents(18_000));
        assert_eq!(a.monthly, Cents(20_000));
        assert_eq!(m.saving, Cents(2000));
        // At gp2's largest IOPS (16,000 from 5,334 GiB) gp3 still costs less.
        let a = assess(&subject(VolumeType::Gp2, 5334, None), &prices()).unwrap();
        let m = a.verdict.unwrap();
        assert_eq!((m.iops, m.throughput), (16_000, 250));
        assert!(m.monthly < a.monthly);
    }

    #[test]
    fn a_small_gp2_gets_gp3s_included_figures() {
        let a = assess(&subject(VolumeType::Gp2, 1, None), &prices()).unwrap();
        assert_eq!(a.baseline.iops, Some(100));
        let m = a.verdict.unwrap();
        assert_eq!((m.iops, m.throughput), (3000, 125));
        assert_eq!(m.monthly, Cents(8));
        assert_eq!(m.saving, Cents(2));
    }

    #[test]
    fn io1_that_fits_gp3_keeps_its_iops_and_throughput() {
        // 500 GiB io1 with 10,000 IOPS: 2,500 MiB/s would pass io1's 500 MiB/s ceiling.
        let a = assess(&subject(VolumeType::Io1, 500, Some(10_000)), &prices()).unwrap();
        assert_eq!(a.baseline.throughput, Some(500));
        // 500 x 0.125 + 10,000 x 0.065
        assert_eq!(a.monthly, Cents(71_250));
        let m = a.verdict.unwrap();
        assert_eq!((m.iops, m.throughput), (10_000, 500));
        // 500 x 0.08 + 7,000 x 0.005 + 375 x 0.04
        assert_eq!(m.monthly, Cents(9000));
        assert_eq!(m.saving, Cents(62_250));
    }

    #[test]
    fn io1_above_16000_iops_or_multi_attached_stays() {
        let a = assess(&subject(VolumeType::Io1, 1000, Some(20_000)), &prices()).unwrap();
        assert!(a.verdict.unwrap_err().contains("20000 IOPS"));
        let mut shared = subject(VolumeType::Io1, 100, Some(1000));
        shared.multi_attach = true;
        let a = assess(&shared, &prices()).unwrap();
        assert!(a.verdict.unwrap_err().contains("multi-attach"));
    }

    #[test]
    fn io2_whose_throughput_passes_gp3s_stays() {
        // 12,000 IOPS of io2 carry 3,000 MiB/s; gp3 stops at 2,000.
        let a = assess(&subject(VolumeType::Io2, 1000, Some(12_000)), &prices()).unwrap();
        assert_eq!(a.baseline.throughput, Some(3000));
        assert!(a.verdict.unwrap_err().contains("gp3 cannot match it"));
        let a = assess(&subject(VolumeType::Io2, 1000, Some(8000)), &prices()).unwrap();
        let m = a.verdict.unwrap();
        assert_eq!((m.iops, m.throughput), (8000, 2000));
    }

    #[test]
    fn gp3_and_hdd_volumes_are_priced_but_not_moved() {
        let mut gp3 = subject(VolumeType::Gp3, 100, Some(4000));
        gp3.throughput = Some(200);
        let a = assess(&gp3, &prices()).unwrap();
        // 8 + 1,000 x 0.005 + 75 x 0.04
        assert_eq!(a.monthly, Cents(1600));
        assert_eq!(a.verdict.unwrap_err(), "already gp3");
        let a = assess(&subject(VolumeType::St1, 500, None), &prices()).unwrap();
        assert_eq!(a.monthly, Cents(2250));
        assert!(a.verdict.is_err());
    }
}
