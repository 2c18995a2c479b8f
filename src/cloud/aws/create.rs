//! Creating volumes and snapshots: found by name first, then made with a ClientToken so that a
//! retried call makes nothing twice.

use super::*;

impl AwsCloud {
    pub(super) async fn find_by_name(&self, name: &str) -> Result<Option<ec2::Volume>> {
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
    pub(super) async fn snapshot_for_clone(&self, name: &str, source: &str) -> Result<String> {
        let tags = Tags::from([(SNAPSHOT_NAME_TAG.to_owned(), format!("clone-of-{source}-for-{name}"))]);
        let snap = self
            .create_snapshot_inner(&format!("clone-of-{source}-for-{name}"), source, &tags, None)
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

    /// A clone by EC2 CopyVolumes (same zone, at least the source's size, the source's
    /// encryption). None when this EC2 does not offer the call, for the caller to go through a
    /// snapshot instead.
    pub(super) async fn copy_once(&self, name: &str, spec: &VolumeSpec, source: &str) -> Result<Option<ec2::Volume>> {
        let token = format!("{:x}", Sha256::digest(name.as_bytes()));
        let size = i32::try_from(spec.size_gib)
            .map_err(|_| Error::OutOfRange(format!("{} GiB is too large", spec.size_gib)))?;
        let mut req = self
            .ec2
            .copy_volumes()
            .source_volume_id(source)
            .size(size)
            .volume_type(ec2::VolumeType::from(spec.volume_type.as_str()))
            .set_iops(provisioned_iops(spec))
            .set_throughput(spec.throughput.map(|t| t as i32))
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
        let out = self.retrier.send("CopyVolumes", false, || req.clone().send()).await;
        let copy = match out {
            Ok(out) => out.volumes().first().cloned(),
            Err(e) => {
                if matches!(errors::code_of(&e), Some("InvalidAction" | "UnsupportedOperation")) {
                    info!(source, "EC2 offers no CopyVolumes here; cloning through a snapshot");
                    return Ok(None);
                }
                // A lost answer may have made the copy: it carries the name tag.
                match self.find_by_name(name).await? {
                    Some(v) => Some(v),
                    None => return Err(errors::map(&format!("copying volume {source} as {name:?}"), e)),
                }
            }
        };
        let copy = copy.ok_or_else(|| Error::Internal(format!("CopyVolumes of {source} answered no volume")))?;
        if matches!(copy.state(), Some(ec2::VolumeState::Available)) {
            return Ok(Some(copy));
        }
        let id = copy.volume_id().unwrap_or_default().to_owned();
        self.wait_available(&id).await.map(Some)
    }

    pub(super) async fn create_once(
        &self,
        name: &str,
        spec: &VolumeSpec,
        snapshot: Option<&str>,
    ) -> Result<ec2::Volume> {
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
            .set_iops(provisioned_iops(spec))
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

    pub(super) async fn create_snapshot_inner(
        &self,
        name: &str,
        source: &str,
        tags: &Tags,
        outpost: Option<&str>,
    ) -> Result<Snapshot> {
        let out = self
            .retrier
            .send("CreateSnapshot", false, || {
                self.ec2
                    .create_snapshot()
                    .volume_id(source)
                    .set_outpost_arn(outpost.map(str::to_owned))
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
            lock: None,
            fast_restore_zones: Vec::new(),
        })
    }

    pub(super) async fn snapshot_inner(&self, id: &str) -> Result<Snapshot> {
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
}

/// The IOPS to send: only for types that take them. The spec carries gp2's size-derived figure
/// too, and EC2 refuses Iops for gp2 (InvalidParameterCombination).
fn provisioned_iops(spec: &VolumeSpec) -> Option<i32> {
    spec.iops
        .filter(|_| crate::ebs::limits(spec.volume_type).iops_configurable)
        .and_then(|i| i32::try_from(i).ok())
}
