//! Errors of loading, selecting and running models, with their sources kept: a failed
//! statement inside a model stays an [`EngineError`] (its kind says "undefined table",
//! "division by zero"...), wrapped in [`ModelsError::Model`] to name the model and the
//! SQL file that ran. Protocol edges map [`ModelsError::kind`] once.

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use deltalake::DeltaTableError;
use tidepool_engine::{EngineError, ErrorKind};
use tidepool_lake::LakeError;

/// Why loading, selecting or running models failed.
#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    /// A project file or directory that cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A YAML file that does not parse.
    #[error("{path}: {source}")]
    Yaml {
        path: String,
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// The project is inconsistent: unknown references, cycles, duplicate names.
    #[error("{0}")]
    Project(String),
    /// A template that does not render (the message holds the Jinja error chain).
    #[error("{0}")]
    Render(String),
    /// A selector that does not parse or names nothing.
    #[error("{0}")]
    Select(String),
    /// A `config(...)` value of the wrong shape.
    #[error("{0}")]
    Config(String),
    /// A model that cannot be built as configured (a `unique_key` the model lacks,
    /// columns that changed under `on_schema_change='fail'`, a streaming model over a
    /// non-Delta table...).
    #[error("{0}")]
    Invalid(String),
    /// An error-severity test of the model failed (`build`).
    #[error("{relation}: tests failed: {}", .tests.join(", "))]
    TestsFailed {
        relation: String,
        tests: Vec<String>,
    },
    /// A statement the engine ran failed; lake, DataFusion and Delta errors arrive here
    /// too, classified by the engine.
    #[error("{}", .0.message())]
    Engine(#[from] EngineError),
    /// Model `relation` (file `path`) failed; `target/run/<path>` holds the SQL it ran.
    #[error("{relation} ({path}, as run: target/run/{path}): {source}")]
    Model {
        relation: String,
        path: String,
        #[source]
        source: Box<ModelsError>,
    },
    /// A hook (`pre_hook`, `post_hook`, `on-run-start`, `on-run-end`) failed.
    #[error("hook {hook} failed: {source}")]
    Hook {
        hook: String,
        #[source]
        source: Box<ModelsError>,
    },
    #[error("cancelled")]
    Cancelled,
}

impl ModelsError {
    /// The class of this error, for a protocol edge to turn into its own code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ModelsError::Io { .. } => ErrorKind::Io,
            ModelsError::Yaml { .. } | ModelsError::Project(_) | ModelsError::Render(_) => {
                ErrorKind::Syntax
            }
            ModelsError::Select(_) | ModelsError::Config(_) => ErrorKind::InvalidParameterValue,
            ModelsError::Invalid(_) => ErrorKind::InvalidParameterValue,
            ModelsError::TestsFailed { .. } => ErrorKind::DataException,
            ModelsError::Engine(e) => e.kind(),
            ModelsError::Model { source, .. } | ModelsError::Hook { source, .. } => source.kind(),
            ModelsError::Cancelled => ErrorKind::Cancelled,
        }
    }

    /// This error attributed to model `relation` from file `path`.
    pub(crate) fn in_model(self, relation: &str, path: &str) -> ModelsError {
        ModelsError::Model {
            relation: relation.to_string(),
            path: path.to_string(),
            source: Box::new(self),
        }
    }
}

impl From<DataFusionError> for ModelsError {
    fn from(e: DataFusionError) -> Self {
        ModelsError::Engine(EngineError::from_stream(e))
    }
}

impl From<LakeError> for ModelsError {
    fn from(e: LakeError) -> Self {
        ModelsError::Engine(EngineError::Lake(e))
    }
}

impl From<DeltaTableError> for ModelsError {
    fn from(e: DeltaTableError) -> Self {
        ModelsError::from(LakeError::Delta(e))
    }
}

impl From<ArrowError> for ModelsError {
    fn from(e: ArrowError) -> Self {
        ModelsError::from(DataFusionError::ArrowError(Box::new(e), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_statement_keeps_its_kind_through_the_model_wrapper() {
        let e = ModelsError::from(EngineError::UndefinedTable("silver.gone".into()))
            .in_model("gold.daily", "gold/daily.sql");
        assert_eq!(e.kind(), ErrorKind::UndefinedTable);
        assert_eq!(
            e.to_string(),
            "gold.daily (gold/daily.sql, as run: target/run/gold/daily.sql): relation \"silver.gone\" does not exist"
        );
    }

    #[test]
    fn delta_errors_are_classified_by_the_engine() {
        let e = ModelsError::from(DeltaTableError::Generic(
            "Failed to commit transaction: 3".into(),
        ));
        assert_eq!(e.kind(), ErrorKind::SerializationFailure);
    }
}
