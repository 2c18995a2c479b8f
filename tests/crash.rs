//! Kill -9 in the middle of a call, restart, retry: the retry converges and nothing leaks.
//! The driver is told (EBS_CSI_CRASH_AT) to stall at one step and say so with a marker file;
//! the test then SIGKILLs it there.

mod support;

use std::time::Duration;

use ebs_csi::csi::*;
use support::*;

async fn wait_marker(d: &Driver, step: &str) {
    let marker = d.data_dir().join(format!("crash-point-{step}"));
    for _ in 0..400 {
        if marker.exists() {
            std::fs::remove_file(&marker).unwrap();
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the driver never reached {step}");
}

/// Starts a driver that will stall at `step`, runs `call` until it stalls, kills the driver,
/// and restarts it without the fault.
async fn crash_during<F, Fut>(step: &str, setup: impl AsyncFnOnce(&mut Driver), call: F) -> Driver
where
    F: FnOnce(Driver) -> Fut,
    Fut: Future<Output = Driver>,
{
    let mut d = Driver::start(&[]).await;
    setup(&mut d).await;
    d.crash_and_restart_with_fault(Some(step)).await; // now running with the fault armed
    let d = call(d).await;
    wait_marker(&d, step).await;
    let mut d = d;
    d.crash_and_restart().await;
    d
}

fn images(d: &Driver, sub: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(d.data_dir().join(sub))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn create_volume_converges_after_a_crash_at_each_step() {
    for step in ["create-volume:after-intent", "create-volume:after-image"] {
        let mut d = crash_during(
            step,
            async |_| {},
            |d: Driver| async move {
                let mut c = d.controller.clone();
                tokio::spawn(async move { c.create_volume(create_req("pvc-crash", 3, &[])).await });
                d
            },
        )
        .await;
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
        assert_eq!(images(&d, "volumes"), vec![format!("{}.img", v.volume_id)], "{step}");
    }
}

#[tokio::test]
async fn publish_converges_after_a_crash_at_each_step() {
    for step in ["attach:after-intent", "attach:after-loop"] {
        let mut id = String::new();
        let mut d = crash_during(
            step,
            async |d: &mut Driver| {
                id = d
                    .controller
                    .create_volume(create_req("pvc-a", 1, &[]))
                    .await
                    .unwrap()
                    .into_inner()
                    .volume
                    .unwrap()
                    .volume_id;
            },
            |d: Driver| {
                let mut c = d.controller.clone();
                let id = id.clone();
                async move {
                    tokio::spawn(async move { c.controller_publish_volume(publish_req(&id, NODE)).await });
                    d
                }
            },
        )
        .await;
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
        assert!(images(&d, "volumes").is_empty(), "{step}");
    }
}

#[tokio::test]
async fn an_attachment_survives_a_crash_and_a_lost_loop_device() {
    let mut d = Driver::start(&[]).await;
    let id = d
        .controller
        .create_volume(create_req("pvc-keep", 1, &[]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
        .volume_id;
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
        let mut id = String::new();
        let mut d = crash_during(
            step,
            async |d: &mut Driver| {
                id = d
                    .controller
                    .create_volume(create_req("pvc-s", 1, &[]))
                    .await
                    .unwrap()
                    .into_inner()
                    .volume
                    .unwrap()
                    .volume_id;
            },
            |d: Driver| {
                let mut c = d.controller.clone();
                let id = id.clone();
                async move {
                    tokio::spawn(async move {
                        c.create_snapshot(CreateSnapshotRequest {
                            source_volume_id: id,
                            name: "snap-crash".into(),
                            ..Default::default()
                        })
                        .await
                    });
                    d
                }
            },
        )
        .await;
        let req = CreateSnapshotRequest {
            source_volume_id: id.clone(),
            name: "snap-crash".into(),
            ..Default::default()
        };
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
        assert_eq!(
            images(&d, "snapshots"),
            vec![format!("{}.img", s.snapshot_id)],
            "{step}"
        );
    }
}

#[tokio::test]
async fn delete_volume_converges_after_a_crash() {
    let step = "delete-volume:after-intent";
    let mut id = String::new();
    let mut d = crash_during(
        step,
        async |d: &mut Driver| {
            id = d
                .controller
                .create_volume(create_req("pvc-d", 1, &[]))
                .await
                .unwrap()
                .into_inner()
                .volume
                .unwrap()
                .volume_id;
        },
        |d: Driver| {
            let mut c = d.controller.clone();
            let id = id.clone();
            async move {
                tokio::spawn(async move {
                    c.delete_volume(DeleteVolumeRequest {
                        volume_id: id,
                        ..Default::default()
                    })
                    .await
                });
                d
            }
        },
    )
    .await;
    d.controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(images(&d, "volumes").is_empty());
    let listed = d
        .controller
        .list_volumes(ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.entries.is_empty());
}
