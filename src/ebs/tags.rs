//! EC2's tag rules, and the keys the driver keeps for itself.

use crate::error::{Error, Result, shown};

/// EC2 tag limits (AWS "Tag your Amazon EC2 resources", tag restrictions); the Go driver checks
/// the same three numbers in `validateExtraTags`.
pub const MAX_USER_TAGS: usize = 50;
pub const MAX_TAG_KEY_CHARS: usize = 128;
pub const MAX_TAG_VALUE_CHARS: usize = 256;

/// Tag keys the driver itself sets and reads; a StorageClass must not override them.
/// The volume's name from CreateVolume; the driver finds a volume by it on retries.
pub const VOLUME_NAME_TAG: &str = "CSIVolumeName";
/// The snapshot's name from CreateSnapshot.
pub const SNAPSHOT_NAME_TAG: &str = "CSIVolumeSnapshotName";
/// Marks everything the driver made, for listing and for IAM conditions.
pub const CLUSTER_TAG: &str = "ebs.csi.aws.com/cluster";
/// Where a volume came from, for people reading the EC2 console and for `ebs-csi cost` to name
/// the claim: set when the provisioner passes `--extra-create-metadata`.
pub const PVC_NAME_TAG: &str = "kubernetes.io/created-for/pvc/name";
pub const PVC_NAMESPACE_TAG: &str = "kubernetes.io/created-for/pvc/namespace";
pub const PV_NAME_TAG: &str = "kubernetes.io/created-for/pv/name";

const RESERVED_TAG_KEYS: [&str; 3] = [VOLUME_NAME_TAG, SNAPSHOT_NAME_TAG, CLUSTER_TAG];
/// `kubernetes.io` covers `kubernetes.io/cluster/*` and `kubernetes.io/created-for/*` (as in Go);
/// `ebs.csi.aws.com/` keeps the driver's own bookkeeping tags (iopsPerGB and the like) safe.
const RESERVED_TAG_PREFIXES: [&str; 2] = ["kubernetes.io", "ebs.csi.aws.com/"];

pub fn check_tag_key(param: &str, key: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::InvalidArgument(format!(
            "parameter {}: tag key {} {why}",
            shown(param),
            shown(key)
        )))
    };
    let chars = key.chars().count();
    if chars == 0 {
        return bad("is empty");
    }
    if chars > MAX_TAG_KEY_CHARS {
        return bad(&format!(
            "is {chars} characters long; EC2 allows at most {MAX_TAG_KEY_CHARS}"
        ));
    }
    if RESERVED_TAG_KEYS.contains(&key) {
        return bad("is reserved for the driver");
    }
    if let Some(prefix) = RESERVED_TAG_PREFIXES.iter().find(|p| key.starts_with(*p)) {
        return bad(&format!("starts with the reserved prefix \"{prefix}\""));
    }
    if key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:")) {
        return bad("starts with \"aws:\", which EC2 reserves");
    }
    Ok(())
}

pub fn check_tag_value(param: &str, key: &str, value: &str) -> Result<()> {
    let chars = value.chars().count();
    if chars > MAX_TAG_VALUE_CHARS {
        return Err(Error::InvalidArgument(format!(
            "parameter {}: value of tag {} is {chars} characters long; EC2 allows at most {MAX_TAG_VALUE_CHARS}",
            shown(param),
            shown(key)
        )));
    }
    Ok(())
}

pub fn too_many_tags(count: usize) -> Error {
    Error::InvalidArgument(format!(
        "{count} tags given; EC2 allows at most {MAX_USER_TAGS} per volume"
    ))
}
