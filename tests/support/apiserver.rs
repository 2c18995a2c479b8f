//! A stand-in for the Kubernetes API server, which does not run here: a real HTTPS server
//! (tokio + rustls, on its own thread and runtime) with a CA and serving certificate made by
//! `openssl` at test time, answering `GET /api/v1/nodes/<name>` with a Node object and
//! `GET /apis/storage.k8s.io/v1/csinodes/<name>` with a CSINode for the bearer token it was
//! given, applying a JSON patch (`test` and `replace`, as `PATCH /api/v1/nodes/<name>` with
//! `application/json-patch+json`; a failed `test` is 422), 401 for any other token and 404 for
//! other names, as the API server does. It also writes the pod's side: a service-account
//! directory holding `token` and `ca.crt`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A CA and a certificate it signed for 127.0.0.1, as PEM files under `dir`.
pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl must be installed to make the stand-in's certificates");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    /// A new CA named `name` in `dir`, and a serving certificate from it for 127.0.0.1.
    pub fn new(dir: &Path, name: &str) -> Pki {
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let ca_key = format!("{name}-ca.key");
        let ca = format!("{name}-ca.crt");
        let key = format!("{name}-server.key");
        let csr = format!("{name}-server.csr");
        let cert = format!("{name}-server.crt");
        let ext = format!("{name}-server.ext");
        let subject = format!("/CN={name} stand-in CA");
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend(["-keyout", &ca_key, "-out", &ca, "-days", "2", "-subj", &subject]);
        openssl(dir, &args);
        let mut args = vec!["req"];
        args.extend(ec);
        args.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=kube-apiserver"]);
        openssl(dir, &args);
        std::fs::write(
            dir.join(&ext),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
        Pki {
            ca: dir.join(ca),
            cert: dir.join(cert),
            key: dir.join(key),
        }
    }
}

/// The pod's service-account directory: `token` and `ca.crt`.
pub fn service_account(dir: &Path, token: &str, ca: &Path) -> PathBuf {
    let sa = dir.join("serviceaccount");
    std::fs::create_dir_all(&sa).unwrap();
    std::fs::write(sa.join("token"), token).unwrap();
    std::fs::copy(ca, sa.join("ca.crt")).unwrap();
    sa
}

/// The stand-in API server; stopped on drop.
pub struct ApiServer {
    pub port: u16,
    /// (request line, Authorization header) of every request answered.
    pub requests: Arc<Mutex<Vec<(String, String)>>>,
    /// The Node objects by name, as patches leave them.
    pub nodes: Arc<Mutex<HashMap<String, serde_json::Value>>>,
    /// The CSINode objects by name (none at first, as before kubelet registers a driver).
    pub csinodes: Arc<Mutex<HashMap<String, serde_json::Value>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ApiServer {
    /// Serves `nodes` (name → Node object) to requests bearing `token`.
    pub fn start(pki: &Pki, token: &str, nodes: HashMap<String, serde_json::Value>) -> ApiServer {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pki.cert)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(&pki.key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let nodes = Arc::new(Mutex::new(nodes));
        let csinodes = Arc::new(Mutex::new(HashMap::new()));
        let (node_objects, csinode_objects) = (nodes.clone(), csinodes.clone());
        let expected = format!("Bearer {token}");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // Its own thread and runtime: tests also wait for the driver with blocking calls.
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let serve = async {
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else {
                            continue;
                        };
                        let Ok(mut tls) = acceptor.accept(tcp).await else {
                            continue;
                        };
                        let (line, auth, request_body) = read_request(&mut tls).await;
                        seen.lock().unwrap().push((line.clone(), auth.clone()));
                        let (status, body) = if auth != expected {
                            ("401 Unauthorized", status_object(401, "Unauthorized"))
                        } else {
                            answer(&line, &request_body, &node_objects, &csinode_objects)
                        };
                        let answer = format!(
                            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                             Connection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = tls.write_all(answer.as_bytes()).await;
                        let _ = tls.shutdown().await;
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = stopped => {}
                }
            });
        });
        ApiServer {
            port,
            requests,
            nodes,
            csinodes,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The environment the driver needs to find this server and its credentials.
    pub fn env(&self, account_dir: &Path, node: &str) -> Vec<(String, String)> {
        vec![
            ("KUBERNETES_SERVICE_HOST".into(), "127.0.0.1".into()),
            ("KUBERNETES_SERVICE_PORT".into(), self.port.to_string()),
            ("EBS_CSI_SERVICE_ACCOUNT_DIR".into(), account_dir.display().to_string()),
            ("CSI_NODE_NAME".into(), node.into()),
        ]
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn status_object(code: u16, message: &str) -> String {
    serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": message, "code": code,
    })
    .to_string()
}

type Objects = Arc<Mutex<HashMap<String, serde_json::Value>>>;

/// What the API server answers to one authorised request.
fn answer(line: &str, body: &[u8], nodes: &Objects, csinodes: &Objects) -> (&'static str, String) {
    let target = |method: &str, prefix: &str| {
        line.strip_prefix(method)?
            .strip_prefix(prefix)?
            .strip_suffix(" HTTP/1.1")
            .map(str::to_owned)
    };
    if let Some(name) = target("GET ", "/api/v1/nodes/") {
        return match nodes.lock().unwrap().get(&name) {
            Some(node) => ("200 OK", node.to_string()),
            None => ("404 Not Found", status_object(404, "nodes not found")),
        };
    }
    if let Some(name) = target("GET ", "/apis/storage.k8s.io/v1/csinodes/") {
        return match csinodes.lock().unwrap().get(&name) {
            Some(csinode) => ("200 OK", csinode.to_string()),
            None => ("404 Not Found", status_object(404, "csinodes.storage.k8s.io not found")),
        };
    }
    if let Some(name) = target("PATCH ", "/api/v1/nodes/") {
        let mut nodes = nodes.lock().unwrap();
        let Some(node) = nodes.get_mut(&name) else {
            return ("404 Not Found", status_object(404, "nodes not found"));
        };
        let Ok(serde_json::Value::Array(ops)) = serde_json::from_slice::<serde_json::Value>(body) else {
            return ("400 Bad Request", status_object(400, "not a JSON patch"));
        };
        let mut patched = node.clone();
        for op in ops {
            let path = op["path"].as_str().unwrap_or_default();
            let pointer = patched.pointer_mut(path);
            match (op["op"].as_str(), pointer) {
                (Some("test"), Some(current)) if *current == op["value"] => {}
                (Some("test"), _) => {
                    return (
                        "422 Unprocessable Entity",
                        status_object(422, "the test operation failed"),
                    );
                }
                (Some("replace"), Some(current)) => *current = op["value"].clone(),
                _ => return ("422 Unprocessable Entity", status_object(422, "unsupported patch")),
            }
        }
        *node = patched;
        return ("200 OK", node.to_string());
    }
    ("404 Not Found", status_object(404, "not found"))
}

/// The request line, the Authorization header and the body (by Content-Length) of one request.
async fn read_request<S: tokio::io::AsyncRead + Unpin>(conn: &mut S) -> (String, String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() >= 65536 {
            break buf.len();
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => break buf.len(),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let text = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let line = text.lines().next().unwrap_or_default().to_owned();
    let header = |name: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let auth = header("authorization").unwrap_or_default();
    let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    (line, auth, body)
}

/// A Node object as the API server returns it for an EC2 instance.
pub fn node_object(name: &str, labels: &[(&str, &str)], provider_id: Option<&str>) -> serde_json::Value {
    let labels: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect();
    let mut spec = serde_json::json!({});
    if let Some(p) = provider_id {
        spec["providerID"] = p.into();
    }
    serde_json::json!({
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {"name": name, "uid": "0b7c4f55-5f53-4c1e-9d0a-3f1e2d3c4b5a", "labels": labels},
        "spec": spec,
        "status": {"nodeInfo": {"kubeletVersion": "v1.33.1"}, "images": []},
    })
}
