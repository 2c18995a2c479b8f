//! The driver's parameter language: StorageClass parameters (CreateVolume `parameters`),
//! VolumeAttributesClass parameters (ControllerModifyVolume `mutable_parameters`) and
//! VolumeSnapshotClass tags, parsed into the EBS domain's types ([`crate::ebs`]) with the
//! semantics of the Go driver `ebs.csi.aws.com` (kubernetes-sigs/aws-ebs-csi-driver).
//!
//! Where this module is deliberately stricter or more lenient than the Go driver:
//! - The Go driver leaves most range checks to EC2; here they are checked up front so that a bad
//!   StorageClass fails with InvalidArgument/OutOfRange instead of an opaque cloud error, and so
//!   that the local backend behaves like EBS.
//! - IOPS on a type that takes none (gp2, st1, sc1, standard) and throughput on any type but gp3
//!   are rejected; Go silently drops them.
//! - io1/io2 without `iops`/`iopsPerGB` is rejected (EC2 requires IOPS for them); Go sends none
//!   and EC2 fails the call.
//! - Booleans take every spelling of Go's `strconv.ParseBool`; anything else is rejected. Go
//!   compares with `"true"` and treats every other value, even `"True"`, as false.
//! - `type` is case-insensitive (Go passes it to EC2 as given, which rejects `"GP3"`).
//! - Keys differing only in case, and two tags with the same key, are rejected; in Go the winner
//!   depends on map iteration order.
//! - Tag templates support only the documented functions (`field`, `substring`, `toUpper`,
//!   `toLower`, `contains`) and no `if`/`range`/variables; Go allows most of text/template.
//! - The gp3 IOPS maximum is EC2's current 80,000; Go starts from a 16,000 fallback and learns
//!   the regional limit from a dry-run call.

mod snapshot;
mod tags;
mod template;
mod values;

use std::collections::{BTreeMap, HashMap};

use self::tags::{TagSpec, TemplateProps, eval_tag_specs};
use self::values::*;
use crate::ebs::{
    CreateParams, FsType, MAX_USER_TAGS, ModifyParams, VolumeType, check_iops_request, check_tag_key,
    throughput_allowed, too_many_tags,
};
use crate::error::{Error, Result, shown};

pub use self::snapshot::{SNAPSHOT_META, parse_snapshot_params};

const PVC_NAME_KEY: &str = "csi.storage.k8s.io/pvc/name";
const PVC_NAMESPACE_KEY: &str = "csi.storage.k8s.io/pvc/namespace";
const PV_NAME_KEY: &str = "csi.storage.k8s.io/pv/name";
pub const FSTYPE_KEY: &str = "csi.storage.k8s.io/fstype";
/// Lower-cased prefixes; the Go driver matches `tagSpecification`/`tagDeletion` + anything.
const TAG_SPEC_PREFIX: &str = "tagspecification";
const TAG_DELETION_PREFIX: &str = "tagdeletion";

const CREATE_KEYS: &str = "type, iops, iopsPerGB, allowAutoIOPSPerGBIncrease, \
     allowAutoIOPSIncreaseOnModify, throughput, encrypted, kmsKeyId, blockExpress, blockSize, \
     inodeSize, bytesPerInode, numberOfInodes, ext4BigAlloc, ext4ClusterSize, \
     ext4EncryptionSupport, volumeInitializationRate, csi.storage.k8s.io/fstype, fstype, \
     csi.storage.k8s.io/pvc/name, csi.storage.k8s.io/pvc/namespace, csi.storage.k8s.io/pv/name, \
     tagSpecification_<N>";
const MODIFY_KEYS: &str = "type, volumeType, iops, iopsPerGB, throughput, \
     allowAutoIOPSIncreaseOnModify, csi.storage.k8s.io/pvc/name, \
     csi.storage.k8s.io/pvc/namespace, csi.storage.k8s.io/pv/name, tagSpecification_<N>, \
     tagDeletion_<N>";

/// Parses StorageClass parameters. Keys are case-insensitive (the Go driver lower-cases them);
/// values are taken as given, untrimmed (as in Go).
pub fn parse_create_params(params: &HashMap<String, String>) -> Result<CreateParams> {
    parse_create_request(params, &HashMap::new())
}

/// Parses CreateVolume `parameters` and `mutable_parameters` (a VolumeAttributesClass given at
/// creation): the mutable ones take precedence, as the CSI spec requires. Mutable `iops` replaces
/// a StorageClass `iopsPerGB` and the other way round, instead of conflicting.
pub fn parse_create_request(
    params: &HashMap<String, String>,
    mutable: &HashMap<String, String>,
) -> Result<CreateParams> {
    let (mut out, specs) = parse_create_raw(params)?;
    let (change, mutable_specs) = parse_modify_raw(mutable)?;
    let props = TemplateProps {
        pvc_name: change.pvc_name.clone().or_else(|| out.pvc_name.clone()),
        pvc_namespace: change.pvc_namespace.clone().or_else(|| out.pvc_namespace.clone()),
        pv_name: change.pv_name.clone().or_else(|| out.pv_name.clone()),
    };
    out.tags = eval_tag_specs(&specs, &props)?;
    let mutable_tags = eval_tag_specs(&mutable_specs, &props)?;
    apply_mutable(&mut out, &change, mutable_tags);
    if out.tags.len() > MAX_USER_TAGS {
        return Err(too_many_tags(out.tags.len()));
    }
    if out.kms_key_id.is_some() {
        out.encrypted = true;
    }
    out.check_static()?;
    // Without an fstype here the filesystem comes from the volume capability, which the caller
    // checks the mkfs options against (`validate_for_fs`).
    // Options no filesystem can take are refused here all the same.
    match out.fs_type {
        Some(fs) => out.validate_for_fs(fs)?,
        None => {
            if let Err(e) = out.validate_for_fs(FsType::Ext4) {
                out.validate_for_fs(FsType::Xfs).map_err(|_| e)?;
            }
        }
    }
    Ok(out)
}

fn apply_mutable(out: &mut CreateParams, change: &ModifyParams, tags: BTreeMap<String, String>) {
    if let Some(t) = change.volume_type {
        out.volume_type = t;
    }
    if let Some(iops) = change.iops {
        out.iops = Some(iops);
        out.iops_per_gb = None;
    }
    if let Some(ratio) = change.iops_per_gb {
        out.iops_per_gb = Some(ratio);
        out.iops = None;
    }
    if let Some(t) = change.throughput {
        out.throughput = Some(t);
    }
    if let Some(allow) = change.allow_auto_iops_increase_on_modify {
        out.allow_auto_iops_increase_on_modify = allow;
    }
    for key in &change.tag_deletions {
        out.tags.remove(key);
    }
    out.tags.extend(tags);
}

/// One parameter's key and value, borrowed from the request, with the key lower-cased.
struct Entry<'a> {
    canonical: String,
    key: &'a str,
    value: &'a str,
}

/// Sorted so that the first error is the same on every run; two keys equal but for case are
/// refused because Go would pick one of them at random.
fn entries(params: &HashMap<String, String>) -> Result<Vec<Entry<'_>>> {
    let mut list: Vec<Entry<'_>> = params
        .iter()
        .map(|(k, v)| Entry {
            canonical: k.to_lowercase(),
            key: k,
            value: v,
        })
        .collect();
    list.sort_by(|a, b| (&a.canonical, a.key).cmp(&(&b.canonical, b.key)));
    if let Some(pair) = list.windows(2).find(|w| w[0].canonical == w[1].canonical) {
        return Err(Error::InvalidArgument(format!(
            "parameters {} and {} are the same key (keys are case-insensitive); keep one",
            shown(pair[0].key),
            shown(pair[1].key)
        )));
    }
    Ok(list)
}

fn parse_create_raw(params: &HashMap<String, String>) -> Result<(CreateParams, Vec<TagSpec<'_>>)> {
    let mut out = CreateParams::default();
    let mut specs = Vec::new();
    for Entry { canonical, key, value } in entries(params)? {
        match canonical.as_str() {
            "type" => out.volume_type = parse_type(key, value)?.unwrap_or_default(),
            "iops" => out.iops = nonzero(parse_u32(key, value)?),
            "iopspergb" => out.iops_per_gb = nonzero(parse_u32(key, value)?),
            "allowautoiopspergbincrease" => out.allow_auto_iops_per_gb_increase = parse_bool(key, value)?,
            "allowautoiopsincreaseonmodify" => out.allow_auto_iops_increase_on_modify = parse_bool(key, value)?,
            "throughput" => out.throughput = nonzero(parse_u32(key, value)?),
            "encrypted" => out.encrypted = parse_bool(key, value)?,
            "kmskeyid" => out.kms_key_id = non_empty(value),
            "blockexpress" => out.block_express = parse_bool(key, value)?,
            "blocksize" => out.mkfs.block_size = Some(parse_size(key, value)?),
            "inodesize" => out.mkfs.inode_size = Some(parse_size(key, value)?),
            "bytesperinode" => out.mkfs.bytes_per_inode = Some(parse_size(key, value)?),
            "numberofinodes" => out.mkfs.number_of_inodes = Some(parse_inode_count(key, value)?),
            "ext4bigalloc" => out.mkfs.ext4_bigalloc = parse_bool(key, value)?,
            "ext4clustersize" => out.mkfs.ext4_cluster_size = Some(parse_size(key, value)?),
            "ext4encryptionsupport" => out.ext4_encryption_support = parse_bool(key, value)?,
            "volumeinitializationrate" => out.volume_initialization_rate = parse_initialization_rate(key, value)?,
            FSTYPE_KEY => out.fs_type = parse_fs_type(key, value)?,
            // Deprecated in Go, which logs and ignores it; so do we.
            "fstype" => {}
            PVC_NAME_KEY => out.pvc_name = Some(value.to_owned()),
            PVC_NAMESPACE_KEY => out.pvc_namespace = Some(value.to_owned()),
            PV_NAME_KEY => out.pv_name = Some(value.to_owned()),
            k if k.starts_with(TAG_SPEC_PREFIX) => specs.push((key, value)),
            _ => return Err(unknown_key(key, "CreateVolume", CREATE_KEYS)),
        }
    }
    Ok((out, specs))
}

/// Parses VolumeAttributesClass parameters. An empty request, or one holding only PVC/PV
/// metadata, is refused: there is nothing to modify.
pub fn parse_modify_params(params: &HashMap<String, String>) -> Result<ModifyParams> {
    let (mut change, specs) = parse_modify_raw(params)?;
    change.tags = eval_tag_specs(&specs, &TemplateProps::of(&change))?;
    if change.tags.len() > MAX_USER_TAGS {
        return Err(too_many_tags(change.tags.len()));
    }
    if let Some(key) = change.tag_deletions.iter().find(|k| change.tags.contains_key(*k)) {
        return Err(Error::InvalidArgument(format!(
            "tag {} is both added (tagSpecification) and deleted (tagDeletion)",
            shown(key)
        )));
    }
    if change.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "nothing to modify: the parameters name no change (accepted: {MODIFY_KEYS})"
        )));
    }
    if change.iops.is_some() && change.iops_per_gb.is_some() {
        check_iops_request(VolumeType::Gp3, change.iops, change.iops_per_gb)?;
    }
    if let Some(t) = change.volume_type {
        check_iops_request(t, change.iops, change.iops_per_gb)?;
        if change.throughput.is_some() {
            throughput_allowed(t)?;
        }
    }
    Ok(change)
}

fn parse_modify_raw(params: &HashMap<String, String>) -> Result<(ModifyParams, Vec<TagSpec<'_>>)> {
    let mut out = ModifyParams::default();
    let mut specs = Vec::new();
    let list = entries(params)?;
    let has_type = list.iter().any(|e| e.canonical == "type");
    for Entry { canonical, key, value } in list {
        match canonical.as_str() {
            "type" => out.volume_type = parse_type(key, value)?,
            // Deprecated spelling; Go ignores it when `type` is present.
            "volumetype" if has_type => {}
            "volumetype" => out.volume_type = parse_type(key, value)?,
            "iops" => out.iops = nonzero(parse_u32(key, value)?),
            "iopspergb" => out.iops_per_gb = nonzero(parse_u32(key, value)?),
            "throughput" => out.throughput = nonzero(parse_u32(key, value)?),
            "allowautoiopsincreaseonmodify" => out.allow_auto_iops_increase_on_modify = Some(parse_bool(key, value)?),
            PVC_NAME_KEY => out.pvc_name = Some(value.to_owned()),
            PVC_NAMESPACE_KEY => out.pvc_namespace = Some(value.to_owned()),
            PV_NAME_KEY => out.pv_name = Some(value.to_owned()),
            k if k.starts_with(TAG_SPEC_PREFIX) => specs.push((key, value)),
            k if k.starts_with(TAG_DELETION_PREFIX) => {
                check_tag_key(key, value)?;
                out.tag_deletions.insert(value.to_owned());
            }
            _ => return Err(unknown_key(key, "ControllerModifyVolume", MODIFY_KEYS)),
        }
    }
    Ok((out, specs))
}

fn unknown_key(key: &str, call: &str, accepted: &str) -> Error {
    Error::InvalidArgument(format!(
        "unknown parameter {} for {call} (accepted, case-insensitive: {accepted})",
        shown(key)
    ))
}
