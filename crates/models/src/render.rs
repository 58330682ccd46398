//! Jinja for models (minijinja): `config()`, `ref()`, `source()`, `this`,
//! `is_incremental()`, `var()`, `env_var()`, the project's macros and its packages'
//! (dbt's context beyond these is in [`crate::jinja_dbt`]), available in every model as
//! in dbt. A model is rendered twice: once to learn its config and references (refs render
//! as plain names, `execute` is false), then to produce the SQL that runs, with every
//! reference resolved to its table.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use minijinja::value::{Kwargs, Object, Value};
use minijinja::{Environment, Error, ErrorKind, State, UndefinedBehavior};
use parking_lot::Mutex;

use super::ModelsError;
use super::jinja_dbt::{self, Adapter, Api, Database, Namespace, PackageMacros, Registry};
use super::jinja_values;
use super::project::{ModelFile, macro_names};

/// Name of the template holding every macro.
const MACROS: &str = "__macros__";
/// Context variable holding the [`Capture`] of the render in progress.
const CAPTURE: &str = "__tidepool";

/// A `ref()` or `source()` call seen while rendering.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reference {
    /// `ref('name')` or `ref('schema', 'name')`.
    Model {
        schema: Option<String>,
        name: String,
    },
    /// `source('source', 'table')`.
    Source { source: String, table: String },
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Model {
                schema: Some(s),
                name,
            } => write!(f, "ref('{s}', '{name}')"),
            Reference::Model { schema: None, name } => write!(f, "ref('{name}')"),
            Reference::Source { source, table } => write!(f, "source('{source}', '{table}')"),
        }
    }
}

/// Turns references into `schema.table`. Built once the configs are known.
#[derive(Debug, Default)]
pub struct Resolver {
    /// model name -> (folder schema, relation) of every model with that name.
    pub models: HashMap<String, Vec<(String, String)>>,
    /// (source, table) -> relation.
    pub sources: BTreeMap<(String, String), String>,
    /// relation -> CTE name, for `ephemeral` models.
    pub ephemeral: HashMap<String, String>,
    /// A dbt project's name: `ref('<project>', 'm')` is its model `m` (dbt's package form).
    pub package: Option<String>,
}

impl Resolver {
    /// The relation `r` names, as the object `ref()` / `source()` give a template.
    pub fn relation(&self, r: &Reference) -> Result<jinja_dbt::Relation, String> {
        let text = self.resolve(r)?;
        let mut relation = jinja_dbt::Relation::parse(&text);
        if !text.contains('.') {
            relation.cte = Some(text);
        }
        Ok(relation)
    }

    pub fn resolve(&self, r: &Reference) -> Result<String, String> {
        match r {
            Reference::Model { schema, name } => {
                let found = self.models.get(name).map(Vec::as_slice).unwrap_or(&[]);
                let hits: Vec<&(String, String)> = found
                    .iter()
                    .filter(|(folder, relation)| {
                        schema.as_ref().is_none_or(|s| {
                            s == folder
                                || relation.split('.').next() == Some(s.as_str())
                                || self.package.as_ref() == Some(s)
                        })
                    })
                    .collect();
                match hits.as_slice() {
                    [one] => Ok(self
                        .ephemeral
                        .get(&one.1)
                        .cloned()
                        .unwrap_or_else(|| one.1.clone())),
                    [] => Err(format!("{r}: there is no model named {name}")),
                    many => Err(format!(
                        "{r}: {} models are named {name} ({}); write ref('<schema>', '{name}')",
                        many.len(),
                        many.iter()
                            .map(|m| m.1.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                }
            }
            Reference::Source { source, table } => self
                .sources
                .get(&(source.clone(), table.clone()))
                .cloned()
                .ok_or_else(|| {
                    let known: Vec<String> = self
                        .sources
                        .keys()
                        .map(|(s, t)| format!("{s}.{t}"))
                        .collect();
                    format!(
                        "{r}: no such source (known: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    )
                }),
        }
    }
}

/// What one render of one model saw.
#[derive(Debug)]
pub(crate) struct Capture {
    /// `None` while learning configs: references render as plain names.
    resolver: Option<Arc<Resolver>>,
    incremental: bool,
    vars: Arc<BTreeMap<String, serde_json::Value>>,
    config: Mutex<BTreeMap<String, Value>>,
    references: Mutex<Vec<Reference>>,
    /// dbt's `execute`: false while the project loads.
    execute: bool,
    database: Option<Arc<dyn Database>>,
    /// `statement` results by name, for `load_result`.
    results: Mutex<HashMap<String, Value>>,
    /// Set when the render tested `execute` or asked the lake while not executing.
    wanted_lake: Arc<AtomicBool>,
}

impl Capture {
    fn new(
        resolver: Option<Arc<Resolver>>,
        incremental: bool,
        vars: Arc<BTreeMap<String, serde_json::Value>>,
        execute: bool,
        database: Option<Arc<dyn Database>>,
    ) -> Arc<Capture> {
        Arc::new(Capture {
            resolver,
            incremental,
            vars,
            config: Mutex::new(BTreeMap::new()),
            references: Mutex::new(Vec::new()),
            execute,
            database,
            results: Mutex::new(HashMap::new()),
            wanted_lake: Arc::new(AtomicBool::new(false)),
        })
    }

    /// dbt's `execute` for this render.
    fn execute_value(&self) -> Value {
        Value::from_object(jinja_dbt::Execute {
            value: self.execute,
            consulted: self.wanted_lake.clone(),
        })
    }
}

impl Object for Capture {}

impl jinja_dbt::Session for Capture {
    fn execute(&self) -> bool {
        if !self.execute {
            self.wanted_lake.store(true, Ordering::Relaxed);
        }
        self.execute
    }

    fn database(&self) -> Option<&Arc<dyn Database>> {
        self.database.as_ref()
    }

    fn store_result(&self, name: String, result: Value) {
        self.results.lock().insert(name, result);
    }

    fn result(&self, name: &str) -> Option<Value> {
        self.results.lock().get(name).cloned()
    }
}

/// dbt's `exceptions`: `raise_compiler_error(msg)` fails the render with `msg`;
/// `warn(msg)` logs it.
#[derive(Debug)]
struct Exceptions;

impl Object for Exceptions {
    fn call_method(
        self: &Arc<Self>,
        _state: &State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let msg = args.first().map(|v| v.to_string()).unwrap_or_default();
        match method {
            "raise_compiler_error" => Err(Error::new(ErrorKind::InvalidOperation, msg)),
            "warn" => {
                tracing::warn!(target: "dbt", "{msg}");
                Ok(Value::from(""))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

/// dbt's `log(msg, info=False)`: to the log (info level with `info=True`), renders nothing.
fn log(msg: Value, info: Option<bool>, kwargs: Kwargs) -> Result<String, Error> {
    let info = match info {
        Some(i) => i,
        None => kwargs.get::<Option<bool>>("info")?.unwrap_or(false),
    };
    kwargs.assert_all_used()?;
    if info {
        tracing::info!(target: "dbt", "{msg}");
    } else {
        tracing::debug!(target: "dbt", "{msg}");
    }
    Ok(String::new())
}

/// The result of rendering a model.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    pub sql: String,
    /// `config(...)` arguments, last call wins per key.
    pub config: BTreeMap<String, serde_json::Value>,
    pub references: Vec<Reference>,
    /// The render tested `execute` (false) or asked the lake: its SQL is a placeholder
    /// until the model runs (dbt's parse), so it need not parse.
    pub wanted_lake: bool,
}

/// How a render resolves references and `is_incremental()`.
pub struct RenderOptions<'a> {
    pub resolver: Option<Arc<Resolver>>,
    pub incremental: bool,
    /// `{{ this }}`.
    pub this: (&'a str, &'a str),
    /// dbt's `execute`: true when the SQL rendered is the SQL that runs.
    pub execute: bool,
    /// The lake, for `run_query`, `statement` and `adapter.get_columns_in_relation`.
    pub database: Option<Arc<dyn Database>>,
}

impl<'a> RenderOptions<'a> {
    /// A render that resolves references with `resolver` (or not) and reaches no lake.
    pub fn new(resolver: Option<Arc<Resolver>>, this: (&'a str, &'a str)) -> Self {
        RenderOptions {
            resolver,
            incremental: false,
            this,
            execute: false,
            database: None,
        }
    }
}

/// The macros of a project: its own (by file) and its packages'.
#[derive(Debug, Default)]
pub struct Macros {
    /// The root project's name (`None`: tidepool's own layout).
    pub root: Option<String>,
    pub files: Vec<(String, String)>,
    pub packages: Vec<super::packages::Package>,
    /// `dispatch:` of dbt_project.yml: namespace -> search order.
    pub dispatch: BTreeMap<String, Vec<String>>,
}

/// The templates of a project: its models and its macros.
pub struct Templates {
    env: Environment<'static>,
    vars: Arc<BTreeMap<String, serde_json::Value>>,
    /// Macro names of the root project, imported into every model.
    macros: Vec<String>,
    registry: Arc<Registry>,
    /// dbt's `graph` once the project is loaded (empty while it loads, as at dbt's parse).
    graph: std::sync::OnceLock<Value>,
}

/// A macro file as dbt reads it: `{% test %}` blocks are macros, list and dict literals
/// assigned with `set` can be changed in place.
fn dbt_source(text: &str) -> String {
    jinja_values::mutable_literals(&jinja_dbt::test_blocks(text))
}

impl Templates {
    pub fn new(
        models: &[ModelFile],
        macro_set: &Macros,
        vars: BTreeMap<String, serde_json::Value>,
        target_schema: &str,
    ) -> Result<Templates, ModelsError> {
        let mut env = Environment::new();
        // dbt's `target`: the lake speaks PostgreSQL, so macros that dispatch on the
        // adapter take their postgres branch.
        env.add_global(
            "target",
            Value::from_serialize(serde_json::json!({
                "name": "default",
                "schema": target_schema,
                "type": "postgres",
                "database": "lake",
                "threads": 4,
            })),
        );
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        let root = macro_set.root.clone().unwrap_or_else(|| "root".to_string());
        let mut registry = Registry {
            root: root.clone(),
            packages: BTreeMap::new(),
            dispatch: macro_set.dispatch.clone(),
        };
        let macros = add_macro_template(&mut env, MACROS, &macro_set.files)?;
        registry.packages.insert(
            root.clone(),
            PackageMacros {
                template: MACROS.to_string(),
                macros: macros.iter().cloned().collect(),
            },
        );
        for p in &macro_set.packages {
            let template = format!("__package__/{}", p.name);
            let names = add_macro_template(&mut env, &template, &p.files)?;
            registry.packages.insert(
                p.name.clone(),
                PackageMacros {
                    template,
                    macros: names.into_iter().collect(),
                },
            );
        }
        let registry = Arc::new(registry);
        for name in registry.packages.keys() {
            env.add_global(
                name.clone(),
                Value::from_object(Namespace {
                    name: name.clone(),
                    registry: registry.clone(),
                }),
            );
        }
        env.add_function("config", config);
        env.add_function("ref", reference);
        env.add_function("source", source);
        env.add_function("is_incremental", is_incremental);
        env.add_function("var", var);
        env.add_function("env_var", env_var);
        env.add_function("log", log);
        env.add_function("return", jinja_dbt::return_);
        env.add_function("__macro", jinja_dbt::wrap_macro);
        env.add_function("__mutable", jinja_values::mutable);
        env.add_function("statement", jinja_dbt::statement);
        env.add_function("load_result", jinja_dbt::load_result);
        env.add_function("run_query", jinja_dbt::run_query);
        env.add_function("tojson", jinja_dbt::tojson);
        env.add_function("fromjson", jinja_dbt::fromjson);
        env.add_function("should_store_failures", || false);
        env.add_function("should_full_refresh", || false);
        env.add_global("flags", jinja_dbt::flags());
        env.add_global("exceptions", Value::from_object(Exceptions));
        env.add_global(
            "adapter",
            Value::from_object(Adapter {
                registry: registry.clone(),
            }),
        );
        env.add_global("api", Value::from_object(Api));
        // On the model's first line, so line numbers in errors stay the file's.
        let import = import_line(&macros);
        for m in models {
            env.add_template_owned(
                m.path.clone(),
                format!("{import}{}", jinja_values::mutable_literals(&m.source)),
            )
            .map_err(|e| render_error(&m.path, &e))?;
        }
        Ok(Templates {
            env,
            vars: Arc::new(vars),
            macros,
            registry,
            graph: std::sync::OnceLock::new(),
        })
    }

    /// Sets dbt's `graph` ([`crate::manifest::graph`]) for the renders of runs; once.
    pub fn set_graph(&self, graph: &serde_json::Value) {
        let _ = self.graph.set(Value::from_serialize(graph));
    }

    /// dbt's `graph`: the project's nodes once loaded, else no nodes.
    fn graph(&self) -> Value {
        self.graph.get().cloned().unwrap_or_else(|| {
            Value::from_serialize(serde_json::json!({
                "nodes": {}, "sources": {}, "exposures": {}, "metrics": {},
                "groups": {}, "semantic_models": {}, "saved_queries": {},
            }))
        })
    }

    /// The context of one render: the capture, `this`, `execute`, `graph`, and `extra`.
    fn context(
        &self,
        capture: &Arc<Capture>,
        this: Option<(&str, &str)>,
        extra: BTreeMap<String, Value>,
    ) -> Value {
        let mut ctx: BTreeMap<String, Value> = extra;
        ctx.insert(CAPTURE.into(), Value::from_dyn_object(capture.clone()));
        ctx.insert(
            "__session".into(),
            Value::from_object(jinja_dbt::SessionRef(capture.clone())),
        );
        if let Some((schema, name)) = this {
            ctx.insert("this".into(), jinja_dbt::Relation::value(schema, name));
        }
        ctx.insert("execute".into(), capture.execute_value());
        ctx.insert("graph".into(), self.graph());
        Value::from(ctx)
    }

    /// What a render with `options` sees and collects.
    fn capture(&self, options: &RenderOptions<'_>) -> Arc<Capture> {
        Capture::new(
            options.resolver.clone(),
            options.incremental,
            self.vars.clone(),
            options.execute,
            options.database.clone(),
        )
    }

    /// Renders `text` (a hook's SQL, say) as a model's SQL renders, with `extra` in its
    /// context (`results` and `schemas` at `on-run-end`); `name` names it in errors.
    pub fn render_text(
        &self,
        name: &str,
        text: &str,
        options: &RenderOptions<'_>,
        extra: BTreeMap<String, Value>,
    ) -> Result<String, ModelsError> {
        let capture = self.capture(options);
        let source = format!(
            "{}{}",
            import_line(&self.macros),
            jinja_values::mutable_literals(text)
        );
        let ctx = self.context(&capture, Some(options.this), extra);
        self.env
            .render_named_str(name, &source, ctx)
            .map_err(|e| render_error(name, &e))
    }

    /// Names of the project's macros.
    pub fn macros(&self) -> &[String] {
        &self.macros
    }

    /// Whether `package` (the root project's name or a package's) has macro `name`.
    pub fn has_macro(&self, package: Option<&str>, name: &str) -> bool {
        let package = package.unwrap_or(&self.registry.root);
        self.registry
            .packages
            .get(package)
            .is_some_and(|p| p.macros.contains(name))
    }

    /// The packages (not the root project) that have a macro `name`.
    pub fn packages_with(&self, name: &str) -> Vec<String> {
        self.registry
            .packages
            .iter()
            .filter(|(p, m)| **p != self.registry.root && m.macros.contains(name))
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// The project's macro `name` called with `args`, rendered; `None` when the project
    /// has no such macro (dbt's own then applies, as for `generate_schema_name`).
    pub fn call_macro(
        &self,
        name: &str,
        args: &[serde_json::Value],
    ) -> Result<Option<String>, ModelsError> {
        if !self.macros.iter().any(|m| m == name) {
            return Ok(None);
        }
        let args: Vec<Value> = args.iter().map(Value::from_serialize).collect();
        self.call_package_macro(None, name, args, None)
            .map(|v| Some(v.to_string().trim().to_string()))
    }

    /// Calls macro `name` of `package` (the root project when `None`) with `args`, as a
    /// generic test or a hook does; references resolve with `resolver`.
    pub fn call_package_macro(
        &self,
        package: Option<&str>,
        name: &str,
        args: Vec<Value>,
        resolver: Option<Arc<Resolver>>,
    ) -> Result<Value, ModelsError> {
        let package = package.unwrap_or(&self.registry.root).to_string();
        let capture = Capture::new(resolver, false, self.vars.clone(), true, None);
        let ctx = self.context(&capture, None, BTreeMap::new());
        let template = "__call__";
        let t = self
            .env
            .template_from_named_str(template, "")
            .map_err(|e| render_error(template, &e))?;
        let captured = t
            .render_captured(ctx)
            .map_err(|e| render_error(template, &e))?;
        jinja_dbt::call_in(captured.state(), &self.registry, &package, name, &args)
            .map_err(|e| render_error(&format!("macro {package}.{name}"), &e))
    }

    /// Renders the model at `path`.
    pub fn render(&self, path: &str, options: &RenderOptions<'_>) -> Result<Rendered, ModelsError> {
        let capture = self.capture(options);
        let template = self
            .env
            .get_template(path)
            .map_err(|e| render_error(path, &e))?;
        let ctx = self.context(&capture, Some(options.this), BTreeMap::new());
        let sql = template.render(ctx).map_err(|e| render_error(path, &e))?;
        let config = capture
            .config
            .lock()
            .iter()
            .map(|(k, v)| {
                let json = serde_json::to_value(v).unwrap_or(serde_json::Value::Null);
                (k.clone(), json)
            })
            .collect();
        let references = capture.references.lock().clone();
        Ok(Rendered {
            sql,
            config,
            references,
            wanted_lake: capture.wanted_lake.load(Ordering::Relaxed),
        })
    }
}

/// Adds the macro `files` as template `name`, each macro wrapped so that it can
/// `return()`; the macros' names.
fn add_macro_template(
    env: &mut Environment<'static>,
    name: &str,
    files: &[(String, String)],
) -> Result<Vec<String>, ModelsError> {
    let mut names = Vec::new();
    let mut all = String::new();
    for (path, text) in files {
        let text = dbt_source(text);
        names.extend(macro_names(&text));
        // Each file alone first, so a syntax error names its file.
        env.add_template_owned(path.clone(), text.clone())
            .map_err(|e| render_error(path, &e))?;
        all.push_str(&text);
        all.push('\n');
    }
    all.push_str(&jinja_dbt::wrap_lines(&names));
    env.add_template_owned(name.to_string(), all)
        .map_err(|e| render_error(name, &e))?;
    Ok(names)
}

/// The line importing the project's `macros` into a template (empty without macros).
fn import_line(macros: &[String]) -> String {
    if macros.is_empty() {
        String::new()
    } else {
        format!("{{% from \"{MACROS}\" import {} %}}", macros.join(", "))
    }
}

fn render_error(path: &str, e: &Error) -> ModelsError {
    if jinja_dbt::is_return(e) {
        return ModelsError::Render(format!("{path}: return() is only allowed inside a macro"));
    }
    let mut msg = match e.line() {
        Some(line) => format!("{path}:{line}: {}", e.kind()),
        None => format!("{path}: {}", e.kind()),
    };
    if let Some(detail) = e.detail() {
        msg.push_str(": ");
        msg.push_str(detail);
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(&format!(" ({s})"));
        source = s.source();
    }
    ModelsError::Render(msg)
}

fn capture(state: &State) -> Result<Arc<Capture>, Error> {
    state
        .lookup(CAPTURE)
        .and_then(|v| v.downcast_object::<Capture>())
        .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "not rendering a model"))
}

fn config(state: &State, kwargs: Kwargs) -> Result<String, Error> {
    let c = capture(state)?;
    let mut config = c.config.lock();
    for key in kwargs.args() {
        let v: Value = kwargs.get(key)?;
        config.insert(key.to_string(), v);
    }
    kwargs.assert_all_used()?;
    Ok(String::new())
}

fn reference(state: &State, first: String, second: Option<String>) -> Result<Value, Error> {
    let r = match second {
        Some(name) => Reference::Model {
            schema: Some(first.to_lowercase()),
            name: name.to_lowercase(),
        },
        None => Reference::Model {
            schema: None,
            name: first.to_lowercase(),
        },
    };
    resolve(state, r)
}

fn source(state: &State, source: String, table: String) -> Result<Value, Error> {
    resolve(
        state,
        Reference::Source {
            source: source.to_lowercase(),
            table: table.to_lowercase(),
        },
    )
}

fn resolve(state: &State, r: Reference) -> Result<Value, Error> {
    let c = capture(state)?;
    c.references.lock().push(r.clone());
    let relation = match &c.resolver {
        None => jinja_dbt::Relation::parse(&match r {
            Reference::Model {
                schema: Some(s),
                name,
            } => format!("{s}.{name}"),
            Reference::Model { name, .. } => name,
            Reference::Source { source, table } => format!("{source}.{table}"),
        }),
        Some(resolver) => resolver
            .relation(&r)
            .map_err(|m| Error::new(ErrorKind::InvalidOperation, m))?,
    };
    Ok(Value::from_object(relation))
}

fn is_incremental(state: &State) -> Result<bool, Error> {
    Ok(capture(state)?.incremental)
}

fn var(state: &State, name: String, default: Option<Value>) -> Result<Value, Error> {
    let c = capture(state)?;
    match (c.vars.get(&name), default) {
        (Some(v), _) => Ok(Value::from_serialize(v)),
        (None, Some(d)) => Ok(d),
        (None, None) => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "var('{name}') is not set: pass --vars '{{\"{name}\": ...}}' or give a default"
            ),
        )),
    }
}

fn env_var(name: String, default: Option<String>) -> Result<String, Error> {
    match (std::env::var(&name), default) {
        (Ok(v), _) => Ok(v),
        (Err(_), Some(d)) => Ok(d),
        (Err(_), None) => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("env_var('{name}') is not set and has no default"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(sql: &str) -> Result<Rendered, ModelsError> {
        let model = ModelFile {
            schema: "gold".into(),
            name: "m".into(),
            path: "sql/gold/m.sql".into(),
            source: sql.into(),
            folders: Vec::new(),
        };
        let t = Templates::new(&[model], &Macros::default(), BTreeMap::new(), "analytics")?;
        let opts = RenderOptions::new(None, ("gold", "m"));
        t.render("sql/gold/m.sql", &opts)
    }

    fn project(model: &str, macros: &str, dir: &std::path::Path) -> Templates {
        let m = ModelFile {
            schema: "gold".into(),
            name: "m".into(),
            path: "m.sql".into(),
            source: model.into(),
            folders: Vec::new(),
        };
        let set = Macros {
            root: Some("shop".into()),
            files: vec![("macros/m.sql".into(), macros.into())],
            packages: crate::packages::load(dir).unwrap(),
            dispatch: BTreeMap::new(),
        };
        Templates::new(&[m], &set, BTreeMap::new(), "analytics").unwrap()
    }

    fn run(t: &Templates) -> String {
        t.render("m.sql", &RenderOptions::new(None, ("gold", "m")))
            .unwrap()
            .sql
    }

    #[test]
    fn macros_return_values_build_lists_and_dispatch() {
        let dir = tempfile::tempdir().unwrap();
        let macros = "{% macro cols() %}{% set out = [] %}{% do out.append('a') %}{% do out.extend(['b']) %}\
             {{ return(out) }}{% endmacro %}\
             {% macro n_cols() %}{{ return(cols() | length) }}{% endmacro %}\
             {% macro hashed(x) %}{{ return(adapter.dispatch('hashed')(x)) }}{% endmacro %}\
             {% macro default__hashed(x) %}h({{ x }}){% endmacro %}\
             {% test positive(model, column_name) %}select * from {{ model }} where {{ column_name }} <= 0{% endtest %}";
        let t = project(
            "{% set d = {} %}{% do d.update({'k': 1}) %}{{ cols() | join(',') }}|{{ n_cols() }}|{{ hashed('y') }}|{{ d['k'] }}|{{ shop.n_cols() }}",
            macros,
            dir.path(),
        );
        assert_eq!(run(&t).trim(), "a,b|2|h(y)|1|2");
        assert!(t.has_macro(None, "test_positive"));
        let t = project(
            "{{ dbt_utils.generate_surrogate_key(['a', 'b']) }}|{{ dbt.type_string() }}|{{ ref('x').identifier }}",
            "",
            dir.path(),
        );
        assert_eq!(
            run(&t).trim(),
            "md5(cast(coalesce(cast(a as text), '_dbt_utils_surrogate_key_null_') || '-' || \
             coalesce(cast(b as text), '_dbt_utils_surrogate_key_null_') as text))|text|x"
        );
        let err = t
            .call_package_macro(Some("dbt_utils"), "nope", Vec::new(), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("dbt_utils has no macro named nope"), "{err}");
    }

    /// The real dbt_utils, when a checkout is at `$TIDEPOOL_DBT_UTILS` (CI has no copy).
    #[test]
    fn real_dbt_utils_renders_when_installed() {
        let Ok(src) = std::env::var("TIDEPOOL_DBT_UTILS") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("dbt_packages");
        std::fs::create_dir_all(&dest).unwrap();
        std::os::unix::fs::symlink(src, dest.join("dbt_utils")).unwrap();
        let t = project(
            "{{ dbt_utils.generate_surrogate_key(['a', 'b']) }}|{{ dbt_utils.star(ref('x')) }}|{{ dbt_utils.safe_divide('a', 'b') }}",
            "",
            dir.path(),
        );
        assert_eq!(
            run(&t).split_whitespace().collect::<Vec<_>>().join(" "),
            "md5(cast(coalesce(cast(a as text), '_dbt_utils_surrogate_key_null_') || '-' || \
             coalesce(cast(b as text), '_dbt_utils_surrogate_key_null_') as text))|*| ( a ) / nullif( ( b ), 0)"
        );
    }

    #[test]
    fn dbt_log_exceptions_and_target_render() {
        let r = render(
            "{{ log('building', info=True) }}{{ log('quiet') }}select '{{ target.schema }}', '{{ target.type }}'\n\
             {% if false %}{{ exceptions.raise_compiler_error('never') }}{% endif %}",
        )
        .unwrap();
        assert_eq!(r.sql.trim(), "select 'analytics', 'postgres'");
        let err = render("{{ exceptions.raise_compiler_error('the model needs var x') }}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("the model needs var x"), "{err}");
        assert!(err.starts_with("sql/gold/m.sql:1"), "{err}");
    }
}
