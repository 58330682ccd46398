//! Text and argument handling for procedures: `:name` parameters in a definition become
//! DataFusion's `$name` placeholders, T-SQL `EXEC p @a = 1` becomes `CALL p(a => 1)`, and a
//! call's arguments are matched to the parameters and converted to their types.

use std::collections::HashMap;

use datafusion::common::{ParamValues, ScalarValue};
use datafusion::sql::sqlparser::ast::{
    CastKind, Expr, FunctionArg, FunctionArgExpr, UnaryOperator, Value,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use super::Procedure;
use crate::EngineError;

/// Tokens back to SQL text. `Token`'s `Display` writes string literals and quoted names
/// as the tokenizer read them (`E'a\\b'` as `E'a\b'`), without escaping quotes or
/// backslashes inside them; here they are escaped again.
pub fn render(tokens: &[Token]) -> String {
    let mut out = String::new();
    for t in tokens {
        match t {
            Token::SingleQuotedString(s) => {
                out.push('\'');
                out.push_str(&s.replace('\'', "''"));
                out.push('\'');
            }
            Token::EscapedStringLiteral(s) => {
                out.push_str("E'");
                out.push_str(&s.replace('\\', "\\\\").replace('\'', "\\'"));
                out.push('\'');
            }
            Token::Word(w) if w.quote_style == Some('"') => {
                out.push('"');
                out.push_str(&w.value.replace('"', "\"\""));
                out.push('"');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    out
}

/// Whether `sql` holds `word`, ignoring case; no allocation (runs on every statement).
fn contains_word(sql: &str, word: &str) -> bool {
    sql.as_bytes()
        .windows(word.len())
        .any(|w| w.eq_ignore_ascii_case(word.as_bytes()))
}

/// Whether `sql` has `.name(` anywhere: the cheap test before tokenizing for
/// `schema.proc(...)`, so ordinary statements are not tokenized twice.
fn might_call(sql: &str) -> bool {
    let b = sql.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'.' {
            let mut j = i + 1;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b'"') {
                j += 1;
            }
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            if j > i + 1 && b.get(j) == Some(&b'(') {
                return true;
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    false
}

fn tokens(sql: &str) -> Option<Vec<Token>> {
    Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()
}

/// Indexes of the tokens that are not white space or comments.
fn significant(tokens: &[Token]) -> Vec<usize> {
    (0..tokens.len())
        .filter(|&i| !matches!(tokens[i], Token::Whitespace(_)))
        .collect()
}

fn keyword(t: &Token) -> Option<Keyword> {
    match t {
        Token::Word(w) if w.quote_style.is_none() => Some(w.keyword),
        _ => None,
    }
}

/// For text holding `CREATE [OR REPLACE | OR ALTER] PROCEDURE` (a procedure's body runs
/// to the end of the text): the text with each `:name` from there on written `$name`,
/// `DEFAULT` in its parameter list written `=`, and a final `;`. `None` for other text.
pub fn named_placeholders(sql: &str) -> Option<String> {
    if !contains_word(sql, "procedure") || !contains_word(sql, "create") {
        return None;
    }
    let mut tokens = tokens(sql)?;
    let sig = significant(&tokens);
    // The first statement that is a CREATE PROCEDURE.
    let starts = std::iter::once(0).chain(
        (0..sig.len())
            .filter(|&k| tokens[sig[k]] == Token::SemiColon)
            .map(|k| k + 1),
    );
    let mut found = None;
    for k in starts {
        let words: Vec<Option<Keyword>> = sig
            .iter()
            .skip(k)
            .take(4)
            .map(|&i| keyword(&tokens[i]))
            .collect();
        let is_create = matches!(
            words.as_slice(),
            [Some(Keyword::CREATE), Some(Keyword::PROCEDURE), ..]
                | [
                    Some(Keyword::CREATE),
                    Some(Keyword::OR),
                    Some(Keyword::REPLACE | Keyword::ALTER),
                    Some(Keyword::PROCEDURE)
                ]
        );
        if is_create {
            found = Some(sig[k]);
            // The parser knows `CREATE OR ALTER PROCEDURE` (T-SQL); both replace.
            if words.get(2) == Some(&Some(Keyword::REPLACE)) {
                tokens[sig[k + 2]] = Token::make_keyword("ALTER");
            }
            break;
        }
    }
    let from = found?;
    // `p TYPE DEFAULT v` in the parameter list: the parser takes `p TYPE = v`.
    if let Some(open) = tokens[from..].iter().position(|t| *t == Token::LParen) {
        let mut depth = 0;
        for t in tokens[from + open..].iter_mut() {
            match t {
                Token::LParen => depth += 1,
                Token::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ if depth == 1 && keyword(t) == Some(Keyword::DEFAULT) => *t = Token::Eq,
                _ => {}
            }
        }
    }
    if sig.last().is_some_and(|&l| tokens[l] != Token::SemiColon) {
        // Each statement of the body ends with `;`, the last one too.
        tokens.push(Token::SemiColon);
    }
    let mut i = from;
    while i + 1 < tokens.len() {
        if tokens[i] == Token::Colon
            && let Token::Word(w) = &tokens[i + 1]
            && w.quote_style.is_none()
        {
            let name = w.value.to_lowercase();
            tokens[i] = Token::Placeholder(format!("${name}"));
            tokens.remove(i + 1);
        }
        i += 1;
    }
    Some(render(&tokens))
}

/// `FROM schema.proc(args)` / `JOIN schema.proc(args)` written as
/// `__tidepool_call('schema.proc', '', args)`; the parser's rewrites would otherwise drop
/// the schema of a table function. `None` when the text has none.
pub fn qualify_procedure_calls(sql: &str) -> Option<String> {
    if !might_call(sql) {
        return None;
    }
    let tokens = tokens(sql)?;
    let sig = significant(&tokens);
    let mut out = tokens.clone();
    let mut changed = false;
    // Walk backwards so replacements keep earlier indexes valid.
    for w in (0..sig.len().saturating_sub(4)).rev() {
        let [from, schema, dot, name, paren] =
            [sig[w], sig[w + 1], sig[w + 2], sig[w + 3], sig[w + 4]];
        if !matches!(
            keyword(&tokens[from]),
            Some(Keyword::FROM | Keyword::JOIN | Keyword::LATERAL)
        ) {
            continue;
        }
        let (Token::Word(s), Token::Period, Token::Word(n), Token::LParen) =
            (&tokens[schema], &tokens[dot], &tokens[name], &tokens[paren])
        else {
            continue;
        };
        // Functions of the server's own schemas are not procedures.
        if matches!(
            s.value.to_lowercase().as_str(),
            "system" | "pg_catalog" | "information_schema"
        ) {
            continue;
        }
        let closes = sig.get(w + 5).is_some_and(|&i| tokens[i] == Token::RParen);
        let head = format!(
            "{}('{}.{}', ''{}",
            super::table_fn::CALL_FUNCTION,
            s.value.to_lowercase(),
            n.value.to_lowercase(),
            if closes { "" } else { ", " }
        );
        out.splice(schema..=paren, [Token::make_word(&head, None)]);
        changed = true;
    }
    changed.then(|| render(&out))
}

/// For text starting `EXEC` or `EXECUTE` followed by a procedure name: the same call
/// written `CALL name(args)`, with `@p = v` arguments as `p => v`. `None` otherwise.
pub fn exec_to_call(sql: &str) -> Option<String> {
    let first = sql.trim_start().get(..4)?;
    if !first.eq_ignore_ascii_case("exec") {
        return None;
    }
    let tokens = tokens(sql)?;
    let sig = significant(&tokens);
    let &start = sig.first()?;
    if !matches!(
        keyword(&tokens[start]),
        Some(Keyword::EXEC | Keyword::EXECUTE)
    ) {
        return None;
    }
    // The name: words and dots.
    let mut k = 1;
    let mut name = String::new();
    while let Some(&i) = sig.get(k) {
        match &tokens[i] {
            Token::Word(_) | Token::Period => name.push_str(&tokens[i].to_string()),
            _ => break,
        }
        k += 1;
    }
    if name.is_empty() {
        return None;
    }
    let rest: Vec<usize> = sig[k..].to_vec();
    // `EXEC p(...)`: already a call's argument list.
    if rest.first().is_some_and(|&i| tokens[i] == Token::LParen) {
        let from = rest[0];
        let args = render(&tokens[from..]);
        return Some(format!("CALL {name}{args}"));
    }
    let mut args = String::new();
    let mut j = 0;
    let end = rest
        .iter()
        .position(|&i| tokens[i] == Token::SemiColon)
        .unwrap_or(rest.len());
    let rest = &rest[..end];
    let text = |from: usize, to: usize| -> String { render(&tokens[from..to]) };
    let last = rest.last().map(|&i| i + 1).unwrap_or(0);
    while j < rest.len() {
        // `@name = value`: the tokenizer reads `@name` as one word or as `@` and a word.
        let i = rest[j];
        let named = match &tokens[i] {
            Token::Word(w)
                if w.value.starts_with('@')
                    && rest.get(j + 1).is_some_and(|&n| tokens[n] == Token::Eq) =>
            {
                Some((w.value[1..].to_string(), 2))
            }
            Token::AtSign => match (rest.get(j + 1).map(|&n| &tokens[n]), rest.get(j + 2)) {
                (Some(Token::Word(w)), Some(&e)) if tokens[e] == Token::Eq => {
                    Some((w.value.clone(), 3))
                }
                _ => None,
            },
            _ => None,
        };
        if let Some((n, skip)) = &named {
            args.push_str(n);
            args.push_str(" => ");
            j += skip;
        }
        // The value runs to the next top-level comma.
        let from = rest.get(j).copied().unwrap_or(last);
        let mut depth = 0i32;
        let mut to = last;
        while let Some(&i) = rest.get(j) {
            match tokens[i] {
                Token::LParen => depth += 1,
                Token::RParen => depth -= 1,
                Token::Comma if depth == 0 => {
                    to = i;
                    break;
                }
                _ => {}
            }
            j += 1;
        }
        args.push_str(text(from, to).trim());
        if to != last {
            args.push_str(", ");
            j += 1;
        }
    }
    Some(format!("CALL {name}({args})"))
}

/// Binds a call's arguments to `p`'s parameters: positional first, then `name => value`;
/// defaults fill the rest. `params` are a prepared statement's `$1..$n`.
pub fn bind_call(
    p: &Procedure,
    args: &[FunctionArg],
    params: Option<&ParamValues>,
) -> Result<HashMap<String, ScalarValue>, EngineError> {
    let mut values = Vec::with_capacity(args.len());
    for a in args {
        let (name, expr) = match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => (None, e),
            FunctionArg::Named {
                name,
                arg: FunctionArgExpr::Expr(e),
                ..
            } => (Some(name.value.to_lowercase()), e),
            FunctionArg::ExprNamed {
                name: Expr::Identifier(name),
                arg: FunctionArgExpr::Expr(e),
                ..
            } => (Some(name.value.to_lowercase()), e),
            other => {
                return Err(EngineError::Syntax(format!(
                    "unsupported argument {other} in a call of {}",
                    p.signature()
                )));
            }
        };
        values.push((name, literal(expr, params)));
    }
    bind_values(p, values)
}

/// [`bind_call`] over evaluated arguments: (name for `name => value`, value or why not).
pub fn bind_values(
    p: &Procedure,
    args: Vec<(Option<String>, Result<ScalarValue, String>)>,
) -> Result<HashMap<String, ScalarValue>, EngineError> {
    let mut bound: HashMap<String, ScalarValue> = HashMap::new();
    let mut named_seen = false;
    let given = args.len();
    for (k, (name, value)) in args.into_iter().enumerate() {
        let param = match name {
            None => {
                if named_seen {
                    return Err(EngineError::Syntax(format!(
                        "positional argument cannot follow named argument in a call of {}",
                        p.signature()
                    )));
                }
                p.params.get(k).ok_or_else(|| {
                    EngineError::UndefinedFunction(format!(
                        "procedure {} takes {} arguments, {given} given",
                        p.signature(),
                        p.params.len(),
                    ))
                })?
            }
            Some(wanted) => {
                named_seen = true;
                p.params.iter().find(|q| q.name == wanted).ok_or_else(|| {
                    EngineError::UndefinedFunction(format!(
                        "procedure {} has no parameter named \"{wanted}\"",
                        p.signature()
                    ))
                })?
            }
        };
        if bound.contains_key(&param.name) {
            return Err(EngineError::Syntax(format!(
                "argument \"{}\" given twice in a call of {}",
                param.name,
                p.signature()
            )));
        }
        let value = value.map_err(|why| {
            EngineError::InvalidText(format!(
                "argument \"{}\" of {}: {why}",
                param.name,
                p.signature()
            ))
        })?;
        let value = convert(&value, &param.data_type).map_err(|_| {
            EngineError::InvalidText(format!(
                "invalid input syntax for type {}: {} (argument \"{}\" of {})",
                param.sql_type.to_lowercase(),
                shown(&value),
                param.name,
                p.signature()
            ))
        })?;
        bound.insert(param.name.clone(), value);
    }
    for param in &p.params {
        if bound.contains_key(&param.name) {
            continue;
        }
        match &param.default {
            Some(d) => {
                bound.insert(param.name.clone(), d.clone());
            }
            None => {
                return Err(EngineError::UndefinedFunction(format!(
                    "procedure {} needs argument \"{}\"",
                    p.signature(),
                    param.name
                )));
            }
        }
    }
    Ok(bound)
}

fn shown(v: &ScalarValue) -> String {
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => {
            format!("\"{s}\"")
        }
        other => format!("\"{other}\""),
    }
}

/// `value` as `to`; strings are parsed as Postgres input would be.
fn convert(value: &ScalarValue, to: &DataType) -> Result<ScalarValue, ()> {
    if value.is_null() {
        return ScalarValue::try_from(to).map_err(|_| ());
    }
    if &value.data_type() == to {
        return Ok(value.clone());
    }
    let text = matches!(
        value,
        ScalarValue::Utf8(_) | ScalarValue::LargeUtf8(_) | ScalarValue::Utf8View(_)
    );
    if text && matches!(to, DataType::Boolean) {
        let s = value.to_string().trim().to_ascii_lowercase();
        return match s.as_str() {
            "t" | "true" | "yes" | "on" | "1" => Ok(ScalarValue::Boolean(Some(true))),
            "f" | "false" | "no" | "off" | "0" => Ok(ScalarValue::Boolean(Some(false))),
            _ => Err(()),
        };
    }
    let out = value.cast_to(to).map_err(|_| ())?;
    // A cast that turns a value into NULL lost it.
    if out.is_null() { Err(()) } else { Ok(out) }
}

use datafusion::arrow::datatypes::DataType;

/// The value of a literal argument: numbers, strings, booleans, NULL, `$n`, `-x`,
/// `DATE '...'`, `'...'::type`.
fn literal(e: &Expr, params: Option<&ParamValues>) -> Result<ScalarValue, String> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n
                .parse::<i64>()
                .map(|i| ScalarValue::Int64(Some(i)))
                .or_else(|_| n.parse::<f64>().map(|f| ScalarValue::Float64(Some(f))))
                .map_err(|_| format!("bad number {n}")),
            Value::SingleQuotedString(s)
            | Value::DoubleQuotedString(s)
            | Value::EscapedStringLiteral(s)
            | Value::DollarQuotedString(datafusion::sql::sqlparser::ast::DollarQuotedString {
                value: s,
                ..
            }) => Ok(ScalarValue::Utf8(Some(s.clone()))),
            Value::Boolean(b) => Ok(ScalarValue::Boolean(Some(*b))),
            Value::Null => Ok(ScalarValue::Null),
            Value::Placeholder(p) => {
                let Some(params) = params else {
                    return Err(format!("{p} has no value"));
                };
                match params {
                    ParamValues::List(list) => p
                        .strip_prefix('$')
                        .and_then(|n| n.parse::<usize>().ok())
                        .and_then(|n| n.checked_sub(1))
                        .and_then(|n| list.get(n))
                        .map(|v| v.value.clone())
                        .ok_or_else(|| format!("{p} has no value")),
                    ParamValues::Map(map) => map
                        .get(p.trim_start_matches('$'))
                        .map(|v| v.value.clone())
                        .ok_or_else(|| format!("{p} has no value")),
                }
            }
            other => Err(format!("unsupported literal {other}")),
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => {
            let v = literal(expr, params)?;
            v.arithmetic_negate().map_err(|e| e.to_string())
        }
        Expr::UnaryOp {
            op: UnaryOperator::Plus,
            expr,
        } => literal(expr, params),
        Expr::Nested(inner) => literal(inner, params),
        Expr::TypedString(t) => match &t.value.value {
            Value::SingleQuotedString(s) => Ok(ScalarValue::Utf8(Some(s.clone()))),
            other => Err(format!("unsupported literal {other}")),
        },
        Expr::Cast {
            kind: CastKind::DoubleColon | CastKind::Cast,
            expr,
            ..
        } => literal(expr, params),
        other => Err(format!(
            "arguments are literal values or $n parameters, not {other}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_tokens_read_back_the_same() {
        use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
        use datafusion::sql::sqlparser::tokenizer::Tokenizer;
        let sql = "SELECT E'a\\\\b\\'c\\n', 'it''s', \"x\"\"y\"";
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize()
            .unwrap();
        let again = Tokenizer::new(&PostgreSqlDialect {}, &render(&tokens))
            .tokenize()
            .unwrap();
        assert_eq!(tokens, again);
    }

    #[test]
    fn definitions_get_placeholders_defaults_and_a_final_semicolon() {
        let out = named_placeholders(
            "CREATE VIEW v AS SELECT 1;\nCREATE OR REPLACE PROCEDURE gold.p(a BIGINT, b DATE DEFAULT '2010-01-01')\nAS SELECT x::int FROM t WHERE a = :a AND note = 'it''s :a' AND d >= :B",
        )
        .unwrap();
        assert_eq!(
            out,
            "CREATE VIEW v AS SELECT 1;\nCREATE OR ALTER PROCEDURE gold.p(a BIGINT, b DATE = '2010-01-01')\nAS SELECT x::int FROM t WHERE a = $a AND note = 'it''s :a' AND d >= $b;"
        );
        assert_eq!(named_placeholders("SELECT a[1:b] FROM t"), None);
    }

    #[test]
    fn exec_becomes_call() {
        assert_eq!(
            exec_to_call("EXEC gold.p @a = 42, @b = 'x, y'").as_deref(),
            Some("CALL gold.p(a => 42, b => 'x, y')")
        );
        assert_eq!(
            exec_to_call("execute gold.p 1, 'o''k';").as_deref(),
            Some("CALL gold.p(1, 'o''k')")
        );
        assert_eq!(
            exec_to_call("EXEC gold.p").as_deref(),
            Some("CALL gold.p()")
        );
        assert_eq!(
            exec_to_call("EXEC gold.p(1)").as_deref(),
            Some("CALL gold.p(1)")
        );
        assert_eq!(exec_to_call("SELECT 1"), None);
    }

    #[test]
    fn procedures_in_from_become_the_call_function() {
        assert_eq!(
            qualify_procedure_calls("SELECT * FROM gold.p(42) o JOIN gold.q() USING (id)")
                .as_deref(),
            Some(
                "SELECT * FROM __tidepool_call('gold.p', '', 42) o JOIN __tidepool_call('gold.q', '') USING (id)"
            )
        );
        // Tables, scalar functions and the server's own schemas are left alone.
        assert_eq!(
            qualify_procedure_calls("SELECT gold.f(1) FROM gold.t, system.table_history('x')"),
            None
        );
        assert_eq!(
            qualify_procedure_calls("SELECT * FROM pg_catalog.generate_series(1, 2)"),
            None
        );
    }
}
