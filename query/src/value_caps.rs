//! Caps on the values a query's functions make.
//!
//! DataFusion's memory pool sees what operators hold (sorts, aggregations,
//! joins), not what expressions make: `repeat('x', 1500000000)` allocates
//! 1.5 GB in one call, outside any pool, and a few such queries take the
//! server down with every stream. The functions whose output can be far
//! larger than their input are wrapped here: before a call runs, the bytes
//! it would make for its batch are computed from its arguments, and a call
//! past `max_value_bytes` fails the query (400) instead.
//!
//! | function | bytes for one row |
//! |---|---|
//! | `repeat(s, n)` | `len(s) · n` |
//! | `lpad(s, n [, fill])`, `rpad(…)` | `n ·` the widest character of `s` and `fill` (1 byte for ASCII) |
//! | `replace(s, from, to)` | `len(s) + matches · (len(to) − len(from))` (`from` empty: `(chars(s) + 1) · len(to) + len(s)`) |
//! | `array_repeat(x, n)` | `n · max(8, size of x)` |
//! | `array_resize(a, n [, x])` | `n · max(8, size of x or a)` |
//! | `range(…)`, `generate_series(…)` (lists of integers, dates or timestamps) | `8 ·` the values' count (a month's step counted as 28 days of 23 hours, so never under) |
//!
//! Functions whose output is bounded by their input (`concat`, `upper`,
//! `to_hex`, …) need no cap: their inputs were capped.
//!
//! A constant (a literal, or a call folded into one at planning) is copied
//! into every row of a batch (8,192 rows by default) wherever it is used
//! per row (an output column, an aggregate's argument), outside the pool
//! too: [`check_constants`] refuses a plan holding a constant whose copies
//! would pass the same cap (more than 8 KiB, by default).

use std::any::Any;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};

/// How the output size of a wrapped function follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    Repeat,
    Pad,
    Replace,
    ArrayRepeat,
    ArrayResize,
    Range,
}

/// Replaces the functions that can make large values with capped ones.
pub fn register(ctx: &SessionContext, max_value_bytes: usize) {
    use datafusion::functions::{string, unicode};
    use datafusion::functions_nested::range::{gen_series_udf, range_udf};
    use datafusion::functions_nested::repeat::array_repeat_udf;
    use datafusion::functions_nested::resize::array_resize_udf;
    for (inner, growth) in [
        (string::repeat(), Growth::Repeat),
        (unicode::lpad(), Growth::Pad),
        (unicode::rpad(), Growth::Pad),
        (string::replace(), Growth::Replace),
        (array_repeat_udf(), Growth::ArrayRepeat),
        (array_resize_udf(), Growth::ArrayResize),
        (range_udf(), Growth::Range),
        (gen_series_udf(), Growth::Range),
    ] {
        ctx.register_udf(ScalarUDF::new_from_impl(Capped {
            inner,
            growth,
            max: max_value_bytes,
        }));
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Capped {
    inner: Arc<ScalarUDF>,
    growth: Growth,
    max: usize,
}

impl Capped {
    /// The bytes a call with `args` makes for `rows` rows (saturating).
    fn output_bytes(&self, args: &[ColumnarValue], rows: usize) -> Result<u64> {
        let per_row = |i: usize| -> Result<u64> {
            Ok(match self.growth {
                Growth::Repeat => byte_len(&args[0], i)?.saturating_mul(count(args.get(1), i)?),
                Growth::Pad => {
                    let fill = args.get(2).map_or(Some(" "), |a| str_at(a, i));
                    let widest = widest_char(str_at(&args[0], i)).max(widest_char(fill));
                    count(args.get(1), i)?.saturating_mul(widest)
                }
                Growth::Replace => {
                    let (Some(s), Some(from), Some(to)) = (
                        str_at(&args[0], i),
                        str_at(&args[1], i),
                        str_at(&args[2], i),
                    ) else {
                        return Ok(0);
                    };
                    let (len, to_len) = (s.len() as u64, to.len() as u64);
                    if from.is_empty() {
                        (s.chars().count() as u64 + 1)
                            .saturating_mul(to_len)
                            .saturating_add(len)
                    } else {
                        let matches = s.matches(from).count() as u64;
                        let grow = to_len.saturating_sub(from.len() as u64);
                        len.saturating_add(matches.saturating_mul(grow))
                    }
                }
                Growth::ArrayRepeat => {
                    count(args.get(1), i)?.saturating_mul(element_size(&args[0], i)?.max(8))
                }
                Growth::ArrayResize => {
                    let element = element_size(args.get(2).unwrap_or(&args[0]), i)?;
                    count(args.get(1), i)?.saturating_mul(element.max(8))
                }
                Growth::Range => {
                    let int = |a: Option<&ColumnarValue>| -> Result<Option<i64>> {
                        Ok(match a {
                            None => None,
                            Some(a) if a.data_type().is_integer() => Some(signed(a, i)?),
                            Some(_) => None,
                        })
                    };
                    let values = match (int(args.first())?, int(args.get(1))?, int(args.get(2))?) {
                        (Some(stop), None, None) => stop.max(0) as u64,
                        (Some(start), Some(stop), None) => stop.saturating_sub(start).max(0) as u64,
                        (Some(start), Some(stop), Some(step)) if step != 0 => {
                            (stop.saturating_sub(start) / step).max(0) as u64
                        }
                        _ => temporal_values(args, i)?,
                    };
                    values.saturating_mul(8)
                }
            })
        };
        // All-scalar arguments: one value, whatever the row count says.
        let all_scalar = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        if all_scalar {
            return Ok(per_row(0)?.saturating_mul(rows.max(1) as u64));
        }
        let mut total: u64 = 0;
        for i in 0..rows {
            total = total.saturating_add(per_row(i)?);
            if total > self.max as u64 {
                break;
            }
        }
        Ok(total)
    }
}

/// How many values a `range`/`generate_series` over dates or timestamps
/// makes at row `i` (0 when its arguments are not those): the span over
/// the shortest the step can be. A step whose parts have both signs
/// (`1 month -28 days`) is refused: how far it moves depends on the
/// dates, down to nothing, and DataFusion then never ends.
fn temporal_values(args: &[ColumnarValue], i: usize) -> Result<u64> {
    let at = |a: Option<&ColumnarValue>| -> Option<ScalarValue> {
        match a? {
            ColumnarValue::Scalar(s) => Some(s.clone()),
            ColumnarValue::Array(a) => ScalarValue::try_from_array(a, i).ok(),
        }
    };
    let first = at(args.first());
    let (Some(start), Some(stop), Some(step)) = (
        first.as_ref().and_then(nanos),
        at(args.get(1)).and_then(|v| nanos(&v)),
        at(args.get(2)).and_then(|v| step_parts(&v)),
    ) else {
        return Ok(0);
    };
    let (months, mut days, mut nanos) = step;
    // Dates move by whole days: DataFusion drops a step's part under a
    // day (toward zero), and a date's day is 24 hours.
    let dates = matches!(first, Some(ScalarValue::Date32(_) | ScalarValue::Date64(_)));
    const NANOS_PER_DAY: i128 = 86_400 * 1_000_000_000;
    if dates {
        days += nanos / NANOS_PER_DAY;
        nanos = 0;
    }
    let positive = months > 0 || days > 0 || nanos > 0;
    let negative = months < 0 || days < 0 || nanos < 0;
    if positive == negative {
        return Err(DataFusionError::Execution(format!(
            "a series whose step is {} (months {months}, days {days}, nanoseconds {nanos}) has no bounded length: use a step whose parts have one sign",
            match positive {
                true => "of mixed signs",
                false => "zero",
            }
        )));
    }
    // Each part at its shortest: a day of 23 hours (a DST change; 24 for
    // dates), a month of 28 such days.
    let day: i128 = match dates {
        true => NANOS_PER_DAY,
        false => 23 * 3_600 * 1_000_000_000,
    };
    let shortest = months.abs() * 28 * day + days.abs() * day + nanos.abs();
    let span = stop - start;
    if span != 0 && (span > 0) != positive {
        return Ok(0);
    }
    Ok((span.abs() / shortest).min(u64::MAX as i128) as u64)
}

/// A date or timestamp as nanoseconds since the epoch.
fn nanos(v: &ScalarValue) -> Option<i128> {
    const SECOND: i128 = 1_000_000_000;
    Some(match v {
        ScalarValue::Date32(Some(days)) => *days as i128 * 86_400 * SECOND,
        ScalarValue::Date64(Some(ms)) => *ms as i128 * 1_000_000,
        ScalarValue::TimestampSecond(Some(s), _) => *s as i128 * SECOND,
        ScalarValue::TimestampMillisecond(Some(ms), _) => *ms as i128 * 1_000_000,
        ScalarValue::TimestampMicrosecond(Some(us), _) => *us as i128 * 1_000,
        ScalarValue::TimestampNanosecond(Some(ns), _) => *ns as i128,
        _ => return None,
    })
}

/// An interval step as (months, days, nanoseconds).
fn step_parts(v: &ScalarValue) -> Option<(i128, i128, i128)> {
    Some(match v {
        ScalarValue::IntervalMonthDayNano(Some(i)) => {
            (i.months as i128, i.days as i128, i.nanoseconds as i128)
        }
        ScalarValue::IntervalDayTime(Some(i)) => {
            (0, i.days as i128, i.milliseconds as i128 * 1_000_000)
        }
        ScalarValue::IntervalYearMonth(Some(months)) => (*months as i128, 0, 0),
        _ => return None,
    })
}

/// The string at row `i`, if it is one (not null).
fn str_at(arg: &ColumnarValue, i: usize) -> Option<&str> {
    match arg {
        ColumnarValue::Scalar(s) => s.try_as_str().flatten(),
        ColumnarValue::Array(a) => {
            if a.is_null(i) {
                return None;
            }
            match a.data_type() {
                DataType::Utf8 => Some(a.as_string::<i32>().value(i)),
                DataType::LargeUtf8 => Some(a.as_string::<i64>().value(i)),
                DataType::Utf8View => Some(a.as_string_view().value(i)),
                _ => None,
            }
        }
    }
}

/// Bytes of the widest character of `s` (1 for ASCII or none).
fn widest_char(s: Option<&str>) -> u64 {
    match s {
        Some(s) if !s.is_ascii() => s.chars().map(char::len_utf8).max().unwrap_or(1) as u64,
        _ => 1,
    }
}

/// Bytes of the string at row `i` (0 for null or non-strings).
fn byte_len(arg: &ColumnarValue, i: usize) -> Result<u64> {
    Ok(match arg {
        ColumnarValue::Scalar(s) => match s.try_as_str() {
            Some(Some(s)) => s.len() as u64,
            _ => 0,
        },
        ColumnarValue::Array(a) => array_value_len(a, i),
    })
}

fn array_value_len(a: &ArrayRef, i: usize) -> u64 {
    if a.is_null(i) {
        return 0;
    }
    match a.data_type() {
        DataType::Utf8 => a.as_string::<i32>().value(i).len() as u64,
        DataType::LargeUtf8 => a.as_string::<i64>().value(i).len() as u64,
        DataType::Utf8View => a.as_string_view().value(i).len() as u64,
        DataType::Binary => a.as_binary::<i32>().value(i).len() as u64,
        DataType::LargeBinary => a.as_binary::<i64>().value(i).len() as u64,
        DataType::BinaryView => a.as_binary_view().value(i).len() as u64,
        _ => 0,
    }
}

/// The count argument at row `i` (negative or null: 0).
fn count(arg: Option<&ColumnarValue>, i: usize) -> Result<u64> {
    let Some(arg) = arg else { return Ok(0) };
    Ok(signed(arg, i)?.max(0) as u64)
}

/// The integer argument at row `i` (null: 0).
fn signed(arg: &ColumnarValue, i: usize) -> Result<i64> {
    let value = match arg {
        ColumnarValue::Scalar(s) => match s.cast_to(&DataType::Int64)? {
            ScalarValue::Int64(Some(n)) => n,
            _ => 0,
        },
        ColumnarValue::Array(a) => {
            let ints = arrow::compute::cast(&a.slice(i, 1), &DataType::Int64)?;
            let ints = ints.as_primitive::<Int64Type>();
            if ints.is_null(0) {
                0
            } else {
                ints.value(0)
            }
        }
    };
    Ok(value)
}

/// The size of one element of `array_repeat`'s first argument at row `i`.
fn element_size(arg: &ColumnarValue, i: usize) -> Result<u64> {
    Ok(match arg {
        ColumnarValue::Scalar(s) => s.size() as u64,
        ColumnarValue::Array(a) => {
            let len = array_value_len(a, i);
            if len > 0 {
                len
            } else {
                a.slice(i, 1).get_array_memory_size() as u64
            }
        }
    })
}

impl ScalarUDFImpl for Capped {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }
    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let bytes = self.output_bytes(&args.args, args.number_rows)?;
        if bytes > self.max as u64 {
            return Err(DataFusionError::ArrowError(
                Box::new(arrow::error::ArrowError::InvalidArgumentError(format!(
                    "{}(…) would make {bytes} bytes of values for one batch of {} rows; a query's functions may make at most {} (`[query] max_value_bytes`)",
                    self.name(),
                    args.number_rows,
                    self.max
                ))),
                None,
            ));
        }
        self.inner.invoke_with_args(args)
    }
}

/// Refuses a plan holding a constant (a literal, or a call folded into
/// one) that, copied into each of a batch's `rows` rows, would make more
/// than `max` bytes. Any constant anywhere counts, not only in the output
/// columns: an aggregate's or a window's argument is copied per row too.
/// Except where one is never copied: the operand of a comparison, the
/// pattern of a `LIKE`, a value of an `IN` list (their kernels take it as
/// a scalar), so a long pattern in a filter is fine.
pub fn check_constants(
    plan: &datafusion::logical_expr::LogicalPlan,
    rows: usize,
    max: usize,
) -> std::result::Result<(), String> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::Expr;
    use datafusion::logical_expr::Operator;
    let mut largest = 0usize;
    // Literals a parent takes as a scalar, by address (a parent is
    // visited before its children).
    let mut scalar_operands: std::collections::HashSet<*const Expr> = Default::default();
    let walked = plan.apply(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                match e {
                    Expr::BinaryExpr(b)
                        if matches!(
                            b.op,
                            Operator::Eq
                                | Operator::NotEq
                                | Operator::Lt
                                | Operator::LtEq
                                | Operator::Gt
                                | Operator::GtEq
                                | Operator::IsDistinctFrom
                                | Operator::IsNotDistinctFrom
                                | Operator::LikeMatch
                                | Operator::ILikeMatch
                                | Operator::NotLikeMatch
                                | Operator::NotILikeMatch
                        ) =>
                    {
                        scalar_operands.insert(std::ptr::from_ref(b.left.as_ref()));
                        scalar_operands.insert(std::ptr::from_ref(b.right.as_ref()));
                    }
                    Expr::Like(like) | Expr::SimilarTo(like) => {
                        scalar_operands.insert(std::ptr::from_ref(like.pattern.as_ref()));
                    }
                    Expr::InList(in_list) => {
                        scalar_operands.extend(in_list.list.iter().map(std::ptr::from_ref));
                    }
                    Expr::Literal(value, _)
                        if !scalar_operands.contains(&std::ptr::from_ref(e)) =>
                    {
                        largest = largest.max(value.size());
                    }
                    _ => {}
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        node.apply_subqueries(|sub| {
            if let Err(e) = check_constants(sub, rows, max) {
                return Err(DataFusionError::Plan(e));
            }
            Ok(TreeNodeRecursion::Continue)
        })
    });
    if let Err(e) = walked {
        return Err(e.to_string());
    }
    if largest.saturating_mul(rows) > max {
        return Err(format!(
            "a constant of {largest} bytes would be copied into each of a batch's {rows} rows; a query's constants may make at most {max} bytes that way (`[query] max_value_bytes`): at most {} bytes each",
            max / rows.max(1)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(ctx: &SessionContext, sql: &str) -> Result<usize> {
        let batches = ctx.sql(sql).await?.collect().await?;
        Ok(batches.iter().map(|b| b.num_rows()).sum())
    }

    #[tokio::test]
    async fn calls_past_the_cap_fail_and_others_run() {
        let ctx = SessionContext::new();
        register(&ctx, 1 << 20);
        for ok in [
            "SELECT repeat('ab', 1000)",
            "SELECT lpad('x', 1000, 'y')",
            "SELECT rpad('x', 1000)",
            "SELECT replace('aaaa', 'a', 'bb')",
            "SELECT array_repeat(1, 1000)",
            "SELECT array_resize([1, 2], 100, 0)",
            "SELECT range(10), generate_series(1, 5)",
            "SELECT range(DATE '2026-01-01', DATE '2026-02-01', INTERVAL '1' DAY)",
            "SELECT range(DATE '2026-02-01', DATE '2026-01-01', INTERVAL '-1' DAY)",
            // Dates move by whole days: the second is dropped.
            "SELECT range(DATE '2026-01-01', DATE '2026-02-01', INTERVAL '1 day -1 second')",
            // Against its step's direction: an empty list.
            "SELECT range(TIMESTAMP '2026-02-01', TIMESTAMP '2026-01-01', INTERVAL '1' SECOND)",
            "SELECT repeat(CAST(value AS VARCHAR), 10) FROM range(1000)",
            // Estimated from the values, not the worst case: many rows of
            // text with few or no matches, and ASCII padding.
            "SELECT replace(repeat('ab|', 1000), 'x', 'yyyy') FROM range(2000)",
            "SELECT lpad(CAST(value AS VARCHAR), 400, '.') FROM range(2000)",
        ] {
            assert!(run(&ctx, ok).await.is_ok(), "{ok}");
        }
        for bad in [
            "SELECT repeat('x', 1500000000)",
            "SELECT lpad('x', 1000000000)",
            "SELECT rpad('x', 1000000000, 'y')",
            "SELECT replace(repeat('x', 100000), 'x', repeat('y', 1000))",
            "SELECT lpad(CAST(value AS VARCHAR), 1000000, 'é') FROM range(2)",
            "SELECT array_resize([1], 400000000, 7)",
            "SELECT range(0, 400000000)",
            // A second's step over decades: 7.5 GB of timestamps.
            "SELECT range(TIMESTAMP '2000-01-01', TIMESTAMP '2030-01-01', INTERVAL '1' SECOND)",
            "SELECT generate_series(DATE '1000-01-01', DATE '3000-01-01', INTERVAL '1' DAY)",
            // Dates drop the step's hours: one day, not nearly two.
            "SELECT range(DATE '1000-01-01', DATE '3000-01-01', INTERVAL '1 day 23 hours 59 minutes')",
            "SELECT generate_series(1, 400000000, 1)",
            "SELECT array_repeat(1, 1000000000)",
            // Within the cap per row, past it for the batch.
            "SELECT repeat(CAST(value AS VARCHAR), 600000) FROM range(10)",
            // A count from a column, not a literal.
            "SELECT repeat('x', value) FROM range(1500000000, 1500000001)",
        ] {
            let e = run(&ctx, bad).await.unwrap_err().to_string();
            assert!(e.contains("max_value_bytes"), "{bad}: {e}");
        }
        // Steps whose parts have both signs: far shorter than they look,
        // or nothing at all, and DataFusion then never ends (review 7
        // finding 1).
        for bad in [
            "SELECT range(TIMESTAMP '2000-01-01', TIMESTAMP '2000-05-01', INTERVAL '-1 day 86401 seconds')",
            "SELECT range(TIMESTAMP '2001-01-31', TIMESTAMP '2001-03-01', INTERVAL '1 month -28 days')",
        ] {
            let e = run(&ctx, bad).await.unwrap_err().to_string();
            assert!(e.contains("one sign"), "{bad}: {e}");
        }
    }
}
