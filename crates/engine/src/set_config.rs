//! `set_config(name, value, is_local)`, PostgreSQL's function form of SET (PostgREST,
//! asyncpg users, row-level-security setups pass request context this way).
//!
//! A function cannot reach into its session while the statement runs, so the call
//! checks the name and value as SET would (42704 for an unknown parameter, 22023 for a
//! bad value), returns the value, and queues the assignment; the session applies the
//! queue before its next statement. `current_setting` in the same statement therefore
//! still sees the old value (PostgreSQL's sees the new one). `is_local` is accepted and
//! treated as SET treats SET LOCAL: the value lasts for the session.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use parking_lot::Mutex;

use crate::SessionSettings;

/// Assignments made by `set_config` and not yet applied to the session.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pending(Arc<Mutex<Vec<(String, String)>>>);

impl Pending {
    /// The queued assignments, in call order; the queue is left empty.
    pub(crate) fn take(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.0.lock())
    }

    /// The `set_config` function queuing into this.
    pub(crate) fn udf(&self) -> ScalarUDF {
        let pending = self.clone();
        create_udf(
            "set_config",
            vec![DataType::Utf8, DataType::Utf8, DataType::Boolean],
            DataType::Utf8,
            Volatility::Volatile,
            Arc::new(move |args: &[ColumnarValue]| pending.call(args)),
        )
    }

    fn call(&self, args: &[ColumnarValue]) -> Result<ColumnarValue> {
        let rows = args
            .iter()
            .find_map(|a| match a {
                ColumnarValue::Array(a) => Some(a.len()),
                ColumnarValue::Scalar(_) => None,
            })
            .unwrap_or(1);
        let arrays = args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<Vec<_>>>()?;
        let (names, values) = (arrays[0].as_string::<i32>(), arrays[1].as_string::<i32>());
        let mut out = StringBuilder::with_capacity(rows, 16 * rows);
        for i in 0..rows {
            if names.is_null(i) {
                return Err(DataFusionError::External(Box::new(
                    crate::EngineError::InvalidSetting {
                        name: String::new(),
                        message: "NULL value not allowed for the parameter name".into(),
                    },
                )));
            }
            let name = names.value(i);
            // NULL sets the empty string, as PostgreSQL's does.
            let value = if values.is_null(i) {
                ""
            } else {
                values.value(i)
            };
            let mut probe = SessionSettings::default();
            probe
                .set(name, value.to_string())
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            let shown = probe.get(name).map(|(_, v)| v).unwrap_or_default();
            self.0.lock().push((name.to_string(), value.to_string()));
            out.append_value(shown);
        }
        let array: datafusion::arrow::array::ArrayRef = Arc::new(out.finish());
        Ok(
            if rows == 1 && args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
                ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&array, 0)?)
            } else {
                ColumnarValue::Array(array)
            },
        )
    }
}
