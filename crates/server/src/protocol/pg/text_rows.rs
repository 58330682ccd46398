//! A fast path for text-format results of common column types.
//!
//! arrow-pg formats each value through `ToSqlText` (decimals via rust_decimal, dates via
//! chrono) into its own buffer. For batches whose columns are all integers, strings, dates,
//! timestamps, booleans, floats, decimals or bytea, this writes the DataRows of a whole batch straight into one
//! buffer instead, in exactly Postgres' text format (timestamps with DateStyle ISO:
//! fractional seconds only when non-zero, trailing zeros trimmed, the offset as `+01` or
//! `+05:30`). Any other batch takes arrow-pg's path.

use bytes::{BufMut, BytesMut};
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, Decimal128Array, LargeStringArray, StringArray,
    StringViewArray,
};
use datafusion::arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::arrow::record_batch::RecordBatch;
use pgwire::messages::data::DataRow;

pub(super) fn supported(t: &DataType, iso: bool) -> bool {
    if let DataType::Timestamp(_, tz) = t {
        return iso && tz.as_ref().is_none_or(|z| z.parse::<Tz>().is_ok());
    }
    matches!(
        t,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Date32
            | DataType::Decimal128(..)
            | DataType::Boolean
            | DataType::Float32
            | DataType::Float64
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
    )
}

/// True if every column of `batch` can take the fast path; `iso` when the session's
/// DateStyle is ISO (the only one the fast path prints).
pub fn applies(batch: &RecordBatch, iso: bool) -> bool {
    batch
        .schema()
        .fields()
        .iter()
        .all(|f| supported(f.data_type(), iso))
}

/// Encodes every row of `batch` as text DataRows. Call only when [`applies`] is true.
pub fn encode(batch: &RecordBatch) -> Vec<DataRow> {
    let n = batch.num_rows();
    let cols = batch.num_columns();
    let mut buf = BytesMut::with_capacity(n * (cols * 12 + 16));
    let mut rows = Vec::with_capacity(n);
    let mut itoa = itoa::Buffer::new();
    let zones: Vec<Option<Tz>> = batch
        .columns()
        .iter()
        .map(|c| zone(c.data_type()))
        .collect();
    for row in 0..n {
        for (col, zone) in batch.columns().iter().zip(&zones) {
            if col.is_null(row) {
                buf.put_i32(-1);
                continue;
            }
            let at = buf.len();
            buf.put_i32(0);
            write_value(&mut buf, col, row, zone.as_ref(), &mut itoa);
            let len = (buf.len() - at - 4) as i32;
            buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
        rows.push(DataRow::new(buf.split(), cols as i16));
    }
    rows
}

pub(super) fn write_value(
    buf: &mut BytesMut,
    col: &ArrayRef,
    row: usize,
    zone: Option<&Tz>,
    itoa: &mut itoa::Buffer,
) {
    match col.data_type() {
        DataType::Boolean => {
            let v = col.as_boolean().value(row);
            buf.put_u8(if v { b't' } else { b'f' });
        }
        DataType::Float64 => write_float(buf, col.as_primitive::<Float64Type>().value(row)),
        DataType::Float32 => {
            // Shortest text that reads back as the same f32, as Postgres prints float4.
            let v = col.as_primitive::<Float32Type>().value(row);
            write_float_text(buf, v as f64, &format!("{v}"), &format!("{v:e}"));
        }
        DataType::Timestamp(unit, _) => {
            write_timestamp(buf, timestamp_micros(col, row, *unit), zone, itoa);
        }
        DataType::Int8 => buf.put_slice(
            itoa.format(col.as_primitive::<Int8Type>().value(row))
                .as_bytes(),
        ),
        DataType::Int16 => buf.put_slice(
            itoa.format(col.as_primitive::<Int16Type>().value(row))
                .as_bytes(),
        ),
        DataType::Int32 => buf.put_slice(
            itoa.format(col.as_primitive::<Int32Type>().value(row))
                .as_bytes(),
        ),
        DataType::Int64 => buf.put_slice(
            itoa.format(col.as_primitive::<Int64Type>().value(row))
                .as_bytes(),
        ),
        DataType::UInt8 => buf.put_slice(
            itoa.format(col.as_primitive::<UInt8Type>().value(row))
                .as_bytes(),
        ),
        DataType::UInt16 => buf.put_slice(
            itoa.format(col.as_primitive::<UInt16Type>().value(row))
                .as_bytes(),
        ),
        DataType::UInt32 => buf.put_slice(
            itoa.format(col.as_primitive::<UInt32Type>().value(row))
                .as_bytes(),
        ),
        DataType::UInt64 => buf.put_slice(
            itoa.format(col.as_primitive::<UInt64Type>().value(row))
                .as_bytes(),
        ),
        DataType::Utf8 => {
            if let Some(a) = col.as_any().downcast_ref::<StringArray>() {
                buf.put_slice(a.value(row).as_bytes());
            }
        }
        DataType::LargeUtf8 => {
            if let Some(a) = col.as_any().downcast_ref::<LargeStringArray>() {
                buf.put_slice(a.value(row).as_bytes());
            }
        }
        DataType::Utf8View => {
            if let Some(a) = col.as_any().downcast_ref::<StringViewArray>() {
                buf.put_slice(a.value(row).as_bytes());
            }
        }
        DataType::Binary => write_bytea(buf, col.as_binary::<i32>().value(row)),
        DataType::LargeBinary => write_bytea(buf, col.as_binary::<i64>().value(row)),
        DataType::BinaryView => write_bytea(buf, col.as_binary_view().value(row)),
        DataType::Date32 => {
            if let Some(a) = col.as_any().downcast_ref::<Date32Array>() {
                write_date(buf, a.value(row), itoa);
            }
        }
        DataType::Decimal128(_, scale) => {
            if let Some(a) = col.as_any().downcast_ref::<Decimal128Array>() {
                write_decimal(buf, a.value(row), *scale, itoa);
            }
        }
        _ => {}
    }
}

/// `bytea` as Postgres prints it with `bytea_output = hex`: `\x` and two digits a byte.
fn write_bytea(buf: &mut BytesMut, v: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.reserve(2 + 2 * v.len());
    buf.put_slice(b"\\x");
    for b in v {
        buf.put_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
    }
}

/// The zone of a column of `t` (timestamps with time zone).
pub(super) fn zone(t: &DataType) -> Option<Tz> {
    match t {
        DataType::Timestamp(_, Some(z)) => z.parse().ok(),
        _ => None,
    }
}

/// Row `row` of a timestamp column of `unit` in microseconds since 1970.
pub(super) fn timestamp_micros(col: &ArrayRef, row: usize, unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => col
            .as_primitive::<TimestampSecondType>()
            .value(row)
            .saturating_mul(1_000_000),
        TimeUnit::Millisecond => col
            .as_primitive::<TimestampMillisecondType>()
            .value(row)
            .saturating_mul(1_000),
        TimeUnit::Microsecond => col.as_primitive::<TimestampMicrosecondType>().value(row),
        TimeUnit::Nanosecond => col
            .as_primitive::<TimestampNanosecondType>()
            .value(row)
            .div_euclid(1_000),
    }
}

/// A double as Postgres prints it (extra_float_digits >= 1: the shortest text that reads
/// back exactly): `1.5`, `0.1`, `1e+20`, `1.5e-05`, `Infinity`, `NaN`.
fn write_float(buf: &mut BytesMut, v: f64) {
    write_float_text(buf, v, &format!("{v}"), &format!("{v:e}"));
}

/// `v` (widened from f32 or not) printed from its own shortest texts `plain` and `exp`.
fn write_float_text(buf: &mut BytesMut, v: f64, plain: &str, exp: &str) {
    let abs = v.abs();
    if v.is_nan() {
        buf.put_slice(b"NaN");
    } else if v.is_infinite() {
        buf.put_slice(if v < 0.0 { b"-Infinity" } else { b"Infinity" });
    } else if abs != 0.0 && !(1e-4..1e15).contains(&abs) {
        // Rust writes `1.5e-5`; Postgres `1.5e-05`: signed, at least two digits.
        let (mantissa, exponent) = exp.split_once('e').unwrap_or((exp, "0"));
        let (sign, digits) = match exponent.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exponent),
        };
        buf.put_slice(mantissa.as_bytes());
        buf.put_u8(b'e');
        buf.put_u8(sign as u8);
        if digits.len() < 2 {
            buf.put_u8(b'0');
        }
        buf.put_slice(digits.as_bytes());
    } else {
        buf.put_slice(plain.as_bytes());
    }
}

/// Two digits.
fn put2(buf: &mut BytesMut, v: u32) {
    buf.put_slice(&[b'0' + (v / 10 % 10) as u8, b'0' + (v % 10) as u8]);
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff][+TZ]`, as Postgres prints timestamps with DateStyle ISO;
/// with a zone, the instant in that zone and its offset.
fn write_timestamp(buf: &mut BytesMut, micros: i64, zone: Option<&Tz>, itoa: &mut itoa::Buffer) {
    use chrono::{Offset, TimeZone, Timelike};
    let Some(utc) = chrono::DateTime::from_timestamp_micros(micros) else {
        return;
    };
    let (local, offset) = match zone {
        Some(z) => {
            let offset = z.offset_from_utc_datetime(&utc.naive_utc()).fix();
            (utc.naive_utc() + offset, Some(offset.local_minus_utc()))
        }
        None => (utc.naive_utc(), None),
    };
    write_naive_date(buf, local.date(), itoa);
    buf.put_u8(b' ');
    put2(buf, local.hour());
    buf.put_u8(b':');
    put2(buf, local.minute());
    buf.put_u8(b':');
    put2(buf, local.second());
    let frac = local.nanosecond() / 1_000;
    if frac > 0 {
        let mut digits = [0u8; 6];
        let mut f = frac;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (f % 10) as u8;
            f /= 10;
        }
        let len = 6 - digits.iter().rev().take_while(|d| **d == b'0').count();
        buf.put_u8(b'.');
        buf.put_slice(&digits[..len]);
    }
    if let Some(secs) = offset {
        buf.put_u8(if secs < 0 { b'-' } else { b'+' });
        let secs = secs.unsigned_abs();
        put2(buf, secs / 3600);
        if secs % 3600 != 0 {
            buf.put_u8(b':');
            put2(buf, secs / 60 % 60);
            if secs % 60 != 0 {
                buf.put_u8(b':');
                put2(buf, secs % 60);
            }
        }
    }
}

/// `YYYY-MM-DD`, as Postgres prints dates with DateStyle ISO.
fn write_date(buf: &mut BytesMut, days: i32, itoa: &mut itoa::Buffer) {
    if let Some(date) = chrono::NaiveDate::from_num_days_from_ce_opt(days + 719_163) {
        write_naive_date(buf, date, itoa);
    }
}

fn write_naive_date(buf: &mut BytesMut, date: chrono::NaiveDate, itoa: &mut itoa::Buffer) {
    use chrono::Datelike;
    let (y, m, d) = (date.year(), date.month(), date.day());
    if (0..=9999).contains(&y) {
        let y = y as u32;
        buf.put_slice(&[
            b'0' + (y / 1000) as u8,
            b'0' + (y / 100 % 10) as u8,
            b'0' + (y / 10 % 10) as u8,
            b'0' + (y % 10) as u8,
            b'-',
            b'0' + (m / 10) as u8,
            b'0' + (m % 10) as u8,
            b'-',
            b'0' + (d / 10) as u8,
            b'0' + (d % 10) as u8,
        ]);
    } else {
        // Outside 0..=9999 Postgres prints BC years; keep chrono's form there.
        buf.put_slice(date.format("%Y-%m-%d").to_string().as_bytes());
        let _ = itoa;
    }
}

/// A decimal with exactly `scale` digits after the point, as Postgres prints numeric.
fn write_decimal(buf: &mut BytesMut, value: i128, scale: i8, itoa: &mut itoa::Buffer) {
    if scale <= 0 {
        buf.put_slice(itoa.format(value).as_bytes());
        for _ in 0..(-scale) {
            buf.put_u8(b'0');
        }
        return;
    }
    let scale = scale as u32;
    if value < 0 {
        buf.put_u8(b'-');
    }
    let abs = value.unsigned_abs();
    // 128-bit division is a library call; nearly every value fits 64 bits.
    let (int, frac) = match (u64::try_from(abs), 10u64.checked_pow(scale)) {
        (Ok(a), Some(pow)) => (u128::from(a / pow), u128::from(a % pow)),
        _ => {
            let pow = 10u128.pow(scale);
            (abs / pow, abs % pow)
        }
    };
    buf.put_slice(itoa.format(int).as_bytes());
    buf.put_u8(b'.');
    let digits = itoa.format(frac);
    for _ in digits.len()..scale as usize {
        buf.put_u8(b'0');
    }
    buf.put_slice(digits.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut BytesMut, &mut itoa::Buffer)) -> String {
        let mut b = BytesMut::new();
        let mut i = itoa::Buffer::new();
        f(&mut b, &mut i);
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[test]
    fn decimals_and_dates_print_like_postgres() {
        assert_eq!(text(|b, i| write_decimal(b, 2116823, 2, i)), "21168.23");
        assert_eq!(text(|b, i| write_decimal(b, -5, 2, i)), "-0.05");
        assert_eq!(text(|b, i| write_decimal(b, 0, 2, i)), "0.00");
        assert_eq!(text(|b, i| write_decimal(b, 1234, 0, i)), "1234");
        assert_eq!(text(|b, i| write_decimal(b, 12, -2, i)), "1200");
        assert_eq!(text(|b, i| write_date(b, 0, i)), "1970-01-01");
        assert_eq!(text(|b, i| write_date(b, 9568, i)), "1996-03-13");
        assert_eq!(text(|b, i| write_date(b, 19782, i)), "2024-02-29");
    }

    #[test]
    fn floats_print_like_postgres() {
        let f = |v: f64| text(|b, _| write_float(b, v));
        assert_eq!(f(1.5), "1.5");
        assert_eq!(f(0.1), "0.1");
        assert_eq!(f(-2.0), "-2");
        assert_eq!(f(0.0), "0");
        assert_eq!(f(123456.789), "123456.789");
        assert_eq!(f(1e20), "1e+20");
        assert_eq!(f(1.5e-5), "1.5e-05");
        assert_eq!(f(-3.25e-120), "-3.25e-120");
        assert_eq!(f(f64::INFINITY), "Infinity");
        assert_eq!(f(f64::NEG_INFINITY), "-Infinity");
        assert_eq!(f(f64::NAN), "NaN");
        assert_eq!(f(0.30000000000000004), "0.30000000000000004");
    }

    #[test]
    fn timestamps_print_like_postgres() {
        let ts = |micros: i64, zone: Option<&str>| {
            let tz: Option<Tz> = zone.map(|z| z.parse().unwrap());
            text(|b, i| write_timestamp(b, micros, tz.as_ref(), i))
        };
        let t = 1_793_527_200_000_000; // 2026-11-01 10:00:00 UTC
        assert_eq!(ts(t, None), "2026-11-01 10:00:00");
        assert_eq!(ts(t + 500_000, None), "2026-11-01 10:00:00.5");
        assert_eq!(ts(t + 123_456, None), "2026-11-01 10:00:00.123456");
        assert_eq!(ts(t + 1_020, None), "2026-11-01 10:00:00.00102");
        assert_eq!(ts(t, Some("UTC")), "2026-11-01 10:00:00+00");
        assert_eq!(ts(t, Some("+00:00")), "2026-11-01 10:00:00+00");
        assert_eq!(ts(t, Some("Europe/Berlin")), "2026-11-01 11:00:00+01");
        assert_eq!(ts(t, Some("Asia/Kolkata")), "2026-11-01 15:30:00+05:30");
        assert_eq!(ts(t, Some("America/New_York")), "2026-11-01 05:00:00-05");
        assert_eq!(ts(-1, None), "1969-12-31 23:59:59.999999");
    }
}
