//! Rows of COPY text or CSV fields as a record batch of the target columns' types. Each
//! column is converted at once (arrow's casts, `bytea` from its hex or escape text); a
//! value that does not convert fails the COPY with PostgreSQL's words and the line and
//! column it came from, as PostgreSQL's CONTEXT names them.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BinaryBuilder, Date32Array, Decimal128Array, RecordBatch, StringArray,
};
use datafusion::arrow::buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, SchemaRef};

use super::rows_in::{Staged, StagedColumn};
use crate::EngineError;

/// Builds batches of `schema` (the copied columns, in the order the data has them).
pub struct BatchBuilder {
    schema: SchemaRef,
    /// The table, for messages (`COPY t, line 3, column a`).
    table: String,
}

impl BatchBuilder {
    pub fn new(schema: SchemaRef, table: String) -> BatchBuilder {
        BatchBuilder { schema, table }
    }

    /// The table, as messages name it.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The batch of the `staged` rows (each has a field per column).
    pub fn build(&self, staged: Staged) -> Result<RecordBatch, EngineError> {
        let Staged { columns, lines } = staged;
        let columns = columns
            .into_iter()
            .enumerate()
            .map(|(c, col)| self.column(col, &lines, c))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    /// A column's fields as strings, without copying them; bytes that are not UTF-8
    /// (from octal or hex escapes) fail the COPY at their line.
    fn text(&self, col: StagedColumn, lines: &[u64]) -> Result<StringArray, EngineError> {
        let boundaries = || {
            col.offsets.iter().all(|&o| {
                col.values
                    .get(o as usize)
                    .is_none_or(|&b| (b as i8) >= -0x40)
            })
        };
        if simdutf8::basic::from_utf8(&col.values).is_ok() && boundaries() {
            let StagedColumn {
                values,
                offsets,
                valid,
                nulls,
            } = col;
            let nulls = (nulls > 0).then(|| NullBuffer::from(valid));
            let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
            return Ok(StringArray::try_new(
                offsets,
                Buffer::from_vec(values),
                nulls,
            )?);
        }
        for (row, line) in lines.iter().enumerate() {
            if let Some(v) = col.value(row)
                && let Err(e) = std::str::from_utf8(v)
            {
                let bad = v[e.valid_up_to()];
                return Err(EngineError::InvalidEncoding(format!(
                    "invalid byte sequence for encoding \"UTF8\": 0x{bad:02x} (COPY {}, line {line})",
                    self.table
                )));
            }
        }
        Err(EngineError::InvalidEncoding(format!(
            "invalid byte sequence for encoding \"UTF8\" (COPY {})",
            self.table
        )))
    }

    fn column(&self, col: StagedColumn, lines: &[u64], c: usize) -> Result<ArrayRef, EngineError> {
        let field = self.schema.field(c);
        let text = self.text(col, lines)?;
        let target = field.data_type();
        if let Some(fast) = fast_parse(&text, target) {
            return Ok(fast);
        }
        let converted: ArrayRef = match target {
            DataType::Utf8 => Arc::new(text),
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
                let mut b = BinaryBuilder::with_capacity(text.len(), 0);
                for (i, v) in text.iter().enumerate() {
                    match v {
                        None => b.append_null(),
                        Some(v) => match crate::bytea::decode(v) {
                            Some(bytes) => b.append_value(bytes),
                            None => {
                                return Err(self.bad_value(lines[i], c, v, target));
                            }
                        },
                    }
                }
                let binary: ArrayRef = Arc::new(b.finish());
                cast_with_options(&binary, target, &CastOptions::default())?
            }
            _ => {
                let options = CastOptions {
                    safe: true,
                    ..Default::default()
                };
                let input = trimmed_for(target, &text);
                match cast_with_options(&input, target, &options) {
                    Ok(a) => {
                        if a.null_count() != input.null_count() {
                            let i = (0..input.len())
                                .find(|&i| a.is_null(i) && !input.is_null(i))
                                .unwrap_or(0);
                            return Err(self.bad_value(lines[i], c, text.value(i), target));
                        }
                        a
                    }
                    Err(e) => {
                        return Err(EngineError::NotSupported(format!(
                            "COPY into a column of type {target} ({e})"
                        )));
                    }
                }
            }
        };
        Ok(converted)
    }

    fn bad_value(&self, line: u64, c: usize, value: &str, target: &DataType) -> EngineError {
        let column = self.schema.field(c).name();
        let context = format!(
            "COPY {}, line {line}, column {column}: \"{value}\"",
            self.table
        );
        let type_name = sql_name(target);
        if target.is_integer() && value.trim().parse::<i128>().is_ok() {
            return EngineError::NumericOutOfRange(format!(
                "value \"{value}\" is out of range for type {type_name} ({context})"
            ));
        }
        EngineError::InvalidText(format!(
            "invalid input syntax for type {type_name}: \"{value}\" ({context})"
        ))
    }
}

/// A column of decimals or dates in their plain forms (`-12.5`, `2024-02-29`: what
/// exports and COPY TO write), parsed without arrow's general casts (which format and
/// parse through wide integers). `None` when any value has another form: the column takes
/// the cast, which reads every form and words the errors.
fn fast_parse(text: &StringArray, target: &DataType) -> Option<ArrayRef> {
    let nulls = text.nulls().cloned();
    let each = |f: &dyn Fn(&[u8]) -> Option<i128>| -> Option<Vec<i128>> {
        (0..text.len())
            .map(|i| {
                if text.is_null(i) {
                    Some(0)
                } else {
                    f(text.value(i).as_bytes())
                }
            })
            .collect()
    };
    match target {
        DataType::Decimal128(p, s) if *s >= 0 => {
            let (p, s) = (*p, *s);
            let values = each(&|v| plain_decimal(v, p, s as u32))?;
            let a = Decimal128Array::new(values.into(), nulls)
                .with_precision_and_scale(p, s)
                .ok()?;
            Some(Arc::new(a))
        }
        DataType::Date32 => {
            let values = each(&|v| plain_date(v).map(i128::from))?;
            let days: Vec<i32> = values.into_iter().map(|d| d as i32).collect();
            Some(Arc::new(Date32Array::new(days.into(), nulls)))
        }
        _ => None,
    }
}

/// `[+-]digits[.digits]` with at most `scale` digits after the point and `precision -
/// scale` before it, as an integer of `scale` decimal places.
fn plain_decimal(v: &[u8], precision: u8, scale: u32) -> Option<i128> {
    let (negative, digits) = match v.first()? {
        b'-' => (true, &v[1..]),
        b'+' => (false, &v[1..]),
        _ => (false, v),
    };
    let (int, frac) = match memchr::memchr(b'.', digits) {
        Some(d) => (&digits[..d], &digits[d + 1..]),
        None => (digits, &[][..]),
    };
    if (int.is_empty() && frac.is_empty())
        || frac.len() > scale as usize
        || int.len() > usize::from(precision).saturating_sub(scale as usize)
    {
        return None;
    }
    let mut acc: i128 = 0;
    if int.len() + scale as usize <= 18 {
        // Nearly every value: 64-bit arithmetic.
        let mut small: i64 = 0;
        for &b in int.iter().chain(frac) {
            if !b.is_ascii_digit() {
                return None;
            }
            small = small * 10 + i64::from(b - b'0');
        }
        small *= 10i64.pow(scale - frac.len() as u32);
        acc = i128::from(small);
    } else {
        for &b in int.iter().chain(frac) {
            if !b.is_ascii_digit() {
                return None;
            }
            acc = acc * 10 + i128::from(b - b'0');
        }
        acc *= 10i128.pow(scale - frac.len() as u32);
    }
    Some(if negative { -acc } else { acc })
}

/// `YYYY-MM-DD` (a real date) as days since 1970-01-01.
fn plain_date(v: &[u8]) -> Option<i32> {
    if v.len() != 10 || v[4] != b'-' || v[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i32> {
        v[r].iter().try_fold(0i32, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + i32::from(b - b'0'))
        })
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in_month = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if d < 1 || d > days_in_month {
        return None;
    }
    // Days from the civil date (H. Hinnant's algorithm), March-based years.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// PostgreSQL reads numbers, booleans and dates with blanks around them; arrow's casts
/// do not.
fn trimmed_for(target: &DataType, text: &StringArray) -> ArrayRef {
    let trims = target.is_numeric() || matches!(target, DataType::Boolean | DataType::Date32);
    if trims
        && text
            .iter()
            .flatten()
            .any(|v| v.starts_with(' ') || v.ends_with(' '))
    {
        let t: StringArray = text.iter().map(|v| v.map(str::trim)).collect();
        Arc::new(t)
    } else {
        Arc::new(text.clone())
    }
}

/// PostgreSQL's name of the type a column of `t` has (messages, dbt's column types).
pub fn sql_name(t: &DataType) -> String {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint".into(),
        DataType::Int32 | DataType::UInt16 => "integer".into(),
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "bigint".into(),
        DataType::Float16 | DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => "numeric".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone".into(),
        DataType::Time32(_) | DataType::Time64(_) => "time".into(),
        DataType::Interval(_) => "interval".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "bytea".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{Field, Schema, TimeUnit};

    fn builder() -> BatchBuilder {
        BatchBuilder::new(
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int32, true),
                Field::new("at", DataType::Timestamp(TimeUnit::Microsecond, None), true),
                Field::new("raw", DataType::Binary, true),
                Field::new("ok", DataType::Boolean, true),
            ])),
            "s.t".into(),
        )
    }

    type Row = (u64, [Option<&'static str>; 4]);

    fn row(line: u64, v: [Option<&'static str>; 4]) -> Row {
        (line, v)
    }

    /// Rows as the splitter stages them.
    fn staged(rows: &[Row]) -> Staged {
        let mut s = Staged::new(4);
        for (line, fields) in rows {
            for (col, f) in s.columns.iter_mut().zip(fields) {
                match f {
                    None => col.push_null(),
                    Some(v) => {
                        col.values.extend_from_slice(v.as_bytes());
                        col.end_value();
                    }
                }
            }
            s.lines.push(*line);
        }
        s
    }

    #[test]
    fn values_convert_to_the_columns_types() {
        let b = builder()
            .build(staged(&[
                row(
                    1,
                    [
                        Some(" 7 "),
                        Some("2024-01-02 03:04:05"),
                        Some("\\x4142"),
                        Some("t"),
                    ],
                ),
                row(2, [None, None, Some("a\\\\b\\001"), Some("off")]),
            ]))
            .unwrap();
        let shown = datafusion::arrow::util::pretty::pretty_format_batches(&[b])
            .unwrap()
            .to_string();
        assert!(
            shown.contains("| 7  | 2024-01-02T03:04:05 | 4142     | true  |"),
            "{shown}"
        );
        assert!(
            shown.contains("|    |                     | 615c6201 | false |"),
            "{shown}"
        );
    }

    #[test]
    fn plain_decimals_and_dates_parse_as_the_casts_do() {
        assert_eq!(plain_decimal(b"21168.23", 15, 2), Some(2116823));
        assert_eq!(plain_decimal(b"-0.5", 15, 2), Some(-50));
        assert_eq!(plain_decimal(b"7", 15, 2), Some(700));
        assert_eq!(plain_decimal(b".5", 15, 2), Some(50));
        // More digits than the column has, exponents, blanks: the cast decides.
        assert_eq!(plain_decimal(b"1.005", 15, 2), None);
        assert_eq!(plain_decimal(b"1e3", 15, 2), None);
        assert_eq!(plain_decimal(b" 1", 15, 2), None);
        assert_eq!(plain_decimal(b"12345678901234", 15, 2), None);
        assert_eq!(plain_decimal(b"-", 15, 2), None);
        assert_eq!(
            plain_decimal(b"123456789012345678901.5", 38, 10),
            Some(1234567890123456789015000000000)
        );
        assert_eq!(plain_date(b"1970-01-01"), Some(0));
        assert_eq!(plain_date(b"2024-02-29"), Some(19782));
        assert_eq!(plain_date(b"1969-12-31"), Some(-1));
        assert_eq!(plain_date(b"2023-02-29"), None);
        assert_eq!(plain_date(b"2024-13-01"), None);
        assert_eq!(plain_date(b"2024-1-01"), None);
    }

    #[test]
    fn a_bad_value_names_its_line_and_column() {
        let e = builder()
            .build(staged(&[
                row(1, [Some("1"), None, None, None]),
                row(2, [Some("x1"), None, None, None]),
            ]))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid input syntax for type integer: \"x1\" (COPY s.t, line 2, column id: \"x1\")"
        );
        let e = builder()
            .build(staged(&[row(5, [Some("99999999999"), None, None, None])]))
            .unwrap_err();
        assert!(matches!(e, EngineError::NumericOutOfRange(_)), "{e}");
        let mut bad = staged(&[row(6, [Some("1"), None, Some("x"), None])]);
        bad.columns[2].values = vec![0xc3];
        bad.columns[2].offsets = vec![0, 1];
        let e = builder().build(bad).unwrap_err();
        assert!(matches!(e, EngineError::InvalidEncoding(_)), "{e}");
        assert!(e.to_string().contains("0xc3 (COPY s.t, line 6)"), "{e}");
    }
}
