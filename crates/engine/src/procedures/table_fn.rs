//! A procedure in `FROM`: the parser turns `gold.customer_orders(42, since => '2011-01-01')`
//! into `__tidepool_call('gold.customer_orders', ',since', 42, '2011-01-01')` (the second
//! argument names the named arguments, empty for positional ones), and this table function
//! binds the arguments and plans the procedure's last statement when the query is
//! planned. Earlier statements of the body run when the scan is planned.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session as CatalogSession, TableFunctionImpl, TableProvider};
use datafusion::common::{ScalarValue, plan_err};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::{Procedure, bind_values};
use crate::Engine;
use crate::authz::Touch;
use crate::authz::guarded::{Touches, admit};

/// Name of the table function procedures in `FROM` become.
pub const CALL_FUNCTION: &str = "__tidepool_call";

/// `__tidepool_call(...)`, registered in each session with its user.
#[derive(Debug)]
pub struct CallFunction {
    pub engine: Weak<Engine>,
    pub user: String,
}

fn text(e: &Expr) -> Option<String> {
    match e {
        Expr::Literal(ScalarValue::Utf8(Some(s)), _) => Some(s.clone()),
        _ => None,
    }
}

impl TableFunctionImpl for CallFunction {
    fn call_with_args(
        &self,
        args: datafusion::catalog::TableFunctionArgs,
    ) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        if let Some((schema, name)) = exprs.first().and_then(text).and_then(|n| {
            n.split_once('.')
                .map(|(s, p)| (s.to_string(), p.to_string()))
        }) {
            let touch = Touch::Execute { schema, name };
            admit(args.session(), std::slice::from_ref(&touch))?;
            return Ok(Touches::wrap(self.bind(exprs)?, vec![touch]));
        }
        self.bind(exprs)
    }
}

impl CallFunction {
    fn bind(&self, args: &[Expr]) -> Result<Arc<dyn TableProvider>> {
        let (Some(name), Some(names)) = (args.first().and_then(text), args.get(1).and_then(text))
        else {
            return plan_err!("{CALL_FUNCTION} takes a procedure name and argument names");
        };
        let Some(engine) = self.engine.upgrade() else {
            return plan_err!("the server is shutting down");
        };
        let Some((schema, pname)) = name.split_once('.') else {
            return plan_err!("procedure name {name} is not schema.name");
        };
        let Some(p) = engine.procedures().cached(schema, pname) else {
            return Err(DataFusionError::External(Box::new(
                crate::EngineError::UndefinedFunction(format!("procedure {name} does not exist")),
            )));
        };
        if args[2..].iter().any(super::call_params::unbound) {
            return match p.result.clone() {
                Some(schema) => Ok(Arc::new(super::call_params::Unbound { schema })),
                None => plan_err!(
                    "procedure {} returns no rows that a query could read",
                    p.signature()
                ),
            };
        }
        let names: Vec<&str> = names.split(',').collect();
        let values = args[2..]
            .iter()
            .enumerate()
            .map(|(k, e)| {
                let n = names
                    .get(k)
                    .filter(|n| !n.is_empty())
                    .map(|n| n.to_string());
                let v = match e {
                    Expr::Literal(v, _) => Ok(v.clone()),
                    other => Err(format!("arguments are literal values, not {other}")),
                };
                (n, v)
            })
            .collect();
        let bound = bind_values(&p, values).map_err(|e| DataFusionError::External(Box::new(e)))?;
        let Some(schema) = p.result.clone() else {
            return plan_err!(
                "procedure {} returns no rows that a query could read",
                p.signature()
            );
        };
        Ok(Arc::new(ProcedureTable {
            engine: self.engine.clone(),
            user: self.user.clone(),
            procedure: p,
            bound,
            schema,
        }))
    }
}

/// One call of a procedure, read as a table.
#[derive(Debug)]
struct ProcedureTable {
    engine: Weak<Engine>,
    user: String,
    procedure: Arc<Procedure>,
    bound: HashMap<String, ScalarValue>,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for ProcedureTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn CatalogSession,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(engine) = self.engine.upgrade() else {
            return plan_err!("the server is shutting down");
        };
        let mut session = engine.session(&self.user);
        let external = |e: crate::EngineError| DataFusionError::External(Box::new(e));
        let mut df = session
            .procedure_frame(&self.procedure, &self.bound)
            .await
            .map_err(external)?;
        if df.schema().fields().len() != self.schema.fields().len() {
            return plan_err!(
                "procedure {} returns other columns than when it was deployed; deploy it again",
                self.procedure.signature()
            );
        }
        if let Some(p) = projection {
            let names: Vec<String> = p
                .iter()
                .map(|&i| df.schema().field(i).name().clone())
                .collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            df = df.select_columns(&names)?;
        }
        if let Some(n) = limit {
            df = df.limit(0, Some(n))?;
        }
        df.create_physical_plan().await
    }
}

/// The procedures a statement reads in `FROM`, as (schema, name), so they can be loaded
/// before the statement is planned.
pub fn called(stmt: &datafusion::sql::sqlparser::ast::Statement) -> Vec<(String, String)> {
    use datafusion::sql::sqlparser::ast::{
        Expr as SqlExpr, FunctionArg, FunctionArgExpr, TableFactor, Value, Visit, Visitor,
    };
    use std::ops::ControlFlow;
    struct Calls(Vec<(String, String)>);
    impl Visitor for Calls {
        type Break = ();
        fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table {
                name,
                args: Some(args),
                ..
            } = t
                && name.to_string() == CALL_FUNCTION
                && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Value(v)))) =
                    args.args.first()
                && let Value::SingleQuotedString(s) = &v.value
                && let Some((schema, proc)) = s.split_once('.')
            {
                self.0.push((schema.to_string(), proc.to_string()));
            }
            ControlFlow::Continue(())
        }
    }
    let mut calls = Calls(Vec::new());
    let _ = stmt.visit(&mut calls);
    calls.0
}
