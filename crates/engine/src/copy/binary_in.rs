//! `COPY ... FROM STDIN (FORMAT binary)`: PostgreSQL's binary COPY format (the `PGCOPY`
//! signature, flags, a header extension, then per row a field count and per field a
//! length and the value in its binary send format, a count of -1 at the end), decoded
//! straight into arrow builders of the target columns' types. This is what the ADBC
//! PostgreSQL driver's ingest, DuckDB's postgres extension and asyncpg's
//! `copy_records_to_table` send. Integers may come in any width that holds the value
//! (clients send the width of their own type); a value of the wrong size or an
//! impossible structure fails the COPY naming the row (22P03 / 22P04).

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder,
    Int64Builder, IntervalMonthDayNanoBuilder, RecordBatch, StringBuilder,
    Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, IntervalUnit, SchemaRef};

use crate::EngineError;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// Days and microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const EPOCH_DAYS: i32 = 10_957;
const EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Decodes binary COPY data of `schema`'s columns, chunk by chunk.
pub struct BinaryDecoder {
    schema: SchemaRef,
    table: String,
    columns: Vec<Column>,
    carry: Vec<u8>,
    header: bool,
    ended: bool,
    /// Rows decoded so far (the next row's number is this plus one).
    row: u64,
    rows_in_batch: usize,
}

/// A builder for one column, by the type it is read as.
enum Column {
    Bool(BooleanBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Text(StringBuilder),
    Bytes(BinaryBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Time(Time64MicrosecondBuilder),
    Numeric(Decimal128Builder, i8),
    Interval(IntervalMonthDayNanoBuilder),
}

impl BinaryDecoder {
    pub fn new(schema: SchemaRef, table: String) -> Result<BinaryDecoder, EngineError> {
        let columns = schema
            .fields()
            .iter()
            .map(|f| Column::for_type(f.data_type()))
            .collect::<Result<_, _>>()?;
        Ok(BinaryDecoder {
            schema,
            table,
            columns,
            carry: Vec::new(),
            header: false,
            ended: false,
            row: 0,
            rows_in_batch: 0,
        })
    }

    /// Rows decoded and not yet taken.
    pub fn pending(&self) -> usize {
        self.rows_in_batch
    }

    /// Whether the end marker (a field count of -1) has been read.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Decodes the whole rows `chunk` completes.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), EngineError> {
        if self.ended {
            return Ok(());
        }
        self.carry.extend_from_slice(chunk);
        let data = std::mem::take(&mut self.carry);
        let mut at = 0;
        if !self.header {
            let Some(used) = self.read_header(&data)? else {
                self.carry = data;
                return Ok(());
            };
            at = used;
            self.header = true;
        }
        while !self.ended {
            match self.row_len(&data[at..])? {
                None => break,
                Some(len) => {
                    self.decode_row(&data[at..at + len])?;
                    at += len;
                }
            }
        }
        self.carry = data[at..].to_vec();
        Ok(())
    }

    /// The end of the data: anything left over is a truncated row.
    pub fn finish(&mut self) -> Result<(), EngineError> {
        if !self.ended && (!self.carry.is_empty() || !self.header) {
            return Err(self.structure("unexpected EOF in COPY data"));
        }
        Ok(())
    }

    /// The rows decoded so far as a batch.
    pub fn take_batch(&mut self) -> Result<RecordBatch, EngineError> {
        let arrays = self
            .columns
            .iter_mut()
            .zip(self.schema.fields())
            .map(|(c, f)| {
                let a = c.finish();
                if a.data_type() == f.data_type() {
                    Ok(a)
                } else {
                    cast(&a, f.data_type())
                        .map_err(|e| EngineError::from(datafusion::error::DataFusionError::from(e)))
                }
            })
            .collect::<Result<Vec<ArrayRef>, _>>()?;
        self.rows_in_batch = 0;
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
    }

    fn structure(&self, what: &str) -> EngineError {
        EngineError::BadCopyData(format!(
            "{what} (COPY {}, row {})",
            self.table,
            self.row + 1
        ))
    }

    /// The header's length once all of it is there.
    fn read_header(&self, data: &[u8]) -> Result<Option<usize>, EngineError> {
        if data.len() < SIGNATURE.len() + 8 {
            if !SIGNATURE.starts_with(&data[..data.len().min(SIGNATURE.len())]) {
                return Err(self.structure("COPY file signature not recognized"));
            }
            return Ok(None);
        }
        if &data[..SIGNATURE.len()] != SIGNATURE {
            return Err(self.structure("COPY file signature not recognized"));
        }
        let flags = be_i32(&data[11..15]);
        if flags & (1 << 16) != 0 {
            return Err(EngineError::NotSupported(
                "COPY binary data with OIDs".into(),
            ));
        }
        if flags & !0xffff & !(1 << 16) != 0 {
            return Err(self.structure("unrecognized critical flags in COPY file header"));
        }
        let extension = be_i32(&data[15..19]);
        if extension < 0 {
            return Err(self.structure("invalid COPY file header (missing length)"));
        }
        let total = 19 + extension as usize;
        Ok((data.len() >= total).then_some(total))
    }

    /// The length of the row (or end marker) at the start of `data`, if all of it is
    /// there.
    fn row_len(&self, data: &[u8]) -> Result<Option<usize>, EngineError> {
        if data.len() < 2 {
            return Ok(None);
        }
        let count = i16::from_be_bytes([data[0], data[1]]);
        if count == -1 {
            return Ok(Some(2));
        }
        if count as usize != self.columns.len() {
            return Err(self.structure(&format!(
                "row field count is {count}, expected {}",
                self.columns.len()
            )));
        }
        let mut at = 2;
        for _ in 0..count {
            if data.len() < at + 4 {
                return Ok(None);
            }
            let len = be_i32(&data[at..at + 4]);
            at += 4;
            if len < -1 {
                return Err(self.structure("invalid field size"));
            }
            if len > 0 {
                at += len as usize;
            }
        }
        Ok((data.len() >= at).then_some(at))
    }

    fn decode_row(&mut self, data: &[u8]) -> Result<(), EngineError> {
        if data.len() == 2 {
            self.ended = true;
            return Ok(());
        }
        let mut at = 2;
        for c in 0..self.columns.len() {
            let len = be_i32(&data[at..at + 4]);
            at += 4;
            if len < 0 {
                self.columns[c].append_null();
                continue;
            }
            let value = &data[at..at + len as usize];
            at += len as usize;
            if let Err(why) = self.columns[c].append(value) {
                return Err(EngineError::InvalidBinary(format!(
                    "incorrect binary data format: {why} (COPY {}, row {}, column {})",
                    self.table,
                    self.row + 1,
                    self.schema.field(c).name()
                )));
            }
        }
        self.row += 1;
        self.rows_in_batch += 1;
        Ok(())
    }
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be_int(v: &[u8]) -> Result<i64, String> {
    Ok(match v.len() {
        1 => i64::from(v[0] as i8),
        2 => i64::from(i16::from_be_bytes([v[0], v[1]])),
        4 => i64::from(i32::from_be_bytes([v[0], v[1], v[2], v[3]])),
        8 => i64::from_be_bytes(v.try_into().map_err(|_| "bad integer")?),
        n => return Err(format!("an integer of {n} bytes")),
    })
}

impl Column {
    fn for_type(t: &DataType) -> Result<Column, EngineError> {
        Ok(match t {
            DataType::Boolean => Column::Bool(BooleanBuilder::new()),
            t if t.is_integer() => Column::Int(Int64Builder::new()),
            DataType::Float16 | DataType::Float32 | DataType::Float64 => {
                Column::Float(Float64Builder::new())
            }
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                Column::Text(StringBuilder::new())
            }
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
                Column::Bytes(BinaryBuilder::new())
            }
            DataType::Date32 | DataType::Date64 => Column::Date(Date32Builder::new()),
            DataType::Timestamp(_, tz) => {
                Column::Timestamp(TimestampMicrosecondBuilder::new().with_timezone_opt(tz.clone()))
            }
            DataType::Time32(_) | DataType::Time64(_) => {
                Column::Time(Time64MicrosecondBuilder::new())
            }
            DataType::Decimal128(p, s) => Column::Numeric(
                Decimal128Builder::new().with_precision_and_scale(*p, *s)?,
                *s,
            ),
            DataType::Interval(IntervalUnit::MonthDayNano) => {
                Column::Interval(IntervalMonthDayNanoBuilder::new())
            }
            other => {
                return Err(EngineError::NotSupported(format!(
                    "COPY FROM in binary format into a column of type {other}"
                )));
            }
        })
    }

    fn append_null(&mut self) {
        match self {
            Column::Bool(b) => b.append_null(),
            Column::Int(b) => b.append_null(),
            Column::Float(b) => b.append_null(),
            Column::Text(b) => b.append_null(),
            Column::Bytes(b) => b.append_null(),
            Column::Date(b) => b.append_null(),
            Column::Timestamp(b) => b.append_null(),
            Column::Time(b) => b.append_null(),
            Column::Numeric(b, _) => b.append_null(),
            Column::Interval(b) => b.append_null(),
        }
    }

    fn append(&mut self, v: &[u8]) -> Result<(), String> {
        match self {
            Column::Bool(b) => match v {
                [x] => b.append_value(*x != 0),
                _ => return Err(format!("a boolean of {} bytes", v.len())),
            },
            Column::Int(b) => b.append_value(be_int(v)?),
            Column::Float(b) => match v.len() {
                4 => b.append_value(f64::from(f32::from_be_bytes([v[0], v[1], v[2], v[3]]))),
                8 => b.append_value(f64::from_be_bytes(v.try_into().map_err(|_| "float")?)),
                n => return Err(format!("a float of {n} bytes")),
            },
            Column::Text(b) => {
                let s = std::str::from_utf8(v).map_err(|_| "text that is not UTF-8")?;
                b.append_value(s)
            }
            Column::Bytes(b) => b.append_value(v),
            Column::Date(b) => {
                let days = i32::try_from(be_int(v)?).map_err(|_| "date out of range")?;
                b.append_value(days.checked_add(EPOCH_DAYS).ok_or("date out of range")?)
            }
            Column::Timestamp(b) => {
                let micros = be_int(v)?;
                b.append_value(
                    micros
                        .checked_add(EPOCH_MICROS)
                        .ok_or("timestamp out of range")?,
                )
            }
            Column::Time(b) => b.append_value(be_int(v)?),
            Column::Numeric(b, scale) => b.append_value(numeric(v, *scale)?),
            Column::Interval(b) => {
                if v.len() != 16 {
                    return Err(format!("an interval of {} bytes", v.len()));
                }
                let micros = i64::from_be_bytes(v[0..8].try_into().map_err(|_| "interval")?);
                let days = i32::from_be_bytes(v[8..12].try_into().map_err(|_| "interval")?);
                let months = i32::from_be_bytes(v[12..16].try_into().map_err(|_| "interval")?);
                b.append_value(IntervalMonthDayNano::new(months, days, micros * 1000))
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Column::Bool(b) => Arc::new(b.finish()),
            Column::Int(b) => Arc::new(b.finish()),
            Column::Float(b) => Arc::new(b.finish()),
            Column::Text(b) => Arc::new(b.finish()),
            Column::Bytes(b) => Arc::new(b.finish()),
            Column::Date(b) => Arc::new(b.finish()),
            Column::Timestamp(b) => Arc::new(b.finish()),
            Column::Time(b) => Arc::new(b.finish()),
            Column::Numeric(b, _) => Arc::new(b.finish()),
            Column::Interval(b) => Arc::new(b.finish()),
        }
    }
}

/// A PostgreSQL binary `numeric` (base-10000 digits) as an integer of `scale` decimals.
fn numeric(v: &[u8], scale: i8) -> Result<i128, String> {
    if v.len() < 8 {
        return Err("a numeric shorter than its header".into());
    }
    let word = |i: usize| i16::from_be_bytes([v[2 * i], v[2 * i + 1]]);
    let ndigits = word(0);
    let weight = i32::from(word(1));
    let sign = word(2) as u16;
    if sign == 0xC000 {
        return Err("NaN does not fit a numeric column".into());
    }
    if ndigits < 0 || v.len() != 8 + 2 * ndigits as usize {
        return Err("a numeric of the wrong length".into());
    }
    // value = sum(digit[i] * 10000^(weight - i)), as an integer times 10^scale.
    let mut units: i128 = 0;
    let mut exponent = weight; // power of 10000 of the digit being added
    let overflow = || "numeric value out of range".to_string();
    for i in 0..ndigits as usize {
        let d = i128::from(word(4 + i));
        units = units
            .checked_mul(10_000)
            .ok_or_else(overflow)?
            .checked_add(d)
            .ok_or_else(overflow)?;
        exponent -= 1;
    }
    // `units` is the value times 10000^(-(exponent + 1)); bring it to 10^scale.
    let shift = 4 * (-(exponent + 1)); // decimal digits after the point in `units`
    let scale = i32::from(scale);
    let mut value = units;
    if scale >= shift {
        for _ in 0..(scale - shift) {
            value = value.checked_mul(10).ok_or_else(overflow)?;
        }
    } else {
        // More digits than the column keeps: round half away from zero, as a cast does.
        let mut dropped = 0;
        let mut last = 0;
        for _ in 0..(shift - scale) {
            last = value % 10;
            value /= 10;
            dropped += 1;
        }
        if dropped > 0 && last >= 5 {
            value += 1;
        }
    }
    Ok(if sign == 0x4000 { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{Field, Schema};

    fn field(v: &[u8]) -> Vec<u8> {
        let mut out = (v.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(v);
        out
    }

    #[test]
    fn decodes_postgresql_binary_copy_in_any_chunking() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("day", DataType::Date32, true),
            Field::new("price", DataType::Decimal128(10, 2), true),
            Field::new("ok", DataType::Boolean, true),
        ]));
        let mut data = SIGNATURE.to_vec();
        data.extend([0, 0, 0, 0, 0, 0, 0, 0]);
        // Row 1: an int4 into the bigint column, 'ab', 2000-01-03, 12.34, true.
        data.extend([0, 5]);
        data.extend(field(&7i32.to_be_bytes()));
        data.extend(field(b"ab"));
        data.extend(field(&2i32.to_be_bytes()));
        // numeric 12.34: ndigits 2, weight 0, sign +, dscale 2, digits 12, 3400.
        data.extend(field(&[0, 2, 0, 0, 0, 0, 0, 2, 0, 12, 0x0d, 0x48]));
        data.extend(field(&[1]));
        // Row 2: all NULL.
        data.extend([0, 5]);
        for _ in 0..5 {
            data.extend((-1i32).to_be_bytes());
        }
        data.extend([0xff, 0xff]);
        for size in [1, 3, 7, data.len()] {
            let mut d = BinaryDecoder::new(schema.clone(), "t".into()).unwrap();
            for c in data.chunks(size) {
                d.push(c).unwrap();
            }
            d.finish().unwrap();
            assert!(d.ended());
            let batch = d.take_batch().unwrap();
            let shown = datafusion::arrow::util::pretty::pretty_format_batches(&[batch])
                .unwrap()
                .to_string();
            assert!(
                shown.contains("| 7  | ab   | 2000-01-03 | 12.34 | true |"),
                "{shown}"
            );
            assert!(
                shown.contains("|    |      |            |       |      |"),
                "{shown}"
            );
        }
    }

    #[test]
    fn bad_data_names_its_row() {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int32, true)]));
        let mut d = BinaryDecoder::new(schema.clone(), "t".into()).unwrap();
        let e = d.push(b"NOTCOPY....................").unwrap_err();
        assert!(e.to_string().contains("signature not recognized"), "{e}");
        let mut d = BinaryDecoder::new(schema, "t".into()).unwrap();
        let mut data = SIGNATURE.to_vec();
        data.extend([0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        data.extend(field(&[1, 2, 3]));
        let e = d.push(&data).unwrap_err();
        assert!(
            e.to_string()
                .contains("an integer of 3 bytes (COPY t, row 1, column id)"),
            "{e}"
        );
        assert_eq!(numeric(&[0, 1, 0, 0, 0x40, 0, 0, 0, 0, 5], 0), Ok(-5));
        assert_eq!(
            numeric(&[0, 1, 0xff, 0xff, 0, 0, 0, 4, 0x13, 0x88], 2),
            Ok(50)
        );
    }
}
