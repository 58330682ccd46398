//! The security barrier of row-level security. A scan of a table under row-level security
//! reads through [`Barrier`]: its output holds only the rows the policy lets the reader
//! see, and nothing the reader wrote runs on the other rows. The reader's own predicates
//! reach the scan only when they are leak-proof ([`leakproof`]: column comparisons with
//! constants, `IN` lists, `IS NULL`..., which cannot fail or call out whatever the row
//! holds); any other predicate (a division, a cast that may fail, a function) stays above
//! the barrier and sees visible rows only, so an error cannot tell that a hidden row
//! exists. A limit is applied after the policy, and [`BarrierExec`] lets no filter of the
//! physical plan pass below it. This is PostgreSQL's `security_barrier` rule.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema};
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, ExprSchemable, Operator, TableProviderFilterPushDown};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::filter::FilterExecBuilder;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};

/// A table seen through a row-level security policy.
#[derive(Debug)]
pub struct Barrier {
    inner: Arc<dyn TableProvider>,
    /// The policy's filter over the table's columns (unqualified).
    policy: Expr,
}

impl Barrier {
    pub fn wrap(inner: Arc<dyn TableProvider>, policy: Expr) -> Result<Arc<dyn TableProvider>> {
        let policy = unqualified(policy)?;
        Ok(Arc::new(Barrier { inner, policy }))
    }

    /// The provider behind the barrier.
    pub fn inner(&self) -> &Arc<dyn TableProvider> {
        &self.inner
    }
}

/// `policy` with its column references stripped of table qualifiers.
fn unqualified(policy: Expr) -> Result<Expr> {
    Ok(policy
        .transform(|e| match e {
            Expr::Column(c) if c.relation.is_some() => Ok(Transformed::yes(Expr::Column(
                Column::new_unqualified(c.name),
            ))),
            e => Ok(Transformed::no(e)),
        })?
        .data)
}

#[async_trait]
impl TableProvider for Barrier {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        let schema = DFSchema::try_from(self.inner.schema().as_ref().clone())?;
        filters
            .iter()
            .map(|f| {
                Ok(if leakproof(&unqualified((*f).clone())?, &schema) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                })
            })
            .collect()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = self.inner.schema();
        // Read the asked columns and those the policy needs.
        let mut read: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..schema.fields().len()).collect(),
        };
        for c in self.policy.column_refs() {
            let i = schema.index_of(&c.name)?;
            if !read.contains(&i) {
                read.push(i);
            }
        }
        let mut pushed = filters
            .iter()
            .cloned()
            .map(unqualified)
            .collect::<Result<Vec<_>>>()?;
        pushed.push(self.policy.clone());
        let input = self.inner.scan(state, Some(&read), &pushed, None).await?;
        let input_schema = DFSchema::try_from(input.schema().as_ref().clone())?;
        let predicate = state.create_physical_expr(self.policy.clone(), &input_schema)?;
        // Keep the asked columns, in the asked order.
        let keep: Vec<usize> = match projection {
            Some(p) => (0..p.len()).collect(),
            None => (0..schema.fields().len()).collect(),
        };
        let filter = FilterExecBuilder::new(predicate, input)
            .apply_projection(Some(keep))?
            .build()?;
        Ok(Arc::new(BarrierExec::new(Arc::new(filter))))
    }
}

/// Whether evaluating `e` on a row can neither fail nor reveal anything but its result:
/// columns, constants, comparisons, `AND`/`OR`/`NOT`, `IS [NOT] NULL/TRUE/FALSE`, `IN`
/// lists and `BETWEEN` of those, and casts that cannot fail.
pub fn leakproof(e: &Expr, schema: &DFSchema) -> bool {
    match e {
        Expr::Column(_) | Expr::Literal(..) => true,
        Expr::Alias(a) => leakproof(&a.expr, schema),
        Expr::BinaryExpr(b) => {
            matches!(
                b.op,
                Operator::Eq
                    | Operator::NotEq
                    | Operator::Lt
                    | Operator::LtEq
                    | Operator::Gt
                    | Operator::GtEq
                    | Operator::IsDistinctFrom
                    | Operator::IsNotDistinctFrom
                    | Operator::And
                    | Operator::Or
            ) && leakproof(&b.left, schema)
                && leakproof(&b.right, schema)
        }
        Expr::Not(x)
        | Expr::IsNull(x)
        | Expr::IsNotNull(x)
        | Expr::IsTrue(x)
        | Expr::IsFalse(x)
        | Expr::IsNotTrue(x)
        | Expr::IsNotFalse(x)
        | Expr::IsUnknown(x)
        | Expr::IsNotUnknown(x) => leakproof(x, schema),
        Expr::InList(l) => {
            leakproof(&l.expr, schema) && l.list.iter().all(|x| leakproof(x, schema))
        }
        Expr::Between(b) => {
            leakproof(&b.expr, schema) && leakproof(&b.low, schema) && leakproof(&b.high, schema)
        }
        Expr::TryCast(c) => leakproof(&c.expr, schema),
        Expr::Cast(c) => {
            leakproof(&c.expr, schema)
                && c.expr
                    .get_type(schema)
                    .is_ok_and(|from| cannot_fail(&from, c.field.data_type()))
        }
        _ => false,
    }
}

/// Casts that succeed for every value: to the same type, between string encodings, and
/// to a wider integer or to a 64-bit float.
fn cannot_fail(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    let text = |t: &DataType| matches!(t, Utf8 | Utf8View | LargeUtf8);
    let rank = |t: &DataType| match t {
        Int8 => Some(1),
        Int16 => Some(2),
        Int32 => Some(3),
        Int64 => Some(4),
        _ => None,
    };
    from == to
        || (text(from) && text(to))
        || matches!((rank(from), rank(to)), (Some(a), Some(b)) if a <= b)
        || (matches!(to, Float64) && (from.is_integer() || matches!(from, Float32)))
}

/// The physical side of [`Barrier`]: passes its input through and lets no parent filter
/// be pushed below it (the default of [`ExecutionPlan::gather_filters_for_pushdown`]).
#[derive(Debug)]
pub struct BarrierExec {
    input: Arc<dyn ExecutionPlan>,
}

impl BarrierExec {
    fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        BarrierExec { input }
    }
}

impl DisplayAs for BarrierExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "RowLevelSecurityBarrier")
    }
}

impl ExecutionPlan for BarrierExec {
    fn name(&self) -> &str {
        "RowLevelSecurityBarrier"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match children.pop() {
            Some(input) if children.is_empty() => Ok(Arc::new(BarrierExec::new(input))),
            _ => datafusion::common::internal_err!("BarrierExec takes one child"),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }
}
