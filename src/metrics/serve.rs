//! The metrics endpoint: a small HTTP/1.1 server answering `GET /metrics`, plain or over TLS.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use super::Metrics;
use crate::error::{Error, Result};

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `GET /metrics` on `addr` until the process ends; over TLS when `tls` is given.
pub async fn serve(addr: &str, metrics: Metrics, tls: Option<Arc<rustls::ServerConfig>>) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| Error::internal(format!("cannot listen on {addr}"), e))?;
    info!(address = addr, tls = tls.is_some(), "serving metrics");
    let acceptor = tls.map(TlsAcceptor::from);
    tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    None => answer(conn, metrics).await,
                    Some(acceptor) => match acceptor.accept(conn).await {
                        Ok(tls) => answer(tls, metrics).await,
                        Err(e) => warn!(error = %e, "metrics TLS handshake failed"),
                    },
                }
            });
        }
    });
    Ok(())
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut conn: S, metrics: Metrics) {
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
    let _ = conn.shutdown().await;
}
