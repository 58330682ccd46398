//! PostgreSQL's `WHEN ... THEN DO NOTHING` in MERGE, which sqlparser 0.62 does not parse.
//!
//! A DO NOTHING clause only stops the clauses after it, of the same kind, from acting on
//! the rows it takes. So it is taken out before parsing, and each later clause of its kind
//! gets `AND NOT COALESCE((cond), FALSE)` (or is dropped, when the DO NOTHING clause has no
//! condition). The statement means what it meant; DataFusion then plans it as any MERGE.
//! Works on tokens: clauses are found at the statement's top level (not inside
//! parentheses or `CASE ... END`).

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::ParserError;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Whitespace, Word};

fn is_word(t: &Token, k: Keyword) -> bool {
    matches!(t, Token::Word(Word { keyword, quote_style: None, .. }) if *keyword == k)
}

/// One `WHEN ...` clause of a MERGE.
struct Clause {
    /// `MATCHED`, `NOT MATCHED` or `NOT MATCHED BY SOURCE`.
    kind: &'static str,
    /// Tokens from WHEN up to (not including) AND or THEN.
    head: Vec<Token>,
    /// The condition's tokens, without AND.
    cond: Option<Vec<Token>>,
    /// Tokens from THEN on.
    action: Vec<Token>,
    do_nothing: bool,
}

/// The text with its MERGE DO NOTHING clauses taken out; `None` when it has none.
pub(crate) fn rewrite(sql: &str) -> Result<Option<String>, ParserError> {
    let upper = sql.to_ascii_uppercase();
    if !upper.contains("NOTHING") || !upper.contains("MERGE") {
        return Ok(None);
    }
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize()
        .map_err(|e| ParserError::TokenizerError(e.to_string()))?;
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|&i| !matches!(tokens[i], Token::Whitespace(_)))
        .collect();
    let next_word = |pos: usize, k: Keyword| {
        significant
            .iter()
            .find(|&&i| i > pos)
            .is_some_and(|&i| is_word(&tokens[i], k))
    };
    // Top-level clause starts: WHEN followed by MATCHED or NOT.
    let mut depth = 0i32;
    let mut starts = Vec::new();
    let mut ends = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        match t {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::SemiColon if depth == 0 => ends.push(i),
            _ if is_word(t, Keyword::CASE) => depth += 1,
            _ if is_word(t, Keyword::END) => depth -= 1,
            _ if depth == 0
                && is_word(t, Keyword::WHEN)
                && (next_word(i, Keyword::MATCHED) || next_word(i, Keyword::NOT)) =>
            {
                starts.push(i)
            }
            _ => {}
        }
    }
    if starts.is_empty() {
        return Ok(None);
    }
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    let mut changed = false;
    let mut i = 0;
    let mut s = 0;
    while s < starts.len() {
        out.extend_from_slice(&tokens[i..starts[s]]);
        // A run of clauses: up to a top-level semicolon or the end.
        let stop = ends
            .iter()
            .copied()
            .find(|&e| e > starts[s])
            .unwrap_or(tokens.len());
        let run_start = starts[s];
        let mut run = Vec::new();
        while s < starts.len() && starts[s] < stop {
            let end = starts
                .get(s + 1)
                .copied()
                .filter(|&e| e < stop)
                .unwrap_or(stop);
            run.push(clause(&tokens[starts[s]..end]));
            s += 1;
        }
        if run.iter().any(|c| c.do_nothing) {
            changed = true;
            rebuild(run, &mut out);
        } else {
            out.extend_from_slice(&tokens[run_start..stop]);
        }
        i = stop;
    }
    out.extend_from_slice(&tokens[i..]);
    if !changed {
        return Ok(None);
    }
    Ok(Some(super::procedures::render(&out)))
}

fn clause(tokens: &[Token]) -> Clause {
    let words: Vec<&Token> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let not = words.get(1).is_some_and(|t| is_word(t, Keyword::NOT));
    let by_source = not
        && words.get(3).is_some_and(|t| is_word(t, Keyword::BY))
        && words.get(4).is_some_and(|t| is_word(t, Keyword::SOURCE));
    let kind = match (not, by_source) {
        (false, _) => "MATCHED",
        (true, false) => "NOT MATCHED",
        (true, true) => "NOT MATCHED BY SOURCE",
    };
    // The first top-level AND and THEN after the head.
    let mut depth = 0i32;
    let (mut and, mut then) = (None, None);
    for (i, t) in tokens.iter().enumerate() {
        match t {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ if is_word(t, Keyword::CASE) => depth += 1,
            _ if is_word(t, Keyword::END) => depth -= 1,
            _ if depth == 0 && and.is_none() && then.is_none() && is_word(t, Keyword::AND) => {
                and = Some(i)
            }
            _ if depth == 0 && then.is_none() && is_word(t, Keyword::THEN) => then = Some(i),
            _ => {}
        }
    }
    let then = then.unwrap_or(tokens.len());
    let head_end = and.unwrap_or(then);
    let action = tokens[then..].to_vec();
    let action_words: Vec<&Token> = action
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let do_nothing = action_words.len() == 3
        && is_word(action_words[1], Keyword::DO)
        && is_word(action_words[2], Keyword::NOTHING);
    Clause {
        kind,
        head: tokens[..head_end].to_vec(),
        cond: and.map(|a| tokens[a + 1..then].to_vec()),
        action,
        do_nothing,
    }
}

fn rebuild(run: Vec<Clause>, out: &mut Vec<Token>) {
    let space = || Token::Whitespace(Whitespace::Space);
    // Per kind: guards from earlier conditional DO NOTHING clauses, or blocked entirely.
    let mut guards: Vec<(&'static str, Vec<Token>)> = Vec::new();
    let mut blocked: Vec<&'static str> = Vec::new();
    for c in run {
        if blocked.contains(&c.kind) {
            continue;
        }
        if c.do_nothing {
            match c.cond {
                None => blocked.push(c.kind),
                Some(cond) => {
                    let mut g = vec![
                        Token::make_keyword("NOT"),
                        space(),
                        Token::make_word("COALESCE", None),
                        Token::LParen,
                        Token::LParen,
                    ];
                    g.extend(cond);
                    g.extend([
                        Token::RParen,
                        Token::Comma,
                        space(),
                        Token::make_keyword("FALSE"),
                        Token::RParen,
                    ]);
                    guards.push((c.kind, g));
                }
            }
            continue;
        }
        out.extend(c.head);
        let mut conds: Vec<Vec<Token>> = Vec::new();
        if let Some(cond) = c.cond {
            let mut p = vec![Token::LParen];
            p.extend(cond);
            p.push(Token::RParen);
            conds.push(p);
        }
        conds.extend(
            guards
                .iter()
                .filter(|(k, _)| *k == c.kind)
                .map(|(_, g)| g.clone()),
        );
        for cond in conds {
            out.extend([space(), Token::make_keyword("AND"), space()]);
            out.extend(cond);
        }
        out.push(space());
        out.extend(c.action);
    }
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    fn squash(s: &str) -> String {
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn an_unconditional_do_nothing_drops_the_later_clauses_of_its_kind() {
        let sql = "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DO NOTHING \
                   WHEN NOT MATCHED THEN INSERT VALUES (s.id) WHEN MATCHED THEN DELETE";
        assert_eq!(
            squash(&rewrite(sql).unwrap().unwrap()),
            "MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED THEN INSERT VALUES (s.id)"
        );
    }

    #[test]
    fn a_conditional_do_nothing_guards_the_later_clauses_of_its_kind() {
        let sql = "MERGE INTO t USING s ON t.id = s.id \
                   WHEN MATCHED AND s.v = CASE WHEN s.x THEN 1 ELSE 2 END THEN DO NOTHING \
                   WHEN MATCHED AND s.gone THEN DELETE \
                   WHEN MATCHED THEN UPDATE SET v = s.v";
        assert_eq!(
            squash(&rewrite(sql).unwrap().unwrap()),
            "MERGE INTO t USING s ON t.id = s.id \
             WHEN MATCHED AND ( s.gone ) AND NOT COALESCE(( s.v = CASE WHEN s.x THEN 1 ELSE 2 END ), FALSE) THEN DELETE \
             WHEN MATCHED AND NOT COALESCE(( s.v = CASE WHEN s.x THEN 1 ELSE 2 END ), FALSE) THEN UPDATE SET v = s.v"
        );
    }

    #[test]
    fn other_text_is_untouched() {
        assert_eq!(rewrite("SELECT 'nothing'").unwrap(), None);
        assert_eq!(
            rewrite("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE").unwrap(),
            None
        );
        assert_eq!(
            rewrite("INSERT INTO t VALUES (1) ON CONFLICT (id) DO NOTHING").unwrap(),
            None
        );
    }
}
