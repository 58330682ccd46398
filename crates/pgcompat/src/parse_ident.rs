//! `parse_ident(text [, strict])` as PostgreSQL splits a qualified name: blanks around the
//! dots, quoted parts kept as written (`""` an inner quote), unquoted parts folded to
//! lower case. datafusion-pg-catalog's version keeps the blanks as parts of their own
//! (`'"gold" . "ing"'` gave `{gold," "," ing"}`), so ADBC's `adbc_ingest`, which names
//! its target that way, found no table. With `strict` false, text after the last name is
//! ignored, as PostgreSQL ignores it.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, ListBuilder, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

#[derive(Debug, PartialEq, Eq, Hash)]
struct ParseIdent {
    signature: Signature,
}

/// The function.
pub fn udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(ParseIdent {
        signature: Signature::one_of(
            vec![
                TypeSignature::Exact(vec![DataType::Utf8]),
                TypeSignature::Exact(vec![DataType::Utf8, DataType::Boolean]),
            ],
            Volatility::Immutable,
        ),
    })
}

impl ScalarUDFImpl for ParseIdent {
    fn name(&self) -> &str {
        "parse_ident"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::new_list(DataType::Utf8, true))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = crate::pg_functions::arrays_of(&args.args, rows)?;
        let text = arrays[0].as_string::<i32>();
        let strict = arrays.get(1).map(|a| a.as_boolean().clone());
        let mut out = ListBuilder::new(StringBuilder::new());
        for i in 0..rows {
            if text.is_null(i) {
                out.append_null();
                continue;
            }
            let strict = strict.as_ref().is_none_or(|s| s.is_null(i) || s.value(i));
            let parts = parse(text.value(i), strict).map_err(|m| {
                DataFusionError::External(Box::new(tidepool_engine::EngineError::InvalidText(m)))
            })?;
            for p in parts {
                out.values().append_value(p);
            }
            out.append(true);
        }
        let array = Arc::new(out.finish());
        if args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)))
        {
            return Ok(ColumnarValue::Scalar(
                datafusion::common::ScalarValue::try_from_array(array.as_ref(), 0)?,
            ));
        }
        Ok(ColumnarValue::Array(array))
    }
}

/// The parts of a qualified name, or PostgreSQL's message.
pub(crate) fn parse(text: &str, strict: bool) -> Result<Vec<String>, String> {
    let invalid = || format!("string is not a valid identifier: \"{text}\"");
    let mut parts = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut part = String::new();
        match chars.peek() {
            Some('"') => {
                chars.next();
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            part.push('"');
                        }
                        Some('"') => break,
                        Some(c) => part.push(c),
                        None => return Err(invalid()),
                    }
                }
                if part.is_empty() {
                    return Err(invalid());
                }
            }
            _ => {
                while let Some(&c) = chars.peek() {
                    if c.is_alphanumeric() || c == '_' || c == '$' {
                        part.push(c.to_lowercase().next().unwrap_or(c));
                        chars.next();
                    } else {
                        break;
                    }
                }
                if part.is_empty() {
                    return Err(invalid());
                }
            }
        }
        parts.push(part);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.peek() {
            Some('.') => {
                chars.next();
            }
            None => return Ok(parts),
            Some(_) if !strict => return Ok(parts),
            Some(_) => return Err(invalid()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn splits_as_postgres() {
        assert_eq!(parse("\"gold\" . \"ing\"", true).unwrap(), ["gold", "ing"]);
        assert_eq!(parse("Gold.T", true).unwrap(), ["gold", "t"]);
        assert_eq!(parse("\"a\"\"b\".c", true).unwrap(), ["a\"b", "c"]);
        assert_eq!(parse("a.b()", false).unwrap(), ["a", "b"]);
        assert!(parse("a.b()", true).is_err());
        assert!(parse("a.", true).is_err());
        assert!(parse("\"unterminated", true).is_err());
    }
}
