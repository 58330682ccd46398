//! Python values that dbt's Jinja relies on and MiniJinja does not have: lists and dicts
//! that `append` / `update` change in place (dbt macros build lists with
//! `{% do cols.append(c) %}`), and the agate table `run_query` returns (`.rows`,
//! `.columns[0].values()`, `.column_names`). A `{% set x = [...] %}` or `{% set x = {...} %}`
//! in a dbt template is made one of these by [`mutable_literals`].

use std::fmt;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr, Value};
use minijinja::{Error, ErrorKind, State};
use parking_lot::Mutex;

/// A list that `append`, `extend`, `insert`, `pop`, `remove` and `reverse` change.
#[derive(Debug, Default)]
pub struct List(Mutex<Vec<Value>>);

impl List {
    pub fn value(items: Vec<Value>) -> Value {
        Value::from_object(List(Mutex::new(items)))
    }
}

fn index(len: usize, i: i64) -> Option<usize> {
    let i = if i < 0 { len as i64 + i } else { i };
    (0..len as i64).contains(&i).then_some(i as usize)
}

impl Object for List {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let items = self.0.lock();
        items.get(index(items.len(), key.as_i64()?)?).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.0.lock().clone())
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.0.lock().len())
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let arg = |i: usize| {
            args.get(i)
                .cloned()
                .ok_or_else(|| Error::from(ErrorKind::MissingArgument))
        };
        let mut items = self.0.lock();
        match method {
            "append" => items.push(arg(0)?),
            "extend" => {
                let more: Vec<Value> = arg(0)?.try_iter()?.collect();
                items.extend(more);
            }
            "insert" => {
                let at = arg(0)?.as_i64().unwrap_or(0);
                let at = if at < 0 {
                    (items.len() as i64 + at).max(0) as usize
                } else {
                    (at as usize).min(items.len())
                };
                items.insert(at, arg(1)?);
            }
            "pop" => {
                let at = match args.first() {
                    Some(i) => i.as_i64().unwrap_or(-1),
                    None => -1,
                };
                let at = index(items.len(), at).ok_or_else(|| {
                    Error::new(ErrorKind::InvalidOperation, "pop index out of range")
                })?;
                return Ok(items.remove(at));
            }
            "remove" => {
                let v = arg(0)?;
                let at = items.iter().position(|x| *x == v).ok_or_else(|| {
                    Error::new(ErrorKind::InvalidOperation, "list.remove(x): x not in list")
                })?;
                items.remove(at);
            }
            "reverse" => items.reverse(),
            "clear" => items.clear(),
            _ => return Err(Error::from(ErrorKind::UnknownMethod)),
        }
        Ok(Value::from(()))
    }
}

/// A dict that `update`, `pop`, `setdefault` and `clear` change, keeping insertion order.
#[derive(Debug, Default)]
pub struct Dict(Mutex<Vec<(Value, Value)>>);

impl Dict {
    pub fn value(items: Vec<(Value, Value)>) -> Value {
        Value::from_object(Dict(Mutex::new(items)))
    }

    fn set(items: &mut Vec<(Value, Value)>, k: Value, v: Value) {
        match items.iter_mut().find(|(key, _)| *key == k) {
            Some(slot) => slot.1 = v,
            None => items.push((k, v)),
        }
    }
}

impl Object for Dict {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.0
            .lock()
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.0.lock().iter().map(|(k, _)| k.clone()).collect())
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.0.lock().len())
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let mut items = self.0.lock();
        match method {
            "update" => {
                for other in args {
                    // Keyword arguments arrive as a map too.
                    for k in other.try_iter()? {
                        let v = other.get_item(&k)?;
                        Dict::set(&mut items, k, v);
                    }
                }
                Ok(Value::from(()))
            }
            "pop" => {
                let k = args.first().cloned().unwrap_or_default();
                match items.iter().position(|(key, _)| *key == k) {
                    Some(at) => Ok(items.remove(at).1),
                    None => args.get(1).cloned().ok_or_else(|| {
                        Error::new(ErrorKind::InvalidOperation, format!("KeyError: {k}"))
                    }),
                }
            }
            "setdefault" => {
                let k = args.first().cloned().unwrap_or_default();
                if let Some((_, v)) = items.iter().find(|(key, _)| *key == k) {
                    return Ok(v.clone());
                }
                let v = args.get(1).cloned().unwrap_or(Value::from(()));
                items.push((k, v.clone()));
                Ok(v)
            }
            "clear" => {
                items.clear();
                Ok(Value::from(()))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

/// `__mutable(v)`: a list or dict literal made changeable; anything else as it is.
pub fn mutable(v: Value) -> Result<Value, Error> {
    if v.as_object()
        .is_some_and(|o| o.downcast_ref::<List>().is_some() || o.downcast_ref::<Dict>().is_some())
    {
        return Ok(v);
    }
    match v.kind() {
        minijinja::value::ValueKind::Seq => Ok(List::value(v.try_iter()?.collect())),
        minijinja::value::ValueKind::Map => {
            let mut items = Vec::new();
            for k in v.try_iter()? {
                let val = v.get_item(&k)?;
                items.push((k, val));
            }
            Ok(Dict::value(items))
        }
        _ => Ok(v),
    }
}

/// `text` with each `{% ... %}` tag whose inside `f` rewrites replaced by `f`'s tag.
pub fn rewrite_tags(text: &str, mut f: impl FnMut(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut rest = text;
    while let Some(at) = rest.find("{%") {
        out.push_str(&rest[..at]);
        let tag = &rest[at..];
        let Some(end) = tag.find("%}") else {
            out.push_str(tag);
            return out;
        };
        match f(&tag[2..end]) {
            Some(new) => out.push_str(&new),
            None => out.push_str(&tag[..end + 2]),
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Rewrites `{% set name = [` and `{% set name = {` to wrap the literal in `__mutable(...)`,
/// so dbt's in-place `append` / `update` work on it.
pub fn mutable_literals(text: &str) -> String {
    rewrite_tags(text, |inner| {
        let body = inner.trim_start_matches(['-', '+']).trim_start();
        let after = body.strip_prefix("set")?;
        let (lhs, rhs) = after.split_once('=')?;
        let lhs = lhs.trim();
        let simple = !lhs.is_empty()
            && after.starts_with(char::is_whitespace)
            && lhs.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let value = rhs.trim().trim_end_matches(['-', '+']).trim_end();
        if !(simple && (value.starts_with('[') || value.starts_with('{'))) {
            return None;
        }
        let open = &inner[..inner.len() - inner.trim_start_matches(['-', '+']).len()];
        let trimmed = inner.trim_end();
        let close = if trimmed.ends_with('-') {
            "-"
        } else if trimmed.ends_with('+') {
            "+"
        } else {
            ""
        };
        Some(format!(
            "{{%{open} set {lhs} = __mutable({value}) {close}%}}"
        ))
    })
}

/// What `run_query` returns: agate's `Table`, as far as macros use it.
#[derive(Debug)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl Table {
    fn row(self: &Arc<Self>, i: usize) -> Value {
        Value::from_object(Row {
            table: self.clone(),
            i,
        })
    }
}

impl Object for Table {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "rows" => Some(Value::from(
                (0..self.rows.len())
                    .map(|i| self.row(i))
                    .collect::<Vec<_>>(),
            )),
            "columns" => Some(Value::from_object(Columns(self.clone()))),
            "column_names" => Some(Value::from(self.columns.clone())),
            _ => None,
        }
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State<'_, '_>,
        method: &str,
        _args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "print_table" => Ok(Value::from(())),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<Table {} rows>", self.rows.len())
    }
}

/// A row of a [`Table`]: indexed by position or by column name.
#[derive(Debug)]
struct Row {
    table: Arc<Table>,
    i: usize,
}

impl Object for Row {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let row = &self.table.rows[self.i];
        let at = match key.as_str() {
            Some(name) => self.table.columns.iter().position(|c| c == name)?,
            None => index(row.len(), key.as_i64()?)?,
        };
        row.get(at).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.table.rows[self.i].clone())
    }
}

/// `table.columns`: by position or by name; each a [`Column`].
#[derive(Debug)]
struct Columns(Arc<Table>);

impl Object for Columns {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let at = match key.as_str() {
            Some(name) => self.0.columns.iter().position(|c| c == name)?,
            None => index(self.0.columns.len(), key.as_i64()?)?,
        };
        Some(Value::from_object(Column {
            table: self.0.clone(),
            at,
        }))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Seq(self.0.columns.len())
    }
}

/// One column of a [`Table`]: `.name`, `.values()`.
#[derive(Debug)]
struct Column {
    table: Arc<Table>,
    at: usize,
}

impl Object for Column {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "name" => Some(Value::from(self.table.columns[self.at].clone())),
            _ => None,
        }
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State<'_, '_>,
        method: &str,
        _args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "values" | "values_distinct" => {
                let mut values: Vec<Value> = self
                    .table
                    .rows
                    .iter()
                    .map(|r| r.get(self.at).cloned().unwrap_or_default())
                    .collect();
                if method == "values_distinct" {
                    let mut seen = Vec::new();
                    values.retain(|v| {
                        let new = !seen.contains(v);
                        if new {
                            seen.push(v.clone());
                        }
                        new
                    });
                }
                Ok(Value::from(values))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_literals_become_mutable_and_other_tags_stay() {
        assert_eq!(
            mutable_literals(
                "{%- set fields = [] -%}x{% set m = {'a': 1} %}{% set n = 1 %}{% if a %}"
            ),
            "{%- set fields = __mutable([]) -%}x{% set m = __mutable({'a': 1}) %}{% set n = 1 %}{% if a %}"
        );
        assert_eq!(
            mutable_literals("{% set a, b = [1, 2] %}{% settle = [] %}"),
            "{% set a, b = [1, 2] %}{% settle = [] %}"
        );
    }
}
