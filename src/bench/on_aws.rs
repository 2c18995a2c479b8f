//! The aws bench: the driver against an EC2 endpoint (moto), callers in parallel, with the EC2
//! calls each operation costs and the driver's memory.

use super::*;

/// The figures of the aws bench.
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

/// The driver's Prometheus text from `addr` (`--http-endpoint`).
pub(super) async fn metrics_text(addr: &str) -> Result<String> {
    http_get(addr, "/metrics").await
}

/// The body of a plain HTTP/1.1 GET (the connection closed after it).
pub(super) async fn http_get(addr: &str, path: &str) -> Result<String> {
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
pub(super) async fn scrape(addr: &str) -> Result<std::collections::BTreeMap<String, u64>> {
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
pub(super) fn metric_sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.as_bytes().get(name.len()) == Some(&b'{'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A 1 GiB volume in `zone`, over gRPC.
pub(super) async fn create_in_zone(
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

pub(super) fn delta(
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
pub(super) async fn serve_aws(dir: &Path, endpoint_url: &str) -> Result<(Served, tonic::transport::Channel, String)> {
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
pub(super) fn ec2_client(endpoint_url: &str) -> aws_sdk_ec2::Client {
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
pub(super) fn bench_zone() -> TopologyRequirement {
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
