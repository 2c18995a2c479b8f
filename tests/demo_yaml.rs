//! `ebs-csi demo -f`: the examples played end to end by the real binary (as root, on loop
//! devices), leaving nothing behind; and YAML it cannot honour refused before anything exists,
//! naming the file, the object and the field.

mod demo_run;
mod support;

use demo_run::{refused, repo};

fn play(dirs: &[&str], expect: &[&str]) {
    let args: Vec<&str> = dirs.iter().flat_map(|d| ["-f", *d]).collect();
    demo_run::play(&args, expect);
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
    let source = [include_str!("demo_yaml.rs"), include_str!("demo_workflows.rs")].concat();
    for e in std::fs::read_dir(repo().join("examples")).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(
            source.contains(&format!("\"examples/{name}\"")) || source.contains(&format!("\"examples/{name}/")),
            "examples/{name} is played by no test in tests/demo_yaml.rs or tests/demo_workflows.rs"
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
        if let Err(wrong) = refused(&["-f".as_ref(), dir.path().as_os_str()], &case.says) {
            failures.push(format!("{}: {wrong}", case.what));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
