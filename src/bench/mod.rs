//! `ebs-csi bench`: the figures docs/benchmarks.md records. Each run makes its own data dir
//! and cleans it up.

pub mod charts;
#[cfg(feature = "aws")]
mod faults;
#[cfg(feature = "aws")]
mod on_aws;
mod report;

#[cfg(feature = "aws")]
pub use self::faults::{FaultFigures, aws_faults};
#[cfg(feature = "aws")]
pub use self::on_aws::{AwsFigures, aws};
pub use self::report::{print_aws, print_aws_faults, print_local};

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cloud::local::LocalCloud;
use crate::controller::{ControllerService, Options};
use crate::csi::controller_server::Controller;
use crate::csi::volume_capability::{AccessMode, AccessType, MountVolume, access_mode::Mode};
use crate::csi::*;
use crate::error::{Error, Result};
use crate::progress::Progress;

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

/// CreateVolume's latencies (through the controller service, on the local backend) when the
/// store already holds each of `sizes` volumes; `samples` creates are timed at each size.
pub async fn create_volume(dir: &Path, sizes: &[usize], samples: usize) -> Result<Vec<(usize, Vec<Duration>)>> {
    let cloud = Arc::new(LocalCloud::open(dir, Vec::new())?);
    let svc = ControllerService::new(cloud, Options::default());
    // Each size first fills the store up to it (unless the samples already did), then times.
    let (mut total, mut filled) = (0usize, 0usize);
    for &size in sizes {
        total += size.saturating_sub(filled) + samples;
        filled = filled.max(size) + samples;
    }
    let progress = Progress::new("CreateVolume", total as u64);
    let mut existing = 0usize;
    let mut out = Vec::new();
    for &size in sizes {
        progress.say(format!("filling the store to {size}"));
        while existing < size {
            create(&svc, format!("fill-{existing}")).await?;
            existing += 1;
            progress.step();
        }
        progress.say(format!("timing at {size} existing"));
        let mut times = Vec::with_capacity(samples);
        for n in 0..samples {
            times.push(create(&svc, format!("sample-{size}-{n}")).await?);
            progress.step();
        }
        existing += samples;
        out.push((size, times));
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

/// Cycle times through the driver and with raw commands, interleaved run by run so both see
/// the same machine.
pub async fn cycle(dir: &Path, runs: usize) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let served = Served::start(dir).await?;
    let channel = crate::client::connect(&served.endpoint).await?;
    let mut controller = crate::csi::controller_client::ControllerClient::new(channel.clone());
    let mut node = crate::csi::node_client::NodeClient::new(channel);
    let root = dir.join("mnt");
    std::fs::create_dir_all(&root).map_err(|e| Error::internal("mkdir", e))?;
    let progress = Progress::new("full volume cycles", runs as u64);
    let (mut driver, mut raw) = (Vec::new(), Vec::new());
    for n in 0..runs {
        driver.push(driver_cycle(&mut controller, &mut node, &root, n).await?);
        raw.push(raw_cycle(&root, n).await?);
        progress.step();
    }
    Ok((driver, raw))
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
