//! `ebs-csi demo -f`: the examples played end to end by the real binary (as root, on loop
//! devices), leaving nothing behind; and YAML it cannot honour refused before anything exists,
//! naming the file, the object and the field.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `ebs-csi demo -f …`; returns its output and pid (the demo's temp dir is named by it).
fn demo(files: &[&Path]) -> (Output, u32) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ebs-csi"));
    cmd.arg("demo");
    for f in files {
        cmd.arg("-f").arg(f);
    }
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    (child.wait_with_output().unwrap(), pid)
}

/// Loop devices and mounts under this demo's temp dir.
fn left_behind(pid: u32) -> String {
    let marker = format!("ebs-csi-demo-{pid}");
    let loops = String::from_utf8_lossy(&Command::new("losetup").arg("-a").output().unwrap().stdout).into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut found: Vec<&str> = loops
        .lines()
        .chain(mounts.lines())
        .filter(|l| l.contains(&marker))
        .collect();
    if std::env::temp_dir().join(&marker).exists() {
        found.push("the demo's temp dir");
    }
    found.join("\n")
}

fn play(dirs: &[&str], expect: &[&str]) {
    let paths: Vec<PathBuf> = dirs.iter().map(|d| repo().join(d)).collect();
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let (out, pid) = demo(&refs);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo -f {dirs:?} failed:\n{stdout}\n{stderr}");
    for step in expect.iter().chain(&["all steps worked"]) {
        assert!(
            stdout.contains(step),
            "demo -f {dirs:?}: missing {step:?} in:\n{stdout}"
        );
    }
    let left = left_behind(pid);
    assert!(left.is_empty(), "demo -f {dirs:?} left behind:\n{left}");
}

#[test]
fn seed_examples_play_as_the_seed_describes() {
    play(
        &["examples/seed"],
        &[
            "Namespace                              dev-ns",
            "StorageClass ebs-sc                    provisioner ebs.csi.aws.com, WaitForFirstConsumer, gp3 (default), ext4",
            "PersistentVolumeClaim                  dev-ns/ebs-claim, 10Gi, ReadWriteOnce",
            "Deployment                             dev-ns/nginx-deployment, 1 pod, ebs-claim at /usr/share/nginx/html",
            "CreateVolume               CREATED",
            "10 GiB gp3 in local-1a",
            "ControllerPublishVolume    NODE_READY",
            "NodeStageVolume            VOL_READY   ext4 mounted at",
            "NodePublishVolume          PUBLISHED",
            "write index.html           PUBLISHED   47 bytes written and read back",
            "DeleteVolume               deleted",
        ],
    );
}

#[test]
fn seed_with_its_day_two_resizes_snapshots_and_restores() {
    play(
        &["examples/seed", "examples/seed/day-2"],
        &[
            "StorageClass ebs-sc                    update: allowVolumeExpansion true",
            "Expand to 20Gi",
            "CreateSnapshot",
            "CreateVolume (restore)",
            "read index.html (restore)  PUBLISHED   the page is there",
            "DeleteSnapshot",
        ],
    );
}

#[test]
fn resize_example_grows_the_filesystem() {
    play(
        &["examples/resize"],
        &["update: default/data to 8Gi", "Expand to 8Gi", "7.8 GiB total"],
    );
}

#[test]
fn snapshot_example_restores_into_a_read_only_pod() {
    play(
        &["examples/snapshot"],
        &[
            "Immediate",
            "CreateSnapshot",
            "CreateVolume (restore)",
            "(read-only)",
            "read index.html (restore)  PUBLISHED   the page is there",
        ],
    );
}

#[test]
fn block_example_hands_the_pod_a_raw_device() {
    play(
        &["examples/block"],
        &[
            "default/raw, 1Gi, ReadWriteOnce, Block",
            "NodeStageVolume            VOL_READY   block device",
            "volumeDevices/publish/pvc-",
            "write /dev/xvda",
            "47 bytes written on the raw device and read back",
        ],
    );
}

#[test]
fn io2_example_provisions_iops_and_shares_a_multi_attach_device() {
    play(
        &["examples/io2"],
        &[
            "io2, ext4, iops=4000",
            "8 GiB io2 in local-1a",
            "4 GiB io2 in local-1a",
            "read /dev/xvdb             PUBLISHED   the page is there",
        ],
    );
}

#[test]
fn encryption_example_makes_an_encrypted_xfs_volume() {
    play(
        &["examples/encryption"],
        &[
            "encrypted=true",
            "NodeStageVolume            VOL_READY   xfs mounted at",
        ],
    );
}

#[test]
fn gp2_to_gp3_example_modifies_the_volume_in_place() {
    play(
        &["examples/gp2-to-gp3"],
        &[
            "10 GiB gp2 in local-1a",
            "ControllerModifyVolume     PUBLISHED   vol-",
            "to VolumeAttributesClass gp3 (iops=3000, throughput=125, type=gp3)",
        ],
    );
}

#[test]
fn every_example_directory_has_a_test_here() {
    let source = include_str!("demo_yaml.rs");
    for e in std::fs::read_dir(repo().join("examples")).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(
            source.contains(&format!("\"examples/{name}\"")),
            "examples/{name} is played by no test in tests/demo_yaml.rs"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// YAML the demo cannot honour
// ---------------------------------------------------------------------------------------------

const NAMESPACE: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n";

fn class(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: {name}\nprovisioner: ebs.csi.aws.com\nvolumeBindingMode: WaitForFirstConsumer\n{extra}"
    )
}

fn claim(name: &str, class: &str, size: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {name}\n  namespace: apps\nspec:\n  accessModes: [ReadWriteOnce]\n  storageClassName: {class}\n  resources:\n    requests:\n      storage: {size}\n{extra}"
    )
}

fn pod(name: &str, claim: &str, replicas: u32, mount: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: apps\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n        - name: c\n          image: busybox\n          {mount}:\n            - name: v\n              {path}\n      volumes:\n        - name: v\n          persistentVolumeClaim:\n            claimName: {claim}\n",
        path = if mount == "volumeMounts" {
            "mountPath: /data"
        } else {
            "devicePath: /dev/xvda"
        }
    )
}

struct Case {
    what: &'static str,
    files: Vec<(&'static str, String)>,
    /// Substrings of the one error line: the file, the object, the field, the reason.
    says: Vec<&'static str>,
}

fn cases() -> Vec<Case> {
    let good_class = class("gp3", "");
    vec![
        Case {
            what: "an unknown provisioner",
            files: vec![
                ("ns.yaml", NAMESPACE.into()),
                (
                    "sc.yaml",
                    class("other", "").replace("provisioner: ebs.csi.aws.com", "provisioner: disk.csi.example.com"),
                ),
            ],
            says: vec!["sc.yaml", "StorageClass other", "provisioner", "disk.csi.example.com"],
        },
        Case {
            what: "a claim naming a missing StorageClass",
            files: vec![
                ("ns.yaml", NAMESPACE.into()),
                ("sc.yaml", good_class.clone()),
                ("pvc.yaml", claim("data", "fast", "1Gi", "")),
            ],
            says: vec!["pvc.yaml", "PersistentVolumeClaim apps/data", "spec.storageClassName", "\"fast\""],
        },
        Case {
            what: "ReadWriteMany on a filesystem volume",
            files: vec![
                ("ns.yaml", NAMESPACE.into()),
                ("sc.yaml", good_class.clone()),
                (
                    "pvc.yaml",
                    claim("data", "gp3", "1Gi", "").replace("[ReadWriteOnce]", "[ReadWriteMany]"),
                ),
            ],
            says: vec!["pvc.yaml", "PersistentVolumeClaim apps/data", "spec.accessModes", "MULTI_NODE_MULTI_WRITER"],
        },
        Case {
            what: "ReadWriteMany block on a type that cannot multi-attach",
            files: vec![
                ("ns.yaml", NAMESPACE.into()),
                ("sc.yaml", good_class.clone()),
                (
                    "pvc.yaml",
                    claim("data", "gp3", "1Gi", "  volumeMode: Block\n").replace("[ReadWriteOnce]", "[ReadWriteMany]"),
                ),
            ],
            says: vec!["pvc.yaml", "apps/data", "spec.accessModes", "io1 and io2"],
        },
        Case {
            what: "a size the type does not allow",
            files: vec![
                ("ns.yaml", NAMESPACE.into()),
                ("sc.yaml", class("cold", "parameters:\n  type: sc1\n")),
                ("pvc.yaml", claim("archive", "cold", "10Gi", "")),
            ],
            says: vec![
                "pvc.yaml",
                "PersistentVolumeClaim apps/archive",
                "spec.resources.requests.storage",
                "125",
            ],
        },
        Case {
            what: "a YAML syntax error",
            files: vec![("broken.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: [apps\n".into())],
            says: vec!["broken.yaml", "YAML syntax error", "line"],
        },
        Case {
            what: "a parameter of the wrong YAML type",
            files: vec![("sc.yaml", class("fast", "parameters:\n  type: io2\n  iops: 5000\n"))],
            says: vec!["sc.yaml", "StorageClass fast", "parameters.iops", "string"],
        },
        Case {
            what: "a parameter the driver does not know",
            files: vec![("sc.yaml", class("fast", "parameters:\n  type: gp4\n"))],
            says: vec!["sc.yaml", "StorageClass fast", "parameters", "gp4"],
        },
        Case {
            what: "a claim in a namespace nobody made",
            files: vec![("sc.yaml", good_class.clone()), ("pvc.yaml", claim("data", "gp3", "1Gi", ""))],
            says: vec!["pvc.yaml", "PersistentVolumeClaim apps/data", "metadata.namespace", "apps"],
        },
        Case {
            what: "a resize without allowVolumeExpansion",
            files: vec![
                ("1.yaml", format!("{NAMESPACE}---\n{good_class}---\n{}", claim("data", "gp3", "1Gi", ""))),
                ("2.yaml", pod("app", "data", 1, "volumeMounts")),
                ("3.yaml", claim("data", "gp3", "2Gi", "")),
            ],
            says: vec!["3.yaml", "PersistentVolumeClaim apps/data", "spec.resources.requests.storage", "allowVolumeExpansion"],
        },
        Case {
            what: "a claim that shrinks",
            files: vec![
                (
                    "1.yaml",
                    format!(
                        "{NAMESPACE}---\n{}---\n{}",
                        class("gp3", "allowVolumeExpansion: true\n"),
                        claim("data", "gp3", "2Gi", "")
                    ),
                ),
                ("2.yaml", pod("app", "data", 1, "volumeMounts")),
                ("3.yaml", claim("data", "gp3", "1Gi", "")),
            ],
            says: vec!["3.yaml", "apps/data", "spec.resources.requests.storage", "never shrink"],
        },
        Case {
            what: "a block claim mounted as a filesystem",
            files: vec![
                (
                    "1.yaml",
                    format!("{NAMESPACE}---\n{good_class}---\n{}", claim("raw", "gp3", "1Gi", "  volumeMode: Block\n")),
                ),
                ("2.yaml", pod("app", "raw", 1, "volumeMounts")),
            ],
            says: vec!["2.yaml", "Deployment apps/app", "spec.template.spec.containers[0].volumeMounts[0]", "volumeDevices"],
        },
        Case {
            what: "a ReadWriteOncePod claim used by two pods",
            files: vec![
                (
                    "1.yaml",
                    format!(
                        "{NAMESPACE}---\n{good_class}---\n{}",
                        claim("one", "gp3", "1Gi", "").replace("[ReadWriteOnce]", "[ReadWriteOncePod]")
                    ),
                ),
                ("2.yaml", pod("app", "one", 2, "volumeMounts")),
            ],
            says: vec!["2.yaml", "Deployment apps/app", "ReadWriteOncePod"],
        },
        Case {
            what: "a pod naming a claim that does not exist",
            files: vec![("1.yaml", format!("{NAMESPACE}---\n{good_class}")), ("2.yaml", pod("app", "ghost", 1, "volumeMounts"))],
            says: vec![
                "2.yaml",
                "Deployment apps/app",
                "spec.template.spec.volumes[0].persistentVolumeClaim.claimName",
                "ghost",
            ],
        },
        Case {
            what: "a restore smaller than its snapshot",
            files: vec![
                (
                    "1.yaml",
                    format!(
                        "{NAMESPACE}---\n{}---\n{}",
                        class("now", "").replace("WaitForFirstConsumer", "Immediate"),
                        claim("src", "now", "4Gi", "")
                    ),
                ),
                (
                    "2.yaml",
                    "apiVersion: snapshot.storage.k8s.io/v1\nkind: VolumeSnapshotClass\nmetadata:\n  name: snaps\ndriver: ebs.csi.aws.com\ndeletionPolicy: Delete\n---\napiVersion: snapshot.storage.k8s.io/v1\nkind: VolumeSnapshot\nmetadata:\n  name: snap\n  namespace: apps\nspec:\n  volumeSnapshotClassName: snaps\n  source:\n    persistentVolumeClaimName: src\n".into(),
                ),
                (
                    "3.yaml",
                    claim(
                        "copy",
                        "now",
                        "1Gi",
                        "  dataSource:\n    apiGroup: snapshot.storage.k8s.io\n    kind: VolumeSnapshot\n    name: snap\n",
                    ),
                ),
            ],
            says: vec!["3.yaml", "PersistentVolumeClaim apps/copy", "spec.resources.requests.storage", "4 GiB"],
        },
        Case {
            what: "a VolumeAttributesClass with a parameter ModifyVolume refuses",
            files: vec![
                (
                    "1.yaml",
                    format!(
                        "{NAMESPACE}---\n{good_class}---\n{}",
                        claim("data", "gp3", "1Gi", "  volumeAttributesClassName: bad\n")
                    ),
                ),
                (
                    "2.yaml",
                    "apiVersion: storage.k8s.io/v1beta1\nkind: VolumeAttributesClass\nmetadata:\n  name: bad\ndriverName: ebs.csi.aws.com\nparameters:\n  encrypted: \"true\"\n".into(),
                ),
            ],
            says: vec!["1.yaml", "PersistentVolumeClaim apps/data", "spec.volumeAttributesClassName", "encrypted"],
        },
    ]
}

#[test]
fn yaml_the_demo_cannot_honour_is_refused_before_anything_is_made() {
    let mut failures = Vec::new();
    for case in cases() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in &case.files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let (out, pid) = demo(&[dir.path()]);
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut wrong = Vec::new();
        if out.status.code() != Some(1) {
            wrong.push(format!("exit status {:?}, not 1", out.status.code()));
        }
        for s in &case.says {
            if !stderr.contains(s) {
                wrong.push(format!("the error does not say {s:?}"));
            }
        }
        if stderr.lines().count() != 1 {
            wrong.push("the error is not one line".into());
        }
        if !stdout.is_empty() {
            wrong.push(format!("it started playing:\n{stdout}"));
        }
        let left = left_behind(pid);
        if !left.is_empty() {
            wrong.push(format!("it made something: {left}"));
        }
        if !wrong.is_empty() {
            failures.push(format!("{}: {}\n  stderr: {stderr}", case.what, wrong.join("; ")));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
