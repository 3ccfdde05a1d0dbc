//! Batches of an earlier version of a stream's schema (still buffered when
//! the schema changed) made to fit the schema a plan was made for.

use arrow::record_batch::RecordBatch;

use crate::{Error, PipelinePlan, Result};

impl PipelinePlan {
    /// Makes a batch written under an earlier version of the stream's
    /// schema (still in the buffer when the schema changed) fit the one
    /// the SQL was planned for: a column it lacks is null when the field
    /// is optional; a column of another type is cast when every value
    /// converts (int32 → int64, float32 → float64, …). Anything else is an
    /// error that names the field, never a batch the plan cannot read.
    pub fn conform(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let target = &self.slot.schema;
        if batch.schema().fields() == target.fields() {
            return Ok(batch);
        }
        let invalid = |message: String| {
            Error::Input {
            pipeline: self.name.clone(),
            message: format!(
                "events buffered under an earlier schema of stream `{}` do not fit the current one: {message}; put the stream's schema back as it was until these events are committed, or change it only in ways old events fit (new optional fields, wider numbers)",
                self.stream
            ),
        }
        };
        let source = batch.schema();
        if let Some(extra) = source
            .fields()
            .iter()
            .find(|f| target.field_with_name(f.name()).is_err())
        {
            return Err(invalid(format!(
                "they have field `{}`, which the schema no longer has",
                extra.name()
            )));
        }
        let options = arrow::compute::CastOptions {
            safe: false,
            ..Default::default()
        };
        let columns = target
            .fields()
            .iter()
            .map(|field| match source.index_of(field.name()) {
                Ok(i) => {
                    let column = batch.column(i);
                    if column.data_type() == field.data_type() {
                        return Ok(column.clone());
                    }
                    arrow::compute::cast_with_options(column, field.data_type(), &options).map_err(
                        |e| {
                            invalid(format!(
                                "field `{}` was {}, now {}: {e}",
                                field.name(),
                                column.data_type(),
                                field.data_type()
                            ))
                        },
                    )
                }
                Err(_) if field.is_nullable() => Ok(arrow::array::new_null_array(
                    field.data_type(),
                    batch.num_rows(),
                )),
                Err(_) => Err(invalid(format!(
                    "they lack field `{}`, which is now required",
                    field.name()
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        RecordBatch::try_new(target.clone(), columns)
            .map_err(|e| invalid(format!("the converted columns do not fit: {e}")))
    }

    pub(crate) fn conform_all(&self, input: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
        input.into_iter().map(|b| self.conform(b)).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use arrow::array::{AsArray, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use arrow::record_batch::RecordBatch;

    use crate::tests::stream_schema;
    use crate::{PipelinePlan, INGEST_TS_COLUMN};

    async fn plan(sql: &str) -> crate::Result<PipelinePlan> {
        let streams = HashMap::from([("ecommerce_stream".to_string(), stream_schema())]);
        PipelinePlan::new("p", sql, &streams, &["ecommerce_sink".to_string()]).await
    }

    /// Events buffered under an earlier schema of the stream: once, a
    /// batch of another shape made the plan panic (`index out of bounds`)
    /// and the pipeline task die silently (issue 16, item 7).
    #[tokio::test]
    async fn batches_of_an_earlier_schema_are_conformed_or_refused_by_name() {
        let p = plan("INSERT INTO ecommerce_sink SELECT * FROM ecommerce_stream")
            .await
            .unwrap();
        let ts = Field::new(
            INGEST_TS_COLUMN,
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            false,
        );
        let ts_values = || -> arrow::array::ArrayRef {
            Arc::new(TimestampMicrosecondArray::from(vec![7]).with_timezone("+00:00"))
        };
        // Before `amount` existed: it reads as null.
        let old = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("user_id", DataType::Utf8, false),
                ts.clone(),
            ])),
            vec![Arc::new(StringArray::from(vec!["a"])), ts_values()],
        )
        .unwrap();
        // When `amount` was float32: widened.
        let narrow = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("user_id", DataType::Utf8, false),
                Field::new("amount", DataType::Float32, true),
                ts.clone(),
            ])),
            vec![
                Arc::new(StringArray::from(vec!["b"])),
                Arc::new(arrow::array::Float32Array::from(vec![1.5])),
                ts_values(),
            ],
        )
        .unwrap();
        let out = p.run(vec![old, narrow]).await.unwrap();
        let out = arrow::compute::concat_batches(p.output_schema(), &out).unwrap();
        let amounts = out
            .column(1)
            .as_primitive::<arrow::datatypes::Float64Type>();
        assert_eq!(out.num_rows(), 2);
        assert!(arrow::array::Array::is_null(amounts, 0));
        assert_eq!(amounts.value(1), 1.5);
        // A field the schema no longer has: a clear error, not a panic.
        let removed = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("user_id", DataType::Utf8, false),
                Field::new("color", DataType::Utf8, true),
                ts,
            ])),
            vec![
                Arc::new(StringArray::from(vec!["c"])),
                Arc::new(StringArray::from(vec!["red"])),
                ts_values(),
            ],
        )
        .unwrap();
        let err = p
            .run_isolating(vec![removed])
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("field `color`"), "{err}");
    }
}
