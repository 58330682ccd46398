//! Errors of the lake layer.

/// What went wrong reading or writing the lake.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("invalid lake root {0}")]
    InvalidRoot(String),
    #[error("invalid lake setting {0}")]
    InvalidSetting(String),
    #[error("lake URL scheme {0}:// is not supported by this build")]
    UnsupportedScheme(String),
    #[error(
        "invalid name {0:?}: lake schema and table names are lower-case letters, digits and _, not starting with _"
    )]
    InvalidName(String),
    #[error(
        "object store {0} is not named by the configuration (the lake root or a user's files = [...] prefix)"
    )]
    UnnamedStore(String),
    #[error("version {0} does not exist")]
    InvalidVersion(i64),
    #[error("table {0} does not exist")]
    TableNotFound(String),
    #[error("table {0} already exists")]
    TableExists(String),
    #[error("column {0} already exists")]
    ColumnExists(String),
    #[error("invalid MERGE: {0}")]
    InvalidMerge(String),
    #[error("could not serialize access due to concurrent update ({0})")]
    SerializationFailure(String),
    #[error("commit: {0}")]
    Commit(String),
    #[error("{0}")]
    DuplicateConstraint(String),
    #[error("{0}")]
    CheckViolation(String),
    /// NULL where the column may not hold it (23502).
    #[error("{0}")]
    NotNullViolation(String),
    /// A column the table does not have (42703).
    #[error("{0}")]
    UndefinedColumn(String),
    #[error("not supported: {0}")]
    Unsupported(String),
    /// Another process holds the table's compaction lease.
    #[error("table {0} is being compacted by another process; try again later")]
    Busy(String),
    #[error("schema {0} is not empty")]
    SchemaNotEmpty(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] object_store::Error),
    #[error(transparent)]
    Delta(#[from] deltalake::DeltaTableError),
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
    #[error(transparent)]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),
}
