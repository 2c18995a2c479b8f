//! The report: one row per volume, the totals, and their three renderings (a table for the
//! terminal, JSON, CSV).

use std::fmt::Write as _;

use serde::Serialize;

use super::prices::{Cents, PriceBook};
use super::recommend::{self, Move, Subject};
use crate::cloud::Volume;
use crate::ebs::{PVC_NAME_TAG, PVC_NAMESPACE_TAG, VolumeType};
use crate::error::{Error, Result};

/// The claim a volume was made for, from the tags the provisioner's `--extra-create-metadata`
/// gives it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ClaimRef {
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    pub volume_id: String,
    #[serde(rename = "type")]
    pub volume_type: VolumeType,
    pub size_gib: u64,
    /// What the volume delivers without bursting (gp2: from its size).
    pub iops: Option<u32>,
    pub throughput: Option<u32>,
    pub zone: String,
    /// The region whose prices were used.
    pub region: String,
    pub monthly: Cents,
    pub claim: Option<ClaimRef>,
    /// The move to gp3, when it saves.
    pub gp3: Option<Move>,
    /// Why there is no move.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub volumes: usize,
    pub monthly: Cents,
    /// Volumes gp3 serves for less.
    pub moves: usize,
    /// The month after the moves.
    pub monthly_after: Cents,
    pub saving: Cents,
}

/// Where the prices came from, per region used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PriceSource {
    pub region: String,
    pub source: String,
    pub date: String,
    pub currency: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    pub backend: String,
    /// Set when every volume is priced as one region the user chose (or the local backend's
    /// default), rather than by its own zone.
    pub priced_as: Option<String>,
    pub prices: Vec<PriceSource>,
    pub volumes: Vec<Row>,
    pub totals: Totals,
}

/// `us-east-1a` → `us-east-1`; a Local Zone (`us-west-2-lax-1a`) → its parent region.
pub fn region_of_zone(zone: &str) -> String {
    let head: Vec<&str> = zone.splitn(4, '-').take(3).collect();
    head.join("-")
        .trim_end_matches(|c: char| c.is_ascii_alphabetic())
        .to_owned()
}

fn claim_of(v: &Volume) -> Option<ClaimRef> {
    match (v.tags.get(PVC_NAMESPACE_TAG), v.tags.get(PVC_NAME_TAG)) {
        (Some(ns), Some(name)) if !ns.is_empty() && !name.is_empty() => Some(ClaimRef {
            namespace: ns.clone(),
            name: name.clone(),
        }),
        _ => None,
    }
}

/// Prices every volume: as `priced_as` when given, else as the region of its zone.
pub fn build(backend: &str, volumes: &[Volume], book: &PriceBook, priced_as: Option<&str>) -> Result<Report> {
    let mut rows = Vec::with_capacity(volumes.len());
    let mut used = std::collections::BTreeSet::new();
    for v in volumes {
        let region = priced_as.map_or_else(|| region_of_zone(&v.zone), str::to_owned);
        let prices = book.region(&region).map_err(|e| match e {
            Error::NotFound(m) => Error::NotFound(format!("volume {} in zone {}: {m}", v.id, v.zone)),
            other => other,
        })?;
        used.insert(region.clone());
        let subject = Subject {
            volume_type: v.volume_type,
            size_gib: v.size_gib,
            iops: v.iops,
            throughput: v.throughput,
            multi_attach: v.multi_attach,
        };
        let a = recommend::assess(&subject, prices)?;
        let (gp3, note) = match a.verdict {
            Ok(m) => (Some(m), None),
            Err(why) => (None, Some(why)),
        };
        rows.push(Row {
            volume_id: v.id.clone(),
            volume_type: v.volume_type,
            size_gib: v.size_gib,
            iops: a.baseline.iops,
            throughput: a.baseline.throughput,
            zone: v.zone.clone(),
            region,
            monthly: a.monthly,
            claim: claim_of(v),
            gp3,
            note,
        });
    }
    let monthly: Cents = rows.iter().map(|r| r.monthly).sum();
    let saving: Cents = rows.iter().filter_map(|r| r.gp3.as_ref()).map(|m| m.saving).sum();
    let totals = Totals {
        volumes: rows.len(),
        monthly,
        moves: rows.iter().filter(|r| r.gp3.is_some()).count(),
        monthly_after: monthly - saving,
        saving,
    };
    let prices = used
        .into_iter()
        .filter_map(|r| {
            let p = book.regions.get(&r)?;
            Some(PriceSource {
                region: r,
                source: p.source.clone(),
                date: p.date.clone(),
                currency: p.currency.clone(),
            })
        })
        .collect();
    Ok(Report {
        backend: backend.to_owned(),
        priced_as: priced_as.map(str::to_owned),
        prices,
        volumes: rows,
        totals,
    })
}

fn opt(n: Option<u32>) -> String {
    n.map_or_else(|| "-".to_owned(), |n| n.to_string())
}

fn claim_text(c: &Option<ClaimRef>) -> String {
    c.as_ref()
        .map_or_else(|| "-".to_owned(), |c| format!("{}/{}", c.namespace, c.name))
}

/// `part` of `whole` in whole percent.
fn percent(part: Cents, whole: Cents) -> i64 {
    if whole.0 == 0 {
        0
    } else {
        (part.0 * 100 + whole.0 / 2) / whole.0
    }
}

/// The table for the terminal: columns padded to their widest cell, then the totals and where
/// the prices come from.
pub fn table(r: &Report) -> String {
    let head = [
        "VOLUME",
        "TYPE",
        "GiB",
        "IOPS",
        "MiB/s",
        "ZONE",
        "MONTHLY",
        "GP3 IOPS",
        "GP3 MiB/s",
        "GP3 MONTHLY",
        "SAVING",
        "CLAIM",
    ];
    let mut cells: Vec<Vec<String>> = vec![head.iter().map(|s| (*s).to_owned()).collect()];
    for row in &r.volumes {
        let (gi, gt, gm, gs) = match &row.gp3 {
            Some(m) => (
                m.iops.to_string(),
                m.throughput.to_string(),
                m.monthly.to_string(),
                m.saving.to_string(),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        cells.push(vec![
            row.volume_id.clone(),
            row.volume_type.to_string(),
            row.size_gib.to_string(),
            opt(row.iops),
            opt(row.throughput),
            row.zone.clone(),
            row.monthly.to_string(),
            gi,
            gt,
            gm,
            gs,
            claim_text(&row.claim),
        ]);
    }
    let widths: Vec<usize> = (0..head.len())
        .map(|c| cells.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let numeric = |c: usize| matches!(c, 2 | 3 | 4 | 6 | 7 | 8 | 9 | 10);
    let mut out = String::new();
    for row in &cells {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, s)| {
                if numeric(c) {
                    format!("{s:>w$}", w = widths[c])
                } else {
                    format!("{s:<w$}", w = widths[c])
                }
            })
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    let t = &r.totals;
    let currency = r.prices.first().map_or("USD", |p| p.currency.as_str());
    let _ = writeln!(
        out,
        "\ntotal: {} volumes, {} {currency}/month now; {} to move to gp3: {} {currency}/month after, saving {} {currency}/month ({}%)",
        t.volumes,
        t.monthly,
        t.moves,
        t.monthly_after,
        t.saving,
        percent(t.saving, t.monthly)
    );
    for row in r.volumes.iter().filter(|r| r.note.is_some()) {
        let _ = writeln!(
            out,
            "  {} stays: {}",
            row.volume_id,
            row.note.as_deref().unwrap_or_default()
        );
    }
    if let Some(region) = &r.priced_as {
        let why = if r.backend == "local" {
            " (the local backend has no region of its own; --region chooses)"
        } else {
            " (--region)"
        };
        let _ = writeln!(out, "priced as {region}{why}");
    }
    for p in &r.prices {
        let _ = writeln!(out, "prices for {}: {} as of {}", p.region, p.source, p.date);
    }
    out
}

pub fn json(r: &Report) -> Result<String> {
    serde_json::to_string_pretty(r).map_err(|e| Error::internal("writing the report as JSON", e))
}

/// One CSV record per volume (no totals row: the columns add up to them).
#[derive(Serialize)]
struct CsvRow<'a> {
    volume_id: &'a str,
    #[serde(rename = "type")]
    volume_type: VolumeType,
    size_gib: u64,
    iops: Option<u32>,
    throughput_mibs: Option<u32>,
    zone: &'a str,
    region: &'a str,
    monthly: String,
    gp3_iops: Option<u32>,
    gp3_throughput_mibs: Option<u32>,
    gp3_monthly: Option<String>,
    saving: Option<String>,
    pvc_namespace: Option<&'a str>,
    pvc_name: Option<&'a str>,
    note: Option<&'a str>,
}

pub fn csv(r: &Report) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for row in &r.volumes {
        w.serialize(CsvRow {
            volume_id: &row.volume_id,
            volume_type: row.volume_type,
            size_gib: row.size_gib,
            iops: row.iops,
            throughput_mibs: row.throughput,
            zone: &row.zone,
            region: &row.region,
            monthly: row.monthly.to_string(),
            gp3_iops: row.gp3.as_ref().map(|m| m.iops),
            gp3_throughput_mibs: row.gp3.as_ref().map(|m| m.throughput),
            gp3_monthly: row.gp3.as_ref().map(|m| m.monthly.to_string()),
            saving: row.gp3.as_ref().map(|m| m.saving.to_string()),
            pvc_namespace: row.claim.as_ref().map(|c| c.namespace.as_str()),
            pvc_name: row.claim.as_ref().map(|c| c.name.as_str()),
            note: row.note.as_deref(),
        })
        .map_err(|e| Error::internal("writing the report as CSV", e))?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Error::internal("writing the report as CSV", e.into_error()))?;
    String::from_utf8(bytes).map_err(|e| Error::internal("writing the report as CSV", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_of_zones() {
        assert_eq!(region_of_zone("us-east-1a"), "us-east-1");
        assert_eq!(region_of_zone("ap-northeast-2c"), "ap-northeast-2");
        assert_eq!(region_of_zone("us-west-2-lax-1a"), "us-west-2");
        assert_eq!(region_of_zone("local-1a"), "local-1");
    }

    #[test]
    fn percent_rounds() {
        assert_eq!(percent(Cents(200), Cents(1000)), 20);
        assert_eq!(percent(Cents(1), Cents(3)), 33);
        assert_eq!(percent(Cents(0), Cents(0)), 0);
    }
}
