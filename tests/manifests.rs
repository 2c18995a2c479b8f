//! deploy/kubernetes, rendered by `kubectl kustomize` as a user installs it, checked for what
//! would break an installation without any error at apply time: the driver name, the socket the
//! driver listens on against the one each sidecar dials and kubelet is told about, the plugin and
//! registration directories, the flags given to `ebs-csi` (parsed by its real command line), the
//! RBAC wiring; and the Kubernetes schemas of the versions EKS supports, with kubernetes-validate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::{CommandFactory, Parser};
use ebs_csi::cli::{Cli, Command as Sub};
use ebs_csi::config::{Backend, Endpoint, MetadataSource, Mode, ServeArgs};
use serde_yaml_ng::Value;

const DRIVER: &str = "ebs.csi.aws.com";
/// The overlays as installed, and the aws overlay with the volume-modifier component
/// (`components/volume-modifier`), composed as a user's kustomization would.
const OVERLAYS: [&str; 3] = ["aws", "local", WITH_MODIFIER];
const WITH_MODIFIER: &str = "aws+volume-modifier";
/// The Kubernetes versions EKS supports, as kubernetes-validate names its schemas.
const K8S_VERSIONS: [&str; 4] = ["1.31.0", "1.32.0", "1.33.0", "1.34.0"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn render_text(overlay: &str) -> String {
    // kustomize takes only relative paths to other kustomizations: the composed one lives in a
    // temporary directory at the repository's root for the moment it is rendered.
    let composed = (overlay == WITH_MODIFIER).then(|| {
        let dir = tempfile::tempdir_in(repo()).unwrap();
        std::fs::write(
            dir.path().join("kustomization.yaml"),
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
             resources:\n  - ../deploy/kubernetes/overlays/aws\n\
             components:\n  - ../deploy/kubernetes/components/volume-modifier\n",
        )
        .unwrap();
        dir
    });
    let path = match &composed {
        Some(dir) => dir.path().to_owned(),
        None => repo().join("deploy/kubernetes/overlays").join(overlay),
    };
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(path)
        .output()
        .expect("kubectl (with its built-in kustomize) must be installed to render deploy/kubernetes");
    assert!(
        out.status.success(),
        "kubectl kustomize overlays/{overlay} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn render(overlay: &str) -> Vec<Value> {
    let text = render_text(overlay);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn s<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

/// `a.b.c` into nested mappings.
fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, key| v.get(key))
}

fn list<'a>(v: &'a Value, path: &str) -> Vec<&'a Value> {
    at(v, path)
        .and_then(Value::as_sequence)
        .map(|s| s.iter().collect())
        .unwrap_or_default()
}

fn object<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| s(d, "kind") == Some(kind) && s(d, "metadata.name") == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendered manifests"))
}

fn container<'a>(workload: &'a Value, name: &str) -> &'a Value {
    list(workload, "spec.template.spec.containers")
        .into_iter()
        .find(|c| s(c, "name") == Some(name))
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// The container's args with `$(VAR)` expanded from its env, as kubelet does.
fn args(c: &Value) -> Vec<String> {
    let env: BTreeMap<&str, &str> = list(c, "env")
        .into_iter()
        .filter_map(|e| Some((s(e, "name")?, s(e, "value")?)))
        .collect();
    list(c, "args")
        .into_iter()
        .map(|a| {
            let mut a = a.as_str().unwrap().to_owned();
            for (k, v) in &env {
                a = a.replace(&format!("$({k})"), v);
            }
            assert!(!a.contains("$("), "{a}: a variable the container does not define");
            a
        })
        .collect()
}

fn flag(c: &Value, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    args(c)
        .into_iter()
        .find_map(|a| a.strip_prefix(&prefix).map(str::to_owned))
}

/// The `ebs-csi` arguments of a container, parsed by the binary's own parser.
fn serve_args(c: &Value) -> ServeArgs {
    let argv: Vec<String> = std::iter::once("ebs-csi".to_owned()).chain(args(c)).collect();
    let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("ebs-csi refuses {argv:?}:\n{e}"));
    match cli.command {
        Sub::Serve(a) => *a,
        _ => panic!("{argv:?} is not `ebs-csi serve`"),
    }
}

/// A path inside a container → (the volume it is on, the path inside that volume).
fn on_volume(c: &Value, path: &str) -> (String, String) {
    list(c, "volumeMounts")
        .into_iter()
        .filter_map(|m| {
            let mount = s(m, "mountPath")?.trim_end_matches('/');
            let rest = path.strip_prefix(mount)?;
            (rest.is_empty() || rest.starts_with('/')).then(|| {
                (
                    mount.len(),
                    s(m, "name").unwrap().to_owned(),
                    rest.trim_start_matches('/').to_owned(),
                )
            })
        })
        .max_by_key(|(len, _, _)| *len)
        .map(|(_, v, r)| (v, r))
        .unwrap_or_else(|| panic!("{path} is on no volume of container {:?}", s(c, "name")))
}

fn socket(endpoint: &str) -> String {
    match Endpoint::parse(endpoint).unwrap() {
        Endpoint::Unix(p) => p.display().to_string(),
        Endpoint::Tcp(t) => panic!("the driver should listen on a unix socket, not tcp://{t}"),
    }
}

fn volume<'a>(workload: &'a Value, name: &str) -> &'a Value {
    list(workload, "spec.template.spec.volumes")
        .into_iter()
        .find(|v| s(v, "name") == Some(name))
        .unwrap_or_else(|| panic!("no volume {name}"))
}

fn host_path(workload: &Value, volume_name: &str) -> String {
    s(volume(workload, volume_name), "hostPath.path")
        .unwrap_or_else(|| panic!("volume {volume_name} is not a hostPath"))
        .trim_end_matches('/')
        .to_owned()
}

#[test]
fn the_csidriver_object_says_what_the_driver_does() {
    for overlay in OVERLAYS {
        let docs = render(overlay);
        let d = object(&docs, "CSIDriver", DRIVER);
        assert_eq!(at(d, "spec.attachRequired").and_then(Value::as_bool), Some(true));
        assert_eq!(at(d, "spec.podInfoOnMount").and_then(Value::as_bool), Some(false));
        assert_eq!(s(d, "spec.fsGroupPolicy"), Some("File"));
        let modes: Vec<_> = list(d, "spec.volumeLifecycleModes")
            .into_iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(modes, ["Persistent"]);
        // The name the driver reports must be the CSIDriver's, or kubelet never matches them.
        let node = object(&docs, "DaemonSet", "ebs-csi-node");
        assert_eq!(
            serve_args(container(node, "ebs-plugin")).driver_name,
            DRIVER,
            "{overlay}"
        );
        let controller = object(&docs, "Deployment", "ebs-csi-controller");
        assert_eq!(
            serve_args(container(controller, "ebs-plugin")).driver_name,
            DRIVER,
            "{overlay}"
        );
    }
}

#[test]
fn every_controller_sidecar_dials_the_socket_the_driver_listens_on() {
    for overlay in OVERLAYS {
        let docs = render(overlay);
        let dep = object(&docs, "Deployment", "ebs-csi-controller");
        let plugin = container(dep, "ebs-plugin");
        let serve = serve_args(plugin);
        assert_eq!(serve.mode, Mode::Controller, "{overlay}");
        let listen = socket(&serve.endpoint);
        let (vol, file) = on_volume(plugin, &listen);
        assert!(
            at(volume(dep, &vol), "emptyDir").is_some(),
            "{overlay}: the socket's volume {vol} should be an emptyDir shared in the pod"
        );
        let sidecars: Vec<&str> = list(dep, "spec.template.spec.containers")
            .into_iter()
            .filter_map(|c| s(c, "name"))
            .filter(|n| *n != "ebs-plugin")
            .collect();
        for name in [
            "csi-provisioner",
            "csi-attacher",
            "csi-resizer",
            "csi-snapshotter",
            "liveness-probe",
        ] {
            assert!(sidecars.contains(&name), "{overlay}: no {name}");
        }
        for name in &sidecars {
            let c = container(dep, name);
            let address = flag(c, "--csi-address").unwrap_or_else(|| panic!("{name} has no --csi-address"));
            assert_eq!(
                on_volume(c, &address),
                (vol.clone(), file.clone()),
                "{overlay}: {name} dials {address}, which is not the driver's socket {listen}"
            );
        }
    }
}

#[test]
fn the_controller_sidecars_have_the_flags_the_driver_relies_on() {
    for overlay in OVERLAYS {
        let docs = render(overlay);
        let dep = object(&docs, "Deployment", "ebs-csi-controller");
        let provisioner = args(container(dep, "csi-provisioner"));
        for f in [
            "--feature-gates=Topology=true",
            "--extra-create-metadata",
            "--default-fstype=ext4",
            "--leader-election",
        ] {
            assert!(
                provisioner.iter().any(|a| a == f),
                "{overlay}: csi-provisioner lacks {f}"
            );
        }
        for name in ["csi-attacher", "csi-resizer", "csi-snapshotter"] {
            assert!(
                args(container(dep, name)).iter().any(|a| a == "--leader-election"),
                "{overlay}: {name} runs without leader election, with two replicas"
            );
        }
        assert!(
            args(container(dep, "csi-snapshotter"))
                .iter()
                .any(|a| a == "--extra-create-metadata")
        );
        // Pinned images: a tag, never latest.
        for c in list(dep, "spec.template.spec.containers").into_iter().chain(list(
            object(&docs, "DaemonSet", "ebs-csi-node"),
            "spec.template.spec.containers",
        )) {
            let image = s(c, "image").unwrap();
            let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
            assert!(!tag.is_empty() && tag != "latest", "{overlay}: {image} is not pinned");
            match s(c, "name") {
                Some("ebs-plugin") => {}
                // Not a kubernetes-csi sidecar: the EBS project publishes it.
                Some("volumemodifier") => {
                    assert!(image.starts_with("public.ecr.aws/ebs-csi-driver/"), "{image}")
                }
                _ => assert!(image.starts_with("registry.k8s.io/sig-storage/"), "{image}"),
            }
        }
        assert_eq!(
            s(dep, "spec.template.spec.priorityClassName"),
            Some("system-cluster-critical")
        );
        assert_eq!(
            s(dep, "spec.template.spec.serviceAccountName"),
            Some("ebs-csi-controller-sa")
        );
        for c in list(dep, "spec.template.spec.containers") {
            assert!(
                at(c, "resources.requests").is_some(),
                "{:?} has no resource requests",
                s(c, "name")
            );
        }
        // The PodDisruptionBudget must select the controller's pods.
        let pdb = object(&docs, "PodDisruptionBudget", "ebs-csi-controller");
        let labels = at(dep, "spec.template.metadata.labels")
            .and_then(Value::as_mapping)
            .unwrap();
        for (k, v) in at(pdb, "spec.selector.matchLabels")
            .and_then(Value::as_mapping)
            .unwrap()
        {
            assert_eq!(labels.get(k), Some(v), "{overlay}: the PDB selects no controller pod");
        }
    }
}

#[test]
fn kubelet_the_registrar_and_the_node_plugin_agree_on_paths() {
    for overlay in OVERLAYS {
        let docs = render(overlay);
        let ds = object(&docs, "DaemonSet", "ebs-csi-node");
        let plugin = container(ds, "ebs-plugin");
        let serve = serve_args(plugin);
        assert_eq!(serve.mode, Mode::Node, "{overlay}");
        let listen = socket(&serve.endpoint);
        let (vol, file) = on_volume(plugin, &listen);
        let plugin_dir = host_path(ds, &vol);
        assert_eq!(plugin_dir, format!("/var/lib/kubelet/plugins/{DRIVER}"), "{overlay}");
        let on_host = format!("{plugin_dir}/{file}");

        let registrar = container(ds, "node-driver-registrar");
        let address = flag(registrar, "--csi-address").unwrap();
        assert_eq!(on_volume(registrar, &address), (vol.clone(), file.clone()), "{overlay}");
        assert_eq!(
            flag(registrar, "--kubelet-registration-path").as_deref(),
            Some(on_host.as_str()),
            "{overlay}: kubelet would dial another socket than the driver's"
        );
        let (reg_vol, _) = on_volume(registrar, "/registration/x.sock");
        assert_eq!(
            host_path(ds, &reg_vol),
            "/var/lib/kubelet/plugins_registry",
            "{overlay}"
        );
        let probe = container(ds, "liveness-probe");
        assert_eq!(
            on_volume(probe, &flag(probe, "--csi-address").unwrap()),
            (vol.clone(), file.clone())
        );

        // kubelet's tree, with mounts flowing back to the host.
        let kubelet = list(plugin, "volumeMounts")
            .into_iter()
            .find(|m| s(m, "mountPath") == Some("/var/lib/kubelet"))
            .expect("the node plugin mounts /var/lib/kubelet");
        assert_eq!(s(kubelet, "mountPropagation"), Some("Bidirectional"));
        assert_eq!(host_path(ds, s(kubelet, "name").unwrap()), "/var/lib/kubelet");
        let (dev, _) = on_volume(plugin, "/dev/xvda");
        assert_eq!(host_path(ds, &dev), "/dev");
        assert_eq!(
            at(plugin, "securityContext.privileged").and_then(Value::as_bool),
            Some(true)
        );
        assert_eq!(
            s(ds, "spec.template.spec.priorityClassName"),
            Some("system-node-critical")
        );
        assert!(
            list(ds, "spec.template.spec.tolerations")
                .iter()
                .any(|t| s(t, "operator") == Some("Exists") && at(t, "key").is_none() && at(t, "effect").is_none()),
            "{overlay}: the node plugin must tolerate every taint"
        );
    }
}

#[test]
fn each_overlay_picks_its_backend() {
    let aws = render("aws");
    for (kind, name) in [("Deployment", "ebs-csi-controller"), ("DaemonSet", "ebs-csi-node")] {
        assert_eq!(
            serve_args(container(object(&aws, kind, name), "ebs-plugin")).backend,
            Backend::Aws
        );
    }
    let sa = object(&aws, "ServiceAccount", "ebs-csi-controller-sa");
    let arn = at(sa, "metadata.annotations")
        .and_then(|a| a.get("eks.amazonaws.com/role-arn"))
        .and_then(Value::as_str)
        .expect("the controller's ServiceAccount carries the IRSA role");
    assert!(
        arn.starts_with("arn:aws:iam::") && arn.ends_with(":role/AmazonEKS_EBS_CSI_DriverRole"),
        "{arn}"
    );
    let controller = object(&aws, "Deployment", "ebs-csi-controller");
    assert_eq!(at(controller, "spec.replicas").and_then(Value::as_u64), Some(2));
    assert_eq!(
        at(controller, "spec.template.spec.securityContext.runAsNonRoot").and_then(Value::as_bool),
        Some(true),
        "the aws controller needs no root"
    );

    // local: controller and node share one host directory, at the path --data-dir names.
    let local = render("local");
    let mut dirs = BTreeSet::new();
    for (kind, name) in [("Deployment", "ebs-csi-controller"), ("DaemonSet", "ebs-csi-node")] {
        let w = object(&local, kind, name);
        let plugin = container(w, "ebs-plugin");
        let serve = serve_args(plugin);
        assert_eq!(serve.backend, Backend::Local, "{kind}");
        let data = serve.data_dir.display().to_string();
        let (vol, rest) = on_volume(plugin, &data);
        assert!(rest.is_empty(), "{kind}: --data-dir should be the mount itself");
        dirs.insert(host_path(w, &vol));
        assert_eq!(
            at(plugin, "securityContext.privileged").and_then(Value::as_bool),
            Some(true)
        );
        let (dev, _) = on_volume(plugin, "/dev/loop0");
        assert_eq!(
            host_path(w, &dev),
            "/dev",
            "{kind}: loop devices come from the host's /dev"
        );
    }
    assert_eq!(dirs.len(), 1, "controller and node use different data dirs: {dirs:?}");
    // The node registers under the Kubernetes node's name: CSI_NODE_NAME is
    // --kubernetes-node-name, the local node id when no --node-id is given.
    let node = container(object(&local, "DaemonSet", "ebs-csi-node"), "ebs-plugin");
    assert_node_name_from_spec(node);
    assert!(serve_args(node).node_id.is_none());
}

/// CSI_NODE_NAME is the pod's spec.nodeName, and the flag that reads it.
fn assert_node_name_from_spec(c: &Value) {
    let env = list(c, "env")
        .into_iter()
        .find(|e| s(e, "name") == Some("CSI_NODE_NAME"))
        .expect("CSI_NODE_NAME");
    assert_eq!(s(env, "valueFrom.fieldRef.fieldPath"), Some("spec.nodeName"));
    let cmd = Cli::command();
    let serve = cmd.find_subcommand("serve").unwrap();
    let name = serve
        .get_arguments()
        .find(|a| a.get_id() == "kubernetes_node_name")
        .unwrap();
    assert_eq!(name.get_env().and_then(|e| e.to_str()), Some("CSI_NODE_NAME"));
}

/// Whether the node DaemonSet of `docs`, if it reads its Node object (an aws node with the
/// kubernetes metadata source and no --node-id/--zone to skip the sources), can: a token in
/// the pod, and its ServiceAccount bound to a ClusterRole that may get nodes. Ok(true) when it
/// reads the Node and may, Ok(false) when it does not read it.
fn node_may_read_its_node(docs: &[Value]) -> Result<bool, String> {
    let ds = object(docs, "DaemonSet", "ebs-csi-node");
    let serve = serve_args(container(ds, "ebs-plugin"));
    let asks = serve.backend == Backend::Aws
        && serve.metadata_sources.contains(&MetadataSource::Kubernetes)
        && !(serve.node_id.is_some() && serve.zone.is_some());
    if !asks {
        return Ok(false);
    }
    let namespace = s(ds, "metadata.namespace").unwrap();
    let account = s(ds, "spec.template.spec.serviceAccountName").unwrap();
    let sa = object(docs, "ServiceAccount", account);
    let mounted = at(ds, "spec.template.spec.automountServiceAccountToken")
        .or_else(|| at(sa, "automountServiceAccountToken"))
        .and_then(Value::as_bool)
        .unwrap_or(true);
    if !mounted {
        return Err(format!("{account} gets no token in the node pods"));
    }
    let grants = |role: &Value, group: &str, resource: &str, verb: &str| {
        list(role, "rules").into_iter().any(|r| {
            let has = |field: &str, want: &str| {
                list(r, field)
                    .into_iter()
                    .any(|v| v.as_str() == Some(want) || v.as_str() == Some("*"))
            };
            has("apiGroups", group) && has("resources", resource) && has("verbs", verb)
        })
    };
    let roles: Vec<&Value> = docs
        .iter()
        .filter(|d| s(d, "kind") == Some("ClusterRoleBinding"))
        .filter(|b| {
            list(b, "subjects").into_iter().any(|sub| {
                s(sub, "kind") == Some("ServiceAccount")
                    && s(sub, "name") == Some(account)
                    && s(sub, "namespace") == Some(namespace)
            })
        })
        .filter(|b| s(b, "roleRef.kind") == Some("ClusterRole"))
        .filter_map(|b| {
            let name = s(b, "roleRef.name")?;
            docs.iter()
                .find(|d| s(d, "kind") == Some("ClusterRole") && s(d, "metadata.name") == Some(name))
        })
        .collect();
    let may = |group: &str, resource: &str, verb: &str| roles.iter().any(|r| grants(r, group, resource, verb));
    let bound = may("", "nodes", "get");
    if !bound {
        return Err(format!(
            "{namespace}/{account} is bound to no ClusterRole that may get nodes"
        ));
    }
    // The start-up taint: the Node patched once its CSINode lists the driver.
    if serve.remove_not_ready_taint && !(may("", "nodes", "patch") && may("storage.k8s.io", "csinodes", "get")) {
        return Err(format!(
            "{namespace}/{account} removes the start-up taint but may not patch nodes and get csinodes"
        ));
    }
    Ok(true)
}

#[test]
fn a_node_that_reads_its_node_object_may_read_it() {
    let aws = render("aws");
    assert_eq!(
        node_may_read_its_node(&aws),
        Ok(true),
        "the aws node falls back to its Node object"
    );
    assert_node_name_from_spec(container(object(&aws, "DaemonSet", "ebs-csi-node"), "ebs-plugin"));
    // The local node never asks (its identity is its flags), and its pods get no token.
    assert_eq!(node_may_read_its_node(&render("local")), Ok(false));
    // The check has teeth: without the binding, or without the token, it fails.
    let unbound: Vec<Value> = aws
        .iter()
        .filter(|d| !(s(d, "kind") == Some("ClusterRoleBinding") && s(d, "metadata.name") == Some("ebs-csi-node")))
        .cloned()
        .collect();
    assert!(
        node_may_read_its_node(&unbound)
            .unwrap_err()
            .contains("no ClusterRole that may get nodes")
    );
    let tokenless = render_text("aws").replace(
        "automountServiceAccountToken: true",
        "automountServiceAccountToken: false",
    );
    let tokenless: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&tokenless)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect();
    assert!(node_may_read_its_node(&tokenless).unwrap_err().contains("no token"));
    // And without the right to patch its Node, the start-up taint would stay.
    let get_only: Vec<Value> = aws
        .iter()
        .map(|d| {
            let mut d = d.clone();
            if s(&d, "kind") == Some("ClusterRole") && s(&d, "metadata.name") == Some("ebs-csi-node") {
                d["rules"][0]["verbs"] = serde_yaml_ng::from_str("[get]").unwrap();
            }
            d
        })
        .collect();
    assert!(
        node_may_read_its_node(&get_only)
            .unwrap_err()
            .contains("may not patch nodes")
    );
}

#[test]
fn rbac_binds_existing_roles_to_existing_service_accounts() {
    for overlay in OVERLAYS {
        let docs = render(overlay);
        let accounts: BTreeSet<(String, String)> = docs
            .iter()
            .filter(|d| s(d, "kind") == Some("ServiceAccount"))
            .map(|d| {
                (
                    s(d, "metadata.namespace").unwrap_or("default").to_owned(),
                    s(d, "metadata.name").unwrap().to_owned(),
                )
            })
            .collect();
        let mut bound = BTreeSet::new();
        for b in docs
            .iter()
            .filter(|d| matches!(s(d, "kind"), Some("ClusterRoleBinding" | "RoleBinding")))
        {
            let role_kind = s(b, "roleRef.kind").unwrap();
            let role = s(b, "roleRef.name").unwrap();
            object(&docs, role_kind, role);
            if role_kind == "Role" {
                assert_eq!(
                    s(object(&docs, "Role", role), "metadata.namespace"),
                    s(b, "metadata.namespace")
                );
            }
            for subject in list(b, "subjects") {
                let key = (
                    s(subject, "namespace").unwrap_or("").to_owned(),
                    s(subject, "name").unwrap().to_owned(),
                );
                assert!(
                    accounts.contains(&key),
                    "{overlay}: {key:?} is not a ServiceAccount here"
                );
                bound.insert(role.to_owned());
            }
        }
        for role in [
            "ebs-csi-provisioner",
            "ebs-csi-attacher",
            "ebs-csi-resizer",
            "ebs-csi-snapshotter",
            "ebs-csi-leader-election",
        ] {
            assert!(bound.contains(role), "{overlay}: {role} is bound to nobody");
        }
        // Every workload's ServiceAccount exists in its namespace.
        for w in docs
            .iter()
            .filter(|d| matches!(s(d, "kind"), Some("Deployment" | "DaemonSet")))
        {
            let key = (
                s(w, "metadata.namespace").unwrap().to_owned(),
                s(w, "spec.template.spec.serviceAccountName").unwrap().to_owned(),
            );
            assert!(accounts.contains(&key), "{key:?}");
        }
    }
}

/// The volume-modifier component adds the sidecar (its socket is checked with the other
/// sidecars') and lets it patch claims and volumes; the overlays without it have neither.
#[test]
fn the_volume_modifier_component_adds_the_sidecar_and_its_rights() {
    let docs = render(WITH_MODIFIER);
    let dep = object(&docs, "Deployment", "ebs-csi-controller");
    let sidecar = container(dep, "volumemodifier");
    // It acts only in the pod that holds the external-resizer's lease, found by its name.
    let pod_name = list(sidecar, "env")
        .into_iter()
        .find(|e| s(e, "name") == Some("POD_NAME"))
        .expect("the sidecar needs POD_NAME");
    assert_eq!(s(pod_name, "valueFrom.fieldRef.fieldPath"), Some("metadata.name"));
    let role = object(&docs, "ClusterRole", "ebs-csi-volume-modifier");
    let may = |resource: &str, verb: &str| {
        list(role, "rules").into_iter().any(|r| {
            list(r, "resources").iter().any(|x| x.as_str() == Some(resource))
                && list(r, "verbs").iter().any(|v| v.as_str() == Some(verb))
        })
    };
    assert!(may("leases", "watch"), "the resizer's lease is watched");
    for resource in ["persistentvolumeclaims", "persistentvolumes"] {
        let rule = list(role, "rules")
            .into_iter()
            .find(|r| list(r, "resources").iter().any(|x| x.as_str() == Some(resource)))
            .unwrap_or_else(|| panic!("no rule for {resource}"));
        let verbs: Vec<&str> = list(rule, "verbs").into_iter().filter_map(Value::as_str).collect();
        assert!(
            verbs.contains(&"patch") && verbs.contains(&"watch"),
            "{resource}: {verbs:?}"
        );
    }
    let binding = object(&docs, "ClusterRoleBinding", "ebs-csi-volume-modifier");
    assert_eq!(
        s(list(binding, "subjects")[0], "name"),
        s(dep, "spec.template.spec.serviceAccountName")
    );
    for plain in ["aws", "local"] {
        let docs = render(plain);
        let dep = object(&docs, "Deployment", "ebs-csi-controller");
        assert!(
            list(dep, "spec.template.spec.containers")
                .iter()
                .all(|c| s(c, "name") != Some("volumemodifier")),
            "{plain} has the sidecar without the component"
        );
    }
}

/// kubernetes-validate from scripts/test.sh's venv, or on PATH; None when it is not installed.
fn kubernetes_validate() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KUBERNETES_VALIDATE") {
        return Some(p.into());
    }
    let venv = repo().join(".venv-test/bin/kubernetes-validate");
    if venv.is_file() {
        return Some(venv);
    }
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("kubernetes-validate"))
            .find(|f| f.is_file())
    })
}

fn validate(tool: &Path, version: &str, files: &[PathBuf]) -> (bool, String) {
    let out = Command::new(tool)
        .args(["--strict", "--quiet", "-k", version])
        .args(files)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn overlays_and_examples_validate_against_the_kubernetes_schemas_eks_supports() {
    let Some(tool) = kubernetes_validate() else {
        println!("SKIPPED: kubernetes-validate is not installed (scripts/test.sh installs it into .venv-test)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for overlay in OVERLAYS {
        let f = dir.path().join(format!("{overlay}.yaml"));
        std::fs::write(&f, render_text(overlay)).unwrap();
        files.push(f);
    }
    // The examples' built-in kinds are checked too (VolumeSnapshot* are CRDs it has no schema
    // for: those only warn).
    let mut examples: Vec<PathBuf> = walk(&repo().join("examples"));
    examples.sort();
    assert!(examples.len() > 20, "{examples:?}");
    for version in K8S_VERSIONS {
        let (ok, out) = validate(&tool, version, &files);
        assert!(ok, "the overlays do not validate against Kubernetes {version}:\n{out}");
        let (ok, out) = validate(&tool, version, &examples);
        assert!(ok, "the examples do not validate against Kubernetes {version}:\n{out}");
    }
    // And the check has teeth: a broken manifest fails.
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, render_text("aws").replace("replicas: 2", "replicas: two")).unwrap();
    let (ok, out) = validate(&tool, K8S_VERSIONS[0], &[broken]);
    assert!(!ok && out.contains("replicas"), "{out}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "yaml") {
            out.push(p);
        }
    }
    out
}
