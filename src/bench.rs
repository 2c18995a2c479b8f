//! `ebs-csi bench`: the figures docs/benchmarks.md records. Each run makes its own data dir
//! and cleans it up.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cloud::local::LocalCloud;
use crate::controller::{ControllerService, Options};
use crate::csi::controller_server::Controller;
use crate::csi::volume_capability::{AccessMode, AccessType, MountVolume, access_mode::Mode};
use crate::csi::*;
use crate::error::{Error, Result};

/// A single-node mount capability, with `fs_type` ("" leaves the choice to the driver).
fn mount_capability(fs_type: &str) -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: fs_type.into(),
            ..Default::default()
        })),
    }
}

fn create_request(name: String) -> tonic::Request<CreateVolumeRequest> {
    tonic::Request::new(CreateVolumeRequest {
        name,
        capacity_range: Some(CapacityRange {
            required_bytes: 1 << 30,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![mount_capability("")],
        ..Default::default()
    })
}

async fn create(svc: &ControllerService, name: String) -> Result<Duration> {
    let start = Instant::now();
    svc.create_volume(create_request(name))
        .await
        .map_err(|s| Error::Internal(format!("CreateVolume failed: {}", s.message())))?;
    Ok(start.elapsed())
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

/// CreateVolume's median latency (through the controller service, on the local backend) when
/// the store already holds each of `sizes` volumes; `samples` creates are timed at each size.
pub async fn create_volume(dir: &Path, sizes: &[usize], samples: usize) -> Result<Vec<(usize, Duration)>> {
    let cloud = Arc::new(LocalCloud::open(dir, Vec::new())?);
    let svc = ControllerService::new(cloud, Options::default());
    let mut existing = 0usize;
    let mut out = Vec::new();
    for &size in sizes {
        while existing < size {
            create(&svc, format!("fill-{existing}")).await?;
            existing += 1;
        }
        let mut times = Vec::with_capacity(samples);
        for n in 0..samples {
            times.push(create(&svc, format!("sample-{size}-{n}")).await?);
        }
        existing += samples;
        out.push((size, median(times)));
    }
    Ok(out)
}

/// A `serve --mode all` process on a socket in `dir`, for the benchmarks that go through gRPC.
struct Served {
    child: std::process::Child,
    endpoint: String,
}

impl Served {
    async fn start(dir: &Path) -> Result<Self> {
        let exe = std::env::current_exe().map_err(|e| Error::internal("cannot find this binary", e))?;
        let sock = dir.join("csi.sock");
        let child = std::process::Command::new(exe)
            .args([
                "serve",
                "--mode",
                "all",
                "--node-id",
                "bench-node",
                "--zone",
                "local-1a",
            ])
            .arg("--endpoint")
            .arg(format!("unix://{}", sock.display()))
            .arg("--data-dir")
            .arg(dir.join("data"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| Error::internal("cannot start serve", e))?;
        let served = Served {
            child,
            endpoint: format!("unix://{}", sock.display()),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while crate::client::connect(&served.endpoint).await.is_err() {
            if Instant::now() > deadline {
                return Err(Error::Unavailable("serve did not start listening".into()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(served)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of an idle `serve` process, in KiB, read from /proc once it is listening.
pub async fn idle_rss_kib(dir: &Path) -> Result<u64> {
    let served = Served::start(dir).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    match rss_kib(served.child.id()) {
        0 => Err(Error::Internal("/proc has no VmRSS for serve".into())),
        kib => Ok(kib),
    }
}

fn grpc(s: tonic::Status) -> Error {
    Error::Internal(format!("{:?}: {}", s.code(), s.message()))
}

/// One full cycle of a fresh 1 GiB ext4 volume through the driver, as the CO drives it.
async fn driver_cycle(
    controller: &mut crate::csi::controller_client::ControllerClient<tonic::transport::Channel>,
    node: &mut crate::csi::node_client::NodeClient<tonic::transport::Channel>,
    root: &Path,
    n: usize,
) -> Result<Duration> {
    let cap = mount_capability("ext4");
    let staging = root.join(format!("staging-{n}"));
    let target = root.join(format!("target-{n}"));
    let start = Instant::now();
    let mut req = create_request(format!("cycle-{n}")).into_inner();
    req.volume_capabilities = vec![cap.clone()];
    let vol = controller
        .create_volume(req)
        .await
        .map_err(grpc)?
        .into_inner()
        .volume
        .unwrap_or_default();
    let id = vol.volume_id;
    let publish = ControllerPublishVolumeRequest {
        volume_id: id.clone(),
        node_id: "bench-node".into(),
        volume_capability: Some(cap.clone()),
        ..Default::default()
    };
    let ctx = controller
        .controller_publish_volume(publish)
        .await
        .map_err(grpc)?
        .into_inner()
        .publish_context;
    let stage = NodeStageVolumeRequest {
        volume_id: id.clone(),
        publish_context: ctx.clone(),
        staging_target_path: staging.display().to_string(),
        volume_capability: Some(cap.clone()),
        ..Default::default()
    };
    node.node_stage_volume(stage).await.map_err(grpc)?;
    let publish = NodePublishVolumeRequest {
        volume_id: id.clone(),
        publish_context: ctx,
        staging_target_path: staging.display().to_string(),
        target_path: target.display().to_string(),
        volume_capability: Some(cap),
        ..Default::default()
    };
    node.node_publish_volume(publish).await.map_err(grpc)?;
    let unpublish = NodeUnpublishVolumeRequest {
        volume_id: id.clone(),
        target_path: target.display().to_string(),
    };
    node.node_unpublish_volume(unpublish).await.map_err(grpc)?;
    let unstage = NodeUnstageVolumeRequest {
        volume_id: id.clone(),
        staging_target_path: staging.display().to_string(),
    };
    node.node_unstage_volume(unstage).await.map_err(grpc)?;
    let detach = ControllerUnpublishVolumeRequest {
        volume_id: id.clone(),
        node_id: "bench-node".into(),
        ..Default::default()
    };
    controller.controller_unpublish_volume(detach).await.map_err(grpc)?;
    controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: id,
            ..Default::default()
        })
        .await
        .map_err(grpc)?;
    Ok(start.elapsed())
}

/// The same work with the raw commands: truncate, losetup, mkfs.ext4 -F -m0, mount, bind mount,
/// two umounts, losetup -d (and removing the image, as DeleteVolume does).
async fn raw_cycle(root: &Path, n: usize) -> Result<Duration> {
    use crate::os::run;
    let image = root.join(format!("raw-{n}.img"));
    let (staging, target) = (
        root.join(format!("raw-staging-{n}")),
        root.join(format!("raw-target-{n}")),
    );
    for d in [&staging, &target] {
        std::fs::create_dir_all(d).map_err(|e| Error::internal("mkdir", e))?;
    }
    let start = Instant::now();
    run("truncate", ["-s".as_ref(), "1G".as_ref(), image.as_os_str()]).await?;
    let dev = run("losetup", ["--find".as_ref(), "--show".as_ref(), image.as_os_str()]).await?;
    let dev = dev.trim().to_owned();
    run("mkfs.ext4", ["-F", "-m0", dev.as_str()]).await?;
    run("mount", [dev.as_ref(), staging.as_os_str()]).await?;
    run("mount", ["--bind".as_ref(), staging.as_os_str(), target.as_os_str()]).await?;
    run("umount", [target.as_os_str()]).await?;
    run("umount", [staging.as_os_str()]).await?;
    run("losetup", ["-d", dev.as_str()]).await?;
    std::fs::remove_file(&image).map_err(|e| Error::internal("rm", e))?;
    Ok(start.elapsed())
}

/// Median cycle time through the driver and with raw commands, interleaved run by run so both
/// see the same machine.
pub async fn cycle(dir: &Path, runs: usize) -> Result<(Duration, Duration)> {
    let served = Served::start(dir).await?;
    let channel = crate::client::connect(&served.endpoint).await?;
    let mut controller = crate::csi::controller_client::ControllerClient::new(channel.clone());
    let mut node = crate::csi::node_client::NodeClient::new(channel);
    let root = dir.join("mnt");
    std::fs::create_dir_all(&root).map_err(|e| Error::internal("mkdir", e))?;
    let (mut driver, mut raw) = (Vec::new(), Vec::new());
    for n in 0..runs {
        driver.push(driver_cycle(&mut controller, &mut node, &root, n).await?);
        raw.push(raw_cycle(&root, n).await?);
    }
    Ok((median(driver), median(raw)))
}

/// The figures of the aws bench.
#[cfg(feature = "aws")]
pub struct AwsFigures {
    pub ops: usize,
    pub callers: usize,
    pub per_second: f64,
    pub calls_per_create_delete: f64,
    pub create_delete_calls: std::collections::BTreeMap<String, u64>,
    pub publish_calls: u64,
    pub unpublish_calls: u64,
    pub idle_rss_kib: u64,
    /// Of the idle RSS, what is anonymous memory (the rest is the binary's clean, shared pages).
    pub idle_anon_kib: u64,
    pub peak_rss_kib: u64,
}

/// A process's resident memory in KiB (0 when /proc does not say).
fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// One KiB figure of /proc/PID/status (`VmRSS:`, `RssAnon:` …), 0 when absent.
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(feature = "aws")]
async fn scrape(addr: &str) -> Result<std::collections::BTreeMap<String, u64>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| Error::internal("metrics", e))?;
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .map_err(|e| Error::internal("metrics", e))?;
    let mut text = String::new();
    conn.read_to_string(&mut text)
        .await
        .map_err(|e| Error::internal("metrics", e))?;
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("ebs_csi_cloud_api_calls_total{operation=\""))
        .filter_map(|l| {
            let (op, n) = l.split_once("\"} ")?;
            Some((op.to_owned(), n.trim().parse().ok()?))
        })
        .collect())
}

/// A 1 GiB volume in `zone`, over gRPC.
#[cfg(feature = "aws")]
async fn create_in_zone(
    c: &mut crate::csi::controller_client::ControllerClient<tonic::transport::Channel>,
    name: String,
    zone: &TopologyRequirement,
) -> Result<Volume> {
    let mut req = create_request(name).into_inner();
    req.accessibility_requirements = Some(zone.clone());
    Ok(c.create_volume(req)
        .await
        .map_err(grpc)?
        .into_inner()
        .volume
        .unwrap_or_default())
}

#[cfg(feature = "aws")]
fn delta(
    after: &std::collections::BTreeMap<String, u64>,
    before: &std::collections::BTreeMap<String, u64>,
) -> std::collections::BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// CreateVolume+DeleteVolume throughput and EC2 calls against an EC2 endpoint (moto on
/// loopback), with `callers` concurrent callers; then the calls of one ControllerPublish and one
/// ControllerUnpublish, and the controller's memory idle and under load.
#[cfg(feature = "aws")]
pub async fn aws(dir: &Path, endpoint_url: &str, callers: usize, ops: usize) -> Result<AwsFigures> {
    use crate::csi::controller_client::ControllerClient;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let exe = std::env::current_exe().map_err(|e| Error::internal("cannot find this binary", e))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| Error::internal("port", e))?
        .port();
    let metrics = format!("127.0.0.1:{port}");
    let sock = dir.join("csi.sock");
    std::fs::create_dir_all(dir).map_err(|e| Error::internal("mkdir", e))?;
    let child = std::process::Command::new(exe)
        .args([
            "serve",
            "--mode",
            "controller",
            "--backend",
            "aws",
            "--http-endpoint",
            &metrics,
        ])
        .arg("--endpoint")
        .arg(format!("unix://{}", sock.display()))
        .env("AWS_ENDPOINT_URL", endpoint_url)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| Error::internal("cannot start serve", e))?;
    let mut served = Served {
        child,
        endpoint: format!("unix://{}", sock.display()),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let channel = loop {
        if let Ok(ch) = crate::client::connect(&served.endpoint).await {
            break ch;
        }
        if Instant::now() > deadline || served.child.try_wait().ok().flatten().is_some() {
            return Err(Error::Unavailable(format!(
                "serve --backend aws did not start against {endpoint_url}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = served.child.id();
    let idle_rss_kib = rss_kib(pid);
    let idle_anon_kib = status_kib(pid, "RssAnon:");

    let zone = TopologyRequirement {
        requisite: vec![Topology {
            segments: [("topology.kubernetes.io/zone".to_owned(), "us-east-1a".to_owned())].into(),
        }],
        preferred: vec![],
    };
    let next = std::sync::Arc::new(AtomicUsize::new(0));
    let peak = std::sync::Arc::new(AtomicUsize::new(idle_rss_kib as usize));
    let before = scrape(&metrics).await?;
    let start = Instant::now();
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(pid) as usize, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let (mut c, next, zone) = (ControllerClient::new(channel.clone()), next.clone(), zone.clone());
        tasks.push(tokio::spawn(async move {
            // Each caller takes the next pair number until all are taken.
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= ops {
                    break;
                }
                let v = create_in_zone(&mut c, format!("bench-{n}-{}", rand::random::<u32>()), &zone).await?;
                c.delete_volume(DeleteVolumeRequest {
                    volume_id: v.volume_id,
                    ..Default::default()
                })
                .await
                .map_err(grpc)?;
            }
            Ok::<(), Error>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| Error::internal("bench task", e))??;
    }
    let elapsed = start.elapsed();
    sampler.abort();
    let after = scrape(&metrics).await?;
    let create_delete_calls = delta(&after, &before);
    let total: u64 = create_delete_calls.values().sum();

    // One publish and one unpublish, after a warm-up pair on the same instance.
    let ec2 = {
        let conf = aws_sdk_ec2::Config::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .endpoint_url(endpoint_url)
            .region(aws_sdk_ec2::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                "bench", "bench", None, None, "bench",
            ))
            .build();
        aws_sdk_ec2::Client::from_conf(conf)
    };
    let inst = ec2
        .run_instances()
        .image_id("ami-12345678")
        .min_count(1)
        .max_count(1)
        .placement(
            aws_sdk_ec2::types::Placement::builder()
                .availability_zone("us-east-1a")
                .build(),
        )
        .send()
        .await
        .map_err(|e| Error::Internal(format!("RunInstances: {}", aws_sdk_ec2::error::DisplayErrorContext(&e))))?;
    let node = inst
        .instances()
        .first()
        .and_then(|i| i.instance_id())
        .unwrap_or_default()
        .to_owned();
    let mut c = ControllerClient::new(channel.clone());
    let mut counts = (0, 0);
    for round in 0..2 {
        let v = create_in_zone(&mut c, format!("bench-publish-{round}"), &zone).await?;
        let cap = Some(mount_capability(""));
        let b = scrape(&metrics).await?;
        let publish = ControllerPublishVolumeRequest {
            volume_id: v.volume_id.clone(),
            node_id: node.clone(),
            volume_capability: cap,
            ..Default::default()
        };
        c.controller_publish_volume(publish).await.map_err(grpc)?;
        let m = scrape(&metrics).await?;
        let unpublish = ControllerUnpublishVolumeRequest {
            volume_id: v.volume_id.clone(),
            node_id: node.clone(),
            ..Default::default()
        };
        c.controller_unpublish_volume(unpublish).await.map_err(grpc)?;
        let a = scrape(&metrics).await?;
        counts = (delta(&m, &b).values().sum(), delta(&a, &m).values().sum());
        c.delete_volume(DeleteVolumeRequest {
            volume_id: v.volume_id,
            ..Default::default()
        })
        .await
        .map_err(grpc)?;
    }
    let _ = &mut served;
    Ok(AwsFigures {
        ops,
        callers,
        per_second: ops as f64 / elapsed.as_secs_f64(),
        calls_per_create_delete: total as f64 / ops as f64,
        create_delete_calls: create_delete_calls.into_iter().collect(),
        publish_calls: counts.0,
        unpublish_calls: counts.1,
        idle_rss_kib,
        idle_anon_kib,
        peak_rss_kib: peak.load(Ordering::SeqCst) as u64,
    })
}
