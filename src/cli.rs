//! The command line: `serve`, `demo`, `bench`, `cost`, `iam`, `client`.

use std::collections::HashMap;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, ServeArgs};
use crate::csi::controller_client::ControllerClient;
use crate::csi::identity_client::IdentityClient;
use crate::csi::volume_capability::{AccessMode, AccessType, MountVolume, access_mode::Mode};
use crate::csi::*;

#[derive(Parser)]
#[command(name = "ebs-csi", version, about = "A CSI driver for EBS-style block volumes")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the CSI driver.
    Serve(Box<ServeArgs>),
    /// Kubernetes YAML played end to end on the local backend, as the sidecars and kubelet would
    /// (by default the seed's: create, attach, format, mount, write the nginx page, expand,
    /// snapshot, restore, tear down). Needs root and loop devices.
    Demo {
        /// Leave the volumes published (and the driver running) at the end.
        #[arg(long)]
        keep: bool,
        /// Kubernetes YAML to play instead of the seed's: files, or directories of *.yaml files
        /// (as `kubectl apply -f`); repeatable, played in order with --delete.
        #[arg(short = 'f', long = "filename", value_name = "FILE|DIR")]
        files: Vec<std::path::PathBuf>,
        /// Kubernetes YAML whose objects are deleted at this point of the sequence (as
        /// `kubectl delete -f`); repeatable.
        #[arg(long = "delete", value_name = "FILE|DIR")]
        delete: Vec<std::path::PathBuf>,
        /// The local region's zones (default: the zones the YAML names, else local-1a,b,c).
        #[arg(long, value_delimiter = ',', value_name = "ZONE,…")]
        zones: Vec<String>,
        /// The demo node's zone (default: the first zone every constraint in the YAML allows).
        #[arg(long, value_name = "ZONE")]
        node_zone: Option<String>,
    },
    /// Measure: CreateVolume latency as the local store grows, a full volume cycle against the
    /// raw commands, and idle memory. Needs root (loop devices, mounts).
    Bench {
        /// Store sizes (existing volumes) at which CreateVolume is timed.
        #[arg(long, value_delimiter = ',', default_value = "10,10000")]
        existing: Vec<usize>,
        /// Creates timed at each size.
        #[arg(long, default_value_t = 200)]
        samples: usize,
        /// Full cycles (driver and raw commands each) to time.
        #[arg(long, default_value_t = 30)]
        cycles: usize,
        /// Instead: the aws backend against this EC2 endpoint (moto on loopback).
        #[arg(long)]
        aws_endpoint: Option<String>,
        /// Concurrent callers for the aws bench.
        #[arg(long, default_value_t = 16)]
        callers: usize,
        /// CreateVolume+DeleteVolume pairs for the aws bench (creates, with --fault-proxy).
        #[arg(long, default_value_t = 400)]
        operations: usize,
        /// With --aws-endpoint (moto): the driver reaches EC2 through this fault proxy
        /// (scripts/ec2-fault-proxy.py), and creates are timed as external-provisioner retries
        /// them (scripts/bench-aws-faults.sh).
        #[arg(long, requires = "aws_endpoint", value_name = "URL")]
        fault_proxy: Option<String>,
    },
    /// What the driver's volumes cost a month, and what moving gp2 (and io1/io2 that fit) to gp3
    /// saves at the same baseline IOPS and throughput; --plan writes the moves as YAML.
    Cost(Box<crate::cost::CostArgs>),
    /// Print the IAM documents the controller needs on AWS.
    Iam {
        #[command(subcommand)]
        document: IamDocument,
    },
    /// Call a running driver: a few CSI calls, for trying it by hand.
    Client {
        #[arg(long, default_value = "unix:///csi/csi.sock")]
        endpoint: String,
        #[command(subcommand)]
        call: Call,
    },
}

#[derive(Subcommand)]
pub enum IamDocument {
    /// The least-privilege policy for the controller's role (the EC2 calls ebs-csi makes), on
    /// the volumes and snapshots it tags; wider workflows only when asked for.
    Policy {
        /// Static provisioning: attach and detach volumes this driver did not create.
        #[arg(long)]
        allow_static_volumes: bool,
        /// Snapshot import: restore volumes from snapshots this driver did not create.
        #[arg(long)]
        allow_snapshot_import: bool,
        /// Both of the above.
        #[arg(long = "static")]
        all_static: bool,
        /// Print one line per statement saying which workflow needs it, instead of the JSON.
        #[arg(long)]
        explain: bool,
    },
    /// The IRSA trust policy that lets the controller's service account assume the role.
    TrustPolicy {
        /// The AWS account id.
        #[arg(long)]
        account: String,
        /// The cluster's OIDC issuer (`aws eks describe-cluster --query cluster.identity.oidc.issuer`).
        #[arg(long)]
        oidc_provider: String,
        #[arg(long, default_value = "kube-system")]
        namespace: String,
        #[arg(long, default_value = "ebs-csi-controller-sa")]
        service_account: String,
    },
}

#[derive(Subcommand)]
pub enum Call {
    /// GetPluginInfo and Probe.
    Info,
    /// CreateVolume, with StorageClass parameters as key=value.
    CreateVolume {
        name: String,
        /// Size in GiB.
        #[arg(long, default_value_t = 10)]
        size_gib: i64,
        #[arg(long = "parameter", short = 'p', value_parser = key_value)]
        parameters: Vec<(String, String)>,
    },
    DeleteVolume {
        volume_id: String,
    },
    ListVolumes,
    /// ControllerPublishVolume (attach to a node).
    Publish {
        volume_id: String,
        node_id: String,
    },
    /// ControllerUnpublishVolume (detach from a node).
    Unpublish {
        volume_id: String,
        node_id: String,
    },
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

fn init_logging(format: LogFormat, verbosity: u8, sdk_debug: bool) {
    let level = match verbosity {
        0..=2 => "info",
        3..=4 => "debug",
        _ => "trace",
    };
    // --aws-sdk-debug-log: the SDK's requests and responses (its crates log under these names).
    let sdk = if sdk_debug {
        ",aws_smithy_runtime=debug,aws_sdk_ec2=debug,aws_config=debug"
    } else {
        ""
    };
    let filter =
        EnvFilter::try_from_env("EBS_CSI_LOG").unwrap_or_else(|_| EnvFilter::new(format!("ebs_csi={level},warn{sdk}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn mount_capability() -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
        access_type: Some(AccessType::Mount(MountVolume::default())),
    }
}

async fn client(endpoint: &str, call: Call) -> Result<(), Box<dyn std::error::Error>> {
    let channel = crate::client::connect(endpoint).await?;
    let mut identity = IdentityClient::new(channel.clone());
    let mut controller = ControllerClient::new(channel);
    let out = match call {
        Call::Info => {
            let info = identity.get_plugin_info(GetPluginInfoRequest {}).await?.into_inner();
            let probe = identity.probe(ProbeRequest {}).await?.into_inner();
            format!("{info:#?}\n{probe:#?}")
        }
        Call::CreateVolume {
            name,
            size_gib,
            parameters,
        } => {
            let req = CreateVolumeRequest {
                name,
                capacity_range: Some(CapacityRange {
                    required_bytes: size_gib << 30,
                    limit_bytes: 0,
                }),
                volume_capabilities: vec![mount_capability()],
                parameters: parameters.into_iter().collect::<HashMap<_, _>>(),
                ..Default::default()
            };
            format!("{:#?}", controller.create_volume(req).await?.into_inner())
        }
        Call::DeleteVolume { volume_id } => {
            format!(
                "{:#?}",
                controller
                    .delete_volume(DeleteVolumeRequest {
                        volume_id,
                        ..Default::default()
                    })
                    .await?
                    .into_inner()
            )
        }
        Call::ListVolumes => format!(
            "{:#?}",
            controller
                .list_volumes(ListVolumesRequest::default())
                .await?
                .into_inner()
        ),
        Call::Publish { volume_id, node_id } => {
            let req = ControllerPublishVolumeRequest {
                volume_id,
                node_id,
                volume_capability: Some(mount_capability()),
                ..Default::default()
            };
            format!("{:#?}", controller.controller_publish_volume(req).await?.into_inner())
        }
        Call::Unpublish { volume_id, node_id } => {
            let req = ControllerUnpublishVolumeRequest {
                volume_id,
                node_id,
                ..Default::default()
            };
            format!("{:#?}", controller.controller_unpublish_volume(req).await?.into_inner())
        }
    };
    println!("{out}");
    Ok(())
}

async fn bench(existing: &[usize], samples: usize, cycles: usize) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile_dir()?;
    let result = async {
        let figures = crate::bench::create_volume(&dir.join("create"), existing, samples).await?;
        println!("CreateVolume on local, median of {samples} creates (1 GiB gp3), by volumes already in the store:");
        let base = figures.first().map(|(_, d)| d.as_secs_f64()).unwrap_or(0.0);
        for (size, median) in &figures {
            let ratio = if base > 0.0 { median.as_secs_f64() / base } else { 0.0 };
            println!(
                "  {size:>7} existing: {:>8.3} ms  ({ratio:.2} x the first)",
                median.as_secs_f64() * 1e3
            );
        }
        let (driver, raw) = crate::bench::cycle(&dir.join("cycle"), cycles).await?;
        println!(
            "full cycle of a fresh 1 GiB ext4 volume, median of {cycles}: driver {:.1} ms, raw commands {:.1} ms ({:.2} x)",
            driver.as_secs_f64() * 1e3,
            raw.as_secs_f64() * 1e3,
            driver.as_secs_f64() / raw.as_secs_f64().max(1e-9)
        );
        let rss = crate::bench::idle_rss_kib(&dir.join("rss")).await?;
        println!(
            "idle RSS of `serve --mode all --backend local`: {:.1} MiB",
            rss as f64 / 1024.0
        );
        Ok::<(), crate::error::Error>(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(result?)
}

#[cfg(feature = "aws")]
async fn bench_aws(url: &str, callers: usize, operations: usize) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile_dir()?;
    let result = crate::bench::aws(&dir, url, callers, operations).await;
    let _ = std::fs::remove_dir_all(&dir);
    let f = result?;
    println!(
        "aws backend against {url}: {} CreateVolume+DeleteVolume pairs, {} concurrent callers",
        f.ops, f.callers
    );
    println!("  {:.1} create+delete per second", f.per_second);
    println!(
        "  {:.2} EC2 calls per create+delete: {:?}",
        f.calls_per_create_delete, f.create_delete_calls
    );
    println!(
        "  ControllerPublishVolume: {} EC2 calls; ControllerUnpublishVolume: {}",
        f.publish_calls, f.unpublish_calls
    );
    println!(
        "  controller RSS: {:.1} MiB idle ({:.1} MiB of it anonymous), {:.1} MiB peak under load",
        f.idle_rss_kib as f64 / 1024.0,
        f.idle_anon_kib as f64 / 1024.0,
        f.peak_rss_kib as f64 / 1024.0
    );
    Ok(())
}

#[cfg(not(feature = "aws"))]
async fn bench_aws(_url: &str, _callers: usize, _operations: usize) -> Result<(), Box<dyn std::error::Error>> {
    Err("this ebs-csi was built without the aws feature".into())
}

#[cfg(feature = "aws")]
async fn bench_aws_faults(
    moto: &str,
    proxy: &str,
    callers: usize,
    volumes: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile_dir()?;
    let result = crate::bench::aws_faults(&dir, moto, proxy, callers, volumes).await;
    let _ = std::fs::remove_dir_all(&dir);
    let f = result?;
    let s = &f.proxy_settings;
    let secs = |d: std::time::Duration| d.as_secs_f64();
    println!(
        "aws backend through the fault proxy {proxy} (moto at {moto}): {} CreateVolume, {} concurrent callers",
        f.volumes, f.callers
    );
    println!(
        "  proxy: +{} ms per call, {} % of calls throttled, {} % of CreateVolume answers lost, volumes creating for {} s",
        s["latency_ms"], s["throttle_percent"], s["lose_create_percent"], s["creating_seconds"]
    );
    println!("  callers: a 10 s deadline per call (grpc-timeout); after an error 1 s, doubling, same name");
    println!(
        "  create latency, first attempt to answer: median {:.3} s, p90 {:.3} s, max {:.3} s",
        secs(f.percentile(50.0)),
        secs(f.percentile(90.0)),
        secs(f.latencies.last().copied().unwrap_or_default())
    );
    let deciles: Vec<String> = (1..10)
        .map(|d| format!("{:.2}", secs(f.percentile(d as f64 * 10.0))))
        .collect();
    println!("  deciles (s): {}", deciles.join(" "));
    println!(
        "  errors surfaced to the callers: {} {:?}",
        f.errors_surfaced(),
        f.errors
    );
    for (code, message) in &f.error_examples {
        println!("    first {code}: {message}");
    }
    if f.failed > 0 {
        println!("  names not created within the bench's attempts: {}", f.failed);
    }
    println!(
        "  answered while the proxy still reported the volume creating: {}",
        f.answered_creating
    );
    println!(
        "  volumes in moto: {} duplicates, {} answered names missing",
        f.duplicates, f.missing
    );
    println!(
        "  driver: {} throttles, {} retries; EC2 calls {:?}",
        f.throttles, f.retries, f.calls
    );
    println!(
        "  proxy: {} calls, {} throttled, {} CreateVolume answers lost",
        f.proxy_calls, f.proxy_throttled, f.proxy_lost
    );
    let available = s["creating_seconds"].as_f64().unwrap_or(0.0);
    let met = f.errors_surfaced() == 0 && f.failed == 0 && secs(f.percentile(50.0)) <= available + 0.3;
    println!(
        "  target (0 errors surfaced, median within 0.3 s of {available} s): {}",
        if met { "met" } else { "not met" }
    );
    Ok(())
}

#[cfg(not(feature = "aws"))]
async fn bench_aws_faults(
    _moto: &str,
    _proxy: &str,
    _callers: usize,
    _volumes: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    Err("this ebs-csi was built without the aws feature".into())
}

/// A fresh directory under the system temp dir.
fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("ebs-csi-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Runs the command line `ebs-csi …` (the binary's whole main).
pub async fn run() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Serve(args) => {
            init_logging(args.logging_format, args.verbosity, args.aws_sdk_debug_log);
            match crate::server::serve(*args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("ebs-csi: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Demo {
            keep,
            files,
            delete,
            zones,
            node_zone,
        } => {
            let order = matches.subcommand_matches("demo");
            let options = crate::demo::Options::new(keep, files, delete, order, zones, node_zone);
            ExitCode::from(crate::demo::run(options).await as u8)
        }
        Command::Bench {
            aws_endpoint: Some(url),
            fault_proxy: Some(proxy),
            callers,
            operations,
            ..
        } => match bench_aws_faults(&url, &proxy, callers, operations).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ebs-csi: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Bench {
            aws_endpoint: Some(url),
            callers,
            operations,
            ..
        } => match bench_aws(&url, callers, operations).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ebs-csi: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Bench {
            existing,
            samples,
            cycles,
            ..
        } => match bench(&existing, samples, cycles).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ebs-csi: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Cost(args) => match crate::cost::run(*args).await {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ebs-csi: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Iam { document } => {
            let doc = match document {
                IamDocument::Policy {
                    allow_static_volumes,
                    allow_snapshot_import,
                    all_static,
                    explain,
                } => {
                    let w = crate::iam::Workflows {
                        static_volumes: allow_static_volumes || all_static,
                        snapshot_import: allow_snapshot_import || all_static,
                    };
                    if explain {
                        print!("{}", crate::iam::explain(w));
                        return ExitCode::SUCCESS;
                    }
                    crate::iam::policy(w)
                }
                IamDocument::TrustPolicy {
                    account,
                    oidc_provider,
                    namespace,
                    service_account,
                } => crate::iam::trust_policy(&account, &oidc_provider, &namespace, &service_account),
            };
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Command::Client { endpoint, call } => match client(&endpoint, call).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                match e.downcast_ref::<tonic::Status>() {
                    Some(s) => eprintln!("ebs-csi: {:?}: {}", s.code(), s.message()),
                    None => eprintln!("ebs-csi: {e}"),
                }
                ExitCode::FAILURE
            }
        },
    }
}
