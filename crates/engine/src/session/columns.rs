//! `ALTER TABLE ... DROP COLUMN`, `RENAME COLUMN` and `ALTER COLUMN ... TYPE` on a lake
//! table, and `SET NOT NULL`.
//!
//! A Delta table without column mapping names its columns in its data files, so a column
//! dropped, renamed or retyped means rewriting the rows (what Delta itself requires
//! without column mapping, which delta-rs 1.1 cannot turn on): the table is read and
//! written back with the new columns as an overwrite, and its constraints, defaults,
//! comments and declared lengths follow the column, all in one Delta commit (an implicit
//! transaction squashes the metadata and data commits). Time travel to versions before
//! still reads the old columns. Cost: one full rewrite of the table. A column the
//! table is partitioned by is refused (0A000).
//!
//! Constraints: a dropped column's constraints go with it (as in PostgreSQL, also a CHECK
//! that names it), its default too; a renamed column's constraints, CHECK expressions
//! and default are renamed. A type change casts every value (a value that does not convert
//! fails the statement, nothing written; `USING` is not supported).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::TableReference;
use datafusion::logical_expr::{Expr, ExprSchemable, col};
use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, Ident, visit_expressions_mut};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use tidepool_lake::{CHAR_TYPE_KEY, ConstraintKind, Declared, WriteMode};

use super::Session;
use crate::EngineError;
use crate::alter::ColumnChange;

impl Session {
    /// Carries out `change` on `schema.table`.
    pub(super) async fn change_columns(
        &self,
        schema: &str,
        table: &str,
        change: &ColumnChange,
    ) -> Result<(), EngineError> {
        let lake = self.engine.lake().clone();
        let fields = self
            .engine
            .table_schema(schema, table)
            .await?
            .ok_or_else(|| EngineError::UndefinedTable(format!("{schema}.{table}")))?;
        let has = |c: &str| fields.index_of(c).is_ok();
        let missing = |c: &str| {
            EngineError::Lake(tidepool_lake::LakeError::UndefinedColumn(format!(
                "column \"{c}\" of relation \"{table}\" does not exist"
            )))
        };
        let named: Vec<&String> = match change {
            ColumnChange::Drop { names, if_exists } => {
                let present: Vec<&String> = names.iter().filter(|n| has(n)).collect();
                if let Some(n) = names.iter().find(|n| !has(n))
                    && !if_exists
                {
                    return Err(missing(n));
                }
                if present.is_empty() {
                    return Ok(());
                }
                if present.len() == fields.fields().len() {
                    return Err(EngineError::NotSupported(
                        "dropping every column of a table".to_string(),
                    ));
                }
                present
            }
            ColumnChange::Rename { from, to } => {
                if !has(from) {
                    return Err(missing(from));
                }
                if has(to) {
                    return Err(EngineError::Lake(tidepool_lake::LakeError::ColumnExists(
                        format!("{to} of {schema}.{table}"),
                    )));
                }
                vec![from]
            }
            ColumnChange::Type { column, .. } => {
                if !has(column) {
                    return Err(missing(column));
                }
                vec![column]
            }
        };
        let partitioned = lake.partition_columns(schema, table).await?;
        if let Some(p) = named.iter().find(|n| partitioned.contains(n)) {
            return Err(EngineError::NotSupported(format!(
                "changing column {p}, which {schema}.{table} is partitioned by"
            )));
        }

        // The new columns, their metadata and the constraints that follow them.
        let reference = TableReference::full(crate::CATALOG, schema, table);
        let df = self.ctx.table(reference).await?;
        let mut exprs: Vec<Expr> = Vec::with_capacity(fields.fields().len());
        let mut metadata: HashMap<String, HashMap<String, String>> = HashMap::new();
        let mut not_null = Vec::new();
        for f in fields.fields() {
            let name = f.name();
            let mut out_name = name.clone();
            let mut expr = col(datafusion::common::Column::from_name(name));
            let mut meta = f.metadata().clone();
            match change {
                ColumnChange::Drop { names, .. } if names.contains(name) => continue,
                ColumnChange::Rename { from, to } if from == name => out_name = to.clone(),
                ColumnChange::Type {
                    column,
                    data_type,
                    length,
                } if column == name => {
                    expr = expr.cast_to(data_type, df.schema())?;
                    meta.remove(CHAR_TYPE_KEY);
                    if let Some(l) = length {
                        expr = crate::char_length::fit(expr, *l);
                        meta.insert(CHAR_TYPE_KEY.to_string(), l.type_string());
                    }
                }
                _ => {}
            }
            if !f.is_nullable() {
                not_null.push(out_name.clone());
            }
            metadata.insert(out_name.clone(), meta);
            exprs.push(expr.alias(out_name));
        }
        let plan = df.select(exprs)?.into_unoptimized_plan();
        let declared = followed(lake.declared(schema, table).await?, change);

        let txn = lake.begin();
        let state = Arc::new(self.ctx.state());
        let work = {
            let lake = lake.clone();
            let (schema, table) = (schema.to_string(), table.to_string());
            async move {
                lake.redeclare(&schema, &table, &declared).await?;
                lake.write_plan(&schema, &table, plan, state, WriteMode::Replace)
                    .await?;
                lake.restyle_columns(&schema, &table, &metadata, &not_null)
                    .await?;
                Ok::<(), EngineError>(())
            }
        };
        let outcome = tidepool_lake::txn::scope(Some(txn.clone()), Box::pin(work)).await;
        match outcome {
            Ok(()) => {
                if let Err(e) = txn.commit(&lake).await {
                    let _ = txn.rollback().await;
                    return Err(e.into());
                }
                Ok(())
            }
            Err(e) => {
                let _ = txn.rollback().await;
                Err(e)
            }
        }
    }

    /// ALTER COLUMN c SET NOT NULL: refused (23502) while a row holds NULL in it.
    pub(super) async fn set_not_null(
        &self,
        schema: &str,
        table: &str,
        column: &str,
    ) -> Result<(), EngineError> {
        let reference = TableReference::full(crate::CATALOG, schema, table);
        let nulls = self
            .ctx
            .table(reference)
            .await?
            .filter(col(datafusion::common::Column::from_name(column)).is_null())?
            .count()
            .await?;
        if nulls > 0 {
            return Err(EngineError::Lake(
                tidepool_lake::LakeError::NotNullViolation(format!(
                    "column \"{column}\" of relation \"{table}\" contains null values"
                )),
            ));
        }
        self.engine
            .lake()
            .restyle_columns(schema, table, &HashMap::new(), &[column.to_string()])
            .await?;
        Ok(())
    }
}

/// `declared` after `change`: constraints and defaults of a dropped column gone, those of
/// a renamed one renamed.
fn followed(mut declared: Declared, change: &ColumnChange) -> Declared {
    match change {
        ColumnChange::Drop { names, .. } => {
            declared.constraints.retain(|c| {
                let on = c.columns.iter().any(|x| names.contains(x));
                let checks = match &c.kind {
                    ConstraintKind::Check { expr } => names.iter().any(|n| names_column(expr, n)),
                    _ => false,
                };
                !on && !checks
            });
            declared.defaults.retain(|(c, _)| !names.contains(c));
        }
        ColumnChange::Rename { from, to } => {
            for c in &mut declared.constraints {
                for x in &mut c.columns {
                    if x == from {
                        *x = to.clone();
                    }
                }
                if let ConstraintKind::Check { expr } = &mut c.kind {
                    *expr = renamed_in(expr, from, to);
                }
            }
            for (c, _) in &mut declared.defaults {
                if c == from {
                    *c = to.clone();
                }
            }
        }
        ColumnChange::Type { .. } => {}
    }
    declared.lengths.clear();
    declared
}

/// Whether the SQL expression `expr` names `column`.
fn names_column(expr: &str, column: &str) -> bool {
    let Ok(mut e) = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(expr)
        .and_then(|mut p| p.parse_expr())
    else {
        return true;
    };
    let mut found = false;
    let _ = visit_expressions_mut(&mut e, |x| {
        match x {
            SqlExpr::Identifier(i) if crate::names::ident_text(i) == column => found = true,
            SqlExpr::CompoundIdentifier(p)
                if p.last()
                    .is_some_and(|i| crate::names::ident_text(i) == column) =>
            {
                found = true
            }
            _ => {}
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    found
}

/// `expr` with the column `from` named `to`.
fn renamed_in(expr: &str, from: &str, to: &str) -> String {
    let Ok(mut e) = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(expr)
        .and_then(|mut p| p.parse_expr())
    else {
        return expr.to_string();
    };
    let new = || Ident::new(to);
    let _ = visit_expressions_mut(&mut e, |x| {
        match x {
            SqlExpr::Identifier(i) if crate::names::ident_text(i) == from => *i = new(),
            SqlExpr::CompoundIdentifier(p) => {
                if let Some(last) = p.last_mut()
                    && crate::names::ident_text(last) == from
                {
                    *last = new();
                }
            }
            _ => {}
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_expressions_follow_a_rename() {
        assert_eq!(
            renamed_in("qty >= 0 AND t.qty < 10", "qty", "n"),
            "n >= 0 AND t.n < 10"
        );
        assert!(names_column("lower(name) <> ''", "name"));
        assert!(!names_column("qty > 0", "name"));
    }
}
