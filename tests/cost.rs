//! `ebs-csi cost` as a user runs it: gp2 volumes made through the driver on a local store (two
//! with the claim tags the provisioner's --extra-create-metadata passes, one without, and a gp3
//! one), the real binary's report in each format, then its --plan checked against the Kubernetes
//! schemas and played by `ebs-csi demo -f` (root, loop devices): a claim made as gp2 is moved
//! to gp3 by the plan.

mod demo_run;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::{Driver, create_req};

const PVC_NAME: &str = "csi.storage.k8s.io/pvc/name";
const PVC_NAMESPACE: &str = "csi.storage.k8s.io/pvc/namespace";

/// Runs `ebs-csi cost ARGS…`; returns (success, stdout, stderr).
fn cost(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ebs-csi"))
        .arg("cost")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(args: &[&str]) -> String {
    let (success, stdout, stderr) = cost(args);
    assert!(success, "cost {args:?} failed:\n{stdout}\n{stderr}");
    stdout
}

/// Four volumes: gp2 10 GiB (claim default/legacy), gp2 20 GiB (claim default/reports), gp2 5 GiB
/// without claim tags, gp3 8 GiB. Returns their ids in that order.
async fn volumes(driver: &mut Driver) -> Vec<String> {
    let mut ids = Vec::new();
    for (name, gib, pairs) in [
        (
            "pvc-legacy",
            10,
            vec![("type", "gp2"), (PVC_NAME, "legacy"), (PVC_NAMESPACE, "default")],
        ),
        (
            "pvc-reports",
            20,
            vec![("type", "gp2"), (PVC_NAME, "reports"), (PVC_NAMESPACE, "default")],
        ),
        ("pvc-untagged", 5, vec![("type", "gp2")]),
        ("pvc-new", 8, vec![("type", "gp3")]),
    ] {
        let v = driver
            .controller
            .create_volume(create_req(name, gib, &pairs))
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        ids.push(v.volume_id);
    }
    ids
}

fn row<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["volume_id"] == id)
        .unwrap_or_else(|| panic!("no row for {id} in {report:#}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn cost_reports_the_gp3_saving_in_every_format_and_its_plan_plays() {
    let mut driver = Driver::start(&[]).await;
    let ids = volumes(&mut driver).await;
    let data = driver.data_dir();
    let data = data.to_str().unwrap();

    // JSON: each gp2 moves to gp3's included 3,000 IOPS and 125 MiB/s for a fifth less.
    let report: Value = serde_json::from_str(&ok(&["--data-dir", data, "--format", "json"])).unwrap();
    assert_eq!(report["backend"], "local");
    assert_eq!(report["priced_as"], "us-east-1");
    // Piped, the listing's progress stays off stderr; on a terminal (script(1) gives one) it shows.
    let (_, _, stderr) = cost(&["--data-dir", data, "--format", "json"]);
    assert!(
        !stderr.contains("volumes listed"),
        "progress leaked into a pipe: {stderr}"
    );
    if Path::new("/usr/bin/script").is_file() {
        let cmd = format!("{} cost --data-dir {data}", env!("CARGO_BIN_EXE_ebs-csi"));
        let tty = Command::new("/usr/bin/script")
            .args(["-qec", &cmd, "/dev/null"])
            .output()
            .unwrap();
        let screen = String::from_utf8_lossy(&tty.stdout);
        assert!(tty.status.success(), "{screen}");
        assert!(
            screen.contains("cost 0 volumes listed"),
            "no progress on a terminal: {screen:?}"
        );
        assert!(screen.contains("total"), "{screen:?}");
    } else {
        eprintln!("SKIP (terminal half): /usr/bin/script (util-linux) is not installed");
    }
    let source = report["prices"][0]["source"].as_str().unwrap_or_default();
    assert!(source.starts_with("https://aws.amazon.com/ebs/pricing/"), "{source}");
    let legacy = row(&report, &ids[0]);
    assert_eq!(legacy["type"], "gp2");
    assert_eq!(legacy["size_gib"], 10);
    assert_eq!(legacy["iops"], 100, "gp2's minimum baseline");
    assert_eq!(legacy["zone"], "local-1a");
    assert_eq!(legacy["monthly"], 1.0);
    assert_eq!(legacy["claim"]["name"], "legacy");
    assert_eq!(legacy["gp3"]["iops"], 3000);
    assert_eq!(legacy["gp3"]["throughput"], 125);
    assert_eq!(legacy["gp3"]["monthly"], 0.8);
    assert_eq!(legacy["gp3"]["saving"], 0.2);
    assert_eq!(row(&report, &ids[1])["gp3"]["saving"], 0.4);
    assert!(row(&report, &ids[2])["claim"].is_null());
    assert_eq!(row(&report, &ids[2])["gp3"]["saving"], 0.1);
    let gp3 = row(&report, &ids[3]);
    assert_eq!(gp3["monthly"], 0.64);
    assert!(gp3["gp3"].is_null());
    assert_eq!(gp3["note"], "already gp3");
    let totals = &report["totals"];
    assert_eq!(totals["volumes"], 4);
    assert_eq!(totals["moves"], 3);
    assert_eq!(totals["monthly"], 4.14);
    assert_eq!(totals["saving"], 0.7);
    assert_eq!(totals["monthly_after"], 3.44);

    // CSV: one record per volume; the savings add up to the total.
    let text = ok(&["--data-dir", data, "--format", "csv"]);
    let mut records = csv::Reader::from_reader(text.as_bytes());
    let headers = records.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = records.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 4);
    let cents = |s: &str| -> i64 {
        if s.is_empty() {
            0
        } else {
            (s.parse::<f64>().unwrap() * 100.0).round() as i64
        }
    };
    assert_eq!(rows.iter().map(|r| cents(&r[col("saving")])).sum::<i64>(), 70);
    assert_eq!(rows.iter().map(|r| cents(&r[col("monthly")])).sum::<i64>(), 414);
    let legacy = rows.iter().find(|r| &r[col("volume_id")] == ids[0].as_str()).unwrap();
    assert_eq!(&legacy[col("gp3_iops")], "3000");
    assert_eq!(&legacy[col("pvc_name")], "legacy");

    // The table: the rows, the totals, what region the local store is priced as, and whence.
    let table = ok(&["--data-dir", data]);
    assert!(table.starts_with("VOLUME"), "{table}");
    assert!(
        table.contains(
            "total: 4 volumes, 4.14 USD/month now; 3 to move to gp3: 3.44 USD/month after, saving 0.70 USD/month (17%)"
        ),
        "{table}"
    );
    assert!(
        table.contains("priced as us-east-1 (the local backend has no region of its own"),
        "{table}"
    );
    assert!(
        table.contains("prices for us-east-1: https://aws.amazon.com/ebs/pricing/ (On-Demand list prices; US regions share them) as of 20"),
        "{table}"
    );
    assert!(table.contains(&format!("{} stays: already gp3", ids[3])), "{table}");
    let line = table.lines().find(|l| l.starts_with(&ids[0])).unwrap();
    for cell in [
        "gp2",
        "10",
        "100",
        "25",
        "local-1a",
        "1.00",
        "3000",
        "125",
        "0.80",
        "0.20",
        "default/legacy",
    ] {
        assert!(line.split_whitespace().any(|c| c == cell), "{cell} in {line}");
    }

    // Another region's prices, and a price file's.
    let seoul: Value = serde_json::from_str(&ok(&[
        "--data-dir",
        data,
        "--format",
        "json",
        "--region",
        "ap-northeast-2",
    ]))
    .unwrap();
    assert_eq!(row(&seoul, &ids[0])["monthly"], 1.14);
    assert_eq!(row(&seoul, &ids[0])["gp3"]["monthly"], 0.91);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prices.yaml");
    std::fs::write(
        &file,
        "regions:\n  test-1:\n    source: our contract\n    date: \"2026-01-01\"\n    currency: EUR\n    volumes:\n      \
         gp2: { gb_month: 0.2 }\n      gp3: { gb_month: 0.1, iops: [{ month: 0.01 }], free_iops: 3000, mibps_month: 0.1, free_mibps: 125 }\n",
    )
    .unwrap();
    let custom: Value = serde_json::from_str(&ok(&[
        "--data-dir",
        data,
        "--format",
        "json",
        "--region",
        "test-1",
        "--prices",
        file.to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(custom["prices"][0]["source"], "our contract");
    assert_eq!(row(&custom, &ids[0])["gp3"]["saving"], 1.0);
    assert_eq!(custom["totals"]["saving"], 3.5);

    // Refusals: an unpriced region, a broken price file, a store that is not there.
    let (success, _, stderr) = cost(&["--data-dir", data, "--region", "mars-north-1"]);
    assert!(!success && stderr.contains("--prices"), "{stderr}");
    std::fs::write(&file, "regions: {x: {source: s}}").unwrap();
    let (success, _, stderr) = cost(&["--data-dir", data, "--prices", file.to_str().unwrap()]);
    assert!(!success && stderr.contains("--prices"), "{stderr}");
    let (success, _, stderr) = cost(&["--data-dir", dir.path().join("none").to_str().unwrap()]);
    assert!(!success && stderr.contains("no local volume store"), "{stderr}");

    // The plan: one class for the one target, a claim per tagged volume, a comment for the other.
    let plan_dir = dir.path().join("plan");
    let (success, _, stderr) = cost(&[
        "--data-dir",
        data,
        "--format",
        "json",
        "--plan",
        plan_dir.to_str().unwrap(),
    ]);
    assert!(success, "{stderr}");
    let plan_file = plan_dir.join("gp3-plan.yaml");
    let plan = std::fs::read_to_string(&plan_file).unwrap();
    let docs: Vec<serde_yaml_ng::Value> = serde_yaml_ng::Deserializer::from_str(&plan)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &serde_yaml_ng::Value| !v.is_null())
        .collect();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "VolumeAttributesClass",
            "PersistentVolumeClaim",
            "PersistentVolumeClaim"
        ]
    );
    assert_eq!(docs[0]["metadata"]["name"], "gp3-3000-125");
    assert_eq!(docs[0]["driverName"], "ebs.csi.aws.com");
    assert_eq!(docs[0]["parameters"]["type"], "gp3");
    assert_eq!(docs[0]["parameters"]["iops"], "3000");
    assert_eq!(docs[0]["parameters"]["throughput"], "125");
    assert_eq!(docs[1]["metadata"]["name"], "legacy");
    assert_eq!(docs[1]["metadata"]["namespace"], "default");
    assert_eq!(docs[1]["spec"]["volumeAttributesClassName"], "gp3-3000-125");
    assert_eq!(docs[2]["metadata"]["name"], "reports");
    assert!(
        plan.contains(&format!("# {}: 5 GiB gp2 in local-1a has no PVC tags", ids[2])),
        "{plan}"
    );
    validate(&plan_file);

    // Played: the claims made as gp2 by a StorageClass and a pod, then the plan applied.
    let base = dir.path().join("base");
    std::fs::create_dir(&base).unwrap();
    std::fs::write(base.join("app.yaml"), BASE).unwrap();
    let run = demo_run::play(
        &["-f", base.to_str().unwrap(), "-f", plan_dir.to_str().unwrap()],
        &[
            "10 GiB gp2 in local-1a",
            "20 GiB gp2 in local-1a",
            "to VolumeAttributesClass gp3-3000-125 (iops=3000, throughput=125, type=gp3)",
        ],
    );
    let out = run.stdout();
    assert_eq!(out.matches("ControllerModifyVolume").count(), 2, "{out}");
}

/// The claims the volumes above were made for, as a cluster would have them.
const BASE: &str = "\
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: ebs-gp2
provisioner: ebs.csi.aws.com
volumeBindingMode: WaitForFirstConsumer
parameters:
  type: gp2
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: legacy
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ebs-gp2
  resources:
    requests:
      storage: 10Gi
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: reports
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ebs-gp2
  resources:
    requests:
      storage: 20Gi
---
apiVersion: v1
kind: Pod
metadata:
  name: app
spec:
  containers:
    - name: app
      image: nginx:1.27
      volumeMounts:
        - { name: legacy, mountPath: /usr/share/nginx/html }
        - { name: reports, mountPath: /reports }
  volumes:
    - { name: legacy, persistentVolumeClaim: { claimName: legacy } }
    - { name: reports, persistentVolumeClaim: { claimName: reports } }
";

/// The plan against the schemas of the Kubernetes versions that serve VolumeAttributesClass
/// storage.k8s.io/v1beta1, with kubernetes-validate (as tests/manifests.rs checks deploy/).
fn validate(file: &Path) {
    let Some(tool) = kubernetes_validate() else {
        println!("SKIPPED: kubernetes-validate is not installed (scripts/test.sh installs it into .venv-test)");
        return;
    };
    for version in ["1.31.0", "1.32.0", "1.33.0"] {
        let out = Command::new(&tool)
            .args(["--strict", "--quiet", "-k", version])
            .arg(file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubernetes-validate {version}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn kubernetes_validate() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KUBERNETES_VALIDATE") {
        return Some(p.into());
    }
    let venv = demo_run::repo().join(".venv-test/bin/kubernetes-validate");
    venv.is_file().then_some(venv)
}

/// The aws backend against moto: the volumes tagged as the driver's, each priced by the region
/// of its zone; a volume the driver did not make is not listed.
#[cfg(feature = "aws")]
#[tokio::test(flavor = "multi_thread")]
async fn cost_on_aws_lists_the_drivers_volumes_and_prices_them_by_their_region() {
    use support::aws::{AZ, Moto, create_in_zone};

    let moto = Moto::start();
    let env = Moto::env(&moto.url);
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let instance = moto.instance("m5.large").await;
    let mut driver = Driver::start_custom(
        &[
            "--backend",
            "aws",
            "--mode",
            "controller",
            "--node-id",
            &instance,
            "--zone",
            AZ,
        ],
        &pairs,
    )
    .await;
    let ours = driver
        .controller
        .create_volume(create_in_zone(
            "pvc-aws-cost",
            100,
            &[("type", "gp2"), (PVC_NAME, "db"), (PVC_NAMESPACE, "shop")],
        ))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
        .volume_id;
    let ec2 = moto.client();
    let theirs = ec2
        .create_volume()
        .availability_zone(AZ)
        .size(50)
        .volume_type(aws_sdk_ec2::types::VolumeType::Gp2)
        .send()
        .await
        .unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_ebs-csi"))
        .args(["cost", "--backend", "aws", "--format", "json"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["backend"], "aws");
    assert!(report["priced_as"].is_null(), "{report:#}");
    let ids: Vec<&str> = report["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["volume_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [ours.as_str()], "not {:?}", theirs.volume_id());
    let v = row(&report, &ours);
    assert_eq!(v["region"], "us-east-1");
    assert_eq!(v["iops"], 300);
    assert_eq!(v["monthly"], 10.0);
    assert_eq!(v["gp3"]["monthly"], 8.0);
    assert_eq!(v["claim"]["namespace"], "shop");
    assert_eq!(report["totals"]["saving"], 2.0);
    drop(driver);
}
