//! The EBS domain: volume types and their limits, sizes, IOPS and throughput fitting, file system
//! options and tag rules, as plain types and pure functions. No gRPC, no I/O: the controller
//! parses CSI requests into these types, the cloud backends and the node act on them.

mod fs;
mod limits;
mod log_page;
mod performance;
mod request;
mod snapshot;
mod tags;
mod volume;

pub use self::fs::{FsType, MkfsOptions};
pub use self::limits::{MAX_VOLUME_INITIALIZATION_RATE, MIN_VOLUME_INITIALIZATION_RATE, Ratio, TypeLimits, limits};
pub use self::log_page::{EbsLogPage, LOG_PAGE_ID, LOG_PAGE_LEN, LatencyBin, LogPageError};
pub use self::performance::{
    Performance, baseline, check_iops_request, check_size, iops_after_resize, modified_performance, size_gib,
    throughput_allowed,
};
pub use self::request::{CreateParams, ModifyParams};
pub use self::snapshot::{
    COOL_OFF_HOURS, LOCK_DAYS, LockMode, LockRequest, LockTerm, SnapshotLock, SnapshotRequest, check_outpost_arn,
    now_ms, rfc3339,
};
pub use self::tags::{
    CLUSTER_TAG, MAX_TAG_KEY_CHARS, MAX_TAG_VALUE_CHARS, MAX_USER_TAGS, PV_NAME_TAG, PVC_NAME_TAG, PVC_NAMESPACE_TAG,
    SNAPSHOT_NAME_TAG, VOLUME_NAME_TAG, check_tag_key, check_tag_value, too_many_tags,
};
pub use self::volume::{DEFAULT_SIZE_GIB, GIB, VolumeType};
