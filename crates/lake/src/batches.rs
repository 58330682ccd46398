//! Record batches brought to a table's schema: columns matched by name, cast to the
//! table's types, missing ones NULL (buffered INSERT rows, upsert sources).

use arrow::array::{ArrayRef, RecordBatch, new_null_array};
use arrow::compute;
use arrow::datatypes::{DataType, SchemaRef};

use crate::LakeError;

/// `batches` as one batch of `schema`: columns by name, cast, missing ones NULL.
pub(crate) fn conform(
    batches: &[RecordBatch],
    schema: &SchemaRef,
) -> Result<RecordBatch, LakeError> {
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        let cols: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| match b.column_by_name(f.name()) {
                Some(c) => cast_to(c, f.data_type()),
                None => Ok(new_null_array(f.data_type(), b.num_rows())),
            })
            .collect::<Result<_, _>>()?;
        out.push(RecordBatch::try_new(schema.clone(), cols)?);
    }
    Ok(compute::concat_batches(schema, &out)?)
}

pub(crate) fn cast_to(c: &ArrayRef, to: &DataType) -> Result<ArrayRef, arrow::error::ArrowError> {
    if c.data_type() == to {
        Ok(c.clone())
    } else {
        compute::cast(c, to)
    }
}
