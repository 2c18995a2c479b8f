//! `ebs-csi cost`: what the driver's volumes cost a month, and what moving gp2 (and io1/io2
//! that fit) to gp3 saves, with the plan to do it. Lists volumes through the `Cloud` trait, as
//! the controller does; the pricing and the recommendation are pure (`prices`, `recommend`).

pub mod plan;
pub mod prices;
pub mod recommend;
pub mod report;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};

use crate::cloud::local::LocalCloud;
use crate::cloud::{Cloud, Volume};
use crate::config::Backend;
use crate::error::{Error, Result};

/// The local backend's volumes are priced as this region unless `--region` says otherwise.
pub const LOCAL_DEFAULT_REGION: &str = "us-east-1";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

#[derive(Args, Clone, Debug)]
pub struct CostArgs {
    /// Where the volumes are: the same backend `serve` runs (aws: the volumes tagged
    /// ebs.csi.aws.com/cluster=true, credentials and region from the default chain,
    /// AWS_ENDPOINT_URL(_EC2) honoured).
    #[arg(long, value_enum, env = "EBS_CSI_BACKEND", default_value = "local")]
    pub backend: Backend,
    /// The local backend's state, as given to `serve`.
    #[arg(long, env = "EBS_CSI_DATA_DIR", default_value = "/var/lib/ebs-csi")]
    pub data_dir: PathBuf,
    /// The local backend's zones, as given to `serve`.
    #[arg(long, value_delimiter = ',', default_value = "local-1a,local-1b,local-1c")]
    pub zones: Vec<String>,
    /// Price every volume as this region (default: aws, each volume's own region; local,
    /// us-east-1).
    #[arg(long)]
    pub region: Option<String>,
    /// A price file (the format of src/cost/prices.yaml, YAML or JSON) whose regions replace or
    /// add to the built-in ones.
    #[arg(long, value_name = "FILE")]
    pub prices: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Write the recommended moves as kubectl-appliable YAML into this directory.
    #[arg(long, value_name = "DIR")]
    pub plan: Option<PathBuf>,
    /// How long, in seconds, an EC2 call keeps retrying throttling and transient failures (aws).
    #[arg(long, default_value_t = 60)]
    pub cloud_retry_budget: u64,
    /// Text appended to the user agent of EC2 calls (aws).
    #[arg(long)]
    pub user_agent_extra: Option<String>,
}

/// Every volume the backend lists, page by page (counted on a terminal: an account with many
/// volumes takes a page of EC2 calls per 500).
async fn all_volumes(cloud: &dyn Cloud) -> Result<Vec<Volume>> {
    let progress = crate::progress::Progress::steps("cost", "volumes listed");
    progress.say("listing");
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = cloud.list_volumes(token.as_deref(), 500).await?;
        progress.advance(page.items.len() as u64);
        out.extend(page.items);
        match page.next {
            Some(next) if !next.is_empty() => token = Some(next),
            _ => return Ok(out),
        }
    }
}

#[cfg(feature = "aws")]
async fn aws_cloud(args: &CostArgs) -> Result<Arc<dyn Cloud>> {
    let opts = crate::cloud::aws::AwsOptions {
        policy: crate::cloud::aws::retry::Policy {
            default_budget: std::time::Duration::from_secs(args.cloud_retry_budget),
            ..Default::default()
        },
        user_agent_extra: args.user_agent_extra.clone().filter(|s| !s.is_empty()),
        ..Default::default()
    };
    let metrics = crate::metrics::Metrics::default();
    Ok(Arc::new(crate::cloud::aws::AwsCloud::connect(metrics, opts).await?))
}

#[cfg(not(feature = "aws"))]
async fn aws_cloud(_args: &CostArgs) -> Result<Arc<dyn Cloud>> {
    Err(Error::Unimplemented(
        "this ebs-csi was built without the aws feature; rebuild with it".into(),
    ))
}

/// Reads the volumes, prices them, prints the report and writes the plan.
pub async fn run(args: CostArgs) -> Result<String> {
    let mut book = prices::PriceBook::built_in()?;
    if let Some(path) = &args.prices {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::InvalidArgument(format!("--prices {}: {e}", path.display())))?;
        book.extend(prices::PriceBook::parse(
            &format!("--prices {}", path.display()),
            &text,
        )?);
    }
    let (cloud, backend, priced_as): (Arc<dyn Cloud>, &str, Option<String>) = match args.backend {
        Backend::Local => {
            if !args.data_dir.join("ebs.redb").is_file() {
                return Err(Error::NotFound(format!(
                    "no local volume store in {} (--data-dir, as given to serve)",
                    args.data_dir.display()
                )));
            }
            let cloud = LocalCloud::open(&args.data_dir, args.zones.clone())?;
            let region = args.region.clone().unwrap_or_else(|| LOCAL_DEFAULT_REGION.to_owned());
            (Arc::new(cloud), "local", Some(region))
        }
        Backend::Aws => (aws_cloud(&args).await?, "aws", args.region.clone()),
    };
    if let Some(region) = &priced_as {
        book.region(region)?;
    }
    let volumes = all_volumes(cloud.as_ref()).await?;
    let report = report::build(backend, &volumes, &book, priced_as.as_deref())?;
    let mut out = match args.format {
        Format::Table => report::table(&report),
        Format::Json => report::json(&report)? + "\n",
        Format::Csv => report::csv(&report)?,
    };
    if let Some(dir) = &args.plan {
        let path = plan::write(dir, &report)?;
        // The plan's location goes to stderr so that JSON and CSV stay machine-readable.
        eprintln!("plan written to {}", path.display());
    }
    if out.is_empty() && args.format == Format::Table {
        out = "no volumes\n".into();
    }
    Ok(out)
}
