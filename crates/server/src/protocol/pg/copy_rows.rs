//! COPY TO rows of common column types, encoded a batch at a time into one buffer that
//! the rows are then cut from (arrow-pg's encoder formats each value into a buffer of
//! its own). Text and CSV print values as [`text_rows`] does for DataRows, then escape
//! or quote the few that need it as PostgreSQL's `CopyAttributeOutText` /
//! `CopyAttributeOutCSV` do; binary writes each value as PostgreSQL's `*send` function
//! does (`numeric` in its canonical base-10000 form). A stream with a column of another
//! type takes arrow-pg's path.

use bytes::{BufMut, Bytes, BytesMut};
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, Schema, TimeUnit, UInt8Type, UInt16Type, UInt32Type,
};
use datafusion::arrow::record_batch::RecordBatch;
use pgwire::api::Type;
use pgwire::api::results::FieldInfo;

use super::text_rows;
use crate::engine::copy::{CopyFormat, CopyOptions, ForceQuote};

/// How a stream's rows are encoded.
pub struct FastRows {
    format: Format,
    /// Binary: each column's wire form.
    kinds: Vec<Kind>,
    /// Each column's zone (timestamps with time zone, text forms).
    zones: Vec<Option<Tz>>,
}

enum Format {
    Text {
        delimiter: u8,
        null: Vec<u8>,
    },
    Csv {
        delimiter: u8,
        quote: u8,
        escape: u8,
        null: Vec<u8>,
        force: Vec<bool>,
    },
    Binary,
}

/// A column's binary form.
#[derive(Clone, Copy)]
enum Kind {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric(i8),
    Bytes,
    Date,
    Timestamp(TimeUnit),
}

/// Days and microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const EPOCH_DAYS: i32 = 10_957;
const EPOCH_MICROS: i64 = 946_684_800_000_000;

impl FastRows {
    /// The fast encoding of rows of `schema` sent as `fields`, when every column has one;
    /// `iso` when the session's DateStyle is ISO.
    pub fn plan(
        schema: &Schema,
        fields: &[FieldInfo],
        options: &CopyOptions,
        iso: bool,
    ) -> Option<FastRows> {
        let zones = schema
            .fields()
            .iter()
            .map(|f| text_rows::zone(f.data_type()))
            .collect();
        let format = match options.format {
            CopyFormat::Binary => {
                let kinds = schema
                    .fields()
                    .iter()
                    .zip(fields)
                    .map(|(f, info)| binary_kind(f.data_type(), info.datatype()))
                    .collect::<Option<Vec<_>>>()?;
                return Some(FastRows {
                    format: Format::Binary,
                    kinds,
                    zones,
                });
            }
            _ if !schema
                .fields()
                .iter()
                .all(|f| text_rows::supported(f.data_type(), iso)) =>
            {
                return None;
            }
            CopyFormat::Text => Format::Text {
                delimiter: options.delimiter,
                null: options.null.as_bytes().to_vec(),
            },
            CopyFormat::Csv => Format::Csv {
                delimiter: options.delimiter,
                quote: options.quote,
                escape: options.escape,
                null: options.null.as_bytes().to_vec(),
                force: schema
                    .fields()
                    .iter()
                    .map(|f| match &options.force_quote {
                        ForceQuote::None => false,
                        ForceQuote::All => true,
                        ForceQuote::Columns(names) => names.iter().any(|n| n == f.name()),
                    })
                    .collect(),
            },
        };
        Some(FastRows {
            format,
            kinds: Vec::new(),
            zones,
        })
    }

    /// The rows of `batch`, one message's data each.
    pub fn encode(&self, batch: &RecordBatch) -> Vec<Bytes> {
        let n = batch.num_rows();
        let mut buf = BytesMut::with_capacity(n * (batch.num_columns() * 12 + 8));
        let mut ends = Vec::with_capacity(n);
        match &self.format {
            Format::Binary => self.binary(batch, &mut buf, &mut ends),
            _ => self.text(batch, &mut buf, &mut ends),
        }
        let all = buf.freeze();
        let mut start = 0;
        ends.into_iter()
            .map(|end| {
                let row = all.slice(start..end);
                start = end;
                row
            })
            .collect()
    }

    fn text(&self, batch: &RecordBatch, buf: &mut BytesMut, ends: &mut Vec<usize>) {
        let mut itoa = itoa::Buffer::new();
        let mut scratch = Vec::new();
        let single = batch.num_columns() == 1;
        for row in 0..batch.num_rows() {
            for (c, col) in batch.columns().iter().enumerate() {
                match &self.format {
                    Format::Text { delimiter, null } => {
                        if c > 0 {
                            buf.put_u8(*delimiter);
                        }
                        if col.is_null(row) {
                            buf.put_slice(null);
                            continue;
                        }
                        let at = buf.len();
                        text_rows::write_value(buf, col, row, self.zones[c].as_ref(), &mut itoa);
                        if buf[at..].iter().any(|&b| text_special(b, *delimiter)) {
                            scratch.clear();
                            scratch.extend_from_slice(&buf[at..]);
                            buf.truncate(at);
                            escape_text(&scratch, *delimiter, buf);
                        }
                    }
                    Format::Csv {
                        delimiter,
                        quote,
                        escape,
                        null,
                        force,
                    } => {
                        if c > 0 {
                            buf.put_u8(*delimiter);
                        }
                        if col.is_null(row) {
                            buf.put_slice(null);
                            continue;
                        }
                        let at = buf.len();
                        text_rows::write_value(buf, col, row, self.zones[c].as_ref(), &mut itoa);
                        let value = &buf[at..];
                        let quoted = force[c]
                            || value == null.as_slice()
                            || (single && value == b"\\.")
                            || value.iter().any(|&b| {
                                b == *delimiter || b == *quote || b == b'\n' || b == b'\r'
                            });
                        if quoted {
                            scratch.clear();
                            scratch.extend_from_slice(value);
                            buf.truncate(at);
                            quote_csv(&scratch, *quote, *escape, buf);
                        }
                    }
                    Format::Binary => unreachable!("binary rows are not text"),
                }
            }
            buf.put_u8(b'\n');
            ends.push(buf.len());
        }
    }

    fn binary(&self, batch: &RecordBatch, buf: &mut BytesMut, ends: &mut Vec<usize>) {
        let columns = batch.num_columns() as i16;
        for row in 0..batch.num_rows() {
            buf.put_i16(columns);
            for (col, kind) in batch.columns().iter().zip(&self.kinds) {
                if col.is_null(row) {
                    buf.put_i32(-1);
                } else {
                    put_binary(buf, col, row, *kind);
                }
            }
            ends.push(buf.len());
        }
    }
}

/// The binary form of a column of `arrow` type sent as `pg`, if this module writes it.
fn binary_kind(arrow: &DataType, pg: &Type) -> Option<Kind> {
    use DataType as D;
    Some(match (arrow, pg) {
        (D::Boolean, &Type::BOOL) => Kind::Bool,
        (D::Int8 | D::Int16 | D::UInt8, &Type::INT2) => Kind::Int2,
        (D::Int32 | D::UInt16, &Type::INT4) => Kind::Int4,
        (D::Int64 | D::UInt32, &Type::INT8) => Kind::Int8,
        (D::Float32, &Type::FLOAT4) => Kind::Float4,
        (D::Float64, &Type::FLOAT8) => Kind::Float8,
        (D::Decimal128(_, s), &Type::NUMERIC) if *s >= 0 => Kind::Numeric(*s),
        (
            D::Utf8 | D::LargeUtf8 | D::Utf8View,
            &Type::TEXT | &Type::VARCHAR | &Type::BPCHAR | &Type::NAME | &Type::JSON,
        ) => Kind::Bytes,
        (D::Binary | D::LargeBinary | D::BinaryView, &Type::BYTEA) => Kind::Bytes,
        (D::Date32, &Type::DATE) => Kind::Date,
        (D::Timestamp(unit, None), &Type::TIMESTAMP) => Kind::Timestamp(*unit),
        (D::Timestamp(unit, Some(_)), &Type::TIMESTAMPTZ) => Kind::Timestamp(*unit),
        _ => return None,
    })
}

fn put_binary(buf: &mut BytesMut, col: &ArrayRef, row: usize, kind: Kind) {
    match kind {
        Kind::Bool => {
            buf.put_i32(1);
            buf.put_u8(u8::from(col.as_boolean().value(row)));
        }
        Kind::Int2 => {
            let v = match col.data_type() {
                DataType::Int8 => i16::from(col.as_primitive::<Int8Type>().value(row)),
                DataType::UInt8 => i16::from(col.as_primitive::<UInt8Type>().value(row)),
                _ => col.as_primitive::<Int16Type>().value(row),
            };
            buf.put_i32(2);
            buf.put_i16(v);
        }
        Kind::Int4 => {
            let v = match col.data_type() {
                DataType::UInt16 => i32::from(col.as_primitive::<UInt16Type>().value(row)),
                _ => col.as_primitive::<Int32Type>().value(row),
            };
            buf.put_i32(4);
            buf.put_i32(v);
        }
        Kind::Int8 => {
            let v = match col.data_type() {
                DataType::UInt32 => i64::from(col.as_primitive::<UInt32Type>().value(row)),
                _ => col.as_primitive::<Int64Type>().value(row),
            };
            buf.put_i32(8);
            buf.put_i64(v);
        }
        Kind::Float4 => {
            buf.put_i32(4);
            buf.put_f32(col.as_primitive::<Float32Type>().value(row));
        }
        Kind::Float8 => {
            buf.put_i32(8);
            buf.put_f64(col.as_primitive::<Float64Type>().value(row));
        }
        Kind::Numeric(scale) => {
            put_numeric(buf, col.as_primitive::<Decimal128Type>().value(row), scale)
        }
        Kind::Bytes => {
            let v: &[u8] = match col.data_type() {
                DataType::Utf8 => col.as_string::<i32>().value(row).as_bytes(),
                DataType::LargeUtf8 => col.as_string::<i64>().value(row).as_bytes(),
                DataType::Utf8View => col.as_string_view().value(row).as_bytes(),
                DataType::Binary => col.as_binary::<i32>().value(row),
                DataType::LargeBinary => col.as_binary::<i64>().value(row),
                _ => col.as_binary_view().value(row),
            };
            buf.put_i32(v.len() as i32);
            buf.put_slice(v);
        }
        Kind::Date => {
            buf.put_i32(4);
            buf.put_i32(
                col.as_primitive::<Date32Type>()
                    .value(row)
                    .saturating_sub(EPOCH_DAYS),
            );
        }
        Kind::Timestamp(unit) => {
            let micros = text_rows::timestamp_micros(col, row, unit);
            buf.put_i32(8);
            buf.put_i64(micros.saturating_sub(EPOCH_MICROS));
        }
    }
}

/// `numeric_send`'s form of `value` with `scale` digits after the point: base-10000
/// digits without leading or trailing zero digits, the weight of the first, the sign and
/// the display scale (zero: no digits, weight 0, positive).
fn put_numeric(buf: &mut BytesMut, value: i128, scale: i8) {
    let scale = scale as u32;
    let abs = value.unsigned_abs();
    // 128-bit division is a library call; nearly every value fits 64 bits.
    let (int, frac) = match (u64::try_from(abs), 10u64.checked_pow(scale)) {
        (Ok(a), Some(pow)) => (u128::from(a / pow), u128::from(a % pow)),
        _ => {
            let pow = 10u128.pow(scale);
            (abs / pow, abs % pow)
        }
    };
    // At most 10 groups before the point (u128 < 10^39) and 10 after (scale <= 38).
    let mut digits = [0i16; 24];
    let mut n = 0;
    let mut int_groups = [0i16; 12];
    let mut k = 0;
    let mut rest = int;
    while rest > 0 {
        int_groups[k] = (rest % 10_000) as i16;
        rest /= 10_000;
        k += 1;
    }
    for g in int_groups[..k].iter().rev() {
        digits[n] = *g;
        n += 1;
    }
    let mut weight = k as i16 - 1;
    // The fraction's digits, four at a time from the point; the last group padded.
    let frac_groups = scale.div_ceil(4);
    for g in 0..frac_groups {
        let remaining = scale - 4 * g;
        let group = if remaining >= 4 {
            (frac / 10u128.pow(remaining - 4)) % 10_000
        } else {
            (frac % 10u128.pow(remaining)) * 10u128.pow(4 - remaining)
        };
        digits[n] = group as i16;
        n += 1;
    }
    let mut first = 0;
    while first < n && digits[first] == 0 {
        first += 1;
        weight -= 1;
    }
    while n > first && digits[n - 1] == 0 {
        n -= 1;
    }
    let (sign, weight) = if n == first {
        (0u16, 0i16)
    } else if value < 0 {
        (0x4000, weight)
    } else {
        (0, weight)
    };
    let ndigits = n - first;
    buf.put_i32(8 + 2 * ndigits as i32);
    buf.put_i16(ndigits as i16);
    buf.put_i16(weight);
    buf.put_u16(sign);
    buf.put_u16(scale as u16);
    for d in &digits[first..n] {
        buf.put_i16(*d);
    }
}

/// Bytes `CopyAttributeOutText` writes with a backslash.
fn text_special(b: u8, delimiter: u8) -> bool {
    b == b'\\' || b == delimiter || (8..=13).contains(&b)
}

fn escape_text(value: &[u8], delimiter: u8, buf: &mut BytesMut) {
    for &b in value {
        let escaped = match b {
            8 => Some(b'b'),
            12 => Some(b'f'),
            b'\n' => Some(b'n'),
            b'\r' => Some(b'r'),
            b'\t' => Some(b't'),
            11 => Some(b'v'),
            b'\\' => Some(b'\\'),
            _ if b == delimiter => Some(b),
            _ => None,
        };
        match escaped {
            Some(e) => buf.put_slice(&[b'\\', e]),
            None => buf.put_u8(b),
        }
    }
}

fn quote_csv(value: &[u8], quote: u8, escape: u8, buf: &mut BytesMut) {
    buf.put_u8(quote);
    for &b in value {
        if b == quote || b == escape {
            buf.put_u8(escape);
        }
        buf.put_u8(b);
    }
    buf.put_u8(quote);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(value: i128, scale: i8) -> Vec<u8> {
        let mut b = BytesMut::new();
        put_numeric(&mut b, value, scale);
        b.to_vec()
    }

    /// Bytes as `SELECT encode(numeric_send(x), 'hex')` gives them in PostgreSQL 15.20.
    #[test]
    fn numeric_as_postgresql_sends_it() {
        let h = |s: &str| -> Vec<u8> {
            let mut b = ((s.len() / 2) as i32).to_be_bytes().to_vec();
            b.extend(
                (0..s.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()),
            );
            b
        };
        let cases: [(i128, i8, &str); 6] = [
            (2116823, 2, "00030001000000020002049008fc"),
            (0, 2, "0000000000000002"),
            (-5, 2, "0001ffff4000000201f4"),
            (1000000, 2, "00010001000000020001"),
            (
                1234567890123456789012345,
                5,
                "000700040000000504d2162e23340d801ed204d21388",
            ),
            (1, 5, "0001fffe0000000503e8"),
        ];
        for (value, scale, pg) in cases {
            assert_eq!(numeric(value, scale), h(pg), "{value} scale {scale}");
        }
    }

    #[test]
    fn text_and_csv_escapes() {
        let mut b = BytesMut::new();
        escape_text(b"a\tb\\c\nd|e", b'|', &mut b);
        assert_eq!(&b[..], b"a\\tb\\\\c\\nd\\|e");
        let mut b = BytesMut::new();
        quote_csv(b"say \"hi\"", b'"', b'"', &mut b);
        assert_eq!(&b[..], b"\"say \"\"hi\"\"\"");
    }
}
