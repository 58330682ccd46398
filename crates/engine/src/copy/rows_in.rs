//! Splitting `COPY FROM STDIN` text and CSV data into rows of fields, as PostgreSQL 15
//! reads them. Data arrives in chunks cut anywhere (CopyData messages); a row is whole
//! once its line end is seen (in CSV, outside quotes). Text format: fields split at the
//! delimiter, backslash escapes (`\t`, `\n`, `\\`, octal `\123`, hex `\x41`), a field that
//! is exactly the null string (`\N`) is NULL. CSV: quoted fields may hold delimiters,
//! quotes (doubled, or after the escape character) and line ends; an unquoted field equal
//! to the null string (empty by default) is NULL, a quoted one is not. A line `\.` ends
//! the data in both. Line numbers count from 1, as PostgreSQL's CONTEXT does.
//!
//! Lines are found with `memchr` where the chunk lies (only a line cut by a chunk's end is
//! copied), and fields go straight into per-column buffers laid out as a string array's
//! values and offsets ([`Staged`]): no allocation per row or field.

use std::collections::VecDeque;

use super::options::{CopyFormat, CopyOptions};

/// Rows per staged batch.
pub const BATCH_ROWS: usize = 16 * 1024;

/// Bytes of field data per staged batch (a batch of wide rows ends early; string offsets
/// are 32-bit).
const BATCH_BYTES: usize = 64 << 20;

/// A malformed row: what is wrong and on which line (22P04).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: u64,
    pub message: String,
}

fn row_error(line: u64, message: impl Into<String>) -> RowError {
    RowError {
        line,
        message: message.into(),
    }
}

/// One column's fields of a run of rows: the bytes back to back, where each ends, and
/// which are NULL.
#[derive(Debug)]
pub struct StagedColumn {
    pub values: Vec<u8>,
    /// `rows + 1` offsets into `values`, from 0.
    pub offsets: Vec<i32>,
    pub valid: Vec<bool>,
    pub nulls: usize,
}

impl StagedColumn {
    fn new() -> StagedColumn {
        StagedColumn {
            values: Vec::new(),
            offsets: vec![0],
            valid: Vec::new(),
            nulls: 0,
        }
    }

    pub(super) fn push_null(&mut self) {
        self.offsets.push(self.values.len() as i32);
        self.valid.push(false);
        self.nulls += 1;
    }

    /// The value written to `values` since the last one ends here.
    pub(super) fn end_value(&mut self) {
        self.offsets.push(self.values.len() as i32);
        self.valid.push(true);
    }

    /// Row `i`'s bytes, `None` for NULL.
    pub fn value(&self, i: usize) -> Option<&[u8]> {
        self.valid[i].then(|| &self.values[self.offsets[i] as usize..self.offsets[i + 1] as usize])
    }
}

/// Rows split into their columns' fields, with the line each row came from.
#[derive(Debug)]
pub struct Staged {
    pub columns: Vec<StagedColumn>,
    pub lines: Vec<u64>,
}

impl Staged {
    pub(super) fn new(width: usize) -> Staged {
        Staged {
            columns: (0..width).map(|_| StagedColumn::new()).collect(),
            lines: Vec::with_capacity(BATCH_ROWS),
        }
    }

    /// An empty batch sized like `full`, the one before it: the next batch of a COPY is
    /// about as big, so its buffers grow without reallocating and copying.
    fn sized_like(full: &Staged) -> Staged {
        let rows = full.rows();
        Staged {
            columns: full
                .columns
                .iter()
                .map(|c| {
                    let mut offsets = Vec::with_capacity(rows + 1);
                    offsets.push(0);
                    StagedColumn {
                        values: Vec::with_capacity(c.values.len() + c.values.len() / 8),
                        offsets,
                        valid: Vec::with_capacity(rows),
                        nulls: 0,
                    }
                })
                .collect(),
            lines: Vec::with_capacity(BATCH_ROWS),
        }
    }

    pub fn rows(&self) -> usize {
        self.lines.len()
    }

    fn bytes(&self) -> usize {
        self.columns.iter().map(|c| c.values.len()).sum()
    }
}

/// Where a CSV line-end scan stands at the end of the bytes scanned so far.
#[derive(Debug, Default, Clone, Copy)]
struct Scan {
    in_quotes: bool,
    /// The last byte was the escape character inside quotes.
    escaped: bool,
}

/// Splits chunks of COPY data into staged rows.
pub struct RowSplitter {
    options: CopyOptions,
    /// The copied columns' names (for messages).
    columns: Vec<String>,
    /// Bytes of a row not yet ended, and the CSV scan state at their end.
    carry: Vec<u8>,
    scan: Scan,
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
    /// Rows being staged, and full batches of rows not yet taken.
    current: Staged,
    full: VecDeque<Staged>,
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
            columns: columns.to_vec(),
            carry: Vec::new(),
            scan: Scan::default(),
            line: 0,
            ended: false,
            current: Staged::new(columns.len()),
            full: VecDeque::new(),
        }
    }

    /// Whether the end marker `\.` has been read.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The next full batch of rows, or (`last`: the data is complete) whatever is left.
    pub fn take(&mut self, last: bool) -> Option<Staged> {
        if let Some(s) = self.full.pop_front() {
            return Some(s);
        }
        if last && self.current.rows() > 0 {
            let width = self.columns.len();
            return Some(std::mem::replace(&mut self.current, Staged::new(width)));
        }
        None
    }

    /// Splits the rows `chunk` completes.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), RowError> {
        if self.ended {
            return Ok(());
        }
        let mut rest = chunk;
        if !self.carry.is_empty() {
            let mut scan = self.scan;
            match self.line_end(rest, &mut scan) {
                None => {
                    self.carry.extend_from_slice(rest);
                    self.scan = scan;
                    return Ok(());
                }
                Some(end) => {
                    let mut line = std::mem::take(&mut self.carry);
                    line.extend_from_slice(&rest[..end]);
                    self.scan = Scan::default();
                    self.line_done(&line)?;
                    line.clear();
                    self.carry = line;
                    rest = &rest[end + 1..];
                }
            }
        }
        while !self.ended {
            let mut scan = Scan::default();
            match self.line_end(rest, &mut scan) {
                None => {
                    self.carry.extend_from_slice(rest);
                    self.scan = scan;
                    break;
                }
                Some(end) => {
                    self.line_done(&rest[..end])?;
                    rest = &rest[end + 1..];
                }
            }
        }
        Ok(())
    }

    /// The last row, when the data does not end with a line end.
    pub fn finish(&mut self) -> Result<(), RowError> {
        if self.ended || self.carry.is_empty() {
            return Ok(());
        }
        let rest = std::mem::take(&mut self.carry);
        let rest = rest.strip_suffix(b"\r").unwrap_or(&rest);
        self.line += 1;
        if self.options.format == CopyFormat::Csv && self.scan.in_quotes {
            return Err(row_error(self.line, "unterminated CSV quoted field"));
        }
        self.row(rest)
    }

    /// Where the line that `data` continues ends (its `\n`), from the scan state `scan`
    /// (updated to the end of `data` when the line does not end in it).
    fn line_end(&self, data: &[u8], scan: &mut Scan) -> Option<usize> {
        if self.options.format != CopyFormat::Csv {
            return memchr::memchr(b'\n', data);
        }
        let (quote, escape) = (self.options.quote, self.options.escape);
        let mut i = 0;
        if std::mem::take(&mut scan.escaped) {
            match data.first() {
                None => {
                    scan.escaped = true;
                    return None;
                }
                Some(&b) if b == quote || b == escape => i = 1,
                Some(_) => {}
            }
        }
        loop {
            let rest = &data[i..];
            if scan.in_quotes {
                let found = if escape != quote {
                    memchr::memchr2(quote, escape, rest)
                } else {
                    memchr::memchr(quote, rest)
                };
                let at = i + found?;
                if data[at] == escape && escape != quote {
                    match data.get(at + 1) {
                        None => {
                            scan.escaped = true;
                            return None;
                        }
                        Some(&b) if b == quote || b == escape => i = at + 2,
                        Some(_) => i = at + 1,
                    }
                    continue;
                }
                scan.in_quotes = false;
                i = at + 1;
            } else {
                let at = i + memchr::memchr2(b'\n', quote, rest)?;
                if data[at] == b'\n' {
                    return Some(at);
                }
                scan.in_quotes = true;
                i = at + 1;
            }
        }
    }

    fn line_done(&mut self, line: &[u8]) -> Result<(), RowError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        self.line += 1;
        self.row(line)
    }

    fn row(&mut self, line: &[u8]) -> Result<(), RowError> {
        if line == b"\\." {
            self.ended = true;
            return Ok(());
        }
        if std::mem::take(&mut self.header) {
            return Ok(());
        }
        let fields = match self.options.format {
            CopyFormat::Csv => self.csv_fields(line)?,
            _ => self.text_fields(line)?,
        };
        if fields < self.columns.len() {
            let missing = &self.columns[fields];
            return Err(row_error(
                self.line,
                format!("missing data for column \"{missing}\""),
            ));
        }
        self.current.lines.push(self.line);
        let rows = self.current.rows();
        // The byte size is a sum over the columns: looked at every 64 rows.
        if rows >= BATCH_ROWS || (rows.is_multiple_of(64) && self.current.bytes() >= BATCH_BYTES) {
            let next = Staged::sized_like(&self.current);
            let full = std::mem::replace(&mut self.current, next);
            self.full.push_back(full);
        }
        Ok(())
    }

    /// Stages a text-format line's fields; returns how many there were.
    fn text_fields(&mut self, line: &[u8]) -> Result<usize, RowError> {
        let delimiter = self.options.delimiter;
        let null = self.options.null.as_bytes();
        let mut column = 0;
        let mut start = 0;
        loop {
            // The field ends at a delimiter that no backslash escapes.
            let mut i = start;
            let mut escaped = false;
            let end = loop {
                match memchr::memchr2(delimiter, b'\\', &line[i..]) {
                    None => break line.len(),
                    Some(k) if line[i + k] == delimiter => break i + k,
                    Some(k) => {
                        escaped = true;
                        // A backslash at the end of the line stands for itself.
                        i = (i + k + 2).min(line.len());
                    }
                }
            };
            let Some(col) = self.current.columns.get_mut(column) else {
                return Err(row_error(
                    self.line,
                    "extra data after last expected column",
                ));
            };
            let raw = &line[start..end];
            if raw == null {
                col.push_null();
            } else {
                if escaped {
                    unescape_text(raw, &mut col.values);
                } else {
                    col.values.extend_from_slice(raw);
                }
                col.end_value();
            }
            column += 1;
            if end == line.len() {
                return Ok(column);
            }
            start = end + 1;
        }
    }

    /// Stages a CSV line's fields; returns how many there were.
    fn csv_fields(&mut self, line: &[u8]) -> Result<usize, RowError> {
        let CopyOptions {
            delimiter,
            quote,
            escape,
            ..
        } = self.options;
        let null = self.options.null.as_bytes();
        let mut column = 0;
        let mut i = 0;
        loop {
            let Some(col) = self.current.columns.get_mut(column) else {
                return Err(row_error(
                    self.line,
                    "extra data after last expected column",
                ));
            };
            let field_start = i;
            let value_start = col.values.len();
            let mut quoted = false;
            match memchr::memchr2(delimiter, quote, &line[i..]) {
                // Unquoted: the bytes up to the delimiter (or the line's end).
                None => i = line.len(),
                Some(k) if line[i + k] == delimiter => i += k,
                Some(_) => {
                    // Unquoted runs and quoted parts, up to a delimiter outside quotes.
                    while i < line.len() && line[i] != delimiter {
                        if line[i] != quote {
                            col.values.push(line[i]);
                            i += 1;
                            continue;
                        }
                        quoted = true;
                        i += 1;
                        loop {
                            let Some(&b) = line.get(i) else {
                                return Err(row_error(self.line, "unterminated CSV quoted field"));
                            };
                            if b == escape
                                && i + 1 < line.len()
                                && (line[i + 1] == quote
                                    || (escape != quote && line[i + 1] == escape))
                            {
                                col.values.push(line[i + 1]);
                                i += 2;
                                continue;
                            }
                            i += 1;
                            if b == quote {
                                break;
                            }
                            col.values.push(b);
                        }
                    }
                }
            }
            if !quoted {
                col.values.extend_from_slice(&line[field_start..i]);
            }
            let is_null = if quoted {
                self.force_null[column] && &col.values[value_start..] == null
            } else {
                &line[field_start..i] == null && !self.force_not_null[column]
            };
            if is_null {
                col.values.truncate(value_start);
                col.push_null();
            } else {
                col.end_value();
            }
            column += 1;
            if i >= line.len() {
                return Ok(column);
            }
            i += 1;
        }
    }
}

/// A text-format field with its backslash escapes resolved, appended to `out` (octal and
/// hex escapes may spell bytes that are not UTF-8: the batch refuses them, as PostgreSQL
/// does).
fn unescape_text(bytes: &[u8], out: &mut Vec<u8>) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    type Row = (u64, Vec<Option<String>>);

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
            let result = data
                .chunks(size)
                .try_for_each(|c| s.push(c))
                .and_then(|()| s.finish())
                .map(|()| {
                    let mut out = Vec::new();
                    while let Some(staged) = s.take(true) {
                        for r in 0..staged.rows() {
                            let fields = staged
                                .columns
                                .iter()
                                .map(|c| {
                                    c.value(r).map(|v| String::from_utf8_lossy(v).into_owned())
                                })
                                .collect();
                            out.push((staged.lines[r], fields));
                        }
                    }
                    out
                });
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
            &["a", "b"],
            b"a|b\n1|nil\n2|3",
        )
        .unwrap();
        assert_eq!(
            header,
            vec![(2, vec![s("1"), None]), (3, vec![s("2"), s("3")])]
        );
        // An escaped delimiter is data.
        let got = rows("COPY t FROM STDIN", &["a", "b"], b"x\\\ty\tz\n").unwrap();
        assert_eq!(got, vec![(1, vec![s("x\ty"), s("z")])]);
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
            &["a", "b"],
            b"\"a\\\"b\\\\\",\"c\\\nd\"\r\nx\"y\"z,\n",
        )
        .unwrap();
        assert_eq!(
            escaped,
            vec![
                (1, vec![s("a\"b\\"), s("c\\\nd")]),
                (2, vec![s("xyz"), None]),
            ]
        );
    }

    #[test]
    fn malformed_rows_name_their_line() {
        let e = rows("COPY t FROM STDIN (FORMAT csv)", &["a"], b"1\n\"open\n").unwrap_err();
        assert_eq!(
            (e.line, e.message.as_str()),
            (2, "unterminated CSV quoted field")
        );
        let e = rows("COPY t FROM STDIN", &["a", "b"], b"1\t2\n3\n").unwrap_err();
        assert_eq!(
            (e.line, e.message.as_str()),
            (2, "missing data for column \"b\"")
        );
        let e = rows("COPY t FROM STDIN (FORMAT csv)", &["a"], b"1\n2,3\n").unwrap_err();
        assert_eq!(
            (e.line, e.message.as_str()),
            (2, "extra data after last expected column")
        );
    }

    #[test]
    fn batches_are_cut_at_batch_rows() {
        let columns = vec!["a".to_string()];
        let mut s = RowSplitter::new(options("COPY t FROM STDIN"), &columns);
        let data = "7\n".repeat(BATCH_ROWS + 3);
        s.push(data.as_bytes()).unwrap();
        assert_eq!(s.take(false).map(|b| b.rows()), Some(BATCH_ROWS));
        assert!(s.take(false).is_none());
        assert_eq!(
            s.take(true).map(|b| (b.rows(), b.lines[0])),
            Some((3, BATCH_ROWS as u64 + 1))
        );
    }
}
