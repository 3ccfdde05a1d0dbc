//! The files a file sink writes: Parquet (through an async writer over
//! OpenDAL, multipart on S3) or NDJSON (optionally gzip), one per
//! partition folder.

use std::io::Write;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use flate2::write::GzEncoder;
use futures::future::BoxFuture;
use opendal::Operator;
use parquet::arrow::async_writer::AsyncFileWriter;
use parquet::arrow::AsyncArrowWriter;
use parquet::file::properties::WriterProperties;

use super::{store_err, FileFormat, StagedFile};
use crate::storage::size_before_compression;
use crate::{Error, Result};

/// Casts a batch to the sink's schema (the pipeline's output schema).
pub(super) fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if batch.schema() == *schema {
        return Ok(batch.clone());
    }
    RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
        .map_err(|e| Error::Schema(format!("rows do not fit the sink: {e}")))
}

/// One open staging file.
pub(super) struct PartWriter {
    pub(super) staging: String,
    pub(super) rows: u64,
    pub(super) inner: PartInner,
}

pub(super) enum PartInner {
    Parquet(AsyncArrowWriter<StoreWriter>),
    Json(JsonWriter),
}

impl PartWriter {
    pub(super) async fn create(
        op: &Operator,
        dir: &str,
        schema: &SchemaRef,
        format: FileFormat,
    ) -> Result<PartWriter> {
        let staging = format!(
            "{dir}{}.{}.inprogress",
            uuid::Uuid::new_v4(),
            format.extension()
        );
        let writer = op
            .writer(&staging)
            .await
            .map_err(store_err(format!("creating {staging}")))?;
        let inner = match format {
            FileFormat::Parquet {
                codec,
                row_group_rows,
            } => {
                let props = WriterProperties::builder()
                    .set_compression(codec.parquet())
                    .set_max_row_group_row_count(Some(row_group_rows.max(1)))
                    .build();
                PartInner::Parquet(
                    AsyncArrowWriter::try_new(
                        StoreWriter { writer, written: 0 },
                        schema.clone(),
                        Some(props),
                    )
                    .map_err(|e| Error::Schema(format!("starting a Parquet file: {e}")))?,
                )
            }
            FileFormat::Json { gzip } => PartInner::Json(JsonWriter {
                store: writer,
                gzip: gzip.then(|| GzEncoder::new(Vec::new(), flate2::Compression::fast())),
                plain: Vec::new(),
                uncompressed: 0,
                written: 0,
            }),
        };
        Ok(PartWriter {
            staging,
            rows: 0,
            inner,
        })
    }

    pub(super) async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match &mut self.inner {
            PartInner::Parquet(w) => w
                .write(batch)
                .await
                .map_err(|e| parquet_err(&self.staging, e))?,
            PartInner::Json(w) => w.write(batch, &self.staging).await?,
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    pub(super) async fn close(self, partition: String) -> Result<StagedFile> {
        let (bytes, uncompressed_bytes, row_groups) = match self.inner {
            PartInner::Parquet(mut w) => {
                let meta = w
                    .finish()
                    .await
                    .map_err(|e| parquet_err(&self.staging, e))?;
                let written = w.into_inner().written;
                let uncompressed = size_before_compression(&meta, written);
                (written, uncompressed, meta.num_row_groups() as u64)
            }
            PartInner::Json(w) => {
                let (bytes, uncompressed) = w.close(&self.staging).await?;
                (bytes, uncompressed, 1)
            }
        };
        Ok(StagedFile {
            staging: self.staging,
            partition,
            rows: self.rows,
            bytes,
            uncompressed_bytes,
            row_groups,
        })
    }
}

pub(super) fn parquet_err(path: &str, e: parquet::errors::ParquetError) -> Error {
    match e {
        parquet::errors::ParquetError::External(inner) => {
            match inner.downcast::<opendal::Error>() {
                Ok(store) => Error::Store {
                    action: format!("writing {path}"),
                    source: store,
                },
                Err(other) => Error::Schema(format!("writing {path}: {other}")),
            }
        }
        other => Error::Schema(format!("writing {path}: {other}")),
    }
}

/// Parquet's async writer over an OpenDAL writer (multipart on S3).
pub(super) struct StoreWriter {
    pub(super) writer: opendal::Writer,
    pub(super) written: u64,
}

impl AsyncFileWriter for StoreWriter {
    fn write(&mut self, bs: Bytes) -> BoxFuture<'_, parquet::errors::Result<()>> {
        self.written += bs.len() as u64;
        Box::pin(async move {
            self.writer
                .write(bs)
                .await
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
        })
    }

    fn complete(&mut self) -> BoxFuture<'_, parquet::errors::Result<()>> {
        Box::pin(async move {
            self.writer
                .close()
                .await
                .map(|_| ())
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
        })
    }
}

/// NDJSON into a staging file, through gzip when asked.
pub(super) struct JsonWriter {
    pub(super) store: opendal::Writer,
    pub(super) gzip: Option<GzEncoder<Vec<u8>>>,
    pub(super) plain: Vec<u8>,
    pub(super) uncompressed: u64,
    pub(super) written: u64,
}

/// Bytes gathered before a part is sent to storage.
const JSON_CHUNK: usize = 8 << 20;

impl JsonWriter {
    pub(super) async fn write(&mut self, batch: &RecordBatch, path: &str) -> Result<()> {
        let mut text = Vec::new();
        {
            let mut w = arrow::json::LineDelimitedWriter::new(&mut text);
            w.write(batch)
                .and_then(|_| w.finish())
                .map_err(|e| Error::Schema(format!("writing {path}: {e}")))?;
        }
        self.uncompressed += text.len() as u64;
        match &mut self.gzip {
            Some(gz) => gz
                .write_all(&text)
                .map_err(|e| Error::Schema(format!("compressing {path}: {e}")))?,
            None => self.plain.extend_from_slice(&text),
        }
        self.send(false, path).await
    }

    /// Sends what is gathered once it is a good part size (or `all`).
    pub(super) async fn send(&mut self, all: bool, path: &str) -> Result<()> {
        let out = match &mut self.gzip {
            Some(gz) => gz.get_mut(),
            None => &mut self.plain,
        };
        if out.is_empty() || (!all && out.len() < JSON_CHUNK) {
            return Ok(());
        }
        let chunk = std::mem::take(out);
        self.written += chunk.len() as u64;
        self.store
            .write(chunk)
            .await
            .map_err(store_err(format!("writing {path}")))
    }

    pub(super) async fn close(mut self, path: &str) -> Result<(u64, u64)> {
        if let Some(gz) = self.gzip.take() {
            let rest = gz
                .finish()
                .map_err(|e| Error::Schema(format!("compressing {path}: {e}")))?;
            self.plain = rest;
        }
        self.send(true, path).await?;
        self.store
            .close()
            .await
            .map_err(store_err(format!("closing {path}")))?;
        Ok((self.written, self.uncompressed))
    }
}
