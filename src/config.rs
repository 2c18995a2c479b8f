//! Driver options, from flags and the environment. Flag names follow the Go driver's where it
//! has them, so manifests written for it keep working.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

pub use crate::cloud::metadata::Source as MetadataSource;
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Controller,
    Node,
    All,
}

impl Mode {
    pub fn has_controller(self) -> bool {
        matches!(self, Mode::Controller | Mode::All)
    }
    pub fn has_node(self) -> bool {
        matches!(self, Mode::Node | Mode::All)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// Sparse files and loop devices on this machine.
    Local,
    /// Amazon EC2.
    Aws,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// Where to listen: unix:///path, unix:/path or tcp://host:port.
    #[arg(long, env = "CSI_ENDPOINT", default_value = "unix:///csi/csi.sock")]
    pub endpoint: String,
    /// Which CSI services to run.
    #[arg(long, value_enum, default_value = "all")]
    pub mode: Mode,
    /// Where volumes come from (aws: EC2, credentials from the default chain, e.g. IRSA).
    #[arg(long, value_enum, env = "EBS_CSI_BACKEND", default_value = "local")]
    pub backend: Backend,
    /// The local backend's state: its volume store, images and snapshots.
    #[arg(long, env = "EBS_CSI_DATA_DIR", default_value = "/var/lib/ebs-csi")]
    pub data_dir: PathBuf,
    /// The local backend's zones, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "local-1a,local-1b,local-1c")]
    pub zones: Vec<String>,
    /// This node's id (default: local, the Kubernetes node's name, else the host name; aws,
    /// the instance id from the metadata sources).
    #[arg(long)]
    pub node_id: Option<String>,
    /// The Kubernetes Node this pod runs on (the DaemonSet sets CSI_NODE_NAME from
    /// spec.nodeName): the local backend's default node id, and the Node the kubernetes
    /// metadata source reads.
    #[arg(long, env = "CSI_NODE_NAME")]
    pub kubernetes_node_name: Option<String>,
    /// Where an aws node learns its instance id, zone and type, tried in this order until one
    /// answers: imds (EC2 instance metadata), kubernetes (its Node object: spec.providerID and
    /// the zone and instance-type labels). Not asked when --node-id and --zone are given.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "imds,kubernetes")]
    pub metadata_sources: Vec<MetadataSource>,
    /// Where the pod's service-account token and the API server's CA are (the kubernetes
    /// metadata source); tests point it at files of their own.
    #[arg(
        long,
        env = "EBS_CSI_SERVICE_ACCOUNT_DIR",
        default_value = crate::cloud::kubernetes::SERVICE_ACCOUNT_DIR,
        hide = true
    )]
    pub service_account_dir: PathBuf,
    /// This node's zone (default: the first zone).
    #[arg(long)]
    pub zone: Option<String>,
    /// How many volumes this node can have attached (default: the backend's figure).
    #[arg(long)]
    pub volume_attach_limit: Option<u32>,
    /// This node's EC2 instance type (aws; default: from instance metadata).
    #[arg(long)]
    pub instance_type: Option<String>,
    /// How long, in seconds, a cloud call keeps retrying throttling and transient failures when
    /// the gRPC caller sent no deadline (with one, the deadline less half a second bounds it).
    #[arg(long, default_value_t = 60)]
    pub cloud_retry_budget: u64,
    /// How long the first change of a volume waits for others (a resize and a
    /// VolumeAttributesClass change) to become one EC2 ModifyVolume with it, e.g. 2s or 500ms.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub modify_volume_request_handler_timeout: std::time::Duration,
    /// Describe many volumes, instances and modifications in one EC2 call (aws); false sends one
    /// call per object.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub batching: bool,
    /// Text appended to the user agent of EC2 calls (aws).
    #[arg(long)]
    pub user_agent_extra: Option<String>,
    /// Log the AWS SDK's requests and responses at debug level (aws).
    #[arg(long)]
    pub aws_sdk_debug_log: bool,
    /// Attachments the node keeps for itself (the root disk, say): the attach limit it reports is
    /// lowered by this many. Ignored when --volume-attach-limit is given.
    #[arg(long)]
    pub reserved_volume_attachments: Option<u32>,
    /// Format xfs without bigtime, inobtcount and reflink, so kernels before 5.10 can mount it.
    #[arg(long)]
    pub legacy_xfs: bool,
    /// Drop an invalid --extra-tags entry with a warning instead of refusing to start.
    #[arg(long)]
    pub warn_on_invalid_tag: bool,
    /// Serve the metrics over TLS with this PEM certificate chain (with --metrics-key-file).
    #[arg(long, requires = "metrics_key_file")]
    pub metrics_cert_file: Option<PathBuf>,
    /// The PEM private key of --metrics-cert-file.
    #[arg(long, requires = "metrics_cert_file")]
    pub metrics_key_file: Option<PathBuf>,
    /// Serve Prometheus metrics (cloud API calls by operation) on this address, e.g. 0.0.0.0:3301.
    #[arg(long)]
    pub http_endpoint: Option<String>,
    /// Where udev's by-id links are (aws node); tests point it at a tree of their own.
    #[arg(long, env = "EBS_CSI_DEV_DISK_BY_ID", default_value = "/dev/disk/by-id", hide = true)]
    pub dev_disk_by_id: PathBuf,
    /// Where the block devices' sysfs entries are (aws node); tests point it at a tree of their own.
    #[arg(long, env = "EBS_CSI_SYS_BLOCK", default_value = "/sys/block", hide = true)]
    pub sys_block: PathBuf,
    /// Remove the `<driver-name>/agent-not-ready` taint from this node's Node object once kubelet
    /// has registered the driver (needs the node's service account: get and patch on nodes, get
    /// on csinodes). `--remove-not-ready-taint=false` leaves it alone.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub remove_not_ready_taint: bool,
    /// Where kubelet mounts CSI volumes (aws node): the EBS volumes mounted under it are the ones
    /// whose NVMe statistics the metrics endpoint reports.
    #[arg(long, default_value = "/var/lib/kubelet/plugins/kubernetes.io/csi/")]
    pub csi_mount_point_prefix: PathBuf,
    /// Read each device's EBS log page from DIR/<kernel name> instead of the device (aws node);
    /// tests, where no EBS NVMe device exists.
    #[arg(long, env = "EBS_CSI_NVME_LOG_PAGES", hide = true)]
    pub nvme_log_pages: Option<PathBuf>,
    /// The name the driver registers under.
    #[arg(long, default_value = "ebs.csi.aws.com")]
    pub driver_name: String,
    /// Tags added to every volume and snapshot: key=value,key=value.
    #[arg(long, default_value = "")]
    pub extra_tags: String,
    /// Tags volumes kubernetes.io/cluster/<id>=owned.
    #[arg(long)]
    pub k8s_tag_cluster_id: Option<String>,
    /// Log line format.
    #[arg(long, value_enum, default_value = "text")]
    pub logging_format: LogFormat,
    /// Log verbosity, klog style: 0–2 info, 3–4 debug, 5 and up trace.
    #[arg(short = 'v', long = "v", default_value_t = 2)]
    pub verbosity: u8,
}

/// Where the server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
}

impl Endpoint {
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || {
            Error::InvalidArgument(format!(
                "endpoint {text:?} is not unix:///path, unix:/path or tcp://host:port"
            ))
        };
        if let Some(rest) = text.strip_prefix("unix://") {
            // unix:///csi/csi.sock → /csi/csi.sock
            return if rest.starts_with('/') {
                Ok(Endpoint::Unix(rest.into()))
            } else {
                Err(bad())
            };
        }
        if let Some(rest) = text.strip_prefix("unix:") {
            return if rest.starts_with('/') {
                Ok(Endpoint::Unix(rest.into()))
            } else {
                Err(bad())
            };
        }
        if let Some(rest) = text.strip_prefix("tcp://") {
            return if rest
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            {
                Ok(Endpoint::Tcp(rest.to_owned()))
            } else {
                Err(bad())
            };
        }
        Err(bad())
    }
}

/// `k=v,k=v` → tags; an empty string is no tags.
/// `--extra-tags`; with `warn_only` (`--warn-on-invalid-tag`) an invalid entry is logged and
/// left out instead of stopping the driver.
pub fn parse_tags(text: &str, warn_only: bool) -> Result<BTreeMap<String, String>> {
    let mut tags = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match parse_tag(pair) {
            Ok((k, v)) => {
                tags.insert(k, v);
            }
            Err(e) if warn_only => tracing::warn!("{e}; left out (--warn-on-invalid-tag)"),
            Err(e) => return Err(e),
        }
    }
    Ok(tags)
}

fn parse_tag(pair: &str) -> Result<(String, String)> {
    let (k, v) = pair
        .split_once('=')
        .ok_or_else(|| Error::InvalidArgument(format!("extra tag {pair:?} is not key=value")))?;
    let k = k.trim();
    if k.is_empty() || k.len() > 128 || v.len() > 256 || k.to_ascii_lowercase().starts_with("aws:") {
        return Err(Error::InvalidArgument(format!(
            "extra tag {pair:?}: keys are 1–128 characters and may not start with aws:, values at most 256"
        )));
    }
    Ok((k.to_owned(), v.trim().to_owned()))
}

/// The host name, for a node id nobody gave.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_in_every_accepted_spelling() {
        assert_eq!(
            Endpoint::parse("unix:///csi/csi.sock").unwrap(),
            Endpoint::Unix("/csi/csi.sock".into())
        );
        assert_eq!(
            Endpoint::parse("unix:/csi/csi.sock").unwrap(),
            Endpoint::Unix("/csi/csi.sock".into())
        );
        assert_eq!(
            Endpoint::parse("tcp://127.0.0.1:10000").unwrap(),
            Endpoint::Tcp("127.0.0.1:10000".into())
        );
        for bad in [
            "",
            "/csi/csi.sock",
            "unix://relative",
            "tcp://nohost",
            "tcp://:1",
            "http://x:1",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn extra_tags() {
        let t = parse_tags("a=1, team=storage", false).unwrap();
        assert_eq!(t.get("team").map(String::as_str), Some("storage"));
        assert_eq!(t.len(), 2);
        assert!(parse_tags("", false).unwrap().is_empty());
        assert!(parse_tags("novalue", false).is_err());
        assert!(parse_tags("aws:x=1", false).is_err());
        // --warn-on-invalid-tag: the bad entries are left out, the good ones kept.
        let t = parse_tags("team=storage,novalue,aws:x=1", true).unwrap();
        assert_eq!(
            t.into_iter().collect::<Vec<_>>(),
            vec![("team".to_owned(), "storage".to_owned())]
        );
    }
}
