//! EBS prices per region (the built-in `prices.yaml`, or a `--prices` file of its format) and a
//! volume's monthly price from them. Pure: no I/O but the caller's text.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ebs::VolumeType;
use crate::error::{Error, Result};

/// The built-in table; its header documents the format.
pub const BUILT_IN: &str = include_str!("prices.yaml");

/// An amount of money in hundredths (cents), so rows and totals add up exactly as printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cents(pub i64);

impl Cents {
    /// Rounded to the nearest cent.
    pub fn from_amount(amount: f64) -> Cents {
        Cents((amount * 100.0).round() as i64)
    }

    pub fn amount(self) -> f64 {
        self.0 as f64 / 100.0
    }
}

impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let c = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", c / 100, c % 100)
    }
}

impl Serialize for Cents {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_f64(self.amount())
    }
}

impl std::ops::Add for Cents {
    type Output = Cents;
    fn add(self, o: Cents) -> Cents {
        Cents(self.0 + o.0)
    }
}

impl std::ops::Sub for Cents {
    type Output = Cents;
    fn sub(self, o: Cents) -> Cents {
        Cents(self.0 - o.0)
    }
}

impl std::iter::Sum for Cents {
    fn sum<I: Iterator<Item = Cents>>(iter: I) -> Cents {
        iter.fold(Cents(0), |a, b| a + b)
    }
}

/// One tier of provisioned-IOPS prices.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// The tier covers the IOPS up to this figure; None for the last tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up_to: Option<u32>,
    /// Per IOPS-month.
    pub month: f64,
}

/// What one volume type costs in a region.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TypePrice {
    pub gb_month: f64,
    #[serde(default)]
    pub iops: Vec<Tier>,
    #[serde(default)]
    pub free_iops: u32,
    #[serde(default)]
    pub mibps_month: f64,
    #[serde(default)]
    pub free_mibps: u32,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegionPrices {
    /// Where the figures come from (the AWS EBS pricing page).
    pub source: String,
    /// When they were read.
    pub date: String,
    pub currency: String,
    pub volumes: BTreeMap<VolumeType, TypePrice>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PriceBook {
    pub regions: BTreeMap<String, RegionPrices>,
}

impl PriceBook {
    pub fn built_in() -> Result<PriceBook> {
        PriceBook::parse("the built-in price table", BUILT_IN)
    }

    /// A price file's text (YAML, or JSON, which YAML reads too), checked: prices are finite and
    /// not negative, tiers rise, and gp2 and gp3 are priced (the report compares them).
    pub fn parse(what: &str, text: &str) -> Result<PriceBook> {
        let book: PriceBook =
            serde_yaml_ng::from_str(text).map_err(|e| Error::InvalidArgument(format!("{what}: {e}")))?;
        for (region, r) in &book.regions {
            let bad = |m: String| Error::InvalidArgument(format!("{what}: region {region}: {m}"));
            for t in [VolumeType::Gp2, VolumeType::Gp3] {
                if !r.volumes.contains_key(&t) {
                    return Err(bad(format!("no price for {t}")));
                }
            }
            for (t, p) in &r.volumes {
                let figures = [p.gb_month, p.mibps_month]
                    .into_iter()
                    .chain(p.iops.iter().map(|t| t.month));
                if figures.into_iter().any(|x| !x.is_finite() || x < 0.0) {
                    return Err(bad(format!("{t}: prices must be numbers of at least 0")));
                }
                let mut floor = 0;
                for (n, tier) in p.iops.iter().enumerate() {
                    match tier.up_to {
                        Some(up) if up > floor && n + 1 < p.iops.len() => floor = up,
                        None if n + 1 == p.iops.len() => {}
                        _ => {
                            return Err(bad(format!(
                                "{t}: IOPS tiers must rise, and only the last may leave out up_to"
                            )));
                        }
                    }
                }
            }
        }
        Ok(book)
    }

    /// `other`'s regions replace or add to these.
    pub fn extend(&mut self, other: PriceBook) {
        self.regions.extend(other.regions);
    }

    pub fn region(&self, name: &str) -> Result<&RegionPrices> {
        self.regions.get(name).ok_or_else(|| {
            Error::NotFound(format!(
                "no EBS prices for region {name:?} (known: {}); give them with --prices FILE",
                self.regions.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }
}

/// The IOPS above `free` priced through the tiers.
fn iops_charge(tiers: &[Tier], free: u32, iops: u32) -> f64 {
    let mut left = u64::from(iops.saturating_sub(free));
    let mut floor = 0u64;
    let mut total = 0.0;
    for tier in tiers {
        let width = tier.up_to.map_or(u64::MAX, |u| u64::from(u).saturating_sub(floor));
        let here = left.min(width);
        total += here as f64 * tier.month;
        left -= here;
        floor = tier.up_to.map_or(floor, u64::from);
        if left == 0 {
            break;
        }
    }
    total
}

impl RegionPrices {
    /// A month of a volume of type `t` with `size_gib` and the IOPS and throughput it is billed
    /// for (gp2's come with its size and are not billed apart).
    pub fn monthly(&self, t: VolumeType, size_gib: u64, iops: Option<u32>, throughput: Option<u32>) -> Result<Cents> {
        let p = self
            .volumes
            .get(&t)
            .ok_or_else(|| Error::NotFound(format!("the price table has no price for {t}")))?;
        let mut amount = size_gib as f64 * p.gb_month;
        if let Some(iops) = iops {
            amount += iops_charge(&p.iops, p.free_iops, iops);
        }
        if let Some(mibs) = throughput {
            amount += f64::from(mibs.saturating_sub(p.free_mibps)) * p.mibps_month;
        }
        Ok(Cents::from_amount(amount))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us_east_1() -> RegionPrices {
        PriceBook::built_in().unwrap().region("us-east-1").unwrap().clone()
    }

    #[test]
    fn the_built_in_table_names_its_source_and_date_for_every_region() {
        let book = PriceBook::built_in().unwrap();
        for region in ["us-east-1", "us-west-2", "eu-west-1", "ap-northeast-2"] {
            let r = book.region(region).unwrap();
            assert!(
                r.source.contains("https://aws.amazon.com/ebs/pricing/"),
                "{region}: {}",
                r.source
            );
            assert!(r.date.starts_with("20"), "{region}: {}", r.date);
            assert_eq!(r.volumes.len(), VolumeType::ALL.len(), "{region} prices every type");
        }
        assert!(
            book.region("mars-north-1")
                .unwrap_err()
                .to_string()
                .contains("--prices")
        );
    }

    #[test]
    fn gp3_is_a_fifth_cheaper_than_gp2_at_its_included_performance() {
        let book = PriceBook::built_in().unwrap();
        for (region, r) in &book.regions {
            let gp2 = r.monthly(VolumeType::Gp2, 100, Some(300), None).unwrap();
            let gp3 = r.monthly(VolumeType::Gp3, 100, Some(3000), Some(125)).unwrap();
            assert_eq!(gp3.0 * 5, gp2.0 * 4, "{region}: gp2 {gp2}, gp3 {gp3}");
        }
    }

    #[test]
    fn gp3_bills_iops_and_throughput_above_what_it_includes() {
        let r = us_east_1();
        // 2,000 GiB x 0.08 + 7,000 IOPS x 0.005 + 375 MiB/s x 0.04
        assert_eq!(
            r.monthly(VolumeType::Gp3, 2000, Some(10_000), Some(500)).unwrap(),
            Cents(21_000)
        );
        assert_eq!(r.monthly(VolumeType::Gp3, 1, Some(3000), Some(125)).unwrap(), Cents(8));
    }

    #[test]
    fn io2_iops_are_priced_by_tier() {
        let r = us_east_1();
        // 100 GiB x 0.125 + 32,000 x 0.065 + 32,000 x 0.0455 + 16,000 x 0.032
        let want = 12.5 + 32_000.0 * 0.065 + 32_000.0 * 0.0455 + 16_000.0 * 0.032;
        assert_eq!(
            r.monthly(VolumeType::Io2, 100, Some(80_000), None).unwrap(),
            Cents::from_amount(want)
        );
        assert_eq!(r.monthly(VolumeType::Io1, 100, Some(1000), None).unwrap(), Cents(7750));
    }

    #[test]
    fn a_price_file_is_checked_before_use() {
        let ok = "regions: {x-1: {source: s, date: d, currency: USD, volumes: {gp2: {gb_month: 0.1}, gp3: {gb_month: 0.08}}}}";
        let book = PriceBook::parse("f", ok).unwrap();
        assert_eq!(book.region("x-1").unwrap().volumes[&VolumeType::Gp2].gb_month, 0.1);
        for (bad, says) in [
            (
                "regions: {x-1: {source: s, date: d, currency: USD, volumes: {gp2: {gb_month: 0.1}}}}",
                "no price for gp3",
            ),
            (
                "regions: {x-1: {source: s, date: d, currency: USD, volumes: {gp2: {gb_month: -1}, gp3: {gb_month: 1}}}}",
                "at least 0",
            ),
            (
                "regions: {x-1: {source: s, date: d, currency: USD, volumes: {gp2: {gb_month: 1}, gp3: {gb_month: 1, iops: [{month: 1}, {month: 2}]}}}}",
                "tiers must rise",
            ),
            (
                "regions: {x-1: {source: s, date: d, currency: USD, volumes: {gp2: {gb_monht: 1}, gp3: {gb_month: 1}}}}",
                "gb_monht",
            ),
            (
                "regions: {x-1: {source: s, date: d, currency: USD, volumes: {gp9: {gb_month: 1}}}}",
                "gp9",
            ),
        ] {
            let e = PriceBook::parse("f", bad).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{bad}: {e}");
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn cents_print_as_amounts() {
        assert_eq!(Cents(1234).to_string(), "12.34");
        assert_eq!(Cents(-5).to_string(), "-0.05");
        assert_eq!(Cents::from_amount(0.125), Cents(13));
    }
}
