//! A gRPC channel to a CSI endpoint (unix socket or TCP), for the `client` command and tests.

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Uri};

use crate::config::Endpoint;
use crate::error::{Error, Result};

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
