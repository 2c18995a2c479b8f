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

/// A value for messages: quoted, and cut short so that a 10 KB value stays readable.
pub fn shown(s: &str) -> String {
    const LIMIT: usize = 64;
    match s.char_indices().nth(LIMIT) {
        None => format!("{s:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &s[..cut], s.len()),
    }
}

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

/// The longest message a status carries. Messages quote the request (an id, a path), and a
/// status travels in an HTTP/2 trailer, percent-encoded (up to three bytes for one): a client
/// refuses a trailer over its header-list limit (16 KiB in tonic) with a protocol error, which
/// its caller sees as INTERNAL or RESOURCE_EXHAUSTED instead of the code the driver chose.
const MAX_MESSAGE: usize = 4096;

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        Status::new(err.code(), bounded(err.to_string()))
    }
}

/// `message`, cut to [`MAX_MESSAGE`] bytes (on a character boundary) when longer.
fn bounded(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let total = message.len();
        let cut = (0..=MAX_MESSAGE)
            .rev()
            .find(|i| message.is_char_boundary(*i))
            .unwrap_or(0);
        message.truncate(cut);
        message.push_str(&format!("… ({total} bytes in all)"));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let short = Status::from(Error::NotFound("volume vol-1 does not exist".into()));
        assert_eq!(short.message(), "volume vol-1 does not exist");
        let text = format!("volume {} does not exist", "é".repeat(10_000));
        let long = Status::from(Error::NotFound(text.clone()));
        assert_eq!(long.code(), Code::NotFound);
        assert!(long.message().len() <= MAX_MESSAGE + 32, "{}", long.message().len());
        let (kept, _) = long.message().split_once('…').expect("the cut is marked");
        assert!(text.starts_with(kept));
        assert!(
            long.message().ends_with(&format!("({} bytes in all)", text.len())),
            "{}",
            long.message()
        );
    }
}
