//! `tagSpecification_N` parameters: `key=template`, rendered with the PVC's names.

use std::collections::BTreeMap;

use super::template;
use crate::ebs::{ModifyParams, check_tag_key, check_tag_value};
use crate::error::{Error, Result, shown};

/// A `tagSpecification_N` parameter: its key (for messages) and its `key=template` value.
pub(super) type TagSpec<'a> = (&'a str, &'a str);

/// The names a VolumeSnapshotClass's templates see (the external-snapshotter's metadata).
#[derive(Default)]
pub struct SnapshotProps<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub content_name: &'a str,
}

/// The tags of VolumeSnapshotClass `tagSpecification_N` parameters, rendered as the Go driver
/// does with `.VolumeSnapshotName`, `.VolumeSnapshotNamespace`, `.VolumeSnapshotContentName`.
pub fn snapshot_tags(specs: &[TagSpec<'_>], props: &SnapshotProps<'_>) -> Result<BTreeMap<String, String>> {
    let fields = [
        ("VolumeSnapshotName", props.name),
        ("VolumeSnapshotNamespace", props.namespace),
        ("VolumeSnapshotContentName", props.content_name),
    ];
    render_specs(specs, &template::Props { fields: &fields })
}

/// The values the tag templates can read.
#[derive(Default)]
pub struct TemplateProps {
    pub(super) pvc_name: Option<String>,
    pub(super) pvc_namespace: Option<String>,
    pub(super) pv_name: Option<String>,
}

impl TemplateProps {
    pub(super) fn of(change: &ModifyParams) -> Self {
        TemplateProps {
            pvc_name: change.pvc_name.clone(),
            pvc_namespace: change.pvc_namespace.clone(),
            pv_name: change.pv_name.clone(),
        }
    }
}

/// `key=template` → (key, rendered value): the key is everything before the first `=` and is
/// not a template (as in Go).
pub fn eval_tag_specs(specs: &[TagSpec<'_>], props: &TemplateProps) -> Result<BTreeMap<String, String>> {
    let fields = [
        ("PVCName", props.pvc_name.as_deref().unwrap_or("")),
        ("PVCNamespace", props.pvc_namespace.as_deref().unwrap_or("")),
        ("PVName", props.pv_name.as_deref().unwrap_or("")),
    ];
    render_specs(specs, &template::Props { fields: &fields })
}

fn render_specs(specs: &[TagSpec<'_>], view: &template::Props<'_>) -> Result<BTreeMap<String, String>> {
    let mut tags = BTreeMap::new();
    let mut origin: BTreeMap<&str, &str> = BTreeMap::new();
    for &(param, spec) in specs {
        let Some((key, source)) = spec.split_once('=') else {
            return Err(Error::InvalidArgument(format!(
                "parameter {}: value {} is not of the form key=value",
                shown(param),
                shown(spec)
            )));
        };
        check_tag_key(param, key)?;
        let value = template::render(source, view).map_err(|e| {
            Error::InvalidArgument(format!(
                "parameter {}: tag value template {}: {e}",
                shown(param),
                shown(source)
            ))
        })?;
        check_tag_value(param, key, &value)?;
        if let Some(first) = origin.insert(key, param) {
            return Err(Error::InvalidArgument(format!(
                "parameters {} and {} both set tag {}; keep one",
                shown(first),
                shown(param),
                shown(key)
            )));
        }
        tags.insert(key.to_owned(), value);
    }
    Ok(tags)
}
