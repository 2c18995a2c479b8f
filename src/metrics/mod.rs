//! The driver's Prometheus metrics, served on `--http-endpoint` (`GET /metrics`): what each EC2
//! call costs and how it went (under the Go driver's names, so existing dashboards keep working),
//! every CSI call by method and code, and per-volume I/O where the backend can read it.

mod io;
mod serve;
mod tls;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub use self::io::{Attached, EbsOnly, NvmeScrapes, VolumeIo, VolumeIoCollector};
pub use self::serve::serve;
pub use self::tls::server_config;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Operation {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Request {
    request: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestError {
    request: String,
    error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Detach {
    volume_id: String,
    instance_id: String,
    attachment_state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Rpc {
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Method {
    method: String,
}

/// Seconds, from 5 ms to about 80 s: an EC2 call or a CSI call (a create waits for `available`).
fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.005, 2.0, 15)
}

fn histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

struct Inner {
    registry: Mutex<Registry>,
    cloud_calls: Family<Operation, Counter>,
    retries: Family<Operation, Counter>,
    throttles: Family<Request, Counter>,
    api_duration: Family<Request, Histogram, fn() -> Histogram>,
    api_errors: Family<RequestError, Counter>,
    detach_pending: Family<Detach, Counter<f64, std::sync::atomic::AtomicU64>>,
    rpc_duration: Family<Rpc, Histogram, fn() -> Histogram>,
    rpc_in_flight: Family<Method, Gauge>,
}

/// The metrics of one driver process; clones share them.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl Default for Metrics {
    fn default() -> Self {
        let inner = Inner {
            registry: Mutex::new(Registry::default()),
            cloud_calls: Family::default(),
            retries: Family::default(),
            throttles: Family::default(),
            api_duration: Family::new_with_constructor(histogram),
            api_errors: Family::default(),
            detach_pending: Family::default(),
            rpc_duration: Family::new_with_constructor(histogram),
            rpc_in_flight: Family::default(),
        };
        {
            let mut r = inner.registry.lock().unwrap_or_else(|p| p.into_inner());
            // Counters get `_total` from the encoder.
            r.register(
                "ebs_csi_cloud_api_calls",
                "Cloud API calls sent (every attempt), by operation",
                inner.cloud_calls.clone(),
            );
            r.register(
                "ebs_csi_cloud_api_retries",
                "Cloud API calls sent again after a transient failure",
                inner.retries.clone(),
            );
            r.register(
                "aws_ebs_csi_api_request_throttles",
                "Cloud API calls refused for their rate, by request",
                inner.throttles.clone(),
            );
            r.register(
                "aws_ebs_csi_api_request_duration_seconds",
                "Duration of cloud API calls by request, in seconds",
                inner.api_duration.clone(),
            );
            r.register(
                "aws_ebs_csi_api_request_errors",
                "Cloud API calls that failed, by request and error code",
                inner.api_errors.clone(),
            );
            r.register(
                "aws_ebs_csi_ec2_detach_pending_seconds",
                "Seconds spent waiting for volumes to detach, by volume, instance and last state seen",
                inner.detach_pending.clone(),
            );
            r.register(
                "ebs_csi_rpc_duration_seconds",
                "Duration of the CSI calls this driver served, by method and gRPC code, in seconds",
                inner.rpc_duration.clone(),
            );
            r.register(
                "ebs_csi_rpcs_in_flight",
                "CSI calls being served now, by method",
                inner.rpc_in_flight.clone(),
            );
        }
        Metrics(Arc::new(inner))
    }
}

fn operation(name: &str) -> Operation {
    Operation {
        operation: name.to_owned(),
    }
}

fn request(name: &str) -> Request {
    Request {
        request: name.to_owned(),
    }
}

impl Metrics {
    /// A cloud call sent (every attempt counts).
    pub fn inc(&self, op: &'static str) {
        self.0.cloud_calls.get_or_create(&operation(op)).inc();
    }

    /// A cloud call the cloud refused for its request rate.
    pub fn throttled(&self, op: &'static str) {
        self.0.throttles.get_or_create(&request(op)).inc();
    }

    /// A cloud call sent again after a transient failure.
    pub fn retried(&self, op: &'static str) {
        self.0.retries.get_or_create(&operation(op)).inc();
    }

    /// One cloud call's answer: how long it took and, when it failed, the cloud's error code.
    pub fn answered(&self, op: &'static str, took: Duration, error: Option<&str>) {
        self.0
            .api_duration
            .get_or_create(&request(op))
            .observe(took.as_secs_f64());
        if let Some(code) = error {
            let labels = RequestError {
                request: op.to_owned(),
                error: if code.is_empty() {
                    "Unknown".to_owned()
                } else {
                    code.to_owned()
                },
            };
            self.0.api_errors.get_or_create(&labels).inc();
        }
    }

    /// Time spent waiting for a volume to leave an instance, with the state last seen.
    pub fn detach_waited(&self, volume: &str, instance: &str, state: &str, waited: Duration) {
        let labels = Detach {
            volume_id: volume.to_owned(),
            instance_id: instance.to_owned(),
            attachment_state: state.to_owned(),
        };
        self.0
            .detach_pending
            .get_or_create(&labels)
            .inc_by(waited.as_secs_f64());
    }

    /// A CSI call starts: counted in flight until the returned guard is dropped.
    pub fn rpc_started(&self, method: &str) -> InFlight {
        let gauge = self
            .0
            .rpc_in_flight
            .get_or_create(&Method {
                method: method.to_owned(),
            })
            .clone();
        gauge.inc();
        InFlight(gauge)
    }

    /// A CSI call ended with gRPC `code` after `took`.
    pub fn rpc_finished(&self, method: &str, code: &str, took: Duration) {
        let labels = Rpc {
            method: method.to_owned(),
            code: code.to_owned(),
        };
        self.0.rpc_duration.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// How long each read of the node's EBS log pages takes, under the Go driver's name with
    /// the instance as a constant label; the caller observes into what is returned.
    pub fn nvme_scrape_duration(&self, instance_id: &str) -> Histogram {
        let buckets = [
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let histogram = Histogram::new(buckets);
        let mut r = self.0.registry.lock().unwrap_or_else(|p| p.into_inner());
        r.sub_registry_with_label(("instance_id".into(), instance_id.to_owned().into()))
            .register(
                "aws_ebs_csi_nvme_collector_duration_seconds",
                "Seconds each read of the EBS NVMe log pages took",
                histogram.clone(),
            );
        histogram
    }

    /// Adds what a backend reads at each scrape (per-volume I/O, attachments per node).
    pub fn add_collector(&self, collector: impl prometheus_client::collector::Collector) {
        let mut r = self.0.registry.lock().unwrap_or_else(|p| p.into_inner());
        r.register_collector(Box::new(collector));
    }

    /// The OpenMetrics text of every metric.
    pub fn render(&self) -> String {
        let r = self.0.registry.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        // Writing into a String cannot fail; a collector that fails leaves what it wrote.
        let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        out
    }
}

/// Keeps one CSI call counted in flight.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}
