//! `INSERT / UPDATE / DELETE ... RETURNING`: the rows a statement wrote, through the
//! RETURNING list, as PostgreSQL returns them (pgjdbc's `getGeneratedKeys`, SQLAlchemy's
//! ORM and Django fetch keys and defaults this way).
//!
//! DataFusion plans none of them, so the list is taken off the statement and the rest is
//! planned and authorized as usual. The rows come from the DML plan itself, computed once:
//! an INSERT's new rows are collected and then written from memory; an UPDATE's plan
//! yields the new version of each row it matches, which replaces the old one (a delete of
//! the matched rows and an insert of the new ones); a DELETE's plan yields the rows it
//! removes. Everything runs in one transaction (the session's block, or one of its own
//! committed at the end): the rows returned are exactly the rows written, even with
//! `now()` or `random()` in SET, and a concurrent writer of the same files gets 40001 at
//! commit. The RETURNING list is evaluated over those rows, named after the target (or
//! its alias). `INSERT ... ON CONFLICT` and `UPDATE ... FROM` run as a MERGE
//! ([`Session::merge_returning`]): they return the inserted rows and the new versions of
//! the updated ones (not those DO NOTHING or a failed `DO UPDATE ... WHERE` skipped); their
//! list names the target's columns only (not the FROM list's). MERGE ... RETURNING
//! (PostgreSQL 17) answers 0A000.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::MemTable;
use datafusion::common::ParamValues;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{DmlStatement, Expr, LogicalPlan, LogicalPlanBuilder, WriteOp};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::DataFrame;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    self as ast, FromTable, SelectItem, Statement, TableFactor, TableObject,
};

use super::output::{CommandTag, Output, QueryControl, Shape};
use super::{Session, Source};
use crate::EngineError;
use crate::lanes::Slot;

/// A DML statement's RETURNING list, taken off it.
pub(super) struct Returning {
    items: Vec<SelectItem>,
    /// The name the list refers to the target by: its alias, else its table name.
    qualifier: String,
}

/// Takes RETURNING off `stmt` (an INSERT, UPDATE or DELETE that has one).
pub(super) fn take(stmt: &mut DFStatement) -> Option<Returning> {
    let DFStatement::Statement(s) = stmt else {
        return None;
    };
    let (returning, qualifier) = match s.as_mut() {
        Statement::Insert(i) => {
            let name = match &i.table {
                TableObject::TableName(n) => last(n),
                TableObject::TableFunction(_) | TableObject::TableQuery(_) => return None,
            };
            i.returning.as_ref()?;
            // The alias names the target in the list only (DataFusion plans no alias on
            // an INSERT); ON CONFLICT, which uses it too, is refused with the list.
            let alias = match &i.on {
                None => i.table_alias.take(),
                Some(_) => i.table_alias.clone(),
            };
            let alias = alias.map(|a| crate::names::ident_text(&a.alias));
            (&mut i.returning, alias.unwrap_or(name))
        }
        Statement::Update(u) => {
            let qualifier = factor_name(&u.table.relation)?;
            (&mut u.returning, qualifier)
        }
        Statement::Delete(d) => {
            let tables = match &d.from {
                FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
            };
            let qualifier = factor_name(&tables.first()?.relation)?;
            (&mut d.returning, qualifier)
        }
        _ => return None,
    };
    Some(Returning {
        items: returning.take()?,
        qualifier,
    })
}

fn last(name: &ast::ObjectName) -> String {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(crate::names::ident_text)
        .unwrap_or_default()
}

fn factor_name(f: &TableFactor) -> Option<String> {
    match f {
        TableFactor::Table { name, alias, .. } => Some(match alias {
            Some(a) => crate::names::ident_text(&a.name),
            None => last(name),
        }),
        _ => None,
    }
}

/// The name PostgreSQL gives an unaliased RETURNING (or select-list) expression.
fn column_name(e: &ast::Expr) -> String {
    match e {
        ast::Expr::Identifier(i) => crate::names::ident_text(i),
        ast::Expr::CompoundIdentifier(parts) => parts
            .last()
            .map(crate::names::ident_text)
            .unwrap_or_default(),
        ast::Expr::Function(f) => f
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(|i| i.value.to_lowercase())
            .unwrap_or_else(|| "?column?".into()),
        ast::Expr::Cast { expr, .. } | ast::Expr::Nested(expr) => column_name(expr),
        _ => "?column?".into(),
    }
}

impl Returning {
    /// The RETURNING list evaluated over `rows` (the target's rows, in its schema).
    async fn project(
        &self,
        session: &Session,
        schema: SchemaRef,
        rows: Vec<RecordBatch>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), EngineError> {
        let table = MemTable::try_new(schema, vec![rows])?;
        let plan = LogicalPlanBuilder::scan(
            self.qualifier.as_str(),
            datafusion::datasource::provider_as_source(Arc::new(table)),
            None,
        )?
        .build()?;
        let df = DataFrame::new(session.state(), plan);
        let mut exprs: Vec<Expr> = Vec::new();
        for item in &self.items {
            match item {
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                    exprs.extend(df.schema().columns().into_iter().map(Expr::Column));
                }
                SelectItem::UnnamedExpr(e) => {
                    refuse_subqueries(e)?;
                    exprs.push(df.parse_sql_expr(&e.to_string())?.alias(column_name(e)));
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    refuse_subqueries(expr)?;
                    exprs.push(
                        df.parse_sql_expr(&expr.to_string())?
                            .alias(crate::names::ident_text(alias)),
                    );
                }
                SelectItem::ExprWithAliases { .. } => {
                    return Err(EngineError::NotSupported(
                        "this form of RETURNING item".into(),
                    ));
                }
            }
        }
        let out = df.select(exprs)?;
        let schema: SchemaRef = Arc::new(out.schema().as_arrow().clone());
        Ok((schema, out.collect().await?))
    }

    /// The columns the RETURNING list yields for a target of `schema`.
    pub(super) async fn describe(
        &self,
        session: &Session,
        schema: SchemaRef,
    ) -> Result<SchemaRef, EngineError> {
        Ok(self.project(session, schema, Vec::new()).await?.0)
    }
}

fn refuse_subqueries(e: &ast::Expr) -> Result<(), EngineError> {
    let found = ast::visit_expressions(e, |x| match x {
        ast::Expr::Subquery(_) | ast::Expr::Exists { .. } | ast::Expr::InSubquery { .. } => {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    });
    if found.is_break() {
        return Err(EngineError::NotSupported("a subquery in RETURNING".into()));
    }
    Ok(())
}

/// The DML statement of `plan` and its target's schema, as its rows are (the input of
/// INSERT and UPDATE, the scanned rows of DELETE, the target's columns for what runs as
/// MERGE).
pub(super) fn dml_of(plan: LogicalPlan) -> Result<(DmlStatement, SchemaRef), EngineError> {
    match plan {
        LogicalPlan::Dml(dml)
            if matches!(
                dml.op,
                WriteOp::Insert(_) | WriteOp::Update | WriteOp::Delete
            ) =>
        {
            let schema = Arc::new(dml.input.schema().as_arrow().clone());
            Ok((dml, schema))
        }
        LogicalPlan::Dml(dml) if matches!(dml.op, WriteOp::MergeInto(_)) => {
            let schema = nullable(dml.target.schema());
            Ok((dml, schema))
        }
        _ => Err(EngineError::NotSupported(
            "RETURNING on this statement".into(),
        )),
    }
}

/// `schema` with every column nullable (the rows a MERGE computes).
fn nullable(schema: SchemaRef) -> SchemaRef {
    Arc::new(datafusion::arrow::datatypes::Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ))
}

impl Session {
    /// Runs `stmt` (its RETURNING list taken off into `returning`) and returns the list
    /// over the rows it wrote, in the session's block or in a transaction of its own.
    pub(super) async fn run_returning(
        &mut self,
        stmt: DFStatement,
        returning: Returning,
        params: Option<ParamValues>,
        control: &QueryControl,
    ) -> Result<Output, EngineError> {
        if tidepool_lake::txn::current().is_some() {
            return self
                .returning_in_txn(stmt, &returning, params, control)
                .await;
        }
        let lake = self.engine.lake().clone();
        let txn = lake.begin();
        let out = tidepool_lake::txn::scope(
            Some(txn.clone()),
            Box::pin(self.returning_in_txn(stmt, &returning, params, control)),
        )
        .await;
        match out {
            Ok(out) => {
                if let Err(e) = txn.commit(&lake).await {
                    let _ = txn.rollback().await;
                    return Err(e.into());
                }
                Ok(out)
            }
            Err(e) => {
                let _ = txn.rollback().await;
                Err(e)
            }
        }
    }

    async fn returning_in_txn(
        &mut self,
        stmt: DFStatement,
        returning: &Returning,
        params: Option<ParamValues>,
        control: &QueryControl,
    ) -> Result<Output, EngineError> {
        let source = Source::of(&stmt);
        let mut plan = self.plan(stmt).await?;
        if let Some(p) = params {
            plan = plan.with_param_values(p)?;
        }
        let (dml, schema) = dml_of(plan)?;
        if let WriteOp::MergeInto(op) = &dml.op {
            if source.written_as == super::merge::WrittenAs::Merge {
                return Err(EngineError::NotSupported(
                    "MERGE ... RETURNING (PostgreSQL 17)".into(),
                ));
            }
            let (_, rows) = self
                .merge_returning(&dml, op, source.written_as, Slot::Unclaimed)
                .await?;
            // The rows returned are the rows the tag counts.
            let tag = match source.written_as {
                super::merge::WrittenAs::UpdateFrom => "UPDATE",
                _ => "INSERT 0",
            };
            let (schema, batches) = returning.project(self, schema, rows).await?;
            let stream = futures::stream::iter(batches.into_iter().map(Ok));
            return Ok(Output::Rows {
                stream: Box::pin(RecordBatchStreamAdapter::new(schema, stream)),
                tag,
            });
        }
        let rows = DataFrame::new(self.ctx.state(), (*dml.input).clone())
            .collect()
            .await?;
        let count: u64 = rows.iter().map(|b| b.num_rows() as u64).sum();
        let insert_rows = |rows: Vec<RecordBatch>| -> Result<LogicalPlan, EngineError> {
            Ok(LogicalPlan::Dml(DmlStatement::new(
                dml.table_name.clone(),
                dml.target.clone(),
                WriteOp::Insert(InsertOp::Append),
                Arc::new(super::rows::scan_of(schema.clone(), rows)?),
            )))
        };
        let tag = match dml.op {
            // Nothing to write (an UPDATE or DELETE that matched nothing, an empty SELECT).
            WriteOp::Insert(_) if count == 0 => "INSERT 0",
            WriteOp::Update if count == 0 => "UPDATE",
            WriteOp::Delete if count == 0 => "DELETE",
            WriteOp::Insert(_) => {
                self.write(insert_rows(rows.clone())?, &source, control)
                    .await?;
                "INSERT 0"
            }
            WriteOp::Update => {
                // The matched rows go, their new versions come.
                let LogicalPlan::Projection(p) = dml.input.as_ref() else {
                    return Err(EngineError::NotSupported(
                        "this form of UPDATE ... RETURNING".into(),
                    ));
                };
                let delete = LogicalPlan::Dml(DmlStatement::new(
                    dml.table_name.clone(),
                    dml.target.clone(),
                    WriteOp::Delete,
                    p.input.clone(),
                ));
                self.write(delete, &source, control).await?;
                self.write(insert_rows(rows.clone())?, &source, control)
                    .await?;
                "UPDATE"
            }
            _ => {
                self.write(LogicalPlan::Dml(dml), &source, control).await?;
                "DELETE"
            }
        };
        let (schema, batches) = returning.project(self, schema, rows).await?;
        debug_assert_eq!(
            count,
            batches.iter().map(|b| b.num_rows() as u64).sum::<u64>()
        );
        let stream = futures::stream::iter(batches.into_iter().map(Ok));
        Ok(Output::Rows {
            stream: Box::pin(RecordBatchStreamAdapter::new(schema, stream)),
            tag,
        })
    }

    async fn write(
        &mut self,
        plan: LogicalPlan,
        source: &Source,
        control: &QueryControl,
    ) -> Result<CommandTag, EngineError> {
        match self
            .run_plan(plan, source, control, Slot::Unclaimed, Shape::Merged)
            .await?
            .into_output()
        {
            Output::Command(tag) => Ok(tag),
            Output::Rows { .. } | Output::CopyOut { .. } | Output::CopyIn(_) => Err(
                EngineError::NotSupported("RETURNING on this statement".into()),
            ),
        }
    }
}
