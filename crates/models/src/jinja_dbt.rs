//! dbt's Jinja context beyond `ref`/`source`/`config`: macros that `return()` values,
//! packages as namespaces (`dbt_utils.star(...)`, `dbt.hash(...)`), `adapter.dispatch`
//! with dbt's search order, relations as objects (`ref('x').schema`, `is mapping`),
//! `adapter.get_columns_in_relation`, `statement` blocks, `load_result` and `run_query`
//! against the lake (only while a model runs: `execute` is false while a project loads,
//! as in dbt's parse), `api.Relation`, `should_store_failures`, `flags`, `tojson`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr, Value};
use minijinja::{Error, ErrorKind, State};

use crate::jinja_values::{Dict, Table};

/// Detail of the error `return()` raises to leave a macro.
const RETURN_MARK: &str = "__dbt_return__";

thread_local! {
    /// The value of the `return()` on its way to the macro it leaves.
    static RETURNED: std::cell::RefCell<Option<Value>> = const { std::cell::RefCell::new(None) };
}

/// dbt's `return(value)`: the macro it is called in gives `value` to its caller.
pub fn return_(value: Option<Value>) -> Result<Value, Error> {
    RETURNED.with(|r| *r.borrow_mut() = Some(value.unwrap_or(Value::from(()))));
    Err(Error::new(ErrorKind::InvalidOperation, RETURN_MARK))
}

/// Whether `e` is a `return()` that no macro caught: it was used outside one.
pub fn is_return(e: &Error) -> bool {
    e.kind() == ErrorKind::InvalidOperation && e.detail() == Some(RETURN_MARK)
}

/// A macro that may `return()`: calls the macro and hands back its returned value, or
/// its rendered text when it returns nothing.
#[derive(Debug)]
pub struct MacroFn(Value);

impl Object for MacroFn {
    fn call(self: &Arc<Self>, state: &State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        match self.0.call(state, args) {
            Err(e) if is_return(&e) => RETURNED.with(|r| r.borrow_mut().take()).ok_or(e),
            other => other,
        }
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.0
            .get_attr(key.as_str()?)
            .ok()
            .filter(|v| !v.is_undefined())
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// `__macro(m)`: `m` wrapped as a [`MacroFn`] (appended to every macro template).
pub fn wrap_macro(m: Value) -> Value {
    if m.as_object()
        .is_some_and(|o| o.downcast_ref::<MacroFn>().is_some())
    {
        return m;
    }
    Value::from_object(MacroFn(m))
}

/// The `{% set name = __macro(name) %}` lines that make each macro of a template a
/// [`MacroFn`] for every caller, the template's own macros included.
pub fn wrap_lines(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("{{% set {n} = __macro({n}) %}}"))
        .collect()
}

/// One package's macros: the template holding them and their names.
#[derive(Debug, Clone)]
pub struct PackageMacros {
    pub template: String,
    pub macros: BTreeSet<String>,
}

/// Every macro namespace of a project: the root project, its packages and dbt's own.
#[derive(Debug, Default)]
pub struct Registry {
    /// The root project's name (its macros are also under this namespace).
    pub root: String,
    pub packages: BTreeMap<String, PackageMacros>,
    /// `dispatch:` of dbt_project.yml: namespace -> search order.
    pub dispatch: BTreeMap<String, Vec<String>>,
}

/// dbt's own namespace.
pub const DBT: &str = "dbt";

impl Registry {
    fn has(&self, package: &str, name: &str) -> bool {
        self.packages
            .get(package)
            .is_some_and(|p| p.macros.contains(name))
    }

    /// Where `adapter.dispatch(name, namespace)` finds its implementation.
    fn dispatch_target(&self, name: &str, namespace: Option<&str>) -> Option<(String, String)> {
        let order: Vec<String> = match namespace {
            None => vec![self.root.clone(), DBT.to_string()],
            Some(ns) => match self.dispatch.get(ns) {
                Some(order) => order.clone(),
                None if ns == DBT => vec![self.root.clone(), DBT.to_string()],
                None => vec![ns.to_string()],
            },
        };
        for package in &order {
            for candidate in [format!("postgres__{name}"), format!("default__{name}")] {
                if self.has(package, &candidate) {
                    return Some((package.clone(), candidate));
                }
            }
        }
        // dbt's own cross-database macros are defined once, under their plain names.
        order
            .iter()
            .find(|p| *p == DBT && self.has(DBT, name))
            .map(|p| (p.clone(), name.to_string()))
    }
}

/// The render-scoped values a macro of another template must see too.
const FORWARDED: &[&str] = &["__tidepool", "__session", "this", "execute", "model"];

/// Calls `package`'s macro `name`, evaluating the package's template with the caller's
/// render-scoped values.
pub fn call_in(
    state: &State<'_, '_>,
    registry: &Registry,
    package: &str,
    name: &str,
    args: &[Value],
) -> Result<Value, Error> {
    let p = registry.packages.get(package).ok_or_else(|| {
        Error::new(
            ErrorKind::UnknownFunction,
            format!("no macro namespace {package}"),
        )
    })?;
    if !p.macros.contains(name) {
        return Err(Error::new(
            ErrorKind::UnknownFunction,
            format!("{package} has no macro named {name}"),
        ));
    }
    let ctx: BTreeMap<&str, Value> = FORWARDED
        .iter()
        .filter_map(|k| state.lookup(k).map(|v| (*k, v)))
        .collect();
    let template = state.env().get_template(&p.template)?;
    let captured = template.render_captured(ctx)?;
    let inner = captured.state();
    let f = inner.lookup(name).ok_or_else(|| {
        Error::new(
            ErrorKind::UnknownFunction,
            format!("{package}.{name} is not defined"),
        )
    })?;
    f.call(inner, args)
}

/// A package as a namespace: `dbt_utils.star(...)`.
#[derive(Debug)]
pub struct Namespace {
    pub name: String,
    pub registry: Arc<Registry>,
}

impl Object for Namespace {
    fn call_method(
        self: &Arc<Self>,
        state: &State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        call_in(state, &self.registry, &self.name, method, args)
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let name = key.as_str()?;
        self.registry.has(&self.name, name).then(|| {
            Value::from_object(Bound {
                package: self.name.clone(),
                name: name.to_string(),
                registry: self.registry.clone(),
            })
        })
    }
}

/// A macro of a package taken as a value (`adapter.dispatch(...)` gives one).
#[derive(Debug)]
struct Bound {
    package: String,
    name: String,
    registry: Arc<Registry>,
}

impl Object for Bound {
    fn call(self: &Arc<Self>, state: &State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        call_in(state, &self.registry, &self.package, &self.name, args)
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<macro {}.{}>", self.package, self.name)
    }
}

/// A table or view as dbt's macros see it: renders as `schema.name`, reads as a mapping
/// (`relation.schema`, `.identifier`, `.is_cte`, `.metadata.type`).
#[derive(Debug, Clone)]
pub struct Relation {
    pub schema: String,
    pub name: String,
    /// Set for an ephemeral model: the CTE it is inlined as.
    pub cte: Option<String>,
}

impl Relation {
    pub fn value(schema: &str, name: &str) -> Value {
        Value::from_object(Relation {
            schema: schema.to_string(),
            name: name.to_string(),
            cte: None,
        })
    }

    /// A relation from `schema.name` text (`name` alone: no schema).
    pub fn parse(text: &str) -> Relation {
        match text.split_once('.') {
            Some((s, n)) => Relation {
                schema: s.to_string(),
                name: n.to_string(),
                cte: None,
            },
            None => Relation {
                schema: String::new(),
                name: text.to_string(),
                cte: None,
            },
        }
    }

    /// `schema` and `name` of a relation value or of `schema.name` text.
    pub fn of(v: &Value) -> Option<Relation> {
        if let Some(r) = v.as_object().and_then(|o| o.downcast_ref::<Relation>()) {
            return Some(r.clone());
        }
        v.as_str().map(Relation::parse)
    }
}

const RELATION_KEYS: &[&str] = &[
    "database",
    "schema",
    "identifier",
    "name",
    "table",
    "is_cte",
    "type",
    "metadata",
];

impl Object for Relation {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(match key.as_str()? {
            "database" => Value::from("lake"),
            "schema" => Value::from(self.schema.clone()),
            "identifier" | "name" | "table" => {
                Value::from(self.cte.clone().unwrap_or_else(|| self.name.clone()))
            }
            "is_cte" => Value::from(self.cte.is_some()),
            "is_table" => Value::from(self.cte.is_none()),
            "is_view" => Value::from(false),
            "type" => Value::from(if self.cte.is_some() { "cte" } else { "table" }),
            "metadata" => Dict::value(vec![(Value::from("type"), Value::from("PostgresRelation"))]),
            _ => return None,
        })
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(RELATION_KEYS)
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State<'_, '_>,
        method: &str,
        _args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            // Relations here are always schema-qualified, unquoted names.
            "include" | "incorporate" | "quote" | "replace_path" => {
                Ok(Value::from_dyn_object(self.clone()))
            }
            "render" => Ok(Value::from(self.to_string())),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.cte, self.schema.is_empty()) {
            (Some(cte), _) => write!(f, "{cte}"),
            (None, true) => write!(f, "{}", self.name),
            (None, false) => write!(f, "{}.{}", self.schema, self.name),
        }
    }
}

/// What a query against the lake answered, for `run_query` and `statement`.
#[derive(Debug, Clone, Default)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
}

/// The lake as a render sees it while a model runs.
pub trait Database: Send + Sync + fmt::Debug {
    /// Runs `sql`; the rows it returns.
    fn query(&self, sql: &str) -> Result<QueryResult, String>;
    /// Columns (name, type) of `schema.name`; `None` when there is no such table.
    fn columns(&self, schema: &str, name: &str) -> Result<Option<Vec<(String, String)>>, String>;
}

/// A column from `adapter.get_columns_in_relation`.
#[derive(Debug)]
struct ColumnInfo {
    name: String,
    data_type: String,
}

impl Object for ColumnInfo {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(match key.as_str()? {
            "name" | "column" => Value::from(self.name.clone()),
            "quoted" => Value::from(format!("\"{}\"", self.name.replace('"', "\"\""))),
            "data_type" | "dtype" => Value::from(self.data_type.clone()),
            _ => return None,
        })
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State<'_, '_>,
        method: &str,
        _args: &[Value],
    ) -> Result<Value, Error> {
        let t = self.data_type.to_lowercase();
        let is = |names: &[&str]| names.iter().any(|n| t.starts_with(n));
        let integer = is(&["smallint", "integer", "bigint", "int"]);
        let float = is(&["real", "double", "float"]);
        Ok(Value::from(match method {
            "is_string" => is(&["text", "character", "varchar", "char"]),
            "is_integer" => integer,
            "is_float" => float,
            "is_numeric" => is(&["numeric", "decimal"]),
            "is_number" => integer || float || is(&["numeric", "decimal"]),
            _ => return Err(Error::from(ErrorKind::UnknownMethod)),
        }))
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<Column {} ({})>", self.name, self.data_type)
    }
}

/// dbt's `execute`: true or false, and a note when a render tests it while false (the
/// SQL rendered then is a placeholder, not what runs).
#[derive(Debug)]
pub struct Execute {
    pub value: bool,
    pub consulted: Arc<std::sync::atomic::AtomicBool>,
}

impl Object for Execute {
    fn is_true(self: &Arc<Self>) -> bool {
        if !self.value {
            self.consulted
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        self.value
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", if self.value { "True" } else { "False" })
    }
}

/// What a render needs from the running model to reach the lake.
pub trait Session: fmt::Debug {
    /// dbt's `execute`; when false, notes that the render wanted the lake.
    fn execute(&self) -> bool;
    fn database(&self) -> Option<&Arc<dyn Database>>;
    fn store_result(&self, name: String, result: Value);
    fn result(&self, name: &str) -> Option<Value>;
}

/// dbt's `adapter`.
#[derive(Debug)]
pub struct Adapter {
    pub registry: Arc<Registry>,
}

impl Object for Adapter {
    fn call_method(
        self: &Arc<Self>,
        state: &State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let (args, kwargs) = split_kwargs(args);
        let arg = |i: usize, name: &str| -> Option<Value> {
            args.get(i)
                .cloned()
                .or_else(|| kwargs.as_ref().and_then(|k| k.get::<Value>(name).ok()))
                .filter(|v| !v.is_undefined() && !v.is_none())
        };
        match method {
            "dispatch" => {
                let name = arg(0, "macro_name")
                    .and_then(|v| v.as_str().map(str::to_string))
                    .ok_or_else(|| Error::from(ErrorKind::MissingArgument))?;
                let namespace =
                    arg(1, "macro_namespace").and_then(|v| v.as_str().map(str::to_string));
                let (package, found) = self
                    .registry
                    .dispatch_target(&name, namespace.as_deref())
                    .ok_or_else(|| {
                    Error::new(
                        ErrorKind::UnknownFunction,
                        format!(
                            "adapter.dispatch: no postgres__{name} or default__{name} in {}",
                            namespace.as_deref().unwrap_or("the project")
                        ),
                    )
                })?;
                Ok(Value::from_object(Bound {
                    package,
                    name: found,
                    registry: self.registry.clone(),
                }))
            }
            "quote" => {
                let s = arg(0, "identifier")
                    .map(|v| v.to_string())
                    .unwrap_or_default();
                Ok(Value::from(format!("\"{}\"", s.replace('"', "\"\""))))
            }
            "type" => Ok(Value::from("postgres")),
            "get_columns_in_relation" => {
                let r = arg(0, "relation")
                    .and_then(|v| Relation::of(&v))
                    .ok_or_else(|| Error::from(ErrorKind::MissingArgument))?;
                let columns = with_session(state, |s| match (s.execute(), s.database()) {
                    (true, Some(db)) => db
                        .columns(&r.schema, &r.name)
                        .map(Option::unwrap_or_default)
                        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e)),
                    _ => Ok(Vec::new()),
                })?;
                Ok(Value::from(
                    columns
                        .into_iter()
                        .map(|(name, data_type)| Value::from_object(ColumnInfo { name, data_type }))
                        .collect::<Vec<_>>(),
                ))
            }
            "get_relation" | "already_exists" => {
                let (schema, name) = if method == "get_relation" {
                    (arg(1, "schema"), arg(2, "identifier"))
                } else {
                    (arg(0, "schema"), arg(1, "table"))
                };
                let (schema, name) = (
                    schema.map(|v| v.to_string()).unwrap_or_default(),
                    name.map(|v| v.to_string()).unwrap_or_default(),
                );
                let exists = with_session(state, |s| match (s.execute(), s.database()) {
                    (true, Some(db)) => db
                        .columns(&schema, &name)
                        .map(|c| c.is_some())
                        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e)),
                    _ => Ok(false),
                })?;
                Ok(match (method, exists) {
                    ("already_exists", e) => Value::from(e),
                    (_, true) => Relation::value(&schema, &name),
                    (_, false) => Value::from(()),
                })
            }
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("adapter.{method} is not available in tidepool"),
            )),
        }
    }
}

fn split_kwargs(args: &[Value]) -> (&[Value], Option<Kwargs>) {
    match args.last().and_then(|v| Kwargs::try_from(v.clone()).ok()) {
        Some(k) => (&args[..args.len() - 1], Some(k)),
        None => (args, None),
    }
}

/// The session of the render in progress, as the context's `__session`.
#[derive(Debug)]
pub struct SessionRef(pub Arc<dyn Session + Send + Sync>);

impl Object for SessionRef {}

/// Runs `f` with the session of the render in progress.
pub fn with_session<T>(
    state: &State<'_, '_>,
    f: impl FnOnce(&dyn Session) -> Result<T, Error>,
) -> Result<T, Error> {
    let v = state
        .lookup("__session")
        .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "not rendering a model"))?;
    let session = v
        .downcast_object_ref::<SessionRef>()
        .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "not rendering a model"))?;
    f(session.0.as_ref())
}

/// Runs `sql` for `statement` / `run_query`: `None` when not executing (parse).
fn run(state: &State<'_, '_>, sql: &str) -> Result<Option<Value>, Error> {
    with_session(state, |s| {
        if !s.execute() {
            return Ok(None);
        }
        let db = s.database().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidOperation,
                "run_query and statement blocks reach the lake only while a model runs, \
                 not in tests or while the project loads",
            )
        })?;
        let result = db
            .query(sql)
            .map_err(|e| Error::new(ErrorKind::InvalidOperation, e))?;
        let rows: Vec<Vec<Value>> = result
            .rows
            .iter()
            .map(|r| r.iter().map(Value::from_serialize).collect())
            .collect();
        Ok(Some(Value::from_object(Table {
            columns: result.columns,
            rows,
        })))
    })
}

/// `{% call statement('name', fetch_result=True) %} sql {% endcall %}`.
pub fn statement(state: &State, name: Option<String>, kwargs: Kwargs) -> Result<String, Error> {
    let caller: Value = kwargs.get("caller")?;
    let sql = caller.call(state, &[])?.to_string();
    let Some(table) = run(state, &sql)? else {
        return Ok(String::new());
    };
    if let Some(name) = name {
        let data: Vec<Value> = table
            .get_attr("rows")?
            .try_iter()?
            .map(|row| {
                Value::from(
                    row.try_iter()
                        .map(Iterator::collect::<Vec<_>>)
                        .unwrap_or_default(),
                )
            })
            .collect();
        let n = data.len();
        let result = Dict::value(vec![
            (Value::from("data"), Value::from(data)),
            (Value::from("table"), table),
            (
                Value::from("response"),
                Dict::value(vec![
                    (Value::from("code"), Value::from("SELECT")),
                    (Value::from("rows_affected"), Value::from(n)),
                ]),
            ),
        ]);
        with_session(state, |s| {
            s.store_result(name, result);
            Ok(())
        })?;
    }
    Ok(String::new())
}

/// `load_result('name')`: what the statement of that name returned, or none.
pub fn load_result(state: &State, name: String) -> Result<Value, Error> {
    with_session(state, |s| Ok(s.result(&name).unwrap_or(Value::from(()))))
}

/// `run_query(sql)`: the rows as an agate-like table; none while not executing.
pub fn run_query(state: &State, sql: Value) -> Result<Value, Error> {
    Ok(run(state, &sql.to_string())?.unwrap_or(Value::from(())))
}

/// dbt's `api`: `api.Relation.create(...)`, `api.Relation.add_ephemeral_prefix(name)`.
#[derive(Debug)]
pub struct Api;

impl Object for Api {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        (key.as_str()? == "Relation").then(|| Value::from_object(RelationApi))
    }
}

#[derive(Debug)]
struct RelationApi;

impl Object for RelationApi {
    fn call_method(
        self: &Arc<Self>,
        _state: &State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let (args, kwargs) = split_kwargs(args);
        match method {
            "add_ephemeral_prefix" => Ok(Value::from(format!(
                "__dbt__cte__{}",
                args.first().map(|v| v.to_string()).unwrap_or_default()
            ))),
            "create" => {
                let get = |k: &str| -> String {
                    kwargs
                        .as_ref()
                        .and_then(|kw| kw.get::<Option<String>>(k).ok().flatten())
                        .unwrap_or_default()
                };
                Ok(Relation::value(&get("schema"), &get("identifier")))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

/// `tojson(v)`.
pub fn tojson(v: Value) -> Result<String, Error> {
    serde_json::to_string(&v).map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))
}

/// `fromjson(text)`.
pub fn fromjson(text: String) -> Result<Value, Error> {
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    Ok(Value::from_serialize(v))
}

/// dbt's `flags`, as `run` sets them.
pub fn flags() -> Value {
    Value::from_serialize(serde_json::json!({
        "WHICH": "run",
        "FULL_REFRESH": false,
        "STORE_FAILURES": false,
        "WARN_ERROR": false,
    }))
}

/// Rewrites dbt's `{% test name(...) %}` ... `{% endtest %}` blocks to macros named
/// `test_name`, as dbt compiles them.
pub fn test_blocks(text: &str) -> String {
    crate::jinja_values::rewrite_tags(text, |inner| {
        let lead = inner.len() - inner.trim_start_matches(['-', '+']).len();
        let body = inner[lead..].trim_start();
        if let Some(after) = body.strip_prefix("test")
            && after.starts_with(char::is_whitespace)
        {
            return Some(format!(
                "{{%{} macro test_{}%}}",
                &inner[..lead],
                after.trim_start()
            ));
        }
        (body.trim_end().trim_end_matches(['-', '+']).trim_end() == "endtest")
            .then(|| format!("{{%{}%}}", inner.replacen("endtest", "endmacro", 1)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_blocks_become_macros() {
        assert_eq!(
            test_blocks("{% test positive(model, column_name) %}x{%- endtest -%}{% if a %}"),
            "{% macro test_positive(model, column_name) %}x{%- endmacro -%}{% if a %}"
        );
        assert_eq!(
            test_blocks("{%- test  t(model) -%}{% endtest %}"),
            "{%- macro test_t(model) -%}{% endmacro %}"
        );
    }
}
