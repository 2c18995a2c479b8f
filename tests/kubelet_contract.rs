//! The seed's flow replayed in the order, with the parameters and the paths, that the sidecars
//! (node-driver-registrar, external-provisioner with --extra-create-metadata and
//! --default-fstype=ext4, external-attacher, livenessprobe) and kubelet use.

mod support;

use ebs_csi::csi::volume_capability::{AccessMode, AccessType, MountVolume, access_mode::Mode};
use ebs_csi::csi::*;
use support::*;

fn seed_capability() -> VolumeCapability {
    // ReadWriteOnce with the provisioner's default fstype.
    VolumeCapability {
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: "ext4".into(),
            ..Default::default()
        })),
    }
}

#[tokio::test]
async fn seed_flow_in_sidecar_and_kubelet_order() {
    let mut d = Driver::start(&[]).await;

    // node-driver-registrar: the driver's name, then the node's info for CSINode.
    let name = d
        .identity
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner()
        .name;
    assert_eq!(name, "ebs.csi.aws.com");
    let info = d.node.node_get_info(NodeGetInfoRequest {}).await.unwrap().into_inner();
    let node_zone = info.accessible_topology.as_ref().unwrap().segments["topology.kubernetes.io/zone"].clone();

    // external-provisioner start-up.
    assert_eq!(
        d.identity.probe(ProbeRequest {}).await.unwrap().into_inner().ready,
        Some(true)
    );
    d.identity
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .unwrap();
    d.controller
        .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
        .await
        .unwrap();

    // PVC dev-ns/ebs-claim (10Gi, RWO, StorageClass ebs-sc with no parameters,
    // WaitForFirstConsumer): the scheduler picked node-1, so its topology is preferred.
    let pv = "pvc-3f1d3c4e-9f1b-4c55-b6a1-0a2b3c4d5e6f";
    let segments = info.accessible_topology.clone().unwrap();
    let create = CreateVolumeRequest {
        name: pv.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: 10 * GIB,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![seed_capability()],
        parameters: params(&[
            ("csi.storage.k8s.io/pvc/name", "ebs-claim"),
            ("csi.storage.k8s.io/pvc/namespace", "dev-ns"),
            ("csi.storage.k8s.io/pv/name", pv),
        ]),
        accessibility_requirements: Some(TopologyRequirement {
            requisite: vec![segments.clone()],
            preferred: vec![segments],
        }),
        ..Default::default()
    };
    let vol = d
        .controller
        .create_volume(create)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(vol.capacity_bytes, 10 * GIB);
    // The PV's node affinity comes from here; node-1's labels must satisfy it.
    for (k, v) in &vol.accessible_topology[0].segments {
        assert_eq!(
            info.accessible_topology.as_ref().unwrap().segments.get(k),
            Some(v),
            "node lacks label {k}={v}"
        );
    }
    assert_eq!(
        vol.accessible_topology[0].segments["topology.kubernetes.io/zone"],
        node_zone
    );
    let handle = vol.volume_id.clone();

    // external-attacher: VolumeAttachment for node-1.
    let attach = ControllerPublishVolumeRequest {
        volume_id: handle.clone(),
        node_id: info.node_id.clone(),
        volume_capability: Some(seed_capability()),
        readonly: false,
        volume_context: vol.volume_context.clone(),
        ..Default::default()
    };
    let publish_context = d
        .controller
        .controller_publish_volume(attach)
        .await
        .unwrap()
        .into_inner()
        .publish_context;

    // kubelet: capabilities, stage at the global mount, publish into the nginx pod.
    let caps = d
        .node
        .node_get_capabilities(NodeGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!caps.capabilities.is_empty());
    let staging = d.staging_path(&handle);
    d.node
        .node_stage_volume(NodeStageVolumeRequest {
            volume_id: handle.clone(),
            publish_context: publish_context.clone(),
            staging_target_path: staging.clone(),
            volume_capability: Some(seed_capability()),
            volume_context: vol.volume_context.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let pod_uid = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
    let target = d.target_path(pod_uid, pv, false);
    // kubelet creates the pod's volume directory's parent, not the mount dir itself.
    std::fs::create_dir_all(std::path::Path::new(&target).parent().unwrap()).unwrap();
    d.node
        .node_publish_volume(NodePublishVolumeRequest {
            volume_id: handle.clone(),
            publish_context: publish_context.clone(),
            staging_target_path: staging.clone(),
            target_path: target.clone(),
            volume_capability: Some(seed_capability()),
            readonly: false,
            volume_context: vol.volume_context.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    // nginx serves /usr/share/nginx/html from here.
    std::fs::write(format!("{target}/index.html"), "<h1>seed</h1>").unwrap();

    // kubelet's volume stats, then the pod goes away.
    let stats = d
        .node
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: handle.clone(),
            volume_path: target.clone(),
            staging_target_path: staging.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.usage.len(), 2);
    d.node
        .node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: handle.clone(),
            target_path: target.clone(),
        })
        .await
        .unwrap();
    d.node
        .node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: handle.clone(),
            staging_target_path: staging,
        })
        .await
        .unwrap();
    d.controller
        .controller_unpublish_volume(ControllerUnpublishVolumeRequest {
            volume_id: handle.clone(),
            node_id: info.node_id,
            ..Default::default()
        })
        .await
        .unwrap();
    // PVC deleted (reclaimPolicy Delete).
    d.controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: handle,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(mounts_under(d.dir.path()).is_empty());
    assert!(d.loop_devices().is_empty());
}
