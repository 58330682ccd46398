//! Describing a statement without running it (a prepared statement's parameter types
//! and result columns), by the same classification [`Session::execute`] goes by.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement as DFStatement;

use super::Session;
use super::kind::Kind;
use super::output::Described;
use crate::EngineError;

impl Session {
    /// Describes a statement: parameter types and result columns.
    pub async fn describe(&mut self, stmt: &DFStatement) -> Result<Described, EngineError> {
        let none = Described {
            params: Vec::new(),
            schema: None,
        };
        let kind = Kind::of(stmt);
        if let DFStatement::Statement(s) = stmt {
            match kind {
                Kind::Variable => {
                    return Ok(Described {
                        params: Vec::new(),
                        schema: self.describe_variable(s)?,
                    });
                }
                Kind::Declare => {
                    let params = match Session::declared_query(s)? {
                        Some(q) => Box::pin(self.describe(&q)).await?.params,
                        None => Vec::new(),
                    };
                    return Ok(Described {
                        params,
                        schema: None,
                    });
                }
                Kind::Fetch => {
                    return Ok(Described {
                        params: Vec::new(),
                        schema: Some(self.describe_fetch(s)?),
                    });
                }
                Kind::Security | Kind::Transaction | Kind::Copy => return Ok(none),
                Kind::Procedure | Kind::Planned => {}
            }
        }
        let mut stmt = stmt.clone();
        self.prepare_temp(&mut stmt)?;
        if kind == Kind::Procedure {
            return self.describe_procedure(&stmt).await;
        }
        let listing = self.engine.lake().listing().await?;
        if let Some(key) = self.catalog_key(&stmt)
            && let Some(hit) =
                self.engine
                    .catalog_cache
                    .get(&key, &listing, self.engine.lake().refresh_interval())
        {
            return Ok(Described {
                params: Vec::new(),
                schema: Some(hit.schema),
            });
        }
        let returning = super::returning::take(&mut stmt);
        // Parameters in a procedure call read as a table are gone from the plan (the call
        // ran while planning): they count, untyped.
        let in_calls = match &stmt {
            DFStatement::Statement(s) => crate::procedures::call_params::count(s),
            _ => 0,
        };
        let plan = self.plan(stmt).await?;
        let mut types = plan.get_parameter_types()?;
        infer_from_casts(&plan, &mut types)?;
        let mut params = ordered_params(types);
        if params.len() < in_calls {
            params.resize(in_calls, None);
        }
        if let Some(r) = returning {
            let (_, target) = super::returning::dml_of(plan)?;
            return Ok(Described {
                params,
                schema: Some(r.describe(self, target).await?),
            });
        }
        let schema = match &plan {
            LogicalPlan::Ddl(_) | LogicalPlan::Dml(_) | LogicalPlan::Copy(_) => None,
            LogicalPlan::Statement(_) => None,
            p if crate::alter::alter_node(p).is_some() => None,
            // The analyzer may change result types (regproc columns shown as names):
            // the schema is the analyzed plan's, as execution will send it.
            p => {
                let state = self.ctx.state();
                let analyzed = state.analyzer().execute_and_check(
                    p.clone(),
                    state.config_options(),
                    |_, _| {},
                );
                let schema = match analyzed {
                    Ok(a) => a.schema().as_arrow().clone(),
                    Err(_) => p.schema().as_arrow().clone(),
                };
                let annotated = match self.origins(p) {
                    Some(origins) => self.annotated(&schema, &origins).await,
                    None => None,
                };
                Some(annotated.unwrap_or_else(|| Arc::new(schema)))
            }
        };
        Ok(Described { params, schema })
    }
}

/// Postgres gives `$1::float8` the type of the cast; DataFusion leaves it unknown.
fn infer_from_casts(
    plan: &LogicalPlan,
    types: &mut HashMap<String, Option<DataType>>,
) -> Result<(), EngineError> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::Expr;
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                let (inner, to) = match e {
                    Expr::Cast(c) => (c.expr.as_ref(), c.field.data_type()),
                    Expr::TryCast(c) => (c.expr.as_ref(), c.field.data_type()),
                    _ => return Ok(TreeNodeRecursion::Continue),
                };
                if let Expr::Placeholder(p) = inner
                    && let Some(slot @ None) = types.get_mut(&p.id)
                {
                    *slot = Some(to.clone());
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    Ok(())
}

fn ordered_params(types: HashMap<String, Option<DataType>>) -> Vec<Option<DataType>> {
    let mut indexed: Vec<(usize, Option<DataType>)> = types
        .into_iter()
        .filter_map(|(k, v)| {
            k.trim_start_matches('$')
                .parse::<usize>()
                .ok()
                .map(|i| (i, v))
        })
        .collect();
    indexed.sort_by_key(|(i, _)| *i);
    let n = indexed.last().map(|(i, _)| *i).unwrap_or(0);
    let mut out = vec![None; n];
    for (i, t) in indexed {
        if i >= 1 {
            out[i - 1] = t;
        }
    }
    out
}
