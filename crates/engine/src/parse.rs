//! SQL text to statements.
//!
//! Statements are parsed with the Postgres dialect through datafusion-pg-catalog's
//! compatibility parser, which rewrites the catalog queries of psql, DBeaver and other
//! clients into forms DataFusion plans. Before that, Delta time travel written the
//! Databricks way, `FROM gold.t VERSION AS OF 3` or `TIMESTAMP AS OF '2026-01-01'`, is turned
//! into the table function `read_delta('gold.t', 3)`. Afterwards, the `system.` qualifier of
//! tidepool's own table functions is dropped, as DataFusion resolves them by bare name.

use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, Ident, ObjectNamePart, TableAlias, TableFactor, Value,
    VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::ParserError;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Word};
use std::ops::ControlFlow;

use super::complexity::PARSER_DEPTH;

/// Parses SQL text into statements tidepool can plan, in the dialect of the engine's
/// [`Extension`](crate::Extension).
#[derive(Debug, Clone)]
pub struct SqlParser {
    dialect: std::sync::Arc<dyn crate::Extension>,
}

/// JDBC/ODBC/ADBC-style `?` placeholders as Postgres' `$1, $2, ...`, numbered left to
/// right, for drivers that bind positionally (the Flight SQL JDBC driver and ADBC send
/// `?`). `None` when the text has no `?` placeholder or already uses `$n`. A `?` inside a
/// string, quoted name or comment is left alone.
pub fn question_placeholders(sql: &str) -> Option<String> {
    if !sql.contains('?') {
        return None;
    }
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    if tokens
        .iter()
        .any(|t| matches!(t, Token::Placeholder(p) if p.starts_with('$')))
    {
        return None;
    }
    let mut n = 0;
    let mut changed = false;
    let out: Vec<Token> = tokens
        .into_iter()
        .map(|t| match t {
            Token::Question => {
                n += 1;
                changed = true;
                Token::Placeholder(format!("${n}"))
            }
            Token::Placeholder(p) if p == "?" => {
                n += 1;
                changed = true;
                Token::Placeholder(format!("${n}"))
            }
            other => other,
        })
        .collect();
    changed.then(|| super::procedures::render(&out))
}

/// Syntax sqlparser accepts and DataFusion would silently ignore: refused (0A000) rather
/// than answered wrongly. `TABLESAMPLE` would return every row.
fn refuse_unsupported(
    statement: &datafusion::sql::sqlparser::ast::Statement,
) -> Result<(), super::EngineError> {
    use datafusion::sql::sqlparser::ast::{Visit, Visitor};
    struct Sample;
    impl Visitor for Sample {
        type Break = ();
        fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
            match t {
                TableFactor::Table {
                    sample: Some(_), ..
                } => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            }
        }
    }
    match statement.visit(&mut Sample) {
        ControlFlow::Break(()) => Err(super::EngineError::NotSupported(
            "TABLESAMPLE (use ORDER BY random() LIMIT n, or WHERE random() < fraction)".into(),
        )),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// Parses with a recursion limit of [`PARSER_DEPTH`].
pub fn parse_deep(
    sql: &str,
) -> Result<Vec<datafusion::sql::sqlparser::ast::Statement>, super::EngineError> {
    datafusion::sql::sqlparser::parser::Parser::new(&PostgreSqlDialect {})
        .with_recursion_limit(PARSER_DEPTH)
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| match e {
            ParserError::RecursionLimitExceeded => {
                super::EngineError::TooComplex(super::complexity::TooComplex)
            }
            other => other.into(),
        })
}

/// Table functions that live in the `system` schema.
const SYSTEM_FUNCTIONS: &[&str] = &["table_history"];

impl SqlParser {
    pub fn new(dialect: std::sync::Arc<dyn crate::Extension>) -> Self {
        SqlParser { dialect }
    }

    /// Parses `sql` into zero or more statements.
    ///
    /// DataFusion's own statements (`CREATE EXTERNAL TABLE`, `COPY ... STORED AS`) are not
    /// Postgres syntax; text holding them is parsed with DataFusion's parser.
    pub fn parse(&self, sql: &str) -> Result<Vec<DFStatement>, super::EngineError> {
        // Procedures: `:name` parameters in a definition, T-SQL `EXEC p @a = 1` calls.
        let rewritten = super::procedures::named_placeholders(sql)
            .or_else(|| super::procedures::exec_to_call(sql));
        let sql = rewritten.as_deref().unwrap_or(sql);
        let qualified = super::procedures::qualify_procedure_calls(sql);
        let sql = qualified.as_deref().unwrap_or(sql);
        let text = rewrite_time_travel(sql)?;
        let text = text.as_deref().unwrap_or(sql);
        let merged = super::merge_do_nothing::rewrite(text)?;
        let text = merged.as_deref().unwrap_or(text);
        let renamed = super::alter_view::rewrite(text)?;
        let text = renamed.as_deref().unwrap_or(text);
        let forced = super::copy::options::force_quote_all(text);
        let text = forced.as_deref().unwrap_or(text);
        let mut statements = Vec::new();
        for chunk in split_statements(text)? {
            if chunk.datafusion_syntax {
                let parsed = DFParser::parse_sql_with_dialect(&chunk.text, &PostgreSqlDialect {})
                    .map_err(|e| match e {
                    datafusion::error::DataFusionError::SQL(p, _) => *p,
                    other => ParserError::ParserError(other.to_string()),
                })?;
                statements.extend(parsed.into_iter().map(|s| match s {
                    DFStatement::Statement(inner) => {
                        DFStatement::Statement(Box::new(self.dialect.rewrite_parsed(*inner)))
                    }
                    other => other,
                }));
            } else {
                let parsed = self.dialect.parse(&chunk.text)?;
                statements.extend(
                    parsed
                        .into_iter()
                        .map(|s| DFStatement::Statement(Box::new(s))),
                );
            }
        }
        for s in &mut statements {
            if let DFStatement::Statement(inner) = s {
                super::complexity::bound(inner)?;
                refuse_unsupported(inner)?;
                let _ = inner.visit(&mut UnqualifySystemFunctions);
                let _ = inner.visit(&mut super::distinct_from::DistinctFromPrecedence);
                self.dialect.rewrite(inner)?;
            }
        }
        Ok(statements)
    }
}

/// One statement's text and whether it uses DataFusion-only syntax.
struct Chunk {
    text: String,
    datafusion_syntax: bool,
}

/// Splits SQL text at top-level semicolons. Statements written in DataFusion's own syntax
/// (`CREATE EXTERNAL TABLE`, `... STORED AS ...`) are marked for DataFusion's parser.
fn split_statements(sql: &str) -> Result<Vec<Chunk>, ParserError> {
    let upper = sql.to_ascii_uppercase();
    if !upper.contains("EXTERNAL") && !upper.contains("STORED") {
        return Ok(vec![Chunk {
            text: sql.to_string(),
            datafusion_syntax: false,
        }]);
    }
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize()
        .map_err(|e| ParserError::TokenizerError(e.to_string()))?;
    let mut chunks = Vec::new();
    let mut current: Vec<Token> = Vec::new();
    let flush = |current: &mut Vec<Token>, chunks: &mut Vec<Chunk>| {
        let words: Vec<Keyword> = current
            .iter()
            .filter_map(|t| match t {
                Token::Word(w) if w.quote_style.is_none() => Some(w.keyword),
                _ => None,
            })
            .collect();
        if words.is_empty() {
            current.clear();
            return;
        }
        let datafusion_syntax = words.windows(2).any(|w| {
            matches!(
                (w[0], w[1]),
                (Keyword::EXTERNAL, Keyword::TABLE) | (Keyword::STORED, Keyword::AS)
            )
        });
        chunks.push(Chunk {
            text: super::procedures::render(current),
            datafusion_syntax,
        });
        current.clear();
    };
    for t in tokens {
        if t == Token::SemiColon {
            flush(&mut current, &mut chunks);
        } else {
            current.push(t);
        }
    }
    flush(&mut current, &mut chunks);
    Ok(chunks)
}

/// Drops the `system.` qualifier of tidepool's table functions and turns
/// `read_delta('t', version => 3)` / `timestamp => '...'` into positional arguments.
struct UnqualifySystemFunctions;

impl VisitorMut for UnqualifySystemFunctions {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table {
            name,
            args: Some(args),
            alias,
            ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        let ident = |p: &ObjectNamePart| match p {
            ObjectNamePart::Identifier(i) => Some(i.value.to_ascii_lowercase()),
            _ => None,
        };
        if name.0.len() == 2
            && ident(&name.0[0]).as_deref() == Some("system")
            && ident(&name.0[1]).is_some_and(|f| SYSTEM_FUNCTIONS.contains(&f.as_str()))
        {
            name.0.remove(0);
        } else if name.0.len() == 1
            && ident(&name.0[0]).as_deref() == Some(super::procedures::table_fn::CALL_FUNCTION)
        {
            // A procedure in FROM (see `qualify_procedure_calls`): named arguments move to
            // the names list (DataFusion takes positional ones only); the procedure's name
            // is the default alias.
            let mut names = Vec::new();
            let mut values = Vec::new();
            for (k, a) in args.args.drain(..).enumerate() {
                if k < 2 {
                    values.push(a);
                    continue;
                }
                match a {
                    FunctionArg::Named { name, arg, .. } => {
                        names.push(name.value.to_lowercase());
                        values.push(FunctionArg::Unnamed(arg));
                    }
                    FunctionArg::ExprNamed {
                        name: Expr::Identifier(name),
                        arg,
                        ..
                    } => {
                        names.push(name.value.to_lowercase());
                        values.push(FunctionArg::Unnamed(arg));
                    }
                    other => {
                        names.push(String::new());
                        values.push(other);
                    }
                }
            }
            let proc = match values.first() {
                Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))) => match &v.value
                {
                    Value::SingleQuotedString(s) => s.rsplit('.').next().unwrap_or("").to_string(),
                    _ => String::new(),
                },
                _ => String::new(),
            };
            if values.len() >= 2 {
                values[1] = FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::value(
                    Value::SingleQuotedString(names.join(",")),
                )));
            }
            args.args = values;
            if alias.is_none() && !proc.is_empty() {
                *alias = Some(TableAlias {
                    explicit: true,
                    name: Ident::new(proc),
                    columns: Vec::new(),
                    at: None,
                });
            }
            return ControlFlow::Continue(());
        }
        if name.0.len() == 1 && ident(&name.0[0]).as_deref() == Some("read_delta") {
            for a in args.args.iter_mut() {
                let (arg_name, value) = match a {
                    FunctionArg::Named { name, arg, .. } => (name.value.clone(), arg.clone()),
                    FunctionArg::ExprNamed {
                        name: Expr::Identifier(name),
                        arg,
                        ..
                    } => (name.value.clone(), arg.clone()),
                    _ => continue,
                };
                if matches!(
                    arg_name.to_ascii_lowercase().as_str(),
                    "version" | "timestamp"
                ) {
                    *a = FunctionArg::Unnamed(value);
                }
            }
        }
        ControlFlow::Continue(())
    }
}

fn is_word(t: &Token, k: Keyword) -> bool {
    matches!(t, Token::Word(Word { keyword, quote_style: None, .. }) if *keyword == k)
}

/// Rewrites `<name> VERSION AS OF <n>` and `<name> TIMESTAMP AS OF '<ts>'` into
/// `read_delta('<name>', <n>)`. Returns `None` when the text has no time travel.
fn rewrite_time_travel(sql: &str) -> Result<Option<String>, ParserError> {
    let upper = sql.to_ascii_uppercase();
    if !upper.contains(" AS OF ") && !upper.contains("\nAS OF") {
        return Ok(None);
    }
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize()
        .map_err(|e| ParserError::TokenizerError(e.to_string()))?;
    let significant = |from: usize| -> Vec<usize> {
        (from..tokens.len())
            .filter(|&i| !matches!(tokens[i], Token::Whitespace(_)))
            .take(3)
            .collect()
    };
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    let mut changed = false;
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        let is_version = is_word(t, Keyword::VERSION);
        let is_timestamp = is_word(t, Keyword::TIMESTAMP);
        if is_version || is_timestamp {
            let next = significant(i + 1);
            if next.len() == 3
                && is_word(&tokens[next[0]], Keyword::AS)
                && is_word(&tokens[next[1]], Keyword::OF)
            {
                let value = tokens[next[2]].clone();
                let value_ok = matches!(
                    (&value, is_version),
                    (Token::Number(..), true) | (Token::SingleQuotedString(_), false)
                );
                if let (true, Some(name)) = (value_ok, take_object_name(&mut out)) {
                    out.push(Token::make_word("read_delta", None));
                    out.push(Token::LParen);
                    out.push(Token::SingleQuotedString(name));
                    out.push(Token::Comma);
                    out.push(Token::Whitespace(
                        datafusion::sql::sqlparser::tokenizer::Whitespace::Space,
                    ));
                    out.push(value);
                    out.push(Token::RParen);
                    i = next[2] + 1;
                    changed = true;
                    continue;
                }
            }
        }
        out.push(t.clone());
        i += 1;
    }
    if !changed {
        return Ok(None);
    }
    Ok(Some(super::procedures::render(&out)))
}

/// Pops a trailing `a.b` / `a` identifier chain (and the whitespace after it) from `out`.
fn take_object_name(out: &mut Vec<Token>) -> Option<String> {
    while matches!(out.last(), Some(Token::Whitespace(_))) {
        out.pop();
    }
    let mut parts = Vec::new();
    loop {
        match out.last() {
            Some(Token::Word(w))
                if !parts.is_empty()
                    || w.quote_style.is_some()
                    || !matches!(w.keyword, Keyword::FROM | Keyword::JOIN | Keyword::ON) =>
            {
                parts.push(w.value.clone());
                out.pop();
            }
            _ => break,
        }
        if matches!(out.last(), Some(Token::Period)) {
            out.pop();
        } else {
            break;
        }
    }
    if parts.is_empty() {
        return None;
    }
    parts.reverse();
    Some(parts.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_marks_become_numbered_placeholders() {
        assert_eq!(
            question_placeholders("SELECT a FROM t WHERE b = ? AND c > ? AND d = '?'").as_deref(),
            Some("SELECT a FROM t WHERE b = $1 AND c > $2 AND d = '?'")
        );
        assert_eq!(
            question_placeholders("CALL p(?)").as_deref(),
            Some("CALL p($1)")
        );
        assert_eq!(question_placeholders("SELECT $1, '?'"), None);
        assert_eq!(question_placeholders("SELECT 1"), None);
    }

    #[test]
    fn version_as_of_becomes_read_delta() {
        let r = rewrite_time_travel("SELECT * FROM gold.t VERSION AS OF 3 WHERE x = 1")
            .unwrap()
            .unwrap();
        assert_eq!(r, "SELECT * FROM read_delta('gold.t', 3) WHERE x = 1");
        let r = rewrite_time_travel("select * from t timestamp as of '2026-01-01' x")
            .unwrap()
            .unwrap();
        assert_eq!(r, "select * from read_delta('t', '2026-01-01') x");
    }

    #[test]
    fn other_sql_is_untouched() {
        assert_eq!(rewrite_time_travel("SELECT 1").unwrap(), None);
        assert_eq!(
            rewrite_time_travel("SELECT CAST(x AS timestamp) FROM t").unwrap(),
            None
        );
    }

    #[test]
    fn system_functions_lose_their_qualifier() {
        let p = SqlParser::new(std::sync::Arc::new(crate::NoExtension));
        let s = p
            .parse("SELECT * FROM system.table_history('gold.t')")
            .unwrap();
        assert_eq!(s[0].to_string(), "SELECT * FROM table_history('gold.t')");
    }
}
