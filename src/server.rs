//! Builds the backend and the CSI services for a mode, and serves them on a unix socket or TCP
//! until SIGTERM/SIGINT, draining in-flight calls before it removes the socket.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::codegen::http;
use tonic::transport::Server;
use tracing::{info, warn};

use crate::cloud::local::{DEFAULT_ATTACH_LIMIT, LocalCloud};
use crate::cloud::{Cloud, Node};
use crate::config::{Backend as BackendKind, Endpoint, ServeArgs, hostname, parse_tags};
use crate::controller::{ControllerService, Options};
use crate::csi::controller_server::ControllerServer;
use crate::csi::identity_server::IdentityServer;
use crate::csi::modify::modify_server::ModifyServer;
use crate::csi::node_server::NodeServer;
use crate::error::{Error, Result};
use crate::identity::IdentityService;
use crate::metrics::Metrics;
use crate::node::device::{DeviceLocator, EbsLocator, LoopLocator};
use crate::node::{NodeIdentity, NodeService};

/// A node id has to be usable as an EC2-style identifier: printable, no separators we rely on.
fn check_node_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 256 || id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::InvalidArgument(format!(
            "node id {id:?} must be 1–256 printable characters without spaces"
        )));
    }
    Ok(())
}

/// What a mode needs from its backend: the cloud for the controller (and Probe), and for the
/// node its identity and device locator.
struct Backend {
    cloud: Option<Arc<dyn Cloud>>,
    node: Option<(NodeIdentity, Arc<dyn DeviceLocator>)>,
}

async fn open_local(args: &ServeArgs, metrics: &Metrics) -> Result<Backend> {
    let cloud = LocalCloud::open(&args.data_dir, args.zones.clone())?;
    if args.mode.has_controller() {
        cloud.reconcile().await?;
        metrics.add_collector(cloud.attached_collector());
    }
    let mut node = None;
    if args.mode.has_node() {
        let id = args
            .node_id
            .clone()
            .or_else(|| args.kubernetes_node_name.clone())
            .unwrap_or_else(hostname);
        check_node_id(&id)?;
        let zone = args.zone.clone().unwrap_or_else(|| cloud.zones()[0].clone());
        let me = Node {
            id,
            zone,
            attach_limit: args
                .volume_attach_limit
                .unwrap_or(DEFAULT_ATTACH_LIMIT.saturating_sub(args.reserved_volume_attachments.unwrap_or(0))),
        };
        cloud.register_node(&me)?;
        metrics.add_collector(cloud.io_collector(&me.id));
        info!(node = %me.id, zone = %me.zone, attach_limit = me.attach_limit, "node registered");
        let identity = NodeIdentity {
            id: me.id,
            zone: me.zone,
            attach_limit: me.attach_limit,
        };
        let locator: Arc<dyn DeviceLocator> = Arc::new(LoopLocator::new(cloud.data_dir()));
        node = Some((identity, locator));
    }
    Ok(Backend {
        cloud: Some(Arc::new(cloud)),
        node,
    })
}

/// An EC2 node's identity: the flags when they say it all, else the metadata sources in the
/// order given (IMDSv2, the Node object), with the flags given overriding what they found.
async fn aws_node(args: &ServeArgs) -> Result<NodeIdentity> {
    let me = match (&args.node_id, &args.zone) {
        (Some(id), Some(zone)) => {
            let itype = args.instance_type.clone().unwrap_or_default();
            crate::cloud::imds::InstanceMetadata {
                instance_id: id.clone(),
                zone: zone.clone(),
                region: String::new(),
                instance_type: itype,
                enis: 1,
                instance_store: 0,
            }
        }
        _ => {
            let kube = crate::cloud::metadata::KubernetesSettings {
                node_name: args.kubernetes_node_name.as_deref(),
                account_dir: &args.service_account_dir,
            };
            let mut me = crate::cloud::metadata::discover(&args.metadata_sources, &kube).await?;
            if let Some(id) = &args.node_id {
                me.instance_id = id.clone();
            }
            if let Some(zone) = &args.zone {
                me.zone = zone.clone();
            }
            if let Some(t) = &args.instance_type {
                me.instance_type = t.clone();
            }
            me
        }
    };
    check_node_id(&me.instance_id)?;
    let attach_limit = args.volume_attach_limit.unwrap_or_else(|| {
        crate::cloud::limits::attach_limit(&me.instance_type, me.enis, me.instance_store)
            .saturating_sub(args.reserved_volume_attachments.unwrap_or(0))
    });
    info!(node = %me.instance_id, zone = %me.zone, instance_type = %me.instance_type, attach_limit, "EC2 node");
    Ok(NodeIdentity {
        id: me.instance_id,
        zone: me.zone,
        attach_limit,
    })
}

#[cfg(feature = "aws")]
async fn aws_cloud(args: &ServeArgs, calls: Metrics) -> Result<Arc<dyn Cloud>> {
    let opts = crate::cloud::aws::AwsOptions {
        policy: crate::cloud::aws::retry::Policy {
            default_budget: Duration::from_secs(args.cloud_retry_budget),
            ..Default::default()
        },
        modify_window: args.modify_volume_request_handler_timeout,
        batching: args.batching,
        user_agent_extra: args.user_agent_extra.clone().filter(|s| !s.is_empty()),
    };
    Ok(Arc::new(crate::cloud::aws::AwsCloud::connect(calls, opts).await?))
}

#[cfg(not(feature = "aws"))]
async fn aws_cloud(_args: &ServeArgs, _calls: Metrics) -> Result<Arc<dyn Cloud>> {
    Err(Error::Unimplemented(
        "this ebs-csi was built without the aws feature; rebuild with it".into(),
    ))
}

/// The aws node's per-volume metrics, read from each EBS volume's NVMe log page at each scrape.
fn add_ebs_io(args: &ServeArgs, metrics: &Metrics, instance_id: &str) {
    use crate::node::ebs_io::{EbsIo, LogPages};
    let pages = args.nvme_log_pages.clone().map_or(LogPages::Device, LogPages::Files);
    let io = Arc::new(EbsIo::new(
        instance_id.to_owned(),
        args.csi_mount_point_prefix.clone(),
        args.sys_block.clone(),
        pages,
    ));
    let volumes = io.clone();
    let took = metrics.nvme_scrape_duration(instance_id);
    metrics.add_collector(crate::metrics::VolumeIoCollector::new(move || {
        let started = std::time::Instant::now();
        let read = volumes.volumes();
        took.observe(started.elapsed().as_secs_f64());
        read
    }));
    metrics.add_collector(crate::metrics::NvmeScrapes::new(move || {
        let (scrapes, errors) = io.scrape_counts();
        (io.instance_id.clone(), scrapes, errors)
    }));
}

async fn open_aws(args: &ServeArgs, calls: Metrics) -> Result<Backend> {
    let cloud = if args.mode.has_controller() {
        Some(aws_cloud(args, calls.clone()).await?)
    } else {
        None
    };
    let node = if args.mode.has_node() {
        let me = aws_node(args).await?;
        add_ebs_io(args, &calls, &me.id);
        let locator: Arc<dyn DeviceLocator> =
            Arc::new(EbsLocator::new(args.dev_disk_by_id.clone(), args.sys_block.clone()));
        Some((me, locator))
    } else {
        None
    };
    Ok(Backend { cloud, node })
}

/// Binds a unix socket at `path`, replacing a stale socket but nothing else, readable and
/// writable by the owner only.
fn bind_unix(path: &Path) -> Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            std::fs::remove_file(path)
                .map_err(|e| Error::internal(format!("cannot remove stale socket {}", path.display()), e))?;
        }
        Ok(_) => {
            return Err(Error::FailedPrecondition(format!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            )));
        }
        Err(_) => {}
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::internal(format!("cannot create {}", dir.display()), e))?;
    }
    let listener =
        UnixListener::bind(path).map_err(|e| Error::internal(format!("cannot listen on {}", path.display()), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::internal(format!("cannot restrict {}", path.display()), e))?;
    Ok(listener)
}

/// How long a stopping server waits for in-flight calls before it exits anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Counts the calls being served, so a stopping server can wait for exactly those (the
/// sidecars keep their connections open forever, so waiting for connections would never end),
/// gives each call its caller's deadline, and measures it for the metrics.
#[derive(Clone)]
struct CountCalls<S> {
    inner: S,
    active: Arc<AtomicUsize>,
    metrics: Metrics,
}

/// The method of a gRPC path (`/csi.v1.Node/NodeStageVolume` → `NodeStageVolume`).
fn method_of(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_owned()
}

/// A call's gRPC code: tonic sends a failure as headers only, with `grpc-status`; a success has
/// its status in trailers, after the one message.
fn code_of<B>(response: &http::Response<B>) -> String {
    let code = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from_i32);
    format!("{code:?}")
}

struct Active(Arc<AtomicUsize>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, RB> tower::Service<http::Request<B>> for CountCalls<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        self.active.fetch_add(1, Ordering::SeqCst);
        let active = Active(self.active.clone());
        // The caller's deadline, for backends that retry (see `deadline`).
        let timeout = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::deadline::parse_grpc_timeout);
        let method = method_of(req.uri().path());
        let metrics = self.metrics.clone();
        let in_flight = metrics.rpc_started(&method);
        let started = std::time::Instant::now();
        let call = self.inner.call(req);
        Box::pin(crate::deadline::scope(timeout, async move {
            let out = call.await;
            let code = out.as_ref().map_or_else(|_| "Unknown".to_owned(), code_of);
            metrics.rpc_finished(&method, &code, started.elapsed());
            drop(in_flight);
            drop(active);
            out
        }))
    }
}

/// Resolves once no call is being served, or after `limit`.
async fn drained(active: &AtomicUsize, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while active.load(Ordering::SeqCst) > 0 {
        if tokio::time::Instant::now() >= deadline {
            warn!(
                calls = active.load(Ordering::SeqCst),
                "calls still running after {limit:?}; stopping anyway"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        // Without signal handlers we can only run until killed.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: draining in-flight calls"),
        _ = int.recv() => info!("SIGINT: draining in-flight calls"),
    }
}

pub async fn serve(args: ServeArgs) -> Result<()> {
    let endpoint = Endpoint::parse(&args.endpoint)?;
    let extra_tags = parse_tags(&args.extra_tags, args.warn_on_invalid_tag)?;
    let calls = Metrics::default();
    let Backend { cloud, node } = match args.backend {
        BackendKind::Local => open_local(&args, &calls).await?,
        BackendKind::Aws => open_aws(&args, calls.clone()).await?,
    };
    if node.is_some()
        && args.remove_not_ready_taint
        && let Some(name) = args.kubernetes_node_name.clone()
    {
        let (account_dir, driver) = (args.service_account_dir.clone(), args.driver_name.clone());
        tokio::spawn(async move {
            crate::cloud::startup_taint::remove_when_registered(&account_dir, &name, &driver).await;
        });
    }
    if let Some(addr) = &args.http_endpoint {
        let tls = match (&args.metrics_cert_file, &args.metrics_key_file) {
            (Some(cert), Some(key)) => Some(crate::metrics::server_config(cert, key)?),
            _ => None,
        };
        crate::metrics::serve(addr, calls.clone(), tls).await?;
    }

    let identity = IdentityServer::new(IdentityService::new(args.driver_name.clone(), args.mode, cloud.clone()));
    let options = Options {
        extra_tags,
        cluster_id: args.k8s_tag_cluster_id.clone(),
    };
    let controller = cloud
        .clone()
        .filter(|_| args.mode.has_controller())
        .map(|cloud| Arc::new(ControllerService::new(cloud, options)));
    // The volume-modifier-for-k8s sidecar's service shares the controller (its in-flight
    // volumes and the cloud's coalescing of modifications).
    let modifier = controller.clone().map(ModifyServer::from_arc);
    let controller = controller.map(ControllerServer::from_arc);
    let active = Arc::new(AtomicUsize::new(0));
    let counter = active.clone();
    let rpc_metrics = calls.clone();
    let router = Server::builder()
        .layer(tower::layer::layer_fn(move |inner| CountCalls {
            inner,
            active: counter.clone(),
            metrics: rpc_metrics.clone(),
        }))
        .add_service(identity)
        .add_optional_service(controller)
        .add_optional_service(modifier)
        .add_optional_service(
            node.map(|(me, locator)| NodeServer::new(NodeService::new(me, locator).with_legacy_xfs(args.legacy_xfs))),
        );
    // Stop accepting on a signal, then wait for the calls in flight, not for idle connections.
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let stop = async move {
        shutdown_signal().await;
        let _ = stopping_tx.send(());
    };
    let drain = async {
        if stopping_rx.await.is_ok() {
            drained(&active, DRAIN_TIMEOUT).await;
        } else {
            std::future::pending::<()>().await;
        }
    };

    match endpoint {
        Endpoint::Unix(path) => {
            let listener = bind_unix(&path)?;
            info!(endpoint = %args.endpoint, mode = ?args.mode, backend = ?args.backend, "serving");
            // Through the :authority rewrite, so that h2 takes every gRPC client's requests.
            let result = tokio::select! {
                r = router.serve_with_incoming_shutdown(crate::authority::incoming(listener), stop) => r,
                () = drain => Ok(()),
            };
            let _ = std::fs::remove_file(&path);
            result.map_err(|e| Error::internal("gRPC server", e))?;
        }
        Endpoint::Tcp(addr) => {
            let listener = TcpListener::bind(&addr)
                .await
                .map_err(|e| Error::internal(format!("cannot listen on {addr}"), e))?;
            info!(endpoint = %args.endpoint, mode = ?args.mode, backend = ?args.backend, "serving");
            tokio::select! {
                r = router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop) => {
                    r.map_err(|e| Error::internal("gRPC server", e))?;
                }
                () = drain => {}
            }
        }
    }
    info!("stopped");
    Ok(())
}
