//! The human form of the answers: a line, or a short indented block, per result.

use std::collections::HashMap;
use std::fmt::Write;

use super::output::{health_name, mode_name, sorted, timestamp};
use crate::csi::volume_capability::AccessType;
use crate::csi::volume_content_source::Type as SourceType;
use crate::csi::*;

/// A size in the largest binary unit it reaches, with the bytes when that is not exact.
pub fn size(bytes: i64) -> String {
    const UNITS: [(&str, i64); 4] = [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (name, unit) in UNITS {
        if bytes.unsigned_abs() >= unit.unsigned_abs() {
            return if bytes % unit == 0 {
                format!("{} {name}", bytes / unit)
            } else {
                format!("{:.1} {name} ({bytes} bytes)", bytes as f64 / unit as f64)
            };
        }
    }
    format!("{bytes} bytes")
}

/// `k=v, k=v` in key order.
pub fn pairs(m: &HashMap<String, String>) -> String {
    sorted(m)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn topologies(ts: &[Topology]) -> String {
    ts.iter().map(|t| pairs(&t.segments)).collect::<Vec<_>>().join("; ")
}

pub fn capability(c: &VolumeCapability) -> String {
    let mode = c
        .access_mode
        .as_ref()
        .map(|a| mode_name(a.mode))
        .unwrap_or_else(|| "no access mode".into());
    let kind = match &c.access_type {
        Some(AccessType::Block(_)) => "block".to_owned(),
        Some(AccessType::Mount(m)) => {
            let mut s = "mount".to_owned();
            if !m.fs_type.is_empty() {
                let _ = write!(s, " {}", m.fs_type);
            }
            if !m.mount_flags.is_empty() {
                let _ = write!(s, " -o {}", m.mount_flags.join(","));
            }
            if !m.volume_mount_group.is_empty() {
                let _ = write!(s, " group {}", m.volume_mount_group);
            }
            s
        }
        None => "no access type".to_owned(),
    };
    format!("{kind}, {mode}")
}

/// A volume: its id and size on the first line, what else it carries indented below.
pub fn volume(v: &Volume, published_on: Option<&[String]>) -> String {
    let mut s = format!("{}  {}\n", v.volume_id, size(v.capacity_bytes));
    if !v.accessible_topology.is_empty() {
        let _ = writeln!(s, "  topology: {}", topologies(&v.accessible_topology));
    }
    match v.content_source.as_ref().and_then(|c| c.r#type.as_ref()) {
        Some(SourceType::Snapshot(snap)) => {
            let _ = writeln!(s, "  from snapshot: {}", snap.snapshot_id);
        }
        Some(SourceType::Volume(src)) => {
            let _ = writeln!(s, "  from volume: {}", src.volume_id);
        }
        None => {}
    }
    if !v.volume_context.is_empty() {
        let _ = writeln!(s, "  context: {}", pairs(&v.volume_context));
    }
    if let Some(nodes) = published_on {
        let nodes = if nodes.is_empty() {
            "none".to_owned()
        } else {
            nodes.join(", ")
        };
        let _ = writeln!(s, "  published on: {nodes}");
    }
    s
}

/// A snapshot on one line: id, source, size, readiness, time.
pub fn snapshot(snap: &Snapshot) -> String {
    let ready = if snap.ready_to_use { "ready" } else { "not ready" };
    let mut s = format!(
        "{}  of {}  {}  {ready}",
        snap.snapshot_id,
        snap.source_volume_id,
        size(snap.size_bytes)
    );
    if let Some(t) = timestamp(&snap.creation_time) {
        let _ = write!(s, "  {t}");
    }
    if !snap.group_snapshot_id.is_empty() {
        let _ = write!(s, "  group {}", snap.group_snapshot_id);
    }
    s.push('\n');
    s
}

/// A volume's health: `healthy`, or one indented line per condition.
pub fn health(h: &VolumeHealth) -> String {
    if h.health_statuses.is_empty() {
        return format!("{}  healthy\n", h.volume_id);
    }
    let mut s = format!("{}\n", h.volume_id);
    for e in &h.health_statuses {
        let _ = writeln!(s, "  {}: {}: {}", health_name(e.status), e.reason, e.message);
    }
    s
}

/// The closing line of a list that has more pages.
pub fn next_token(token: &str) -> String {
    if token.is_empty() {
        String::new()
    } else {
        format!("next token: {token}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::size;

    #[test]
    fn sizes_read_in_the_largest_unit_reached() {
        assert_eq!(size(0), "0 bytes");
        assert_eq!(size(512), "512 bytes");
        assert_eq!(size(10 << 30), "10 GiB");
        assert_eq!(size(512 << 20), "512 MiB");
        assert_eq!(size(64 << 40), "64 TiB");
        assert_eq!(size((3 << 30) / 2), "1.5 GiB (1610612736 bytes)");
        assert_eq!(size(i64::MIN), "-8388608 TiB");
        assert_eq!(size(-1), "-1 bytes");
    }
}
