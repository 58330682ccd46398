//! The options of `COPY ... TO STDOUT` / `FROM STDIN`, as PostgreSQL 15 reads them: the
//! `WITH (FORMAT csv, HEADER, ...)` list and the pre-9.0 words (`WITH CSV HEADER`,
//! `BINARY`, `DELIMITER AS ','`) that psql's `\copy` passes through. Defaults and the
//! combinations PostgreSQL refuses are PostgreSQL's.

use datafusion::sql::sqlparser::ast::{CopyLegacyCsvOption, CopyLegacyOption, CopyOption, Ident};

use crate::EngineError;

/// A COPY data format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    Text,
    Csv,
    Binary,
}

/// Which columns CSV output quotes whatever their value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ForceQuote {
    #[default]
    None,
    All,
    Columns(Vec<String>),
}

/// The options of one COPY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOptions {
    pub format: CopyFormat,
    /// Between columns: tab in text, comma in CSV.
    pub delimiter: u8,
    /// The text of NULL: `\N` in text, the empty (unquoted) string in CSV.
    pub null: String,
    /// A first line of column names (written, or skipped when reading).
    pub header: bool,
    /// CSV quote and escape characters (`"` both by default).
    pub quote: u8,
    pub escape: u8,
    pub force_quote: ForceQuote,
    /// CSV columns whose unquoted null string is read as that string, not NULL.
    pub force_not_null: Vec<String>,
    /// CSV columns whose quoted null string is read as NULL too.
    pub force_null: Vec<String>,
}

impl CopyOptions {
    /// The options of a COPY statement; `to` for COPY TO.
    pub fn of(
        options: &[CopyOption],
        legacy: &[CopyLegacyOption],
        to: bool,
    ) -> Result<CopyOptions, EngineError> {
        let mut format = None;
        let mut delimiter = None;
        let mut null = None;
        let mut header = None;
        let mut quote = None;
        let mut escape = None;
        let mut force_quote = ForceQuote::None;
        let mut force_not_null = Vec::new();
        let mut force_null = Vec::new();
        let mut set_format = |f: CopyFormat| -> Result<(), EngineError> {
            if format.replace(f).is_some() {
                return Err(conflicting("FORMAT"));
            }
            Ok(())
        };
        for o in options {
            match o {
                CopyOption::Format(f) => set_format(match f.value.to_ascii_lowercase().as_str() {
                    "text" => CopyFormat::Text,
                    "csv" => CopyFormat::Csv,
                    "binary" => CopyFormat::Binary,
                    other => {
                        return Err(EngineError::InvalidArgument(format!(
                            "COPY format \"{other}\" not recognized"
                        )));
                    }
                })?,
                CopyOption::Freeze(_) => {}
                CopyOption::Delimiter(c) => once(&mut delimiter, *c, "DELIMITER")?,
                CopyOption::Null(s) => once(&mut null, s.clone(), "NULL")?,
                CopyOption::Header(h) => once(&mut header, *h, "HEADER")?,
                CopyOption::Quote(c) => once(&mut quote, *c, "QUOTE")?,
                CopyOption::Escape(c) => once(&mut escape, *c, "ESCAPE")?,
                CopyOption::ForceQuote(cols) => force_quote = force_quote_of(cols),
                CopyOption::ForceNotNull(cols) => force_not_null = names(cols),
                CopyOption::ForceNull(cols) => force_null = names(cols),
                CopyOption::Encoding(e) => check_encoding(e)?,
            }
        }
        for o in legacy {
            match o {
                CopyLegacyOption::Binary => set_format(CopyFormat::Binary)?,
                CopyLegacyOption::Delimiter(c) => once(&mut delimiter, *c, "DELIMITER")?,
                CopyLegacyOption::Null(s) => once(&mut null, s.clone(), "NULL")?,
                CopyLegacyOption::Header => once(&mut header, true, "HEADER")?,
                CopyLegacyOption::Csv(csv) => {
                    set_format(CopyFormat::Csv)?;
                    for c in csv {
                        match c {
                            CopyLegacyCsvOption::Header => once(&mut header, true, "HEADER")?,
                            CopyLegacyCsvOption::Quote(q) => once(&mut quote, *q, "QUOTE")?,
                            CopyLegacyCsvOption::Escape(e) => once(&mut escape, *e, "ESCAPE")?,
                            CopyLegacyCsvOption::ForceQuote(cols) => {
                                force_quote = force_quote_of(cols)
                            }
                            CopyLegacyCsvOption::ForceNotNull(cols) => force_not_null = names(cols),
                        }
                    }
                }
                other => {
                    return Err(EngineError::Syntax(format!(
                        "COPY option {other} is not a PostgreSQL option"
                    )));
                }
            }
        }
        let format = format.unwrap_or(CopyFormat::Text);
        let csv = format == CopyFormat::Csv;
        let binary = format == CopyFormat::Binary;
        if binary && (delimiter.is_some() || null.is_some()) {
            return Err(EngineError::Syntax(
                "cannot specify DELIMITER or NULL in BINARY mode".into(),
            ));
        }
        if binary && header.is_some() {
            return Err(EngineError::NotSupported(
                "cannot specify HEADER in BINARY mode".into(),
            ));
        }
        if !csv && quote.is_some() {
            return Err(EngineError::NotSupported(
                "COPY quote available only in CSV mode".into(),
            ));
        }
        if !csv && escape.is_some() {
            return Err(EngineError::NotSupported(
                "COPY escape available only in CSV mode".into(),
            ));
        }
        if force_quote != ForceQuote::None && (!csv || !to) {
            return Err(EngineError::NotSupported(
                "COPY force quote available only in CSV mode, with COPY TO".into(),
            ));
        }
        if (!force_not_null.is_empty() || !force_null.is_empty()) && (!csv || to) {
            return Err(EngineError::NotSupported(
                "COPY force not null and force null available only in CSV mode, with COPY FROM"
                    .into(),
            ));
        }
        let delimiter = one_byte(
            delimiter.unwrap_or(if csv { ',' } else { '\t' }),
            "delimiter",
        )?;
        if delimiter == b'\r' || delimiter == b'\n' {
            return Err(EngineError::InvalidArgument(
                "COPY delimiter cannot be newline or carriage return".into(),
            ));
        }
        if !csv
            && b"\\.abcdefghijklmnopqrstuvwxyz0123456789".contains(&delimiter.to_ascii_lowercase())
        {
            return Err(EngineError::InvalidArgument(format!(
                "COPY delimiter cannot be \"{}\"",
                delimiter as char
            )));
        }
        let null = null.unwrap_or_else(|| if csv { String::new() } else { "\\N".into() });
        if null.contains(['\r', '\n']) {
            return Err(EngineError::InvalidArgument(
                "COPY null representation cannot use newline or carriage return".into(),
            ));
        }
        let quote = one_byte(quote.unwrap_or('"'), "quote")?;
        let escape = match escape {
            Some(e) => one_byte(e, "escape")?,
            None => quote,
        };
        if csv && delimiter == quote {
            return Err(EngineError::InvalidArgument(
                "COPY delimiter and quote must be different".into(),
            ));
        }
        if null.as_bytes().contains(&delimiter) {
            return Err(EngineError::InvalidArgument(
                "COPY delimiter must not appear in the NULL specification".into(),
            ));
        }
        Ok(CopyOptions {
            format,
            delimiter,
            null,
            header: header.unwrap_or(false),
            quote,
            escape,
            force_quote,
            force_not_null,
            force_null,
        })
    }
}

fn conflicting(option: &str) -> EngineError {
    EngineError::Syntax(format!("conflicting or redundant options: {option}"))
}

fn once<T>(slot: &mut Option<T>, value: T, option: &str) -> Result<(), EngineError> {
    if slot.replace(value).is_some() {
        return Err(conflicting(option));
    }
    Ok(())
}

fn one_byte(c: char, what: &str) -> Result<u8, EngineError> {
    if c.is_ascii() {
        Ok(c as u8)
    } else {
        Err(EngineError::InvalidArgument(format!(
            "COPY {what} must be a single one-byte character"
        )))
    }
}

fn names(cols: &[Ident]) -> Vec<String> {
    cols.iter().map(|c| c.value.clone()).collect()
}

/// `FORCE_QUOTE *`, which arrives as one column `"*"` ([`force_quote_all`]).
fn force_quote_of(cols: &[Ident]) -> ForceQuote {
    if cols.len() == 1 && cols[0].value == "*" {
        ForceQuote::All
    } else {
        ForceQuote::Columns(names(cols))
    }
}

/// `COPY ... (FORCE_QUOTE *)` and `... CSV FORCE QUOTE *` as `FORCE_QUOTE ("*")` and
/// `FORCE QUOTE "*"`, which
/// sqlparser 0.62 parses (it takes only a list of columns there); `None` when `sql` has
/// no such option. A column named `*` cannot be forced alone.
pub fn force_quote_all(sql: &str) -> Option<String> {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let upper = sql.to_ascii_uppercase();
    if !upper.contains("FORCE") || !upper.contains("COPY") {
        return None;
    }
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    let word = |t: &Token, w: &str| matches!(t, Token::Word(x) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w));
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len() + 2);
    let mut changed = false;
    for t in tokens {
        if t == Token::Mul {
            let mut back = out
                .iter()
                .rev()
                .filter(|t| !matches!(t, Token::Whitespace(_)));
            let all = Token::make_word("*", Some('"'));
            match back.next() {
                Some(w) if word(w, "FORCE_QUOTE") => {
                    out.extend([Token::LParen, all, Token::RParen]);
                    changed = true;
                    continue;
                }
                // The old syntax lists the columns without parentheses.
                Some(w) if word(w, "QUOTE") && back.next().is_some_and(|f| word(f, "FORCE")) => {
                    out.push(all);
                    changed = true;
                    continue;
                }
                _ => {}
            }
        }
        out.push(t);
    }
    changed.then(|| crate::procedures::render(&out))
}

fn check_encoding(e: &str) -> Result<(), EngineError> {
    match e.to_ascii_uppercase().replace(['-', '_'], "").as_str() {
        "UTF8" | "UNICODE" | "SQLASCII" => Ok(()),
        _ => Err(EngineError::NotSupported(format!(
            "COPY ENCODING '{e}' (tidepool reads and writes UTF8)"
        ))),
    }
}

/// The options of a COPY statement's text (tests of this module and its neighbours).
#[cfg(test)]
pub(crate) fn parsed(sql: &str) -> Result<CopyOptions, EngineError> {
    use datafusion::sql::sqlparser::ast::Statement;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    let Statement::Copy {
        to,
        options,
        legacy_options,
        ..
    } = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .map_err(EngineError::from)?
        .remove(0)
    else {
        return Err(EngineError::Syntax(format!("not a COPY: {sql}")));
    };
    CopyOptions::of(&options, &legacy_options, to)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(sql: &str) -> Result<CopyOptions, EngineError> {
        parsed(sql)
    }

    #[test]
    fn defaults_as_postgresql_has_them() {
        let text = of("COPY t FROM STDIN").unwrap();
        assert_eq!(
            (text.format, text.delimiter, text.null.as_str(), text.header),
            (CopyFormat::Text, b'\t', "\\N", false)
        );
        let csv = of("COPY t TO STDOUT (FORMAT csv, HEADER)").unwrap();
        assert_eq!(
            (csv.format, csv.delimiter, csv.null.as_str(), csv.header),
            (CopyFormat::Csv, b',', "", true)
        );
        assert_eq!((csv.quote, csv.escape), (b'"', b'"'));
        // psql's \copy ... with csv header passes the old words through.
        let legacy = of("COPY t FROM STDIN WITH CSV HEADER QUOTE AS '''' DELIMITER ';'").unwrap();
        assert_eq!(
            (legacy.format, legacy.header, legacy.quote, legacy.delimiter),
            (CopyFormat::Csv, true, b'\'', b';')
        );
        assert_eq!(
            of("COPY t TO STDOUT BINARY").unwrap().format,
            CopyFormat::Binary
        );
        assert_eq!(
            of("COPY t TO STDOUT (FORMAT csv, FORCE_QUOTE (a, b))")
                .unwrap()
                .force_quote,
            ForceQuote::Columns(vec!["a".into(), "b".into()])
        );
    }

    #[test]
    fn force_quote_star_means_every_column() {
        let sql = force_quote_all("COPY t TO STDOUT (FORMAT csv, FORCE_QUOTE *)").unwrap();
        assert_eq!(of(&sql).unwrap().force_quote, ForceQuote::All);
        let legacy = force_quote_all("copy t to stdout csv force quote *").unwrap();
        assert_eq!(of(&legacy).unwrap().force_quote, ForceQuote::All);
        assert_eq!(force_quote_all("SELECT 2 * 3"), None);
        assert_eq!(
            force_quote_all("COPY t TO STDOUT (FORMAT csv, FORCE_QUOTE (a))"),
            None
        );
    }

    #[test]
    fn refusals_as_postgresql_has_them() {
        for (sql, words) in [
            (
                "COPY t FROM STDIN (FORMAT text, QUOTE '\"')",
                "only in CSV mode",
            ),
            (
                "COPY t FROM STDIN (FORMAT binary, HEADER)",
                "HEADER in BINARY",
            ),
            ("COPY t FROM STDIN (FORMAT csv, FORMAT text)", "conflicting"),
            ("COPY t FROM STDIN (DELIMITER '\\')", "cannot be"),
            (
                "COPY t FROM STDIN (FORMAT csv, DELIMITER '\"')",
                "must be different",
            ),
            ("COPY t FROM STDIN (FORMAT xml)", "not recognized"),
            (
                "COPY t FROM STDIN (FORMAT csv, FORCE_QUOTE (a))",
                "with COPY TO",
            ),
            ("COPY t FROM STDIN (ENCODING 'LATIN1')", "UTF8"),
        ] {
            let e = of(sql).expect_err(sql).to_string();
            assert!(e.contains(words), "{sql}: {e}");
        }
    }
}
