//! `ebs-csi bench`'s output: the figures printed as docs/benchmarks.md records them, and the
//! charts `--svg DIR` draws.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::charts::{self, Series};
use crate::error::{Error, Result};

#[cfg(not(feature = "aws"))]
fn without_aws() -> Error {
    Error::InvalidArgument("this ebs-csi was built without the aws feature".into())
}

/// `ebs-csi bench` on the local backend: prints the figures docs/benchmarks.md records and,
/// with `svg`, draws them there.
pub async fn print_local(existing: &[usize], samples: usize, cycles: usize, svg: Option<&Path>) -> Result<()> {
    // A directory that cannot be made fails now, not after minutes of measuring.
    if let Some(out) = svg {
        std::fs::create_dir_all(out).map_err(|e| Error::InvalidArgument(format!("--svg {}: {e}", out.display())))?;
    }
    let dir = tempfile_dir()?;
    let result = local(&dir, existing, samples, cycles, svg).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn local(dir: &Path, existing: &[usize], samples: usize, cycles: usize, svg: Option<&Path>) -> Result<()> {
    let figures = super::create_volume(&dir.join("create"), existing, samples).await?;
    println!("CreateVolume on local, median of {samples} creates (1 GiB gp3), by volumes already in the store:");
    let median = |v: &[Duration]| {
        let mut sorted = v.to_vec();
        sorted.sort();
        charts::percentile(&sorted, 50.0)
    };
    let base = figures.first().map(|(_, v)| median(v).as_secs_f64()).unwrap_or(0.0);
    for (size, times) in &figures {
        let m = median(times).as_secs_f64();
        let ratio = if base > 0.0 { m / base } else { 0.0 };
        println!("  {size:>7} existing: {:>8.3} ms  ({ratio:.2} x the first)", m * 1e3);
    }
    let (driver, raw) = super::cycle(&dir.join("cycle"), cycles).await?;
    let (d, r) = (median(&driver).as_secs_f64(), median(&raw).as_secs_f64());
    println!(
        "full cycle of a fresh 1 GiB ext4 volume, median of {cycles}: driver {:.1} ms, raw commands {:.1} ms ({:.2} x)",
        d * 1e3,
        r * 1e3,
        d / r.max(1e-9)
    );
    let rss = super::idle_rss_kib(&dir.join("rss")).await?;
    println!(
        "idle RSS of `serve --mode all --backend local`: {:.1} MiB",
        rss as f64 / 1024.0
    );
    if let Some(out) = svg {
        let series: Vec<Series> = figures
            .iter()
            .map(|(size, samples)| Series {
                label: format!("{size} existing"),
                samples: samples.clone(),
            })
            .collect();
        let drawn = [
            ("create-latency.svg", {
                let path = out.join("create-latency.svg");
                charts::latency_cdf(&path, "CreateVolume latency on local, by volumes in the store", &series)
            }),
            ("create-scaling.svg", {
                let path = out.join("create-scaling.svg");
                charts::scaling(
                    &path,
                    "CreateVolume latency as the local store grows",
                    "volumes already in the store",
                    &figures,
                )
            }),
            ("cycle.svg", {
                let path = out.join("cycle.svg");
                let cycle = [
                    Series {
                        label: "driver (gRPC)".into(),
                        samples: driver,
                    },
                    Series {
                        label: "raw commands".into(),
                        samples: raw,
                    },
                ];
                charts::latency_cdf(&path, "Full cycle of a fresh 1 GiB ext4 volume", &cycle)
            }),
        ];
        for (name, result) in drawn {
            result?;
            println!("drew {}", out.join(name).display());
        }
    }
    Ok(())
}

#[cfg(feature = "aws")]
pub async fn print_aws(url: &str, callers: usize, operations: usize) -> Result<()> {
    let dir = tempfile_dir()?;
    let result = super::aws(&dir, url, callers, operations).await;
    let _ = std::fs::remove_dir_all(&dir);
    let f = result?;
    println!(
        "aws backend against {url}: {} CreateVolume+DeleteVolume pairs, {} concurrent callers",
        f.ops, f.callers
    );
    println!("  {:.1} create+delete per second", f.per_second);
    println!(
        "  {:.2} EC2 calls per create+delete: {:?}",
        f.calls_per_create_delete, f.create_delete_calls
    );
    println!(
        "  ControllerPublishVolume: {} EC2 calls; ControllerUnpublishVolume: {}",
        f.publish_calls, f.unpublish_calls
    );
    println!(
        "  controller RSS: {:.1} MiB idle ({:.1} MiB of it anonymous), {:.1} MiB peak under load",
        f.idle_rss_kib as f64 / 1024.0,
        f.idle_anon_kib as f64 / 1024.0,
        f.peak_rss_kib as f64 / 1024.0
    );
    Ok(())
}

#[cfg(not(feature = "aws"))]
pub async fn print_aws(_url: &str, _callers: usize, _operations: usize) -> Result<()> {
    Err(without_aws())
}

#[cfg(feature = "aws")]
pub async fn print_aws_faults(
    moto: &str,
    proxy: &str,
    callers: usize,
    volumes: usize,
    svg: Option<&Path>,
) -> Result<()> {
    let dir = tempfile_dir()?;
    let result = super::aws_faults(&dir, moto, proxy, callers, volumes).await;
    let _ = std::fs::remove_dir_all(&dir);
    let f = result?;
    let s = &f.proxy_settings;
    let secs = |d: std::time::Duration| d.as_secs_f64();
    println!(
        "aws backend through the fault proxy {proxy} (moto at {moto}): {} CreateVolume, {} concurrent callers",
        f.volumes, f.callers
    );
    println!(
        "  proxy: +{} ms per call, {} % of calls throttled, {} % of CreateVolume answers lost, volumes creating for {} s",
        s["latency_ms"], s["throttle_percent"], s["lose_create_percent"], s["creating_seconds"]
    );
    println!("  callers: a 10 s deadline per call (grpc-timeout); after an error 1 s, doubling, same name");
    println!(
        "  create latency, first attempt to answer: median {:.3} s, p90 {:.3} s, max {:.3} s",
        secs(f.percentile(50.0)),
        secs(f.percentile(90.0)),
        secs(f.latencies.last().copied().unwrap_or_default())
    );
    let deciles: Vec<String> = (1..10)
        .map(|d| format!("{:.2}", secs(f.percentile(d as f64 * 10.0))))
        .collect();
    println!("  deciles (s): {}", deciles.join(" "));
    println!(
        "  errors surfaced to the callers: {} {:?}",
        f.errors_surfaced(),
        f.errors
    );
    for (code, message) in &f.error_examples {
        println!("    first {code}: {message}");
    }
    if f.failed > 0 {
        println!("  names not created within the bench's attempts: {}", f.failed);
    }
    println!(
        "  answered while the proxy still reported the volume creating: {}",
        f.answered_creating
    );
    println!(
        "  volumes in moto: {} duplicates, {} answered names missing",
        f.duplicates, f.missing
    );
    println!(
        "  driver: {} throttles, {} retries; EC2 calls {:?}",
        f.throttles, f.retries, f.calls
    );
    println!(
        "  proxy: {} calls, {} throttled, {} CreateVolume answers lost",
        f.proxy_calls, f.proxy_throttled, f.proxy_lost
    );
    let available = s["creating_seconds"].as_f64().unwrap_or(0.0);
    let met = f.errors_surfaced() == 0 && f.failed == 0 && secs(f.percentile(50.0)) <= available + 0.3;
    println!(
        "  target (0 errors surfaced, median within 0.3 s of {available} s): {}",
        if met { "met" } else { "not met" }
    );
    if let Some(out) = svg {
        let path = out.join("aws-faults-latency.svg");
        let series = [Series {
            label: "CreateVolume, first attempt to answer".into(),
            samples: f.latencies.clone(),
        }];
        charts::latency_cdf(
            &path,
            "aws backend through the fault proxy: CreateVolume latency",
            &series,
        )?;
        println!("drew {}", path.display());
    }
    Ok(())
}

#[cfg(not(feature = "aws"))]
pub async fn print_aws_faults(
    _moto: &str,
    _proxy: &str,
    _callers: usize,
    _volumes: usize,
    _svg: Option<&Path>,
) -> Result<()> {
    Err(without_aws())
}

/// A fresh directory under the system temp dir.
fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("ebs-csi-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::internal("cannot make the bench's temp dir", e))?;
    Ok(dir)
}
