//! `SET tidepool.planner_rewrites = off`: the session switch for tidepool's own logical
//! rewrites ([`crate::aggregate_windows`], [`crate::aggregate_keys`],
//! [`crate::semi_joins`], [`crate::dimension_filters`]). They are sound by construction
//! and tested against the plans without them, but they choose by heuristics (row counts,
//! filters): a user who suspects one of them, or wants DataFusion's plan to compare,
//! turns them off for the session. The setting is a session setting as PostgreSQL keeps
//! custom ones (`SHOW`, `RESET`, `DISCARD ALL`); the optimizer reads it from this
//! DataFusion option extension, which [`Session`](crate::Session) keeps in step, through
//! [`Switched`], the wrapper each of those rules is registered in.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::config::ConfigExtension;
use datafusion::common::extensions_options;
use datafusion::common::tree_node::Transformed;
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::LogicalPlan;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

/// The session setting's name.
pub const SETTING: &str = "tidepool.planner_rewrites";

extensions_options! {
    /// tidepool's planner options, as DataFusion keeps them per session.
    pub struct PlannerOptions {
        /// Whether tidepool's own logical rewrites run.
        pub rewrites: bool, default = true
    }
}

impl ConfigExtension for PlannerOptions {
    const PREFIX: &'static str = "tidepool_planner";
}

/// Whether the rewrites run under `options` (yes unless the session turned them off).
pub fn rewrites(options: &ConfigOptions) -> bool {
    options
        .extensions
        .get::<PlannerOptions>()
        .is_none_or(|o| o.rewrites)
}

/// The setting's value as a boolean, PostgreSQL's spellings accepted; `None` otherwise.
pub fn parse(value: &str) -> Option<bool> {
    match value
        .trim()
        .trim_matches('\'')
        .to_ascii_lowercase()
        .as_str()
    {
        "on" | "true" | "yes" | "1" | "t" | "y" => Some(true),
        "off" | "false" | "no" | "0" | "f" | "n" => Some(false),
        _ => None,
    }
}

/// A rule that runs only while the session's rewrites are on.
#[derive(Debug)]
pub struct Switched<R>(R);

impl<R: OptimizerRule + Send + Sync + 'static> Switched<R> {
    pub fn wrap(rule: R) -> Arc<dyn OptimizerRule + Send + Sync> {
        Arc::new(Switched(rule))
    }
}

impl<R: OptimizerRule> OptimizerRule for Switched<R> {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn apply_order(&self) -> Option<datafusion::optimizer::ApplyOrder> {
        self.0.apply_order()
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        if rewrites(&config.options()) {
            self.0.rewrite(plan, config)
        } else {
            Ok(Transformed::no(plan))
        }
    }
}
