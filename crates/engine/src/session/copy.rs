//! `COPY` as PostgreSQL writes it. To a path: translated to DataFusion's COPY TO (`COPY
//! (query) TO 'path' (FORMAT parquet, HEADER)`, `COPY table TO 'file.csv'`). To STDOUT:
//! the query runs as a SELECT and the protocol encodes its rows. From STDIN: an INSERT
//! reading the client's data ([`crate::copy`]).

use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::sql::parser::{CopyToSource, CopyToStatement, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{
    CopyOption, CopySource, Ident, Statement, Value as SqlValue,
};

use super::Session;
use super::kind::Kind;
use super::output::{Output, QueryControl, Shape};
use crate::EngineError;
use crate::copy::{COPY_FUNCTION, CopyIn, CopyInsert, CopyOptions};
use datafusion::common::TableReference;

/// Postgres `COPY (query) TO 'path' (FORMAT parquet, HEADER)` as DataFusion's COPY TO.
pub(super) fn copy_to(
    source: CopySource,
    target: String,
    options: &[CopyOption],
) -> Result<CopyToStatement, EngineError> {
    let source = match source {
        CopySource::Query(q) => CopyToSource::Query(q),
        CopySource::Table {
            table_name,
            columns,
        } => {
            if !columns.is_empty() {
                return Err(EngineError::NotSupported(
                    "COPY with a column list (use COPY (SELECT cols FROM t) TO ...)".into(),
                ));
            }
            CopyToSource::Relation(table_name)
        }
    };
    let mut format = None;
    let mut header = true;
    let mut df_options = Vec::new();
    for o in options {
        match o {
            CopyOption::Format(f) => format = Some(f.value.to_ascii_lowercase()),
            CopyOption::Header(h) => header = *h,
            CopyOption::Delimiter(c) => df_options.push((
                "format.delimiter".to_string(),
                SqlValue::SingleQuotedString(c.to_string()),
            )),
            other => {
                return Err(EngineError::NotSupported(format!("COPY option {other}")));
            }
        }
    }
    let format = format.unwrap_or_else(|| {
        let lower = target.to_ascii_lowercase();
        if lower.ends_with(".csv") {
            "csv".into()
        } else if lower.ends_with(".json") || lower.ends_with(".ndjson") {
            "json".into()
        } else {
            "parquet".into()
        }
    });
    if !matches!(format.as_str(), "parquet" | "csv" | "json") {
        return Err(EngineError::NotSupported(format!(
            "COPY format {format} (use parquet, csv or json)"
        )));
    }
    if format == "csv" {
        df_options.push((
            "format.has_header".to_string(),
            SqlValue::SingleQuotedString(header.to_string()),
        ));
    }
    Ok(CopyToStatement {
        source,
        target,
        partitioned_by: Vec::new(),
        stored_as: Some(format),
        options: df_options,
    })
}

impl Session {
    /// `COPY ... TO STDOUT` (its query's rows, to be encoded by the protocol) or
    /// `COPY ... FROM STDIN` (what to ask the client for).
    pub(super) async fn run_copy(
        &mut self,
        stmt: &Statement,
        control: &QueryControl,
    ) -> Result<Output, EngineError> {
        let Statement::Copy {
            source,
            to,
            options,
            legacy_options,
            values,
            ..
        } = stmt
        else {
            return Err(internal("not a COPY"));
        };
        let copy_options = CopyOptions::of(options, legacy_options, *to)?;
        if !values.is_empty() {
            return Err(EngineError::NotSupported(
                "COPY data inline in the statement (send it as COPY data)".into(),
            ));
        }
        if *to {
            let query = self.copy_query(source.clone())?;
            let out = Box::pin(self.execute_statement(
                Kind::Planned,
                query,
                None,
                control,
                Shape::Merged,
            ))
            .await?
            .into_output();
            return match out {
                Output::Rows { stream, .. } => Ok(Output::CopyOut {
                    stream,
                    options: copy_options,
                }),
                _ => Err(internal("COPY's query returned no rows")),
            };
        }
        let CopySource::Table {
            table_name,
            columns,
        } = source
        else {
            return Err(EngineError::Syntax(
                "COPY FROM copies into a table, not a query".into(),
            ));
        };
        let named =
            datafusion::sql::planner::object_name_to_table_reference(table_name.clone(), true)?;
        let (schema_name, name) = self.resolve(&named)?;
        let reference = TableReference::full(crate::CATALOG, schema_name.as_str(), name.as_str());
        let provider = self
            .ctx
            .table_provider(reference)
            .await
            .map_err(|_| EngineError::UndefinedTable(format!("{schema_name}.{name}")))?;
        let full = provider.schema();
        let fields: Vec<_> = if columns.is_empty() {
            full.fields().iter().cloned().collect()
        } else {
            columns
                .iter()
                .map(|c| {
                    full.field_with_name(&c.value)
                        .map(|f| Arc::new(f.clone()))
                        .map_err(|_| {
                            EngineError::DataFusion(Box::new(
                                datafusion::error::DataFusionError::SchemaError(
                                    Box::new(datafusion::common::SchemaError::FieldNotFound {
                                        field: Box::new(datafusion::common::Column::from_name(
                                            &c.value,
                                        )),
                                        valid_fields: Vec::new(),
                                    }),
                                    Box::new(None),
                                ),
                            ))
                        })
                })
                .collect::<Result<_, _>>()?
        };
        // Read as the column types, nullable: NOT NULL is the INSERT's to check.
        let schema = Arc::new(Schema::new(
            fields
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        let listed: Vec<String> = fields
            .iter()
            .map(|f| Ident::with_quote('"', f.name()).to_string())
            .collect();
        let (data, table) = crate::copy::start(
            copy_options.clone(),
            schema,
            format!("{schema_name}.{name}"),
        )?;
        self.copy_slot.put(table);
        let sql = format!(
            "INSERT INTO {table_name} ({}) SELECT * FROM {COPY_FUNCTION}()",
            listed.join(", ")
        );
        let insert = self
            .parse(&sql)?
            .pop()
            .ok_or_else(|| internal("COPY FROM: no INSERT"))?;
        Ok(Output::CopyIn(Box::new(CopyIn {
            options: copy_options,
            columns: fields.len(),
            data,
            insert: CopyInsert(insert),
        })))
    }

    /// Writes the rows of a COPY FROM as they arrive (until the client's CopyDone or
    /// CopyFail); the number of rows written.
    pub async fn finish_copy_in(
        &mut self,
        insert: CopyInsert,
        control: &QueryControl,
    ) -> Result<u64, EngineError> {
        let out = self.execute(insert.0, None, control).await;
        self.copy_slot.clear();
        match out? {
            Output::Command(tag) => Ok(tag.rows.unwrap_or(0)),
            _ => Err(internal("COPY's INSERT returned rows")),
        }
    }

    /// The query whose rows a COPY TO sends.
    fn copy_query(&self, source: CopySource) -> Result<DFStatement, EngineError> {
        let query = match source {
            CopySource::Query(q) => Statement::Query(q),
            CopySource::Table {
                table_name,
                columns,
            } => {
                let list = if columns.is_empty() {
                    "*".to_string()
                } else {
                    columns
                        .iter()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return self
                    .parse(&format!("SELECT {list} FROM {table_name}"))?
                    .pop()
                    .ok_or_else(|| internal("COPY TO: no query"));
            }
        };
        Ok(DFStatement::Statement(Box::new(query)))
    }
}

fn internal(what: &str) -> EngineError {
    EngineError::from(datafusion::error::DataFusionError::Internal(
        what.to_string(),
    ))
}
