//! `DELETE FROM t [WHERE ...]` and `UPDATE t SET c = v, ... [WHERE ...]` on lake tables.
//!
//! DataFusion plans both as a DML node over `[Projection of the new row] <- [Filter] <-
//! TableScan`; the predicate and the assignments are taken from that plan (already
//! resolved, typed and authorized) and carried out by [`tidepool_lake::Lake::delete_where`]
//! and [`tidepool_lake::Lake::update_where`], one Delta commit each. Uncorrelated
//! subqueries in the predicate (`WHERE (k) IN (SELECT k FROM staging)`, dbt's
//! delete+insert) and in SET run first and become values; a correlated one, or `UPDATE ... FROM`, is
//! refused with 0A000 and writes nothing.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, ScalarValue};
use datafusion::logical_expr::{DmlStatement, Expr, LogicalPlan, Subquery, WriteOp};
use datafusion::prelude::DataFrame;

use super::Session;
use super::output::CommandTag;
use crate::EngineError;
use crate::lanes::{Lane, Slot};

/// The predicate and the assignments (`None` for a DELETE) of a DML plan's input.
struct Parts {
    predicate: Option<Expr>,
    assignments: Vec<(String, Expr)>,
}

fn parts(input: &LogicalPlan, op: &WriteOp) -> Result<Parts, EngineError> {
    let mut plan = input;
    let mut assignments = Vec::new();
    if matches!(op, WriteOp::Update) {
        let LogicalPlan::Projection(p) = plan else {
            return Err(unsupported(plan));
        };
        for (expr, field) in p.expr.iter().zip(p.schema.fields()) {
            let value = expr.clone().unalias();
            let unchanged = matches!(&value, Expr::Column(c) if c.name == *field.name());
            if !unchanged {
                assignments.push((field.name().clone(), value));
            }
        }
        plan = p.input.as_ref();
    }
    let mut predicate = None;
    loop {
        match plan {
            LogicalPlan::Filter(f) if predicate.is_none() => {
                predicate = Some(f.predicate.clone());
                plan = f.input.as_ref();
            }
            LogicalPlan::SubqueryAlias(a) => plan = a.input.as_ref(),
            LogicalPlan::TableScan(_) => break,
            other => return Err(unsupported(other)),
        }
    }
    Ok(Parts {
        predicate,
        assignments,
    })
}

fn unsupported(plan: &LogicalPlan) -> EngineError {
    EngineError::NotSupported(format!(
        "this form of UPDATE or DELETE on a lake table (UPDATE ... FROM, or a {} in it); \
         write it as MERGE or with a subquery in WHERE",
        plan.display()
    ))
}

impl Session {
    /// DELETE or UPDATE of a lake table; the tag carries the rows touched.
    pub(super) async fn delete_or_update(
        &self,
        dml: DmlStatement,
        slot: Slot,
    ) -> Result<CommandTag, EngineError> {
        if let (schema, table) = self.resolve(&dml.table_name)?
            && let Some(base) = crate::ctid::base_name(&table)
        {
            let base = base.to_string();
            return Box::pin(self.dml_by_tids(dml, schema, base, slot)).await;
        }
        let Parts {
            predicate,
            assignments,
        } = parts(&dml.input, &dml.op)?;
        if matches!(dml.op, WriteOp::Update) && predicate.as_ref().is_some_and(|p| !p.is_volatile())
        {
            let (schema, table) = self.resolve(&dml.table_name)?;
            if self
                .engine
                .lake()
                .has_deletion_vectors(&schema, &table)
                .await?
            {
                return Box::pin(self.update_by_vectors(dml, slot)).await;
            }
        }
        let predicate = match predicate {
            Some(p) => Some(unqualified(self.resolve_subqueries(p).await?)?),
            None => None,
        };
        let lake = self.engine.lake().clone();
        let (schema, table) = self.resolve(&dml.table_name)?;
        let declared = if assignments.is_empty() {
            tidepool_lake::Declared::default()
        } else {
            lake.declared(&schema, &table).await?
        };
        let mut resolved = Vec::with_capacity(assignments.len());
        for (column, value) in assignments {
            let mut value = unqualified(self.resolve_subqueries(value).await?)?;
            if let Some(length) = declared.length_of(&column) {
                value = crate::char_length::fit(value, length);
            }
            resolved.push((column, value));
        }
        let assignments = resolved;
        let state = Arc::new(self.ctx.state());
        let _permit = slot.claim(self.engine.lanes(), Lane::Heavy).await?;
        let update = matches!(dml.op, WriteOp::Update);
        let out = self
            .engine
            .executor()
            .run(async move {
                Ok(if update {
                    lake.update_where(&schema, &table, predicate, assignments, state)
                        .await?
                } else {
                    lake.delete_where(&schema, &table, predicate, state).await?
                })
            })
            .await?;
        Ok(CommandTag::with_rows(
            if update { "UPDATE" } else { "DELETE" },
            out.rows,
        ))
    }

    /// UPDATE of a table with deletion vectors: the new versions of the matched rows are
    /// computed once (reading only the files the predicate can match), the old rows are
    /// marked deleted and the new ones appended, in one Delta commit (the session's block,
    /// or a transaction of its own). No file is rewritten.
    async fn update_by_vectors(
        &self,
        dml: DmlStatement,
        slot: Slot,
    ) -> Result<CommandTag, EngineError> {
        let LogicalPlan::Projection(p) = dml.input.as_ref() else {
            return Err(unsupported(&dml.input));
        };
        let permit = slot.claim(self.engine.lanes(), Lane::Heavy).await?;
        let work = async {
            let rows = DataFrame::new(self.ctx.state(), (*dml.input).clone())
                .collect()
                .await?;
            let count: u64 = rows.iter().map(|b| b.num_rows() as u64).sum();
            if count == 0 {
                return Ok(0);
            }
            let schema = Arc::new(dml.input.schema().as_arrow().clone());
            let delete = DmlStatement::new(
                dml.table_name.clone(),
                dml.target.clone(),
                WriteOp::Delete,
                p.input.clone(),
            );
            Box::pin(self.delete_or_update(delete, Slot::Held(permit.clone()))).await?;
            let insert = DmlStatement::new(
                dml.table_name.clone(),
                dml.target.clone(),
                WriteOp::Insert(datafusion::logical_expr::dml::InsertOp::Append),
                Arc::new(super::rows::scan_of(schema, rows)?),
            );
            self.insert(insert, Slot::Held(permit.clone())).await?;
            Ok::<u64, EngineError>(count)
        };
        let count = self.atomically(Box::pin(work)).await?;
        Ok(CommandTag::with_rows("UPDATE", count))
    }

    /// Runs `work` in the session's block, or else in a transaction of its own that commits
    /// when it succeeds and rolls back when it fails: its writes land together or not at all.
    pub(super) async fn atomically<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, EngineError>>,
    ) -> Result<T, EngineError> {
        if tidepool_lake::txn::current().is_some() {
            return work.await;
        }
        let lake = self.engine.lake().clone();
        let txn = lake.begin();
        match tidepool_lake::txn::scope(Some(txn.clone()), work).await {
            Ok(n) => {
                if let Err(e) = txn.commit(&lake).await {
                    let _ = txn.rollback().await;
                    return Err(e.into());
                }
                Ok(n)
            }
            Err(e) => {
                let _ = txn.rollback().await;
                Err(e)
            }
        }
    }

    /// Runs the uncorrelated subqueries of `e` and puts their values in their place:
    /// `x IN (SELECT ...)` becomes `x IN (v1, v2, ...)`, a scalar subquery its value,
    /// `EXISTS (...)` true or false.
    pub(super) async fn resolve_subqueries(&self, e: Expr) -> Result<Expr, EngineError> {
        let mut found: Vec<Subquery> = Vec::new();
        e.apply(|x| {
            match x {
                Expr::InSubquery(s) => found.push(s.subquery.clone()),
                Expr::ScalarSubquery(s) => found.push(s.clone()),
                Expr::Exists(s) => found.push(s.subquery.clone()),
                _ => {}
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        })?;
        if found.is_empty() {
            return Ok(e);
        }
        let mut values = Vec::with_capacity(found.len());
        for s in &found {
            if !s.outer_ref_columns.is_empty() {
                return Err(EngineError::NotSupported(
                    "a correlated subquery in UPDATE, DELETE or MERGE on a lake table (join it into MERGE's source)".into(),
                ));
            }
            values.push(self.subquery_values(s).await?);
        }
        let mut next = 0;
        let resolved = e.transform_down(|x| {
            let (subquery_values, rebuilt) = match &x {
                Expr::InSubquery(_) | Expr::ScalarSubquery(_) | Expr::Exists(_) => {
                    let v = values.get(next).cloned().unwrap_or_default();
                    next += 1;
                    (v, true)
                }
                _ => (Vec::new(), false),
            };
            if !rebuilt {
                return Ok(Transformed::no(x));
            }
            let new = match x {
                Expr::InSubquery(s) => Expr::InList(datafusion::logical_expr::expr::InList {
                    expr: s.expr,
                    list: subquery_values
                        .into_iter()
                        .map(|v| Expr::Literal(v, None))
                        .collect(),
                    negated: s.negated,
                }),
                Expr::ScalarSubquery(_) => match subquery_values.as_slice() {
                    [] => Expr::Literal(ScalarValue::Null, None),
                    [v] => Expr::Literal(v.clone(), None),
                    _ => {
                        return Err(datafusion::error::DataFusionError::Execution(
                            "Scalar subquery returned more than one row".into(),
                        ));
                    }
                },
                Expr::Exists(s) => Expr::Literal(
                    ScalarValue::Boolean(Some(subquery_values.is_empty() == s.negated)),
                    None,
                ),
                other => other,
            };
            Ok(Transformed::new(
                new,
                true,
                datafusion::common::tree_node::TreeNodeRecursion::Jump,
            ))
        })?;
        Ok(resolved.data)
    }

    /// The first column of a subquery's rows.
    async fn subquery_values(&self, s: &Subquery) -> Result<Vec<ScalarValue>, EngineError> {
        let batches = DataFrame::new(self.ctx.state(), s.subquery.as_ref().clone())
            .collect()
            .await?;
        let mut out = Vec::new();
        for b in &batches {
            for row in 0..b.num_rows() {
                out.push(ScalarValue::try_from_array(b.column(0), row)?);
            }
        }
        Ok(out)
    }
}

/// `e` with its columns unqualified: the lake evaluates it over the table's own schema.
fn unqualified(e: Expr) -> Result<Expr, EngineError> {
    Ok(e.transform(|x| match x {
        Expr::Column(c) => Ok(Transformed::yes(Expr::Column(Column::new_unqualified(
            c.name,
        )))),
        other => Ok(Transformed::no(other)),
    })?
    .data)
}
