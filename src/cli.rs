//! The command line: `serve`, `demo`, `bench`, `cost`, `iam`, `client`.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, ServeArgs};

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
        /// Also draw the measured distributions and scaling curves as SVG files in this directory
        /// (the local run and the fault-proxy run).
        #[arg(long, value_name = "DIR")]
        svg: Option<std::path::PathBuf>,
    },
    /// What the driver's volumes cost a month, and what moving gp2 (and io1/io2 that fit) to gp3
    /// saves at the same baseline IOPS and throughput; --plan writes the moves as YAML.
    Cost(Box<crate::cost::CostArgs>),
    /// Print the IAM documents the controller needs on AWS.
    Iam {
        #[command(subcommand)]
        document: IamDocument,
    },
    /// Call a running driver: any CSI call of the Identity, Controller and Node services.
    /// Exit status: 0 done, 1 the driver answered with an error (its gRPC code and message on
    /// stderr), 2 a wrong command line or secrets file, 3 the endpoint could not be reached.
    Client {
        #[arg(long, global = true, default_value = "unix:///csi/csi.sock")]
        endpoint: String,
        /// Print the answer as JSON (the response's fields) instead of text.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        call: Box<crate::client::Call>,
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
            svg,
            ..
        } => match crate::bench::print_aws_faults(&url, &proxy, callers, operations, svg.as_deref()).await {
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
        } => match crate::bench::print_aws(&url, callers, operations).await {
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
            svg,
            ..
        } => match crate::bench::print_local(&existing, samples, cycles, svg.as_deref()).await {
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
        Command::Client { endpoint, json, call } => crate::client::run(&endpoint, json, *call).await,
    }
}
