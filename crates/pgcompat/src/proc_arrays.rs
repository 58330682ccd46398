//! `pg_proc`'s array columns as arrays.
//!
//! datafusion-pg-catalog exports them as text: `proargtypes` as oidvector's output
//! (`"700 701"`), `proallargtypes`, `proargmodes` and `proargnames` in Python's list
//! notation (`"[1034, 26]"`, `"['i', 'o']"`), which no client parses and which
//! `unnest(proargtypes)` (sqlsmith, hand-written catalog queries) refuses. Here they are
//! lists: `proallargtypes` an `oid[]`, `proargmodes` and `proargnames` `text[]`, and
//! `proargtypes` a list of oids marked [`OIDVECTOR_KEY`], which the Postgres protocol
//! edge sends in oidvector's text form (space-separated, as pgjdbc's
//! `getProcedureColumns` splits it).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int32Builder, ListBuilder, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::Result;

/// Field metadata marking a list of oids as a Postgres `oidvector`.
pub const OIDVECTOR_KEY: &str = "tidepool.oidvector";

/// How a text column of the export reads.
#[derive(Clone, Copy)]
enum Form {
    /// `700 701`, oidvector's output.
    Oidvector,
    /// `[1034, 26]`.
    Oids,
    /// `['i', 'o']`.
    Texts,
}

fn form(column: &str) -> Option<Form> {
    match column {
        "proargtypes" => Some(Form::Oidvector),
        "proallargtypes" => Some(Form::Oids),
        "proargmodes" | "proargnames" => Some(Form::Texts),
        _ => None,
    }
}

fn oid_list_field(name: &str) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true))),
        true,
    )
}

/// `pg_proc`'s schema with the array columns as lists.
pub fn schema(exported: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = exported
        .fields()
        .iter()
        .map(|f| match form(f.name()) {
            Some(Form::Oidvector) => oid_list_field(f.name()).with_metadata(HashMap::from([(
                OIDVECTOR_KEY.to_string(),
                "true".to_string(),
            )])),
            Some(Form::Oids) => oid_list_field(f.name()),
            Some(Form::Texts) => Field::new(
                f.name(),
                DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
                true,
            ),
            None => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(
        fields,
        exported.metadata().clone(),
    ))
}

/// An exported batch in [`schema`]'s form.
pub fn convert(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch> {
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let converted = match (form(field.name()), column.data_type()) {
            (Some(form), DataType::Utf8) => lists(column.as_string::<i32>(), form),
            _ => column.clone(),
        };
        columns.push(converted);
    }
    Ok(RecordBatch::try_new(target.clone(), columns)?)
}

fn lists(text: &datafusion::arrow::array::StringArray, form: Form) -> ArrayRef {
    let items = |v: &str| -> Vec<String> {
        let v = v.trim();
        match form {
            Form::Oidvector => v.split_ascii_whitespace().map(str::to_string).collect(),
            Form::Oids | Form::Texts => {
                let inner = v.trim_start_matches('[').trim_end_matches(']');
                inner
                    .split(',')
                    .map(|s| s.trim().trim_matches('\'').to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            }
        }
    };
    match form {
        Form::Oidvector | Form::Oids => {
            let mut b = ListBuilder::new(Int32Builder::new());
            for i in 0..text.len() {
                if text.is_null(i) {
                    b.append_null();
                    continue;
                }
                for item in items(text.value(i)) {
                    b.values().append_option(item.parse::<i32>().ok());
                }
                b.append(true);
            }
            Arc::new(b.finish())
        }
        Form::Texts => {
            let mut b = ListBuilder::new(StringBuilder::new());
            for i in 0..text.len() {
                if text.is_null(i) {
                    b.append_null();
                    continue;
                }
                for item in items(text.value(i)) {
                    b.values().append_value(item);
                }
                b.append(true);
            }
            Arc::new(b.finish())
        }
    }
}

/// A list of oids (`proargtypes`, `proallargtypes`) as a value of a catalog row.
pub fn oid_list(oids: &[i32]) -> datafusion::common::ScalarValue {
    let values: Vec<datafusion::common::ScalarValue> = oids
        .iter()
        .map(|o| datafusion::common::ScalarValue::Int32(Some(*o)))
        .collect();
    datafusion::common::ScalarValue::List(datafusion::common::ScalarValue::new_list_nullable(
        &values,
        &DataType::Int32,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;

    #[test]
    fn exported_text_becomes_lists() {
        let exported = Arc::new(Schema::new(vec![
            Field::new("proname", DataType::Utf8, true),
            Field::new("proargtypes", DataType::Utf8, true),
            Field::new("proargnames", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            exported.clone(),
            vec![
                Arc::new(StringArray::from(vec!["abs", "now"])),
                Arc::new(StringArray::from(vec![Some("700 701"), Some("")])),
                Arc::new(StringArray::from(vec![Some("['acl', 'grantor']"), None])),
            ],
        )
        .unwrap();
        let target = schema(&exported);
        assert!(target.field(1).metadata().contains_key(OIDVECTOR_KEY));
        let out = convert(&batch, &target).unwrap();
        let types = out.column(1).as_list::<i32>();
        let first = types.value(0);
        let first = first.as_primitive::<datafusion::arrow::datatypes::Int32Type>();
        assert_eq!(first.values().to_vec(), vec![700, 701]);
        assert_eq!(types.value(1).len(), 0);
        let names = out.column(2).as_list::<i32>();
        let names0 = names.value(0);
        assert_eq!(names0.as_string::<i32>().value(1), "grantor");
        assert!(names.is_null(1));
    }
}
