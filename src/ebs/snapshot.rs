//! What a snapshot may ask for besides its tags: a lock against deletion (EC2 LockSnapshot),
//! fast snapshot restores in some zones, and an Outpost to live on. The checks are EC2's
//! LockSnapshot rules, made before anything is created.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// LockSnapshot's `LockDuration` range, in days (EC2 allows 1 day to 100 years).
pub const LOCK_DAYS: std::ops::RangeInclusive<u32> = 1..=36_500;
/// LockSnapshot's `CoolOffPeriod` range, in hours.
pub const COOL_OFF_HOURS: std::ops::RangeInclusive<u32> = 1..=72;
const MS_PER_DAY: i64 = 86_400_000;
const MS_PER_HOUR: i64 = 3_600_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// Deletion refused until the lock expires; users with the right permissions may unlock.
    Governance,
    /// Deletion refused until the lock expires; nobody may unlock once the cool-off is over.
    Compliance,
}

impl LockMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Governance => "governance",
            LockMode::Compliance => "compliance",
        }
    }
}

/// How long a lock lasts: EC2 takes one of the two, never both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockTerm {
    /// `lockDuration`: days from when the lock is applied.
    Days(u32),
    /// `lockExpirationDate`: milliseconds since the Unix epoch.
    Until(i64),
}

/// A lock a VolumeSnapshotClass asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRequest {
    pub mode: LockMode,
    pub term: LockTerm,
    /// Compliance mode only: hours during which the lock can still be lifted.
    pub cool_off_hours: Option<u32>,
}

/// A lock in place on a snapshot, as the cloud reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotLock {
    pub mode: LockMode,
    /// Milliseconds since the Unix epoch.
    pub expires_ms: i64,
    pub cool_off_until_ms: Option<i64>,
}

impl SnapshotLock {
    /// Whether the lock still forbids deletion at `now_ms`; an expired lock does not.
    pub fn holds(&self, now_ms: i64) -> bool {
        now_ms < self.expires_ms
    }

    /// EC2's lock state at `now_ms`: `governance`, `compliance-cooloff`, `compliance` or `expired`.
    pub fn state(&self, now_ms: i64) -> &'static str {
        match self.mode {
            _ if !self.holds(now_ms) => "expired",
            LockMode::Governance => "governance",
            LockMode::Compliance if self.cool_off_until_ms.is_some_and(|c| now_ms < c) => "compliance-cooloff",
            LockMode::Compliance => "compliance",
        }
    }

    /// Why a delete is refused, naming the instant the lock ends.
    pub fn refusal(&self, snapshot: &str) -> Error {
        Error::FailedPrecondition(format!(
            "snapshot {snapshot} is locked in {} mode until {}; it can be deleted once the lock expires",
            self.mode.as_str(),
            rfc3339(self.expires_ms)
        ))
    }
}

impl LockRequest {
    /// EC2's LockSnapshot rules, checked at `now_ms`: the term in range (an expiration date in
    /// the future, and no further than the longest duration), a cool-off only in compliance mode.
    pub fn check(&self, now_ms: i64) -> Result<()> {
        match self.term {
            LockTerm::Days(d) if !LOCK_DAYS.contains(&d) => {
                return Err(Error::InvalidArgument(format!(
                    "lockDuration {d} is out of range: a snapshot lock lasts {} to {} days",
                    LOCK_DAYS.start(),
                    LOCK_DAYS.end()
                )));
            }
            LockTerm::Until(t) if t <= now_ms => {
                return Err(Error::InvalidArgument(format!(
                    "lockExpirationDate {} is not in the future",
                    rfc3339(t)
                )));
            }
            LockTerm::Until(t) if t - now_ms > i64::from(*LOCK_DAYS.end()) * MS_PER_DAY => {
                return Err(Error::InvalidArgument(format!(
                    "lockExpirationDate {} is more than {} days ahead",
                    rfc3339(t),
                    LOCK_DAYS.end()
                )));
            }
            _ => {}
        }
        if let Some(h) = self.cool_off_hours {
            if self.mode != LockMode::Compliance {
                return Err(Error::InvalidArgument(
                    "lockCoolOffPeriod applies only to lockMode compliance".into(),
                ));
            }
            if !COOL_OFF_HOURS.contains(&h) {
                return Err(Error::InvalidArgument(format!(
                    "lockCoolOffPeriod {h} is out of range: {} to {} hours",
                    COOL_OFF_HOURS.start(),
                    COOL_OFF_HOURS.end()
                )));
            }
        }
        Ok(())
    }

    /// The lock this request puts on a snapshot when applied at `now_ms`.
    pub fn applied(&self, now_ms: i64) -> SnapshotLock {
        let expires_ms = match self.term {
            LockTerm::Days(d) => now_ms.saturating_add(i64::from(d) * MS_PER_DAY),
            LockTerm::Until(t) => t,
        };
        SnapshotLock {
            mode: self.mode,
            expires_ms,
            cool_off_until_ms: self
                .cool_off_hours
                .map(|h| now_ms.saturating_add(i64::from(h) * MS_PER_HOUR)),
        }
    }
}

/// Everything a CreateSnapshot asks of the cloud, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotRequest {
    pub tags: BTreeMap<String, String>,
    pub outpost_arn: Option<String>,
    pub lock: Option<LockRequest>,
    /// Zones to enable fast snapshot restores in, each once, in the order given.
    pub fast_restore_zones: Vec<String>,
}

/// An Outpost's ARN: `arn:<partition>:outposts:<region>:<12-digit account>:outpost/op-<hex>`.
pub fn check_outpost_arn(value: &str) -> Result<()> {
    let bad = |why: &str| {
        Error::InvalidArgument(format!(
            "outpostArn {value:?} is not an Outpost ARN ({why}); expected arn:aws:outposts:<region>:<account>:outpost/op-<id>"
        ))
    };
    let parts: Vec<&str> = value.splitn(6, ':').collect();
    let [arn, partition, service, region, account, resource] = parts[..] else {
        return Err(bad("it has fewer than six ':'-separated parts"));
    };
    if arn != "arn" || !partition.starts_with("aws") {
        return Err(bad("it does not start with arn:aws"));
    }
    if service != "outposts" {
        return Err(bad("its service is not outposts"));
    }
    let region_ok = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !region_ok {
        return Err(bad("its region is not a region name"));
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("its account is not 12 digits"));
    }
    let id_ok = resource
        .strip_prefix("outpost/op-")
        .is_some_and(|h| (8..=17).contains(&h.len()) && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if !id_ok {
        return Err(bad("its resource is not outpost/op-<hex id>"));
    }
    Ok(())
}

/// Milliseconds since the Unix epoch as RFC 3339 in UTC (`2030-01-02T03:04:05.678Z`).
pub fn rfc3339(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => {
            let t = t
                .replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)
                .unwrap_or(t);
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|_| format!("{ms} ms after the epoch"))
        }
        Err(_) => format!("{ms} ms after the epoch"),
    }
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn lock(mode: LockMode, term: LockTerm, cool: Option<u32>) -> LockRequest {
        LockRequest {
            mode,
            term,
            cool_off_hours: cool,
        }
    }

    #[test]
    fn lock_rules_are_ec2s() {
        use LockMode::*;
        let ok = [
            lock(Governance, LockTerm::Days(1), None),
            lock(Compliance, LockTerm::Days(36_500), Some(72)),
            lock(Compliance, LockTerm::Until(NOW + 5_000), Some(1)),
        ];
        for l in ok {
            l.check(NOW).unwrap();
        }
        let bad = [
            (lock(Governance, LockTerm::Days(0), None), "out of range"),
            (lock(Governance, LockTerm::Days(36_501), None), "out of range"),
            (lock(Governance, LockTerm::Until(NOW), None), "not in the future"),
            (
                lock(Governance, LockTerm::Until(NOW + 36_501 * MS_PER_DAY), None),
                "days ahead",
            ),
            (
                lock(Governance, LockTerm::Days(1), Some(1)),
                "only to lockMode compliance",
            ),
            (lock(Compliance, LockTerm::Days(1), Some(73)), "1 to 72 hours"),
            (lock(Compliance, LockTerm::Days(1), Some(0)), "1 to 72 hours"),
        ];
        for (l, why) in bad {
            let e = l.check(NOW).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(e.to_string().contains(why), "{l:?}: {e}");
        }
    }

    #[test]
    fn a_lock_holds_until_it_expires_and_says_until_when() {
        let l = lock(LockMode::Compliance, LockTerm::Days(1), Some(2)).applied(NOW);
        assert_eq!(l.expires_ms, NOW + MS_PER_DAY);
        assert_eq!(l.state(NOW), "compliance-cooloff");
        assert_eq!(l.state(NOW + 3 * MS_PER_HOUR), "compliance");
        assert!(l.holds(NOW + MS_PER_DAY - 1));
        assert!(!l.holds(NOW + MS_PER_DAY));
        assert_eq!(l.state(NOW + MS_PER_DAY), "expired");
        let e = l.refusal("snap-1");
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        assert!(e.to_string().contains(&rfc3339(NOW + MS_PER_DAY)), "{e}");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_500), "1970-01-01T00:00:01.5Z");
    }

    #[test]
    fn outpost_arns_are_checked_for_shape() {
        check_outpost_arn("arn:aws:outposts:us-west-2:111122223333:outpost/op-0123456789abcdef0").unwrap();
        for bad in [
            "",
            "op-0123456789abcdef0",
            "arn:aws:ec2:us-west-2:111122223333:outpost/op-0123456789abcdef0",
            "arn:aws:outposts:us-west-2:1111:outpost/op-0123456789abcdef0",
            "arn:aws:outposts:us-west-2:111122223333:site/os-0123456789abcdef0",
            "arn:aws:outposts:US WEST:111122223333:outpost/op-0123456789abcdef0",
        ] {
            assert_eq!(
                check_outpost_arn(bad).unwrap_err().code(),
                tonic::Code::InvalidArgument,
                "{bad}"
            );
        }
    }
}
