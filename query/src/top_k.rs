//! `approx_top_k(column, k)`: the `k` most frequent values of a column with
//! their counts, as R2 SQL spells it: a JSON array of `{"value", "count"}`
//! objects, most frequent first (ties by value), as text.
//!
//! DataFusion has the other approximate aggregates R2 SQL names
//! (`approx_distinct`, `approx_median`, `approx_percentile_cont`,
//! `approx_percentile_cont_with_weight`); this one is ours. Counting is
//! exact until a group has seen more than [`TRACKED_PER_K`]` × k` distinct
//! values (at least [`MIN_TRACKED`]); past four times that, the least
//! frequent are dropped (a space-saving sketch), so very long tails give
//! approximate counts for values near the cut, as the hosted function's do.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};
use datafusion::physical_expr::expressions::Literal;

/// Distinct values tracked per requested value.
pub const TRACKED_PER_K: usize = 10;
/// Distinct values tracked at least.
pub const MIN_TRACKED: usize = 1000;

/// The `approx_top_k` aggregate, ready to register.
pub fn approx_top_k() -> AggregateUDF {
    AggregateUDF::from(ApproxTopK::new())
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ApproxTopK {
    signature: Signature,
}

impl ApproxTopK {
    fn new() -> Self {
        // Any column (values are counted by their text) and k, whose value
        // is checked when the accumulator is made, where it is known.
        ApproxTopK {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for ApproxTopK {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        "approx_top_k"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let k = match args
            .exprs
            .get(1)
            .and_then(|e| e.as_any().downcast_ref::<Literal>())
        {
            Some(lit) => match lit.value() {
                ScalarValue::Int64(Some(k)) => *k,
                ScalarValue::Int32(Some(k)) => i64::from(*k),
                ScalarValue::UInt64(Some(k)) => i64::try_from(*k).unwrap_or(i64::MAX),
                other => {
                    return plan_err!(
                        "approx_top_k: k must be a positive integer literal, got {other}"
                    )
                }
            },
            None => return plan_err!("approx_top_k: k must be a positive integer literal"),
        };
        if k < 1 {
            return plan_err!("approx_top_k: k must be a positive integer, got {k}");
        }
        Ok(Box::new(TopKAccumulator::new(k as usize)))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format_state_name(args.name, "counts"),
            DataType::Utf8,
            true,
        ))])
    }
}

#[derive(Debug)]
struct TopKAccumulator {
    k: usize,
    counts: HashMap<String, u64>,
}

impl TopKAccumulator {
    fn new(k: usize) -> Self {
        TopKAccumulator {
            k,
            counts: HashMap::new(),
        }
    }

    fn tracked(&self) -> usize {
        (self.k.saturating_mul(TRACKED_PER_K)).max(MIN_TRACKED)
    }

    /// The counts, most frequent first, ties by value.
    fn ranked(&self) -> Vec<(&String, u64)> {
        let mut ranked: Vec<(&String, u64)> = self.counts.iter().map(|(v, c)| (v, *c)).collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        ranked
    }

    /// Drops the least frequent values once far more than `tracked` are held.
    fn trim(&mut self) {
        let tracked = self.tracked();
        if self.counts.len() <= tracked * 4 {
            return;
        }
        let keep: HashMap<String, u64> = self
            .ranked()
            .into_iter()
            .take(tracked)
            .map(|(v, c)| (v.clone(), c))
            .collect();
        self.counts = keep;
    }

    fn add(&mut self, value: &str, count: u64) {
        match self.counts.get_mut(value) {
            Some(c) => *c += count,
            None => {
                self.counts.insert(value.to_string(), count);
            }
        }
    }
}

impl Accumulator for TopKAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let text = arrow::compute::cast(&values[0], &DataType::Utf8)?;
        let text = text.as_string::<i32>();
        for i in 0..text.len() {
            if text.is_valid(i) {
                self.add(text.value(i), 1);
            }
        }
        self.trim();
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let top: Vec<serde_json::Value> = self
            .ranked()
            .into_iter()
            .take(self.k)
            .map(|(v, c)| serde_json::json!({"value": v, "count": c}))
            .collect();
        Ok(ScalarValue::Utf8(Some(
            serde_json::Value::Array(top).to_string(),
        )))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self
                .counts
                .keys()
                .map(|k| k.capacity() + std::mem::size_of::<(String, u64)>())
                .sum::<usize>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let pairs: Vec<(&String, &u64)> = self.counts.iter().collect();
        Ok(vec![ScalarValue::Utf8(Some(
            serde_json::to_string(&pairs).expect("strings and numbers serialize"),
        ))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let states = states[0].as_string::<i32>();
        for i in 0..states.len() {
            if !states.is_valid(i) {
                continue;
            }
            let pairs: Vec<(String, u64)> = serde_json::from_str(states.value(i)).map_err(|e| {
                datafusion::error::DataFusionError::Internal(format!(
                    "approx_top_k: a partial state does not parse: {e}"
                ))
            })?;
            for (v, c) in pairs {
                self.add(&v, c);
            }
        }
        self.trim();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;

    #[test]
    fn counts_rank_and_merge() {
        let mut a = TopKAccumulator::new(2);
        let values: ArrayRef = Arc::new(StringArray::from(vec![
            Some("x"),
            Some("y"),
            Some("x"),
            None,
            Some("z"),
        ]));
        a.update_batch(&[values]).unwrap();
        let mut b = TopKAccumulator::new(2);
        let more: ArrayRef = Arc::new(StringArray::from(vec!["z", "z", "y"]));
        b.update_batch(&[more]).unwrap();
        let state = b.state().unwrap()[0].to_array().unwrap();
        a.merge_batch(&[state]).unwrap();
        assert_eq!(
            a.evaluate().unwrap(),
            ScalarValue::Utf8(Some(
                r#"[{"value":"z","count":3},{"value":"x","count":2}]"#.into()
            ))
        );
    }

    #[test]
    fn a_long_tail_is_trimmed_but_the_heavy_hitters_stay_exact() {
        let mut acc = TopKAccumulator::new(1);
        let mut values: Vec<String> = (0..10_000).map(|i| format!("tail-{i}")).collect();
        values.extend(std::iter::repeat_n("head".to_string(), 50));
        let array: ArrayRef = Arc::new(StringArray::from(values));
        acc.update_batch(&[array]).unwrap();
        assert!(acc.counts.len() <= 4 * MIN_TRACKED);
        assert_eq!(
            acc.evaluate().unwrap(),
            ScalarValue::Utf8(Some(r#"[{"value":"head","count":50}]"#.into()))
        );
    }
}
