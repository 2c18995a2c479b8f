mod support;

use ebs_csi::csi::plugin_capability::{self, service, volume_expansion};
use ebs_csi::csi::*;
use support::Driver;

#[tokio::test]
async fn plugin_info_capabilities_and_probe() {
    let mut d = Driver::start(&[]).await;
    let info = d
        .identity
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.name, "ebs.csi.aws.com");
    assert_eq!(info.vendor_version, env!("CARGO_PKG_VERSION"));

    let caps = d
        .identity
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    let services: Vec<i32> = caps
        .capabilities
        .iter()
        .filter_map(|c| match &c.r#type {
            Some(plugin_capability::Type::Service(s)) => Some(s.r#type),
            _ => None,
        })
        .collect();
    assert!(services.contains(&(service::Type::ControllerService as i32)));
    assert!(services.contains(&(service::Type::VolumeAccessibilityConstraints as i32)));
    assert!(caps.capabilities.iter().any(|c| matches!(&c.r#type,
        Some(plugin_capability::Type::VolumeExpansion(e)) if e.r#type == volume_expansion::Type::Online as i32)));

    let probe = d.identity.probe(ProbeRequest {}).await.unwrap().into_inner();
    assert_eq!(probe.ready, Some(true));

    // Without its volumes directory the backend cannot serve: Probe says so.
    std::fs::remove_dir_all(d.data_dir().join("volumes")).unwrap();
    let err = d.identity.probe(ProbeRequest {}).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
}

#[tokio::test]
async fn node_mode_offers_no_controller_and_custom_name() {
    let mut d = Driver::start(&["--mode", "node", "--driver-name", "example.csi.test"]).await;
    let info = d
        .identity
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.name, "example.csi.test");
    let caps = d
        .identity
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!caps.capabilities.iter().any(|c| matches!(&c.r#type,
        Some(plugin_capability::Type::Service(s)) if s.r#type == service::Type::ControllerService as i32)));
    // And the controller service is not served at all.
    let err = d
        .controller
        .list_volumes(ListVolumesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
}

#[tokio::test]
async fn socket_is_private_and_removed_on_sigterm() {
    use std::os::unix::fs::PermissionsExt;
    let d = Driver::start(&[]).await;
    let sock = d.dir.path().join("csi.sock");
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let pid = nix::unistd::Pid::from_raw(d.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    for _ in 0..200 {
        if !sock.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(!sock.exists(), "socket left behind after SIGTERM");
}

#[test]
fn stale_socket_is_replaced_but_other_files_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-socket");
    std::fs::write(&path, "precious").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ebs-csi"))
        .args(["serve", "--endpoint", &format!("unix://{}", path.display())])
        .args(["--data-dir", &dir.path().join("data").display().to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a socket"));
}

#[test]
fn aws_backend_without_a_region_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ebs-csi"))
        .args(["serve", "--backend", "aws", "--mode", "controller", "--endpoint"])
        .arg(format!("unix://{}/s.sock", dir.path().display()))
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", dir.path().join("none"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no AWS region"), "{stderr}");
    assert!(!dir.path().join("s.sock").exists(), "no socket is left behind");
}

#[tokio::test]
async fn json_logs_carry_the_volume_on_every_line_of_a_call() {
    let mut d = Driver::start(&["--logging-format", "json"]).await;
    let req = support::create_req("pvc-logged", 1, &[]);
    let v = d
        .controller
        .create_volume(req)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let bad = DeleteVolumeRequest {
        volume_id: String::new(),
        ..Default::default()
    };
    assert!(d.controller.delete_volume(bad).await.is_err());
    let log = std::fs::read_to_string(d.dir.path().join("driver.log")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let create_lines: Vec<_> = lines
        .iter()
        .filter(|l| l["span"]["method"] == "CreateVolume" || l["spans"].to_string().contains("CreateVolume"))
        .collect();
    assert!(!create_lines.is_empty(), "no CreateVolume lines in:\n{log}");
    for l in &create_lines {
        assert!(
            l.to_string().contains("pvc-logged"),
            "a CreateVolume line without its volume: {l}"
        );
    }
    assert!(log.contains(&v.volume_id));
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "WARN" && l.to_string().contains("DeleteVolume")),
        "{log}"
    );
}
