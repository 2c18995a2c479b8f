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

fn create_request(name: String) -> tonic::Request<CreateVolumeRequest> {
    tonic::Request::new(CreateVolumeRequest {
        name,
        capacity_range: Some(CapacityRange {
            required_bytes: 1 << 30,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![VolumeCapability {
            access_mode: Some(AccessMode {
                mode: Mode::SingleNodeWriter as i32,
            }),
            access_type: Some(AccessType::Mount(MountVolume::default())),
        }],
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

/// Resident memory of an idle `serve` process, in KiB, read from /proc once it is listening.
pub fn idle_rss_kib(dir: &Path) -> Result<u64> {
    let exe = std::env::current_exe().map_err(|e| Error::internal("cannot find this binary", e))?;
    let sock = dir.join("csi.sock");
    let mut child = std::process::Command::new(exe)
        .arg("serve")
        .arg("--endpoint")
        .arg(format!("unix://{}", sock.display()))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--node-id")
        .arg("bench-node")
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| Error::internal("cannot start serve", e))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(1));
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::Internal("serve did not start, or /proc has no VmRSS".into()))
}
