//! Arrow types every Delta reader reads. Delta has no unsigned integers, half floats or
//! non-microsecond timestamps; written as they are, delta-rs stores an unsigned Parquet
//! column under a signed Delta type (`row_number()` is UInt64), which `polars.read_delta`
//! and others refuse. Plans the lake writes are cast to the nearest Delta type first:
//! UInt8/16/32 widen to the next signed type, UInt64 becomes Int64 (a value over
//! 2^63-1 fails the write, as PostgreSQL's bigint would), Float16 becomes Float32,
//! timestamps become microseconds, Date64 becomes Date32, dictionaries their values;
//! lists and structs are cast member by member.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use datafusion::common::Column;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, cast};

use crate::LakeError;

/// The Delta-readable type for `t`, or `None` when `t` already is one.
pub fn delta_type(t: &DataType) -> Option<DataType> {
    Some(match t {
        DataType::UInt8 => DataType::Int16,
        DataType::UInt16 => DataType::Int32,
        DataType::UInt32 | DataType::UInt64 => DataType::Int64,
        DataType::Float16 => DataType::Float32,
        DataType::Date64 => DataType::Date32,
        DataType::Timestamp(unit, tz) if *unit != TimeUnit::Microsecond => {
            DataType::Timestamp(TimeUnit::Microsecond, tz.clone())
        }
        DataType::Dictionary(_, value) => delta_type(value).unwrap_or((**value).clone()),
        DataType::List(f) => DataType::List(delta_field(f)?),
        DataType::LargeList(f) => DataType::LargeList(delta_field(f)?),
        DataType::Struct(fields) => {
            let mapped: Vec<Option<Arc<Field>>> = fields.iter().map(delta_field).collect();
            if mapped.iter().all(Option::is_none) {
                return None;
            }
            DataType::Struct(Fields::from(
                mapped
                    .into_iter()
                    .zip(fields.iter())
                    .map(|(m, f)| m.unwrap_or_else(|| f.clone()))
                    .collect::<Vec<_>>(),
            ))
        }
        _ => return None,
    })
}

fn delta_field(f: &Arc<Field>) -> Option<Arc<Field>> {
    delta_type(f.data_type()).map(|t| Arc::new(f.as_ref().clone().with_data_type(t)))
}

/// `plan` with its output columns cast to Delta-readable types (the plan itself when
/// they all are).
pub fn plan(plan: LogicalPlan) -> Result<LogicalPlan, LakeError> {
    let schema = plan.schema().clone();
    let casts: Vec<Option<DataType>> = schema
        .fields()
        .iter()
        .map(|f| delta_type(f.data_type()))
        .collect();
    if casts.iter().all(Option::is_none) {
        return Ok(plan);
    }
    let exprs: Vec<Expr> = schema
        .iter()
        .zip(casts)
        .map(|((qualifier, field), to)| {
            let column = Expr::Column(Column::new(qualifier.cloned(), field.name()));
            match to {
                Some(t) => cast(column, t).alias(field.name()),
                None => column,
            }
        })
        .collect();
    Ok(LogicalPlanBuilder::from(plan).project(exprs)?.build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_and_odd_types_map_to_delta_types() {
        assert_eq!(delta_type(&DataType::UInt64), Some(DataType::Int64));
        assert_eq!(delta_type(&DataType::UInt8), Some(DataType::Int16));
        assert_eq!(delta_type(&DataType::Int64), None);
        assert_eq!(delta_type(&DataType::Utf8), None);
        assert_eq!(
            delta_type(&DataType::Timestamp(
                TimeUnit::Nanosecond,
                Some("+00:00".into())
            )),
            Some(DataType::Timestamp(
                TimeUnit::Microsecond,
                Some("+00:00".into())
            ))
        );
        let list = DataType::List(Arc::new(Field::new("item", DataType::UInt32, true)));
        assert_eq!(
            delta_type(&list),
            Some(DataType::List(Arc::new(Field::new(
                "item",
                DataType::Int64,
                true
            ))))
        );
        let plain = DataType::List(Arc::new(Field::new("item", DataType::Int32, true)));
        assert_eq!(delta_type(&plain), None);
    }
}
