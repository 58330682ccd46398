//! Rows of COPY text or CSV fields as a record batch of the target columns' types. Each
//! column is converted at once (arrow's casts, `bytea` from its hex or escape text); a
//! value that does not convert fails the COPY with PostgreSQL's words and the line and
//! column it came from, as PostgreSQL's CONTEXT names them.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BinaryBuilder, RecordBatch, StringArray};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, SchemaRef};

use super::rows_in::Row;
use crate::EngineError;

/// Builds batches of `schema` (the copied columns, in the order the data has them).
pub struct BatchBuilder {
    schema: SchemaRef,
    /// The table, for messages (`COPY t, line 3, column a`).
    table: String,
}

impl BatchBuilder {
    pub fn new(schema: SchemaRef, table: String) -> BatchBuilder {
        BatchBuilder { schema, table }
    }

    /// The batch of `rows`.
    pub fn build(&self, rows: &[Row]) -> Result<RecordBatch, EngineError> {
        let width = self.schema.fields().len();
        for (line, fields) in rows {
            if fields.len() > width {
                return Err(self.bad_row(*line, "extra data after last expected column".into()));
            }
            if fields.len() < width {
                let missing = self.schema.field(fields.len()).name();
                return Err(self.bad_row(*line, format!("missing data for column \"{missing}\"")));
            }
        }
        let columns = (0..width)
            .map(|c| self.column(rows, c))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    fn column(&self, rows: &[Row], c: usize) -> Result<ArrayRef, EngineError> {
        let field = self.schema.field(c);
        let text: StringArray = rows.iter().map(|(_, f)| f[c].as_deref()).collect();
        let target = field.data_type();
        let converted: ArrayRef = match target {
            DataType::Utf8 => Arc::new(text.clone()),
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
                let mut b = BinaryBuilder::with_capacity(rows.len(), 0);
                for (i, v) in text.iter().enumerate() {
                    match v {
                        None => b.append_null(),
                        Some(v) => match bytea(v) {
                            Some(bytes) => b.append_value(bytes),
                            None => {
                                return Err(self.bad_value(rows[i].0, c, v, target));
                            }
                        },
                    }
                }
                let binary: ArrayRef = Arc::new(b.finish());
                cast_with_options(&binary, target, &CastOptions::default())?
            }
            _ => {
                let options = CastOptions {
                    safe: true,
                    ..Default::default()
                };
                let input = trimmed_for(target, text.clone());
                match cast_with_options(&input, target, &options) {
                    Ok(a) => {
                        if a.null_count() != input.null_count() {
                            let i = (0..input.len())
                                .find(|&i| a.is_null(i) && !input.is_null(i))
                                .unwrap_or(0);
                            return Err(self.bad_value(rows[i].0, c, text.value(i), target));
                        }
                        a
                    }
                    Err(e) => {
                        return Err(EngineError::NotSupported(format!(
                            "COPY into a column of type {target} ({e})"
                        )));
                    }
                }
            }
        };
        Ok(converted)
    }

    fn bad_row(&self, line: u64, message: String) -> EngineError {
        EngineError::BadCopyData(format!("{message} (COPY {}, line {line})", self.table))
    }

    fn bad_value(&self, line: u64, c: usize, value: &str, target: &DataType) -> EngineError {
        let column = self.schema.field(c).name();
        let context = format!(
            "COPY {}, line {line}, column {column}: \"{value}\"",
            self.table
        );
        let type_name = sql_name(target);
        if target.is_integer() && value.trim().parse::<i128>().is_ok() {
            return EngineError::NumericOutOfRange(format!(
                "value \"{value}\" is out of range for type {type_name} ({context})"
            ));
        }
        EngineError::InvalidText(format!(
            "invalid input syntax for type {type_name}: \"{value}\" ({context})"
        ))
    }
}

/// PostgreSQL reads numbers, booleans and dates with blanks around them; arrow's casts
/// do not.
fn trimmed_for(target: &DataType, text: StringArray) -> ArrayRef {
    let trims = target.is_numeric() || matches!(target, DataType::Boolean | DataType::Date32);
    if trims
        && text
            .iter()
            .flatten()
            .any(|v| v.starts_with(' ') || v.ends_with(' '))
    {
        let t: StringArray = text.iter().map(|v| v.map(str::trim)).collect();
        Arc::new(t)
    } else {
        Arc::new(text)
    }
}

/// `bytea` input: `\x` and hex digits, or the escape format (`\\`, octal `\123`).
fn bytea(v: &str) -> Option<Vec<u8>> {
    if let Some(hex) = v.strip_prefix("\\x") {
        let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if !digits.len().is_multiple_of(2) {
            return None;
        }
        return digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
            .collect();
    }
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
        } else if b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let oct = b.get(i + 1..i + 4)?;
            if !oct.iter().all(|d| (b'0'..=b'7').contains(d)) || oct[0] > b'3' {
                return None;
            }
            out.push((oct[0] - b'0') * 64 + (oct[1] - b'0') * 8 + (oct[2] - b'0'));
            i += 4;
        }
    }
    Some(out)
}

/// PostgreSQL's name of the type a column of `t` has, for messages.
fn sql_name(t: &DataType) -> String {
    match t {
        DataType::Boolean => "boolean".into(),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint".into(),
        DataType::Int32 | DataType::UInt16 => "integer".into(),
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "bigint".into(),
        DataType::Float16 | DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => "numeric".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone".into(),
        DataType::Time32(_) | DataType::Time64(_) => "time".into(),
        DataType::Interval(_) => "interval".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "bytea".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{Field, Schema, TimeUnit};

    fn builder() -> BatchBuilder {
        BatchBuilder::new(
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int32, true),
                Field::new("at", DataType::Timestamp(TimeUnit::Microsecond, None), true),
                Field::new("raw", DataType::Binary, true),
                Field::new("ok", DataType::Boolean, true),
            ])),
            "s.t".into(),
        )
    }

    fn row(line: u64, v: [Option<&str>; 4]) -> Row {
        (line, v.iter().map(|f| f.map(str::to_string)).collect())
    }

    #[test]
    fn values_convert_to_the_columns_types() {
        let b = builder()
            .build(&[
                row(
                    1,
                    [
                        Some(" 7 "),
                        Some("2024-01-02 03:04:05"),
                        Some("\\x4142"),
                        Some("t"),
                    ],
                ),
                row(2, [None, None, Some("a\\\\b\\001"), Some("off")]),
            ])
            .unwrap();
        let shown = datafusion::arrow::util::pretty::pretty_format_batches(&[b])
            .unwrap()
            .to_string();
        assert!(
            shown.contains("| 7  | 2024-01-02T03:04:05 | 4142     | true  |"),
            "{shown}"
        );
        assert!(
            shown.contains("|    |                     | 615c6201 | false |"),
            "{shown}"
        );
    }

    #[test]
    fn a_bad_value_names_its_line_and_column() {
        let e = builder()
            .build(&[
                row(1, [Some("1"), None, None, None]),
                row(2, [Some("x1"), None, None, None]),
            ])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid input syntax for type integer: \"x1\" (COPY s.t, line 2, column id: \"x1\")"
        );
        let e = builder()
            .build(&[row(5, [Some("99999999999"), None, None, None])])
            .unwrap_err();
        assert!(matches!(e, EngineError::NumericOutOfRange(_)), "{e}");
        let e = builder()
            .build(&[(3, vec![Some("1".to_string())])])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "missing data for column \"at\" (COPY s.t, line 3)"
        );
        let e = builder().build(&[(4, vec![None; 5])]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("extra data after last expected column")
        );
    }
}
