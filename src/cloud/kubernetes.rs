//! The node's own Node object on the in-cluster API server, with the pod's service-account token,
//! over TLS checked against the service account's CA: its identity (`--metadata-sources`
//! `kubernetes`, for nodes that cannot reach IMDS), and the start-up taint the node removes
//! once kubelet has registered the driver (its CSINode, and one JSON patch of the taints).
//!
//! A few requests at start-up do not need a Kubernetes client library: hyper's HTTP/1.1 client
//! over tokio-rustls (both already linked for tonic and the metrics endpoint) and a serde struct
//! holding only the fields read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::Method;
use hyper::body::Bytes;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::imds::InstanceMetadata;
use crate::error::{Error, Result, shown};

/// Where kubelet mounts a pod's service-account token and the cluster's CA.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

const TIMEOUT: Duration = Duration::from_secs(10);
/// A Node object is a few kilobytes to a few hundred (its image list); more is not a Node.
const MAX_BODY: usize = 8 << 20;

pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
pub const ZONE_LABEL_BETA: &str = "failure-domain.beta.kubernetes.io/zone";
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";
pub const REGION_LABEL_BETA: &str = "failure-domain.beta.kubernetes.io/region";
pub const INSTANCE_TYPE_LABEL: &str = "node.kubernetes.io/instance-type";
pub const INSTANCE_TYPE_LABEL_BETA: &str = "beta.kubernetes.io/instance-type";
/// Written on Nodes by the Go driver's controller (its metadata labeler); read when present.
pub const ENIS_LABEL: &str = "ebs.csi.aws.com/enis-count";
pub const VOLUMES_LABEL: &str = "ebs.csi.aws.com/non-csi-ebs-volumes-count";

/// The part of a Node object read here.
#[derive(Debug, Deserialize)]
pub struct Node {
    #[serde(default)]
    pub metadata: NodeMeta,
    #[serde(default)]
    pub spec: NodeSpec,
}

#[derive(Debug, Default, Deserialize)]
pub struct NodeMeta {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct NodeSpec {
    #[serde(rename = "providerID", default)]
    pub provider_id: Option<String>,
    /// Kept whole: a patch that removes one taint must give the others back unchanged.
    #[serde(default)]
    pub taints: Vec<serde_json::Value>,
}

/// The part of a CSINode object read here: which drivers kubelet has registered on the node.
#[derive(Debug, Default, Deserialize)]
pub struct CsiNode {
    #[serde(default)]
    pub spec: CsiNodeSpec,
}

#[derive(Debug, Default, Deserialize)]
pub struct CsiNodeSpec {
    #[serde(default)]
    pub drivers: Vec<CsiNodeDriver>,
}

#[derive(Debug, Deserialize)]
pub struct CsiNodeDriver {
    pub name: String,
    #[serde(default)]
    pub allocatable: Option<serde_json::Value>,
}

impl CsiNode {
    /// Whether kubelet has registered `driver` here with its volume limit, so the scheduler
    /// counts attachments for it.
    pub fn registered(&self, driver: &str) -> bool {
        self.spec
            .drivers
            .iter()
            .any(|d| d.name == driver && d.allocatable.as_ref().is_some_and(|a| a.get("count").is_some()))
    }
}

/// The answer of a refusal (`kind: Status`), for its message.
#[derive(Debug, Deserialize)]
struct Status {
    #[serde(default)]
    message: String,
}

/// The API server this pod reaches, and where its credentials are.
pub struct InCluster {
    host: String,
    port: u16,
    account_dir: PathBuf,
}

impl InCluster {
    /// From `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT`, which kubelet sets in every
    /// container.
    pub fn from_env(account_dir: &Path) -> Result<Self> {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| {
                    Error::FailedPrecondition(format!("{name} is not set: this is not running in a Kubernetes pod"))
                })
        };
        let host = var("KUBERNETES_SERVICE_HOST")?.trim().to_owned();
        let port_text = var("KUBERNETES_SERVICE_PORT")?;
        let port = port_text.trim().parse::<u16>().map_err(|_| {
            Error::InvalidArgument(format!("KUBERNETES_SERVICE_PORT {} is not a port", shown(&port_text)))
        })?;
        Ok(InCluster {
            host,
            port,
            account_dir: account_dir.to_owned(),
        })
    }

    /// `host:port` as a URI authority (an IPv6 address in brackets).
    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn tls(&self) -> Result<Arc<rustls::ClientConfig>> {
        let ca = self.account_dir.join("ca.crt");
        let bad =
            |e: &dyn std::fmt::Display| Error::FailedPrecondition(format!("the API server's CA {}: {e}", ca.display()));
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&ca).map_err(|e| bad(&e))? {
            roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
        }
        if roots.is_empty() {
            return Err(bad(&"no certificate in it"));
        }
        // Named, not the process default: with the aws feature a second provider is linked in.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::internal("TLS versions", e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }

    /// Read for every request: projected tokens rotate (kubelet rewrites the file).
    fn token(&self) -> Result<HeaderValue> {
        let path = self.account_dir.join("token");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::FailedPrecondition(format!(
                "the service account token {}: {e} (is automountServiceAccountToken false?)",
                path.display()
            ))
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "the service account token {} is empty",
                path.display()
            )));
        }
        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            Error::FailedPrecondition(format!(
                "the service account token {} holds characters a header cannot carry",
                path.display()
            ))
        })
    }

    /// GET /api/v1/nodes/<name>.
    pub async fn node(&self, name: &str) -> Result<Node> {
        check_node_name(name)?;
        let path = format!("/api/v1/nodes/{name}");
        let body = self.call(Method::GET, &path, None).await?;
        serde_json::from_slice(&body)
            .map_err(|e| Error::Unavailable(format!("GET {path}: the answer is not a Node object: {e}")))
    }

    /// GET /apis/storage.k8s.io/v1/csinodes/<name>.
    pub async fn csi_node(&self, name: &str) -> Result<CsiNode> {
        check_node_name(name)?;
        let path = format!("/apis/storage.k8s.io/v1/csinodes/{name}");
        let body = self.call(Method::GET, &path, None).await?;
        serde_json::from_slice(&body)
            .map_err(|e| Error::Unavailable(format!("GET {path}: the answer is not a CSINode object: {e}")))
    }

    /// Sets the Node's taints to `new`, only if they are still `old` (a JSON patch whose `test`
    /// fails is refused, so a taint another controller added meanwhile is never dropped).
    pub async fn replace_taints(&self, name: &str, old: &[serde_json::Value], new: &[serde_json::Value]) -> Result<()> {
        check_node_name(name)?;
        let path = format!("/api/v1/nodes/{name}");
        let patch = serde_json::json!([
            {"op": "test", "path": "/spec/taints", "value": old},
            {"op": "replace", "path": "/spec/taints", "value": new},
        ]);
        self.call(Method::PATCH, &path, Some(patch.to_string())).await?;
        Ok(())
    }

    async fn call(&self, method: Method, path: &str, patch: Option<String>) -> Result<Vec<u8>> {
        let what = format!("{method} {path}");
        tokio::time::timeout(TIMEOUT, self.request(method, path, patch))
            .await
            .map_err(|_| {
                Error::Unavailable(format!(
                    "the API server at {} did not answer {what} within {TIMEOUT:?}",
                    self.authority()
                ))
            })?
    }

    async fn request(&self, method: Method, path: &str, patch: Option<String>) -> Result<Vec<u8>> {
        let authority = self.authority();
        let token = self.token()?;
        let tls = self.tls()?;
        let unreachable = |e: &dyn std::fmt::Display| Error::Unavailable(format!("the API server at {authority}: {e}"));
        let server_name = ServerName::try_from(self.host.clone())
            .map_err(|e| Error::InvalidArgument(format!("KUBERNETES_SERVICE_HOST {}: {e}", shown(&self.host))))?;
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| unreachable(&e))?;
        let stream = TlsConnector::from(tls)
            .connect(server_name, tcp)
            .await
            .map_err(|e| unreachable(&format!("TLS: {e} (checked against the service account's ca.crt)")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(&e))?;
        // The connection is driven beside the request; it ends when the answer has been read.
        let driver = tokio::spawn(conn);
        let mut request = hyper::Request::builder()
            .method(method.clone())
            .uri(path)
            .header(HOST, authority.as_str())
            .header(AUTHORIZATION, token)
            .header(ACCEPT, "application/json");
        if patch.is_some() {
            request = request.header(CONTENT_TYPE, "application/json-patch+json");
        }
        let body = Full::new(Bytes::from(patch.unwrap_or_default()));
        let request = request.body(body).map_err(|e| Error::internal("the API request", e))?;
        let answer = sender.send_request(request).await.map_err(|e| unreachable(&e));
        let result = match answer {
            Ok(answer) => {
                let status = answer.status();
                let body = Limited::new(answer.into_body(), MAX_BODY)
                    .collect()
                    .await
                    .map_err(|e| unreachable(&format!("reading {method} {path}: {e}")))?
                    .to_bytes();
                if status.is_success() {
                    Ok(body.to_vec())
                } else {
                    Err(refusal(status.as_u16(), &method, path, &body))
                }
            }
            Err(e) => Err(e),
        };
        driver.abort();
        result
    }
}

/// The API server's refusal, with what to do about the usual ones.
fn refusal(status: u16, method: &Method, path: &str, body: &[u8]) -> Error {
    let said = serde_json::from_slice::<Status>(body)
        .map(|s| s.message)
        .unwrap_or_default();
    let said = if said.is_empty() {
        String::new()
    } else {
        format!(": {}", shown(&said))
    };
    let verb = match *method {
        Method::PATCH => "patch",
        _ => "get",
    };
    let resource = if path.contains("/csinodes/") {
        "csinodes"
    } else {
        "nodes"
    };
    match status {
        401 => Error::FailedPrecondition(format!(
            "the API server refused the service account token (HTTP 401 Unauthorized) for {method} {path}{said}"
        )),
        403 => Error::FailedPrecondition(format!(
            "the API server forbids {method} {path} (HTTP 403){said}; the node's service account needs a \
             ClusterRole allowing {verb} on {resource} (deploy/kubernetes/overlays/aws/rbac-node.yaml)"
        )),
        404 => Error::NotFound(format!(
            "the API server has no such {} (HTTP 404 for {method} {path}){said}; CSI_NODE_NAME should be \
             spec.nodeName",
            if resource == "csinodes" { "CSINode" } else { "Node" }
        )),
        // A JSON patch whose `test` failed: the object changed since it was read.
        409 | 422 => Error::Aborted(format!(
            "{method} {path}: the object changed since it was read (HTTP {status}){said}"
        )),
        _ => Error::Unavailable(format!(
            "the API server answered HTTP {status} for {method} {path}{said}"
        )),
    }
}

/// A Node's name is a DNS subdomain; anything else never reaches the request path.
fn check_node_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "Node name {} is not a DNS subdomain (lowercase letters, digits, '-' and '.')",
            shown(name)
        )))
    }
}

/// `aws:///<zone>/<instance-id>` → (zone, instance id). Nothing else is taken: a Node another
/// cloud provider registered has no EC2 instance behind it to attach volumes to.
pub fn parse_provider_id(id: &str) -> Result<(String, String)> {
    let bad = |why: &str| {
        Error::FailedPrecondition(format!(
            "spec.providerID {} is not aws:///<zone>/<instance-id>: {why}",
            shown(id)
        ))
    };
    let rest = id
        .strip_prefix("aws:///")
        .ok_or_else(|| bad("it does not start with aws:///"))?;
    let (zone, instance) = rest
        .split_once('/')
        .ok_or_else(|| bad("no zone before the instance id"))?;
    if zone.is_empty()
        || !zone
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(bad("the zone is empty or not a zone name"));
    }
    let hex = instance.strip_prefix("i-").unwrap_or("");
    if !matches!(hex.len(), 8 | 17) || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(bad("the instance id is not i- and 8 or 17 hex digits"));
    }
    Ok((zone.to_owned(), instance.to_owned()))
}

/// Who the node is, from its Node object: instance id and zone from spec.providerID, zone and
/// instance type from the well-known labels (the stable ones, else the beta ones kubelet also
/// wrote), and the ENI and extra-volume counts when the Go driver's labels are there.
pub fn instance_from_node(name: &str, node: &Node) -> Result<InstanceMetadata> {
    let labels = &node.metadata.labels;
    let label = |stable: &str, beta: &str| {
        labels
            .get(stable)
            .or_else(|| labels.get(beta))
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let missing = |what: &str, stable: &str, beta: &str| {
        Error::FailedPrecondition(format!("Node {name} has no {what} label ({stable} or {beta})"))
    };
    let provider_id = node
        .spec
        .provider_id
        .as_deref()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "Node {name} has no spec.providerID (the cloud provider has not initialised it yet?)"
            ))
        })?;
    let (id_zone, instance_id) = parse_provider_id(provider_id)?;
    let zone = label(ZONE_LABEL, ZONE_LABEL_BETA).ok_or_else(|| missing("zone", ZONE_LABEL, ZONE_LABEL_BETA))?;
    if zone != id_zone {
        return Err(Error::FailedPrecondition(format!(
            "Node {name}: the zone label says {zone} but spec.providerID says {id_zone}"
        )));
    }
    let instance_type = label(INSTANCE_TYPE_LABEL, INSTANCE_TYPE_LABEL_BETA)
        .ok_or_else(|| missing("instance type", INSTANCE_TYPE_LABEL, INSTANCE_TYPE_LABEL_BETA))?;
    let region = label(REGION_LABEL, REGION_LABEL_BETA)
        .unwrap_or_else(|| zone.trim_end_matches(|c: char| c.is_ascii_alphabetic()).to_owned());
    let count = |key: &str| -> Result<Option<u32>> {
        labels
            .get(key)
            .map(|v| {
                v.trim().parse::<u32>().map_err(|_| {
                    Error::FailedPrecondition(format!("Node {name}: label {key}={} is not a count", shown(v)))
                })
            })
            .transpose()
    };
    Ok(InstanceMetadata {
        instance_id,
        zone,
        region,
        instance_type,
        enis: count(ENIS_LABEL)?.unwrap_or(1),
        instance_store: count(VOLUMES_LABEL)?.unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(json: &str) -> Node {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn provider_ids() {
        assert_eq!(
            parse_provider_id("aws:///us-east-1a/i-0abcdef0123456789").unwrap(),
            ("us-east-1a".to_owned(), "i-0abcdef0123456789".to_owned())
        );
        assert_eq!(parse_provider_id("aws:///use1-az1/i-12345678").unwrap().1, "i-12345678");
        for bad in [
            "",
            "aws://us-east-1a/i-0abcdef0123456789",
            "aws:///i-0abcdef0123456789",
            "aws:////i-0abcdef0123456789",
            "aws:///us-east-1a/",
            "aws:///us-east-1a/i-0abcdef012345678",
            "aws:///us-east-1a/i-0ABCDEF0123456789",
            "aws:///us-east-1a/i-0abcdef0123456789/x",
            "aws:///us east/i-0abcdef0123456789",
            "gce://project/zone/name",
            "aws:///us-east-1a/fargate-ip-10-0-0-1.ec2.internal",
        ] {
            let e = parse_provider_id(bad).unwrap_err();
            assert!(e.to_string().contains("aws:///<zone>/<instance-id>"), "{bad}: {e}");
        }
    }

    #[test]
    fn labels_with_fallbacks() {
        let n = node(
            r#"{"metadata":{"labels":{"failure-domain.beta.kubernetes.io/zone":"us-west-2b",
            "beta.kubernetes.io/instance-type":"m5.large","ebs.csi.aws.com/enis-count":"3"}},
            "spec":{"providerID":"aws:///us-west-2b/i-0abcdef0123456789"}}"#,
        );
        let me = instance_from_node("n", &n).unwrap();
        assert_eq!(
            (me.zone.as_str(), me.region.as_str(), me.instance_type.as_str(), me.enis),
            ("us-west-2b", "us-west-2", "m5.large", 3)
        );
        let mismatch = node(
            r#"{"metadata":{"labels":{"topology.kubernetes.io/zone":"us-west-2a",
            "node.kubernetes.io/instance-type":"m5.large"}},
            "spec":{"providerID":"aws:///us-west-2b/i-0abcdef0123456789"}}"#,
        );
        assert!(
            instance_from_node("n", &mismatch)
                .unwrap_err()
                .to_string()
                .contains("us-west-2a")
        );
        let bad_count = node(
            r#"{"metadata":{"labels":{"topology.kubernetes.io/zone":"us-west-2b",
            "node.kubernetes.io/instance-type":"m5.large","ebs.csi.aws.com/enis-count":"many"}},
            "spec":{"providerID":"aws:///us-west-2b/i-0abcdef0123456789"}}"#,
        );
        assert!(
            instance_from_node("n", &bad_count)
                .unwrap_err()
                .to_string()
                .contains("enis-count")
        );
    }

    #[test]
    fn the_token_is_read_for_every_request() {
        let dir = tempfile::tempdir().unwrap();
        let api = InCluster {
            host: "127.0.0.1".into(),
            port: 443,
            account_dir: dir.path().to_owned(),
        };
        assert!(
            api.token()
                .unwrap_err()
                .to_string()
                .contains("automountServiceAccountToken")
        );
        std::fs::write(dir.path().join("token"), "first\n").unwrap();
        assert_eq!(api.token().unwrap(), "Bearer first");
        // kubelet rotated it.
        std::fs::write(dir.path().join("token"), "second").unwrap();
        assert_eq!(api.token().unwrap(), "Bearer second");
        std::fs::write(dir.path().join("token"), "bad\r\nX-Injected: 1").unwrap();
        assert!(api.token().is_err());
    }

    #[test]
    fn node_names_are_dns_subdomains() {
        assert!(check_node_name("ip-10-0-1-2.ec2.internal").is_ok());
        for bad in ["", "../secrets", "a/b", "Upper", "-x", "x.", "a?b", &"a".repeat(254)] {
            assert!(check_node_name(bad).is_err(), "{bad}");
        }
    }
}
