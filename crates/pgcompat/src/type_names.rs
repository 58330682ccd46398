//! PostgreSQL type names DataFusion's SQL planner refuses ("Unsupported SQL type"), for
//! casts and column definitions: `name` (`'lake'::name`, psqlODBC's `SQLForeignKeys`),
//! the one-byte `"char"` (`relkind = 'r'::"char"`), `bpchar`, `tid` and `xid`. Each
//! is planned as the Arrow type tidepool stores that kind of value in (text for the
//! names, `"char"`, `bpchar` and `tid`; a 32-bit integer for `xid`). Every other name
//! goes on to datafusion-pg-catalog's planner (`regclass`, `oid`, `pg_catalog.int4`...).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::Result;
use datafusion::logical_expr::planner::TypePlanner;
use datafusion::sql::sqlparser::ast::{DataType as SqlType, ObjectNamePart};
use datafusion_pg_catalog::pg_catalog::oid_type_planner::PgOidTypePlanner;

/// The planner: these names, then datafusion-pg-catalog's.
#[derive(Debug, Default)]
pub struct TypeNames {
    next: PgOidTypePlanner,
}

impl TypePlanner for TypeNames {
    fn plan_type_field(&self, sql_type: &SqlType) -> Result<Option<FieldRef>> {
        if let Some(t) = arrow_type(sql_type) {
            return Ok(Some(Arc::new(Field::new("", t, true))));
        }
        self.next.plan_type_field(sql_type)
    }
}

/// The Arrow type of a PostgreSQL type name this module plans.
fn arrow_type(sql_type: &SqlType) -> Option<DataType> {
    let SqlType::Custom(name, args) = sql_type else {
        return None;
    };
    if !args.is_empty() {
        return None;
    }
    // `name` or `pg_catalog.name`.
    let parts: Vec<&str> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => Some(i.value.as_str()),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let last = match parts.as_slice() {
        [t] => *t,
        [s, t] if s.eq_ignore_ascii_case("pg_catalog") => *t,
        _ => return None,
    };
    match last.to_ascii_lowercase().as_str() {
        "name" | "char" | "bpchar" | "tid" => Some(DataType::Utf8),
        "xid" | "cid" => Some(DataType::Int32),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::ast::{Expr, SelectItem, SetExpr, Statement};
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn cast_type(sql: &str) -> SqlType {
        let s = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        let Statement::Query(q) = s else { panic!() };
        let SetExpr::Select(sel) = *q.body else {
            panic!()
        };
        let SelectItem::UnnamedExpr(Expr::Cast { data_type, .. }) = &sel.projection[0] else {
            panic!()
        };
        data_type.clone()
    }

    #[test]
    fn plans_the_names_and_leaves_the_rest() {
        assert_eq!(
            arrow_type(&cast_type("SELECT 'x'::name")),
            Some(DataType::Utf8)
        );
        assert_eq!(
            arrow_type(&cast_type("SELECT 'r'::\"char\"")),
            Some(DataType::Utf8)
        );
        assert_eq!(
            arrow_type(&cast_type("SELECT 'x'::pg_catalog.name")),
            Some(DataType::Utf8)
        );
        assert_eq!(arrow_type(&cast_type("SELECT 'x'::regclass")), None);
    }
}
