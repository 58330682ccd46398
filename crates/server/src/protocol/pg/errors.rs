//! Engine errors to Postgres ErrorResponses: the one place SQLSTATEs are chosen.

use pgwire::error::{ErrorInfo, PgWireError};

use crate::engine::{EngineError, ErrorKind};

/// The SQLSTATE of an error class.
pub fn sqlstate(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Syntax => "42601",
        ErrorKind::InsufficientPrivilege => "42501",
        ErrorKind::UndefinedTable => "42P01",
        ErrorKind::UndefinedColumn => "42703",
        ErrorKind::UndefinedFunction => "42883",
        ErrorKind::UndefinedSchema => "3F000",
        ErrorKind::UndefinedObject => "42704",
        ErrorKind::DuplicateTable => "42P07",
        ErrorKind::DuplicateSchema => "42P06",
        ErrorKind::DuplicateObject => "42710",
        ErrorKind::DuplicateColumn => "42701",
        ErrorKind::UndefinedCursor => "34000",
        ErrorKind::DuplicateCursor => "42P03",
        ErrorKind::WrongObjectState => "55000",
        ErrorKind::WrongObjectType => "42809",
        ErrorKind::AmbiguousColumn => "42702",
        ErrorKind::DatatypeMismatch => "42804",
        ErrorKind::DivisionByZero => "22012",
        ErrorKind::NumericOutOfRange => "22003",
        ErrorKind::StringDataRightTruncation => "22001",
        ErrorKind::InvalidTextRepresentation => "22P02",
        ErrorKind::BadCopyFileFormat => "22P04",
        ErrorKind::InvalidBinaryRepresentation => "22P03",
        ErrorKind::CharacterNotInRepertoire => "22021",
        ErrorKind::InvalidParameterValue => "22023",
        ErrorKind::InvalidRegularExpression => "2201B",
        ErrorKind::DataException => "22000",
        ErrorKind::NotSupported => "0A000",
        ErrorKind::InvalidName => "42602",
        ErrorKind::ResourcesExhausted => "53200",
        ErrorKind::TooComplex => "54001",
        ErrorKind::SerializationFailure => "40001",
        ErrorKind::LockNotAvailable => "55P03",
        ErrorKind::NotNullViolation => "23502",
        ErrorKind::CheckViolation => "23514",
        ErrorKind::InFailedTransaction => "25P02",
        ErrorKind::ActiveTransaction => "25001",
        ErrorKind::NoActiveTransaction => "25P01",
        ErrorKind::UndefinedSavepoint => "3B001",
        ErrorKind::DependentObjectsStillExist => "2BP01",
        ErrorKind::CardinalityViolation => "21000",
        ErrorKind::Cancelled => "57014",
        ErrorKind::Timeout => "57014",
        ErrorKind::Io => "58030",
        ErrorKind::Internal => "XX000",
    }
}

/// An ErrorResponse for an engine error.
pub fn to_pg(e: &EngineError) -> PgWireError {
    let kind = e.kind();
    if kind == ErrorKind::Internal {
        tracing::warn!(error = %e, "internal error");
    }
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        sqlstate(kind).to_string(),
        e.message(),
    )))
}

/// An ErrorResponse for an error raised while rows were streaming.
pub fn stream_error(e: datafusion::error::DataFusionError) -> PgWireError {
    to_pg(&EngineError::from_stream(e))
}
