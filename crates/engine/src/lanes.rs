//! Admission lanes: light statements do not queue behind heavy ones.
//!
//! `max_concurrent_queries` bounds the heavy lane. A query whose physical plan reads at
//! most `light_query_rows` rows by its statistics (catalog queries, `SELECT 1`, point
//! reads of small tables) takes a slot of the light lane instead, which has its own
//! budget, and runs on the serving runtime without a thread switch. Anything whose size
//! is unknown (a scan without statistics, `generate_series`, a table function) or that
//! multiplies rows (a nested loop or cross join: the product counts) is heavy and runs on
//! the [`super::executor::Executor`]. Writes, COPY and procedure calls are heavy.

use std::sync::Arc;

use datafusion::common::stats::Precision;
use datafusion::physical_plan::ExecutionPlan;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::EngineError;

/// Which budget a statement is admitted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Light,
    Heavy,
}

/// Leaves whose size is small by construction even without statistics.
const SMALL_LEAVES: &[&str] = &["PlaceholderRowExec", "EmptyExec", "StreamingTableExec"];
/// Operators whose output can be the product of their inputs.
const MULTIPLYING: &[&str] = &["NestedLoopJoinExec", "CrossJoinExec"];

/// The two budgets.
#[derive(Debug)]
pub struct Lanes {
    light: Arc<Semaphore>,
    heavy: Arc<Semaphore>,
    light_rows: u64,
}

impl Lanes {
    /// `heavy` statements at once; the light lane gets twice that (at least 8), or none
    /// when `light_rows` is 0.
    pub fn new(heavy: usize, light_rows: u64) -> Lanes {
        Lanes {
            light: Arc::new(Semaphore::new((2 * heavy).max(8))),
            heavy: Arc::new(Semaphore::new(heavy)),
            light_rows,
        }
    }

    /// The lane `plan` belongs to.
    pub fn lane(&self, plan: &dyn ExecutionPlan) -> Lane {
        match rows(plan) {
            Some(n) if self.light_rows > 0 && n <= u128::from(self.light_rows) => Lane::Light,
            _ => Lane::Heavy,
        }
    }

    /// Waits for a slot in `lane`.
    pub async fn admit(&self, lane: Lane) -> Result<OwnedSemaphorePermit, EngineError> {
        let sem = match lane {
            Lane::Light => &self.light,
            Lane::Heavy => &self.heavy,
        };
        sem.clone()
            .acquire_owned()
            .await
            .map_err(|_| EngineError::ShuttingDown)
    }

    /// Admits nothing more (shutdown).
    pub fn close(&self) {
        self.light.close();
        self.heavy.close();
    }
}

/// Upper estimate of the rows `plan` reads: its leaves' row counts, summed, multiplied
/// across nested loop and cross joins; `None` when a leaf's size is unknown.
fn rows(plan: &dyn ExecutionPlan) -> Option<u128> {
    let children = plan.children();
    if children.is_empty() {
        if SMALL_LEAVES.contains(&plan.name()) {
            return Some(1);
        }
        let stats = datafusion::physical_plan::StatisticsContext::new()
            .compute(plan, &datafusion::physical_plan::StatisticsArgs::new())
            .ok()?;
        return match stats.num_rows {
            Precision::Exact(n) | Precision::Inexact(n) => Some(n as u128),
            Precision::Absent => None,
        };
    }
    let mut counts = children.iter().map(|c| rows(c.as_ref()));
    if MULTIPLYING.contains(&plan.name()) {
        counts.try_fold(1u128, |acc, n| Some(acc.saturating_mul(n?.max(1))))
    } else {
        counts.try_fold(0u128, |acc, n| Some(acc.saturating_add(n?)))
    }
}

/// A statement's claim on a slot.
#[derive(Debug)]
pub enum Slot {
    /// Not admitted yet: takes a slot of the lane its plan belongs to.
    Unclaimed,
    /// Runs inside a slot already held (the statements of a procedure call).
    Held(Option<Arc<OwnedSemaphorePermit>>),
}

impl Slot {
    /// The permit this statement runs under, waiting in `lane` if it has none yet.
    pub async fn claim(
        self,
        lanes: &Lanes,
        lane: Lane,
    ) -> Result<Option<Arc<OwnedSemaphorePermit>>, EngineError> {
        match self {
            Slot::Held(p) => Ok(p),
            Slot::Unclaimed => Ok(Some(Arc::new(lanes.admit(lane).await?))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn lane_of(lanes: &Lanes, sql: &str) -> Lane {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE small AS SELECT * FROM (VALUES (1), (2), (3)) t(x)")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let plan = ctx
            .sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        lanes.lane(plan.as_ref())
    }

    #[tokio::test]
    async fn small_and_catalog_queries_are_light_unknown_sizes_heavy() {
        let lanes = Lanes::new(4, 1000);
        assert_eq!(lane_of(&lanes, "SELECT 1").await, Lane::Light);
        assert_eq!(
            lane_of(&lanes, "SELECT * FROM small a JOIN small b ON a.x = b.x").await,
            Lane::Light
        );
        assert_eq!(
            lane_of(&lanes, "SELECT count(*) FROM generate_series(1, 10)").await,
            Lane::Heavy
        );
        let off = Lanes::new(4, 0);
        assert_eq!(lane_of(&off, "SELECT 1").await, Lane::Heavy);
        let tiny = Lanes::new(4, 5);
        assert_eq!(
            lane_of(&tiny, "SELECT * FROM small a, small b").await,
            Lane::Heavy,
            "a cross join counts the product of its inputs"
        );
    }
}
