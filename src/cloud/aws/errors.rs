//! EC2 failures → the driver's error, by EC2 error code, with EC2's request id kept in the
//! message so a user can quote it to AWS support.

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::operation::RequestId;

use crate::error::Error;

/// The error code and message of a service error, if that is what this is.
pub fn code_of<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<&str> {
    match err {
        SdkError::ServiceError(e) => e.err().code(),
        _ => None,
    }
}

/// Maps an EC2 call's failure: `what` says what was being done ("creating volume pvc-1").
pub fn map<E, R>(what: &str, err: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + RequestId + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("Unknown");
            let message = e.message().unwrap_or("");
            let request = e.request_id().map(|r| format!(" (request id {r})")).unwrap_or_default();
            let text = format!("{what}: EC2 {code}: {message}{request}");
            by_code(code, text)
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Error::Unavailable(format!(
                "{what}: EC2 did not answer ({}); retry",
                aws_sdk_ec2::error::DisplayErrorContext(&err)
            ))
        }
        _ => Error::Internal(format!("{what}: {}", aws_sdk_ec2::error::DisplayErrorContext(&err))),
    }
}

/// The gRPC-facing class of an EC2 error code.
pub fn by_code(code: &str, text: String) -> Error {
    match code {
        "InvalidVolume.NotFound"
        | "InvalidSnapshot.NotFound"
        | "InvalidInstanceID.NotFound"
        | "InvalidInstanceID.Malformed"
        | "InvalidVolumeID.Malformed"
        | "InvalidSnapshotID.Malformed" => Error::NotFound(text),
        "IncorrectState"
        | "IncorrectInstanceState"
        | "VolumeInUse"
        | "IncorrectModificationState"
        | "InvalidVolume.ZoneMismatch"
        | "InvalidAttachment.NotFound"
        | "InvalidSnapshot.InUse" => Error::FailedPrecondition(text),
        "IdempotentParameterMismatch" => Error::AlreadyExists(text),
        "VolumeLimitExceeded"
        | "AttachmentLimitExceeded"
        | "SnapshotLimitExceeded"
        | "InsufficientVolumeCapacity"
        | "MaxIOPSLimitExceeded"
        | "VolumeModificationRateExceeded" => Error::ResourceExhausted(text),
        "RequestLimitExceeded"
        | "Throttling"
        | "ThrottlingException"
        | "ServiceUnavailable"
        | "InternalError"
        | "Unavailable"
        | "InsufficientInstanceCapacity" => Error::Unavailable(text),
        "UnauthorizedOperation" | "AuthFailure" | "Blocked" | "OptInRequired" => Error::FailedPrecondition(format!(
            "{text}; check the controller's IAM policy (ebs-csi iam policy)"
        )),
        c if c.starts_with("InvalidParameter")
            || c.starts_with("InvalidZone")
            || c == "MissingParameter"
            || c.ends_with(".Malformed")
            || c == "UnknownVolumeType"
            || c == "InvalidKMSKey.NotFound"
            || c == "KMSKeyNotAccessible" =>
        {
            Error::InvalidArgument(text)
        }
        c if c.ends_with("LimitExceeded") => Error::ResourceExhausted(text),
        _ => Error::Internal(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_the_grpc_classes_the_spec_wants() {
        let cases = [
            ("InvalidParameterValue", tonic::Code::InvalidArgument),
            ("InvalidZone.NotFound", tonic::Code::InvalidArgument),
            ("VolumeLimitExceeded", tonic::Code::ResourceExhausted),
            ("AttachmentLimitExceeded", tonic::Code::ResourceExhausted),
            ("InvalidVolume.NotFound", tonic::Code::NotFound),
            ("IncorrectState", tonic::Code::FailedPrecondition),
            ("VolumeInUse", tonic::Code::FailedPrecondition),
            ("RequestLimitExceeded", tonic::Code::Unavailable),
            ("VolumeModificationRateExceeded", tonic::Code::ResourceExhausted),
            ("SomethingNew", tonic::Code::Internal),
        ];
        for (code, want) in cases {
            assert_eq!(by_code(code, code.to_owned()).code(), want, "{code}");
        }
    }
}
