//! Nested columns as JSON text.
//!
//! Postgres clients and BI tools cannot read Arrow structs or maps; tidepool sends any
//! column holding a struct or map (also inside a list) as `text` holding JSON, the way
//! `jsonb` values read in most tools. Lists of scalars stay Postgres arrays.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;

fn is_nested(t: &DataType) -> bool {
    match t {
        DataType::Struct(_) | DataType::Map(..) | DataType::Union(..) => true,
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _) => is_nested(f.data_type()),
        _ => false,
    }
}

/// True if some column needs converting.
pub fn needs_conversion(schema: &Schema) -> bool {
    schema.fields().iter().any(|f| is_nested(f.data_type()))
}

/// The schema clients see: nested columns become text.
pub fn client_schema(schema: &SchemaRef) -> SchemaRef {
    if !needs_conversion(schema) {
        return schema.clone();
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            if is_nested(f.data_type()) {
                Field::new(f.name(), DataType::Utf8, true)
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// Converts the nested columns of a batch to JSON text.
pub fn convert(batch: RecordBatch, target: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    let columns = batch
        .columns()
        .iter()
        .zip(batch.schema().fields())
        .map(|(col, field)| {
            if is_nested(field.data_type()) {
                to_json(field, col)
            } else {
                Ok(col.clone())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(target.clone(), columns)
}

fn to_json(field: &Field, col: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    // Encode the column as a one-column batch of JSON objects, then strip the wrapper.
    let wrapper = Arc::new(Schema::new(vec![Field::new(
        "v",
        field.data_type().clone(),
        true,
    )]));
    let one = RecordBatch::try_new(wrapper, vec![col.clone()])?;
    let mut buf = Vec::new();
    {
        let mut w = datafusion::arrow::json::LineDelimitedWriter::new(&mut buf);
        w.write(&one)?;
        w.finish()?;
    }
    let text = String::from_utf8(buf).map_err(|e| ArrowError::JsonError(e.to_string()))?;
    let mut out = StringBuilder::with_capacity(col.len(), text.len());
    for (i, line) in text.lines().enumerate() {
        if col.is_null(i) {
            out.append_null();
            continue;
        }
        let value = line
            .strip_prefix("{\"v\":")
            .and_then(|s| s.strip_suffix('}'))
            .unwrap_or("null");
        out.append_value(value);
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray, StructArray};

    #[test]
    fn structs_become_json() {
        let s = StructArray::from(vec![
            (
                Arc::new(Field::new("a", DataType::Int64, true)),
                Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef,
            ),
            (
                Arc::new(Field::new("b", DataType::Utf8, true)),
                Arc::new(StringArray::from(vec!["x", "y"])) as ArrayRef,
            ),
        ]);
        let schema = Arc::new(Schema::new(vec![Field::new(
            "s",
            s.data_type().clone(),
            true,
        )]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(s)]).unwrap();
        let target = client_schema(&schema);
        let out = convert(batch, &target).unwrap();
        let col = out
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(col.value(0), r#"{"a":1,"b":"x"}"#);
        assert_eq!(col.value(1), r#"{"a":2,"b":"y"}"#);
    }
}
