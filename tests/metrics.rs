//! `/metrics` as an operator scrapes it: per-CSI-call histograms by method and code, volumes
//! attached per node and per-volume I/O on local, and EC2 call durations and errors under the Go
//! driver's names on aws (moto).

mod support;

use std::io::{Read, Write};

use ebs_csi::csi::*;
use support::*;
use tonic::Code;

fn scrape(port: u16) -> String {
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics endpoint");
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("request sent");
    let mut text = String::new();
    conn.read_to_string(&mut text).expect("response read");
    text
}

/// The value of sample `name` whose labels include every pair of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && l.as_bytes().get(name.len()) == Some(&b'{'))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("its address")
        .port()
}

#[tokio::test]
async fn local_reports_calls_attachments_and_volume_io() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut d = Driver::start(&["--http-endpoint", &addr]).await;

    let v = d
        .controller
        .create_volume(create_req("pvc-metrics", 1, &[]))
        .await
        .expect("create")
        .into_inner()
        .volume
        .expect("a volume");
    let refused = d.controller.create_volume(create_req("", 1, &[])).await;
    assert_eq!(code(refused), Code::InvalidArgument);
    let ctx = d
        .controller
        .controller_publish_volume(publish_req(&v.volume_id, NODE))
        .await
        .expect("publish")
        .into_inner()
        .publish_context;
    let staging = d.staging_path("metrics");
    d.node
        .node_stage_volume(NodeStageVolumeRequest {
            volume_id: v.volume_id.clone(),
            publish_context: ctx,
            staging_target_path: staging.clone(),
            volume_capability: Some(rwo()),
            volume_context: v.volume_context.clone(),
            ..Default::default()
        })
        .await
        .expect("stage formats the volume");

    let text = scrape(port);
    let calls = |method: &str, code: &str| {
        sample(
            &text,
            "ebs_csi_rpc_duration_seconds_count",
            &[("method", method), ("code", code)],
        )
    };
    assert_eq!(calls("CreateVolume", "Ok"), Some(1.0), "{text}");
    assert_eq!(calls("CreateVolume", "InvalidArgument"), Some(1.0), "{text}");
    assert_eq!(calls("NodeStageVolume", "Ok"), Some(1.0), "{text}");
    assert_eq!(
        sample(&text, "ebs_csi_volumes_attached", &[("node", NODE)]),
        Some(1.0),
        "{text}"
    );
    let of_volume = [("volume_id", v.volume_id.as_str()), ("instance_id", NODE)];
    let written = sample(&text, "aws_ebs_csi_write_bytes_total", &of_volume).expect("write bytes of the volume");
    assert!(written > 0.0, "mkfs wrote to the volume: {text}");
    assert!(sample(&text, "aws_ebs_csi_write_ops_total", &of_volume).is_some_and(|n| n > 0.0));
    assert!(sample(&text, "aws_ebs_csi_volume_queue_length", &of_volume).is_some());
    // EBS's exceeded-performance counters have no meaning for a loop device: absent, not zero.
    assert!(!text.contains("exceeded"), "{text}");

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
    let text = scrape(port);
    assert_eq!(
        sample(&text, "ebs_csi_volumes_attached", &[("node", NODE)]),
        None,
        "{text}"
    );
    assert_eq!(
        sample(&text, "aws_ebs_csi_write_bytes_total", &of_volume),
        None,
        "{text}"
    );
    d.controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: v.volume_id,
            ..Default::default()
        })
        .await
        .expect("delete");
    drop(d);
}

#[cfg(feature = "aws")]
#[tokio::test]
async fn aws_reports_ec2_durations_and_errors_by_request() {
    use support::aws::*;
    let moto = Moto::start();
    let instance = moto.instance("m7i.large").await;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let env = Moto::env(&moto.url);
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
        "--http-endpoint",
        &addr,
    ];
    let mut d = Driver::start_custom(&args, &env).await;
    let v = d
        .controller
        .create_volume(create_in_zone("pvc-metrics-aws", 1, &[]))
        .await
        .expect("create")
        .into_inner()
        .volume
        .expect("a volume");
    let missing = d
        .controller
        .controller_publish_volume(publish_req(&v.volume_id, "i-0123456789abcdef0"))
        .await;
    assert_eq!(code(missing), Code::NotFound);
    // EC2 refuses an unknown snapshot; the driver answers success (already gone) and counts it.
    d.controller
        .delete_snapshot(DeleteSnapshotRequest {
            snapshot_id: "snap-0123456789abcdef0".into(),
            ..Default::default()
        })
        .await
        .expect("deleting an unknown snapshot succeeds");

    let text = scrape(port);
    let created = sample(
        &text,
        "aws_ebs_csi_api_request_duration_seconds_count",
        &[("request", "CreateVolume")],
    );
    assert!(created.is_some_and(|n| n >= 1.0), "{text}");
    let refused = [("request", "DeleteSnapshot"), ("error", "InvalidSnapshot.NotFound")];
    assert_eq!(
        sample(&text, "aws_ebs_csi_api_request_errors_total", &refused),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "ebs_csi_rpc_duration_seconds_count",
            &[("method", "ControllerPublishVolume"), ("code", "NotFound")]
        ),
        Some(1.0),
        "{text}"
    );
    d.controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: v.volume_id,
            ..Default::default()
        })
        .await
        .expect("delete");
    drop(d);
}

/// `--metrics-cert-file`/`--metrics-key-file`: the endpoint speaks TLS with that certificate
/// (made here by the openssl command), and curl, trusting it, reads the metrics.
#[tokio::test]
async fn metrics_over_tls_with_the_given_certificate() {
    for tool in ["openssl", "curl"] {
        if std::process::Command::new(tool).arg("--version").output().is_err() {
            eprintln!("SKIPPED: {tool} not found");
            return;
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let mut d = Driver::start(&[
        "--http-endpoint",
        &addr,
        "--metrics-cert-file",
        &cert_s,
        "--metrics-key-file",
        &key_s,
    ])
    .await;
    d.identity.probe(ProbeRequest {}).await.expect("probe");

    let url = format!("https://127.0.0.1:{port}/metrics");
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert", &cert_s, &url])
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        sample(
            &text,
            "ebs_csi_rpc_duration_seconds_count",
            &[("method", "Probe"), ("code", "Ok")]
        ),
        Some(1.0),
        "{text}"
    );
    // Plain HTTP gets no metrics from the TLS port.
    let plain = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", &format!("http://127.0.0.1:{port}/metrics")])
        .output()
        .expect("curl runs");
    assert!(
        !String::from_utf8_lossy(&plain.stdout).contains("ebs_csi_rpc"),
        "no metrics in clear text"
    );
    drop(d);
}

/// Unmounts whatever is left under a directory when dropped, so a failing test leaves no mount.
#[cfg(feature = "aws")]
struct UnmountUnder(std::path::PathBuf);

#[cfg(feature = "aws")]
impl Drop for UnmountUnder {
    fn drop(&mut self) {
        for target in mounts_under(&self.0) {
            let _ = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// The aws node reports each EBS volume it has mounted for Kubernetes from the volume's NVMe log
/// page, under the Go driver's names. No EBS NVMe device exists off AWS, so this stands in for
/// what a Nitro instance shows: real loop devices, a sysfs tree that gives them EBS serials (as
/// `nvme_discovery_trusts_serials_not_links` does), and each device's log page as a file, made
/// with the layout AWS documents. Mounts, serials and the choice of devices are real.
#[cfg(feature = "aws")]
#[tokio::test]
async fn aws_node_reports_ebs_log_pages_of_its_kubernetes_mounts() {
    use ebs_csi::ebs::{EbsLogPage, LatencyBin};
    use support::aws::{Loop, NVME_NODE, NvmeTree};
    let scratch = tempfile::Builder::new()
        .prefix("ebs-csi-test-nvme-metrics")
        .tempdir()
        .expect("temp dir");
    let tree = NvmeTree::new(scratch.path());
    let (good, broken, outside) = (
        Loop::new(scratch.path(), "good.img", 1),
        Loop::new(scratch.path(), "broken.img", 1),
        Loop::new(scratch.path(), "outside.img", 1),
    );
    let _unmount = UnmountUnder(scratch.path().to_owned());
    let volumes = [
        ("vol-0a000000000000001", &good),
        ("vol-0b000000000000002", &broken),
        ("vol-0c000000000000003", &outside),
    ];
    for (id, dev) in volumes {
        tree.serial(&dev.device, &id.replace('-', ""));
    }
    let pages = scratch.path().join("log-pages");
    std::fs::create_dir(&pages).expect("pages dir");
    let page = EbsLogPage {
        read_ops: 40,
        write_ops: 12,
        read_bytes: 40 * 4096,
        write_bytes: 12 * 65536,
        read_time_us: 6_000,
        write_time_us: 30_000,
        ebs_iops_exceeded_us: 1_500_000,
        ebs_throughput_exceeded_us: 250_000,
        ec2_iops_exceeded_us: 0,
        ec2_throughput_exceeded_us: 2_000_000,
        queue_length: 3,
        read_latency: vec![
            LatencyBin {
                lower_us: 0,
                upper_us: 128,
                count: 30,
            },
            LatencyBin {
                lower_us: 128,
                upper_us: 256,
                count: 10,
            },
        ],
        write_latency: vec![LatencyBin {
            lower_us: 1024,
            upper_us: 4096,
            count: 12,
        }],
    };
    let name = |l: &Loop| l.device.file_name().expect("a device name").to_owned();
    std::fs::write(pages.join(name(&good)), page.encode()).expect("page");
    std::fs::write(pages.join(name(&outside)), page.encode()).expect("page");
    let mut not_ebs = page.encode();
    not_ebs[..8].fill(0);
    std::fs::write(pages.join(name(&broken)), not_ebs).expect("page");

    let prefix = scratch.path().join("kubelet/plugins/kubernetes.io/csi");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let prefix_s = prefix.display().to_string();
    let mut d = tree
        .node(
            &["--http-endpoint", &addr, "--csi-mount-point-prefix", &prefix_s],
            &[("EBS_CSI_NVME_LOG_PAGES", pages.to_str().expect("utf-8"))],
        )
        .await;
    let staging = |id: &str| {
        if id.starts_with("vol-0c") {
            scratch.path().join("elsewhere").join(id).display().to_string()
        } else {
            prefix
                .join("ebs.csi.aws.com")
                .join(id)
                .join("globalmount")
                .display()
                .to_string()
        }
    };
    for (id, _) in volumes {
        d.node
            .node_stage_volume(NodeStageVolumeRequest {
                volume_id: id.into(),
                staging_target_path: staging(id),
                volume_capability: Some(rwo()),
                ..Default::default()
            })
            .await
            .expect("stage");
    }

    let text = scrape(port);
    let of = |id: &'static str| [("volume_id", id), ("instance_id", NVME_NODE)];
    let good_id = "vol-0a000000000000001";
    let value = |name: &str| sample(&text, name, &of(good_id));
    assert_eq!(value("aws_ebs_csi_read_ops_total"), Some(40.0), "{text}");
    assert_eq!(value("aws_ebs_csi_write_bytes_total"), Some(12.0 * 65536.0), "{text}");
    assert_eq!(value("aws_ebs_csi_write_seconds_total"), Some(0.03), "{text}");
    assert_eq!(value("aws_ebs_csi_volume_queue_length"), Some(3.0), "{text}");
    assert_eq!(value("aws_ebs_csi_exceeded_iops_seconds_total"), Some(1.5), "{text}");
    assert_eq!(value("aws_ebs_csi_exceeded_tp_seconds_total"), Some(0.25), "{text}");
    assert_eq!(value("aws_ebs_csi_ec2_exceeded_tp_seconds_total"), Some(2.0), "{text}");
    let bucket = |le: &str| {
        sample(
            &text,
            "aws_ebs_csi_read_io_latency_seconds_bucket",
            &[("volume_id", good_id), ("le", le)],
        )
    };
    assert_eq!(bucket("0.000128"), Some(30.0), "{text}");
    assert_eq!(bucket("0.000256"), Some(40.0), "cumulative: {text}");
    assert_eq!(bucket("+Inf"), Some(40.0), "{text}");
    assert_eq!(
        sample(&text, "aws_ebs_csi_read_io_latency_seconds_count", &of(good_id)),
        Some(40.0),
        "{text}"
    );
    // A page without EBS's magic is an error, not figures; a volume mounted outside kubelet's
    // directory is not Kubernetes's and is not reported.
    for other in ["vol-0b000000000000002", "vol-0c000000000000003"] {
        assert!(!text.contains(other), "{other} reported: {text}");
    }
    let scrapes = [("instance_id", NVME_NODE)];
    assert_eq!(
        sample(&text, "aws_ebs_csi_nvme_collector_errors_total", &scrapes),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "aws_ebs_csi_nvme_collector_scrapes_total", &scrapes),
        Some(1.0),
        "{text}"
    );

    for (id, _) in volumes {
        d.node
            .node_unstage_volume(NodeUnstageVolumeRequest {
                volume_id: id.into(),
                staging_target_path: staging(id),
            })
            .await
            .expect("unstage");
    }
    let text = scrape(port);
    assert!(
        !text.contains(good_id),
        "an unstaged volume is no longer reported: {text}"
    );
    drop(d);
}
