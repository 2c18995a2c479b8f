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

/// The driver's Prometheus text from `addr` (`--http-endpoint`).
#[cfg(feature = "aws")]
async fn metrics_text(addr: &str) -> Result<String> {
    http_get(addr, "/metrics").await
}

/// The body of a plain HTTP/1.1 GET (the connection closed after it).
#[cfg(feature = "aws")]
async fn http_get(addr: &str, path: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| Error::internal(format!("GET {addr}{path}"), e))?;
    conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .map_err(|e| Error::internal(format!("GET {addr}{path}"), e))?;
    let mut text = String::new();
    conn.read_to_string(&mut text)
        .await
        .map_err(|e| Error::internal(format!("GET {addr}{path}"), e))?;
    Ok(text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or(text))
}

/// EC2 calls by operation, from the driver's metrics.
#[cfg(feature = "aws")]
async fn scrape(addr: &str) -> Result<std::collections::BTreeMap<String, u64>> {
    Ok(metrics_text(addr)
        .await?
        .lines()
        .filter_map(|l| l.strip_prefix("ebs_csi_cloud_api_calls_total{operation=\""))
        .filter_map(|l| {
            let (op, n) = l.split_once("\"} ")?;
            Some((op.to_owned(), n.trim().parse().ok()?))
        })
        .collect())
}

/// A counter of the driver's metrics text, summed over its labels.
#[cfg(feature = "aws")]
fn metric_sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.as_bytes().get(name.len()) == Some(&b'{'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
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

/// `serve --mode controller --backend aws` against `endpoint_url` on a socket in `dir`, serving
/// its metrics; answers the process, a channel to it once it listens, and the metrics address.
#[cfg(feature = "aws")]
async fn serve_aws(dir: &Path, endpoint_url: &str) -> Result<(Served, tonic::transport::Channel, String)> {
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
    Ok((served, channel, metrics))
}

/// An EC2 client of the bench's own, straight to `endpoint_url` (not through the driver).
#[cfg(feature = "aws")]
fn ec2_client(endpoint_url: &str) -> aws_sdk_ec2::Client {
    let conf = aws_sdk_ec2::Config::builder()
        .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
        .endpoint_url(endpoint_url)
        .region(aws_sdk_ec2::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "bench", "bench", None, None, "bench",
        ))
        .build();
    aws_sdk_ec2::Client::from_conf(conf)
}

/// The zone every bench volume is made in.
#[cfg(feature = "aws")]
fn bench_zone() -> TopologyRequirement {
    TopologyRequirement {
        requisite: vec![Topology {
            segments: [("topology.kubernetes.io/zone".to_owned(), "us-east-1a".to_owned())].into(),
        }],
        preferred: vec![],
    }
}

/// CreateVolume+DeleteVolume throughput and EC2 calls against an EC2 endpoint (moto on
/// loopback), with `callers` concurrent callers; then the calls of one ControllerPublish and one
/// ControllerUnpublish, and the controller's memory idle and under load.
#[cfg(feature = "aws")]
pub async fn aws(dir: &Path, endpoint_url: &str, callers: usize, ops: usize) -> Result<AwsFigures> {
    use crate::csi::controller_client::ControllerClient;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (mut served, channel, metrics) = serve_aws(dir, endpoint_url).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = served.child.id();
    let idle_rss_kib = rss_kib(pid);
    let idle_anon_kib = status_kib(pid, "RssAnon:");

    let zone = bench_zone();
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
    let ec2 = ec2_client(endpoint_url);
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

/// Each CreateVolume of the faults bench carries this deadline (`grpc-timeout`), as
/// external-provisioner's default `--timeout` sets one per call.
#[cfg(feature = "aws")]
const CALLER_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed CreateVolume the caller waits this long, then twice as long after each further
/// failure, as external-provisioner's `--retry-interval-start` does.
#[cfg(feature = "aws")]
const CALLER_FIRST_RETRY: Duration = Duration::from_secs(1);
/// Attempts per name before the bench stops trying it (the provisioner would go on).
#[cfg(feature = "aws")]
const CALLER_ATTEMPTS: usize = 8;

/// The figures of the aws bench behind the fault proxy.
#[cfg(feature = "aws")]
pub struct FaultFigures {
    pub volumes: usize,
    pub callers: usize,
    /// The proxy's settings, as it reports them.
    pub proxy_settings: serde_json::Value,
    /// Per volume created, from its first CreateVolume attempt to the successful answer, sorted.
    pub latencies: Vec<Duration>,
    /// Non-OK answers the callers got (each one surfaced to the CO), by gRPC code.
    pub errors: std::collections::BTreeMap<String, usize>,
    /// The first message seen for each code.
    pub error_examples: std::collections::BTreeMap<String, String>,
    /// Names not created within the bench's attempts.
    pub failed: usize,
    /// Volumes the driver answered for while the proxy still reported them `creating`.
    pub answered_creating: usize,
    /// Volumes in moto beyond one per name, and names answered for that have no volume there.
    pub duplicates: usize,
    pub missing: usize,
    /// From the driver's metrics, over the creates.
    pub throttles: u64,
    pub retries: u64,
    pub calls: std::collections::BTreeMap<String, u64>,
    /// What the proxy did: calls answered, throttled, and CreateVolume answers lost.
    pub proxy_calls: u64,
    pub proxy_throttled: u64,
    pub proxy_lost: u64,
}

#[cfg(feature = "aws")]
impl FaultFigures {
    /// The nearest-rank percentile `p` (0–100) of the latencies.
    pub fn percentile(&self, p: f64) -> Duration {
        let n = self.latencies.len();
        if n == 0 {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * n as f64).ceil().max(1.0) as usize;
        self.latencies[rank.min(n) - 1]
    }

    pub fn errors_surfaced(&self) -> usize {
        self.errors.values().sum()
    }
}

/// How one name's creation went, as its caller saw it.
#[cfg(feature = "aws")]
struct Outcome {
    name: String,
    /// The volume, the time from the first attempt, and the wall-clock time of the answer.
    created: Option<(String, Duration, std::time::SystemTime)>,
    /// (code, message) of each failed attempt.
    errors: Vec<(String, String)>,
}

/// One name created as external-provisioner creates it: each attempt with a deadline; after a
/// failure, a pause of 1 s, doubling, and the same request again.
#[cfg(feature = "aws")]
async fn provision(
    c: &mut crate::csi::controller_client::ControllerClient<tonic::transport::Channel>,
    name: String,
    zone: &TopologyRequirement,
) -> Outcome {
    let first = Instant::now();
    let mut pause = CALLER_FIRST_RETRY;
    let mut errors = Vec::new();
    for attempt in 1..=CALLER_ATTEMPTS {
        if attempt > 1 {
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
        let mut req = create_request(name.clone());
        req.get_mut().accessibility_requirements = Some(zone.clone());
        req.set_timeout(CALLER_TIMEOUT);
        // The deadline is the caller's too: an answer later than it is no answer.
        let answer = tokio::time::timeout(CALLER_TIMEOUT, c.create_volume(req)).await;
        match answer {
            Ok(Ok(r)) => {
                let id = r.into_inner().volume.unwrap_or_default().volume_id;
                return Outcome {
                    name,
                    created: Some((id, first.elapsed(), std::time::SystemTime::now())),
                    errors,
                };
            }
            Ok(Err(s)) => errors.push((format!("{:?}", s.code()), s.message().to_owned())),
            Err(_) => errors.push((
                "DeadlineExceeded".into(),
                "no answer within the caller's deadline".into(),
            )),
        }
    }
    Outcome {
        name,
        created: None,
        errors,
    }
}

/// CreateVolume latency and the errors surfaced to the caller, with the driver talking to EC2
/// through `proxy_url` (scripts/ec2-fault-proxy.py in front of moto at `moto_url`): `volumes`
/// names, `callers` at a time, each caller retrying as external-provisioner does. Duplicates are
/// counted in moto directly, and the proxy says when it made each volume available.
#[cfg(feature = "aws")]
pub async fn aws_faults(
    dir: &Path,
    moto_url: &str,
    proxy_url: &str,
    callers: usize,
    volumes: usize,
) -> Result<FaultFigures> {
    use crate::csi::controller_client::ControllerClient;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let proxy_addr = proxy_url.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let proxy_stats = || async {
        let text = http_get(&proxy_addr, "/_proxy/stats").await?;
        serde_json::from_str::<serde_json::Value>(&text).map_err(|e| Error::internal("the proxy's stats", e))
    };
    let settings = proxy_stats().await?["settings"].clone();

    // moto builds its EC2 backend on the first calls that need it, which takes seconds: done
    // here, straight to moto, so that no timed create pays for it.
    let moto = ec2_client(moto_url);
    let warm = moto
        .create_volume()
        .availability_zone("us-east-1a")
        .size(1)
        .send()
        .await
        .map_err(|e| {
            Error::Internal(format!(
                "CreateVolume in moto: {}",
                aws_sdk_ec2::error::DisplayErrorContext(&e)
            ))
        })?;
    if let Some(id) = warm.volume_id() {
        let _ = moto.delete_volume().volume_id(id).send().await;
    }

    let (served, channel, metrics) = serve_aws(dir, proxy_url).await?;
    let before = metrics_text(&metrics).await?;
    let proxy_before = proxy_stats().await?;
    let zone = bench_zone();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let (mut c, next, zone) = (ControllerClient::new(channel.clone()), next.clone(), zone.clone());
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= volumes {
                    break;
                }
                outcomes.push(provision(&mut c, format!("bench-faults-{n}"), &zone).await);
            }
            outcomes
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.extend(t.await.map_err(|e| Error::internal("bench task", e))?);
    }
    let after = metrics_text(&metrics).await?;
    drop(served);
    let stats = proxy_stats().await?;

    // Latencies, errors, and answers given before the proxy reported the volume available.
    let creating_for = settings["creating_seconds"].as_f64().unwrap_or(0.0);
    let made_at = &stats["volumes_created_at"];
    let mut figures = FaultFigures {
        volumes,
        callers,
        proxy_settings: settings.clone(),
        latencies: Vec::new(),
        errors: Default::default(),
        error_examples: Default::default(),
        failed: 0,
        answered_creating: 0,
        duplicates: 0,
        missing: 0,
        throttles: metric_sum(&after, "aws_ebs_csi_api_request_throttles_total")
            - metric_sum(&before, "aws_ebs_csi_api_request_throttles_total"),
        retries: metric_sum(&after, "ebs_csi_cloud_api_retries_total")
            - metric_sum(&before, "ebs_csi_cloud_api_retries_total"),
        calls: Default::default(),
        proxy_calls: 0,
        proxy_throttled: 0,
        proxy_lost: 0,
    };
    let ops = |text: &str| -> std::collections::BTreeMap<String, u64> {
        text.lines()
            .filter_map(|l| l.strip_prefix("ebs_csi_cloud_api_calls_total{operation=\""))
            .filter_map(|l| {
                let (op, n) = l.split_once("\"} ")?;
                Some((op.to_owned(), n.trim().parse().ok()?))
            })
            .collect()
    };
    figures.calls = delta(&ops(&after), &ops(&before));
    let sum = |v: &serde_json::Value| v.as_object().map_or(0, |m| m.values().filter_map(|n| n.as_u64()).sum());
    figures.proxy_calls = sum(&stats["calls"]) - sum(&proxy_before["calls"]);
    figures.proxy_throttled = sum(&stats["throttled"]) - sum(&proxy_before["throttled"]);
    figures.proxy_lost = sum(&stats["lost"]) - sum(&proxy_before["lost"]);
    let mut answered: std::collections::BTreeMap<String, String> = Default::default();
    for o in &outcomes {
        for (code, message) in &o.errors {
            *figures.errors.entry(code.clone()).or_default() += 1;
            figures
                .error_examples
                .entry(code.clone())
                .or_insert_with(|| message.clone());
        }
        let Some((id, took, at)) = &o.created else {
            figures.failed += 1;
            continue;
        };
        figures.latencies.push(*took);
        answered.insert(o.name.clone(), id.clone());
        let at = at
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        // A millisecond of slack for the proxy's two clocks (monotonic and wall).
        match made_at[id.as_str()].as_f64() {
            Some(made) if at - made < creating_for - 0.001 => figures.answered_creating += 1,
            _ => {}
        }
    }
    figures.latencies.sort();

    // One volume per name, counted in moto itself.
    let mut in_moto: std::collections::BTreeMap<String, usize> = Default::default();
    let mut token = None;
    loop {
        let out = moto
            .describe_volumes()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("tag-key")
                    .values("CSIVolumeName")
                    .build(),
            )
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| {
                Error::Internal(format!(
                    "DescribeVolumes in moto: {}",
                    aws_sdk_ec2::error::DisplayErrorContext(&e)
                ))
            })?;
        for v in out.volumes() {
            if let Some(t) = v.tags().iter().find(|t| t.key() == Some("CSIVolumeName")) {
                *in_moto.entry(t.value().unwrap_or_default().to_owned()).or_default() += 1;
            }
        }
        token = out.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    figures.duplicates = in_moto.values().map(|n| n.saturating_sub(1)).sum();
    figures.missing = answered.keys().filter(|name| !in_moto.contains_key(*name)).count();
    Ok(figures)
}
