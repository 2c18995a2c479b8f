//! EC2 snapshot locks and fast snapshot restores, which moto lacks, answered by the tests' proxy
//! as the EC2 API reference documents them: LockSnapshot (governance or compliance, a duration
//! of 1–36500 days or an expiration date, a cool-off of 1–72 hours in compliance mode only),
//! DescribeLockedSnapshots (`snapshotSet` items with `lockState` governance, compliance-cooloff,
//! compliance or expired), EnableFastSnapshotRestores (`successful` items in state enabling,
//! `unsuccessful` items with a per-zone error), and DeleteSnapshot refused while a lock holds.
//! Snapshots themselves stay in moto: each call first asks moto whether the snapshot exists.

use std::collections::HashMap;
use std::sync::Mutex;

use ebs_csi::ebs::{now_ms, rfc3339};

/// One lock as EC2 keeps it.
#[derive(Clone, Debug)]
pub struct HeldLock {
    pub mode: String,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub duration_days: Option<i64>,
    pub cool_off_hours: Option<i64>,
}

impl HeldLock {
    fn state(&self, now: i64) -> &'static str {
        let cooling = self
            .cool_off_hours
            .is_some_and(|h| now < self.created_ms + h * 3_600_000);
        match self.mode.as_str() {
            _ if now >= self.expires_ms => "expired",
            "governance" => "governance",
            _ if cooling => "compliance-cooloff",
            _ => "compliance",
        }
    }

    fn xml(&self, id: &str) -> String {
        let now = now_ms();
        let mut x = format!(
            "<snapshotId>{id}</snapshotId><lockState>{}</lockState>",
            self.state(now)
        );
        if let Some(d) = self.duration_days {
            x.push_str(&format!("<lockDuration>{d}</lockDuration>"));
        }
        if let Some(h) = self.cool_off_hours {
            x.push_str(&format!(
                "<coolOffPeriod>{h}</coolOffPeriod><coolOffPeriodExpiresOn>{}</coolOffPeriodExpiresOn>",
                rfc3339(self.created_ms + h * 3_600_000)
            ));
        }
        x.push_str(&format!(
            "<lockCreatedOn>{c}</lockCreatedOn><lockDurationStartTime>{c}</lockDurationStartTime><lockExpiresOn>{}</lockExpiresOn>",
            rfc3339(self.expires_ms),
            c = rfc3339(self.created_ms)
        ));
        x
    }
}

/// What the stand-in keeps: locks by snapshot, and the zones with fast restores by snapshot.
#[derive(Default)]
pub struct SnapshotState {
    pub locks: Mutex<HashMap<String, HeldLock>>,
    pub fast_restores: Mutex<HashMap<String, Vec<String>>>,
}

pub type Params = Vec<(String, String)>;

fn get<'a>(p: &'a Params, k: &str) -> Option<&'a str> {
    p.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
}

/// `Prefix.1`, `Prefix.2`… in order.
fn list(p: &Params, prefix: &str) -> Vec<String> {
    let mut v: Vec<(usize, String)> = p
        .iter()
        .filter_map(|(k, val)| Some((k.strip_prefix(prefix)?.strip_prefix('.')?.parse().ok()?, val.clone())))
        .collect();
    v.sort();
    v.into_iter().map(|(_, s)| s).collect()
}

pub fn ok(action: &str, inner: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><{action}Response xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>stand-in-1</requestId>{inner}</{action}Response>"
    );
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

pub fn fail(code: &str, message: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>stand-in-2</RequestID></Response>"
    );
    format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn parse_ms(v: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

impl SnapshotState {
    /// LockSnapshot on a snapshot `exists` says moto has.
    pub fn lock(&self, p: &Params, exists: impl Fn(&str) -> bool) -> Vec<u8> {
        let (Some(id), Some(mode)) = (get(p, "SnapshotId"), get(p, "LockMode")) else {
            return fail("MissingParameter", "SnapshotId and LockMode are required");
        };
        if mode != "governance" && mode != "compliance" {
            return fail("InvalidParameterValue", "LockMode must be governance or compliance");
        }
        let days = get(p, "LockDuration").map(|d| d.parse::<i64>().unwrap_or(-1));
        let date = get(p, "ExpirationDate");
        let cool = get(p, "CoolOffPeriod").map(|h| h.parse::<i64>().unwrap_or(-1));
        let now = now_ms();
        let expires = match (days, date) {
            (Some(_), Some(_)) | (None, None) => {
                return fail(
                    "InvalidParameterCombination",
                    "specify either LockDuration or ExpirationDate, but not both",
                );
            }
            (Some(d), None) if !(1..=36_500).contains(&d) => {
                return fail("InvalidParameterValue", "LockDuration must be 1 to 36500");
            }
            (Some(d), None) => now + d * 86_400_000,
            (None, Some(t)) => match parse_ms(t) {
                Some(t) if t > now => t,
                _ => return fail("InvalidParameterValue", "ExpirationDate must be a future date"),
            },
        };
        match cool {
            Some(_) if mode != "compliance" => {
                return fail(
                    "InvalidParameterCombination",
                    "CoolOffPeriod applies to compliance mode only",
                );
            }
            Some(h) if !(1..=72).contains(&h) => {
                return fail("InvalidParameterValue", "CoolOffPeriod must be 1 to 72");
            }
            _ => {}
        }
        if !exists(id) {
            return fail(
                "InvalidSnapshot.NotFound",
                &format!("The snapshot '{id}' does not exist."),
            );
        }
        let lock = HeldLock {
            mode: mode.to_owned(),
            created_ms: now,
            expires_ms: expires,
            duration_days: days,
            cool_off_hours: cool,
        };
        let xml = lock.xml(id);
        self.locks.lock().unwrap().insert(id.to_owned(), lock);
        ok("LockSnapshot", &xml)
    }

    pub fn describe_locked(&self, p: &Params) -> Vec<u8> {
        let ids = list(p, "SnapshotId");
        let locks = self.locks.lock().unwrap();
        let items: String = locks
            .iter()
            .filter(|(id, _)| ids.is_empty() || ids.contains(id))
            .map(|(id, l)| format!("<item><ownerId>123456789012</ownerId>{}</item>", l.xml(id)))
            .collect();
        ok(
            "DescribeLockedSnapshots",
            &format!("<snapshotSet>{items}</snapshotSet>"),
        )
    }

    /// EnableFastSnapshotRestores: `zones` are the region's.
    pub fn enable_fast_restores(&self, p: &Params, zones: &[&str], exists: impl Fn(&str) -> bool) -> Vec<u8> {
        let (wanted, ids) = (list(p, "AvailabilityZone"), list(p, "SourceSnapshotId"));
        if wanted.is_empty() || ids.is_empty() {
            return fail("MissingParameter", "AvailabilityZone and SourceSnapshotId are required");
        }
        let (mut good, mut bad) = (String::new(), String::new());
        let mut kept = self.fast_restores.lock().unwrap();
        for id in &ids {
            let mut errors = String::new();
            for z in &wanted {
                let error = if !exists(id) {
                    Some((
                        "InvalidSnapshot.NotFound",
                        format!("The snapshot '{id}' does not exist."),
                    ))
                } else if !zones.contains(&z.as_str()) {
                    Some(("InvalidParameterValue", format!("Invalid availability zone: [{z}]")))
                } else {
                    None
                };
                match error {
                    Some((code, message)) => errors.push_str(&format!(
                        "<item><availabilityZone>{z}</availabilityZone><error><code>{code}</code><message>{message}</message></error></item>"
                    )),
                    None => {
                        let on = kept.entry(id.clone()).or_default();
                        if !on.contains(z) {
                            on.push(z.clone());
                        }
                        good.push_str(&format!(
                            "<item><snapshotId>{id}</snapshotId><availabilityZone>{z}</availabilityZone><state>enabling</state><stateTransitionReason>Client.UserInitiated</stateTransitionReason><ownerId>123456789012</ownerId><enablingTime>{}</enablingTime></item>",
                            rfc3339(now_ms())
                        ));
                    }
                }
            }
            if !errors.is_empty() {
                bad.push_str(&format!(
                    "<item><snapshotId>{id}</snapshotId><fastSnapshotRestoreStateErrorSet>{errors}</fastSnapshotRestoreStateErrorSet></item>"
                ));
            }
        }
        ok(
            "EnableFastSnapshotRestores",
            &format!("<successful>{good}</successful><unsuccessful>{bad}</unsuccessful>"),
        )
    }

    /// A DeleteSnapshot the lock forbids gets EC2's refusal; None lets it through to moto. The
    /// API reference names no error code for this; `SnapshotLocked` stands in, and the driver
    /// does not rely on it (it reads the lock back to say until when).
    pub fn refuse_delete(&self, p: &Params) -> Option<Vec<u8>> {
        let id = get(p, "SnapshotId")?;
        let locks = self.locks.lock().unwrap();
        let lock = locks.get(id).filter(|l| l.state(now_ms()) != "expired")?;
        Some(fail(
            "SnapshotLocked",
            &format!(
                "The snapshot '{id}' is locked in {} mode and cannot be deleted.",
                lock.mode
            ),
        ))
    }
}
