//! `string_agg` whose grouped state the memory pool sees as it is.
//!
//! DataFusion 55's grouped `string_agg` reports the summed length of its strings to the
//! memory pool, while each group's `String` grows by doubling: up to twice that is
//! allocated, plus the allocator's overhead per group. With `memory_limit = 256MiB` a
//! grouped `string_agg` over 20M rows reached 4 GiB of RSS before the pool noticed
//! anything. This is DataFusion's `string_agg` with one change: its grouped accumulator
//! reports the capacity it holds, so aggregates spill or fail with 53200 when the state
//! reaches the limit. Everything else (signature, DISTINCT/ORDER BY, the ungrouped
//! accumulator) is DataFusion's.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, LargeStringArray};
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{Result, internal_err, not_impl_err};
use datafusion::functions_aggregate::string_agg::StringAgg;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, EmitTo, GroupsAccumulator,
    ReversedUDAF, Signature,
};
use datafusion::physical_expr::expressions::Literal;

/// What one heap allocation costs beyond its capacity (glibc's chunk header, rounding).
const ALLOCATION_OVERHEAD: usize = 16;

/// The `string_agg` aggregate, registered in place of DataFusion's.
pub fn string_agg() -> AggregateUDF {
    AggregateUDF::new_from_impl(AccountedStringAgg {
        inner: StringAgg::new(),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct AccountedStringAgg {
    inner: StringAgg,
}

impl AggregateUDFImpl for AccountedStringAgg {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        self.inner.return_type(args)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        self.inner.state_fields(args)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.inner.accumulator(args)
    }

    fn reverse_expr(&self) -> ReversedUDAF {
        ReversedUDAF::Reversed(Arc::new(string_agg()))
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        self.inner.groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(Groups {
            delimiter: delimiter(&args)?,
            values: Vec::new(),
            held: 0,
        }))
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

/// The delimiter: the second argument, a string literal (NULL: none).
fn delimiter(args: &AccumulatorArgs) -> Result<String> {
    let Some(lit) = args.exprs.get(1).and_then(|e| e.downcast_ref::<Literal>()) else {
        return not_impl_err!("string_agg delimiter must be a string literal");
    };
    if lit.value().is_null() {
        return Ok(String::new());
    }
    match lit.value().try_as_str() {
        Some(s) => Ok(s.unwrap_or("").to_string()),
        None => not_impl_err!("string_agg not supported for delimiter \"{}\"", lit.value()),
    }
}

/// Each group's string so far; `held` is their capacities plus allocation overhead.
#[derive(Debug)]
struct Groups {
    delimiter: String,
    values: Vec<Option<String>>,
    held: usize,
}

impl Groups {
    fn append<'a>(&mut self, items: impl Iterator<Item = Option<&'a str>>, groups: &[usize]) {
        for (item, &g) in items.zip(groups) {
            let Some(v) = item else { continue };
            match &mut self.values[g] {
                Some(s) => {
                    let before = s.capacity();
                    s.push_str(&self.delimiter);
                    s.push_str(v);
                    self.held += s.capacity() - before;
                }
                slot @ None => {
                    let s = v.to_string();
                    self.held += s.capacity() + ALLOCATION_OVERHEAD;
                    *slot = Some(s);
                }
            }
        }
    }
}

impl GroupsAccumulator for Groups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.values.resize(total_num_groups, None);
        let array = &values[0];
        let keep = |i: usize| opt_filter.is_none_or(|f| f.is_valid(i) && f.value(i));
        match array.data_type() {
            DataType::Utf8 => {
                let a = array.as_string::<i32>();
                self.append(
                    (0..a.len()).map(|i| (keep(i) && a.is_valid(i)).then(|| a.value(i))),
                    group_indices,
                )
            }
            DataType::LargeUtf8 => {
                let a = array.as_string::<i64>();
                self.append(
                    (0..a.len()).map(|i| (keep(i) && a.is_valid(i)).then(|| a.value(i))),
                    group_indices,
                )
            }
            DataType::Utf8View => {
                let a = array.as_string_view();
                self.append(
                    (0..a.len()).map(|i| (keep(i) && a.is_valid(i)).then(|| a.value(i))),
                    group_indices,
                )
            }
            other => return internal_err!("string_agg of {other}"),
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let out = emit_to.take_needed(&mut self.values);
        let freed: usize = out
            .iter()
            .flatten()
            .map(|s| s.capacity() + ALLOCATION_OVERHEAD)
            .sum();
        self.held -= freed;
        Ok(Arc::new(LargeStringArray::from(out)))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.evaluate(emit_to)?])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.update_batch(values, group_indices, None, total_num_groups)
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let input = match opt_filter {
            Some(f) => datafusion::arrow::compute::nullif(
                &values[0],
                &datafusion::arrow::compute::not(
                    &datafusion::arrow::compute::prep_null_mask_filter(f),
                )?,
            )?,
            None => values[0].clone(),
        };
        let state = if input.data_type() == &DataType::LargeUtf8 {
            input
        } else {
            datafusion::arrow::compute::cast(&input, &DataType::LargeUtf8)?
        };
        Ok(vec![state])
    }

    fn size(&self) -> usize {
        self.held
            + self.values.capacity() * size_of::<Option<String>>()
            + self.delimiter.capacity()
            + size_of::<Self>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;

    #[test]
    fn reports_what_it_holds_and_concatenates_per_group() {
        let mut g = Groups {
            delimiter: ",".into(),
            values: Vec::new(),
            held: 0,
        };
        let input: ArrayRef = Arc::new(StringArray::from(vec![
            Some("ab"),
            None,
            Some("cd"),
            Some("e"),
        ]));
        g.update_batch(&[input], &[0, 0, 0, 1], None, 2).unwrap();
        let capacities: usize = g
            .values
            .iter()
            .flatten()
            .map(|s| s.capacity() + ALLOCATION_OVERHEAD)
            .sum();
        assert_eq!(g.held, capacities);
        assert!(g.size() >= capacities);
        let out = g.evaluate(EmitTo::All).unwrap();
        let out = out.as_string::<i64>();
        assert_eq!((out.value(0), out.value(1)), ("ab,cd", "e"));
        assert_eq!(g.held, 0);
    }
}
