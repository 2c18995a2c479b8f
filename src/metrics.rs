//! Counts of cloud API calls by operation, served as Prometheus text on `--http-endpoint`
//! (`GET /metrics`), so an operator can see what each CSI call costs in EC2 calls, and how often
//! EC2 throttled them and the driver tried again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::error::{Error, Result};

type Counter = Arc<Mutex<BTreeMap<&'static str, u64>>>;

#[derive(Clone, Default)]
pub struct CallCounts {
    counts: Counter,
    throttles: Counter,
    retries: Counter,
}

fn bump(counter: &Counter, operation: &'static str) {
    let mut c = counter.lock().unwrap_or_else(|p| p.into_inner());
    *c.entry(operation).or_default() += 1;
}

fn read(counter: &Counter) -> BTreeMap<&'static str, u64> {
    counter.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

impl CallCounts {
    /// A call sent (every attempt counts).
    pub fn inc(&self, operation: &'static str) {
        bump(&self.counts, operation);
    }

    /// A call the cloud refused for its request rate.
    pub fn throttled(&self, operation: &'static str) {
        bump(&self.throttles, operation);
    }

    /// A call sent again after a transient failure.
    pub fn retried(&self, operation: &'static str) {
        bump(&self.retries, operation);
    }

    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        read(&self.counts)
    }

    pub fn throttles(&self) -> BTreeMap<&'static str, u64> {
        read(&self.throttles)
    }

    pub fn retries(&self) -> BTreeMap<&'static str, u64> {
        read(&self.retries)
    }

    pub fn render(&self) -> String {
        let mut out = String::from(
            "# HELP ebs_csi_cloud_api_calls_total Cloud API calls made, by operation.\n\
             # TYPE ebs_csi_cloud_api_calls_total counter\n",
        );
        for (op, n) in self.snapshot() {
            out.push_str(&format!("ebs_csi_cloud_api_calls_total{{operation=\"{op}\"}} {n}\n"));
        }
        // The throttle counter keeps the Go driver's name and label, for existing dashboards.
        out.push_str(
            "# HELP aws_ebs_csi_api_request_throttles_total Cloud API calls refused for their rate.\n\
             # TYPE aws_ebs_csi_api_request_throttles_total counter\n",
        );
        for (op, n) in self.throttles() {
            out.push_str(&format!(
                "aws_ebs_csi_api_request_throttles_total{{request=\"{op}\"}} {n}\n"
            ));
        }
        out.push_str(
            "# HELP ebs_csi_cloud_api_retries_total Cloud API calls sent again after a transient failure.\n\
             # TYPE ebs_csi_cloud_api_retries_total counter\n",
        );
        for (op, n) in self.retries() {
            out.push_str(&format!("ebs_csi_cloud_api_retries_total{{operation=\"{op}\"}} {n}\n"));
        }
        out
    }
}

/// Serves `GET /metrics` on `addr` until the process ends.
pub async fn serve(addr: &str, counts: CallCounts) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| Error::internal(format!("cannot listen on {addr}"), e))?;
    info!(address = addr, "serving metrics");
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            let counts = counts.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let n = conn.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]);
                let (status, body) = if request.starts_with("GET /metrics ") {
                    ("200 OK", counts.render())
                } else {
                    ("404 Not Found", "only /metrics is served here\n".to_owned())
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                if let Err(e) = conn.write_all(response.as_bytes()).await {
                    warn!(error = %e, "metrics response not sent");
                }
            });
        }
    });
    Ok(())
}
