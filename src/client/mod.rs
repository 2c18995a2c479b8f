//! `ebs-csi client`: one subcommand per CSI call of the Identity, Controller and Node services
//! (and of the volume-modifier-for-k8s sidecar's service), for trying a driver by hand or from scripts; and the gRPC channel to a CSI endpoint (unix
//! socket or TCP) that the tools and tests share.

mod args;
mod controller;
mod identity;
mod modifier;
mod node;
mod output;
mod show;

use std::process::ExitCode;

use clap::Subcommand;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Uri};

use crate::config::Endpoint;
use crate::error::{Error, Result};

pub use output::Printed;

pub async fn connect(endpoint: &str) -> Result<Channel> {
    let unavailable = |e: tonic::transport::Error| Error::Unavailable(format!("cannot reach {endpoint}: {e}"));
    match Endpoint::parse(endpoint)? {
        Endpoint::Unix(path) => {
            // The URI is required by tonic but unused: the connector dials the socket.
            tonic::transport::Endpoint::from_static("http://[::1]:50051")
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
                }))
                .await
                .map_err(unavailable)
        }
        Endpoint::Tcp(addr) => tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map_err(unavailable)?
            .connect()
            .await
            .map_err(unavailable),
    }
}

/// Every call the client makes, named as the CSI RPC in kebab-case.
#[derive(Subcommand)]
pub enum Call {
    #[command(flatten)]
    Identity(identity::Call),
    #[command(flatten)]
    Controller(controller::Call),
    #[command(flatten)]
    Node(node::Call),
    /// The volume-modifier-for-k8s sidecar's calls.
    #[command(flatten)]
    Modifier(modifier::Call),
}

/// Exit status of `client`: the call answered with an error status.
pub const EXIT_CALL_FAILED: u8 = 1;
/// Exit status of `client`: the command line or a file it names is wrong (as clap's own errors).
pub const EXIT_USAGE: u8 = 2;
/// Exit status of `client`: the endpoint could not be reached.
pub const EXIT_UNREACHABLE: u8 = 3;

/// Why a client call did not print a result.
pub enum Failure {
    /// The driver answered with this status.
    Status(tonic::Status),
    /// Local input (a secrets file, a flag's value) is unusable.
    Usage(String),
    Unreachable(String),
}

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Self {
        Failure::Status(s)
    }
}

/// Runs one call against `endpoint` and prints its answer (JSON with `json`); errors go to
/// stderr as `ebs-csi: <gRPC code>: <message>`.
pub async fn run(endpoint: &str, json: bool, call: Call) -> ExitCode {
    let result = async {
        let channel = connect(endpoint)
            .await
            .map_err(|e| Failure::Unreachable(e.to_string()))?;
        match call {
            Call::Identity(c) => identity::call(channel, c).await,
            Call::Controller(c) => controller::call(channel, c).await,
            Call::Node(c) => node::call(channel, c).await,
            Call::Modifier(c) => modifier::call(channel, c).await,
        }
    }
    .await;
    match result {
        Ok(printed) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&printed.json).unwrap_or_else(|_| "null".into())
                );
            } else {
                print!("{}", printed.human);
            }
            ExitCode::SUCCESS
        }
        Err(Failure::Status(s)) => {
            eprintln!("ebs-csi: {:?}: {}", s.code(), s.message());
            ExitCode::from(EXIT_CALL_FAILED)
        }
        Err(Failure::Usage(m)) => {
            eprintln!("ebs-csi: {m}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Unreachable(m)) => {
            eprintln!("ebs-csi: {m}");
            ExitCode::from(EXIT_UNREACHABLE)
        }
    }
}
