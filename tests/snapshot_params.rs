//! VolumeSnapshotClass parameters on the local backend, through the real binary: each one
//! accepted and its effect observed (a lock that refuses DeleteSnapshot until it expires, fast
//! restores and the lock in the snapshot's record, tags from templates), each bad combination
//! refused with nothing made, and the lock kept across a restart.

mod support;

use std::time::{Duration, Instant};

use ebs_csi::cloud::Cloud;
use ebs_csi::cloud::local::LocalCloud;
use ebs_csi::csi::*;
use ebs_csi::ebs::{LockMode, now_ms, rfc3339};
use support::*;
use tonic::Code;

async fn volume(d: &mut Driver, name: &str) -> String {
    d.controller
        .create_volume(create_req(name, 1, &[]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
        .volume_id
}

fn snap_req(name: &str, source: &str, pairs: &[(&str, &str)]) -> CreateSnapshotRequest {
    CreateSnapshotRequest {
        name: name.into(),
        source_volume_id: source.into(),
        parameters: params(pairs),
        ..Default::default()
    }
}

/// The snapshot's record in the driver's store (opened alongside the running driver, as its
/// node services do).
async fn record(d: &Driver, id: &str) -> ebs_csi::cloud::Snapshot {
    let store = LocalCloud::open(&d.data_dir(), Vec::new()).unwrap();
    store.snapshot(id).await.unwrap()
}

async fn delete(d: &mut Driver, id: &str) -> Result<(), tonic::Status> {
    d.controller
        .delete_snapshot(DeleteSnapshotRequest {
            snapshot_id: id.into(),
            ..Default::default()
        })
        .await
        .map(|_| ())
}

fn image_count(d: &Driver) -> usize {
    std::fs::read_dir(d.data_dir().join("snapshots")).unwrap().count()
}

#[tokio::test]
async fn a_lock_fast_restores_and_tags_take_effect_and_a_retry_changes_nothing() {
    let mut d = Driver::start(&[]).await;
    let vol = volume(&mut d, "pvc-locked").await;
    let req = snap_req(
        "snapshot-locked",
        &vol,
        &[
            ("lockMode", "governance"),
            ("lockDuration", "2"),
            ("fastSnapshotRestoreAvailabilityZones", "local-1b, local-1a"),
            ("csi.storage.k8s.io/volumesnapshot/namespace", "team-a"),
            ("tagSpecification_1", "owner={{ .VolumeSnapshotNamespace | toUpper }}"),
        ],
    );
    let before = now_ms();
    let s = d
        .controller
        .create_snapshot(req.clone())
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    let rec = record(&d, &s.snapshot_id).await;
    let lock = rec.lock.expect("the snapshot is locked");
    assert_eq!(lock.mode, LockMode::Governance);
    assert!(lock.expires_ms >= before + 2 * 86_400_000, "two days from creation");
    assert_eq!(rec.fast_restore_zones, ["local-1b", "local-1a"]);
    assert_eq!(rec.tags["owner"], "TEAM-A");

    // A retry answers the same snapshot and neither moves the lock nor repeats a zone.
    let again = d
        .controller
        .create_snapshot(req)
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    assert_eq!(again.snapshot_id, s.snapshot_id);
    let rec2 = record(&d, &s.snapshot_id).await;
    assert_eq!(rec2.lock, Some(lock));
    assert_eq!(rec2.fast_restore_zones, ["local-1b", "local-1a"]);

    // Deleting is refused, naming when the lock ends; the image stays.
    let e = delete(&mut d, &s.snapshot_id).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains(&rfc3339(lock.expires_ms)), "{}", e.message());
    assert_eq!(image_count(&d), 1);

    // The lock is in the store: a restarted controller still refuses.
    d.crash_and_restart().await;
    let e = delete(&mut d, &s.snapshot_id).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let listed = d
        .controller
        .list_snapshots(ListSnapshotsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.entries.len(), 1);
}

#[tokio::test]
async fn an_expired_lock_no_longer_blocks_deletion() {
    let mut d = Driver::start(&[]).await;
    let vol = volume(&mut d, "pvc-expiring").await;
    let until = rfc3339(now_ms() + 3_000);
    let s = d
        .controller
        .create_snapshot(snap_req(
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
    let lock = record(&d, &s.snapshot_id).await.lock.unwrap();
    assert_eq!(lock.mode, LockMode::Compliance);
    assert!(lock.cool_off_until_ms.is_some());
    // Refused while the lock holds (unless this machine took the three seconds already).
    if now_ms() < lock.expires_ms - 500 {
        let e = delete(&mut d, &s.snapshot_id).await.unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition);
        assert!(e.message().contains(&rfc3339(lock.expires_ms)), "{}", e.message());
    }
    // Then deleted once it expires; the deadline only stops a hang.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match delete(&mut d, &s.snapshot_id).await {
            Ok(()) => break,
            Err(e) if e.code() == Code::FailedPrecondition && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(image_count(&d), 0);
    let listed = d
        .controller
        .list_snapshots(ListSnapshotsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.entries.is_empty());
}

#[tokio::test]
async fn bad_parameters_and_combinations_make_nothing() {
    let mut d = Driver::start(&[]).await;
    let vol = volume(&mut d, "pvc-refused").await;
    let future = rfc3339(now_ms() + 86_400_000);
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("fastSnapshotRestoreAvailabilityZones", "local-1a,us-east-1a")],
            "us-east-1a",
        ),
        (vec![("lockDuration", "1")], "lockMode"),
        (vec![("lockMode", "governance")], "lockDuration"),
        (
            vec![
                ("lockMode", "governance"),
                ("lockDuration", "1"),
                ("lockExpirationDate", &future),
            ],
            "both",
        ),
        (
            vec![
                ("lockMode", "governance"),
                ("lockDuration", "1"),
                ("lockCoolOffPeriod", "2"),
            ],
            "compliance",
        ),
        (
            vec![
                ("lockMode", "compliance"),
                ("lockDuration", "1"),
                ("lockCoolOffPeriod", "73"),
            ],
            "72",
        ),
        (vec![("lockMode", "compliance"), ("lockDuration", "36501")], "36500"),
        (
            vec![
                ("lockMode", "compliance"),
                ("lockExpirationDate", "2001-01-01T00:00:00Z"),
            ],
            "future",
        ),
        (
            vec![("lockMode", "compliance"), ("lockExpirationDate", "next week")],
            "RFC 3339",
        ),
        (vec![("lockMode", "sealed"), ("lockDuration", "1")], "lock mode"),
        (vec![("outpostArn", "op-0123456789abcdef0")], "not an Outpost ARN"),
        // Well formed, but the local backend has no Outposts.
        (
            vec![(
                "outpostArn",
                "arn:aws:outposts:us-west-2:111122223333:outpost/op-0123456789abcdef0",
            )],
            "no Outposts",
        ),
        (vec![("tagSpecification_1", "a={{ .PVCName }}")], "unknown field"),
    ];
    for (pairs, why) in cases {
        let e = d
            .controller
            .create_snapshot(snap_req("snapshot-refused", &vol, &pairs))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{pairs:?}: {e:?}");
        assert!(e.message().contains(why), "{pairs:?}: {}", e.message());
    }
    let listed = d
        .controller
        .list_snapshots(ListSnapshotsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.entries.is_empty(), "nothing was made");
    assert_eq!(image_count(&d), 0);
}
