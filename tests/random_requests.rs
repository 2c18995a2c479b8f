//! The error audit: thousands of seeded random and malformed requests to every Identity,
//! Controller and Node RPC of the local backend (mode all) — valid-ish ones built from the state
//! the run has made, broken ones (odd strings, ids of other shapes, absurd sizes, parameters,
//! capabilities, paths and tokens) and bytes that are not protobuf — after a few fixed cases (what
//! earlier runs found), and followed by concurrent duplicates and racing calls. Every answer must
//! be a specific code — never INTERNAL (our own faults) nor UNKNOWN (a panic, or an error nobody
//! mapped) — the server must keep answering Probe, no mount may appear anywhere but at a path a
//! request named under the driver's temp dir, and once everything made through the API is torn
//! down through the API, nothing is left: no mount, no loop device, no image. Every offender is
//! collected with the request that produced it and printed before the test fails.
//!
//! `EBS_CSI_FUZZ_SEED` replays a run (the seed is printed), `EBS_CSI_FUZZ_CASES` sets its
//! length. Node paths are the driver's temp dir or deliberately absurd ones (relative, `/`,
//! `/proc/…` that cannot be created, nonexistent); unpublish, unstage and expand are never
//! pointed at a host path that exists outside the temp dir other than `/`.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use ebs_csi::csi::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume, access_mode::Mode};
use ebs_csi::csi::*;
use prost::Message;
use prost::bytes::{Buf, BufMut};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use support::*;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

const DEFAULT_SEED: u64 = 0x00c5_1e44_0a0d_17ed;
const DEFAULT_CASES: usize = 3000;
/// No answer within this is a hang, reported like a wrong code.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// Bounds on what the run keeps at once: images are sparse, loop devices are the host's.
const MAX_VOLUMES: usize = 24;
const MAX_ATTACHED: usize = 8;
/// Node calls act only on volumes this small (mkfs and resize of a huge image cost real time).
const NODE_MAX_GIB: u64 = 8;
const NODE2: &str = "node-2";
const ZONE2: &str = "local-1b";

// ---------------------------------------------------------------------------------------------
// What the run knows and what it found
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Vol {
    id: String,
    gib: u64,
}

struct World {
    dir: PathBuf,
    volumes: Vec<Vol>,
    /// Ids of volumes and snapshots deleted during the run (stale ids are good input too).
    gone: Vec<String>,
    snapshots: Vec<String>,
    /// (volume, node) → publish context.
    attached: Ordered<(String, String), HashMap<String, String>>,
    /// (volume, path) of every stage and publish under the temp dir, for the teardown.
    staged: OrderedSet<(String, String)>,
    published: OrderedSet<(String, String)>,
    /// Every stage/publish path under the temp dir a request named (normalized and resolved).
    given: BTreeSet<PathBuf>,
    /// Targets kubelet would use, and odd places under the temp dir.
    mount_targets: Vec<String>,
    block_targets: Vec<String>,
    odd_paths: Vec<String>,
    /// Mounts outside the temp dir when the run started (target → count).
    outside_before: BTreeMap<PathBuf, usize>,
}

/// An insertion-ordered map. The run picks among what it made in the order it made it, not in
/// the order of the ids the driver drew at random, so that a seed replays the same requests.
struct Ordered<K, V>(Vec<(K, V)>);

impl<K, V> Default for Ordered<K, V> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<K: PartialEq, V> Ordered<K, V> {
    fn insert(&mut self, key: K, value: V) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.0.push((key, value)),
        }
    }

    fn keys(&self) -> impl Iterator<Item = &K> {
        self.0.iter().map(|(k, _)| k)
    }

    fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }

    fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.0.retain_mut(|(k, v)| keep(k, v));
    }

    fn clear(&mut self) {
        self.0.clear();
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An insertion-ordered set (see [`Ordered`]).
#[derive(Clone)]
struct OrderedSet<T>(Vec<T>);

impl<T> Default for OrderedSet<T> {
    fn default() -> Self {
        OrderedSet(Vec::new())
    }
}

impl<T: PartialEq> OrderedSet<T> {
    fn insert(&mut self, item: T) {
        if !self.0.contains(&item) {
            self.0.push(item);
        }
    }

    fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

impl<T> IntoIterator for OrderedSet<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl World {
    fn under(&self, path: &str) -> bool {
        Path::new(path).starts_with(&self.dir)
    }

    fn staging(&self, handle: &str) -> String {
        use sha2::Digest;
        let hash = format!("{:x}", sha2::Sha256::digest(handle.as_bytes()));
        self.dir
            .join(format!(
                "kubelet/plugins/kubernetes.io/csi/ebs.csi.aws.com/{hash}/globalmount"
            ))
            .display()
            .to_string()
    }

    fn small_attached(&self, node: &str) -> Vec<(String, HashMap<String, String>)> {
        self.attached
            .iter()
            .filter(|((v, n), _)| n == node && self.volumes.iter().any(|x| x.id == *v && x.gib <= NODE_MAX_GIB))
            .map(|((v, _), ctx)| (v.clone(), ctx.clone()))
            .collect()
    }

    fn attached_volumes(&self) -> BTreeSet<String> {
        self.attached.keys().map(|(v, _)| v.clone()).collect()
    }

    fn remember_given(&mut self, path: &str) {
        if self.under(path) {
            self.given.insert(normalize(path));
            if let Ok(real) = std::fs::canonicalize(path) {
                self.given.insert(real);
            }
        }
    }
}

#[derive(Default)]
struct Report {
    /// rpc → code → count.
    counts: BTreeMap<&'static str, BTreeMap<String, usize>>,
    offenders: Vec<String>,
    /// Calls that got no answer in time (the run stops if the server then fails Probe).
    timeouts: usize,
    /// Findings about the host (mounts, leftovers), each reported once.
    seen: BTreeSet<String>,
}

impl Report {
    fn record<T>(&mut self, case: usize, rpc: &'static str, shown: &str, result: &Result<T, tonic::Status>) {
        let code = match result {
            Ok(_) => "OK".to_owned(),
            Err(s) => format!("{:?}", s.code()),
        };
        *self.counts.entry(rpc).or_default().entry(code).or_default() += 1;
        if let Err(s) = result
            && matches!(s.code(), Code::Internal | Code::Unknown)
        {
            self.offenders.push(format!(
                "{}: {rpc} → {:?}: {}\n    request: {shown}",
                label(case),
                s.code(),
                shorten(s.message())
            ));
        }
    }

    fn finding(&mut self, key: String, text: String) {
        if self.seen.insert(key) {
            self.offenders.push(text);
        }
    }
}

/// Where a finding came from: a random case by number; 0 is the fixed cases, `usize::MAX` the
/// phases after the random one.
fn label(case: usize) -> String {
    match case {
        0 => "fixed cases".into(),
        usize::MAX => "after the random cases".into(),
        n => format!("case {n}"),
    }
}

/// A request or message as printed: runs of one character longer than 24 are collapsed, so a
/// 70,000-byte field stays readable.
fn shorten(s: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let mut j = i;
        while j < chars.len() && chars[j] == chars[i] {
            j += 1;
        }
        if j - i > 24 {
            out.push_str(&format!("{}…×{}", chars[i].escape_debug(), j - i));
        } else {
            out.extend(&chars[i..j]);
        }
        i = j;
    }
    if out.len() > 4000 {
        let cut = (0..=4000).rev().find(|n| out.is_char_boundary(*n)).unwrap_or(0);
        out.truncate(cut);
        out.push('…');
    }
    out
}

fn shown(req: &impl Debug) -> String {
    shorten(&format!("{req:?}"))
}

/// Sends one call with a deadline and records its code; the answer when it succeeded.
async fn send<T>(
    report: &mut Report,
    case: usize,
    rpc: &'static str,
    shown: &str,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Option<T> {
    let result = match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(r) => r.map(tonic::Response::into_inner),
        Err(_) => {
            report.timeouts += 1;
            Err(tonic::Status::unknown(format!("no answer within {CALL_TIMEOUT:?}")))
        }
    };
    report.record(case, rpc, shown, &result);
    result.ok()
}

// ---------------------------------------------------------------------------------------------
// Mounts, as the test sees them (independently of the driver's own parser)
// ---------------------------------------------------------------------------------------------

/// `path` with `//`, `.` and a trailing `/` taken out, as the kernel shows a mount target.
fn normalize(path: &str) -> PathBuf {
    Path::new(path)
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// Every mount target, with how many mounts are stacked there.
fn mount_table() -> BTreeMap<PathBuf, usize> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut table = BTreeMap::new();
    for line in text.lines() {
        if let Some(target) = line.split(' ').nth(4) {
            *table.entry(unescape_mount_path(target)).or_default() += 1;
        }
    }
    table
}

/// Mounts at these targets as mountinfo shows them (type, source and, for a loop device, the
/// file behind it), for messages.
fn describe_mounts(targets: &[PathBuf]) -> String {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let target = unescape_mount_path(fields[4]);
        if !targets.contains(&target) {
            continue;
        }
        let source = fields.get(sep + 2).copied().unwrap_or("");
        let backing = source
            .strip_prefix("/dev/")
            .and_then(|n| std::fs::read_to_string(format!("/sys/block/{n}/loop/backing_file")).ok())
            .map(|b| format!(" backed by {}", b.trim()))
            .unwrap_or_default();
        out.push(format!(
            "{} ({} from {source}{backing})",
            target.display(),
            fields.get(sep + 1).copied().unwrap_or("")
        ));
    }
    out.join("; ")
}

/// Mounts that belong to other tests running beside this one (their own temp dirs).
fn foreign(target: &Path) -> bool {
    let tmp = std::env::temp_dir();
    target
        .strip_prefix(&tmp)
        .ok()
        .and_then(|rest| rest.iter().next())
        .is_some_and(|first| {
            let first = first.to_string_lossy();
            first.starts_with("ebs-csi") || first.starts_with(".tmp")
        })
}

/// The mounts outside the temp dir must be the ones there at the start, and every mount inside
/// it must be at a path some request named.
fn check_mounts(w: &World, report: &mut Report, case: usize, after: &str) {
    let now = mount_table();
    let outside = |t: &BTreeMap<PathBuf, usize>| -> BTreeMap<PathBuf, usize> {
        t.iter()
            .filter(|(p, _)| !p.starts_with(&w.dir) && !foreign(p))
            .map(|(p, n)| (p.clone(), *n))
            .collect()
    };
    let outside_now = outside(&now);
    if outside_now != w.outside_before {
        let keys: BTreeSet<&PathBuf> = outside_now.keys().chain(w.outside_before.keys()).collect();
        for p in keys {
            let (was, is) = (
                w.outside_before.get(p).copied().unwrap_or(0),
                outside_now.get(p).copied().unwrap_or(0),
            );
            if was != is {
                report.finding(
                    format!("outside {}", p.display()),
                    format!(
                        "{}: after {after}: {} mount(s) at {} outside the temp dir, {} at the start",
                        label(case),
                        is,
                        p.display(),
                        was
                    ),
                );
            }
        }
    }
    for target in now.keys().filter(|p| p.starts_with(&w.dir)) {
        if !w.given.contains(target) {
            report.finding(
                format!("unasked {}", target.display()),
                format!(
                    "{}: after {after}: a mount at {}, which no request named",
                    label(case),
                    target.display()
                ),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw bytes on the wire: malformed protobuf
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = buf.remaining();
        Ok(Some(buf.copy_to_bytes(n).to_vec()))
    }
}

async fn raw_call(
    channel: &Channel,
    method: &'static str,
    body: Vec<u8>,
) -> Result<tonic::Response<Vec<u8>>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("channel not ready: {e}")))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(method);
    grpc.unary(tonic::Request::new(body), path, RawCodec).await
}

// ---------------------------------------------------------------------------------------------
// The generator
// ---------------------------------------------------------------------------------------------

struct Gen {
    rng: StdRng,
}

const CREATE_KEYS: [&str; 26] = [
    "type",
    "iops",
    "iopsPerGB",
    "allowAutoIOPSPerGBIncrease",
    "allowAutoIOPSIncreaseOnModify",
    "throughput",
    "encrypted",
    "kmsKeyId",
    "csi.storage.k8s.io/fstype",
    "fsType",
    "blockSize",
    "inodeSize",
    "bytesPerInode",
    "numberOfInodes",
    "ext4BigAlloc",
    "ext4ClusterSize",
    "ext4EncryptionSupport",
    "volumeInitializationRate",
    "blockExpress",
    "tagSpecification_1",
    "tagSpecification_2",
    "csi.storage.k8s.io/pvc/name",
    "csi.storage.k8s.io/pvc/namespace",
    "csi.storage.k8s.io/pv/name",
    "tagDeletion_1",
    "volumeType",
];

const CONTEXT_KEYS: [&str; 9] = [
    "csi.storage.k8s.io/fstype",
    "blockSize",
    "inodeSize",
    "bytesPerInode",
    "numberOfInodes",
    "ext4BigAlloc",
    "ext4ClusterSize",
    "ext4EncryptionSupport",
    "partition",
];

/// Mount flags that reach the kernel harmlessly (never `errors=panic` and the like).
const FLAGS: [&str; 30] = [
    "ro",
    "rw",
    "noatime",
    "nodiratime",
    "relatime",
    "nosuid",
    "nodev",
    "noexec",
    "sync",
    "lazytime",
    "discard",
    "defaults",
    "nofail",
    "x-fuzz",
    "commit=30",
    "data=ordered",
    "nouuid",
    "no_such_option",
    "commit=abc",
    "data=nonsense",
    "a,b",
    "noatime,nosuid",
    "bind",
    "remount",
    "rshared",
    "context=\"system_u:object_r:container_file_t:s0:c0,c1\"",
    "context=\"unclosed",
    "",
    "x\0y",
    "size=1m",
];

const FS_TYPES: [&str; 14] = [
    "ext4", "ext4", "xfs", "ext3", "ext2", "", "EXT4", "ntfs", "btrfs", "../x", "ext4\0", "ext4,ro", "/bin/sh", "tmpfs",
];

const MODES: [Mode; 6] = [
    Mode::SingleNodeWriter,
    Mode::SingleNodeReaderOnly,
    Mode::SingleNodeSingleWriter,
    Mode::SingleNodeMultiWriter,
    Mode::MultiNodeMultiWriter,
    Mode::MultiNodeReaderOnly,
];

const ZONE_KEYS: [&str; 5] = [
    "topology.ebs.csi.aws.com/zone",
    "topology.kubernetes.io/zone",
    "topology.k8s.aws/zone-id",
    "kubernetes.io/os",
    "topology.example.com/rack",
];

impl Gen {
    fn p(&mut self, prob: f64) -> bool {
        self.rng.random_bool(prob)
    }

    fn n(&mut self, range: std::ops::Range<usize>) -> usize {
        self.rng.random_range(range)
    }

    fn one<T: Clone>(&mut self, xs: &[T]) -> T {
        xs.choose(&mut self.rng).expect("a non-empty choice").clone()
    }

    fn hex(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(b"0123456789abcdef"[self.n(0..16)]))
            .collect()
    }

    /// A string meant to break something.
    fn wild(&mut self) -> String {
        match self.n(0..24) {
            0 => String::new(),
            1 => "x".repeat(if self.p(0.5) {
                self.n(257..5000)
            } else {
                self.n(16_000..40_000)
            }),
            2 => "z".repeat(if self.p(0.1) { 1 << 20 } else { 70_000 }),
            3 => "ünïcödé-😀-\u{202e}-e\u{301}-ﬁ-ǅ-ß-İ".into(),
            4 => "a\0b".into(),
            5 => "\0".into(),
            6 => "..".into(),
            7 => "../../../etc/passwd".into(),
            8 => "/".into(),
            9 => "relative/path".into(),
            10 => format!("/tmp/{}", "y".repeat(300)),
            11 => " ".into(),
            12 => "\t\r\n".into(),
            13 => "%s%n%x{{.PVName}}${HOME}$(id)`id`;|&".into(),
            14 => self.odd_id("vol"),
            15 => self.odd_id("snap"),
            16 | 17 => self.noise(),
            18 => "\u{fffd}\u{7f}\u{1}\u{1b}[31m".into(),
            19 => self
                .one(&["-1", "NaN", "1e309", "0x10", "+1", "18446744073709551616", "-0", "١٢٣"])
                .into(),
            20 => "=,=\"'\\".into(),
            21 => "a,b=c,d".into(),
            22 => "{{ .PVCName | substring 0 99999999999 }}".into(),
            _ => "\u{10ffff}\u{e000}\u{feff}".into(),
        }
    }

    fn noise(&mut self) -> String {
        const ALPHABET: [char; 28] = [
            'a', 'Z', '0', '9', '-', '_', '.', '/', '\\', ',', '=', ' ', '\0', '\n', '"', '\'', '{', '}', '|', 'é',
            '😀', '\u{fffd}', '\u{7f}', ':', '*', '?', '%', '$',
        ];
        let len = self.n(0..48);
        (0..len).map(|_| self.one(&ALPHABET)).collect()
    }

    /// Ids of other shapes than the driver's: unknown, uppercase, EC2's short form, too short,
    /// too long, with NUL, space or `..`.
    fn odd_id(&mut self, prefix: &str) -> String {
        let hex17 = self.hex(17);
        match self.n(0..12) {
            0 | 1 => format!("{prefix}-{hex17}"),
            2 => format!("{prefix}-{}", hex17.to_uppercase()),
            3 => format!("{prefix}-{}", self.hex(8)),
            4 => format!("{prefix}-{}", self.hex(16)),
            5 => format!("{prefix}-{}", self.hex(18)),
            6 => format!("{prefix}-"),
            7 => format!("{prefix}-{hex17}\0"),
            8 => format!("{prefix}-{hex17} "),
            9 => format!("{}-{hex17}", prefix.to_uppercase()),
            10 => format!("{prefix}-../../{hex17}"),
            _ => format!("{prefix}-{}", "g".repeat(17)),
        }
    }

    /// An existing id, twisted: uppercase, with a NUL, a space or a slash appended.
    fn twist(&mut self, id: &str) -> String {
        match self.n(0..4) {
            0 => id.to_uppercase(),
            1 => format!("{id}\0"),
            2 => format!("{id} "),
            _ => format!("{id}/"),
        }
    }

    fn vol_id(&mut self, w: &World) -> String {
        let r = self.n(0..100);
        if r < 60 && !w.volumes.is_empty() {
            return self.one(&w.volumes).id;
        }
        if r < 66 && !w.gone.is_empty() {
            return self.one(&w.gone);
        }
        if r < 72 && !w.volumes.is_empty() {
            let id = self.one(&w.volumes).id;
            return self.twist(&id);
        }
        if r < 80 && !w.snapshots.is_empty() {
            return self.one(&w.snapshots);
        }
        if r < 92 {
            return self.odd_id("vol");
        }
        self.wild()
    }

    fn snap_id(&mut self, w: &World) -> String {
        let r = self.n(0..100);
        if r < 55 && !w.snapshots.is_empty() {
            return self.one(&w.snapshots);
        }
        if r < 62 && !w.gone.is_empty() {
            return self.one(&w.gone);
        }
        if r < 70 && !w.volumes.is_empty() {
            return self.one(&w.volumes).id;
        }
        if r < 88 {
            return self.odd_id("snap");
        }
        self.wild()
    }

    fn node_id(&mut self) -> String {
        match self.n(0..10) {
            0..=5 => NODE.into(),
            6 => NODE2.into(),
            7 => "node-unknown".into(),
            8 => String::new(),
            _ => self.wild(),
        }
    }

    fn secrets(&mut self) -> HashMap<String, String> {
        if self.p(0.8) {
            return HashMap::new();
        }
        (0..self.n(1..4)).map(|_| (self.wild(), self.wild())).collect()
    }

    fn number(&mut self) -> String {
        self.one(&[
            "0",
            "1",
            "50",
            "100",
            "125",
            "3000",
            "4000",
            "16000",
            "64000",
            "256000",
            "256001",
            "-1",
            "4294967296",
            "99999999999999999999",
            "1e3",
            "0x10",
            " 3000",
            "+4000",
            "3000.5",
            "",
        ])
        .into()
    }

    fn size_value(&mut self) -> String {
        self.one(&[
            "512",
            "1024",
            "2048",
            "4096",
            "8192",
            "65536",
            "131072",
            "3",
            "0",
            "-4096",
            "1k",
            "4K",
            "64k",
            "1g",
            "1G",
            "99999999999",
            "4096 ",
            "",
        ])
        .into()
    }

    fn boolean(&mut self) -> String {
        self.one(&["true", "false", "TRUE", "True", "1", "0", "yes", ""]).into()
    }

    fn tag_spec(&mut self) -> String {
        self.one(&[
            "owner=team-a",
            "k=v",
            "=v",
            "k=",
            "noequals",
            "pvc={{ .PVCName }}",
            "ns={{ .PVCNamespace | toUpper }}",
            "part={{ field \"-\" 1 .PVName }}",
            "cut={{ .PVName | substring 0 5 }}",
            "c={{ contains \"a\" .PVCName }}",
            "open={{",
            "bad={{ printf \"%s\" 1 }}",
            "unknown={{ .Unknown }}",
            "kubernetes.io/x=v",
            "aws:x=y",
            "ebs.csi.aws.com/cluster=false",
            "CSIVolumeName=mine",
            "{{ .PVName }}=v",
            "deep={{ substring 0 (len .PVName) .PVName }}",
            "x={{/* comment */}}",
        ])
        .into()
    }

    /// A value for a known parameter key, valid or not.
    fn value_for(&mut self, key: &str) -> String {
        if self.p(0.12) {
            return self.wild();
        }
        let lower = key.to_ascii_lowercase();
        match lower.as_str() {
            "type" | "volumetype" => self
                .one(&[
                    "gp3", "gp3", "gp2", "io1", "io2", "sc1", "st1", "standard", "GP3", "", "gp4", "io2 ",
                ])
                .into(),
            "iops" | "iopspergb" | "throughput" | "volumeinitializationrate" => self.number(),
            "allowautoiopspergbincrease"
            | "allowautoiopsincreaseonmodify"
            | "encrypted"
            | "ext4bigalloc"
            | "ext4encryptionsupport"
            | "blockexpress" => self.boolean(),
            "kmskeyid" => self
                .one(&["", "arn:aws:kms:us-east-1:111122223333:key/1234abcd", "alias/x"])
                .into(),
            "csi.storage.k8s.io/fstype" | "fstype" => self.one(&FS_TYPES).into(),
            "blocksize" | "inodesize" | "bytesperinode" | "ext4clustersize" => self.size_value(),
            "numberofinodes" => self
                .one(&["1", "1000", "4294967295", "4294967296", "0", "-1", ""])
                .into(),
            k if k.starts_with("tagspecification") => self.tag_spec(),
            k if k.starts_with("tagdeletion") => self.one(&["owner", "k", "", "aws:x", "CSIVolumeName"]).into(),
            _ => self.one(&["pvc-1", "default", "pv-1", "", "a-b-c-d"]).into(),
        }
    }

    /// A key in any case, or an unknown one.
    fn key(&mut self, keys: &[&str]) -> String {
        let k = self.one(keys).to_owned();
        match self.n(0..10) {
            0 => k.to_uppercase(),
            1 => k.to_lowercase(),
            2 => format!("tagSpecification_{}", self.one(&["0", "999999", "x", "", "-1"])),
            3 => self.wild(),
            _ => k,
        }
    }

    fn params(&mut self, keys: &[&str], max: usize) -> HashMap<String, String> {
        let count = self.n(0..max + 1);
        let mut out = HashMap::new();
        for _ in 0..count {
            let k = self.key(keys);
            let v = self.value_for(&k);
            out.insert(k, v);
        }
        out
    }

    /// Parameters that mostly make a volume (valid-ish StorageClasses).
    fn sane_params(&mut self) -> HashMap<String, String> {
        let sets: [&[(&str, &str)]; 9] = [
            &[],
            &[],
            &[("type", "gp3")],
            &[("type", "gp2")],
            &[("type", "io2"), ("iops", "3000")],
            &[("type", "gp3"), ("csi.storage.k8s.io/fstype", "xfs")],
            &[("encrypted", "true"), ("tagSpecification_1", "pvc={{ .PVCName }}")],
            &[("csi.storage.k8s.io/fstype", "ext4"), ("blockSize", "1024")],
            &[
                ("type", "io1"),
                ("iopsPerGB", "50"),
                ("allowAutoIOPSPerGBIncrease", "true"),
            ],
        ];
        let mut out: HashMap<String, String> = self
            .one(&sets)
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if self.p(0.2) {
            let k = self.key(&CREATE_KEYS);
            let v = self.value_for(&k);
            out.insert(k, v);
        }
        out
    }

    fn capability(&mut self, block: Option<bool>) -> VolumeCapability {
        let block = block.unwrap_or_else(|| self.p(0.3));
        let sane = self.p(0.7);
        let access_type = if !sane && self.p(0.15) {
            None
        } else if block {
            Some(AccessType::Block(BlockVolume {}))
        } else {
            let fs_type = if sane {
                self.one(&["", "ext4", "xfs", "ext4", ""]).into()
            } else if self.p(0.5) {
                self.one(&FS_TYPES).into()
            } else {
                self.wild()
            };
            let flag_count = if sane { self.n(0..2) } else { self.n(0..4) };
            let mount_flags = (0..flag_count)
                .map(|_| {
                    if sane {
                        self.one(&["noatime", "nosuid", "nodev", "discard", "ro", "defaults"])
                            .into()
                    } else if self.p(0.8) {
                        self.one(&FLAGS).into()
                    } else {
                        self.wild()
                    }
                })
                .collect();
            let volume_mount_group = if self.p(0.9) { String::new() } else { self.wild() };
            Some(AccessType::Mount(MountVolume {
                fs_type,
                mount_flags,
                volume_mount_group,
            }))
        };
        let access_mode = if !sane && self.p(0.15) {
            None
        } else {
            let mode = if sane {
                let m = self.one(&MODES[..4]);
                if block && self.p(0.1) {
                    Mode::MultiNodeMultiWriter
                } else {
                    m
                }
            } else {
                match self.n(0..3) {
                    0 => self.one(&MODES),
                    _ => {
                        return VolumeCapability {
                            access_mode: Some(AccessMode {
                                mode: self.one(&[-1, 0, 3, 4, 5, 9, 100, i32::MAX, i32::MIN]),
                            }),
                            access_type,
                        };
                    }
                }
            };
            Some(AccessMode { mode: mode as i32 })
        };
        VolumeCapability {
            access_mode,
            access_type,
        }
    }

    fn capabilities(&mut self) -> Vec<VolumeCapability> {
        match self.n(0..10) {
            0 => Vec::new(),
            1 => vec![self.capability(Some(false)), self.capability(Some(true))],
            2 => (0..self.n(2..5)).map(|_| self.capability(None)).collect(),
            _ => vec![self.capability(None)],
        }
    }

    fn bytes(&mut self) -> i64 {
        self.one(&[
            0,
            1,
            GIB - 1,
            GIB,
            GIB + 1,
            2 * GIB,
            3 * GIB,
            4 * GIB,
            100 * GIB,
            16_384 * GIB,
            16_385 * GIB,
            65_536 * GIB,
            65_537 * GIB,
            -1,
            -GIB,
            i64::MIN,
            i64::MAX,
            1 << 62,
        ])
    }

    fn range(&mut self) -> Option<CapacityRange> {
        if self.p(0.15) {
            return None;
        }
        Some(CapacityRange {
            required_bytes: self.bytes(),
            limit_bytes: if self.p(0.6) { 0 } else { self.bytes() },
        })
    }

    fn small_range(&mut self) -> Option<CapacityRange> {
        Some(CapacityRange {
            required_bytes: self.one(&[GIB, 2 * GIB, 3 * GIB, GIB + 1, 4 * GIB]),
            limit_bytes: if self.p(0.8) { 0 } else { 8 * GIB },
        })
    }

    fn topology(&mut self) -> Topology {
        let count = self.n(0..3);
        let segments = (0..count)
            .map(|_| {
                let key = if self.p(0.85) {
                    self.one(&ZONE_KEYS).into()
                } else {
                    self.wild()
                };
                let value = if self.p(0.8) {
                    self.one(&[
                        "local-1a", "local-1b", "local-1c", "lcl1-az1", "lcl1-az2", "nowhere", "linux", "",
                    ])
                    .into()
                } else {
                    self.wild()
                };
                (key, value)
            })
            .collect();
        Topology { segments }
    }

    fn requirement(&mut self) -> Option<TopologyRequirement> {
        if self.p(0.5) {
            return None;
        }
        Some(TopologyRequirement {
            requisite: (0..self.n(0..3)).map(|_| self.topology()).collect(),
            preferred: (0..self.n(0..3)).map(|_| self.topology()).collect(),
        })
    }

    fn max_entries(&mut self) -> i32 {
        self.one(&[0, 0, 1, 2, 5, 100, -1, i32::MIN, i32::MAX])
    }

    fn token(&mut self, w: &World) -> String {
        match self.n(0..8) {
            0..=2 => String::new(),
            3 if !w.volumes.is_empty() => self.one(&w.volumes).id,
            4 if !w.snapshots.is_empty() => self.one(&w.snapshots),
            5 => self.odd_id("vol"),
            _ => self.wild(),
        }
    }

    /// A publish context: the attach's own, another volume's device, or something else.
    fn publish_context(&mut self, own: Option<&HashMap<String, String>>, w: &World) -> HashMap<String, String> {
        let r = self.n(0..100);
        if r < 75
            && let Some(c) = own
        {
            return c.clone();
        }
        let other = w
            .attached
            .values()
            .filter_map(|c| c.get("devicePath"))
            .cloned()
            .collect::<Vec<_>>();
        let device = if r < 88 && !other.is_empty() {
            self.one(&other)
        } else {
            match self.n(0..6) {
                0 => "/dev/loop999".into(),
                1 => "/dev/ebs-csi-fuzz-nonexistent".into(),
                2 => "../../dev/loop0".into(),
                3 => String::new(),
                4 => "/dev/loop0".into(),
                _ => self.wild(),
            }
        };
        let mut ctx = HashMap::from([("devicePath".to_owned(), device)]);
        if self.p(0.2) {
            ctx.insert(self.wild(), self.wild());
        }
        ctx
    }

    fn volume_context(&mut self) -> HashMap<String, String> {
        if self.p(0.6) {
            return HashMap::new();
        }
        self.params(&CONTEXT_KEYS, 3)
    }
}

/// Paths for node calls.
#[derive(Clone, Copy, PartialEq)]
enum PathUse {
    /// Stage and publish make the path: absurd ones must be impossible to create.
    Make,
    /// Unstage, unpublish and expand act on it: never an existing host path but `/`.
    Act,
    /// Stats and health only read.
    Read,
}

fn absurd(g: &mut Gen, how: PathUse) -> String {
    let long = format!("/{}", "a/".repeat(2100));
    let mut pool: Vec<String> = vec![
        String::new(),
        "relative/path".into(),
        "./x".into(),
        "/".into(),
        "/a\0b".into(),
        format!("/tmp/{}", "y".repeat(300)),
        long,
        "/tmp/../tmp/x".into(),
    ];
    match how {
        PathUse::Make => pool.extend([
            "/proc/ebs-csi-fuzz".into(),
            "/proc/1/ebs-csi-fuzz/x".into(),
            "/sys/ebs-csi-fuzz".into(),
            "/dev/null/ebs-csi-fuzz".into(),
            "/proc".into(),
        ]),
        PathUse::Act => pool.extend([
            "/nonexistent-ebs-csi-fuzz/a/b".into(),
            "/nonexistent-ebs-csi-fuzz/😀".into(),
        ]),
        PathUse::Read => pool.extend([
            "/proc".into(),
            "/proc/self".into(),
            "/sys".into(),
            "/nonexistent-ebs-csi-fuzz/a".into(),
            "/dev/null".into(),
        ]),
    }
    g.one(&pool)
}

/// A node path for volume `vol`: its natural place most of the time, else another place under
/// the temp dir, an odd one there, or an absurd one.
fn node_path(g: &mut Gen, w: &World, how: PathUse, vol: &str, staging: bool, block: bool) -> String {
    match g.n(0..100) {
        0..=54 => {
            if staging {
                w.staging(vol)
            } else if block {
                g.one(&w.block_targets)
            } else {
                g.one(&w.mount_targets)
            }
        }
        55..=69 => {
            let pool = [&w.mount_targets[..], &w.block_targets[..]].concat();
            if g.p(0.5) {
                g.one(&pool)
            } else {
                w.staging(&g.odd_id("vol"))
            }
        }
        70..=81 => g.one(&w.odd_paths),
        _ => absurd(g, how),
    }
}

/// A volume for a node call: mostly a small one attached to node-1 (with its context).
fn node_volume(g: &mut Gen, w: &World) -> (String, Option<HashMap<String, String>>) {
    let attached = w.small_attached(NODE);
    let r = g.n(0..100);
    if r < 72 && !attached.is_empty() {
        let (v, c) = g.one(&attached);
        return (v, Some(c));
    }
    if r < 76 {
        // An existing small volume, attached or not (unattached ones wait for their device).
        let small: Vec<Vol> = w.volumes.iter().filter(|v| v.gib <= NODE_MAX_GIB).cloned().collect();
        if !small.is_empty() {
            return (g.one(&small).id, None);
        }
    }
    if r < 80 && !w.gone.is_empty() {
        return (g.one(&w.gone), None);
    }
    let id = if g.p(0.7) { g.odd_id("vol") } else { g.wild() };
    (id, None)
}

// ---------------------------------------------------------------------------------------------
// One random case
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Rpc {
    GetPluginInfo,
    GetPluginCapabilities,
    Probe,
    CreateVolume,
    DeleteVolume,
    ControllerPublish,
    ControllerUnpublish,
    Validate,
    ListVolumes,
    GetCapacity,
    ControllerCapabilities,
    CreateSnapshot,
    DeleteSnapshot,
    ListSnapshots,
    GetSnapshot,
    ControllerExpand,
    ControllerGetVolume,
    ControllerModify,
    ControllerVolumeHealth,
    ControllerListHealth,
    NodeStage,
    NodeUnstage,
    NodePublish,
    NodeUnpublish,
    NodeStats,
    NodeHealth,
    NodeStorageHealth,
    NodeExpand,
    NodeCapabilities,
    NodeInfo,
    Raw,
}

const WEIGHTS: [(Rpc, usize); 31] = [
    (Rpc::GetPluginInfo, 1),
    (Rpc::GetPluginCapabilities, 1),
    (Rpc::Probe, 1),
    (Rpc::CreateVolume, 12),
    (Rpc::DeleteVolume, 4),
    (Rpc::ControllerPublish, 8),
    (Rpc::ControllerUnpublish, 3),
    (Rpc::Validate, 3),
    (Rpc::ListVolumes, 2),
    (Rpc::GetCapacity, 3),
    (Rpc::ControllerCapabilities, 1),
    (Rpc::CreateSnapshot, 4),
    (Rpc::DeleteSnapshot, 2),
    (Rpc::ListSnapshots, 2),
    (Rpc::GetSnapshot, 2),
    (Rpc::ControllerExpand, 4),
    (Rpc::ControllerGetVolume, 2),
    (Rpc::ControllerModify, 4),
    (Rpc::ControllerVolumeHealth, 2),
    (Rpc::ControllerListHealth, 2),
    (Rpc::NodeStage, 10),
    (Rpc::NodeUnstage, 4),
    (Rpc::NodePublish, 9),
    (Rpc::NodeUnpublish, 4),
    (Rpc::NodeStats, 3),
    (Rpc::NodeHealth, 3),
    (Rpc::NodeStorageHealth, 1),
    (Rpc::NodeExpand, 4),
    (Rpc::NodeCapabilities, 1),
    (Rpc::NodeInfo, 1),
    (Rpc::Raw, 8),
];

fn pick_rpc(g: &mut Gen) -> Rpc {
    let total: usize = WEIGHTS.iter().map(|(_, w)| w).sum();
    let mut at = g.n(0..total);
    for (rpc, w) in WEIGHTS {
        if at < w {
            return rpc;
        }
        at -= w;
    }
    unreachable!()
}

struct Ctx<'a> {
    d: &'a Driver,
    channel: Channel,
}

async fn one_case(case: usize, g: &mut Gen, w: &mut World, r: &mut Report, cx: &Ctx<'_>) -> Rpc {
    let mut rpc = pick_rpc(g);
    // Keep the run bounded: too many volumes or attachments turn creates and publishes into
    // their opposites.
    if rpc == Rpc::CreateVolume && w.volumes.len() >= MAX_VOLUMES && g.p(0.7) {
        rpc = Rpc::DeleteVolume;
    }
    if rpc == Rpc::ControllerPublish && w.attached_volumes().len() >= MAX_ATTACHED {
        rpc = Rpc::ControllerUnpublish;
    }
    let (mut ctl, mut node, mut ident) = (cx.d.controller.clone(), cx.d.node.clone(), cx.d.identity.clone());
    match rpc {
        Rpc::GetPluginInfo => {
            send(
                r,
                case,
                "GetPluginInfo",
                "{}",
                ident.get_plugin_info(GetPluginInfoRequest {}),
            )
            .await;
        }
        Rpc::GetPluginCapabilities => {
            let call = ident.get_plugin_capabilities(GetPluginCapabilitiesRequest {});
            send(r, case, "GetPluginCapabilities", "{}", call).await;
        }
        Rpc::Probe => {
            send(r, case, "Probe", "{}", ident.probe(ProbeRequest {})).await;
        }
        Rpc::CreateVolume => create_volume(case, g, w, r, &mut ctl).await,
        Rpc::DeleteVolume => {
            let volume_id = if g.p(0.6) {
                // Prefer volumes nothing is attached to, so deletes do happen.
                let free: Vec<Vol> = w
                    .volumes
                    .iter()
                    .filter(|v| !w.attached_volumes().contains(&v.id))
                    .cloned()
                    .collect();
                if free.is_empty() { g.vol_id(w) } else { g.one(&free).id }
            } else {
                g.vol_id(w)
            };
            let req = DeleteVolumeRequest {
                volume_id,
                secrets: g.secrets(),
            };
            let s = shown(&req);
            let id = req.volume_id.clone();
            if send(r, case, "DeleteVolume", &s, ctl.delete_volume(req))
                .await
                .is_some()
                && let Some(i) = w.volumes.iter().position(|v| v.id == id)
            {
                w.volumes.remove(i);
                w.gone.push(id);
            }
        }
        Rpc::ControllerPublish => {
            let req = ControllerPublishVolumeRequest {
                volume_id: g.vol_id(w),
                node_id: g.node_id(),
                volume_capability: if g.p(0.9) { Some(g.capability(None)) } else { None },
                readonly: g.p(0.15),
                secrets: g.secrets(),
                volume_context: g.volume_context(),
            };
            let s = shown(&req);
            let key = (req.volume_id.clone(), req.node_id.clone());
            if let Some(resp) = send(
                r,
                case,
                "ControllerPublishVolume",
                &s,
                ctl.controller_publish_volume(req),
            )
            .await
            {
                w.attached.insert(key, resp.publish_context);
            }
        }
        Rpc::ControllerUnpublish => {
            let (volume_id, node_id) = if g.p(0.6) && !w.attached.is_empty() {
                let keys: Vec<(String, String)> = w.attached.keys().cloned().collect();
                let (v, n) = g.one(&keys);
                (v, if g.p(0.2) { String::new() } else { n })
            } else {
                (g.vol_id(w), g.node_id())
            };
            let req = ControllerUnpublishVolumeRequest {
                volume_id,
                node_id,
                secrets: g.secrets(),
            };
            let s = shown(&req);
            let (v, n) = (req.volume_id.clone(), req.node_id.clone());
            if send(
                r,
                case,
                "ControllerUnpublishVolume",
                &s,
                ctl.controller_unpublish_volume(req),
            )
            .await
            .is_some()
            {
                w.attached
                    .retain(|(av, an), _| !(*av == v && (n.is_empty() || *an == n)));
            }
        }
        Rpc::Validate => {
            let req = ValidateVolumeCapabilitiesRequest {
                volume_id: g.vol_id(w),
                volume_context: g.volume_context(),
                volume_capabilities: g.capabilities(),
                parameters: g.params(&CREATE_KEYS, 3),
                secrets: g.secrets(),
                mutable_parameters: g.params(&CREATE_KEYS, 2),
            };
            let s = shown(&req);
            send(
                r,
                case,
                "ValidateVolumeCapabilities",
                &s,
                ctl.validate_volume_capabilities(req),
            )
            .await;
        }
        Rpc::ListVolumes => {
            let req = ListVolumesRequest {
                max_entries: g.max_entries(),
                starting_token: g.token(w),
            };
            let s = shown(&req);
            send(r, case, "ListVolumes", &s, ctl.list_volumes(req)).await;
        }
        Rpc::GetCapacity => {
            let req = GetCapacityRequest {
                volume_capabilities: g.capabilities(),
                parameters: g.params(&CREATE_KEYS, 3),
                accessible_topology: if g.p(0.5) { Some(g.topology()) } else { None },
            };
            let s = shown(&req);
            send(r, case, "GetCapacity", &s, ctl.get_capacity(req)).await;
        }
        Rpc::ControllerCapabilities => {
            let call = ctl.controller_get_capabilities(ControllerGetCapabilitiesRequest {});
            send(r, case, "ControllerGetCapabilities", "{}", call).await;
        }
        Rpc::CreateSnapshot => {
            let name = if g.p(0.6) {
                format!("snap-fuzz-{}", g.n(0..6))
            } else {
                g.wild()
            };
            let mut parameters = HashMap::new();
            for _ in 0..g.n(0..3) {
                let k = g.key(&[
                    "tagSpecification_1",
                    "csi.storage.k8s.io/volumesnapshot/name",
                    "csi.storage.k8s.io/volumesnapshot/namespace",
                    "csi.storage.k8s.io/volumesnapshotcontent/name",
                    "type",
                ]);
                let v = g.value_for(&k);
                parameters.insert(k, v);
            }
            let req = CreateSnapshotRequest {
                source_volume_id: g.vol_id(w),
                name,
                secrets: g.secrets(),
                parameters,
            };
            let s = shown(&req);
            if let Some(resp) = send(r, case, "CreateSnapshot", &s, ctl.create_snapshot(req)).await
                && let Some(snap) = resp.snapshot
                && !w.snapshots.contains(&snap.snapshot_id)
            {
                w.snapshots.push(snap.snapshot_id);
            }
        }
        Rpc::DeleteSnapshot => {
            let req = DeleteSnapshotRequest {
                snapshot_id: g.snap_id(w),
                secrets: g.secrets(),
            };
            let s = shown(&req);
            let id = req.snapshot_id.clone();
            if send(r, case, "DeleteSnapshot", &s, ctl.delete_snapshot(req))
                .await
                .is_some()
                && let Some(i) = w.snapshots.iter().position(|x| *x == id)
            {
                w.snapshots.remove(i);
                w.gone.push(id);
            }
        }
        Rpc::ListSnapshots => {
            let req = ListSnapshotsRequest {
                max_entries: g.max_entries(),
                starting_token: g.token(w),
                source_volume_id: if g.p(0.5) { String::new() } else { g.vol_id(w) },
                snapshot_id: if g.p(0.5) { String::new() } else { g.snap_id(w) },
                secrets: g.secrets(),
            };
            let s = shown(&req);
            send(r, case, "ListSnapshots", &s, ctl.list_snapshots(req)).await;
        }
        Rpc::GetSnapshot => {
            let req = GetSnapshotRequest {
                snapshot_id: g.snap_id(w),
                secrets: g.secrets(),
            };
            let s = shown(&req);
            send(r, case, "GetSnapshot", &s, ctl.get_snapshot(req)).await;
        }
        Rpc::ControllerExpand => {
            let volume_id = g.vol_id(w);
            // A volume a node may act on grows only a little; others may be asked anything.
            let small = w.volumes.iter().any(|v| v.id == volume_id && v.gib <= NODE_MAX_GIB);
            let capacity_range = if small && g.p(0.8) {
                Some(CapacityRange {
                    required_bytes: g.one(&[GIB, 2 * GIB, 4 * GIB, 6 * GIB, 0, -1]),
                    limit_bytes: g.one(&[0, 0, 8 * GIB, GIB, -5]),
                })
            } else {
                g.range()
            };
            let req = ControllerExpandVolumeRequest {
                volume_id,
                capacity_range,
                secrets: g.secrets(),
                volume_capability: if g.p(0.5) { Some(g.capability(None)) } else { None },
            };
            let s = shown(&req);
            let id = req.volume_id.clone();
            if let Some(resp) = send(r, case, "ControllerExpandVolume", &s, ctl.controller_expand_volume(req)).await
                && let Some(v) = w.volumes.iter_mut().find(|v| v.id == id)
            {
                v.gib = u64::try_from(resp.capacity_bytes / GIB).unwrap_or(0);
            }
        }
        Rpc::ControllerGetVolume => {
            let req = ControllerGetVolumeRequest { volume_id: g.vol_id(w) };
            let s = shown(&req);
            send(r, case, "ControllerGetVolume", &s, ctl.controller_get_volume(req)).await;
        }
        Rpc::ControllerModify => {
            let req = ControllerModifyVolumeRequest {
                volume_id: g.vol_id(w),
                secrets: g.secrets(),
                mutable_parameters: g.params(&CREATE_KEYS, 3),
            };
            let s = shown(&req);
            send(r, case, "ControllerModifyVolume", &s, ctl.controller_modify_volume(req)).await;
        }
        Rpc::ControllerVolumeHealth => {
            let req = ControllerGetVolumeHealthRequest {
                volume_id: g.vol_id(w),
                secrets: g.secrets(),
            };
            let s = shown(&req);
            send(
                r,
                case,
                "ControllerGetVolumeHealth",
                &s,
                ctl.controller_get_volume_health(req),
            )
            .await;
        }
        Rpc::ControllerListHealth => {
            let req = ControllerListVolumeHealthRequest {
                max_entries: g.max_entries(),
                starting_token: g.token(w),
                secrets: g.secrets(),
            };
            let s = shown(&req);
            send(
                r,
                case,
                "ControllerListVolumeHealth",
                &s,
                ctl.controller_list_volume_health(req),
            )
            .await;
        }
        Rpc::NodeStage => {
            let (volume_id, own) = node_volume(g, w);
            let block = g.p(0.1);
            let cap = if g.p(0.92) {
                Some(g.capability(Some(block)))
            } else {
                None
            };
            let path = node_path(g, w, PathUse::Make, &volume_id, true, false);
            let req = NodeStageVolumeRequest {
                publish_context: g.publish_context(own.as_ref(), w),
                volume_id,
                staging_target_path: path.clone(),
                volume_capability: cap,
                secrets: g.secrets(),
                volume_context: g.volume_context(),
            };
            let s = shown(&req);
            w.remember_given(&path);
            if w.under(&path) {
                w.staged.insert((req.volume_id.clone(), path.clone()));
            }
            let before = mount_table();
            let ok = send(r, case, "NodeStageVolume", &s, node.node_stage_volume(req))
                .await
                .is_some();
            w.remember_given(&path);
            left_behind(r, &w.dir, case, "NodeStageVolume", &s, ok, &before);
        }
        Rpc::NodeUnstage => {
            let (volume_id, _) = node_volume(g, w);
            let staging_target_path = if g.p(0.7) {
                w.staging(&volume_id)
            } else {
                node_path(g, w, PathUse::Act, &volume_id, true, false)
            };
            let req = NodeUnstageVolumeRequest {
                volume_id,
                staging_target_path,
            };
            let s = shown(&req);
            send(r, case, "NodeUnstageVolume", &s, node.node_unstage_volume(req)).await;
        }
        Rpc::NodePublish => {
            let (volume_id, own) = node_volume(g, w);
            let block = g.p(0.25);
            let cap = if g.p(0.92) {
                Some(g.capability(Some(block)))
            } else {
                None
            };
            let target = node_path(g, w, PathUse::Make, &volume_id, false, block);
            let staging = if g.p(0.85) {
                w.staging(&volume_id)
            } else {
                node_path(g, w, PathUse::Make, &volume_id, true, false)
            };
            let req = NodePublishVolumeRequest {
                publish_context: g.publish_context(own.as_ref(), w),
                volume_id,
                staging_target_path: staging,
                target_path: target.clone(),
                volume_capability: cap,
                readonly: g.p(0.2),
                secrets: g.secrets(),
                volume_context: g.volume_context(),
            };
            let s = shown(&req);
            w.remember_given(&target);
            if w.under(&target) {
                w.published.insert((req.volume_id.clone(), target.clone()));
            }
            let before = mount_table();
            let ok = send(r, case, "NodePublishVolume", &s, node.node_publish_volume(req))
                .await
                .is_some();
            w.remember_given(&target);
            left_behind(r, &w.dir, case, "NodePublishVolume", &s, ok, &before);
        }
        Rpc::NodeUnpublish => {
            let (volume_id, _) = node_volume(g, w);
            let published: Vec<(String, String)> = w.published.iter().cloned().collect();
            let (volume_id, target_path) = if g.p(0.5) && !published.is_empty() {
                let (v, t) = g.one(&published);
                (if g.p(0.85) { v } else { volume_id }, t)
            } else {
                let block = g.p(0.3);
                let t = node_path(g, w, PathUse::Act, &volume_id, false, block);
                (volume_id, t)
            };
            let req = NodeUnpublishVolumeRequest { volume_id, target_path };
            let s = shown(&req);
            send(r, case, "NodeUnpublishVolume", &s, node.node_unpublish_volume(req)).await;
        }
        Rpc::NodeStats => {
            let (volume_id, _) = node_volume(g, w);
            let volume_path = read_path(g, w, &volume_id);
            let req = NodeGetVolumeStatsRequest {
                staging_target_path: if g.p(0.5) { w.staging(&volume_id) } else { String::new() },
                volume_id,
                volume_path,
            };
            let s = shown(&req);
            send(r, case, "NodeGetVolumeStats", &s, node.node_get_volume_stats(req)).await;
        }
        Rpc::NodeHealth => {
            let (volume_id, _) = node_volume(g, w);
            let volume_publish_path = if g.p(0.7) {
                read_path(g, w, &volume_id)
            } else {
                String::new()
            };
            let staging_target_path = match g.n(0..3) {
                0 => String::new(),
                1 => w.staging(&volume_id),
                _ => read_path(g, w, &volume_id),
            };
            let req = NodeGetVolumeHealthRequest {
                volume_id,
                volume_publish_path,
                staging_target_path,
            };
            let s = shown(&req);
            send(r, case, "NodeGetVolumeHealth", &s, node.node_get_volume_health(req)).await;
        }
        Rpc::NodeStorageHealth => {
            let req = NodeGetStorageHealthRequest { secrets: g.secrets() };
            let s = shown(&req);
            send(r, case, "NodeGetStorageHealth", &s, node.node_get_storage_health(req)).await;
        }
        Rpc::NodeExpand => {
            let (volume_id, _) = node_volume(g, w);
            let published: Vec<String> = w
                .published
                .iter()
                .filter(|(v, _)| *v == volume_id)
                .map(|(_, t)| t.clone())
                .collect();
            let volume_path = match g.n(0..10) {
                0..=3 if !published.is_empty() => g.one(&published),
                0..=5 => w.staging(&volume_id),
                _ => node_path(g, w, PathUse::Act, &volume_id, false, false),
            };
            let req = NodeExpandVolumeRequest {
                volume_id,
                volume_path,
                capacity_range: if g.p(0.7) {
                    Some(CapacityRange {
                        required_bytes: g.one(&[0, GIB, 2 * GIB, 100 * GIB, -1, i64::MIN]),
                        limit_bytes: g.one(&[0, 0, GIB, -1]),
                    })
                } else {
                    g.range()
                },
                staging_target_path: if g.p(0.5) { String::new() } else { g.one(&w.odd_paths) },
                volume_capability: if g.p(0.5) { Some(g.capability(None)) } else { None },
                secrets: g.secrets(),
            };
            let s = shown(&req);
            send(r, case, "NodeExpandVolume", &s, node.node_expand_volume(req)).await;
        }
        Rpc::NodeCapabilities => {
            let call = node.node_get_capabilities(NodeGetCapabilitiesRequest {});
            send(r, case, "NodeGetCapabilities", "{}", call).await;
        }
        Rpc::NodeInfo => {
            send(r, case, "NodeGetInfo", "{}", node.node_get_info(NodeGetInfoRequest {})).await;
        }
        Rpc::Raw => raw_case(case, g, w, r, &cx.channel).await,
    }
    rpc
}

/// A path for the read-only node calls: kubelet's, odd ones, or absurd host paths.
fn read_path(g: &mut Gen, w: &World, vol: &str) -> String {
    let published: Vec<String> = w
        .published
        .iter()
        .filter(|(v, _)| v == vol)
        .map(|(_, t)| t.clone())
        .collect();
    if g.p(0.4) && !published.is_empty() {
        return g.one(&published);
    }
    let staging = g.p(0.4);
    node_path(g, w, PathUse::Read, vol, staging, false)
}

/// A failed stage or publish should leave no new mount behind.
fn left_behind(
    r: &mut Report,
    dir: &Path,
    case: usize,
    rpc: &str,
    shown: &str,
    ok: bool,
    before: &BTreeMap<PathBuf, usize>,
) {
    if ok {
        return;
    }
    let after = mount_table();
    for (target, n) in after.iter().filter(|(t, _)| !foreign(t) || t.starts_with(dir)) {
        if before.get(target).copied().unwrap_or(0) < *n {
            r.finding(
                format!("left {case}"),
                format!(
                    "case {case}: {rpc} failed but left a new mount at {}\n    request: {shown}",
                    target.display()
                ),
            );
        }
    }
}

async fn create_volume(
    case: usize,
    g: &mut Gen,
    w: &mut World,
    r: &mut Report,
    ctl: &mut ebs_csi::csi::controller_client::ControllerClient<Channel>,
) {
    let sane = g.p(0.55);
    let full = w.volumes.len() >= MAX_VOLUMES;
    let name = match g.n(0..10) {
        _ if full => format!("pvc-fuzz-{}", g.n(0..8)),
        0..=5 => format!("pvc-fuzz-{}", g.n(0..8)),
        6 | 7 => format!("pvc-{}", g.hex(12)),
        _ => g.wild(),
    };
    let volume_content_source = match g.n(0..10) {
        0 if !w.snapshots.is_empty() => Some(from_snapshot(&g.one(&w.snapshots))),
        1 if !w.volumes.is_empty() => Some(from_volume(&g.one(&w.volumes).id)),
        2 => Some(if g.p(0.5) {
            from_snapshot(&g.snap_id(w))
        } else {
            from_volume(&g.vol_id(w))
        }),
        3 => Some(VolumeContentSource { r#type: None }),
        _ => None,
    };
    let block = g.p(0.2);
    let req = if sane {
        CreateVolumeRequest {
            name,
            capacity_range: g.small_range(),
            volume_capabilities: vec![g.capability(Some(block))],
            parameters: g.sane_params(),
            secrets: g.secrets(),
            volume_content_source,
            accessibility_requirements: if g.p(0.7) { None } else { g.requirement() },
            mutable_parameters: if g.p(0.9) {
                HashMap::new()
            } else {
                g.params(&CREATE_KEYS, 2)
            },
        }
    } else {
        CreateVolumeRequest {
            name,
            capacity_range: g.range(),
            volume_capabilities: g.capabilities(),
            parameters: g.params(&CREATE_KEYS, 5),
            secrets: g.secrets(),
            volume_content_source,
            accessibility_requirements: g.requirement(),
            mutable_parameters: if g.p(0.7) {
                HashMap::new()
            } else {
                g.params(&CREATE_KEYS, 3)
            },
        }
    };
    let s = shown(&req);
    if let Some(resp) = send(r, case, "CreateVolume", &s, ctl.create_volume(req)).await
        && let Some(v) = resp.volume
        && !w.volumes.iter().any(|x| x.id == v.volume_id)
    {
        w.volumes.push(Vol {
            id: v.volume_id,
            gib: u64::try_from(v.capacity_bytes / GIB).unwrap_or(0),
        });
    }
}

/// A well-formed request of a random safe method, its bytes then broken: flipped, cut, given a
/// string that is not UTF-8, a field of the wrong wire type, an endless varint, a length beyond
/// the end. Never for stage, unstage, publish, unpublish or expand: broken bytes could spell a
/// host path.
async fn raw_case(case: usize, g: &mut Gen, w: &World, r: &mut Report, channel: &Channel) {
    let (method, mut body): (&'static str, Vec<u8>) = match g.n(0..14) {
        0 => ("/csi.v1.Identity/Probe", Vec::new()),
        1 => ("/csi.v1.Identity/GetPluginInfo", Vec::new()),
        2 => (
            "/csi.v1.Controller/CreateVolume",
            create_req(&format!("pvc-raw-{}", g.n(0..4)), 1, &[("type", "gp3")]).encode_to_vec(),
        ),
        3 => (
            "/csi.v1.Controller/DeleteVolume",
            DeleteVolumeRequest {
                volume_id: g.vol_id(w),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        4 => (
            "/csi.v1.Controller/ControllerPublishVolume",
            publish_req(&g.vol_id(w), NODE).encode_to_vec(),
        ),
        5 => (
            "/csi.v1.Controller/ControllerUnpublishVolume",
            unpublish_req(&g.vol_id(w), NODE).encode_to_vec(),
        ),
        6 => (
            "/csi.v1.Controller/ListVolumes",
            ListVolumesRequest {
                max_entries: 2,
                starting_token: g.token(w),
            }
            .encode_to_vec(),
        ),
        7 => (
            "/csi.v1.Controller/CreateSnapshot",
            CreateSnapshotRequest {
                source_volume_id: g.vol_id(w),
                name: format!("snap-raw-{}", g.n(0..4)),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        8 => (
            "/csi.v1.Controller/ControllerExpandVolume",
            ControllerExpandVolumeRequest {
                volume_id: g.vol_id(w),
                capacity_range: g.small_range(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        9 => (
            "/csi.v1.Controller/ValidateVolumeCapabilities",
            ValidateVolumeCapabilitiesRequest {
                volume_id: g.vol_id(w),
                volume_capabilities: vec![g.capability(None)],
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        10 => (
            "/csi.v1.Controller/GetCapacity",
            GetCapacityRequest {
                parameters: g.params(&CREATE_KEYS, 2),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        11 => ("/csi.v1.Node/NodeGetInfo", Vec::new()),
        12 => (
            "/csi.v1.Node/NodeGetVolumeStats",
            NodeGetVolumeStatsRequest {
                volume_id: g.vol_id(w),
                volume_path: "/nonexistent-ebs-csi-fuzz/raw".into(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        _ => ("/csi.v1.GroupController/GroupControllerGetCapabilities", Vec::new()),
    };
    let how = match g.n(0..8) {
        0 if !body.is_empty() => {
            for _ in 0..g.n(1..4) {
                let i = g.n(0..body.len());
                body[i] ^= 1 << g.n(0..8);
            }
            "flipped bits"
        }
        1 if !body.is_empty() => {
            body.truncate(g.n(0..body.len()));
            "cut short"
        }
        2 => {
            // Field 1 (a string in every request that has one) as invalid UTF-8.
            body.extend([0x0a, 0x03, 0xff, 0xfe, 0xc0]);
            "a string field that is not UTF-8"
        }
        3 => {
            // Field 1 with the 64-bit wire type, field 2 as a group start.
            body.extend([0x09, 1, 2, 3, 4, 5, 6, 7, 8, 0x13]);
            "fields of the wrong wire type"
        }
        4 => {
            body.extend([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
            "a varint that never ends"
        }
        5 => {
            body.extend([0x12, 0xff, 0xff, 0x03, b'a']);
            "a length beyond the end"
        }
        6 => {
            body = (0..g.n(1..64)).map(|_| g.rng.random::<u8>()).collect();
            "random bytes"
        }
        _ => {
            // Unknown fields are fine protobuf: the message must be handled as if they were not there.
            body.extend([0xf8, 0xff, 0x03, 0x01, 0xfa, 0xff, 0x03, 0x01, b'x']);
            "unknown fields"
        }
    };
    let s = format!("{method} with {how}: {}", shorten(&format!("{body:02x?}")));
    let rpc: &'static str = match method {
        m if m.starts_with("/csi.v1.Controller/") => "raw Controller",
        m if m.starts_with("/csi.v1.Node/") => "raw Node",
        m if m.starts_with("/csi.v1.Identity/") => "raw Identity",
        _ => "raw GroupController",
    };
    send(r, case, rpc, &s, raw_call(channel, method, body)).await;
}

// ---------------------------------------------------------------------------------------------
// Fixed cases: what earlier runs found, each with the code it must get now
// ---------------------------------------------------------------------------------------------

/// Records one fixed case: `want` None means OK.
fn expect<T>(
    r: &mut Report,
    what: &str,
    got: Result<tonic::Response<T>, tonic::Status>,
    want: Option<Code>,
) -> Option<T> {
    r.record(0, "fixed cases", what, &got);
    match (got, want) {
        (Ok(v), None) => Some(v.into_inner()),
        (Err(s), Some(c)) if s.code() == c => None,
        (got, want) => {
            let got = got
                .map(|_| "OK")
                .map_err(|s| format!("{:?}: {}", s.code(), shorten(s.message())));
            r.offenders.push(format!(
                "fixed case {what}: wanted {:?}, got {got:?}",
                want.unwrap_or(Code::Ok)
            ));
            None
        }
    }
}

async fn fixed_cases(w: &mut World, r: &mut Report, d: &Driver, channel: &Channel) {
    let (mut ctl, mut node) = (d.controller.clone(), d.node.clone());
    let Some(id) = made(r, w, d, create_req("pvc-fixed", 1, &[])).await else {
        return;
    };
    let Some(ctx) = expect(
        r,
        "ControllerPublish",
        ctl.controller_publish_volume(publish_req(&id, NODE)).await,
        None,
    ) else {
        return;
    };
    let ctx = ctx.publish_context;
    w.attached.insert((id.clone(), NODE.into()), ctx.clone());
    let stage = |path: &str, cap: VolumeCapability, context: &[(&str, &str)]| NodeStageVolumeRequest {
        volume_id: id.clone(),
        publish_context: ctx.clone(),
        staging_target_path: path.into(),
        volume_capability: Some(cap),
        volume_context: params(context),
        ..Default::default()
    };
    let staging = w.staging(&id);
    w.remember_given(&staging);
    w.staged.insert((id.clone(), staging.clone()));

    // On the blank volume, mkfs options mkfs refuses: out of mke2fs's range, too many inodes
    // for the device, blocks larger than a memory page, xfs blocks under 1 KiB, a filesystem
    // type no mkfs has (mkfs's failure was INTERNAL).
    for context in [
        &[("numberOfInodes", "4294967296")][..],
        &[("numberOfInodes", "4294967295")],
        &[("blockSize", "65536")],
        &[("csi.storage.k8s.io/fstype", "xfs"), ("blockSize", "512")],
        &[("csi.storage.k8s.io/fstype", "../x")],
    ] {
        let got = node
            .node_stage_volume(stage(&staging, mount_cap(Mode::SingleNodeWriter), context))
            .await;
        expect(
            r,
            &format!("NodeStage with volume context {context:?}"),
            got,
            Some(Code::InvalidArgument),
        );
    }
    // Mount flags the filesystem does not know: the kernel's EINVAL was INTERNAL
    // (after the mkfs cases: this one formats the volume before its mount fails).
    let mut odd_flag = rwo();
    if let Some(AccessType::Mount(m)) = &mut odd_flag.access_type {
        m.mount_flags = vec!["no_such_option".into()];
    }
    let got = node.node_stage_volume(stage(&staging, odd_flag, &[])).await;
    expect(
        r,
        "NodeStage with an unknown mount flag",
        got,
        Some(Code::InvalidArgument),
    );
    let got = node.node_stage_volume(stage(&staging, rwo(), &[])).await;
    expect(r, "NodeStage", got, None);
    // Detaching a volume still staged on its node: the kernel would only defer it, and the mount
    // would outlive the volume (was OK, then no unstage could ever prove the mount).
    let got = ctl.controller_unpublish_volume(unpublish_req(&id, NODE)).await;
    expect(
        r,
        "ControllerUnpublish of a staged volume",
        got,
        Some(Code::FailedPrecondition),
    );
    // Grown, then staged at a second path while mounted at the first: e2fsck refused the
    // mounted filesystem (INTERNAL); it grows through its mount instead.
    let grow = ControllerExpandVolumeRequest {
        volume_id: id.clone(),
        capacity_range: Some(CapacityRange {
            required_bytes: 2 * GIB,
            limit_bytes: 0,
        }),
        ..Default::default()
    };
    expect(r, "ControllerExpand", ctl.controller_expand_volume(grow).await, None);
    let second = format!("{}/second-staging", w.dir.display());
    w.remember_given(&second);
    w.staged.insert((id.clone(), second.clone()));
    let got = node.node_stage_volume(stage(&second, rwo(), &[])).await;
    expect(r, "NodeStage at a second path of a grown, mounted volume", got, None);
    let got = node
        .node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: id.clone(),
            staging_target_path: second.clone(),
        })
        .await;
    expect(r, "NodeUnstage of the second path", got, None);

    // xfs: a read-only publication grown through the staging mount (xfs_growfs on the
    // read-only bind was EROFS, INTERNAL); then staged again at a path with a newline, which
    // xfs_info (a shell script) could not look up (INTERNAL, and the mount was left behind).
    let mut xfs = create_req("pvc-fixed-xfs", 1, &[]);
    xfs.volume_capabilities = vec![mount_cap_fs(Mode::SingleNodeWriter, "xfs")];
    let Some(x) = made(r, w, d, xfs).await else { return };
    let Some(xctx) = expect(
        r,
        "ControllerPublish xfs",
        ctl.controller_publish_volume(publish_req(&x, NODE)).await,
        None,
    ) else {
        return;
    };
    let xctx = xctx.publish_context;
    w.attached.insert((x.clone(), NODE.into()), xctx.clone());
    let xstaging = w.staging(&x);
    let target = format!(
        "{}/kubelet/pods/fixed/volumes/kubernetes.io~csi/pvc-fixed-xfs/mount",
        w.dir.display()
    );
    let newline = format!("{}/new\nline-xfs", w.dir.display());
    for p in [&xstaging, &target, &newline] {
        w.remember_given(p);
    }
    w.staged.insert((x.clone(), xstaging.clone()));
    w.staged.insert((x.clone(), newline.clone()));
    w.published.insert((x.clone(), target.clone()));
    let xstage = |path: &str| NodeStageVolumeRequest {
        volume_id: x.clone(),
        publish_context: xctx.clone(),
        staging_target_path: path.into(),
        volume_capability: Some(mount_cap_fs(Mode::SingleNodeWriter, "xfs")),
        ..Default::default()
    };
    expect(
        r,
        "NodeStage xfs",
        node.node_stage_volume(xstage(&xstaging)).await,
        None,
    );
    let publish = NodePublishVolumeRequest {
        volume_id: x.clone(),
        publish_context: xctx.clone(),
        staging_target_path: xstaging.clone(),
        target_path: target.clone(),
        volume_capability: Some(mount_cap_fs(Mode::SingleNodeWriter, "xfs")),
        readonly: true,
        ..Default::default()
    };
    expect(
        r,
        "NodePublish xfs read-only",
        node.node_publish_volume(publish).await,
        None,
    );
    let grow = ControllerExpandVolumeRequest {
        volume_id: x.clone(),
        capacity_range: Some(CapacityRange {
            required_bytes: 2 * GIB,
            limit_bytes: 0,
        }),
        ..Default::default()
    };
    expect(
        r,
        "ControllerExpand xfs",
        ctl.controller_expand_volume(grow).await,
        None,
    );
    let expand = NodeExpandVolumeRequest {
        volume_id: x.clone(),
        volume_path: target.clone(),
        capacity_range: Some(CapacityRange {
            required_bytes: 2 * GIB,
            limit_bytes: 0,
        }),
        ..Default::default()
    };
    expect(
        r,
        "NodeExpand through a read-only publication",
        node.node_expand_volume(expand).await,
        None,
    );
    let got = node
        .node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: x.clone(),
            target_path: target.clone(),
        })
        .await;
    expect(r, "NodeUnpublish xfs", got, None);
    let got = node
        .node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: x.clone(),
            staging_target_path: xstaging.clone(),
        })
        .await;
    expect(r, "NodeUnstage xfs", got, None);
    // Grown while unstaged, so staging must measure the filesystem at the new path.
    let grow = ControllerExpandVolumeRequest {
        volume_id: x.clone(),
        capacity_range: Some(CapacityRange {
            required_bytes: 3 * GIB,
            limit_bytes: 0,
        }),
        ..Default::default()
    };
    expect(
        r,
        "ControllerExpand xfs while unstaged",
        ctl.controller_expand_volume(grow).await,
        None,
    );
    let got = node.node_stage_volume(xstage(&newline)).await;
    expect(r, "NodeStage xfs at a path with a newline", got, None);

    // An error quoting a 20,000-byte id: the status's trailer outgrew the client's limit, and
    // the client saw INTERNAL (RESOURCE_EXHAUSTED from 64 KiB) instead of NOT_FOUND.
    let got = ctl
        .controller_get_volume(ControllerGetVolumeRequest {
            volume_id: "v".repeat(20_000),
        })
        .await;
    expect(r, "ControllerGetVolume of a 20,000-byte id", got, Some(Code::NotFound));

    // Bytes that are not protobuf: tonic-prost's INTERNAL.
    let got = raw_call(channel, "/csi.v1.Controller/DeleteVolume", vec![0x0a, 0x02, 0xff, 0xfe]).await;
    expect(
        r,
        "DeleteVolume whose volume_id is not UTF-8",
        got,
        Some(Code::InvalidArgument),
    );
    let got = raw_call(channel, "/csi.v1.Identity/Probe", vec![0x0b]).await;
    expect(r, "Probe with a dangling group", got, Some(Code::InvalidArgument));
}

/// CreateVolume for a fixed case; the volume joins the run's, for the teardown.
async fn made(r: &mut Report, w: &mut World, d: &Driver, req: CreateVolumeRequest) -> Option<String> {
    let name = req.name.clone();
    let got = d.controller.clone().create_volume(req).await;
    let v = expect(r, &format!("CreateVolume {name}"), got, None)?.volume?;
    w.volumes.push(Vol {
        id: v.volume_id.clone(),
        gib: 1,
    });
    Some(v.volume_id)
}

fn mount_cap_fs(mode: Mode, fs: &str) -> VolumeCapability {
    let mut cap = mount_cap(mode);
    if let Some(AccessType::Mount(m)) = &mut cap.access_type {
        m.fs_type = fs.into();
    }
    cap
}

// ---------------------------------------------------------------------------------------------
// Teardown through the API, then the host checked
// ---------------------------------------------------------------------------------------------

async fn teardown(w: &mut World, r: &mut Report, d: &Driver) {
    let (mut ctl, mut node) = (d.controller.clone(), d.node.clone());
    // Everything the API knows, including what broken-byte requests may have made.
    let listed = ctl
        .list_volumes(ListVolumesRequest::default())
        .await
        .expect("ListVolumes")
        .into_inner();
    for e in listed.entries {
        let v = e.volume.expect("volume");
        if !w.volumes.iter().any(|x| x.id == v.volume_id) {
            w.volumes.push(Vol {
                id: v.volume_id,
                gib: u64::try_from(v.capacity_bytes / GIB).unwrap_or(0),
            });
        }
    }
    let snaps = ctl
        .list_snapshots(ListSnapshotsRequest::default())
        .await
        .expect("ListSnapshots")
        .into_inner();
    for e in snaps.entries {
        let id = e.snapshot.expect("snapshot").snapshot_id;
        if !w.snapshots.contains(&id) {
            w.snapshots.push(id);
        }
    }

    let ok = |r: &mut Report, what: String, result: Result<(), tonic::Status>, fine: &[Code]| {
        if let Err(s) = result
            && !fine.contains(&s.code())
        {
            r.offenders
                .push(format!("teardown: {what} → {:?}: {}", s.code(), shorten(s.message())));
        }
    };
    // A mount hidden under a later one on a parent directory comes free only once that one is
    // gone: a few passes, and only the last one's failures count.
    for pass in 0..4 {
        let last = pass == 3;
        let mut failed = false;
        for (v, t) in w.published.clone() {
            let res = node
                .node_unpublish_volume(NodeUnpublishVolumeRequest {
                    volume_id: v.clone(),
                    target_path: t.clone(),
                })
                .await
                .map(drop);
            failed |= matches!(&res, Err(s) if s.code() == Code::FailedPrecondition);
            if last {
                ok(
                    r,
                    format!("NodeUnpublish {v} {t}"),
                    res,
                    &[Code::NotFound, Code::InvalidArgument],
                );
            }
        }
        for (v, t) in w.staged.clone() {
            let res = node
                .node_unstage_volume(NodeUnstageVolumeRequest {
                    volume_id: v.clone(),
                    staging_target_path: t.clone(),
                })
                .await
                .map(drop);
            failed |= matches!(&res, Err(s) if s.code() == Code::FailedPrecondition);
            if last {
                ok(
                    r,
                    format!("NodeUnstage {v} {t}"),
                    res,
                    &[Code::NotFound, Code::InvalidArgument],
                );
            }
        }
        if !failed {
            break;
        }
    }
    let left = mounts_under(&w.dir);
    if !left.is_empty() {
        r.offenders.push(format!(
            "teardown: mounts left under the temp dir after unpublishing and unstaging everything through the API: {}",
            describe_mounts(&left)
        ));
    }
    for v in w.volumes.clone() {
        let res = ctl
            .controller_unpublish_volume(unpublish_req(&v.id, ""))
            .await
            .map(drop);
        ok(r, format!("ControllerUnpublish {}", v.id), res, &[]);
    }
    for s in w.snapshots.clone() {
        let res = ctl
            .delete_snapshot(DeleteSnapshotRequest {
                snapshot_id: s.clone(),
                ..Default::default()
            })
            .await
            .map(drop);
        ok(r, format!("DeleteSnapshot {s}"), res, &[]);
    }
    for v in w.volumes.clone() {
        let res = ctl
            .delete_volume(DeleteVolumeRequest {
                volume_id: v.id.clone(),
                ..Default::default()
            })
            .await
            .map(drop);
        ok(r, format!("DeleteVolume {}", v.id), res, &[]);
    }
    w.volumes.clear();
    w.snapshots.clear();
    w.attached.clear();
    w.staged.clear();
    w.published.clear();
}

/// After the teardown: nothing of the run is left on the host or in the store.
async fn nothing_left(w: &World, r: &mut Report, d: &Driver, phase: &str) {
    let mounts = mounts_under(&w.dir);
    if !mounts.is_empty() {
        r.offenders.push(format!(
            "{phase}: mounts left under the temp dir: {}",
            describe_mounts(&mounts)
        ));
    }
    let loops = d.loop_devices();
    if !loops.is_empty() {
        r.offenders
            .push(format!("{phase}: loop devices left on the driver's images: {loops:?}"));
    }
    for sub in ["volumes", "snapshots"] {
        let files: Vec<String> = std::fs::read_dir(d.data_dir().join(sub))
            .map(|e| {
                e.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        if !files.is_empty() {
            r.offenders
                .push(format!("{phase}: files left in data/{sub}: {files:?}"));
        }
    }
    let mut ctl = d.controller.clone();
    let vols = ctl
        .list_volumes(ListVolumesRequest::default())
        .await
        .map(|r| r.into_inner().entries.len());
    let snaps = ctl
        .list_snapshots(ListSnapshotsRequest::default())
        .await
        .map(|r| r.into_inner().entries.len());
    if !matches!((&vols, &snaps), (Ok(0), Ok(0))) {
        r.offenders.push(format!(
            "{phase}: ListVolumes/ListSnapshots after the teardown: {vols:?} volumes, {snaps:?} snapshots"
        ));
    }
    check_mounts(w, r, usize::MAX, phase);
}

async fn probe(d: &Driver, r: &mut Report, when: &str) -> bool {
    let mut ident = d.identity.clone();
    match tokio::time::timeout(Duration::from_secs(10), ident.probe(ProbeRequest {})).await {
        Ok(Ok(resp)) if resp.get_ref().ready != Some(false) => true,
        other => {
            r.offenders
                .push(format!("{when}: Probe did not answer ready: {other:?}"));
            false
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Concurrent duplicates
// ---------------------------------------------------------------------------------------------

/// Runs `n` copies of one call at once; every answer must be OK or one of `fine`. Returns the
/// successful answers.
async fn at_once<T, F, Fut>(r: &mut Report, what: &'static str, n: usize, fine: &[Code], call: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        set.spawn(tokio::time::timeout(CALL_TIMEOUT, call(i)));
    }
    let mut oks = Vec::new();
    while let Some(joined) = set.join_next().await {
        let result = match joined.expect("task") {
            Ok(r) => r.map(tonic::Response::into_inner),
            Err(_) => Err(tonic::Status::unknown(format!("no answer within {CALL_TIMEOUT:?}"))),
        };
        r.record(usize::MAX, what, "(concurrent duplicate)", &result);
        match result {
            Ok(v) => oks.push(v),
            Err(s) if fine.contains(&s.code()) => {}
            Err(s) => r.offenders.push(format!(
                "concurrent {what}: {:?} is not OK nor one of {fine:?}: {}",
                s.code(),
                s.message()
            )),
        }
    }
    oks
}

/// As `at_once`, then the same call once more until it succeeds (the sidecars retry ABORTED).
async fn at_once_then<T, F, Fut>(r: &mut Report, what: &'static str, n: usize, call: F) -> Option<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>> + Send + 'static,
{
    let mut oks = at_once(r, what, n, &[Code::Aborted], &call).await;
    for _ in 0..50 {
        if let Some(v) = oks.pop() {
            return Some(v);
        }
        match call(0).await {
            Ok(v) => return Some(v.into_inner()),
            Err(s) if s.code() == Code::Aborted => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(s) => {
                r.offenders.push(format!("{what} retried after the duplicates: {s:?}"));
                return None;
            }
        }
    }
    r.offenders.push(format!("{what}: still ABORTED after 50 retries"));
    None
}

fn count_mounts_at(path: &str) -> usize {
    mount_table().get(&normalize(path)).copied().unwrap_or(0)
}

async fn concurrent_duplicates(w: &mut World, r: &mut Report, d: &Driver) {
    const N: usize = 8;
    let ctl = d.controller.clone();
    let node = d.node.clone();
    let count_volumes = || {
        let mut c = ctl.clone();
        async move {
            c.list_volumes(ListVolumesRequest::default())
                .await
                .map(|r| r.into_inner().entries.len())
                .unwrap_or(usize::MAX)
        }
    };
    let before = count_volumes().await;

    // The same CreateVolume eight times at once: one volume, every success the same one.
    let req = create_req("pvc-dup", 1, &[("type", "gp3")]);
    let made = at_once(r, "CreateVolume (dup)", N, &[Code::Aborted], |_| {
        let (mut c, req) = (ctl.clone(), req.clone());
        async move { c.create_volume(req).await }
    })
    .await;
    let again = ctl.clone().create_volume(req.clone()).await;
    let id = match again {
        Ok(v) => v.into_inner().volume.expect("volume").volume_id,
        Err(e) => {
            r.offenders.push(format!("CreateVolume after the duplicates: {e:?}"));
            return;
        }
    };
    for m in &made {
        let got = &m.volume.as_ref().expect("volume").volume_id;
        if *got != id {
            r.offenders
                .push(format!("concurrent CreateVolume answered two volumes: {got} and {id}"));
        }
    }
    // Same name, different sizes: one volume still.
    let conflicting = at_once(
        r,
        "CreateVolume (dup, other args)",
        N,
        &[Code::Aborted, Code::AlreadyExists],
        |i| {
            let mut c = ctl.clone();
            let req = create_req("pvc-dup-2", 1 + (i as i64 % 2), &[("type", "gp3")]);
            async move { c.create_volume(req).await }
        },
    )
    .await;
    let after = count_volumes().await;
    let expected = before + 1 + usize::from(!conflicting.is_empty());
    if after != expected {
        r.offenders.push(format!(
            "concurrent CreateVolume of two names made {} volumes, expected {}",
            after.saturating_sub(before),
            expected - before
        ));
    }
    let conflict_id = conflicting
        .first()
        .map(|v| v.volume.as_ref().expect("volume").volume_id.clone());
    w.volumes.push(Vol { id: id.clone(), gib: 1 });
    if let Some(c) = &conflict_id {
        w.volumes.push(Vol { id: c.clone(), gib: 2 });
    }

    // Attach eight times at once: one loop device.
    let Some(published) = at_once_then(r, "ControllerPublishVolume (dup)", N, |_| {
        let (mut c, id) = (ctl.clone(), id.clone());
        async move { c.controller_publish_volume(publish_req(&id, NODE)).await }
    })
    .await
    else {
        return;
    };
    w.attached
        .insert((id.clone(), NODE.into()), published.publish_context.clone());
    let image = d.volume_file(&id);
    let loops = d.loop_devices().into_iter().filter(|(_, b)| *b == image).count();
    if loops != 1 {
        r.offenders.push(format!(
            "concurrent ControllerPublish: {loops} loop devices on {id}'s image"
        ));
    }

    // Stage eight times at once: one mount.
    let staging = w.staging(&id);
    w.remember_given(&staging);
    w.staged.insert((id.clone(), staging.clone()));
    let stage = NodeStageVolumeRequest {
        volume_id: id.clone(),
        publish_context: published.publish_context.clone(),
        staging_target_path: staging.clone(),
        volume_capability: Some(rwo()),
        ..Default::default()
    };
    at_once_then(r, "NodeStageVolume (dup)", N, |_| {
        let (mut c, req) = (node.clone(), stage.clone());
        async move { c.node_stage_volume(req).await }
    })
    .await;
    w.remember_given(&staging);
    if count_mounts_at(&staging) != 1 {
        r.offenders.push(format!(
            "concurrent NodeStage: {} mounts at {staging}",
            count_mounts_at(&staging)
        ));
    }

    // Publish at one target eight times at once, and at four targets at once.
    let target = w.dir.join("kubelet/pods/dup/volumes/kubernetes.io~csi/pvc-dup/mount");
    let target = target.display().to_string();
    let targets: Vec<String> = (0..4)
        .map(|i| {
            w.dir
                .join(format!("kubelet/pods/dup-{i}/volumes/kubernetes.io~csi/pvc-dup/mount"))
                .display()
                .to_string()
        })
        .collect();
    for t in targets.iter().chain([&target]) {
        w.remember_given(t);
        w.published.insert((id.clone(), t.clone()));
    }
    let publish = |t: &str| NodePublishVolumeRequest {
        volume_id: id.clone(),
        publish_context: published.publish_context.clone(),
        staging_target_path: staging.clone(),
        target_path: t.to_owned(),
        volume_capability: Some(mount_cap(Mode::SingleNodeMultiWriter)),
        ..Default::default()
    };
    let one = publish(&target);
    at_once_then(r, "NodePublishVolume (dup)", N, |_| {
        let (mut c, req) = (node.clone(), one.clone());
        async move { c.node_publish_volume(req).await }
    })
    .await;
    let many: Vec<NodePublishVolumeRequest> = targets.iter().map(|t| publish(t)).collect();
    at_once(r, "NodePublishVolume (targets)", many.len(), &[Code::Aborted], |i| {
        let (mut c, req) = (node.clone(), many[i].clone());
        async move { c.node_publish_volume(req).await }
    })
    .await;
    for t in targets.iter().chain([&target]) {
        w.remember_given(t);
    }
    if count_mounts_at(&target) != 1 {
        r.offenders.push(format!(
            "concurrent NodePublish: {} mounts at {target}",
            count_mounts_at(&target)
        ));
    }
    check_mounts(w, r, usize::MAX, "concurrent publishes");

    // Snapshot eight times at once: one snapshot.
    let snap = CreateSnapshotRequest {
        source_volume_id: id.clone(),
        name: "snap-dup".into(),
        ..Default::default()
    };
    let snaps = at_once(r, "CreateSnapshot (dup)", N, &[Code::Aborted], |_| {
        let (mut c, req) = (ctl.clone(), snap.clone());
        async move { c.create_snapshot(req).await }
    })
    .await;
    let snap_ids: BTreeSet<String> = snaps
        .into_iter()
        .filter_map(|s| s.snapshot.map(|s| s.snapshot_id))
        .collect();
    if snap_ids.len() > 1 {
        r.offenders.push(format!(
            "concurrent CreateSnapshot made several snapshots: {snap_ids:?}"
        ));
    }
    w.snapshots.extend(snap_ids);

    // Races between different calls on one volume: none may end INTERNAL.
    race_different_calls(w, r, d, &id).await;

    // The teardown, eight at a time.
    for t in targets.iter().chain([&target]) {
        let t = t.clone();
        at_once_then(r, "NodeUnpublishVolume (dup)", N, |_| {
            let (mut c, id, t) = (node.clone(), id.clone(), t.clone());
            async move {
                c.node_unpublish_volume(NodeUnpublishVolumeRequest {
                    volume_id: id,
                    target_path: t,
                })
                .await
            }
        })
        .await;
    }
    at_once_then(r, "NodeUnstageVolume (dup)", N, |_| {
        let (mut c, id, s) = (node.clone(), id.clone(), staging.clone());
        async move {
            c.node_unstage_volume(NodeUnstageVolumeRequest {
                volume_id: id,
                staging_target_path: s,
            })
            .await
        }
    })
    .await;
    at_once_then(r, "ControllerUnpublishVolume (dup)", N, |_| {
        let (mut c, id) = (ctl.clone(), id.clone());
        async move { c.controller_unpublish_volume(unpublish_req(&id, NODE)).await }
    })
    .await;
    w.attached.clear();
    for s in w.snapshots.clone() {
        at_once_then(r, "DeleteSnapshot (dup)", N, |_| {
            let (mut c, s) = (ctl.clone(), s.clone());
            async move {
                c.delete_snapshot(DeleteSnapshotRequest {
                    snapshot_id: s,
                    ..Default::default()
                })
                .await
            }
        })
        .await;
    }
    w.snapshots.clear();
    for v in w.volumes.clone() {
        at_once_then(r, "DeleteVolume (dup)", N, |_| {
            let (mut c, id) = (ctl.clone(), v.id.clone());
            async move {
                c.delete_volume(DeleteVolumeRequest {
                    volume_id: id,
                    ..Default::default()
                })
                .await
            }
        })
        .await;
    }
    w.volumes.clear();
    w.staged.clear();
    w.published.clear();
}

/// One of the racing calls: its name, and the id it made (if it makes one).
type Racer = std::pin::Pin<Box<dyn Future<Output = (&'static str, Result<String, tonic::Status>)> + Send>>;

/// Different calls racing on one volume and its name: create vs delete, snapshot vs delete, clone
/// vs delete, expand vs modify. Each may fail with the code its state deserves, never INTERNAL.
async fn race_different_calls(w: &mut World, r: &mut Report, d: &Driver, attached: &str) {
    let ctl = d.controller.clone();
    let fine = [
        Code::Aborted,
        Code::NotFound,
        Code::FailedPrecondition,
        Code::AlreadyExists,
    ];
    for round in 0..6 {
        let name = format!("pvc-race-{round}");
        let Ok(v) = ctl.clone().create_volume(create_req(&name, 1, &[])).await else {
            r.offenders
                .push(format!("race round {round}: the volume could not be made"));
            continue;
        };
        let id = v.into_inner().volume.expect("volume").volume_id;
        let snap_name = format!("snap-race-{round}");
        let mut set = tokio::task::JoinSet::new();
        let calls: Vec<Racer> = vec![
            {
                let (mut c, id) = (ctl.clone(), id.clone());
                Box::pin(async move {
                    let r = c
                        .delete_volume(DeleteVolumeRequest {
                            volume_id: id,
                            ..Default::default()
                        })
                        .await;
                    ("DeleteVolume (race)", r.map(|_| String::new()))
                })
            },
            {
                let (mut c, name) = (ctl.clone(), name.clone());
                Box::pin(async move {
                    let r = c.create_volume(create_req(&name, 1, &[])).await;
                    (
                        "CreateVolume (race)",
                        r.map(|v| v.into_inner().volume.map(|v| v.volume_id).unwrap_or_default()),
                    )
                })
            },
            {
                let (mut c, id) = (ctl.clone(), id.clone());
                Box::pin(async move {
                    let r = c
                        .create_snapshot(CreateSnapshotRequest {
                            source_volume_id: id,
                            name: snap_name,
                            ..Default::default()
                        })
                        .await;
                    (
                        "CreateSnapshot (race)",
                        r.map(|s| s.into_inner().snapshot.map(|s| s.snapshot_id).unwrap_or_default()),
                    )
                })
            },
            {
                let (mut c, id) = (ctl.clone(), id.clone());
                Box::pin(async move {
                    let mut req = create_req(&format!("pvc-race-clone-{round}"), 1, &[]);
                    req.volume_content_source = Some(from_volume(&id));
                    let r = c.create_volume(req).await;
                    (
                        "CreateVolume clone (race)",
                        r.map(|v| v.into_inner().volume.map(|v| v.volume_id).unwrap_or_default()),
                    )
                })
            },
            {
                let (mut c, id) = (ctl.clone(), id.clone());
                Box::pin(async move {
                    let r = c
                        .controller_expand_volume(ControllerExpandVolumeRequest {
                            volume_id: id,
                            capacity_range: Some(CapacityRange {
                                required_bytes: 2 * GIB,
                                limit_bytes: 0,
                            }),
                            ..Default::default()
                        })
                        .await;
                    ("ControllerExpandVolume (race)", r.map(|_| String::new()))
                })
            },
            {
                let (mut c, id) = (ctl.clone(), id.clone());
                Box::pin(async move {
                    let r = c
                        .controller_modify_volume(ControllerModifyVolumeRequest {
                            volume_id: id,
                            mutable_parameters: HashMap::from([("iops".into(), "4000".into())]),
                            ..Default::default()
                        })
                        .await;
                    ("ControllerModifyVolume (race)", r.map(|_| String::new()))
                })
            },
            {
                let (mut c, id) = (ctl.clone(), id.clone());
                Box::pin(async move {
                    let r = c.controller_publish_volume(publish_req(&id, NODE)).await;
                    ("ControllerPublishVolume (race)", r.map(|_| String::new()))
                })
            },
            {
                let (mut c, a) = (ctl.clone(), attached.to_owned());
                Box::pin(async move {
                    let mut req = create_req(&format!("pvc-race-clone-attached-{round}"), 1, &[]);
                    req.volume_content_source = Some(from_volume(&a));
                    let r = c.create_volume(req).await;
                    (
                        "CreateVolume clone of an attached volume (race)",
                        r.map(|v| v.into_inner().volume.map(|v| v.volume_id).unwrap_or_default()),
                    )
                })
            },
        ];
        for call in calls {
            set.spawn(tokio::time::timeout(CALL_TIMEOUT, call));
        }
        while let Some(joined) = set.join_next().await {
            let (what, result) = match joined.expect("task") {
                Ok(v) => v,
                Err(_) => (
                    "a racing call",
                    Err(tonic::Status::unknown(format!("no answer within {CALL_TIMEOUT:?}"))),
                ),
            };
            r.record(usize::MAX, what, &format!("(race round {round})"), &result);
            match result {
                Ok(made) if made.starts_with("vol-") => {
                    if !w.volumes.iter().any(|v| v.id == made) {
                        w.volumes.push(Vol { id: made, gib: 1 });
                    }
                }
                Ok(made) if made.starts_with("snap-") => w.snapshots.push(made),
                Ok(_) => {}
                Err(s) if fine.contains(&s.code()) => {}
                Err(s) if matches!(s.code(), Code::Internal | Code::Unknown) => {}
                Err(s) => r
                    .offenders
                    .push(format!("race round {round}: {what} → {:?}: {}", s.code(), s.message())),
            }
        }
        // Whatever survived is torn down (after the other volumes' teardown, by the caller).
        if !w.volumes.iter().any(|v| v.id == id) {
            w.volumes.push(Vol { id: id.clone(), gib: 1 });
        }
        let _ = ctl.clone().controller_unpublish_volume(unpublish_req(&id, "")).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

fn env_number(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

#[tokio::test]
async fn random_requests_get_specific_codes_and_leave_nothing() {
    let seed = env_number("EBS_CSI_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let cases = env_number("EBS_CSI_FUZZ_CASES").map_or(DEFAULT_CASES, |n| n as usize);
    println!("random requests: seed {seed:#x} (EBS_CSI_FUZZ_SEED), {cases} cases (EBS_CSI_FUZZ_CASES)");
    let started = Instant::now();

    let outside_before: BTreeMap<PathBuf, usize> = mount_table().into_iter().filter(|(p, _)| !foreign(p)).collect();
    let d = Driver::start(&[]).await;
    d.register_node(NODE2, ZONE2, None).await;
    let dir = d.dir.path().to_path_buf();
    let channel = ebs_csi::client::connect(&d.endpoint()).await.expect("a second channel");

    // Odd places under the temp dir: a file where a directory must be, a directory with someone
    // else's file, names with spaces, newlines and non-ASCII, a link to another place inside,
    // paths with `..`, `//` and an overlong component.
    std::fs::write(dir.join("notadir"), "keep").unwrap();
    std::fs::create_dir_all(dir.join("precious")).unwrap();
    std::fs::write(dir.join("precious/file"), "keep").unwrap();
    std::fs::create_dir_all(dir.join("linked-to")).unwrap();
    std::os::unix::fs::symlink(dir.join("linked-to"), dir.join("link")).unwrap();
    let at = |p: &str| format!("{}/{p}", dir.display());
    let odd_paths = vec![
        at("notadir"),
        at("notadir/x"),
        at("precious"),
        at("precious/file"),
        at("odd dir/with space"),
        at("new\nline"),
        at("ünï/cödé 😀"),
        at("link"),
        at("a/../b"),
        at("kubelet//pods/./x/"),
        at(&"y".repeat(300)),
        at("back\\slash"),
        format!("{}/", dir.display()),
    ];
    let mut mount_targets = Vec::new();
    let mut block_targets = Vec::new();
    for pod in 0..3 {
        for pv in 0..3 {
            mount_targets.push(d.target_path(&format!("pod-{pod}"), &format!("pv-{pv}"), false));
            block_targets.push(d.target_path(&format!("pod-{pod}"), &format!("pv-{pv}"), true));
        }
    }
    let mut w = World {
        dir: dir.clone(),
        volumes: Vec::new(),
        gone: Vec::new(),
        snapshots: Vec::new(),
        attached: Ordered::default(),
        staged: OrderedSet::default(),
        published: OrderedSet::default(),
        given: BTreeSet::new(),
        mount_targets,
        block_targets,
        odd_paths,
        outside_before,
    };
    let mut g = Gen {
        rng: StdRng::seed_from_u64(seed),
    };
    let mut r = Report::default();
    let cx = Ctx { d: &d, channel };

    // Fixed cases first: a message over the server's 4 MiB limit, and a request with every
    // field at once empty.
    let huge = CreateVolumeRequest {
        name: "h".repeat(5 << 20),
        ..Default::default()
    };
    send(
        &mut r,
        0,
        "CreateVolume",
        "(a 5 MiB name)",
        d.controller.clone().create_volume(huge),
    )
    .await;

    fixed_cases(&mut w, &mut r, &d, &cx.channel).await;
    check_mounts(&w, &mut r, 0, "the fixed cases");

    let mut alive = true;
    for case in 1..=cases {
        let timeouts = r.timeouts;
        let rpc = one_case(case, &mut g, &mut w, &mut r, &cx).await;
        if r.timeouts > timeouts && !probe(&d, &mut r, &format!("after case {case} timed out")).await {
            alive = false;
            break;
        }
        if matches!(
            rpc,
            Rpc::NodeStage | Rpc::NodeUnstage | Rpc::NodePublish | Rpc::NodeUnpublish | Rpc::NodeExpand
        ) {
            check_mounts(&w, &mut r, case, &format!("{rpc:?}"));
        }
        if case % 250 == 0 && !probe(&d, &mut r, &format!("after case {case}")).await {
            alive = false;
            break;
        }
    }
    let random_phase = started.elapsed();
    if alive {
        alive = probe(&d, &mut r, "after the random requests").await;
    }
    if alive {
        teardown(&mut w, &mut r, &d).await;
        nothing_left(&w, &mut r, &d, "after the random requests' teardown").await;
        concurrent_duplicates(&mut w, &mut r, &d).await;
        teardown(&mut w, &mut r, &d).await;
        nothing_left(&w, &mut r, &d, "after the concurrent duplicates").await;
        probe(&d, &mut r, "at the end").await;
    }
    // The decoys under the temp dir are as they were.
    for f in ["notadir", "precious/file"] {
        if std::fs::read_to_string(dir.join(f)).ok().as_deref() != Some("keep") {
            r.offenders
                .push(format!("{f} under the temp dir was changed or removed"));
        }
    }
    let log = std::fs::read_to_string(dir.join("driver.log")).unwrap_or_default();
    for line in log.lines().filter(|l| l.contains("panicked")) {
        r.offenders.push(format!("the driver panicked: {line}"));
    }

    println!(
        "random requests: {cases} cases in {:.1?} (random phase {:.1?}), seed {seed:#x}",
        started.elapsed(),
        random_phase
    );
    let mut totals: BTreeMap<&str, usize> = BTreeMap::new();
    for (rpc, codes) in &r.counts {
        let line: Vec<String> = codes.iter().map(|(c, n)| format!("{c} {n}")).collect();
        println!("  {rpc:<48} {}", line.join(", "));
        for (c, n) in codes {
            *totals.entry(c.as_str()).or_default() += n;
        }
    }
    println!("  {:<48} {totals:?}", "all");
    if !r.offenders.is_empty() {
        for o in &r.offenders {
            println!("OFFENDER {o}");
        }
        panic!(
            "{} offenders (seed {seed:#x}); every one is printed above",
            r.offenders.len()
        );
    }
}
