//! The seam between the controller and whatever provides volumes: EC2, or the embedded `local`
//! look-alike. Plain types only; no gRPC here.

#[cfg(feature = "aws")]
pub mod aws;
pub mod imds;
pub mod kubernetes;
pub mod limits;
pub mod local;
pub mod metadata;
pub mod startup_taint;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ebs::{SnapshotLock, SnapshotRequest, VolumeType};
use crate::error::Result;

/// Tags as EC2 keeps them: key → value, ordered so records compare and print stably.
pub type Tags = BTreeMap<String, String>;

/// Where a new volume's first bytes come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeSource {
    Snapshot(String),
    Volume(String),
}

/// Everything needed to create a volume, already validated against the type's limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    pub size_gib: u64,
    pub volume_type: VolumeType,
    pub iops: Option<u32>,
    pub throughput: Option<u32>,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    pub zone: String,
    pub multi_attach: bool,
    pub source: Option<VolumeSource>,
    pub initialization_rate: Option<u32>,
    pub tags: Tags,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub node: String,
    /// The block device on the node, as the cloud reports it (`/dev/loop3`, `/dev/xvdba`).
    pub device: String,
    /// Published read-only (kept only by clouds that say so: `keeps_read_only`).
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub id: String,
    pub name: String,
    pub size_gib: u64,
    pub volume_type: VolumeType,
    pub iops: Option<u32>,
    pub throughput: Option<u32>,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    pub zone: String,
    pub multi_attach: bool,
    pub source: Option<VolumeSource>,
    pub tags: Tags,
    pub attachments: Vec<Attachment>,
    /// Set when the volume is unhealthy (its backing store is gone, say): what is wrong.
    pub abnormal: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub id: String,
    pub name: String,
    pub source_volume: String,
    pub size_gib: u64,
    /// Seconds and nanoseconds since the Unix epoch.
    pub created_at: (i64, i32),
    pub ready: bool,
    pub tags: Tags,
    /// The lock against deletion, when one was put on it (expired locks included).
    #[serde(default)]
    pub lock: Option<SnapshotLock>,
    /// Zones fast snapshot restores were enabled in.
    #[serde(default)]
    pub fast_restore_zones: Vec<String>,
}

/// A node the cloud knows: an EC2 instance, or a registered local node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    pub zone: String,
    /// How many volumes the node can have attached at once.
    pub attach_limit: u32,
}

/// A change to a volume's performance or tags (ControllerModifyVolume).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Modification {
    pub volume_type: Option<VolumeType>,
    pub iops: Option<u32>,
    pub throughput: Option<u32>,
    pub tags: Tags,
}

/// One page of a listing, and the token for the next one.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct SnapshotFilter {
    pub snapshot_id: Option<String>,
    pub source_volume: Option<String>,
}

/// What the controller needs from a cloud. Every method is idempotent; NotFound means the object
/// does not exist (callers that delete treat it as done).
#[tonic::async_trait]
pub trait Cloud: Send + Sync + 'static {
    /// The zones volumes can be created in.
    fn zones(&self) -> Vec<String>;
    /// The zones' ids (`use1-az1`), in the same order as [`Cloud::zones`].
    fn zone_ids(&self) -> Vec<String>;
    /// Ready to serve: the backend answers.
    async fn probe(&self) -> Result<()>;

    /// Creates the volume named `name`, or returns it when it exists with the same spec;
    /// AlreadyExists when it exists with another.
    async fn create_volume(&self, name: &str, spec: &VolumeSpec) -> Result<Volume>;
    async fn delete_volume(&self, id: &str) -> Result<()>;
    async fn volume(&self, id: &str) -> Result<Volume>;
    async fn volume_by_name(&self, name: &str) -> Result<Option<Volume>>;
    async fn list_volumes(&self, start: Option<&str>, max: usize) -> Result<Page<Volume>>;

    /// Attaches the volume to the node (waiting until done) and returns the attachment. A cloud
    /// that keeps the read-only flag refuses a second attach to the node with the other flag
    /// (AlreadyExists); one that does not ignores it.
    async fn attach(&self, id: &str, node: &str, read_only: bool) -> Result<Attachment>;
    /// Whether attachments remember `read_only`, so the controller may offer PUBLISH_READONLY.
    /// EC2 attachments have no such flag.
    fn keeps_read_only(&self) -> bool {
        false
    }
    /// Detaches; success when it was not attached there.
    async fn detach(&self, id: &str, node: &str) -> Result<()>;

    /// Grows the volume to `size_gib`; returns it as it is afterwards.
    async fn resize(&self, id: &str, size_gib: u64) -> Result<Volume>;
    async fn modify(&self, id: &str, change: &Modification) -> Result<Volume>;

    /// Creates the snapshot named `name` with the request's tags (and Outpost), or finishes one
    /// a crash interrupted. The lock and fast restores are [`Cloud::settle_snapshot`]'s.
    async fn create_snapshot(&self, name: &str, source: &str, req: &SnapshotRequest) -> Result<Snapshot>;
    /// Puts on `snap` what the request asks that is not in place yet: its lock (never a second
    /// one over a lock it already has) and fast restores in each zone asked. Repeatable.
    async fn settle_snapshot(&self, snap: Snapshot, req: &SnapshotRequest) -> Result<Snapshot>;
    /// Whether snapshots can be made on an Outpost (`outpostArn`).
    fn offers_outposts(&self) -> bool {
        false
    }
    /// Deletes; FailedPrecondition naming the lock's end while a lock holds.
    async fn delete_snapshot(&self, id: &str) -> Result<()>;
    async fn snapshot(&self, id: &str) -> Result<Snapshot>;
    async fn snapshot_by_name(&self, name: &str) -> Result<Option<Snapshot>>;
    async fn list_snapshots(&self, filter: &SnapshotFilter, start: Option<&str>, max: usize) -> Result<Page<Snapshot>>;

    async fn node(&self, id: &str) -> Result<Node>;
    /// Free bytes for new volumes in a zone (all zones when None); None when unbounded.
    async fn capacity(&self, zone: Option<&str>) -> Result<Option<u64>>;
}

/// `vol-` / `snap-` followed by 17 lowercase hex digits, as EBS makes them.
pub fn new_id(prefix: &str) -> String {
    let n: u128 = rand::random();
    format!("{prefix}-{:017x}", n & ((1u128 << 68) - 1))
}

/// Whether `id` has the shape of an id made by [`new_id`] with this prefix.
pub fn is_id(prefix: &str, id: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|hex| hex.len() == 17 && hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
}

/// Whether `id` looks like an EC2 id with this prefix (8 or 17 hex digits): anything else never
/// reaches EC2 (where one malformed id fails a whole batch) nor a device path.
pub fn is_ec2_id(prefix: &str, id: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('-'))
        .is_some_and(|h| (h.len() == 8 || h.len() == 17) && h.bytes().all(|b| b.is_ascii_hexdigit()))
}
