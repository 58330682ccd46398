//! tidepool's rewrites of the SQL drivers and BI tools send, beyond datafusion-pg-catalog's
//! rules: one struct per rule, each walking the parsed statement and replacing what
//! DataFusion cannot plan (or plans differently from PostgreSQL) with AST values built
//! from [`template::Template`]s. A rule either rewrites or leaves the statement as it
//! is; a replacement it cannot build is an error, never a silently skipped rewrite.
//!
//! The rules, in the order they run:
//! - [`types::PostgresTypes`]: `float(p)` as PostgreSQL sizes it.
//! - [`system_columns::SystemColumns`]: `x.tableoid`, the relation's oid.
//! - [`expand_array::ExpandArray`]: pgjdbc's `information_schema._pg_expandarray`.
//! - [`functions_in_from::FunctionsInFrom`]: scalar functions used as tables, and
//!   `generate_series(...) AS i` naming its column `i`.
//! - [`in_subqueries::InSubqueriesAsArrays`]: `x IN (SELECT ...)` outside filters.
//! - [`catalog_functions::CatalogFunctions`]: `pg_get_viewdef`, `col_description`,
//!   `obj_description`, `array_to_string` over ACL columns, `generate_subscripts`,
//!   `to_regclass` and its kin,
//!   `proname = 'pg_catalog.f'`.
//! - [`like_escape::LikeEscape`]: `LIKE ... ESCAPE 'c'`.
//! - [`subqueries::CorrelatedSubqueries`]: correlated scalar and `ARRAY(...)`
//!   subqueries as aggregates, conditions on outer columns hoisted, subqueries over
//!   always-empty catalogs as NULL.
//! - [`tid_ranges::TidRanges`]: DuckDB's `ctid BETWEEN` over a whole table.
//! - [`tuple_ids::TupleIds`]: relations whose `ctid` is named read with their tuple ids.
//!
//! [`crate::regclass_search::RegclassSearch`] runs among datafusion-pg-catalog's rules,
//! before its `'name'::regclass` lookup: catalog table names are found in `pg_catalog`.

mod catalog_functions;
mod expand_array;
mod functions_in_from;
mod in_subqueries;
pub(crate) mod like_escape;
mod subqueries;
mod system_columns;
mod template;
mod tid_ranges;
mod tuple_ids;
mod types;

use std::ops::ControlFlow;

use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::parser::ParserError;
use tidepool_engine::EngineError;

pub use like_escape::like_escape_udf;
pub use tuple_ids::tidin_udf;

/// One rewrite of client SQL.
pub(crate) trait Rule: Sync {
    /// The rule's name, in errors.
    fn name(&self) -> &'static str;
    /// Rewrites `statement` in place.
    fn rewrite(&self, statement: &mut Statement) -> Result<(), ParserError>;
}

/// Every rule, in the order they run.
const RULES: &[&dyn Rule] = &[
    &types::PostgresTypes,
    &system_columns::SystemColumns,
    &expand_array::ExpandArray,
    &functions_in_from::FunctionsInFrom,
    &in_subqueries::InSubqueriesAsArrays,
    &catalog_functions::CatalogFunctions,
    &like_escape::LikeEscape,
    &subqueries::CorrelatedSubqueries,
    &tid_ranges::TidRanges,
    &tuple_ids::TupleIds,
];

/// Applies every rule to `statement`. A rule that fails to build its replacement is a
/// bug of that rule: XX000 with the rule's name.
pub fn rewrite(statement: &mut Statement) -> Result<(), EngineError> {
    for rule in RULES {
        rule.rewrite(statement).map_err(|e| {
            EngineError::from(DataFusionError::Internal(format!(
                "rewrite rule {}: {e}",
                rule.name()
            )))
        })?;
    }
    Ok(())
}

/// The first error a rewriting visitor met, as a result.
fn finish(flow: ControlFlow<ParserError>) -> Result<(), ParserError> {
    match flow {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// The last part of a function or table name, lower case.
fn last_name(name: &datafusion::sql::sqlparser::ast::ObjectName) -> Option<String> {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(|i| i.value.to_ascii_lowercase())
}

#[cfg(test)]
mod tests;
