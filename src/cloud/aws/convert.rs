//! EC2's shapes to the cloud seam's types and back: volumes, snapshots, tags, filters, and the
//! paging tokens the seam hands out.

use super::*;

pub(super) fn not_found(kind: &str, id: &str) -> Error {
    Error::NotFound(format!("{kind} {id} does not exist"))
}

pub(super) fn tags_of(tags: &[Tag]) -> Tags {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned())))
        .collect()
}

pub(super) fn ec2_tags(tags: &Tags) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

pub(super) fn filter(name: &str, values: impl IntoIterator<Item = String>) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.into_iter().collect()))
        .build()
}

/// An EC2 volume as the controller sees it.
pub(super) fn to_volume(v: &ec2::Volume) -> Volume {
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
        // A copy (CopyVolumes) names its source volume; a restore its snapshot.
        source: v
            .snapshot_id()
            .filter(|s| !s.is_empty())
            .map(|s| VolumeSource::Snapshot(s.to_owned()))
            .or_else(|| {
                v.source_volume_id()
                    .filter(|s| !s.is_empty())
                    .map(|s| VolumeSource::Volume(s.to_owned()))
            }),
        tags,
        attachments,
        abnormal: (state == "error")
            .then(|| format!("EC2 reports volume {} in state error", v.volume_id().unwrap_or("?"))),
    }
}

/// CreateVolume's answer as the volume it describes.
pub(super) fn volume_from_create(v: &aws_sdk_ec2::operation::create_volume::CreateVolumeOutput) -> ec2::Volume {
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

pub(super) fn to_snapshot(s: &ec2::Snapshot) -> Snapshot {
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
        lock: None,
        fast_restore_zones: Vec::new(),
    }
}

/// A paging token of ours: how many items of EC2's page starting at `ec2` were already given
/// out. EC2 pages hold at least 5 items, CSI callers may ask for fewer.
pub(super) fn parse_token(token: Option<&str>) -> Result<(usize, Option<String>)> {
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
pub(super) fn cut_page<T>(
    mut items: Vec<T>,
    skip: usize,
    max: usize,
    this: Option<String>,
    next: Option<String>,
) -> Page<T> {
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

pub(super) fn page_size(max: usize, most: usize) -> i32 {
    if max == 0 {
        most as i32
    } else {
        max.clamp(5, most) as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
