//! The volume-modifier-for-k8s sidecar's service (proto/modify.proto), which clusters running
//! that sidecar beside the Go driver call with a PVC's `ebs.csi.aws.com/…` annotations: its
//! ModifyVolumeProperties changes the volume as ControllerModifyVolume does, with the same keys
//! (the sidecar's `volumeType` included) and the same error codes.

mod support;

use ebs_csi::csi::modify::{GetCsiDriverModificationCapabilityRequest, ModifyVolumePropertiesRequest};
use support::*;
use tonic::Code;

fn properties(volume: &str, pairs: &[(&str, &str)]) -> ModifyVolumePropertiesRequest {
    ModifyVolumePropertiesRequest {
        name: volume.into(),
        parameters: params(pairs),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_sidecars_calls_are_checked_as_controller_modify_volume() {
    let mut d = Driver::start(&[]).await;
    d.modifier
        .get_csi_driver_modification_capability(GetCsiDriverModificationCapabilityRequest {})
        .await
        .expect("the capability call answers");
    let v = d
        .controller
        .create_volume(create_req("pvc-annotated", 100, &[("type", "gp2")]))
        .await
        .expect("create")
        .into_inner()
        .volume
        .expect("a volume");
    let id = v.volume_id.as_str();
    d.modifier
        .modify_volume_properties(properties(id, &[("volumeType", "gp3"), ("iops", "4000")]))
        .await
        .expect("gp2 to gp3 with 4000 IOPS");
    // gp3 at 4000 IOPS allows up to 1000 MiB/s; gp2 would take no throughput at all.
    d.modifier
        .modify_volume_properties(properties(id, &[("throughput", "1000")]))
        .await
        .expect("the volume is gp3 now");
    let refused = [
        (
            properties(id, &[("throughput", "1001")]),
            Code::InvalidArgument,
            "past 0.25 MiB/s per IOPS",
        ),
        (
            properties(id, &[("colour", "blue")]),
            Code::InvalidArgument,
            "an unknown key",
        ),
        (
            properties(id, &[("iops", "many")]),
            Code::InvalidArgument,
            "IOPS that are not a number",
        ),
        (
            properties("", &[("iops", "4000")]),
            Code::InvalidArgument,
            "no volume named",
        ),
        (
            properties("vol-0123456789abcdef0", &[("iops", "4000")]),
            Code::NotFound,
            "a volume that does not exist",
        ),
    ];
    // io2 starts at 4 GiB: a 1 GiB volume cannot take it, which CSI calls INVALID_ARGUMENT.
    let small = d
        .controller
        .create_volume(create_req("pvc-small", 1, &[("type", "gp3")]))
        .await
        .expect("create")
        .into_inner()
        .volume
        .expect("a volume");
    let to_io2 = properties(&small.volume_id, &[("volumeType", "io2"), ("iops", "3000")]);
    let refused = refused
        .into_iter()
        .chain([(to_io2, Code::InvalidArgument, "io2 on 1 GiB")]);
    for (req, want, what) in refused {
        let got = d.modifier.modify_volume_properties(req).await;
        assert_eq!(code(got), want, "{what}");
    }
    d.controller
        .delete_volume(ebs_csi::csi::DeleteVolumeRequest {
            volume_id: id.into(),
            ..Default::default()
        })
        .await
        .expect("delete");
}

/// On EC2 (moto): the annotations' change is one ModifyVolume, and EC2 reports the new type,
/// IOPS and throughput.
#[cfg(feature = "aws")]
#[tokio::test]
async fn the_sidecars_call_modifies_the_ec2_volume() {
    use support::aws::*;
    let moto = Moto::start();
    let instance = moto.instance("m5.large").await;
    let mut d = aws_driver(&moto.url, &instance, &[]).await;
    let v = d
        .controller
        .create_volume(create_in_zone("pvc-annotated-aws", 100, &[("type", "gp2")]))
        .await
        .expect("create")
        .into_inner()
        .volume
        .expect("a volume");
    d.modifier
        .modify_volume_properties(properties(
            &v.volume_id,
            &[("volumeType", "gp3"), ("iops", "5000"), ("throughput", "400")],
        ))
        .await
        .expect("modify");
    let out = moto
        .client()
        .describe_volumes()
        .volume_ids(&v.volume_id)
        .send()
        .await
        .expect("describe");
    let ev = &out.volumes()[0];
    assert_eq!(ev.volume_type().map(|t| t.as_str()), Some("gp3"));
    assert_eq!(ev.iops(), Some(5000));
    assert_eq!(ev.throughput(), Some(400));
    d.controller
        .delete_volume(ebs_csi::csi::DeleteVolumeRequest {
            volume_id: v.volume_id,
            ..Default::default()
        })
        .await
        .expect("delete");
}
