//! The start-up taint: clusters that add `ebs.csi.aws.com/agent-not-ready` to new nodes keep
//! pods with volumes off a node until its driver can serve them. The node removes that taint
//! from its own Node once kubelet has registered the driver there (its CSINode lists the driver
//! with a volume limit), as the Go driver does; until then it keeps looking, backing off.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tracing::{debug, info, warn};

use super::kubernetes::InCluster;
use crate::error::{Error, Result};

/// The taint's key is the driver's name and this.
pub const NOT_READY_SUFFIX: &str = "/agent-not-ready";

const FIRST_DELAY: Duration = Duration::from_millis(500);
const MAX_DELAY: Duration = Duration::from_secs(30);
/// After this long the node stops looking and says so; the taint stays for someone to remove.
const GIVE_UP_AFTER: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// The Node has no such taint: nothing to do.
    Absent,
    /// kubelet has not registered the driver on this node yet.
    Waiting,
    Removed,
}

fn key_of(taint: &Value) -> Option<&str> {
    taint.get("key").and_then(Value::as_str)
}

async fn once(api: &InCluster, node: &str, driver: &str, key: &str) -> Result<Step> {
    let taints = api.node(node).await?.spec.taints;
    if !taints.iter().any(|t| key_of(t) == Some(key)) {
        return Ok(Step::Absent);
    }
    match api.csi_node(node).await {
        Ok(csi) if csi.registered(driver) => {}
        Ok(_) | Err(Error::NotFound(_)) => return Ok(Step::Waiting),
        Err(e) => return Err(e),
    }
    let keep: Vec<Value> = taints.iter().filter(|t| key_of(t) != Some(key)).cloned().collect();
    api.replace_taints(node, &taints, &keep).await?;
    Ok(Step::Removed)
}

/// Removes `<driver>/agent-not-ready` from Node `node` once the driver is registered there.
/// Outside a pod, or without a service-account token, there is no Node to change: it returns.
pub async fn remove_when_registered(account_dir: &Path, node: &str, driver: &str) {
    let key = format!("{driver}{NOT_READY_SUFFIX}");
    let api = match InCluster::from_env(account_dir) {
        Ok(api) if account_dir.join("token").is_file() => api,
        Ok(_) => {
            debug!("no service account token: the start-up taint is left to others");
            return;
        }
        Err(e) => {
            debug!(error = %e, "not in a Kubernetes pod: no start-up taint to remove");
            return;
        }
    };
    let started = tokio::time::Instant::now();
    let mut delay = FIRST_DELAY;
    loop {
        match once(&api, node, driver, &key).await {
            Ok(Step::Absent) => {
                debug!(node, taint = %key, "no start-up taint on the node");
                return;
            }
            Ok(Step::Removed) => {
                info!(node, taint = %key, "the driver is registered: start-up taint removed");
                return;
            }
            Ok(Step::Waiting) => debug!(node, "waiting for kubelet to register the driver"),
            // A patch that lost a race (ABORTED) is read again and retried like the rest.
            Err(e) => warn!(node, taint = %key, error = %e, "cannot remove the start-up taint yet"),
        }
        if started.elapsed() >= GIVE_UP_AFTER {
            warn!(node, taint = %key, "gave up removing the start-up taint after {GIVE_UP_AFTER:?}");
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_DELAY);
    }
}
