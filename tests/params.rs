//! The parameter language (`ebs_csi::params`) and the EBS rules it checks against
//! (`ebs_csi::ebs`): limits, sizes, IOPS and throughput fitting, mkfs options, tags.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use ebs_csi::ebs::*;
use ebs_csi::error::{Error, Result};
use ebs_csi::params::*;

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn create(pairs: &[(&str, &str)]) -> Result<CreateParams> {
    parse_create_params(&map(pairs))
}

fn modify(pairs: &[(&str, &str)]) -> Result<ModifyParams> {
    parse_modify_params(&map(pairs))
}

fn invalid(r: Result<impl fmt::Debug>) -> String {
    match r {
        Err(Error::InvalidArgument(m)) => m,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

fn out_of_range(r: Result<impl fmt::Debug>) -> String {
    match r {
        Err(Error::OutOfRange(m)) => m,
        other => panic!("expected OutOfRange, got {other:?}"),
    }
}

fn perf(iops: Option<u32>, throughput: Option<u32>) -> Performance {
    Performance { iops, throughput }
}

// ---- types and table ----

#[test]
fn table_rows_match_their_types() {
    for t in VolumeType::ALL {
        assert_eq!(limits(t).volume_type, t);
        assert!(limits(t).min_gib <= limits(t).max_gib);
    }
}

#[test]
fn current_ebs_limits() {
    let gp3 = limits(VolumeType::Gp3);
    assert_eq!((gp3.max_gib, gp3.max_iops, gp3.max_throughput), (65_536, 80_000, 2_000));
    assert_eq!(
        (gp3.max_iops_per_gib, gp3.default_iops, gp3.default_throughput),
        (500, Some(3000), Some(125))
    );
    let io2 = limits(VolumeType::Io2);
    assert_eq!(
        (io2.min_gib, io2.max_gib, io2.max_iops, io2.max_iops_per_gib),
        (4, 65_536, 256_000, 1000)
    );
    let io1 = limits(VolumeType::Io1);
    assert_eq!((io1.max_gib, io1.max_iops, io1.max_iops_per_gib), (16_384, 64_000, 50));
}

#[test]
fn volume_type_parsing_and_serde() {
    for t in VolumeType::ALL {
        assert_eq!(t.as_str().parse::<VolumeType>().unwrap(), t);
        assert_eq!(t.as_str().to_uppercase().parse::<VolumeType>().unwrap(), t);
        assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{t}\""));
        assert_eq!(serde_json::from_str::<VolumeType>(&format!("\"{t}\"")).unwrap(), t);
    }
    let msg = invalid("gp9".parse::<VolumeType>());
    assert!(msg.contains("\"gp9\"") && msg.contains("gp3"), "{msg}");
    assert!(invalid("sbp1".parse::<VolumeType>()).contains("Snow"));
    assert!("".parse::<VolumeType>().is_err());
}

#[test]
fn fs_type_is_case_sensitive() {
    for fs in FsType::ALL {
        assert_eq!(fs.as_str().parse::<FsType>().unwrap(), fs);
        assert_eq!(serde_json::to_string(&fs).unwrap(), format!("\"{fs}\""));
    }
    for bad in ["EXT4", "Xfs", "ntfs", "ext4 ", "btrfs"] {
        invalid(bad.parse::<FsType>());
    }
    assert_eq!(
        create(&[("csi.storage.k8s.io/fstype", "xfs")]).unwrap().fs_type,
        Some(FsType::Xfs)
    );
    let msg = invalid(create(&[("csi.storage.k8s.io/fstype", "XFS")]));
    assert!(
        msg.contains("csi.storage.k8s.io/fstype") && msg.contains("\"XFS\""),
        "{msg}"
    );
    assert_eq!(create(&[("csi.storage.k8s.io/fstype", "")]).unwrap().fs_type, None);
}

// ---- sizes ----

#[test]
fn size_limits_per_type_just_inside_and_outside() {
    for t in VolumeType::ALL {
        let l = limits(t);
        let bytes = |gib: u64| i64::try_from(gib * GIB).unwrap();
        assert_eq!(size_gib(bytes(l.min_gib), 0, t).unwrap(), l.min_gib, "{t}");
        assert_eq!(size_gib(bytes(l.max_gib), 0, t).unwrap(), l.max_gib, "{t}");
        let msg = out_of_range(size_gib(bytes(l.max_gib + 1), 0, t));
        assert!(
            msg.contains(&format!("{}–{} GiB", l.min_gib, l.max_gib)) && msg.contains(t.as_str()),
            "{msg}"
        );
        if l.min_gib > 1 {
            out_of_range(size_gib(bytes(l.min_gib - 1), 0, t));
        }
    }
    assert_eq!(
        out_of_range(size_gib(20_000 * GIB as i64, 0, VolumeType::Sc1)),
        "size 20000 GiB is outside 125–16384 GiB for type \"sc1\""
    );
}

#[test]
fn size_rounding_defaults_and_limits() {
    let gp3 = VolumeType::Gp3;
    assert_eq!(size_gib(1, 0, gp3).unwrap(), 1);
    assert_eq!(size_gib(GIB as i64 + 1, 0, gp3).unwrap(), 2);
    assert_eq!(size_gib(0, 0, gp3).unwrap(), 100);
    assert_eq!(
        size_gib(0, 0, VolumeType::St1).unwrap(),
        125,
        "default raised to the type minimum"
    );
    assert_eq!(
        size_gib(0, 10 * GIB as i64, gp3).unwrap(),
        10,
        "default lowered under the limit"
    );
    assert_eq!(size_gib(0, 10 * GIB as i64 + 5, gp3).unwrap(), 10);
    out_of_range(size_gib(0, 10, gp3));
    assert_eq!(size_gib(GIB as i64, GIB as i64, gp3).unwrap(), 1);
    let msg = out_of_range(size_gib(GIB as i64 + 1, GIB as i64 + 2, gp3));
    assert!(msg.contains("rounds up to 2 GiB"), "{msg}");
    invalid(size_gib(2 * GIB as i64, GIB as i64, gp3));
    invalid(size_gib(-1, 0, gp3));
    invalid(size_gib(0, -1, gp3));
    out_of_range(size_gib(i64::MAX, 0, gp3));
    out_of_range(size_gib(i64::MAX, i64::MAX, VolumeType::Io2));
}

// ---- IOPS ----

fn perf_of(pairs: &[(&str, &str)], size: u64) -> Result<Performance> {
    create(pairs)?.performance(size)
}

#[test]
fn iops_capping_and_minimums() {
    struct Case {
        params: &'static [(&'static str, &'static str)],
        size: u64,
        iops: Option<u32>,
    }
    let cases = [
        // Defaults.
        Case {
            params: &[],
            size: 100,
            iops: Some(3000),
        },
        Case {
            params: &[("type", "gp2")],
            size: 1,
            iops: Some(100),
        },
        Case {
            params: &[("type", "gp2")],
            size: 1000,
            iops: Some(3000),
        },
        Case {
            params: &[("type", "gp2")],
            size: 16_384,
            iops: Some(16_000),
        },
        Case {
            params: &[("type", "st1")],
            size: 500,
            iops: None,
        },
        // Above the maximum: capped.
        Case {
            params: &[("iops", "100000")],
            size: 1000,
            iops: Some(80_000),
        },
        Case {
            params: &[("type", "io1"), ("iops", "70000")],
            size: 10_000,
            iops: Some(64_000),
        },
        Case {
            params: &[("type", "io2"), ("iops", "300000")],
            size: 10_000,
            iops: Some(256_000),
        },
        // Above the per-GiB ratio: capped.
        Case {
            params: &[("type", "io1"), ("iops", "1000")],
            size: 10,
            iops: Some(500),
        },
        Case {
            params: &[("type", "io2"), ("iops", "20000")],
            size: 10,
            iops: Some(10_000),
        },
        Case {
            params: &[("iops", "16000")],
            size: 10,
            iops: Some(5000),
        },
        // The ratio never caps below the minimum.
        Case {
            params: &[("iops", "16000")],
            size: 1,
            iops: Some(3000),
        },
        // iopsPerGB x size.
        Case {
            params: &[("type", "io1"), ("iopsPerGB", "10")],
            size: 100,
            iops: Some(1000),
        },
        Case {
            params: &[("type", "io2"), ("iopsPerGB", "4294967295")],
            size: 65_536,
            iops: Some(256_000),
        },
        Case {
            params: &[("iopsPerGB", "50")],
            size: 100,
            iops: Some(5000),
        },
        // Below the minimum, raised when allowed.
        Case {
            params: &[
                ("type", "io1"),
                ("iopsPerGB", "2"),
                ("allowAutoIOPSPerGBIncrease", "true"),
            ],
            size: 10,
            iops: Some(100),
        },
        Case {
            params: &[("iops", "1000"), ("allowAutoIOPSPerGBIncrease", "true")],
            size: 100,
            iops: Some(3000),
        },
    ];
    for (i, c) in cases.iter().enumerate() {
        let got = perf_of(c.params, c.size).unwrap_or_else(|e| panic!("case {i}: {e}"));
        assert_eq!(got.iops, c.iops, "case {i}: {:?}", c.params);
    }
}

#[test]
fn iops_errors() {
    let msg = invalid(perf_of(&[("type", "io1"), ("iopsPerGB", "2")], 10));
    assert!(
        msg.contains("20") && msg.contains("100") && msg.contains("allowAutoIOPSPerGBIncrease"),
        "{msg}"
    );
    invalid(perf_of(&[("iops", "2999")], 100));
    let msg = invalid(create(&[("iops", "3000"), ("iopsPerGB", "10")]));
    assert!(msg.contains("iops") && msg.contains("iopsPerGB"), "{msg}");
    for t in ["gp2", "st1", "sc1", "standard"] {
        let msg = invalid(create(&[("type", t), ("iops", "3000")]));
        assert!(msg.contains(t) && msg.contains("\"iops\""), "{msg}");
        invalid(create(&[("type", t), ("iopsPerGB", "3")]));
    }
    let msg = invalid(perf_of(&[("type", "io2")], 100));
    assert!(msg.contains("io2") && msg.contains("iopsPerGB"), "{msg}");
    // Mutated after parsing: performance() checks again.
    let mut p = create(&[("iops", "4000")]).unwrap();
    p.iops_per_gb = Some(3);
    invalid(p.performance(100));
}

// ---- throughput ----

#[test]
fn throughput_rules() {
    assert_eq!(perf_of(&[], 100).unwrap(), perf(Some(3000), Some(125)));
    assert_eq!(perf_of(&[("throughput", "750")], 100).unwrap().throughput, Some(750));
    let msg = invalid(perf_of(&[("throughput", "751")], 100));
    assert!(
        msg.contains("751") && msg.contains("3004") && msg.contains("3000 IOPS"),
        "{msg}"
    );
    assert_eq!(
        perf_of(&[("throughput", "2000"), ("iops", "8000")], 100).unwrap(),
        perf(Some(8000), Some(2000))
    );
    invalid(perf_of(&[("throughput", "2000"), ("iops", "7999")], 100));
    // The ratio applies to the IOPS after capping: 20 GiB allows 10,000 IOPS.
    invalid(perf_of(&[("throughput", "2000"), ("iops", "8000")], 10));
    let msg = invalid(create(&[("throughput", "2001"), ("iops", "16000")]));
    assert!(msg.contains("125–2000"), "{msg}");
    invalid(create(&[("throughput", "124")]));
    for t in ["gp2", "io1", "io2", "st1", "sc1", "standard"] {
        let msg =
            invalid(create(&[("type", t), ("throughput", "200"), ("iops", "1000")]).and_then(|p| p.performance(1000)));
        assert!(msg.contains("throughput") || msg.contains("iops"), "{msg}");
        let msg = invalid(create(&[("type", t), ("throughput", "200")]));
        assert!(msg.contains("\"throughput\"") && msg.contains(t), "{msg}");
    }
    assert_eq!(
        perf_of(&[("type", "io2"), ("iops", "5000")], 100).unwrap(),
        perf(Some(5000), None)
    );
    assert_eq!(
        create(&[("throughput", "0")]).unwrap().throughput,
        None,
        "0 means unset, as in Go"
    );
}

// ---- keys and values ----

#[test]
fn accepted_keys_and_case_insensitivity() {
    let p = create(&[
        ("TYPE", "IO2"),
        ("IOPSPERGB", "100"),
        ("AllowAutoIopsPerGbIncrease", "True"),
        ("allowAutoIOPSIncreaseOnModify", "1"),
        ("Encrypted", "t"),
        ("KMSKEYID", "arn:aws:kms:us-east-1:123:key/abc"),
        ("blockExpress", "true"),
        ("csi.storage.k8s.io/pvc/name", "data"),
        ("CSI.storage.k8s.io/pvc/namespace", "prod"),
        ("csi.storage.k8s.io/pv/name", "pvc-1"),
        ("fstype", "whatever"),
        ("volumeInitializationRate", "300"),
    ])
    .unwrap();
    assert_eq!(p.volume_type, VolumeType::Io2);
    assert_eq!(p.iops_per_gb, Some(100));
    assert!(p.allow_auto_iops_per_gb_increase && p.allow_auto_iops_increase_on_modify);
    assert!(p.encrypted && p.block_express);
    assert_eq!(p.kms_key_id.as_deref(), Some("arn:aws:kms:us-east-1:123:key/abc"));
    assert_eq!(
        (p.pvc_name.as_deref(), p.pvc_namespace.as_deref(), p.pv_name.as_deref()),
        (Some("data"), Some("prod"), Some("pvc-1"))
    );
    assert_eq!(p.volume_initialization_rate, Some(300));
    assert_eq!(create(&[]).unwrap(), CreateParams::default());
    assert_eq!(create(&[("type", "")]).unwrap().volume_type, VolumeType::Gp3);
    assert!(
        create(&[("kmsKeyId", "k")]).unwrap().encrypted,
        "a key implies encryption"
    );
    assert_eq!(create(&[("kmsKeyId", "")]).unwrap().kms_key_id, None);
}

#[test]
fn unknown_and_duplicate_keys() {
    let msg = invalid(create(&[("iopsPerGiB", "10")]));
    assert!(msg.contains("\"iopsPerGiB\"") && msg.contains("iopsPerGB"), "{msg}");
    invalid(create(&[("csi.storage.k8s.io/provisioner-secret-name", "s")]));
    invalid(create(&[("", "x")]));
    let msg = invalid(create(&[("iops", "3000"), ("IOPS", "4000")]));
    assert!(msg.contains("\"IOPS\"") && msg.contains("\"iops\""), "{msg}");
    let long_key = "k".repeat(10_000);
    let msg = invalid(create(&[(long_key.as_str(), "v")]));
    assert!(msg.len() < 1500, "long keys are cut in messages ({} bytes)", msg.len());
}

#[test]
fn bad_values() {
    for (key, value) in [
        ("encrypted", "maybe"),
        ("encrypted", "yes"),
        ("encrypted", " true"),
        ("encrypted", ""),
        ("blockExpress", "on"),
        ("ext4BigAlloc", "2"),
    ] {
        let msg = invalid(create(&[(key, value)]));
        assert!(
            msg.contains(key) && msg.contains(&format!("{value:?}")) && msg.contains("boolean"),
            "{msg}"
        );
    }
    for good in ["1", "t", "T", "TRUE", "true", "True"] {
        assert!(create(&[("encrypted", good)]).unwrap().encrypted, "{good}");
    }
    for good in ["0", "f", "F", "FALSE", "false", "False"] {
        assert!(!create(&[("encrypted", good)]).unwrap().encrypted, "{good}");
    }
    assert_eq!(
        invalid(create(&[("iops", "abc")])),
        "parameter \"iops\": value \"abc\" is not a whole number"
    );
    assert!(invalid(create(&[("iops", "-5")])).contains("negative"));
    assert!(invalid(create(&[("iops", "99999999999999999999999")])).contains("too large"));
    assert!(invalid(create(&[("iops", "4294967296")])).contains("too large"));
    for bad in ["", " 100", "100 ", "1e3", "1_000", "0x10", "３０００"] {
        invalid(create(&[("iops", bad)]));
    }
    assert_eq!(
        create(&[("iops", "+4000")]).unwrap().iops,
        Some(4000),
        "Go's ParseInt takes a sign"
    );
    for rate in ["99", "301", "x"] {
        invalid(create(&[("volumeInitializationRate", rate)]));
    }
    assert_eq!(
        create(&[("volumeInitializationRate", "100")])
            .unwrap()
            .volume_initialization_rate,
        Some(100)
    );
    assert_eq!(
        create(&[("volumeInitializationRate", "0")])
            .unwrap()
            .volume_initialization_rate,
        None
    );
}

#[test]
fn huge_and_odd_values_do_not_panic() {
    let huge = "9".repeat(10_240);
    let unicode = "ü€😀".repeat(2_000);
    for key in [
        "type",
        "iops",
        "iopsPerGB",
        "throughput",
        "encrypted",
        "blockSize",
        "inodeSize",
        "bytesPerInode",
        "numberOfInodes",
        "ext4ClusterSize",
        "volumeInitializationRate",
        "csi.storage.k8s.io/fstype",
        "tagSpecification_1",
    ] {
        for value in [huge.as_str(), unicode.as_str(), "", "=", "{{", "\u{0}"] {
            let r = create(&[(key, value)]);
            if let Err(e) = &r {
                assert!(e.to_string().len() < 2000, "{key}: message too long");
            }
            let _ = r.and_then(|p| p.performance(100));
        }
    }
    let p = create(&[("kmsKeyId", huge.as_str())]).unwrap();
    assert_eq!(p.kms_key_id.map(|k| k.len()), Some(10_240));
}

// ---- mkfs ----

#[test]
fn mkfs_options() {
    let p = create(&[
        ("blockSize", "4096"),
        ("inodeSize", "512"),
        ("bytesPerInode", "16k"),
        ("numberOfInodes", "100000"),
        ("ext4BigAlloc", "true"),
        ("ext4ClusterSize", "64K"),
    ])
    .unwrap();
    assert_eq!(
        p.mkfs,
        MkfsOptions {
            block_size: Some(4096),
            inode_size: Some(512),
            bytes_per_inode: Some(16_384),
            number_of_inodes: Some(100_000),
            ext4_bigalloc: true,
            ext4_cluster_size: Some(65_536),
        }
    );
    let json = serde_json::to_string(&p.mkfs).unwrap();
    assert_eq!(serde_json::from_str::<MkfsOptions>(&json).unwrap(), p.mkfs);
    assert!(create(&[]).unwrap().mkfs.is_empty());
    assert_eq!(
        create(&[
            ("csi.storage.k8s.io/fstype", "xfs"),
            ("blockSize", "4096"),
            ("inodeSize", "2048")
        ])
        .unwrap()
        .mkfs
        .inode_size,
        Some(2048)
    );
    // What mkfs.xfs refuses for its (CRC-enabled) filesystems is refused here, not at
    // NodeStageVolume: blocks under 1 KiB, inodes under 512 bytes or over half a block.
    for params in [
        &[("csi.storage.k8s.io/fstype", "xfs"), ("blockSize", "512")][..],
        &[("csi.storage.k8s.io/fstype", "xfs"), ("inodeSize", "256")],
        &[
            ("csi.storage.k8s.io/fstype", "xfs"),
            ("blockSize", "1024"),
            ("inodeSize", "1024"),
        ],
    ] {
        invalid(create(params));
    }

    // Fine for ext4 (the filesystem assumed while none is named), not for xfs.
    let ext_only = create(&[("inodeSize", "256")]).unwrap();
    assert!(ext_only.validate_for_fs(FsType::Ext4).is_ok());
    invalid(ext_only.validate_for_fs(FsType::Xfs));
    let rejected: &[&[(&str, &str)]] = &[
        &[("blockSize", "3000")],
        &[("blockSize", "131072")],
        &[("blockSize", "4x")],
        &[("blockSize", "k")],
        &[("blockSize", "-4096")],
        &[("blockSize", "8g")],
        &[("inodeSize", "64")],
        &[("inodeSize", "8192")],
        &[("bytesPerInode", "512")],
        &[("numberOfInodes", "0")],
        &[("numberOfInodes", "4294967296")],
        &[("ext4ClusterSize", "65536")],
        &[("ext4BigAlloc", "true"), ("ext4ClusterSize", "2048")],
        &[("ext4BigAlloc", "true"), ("ext4ClusterSize", "1073741824")],
        &[("csi.storage.k8s.io/fstype", "xfs"), ("bytesPerInode", "4096")],
        &[("csi.storage.k8s.io/fstype", "xfs"), ("numberOfInodes", "1000")],
        &[("csi.storage.k8s.io/fstype", "xfs"), ("ext4BigAlloc", "true")],
        &[("csi.storage.k8s.io/fstype", "xfs"), ("inodeSize", "128")],
        &[("csi.storage.k8s.io/fstype", "ext3"), ("ext4BigAlloc", "true")],
        &[("csi.storage.k8s.io/fstype", "ext2"), ("ext4EncryptionSupport", "true")],
    ];
    for params in rejected {
        invalid(create(params));
    }
    let msg = invalid(create(&[
        ("csi.storage.k8s.io/fstype", "xfs"),
        ("bytesPerInode", "4096"),
    ]));
    assert!(msg.contains("bytesPerInode") && msg.contains("xfs"), "{msg}");
    assert!(invalid(create(&[("ext4ClusterSize", "65536")])).contains("ext4BigAlloc"));
    // Options valid at parse time (ext4 assumed) are checked again against the capability.
    let p = create(&[("ext4BigAlloc", "true"), ("ext4EncryptionSupport", "true")]).unwrap();
    assert!(p.validate_for_fs(FsType::Ext4).is_ok());
    invalid(p.validate_for_fs(FsType::Xfs));
}

// ---- tags and templates ----

#[test]
fn plain_tags() {
    let p = create(&[
        ("tagSpecification_1", "key1=value1"),
        ("tagSpecification_2", "key2=hello world"),
        ("tagSpecification_3", "key3="),
        ("TAGSPECIFICATION_4", "k4=a=b"),
        ("tagSpecificationX", "k5=v"),
    ])
    .unwrap();
    let want: BTreeMap<String, String> = [
        ("key1", "value1"),
        ("key2", "hello world"),
        ("key3", ""),
        ("k4", "a=b"),
        ("k5", "v"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    assert_eq!(p.tags, want);
    assert!(invalid(create(&[("tagSpecification_1", "novalue")])).contains("key=value"));
    assert!(invalid(create(&[("tagSpecification_1", "=v")])).contains("empty"));
    let msg = invalid(create(&[("tagSpecification_1", "k=a"), ("tagSpecification_2", "k=b")]));
    assert!(
        msg.contains("tagSpecification_1") && msg.contains("tagSpecification_2"),
        "{msg}"
    );
}

#[test]
fn reserved_and_oversized_tags() {
    for key in [
        "CSIVolumeName",
        "CSIVolumeSnapshotName",
        "ebs.csi.aws.com/cluster",
        "ebs.csi.aws.com/iopsPerGb",
        "kubernetes.io/cluster/abc",
        "kubernetes.io/created-for/pvc/name",
        "kubernetes.io/created-for/pvc/namespace",
        "kubernetes.io/created-for/pv/name",
        "aws:foo",
        "AWS:foo",
        "Aws:x",
    ] {
        let msg = invalid(create(&[("tagSpecification_1", &format!("{key}=v"))]));
        assert!(msg.contains(key) && msg.contains("tagSpecification_1"), "{msg}");
    }
    for key in ["Name", "KubernetesCluster", "awsome", "team"] {
        assert!(create(&[("tagSpecification_1", &format!("{key}=v"))]).is_ok(), "{key}");
    }
    let k128 = "k".repeat(128);
    assert!(create(&[("tagSpecification_1", &format!("{k128}=v"))]).is_ok());
    invalid(create(&[("tagSpecification_1", &format!("{k128}k=v"))]));
    let v256 = "ü".repeat(256);
    assert!(
        create(&[("tagSpecification_1", &format!("k={v256}"))]).is_ok(),
        "limits count characters"
    );
    let msg = invalid(create(&[("tagSpecification_1", &format!("k={v256}x"))]));
    assert!(msg.contains("257") && msg.len() < 500, "{msg}");
    let ten_kb = "x".repeat(10_240);
    invalid(create(&[("tagSpecification_1", &format!("k={ten_kb}"))]));
    invalid(create(&[("tagSpecification_1", &format!("{ten_kb}=v"))]));
    let many: Vec<(String, String)> = (0..51)
        .map(|i| (format!("tagSpecification_{i}"), format!("k{i}=v")))
        .collect();
    let params: HashMap<String, String> = many.iter().cloned().collect();
    assert!(invalid(parse_create_params(&params)).contains("51 tags"));
    let params: HashMap<String, String> = many[..50].iter().cloned().collect();
    assert_eq!(parse_create_params(&params).unwrap().tags.len(), 50);
}

#[test]
fn templated_tags_in_create() {
    let p = create(&[
        ("csi.storage.k8s.io/pvc/name", "ebs-claim"),
        ("csi.storage.k8s.io/pvc/namespace", "ns-prod-abcdef"),
        ("csi.storage.k8s.io/pv/name", "pvc-9"),
        ("tagSpecification_1", "backup={{ .PVCNamespace | contains \"prod\" }}"),
        (
            "tagSpecification_2",
            "billingID={{ .PVCNamespace | field \"-\" 2 | toUpper }}",
        ),
        ("tagSpecification_3", "pv={{ .PVName }}"),
    ])
    .unwrap();
    assert_eq!(p.tags["backup"], "true");
    assert_eq!(p.tags["billingID"], "ABCDEF");
    assert_eq!(p.tags["pv"], "pvc-9");
    // Without --extra-create-metadata the fields are empty, as in Go.
    assert_eq!(
        create(&[("tagSpecification_1", "pv={{ .PVName }}")]).unwrap().tags["pv"],
        ""
    );
    let msg = invalid(create(&[("tagSpecification_7", "k={{ printf \"x\" }}")]));
    assert!(
        msg.contains("tagSpecification_7") && msg.contains("printf") && msg.contains("field, substring"),
        "{msg}"
    );
    let msg = invalid(create(&[("tagSpecification_1", "k={{ toUpper .PVCName ")]));
    assert!(msg.contains("unclosed"), "{msg}");
    // A template yielding more than 256 characters.
    let long = format!("k={{{{ \"{}\" }}}}", "x".repeat(300));
    invalid(create(&[("tagSpecification_1", long.as_str())]));
}

// ---- modify ----

#[test]
fn parse_modify() {
    let m = modify(&[("type", "io2"), ("iops", "5000")]).unwrap();
    assert_eq!(
        (m.volume_type, m.iops, m.throughput),
        (Some(VolumeType::Io2), Some(5000), None)
    );
    assert!(m.changes_volume() && !m.changes_tags());
    assert_eq!(
        modify(&[("volumeType", "gp2")]).unwrap().volume_type,
        Some(VolumeType::Gp2)
    );
    assert_eq!(
        modify(&[("volumeType", "gp2"), ("type", "io1"), ("iops", "200")])
            .unwrap()
            .volume_type,
        Some(VolumeType::Io1),
        "type wins over the deprecated volumeType"
    );
    let m = modify(&[
        ("tagSpecification_1", "location=Seattle"),
        ("tagSpecification_2", "ns={{ .PVCNamespace }}"),
        ("tagDeletion_1", "cost-center"),
        ("csi.storage.k8s.io/pvc/namespace", "team-a"),
    ])
    .unwrap();
    assert!(!m.changes_volume() && m.changes_tags());
    assert_eq!(m.tags["location"], "Seattle");
    assert_eq!(m.tags["ns"], "team-a");
    assert!(m.tag_deletions.contains("cost-center"));
    assert_eq!(modify(&[("iopsPerGB", "50")]).unwrap().iops_per_gb, Some(50));
    assert_eq!(
        modify(&[("allowAutoIOPSIncreaseOnModify", "true")])
            .unwrap()
            .allow_auto_iops_increase_on_modify,
        Some(true)
    );

    assert!(invalid(modify(&[])).contains("nothing to modify"));
    invalid(modify(&[("csi.storage.k8s.io/pvc/name", "x")]));
    invalid(modify(&[("type", "")]));
    invalid(modify(&[("iops", "0")]));
    let msg = invalid(modify(&[("encrypted", "true")]));
    assert!(
        msg.contains("\"encrypted\"") && msg.contains("ControllerModifyVolume"),
        "{msg}"
    );
    invalid(modify(&[("type", "gp4")]));
    invalid(modify(&[("iops", "x")]));
    invalid(modify(&[("iops", "3000"), ("iopsPerGB", "10")]));
    invalid(modify(&[("type", "gp2"), ("iops", "3000")]));
    invalid(modify(&[("type", "io2"), ("throughput", "200")]));
    invalid(modify(&[("tagDeletion_1", "CSIVolumeName")]));
    invalid(modify(&[("tagDeletion_1", "")]));
    invalid(modify(&[("tagSpecification_1", "a=b"), ("tagDeletion_1", "a")]));
    invalid(modify(&[("tagSpecification_1", "kubernetes.io/x=b")]));
    invalid(modify(&[("tagSpecification_1", "a={{ call }}")]));
}

#[test]
fn modified_performance_cases() {
    struct Case {
        current_type: VolumeType,
        size: u64,
        current: Performance,
        change: &'static [(&'static str, &'static str)],
        allow: bool,
        want: (VolumeType, Performance),
    }
    use VolumeType::*;
    let cases = [
        // Same type: unspecified figures are kept.
        Case {
            current_type: Gp3,
            size: 100,
            current: perf(Some(6000), Some(500)),
            change: &[("iops", "8000")],
            allow: false,
            want: (Gp3, perf(Some(8000), Some(500))),
        },
        Case {
            current_type: Gp3,
            size: 100,
            current: perf(Some(6000), Some(500)),
            change: &[("throughput", "250")],
            allow: false,
            want: (Gp3, perf(Some(6000), Some(250))),
        },
        Case {
            current_type: Io2,
            size: 100,
            current: perf(Some(20_000), None),
            change: &[("tagSpecification_1", "a=b")],
            allow: false,
            want: (Io2, perf(Some(20_000), None)),
        },
        // New type: EC2's defaults.
        Case {
            current_type: Gp2,
            size: 100,
            current: perf(Some(300), None),
            change: &[("type", "gp3")],
            allow: false,
            want: (Gp3, perf(Some(3000), Some(125))),
        },
        Case {
            current_type: Gp3,
            size: 100,
            current: perf(Some(6000), Some(500)),
            change: &[("type", "io2")],
            allow: false,
            want: (Io2, perf(Some(3000), None)),
        },
        Case {
            current_type: Gp3,
            size: 1000,
            current: perf(Some(3000), Some(125)),
            change: &[("type", "gp2")],
            allow: false,
            want: (Gp2, perf(Some(3000), None)),
        },
        Case {
            current_type: Gp3,
            size: 500,
            current: perf(Some(3000), Some(125)),
            change: &[("type", "st1")],
            allow: false,
            want: (St1, perf(None, None)),
        },
        // Capping like create.
        Case {
            current_type: Io1,
            size: 10,
            current: perf(Some(500), None),
            change: &[("iops", "50000")],
            allow: false,
            want: (Io1, perf(Some(500), None)),
        },
        Case {
            current_type: Gp3,
            size: 1000,
            current: perf(Some(3000), Some(125)),
            change: &[("iops", "90000")],
            allow: false,
            want: (Gp3, perf(Some(80_000), Some(125))),
        },
        Case {
            current_type: Gp2,
            size: 10,
            current: perf(Some(100), None),
            change: &[("type", "io1")],
            allow: false,
            want: (Io1, perf(Some(500), None)),
        },
        Case {
            current_type: Io2,
            size: 100,
            current: perf(Some(1000), None),
            change: &[("iopsPerGB", "50")],
            allow: false,
            want: (Io2, perf(Some(5000), None)),
        },
        // Below the minimum.
        Case {
            current_type: Io2,
            size: 100,
            current: perf(Some(1000), None),
            change: &[("iops", "50")],
            allow: true,
            want: (Io2, perf(Some(100), None)),
        },
    ];
    for (i, c) in cases.iter().enumerate() {
        let change = modify(c.change).unwrap();
        let got = modified_performance(c.current_type, c.size, &c.current, &change, c.allow)
            .unwrap_or_else(|e| panic!("case {i}: {e}"));
        assert_eq!(got, c.want, "case {i}");
    }
    fn change(pairs: &[(&str, &str)]) -> ModifyParams {
        parse_modify_params(&map(pairs)).unwrap()
    }
    let gp3 = perf(Some(3000), Some(125));
    invalid(modified_performance(
        Io2,
        100,
        &perf(Some(1000), None),
        &change(&[("iops", "50")]),
        false,
    ));
    invalid(modified_performance(
        Gp3,
        100,
        &gp3,
        &change(&[("iops", "2000")]),
        false,
    ));
    let msg = invalid(modified_performance(
        Gp3,
        100,
        &gp3,
        &change(&[("throughput", "1000")]),
        false,
    ));
    assert!(msg.contains("4000"), "{msg}");
    invalid(modified_performance(
        Gp3,
        100,
        &perf(Some(8000), Some(2000)),
        &change(&[("iops", "4000")]),
        false,
    ));
    invalid(modified_performance(
        Gp2,
        100,
        &perf(Some(300), None),
        &change(&[("iops", "4000")]),
        false,
    ));
    invalid(modified_performance(
        Io1,
        100,
        &perf(Some(300), None),
        &change(&[("throughput", "300")]),
        false,
    ));
    let msg = out_of_range(modified_performance(Gp3, 100, &gp3, &change(&[("type", "st1")]), false));
    assert!(msg.contains("st1") && msg.contains("125"), "{msg}");
    out_of_range(modified_performance(
        Gp3,
        20_000,
        &gp3,
        &change(&[("type", "io1")]),
        false,
    ));
}

#[test]
fn mutable_parameters_at_create() {
    let params = map(&[
        ("type", "gp3"),
        ("iopsPerGB", "10"),
        ("tagSpecification_1", "a=1"),
        ("tagSpecification_2", "b=2"),
        ("csi.storage.k8s.io/pvc/name", "claim"),
    ]);
    let mutable = map(&[
        ("type", "io2"),
        ("iops", "5000"),
        ("tagSpecification_1", "a=9"),
        ("tagSpecification_2", "c={{ .PVCName }}"),
        ("tagDeletion_1", "b"),
    ]);
    let p = parse_create_request(&params, &mutable).unwrap();
    assert_eq!(
        (p.volume_type, p.iops, p.iops_per_gb),
        (VolumeType::Io2, Some(5000), None)
    );
    assert_eq!(
        p.tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        ["a=9", "c=claim"]
    );
    invalid(parse_create_request(
        &map(&[("type", "gp3"), ("throughput", "200")]),
        &map(&[("type", "io1")]),
    ));
    assert!(
        parse_create_request(&params, &HashMap::new()).is_ok(),
        "an empty VAC is no error at creation"
    );
}

#[test]
fn resize_with_iops_per_gb() {
    assert_eq!(iops_after_resize(VolumeType::Io2, 200, 50, Some(5000)), Some(10_000));
    assert_eq!(
        iops_after_resize(VolumeType::Io2, 100, 50, Some(5000)),
        None,
        "no change"
    );
    assert_eq!(
        iops_after_resize(VolumeType::Io2, 50, 50, Some(5000)),
        None,
        "never lowered"
    );
    assert_eq!(iops_after_resize(VolumeType::Io1, 10_000, 50, Some(5000)), Some(64_000));
    assert_eq!(iops_after_resize(VolumeType::Gp3, 4, 10, None), Some(3000));
    assert_eq!(iops_after_resize(VolumeType::Gp2, 1000, 10, None), None);
    assert_eq!(iops_after_resize(VolumeType::Io2, 100, 0, None), None);
}

/// Random strings built from the characters the lexers care about: nothing may panic.
#[test]
fn create_params_serde_round_trip() {
    let p = create(&[
        ("type", "io2"),
        ("iops", "4000"),
        ("tagSpecification_1", "a=b"),
        ("csi.storage.k8s.io/fstype", "xfs"),
    ])
    .unwrap();
    let json = serde_json::to_string(&p).unwrap();
    assert!(json.contains("\"io2\"") && json.contains("\"xfs\""), "{json}");
    assert_eq!(serde_json::from_str::<CreateParams>(&json).unwrap(), p);
}
