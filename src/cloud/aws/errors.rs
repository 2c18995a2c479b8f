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
            if is_refusal(code) {
                let (action, resource) = refused(message, operation::<E>());
                return Error::FailedPrecondition(format!(
                    "{what}: {}{request}",
                    crate::iam::refusal_hint(&action, &resource)
                ));
            }
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

fn is_refusal(code: &str) -> bool {
    matches!(code, "UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException")
}

/// The EC2 operation whose error type `E` is (`…::attach_volume::AttachVolumeError` →
/// `AttachVolume`).
fn operation<E>() -> &'static str {
    let name = std::any::type_name::<E>();
    let last = name.rsplit("::").next().unwrap_or(name);
    last.strip_suffix("Error").unwrap_or(last)
}

/// The action and resource an IAM refusal names ("… is not authorized to perform:
/// ec2:AttachVolume on resource: arn:aws:ec2:…:volume/vol-… because …"); the operation called
/// and no resource when the message does not say (it may carry only an encoded message).
fn refused(message: &str, called: &str) -> (String, String) {
    let word_after = |marker: &str| {
        message
            .split_once(marker)
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .map(|w| w.trim_end_matches(['.', ',', ';']).to_owned())
    };
    let action = word_after("perform: ").unwrap_or_else(|| format!("ec2:{called}"));
    let resource = word_after("on resource: ").unwrap_or_default();
    (action, resource)
}

/// Whether an InvalidParameter* message is about the volume's size (which the CSI spec answers
/// with OUT_OF_RANGE), rather than IOPS, throughput or another parameter.
fn about_size(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    let size_words = [
        "too large",
        "too small",
        "size is invalid",
        "at least",
        "maximum",
        "minimum",
    ];
    t.contains("gib") && size_words.iter().any(|w| t.contains(w)) && !t.contains("iops") && !t.contains("throughput")
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
        | "InvalidSnapshot.InUse"
        | "SnapshotLocked" => Error::FailedPrecondition(text),
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
        c if c.starts_with("InvalidParameter") && about_size(&text) => Error::OutOfRange(text),
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
        // A snapshot lock refusing a change, whatever EC2 calls it.
        c if c.contains("Locked") => Error::FailedPrecondition(text),
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
            ("SnapshotLocked", tonic::Code::FailedPrecondition),
            ("SomethingNew", tonic::Code::Internal),
        ];
        for (code, want) in cases {
            assert_eq!(by_code(code, code.to_owned()).code(), want, "{code}");
        }
    }

    #[test]
    fn size_errors_are_out_of_range_and_other_parameters_invalid() {
        let size =
            "EC2 InvalidParameterValue: Volume of 70000GiB is too large for volume type gp3; maximum is 65536GiB";
        assert_eq!(
            by_code("InvalidParameterValue", size.into()).code(),
            tonic::Code::OutOfRange
        );
        let small = "EC2 InvalidParameterValue: The volume size is invalid for io1 volumes: 1 GiB. io1 volumes must be at least 4 GiB in size.";
        assert_eq!(
            by_code("InvalidParameterValue", small.into()).code(),
            tonic::Code::OutOfRange
        );
        let ratio = "EC2 InvalidParameterValue: Iops to volume size ratio of 60 is too high; maximum is 50 per GiB";
        assert_eq!(
            by_code("InvalidParameterValue", ratio.into()).code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn a_refusal_names_its_action_and_resource() {
        let message = "You are not authorized to perform this operation. User: arn:aws:sts::111122223333:assumed-role/r/s \
                       is not authorized to perform: ec2:AttachVolume on resource: \
                       arn:aws:ec2:us-east-1:111122223333:volume/vol-0123456789abcdef0 because no identity-based policy allows it.";
        let (action, resource) = refused(message, "AttachVolume");
        assert_eq!(action, "ec2:AttachVolume");
        assert_eq!(
            resource,
            "arn:aws:ec2:us-east-1:111122223333:volume/vol-0123456789abcdef0"
        );
        assert_eq!(
            refused("Encoded authorization failure message: xyz", "CreateVolume"),
            ("ec2:CreateVolume".to_owned(), String::new())
        );
        assert_eq!(
            operation::<aws_sdk_ec2::operation::attach_volume::AttachVolumeError>(),
            "AttachVolume"
        );
    }
}
