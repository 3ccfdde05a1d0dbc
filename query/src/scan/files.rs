//! Reading a scan's data files: Parquet through the table's FileIO (a
//! local file read in place), footers and page indexes kept in the
//! runtime's metadata cache, bloom filters with them, and every byte read
//! counted for the stats line.

use std::any::Any;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::common::{DataFusionError, Result as DFResult};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::{
    CachedParquetMetaData, ParquetFileReaderFactory,
};
use datafusion::execution::cache::cache_manager::{
    CachedFileMetadataEntry, FileMetadata as CachedFileMetadata, FileMetadataCache,
};
use datafusion::object_store::{path::Path as StorePath, ObjectMeta};
use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::parquet::errors::Result as ParquetResult;
use datafusion::parquet::file::metadata::{
    PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader,
};
use datafusion::physical_plan::metrics::{Count, ExecutionPlanMetricsSet, MetricBuilder};
use futures::future::BoxFuture;
use futures::FutureExt;
use iceberg::arrow::ArrowFileReader;
use iceberg::io::{FileIO, FileMetadata, FileRead, InputFile};
use tokio::sync::OnceCell;

use super::{external, BYTES_READ};

/// The full path of a data file, as the table's FileIO names it, carried
/// in a [`PartitionedFile`]'s extensions (its object store path cannot
/// hold a scheme and bucket).
#[derive(Debug)]
pub(super) struct DataFilePath(pub(super) String);

/// Opens Parquet data files through an Iceberg [`FileIO`], counting bytes,
/// with their metadata from the session's cache when it is there.
#[derive(Debug)]
pub(super) struct FileIoReaderFactory {
    pub(super) file_io: FileIO,
    pub(super) metadata_cache: Arc<dyn FileMetadataCache>,
}

impl ParquetFileReaderFactory for FileIoReaderFactory {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> DFResult<Box<dyn AsyncFileReader + Send>> {
        let path = file
            .extensions
            .as_ref()
            .and_then(|e| e.downcast_ref::<DataFilePath>())
            .ok_or_else(|| {
                DataFusionError::Internal(format!(
                    "data file {} has no Iceberg path",
                    file.object_meta.location
                ))
            })?;
        let source = match local_file(&path.0) {
            Some(local) => Source::Local {
                path: local,
                file: OnceCell::new(),
            },
            None => Source::FileIo {
                input: self.file_io.new_input(&path.0).map_err(external)?,
                reader: OnceCell::new(),
            },
        };
        let read = CountingRead {
            source,
            bytes_read: MetricBuilder::new(metrics).counter(BYTES_READ, partition_index),
        };
        // The manifest's file size saves a HEAD request per file.
        let size = FileMetadata {
            size: file.object_meta.size,
        };
        Ok(Box::new(CachedMetadataReader {
            inner: ArrowFileReader::new(size, Box::new(read)),
            // The full path (scheme and bucket included) is the cache key.
            meta: ObjectMeta {
                location: StorePath::from(path.0.as_str()),
                ..file.object_meta
            },
            cache: self.metadata_cache.clone(),
            size_hint: metadata_size_hint,
            metadata: None,
        }))
    }
}

/// A data file's reader whose metadata comes from the session's file
/// metadata cache, or is read whole (footer and page index) and put there.
/// Bloom filters go into the same cache (under the file's path and the
/// filter's offset), so repeated lookups read only the row groups that
/// may hold their value; the cache's limit bounds both.
pub(super) struct CachedMetadataReader {
    pub(super) inner: ArrowFileReader,
    pub(super) meta: ObjectMeta,
    pub(super) cache: Arc<dyn FileMetadataCache>,
    pub(super) size_hint: Option<usize>,
    /// This file's metadata, once asked for.
    pub(super) metadata: Option<Arc<ParquetMetaData>>,
}

/// A bloom filter's bytes (header and bitset), as the metadata cache
/// keeps them.
pub(super) struct BloomFilterBytes(Bytes);

impl CachedFileMetadata for BloomFilterBytes {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn memory_size(&self) -> usize {
        self.0.len()
    }

    fn extra_info(&self) -> std::collections::HashMap<String, String> {
        Default::default()
    }
}

impl CachedMetadataReader {
    /// The cache's entry for `key`, if it is of this file (same size).
    /// The cache's entry under `key`, of type `T`, if it is of this file
    /// (same size).
    fn cached<T: Any, R>(&self, key: &StorePath, read: impl FnOnce(&T) -> R) -> Option<R> {
        let entry = self.cache.get(key)?;
        if entry.meta.size != self.meta.size {
            return None;
        }
        entry.file_metadata.as_any().downcast_ref::<T>().map(read)
    }

    /// Whether `range` is exactly one column chunk's bloom filter (as
    /// parquet-rs reads them when the footer gives their length, which
    /// every writer since parquet-format 2.10 does).
    fn is_bloom_filter(&self, range: &Range<u64>) -> bool {
        let Some(metadata) = &self.metadata else {
            return false;
        };
        metadata.row_groups().iter().any(|group| {
            group.columns().iter().any(|column| {
                column.bloom_filter_offset() == Some(range.start as i64)
                    && column.bloom_filter_length().map(|l| l as u64)
                        == Some(range.end - range.start)
            })
        })
    }
}

impl AsyncFileReader for CachedMetadataReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, ParquetResult<Bytes>> {
        if !self.is_bloom_filter(&range) {
            return self.inner.get_bytes(range);
        }
        let key = StorePath::from(format!("{}#bloom-{}", self.meta.location, range.start));
        if let Some(bytes) = self.cached(&key, |b: &BloomFilterBytes| b.0.clone()) {
            return async move { Ok(bytes) }.boxed();
        }
        async move {
            let bytes = self.inner.get_bytes(range).await?;
            self.cache.put(
                &key,
                CachedFileMetadataEntry::new(
                    self.meta.clone(),
                    Arc::new(BloomFilterBytes(bytes.clone())),
                ),
            );
            Ok(bytes)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, ParquetResult<Vec<Bytes>>> {
        self.inner.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, ParquetResult<Arc<ParquetMetaData>>> {
        async move {
            let cached = self.cached(&self.meta.location, |m: &CachedParquetMetaData| {
                m.parquet_metadata().clone()
            });
            if let Some(metadata) = cached {
                self.metadata = Some(metadata.clone());
                return Ok(metadata);
            }
            // The page index too, whether this query needs it or not, so
            // that the cached copy serves every later query.
            let metadata = Arc::new(
                ParquetMetaDataReader::new()
                    .with_prefetch_hint(self.size_hint)
                    .with_page_index_policy(PageIndexPolicy::Optional)
                    .load_and_finish(&mut self.inner, self.meta.size)
                    .await?,
            );
            self.cache.put(
                &self.meta.location,
                CachedFileMetadataEntry::new(
                    self.meta.clone(),
                    Arc::new(CachedParquetMetaData::new(metadata.clone())),
                ),
            );
            self.metadata = Some(metadata.clone());
            Ok(metadata)
        }
        .boxed()
    }
}

/// A data file's reader, opened on first read, that counts what it reads.
pub(super) struct CountingRead {
    pub(super) source: Source,
    pub(super) bytes_read: Count,
}

/// Where a data file's bytes come from.
pub(super) enum Source {
    /// The table's FileIO (S3, or any other storage it is set up for).
    FileIo {
        input: InputFile,
        reader: OnceCell<Box<dyn FileRead>>,
    },
    /// A file on this machine (a local warehouse), read with one
    /// positional read per range on a blocking thread. FileIO's local
    /// storage (OpenDAL's `fs`) opens, seeks and reads in separate blocking
    /// steps and copies each range twice; on a scan that finds its pages in
    /// the OS cache that costs as much as decoding them.
    Local {
        path: PathBuf,
        file: OnceCell<Arc<std::fs::File>>,
    },
}

/// The local file a data file path names (`file:///…`, `file:/…` or an
/// absolute path), on systems with positional reads.
pub(super) fn local_file(path: &str) -> Option<PathBuf> {
    if !cfg!(unix) {
        return None;
    }
    let rest = match path.strip_prefix("file:") {
        // `file://host/…` names another machine's file.
        Some(rest) if rest.starts_with("//") && !rest.starts_with("///") => return None,
        Some(rest) => rest,
        None => path,
    };
    rest.starts_with('/')
        .then(|| PathBuf::from(format!("/{}", rest.trim_start_matches('/'))))
}

pub(super) fn io_error(path: &std::path::Path, e: std::io::Error) -> iceberg::Error {
    iceberg::Error::new(
        iceberg::ErrorKind::Unexpected,
        format!("reading {}", path.display()),
    )
    .with_source(e)
}

impl Source {
    async fn read(&self, range: Range<u64>) -> iceberg::Result<Bytes> {
        match self {
            Source::FileIo { input, reader } => {
                let reader = reader.get_or_try_init(|| input.reader()).await?;
                reader.read(range).await
            }
            Source::Local { path, file } => {
                let file = file
                    .get_or_try_init(|| async {
                        let path = path.clone();
                        blocking(move || std::fs::File::open(&path).map_err(|e| io_error(&path, e)))
                            .await
                            .map(Arc::new)
                    })
                    .await?
                    .clone();
                let path = path.clone();
                blocking(move || read_at(&file, range).map_err(|e| io_error(&path, e))).await
            }
        }
    }
}

/// `read` on tokio's blocking pool.
pub(super) async fn blocking<T: Send + 'static>(
    read: impl FnOnce() -> iceberg::Result<T> + Send + 'static,
) -> iceberg::Result<T> {
    tokio::task::spawn_blocking(read).await.map_err(|e| {
        iceberg::Error::new(iceberg::ErrorKind::Unexpected, "a file read stopped").with_source(e)
    })?
}

#[cfg(unix)]
pub(super) fn read_at(file: &std::fs::File, range: Range<u64>) -> std::io::Result<Bytes> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0; (range.end - range.start) as usize];
    file.read_exact_at(&mut buf, range.start)?;
    Ok(Bytes::from(buf))
}

#[cfg(not(unix))]
pub(super) fn read_at(_: &std::fs::File, _: Range<u64>) -> std::io::Result<Bytes> {
    unreachable!("local_file names no file on this system")
}

#[async_trait]
impl FileRead for CountingRead {
    async fn read(&self, range: Range<u64>) -> iceberg::Result<Bytes> {
        let bytes = self.source.read(range).await?;
        self.bytes_read.add(bytes.len());
        Ok(bytes)
    }
}
