//! Instance metadata over IMDSv2 (a session token first, then the values), for the node service:
//! which instance, zone, region and type this node is. IMDS is plain HTTP on a link-local
//! address, so a few lines of HTTP/1.1 do, without a client library.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Result};

const TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceMetadata {
    pub instance_id: String,
    pub zone: String,
    pub region: String,
    pub instance_type: String,
    /// Network interfaces attached (they share attachment slots on Nitro).
    pub enis: u32,
    /// Instance-store volumes in the block device mapping.
    pub instance_store: u32,
}

/// The IMDS endpoint: AWS_EC2_METADATA_SERVICE_ENDPOINT (as the SDKs read it) or the usual one.
pub fn endpoint() -> String {
    std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT").unwrap_or_else(|_| "http://169.254.169.254".into())
}

async fn http(host_port: &str, method: &str, path: &str, header: (&str, &str)) -> Result<(u16, String)> {
    let io = async {
        let mut conn = TcpStream::connect(host_port).await?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host_port}\r\n{}: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            header.0, header.1
        );
        conn.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        conn.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(TIMEOUT, io)
        .await
        .map_err(|_| {
            Error::Unavailable(format!(
                "IMDS at {host_port} did not answer {method} {path} within {TIMEOUT:?}"
            ))
        })?
        .map_err(|e| Error::Unavailable(format!("IMDS at {host_port}: {e}")))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, body.to_owned()))
}

pub struct Imds {
    host_port: String,
    token: String,
}

impl Imds {
    /// Gets a session token. A container behind the default hop limit of 1 never sees the
    /// answer: that is said plainly, with the fixes.
    pub async fn connect(endpoint: &str) -> Result<Self> {
        let host_port = endpoint.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let answer = http(
            &host_port,
            "PUT",
            "/latest/api/token",
            ("X-aws-ec2-metadata-token-ttl-seconds", "21600"),
        )
        .await;
        let token = match answer {
            Ok((200, body)) => body.trim().to_owned(),
            Ok((status, _)) => {
                return Err(Error::Unavailable(format!(
                    "IMDS refused a session token (HTTP {status}); is IMDSv2 enabled?"
                )));
            }
            Err(e) => {
                return Err(Error::Unavailable(format!(
                    "{e}. In a pod, the instance's metadata hop limit must be at least 2 \
                     (aws ec2 modify-instance-metadata-options --http-put-response-hop-limit 2)"
                )));
            }
        };
        Ok(Imds { host_port, token })
    }

    pub async fn get(&self, path: &str) -> Result<String> {
        let (status, body) = http(
            &self.host_port,
            "GET",
            &format!("/latest/meta-data/{path}"),
            ("X-aws-ec2-metadata-token", &self.token),
        )
        .await?;
        if status != 200 {
            return Err(Error::Unavailable(format!("IMDS answered HTTP {status} for {path}")));
        }
        Ok(body.trim().to_owned())
    }

    pub async fn instance(&self) -> Result<InstanceMetadata> {
        let zone = self.get("placement/availability-zone").await?;
        let region = match self.get("placement/region").await {
            Ok(r) => r,
            Err(_) => zone.trim_end_matches(|c: char| c.is_ascii_alphabetic()).to_owned(),
        };
        let macs = self.get("network/interfaces/macs/").await.unwrap_or_default();
        let mapping = self.get("block-device-mapping/").await.unwrap_or_default();
        Ok(InstanceMetadata {
            instance_id: self.get("instance-id").await?,
            zone,
            region,
            instance_type: self.get("instance-type").await?,
            enis: macs.lines().filter(|l| !l.trim().is_empty()).count().max(1) as u32,
            instance_store: mapping.lines().filter(|l| l.trim().starts_with("ephemeral")).count() as u32,
        })
    }
}
