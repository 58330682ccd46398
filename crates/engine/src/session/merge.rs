//! `MERGE INTO target USING source ON ... WHEN ...` and `TRUNCATE` on lake tables.
//!
//! DataFusion plans MERGE as a DML node whose input is the source and whose operation
//! holds the condition and the clauses, already resolved, typed and authorized (the
//! source's scans are reads, the target a write). Here the source's columns are renamed
//! to positions (`source.__s0`, ...) so a source joined from several relations, or one
//! that shares column names with the target, cannot collide, target columns become
//! `target.<column>`, uncorrelated subqueries become values, and
//! [`tidepool_lake::Lake::merge`] carries it out in one Delta commit.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchemaRef, TableReference};
use datafusion::logical_expr::dml::{MergeIntoAction, MergeIntoClauseKind, MergeIntoOp};
use datafusion::logical_expr::{DmlStatement, Expr};
use datafusion::prelude::DataFrame;
use datafusion::sql::sqlparser::ast::helpers::attached_token::AttachedToken;
use datafusion::sql::sqlparser::ast::{self, Statement};
use tidepool_lake::{MERGE_SOURCE, MERGE_TARGET, MergeAction, MergeClause, MergeWhen};

use super::Session;
use super::output::CommandTag;
use crate::EngineError;
use crate::lanes::{Lane, Slot};

impl Session {
    /// MERGE INTO a lake table; the tag carries the rows inserted, updated and deleted.
    pub(super) async fn merge(
        &self,
        dml: &DmlStatement,
        op: &MergeIntoOp,
        update_from: bool,
        slot: Slot,
    ) -> Result<CommandTag, EngineError> {
        let source_plan = dml.input.as_ref().clone();
        let names = Names {
            target: dml.table_name.clone(),
            source: source_plan.schema().clone(),
        };
        let renamed: Vec<Expr> = names
            .source
            .columns()
            .into_iter()
            .enumerate()
            .map(|(i, c)| Expr::Column(c).alias(source_column(i)))
            .collect();
        let source = DataFrame::new(self.ctx.state(), source_plan).select(renamed)?;

        let on = names.rename(self.resolve_subqueries(op.on.clone()).await?)?;
        let target_columns: Vec<String> = dml
            .target
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let mut clauses = Vec::with_capacity(op.clauses.len());
        for clause in &op.clauses {
            let predicate = match &clause.predicate {
                Some(p) => Some(names.rename(self.resolve_subqueries(p.clone()).await?)?),
                None => None,
            };
            let when = match clause.kind {
                MergeIntoClauseKind::Matched => MergeWhen::Matched,
                MergeIntoClauseKind::NotMatchedBySource => MergeWhen::NotMatchedBySource,
                _ => MergeWhen::NotMatched,
            };
            let action = match &clause.action {
                MergeIntoAction::Delete => MergeAction::Delete,
                MergeIntoAction::Update(set) => {
                    MergeAction::Update(self.assignments(&names, set.clone()).await?)
                }
                MergeIntoAction::Insert { columns, values } => {
                    let columns = if columns.is_empty() {
                        &target_columns
                    } else {
                        columns
                    };
                    let set = columns
                        .iter()
                        .cloned()
                        .zip(values.iter().cloned())
                        .collect();
                    MergeAction::Insert(self.assignments(&names, set).await?)
                }
            };
            clauses.push(MergeClause {
                when,
                predicate,
                action,
            });
        }

        let lake = self.engine.lake().clone();
        let (schema, table) = self.resolve(&dml.table_name)?;
        let state = Arc::new(self.ctx.state());
        let _permit = slot.claim(self.engine.lanes(), Lane::Heavy).await?;
        let out = self
            .engine
            .executor()
            .run(async move {
                Ok(lake
                    .merge(&schema, &table, source, on, clauses, state)
                    .await?)
            })
            .await?;
        // An `UPDATE ... FROM` is carried out as a MERGE and answers as an UPDATE.
        Ok(if update_from {
            CommandTag::with_rows("UPDATE", out.updated)
        } else {
            CommandTag::with_rows("MERGE", out.rows())
        })
    }

    async fn assignments(
        &self,
        names: &Names,
        set: Vec<(String, Expr)>,
    ) -> Result<Vec<(String, Expr)>, EngineError> {
        let mut out = Vec::with_capacity(set.len());
        for (column, value) in set {
            out.push((column, names.rename(self.resolve_subqueries(value).await?)?));
        }
        Ok(out)
    }

    /// TRUNCATE [TABLE] t: every row gone in one commit that reads no data.
    pub(super) async fn truncate(&self, dml: &DmlStatement) -> Result<CommandTag, EngineError> {
        let (schema, table) = self.resolve(&dml.table_name)?;
        self.engine.lake().truncate(&schema, &table).await?;
        Ok(CommandTag::new("TRUNCATE TABLE"))
    }
}

fn source_column(i: usize) -> String {
    format!("__s{i}")
}

/// How the planner named the target and the source's columns.
struct Names {
    target: TableReference,
    source: DFSchemaRef,
}

impl Names {
    /// `e` over `target.<column>` and `source.__s<i>`.
    fn rename(&self, e: Expr) -> Result<Expr, EngineError> {
        let renamed = e.transform(|x| {
            let Expr::Column(c) = &x else {
                return Ok(Transformed::no(x));
            };
            if c.relation.as_ref() == Some(&self.target) {
                return Ok(Transformed::yes(Expr::Column(Column::new(
                    Some(MERGE_TARGET),
                    c.name.clone(),
                ))));
            }
            match self.source.maybe_index_of_column(c) {
                Some(i) => Ok(Transformed::yes(Expr::Column(Column::new(
                    Some(MERGE_SOURCE),
                    source_column(i),
                )))),
                None => Err(datafusion::error::DataFusionError::Plan(format!(
                    "column {c} is neither the MERGE target's nor its source's"
                ))),
            }
        })?;
        Ok(renamed.data)
    }
}

/// `UPDATE t [AS x] SET c = v, ... FROM s [, ...] WHERE cond` as PostgreSQL means it:
/// `MERGE INTO t [AS x] USING (s CROSS JOIN ...) ON cond WHEN MATCHED THEN UPDATE SET
/// c = v, ...` (dbt's snapshots close old rows this way). A target row that two source
/// rows match fails with 21000 where PostgreSQL would pick one of them unpredictably.
/// `None` for an UPDATE without FROM.
pub(super) fn update_from_as_merge(u: &ast::Update) -> Result<Option<Statement>, EngineError> {
    let Some(ast::UpdateTableFromKind::AfterSet(from) | ast::UpdateTableFromKind::BeforeSet(from)) =
        &u.from
    else {
        return Ok(None);
    };
    if !u.table.joins.is_empty() || u.limit.is_some() || !u.order_by.is_empty() {
        return Err(EngineError::NotSupported(
            "UPDATE of a join, or with ORDER BY or LIMIT".into(),
        ));
    }
    if u.returning.is_some() {
        return Err(EngineError::NotSupported("UPDATE ... RETURNING".into()));
    }
    let source = match from.as_slice() {
        [one] if one.joins.is_empty() => one.relation.clone(),
        [first, rest @ ..] => {
            let mut joined = first.clone();
            for t in rest {
                joined.joins.push(ast::Join {
                    relation: t.relation.clone(),
                    global: false,
                    join_operator: ast::JoinOperator::CrossJoin(ast::JoinConstraint::None),
                });
                joined.joins.extend(t.joins.iter().cloned());
            }
            ast::TableFactor::NestedJoin {
                table_with_joins: Box::new(joined),
                alias: None,
            }
        }
        [] => return Ok(None),
    };
    let on = u
        .selection
        .clone()
        .unwrap_or_else(|| ast::Expr::Value(ast::Value::Boolean(true).into()));
    Ok(Some(Statement::Merge(ast::Merge {
        merge_token: AttachedToken::empty(),
        optimizer_hints: Vec::new(),
        into: true,
        table: u.table.relation.clone(),
        source,
        on: Box::new(on),
        clauses: vec![ast::MergeClause {
            when_token: AttachedToken::empty(),
            clause_kind: ast::MergeClauseKind::Matched,
            predicate: None,
            action: ast::MergeAction::Update(ast::MergeUpdateExpr {
                update_token: AttachedToken::empty(),
                assignments: u.assignments.clone(),
                update_predicate: None,
                delete_predicate: None,
            }),
        }],
        output: None,
    })))
}
