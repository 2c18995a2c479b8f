//! Stand-ins for the aws backend's tests: moto's EC2 server (a real server, started here), a
//! fault-injecting HTTP proxy in front of it, and a /dev/disk/by-id + sysfs tree over real loop
//! devices for NVMe discovery (there are no Nitro devices here). The IMDSv2 stand-in is in
//! `imds.rs`, shared with tests built without the aws feature.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};

use ebs_csi::csi::{CreateVolumeRequest, Topology, TopologyRequirement};

use super::aws_snapshots::SnapshotState;
use super::imds::read_request;

pub const REGION: &str = "us-east-1";
pub const AZ: &str = "us-east-1a";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// moto's EC2 server on a port of its own, stopped (by its pid) on drop.
pub struct Moto {
    child: Child,
    pub url: String,
}

fn moto_binary() -> PathBuf {
    if let Ok(p) = std::env::var("MOTO_SERVER") {
        return p.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-test/bin/moto_server");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("moto_server")
    }
}

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let mut child = Command::new(moto_binary())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server (pip install \"moto[server]\", or run scripts/test.sh)");
        let url = format!("http://127.0.0.1:{port}");
        // Importing moto takes seconds, many under load: wait for the port while the process
        // lives; the deadline only stops a hang.
        let deadline = Instant::now() + Duration::from_secs(300);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("moto_server exited ({status}) before listening");
            }
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Moto { child, url }
    }

    /// The environment that points the driver (and the SDK) at `url`.
    pub fn env(url: &str) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", url.to_owned()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]
    }

    pub fn client(&self) -> Client {
        let conf = aws_sdk_ec2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&self.url)
            .region(Region::new(REGION))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .build();
        Client::from_conf(conf)
    }

    /// A running instance to attach to.
    pub async fn instance(&self, instance_type: &str) -> String {
        let out = self
            .client()
            .run_instances()
            .image_id("ami-12345678")
            .min_count(1)
            .max_count(1)
            .instance_type(aws_sdk_ec2::types::InstanceType::from(instance_type))
            .placement(aws_sdk_ec2::types::Placement::builder().availability_zone(AZ).build())
            .send()
            .await
            .unwrap();
        out.instances()[0].instance_id().unwrap().to_owned()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the proxy does to one request, chosen by its EC2 action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward it, then drop the connection instead of answering (a lost response).
    LoseResponse,
    /// Answer 503 RequestLimitExceeded without forwarding.
    Throttle,
    /// Answer 500 InternalError without forwarding.
    ServerError,
    /// Answer 403 UnauthorizedOperation without forwarding, naming the action and the resource
    /// as EC2 does (an IAM policy that does not allow the call).
    Unauthorized,
}

/// A fault-injecting HTTP proxy in front of moto: `plan` says, per action, which faults to
/// inject on its first calls; every request's action is recorded, and its body.
pub struct FaultProxy {
    pub url: String,
    pub actions: Arc<Mutex<Vec<String>>>,
    /// (action, form-encoded body) of every request, in arrival order.
    pub requests: Arc<Mutex<Vec<(String, String)>>>,
    /// Snapshot locks and fast restores (see support/aws_snapshots.rs).
    pub snapshots: Arc<SnapshotState>,
    /// Percent of every request (any action) answered with a throttle, besides the plan.
    throttle_percent: Arc<AtomicUsize>,
    stop: Arc<AtomicUsize>,
}

/// The n-th draw of a fixed pseudo-random sequence in 0..100 (SplitMix64), so a throttle rate
/// picks the same requests in every run with the same order of arrival.
fn draw(n: u64) -> usize {
    let mut z = n.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) % 100) as usize
}

/// EC2's refusal for a call the caller's IAM policy does not allow.
fn unauthorized(action: &str, body: &str) -> Vec<u8> {
    let resource = body
        .split('&')
        .find_map(|p| p.strip_prefix("VolumeId="))
        .map(|v| format!("arn:aws:ec2:us-east-1:123456789012:volume/{v}"))
        .unwrap_or_else(|| "arn:aws:ec2:us-east-1:123456789012:volume/*".into());
    let message = format!(
        "You are not authorized to perform this operation. User: arn:aws:sts::123456789012:assumed-role/ebs-csi/test \
         is not authorized to perform: ec2:{action} on resource: {resource} because no identity-based policy allows \
         the ec2:{action} action. Encoded authorization failure message: abc"
    );
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>{message}</Message></Error></Errors><RequestID>injected-2</RequestID></Response>"
    );
    format!(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn action_of(request: &[u8]) -> String {
    let text = String::from_utf8_lossy(request);
    text.split(['&', '\n', '?'])
        .find_map(|p| p.trim().strip_prefix("Action="))
        .map(|a| a.trim().to_owned())
        .unwrap_or_default()
}

fn body_of(request: &[u8]) -> String {
    let text = String::from_utf8_lossy(request);
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn error_response(status: &str, code: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code><Message>injected by the test proxy</Message></Error></Errors><RequestID>injected-1</RequestID></Response>"
    );
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends `request`'s head (its signature and region) with another form body to moto; the
/// response, whole.
fn to_moto(upstream: &str, request: &[u8], body: &str) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(request);
    let (head, _) = text.split_once("\r\n\r\n")?;
    let head: Vec<&str> = head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("content-length:"))
        .collect();
    let message = format!(
        "{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        head.join("\r\n"),
        body.len()
    );
    let mut up = TcpStream::connect(upstream).ok()?;
    up.write_all(message.as_bytes()).ok()?;
    let mut response = Vec::new();
    up.read_to_end(&mut response).ok()?;
    Some(response)
}

/// The text of the first `<tag>…</tag>` in `xml`.
fn xml_field<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(&xml[start..end])
}

/// EC2 CopyVolumes, which moto lacks, answered as the EC2 API reference documents it: a copy of
/// the source in the source's zone, with its encryption, at least its size, with the request's
/// type, IOPS, throughput, tags and client token; the answer's `volumeSet` holds the copy. The
/// copy itself is made in moto with CreateVolume, so every later call sees it.
fn copy_volumes(upstream: &str, request: &[u8], copies: &Mutex<HashMap<String, String>>) -> Vec<u8> {
    let body = body_of(request);
    let pairs: Vec<(String, String)> = body
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect();
    let get = |k: &str| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let Some(source) = get("SourceVolumeId") else {
        return error_response("400 Bad Request", "MissingParameter");
    };
    let describe = format!("Action=DescribeVolumes&Version=2016-11-15&VolumeId.1={source}");
    let Some(found) = to_moto(upstream, request, &describe) else {
        return error_response("500 Internal Server Error", "InternalError");
    };
    let found = String::from_utf8_lossy(&found).into_owned();
    let (Some(zone), Some(size)) = (xml_field(&found, "availabilityZone"), xml_field(&found, "size")) else {
        return error_response("400 Bad Request", "InvalidVolume.NotFound");
    };
    let source_size: u64 = size.parse().unwrap_or(0);
    let size: u64 = get("Size").and_then(|s| s.parse().ok()).unwrap_or(source_size);
    if size < source_size {
        return error_response("400 Bad Request", "InvalidParameterValue");
    }
    let encrypted = xml_field(&found, "encrypted").unwrap_or("false");
    let mut create =
        format!("Action=CreateVolume&Version=2016-11-15&AvailabilityZone={zone}&Size={size}&Encrypted={encrypted}");
    let passed = ["VolumeType", "Iops", "Throughput", "ClientToken", "MultiAttachEnabled"];
    for (k, v) in &pairs {
        if passed.contains(&k.as_str()) || k.starts_with("TagSpecification.") {
            create.push_str(&format!("&{}={}", enc(k), enc(v)));
        }
    }
    let Some(made) = to_moto(upstream, request, &create) else {
        return error_response("500 Internal Server Error", "InternalError");
    };
    let made = String::from_utf8_lossy(&made).into_owned();
    let Some((head, xml)) = made.split_once("\r\n\r\n") else {
        return error_response("500 Internal Server Error", "InternalError");
    };
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return made.into_bytes();
    }
    if let Some(id) = xml_field(xml, "volumeId") {
        copies.lock().unwrap().insert(id.to_owned(), source.clone());
    }
    // CreateVolume's answer holds the volume's fields at its top level: they become one item,
    // naming its source as EC2 does.
    let inner = xml
        .split_once("<CreateVolumeResponse")
        .and_then(|(_, rest)| rest.split_once('>'))
        .and_then(|(_, rest)| rest.rsplit_once("</CreateVolumeResponse>"))
        .map(|(fields, _)| fields)
        .unwrap_or_default();
    let inner = match (inner.find("<requestId>"), inner.find("</requestId>")) {
        (Some(a), Some(b)) => format!("{}{}", &inner[..a], &inner[b + "</requestId>".len()..]),
        _ => inner.to_owned(),
    };
    let answer = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><CopyVolumesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>copy-volumes-1</requestId><volumeSet><item><sourceVolumeId>{source}</sourceVolumeId>{inner}</item></volumeSet></CopyVolumesResponse>"
    );
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    )
    .into_bytes()
}

/// DescribeVolumes as EC2 answers it for copies: each names its source volume.
fn with_copy_sources(response: Vec<u8>, copies: &Mutex<HashMap<String, String>>) -> Vec<u8> {
    let copies = copies.lock().unwrap();
    if copies.is_empty() {
        return response;
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let Some((head, mut xml)) = text.split_once("\r\n\r\n").map(|(h, x)| (h.to_owned(), x.to_owned())) else {
        return response;
    };
    for (copy, source) in copies.iter() {
        let tag = format!("<volumeId>{copy}</volumeId>");
        xml = xml.replace(&tag, &format!("{tag}<sourceVolumeId>{source}</sourceVolumeId>"));
    }
    let head: Vec<&str> = head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("content-length:"))
        .collect();
    format!("{}\r\nContent-Length: {}\r\n\r\n{xml}", head.join("\r\n"), xml.len()).into_bytes()
}

/// moto's zones in `REGION`.
pub const MOTO_ZONES: [&str; 6] = [
    "us-east-1a",
    "us-east-1b",
    "us-east-1c",
    "us-east-1d",
    "us-east-1e",
    "us-east-1f",
];

/// A form body's decoded pairs, in order.
fn form(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

/// Form encoding of one key or value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl FaultProxy {
    pub fn start(upstream: &str, plan: HashMap<&'static str, Vec<Fault>>) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let actions = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let plan = Arc::new(Mutex::new(plan));
        let stop = Arc::new(AtomicUsize::new(0));
        let throttle_percent = Arc::new(AtomicUsize::new(0));
        let drawn = Arc::new(std::sync::atomic::AtomicU64::new(0));
        // Copies made by CopyVolumes, with their sources.
        let copies: Arc<Mutex<HashMap<String, String>>> = Arc::new(Mutex::new(HashMap::new()));
        let snapshots = Arc::new(SnapshotState::default());
        let held = snapshots.clone();
        let (seen, bodies, halt) = (actions.clone(), requests.clone(), stop.clone());
        let rate = throttle_percent.clone();
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            while halt.load(Ordering::SeqCst) == 0 {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = conn.set_nonblocking(false);
                let (upstream, seen, bodies, plan) = (upstream.clone(), seen.clone(), bodies.clone(), plan.clone());
                let (rate, drawn, copies, held) = (rate.clone(), drawn.clone(), copies.clone(), held.clone());
                std::thread::spawn(move || {
                    // One request per connection: the SDK opens another when this one closes.
                    let Some(request) = read_request(&mut conn) else { return };
                    let action = action_of(&request);
                    bodies.lock().unwrap().push((action.clone(), body_of(&request)));
                    seen.lock().unwrap().push(action.clone());
                    let planned = plan
                        .lock()
                        .unwrap()
                        .get_mut(action.as_str())
                        .and_then(|f| (!f.is_empty()).then(|| f.remove(0)));
                    let random = draw(drawn.fetch_add(1, Ordering::SeqCst)) < rate.load(Ordering::SeqCst);
                    let fault = planned.or(random.then_some(Fault::Throttle));
                    match fault {
                        Some(Fault::Unauthorized) => {
                            let _ = conn.write_all(&unauthorized(&action, &body_of(&request)));
                            return;
                        }
                        Some(Fault::Throttle) => {
                            let _ = conn.write_all(&error_response("503 Service Unavailable", "RequestLimitExceeded"));
                            return;
                        }
                        Some(Fault::ServerError) => {
                            let _ = conn.write_all(&error_response("500 Internal Server Error", "InternalError"));
                            return;
                        }
                        _ => {}
                    }
                    let pairs = form(&body_of(&request));
                    let exists = |id: &str| {
                        let ask = format!("Action=DescribeSnapshots&Version=2016-11-15&SnapshotId.1={}", enc(id));
                        to_moto(&upstream, &request, &ask).is_some_and(|r| {
                            String::from_utf8_lossy(&r).contains(&format!("<snapshotId>{id}</snapshotId>"))
                        })
                    };
                    let stand_in = match action.as_str() {
                        "LockSnapshot" => Some(held.lock(&pairs, exists)),
                        "DescribeLockedSnapshots" => Some(held.describe_locked(&pairs)),
                        "EnableFastSnapshotRestores" => Some(held.enable_fast_restores(&pairs, &MOTO_ZONES, exists)),
                        "DeleteSnapshot" => held.refuse_delete(&pairs),
                        _ => None,
                    };
                    if let Some(response) = stand_in {
                        if fault != Some(Fault::LoseResponse) {
                            let _ = conn.write_all(&response);
                        }
                        return;
                    }
                    if action == "CopyVolumes" {
                        let response = copy_volumes(&upstream, &request, &copies);
                        if fault != Some(Fault::LoseResponse) {
                            let _ = conn.write_all(&response);
                        }
                        return;
                    }
                    let Ok(mut up) = TcpStream::connect(&upstream) else {
                        return;
                    };
                    // Ask moto to close after answering, so reading to the end is the response.
                    let text = String::from_utf8_lossy(&request).replacen("\r\n", "\r\nConnection: close\r\n", 1);
                    if up.write_all(text.as_bytes()).is_err() {
                        return;
                    }
                    let mut response = Vec::new();
                    let _ = up.read_to_end(&mut response);
                    if fault == Some(Fault::LoseResponse) {
                        return; // the work was done; the caller never hears of it
                    }
                    let response = if action == "DescribeVolumes" {
                        with_copy_sources(response, &copies)
                    } else {
                        response
                    };
                    let _ = conn.write_all(&response);
                });
            }
        });
        FaultProxy {
            url,
            actions,
            requests,
            snapshots,
            throttle_percent,
            stop,
        }
    }

    /// From now on, throttle `percent` % of all requests (0 stops it).
    pub fn throttle_percent(&self, percent: usize) {
        self.throttle_percent.store(percent, Ordering::SeqCst);
    }

    pub fn count(&self, action: &str) -> usize {
        self.actions.lock().unwrap().iter().filter(|a| *a == action).count()
    }

    /// The decoded form parameters of each `action` request, in arrival order.
    pub fn params(&self, action: &str) -> Vec<Vec<(String, String)>> {
        let requests = self.requests.lock().unwrap();
        requests
            .iter()
            .filter(|(a, _)| a == action)
            .map(|(_, body)| {
                body.split('&')
                    .filter_map(|p| p.split_once('='))
                    .map(|(k, v)| (percent_decode(k), percent_decode(v)))
                    .collect()
            })
            .collect()
    }

    /// For each `action` request in order, the values of its filter `name`
    /// (`Filter.N.Name=name`, `Filter.N.Value.M=…`); None for a request without that filter.
    pub fn filter_values(&self, action: &str, name: &str) -> Vec<Option<Vec<String>>> {
        self.params(action)
            .into_iter()
            .map(|pairs| {
                let n = pairs.iter().find_map(|(k, v)| {
                    let n = k.strip_prefix("Filter.")?.strip_suffix(".Name")?;
                    (v == name).then(|| n.to_owned())
                })?;
                let prefix = format!("Filter.{n}.Value.");
                let mut values: Vec<(usize, String)> = pairs
                    .iter()
                    .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.parse().ok()?, v.clone())))
                    .collect();
                values.sort();
                Some(values.into_iter().map(|(_, v)| v).collect())
            })
            .collect()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(1, Ordering::SeqCst);
    }
}

/// A fake udev/sysfs view over real loop devices: `by-id/nvme-Amazon_Elastic_Block_Store_<serial>`
/// links and `sys/block/loopN/device/serial` files, as a Nitro instance shows its EBS volumes.
pub struct NvmeTree {
    pub by_id: PathBuf,
    pub sys_block: PathBuf,
}

impl NvmeTree {
    pub fn new(root: &Path) -> NvmeTree {
        let tree = NvmeTree {
            by_id: root.join("by-id"),
            sys_block: root.join("sys-block"),
        };
        std::fs::create_dir_all(&tree.by_id).unwrap();
        std::fs::create_dir_all(&tree.sys_block).unwrap();
        tree
    }

    /// Gives a device a serial (what the NVMe controller reports).
    pub fn serial(&self, device: &Path, serial: &str) {
        let dir = self.sys_block.join(device.file_name().unwrap()).join("device");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("serial"), format!("{serial}\n")).unwrap();
    }

    /// The by-id link udev would make for `serial`, pointing at `device`.
    pub fn link(&self, serial: &str, device: &Path) {
        let link = self.by_id.join(format!("nvme-Amazon_Elastic_Block_Store_{serial}"));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(device, link).unwrap();
    }
}

/// The instance the node tests over an [`NvmeTree`] play.
pub const NVME_NODE: &str = "i-0abcdef0123456789";

impl NvmeTree {
    /// `ebs-csi serve --backend aws --mode node` as instance [`NVME_NODE`], seeing this tree
    /// as its udev links and sysfs, plus `extra` flags and environment.
    pub async fn node(&self, extra: &[&str], env: &[(&str, &str)]) -> super::Driver {
        let mut args = vec![
            "--backend",
            "aws",
            "--mode",
            "node",
            "--node-id",
            NVME_NODE,
            "--zone",
            AZ,
            "--instance-type",
            "m5.large",
        ];
        args.extend_from_slice(extra);
        let mut all = vec![
            ("EBS_CSI_DEV_DISK_BY_ID", self.by_id.to_str().expect("utf-8")),
            ("EBS_CSI_SYS_BLOCK", self.sys_block.to_str().expect("utf-8")),
        ];
        all.extend_from_slice(env);
        super::Driver::start_custom(&args, &all).await
    }
}

/// A real loop device over a sparse file in `dir`, detached on drop.
pub struct Loop {
    pub device: PathBuf,
}

impl Loop {
    pub fn new(dir: &Path, name: &str, gib: u64) -> Loop {
        let file = dir.join(name);
        std::fs::File::create(&file).unwrap().set_len(gib << 30).unwrap();
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        Loop {
            device: PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("--detach").arg(&self.device).status();
    }
}

/// Topology that requires and prefers `zone`, as the provisioner sends it.
pub fn topo(zone: &str) -> TopologyRequirement {
    let t = Topology {
        segments: HashMap::from([("topology.kubernetes.io/zone".to_string(), zone.to_string())]),
    };
    TopologyRequirement {
        requisite: vec![t.clone()],
        preferred: vec![t],
    }
}

/// A CreateVolume for moto's zone `AZ`.
pub fn create_in_zone(name: &str, gib: i64, pairs: &[(&str, &str)]) -> CreateVolumeRequest {
    let mut r = super::create_req(name, gib, pairs);
    r.accessibility_requirements = Some(topo(AZ));
    r
}

/// `ebs-csi serve --backend aws` on the EC2 API at `endpoint` (moto, or a proxy in front of it)
/// as `instance`, an m5.large in [`AZ`], plus `extra` flags.
pub async fn aws_driver(endpoint: &str, instance: &str, extra: &[&str]) -> super::Driver {
    let env = Moto::env(endpoint);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut args = vec![
        "--backend",
        "aws",
        "--node-id",
        instance,
        "--zone",
        AZ,
        "--instance-type",
        "m5.large",
    ];
    args.extend_from_slice(extra);
    super::Driver::start_custom(&args, &env).await
}
