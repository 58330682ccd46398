//! Engine errors to gRPC statuses: the one place Flight status codes are chosen.
//!
//! The message is the one the Postgres side sends; the SQLSTATE rides along in the
//! `x-tidepool-sqlstate` metadata so clients that care can tell errors apart precisely.

use tonic::{Code, Status};

use crate::engine::{EngineError, ErrorKind};
use crate::protocol::pg::errors::sqlstate;

/// The gRPC code of an error class.
pub fn code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::Syntax
        | ErrorKind::UndefinedColumn
        | ErrorKind::UndefinedFunction
        | ErrorKind::AmbiguousColumn
        | ErrorKind::DatatypeMismatch
        | ErrorKind::DivisionByZero
        | ErrorKind::NumericOutOfRange
        | ErrorKind::StringDataRightTruncation
        | ErrorKind::InvalidTextRepresentation
        | ErrorKind::BadCopyFileFormat
        | ErrorKind::InvalidBinaryRepresentation
        | ErrorKind::CharacterNotInRepertoire
        | ErrorKind::InvalidParameterValue
        | ErrorKind::InvalidRegularExpression
        | ErrorKind::DataException
        | ErrorKind::InvalidName => Code::InvalidArgument,
        ErrorKind::UndefinedTable
        | ErrorKind::UndefinedSchema
        | ErrorKind::UndefinedObject
        | ErrorKind::UndefinedCursor => Code::NotFound,
        ErrorKind::DuplicateTable
        | ErrorKind::DuplicateSchema
        | ErrorKind::DuplicateObject
        | ErrorKind::DuplicateColumn
        | ErrorKind::DuplicateCursor => Code::AlreadyExists,
        ErrorKind::WrongObjectState
        | ErrorKind::WrongObjectType
        | ErrorKind::InFailedTransaction
        | ErrorKind::ActiveTransaction
        | ErrorKind::NoActiveTransaction => Code::FailedPrecondition,
        ErrorKind::UndefinedSavepoint => Code::NotFound,
        ErrorKind::DependentObjectsStillExist => Code::FailedPrecondition,
        ErrorKind::InsufficientPrivilege => Code::PermissionDenied,
        ErrorKind::NotSupported => Code::Unimplemented,
        ErrorKind::ResourcesExhausted => Code::ResourceExhausted,
        ErrorKind::TooComplex => Code::InvalidArgument,
        ErrorKind::SerializationFailure => Code::Aborted,
        ErrorKind::LockNotAvailable => Code::Unavailable,
        ErrorKind::NotNullViolation | ErrorKind::CheckViolation => Code::InvalidArgument,
        ErrorKind::CardinalityViolation => Code::InvalidArgument,
        ErrorKind::Cancelled => Code::Cancelled,
        ErrorKind::Timeout => Code::DeadlineExceeded,
        ErrorKind::Io => Code::Unavailable,
        ErrorKind::Internal => Code::Internal,
    }
}

/// A status for an engine error.
pub fn status(e: &EngineError) -> Status {
    let kind = e.kind();
    if kind == ErrorKind::Internal {
        tracing::warn!(error = %e, "internal error");
    }
    let code = match e {
        EngineError::ShuttingDown => Code::Unavailable,
        _ => code(kind),
    };
    let mut status = Status::new(code, e.message());
    if let Ok(v) = sqlstate(kind).parse() {
        status.metadata_mut().insert("x-tidepool-sqlstate", v);
    }
    status
}

/// A status for an error raised while batches were streaming.
pub fn stream_status(e: datafusion::error::DataFusionError) -> Status {
    status(&EngineError::from_stream(e))
}

/// A status for a malformed request (not SQL).
pub fn invalid(message: impl Into<String>) -> Status {
    Status::invalid_argument(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_map_to_codes() {
        let e = EngineError::UndefinedTable("public.nope".into());
        let s = status(&e);
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.message(), "relation \"public.nope\" does not exist");
        assert_eq!(
            s.metadata()
                .get("x-tidepool-sqlstate")
                .map(|v| v.to_str().ok()),
            Some(Some("42P01"))
        );
        assert_eq!(status(&EngineError::Cancelled).code(), Code::Cancelled);
        assert_eq!(
            status(&EngineError::PermissionDenied("no".into())).code(),
            Code::PermissionDenied
        );
        assert_eq!(
            status(&EngineError::Syntax("bad".into())).code(),
            Code::InvalidArgument
        );
        assert_eq!(status(&EngineError::ShuttingDown).code(), Code::Unavailable);
    }
}
