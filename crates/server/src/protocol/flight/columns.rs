//! The Arrow types Flight clients receive. DataFusion reads Parquet strings as `Utf8View`,
//! whose arrays share large data buffers between batches: sent as they are, every batch
//! would carry the whole shared buffers (lineitem SF1: 2.4 GB instead of 1.0 GB), and
//! older clients (the Flight SQL JDBC driver, ODBC bridges) do not read view types. So view
//! columns go out as plain `Utf8` / `Binary`, nested ones included; other types pass as
//! they are. Repeated result names lose the hidden suffix the engine gives them.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;

/// The client-facing form of a type: view types replaced by their plain forms.
fn plain(t: &DataType) -> DataType {
    let field = |f: &FieldRef| -> FieldRef {
        Arc::new(
            Field::new(f.name(), plain(f.data_type()), f.is_nullable())
                .with_metadata(f.metadata().clone()),
        )
    };
    match t {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::List(f) => DataType::List(field(f)),
        DataType::LargeList(f) => DataType::LargeList(field(f)),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(field(f), *n),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(field).collect()),
        DataType::Map(f, sorted) => DataType::Map(field(f), *sorted),
        other => other.clone(),
    }
}

/// The schema clients get for `schema`; `None` when it is already client-ready.
pub fn client_schema(schema: &Schema) -> Option<SchemaRef> {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            f.as_ref()
                .clone()
                .with_data_type(plain(f.data_type()))
                .with_name(tidepool_engine::names::display(f.name()))
        })
        .collect();
    // Repeated result names carry a hidden suffix inside the engine.
    let changed = fields
        .iter()
        .zip(schema.fields())
        .any(|(a, b)| a.data_type() != b.data_type() || a.name() != b.name());
    changed.then(|| Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())))
}

/// A batch converted to `schema` (from [`client_schema`]).
pub fn convert(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                cast(c, f.data_type())
            }
        })
        .collect::<Result<_, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int32Array, ListArray, StringViewArray};
    use datafusion::arrow::datatypes::Int32Type;

    #[test]
    fn views_become_plain_types() {
        let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![Some(1)])]);
        let batch = RecordBatch::try_from_iter(vec![
            (
                "s",
                Arc::new(StringViewArray::from(vec![
                    "a long string over twelve bytes",
                ])) as ArrayRef,
            ),
            ("n", Arc::new(Int32Array::from(vec![1])) as ArrayRef),
            ("l", Arc::new(list) as ArrayRef),
        ])
        .unwrap();
        let schema = client_schema(&batch.schema()).expect("changes");
        assert_eq!(schema.field(0).data_type(), &DataType::Utf8);
        assert_eq!(schema.field(1).data_type(), &DataType::Int32);
        let out = convert(&batch, &schema).unwrap();
        assert_eq!(out.column(0).data_type(), &DataType::Utf8);
        assert!(client_schema(&out.schema()).is_none());
    }
}
