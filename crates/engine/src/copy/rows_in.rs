//! Splitting `COPY FROM STDIN` text and CSV data into rows of fields, as PostgreSQL 15
//! reads them. Data arrives in chunks cut anywhere (CopyData messages); a row is whole
//! once its line end is seen (in CSV, outside quotes). Text format: fields split at the
//! delimiter, backslash escapes (`\t`, `\n`, `\\`, octal `\123`, hex `\x41`), a field that
//! is exactly the null string (`\N`) is NULL. CSV: quoted fields may hold delimiters,
//! quotes (doubled, or after the escape character) and line ends; an unquoted field equal
//! to the null string (empty by default) is NULL, a quoted one is not. A line `\.` ends
//! the data in both. Line numbers count from 1, as PostgreSQL's CONTEXT does.

use super::options::{CopyFormat, CopyOptions};

/// A malformed row: what is wrong and on which line (22P04 and friends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: u64,
    pub message: String,
    /// 22021 for bytes that are not UTF-8, else 22P04.
    pub invalid_encoding: bool,
}

/// One row: its line number and its fields (`None` is NULL).
pub type Row = (u64, Vec<Option<String>>);

/// Splits chunks of COPY data into rows.
pub struct RowSplitter {
    options: CopyOptions,
    /// Bytes of a row not yet ended.
    carry: Vec<u8>,
    /// Lines consumed (the number of the last whole line).
    line: u64,
    /// The header line is still to be skipped.
    header: bool,
    /// `\.` was seen: the rest is ignored.
    ended: bool,
    /// Per column: an unquoted null string is a string (FORCE_NOT_NULL), a quoted one is
    /// NULL (FORCE_NULL).
    force_not_null: Vec<bool>,
    force_null: Vec<bool>,
}

impl RowSplitter {
    /// A splitter for rows of `columns` (their names, for FORCE_NOT_NULL / FORCE_NULL).
    pub fn new(options: CopyOptions, columns: &[String]) -> RowSplitter {
        let flags = |names: &[String]| -> Vec<bool> {
            columns
                .iter()
                .map(|c| names.iter().any(|n| n == c))
                .collect()
        };
        RowSplitter {
            header: options.header,
            force_not_null: flags(&options.force_not_null),
            force_null: flags(&options.force_null),
            options,
            carry: Vec::new(),
            line: 0,
            ended: false,
        }
    }

    /// Whether the end marker `\.` has been read.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The rows `chunk` completes, appended to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<Row>) -> Result<(), RowError> {
        if self.ended {
            return Ok(());
        }
        let csv = self.options.format == CopyFormat::Csv;
        // Where the scan resumes: a CSV row's quote state is found again from its start.
        let mut data = std::mem::take(&mut self.carry);
        let resume = data.len();
        data.extend_from_slice(chunk);
        let mut start = 0;
        let mut i = if csv { 0 } else { resume };
        let mut in_quotes = false;
        while i < data.len() {
            let b = data[i];
            if csv {
                if in_quotes {
                    if b == self.options.escape
                        && self.options.escape != self.options.quote
                        && i + 1 < data.len()
                        && (data[i + 1] == self.options.quote || data[i + 1] == self.options.escape)
                    {
                        i += 2;
                        continue;
                    }
                    if b == self.options.quote {
                        in_quotes = false;
                    }
                    i += 1;
                    continue;
                }
                if b == self.options.quote {
                    in_quotes = true;
                    i += 1;
                    continue;
                }
            }
            if b == b'\n' {
                let mut end = i;
                if end > start && data[end - 1] == b'\r' {
                    end -= 1;
                }
                self.line += 1;
                self.row(&data[start..end], out)?;
                start = i + 1;
                if self.ended {
                    return Ok(());
                }
            }
            i += 1;
        }
        self.carry = data[start..].to_vec();
        Ok(())
    }

    /// The last row, when the data does not end with a line end.
    pub fn finish(&mut self, out: &mut Vec<Row>) -> Result<(), RowError> {
        if self.ended || self.carry.is_empty() {
            return Ok(());
        }
        let rest = std::mem::take(&mut self.carry);
        let rest = rest.strip_suffix(b"\r").unwrap_or(&rest);
        self.line += 1;
        if self.options.format == CopyFormat::Csv && unterminated_quote(rest, &self.options) {
            return Err(self.error("unterminated CSV quoted field"));
        }
        self.row(rest, out)
    }

    fn error(&self, message: &str) -> RowError {
        RowError {
            line: self.line,
            message: message.to_string(),
            invalid_encoding: false,
        }
    }

    fn row(&mut self, line: &[u8], out: &mut Vec<Row>) -> Result<(), RowError> {
        if line == b"\\." {
            self.ended = true;
            return Ok(());
        }
        if std::mem::take(&mut self.header) {
            return Ok(());
        }
        let text = std::str::from_utf8(line).map_err(|e| {
            let bad = line[e.valid_up_to()];
            RowError {
                line: self.line,
                message: format!("invalid byte sequence for encoding \"UTF8\": 0x{bad:02x}"),
                invalid_encoding: true,
            }
        })?;
        let fields = match self.options.format {
            CopyFormat::Csv => self.csv_fields(text)?,
            _ => self.text_fields(text)?,
        };
        out.push((self.line, fields));
        Ok(())
    }

    fn text_fields(&self, line: &str) -> Result<Vec<Option<String>>, RowError> {
        let delimiter = self.options.delimiter;
        let bytes = line.as_bytes();
        let mut fields = Vec::new();
        let mut start = 0;
        let mut i = 0;
        let mut escaped = false;
        loop {
            let end_of_field = i == bytes.len() || bytes[i] == delimiter;
            if end_of_field {
                let raw = &line[start..i];
                fields.push(if raw == self.options.null {
                    None
                } else if escaped {
                    Some(unescape_text(raw))
                } else {
                    Some(raw.to_string())
                });
                if i == bytes.len() {
                    break;
                }
                i += 1;
                start = i;
                escaped = false;
                continue;
            }
            if bytes[i] == b'\\' {
                escaped = true;
                i += 2;
                if i > bytes.len() {
                    // A backslash at the end of the line stands for itself.
                    i = bytes.len();
                }
                continue;
            }
            i += 1;
        }
        Ok(fields)
    }

    fn csv_fields(&self, line: &str) -> Result<Vec<Option<String>>, RowError> {
        let CopyOptions {
            delimiter,
            quote,
            escape,
            ..
        } = self.options;
        let bytes = line.as_bytes();
        let mut fields = Vec::new();
        let mut i = 0;
        loop {
            let column = fields.len();
            let mut value: Vec<u8> = Vec::new();
            let mut quoted = false;
            let field_start = i;
            // A field: unquoted runs and quoted parts, up to a delimiter outside quotes.
            while i < bytes.len() && bytes[i] != delimiter {
                if bytes[i] == quote {
                    quoted = true;
                    i += 1;
                    loop {
                        if i >= bytes.len() {
                            return Err(self.error("unterminated CSV quoted field"));
                        }
                        let b = bytes[i];
                        if b == escape
                            && i + 1 < bytes.len()
                            && (bytes[i + 1] == quote
                                || (escape != quote && bytes[i + 1] == escape))
                        {
                            value.push(bytes[i + 1]);
                            i += 2;
                            continue;
                        }
                        if b == quote {
                            i += 1;
                            break;
                        }
                        value.push(b);
                        i += 1;
                    }
                } else {
                    value.push(bytes[i]);
                    i += 1;
                }
            }
            let raw = &line[field_start..i];
            let is_null = if quoted {
                self.force_null.get(column).copied().unwrap_or(false)
                    && value == self.options.null.as_bytes()
            } else {
                raw == self.options.null
                    && !self.force_not_null.get(column).copied().unwrap_or(false)
            };
            fields.push(if is_null {
                None
            } else {
                // Whole UTF-8 characters were copied: the value is UTF-8.
                Some(String::from_utf8(value).unwrap_or_default())
            });
            if i >= bytes.len() {
                break;
            }
            i += 1;
        }
        Ok(fields)
    }
}

/// Whether a CSV line ends inside a quoted field.
fn unterminated_quote(line: &[u8], o: &CopyOptions) -> bool {
    let mut in_quotes = false;
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        if in_quotes && b == o.escape && o.escape != o.quote && i + 1 < line.len() {
            i += 2;
            continue;
        }
        if b == o.quote {
            in_quotes = !in_quotes;
        }
        i += 1;
    }
    in_quotes
}

/// A text-format field with its backslash escapes resolved.
fn unescape_text(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'\\' || i + 1 >= bytes.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let c = bytes[i + 1];
        i += 2;
        match c {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                for _ in 0..2 {
                    match bytes.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            b'x' if bytes.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut v = 0u8;
                for _ in 0..2 {
                    match bytes.get(i) {
                        Some(d) if d.is_ascii_hexdigit() => {
                            v = v * 16 + (*d as char).to_digit(16).unwrap_or(0) as u8;
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(v);
            }
            other => out.push(other),
        }
    }
    // Octal and hex escapes may spell bytes that are not UTF-8; PostgreSQL refuses them
    // too (as an encoding error); here they become U+FFFD.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(sql: &str) -> CopyOptions {
        crate::copy::options::parsed(sql).unwrap()
    }

    /// Rows of `data` fed in chunks of every size from 1 to its length: the result must
    /// not depend on where the chunks are cut.
    fn rows(sql: &str, columns: &[&str], data: &[u8]) -> Result<Vec<Row>, RowError> {
        let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
        let mut first = None;
        for size in 1..=data.len().max(1) {
            let mut s = RowSplitter::new(options(sql), &columns);
            let mut out = Vec::new();
            let result = data
                .chunks(size)
                .try_for_each(|c| s.push(c, &mut out))
                .and_then(|()| s.finish(&mut out))
                .map(|()| out);
            match &first {
                None => first = Some(result),
                Some(f) => assert_eq!(f, &result, "chunks of {size}"),
            }
        }
        first.unwrap()
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn text_format() {
        let got = rows(
            "COPY t FROM STDIN",
            &["a", "b", "c"],
            b"1\tx\\ty\t\\N\r\n2\t\\\\\\101\\x42\t\n\\.\nignored\n",
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                (1, vec![s("1"), s("x\ty"), None]),
                (2, vec![s("2"), s("\\AB"), s("")]),
            ]
        );
        let header = rows(
            "COPY t FROM STDIN (HEADER, DELIMITER '|', NULL 'nil')",
            &["a"],
            b"a|b\n1|nil\n2|3",
        )
        .unwrap();
        assert_eq!(
            header,
            vec![(2, vec![s("1"), None]), (3, vec![s("2"), s("3")])]
        );
    }

    #[test]
    fn csv_format() {
        let got = rows(
            "COPY t FROM STDIN (FORMAT csv, HEADER)",
            &["a", "b", "c"],
            b"a,b,c\n1,\"x,\"\"y\"\"\nz\",\n2,\"\",plain\n",
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                (2, vec![s("1"), s("x,\"y\"\nz"), None]),
                // Lines are rows, as PostgreSQL counts them (a quoted line end is data).
                (3, vec![s("2"), s(""), s("plain")]),
            ]
        );
        let forced = rows(
            "COPY t FROM STDIN (FORMAT csv, NULL 'N', FORCE_NOT_NULL (a), FORCE_NULL (b))",
            &["a", "b"],
            b"N,\"N\"\n",
        )
        .unwrap();
        assert_eq!(forced, vec![(1, vec![s("N"), None])]);
        let escaped = rows(
            "COPY t FROM STDIN (FORMAT csv, ESCAPE '\\')",
            &["a"],
            b"\"a\\\"b\"\n",
        )
        .unwrap();
        assert_eq!(escaped, vec![(1, vec![s("a\"b")])]);
    }

    #[test]
    fn malformed_rows_name_their_line() {
        let e = rows("COPY t FROM STDIN (FORMAT csv)", &["a"], b"1\n\"open\n").unwrap_err();
        assert_eq!(
            (e.line, e.message.as_str()),
            (2, "unterminated CSV quoted field")
        );
        let e = rows("COPY t FROM STDIN", &["a"], b"ok\nbad\xff\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.invalid_encoding && e.message.contains("0xff"), "{e:?}");
    }
}
