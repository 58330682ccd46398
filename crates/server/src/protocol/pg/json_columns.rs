//! Nested columns as text.
//!
//! Postgres clients and BI tools cannot read Arrow structs or maps; tidepool sends any
//! column holding a struct or map (also inside a list) as `text` holding JSON, the way
//! `jsonb` values read in most tools. Lists of scalars stay Postgres arrays; lists of
//! lists (`make_array(make_array(1, 2), ...)`, `array_agg` of an array column) are sent as
//! `text` in Postgres' multidimensional array format, `{{1,2},{3,4}}`. A list of oids
//! marked as an `oidvector` (`pg_proc.proargtypes`) is sent in that type's text form,
//! `700 701`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;

fn list_element(t: &DataType) -> Option<&DataType> {
    match t {
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _) => Some(f.data_type()),
        _ => None,
    }
}

/// A list of lists of scalars (a multidimensional array).
fn is_multidimensional(t: &DataType) -> bool {
    match list_element(t) {
        Some(inner) => list_element(inner).is_some() && !is_nested(inner),
        None => false,
    }
}

fn is_nested(t: &DataType) -> bool {
    if is_multidimensional(t) {
        return true;
    }
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

fn is_oidvector(f: &Field) -> bool {
    f.metadata()
        .contains_key(crate::pgcompat::catalog_arrays::OIDVECTOR_KEY)
        && list_element(f.data_type()).is_some()
}

/// Whether a column is sent as text in place of its Arrow type.
fn as_text(f: &Field) -> bool {
    is_nested(f.data_type()) || is_oidvector(f)
}

/// True if some column needs converting.
pub fn needs_conversion(schema: &Schema) -> bool {
    schema.fields().iter().any(|f| as_text(f))
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
            if is_oidvector(f) {
                // The marker stays: RowDescription names int2vector / oidvector.
                Field::new(f.name(), DataType::Utf8, true).with_metadata(f.metadata().clone())
            } else if as_text(f) {
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
            if is_oidvector(field) {
                to_oidvector_text(col)
            } else if is_multidimensional(field.data_type()) {
                to_array_text(col)
            } else if is_nested(field.data_type()) {
                to_json(field, col)
            } else {
                Ok(col.clone())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(target.clone(), columns)
}

/// `700 701`: the oids of each list, space-separated.
fn to_oidvector_text(col: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    let mut out = StringBuilder::with_capacity(col.len(), col.len() * 8);
    let options = datafusion::arrow::util::display::FormatOptions::default();
    for i in 0..col.len() {
        if col.is_null(i) {
            out.append_null();
            continue;
        }
        let items = match col.data_type() {
            DataType::List(_) => col.as_list::<i32>().value(i),
            DataType::LargeList(_) => col.as_list::<i64>().value(i),
            _ => col.as_fixed_size_list().value(i),
        };
        let formatter =
            datafusion::arrow::util::display::ArrayFormatter::try_new(items.as_ref(), &options)?;
        let text: Vec<String> = (0..items.len())
            .filter(|&j| items.is_valid(j))
            .map(|j| formatter.value(j).to_string())
            .collect();
        out.append_value(text.join(" "));
    }
    Ok(Arc::new(out.finish()))
}

fn to_array_text(col: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    let mut out = StringBuilder::with_capacity(col.len(), col.len() * 8);
    let mut text = String::new();
    for i in 0..col.len() {
        if col.is_null(i) {
            out.append_null();
            continue;
        }
        text.clear();
        write_array_value(col.as_ref(), i, &mut text)?;
        out.append_value(&text);
    }
    Ok(Arc::new(out.finish()))
}

/// Element `i` of `array` in Postgres' array text format: lists in braces, NULL bare,
/// strings quoted when they hold a delimiter, quote, backslash, space or are empty.
fn write_array_value(array: &dyn Array, i: usize, out: &mut String) -> Result<(), ArrowError> {
    if array.is_null(i) {
        out.push_str("NULL");
        return Ok(());
    }
    let items: Option<ArrayRef> = match array.data_type() {
        DataType::List(_) => Some(array.as_list::<i32>().value(i)),
        DataType::LargeList(_) => Some(array.as_list::<i64>().value(i)),
        DataType::FixedSizeList(..) => Some(array.as_fixed_size_list().value(i)),
        _ => None,
    };
    if let Some(items) = items {
        out.push('{');
        for j in 0..items.len() {
            if j > 0 {
                out.push(',');
            }
            write_array_value(items.as_ref(), j, out)?;
        }
        out.push('}');
        return Ok(());
    }
    let options = datafusion::arrow::util::display::FormatOptions::default();
    let formatter = datafusion::arrow::util::display::ArrayFormatter::try_new(array, &options)?;
    let value = formatter.value(i).to_string();
    let quote = value.is_empty()
        || value.eq_ignore_ascii_case("null")
        || value
            .chars()
            .any(|c| matches!(c, ',' | '{' | '}' | '"' | '\\') || c.is_whitespace());
    if quote {
        out.push('"');
        for c in value.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    } else {
        out.push_str(&value);
    }
    Ok(())
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
    fn lists_of_lists_become_array_text() {
        use datafusion::arrow::array::ListArray;
        use datafusion::arrow::datatypes::Int64Type;
        let inner = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![Some(1), Some(2)]),
            Some(vec![Some(3), None]),
            None,
        ]);
        let field = Arc::new(Field::new("item", inner.data_type().clone(), true));
        let outer = ListArray::new(
            field,
            datafusion::arrow::buffer::OffsetBuffer::from_lengths([2, 1]),
            Arc::new(inner),
            None,
        );
        let col: ArrayRef = Arc::new(outer);
        let text = to_array_text(&col).unwrap();
        let text = text.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(text.value(0), "{{1,2},{3,NULL}}");
        assert_eq!(text.value(1), "{NULL}");
        let strings = StringArray::from(vec!["a b", "", "x", "q\"", "NULL"]);
        let mut out = String::new();
        for i in 0..strings.len() {
            write_array_value(&strings, i, &mut out).unwrap();
            out.push('|');
        }
        assert_eq!(out, "\"a b\"|\"\"|x|\"q\\\"\"|\"NULL\"|");
    }

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
