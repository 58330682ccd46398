//! Jinja for models (minijinja): `config()`, `ref()`, `source()`, `this`,
//! `is_incremental()`, `var()`, `env_var()` and the project's macros, available in every
//! model as in dbt. A model is rendered twice: once to learn its config and references
//! (refs render as plain names), then to produce the SQL that runs, with every reference
//! resolved to its table.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use minijinja::value::{Kwargs, Object, Value};
use minijinja::{Environment, Error, ErrorKind, State, UndefinedBehavior};
use parking_lot::Mutex;

use super::ModelsError;
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
struct Capture {
    /// `None` while learning configs: references render as plain names.
    resolver: Option<Arc<Resolver>>,
    incremental: bool,
    vars: Arc<BTreeMap<String, serde_json::Value>>,
    config: Mutex<BTreeMap<String, Value>>,
    references: Mutex<Vec<Reference>>,
}

impl Object for Capture {}

/// `{{ this }}`: renders as `schema.name`, with `.schema`, `.name`, `.identifier`.
#[derive(Debug)]
struct Relation {
    schema: String,
    name: String,
}

impl Object for Relation {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "schema" => Some(Value::from(self.schema.clone())),
            "name" | "identifier" | "table" => Some(Value::from(self.name.clone())),
            _ => None,
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
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
}

/// How a render resolves references and `is_incremental()`.
pub struct RenderOptions<'a> {
    pub resolver: Option<Arc<Resolver>>,
    pub incremental: bool,
    /// `{{ this }}`.
    pub this: (&'a str, &'a str),
}

/// The templates of a project: its models and its macros.
pub struct Templates {
    env: Environment<'static>,
    vars: Arc<BTreeMap<String, serde_json::Value>>,
    /// Macro names, imported into every model.
    macros: Vec<String>,
}

impl Templates {
    pub fn new(
        models: &[ModelFile],
        macro_files: &[(String, String)],
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
        let mut macros = Vec::new();
        let mut all = String::new();
        for (path, text) in macro_files {
            macros.extend(macro_names(text));
            all.push_str(text);
            all.push('\n');
            // Each file alone first, so a syntax error names its file.
            env.add_template_owned(path.clone(), text.clone())
                .map_err(|e| render_error(path, &e))?;
        }
        env.add_template_owned(MACROS, all)
            .map_err(|e| render_error("macros", &e))?;
        env.add_function("config", config);
        env.add_function("ref", reference);
        env.add_function("source", source);
        env.add_function("is_incremental", is_incremental);
        env.add_function("var", var);
        env.add_function("env_var", env_var);
        env.add_function("log", log);
        env.add_global("exceptions", Value::from_object(Exceptions));
        let import = if macros.is_empty() {
            String::new()
        } else {
            // On the model's first line, so line numbers in errors stay the file's.
            format!("{{% from \"{MACROS}\" import {} %}}", macros.join(", "))
        };
        for m in models {
            env.add_template_owned(m.path.clone(), format!("{import}{}", m.source))
                .map_err(|e| render_error(&m.path, &e))?;
        }
        Ok(Templates {
            env,
            vars: Arc::new(vars),
            macros,
        })
    }

    /// Names of the project's macros.
    pub fn macros(&self) -> &[String] {
        &self.macros
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
        let params: Vec<String> = (0..args.len()).map(|i| format!("a{i}")).collect();
        let source = format!(
            "{{% from \"{MACROS}\" import {name} %}}{{{{ {name}({}) }}}}",
            params.join(", ")
        );
        let ctx: BTreeMap<String, Value> = params
            .into_iter()
            .zip(args)
            .map(|(p, v)| (p, Value::from_serialize(v)))
            .collect();
        let capture = Arc::new(Capture {
            resolver: None,
            incremental: false,
            vars: self.vars.clone(),
            config: Mutex::new(BTreeMap::new()),
            references: Mutex::new(Vec::new()),
        });
        let mut ctx = ctx;
        ctx.insert("__tidepool".into(), Value::from_dyn_object(capture));
        self.env
            .render_str(&source, ctx)
            .map(|s| Some(s.trim().to_string()))
            .map_err(|e| render_error(&format!("macro {name}"), &e))
    }

    /// Renders the model at `path`.
    pub fn render(&self, path: &str, options: &RenderOptions<'_>) -> Result<Rendered, ModelsError> {
        let capture = Arc::new(Capture {
            resolver: options.resolver.clone(),
            incremental: options.incremental,
            vars: self.vars.clone(),
            config: Mutex::new(BTreeMap::new()),
            references: Mutex::new(Vec::new()),
        });
        let template = self
            .env
            .get_template(path)
            .map_err(|e| render_error(path, &e))?;
        let this = Value::from_object(Relation {
            schema: options.this.0.to_string(),
            name: options.this.1.to_string(),
        });
        let ctx = minijinja::context! {
            __tidepool => Value::from_dyn_object(capture.clone()),
            this => this,
        };
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
        })
    }
}

fn render_error(path: &str, e: &Error) -> ModelsError {
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

fn reference(state: &State, first: String, second: Option<String>) -> Result<String, Error> {
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

fn source(state: &State, source: String, table: String) -> Result<String, Error> {
    resolve(
        state,
        Reference::Source {
            source: source.to_lowercase(),
            table: table.to_lowercase(),
        },
    )
}

fn resolve(state: &State, r: Reference) -> Result<String, Error> {
    let c = capture(state)?;
    c.references.lock().push(r.clone());
    match &c.resolver {
        None => Ok(match r {
            Reference::Model {
                schema: Some(s),
                name,
            } => format!("{s}.{name}"),
            Reference::Model { name, .. } => name,
            Reference::Source { source, table } => format!("{source}.{table}"),
        }),
        Some(resolver) => resolver
            .resolve(&r)
            .map_err(|m| Error::new(ErrorKind::InvalidOperation, m)),
    }
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
        let t = Templates::new(&[model], &[], BTreeMap::new(), "analytics")?;
        let opts = RenderOptions {
            resolver: None,
            incremental: false,
            this: ("gold", "m"),
        };
        t.render("sql/gold/m.sql", &opts)
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
