//! `DELETE` and `UPDATE` on a lake table, each one Delta commit: delta-rs skips files whose
//! statistics rule the predicate out and rewrites only the files that hold matching rows
//! (copying their other rows); readers see the table before or after, never in between.
//! Predicates and new values are DataFusion expressions over the table's own columns,
//! unqualified; the caller has resolved anything else (subqueries) to values.

use std::sync::Arc;

use datafusion::execution::SessionState;
use datafusion::logical_expr::Expr;

use crate::{Lake, LakeError};

/// What a DELETE or UPDATE did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DmlOutcome {
    /// Rows deleted or updated.
    pub rows: u64,
    /// Data files removed (rewritten) and added.
    pub files_removed: u64,
    pub files_added: u64,
}

impl DmlOutcome {
    pub(crate) fn deleted(m: &deltalake::operations::delete::DeleteMetrics) -> DmlOutcome {
        DmlOutcome {
            rows: m.num_deleted_rows.unwrap_or(0) as u64,
            files_removed: m.num_removed_files as u64,
            files_added: m.num_added_files as u64,
        }
    }
}

impl Lake {
    /// Deletes the rows of `schema.table` that `predicate` holds for (every row without
    /// one).
    pub async fn delete_where(
        &self,
        schema: &str,
        table: &str,
        predicate: Option<Expr>,
        state: Arc<SessionState>,
    ) -> Result<DmlOutcome, LakeError> {
        let target = self.existing(schema, table).await?;
        if let Some(p) = &predicate
            && let Some((rows, written)) = crate::dv_delete::delete(&target, p, &state).await?
        {
            if let Some(written) = &written {
                self.remember(schema, table, written).await;
            }
            // Rows marked in deletion vectors: no file removed or added.
            return Ok(DmlOutcome {
                rows,
                ..DmlOutcome::default()
            });
        }
        let mut builder = target
            .delete()
            .with_session_state(state)
            .with_commit_properties(crate::txn::commit_properties(Default::default()));
        if let Some(p) = predicate {
            builder = builder.with_predicate(p);
        }
        let (written, metrics) = builder.await?;
        self.remember(schema, table, &written).await;
        Ok(DmlOutcome::deleted(&metrics))
    }

    /// Sets `assignments` (column, new value) on the rows of `schema.table` that
    /// `predicate` holds for (every row without one).
    pub async fn update_where(
        &self,
        schema: &str,
        table: &str,
        predicate: Option<Expr>,
        assignments: Vec<(String, Expr)>,
        state: Arc<SessionState>,
    ) -> Result<DmlOutcome, LakeError> {
        let target = self.existing(schema, table).await?;
        let declared = crate::Declared::of_table(&target);
        let mut builder = target
            .update()
            .with_session_state(state)
            .with_commit_properties(crate::txn::commit_properties(Default::default()));
        if let Some(p) = predicate {
            builder = builder.with_predicate(p);
        }
        for (column, value) in assignments {
            builder = builder.with_update(column, value);
        }
        let (written, metrics) = builder
            .await
            .map_err(|e| crate::constraints::violation(e, table, &declared))?;
        self.remember(schema, table, &written).await;
        Ok(DmlOutcome {
            rows: metrics.num_updated_rows as u64,
            files_removed: metrics.num_removed_files as u64,
            files_added: metrics.num_added_files as u64,
        })
    }

    /// Whether `schema.table` marks deleted rows with deletion vectors (DELETE rewrites
    /// no file; UPDATE can mark the old rows and append their new versions).
    pub async fn has_deletion_vectors(&self, schema: &str, table: &str) -> Result<bool, LakeError> {
        crate::vectors::usable(&self.existing(schema, table).await?)
    }

    /// The Delta table `schema.table`, or 42P01.
    pub(crate) async fn existing(
        &self,
        schema: &str,
        table: &str,
    ) -> Result<deltalake::DeltaTable, LakeError> {
        self.table(schema, table)
            .await?
            .ok_or_else(|| LakeError::TableNotFound(format!("{schema}.{table}")))
    }
}
