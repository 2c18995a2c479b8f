//! What backends report at each scrape: per-volume block I/O on a node, under the Go driver's
//! names and labels, and the volumes attached per node.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
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
type Column<N> = (&'static str, &'static str, fn(&VolumeIo) -> N);

fn counter<N: prometheus_client::encoding::EncodeCounterValue + Clone>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, N)],
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
        let ints: [Column<u64>; 4] = [
            ("aws_ebs_csi_read_ops", "Completed read operations", |v| v.read_ops),
            ("aws_ebs_csi_write_ops", "Completed write operations", |v| v.write_ops),
            ("aws_ebs_csi_read_bytes", "Bytes read", |v| v.read_bytes),
            ("aws_ebs_csi_write_bytes", "Bytes written", |v| v.write_bytes),
        ];
        for (name, help, value) in ints {
            let rows: Vec<_> = volumes.iter().map(|v| (labels(v), value(v))).collect();
            counter(&mut encoder, name, help, &rows)?;
        }
        let secs: [Column<f64>; 2] = [
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
        Ok(())
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
