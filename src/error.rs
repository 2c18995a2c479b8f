//! The driver's one error type, mapped to a gRPC status in exactly one place.

use tonic::{Code, Status};

/// Every failure the driver can report. The variant decides the gRPC code; the message says which
/// volume and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A missing or malformed field or parameter.
    #[error("{0}")]
    InvalidArgument(String),
    /// A size outside what the volume type allows.
    #[error("{0}")]
    OutOfRange(String),
    /// An unknown volume, snapshot, node or path.
    #[error("{0}")]
    NotFound(String),
    /// A name reused with incompatible arguments, or a path holding something else.
    #[error("{0}")]
    AlreadyExists(String),
    /// The current state forbids the call.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Quotas and attach limits.
    #[error("{0}")]
    ResourceExhausted(String),
    /// Another call for the same object is in flight, or a paging token is stale.
    #[error("{0}")]
    Aborted(String),
    /// The backend cannot be reached right now; retrying may help.
    #[error("{0}")]
    Unavailable(String),
    /// The call is not supported by this driver or mode.
    #[error("{0}")]
    Unimplemented(String),
    /// Anything else: an OS or store failure.
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn internal(context: impl std::fmt::Display, err: impl std::fmt::Display) -> Self {
        Error::Internal(format!("{context}: {err}"))
    }

    pub fn code(&self) -> Code {
        match self {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::OutOfRange(_) => Code::OutOfRange,
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::Aborted(_) => Code::Aborted,
            Error::Unavailable(_) => Code::Unavailable,
            Error::Unimplemented(_) => Code::Unimplemented,
            Error::Internal(_) => Code::Internal,
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        Status::new(err.code(), err.to_string())
    }
}
