//! `varchar(n)` and `char(n)` as PostgreSQL has them: DataFusion plans both as plain text,
//! so the declared length is taken from the statement ([`of_sql_type`]), kept with the
//! table ([`tidepool_lake::CharLength`]) and applied to every value written into such a
//! column ([`fit`]): longer than `n` is an error, "value too long for type character
//! varying(n)" (22001), unless the excess is blanks, which are cut off; `char(n)` values
//! are blank-padded to `n`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{ColumnarValue, Expr, ScalarUDF, Volatility, create_udf};
use datafusion::prelude::lit;
use datafusion::sql::sqlparser::ast::{CharacterLength, DataType as SqlType};
use tidepool_lake::CharLength;

/// The declared length of a column of SQL type `t`: `varchar(n)`, `character varying(n)`,
/// `char(n)`, `character(n)`; `char` and `character` alone are `char(1)`, as in
/// PostgreSQL. `varchar` without a length has none.
pub fn of_sql_type(t: &SqlType) -> Option<CharLength> {
    let (len, fixed) = match t {
        SqlType::Varchar(l)
        | SqlType::CharacterVarying(l)
        | SqlType::CharVarying(l)
        | SqlType::Nvarchar(l) => (l.as_ref()?, false),
        SqlType::Char(l) | SqlType::Character(l) => match l {
            Some(l) => (l, true),
            None => {
                return Some(CharLength {
                    length: 1,
                    fixed: true,
                });
            }
        },
        _ => return None,
    };
    match len {
        CharacterLength::IntegerLength { length, .. } => Some(CharLength {
            length: u32::try_from(*length).ok()?,
            fixed,
        }),
        CharacterLength::Max => None,
    }
}

/// `value` as it is stored in a column of `length`: an error when too long, blanks past
/// the length cut, `char(n)` padded.
pub fn fit(value: Expr, length: CharLength) -> Expr {
    let udf = Arc::new(fit_udf());
    udf.call(vec![
        value,
        lit(i64::from(length.length)),
        lit(length.fixed),
        lit(format!("value too long for type {}", length.pg_name())),
    ])
}

fn fit_udf() -> ScalarUDF {
    create_udf(
        "tidepool_char_length",
        vec![
            DataType::Utf8,
            DataType::Int64,
            DataType::Boolean,
            DataType::Utf8,
        ],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let (
                ColumnarValue::Scalar(ScalarValue::Int64(Some(n))),
                ColumnarValue::Scalar(ScalarValue::Boolean(Some(fixed))),
                ColumnarValue::Scalar(ScalarValue::Utf8(Some(message))),
            ) = (&args[1], &args[2], &args[3])
            else {
                return Err(DataFusionError::Internal(
                    "tidepool_char_length takes a length, a flag and a message".to_string(),
                ));
            };
            let n = usize::try_from(*n).unwrap_or(usize::MAX);
            let one = |v: &str| fitted(v, n, *fixed).ok_or_else(|| message.clone());
            match &args[0] {
                ColumnarValue::Scalar(s) => {
                    let s = s.cast_to(&DataType::Utf8)?;
                    let ScalarValue::Utf8(v) = s else {
                        return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)));
                    };
                    let out = match v {
                        Some(v) => Some(one(&v).map_err(DataFusionError::Execution)?),
                        None => None,
                    };
                    Ok(ColumnarValue::Scalar(ScalarValue::Utf8(out)))
                }
                ColumnarValue::Array(a) => {
                    let a: ArrayRef = cast(a, &DataType::Utf8)?;
                    let a = a
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .ok_or_else(|| DataFusionError::Internal("not text".to_string()))?;
                    let mut out = StringBuilder::with_capacity(a.len(), a.value_data().len());
                    for v in a.iter() {
                        match v {
                            Some(v) => {
                                out.append_value(one(v).map_err(DataFusionError::Execution)?)
                            }
                            None => out.append_null(),
                        }
                    }
                    Ok(ColumnarValue::Array(Arc::new(out.finish())))
                }
            }
        }),
    )
}

/// `v` stored in a column of `n` characters, or `None` when it does not fit.
fn fitted(v: &str, n: usize, fixed: bool) -> Option<String> {
    let chars = v.chars().count();
    if chars > n {
        let (keep, rest) = v.split_at(v.char_indices().nth(n).map_or(v.len(), |(i, _)| i));
        if !rest.chars().all(|c| c == ' ') {
            return None;
        }
        return Some(keep.to_string());
    }
    if fixed && chars < n {
        let mut s = String::with_capacity(v.len() + n - chars);
        s.push_str(v);
        s.extend(std::iter::repeat_n(' ', n - chars));
        return Some(s);
    }
    Some(v.to_string())
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn of(sql: &str) -> Option<CharLength> {
        let t = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(sql)
            .unwrap()
            .parse_data_type()
            .unwrap();
        of_sql_type(&t)
    }

    #[test]
    fn lengths_are_read_as_postgres_declares_them() {
        let v = |length| {
            Some(CharLength {
                length,
                fixed: false,
            })
        };
        let c = |length| {
            Some(CharLength {
                length,
                fixed: true,
            })
        };
        assert_eq!(of("varchar(5)"), v(5));
        assert_eq!(of("character varying(12)"), v(12));
        assert_eq!(of("char(3)"), c(3));
        assert_eq!(of("character"), c(1));
        assert_eq!(of("varchar"), None);
        assert_eq!(of("text"), None);
    }

    #[test]
    fn too_long_fails_unless_the_excess_is_blank() {
        assert_eq!(fitted("abc", 5, false).as_deref(), Some("abc"));
        assert_eq!(fitted("abcdef", 5, false), None);
        assert_eq!(fitted("abc   ", 5, false).as_deref(), Some("abc  "));
        assert_eq!(fitted("ab", 4, true).as_deref(), Some("ab  "));
        assert_eq!(fitted("ñandú", 5, false).as_deref(), Some("ñandú"));
        assert_eq!(fitted("ñandús", 5, false), None);
    }
}
