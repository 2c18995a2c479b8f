//! `aws`: EBS volumes through the EC2 API (aws-sdk-ec2), with the default credential chain (so
//! IRSA's web identity works unchanged), idempotent creates (ClientToken from the CSI name),
//! batched describes shared by every waiter, and per-instance device-name allocation.

mod attach;
mod batch;
mod convert;
mod create;
pub mod errors;
mod modify;
mod protect;
pub mod retry;
mod wait;

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
use self::convert::*;
use self::modify::*;
use self::retry::Retrier;
use self::wait::*;
use super::{
    Attachment, Cloud, Modification, Node, Page, Snapshot, SnapshotFilter, Tags, Volume, VolumeSource, VolumeSpec,
};
use super::{is_ec2_id, limits};
use crate::ebs::{CLUSTER_TAG, SNAPSHOT_NAME_TAG, SnapshotRequest, VOLUME_NAME_TAG, VolumeType};
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// How the aws backend talks to EC2 (`serve`'s flags, named as the Go driver's).
#[derive(Clone, Debug)]
pub struct AwsOptions {
    pub policy: retry::Policy,
    /// `--modify-volume-request-handler-timeout`: how long the first change of a volume waits
    /// for others to become one ModifyVolume with it.
    pub modify_window: Duration,
    /// `--batching`: describes of many volumes, instances and modifications share one call.
    pub batching: bool,
    /// `--user-agent-extra`: appended to the user agent EC2 sees.
    pub user_agent_extra: Option<String>,
}

impl Default for AwsOptions {
    fn default() -> Self {
        AwsOptions {
            policy: retry::Policy::default(),
            modify_window: Duration::from_secs(2),
            batching: true,
            user_agent_extra: None,
        }
    }
}

fn batcher<T: Clone + Send + 'static>(batching: bool, fetch: batch::Fetch<T>) -> Batcher<T> {
    if batching {
        Batcher::new(fetch)
    } else {
        Batcher::unbatched(fetch)
    }
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
    /// See [`AwsOptions::modify_window`].
    modify_window: Duration,
}

impl AwsCloud {
    /// Connects with the default credential chain and region (env, profile, web identity, IMDS);
    /// AWS_ENDPOINT_URL(_EC2) override the endpoint.
    /// Transient failures are retried by `retry` (within each gRPC caller's deadline, through one
    /// adaptive rate limiter), so the SDK's own retries are off.
    pub async fn connect(calls: Metrics, opts: AwsOptions) -> Result<Self> {
        let policy = opts.policy;
        let app = match &opts.user_agent_extra {
            Some(extra) => format!("ebs-csi-{}-{extra}", env!("CARGO_PKG_VERSION")),
            None => format!("ebs-csi-{}", env!("CARGO_PKG_VERSION")),
        };
        let app = aws_config::AppName::new(app).map_err(|e| {
            Error::InvalidArgument(format!(
                "--user-agent-extra {:?} cannot go in a user agent ({e}); use letters, digits and !#$%&'*+-.^_`|~",
                opts.user_agent_extra.as_deref().unwrap_or_default()
            ))
        })?;
        let config = aws_config::defaults(BehaviorVersion::latest())
            .app_name(app)
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
            batcher(
                opts.batching,
                Arc::new(move |ids: Vec<String>| {
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
                }),
            )
        };
        let instances = {
            let (ec2, retrier) = (ec2.clone(), retrier.clone());
            batcher(
                opts.batching,
                Arc::new(move |ids: Vec<String>| {
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
                }),
            )
        };
        let modifications = {
            let (ec2, retrier) = (ec2.clone(), retrier.clone());
            batcher(
                opts.batching,
                Arc::new(move |ids: Vec<String>| {
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
                }),
            )
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
            modify_window: opts.modify_window,
        })
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
        let copied = match &spec.source {
            Some(VolumeSource::Volume(src)) => self.copy_once(name, spec, src).await?,
            _ => None,
        };
        let v = match copied {
            Some(v) => v,
            None => {
                let (snapshot, temporary) = match &spec.source {
                    None => (None, None),
                    Some(VolumeSource::Snapshot(s)) => (Some(s.clone()), None),
                    // Where EC2 offers no CopyVolumes: through a snapshot of the source.
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
                created?
            }
        };
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
        self.attach_volume(id, node).await
    }

    async fn detach(&self, id: &str, node: &str) -> Result<()> {
        self.detach_volume(id, node).await
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

    async fn create_snapshot(&self, name: &str, source: &str, req: &SnapshotRequest) -> Result<Snapshot> {
        if !is_ec2_id("vol", source) {
            return Err(not_found("volume", source));
        }
        self.create_snapshot_inner(name, source, &req.tags, req.outpost_arn.as_deref())
            .await
    }

    async fn settle_snapshot(&self, snap: Snapshot, req: &SnapshotRequest) -> Result<Snapshot> {
        self.settle(snap, req).await
    }

    fn offers_outposts(&self) -> bool {
        true
    }

    async fn delete_snapshot(&self, id: &str) -> Result<()> {
        if !is_ec2_id("snap", id) {
            return Err(not_found("snapshot", id));
        }
        self.delete_unlocked(id).await
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

impl AwsCloud {}

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
}
