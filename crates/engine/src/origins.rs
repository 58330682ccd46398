//! Where a result's columns come from, as PostgreSQL's RowDescription says it: for a
//! column that is a lake table's column passed through (selected, filtered, sorted,
//! joined, renamed), the table's oid and the column's number. pgjdbc's
//! `ResultSetMetaData.getTableName` / `getSchemaName` / `isNullable` and Npgsql's
//! `GetSchemaTable` look the column up in `pg_attribute` by them. The result schema's
//! fields carry them as metadata ([`TABLE_OID_KEY`], [`ATTNUM_KEY`]) for the protocol.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::logical_expr::{Expr, JoinType, LogicalPlan};

/// Field metadata: the oid of the table a result column comes from.
pub const TABLE_OID_KEY: &str = "pg.table_oid";
/// Field metadata: that column's number in its table (from 1).
pub const ATTNUM_KEY: &str = "pg.attnum";

/// A result column's source: a lake table's column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub schema: String,
    pub table: String,
    pub attnum: i16,
}

/// Schemas whose tables are not lake tables.
const NOT_LAKE: [&str; 3] = ["pg_catalog", "information_schema", "system"];

/// The origin of each of `plan`'s result columns (`default_schema` resolves unqualified
/// table names).
pub fn of(plan: &LogicalPlan, default_schema: &str) -> Vec<Option<Origin>> {
    let width = plan.schema().fields().len();
    let mut out = walk(plan, default_schema);
    out.resize(width, None);
    out
}

fn walk(plan: &LogicalPlan, default_schema: &str) -> Vec<Option<Origin>> {
    let width = plan.schema().fields().len();
    let unknown = || vec![None; width];
    match plan {
        LogicalPlan::TableScan(scan) => {
            let schema = scan.table_name.schema().unwrap_or(default_schema);
            if NOT_LAKE.contains(&schema) {
                return unknown();
            }
            let source = scan.source.schema();
            scan.projected_schema
                .fields()
                .iter()
                .map(|f| {
                    let i = source.index_of(f.name()).ok()?;
                    Some(Origin {
                        schema: schema.to_string(),
                        table: scan.table_name.table().to_string(),
                        attnum: i16::try_from(i + 1).ok()?,
                    })
                })
                .collect()
        }
        LogicalPlan::Projection(p) => {
            let input = walk(&p.input, default_schema);
            p.expr
                .iter()
                .map(|e| match e.clone().unalias_nested().data {
                    Expr::Column(c) => {
                        let i = p.input.schema().index_of_column(&c).ok()?;
                        input.get(i).cloned().flatten()
                    }
                    _ => None,
                })
                .collect()
        }
        LogicalPlan::Filter(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::SubqueryAlias(_)
        | LogicalPlan::Repartition(_) => match plan.inputs().first() {
            Some(input) if input.schema().fields().len() == width => walk(input, default_schema),
            _ => unknown(),
        },
        LogicalPlan::Join(j) => {
            let left = walk(&j.left, default_schema);
            let right = walk(&j.right, default_schema);
            let both = left.len() + right.len() == width;
            match j.join_type {
                JoinType::LeftSemi | JoinType::LeftAnti if left.len() == width => left,
                JoinType::RightSemi | JoinType::RightAnti if right.len() == width => right,
                _ if both => left.into_iter().chain(right).collect(),
                _ => unknown(),
            }
        }
        _ => unknown(),
    }
}

/// `schema` with each column's table oid and number, where `origins` has one and
/// `oids` the table's oid; `None` when no column has both.
pub fn annotate(
    schema: &Schema,
    origins: &[Option<Origin>],
    oids: &HashMap<(String, String), i64>,
) -> Option<SchemaRef> {
    let mut any = false;
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .zip(origins.iter().chain(std::iter::repeat(&None)))
        .map(|(f, o)| {
            let Some(o) = o else {
                return f.as_ref().clone();
            };
            let Some(oid) = oids.get(&(o.schema.clone(), o.table.clone())) else {
                return f.as_ref().clone();
            };
            any = true;
            let mut metadata = f.metadata().clone();
            metadata.insert(TABLE_OID_KEY.to_string(), oid.to_string());
            metadata.insert(ATTNUM_KEY.to_string(), o.attnum.to_string());
            f.as_ref().clone().with_metadata(metadata)
        })
        .collect();
    any.then(|| Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())))
}
