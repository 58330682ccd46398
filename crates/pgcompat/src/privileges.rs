//! `has_table_privilege`, `has_any_column_privilege`, `has_column_privilege`,
//! `has_schema_privilege`, `has_database_privilege`, `has_function_privilege` and
//! `pg_has_role` for one session, answered from `[[users]]` and the GRANTs: a reader
//! (`schemas = [...]`) holds SELECT/USAGE/EXECUTE on its schemas and the catalogs plus what
//! was granted to it (a table's grant for that table only), and is a member of no role but
//! itself; other users hold everything, as superusers do.
//! Metabase syncs only the tables these report readable. They advise; every statement is
//! still checked by `access`.

use std::sync::Arc;

use datafusion::arrow::array::BooleanBuilder;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::pg_functions::scalar_text as text;
use tidepool_engine::authz::Access;

/// The object a privilege function takes, and how many arguments name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Object {
    Table,
    Column,
    Schema,
    Database,
    Function,
    Role,
}

const FUNCTIONS: &[(&str, Object)] = &[
    ("has_table_privilege", Object::Table),
    ("has_any_column_privilege", Object::Table),
    ("has_column_privilege", Object::Column),
    ("has_schema_privilege", Object::Schema),
    ("has_database_privilege", Object::Database),
    ("has_function_privilege", Object::Function),
    ("pg_has_role", Object::Role),
];

/// The privilege functions for `user`, whose unqualified names resolve in `schema`.
pub fn udfs(access: &Access, user: &str, schema: &str) -> Vec<ScalarUDF> {
    FUNCTIONS
        .iter()
        .map(|(name, object)| {
            ScalarUDF::new_from_impl(HasPrivilege {
                name,
                object: *object,
                access: Arc::new(access.clone()),
                user: user.to_string(),
                schema: schema.to_string(),
                signature: Signature::variadic_any(Volatility::Stable),
            })
        })
        .collect()
}

#[derive(Debug)]
struct HasPrivilege {
    name: &'static str,
    object: Object,
    access: Arc<Access>,
    user: String,
    schema: String,
    signature: Signature,
}

impl PartialEq for HasPrivilege {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.user == other.user && self.schema == other.schema
    }
}

impl Eq for HasPrivilege {}

impl std::hash::Hash for HasPrivilege {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.name, &self.user, &self.schema).hash(state);
    }
}

/// `"gold"."Fact"` / `gold.fact` / `fact` -> the schema part (or `default`) and the last.
fn schema_of(name: &str, default: &str) -> (String, String) {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = name.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut cur)),
            c if quoted => cur.push(c),
            c => cur.push(c.to_ascii_lowercase()),
        }
    }
    parts.push(cur);
    let last = parts.last().cloned().unwrap_or_default();
    if parts.len() >= 2 {
        (parts[parts.len() - 2].clone(), last)
    } else {
        (default.to_string(), last)
    }
}

impl ScalarUDFImpl for HasPrivilege {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let object_args = if self.object == Object::Column { 2 } else { 1 };
        let with_user = match args.args.len() {
            n if n == object_args + 1 => false,
            n if n == object_args + 2 => true,
            _ => {
                return Err(DataFusionError::Plan(format!(
                    "{} takes [user,] {}, privilege",
                    self.name,
                    if self.object == Object::Column {
                        "table, column"
                    } else {
                        "object"
                    }
                )));
            }
        };
        let (rows, scalar) = crate::pg_functions::row_values(&args)?;
        let mut out = BooleanBuilder::with_capacity(rows.len());
        for values in rows {
            if values.iter().any(|v| v.is_null()) {
                out.append_null();
                continue;
            }
            let (user, rest) = if with_user {
                (text(&values[0]), &values[1..])
            } else {
                (self.user.clone(), &values[..])
            };
            let privilege = text(&rest[rest.len() - 1]);
            let user = if user.chars().all(|c| c.is_ascii_digit()) {
                self.user.clone()
            } else {
                user
            };
            if self.object == Object::Role {
                let role = text(&rest[0]);
                out.append_value(!self.access.is_reader(&user) || role == user);
                continue;
            }
            // Oids cannot be told apart by schema here: the object is "unknown schema".
            let (schema, table) = match (&self.object, &rest[0]) {
                (Object::Database, _) => (None, None),
                (_, v) if !is_text(v) => (None, None),
                (Object::Schema, v) => (Some(text(v).to_ascii_lowercase()), None),
                (Object::Function, v) => (Some(schema_of(&text(v), &self.schema).0), None),
                (_, v) => {
                    let (s, t) = schema_of(&text(v), &self.schema);
                    (Some(s), Some(t))
                }
            };
            let held = privilege.split(',').any(|p| {
                self.access
                    .holds(&user, schema.as_deref(), table.as_deref(), p)
            });
            out.append_value(held);
        }
        crate::pg_functions::finish(Arc::new(out.finish()), scalar)
    }
}

fn is_text(v: &ScalarValue) -> bool {
    matches!(
        v,
        ScalarValue::Utf8(_) | ScalarValue::Utf8View(_) | ScalarValue::LargeUtf8(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_and_bare_names_give_their_schema() {
        let s = |n: &str| schema_of(n, "public");
        assert_eq!(
            s("\"gold\".\"Fact \"\"x\"\"\""),
            ("gold".into(), "Fact \"x\"".into())
        );
        assert_eq!(s("Gold.fact"), ("gold".into(), "fact".into()));
        assert_eq!(s("fact"), ("public".into(), "fact".into()));
        assert_eq!(s("\"My.Schema\".t"), ("My.Schema".into(), "t".into()));
    }
}
