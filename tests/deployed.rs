//! ebs-csi as deployed. The image `scripts/image.sh` builds (around this build's binary), and the
//! local overlay's node and controller pods — read from `kubectl kustomize
//! deploy/kubernetes/overlays/local`, never copied by hand — run under runc, with the real
//! node-driver-registrar and livenessprobe. The test is kubelet (plugin registration, the exec and
//! HTTP liveness probes, the seed's node calls at kubelet's paths) and the controller sidecars that
//! need an API server (CreateVolume, ControllerPublishVolume, ControllerExpandVolume through the
//! controller pod's socket). It proves mount propagation from the driver's container to the host
//! and into a second container (the nginx pod), and that teardown leaves no container, mount or
//! loop device.
//!
//! hostPath volumes live under a temporary "host root" (a shared mount, so propagation can be
//! seen), except /dev, which is the real one: loop devices must be real. Skips, saying why, when
//! not root, or when runc, mmdebstrap, kubectl, loop devices or the sidecar binaries are missing.

mod support;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ebs_csi::csi::controller_client::ControllerClient;
use ebs_csi::csi::identity_client::IdentityClient;
use ebs_csi::csi::node_client::NodeClient;
use ebs_csi::csi::volume_capability::{AccessMode, AccessType, MountVolume, access_mode::Mode};
use ebs_csi::csi::*;
use serde_json::json;
use serde_yaml_ng::Value;
use support::{GIB, mounts_under};
use tonic::transport::Channel;

const DRIVER: &str = "ebs.csi.aws.com";
/// The Kubernetes node the pods run on (`spec.nodeName`).
const NODE_NAME: &str = "deployed-node";
const NAMESPACE: &str = "kube-system";
/// The seed's claim becomes this PV.
const PV: &str = "pvc-5d0f2c1a-3b7e-4f4e-9a51-1c2d3e4f5a6b";

// ---- what the machine has ----

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A sidecar binary from `var`, then PATH, then ../shared/tools (as tests/sanity.rs finds csi-sanity).
fn sidecar_binary(var: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        return Some(PathBuf::from(p));
    }
    on_path(name).or_else(|| {
        let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools").join(name);
        shared.is_file().then_some(shared)
    })
}

fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root (runc, mounts, loop devices)".into());
    }
    for tool in ["runc", "mmdebstrap", "kubectl"] {
        if on_path(tool).is_none() {
            return Some(format!(
                "{tool} not found (scripts/test.sh installs runc and mmdebstrap)"
            ));
        }
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("no /dev/loop-control (modprobe loop)".into());
    }
    for (var, name) in [
        ("CSI_NODE_DRIVER_REGISTRAR", "csi-node-driver-registrar"),
        ("LIVENESSPROBE", "livenessprobe"),
    ] {
        if sidecar_binary(var, name).is_none() {
            return Some(format!(
                "{name} not found (set {var}, put it on PATH, or see ../shared/tools)"
            ));
        }
    }
    None
}

// ---- the rendered manifests ----

fn render(overlay: &str) -> Vec<Value> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("deploy/kubernetes/overlays")
                .join(overlay),
        )
        .output()
        .expect("run kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize overlays/{overlay}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("kustomize prints UTF-8");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("kustomize prints YAML"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, key| v.get(key))
}

fn s<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

fn flag_on(v: &Value, path: &str) -> Option<bool> {
    at(v, path).and_then(Value::as_bool)
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
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendered overlay"))
}

fn container<'a>(pod_spec: &'a Value, name: &str) -> &'a Value {
    list(pod_spec, "containers")
        .into_iter()
        .find(|c| s(c, "name") == Some(name))
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// A container's environment as kubelet gives it: values, and the downward API fields used here.
fn container_env(c: &Value, pod_name: &str) -> Vec<(String, String)> {
    list(c, "env")
        .into_iter()
        .map(|e| {
            let name = s(e, "name").expect("env name").to_owned();
            let value = match (s(e, "value"), s(e, "valueFrom.fieldRef.fieldPath")) {
                (Some(v), _) => v.to_owned(),
                (None, Some("spec.nodeName")) => NODE_NAME.to_owned(),
                (None, Some("metadata.name")) => pod_name.to_owned(),
                (None, Some("metadata.namespace")) => NAMESPACE.to_owned(),
                (None, other) => panic!("env {name}: the test does not provide {other:?}"),
            };
            (name, value)
        })
        .collect()
}

/// `$(VAR)` expanded from the container's environment, as kubelet does for args and probes.
fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = text.to_owned();
    for (k, v) in env {
        out = out.replace(&format!("$({k})"), v);
    }
    assert!(!out.contains("$("), "{text}: a variable the container does not define");
    out
}

fn strings(v: Vec<&Value>) -> Vec<String> {
    v.into_iter()
        .map(|a| a.as_str().expect("a string").to_owned())
        .collect()
}

/// The value of `--name=value` in a container's expanded args.
fn arg_value(args: &[String], name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    args.iter().find_map(|a| a.strip_prefix(&prefix).map(str::to_owned))
}

/// "256Mi" and the like, in bytes.
fn quantity(q: &str) -> u64 {
    let (digits, unit) = q.split_at(q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len()));
    let n: u64 = digits.parse().unwrap_or_else(|_| panic!("quantity {q}"));
    n * match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        other => panic!("quantity unit {other} is not handled"),
    }
}

// ---- the image ----

struct Image {
    rootfs: PathBuf,
    entrypoint: Vec<String>,
    env: Vec<String>,
    version: String,
}

fn build_image(out: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/image.sh");
    let started = Instant::now();
    // Bounded: mmdebstrap fetches from deb.debian.org on the first run. timeout(1) signals the
    // script's whole process group.
    let run = Command::new("timeout")
        .args(["--kill-after=10", "900"])
        .arg(&script)
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_ebs-csi"))
        .arg("--out")
        .arg(out)
        .output()
        .expect("run scripts/image.sh");
    assert!(
        run.status.success(),
        "scripts/image.sh failed:\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    println!(
        "image built in {:.1}s: {}",
        started.elapsed().as_secs_f64(),
        out.display()
    );
}

fn json_file(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Reads the OCI layout tarball as a runtime would: index → manifest → config and layers.
fn unpack(tar: &Path, dir: &Path) -> Image {
    let layout = dir.join("layout");
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&layout).expect("layout dir");
    std::fs::create_dir_all(&rootfs).expect("rootfs dir");
    run_ok(Command::new("tar").arg("-C").arg(&layout).arg("-xf").arg(tar));
    let blob = |digest: &str| {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        layout.join("blobs/sha256").join(hex)
    };
    let index = json_file(&layout.join("index.json"));
    let manifest = json_file(&blob(
        index["manifests"][0]["digest"].as_str().expect("manifest digest"),
    ));
    let config = json_file(&blob(manifest["config"]["digest"].as_str().expect("config digest")));
    for layer in manifest["layers"].as_array().expect("layers") {
        // GNU tar finds the compression itself.
        run_ok(
            Command::new("tar")
                .arg("-C")
                .arg(&rootfs)
                .arg("-xf")
                .arg(blob(layer["digest"].as_str().expect("layer digest"))),
        );
    }
    let list = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    Image {
        rootfs,
        entrypoint: list(&config["config"]["Entrypoint"]),
        env: list(&config["config"]["Env"]),
        version: config["config"]["Labels"]["org.opencontainers.image.version"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    }
}

/// A root filesystem holding one static binary, as the sidecars' images do.
fn static_rootfs(dir: &Path, binary: &Path, entry: &str) -> PathBuf {
    let rootfs = dir.join(entry.trim_start_matches('/'));
    std::fs::create_dir_all(&rootfs).expect("sidecar rootfs");
    std::fs::copy(binary, rootfs.join(entry.trim_start_matches('/')))
        .unwrap_or_else(|e| panic!("copy {}: {e}", binary.display()));
    rootfs
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

// ---- the runtime: containers under runc, hostPaths under a temporary host root ----

/// Where a container's image comes from: ours, or a sidecar's static binary.
struct Images {
    ebs_csi: Image,
    /// (image name without registry and tag, rootfs, entrypoint)
    sidecars: Vec<(&'static str, PathBuf, String)>,
}

impl Images {
    /// The rootfs and entrypoint of a container's `image:`; None for images not run here.
    fn resolve(&self, image: &str) -> Option<(PathBuf, Vec<String>, Vec<String>)> {
        let (name, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
        if name == "ebs-csi" {
            assert_eq!(
                tag, self.ebs_csi.version,
                "the manifests run ebs-csi:{tag}, the image is {}",
                self.ebs_csi.version
            );
            return Some((
                self.ebs_csi.rootfs.clone(),
                self.ebs_csi.entrypoint.clone(),
                self.ebs_csi.env.clone(),
            ));
        }
        let short = name.rsplit('/').next().unwrap_or(name);
        self.sidecars
            .iter()
            .find(|(n, _, _)| *n == short)
            .map(|(_, rootfs, entry)| (rootfs.clone(), vec![entry.clone()], vec![]))
    }
}

struct Pod {
    name: String,
    sandbox_pid: u32,
    /// container name → runc id
    containers: BTreeMap<String, String>,
}

impl Pod {
    fn netns(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.sandbox_pid))
    }

    fn id(&self, container: &str) -> &str {
        self.containers
            .get(container)
            .unwrap_or_else(|| panic!("pod {} runs no {container}", self.name))
    }
}

struct World {
    dir: Option<tempfile::TempDir>,
    /// The temporary host root: hostPath `/x` is `<host>/x` (but /dev is the real one).
    host: PathBuf,
    prefix: String,
    /// runc ids, in start order.
    containers: Vec<String>,
    /// (device, inode) of the volume images seen.
    images: Vec<(u64, u64)>,
    torn_down: bool,
}

/// Real host paths, not mapped under the temporary root.
const REAL_HOST_PATHS: [&str; 1] = ["/dev"];

impl World {
    fn new() -> World {
        let dir = tempfile::Builder::new()
            .prefix("ebs-csi-deployed")
            .tempdir()
            .expect("temp dir");
        let host = dir.path().join("host");
        std::fs::create_dir_all(&host).expect("host root");
        let mut world = World {
            host: host.clone(),
            dir: Some(dir),
            prefix: format!("ebs-csi-deployed-{}", std::process::id()),
            containers: Vec::new(),
            images: Vec::new(),
            torn_down: false,
        };
        // A mount of its own, shared, as / is on a systemd host: mounts the driver makes under a
        // Bidirectional volume come back here, and reach HostToContainer volumes.
        use nix::mount::{MsFlags, mount};
        mount(
            Some(&host),
            &host,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .expect("bind the host root onto itself");
        mount(
            None::<&str>,
            &host,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
        .expect("make the host root rshared");
        world.mkdir("/var/lib/kubelet/plugins_registry");
        world.mkdir("/var/lib/kubelet/plugins");
        world.mkdir("/var/lib/kubelet/pods");
        world
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("world dir").path()
    }

    /// A host path as this test's host has it.
    fn host_path(&self, p: &str) -> PathBuf {
        let p = p.trim_end_matches('/');
        if REAL_HOST_PATHS
            .iter()
            .any(|r| p == *r || p.starts_with(&format!("{r}/")))
        {
            return PathBuf::from(p);
        }
        assert!(p.starts_with('/'), "{p} is not an absolute host path");
        self.host.join(p.trim_start_matches('/'))
    }

    fn mkdir(&mut self, p: &str) {
        std::fs::create_dir_all(self.host_path(p)).expect("host dir");
    }

    fn log_path(&self, id: &str) -> PathBuf {
        self.dir().join("logs").join(format!("{id}.log"))
    }

    fn log(&self, id: &str) -> String {
        std::fs::read_to_string(self.log_path(id)).unwrap_or_default()
    }

    fn bundle(&self, id: &str, config: &serde_json::Value) -> PathBuf {
        let bundle = self.dir().join("bundles").join(id);
        std::fs::create_dir_all(&bundle).expect("bundle dir");
        std::fs::write(
            bundle.join("config.json"),
            serde_json::to_vec_pretty(config).expect("config.json"),
        )
        .expect("write config.json");
        bundle
    }

    /// `runc run -d`: the container runs on with its output in its log file.
    fn run_detached(&mut self, name: &str, config: serde_json::Value) -> String {
        let id = format!("{}-{name}", self.prefix);
        let bundle = self.bundle(&id, &config);
        self.start_bundle(&id, &bundle);
        id
    }

    /// kubelet's restart of a container that exited: stopped, removed, run again from its spec
    /// in the same pod (the sandbox keeps the namespaces). The new container's id.
    fn restart(&mut self, id: &str) -> String {
        self.stop(id);
        let _ = Command::new("runc").args(["delete", "--force", id]).status();
        let bundle = self.dir().join("bundles").join(id);
        let new = format!("{id}-r");
        self.start_bundle(&new, &bundle);
        new
    }

    fn start_bundle(&mut self, id: &str, bundle: &Path) {
        let id = id.to_owned();
        std::fs::create_dir_all(self.dir().join("logs")).expect("logs dir");
        let log = File::create(self.log_path(&id)).expect("log file");
        self.containers.push(id.clone());
        let status = Command::new("runc")
            .args(["run", "-d", "--bundle"])
            .arg(bundle)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .status()
            .expect("run runc");
        assert!(status.success(), "runc run {id}: {status}\n{}", self.log(&id));
    }

    /// `runc run` in the foreground: the container's exit status and output.
    fn run_to_end(&mut self, name: &str, config: serde_json::Value) -> Output {
        let id = format!("{}-{name}", self.prefix);
        let bundle = self.bundle(&id, &config);
        self.containers.push(id.clone());
        Command::new("runc")
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg(&id)
            .stdin(Stdio::null())
            .output()
            .expect("run runc")
    }

    /// (status, pid) from `runc state`; None once the container is gone.
    fn state(&self, id: &str) -> Option<(String, u32)> {
        let out = Command::new("runc").args(["state", id]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        Some((v["status"].as_str()?.to_owned(), v["pid"].as_u64()? as u32))
    }

    fn exec(&self, id: &str, args: &[String]) -> Output {
        Command::new("runc")
            .arg("exec")
            .arg(id)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run runc exec")
    }

    /// SIGTERM, as kubelet stops a container, and waits until it has exited.
    fn stop(&self, id: &str) {
        let _ = Command::new("runc").args(["kill", id, "TERM"]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            match self.state(id) {
                Some((status, _)) if status != "stopped" => std::thread::sleep(Duration::from_millis(50)),
                _ => return,
            }
        }
        panic!("{id} did not stop within 15 s of SIGTERM:\n{}", self.log(id));
    }

    /// Our containers still known to runc.
    fn leftover_containers(&self) -> Vec<String> {
        let out = Command::new("runc").args(["list", "--format", "json"]).output();
        let Ok(out) = out else { return Vec::new() };
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c["id"].as_str())
                    .filter(|id| id.starts_with(&self.prefix))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Loop devices backed by the volume images under the host's /var/lib/ebs-csi, matched by
    /// inode: their backing-file name is the path in the container that attached them.
    fn our_loop_devices(&mut self) -> Vec<String> {
        // Every image ever seen, so that a device whose image was deleted is still found.
        let volumes = self.host_path("/var/lib/ebs-csi/volumes");
        for e in std::fs::read_dir(&volumes).into_iter().flatten().flatten() {
            if let Ok(m) = e.metadata()
                && !self.images.contains(&(m.dev(), m.ino()))
            {
                self.images.push((m.dev(), m.ino()));
            }
        }
        let images = &self.images;
        let out = Command::new("losetup")
            .args(["--list", "--json", "--output", "NAME,BACK-INO,BACK-MAJ:MIN"])
            .output();
        let Ok(out) = out else { return Vec::new() };
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.trim().to_owned(),
            other => other.to_string(),
        };
        v["loopdevices"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| {
                        let ino: u64 = text(&l["back-ino"]).parse().ok()?;
                        let majmin = text(&l["back-maj:min"]);
                        let (maj, min) = majmin.split_once(':')?;
                        let dev = libc::makedev(maj.parse().ok()?, min.parse().ok()?);
                        images.contains(&(dev, ino)).then(|| text(&l["name"]))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Removes every container, mount and loop device this test made; what is still there after
    /// that, as a list of problems.
    fn teardown(&mut self) -> Vec<String> {
        self.torn_down = true;
        for id in self.containers.iter().rev() {
            let _ = Command::new("runc")
                .args(["delete", "--force", id])
                .stderr(Stdio::null())
                .status();
        }
        let dir = self.dir().to_owned();
        for target in mounts_under(&dir) {
            let _ = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH);
        }
        for dev in self.our_loop_devices() {
            let _ = Command::new("losetup").arg("--detach").arg(&dev).status();
        }
        let mut problems = Vec::new();
        let containers = self.leftover_containers();
        if !containers.is_empty() {
            problems.push(format!("containers left: {containers:?}"));
        }
        let mounts = mounts_under(&dir);
        if !mounts.is_empty() {
            problems.push(format!("mounts left: {mounts:?}"));
        }
        let loops = self.our_loop_devices();
        if !loops.is_empty() {
            problems.push(format!("loop devices left: {loops:?}"));
        }
        if let Some(d) = self.dir.take() {
            if mounts.is_empty() {
                let _ = d.close();
            } else {
                // Never delete through a mount.
                let kept = d.keep();
                problems.push(format!("kept {} (mounts left in it)", kept.display()));
            }
        }
        problems
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if self.torn_down {
            return;
        }
        if std::thread::panicking() {
            for id in &self.containers {
                let log = self.log(id);
                if !log.is_empty() {
                    eprintln!("--- {id} ---\n{log}");
                }
            }
        }
        for p in self.teardown() {
            eprintln!("teardown: {p}");
        }
    }
}

// ---- OCI runtime specs from pod specs ----

const ALL_CAPS: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// containerd's default capabilities for a container that is not privileged.
const DEFAULT_CAPS: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// The pod's or the container's securityContext field, the container's winning.
fn security<'a>(pod_spec: &'a Value, c: &'a Value, field: &str) -> Option<&'a Value> {
    at(c, &format!("securityContext.{field}")).or_else(|| at(pod_spec, &format!("securityContext.{field}")))
}

/// The capabilities this process may hand on (its bounding set), by number. A host (or a VM's
/// init) may lack some, CAP_SYS_RESOURCE say; containerd gives a privileged container what it has.
fn host_caps() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0)
}

fn host_has(cap: &str) -> bool {
    ALL_CAPS
        .iter()
        .position(|c| *c == cap)
        .is_some_and(|bit| host_caps() & (1 << bit) != 0)
}

fn capabilities(c: &Value, privileged: bool) -> Vec<String> {
    let caps: Vec<&str> = if privileged {
        ALL_CAPS.iter().copied().filter(|c| host_has(c)).collect()
    } else {
        let drop = strings(list(c, "securityContext.capabilities.drop"));
        let add = strings(list(c, "securityContext.capabilities.add"));
        let mut caps: Vec<&str> = if drop.iter().any(|d| d == "ALL") {
            Vec::new()
        } else {
            DEFAULT_CAPS
                .iter()
                .copied()
                .filter(|c| !drop.iter().any(|d| d == c))
                .collect()
        };
        for a in &add {
            let known = ALL_CAPS
                .iter()
                .find(|c| **c == a.as_str())
                .unwrap_or_else(|| panic!("capability {a}"));
            caps.push(known);
        }
        caps
    };
    caps.into_iter().map(|c| format!("CAP_{c}")).collect()
}

/// The mounts every container gets (containerd's defaults), but those a volume covers.
fn default_mounts(privileged: bool, covered: &[String]) -> Vec<serde_json::Value> {
    let sys = if privileged {
        vec!["nosuid", "noexec", "nodev"]
    } else {
        vec!["nosuid", "noexec", "nodev", "ro"]
    };
    let defaults = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    ];
    defaults
        .into_iter()
        .filter(|m| {
            let d = m["destination"].as_str().unwrap_or_default();
            !covered.iter().any(|c| d == c || d.starts_with(&format!("{c}/")))
        })
        .collect()
}

/// What a pod's containers need from the test besides their own spec.
struct PodCtx<'a> {
    name: &'a str,
    uid: String,
    spec: &'a Value,
    /// The sandbox's process, whose namespaces the containers join; None for the sandbox.
    sandbox_pid: Option<u32>,
}

impl PodCtx<'_> {
    fn host_network(&self) -> bool {
        flag_on(self.spec, "hostNetwork") == Some(true)
    }

    /// The host directory behind a pod volume, made as kubelet makes it.
    fn volume_source(&self, world: &mut World, name: &str) -> PathBuf {
        let volume = list(self.spec, "volumes")
            .into_iter()
            .find(|v| s(v, "name") == Some(name))
            .unwrap_or_else(|| panic!("pod {}: no volume {name}", self.name));
        if let Some(path) = s(volume, "hostPath.path") {
            let on_host = world.host_path(path);
            match s(volume, "hostPath.type").unwrap_or("") {
                "Directory" => assert!(
                    on_host.is_dir(),
                    "hostPath {path} (type Directory) does not exist on the host; kubelet would not start the pod"
                ),
                "DirectoryOrCreate" => std::fs::create_dir_all(&on_host).expect("hostPath dir"),
                "" => {}
                other => panic!("hostPath type {other} is not handled here"),
            }
            return on_host;
        }
        if at(volume, "emptyDir").is_some() {
            let dir = world.host_path(&format!(
                "/var/lib/kubelet/pods/{}/volumes/kubernetes.io~empty-dir/{name}",
                self.uid
            ));
            std::fs::create_dir_all(&dir).expect("emptyDir");
            return dir;
        }
        panic!("pod {}: volume {name} is neither hostPath nor emptyDir", self.name)
    }
}

/// The OCI runtime spec kubelet and containerd would give container `c` of a pod.
fn runtime_spec(
    world: &mut World,
    pod: &PodCtx,
    c: &Value,
    rootfs: &Path,
    args: Vec<String>,
    env: Vec<String>,
) -> serde_json::Value {
    let name = s(c, "name").unwrap_or("sandbox");
    let privileged = flag_on(c, "securityContext.privileged") == Some(true);
    let uid = security(pod.spec, c, "runAsUser").and_then(Value::as_u64).unwrap_or(0);
    let gid = security(pod.spec, c, "runAsGroup").and_then(Value::as_u64).unwrap_or(0);
    if security(pod.spec, c, "runAsNonRoot").and_then(Value::as_bool) == Some(true) {
        assert_ne!(
            uid, 0,
            "{name}: runAsNonRoot with uid 0; kubelet would refuse to start it"
        );
    }
    let read_only = flag_on(c, "securityContext.readOnlyRootFilesystem") == Some(true);
    // Containers share the image's rootfs directory here, so none may write to it.
    assert!(
        read_only || pod.sandbox_pid.is_none(),
        "{name}: the test shares root filesystems; give it readOnlyRootFilesystem: true"
    );
    let no_new_privs = flag_on(c, "securityContext.allowPrivilegeEscalation") == Some(false);
    let caps = capabilities(c, privileged);

    // Volumes, shallowest first (as containerd orders them), with their propagation.
    let mut mounts: Vec<(String, PathBuf, Vec<String>)> = Vec::new();
    let mut rootfs_propagation = None;
    for m in list(c, "volumeMounts") {
        let dest = s(m, "mountPath").expect("mountPath").trim_end_matches('/').to_owned();
        assert!(at(m, "subPath").is_none(), "{name}: subPath is not handled here");
        let source = pod.volume_source(world, s(m, "name").expect("volume name"));
        let propagation = match s(m, "mountPropagation").unwrap_or("None") {
            "Bidirectional" => {
                assert!(
                    privileged,
                    "{name}: Bidirectional propagation needs a privileged container"
                );
                rootfs_propagation = Some("rshared");
                "rshared"
            }
            "HostToContainer" => {
                rootfs_propagation.get_or_insert("rslave");
                "rslave"
            }
            "None" => "rprivate",
            other => panic!("mountPropagation {other}"),
        };
        let mut options = vec!["rbind".to_owned(), propagation.to_owned()];
        if flag_on(m, "readOnly") == Some(true) {
            options.push("ro".into());
        }
        mounts.push((dest, source, options));
    }
    mounts.sort_by_key(|(dest, _, _)| dest.matches('/').count());
    let covered: Vec<String> = mounts.iter().map(|(d, _, _)| d.clone()).collect();
    let mut all = default_mounts(privileged, &covered);
    all.extend(mounts.into_iter().map(
        |(dest, source, options)| json!({"destination": dest, "type": "bind", "source": source, "options": options}),
    ));

    let mut namespaces = vec![json!({"type": "pid"}), json!({"type": "mount"})];
    for (kind, file) in [("ipc", "ipc"), ("uts", "uts"), ("network", "net")] {
        if kind == "network" && pod.host_network() {
            continue;
        }
        match pod.sandbox_pid {
            Some(pid) => namespaces.push(json!({"type": kind, "path": format!("/proc/{pid}/ns/{file}")})),
            None => namespaces.push(json!({"type": kind})),
        }
    }
    let devices = if privileged {
        json!([{"allow": true, "access": "rwm"}])
    } else {
        json!([{"allow": false, "access": "rwm"}])
    };
    let mut resources = json!({"devices": devices});
    if let Some(limit) = s(c, "resources.limits.memory") {
        resources["memory"] = json!({"limit": quantity(limit)});
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "resources": resources,
    });
    if let Some(p) = rootfs_propagation {
        linux["rootfsPropagation"] = json!(p);
    }
    if !privileged {
        linux["maskedPaths"] = json!([
            "/proc/acpi",
            "/proc/asound",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/proc/scsi",
            "/sys/firmware"
        ]);
        linux["readonlyPaths"] = json!(["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]);
    }
    let fs_group = at(pod.spec, "securityContext.fsGroup").and_then(Value::as_u64);
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": uid, "gid": gid, "additionalGids": fs_group.into_iter().collect::<Vec<_>>()},
            "args": args,
            "env": env,
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": no_new_privs,
        },
        "root": {"path": rootfs, "readonly": read_only},
        "hostname": pod.name,
        "mounts": all,
        "linux": linux,
    })
}

/// Starts a pod of a workload: its sandbox (the pause container, holding the namespaces), then
/// the named containers in the order the pod lists them.
fn start_pod(world: &mut World, images: &Images, workload: &Value, pod_name: &str, run: &[&str]) -> Pod {
    let spec = at(workload, "spec.template.spec").expect("pod template");
    let mut ctx = PodCtx {
        name: pod_name,
        uid: pod_uid(pod_name),
        spec,
        sandbox_pid: None,
    };
    // The pause container: `sleep` from our image stands in for registry.k8s.io/pause.
    let sandbox_spec = runtime_spec(
        world,
        &ctx,
        &serde_yaml_ng::from_str("securityContext: {readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}")
            .expect("sandbox yaml"),
        &images.ebs_csi.rootfs,
        vec!["sleep".into(), "infinity".into()],
        images.ebs_csi.env.clone(),
    );
    let sandbox = world.run_detached(&format!("{pod_name}-sandbox"), sandbox_spec);
    let (_, sandbox_pid) = world.state(&sandbox).expect("sandbox state");
    ctx.sandbox_pid = Some(sandbox_pid);

    let mut containers = BTreeMap::new();
    for c in list(spec, "containers") {
        let name = s(c, "name").expect("container name");
        if !run.contains(&name) {
            continue;
        }
        let image = s(c, "image").expect("image");
        let (rootfs, entrypoint, image_env) = images
            .resolve(image)
            .unwrap_or_else(|| panic!("{name}: no image {image} here"));
        let env = container_env(c, pod_name);
        let command = match at(c, "command") {
            Some(_) => strings(list(c, "command")),
            None => entrypoint,
        };
        let args: Vec<String> = command
            .into_iter()
            .chain(strings(list(c, "args")))
            .map(|a| expand(&a, &env))
            .collect();
        let mut env_list = image_env;
        env_list.push(format!("HOSTNAME={pod_name}"));
        env_list.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
        let spec = runtime_spec(world, &ctx, c, &rootfs, args, env_list);
        let id = world.run_detached(&format!("{pod_name}-{name}"), spec);
        containers.insert(name.to_owned(), id);
    }
    for want in run {
        assert!(containers.contains_key(*want), "pod {pod_name} has no container {want}");
    }
    Pod {
        name: pod_name.to_owned(),

        sandbox_pid,
        containers,
    }
}

/// A container path → the host path behind it, through the container's volume mounts.
fn host_path_of(world: &mut World, pod: &PodCtx, c: &Value, path: &str) -> PathBuf {
    let (mount, rest) = list(c, "volumeMounts")
        .into_iter()
        .filter_map(|m| {
            let dest = s(m, "mountPath")?.trim_end_matches('/');
            let rest = path.strip_prefix(dest)?;
            (rest.is_empty() || rest.starts_with('/')).then_some((m, rest.trim_start_matches('/')))
        })
        .max_by_key(|(m, _)| s(m, "mountPath").map(str::len))
        .unwrap_or_else(|| panic!("{path} is on no volume of {:?}", s(c, "name")));
    pod.volume_source(world, s(mount, "name").expect("volume name"))
        .join(rest)
}

// ---- kubelet ----

/// k8s.io/kubelet/pkg/apis/pluginregistration/v1: the messages kubelet exchanges with a plugin's
/// registration socket (package `pluginregistration`, service `Registration`).
mod registration {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InfoRequest {}

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PluginInfo {
        #[prost(string, tag = "1")]
        pub r#type: String,
        #[prost(string, tag = "2")]
        pub name: String,
        #[prost(string, tag = "3")]
        pub endpoint: String,
        #[prost(string, repeated, tag = "4")]
        pub supported_versions: Vec<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RegistrationStatus {
        #[prost(bool, tag = "1")]
        pub plugin_registered: bool,
        #[prost(string, tag = "2")]
        pub error: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RegistrationStatusResponse {}
}

async fn unary<Req, Resp>(channel: Channel, method: &'static str, req: Req) -> Result<Resp, tonic::Status>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(method);
    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
    grpc.unary(tonic::Request::new(req), path, codec)
        .await
        .map(tonic::Response::into_inner)
}

/// A channel to a unix socket. Paths past the kernel's 108 bytes (a pod's emptyDir under the
/// temporary host root) are dialled through a short symlink to their directory.
async fn connect(socket: &Path, links: &Path) -> Channel {
    let socket = if socket.as_os_str().len() > 100 {
        let dir = socket.parent().expect("socket dir");
        use sha2::Digest;
        let hash = format!("{:x}", sha2::Sha256::digest(dir.as_os_str().as_encoded_bytes()));
        let link = links.join(&hash[..8]);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(dir, &link).expect("symlink to the socket's directory");
        }
        link.join(socket.file_name().expect("socket name"))
    } else {
        socket.to_owned()
    };
    let socket = socket.as_path();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if socket.exists()
            && let Ok(ch) = ebs_csi::client::connect(&format!("unix://{}", socket.display())).await
        {
            return ch;
        }
        assert!(
            Instant::now() < deadline,
            "nothing answers on {} after 30 s",
            socket.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sockets in kubelet's plugin registration directory, waiting for the first.
async fn registration_sockets(dir: &Path) -> Vec<PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_socket()))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        if !found.is_empty() {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no registration socket in {} after 30 s",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An HTTP GET from inside a network namespace (a pod's, as kubelet probes the pod's IP): the
/// status code, or None when nothing answers.
fn http_status(netns: Option<PathBuf>, port: u16, path: &str) -> Option<u16> {
    let path = path.to_owned();
    std::thread::spawn(move || {
        if let Some(ns) = netns {
            let f = File::open(&ns).ok()?;
            // This thread only: setns moves the calling thread.
            if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return None;
            }
        }
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer.split_whitespace().nth(1)?.parse().ok()
    })
    .join()
    .ok()
    .flatten()
}

/// The port and path of a container's httpGet liveness probe, its named port resolved.
fn http_probe(c: &Value) -> (u16, String) {
    let port = at(c, "livenessProbe.httpGet.port").expect("an httpGet liveness probe");
    let port = match port.as_u64() {
        Some(n) => n,
        None => {
            let name = port.as_str().expect("port name or number");
            list(c, "ports")
                .into_iter()
                .find(|p| s(p, "name") == Some(name))
                .and_then(|p| at(p, "containerPort").and_then(Value::as_u64))
                .unwrap_or_else(|| panic!("probe port {name} is not among the container's ports"))
        }
    };
    let path = s(c, "livenessProbe.httpGet.path").unwrap_or("/").to_owned();
    (port as u16, path)
}

/// Runs the liveness probe of each running container of a pod as kubelet does (exec in the
/// container, or HTTP GET on the pod's address) until it passes; what passed.
async fn liveness_probes(world: &World, pod: &Pod, spec: &Value) -> Vec<String> {
    let mut passed = Vec::new();
    for c in list(spec, "containers") {
        let name = s(c, "name").expect("container name");
        let (Some(id), Some(probe)) = (pod.containers.get(name), at(c, "livenessProbe")) else {
            continue;
        };
        if at(probe, "exec").is_some() {
            let env = container_env(c, &pod.name);
            let cmd: Vec<String> = strings(list(probe, "exec.command"))
                .iter()
                .map(|a| expand(a, &env))
                .collect();
            let out = world.exec(id, &cmd);
            assert!(
                out.status.success(),
                "{name}: liveness probe {cmd:?} fails ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            passed.push(format!("{name}'s exec liveness probe passes"));
        } else {
            let (port, path) = http_probe(c);
            wait_status(&pod.netns(), port, &path, |s| s == Some(200), name).await;
            passed.push(format!("{name}'s liveness probe GET :{port}{path} → 200"));
        }
    }
    passed
}

async fn wait_status(netns: &Path, port: u16, path: &str, want: impl Fn(Option<u16>) -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = None;
    while Instant::now() < deadline {
        last = http_status(Some(netns.to_owned()), port, path);
        if want(last) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what}: GET :{port}{path} still answers {last:?} after 20 s");
}

fn mounted(path: &Path) -> bool {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|t| support::unescape_mount_path(t) == path)
}

fn capability(fs_type: &str) -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: fs_type.into(),
            ..Default::default()
        })),
    }
}

fn bytes_total(stats: &NodeGetVolumeStatsResponse) -> i64 {
    stats
        .usage
        .iter()
        .find(|u| u.unit == volume_usage::Unit::Bytes as i32)
        .map(|u| u.total)
        .expect("bytes usage")
}

fn step(started: Instant, what: &str) {
    println!("{:7.2}s  {what}", started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_overlay_pods_run_under_runc_with_kubelet_paths_and_sidecars() {
    if let Some(why) = skip_reason() {
        println!("SKIPPED deployed: {why}");
        return;
    }
    let t0 = Instant::now();
    let mut world = World::new();

    // The image, read back from its OCI tarball; the sidecars' single-binary images.
    let tar = world.dir().join("ebs-csi-oci.tar");
    build_image(&tar);
    let ebs_csi = unpack(&tar, &world.dir().join("image"));
    assert_eq!(ebs_csi.entrypoint, ["/usr/bin/ebs-csi"], "the image's entrypoint");
    let sidecar_dir = world.dir().join("sidecars");
    let registrar = sidecar_binary("CSI_NODE_DRIVER_REGISTRAR", "csi-node-driver-registrar").expect("registrar");
    let probe = sidecar_binary("LIVENESSPROBE", "livenessprobe").expect("livenessprobe");
    let images = Images {
        sidecars: vec![
            (
                "csi-node-driver-registrar",
                static_rootfs(&sidecar_dir, &registrar, "/csi-node-driver-registrar"),
                "/csi-node-driver-registrar".into(),
            ),
            (
                "livenessprobe",
                static_rootfs(&sidecar_dir, &probe, "/livenessprobe"),
                "/livenessprobe".into(),
            ),
        ],
        ebs_csi,
    };
    step(t0, "image unpacked");

    let docs = render("local");
    let node_ds = object(&docs, "DaemonSet", "ebs-csi-node");
    let controller = object(&docs, "Deployment", "ebs-csi-controller");
    let node_spec = at(node_ds, "spec.template.spec").expect("node pod spec");
    let controller_spec = at(controller, "spec.template.spec").expect("controller pod spec");

    // ---- the node pod ----
    let node_pod = start_pod(
        &mut world,
        &images,
        node_ds,
        "ebs-csi-node-x7k2p",
        &["ebs-plugin", "node-driver-registrar", "liveness-probe"],
    );
    step(
        t0,
        "node pod started: ebs-plugin, node-driver-registrar, liveness-probe",
    );

    // kubelet's plugin watcher: the registration socket, GetInfo, then the endpoint it names.
    let registry = world.host_path("/var/lib/kubelet/plugins_registry");
    let sockets = registration_sockets(&registry).await;
    assert_eq!(
        sockets,
        [registry.join(format!("{DRIVER}-reg.sock"))],
        "the registration sockets"
    );
    let reg = connect(&sockets[0], world.dir()).await;
    let info: registration::PluginInfo = unary(
        reg.clone(),
        "/pluginregistration.Registration/GetInfo",
        registration::InfoRequest {},
    )
    .await
    .expect("GetInfo");
    assert_eq!(info.r#type, "CSIPlugin");
    assert_eq!(info.name, DRIVER);
    assert!(info.supported_versions.iter().any(|v| v.starts_with("1.")), "{info:?}");
    assert!(
        info.endpoint.starts_with('/'),
        "kubelet dials the endpoint as a host path: {info:?}"
    );
    let endpoint = world.host_path(&info.endpoint);
    let node_channel = connect(&endpoint, world.dir()).await;
    let mut node = NodeClient::new(node_channel.clone());
    let node_info = node
        .node_get_info(NodeGetInfoRequest {})
        .await
        .expect("NodeGetInfo")
        .into_inner();
    assert_eq!(node_info.node_id, NODE_NAME, "the node id is the Kubernetes node name");
    let name = IdentityClient::new(node_channel.clone())
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .expect("GetPluginInfo")
        .into_inner()
        .name;
    assert_eq!(name, info.name, "the driver's name and the registered one");
    let _: registration::RegistrationStatusResponse = unary(
        reg,
        "/pluginregistration.Registration/NotifyRegistrationStatus",
        registration::RegistrationStatus {
            plugin_registered: true,
            error: String::new(),
        },
    )
    .await
    .expect("NotifyRegistrationStatus");
    step(
        t0,
        &format!(
            "registered: {} at {}, node {}",
            info.name, info.endpoint, node_info.node_id
        ),
    );

    // Every liveness probe of the node pod, as kubelet runs them.
    for done in liveness_probes(&world, &node_pod, node_spec).await {
        step(t0, &format!("node pod: {done}"));
    }
    let (node_port, node_probe_path) = http_probe(container(node_spec, "ebs-plugin"));

    // ---- the controller pod: the driver and its liveness probe ----
    let mut ctrl_pod = start_pod(
        &mut world,
        &images,
        controller,
        "ebs-csi-controller-6f9c8-q4w2z",
        &["ebs-plugin", "liveness-probe"],
    );
    // The socket as each sidecar finds it: its --csi-address, through its volume mounts.
    let ctx = PodCtx {
        name: &ctrl_pod.name,
        uid: pod_uid(&ctrl_pod.name),
        spec: controller_spec,
        sandbox_pid: Some(ctrl_pod.sandbox_pid),
    };
    let plugin_c = container(controller_spec, "ebs-plugin");
    let plugin_args: Vec<String> = strings(list(plugin_c, "args"))
        .iter()
        .map(|a| expand(a, &container_env(plugin_c, &ctrl_pod.name)))
        .collect();
    let driver_endpoint = arg_value(&plugin_args, "--endpoint").expect("--endpoint");
    let driver_socket = driver_endpoint
        .strip_prefix("unix://")
        .or_else(|| driver_endpoint.strip_prefix("unix:"))
        .expect("a unix endpoint");
    let socket = host_path_of(&mut world, &ctx, plugin_c, driver_socket);
    let mut provisioner_args = Vec::new();
    for c in list(controller_spec, "containers") {
        let name = s(c, "name").unwrap_or_default();
        if name == "ebs-plugin" {
            continue;
        }
        let args: Vec<String> = strings(list(c, "args"))
            .iter()
            .map(|a| expand(a, &container_env(c, &ctrl_pod.name)))
            .collect();
        let address = arg_value(&args, "--csi-address").unwrap_or_else(|| panic!("{name}: no --csi-address"));
        assert_eq!(
            host_path_of(&mut world, &ctx, c, &address),
            socket,
            "{name} dials another socket than the driver's"
        );
        if name == "csi-provisioner" {
            provisioner_args = args;
        }
    }
    let ctrl_channel = connect(&socket, world.dir()).await;
    let mut ctrl = ControllerClient::new(ctrl_channel);
    step(
        t0,
        "controller pod started; every sidecar's --csi-address is the driver's socket",
    );
    for done in liveness_probes(&world, &ctrl_pod, controller_spec).await {
        step(t0, &format!("controller pod: {done}"));
    }
    let (ctrl_port, ctrl_probe_path) = http_probe(plugin_c);

    // ---- the seed's volume: the provisioner's CreateVolume, the attacher's publish ----
    let fs_type = arg_value(&provisioner_args, "--default-fstype").unwrap_or_else(|| "ext4".into());
    let cap = capability(&fs_type);
    let topology = node_info.accessible_topology.clone().expect("the node's topology");
    let mut parameters = std::collections::HashMap::new();
    if provisioner_args.iter().any(|a| a == "--extra-create-metadata") {
        parameters.insert("csi.storage.k8s.io/pvc/name".to_owned(), "ebs-claim".to_owned());
        parameters.insert("csi.storage.k8s.io/pvc/namespace".to_owned(), "dev-ns".to_owned());
        parameters.insert("csi.storage.k8s.io/pv/name".to_owned(), PV.to_owned());
    }
    let volume = ctrl
        .create_volume(CreateVolumeRequest {
            name: PV.into(),
            capacity_range: Some(CapacityRange {
                required_bytes: 10 * GIB,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![cap.clone()],
            parameters,
            accessibility_requirements: Some(TopologyRequirement {
                requisite: vec![topology.clone()],
                preferred: vec![topology],
            }),
            ..Default::default()
        })
        .await
        .expect("CreateVolume")
        .into_inner()
        .volume
        .expect("a volume");
    let id = volume.volume_id.clone();
    assert!(
        world.host_path(&format!("/var/lib/ebs-csi/volumes/{id}.img")).is_file(),
        "the volume's image is in the host's /var/lib/ebs-csi"
    );
    let publish_context = ctrl
        .controller_publish_volume(ControllerPublishVolumeRequest {
            volume_id: id.clone(),
            node_id: node_info.node_id.clone(),
            volume_capability: Some(cap.clone()),
            volume_context: volume.volume_context.clone(),
            ..Default::default()
        })
        .await
        .expect("ControllerPublishVolume")
        .into_inner()
        .publish_context;
    assert_eq!(world.our_loop_devices().len(), 1, "one loop device for the volume");

    step(
        t0,
        &format!("CreateVolume {id}, ControllerPublishVolume: {publish_context:?}"),
    );

    // The controller container restarts (an upgrade, an OOM kill) while the volume is attached:
    // the attachment must still be its own, and the node must still find the device.
    let restarted = world.restart(ctrl_pod.id("ebs-plugin"));
    ctrl_pod.containers.insert("ebs-plugin".into(), restarted);
    let mut ctrl = ControllerClient::new(connect(&socket, world.dir()).await);
    ctrl.controller_publish_volume(ControllerPublishVolumeRequest {
        volume_id: id.clone(),
        node_id: node_info.node_id.clone(),
        volume_capability: Some(cap.clone()),
        volume_context: volume.volume_context.clone(),
        ..Default::default()
    })
    .await
    .expect("ControllerPublishVolume again, after the restart");
    assert_eq!(
        world.our_loop_devices().len(),
        1,
        "one loop device for the volume after the controller restarted"
    );
    step(
        t0,
        "the controller container restarted with the volume attached; the attachment is still its own",
    );

    // ---- kubelet: stage and publish at its paths ----
    use sha2::Digest;
    let hash = format!("{:x}", sha2::Sha256::digest(id.as_bytes()));
    let staging = format!("/var/lib/kubelet/plugins/kubernetes.io/csi/{DRIVER}/{hash}/globalmount");
    let nginx_uid = "0b8e6a52-2f4d-4d8e-bb3c-6f1e9a7d5c21";
    let target = format!("/var/lib/kubelet/pods/{nginx_uid}/volumes/kubernetes.io~csi/{PV}/mount");
    // kubelet makes the parents; the driver makes the mount directories.
    std::fs::create_dir_all(world.host_path(&staging).parent().expect("parent")).expect("staging parent");
    std::fs::create_dir_all(world.host_path(&target).parent().expect("parent")).expect("target parent");
    let stage = NodeStageVolumeRequest {
        volume_id: id.clone(),
        publish_context: publish_context.clone(),
        staging_target_path: staging.clone(),
        volume_capability: Some(cap.clone()),
        volume_context: volume.volume_context.clone(),
        ..Default::default()
    };
    let publish = NodePublishVolumeRequest {
        volume_id: id.clone(),
        publish_context: publish_context.clone(),
        staging_target_path: staging.clone(),
        target_path: target.clone(),
        volume_capability: Some(cap.clone()),
        volume_context: volume.volume_context.clone(),
        ..Default::default()
    };
    let unpublish = NodeUnpublishVolumeRequest {
        volume_id: id.clone(),
        target_path: target.clone(),
    };
    let unstage = NodeUnstageVolumeRequest {
        volume_id: id.clone(),
        staging_target_path: staging.clone(),
    };
    node.node_stage_volume(stage.clone()).await.expect("NodeStageVolume");
    node.node_publish_volume(publish.clone())
        .await
        .expect("NodePublishVolume");
    // Propagation: the mounts made in the driver's container are the host's too.
    assert!(
        mounted(&world.host_path(&staging)),
        "the global mount is not visible on the host"
    );
    assert!(
        mounted(&world.host_path(&target)),
        "the pod's mount is not visible on the host"
    );
    step(
        t0,
        "NodeStageVolume, NodePublishVolume: both mounts visible in the host's mount namespace",
    );

    // The nginx pod: another container, with the pod's volume directory bound where the seed's
    // deployment mounts it. It writes the page and reads it back.
    let seed: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/seed/deployment.yaml"))
            .expect("examples/seed/deployment.yaml"),
    )
    .expect("seed deployment YAML");
    let seed_nginx = list(at(&seed, "spec.template.spec").expect("seed pod"), "containers")[0];
    let html = s(list(seed_nginx, "volumeMounts")[0], "mountPath").expect("nginx mountPath");
    let page = format!("<h1>{PV} served from {id}</h1>\n");
    let nginx_spec: Value = serde_yaml_ng::from_str(&format!(
        "containers: [{{name: nginx, volumeMounts: [{{name: ebs-claim, mountPath: {html}}}], \
         securityContext: {{readOnlyRootFilesystem: true}}}}]\n\
         volumes: [{{name: ebs-claim, hostPath: {{path: {target}, type: Directory}}}}]"
    ))
    .expect("nginx pod YAML");
    let nginx_c = list(&nginx_spec, "containers")[0];
    let nginx = |world: &mut World, run: &str, script: String| {
        let ctx = PodCtx {
            name: "nginx-deployment-5c9d7b6f4-h8t2m",
            uid: nginx_uid.into(),
            spec: &nginx_spec,
            sandbox_pid: Some(node_pod.sandbox_pid),
        };
        let spec = runtime_spec(
            world,
            &ctx,
            nginx_c,
            &images.ebs_csi.rootfs,
            vec!["sh".into(), "-c".into(), script, "sh".into(), page.clone()],
            images.ebs_csi.env.clone(),
        );
        let out = world.run_to_end(run, spec);
        assert!(
            out.status.success(),
            "the nginx pod ({run}) failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let read = nginx(
        &mut world,
        "nginx-write",
        format!("printf '%s' \"$1\" > {html}/index.html && cat {html}/index.html"),
    );
    assert_eq!(read, page, "what the nginx pod reads back");
    let on_host = std::fs::read_to_string(world.host_path(&target).join("index.html")).expect("index.html on the host");
    assert_eq!(on_host, page, "the page as the host sees it");
    step(
        t0,
        "the nginx pod (another container) wrote index.html and read it back; the host sees it",
    );

    // Stats, then the resizer's ControllerExpandVolume and kubelet's NodeExpandVolume.
    let stats_req = NodeGetVolumeStatsRequest {
        volume_id: id.clone(),
        volume_path: target.clone(),
        staging_target_path: staging.clone(),
    };
    let stats = node
        .node_get_volume_stats(stats_req.clone())
        .await
        .expect("NodeGetVolumeStats")
        .into_inner();
    let before = bytes_total(&stats);
    assert!(
        before > 9 * GIB && before <= 10 * GIB,
        "10 GiB volume reports {before} bytes"
    );
    let expanded = ctrl
        .controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: id.clone(),
            capacity_range: Some(CapacityRange {
                required_bytes: 20 * GIB,
                limit_bytes: 0,
            }),
            volume_capability: Some(cap.clone()),
            ..Default::default()
        })
        .await
        .expect("ControllerExpandVolume")
        .into_inner();
    assert!(expanded.node_expansion_required);
    let grow = node
        .node_expand_volume(NodeExpandVolumeRequest {
            volume_id: id.clone(),
            volume_path: target.clone(),
            staging_target_path: staging.clone(),
            capacity_range: Some(CapacityRange {
                required_bytes: 20 * GIB,
                limit_bytes: 0,
            }),
            volume_capability: Some(cap.clone()),
            ..Default::default()
        })
        .await;
    // A privileged container has the host's capabilities; growing a mounted ext4 needs
    // CAP_SYS_RESOURCE. Without it kubelet's offline path: the pod goes, staging again grows it.
    let how = if host_has("SYS_RESOURCE") || fs_type == "xfs" {
        grow.expect("NodeExpandVolume online");
        "online"
    } else {
        let err = grow.expect_err("online ext4 growth without CAP_SYS_RESOURCE");
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
        node.node_unpublish_volume(unpublish.clone())
            .await
            .expect("NodeUnpublishVolume");
        node.node_unstage_volume(unstage.clone())
            .await
            .expect("NodeUnstageVolume");
        node.node_stage_volume(stage.clone())
            .await
            .expect("NodeStageVolume (grows)");
        node.node_publish_volume(publish.clone())
            .await
            .expect("NodePublishVolume");
        "offline (the host has no CAP_SYS_RESOURCE to give): unpublished, unstaged, staged and published again"
    };
    let after = bytes_total(
        &node
            .node_get_volume_stats(stats_req)
            .await
            .expect("NodeGetVolumeStats")
            .into_inner(),
    );
    assert!(
        after > 19 * GIB,
        "after expanding to 20 GiB the volume reports {after} bytes"
    );
    step(
        t0,
        &format!("NodeGetVolumeStats {before} bytes; expanded {how} to {after} bytes"),
    );
    let read = nginx(&mut world, "nginx-read", format!("cat {html}/index.html"));
    assert_eq!(
        read, page,
        "the page after the expansion, read by a new nginx container"
    );
    step(t0, "a new nginx container reads the page from the grown volume");
    // The pod goes: unpublish, unstage; the mounts leave the host too.
    node.node_unpublish_volume(unpublish)
        .await
        .expect("NodeUnpublishVolume");
    assert!(
        !mounted(&world.host_path(&target)),
        "the pod's mount outlived NodeUnpublishVolume"
    );
    node.node_unstage_volume(unstage).await.expect("NodeUnstageVolume");
    assert!(
        !mounted(&world.host_path(&staging)),
        "the global mount outlived NodeUnstageVolume"
    );
    ctrl.controller_unpublish_volume(ControllerUnpublishVolumeRequest {
        volume_id: id.clone(),
        node_id: node_info.node_id.clone(),
        ..Default::default()
    })
    .await
    .expect("ControllerUnpublishVolume");
    assert!(
        world.our_loop_devices().is_empty(),
        "the loop device outlived ControllerUnpublishVolume"
    );
    ctrl.delete_volume(DeleteVolumeRequest {
        volume_id: id.clone(),
        ..Default::default()
    })
    .await
    .expect("DeleteVolume");
    step(t0, "NodeUnpublish, NodeUnstage, ControllerUnpublish, DeleteVolume");

    // Liveness: stopped drivers make /healthz fail.
    world.stop(node_pod.id("ebs-plugin"));
    assert!(!endpoint.exists(), "the node driver left its socket behind");
    wait_status(
        &node_pod.netns(),
        node_port,
        &node_probe_path,
        |s| s != Some(200),
        "node healthz",
    )
    .await;
    world.stop(ctrl_pod.id("ebs-plugin"));
    wait_status(
        &ctrl_pod.netns(),
        ctrl_port,
        &ctrl_probe_path,
        |s| s != Some(200),
        "controller healthz",
    )
    .await;
    step(t0, "drivers stopped (SIGTERM): both /healthz fail");

    let problems = world.teardown();
    assert!(problems.is_empty(), "teardown: {problems:?}");
    step(t0, "teardown: no container, mount or loop device left");
}

/// A pod's uid, fixed by its name (kubelet's pod directory is named by it).
fn pod_uid(name: &str) -> String {
    use sha2::Digest;
    let h = format!("{:x}", sha2::Sha256::digest(name.as_bytes()));
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}
