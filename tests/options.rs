//! `serve`'s options named as the Go driver's: each changes what a user can see.

mod support;

use std::collections::HashMap;
use std::process::Command;

use ebs_csi::csi::volume_capability::{AccessMode, AccessType, MountVolume, access_mode::Mode};
use ebs_csi::csi::*;
use support::*;

async fn attach_limit(extra: &[&str]) -> i64 {
    let mut d = Driver::start(extra).await;
    d.node
        .node_get_info(NodeGetInfoRequest {})
        .await
        .expect("NodeGetInfo")
        .into_inner()
        .max_volumes_per_node
}

#[tokio::test]
async fn reserved_attachments_lower_the_limit_unless_one_is_given() {
    assert_eq!(attach_limit(&[]).await, 26);
    assert_eq!(attach_limit(&["--reserved-volume-attachments", "2"]).await, 24);
    assert_eq!(
        attach_limit(&["--reserved-volume-attachments", "2", "--volume-attach-limit", "5"]).await,
        5
    );
}

#[tokio::test]
async fn legacy_xfs_makes_a_filesystem_old_kernels_mount() {
    let mut d = Driver::start(&["--legacy-xfs"]).await;
    let v = d
        .controller
        .create_volume(create_req("pvc-legacy-xfs", 1, &[]))
        .await
        .expect("create")
        .into_inner()
        .volume
        .expect("a volume");
    let ctx = d
        .controller
        .controller_publish_volume(publish_req(&v.volume_id, NODE))
        .await
        .expect("publish")
        .into_inner()
        .publish_context;
    let staging = d.staging_path("legacy-xfs");
    let xfs = VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: "xfs".into(),
            ..Default::default()
        })),
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
    };
    d.node
        .node_stage_volume(NodeStageVolumeRequest {
            volume_id: v.volume_id.clone(),
            publish_context: ctx,
            staging_target_path: staging.clone(),
            volume_capability: Some(xfs),
            volume_context: HashMap::new(),
            ..Default::default()
        })
        .await
        .expect("stage");
    let info = Command::new("xfs_info").arg(&staging).output().expect("xfs_info runs");
    let info = String::from_utf8_lossy(&info.stdout).into_owned();
    d.node
        .node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: v.volume_id.clone(),
            staging_target_path: staging,
        })
        .await
        .expect("unstage");
    d.controller
        .controller_unpublish_volume(unpublish_req(&v.volume_id, NODE))
        .await
        .expect("unpublish");
    for feature in ["reflink=0", "bigtime=0", "inobtcount=0"] {
        assert!(info.contains(feature), "{feature} expected in xfs_info:\n{info}");
    }
}

/// `ebs-csi serve` with `args` (and a socket of its own) run until it exits by itself.
fn serve_refuses(args: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let endpoint = format!("unix://{}", dir.path().join("csi.sock").display());
    let data = dir.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_ebs-csi"))
        .args(["serve", "--endpoint", &endpoint, "--data-dir"])
        .arg(&data)
        .args(args)
        .env("AWS_REGION", "us-east-1")
        .output()
        .expect("ebs-csi runs");
    assert!(!out.status.success(), "serve {args:?} should have refused to start");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn an_invalid_extra_tag_stops_the_driver_unless_it_may_warn() {
    let err = serve_refuses(&["--extra-tags", "team=storage,novalue"]);
    assert!(err.contains("novalue"), "{err}");
    // With --warn-on-invalid-tag the same flags start a driver that answers.
    let mut d = Driver::start(&["--extra-tags", "team=storage,novalue", "--warn-on-invalid-tag"]).await;
    d.identity.probe(ProbeRequest {}).await.expect("the driver runs");
}

#[cfg(feature = "aws")]
#[test]
fn a_user_agent_that_http_cannot_carry_is_refused() {
    let err = serve_refuses(&[
        "--backend",
        "aws",
        "--mode",
        "controller",
        "--user-agent-extra",
        "my agent",
    ]);
    assert!(err.contains("--user-agent-extra"), "{err}");
}

#[test]
fn durations_take_units() {
    let err = serve_refuses(&["--modify-volume-request-handler-timeout", "2 fortnights"]);
    assert!(err.contains("--modify-volume-request-handler-timeout"), "{err}");
}

#[cfg(feature = "aws")]
#[tokio::test]
async fn without_batching_every_describe_names_one_volume() {
    use support::aws::*;
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url, HashMap::new());
    let instance = moto.instance("m7i.large").await;
    let env = Moto::env(&proxy.url);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let args = [
        "--backend",
        "aws",
        "--node-id",
        &instance,
        "--zone",
        AZ,
        "--instance-type",
        "m7i.large",
        "--batching=false",
    ];
    let d = Driver::start_custom(&args, &env).await;
    let mut ids = Vec::new();
    for n in 0..4 {
        let v = d
            .controller
            .clone()
            .create_volume(create_in_zone(&format!("pvc-unbatched-{n}"), 1, &[]))
            .await
            .expect("created");
        ids.push(v.into_inner().volume.expect("a volume").volume_id);
    }
    // Four lookups at once: batched, they would share one DescribeVolumes.
    let mut calls = Vec::new();
    for id in ids {
        let mut c = d.controller.clone();
        calls.push(tokio::spawn(async move {
            c.controller_get_volume(ControllerGetVolumeRequest { volume_id: id })
                .await
        }));
    }
    for call in calls {
        call.await.expect("joined").expect("found");
    }
    let described = proxy.filter_values("DescribeVolumes", "volume-id");
    assert!(
        described.iter().flatten().count() >= 4,
        "each lookup described its volume: {described:?}"
    );
    for ids in described.into_iter().flatten() {
        assert_eq!(ids.len(), 1, "one volume per DescribeVolumes: {ids:?}");
    }
}
