//! The bundled catalogs' array columns as arrays.
//!
//! datafusion-pg-catalog exports PostgreSQL's array columns as text: `proargtypes` as
//! oidvector's output (`"700 701"`), the others in Python's list notation
//! (`"[1034, 26]"`, `"['i', 'o']"`), which no client parses and which array functions
//! refuse (psql's `\drds` joins `setconfig` with `array_to_string`, `\dX` tests
//! `'d' = any(stxkind)`, `unnest(proargtypes)` in sqlsmith and hand-written catalog
//! queries). Here they are lists as PostgreSQL types them: `oid[]`, `text[]` (also for
//! `"char"[]` and ACLs), and the vectors (`oidvector`, `int2vector`) a list of integers
//! marked [`OIDVECTOR_KEY`], which the Postgres protocol edge sends in the vectors' text
//! form (space-separated, as pgjdbc's `getProcedureColumns` splits it).
//! [`ArrayColumns`] wraps a bundled table that has such columns.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Builder, ListBuilder, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::error::Result;

use crate::gathered::{Gather, collect};

/// Field metadata marking a list of integers as a Postgres `oidvector` or `int2vector`.
pub const OIDVECTOR_KEY: &str = "tidepool.oidvector";

/// How a text column of the export reads.
#[derive(Clone, Copy)]
enum Form {
    /// `700 701`, a vector's output.
    Vector,
    /// `[1034, 26]`.
    Oids,
    /// `['i', 'o']`.
    Texts,
}

/// The array columns of the bundled catalogs, by table.
const ARRAYS: &[(&str, &str, Form)] = &[
    ("pg_proc", "proargtypes", Form::Vector),
    ("pg_proc", "proallargtypes", Form::Oids),
    ("pg_proc", "proargmodes", Form::Texts),
    ("pg_proc", "proargnames", Form::Texts),
    ("pg_proc", "proconfig", Form::Texts),
    ("pg_proc", "proacl", Form::Texts),
    ("pg_db_role_setting", "setconfig", Form::Texts),
    ("pg_statistic_ext", "stxkeys", Form::Vector),
    ("pg_statistic_ext", "stxkind", Form::Texts),
    ("pg_event_trigger", "evttags", Form::Texts),
    ("pg_language", "lanacl", Form::Texts),
    ("pg_extension", "extconfig", Form::Oids),
    ("pg_extension", "extcondition", Form::Texts),
    ("pg_foreign_data_wrapper", "fdwacl", Form::Texts),
    ("pg_foreign_data_wrapper", "fdwoptions", Form::Texts),
    ("pg_foreign_server", "srvacl", Form::Texts),
    ("pg_foreign_server", "srvoptions", Form::Texts),
    ("pg_default_acl", "defaclacl", Form::Texts),
    ("pg_largeobject_metadata", "lomacl", Form::Texts),
];

fn form(table: &str, column: &str) -> Option<Form> {
    ARRAYS
        .iter()
        .find(|(t, c, _)| *t == table && *c == column)
        .map(|(_, _, f)| *f)
}

/// A bundled catalog table with its array columns as arrays.
#[derive(Debug)]
pub(crate) struct ArrayColumns {
    pub table: &'static str,
    pub inner: Arc<dyn TableProvider>,
}

impl ArrayColumns {
    /// Wraps `inner`, the bundled `table`, if that has array columns.
    pub(crate) fn wrap(table: &str, inner: Arc<dyn TableProvider>) -> Arc<dyn TableProvider> {
        match ARRAYS.iter().find(|(t, _, _)| *t == table) {
            Some((table, _, _)) => {
                Arc::new(crate::gathered::Gathered(ArrayColumns { table, inner }))
            }
            None => inner,
        }
    }
}

#[async_trait]
impl Gather for ArrayColumns {
    fn inner(&self) -> &Arc<dyn TableProvider> {
        &self.inner
    }

    fn schema(&self) -> SchemaRef {
        schema(self.table, &self.inner.schema())
    }

    async fn batches(&self) -> Result<Vec<RecordBatch>> {
        let target = Gather::schema(self);
        collect(&self.inner)
            .await?
            .iter()
            .map(|b| convert(self.table, b, &target))
            .collect()
    }
}

fn oid_list_field(name: &str, element: DataType) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new_list_field(element, true))),
        true,
    )
}

/// `table`'s schema with the array columns as lists.
pub fn schema(table: &str, exported: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = exported
        .fields()
        .iter()
        .map(|f| match form(table, f.name()) {
            Some(_) if f.data_type() != &DataType::Utf8 => f.as_ref().clone(),
            Some(Form::Vector) => oid_list_field(f.name(), DataType::Int32).with_metadata(
                HashMap::from([(OIDVECTOR_KEY.to_string(), "true".to_string())]),
            ),
            // oid is unsigned 32-bit: JDBC reads an `oid[]` as `Long[]` (pgjdbc's
            // getProcedureColumns casts proallargtypes so), so the values are Int64.
            Some(Form::Oids) => oid_list_field(f.name(), DataType::Int64),
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
pub fn convert(table: &str, batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch> {
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let converted = match (form(table, field.name()), column.data_type()) {
            (Some(form), DataType::Utf8) => lists(column.as_string::<i32>(), form)?,
            _ => column.clone(),
        };
        columns.push(converted);
    }
    Ok(RecordBatch::try_new(target.clone(), columns)?)
}

fn lists(text: &datafusion::arrow::array::StringArray, form: Form) -> Result<ArrayRef> {
    let items = |v: &str| -> Vec<String> {
        let v = v.trim();
        match form {
            Form::Vector => v.split_ascii_whitespace().map(str::to_string).collect(),
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
        Form::Vector | Form::Oids => {
            let mut b = ListBuilder::new(Int64Builder::new());
            for i in 0..text.len() {
                if text.is_null(i) {
                    b.append_null();
                    continue;
                }
                for item in items(text.value(i)) {
                    b.values().append_option(item.parse::<i64>().ok());
                }
                b.append(true);
            }
            let list: ArrayRef = Arc::new(b.finish());
            match form {
                // Vectors are lists of Int32 (see `schema`); the numbers fit.
                Form::Vector => Ok(datafusion::arrow::compute::cast(
                    &list,
                    &DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true))),
                )?),
                _ => Ok(list),
            }
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
            Ok(Arc::new(b.finish()))
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
        let target = schema("pg_proc", &exported);
        assert!(target.field(1).metadata().contains_key(OIDVECTOR_KEY));
        let out = convert("pg_proc", &batch, &target).unwrap();
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
