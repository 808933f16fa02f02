//! How a refusal reads on each transport: one mapping from what went wrong (the key, storage,
//! the body) to the HTTP status with its `Retry-After` and to the gRPC status with its
//! `RetryInfo`, so that the OTLP receivers, the signals API and the read API never disagree on
//! what a client should do — retry later, split the request, fix it, or fix its key.

use std::time::Duration;

use axum::http::StatusCode;
use tonic::Status;

use crate::auth::AuthError;
use crate::otlp::DecodeError;
use crate::writer::WriteError;

/// What a client must do about a refused request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No key, an unknown key, a bad token: fix the credential (401, UNAUTHENTICATED).
    Unauthenticated,
    /// A revoked key (403, PERMISSION_DENIED).
    PermissionDenied,
    /// Storage or the key store is away: retry in a few seconds (503, UNAVAILABLE).
    Unavailable,
    /// At capacity: retry in a second (429, RESOURCE_EXHAUSTED with RetryInfo).
    Busy,
    /// Can never be stored as sent: split it (413, RESOURCE_EXHAUSTED without RetryInfo, which
    /// OTLP exporters do not retry).
    TooLarge,
    /// The request itself is wrong (400, INVALID_ARGUMENT).
    Invalid,
    /// A content type or encoding the collector does not read (415, INVALID_ARGUMENT).
    UnsupportedMediaType,
}

impl Refusal {
    pub fn of_auth(e: &AuthError) -> Refusal {
        match e {
            AuthError::Missing | AuthError::Unknown | AuthError::Token(_) => Refusal::Unauthenticated,
            AuthError::Revoked => Refusal::PermissionDenied,
            AuthError::Unavailable(_) => Refusal::Unavailable,
        }
    }

    pub fn of_write(e: &WriteError) -> Refusal {
        match e {
            WriteError::Busy => Refusal::Busy,
            WriteError::TooLarge { .. } => Refusal::TooLarge,
            WriteError::Storage(_) | WriteError::Stopped => Refusal::Unavailable,
        }
    }

    pub fn of_decode(e: &DecodeError) -> Refusal {
        match e {
            DecodeError::UnsupportedMediaType(_) | DecodeError::UnsupportedEncoding(_) => Refusal::UnsupportedMediaType,
            DecodeError::TooLarge { .. } => Refusal::TooLarge,
            DecodeError::BadCompression { .. } | DecodeError::Malformed { .. } => Refusal::Invalid,
            DecodeError::Busy => Refusal::Busy,
        }
    }

    /// The HTTP status, and the seconds of `Retry-After` when the client should retry.
    pub fn http(self) -> (StatusCode, Option<u64>) {
        match self {
            Refusal::Unauthenticated => (StatusCode::UNAUTHORIZED, None),
            Refusal::PermissionDenied => (StatusCode::FORBIDDEN, None),
            Refusal::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, Some(5)),
            Refusal::Busy => (StatusCode::TOO_MANY_REQUESTS, Some(1)),
            Refusal::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, None),
            Refusal::Invalid => (StatusCode::BAD_REQUEST, None),
            Refusal::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, None),
        }
    }

    /// The gRPC status carrying `message`.
    pub fn grpc(self, message: impl Into<String>) -> Status {
        let message = message.into();
        match self {
            Refusal::Unauthenticated => Status::unauthenticated(message),
            Refusal::PermissionDenied => Status::permission_denied(message),
            Refusal::Unavailable => Status::unavailable(message),
            // With RetryInfo, as the HTTP answer has Retry-After: exporters retry, nothing is
            // dropped.
            Refusal::Busy => busy(&message, Duration::from_secs(1)),
            Refusal::TooLarge => Status::resource_exhausted(message),
            Refusal::Invalid | Refusal::UnsupportedMediaType => Status::invalid_argument(message),
        }
    }
}

/// RESOURCE_EXHAUSTED with a RetryInfo of `after`: the status OTLP exporters retry.
pub fn busy(message: &str, after: Duration) -> Status {
    use tonic_types::{ErrorDetails, StatusExt};
    Status::with_error_details(tonic::Code::ResourceExhausted, message, ErrorDetails::with_retry_info(Some(after)))
}

/// The `google.rpc.Code` of an OTLP/HTTP error body, for its HTTP status.
pub fn rpc_code(status: StatusCode) -> i32 {
    match status {
        StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => 3, // INVALID_ARGUMENT
        StatusCode::UNAUTHORIZED => 16,
        StatusCode::FORBIDDEN => 7,
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::TOO_MANY_REQUESTS => 8,
        _ => 14, // UNAVAILABLE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_transports_tell_a_client_the_same_thing() {
        for r in [
            Refusal::Unauthenticated,
            Refusal::PermissionDenied,
            Refusal::Unavailable,
            Refusal::Busy,
            Refusal::TooLarge,
            Refusal::Invalid,
            Refusal::UnsupportedMediaType,
        ] {
            let (status, retry) = r.http();
            let grpc = r.grpc("x");
            // The body code of an HTTP refusal is the gRPC code of the same refusal.
            assert_eq!(rpc_code(status), grpc.code() as i32, "{r:?}");
            // Retry when, and only when, the gRPC status says so too (RetryInfo, or UNAVAILABLE
            // that exporters always retry).
            let grpc_retries = grpc.code() == tonic::Code::Unavailable || !grpc.details().is_empty();
            assert_eq!(retry.is_some(), grpc_retries, "{r:?}");
        }
    }
}
