//! Errors of the SLS client: what the service said, what the network did, and
//! what our own codec found in a response.
//!
//! Classification ([`SlsError::class`]) drives retries: transient faults are
//! retried with backoff, quota errors are retried with a longer backoff, and
//! everything else surfaces to the caller at once.

use std::fmt;

use crate::sls::codec::CodecError;

/// A documented SLS error code (`errorCode` in the JSON error body).
///
/// Unknown codes are kept verbatim in [`ErrorCode::Other`], so a code the
/// service adds later still reaches logs and metrics by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    // 400
    RequestTimeExpired,
    InvalidRequestTime,
    InvalidHost,
    PostBodyInvalid,
    ParameterInvalid,
    InvalidContentType,
    MissingBodyRawSize,
    InvalidBodyRawSize,
    InvalidCompressType,
    ProjectAlreadyExist,
    LogStoreAlreadyExist,
    LogStoreWithoutShard,
    ShardNotExist,
    InvalidCursor,
    InvalidShardCheckPoint,
    ConsumerGroupAlreadyExist,
    ConsumerGroupQuotaExceed,
    /// The consumer named in a checkpoint commit is not in the group
    /// (`ConsumerNotExsit` in Go's spelling, `ConsumerNotExist` in Java's).
    ConsumerNotExist,
    /// The consumer does not hold the shard it committed for.
    ConsumerNotMatch,
    // 401
    SignatureNotMatch,
    Unauthorized,
    InvalidAccessKeyId,
    // 403
    WriteQuotaExceed,
    ReadQuotaExceed,
    ShardWriteQuotaExceed,
    ShardReadQuotaExceed,
    ProjectForbidden,
    MetaOperationQpsLimitExceeded,
    // 404
    ProjectNotExist,
    LogStoreNotExist,
    ConsumerGroupNotExist,
    // 413
    PostBodyTooLarge,
    // 5xx
    InternalServerError,
    RequestTimeout,
    ServerBusy,
    Other(String),
}

impl ErrorCode {
    pub fn parse(code: &str) -> Self {
        use ErrorCode::*;
        match code {
            "RequestTimeExpired" => RequestTimeExpired,
            "InvalidRequestTime" => InvalidRequestTime,
            "InvalidHost" => InvalidHost,
            "PostBodyInvalid" => PostBodyInvalid,
            "ParameterInvalid" => ParameterInvalid,
            "InvalidContentType" => InvalidContentType,
            "MissingBodyRawSize" => MissingBodyRawSize,
            "InvalidBodyRawSize" => InvalidBodyRawSize,
            "InvalidCompressType" => InvalidCompressType,
            "ProjectAlreadyExist" => ProjectAlreadyExist,
            "LogStoreAlreadyExist" => LogStoreAlreadyExist,
            "LogStoreWithoutShard" => LogStoreWithoutShard,
            "ShardNotExist" | "ShardNotExsit" => ShardNotExist,
            "InvalidCursor" => InvalidCursor,
            "InvalidShardCheckPoint" => InvalidShardCheckPoint,
            "ConsumerGroupAlreadyExist" => ConsumerGroupAlreadyExist,
            "ConsumerGroupQuotaExceed" => ConsumerGroupQuotaExceed,
            "ConsumerNotExsit" | "ConsumerNotExist" => ConsumerNotExist,
            "ConsumerNotMatch" => ConsumerNotMatch,
            "SignatureNotMatch" => SignatureNotMatch,
            "Unauthorized" => Unauthorized,
            "InvalidAccessKeyId" => InvalidAccessKeyId,
            "WriteQuotaExceed" => WriteQuotaExceed,
            "ReadQuotaExceed" => ReadQuotaExceed,
            "ShardWriteQuotaExceed" => ShardWriteQuotaExceed,
            "ShardReadQuotaExceed" => ShardReadQuotaExceed,
            "ProjectForbidden" => ProjectForbidden,
            "MetaOperationQpsLimitExceeded" => MetaOperationQpsLimitExceeded,
            "ProjectNotExist" => ProjectNotExist,
            "LogStoreNotExist" => LogStoreNotExist,
            "ConsumerGroupNotExist" => ConsumerGroupNotExist,
            "PostBodyTooLarge" => PostBodyTooLarge,
            "InternalServerError" => InternalServerError,
            "RequestTimeout" => RequestTimeout,
            "ServerBusy" => ServerBusy,
            other => Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        use ErrorCode::*;
        match self {
            RequestTimeExpired => "RequestTimeExpired",
            InvalidRequestTime => "InvalidRequestTime",
            InvalidHost => "InvalidHost",
            PostBodyInvalid => "PostBodyInvalid",
            ParameterInvalid => "ParameterInvalid",
            InvalidContentType => "InvalidContentType",
            MissingBodyRawSize => "MissingBodyRawSize",
            InvalidBodyRawSize => "InvalidBodyRawSize",
            InvalidCompressType => "InvalidCompressType",
            ProjectAlreadyExist => "ProjectAlreadyExist",
            LogStoreAlreadyExist => "LogStoreAlreadyExist",
            LogStoreWithoutShard => "LogStoreWithoutShard",
            ShardNotExist => "ShardNotExist",
            InvalidCursor => "InvalidCursor",
            InvalidShardCheckPoint => "InvalidShardCheckPoint",
            ConsumerGroupAlreadyExist => "ConsumerGroupAlreadyExist",
            ConsumerGroupQuotaExceed => "ConsumerGroupQuotaExceed",
            ConsumerNotExist => "ConsumerNotExist",
            ConsumerNotMatch => "ConsumerNotMatch",
            SignatureNotMatch => "SignatureNotMatch",
            Unauthorized => "Unauthorized",
            InvalidAccessKeyId => "InvalidAccessKeyId",
            WriteQuotaExceed => "WriteQuotaExceed",
            ReadQuotaExceed => "ReadQuotaExceed",
            ShardWriteQuotaExceed => "ShardWriteQuotaExceed",
            ShardReadQuotaExceed => "ShardReadQuotaExceed",
            ProjectForbidden => "ProjectForbidden",
            MetaOperationQpsLimitExceeded => "MetaOperationQpsLimitExceeded",
            ProjectNotExist => "ProjectNotExist",
            LogStoreNotExist => "LogStoreNotExist",
            ConsumerGroupNotExist => "ConsumerGroupNotExist",
            PostBodyTooLarge => "PostBodyTooLarge",
            InternalServerError => "InternalServerError",
            RequestTimeout => "RequestTimeout",
            ServerBusy => "ServerBusy",
            Other(s) => s,
        }
    }

    /// Throttling by the service: worth retrying, but only after a longer pause.
    pub fn is_quota(&self) -> bool {
        use ErrorCode::*;
        matches!(
            self,
            WriteQuotaExceed
                | ReadQuotaExceed
                | ShardWriteQuotaExceed
                | ShardReadQuotaExceed
                | MetaOperationQpsLimitExceeded
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the retry loop treats an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Network errors, 5xx, `InternalServerError`, `RequestTimeout`, `ServerBusy`.
    Transient,
    /// 403 quota errors: back off longer, then retry.
    Quota,
    /// Everything else: the caller must act (bad cursor, auth, missing logstore...).
    Permanent,
}

#[derive(Debug, thiserror::Error)]
pub enum SlsError {
    /// The service answered with an error status and body.
    #[error("SLS {status} {code}: {message} (request id {request_id})")]
    Service {
        status: u16,
        code: ErrorCode,
        message: String,
        request_id: String,
    },
    /// The request never got an HTTP answer (connect, TLS, timeout, reset).
    #[error("SLS request failed: {0}")]
    Network(#[source] reqwest::Error),
    /// A 200 response whose body or headers we could not use.
    #[error("SLS response invalid: {0}")]
    InvalidResponse(String),
    /// A compressed or protobuf body we could not decode.
    #[error("SLS response body: {0}")]
    Codec(#[from] CodecError),
    /// The request was refused locally before it was sent.
    #[error("SLS request invalid: {0}")]
    InvalidRequest(String),
    /// A PutLogs past an SLS limit (log group 5 MiB raw, body 10 MiB),
    /// refused before it was sent: the same bytes can never succeed.
    #[error("SLS request of {size} bytes exceeds the limit of {limit} for {what}")]
    RequestTooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    /// The answer is larger than the caller allows (a PullLogs body past
    /// its cap, declared or received): not read, not retried as it is.
    #[error("SLS response of {} exceeds the {cap} bytes allowed", size.map_or("unknown size".to_owned(), |s| format!("{s} bytes")))]
    TooLarge { size: Option<u64>, cap: usize },
}

impl SlsError {
    pub fn class(&self) -> ErrorClass {
        match self {
            SlsError::Service { status, code, .. } => {
                if code.is_quota() {
                    ErrorClass::Quota
                } else if *status >= 500
                    || matches!(
                        code,
                        ErrorCode::InternalServerError
                            | ErrorCode::RequestTimeout
                            | ErrorCode::ServerBusy
                    )
                {
                    ErrorClass::Transient
                } else {
                    ErrorClass::Permanent
                }
            }
            SlsError::Network(_) => ErrorClass::Transient,
            // A truncated or corrupt body is most likely a transport fault; a
            // repeated read of the same cursor tells.
            SlsError::Codec(_) | SlsError::InvalidResponse(_) => ErrorClass::Transient,
            SlsError::InvalidRequest(_)
            | SlsError::RequestTooLarge { .. }
            | SlsError::TooLarge { .. } => ErrorClass::Permanent,
        }
    }

    /// The SLS error code, if the service answered with one.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            SlsError::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    /// A short, bounded label for metrics (`error_type`).
    pub fn kind(&self) -> &str {
        match self {
            SlsError::Service { code, .. } => match code {
                ErrorCode::Other(_) => "other",
                c => c.as_str(),
            },
            SlsError::Network(_) => "network",
            SlsError::InvalidResponse(_) => "invalid_response",
            SlsError::Codec(_) => "codec",
            SlsError::InvalidRequest(_) => "invalid_request",
            SlsError::RequestTooLarge { .. } => "request_too_large",
            SlsError::TooLarge { .. } => "too_large",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(status: u16, code: &str) -> SlsError {
        SlsError::Service {
            status,
            code: ErrorCode::parse(code),
            message: String::new(),
            request_id: String::new(),
        }
    }

    #[test]
    fn classification_follows_the_error_table() {
        let table = [
            (500, "InternalServerError", ErrorClass::Transient),
            (500, "RequestTimeout", ErrorClass::Transient),
            (503, "ServerBusy", ErrorClass::Transient),
            (502, "SomethingNew", ErrorClass::Transient),
            (403, "ShardReadQuotaExceed", ErrorClass::Quota),
            (403, "ShardWriteQuotaExceed", ErrorClass::Quota),
            (403, "WriteQuotaExceed", ErrorClass::Quota),
            (403, "ReadQuotaExceed", ErrorClass::Quota),
            (403, "MetaOperationQpsLimitExceeded", ErrorClass::Quota),
            (403, "ProjectForbidden", ErrorClass::Permanent),
            (401, "SignatureNotMatch", ErrorClass::Permanent),
            (401, "Unauthorized", ErrorClass::Permanent),
            (400, "InvalidCursor", ErrorClass::Permanent),
            (400, "ParameterInvalid", ErrorClass::Permanent),
            (404, "LogStoreNotExist", ErrorClass::Permanent),
            (413, "PostBodyTooLarge", ErrorClass::Permanent),
        ];
        for (status, code, class) in table {
            assert_eq!(service(status, code).class(), class, "{status} {code}");
        }
    }

    #[test]
    fn both_spellings_of_ownership_errors_parse() {
        assert_eq!(
            ErrorCode::parse("ConsumerNotExsit"),
            ErrorCode::ConsumerNotExist
        );
        assert_eq!(
            ErrorCode::parse("ConsumerNotExist"),
            ErrorCode::ConsumerNotExist
        );
        assert_eq!(ErrorCode::parse("ShardNotExsit"), ErrorCode::ShardNotExist);
        assert_eq!(
            ErrorCode::parse("Brand.New").as_str(),
            "Brand.New",
            "unknown codes keep their name"
        );
    }
}
