//! The Controller service over gRPC against the real binary on the local backend, with real
//! loop devices for attach.

mod support;

use std::collections::HashSet;

use ebs_csi::csi::volume_capability::access_mode::Mode;
use ebs_csi::csi::*;
use support::*;
use tonic::Code;

fn topology(pairs: &[(&str, &str)]) -> Topology {
    Topology {
        segments: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

#[tokio::test]
async fn create_is_idempotent_by_name_and_rounds_sizes() {
    let mut d = Driver::start(&[]).await;
    let mut req = create_req("pvc-1", 10, &[("type", "gp3")]);
    let v1 = d
        .controller
        .create_volume(req.clone())
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert!(
        v1.volume_id.starts_with("vol-") && v1.volume_id.len() == 21,
        "{}",
        v1.volume_id
    );
    assert_eq!(v1.capacity_bytes, 10 * GIB);
    let file = d.volume_file(&v1.volume_id);
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.len(), 10 << 30);
    {
        use std::os::unix::fs::MetadataExt;
        assert!(
            meta.blocks() < 1024,
            "the image should be sparse, has {} blocks",
            meta.blocks()
        );
    }

    // The same call again: the same volume.
    let v2 = d
        .controller
        .create_volume(req.clone())
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v1.volume_id, v2.volume_id);
    // A range the existing volume satisfies is compatible too.
    req.capacity_range = Some(CapacityRange {
        required_bytes: 5 * GIB,
        limit_bytes: 10 * GIB,
    });
    let v3 = d
        .controller
        .create_volume(req.clone())
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v1.volume_id, v3.volume_id);
    // Incompatible: bigger, or another type.
    assert_eq!(
        code(
            d.controller
                .create_volume(create_req("pvc-1", 20, &[("type", "gp3")]))
                .await
        ),
        Code::AlreadyExists
    );
    assert_eq!(
        code(
            d.controller
                .create_volume(create_req("pvc-1", 10, &[("type", "io2"), ("iops", "1000")]))
                .await
        ),
        Code::AlreadyExists
    );

    // 1.5 GiB rounds up to 2; no range at all is EBS's default of 100 GiB.
    let mut odd = create_req("pvc-odd", 0, &[]);
    odd.capacity_range = Some(CapacityRange {
        required_bytes: GIB + GIB / 2,
        limit_bytes: 0,
    });
    let v = d
        .controller
        .create_volume(odd)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v.capacity_bytes, 2 * GIB);
    let mut none = create_req("pvc-default", 0, &[]);
    none.capacity_range = None;
    let v = d
        .controller
        .create_volume(none)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v.capacity_bytes, 100 * GIB);

    let listed = d
        .controller
        .list_volumes(ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.entries.len(), 3);
}

#[tokio::test]
async fn concurrent_duplicates_make_one_volume() {
    let d = Driver::start(&[]).await;
    let mut calls = Vec::new();
    for _ in 0..8 {
        let mut c = d.controller.clone();
        calls.push(tokio::spawn(async move {
            c.create_volume(create_req("pvc-race", 4, &[])).await
        }));
    }
    let mut ids = HashSet::new();
    for call in calls {
        match call.await.unwrap() {
            Ok(r) => {
                ids.insert(r.into_inner().volume.unwrap().volume_id);
            }
            Err(s) => assert_eq!(s.code(), Code::Aborted, "{s:?}"),
        }
    }
    // Retry until the in-flight one has finished; the answer is still the one volume.
    let mut c = d.controller.clone();
    let final_id = loop {
        match c.create_volume(create_req("pvc-race", 4, &[])).await {
            Ok(r) => break r.into_inner().volume.unwrap().volume_id,
            Err(s) if s.code() == Code::Aborted => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            Err(s) => panic!("{s:?}"),
        }
    };
    ids.insert(final_id);
    assert_eq!(ids.len(), 1, "{ids:?}");
    let images = std::fs::read_dir(d.data_dir().join("volumes")).unwrap().count();
    assert_eq!(images, 1);
}

#[tokio::test]
async fn bad_create_requests_get_clear_codes_and_create_nothing() {
    let mut d = Driver::start(&[]).await;
    let long = "x".repeat(10 * 1024);
    let mut cases: Vec<(&str, CreateVolumeRequest, Code)> = vec![
        ("empty name", create_req("", 1, &[]), Code::InvalidArgument),
        ("10 KB name", create_req(&long, 1, &[]), Code::InvalidArgument),
        (
            "unknown parameter",
            create_req("p", 1, &[("flavour", "vanilla")]),
            Code::InvalidArgument,
        ),
        (
            "bad bool",
            create_req("p", 1, &[("encrypted", "maybe")]),
            Code::InvalidArgument,
        ),
        (
            "unknown type",
            create_req("p", 1, &[("type", "gp9")]),
            Code::InvalidArgument,
        ),
        (
            "iops and iopsPerGB",
            create_req("p", 10, &[("type", "io2"), ("iops", "1000"), ("iopsPerGB", "10")]),
            Code::InvalidArgument,
        ),
        (
            "iops on gp2",
            create_req("p", 10, &[("type", "gp2"), ("iops", "1000")]),
            Code::InvalidArgument,
        ),
        (
            "gp3 iops below minimum",
            create_req("p", 10, &[("type", "gp3"), ("iops", "2999")]),
            Code::InvalidArgument,
        ),
        (
            "gp3 throughput above max",
            create_req("p", 100, &[("type", "gp3"), ("iops", "16000"), ("throughput", "2001")]),
            Code::InvalidArgument,
        ),
        (
            "gp3 throughput per iops",
            create_req("p", 10, &[("type", "gp3"), ("iops", "3000"), ("throughput", "751")]),
            Code::InvalidArgument,
        ),
        (
            "st1 below its minimum size",
            create_req("p", 124, &[("type", "st1")]),
            Code::OutOfRange,
        ),
        (
            "gp2 above its maximum size",
            create_req("p", 16 * 1024 + 1, &[("type", "gp2")]),
            Code::OutOfRange,
        ),
        (
            "fstype case",
            create_req("p", 1, &[("csi.storage.k8s.io/fstype", "EXT4")]),
            Code::InvalidArgument,
        ),
        (
            "reserved tag",
            create_req("p", 1, &[("tagSpecification_1", "CSIVolumeName=x")]),
            Code::InvalidArgument,
        ),
        (
            "bad template",
            create_req("p", 1, &[("tagSpecification_1", "owner={{ .PVCName")]),
            Code::InvalidArgument,
        ),
        (
            "disallowed template function",
            create_req("p", 1, &[("tagSpecification_1", "a={{ printf \"%s\" .PVCName }}")]),
            Code::InvalidArgument,
        ),
    ];
    let mut no_caps = create_req("p", 1, &[]);
    no_caps.volume_capabilities.clear();
    cases.push(("no capability", no_caps, Code::InvalidArgument));
    let mut both = create_req("p", 1, &[]);
    both.volume_capabilities.push(block_cap(Mode::SingleNodeWriter));
    cases.push(("mount and block both", both, Code::InvalidArgument));
    let mut no_mode = create_req("p", 1, &[]);
    no_mode.volume_capabilities[0].access_mode = None;
    cases.push(("no access mode", no_mode, Code::InvalidArgument));
    let mut limit = create_req("p", 10, &[]);
    limit.capacity_range = Some(CapacityRange {
        required_bytes: 10 * GIB,
        limit_bytes: 5 * GIB,
    });
    cases.push(("limit below required", limit, Code::InvalidArgument));
    let mut fractional = create_req("p", 1, &[]);
    fractional.capacity_range = Some(CapacityRange {
        required_bytes: GIB + 1,
        limit_bytes: GIB + 2,
    });
    cases.push(("whole GiB above limit", fractional, Code::OutOfRange));
    let mut multi = create_req("p", 10, &[("type", "gp3")]);
    multi.volume_capabilities = vec![block_cap(Mode::MultiNodeMultiWriter)];
    cases.push(("multi-attach gp3", multi, Code::InvalidArgument));
    let mut multi_mount = create_req("p", 10, &[("type", "io2"), ("iops", "1000")]);
    multi_mount.volume_capabilities = vec![mount_cap(Mode::MultiNodeMultiWriter)];
    cases.push(("multi-attach filesystem", multi_mount, Code::InvalidArgument));
    let mut no_snap = create_req("p", 10, &[]);
    no_snap.volume_content_source = Some(from_snapshot("snap-0123456789abcdef0"));
    cases.push(("missing source snapshot", no_snap, Code::NotFound));
    let mut traversal = create_req("p", 10, &[]);
    traversal.volume_content_source = Some(from_volume("../../etc/passwd"));
    cases.push(("source volume id with ../", traversal, Code::NotFound));
    let mut mars = create_req("p", 10, &[]);
    mars.accessibility_requirements = Some(TopologyRequirement {
        requisite: vec![topology(&[("topology.kubernetes.io/zone", "mars-1a")])],
        preferred: vec![],
    });
    cases.push(("no satisfiable zone", mars, Code::ResourceExhausted));

    for (what, req, want) in cases {
        let got = d.controller.create_volume(req).await;
        match got {
            Ok(v) => panic!("{what}: expected {want:?}, created {:?}", v.into_inner()),
            Err(s) => {
                assert_eq!(s.code(), want, "{what}: {}", s.message());
                assert!(!s.message().is_empty(), "{what}: empty message");
            }
        }
    }
    let listed = d
        .controller
        .list_volumes(ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.entries.is_empty(), "bad requests created {:?}", listed.entries);
    assert_eq!(std::fs::read_dir(d.data_dir().join("volumes")).unwrap().count(), 0);
}

#[tokio::test]
async fn limits_just_inside_succeed_and_iops_above_maximum_are_capped() {
    let mut d = Driver::start(&[]).await;
    let ok = [
        ("st1 at its minimum", create_req("a", 125, &[("type", "st1")])),
        ("gp3 at 1 GiB", create_req("b", 1, &[("type", "gp3")])),
        (
            "gp3 3000 iops",
            create_req("c", 10, &[("type", "gp3"), ("iops", "3000"), ("throughput", "750")]),
        ),
        (
            "io2 capped",
            create_req("d", 10, &[("type", "io2"), ("iops", "1000000")]),
        ),
        (
            "io1 per GB",
            create_req("e", 10, &[("type", "io1"), ("iopsPerGB", "100")]),
        ),
        (
            "auto increase",
            create_req(
                "f",
                4,
                &[
                    ("type", "io2"),
                    ("iopsPerGB", "10"),
                    ("allowAutoIOPSPerGBIncrease", "true"),
                ],
            ),
        ),
    ];
    for (what, req) in ok {
        let r = d.controller.create_volume(req).await;
        assert!(r.is_ok(), "{what}: {r:?}");
    }
    // Without the auto increase, 40 IOPS is below io2's minimum of 100.
    let low = create_req("g", 4, &[("type", "io2"), ("iopsPerGB", "10")]);
    assert_eq!(code(d.controller.create_volume(low).await), Code::InvalidArgument);
    let page = d
        .controller
        .list_volumes(ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.entries.len(), 6);
}

#[tokio::test]
async fn topology_preferred_zone_wins_and_is_reported() {
    let mut d = Driver::start(&[]).await;
    let mut req = create_req("pvc-topo", 1, &[]);
    req.accessibility_requirements = Some(TopologyRequirement {
        requisite: vec![
            topology(&[("topology.ebs.csi.aws.com/zone", "local-1a")]),
            topology(&[("topology.kubernetes.io/zone", "local-1b")]),
        ],
        preferred: vec![topology(&[("topology.kubernetes.io/zone", "local-1b")])],
    });
    let v = d
        .controller
        .create_volume(req)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let seg = &v.accessible_topology[0].segments;
    assert_eq!(
        seg.get("topology.kubernetes.io/zone").map(String::as_str),
        Some("local-1b")
    );
    assert_eq!(
        seg.get("topology.ebs.csi.aws.com/zone").map(String::as_str),
        Some("local-1b")
    );

    // A zone id selects its zone too.
    let mut by_id = create_req("pvc-zone-id", 1, &[]);
    by_id.accessibility_requirements = Some(TopologyRequirement {
        requisite: vec![topology(&[("topology.k8s.aws/zone-id", "lcl1-az3")])],
        preferred: vec![],
    });
    let v = d
        .controller
        .create_volume(by_id)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(
        v.accessible_topology[0]
            .segments
            .get("topology.kubernetes.io/zone")
            .map(String::as_str),
        Some("local-1c")
    );
}

#[tokio::test]
async fn publish_attaches_a_real_loop_device_and_unpublish_detaches_it() {
    let mut d = Driver::start(&[]).await;
    d.register_node("node-2", ZONE, None).await;
    let v = d
        .controller
        .create_volume(create_req("pvc-attach", 2, &[]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let id = v.volume_id.clone();

    let ctx = d
        .controller
        .controller_publish_volume(publish_req(&id, NODE))
        .await
        .unwrap()
        .into_inner()
        .publish_context;
    let device = ctx.get("devicePath").cloned().expect("devicePath in publish_context");
    let loops = d.loop_devices();
    assert_eq!(loops.len(), 1, "{loops:?}");
    assert_eq!(loops[0].0.display().to_string(), device);
    assert_eq!(loops[0].1, d.volume_file(&id));

    // The same call again: the same answer, no second device.
    let again = d
        .controller
        .controller_publish_volume(publish_req(&id, NODE))
        .await
        .unwrap()
        .into_inner()
        .publish_context;
    assert_eq!(again.get("devicePath"), Some(&device));
    assert_eq!(d.loop_devices().len(), 1);

    // Elsewhere, unknown node, unknown volume, and deleting while attached.
    assert_eq!(
        code(d.controller.controller_publish_volume(publish_req(&id, "node-2")).await),
        Code::FailedPrecondition
    );
    assert_eq!(
        code(
            d.controller
                .controller_publish_volume(publish_req(&id, "i-nowhere"))
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            d.controller
                .controller_publish_volume(publish_req("vol-0123456789abcdef0", NODE))
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            d.controller
                .controller_publish_volume(publish_req("garbage/../x", NODE))
                .await
        ),
        Code::NotFound
    );
    let mut no_cap = publish_req(&id, NODE);
    no_cap.volume_capability = None;
    assert_eq!(
        code(d.controller.controller_publish_volume(no_cap).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(d.controller.controller_publish_volume(publish_req(&id, "")).await),
        Code::InvalidArgument
    );
    let del = DeleteVolumeRequest {
        volume_id: id.clone(),
        ..Default::default()
    };
    assert_eq!(
        code(d.controller.delete_volume(del.clone()).await),
        Code::FailedPrecondition
    );

    let status = d
        .controller
        .controller_get_volume(ControllerGetVolumeRequest { volume_id: id.clone() })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(status.published_node_ids, vec![NODE.to_string()]);

    d.controller
        .controller_unpublish_volume(unpublish_req(&id, NODE))
        .await
        .unwrap();
    assert!(d.loop_devices().is_empty());
    d.controller
        .controller_unpublish_volume(unpublish_req(&id, NODE))
        .await
        .unwrap();
    d.controller
        .controller_unpublish_volume(unpublish_req("vol-0123456789abcdef0", NODE))
        .await
        .unwrap();

    // Now node-2 may have it.
    d.controller
        .controller_publish_volume(publish_req(&id, "node-2"))
        .await
        .unwrap();
    d.controller
        .controller_unpublish_volume(unpublish_req(&id, ""))
        .await
        .unwrap();
    assert!(d.loop_devices().is_empty());

    d.controller.delete_volume(del.clone()).await.unwrap();
    assert!(!d.volume_file(&id).exists());
    d.controller.delete_volume(del).await.unwrap();
    d.controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: "not-a-volume".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        code(d.controller.delete_volume(DeleteVolumeRequest::default()).await),
        Code::InvalidArgument
    );
}

#[tokio::test]
async fn attach_limit_and_zone_are_enforced() {
    let mut d = Driver::start(&[]).await;
    d.register_node("small", ZONE, Some(1)).await;
    d.register_node("far", "local-1c", None).await;
    let a = d
        .controller
        .create_volume(create_req("a", 1, &[]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let b = d
        .controller
        .create_volume(create_req("b", 1, &[]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    d.controller
        .controller_publish_volume(publish_req(&a.volume_id, "small"))
        .await
        .unwrap();
    assert_eq!(
        code(
            d.controller
                .controller_publish_volume(publish_req(&b.volume_id, "small"))
                .await
        ),
        Code::ResourceExhausted
    );
    assert_eq!(
        code(
            d.controller
                .controller_publish_volume(publish_req(&b.volume_id, "far"))
                .await
        ),
        Code::FailedPrecondition
    );
    d.controller
        .controller_unpublish_volume(unpublish_req(&a.volume_id, "small"))
        .await
        .unwrap();
    d.controller
        .controller_publish_volume(publish_req(&b.volume_id, "small"))
        .await
        .unwrap();
    d.controller
        .controller_unpublish_volume(unpublish_req(&b.volume_id, "small"))
        .await
        .unwrap();
}

#[tokio::test]
async fn io2_multi_attach_shares_one_device_across_nodes() {
    let mut d = Driver::start(&[]).await;
    d.register_node("node-2", ZONE, None).await;
    let mut req = create_req("shared", 10, &[("type", "io2"), ("iops", "1000")]);
    req.volume_capabilities = vec![block_cap(Mode::MultiNodeMultiWriter)];
    let v = d
        .controller
        .create_volume(req)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let mut p = publish_req(&v.volume_id, NODE);
    p.volume_capability = Some(block_cap(Mode::MultiNodeMultiWriter));
    let one = d
        .controller
        .controller_publish_volume(p.clone())
        .await
        .unwrap()
        .into_inner()
        .publish_context;
    p.node_id = "node-2".into();
    let two = d
        .controller
        .controller_publish_volume(p)
        .await
        .unwrap()
        .into_inner()
        .publish_context;
    assert_eq!(one.get("devicePath"), two.get("devicePath"));
    d.controller
        .controller_unpublish_volume(unpublish_req(&v.volume_id, NODE))
        .await
        .unwrap();
    assert_eq!(d.loop_devices().len(), 1, "still attached to node-2");
    d.controller
        .controller_unpublish_volume(unpublish_req(&v.volume_id, "node-2"))
        .await
        .unwrap();
    assert!(d.loop_devices().is_empty());
}

#[tokio::test]
async fn snapshots_restore_and_clone_carry_the_data() {
    use std::io::{Seek, SeekFrom, Write};
    let mut d = Driver::start(&[]).await;
    let v = d
        .controller
        .create_volume(create_req("src", 2, &[]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let payload = b"hello from the source volume";
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(d.volume_file(&v.volume_id))
            .unwrap();
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(payload).unwrap();
    }
    let snap_req = CreateSnapshotRequest {
        source_volume_id: v.volume_id.clone(),
        name: "snapshot-1".into(),
        parameters: params(&[
            ("csi.storage.k8s.io/volumesnapshot/name", "snap"),
            ("tagSpecification_1", "team=storage"),
        ]),
        ..Default::default()
    };
    let s = d
        .controller
        .create_snapshot(snap_req.clone())
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    assert!(s.snapshot_id.starts_with("snap-") && s.snapshot_id.len() == 22);
    assert!(s.ready_to_use);
    assert_eq!(s.size_bytes, 2 * GIB);
    assert_eq!(s.source_volume_id, v.volume_id);
    let again = d
        .controller
        .create_snapshot(snap_req.clone())
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    assert_eq!(again.snapshot_id, s.snapshot_id);
    let other = d
        .controller
        .create_volume(create_req("other", 1, &[]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let mut clash = snap_req.clone();
    clash.source_volume_id = other.volume_id.clone();
    assert_eq!(code(d.controller.create_snapshot(clash).await), Code::AlreadyExists);
    let mut missing = snap_req.clone();
    missing.name = "snapshot-2".into();
    missing.source_volume_id = "vol-0123456789abcdef0".into();
    assert_eq!(code(d.controller.create_snapshot(missing).await), Code::NotFound);

    // Restore into a larger volume, and clone the source: both hold the payload.
    let mut restore = create_req("restored", 4, &[]);
    restore.volume_content_source = Some(from_snapshot(&s.snapshot_id));
    let r = d
        .controller
        .create_volume(restore)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(r.capacity_bytes, 4 * GIB);
    assert!(r.content_source.is_some());
    let mut clone = create_req("clone", 1, &[]);
    clone.volume_content_source = Some(from_volume(&v.volume_id));
    let c = d
        .controller
        .create_volume(clone)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(c.capacity_bytes, 2 * GIB, "a clone is at least as large as its source");
    for id in [&r.volume_id, &c.volume_id] {
        use std::io::Read;
        let mut f = std::fs::File::open(d.volume_file(id)).unwrap();
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        let mut bytes = vec![0; payload.len()];
        f.read_exact(&mut bytes).unwrap();
        assert_eq!(bytes, payload, "{id}");
    }

    // Listing: by id, by source, paged.
    let by_id = d
        .controller
        .list_snapshots(ListSnapshotsRequest {
            snapshot_id: s.snapshot_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_id.entries.len(), 1);
    let none = d
        .controller
        .list_snapshots(ListSnapshotsRequest {
            snapshot_id: "snap-0123456789abcdef0".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(none.entries.is_empty());
    d.controller
        .create_snapshot(CreateSnapshotRequest {
            source_volume_id: other.volume_id.clone(),
            name: "snapshot-3".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let by_source = d
        .controller
        .list_snapshots(ListSnapshotsRequest {
            source_volume_id: other.volume_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_source.entries.len(), 1);
    let first = d
        .controller
        .list_snapshots(ListSnapshotsRequest {
            max_entries: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.entries.len(), 1);
    assert!(!first.next_token.is_empty());
    let second = d
        .controller
        .list_snapshots(ListSnapshotsRequest {
            max_entries: 1,
            starting_token: first.next_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.entries.len(), 1);
    assert!(second.next_token.is_empty());
    assert_ne!(
        first.entries[0].snapshot.as_ref().unwrap().snapshot_id,
        second.entries[0].snapshot.as_ref().unwrap().snapshot_id
    );
    assert_eq!(
        code(
            d.controller
                .list_snapshots(ListSnapshotsRequest {
                    starting_token: "bogus".into(),
                    ..Default::default()
                })
                .await
        ),
        Code::Aborted
    );

    let del = DeleteSnapshotRequest {
        snapshot_id: s.snapshot_id.clone(),
        ..Default::default()
    };
    d.controller.delete_snapshot(del.clone()).await.unwrap();
    d.controller.delete_snapshot(del).await.unwrap();
    assert_eq!(
        code(d.controller.delete_snapshot(DeleteSnapshotRequest::default()).await),
        Code::InvalidArgument
    );
}

#[tokio::test]
async fn expand_grows_the_image_and_the_attached_device() {
    let mut d = Driver::start(&[]).await;
    let v = d
        .controller
        .create_volume(create_req("grow", 1, &[]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let id = v.volume_id.clone();
    let dev = d
        .controller
        .controller_publish_volume(publish_req(&id, NODE))
        .await
        .unwrap()
        .into_inner()
        .publish_context["devicePath"]
        .clone();
    let expand = |gib: i64, block: bool| ControllerExpandVolumeRequest {
        volume_id: id.clone(),
        capacity_range: Some(CapacityRange {
            required_bytes: gib * GIB,
            limit_bytes: 0,
        }),
        volume_capability: Some(if block {
            block_cap(Mode::SingleNodeWriter)
        } else {
            rwo()
        }),
        ..Default::default()
    };
    let r = d
        .controller
        .controller_expand_volume(expand(3, false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.capacity_bytes, 3 * GIB);
    assert!(r.node_expansion_required);
    assert_eq!(std::fs::metadata(d.volume_file(&id)).unwrap().len(), 3 << 30);
    let sectors: u64 = std::fs::read_to_string(format!("/sys/class/block/{}/size", dev.trim_start_matches("/dev/")))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(sectors * 512, 3 << 30, "the loop device sees the new size");
    // Smaller asks never shrink; block volumes need no node step.
    let r = d
        .controller
        .controller_expand_volume(expand(2, true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.capacity_bytes, 3 * GIB);
    assert!(!r.node_expansion_required);
    let mut bad = expand(4, false);
    bad.volume_id = "vol-0123456789abcdef0".into();
    assert_eq!(code(d.controller.controller_expand_volume(bad).await), Code::NotFound);
    let mut too_big = expand(0, false);
    too_big.capacity_range = Some(CapacityRange {
        required_bytes: 70_000 * GIB,
        limit_bytes: 0,
    });
    assert_eq!(
        code(d.controller.controller_expand_volume(too_big).await),
        Code::OutOfRange
    );
    // 17 TiB is within gp3's 64 TiB, but ext4 (where the local store lives here) holds no
    // file above 16 TiB: the request's size is what cannot be served, not a fault of ours.
    let mut past_ext4 = expand(17 * 1024, false);
    past_ext4.volume_id = id.clone();
    let answer = d.controller.controller_expand_volume(past_ext4).await;
    if store_is_ext4(&d) {
        let err = answer.unwrap_err();
        assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
        let created = d.controller.create_volume(create_req("huge", 17 * 1024, &[])).await;
        assert_eq!(code(created), Code::OutOfRange);
    } else {
        assert_ne!(code(answer), Code::Internal);
    }
    d.controller
        .controller_unpublish_volume(unpublish_req(&id, NODE))
        .await
        .unwrap();
}

fn store_is_ext4(d: &Driver) -> bool {
    nix::sys::statfs::statfs(d.dir.path()).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::EXT4_SUPER_MAGIC)
}

#[tokio::test]
async fn a_second_publish_with_the_other_read_only_flag_is_already_exists() {
    let mut d = Driver::start(&[]).await;
    let id = d
        .controller
        .create_volume(create_req("pvc-ro", 1, &[]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
        .volume_id;
    let publish = |read_only: bool| ControllerPublishVolumeRequest {
        readonly: read_only,
        ..publish_req(&id, NODE)
    };
    d.controller.controller_publish_volume(publish(false)).await.unwrap();
    d.controller.controller_publish_volume(publish(false)).await.unwrap();
    let err = d.controller.controller_publish_volume(publish(true)).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert!(err.message().contains("read-write"), "{}", err.message());
    d.controller
        .controller_unpublish_volume(unpublish_req(&id, NODE))
        .await
        .unwrap();
    let ctx = d
        .controller
        .controller_publish_volume(publish(true))
        .await
        .unwrap()
        .into_inner()
        .publish_context;
    assert_eq!(ctx.get("readonly").map(String::as_str), Some("true"));
    d.controller.controller_publish_volume(publish(true)).await.unwrap();
    assert_eq!(
        code(d.controller.controller_publish_volume(publish(false)).await),
        Code::AlreadyExists
    );
    d.controller
        .controller_unpublish_volume(unpublish_req(&id, NODE))
        .await
        .unwrap();
}

#[tokio::test]
async fn modify_changes_type_and_performance_within_limits() {
    let mut d = Driver::start(&[]).await;
    let v = d
        .controller
        .create_volume(create_req("mod", 100, &[("type", "gp2")]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let modify = |pairs: &[(&str, &str)]| ControllerModifyVolumeRequest {
        volume_id: v.volume_id.clone(),
        mutable_parameters: params(pairs),
        ..Default::default()
    };
    d.controller
        .controller_modify_volume(modify(&[("type", "gp3"), ("iops", "4000"), ("throughput", "250")]))
        .await
        .unwrap();
    d.controller
        .controller_modify_volume(modify(&[("tagSpecification_1", "cost-center=42")]))
        .await
        .unwrap();
    assert_eq!(
        code(
            d.controller
                .controller_modify_volume(modify(&[("throughput", "5000")]))
                .await
        ),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            d.controller
                .controller_modify_volume(modify(&[("colour", "blue")]))
                .await
        ),
        Code::InvalidArgument
    );
    let mut missing = modify(&[("iops", "4000")]);
    missing.volume_id = "vol-0123456789abcdef0".into();
    assert_eq!(
        code(d.controller.controller_modify_volume(missing).await),
        Code::NotFound
    );
}

#[tokio::test]
async fn list_volumes_pages_and_rejects_foreign_tokens() {
    let mut d = Driver::start(&[]).await;
    let mut made = HashSet::new();
    for n in 0..5 {
        let v = d
            .controller
            .create_volume(create_req(&format!("v{n}"), 1, &[]))
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        made.insert(v.volume_id);
    }
    let mut seen = HashSet::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = d
            .controller
            .list_volumes(ListVolumesRequest {
                max_entries: 2,
                starting_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.entries.len() <= 2);
        for e in page.entries {
            assert!(seen.insert(e.volume.unwrap().volume_id), "a volume listed twice");
        }
        if page.next_token.is_empty() {
            break;
        }
        token = page.next_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, made);
    assert_eq!(
        code(
            d.controller
                .list_volumes(ListVolumesRequest {
                    max_entries: 0,
                    starting_token: "nope".into()
                })
                .await
        ),
        Code::Aborted
    );
    assert_eq!(
        code(
            d.controller
                .list_volumes(ListVolumesRequest {
                    max_entries: -1,
                    starting_token: String::new()
                })
                .await
        ),
        Code::InvalidArgument
    );
}

#[tokio::test]
async fn volume_health_reports_a_missing_image() {
    let mut d = Driver::start(&[]).await;
    let v = d
        .controller
        .create_volume(create_req("cond", 1, &[]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let _healthy = d.controller.create_volume(create_req("fine", 1, &[])).await.unwrap();
    let get = ControllerGetVolumeHealthRequest {
        volume_id: v.volume_id.clone(),
        ..Default::default()
    };
    let h = d
        .controller
        .controller_get_volume_health(get.clone())
        .await
        .unwrap()
        .into_inner()
        .volume_health
        .unwrap();
    assert_eq!(h.volume_id, v.volume_id);
    assert!(h.health_statuses.is_empty(), "{h:?}");
    std::fs::remove_file(d.volume_file(&v.volume_id)).unwrap();
    let h = d
        .controller
        .controller_get_volume_health(get)
        .await
        .unwrap()
        .into_inner()
        .volume_health
        .unwrap();
    assert_eq!(h.health_statuses.len(), 1);
    assert_eq!(h.health_statuses[0].status, VolumeHealthErrorType::Inaccessible as i32);
    assert!(h.health_statuses[0].message.contains(&v.volume_id));
    let listed = d
        .controller
        .controller_list_volume_health(ControllerListVolumeHealthRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.entries.len(), 1, "only the unhealthy volume is listed");
    assert_eq!(listed.entries[0].volume_id, v.volume_id);
    assert_eq!(
        code(
            d.controller
                .controller_get_volume(ControllerGetVolumeRequest {
                    volume_id: "vol-0123456789abcdef0".into()
                })
                .await
        ),
        Code::NotFound
    );
}

#[tokio::test]
async fn get_capacity_and_capabilities() {
    let mut d = Driver::start(&[]).await;
    let cap = d
        .controller
        .get_capacity(GetCapacityRequest {
            parameters: params(&[("type", "gp3")]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(cap.available_capacity > 0);
    assert_eq!(cap.minimum_volume_size, Some(GIB));
    let elsewhere = d
        .controller
        .get_capacity(GetCapacityRequest {
            accessible_topology: Some(topology(&[("topology.kubernetes.io/zone", "mars-1a")])),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(elsewhere.available_capacity, 0);
    assert_eq!(
        code(
            d.controller
                .get_capacity(GetCapacityRequest {
                    parameters: params(&[("type", "nope")]),
                    ..Default::default()
                })
                .await
        ),
        Code::InvalidArgument
    );

    use controller_service_capability::rpc::Type;
    let caps = d
        .controller
        .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    let have: HashSet<i32> = caps
        .capabilities
        .iter()
        .filter_map(|c| match &c.r#type {
            Some(controller_service_capability::Type::Rpc(r)) => Some(r.r#type),
            _ => None,
        })
        .collect();
    for t in [
        Type::CreateDeleteVolume,
        Type::PublishUnpublishVolume,
        Type::CreateDeleteSnapshot,
        Type::CloneVolume,
        Type::ExpandVolume,
        Type::ModifyVolume,
        Type::ListVolumes,
        Type::GetCapacity,
    ] {
        assert!(have.contains(&(t as i32)), "{t:?} missing");
    }
}

#[tokio::test]
async fn hostile_names_and_ids_never_reach_the_filesystem() {
    let mut d = Driver::start(&[]).await;
    let v = d
        .controller
        .create_volume(create_req("../../escape", 1, &[]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(
        std::fs::read_dir(d.data_dir().join("volumes"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>(),
        vec![std::ffi::OsString::from(format!("{}.img", v.volume_id))]
    );
    assert!(!d.dir.path().join("escape").exists() && !d.data_dir().join("escape").exists());

    let long = format!("vol-{}", "f".repeat(10 * 1024));
    for id in [
        long.as_str(),
        "../volumes/x",
        "vol-../../etc",
        "\u{0}",
        "vol-0123456789ABCDEF0",
    ] {
        assert_eq!(
            code(d.controller.controller_publish_volume(publish_req(id, NODE)).await),
            Code::NotFound,
            "{id:.40}"
        );
        let get = ControllerGetVolumeRequest { volume_id: id.into() };
        assert_eq!(code(d.controller.controller_get_volume(get).await), Code::NotFound);
        let expand = ControllerExpandVolumeRequest {
            volume_id: id.into(),
            capacity_range: Some(CapacityRange {
                required_bytes: 2 * GIB,
                limit_bytes: 0,
            }),
            ..Default::default()
        };
        assert_eq!(
            code(d.controller.controller_expand_volume(expand).await),
            Code::NotFound
        );
        let snap = CreateSnapshotRequest {
            source_volume_id: id.into(),
            name: "s".into(),
            ..Default::default()
        };
        assert_eq!(code(d.controller.create_snapshot(snap).await), Code::NotFound);
        d.controller
            .delete_volume(DeleteVolumeRequest {
                volume_id: id.into(),
                ..Default::default()
            })
            .await
            .unwrap();
        d.controller
            .controller_unpublish_volume(unpublish_req(id, NODE))
            .await
            .unwrap();
        d.controller
            .delete_snapshot(DeleteSnapshotRequest {
                snapshot_id: id.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let tags = params(&[("tagSpecification_1", &format!("k={}", "v".repeat(10 * 1024)))]);
    let mut req = create_req("big-tag", 1, &[]);
    req.parameters = tags;
    assert_eq!(code(d.controller.create_volume(req).await), Code::InvalidArgument);
    // The volume made above is still the only one.
    assert_eq!(
        d.controller
            .list_volumes(ListVolumesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .entries
            .len(),
        1
    );
}

#[tokio::test]
async fn the_capability_filesystem_and_creation_time_attributes_class_count() {
    use ebs_csi::csi::volume_capability::{AccessType, MountVolume};
    let mut d = Driver::start(&[]).await;
    let xfs = |name: &str, pairs: &[(&str, &str)]| {
        let mut r = create_req(name, 10, pairs);
        r.volume_capabilities[0].access_type = Some(AccessType::Mount(MountVolume {
            fs_type: "xfs".into(),
            ..Default::default()
        }));
        r
    };
    // mkfs options are checked against the capability's filesystem, where the provisioner puts it.
    d.controller
        .create_volume(xfs("x1", &[("blockSize", "1024")]))
        .await
        .unwrap();
    assert_eq!(
        code(
            d.controller
                .create_volume(xfs("x2", &[("ext4EncryptionSupport", "true")]))
                .await
        ),
        Code::InvalidArgument
    );
    // Sizes mkfs.xfs refuses for its CRC-enabled filesystems are refused here, not by a failed
    // mkfs at NodeStageVolume (which was INTERNAL).
    for (name, pairs) in [
        ("x3", &[("blockSize", "512")][..]),
        ("x4", &[("inodeSize", "256")]),
        ("x5", &[("blockSize", "1024"), ("inodeSize", "1024")]),
    ] {
        assert_eq!(
            code(d.controller.create_volume(xfs(name, pairs)).await),
            Code::InvalidArgument,
            "{pairs:?}"
        );
    }
    // A VolumeAttributesClass named at creation sets the performance from the start.
    let mut r = create_req("vac", 10, &[("type", "gp2")]);
    r.mutable_parameters = params(&[("type", "io2"), ("iops", "500")]);
    d.controller.create_volume(r.clone()).await.unwrap();
    // … so the same name with another class is a different volume.
    r.mutable_parameters = params(&[("type", "gp3")]);
    assert_eq!(code(d.controller.create_volume(r).await), Code::AlreadyExists);
}
