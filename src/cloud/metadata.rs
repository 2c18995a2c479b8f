//! Where an EC2 node learns who it is (`--metadata-sources`): instance metadata (IMDSv2), its
//! own Node object in the Kubernetes API, or both, tried in the order given; the first that
//! answers wins.

use std::fmt;
use std::path::Path;

use tracing::{info, warn};

use super::imds::{self, Imds, InstanceMetadata};
use super::kubernetes::{InCluster, instance_from_node};
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    /// EC2 instance metadata (IMDSv2).
    Imds,
    /// This node's Node object, from the in-cluster API server.
    Kubernetes,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Imds => "imds",
            Source::Kubernetes => "kubernetes",
        })
    }
}

/// What the kubernetes source needs: the Node's name (CSI_NODE_NAME) and where the pod's
/// service-account token and CA are.
pub struct KubernetesSettings<'a> {
    pub node_name: Option<&'a str>,
    pub account_dir: &'a Path,
}

/// Tries each source in order and returns the first answer; when none answers, one error
/// that names every source tried and why it failed.
pub async fn discover(order: &[Source], kube: &KubernetesSettings<'_>) -> Result<InstanceMetadata> {
    let mut failures = Vec::new();
    for source in order {
        info!(%source, "asking for this node's instance metadata");
        let answer = match source {
            Source::Imds => from_imds().await,
            Source::Kubernetes => from_kubernetes(kube).await,
        };
        match answer {
            Ok(me) => {
                info!(%source, instance = %me.instance_id, zone = %me.zone, "instance metadata found");
                return Ok(me);
            }
            Err(e) => {
                warn!(%source, error = %e, "metadata source did not answer");
                failures.push(format!("{source}: {e}"));
            }
        }
    }
    let tried: Vec<String> = order.iter().map(Source::to_string).collect();
    Err(Error::Unavailable(format!(
        "no metadata source answered (--metadata-sources={}): {}. Fix one of them, or give \
         --node-id, --zone and --instance-type",
        tried.join(","),
        failures.join("; ")
    )))
}

async fn from_imds() -> Result<InstanceMetadata> {
    // The AWS SDKs' switch for "there is no IMDS here"; the Go driver honours it too.
    if std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Err(Error::FailedPrecondition(
            "skipped: AWS_EC2_METADATA_DISABLED is true".into(),
        ));
    }
    Imds::connect(&imds::endpoint()).await?.instance().await
}

async fn from_kubernetes(kube: &KubernetesSettings<'_>) -> Result<InstanceMetadata> {
    let name = kube.node_name.filter(|n| !n.is_empty()).ok_or_else(|| {
        Error::FailedPrecondition(
            "CSI_NODE_NAME (or --kubernetes-node-name) is not set; the DaemonSet sets it from spec.nodeName".into(),
        )
    })?;
    let api = InCluster::from_env(kube.account_dir)?;
    let node = api.node(name).await?;
    instance_from_node(name, &node)
}
