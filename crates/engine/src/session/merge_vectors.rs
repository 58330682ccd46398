//! MERGE into a table with deletion vectors, keyed on one column: no data file rewritten.
//!
//! A Delta MERGE (delta-rs) rewrites every target file holding a matched row: 100k
//! changed rows in a 10M-row table cost more than rewriting the table. On a table with
//! deletion vectors, a MERGE whose condition is `target.k = <source expression>` is
//! carried out as the DV update is: the source is read once; the target rows in the
//! source's key range are joined to it and run through the WHEN MATCHED clauses in order
//! (the first whose condition holds acts: the new version of an updated row, or nothing
//! for a deleted one) and the source rows without a match through the NOT MATCHED clauses
//! (INSERT); then, in one transaction (the session's block or one of its own), the target
//! rows acted on are marked deleted by key (deletion vectors, files outside the key range skipped
//! by their statistics) and the new rows appended through the INSERT path (constraints
//! checked). A target row two source rows act on fails with 21000 and writes nothing (so
//! does a key two target rows share when a clause acts on only one of them). Other shapes
//! (NOT MATCHED BY SOURCE, composite keys, conditions other than one equality) go to the
//! Delta MERGE.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::{Column, JoinType, ScalarValue};
use datafusion::logical_expr::{
    BinaryExpr, DmlStatement, Expr, LogicalPlanBuilder, Operator, WriteOp, cast, lit,
};
use datafusion::prelude::DataFrame;
use tidepool_lake::{MERGE_SOURCE, MERGE_TARGET, MergeAction, MergeClause, MergeWhen};

use super::Session;
use crate::EngineError;
use crate::lanes::{Lane, Slot};

/// A MERGE this path carries out: `target.<key> = <source expression>`.
pub(super) struct Keyed {
    key: String,
    /// The source side of the condition.
    source_key: Expr,
}

impl Keyed {
    /// The shape of a MERGE (condition and clauses renamed to `target.` / `source.`) this
    /// path handles, or `None`.
    pub(super) fn of(on: &Expr, clauses: &[MergeClause]) -> Option<Keyed> {
        let Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) = on
        else {
            return None;
        };
        let is_target = |e: &Expr| match e {
            Expr::Column(c)
                if c.relation
                    .as_ref()
                    .is_some_and(|r| r.table() == MERGE_TARGET) =>
            {
                Some(c.name.clone())
            }
            _ => None,
        };
        let only_source = |e: &Expr| {
            e.column_refs().iter().all(|c| {
                c.relation
                    .as_ref()
                    .is_some_and(|r| r.table() == MERGE_SOURCE)
            })
        };
        let (key, source_key) = match (is_target(left), is_target(right)) {
            (Some(k), None) if only_source(right) => (k, right.as_ref().clone()),
            (None, Some(k)) if only_source(left) => (k, left.as_ref().clone()),
            _ => return None,
        };
        // Every target row a clause acts on is marked deleted by its key; one with the same
        // key that no clause acts on would be marked too, and is caught by the count
        // (the rows marked must be the pairs acted on).
        let fits = clauses
            .iter()
            .all(|c| c.when != MergeWhen::NotMatchedBySource);
        fits.then_some(Keyed { key, source_key })
    }

    /// The target's key column.
    pub(super) fn key(&self) -> &str {
        &self.key
    }
}

/// Rows a MERGE updated, deleted and inserted.
pub(super) struct Merged {
    pub updated: u64,
    pub deleted: u64,
    pub inserted: u64,
}

impl Merged {
    /// Rows inserted, updated or deleted: the count of PostgreSQL's `MERGE n` tag.
    pub(super) fn rows(&self) -> u64 {
        self.updated + self.deleted + self.inserted
    }
}

/// The rows a keyed MERGE writes and the target keys it marks deleted.
struct Changes {
    /// New rows (updated and inserted), in the target's columns.
    rows: Vec<RecordBatch>,
    /// Distinct keys of the matched target rows, sorted.
    keys: Vec<ScalarValue>,
    /// Matched (target, source) pairs, inserted rows.
    matched: u64,
    updated: u64,
    inserted: u64,
}

impl Session {
    /// Carries out `keyed` (see the module); returns the rows updated, deleted and
    /// inserted.
    pub(super) async fn merge_by_vectors(
        &self,
        dml: &DmlStatement,
        keyed: Keyed,
        source: DataFrame,
        on: Expr,
        clauses: Vec<MergeClause>,
        slot: Slot,
    ) -> Result<Merged, EngineError> {
        let permit = slot.claim(self.engine.lanes(), Lane::Heavy).await?;
        let lake = self.engine.lake().clone();
        let (schema, table) = self.resolve(&dml.table_name)?;
        let work = async {
            let changes = self
                .changes(dml, Some(&keyed), source, on, &clauses)
                .await?;
            let base = crate::ctid::base_name(&table).map(str::to_string);
            if let Some(base) = &base {
                // Keyed on ctid: the matched rows are deleted by their tids.
                let tids = super::tids::tids_of_keys(&changes.keys)?;
                let marked = lake.delete_tids(&schema, base, &tids).await?;
                if marked != changes.matched {
                    return Err(EngineError::DataFusion(Box::new(
                        datafusion::error::DataFusionError::Execution(
                            crate::error::MERGE_TWICE.into(),
                        ),
                    )));
                }
            } else if !changes.keys.is_empty() {
                let k = Expr::Column(Column::new_unqualified(&keyed.key));
                // The keys are sorted.
                let lo = changes.keys.first().cloned();
                let hi = changes.keys.last().cloned();
                let mut predicate = k
                    .clone()
                    .in_list(changes.keys.iter().cloned().map(lit).collect(), false);
                if let (Some(lo), Some(hi)) = (lo, hi) {
                    // The range lets file statistics skip files (an IN list that long is
                    // not used for pruning).
                    predicate = k
                        .clone()
                        .gt_eq(lit(lo))
                        .and(k.lt_eq(lit(hi)))
                        .and(predicate);
                }
                let state = Arc::new(self.ctx.state());
                let marked = lake
                    .delete_where(&schema, &table, Some(predicate), state)
                    .await?
                    .rows;
                if marked != changes.matched {
                    return Err(EngineError::DataFusion(Box::new(
                        datafusion::error::DataFusionError::Execution(
                            crate::error::MERGE_TWICE.into(),
                        ),
                    )));
                }
            }
            if changes.rows.iter().any(|b| b.num_rows() > 0) {
                let name = match &base {
                    Some(base) => {
                        datafusion::common::TableReference::partial(schema.as_str(), base.as_str())
                    }
                    None => dml.table_name.clone(),
                };
                let rows_schema = changes.rows[0].schema();
                let insert = DmlStatement::new(
                    name,
                    dml.target.clone(),
                    WriteOp::Insert(datafusion::logical_expr::dml::InsertOp::Append),
                    Arc::new(super::rows::scan_of(rows_schema, changes.rows)?),
                );
                self.insert(insert, Slot::Held(permit.clone())).await?;
            }
            Ok::<Merged, EngineError>(Merged {
                updated: changes.updated,
                deleted: changes.matched - changes.updated,
                inserted: changes.inserted,
            })
        };
        self.atomically(Box::pin(work)).await
    }

    /// `source` read once and held in memory, as a relation of the same columns.
    pub(super) async fn held(&self, source: DataFrame) -> Result<DataFrame, EngineError> {
        let schema = Arc::new(source.schema().as_arrow().clone());
        let rows = source.collect().await?;
        Ok(DataFrame::new(
            self.ctx.state(),
            super::rows::scan_named(MERGE_SOURCE, schema, rows)?,
        ))
    }

    /// The rows a MERGE writes (new versions of updated rows, inserted rows), in the
    /// target's columns, computed without writing anything.
    pub(super) async fn new_rows(
        &self,
        dml: &DmlStatement,
        source: DataFrame,
        on: &Expr,
        clauses: &[MergeClause],
    ) -> Result<Vec<RecordBatch>, EngineError> {
        if clauses
            .iter()
            .any(|c| c.when == MergeWhen::NotMatchedBySource)
        {
            return Err(EngineError::NotSupported(
                "RETURNING on a MERGE with WHEN NOT MATCHED BY SOURCE".into(),
            ));
        }
        Ok(self
            .changes(dml, None, source, on.clone(), clauses)
            .await?
            .rows)
    }

    /// Reads the source once and computes what the MERGE writes; with `keyed`, only the
    /// target rows in the source's key range are read and the matched keys collected.
    async fn changes(
        &self,
        dml: &DmlStatement,
        keyed: Option<&Keyed>,
        source: DataFrame,
        on: Expr,
        clauses: &[MergeClause],
    ) -> Result<Changes, EngineError> {
        let target_schema: SchemaRef = Arc::new(Schema::new(
            dml.target
                .schema()
                .fields()
                .iter()
                .filter(|f| !crate::ctid::is_tid(f))
                .map(|f| Field::new(f.name(), f.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        // The source, once, as a table named `source`.
        let source = self.held(source).await?;
        let target = DataFrame::new(
            self.ctx.state(),
            LogicalPlanBuilder::scan(dml.table_name.clone(), dml.target.clone(), None)?
                .alias(MERGE_TARGET)?
                .build()?,
        );
        let target_key = keyed.map(|k| Expr::Column(Column::new(Some(MERGE_TARGET), &k.key)));
        let target = match (keyed, &target_key) {
            (Some(keyed), Some(target_key)) => {
                // The source's keys bound the target rows read.
                match key_range(&source, keyed).await? {
                    Some((lo, hi)) => target.filter(
                        target_key
                            .clone()
                            .gt_eq(lit(lo))
                            .and(target_key.clone().lt_eq(lit(hi))),
                    )?,
                    None => target.filter(lit(false))?,
                }
            }
            _ => target,
        };
        let column = |name: &str, e: Option<&Expr>, field: &Field| -> Expr {
            match e {
                Some(v) => cast(v.clone(), field.data_type().clone()).alias(name),
                None => cast(lit(ScalarValue::Null), field.data_type().clone()).alias(name),
            }
        };
        let mut rows = Vec::new();
        // Matched pairs, through the MATCHED clauses in order (the first that holds acts).
        let matched_df = target
            .clone()
            .join_on(source.clone(), JoinType::Inner, [on.clone()])?;
        let mut matched = 0u64;
        let mut updated = 0u64;
        let mut matched_keys = Vec::new();
        let mut earlier: Vec<Expr> = Vec::new();
        for c in clauses.iter().filter(|c| c.when == MergeWhen::Matched) {
            let mut exprs = Vec::new();
            if let Some(k) = &target_key {
                exprs.push(k.clone().alias("__merge_key"));
            }
            let first_value = exprs.len();
            if let MergeAction::Update(set) = &c.action {
                for f in target_schema.fields() {
                    let value = set
                        .iter()
                        .find(|(c, _)| c == f.name())
                        .map(|(_, v)| v.clone())
                        .unwrap_or_else(|| Expr::Column(Column::new(Some(MERGE_TARGET), f.name())));
                    exprs.push(column(f.name(), Some(&value), f));
                }
            }
            if exprs.is_empty() {
                // A DELETE without a key to collect: only counted.
                exprs.push(lit(true).alias("__merge_row"));
            }
            let acted = matched_df
                .clone()
                .filter(condition(c.predicate.as_ref(), &earlier))?
                .select(exprs)?
                .collect()
                .await?;
            for b in acted {
                matched += b.num_rows() as u64;
                if target_key.is_some() {
                    let k = b.column(0);
                    for i in 0..k.len() {
                        matched_keys.push(ScalarValue::try_from_array(k, i)?);
                    }
                }
                if matches!(c.action, MergeAction::Update(_)) {
                    updated += b.num_rows() as u64;
                    rows.push(batch(&target_schema, b.columns()[first_value..].to_vec())?);
                }
            }
            match &c.predicate {
                Some(p) => earlier.push(p.clone()),
                None => break,
            }
        }
        // Source rows without a match, through the NOT MATCHED clauses in order.
        let mut inserted = 0u64;
        let unmatched = source.join_on(target, JoinType::LeftAnti, [on])?;
        let mut earlier: Vec<Expr> = Vec::new();
        for c in clauses.iter().filter(|c| c.when == MergeWhen::NotMatched) {
            let MergeAction::Insert(set) = &c.action else {
                continue;
            };
            let exprs: Vec<Expr> = target_schema
                .fields()
                .iter()
                .map(|f| {
                    column(
                        f.name(),
                        set.iter().find(|(c, _)| c == f.name()).map(|(_, v)| v),
                        f,
                    )
                })
                .collect();
            for b in unmatched
                .clone()
                .filter(condition(c.predicate.as_ref(), &earlier))?
                .select(exprs)?
                .collect()
                .await?
            {
                inserted += b.num_rows() as u64;
                rows.push(batch(&target_schema, b.columns().to_vec())?);
            }
            match &c.predicate {
                Some(p) => earlier.push(p.clone()),
                None => break,
            }
        }
        matched_keys.sort_by(cmp);
        matched_keys.dedup();
        Ok(Changes {
            rows,
            keys: matched_keys,
            matched,
            updated,
            inserted,
        })
    }
}

/// A clause's `predicate` holds and none of the `earlier` clauses' did.
fn condition(predicate: Option<&Expr>, earlier: &[Expr]) -> Expr {
    let mut condition = predicate.map_or(lit(true), |p| Expr::IsTrue(Box::new(p.clone())));
    for e in earlier {
        condition = condition.and(Expr::IsNotTrue(Box::new(e.clone())));
    }
    condition
}

/// The least and greatest non-NULL key of the source.
async fn key_range(
    source: &DataFrame,
    keyed: &Keyed,
) -> Result<Option<(ScalarValue, ScalarValue)>, EngineError> {
    let keys = source
        .clone()
        .select(vec![keyed.source_key.clone().alias("k")])?
        .collect()
        .await?;
    let mut bounds: Option<(ScalarValue, ScalarValue)> = None;
    for b in &keys {
        let c = b.column(0);
        for i in 0..c.len() {
            let v = ScalarValue::try_from_array(c, i)?;
            if v.is_null() {
                continue;
            }
            bounds = Some(match bounds {
                None => (v.clone(), v),
                Some((lo, hi)) => (
                    if cmp(&v, &lo).is_lt() { v.clone() } else { lo },
                    if cmp(&v, &hi).is_gt() { v } else { hi },
                ),
            });
        }
    }
    Ok(bounds)
}

/// `columns` as a batch of the target's columns.
fn batch(
    schema: &SchemaRef,
    columns: Vec<datafusion::arrow::array::ArrayRef>,
) -> Result<RecordBatch, EngineError> {
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| EngineError::DataFusion(Box::new(e.into())))
}

fn cmp(a: &ScalarValue, b: &ScalarValue) -> std::cmp::Ordering {
    a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal)
}
