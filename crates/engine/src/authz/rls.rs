//! Row-level security: every scan of a table with row-level security enabled, in a plan a
//! reader runs, reads through a [`Barrier`] filtering by the OR of the `USING` predicates
//! of the policies that apply to the reader (none: no rows). Applied to the plan after authorization, to the inner
//! plan of a view when the view is scanned, and to procedure bodies, always for the
//! session's own user, so `current_user` and `current_setting('app.tenant')` in a policy
//! are the reader's. Owners (full users) and the server see every row.

use datafusion::common::TableReference;
use datafusion::common::tree_node::Transformed;
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan, TableScan, TableScanBuilder, lit};

use super::barrier::Barrier;
use super::guarded::Touches;
use super::{Principal, Touch};
use crate::{CATALOG, EngineError};

/// The lake table a scan reads, as (schema, table).
fn scanned_table(scan: &TableScan, default_schema: &str) -> Option<(String, String)> {
    if let Ok(provider) = source_as_provider(&scan.source)
        && let Some(t) = provider.downcast_ref::<Touches>()
    {
        return t.touches().iter().find_map(|t| match t {
            Touch::Read { schema, table } => Some((schema.clone(), table.clone())),
            _ => None,
        });
    }
    if let TableReference::Bare { table } = &scan.table_name
        && table.contains('(')
    {
        return None;
    }
    let r = scan.table_name.clone().resolve(CATALOG, default_schema);
    Some((r.schema.to_string(), r.table.to_string()))
}

/// Filters the scans of row-level secured tables in `plan` for `principal`.
pub fn apply(
    plan: LogicalPlan,
    principal: &Principal,
    default_schema: &str,
    state: &SessionState,
) -> Result<LogicalPlan, EngineError> {
    if !principal.filtered_by_policies() {
        return Ok(plan);
    }
    let doc = principal.security();
    if doc.rls.is_empty() {
        return Ok(plan);
    }
    let out = plan.transform_up_with_subqueries(|node| {
        let LogicalPlan::TableScan(scan) = &node else {
            return Ok(Transformed::no(node));
        };
        if source_as_provider(&scan.source).is_ok_and(|p| p.downcast_ref::<Barrier>().is_some()) {
            return Ok(Transformed::no(node));
        }
        let Some((schema, table)) = scanned_table(scan, default_schema) else {
            return Ok(Transformed::no(node));
        };
        if !doc.rls_enabled(&schema, &table) {
            return Ok(Transformed::no(node));
        }
        let columns = scan.projected_schema.clone();
        let mut filter: Option<Expr> = None;
        for using in doc.read_predicates(&principal.user, &schema, &table) {
            let e = state.create_logical_expr(using, &columns)?;
            filter = Some(match filter {
                None => e,
                Some(f) => f.or(e),
            });
        }
        let filter = filter.unwrap_or_else(|| lit(false));
        let provider = source_as_provider(&scan.source)?;
        let source = provider_as_source(Barrier::wrap(provider, filter)?);
        let scan = TableScanBuilder::new(scan.table_name.clone(), source)
            .with_projection(scan.projection.clone())
            .with_filters(scan.filters.clone())
            .with_fetch(scan.fetch)
            .with_statistics_requests(scan.statistics_requests.clone())
            .build()?;
        Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
    })?;
    Ok(out.data)
}
