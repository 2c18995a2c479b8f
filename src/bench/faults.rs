//! The fault bench: provisioner-style callers against the driver behind a proxy that throttles,
//! delays and loses EC2 answers; what they see, and what reached EC2.

use super::on_aws::*;
use super::*;

/// Each CreateVolume of the faults bench carries this deadline (`grpc-timeout`), as
/// external-provisioner's default `--timeout` sets one per call.
const CALLER_TIMEOUT: Duration = Duration::from_secs(10);

/// After a failed CreateVolume the caller waits this long, then twice as long after each further
/// failure, as external-provisioner's `--retry-interval-start` does.
const CALLER_FIRST_RETRY: Duration = Duration::from_secs(1);

/// Attempts per name before the bench stops trying it (the provisioner would go on).
const CALLER_ATTEMPTS: usize = 8;

/// The figures of the aws bench behind the fault proxy.
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
struct Outcome {
    name: String,
    /// The volume, the time from the first attempt, and the wall-clock time of the answer.
    created: Option<(String, Duration, std::time::SystemTime)>,
    /// (code, message) of each failed attempt.
    errors: Vec<(String, String)>,
}

/// One name created as external-provisioner creates it: each attempt with a deadline; after a
/// failure, a pause of 1 s, doubling, and the same request again.
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
