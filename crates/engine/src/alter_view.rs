//! `ALTER VIEW v RENAME TO w` (and `ALTER MATERIALIZED VIEW`), which sqlparser 0.62 does
//! not parse (it knows `ALTER VIEW v AS query` only). PostgreSQL lets ALTER TABLE rename
//! a view, and tidepool's ALTER TABLE renames views, so the statement is read as ALTER
//! TABLE: the words `VIEW` / `MATERIALIZED VIEW` become `TABLE` when the statement goes on
//! with anything but `AS` or a column list. Works on tokens.

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::ParserError;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Word};

fn is_word(t: &Token, k: Keyword) -> bool {
    matches!(t, Token::Word(Word { keyword, quote_style: None, .. }) if *keyword == k)
}

/// The text with its `ALTER [MATERIALIZED] VIEW ... RENAME` read as ALTER TABLE; `None`
/// when it has none.
pub(crate) fn rewrite(sql: &str) -> Result<Option<String>, ParserError> {
    let upper = sql.to_ascii_uppercase();
    if !upper.contains("VIEW") || !upper.contains("ALTER") {
        return Ok(None);
    }
    let mut tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize()
        .map_err(|e| ParserError::TokenizerError(e.to_string()))?;
    let mut changed = false;
    let mut start = true;
    let mut i = 0;
    while i < tokens.len() {
        if matches!(tokens[i], Token::Whitespace(_)) {
            i += 1;
            continue;
        }
        if matches!(tokens[i], Token::SemiColon) {
            start = true;
            i += 1;
            continue;
        }
        if start && is_word(&tokens[i], Keyword::ALTER) {
            let words: Vec<usize> = (i + 1..tokens.len())
                .filter(|&j| !matches!(tokens[j], Token::Whitespace(_)))
                .take(3)
                .collect();
            let view_at = match words.as_slice() {
                [m, v, ..]
                    if is_word(&tokens[*m], Keyword::MATERIALIZED)
                        && is_word(&tokens[*v], Keyword::VIEW) =>
                {
                    Some((*m, *v))
                }
                [v, ..] if is_word(&tokens[*v], Keyword::VIEW) => Some((*v, *v)),
                _ => None,
            };
            if let Some((from, to)) = view_at
                && renames(&tokens[to + 1..])
            {
                tokens.splice(from..=to, [Token::make_keyword("TABLE")]);
                changed = true;
            }
        }
        start = false;
        i += 1;
    }
    Ok(changed.then(|| tokens.iter().map(|t| t.to_string()).collect()))
}

/// Whether the statement after `VIEW` renames (`... RENAME ...` before its end).
fn renames(rest: &[Token]) -> bool {
    for t in rest {
        match t {
            Token::SemiColon => return false,
            _ if is_word(t, Keyword::AS) => return false,
            _ if is_word(t, Keyword::RENAME) => return true,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn view_renames_read_as_alter_table() {
        assert_eq!(
            rewrite("ALTER VIEW s.v RENAME TO w").unwrap().as_deref(),
            Some("ALTER TABLE s.v RENAME TO w")
        );
        assert_eq!(
            rewrite("alter materialized view if exists \"V\" rename to w; SELECT 1")
                .unwrap()
                .as_deref(),
            Some("alter TABLE if exists \"V\" rename to w; SELECT 1")
        );
        assert_eq!(rewrite("ALTER VIEW v AS SELECT 1").unwrap(), None);
        assert_eq!(rewrite("SELECT 'ALTER VIEW v RENAME'").unwrap(), None);
    }
}
