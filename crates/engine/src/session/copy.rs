//! `COPY` as PostgreSQL writes it, translated to DataFusion's COPY TO: `COPY (query) TO
//! 'path' (FORMAT parquet, HEADER)`, `COPY table TO 'file.csv'`.

use datafusion::sql::parser::{CopyToSource, CopyToStatement};
use datafusion::sql::sqlparser::ast::{CopyOption, CopySource, Value as SqlValue};

use crate::EngineError;

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
