//! The `--json` form of the answers: each response as a JSON object with the proto's field names,
//! enums by their proto names, timestamps in RFC 3339 and wrapped numbers as plain numbers (or
//! null when absent).

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use crate::csi::volume_capability::AccessType;
use crate::csi::volume_capability::access_mode::Mode;
use crate::csi::volume_content_source::Type as SourceType;
use crate::csi::*;

/// A call's answer, both ways it can be printed.
pub struct Printed {
    pub json: Value,
    /// Lines for a person, each ending in a newline.
    pub human: String,
}

impl Printed {
    pub fn new(json: Value, human: String) -> Printed {
        Printed { json, human }
    }
}

/// A map with its keys in order, so the output is stable.
pub fn sorted(m: &HashMap<String, String>) -> BTreeMap<&str, &str> {
    m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

pub fn topology(t: &Topology) -> Value {
    json!({ "segments": sorted(&t.segments) })
}

pub fn topologies(ts: &[Topology]) -> Value {
    Value::Array(ts.iter().map(topology).collect())
}

pub fn source(s: &Option<VolumeContentSource>) -> Value {
    match s.as_ref().and_then(|s| s.r#type.as_ref()) {
        Some(SourceType::Snapshot(s)) => json!({ "snapshot": { "snapshot_id": s.snapshot_id } }),
        Some(SourceType::Volume(v)) => json!({ "volume": { "volume_id": v.volume_id } }),
        None => Value::Null,
    }
}

pub fn volume(v: &Volume) -> Value {
    json!({
        "volume_id": v.volume_id,
        "capacity_bytes": v.capacity_bytes,
        "volume_context": sorted(&v.volume_context),
        "content_source": source(&v.content_source),
        "accessible_topology": topologies(&v.accessible_topology),
    })
}

pub fn mode_name(mode: i32) -> String {
    Mode::try_from(mode)
        .map(|m| m.as_str_name().to_owned())
        .unwrap_or_else(|_| mode.to_string())
}

pub fn capability(c: &VolumeCapability) -> Value {
    let mut out = serde_json::Map::new();
    match &c.access_type {
        Some(AccessType::Block(_)) => {
            out.insert("block".into(), json!({}));
        }
        Some(AccessType::Mount(m)) => {
            out.insert(
                "mount".into(),
                json!({
                    "fs_type": m.fs_type,
                    "mount_flags": m.mount_flags,
                    "volume_mount_group": m.volume_mount_group,
                }),
            );
        }
        None => {}
    }
    let mode = c.access_mode.as_ref().map(|a| mode_name(a.mode));
    out.insert("access_mode".into(), json!(mode));
    Value::Object(out)
}

/// RFC 3339 in UTC, or None for a missing or pre-1970 time.
pub fn timestamp(t: &Option<prost_types::Timestamp>) -> Option<String> {
    let t = t.as_ref()?;
    let secs = u64::try_from(t.seconds).ok()?;
    let nanos = u32::try_from(t.nanos).ok()?;
    let at = std::time::UNIX_EPOCH.checked_add(std::time::Duration::new(secs, nanos))?;
    Some(humantime::format_rfc3339(at).to_string())
}

pub fn snapshot(s: &Snapshot) -> Value {
    json!({
        "snapshot_id": s.snapshot_id,
        "source_volume_id": s.source_volume_id,
        "size_bytes": s.size_bytes,
        "creation_time": timestamp(&s.creation_time),
        "ready_to_use": s.ready_to_use,
        "group_snapshot_id": s.group_snapshot_id,
    })
}

pub fn health(h: &VolumeHealth) -> Value {
    let statuses: Vec<Value> = h
        .health_statuses
        .iter()
        .map(|e| {
            json!({
                "status": health_name(e.status),
                "reason": e.reason,
                "message": e.message,
            })
        })
        .collect();
    json!({ "volume_id": h.volume_id, "health_statuses": statuses })
}

pub fn health_name(status: i32) -> String {
    VolumeHealthErrorType::try_from(status)
        .map(|t| t.as_str_name().to_owned())
        .unwrap_or_else(|_| status.to_string())
}

pub fn storage_health_name(status: i32) -> String {
    StorageHealthErrorType::try_from(status)
        .map(|t| t.as_str_name().to_owned())
        .unwrap_or_else(|_| status.to_string())
}

pub fn unit_name(unit: i32) -> String {
    volume_usage::Unit::try_from(unit)
        .map(|u| u.as_str_name().to_owned())
        .unwrap_or_else(|_| unit.to_string())
}
