//! `aws`: EBS volumes through the EC2 API (aws-sdk-ec2), with the default credential chain (so
//! IRSA's web identity works unchanged), idempotent creates (ClientToken from the CSI name),
//! batched describes shared by every waiter, and per-instance device-name allocation.

mod batch;
pub mod errors;
pub mod retry;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{self as ec2, Filter, ResourceType, Tag, TagSpecification};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use tracing::{info, warn};

use self::batch::Batcher;
use self::retry::Retrier;
use super::{
    Attachment, Cloud, Modification, Node, Page, Snapshot, SnapshotFilter, Tags, Volume, VolumeSource, VolumeSpec,
};
use super::{is_ec2_id, limits};
use crate::ebs::{CLUSTER_TAG, SNAPSHOT_NAME_TAG, VOLUME_NAME_TAG, VolumeType};
use crate::error::{Error, Result};
use crate::metrics::CallCounts;

/// How long a volume, attachment or modification is waited for before the call gives up (the
/// CO retries, and the retry finds the work already under way).
const WAIT_LIMIT: Duration = Duration::from_secs(300);

/// Waits for a volume poll on one process-wide grid of ticks this far apart: waiters due in the
/// same tick ask the batcher at the same instant and share one DescribeVolumes, so a tick costs
/// one call however many volumes wait, and a volume is seen ready at most a tick after it is.
const POLL_TICK: Duration = Duration::from_millis(200);
/// A wait first looks this long after it starts (EC2 often has the answer by then).
const FIRST_LOOK: Duration = Duration::from_millis(200);
/// A wait polls every tick for this long, the time most new volumes and attachments take; after
/// that, half as long again between polls each time, up to 5 s.
const STEADY_POLLING: Duration = Duration::from_secs(5);

static POLL_EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// The first tick of the poll grid at or after `at`.
fn poll_tick(at: Instant) -> Instant {
    let epoch = *POLL_EPOCH;
    let tick = POLL_TICK.as_nanos();
    let ticks = at.saturating_duration_since(epoch).as_nanos().div_ceil(tick);
    epoch + Duration::from_nanos(u64::try_from(ticks * tick).unwrap_or(u64::MAX))
}

fn not_found(kind: &str, id: &str) -> Error {
    Error::NotFound(format!("{kind} {id} does not exist"))
}

fn tags_of(tags: &[Tag]) -> Tags {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned())))
        .collect()
}

fn ec2_tags(tags: &Tags) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

fn filter(name: &str, values: impl IntoIterator<Item = String>) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.into_iter().collect()))
        .build()
}

/// An EC2 volume as the controller sees it.
fn to_volume(v: &ec2::Volume) -> Volume {
    let tags = tags_of(v.tags());
    let attachments = v
        .attachments()
        .iter()
        .filter(|a| {
            matches!(
                a.state(),
                Some(ec2::VolumeAttachmentState::Attached | ec2::VolumeAttachmentState::Attaching)
            )
        })
        .map(|a| Attachment {
            node: a.instance_id().unwrap_or_default().to_owned(),
            device: a.device().unwrap_or_default().to_owned(),
            read_only: false,
        })
        .collect();
    let state = v.state().map(|s| s.as_str().to_owned()).unwrap_or_default();
    Volume {
        id: v.volume_id().unwrap_or_default().to_owned(),
        name: tags.get(VOLUME_NAME_TAG).cloned().unwrap_or_default(),
        size_gib: v.size().unwrap_or(0).max(0) as u64,
        volume_type: v
            .volume_type()
            .and_then(|t| VolumeType::from_str(t.as_str()).ok())
            .unwrap_or(VolumeType::Gp2),
        iops: v.iops().map(|i| i.max(0) as u32),
        throughput: v.throughput().map(|t| t.max(0) as u32),
        encrypted: v.encrypted().unwrap_or(false),
        kms_key_id: v.kms_key_id().map(str::to_owned),
        zone: v.availability_zone().unwrap_or_default().to_owned(),
        multi_attach: v.multi_attach_enabled().unwrap_or(false),
        source: v
            .snapshot_id()
            .filter(|s| !s.is_empty())
            .map(|s| VolumeSource::Snapshot(s.to_owned())),
        tags,
        attachments,
        abnormal: (state == "error")
            .then(|| format!("EC2 reports volume {} in state error", v.volume_id().unwrap_or("?"))),
    }
}

/// CreateVolume's answer as the volume it describes.
fn volume_from_create(v: &aws_sdk_ec2::operation::create_volume::CreateVolumeOutput) -> ec2::Volume {
    ec2::Volume::builder()
        .set_volume_id(v.volume_id().map(str::to_owned))
        .set_size(v.size())
        .set_volume_type(v.volume_type().cloned())
        .set_iops(v.iops())
        .set_throughput(v.throughput())
        .set_encrypted(v.encrypted())
        .set_kms_key_id(v.kms_key_id().map(str::to_owned))
        .set_availability_zone(v.availability_zone().map(str::to_owned))
        .set_multi_attach_enabled(v.multi_attach_enabled())
        .set_snapshot_id(v.snapshot_id().map(str::to_owned))
        .set_state(v.state().cloned())
        .set_tags(Some(v.tags().to_vec()))
        .set_attachments(Some(v.attachments().to_vec()))
        .build()
}

fn to_snapshot(s: &ec2::Snapshot) -> Snapshot {
    let tags = tags_of(s.tags());
    let created = s
        .start_time()
        .map(|t| (t.secs(), t.subsec_nanos() as i32))
        .unwrap_or((0, 0));
    Snapshot {
        id: s.snapshot_id().unwrap_or_default().to_owned(),
        name: tags.get(SNAPSHOT_NAME_TAG).cloned().unwrap_or_default(),
        source_volume: s.volume_id().unwrap_or_default().to_owned(),
        size_gib: s.volume_size().unwrap_or(0).max(0) as u64,
        created_at: created,
        ready: matches!(s.state(), Some(ec2::SnapshotState::Completed)),
        tags,
    }
}

/// A paging token of ours: how many items of EC2's page starting at `ec2` were already given
/// out. EC2 pages hold at least 5 items, CSI callers may ask for fewer.
fn parse_token(token: Option<&str>) -> Result<(usize, Option<String>)> {
    let Some(t) = token else { return Ok((0, None)) };
    let bad = || {
        Error::Aborted(format!(
            "starting_token {t:?} is not one this plugin gave out; list again from the start"
        ))
    };
    let rest = t.strip_prefix("ebs-csi:").ok_or_else(bad)?;
    let (skip, page_token) = rest.split_once(':').ok_or_else(bad)?;
    let skip = skip.parse().map_err(|_| bad())?;
    Ok((skip, (!page_token.is_empty()).then(|| page_token.to_owned())))
}

/// Cuts one EC2 page to at most `max` items and says where the next CSI page starts.
fn cut_page<T>(mut items: Vec<T>, skip: usize, max: usize, this: Option<String>, next: Option<String>) -> Page<T> {
    let items: Vec<T> = items.drain(skip.min(items.len())..).collect();
    if max > 0 && items.len() > max {
        let token = format!("ebs-csi:{}:{}", skip + max, this.unwrap_or_default());
        let mut items = items;
        items.truncate(max);
        return Page {
            items,
            next: Some(token),
        };
    }
    Page {
        items,
        next: next.map(|n| format!("ebs-csi:0:{n}")),
    }
}

fn page_size(max: usize, most: usize) -> i32 {
    if max == 0 {
        most as i32
    } else {
        max.clamp(5, most) as i32
    }
}

/// Device names the driver hands out: /dev/xvdaa … /dev/xvdzz, as the Go driver does.
fn device_names() -> impl Iterator<Item = String> {
    (b'a'..=b'z').flat_map(|a| (b'a'..=b'z').map(move |b| format!("/dev/xvd{}{}", a as char, b as char)))
}

/// `/dev/sdf` and `/dev/xvdf` name the same slot.
fn slot(name: &str) -> String {
    let n = name.trim_start_matches("/dev/");
    n.strip_prefix("sd")
        .map(|r| format!("xvd{r}"))
        .unwrap_or_else(|| n.to_owned())
}

pub struct AwsCloud {
    ec2: Client,
    retrier: Arc<Retrier>,
    zones: Vec<String>,
    zone_ids: Vec<String>,
    volumes: Batcher<ec2::Volume>,
    instances: Batcher<ec2::Instance>,
    modifications: Batcher<ec2::VolumeModification>,
    /// Device slots in use per instance: read from the instance once, then kept by our own
    /// attaches and detaches (a slot is freed only after its detach completed).
    slots: Mutex<HashMap<String, HashSet<String>>>,
    /// That one read per instance, shared by every attach needing it while it runs.
    first_reads: Mutex<HashMap<String, Arc<OnceCell<()>>>>,
    /// CSI names of volumes this process created, so a repeated CreateVolume costs no call.
    names: Mutex<HashMap<String, String>>,
    last_probe: Mutex<Option<Instant>>,
    /// Changes waiting to be sent as one ModifyVolume, by volume (see `change_volume`).
    pending: Pending,
}

/// An expand and a modify of one volume arriving together become one ModifyVolume: EC2 allows
/// one modification per volume every six hours, so two calls would fail the second.
#[derive(Default)]
struct PendingChange {
    size: Option<u64>,
    change: Modification,
    waiters: Vec<tokio::sync::oneshot::Sender<Result<()>>>,
}

/// How long the first change of a volume waits for others to merge with.
const MERGE_WINDOW: Duration = Duration::from_millis(500);

type ChangeWaiter = tokio::sync::oneshot::Sender<Result<()>>;

/// The changes queued per volume. Whatever the timing, every change queued before the first
/// one's caller takes them is in what it takes; a change queued after starts the next batch.
#[derive(Default)]
struct Pending(Mutex<HashMap<String, PendingChange>>);

impl Pending {
    /// Adds a change; true for the first of its volume, whose caller takes and sends them all.
    fn queue(&self, id: &str, size: Option<u64>, change: Modification, waiter: ChangeWaiter) -> bool {
        let mut pending = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let first = !pending.contains_key(id);
        let p = pending.entry(id.to_owned()).or_default();
        p.size = p.size.max(size);
        p.change.volume_type = change.volume_type.or(p.change.volume_type);
        p.change.iops = change.iops.or(p.change.iops);
        p.change.throughput = change.throughput.or(p.change.throughput);
        p.change.tags.extend(change.tags);
        p.waiters.push(waiter);
        first
    }

    /// Everything queued for the volume, merged.
    fn take(&self, id: &str) -> PendingChange {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
            .unwrap_or_default()
    }
}

impl AwsCloud {
    /// Connects with the default credential chain and region (env, profile, web identity, IMDS);
    /// AWS_ENDPOINT_URL(_EC2) override the endpoint.
    /// Transient failures are retried by `retry` (within each gRPC caller's deadline, through one
    /// adaptive rate limiter), so the SDK's own retries are off.
    pub async fn connect(calls: CallCounts, policy: retry::Policy) -> Result<Self> {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .app_name(
                aws_config::AppName::new(format!("ebs-csi-{}", env!("CARGO_PKG_VERSION")))
                    .map_err(|e| Error::internal("app name", e))?,
            )
            .retry_config(RetryConfig::disabled())
            .load()
            .await;
        if config.region().is_none() {
            return Err(Error::FailedPrecondition(
                "no AWS region: set AWS_REGION, or run where IMDS can tell it".into(),
            ));
        }
        let ec2 = Client::new(&config);
        let retrier = Arc::new(Retrier::new(policy, calls.clone()));
        let out = retrier
            .send("DescribeAvailabilityZones", true, || {
                ec2.describe_availability_zones()
                    .filters(filter("zone-type", ["availability-zone".to_owned()]))
                    .send()
            })
            .await
            .map_err(|e| errors::map("listing the region's zones", e))?;
        let mut zones: Vec<(String, String)> = out
            .availability_zones()
            .iter()
            .filter_map(|z| Some((z.zone_name()?.to_owned(), z.zone_id().unwrap_or_default().to_owned())))
            .collect();
        zones.sort();
        info!(zones = ?zones, "connected to EC2");
        let volumes = {
            let (ec2, retrier) = (ec2.clone(), retrier.clone());
            Batcher::new(Arc::new(move |ids: Vec<String>| {
                let (ec2, retrier) = (ec2.clone(), retrier.clone());
                Box::pin(async move {
                    let out = retrier
                        .send("DescribeVolumes", true, || {
                            ec2.describe_volumes().filters(filter("volume-id", ids.clone())).send()
                        })
                        .await
                        .map_err(|e| errors::map("describing volumes", e))?;
                    Ok(out
                        .volumes()
                        .iter()
                        .filter_map(|v| Some((v.volume_id()?.to_owned(), v.clone())))
                        .collect())
                })
            }))
        };
        let instances = {
            let (ec2, retrier) = (ec2.clone(), retrier.clone());
            Batcher::new(Arc::new(move |ids: Vec<String>| {
                let (ec2, retrier) = (ec2.clone(), retrier.clone());
                Box::pin(async move {
                    let out = retrier
                        .send("DescribeInstances", true, || {
                            ec2.describe_instances()
                                .filters(filter("instance-id", ids.clone()))
                                .send()
                        })
                        .await
                        .map_err(|e| errors::map("describing instances", e))?;
                    Ok(out
                        .reservations()
                        .iter()
                        .flat_map(|r| r.instances())
                        .filter_map(|i| Some((i.instance_id()?.to_owned(), i.clone())))
                        .collect())
                })
            }))
        };
        let modifications = {
            let (ec2, retrier) = (ec2.clone(), retrier.clone());
            Batcher::new(Arc::new(move |ids: Vec<String>| {
                let (ec2, retrier) = (ec2.clone(), retrier.clone());
                Box::pin(async move {
                    let out = retrier
                        .send("DescribeVolumesModifications", true, || {
                            ec2.describe_volumes_modifications()
                                .filters(filter("volume-id", ids.clone()))
                                .send()
                        })
                        .await
                        .map_err(|e| errors::map("describing volume modifications", e))?;
                    // The newest modification of each volume.
                    let mut newest: HashMap<String, ec2::VolumeModification> = HashMap::new();
                    for m in out.volumes_modifications() {
                        let Some(id) = m.volume_id() else { continue };
                        let later = newest.get(id).is_none_or(|old| m.start_time() >= old.start_time());
                        if later {
                            newest.insert(id.to_owned(), m.clone());
                        }
                    }
                    Ok(newest)
                })
            }))
        };
        Ok(AwsCloud {
            ec2,
            retrier,
            zones: zones.iter().map(|z| z.0.clone()).collect(),
            zone_ids: zones.iter().map(|z| z.1.clone()).collect(),
            volumes,
            instances,
            modifications,
            slots: Mutex::new(HashMap::new()),
            first_reads: Mutex::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
            last_probe: Mutex::new(Some(Instant::now())),
            pending: Pending::default(),
        })
    }

    async fn describe(&self, id: &str) -> Result<ec2::Volume> {
        if !is_ec2_id("vol", id) {
            return Err(not_found("volume", id));
        }
        self.volumes.get(id).await?.ok_or_else(|| not_found("volume", id))
    }

    /// Polls (through the shared batcher, on the poll grid) until `check` answers: first after
    /// 200 ms, then every tick for the first 5 s, then backing off to every 5 s.
    async fn wait_volume<T>(
        &self,
        id: &str,
        what: &str,
        check: impl Fn(&ec2::Volume) -> Option<Result<T>>,
    ) -> Result<T> {
        let start = Instant::now();
        let deadline = start + WAIT_LIMIT;
        let mut delay = FIRST_LOOK;
        loop {
            tokio::time::sleep_until(poll_tick(Instant::now() + delay).into()).await;
            let v = self.describe(id).await?;
            if let Some(answer) = check(&v) {
                return answer;
            }
            if Instant::now() > deadline {
                return Err(Error::Unavailable(format!(
                    "volume {id} is still not {what} after {WAIT_LIMIT:?}; retry"
                )));
            }
            // Half a tick on: the next tick, never the one just polled.
            delay = if start.elapsed() < STEADY_POLLING {
                POLL_TICK / 2
            } else {
                (delay.max(POLL_TICK) * 3 / 2).min(Duration::from_secs(5))
            };
        }
    }

    async fn wait_available(&self, id: &str) -> Result<ec2::Volume> {
        self.wait_volume(id, "available", |v| match v.state() {
            Some(ec2::VolumeState::Available | ec2::VolumeState::InUse) => Some(Ok(v.clone())),
            Some(ec2::VolumeState::Error) => Some(Err(Error::Internal(format!("volume {id} went to state error")))),
            Some(ec2::VolumeState::Deleted | ec2::VolumeState::Deleting) => Some(Err(not_found("volume", id))),
            _ => None,
        })
        .await
    }

    async fn find_by_name(&self, name: &str) -> Result<Option<ec2::Volume>> {
        let out = self
            .retrier
            .send("DescribeVolumes", true, || {
                self.ec2
                    .describe_volumes()
                    .filters(filter(&format!("tag:{VOLUME_NAME_TAG}"), [name.to_owned()]))
                    .send()
            })
            .await
            .map_err(|e| errors::map(&format!("looking up volume {name:?}"), e))?;
        Ok(out
            .volumes()
            .iter()
            .find(|v| !matches!(v.state(), Some(ec2::VolumeState::Deleting | ec2::VolumeState::Deleted)))
            .cloned())
    }

    /// Clone: EC2 makes volumes from snapshots, so a volume source goes through a temporary
    /// snapshot, removed once the new volume exists.
    async fn snapshot_for_clone(&self, name: &str, source: &str) -> Result<String> {
        let tags = Tags::from([(SNAPSHOT_NAME_TAG.to_owned(), format!("clone-of-{source}-for-{name}"))]);
        let snap = self
            .create_snapshot_inner(&format!("clone-of-{source}-for-{name}"), source, &tags)
            .await?;
        let deadline = Instant::now() + WAIT_LIMIT;
        let mut delay = Duration::from_millis(500);
        loop {
            let s = self.snapshot_inner(&snap.id).await?;
            if s.ready {
                return Ok(s.id);
            }
            if Instant::now() > deadline {
                return Err(Error::Unavailable(format!(
                    "the snapshot {} for cloning {source} is not complete yet; retry",
                    s.id
                )));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }

    async fn create_once(&self, name: &str, spec: &VolumeSpec, snapshot: Option<&str>) -> Result<ec2::Volume> {
        let token = format!("{:x}", Sha256::digest(name.as_bytes()));
        let mut req = self
            .ec2
            .create_volume()
            .availability_zone(&spec.zone)
            .size(
                i32::try_from(spec.size_gib)
                    .map_err(|_| Error::OutOfRange(format!("{} GiB is too large", spec.size_gib)))?,
            )
            .volume_type(ec2::VolumeType::from(spec.volume_type.as_str()))
            .encrypted(spec.encrypted)
            .set_kms_key_id(spec.kms_key_id.clone())
            .set_iops(spec.iops.map(|i| i as i32))
            .set_throughput(spec.throughput.map(|t| t as i32))
            .set_snapshot_id(snapshot.map(str::to_owned))
            .client_token(token)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Volume)
                    .set_tags(Some(ec2_tags(&spec.tags)))
                    .build(),
            );
        if spec.multi_attach {
            req = req.multi_attach_enabled(true);
        }
        if let Some(rate) = spec.initialization_rate {
            req = req.volume_initialization_rate(rate as i32);
        }
        // The SDK does not retry this call; this loop does, by what the failure means: a
        // throttle certainly made nothing, so it is sent again; a lost or failed-on-EC2's-side
        // answer may have made the volume, so it is looked up by name first (which works even
        // where the ClientToken is not honoured) and only then sent again with the same token.
        let give_up = self.retrier.give_up_at();
        let mut attempt = 0;
        loop {
            let failed = match self.retrier.attempt("CreateVolume", req.clone().send()).await {
                Ok(v) => {
                    let id = v.volume_id().unwrap_or_default().to_owned();
                    return if matches!(v.state(), Some(ec2::VolumeState::Available)) {
                        // The answer describes the volume fully: no DescribeVolumes needed.
                        Ok(volume_from_create(&v))
                    } else {
                        self.wait_available(&id).await
                    };
                }
                Err(failed) => failed,
            };
            let (e, failure) = failed;
            let mismatch = errors::code_of(&e) == Some("IdempotentParameterMismatch");
            let mapped = errors::map(&format!("creating volume {name:?}"), e);
            let maybe_made = matches!(failure, retry::Failure::Lost(_) | retry::Failure::Server(_)) || mismatch;
            if maybe_made && let Some(v) = self.find_by_name(name).await? {
                // Made, but not necessarily ready: answered only once available, as above.
                return if matches!(v.state(), Some(ec2::VolumeState::Available)) {
                    Ok(v)
                } else {
                    self.wait_available(v.volume_id().unwrap_or_default()).await
                };
            }
            attempt += 1;
            if !failure.retryable() || !self.retrier.pause("CreateVolume", attempt, give_up).await {
                return Err(mapped);
            }
        }
    }

    async fn create_snapshot_inner(&self, name: &str, source: &str, tags: &Tags) -> Result<Snapshot> {
        let out = self
            .retrier
            .send("CreateSnapshot", false, || {
                self.ec2
                    .create_snapshot()
                    .volume_id(source)
                    .tag_specifications(
                        TagSpecification::builder()
                            .resource_type(ResourceType::Snapshot)
                            .set_tags(Some(ec2_tags(tags)))
                            .build(),
                    )
                    .send()
            })
            .await
            .map_err(|e| errors::map(&format!("snapshotting volume {source} as {name:?}"), e))?;
        let tags = tags_of(out.tags());
        Ok(Snapshot {
            id: out.snapshot_id().unwrap_or_default().to_owned(),
            name: name.to_owned(),
            source_volume: source.to_owned(),
            size_gib: out.volume_size().unwrap_or(0).max(0) as u64,
            created_at: out
                .start_time()
                .map(|t| (t.secs(), t.subsec_nanos() as i32))
                .unwrap_or((0, 0)),
            ready: matches!(out.state(), Some(ec2::SnapshotState::Completed)),
            tags,
        })
    }

    async fn snapshot_inner(&self, id: &str) -> Result<Snapshot> {
        if !is_ec2_id("snap", id) {
            return Err(not_found("snapshot", id));
        }
        let out = self
            .retrier
            .send("DescribeSnapshots", true, || {
                self.ec2.describe_snapshots().snapshot_ids(id).send()
            })
            .await;
        match out {
            Ok(o) => o
                .snapshots()
                .first()
                .map(to_snapshot)
                .ok_or_else(|| not_found("snapshot", id)),
            Err(e) => Err(errors::map(&format!("describing snapshot {id}"), e)),
        }
    }

    /// The device slots in use on an instance (read from EC2 the first time).
    async fn slots_of(&self, node: &str) -> Result<HashSet<String>> {
        if let Some(s) = self.slots.lock().unwrap_or_else(|p| p.into_inner()).get(node) {
            return Ok(s.clone());
        }
        // Single flight: the first attaches to a new node (a StatefulSet landing there) wait for
        // one read instead of each describing the instance; the batcher alone would merge only
        // those that happen to fall in one window. A failed read is tried again by the next.
        let read = self
            .first_reads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(node.to_owned())
            .or_default()
            .clone();
        read.get_or_try_init(|| async {
            let inst = self.instance(node).await?;
            let used: HashSet<String> = inst
                .block_device_mappings()
                .iter()
                .filter_map(|m| m.device_name())
                .map(slot)
                .collect();
            self.slots
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(node.to_owned())
                .or_insert(used);
            Ok::<_, Error>(())
        })
        .await?;
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        Ok(slots.get(node).cloned().unwrap_or_default())
    }

    fn take_slot(&self, node: &str, used: &HashSet<String>) -> Result<String> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mine = slots.entry(node.to_owned()).or_default();
        let name = device_names()
            .find(|n| !used.contains(&slot(n)) && !mine.contains(&slot(n)))
            .ok_or_else(|| Error::ResourceExhausted(format!("node {node} has no free device name left")))?;
        mine.insert(slot(&name));
        Ok(name)
    }

    fn free_slot(&self, node: &str, device: &str) {
        if let Some(s) = self.slots.lock().unwrap_or_else(|p| p.into_inner()).get_mut(node) {
            s.remove(&slot(device));
        }
    }

    async fn instance(&self, id: &str) -> Result<ec2::Instance> {
        if !is_ec2_id("i", id) {
            return Err(Error::NotFound(format!("node {id} is not an EC2 instance id")));
        }
        self.instances
            .get(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("instance {id} does not exist")))
    }

    /// Queues a size and/or performance change; the first caller for a volume waits a moment,
    /// then sends everything queued for it as one ModifyVolume and tells every caller the result.
    async fn change_volume(&self, id: &str, size: Option<u64>, change: Modification) -> Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.pending.queue(id, size, change, tx) {
            tokio::time::sleep(MERGE_WINDOW).await;
            let merged = self.pending.take(id);
            let result = self.modify_volume(id, merged.size, &merged.change).await;
            for w in merged.waiters {
                let _ = w.send(match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(batch::copy(e)),
                });
            }
        }
        rx.await
            .map_err(|_| Error::Internal(format!("the change of volume {id} was dropped")))?
    }

    async fn wait_modification(&self, id: &str) -> Result<()> {
        let deadline = Instant::now() + WAIT_LIMIT;
        let mut delay = Duration::from_millis(200);
        loop {
            tokio::time::sleep(delay).await;
            match self.modifications.get(id).await? {
                None => return Ok(()),
                Some(m) => match m.modification_state() {
                    Some(ec2::VolumeModificationState::Optimizing | ec2::VolumeModificationState::Completed) => {
                        return Ok(());
                    }
                    Some(ec2::VolumeModificationState::Failed) => {
                        return Err(Error::Internal(format!(
                            "EC2 failed to modify volume {id}: {}",
                            m.status_message().unwrap_or("no reason given")
                        )));
                    }
                    _ => {}
                },
            }
            if Instant::now() > deadline {
                return Err(Error::Unavailable(format!(
                    "volume {id} is still being modified; retry"
                )));
            }
            delay = (delay * 3 / 2).min(Duration::from_secs(5));
        }
    }

    async fn modify_volume(&self, id: &str, size: Option<u64>, change: &Modification) -> Result<()> {
        if size.is_none() && change.volume_type.is_none() && change.iops.is_none() && change.throughput.is_none() {
            return Ok(());
        }
        let out = self
            .retrier
            .send("ModifyVolume", false, || {
                self.ec2
                    .modify_volume()
                    .volume_id(id)
                    .set_size(size.map(|s| s as i32))
                    .set_volume_type(change.volume_type.map(|t| ec2::VolumeType::from(t.as_str())))
                    .set_iops(change.iops.map(|i| i as i32))
                    .set_throughput(change.throughput.map(|t| t as i32))
                    .send()
            })
            .await;
        match out {
            Ok(_) => self.wait_modification(id).await,
            Err(e) => {
                let code = errors::code_of(&e).map(str::to_owned);
                let err = errors::map(&format!("modifying volume {id}"), e);
                match code.as_deref() {
                    // A modification already running (ours, retried): wait for it instead.
                    Some("IncorrectModificationState") => {
                        self.wait_modification(id).await?;
                        Err(Error::Aborted(format!(
                            "volume {id} had a modification under way; retry to apply this one"
                        )))
                    }
                    Some("VolumeModificationRateExceeded") => Err(Error::ResourceExhausted(format!(
                        "{err}; EBS allows one modification per volume every 6 hours: retry after that"
                    ))),
                    _ => Err(err),
                }
            }
        }
    }
}

#[tonic::async_trait]
impl Cloud for AwsCloud {
    fn zones(&self) -> Vec<String> {
        self.zones.clone()
    }

    fn zone_ids(&self) -> Vec<String> {
        self.zone_ids.clone()
    }

    async fn probe(&self) -> Result<()> {
        let fresh = self
            .last_probe
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() < Duration::from_secs(60));
        if fresh {
            return Ok(());
        }
        self.retrier
            .send("DescribeAvailabilityZones", true, || {
                self.ec2.describe_availability_zones().send()
            })
            .await
            .map_err(|e| errors::map("probing EC2", e))?;
        *self.last_probe.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        Ok(())
    }

    async fn create_volume(&self, name: &str, spec: &VolumeSpec) -> Result<Volume> {
        let known = self.names.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned();
        if let Some(id) = known
            && let Ok(v) = self.describe(&id).await
        {
            return Ok(to_volume(&v));
        }
        let (snapshot, temporary) = match &spec.source {
            None => (None, None),
            Some(VolumeSource::Snapshot(s)) => (Some(s.clone()), None),
            Some(VolumeSource::Volume(src)) => {
                let s = self.snapshot_for_clone(name, src).await?;
                (Some(s.clone()), Some(s))
            }
        };
        let created = self.create_once(name, spec, snapshot.as_deref()).await;
        if let Some(s) = temporary
            && let Err(e) = self.delete_snapshot(&s).await
        {
            warn!(snapshot = %s, error = %e, "could not remove the temporary clone snapshot");
        }
        let v = created?;
        let id = v.volume_id().unwrap_or_default().to_owned();
        if matches!(v.state(), Some(ec2::VolumeState::Error)) {
            let _ = self.delete_volume(&id).await;
            return Err(Error::Internal(format!(
                "EC2 put new volume {id} in state error; it was deleted, retry"
            )));
        }
        self.names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), id.clone());
        info!(volume = %id, name, "volume created");
        let mut out = to_volume(&v);
        if let Some(VolumeSource::Volume(src)) = &spec.source {
            out.source = Some(VolumeSource::Volume(src.clone()));
        }
        Ok(out)
    }

    async fn delete_volume(&self, id: &str) -> Result<()> {
        if !is_ec2_id("vol", id) {
            return Err(not_found("volume", id));
        }
        self.retrier
            .send("DeleteVolume", true, || self.ec2.delete_volume().volume_id(id).send())
            .await
            .map_err(|e| errors::map(&format!("deleting volume {id}"), e))?;
        self.names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, v| v != id);
        Ok(())
    }

    async fn volume(&self, id: &str) -> Result<Volume> {
        self.describe(id).await.map(|v| to_volume(&v))
    }

    async fn volume_by_name(&self, name: &str) -> Result<Option<Volume>> {
        // Only what this process made: a restarted controller relies on the ClientToken.
        let known = self.names.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned();
        match known {
            Some(id) => match self.describe(&id).await {
                Ok(v) => Ok(Some(to_volume(&v))),
                Err(Error::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            },
            None => Ok(None),
        }
    }

    async fn list_volumes(&self, start: Option<&str>, max: usize) -> Result<Page<Volume>> {
        let (skip, page) = parse_token(start)?;
        let out = self
            .retrier
            .send("DescribeVolumes", true, || {
                self.ec2
                    .describe_volumes()
                    .filters(filter(&format!("tag:{CLUSTER_TAG}"), ["true".to_owned()]))
                    .max_results(page_size(max, 500))
                    .set_next_token(page.clone())
                    .send()
            })
            .await
            .map_err(|e| match errors::map("listing volumes", e) {
                Error::InvalidArgument(m) if page.is_some() => Error::Aborted(m),
                other => other,
            })?;
        let items = out.volumes().iter().map(to_volume).collect();
        Ok(cut_page(items, skip, max, page, out.next_token().map(str::to_owned)))
    }

    async fn attach(&self, id: &str, node: &str, _read_only: bool) -> Result<Attachment> {
        let v = self.describe(id).await?;
        let attachments = to_volume(&v).attachments;
        if let Some(a) = attachments.iter().find(|a| a.node == node) {
            let device = a.device.clone();
            let attached = v
                .attachments()
                .iter()
                .any(|x| x.instance_id() == Some(node) && x.state() == Some(&ec2::VolumeAttachmentState::Attached));
            if !attached {
                self.wait_attached(id, node).await?;
            }
            return Ok(Attachment {
                node: node.to_owned(),
                device,
                read_only: false,
            });
        }
        // The node first: an unknown instance is NOT_FOUND whatever the volume's state.
        let used = self.slots_of(node).await?;
        if let Some(other) = attachments.first()
            && !v.multi_attach_enabled().unwrap_or(false)
        {
            return Err(Error::FailedPrecondition(format!(
                "volume {id} is attached to {} and is not a multi-attach volume; unpublish it there first",
                other.node
            )));
        }
        for _ in 0..3 {
            let device = self.take_slot(node, &used)?;
            let out = self
                .retrier
                .send("AttachVolume", false, || {
                    self.ec2
                        .attach_volume()
                        .volume_id(id)
                        .instance_id(node)
                        .device(&device)
                        .send()
                })
                .await;
            match out {
                Ok(a) => {
                    if a.state() != Some(&ec2::VolumeAttachmentState::Attached) {
                        self.wait_attached(id, node).await?;
                    }
                    info!(volume = %id, node, device, "volume attached");
                    return Ok(Attachment {
                        node: node.to_owned(),
                        device,
                        read_only: false,
                    });
                }
                Err(e) => {
                    let message = match &e {
                        aws_sdk_ec2::error::SdkError::ServiceError(s) => {
                            use aws_sdk_ec2::error::ProvideErrorMetadata;
                            s.err().message().unwrap_or_default().to_owned()
                        }
                        _ => String::new(),
                    };
                    let err = errors::map(&format!("attaching volume {id} to {node} as {device}"), e);
                    // Another attach took the name meanwhile: keep it marked used, try the next.
                    if matches!(err, Error::InvalidArgument(_)) && message.contains("already in use") {
                        continue;
                    }
                    self.free_slot(node, &device);
                    return Err(err);
                }
            }
        }
        Err(Error::Unavailable(format!(
            "no free device name could be used on {node} for volume {id}; retry"
        )))
    }

    async fn detach(&self, id: &str, node: &str) -> Result<()> {
        if !is_ec2_id("vol", id) {
            return Err(not_found("volume", id));
        }
        let out = self
            .retrier
            .send("DetachVolume", false, || {
                self.ec2.detach_volume().volume_id(id).instance_id(node).send()
            })
            .await;
        let device = match out {
            Ok(a) => {
                let device = a.device().unwrap_or_default().to_owned();
                if a.state() != Some(&ec2::VolumeAttachmentState::Detached) {
                    self.wait_volume(id, "detached", |v| {
                        let still = v.attachments().iter().any(|x| {
                            x.instance_id() == Some(node) && x.state() != Some(&ec2::VolumeAttachmentState::Detached)
                        });
                        (!still).then_some(Ok(()))
                    })
                    .await?;
                }
                device
            }
            Err(e) => {
                let code = errors::code_of(&e).map(str::to_owned);
                match code.as_deref() {
                    // Not attached there (any more): done.
                    Some("IncorrectState" | "InvalidAttachment.NotFound") => return Ok(()),
                    _ => return Err(errors::map(&format!("detaching volume {id} from {node}"), e)),
                }
            }
        };
        self.free_slot(node, &device);
        info!(volume = %id, node, "volume detached");
        Ok(())
    }

    async fn resize(&self, id: &str, size_gib: u64) -> Result<Volume> {
        let v = self.describe(id).await?;
        if (v.size().unwrap_or(0).max(0) as u64) < size_gib {
            self.change_volume(id, Some(size_gib), Modification::default()).await?;
        }
        let mut out = to_volume(&self.describe(id).await?);
        // EC2 reports the new size once the modification is optimizing.
        out.size_gib = out.size_gib.max(size_gib);
        Ok(out)
    }

    async fn modify(&self, id: &str, change: &Modification) -> Result<Volume> {
        self.describe(id).await?;
        let performance = Modification {
            tags: Tags::new(),
            ..change.clone()
        };
        self.change_volume(id, None, performance).await?;
        if !change.tags.is_empty() {
            self.retrier
                .send("CreateTags", true, || {
                    self.ec2
                        .create_tags()
                        .resources(id)
                        .set_tags(Some(ec2_tags(&change.tags)))
                        .send()
                })
                .await
                .map_err(|e| errors::map(&format!("tagging volume {id}"), e))?;
        }
        self.volume(id).await
    }

    async fn create_snapshot(&self, name: &str, source: &str, tags: &Tags) -> Result<Snapshot> {
        if !is_ec2_id("vol", source) {
            return Err(not_found("volume", source));
        }
        self.create_snapshot_inner(name, source, tags).await
    }

    async fn delete_snapshot(&self, id: &str) -> Result<()> {
        if !is_ec2_id("snap", id) {
            return Err(not_found("snapshot", id));
        }
        self.retrier
            .send("DeleteSnapshot", true, || {
                self.ec2.delete_snapshot().snapshot_id(id).send()
            })
            .await
            .map_err(|e| errors::map(&format!("deleting snapshot {id}"), e))?;
        Ok(())
    }

    async fn snapshot(&self, id: &str) -> Result<Snapshot> {
        self.snapshot_inner(id).await
    }

    async fn snapshot_by_name(&self, name: &str) -> Result<Option<Snapshot>> {
        let out = self
            .retrier
            .send("DescribeSnapshots", true, || {
                self.ec2
                    .describe_snapshots()
                    .owner_ids("self")
                    .filters(filter(&format!("tag:{SNAPSHOT_NAME_TAG}"), [name.to_owned()]))
                    .send()
            })
            .await
            .map_err(|e| errors::map(&format!("looking up snapshot {name:?}"), e))?;
        Ok(out.snapshots().first().map(to_snapshot))
    }

    async fn list_snapshots(&self, f: &SnapshotFilter, start: Option<&str>, max: usize) -> Result<Page<Snapshot>> {
        if let Some(id) = &f.snapshot_id {
            return match self.snapshot_inner(id).await {
                Ok(s) if f.source_volume.as_ref().is_none_or(|v| *v == s.source_volume) => Ok(Page {
                    items: vec![s],
                    next: None,
                }),
                Ok(_) | Err(Error::NotFound(_)) => Ok(Page {
                    items: Vec::new(),
                    next: None,
                }),
                Err(e) => Err(e),
            };
        }
        let (skip, page) = parse_token(start)?;
        let mut filters = vec![filter("tag-key", [SNAPSHOT_NAME_TAG.to_owned()])];
        if let Some(v) = &f.source_volume {
            filters.push(filter("volume-id", [v.clone()]));
        }
        let out = self
            .retrier
            .send("DescribeSnapshots", true, || {
                self.ec2
                    .describe_snapshots()
                    .owner_ids("self")
                    .set_filters(Some(filters.clone()))
                    .max_results(page_size(max, 1000))
                    .set_next_token(page.clone())
                    .send()
            })
            .await
            .map_err(|e| match errors::map("listing snapshots", e) {
                Error::InvalidArgument(m) if page.is_some() => Error::Aborted(m),
                other => other,
            })?;
        let items = out.snapshots().iter().map(to_snapshot).collect();
        Ok(cut_page(items, skip, max, page, out.next_token().map(str::to_owned)))
    }

    async fn node(&self, id: &str) -> Result<Node> {
        let inst = self.instance(id).await?;
        let zone = inst
            .placement()
            .and_then(|p| p.availability_zone())
            .unwrap_or_default()
            .to_owned();
        let itype = inst.instance_type().map(|t| t.as_str().to_owned()).unwrap_or_default();
        Ok(Node {
            id: id.to_owned(),
            zone,
            attach_limit: limits::attach_limit(&itype, 1, 0),
        })
    }

    async fn capacity(&self, _zone: Option<&str>) -> Result<Option<u64>> {
        Ok(None)
    }
}

impl AwsCloud {
    async fn wait_attached(&self, id: &str, node: &str) -> Result<()> {
        self.wait_volume(id, "attached", |v| {
            let a = v.attachments().iter().find(|a| a.instance_id() == Some(node));
            match a.and_then(|a| a.state()) {
                Some(ec2::VolumeAttachmentState::Attached) => Some(Ok(())),
                Some(ec2::VolumeAttachmentState::Attaching) => None,
                _ => Some(Err(Error::Unavailable(format!(
                    "the attach of volume {id} to {node} did not take; retry"
                )))),
            }
        })
        .await
    }
}

/// For tests and the IAM check: the tag keys the driver sets itself.
pub fn driver_tags() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        (VOLUME_NAME_TAG, "volume name"),
        (SNAPSHOT_NAME_TAG, "snapshot name"),
        (CLUSTER_TAG, "true"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_before_they_reach_ec2() {
        assert!(is_ec2_id("vol", "vol-0123456789abcdef0"));
        assert!(is_ec2_id("vol", "vol-01234567"));
        assert!(is_ec2_id("i", "i-0123456789abcdef0"));
        for bad in [
            "vol-",
            "vol-xyz",
            "../vol-01234567",
            "vol-0123456789abcdef0/..",
            "snap-01234567",
        ] {
            assert!(!is_ec2_id("vol", bad), "{bad}");
        }
    }

    #[test]
    fn waits_poll_on_one_grid_of_ticks() {
        let now = Instant::now();
        let tick = poll_tick(now);
        assert!(tick >= now && tick - now <= POLL_TICK);
        assert_eq!(poll_tick(tick), tick, "a tick is its own tick");
        // Waiters due at different moments within a tick poll together at its end.
        let later = poll_tick(tick + POLL_TICK / 3);
        assert_eq!(later - tick, POLL_TICK);
        assert_eq!(poll_tick(tick + POLL_TICK * 2 / 3), later);
    }

    #[test]
    fn device_names_skip_used_slots_in_either_spelling() {
        assert_eq!(slot("/dev/sdf"), "xvdf");
        assert_eq!(slot("/dev/xvdba"), "xvdba");
        let names: Vec<String> = device_names().collect();
        assert_eq!(names.len(), 26 * 26);
        assert_eq!(names[0], "/dev/xvdaa");
        assert_eq!(names[27], "/dev/xvdbb");
    }

    #[test]
    fn changes_queued_before_the_take_become_one_modification() {
        use tokio::sync::oneshot;
        let pending = Pending::default();
        let (expand, expanded) = oneshot::channel();
        let (modify, modified) = oneshot::channel();
        let iops = Modification {
            iops: Some(5000),
            ..Default::default()
        };
        assert!(
            pending.queue("vol-1", Some(30), Modification::default(), expand),
            "the first sends"
        );
        assert!(!pending.queue("vol-1", None, iops.clone(), modify), "the second waits");
        let (other, _) = oneshot::channel();
        assert!(
            pending.queue("vol-2", Some(5), Modification::default(), other),
            "volumes apart"
        );
        let merged = pending.take("vol-1");
        assert_eq!((merged.size, merged.change.iops), (Some(30), Some(5000)));
        assert_eq!(merged.waiters.len(), 2);
        for w in merged.waiters {
            w.send(Ok(())).unwrap();
        }
        assert!(expanded.blocking_recv().unwrap().is_ok() && modified.blocking_recv().unwrap().is_ok());
        // Queued after the take: the start of the next modification, not lost.
        let (late, _) = oneshot::channel();
        assert!(pending.queue("vol-1", None, iops, late));
        assert_eq!(pending.take("vol-1").change.iops, Some(5000));
    }

    #[test]
    fn pages_smaller_than_ec2_pages_resume_where_they_stopped() {
        let items: Vec<u32> = (0..7).collect();
        let p = cut_page(items.clone(), 0, 3, Some("T1".into()), Some("T2".into()));
        assert_eq!(p.items, vec![0, 1, 2]);
        let (skip, page) = parse_token(p.next.as_deref()).unwrap();
        assert_eq!((skip, page.as_deref()), (3, Some("T1")));
        let p = cut_page(items, skip, 4, page, Some("T2".into()));
        assert_eq!(p.items, vec![3, 4, 5, 6]);
        assert_eq!(parse_token(p.next.as_deref()).unwrap(), (0, Some("T2".into())));
        assert!(matches!(parse_token(Some("garbage")), Err(Error::Aborted(_))));
    }
}
