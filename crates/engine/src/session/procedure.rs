//! Procedures inside a session: `CREATE PROCEDURE`, `DROP PROCEDURE`, `CALL` (and `EXEC`,
//! rewritten to `CALL` by the parser), describing a `CALL` for prepared statements, and
//! building a procedure from its definition (which plans its body in a session).

use std::collections::HashMap;
use std::sync::Arc;

use crate::lanes::{Lane, Slot};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::DataFrame;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    ConditionalStatements, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectName,
    Statement, Value,
};
use futures::StreamExt;

use super::output::{CommandTag, Described, Output, QueryControl, Shape, SplitOutput};
use super::{Session, Source};
use crate::authz::{Principal, Touch};
use crate::names::reference;
use crate::procedures::{
    FILE_MARKER, OWNER_MARKER, Param, Procedure, bind_call, file_of, owner_of,
};
use crate::{Engine, EngineError};
use tidepool_lake::DefinitionKind;

/// A call's values for the body's placeholders (`$1..$n`, in parameter order).
fn param_values(params: &[Param], bound: &HashMap<String, ScalarValue>) -> ParamValues {
    ParamValues::List(
        params
            .iter()
            .map(|p| {
                bound
                    .get(&p.name)
                    .cloned()
                    .unwrap_or(ScalarValue::Null)
                    .into()
            })
            .collect(),
    )
}

/// Rewrites the body's `$name` placeholders to `$k`, k the parameter's position
/// (DataFusion plans positional ones in every statement, `INSERT ... VALUES` included).
fn positional(statements: &mut [Statement], params: &[Param]) -> Result<(), EngineError> {
    use datafusion::sql::sqlparser::ast::{VisitMut, VisitorMut};
    use std::ops::ControlFlow;
    struct Rewrite<'a>(&'a [Param], Option<String>);
    impl VisitorMut for Rewrite<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
            if let Expr::Value(v) = e
                && let Value::Placeholder(p) = &mut v.value
                && let Some(name) = p.strip_prefix('$')
                && name.parse::<usize>().is_err()
            {
                match self.0.iter().position(|q| q.name == name.to_lowercase()) {
                    Some(k) => *p = format!("${}", k + 1),
                    None => {
                        self.1 = Some(name.to_string());
                        return ControlFlow::Break(());
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    for s in statements.iter_mut() {
        let mut r = Rewrite(params, None);
        let _ = s.visit(&mut r);
        if let Some(unknown) = r.1 {
            return Err(EngineError::Syntax(format!(
                "the body uses :{unknown}, which is not a parameter"
            )));
        }
    }
    Ok(())
}

/// The procedure `schema.name`, from the registry or the lake.
pub async fn load(
    engine: &Arc<Engine>,
    schema: &str,
    name: &str,
) -> Result<Option<Arc<Procedure>>, EngineError> {
    let registry = engine.procedures();
    if let Some(p) = registry.fresh(schema, name) {
        return Ok(Some(p));
    }
    let Some(definition) = engine
        .lake()
        .definition(DefinitionKind::Procedure, schema, name)
        .await?
    else {
        registry.remove(schema, name);
        return Ok(None);
    };
    if let Some(p) = registry.same(schema, name, &definition) {
        return Ok(Some(p));
    }
    let session = engine.session("tidepool");
    let mut statements = session.parse(&definition)?;
    let Some(DFStatement::Statement(stmt)) = statements.pop() else {
        return Err(EngineError::Syntax(format!(
            "the stored definition of procedure {schema}.{name} is not a CREATE PROCEDURE"
        )));
    };
    let p = Arc::new(build(&session, &stmt, definition).await?);
    registry.insert(p.clone());
    Ok(Some(p))
}

/// A procedure from its `CREATE PROCEDURE` statement: parameter types resolved, defaults
/// converted, and the result columns planned.
async fn build(
    session: &Session,
    stmt: &Statement,
    definition: String,
) -> Result<Procedure, EngineError> {
    let Statement::CreateProcedure {
        name, params, body, ..
    } = stmt
    else {
        return Err(EngineError::Syntax("not a CREATE PROCEDURE".into()));
    };
    let (schema, pname) = session.resolve(&reference(name))?;
    if !tidepool_lake::valid_name(&schema) || !tidepool_lake::valid_name(&pname) {
        return Err(EngineError::InvalidArgument(format!(
            "procedure name {schema}.{pname}: lower-case letters, digits and _"
        )));
    }
    let mut out = Vec::new();
    for p in params.iter().flatten() {
        if p.mode.is_some() {
            return Err(EngineError::NotSupported(
                "IN/OUT/INOUT parameter modes (every parameter is an input)".into(),
            ));
        }
        let sql_type = p.data_type.to_string();
        let probe = session
            .ctx
            .sql(&format!("SELECT CAST(NULL AS {sql_type})"))
            .await?;
        let data_type = probe.schema().field(0).data_type().clone();
        let (default, default_sql) = match &p.default {
            Some(d) => {
                let batches = session
                    .ctx
                    .sql(&format!("SELECT CAST({d} AS {sql_type})"))
                    .await?
                    .collect()
                    .await
                    .map_err(|e| {
                        EngineError::InvalidText(format!(
                            "default of parameter \"{}\": {}",
                            p.name.value,
                            EngineError::from(e).message()
                        ))
                    })?;
                let v = batches
                    .iter()
                    .find(|b| b.num_rows() > 0)
                    .map(|b| ScalarValue::try_from_array(b.column(0), 0))
                    .transpose()?
                    .unwrap_or(ScalarValue::try_from(&data_type)?);
                (Some(v), Some(d.to_string()))
            }
            None => (None, None),
        };
        out.push(Param {
            name: p.name.value.to_lowercase(),
            sql_type: sql_type.to_uppercase(),
            data_type,
            default,
            default_sql,
        });
    }
    let mut statements: Vec<Statement> = match body {
        ConditionalStatements::Sequence { statements } => statements.clone(),
        ConditionalStatements::BeginEnd(b) => b.statements.clone(),
    };
    positional(&mut statements, &out)?;
    let Some(last) = statements.last() else {
        return Err(EngineError::Syntax(format!(
            "procedure {schema}.{pname} has no statements"
        )));
    };
    let nulls: HashMap<String, ScalarValue> = out
        .iter()
        .map(|p| Ok((p.name.clone(), ScalarValue::try_from(&p.data_type)?)))
        .collect::<Result<_, datafusion::error::DataFusionError>>()?;
    // The result columns; a body of several statements may read what the earlier ones
    // create, so only a single statement must plan now.
    let planned = match session
        .plan(DFStatement::Statement(Box::new(last.clone())))
        .await
    {
        Ok(plan) => Some(plan.with_param_values(param_values(&out, &nulls))?),
        Err(e) if statements.len() == 1 => return Err(e),
        Err(_) => None,
    };
    let result = planned.and_then(|p| match p {
        LogicalPlan::Ddl(_)
        | LogicalPlan::Dml(_)
        | LogicalPlan::Copy(_)
        | LogicalPlan::Statement(_) => None,
        p => Some(Arc::new(p.schema().as_arrow().clone())),
    });
    Ok(Procedure {
        schema,
        name: pname,
        params: out,
        body: statements,
        result,
        file: file_of(&definition),
        owner: owner_of(&definition),
        definition,
    })
}

impl Session {
    /// Creates (or replaces) a procedure from its statement; `file` names the file it was
    /// deployed from.
    pub async fn create_procedure(
        &self,
        stmt: &Statement,
        file: Option<&str>,
    ) -> Result<Arc<Procedure>, EngineError> {
        let mut definition = String::new();
        if let Some(f) = file {
            definition.push_str(&format!("{FILE_MARKER}{f}\n"));
        }
        if !self.principal().is_trusted() {
            definition.push_str(&format!("{OWNER_MARKER}{}\n", self.user()));
        }
        definition.push_str(&stmt.to_string());
        let p = build(self, stmt, definition).await?;
        let lake = self.engine.lake();
        if !lake.cached_listing().schemas.contains_key(&p.schema) {
            return Err(EngineError::UndefinedSchema(p.schema.clone()));
        }
        lake.put_definition(DefinitionKind::Procedure, &p.schema, &p.name, &p.definition)
            .await?;
        let p = Arc::new(p);
        self.engine.procedures().insert(p.clone());
        Ok(p)
    }

    /// `CREATE PROCEDURE`, `DROP PROCEDURE` and `CALL`. A call takes one heavy slot for
    /// its whole body.
    pub(super) async fn run_procedure(
        &mut self,
        stmt: &DFStatement,
        params: Option<&ParamValues>,
        control: &QueryControl,
    ) -> Result<Output, EngineError> {
        let DFStatement::Statement(s) = stmt else {
            return Err(EngineError::NotSupported(stmt.to_string()));
        };
        match s.as_ref() {
            Statement::CreateProcedure { name, .. } => {
                let (schema, _) = self.resolve(&reference(name))?;
                self.principal().check(&Touch::Define {
                    schema,
                    what: "CREATE PROCEDURE".into(),
                })?;
                self.create_procedure(s, None).await?;
                Ok(Output::Command(CommandTag::new("CREATE PROCEDURE")))
            }
            Statement::DropProcedure {
                if_exists,
                proc_desc,
                ..
            } => {
                for d in proc_desc {
                    let (schema, name) = self.resolve(&reference(&d.name))?;
                    self.principal().check(&Touch::Define {
                        schema: schema.clone(),
                        what: "DROP PROCEDURE".into(),
                    })?;
                    let dropped = self
                        .engine
                        .lake()
                        .drop_definition(DefinitionKind::Procedure, &schema, &name)
                        .await?;
                    self.engine.procedures().remove(&schema, &name);
                    if !dropped && !if_exists {
                        return Err(EngineError::UndefinedFunction(format!(
                            "procedure {schema}.{name} does not exist"
                        )));
                    }
                }
                Ok(Output::Command(CommandTag::new("DROP PROCEDURE")))
            }
            Statement::Call(f) => {
                let p = self.procedure(&f.name).await?;
                let args = call_args(&f.args)?;
                let bound = bind_call(&p, &args, params)?;
                let permit = self.engine.lanes().admit(Lane::Heavy).await?;
                let slot = Slot::Held(Some(Arc::new(permit)));
                self.run_body(&p, &bound, control, slot).await
            }
            other => Err(EngineError::NotSupported(other.to_string())),
        }
    }

    /// Parameter types and result columns of a `CALL`; none of `CREATE` and `DROP
    /// PROCEDURE`.
    pub(super) async fn describe_procedure(
        &mut self,
        stmt: &DFStatement,
    ) -> Result<Described, EngineError> {
        let none = Described {
            params: Vec::new(),
            schema: None,
        };
        let DFStatement::Statement(s) = stmt else {
            return Ok(none);
        };
        match s.as_ref() {
            Statement::Call(f) => {
                let p = self.procedure(&f.name).await?;
                let args = call_args(&f.args)?;
                // `$n` takes the type of the parameter it is given for.
                let mut types: Vec<Option<datafusion::arrow::datatypes::DataType>> = Vec::new();
                for (k, a) in args.iter().enumerate() {
                    let (param, e) = match a {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => (p.params.get(k), e),
                        FunctionArg::Named {
                            name,
                            arg: FunctionArgExpr::Expr(e),
                            ..
                        } => {
                            let n = name.value.to_lowercase();
                            (p.params.iter().find(|q| q.name == n), e)
                        }
                        _ => continue,
                    };
                    if let (Some(param), Expr::Value(v)) = (param, e)
                        && let Value::Placeholder(ph) = &v.value
                        && let Some(n) = ph.strip_prefix('$').and_then(|n| n.parse::<usize>().ok())
                        && n > 0
                    {
                        if types.len() < n {
                            types.resize(n, None);
                        }
                        types[n - 1] = Some(param.data_type.clone());
                    }
                }
                Ok(Described {
                    params: types,
                    schema: p.result.clone(),
                })
            }
            _ => Ok(none),
        }
    }

    /// The procedure a `CALL` names (42883 when there is none), once this session may
    /// call it.
    async fn procedure(&self, name: &ObjectName) -> Result<Arc<Procedure>, EngineError> {
        let (schema, pname) = self.resolve(&reference(name))?;
        self.principal().check(&Touch::Execute {
            schema: schema.clone(),
            name: pname.clone(),
        })?;
        load(&self.engine, &schema, &pname).await?.ok_or_else(|| {
            EngineError::UndefinedFunction(format!("procedure {schema}.{pname} does not exist"))
        })
    }

    /// Runs every statement of `p`'s body with `bound` as its parameters; the last one's
    /// output is the result.
    pub(crate) async fn run_body(
        &mut self,
        p: &Procedure,
        bound: &HashMap<String, ScalarValue>,
        control: &QueryControl,
        slot: Slot,
    ) -> Result<Output, EngineError> {
        let plan = self.body_plan(p, bound, control).await?;
        let source = match p.body.last() {
            Some(s) => Source::of(&DFStatement::Statement(Box::new(s.clone()))),
            None => Source::default(),
        };
        self.run_plan(plan, &source, control, slot, Shape::Merged)
            .await
            .map(SplitOutput::into_output)
    }

    /// Runs all but the last statement of `p`'s body; returns the last one planned with
    /// `bound` as its parameters.
    pub(crate) async fn body_plan(
        &mut self,
        p: &Procedure,
        bound: &HashMap<String, ScalarValue>,
        control: &QueryControl,
    ) -> Result<LogicalPlan, EngineError> {
        let values = param_values(&p.params, bound);
        let (last, earlier) = p
            .body
            .split_last()
            .ok_or_else(|| EngineError::Syntax("empty procedure".into()))?;
        // The body runs with its owner's rights (Synapse and Postgres SECURITY DEFINER).
        let owner = match &p.owner {
            Some(user) => self.engine.options().access.principal(user),
            None => Principal::server(),
        };
        for s in earlier {
            let plan = self
                .plan_as(DFStatement::Statement(Box::new(s.clone())), owner.clone())
                .await?
                .with_param_values(values.clone())?;
            // Inside the call's own slot.
            let source = Source::of(&DFStatement::Statement(Box::new(s.clone())));
            let out = self
                .run_plan(plan, &source, control, Slot::Held(None), Shape::Merged)
                .await?
                .into_output();
            if let Output::Rows { mut stream, .. } = out {
                while let Some(b) = stream.next().await {
                    b?;
                }
            }
        }
        Ok(self
            .plan_as(DFStatement::Statement(Box::new(last.clone())), owner)
            .await?
            .with_param_values(values)?)
    }

    /// `DataFrame` of a procedure's result, for the table function.
    pub(crate) async fn procedure_frame(
        &mut self,
        p: &Procedure,
        bound: &HashMap<String, ScalarValue>,
    ) -> Result<DataFrame, EngineError> {
        let control = QueryControl::new(tokio_util::sync::CancellationToken::new(), None);
        let plan = self.body_plan(p, bound, &control).await?;
        Ok(DataFrame::new(self.ctx.state(), plan))
    }
}

fn call_args(args: &FunctionArguments) -> Result<Vec<FunctionArg>, EngineError> {
    match args {
        FunctionArguments::None => Ok(Vec::new()),
        FunctionArguments::List(l) => Ok(l.args.clone()),
        FunctionArguments::Subquery(_) => Err(EngineError::Syntax(
            "a procedure's arguments are values, not a subquery".into(),
        )),
    }
}
