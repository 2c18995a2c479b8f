//! The Node service over gRPC on real loop devices, real ext4/xfs and real mounts, at the paths
//! kubelet uses (under a temp root).

mod support;

use std::collections::HashMap;
use std::os::unix::fs::FileTypeExt;

use ebs_csi::csi::volume_capability::{AccessType, MountVolume, access_mode::Mode};
use ebs_csi::csi::*;
use support::*;
use tonic::Code;

fn fs_cap(fs: &str, mode: Mode) -> VolumeCapability {
    let mut cap = mount_cap(mode);
    cap.access_type = Some(AccessType::Mount(MountVolume {
        fs_type: fs.into(),
        ..Default::default()
    }));
    cap
}

/// A volume created and attached to node-1: (id, publish_context, volume_context).
async fn attached(
    d: &mut Driver,
    name: &str,
    gib: i64,
    pairs: &[(&str, &str)],
) -> (String, HashMap<String, String>, HashMap<String, String>) {
    let v = d
        .controller
        .create_volume(create_req(name, gib, pairs))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let ctx = d
        .controller
        .controller_publish_volume(publish_req(&v.volume_id, NODE))
        .await
        .unwrap()
        .into_inner()
        .publish_context;
    (v.volume_id, ctx, v.volume_context)
}

fn stage_req(
    id: &str,
    staging: &str,
    ctx: &HashMap<String, String>,
    cap: VolumeCapability,
    vctx: &HashMap<String, String>,
) -> NodeStageVolumeRequest {
    NodeStageVolumeRequest {
        volume_id: id.into(),
        publish_context: ctx.clone(),
        staging_target_path: staging.into(),
        volume_capability: Some(cap),
        volume_context: vctx.clone(),
        ..Default::default()
    }
}

fn publish_node_req(
    id: &str,
    staging: &str,
    target: &str,
    cap: VolumeCapability,
    ctx: &HashMap<String, String>,
    readonly: bool,
) -> NodePublishVolumeRequest {
    NodePublishVolumeRequest {
        volume_id: id.into(),
        publish_context: ctx.clone(),
        staging_target_path: staging.into(),
        target_path: target.into(),
        volume_capability: Some(cap),
        readonly,
        ..Default::default()
    }
}

fn fs_of(device: &str) -> String {
    let out = std::process::Command::new("blkid")
        .args(["-p", "-o", "value", "-s", "TYPE", device])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn has_cap_sys_resource() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).unwrap().trim();
    const CAP_SYS_RESOURCE: u32 = 24;
    u64::from_str_radix(eff, 16).unwrap() & (1 << CAP_SYS_RESOURCE) != 0
}

/// NodeGetVolumeStats for a volume at a path, as kubelet asks.
async fn volume_stats(d: &mut Driver, id: &str, path: &str) -> NodeGetVolumeStatsResponse {
    let req = NodeGetVolumeStatsRequest {
        volume_id: id.into(),
        volume_path: path.into(),
        ..Default::default()
    };
    d.node.node_get_volume_stats(req).await.unwrap().into_inner()
}

fn bytes_usage(usage: &[VolumeUsage]) -> &VolumeUsage {
    usage
        .iter()
        .find(|u| u.unit == volume_usage::Unit::Bytes as i32)
        .expect("byte usage")
}

#[tokio::test]
async fn node_info_and_capabilities() {
    let mut d = Driver::start(&["--volume-attach-limit", "11"]).await;
    let info = d.node.node_get_info(NodeGetInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.node_id, NODE);
    assert_eq!(info.max_volumes_per_node, 11);
    let seg = info.accessible_topology.unwrap().segments;
    assert_eq!(seg["topology.ebs.csi.aws.com/zone"], ZONE);
    assert_eq!(seg["topology.kubernetes.io/zone"], ZONE);
    assert_eq!(seg["kubernetes.io/os"], "linux");
    let caps = d
        .node
        .node_get_capabilities(NodeGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    use node_service_capability::rpc::Type;
    let have: Vec<i32> = caps
        .capabilities
        .iter()
        .filter_map(|c| match &c.r#type {
            Some(node_service_capability::Type::Rpc(r)) => Some(r.r#type),
            _ => None,
        })
        .collect();
    for t in [
        Type::StageUnstageVolume,
        Type::ExpandVolume,
        Type::GetVolumeStats,
        Type::SingleNodeMultiWriter,
    ] {
        assert!(have.contains(&(t as i32)), "{t:?}");
    }
}

async fn life_cycle(fs: &str) {
    let mut d = Driver::start(&[]).await;
    let (id, ctx, vctx) = attached(&mut d, "pvc-life", 2, &[("csi.storage.k8s.io/fstype", fs)]).await;
    let device = ctx["devicePath"].clone();
    let staging = d.staging_path(&id);
    let cap = fs_cap(fs, Mode::SingleNodeWriter);

    d.node
        .node_stage_volume(stage_req(&id, &staging, &ctx, cap.clone(), &vctx))
        .await
        .unwrap();
    assert_eq!(fs_of(&device), fs, "formatted as asked");
    // Staging again is a no-op success.
    d.node
        .node_stage_volume(stage_req(&id, &staging, &ctx, cap.clone(), &vctx))
        .await
        .unwrap();

    let target = d.target_path("pod-1", "pvc-life", false);
    d.node
        .node_publish_volume(publish_node_req(&id, &staging, &target, cap.clone(), &ctx, false))
        .await
        .unwrap();
    d.node
        .node_publish_volume(publish_node_req(&id, &staging, &target, cap.clone(), &ctx, false))
        .await
        .unwrap();
    std::fs::write(format!("{target}/index.html"), "hello").unwrap();
    // The same target read-only is a conflicting publish.
    assert_eq!(
        code(
            d.node
                .node_publish_volume(publish_node_req(&id, &staging, &target, cap.clone(), &ctx, true))
                .await
        ),
        Code::AlreadyExists
    );

    // A read-only publish elsewhere really is read-only.
    let ro = d.target_path("pod-2", "pvc-life", false);
    d.node
        .node_publish_volume(publish_node_req(&id, &staging, &ro, cap.clone(), &ctx, true))
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(format!("{ro}/index.html")).unwrap(), "hello");
    let err = std::fs::write(format!("{ro}/other"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));

    let stats = volume_stats(&mut d, &id, &target).await;
    let b = bytes_usage(&stats.usage);
    assert!(b.total > GIB && b.total <= 2 * GIB, "{b:?}");
    assert!(b.used > 0 && b.available > 0);
    assert!(
        stats
            .usage
            .iter()
            .any(|u| u.unit == volume_usage::Unit::Inodes as i32 && u.total > 0)
    );

    // Online expansion: controller, then node.
    let expand = ControllerExpandVolumeRequest {
        volume_id: id.clone(),
        capacity_range: Some(CapacityRange {
            required_bytes: 4 * GIB,
            limit_bytes: 0,
        }),
        volume_capability: Some(cap.clone()),
        ..Default::default()
    };
    let r = d
        .controller
        .controller_expand_volume(expand)
        .await
        .unwrap()
        .into_inner();
    assert!(r.node_expansion_required);
    let nr = d
        .node
        .node_expand_volume(NodeExpandVolumeRequest {
            volume_id: id.clone(),
            volume_path: target.clone(),
            capacity_range: Some(CapacityRange {
                required_bytes: 4 * GIB,
                limit_bytes: 0,
            }),
            ..Default::default()
        })
        .await;
    // ext4 grows online only with CAP_SYS_RESOURCE (a privileged node pod has it); without it
    // the error says so, and the filesystem grows at the next stage instead (checked below).
    if fs == "xfs" || has_cap_sys_resource() {
        assert_eq!(nr.unwrap().into_inner().capacity_bytes, 4 * GIB);
        let after = volume_stats(&mut d, &id, &target).await;
        assert!(bytes_usage(&after.usage).total > 3 * GIB, "{:?}", after.usage);
    } else {
        let e = nr.unwrap_err();
        assert!(e.message().contains("CAP_SYS_RESOURCE"), "{e:?}");
        // The host's limit, not the driver's fault: FAILED_PRECONDITION, never INTERNAL.
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    }

    for t in [&target, &ro] {
        d.node
            .node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: id.clone(),
                target_path: t.clone(),
            })
            .await
            .unwrap();
        assert!(!std::path::Path::new(t).exists(), "the target is removed");
        d.node
            .node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: id.clone(),
                target_path: t.clone(),
            })
            .await
            .unwrap();
    }
    let unstage = NodeUnstageVolumeRequest {
        volume_id: id.clone(),
        staging_target_path: staging.clone(),
    };
    d.node.node_unstage_volume(unstage.clone()).await.unwrap();
    d.node.node_unstage_volume(unstage).await.unwrap();
    assert!(mounts_under(d.dir.path()).is_empty());

    // Staged again: never reformatted, the page is still there.
    d.node
        .node_stage_volume(stage_req(&id, &staging, &ctx, cap.clone(), &vctx))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(format!("{staging}/index.html")).unwrap(),
        "hello"
    );
    d.node
        .node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: id.clone(),
            staging_target_path: staging,
        })
        .await
        .unwrap();
    d.controller
        .controller_unpublish_volume(unpublish_req(&id, NODE))
        .await
        .unwrap();
}

/// NodeExpandVolume checks what it is asked before growing anything: a range that cannot hold,
/// or a limit the volume is already past, is OUT_OF_RANGE; access of the other kind than what
/// is at the path is INVALID_ARGUMENT; a range that fits grows the filesystem to the device.
#[tokio::test]
async fn node_expand_checks_range_and_capability() {
    let mut d = Driver::start(&[]).await;
    let (id, ctx, vctx) = attached(&mut d, "pvc-node-expand", 2, &[("csi.storage.k8s.io/fstype", "xfs")]).await;
    let staging = d.staging_path(&id);
    let cap = fs_cap("xfs", Mode::SingleNodeWriter);
    d.node
        .node_stage_volume(stage_req(&id, &staging, &ctx, cap.clone(), &vctx))
        .await
        .unwrap();
    let target = d.target_path("pod-expand", "pvc-node-expand", false);
    d.node
        .node_publish_volume(publish_node_req(&id, &staging, &target, cap.clone(), &ctx, false))
        .await
        .unwrap();
    let expand = |required: i64, limit: i64, cap: Option<VolumeCapability>| NodeExpandVolumeRequest {
        volume_id: id.clone(),
        volume_path: target.clone(),
        capacity_range: Some(CapacityRange {
            required_bytes: required,
            limit_bytes: limit,
        }),
        volume_capability: cap,
        ..Default::default()
    };
    let cases = [
        (
            expand(3 * GIB, 2 * GIB, None),
            Code::OutOfRange,
            "required above the limit",
        ),
        (
            expand(GIB, GIB, None),
            Code::OutOfRange,
            "the 2 GiB volume is past a 1 GiB limit",
        ),
        (expand(-1, 0, None), Code::InvalidArgument, "a negative size"),
        (
            expand(2 * GIB, 0, Some(block_cap(Mode::SingleNodeWriter))),
            Code::InvalidArgument,
            "block access to a mounted filesystem",
        ),
    ];
    for (req, want, what) in cases {
        let got = d.node.node_expand_volume(req).await;
        assert_eq!(code(got), want, "{what}");
    }
    let grown = d
        .node
        .node_expand_volume(expand(2 * GIB, 2 * GIB, Some(cap.clone())))
        .await
        .expect("a range the volume fits")
        .into_inner();
    assert_eq!(grown.capacity_bytes, 2 * GIB);
    d.node
        .node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: id.clone(),
            target_path: target.clone(),
        })
        .await
        .unwrap();
    d.node
        .node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: id.clone(),
            staging_target_path: staging,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn ext4_life_cycle() {
    life_cycle("ext4").await;
}

#[tokio::test]
async fn xfs_life_cycle() {
    life_cycle("xfs").await;
}

#[tokio::test]
async fn raw_block_publish_binds_the_device() {
    let mut d = Driver::start(&[]).await;
    let (id, ctx, _) = attached(&mut d, "pvc-block", 1, &[]).await;
    let cap = block_cap(Mode::SingleNodeWriter);
    let staging = d.staging_path(&id);
    d.node
        .node_stage_volume(stage_req(&id, &staging, &ctx, cap.clone(), &HashMap::new()))
        .await
        .unwrap();
    let target = d.target_path("pod-b", "pvc-block", true);
    d.node
        .node_publish_volume(publish_node_req(&id, &staging, &target, cap.clone(), &ctx, false))
        .await
        .unwrap();
    d.node
        .node_publish_volume(publish_node_req(&id, &staging, &target, cap.clone(), &ctx, false))
        .await
        .unwrap();
    assert!(std::fs::metadata(&target).unwrap().file_type().is_block_device());
    assert_eq!(fs_of(&ctx["devicePath"]), "", "a block volume is never formatted");
    let stats = volume_stats(&mut d, &id, &target).await;
    assert_eq!(bytes_usage(&stats.usage).total, GIB);
    d.node
        .node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: id.clone(),
            target_path: target.clone(),
        })
        .await
        .unwrap();
    assert!(!std::path::Path::new(&target).exists());
    d.controller
        .controller_unpublish_volume(unpublish_req(&id, NODE))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_device_of_another_volume_is_never_formatted_or_mounted() {
    let mut d = Driver::start(&[]).await;
    let (a, ctx_a, _) = attached(&mut d, "pvc-a", 1, &[]).await;
    let (b, ctx_b, _) = attached(&mut d, "pvc-b", 1, &[]).await;
    // Volume a's stage is handed volume b's device.
    let staging = d.staging_path(&a);
    let err = d
        .node
        .node_stage_volume(stage_req(&a, &staging, &ctx_b, rwo(), &HashMap::new()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains(&a) && err.message().contains(&ctx_b["devicePath"]),
        "{}",
        err.message()
    );
    assert_eq!(fs_of(&ctx_b["devicePath"]), "", "volume b untouched");
    assert!(mounts_under(d.dir.path()).is_empty());
    // A device that is not a loop device at all.
    let bogus = HashMap::from([("devicePath".to_string(), "/dev/sda".to_string())]);
    assert_eq!(
        code(
            d.node
                .node_stage_volume(stage_req(&a, &staging, &bogus, rwo(), &HashMap::new()))
                .await
        ),
        Code::FailedPrecondition
    );
    // Not attached: no device to find.
    d.controller
        .controller_unpublish_volume(unpublish_req(&a, NODE))
        .await
        .unwrap();
    assert_eq!(
        code(
            d.node
                .node_stage_volume(stage_req(&a, &staging, &ctx_a, rwo(), &HashMap::new()))
                .await
        ),
        Code::FailedPrecondition
    );
    d.controller
        .controller_unpublish_volume(unpublish_req(&b, NODE))
        .await
        .unwrap();
}

#[tokio::test]
async fn bad_node_requests() {
    let mut d = Driver::start(&[]).await;
    let (id, ctx, _) = attached(&mut d, "pvc-bad", 1, &[]).await;
    let good = d.staging_path(&id);
    let cases = [
        (
            "relative staging",
            stage_req(&id, "relative/globalmount", &ctx, rwo(), &HashMap::new()),
            Code::InvalidArgument,
        ),
        (
            "dotdot staging",
            stage_req(&id, &format!("{good}/../../etc"), &ctx, rwo(), &HashMap::new()),
            Code::InvalidArgument,
        ),
        (
            "no volume id",
            stage_req("", &good, &ctx, rwo(), &HashMap::new()),
            Code::InvalidArgument,
        ),
        (
            "unknown volume",
            stage_req("vol-0123456789abcdef0", &good, &HashMap::new(), rwo(), &HashMap::new()),
            Code::NotFound,
        ),
        (
            "garbage volume",
            stage_req("../../x", &good, &HashMap::new(), rwo(), &HashMap::new()),
            Code::NotFound,
        ),
    ];
    for (what, req, want) in cases {
        assert_eq!(code(d.node.node_stage_volume(req).await), want, "{what}");
    }
    let mut no_cap = stage_req(&id, &good, &ctx, rwo(), &HashMap::new());
    no_cap.volume_capability = None;
    assert_eq!(code(d.node.node_stage_volume(no_cap).await), Code::InvalidArgument);
    // Publishing a volume that was never staged.
    let target = d.target_path("pod-x", "pvc-bad", false);
    assert_eq!(
        code(
            d.node
                .node_publish_volume(publish_node_req(&id, &good, &target, rwo(), &ctx, false))
                .await
        ),
        Code::FailedPrecondition
    );
    let stats = NodeGetVolumeStatsRequest {
        volume_id: id.clone(),
        volume_path: format!("{good}/nowhere"),
        ..Default::default()
    };
    assert_eq!(code(d.node.node_get_volume_stats(stats).await), Code::NotFound);
    assert!(mounts_under(d.dir.path()).is_empty());
    d.controller
        .controller_unpublish_volume(unpublish_req(&id, NODE))
        .await
        .unwrap();
}

#[tokio::test]
async fn restore_into_a_larger_volume_grows_the_filesystem_at_stage() {
    let mut d = Driver::start(&[]).await;
    let (id, ctx, vctx) = attached(&mut d, "pvc-src", 1, &[]).await;
    let staging = d.staging_path(&id);
    d.node
        .node_stage_volume(stage_req(
            &id,
            &staging,
            &ctx,
            fs_cap("ext4", Mode::SingleNodeWriter),
            &vctx,
        ))
        .await
        .unwrap();
    std::fs::write(format!("{staging}/page"), "kept").unwrap();
    d.node
        .node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: id.clone(),
            staging_target_path: staging,
        })
        .await
        .unwrap();
    let snap = d
        .controller
        .create_snapshot(CreateSnapshotRequest {
            source_volume_id: id.clone(),
            name: "s".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    d.controller
        .controller_unpublish_volume(unpublish_req(&id, NODE))
        .await
        .unwrap();

    let mut req = create_req("pvc-restored", 3, &[]);
    req.volume_content_source = Some(from_snapshot(&snap.snapshot_id));
    let r = d
        .controller
        .create_volume(req)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let ctx = d
        .controller
        .controller_publish_volume(publish_req(&r.volume_id, NODE))
        .await
        .unwrap()
        .into_inner()
        .publish_context;
    let staging = d.staging_path(&r.volume_id);
    d.node
        .node_stage_volume(stage_req(
            &r.volume_id,
            &staging,
            &ctx,
            fs_cap("ext4", Mode::SingleNodeWriter),
            &r.volume_context,
        ))
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(format!("{staging}/page")).unwrap(), "kept");
    let stats = volume_stats(&mut d, &r.volume_id, &staging).await;
    assert!(
        bytes_usage(&stats.usage).total > 2 * GIB,
        "grown to the 3 GiB device: {:?}",
        stats.usage
    );
    d.node
        .node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: r.volume_id.clone(),
            staging_target_path: staging,
        })
        .await
        .unwrap();
    d.controller
        .controller_unpublish_volume(unpublish_req(&r.volume_id, NODE))
        .await
        .unwrap();
}

#[tokio::test]
async fn concurrent_duplicate_stages_mount_once() {
    let mut d = Driver::start(&[]).await;
    let (id, ctx, vctx) = attached(&mut d, "pvc-dup", 1, &[]).await;
    let staging = d.staging_path(&id);
    let mut calls = Vec::new();
    for _ in 0..6 {
        let mut n = d.node.clone();
        let req = stage_req(&id, &staging, &ctx, rwo(), &vctx);
        calls.push(tokio::spawn(async move { n.node_stage_volume(req).await }));
    }
    for c in calls {
        if let Err(s) = c.await.unwrap() {
            assert_eq!(s.code(), Code::Aborted, "{s:?}");
        }
    }
    // Retried to completion, the volume is mounted exactly once.
    loop {
        match d
            .node
            .node_stage_volume(stage_req(&id, &staging, &ctx, rwo(), &vctx))
            .await
        {
            Ok(_) => break,
            Err(s) if s.code() == Code::Aborted => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            Err(s) => panic!("{s:?}"),
        }
    }
    assert_eq!(mounts_under(d.dir.path()).len(), 1);
    d.node
        .node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: id.clone(),
            staging_target_path: staging,
        })
        .await
        .unwrap();
    d.controller
        .controller_unpublish_volume(unpublish_req(&id, NODE))
        .await
        .unwrap();
}

#[tokio::test]
async fn volume_health_sees_a_missing_mount() {
    let mut d = Driver::start(&[]).await;
    let (id, ctx, vctx) = attached(&mut d, "pvc-health", 1, &[]).await;
    let staging = d.staging_path(&id);
    d.node
        .node_stage_volume(stage_req(&id, &staging, &ctx, rwo(), &vctx))
        .await
        .unwrap();
    let req = NodeGetVolumeHealthRequest {
        volume_id: id.clone(),
        staging_target_path: staging.clone(),
        ..Default::default()
    };
    let h = d
        .node
        .node_get_volume_health(req.clone())
        .await
        .unwrap()
        .into_inner()
        .volume_health
        .unwrap();
    assert!(h.health_statuses.is_empty(), "{h:?}");
    // Unmounted behind the driver's back.
    nix::mount::umount2(staging.as_str(), nix::mount::MntFlags::MNT_DETACH).unwrap();
    let h = d
        .node
        .node_get_volume_health(req)
        .await
        .unwrap()
        .into_inner()
        .volume_health
        .unwrap();
    assert_eq!(h.health_statuses.len(), 1);
    assert_eq!(h.health_statuses[0].status, VolumeHealthErrorType::Inaccessible as i32);
    assert_eq!(h.health_statuses[0].reason, "NotMounted");
    d.controller
        .controller_unpublish_volume(unpublish_req(&id, NODE))
        .await
        .unwrap();
}
