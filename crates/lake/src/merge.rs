//! `MERGE INTO` a lake table, one Delta commit: delta-rs joins the source to the target
//! on the condition, skips target files whose statistics rule the source's keys out, and
//! rewrites only the files holding matched rows. Clauses are tried in order, the first
//! whose kind and predicate fit a row acts on it (PostgreSQL's rule); a target row matched
//! by two source rows fails the statement. Expressions name target columns
//! `target.<column>` and source columns `source.<column>` ([`MERGE_TARGET`],
//! [`MERGE_SOURCE`]); the caller has given the source columns names that cannot collide
//! and resolved subqueries to values.

use std::sync::Arc;

use datafusion::execution::SessionState;
use datafusion::logical_expr::Expr;
use datafusion::prelude::{Column, DataFrame};
use deltalake::operations::merge::UpdateBuilder;

use crate::{DmlOutcome, Lake, LakeError};

/// The qualifier of target columns in merge expressions.
pub const MERGE_TARGET: &str = "target";
/// The qualifier of source columns in merge expressions.
pub const MERGE_SOURCE: &str = "source";

/// Which rows a clause is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeWhen {
    /// A target row with a matching source row.
    Matched,
    /// A source row without a matching target row.
    NotMatched,
    /// A target row without a matching source row.
    NotMatchedBySource,
}

/// What a clause does.
#[derive(Debug, Clone)]
pub enum MergeAction {
    /// Sets columns of the target row.
    Update(Vec<(String, Expr)>),
    /// Deletes the target row.
    Delete,
    /// Inserts a row with these columns (the others NULL).
    Insert(Vec<(String, Expr)>),
}

/// One `WHEN ... [AND predicate] THEN action`.
#[derive(Debug, Clone)]
pub struct MergeClause {
    pub when: MergeWhen,
    pub predicate: Option<Expr>,
    pub action: MergeAction,
}

/// What a MERGE did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MergeOutcome {
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    /// Data files removed (rewritten) and added.
    pub files_removed: u64,
    pub files_added: u64,
    /// Target files the statistics ruled out.
    pub files_skipped: u64,
}

impl MergeOutcome {
    /// Rows inserted, updated or deleted: the count of PostgreSQL's `MERGE n` tag.
    pub fn rows(&self) -> u64 {
        self.inserted + self.updated + self.deleted
    }
}

impl Lake {
    /// Merges `source` into `schema.table` on `on` by `clauses`.
    pub async fn merge(
        &self,
        schema: &str,
        table: &str,
        source: DataFrame,
        on: Expr,
        clauses: Vec<MergeClause>,
        state: Arc<SessionState>,
    ) -> Result<MergeOutcome, LakeError> {
        let target = self.existing(schema, table).await?;
        let declared = crate::Declared::of_table(&target);
        let mut builder = target
            .merge(source, on)
            .with_source_alias(MERGE_SOURCE)
            .with_target_alias(MERGE_TARGET)
            .with_session_state(state)
            .with_commit_properties(crate::txn::commit_properties(Default::default()));
        for clause in clauses {
            let predicate = clause.predicate;
            builder = match (clause.when, clause.action) {
                (MergeWhen::Matched, MergeAction::Update(set)) => {
                    builder.when_matched_update(|u| update(u, predicate, set))?
                }
                (MergeWhen::Matched, MergeAction::Delete) => {
                    builder.when_matched_delete(|d| match predicate {
                        Some(p) => d.predicate(p),
                        None => d,
                    })?
                }
                (MergeWhen::NotMatchedBySource, MergeAction::Update(set)) => {
                    builder.when_not_matched_by_source_update(|u| update(u, predicate, set))?
                }
                (MergeWhen::NotMatchedBySource, MergeAction::Delete) => builder
                    .when_not_matched_by_source_delete(|d| match predicate {
                        Some(p) => d.predicate(p),
                        None => d,
                    })?,
                (MergeWhen::NotMatched, MergeAction::Insert(set)) => builder
                    .when_not_matched_insert(|mut i| {
                        if let Some(p) = predicate {
                            i = i.predicate(p);
                        }
                        for (column, value) in set {
                            i = i.set(Column::new_unqualified(column), value);
                        }
                        i
                    })?,
                (when, action) => {
                    return Err(LakeError::InvalidMerge(format!(
                        "{when:?} clause cannot {}",
                        match action {
                            MergeAction::Update(_) => "UPDATE",
                            MergeAction::Delete => "DELETE",
                            MergeAction::Insert(_) => "INSERT",
                        }
                    )));
                }
            };
        }
        let (written, metrics) = builder
            .await
            .map_err(|e| crate::constraints::violation(e, table, &declared))?;
        self.remember(schema, table, &written).await;
        Ok(MergeOutcome {
            inserted: metrics.num_target_rows_inserted as u64,
            updated: metrics.num_target_rows_updated as u64,
            deleted: metrics.num_target_rows_deleted as u64,
            files_removed: metrics.num_target_files_removed as u64,
            files_added: metrics.num_target_files_added as u64,
            files_skipped: metrics.num_target_files_skipped_during_scan as u64,
        })
    }

    /// Removes every row of `schema.table` in one commit that drops all its files (no data
    /// file is read or written); time travel still reaches the rows before it.
    pub async fn truncate(&self, schema: &str, table: &str) -> Result<DmlOutcome, LakeError> {
        let target = self.existing(schema, table).await?;
        let (written, metrics) = target.delete().await?;
        self.remember(schema, table, &written).await;
        Ok(DmlOutcome::deleted(&metrics))
    }
}

fn update(
    mut u: UpdateBuilder,
    predicate: Option<Expr>,
    set: Vec<(String, Expr)>,
) -> UpdateBuilder {
    if let Some(p) = predicate {
        u = u.predicate(p);
    }
    for (column, value) in set {
        u = u.update(Column::new_unqualified(column), value);
    }
    u
}
