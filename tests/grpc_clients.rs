//! The driver from gRPC clients other than tonic's: Python's grpcio (grpc-core, which sends the
//! socket path as `:authority`, an authority h2 alone would refuse) over every form of unix
//! target, next to the Rust client, on the real binary's socket.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ebs_csi::csi::node_service_capability::{self, rpc};
use ebs_csi::csi::*;
use support::{Driver, GIB};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A Python with grpcio and grpcio-tools: `$GRPC_PYTHON` (scripts/test.sh sets it), else
/// scripts/test.sh's venv when it has them; None when there is none.
fn grpc_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GRPC_PYTHON") {
        return Some(p.into());
    }
    let venv = repo().join(".venv-test/bin/python");
    let usable = venv.is_file()
        && Command::new(&venv)
            .args(["-c", "import grpc, grpc_tools"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    usable.then_some(venv)
}

/// What tests/python/csi_calls.py reports.
#[derive(Debug, serde::Deserialize)]
struct Answers {
    name: String,
    vendor_version: String,
    probes: Vec<bool>,
    node_capabilities: Vec<String>,
    volume_id: String,
    capacity_bytes: i64,
    refused: String,
    /// What the sidecar's ModifyVolumeProperties answered to an unknown key.
    modify_refused: String,
}

struct PythonCall {
    python: PathBuf,
    target: String,
    cwd: PathBuf,
    stubs: PathBuf,
    volume: String,
    authority: Option<String>,
}

/// Runs tests/python/csi_calls.py; panics with its output unless it succeeds within a minute.
fn python_calls(call: PythonCall) -> Answers {
    let out = call.stubs.join(format!("{}.out", call.volume));
    let err = call.stubs.join(format!("{}.err", call.volume));
    let mut cmd = Command::new(&call.python);
    cmd.arg(repo().join("tests/python/csi_calls.py"))
        .arg(&call.target)
        .arg("--proto")
        .arg(repo().join("proto"))
        .arg("--stubs")
        .arg(&call.stubs)
        .args(["--volume", &call.volume])
        .current_dir(&call.cwd)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    if let Some(a) = &call.authority {
        cmd.args(["--authority", a]);
    }
    let mut child = cmd.spawn().expect("start python");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "grpcio client on {} still running after 60 s:\n{}",
                call.target,
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&out).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(
        status.success(),
        "grpcio client on {} failed ({status}):\n{stderr}",
        call.target
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout:?}\n{stderr}"))
}

#[tokio::test]
async fn python_grpcio_over_every_unix_target_form() {
    let Some(python) = grpc_python() else {
        eprintln!("skipping: no Python with grpcio and grpcio-tools (run scripts/test.sh, or set GRPC_PYTHON to one)");
        return;
    };
    let d = Driver::start(&[]).await;
    let sock = d.dir.path().join("csi.sock");
    let stubs = tempfile::tempdir().unwrap();
    let targets = [
        // grpc-core sends the path percent-encoded as :authority for both of these ...
        (format!("unix://{}", sock.display()), None),
        (format!("unix:{}", sock.display()), None),
        // ... a relative path as it is ...
        ("unix:csi.sock".to_string(), None),
        // ... and grpc-java sends the raw path.
        (format!("unix://{}", sock.display()), Some(sock.display().to_string())),
    ];
    for (i, (target, authority)) in targets.into_iter().enumerate() {
        let call = PythonCall {
            python: python.clone(),
            target: target.clone(),
            cwd: d.dir.path().to_path_buf(),
            stubs: stubs.path().to_path_buf(),
            volume: format!("pvc-grpcio-{i}"),
            authority,
        };
        let a = tokio::task::spawn_blocking(move || python_calls(call)).await.unwrap();
        assert_eq!(a.name, "ebs.csi.aws.com", "{target}");
        assert_eq!(a.vendor_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(a.probes, [true; 5]);
        assert!(a.node_capabilities.iter().any(|c| c == "STAGE_UNSTAGE_VOLUME"), "{a:?}");
        assert!(a.volume_id.starts_with("vol-"), "{a:?}");
        assert_eq!(a.capacity_bytes, GIB);
        assert!(
            !d.volume_file(&a.volume_id).exists(),
            "DeleteVolume left {}",
            a.volume_id
        );
        assert_eq!(a.refused, "INVALID_ARGUMENT");
        assert_eq!(a.modify_refused, "INVALID_ARGUMENT");
    }
    let log = std::fs::read_to_string(d.dir.path().join("driver.log")).unwrap();
    assert!(log.contains("using localhost"), "no authority was replaced:\n{log}");
}

#[tokio::test]
async fn rust_client_on_the_same_socket() {
    let mut d = Driver::start(&[]).await;
    let info = d
        .identity
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.name, "ebs.csi.aws.com");
    for _ in 0..5 {
        let probe = d.identity.probe(ProbeRequest {}).await.unwrap().into_inner();
        assert_eq!(probe.ready, Some(true));
    }
    let caps = d
        .node
        .node_get_capabilities(NodeGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(caps.capabilities.iter().any(|c| matches!(&c.r#type,
        Some(node_service_capability::Type::Rpc(r)) if r.r#type == rpc::Type::StageUnstageVolume as i32)));
    let v = d
        .controller
        .create_volume(support::create_req("pvc-rust", 1, &[]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v.capacity_bytes, GIB);
    d.controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: v.volume_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!d.volume_file(&v.volume_id).exists());
}

#[tokio::test]
async fn a_client_that_does_not_speak_http2_is_cut_off_and_others_go_on() {
    let mut d = Driver::start(&[]).await;
    let mut raw = tokio::net::UnixStream::connect(d.dir.path().join("csi.sock"))
        .await
        .unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut answer))
        .await
        .expect("the connection is closed")
        .unwrap();
    let probe = d.identity.probe(ProbeRequest {}).await.unwrap().into_inner();
    assert_eq!(probe.ready, Some(true));
    let log = std::fs::read_to_string(d.dir.path().join("driver.log")).unwrap();
    assert!(log.contains("not an HTTP/2 connection"), "{log}");
}
