//! Constraints and defaults written in `CREATE TABLE` (and `ALTER TABLE ... ADD
//! CONSTRAINT`), taken out of the statement before DataFusion plans it (DataFusion
//! refuses CHECK and REFERENCES and keeps the rest only in memory) and handed to the lake,
//! which stores them with the table ([`tidepool_lake::Declared`]). A PRIMARY KEY column
//! is made NOT NULL, as PostgreSQL does. Also here: the check of an INSERT's rows against
//! the table's CHECK constraints, which names the constraint a row breaks (23514).

use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, LogicalPlanBuilder, ScalarUDF, Volatility, create_udf,
};
use datafusion::prelude::{SessionContext, lit};
use datafusion::sql::sqlparser::ast::{
    ColumnOption, ColumnOptionDef, CreateTable, Ident, ObjectName, TableConstraint,
};
use tidepool_lake::{Constraint, ConstraintKind, Declared};

use crate::EngineError;

/// Takes the constraints and defaults out of `create`, named as PostgreSQL names them. A
/// foreign key's table without a schema gets an empty one (the session fills in its
/// default schema), and one without columns names the referenced table's key.
pub fn take(create: &mut CreateTable) -> Declared {
    let table = ident(create.name.0.last().and_then(|p| p.as_ident()));
    let mut declared = Declared::default();
    for column in &mut create.columns {
        let name = ident(Some(&column.name));
        if let Some(length) = crate::char_length::of_sql_type(&column.data_type) {
            declared.lengths.push((name.clone(), length));
        }
        let mut not_null = false;
        let mut keep = Vec::with_capacity(column.options.len());
        for def in std::mem::take(&mut column.options) {
            let given = def.name.as_ref().map(|n| ident(Some(n)));
            let taken = match &def.option {
                ColumnOption::Default(e) => {
                    declared.defaults.push((name.clone(), e.to_string()));
                    None
                }
                ColumnOption::PrimaryKey(_) => {
                    not_null = true;
                    Some(ConstraintKind::PrimaryKey)
                }
                ColumnOption::Unique(_) => Some(ConstraintKind::Unique),
                ColumnOption::Check(c) => Some(ConstraintKind::Check {
                    expr: c.expr.to_string(),
                }),
                ColumnOption::ForeignKey(f) => Some(foreign_key(
                    &f.foreign_table,
                    &f.referred_columns,
                    f.on_delete.map(|a| a.to_string()),
                    f.on_update.map(|a| a.to_string()),
                )),
                ColumnOption::NotNull => {
                    not_null = true;
                    keep.push(def);
                    continue;
                }
                _ => {
                    keep.push(def);
                    continue;
                }
            };
            if let Some(kind) = taken {
                push(&mut declared, &table, given, vec![name.clone()], kind);
            }
        }
        let was_not_null = keep
            .iter()
            .any(|d| matches!(d.option, ColumnOption::NotNull));
        if not_null && !was_not_null {
            keep.push(ColumnOptionDef {
                name: None,
                option: ColumnOption::NotNull,
            });
        }
        column.options = keep;
    }
    let mut keep = Vec::new();
    for c in std::mem::take(&mut create.constraints) {
        let Some((given, columns, kind)) = table_constraint(&c) else {
            keep.push(c);
            continue;
        };
        if kind == ConstraintKind::PrimaryKey {
            for column in &mut create.columns {
                let name = ident(Some(&column.name));
                let has = column
                    .options
                    .iter()
                    .any(|d| matches!(d.option, ColumnOption::NotNull));
                if columns.contains(&name) && !has {
                    column.options.push(ColumnOptionDef {
                        name: None,
                        option: ColumnOption::NotNull,
                    });
                }
            }
        }
        push(
            &mut declared,
            &table,
            given.map(|n| ident(Some(&n))),
            columns,
            kind,
        );
    }
    create.constraints = keep;
    declared
}

/// `ALTER TABLE table ADD CONSTRAINT ...` as what it declares; `None` for a kind of
/// constraint the lake does not keep (indexes, exclusion constraints).
pub fn added(table: &str, c: &TableConstraint) -> Option<Declared> {
    let (given, columns, kind) = table_constraint(c)?;
    let mut declared = Declared::default();
    push(
        &mut declared,
        table,
        given.map(|n| ident(Some(&n))),
        columns,
        kind,
    );
    Some(declared)
}

/// A table constraint's given name, columns and kind.
fn table_constraint(c: &TableConstraint) -> Option<(Option<Ident>, Vec<String>, ConstraintKind)> {
    Some(match c {
        TableConstraint::PrimaryKey(p) => (
            p.name.clone(),
            index_columns(&p.columns),
            ConstraintKind::PrimaryKey,
        ),
        TableConstraint::Unique(u) => (
            u.name.clone(),
            index_columns(&u.columns),
            ConstraintKind::Unique,
        ),
        TableConstraint::ForeignKey(f) => (
            f.name.clone(),
            f.columns.iter().map(|c| ident(Some(c))).collect(),
            foreign_key(
                &f.foreign_table,
                &f.referred_columns,
                f.on_delete.map(|a| a.to_string()),
                f.on_update.map(|a| a.to_string()),
            ),
        ),
        TableConstraint::Check(k) => (
            k.name.clone(),
            Vec::new(),
            ConstraintKind::Check {
                expr: k.expr.to_string(),
            },
        ),
        _ => return None,
    })
}

/// A constraint of `kind` on `columns`, under its given name or PostgreSQL's default one
/// (made unique with a number, as PostgreSQL does: `t_check1`).
fn push(
    declared: &mut Declared,
    table: &str,
    given: Option<String>,
    columns: Vec<String>,
    kind: ConstraintKind,
) {
    let name = given.unwrap_or_else(|| {
        let base = Constraint::default_name(table, &kind, &columns);
        let taken = |n: &str| declared.constraints.iter().any(|c| c.name == n);
        let mut name = base.clone();
        let mut n = 0;
        while taken(&name) {
            n += 1;
            name = format!("{base}{n}");
        }
        name
    });
    declared.constraints.push(Constraint {
        name,
        columns,
        kind,
    });
}

fn foreign_key(
    table: &ObjectName,
    columns: &[Ident],
    on_delete: Option<String>,
    on_update: Option<String>,
) -> ConstraintKind {
    let parts: Vec<String> = table.0.iter().map(|p| ident(p.as_ident())).collect();
    let (schema, name) = match parts.as_slice() {
        [.., s, t] => (s.clone(), t.clone()),
        [t] => (String::new(), t.clone()),
        [] => (String::new(), String::new()),
    };
    ConstraintKind::ForeignKey {
        ref_schema: schema,
        ref_table: name,
        ref_columns: columns.iter().map(|c| ident(Some(c))).collect(),
        on_delete: on_delete.unwrap_or_else(|| "NO ACTION".to_string()),
        on_update: on_update.unwrap_or_else(|| "NO ACTION".to_string()),
    }
}

fn index_columns(columns: &[datafusion::sql::sqlparser::ast::IndexColumn]) -> Vec<String> {
    columns
        .iter()
        .map(|c| match &c.column.expr {
            datafusion::sql::sqlparser::ast::Expr::Identifier(i) => ident(Some(i)),
            other => other.to_string(),
        })
        .collect()
}

/// An identifier as DataFusion normalizes it: unquoted ones in lower case.
fn ident(i: Option<&Ident>) -> String {
    match i {
        Some(i) if i.quote_style.is_some() => i.value.clone(),
        Some(i) => i.value.to_lowercase(),
        None => String::new(),
    }
}

/// Fills in what [`take`] left to the session: the schema of a foreign key's table and,
/// when no columns were named, that table's key.
pub async fn resolve_references(
    declared: &mut Declared,
    default_schema: &str,
    lake: &tidepool_lake::Lake,
) -> Result<(), EngineError> {
    for c in &mut declared.constraints {
        if let ConstraintKind::ForeignKey {
            ref_schema,
            ref_table,
            ref_columns,
            ..
        } = &mut c.kind
        {
            if ref_schema.is_empty() {
                *ref_schema = default_schema.to_string();
            }
            if ref_columns.is_empty() {
                let referenced = lake.declared(ref_schema, ref_table).await?;
                let Some(key) = referenced.key() else {
                    return Err(EngineError::InvalidArgument(format!(
                        "there is no primary key for referenced table \"{ref_table}\""
                    )));
                };
                *ref_columns = key.to_vec();
            }
        }
    }
    Ok(())
}

/// `input` (an INSERT's rows, named as the table's columns) with each row tried against
/// `declared`'s CHECK constraints: a row for which one is false fails the statement with
/// "new row for relation ... violates check constraint ..." (23514); true and NULL pass.
/// Values of `varchar(n)` / `char(n)` columns are fitted to their length (22001).
pub fn checked_input(
    input: LogicalPlan,
    table: &str,
    declared: &Declared,
) -> Result<LogicalPlan, EngineError> {
    let input = fitted_lengths(input, declared)?;
    let checks: Vec<(&str, &str)> = declared
        .constraints
        .iter()
        .filter_map(|c| match &c.kind {
            ConstraintKind::Check { expr } => Some((c.name.as_str(), expr.as_str())),
            _ => None,
        })
        .collect();
    if checks.is_empty() {
        return Ok(input);
    }
    let schema: &DFSchema = input.schema();
    let ctx = SessionContext::new();
    let udf = Arc::new(check_udf());
    let mut predicate: Option<Expr> = None;
    for (name, sql) in checks {
        let expr = ctx.parse_sql_expr(sql, schema)?;
        let message =
            format!("new row for relation \"{table}\" violates check constraint \"{name}\"");
        let call = udf.call(vec![expr, lit(message)]);
        predicate = Some(match predicate {
            Some(p) => p.and(call),
            None => call,
        });
    }
    let Some(predicate) = predicate else {
        return Ok(input);
    };
    Ok(LogicalPlanBuilder::from(input).filter(predicate)?.build()?)
}

/// `input` with its `varchar(n)` / `char(n)` columns fitted to their length.
fn fitted_lengths(input: LogicalPlan, declared: &Declared) -> Result<LogicalPlan, EngineError> {
    let fits = input
        .schema()
        .fields()
        .iter()
        .any(|f| declared.length_of(f.name()).is_some());
    if !fits {
        return Ok(input);
    }
    let exprs: Vec<Expr> = input
        .schema()
        .iter()
        .map(|(q, f)| {
            let column = Expr::Column(datafusion::common::Column::from((q, f)));
            match declared.length_of(f.name()) {
                Some(l) => crate::char_length::fit(column, l).alias(f.name()),
                None => column,
            }
        })
        .collect();
    Ok(LogicalPlanBuilder::from(input).project(exprs)?.build()?)
}

/// `tidepool_check(ok, message)`: true, or an error with `message` when `ok` is false.
fn check_udf() -> ScalarUDF {
    create_udf(
        "tidepool_check",
        vec![DataType::Boolean, DataType::Utf8],
        DataType::Boolean,
        Volatility::Volatile,
        Arc::new(|args: &[ColumnarValue]| {
            let message = match &args[1] {
                ColumnarValue::Scalar(ScalarValue::Utf8(Some(m))) => m.clone(),
                _ => "new row violates a check constraint".to_string(),
            };
            let fail = || DataFusionError::Execution(message.clone());
            match &args[0] {
                ColumnarValue::Scalar(ScalarValue::Boolean(Some(false))) => Err(fail()),
                ColumnarValue::Scalar(_) => {
                    Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))))
                }
                ColumnarValue::Array(a) => {
                    let Some(ok) = a.as_any().downcast_ref::<BooleanArray>() else {
                        return Err(fail());
                    };
                    if ok.iter().any(|v| v == Some(false)) {
                        return Err(fail());
                    }
                    Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(vec![
                        true;
                        ok.len()
                    ]))))
                }
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::ast::Statement;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn create(sql: &str) -> (CreateTable, Declared) {
        let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        let Some(Statement::CreateTable(mut c)) = stmts.pop() else {
            panic!("not a CREATE TABLE");
        };
        let declared = take(&mut c);
        (c, declared)
    }

    #[test]
    fn keys_checks_references_and_defaults_are_taken_out() {
        let (c, d) = create(
            "CREATE TABLE s.Orders (id int PRIMARY KEY, n int DEFAULT 0 CHECK (n >= 0), \
             cust int REFERENCES s.customers, code text, CONSTRAINT code_uq UNIQUE (code), \
             CHECK (n < 100), FOREIGN KEY (code) REFERENCES codes (c) ON DELETE CASCADE)",
        );
        let names: Vec<&str> = d.constraints.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "orders_pkey",
                "orders_n_check",
                "orders_cust_fkey",
                "code_uq",
                "orders_check",
                "orders_code_fkey"
            ]
        );
        assert_eq!(d.defaults, [("n".to_string(), "0".to_string())]);
        assert_eq!(d.key(), Some(&["id".to_string()][..]));
        assert!(c.constraints.is_empty());
        let sql = Statement::CreateTable(c).to_string();
        assert!(
            !sql.contains("CHECK") && !sql.contains("REFERENCES"),
            "{sql}"
        );
        assert!(sql.contains("id INT NOT NULL"), "{sql}");
        assert_eq!(
            d.constraints[5].definition(),
            "FOREIGN KEY (code) REFERENCES \"\".codes(c) ON DELETE CASCADE"
        );
    }

    #[test]
    fn a_table_primary_key_makes_its_columns_not_null() {
        let (c, d) = create("CREATE TABLE t (a int, b int, PRIMARY KEY (a, b))");
        assert_eq!(d.constraints[0].columns, ["a", "b"]);
        let sql = Statement::CreateTable(c).to_string();
        assert!(sql.contains("a INT NOT NULL, b INT NOT NULL"), "{sql}");
    }
}
