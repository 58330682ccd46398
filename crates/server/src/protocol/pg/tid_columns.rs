//! Tuple ids (`ctid`) on the wire. The engine holds them as text, `(block,offset)`,
//! marked as PostgreSQL's `tid` ([`crate::engine::ctid`]): RowDescription names the type
//! (oid 27), the text formats send the text, and the binary formats (binary DataRows,
//! `COPY ... (FORMAT binary)`, which DuckDB's postgres extension reads `ctid` with) send
//! `tidsend`'s six bytes: the block as a 4-byte and the offset as a 2-byte big-endian
//! integer.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryBuilder, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use tidepool_lake::tids::Tid;

use crate::engine::ctid::is_tid;

/// The places of the tid columns of `schema`.
pub fn tid_columns(schema: &Schema) -> Vec<usize> {
    schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| is_tid(f))
        .map(|(i, _)| i)
        .collect()
}

/// `schema` with the columns at `at` as the binary they are sent as.
pub fn binary_schema(schema: &SchemaRef, at: &[usize]) -> SchemaRef {
    if at.is_empty() {
        return schema.clone();
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            if at.contains(&i) {
                Field::new(f.name(), DataType::Binary, f.is_nullable())
                    .with_metadata(f.metadata().clone())
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// `batch` with the tid text of the columns at `at` as their binary form.
pub fn to_binary(batch: RecordBatch, at: &[usize]) -> Result<RecordBatch, ArrowError> {
    if at.is_empty() {
        return Ok(batch);
    }
    let schema = binary_schema(batch.schema_ref(), at);
    let mut columns = batch.columns().to_vec();
    for &i in at {
        columns[i] = binary(&columns[i])?;
    }
    RecordBatch::try_new(schema, columns)
}

fn binary(column: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    let text = datafusion::arrow::compute::cast(column, &DataType::Utf8)?;
    let text = text.as_string::<i32>();
    let mut out = BinaryBuilder::with_capacity(text.len(), text.len() * 6);
    for i in 0..text.len() {
        if text.is_null(i) {
            out.append_null();
            continue;
        }
        let tid = Tid::parse(text.value(i)).ok_or_else(|| {
            ArrowError::InvalidArgumentError(format!(
                "invalid input syntax for type tid: \"{}\"",
                text.value(i)
            ))
        })?;
        out.append_value(tid.to_bytes());
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;

    #[test]
    fn tids_go_out_as_six_bytes() {
        let schema = Arc::new(Schema::new(vec![crate::engine::ctid::field()]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(vec!["(0,1)", "(4097,65535)"]))],
        )
        .unwrap();
        let at = tid_columns(&schema);
        assert_eq!(at, vec![0]);
        let out = to_binary(batch, &at).unwrap();
        let b = out.column(0).as_binary::<i32>();
        assert_eq!(b.value(0), [0, 0, 0, 0, 0, 1]);
        assert_eq!(b.value(1), [0, 0, 16, 1, 255, 255]);
    }
}
