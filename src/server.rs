//! Builds the backend and the CSI services for a mode, and serves them on a unix socket or TCP
//! until SIGTERM/SIGINT, draining in-flight calls before it removes the socket.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::transport::Server;
use tracing::info;

use crate::cloud::local::{DEFAULT_ATTACH_LIMIT, LocalCloud};
use crate::cloud::{Cloud, Node};
use crate::config::{Backend, Endpoint, ServeArgs, hostname, parse_tags};
use crate::controller::{ControllerService, Options};
use crate::csi::controller_server::ControllerServer;
use crate::csi::identity_server::IdentityServer;
use crate::error::{Error, Result};
use crate::identity::IdentityService;

/// A node id has to be usable as an EC2-style identifier: printable, no separators we rely on.
fn check_node_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 256 || id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::InvalidArgument(format!(
            "node id {id:?} must be 1–256 printable characters without spaces"
        )));
    }
    Ok(())
}

/// Opens the backend the flags ask for, reconciling it (controller) and registering this node
/// (node) on the way.
async fn open_backend(args: &ServeArgs) -> Result<Arc<dyn Cloud>> {
    match args.backend {
        Backend::Aws => Err(Error::Unimplemented(
            "the aws backend is not built yet; use --backend local".into(),
        )),
        Backend::Local => {
            let cloud = LocalCloud::open(&args.data_dir, args.zones.clone())?;
            if args.mode.has_controller() {
                cloud.reconcile().await?;
            }
            if args.mode.has_node() {
                let id = args.node_id.clone().unwrap_or_else(hostname);
                check_node_id(&id)?;
                let zone = args.zone.clone().unwrap_or_else(|| cloud.zones()[0].clone());
                let node = Node {
                    id,
                    zone,
                    attach_limit: args.volume_attach_limit.unwrap_or(DEFAULT_ATTACH_LIMIT),
                };
                cloud.register_node(&node)?;
                info!(node = %node.id, zone = %node.zone, attach_limit = node.attach_limit, "node registered");
            }
            Ok(Arc::new(cloud))
        }
    }
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
    let extra_tags = parse_tags(&args.extra_tags)?;
    let cloud = open_backend(&args).await?;

    let identity = IdentityServer::new(IdentityService::new(args.driver_name.clone(), args.mode, cloud.clone()));
    let controller = args.mode.has_controller().then(|| {
        ControllerServer::new(ControllerService::new(
            cloud.clone(),
            Options {
                extra_tags,
                cluster_id: args.k8s_tag_cluster_id.clone(),
            },
        ))
    });
    let router = Server::builder().add_service(identity).add_optional_service(controller);

    match endpoint {
        Endpoint::Unix(path) => {
            let listener = bind_unix(&path)?;
            info!(endpoint = %args.endpoint, mode = ?args.mode, backend = ?args.backend, "serving");
            let result = router
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown_signal())
                .await;
            let _ = std::fs::remove_file(&path);
            result.map_err(|e| Error::internal("gRPC server", e))?;
        }
        Endpoint::Tcp(addr) => {
            let listener = TcpListener::bind(&addr)
                .await
                .map_err(|e| Error::internal(format!("cannot listen on {addr}"), e))?;
            info!(endpoint = %args.endpoint, mode = ?args.mode, backend = ?args.backend, "serving");
            router
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown_signal())
                .await
                .map_err(|e| Error::internal("gRPC server", e))?;
        }
    }
    info!("stopped");
    Ok(())
}
