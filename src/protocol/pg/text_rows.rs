//! A fast path for text-format results of common column types.
//!
//! arrow-pg formats each value through `ToSqlText` (decimals via rust_decimal, dates via
//! chrono) into its own buffer. For batches whose columns are all integers, strings, dates
//! or decimals, this writes the DataRows of a whole batch straight into one buffer instead,
//! in exactly Postgres' text format. Any other batch takes arrow-pg's path.

use bytes::{BufMut, BytesMut};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, Decimal128Array, LargeStringArray, StringArray,
    StringViewArray,
};
use datafusion::arrow::datatypes::{
    DataType, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type,
    UInt64Type,
};
use datafusion::arrow::record_batch::RecordBatch;
use pgwire::messages::data::DataRow;

fn supported(t: &DataType) -> bool {
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
    )
}

/// True if every column of `batch` can take the fast path.
pub fn applies(batch: &RecordBatch) -> bool {
    batch
        .schema()
        .fields()
        .iter()
        .all(|f| supported(f.data_type()))
}

/// Encodes every row of `batch` as text DataRows. Call only when [`applies`] is true.
pub fn encode(batch: &RecordBatch) -> Vec<DataRow> {
    let n = batch.num_rows();
    let cols = batch.num_columns();
    let mut buf = BytesMut::with_capacity(n * (cols * 12 + 16));
    let mut rows = Vec::with_capacity(n);
    let mut itoa = itoa::Buffer::new();
    for row in 0..n {
        for col in batch.columns() {
            if col.is_null(row) {
                buf.put_i32(-1);
                continue;
            }
            let at = buf.len();
            buf.put_i32(0);
            write_value(&mut buf, col, row, &mut itoa);
            let len = (buf.len() - at - 4) as i32;
            buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
        rows.push(DataRow::new(buf.split(), cols as i16));
    }
    rows
}

fn write_value(buf: &mut BytesMut, col: &ArrayRef, row: usize, itoa: &mut itoa::Buffer) {
    match col.data_type() {
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

/// `YYYY-MM-DD`, as Postgres prints dates with DateStyle ISO.
fn write_date(buf: &mut BytesMut, days: i32, itoa: &mut itoa::Buffer) {
    let Some(date) = chrono::NaiveDate::from_num_days_from_ce_opt(days + 719_163) else {
        return;
    };
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
    let pow = 10i128.pow(scale);
    if value < 0 {
        buf.put_u8(b'-');
    }
    let abs = value.unsigned_abs();
    let int = abs / pow as u128;
    let frac = abs % pow as u128;
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
}
