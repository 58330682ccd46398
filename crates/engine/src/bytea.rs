//! PostgreSQL's `bytea` input (`byteain`): `\x` and hex digits (blanks allowed between
//! bytes), or the escape format, where `\\` is a backslash and `\ooo` an octal byte.
//! COPY FROM reads `bytea` fields with it, and text cast to `bytea` goes through it
//! ([`udf`]), so `'\x4142'::bytea` is the two bytes `AB`, as in PostgreSQL, not the six
//! characters.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};

use crate::EngineError;

/// The bytes `text` spells, or `None` when it is not valid `bytea` input.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    if let Some(hex) = text.strip_prefix("\\x") {
        let mut out = Vec::with_capacity(hex.len() / 2);
        let mut digits = hex.bytes().filter(|b| !b.is_ascii_whitespace());
        while let Some(hi) = digits.next() {
            let lo = digits.next()?;
            let v = |d: u8| (d as char).to_digit(16);
            out.push((v(hi)? * 16 + v(lo)?) as u8);
        }
        return Some(out);
    }
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
        } else if b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let oct = b.get(i + 1..i + 4)?;
            if !oct.iter().all(|d| (b'0'..=b'7').contains(d)) || oct[0] > b'3' {
                return None;
            }
            out.push((oct[0] - b'0') * 64 + (oct[1] - b'0') * 8 + (oct[2] - b'0'));
            i += 4;
        }
    }
    Some(out)
}

/// The error for text that is not `bytea` input (22P02).
pub fn invalid(text: &str) -> DataFusionError {
    DataFusionError::External(Box::new(EngineError::InvalidText(format!(
        "invalid input syntax for type bytea: \"{text}\""
    ))))
}

/// `tidepool_byteain(text) -> bytea`.
pub fn udf() -> ScalarUDF {
    create_udf(
        "tidepool_byteain",
        vec![DataType::Utf8],
        DataType::Binary,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| match &args[0] {
            ColumnarValue::Scalar(s) => {
                let v = match s {
                    ScalarValue::Utf8(Some(t))
                    | ScalarValue::Utf8View(Some(t))
                    | ScalarValue::LargeUtf8(Some(t)) => Some(decode(t).ok_or_else(|| invalid(t))?),
                    _ => None,
                };
                Ok(ColumnarValue::Scalar(ScalarValue::Binary(v)))
            }
            ColumnarValue::Array(a) => {
                let text = datafusion::arrow::compute::cast(a, &DataType::Utf8)?;
                let text = text.as_string::<i32>();
                let mut out = BinaryBuilder::with_capacity(text.len(), 0);
                for v in text.iter() {
                    match v {
                        None => out.append_null(),
                        Some(t) => out.append_value(decode(t).ok_or_else(|| invalid(t))?),
                    }
                }
                Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn hex_and_escape_formats() {
        assert_eq!(decode("\\x4142"), Some(b"AB".to_vec()));
        assert_eq!(decode("\\x41 42"), Some(b"AB".to_vec()));
        assert_eq!(decode("\\x414"), None);
        assert_eq!(decode("\\xzz"), None);
        assert_eq!(decode("a\\\\b\\001"), Some(b"a\\b\x01".to_vec()));
        assert_eq!(decode("plain"), Some(b"plain".to_vec()));
        assert_eq!(decode("bad\\9"), None);
    }
}
