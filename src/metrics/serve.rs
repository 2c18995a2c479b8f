//! The metrics endpoint: a small HTTP/1.1 server answering `GET /metrics`.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::{info, warn};

use super::Metrics;
use crate::error::{Error, Result};

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `GET /metrics` on `addr` until the process ends.
pub async fn serve(addr: &str, metrics: Metrics) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| Error::internal(format!("cannot listen on {addr}"), e))?;
    info!(address = addr, "serving metrics");
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let n = conn.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]);
                let (status, kind, body) = if request.starts_with("GET /metrics ") {
                    // Collectors read sysfs and the local store: off the async threads.
                    let body = tokio::task::spawn_blocking(move || metrics.render())
                        .await
                        .unwrap_or_default();
                    ("200 OK", CONTENT_TYPE, body)
                } else {
                    (
                        "404 Not Found",
                        "text/plain",
                        "only /metrics is served here\n".to_owned(),
                    )
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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
