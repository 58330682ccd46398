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
use crate::names::reference;

impl Session {
    /// MERGE INTO a lake table; the tag carries the rows inserted, updated and deleted.
    pub(super) async fn merge(
        &self,
        dml: &DmlStatement,
        op: &MergeIntoOp,
        written_as: WrittenAs,
        slot: Slot,
    ) -> Result<CommandTag, EngineError> {
        let prepared = self.prepare_merge(dml, op).await?;
        let done = self.carry_out(dml, prepared, slot).await?;
        Ok(written_as.tag(done.updated, done.rows()))
    }

    /// A MERGE that also yields the rows it writes (updated and inserted, in the target's
    /// columns): `INSERT ... ON CONFLICT ... RETURNING`, `UPDATE ... FROM ... RETURNING`.
    /// The source is read once and held; the new rows are computed from it and the
    /// target as the running transaction reads it, then the MERGE is carried out over the
    /// same source in that transaction. Returns the tag and the rows.
    pub(super) async fn merge_returning(
        &self,
        dml: &DmlStatement,
        op: &MergeIntoOp,
        written_as: WrittenAs,
        slot: Slot,
    ) -> Result<(CommandTag, Vec<datafusion::arrow::array::RecordBatch>), EngineError> {
        // Inside the statement's transaction: the target is read at one version.
        let mut prepared = self.prepare_merge(dml, op).await?;
        prepared.source = self.held(prepared.source).await?;
        let rows = self
            .new_rows(
                dml,
                prepared.source.clone(),
                &prepared.on,
                &prepared.clauses,
            )
            .await?;
        let done = self.carry_out(dml, prepared, slot).await?;
        let returned: u64 = rows.iter().map(|b| b.num_rows() as u64).sum();
        if returned != done.updated + done.inserted {
            return Err(EngineError::DataFusion(Box::new(
                datafusion::error::DataFusionError::Internal(format!(
                    "MERGE wrote {} rows and computed {returned} to return",
                    done.updated + done.inserted
                )),
            )));
        }
        Ok((written_as.tag(done.updated, done.rows()), rows))
    }

    /// The MERGE's source with its columns renamed to positions, its condition and its
    /// clauses over `target.` and `source.` columns.
    async fn prepare_merge(
        &self,
        dml: &DmlStatement,
        op: &MergeIntoOp,
    ) -> Result<Prepared, EngineError> {
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
        let (schema, table) = self.resolve(&dml.table_name)?;
        let base = crate::ctid::base_name(&table).unwrap_or(&table);
        let declared = self.engine.lake().declared(&schema, base).await?;
        let target_columns: Vec<String> = dml
            .target
            .schema()
            .fields()
            .iter()
            .filter(|f| !crate::ctid::is_tid(f))
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
                    MergeAction::Update(self.assignments(&names, set.clone(), &declared).await?)
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
                    MergeAction::Insert(self.assignments(&names, set, &declared).await?)
                }
            };
            clauses.push(MergeClause {
                when,
                predicate,
                action,
            });
        }
        Ok(Prepared {
            schema,
            table,
            source,
            on,
            clauses,
        })
    }

    /// Carries out a prepared MERGE: by deletion vectors when the table has them and the
    /// MERGE is keyed ([`super::merge_vectors`]), else by Delta's MERGE.
    async fn carry_out(
        &self,
        dml: &DmlStatement,
        prepared: Prepared,
        slot: Slot,
    ) -> Result<super::merge_vectors::Merged, EngineError> {
        let Prepared {
            schema,
            table,
            source,
            on,
            clauses,
        } = prepared;
        if crate::ctid::base_name(&table).is_some() {
            // `UPDATE t SET ... FROM s WHERE t.ctid = s.x::tid` (DuckDB's UPDATE).
            return match super::merge_vectors::Keyed::of(&on, &clauses)
                .filter(|k| k.key() == crate::ctid::COLUMN)
            {
                Some(keyed) => {
                    Box::pin(self.merge_by_vectors(dml, keyed, source, on, clauses, slot)).await
                }
                None => Err(EngineError::NotSupported(
                    "a MERGE or UPDATE ... FROM that names ctid other than as its whole \
                     condition, target.ctid = <source expression>"
                        .into(),
                )),
            };
        }
        if let Some(keyed) = super::merge_vectors::Keyed::of(&on, &clauses)
            && self
                .engine
                .lake()
                .has_deletion_vectors(&schema, &table)
                .await?
        {
            return Box::pin(self.merge_by_vectors(dml, keyed, source, on, clauses, slot)).await;
        }
        let lake = self.engine.lake().clone();
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
        Ok(super::merge_vectors::Merged {
            updated: out.updated,
            deleted: out.deleted,
            inserted: out.inserted,
        })
    }

    /// `set`'s values over the renamed source, each fitted to its column's declared
    /// length.
    async fn assignments(
        &self,
        names: &Names,
        set: Vec<(String, Expr)>,
        declared: &tidepool_lake::Declared,
    ) -> Result<Vec<(String, Expr)>, EngineError> {
        let mut out = Vec::with_capacity(set.len());
        for (column, value) in set {
            let mut value = names.rename(self.resolve_subqueries(value).await?)?;
            if let Some(length) = declared.length_of(&column) {
                value = crate::char_length::fit(value, length);
            }
            out.push((column, value));
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

/// A MERGE ready to carry out (see [`Session::prepare_merge`]).
struct Prepared {
    schema: String,
    table: String,
    source: DataFrame,
    on: Expr,
    clauses: Vec<MergeClause>,
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

/// Which statement a MERGE plan was written as, for its tag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum WrittenAs {
    #[default]
    Merge,
    /// `UPDATE ... FROM`: `UPDATE n`.
    UpdateFrom,
    /// `INSERT ... ON CONFLICT`: `INSERT 0 n`, n the rows inserted or updated.
    InsertOnConflict,
}

impl WrittenAs {
    /// The tag of a MERGE that updated `updated` rows and touched `rows` in all: UPDATE ...
    /// FROM and INSERT ... ON CONFLICT run as a MERGE and answer as written.
    fn tag(self, updated: u64, rows: u64) -> CommandTag {
        match self {
            WrittenAs::UpdateFrom => CommandTag::with_rows("UPDATE", updated),
            WrittenAs::InsertOnConflict => CommandTag::with_rows("INSERT 0", rows),
            WrittenAs::Merge => CommandTag::with_rows("MERGE", rows),
        }
    }

    pub(super) fn of(s: &Statement) -> WrittenAs {
        match s {
            Statement::Update(u) if u.from.is_some() => WrittenAs::UpdateFrom,
            Statement::Insert(i) if matches!(i.on, Some(ast::OnInsert::OnConflict(_))) => {
                WrittenAs::InsertOnConflict
            }
            _ => WrittenAs::Merge,
        }
    }
}

impl Session {
    /// The MERGE an `UPDATE ... FROM` or an `INSERT ... ON CONFLICT` stands for; `None`
    /// for every other statement.
    pub(super) async fn as_merge(&self, s: &Statement) -> Result<Option<Statement>, EngineError> {
        match (s, WrittenAs::of(s)) {
            (Statement::Update(u), WrittenAs::UpdateFrom) => update_from_as_merge(u),
            (Statement::Insert(i), WrittenAs::InsertOnConflict) => {
                let mut columns = Vec::new();
                if i.columns.is_empty()
                    && let ast::TableObject::TableName(name) = &i.table
                {
                    let provider = self.ctx.table_provider(reference(name)).await?;
                    columns = provider
                        .schema()
                        .fields()
                        .iter()
                        .map(|f| f.name().clone())
                        .collect();
                }
                let declared = match &i.table {
                    ast::TableObject::TableName(name) => {
                        let (schema, table) = self.resolve(&reference(name))?;
                        self.engine.lake().declared(&schema, &table).await?
                    }
                    _ => Default::default(),
                };
                insert_on_conflict_as_merge(i, &columns, &declared)
            }
            _ => Ok(None),
        }
    }
}

/// `UPDATE t [AS x] SET c = v, ... FROM s [, ...] WHERE cond` as PostgreSQL means it:
/// `MERGE INTO t [AS x] USING (s CROSS JOIN ...) ON cond WHEN MATCHED THEN UPDATE SET
/// c = v, ...` (dbt's snapshots close old rows this way). A target row that two source
/// rows match fails with 21000 where PostgreSQL would pick one of them unpredictably.
/// `None` for an UPDATE without FROM.
fn update_from_as_merge(u: &ast::Update) -> Result<Option<Statement>, EngineError> {
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

/// `INSERT INTO t [AS x] [(cols)] query ON CONFLICT (keys) DO UPDATE SET ... [WHERE ...]
/// | DO NOTHING` as the MERGE it means: `MERGE INTO t AS x USING (query) AS excluded(cols)
/// ON x.k = excluded.k AND ... WHEN MATCHED [AND where] THEN UPDATE SET ... WHEN NOT
/// MATCHED THEN INSERT (cols) VALUES (excluded.cols)`. Unqualified columns in SET and
/// WHERE are the target's, as in PostgreSQL. Without a conflict target the key is the
/// table's declared primary key (else its first unique constraint); `ON CONSTRAINT name`
/// takes that constraint's columns. `columns` are the target's columns, for an INSERT
/// without a column list. `None` for a plain INSERT.
fn insert_on_conflict_as_merge(
    i: &ast::Insert,
    table_columns: &[String],
    declared: &tidepool_lake::Declared,
) -> Result<Option<Statement>, EngineError> {
    let Some(ast::OnInsert::OnConflict(conflict)) = &i.on else {
        return Ok(None);
    };
    let ast::TableObject::TableName(table) = &i.table else {
        return Err(EngineError::NotSupported(
            "INSERT ... ON CONFLICT into a function".into(),
        ));
    };
    if i.returning.is_some() {
        return Err(EngineError::NotSupported(
            "INSERT ... ON CONFLICT ... RETURNING".into(),
        ));
    }
    let declared_key = |columns: &[String]| -> Vec<ast::Ident> {
        columns
            .iter()
            .map(|c| ast::Ident::with_quote('"', c))
            .collect()
    };
    let keys = match &conflict.conflict_target {
        Some(ast::ConflictTarget::Columns(keys)) if !keys.is_empty() => keys.clone(),
        Some(ast::ConflictTarget::OnConstraint(name)) => {
            let name = name.to_string().trim_matches('"').to_string();
            let found = declared.constraints.iter().find(|c| {
                c.name == name
                    && matches!(
                        c.kind,
                        tidepool_lake::ConstraintKind::PrimaryKey
                            | tidepool_lake::ConstraintKind::Unique
                    )
            });
            match found {
                Some(c) => declared_key(&c.columns),
                None => {
                    return Err(EngineError::UndefinedObject(format!(
                        "constraint \"{name}\" for table {table} does not exist"
                    )));
                }
            }
        }
        _ => match declared.key() {
            Some(key) => declared_key(key),
            None => {
                return Err(EngineError::InvalidArgument(format!(
                    "there is no unique or exclusion constraint matching the ON CONFLICT \
                     specification: {table} declares no primary key or unique constraint; \
                     name the key columns, ON CONFLICT (id)"
                )));
            }
        },
    };
    let Some(source) = &i.source else {
        return Err(EngineError::NotSupported(
            "INSERT ... DEFAULT VALUES ON CONFLICT".into(),
        ));
    };
    let columns: Vec<ast::Ident> = if i.columns.is_empty() {
        table_columns
            .iter()
            .map(|c| ast::Ident::with_quote('"', c))
            .collect()
    } else {
        i.columns
            .iter()
            .filter_map(|c| c.0.last().and_then(|p| p.as_ident()).cloned())
            .collect()
    };
    let alias = i
        .table_alias
        .as_ref()
        .map(|a| a.alias.clone())
        .or_else(|| table.0.last().and_then(|p| p.as_ident()).cloned())
        .unwrap_or_else(|| ast::Ident::new("t"));
    let excluded = ast::Ident::new("excluded");
    let column =
        |q: &ast::Ident, c: &ast::Ident| ast::Expr::CompoundIdentifier(vec![q.clone(), c.clone()]);
    let on = keys
        .iter()
        .map(|k| ast::Expr::BinaryOp {
            left: Box::new(column(&alias, k)),
            op: ast::BinaryOperator::Eq,
            right: Box::new(column(&excluded, k)),
        })
        .reduce(|a, b| ast::Expr::BinaryOp {
            left: Box::new(a),
            op: ast::BinaryOperator::And,
            right: Box::new(b),
        })
        .ok_or_else(|| EngineError::Syntax("ON CONFLICT needs key columns".into()))?;
    let mut clauses = Vec::with_capacity(2);
    if let ast::OnConflictAction::DoUpdate(update) = &conflict.action {
        let targeted = |e: &ast::Expr| {
            let mut e = e.clone();
            let _ = ast::visit_expressions_mut(&mut e, |x| {
                if let ast::Expr::Identifier(id) = x {
                    *x = column(&alias, id);
                }
                std::ops::ControlFlow::<()>::Continue(())
            });
            e
        };
        clauses.push(ast::MergeClause {
            when_token: AttachedToken::empty(),
            clause_kind: ast::MergeClauseKind::Matched,
            predicate: update.selection.as_ref().map(targeted),
            action: ast::MergeAction::Update(ast::MergeUpdateExpr {
                update_token: AttachedToken::empty(),
                assignments: update
                    .assignments
                    .iter()
                    .map(|a| ast::Assignment {
                        target: a.target.clone(),
                        value: targeted(&a.value),
                    })
                    .collect(),
                update_predicate: None,
                delete_predicate: None,
            }),
        });
    }
    clauses.push(ast::MergeClause {
        when_token: AttachedToken::empty(),
        clause_kind: ast::MergeClauseKind::NotMatched,
        predicate: None,
        action: ast::MergeAction::Insert(ast::MergeInsertExpr {
            insert_token: AttachedToken::empty(),
            columns: columns
                .iter()
                .map(|c| ast::ObjectName::from(vec![c.clone()]))
                .collect(),
            kind_token: AttachedToken::empty(),
            kind: ast::MergeInsertKind::Values(ast::Values {
                explicit_row: false,
                value_keyword: false,
                rows: vec![ast::Parens::with_empty_span(
                    columns.iter().map(|c| column(&excluded, c)).collect(),
                )],
            }),
            insert_predicate: None,
        }),
    });
    Ok(Some(Statement::Merge(ast::Merge {
        merge_token: AttachedToken::empty(),
        optimizer_hints: Vec::new(),
        into: true,
        table: ast::TableFactor::Table {
            name: table.clone(),
            alias: Some(ast::TableAlias {
                explicit: true,
                name: alias.clone(),
                columns: Vec::new(),
                at: None,
            }),
            args: None,
            with_hints: Vec::new(),
            version: None,
            with_ordinality: false,
            partitions: Vec::new(),
            json_path: None,
            sample: None,
            index_hints: Vec::new(),
        },
        source: ast::TableFactor::Derived {
            lateral: false,
            subquery: source.clone(),
            alias: Some(ast::TableAlias {
                explicit: true,
                name: excluded,
                columns: columns
                    .iter()
                    .map(|c| ast::TableAliasColumnDef {
                        name: c.clone(),
                        data_type: None,
                    })
                    .collect(),
                at: None,
            }),
            sample: None,
        },
        on: Box::new(on),
        clauses,
        output: None,
    })))
}
