//! Decoys: node calls pointed at paths that hold something other than the volume they name —
//! a tmpfs, the host's root, another volume's staging mount, another volume's raw device, a loop
//! device that belongs to no volume. Each must answer NOT_FOUND and leave the decoy exactly as it
//! was. Everything the tests mount lives under the driver's temp dir, which the harness unmounts
//! and detaches when it is dropped, pass or fail.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ebs_csi::csi::volume_capability::access_mode::Mode;
use ebs_csi::csi::*;
use support::*;
use tonic::Code;

/// A volume created, attached to node-1, staged (ext4) and published at a pod path.
struct Staged {
    id: String,
    ctx: HashMap<String, String>,
    staging: String,
    target: String,
}

async fn staged_and_published(d: &mut Driver, name: &str) -> Staged {
    let id = d
        .controller
        .create_volume(create_req(name, 1, &[]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
        .volume_id;
    let ctx = d
        .controller
        .controller_publish_volume(publish_req(&id, NODE))
        .await
        .unwrap()
        .into_inner()
        .publish_context;
    let staging = d.staging_path(&id);
    d.node
        .node_stage_volume(NodeStageVolumeRequest {
            volume_id: id.clone(),
            publish_context: ctx.clone(),
            staging_target_path: staging.clone(),
            volume_capability: Some(rwo()),
            ..Default::default()
        })
        .await
        .unwrap();
    let target = d.target_path(&format!("pod-{name}"), name, false);
    d.node
        .node_publish_volume(NodePublishVolumeRequest {
            volume_id: id.clone(),
            publish_context: ctx.clone(),
            staging_target_path: staging.clone(),
            target_path: target.clone(),
            volume_capability: Some(rwo()),
            ..Default::default()
        })
        .await
        .unwrap();
    Staged {
        id,
        ctx,
        staging,
        target,
    }
}

/// What is mounted at `path` (source and type), from mountinfo; None when nothing is.
fn mounted(path: &str) -> Option<(String, String)> {
    let path = std::fs::canonicalize(path).ok()?;
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    text.lines().rev().find_map(|l| {
        let fields: Vec<&str> = l.split(' ').collect();
        let sep = fields.iter().position(|f| *f == "-")?;
        (Path::new(fields[4]) == path).then(|| (fields[sep + 2].to_owned(), fields[sep + 1].to_owned()))
    })
}

fn tmpfs_at(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    nix::mount::mount(
        Some("decoy"),
        path,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1m"),
    )
    .unwrap();
    std::fs::write(path.join("keep"), "decoy").unwrap();
}

/// Every node call that acts on what it finds at `path`, for volume `id`: all NOT_FOUND, and
/// whatever was mounted there is still there.
async fn all_refused(d: &mut Driver, id: &str, path: &str, what: &str) {
    let before = mounted(path);
    let stats = d
        .node
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: id.into(),
            volume_path: path.into(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(stats), Code::NotFound, "stats at {what}");
    let expand = d
        .node
        .node_expand_volume(NodeExpandVolumeRequest {
            volume_id: id.into(),
            volume_path: path.into(),
            capacity_range: Some(CapacityRange {
                required_bytes: GIB,
                limit_bytes: 0,
            }),
            ..Default::default()
        })
        .await;
    assert_eq!(code(expand), Code::NotFound, "expand at {what}");
    let health = d
        .node
        .node_get_volume_health(NodeGetVolumeHealthRequest {
            volume_id: id.into(),
            volume_publish_path: path.into(),
            ..Default::default()
        })
        .await;
    match (&before, health) {
        // Where nothing is mounted the volume is inaccessible, or the path cannot exist at all.
        (None, Ok(h)) => {
            let statuses = h.into_inner().volume_health.unwrap().health_statuses;
            assert_eq!(
                statuses[0].status,
                VolumeHealthErrorType::Inaccessible as i32,
                "health at {what}"
            );
        }
        (_, health) => assert_eq!(code(health), Code::NotFound, "health at {what}"),
    }
    if path != "/" {
        let unpublish = d
            .node
            .node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: id.into(),
                target_path: path.into(),
            })
            .await;
        // With nothing mounted there, there is nothing to undo: success is right too.
        if before.is_some() || unpublish.is_err() {
            assert_eq!(code(unpublish), Code::NotFound, "unpublish at {what}");
        }
        let unstage = d
            .node
            .node_unstage_volume(NodeUnstageVolumeRequest {
                volume_id: id.into(),
                staging_target_path: path.into(),
            })
            .await;
        // With nothing mounted there, there is nothing to undo: success is right too.
        if before.is_some() || unstage.is_err() {
            assert_eq!(code(unstage), Code::NotFound, "unstage at {what}");
        }
    }
    assert_eq!(mounted(path), before, "{what} was left exactly as it was");
}

#[tokio::test]
async fn node_calls_act_only_on_the_volumes_own_device() {
    let mut d = Driver::start(&[]).await;
    let a = staged_and_published(&mut d, "pvc-a").await;
    let b = staged_and_published(&mut d, "pvc-b").await;

    // A tmpfs where the CO said volume A is.
    let tmpfs = d.dir.path().join("decoy-tmpfs");
    tmpfs_at(&tmpfs);
    all_refused(&mut d, &a.id, tmpfs.to_str().unwrap(), "a tmpfs").await;
    assert_eq!(std::fs::read_to_string(tmpfs.join("keep")).unwrap(), "decoy");

    // The host's root filesystem.
    all_refused(&mut d, &a.id, "/", "the host's root").await;

    // Volume B's staging mount and B's pod mount, named as volume A.
    all_refused(&mut d, &a.id, &b.staging, "another volume's staging mount").await;
    all_refused(&mut d, &a.id, &b.target, "another volume's pod mount").await;

    // A's own paths still answer for A; and with B's id they answer for B.
    for (id, path) in [(&a.id, &a.target), (&a.id, &a.staging), (&b.id, &b.target)] {
        let stats = d
            .node
            .node_get_volume_stats(NodeGetVolumeStatsRequest {
                volume_id: id.clone(),
                volume_path: path.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!stats.usage.is_empty());
    }
    // Unstage and unpublish with the right id still work, and the decoys survived all of it.
    for v in [&a, &b] {
        d.node
            .node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: v.id.clone(),
                target_path: v.target.clone(),
            })
            .await
            .unwrap();
        d.node
            .node_unstage_volume(NodeUnstageVolumeRequest {
                volume_id: v.id.clone(),
                staging_target_path: v.staging.clone(),
            })
            .await
            .unwrap();
        assert_eq!(mounted(&v.staging), None);
    }
    assert_eq!(mounted(tmpfs.to_str().unwrap()).map(|m| m.1), Some("tmpfs".into()));
    let _ = &a.ctx;
}

#[tokio::test]
async fn block_targets_are_proven_by_the_device_bound_there() {
    let mut d = Driver::start(&[]).await;
    let a = staged_and_published(&mut d, "pvc-fs").await;
    // Volume C, published raw.
    let c = d
        .controller
        .create_volume(create_req("pvc-raw", 1, &[]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
        .volume_id;
    let ctx = d
        .controller
        .controller_publish_volume(publish_req(&c, NODE))
        .await
        .unwrap()
        .into_inner()
        .publish_context;
    let raw_target = d.target_path("pod-raw", "pvc-raw", true);
    d.node
        .node_publish_volume(NodePublishVolumeRequest {
            volume_id: c.clone(),
            publish_context: ctx.clone(),
            staging_target_path: d.staging_path(&c),
            target_path: raw_target.clone(),
            volume_capability: Some(block_cap(Mode::SingleNodeWriter)),
            ..Default::default()
        })
        .await
        .unwrap();
    all_refused(&mut d, &a.id, &raw_target, "another volume's raw device").await;
    // The volume's own raw device, named as its staging path: no filesystem to bind into a pod
    // (binding the device file onto a directory was INTERNAL).
    let fs_target = d.target_path("pod-raw-as-fs", "pvc-raw", false);
    let publish = d
        .node
        .node_publish_volume(NodePublishVolumeRequest {
            volume_id: c.clone(),
            publish_context: ctx.clone(),
            staging_target_path: raw_target.clone(),
            target_path: fs_target.clone(),
            volume_capability: Some(rwo()),
            ..Default::default()
        })
        .await;
    assert_eq!(code(publish), Code::FailedPrecondition);
    assert_eq!(mounted(&fs_target), None);

    // A loop device that belongs to no volume, bound where a raw volume would be.
    let image = d.dir.path().join("stray.img");
    std::fs::File::create(&image).unwrap().set_len(GIB as u64).unwrap();
    let out = std::process::Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&image)
        .output()
        .unwrap();
    let stray = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let stray_target = d.dir.path().join("stray-target");
    std::fs::File::create(&stray_target).unwrap();
    nix::mount::mount(
        Some(&stray),
        &stray_target,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    all_refused(&mut d, &c, stray_target.to_str().unwrap(), "a stray loop device").await;

    // The raw volume's own target still answers for it.
    let stats = d
        .node
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: c.clone(),
            volume_path: raw_target.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.usage[0].total, GIB);
    d.node
        .node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: c.clone(),
            target_path: raw_target.clone(),
        })
        .await
        .unwrap();
    assert!(!Path::new(&raw_target).exists());
}

#[tokio::test]
async fn paths_that_cannot_hold_the_volume_are_not_found() {
    let mut d = Driver::start(&[]).await;
    let a = staged_and_published(&mut d, "pvc-paths").await;
    let long = format!("/tmp/{}", "x".repeat(300));
    for (path, what) in [
        ("some/path", "a relative path"),
        ("/nonexistent/ebs-csi/path", "a missing path"),
        (long.as_str(), "a 300-byte component"),
    ] {
        all_refused(&mut d, &a.id, path, what).await;
    }
    // Unpublish where nothing is mounted removes only what publish makes (an empty directory
    // or file); a file with data, or a directory with files, is someone else's.
    let precious = d.dir.path().join("precious");
    std::fs::create_dir_all(precious.join("dir")).unwrap();
    std::fs::write(precious.join("file"), "data").unwrap();
    std::fs::write(precious.join("dir/inside"), "data").unwrap();
    for p in [precious.join("file"), precious.join("dir")] {
        d.node
            .node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: a.id.clone(),
                target_path: p.display().to_string(),
            })
            .await
            .unwrap();
        assert!(p.exists(), "{} was removed", p.display());
    }
    assert_eq!(std::fs::read_to_string(precious.join("dir/inside")).unwrap(), "data");
    // Unknown volumes, at the volume's real path.
    for id in ["vol-0123456789abcdef0", "id", "../../etc"] {
        let stats = d
            .node
            .node_get_volume_stats(NodeGetVolumeStatsRequest {
                volume_id: id.into(),
                volume_path: a.target.clone(),
                ..Default::default()
            })
            .await;
        assert_eq!(code(stats), Code::NotFound, "stats of {id}");
    }
    // Missing fields are still INVALID_ARGUMENT.
    let no_path = d
        .node
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: a.id.clone(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(no_path), Code::InvalidArgument);
    // A path the node is asked to create, with a component Linux cannot name: the caller's
    // mistake, INVALID_ARGUMENT, and nothing made.
    let publish = d
        .node
        .node_publish_volume(NodePublishVolumeRequest {
            volume_id: a.id.clone(),
            publish_context: a.ctx.clone(),
            staging_target_path: a.staging.clone(),
            target_path: format!("{}/{}", d.dir.path().display(), "y".repeat(300)),
            volume_capability: Some(rwo()),
            ..Default::default()
        })
        .await;
    assert_eq!(code(publish), Code::InvalidArgument);
}

#[tokio::test]
async fn a_single_writer_volume_is_published_once_on_its_node() {
    let mut d = Driver::start(&[]).await;
    let a = staged_and_published(&mut d, "pvc-once").await;
    let cap = mount_cap(Mode::SingleNodeSingleWriter);
    let second = d.target_path("pod-second", "pvc-once", false);
    let req = |target: &str| NodePublishVolumeRequest {
        volume_id: a.id.clone(),
        publish_context: a.ctx.clone(),
        staging_target_path: a.staging.clone(),
        target_path: target.into(),
        volume_capability: Some(cap.clone()),
        ..Default::default()
    };
    let err = d.node.node_publish_volume(req(&second)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains(&a.target), "{}", err.message());
    assert_eq!(mounted(&second), None);
    // Once the first publication is gone, the second may go ahead.
    d.node
        .node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: a.id.clone(),
            target_path: a.target.clone(),
        })
        .await
        .unwrap();
    d.node.node_publish_volume(req(&second)).await.unwrap();
    // Multi-writer on one node (ReadWriteOnce in Kubernetes) is not limited.
    let mut multi = req(&a.target);
    multi.volume_capability = Some(mount_cap(Mode::SingleNodeMultiWriter));
    d.node.node_publish_volume(multi).await.unwrap();
}

/// A mount hidden by a later one on a directory above it is listed in mountinfo but no longer
/// reached through its path: node calls must neither act on it nor spin on it (an unstage once
/// looped forever, unmounting "nothing" and finding it still listed).
#[tokio::test]
async fn a_mount_hidden_under_another_is_refused_until_uncovered() {
    let mut d = Driver::start(&[]).await;
    let a = staged_and_published(&mut d, "pvc-under").await;
    d.node
        .node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: a.id.clone(),
            target_path: a.target.clone(),
        })
        .await
        .unwrap();
    let b = staged_and_published(&mut d, "pvc-over").await;
    // Volume B staged again on kubelet's plugin directory, above A's staging path.
    let cover = d.dir.path().join("kubelet/plugins").display().to_string();
    d.node
        .node_stage_volume(NodeStageVolumeRequest {
            volume_id: b.id.clone(),
            publish_context: b.ctx.clone(),
            staging_target_path: cover.clone(),
            volume_capability: Some(rwo()),
            ..Default::default()
        })
        .await
        .unwrap();
    let unstage_a = NodeUnstageVolumeRequest {
        volume_id: a.id.clone(),
        staging_target_path: a.staging.clone(),
    };
    let hidden = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        d.node.node_unstage_volume(unstage_a.clone()),
    )
    .await
    .expect("an answer, not a spin");
    assert_eq!(code(hidden), Code::FailedPrecondition);
    // Uncovered, it comes off.
    d.node
        .node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: b.id.clone(),
            staging_target_path: cover.clone(),
        })
        .await
        .unwrap();
    d.node.node_unstage_volume(unstage_a).await.unwrap();
    assert_eq!(mounted(&a.staging), None);
}

/// Paths no volume may be mounted on: the driver's own store (or a directory above it, which
/// would hide every image), and places where no directory can be made.
#[tokio::test]
async fn the_store_and_impossible_places_are_refused() {
    let mut d = Driver::start(&[]).await;
    let id = d
        .controller
        .create_volume(create_req("pvc-store", 1, &[]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
        .volume_id;
    let ctx = d
        .controller
        .controller_publish_volume(publish_req(&id, NODE))
        .await
        .unwrap()
        .into_inner()
        .publish_context;
    let root = d.dir.path().display().to_string();
    let data = d.data_dir().display().to_string();
    for (path, why) in [
        (root.as_str(), "the directory holding the store"),
        (data.as_str(), "the store"),
        ("/proc/ebs-csi-cannot-exist", "inside /proc"),
        ("/dev/null/ebs-csi", "under a device file"),
    ] {
        let stage = d
            .node
            .node_stage_volume(NodeStageVolumeRequest {
                volume_id: id.clone(),
                publish_context: ctx.clone(),
                staging_target_path: path.into(),
                volume_capability: Some(rwo()),
                ..Default::default()
            })
            .await;
        assert_eq!(code(stage), Code::InvalidArgument, "stage at {why}");
        let publish = d
            .node
            .node_publish_volume(NodePublishVolumeRequest {
                volume_id: id.clone(),
                publish_context: ctx.clone(),
                staging_target_path: d.staging_path(&id),
                target_path: path.into(),
                volume_capability: Some(block_cap(Mode::SingleNodeWriter)),
                ..Default::default()
            })
            .await;
        assert_eq!(code(publish), Code::InvalidArgument, "publish at {why}");
    }
    assert!(mounts_under(d.dir.path()).is_empty());
    assert!(d.volume_file(&id).exists(), "the store is still in view");
}
