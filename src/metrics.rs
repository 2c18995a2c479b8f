//! Counts of cloud API calls by operation, served as Prometheus text on `--http-endpoint`
//! (`GET /metrics`), so an operator can see what each CSI call costs in EC2 calls.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::error::{Error, Result};

#[derive(Clone, Default)]
pub struct CallCounts {
    counts: Arc<Mutex<BTreeMap<&'static str, u64>>>,
}

impl CallCounts {
    pub fn inc(&self, operation: &'static str) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *c.entry(operation).or_default() += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn render(&self) -> String {
        let mut out = String::from(
            "# HELP ebs_csi_cloud_api_calls_total Cloud API calls made, by operation.\n\
             # TYPE ebs_csi_cloud_api_calls_total counter\n",
        );
        for (op, n) in self.snapshot() {
            out.push_str(&format!("ebs_csi_cloud_api_calls_total{{operation=\"{op}\"}} {n}\n"));
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
