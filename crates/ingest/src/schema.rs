//! Bronze table schemas: the declared schema of a source (a Delta/Spark schema JSON or a
//! JSON Schema file), the Kafka metadata columns every bronze row carries, and schema
//! evolution for sources without a declared schema (new fields are added, nested ones
//! included; nothing is dropped or narrowed).

use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use serde_json::Value;

use super::IngestError;

/// Names of the metadata columns, in table order.
pub const META_COLUMNS: [&str; 7] = [
    "_topic",
    "_partition",
    "_offset",
    "_timestamp",
    "_key",
    "_headers",
    "_ingested_at",
];

/// The `_raw` column holding the original message text.
pub const RAW_COLUMN: &str = "_raw";

pub(crate) fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

pub(crate) fn headers_type() -> DataType {
    DataType::Map(
        Arc::new(Field::new(
            "entries",
            DataType::Struct(Fields::from(vec![
                Field::new("key", DataType::Utf8, false),
                Field::new("value", DataType::Utf8, true),
            ])),
            false,
        )),
        false,
    )
}

/// The metadata fields (and `_raw` when kept) appended after the data columns.
pub fn meta_fields(raw: bool) -> Vec<Field> {
    let mut f = vec![
        Field::new("_topic", DataType::Utf8, false),
        Field::new("_partition", DataType::Int32, false),
        Field::new("_offset", DataType::Int64, false),
        Field::new("_timestamp", timestamp_type(), true),
        Field::new("_key", DataType::Utf8, true),
        Field::new("_headers", headers_type(), true),
        Field::new("_ingested_at", timestamp_type(), false),
    ];
    if raw {
        f.push(Field::new(RAW_COLUMN, DataType::Utf8, true));
    }
    f
}

/// True for the columns tidepool adds itself.
pub fn is_meta(name: &str) -> bool {
    name == RAW_COLUMN || META_COLUMNS.contains(&name)
}

/// The data columns of a bronze schema (metadata columns removed).
pub fn data_schema(table: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        table
            .fields()
            .iter()
            .filter(|f| !is_meta(f.name()))
            .cloned()
            .collect::<Vec<_>>(),
    ))
}

/// Loads a declared schema file: a Delta / Spark schema (`{"type":"struct","fields":[...]}`,
/// what `df.schema.json()` prints) or a JSON Schema (`{"type":"object","properties":{...}}`).
pub fn load_declared(path: &Path) -> Result<SchemaRef, IngestError> {
    let bad = |message: String| IngestError::Schema {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let schema = if value.get("fields").is_some() {
        delta_schema(&text).map_err(bad)?
    } else if value.get("properties").is_some() {
        json_schema(&text).map_err(bad)?
    } else {
        return Err(bad(
            "expected a Delta/Spark schema with \"fields\" or a JSON Schema with \"properties\""
                .into(),
        ));
    };
    if let Some(f) = schema.fields().iter().find(|f| is_meta(f.name())) {
        return Err(bad(format!(
            "column {} is reserved for Kafka metadata",
            f.name()
        )));
    }
    Ok(Arc::new(schema))
}

fn delta_schema(text: &str) -> Result<Schema, String> {
    use deltalake::kernel::StructType;
    use deltalake::kernel::engine::arrow_conversion::TryIntoArrow;
    let st: StructType = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let schema: Schema = (&st).try_into_arrow().map_err(|e| e.to_string())?;
    Ok(schema)
}

/// JSON with object keys in file order (serde_json's map sorts them), so declared columns
/// keep the order they are written in.
#[derive(Debug)]
enum Json {
    Object(Vec<(String, Json)>),
    Array(Vec<Json>),
    String(String),
    Other,
}

impl Json {
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }
}

impl<'de> serde::Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Json;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Json, E> {
                Ok(Json::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Json, E> {
                Ok(Json::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Json, E> {
                Ok(Json::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Json, E> {
                Ok(Json::Other)
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Other)
            }
            fn visit_str<E>(self, v: &str) -> Result<Json, E> {
                Ok(Json::String(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Json, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = a.next_element()? {
                    out.push(v);
                }
                Ok(Json::Array(out))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Json, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = a.next_entry::<String, Json>()? {
                    out.push((k, v));
                }
                Ok(Json::Object(out))
            }
        }
        d.deserialize_any(V)
    }
}

fn json_schema(text: &str) -> Result<Schema, String> {
    let v: Json = serde_json::from_str(text).map_err(|e| e.to_string())?;
    json_schema_object(&v, "")
}

fn json_schema_object(v: &Json, at: &str) -> Result<Schema, String> {
    let Some(Json::Object(props)) = v.get("properties") else {
        return Err(format!("{at}: an object needs \"properties\""));
    };
    let required: Vec<&str> = match v.get("required") {
        Some(Json::Array(a)) => a.iter().filter_map(Json::as_str).collect(),
        _ => Vec::new(),
    };
    let mut fields = Vec::new();
    for (name, prop) in props {
        let path = if at.is_empty() {
            name.clone()
        } else {
            format!("{at}.{name}")
        };
        let (dt, nullable) = json_schema_type(prop, &path)?;
        fields.push(Field::new(
            name,
            dt,
            nullable || !required.contains(&name.as_str()),
        ));
    }
    Ok(Schema::new(fields))
}

fn json_schema_type(v: &Json, at: &str) -> Result<(DataType, bool), String> {
    let (ty, nullable) = match v.get("type") {
        Some(Json::String(s)) => (s.as_str(), false),
        Some(Json::Array(a)) => {
            let types: Vec<&str> = a.iter().filter_map(Json::as_str).collect();
            let non_null: Vec<&str> = types.iter().copied().filter(|t| *t != "null").collect();
            match non_null.as_slice() {
                [one] => (*one, types.contains(&"null")),
                _ => return Err(format!("{at}: union types {types:?} are not supported")),
            }
        }
        _ => return Err(format!("{at}: missing \"type\"")),
    };
    let dt = match ty {
        "string" => match v.get("format").and_then(Json::as_str) {
            Some("date-time") => timestamp_type(),
            Some("date") => DataType::Date32,
            _ => DataType::Utf8,
        },
        "integer" => DataType::Int64,
        "number" => DataType::Float64,
        "boolean" => DataType::Boolean,
        "object" => DataType::Struct(json_schema_object(v, at)?.fields().clone()),
        "array" => {
            let items = v
                .get("items")
                .ok_or_else(|| format!("{at}: an array needs \"items\""))?;
            let (item, _) = json_schema_type(items, &format!("{at}[]"))?;
            DataType::List(Arc::new(Field::new("item", item, true)))
        }
        other => return Err(format!("{at}: type {other:?} is not supported")),
    };
    Ok((dt, nullable))
}

/// Infers the data schema of JSON object messages, in a form Delta can store (fields seen
/// only as null are left out until a value shows their type). Messages are inferred one
/// by one: the first type seen for a field wins, except that integers seen beside
/// fractional numbers become doubles, so one odd message does not turn a column into text.
pub fn infer<'a>(values: impl Iterator<Item = &'a [u8]>) -> Option<Schema> {
    let mut acc: Option<Fields> = None;
    for v in values {
        let Ok(value) = serde_json::from_slice::<Value>(v) else {
            continue;
        };
        if !value.is_object() {
            continue;
        }
        let Ok(one) = arrow::json::reader::infer_json_schema_from_iterator(std::iter::once(Ok::<
            _,
            arrow::error::ArrowError,
        >(
            value,
        ))) else {
            continue;
        };
        let fields: Fields = one
            .fields()
            .iter()
            .filter(|f| !is_meta(f.name()))
            .filter_map(|f| storable(f))
            .collect();
        acc = Some(match acc {
            None => fields,
            Some(a) => merge_inferred(&a, &fields),
        });
    }
    acc.map(Schema::new)
}

fn merge_inferred(acc: &Fields, incoming: &Fields) -> Fields {
    let mut out: Vec<Field> = acc.iter().map(|f| f.as_ref().clone()).collect();
    for inc in incoming.iter() {
        match out.iter().position(|f| f.name() == inc.name()) {
            None => out.push(inc.as_ref().clone()),
            Some(i) => {
                let merged = match (out[i].data_type(), inc.data_type()) {
                    (DataType::Int64, DataType::Float64) => Some(DataType::Float64),
                    (DataType::Struct(a), DataType::Struct(b)) => {
                        Some(DataType::Struct(merge_inferred(a, b)))
                    }
                    (DataType::List(a), DataType::List(b)) => {
                        match (a.data_type(), b.data_type()) {
                            (DataType::Struct(x), DataType::Struct(y)) => {
                                Some(DataType::List(Arc::new(
                                    a.as_ref()
                                        .clone()
                                        .with_data_type(DataType::Struct(merge_inferred(x, y))),
                                )))
                            }
                            (DataType::Int64, DataType::Float64) => Some(DataType::List(Arc::new(
                                a.as_ref().clone().with_data_type(DataType::Float64),
                            ))),
                            _ => None,
                        }
                    }
                    _ => None,
                };
                if let Some(dt) = merged {
                    out[i] = out[i].clone().with_data_type(dt);
                }
            }
        }
    }
    Fields::from(out)
}

/// A field with null-only parts removed; `None` when nothing is left.
fn storable(f: &Field) -> Option<Field> {
    let dt = match f.data_type() {
        DataType::Null => return None,
        DataType::Struct(children) => {
            let kept: Vec<Field> = children.iter().filter_map(|c| storable(c)).collect();
            if kept.is_empty() {
                return None;
            }
            DataType::Struct(Fields::from(kept))
        }
        DataType::List(item) => {
            let item = storable(item)?;
            DataType::List(Arc::new(item.with_nullable(true)))
        }
        other => other.clone(),
    };
    Some(Field::new(f.name(), dt, true))
}

/// Adds the fields of `incoming` that `current` lacks, recursing into structs and lists of
/// structs. Existing fields keep their type; returns `None` when nothing was added.
pub fn widen(current: &Schema, incoming: &Schema) -> Option<Schema> {
    let merged = widen_fields(current.fields(), incoming.fields())?;
    Some(Schema::new(merged))
}

fn widen_fields(current: &Fields, incoming: &Fields) -> Option<Fields> {
    let mut out: Vec<Field> = current.iter().map(|f| f.as_ref().clone()).collect();
    let mut changed = false;
    for inc in incoming.iter() {
        match out.iter().position(|f| f.name() == inc.name()) {
            None => {
                out.push(inc.as_ref().clone().with_nullable(true));
                changed = true;
            }
            Some(i) => {
                if let Some(dt) = widen_type(out[i].data_type(), inc.data_type()) {
                    out[i] = out[i].clone().with_data_type(dt);
                    changed = true;
                }
            }
        }
    }
    changed.then(|| Fields::from(out))
}

fn widen_type(current: &DataType, incoming: &DataType) -> Option<DataType> {
    match (current, incoming) {
        (DataType::Struct(a), DataType::Struct(b)) => widen_fields(a, b).map(DataType::Struct),
        (DataType::List(a), DataType::List(b)) => {
            let dt = widen_type(a.data_type(), b.data_type())?;
            Some(DataType::List(Arc::new(
                a.as_ref().clone().with_data_type(dt),
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inference_skips_nulls_and_widening_adds_nested_fields() {
        let a = br#"{"id": 1, "customer": {"name": "ann"}, "note": null, "items": [{"sku": "x"}]}"#;
        let s1 = infer([a.as_slice()].into_iter()).unwrap();
        assert!(s1.field_with_name("note").is_err());
        let b = br#"{"id": 2, "customer": {"name": "bob", "tier": "gold"}, "items": [{"sku": "y", "qty": 2}], "channel": "web"}"#;
        let s2 = infer([b.as_slice()].into_iter()).unwrap();
        let merged = widen(&s1, &s2).unwrap();
        let names: Vec<&str> = merged.fields().iter().map(|f| f.name().as_str()).collect();
        assert!(names.contains(&"channel"));
        let DataType::Struct(c) = merged.field_with_name("customer").unwrap().data_type() else {
            panic!("customer is a struct")
        };
        assert_eq!(c.len(), 2);
        assert!(widen(&merged, &s2).is_none(), "nothing new the second time");
        // A conflicting type is not widened: such messages go to the dead letters.
        let c = br#"{"id": "three"}"#;
        let s3 = infer([c.as_slice()].into_iter()).unwrap();
        assert!(widen(&merged, &s3).is_none());
    }

    #[test]
    fn json_schema_and_delta_schema_load() {
        let dir = tempfile::tempdir().unwrap();
        let js = dir.path().join("o.schema.json");
        std::fs::write(
            &js,
            r#"{"type":"object","required":["id"],"properties":{
                "id":{"type":"integer"},"at":{"type":"string","format":"date-time"},
                "items":{"type":"array","items":{"type":"object","properties":{"sku":{"type":"string"}}}}}}"#,
        )
        .unwrap();
        let s = load_declared(&js).unwrap();
        assert_eq!(
            s.field_with_name("id").unwrap().data_type(),
            &DataType::Int64
        );
        assert!(!s.field_with_name("id").unwrap().is_nullable());
        assert_eq!(
            s.field_with_name("at").unwrap().data_type(),
            &timestamp_type()
        );
        let ds = dir.path().join("d.json");
        std::fs::write(
            &ds,
            r#"{"type":"struct","fields":[{"name":"id","type":"long","nullable":false,"metadata":{}},
               {"name":"tags","type":{"type":"array","elementType":"string","containsNull":true},"nullable":true,"metadata":{}}]}"#,
        )
        .unwrap();
        let s = load_declared(&ds).unwrap();
        assert_eq!(s.fields().len(), 2);
        std::fs::write(
            &ds,
            r#"{"type":"object","properties":{"_offset":{"type":"integer"}}}"#,
        )
        .unwrap();
        assert!(
            load_declared(&ds)
                .unwrap_err()
                .to_string()
                .contains("reserved")
        );
    }
}
