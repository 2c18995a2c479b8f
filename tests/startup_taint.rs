//! The start-up taint `ebs.csi.aws.com/agent-not-ready`: the node removes it from its own Node
//! once kubelet has registered the driver there (the CSINode lists it with a volume limit), and
//! leaves every other taint as it was. No API server runs here: the stand-in of
//! `support::apiserver` (HTTPS, a CA made by openssl at test time, JSON patches applied as the
//! API server applies them) plays it, and kubelet's registration is played by writing the
//! CSINode object into it.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Driver;
use support::apiserver::{ApiServer, Pki, node_object, service_account};

const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.taint-token";
const NODE: &str = "ip-10-0-2-7.ec2.internal";
const NOT_READY: &str = "ebs.csi.aws.com/agent-not-ready";

fn tainted_node() -> Value {
    let mut node = node_object(NODE, &[("kubernetes.io/hostname", NODE)], None);
    node["spec"]["taints"] = json!([
        {"key": NOT_READY, "effect": "NoExecute"},
        {"key": "dedicated", "value": "storage", "effect": "NoSchedule"},
    ]);
    node
}

fn registered(driver: &str) -> Value {
    json!({
        "kind": "CSINode", "apiVersion": "storage.k8s.io/v1",
        "metadata": {"name": NODE},
        "spec": {"drivers": [{"name": driver, "nodeID": NODE, "allocatable": {"count": 25}}]},
    })
}

/// Waits up to `limit` for `done`; false if it never held.
fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

fn taint_keys(api: &ApiServer) -> Vec<String> {
    api.nodes.lock().unwrap()[NODE]["spec"]["taints"]
        .as_array()
        .expect("taints")
        .iter()
        .filter_map(|t| t["key"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn the_not_ready_taint_goes_once_the_driver_is_registered_and_only_it() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "cluster");
    let api = ApiServer::start(&pki, TOKEN, HashMap::from([(NODE.to_owned(), tainted_node())]));
    let account = service_account(dir.path(), TOKEN, &pki.ca);
    let env = api.env(&account, NODE);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let d = Driver::start_custom(&["--mode", "node", "--node-id", "node-1", "--zone", "local-1a"], &env).await;

    let csinode_reads = || {
        api.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(line, _)| line.starts_with("GET /apis/storage.k8s.io/v1/csinodes/"))
            .count()
    };
    // Not registered yet (no CSINode): the node looks for it and leaves the taint.
    assert!(
        eventually(Duration::from_secs(20), || csinode_reads() >= 1),
        "{:?}",
        api.requests.lock().unwrap()
    );
    assert!(taint_keys(&api).contains(&NOT_READY.to_owned()));
    // Another driver registered: not ours. Once the node has read that, the taint is still there.
    api.csinodes
        .lock()
        .unwrap()
        .insert(NODE.to_owned(), registered("efs.csi.aws.com"));
    let seen = csinode_reads();
    assert!(
        eventually(Duration::from_secs(30), || csinode_reads() > seen),
        "{:?}",
        api.requests.lock().unwrap()
    );
    assert!(taint_keys(&api).contains(&NOT_READY.to_owned()));

    // kubelet registers the driver: the taint goes, the other stays as it was.
    api.csinodes
        .lock()
        .unwrap()
        .insert(NODE.to_owned(), registered("ebs.csi.aws.com"));
    let removed = eventually(Duration::from_secs(60), || {
        !taint_keys(&api).contains(&NOT_READY.to_owned())
    });
    assert!(removed, "{:?}", api.requests.lock().unwrap());
    let taints = api.nodes.lock().unwrap()[NODE]["spec"]["taints"].clone();
    assert_eq!(
        taints,
        json!([{"key": "dedicated", "value": "storage", "effect": "NoSchedule"}])
    );
    let requests = api.requests.lock().unwrap().clone();
    let patches: Vec<_> = requests.iter().filter(|(l, _)| l.starts_with("PATCH ")).collect();
    assert_eq!(patches.len(), 1, "{requests:?}");
    assert!(requests.iter().all(|(_, auth)| *auth == format!("Bearer {TOKEN}")));
    drop(d);
}
