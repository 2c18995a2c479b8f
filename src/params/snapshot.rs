//! VolumeSnapshotClass parameters (CreateSnapshot `parameters`), as the Go driver documents
//! them: tags, fast snapshot restores, an Outpost and a lock. Everything is checked here, before
//! anything is made.

use std::collections::HashMap;

use super::tags::{SnapshotProps, TagSpec, snapshot_tags};
use super::{Entry, TAG_SPEC_PREFIX, entries, unknown_key};
use crate::ebs::{LockMode, LockRequest, LockTerm, MAX_USER_TAGS, SnapshotRequest, check_outpost_arn, too_many_tags};
use crate::error::{Error, Result, shown};

/// The external-snapshotter's `--extra-create-metadata` keys, and the tags they become.
pub const SNAPSHOT_META: [(&str, &str); 3] = [
    (
        "csi.storage.k8s.io/volumesnapshot/name",
        "kubernetes.io/created-for/volumesnapshot/name",
    ),
    (
        "csi.storage.k8s.io/volumesnapshot/namespace",
        "kubernetes.io/created-for/volumesnapshot/namespace",
    ),
    (
        "csi.storage.k8s.io/volumesnapshotcontent/name",
        "kubernetes.io/created-for/volumesnapshotcontent/name",
    ),
];

const SNAPSHOT_KEYS: &str = "tagSpecification_<N>, fastSnapshotRestoreAvailabilityZones, outpostArn, \
     lockMode, lockDuration, lockExpirationDate, lockCoolOffPeriod, \
     csi.storage.k8s.io/volumesnapshot/name, csi.storage.k8s.io/volumesnapshot/namespace, \
     csi.storage.k8s.io/volumesnapshotcontent/name";

/// Parses CreateSnapshot parameters. `zones` are the region's zones (a fast-restore zone must be
/// one of them); `now_ms` is when the call arrived (a lock's expiration date must be later).
pub fn parse_snapshot_params(
    params: &HashMap<String, String>,
    zones: &[String],
    now_ms: i64,
) -> Result<SnapshotRequest> {
    let mut out = SnapshotRequest::default();
    let mut specs: Vec<TagSpec<'_>> = Vec::new();
    let mut props = SnapshotProps::default();
    let (mut mode, mut days, mut until, mut cool_off) = (None, None, None, None);
    for Entry { canonical, key, value } in entries(params)? {
        if let Some((_, tag)) = SNAPSHOT_META.iter().find(|(k, _)| *k == canonical) {
            out.tags.insert((*tag).to_owned(), value.to_owned());
            match SNAPSHOT_META.iter().position(|(k, _)| *k == canonical) {
                Some(0) => props.name = value,
                Some(1) => props.namespace = value,
                _ => props.content_name = value,
            }
            continue;
        }
        match canonical.as_str() {
            "fastsnapshotrestoreavailabilityzones" => out.fast_restore_zones = parse_zones(key, value, zones)?,
            "outpostarn" if value.is_empty() => {}
            "outpostarn" => {
                check_outpost_arn(value)?;
                out.outpost_arn = Some(value.to_owned());
            }
            "lockmode" => mode = Some(parse_mode(key, value)?),
            "lockduration" => days = Some(parse_number(key, value, "days")?),
            "lockexpirationdate" => until = Some(parse_date(key, value)?),
            "lockcooloffperiod" => cool_off = Some(parse_number(key, value, "hours")?),
            k if k.starts_with(TAG_SPEC_PREFIX) => specs.push((key, value)),
            _ => return Err(unknown_key(key, "CreateSnapshot", SNAPSHOT_KEYS)),
        }
    }
    out.lock = lock_request(mode, days, until, cool_off)?;
    if let Some(lock) = &out.lock {
        lock.check(now_ms)?;
    }
    let user = snapshot_tags(&specs, &props)?;
    if user.len() > MAX_USER_TAGS {
        return Err(too_many_tags(user.len()));
    }
    out.tags.extend(user);
    Ok(out)
}

/// The lock the four parameters describe: none without any of them; else a mode and exactly one
/// of a duration and an expiration date, as LockSnapshot requires.
fn lock_request(
    mode: Option<LockMode>,
    days: Option<u32>,
    until: Option<i64>,
    cool_off: Option<u32>,
) -> Result<Option<LockRequest>> {
    if mode.is_none() && days.is_none() && until.is_none() && cool_off.is_none() {
        return Ok(None);
    }
    let Some(mode) = mode else {
        return Err(Error::InvalidArgument(
            "lockDuration, lockExpirationDate and lockCoolOffPeriod need lockMode (governance or compliance)".into(),
        ));
    };
    let term = match (days, until) {
        (Some(d), None) => LockTerm::Days(d),
        (None, Some(t)) => LockTerm::Until(t),
        (Some(_), Some(_)) => {
            return Err(Error::InvalidArgument(
                "lockDuration and lockExpirationDate are both set; a snapshot lock takes one of them".into(),
            ));
        }
        (None, None) => {
            return Err(Error::InvalidArgument(
                "lockMode needs lockDuration (days) or lockExpirationDate (RFC 3339)".into(),
            ));
        }
    };
    Ok(Some(LockRequest {
        mode,
        term,
        cool_off_hours: cool_off,
    }))
}

fn parse_mode(key: &str, value: &str) -> Result<LockMode> {
    match value.to_ascii_lowercase().as_str() {
        "governance" => Ok(LockMode::Governance),
        "compliance" => Ok(LockMode::Compliance),
        _ => Err(Error::InvalidArgument(format!(
            "parameter {}: value {} is not a lock mode (governance or compliance)",
            shown(key),
            shown(value)
        ))),
    }
}

fn parse_number(key: &str, value: &str, unit: &str) -> Result<u32> {
    value.parse::<u32>().map_err(|_| {
        Error::InvalidArgument(format!(
            "parameter {}: value {} is not a whole number of {unit}",
            shown(key),
            shown(value)
        ))
    })
}

/// RFC 3339 (`2030-01-02T03:04:05Z`, any offset, optional fractions) → ms since the epoch.
fn parse_date(key: &str, value: &str) -> Result<i64> {
    let t = time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339).map_err(|e| {
        Error::InvalidArgument(format!(
            "parameter {}: value {} is not an RFC 3339 date such as 2030-01-02T03:04:05Z ({e})",
            shown(key),
            shown(value)
        ))
    })?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| Error::InvalidArgument(format!("parameter {}: date out of range", shown(key))))
}

/// A comma-separated list of the region's zones; blanks around names are ignored, a repeat counts once.
fn parse_zones(key: &str, value: &str, zones: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for z in value.split(',').map(str::trim).filter(|z| !z.is_empty()) {
        if !zones.iter().any(|known| known == z) {
            return Err(Error::InvalidArgument(format!(
                "parameter {}: zone {} is not a zone of this region ({})",
                shown(key),
                shown(z),
                zones.join(", ")
            )));
        }
        if !out.iter().any(|o| o == z) {
            out.push(z.to_owned());
        }
    }
    if out.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "parameter {}: no zone given (a comma-separated list of zones)",
            shown(key)
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ebs::rfc3339;

    const NOW: i64 = 1_800_000_000_000;

    fn parse(pairs: &[(&str, &str)]) -> Result<SnapshotRequest> {
        let map = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let zones = vec!["z-1a".to_owned(), "z-1b".to_owned()];
        parse_snapshot_params(&map, &zones, NOW)
    }

    #[test]
    fn every_parameter_is_read() {
        let date = rfc3339(NOW + 10_000);
        let r = parse(&[
            ("fastSnapshotRestoreAvailabilityZones", " z-1b, z-1a ,z-1b"),
            (
                "OUTPOSTARN",
                "arn:aws:outposts:us-west-2:111122223333:outpost/op-0123456789abcdef0",
            ),
            ("lockMode", "Compliance"),
            ("lockExpirationDate", &date),
            ("lockCoolOffPeriod", "2"),
            ("csi.storage.k8s.io/volumesnapshot/namespace", "team-a"),
            ("csi.storage.k8s.io/volumesnapshot/name", "nightly"),
            ("tagSpecification_1", "owner={{ .VolumeSnapshotNamespace | toUpper }}"),
            ("tagSpecification_2", "of={{ .VolumeSnapshotName }}"),
        ])
        .unwrap();
        assert_eq!(r.fast_restore_zones, ["z-1b", "z-1a"]);
        assert!(r.outpost_arn.is_some());
        assert_eq!(
            r.lock,
            Some(LockRequest {
                mode: LockMode::Compliance,
                term: LockTerm::Until(NOW + 10_000),
                cool_off_hours: Some(2)
            })
        );
        assert_eq!(r.tags["owner"], "TEAM-A");
        assert_eq!(r.tags["of"], "nightly");
        assert_eq!(r.tags["kubernetes.io/created-for/volumesnapshot/name"], "nightly");
        // 1_800_000_000 s is 2027-01-15T08:00:00Z: an offset is honoured.
        let plus = parse(&[
            ("lockMode", "governance"),
            ("lockExpirationDate", "2027-01-15T10:00:01+02:00"),
        ]);
        assert_eq!(plus.unwrap().lock.unwrap().term, LockTerm::Until(NOW + 1_000));
        let days = parse(&[("lockmode", "GOVERNANCE"), ("lockduration", "7")]).unwrap();
        assert_eq!(days.lock.unwrap().term, LockTerm::Days(7));
        assert_eq!(parse(&[]).unwrap(), SnapshotRequest::default());
    }

    #[test]
    fn bad_values_and_combinations_are_refused_with_a_reason() {
        let date = rfc3339(NOW + 10_000);
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![("fastSnapshotRestoreAvailabilityZones", "z-1a,z-9z")], "z-9z"),
            (vec![("fastSnapshotRestoreAvailabilityZones", " , ")], "no zone"),
            (vec![("outpostArn", "op-0123456789abcdef0")], "not an Outpost ARN"),
            (vec![("lockDuration", "3")], "need lockMode"),
            (vec![("lockCoolOffPeriod", "3")], "need lockMode"),
            (vec![("lockMode", "governance")], "needs lockDuration"),
            (vec![("lockMode", "frozen"), ("lockDuration", "1")], "not a lock mode"),
            (
                vec![
                    ("lockMode", "governance"),
                    ("lockDuration", "1"),
                    ("lockExpirationDate", &date),
                ],
                "both set",
            ),
            (
                vec![
                    ("lockMode", "governance"),
                    ("lockDuration", "1"),
                    ("lockCoolOffPeriod", "1"),
                ],
                "only to lockMode compliance",
            ),
            (
                vec![
                    ("lockMode", "compliance"),
                    ("lockDuration", "1"),
                    ("lockCoolOffPeriod", "73"),
                ],
                "1 to 72 hours",
            ),
            (vec![("lockMode", "compliance"), ("lockDuration", "0")], "out of range"),
            (
                vec![("lockMode", "compliance"), ("lockDuration", "-1")],
                "whole number of days",
            ),
            (
                vec![("lockMode", "compliance"), ("lockExpirationDate", "tomorrow")],
                "RFC 3339",
            ),
            (
                vec![
                    ("lockMode", "compliance"),
                    ("lockExpirationDate", "2020-01-01T00:00:00Z"),
                ],
                "not in the future",
            ),
            (
                vec![("tagSpecification_1", "a={{ .PVCName }}")],
                "unknown field .PVCName",
            ),
            (
                vec![("tagSpecification_1", "a=1"), ("tagSpecification_2", "a=2")],
                "both set tag",
            ),
            (vec![("encrypted", "true")], "unknown parameter"),
        ];
        for (pairs, why) in cases {
            let e = parse(&pairs).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{pairs:?}");
            assert!(e.to_string().contains(why), "{pairs:?}: {e}");
        }
    }
}
