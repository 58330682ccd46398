//! Errors of the engine layer and their protocol-neutral classification.
//!
//! [`EngineError::kind`] says what class of failure a statement hit (syntax, unknown table,
//! data exception...). Protocol adapters turn a kind into their own code (a SQLSTATE for
//! Postgres, a gRPC status for Flight) in one place each.

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;

use tidepool_lake::LakeError;

/// What MERGE reports when a target row would be acted on twice (21000), as PostgreSQL.
pub(crate) const MERGE_TWICE: &str = "MERGE command cannot affect row a second time";

/// The class of an error, independent of the protocol that reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Syntax,
    UndefinedTable,
    UndefinedColumn,
    UndefinedFunction,
    UndefinedSchema,
    UndefinedObject,
    DuplicateTable,
    DuplicateSchema,
    DuplicateObject,
    /// ADD COLUMN of a name the table has (42701).
    DuplicateColumn,
    /// An unknown cursor name in FETCH or CLOSE (34000).
    UndefinedCursor,
    /// DECLARE of a cursor name already open (42P03).
    DuplicateCursor,
    /// An operation the object's state does not allow, like FETCH BACKWARD (55000).
    WrongObjectState,
    /// A statement for one kind of relation naming another: DROP TABLE of a view (42809).
    WrongObjectType,
    AmbiguousColumn,
    DatatypeMismatch,
    DivisionByZero,
    NumericOutOfRange,
    /// A value longer than its `varchar(n)` / `char(n)` column (22001).
    StringDataRightTruncation,
    InvalidTextRepresentation,
    /// COPY data that is not rows of the expected shape (22P04).
    BadCopyFileFormat,
    /// A binary value of the wrong size or form (22P03).
    InvalidBinaryRepresentation,
    /// Bytes that are not UTF-8 (22021).
    CharacterNotInRepertoire,
    InvalidParameterValue,
    /// A regular expression that does not compile (2201B).
    InvalidRegularExpression,
    DataException,
    NotSupported,
    InvalidName,
    ResourcesExhausted,
    /// A statement nested deeper than the server plans (54001).
    TooComplex,
    /// A write lost a commit race with another writer; retry (40001).
    SerializationFailure,
    /// Another process holds what the statement needs (55P03).
    LockNotAvailable,
    /// NULL into a NOT NULL column (23502).
    NotNullViolation,
    /// A row a CHECK constraint refuses (23514).
    CheckViolation,
    /// A statement after an error in a transaction block, before ROLLBACK (25P02).
    InFailedTransaction,
    /// A statement a transaction block that has written does not allow (25001).
    ActiveTransaction,
    /// SAVEPOINT and friends outside a transaction block (25P01).
    NoActiveTransaction,
    /// ROLLBACK TO or RELEASE of a savepoint that does not exist (3B001).
    UndefinedSavepoint,
    /// DROP of an object others depend on, without CASCADE (2BP01).
    DependentObjectsStillExist,
    /// A scalar subquery returned more than one row (21000).
    CardinalityViolation,
    Cancelled,
    Timeout,
    InsufficientPrivilege,
    Io,
    Internal,
}

/// Why a statement failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("syntax error: {0}")]
    Parse(#[from] ParserError),
    #[error("{0}")]
    DataFusion(Box<DataFusionError>),
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("relation \"{0}\" does not exist")]
    UndefinedTable(String),
    #[error("relation \"{0}\" already exists")]
    DuplicateTable(String),
    #[error("schema \"{0}\" does not exist")]
    UndefinedSchema(String),
    #[error("schema \"{0}\" already exists")]
    DuplicateSchema(String),
    #[error("unrecognized configuration parameter \"{0}\"")]
    UnknownSetting(String),
    #[error("invalid value for parameter \"{name}\": {message}")]
    InvalidSetting { name: String, message: String },
    #[error("{0} is not supported")]
    NotSupported(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("canceling statement due to user request")]
    Cancelled,
    #[error("canceling statement due to statement timeout")]
    Timeout,
    #[error("the server is shutting down")]
    ShuttingDown,
    /// An unknown procedure, or arguments that match no signature (42883).
    #[error("{0}")]
    UndefinedFunction(String),
    /// A value that does not convert to the declared type (22P02).
    #[error("{0}")]
    InvalidText(String),
    /// A value out of its type's range, in PostgreSQL's words (22003).
    #[error("{0}")]
    NumericOutOfRange(String),
    /// COPY data of the wrong shape, naming its line (22P04).
    #[error("{0}")]
    BadCopyData(String),
    /// A binary COPY value of the wrong size or form, naming its row (22P03).
    #[error("{0}")]
    InvalidBinary(String),
    /// The client ended a COPY FROM STDIN with CopyFail (57014).
    #[error("COPY from stdin failed: {0}")]
    CopyFailed(String),
    /// COPY data that is not UTF-8, naming its line (22021).
    #[error("{0}")]
    InvalidEncoding(String),
    /// A statement tidepool parses itself that is malformed (42601).
    #[error("{0}")]
    Syntax(String),
    /// What the user may not touch (42501).
    #[error("{0}")]
    PermissionDenied(String),
    #[error(transparent)]
    TooComplex(#[from] super::complexity::TooComplex),
    #[error("cursor \"{0}\" does not exist")]
    UndefinedCursor(String),
    #[error("cursor \"{0}\" already exists")]
    DuplicateCursor(String),
    /// A statement the object's current state does not allow (55000).
    #[error("{0}")]
    WrongObjectState(String),
    /// A statement for one kind of relation naming another (42809).
    #[error("{0}")]
    WrongObjectType(String),
    /// A role, policy or other named object that does not exist (42704).
    #[error("{0}")]
    UndefinedObject(String),
    /// A policy or other named object that exists already (42710).
    #[error("{0}")]
    DuplicateObject(String),
    #[error("current transaction is aborted, commands ignored until end of transaction block")]
    InFailedTransaction,
    /// A statement a transaction block that has written does not allow (25001).
    #[error("{0}")]
    ActiveTransaction(String),
    /// A statement that needs a transaction block outside one (25P01).
    #[error("{0} can only be used in transaction blocks")]
    NoActiveTransaction(String),
    #[error("savepoint \"{0}\" does not exist")]
    UndefinedSavepoint(String),
    /// DROP without CASCADE of something views read (2BP01).
    #[error("{0}")]
    DependentObjects(String),
}

impl From<datafusion::arrow::error::ArrowError> for EngineError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        EngineError::from(DataFusionError::from(e))
    }
}

impl From<DataFusionError> for EngineError {
    fn from(e: DataFusionError) -> Self {
        EngineError::DataFusion(Box::new(e))
    }
}

impl EngineError {
    /// The engine error behind an error a result stream raised (cancel, timeout and
    /// procedure errors travel through DataFusion as `External`).
    pub fn from_stream(e: DataFusionError) -> EngineError {
        match e {
            DataFusionError::External(inner) => match inner.downcast::<EngineError>() {
                Ok(engine) => *engine,
                Err(other) => EngineError::from(DataFusionError::External(other)),
            },
            other => EngineError::from(other),
        }
    }

    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        if let Some(kind) = kind_by_message(&self.to_string()) {
            return kind;
        }
        match self {
            EngineError::Parse(ParserError::RecursionLimitExceeded) => ErrorKind::TooComplex,
            EngineError::Parse(_) => ErrorKind::Syntax,
            EngineError::TooComplex(_) => ErrorKind::TooComplex,
            EngineError::DataFusion(e) => classify_datafusion(e),
            EngineError::Lake(e) => classify_lake(e),
            EngineError::UndefinedTable(_) => ErrorKind::UndefinedTable,
            EngineError::DuplicateTable(_) => ErrorKind::DuplicateTable,
            EngineError::UndefinedSchema(_) => ErrorKind::UndefinedSchema,
            EngineError::DuplicateSchema(_) => ErrorKind::DuplicateSchema,
            EngineError::UnknownSetting(_) => ErrorKind::UndefinedObject,
            EngineError::InvalidSetting { .. } => ErrorKind::InvalidParameterValue,
            EngineError::NotSupported(_) => ErrorKind::NotSupported,
            EngineError::InvalidArgument(_) => ErrorKind::InvalidParameterValue,
            EngineError::Cancelled => ErrorKind::Cancelled,
            EngineError::Timeout => ErrorKind::Timeout,
            EngineError::ShuttingDown => ErrorKind::ResourcesExhausted,
            EngineError::UndefinedFunction(_) => ErrorKind::UndefinedFunction,
            EngineError::InvalidText(_) => ErrorKind::InvalidTextRepresentation,
            EngineError::NumericOutOfRange(_) => ErrorKind::NumericOutOfRange,
            EngineError::BadCopyData(_) => ErrorKind::BadCopyFileFormat,
            EngineError::CopyFailed(_) => ErrorKind::Cancelled,
            EngineError::InvalidBinary(_) => ErrorKind::InvalidBinaryRepresentation,
            EngineError::InvalidEncoding(_) => ErrorKind::CharacterNotInRepertoire,
            EngineError::Syntax(_) => ErrorKind::Syntax,
            EngineError::PermissionDenied(_) => ErrorKind::InsufficientPrivilege,
            EngineError::UndefinedObject(_) => ErrorKind::UndefinedObject,
            EngineError::DuplicateObject(_) => ErrorKind::DuplicateObject,
            EngineError::UndefinedCursor(_) => ErrorKind::UndefinedCursor,
            EngineError::DuplicateCursor(_) => ErrorKind::DuplicateCursor,
            EngineError::WrongObjectState(_) => ErrorKind::WrongObjectState,
            EngineError::WrongObjectType(_) => ErrorKind::WrongObjectType,
            EngineError::InFailedTransaction => ErrorKind::InFailedTransaction,
            EngineError::ActiveTransaction(_) => ErrorKind::ActiveTransaction,
            EngineError::NoActiveTransaction(_) => ErrorKind::NoActiveTransaction,
            EngineError::UndefinedSavepoint(_) => ErrorKind::UndefinedSavepoint,
            EngineError::DependentObjects(_) => ErrorKind::DependentObjectsStillExist,
        }
    }

    /// The message shown to a user: DataFusion's context wrappers are removed.
    pub fn message(&self) -> String {
        let message = match self {
            EngineError::DataFusion(e) => datafusion_message(e),
            other => other.to_string(),
        };
        if let Some((words, _)) = copy_error(&message) {
            return words.to_string();
        }
        match self.kind() {
            ErrorKind::SerializationFailure => format!(
                "could not serialize access due to a concurrent write to the same table; \
                 retry the transaction ({message})"
            ),
            ErrorKind::NotNullViolation => {
                format!("null value violates a not-null constraint ({message})")
            }
            // The check of an INSERT's rows (crate::constraints) wrapped by delta-rs.
            ErrorKind::CheckViolation => match message.find("new row for relation") {
                Some(at) => message[at..].to_string(),
                None => message,
            },
            ErrorKind::StringDataRightTruncation => match message.find("value too long for type") {
                Some(at) => message[at..].to_string(),
                None => message,
            },
            ErrorKind::NumericOutOfRange => match out_of_range(&message) {
                Some(pg) => pg.to_string(),
                None => message,
            },
            _ => message,
        }
    }
}

/// PostgreSQL's words for a number that does not fit an integer type, from arrow's
/// "Can't cast value 70000 to type Int16" (or already in them: checked arithmetic).
fn out_of_range(message: &str) -> Option<&'static str> {
    for words in [
        "smallint out of range",
        "integer out of range",
        "bigint out of range",
    ] {
        if message.contains(words) {
            return Some(words);
        }
    }
    let (_, to) = message.split_once("Can't cast value")?;
    let to = to.split_once("to type ")?.1;
    Some(if to.starts_with("Int16") {
        "smallint out of range"
    } else if to.starts_with("Int32") {
        "integer out of range"
    } else if to.starts_with("Int64") {
        "bigint out of range"
    } else {
        return None;
    })
}

/// The words of COPY's own errors ([`crate::copy`]), found in the text of whatever
/// wrapped them: a COPY FROM's rows reach the write as a stream, and delta-rs keeps only
/// the text of an error its input raised.
const COPY_PHRASES: &[(&str, ErrorKind)] = &[
    ("missing data for column", ErrorKind::BadCopyFileFormat),
    (
        "extra data after last expected column",
        ErrorKind::BadCopyFileFormat,
    ),
    (
        "unterminated CSV quoted field",
        ErrorKind::BadCopyFileFormat,
    ),
    (
        "COPY file signature not recognized",
        ErrorKind::BadCopyFileFormat,
    ),
    ("row field count is", ErrorKind::BadCopyFileFormat),
    ("unexpected EOF in COPY data", ErrorKind::BadCopyFileFormat),
    (
        "invalid input syntax for type",
        ErrorKind::InvalidTextRepresentation,
    ),
    (
        "incorrect binary data format",
        ErrorKind::InvalidBinaryRepresentation,
    ),
    (
        "invalid byte sequence for encoding",
        ErrorKind::CharacterNotInRepertoire,
    ),
    ("COPY from stdin failed", ErrorKind::Cancelled),
    ("is out of range for type", ErrorKind::NumericOutOfRange),
];

/// A COPY error's own words within `message`, and its class.
fn copy_error(message: &str) -> Option<(&str, ErrorKind)> {
    COPY_PHRASES.iter().find_map(|(phrase, kind)| {
        let at = message.find(phrase)?;
        // `value "12" is out of range for type integer` starts before its phrase.
        let start = match kind {
            ErrorKind::NumericOutOfRange => message[..at].rfind("value \"")?,
            _ => at,
        };
        Some((&message[start..], *kind))
    })
}

/// Failures recognized by their text wherever they were wrapped (delta-rs and arrow
/// errors reach us inside DataFusion's, lake and external errors alike).
fn kind_by_message(message: &str) -> Option<ErrorKind> {
    if let Some((_, kind)) = copy_error(message) {
        return Some(kind);
    }
    if message.contains("Failed to commit transaction")
        || message.contains("Tried committing existing table version")
        || message.contains("Delta transaction failed, version")
    {
        Some(ErrorKind::SerializationFailure)
    } else if message.contains("violates check constraint")
        // ALTER TABLE ... ADD CHECK tried on the rows there.
        || (message.contains("check constraint") && message.contains("is violated by some row"))
    {
        Some(ErrorKind::CheckViolation)
    } else if message.contains("declared as non-nullable but contains null values")
        // delta-rs's check of a write against the table's NOT NULL columns.
        || message.contains("rows failed validation check")
    {
        Some(ErrorKind::NotNullViolation)
    } else if message.contains("too large to store in a Decimal")
        // arrow's cast of a number that does not fit the narrower type.
        || message.contains("Can't cast value")
        || message.contains("Overflow happened on")
    {
        Some(ErrorKind::NumericOutOfRange)
    } else if message.contains("value too long for type") {
        Some(ErrorKind::StringDataRightTruncation)
    } else if message.contains("Scalar subquery returned more than one row")
        // delta-rs's words for PostgreSQL's "MERGE command cannot affect row a second time".
        || message.contains("MERGE matched a target row with multiple source rows")
        || message.contains(MERGE_TWICE)
    {
        Some(ErrorKind::CardinalityViolation)
    } else {
        None
    }
}

fn classify_lake(e: &LakeError) -> ErrorKind {
    match e {
        LakeError::TableNotFound(_) => ErrorKind::UndefinedTable,
        LakeError::TableExists(_) => ErrorKind::DuplicateTable,
        LakeError::InvalidName(_) => ErrorKind::InvalidName,
        LakeError::InvalidVersion(_) => ErrorKind::InvalidParameterValue,
        LakeError::SchemaNotEmpty(_) => ErrorKind::DependentObjectsStillExist,
        LakeError::InvalidMerge(_) => ErrorKind::Syntax,
        LakeError::ColumnExists(_) => ErrorKind::DuplicateColumn,
        LakeError::DuplicateConstraint(_) => ErrorKind::DuplicateObject,
        LakeError::CheckViolation(_) => ErrorKind::CheckViolation,
        LakeError::UndefinedColumn(_) => ErrorKind::UndefinedColumn,
        LakeError::NotNullViolation(_) => ErrorKind::NotNullViolation,
        LakeError::Unsupported(_) => ErrorKind::NotSupported,
        LakeError::SerializationFailure(_) => ErrorKind::SerializationFailure,
        LakeError::Busy(_) => ErrorKind::LockNotAvailable,
        LakeError::Commit(_) => ErrorKind::Internal,
        LakeError::UnsupportedScheme(_) => ErrorKind::NotSupported,
        LakeError::UnnamedStore(_) => ErrorKind::InsufficientPrivilege,
        LakeError::DataFusion(e) => classify_datafusion(e),
        LakeError::Delta(d) => match d {
            deltalake::DeltaTableError::NotATable(_) => ErrorKind::UndefinedTable,
            deltalake::DeltaTableError::InvalidVersion(_) => ErrorKind::InvalidParameterValue,
            deltalake::DeltaTableError::Arrow { source } => classify_arrow(source),
            _ => ErrorKind::Io,
        },
        LakeError::Arrow(a) => classify_arrow(a),
        LakeError::Store(_) | LakeError::Io { .. } | LakeError::Parquet(_) => ErrorKind::Io,
        LakeError::InvalidRoot(_) | LakeError::InvalidSetting(_) => ErrorKind::Internal,
    }
}

/// Strips `Context`, `Shared` and diagnostic wrappers.
fn innermost(e: &DataFusionError) -> &DataFusionError {
    match e {
        DataFusionError::Context(_, inner) => innermost(inner),
        DataFusionError::Shared(inner) => innermost(inner),
        DataFusionError::Diagnostic(_, inner) => innermost(inner),
        DataFusionError::Collection(errs) if !errs.is_empty() => innermost(&errs[0]),
        other => other,
    }
}

fn classify_arrow(e: &ArrowError) -> ErrorKind {
    match e {
        ArrowError::DivideByZero => ErrorKind::DivisionByZero,
        ArrowError::ArithmeticOverflow(_) => ErrorKind::NumericOutOfRange,
        ArrowError::CastError(_) | ArrowError::ParseError(_) => {
            ErrorKind::InvalidTextRepresentation
        }
        ArrowError::ComputeError(_) | ArrowError::InvalidArgumentError(_) => {
            ErrorKind::DataException
        }
        ArrowError::MemoryError(_) => ErrorKind::ResourcesExhausted,
        ArrowError::NotYetImplemented(_) => ErrorKind::NotSupported,
        ArrowError::IoError(..) => ErrorKind::Io,
        ArrowError::ExternalError(inner) => classify_external(inner.as_ref()),
        _ => ErrorKind::Internal,
    }
}

fn classify_external(e: &(dyn std::error::Error + Send + Sync + 'static)) -> ErrorKind {
    if let Some(df) = e.downcast_ref::<DataFusionError>() {
        return classify_datafusion(df);
    }
    if let Some(a) = e.downcast_ref::<ArrowError>() {
        return classify_arrow(a);
    }
    if let Some(l) = e.downcast_ref::<LakeError>() {
        return classify_lake(l);
    }
    if let Some(en) = e.downcast_ref::<EngineError>() {
        return en.kind();
    }
    if let Some(d) = e.downcast_ref::<deltalake::DeltaTableError>() {
        return match d {
            deltalake::DeltaTableError::NotATable(_) => ErrorKind::UndefinedTable,
            _ => ErrorKind::Io,
        };
    }
    // The regex crate's error for a pattern a client wrote (`~`, regexp_replace ...).
    if e.to_string().starts_with("regex parse error") {
        return ErrorKind::InvalidRegularExpression;
    }
    ErrorKind::Internal
}

/// Classifies a DataFusion error by its variant and, for plan errors, its message (DataFusion
/// reports unknown tables, columns and functions as plan errors with stable wording).
pub fn classify_datafusion(e: &DataFusionError) -> ErrorKind {
    use datafusion::common::SchemaError;
    match innermost(e) {
        DataFusionError::SQL(..) => ErrorKind::Syntax,
        DataFusionError::ArrowError(a, _) => classify_arrow(a),
        DataFusionError::ParquetError(_) | DataFusionError::IoError(_) => ErrorKind::Io,
        DataFusionError::ObjectStore(o) => match o.as_ref() {
            object_store::Error::NotFound { .. } => ErrorKind::UndefinedTable,
            _ => ErrorKind::Io,
        },
        DataFusionError::NotImplemented(_) => ErrorKind::NotSupported,
        DataFusionError::ResourcesExhausted(_) => ErrorKind::ResourcesExhausted,
        DataFusionError::SchemaError(s, _) => match s.as_ref() {
            SchemaError::FieldNotFound { .. } => ErrorKind::UndefinedColumn,
            SchemaError::AmbiguousReference { .. } => ErrorKind::AmbiguousColumn,
            SchemaError::DuplicateQualifiedField { .. }
            | SchemaError::DuplicateUnqualifiedField { .. } => ErrorKind::AmbiguousColumn,
        },
        DataFusionError::Plan(m) => classify_plan_message(m),
        DataFusionError::Configuration(_) => ErrorKind::InvalidParameterValue,
        DataFusionError::Execution(m) => {
            let lower = m.to_ascii_lowercase();
            if lower.contains("divide by zero") || lower.contains("division by zero") {
                ErrorKind::DivisionByZero
            } else if lower.contains("overflow") {
                ErrorKind::NumericOutOfRange
            } else if lower.contains("cast") || lower.contains("parse") {
                ErrorKind::InvalidTextRepresentation
            } else if lower.contains("not found") && lower.contains("table") {
                ErrorKind::UndefinedTable
            } else {
                ErrorKind::DataException
            }
        }
        DataFusionError::ExecutionJoin(_) => ErrorKind::Internal,
        DataFusionError::External(inner) => classify_external(inner.as_ref()),
        DataFusionError::Substrait(_) => ErrorKind::NotSupported,
        DataFusionError::Internal(_) => ErrorKind::Internal,
        _ => ErrorKind::Internal,
    }
}

fn classify_plan_message(m: &str) -> ErrorKind {
    let lower = m.to_ascii_lowercase();
    if lower.contains("table") && lower.contains("not found") {
        ErrorKind::UndefinedTable
    } else if lower.contains("invalid function")
        || lower.contains("no function matches")
        || lower.contains("function") && lower.contains("not found")
        || lower.contains("does not support") && lower.contains("argument")
        || lower.contains("failed to coerce arguments")
    {
        ErrorKind::UndefinedFunction
    } else if lower.contains("schema") && lower.contains("not found") {
        ErrorKind::UndefinedSchema
    } else if lower.contains("already exists") {
        ErrorKind::DuplicateTable
    } else if lower.contains("unsupported")
        || lower.contains("not supported")
        || lower.contains("correlated scalar subquery must be aggregated")
    {
        ErrorKind::NotSupported
    } else if lower.contains("cannot infer common")
        || lower.contains("cannot be cast")
        || lower.contains("mismatch")
        || lower.contains("type coercion")
    {
        ErrorKind::DatatypeMismatch
    } else {
        ErrorKind::Syntax
    }
}

fn datafusion_message(e: &DataFusionError) -> String {
    match innermost(e) {
        DataFusionError::Plan(m) | DataFusionError::Execution(m) => m.clone(),
        DataFusionError::SQL(p, _) => format!("syntax error: {p}"),
        DataFusionError::ArrowError(a, _) => a.to_string(),
        DataFusionError::External(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_errors_keep_their_class_and_words_through_delta_rs() {
        for (inner, kind) in [
            (
                "missing data for column \"name\" (COPY c.b, line 2)",
                ErrorKind::BadCopyFileFormat,
            ),
            (
                "invalid input syntax for type integer: \"2x\" (COPY c.b, line 2, column id: \"2x\")",
                ErrorKind::InvalidTextRepresentation,
            ),
            (
                "value \"99999999999\" is out of range for type integer (COPY c.b, line 1, column id: \"99999999999\")",
                ErrorKind::NumericOutOfRange,
            ),
            ("COPY from stdin failed: stop", ErrorKind::Cancelled),
        ] {
            let wrapped = EngineError::Lake(LakeError::Delta(deltalake::DeltaTableError::Generic(
                format!("External error: {inner}"),
            )));
            assert_eq!(wrapped.kind(), kind, "{inner}");
            assert_eq!(wrapped.message(), inner);
        }
    }

    #[test]
    fn lost_commit_races_not_null_and_cardinality_have_their_codes() {
        use deltalake::kernel::transaction::TransactionError;
        let lost = EngineError::Lake(LakeError::Delta(
            TransactionError::MaxCommitAttempts(15).into(),
        ));
        assert_eq!(lost.kind(), ErrorKind::SerializationFailure);
        assert!(lost.message().starts_with("could not serialize access"));
        let exists = EngineError::Lake(LakeError::Delta(
            TransactionError::VersionAlreadyExists(3).into(),
        ));
        assert_eq!(exists.kind(), ErrorKind::SerializationFailure);
        let wrapped = EngineError::from(DataFusionError::External(Box::new(
            deltalake::DeltaTableError::from(TransactionError::MaxCommitAttempts(15)),
        )));
        assert_eq!(wrapped.kind(), ErrorKind::SerializationFailure);
        let null = EngineError::from(DataFusionError::ArrowError(
            Box::new(ArrowError::InvalidArgumentError(
                "Column 'id' is declared as non-nullable but contains null values".into(),
            )),
            None,
        ));
        assert_eq!(null.kind(), ErrorKind::NotNullViolation);
        // What delta-rs 1.1 says when an INSERT puts NULL in a NOT NULL column, and when a
        // value does not fit numeric(p, s).
        let checked = EngineError::Lake(LakeError::Delta(deltalake::DeltaTableError::Generic(
            "External error: Invalid data found: 1 rows failed validation check.".into(),
        )));
        assert_eq!(checked.kind(), ErrorKind::NotNullViolation);
        let decimal = EngineError::Lake(LakeError::Delta(deltalake::DeltaTableError::Generic(
            "Optimizer rule 'simplify_expressions' failed caused by Arrow error: Invalid \
             argument error: 12345.60 is too large to store in a Decimal128 of precision 5."
                .into(),
        )));
        assert_eq!(decimal.kind(), ErrorKind::NumericOutOfRange);
    }
}
