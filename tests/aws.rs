//! The aws backend through the real gRPC server, against moto's EC2 server (started per test on
//! 127.0.0.1). What moto cannot play — lost responses and throttling, instance metadata, Nitro
//! NVMe devices — is played by the small stand-ins in support/aws.rs and support/imds.rs, each named as such.
#![cfg(feature = "aws")]

mod support;

use std::collections::{HashMap, HashSet};

use ebs_csi::csi::volume_capability::access_mode::Mode;
use ebs_csi::csi::*;
use support::aws::*;
use support::imds::Imds;
use support::*;
use tonic::Code;

#[tokio::test]
async fn controller_life_cycle_against_moto() {
    let moto = Moto::start();
    let ec2 = moto.client();
    let instance = moto.instance("m5.large").await;
    let mut d = aws_driver(
        &moto.url,
        &instance,
        &["--extra-tags", "team=storage", "--k8s-tag-cluster-id", "dev"],
    )
    .await;

    let req = create_in_zone(
        "pvc-aws-1",
        10,
        &[
            ("type", "gp3"),
            ("iops", "4000"),
            ("csi.storage.k8s.io/pvc/name", "ebs-claim"),
            ("csi.storage.k8s.io/pvc/namespace", "dev-ns"),
            ("tagSpecification_1", "owner={{ .PVCNamespace | toUpper }}"),
        ],
    );
    let v = d
        .controller
        .create_volume(req.clone())
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert!(v.volume_id.starts_with("vol-"));
    assert_eq!(v.accessible_topology[0].segments["topology.kubernetes.io/zone"], AZ);
    let again = d
        .controller
        .create_volume(req)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(
        again.volume_id, v.volume_id,
        "a repeated CreateVolume returns the same volume"
    );
    assert_eq!(
        code(
            d.controller
                .create_volume(create_in_zone("pvc-aws-1", 20, &[("type", "gp3")]))
                .await
        ),
        Code::AlreadyExists
    );

    // EC2 holds what the StorageClass asked for, with the driver's tags.
    let described = ec2.describe_volumes().volume_ids(&v.volume_id).send().await.unwrap();
    let ev = &described.volumes()[0];
    assert_eq!(ev.size(), Some(10));
    assert_eq!(ev.iops(), Some(4000));
    assert_eq!(ev.volume_type().map(|t| t.as_str()), Some("gp3"));
    let tags: HashMap<_, _> = ev
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned()))
        .collect();
    assert_eq!(tags["CSIVolumeName"], "pvc-aws-1");
    assert_eq!(tags["ebs.csi.aws.com/cluster"], "true");
    assert_eq!(tags["kubernetes.io/cluster/dev"], "owned");
    assert_eq!(tags["kubernetes.io/created-for/pvc/name"], "ebs-claim");
    assert_eq!(tags["team"], "storage");
    assert_eq!(tags["owner"], "DEV-NS");

    // Attach: device names from /dev/xvdaa on; repeats give the same answer.
    let ctx = d
        .controller
        .controller_publish_volume(publish_req(&v.volume_id, &instance))
        .await
        .unwrap()
        .into_inner()
        .publish_context;
    assert_eq!(ctx["devicePath"], "/dev/xvdaa");
    let ctx2 = d
        .controller
        .controller_publish_volume(publish_req(&v.volume_id, &instance))
        .await
        .unwrap()
        .into_inner()
        .publish_context;
    assert_eq!(ctx2["devicePath"], "/dev/xvdaa");
    let w = d
        .controller
        .create_volume(create_in_zone("pvc-aws-2", 1, &[]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let ctx3 = d
        .controller
        .controller_publish_volume(publish_req(&w.volume_id, &instance))
        .await
        .unwrap()
        .into_inner()
        .publish_context;
    assert_eq!(ctx3["devicePath"], "/dev/xvdab");
    let other = moto.instance("m5.large").await;
    assert_eq!(
        code(
            d.controller
                .controller_publish_volume(publish_req(&v.volume_id, &other))
                .await
        ),
        Code::FailedPrecondition
    );
    assert_eq!(
        code(
            d.controller
                .controller_publish_volume(publish_req(&w.volume_id, "i-0123456789abcdef0"))
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            d.controller
                .controller_publish_volume(publish_req("vol-0123456789abcdef0", &instance))
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            d.controller
                .controller_publish_volume(publish_req("../../etc", &instance))
                .await
        ),
        Code::NotFound
    );

    for id in [&v.volume_id, &w.volume_id] {
        d.controller
            .controller_unpublish_volume(unpublish_req(id, &instance))
            .await
            .unwrap();
        d.controller
            .controller_unpublish_volume(unpublish_req(id, &instance))
            .await
            .unwrap();
    }
    let att = ec2.describe_volumes().volume_ids(&v.volume_id).send().await.unwrap();
    assert!(att.volumes()[0].attachments().is_empty(), "detached in EC2");

    // Expand and modify.
    let expand = ControllerExpandVolumeRequest {
        volume_id: v.volume_id.clone(),
        capacity_range: Some(CapacityRange {
            required_bytes: 20 * GIB,
            limit_bytes: 0,
        }),
        volume_capability: Some(rwo()),
        ..Default::default()
    };
    assert_eq!(
        d.controller
            .controller_expand_volume(expand)
            .await
            .unwrap()
            .into_inner()
            .capacity_bytes,
        20 * GIB
    );
    let modify = ControllerModifyVolumeRequest {
        volume_id: v.volume_id.clone(),
        mutable_parameters: params(&[
            ("iops", "6000"),
            ("throughput", "300"),
            ("tagSpecification_1", "tier=gold"),
        ]),
        ..Default::default()
    };
    d.controller.controller_modify_volume(modify).await.unwrap();
    let ev = ec2.describe_volumes().volume_ids(&v.volume_id).send().await.unwrap();
    let ev = &ev.volumes()[0];
    assert_eq!(ev.size(), Some(20));
    assert_eq!(ev.iops(), Some(6000));
    assert!(
        ev.tags()
            .iter()
            .any(|t| t.key() == Some("tier") && t.value() == Some("gold"))
    );

    // Snapshot, restore, list, delete.
    let snap_req = CreateSnapshotRequest {
        source_volume_id: v.volume_id.clone(),
        name: "snapshot-aws".into(),
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
    assert!(s.snapshot_id.starts_with("snap-"));
    let s2 = d
        .controller
        .create_snapshot(snap_req)
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    assert_eq!(s.snapshot_id, s2.snapshot_id);
    let mut restore = create_in_zone("pvc-restored", 30, &[]);
    restore.volume_content_source = Some(from_snapshot(&s.snapshot_id));
    let r = d
        .controller
        .create_volume(restore)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let er = ec2.describe_volumes().volume_ids(&r.volume_id).send().await.unwrap();
    assert_eq!(er.volumes()[0].snapshot_id(), Some(s.snapshot_id.as_str()));
    let listed = d
        .controller
        .list_snapshots(ListSnapshotsRequest {
            source_volume_id: v.volume_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.entries.len(), 1);
    d.controller
        .delete_snapshot(DeleteSnapshotRequest {
            snapshot_id: s.snapshot_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    d.controller
        .delete_snapshot(DeleteSnapshotRequest {
            snapshot_id: s.snapshot_id,
            ..Default::default()
        })
        .await
        .unwrap();

    // Paging: 5 volumes in pages of 2, each once.
    for n in 0..2 {
        d.controller
            .create_volume(create_in_zone(&format!("pvc-page-{n}"), 1, &[]))
            .await
            .unwrap();
    }
    let mut seen = HashSet::new();
    let mut token = String::new();
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
        assert!(page.entries.len() <= 2);
        for e in page.entries {
            assert!(seen.insert(e.volume.unwrap().volume_id));
        }
        if page.next_token.is_empty() {
            break;
        }
        token = page.next_token;
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(
        code(
            d.controller
                .list_volumes(ListVolumesRequest {
                    max_entries: 2,
                    starting_token: "bogus".into()
                })
                .await
        ),
        Code::Aborted
    );

    for id in seen {
        d.controller
            .delete_volume(DeleteVolumeRequest {
                volume_id: id.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        d.controller
            .delete_volume(DeleteVolumeRequest {
                volume_id: id,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    d.controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: "garbage/..".into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn bad_requests_are_refused_before_ec2_is_called() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url, HashMap::new());
    let instance = moto.instance("m5.large").await;
    let mut d = aws_driver(&proxy.url, &instance, &[]).await;
    let before = proxy.actions.lock().unwrap().len();
    let mut mars = create_req("p", 10, &[]);
    mars.accessibility_requirements = Some(topo("mars-1a"));
    assert_eq!(code(d.controller.create_volume(mars).await), Code::ResourceExhausted);
    assert_eq!(
        code(
            d.controller
                .create_volume(create_in_zone(
                    "p",
                    10,
                    &[("type", "io2"), ("iops", "1000"), ("iopsPerGB", "2")]
                ))
                .await
        ),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            d.controller
                .create_volume(create_in_zone("p", 20_000, &[("type", "sc1")]))
                .await
        ),
        Code::OutOfRange
    );
    let mut multi = create_in_zone("p", 10, &[("type", "gp3")]);
    multi.volume_capabilities = vec![block_cap(Mode::MultiNodeMultiWriter)];
    assert_eq!(code(d.controller.create_volume(multi).await), Code::InvalidArgument);
    assert_eq!(
        proxy.actions.lock().unwrap().len(),
        before,
        "no EC2 call for a bad request"
    );
}

#[tokio::test]
async fn a_lost_create_response_and_throttling_make_no_second_volume() {
    let moto = Moto::start();
    let plan = HashMap::from([
        ("CreateVolume", vec![Fault::LoseResponse]),
        ("DescribeVolumes", vec![Fault::Throttle, Fault::ServerError]),
        ("AttachVolume", vec![Fault::Throttle]),
    ]);
    let proxy = FaultProxy::start(&moto.url, plan);
    let instance = moto.instance("m5.large").await;
    let mut d = aws_driver(&proxy.url, &instance, &[]).await;
    let v = d
        .controller
        .create_volume(create_in_zone("pvc-lost", 5, &[]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let found = moto
        .client()
        .describe_volumes()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:CSIVolumeName")
                .values("pvc-lost")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        found.volumes().len(),
        1,
        "the lost response did not lead to a second volume"
    );
    assert_eq!(found.volumes()[0].volume_id(), Some(v.volume_id.as_str()));
    let ctx = d
        .controller
        .controller_publish_volume(publish_req(&v.volume_id, &instance))
        .await
        .unwrap()
        .into_inner()
        .publish_context;
    assert!(ctx["devicePath"].starts_with("/dev/xvd"));
    assert!(proxy.count("AttachVolume") >= 2, "the throttled attach was retried");
}

/// What the describes of 50 concurrent create+attach are guaranteed to be, whatever the
/// scheduling: how many asks fall into one 20 ms batch window is not (batch.rs's tests close
/// the windows themselves to check that asks made together share one call).
#[tokio::test]
async fn fifty_concurrent_provisions_share_their_describes() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url, HashMap::new());
    let instances = [moto.instance("m7i.large").await, moto.instance("m7i.large").await];
    let d = aws_driver(&proxy.url, &instances[0], &[]).await;
    let mut calls = Vec::new();
    for n in 0..50 {
        let mut c = d.controller.clone();
        let node = instances[n % 2].clone();
        calls.push(tokio::spawn(async move {
            let v = c
                .create_volume(create_in_zone(&format!("pvc-many-{n}"), 1, &[]))
                .await?
                .into_inner()
                .volume
                .unwrap();
            c.controller_publish_volume(publish_req(&v.volume_id, &node)).await?;
            Ok::<_, tonic::Status>(v.volume_id)
        }));
    }
    let mut ids = HashSet::new();
    for c in calls {
        ids.insert(c.await.unwrap().unwrap());
    }
    assert_eq!(ids.len(), 50);
    assert_eq!(proxy.count("CreateVolume"), 50);
    assert_eq!(proxy.count("AttachVolume"), 50);

    // Every DescribeVolumes is a batch: the volume-id filter, each id at most once.
    let batches = proxy.filter_values("DescribeVolumes", "volume-id");
    let mut asks: HashMap<String, usize> = HashMap::new();
    for b in &batches {
        let b = b
            .as_ref()
            .expect("a DescribeVolumes that did not go through the batcher");
        assert!(!b.is_empty());
        assert_eq!(
            b.iter().collect::<HashSet<_>>().len(),
            b.len(),
            "an id twice in one call: {b:?}"
        );
        for id in b {
            *asks.entry(id.clone()).or_default() += 1;
        }
    }
    // And each volume is asked about once per step that needs it, whoever shares the call:
    // publish's look-up and its wait for `attached` (moto answers AttachVolume with
    // `attaching`, then describes it attached), plus create's wait only when CreateVolume's
    // answer was not already `available`.
    assert_eq!(
        asks.keys().cloned().collect::<HashSet<_>>(),
        ids,
        "only these volumes were described"
    );
    for (id, n) in &asks {
        assert!((2..=3).contains(n), "volume {id} was described {n} times");
    }

    // Each instance's device names are read once, by one DescribeInstances shared by all the
    // first attaches to it (single flight), then kept: 50 attaches to 2 new instances ask
    // about each instance exactly once, in one or two calls.
    let reads = proxy.filter_values("DescribeInstances", "instance-id");
    let mut read: Vec<String> = reads
        .iter()
        .flat_map(|r| {
            r.clone()
                .expect("a DescribeInstances that did not go through the batcher")
        })
        .collect();
    read.sort();
    let mut expected = instances.to_vec();
    expected.sort();
    assert_eq!(read, expected, "each instance described once, in {} calls", reads.len());
    println!(
        "EC2 calls for 50 create+attach: DescribeVolumes {} for {} asks, DescribeInstances {}",
        batches.len(),
        asks.values().sum::<usize>(),
        reads.len()
    );
}

#[tokio::test]
async fn imds_gives_the_node_its_identity() {
    let imds = Imds::start(
        HashMap::from([
            ("instance-id", "i-0abcdef0123456789"),
            ("placement/availability-zone", "us-east-1b"),
            ("placement/region", "us-east-1"),
            ("instance-type", "m5.large"),
            ("network/interfaces/macs/", "0e:00:00:00:00:01/\n0e:00:00:00:00:02/"),
            ("block-device-mapping/", "ami\nroot"),
        ]),
        true,
    );
    let mut d = Driver::start_custom(
        &["--backend", "aws", "--mode", "node"],
        &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url.as_str())],
    )
    .await;
    let info = d.node.node_get_info(NodeGetInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.node_id, "i-0abcdef0123456789");
    assert_eq!(
        info.accessible_topology.unwrap().segments["topology.ebs.csi.aws.com/zone"],
        "us-east-1b"
    );
    assert_eq!(
        info.max_volumes_per_node, 25,
        "28 Nitro slots less the root volume and two ENIs"
    );

    // A hop limit of 1 swallows the token response: the node says what to do.
    let silent = Imds::start(HashMap::new(), false);
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ebs-csi"))
        .args(["serve", "--backend", "aws", "--mode", "node", "--endpoint"])
        .arg(format!("unix://{}/s.sock", dir.path().display()))
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &silent.url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("hop limit") && stderr.contains("--node-id"), "{stderr}");
}

#[tokio::test]
async fn nvme_discovery_trusts_serials_not_links() {
    let scratch = tempfile::Builder::new().prefix("ebs-csi-test-nvme").tempdir().unwrap();
    let tree = NvmeTree::new(scratch.path());
    let volume = "vol-0f00dfeedbeef1234";
    let serial = "vol0f00dfeedbeef1234";
    let real = Loop::new(scratch.path(), "real.img", 1);
    let decoy = Loop::new(scratch.path(), "decoy.img", 1);
    tree.serial(&real.device, serial);
    tree.serial(&decoy.device, "vol0000000000000bad");
    // udev's link for the volume points at the decoy: the serial must win.
    tree.link(serial, &decoy.device);
    let mut d = tree.node(&[], &[]).await;
    let staging = d.staging_path(volume);
    let stage = |ctx: HashMap<String, String>| NodeStageVolumeRequest {
        volume_id: volume.into(),
        publish_context: ctx,
        staging_target_path: staging.clone(),
        volume_capability: Some(rwo()),
        ..Default::default()
    };
    let hint = HashMap::from([("devicePath".to_string(), "/dev/xvdaa".to_string())]);
    d.node.node_stage_volume(stage(hint.clone())).await.unwrap();
    let blkid = |dev: &std::path::Path| {
        let out = std::process::Command::new("blkid")
            .args(["-p", "-o", "value", "-s", "TYPE"])
            .arg(dev)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(
        blkid(&real.device),
        "ext4",
        "the device with the volume's serial was formatted"
    );
    assert_eq!(blkid(&decoy.device), "", "the decoy was left alone");
    let staged = mounts_under(d.dir.path());
    assert_eq!(staged.len(), 1);
    d.node
        .node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: volume.into(),
            staging_target_path: staging.clone(),
        })
        .await
        .unwrap();

    // No device has the serial: nothing is touched.
    let other = "vol-0aaaaaaaaaaaaaaaa";
    let mut req = stage(hint);
    req.volume_id = other.into();
    req.staging_target_path = d.staging_path(other);
    let err = d.node.node_stage_volume(req).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("vol0aaaaaaaaaaaaaaaa"));
    assert!(mounts_under(d.dir.path()).is_empty());
    assert_eq!(blkid(&decoy.device), "");
}

#[tokio::test]
async fn an_expand_and_a_modify_together_become_one_modify_volume() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url, HashMap::new());
    let instance = moto.instance("m5.large").await;
    let mut d = aws_driver(&proxy.url, &instance, &[]).await;
    let v = d
        .controller
        .create_volume(create_in_zone("pvc-merge", 10, &[("type", "gp3")]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let (mut a, mut b) = (d.controller.clone(), d.controller.clone());
    let expand = ControllerExpandVolumeRequest {
        volume_id: v.volume_id.clone(),
        capacity_range: Some(CapacityRange {
            required_bytes: 30 * GIB,
            limit_bytes: 0,
        }),
        volume_capability: Some(rwo()),
        ..Default::default()
    };
    let modify = ControllerModifyVolumeRequest {
        volume_id: v.volume_id.clone(),
        mutable_parameters: params(&[("iops", "5000")]),
        ..Default::default()
    };
    let (e, m) = tokio::join!(a.controller_expand_volume(expand), b.controller_modify_volume(modify));
    assert_eq!(e.unwrap().into_inner().capacity_bytes, 30 * GIB);
    m.unwrap();
    // Whether both calls reach the volume's queue within its 500 ms is up to the scheduler, so
    // the count of ModifyVolume is not asserted (that changes queued together are sent as one
    // is `changes_queued_before_the_take_become_one_modification` in the aws module). What
    // holds whatever the timing: each change reached EC2 exactly once, and when it was one
    // call it carried both.
    let sent = proxy.params("ModifyVolume");
    let values = |key: &str| -> Vec<String> {
        sent.iter()
            .flat_map(|p| p.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()))
            .collect()
    };
    assert_eq!(values("Size"), ["30"], "{sent:?}");
    assert_eq!(values("Iops"), ["5000"], "{sent:?}");
    assert!(values("VolumeId").iter().all(|id| *id == v.volume_id), "{sent:?}");
    assert!((1..=2).contains(&sent.len()), "{sent:?}");
    let ev = moto
        .client()
        .describe_volumes()
        .volume_ids(&v.volume_id)
        .send()
        .await
        .unwrap();
    assert_eq!(ev.volumes()[0].size(), Some(30));
    assert_eq!(ev.volumes()[0].iops(), Some(5000));
}

/// Clones go through EC2 CopyVolumes, answered by the tests' proxy (moto lacks the call; the
/// proxy plays it as the EC2 API reference documents it, making the copy in moto): one call, no
/// snapshot, the source's zone, the asked size and type, the driver's tags; a lost answer makes
/// no second copy; a clone asked smaller than its source gets the source's size.
#[tokio::test]
async fn a_clone_is_one_copy_volumes_call() {
    let moto = Moto::start();
    let plan = HashMap::from([("CopyVolumes", vec![Fault::LoseResponse])]);
    let proxy = FaultProxy::start(&moto.url, plan);
    let instance = moto.instance("m5.large").await;
    let mut d = aws_driver(&proxy.url, &instance, &[]).await;
    let source = d
        .controller
        .create_volume(create_in_zone("pvc-source", 4, &[("type", "gp3")]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let clone_req = |name: &str, gib: i64| {
        let mut r = create_in_zone(name, gib, &[("type", "gp3"), ("throughput", "250")]);
        r.volume_content_source = Some(from_volume(&source.volume_id));
        r
    };

    let clone = d
        .controller
        .create_volume(clone_req("pvc-clone", 6))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_ne!(clone.volume_id, source.volume_id);
    assert_eq!(clone.capacity_bytes, 6 * GIB);
    assert_eq!(clone.content_source, Some(from_volume(&source.volume_id)));
    assert_eq!(
        proxy.count("CopyVolumes"),
        1,
        "the lost answer was found by name, not sent again"
    );
    assert_eq!(proxy.count("CreateSnapshot"), 0, "no snapshot on the way");
    let sent = &proxy.params("CopyVolumes")[0];
    let param = |k: &str| sent.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    assert_eq!(param("SourceVolumeId"), Some(source.volume_id.as_str()));
    assert_eq!(
        (param("Size"), param("VolumeType"), param("Throughput")),
        (Some("6"), Some("gp3"), Some("250"))
    );

    let copies = moto
        .client()
        .describe_volumes()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:CSIVolumeName")
                .values("pvc-clone")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(copies.volumes().len(), 1, "one copy");
    let copy = &copies.volumes()[0];
    assert_eq!(copy.volume_id(), Some(clone.volume_id.as_str()));
    assert_eq!((copy.availability_zone(), copy.size()), (Some(AZ), Some(6)));

    // A repeat answers the same volume without another copy.
    let again = d
        .controller
        .create_volume(clone_req("pvc-clone", 6))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(again.volume_id, clone.volume_id);
    assert_eq!(proxy.count("CopyVolumes"), 1);

    let small = d
        .controller
        .create_volume(clone_req("pvc-small-clone", 2))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(small.capacity_bytes, 4 * GIB, "a copy is at least its source's size");
    let sent = &proxy.params("CopyVolumes")[1];
    assert!(sent.iter().any(|(k, v)| k == "Size" && v == "4"), "{sent:?}");
}

fn snapshot_req(name: &str, source: &str, pairs: &[(&str, &str)]) -> CreateSnapshotRequest {
    CreateSnapshotRequest {
        name: name.into(),
        source_volume_id: source.into(),
        parameters: params(pairs),
        ..Default::default()
    }
}

async fn delete_snapshot(d: &mut support::Driver, id: &str) -> Result<(), tonic::Status> {
    d.controller
        .delete_snapshot(DeleteSnapshotRequest {
            snapshot_id: id.into(),
            ..Default::default()
        })
        .await
        .map(|_| ())
}

async fn moto_has_snapshot(moto: &Moto, id: &str) -> bool {
    moto.client()
        .describe_snapshots()
        .owner_ids("self")
        .send()
        .await
        .unwrap()
        .snapshots()
        .iter()
        .any(|s| s.snapshot_id() == Some(id))
}

/// VolumeSnapshotClass locks, fast restores and Outposts. moto lacks LockSnapshot,
/// DescribeLockedSnapshots and fast snapshot restores: the tests' proxy answers those as the EC2
/// API reference documents them (support/aws_snapshots.rs) and refuses DeleteSnapshot while a
/// lock holds; everything else is moto's. A lost LockSnapshot answer is retried by the CO, and
/// the retry reads the lock back instead of locking twice.
#[tokio::test]
async fn a_snapshot_class_locks_enables_fast_restores_and_names_its_outpost() {
    let moto = Moto::start();
    let plan = HashMap::from([("LockSnapshot", vec![Fault::LoseResponse])]);
    let proxy = FaultProxy::start(&moto.url, plan);
    let instance = moto.instance("m5.large").await;
    let mut d = aws_driver(&proxy.url, &instance, &[]).await;
    let vol = d
        .controller
        .create_volume(create_in_zone("pvc-locked", 2, &[]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
        .volume_id;
    let outpost = "arn:aws:outposts:us-east-1:123456789012:outpost/op-0123456789abcdef0";
    let req = snapshot_req(
        "snapshot-locked",
        &vol,
        &[
            ("lockMode", "governance"),
            ("lockDuration", "3"),
            ("fastSnapshotRestoreAvailabilityZones", "us-east-1a, us-east-1b"),
            ("outpostArn", outpost),
            ("csi.storage.k8s.io/volumesnapshot/namespace", "ns-a"),
            ("tagSpecification_1", "team={{ .VolumeSnapshotNamespace }}"),
        ],
    );
    // The lock was made but its answer lost: the call fails, and the CO's retry settles it.
    let first = d.controller.create_snapshot(req.clone()).await;
    assert_eq!(code(first), Code::Unavailable);
    let s = d
        .controller
        .create_snapshot(req.clone())
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    let again = d
        .controller
        .create_snapshot(req)
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    assert_eq!(again.snapshot_id, s.snapshot_id);
    assert_eq!(proxy.count("CreateSnapshot"), 1, "one snapshot");
    assert_eq!(proxy.count("LockSnapshot"), 1, "never locked twice");
    let sent = &proxy.params("LockSnapshot")[0];
    let param = |k: &str| sent.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    assert_eq!(
        (
            param("SnapshotId"),
            param("LockMode"),
            param("LockDuration"),
            param("ExpirationDate")
        ),
        (Some(s.snapshot_id.as_str()), Some("governance"), Some("3"), None)
    );
    let created = &proxy.params("CreateSnapshot")[0];
    assert!(
        created.iter().any(|(k, v)| k == "OutpostArn" && v == outpost),
        "{created:?}"
    );
    assert_eq!(
        proxy.snapshots.fast_restores.lock().unwrap()[&s.snapshot_id],
        ["us-east-1a", "us-east-1b"]
    );
    let described = moto
        .client()
        .describe_snapshots()
        .snapshot_ids(&s.snapshot_id)
        .send()
        .await
        .unwrap();
    let tags = described.snapshots()[0].tags();
    assert!(
        tags.iter()
            .any(|t| t.key() == Some("team") && t.value() == Some("ns-a")),
        "{tags:?}"
    );

    // A locked snapshot is not deleted: FAILED_PRECONDITION saying until when.
    let expires = proxy.snapshots.locks.lock().unwrap()[&s.snapshot_id].expires_ms;
    let e = delete_snapshot(&mut d, &s.snapshot_id).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains(&ebs_csi::ebs::rfc3339(expires)), "{}", e.message());
    assert!(moto_has_snapshot(&moto, &s.snapshot_id).await);
}

/// A lock until a date a few seconds ahead refuses DeleteSnapshot, then lets it through once
/// expired (the proxy plays EC2's lock, see above); bad combinations reach no EC2 call; fast
/// restores EC2 refuses (the proxy answers UnauthorizedOperation once) fail the call and leave
/// no snapshot.
#[tokio::test]
async fn an_expired_snapshot_lock_lets_the_delete_through_and_bad_classes_make_nothing() {
    let moto = Moto::start();
    let plan = HashMap::from([("EnableFastSnapshotRestores", vec![Fault::Unauthorized])]);
    let proxy = FaultProxy::start(&moto.url, plan);
    let instance = moto.instance("m5.large").await;
    let mut d = aws_driver(&proxy.url, &instance, &[]).await;
    let vol = d
        .controller
        .create_volume(create_in_zone("pvc-expiring", 1, &[]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
        .volume_id;

    let future = ebs_csi::ebs::rfc3339(ebs_csi::ebs::now_ms() + 86_400_000);
    let bad: Vec<Vec<(&str, &str)>> = vec![
        vec![("fastSnapshotRestoreAvailabilityZones", "us-west-2a")],
        vec![("lockDuration", "1")],
        vec![("lockMode", "compliance")],
        vec![
            ("lockMode", "compliance"),
            ("lockDuration", "1"),
            ("lockExpirationDate", &future),
        ],
        vec![
            ("lockMode", "governance"),
            ("lockDuration", "1"),
            ("lockCoolOffPeriod", "1"),
        ],
        vec![
            ("lockMode", "compliance"),
            ("lockDuration", "1"),
            ("lockCoolOffPeriod", "100"),
        ],
        vec![("outpostArn", "arn:aws:ec2:us-east-1:123456789012:volume/vol-1")],
    ];
    for pairs in bad {
        let r = d
            .controller
            .create_snapshot(snapshot_req("snapshot-bad", &vol, &pairs))
            .await;
        assert_eq!(code(r), Code::InvalidArgument, "{pairs:?}");
    }
    assert_eq!(proxy.count("CreateSnapshot"), 0, "nothing was made");

    let fast = snapshot_req(
        "snapshot-fast",
        &vol,
        &[("fastSnapshotRestoreAvailabilityZones", "us-east-1c")],
    );
    let refused = d.controller.create_snapshot(fast.clone()).await;
    assert_eq!(code(refused), Code::FailedPrecondition);
    assert_eq!(proxy.count("DeleteSnapshot"), 1, "the snapshot was deleted again");
    let made = &proxy.params("DeleteSnapshot")[0];
    assert!(
        !moto_has_snapshot(
            &moto,
            &made[made.iter().position(|(k, _)| k == "SnapshotId").unwrap()].1
        )
        .await
    );
    let fast = d
        .controller
        .create_snapshot(fast)
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    assert_eq!(
        proxy.snapshots.fast_restores.lock().unwrap()[&fast.snapshot_id],
        ["us-east-1c"]
    );

    let until = ebs_csi::ebs::rfc3339(ebs_csi::ebs::now_ms() + 4_000);
    let s = d
        .controller
        .create_snapshot(snapshot_req(
            "snapshot-expiring",
            &vol,
            &[
                ("lockMode", "compliance"),
                ("lockExpirationDate", &until),
                ("lockCoolOffPeriod", "1"),
            ],
        ))
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    let sent = &proxy.params("LockSnapshot")[0];
    assert!(sent.iter().any(|(k, v)| k == "CoolOffPeriod" && v == "1"), "{sent:?}");
    assert!(sent.iter().any(|(k, _)| k == "ExpirationDate"), "{sent:?}");
    let expires = proxy.snapshots.locks.lock().unwrap()[&s.snapshot_id].expires_ms;
    if ebs_csi::ebs::now_ms() < expires - 500 {
        let e = delete_snapshot(&mut d, &s.snapshot_id).await.unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains(&ebs_csi::ebs::rfc3339(expires)), "{}", e.message());
    }
    // The deadline only stops a hang.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        match delete_snapshot(&mut d, &s.snapshot_id).await {
            Ok(()) => break,
            Err(e) if e.code() == Code::FailedPrecondition && std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(!moto_has_snapshot(&moto, &s.snapshot_id).await);
}
