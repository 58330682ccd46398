//! What a planned statement touches, read from its logical plan.
//!
//! The walk visits every node and, through `apply_with_subqueries`, every subquery inside
//! an expression (scalar, EXISTS, IN, LATERAL), the inputs of EXPLAIN and EXPLAIN
//! ANALYZE, and the inputs of DDL and DML. A scan is identified by what the planner put
//! there: a table function's [`Touches`], else the name the planner resolved, which is a
//! catalog entry (CTEs are inlined subplans by then and never reach this as a name). A
//! scan that is neither (an unmarked table function) is [`Touch::Unknown`], refused to
//! every user: the walk fails closed.

use datafusion::common::TableReference;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::dml::MergeIntoAction;
use datafusion::logical_expr::{DdlStatement, LogicalPlan, WriteOp};

use super::Touch;
use super::guarded::Touches;
use crate::{CATALOG, EngineError};

/// Everything `plan` reads and writes, with unqualified names in `default_schema`.
pub fn touches(plan: &LogicalPlan, default_schema: &str) -> Result<Vec<Touch>, EngineError> {
    let mut out = Vec::new();
    plan.apply_with_subqueries(|node| {
        node_touches(node, default_schema, &mut out);
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(out)
}

fn resolve(name: &TableReference, default_schema: &str) -> Result<(String, String), String> {
    let r = name.clone().resolve(CATALOG, default_schema);
    if r.catalog.as_ref() != CATALOG {
        return Err(format!("relation {name}"));
    }
    // `t#ctid` is `t` read with its tuple ids (crate::ctid).
    let table = crate::names::read_with_tuple_ids(&r.table).unwrap_or(&r.table);
    Ok((r.schema.to_string(), table.to_string()))
}

fn relation(
    name: &TableReference,
    default_schema: &str,
    f: impl Fn(String, String) -> Touch,
) -> Touch {
    match resolve(name, default_schema) {
        Ok((s, t)) => f(s, t),
        Err(what) => Touch::Unknown(what),
    }
}

fn node_touches(node: &LogicalPlan, default_schema: &str, out: &mut Vec<Touch>) {
    match node {
        LogicalPlan::TableScan(scan) => {
            let provider = match source_as_provider(&scan.source) {
                Ok(p) => p,
                Err(_) => {
                    out.push(Touch::Unknown(format!("relation {}", scan.table_name)));
                    return;
                }
            };
            if let Some(t) = provider.downcast_ref::<Touches>() {
                out.extend(t.touches().iter().cloned());
                return;
            }
            // Table functions are scanned under their own name (`read_csv()`).
            if let TableReference::Bare { table } = &scan.table_name
                && table.contains('(')
            {
                out.push(Touch::Unknown(format!("function {table}")));
                return;
            }
            out.push(relation(
                &scan.table_name,
                default_schema,
                |schema, table| Touch::Read { schema, table },
            ));
        }
        // MERGE (and what runs as one: UPDATE ... FROM, INSERT ... ON CONFLICT) needs
        // the privilege of each action it can take, as in PostgreSQL.
        LogicalPlan::Dml(dml) if matches!(dml.op, WriteOp::MergeInto(_)) => {
            let WriteOp::MergeInto(m) = &dml.op else {
                return;
            };
            let mut ops: Vec<&'static str> = m
                .clauses
                .iter()
                .map(|c| match c.action {
                    MergeIntoAction::Insert { .. } => "INSERT",
                    MergeIntoAction::Update(_) => "UPDATE",
                    MergeIntoAction::Delete => "DELETE",
                })
                .collect();
            ops.sort_unstable();
            ops.dedup();
            for op in ops {
                out.push(relation(
                    &dml.table_name,
                    default_schema,
                    |schema, table| Touch::Write { schema, table, op },
                ));
            }
        }
        LogicalPlan::Dml(dml) => {
            let op = match &dml.op {
                WriteOp::Insert(_) => "INSERT",
                WriteOp::Delete => "DELETE",
                WriteOp::Update => "UPDATE",
                WriteOp::Ctas => "CREATE TABLE AS",
                WriteOp::Truncate => "TRUNCATE",
                _ => "WRITE",
            };
            out.push(relation(
                &dml.table_name,
                default_schema,
                |schema, table| Touch::Write { schema, table, op },
            ));
        }
        LogicalPlan::Copy(copy) => out.push(Touch::File {
            location: copy.output_url.clone(),
            write: true,
        }),
        LogicalPlan::Ddl(ddl) => ddl_touches(ddl, default_schema, out),
        LogicalPlan::Extension(_) => match crate::alter::alter_node(node) {
            Some(a)
                if a.actions
                    .iter()
                    .any(|x| matches!(x, crate::alter::AlterAction::RenameSchema(_))) =>
            {
                out.push(Touch::Database {
                    what: "ALTER SCHEMA".into(),
                })
            }
            Some(a) => out.push(define(&a.name, default_schema, "ALTER TABLE")),
            None => out.push(Touch::Unknown(format!("plan node {}", node.display()))),
        },
        _ => {}
    }
}

fn define(name: &TableReference, default_schema: &str, what: &str) -> Touch {
    relation(name, default_schema, |schema, _| Touch::Define {
        schema,
        what: what.to_string(),
    })
}

fn ddl_touches(ddl: &DdlStatement, default_schema: &str, out: &mut Vec<Touch>) {
    match ddl {
        DdlStatement::CreateExternalTable(c) => {
            out.push(define(&c.name, default_schema, "CREATE EXTERNAL TABLE"));
            out.extend(c.locations.iter().map(|location| Touch::File {
                location: location.clone(),
                write: false,
            }));
        }
        DdlStatement::CreateMemoryTable(c) => {
            out.push(define(&c.name, default_schema, "CREATE TABLE"))
        }
        DdlStatement::CreateView(v) => out.push(define(&v.name, default_schema, "CREATE VIEW")),
        DdlStatement::DropTable(d) => out.push(define(&d.name, default_schema, "DROP TABLE")),
        DdlStatement::DropView(d) => out.push(define(&d.name, default_schema, "DROP VIEW")),
        DdlStatement::CreateIndex(c) => out.push(define(&c.table, default_schema, "CREATE INDEX")),
        DdlStatement::CreateCatalogSchema(_) => out.push(Touch::Database {
            what: "CREATE SCHEMA".into(),
        }),
        DdlStatement::DropCatalogSchema(_) => out.push(Touch::Database {
            what: "DROP SCHEMA".into(),
        }),
        DdlStatement::CreateCatalog(_) => out.push(Touch::Database {
            what: "CREATE DATABASE".into(),
        }),
        DdlStatement::CreateFunction(_) => out.push(Touch::Database {
            what: "CREATE FUNCTION".into(),
        }),
        DdlStatement::DropFunction(_) => out.push(Touch::Database {
            what: "DROP FUNCTION".into(),
        }),
    }
}
