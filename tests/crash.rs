//! Kill -9 in the middle of a call, restart, retry: the retry converges and nothing leaks.
//! The driver is told (EBS_CSI_CRASH_AT) to stall at one step and say so with a marker file;
//! the test then SIGKILLs it there and starts it again without the fault.

mod support;

use std::time::Duration;

use ebs_csi::csi::*;
use support::*;

/// Waits until the armed driver stalls at `step`, then kills it and restarts it cleanly.
async fn crash_at(d: &mut Driver, step: &str) {
    let marker = d.data_dir().join(format!("crash-point-{step}"));
    for _ in 0..400 {
        if marker.exists() {
            std::fs::remove_file(&marker).unwrap();
            d.crash_and_restart().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the driver never reached {step}");
}

fn files(d: &Driver, sub: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(d.data_dir().join(sub))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

async fn new_volume(d: &mut Driver, name: &str) -> String {
    d.controller
        .create_volume(create_req(name, 1, &[]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
        .volume_id
}

#[tokio::test]
async fn create_volume_converges_after_a_crash_at_each_step() {
    for step in ["create-volume:after-intent", "create-volume:after-image"] {
        let mut d = Driver::start(&[]).await;
        d.crash_and_restart_with_fault(Some(step)).await;
        let mut c = d.controller.clone();
        tokio::spawn(async move { c.create_volume(create_req("pvc-crash", 3, &[])).await });
        crash_at(&mut d, step).await;

        let v = d
            .controller
            .create_volume(create_req("pvc-crash", 3, &[]))
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        let again = d
            .controller
            .create_volume(create_req("pvc-crash", 3, &[]))
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        assert_eq!(v.volume_id, again.volume_id, "{step}");
        let listed = d
            .controller
            .list_volumes(ListVolumesRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.entries.len(), 1, "{step}: {listed:?}");
        assert_eq!(files(&d, "volumes"), vec![format!("{}.img", v.volume_id)], "{step}");
    }
}

#[tokio::test]
async fn publish_converges_after_a_crash_at_each_step() {
    for step in ["attach:after-intent", "attach:after-loop"] {
        let mut d = Driver::start(&[]).await;
        let id = new_volume(&mut d, "pvc-a").await;
        d.crash_and_restart_with_fault(Some(step)).await;
        let (mut c, vid) = (d.controller.clone(), id.clone());
        tokio::spawn(async move { c.controller_publish_volume(publish_req(&vid, NODE)).await });
        crash_at(&mut d, step).await;

        // The restart undid the half-made attach: no loop device is left without its record.
        assert!(d.loop_devices().is_empty(), "{step}: {:?}", d.loop_devices());
        let ctx = d
            .controller
            .controller_publish_volume(publish_req(&id, NODE))
            .await
            .unwrap()
            .into_inner()
            .publish_context;
        let loops = d.loop_devices();
        assert_eq!(loops.len(), 1, "{step}");
        assert_eq!(loops[0].0.display().to_string(), ctx["devicePath"]);
        d.controller
            .controller_unpublish_volume(unpublish_req(&id, NODE))
            .await
            .unwrap();
        assert!(d.loop_devices().is_empty());
        d.controller
            .delete_volume(DeleteVolumeRequest {
                volume_id: id.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(files(&d, "volumes").is_empty(), "{step}");
    }
}

#[tokio::test]
async fn an_attachment_survives_a_crash_and_a_lost_loop_device() {
    let mut d = Driver::start(&[]).await;
    let id = new_volume(&mut d, "pvc-keep").await;
    d.controller
        .controller_publish_volume(publish_req(&id, NODE))
        .await
        .unwrap();
    // The host "rebooted": the loop device is gone, the record says attached.
    for (dev, _) in d.loop_devices() {
        std::process::Command::new("losetup")
            .arg("--detach")
            .arg(dev)
            .status()
            .unwrap();
    }
    d.crash_and_restart().await;
    let loops = d.loop_devices();
    assert_eq!(loops.len(), 1, "the restart re-attached it");
    let ctx = d
        .controller
        .controller_publish_volume(publish_req(&id, NODE))
        .await
        .unwrap()
        .into_inner()
        .publish_context;
    assert_eq!(ctx["devicePath"], loops[0].0.display().to_string());
    d.controller
        .controller_unpublish_volume(unpublish_req(&id, NODE))
        .await
        .unwrap();
    assert!(d.loop_devices().is_empty());
}

#[tokio::test]
async fn create_snapshot_converges_after_a_crash_at_each_step() {
    for step in ["snapshot:after-intent", "snapshot:after-copy"] {
        let mut d = Driver::start(&[]).await;
        let id = new_volume(&mut d, "pvc-s").await;
        let req = CreateSnapshotRequest {
            source_volume_id: id.clone(),
            name: "snap-crash".into(),
            ..Default::default()
        };
        d.crash_and_restart_with_fault(Some(step)).await;
        let (mut c, r) = (d.controller.clone(), req.clone());
        tokio::spawn(async move { c.create_snapshot(r).await });
        crash_at(&mut d, step).await;

        let s = d
            .controller
            .create_snapshot(req)
            .await
            .unwrap()
            .into_inner()
            .snapshot
            .unwrap();
        assert!(s.ready_to_use);
        let listed = d
            .controller
            .list_snapshots(ListSnapshotsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.entries.len(), 1, "{step}");
        assert_eq!(files(&d, "snapshots"), vec![format!("{}.img", s.snapshot_id)], "{step}");
    }
}

#[tokio::test]
async fn delete_volume_converges_after_a_crash() {
    let step = "delete-volume:after-intent";
    let mut d = Driver::start(&[]).await;
    let id = new_volume(&mut d, "pvc-d").await;
    d.crash_and_restart_with_fault(Some(step)).await;
    let (mut c, vid) = (d.controller.clone(), id.clone());
    tokio::spawn(async move {
        c.delete_volume(DeleteVolumeRequest {
            volume_id: vid,
            ..Default::default()
        })
        .await
    });
    crash_at(&mut d, step).await;

    d.controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(files(&d, "volumes").is_empty());
    let listed = d
        .controller
        .list_volumes(ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.entries.is_empty());
}

/// A VolumeSnapshotClass lock is written after the copy: a crash between the two leaves a ready
/// snapshot without its lock, and the retry by name locks that one (no second snapshot).
#[tokio::test]
async fn a_snapshot_lock_is_put_on_by_the_retry_after_a_crash() {
    let step = "snapshot:before-protect";
    let mut d = Driver::start(&[]).await;
    let vol = new_volume(&mut d, "pvc-locked").await;
    let req = CreateSnapshotRequest {
        name: "snapshot-locked".into(),
        source_volume_id: vol,
        parameters: params(&[("lockMode", "governance"), ("lockDuration", "1")]),
        ..Default::default()
    };
    d.crash_and_restart_with_fault(Some(step)).await;
    let mut c = d.controller.clone();
    let first = req.clone();
    tokio::spawn(async move { c.create_snapshot(first).await });
    crash_at(&mut d, step).await;

    let s = d
        .controller
        .create_snapshot(req)
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    assert_eq!(files(&d, "snapshots"), vec![format!("{}.img", s.snapshot_id)]);
    let e = d
        .controller
        .delete_snapshot(DeleteSnapshotRequest {
            snapshot_id: s.snapshot_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains("locked in governance mode until"),
        "{}",
        e.message()
    );
}
