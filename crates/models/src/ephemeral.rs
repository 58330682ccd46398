//! `ephemeral` models, as dbt has them: never built; every model that `ref()`s one gets
//! its SQL as a common table expression named `__dbt__cte__<name>`, put in front of (or
//! merged into) the model's own `WITH`.

/// The CTE name a `ref()` to ephemeral model `name` renders as.
pub fn cte_name(name: &str) -> String {
    format!("__dbt__cte__{name}")
}

/// Whether a table name read by a query is an ephemeral model's CTE.
pub fn is_cte(table: &str) -> bool {
    table
        .rsplit('.')
        .next()
        .is_some_and(|t| t.starts_with("__dbt__cte__"))
}

/// `sql` with `ctes` (name, SQL) defined first, in order.
pub fn with_ctes(sql: &str, ctes: &[(String, String)]) -> String {
    if ctes.is_empty() {
        return sql.to_string();
    }
    let defs = ctes
        .iter()
        .map(|(n, s)| format!("{n} as (\n{}\n)", s.trim().trim_end_matches(';').trim()))
        .collect::<Vec<_>>()
        .join(",\n");
    let start = sql.len() - skip_comments(sql).len();
    let (head, body) = sql.split_at(start);
    match keyword(body, "with") {
        Some(rest) => match keyword(rest, "recursive") {
            Some(rest) => format!("{head}with recursive {defs},\n{rest}"),
            None => format!("{head}with {defs},\n{rest}"),
        },
        None => format!("{head}with {defs}\n{body}"),
    }
}

/// `s` after leading white space and SQL comments.
fn skip_comments(mut s: &str) -> &str {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix("--") {
            s = rest.find('\n').map_or("", |i| &rest[i..]);
        } else if let Some(rest) = s.strip_prefix("/*") {
            s = rest.find("*/").map_or("", |i| &rest[i + 2..]);
        } else {
            return s;
        }
    }
}

/// What follows keyword `kw` at the start of `s` (case-insensitive, then a word break).
fn keyword<'a>(s: &'a str, kw: &str) -> Option<&'a str> {
    let s = skip_comments(s);
    let head = s.get(..kw.len())?;
    let next = s[kw.len()..].chars().next();
    (head.eq_ignore_ascii_case(kw) && next.is_none_or(|c| !c.is_alphanumeric() && c != '_'))
        .then(|| &s[kw.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctes_go_before_or_into_the_models_with() {
        let c = [("__dbt__cte__a".to_string(), "select 1 as x;".to_string())];
        assert_eq!(
            with_ctes("\n-- note\nselect * from __dbt__cte__a", &c),
            "\n-- note\nwith __dbt__cte__a as (\nselect 1 as x\n)\nselect * from __dbt__cte__a"
        );
        assert_eq!(
            with_ctes("WITH b AS (select 2) select * from b", &c),
            "with __dbt__cte__a as (\nselect 1 as x\n),\n b AS (select 2) select * from b"
        );
        assert_eq!(
            with_ctes("with recursive r as (select 1) select 1", &c),
            "with recursive __dbt__cte__a as (\nselect 1 as x\n),\n r as (select 1) select 1"
        );
        assert_eq!(
            with_ctes("withdrawals", &c),
            "with __dbt__cte__a as (\nselect 1 as x\n)\nwithdrawals"
        );
        assert!(is_cte("__dbt__cte__a") && is_cte("x.__dbt__cte__a") && !is_cte("a"));
    }
}
