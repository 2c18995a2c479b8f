//! What backends report at each scrape: per-volume block I/O on a node, under the Go driver's
//! names and labels, and the volumes attached per node.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// One attached volume's I/O since it was attached, as the block layer counts it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VolumeIo {
    pub volume_id: String,
    pub instance_id: String,
    pub read_ops: u64,
    pub write_ops: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub read_seconds: f64,
    pub write_seconds: f64,
    /// I/Os in flight now.
    pub queue_length: u64,
    /// What only EBS itself reports (its NVMe log page); none for a loop device.
    pub ebs: Option<EbsOnly>,
}

/// The counters and histograms only an EBS volume reports about itself.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EbsOnly {
    pub exceeded_iops_seconds: f64,
    pub exceeded_throughput_seconds: f64,
    pub ec2_exceeded_iops_seconds: f64,
    pub ec2_exceeded_throughput_seconds: f64,
    /// Completed reads by latency: (upper bound in seconds, operations in that bin).
    pub read_latency: Vec<(f64, u64)>,
    pub write_latency: Vec<(f64, u64)>,
}

type Source<T> = Box<dyn Fn() -> Vec<T> + Send + Sync>;

/// Per-volume I/O read from `source` at each scrape.
pub struct VolumeIoCollector(Source<VolumeIo>);

impl VolumeIoCollector {
    pub fn new(source: impl Fn() -> Vec<VolumeIo> + Send + Sync + 'static) -> Self {
        VolumeIoCollector(Box::new(source))
    }
}

impl std::fmt::Debug for VolumeIoCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VolumeIoCollector")
    }
}

type Labels = [(&'static str, String); 2];
/// A metric's name, its help, and how to read it off a volume's figures.
type Column<T, N> = (&'static str, &'static str, fn(&T) -> N);

fn counter<L: prometheus_client::encoding::EncodeLabelSet, N: prometheus_client::encoding::EncodeCounterValue + Clone>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(L, N)],
) -> std::fmt::Result
where
    ConstCounter<N>: EncodeMetric,
{
    let first = ConstCounter::new(0u64);
    let mut family = encoder.encode_descriptor(name, help, None, first.metric_type())?;
    for (labels, value) in rows {
        ConstCounter::new(value.clone()).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for VolumeIoCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let volumes = (self.0)();
        let labels = |v: &VolumeIo| -> Labels {
            [
                ("volume_id", v.volume_id.clone()),
                ("instance_id", v.instance_id.clone()),
            ]
        };
        let ints: [Column<VolumeIo, u64>; 4] = [
            ("aws_ebs_csi_read_ops", "Completed read operations", |v| v.read_ops),
            ("aws_ebs_csi_write_ops", "Completed write operations", |v| v.write_ops),
            ("aws_ebs_csi_read_bytes", "Bytes read", |v| v.read_bytes),
            ("aws_ebs_csi_write_bytes", "Bytes written", |v| v.write_bytes),
        ];
        for (name, help, value) in ints {
            let rows: Vec<_> = volumes.iter().map(|v| (labels(v), value(v))).collect();
            counter(&mut encoder, name, help, &rows)?;
        }
        let secs: [Column<VolumeIo, f64>; 2] = [
            ("aws_ebs_csi_read_seconds", "Seconds spent on completed reads", |v| {
                v.read_seconds
            }),
            ("aws_ebs_csi_write_seconds", "Seconds spent on completed writes", |v| {
                v.write_seconds
            }),
        ];
        for (name, help, value) in secs {
            let rows: Vec<_> = volumes.iter().map(|v| (labels(v), value(v))).collect();
            counter(&mut encoder, name, help, &rows)?;
        }
        let gauge = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "aws_ebs_csi_volume_queue_length",
            "I/O operations in flight",
            None,
            gauge.metric_type(),
        )?;
        for v in &volumes {
            let n = i64::try_from(v.queue_length).unwrap_or(i64::MAX);
            ConstGauge::new(n).encode(family.encode_family(&labels(v))?)?;
        }
        let ebs: Vec<_> = volumes
            .iter()
            .filter_map(|v| Some((labels(v), v, v.ebs.as_ref()?)))
            .collect();
        if ebs.is_empty() {
            return Ok(());
        }
        let exceeded: [Column<EbsOnly, f64>; 4] = [
            (
                "aws_ebs_csi_exceeded_iops_seconds",
                "Seconds the volume's IOPS demand exceeded its provisioned IOPS",
                |e| e.exceeded_iops_seconds,
            ),
            (
                "aws_ebs_csi_exceeded_tp_seconds",
                "Seconds the volume's throughput demand exceeded its provisioned throughput",
                |e| e.exceeded_throughput_seconds,
            ),
            (
                "aws_ebs_csi_ec2_exceeded_iops_seconds",
                "Seconds the volume exceeded the instance's maximum IOPS",
                |e| e.ec2_exceeded_iops_seconds,
            ),
            (
                "aws_ebs_csi_ec2_exceeded_tp_seconds",
                "Seconds the volume exceeded the instance's maximum throughput",
                |e| e.ec2_exceeded_throughput_seconds,
            ),
        ];
        for (name, help, value) in exceeded {
            let rows: Vec<_> = ebs.iter().map(|(l, _, e)| (l.clone(), value(e))).collect();
            counter(&mut encoder, name, help, &rows)?;
        }
        type Latency = (&'static str, &'static str, fn(&VolumeIo, &EbsOnly) -> ConstHistogram);
        let histograms: [Latency; 2] = [
            (
                "aws_ebs_csi_read_io_latency_seconds",
                "Completed reads by latency",
                |v, e| ConstHistogram::new(v.read_seconds, &e.read_latency),
            ),
            (
                "aws_ebs_csi_write_io_latency_seconds",
                "Completed writes by latency",
                |v, e| ConstHistogram::new(v.write_seconds, &e.write_latency),
            ),
        ];
        for (name, help, value) in histograms {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for (l, v, e) in &ebs {
                value(v, e).encode(family.encode_family(l)?)?;
            }
        }
        Ok(())
    }
}

/// A histogram read whole from elsewhere (EBS keeps its own bins), not one we observe into.
struct ConstHistogram {
    sum: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl ConstHistogram {
    fn new(sum: f64, bins: &[(f64, u64)]) -> Self {
        let mut buckets = bins.to_vec();
        buckets.push((f64::MAX, 0));
        ConstHistogram {
            sum,
            count: bins.iter().map(|(_, n)| n).sum(),
            buckets,
        }
    }
}

impl EncodeMetric for ConstHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> std::fmt::Result {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Volumes attached per node, read from `source` at each scrape.
pub struct Attached(Source<(String, u64)>);

impl Attached {
    pub fn new(source: impl Fn() -> Vec<(String, u64)> + Send + Sync + 'static) -> Self {
        Attached(Box::new(source))
    }
}

impl std::fmt::Debug for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Attached")
    }
}

impl Collector for Attached {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let gauge = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "ebs_csi_volumes_attached",
            "Volumes attached, by node",
            None,
            gauge.metric_type(),
        )?;
        for (node, n) in (self.0)() {
            let labels = [("node", node)];
            ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX)).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// How the node's EBS log-page reads went: scrapes, and devices that could not be read.
pub struct NvmeScrapes(Box<dyn Fn() -> (String, u64, u64) + Send + Sync>);

impl NvmeScrapes {
    /// `source` gives the instance id, the scrapes so far and the failed reads so far.
    pub fn new(source: impl Fn() -> (String, u64, u64) + Send + Sync + 'static) -> Self {
        NvmeScrapes(Box::new(source))
    }
}

impl std::fmt::Debug for NvmeScrapes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NvmeScrapes")
    }
}

impl Collector for NvmeScrapes {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let (instance_id, scrapes, errors) = (self.0)();
        let labels = [("instance_id", instance_id)];
        let rows = [
            (
                "aws_ebs_csi_nvme_collector_scrapes",
                "Scrapes of the EBS NVMe log pages",
                scrapes,
            ),
            (
                "aws_ebs_csi_nvme_collector_errors",
                "EBS NVMe log pages that could not be read",
                errors,
            ),
        ];
        for (name, help, n) in rows {
            counter(&mut encoder, name, help, &[(labels.clone(), n)])?;
        }
        Ok(())
    }
}
