//! `ebs-csi client`: the real binary, one subcommand per CSI call, against a running driver on
//! the local backend (real loop devices, ext4 and mounts for the node calls, under the driver's
//! temp dir, which the harness unmounts and detaches even when a test fails). Checks what a user
//! sees: the text, the `--json` fields, the exit status and the gRPC code of a refusal.

mod support;

use std::process::Command;

use serde_json::Value;
use support::*;

struct Out {
    status: i32,
    stdout: String,
    stderr: String,
}

fn run_client(endpoint: &str, args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_ebs-csi"))
        .arg("client")
        .arg("--endpoint")
        .arg(endpoint)
        .args(args)
        .output()
        .expect("run ebs-csi client");
    Out {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs a call that must succeed and returns its text.
fn ok(d: &Driver, args: &[&str]) -> String {
    let o = run_client(&d.endpoint(), args);
    assert_eq!(o.status, 0, "{args:?} failed: {}{}", o.stdout, o.stderr);
    o.stdout
}

/// Runs a call with --json that must succeed and returns the parsed answer.
fn json(d: &Driver, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let text = ok(d, &all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {text}"))
}

/// Runs a call that the driver must refuse with `code`; returns stderr.
fn refused(d: &Driver, args: &[&str], code: &str) -> String {
    let o = run_client(&d.endpoint(), args);
    assert_eq!(
        o.status, 1,
        "{args:?}: expected exit 1, got {}: {}{}",
        o.status, o.stdout, o.stderr
    );
    assert!(
        o.stderr.starts_with(&format!("ebs-csi: {code}: ")),
        "{args:?}: expected {code} on stderr, got {:?}",
        o.stderr
    );
    assert!(o.stdout.is_empty(), "nothing on stdout on failure: {:?}", o.stdout);
    o.stderr
}

fn create(d: &Driver, name: &str, gib: &str) -> String {
    let v = json(d, &["create-volume", name, "--size-gib", gib]);
    v["volume"]["volume_id"].as_str().expect("a volume id").to_owned()
}

#[tokio::test]
async fn identity_calls_name_the_driver_its_capabilities_and_readiness() {
    let d = Driver::start(&[]).await;
    let info = ok(&d, &["get-plugin-info"]);
    assert!(info.starts_with("ebs.csi.aws.com "), "{info}");
    let j = json(&d, &["get-plugin-info"]);
    assert_eq!(j["name"], "ebs.csi.aws.com");
    assert_eq!(j["vendor_version"], env!("CARGO_PKG_VERSION"));

    let caps = ok(&d, &["get-plugin-capabilities"]);
    assert!(caps.contains("service: CONTROLLER_SERVICE\n"), "{caps}");
    assert!(caps.contains("service: VOLUME_ACCESSIBILITY_CONSTRAINTS\n"), "{caps}");
    assert!(caps.contains("volume expansion: "), "{caps}");
    let j = json(&d, &["get-plugin-capabilities"]);
    assert!(
        j["capabilities"]
            .as_array()
            .expect("a list")
            .contains(&serde_json::json!({"service": {"type": "CONTROLLER_SERVICE"}})),
        "{j}"
    );

    assert_eq!(ok(&d, &["probe"]), "ready\n");
    assert_eq!(json(&d, &["probe"])["ready"], true);

    // `info`, the older command, is both.
    let both = ok(&d, &["info"]);
    assert!(
        both.starts_with("ebs.csi.aws.com ") && both.ends_with("ready\n"),
        "{both}"
    );
    let j = json(&d, &["info"]);
    assert_eq!(j["plugin_info"]["name"], "ebs.csi.aws.com");
    assert_eq!(j["probe"]["ready"], true);
}

#[tokio::test]
async fn volumes_are_created_shown_listed_by_page_and_deleted() {
    let d = Driver::start(&[]).await;
    let text = ok(
        &d,
        &[
            "create-volume",
            "pvc-a",
            "--size-gib",
            "2",
            "-p",
            "type=gp3",
            "--preferred-topology",
            "topology.ebs.csi.aws.com/zone=local-1b",
        ],
    );
    let first = text.lines().next().expect("a line");
    let (id, rest) = first.split_once("  ").expect("id and size");
    assert!(id.starts_with("vol-"), "{text}");
    assert_eq!(rest, "2 GiB", "{text}");
    assert!(text.contains("topology.ebs.csi.aws.com/zone=local-1b"), "{text}");

    // The same name again is the same volume (CreateVolume is idempotent), in JSON.
    let j = json(&d, &["create-volume", "pvc-a", "--size-gib", "2", "-p", "type=gp3"]);
    assert_eq!(j["volume"]["volume_id"], id);
    assert_eq!(j["volume"]["capacity_bytes"], 2 * GIB);

    let got = ok(&d, &["controller-get-volume", id]);
    assert!(got.starts_with(&format!("{id}  2 GiB\n")), "{got}");
    assert!(got.contains("  published on: none\n"), "{got}");
    let j = json(&d, &["controller-get-volume", id]);
    assert_eq!(j["volume"]["volume_id"], id);
    assert_eq!(j["status"]["published_node_ids"], serde_json::json!([]));

    let other = create(&d, "pvc-b", "1");
    let all = ok(&d, &["list-volumes"]);
    assert!(
        all.contains(&format!("{id}  2 GiB")) && all.contains(&format!("{other}  1 GiB")),
        "{all}"
    );
    assert!(!all.contains("next token"), "{all}");

    // One page at a time, following the token.
    let page = json(&d, &["list-volumes", "--max-entries", "1"]);
    assert_eq!(page["entries"].as_array().map(Vec::len), Some(1));
    let token = page["next_token"].as_str().expect("a token").to_owned();
    assert!(!token.is_empty(), "{page}");
    let text = ok(&d, &["list-volumes", "--max-entries", "1"]);
    assert!(text.ends_with(&format!("next token: {token}\n")), "{text}");
    let rest = json(&d, &["list-volumes", "--max-entries", "1", "--starting-token", &token]);
    let ids: Vec<&Value> = [&page, &rest]
        .iter()
        .map(|p| &p["entries"][0]["volume"]["volume_id"])
        .collect();
    assert!(
        ids.contains(&&Value::from(id)) && ids.contains(&&Value::from(other.as_str())),
        "{ids:?}"
    );

    assert_eq!(ok(&d, &["delete-volume", id]), format!("deleted {id}\n"));
    assert_eq!(json(&d, &["delete-volume", id]), serde_json::json!({}));
    let err = refused(&d, &["controller-get-volume", id], "NotFound");
    assert!(err.contains(id), "{err}");
    refused(&d, &["list-volumes", "--starting-token", "no-such-token"], "Aborted");
}

#[tokio::test]
async fn bad_requests_bad_files_and_no_driver_have_their_own_exit_status() {
    let d = Driver::start(&[]).await;
    let err = refused(&d, &["create-volume", "pvc-x", "-p", "type=floppy"], "InvalidArgument");
    assert!(err.contains("floppy"), "{err}");
    refused(
        &d,
        &["create-volume", "pvc-x", "--from-snapshot", "snap-0123456789abcdef0"],
        "NotFound",
    );

    // Secrets: a YAML mapping of strings; anything else is the user's mistake (2).
    let good = d.dir.path().join("secrets.yaml");
    std::fs::write(&good, "user: admin\npassword: \"s3cret\"\n").expect("write");
    let out = ok(
        &d,
        &[
            "create-volume",
            "pvc-s",
            "--secrets-file",
            good.to_str().expect("utf-8"),
        ],
    );
    assert!(out.starts_with("vol-"), "{out}");
    let bad = d.dir.path().join("secrets.txt");
    std::fs::write(&bad, "- a list\n- not a map\n").expect("write");
    let o = run_client(
        &d.endpoint(),
        &[
            "delete-volume",
            "vol-0123456789abcdef0",
            "--secrets-file",
            bad.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(o.status, 2, "{}", o.stderr);
    assert!(o.stderr.contains("--secrets-file"), "{}", o.stderr);

    // A flag value clap refuses is 2 as well, and names the allowed access modes.
    let o = run_client(
        &d.endpoint(),
        &["validate-volume-capabilities", "vol-1", "--access-mode", "rwo"],
    );
    assert_eq!(o.status, 2);
    assert!(o.stderr.contains("single-node-writer"), "{}", o.stderr);

    // No driver at the endpoint: 3.
    let gone = format!("unix://{}", d.dir.path().join("nothing.sock").display());
    let o = run_client(&gone, &["probe"]);
    assert_eq!(o.status, 3, "{}", o.stderr);
    assert!(o.stderr.contains("cannot reach"), "{}", o.stderr);
}

#[tokio::test]
async fn attach_validate_and_detach() {
    let d = Driver::start(&[]).await;
    let id = create(&d, "pvc-attach", "1");
    let text = ok(&d, &["controller-publish-volume", &id, NODE]);
    assert!(text.starts_with(&format!("attached {id} to {NODE}\n")), "{text}");
    assert!(text.contains("publish context: devicePath=/dev/loop"), "{text}");
    // `publish`, the older name, is the same call (and idempotent).
    let j = json(&d, &["publish", &id, NODE]);
    let device = j["publish_context"]["devicePath"].as_str().expect("a devicePath");
    assert!(text.contains(device), "{text} vs {device}");
    let got = ok(&d, &["controller-get-volume", &id]);
    assert!(got.contains(&format!("published on: {NODE}")), "{got}");
    refused(&d, &["controller-publish-volume", &id, "node-nowhere"], "NotFound");

    let text = ok(&d, &["validate-volume-capabilities", &id, "--fs-type", "ext4"]);
    assert_eq!(text, format!("{id} supports mount ext4, SINGLE_NODE_WRITER\n"));
    let j = json(
        &d,
        &[
            "validate-volume-capabilities",
            &id,
            "--block",
            "--access-mode",
            "single-node-reader-only",
        ],
    );
    assert_eq!(
        j["confirmed"]["volume_capabilities"][0],
        serde_json::json!({"block": {}, "access_mode": "SINGLE_NODE_READER_ONLY"})
    );
    let j = json(
        &d,
        &[
            "validate-volume-capabilities",
            &id,
            "--access-mode",
            "multi-node-multi-writer",
        ],
    );
    assert_eq!(j["confirmed"], Value::Null, "{j}");
    let text = ok(
        &d,
        &[
            "validate-volume-capabilities",
            &id,
            "--access-mode",
            "multi-node-multi-writer",
        ],
    );
    assert!(
        text.contains("not confirmed for mount, MULTI_NODE_MULTI_WRITER"),
        "{text}"
    );
    refused(
        &d,
        &["validate-volume-capabilities", "vol-0123456789abcdef0"],
        "NotFound",
    );

    assert_eq!(
        ok(&d, &["controller-unpublish-volume", &id, NODE]),
        format!("detached {id} from {NODE}\n")
    );
    assert_eq!(json(&d, &["unpublish", &id, NODE]), serde_json::json!({}));
    assert!(d.loop_devices().is_empty(), "detached: {:?}", d.loop_devices());
}

#[tokio::test]
async fn capacity_capabilities_and_node_info() {
    let d = Driver::start(&[]).await;
    let text = ok(&d, &["get-capacity", "-p", "type=gp3"]);
    assert!(text.starts_with("available: "), "{text}");
    let j = json(&d, &["get-capacity", "-p", "type=gp3"]);
    assert!(j["available_capacity"].as_i64().is_some_and(|n| n > 0), "{j}");
    assert!(j["maximum_volume_size"].as_i64().is_some(), "{j}");
    // A zone this region does not have has no room.
    let j = json(
        &d,
        &[
            "get-capacity",
            "--accessible-topology",
            "topology.ebs.csi.aws.com/zone=mars-1a",
        ],
    );
    assert_eq!(j["available_capacity"], 0, "{j}");
    refused(&d, &["get-capacity", "-p", "type=floppy"], "InvalidArgument");

    let text = ok(&d, &["controller-get-capabilities"]);
    assert!(text.lines().any(|l| l == "CREATE_DELETE_VOLUME"), "{text}");
    assert!(text.lines().any(|l| l == "MODIFY_VOLUME"), "{text}");
    let j = json(&d, &["controller-get-capabilities"]);
    assert!(
        j["capabilities"]
            .as_array()
            .expect("a list")
            .contains(&"EXPAND_VOLUME".into()),
        "{j}"
    );

    let text = ok(&d, &["node-get-capabilities"]);
    assert!(text.lines().any(|l| l == "STAGE_UNSTAGE_VOLUME"), "{text}");
    let j = json(&d, &["node-get-capabilities"]);
    assert!(
        j["capabilities"]
            .as_array()
            .expect("a list")
            .contains(&"GET_VOLUME_STATS".into()),
        "{j}"
    );

    let text = ok(&d, &["node-get-info"]);
    assert!(text.starts_with(&format!("{NODE}\n  max volumes: ")), "{text}");
    assert!(text.contains(&format!("zone={ZONE}")), "{text}");
    let j = json(&d, &["node-get-info"]);
    assert_eq!(j["node_id"], NODE);
    assert_eq!(
        j["accessible_topology"]["segments"]["topology.ebs.csi.aws.com/zone"],
        ZONE
    );
    assert!(j["max_volumes_per_node"].as_i64().is_some_and(|n| n > 0), "{j}");

    let err = refused(&d, &["node-get-storage-health"], "Unimplemented");
    assert!(err.contains("NodeGetStorageHealth"), "{err}");
}

#[tokio::test]
async fn snapshots_are_made_listed_restored_and_deleted() {
    let d = Driver::start(&[]).await;
    let vol = create(&d, "pvc-snap", "1");
    let text = ok(&d, &["create-snapshot", "snapshot-1", "--source-volume-id", &vol]);
    let (snap, rest) = text.split_once("  ").expect("fields");
    assert!(snap.starts_with("snap-"), "{text}");
    assert!(rest.starts_with(&format!("of {vol}  1 GiB  ")), "{text}");
    let j = json(&d, &["get-snapshot", snap]);
    assert_eq!(j["snapshot"]["source_volume_id"], vol.as_str());
    assert_eq!(j["snapshot"]["size_bytes"], GIB);
    let time = j["snapshot"]["creation_time"].as_str().expect("a time");
    assert!(humantime::parse_rfc3339(time).is_ok(), "{time}");
    assert_eq!(ok(&d, &["get-snapshot", snap]), text);

    let listed = json(&d, &["list-snapshots", "--source-volume-id", &vol]);
    assert_eq!(listed["entries"][0]["snapshot"]["snapshot_id"], snap);
    let text = ok(&d, &["list-snapshots", "--snapshot-id", snap]);
    assert!(text.starts_with(snap), "{text}");
    assert_eq!(
        ok(&d, &["list-snapshots", "--source-volume-id", "vol-0123456789abcdef0"]),
        "no snapshots\n"
    );

    let restored = ok(&d, &["create-volume", "pvc-restored", "--from-snapshot", snap]);
    assert!(restored.contains(&format!("  from snapshot: {snap}\n")), "{restored}");
    let j = json(&d, &["create-volume", "pvc-clone", "--from-volume", &vol]);
    assert_eq!(j["volume"]["content_source"]["volume"]["volume_id"], vol.as_str());

    assert_eq!(ok(&d, &["delete-snapshot", snap]), format!("deleted {snap}\n"));
    refused(&d, &["get-snapshot", snap], "NotFound");
    refused(
        &d,
        &[
            "create-snapshot",
            "snapshot-2",
            "--source-volume-id",
            "vol-0123456789abcdef0",
        ],
        "NotFound",
    );
}

#[tokio::test]
async fn volumes_are_expanded_modified_and_their_health_read() {
    let d = Driver::start(&[]).await;
    let id = create(&d, "pvc-grow", "1");
    let text = ok(&d, &["controller-expand-volume", &id, "--size-gib", "3"]);
    assert!(text.starts_with(&format!("{id} is now 3 GiB")), "{text}");
    let j = json(
        &d,
        &[
            "controller-expand-volume",
            &id,
            "--required-bytes",
            &(3 * GIB).to_string(),
        ],
    );
    assert_eq!(j["capacity_bytes"], 3 * GIB);
    assert!(j["node_expansion_required"].is_boolean(), "{j}");
    assert!(ok(&d, &["controller-get-volume", &id]).starts_with(&format!("{id}  3 GiB\n")));
    refused(&d, &["controller-expand-volume", &id], "InvalidArgument");

    let text = ok(
        &d,
        &["controller-modify-volume", &id, "--mutable-parameter", "iops=4000"],
    );
    assert_eq!(text, format!("modified {id}: iops=4000\n"));
    let err = refused(
        &d,
        &["controller-modify-volume", &id, "--mutable-parameter", "type=floppy"],
        "InvalidArgument",
    );
    assert!(err.contains("floppy"), "{err}");
    // The volume-modifier-for-k8s sidecar's calls, with its `volumeType` key.
    assert_eq!(
        ok(&d, &["get-csi-driver-modification-capability"]),
        "ModifyVolumeProperties is served\n"
    );
    let text = ok(&d, &["modify-volume-properties", &id, "--parameter", "volumeType=gp2"]);
    assert_eq!(text, format!("modified {id}: volumeType=gp2\n"));
    // gp2 takes no IOPS figure: the volume really is gp2 now.
    refused(
        &d,
        &["modify-volume-properties", &id, "--parameter", "iops=4000"],
        "InvalidArgument",
    );
    refused(
        &d,
        &[
            "modify-volume-properties",
            "vol-0123456789abcdef0",
            "--parameter",
            "volumeType=gp3",
        ],
        "NotFound",
    );

    assert_eq!(
        ok(&d, &["controller-get-volume-health", &id]),
        format!("{id}  healthy\n")
    );
    let j = json(&d, &["controller-get-volume-health", &id]);
    assert_eq!(j["volume_health"]["volume_id"], id.as_str());
    assert_eq!(j["volume_health"]["health_statuses"], serde_json::json!([]));
    refused(
        &d,
        &["controller-get-volume-health", "vol-0123456789abcdef0"],
        "NotFound",
    );
    // The listing names only unhealthy volumes: one whose image is gone.
    assert_eq!(ok(&d, &["controller-list-volume-health"]), "no unhealthy volumes\n");
    let lost = create(&d, "pvc-lost", "1");
    std::fs::remove_file(d.volume_file(&lost)).expect("remove the image");
    let text = ok(&d, &["controller-get-volume-health", &lost]);
    assert!(text.starts_with(&format!("{lost}\n  INACCESSIBLE: ")), "{text}");
    let j = json(&d, &["controller-list-volume-health"]);
    let ids: Vec<&Value> = j["entries"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| &e["volume_id"])
        .collect();
    assert_eq!(ids, vec![&Value::from(lost.as_str())], "{j}");
    assert_eq!(j["entries"][0]["health_statuses"][0]["status"], "INACCESSIBLE", "{j}");
}

#[tokio::test]
async fn a_volume_is_staged_published_measured_grown_and_taken_down_on_the_node() {
    let d = Driver::start(&[]).await;
    let id = create(&d, "pvc-node", "1");
    let j = json(&d, &["controller-publish-volume", &id, NODE]);
    let device = j["publish_context"]["devicePath"]
        .as_str()
        .expect("a device")
        .to_owned();
    let staging = d.staging_path(&id);
    let target = d.target_path("pod-1", "pvc-node", false);
    let publish_context = format!("devicePath={device}");

    let text = ok(
        &d,
        &[
            "node-stage-volume",
            &id,
            "--staging-target-path",
            &staging,
            "--publish-context",
            &publish_context,
            "--fs-type",
            "xfs",
        ],
    );
    assert_eq!(text, format!("staged {id} at {staging}\n"));
    assert!(mounts_under(d.dir.path()).iter().any(|m| m.to_str() == Some(&staging)));

    let text = ok(
        &d,
        &[
            "node-publish-volume",
            &id,
            "--staging-target-path",
            &staging,
            "--target-path",
            &target,
            "--publish-context",
            &publish_context,
            "--fs-type",
            "xfs",
        ],
    );
    assert_eq!(text, format!("published {id} at {target}\n"));
    std::fs::write(std::path::Path::new(&target).join("hello"), b"hi").expect("write through the mount");

    let text = ok(&d, &["node-get-volume-stats", &id, "--volume-path", &target]);
    assert!(text.lines().next().is_some_and(|l| l.starts_with("bytes: ")), "{text}");
    assert!(text.contains("\ninodes: "), "{text}");
    let j = json(&d, &["node-get-volume-stats", &id, "--volume-path", &target]);
    let bytes = &j["usage"][0];
    assert_eq!(bytes["unit"], "BYTES");
    let total = bytes["total"].as_i64().expect("total");
    assert!(total > GIB / 2 && total <= GIB, "{j}");
    refused(
        &d,
        &[
            "node-get-volume-stats",
            &id,
            "--volume-path",
            d.dir.path().to_str().expect("utf-8"),
        ],
        "NotFound",
    );

    let text = ok(&d, &["node-get-volume-health", &id, "--volume-publish-path", &target]);
    assert_eq!(text, format!("{id}  healthy\n"));

    // Grow the volume, then its filesystem on the node (xfs: growing a mounted ext4 needs
    // CAP_SYS_RESOURCE, which a test run may lack).
    ok(&d, &["controller-expand-volume", &id, "--size-gib", "2"]);
    let text = ok(
        &d,
        &[
            "node-expand-volume",
            &id,
            "--volume-path",
            &target,
            "--staging-target-path",
            &staging,
        ],
    );
    assert_eq!(text, format!("{id} is now 2 GiB on the node\n"));
    let j = json(&d, &["node-get-volume-stats", &id, "--volume-path", &target]);
    assert!(j["usage"][0]["total"].as_i64().is_some_and(|t| t > GIB), "grown: {j}");

    assert_eq!(
        ok(&d, &["node-unpublish-volume", &id, "--target-path", &target]),
        format!("unpublished {id} from {target}\n")
    );
    assert!(!std::path::Path::new(&target).exists());
    let j = json(&d, &["node-get-volume-health", &id, "--volume-publish-path", &target]);
    assert_eq!(
        j["volume_health"]["health_statuses"][0]["status"], "INACCESSIBLE",
        "{j}"
    );
    assert_eq!(
        ok(&d, &["node-unstage-volume", &id, "--staging-target-path", &staging]),
        format!("unstaged {id} from {staging}\n")
    );
    assert!(
        mounts_under(d.dir.path()).is_empty(),
        "{:?}",
        mounts_under(d.dir.path())
    );
    refused(
        &d,
        &[
            "node-stage-volume",
            &id,
            "--staging-target-path",
            "relative/path",
            "--publish-context",
            &publish_context,
        ],
        "InvalidArgument",
    );
    ok(&d, &["controller-unpublish-volume", &id, NODE]);
}

#[tokio::test]
async fn a_raw_block_volume_is_published_read_only_as_a_device_file() {
    use std::os::unix::fs::FileTypeExt;
    let d = Driver::start(&[]).await;
    let id = create(&d, "pvc-raw", "1");
    let j = json(&d, &["controller-publish-volume", &id, NODE, "--block"]);
    let publish_context = format!(
        "devicePath={}",
        j["publish_context"]["devicePath"].as_str().expect("a device")
    );
    let staging = d.staging_path(&id);
    let target = d.target_path("pod-raw", "pvc-raw", true);
    let cap = ["--block", "--access-mode", "single-node-reader-only"];
    let mut stage = vec![
        "node-stage-volume",
        &id,
        "--staging-target-path",
        &staging,
        "--publish-context",
        &publish_context,
    ];
    stage.extend(cap);
    ok(&d, &stage);
    let mut publish = vec![
        "node-publish-volume",
        &id,
        "--staging-target-path",
        &staging,
        "--target-path",
        &target,
        "--publish-context",
        &publish_context,
        "--readonly",
    ];
    publish.extend(cap);
    assert_eq!(ok(&d, &publish), format!("published {id} at {target} read-only\n"));
    let meta = std::fs::metadata(&target).expect("the device file");
    assert!(meta.file_type().is_block_device(), "{meta:?}");
    // Published as a mount volume instead: nothing was staged as a filesystem.
    let mut mount = publish.clone();
    mount.truncate(mount.len() - cap.len());
    let err = refused(&d, &mount, "FailedPrecondition");
    assert!(err.contains("NodeStageVolume first"), "{err}");

    ok(&d, &["node-unpublish-volume", &id, "--target-path", &target]);
    assert!(!std::path::Path::new(&target).exists());
    ok(&d, &["node-unstage-volume", &id, "--staging-target-path", &staging]);
    ok(&d, &["controller-unpublish-volume", &id, NODE]);
    assert!(
        mounts_under(d.dir.path()).is_empty(),
        "{:?}",
        mounts_under(d.dir.path())
    );
}
