//! The CSI conformance suite (kubernetes-csi/csi-test's `csi-sanity`) against the real driver
//! binary: every spec on the local backend, with mount and with block volumes, and the
//! controller specs on the aws backend against moto. Any failed spec fails the test.
//!
//! csi-sanity is found from `CSI_SANITY`, then `PATH`, then `../shared/tools/csi-sanity`; when
//! it is nowhere, the test says how to install it and passes without running.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

fn csi_sanity() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CSI_SANITY") {
        return Some(PathBuf::from(p));
    }
    if let Some(path) = std::env::var_os("PATH")
        && let Some(found) = std::env::split_paths(&path)
            .map(|dir| dir.join("csi-sanity"))
            .find(|p| p.is_file())
    {
        return Some(found);
    }
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/csi-sanity");
    shared.is_file().then_some(shared)
}

/// Runs csi-sanity against `driver` with `extra` flags; panics with its report when any spec
/// failed.
fn run_sanity(driver: &Driver, name: &str, extra: &[&str]) {
    let Some(sanity) = csi_sanity() else {
        eprintln!(
            "SKIPPED {name}: csi-sanity not found (set CSI_SANITY, put it on PATH, or \
             `go install github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity@latest`)"
        );
        return;
    };
    let work = driver.dir.path().join(format!("sanity-{name}"));
    std::fs::create_dir_all(&work).unwrap();
    // Values csi-sanity will ask ControllerModifyVolume to apply to a gp3 volume.
    let mutable = work.join("mutable.yaml");
    std::fs::write(&mutable, "iops: \"4000\"\nthroughput: \"250\"\n").unwrap();
    let out = Command::new(&sanity)
        .arg(format!("-csi.endpoint={}", driver.endpoint()))
        // csi-sanity makes these itself; they must not exist beforehand.
        .arg(format!("-csi.stagingdir={}", work.join("staging").display()))
        .arg(format!("-csi.mountdir={}", work.join("mount").display()))
        .arg(format!("-csi.testvolumesize={GIB}"))
        .arg(format!("-csi.testvolumeexpandsize={}", 2 * GIB))
        .arg(format!("-csi.testvolumemutableparameters={}", mutable.display()))
        .arg("-ginkgo.no-color")
        .args(extra)
        .output()
        .expect("run csi-sanity");
    let report = String::from_utf8_lossy(&out.stdout);
    let summary = report
        .lines()
        .filter(|l| l.contains("Passed") && l.contains("Failed"))
        .collect::<Vec<_>>()
        .join("\n");
    println!("csi-sanity {name}: {summary}");
    if !out.status.success() {
        let failures: Vec<&str> = report.lines().filter(|l| l.contains("[FAIL]")).collect();
        panic!(
            "csi-sanity {name} failed ({}):\n{}\n--- report ---\n{report}\n--- stderr ---\n{}",
            out.status,
            failures.join("\n"),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        summary.contains(" 0 Failed"),
        "csi-sanity {name} reported failures: {summary}"
    );
    assert!(
        mounts_under(driver.dir.path()).is_empty(),
        "csi-sanity {name} left mounts behind: {:?}",
        mounts_under(driver.dir.path())
    );
}

#[tokio::test]
async fn csi_sanity_local_mount_volumes() {
    let driver = Driver::start(&[]).await;
    run_sanity(&driver, "local-mount", &[]);
    assert!(driver.loop_devices().is_empty(), "loop devices left attached");
}

#[tokio::test]
async fn csi_sanity_local_block_volumes() {
    let driver = Driver::start(&[]).await;
    run_sanity(&driver, "local-block", &["-csi.testvolumeaccesstype=block"]);
    assert!(driver.loop_devices().is_empty(), "loop devices left attached");
}

/// The controller specs on the aws backend, against moto's EC2 server. The node's identity is
/// moto's instance (the node specs need a real EBS device, which cannot exist here).
#[cfg(feature = "aws")]
#[tokio::test]
async fn csi_sanity_aws_controller_on_moto() {
    use support::aws::*;
    if csi_sanity().is_none() {
        return run_sanity_skipped("aws-controller");
    }
    let moto = Moto::start();
    let instance = moto.instance("m5.large").await;
    // Through the tests' proxy, which answers CopyVolumes (csi-sanity clones volumes; moto lacks
    // the call) and passes everything else to moto.
    let proxy = FaultProxy::start(&moto.url, std::collections::HashMap::new());
    let env = Moto::env(&proxy.url);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let driver = Driver::start_custom(
        &[
            "--backend",
            "aws",
            "--node-id",
            &instance,
            "--zone",
            AZ,
            "--instance-type",
            "m5.large",
        ],
        &env,
    )
    .await;
    run_sanity(&driver, "aws-controller", &["-ginkgo.skip=Node Service"]);
}

#[cfg(feature = "aws")]
fn run_sanity_skipped(name: &str) {
    eprintln!("SKIPPED {name}: csi-sanity not found (set CSI_SANITY or put it on PATH)");
}
