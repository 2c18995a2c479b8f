//! `--metadata-sources`: an aws node learns its instance id, zone and type from IMDS or from its
//! own Node object in the Kubernetes API, in the order given. No API server and no IMDS run
//! here, so both are stood in for by small real servers (`support::apiserver`: HTTPS with a CA
//! made by openssl at test time; `support::imds`), and the real `ebs-csi serve --mode node` is
//! asked NodeGetInfo.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ebs_csi::csi::NodeGetInfoRequest;
use support::Driver;
use support::apiserver::{ApiServer, Pki, node_object, service_account};
use support::imds::Imds;

const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.stand-in-token";
const NODE: &str = "ip-10-0-1-23.ec2.internal";
const INSTANCE: &str = "i-0123456789abcdef0";
const ZONE: &str = "us-east-1c";

/// A well-formed EC2 Node: the labels kubelet and the cloud provider set, and its providerID.
fn ec2_node() -> serde_json::Value {
    node_object(
        NODE,
        &[
            ("kubernetes.io/hostname", NODE),
            ("topology.kubernetes.io/zone", ZONE),
            ("topology.kubernetes.io/region", "us-east-1"),
            ("node.kubernetes.io/instance-type", "m5.large"),
        ],
        Some(&format!("aws:///{ZONE}/{INSTANCE}")),
    )
}

/// Nothing listens here: IMDS as seen from a machine that is not an EC2 instance (or a pod
/// behind a hop limit of 1 that refuses fast).
fn closed_port_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}

struct Setup {
    dir: tempfile::TempDir,
    api: ApiServer,
    account: std::path::PathBuf,
}

fn setup(token_in_pod: &str, nodes: HashMap<String, serde_json::Value>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "cluster");
    let api = ApiServer::start(&pki, TOKEN, nodes);
    let account = service_account(dir.path(), token_in_pod, &pki.ca);
    Setup { dir, api, account }
}

fn env_of(s: &Setup, imds_url: &str) -> Vec<(String, String)> {
    let mut env = s.api.env(&s.account, NODE);
    env.push(("AWS_EC2_METADATA_SERVICE_ENDPOINT".into(), imds_url.into()));
    env
}

async fn node_driver(sources: &str, env: &[(String, String)]) -> Driver {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // The start-up taint's own reads of the Node (tests/startup_taint.rs) are left out, so the
    // requests counted here are the metadata source's alone.
    Driver::start_custom(
        &[
            "--backend",
            "aws",
            "--mode",
            "node",
            "--metadata-sources",
            sources,
            "--remove-not-ready-taint=false",
        ],
        &env,
    )
    .await
}

/// Runs a node that must refuse to start, and returns what it said on stderr. A node that
/// starts anyway is stopped (by its pid) after 30 s and fails the test.
fn refused_start(sources: &str, env: &[(String, String)], dir: &Path) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ebs-csi"))
        .args([
            "serve",
            "--backend",
            "aws",
            "--mode",
            "node",
            "--metadata-sources",
            sources,
        ])
        .arg("--endpoint")
        .arg(format!("unix://{}/refused.sock", dir.display()))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env_remove("CSI_NODE_NAME")
        .envs(env.iter().cloned())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the node started although no metadata source could answer");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    stderr
}

#[tokio::test]
async fn the_node_object_says_who_the_node_is() {
    let s = setup(TOKEN, HashMap::from([(NODE.to_owned(), ec2_node())]));
    let mut d = node_driver("kubernetes", &env_of(&s, &closed_port_url())).await;
    let info = d.node.node_get_info(NodeGetInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.node_id, INSTANCE, "the instance id from spec.providerID");
    let segments = info.accessible_topology.unwrap().segments;
    assert_eq!(segments["topology.ebs.csi.aws.com/zone"], ZONE);
    assert_eq!(segments["topology.kubernetes.io/zone"], ZONE);
    assert_eq!(
        info.max_volumes_per_node, 26,
        "m5.large: 28 Nitro slots less the root volume and one ENI"
    );
    let requests = s.api.requests.lock().unwrap().clone();
    assert_eq!(
        requests,
        vec![(format!("GET /api/v1/nodes/{NODE} HTTP/1.1"), format!("Bearer {TOKEN}"))],
        "one GET of its own Node, with the pod's token"
    );
}

#[tokio::test]
async fn imds_first_falls_through_to_kubernetes_when_imds_is_absent() {
    let s = setup(TOKEN, HashMap::from([(NODE.to_owned(), ec2_node())]));
    let mut d = node_driver("imds,kubernetes", &env_of(&s, &closed_port_url())).await;
    let info = d.node.node_get_info(NodeGetInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.node_id, INSTANCE);
    assert_eq!(
        info.accessible_topology.unwrap().segments["topology.ebs.csi.aws.com/zone"],
        ZONE
    );
    let log = std::fs::read_to_string(d.dir.path().join("driver.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("metadata source did not answer") && l.contains("IMDS at 127.0.0.1")),
        "the failed IMDS attempt is logged:\n{log}"
    );
}

#[tokio::test]
async fn the_first_source_that_answers_wins() {
    let imds = Imds::start(
        HashMap::from([
            ("instance-id", "i-0fedcba9876543210"),
            ("placement/availability-zone", "us-east-1a"),
            ("placement/region", "us-east-1"),
            ("instance-type", "m4.large"),
        ]),
        true,
    );
    let s = setup(TOKEN, HashMap::from([(NODE.to_owned(), ec2_node())]));

    // IMDS first and present: the API server is never asked.
    let mut d = node_driver("imds,kubernetes", &env_of(&s, &imds.url)).await;
    let info = d.node.node_get_info(NodeGetInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.node_id, "i-0fedcba9876543210");
    assert_eq!(info.max_volumes_per_node, 38, "m4.large (Xen): 39 less the root volume");
    assert!(s.api.requests.lock().unwrap().is_empty());
    drop(d);

    // The Node object first: it wins although IMDS would have answered.
    let mut d = node_driver("kubernetes,imds", &env_of(&s, &imds.url)).await;
    let info = d.node.node_get_info(NodeGetInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.node_id, INSTANCE);
    assert_eq!(info.max_volumes_per_node, 26);
}

#[tokio::test]
async fn a_refused_token_is_a_clear_startup_error() {
    let s = setup(
        "a-token-the-cluster-never-issued",
        HashMap::from([(NODE.to_owned(), ec2_node())]),
    );
    let stderr = refused_start("imds,kubernetes", &env_of(&s, &closed_port_url()), s.dir.path());
    assert!(
        stderr.contains("--metadata-sources=imds,kubernetes")
            && stderr.contains("imds: IMDS")
            && stderr.contains("kubernetes: the API server refused the service account token (HTTP 401"),
        "{stderr}"
    );
    // The stand-in really was asked, with the token the pod had.
    let requests = s.api.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].1, "Bearer a-token-the-cluster-never-issued");
}

#[tokio::test]
async fn node_objects_without_what_the_node_needs_are_clear_errors() {
    let provider_id = format!("aws:///{ZONE}/{INSTANCE}");
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (
            node_object(
                NODE,
                &[("node.kubernetes.io/instance-type", "m5.large")],
                Some(&provider_id),
            ),
            "has no zone label (topology.kubernetes.io/zone or failure-domain.beta.kubernetes.io/zone)",
        ),
        (
            node_object(NODE, &[("topology.kubernetes.io/zone", ZONE)], Some(&provider_id)),
            "has no instance type label (node.kubernetes.io/instance-type",
        ),
        (
            node_object(
                NODE,
                &[
                    ("topology.kubernetes.io/zone", ZONE),
                    ("node.kubernetes.io/instance-type", "m5.large"),
                ],
                Some("gce://my-project/us-central1-a/node-1"),
            ),
            "spec.providerID \"gce://my-project/us-central1-a/node-1\" is not aws:///<zone>/<instance-id>",
        ),
        (
            node_object(
                NODE,
                &[
                    ("topology.kubernetes.io/zone", ZONE),
                    ("node.kubernetes.io/instance-type", "m5.large"),
                ],
                None,
            ),
            "has no spec.providerID",
        ),
    ];
    for (node, expected) in cases {
        let s = setup(TOKEN, HashMap::from([(NODE.to_owned(), node)]));
        let stderr = refused_start("kubernetes", &env_of(&s, &closed_port_url()), s.dir.path());
        assert!(stderr.contains(expected), "expected {expected:?} in:\n{stderr}");
    }
    // CSI_NODE_NAME naming a Node the cluster does not have: the API server's 404, said so.
    let s = setup(TOKEN, HashMap::from([(NODE.to_owned(), ec2_node())]));
    let mut env = env_of(&s, &closed_port_url());
    env.push(("CSI_NODE_NAME".into(), "ip-10-9-9-9.ec2.internal".into()));
    let stderr = refused_start("kubernetes", &env, s.dir.path());
    assert!(
        stderr.contains("the API server has no such Node (HTTP 404 for GET /api/v1/nodes/ip-10-9-9-9.ec2.internal)"),
        "{stderr}"
    );
    // A name that is not a Node name never reaches the request path.
    env.push(("CSI_NODE_NAME".into(), "../../secrets".into()));
    let stderr = refused_start("kubernetes", &env, s.dir.path());
    assert!(stderr.contains("is not a DNS subdomain"), "{stderr}");
    assert_eq!(s.api.requests.lock().unwrap().len(), 1, "only the 404 was asked");
}

#[tokio::test]
async fn the_api_servers_certificate_is_checked_against_the_pods_ca() {
    let s = setup(TOKEN, HashMap::from([(NODE.to_owned(), ec2_node())]));
    // The pod trusts another CA than the one that signed the server's certificate.
    let other = Pki::new(s.dir.path(), "other");
    std::fs::copy(&other.ca, s.account.join("ca.crt")).unwrap();
    let stderr = refused_start("kubernetes", &env_of(&s, &closed_port_url()), s.dir.path());
    assert!(
        stderr.contains("kubernetes: the API server at 127.0.0.1:") && stderr.contains("TLS"),
        "{stderr}"
    );
    assert!(
        s.api.requests.lock().unwrap().is_empty(),
        "no request over an unverified connection"
    );
}

#[tokio::test]
async fn outside_a_pod_every_source_says_why_it_failed() {
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT".to_owned(), closed_port_url()),
        ("CSI_NODE_NAME".to_owned(), NODE.to_owned()),
    ];
    let stderr = refused_start("imds,kubernetes", &env, dir.path());
    assert!(
        stderr.contains("imds: IMDS at 127.0.0.1:")
            && stderr.contains("kubernetes: KUBERNETES_SERVICE_HOST is not set"),
        "{stderr}"
    );
    // AWS_EC2_METADATA_DISABLED skips IMDS, as the SDKs and the Go driver do.
    let mut env = env;
    env.push(("AWS_EC2_METADATA_DISABLED".into(), "true".into()));
    let stderr = refused_start("imds", &env, dir.path());
    assert!(
        stderr.contains("imds: skipped: AWS_EC2_METADATA_DISABLED is true"),
        "{stderr}"
    );
    // An unknown source is refused by the command line, naming the ones there are.
    let stderr = refused_start("imds,gce", &[], dir.path());
    assert!(stderr.contains("gce") && stderr.contains("kubernetes"), "{stderr}");
}

#[tokio::test]
async fn csi_node_name_is_the_local_nodes_id_but_never_an_instance_id() {
    // Local backend: the Kubernetes node's name is the node id when --node-id is not given.
    let mut d = Driver::start_custom(
        &["--mode", "node", "--zone", "local-1b"],
        &[("CSI_NODE_NAME", "worker-7")],
    )
    .await;
    let info = d.node.node_get_info(NodeGetInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.node_id, "worker-7");
    // aws backend: the same variable only names the Node to read; the id is the instance's.
    let s = setup(TOKEN, HashMap::from([(NODE.to_owned(), ec2_node())]));
    let mut d = node_driver("kubernetes", &env_of(&s, &closed_port_url())).await;
    let info = d.node.node_get_info(NodeGetInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.node_id, INSTANCE, "not {NODE}");
}
