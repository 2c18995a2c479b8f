//! What every RPC handler shares: required-field checks, and one span per call that carries
//! the object id, logs the failure and maps the error to a gRPC status once.

use tonic::{Response, Status};
use tracing::{Instrument, info_span, warn};

use crate::error::{Error, Result};

/// A required string field: present and non-empty.
pub fn require<'a>(value: &'a str, field: &str) -> Result<&'a str> {
    if value.is_empty() {
        return Err(Error::InvalidArgument(format!("{field} is required")));
    }
    Ok(value)
}

/// Runs one RPC inside a span named for it, carrying the object id, and maps its error once.
pub async fn traced<T>(
    method: &'static str,
    id: &str,
    call: impl Future<Output = Result<T>>,
) -> Result<Response<T>, Status> {
    let span = info_span!("rpc", method, volume = %id);
    match call.instrument(span.clone()).await {
        Ok(v) => Ok(Response::new(v)),
        Err(e) => {
            span.in_scope(|| warn!(code = ?e.code(), error = %e, "{method} failed"));
            Err(e.into())
        }
    }
}
